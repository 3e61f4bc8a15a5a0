//! The local ingestion server, observed from the client side: what it accepts, what it rejects
//! and how, and every scripted fault.

use std::io::{Read, Write};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_azure_monitor::testing::{validate_envelope, Fault, IngestionServer};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);

/// `now + offset_secs` as RFC 3339 UTC with 7 fraction digits.
fn utc(offset_secs: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    let secs = i64::try_from(now.as_secs()).expect("seconds fit") + offset_secs;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let (era, doe) = (z.div_euclid(146_097), z.rem_euclid(146_097));
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:07}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        now.subsec_nanos() / 100
    )
}

fn envelope(ikey: &str, kind: &str, base_type: &str, base_data: Value) -> Value {
    json!({
        "name": format!("Microsoft.ApplicationInsights.{kind}"),
        "time": utc(0),
        "iKey": ikey,
        "tags": {
            "ai.cloud.role": "shop.checkout",
            "ai.operation.id": "0af7651916cd43dd8448eb211c80319c",
            "ai.internal.sdkVersion": "rust:0.1.0"
        },
        "data": { "baseType": base_type, "baseData": base_data }
    })
}

fn request(ikey: &str) -> Value {
    envelope(
        ikey,
        "Request",
        "RequestData",
        json!({
            "ver": 2, "id": "b7ad6b7169203331", "name": "GET /orders/{id}",
            "duration": "00:00:00.1234560", "responseCode": "200", "success": true,
            "url": "https://shop.example/orders/42",
            "properties": { "order.id": "42" }, "measurements": { "items": 3 }
        }),
    )
}

fn dependency(ikey: &str) -> Value {
    envelope(
        ikey,
        "RemoteDependency",
        "RemoteDependencyData",
        json!({
            "ver": 2, "id": "00f067aa0ba902b7", "name": "GET /stock", "duration": "1.02:03:04.5",
            "resultCode": "200", "success": true, "type": "Http", "target": "stock:8080",
            "data": "http://stock:8080/stock?sku=1"
        }),
    )
}

fn message(ikey: &str) -> Value {
    envelope(
        ikey,
        "Message",
        "MessageData",
        json!({ "ver": 2, "message": "order placed", "severityLevel": "Information" }),
    )
}

fn exception(ikey: &str) -> Value {
    envelope(
        ikey,
        "Exception",
        "ExceptionData",
        json!({
            "ver": 2, "severityLevel": null,
            "exceptions": [{
                "typeName": "std::io::Error", "message": "connection refused", "hasFullStack": true,
                "stack": "at main", "parsedStack": [{ "level": 0, "method": "main", "line": 3 }]
            }]
        }),
    )
}

fn event(ikey: &str) -> Value {
    envelope(
        ikey,
        "Event",
        "EventData",
        json!({ "ver": 2, "name": "checkout.completed" }),
    )
}

fn metric(ikey: &str) -> Value {
    envelope(
        ikey,
        "Metric",
        "MetricData",
        json!({
            "ver": 2,
            "metrics": [{ "name": "queue.depth", "ns": "shop", "value": 3.5, "kind": "Aggregation",
                          "count": 4, "min": 1.0, "max": 6.0, "stdDev": null }],
            "properties": { "queue": "orders" }
        }),
    )
}

fn availability(ikey: &str) -> Value {
    envelope(
        ikey,
        "Availability",
        "AvailabilityData",
        json!({ "ver": 2, "id": "run-1", "name": "ping", "duration": "00:00:01", "success": false,
                "runLocation": "westeurope", "message": "timeout" }),
    )
}

fn page_view(ikey: &str) -> Value {
    envelope(
        ikey,
        "PageView",
        "PageViewData",
        json!({ "ver": 2, "id": "pv-1", "name": "Home", "url": "https://shop.example/",
                "duration": "00:00:00.250" }),
    )
}

fn every_type(ikey: &str) -> Vec<Value> {
    vec![
        request(ikey),
        dependency(ikey),
        message(ikey),
        exception(ikey),
        event(ikey),
        metric(ikey),
        availability(ikey),
        page_view(ikey),
    ]
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("gzip in memory");
    encoder.finish().expect("gzip in memory")
}

fn track_url(server: &IngestionServer) -> String {
    format!("{}/v2.1/track", server.endpoint())
}

/// A client that never reuses a connection, so that every request sees its own fault.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client")
}

/// Posts `body` (gzipped when asked) and returns the status and the parsed `TrackResponse`.
async fn post_bytes(server: &IngestionServer, body: Vec<u8>, gzipped: bool) -> (u16, Value) {
    let mut request = client()
        .post(track_url(server))
        .header("Content-Type", "application/json");
    let body = if gzipped {
        request = request.header("Content-Encoding", "gzip");
        gzip(&body)
    } else {
        body
    };
    let response = request.body(body).send().await.expect("an answer");
    let status = response.status().as_u16();
    let text = response.text().await.expect("a body");
    let value = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, value)
}

async fn post(server: &IngestionServer, items: &[Value]) -> (u16, Value) {
    post_bytes(server, serde_json::to_vec(items).expect("json"), false).await
}

