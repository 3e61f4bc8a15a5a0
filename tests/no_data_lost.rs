//! No telemetry lost: real SDK pipelines export into the local ingestion server while the
//! service fails in every way it can, with offline storage in a directory of each test's own.
//! Every test counts that each item produced arrives (by id), and that none arrives twice.
//!
//! Where the protocol allows a duplicate, and why none is expected here: delivery is
//! at-least-once. An item the service accepted whose answer never reached the exporter (the
//! connection cut after the service processed the request, an answer slower than the export
//! deadline, a stored file whose lease ran out while its first sender was still sending it) is
//! sent again. The test server's `Hang` and `DropConnection` faults accept nothing, so every
//! scenario here asserts exactly once. What the protocol drops for good is asserted as dropped:
//! items refused with a non-retryable code (400), items the service sampled out (a per-item 206),
//! and a batch caught in a redirect loop (more than 10 consecutive redirects, as the official
//! exporters).
//!
//! The scenarios are generic over a [`Pipeline`]: spans (ids: span ids) and logs (ids: a
//! `test.id` attribute on each record). A metric pipeline would implement the same trait; it is
//! left out because aggregated points have no per-item identity to count exactly once.
//!
//! Synchronisation is by `force_flush`, `shutdown` and the server's `wait_for_*`, never sleeps.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use opentelemetry::logs::{LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::trace::{Span as _, SpanKind, Tracer, TracerProvider as _};
use opentelemetry_azure_monitor::testing::{Fault, IngestionServer};
use opentelemetry_azure_monitor::{LogExporter, RetryPolicy, SpanExporter};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

/// Set in the child process of [`a_process_restart_sends_what_the_last_one_left_on_disk`].
const CHILD_DIR: &str = "NO_DATA_LOST_CHILD_STORAGE";
const CHILD_IDS: &str = "NO_DATA_LOST_CHILD_IDS";
const CHILD_KEY: &str = "NO_DATA_LOST_CHILD_KEY";

// ---- Helpers ----

/// A directory of the test's own under the temp directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        TempDir(std::env::temp_dir().join(format!(
            "azure-monitor-no-data-lost-{label}-{}-{:x}",
            std::process::id(),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        )))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Items waiting in a storage directory (stored or being sent).
fn stored_items(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.ends_with(".blob") || name.ends_with(".lock")
        })
        .map(|e| {
            std::fs::read_to_string(e.path())
                .map(|text| text.lines().count())
                .unwrap_or(0)
        })
        .sum()
}

