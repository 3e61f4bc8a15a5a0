use std::time::{Duration, UNIX_EPOCH};

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::metrics::{
    Aggregation, InMemoryMetricExporterBuilder, Instrument, PeriodicReader, SdkMeterProvider,
    Stream, Temporality,
};
use serde_json::{json, Value};

use super::*;
use crate::wire::SharedTags;

const IKEY: &str = "00000000-0000-4000-8000-000000000000";

fn envelope(value: PointValue, attrs: &[KeyValue], ns: Option<&str>) -> Option<Value> {
    let shared = SharedTags::default();
    let cx = Context {
        ikey: IKEY,
        tags: &shared,
    };
    point_envelope(
        &cx,
        "requests",
        ns,
        value,
        attrs.iter(),
        UNIX_EPOCH + Duration::from_secs(60),
    )
    .map(|e| serde_json::to_value(&e).unwrap_or_default())
}

#[test]
fn value_mapping_table() {
    let h = |value, count, min, max| PointValue {
        value,
        count,
        min,
        max,
    };
    let table: Vec<(PointValue, Option<Value>)> = vec![
        (
            PointValue::single(5.0),
            Some(json!({"name": "requests", "value": 5.0, "count": 1})),
        ),
        (
            PointValue::single(-2.5),
            Some(json!({"name": "requests", "value": -2.5, "count": 1})),
        ),
        (
            PointValue::single(0.0),
            Some(json!({"name": "requests", "value": 0.0, "count": 1})),
        ),
        (
            h(12.5, 4, Some(0.5), Some(9.0)),
            Some(json!({"name": "requests", "value": 12.5, "count": 4, "min": 0.5, "max": 9.0})),
        ),
        (
            h(0.0, 0, None, None),
            Some(json!({"name": "requests", "value": 0.0, "count": 0})),
        ),
        // Non-finite min/max are left out; a non-finite value drops the point.
        (
            h(1.0, 2, Some(f64::NEG_INFINITY), Some(f64::NAN)),
            Some(json!({"name": "requests", "value": 1.0, "count": 2})),
        ),
        (
            h(1.0, u64::MAX, None, None),
            Some(json!({"name": "requests", "value": 1.0, "count": i32::MAX})),
        ),
        (PointValue::single(f64::NAN), None),
        (PointValue::single(f64::INFINITY), None),
        (h(f64::NEG_INFINITY, 3, Some(1.0), Some(2.0)), None),
    ];
    for (value, want) in table {
        let got = envelope(value, &[], None).map(|v| v["data"]["baseData"]["metrics"][0].clone());
        assert_eq!(got, want, "{value:?}");
    }
}

#[test]
fn envelope_shape_properties_and_tags() {
    let attrs = [
        KeyValue::new("http.request.method", "GET"),
        KeyValue::new("ok", true),
        KeyValue::new(
            "codes",
            opentelemetry::Value::Array(vec![200i64, 404].into()),
        ),
        KeyValue::new("_MS.MetricId", "requests/duration"),
        KeyValue::new("_MS.ProcessedByMetricExtractors", "True"),
    ];
    let v = envelope(PointValue::single(1.0), &attrs, Some("shop")).unwrap_or_default();
    assert_eq!(v["name"], "Microsoft.ApplicationInsights.Metric");
    assert_eq!(v["time"], "1970-01-01T00:01:00.000000Z");
    assert_eq!(v["iKey"], IKEY);
    assert_eq!(v["data"]["baseType"], "MetricData");
    let d = &v["data"]["baseData"];
    assert_eq!(d["ver"], 2);
    assert_eq!(d["metrics"].as_array().map(Vec::len), Some(1));
    assert_eq!(d["metrics"][0]["ns"], "shop");
    assert_eq!(
        d["properties"],
        json!({"http.request.method": "GET", "ok": "True", "codes": "[200,404]"})
    );
    assert!(v.get("sampleRate").is_none());
    assert!(v["tags"].get("ai.operation.syntheticSource").is_none());

    for attrs in [
        vec![KeyValue::new("user_agent.synthetic.type", "bot")],
        vec![KeyValue::new("user_agent.original", "AlwaysOn probe")],
        vec![KeyValue::new("http.user_agent", "AlwaysOn probe")],
    ] {
        let v = envelope(PointValue::single(1.0), &attrs, None).unwrap_or_default();
        assert_eq!(
            v["tags"]["ai.operation.syntheticSource"], "True",
            "{attrs:?}"
        );
        assert!(v["data"]["baseData"]["metrics"][0].get("ns").is_none());
    }
    let attrs = [
        KeyValue::new("user_agent.original", "Mozilla"),
        KeyValue::new("http.user_agent", "AlwaysOn"),
    ];
    let v = envelope(PointValue::single(1.0), &attrs, None).unwrap_or_default();
    assert!(v["tags"].get("ai.operation.syntheticSource").is_none());

    // Long names are cut to the service's limits.
    let shared = SharedTags::default();
    let cx = Context {
        ikey: IKEY,
        tags: &shared,
    };
    let long = "n".repeat(2000);
    let e = point_envelope(
        &cx,
        &long,
        Some(&long),
        PointValue::single(1.0),
        [].iter(),
        UNIX_EPOCH,
    );
    let v = serde_json::to_value(&e).unwrap_or_default();
    assert_eq!(
        v["data"]["baseData"]["metrics"][0]["name"]
            .as_str()
            .map(str::len),
        Some(1024)
    );
    assert_eq!(
        v["data"]["baseData"]["metrics"][0]["ns"]
            .as_str()
            .map(str::len),
        Some(256)
    );
}