#[tokio::test]
async fn accepts_every_type_and_returns_it_in_order() {
    let server = IngestionServer::start().expect("server");
    let items = every_type(server.instrumentation_key());
    let (status, body) = post(&server, &items).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({ "itemsReceived": 8, "itemsAccepted": 8, "errors": [] })
    );
    assert_eq!(server.envelopes(), items);
    assert!(server.rejected().is_empty());

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let record = &requests[0];
    assert_eq!(record.method, "POST");
    assert_eq!(record.path, "/v2.1/track");
    assert_eq!(record.content_type.as_deref(), Some("application/json"));
    assert_eq!(record.content_encoding, None);
    assert_eq!(record.items, 8);
    assert_eq!(record.status, Some(200));
    assert_eq!(record.fault, None);
    assert_eq!(record.error, None);
    assert!(record.body_bytes > 0);
}

#[tokio::test]
async fn the_response_body_has_the_service_field_order() {
    let server = IngestionServer::start().expect("server");
    let response = client()
        .post(track_url(&server))
        .body(serde_json::to_vec(&[event(server.instrumentation_key())]).expect("json"))
        .send()
        .await
        .expect("answer");
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(
        response.text().await.expect("body"),
        r#"{"itemsReceived":1,"itemsAccepted":1,"errors":[]}"#
    );
}

#[tokio::test]
async fn gzip_and_ndjson_bodies_on_both_paths() {
    let server = IngestionServer::start().expect("server");
    let ikey = server.instrumentation_key().to_owned();
    let items = every_type(&ikey);

    let (status, _) = post_bytes(&server, serde_json::to_vec(&items).expect("json"), true).await;
    assert_eq!(status, 200);

    let ndjson: String = items.iter().map(|item| format!("{item}\n\n")).collect();
    let (status, body) = post_bytes(&server, ndjson.clone().into_bytes(), false).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["itemsReceived"], 8);

    let (status, _) = post_bytes(&server, ndjson.into_bytes(), true).await;
    assert_eq!(status, 200);

    // A single object, and the legacy path.
    let response = client()
        .post(format!("{}/v2/track", server.endpoint()))
        .header("Content-Type", "application/x-json-stream")
        .body(event(&ikey).to_string())
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 200);

    assert!(server.wait_for_envelopes(3 * 8 + 1, WAIT));
    assert_eq!(server.envelopes().len(), 3 * 8 + 1);
    let requests = server.requests();
    assert_eq!(requests[0].content_encoding.as_deref(), Some("gzip"));
    assert_eq!(requests[0].items, 8);
    assert_eq!(requests[3].path, "/v2/track");
    assert_eq!(
        requests[3].content_type.as_deref(),
        Some("application/x-json-stream")
    );
}

#[tokio::test]
async fn bodies_that_do_not_decode_are_answered_400() {
    let server = IngestionServer::start().expect("server");
    let valid = serde_json::to_vec(&[event(server.instrumentation_key())]).expect("json");
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("not json", b"this is not json".to_vec(), false),
        ("truncated array", b"[{\"name\":".to_vec(), false),
        ("empty body", Vec::new(), false),
        ("an unclosed object", b"{\"name\":\"a\"".to_vec(), false),
        ("not UTF-8", vec![b'[', 0xff, 0xfe, b']'], false),
        (
            "one bad NDJSON line",
            b"{\"name\":\"a\"}\nnope\n".to_vec(),
            false,
        ),
        ("gzip header, no gzip", valid, true),
    ];
    for (what, body, claim_gzip) in cases {
        let mut request = client().post(track_url(&server));
        if claim_gzip {
            request = request.header("Content-Encoding", "gzip");
        }
        let response = request.body(body).send().await.expect("answer");
        assert_eq!(response.status(), 400, "{what}");
        let body: Value = serde_json::from_str(&response.text().await.expect("body")).expect(what);
        assert_eq!(body["itemsAccepted"], 0, "{what}");
        assert_eq!(body["errors"][0]["statusCode"], 400, "{what}");
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}"
        );
    }
    assert!(server.envelopes().is_empty());
    for record in server.requests() {
        assert_eq!(record.status, Some(400), "{record:?}");
        assert!(record.error.is_some(), "{record:?}");
    }
}

#[tokio::test]
async fn wrong_path_method_or_encoding() {
    let server = IngestionServer::start().expect("server");
    let body = serde_json::to_vec(&[event(server.instrumentation_key())]).expect("json");
    let http = client();

    let response = http
        .post(format!("{}/v2.1/trace", server.endpoint()))
        .body(body.clone())
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 404);

    let response = http.get(track_url(&server)).send().await.expect("answer");
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");

    let response = http
        .post(track_url(&server))
        .header("Content-Encoding", "br")
        .body(body)
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 415);

    assert!(server.envelopes().is_empty());
    let statuses: Vec<_> = server.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [Some(404), Some(405), Some(415)]);
}