/// An endpoint where nothing listens: connections are refused.
fn refusing_endpoint() -> String {
    // The discard port is normally closed, and no test server can ever bind it.
    if let Err(e) = TcpStream::connect(("127.0.0.1", 9)) {
        if e.kind() == std::io::ErrorKind::ConnectionRefused {
            return "http://127.0.0.1:9".to_owned();
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

fn fast_retries(attempts: u32) -> RetryPolicy {
    RetryPolicy::new()
        .with_max_attempts(attempts)
        .with_initial_delay(Duration::from_millis(5))
        .with_max_delay(Duration::from_millis(20))
}

/// What every pipeline of a scenario is built with.
#[derive(Clone)]
struct Setup {
    connection_string: String,
    storage: PathBuf,
    export_timeout: Duration,
    retry: RetryPolicy,
}

impl Setup {
    fn new(server: &IngestionServer, storage: &Path) -> Setup {
        Setup {
            connection_string: server.connection_string(),
            storage: storage.to_path_buf(),
            export_timeout: Duration::from_secs(5),
            retry: fast_retries(3),
        }
    }

    /// The same, but pointed at an endpoint that refuses connections (same key).
    fn unreachable(server: &IngestionServer, storage: &Path) -> Setup {
        Setup {
            connection_string: format!(
                "InstrumentationKey={};IngestionEndpoint={}",
                server.instrumentation_key(),
                refusing_endpoint()
            ),
            ..Setup::new(server, storage)
        }
    }

    fn with_timeout(self, export_timeout: Duration) -> Setup {
        Setup {
            export_timeout,
            ..self
        }
    }
}

/// Applies a [`Setup`] to any of the crate's exporter builders: they share their `with_*`
/// options.
macro_rules! configure {
    ($builder:expr, $setup:expr) => {
        $builder
            .with_connection_string($setup.connection_string.clone())
            .with_storage_directory($setup.storage.clone())
            .with_export_timeout($setup.export_timeout)
            .with_retry_policy($setup.retry.clone())
    };
}

/// A telemetry pipeline under test: an SDK provider with one of the crate's exporters.
trait Pipeline: Sized {
    /// Builds the exporter from `setup` and the SDK pipeline around it.
    fn start(setup: &Setup) -> Self;
    /// Produces `n` items and returns the ids they arrive under.
    fn produce(&self, n: usize) -> Vec<String>;
    fn flush(&self) -> OTelSdkResult;
    fn shutdown(self) -> OTelSdkResult;
    /// The id of a received item, if it is one this pipeline produces.
    fn id_of(item: &Value) -> Option<String>;
}

/// Spans through the SDK's default (thread-based) batch processor.
struct Spans {
    provider: SdkTracerProvider,
}

impl Pipeline for Spans {
    fn start(setup: &Setup) -> Self {
        let exporter = configure!(SpanExporter::builder(), setup)
            .with_resource_metric(false)
            .build()
            .unwrap();
        Spans {
            provider: SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .build(),
        }
    }

    fn produce(&self, n: usize) -> Vec<String> {
        let tracer = self.provider.tracer("no-data-lost");
        (0..n)
            .map(|i| {
                let mut span = tracer
                    .span_builder(format!("job {i}"))
                    .with_kind(SpanKind::Internal)
                    .start(&tracer);
                let id = span.span_context().span_id().to_string();
                span.end();
                id
            })
            .collect()
    }

    fn flush(&self) -> OTelSdkResult {
        self.provider.force_flush()
    }

    fn shutdown(self) -> OTelSdkResult {
        self.provider.shutdown()
    }

    fn id_of(item: &Value) -> Option<String> {
        item["data"]["baseData"]["id"].as_str().map(str::to_owned)
    }
}

/// Log records through the SDK's default (thread-based) batch processor.
struct Logs {
    provider: SdkLoggerProvider,
}

impl Pipeline for Logs {
    fn start(setup: &Setup) -> Self {
        let exporter = configure!(LogExporter::builder(), setup).build().unwrap();
        Logs {
            provider: SdkLoggerProvider::builder()
                .with_batch_exporter(exporter)
                .build(),
        }
    }

    fn produce(&self, n: usize) -> Vec<String> {
        let logger = self.provider.logger("no-data-lost");
        (0..n)
            .map(|i| {
                let id = format!("{:032x}", rand_id());
                let mut record = logger.create_log_record();
                record.set_severity_number(Severity::Info);
                record.set_body(format!("record {i}").into());
                record.add_attribute("test.id", id.clone());
                logger.emit(record);
                id
            })
            .collect()
    }

    fn flush(&self) -> OTelSdkResult {
        self.provider.force_flush()
    }

    fn shutdown(self) -> OTelSdkResult {
        self.provider.shutdown()
    }

    fn id_of(item: &Value) -> Option<String> {
        item["data"]["baseData"]["properties"]["test.id"]
            .as_str()
            .map(str::to_owned)
    }
}

/// A unique id: the time and a counter (no randomness needed, only uniqueness in this run).
fn rand_id() -> u128 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    (now << 32) ^ u128::from(n)
}

/// How often each id arrived.
fn arrivals<P: Pipeline>(server: &IngestionServer) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for item in server.envelopes() {
        if let Some(id) = P::id_of(&item) {
            *seen.entry(id).or_insert(0) += 1;
        }
    }
    seen
}

/// Every expected id arrived exactly once, and nothing else.
fn assert_exactly_once<P: Pipeline>(server: &IngestionServer, expected: &[String]) {
    let seen = arrivals::<P>(server);
    let missing: Vec<&String> = expected
        .iter()
        .filter(|id| !seen.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} items never arrived",
        missing.len(),
        expected.len()
    );
    let twice: Vec<(&String, &usize)> = seen.iter().filter(|(_, &n)| n > 1).collect();
    assert!(twice.is_empty(), "arrived more than once: {twice:?}");
    assert_eq!(
        seen.len(),
        expected.len(),
        "items that were not produced arrived"
    );
    // Shown with `--nocapture`: the counts quoted in reports.
    println!(
        "{}: {} produced, {} arrived, each exactly once ({} requests)",
        std::thread::current().name().unwrap_or("?"),
        expected.len(),
        seen.len(),
        server.requests().len()
    );
}

