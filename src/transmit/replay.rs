//! The replay of stored data: files in offline storage are sent again, oldest first, one at a
//! time; while the endpoint fails each file is a probe, with a backoff between probes.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

use super::attempt::{Delivery, Shared, Stop};
use super::gate::instant_after;
use super::retry::RetryPolicy;
use super::storage::{Lease, Storage};

/// While nothing is stored, the replay task still looks into the storage directory this often,
/// for files that other processes left there.
pub(super) const IDLE_RESCAN: Duration = Duration::from_secs(60);

/// A stored file stays taken this much longer than a delivery may last, so that no other process
/// sends it meanwhile. A process that dies while sending a file delays that file by this much
/// (plus the export timeout): the next process takes it when the lease has run out.
pub(super) const LEASE_MARGIN: Duration = Duration::from_secs(10);

/// The shortest wait between two probes of a failing endpoint, whatever the retry policy says.
pub(super) const MIN_PROBE_DELAY: Duration = Duration::from_millis(10);

/// The waits between probes of a failing endpoint: decorrelated jitter between the retry
/// policy's initial and maximum delays (at least [`MIN_PROBE_DELAY`]), for as long as it fails.
pub(super) struct ProbeBackoff {
    pub(super) rng: fastrand::Rng,
    pub(super) floor: Duration,
    pub(super) cap: Duration,
    pub(super) previous: Duration,
}

impl ProbeBackoff {
    pub(super) fn new(policy: &RetryPolicy) -> Self {
        let floor = policy.initial_delay().max(MIN_PROBE_DELAY);
        ProbeBackoff {
            rng: fastrand::Rng::new(),
            floor,
            cap: policy.max_delay().max(floor),
            previous: floor,
        }
    }

    pub(super) fn next(&mut self) -> Duration {
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let high = nanos(self.previous)
            .saturating_mul(3)
            .min(nanos(self.cap))
            .max(nanos(self.floor));
        self.previous = Duration::from_nanos(self.rng.u64(nanos(self.floor)..=high));
        self.previous
    }

    pub(super) fn reset(&mut self) {
        self.previous = self.floor;
    }
}

/// Waits `delay`, or until `wake` is notified; `false` when the worker is stopping.
pub(super) async fn idle(
    stopping: &mut watch::Receiver<bool>,
    delay: Duration,
    wake: Option<&Notify>,
) -> bool {
    if *stopping.borrow_and_update() {
        return false;
    }
    let mut timer = pin!(tokio::time::sleep(delay));
    let mut stop = pin!(stopping.changed());
    let mut woken = pin!(async {
        match wake {
            Some(wake) => wake.notified().await,
            None => std::future::pending().await,
        }
    });
    poll_fn(|cx| {
        // The only change ever sent is `true`; a closed channel means the worker is ending.
        if stop.as_mut().poll(cx).is_ready() {
            return Poll::Ready(false);
        }
        if timer.as_mut().poll(cx).is_ready() || woken.as_mut().poll(cx).is_ready() {
            return Poll::Ready(true);
        }
        Poll::Pending
    })
    .await
}

/// What the replay task does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Next {
    /// Take the next stored file now.
    Now,
    /// Wait, then take the next file.
    After(Duration),
    /// Nothing is stored: wait to be woken (or [`IDLE_RESCAN`]).
    Idle,
}

