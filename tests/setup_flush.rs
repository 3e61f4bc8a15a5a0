//! The one-call setup's `force_flush` means delivered, also when the SDK's batch processor finds
//! nothing left to export: a burst of exactly one full batch (512 spans) is exported as soon as
//! the SDK's queue holds it, its first attempt meets a 503 and it is handed off after half a
//! second; the flush that follows makes no export, and the setup's flush processor waits for
//! the delivery. (A file of its own: the setup installs process-wide state.)
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::SystemTime;

use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
use opentelemetry_azure_monitor::testing::{Fault, IngestionServer};
use opentelemetry_azure_monitor::AzureMonitor;

/// A directory of the test's own under the temp directory, removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn force_flush_waits_for_a_full_batch_handed_off_before_it() {
    let server = IngestionServer::start().unwrap();
    server.push_fault(Fault::Status {
        code: 503,
        retry_after: None,
    });
    let dir = TempDir(std::env::temp_dir().join(format!(
        "azure-monitor-setup-flush-{}-{:x}",
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )));
    let azure_monitor = AzureMonitor::builder()
        .with_connection_string(server.connection_string())
        .with_storage_directory(dir.0.clone())
        .with_live_metrics(false)
        .with_standard_metrics(false)
        .with_tracing_subscriber(false)
        .install()
        .unwrap();
    let tracer = azure_monitor.tracer_provider().tracer("burst");
    let expected: Vec<String> = (0..512)
        .map(|i| {
            let mut span = tracer.span_builder(format!("job {i}")).start(&tracer);
            let id = span.span_context().span_id().to_string();
            span.end();
            id
        })
        .collect();
    // The 512th span asked the batch processor to export before this flush asks it to flush.
    azure_monitor.force_flush().unwrap();
    let received: HashSet<String> = server
        .envelopes()
        .iter()
        .filter_map(|item| item["data"]["baseData"]["id"].as_str().map(str::to_owned))
        .collect();
    let missing = expected.iter().filter(|id| !received.contains(*id)).count();
    assert_eq!(
        missing, 0,
        "{missing} of 512 spans not received when force_flush returned"
    );
    assert!(
        server.requests().iter().any(|r| r.status == Some(503)),
        "the fault was not hit"
    );
    azure_monitor.shutdown().unwrap();
}
