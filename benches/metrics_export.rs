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

use std::io::Read;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_azure_monitor::testing::IngestionServer;
use opentelemetry_azure_monitor::MetricExporter;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::exporter::PushMetricExporter as _;
use opentelemetry_sdk::metrics::{
    InMemoryMetricExporterBuilder, PeriodicReader, SdkMeterProvider, Temporality,
};

mod support;

/// Instruments in the collection: a quarter each counters, up-down counters, histograms and
/// gauges, each with two attribute sets.
const INSTRUMENTS: usize = 300;

/// An HTTP client for the other exporter that answers 200 and keeps the bodies.
#[derive(Debug, Default, Clone)]
struct KeepBody(Arc<Mutex<Vec<Vec<u8>>>>);

#[async_trait]
impl HttpClient for KeepBody {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        if let Ok(mut bodies) = self.0.lock() {
            bodies.push(request.body().to_vec());
        }
        Ok(Response::builder().status(200).body(Bytes::from_static(
            br#"{"itemsReceived":0,"itemsAccepted":0,"errors":[]}"#,
        ))?)
    }
}

/// An HTTP client for the other exporter that posts to the local ingestion server. Its
/// connection-string parser turns the server's `http://` endpoint into `https://`, so the
/// client sends to the server's plain-HTTP endpoint, keeping the request's path.
#[derive(Debug, Clone)]
struct Post {
    client: reqwest::Client,
    endpoint: String,
}

#[async_trait]
impl HttpClient for Post {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let url = format!("{}{}", self.endpoint, parts.uri.path());
        let mut builder = self.client.request(parts.method, url);
        for (name, value) in &parts.headers {
            builder = builder.header(name, value);
        }
        let response = builder.body(body).send().await?;
        let status = response.status();
        let body = response.bytes().await?;
        Ok(Response::builder().status(status).body(body)?)
    }
}

fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = flate2::read::GzDecoder::new(body).read_to_end(&mut out);
    out
}

/// One delta collection of `INSTRUMENTS` instruments of a web service, through the SDK.
fn collection() -> ResourceMetrics {
    let exporter = InMemoryMetricExporterBuilder::new()
        .with_temporality(Temporality::Delta)
        .build();
    let provider = SdkMeterProvider::builder()
        .with_resource(support::resource())
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let meter = provider.meter("shop");
    for i in 0..INSTRUMENTS {
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
    opentelemetry_application_insights::Exporter::new_from_connection_string(
        server.connection_string(),
        client,
    )
    .unwrap_or_else(|e| panic!("building their exporter: {e}"))
}

fn report_sizes(server: &IngestionServer, metrics: &ResourceMetrics) {
    let n = points(metrics);
    let bodies = ours(server).request_bodies(metrics);
    let gz: usize = bodies.iter().map(Vec::len).sum();
    let json: usize = bodies.iter().map(|b| gunzip(b).len()).sum();
    let keep = KeepBody::default();
    let exporter = theirs(server, keep.clone());
    let _ = futures_executor::block_on(exporter.export(metrics));
    let theirs_bodies = keep.0.lock().map(|b| b.clone()).unwrap_or_default();
    let their_gz: usize = theirs_bodies.iter().map(Vec::len).sum();
    let their_json: usize = theirs_bodies.iter().map(|b| gunzip(b).len()).sum();
    let per = |bytes: usize| bytes as f64 / n.max(1) as f64;
    println!(
        "bytes per data point on a {INSTRUMENTS}-instrument collection ({n} points): \
         ours JSON {:.0} B, gzip {:.0} B; \
         opentelemetry-application-insights JSON {:.0} B, gzip {:.0} B \
         (JSON ratio {:.2}, wire ratio {:.2})",
        per(json),
        per(gz),
        per(their_json),
        per(their_gz),
        json as f64 / their_json.max(1) as f64,
        gz as f64 / their_gz.max(1) as f64,
    );
}

fn bench(c: &mut Criterion) {
    let server = IngestionServer::start().unwrap_or_else(|e| panic!("starting the server: {e}"));
    let metrics = collection();
    let n = points(&metrics) as u64;
    report_sizes(&server, &metrics);

    let mut group = c.benchmark_group("metrics_convert_encode");
    group.throughput(Throughput::Elements(n));
    let exporter = ours(&server);
    group.bench_function("ours", |b| b.iter(|| exporter.request_bodies(&metrics)));
    let keep = KeepBody::default();
    let their = theirs(&server, keep.clone());
    group.bench_function("opentelemetry-application-insights", |b| {
        b.iter(|| {
            if let Ok(mut bodies) = keep.0.lock() {
                bodies.clear();
            }
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
