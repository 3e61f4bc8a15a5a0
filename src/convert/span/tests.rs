//! Conversion of literal `SpanData`, asserted on the serialized JSON. Case names refer to the
//! official exporters' test cases listed in MAPPING.md (`py-span-*`, `js-span-*`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{
    Event, Link, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use opentelemetry_sdk::Resource;
use proptest::prelude::*;
use serde_json::{json, Value as Json};

use super::*;
use crate::convert::http::{split_host_port, UrlParts};
use crate::wire::{tag, SharedTags};

const IKEY: &str = "1234abcd-5678-4efa-8abc-1234567890ab";
const TRACE_ID: u128 = 36_873_507_687_745_823_477_771_305_566_750_195_431;
const TRACE_HEX: &str = "1bbd944a73a05d89eab5d3740a213ee7";
const SPAN_ID: u64 = 12_030_755_672_171_557_337;
const SPAN_HEX: &str = "a6f5d48acb4d31d9";
const START_NS: u64 = 1_575_494_316_027_613_500;
const START: &str = "2019-12-04T21:18:36.027613Z";

const NAME: &str = "/data/baseData/name";
const TYPE: &str = "/data/baseData/type";
const TARGET: &str = "/data/baseData/target";
const DATA: &str = "/data/baseData/data";
const RESULT: &str = "/data/baseData/resultCode";
const RESPONSE: &str = "/data/baseData/responseCode";
const URL: &str = "/data/baseData/url";
const SOURCE: &str = "/data/baseData/source";
const SUCCESS: &str = "/data/baseData/success";
const PROPS: &str = "/data/baseData/properties";
const MEASUREMENTS: &str = "/data/baseData/measurements";
const OP_NAME: &str = "/tags/ai.operation.name";
const LOCATION: &str = "/tags/ai.location.ip";
const USER_AGENT_TAG: &str = "/tags/ai.user.userAgent";
const SAMPLE_RATE_FIELD: &str = "/sampleRate";

fn kv(key: &'static str, value: impl Into<Value>) -> KeyValue {
    KeyValue::new(key, value)
}

