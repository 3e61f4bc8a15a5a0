//! One delta collection of a web service's metrics, through the SDK, shared by the benches.

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::{
    InMemoryMetricExporterBuilder, PeriodicReader, SdkMeterProvider, Temporality,
};

/// One delta collection of `instruments` instruments (a quarter each counters, up-down
/// counters, histograms and gauges), each with two attribute sets: `2 * instruments` points.
pub(crate) fn collection(instruments: usize) -> ResourceMetrics {
    let exporter = InMemoryMetricExporterBuilder::new()
        .with_temporality(Temporality::Delta)
        .build();
    let provider = SdkMeterProvider::builder()
        .with_resource(super::resource())
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let meter = provider.meter("shop");
    for i in 0..instruments {
        for (region, n) in [("westeurope", 3u64), ("eastus", 5)] {
            let attrs = [
                KeyValue::new("region", region),
                KeyValue::new("http.route", "/api/orders/{id}"),
                KeyValue::new("http.response.status_code", 200),
            ];
            match i % 4 {
                0 => meter
                    .u64_counter(format!("shop.requests.{i}"))
                    .build()
                    .add(n, &attrs),
                1 => meter
                    .i64_up_down_counter(format!("shop.active.{i}"))
                    .build()
                    .add(n as i64, &attrs),
                2 => {
                    let h = meter
                        .f64_histogram(format!("shop.duration.{i}"))
                        .with_unit("ms")
                        .build();
                    for v in 0..n {
                        h.record(12.5 * v as f64 + 3.0, &attrs);
                    }
                }
                _ => meter
                    .f64_gauge(format!("shop.queue.{i}"))
                    .build()
                    .record(n as f64 * 1.5, &attrs),
            }
        }
    }
    if let Err(e) = provider.force_flush() {
        panic!("collecting: {e}");
    }
    let collection = exporter
        .get_finished_metrics()
        .ok()
        .and_then(|mut all| all.pop())
        .unwrap_or_else(|| panic!("no collection"));
    let _ = provider.shutdown();
    collection
}