/// What a rejected item's message must be.
enum Expect {
    Exact(String),
    Prefix(&'static str),
}

impl Expect {
    fn check(&self, what: &str, message: &str) {
        match self {
            Expect::Exact(want) => assert_eq!(message, want, "{what}"),
            Expect::Prefix(want) => assert!(message.starts_with(want), "{what}: {message}"),
        }
    }
}

fn exact(text: &str) -> Expect {
    Expect::Exact(text.to_owned())
}

/// The child `key` of `target`: a field of an object, or an element of an array.
fn child<'a>(target: &'a mut Value, key: &str) -> &'a mut Value {
    match target {
        Value::Array(items) => &mut items[key.parse::<usize>().expect("an index")],
        other => &mut other[key],
    }
}

fn set(mut item: Value, path: &[&str], value: Value) -> Value {
    let (last, parents) = path.split_last().expect("a path");
    let target = parents
        .iter()
        .fold(&mut item, |target, key| child(target, key));
    *child(target, last) = value;
    item
}

fn remove(mut item: Value, path: &[&str]) -> Value {
    let (last, parents) = path.split_last().expect("a path");
    let target = parents
        .iter()
        .fold(&mut item, |target, key| child(target, key));
    target.as_object_mut().expect("an object").remove(*last);
    item
}