fn at(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

fn context(trace: u128, span: u64) -> SpanContext {
    SpanContext::new(
        TraceId::from(trace),
        SpanId::from(span),
        TraceFlags::SAMPLED,
        false,
        TraceState::default(),
    )
}

fn span(kind: SpanKind, attributes: Vec<KeyValue>) -> SpanData {
    SpanData {
        span_context: context(TRACE_ID, SPAN_ID),
        parent_span_id: SpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: kind,
        name: "test".into(),
        start_time: at(START_NS),
        end_time: at(START_NS + 1_001_000_000),
        attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Ok,
        instrumentation_scope: InstrumentationScope::default(),
    }
}

fn convert_with(span: &SpanData, shared: &SharedTags) -> Vec<Json> {
    convert_events(span, shared, true)
}

/// The envelopes of `span`, with or without the span events made from `tracing` events.
fn convert_events(span: &SpanData, shared: &SharedTags, tracing_events: bool) -> Vec<Json> {
    let cx = Context {
        ikey: IKEY,
        tags: shared,
    };
    let mut out = Vec::new();
    span_to_envelopes(span, &cx, tracing_events, &mut out);
    out.iter()
        .map(|e| serde_json::to_value(e).unwrap_or_default())
        .collect()
}

fn convert(span: &SpanData) -> Vec<Json> {
    convert_with(span, &SharedTags::default())
}

fn convert_one(span: &SpanData) -> Json {
    let mut all = convert(span);
    assert_eq!(all.len(), 1);
    all.pop().unwrap_or_default()
}

/// Asserts JSON-pointer expectations; `Json::Null` means "absent".
fn check(json: &Json, expect: &[(&str, Json)], case: &str) {
    for (pointer, want) in expect {
        let got = json.pointer(pointer);
        if want.is_null() {
            assert!(
                got.is_none(),
                "{case}: {pointer} should be absent, is {got:?}"
            );
        } else {
            assert_eq!(got, Some(want), "{case}: {pointer}\n{json:#}");
        }
    }
}

type Case = (
    &'static str,
    SpanKind,
    Vec<KeyValue>,
    Vec<(&'static str, Json)>,
);

fn run(cases: Vec<Case>) {
    for (case, kind, attrs, expect) in cases {
        let json = convert_one(&span(kind, attrs));
        check(&json, &expect, case);
    }
}

#[test]
fn envelope_shape() {
    let json = convert_one(&span(SpanKind::Server, vec![]));
    assert_eq!(
        json,
        json!({
            "name": "Microsoft.ApplicationInsights.Request",
            "time": START,
            "iKey": IKEY,
            "tags": { "ai.operation.id": TRACE_HEX, "ai.operation.name": "test" },
            "data": { "baseType": "RequestData", "baseData": {
                "ver": 2, "id": SPAN_HEX, "name": "test", "duration": "0.00:00:01.001000",
                "success": true, "responseCode": "0"
            }}
        })
    );
    let json = convert_one(&span(SpanKind::Internal, vec![]));
    assert_eq!(
        json,
        json!({
            "name": "Microsoft.ApplicationInsights.RemoteDependency",
            "time": START,
            "iKey": IKEY,
            "tags": { "ai.operation.id": TRACE_HEX, "ai.operation.name": "test" },
            "data": { "baseType": "RemoteDependencyData", "baseData": {
                "ver": 2, "name": "test", "id": SPAN_HEX, "resultCode": "0",
                "duration": "0.00:00:01.001000", "success": true, "type": "InProc"
            }}
        })
    );
}

#[test]
fn kinds_and_status() {
    let table = [
        (SpanKind::Server, "RequestData"),
        (SpanKind::Consumer, "RequestData"),
        (SpanKind::Client, "RemoteDependencyData"),
        (SpanKind::Producer, "RemoteDependencyData"),
        (SpanKind::Internal, "RemoteDependencyData"),
    ];
    for (kind, base_type) in table {
        for (status, success) in [
            (Status::Unset, true),
            (Status::Ok, true),
            (Status::error("boom"), false),
        ] {
            let mut s = span(kind.clone(), vec![]);
            s.status = status;
            let json = convert_one(&s);
            assert_eq!(json["data"]["baseType"], base_type);
            assert_eq!(json.pointer(SUCCESS), Some(&json!(success)), "{kind:?}");
        }
    }
}

#[test]
fn parent_and_duration() {
    let mut s = span(SpanKind::Client, vec![]);
    s.parent_span_id = SpanId::from(0x00f0_0000_0000_0001);
    s.parent_span_is_remote = true;
    s.end_time = s.start_time - Duration::from_secs(1);
    let json = convert_one(&s);
    assert_eq!(json["tags"]["ai.operation.parentId"], "00f0000000000001");
    assert_eq!(json["data"]["baseData"]["duration"], "0.00:00:00.000000");
}

#[test]
fn server_spans() {
    run(vec![
        (
            "py-span-server-http",
            SpanKind::Server,
            vec![
                kv("http.method", "GET"),
                kv("http.path", "/wiki/Rabbit"),
                kv("http.route", "/wiki/Rabbit"),
                kv("http.url", "https://www.wikipedia.org/wiki/Rabbit"),
                kv("http.status_code", 200),
                kv("http.user_agent", "agent"),
                kv("http.client_ip", "client_ip"),
            ],
            vec![
                (NAME, json!("GET /wiki/Rabbit")),
                (OP_NAME, json!("GET /wiki/Rabbit")),
                (RESPONSE, json!("200")),
                (SUCCESS, json!(true)),
                (USER_AGENT_TAG, json!("agent")),
                (LOCATION, json!("client_ip")),
                (URL, json!("https://www.wikipedia.org/wiki/Rabbit")),
                (PROPS, Json::Null),
                (SOURCE, Json::Null),
            ],
        ),
        (
            "py-span-server-http-400",
            SpanKind::Server,
            vec![
                kv("http.method", "GET"),
                kv("net.peer.ip", "peer_ip"),
                kv("http.status_code", 400),
            ],
            vec![
                (SUCCESS, json!(false)),
                (RESPONSE, json!("400")),
                (LOCATION, json!("peer_ip")),
                (NAME, json!("test")),
                (URL, Json::Null),
            ],
        ),
        (
            "py-span-server-http-no-status",
            SpanKind::Server,
            vec![kv("http.method", "GET")],
            vec![(SUCCESS, json!(false)), (RESPONSE, json!("0"))],
        ),
        (
            "py-span-server-http-empty-status",
            SpanKind::Server,
            vec![kv("http.method", "GET"), kv("http.status_code", "")],
            vec![(SUCCESS, json!(false)), (RESPONSE, json!("0"))],
        ),
        (
            "py-span-server-http-500-is-success",
            SpanKind::Server,
            vec![kv("http.method", "GET"), kv("http.status_code", 500)],
            vec![(SUCCESS, json!(true)), (RESPONSE, json!("500"))],
        ),
        (
            "py-span-server-http-url-host",
            SpanKind::Server,
            vec![
                kv("http.method", "GET"),
                kv("http.scheme", "https"),
                kv("http.target", "/path"),
                kv("http.host", "www.example.org"),
            ],
            vec![
                (URL, json!("https://www.example.org/path")),
                (NAME, json!("GET /path")),
            ],
        ),
        (
            "py-span-server-http-url-server-name",
            SpanKind::Server,
            vec![
                kv("http.method", "GET"),
                kv("http.scheme", "https"),
                kv("http.target", "/path"),
                kv("net.host.port", "35555"),
                kv("http.server_name", "example.com"),
            ],
            vec![(URL, json!("https://example.com:35555/path"))],
        ),
        (
            "py-span-server-http-url-host-name",
            SpanKind::Server,
            vec![
                kv("http.method", "GET"),
                kv("http.scheme", "https"),
                kv("http.target", "/path"),
                kv("net.host.port", 35555),
                kv("net.host.name", "localhost"),
            ],
            vec![(URL, json!("https://localhost:35555/path"))],
        ),
        (
            "py-span-server-http-operation-name-from-url",
            SpanKind::Server,
            vec![
                kv("http.method", "GET"),
                kv(
                    "http.url",
                    "https://www.wikipedia.org/wiki/Rabbit/test?x=1#f",
                ),
            ],
            vec![
                (NAME, json!("GET /wiki/Rabbit/test")),
                (OP_NAME, json!("GET /wiki/Rabbit/test")),
            ],
        ),
        (
            "operation name from a URL without a path",
            SpanKind::Server,
            vec![kv("http.method", "GET"), kv("http.url", "https://h.org")],
            vec![(NAME, json!("GET /"))],
        ),
        (
            "py-span-server-http-stable-url",
            SpanKind::Server,
            vec![
                kv("http.request.method", "GET"),
                kv("url.scheme", "https"),
                kv("server.address", "www.example.org"),
                kv("server.port", 80),
                kv("url.path", "/path"),
                kv("url.query", "query"),
                kv("http.response.status_code", 404),
                kv("user_agent.original", "stable-agent"),
                kv("client.address", "10.0.0.1"),
                kv("http.client_ip", "10.0.0.2"),
            ],
            vec![
                (URL, json!("https://www.example.org:80/path?query")),
                (NAME, json!("GET /path")),
                (RESPONSE, json!("404")),
                (SUCCESS, json!(false)),
                (USER_AGENT_TAG, json!("stable-agent")),
                (LOCATION, json!("10.0.0.1")),
                (PROPS, Json::Null),
            ],
        ),
        (
            "R: no second ? before url.query",
            SpanKind::Server,
            vec![
                kv("http.request.method", "POST"),
                kv("url.scheme", "http"),
                kv("server.address", "h"),
                kv("url.path", "/p"),
                kv("url.query", "?a=1"),
                kv("http.route", "/p/{id}"),
            ],
            vec![
                (URL, json!("http://h/p?a=1")),
                (NAME, json!("POST /p/{id}")),
            ],
        ),
        (
            "R: microsoft.client.ip first",
            SpanKind::Server,
            vec![
                kv("client.address", "10.0.0.1"),
                kv("microsoft.client.ip", "10.0.0.9"),
            ],
            vec![(LOCATION, json!("10.0.0.9")), (PROPS, Json::Null)],
        ),
        (
            "py-span-server-messaging",
            SpanKind::Server,
            vec![
                kv("messaging.system", "messaging"),
                kv("net.peer.name", "test name"),
                kv("net.peer.ip", "127.0.0.1"),
                kv("messaging.destination", "celery"),
            ],
            vec![
                (NAME, json!("test")),
                (OP_NAME, json!("test")),
                (LOCATION, json!("127.0.0.1")),
                (SOURCE, json!("test name/celery")),
                (PROPS, Json::Null),
            ],
        ),
        (
            "py-span-server-messaging-source-ip",
            SpanKind::Consumer,
            vec![
                kv("messaging.system", "messaging"),
                kv("net.peer.ip", "127.0.0.1"),
                kv("messaging.destination", "celery"),
            ],
            vec![(SOURCE, json!("127.0.0.1/celery"))],
        ),
        (
            "py-span-server-messaging-source-destination",
            SpanKind::Consumer,
            vec![
                kv("messaging.system", "messaging"),
                kv("messaging.destination", "celery"),
            ],
            vec![(SOURCE, json!("celery"))],
        ),
        (
            "stable messaging destination",
            SpanKind::Consumer,
            vec![
                kv("messaging.system", "kafka"),
                kv("messaging.destination.name", "orders"),
                kv("client.address", "broker"),
            ],
            vec![(SOURCE, json!("broker/orders"))],
        ),
        (
            "js-span-grpc-server",
            SpanKind::Server,
            vec![kv("rpc.system", "grpc"), kv("rpc.grpc.status_code", 14)],
            vec![(RESPONSE, json!("14")), (SUCCESS, json!(true))],
        ),
    ]);
}

#[test]
fn azure_sdk_consumer_requests() {
    // py-span-request-azure: two links, enqueued 1e12 and 3e12 ms, start 4e12 ms.
    let link = |enqueued: i64| {
        Link::new(
            context(TRACE_ID + 1, SPAN_ID + 1),
            vec![kv("enqueuedTime", enqueued)],
            0,
        )
    };
    let mut s = span(
        SpanKind::Consumer,
        vec![
            kv("az.namespace", "Microsoft.EventHub"),
            kv("peer.address", "Test_peer"),
            kv("message_bus.destination", "/myeventhub"),
        ],
    );
    s.start_time = at(4_000_000_000_000_000_000);
    s.end_time = at(4_000_000_001_001_000_000);
    s.links.links = vec![link(1_000_000_000_000), link(3_000_000_000_000)];
    let json = convert_one(&s);
    check(
        &json,
        &[
            (NAME, json!("test")),
            (OP_NAME, json!("test")),
            (RESPONSE, json!("0")),
            (SOURCE, json!("Test_peer//myeventhub")),
            (
                MEASUREMENTS,
                json!({ "timeSinceEnqueued": 2_000_000_000_000.0 }),
            ),
        ],
        "py-span-request-azure",
    );
    let props = json.pointer(PROPS).and_then(Json::as_object);
    assert_eq!(props.map(|p| p.len()), Some(3), "{json:#}");

    s.links.links = vec![link(5_000_000_000_000), link(6_000_000_000_000)];
    let json = convert_one(&s);
    assert_eq!(
        json.pointer(MEASUREMENTS),
        Some(&json!({ "timeSinceEnqueued": 0.0 }))
    );

    // Links without an integer enqueuedTime count in the denominator (PY).
    s.links.links = vec![
        link(2_000_000_000_000),
        Link::new(context(1, 1), vec![kv("enqueuedTime", "x")], 0),
    ];
    let json = convert_one(&s);
    assert_eq!(
        json.pointer(MEASUREMENTS),
        Some(&json!({ "timeSinceEnqueued": 1_000_000_000_000.0 }))
    );
}

#[test]
fn client_http_spans() {
    run(vec![
        (
            "py-span-client-http-basic",
            SpanKind::Client,
            vec![
                kv("http.method", "GET"),
                kv("http.url", "https://www.wikipedia.org/wiki/Rabbit"),
                kv("http.status_code", 200),
                kv("peer.service", "service"),
                kv("http.user_agent", "agent"),
            ],
            vec![
                (NAME, json!("GET /wiki/Rabbit")),
                (OP_NAME, json!("GET /wiki/Rabbit")),
                (TYPE, json!("HTTP")),
                (TARGET, json!("service")),
                (DATA, json!("https://www.wikipedia.org/wiki/Rabbit")),
                (RESULT, json!("200")),
                (USER_AGENT_TAG, json!("agent")),
                (SUCCESS, json!(true)),
                (PROPS, Json::Null),
                (LOCATION, Json::Null),
            ],
        ),
        (
            "py-span-client-http-name-empty-path",
            SpanKind::Client,
            vec![
                kv("http.method", "GET"),
                kv("http.scheme", "https"),
                kv("http.url", "https://www.example.com"),
            ],
            vec![
                (NAME, json!("GET /")),
                (TARGET, json!("www.example.com")),
                (RESULT, json!("0")),
            ],
        ),
        (
            "py-span-client-http-target-port",
            SpanKind::Client,
            vec![
                kv("http.method", "GET"),
                kv("http.scheme", "https"),
                kv("http.url", "https://www.example.com:1234"),
            ],
            vec![(TARGET, json!("www.example.com:1234"))],
        ),
        (
            "py-span-client-http-target-default-port",
            SpanKind::Client,
            vec![
                kv("http.method", "GET"),
                kv("http.scheme", "http"),
                kv("http.url", "http://www.example.com:80"),
            ],
            vec![(TARGET, json!("www.example.com"))],
        ),
        (
            "py-span-client-http-target-host",
            SpanKind::Client,
            vec![
                kv("http.method", "GET"),
                kv("http.scheme", "http"),
                kv("http.url", "http://www.example.com:80"),
                kv("http.host", "www.wikipedia.org:1234"),
            ],
            vec![(TARGET, json!("www.wikipedia.org:1234"))],
        ),
        (
            "py-span-client-http-target-host-default-port",
            SpanKind::Client,
            vec![
                kv("http.method", "GET"),
                kv("http.scheme", "https"),
                kv("http.url", "http://www.example.com:80"),
                kv("http.host", "www.wikipedia.org:443"),
            ],
            vec![(TARGET, json!("www.wikipedia.org"))],
        ),
        (
            "py-span-client-http-url-host",
            SpanKind::Client,
            vec![
                kv("http.method", "GET"),
                kv("http.scheme", "https"),
                kv("http.host", "www.wikipedia.org"),
                kv("http.target", "/path/12314/?q=ddds#123"),
            ],
            vec![
                (
                    DATA,
                    json!("https://www.wikipedia.org/path/12314/?q=ddds#123"),
                ),
                (NAME, json!("GET /path/12314/")),
            ],
        ),
        (
            "py-span-client-http-url-peer-name",
            SpanKind::Client,
            vec![
                kv("http.method", "GET"),
                kv("http.scheme", "https"),
                kv("net.peer.port", "8080"),
                kv("net.peer.name", "example.com"),
                kv("http.target", "/path/12314/?q=ddds#123"),
            ],
            vec![
                (
                    DATA,
                    json!("https://example.com:8080/path/12314/?q=ddds#123"),
                ),
                (TARGET, json!("example.com:8080")),
            ],
        ),
        (
            "py-span-client-http-url-peer-ip",
            SpanKind::Client,
            vec![
                kv("http.method", "GET"),
                kv("http.scheme", "https"),
                kv("net.peer.port", 8080),
                kv("net.peer.ip", "192.168.0.1"),
                kv("http.target", "/path/12314/?q=ddds#123"),
            ],
            vec![(
                DATA,
                json!("https://192.168.0.1:8080/path/12314/?q=ddds#123"),
            )],
        ),
        (
            "py-span-client-http-result-code-empty",
            SpanKind::Client,
            vec![
                kv("http.method", "GET"),
                kv("http.url", "https://www.example.com"),
                kv("http.status_code", ""),
            ],
            vec![(RESULT, json!("0")), (SUCCESS, json!(true))],
        ),
        (
            "dependency success ignores the HTTP status",
            SpanKind::Client,
            vec![
                kv("http.request.method", "GET"),
                kv("url.full", "https://h.com/a"),
                kv("http.response.status_code", 503),
            ],
            vec![(RESULT, json!("503")), (SUCCESS, json!(true))],
        ),
        (
            "R: scheme from the URL, default port dropped",
            SpanKind::Client,
            vec![
                kv("http.request.method", "GET"),
                kv("url.full", "https://h.com:443/a"),
            ],
            vec![(TARGET, json!("h.com")), (NAME, json!("GET /a"))],
        ),
        (
            "R: server.address without server.port",
            SpanKind::Client,
            vec![
                kv("http.request.method", "GET"),
                kv("url.full", "https://h.com:8443/a"),
                kv("server.address", "h.com"),
            ],
            vec![(TARGET, json!("h.com"))],
        ),
        (
            "stable server.address and port",
            SpanKind::Client,
            vec![
                kv("http.request.method", "GET"),
                kv("url.full", "https://h.com:8443/a"),
                kv("server.address", "h.com"),
                kv("server.port", 8443),
                kv("peer.service", "ignored"),
            ],
            vec![(TARGET, json!("h.com:8443"))],
        ),
        (
            "stable server.port equal to the default",
            SpanKind::Client,
            vec![
                kv("http.request.method", "GET"),
                kv("url.full", "https://h.com/a"),
                kv("url.scheme", "https"),
                kv("server.address", "h.com"),
                kv("server.port", 443),
            ],
            vec![(TARGET, json!("h.com"))],
        ),
        (
            "R: dependency URL from stable attributes",
            SpanKind::Client,
            vec![
                kv("http.request.method", "PUT"),
                kv("url.scheme", "https"),
                kv("server.address", "api.example.com"),
                kv("server.port", 8080),
                kv("url.path", "/v1/items"),
                kv("url.query", "x=1"),
                kv("http.response.status_code", 201),
                kv("url.template", "/v1/{kind}"),
                kv("error.type", "none"),
                kv("network.protocol.version", "1.1"),
            ],
            vec![
                (DATA, json!("https://api.example.com:8080/v1/items?x=1")),
                (NAME, json!("PUT /v1/items")),
                (TARGET, json!("api.example.com:8080")),
                (RESULT, json!("201")),
                (PROPS, Json::Null),
            ],
        ),
        (
            "credentials never reach the target",
            SpanKind::Client,
            vec![
                kv("http.method", "GET"),
                kv("http.url", "https://user:pw@h.com:8080/a"),
            ],
            vec![(TARGET, json!("h.com:8080"))],
        ),
        (
            "IPv6 host",
            SpanKind::Client,
            vec![
                kv("http.method", "GET"),
                kv("http.url", "http://[::1]:80/a"),
            ],
            vec![(TARGET, json!("[::1]"))],
        ),
        (
            "no URL at all",
            SpanKind::Client,
            vec![kv("http.method", "GET"), kv("net.peer.name", "peer")],
            vec![
                (NAME, json!("GET /")),
                (DATA, Json::Null),
                (TARGET, json!("peer")),
            ],
        ),
    ]);
}

#[test]
fn client_db_spans() {
    run(vec![
        (
            "py-span-client-db-basic",
            SpanKind::Client,
            vec![
                kv("db.system", "db2 system"),
                kv("peer.service", "service"),
                kv("db.statement", "SELECT * from test"),
            ],
            vec![
                (NAME, json!("test")),
                (TYPE, json!("db2 system")),
                (TARGET, json!("service")),
                (DATA, json!("SELECT * from test")),
                (RESULT, json!("0")),
                (PROPS, Json::Null),
            ],
        ),
        (
            "py-span-client-db-operation",
            SpanKind::Client,
            vec![
                kv("db.system", "postgresql"),
                kv("peer.service", "service"),
                kv("db.operation", "SELECT"),
            ],
            vec![(DATA, json!("SELECT"))],
        ),
        (
            "py-span-client-db-target-service-db",
            SpanKind::Client,
            vec![
                kv("db.system", "postgresql"),
                kv("db.statement", "SELECT"),
                kv("db.name", "testDb"),
                kv("peer.service", "service"),
            ],
            vec![
                (TARGET, json!("service|testDb")),
                (TYPE, json!("postgresql")),
            ],
        ),
        (
            "py-span-client-db-target-db",
            SpanKind::Client,
            vec![
                kv("db.system", "postgresql"),
                kv("db.statement", "SELECT"),
                kv("db.name", "testDb"),
            ],
            vec![(TARGET, json!("testDb"))],
        ),
        (
            "py-span-client-db-target-system",
            SpanKind::Client,
            vec![kv("db.system", "postgresql")],
            vec![(TARGET, json!("postgresql")), (DATA, Json::Null)],
        ),
        (
            "py-span-client-db-stable",
            SpanKind::Client,
            vec![
                kv("db.system.name", "postgresql"),
                kv("db.system", "ignored"),
                kv("server.address", "stable-server"),
                kv("server.port", 15432),
                kv("db.namespace", "stableDb"),
                kv("db.name", "legacyDb"),
                kv("db.query.text", "SELECT 1"),
                kv("db.statement", "legacy"),
            ],
            vec![
                (TARGET, json!("stable-server:15432|stableDb")),
                (TYPE, json!("postgresql")),
                (DATA, json!("SELECT 1")),
            ],
        ),
        (
            "stable server port equal to the DB default",
            SpanKind::Client,
            vec![
                kv("db.system.name", "postgresql"),
                kv("server.address", "pg"),
                kv("server.port", 5432),
                kv("db.namespace", "app"),
                kv("db.operation.name", "SELECT"),
            ],
            vec![(TARGET, json!("pg|app")), (DATA, json!("SELECT"))],
        ),
        (
            "legacy peer port equal to the DB default",
            SpanKind::Client,
            vec![
                kv("db.system", "mysql"),
                kv("net.peer.name", "db"),
                kv("net.peer.port", 3306),
            ],
            vec![(TARGET, json!("db")), (TYPE, json!("mysql"))],
        ),
        (
            "legacy peer port not the default",
            SpanKind::Client,
            vec![
                kv("db.system", "redis"),
                kv("net.peer.ip", "10.1.1.1"),
                kv("net.peer.port", 6380),
            ],
            vec![(TARGET, json!("10.1.1.1:6380")), (TYPE, json!("redis"))],
        ),
    ]);
    for (system, want) in [
        ("mssql", "SQL"),
        ("microsoft.sql_server", "SQL"),
        ("sqlite", "SQL"),
        ("oracle.db", "SQL"),
        ("other_sql", "SQL"),
        ("mysql", "mysql"),
        ("postgresql", "postgresql"),
        ("mongodb", "mongodb"),
        ("redis", "redis"),
        ("cosmosdb", "cosmosdb"),
    ] {
        let json = convert_one(&span(
            SpanKind::Client,
            vec![
                kv("db.system", system),
                kv("db.statement", "SELECT"),
                kv("db.name", "testDb"),
                kv("peer.service", "service"),
            ],
        ));
        assert_eq!(json.pointer(TYPE), Some(&json!(want)), "{system}");
    }
}

#[test]
fn client_rpc_messaging_azure_genai_spans() {
    run(vec![
        (
            "py-span-client-rpc-basic (R: the rpc.system value)",
            SpanKind::Client,
            vec![
                kv("peer.service", "service"),
                kv("rpc.system", "rpc"),
                kv("rpc.service", "Test service"),
            ],
            vec![
                (TYPE, json!("rpc")),
                (TARGET, json!("service")),
                (RESULT, json!("0")),
                (PROPS, Json::Null),
            ],
        ),
        (
            "py-span-client-rpc-target",
            SpanKind::Client,
            vec![kv("rpc.system", "rpc"), kv("rpc.service", "Test service")],
            vec![(TARGET, json!("rpc"))],
        ),
        (
            "js-span-grpc-client (R: GRPC and its status code)",
            SpanKind::Client,
            vec![
                kv("rpc.system", "grpc"),
                kv("rpc.grpc.status_code", 14),
                kv("server.address", "grpc.example.com"),
                kv("server.port", 50051),
            ],
            vec![
                (TYPE, json!("GRPC")),
                (RESULT, json!("14")),
                (TARGET, json!("grpc.example.com:50051")),
            ],
        ),
        (
            "stable rpc.system.name",
            SpanKind::Client,
            vec![
                kv("rpc.system.name", "grpc"),
                kv("rpc.response.status_code", "DEADLINE_EXCEEDED"),
            ],
            vec![
                (TYPE, json!("GRPC")),
                (RESULT, json!("DEADLINE_EXCEEDED")),
                (TARGET, json!("grpc")),
            ],
        ),
        (
            "py-span-client-messaging",
            SpanKind::Client,
            vec![
                kv("messaging.system", "messaging"),
                kv("messaging.destination", "celery"),
            ],
            vec![
                (TYPE, json!("messaging")),
                (TARGET, json!("celery")),
                (PROPS, Json::Null),
            ],
        ),
        (
            "py-span-client-messaging-target-system",
            SpanKind::Client,
            vec![kv("messaging.system", "messaging")],
            vec![(TARGET, json!("messaging"))],
        ),
        (
            "py-span-client-azure-sdk",
            SpanKind::Client,
            vec![
                kv("az.namespace", "Microsoft.EventHub"),
                kv("peer.address", "test_address"),
                kv("message_bus.destination", "test_destination"),
            ],
            vec![
                (TYPE, json!("Microsoft.EventHub")),
                (TARGET, json!("test_address/test_destination")),
                (
                    PROPS,
                    json!({
                        "az.namespace": "Microsoft.EventHub",
                        "message_bus.destination": "test_destination"
                    }),
                ),
            ],
        ),
        (
            "py-span-producer-messaging",
            SpanKind::Producer,
            vec![
                kv("messaging.system", "messaging"),
                kv("messaging.destination", "celery"),
            ],
            vec![
                (TYPE, json!("Queue Message | messaging")),
                (TARGET, json!("celery")),
                (NAME, json!("test")),
            ],
        ),
        (
            "py-span-producer-messaging-target-system",
            SpanKind::Producer,
            vec![kv("messaging.system", "messaging")],
            vec![(TARGET, json!("messaging"))],
        ),
        (
            "py-span-producer-azure-sdk",
            SpanKind::Producer,
            vec![
                kv("az.namespace", "Microsoft.EventHub"),
                kv("peer.address", "Test_peer"),
                kv("message_bus.destination", "/myeventhub"),
            ],
            vec![
                (TYPE, json!("Queue Message | Microsoft.EventHub")),
                (TARGET, json!("Test_peer//myeventhub")),
            ],
        ),
        (
            "producer without attributes",
            SpanKind::Producer,
            vec![],
            vec![(TYPE, json!("Queue Message")), (TARGET, Json::Null)],
        ),
        (
            "py-span-internal-azure-sdk",
            SpanKind::Internal,
            vec![kv("az.namespace", "Microsoft.EventHub")],
            vec![
                (TYPE, json!("InProc | Microsoft.EventHub")),
                (PROPS, json!({ "az.namespace": "Microsoft.EventHub" })),
            ],
        ),
        (
            "internal gen_ai",
            SpanKind::Internal,
            vec![
                kv("gen_ai.system", "openai"),
                kv("az.namespace", "Microsoft.EventHub"),
            ],
            vec![(TYPE, json!("GenAI | openai"))],
        ),
        (
            "py-span-client-genai",
            SpanKind::Client,
            vec![kv("gen_ai.system", "openai")],
            vec![
                (TYPE, json!("GenAI | openai")),
                (TARGET, json!("openai")),
                (PROPS, json!({ "gen_ai.system": "openai" })),
            ],
        ),
        (
            "py-span-client-http-genai",
            SpanKind::Client,
            vec![
                kv("gen_ai.system", "az.ai.inference"),
                kv("http.request.method", "POST"),
                kv("url.full", "https://my.openai.azure.com/chat/completions"),
            ],
            vec![
                (TYPE, json!("GenAI | az.ai.inference")),
                (TARGET, json!("my.openai.azure.com")),
                (NAME, json!("POST /chat/completions")),
            ],
        ),
        (
            "stable gen_ai.provider.name",
            SpanKind::Client,
            vec![kv("gen_ai.provider.name", "anthropic")],
            vec![
                (TYPE, json!("GenAI | anthropic")),
                (TARGET, json!("anthropic")),
            ],
        ),
        (
            "js-span-generic-client (PY: N/A)",
            SpanKind::Client,
            vec![],
            vec![(TYPE, json!("N/A")), (TARGET, Json::Null)],
        ),
    ]);
}

#[test]
fn counted_spans_are_marked_for_the_service() {
    let marked = "/data/baseData/properties/_MS.ProcessedByMetricExtractors";
    let marker = || kv("_MS.ProcessedByMetricExtractors", "True");
    let cases = [
        (SpanKind::Server, "(Name:'Requests', Ver:'1.1')"),
        (SpanKind::Consumer, "(Name:'Requests', Ver:'1.1')"),
        (SpanKind::Client, "(Name:'Dependencies', Ver:'1.1')"),
        (SpanKind::Producer, "(Name:'Dependencies', Ver:'1.1')"),
        (SpanKind::Internal, "(Name:'Dependencies', Ver:'1.1')"),
    ];
    for (kind, want) in cases {
        let on = convert_one(&span(kind.clone(), vec![marker(), kv("db.system", "x")]));
        assert_eq!(on.pointer(marked), Some(&json!(want)), "{kind:?}");
        let off = convert_one(&span(kind.clone(), vec![kv("db.system", "x")]));
        assert_eq!(off.pointer(marked), None, "{kind:?}");
    }
}

/// A span event as `tracing-opentelemetry` makes it from a `tracing` event.
fn tracing_event(message: &str, level: &'static str, extra: Vec<KeyValue>) -> Event {
    let mut attrs = vec![kv("level", level), kv("target", "my_service::handlers")];
    attrs.extend(extra);
    Event::new(message.to_owned(), UNIX_EPOCH, attrs, 0)
}

#[test]
fn tracing_events_carry_their_level_and_can_be_left_to_the_log_bridge() {
    let mut s = span(SpanKind::Server, vec![]);
    s.events.events = vec![
        tracing_event("started", "INFO", vec![kv("user", "u1")]),
        tracing_event("slow", "WARN", vec![]),
        tracing_event("details", "DEBUG", vec![]),
        tracing_event("fine grained", "TRACE", vec![]),
        tracing_event("failed", "ERROR", vec![]),
        tracing_event("exception", "ERROR", vec![kv("exception.message", "boom")]),
        // Made with the OpenTelemetry API: not from `tracing` (no target).
        Event::new("checkpoint", UNIX_EPOCH, vec![kv("level", "INFO")], 0),
        Event::new("plain", UNIX_EPOCH, vec![], 0),
    ];
    let items = convert_events(&s, &SharedTags::default(), true);
    let severities: Vec<Json> = items[1..]
        .iter()
        .map(|i| i["data"]["baseData"]["severityLevel"].clone())
        .collect();
    assert_eq!(
        severities,
        [
            json!("Information"),
            json!("Warning"),
            json!("Verbose"),
            json!("Verbose"),
            json!("Error"),
            json!("Error"),
            json!("Information"),
            Json::Null,
        ]
    );
    assert_eq!(items[1]["data"]["baseData"]["message"], "started");
    assert_eq!(items[1]["data"]["baseData"]["properties"]["user"], "u1");
    assert_eq!(items[6]["data"]["baseType"], "ExceptionData");

    // With the log bridge on, only the OpenTelemetry API's events remain.
    let items = convert_events(&s, &SharedTags::default(), false);
    assert_eq!(items.len(), 3, "{items:#?}");
    assert_eq!(items[1]["data"]["baseData"]["message"], "checkpoint");
    assert_eq!(items[2]["data"]["baseData"]["message"], "plain");
}

#[test]
fn axum_tracing_opentelemetry_server_spans() {
    // What axum-tracing-opentelemetry 0.42 records for plain HTTP/1.1: an empty scheme, and
    // for an unmatched route no `http.route` (the span's name is then the bare method).
    let attrs = |route: Option<&'static str>, path: &'static str| {
        let mut v = vec![
            kv("http.request.method", "GET"),
            kv("network.protocol.version", "1.1"),
            kv("server.address", "localhost:3000"),
            kv("http.client.address", "10.1.2.3"),
            kv("user_agent.original", "curl/8"),
            kv("url.path", path),
            kv("url.query", "q=1"),
            kv("url.scheme", ""),
            kv("http.response.status_code", 404),
        ];
        if let Some(r) = route {
            v.push(kv("http.route", r));
        }
        v
    };
    let mut unmatched = span(SpanKind::Server, attrs(None, "/no/such"));
    unmatched.name = "GET".into();
    let v = convert_one(&unmatched);
    let base = &v["data"]["baseData"];
    assert_eq!(base["name"], "GET /no/such");
    assert_eq!(v["tags"]["ai.operation.name"], "GET /no/such");
    assert_eq!(base["url"], "http://localhost:3000/no/such?q=1");
    assert_eq!(base["responseCode"], "404");
    assert_eq!(base["success"], false);
    assert_eq!(v["tags"]["ai.location.ip"], "10.1.2.3");

    let mut matched = span(SpanKind::Server, attrs(Some("/items/{id}"), "/items/7"));
    matched.name = "GET /items/{id}".into();
    let v = convert_one(&matched);
    assert_eq!(v["data"]["baseData"]["name"], "GET /items/{id}");
    assert_eq!(
        v["data"]["baseData"]["url"],
        "http://localhost:3000/items/7?q=1"
    );

    // Without any host, no URL, but still the path in the name (from `http.target` too).
    let mut bare = span(
        SpanKind::Server,
        vec![kv("http.method", "POST"), kv("http.target", "/submit?x=1")],
    );
    bare.name = "POST".into();
    let v = convert_one(&bare);
    assert_eq!(v["data"]["baseData"]["name"], "POST /submit");
    assert_eq!(v["data"]["baseData"].get("url"), None);
}

#[test]
fn reqwest_tracing_client_spans() {
    // What reqwest-tracing 0.7 records (`otel.name` and `otel.kind` are read by
    // tracing-opentelemetry into the span's name and kind, not attributes).
    let mut s = span(
        SpanKind::Client,
        vec![
            kv("http.request.method", "GET"),
            kv("url.scheme", "http"),
            kv("server.address", "127.0.0.1"),
            kv("server.port", 8080),
            kv("user_agent.original", ""),
            kv("url.full", "http://127.0.0.1:8080/items/7"),
            kv("http.response.status_code", 200),
            kv("http.method", "GET"),
            kv("http.scheme", "http"),
            kv("http.host", "127.0.0.1"),
            kv("net.host.port", 8080),
        ],
    );
    s.name = "GET".into();
    let v = convert_one(&s);
    let base = &v["data"]["baseData"];
    assert_eq!(base["name"], "GET /items/7");
    assert_eq!(base["type"], "HTTP");
    assert_eq!(base["target"], "127.0.0.1:8080");
    assert_eq!(base["data"], "http://127.0.0.1:8080/items/7");
    assert_eq!(base["resultCode"], "200");
}

#[test]
fn properties_and_measurements() {
    let s = |v: &str| StringValue::from(v.to_owned());
    let gen_ai = "m".repeat(10_000);
    let json = convert_one(&span(
        SpanKind::Client,
        vec![
            kv("test", "asd"),
            kv("http.method", "GET"),
            kv("http.url", "https://www.wikipedia.org/wiki/Rabbit"),
            kv("http.status_code", 200),
            kv("flag", true),
            kv("count", 3),
            kv("ratio", 0.25),
            kv("list", Value::Array(Array::String(vec![s("a"), s("b")]))),
            kv("ints", Value::Array(Array::I64(vec![1, 2, 3]))),
            kv("_MS.sampleRate", 50),
            kv("microsoft.sample_rate", 25),
            kv(
                "microsoft.custom_measurements",
                r#"{"m1": 1.5, "m2": true}"#,
            ),
            kv("enduser.id", "auth"),
            kv("enduser.pseudo.id", "anon"),
            kv("session.id", "sess"),
            kv("user_agent.synthetic.type", "bot"),
            kv("gen_ai.input.messages", gen_ai.clone()),
            kv("long", "v".repeat(9000)),
        ],
    ));
    let props = json.pointer(PROPS).cloned().unwrap_or_default();
    let keys: Vec<&str> = props
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(
        keys,
        // serde_json's map is sorted by key.
        [
            "count",
            "flag",
            "gen_ai.input.messages",
            "ints",
            "list",
            "long",
            "ratio",
            "test"
        ]
    );
    assert_eq!(props["test"], "asd");
    assert_eq!(props["flag"], "True");
    assert_eq!(props["count"], "3");
    assert_eq!(props["ratio"], "0.25");
    assert_eq!(props["list"], r#"["a","b"]"#);
    assert_eq!(props["ints"], "[1,2,3]");
    assert_eq!(
        props["gen_ai.input.messages"].as_str(),
        Some(gen_ai.as_str())
    );
    assert_eq!(props["long"].as_str().map(str::len), Some(8192));
    check(
        &json,
        &[
            (MEASUREMENTS, json!({ "m1": 1.5 })),
            (SAMPLE_RATE_FIELD, json!(25.0)),
            ("/tags/ai.user.authUserId", json!("auth")),
            ("/tags/ai.user.id", json!("anon")),
            ("/tags/ai.session.id", json!("sess")),
            ("/tags/ai.operation.syntheticSource", json!("True")),
        ],
        "properties",
    );
}

#[test]
fn sample_rate_and_context_tags() {
    let json = convert_one(&span(SpanKind::Client, vec![kv("_MS.sampleRate", 50)]));
    assert_eq!(json.pointer(SAMPLE_RATE_FIELD), Some(&json!(50.0)));
    assert!(json.pointer(PROPS).is_none());
    for attrs in [
        vec![kv("_MS.sampleRate", 100)],
        vec![kv("microsoft.sample_rate", 100.0)],
        vec![],
    ] {
        let json = convert_one(&span(SpanKind::Server, attrs));
        assert!(json.pointer(SAMPLE_RATE_FIELD).is_none());
        assert!(json.pointer(PROPS).is_none());
    }
    let json = convert_one(&span(
        SpanKind::Server,
        vec![
            kv("session.id", 42),
            kv("http.user_agent", "Mozilla AlwaysOn"),
        ],
    ));
    assert!(json.pointer("/tags/ai.session.id").is_none());
    assert_eq!(json["tags"]["ai.operation.syntheticSource"], "True");
}

#[test]
fn shared_tags_are_included_and_own_tags_win() {
    let mut shared = SharedTags::default();
    shared.set(tag::CLOUD_ROLE, "role");
    shared.set(tag::LOCATION_IP, "0.0.0.0");
    let s = span(SpanKind::Server, vec![kv("client.address", "1.2.3.4")]);
    let json = convert_with(&s, &shared);
    assert_eq!(json[0]["tags"]["ai.cloud.role"], "role");
    assert_eq!(json[0]["tags"]["ai.location.ip"], "1.2.3.4");
}

#[test]
fn links() {
    let mut s = span(
        SpanKind::Client,
        vec![
            kv("http.method", "GET"),
            kv("http.url", "https://www.wikipedia.org/wiki/Rabbit"),
            kv("http.status_code", 200),
        ],
    );
    s.links.links = vec![Link::new(context(TRACE_ID + 1, SPAN_ID + 1), vec![], 0)];
    let json = convert_one(&s);
    assert_eq!(
        json.pointer(PROPS),
        Some(&json!({
            "_MS.links": r#"[{"operation_Id":"1bbd944a73a05d89eab5d3740a213ee8","id":"a6f5d48acb4d31da"}]"#
        }))
    );
    s.links.links = (0..150u64)
        .map(|i| Link::new(context(u128::from(i) + 1, i + 1), vec![], 0))
        .collect();
    let json = convert_one(&s);
    let links = json
        .pointer("/data/baseData/properties/_MS.links")
        .and_then(Json::as_str)
        .unwrap_or_default();
    assert!(links.len() <= 8192);
    let parsed: Vec<Json> = serde_json::from_str(links).unwrap_or_default();
    assert_eq!(parsed.len(), 100);
    assert_eq!(
        parsed[99],
        json!({ "operation_Id": format!("{:032x}", 100), "id": format!("{:016x}", 100) })
    );
}

#[test]
fn events() {
    let mut s = span(
        SpanKind::Client,
        vec![kv("_MS.sampleRate", 50), kv("session.id", "span-session")],
    );
    s.parent_span_id = SpanId::from(SPAN_ID + 1);
    let event_ns = START_NS + 5_000;
    s.events.events = vec![
        Event::new(
            "exception",
            at(event_ns),
            vec![
                kv("exception.type", "ZeroDivisionError"),
                kv("exception.message", "zero division error"),
                kv(
                    "exception.stacktrace",
                    "Traceback: ZeroDivisionError, division by zero",
                ),
                kv("exception.escaped", "True"),
            ],
            0,
        ),
        Event::new("exception", at(event_ns), vec![], 0),
        Event::new(
            "test event",
            at(event_ns),
            vec![
                kv("test", "asd"),
                kv("session.id", "event-session"),
                kv("microsoft.custom_measurements", r#"{"n": 2}"#),
            ],
            0,
        ),
    ];
    let all = convert(&s);
    assert_eq!(all.len(), 4);
    for event in &all[1..] {
        check(
            event,
            &[
                ("/time", json!("2019-12-04T21:18:36.027618Z")),
                ("/iKey", json!(IKEY)),
                ("/tags/ai.operation.id", json!(TRACE_HEX)),
                ("/tags/ai.operation.parentId", json!(SPAN_HEX)),
                (OP_NAME, Json::Null),
                (SAMPLE_RATE_FIELD, json!(50.0)),
            ],
            "event",
        );
    }
    assert_eq!(
        all[1]["data"],
        json!({ "baseType": "ExceptionData", "baseData": { "ver": 2, "exceptions": [{
            "typeName": "ZeroDivisionError",
            "message": "zero division error",
            "hasFullStack": true,
            "stack": "Traceback: ZeroDivisionError, division by zero"
        }]}})
    );
    assert_eq!(all[1]["name"], "Microsoft.ApplicationInsights.Exception");
    assert_eq!(all[1]["tags"]["ai.session.id"], "span-session");
    assert_eq!(
        all[2]["data"]["baseData"]["exceptions"],
        json!([{ "typeName": "Exception", "message": "Exception", "hasFullStack": false }])
    );
    assert_eq!(
        all[3]["data"],
        json!({ "baseType": "MessageData", "baseData": {
            "ver": 2, "message": "test event",
            "properties": { "test": "asd" }, "measurements": { "n": 2.0 }
        }})
    );
    assert_eq!(all[3]["name"], "Microsoft.ApplicationInsights.Message");
    assert_eq!(all[3]["tags"]["ai.session.id"], "event-session");
}

#[test]
fn resource_metric() {
    let shared = SharedTags::default();
    let cx = Context {
        ikey: IKEY,
        tags: &shared,
    };
    let now = at(START_NS);
    let resource = Resource::builder()
        .with_attributes([
            kv("service.name", "svc"),
            kv("_MS.hidden", "x"),
            kv("deployment.environment.name", "prod"),
            kv("flag", false),
        ])
        .build();
    let json = resource_envelope(&resource, &cx, now)
        .map(|e| serde_json::to_value(&e).unwrap_or_default())
        .unwrap_or_default();
    assert_eq!(
        json,
        json!({
            "name": "Microsoft.ApplicationInsights.Metric",
            "time": START,
            "iKey": IKEY,
            "tags": {},
            "data": { "baseType": "MetricData", "baseData": {
                "ver": 2,
                "metrics": [{ "name": "_OTELRESOURCE_", "value": 1.0 }],
                "properties": {
                    "deployment.environment.name": "prod",
                    "flag": "False",
                    "service.name": "svc"
                }
            }}
        })
    );
    let sdk_only = Resource::builder_empty()
        .with_attributes([kv("telemetry.sdk.name", "opentelemetry")])
        .build();
    assert!(resource_envelope(&sdk_only, &cx, now).is_none());
    assert!(resource_envelope(&Resource::builder_empty().build(), &cx, now).is_none());
}

#[test]
fn url_helpers() {
    let table = [
        (
            "https://h.com:8080/a/b?q#f",
            ("https", "h.com:8080", "/a/b"),
        ),
        ("http://h", ("http", "h", "")),
        ("/just/path?x", ("", "", "/just/path")),
        ("//h/p", ("", "h", "/p")),
        ("mailto:x@y", ("mailto", "", "x@y")),
        ("1http://x/y", ("", "", "1http://x/y")),
        ("", ("", "", "")),
    ];
    for (url, (scheme, netloc, path)) in table {
        assert_eq!(
            split_url(url),
            UrlParts {
                scheme,
                netloc,
                path
            },
            "{url}"
        );
    }
    let table = [
        ("h.com:80", ("h.com", Some(80))),
        ("h.com", ("h.com", None)),
        ("u:p@h.com:8080", ("h.com", Some(8080))),
        ("[::1]:443", ("[::1]", Some(443))),
        ("[::1]", ("[::1]", None)),
        ("h.com:http", ("h.com:http", None)),
        ("h.com:99999", ("h.com:99999", None)),
        ("h.com:+80", ("h.com:+80", None)),
        ("", ("", None)),
    ];
    for (netloc, want) in table {
        assert_eq!(split_host_port(netloc), want, "{netloc}");
    }
}

fn arb_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        any::<String>(),
        "[\\x00-\\x1f\"\\\\é😀a-z./:@?#\\[\\]]{0,40}",
        // Huge, multi-byte: over every limit.
        (1usize..3, prop::sample::select(vec!['a', 'é', '😀']))
            .prop_map(|(n, c)| c.to_string().repeat(n * 40_000)),
    ]
}

fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![
        arb_string(),
        prop::sample::select(
            super::super::semconv::Key::ALL
                .iter()
                .map(|k| k.as_str().to_owned())
                .collect::<Vec<_>>()
        ),
        Just("gen_ai.input.messages".to_owned()),
    ]
}

fn arb_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        arb_string().prop_map(Value::from),
        any::<i64>().prop_map(Value::I64),
        prop_oneof![
            any::<f64>(),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(1e308),
            Just(-0.0)
        ]
        .prop_map(Value::F64),
        any::<bool>().prop_map(Value::Bool),
        prop::collection::vec(any::<bool>(), 0..5).prop_map(|v| Value::Array(Array::Bool(v))),
        prop::collection::vec(any::<i64>(), 0..5).prop_map(|v| Value::Array(Array::I64(v))),
        prop::collection::vec(any::<f64>(), 0..5).prop_map(|v| Value::Array(Array::F64(v))),
        prop::collection::vec(arb_string(), 0..3).prop_map(|v| Value::Array(Array::String(
            v.into_iter().map(StringValue::from).collect()
        ))),
    ]
}

