//! Metric export, side by side with `opentelemetry-application-insights` 0.46 on the same
//! collection.
//!
//! ```sh
//! cargo bench --bench metrics_export
//! ```
//!
//! - `metrics_convert_encode/*`: the CPU work of one export of a 300-instrument collection
//!   (600 data points) up to the gzip bodies: ours through `MetricExporter::request_bodies`,
//!   theirs through its exporter with an HTTP client that only keeps the body (so its
//!   conversion, JSON and gzip are measured).
//! - `metrics_export_loopback/*`: a whole export, HTTP included, into the local ingestion server.
//!
//! Before measuring, it prints the JSON and gzip bytes per data point each exporter produces for
//! the collection. Compare the two lines of one run: the machines are shared and noisy.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use opentelemetry_azure_monitor::testing::IngestionServer;
use opentelemetry_azure_monitor::MetricExporter;
use opentelemetry_http::HttpClient;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::exporter::PushMetricExporter as _;

mod support;

use support::http::{report_sizes, KeepBody, Post};

/// Instruments in the collection: a quarter each counters, up-down counters, histograms and
/// gauges, each with two attribute sets.
const INSTRUMENTS: usize = 300;

/// Data points in a collection.
fn points(metrics: &ResourceMetrics) -> usize {
    fn count<T>(data: &MetricData<T>) -> usize {
        match data {
            MetricData::Gauge(g) => g.data_points().count(),
            MetricData::Sum(s) => s.data_points().count(),
            MetricData::Histogram(h) => h.data_points().count(),
            MetricData::ExponentialHistogram(h) => h.data_points().count(),
        }
    }
    metrics
        .scope_metrics()
        .flat_map(|s| s.metrics())
        .map(|m| match m.data() {
            AggregatedMetrics::F64(d) => count(d),
            AggregatedMetrics::U64(d) => count(d),
            AggregatedMetrics::I64(d) => count(d),
        })
        .sum()
}

fn ours(server: &IngestionServer) -> MetricExporter {
    MetricExporter::builder()
        .with_connection_string(server.connection_string())
        .build()
        .unwrap_or_else(|e| panic!("building our exporter: {e}"))
}

fn theirs<C: HttpClient + 'static>(
    server: &IngestionServer,
    client: C,
) -> opentelemetry_application_insights::Exporter<C> {
    support::http::theirs(server.connection_string(), client)
}

fn sizes(server: &IngestionServer, metrics: &ResourceMetrics) {
    let n = points(metrics);
    let keep = KeepBody::default();
    let _ = futures_executor::block_on(theirs(server, keep.clone()).export(metrics));
    let what = format!("data point on a {INSTRUMENTS}-instrument collection ({n} points)");
    report_sizes(
        &what,
        n,
        &ours(server).request_bodies(metrics),
        &keep.bodies(),
    );
}

fn bench(c: &mut Criterion) {
    let server = IngestionServer::start().unwrap_or_else(|e| panic!("starting the server: {e}"));
    let metrics = support::metrics::collection(INSTRUMENTS);
    let n = points(&metrics) as u64;
    sizes(&server, &metrics);

    let mut group = c.benchmark_group("metrics_convert_encode");
    group.throughput(Throughput::Elements(n));
    let exporter = ours(&server);
    group.bench_function("ours", |b| b.iter(|| exporter.request_bodies(&metrics)));
    let keep = KeepBody::default();
    let their = theirs(&server, keep.clone());
    group.bench_function("opentelemetry-application-insights", |b| {
        b.iter(|| {
            keep.clear();
            futures_executor::block_on(their.export(&metrics))
        })
    });
    group.finish();

    let rt = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("runtime: {e}"));
    let mut group = c.benchmark_group("metrics_export_loopback");
    group.throughput(Throughput::Elements(n));
    group.sample_size(20);
    let exporter = ours(&server);
    let result = futures_executor::block_on(exporter.export(&metrics));
    assert!(
        result.is_ok(),
        "our export into the local server: {result:?}"
    );
    group.bench_function("ours", |b| {
        b.iter_batched(
            || server.clear(),
            |()| futures_executor::block_on(exporter.export(&metrics)),
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
    let result = rt.block_on(their.export(&metrics));
    assert!(
        result.is_ok(),
        "their export into the local server: {result:?}"
    );
    group.bench_function("opentelemetry-application-insights", |b| {
        b.iter_batched(
            || server.clear(),
            |()| rt.block_on(their.export(&metrics)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
