//! Span export, side by side with `opentelemetry-application-insights` 0.46 on the same batch.
//!
//! ```sh
//! cargo bench --bench trace_export
//! ```
//!
//! - `convert_encode/*`: the CPU work of one export of a 512-span web-service batch up to the
//!   gzip bodies: ours through `SpanExporter::request_bodies`, theirs through its exporter with an
//!   HTTP client that only keeps the body (so its conversion, JSON and gzip are measured).
//! - `export_loopback/*`: a whole export, HTTP included, into the local ingestion server.
//!
//! Before measuring, it prints the JSON and gzip bytes per span each exporter produces for the
//! batch. Compare the two lines of one run: the machines are shared and noisy.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use opentelemetry_azure_monitor::testing::IngestionServer;
use opentelemetry_azure_monitor::SpanExporter;
use opentelemetry_http::HttpClient;
use opentelemetry_sdk::trace::{SpanData, SpanExporter as _};

mod support;

use support::http::{report_sizes, KeepBody, Post};

const BATCH: usize = 512;

fn ours(server: &IngestionServer) -> SpanExporter {
    let mut exporter = SpanExporter::builder()
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

fn sizes(server: &IngestionServer, batch: &[SpanData]) {
    let keep = KeepBody::default();
    let _ = futures_executor::block_on(theirs(server, keep.clone()).export(batch.to_vec()));
    let what = format!("span on a {}-span batch", batch.len());
    report_sizes(
        &what,
        batch.len(),
        &ours(server).request_bodies(batch),
        &keep.bodies(),
    );
}

fn bench(c: &mut Criterion) {
    let server = IngestionServer::start().unwrap_or_else(|e| panic!("starting the server: {e}"));
    let batch = support::web_service_batch(BATCH);
    sizes(&server, &batch);

    let mut group = c.benchmark_group("convert_encode");
    group.throughput(Throughput::Elements(BATCH as u64));
    let exporter = ours(&server);
    group.bench_function("ours", |b| b.iter(|| exporter.request_bodies(&batch)));
    let keep = KeepBody::default();
    let their = theirs(&server, keep.clone());
    group.bench_function("opentelemetry-application-insights", |b| {
        b.iter_batched(
            || {
                keep.clear();
                batch.clone()
            },
            |spans| futures_executor::block_on(their.export(spans)),
            BatchSize::SmallInput,
        )
    });
    group.finish();

    let rt = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("runtime: {e}"));
    let mut group = c.benchmark_group("export_loopback");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(20);
    let exporter = ours(&server);
    group.bench_function("ours", |b| {
        b.iter_batched(
            || {
                server.clear();
                batch.clone()
            },
            |spans| futures_executor::block_on(exporter.export(spans)),
            BatchSize::SmallInput,
        )
    });
    let client = reqwest::Client::new();
    let their = theirs(
        &server,
        Post {
            client,
            endpoint: server.endpoint(),
        },
    );
    group.bench_function("opentelemetry-application-insights", |b| {
        b.iter_batched(
            || {
                server.clear();
                batch.clone()
            },
            |spans| rt.block_on(their.export(spans)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