fn arb_attrs() -> impl Strategy<Value = Vec<KeyValue>> {
    prop::collection::vec(
        (arb_key(), arb_value()).prop_map(|(k, v)| KeyValue::new(k, v)),
        0..12,
    )
}

fn chars(json: &Json) -> usize {
    json.as_str().map_or(0, |s| s.chars().count())
}

/// Every string field of an envelope is within its limit.
fn assert_limits(env: &Json) {
    let tag_limits = [
        ("ai.cloud.role", 256),
        ("ai.cloud.roleInstance", 256),
        ("ai.device.id", 1024),
        ("ai.device.model", 256),
        ("ai.device.oemName", 256),
        ("ai.device.locale", 64),
        ("ai.device.type", 64),
        ("ai.internal.nodeName", 256),
        ("ai.application.ver", 1024),
        ("ai.internal.sdkVersion", 64),
        ("ai.operation.id", 128),
        ("ai.operation.name", 1024),
        ("ai.operation.parentId", 512),
        ("ai.operation.syntheticSource", 1024),
        ("ai.user.id", 128),
        ("ai.user.authUserId", 1024),
        ("ai.user.userAgent", 1024),
        ("ai.session.id", 64),
        ("ai.location.ip", 46),
    ];
    let tags = env["tags"].as_object().cloned().unwrap_or_default();
    for (key, value) in &tags {
        let max = tag_limits
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, m)| *m)
            .unwrap_or(0);
        assert!(chars(value) <= max, "tag {key}: {}", chars(value));
        assert!(value.is_string());
    }
    let base = &env["data"]["baseData"];
    let field_limits = [
        ("id", 512),
        ("name", 1024),
        ("responseCode", 1024),
        ("resultCode", 1024),
        ("source", 1024),
        ("url", 2048),
        ("data", 8192),
        ("type", 1024),
        ("target", 1024),
        ("message", 32768),
        ("duration", 32),
    ];
    for (field, max) in field_limits {
        assert!(chars(&base[field]) <= max, "{field}");
    }
    for ex in base["exceptions"].as_array().cloned().unwrap_or_default() {
        assert!(chars(&ex["typeName"]) <= 1024);
        assert!(chars(&ex["message"]) <= 32768);
        assert!(chars(&ex["stack"]) <= 32768);
    }
    for (key, value) in base["properties"].as_object().cloned().unwrap_or_default() {
        let max = if key.starts_with("gen_ai.") {
            262_144
        } else {
            8192
        };
        assert!(!key.is_empty() && key.chars().count() <= 150, "key {key}");
        assert!(chars(&value) <= max, "property {key}");
    }
    for (key, value) in base["measurements"]
        .as_object()
        .cloned()
        .unwrap_or_default()
    {
        assert!(!key.is_empty() && key.chars().count() <= 150);
        assert!(value.as_f64().is_some_and(f64::is_finite));
    }
    if let Some(rate) = env.get("sampleRate") {
        assert!(rate.as_f64().is_some_and(|r| r > 0.0 && r < 100.0));
    }
}

