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

use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::{InstrumentationScope, SpanId, TraceFlags, TraceId};
use opentelemetry_azure_monitor::testing::IngestionServer;
use opentelemetry_azure_monitor::LogExporter;
use opentelemetry_http::HttpClient;
use opentelemetry_sdk::logs::{LogBatch, LogExporter as _, SdkLogRecord, SdkLoggerProvider};

mod support;

use support::http::{report_sizes, KeepBody, Post};

const BATCH: usize = 512;

/// `n` records shaped like a web service's logs, as `opentelemetry-appender-tracing` makes
/// them (an unnamed scope, the module path as target): per request an info line with a few
/// fields, a debug line, every fifth request a warning, every tenth an error with an
/// exception; all inside the request's trace.
fn web_service_logs(n: usize) -> Vec<(SdkLogRecord, InstrumentationScope)> {
    let provider = SdkLoggerProvider::builder().build();
    let logger = provider.logger("");
    let scope = InstrumentationScope::builder("").build();
    let now = SystemTime::now();
    let mut records = Vec::with_capacity(n);
    let mut op = 0u64;
    while records.len() < n {
        op += 1;
        // Hashed ids and varied times, so that the batch compresses like real telemetry.
        let trace = TraceId::from_bytes(
            ((u128::from(support::mix(op)) << 64) | u128::from(support::mix(op ^ 0xabcd)))
                .to_be_bytes(),
        );
        let span = SpanId::from_bytes(support::mix(op << 8).to_be_bytes());
        let time = now - Duration::from_micros(support::mix(op ^ 0x77) % 60_000_000);
        let new = |severity: Severity, text: &'static str, target: &'static str| {
            let mut r = logger.create_log_record();
            r.set_timestamp(time);
            r.set_observed_timestamp(time);
            r.set_severity_number(severity);
            r.set_severity_text(text);
            r.set_target(target);
            r.set_event_name("event src/orders.rs:42");
            r.set_trace_context(trace, span, Some(TraceFlags::SAMPLED));
            r
        };
        let mut info = new(Severity::Info, "INFO", "shop::orders");
        info.set_body(AnyValue::from(format!("order {op} received")));
        info.add_attribute("order.id", AnyValue::Int(op as i64));
        info.add_attribute("customer.id", AnyValue::from(format!("c-{}", op % 977)));
        info.add_attribute("http.route", AnyValue::from("/api/orders/{id}"));
        info.add_attribute("items", AnyValue::Int(3));
        records.push((info, scope.clone()));
        let mut debug = new(Severity::Debug, "DEBUG", "shop::cache");
        debug.set_body(AnyValue::from("cache miss, loading from the database"));
        debug.add_attribute("cache.key", AnyValue::from(format!("order:{op}")));
        records.push((debug, scope.clone()));
        if op % 5 == 0 {
            let mut warn = new(Severity::Warn, "WARN", "shop::inventory");
            warn.set_body(AnyValue::from("inventory service slow, retrying"));
            warn.add_attribute("attempt", AnyValue::Int(2));
            warn.add_attribute("elapsed_ms", AnyValue::Double(812.5));
            records.push((warn, scope.clone()));
        }
        if op % 10 == 0 {
            let mut error = new(Severity::Error, "ERROR", "shop::payments");
            error.set_body(AnyValue::from("payment failed"));
            error.add_attribute("exception.type", AnyValue::from("shop::PaymentError"));
            error.add_attribute(
                "exception.message",
                AnyValue::from("the payment provider answered 402"),
            );
            error.add_attribute(
                "exception.stacktrace",
                AnyValue::from(
                    "   0: shop::payments::charge\n             at src/payments.rs:88:17\n   1: shop::orders::checkout\n             at src/orders.rs:142:9\n   2: shop::http::handle\n             at src/http.rs:61:5",
                ),
            );
            error.add_attribute("order.id", AnyValue::Int(op as i64));
            records.push((error, scope.clone()));
        }
    }
    records.truncate(n);
    records
}

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
    let records = web_service_logs(BATCH);
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
