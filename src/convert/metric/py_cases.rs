//! The Python exporter's metric mapping tests (PY 1.0.0b58, `tests/metrics/test_metrics.py`),
//! one Rust test per Python test, same inputs, same assertions. Where our mapping
//! deliberately differs, the test asserts our behaviour and says why. Not ported: the AKS,
//! statsbeat, "metrics to Log Analytics", constructor and export tests (no such features).
//!
//! PY calls `_point_to_envelope` with a data point it builds itself. The SDK's data points
//! cannot be built outside the SDK, so a point is either given to [`point_envelope`] directly
//! (its name, value, attributes and time exactly as in PY), or recorded through a real
//! `SdkMeterProvider` and converted by [`metrics_to_envelopes`] when the case is about what
//! happens to a whole collection (namespace, dropping).
//!
//! | PY test | result |
//! |---|---|
//! | `test_point_to_envelope_partA` | agrees (`ai.internal.sdkVersion`: our process's, as for logs) |
//! | `test_point_to_envelope_partA_default` | agrees |
//! | `test_point_to_envelope_number` | agrees |
//! | `test_point_to_envelope_histogram` | agrees |
//! | `test_point_to_envelope_metric_namespace` | agrees |
//! | `test_point_to_envelope_std_metric_client_duration` | differs: an ordinary metric; the standard metrics come from spans (STANDARD-METRICS.md §4 R) |
//! | `test_point_to_envelope_std_metric_server_duration` | differs (as above) |
//! | `test_point_to_envelope_std_metric_unsupported` | agrees |
//!
//! 8 cases: 6 agree, the two standard-metric cases differ by design.

use std::time::{Duration, UNIX_EPOCH};

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData as OtelMetricData};
use opentelemetry_sdk::metrics::{
    InMemoryMetricExporterBuilder, PeriodicReader, SdkMeterProvider, Temporality,
};
use opentelemetry_sdk::Resource;
use serde_json::{json, Value};

use super::{
    metrics_to_envelopes, point_envelope, MetricOptions, PointValue, ResourceMetrics, Skipped,
};
use crate::convert::tags::shared_tags_with;
use crate::convert::Context;
use crate::wire::{SharedTags, Timestamp};

/// `APPINSIGHTS_INSTRUMENTATIONKEY` of the PY test class.
const IKEY: &str = "1234abcd-5678-4efa-8abc-1234567890ab";
/// `time_unix_nano=1646865018558419457` of the PY points.
const TIME_NS: u64 = 1_646_865_018_558_419_457;
/// `ns_to_datetime(1646865018558419457)`, at the microseconds PY keeps.
const TIME: &str = "2022-03-09T22:30:18.558419Z";
/// `platform.node()`: the host name, passed in here.
const HOST: &str = "test-host";

/// `Resource.create(attributes={"asd": "test_resource"})`: with the SDK's defaults.
fn test_resource() -> Resource {
    Resource::builder()
        .with_attribute(KeyValue::new("asd", "test_resource"))
        .build()
}

/// The resource of the Part A and standard-metric tests.
fn service_resource() -> Resource {
    Resource::builder_empty()
        .with_attributes([
            KeyValue::new("service.name", "testServiceName"),
            KeyValue::new("service.namespace", "testServiceNamespace"),
            KeyValue::new("service.instance.id", "testServiceInstanceId"),
        ])
        .build()
}

fn tags_of(resource: &Resource) -> SharedTags {
    shared_tags_with(resource, &|_| None, &|| Some(HOST.to_owned()))
}

/// `exporter._point_to_envelope(point, name, resource)` of a point PY builds itself.
fn point(resource: &Resource, name: &str, value: PointValue, attrs: &[KeyValue]) -> Value {
    let shared = tags_of(resource);
    let cx = Context {
        ikey: IKEY,
        tags: &shared,
    };
    let time = UNIX_EPOCH + Duration::from_nanos(TIME_NS);
    point_envelope(&cx, name, None, value, attrs.iter(), time)
        .map(|e| serde_json::to_value(&e).unwrap_or_default())
        .unwrap_or_default()
}

