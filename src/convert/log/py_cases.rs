//! The Python exporter's log mapping tests (PY 1.0.0b58, `tests/logs/test_logs.py`), one Rust
//! test per Python test, same inputs (the PY fixtures `_log_data`, `_exc_data`, ... are the
//! functions below), same assertions. Where our mapping deliberately differs, the test asserts
//! our behaviour and says which recommended ("R") rule of MAPPING.md applies.
//!
//! | PY test | result |
//! |---|---|
//! | `test_log_to_envelope_partA` | agrees: PY checks `ai.internal.sdkVersion` against its own process's version string, ours is our process's in the §2.1 R format |
//! | `test_log_to_envelope_partA_default` | agrees |
//! | `test_log_to_envelope_log` | deviation: `severityLevel` is the string `Warning`, not `2` (§4.4 R) |
//! | `test_log_to_envelope_user_fields` | agrees |
//! | `test_log_to_envelope_log_none` | agrees |
//! | `test_log_to_envelope_log_empty` | agrees |
//! | `test_log_to_envelope_log_empty_with_whitespaces` | agrees |
//! | `test_log_to_envelope_log_complex_body` | deviation: compact JSON with sorted keys, not `json.dumps` spacing (§10.3 R) |
//! | `test_log_to_envelope_log_complex_body_not_serializeable` | agrees (input adapted: a byte-string body, see the test) |
//! | `test_log_to_envelope_exception_with_string_message` | deviation: severity `Critical`, not `4` (§4.4 R) |
//! | `test_log_to_envelope_exception_with_exc_message` | deviation: severity as above (input adapted: the error's text as the body) |
//! | `test_log_to_envelope_exception_empty` | deviation: severity as above; the rest agrees |
//! | `test_log_to_envelope_exception_with_blank_exception` | deviation: severity as above; the rest agrees |
//! | `test_log_to_envelope_event` | agrees |
//! | `test_log_to_envelope_event_complex_body` | deviation: compact JSON (§10.3 R) |
//! | `test_log_to_envelope_event_complex_body_not_serializeable` | agrees (input adapted as above) |
//! | `test_log_to_envelope_custom_event` | agrees |
//! | `test_log_to_envelope_custom_measurements` | agrees |
//! | `test_log_to_envelope_availability` | agrees |
//! | `test_log_to_envelope_availability_preserves_empty_message` | agrees |
//! | `test_log_to_envelope_availability_missing_required_attribute` | agrees (input adapted: no attribute for Python's `None`) |
//! | `test_log_to_envelope_custom_event_precedes_availability` | agrees |
//! | `test_log_to_envelope_exception_precedes_availability` | agrees |
//! | `test_log_to_envelope_timestamp` | agrees |
//! | `test_log_to_envelope_synthetic_source` | agrees |
//! | `test_log_to_envelope_synthetic_load_always_on` | agrees |
//! | `test_get_severity_level` | deviation: the string enum, not the integers 0–4 (§4.4 R); same levels |
//!
//! 27 cases: 19 agree, 8 differ as the recommended rules say, both compared as MAPPING.md says:
//! the severity as the swagger's string (6, the same level as PY's integer, §4.4) and compact
//! JSON bodies (2, equal in value to PY's, §10.3).

use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::{InstrumentationScope, Key as OtelKey, KeyValue, SpanId, TraceFlags, TraceId};
use opentelemetry_sdk::logs::{SdkLogRecord, SdkLoggerProvider};
use opentelemetry_sdk::Resource;
use serde_json::{json, Value};

use super::log_to_envelope;
use crate::convert::tags::shared_tags_with;
use crate::convert::Context;

