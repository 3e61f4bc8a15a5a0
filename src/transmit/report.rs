//! What became of the telemetry an exporter was given: counters kept by the delivery path,
//! read through the public [`DeliveryReport`].

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::storage::Storage;

/// The counters one transmitter keeps; every [`DeliveryReport`] of it reads them.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    accepted: AtomicU64,
    rejected: AtomicU64,
    dropped: AtomicU64,
    stored: AtomicU64,
    last_failure: Mutex<Option<String>>,
    storage: Option<Arc<Storage>>,
}

fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

impl Tally {
    pub(crate) fn new(storage: Option<Arc<Storage>>) -> Tally {
        Tally {
            storage,
            ..Tally::default()
        }
    }

    pub(crate) fn accepted(&self, items: usize) {
        self.accepted.fetch_add(to_u64(items), Ordering::Relaxed);
    }

    pub(crate) fn rejected(&self, items: usize) {
        self.rejected.fetch_add(to_u64(items), Ordering::Relaxed);
    }

    pub(crate) fn dropped(&self, items: usize) -> u64 {
        let n = to_u64(items);
        self.dropped
            .fetch_add(n, Ordering::Relaxed)
            .saturating_add(n)
    }

    pub(crate) fn stored(&self, items: usize) {
        self.stored.fetch_add(to_u64(items), Ordering::Relaxed);
    }

    /// Remembers why a delivery failed (the latest reason wins).
    pub(crate) fn failed(&self, reason: &str) {
        if reason.is_empty() {
            return;
        }
        let mut last = self
            .last_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.as_deref() != Some(reason) {
            *last = Some(reason.to_owned());
        }
    }

    pub(crate) fn dropped_total(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub(crate) fn accepted_total(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    pub(crate) fn waiting_on_disk(&self) -> u64 {
        self.storage
            .as_ref()
            .map_or(0, |s| to_u64(s.waiting_items()))
    }

    pub(crate) fn last_failure(&self) -> Option<String> {
        self.last_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// What became of the telemetry an exporter was given, so far: how many items the service
/// accepted, refused, how many were lost, how many wait on disk for a later delivery, and why
/// the latest delivery failed.
///
/// Take it from the exporter before handing the exporter to the SDK (the provider owns it then);
/// the report is a cheap handle that stays valid and up to date, also after the provider was
/// shut down. Read it at exit, after `shutdown`, to tell the user what really happened:
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use opentelemetry_sdk::trace::SdkTracerProvider;
///
/// let exporter = opentelemetry_azure_monitor::SpanExporter::builder().build()?;
/// let report = exporter.delivery_report();
/// let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).build();
/// // ... the program runs ...
/// let _ = provider.shutdown();
/// println!("telemetry: {report}");
/// if let Some(reason) = report.last_failure() {
///     println!("latest delivery failure: {reason}");
/// }
/// # Ok(()) }
/// ```
///
/// The counts are of telemetry items (one span can make several items: a request and its
/// exceptions, for instance), as the exporter sends them.
#[derive(Clone)]
pub struct DeliveryReport {
    tally: Arc<Tally>,
}

impl DeliveryReport {
    pub(crate) fn new(tally: Arc<Tally>) -> Self {
        DeliveryReport { tally }
    }

    /// Items the ingestion service accepted (including stored items sent again, and items the
    /// service accepted and then sampled out).
    pub fn accepted(&self) -> u64 {
        self.tally.accepted.load(Ordering::Relaxed)
    }

    /// Items the service refused for good (invalid items, for example); they are not sent again.
    pub fn rejected(&self) -> u64 {
        self.tally.rejected.load(Ordering::Relaxed)
    }

    /// Items lost without the service refusing them: they could not be delivered in time and
    /// could not be stored (offline storage off or failing), or too many exports were waiting.
    pub fn dropped(&self) -> u64 {
        self.tally.dropped.load(Ordering::Relaxed)
    }

    /// Items this exporter wrote to offline storage because they could not be delivered at
    /// once (each time it did; some may have been sent since).
    pub fn stored(&self) -> u64 {
        self.tally.stored.load(Ordering::Relaxed)
    }

    /// Items this exporter wrote to offline storage that are still there, waiting to be sent by
    /// this process or by the next one that uses the same directory: read after `shutdown`,
    /// what was kept for later. `0` without offline storage. Reads the directory.
    pub fn waiting_on_disk(&self) -> u64 {
        self.tally.waiting_on_disk()
    }

    /// Why the latest delivery attempt that failed for a reason that may pass did so (a
    /// network error such as "dns error: failed to lookup address information", a timeout, a
    /// status such as 503 or 429), if one did.
    pub fn last_failure(&self) -> Option<String> {
        self.tally.last_failure()
    }
}

impl fmt::Display for DeliveryReport {
    /// One line: `2000 items accepted, 0 rejected, 0 dropped, 0 waiting on disk`, followed by
    /// `; last failure: ...` when a delivery failed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} items accepted, {} rejected, {} dropped, {} waiting on disk",
            self.accepted(),
            self.rejected(),
            self.dropped(),
            self.waiting_on_disk()
        )?;
        if let Some(reason) = self.last_failure() {
            write!(f, "; last failure: {reason}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for DeliveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeliveryReport")
            .field("accepted", &self.accepted())
            .field("rejected", &self.rejected())
            .field("dropped", &self.dropped())
            .field("stored", &self.stored())
            .field("last_failure", &self.last_failure())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_reads_the_tally_and_says_it_in_one_line() {
        let tally = Arc::new(Tally::new(None));
        let report = DeliveryReport::new(Arc::clone(&tally));
        assert_eq!(
            report.to_string(),
            "0 items accepted, 0 rejected, 0 dropped, 0 waiting on disk"
        );
        tally.accepted(510);
        tally.rejected(2);
        assert_eq!(tally.dropped(3), 3);
        tally.stored(7);
        tally.failed("HTTP 503: Service Unavailable");
        tally.failed("");
        // A clone taken earlier sees the same counts.
        let clone = report.clone();
        assert_eq!(
            (
                clone.accepted(),
                clone.rejected(),
                clone.dropped(),
                clone.stored()
            ),
            (510, 2, 3, 7)
        );
        assert_eq!(
            clone.to_string(),
            "510 items accepted, 2 rejected, 3 dropped, 0 waiting on disk; \
             last failure: HTTP 503: Service Unavailable"
        );
    }
}
