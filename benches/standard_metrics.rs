//! The cost per span of the `StandardMetricsProcessor` (STANDARD-METRICS.md §4), on the
//! web-service batch of the other benches (server spans, HTTP calls, database queries).
//!
//! ```sh
//! cargo bench --bench standard_metrics -- --measurement-time 5
//! ```
//!
//! - `on_end`: what the processor does per ended span: read its attributes, compute the
//!   item's fields that are its dimensions, count it under the lock.
//! - `clone_and_on_end`: plus the clone of the span that the SDK makes for each processor when
//!   there are several: the whole cost the processor adds to a pipeline.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use opentelemetry_azure_monitor::testing::IngestionServer;
use opentelemetry_azure_monitor::StandardMetricsProcessor;
use opentelemetry_sdk::trace::SpanProcessor as _;

mod support;

const BATCH: usize = 512;

fn bench(c: &mut Criterion) {
    let server = IngestionServer::start().unwrap_or_else(|e| panic!("starting the server: {e}"));
    let mut processor = StandardMetricsProcessor::builder()
        .with_connection_string(server.connection_string())
        .with_offline_storage(false)
        .with_export_interval(Duration::from_secs(3600))
        .build()
        .unwrap_or_else(|e| panic!("building the processor: {e}"));
    processor.set_resource(&support::resource());
    let batch = support::web_service_batch(BATCH);

    let mut group = c.benchmark_group("standard_metrics");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("on_end", |b| {
        b.iter_batched(
            || batch.clone(),
            |spans| {
                for span in spans {
                    processor.on_end(span);
                }
            },
            BatchSize::LargeInput,
        );
    });
    group.bench_function("clone_and_on_end", |b| {
        b.iter(|| {
            for span in &batch {
                processor.on_end(span.clone());
            }
        });
    });
    group.finish();
    let _ = processor.shutdown();
}

criterion_group!(benches, bench);
criterion_main!(benches);