/// `APPINSIGHTS_INSTRUMENTATIONKEY` of the PY test class.
const IKEY: &str = "1234abcd-5678-4efa-8abc-1234567890ab";
/// `timestamp=1646865018558419456` of every PY record.
const TIMESTAMP_NS: u64 = 1_646_865_018_558_419_456;
/// `ns_to_datetime(1646865018558419456)`, at the microseconds PY keeps.
const TIME: &str = "2022-03-09T22:30:18.558419Z";
/// `"{:032x}".format(125960616039069540489478540494783893221)`.
const TRACE_ID: &str = "5ec321d973d243d8c02af9e57ebfcee5";
/// `"{:016x}".format(2909973987304607650)`.
const SPAN_ID: &str = "28624dec7aeb0fa2";
/// `platform.node()`: the host name, passed in here.
const HOST: &str = "test-host";
const TRACEBACK: &str = "Traceback (most recent call last):\n  File \"test.py\", line 38, in <module>\n    raise ZeroDivisionError()\nZeroDivisionError\n";

fn s(v: &str) -> AnyValue {
    AnyValue::from(v.to_owned())
}

/// `Resource.create(attributes={"asd": "test_resource"})`: with the SDK's defaults.
fn test_resource() -> Resource {
    Resource::builder()
        .with_attribute(KeyValue::new("asd", "test_resource"))
        .build()
}

/// `Resource({...})`: exactly these attributes.
fn resource(attrs: &[(&'static str, &'static str)]) -> Resource {
    Resource::builder_empty()
        .with_attributes(attrs.iter().map(|(k, v)| KeyValue::new(*k, *v)))
        .build()
}

