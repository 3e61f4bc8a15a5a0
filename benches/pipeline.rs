//! The whole export, side by side: ours, `opentelemetry-application-insights` 0.46 and
//! `opentelemetry-otlp` 0.33 (HTTP protobuf + gzip, its default blocking client), each through
//! its exporter trait (`export`, as the SDK's batch processor and periodic reader call it) into
//! a loopback HTTP receiver in a child process.
//!
//! ```sh
//! cargo bench --bench pipeline
//! PIPELINE_ONLY=log/ours cargo bench --bench pipeline   # one export only, e.g. under perf
//! PIPELINE_BATCH=64 cargo bench --bench pipeline        # smaller exports: their fixed cost
//! ```
//!
//! For each signal (spans, log records, metric points), 200,000 items in batches of 512 per
//! exporter, then the exporter's shutdown. Printed per item: CPU of the exporting process (all
//! its threads, user + system, from `/proc/self/stat`, so Linux only; the time spent cloning
//! the span batches for the exporters that take them by value is measured apart and taken
//! out) and request body bytes as the receiver counted them; then the ratios. The receiver
//! answers 200 at once and does nothing else, in its own process, so its CPU is not counted.
//!
//! One run; the machines are shared, so compare the figures of one run with each other.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use opentelemetry::InstrumentationScope;
use opentelemetry_otlp::{Compression, Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::logs::{LogBatch, LogExporter as _, SdkLogRecord};
use opentelemetry_sdk::metrics::exporter::PushMetricExporter as _;
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::trace::{SpanData, SpanExporter as _};

mod support;

use support::http::Post;

const ITEMS: usize = 200_000;
/// Items per export: 512 (the SDK's batch size), or `PIPELINE_BATCH` (to see the fixed cost
/// of an export: the per-item figures at a few batch sizes).
fn batch_size() -> usize {
    std::env::var("PIPELINE_BATCH")
        .ok()
        .and_then(|b| b.parse().ok())
        .filter(|&b| b > 0)
        .unwrap_or(512)
}
const IKEY: &str = "11111111-2222-4333-8444-555555555555";
/// Set in the child process: it is the receiver.
const RECEIVER: &str = "PIPELINE_BENCH_RECEIVER";

fn main() {
    if std::env::var_os(RECEIVER).is_some() {
        receive();
        return;
    }
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    let mut child = Command::new(exe)
        .env(RECEIVER, "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting the receiver: {e}"));
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    let addr = line.trim().to_owned();
    assert!(
        !addr.is_empty(),
        "the receiver did not say where it listens"
    );
    let rx = Receiver { addr };

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let batch = batch_size();
    let exports = ITEMS.div_ceil(batch);
    let mut rows = Vec::new();

    // ---- Spans ----
    let spans = support::web_service_batch(batch);
    let clone_cost = cpu_of(|| {
        for _ in 0..exports {
            drop(std::hint::black_box(spans.clone()));
        }
    });
    let ours = {
        let mut e = opentelemetry_azure_monitor::SpanExporter::builder()
            .with_connection_string(rx.connection_string())
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        e.set_resource(&support::resource());
        rx.measure("span/ours", exports * batch, clone_cost, || {
            for _ in 0..exports {
                check(futures_executor::block_on(e.export(spans.clone())));
            }
            check(e.shutdown());
        })
    };
    let theirs = {
        let mut e = support::http::theirs(rx.connection_string(), rx.post());
        opentelemetry_sdk::trace::SpanExporter::set_resource(&mut e, &support::resource());
        let slice: &[SpanData] = &spans;
        rx.measure("span/app-insights", exports * batch, clone_cost, || {
            for _ in 0..exports {
                check(
                    runtime.block_on(opentelemetry_sdk::trace::SpanExporter::export(
                        &e,
                        slice.to_vec(),
                    )),
                );
            }
        })
    };
    let otlp = {
        let mut e = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_compression(Compression::Gzip)
            .with_endpoint(format!("http://{}/v1/traces", rx.addr))
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        e.set_resource(&support::resource());
        rx.measure("span/otlp", exports * batch, clone_cost, || {
            for _ in 0..exports {
                check(futures_executor::block_on(e.export(spans.clone())));
            }
            check(e.shutdown());
        })
    };
    rows.push(("span", ours, theirs, otlp));

    // ---- Log records ----
    // Without the stack trace of the error records, as the figures in the README were measured.
    let records = support::logs::web_service_logs(batch, false);
    let refs: Vec<(&SdkLogRecord, &InstrumentationScope)> =
        records.iter().map(|(r, s)| (r, s)).collect();
    let ours = {
        let mut e = opentelemetry_azure_monitor::LogExporter::builder()
            .with_connection_string(rx.connection_string())
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        e.set_resource(&support::resource());
        rx.measure("log/ours", exports * batch, 0.0, || {
            for _ in 0..exports {
                check(futures_executor::block_on(e.export(LogBatch::new(&refs))));
            }
            check(e.shutdown());
        })
    };
    let theirs = {
        let mut e = support::http::theirs(rx.connection_string(), rx.post());
        opentelemetry_sdk::logs::LogExporter::set_resource(&mut e, &support::resource());
        rx.measure("log/app-insights", exports * batch, 0.0, || {
            for _ in 0..exports {
                check(
                    runtime.block_on(opentelemetry_sdk::logs::LogExporter::export(
                        &e,
                        LogBatch::new(&refs),
                    )),
                );
            }
        })
    };
    let otlp = {
        let mut e = opentelemetry_otlp::LogExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_compression(Compression::Gzip)
            .with_endpoint(format!("http://{}/v1/logs", rx.addr))
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        e.set_resource(&support::resource());
        rx.measure("log/otlp", exports * batch, 0.0, || {
            for _ in 0..exports {
                check(futures_executor::block_on(e.export(LogBatch::new(&refs))));
            }
            check(e.shutdown());
        })
    };
    rows.push(("log record", ours, theirs, otlp));

    // ---- Metric points ----
    let collection = support::metrics::collection(batch / 2);
    let ours = {
        let e = opentelemetry_azure_monitor::MetricExporter::builder()
            .with_connection_string(rx.connection_string())
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        rx.measure("metric/ours", exports * batch, 0.0, || {
            for _ in 0..exports {
                check(futures_executor::block_on(e.export(&collection)));
            }
            check(e.shutdown());
        })
    };
    let theirs = {
        let e = support::http::theirs(rx.connection_string(), rx.post());
        rx.measure("metric/app-insights", exports * batch, 0.0, || {
            for _ in 0..exports {
                check(runtime.block_on(
                    opentelemetry_sdk::metrics::exporter::PushMetricExporter::export(
                        &e,
                        &collection,
                    ),
                ));
            }
        })
    };
    let otlp = {
        let e = opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_compression(Compression::Gzip)
            .with_temporality(Temporality::Delta)
            .with_endpoint(format!("http://{}/v1/metrics", rx.addr))
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        rx.measure("metric/otlp", exports * batch, 0.0, || {
            for _ in 0..exports {
                check(futures_executor::block_on(e.export(&collection)));
            }
            check(e.shutdown());
        })
    };
    rows.push(("metric point", ours, theirs, otlp));

    println!(
        "\n{} items per exporter and signal, in exports of {batch}, into a loopback receiver in another process",
        exports * batch
    );
    println!(
        "{:<13} {:>22} {:>22} {:>22} {:>9} {:>9} {:>11} {:>11}",
        "per item",
        "ours (CPU, bytes)",
        "app-insights 0.46",
        "otlp 0.33 proto+gzip",
        "CPU/ai",
        "CPU/otlp",
        "bytes/ai",
        "bytes/otlp"
    );
    for (what, ours, theirs, otlp) in rows {
        let cell = |m: &Measured| format!("{:.2} µs {:>6.1} B", m.cpu_us, m.bytes);
        println!(
            "{:<13} {:>22} {:>22} {:>22} {:>9.2} {:>9.2} {:>11.2} {:>11.2}",
            what,
            cell(&ours),
            cell(&theirs),
            cell(&otlp),
            ours.cpu_us / theirs.cpu_us,
            ours.cpu_us / otlp.cpu_us,
            ours.bytes / theirs.bytes,
            ours.bytes / otlp.bytes
        );
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn check(result: opentelemetry_sdk::error::OTelSdkResult) {
    if let Err(e) = result {
        panic!("export failed: {e}");
    }
}

/// Per item: CPU in microseconds and request body bytes.
struct Measured {
    cpu_us: f64,
    bytes: f64,
}

/// CPU time of this process so far (all threads, user + system), in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat")
        .unwrap_or_else(|e| panic!("/proc/self/stat (Linux only): {e}"));
    // After the command name in parentheses: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // USER_HZ is 100 on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

fn cpu_of(f: impl FnOnce()) -> f64 {
    let start = cpu_seconds();
    f();
    cpu_seconds() - start
}

struct Receiver {
    addr: String,
}

impl Receiver {
    fn connection_string(&self) -> String {
        format!(
            "InstrumentationKey={IKEY};IngestionEndpoint=http://{}",
            self.addr
        )
    }

    /// The other exporter's HTTP client: it always speaks https, so it posts to this address.
    fn post(&self) -> Post {
        Post {
            client: reqwest::Client::new(),
            endpoint: format!("http://{}", self.addr),
        }
    }

    /// Body bytes and requests received since the last call.
    fn take_stats(&self) -> (u64, u64) {
        let mut s = TcpStream::connect(&self.addr).unwrap_or_else(|e| panic!("stats: {e}"));
        let _ = s.write_all(b"GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        let body = text.rsplit("\r\n\r\n").next().unwrap_or("");
        let mut parts = body.split_whitespace().map(|p| p.parse().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
    }

    /// Runs `export` (which sends `items` items), less `overhead` seconds of CPU; `what` is
    /// "signal/exporter". With `PIPELINE_ONLY` set (e.g. `log/ours`, or `log`), only the runs
    /// whose `what` starts with it are made, the others print as NaN: for profiling one export.
    fn measure(&self, what: &str, items: usize, overhead: f64, export: impl FnOnce()) -> Measured {
        if let Ok(only) = std::env::var("PIPELINE_ONLY") {
            if !what.starts_with(only.as_str()) {
                return Measured {
                    cpu_us: f64::NAN,
                    bytes: f64::NAN,
                };
            }
        }
        let _ = self.take_stats();
        let cpu = cpu_of(export) - overhead;
        let (bytes, requests) = self.take_stats();
        assert!(requests > 0, "nothing arrived");
        Measured {
            cpu_us: cpu.max(0.0) * 1e6 / items as f64,
            bytes: bytes as f64 / items as f64,
        }
    }
}

// ---- The receiver (child process) ----

fn receive() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("local_addr: {e}"));
    println!("{addr}");
    let _ = std::io::stdout().flush();
    let stats = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let stats = Arc::clone(&stats);
        std::thread::spawn(move || serve(stream, &stats));
    }
}

/// Answers the requests of one connection (keep-alive) until it closes.
fn serve(stream: TcpStream, stats: &(AtomicU64, AtomicU64)) {
    let _ = stream.set_nodelay(true);
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        match reader.read_line(&mut request_line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let path = request_line.split_whitespace().nth(1).unwrap_or("");
        let (content_type, answer) = if path == "/stats" {
            let bytes = stats.0.swap(0, Ordering::SeqCst);
            let requests = stats.1.swap(0, Ordering::SeqCst);
            let text = format!("{bytes} {requests}");
            let _ = write!(
                writer,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
            return;
        } else {
            stats.0.fetch_add(length as u64, Ordering::SeqCst);
            stats.1.fetch_add(1, Ordering::SeqCst);
            if path.starts_with("/v1/") {
                // An empty Export*ServiceResponse.
                ("application/x-protobuf", Vec::new())
            } else {
                (
                    "application/json",
                    br#"{"itemsReceived":0,"itemsAccepted":0,"errors":[]}"#.to_vec(),
                )
            }
        };
        // Head and body in one write, as a server sends a small answer: two writes would
        // wake every client twice per request.
        let mut response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            answer.len()
        )
        .into_bytes();
        response.extend_from_slice(&answer);
        if writer.write_all(&response).is_err() {
            return;
        }
    }
}
