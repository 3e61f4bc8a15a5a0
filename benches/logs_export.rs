//! Log export, side by side with `opentelemetry-application-insights` 0.46 on the same batch.
//!
//! ```sh
//! cargo bench --bench logs_export
//! ```
//!
//! - `logs_convert_encode/*`: the CPU work of one export of a 512-record batch up to the gzip
//!   bodies: ours through `LogExporter::request_bodies`, theirs through its exporter with an
//!   HTTP client that only keeps the body (so its conversion, JSON and gzip are measured).
//! - `logs_export_loopback/*`: a whole export, HTTP included, into the local ingestion server.
//!
//! Before measuring, it prints the JSON and gzip bytes per record each exporter produces for
//! the batch. Compare the two lines of one run: the machines are shared and noisy.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use opentelemetry::InstrumentationScope;
use opentelemetry_azure_monitor::testing::IngestionServer;
use opentelemetry_azure_monitor::LogExporter;
use opentelemetry_http::HttpClient;
use opentelemetry_sdk::logs::{LogBatch, LogExporter as _, SdkLogRecord};

mod support;

use support::http::{report_sizes, KeepBody, Post};

const BATCH: usize = 512;

fn ours(server: &IngestionServer) -> LogExporter {
    let mut exporter = LogExporter::builder()
        .with_connection_string(server.connection_string())
        .build()
        .unwrap_or_else(|e| panic!("building our exporter: {e}"));
    exporter.set_resource(&support::resource());
    exporter
}

fn theirs<C: HttpClient + 'static>(
    server: &IngestionServer,
    client: C,
) -> opentelemetry_application_insights::Exporter<C> {
    let mut exporter = support::http::theirs(server.connection_string(), client);
    exporter.set_resource(&support::resource());
    exporter
}

fn sizes(server: &IngestionServer, batch: &[(&SdkLogRecord, &InstrumentationScope)]) {
    let keep = KeepBody::default();
    let _ = futures_executor::block_on(theirs(server, keep.clone()).export(LogBatch::new(batch)));
    let what = format!("log record on a {}-record batch", batch.len());
    let ours = ours(server).request_bodies(LogBatch::new(batch));
    report_sizes(&what, batch.len(), &ours, &keep.bodies());
}

fn bench(c: &mut Criterion) {
    let server = IngestionServer::start().unwrap_or_else(|e| panic!("starting the server: {e}"));
    let records = support::logs::web_service_logs(BATCH, true);
    let batch: Vec<(&SdkLogRecord, &InstrumentationScope)> =
        records.iter().map(|(r, s)| (r, s)).collect();
    sizes(&server, &batch);

    let mut group = c.benchmark_group("logs_convert_encode");
    group.throughput(Throughput::Elements(BATCH as u64));
    let exporter = ours(&server);
    group.bench_function("ours", |b| {
        b.iter(|| exporter.request_bodies(LogBatch::new(&batch)))
    });
    let keep = KeepBody::default();
    let their = theirs(&server, keep.clone());
    group.bench_function("opentelemetry-application-insights", |b| {
        b.iter(|| {
            keep.clear();
            futures_executor::block_on(their.export(LogBatch::new(&batch)))
        })
    });
    group.finish();

    let rt = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("runtime: {e}"));
    let mut group = c.benchmark_group("logs_export_loopback");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(20);
    let exporter = ours(&server);
    let result = futures_executor::block_on(exporter.export(LogBatch::new(&batch)));
    assert!(
        result.is_ok(),
        "our export into the local server: {result:?}"
    );
    group.bench_function("ours", |b| {
        b.iter_batched(
            || server.clear(),
            |()| futures_executor::block_on(exporter.export(LogBatch::new(&batch))),
            BatchSize::SmallInput,
        )
    });
    let rejected = server.rejected();
    assert!(rejected.is_empty(), "{:#?}", rejected.first());
    let post = Post {
        client: reqwest::Client::new(),
        endpoint: server.endpoint(),
    };
    let their = theirs(&server, post);
    // Both exports must succeed, or the loopback numbers would time retries.
    let result = rt.block_on(their.export(LogBatch::new(&batch)));
    assert!(
        result.is_ok(),
        "their export into the local server: {result:?}"
    );
    group.bench_function("opentelemetry-application-insights", |b| {
        b.iter_batched(
            || server.clear(),
            |()| rt.block_on(their.export(LogBatch::new(&batch))),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