/// One item per contract violation, with the message the server must answer.
fn invalid_items(ikey: &str) -> Vec<(&'static str, Value, Expect)> {
    let long_key = "k".repeat(151);
    let mut big = request(ikey);
    for n in 0..9 {
        big = set(
            big,
            &["data", "baseData", "properties", &format!("p{n}")],
            json!("x".repeat(8000)),
        );
    }
    vec![
        (
            "name missing",
            remove(request(ikey), &["name"]),
            exact("109: Field 'name' on type 'Envelope' is required but missing or empty. Expected: string, Actual: undefined"),
        ),
        (
            "name empty",
            set(request(ikey), &["name"], json!("")),
            exact("109: Field 'name' on type 'Envelope' is required but missing or empty. Expected: string, Actual: "),
        ),
        (
            "name too long",
            set(request(ikey), &["name"], json!("n".repeat(1025))),
            exact("100: Field 'name' on type 'Envelope' is too long. Expected: 1024 characters, Actual: 1025"),
        ),
        (
            "time missing",
            remove(request(ikey), &["time"]),
            exact("109: Field 'time' on type 'Envelope' is required but missing or empty. Expected: string, Actual: undefined"),
        ),
        (
            "time without Z",
            set(request(ikey), &["time"], json!("2024-01-31T12:00:00.000")),
            Expect::Prefix("Field 'time' on type 'Envelope' is not a valid date-time."),
        ),
        (
            "time with an offset",
            set(request(ikey), &["time"], json!("2024-01-31T12:00:00+01:00")),
            Expect::Prefix("Field 'time' on type 'Envelope' is not a valid date-time."),
        ),
        (
            "time older than 48 hours",
            set(request(ikey), &["time"], json!(utc(-49 * 3600))),
            Expect::Prefix("103: Field 'time' on type 'Envelope' is older than the allowed min date. Expected: now - 172800000ms, Actual: now - 17"),
        ),
        (
            "iKey missing",
            remove(request(ikey), &["iKey"]),
            exact("Invalid instrumentation key"),
        ),
        (
            "iKey not a GUID",
            set(request(ikey), &["iKey"], json!("my-key")),
            exact("Invalid instrumentation key"),
        ),
        (
            "sampleRate 0",
            set(request(ikey), &["sampleRate"], json!(0)),
            Expect::Prefix("Field 'sampleRate' on type 'Envelope' is out of range."),
        ),
        (
            "tag too long (as observed from the service)",
            set(request(ikey), &["tags", "ai.operation.name"], json!("o".repeat(1169))),
            exact("100: Field 'ai.operation.name' on type 'ContextTagKeys' is too long. Expected: 1024 characters, Actual: 1169"),
        ),
        (
            "ai.location.ip too long",
            set(request(ikey), &["tags", "ai.location.ip"], json!("1".repeat(47))),
            exact("100: Field 'ai.location.ip' on type 'ContextTagKeys' is too long. Expected: 46 characters, Actual: 47"),
        ),
        (
            "tag not a string",
            set(request(ikey), &["tags", "ai.cloud.role"], json!(7)),
            exact("Field 'ai.cloud.role' on type 'ContextTagKeys' has the wrong JSON type. Expected: string, Actual: number"),
        ),
        (
            "data missing",
            remove(request(ikey), &["data"]),
            exact("109: Field 'data' on type 'Envelope' is required but missing or empty. Expected: object, Actual: undefined"),
        ),
        (
            "unknown baseType",
            set(request(ikey), &["data", "baseType"], json!("MetricsData")),
            Expect::Prefix("Field 'baseType' on type 'Base' has an unknown value. Expected: one of RequestData, RemoteDependencyData,"),
        ),
        (
            "baseData.ver missing",
            remove(request(ikey), &["data", "baseData", "ver"]),
            exact("109: Field 'ver' on type 'RequestData' is required but missing or empty. Expected: int32, Actual: undefined"),
        ),
        (
            "responseCode missing",
            remove(request(ikey), &["data", "baseData", "responseCode"]),
            exact("109: Field 'responseCode' on type 'RequestData' is required but missing or empty. Expected: string, Actual: undefined"),
        ),
        (
            "success not a boolean",
            set(request(ikey), &["data", "baseData", "success"], json!("true")),
            exact("Field 'success' on type 'RequestData' has the wrong JSON type. Expected: boolean, Actual: string"),
        ),
        (
            "request id too long",
            set(request(ikey), &["data", "baseData", "id"], json!("i".repeat(513))),
            exact("100: Field 'id' on type 'RequestData' is too long. Expected: 512 characters, Actual: 513"),
        ),
        (
            "url too long, counted in characters",
            set(request(ikey), &["data", "baseData", "url"], json!("é".repeat(2049))),
            exact("100: Field 'url' on type 'RequestData' is too long. Expected: 2048 characters, Actual: 2049"),
        ),
        (
            "duration with a colon before the days (as observed from the service)",
            set(request(ikey), &["data", "baseData", "duration"], json!("0:00:00:04.4786555")),
            exact("108: Field 'duration' on type 'RequestData' is not a valid duration string. Expected: dd:hh:mm:ss.fffffff format, Actual: 0:00:00:04.4786555"),
        ),
        (
            "duration with 8 fraction digits",
            set(request(ikey), &["data", "baseData", "duration"], json!("00:00:02.22799999")),
            Expect::Prefix("108: Field 'duration' on type 'RequestData' is not a valid duration string."),
        ),
        (
            "duration of 1000 days",
            set(dependency(ikey), &["data", "baseData", "duration"], json!("1000.00:00:00")),
            Expect::Prefix("108: Field 'duration' on type 'RemoteDependencyData' is not a valid duration string."),
        ),
        (
            "property key too long",
            set(request(ikey), &["data", "baseData", "properties", &long_key], json!("v")),
            Expect::Exact(format!(
                "100: Key '{}...' of field 'properties' on type 'RequestData' is too long. Expected: 150 characters, Actual: 151",
                "k".repeat(64)
            )),
        ),
        (
            "property value too long",
            set(request(ikey), &["data", "baseData", "properties", "big"], json!("v".repeat(8193))),
            exact("100: Field 'properties' on type 'RequestData' is too long for key 'big'. Expected: 8192 characters, Actual: 8193"),
        ),
        (
            "property value not a string",
            set(request(ikey), &["data", "baseData", "properties", "n"], json!(1)),
            exact("Field 'properties' on type 'RequestData' has the wrong JSON type for key 'n'. Expected: string, Actual: number"),
        ),
        (
            "measurement not a number",
            set(request(ikey), &["data", "baseData", "measurements", "m"], json!("1.5")),
            exact("Field 'measurements' on type 'RequestData' has the wrong JSON type for key 'm'. Expected: double, Actual: string"),
        ),
        (
            "item over 64 KiB",
            big,
            Expect::Prefix("Telemetry item is too large. Expected: at most 65536 bytes, Actual: 7"),
        ),
        (
            "item not an object",
            json!(42),
            exact("Telemetry item is not a JSON object. Expected: object, Actual: number"),
        ),
        (
            "dependency name missing",
            remove(dependency(ikey), &["data", "baseData", "name"]),
            exact("109: Field 'name' on type 'RemoteDependencyData' is required but missing or empty. Expected: string, Actual: undefined"),
        ),
        (
            "message empty",
            set(message(ikey), &["data", "baseData", "message"], json!("")),
            exact("109: Field 'message' on type 'MessageData' is required but missing or empty. Expected: string, Actual: "),
        ),
        (
            "severityLevel out of range",
            set(message(ikey), &["data", "baseData", "severityLevel"], json!(5)),
            exact("Field 'severityLevel' on type 'MessageData' has an invalid value. Expected: one of Verbose, Information, Warning, Error, Critical, or 0..4, Actual: 5"),
        ),
        (
            "severityLevel unknown name",
            set(message(ikey), &["data", "baseData", "severityLevel"], json!("Info")),
            Expect::Prefix("Field 'severityLevel' on type 'MessageData' has an invalid value."),
        ),
        (
            "exception list empty",
            set(exception(ikey), &["data", "baseData", "exceptions"], json!([])),
            exact("109: Field 'exceptions' on type 'ExceptionData' is required but missing or empty. Expected: array, Actual: []"),
        ),
        (
            "exception typeName missing",
            remove(exception(ikey), &["data", "baseData", "exceptions", "0", "typeName"]),
            exact("109: Field 'typeName' on type 'ExceptionDetails' is required but missing or empty. Expected: string, Actual: undefined"),
        ),
        (
            "stack frame method missing",
            remove(
                exception(ikey),
                &["data", "baseData", "exceptions", "0", "parsedStack", "0", "method"],
            ),
            exact("109: Field 'method' on type 'StackFrame' is required but missing or empty. Expected: string, Actual: undefined"),
        ),
        (
            "event name too long",
            set(event(ikey), &["data", "baseData", "name"], json!("e".repeat(513))),
            exact("100: Field 'name' on type 'EventData' is too long. Expected: 512 characters, Actual: 513"),
        ),
        (
            "metric point value missing",
            remove(metric(ikey), &["data", "baseData", "metrics", "0", "value"]),
            exact("109: Field 'value' on type 'DataPoint' is required but missing or empty. Expected: double, Actual: undefined"),
        ),
        (
            "metric point name missing",
            remove(metric(ikey), &["data", "baseData", "metrics", "0", "name"]),
            exact("109: Field 'name' on type 'DataPoint' is required but missing or empty. Expected: string, Actual: undefined"),
        ),
        (
            "metric kind unknown",
            set(metric(ikey), &["data", "baseData", "metrics", "0", "kind"], json!("Sum")),
            exact("Field 'kind' on type 'DataPoint' has an invalid value. Expected: one of Measurement, Aggregation, Actual: \"Sum\""),
        ),
        (
            "availability success missing",
            remove(availability(ikey), &["data", "baseData", "success"]),
            exact("109: Field 'success' on type 'AvailabilityData' is required but missing or empty. Expected: boolean, Actual: undefined"),
        ),
        (
            "page view name over the Bond limit",
            set(page_view(ikey), &["data", "baseData", "name"], json!("p".repeat(513))),
            exact("100: Field 'name' on type 'PageViewData' is too long. Expected: 512 characters, Actual: 513"),
        ),
    ]
}

