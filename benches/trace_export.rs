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

use std::io::Read;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use opentelemetry_azure_monitor::testing::IngestionServer;
use opentelemetry_azure_monitor::SpanExporter;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_sdk::trace::{SpanData, SpanExporter as _};

mod support;

const BATCH: usize = 512;

/// An HTTP client for the other exporter that answers 200 and keeps the last body.
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

/// An HTTP client for the other exporter that posts to the local ingestion server.
#[derive(Debug, Clone)]
struct Post(reqwest::Client);

#[async_trait]
impl HttpClient for Post {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        // That exporter always speaks https; the local server is plain http on loopback.
        let url = parts.uri.to_string().replacen("https://", "http://", 1);
        let mut builder = self.0.request(parts.method, url);
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
    let mut exporter = opentelemetry_application_insights::Exporter::new_from_connection_string(
        server.connection_string(),
        client,
    )
    .unwrap_or_else(|e| panic!("building their exporter: {e}"));
    exporter.set_resource(&support::resource());
    exporter
}

fn report_sizes(server: &IngestionServer, batch: &[SpanData]) {
    let bodies = ours(server).request_bodies(batch);
    let gz: usize = bodies.iter().map(Vec::len).sum();
    let json: usize = bodies.iter().map(|b| gunzip(b).len()).sum();
    let keep = KeepBody::default();
    let exporter = theirs(server, keep.clone());
    let _ = futures_executor::block_on(exporter.export(batch.to_vec()));
    let theirs_bodies = keep.0.lock().map(|b| b.clone()).unwrap_or_default();
    let their_gz: usize = theirs_bodies.iter().map(Vec::len).sum();
    let their_json: usize = theirs_bodies.iter().map(|b| gunzip(b).len()).sum();
    let per = |n: usize| n as f64 / batch.len() as f64;
    println!(
        "bytes per span on a {}-span batch: ours JSON {:.0} B, gzip {:.0} B; \
         opentelemetry-application-insights JSON {:.0} B, gzip {:.0} B \
         (JSON ratio {:.2}, wire ratio {:.2})",
        batch.len(),
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
    let batch = support::web_service_batch(BATCH);
    report_sizes(&server, &batch);

    let mut group = c.benchmark_group("convert_encode");
    group.throughput(Throughput::Elements(BATCH as u64));
    let exporter = ours(&server);
    group.bench_function("ours", |b| b.iter(|| exporter.request_bodies(&batch)));
    let keep = KeepBody::default();
    let their = theirs(&server, keep.clone());
    group.bench_function("opentelemetry-application-insights", |b| {
        b.iter_batched(
            || {
                if let Ok(mut bodies) = keep.0.lock() {
                    bodies.clear();
                }
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
    let their = theirs(&server, Post(client));
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