/// PY's `_number_data_point` attributes.
fn test_attrs() -> Vec<KeyValue> {
    vec![KeyValue::new("test", "attribute")]
}

/// One collection of a gauge (the SDK's number point with the value as recorded) of `scope`,
/// with the delta temporality the exporter asks for.
fn collect_gauge(
    scope: &'static str,
    name: &'static str,
    value: f64,
    attrs: &[KeyValue],
) -> ResourceMetrics {
    let exporter = InMemoryMetricExporterBuilder::new()
        .with_temporality(Temporality::Delta)
        .build();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    provider
        .meter_with_scope(InstrumentationScope::builder(scope).build())
        .f64_gauge(name)
        .build()
        .record(value, attrs);
    provider.force_flush().unwrap();
    let mut all = exporter.get_finished_metrics().unwrap();
    provider.shutdown().unwrap();
    assert_eq!(all.len(), 1);
    all.remove(0)
}

/// The time of the first point of a collection, as the envelope writes it.
fn gauge_time(rm: &ResourceMetrics) -> Option<String> {
    let metric = rm.scope_metrics().next()?.metrics().next()?;
    match metric.data() {
        AggregatedMetrics::F64(OtelMetricData::Gauge(g)) => Some(Timestamp(g.time()).to_string()),
        _ => None,
    }
}

/// A whole collection through [`metrics_to_envelopes`] with `options`.
fn convert(
    rm: &ResourceMetrics,
    resource: &Resource,
    options: MetricOptions,
) -> (Vec<Value>, Skipped) {
    let shared = tags_of(resource);
    let cx = Context {
        ikey: IKEY,
        tags: &shared,
    };
    let mut out = Vec::new();
    let skipped = metrics_to_envelopes(rm, &cx, options, &mut out);
    let values = out
        .iter()
        .map(|e| serde_json::to_value(e).unwrap_or_default())
        .collect();
    (values, skipped)
}

fn base(v: &Value) -> &Value {
    &v["data"]["baseData"]
}

#[test]
fn py_point_to_envelope_part_a() {
    let attrs = [
        KeyValue::new("test", "attribute"),
        KeyValue::new("user_agent.synthetic.type", "bot"),
    ];
    let v = point(
        &service_resource(),
        "test name",
        PointValue::single(10.0),
        &attrs,
    );
    assert_eq!(v["iKey"], IKEY);
    let tags = &v["tags"];
    // PY's process tags (`azure_monitor_context`); the locale comes from the environment,
    // which these tests leave empty. The sdkVersion is this process's (MAPPING.md §2.1 R).
    assert_eq!(tags["ai.device.id"], HOST);
    assert_eq!(tags["ai.device.type"], "Other");
    assert_eq!(tags["ai.internal.nodeName"], "testServiceInstanceId");
    let sdk = tags["ai.internal.sdkVersion"].as_str().unwrap_or_default();
    assert!(
        sdk.contains("m_rust") && sdk.ends_with(concat!(":ext", env!("CARGO_PKG_VERSION"))),
        "{sdk}"
    );
    assert_eq!(tags["ai.operation.syntheticSource"], "True");
    assert_eq!(
        tags["ai.cloud.role"],
        "testServiceNamespace.testServiceName"
    );
    assert_eq!(tags["ai.cloud.roleInstance"], "testServiceInstanceId");
}

#[test]
fn py_point_to_envelope_part_a_default() {
    let resource = Resource::builder_empty()
        .with_attribute(KeyValue::new("service.name", "testServiceName"))
        .build();
    let v = point(
        &resource,
        "test name",
        PointValue::single(10.0),
        &test_attrs(),
    );
    assert_eq!(v["tags"]["ai.cloud.role"], "testServiceName");
    assert_eq!(v["tags"]["ai.cloud.roleInstance"], HOST);
    assert_eq!(
        v["tags"]["ai.internal.nodeName"],
        v["tags"]["ai.cloud.roleInstance"]
    );
}