#[tokio::test]
async fn each_contract_violation_is_rejected_like_the_service() {
    let server = IngestionServer::start().expect("server");
    let ikey = server.instrumentation_key().to_owned();
    let cases = invalid_items(&ikey);
    for (what, item, expect) in &cases {
        let (status, body) = post(&server, std::slice::from_ref(item)).await;
        assert_eq!(status, 400, "{what}: {body}");
        assert_eq!(body["itemsReceived"], 1, "{what}");
        assert_eq!(body["itemsAccepted"], 0, "{what}");
        assert_eq!(body["errors"][0]["index"], 0, "{what}");
        assert_eq!(body["errors"][0]["statusCode"], 400, "{what}");
        expect.check(
            what,
            body["errors"][0]["message"].as_str().unwrap_or_default(),
        );
    }
    assert!(server.envelopes().is_empty());
    let rejected = server.rejected();
    assert_eq!(rejected.len(), cases.len());
    for (n, (rejection, (what, item, _))) in rejected.iter().zip(&cases).enumerate() {
        assert_eq!(rejection.request, n, "{what}");
        assert_eq!(rejection.index, 0, "{what}");
        assert_eq!(rejection.status, 400, "{what}");
        assert_eq!(&rejection.item, item, "{what}");
        assert!(!rejection.scripted, "{what}");
    }
}

#[tokio::test]
async fn only_its_own_instrumentation_key_in_any_case() {
    let server = IngestionServer::start().expect("server");
    let other = "00000000-0000-4000-8000-000000000000";
    let upper = server.instrumentation_key().to_uppercase();
    let (status, body) = post(&server, &[request(other), request(&upper)]).await;
    assert_eq!(status, 206, "{body}");
    assert_eq!(
        body,
        json!({ "itemsReceived": 2, "itemsAccepted": 1,
                "errors": [{ "index": 0, "statusCode": 400, "message": "Invalid instrumentation key" }] })
    );
    // The public check accepts any GUID.
    assert_eq!(validate_envelope(&request(other)), Ok(()));
}

#[tokio::test]
async fn a_mixed_batch_is_answered_206_with_the_failed_indices() {
    let server = IngestionServer::start().expect("server");
    let ikey = server.instrumentation_key().to_owned();
    let bad_name = remove(event(&ikey), &["data", "baseData", "name"]);
    let bad_duration = set(
        request(&ikey),
        &["data", "baseData", "duration"],
        json!("PT1S"),
    );
    let items = vec![
        message(&ikey),
        bad_name.clone(),
        metric(&ikey),
        bad_duration.clone(),
        request(&ikey),
    ];
    let (status, body) = post(&server, &items).await;
    assert_eq!(status, 206, "{body}");
    assert_eq!(body["itemsReceived"], 5);
    assert_eq!(body["itemsAccepted"], 3);
    let errors = body["errors"].as_array().expect("errors");
    let indices: Vec<_> = errors.iter().map(|e| e["index"].clone()).collect();
    assert_eq!(indices, [json!(1), json!(3)]);
    assert!(errors.iter().all(|e| e["statusCode"] == 400));
    assert_eq!(
        server.envelopes(),
        [items[0].clone(), items[2].clone(), items[4].clone()]
    );
    let rejected = server.rejected();
    assert_eq!(rejected.len(), 2);
    assert_eq!((rejected[0].index, &rejected[0].item), (1, &bad_name));
    assert_eq!((rejected[1].index, &rejected[1].item), (3, &bad_duration));
    assert_eq!(server.requests()[0].status, Some(206));
}