/// Waits for `expected` to arrive, shuts the pipeline down (no replay is left running), and
/// checks that each arrived exactly once and nothing is left on disk.
fn finish<P: Pipeline>(pipeline: P, server: &IngestionServer, expected: &[String], dir: &Path) {
    assert!(
        server.wait_for_envelopes(expected.len(), WAIT),
        "{} of {} arrived",
        server.envelopes().len(),
        expected.len()
    );
    pipeline.shutdown().unwrap();
    assert_exactly_once::<P>(server, expected);
    assert_eq!(stored_items(dir), 0, "items left on disk");
}

// ---- Scenarios, generic over the pipeline ----

/// Ingestion unreachable (connections refused) for a while, then back: a first exporter stores
/// everything and shuts down; a second one on the same directory sends it, then its own.
fn unreachable_then_back<P: Pipeline>() {
    let server = IngestionServer::start().unwrap();
    let dir = TempDir::new("unreachable");
    let down = P::start(&Setup::unreachable(&server, &dir.0));
    let mut expected = down.produce(30);
    down.flush().unwrap();
    // The endpoint is now known to fail: these go to disk at once.
    expected.extend(down.produce(20));
    let start = Instant::now();
    down.flush().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    down.shutdown().unwrap();
    assert_eq!(stored_items(&dir.0), 50);
    assert!(server.requests().is_empty());

    let up = P::start(&Setup::new(&server, &dir.0));
    expected.extend(up.produce(10));
    up.flush().unwrap();
    finish(up, &server, &expected, &dir.0);
}

/// More consecutive 503s than one export retries: stored, then sent by the background probes.
fn a_run_of_503s<P: Pipeline>() {
    let server = IngestionServer::start().unwrap();
    for _ in 0..8 {
        server.push_fault(Fault::Status {
            code: 503,
            retry_after: None,
        });
    }
    let dir = TempDir::new("503s");
    let pipeline = P::start(&Setup::new(&server, &dir.0));
    let mut expected = Vec::new();
    for _ in 0..4 {
        expected.extend(pipeline.produce(10));
        pipeline.flush().unwrap();
    }
    finish(pipeline, &server, &expected, &dir.0);
    let failed = server
        .requests()
        .iter()
        .filter(|r| r.status == Some(503))
        .count();
    assert_eq!(failed, 8);
}

/// A 429 with `Retry-After: 1` longer than the export may last: stored at once, and nothing at
/// all is sent before the second has passed.
fn throttled_with_retry_after<P: Pipeline>() {
    let server = IngestionServer::start().unwrap();
    server.push_fault(Fault::Status {
        code: 429,
        retry_after: Some("1".into()),
    });
    let dir = TempDir::new("429");
    let pipeline = P::start(&Setup::new(&server, &dir.0).with_timeout(Duration::from_millis(500)));
    let start = Instant::now();
    let mut expected = pipeline.produce(10);
    pipeline.flush().unwrap();
    expected.extend(pipeline.produce(5));
    pipeline.flush().unwrap();
    assert!(
        start.elapsed() < Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
    assert!(server.wait_for_requests(2, WAIT));
    assert!(
        start.elapsed() >= Duration::from_millis(1000),
        "a request {:?} after the 429",
        start.elapsed()
    );
    finish(pipeline, &server, &expected, &dir.0);
}

/// A Hang: the export gives up at its deadline and stores; while the endpoint is known to fail,
/// a flush's export still returns by its deadline; the probes deliver once the service answers.
fn a_response_that_never_comes<P: Pipeline>() {
    let server = IngestionServer::start().unwrap();
    server.push_fault(Fault::Hang);
    server.push_fault(Fault::Hang);
    let dir = TempDir::new("hang");
    let pipeline = P::start(&Setup::new(&server, &dir.0).with_timeout(Duration::from_millis(500)));
    let mut expected = pipeline.produce(10);
    let start = Instant::now();
    pipeline.flush().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    expected.extend(pipeline.produce(10));
    let start = Instant::now();
    pipeline.flush().unwrap();
    // A flush's export (smaller than a full batch) makes an attempt of its own even while the
    // endpoint counts as failing, and is answered by its deadline (500 ms here).
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "an export waited {:?} while the endpoint was failing",
        start.elapsed()
    );
    finish(pipeline, &server, &expected, &dir.0);
}

/// Connections reset without an answer: retried within the export.
fn a_reset_connection<P: Pipeline>() {
    let server = IngestionServer::start().unwrap();
    server.push_fault(Fault::DropConnection);
    server.push_fault(Fault::DropConnection);
    let dir = TempDir::new("reset");
    let pipeline = P::start(&Setup::new(&server, &dir.0));
    let expected = pipeline.produce(12);
    pipeline.flush().unwrap();
    finish(pipeline, &server, &expected, &dir.0);
}