#[test]
fn py_point_to_envelope_number() {
    let v = point(
        &test_resource(),
        "test name",
        PointValue::single(10.0),
        &test_attrs(),
    );
    assert_eq!(v["iKey"], IKEY);
    assert_eq!(v["name"], "Microsoft.ApplicationInsights.Metric");
    assert_eq!(v["time"], TIME);
    assert_eq!(v["data"]["baseType"], "MetricData");
    assert_eq!(base(&v)["properties"], json!({"test": "attribute"}));
    assert_eq!(
        base(&v)["metrics"],
        json!([{"name": "test name", "value": 10.0, "count": 1}])
    );

    // The namespace is not opted in: no `ns`, though the meter has a name. (`test name` is
    // not a valid instrument name for the SDK, hence `test_name` here.)
    let rm = collect_gauge("test_scope", "test_name", 10.0, &test_attrs());
    let (items, _) = convert(&rm, &test_resource(), MetricOptions::default());
    assert_eq!(items.len(), 1);
    assert_eq!(
        base(&items[0])["metrics"],
        json!([{"name": "test_name", "value": 10.0, "count": 1}])
    );
    assert_eq!(items[0]["time"].as_str(), gauge_time(&rm).as_deref());
}

#[test]
fn py_point_to_envelope_histogram() {
    // PY `_histogram_data_point`: count 7, sum 31, min 1, max 18 (bucket counts not sent).
    let value = PointValue {
        value: 31.0,
        count: 7,
        min: Some(1.0),
        max: Some(18.0),
    };
    let v = point(&test_resource(), "test name", value, &test_attrs());
    assert_eq!(v["iKey"], IKEY);
    assert_eq!(v["name"], "Microsoft.ApplicationInsights.Metric");
    assert_eq!(v["time"], TIME);
    assert_eq!(v["data"]["baseType"], "MetricData");
    assert_eq!(base(&v)["properties"], json!({"test": "attribute"}));
    let metrics = base(&v)["metrics"].as_array().cloned().unwrap_or_default();
    assert_eq!(metrics.len(), 1);
    assert_eq!(metrics[0]["name"], "test name");
    assert_eq!(metrics[0]["value"], 31.0);
    assert_eq!(metrics[0]["count"], 7);
}

#[test]
fn py_point_to_envelope_metric_namespace() {
    // PY: `APPLICATIONINSIGHTS_METRIC_NAMESPACE_OPT_IN=True` (read by the builder; here the
    // flag it sets).
    let rm = collect_gauge("test_scope", "test_name", 10.0, &test_attrs());
    let (items, _) = convert(&rm, &test_resource(), MetricOptions { namespace: true });
    assert_eq!(items.len(), 1);
    let v = &items[0];
    assert_eq!(v["iKey"], IKEY);
    assert_eq!(v["name"], "Microsoft.ApplicationInsights.Metric");
    assert_eq!(v["time"].as_str(), gauge_time(&rm).as_deref());
    assert_eq!(v["data"]["baseType"], "MetricData");
    assert_eq!(base(v)["properties"], json!({"test": "attribute"}));
    assert_eq!(
        base(v)["metrics"],
        json!([{"ns": "test_scope", "name": "test_name", "value": 10.0, "count": 1}])
    );
}

/// One standard-metric instrument value through the SDK: the envelope, whose time, name and
/// value are checked.
fn std_metric(name: &'static str, attrs: &[KeyValue]) -> Value {
    let rm = collect_gauge("test_scope", name, 15.0, attrs);
    let (mut items, skipped) = convert(&rm, &service_resource(), MetricOptions::default());
    assert_eq!(skipped, Skipped::default());
    assert_eq!(items.len(), 1, "{name}");
    let v = items.remove(0);
    assert_eq!(v["iKey"], IKEY);
    assert_eq!(v["name"], "Microsoft.ApplicationInsights.Metric");
    assert_eq!(v["time"].as_str(), gauge_time(&rm).as_deref());
    assert_eq!(v["data"]["baseType"], "MetricData");
    assert_eq!(
        base(&v)["metrics"],
        json!([{"name": name, "value": 15.0, "count": 1}])
    );
    v
}

