//! Peak memory of a process that exports 200,000 spans through an ingestion outage, then
//! delivers every one of them once the service is back. Run it by hand (it is not part of CI):
//!
//! ```sh
//! cargo run --release --example outage_memory                     # 200,000 spans, 60 s outage
//! cargo run --release --example outage_memory -- 10               # the same over 10 s
//! cargo run --release --example outage_memory -- 60 200000 none   # no outage, for comparison
//! ```
//!
//! Arguments: seconds over which the spans are produced, all of it during the outage (60);
//! spans (200000); `none` for a run without an outage.
//!
//! ```sh
//! cargo run --release --example outage_memory -- steady          # 2000 spans/s for 30 s, down from 7.5 s to 22.5 s
//! cargo run --release --example outage_memory -- steady hang     # the same, the service hanging instead of 503
//! ```
//!
//! `steady` keeps the SDK's default batch processor (a queue of 2048 spans, which drops what
//! arrives while it is full) and produces 2000 spans per second for 30 seconds with a 15-second
//! outage in the middle: every span produced must arrive, which holds only if no export keeps
//! the processor waiting while the service is down.
//!
//! A small local sink stands in for the ingestion service: it answers 503 during the outage,
//! then 200, and keeps only the span ids it received (so that its own memory stays small). The
//! peak resident set size is read from `VmHWM` in `/proc/self/status` (Linux). It is measured
//! for the whole process: the SDK, the exporter, the sink and the ids it keeps.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use opentelemetry::trace::{Span as _, SpanKind, Tracer, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_azure_monitor::SpanExporter;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, SpanData,
};

const IKEY: &str = "11111111-2222-4333-8444-555555555555";

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The message, not `Debug`.
            println!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1).peekable();
    let steady = args.peek().map(String::as_str) == Some("steady");
    let mut hang = false;
    let (duration, spans, outage) = if steady {
        args.next();
        hang = args.next().as_deref() == Some("hang");
        (Duration::from_secs(30), 60_000, true)
    } else {
        let duration = Duration::from_secs(args.next().map_or(Ok(60), |a| a.parse())?);
        let spans: usize = args.next().map_or(Ok(200_000), |a| a.parse())?;
        (duration, spans, args.next().as_deref() != Some("none"))
    };

    let sink = Sink::start()?;
    sink.state.hang.store(hang, Ordering::SeqCst);
    let dir = TempDir::new();
    let exporter = SpanExporter::builder()
        .with_connection_string(format!(
            "InstrumentationKey={IKEY};IngestionEndpoint=http://{}",
            sink.addr
        ))
        .with_storage_directory(&dir.0)
        // Room for every span of the run, so that none is dropped to make room.
        .with_storage_max_size(1 << 30)
        .with_export_timeout(if steady {
            // The default: what users run with.
            Duration::from_secs(4)
        } else {
            Duration::from_secs(2)
        })
        .with_resource_metric(false)
        .build()?;
    let report = exporter.delivery_report();
    // A queue that absorbs the first export's 2-second wait at the outage's start, so that the
    // SDK drops nothing before the exporter sees it.
    let handed = Arc::new(Mutex::new(HashSet::with_capacity(spans)));
    let exporter = Counting {
        inner: exporter,
        ids: Arc::clone(&handed),
    };
    let config = if steady {
        // The SDK's defaults: what the exporter must keep up with.
        BatchConfigBuilder::default().build()
    } else {
        BatchConfigBuilder::default()
            .with_max_queue_size(16_384)
            .build()
    };
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(config)
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .build();
    let tracer = provider.tracer("outage-memory");

    println!(
        "start: {spans} spans over {duration:?}, {}, VmRSS {}",
        if steady {
            "ingestion down from a quarter to three quarters of that time"
        } else if outage {
            "ingestion down all that time"
        } else {
            "no outage"
        },
        status("VmRSS")
    );
    sink.set_up(!outage || steady);
    let start = Instant::now();
    let mut phase = 0;
    for i in 0..spans {
        // Steady traffic: the service goes down after a quarter and comes back after three.
        if steady && i % 1000 == 0 {
            let now_phase = (4 * i) / spans;
            if now_phase != phase && (now_phase == 1 || now_phase == 3) {
                sink.set_up(now_phase == 3);
                println!(
                    "{:?}: ingestion {}",
                    start.elapsed(),
                    if now_phase == 3 { "back" } else { "down" }
                );
            }
            phase = now_phase;
        }
        let mut span = tracer
            .span_builder("GET /api/orders/{id}")
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new("url.full", format!("https://shop.example/api/orders/{i}")),
                KeyValue::new("server.address", "shop.example"),
                KeyValue::new("http.response.status_code", 200),
                KeyValue::new("order.id", i as i64),
            ])
            .start(&tracer);
        span.end();
        // Spread the spans over the duration (pacing the producer, not synchronising).
        if i % 1000 == 999 {
            let due = duration.mul_f64((i + 1) as f64 / spans as f64);
            if let Some(ahead) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(ahead);
            }
        }
    }
    provider.force_flush()?;
    let stored = stored_bytes(&dir.0);
    println!(
        "produced after {:?}: {} KiB on disk, VmHWM {}, VmRSS {}",
        start.elapsed(),
        stored / 1024,
        status("VmHWM"),
        status("VmRSS")
    );
    let produced = std::mem::take(&mut *handed.lock().map_err(|_| "poisoned")?);
    if steady {
        println!(
            "{} spans produced, {} reached the exporter",
            spans,
            produced.len()
        );
    }
    if produced.len() < spans {
        println!(
            "the SDK's queue dropped {} spans before they reached the exporter (produce them more slowly)",
            spans - produced.len()
        );
    }
    sink.set_up(true);
    let all = sink.wait_for(&produced, Duration::from_secs(600));
    provider.shutdown()?;
    let received = sink.received();
    println!(
        "done after {:?}: {} of the {} spans exported received ({} duplicates), {} requests, {} KiB left on disk",
        start.elapsed(),
        received,
        produced.len(),
        sink.duplicates.load(Ordering::Relaxed),
        sink.requests.load(Ordering::Relaxed),
        stored_bytes(&dir.0) / 1024
    );
    println!(
        "peak resident memory (VmHWM): {}, now (VmRSS): {}",
        status("VmHWM"),
        status("VmRSS")
    );
    println!("delivery report: {report}");
    if !all {
        return Err("not every span arrived".into());
    }
    Ok(())
}