/// A `LogRecord(timestamp=1646865018558419456, ...)`; `context`: the PY span context.
fn record(
    severity: Severity,
    severity_text: &'static str,
    body: Option<AnyValue>,
    attrs: Vec<(&'static str, AnyValue)>,
    context: bool,
) -> SdkLogRecord {
    let mut r = SdkLoggerProvider::builder()
        .build()
        .logger("test")
        .create_log_record();
    r.set_timestamp(UNIX_EPOCH + Duration::from_nanos(TIMESTAMP_NS));
    r.set_severity_number(severity);
    r.set_severity_text(severity_text);
    if let Some(body) = body {
        r.set_body(body);
    }
    for (k, v) in attrs {
        r.add_attribute(k, v);
    }
    if context {
        r.set_trace_context(
            TraceId::from_hex(TRACE_ID).unwrap_or(TraceId::INVALID),
            SpanId::from_hex(SPAN_ID).unwrap_or(SpanId::INVALID),
            None::<TraceFlags>,
        );
    }
    r
}

/// `exporter._log_to_envelope(...)` of a record of `scope` and `resource`, as JSON.
fn convert_in(record: &SdkLogRecord, scope: &'static str, resource: &Resource) -> Value {
    let shared = shared_tags_with(resource, &|_| None, &|| Some(HOST.to_owned()));
    let cx = Context {
        ikey: IKEY,
        tags: &shared,
    };
    let scope = InstrumentationScope::builder(scope).build();
    let envelope = log_to_envelope(record, &scope, &cx, UNIX_EPOCH);
    serde_json::to_value(&envelope).unwrap_or_default()
}

/// A record of the scope `test_name` and the resource `{"asd": "test_resource"}`.
fn convert(record: &SdkLogRecord) -> Value {
    convert_in(record, "test_name", &test_resource())
}

fn base(v: &Value) -> &Value {
    &v["data"]["baseData"]
}

// The PY fixtures.

fn log_data() -> SdkLogRecord {
    record(
        Severity::Warn,
        "WARNING",
        Some(s("Test message")),
        vec![
            ("test", s("attribute")),
            ("ai.operation.name", s("TestOperationName")),
        ],
        true,
    )
}

fn log_data_user_fields() -> SdkLogRecord {
    record(
        Severity::Warn,
        "WARNING",
        Some(s("Test message")),
        vec![
            ("test", s("attribute")),
            ("enduser.id", s("test-auth")),
            ("enduser.pseudo.id", s("test-user")),
            ("session.id", s("test-session")),
        ],
        true,
    )
}

fn log_data_empty() -> SdkLogRecord {
    record(
        Severity::Warn,
        "WARNING",
        Some(s("")),
        vec![
            ("test", s("attribute")),
            ("ai.operation.name", s("TestOperationName")),
        ],
        true,
    )
}

fn log_data_none() -> SdkLogRecord {
    record(
        Severity::Warn,
        "WARNING",
        None,
        vec![("test", s("attribute"))],
        true,
    )
}

/// `{"foo": {"bar": "baz", "qux": 42}}`.
fn complex_body() -> AnyValue {
    AnyValue::Map(Box::new(HashMap::from([(
        OtelKey::from("foo"),
        AnyValue::Map(Box::new(HashMap::from([
            (OtelKey::from("bar"), s("baz")),
            (OtelKey::from("qux"), AnyValue::Int(42)),
        ]))),
    )])))
}

fn log_data_complex_body() -> SdkLogRecord {
    record(
        Severity::Warn,
        "WARNING",
        Some(complex_body()),
        vec![
            ("test", s("attribute")),
            ("ai.operation.name", s("TestOperationName")),
        ],
        true,
    )
}

/// PY: `NotSerializeableClass()`, an object `json.dumps` refuses, whose `str()` is the text.
/// Rust has no such body: the closest is a byte string (for which PY's `json.dumps` fails
/// too), whose text is sent.
fn not_serializeable_body() -> AnyValue {
    AnyValue::Bytes(Box::new(b"This class is not serializeable".to_vec()))
}

fn log_data_complex_body_not_serializeable() -> SdkLogRecord {
    record(
        Severity::Warn,
        "WARNING",
        Some(not_serializeable_body()),
        vec![("test", s("attribute"))],
        true,
    )
}

fn log_data_empty_with_whitespaces() -> SdkLogRecord {
    record(
        Severity::Warn,
        "WARNING",
        Some(s("  ")),
        vec![("test", s("attribute"))],
        true,
    )
}

fn event_attrs() -> Vec<(&'static str, AnyValue)> {
    vec![
        ("event_key", s("event_attribute")),
        (
            "APPLICATION_INSIGHTS_EVENT_MARKER_ATTRIBUTE",
            AnyValue::Boolean(true),
        ),
    ]
}

fn log_data_event() -> SdkLogRecord {
    record(
        Severity::Info,
        "INFO",
        Some(s("Test Event")),
        event_attrs(),
        true,
    )
}

fn log_data_event_complex_body() -> SdkLogRecord {
    record(
        Severity::Info,
        "INFO",
        Some(complex_body()),
        event_attrs(),
        true,
    )
}

fn log_data_event_complex_body_not_serializeable() -> SdkLogRecord {
    record(
        Severity::Info,
        "INFO",
        Some(not_serializeable_body()),
        event_attrs(),
        false,
    )
}

fn log_data_custom_event() -> SdkLogRecord {
    record(
        Severity::Info,
        "INFO",
        Some(s("Test Event")),
        vec![
            ("event_key", s("event_attribute")),
            ("microsoft.custom_event.name", s("event_name")),
            ("client.address", s("192.168.1.1")),
        ],
        true,
    )
}

fn exc_attrs(kind: &str, message: &str, stack: &str) -> Vec<(&'static str, AnyValue)> {
    vec![
        ("test", s("attribute")),
        ("exception.type", s(kind)),
        ("exception.message", s(message)),
        ("exception.stacktrace", s(stack)),
    ]
}

fn exc_data() -> SdkLogRecord {
    record(
        Severity::Fatal,
        "EXCEPTION",
        Some(s("Test message")),
        exc_attrs("ZeroDivisionError", "division by zero", TRACEBACK),
        true,
    )
}

/// PY: `body=Exception("test exception message")`, whose `str()` becomes the message. Rust
/// log bodies hold no error objects; an error reaches a record as its text (the appenders
/// record `Display`), so the closest body is that text.
fn exc_data_with_exc_body() -> SdkLogRecord {
    record(
        Severity::Fatal,
        "EXCEPTION",
        Some(s("test exception message")),
        exc_attrs("ZeroDivisionError", "division by zero", TRACEBACK),
        true,
    )
}

fn exc_data_blank_exception() -> SdkLogRecord {
    record(
        Severity::Fatal,
        "EXCEPTION",
        Some(s("test exception")),
        exc_attrs("", "", ""),
        true,
    )
}

fn exc_data_empty() -> SdkLogRecord {
    record(
        Severity::Fatal,
        "EXCEPTION",
        Some(s("")),
        exc_attrs("", "", ""),
        true,
    )
}

/// The four attributes of an availability result in the PY tests.
fn availability_attrs() -> Vec<(&'static str, AnyValue)> {
    vec![
        ("microsoft.availability.id", s("test-id")),
        ("microsoft.availability.name", s("test-name")),
        ("microsoft.availability.duration", s("00:00:05")),
        ("microsoft.availability.success", s("true")),
    ]
}

fn availability_record(attrs: Vec<(&'static str, AnyValue)>) -> SdkLogRecord {
    record(
        Severity::Info,
        "INFO",
        Some(s("availability log")),
        attrs,
        false,
    )
}

#[test]
fn py_log_to_envelope_part_a() {
    let res = resource(&[
        ("service.name", "testServiceName"),
        ("service.namespace", "testServiceNamespace"),
        ("service.instance.id", "testServiceInstanceId"),
    ]);
    let v = convert_in(&log_data(), "test_name", &res);
    assert_eq!(v["iKey"], IKEY);
    let tags = &v["tags"];
    // PY's process tags (`azure_monitor_context`): the host name, "Other"; the locale comes
    // from the environment, which these tests leave empty (see `convert/tags.rs`).
    assert_eq!(tags["ai.device.id"], HOST);
    assert_eq!(tags["ai.device.type"], "Other");
    assert_eq!(tags["ai.internal.nodeName"], "testServiceInstanceId");
    // PY compares the sdkVersion with its own process's; ours is this process's, in the
    // MAPPING.md §2.1 R format `{rp}{os}m_rust...:ext{version}`.
    let sdk = tags["ai.internal.sdkVersion"].as_str().unwrap_or_default();
    assert!(sdk.contains("m_rust"), "{sdk}");
    assert!(
        sdk.ends_with(concat!(":ext", env!("CARGO_PKG_VERSION"))),
        "{sdk}"
    );
    assert_eq!(
        tags["ai.cloud.role"],
        "testServiceNamespace.testServiceName"
    );
    assert_eq!(tags["ai.cloud.roleInstance"], "testServiceInstanceId");
    assert_eq!(tags["ai.operation.id"], TRACE_ID);
    assert_eq!(tags["ai.operation.parentId"], SPAN_ID);
    assert_eq!(tags["ai.operation.name"], "TestOperationName");
}

#[test]
fn py_log_to_envelope_part_a_default() {
    let res = resource(&[("service.name", "testServiceName")]);
    let v = convert_in(&log_data(), "test_name", &res);
    assert_eq!(v["tags"]["ai.cloud.role"], "testServiceName");
    assert_eq!(v["tags"]["ai.cloud.roleInstance"], HOST);
    assert_eq!(
        v["tags"]["ai.internal.nodeName"],
        v["tags"]["ai.cloud.roleInstance"]
    );
}

#[test]
fn py_log_to_envelope_log() {
    let v = convert(&log_data());
    assert_eq!(v["name"], "Microsoft.ApplicationInsights.Message");
    assert_eq!(v["time"], TIME);
    assert_eq!(v["data"]["baseType"], "MessageData");
    assert_eq!(base(&v)["message"], "Test message");
    // Deviation (MAPPING.md §4.4 R): the swagger's string enum; PY sends the integer 2.
    assert_eq!(base(&v)["severityLevel"], "Warning");
    assert_eq!(base(&v)["properties"]["test"], "attribute");
}

#[test]
fn py_log_to_envelope_user_fields() {
    let v = convert(&log_data_user_fields());
    assert_eq!(v["tags"]["ai.user.authUserId"], "test-auth");
    assert_eq!(v["tags"]["ai.user.id"], "test-user");
    assert_eq!(v["tags"]["ai.session.id"], "test-session");
    let props = &base(&v)["properties"];
    for key in ["enduser.id", "enduser.pseudo.id", "session.id"] {
        assert!(props.get(key).is_none(), "{key}");
    }
    assert_eq!(props["logger_name"], "test_name");
}

#[test]
fn py_log_to_envelope_log_none() {
    let res = Resource::builder()
        .with_attributes([
            KeyValue::new("asd", "test_resource"),
            KeyValue::new("microsoft.applicationId", "app_id"),
        ])
        .build();
    let v = convert_in(&log_data_none(), "test_name", &res);
    assert_eq!(v["name"], "Microsoft.ApplicationInsights.Message");
    assert_eq!(v["data"]["baseType"], "MessageData");
    assert_eq!(base(&v)["message"], "n/a");
    assert!(base(&v)["properties"]
        .get("microsoft.applicationId")
        .is_none());
}

#[test]
fn py_log_to_envelope_log_empty() {
    let v = convert(&log_data_empty());
    assert_eq!(v["name"], "Microsoft.ApplicationInsights.Message");
    assert_eq!(v["data"]["baseType"], "MessageData");
    assert_eq!(base(&v)["message"], "n/a");
    assert_eq!(v["tags"]["ai.operation.name"], "TestOperationName");
}

#[test]
fn py_log_to_envelope_log_empty_with_whitespaces() {
    let v = convert(&log_data_empty_with_whitespaces());
    assert_eq!(v["name"], "Microsoft.ApplicationInsights.Message");
    assert_eq!(v["data"]["baseType"], "MessageData");
    assert_eq!(base(&v)["message"], "n/a");
}

#[test]
fn py_log_to_envelope_log_complex_body() {
    let v = convert(&log_data_complex_body());
    assert_eq!(v["name"], "Microsoft.ApplicationInsights.Message");
    assert_eq!(v["data"]["baseType"], "MessageData");
    // Deviation (MAPPING.md §10.3 R): compact JSON with sorted keys; PY's `json.dumps` gives
    // `{"foo": {"bar": "baz", "qux": 42}}`. The same JSON value.
    let message = base(&v)["message"].as_str().unwrap_or_default();
    assert_eq!(message, r#"{"foo":{"bar":"baz","qux":42}}"#);
    let py: Value =
        serde_json::from_str(r#"{"foo": {"bar": "baz", "qux": 42}}"#).unwrap_or_default();
    assert_eq!(serde_json::from_str::<Value>(message).ok(), Some(py));
    assert_eq!(v["tags"]["ai.operation.name"], "TestOperationName");
}

#[test]
fn py_log_to_envelope_log_complex_body_not_serializeable() {
    // Input adapted: see `not_serializeable_body`.
    let v = convert(&log_data_complex_body_not_serializeable());
    assert_eq!(v["name"], "Microsoft.ApplicationInsights.Message");
    assert_eq!(v["data"]["baseType"], "MessageData");
    assert_eq!(base(&v)["message"], "This class is not serializeable");
}

/// The assertions the PY exception tests share (one `Critical` exception item with the
/// `test` attribute); returns its one exception.
fn the_exception(v: &Value) -> Value {
    assert_eq!(v["name"], "Microsoft.ApplicationInsights.Exception");
    assert_eq!(v["time"], TIME);
    assert_eq!(v["data"]["baseType"], "ExceptionData");
    // Deviation (§4.4 R): `Critical`; PY sends 4.
    assert_eq!(base(v)["severityLevel"], "Critical");
    assert_eq!(base(v)["properties"]["test"], "attribute");
    let exceptions = base(v)["exceptions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(exceptions.len(), 1);
    exceptions.into_iter().next().unwrap_or_default()
}

#[test]
fn py_log_to_envelope_exception_with_string_message() {
    let v = convert(&exc_data());
    let exception = the_exception(&v);
    assert_eq!(exception["typeName"], "ZeroDivisionError");
    // The body wins over exception.message (we keep the latter as a property).
    assert_eq!(exception["message"], "Test message");
    assert_eq!(exception["hasFullStack"], true);
    assert_eq!(exception["stack"], TRACEBACK);
}

#[test]
fn py_log_to_envelope_exception_with_exc_message() {
    // Input adapted: see `exc_data_with_exc_body`.
    let v = convert(&exc_data_with_exc_body());
    let exception = the_exception(&v);
    assert_eq!(exception["typeName"], "ZeroDivisionError");
    assert_eq!(exception["message"], "test exception message");
    assert_eq!(exception["hasFullStack"], true);
    assert_eq!(exception["stack"], TRACEBACK);
}

#[test]
fn py_log_to_envelope_exception_empty() {
    let v = convert(&exc_data_empty());
    let exception = the_exception(&v);
    assert_eq!(exception["typeName"], "Exception");
    assert_eq!(exception["message"], "Exception");
    assert_eq!(exception["hasFullStack"], true);
    assert_eq!(exception["stack"], "");
}

#[test]
fn py_log_to_envelope_exception_with_blank_exception() {
    let v = convert_in(
        &exc_data_blank_exception(),
        "blank_exception_logger",
        &test_resource(),
    );
    let exception = the_exception(&v);
    assert_eq!(exception["typeName"], "Exception");
    assert_eq!(exception["message"], "test exception");
    assert_eq!(exception["hasFullStack"], true);
    assert_eq!(exception["stack"], "");
    assert_eq!(
        base(&v)["properties"]["logger_name"],
        "blank_exception_logger"
    );
}

#[test]
fn py_log_to_envelope_event() {
    let v = convert(&log_data_event());
    assert_eq!(v["name"], "Microsoft.ApplicationInsights.Event");
    assert_eq!(v["time"], TIME);
    assert_eq!(v["data"]["baseType"], "EventData");
    assert_eq!(base(&v)["name"], "Test Event");
    assert_eq!(base(&v)["properties"]["event_key"], "event_attribute");
}

#[test]
fn py_log_to_envelope_event_complex_body() {
    let v = convert(&log_data_event_complex_body());
    assert_eq!(v["name"], "Microsoft.ApplicationInsights.Event");
    assert_eq!(v["time"], TIME);
    assert_eq!(v["data"]["baseType"], "EventData");
    // Deviation (§10.3 R): compact JSON with sorted keys, the same value as `json.dumps`.
    assert_eq!(base(&v)["name"], r#"{"foo":{"bar":"baz","qux":42}}"#);
    assert_eq!(base(&v)["properties"]["event_key"], "event_attribute");
}

#[test]
fn py_log_to_envelope_event_complex_body_not_serializeable() {
    // Input adapted: see `not_serializeable_body`.
    let v = convert(&log_data_event_complex_body_not_serializeable());
    assert_eq!(v["name"], "Microsoft.ApplicationInsights.Event");
    assert_eq!(v["time"], TIME);
    assert_eq!(v["data"]["baseType"], "EventData");
    assert_eq!(base(&v)["name"], "This class is not serializeable");
    assert_eq!(base(&v)["properties"]["event_key"], "event_attribute");
}

#[test]
fn py_log_to_envelope_custom_event() {
    let v = convert_in(
        &log_data_custom_event(),
        "custom-event-logger",
        &test_resource(),
    );
    assert_eq!(v["name"], "Microsoft.ApplicationInsights.Event");
    assert_eq!(v["tags"]["ai.location.ip"], "192.168.1.1");
    assert_eq!(v["time"], TIME);
    assert_eq!(v["data"]["baseType"], "EventData");
    assert_eq!(base(&v)["name"], "event_name");
    assert_eq!(base(&v)["properties"]["event_key"], "event_attribute");
    assert_eq!(base(&v)["properties"]["logger_name"], "custom-event-logger");
}

#[test]
fn py_log_to_envelope_custom_measurements() {
    let attrs = || {
        vec![
            ("test", s("attribute")),
            (
                "microsoft.custom_measurements",
                s(r#"{"itemsProcessed": 42.0, "queueDepth": 7}"#),
            ),
        ]
    };
    let cases: [(&str, Vec<(&'static str, AnyValue)>); 3] = [
        ("MessageData", vec![]),
        (
            "EventData",
            vec![("microsoft.custom_event.name", s("event_name"))],
        ),
        (
            "ExceptionData",
            vec![
                ("exception.type", s("ZeroDivisionError")),
                ("exception.message", s("division by zero")),
            ],
        ),
    ];
    for (base_type, extra) in cases {
        let r = record(
            Severity::Info,
            "INFO",
            Some(s("Test message")),
            [attrs(), extra].concat(),
            false,
        );
        let v = convert(&r);
        assert_eq!(v["data"]["baseType"], base_type);
        assert_eq!(
            base(&v)["measurements"],
            json!({"itemsProcessed": 42.0, "queueDepth": 7.0}),
            "{base_type}"
        );
        assert!(base(&v)["properties"]
            .get("microsoft.custom_measurements")
            .is_none());
    }
}

#[test]
fn py_log_to_envelope_availability() {
    let mut attrs = vec![("test", s("attribute"))];
    attrs.extend(availability_attrs());
    attrs.extend([
        ("microsoft.availability.runLocation", s("test-location")),
        ("microsoft.availability.message", s("test-message")),
        (
            "microsoft.custom_measurements",
            s(r#"{"itemsProcessed": 42.0}"#),
        ),
    ]);
    let v = convert(&availability_record(attrs));
    assert_eq!(v["name"], "Microsoft.ApplicationInsights.Availability");
    assert_eq!(v["time"], TIME);
    assert_eq!(v["data"]["baseType"], "AvailabilityData");
    let d = base(&v);
    assert_eq!(d["id"], "test-id");
    assert_eq!(d["name"], "test-name");
    assert_eq!(d["duration"], "00:00:05");
    assert_eq!(d["success"], true);
    assert_eq!(d["runLocation"], "test-location");
    assert_eq!(d["message"], "test-message");
    assert_eq!(d["measurements"], json!({"itemsProcessed": 42.0}));
    assert_eq!(
        d["properties"],
        json!({"test": "attribute", "logger_name": "test_name"})
    );
}

#[test]
fn py_log_to_envelope_availability_preserves_empty_message() {
    let mut attrs = availability_attrs();
    attrs.push(("microsoft.availability.message", s("")));
    let v = convert(&availability_record(attrs));
    assert_eq!(v["data"]["baseType"], "AvailabilityData");
    // Valid: `message` is optional, so an empty one is accepted (INGESTION.md §3).
    assert_eq!(base(&v)["message"], "");
}

#[test]
fn py_log_to_envelope_availability_missing_required_attribute() {
    // PY: `microsoft.availability.id` set to `None` and to `""`. A Rust attribute has no
    // null: `None` is the attribute left out.
    for id in [None, Some(s(""))] {
        let mut attrs: Vec<_> = availability_attrs()
            .into_iter()
            .filter(|(k, _)| *k != "microsoft.availability.id")
            .collect();
        if let Some(id) = id.clone() {
            attrs.push(("microsoft.availability.id", id));
        }
        let v = convert(&availability_record(attrs));
        assert_eq!(v["data"]["baseType"], "MessageData", "{id:?}");
        assert_eq!(base(&v)["message"], "availability log", "{id:?}");
        // Beyond PY (not asserted there): the attributes stay as properties (see the
        // `log` module docs); PY drops them.
        assert_eq!(
            base(&v)["properties"]["microsoft.availability.name"],
            "test-name"
        );
    }
}

#[test]
fn py_log_to_envelope_custom_event_precedes_availability() {
    let mut attrs = availability_attrs();
    attrs.push(("microsoft.custom_event.name", s("test-event")));
    let v = convert(&availability_record(attrs));
    assert_eq!(v["data"]["baseType"], "EventData");
    assert_eq!(base(&v)["name"], "test-event");
}

#[test]
fn py_log_to_envelope_exception_precedes_availability() {
    let mut attrs = availability_attrs();
    attrs.push(("exception.type", s("ValueError")));
    let v = convert(&availability_record(attrs));
    assert_eq!(v["data"]["baseType"], "ExceptionData");
    assert_eq!(base(&v)["exceptions"][0]["typeName"], "ValueError");
}

#[test]
fn py_log_to_envelope_timestamp() {
    // `timestamp = None`, `observed_timestamp = 1646865018558419457`.
    let mut r = SdkLoggerProvider::builder()
        .build()
        .logger("test")
        .create_log_record();
    r.set_severity_number(Severity::Warn);
    r.set_body(s("Test message"));
    r.set_observed_timestamp(UNIX_EPOCH + Duration::from_nanos(TIMESTAMP_NS + 1));
    let v = convert(&r);
    assert_eq!(v["time"], TIME);
}

/// The record of the two synthetic-traffic tests, with `extra` as its second attribute.
fn synthetic(extra: (&'static str, AnyValue)) -> Value {
    let res = resource(&[
        ("service.name", "testServiceName"),
        ("service.namespace", "testServiceNamespace"),
        ("service.instance.id", "testServiceInstanceId"),
    ]);
    let r = record(
        Severity::Warn,
        "WARNING",
        Some(s("Test message")),
        vec![("test", s("attribute")), extra],
        true,
    );
    convert_in(&r, "test_name", &res)
}

#[test]
fn py_log_to_envelope_synthetic_source() {
    let v = synthetic(("user_agent.synthetic.type", s("bot")));
    assert_eq!(v["tags"]["ai.operation.syntheticSource"], "True");
    assert_eq!(
        v["tags"]["ai.cloud.role"],
        "testServiceNamespace.testServiceName"
    );
    assert_eq!(v["tags"]["ai.cloud.roleInstance"], "testServiceInstanceId");
}

#[test]
fn py_log_to_envelope_synthetic_load_always_on() {
    let v = synthetic(("http.user_agent", s("Azure-Load-Testing/1.0 AlwaysOn")));
    assert_eq!(v["tags"]["ai.operation.syntheticSource"], "True");
    assert_eq!(
        v["tags"]["ai.cloud.role"],
        "testServiceNamespace.testServiceName"
    );
    assert_eq!(v["tags"]["ai.cloud.roleInstance"], "testServiceInstanceId");
}

#[test]
fn py_get_severity_level() {
    use super::severity_level;
    use crate::wire::SeverityLevel;
    // Deviation (§4.4 R): the string enum; PY's integers 0..4 are the same levels in order.
    let levels = [
        SeverityLevel::Verbose,
        SeverityLevel::Information,
        SeverityLevel::Warning,
        SeverityLevel::Error,
        SeverityLevel::Critical,
    ];
    // PY iterates `SeverityNumber`, 0 (UNSPECIFIED) to 24; 0 is an unset severity here.
    assert_eq!(severity_level(None), levels[0]);
    let all = [
        Severity::Trace,
        Severity::Trace2,
        Severity::Trace3,
        Severity::Trace4,
        Severity::Debug,
        Severity::Debug2,
        Severity::Debug3,
        Severity::Debug4,
        Severity::Info,
        Severity::Info2,
        Severity::Info3,
        Severity::Info4,
        Severity::Warn,
        Severity::Warn2,
        Severity::Warn3,
        Severity::Warn4,
        Severity::Error,
        Severity::Error2,
        Severity::Error3,
        Severity::Error4,
        Severity::Fatal,
        Severity::Fatal2,
        Severity::Fatal3,
        Severity::Fatal4,
    ];
    for sev in all {
        let num = sev as i32;
        let want = match num {
            0..=8 => 0,
            9..=12 => 1,
            13..=16 => 2,
            17..=20 => 3,
            _ => 4,
        };
        assert_eq!(severity_level(Some(sev)), levels[want], "{num}");
    }
}