/// The attributes of the standard-metric tests: the status code (none for PY's `None`).
fn std_attrs(status_key: &'static str, status: Option<opentelemetry::Value>) -> Vec<KeyValue> {
    let mut attrs: Vec<KeyValue> = status
        .map(|s| KeyValue::new(status_key, s))
        .into_iter()
        .collect();
    attrs.push(KeyValue::new("custom_attr", "custom_key"));
    attrs
}

/// PY's status codes 200, 500, `None` (here: no attribute) and the string "None", with the
/// success and result code PY expects.
fn std_status_cases() -> [(Option<opentelemetry::Value>, &'static str, &'static str); 4] {
    [
        (Some(200i64.into()), "True", "200"),
        (Some(500i64.into()), "False", "500"),
        (None, "False", "0"),
        (Some("None".into()), "False", "0"),
    ]
}

/// The point's attributes as PY's ordinary metrics send them, for the deviation below.
fn ordinary_properties(attrs: &[KeyValue]) -> Value {
    let map: serde_json::Map<String, Value> = attrs
        .iter()
        .map(|kv| (kv.key.to_string(), json!(kv.value.to_string())))
        .collect();
    Value::Object(map)
}

// Deviation (STANDARD-METRICS.md §4 R): the standard metrics are counted from spans by the
// `StandardMetricsProcessor`, the .NET way, so the HTTP duration instruments are ordinary
// metrics that keep their attributes; were they sent as standard metrics as well, the
// requests would be counted twice.
#[test]
fn py_point_to_envelope_std_metric_client_duration() {
    for (status, _, _) in std_status_cases() {
        let mut attrs = std_attrs("http.status_code", status);
        attrs.push(KeyValue::new("peer.service", "test_service"));
        let v = std_metric("http.client.duration", &attrs);
        assert_eq!(base(&v)["properties"], ordinary_properties(&attrs));
        assert!(base(&v)["properties"].get("_MS.MetricId").is_none());
    }
    let attrs = std_attrs("http.response.status_code", Some(200i64.into()));
    let v = std_metric("http.client.request.duration", &attrs);
    assert_eq!(base(&v)["properties"], ordinary_properties(&attrs));
}

#[test]
fn py_point_to_envelope_std_metric_server_duration() {
    for (status, _, _) in std_status_cases() {
        let attrs = std_attrs("http.status_code", status);
        let v = std_metric("http.server.duration", &attrs);
        assert_eq!(base(&v)["properties"], ordinary_properties(&attrs));
    }
    // Synthetic traffic: the item's synthetic source (§2.5), as in PY.
    let mut attrs = std_attrs("http.status_code", Some("None".into()));
    attrs.push(KeyValue::new("user_agent.synthetic.type", "bot"));
    let v = std_metric("http.server.duration", &attrs);
    assert_eq!(v["tags"]["ai.operation.syntheticSource"], "True");
    let attrs = std_attrs("http.response.status_code", Some(200i64.into()));
    let v = std_metric("http.server.request.duration", &attrs);
    assert_eq!(base(&v)["properties"], ordinary_properties(&attrs));
}

#[test]
fn py_point_to_envelope_std_metric_unsupported() {
    let attrs = [
        KeyValue::new("http.status_code", 200),
        KeyValue::new("peer.service", "test_service"),
        KeyValue::new("custom_attr", "custom_key"),
    ];
    let rm = collect_gauge("test_scope", "http.server.request.size", 15.0, &attrs);
    {
        let (items, skipped) = convert(&rm, &service_resource(), MetricOptions::default());
        assert!(items.is_empty(), "{items:?}");
        assert_eq!(
            skipped,
            Skipped {
                non_finite: 0,
                unsupported: 1
            }
        );
    }
}