/// Hands spans to the exporter under test, keeping their ids: what must arrive.
#[derive(Debug)]
struct Counting {
    inner: SpanExporter,
    ids: Arc<Mutex<HashSet<u64>>>,
}

impl opentelemetry_sdk::trace::SpanExporter for Counting {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        if let Ok(mut ids) = self.ids.lock() {
            ids.extend(
                batch
                    .iter()
                    .map(|s| u64::from_be_bytes(s.span_context.span_id().to_bytes())),
            );
        }
        self.inner.export(batch)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

/// A line of `/proc/self/status`, e.g. `VmHWM` (peak resident set size).
fn status(field: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "n/a (not Linux)".to_owned())
}

fn stored_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        TempDir(std::env::temp_dir().join(format!(
            "azure-monitor-outage-memory-{}",
            std::process::id()
        )))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A minimal stand-in for the ingestion service: HTTP/1.1, one thread per connection; 503 while
/// down, else 200 with a `TrackResponse`; it keeps only the span ids received.
struct Sink {
    addr: std::net::SocketAddr,
    state: Arc<SinkState>,
    requests: Arc<AtomicU64>,
    duplicates: Arc<AtomicU64>,
}

struct SinkState {
    up: AtomicBool,
    /// While down, never answer (and drop the connection when back up) instead of 503.
    hang: AtomicBool,
    ids: Mutex<HashSet<u64>>,
    arrived: Condvar,
}

impl Sink {
    fn start() -> std::io::Result<Sink> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let state = Arc::new(SinkState {
            up: AtomicBool::new(false),
            hang: AtomicBool::new(false),
            ids: Mutex::new(HashSet::new()),
            arrived: Condvar::new(),
        });
        let requests = Arc::new(AtomicU64::new(0));
        let duplicates = Arc::new(AtomicU64::new(0));
        let (s, r, d) = (
            Arc::clone(&state),
            Arc::clone(&requests),
            Arc::clone(&duplicates),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (s, r, d) = (Arc::clone(&s), Arc::clone(&r), Arc::clone(&d));
                std::thread::spawn(move || {
                    let _ = serve(stream, &s, &r, &d);
                });
            }
        });
        Ok(Sink {
            addr,
            state,
            requests,
            duplicates,
        })
    }

    fn set_up(&self, up: bool) {
        self.state.up.store(up, Ordering::SeqCst);
    }

    fn received(&self) -> usize {
        self.state.ids.lock().map(|ids| ids.len()).unwrap_or(0)
    }

    /// Waits until every id in `expected` arrived; whether they did.
    fn wait_for(&self, expected: &HashSet<u64>, timeout: Duration) -> bool {
        let Ok(ids) = self.state.ids.lock() else {
            return false;
        };
        let Ok((ids, _)) = self
            .state
            .arrived
            .wait_timeout_while(ids, timeout, |ids| !expected.is_subset(ids))
        else {
            return false;
        };
        expected.is_subset(&ids)
    }
}

#[derive(serde::Deserialize)]
struct Item {
    data: ItemData,
}

#[derive(serde::Deserialize)]
struct ItemData {
    #[serde(rename = "baseData")]
    base: BaseData,
}

#[derive(serde::Deserialize)]
struct BaseData {
    id: Option<String>,
}

fn serve(
    stream: TcpStream,
    state: &SinkState,
    requests: &AtomicU64,
    duplicates: &AtomicU64,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut stream = stream;
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let header = line.trim_end();
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
        reader.read_exact(&mut body)?;
        requests.fetch_add(1, Ordering::Relaxed);
        if !state.up.load(Ordering::SeqCst) && state.hang.load(Ordering::SeqCst) {
            // A request lost in the outage: no answer until it ends, then a closed connection.
            while !state.up.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
            return Ok(());
        }
        if !state.up.load(Ordering::SeqCst) {
            stream.write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")?;
            continue;
        }
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut json)?;
        let items: Vec<Item> = serde_json::from_slice(&json).unwrap_or_default();
        let n = items.len();
        if let Ok(mut ids) = state.ids.lock() {
            for item in items {
                let id = item
                    .data
                    .base
                    .id
                    .and_then(|id| u64::from_str_radix(&id, 16).ok());
                if let Some(id) = id {
                    if !ids.insert(id) {
                        duplicates.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        state.arrived.notify_all();
        let answer = format!(r#"{{"itemsReceived":{n},"itemsAccepted":{n},"errors":[]}}"#);
        write!(
            stream,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
            answer.len()
        )?;
    }
}
