//! The gate: what the callers' threads and the worker know of the endpoint's health (the
//! "circuit", open after a delivery failed for a reason that may pass) and the service's latest
//! `Retry-After`, and the one place that writes undelivered items to offline storage.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::encode::EncodedItems;
use super::report::Tally;
use super::storage::{Lease, Storage};

/// The longest pause a `Retry-After` can impose (as the JS exporter): a garbage value must not
/// silence the exporter for the rest of the process.
pub(super) const MAX_PAUSE: Duration = Duration::from_secs(24 * 60 * 60);

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `now + d`, saturating far in the future instead of overflowing.
pub(super) fn instant_after(now: Instant, d: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
    now.checked_add(d)
        .or_else(|| now.checked_add(FAR))
        .unwrap_or(now)
}

/// What the callers' threads and the worker share: the storage, and what is known of the
/// endpoint's health.
pub(super) struct Gate {
    pub(super) storage: Option<Arc<Storage>>,
    /// A delivery failed for a reason that may pass and nothing got through since (the circuit is
    /// open): exports are stored at once, and the replay task probes the endpoint. Only ever set
    /// with storage.
    pub(super) failing: AtomicBool,
    /// Nothing is sent before this: the service's latest `Retry-After`.
    pub(super) paused_until: Mutex<Option<Instant>>,
    /// Wakes the replay task: a delivery succeeded (send what is stored), something was stored
    /// or the endpoint started failing (send it after a backoff).
    pub(super) wake: Notify,
    /// Set with a wake-up when something was stored: the replay task waits a backoff first.
    pub(super) stored: AtomicBool,
    /// Something may be on disk (this process stored it, or an earlier one may have): a
    /// successful delivery then wakes the replay task. Cleared by the replay task when it finds
    /// nothing, so that a healthy exporter does not read the directory after every export.
    pub(super) on_disk: AtomicBool,
    /// What became of the items so far (for the [`DeliveryReport`](super::DeliveryReport)).
    pub(super) tally: Arc<Tally>,
    /// The exporter is shutting down and drains: deliveries keep trying until their deadline
    /// even while the circuit is open.
    pub(super) draining: AtomicBool,
    /// Deliveries handed off after their export returned and still running: while there are
    /// any, an empty storage does not mean the endpoint recovered.
    pub(super) handed_off: AtomicUsize,
}

impl Gate {
    pub(super) fn new(storage: Option<Arc<Storage>>) -> Self {
        Gate {
            storage: storage.clone(),
            failing: AtomicBool::new(false),
            paused_until: Mutex::new(None),
            wake: Notify::new(),
            stored: AtomicBool::new(false),
            on_disk: AtomicBool::new(true),
            tally: Arc::new(Tally::new(storage.clone())),
            draining: AtomicBool::new(false),
            handed_off: AtomicUsize::new(0),
        }
    }