#[tokio::test]
async fn with_none_accepted_the_status_is_the_first_items() {
    let server = IngestionServer::start().expect("server");
    let ikey = server.instrumentation_key().to_owned();
    server.push_fault(Fault::PartialFailure(vec![(0, 500)]));
    let items = [request(&ikey), remove(request(&ikey), &["name"])];
    let (status, body) = post(&server, &items).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["itemsAccepted"], 0);
    assert_eq!(body["errors"][0]["statusCode"], 500);
    assert_eq!(body["errors"][1]["statusCode"], 400);
}

#[tokio::test]
async fn an_empty_array_is_fine() {
    let server = IngestionServer::start().expect("server");
    let (status, body) = post(&server, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({ "itemsReceived": 0, "itemsAccepted": 0, "errors": [] })
    );
}

#[tokio::test]
async fn fault_status_with_retry_after_then_back_to_normal() {
    let server = IngestionServer::start().expect("server");
    let items = [
        message(server.instrumentation_key()),
        event(server.instrumentation_key()),
    ];
    server.push_fault(Fault::Status {
        code: 503,
        retry_after: Some("1".to_owned()),
    });
    server.push_fault(Fault::Status {
        code: 429,
        retry_after: Some("Fri, 22 Apr 2016 23:59:59 GMT".to_owned()),
    });
    server.push_fault(Fault::Status {
        code: 500,
        retry_after: None,
    });
    let body = serde_json::to_vec(&items).expect("json");

    let mut seen = Vec::new();
    for _ in 0..4 {
        let response = client()
            .post(track_url(&server))
            .body(body.clone())
            .send()
            .await
            .expect("answer");
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let status = response.status().as_u16();
        let body: Value =
            serde_json::from_str(&response.text().await.expect("body")).expect("json");
        seen.push((status, retry_after, body));
    }
    assert_eq!(seen[0].0, 503);
    assert_eq!(seen[0].1.as_deref(), Some("1"));
    assert_eq!(
        seen[0].2,
        json!({ "itemsReceived": 2, "itemsAccepted": 0, "errors": [
            { "index": 0, "statusCode": 503, "message": "Service Unavailable" },
            { "index": 1, "statusCode": 503, "message": "Service Unavailable" }] })
    );
    assert_eq!(seen[1].0, 429);
    assert_eq!(seen[1].1.as_deref(), Some("Fri, 22 Apr 2016 23:59:59 GMT"));
    assert_eq!(seen[2].0, 500);
    assert_eq!(seen[2].1, None);
    assert_eq!(seen[3].0, 200);

    assert_eq!(server.envelopes(), items);
    let rejected = server.rejected();
    assert_eq!(rejected.len(), 6);
    assert!(rejected.iter().all(|r| r.scripted));
    let requests = server.requests();
    assert!(matches!(
        requests[0].fault,
        Some(Fault::Status { code: 503, .. })
    ));
    assert!(matches!(
        requests[2].fault,
        Some(Fault::Status { code: 500, .. })
    ));
    assert_eq!(requests[3].fault, None);
}

#[tokio::test]
async fn fault_partial_failure_and_sampled_out_items() {
    let server = IngestionServer::start().expect("server");
    let ikey = server.instrumentation_key().to_owned();
    server.push_fault(Fault::PartialFailure(vec![(1, 206), (2, 503), (9, 500)]));
    let items = [request(&ikey), dependency(&ikey), message(&ikey)];
    let (status, body) = post(&server, &items).await;
    assert_eq!(status, 206);
    assert_eq!(
        body,
        json!({ "itemsReceived": 3, "itemsAccepted": 1, "errors": [
            { "index": 1, "statusCode": 206, "message": "Telemetry sampled out." },
            { "index": 2, "statusCode": 503, "message": "Service Unavailable" }] })
    );
    assert_eq!(server.envelopes(), [items[0].clone()]);
    let rejected = server.rejected();
    assert_eq!(rejected.len(), 2);
    assert!(rejected.iter().all(|r| r.scripted));
}

#[tokio::test]
async fn fault_delay_answers_normally_later() {
    let server = IngestionServer::start().expect("server");
    let delay = Duration::from_millis(300);
    server.push_fault(Fault::Delay(delay));
    let started = Instant::now();
    let (status, _) = post(&server, &[event(server.instrumentation_key())]).await;
    assert!(started.elapsed() >= delay);
    assert_eq!(status, 200);
    assert_eq!(server.envelopes().len(), 1);
    assert_eq!(server.requests()[0].fault, Some(Fault::Delay(delay)));
}

// Multi-threaded: `wait_for_requests` blocks this thread while the spawned client runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_hang_times_the_client_out_and_drop_cuts_it() {
    let server = IngestionServer::start().expect("server");
    server.push_fault(Fault::Hang);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    let error = http
        .post(track_url(&server))
        .body(serde_json::to_vec(&[event(server.instrumentation_key())]).expect("json"))
        .send()
        .await
        .expect_err("no answer");
    assert!(error.is_timeout(), "{error:?}");
    assert!(server.wait_for_requests(1, WAIT));
    let record = &server.requests()[0];
    assert_eq!(record.status, None);
    assert_eq!(record.fault, Some(Fault::Hang));
    assert!(server.envelopes().is_empty());

    // A request hanging while the server is dropped does not hold the drop.
    let server = IngestionServer::start().expect("server");
    server.push_fault(Fault::Hang);
    let url = track_url(&server);
    let pending = tokio::spawn(async move { client().post(url).body("[]").send().await });
    assert!(server.wait_for_requests(1, WAIT));
    let started = Instant::now();
    drop(server);
    assert!(started.elapsed() < Duration::from_secs(5));
    let outcome = tokio::time::timeout(WAIT, pending)
        .await
        .expect("the client sees the connection end")
        .expect("task");
    assert!(outcome.is_err(), "{outcome:?}");
}

