use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use opentelemetry::logs::{LogRecord as _, Logger as _, LoggerProvider as _};
use opentelemetry::{Key as OtelKey, TraceFlags};
use opentelemetry_sdk::logs::SdkLoggerProvider;
use serde_json::{json, Value};

use super::*;
use crate::wire::SharedTags;

const IKEY: &str = "00000000-0000-4000-8000-000000000000";

fn record() -> SdkLogRecord {
    SdkLoggerProvider::builder()
        .build()
        .logger("test")
        .create_log_record()
}

fn with(attrs: &[(&'static str, AnyValue)]) -> SdkLogRecord {
    let mut r = record();
    for (k, v) in attrs {
        r.add_attribute(*k, v.clone());
    }
    r
}

fn s(v: &str) -> AnyValue {
    AnyValue::from(v.to_owned())
}

fn scope(name: &'static str) -> InstrumentationScope {
    InstrumentationScope::builder(name).build()
}

fn convert_with(record: &SdkLogRecord, scope: &InstrumentationScope, shared: &SharedTags) -> Value {
    let cx = Context {
        ikey: IKEY,
        tags: shared,
    };
    let envelope = log_to_envelope(record, scope, &cx, UNIX_EPOCH + Duration::from_secs(7));
    serde_json::to_value(&envelope).unwrap_or_default()
}

fn convert(record: &SdkLogRecord) -> Value {
    convert_with(record, &scope("my.logger"), &SharedTags::default())
}

fn base(v: &Value) -> &Value {
    &v["data"]["baseData"]
}

/// The four attributes that make a record an availability result.
fn availability() -> Vec<(&'static str, AnyValue)> {
    vec![
        ("microsoft.availability.id", s("run-1")),
        ("microsoft.availability.name", s("ping")),
        ("microsoft.availability.duration", s("00:00:05")),
        ("microsoft.availability.success", s("true")),
    ]
}

#[test]
fn classification_table() {
    let error = || -> Vec<(&'static str, AnyValue)> { vec![("error", s("connection refused"))] };
    type Case = (
        Vec<(&'static str, AnyValue)>,
        Option<Severity>,
        &'static str,
    );
    let table: Vec<Case> = vec![
        (vec![("exception.type", s("E"))], None, "ExceptionData"),
        (vec![("exception.message", s("m"))], None, "ExceptionData"),
        // Present but empty still counts (PY).
        (vec![("exception.type", s(""))], None, "ExceptionData"),
        // Exception wins over event.
        (
            vec![
                ("exception.message", s("m")),
                ("microsoft.custom_event.name", s("e")),
            ],
            None,
            "ExceptionData",
        ),
        (
            vec![("microsoft.custom_event.name", s("e"))],
            None,
            "EventData",
        ),
        (
            vec![("microsoft.custom_event.name", s(""))],
            None,
            "EventData",
        ),
        (
            vec![(
                "APPLICATION_INSIGHTS_EVENT_MARKER_ATTRIBUTE",
                AnyValue::Boolean(true),
            )],
            None,
            "EventData",
        ),
        // The `tracing` error convention: ERROR and above only.
        (error(), Some(Severity::Error), "ExceptionData"),
        (error(), Some(Severity::Fatal4), "ExceptionData"),
        (error(), Some(Severity::Warn4), "MessageData"),
        (error(), None, "MessageData"),
        (vec![("error", s(""))], Some(Severity::Error), "MessageData"),
        // An explicit event wins over the convention.
        (
            vec![("error", s("x")), ("microsoft.custom_event.name", s("e"))],
            Some(Severity::Error),
            "EventData",
        ),
        (
            vec![("exception.stacktrace", s("0: f"))],
            None,
            "MessageData",
        ),
        (
            vec![("exception.escaped", AnyValue::Boolean(true))],
            None,
            "MessageData",
        ),
        (vec![], Some(Severity::Fatal), "MessageData"),
        // Availability: after exception and event, before the `tracing` error convention.
        (availability(), None, "AvailabilityData"),
        (
            [availability(), error()].concat(),
            Some(Severity::Error),
            "AvailabilityData",
        ),
        (
            [availability(), vec![("exception.type", s("E"))]].concat(),
            None,
            "ExceptionData",
        ),
        (
            [
                availability(),
                vec![("microsoft.custom_event.name", s("e"))],
            ]
            .concat(),
            None,
            "EventData",
        ),
        // A duration that cannot be sent: not an availability result.
        (
            [
                availability(),
                vec![("microsoft.availability.duration", s("5 s"))],
            ]
            .concat(),
            None,
            "MessageData",
        ),
        (
            [
                availability(),
                vec![("microsoft.availability.duration", s("5 s"))],
                error(),
            ]
            .concat(),
            Some(Severity::Error),
            "ExceptionData",
        ),
        (
            vec![("microsoft.availability.name", s("ping"))],
            None,
            "MessageData",
        ),
    ];
    for (attrs, severity, want) in table {
        let mut r = with(&attrs);
        if let Some(sev) = severity {
            r.set_severity_number(sev);
        }
        let v = convert(&r);
        assert_eq!(v["data"]["baseType"], want, "{attrs:?} {severity:?}");
        let name = v["name"].as_str().unwrap_or_default();
        assert_eq!(
            name,
            format!(
                "Microsoft.ApplicationInsights.{}",
                want.trim_end_matches("Data")
            ),
        );
    }
}

#[test]
fn severity_table() {
    use Severity::*;
    let table = [
        (None, "Verbose"),
        (Some(Trace), "Verbose"),
        (Some(Debug4), "Verbose"),
        (Some(Info), "Information"),
        (Some(Info4), "Information"),
        (Some(Warn), "Warning"),
        (Some(Warn4), "Warning"),
        (Some(Error), "Error"),
        (Some(Error4), "Error"),
        (Some(Fatal), "Critical"),
        (Some(Fatal4), "Critical"),
    ];
    for (severity, want) in table {
        let mut r = record();
        if let Some(sev) = severity {
            r.set_severity_number(sev);
        }
        r.set_body(s("x"));
        assert_eq!(base(&convert(&r))["severityLevel"], want, "{severity:?}");
        let mut r = with(&[("exception.type", s("E"))]);
        if let Some(sev) = severity {
            r.set_severity_number(sev);
        }
        assert_eq!(base(&convert(&r))["severityLevel"], want, "{severity:?}");
    }
    // Events carry no severity.
    let mut r = with(&[("microsoft.custom_event.name", s("e"))]);
    r.set_severity_number(Severity::Error);
    assert!(base(&convert(&r)).get("severityLevel").is_none());
}

#[test]
fn body_rendering_table() {
    let map = AnyValue::Map(Box::new(HashMap::from([
        (
            OtelKey::from("foo"),
            AnyValue::Map(Box::new(HashMap::from([
                (OtelKey::from("qux"), AnyValue::Int(42)),
                (OtelKey::from("bar"), s("baz")),
            ]))),
        ),
        (
            OtelKey::from("a\"b"),
            AnyValue::ListAny(Box::new(vec![
                AnyValue::Boolean(true),
                AnyValue::Double(0.5),
                AnyValue::Double(f64::NAN),
                AnyValue::Bytes(Box::new(b"hi".to_vec())),
            ])),
        ),
    ])));
    let table: Vec<(Option<AnyValue>, &str)> = vec![
        (None, "n/a"),
        (Some(s("")), "n/a"),
        (Some(s("  \n\t ")), "n/a"),
        (Some(s("  hello  ")), "hello"),
        (Some(s("Hello, 世界")), "Hello, 世界"),
        (Some(AnyValue::Int(-3)), "-3"),
        (Some(AnyValue::Double(2.5)), "2.5"),
        (Some(AnyValue::Boolean(true)), "True"),
        (
            Some(AnyValue::Bytes(Box::new(b"plain text".to_vec()))),
            "plain text",
        ),
        (
            Some(AnyValue::Bytes(Box::new(vec![0xff, 0x00, b'a']))),
            "\\xff\\x00a",
        ),
        (Some(AnyValue::Bytes(Box::default())), "n/a"),
        (Some(AnyValue::ListAny(Box::default())), "[]"),
        (
            Some(AnyValue::ListAny(Box::new(vec![s("a"), AnyValue::Int(1)]))),
            r#"["a",1]"#,
        ),
        // py-log-body-map, compact and with sorted keys.
        (
            Some(map),
            r#"{"a\"b":[true,0.5,null,"hi"],"foo":{"bar":"baz","qux":42}}"#,
        ),
    ];
    for (body, want) in table {
        let mut r = record();
        if let Some(b) = &body {
            r.set_body(b.clone());
        }
        assert_eq!(base(&convert(&r))["message"], want, "{body:?}");
    }
}

#[test]
fn bodies_are_cut_and_deep_nesting_is_bounded() {
    // At most 32768 characters, and 48 KiB so that the item stays under 64 KiB of JSON.
    for (body, chars) in [("x", 32_768), ("é", 24_576), ("😀", 12_288)] {
        let mut r = record();
        r.set_body(s(&body.repeat(40_000)));
        let v = convert(&r);
        assert_eq!(
            base(&v)["message"].as_str().map(|m| m.chars().count()),
            Some(chars),
            "{body}"
        );
    }

    let mut deep = AnyValue::Int(1);
    for _ in 0..200 {
        deep = AnyValue::ListAny(Box::new(vec![deep]));
    }
    let text = render_any(&deep, 1 << 20);
    assert!(text.starts_with(&"[".repeat(MAX_DEPTH)));
    assert!(text.contains("\"...\""));

    let wide = AnyValue::ListAny(Box::new(vec![s(&"x".repeat(1000)); 1000]));
    assert!(render_any(&wide, 10_000).len() < 12_000);
}

#[test]
fn exception_fields() {
    let stack = "0: shop::orders::load\n   at src/orders.rs:42:17\n1: shop::http::handle\n   at src/http.rs:88:9";
    // py-log-exception: the body wins over exception.message.
    let mut r = with(&[
        ("exception.type", s("shop::InventoryError")),
        ("exception.message", s("inventory answered 503")),
        ("exception.stacktrace", s(stack)),
        ("exception.escaped", AnyValue::Boolean(true)),
        ("order", AnyValue::Int(42)),
    ]);
    r.set_body(s("checkout failed"));
    r.set_severity_number(Severity::Error);
    let v = convert(&r);
    let d = base(&v);
    assert_eq!(d["ver"], 2);
    let e = &d["exceptions"][0];
    assert_eq!(e["typeName"], "shop::InventoryError");
    assert_eq!(e["message"], "checkout failed");
    assert_eq!(e["hasFullStack"], true);
    assert_eq!(e["stack"], stack);
    assert_eq!(
        e["parsedStack"],
        json!([
            {"level": 0, "method": "shop::orders::load", "fileName": "src/orders.rs", "line": 42},
            {"level": 1, "method": "shop::http::handle", "fileName": "src/http.rs", "line": 88},
        ])
    );
    assert_eq!(d["severityLevel"], "Error");
    // The error's own text is kept, the consumed keys are not.
    assert_eq!(
        d["properties"],
        json!({"order": "42", "logger_name": "my.logger", "exception.message": "inventory answered 503"})
    );

    // No body: exception.message; no type: "Exception"; no stack: no stack, hasFullStack false.
    let r = with(&[("exception.message", s("boom"))]);
    let e = convert(&r)["data"]["baseData"]["exceptions"][0].clone();
    assert_eq!(
        e,
        json!({"typeName": "Exception", "message": "boom", "hasFullStack": false})
    );

    // Everything empty: the defaults.
    let r = with(&[("exception.type", s("")), ("exception.message", s(""))]);
    let e = convert(&r)["data"]["baseData"]["exceptions"][0].clone();
    assert_eq!(e["typeName"], "Exception");
    assert_eq!(e["message"], "Exception");

    // The body equal to exception.message: not repeated as a property.
    let mut r = with(&[("exception.message", s("boom"))]);
    r.set_body(s("boom"));
    assert!(base(&convert(&r))["properties"]
        .get("exception.message")
        .is_none());

    // A stack too long to send whole.
    let long = format!("{stack}\n{}", "x".repeat(40_000));
    let r = with(&[
        ("exception.type", s("E")),
        ("exception.stacktrace", s(&long)),
    ]);
    let e = convert(&r)["data"]["baseData"]["exceptions"][0].clone();
    assert_eq!(e["hasFullStack"], false);
    assert_eq!(e["stack"].as_str().map(str::len), Some(32_768));
    assert_eq!(e["parsedStack"].as_array().map(Vec::len), Some(2));

    // A stack in no known format: sent, not parsed.
    let r = with(&[
        ("exception.type", s("E")),
        ("exception.stacktrace", s("somewhere")),
    ]);
    let e = convert(&r)["data"]["baseData"]["exceptions"][0].clone();
    assert_eq!(e["stack"], "somewhere");
    assert!(e.get("parsedStack").is_none());
}

#[test]
fn tracing_error_convention() {
    // `tracing::error!(error = %e, "payment failed")`.
    let mut r = with(&[
        ("error", s("connection refused")),
        ("order", AnyValue::Int(7)),
    ]);
    r.set_body(s("payment failed"));
    r.set_severity_number(Severity::Error);
    let v = convert(&r);
    let d = base(&v);
    assert_eq!(
        d["exceptions"][0],
        json!({"typeName": "Exception", "message": "payment failed", "hasFullStack": false})
    );
    // The error stays a property: the body took the message.
    assert_eq!(d["properties"]["error"], "connection refused");
    assert_eq!(d["severityLevel"], "Error");

    // Without a message, the error is the message.
    let mut r = with(&[("error", s("connection refused"))]);
    r.set_severity_number(Severity::Error);
    let v = convert(&r);
    assert_eq!(base(&v)["exceptions"][0]["message"], "connection refused");
}

#[test]
fn events() {
    let mut r = with(&[
        ("microsoft.custom_event.name", s("checkout")),
        ("client.address", s("192.168.1.1")),
        (
            "microsoft.custom_measurements",
            s(r#"{"total": 12.5, "items": 3, "x": "no"}"#),
        ),
        ("cart", s("c-1")),
    ]);
    r.set_body(s("ignored"));
    let v = convert(&r);
    let d = base(&v);
    assert_eq!(d["name"], "checkout");
    assert_eq!(d["measurements"], json!({"total": 12.5, "items": 3.0}));
    // py-log-custom-event: client.address → ai.location.ip, and stays a property.
    assert_eq!(v["tags"]["ai.location.ip"], "192.168.1.1");
    assert_eq!(
        d["properties"],
        json!({"client.address": "192.168.1.1", "cart": "c-1", "logger_name": "my.logger"})
    );

    // No name: the body; nothing at all: "n/a".
    let mut r = with(&[("microsoft.custom_event.name", s(""))]);
    r.set_body(s("from body"));
    assert_eq!(base(&convert(&r))["name"], "from body");
    let r = with(&[("microsoft.custom_event.name", s(""))]);
    assert_eq!(base(&convert(&r))["name"], "n/a");

    // Measurements as a map.
    let map = AnyValue::Map(Box::new(HashMap::from([
        (OtelKey::from("a"), AnyValue::Int(1)),
        (OtelKey::from("b"), AnyValue::Double(f64::INFINITY)),
        (OtelKey::from("c"), s("2")),
    ])));
    let r = with(&[
        ("microsoft.custom_event.name", s("e")),
        ("microsoft.custom_measurements", map),
    ]);
    assert_eq!(base(&convert(&r))["measurements"], json!({"a": 1.0}));
}

#[test]
fn availability_results() {
    let mut r = with(
        &[
            availability(),
            vec![
                ("microsoft.availability.runLocation", s("westeurope")),
                ("microsoft.availability.message", s("answered 200")),
                ("microsoft.custom_measurements", s(r#"{"bytes": 512}"#)),
                ("session.id", s("sess")),
                ("probe", s("p-1")),
            ],
        ]
        .concat(),
    );
    r.set_body(s("body"));
    r.set_severity_number(Severity::Warn);
    r.set_timestamp(UNIX_EPOCH + Duration::from_secs(60));
    let v = convert(&r);
    assert_eq!(v["name"], "Microsoft.ApplicationInsights.Availability");
    assert_eq!(v["time"], "1970-01-01T00:01:00.000000Z");
    assert_eq!(v["tags"]["ai.session.id"], "sess");
    assert_eq!(
        base(&v),
        &json!({
            "ver": 2,
            "id": "run-1",
            "name": "ping",
            "duration": "00:00:05",
            "success": true,
            "runLocation": "westeurope",
            "message": "answered 200",
            // The consumed keys are not properties; availability has no severity.
            "properties": {"probe": "p-1", "logger_name": "my.logger"},
            "measurements": {"bytes": 512.0},
        })
    );

    // Durations: TimeSpan text as it is, numbers as milliseconds; anything else: a trace.
    let durations: Vec<(AnyValue, Option<&str>)> = vec![
        (s("0.00:00:01.250"), Some("0.00:00:01.250")),
        (s("999.23:59:59.9999999"), Some("999.23:59:59.9999999")),
        (AnyValue::Int(1250), Some("0.00:00:01.250000")),
        (AnyValue::Int(0), Some("0.00:00:00.000000")),
        (AnyValue::Double(1.5), Some("0.00:00:00.001500")),
        (AnyValue::Int(86_400_000), Some("1.00:00:00.000000")),
        (s("5000"), None),
        (s("0:00:05"), None),
        (s("25:00:00"), None),
        (s("00:00:05.12345678"), None),
        (AnyValue::Int(-1), None),
        (AnyValue::Int(i64::MAX), None),
        (AnyValue::Double(f64::NAN), None),
        (AnyValue::Double(-0.5), None),
        (AnyValue::Double(1e300), None),
        (AnyValue::Boolean(true), None),
        (AnyValue::Bytes(Box::new(b"00:00:05".to_vec())), None),
        (AnyValue::ListAny(Box::new(vec![s("00:00:05")])), None),
    ];
    for (duration, want) in durations {
        let mut attrs = availability();
        attrs.push(("microsoft.availability.duration", duration.clone()));
        let mut r = with(&attrs);
        r.set_body(s("body"));
        let v = convert(&r);
        match want {
            Some(want) => assert_eq!(base(&v)["duration"], want, "{duration:?}"),
            None => {
                // Nothing lost: a trace with every attribute as a property.
                assert_eq!(v["data"]["baseType"], "MessageData", "{duration:?}");
                assert_eq!(base(&v)["message"], "body");
                let props = &base(&v)["properties"];
                assert_eq!(props["microsoft.availability.id"], "run-1");
                assert_eq!(props["microsoft.availability.success"], "true");
                assert!(props.get("microsoft.availability.duration").is_some());
            }
        }
    }

    // success: "true" in any case, or the boolean true.
    for (success, want) in [
        (s("true"), true),
        (s("TRUE"), true),
        (s("True"), true),
        (AnyValue::Boolean(true), true),
        (AnyValue::Boolean(false), false),
        (s("false"), false),
        (s("yes"), false),
        (s("1"), false),
        (AnyValue::Int(1), false),
        (s(" true"), false),
    ] {
        let mut attrs = availability();
        attrs.push(("microsoft.availability.success", success.clone()));
        assert_eq!(
            base(&convert(&with(&attrs)))["success"],
            want,
            "{success:?}"
        );
    }

    // Any type counts as present when it renders as text; empty values do not.
    let mut attrs = availability();
    attrs.push(("microsoft.availability.id", AnyValue::Int(7)));
    assert_eq!(base(&convert(&with(&attrs)))["id"], "7");
    for key in [
        "microsoft.availability.id",
        "microsoft.availability.name",
        "microsoft.availability.duration",
        "microsoft.availability.success",
    ] {
        let mut attrs = availability();
        attrs.push((key, s("")));
        assert_eq!(
            convert(&with(&attrs))["data"]["baseType"],
            "MessageData",
            "{key}"
        );
        let attrs: Vec<_> = availability()
            .into_iter()
            .filter(|(k, _)| *k != key)
            .collect();
        let v = convert(&with(&attrs));
        assert_eq!(v["data"]["baseType"], "MessageData", "{key}");
        // Kept as properties.
        assert_eq!(
            base(&v)["properties"].as_object().map(|p| p.len()),
            Some(4),
            "{key}"
        );
    }

    // The message: the attribute even when empty, else the body (trimmed), else empty.
    let mut attrs = availability();
    attrs.push(("microsoft.availability.message", s("")));
    let mut r = with(&attrs);
    r.set_body(s("body"));
    assert_eq!(base(&convert(&r))["message"], "");
    let mut r = with(&availability());
    r.set_body(s("  probe failed \n"));
    assert_eq!(base(&convert(&r))["message"], "probe failed");
    let v = convert(&with(&availability()));
    assert_eq!(base(&v)["message"], "");
    assert!(base(&v).get("runLocation").is_none());
    // Long values are cut to the service's limits.
    let long = "x".repeat(10_000);
    let mut attrs = availability();
    attrs.extend([
        ("microsoft.availability.id", s(&long)),
        ("microsoft.availability.name", s(&long)),
        ("microsoft.availability.runLocation", s(&long)),
        ("microsoft.availability.message", s(&long)),
    ]);
    let v = convert(&with(&attrs));
    let len = |f: &str| base(&v)[f].as_str().map(str::len);
    assert_eq!(
        (len("id"), len("name"), len("runLocation"), len("message")),
        (Some(512), Some(1024), Some(1024), Some(8192))
    );
}

#[test]
fn tags_and_properties() {
    // py-log-user-fields and the §4.3 list.
    let mut r = with(&[
        ("enduser.id", s("auth-user")),
        ("enduser.pseudo.id", s("anon-user")),
        ("session.id", s("sess")),
        ("ai.operation.name", s("GET /orders")),
        ("http.method", s("GET")),
        ("user_agent.synthetic.type", s("bot")),
        ("microsoft.client.ip", s("10.0.0.1")),
        ("client.address", s("192.168.1.1")),
        ("test", s("value")),
        ("flag", AnyValue::Boolean(false)),
        ("list", AnyValue::ListAny(Box::new(vec![s("a"), s("b")]))),
        ("microsoft.availability.id", s("kept")),
    ]);
    r.set_body(s("hi"));
    let v = convert(&r);
    let tags = &v["tags"];
    assert_eq!(tags["ai.user.authUserId"], "auth-user");
    assert_eq!(tags["ai.user.id"], "anon-user");
    assert_eq!(tags["ai.session.id"], "sess");
    assert_eq!(tags["ai.operation.name"], "GET /orders");
    assert_eq!(tags["ai.operation.syntheticSource"], "True");
    assert_eq!(tags["ai.location.ip"], "10.0.0.1");
    assert!(tags.get("ai.operation.id").is_none());
    assert!(tags.get("ai.operation.parentId").is_none());
    assert_eq!(
        base(&v)["properties"],
        json!({
            "ai.operation.name": "GET /orders",
            "http.method": "GET",
            "user_agent.synthetic.type": "bot",
            "microsoft.client.ip": "10.0.0.1",
            "client.address": "192.168.1.1",
            "test": "value",
            "flag": "False",
            "list": "[\"a\",\"b\"]",
            "microsoft.availability.id": "kept",
            "logger_name": "my.logger",
        })
    );
}

#[test]
fn logger_name() {
    // An attribute of that name wins.
    let r = with(&[("logger_name", s("mine"))]);
    assert_eq!(base(&convert(&r))["properties"]["logger_name"], "mine");
    // The appenders' empty scope: the target.
    let mut r = record();
    r.set_target("shop::checkout");
    let v = convert_with(&r, &scope(""), &SharedTags::default());
    assert_eq!(base(&v)["properties"]["logger_name"], "shop::checkout");
    // A named scope wins over the target.
    let v = convert_with(&r, &scope("shop"), &SharedTags::default());
    assert_eq!(base(&v)["properties"]["logger_name"], "shop");
    // Neither: no property.
    let v = convert_with(&record(), &scope(""), &SharedTags::default());
    assert!(base(&v).get("properties").is_none());
}

#[test]
fn trace_context_only_when_valid() {
    let trace = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap_or(TraceId::INVALID);
    let span = SpanId::from_hex("00f067aa0ba902b7").unwrap_or(SpanId::INVALID);
    let mut r = record();
    r.set_trace_context(trace, span, Some(TraceFlags::SAMPLED));
    let v = convert(&r);
    assert_eq!(
        v["tags"]["ai.operation.id"],
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(v["tags"]["ai.operation.parentId"], "00f067aa0ba902b7");

    for (t, s) in [(TraceId::INVALID, span), (trace, SpanId::INVALID)] {
        let mut r = record();
        r.set_trace_context(t, s, None);
        let v = convert(&r);
        assert!(v["tags"].get("ai.operation.id").is_none());
        assert!(v["tags"].get("ai.operation.parentId").is_none());
    }
}

#[test]
fn time_and_envelope() {
    let mut r = record();
    assert_eq!(convert(&r)["time"], "1970-01-01T00:00:07.000000Z");
    r.set_observed_timestamp(UNIX_EPOCH + Duration::from_secs(60));
    assert_eq!(convert(&r)["time"], "1970-01-01T00:01:00.000000Z");
    r.set_timestamp(UNIX_EPOCH + Duration::from_micros(3_600_000_001));
    let v = convert(&r);
    assert_eq!(v["time"], "1970-01-01T01:00:00.000001Z");
    assert_eq!(v["iKey"], IKEY);
    assert!(v.get("sampleRate").is_none());

    // Resource tags come from the shared tags, as for spans.
    let mut shared = SharedTags::default();
    shared.set(tag::CLOUD_ROLE, "shop.checkout");
    let v = convert_with(&r, &scope("s"), &shared);
    assert_eq!(v["tags"]["ai.cloud.role"], "shop.checkout");
}

#[cfg(feature = "testing")]
#[test]
fn every_item_passes_the_contract() {
    let long = "y".repeat(100_000);
    let records = vec![
        with(&[
            ("exception.type", s(&long)),
            ("exception.message", s(&long)),
            ("exception.stacktrace", s(&long)),
        ]),
        with(&[("microsoft.custom_event.name", s(&long)), ("k", s(&long))]),
        with(&[
            ("", s("empty key")),
            ("session.id", s(&long)),
            ("enduser.id", s(&long)),
        ]),
        record(),
    ];
    let wide = "😀\n".repeat(40_000);
    let mut records = records;
    records.push(with(&[
        ("microsoft.availability.id", s(&long)),
        ("microsoft.availability.name", s(&long)),
        ("microsoft.availability.duration", AnyValue::Double(1e10)),
        ("microsoft.availability.success", AnyValue::Boolean(false)),
        ("microsoft.availability.runLocation", s(&wide)),
        ("microsoft.availability.message", s(&wide)),
        ("k", s(&wide)),
    ]));
    records.push(with(&[
        ("microsoft.availability.id", s("1")),
        ("microsoft.availability.name", s("n")),
        ("microsoft.availability.duration", s("999.23:59:59.9999999")),
        ("microsoft.availability.success", s("true")),
        ("microsoft.availability.message", s("")),
    ]));
    records.push(with(&[
        ("exception.message", s(&wide)),
        ("exception.stacktrace", s(&wide)),
    ]));
    let mut r = record();
    r.set_body(s(&wide));
    records.push(r);
    for r in &records {
        let v = convert(r);
        // Items older than 48 hours are refused: check a recent copy.
        let mut recent = v.clone();
        recent["time"] = json!(crate::wire::Timestamp(SystemTime::now()).to_string());
        let result = crate::testing::validate_envelope(&recent);
        assert_eq!(result, Ok(()), "{}", v["data"]["baseType"]);
    }
}