    pub(super) fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Acquire)
    }

    /// Opens the circuit (with storage only: without it, every export tries on its own).
    pub(super) fn set_failing(&self, reason: &str) {
        if self.storage.is_some() && !self.failing.swap(true, Ordering::AcqRel) {
            opentelemetry::otel_warn!(
                name: "AzureMonitor.Transmit.EndpointFailing",
                message = "the ingestion endpoint is failing; telemetry is stored on disk and sent when it answers again",
                reason = reason
            );
            self.wake.notify_one();
        }
    }

    /// Closes the circuit: the service answered.
    pub(super) fn set_healthy(&self) {
        if self.failing.swap(false, Ordering::AcqRel) {
            opentelemetry::otel_debug!(
                name: "AzureMonitor.Transmit.EndpointRecovered",
                message = "the ingestion endpoint answers again; sending stored telemetry"
            );
        }
    }

    /// Holds back every request for `delay` from now (a `Retry-After`), at most [`MAX_PAUSE`].
    pub(super) fn pause(&self, delay: Duration) {
        let until = instant_after(Instant::now(), delay.min(MAX_PAUSE));
        let mut paused = lock(&self.paused_until);
        if paused.is_none_or(|p| p < until) {
            *paused = Some(until);
        }
    }

    /// How much longer requests are held back, if they are.
    pub(super) fn paused_for(&self, now: Instant) -> Option<Duration> {
        lock(&self.paused_until)
            .and_then(|until| until.checked_duration_since(now))
            .filter(|d| !d.is_zero())
    }

    /// Whether exports should go to storage at once instead of being attempted: the circuit is
    /// open, or the service asked for a pause longer than an export may last.
    pub(super) fn store_first(&self, timeout: Duration) -> bool {
        self.storage.is_some()
            && (self.is_failing()
                || self
                    .paused_for(Instant::now())
                    .is_some_and(|d| d >= timeout))
    }

    /// Stores items `pending` of `items`.
    ///
    /// # Errors
    ///
    /// Why they could not be stored (storage off, or the write failed).
    pub(super) fn keep(
        &self,
        items: &EncodedItems,
        pending: impl IntoIterator<Item = usize>,
    ) -> Result<usize, String> {
        let Some(storage) = &self.storage else {
            return Err("offline storage is off".to_owned());
        };
        match storage.store(items, pending) {
            Ok(stored) => {
                opentelemetry::otel_debug!(name: "AzureMonitor.Storage.Stored", items = stored);
                self.tally.stored(stored);
                self.on_disk.store(true, Ordering::Release);
                self.stored.store(true, Ordering::Release);
                self.wake.notify_one();
                Ok(stored)
            }
            Err(e) => {
                opentelemetry::otel_warn!(
                    name: "AzureMonitor.Storage.WriteFailed",
                    message = "telemetry could not be written to offline storage",
                    error = e.to_string()
                );
                Err(format!("offline storage failed: {e}"))
            }
        }
    }

    /// Writes all of `items` to storage while their delivery still runs (an export handed off
    /// before its answer came): taken until `hold` from now, given back by
    /// [`settle`](Self::settle) when the delivery ends. From here on the items are on disk,
    /// whatever happens to the process. `None` without storage or when the write failed.
    pub(super) fn hold(&self, items: &EncodedItems, hold: Duration) -> Option<Lease> {
        let storage = self.storage.as_ref()?;
        match storage.hold(items, 0..items.len(), hold) {
            Ok(lease) => {
                self.tally.stored(items.len());
                self.on_disk.store(true, Ordering::Release);
                lease
            }
            Err(e) => {
                opentelemetry::otel_warn!(
                    name: "AzureMonitor.Storage.WriteFailed",
                    message = "telemetry could not be written to offline storage",
                    error = e.to_string()
                );
                None
            }
        }
    }

    /// Gives back a stored file taken for sending (`lease`, holding `items`) once its delivery
    /// ended with `pending` (indices into `items`) still undelivered: removed when nothing is
    /// left, given back whole (not before the service's `Retry-After`) or rewritten with what is
    /// left.
    pub(super) fn settle(&self, lease: Lease, items: &EncodedItems, mut pending: Vec<usize>) {
        let Some(storage) = &self.storage else {
            return;
        };
        pending.sort_unstable();
        pending.dedup();
        pending.retain(|&i| i < items.len());
        if pending.is_empty() {
            storage.remove(lease);
            return;
        }
        if pending.len() == items.len() {
            // Other processes wait for the `Retry-After` too; this one does anyway, and a
            // shutdown's drain must find the file to send it when the pause ends.
            let until = self
                .paused_for(Instant::now())
                .filter(|_| !self.is_draining())
                .and_then(|rest| std::time::SystemTime::now().checked_add(rest));
            storage.release(lease, until);
        } else if let Err(e) = storage.replace(lease, items, &pending) {
            // The lease runs out and the whole file is sent again: its delivered items twice.
            opentelemetry::otel_warn!(
                name: "AzureMonitor.Storage.WriteFailed",
                message = "telemetry could not be written to offline storage",
                error = e.to_string()
            );
        }
        self.on_disk.store(true, Ordering::Release);
        self.stored.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Whether the exporter is shutting down and drains what is left.
    pub(super) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}