/// The replay task: sends stored files, oldest first, one at a time, each within the delivery
/// deadline and without in-delivery retries. While the endpoint fails, each file is a probe,
/// with [`ProbeBackoff`] between probes; once one gets through, the circuit closes and the rest
/// follows at once. Ends when the worker stops, giving back the file it holds if aborted.
pub(super) async fn replay(
    shared: Arc<Shared>,
    storage: Arc<Storage>,
    mut stopping: watch::Receiver<bool>,
    abort: watch::Receiver<bool>,
) {
    let gate = &shared.gate;
    let hold = shared.timeout.saturating_add(LEASE_MARGIN);
    let mut probes = ProbeBackoff::new(&shared.retry);
    // Look at once: an earlier process may have left data.
    let mut next = Next::Now;
    loop {
        match next {
            Next::Now => {
                if *stopping.borrow() {
                    return;
                }
            }
            Next::After(delay) => {
                if !idle(&mut stopping, delay, None).await {
                    return;
                }
            }
            Next::Idle => {
                if !idle(&mut stopping, IDLE_RESCAN, Some(&gate.wake)).await {
                    return;
                }
                if gate.stored.swap(false, Ordering::AcqRel) || gate.is_failing() {
                    // Woken because a delivery just failed: let the endpoint rest first.
                    next = Next::After(probes.next());
                    continue;
                }
            }
        }
        if let Some(rest) = gate.paused_for(Instant::now()) {
            next = Next::After(rest);
            continue;
        }
        let lease = match storage.lease_oldest(hold) {
            Ok(Some(lease)) => lease,
            Ok(None) if gate.handed_off.load(Ordering::Acquire) > 0 => {
                // Nothing stored yet, but a handed-off delivery is still waiting for the
                // endpoint: it stores or succeeds soon; until then the circuit stays open.
                next = Next::After(probes.next());
                continue;
            }
            Ok(None) => {
                // Nothing to probe with: let the next export find out how the endpoint is.
                gate.on_disk.store(false, Ordering::Release);
                gate.set_healthy();
                probes.reset();
                next = Next::Idle;
                continue;
            }
            Err(e) => {
                opentelemetry::otel_warn!(
                    name: "AzureMonitor.Storage.ReadFailed",
                    message = "stored telemetry could not be taken for sending",
                    directory = storage.shown(),
                    error = e.to_string()
                );
                next = Next::After(probes.next());
                continue;
            }
        };
        let deadline = instant_after(Instant::now(), shared.timeout);
        let delivery =
            match send_file(&shared, &storage, lease, deadline, abort.clone(), None).await {
                Some(delivery) => delivery,
                None => {
                    next = Next::Now;
                    continue;
                }
            };
        if delivery.pending.is_empty() {
            gate.set_healthy();
            probes.reset();
            next = Next::Now;
            continue;
        }
        if delivery.stopped == Some(Stop::Shutdown) {
            return;
        }
        if delivery.answered {
            // Up, but some items are to be sent again later (a 206 with retryable items).
            gate.set_healthy();
        } else {
            gate.set_failing(&delivery.reason);
        }
        next = Next::After(probes.next());
    }
}

/// Sends one stored file taken for sending (`lease`) by `deadline`: without retries (each file
/// is one probe) or with the retry policy (`retry`, the shutdown's drain), and gives back to
/// storage what is left ([`Gate::settle`]). `None` when the file was gone (taken over by
/// another process) or unreadable (dropped, with a warning), or empty.
pub(super) async fn send_file(
    shared: &Shared,
    storage: &Storage,
    lease: Lease,
    deadline: Instant,
    abort: watch::Receiver<bool>,
    retry: Option<&RetryPolicy>,
) -> Option<Delivery> {
    let loaded = match storage.read(&lease) {
        Ok(loaded) => loaded,
        // Taken over by another process after the lease ran out.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            opentelemetry::otel_warn!(
                name: "AzureMonitor.Storage.Unreadable",
                message = "a stored file could not be read and was dropped",
                items = lease.items(),
                error = e.to_string()
            );
            storage.remove(lease);
            return None;
        }
    };
    let (items, skipped) = (loaded.items, loaded.corrupt);
    if items.is_empty() {
        storage.remove(lease);
        return None;
    }
    let delivery = match retry {
        Some(policy) => {
            let backoff = policy.backoff(fastrand::Rng::new());
            shared
                .deliver(&items, None, deadline, abort, backoff, false)
                .await
        }
        None => {
            shared
                .deliver(&items, None, deadline, abort, std::iter::empty(), false)
                .await
        }
    };
    if delivery.pending.is_empty() {
        opentelemetry::otel_debug!(
            name: "AzureMonitor.Storage.Sent",
            items = items.len(),
            skipped_lines = skipped
        );
    }
    // Refused items were reported by the delivery; they are not kept.
    shared.gate.settle(lease, &items, delivery.pending.clone());
    Some(delivery)
}