#[tokio::test]
async fn fault_drop_connection_is_a_connection_error() {
    let server = IngestionServer::start().expect("server");
    server.push_fault(Fault::DropConnection);
    let body = serde_json::to_vec(&[event(server.instrumentation_key())]).expect("json");
    let error = client()
        .post(track_url(&server))
        .body(body.clone())
        .send()
        .await
        .expect_err("no answer");
    assert!(!error.is_timeout(), "{error:?}");
    assert!(error.status().is_none());

    let (status, _) = post_bytes(&server, body, false).await;
    assert_eq!(status, 200);
    let requests = server.requests();
    assert_eq!(requests[0].status, None);
    assert_eq!(requests[0].fault, Some(Fault::DropConnection));
    assert_eq!(requests[1].status, Some(200));
    assert_eq!(server.envelopes().len(), 1);
}

#[tokio::test]
async fn fault_redirect_is_seen_and_can_be_followed() {
    let server = IngestionServer::start().expect("server");
    let body = serde_json::to_vec(&[event(server.instrumentation_key())]).expect("json");
    let location = format!("{}/v2.1/track", server.endpoint());

    server.push_fault(Fault::Redirect {
        status: 307,
        location: location.clone(),
    });
    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let response = no_follow
        .post(track_url(&server))
        .body(body.clone())
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 307);
    assert_eq!(response.headers()["location"], location.as_str());
    assert!(server.envelopes().is_empty());

    // A client that follows it re-sends the body to the new location.
    server.push_fault(Fault::Redirect {
        status: 308,
        location,
    });
    let response = client()
        .post(format!("{}/v2/track", server.endpoint()))
        .body(body)
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 200);
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[1].status, Some(308));
    assert_eq!(requests[2].path, "/v2.1/track");
    assert_eq!(requests[2].status, Some(200));
    assert_eq!(server.envelopes().len(), 1);
}