/// Redirects to the same endpoint: 10 in a row are followed; a loop beyond that drops that one
/// batch (the protocol's rule), and the next batch goes through.
fn a_redirect_loop<P: Pipeline>() {
    let server = IngestionServer::start().unwrap();
    let redirect = || Fault::Redirect {
        status: 307,
        location: format!("{}/v2.1/track", server.endpoint()),
    };
    let dir = TempDir::new("redirect");
    let pipeline = P::start(&Setup::new(&server, &dir.0));
    for _ in 0..10 {
        server.push_fault(redirect());
    }
    let mut expected = pipeline.produce(5);
    pipeline.flush().unwrap();
    assert!(server.wait_for_envelopes(5, WAIT));
    // A loop: the batch is refused after 10 redirects followed.
    for _ in 0..11 {
        server.push_fault(redirect());
    }
    let looped = pipeline.produce(4);
    assert!(
        pipeline.flush().is_err(),
        "the looped batch is reported lost"
    );
    expected.extend(pipeline.produce(6));
    pipeline.flush().unwrap();
    finish(pipeline, &server, &expected, &dir.0);
    let seen = arrivals::<P>(&server);
    assert!(looped.iter().all(|id| !seen.contains_key(id)));
}

/// A 206 with every kind of per-item code, and the re-sent items failing once more: retryable
/// items are stored and sent later, the invalid one is dropped, the sampled-out one is not sent
/// again.
fn a_partial_success_with_mixed_codes<P: Pipeline>() {
    let server = IngestionServer::start().unwrap();
    server.push_fault(Fault::PartialFailure(vec![
        (0, 500),
        (1, 429),
        (2, 206),
        (3, 400),
        (4, 503),
        (5, 408),
    ]));
    // The re-send of the four retryable items fails too: they go to disk.
    server.push_fault(Fault::Status {
        code: 500,
        retry_after: None,
    });
    let dir = TempDir::new("206");
    let setup = Setup {
        retry: fast_retries(2),
        ..Setup::new(&server, &dir.0)
    };
    let pipeline = P::start(&setup);
    let produced = pipeline.produce(10);
    // One item was refused for good: the export says so.
    assert!(pipeline.flush().is_err());
    let first = server.rejected();
    let refused = |code: u16| {
        first
            .iter()
            .find(|r| r.request == 0 && r.status == code)
            .and_then(|r| P::id_of(&r.item))
            .unwrap()
    };
    let (sampled, invalid) = (refused(206), refused(400));
    let expected: Vec<String> = produced
        .into_iter()
        .filter(|id| *id != sampled && *id != invalid)
        .collect();
    finish(pipeline, &server, &expected, &dir.0);
    let requests = server.requests();
    assert_eq!(requests[1].items, 4, "only the retryable items are re-sent");
}

/// A process restart: a child process (this test binary, re-run) exports while ingestion is
/// down and exits right after its flush, without shutting down; the next "process" sends what
/// it left on disk.
fn a_process_restart<P: Pipeline>(child_test: &str) {
    let server = IngestionServer::start().unwrap();
    let dir = TempDir::new("restart");
    let ids_file = dir.0.with_extension("ids");
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            child_test,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, &dir.0)
        .env(CHILD_IDS, &ids_file)
        .env(CHILD_KEY, server.instrumentation_key())
        .status()
        .unwrap();
    assert!(status.success(), "the child process failed: {status}");
    let expected: Vec<String> = std::fs::read_to_string(&ids_file)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let _ = std::fs::remove_file(&ids_file);
    assert_eq!(expected.len(), 40);
    assert_eq!(stored_items(&dir.0), 40);

    let pipeline = P::start(&Setup::new(&server, &dir.0));
    finish(pipeline, &server, &expected, &dir.0);
}

/// The child side of [`a_process_restart`].
fn restart_child<P: Pipeline>() {
    let dir = PathBuf::from(std::env::var_os(CHILD_DIR).unwrap());
    let ids_file = PathBuf::from(std::env::var_os(CHILD_IDS).unwrap());
    let key = std::env::var(CHILD_KEY).unwrap();
    let setup = Setup {
        connection_string: format!(
            "InstrumentationKey={key};IngestionEndpoint={}",
            refusing_endpoint()
        ),
        storage: dir,
        export_timeout: Duration::from_secs(5),
        // No background probe before the exit: a file being probed at exit would stay leased
        // for a while (the crash case), which is not what this test is about.
        retry: RetryPolicy::new()
            .with_max_attempts(2)
            .with_initial_delay(Duration::from_secs(600))
            .with_max_delay(Duration::from_secs(600)),
    };
    let pipeline = P::start(&setup);
    let mut ids = pipeline.produce(25);
    pipeline.flush().unwrap();
    ids.extend(pipeline.produce(15));
    pipeline.flush().unwrap();
    std::fs::write(&ids_file, ids.join("\n")).unwrap();
    // A flush that returned Ok means on disk: exit without shutting down.
    std::process::exit(0);
}

