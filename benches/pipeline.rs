//! The whole export, side by side: ours, `opentelemetry-application-insights` 0.46 and
//! `opentelemetry-otlp` 0.33 (HTTP protobuf + gzip, its default blocking client), each through
//! its exporter trait (`export`, as the SDK's batch processor and periodic reader call it) into
//! a loopback HTTP receiver in a child process.
//!
//! ```sh
//! cargo bench --bench pipeline
//! PIPELINE_ONLY=log/ours cargo bench --bench pipeline   # one exporter only, e.g. under perf
//! PIPELINE_BATCH=64 cargo bench --bench pipeline        # smaller exports: their fixed cost
//! PIPELINE_ROUNDS=1 cargo bench --bench pipeline        # each exporter's exports in one go
//! ```
//!
//! For each signal (spans, log records, metric points), 200,000 items in batches of 512 per
//! exporter, then the exporter's shutdown. The exports are made in ten rounds, the three
//! exporters in turn in each (each round starting with the next), so that all three see the
//! same phases of a shared machine, whose speed changes by tens of percent from one second to
//! the next. Printed per item: CPU of the exporting process (all its threads, user + system,
//! from the process CPU clock; the time spent cloning the span batches for the exporters that
//! take them by value is measured apart and taken out) and request body bytes as the receiver
//! counted them; then the ratios. The receiver answers 200 at once and does nothing else, in
//! its own process, so its CPU is not counted.
//!
//! One run; compare the figures of one run with each other.

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
    let mut child = Reaped(
        Command::new(exe)
            .env(RECEIVER, "1")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting the receiver: {e}")),
    );
    let mut line = String::new();
    if let Some(out) = child.0.stdout.take() {
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
    let rounds = rounds().min(exports);
    let mut rows = Vec::new();

    // ---- Spans ----
    let spans = support::web_service_batch(batch);
    // The exporters take their batch by value: the clone is measured apart and taken out.
    let clone_cost = cpu_of(|| {
        for _ in 0..exports {
            drop(std::hint::black_box(spans.clone()));
        }
    }) / exports as f64;
    let mut ours = opentelemetry_azure_monitor::SpanExporter::builder()
        .with_connection_string(rx.connection_string())
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    ours.set_resource(&support::resource());
    let report = ours.delivery_report();
    let mut theirs = support::http::theirs(rx.connection_string(), rx.post());
    opentelemetry_sdk::trace::SpanExporter::set_resource(&mut theirs, &support::resource());
    let mut otlp = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_compression(Compression::Gzip)
        .with_endpoint(format!("http://{}/v1/traces", rx.addr))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    otlp.set_resource(&support::resource());
    let slice: &[SpanData] = &spans;
    let measured = rx.race(
        "span",
        batch,
        exports,
        rounds,
        [
            Contender::new("ours", clone_cost, |step| match step {
                Step::Export => check(futures_executor::block_on(ours.export(spans.clone()))),
                Step::Shutdown => check(ours.shutdown()),
            }),
            Contender::new("app-insights", clone_cost, |step| {
                if step == Step::Export {
                    check(
                        runtime.block_on(opentelemetry_sdk::trace::SpanExporter::export(
                            &theirs,
                            slice.to_vec(),
                        )),
                    );
                }
            }),
            Contender::new("otlp", clone_cost, |step| match step {
                Step::Export => check(futures_executor::block_on(otlp.export(spans.clone()))),
                Step::Shutdown => check(otlp.shutdown()),
            }),
        ],
    );
    all_accepted("span", &report, &measured, exports, batch);
    rows.push(("span", measured));

    // ---- Log records ----
    // Without the stack trace of the error records, as the figures in the README were measured.
    let records = support::logs::web_service_logs(batch, false);
    let refs: Vec<(&SdkLogRecord, &InstrumentationScope)> =
        records.iter().map(|(r, s)| (r, s)).collect();
    let mut ours = opentelemetry_azure_monitor::LogExporter::builder()
        .with_connection_string(rx.connection_string())
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    ours.set_resource(&support::resource());
    let report = ours.delivery_report();
    let mut theirs = support::http::theirs(rx.connection_string(), rx.post());
    opentelemetry_sdk::logs::LogExporter::set_resource(&mut theirs, &support::resource());
    let mut otlp = opentelemetry_otlp::LogExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_compression(Compression::Gzip)
        .with_endpoint(format!("http://{}/v1/logs", rx.addr))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    otlp.set_resource(&support::resource());
    let measured = rx.race(
        "log",
        batch,
        exports,
        rounds,
        [
            Contender::new("ours", 0.0, |step| match step {
                Step::Export => check(futures_executor::block_on(
                    ours.export(LogBatch::new(&refs)),
                )),
                Step::Shutdown => check(ours.shutdown()),
            }),
            Contender::new("app-insights", 0.0, |step| {
                if step == Step::Export {
                    check(
                        runtime.block_on(opentelemetry_sdk::logs::LogExporter::export(
                            &theirs,
                            LogBatch::new(&refs),
                        )),
                    );
                }
            }),
            Contender::new("otlp", 0.0, |step| match step {
                Step::Export => check(futures_executor::block_on(
                    otlp.export(LogBatch::new(&refs)),
                )),
                Step::Shutdown => check(otlp.shutdown()),
            }),
        ],
    );
    all_accepted("log", &report, &measured, exports, batch);
    rows.push(("log record", measured));

    // ---- Metric points ----
    let collection = support::metrics::collection(batch / 2);
    let ours = opentelemetry_azure_monitor::MetricExporter::builder()
        .with_connection_string(rx.connection_string())
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let report = ours.delivery_report();
    let theirs = support::http::theirs(rx.connection_string(), rx.post());
    let otlp = opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_compression(Compression::Gzip)
        .with_temporality(Temporality::Delta)
        .with_endpoint(format!("http://{}/v1/metrics", rx.addr))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let measured = rx.race(
        "metric",
        batch,
        exports,
        rounds,
        [
            Contender::new("ours", 0.0, |step| match step {
                Step::Export => check(futures_executor::block_on(ours.export(&collection))),
                Step::Shutdown => check(ours.shutdown()),
            }),
            Contender::new("app-insights", 0.0, |step| {
                if step == Step::Export {
                    check(runtime.block_on(
                        opentelemetry_sdk::metrics::exporter::PushMetricExporter::export(
                            &theirs,
                            &collection,
                        ),
                    ));
                }
            }),
            Contender::new("otlp", 0.0, |step| match step {
                Step::Export => check(futures_executor::block_on(otlp.export(&collection))),
                Step::Shutdown => check(otlp.shutdown()),
            }),
        ],
    );
    all_accepted("metric", &report, &measured, exports, batch);
    rows.push(("metric point", measured));

    println!(
        "\n{} items per exporter and signal, in exports of {batch}, in {rounds} interleaved rounds, \
         into a loopback receiver in another process",
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
    for (what, [ours, theirs, otlp]) in rows {
        let cell = |m: &Measured| format!("{:.2} µs {:>6.1} B", m.cpu_us, m.bytes);
        println!(
            "{:<13} {:>22} {:>22} {:>22} {:>9.3} {:>9.3} {:>11.2} {:>11.2}",
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
}

/// The receiver's process, ended when the bench ends, also by a panic (a failed check), which
/// would otherwise leave it running, holding the bench's output open.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The rounds each exporter's exports are split into, taken in turn (`PIPELINE_ROUNDS`, 10 by
/// default): these machines are shared and change speed by tens of percent from one second to
/// the next, and exporters measured one after the other would each get a different phase.
fn rounds() -> usize {
    std::env::var("PIPELINE_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .filter(|&r| r > 0)
        .unwrap_or(10)
}

fn check(result: opentelemetry_sdk::error::OTelSdkResult) {
    if let Err(e) = result {
        panic!("export failed: {e}");
    }
}

/// Nothing lost: when ours ran (it is first in `measured`), the service accepted every export
/// whole (the same number of envelopes each time, at least one per item: span events add
/// envelopes of their own), and nothing was stored, dropped or refused.
fn all_accepted(
    signal: &str,
    report: &opentelemetry_azure_monitor::DeliveryReport,
    measured: &[Measured],
    exports: usize,
    batch: usize,
) {
    if measured.first().is_none_or(|m| m.cpu_us.is_nan()) {
        return;
    }
    let (exports, batch) = (exports as u64, batch as u64);
    let accepted = report.accepted();
    assert!(
        accepted % exports == 0
            && accepted / exports >= batch
            && (report.stored(), report.dropped(), report.rejected()) == (0, 0, 0),
        "{signal}/ours, {exports} exports of {batch} items: {report}"
    );
}

/// Per item: CPU in microseconds and request body bytes.
struct Measured {
    cpu_us: f64,
    bytes: f64,
}

/// CPU time of this process so far (all its threads, also those that ended, user + system),
/// in seconds: `CLOCK_PROCESS_CPUTIME_ID`, which counts nanoseconds.
fn cpu_seconds() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
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

    /// Runs each contender's exports (`exports` of `batch` items) in `rounds` rounds, the
    /// contenders in turn and each round starting with the next one, then shuts each down, and
    /// adds up its CPU (less its overhead per export) and the request bytes received. With
    /// `PIPELINE_ONLY` set (e.g. `log/ours`, or `log`), only the contenders whose
    /// `signal/name` starts with it run, the others print as NaN: for profiling one export.
    fn race<const N: usize>(
        &self,
        signal: &str,
        batch: usize,
        exports: usize,
        rounds: usize,
        mut contenders: [Contender<'_>; N],
    ) -> [Measured; N] {
        let only = std::env::var("PIPELINE_ONLY").ok();
        // (CPU seconds, bytes, requests) of each contender that runs; `None` for the others.
        let mut totals: [Option<(f64, u64, u64)>; N] = std::array::from_fn(|i| {
            let name = contenders.get(i).map_or("", |c| c.name);
            only.as_deref()
                .is_none_or(|o| format!("{signal}/{name}").starts_with(o))
                .then_some((0.0, 0, 0))
        });
        let _ = self.take_stats();
        for round in 0..rounds {
            // An even share of the exports, the remainder in the first rounds.
            let these = exports / rounds + usize::from(round < exports % rounds);
            for turn in 0..N {
                let i = (round + turn) % N;
                let (Some(c), Some(Some(total))) = (contenders.get_mut(i), totals.get_mut(i))
                else {
                    continue;
                };
                let cpu = cpu_of(|| {
                    for _ in 0..these {
                        (c.step)(Step::Export);
                    }
                });
                let (bytes, requests) = self.take_stats();
                total.0 += cpu - c.overhead * these as f64;
                total.1 += bytes;
                total.2 += requests;
            }
        }
        for (c, total) in contenders.iter_mut().zip(totals.iter_mut()) {
            if let Some(total) = total {
                total.0 += cpu_of(|| (c.step)(Step::Shutdown));
                let (bytes, requests) = self.take_stats();
                total.1 += bytes;
                total.2 += requests;
                assert!(total.2 > 0, "{signal}/{}: nothing arrived", c.name);
            }
        }
        let items = (exports * batch) as f64;
        totals.map(|total| match total {
            Some((cpu, bytes, _)) => Measured {
                cpu_us: cpu.max(0.0) * 1e6 / items,
                bytes: bytes as f64 / items,
            },
            None => Measured {
                cpu_us: f64::NAN,
                bytes: f64::NAN,
            },
        })
    }
}

/// What a contender is asked to do.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    /// One export of the batch.
    Export,
    /// Its shutdown, after the last round (the other exporter has none that sends).
    Shutdown,
}

/// One exporter in a [`Receiver::race`].
struct Contender<'a> {
    name: &'static str,
    /// CPU seconds per export that are the bench's, not the exporter's (cloning the batch).
    overhead: f64,
    step: Box<dyn FnMut(Step) + 'a>,
}

impl<'a> Contender<'a> {
    fn new(name: &'static str, overhead: f64, step: impl FnMut(Step) + 'a) -> Self {
        Contender {
            name,
            overhead,
            step: Box::new(step),
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