/// One collection of real instruments, through the SDK with Delta temporality as the
/// exporter asks for.
fn collect(record: impl FnOnce(&SdkMeterProvider)) -> ResourceMetrics {
    let exporter = InMemoryMetricExporterBuilder::new()
        .with_temporality(Temporality::Delta)
        .build();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .with_view(|i: &Instrument| {
            (i.name() == "latency.exp").then(|| {
                Stream::builder()
                    .with_aggregation(Aggregation::Base2ExponentialHistogram {
                        max_size: 160,
                        max_scale: 20,
                        record_min_max: true,
                    })
                    .build()
                    .ok()
            })?
        })
        .build();
    record(&provider);
    provider.force_flush().unwrap();
    let mut all = exporter.get_finished_metrics().unwrap();
    provider.shutdown().unwrap();
    assert_eq!(all.len(), 1);
    all.remove(0)
}

fn convert(rm: &ResourceMetrics, namespace: bool) -> (Vec<Value>, Skipped) {
    let shared = SharedTags::default();
    let cx = Context {
        ikey: IKEY,
        tags: &shared,
    };
    let mut out = Vec::new();
    let options = MetricOptions { namespace };
    let skipped = metrics_to_envelopes(rm, &cx, options, &mut out);
    let values = out
        .iter()
        .map(|e| serde_json::to_value(e).unwrap_or_default())
        .collect();
    (values, skipped)
}

fn point<'v>(items: &'v [Value], name: &str) -> Vec<&'v Value> {
    items
        .iter()
        .filter(|v| v["data"]["baseData"]["metrics"][0]["name"] == name)
        .map(|v| &v["data"]["baseData"]["metrics"][0])
        .collect()
}

#[test]
fn every_aggregation_through_the_sdk() {
    let rm = collect(|p| {
        let meter = p.meter_with_scope(InstrumentationScope::builder("shop.meter").build());
        let c = meter.u64_counter("orders").build();
        c.add(2, &[KeyValue::new("region", "eu")]);
        c.add(3, &[KeyValue::new("region", "eu")]);
        c.add(1, &[KeyValue::new("region", "us")]);
        meter.f64_counter("revenue").build().add(12.5, &[]);
        let ud = meter.i64_up_down_counter("queue.depth").build();
        ud.add(5, &[]);
        ud.add(-7, &[]);
        let h = meter.f64_histogram("latency").build();
        for v in [0.5, 1.5, 4.0] {
            h.record(v, &[]);
        }
        let e = meter.u64_histogram("latency.exp").build();
        for v in [1, 10, 100] {
            e.record(v, &[]);
        }
        meter.i64_gauge("temperature").build().record(-4, &[]);
        // The SDK refuses non-finite measurements, but a sum can still overflow.
        let bad = meter.f64_counter("bad").build();
        bad.add(f64::MAX, &[]);
        bad.add(f64::MAX, &[]);
        meter
            .u64_histogram("http.server.request.size")
            .build()
            .record(10, &[]);
        meter
            .f64_histogram("http.server.request.duration")
            .build()
            .record(0.2, &[KeyValue::new("http.response.status_code", 200)]);
    });
    let (items, skipped) = convert(&rm, false);
    assert_eq!(
        skipped,
        Skipped {
            non_finite: 1,
            unsupported: 1
        }
    );
    assert_eq!(items.len(), 8, "{items:#?}");

    let orders = point(&items, "orders");
    assert_eq!(orders.len(), 2);
    let eu = items
        .iter()
        .find(|v| v["data"]["baseData"]["properties"]["region"] == "eu")
        .map(|v| &v["data"]["baseData"]["metrics"][0]);
    assert_eq!(
        eu,
        Some(&json!({"name": "orders", "value": 5.0, "count": 1}))
    );
    assert_eq!(point(&items, "revenue")[0]["value"], 12.5);
    assert_eq!(point(&items, "queue.depth")[0]["value"], -2.0);
    assert_eq!(
        point(&items, "latency")[0],
        &json!({"name": "latency", "value": 6.0, "count": 3, "min": 0.5, "max": 4.0})
    );
    assert_eq!(
        point(&items, "latency.exp")[0],
        &json!({"name": "latency.exp", "value": 111.0, "count": 3, "min": 1.0, "max": 100.0})
    );
    assert_eq!(point(&items, "temperature")[0]["value"], -4.0);
    assert!(point(&items, "bad").is_empty());
    assert!(point(&items, "http.server.request.size").is_empty());
    // An HTTP duration instrument: an ordinary metric with its attributes, never a standard one.
    let duration = items
        .iter()
        .find(|v| v["data"]["baseData"]["metrics"][0]["name"] == "http.server.request.duration")
        .map(|v| v["data"]["baseData"]["properties"].clone());
    assert_eq!(duration, Some(json!({"http.response.status_code": "200"})));
    for item in &items {
        assert!(item["data"]["baseData"]["metrics"][0].get("ns").is_none());
        let text = item.to_string();
        assert!(!text.contains("_MS."), "{text}");
        assert_ne!(item["time"], "1970-01-01T00:00:00.000000Z");
    }

    // With the namespace: the meter's name.
    let (items, _) = convert(&rm, true);
    for item in &items {
        assert_eq!(item["data"]["baseData"]["metrics"][0]["ns"], "shop.meter");
    }
}

#[test]
fn an_unnamed_meter_gives_no_namespace() {
    let rm = collect(|p| p.meter("").u64_counter("c").build().add(1, &[]));
    let (items, _) = convert(&rm, true);
    assert_eq!(items.len(), 1);
    assert!(items[0]["data"]["baseData"]["metrics"][0]
        .get("ns")
        .is_none());
}
