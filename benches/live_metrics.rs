//! The cost of Live Metrics per span, on the application's thread: the span processor's
//! `on_end` while no portal session watches (one atomic load) and while one does (the Track
//! conversion, the atomic counters, and the default configuration's document filters).
//!
//! ```sh
//! cargo bench --bench live_metrics
//! ```
//!
//! `drop_only` is the baseline: what a processor that only drops the span costs (the SDK hands
//! each processor its own `SpanData`). The spans are the `web_service_batch` of the other benches (HTTP server and client spans,
//! about 6% failing). The client runs against the local Live Metrics fake.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use opentelemetry_azure_monitor::testing::{IngestionServer, LiveServer};
use opentelemetry_azure_monitor::{LiveMetrics, LiveMetricsIntervals};
use opentelemetry_sdk::trace::{SpanData, SpanProcessor as _};
use serde_json::json;

mod support;

const BATCH: usize = 512;

fn default_configuration() -> serde_json::Value {
    let failed =
        json!({"Filters": [{"FieldName": "Success", "Predicate": "Equal", "Comparand": "False"}]});
    let all = json!({"Filters": []});
    json!({
        "Metrics": [],
        "DocumentStreams": [{"Id": "all-types-default", "DocumentFilterGroups": [
            {"TelemetryType": "Request", "Filters": failed},
            {"TelemetryType": "Dependency", "Filters": failed},
            {"TelemetryType": "Exception", "Filters": all},
            {"TelemetryType": "Trace", "Filters": all}
        ]}]
    })
}

fn bench(c: &mut Criterion) {
    let ingestion = IngestionServer::start().unwrap_or_else(|e| panic!("ingestion: {e}"));
    let fake = LiveServer::start().unwrap_or_else(|e| panic!("live: {e}"));
    fake.set_configuration("1::bench::1::", default_configuration());
    let live = LiveMetrics::builder()
        .with_connection_string(fake.connection_string(&ingestion))
        .with_intervals(LiveMetricsIntervals {
            ping: Duration::from_millis(20),
            ..LiveMetricsIntervals::default()
        })
        .build()
        .unwrap_or_else(|e| panic!("live metrics: {e}"));
    let mut processor = live.span_processor();
    processor.set_resource(&support::resource());
    let batch: Vec<SpanData> = support::web_service_batch(BATCH);

    let mut group = c.benchmark_group("live_metrics_on_end");
    group.throughput(Throughput::Elements(BATCH as u64));
    // The baseline: what ending a span costs a processor that only drops it.
    group.bench_function("drop_only", |b| {
        b.iter_batched(|| batch.clone(), drop, BatchSize::LargeInput)
    });
    group.bench_function("not_subscribed", |b| {
        b.iter_batched(
            || batch.clone(),
            |spans| spans.into_iter().for_each(|s| processor.on_end(s)),
            BatchSize::LargeInput,
        )
    });

    fake.set_subscribed(true);
    let subscribed = fake.wait_until(Duration::from_secs(30), |r| {
        r.iter().any(|r| r.body.is_array())
    });
    assert!(
        subscribed && live.is_subscribed(),
        "the client did not subscribe"
    );
    group.bench_function("subscribed", |b| {
        b.iter_batched(
            || batch.clone(),
            |spans| spans.into_iter().for_each(|s| processor.on_end(s)),
            BatchSize::LargeInput,
        )
    });
    group.finish();
    live.shutdown().unwrap_or_else(|e| panic!("shutdown: {e}"));
    assert!(fake.problems().is_empty(), "{:?}", fake.problems());
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
