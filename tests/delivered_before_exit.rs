//! A short-lived process emits a burst and exits while ingestion has a brief hiccup: with the
//! SDK's default batch processor and the exporter's default settings, a burst of 2000 spans is
//! followed at once by `force_flush` and `shutdown`, and every span must have reached the
//! service, exactly once, when `shutdown` returns (nothing left on disk, nothing dropped).
//!
//! One test per fault of issue 9's table: three 503s, two 429s with `Retry-After: 2`, a 206
//! with retryable items, three reset connections. Each runs against the crate's local
//! ingestion server with a storage directory of its own; synchronisation is by `force_flush`
//! and `shutdown` only.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use opentelemetry::trace::{Span as _, SpanKind, Tracer, TracerProvider as _};
use opentelemetry_azure_monitor::testing::{Fault, IngestionServer};
use opentelemetry_azure_monitor::SpanExporter;
use opentelemetry_sdk::trace::SdkTracerProvider;

const BURST: usize = 2000;

/// A directory of the test's own under the temp directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        TempDir(std::env::temp_dir().join(format!(
            "azure-monitor-exit-{label}-{}-{:x}",
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

/// Lines in the storage directory's files (stored or taken for sending).
fn on_disk(dir: &Path) -> usize {
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

/// The ids of the items in the storage directory's files.
fn ids_on_disk(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut ids = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        for line in text.lines() {
            if let Ok(item) = serde_json::from_str::<serde_json::Value>(line) {
                if let Some(id) = item["data"]["baseData"]["id"].as_str() {
                    ids.push(id.to_owned());
                }
            }
        }
    }
    ids
}

/// The ids the server received.
fn ids_received(server: &IngestionServer) -> Vec<String> {
    server
        .envelopes()
        .iter()
        .filter_map(|item| item["data"]["baseData"]["id"].as_str().map(str::to_owned))
        .collect()
}

/// Scripts `faults`, emits the burst through a default pipeline, flushes and shuts down at
/// once, and checks that every span arrived exactly once before `shutdown` returned.
fn burst_then_exit(label: &str, faults: &[Fault]) {
    let server = IngestionServer::start().unwrap();
    for fault in faults {
        server.push_fault(fault.clone());
    }
    let dir = TempDir::new(label);
    let exporter = SpanExporter::builder()
        .with_connection_string(server.connection_string())
        .with_storage_directory(dir.0.clone())
        .build()
        .unwrap();
    let report = exporter.delivery_report();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .build();
    let tracer = provider.tracer("exit");
    let start = Instant::now();
    let expected: Vec<String> = (0..BURST)
        .map(|i| {
            let mut span = tracer
                .span_builder(format!("job {i}"))
                .with_kind(SpanKind::Internal)
                .start(&tracer);
            let id = span.span_context().span_id().to_string();
            span.end();
            id
        })
        .collect();
    provider.force_flush().unwrap();
    let flushed = start.elapsed();
    // `force_flush` means delivered: each span accepted by the service or on disk. Disk first:
    // an item that leaves the disk meanwhile has been delivered.
    let mut safe: std::collections::HashSet<String> = ids_on_disk(&dir.0).into_iter().collect();
    safe.extend(ids_received(&server));
    let unsafe_ = expected.iter().filter(|id| !safe.contains(*id)).count();
    assert_eq!(
        unsafe_, 0,
        "{label}: {unsafe_} spans neither delivered nor on disk when force_flush returned"
    );
    let received_at_flush: std::collections::HashSet<String> =
        ids_received(&server).into_iter().collect();
    let delivered_at_flush = expected
        .iter()
        .filter(|id| received_at_flush.contains(*id))
        .count();
    println!("{label}: at force_flush ({flushed:?}): {delivered_at_flush} received");
    provider.shutdown().unwrap();
    let shut = start.elapsed();

    // Everything is there now: no waiting.
    let mut seen: HashMap<String, usize> = HashMap::new();
    for id in ids_received(&server) {
        *seen.entry(id).or_insert(0) += 1;
    }
    let missing = expected.iter().filter(|id| !seen.contains_key(*id)).count();
    let twice = seen.values().filter(|&&n| n > 1).count();
    assert_eq!(
        missing, 0,
        "{label}: {missing} of {BURST} spans not delivered before shutdown returned ({report})"
    );
    assert_eq!(twice, 0, "{label}: {twice} spans arrived more than once");
    assert_eq!(seen.len(), BURST, "{label}: spans that were not produced");
    assert_eq!(on_disk(&dir.0), 0, "{label}: items left on disk");
    assert_eq!(report.waiting_on_disk(), 0);
    assert_eq!(report.dropped(), 0);
    assert_eq!(report.rejected(), 0);
    // The spans, and the `_OTELRESOURCE_` metric of each export.
    assert!(report.accepted() >= BURST as u64, "{report}");
    let failed = server
        .requests()
        .iter()
        .filter(|r| r.status != Some(200))
        .count();
    assert!(failed >= 1, "{label}: the fault was not hit");
    // Shown with `--nocapture`: the figures quoted in reports.
    println!(
        "{label}: {BURST}/{BURST} delivered exactly once; force_flush after {flushed:?}, \
         shutdown after {shut:?}; {} requests, {failed} failed; {report}",
        server.requests().len()
    );
}

#[test]
fn three_503s_then_200() {
    let fault = Fault::Status {
        code: 503,
        retry_after: None,
    };
    burst_then_exit("503", &[fault.clone(), fault.clone(), fault]);
}

#[test]
fn two_429s_with_retry_after_2() {
    let fault = Fault::Status {
        code: 429,
        retry_after: Some("2".into()),
    };
    burst_then_exit("429", &[fault.clone(), fault]);
}

#[test]
fn a_206_with_retryable_items() {
    // Of the first request, items 0..100 failed with retryable codes (as the service answers
    // when it throttles part of a batch), the rest accepted.
    let mut failed: Vec<(usize, u16)> = (0..50).map(|i| (i, 500)).collect();
    failed.extend((50..100).map(|i| (i, 503)));
    burst_then_exit("206", &[Fault::PartialFailure(failed)]);
}

#[test]
fn three_reset_connections() {
    burst_then_exit(
        "reset",
        &[
            Fault::DropConnection,
            Fault::DropConnection,
            Fault::DropConnection,
        ],
    );
}