fn kind_strategy() -> impl Strategy<Value = SpanKind> {
    prop::sample::select(vec![
        SpanKind::Server,
        SpanKind::Consumer,
        SpanKind::Client,
        SpanKind::Producer,
        SpanKind::Internal,
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_attributes_never_panic_and_respect_limits(
        kind in kind_strategy(),
        name in arb_string(),
        attrs in arb_attrs(),
        event_name in prop_oneof![Just("exception".to_owned()), arb_string()],
        event_attrs in arb_attrs(),
        link_attrs in arb_attrs(),
    ) {
        let mut s = span(kind, attrs);
        s.name = name.into();
        s.events.events = vec![Event::new(event_name, at(START_NS), event_attrs, 0)];
        s.links.links = vec![Link::new(context(1, 2), link_attrs, 0)];
        let all = convert(&s);
        prop_assert_eq!(all.len(), 2);
        for env in &all {
            assert_limits(env);
        }
    }

    /// The whole path the exporter takes (convert, then encode, which shrinks items over the
    /// service's 64 KiB) gives items the contract check of the local ingestion server accepts.
    #[cfg(feature = "testing")]
    #[test]
    fn arbitrary_attributes_always_give_items_the_contract_accepts(
        kind in kind_strategy(),
        name in arb_string(),
        attrs in arb_attrs(),
        event_name in prop_oneof![Just("exception".to_owned()), arb_string()],
        event_attrs in arb_attrs(),
    ) {
        let mut s = span(kind, attrs);
        s.name = name.into();
        s.start_time = SystemTime::now();
        s.end_time = s.start_time + std::time::Duration::from_millis(3);
        s.events.events = vec![Event::new(event_name, s.start_time, event_attrs, 0)];
        let shared = SharedTags::default();
        let cx = Context { ikey: IKEY, tags: &shared };
        let mut envelopes = Vec::new();
        span_to_envelopes(&s, &cx, true, &mut envelopes);
        let items = crate::transmit::encode(envelopes);
        prop_assert_eq!(items.len(), 2, "no item may be dropped");
        for i in 0..items.len() {
            let json: Json = serde_json::from_slice(items.get(i).unwrap_or_default())
                .unwrap_or_default();
            let verdict = crate::testing::validate_envelope(&json);
            prop_assert_eq!(verdict, Ok(()), "{}", json["data"]["baseType"]);
        }
    }

    #[test]
    fn arbitrary_resources_never_panic_and_respect_limits(attrs in arb_attrs()) {
        let resource = Resource::builder_empty().with_attributes(attrs).build();
        let shared = crate::convert::tags::shared_tags_with(&resource, &|_| None, &|| None);
        let cx = Context { ikey: IKEY, tags: &shared };
        if let Some(env) = resource_envelope(&resource, &cx, at(START_NS)) {
            let json = serde_json::to_value(&env).unwrap_or_default();
            prop_assert_eq!(&json["data"]["baseData"]["metrics"][0]["value"], &json!(1.0));
            assert_limits(&json);
        }
    }
}