// ---- The span pipeline through every scenario ----

#[test]
fn spans_ingestion_unreachable_then_back() {
    unreachable_then_back::<Spans>();
}

#[test]
fn spans_a_run_of_503s() {
    a_run_of_503s::<Spans>();
}

#[test]
fn spans_throttled_with_retry_after() {
    throttled_with_retry_after::<Spans>();
}

#[test]
fn spans_a_response_that_never_comes() {
    a_response_that_never_comes::<Spans>();
}

#[test]
fn spans_a_reset_connection() {
    a_reset_connection::<Spans>();
}

#[test]
fn spans_a_redirect_loop() {
    a_redirect_loop::<Spans>();
}

#[test]
fn spans_a_partial_success_with_mixed_codes() {
    a_partial_success_with_mixed_codes::<Spans>();
}

#[test]
fn spans_a_process_restart() {
    a_process_restart::<Spans>("spans_restart_child");
}

#[test]
#[ignore = "the child process of spans_a_process_restart"]
fn spans_restart_child() {
    restart_child::<Spans>();
}

// ---- The log pipeline through the same scenarios ----

#[test]
fn logs_ingestion_unreachable_then_back() {
    unreachable_then_back::<Logs>();
}

#[test]
fn logs_a_run_of_503s() {
    a_run_of_503s::<Logs>();
}

#[test]
fn logs_throttled_with_retry_after() {
    throttled_with_retry_after::<Logs>();
}

#[test]
fn logs_a_response_that_never_comes() {
    a_response_that_never_comes::<Logs>();
}

#[test]
fn logs_a_reset_connection() {
    a_reset_connection::<Logs>();
}

#[test]
fn logs_a_redirect_loop() {
    a_redirect_loop::<Logs>();
}

#[test]
fn logs_a_partial_success_with_mixed_codes() {
    a_partial_success_with_mixed_codes::<Logs>();
}

#[test]
fn logs_a_process_restart() {
    a_process_restart::<Logs>("logs_restart_child");
}

#[test]
#[ignore = "the child process of logs_a_process_restart"]
fn logs_restart_child() {
    restart_child::<Logs>();
}

/// One invalid item in a batch (a span older than the service's 48 hours): only that one is
/// dropped, the rest of the batch arrives.
#[test]
fn spans_one_invalid_item_in_a_batch() {
    let server = IngestionServer::start().unwrap();
    let dir = TempDir::new("invalid");
    let pipeline = Spans::start(&Setup::new(&server, &dir.0));
    let mut expected = pipeline.produce(5);
    let tracer = pipeline.provider.tracer("no-data-lost");
    let mut old = tracer
        .span_builder("three days ago")
        .with_start_time(SystemTime::now() - Duration::from_secs(72 * 3600))
        .start(&tracer);
    let invalid = old.span_context().span_id().to_string();
    old.end();
    expected.extend(pipeline.produce(5));
    assert!(
        pipeline.flush().is_err(),
        "the export reports the dropped item"
    );
    let rejected = server.rejected();
    assert_eq!(rejected.len(), 1);
    assert_eq!(Spans::id_of(&rejected[0].item), Some(invalid));
    assert!(
        rejected[0].message.starts_with("103:"),
        "{}",
        rejected[0].message
    );
    finish(pipeline, &server, &expected, &dir.0);
    assert_eq!(server.requests().len(), 1, "nothing was sent again");
}

/// Storage that cannot be used does not stop the exporter: it warns and delivers without it.
#[test]
fn an_unusable_storage_directory_leaves_the_exporter_working() {
    let server = IngestionServer::start().unwrap();
    let dir = TempDir::new("unusable");
    std::fs::create_dir_all(&dir.0).unwrap();
    let file = dir.0.join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let pipeline = Spans::start(&Setup::new(&server, &file.join("storage")));
    let expected = pipeline.produce(5);
    pipeline.flush().unwrap();
    finish(pipeline, &server, &expected, &dir.0);
}