#[tokio::test]
async fn an_impossible_scripted_status_is_answered_500() {
    let server = IngestionServer::start().expect("server");
    server.push_fault(Fault::Status {
        code: 42,
        retry_after: Some("not\na header".to_owned()),
    });
    let (status, _) = post(&server, &[event(server.instrumentation_key())]).await;
    assert_eq!(status, 500);
    assert_eq!(server.requests()[0].status, Some(500));
    assert!(server.rejected().iter().all(|r| r.status == 500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_are_bounded_and_clear_forgets() {
    let server = IngestionServer::start().expect("server");
    assert!(!server.wait_for_envelopes(1, Duration::from_millis(50)));
    assert!(!server.wait_for_requests(1, Duration::ZERO));

    server.push_fault(Fault::Status {
        code: 503,
        retry_after: None,
    });
    server.push_fault(Fault::Status {
        code: 503,
        retry_after: None,
    });
    let (status, _) = post(&server, &[event(server.instrumentation_key())]).await;
    assert_eq!(status, 503);
    server.clear();
    assert!(server.requests().is_empty());
    assert!(server.rejected().is_empty());
    // The second fault was forgotten too.
    let (status, _) = post(&server, &[event(server.instrumentation_key())]).await;
    assert_eq!(status, 200);
    assert!(server.wait_for_envelopes(1, WAIT));
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn usable_from_a_plain_test_over_raw_http() {
    let server = IngestionServer::start().expect("server");
    let addr = server.endpoint().trim_start_matches("http://").to_owned();
    let body = serde_json::to_vec(&[event(server.instrumentation_key())]).expect("json");

    let mut stream = std::net::TcpStream::connect(&addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    write!(
        stream,
        "POST /v2.1/track HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer secret-token\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .expect("write");
    stream.write_all(&body).expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with(r#"{"itemsReceived":1,"itemsAccepted":1,"errors":[]}"#));

    // Garbage that is not HTTP at all does not hurt the server.
    let mut stream = std::net::TcpStream::connect(&addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    stream
        .write_all(b"\x00\xff garbage\r\n\r\n")
        .expect("write");
    let mut ignored = Vec::new();
    let _ = stream.read_to_end(&mut ignored);

    assert!(server.wait_for_envelopes(1, WAIT));
    let record = &server.requests()[0];
    assert_eq!(record.authorization.as_deref(), Some("Bearer secret-token"));
    let debug = format!("{record:?}");
    assert!(!debug.contains("secret-token"), "{debug}");
    assert!(debug.contains("<redacted>"));
    assert!(!format!("{server:?}").contains(server.instrumentation_key()));
}

#[test]
fn validate_envelope_table() {
    let ikey = "1234abcd-5678-4efa-8abc-1234567890AB";
    for item in every_type(ikey) {
        assert_eq!(validate_envelope(&item), Ok(()), "{item}");
    }
    let accepted = [
        (
            "severity ordinal 0",
            set(
                message(ikey),
                &["data", "baseData", "severityLevel"],
                json!(0),
            ),
        ),
        (
            "severity ordinal 4",
            set(
                message(ikey),
                &["data", "baseData", "severityLevel"],
                json!(4),
            ),
        ),
        (
            "severity Critical",
            set(
                message(ikey),
                &["data", "baseData", "severityLevel"],
                json!("Critical"),
            ),
        ),
        (
            "no severity",
            remove(message(ikey), &["data", "baseData", "severityLevel"]),
        ),
        (
            "time without fraction",
            set(event(ikey), &["time"], json!(format!("{}Z", &utc(0)[..19]))),
        ),
        (
            "time 47 hours ago",
            set(event(ikey), &["time"], json!(utc(-47 * 3600))),
        ),
        (
            "time a little ahead",
            set(event(ikey), &["time"], json!(utc(60))),
        ),
        (
            "sampleRate 33.3",
            set(event(ikey), &["sampleRate"], json!(33.3)),
        ),
        ("no tags", remove(event(ikey), &["tags"])),
        (
            "unknown tag",
            set(
                event(ikey),
                &["tags", "ai.custom.thing"],
                json!("x".repeat(5000)),
            ),
        ),
        (
            "tag at its limit",
            set(
                event(ikey),
                &["tags", "ai.operation.id"],
                json!("o".repeat(128)),
            ),
        ),
        (
            "unknown field",
            set(event(ikey), &["data", "baseData", "extra"], json!({"a": 1})),
        ),
        (
            "null optional field",
            set(request(ikey), &["data", "baseData", "url"], Value::Null),
        ),
        (
            "duration without fraction",
            set(
                request(ikey),
                &["data", "baseData", "duration"],
                json!("00:00:01"),
            ),
        ),
        (
            "duration of 999 days",
            set(
                request(ikey),
                &["data", "baseData", "duration"],
                json!("999.23:59:59.9999999"),
            ),
        ),
        (
            "gen_ai content over 8192",
            set(
                request(ikey),
                &["data", "baseData", "properties", "gen_ai.input.messages"],
                json!("g".repeat(20_000)),
            ),
        ),
        (
            "property value at 8192",
            set(
                request(ikey),
                &["data", "baseData", "properties", "p"],
                json!("é".repeat(8192)),
            ),
        ),
        (
            "property key at 150",
            set(
                request(ikey),
                &["data", "baseData", "properties", &"k".repeat(150)],
                json!("v"),
            ),
        ),
        (
            "measurement integer",
            set(
                request(ikey),
                &["data", "baseData", "measurements", "n"],
                json!(-3),
            ),
        ),
        (
            "short envelope name",
            set(request(ikey), &["name"], json!("Request")),
        ),
        (
            "dependency without success",
            remove(dependency(ikey), &["data", "baseData", "success"]),
        ),
        (
            "metric kind Measurement",
            set(
                metric(ikey),
                &["data", "baseData", "metrics", "0", "kind"],
                json!("Measurement"),
            ),
        ),
    ];
    for (what, item) in accepted {
        assert_eq!(validate_envelope(&item), Ok(()), "{what}");
    }
    for (what, item, expect) in invalid_items(ikey) {
        match validate_envelope(&item) {
            Ok(()) => panic!("{what}: accepted"),
            Err(message) => expect.check(what, &message),
        }
    }
}

#[test]
fn the_server_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<IngestionServer>();
    shareable::<Fault>();

    let server = std::sync::Arc::new(IngestionServer::start().expect("server"));
    let waiter = {
        let server = std::sync::Arc::clone(&server);
        std::thread::spawn(move || server.wait_for_requests(1, WAIT))
    };
    let addr = server.endpoint().trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    write!(
        stream,
        "GET /v2.1/track HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    assert!(waiter.join().expect("waiter"));
}

/// The server is its own `LiveEndpoint`: a Live Metrics client pointed at it (as the one-call
/// setup's is) gets "no portal session is watching", and its pings are not track requests.
#[tokio::test]
async fn answers_live_metrics_as_not_watched_and_names_itself_as_live_endpoint() {
    let server = IngestionServer::start().expect("server");
    let cs: opentelemetry_azure_monitor::ConnectionString = server
        .connection_string()
        .parse()
        .expect("connection string");
    assert_eq!(cs.live_endpoint(), server.endpoint());
    let client = reqwest::Client::new();
    for operation in ["ping", "post"] {
        let response = client
            .post(format!(
                "{}/QuickPulseService.svc/{operation}?api-version=2024-04-01-preview&ikey={}",
                server.endpoint(),
                server.instrumentation_key()
            ))
            .body("{}")
            .send()
            .await
            .expect("answer");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-ms-qps-subscribed"], "false");
    }
    assert!(server.requests().is_empty());
}
