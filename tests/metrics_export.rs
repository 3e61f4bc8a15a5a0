//! Metrics through a real `SdkMeterProvider` and `PeriodicReader` into the local ingestion
//! server. Synchronised with `force_flush`: the reader collects, exports (which returns once
//! delivered) and flushes the exporter.

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_azure_monitor::testing::IngestionServer;
use opentelemetry_azure_monitor::MetricExporter;
use opentelemetry_sdk::metrics::{
    Aggregation, Instrument, PeriodicReader, SdkMeterProvider, Stream,
};
use opentelemetry_sdk::Resource;
use serde_json::{json, Value};

/// The resource of every provider here: role `shop.checkout`.
fn resource() -> Resource {
    Resource::builder_empty()
        .with_attributes([
            KeyValue::new("service.name", "checkout"),
            KeyValue::new("service.namespace", "shop"),
            KeyValue::new("service.version", "1.4.2"),
        ])
        .build()
}

fn provider(exporter: MetricExporter) -> SdkMeterProvider {
    SdkMeterProvider::builder()
        .with_resource(resource())
        .with_reader(PeriodicReader::builder(exporter).build())
        .with_view(|i: &Instrument| {
            (i.name() == "checkout.duration.exp").then(|| {
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
        .build()
}

/// The metric points (`baseData.metrics[0]` with the properties beside) named `name`.
fn points(items: &[Value], name: &str) -> Vec<(Value, Value)> {
    items
        .iter()
        .filter(|v| v["data"]["baseData"]["metrics"][0]["name"] == name)
        .map(|v| {
            (
                v["data"]["baseData"]["metrics"][0].clone(),
                v["data"]["baseData"]
                    .get("properties")
                    .cloned()
                    .unwrap_or(json!({})),
            )
        })
        .collect()
}

fn assert_all_accepted(server: &IngestionServer) {
    let rejected = server.rejected();
    assert!(rejected.is_empty(), "{rejected:#?}");
}

#[test]
fn every_instrument_kind_over_two_intervals() {
    let server = IngestionServer::start().expect("server");
    let exporter = MetricExporter::builder()
        .with_connection_string(server.connection_string())
        .with_offline_storage(false)
        .build()
        .expect("exporter");
    let provider = provider(exporter);
    let meter = provider.meter("shop");
    let orders = meter.u64_counter("orders").build();
    let queue = meter.i64_up_down_counter("queue.depth").build();
    let duration = meter
        .f64_histogram("checkout.duration")
        .with_unit("s")
        .build();
    let duration_exp = meter.f64_histogram("checkout.duration.exp").build();
    let temperature = meter.f64_gauge("temperature").build();
    let _cpu = meter
        .f64_observable_gauge("cpu")
        .with_callback(|o| o.observe(0.25, &[KeyValue::new("core", 0)]))
        .build();

    orders.add(2, &[KeyValue::new("region", "eu")]);
    orders.add(3, &[KeyValue::new("region", "eu")]);
    orders.add(1, &[KeyValue::new("region", "us")]);
    queue.add(10, &[]);
    queue.add(-4, &[]);
    for v in [0.1, 0.2, 0.6] {
        duration.record(v, &[KeyValue::new("http.request.method", "POST")]);
        duration_exp.record(v, &[]);
    }
    temperature.record(21.5, &[]);
    provider.force_flush().expect("flush");
    assert_all_accepted(&server);
    let first = server.envelopes();

    let orders_points = points(&first, "orders");
    assert_eq!(orders_points.len(), 2, "{first:#?}");
    assert!(orders_points.contains(&(
        json!({"name": "orders", "value": 5.0, "count": 1}),
        json!({"region": "eu"})
    )));
    assert!(orders_points.contains(&(
        json!({"name": "orders", "value": 1.0, "count": 1}),
        json!({"region": "us"})
    )));
    assert_eq!(points(&first, "queue.depth")[0].0["value"], 6.0);
    let (h, props) = &points(&first, "checkout.duration")[0];
    assert_eq!(h["count"], 3);
    assert!(
        (h["value"].as_f64().unwrap_or_default() - 0.9).abs() < 1e-9,
        "{h}"
    );
    assert_eq!(h["min"], 0.1);
    assert_eq!(h["max"], 0.6);
    assert_eq!(props, &json!({"http.request.method": "POST"}));
    let (e, _) = &points(&first, "checkout.duration.exp")[0];
    assert_eq!(e["count"], 3);
    assert_eq!(e["min"], 0.1);
    assert_eq!(e["max"], 0.6);
    assert_eq!(points(&first, "temperature")[0].0["value"], 21.5);
    assert_eq!(
        points(&first, "cpu"),
        vec![(
            json!({"name": "cpu", "value": 0.25, "count": 1}),
            json!({"core": "0"})
        )]
    );
    for item in &first {
        assert_eq!(item["name"], "Microsoft.ApplicationInsights.Metric");
        assert_eq!(item["tags"]["ai.cloud.role"], "shop.checkout");
        assert_eq!(item["tags"]["ai.application.ver"], "1.4.2");
        assert!(item["data"]["baseData"]["metrics"][0].get("ns").is_none());
        assert!(item.get("sampleRate").is_none());
    }

    // Second interval: counters and histograms report only the interval (delta), the
    // up-down counter its current value.
    server.clear();
    orders.add(4, &[KeyValue::new("region", "eu")]);
    queue.add(1, &[]);
    duration.record(1.0, &[KeyValue::new("http.request.method", "POST")]);
    provider.force_flush().expect("flush");
    assert_all_accepted(&server);
    let second = server.envelopes();
    assert_eq!(
        points(&second, "orders"),
        vec![(
            json!({"name": "orders", "value": 4.0, "count": 1}),
            json!({"region": "eu"})
        )]
    );
    assert_eq!(points(&second, "queue.depth")[0].0["value"], 7.0);
    let (h, _) = &points(&second, "checkout.duration")[0];
    assert_eq!(h["count"], 1);
    assert_eq!(h["value"], 1.0);
    assert!(points(&second, "checkout.duration.exp").is_empty());

    provider.shutdown().expect("shutdown");
}

#[test]
fn namespace_standard_instruments_and_non_finite_sums() {
    let server = IngestionServer::start().expect("server");
    let exporter = MetricExporter::builder()
        .with_connection_string(server.connection_string())
        .with_offline_storage(false)
        .with_metric_namespace(true)
        .build()
        .expect("exporter");
    let provider = provider(exporter);
    let meter = provider.meter_with_scope(InstrumentationScope::builder("shop.http").build());
    meter
        .f64_histogram("http.server.request.duration")
        .build()
        .record(0.05, &[KeyValue::new("http.response.status_code", 200)]);
    meter
        .u64_histogram("http.server.request.size")
        .build()
        .record(512, &[]);
    meter
        .i64_up_down_counter("http.server.active_requests")
        .build()
        .add(1, &[]);
    let overflow = meter.f64_counter("overflow").build();
    overflow.add(f64::MAX, &[]);
    overflow.add(f64::MAX, &[]);
    meter.u64_counter("requests").build().add(1, &[]);
    provider.force_flush().expect("flush");
    assert_all_accepted(&server);
    let items = server.envelopes();

    let names: Vec<&str> = items
        .iter()
        .filter_map(|v| v["data"]["baseData"]["metrics"][0]["name"].as_str())
        .collect();
    assert_eq!(names.len(), 2, "{items:#?}");
    assert!(names.contains(&"http.server.request.duration"));
    assert!(names.contains(&"requests"));
    for item in &items {
        assert_eq!(item["data"]["baseData"]["metrics"][0]["ns"], "shop.http");
        assert!(!item.to_string().contains("_MS."), "{item}");
    }
    let (_, props) = &points(&items, "http.server.request.duration")[0];
    assert_eq!(props, &json!({"http.response.status_code": "200"}));
    provider.shutdown().expect("shutdown");
}
