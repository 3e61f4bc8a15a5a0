//! The shutdown drain: what the exporter does between `shutdown` and the end of its thread.
//!
//! A short-lived process (a CLI, a batch job, a container being replaced, a Functions host)
//! often exits right after a burst, and its temp directory may go with it: offline storage is
//! for outages longer than the process, not for a hiccup at exit. So a shutdown uses the time
//! the SDK gives it (less a margin to wind down, see
//! [`Transmitter::shutdown`](super::Transmitter::shutdown)):
//!
//! 1. no more exports are taken; the queued, running and handed-off ones go on, with their
//!    retries, also while the circuit is open ([`Gate::is_draining`]); what they cannot deliver
//!    by their deadline is stored;
//! 2. meanwhile [`SENDERS`] tasks of [`stored`] send what is on disk (and what the exports
//!    store), the files of this process first, then those of earlier ones, with the retry
//!    policy, waiting out a `Retry-After` that ends before the deadline and backing off between
//!    failed files, until nothing is left and no export runs any more;
//! 3. at the deadline whatever is still in flight is given back to storage, and one log line
//!    says how much was delivered and how much is kept for a later run ([`report`]).
//!
//! Only what cannot be delivered by the deadline stays on disk.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::attempt::{race, Shared};
use super::gate::{instant_after, Gate};
use super::replay::{send_file, ProbeBackoff, LEASE_MARGIN};
use super::storage::{Files, Storage};

/// How many stored files a shutdown sends at the same time: the files of one burst go out
/// together instead of one after the other, in a time the SDK bounds.
pub(super) const SENDERS: usize = 4;

/// While exports still run (or the replay task sends a file of this process), how often an
/// idle sender looks for what they stored (or gave back).
const RECHECK: Duration = Duration::from_millis(20);

/// Sends what is in `storage` (the files `which` says: a shutdown sends this process's files
/// first, then those of earlier ones; a flush only this process's), until nothing is left (no
/// file of this process is on disk, also none taken by the replay task meanwhile) and
/// `exports_done` is `true`, the `deadline` passes or the worker aborts. Failed files are given
/// back and tried again after a backoff; a `Retry-After` that ends before the deadline is
/// waited out, one that ends later ends the drain.
pub(super) async fn stored(
    shared: Arc<Shared>,
    storage: Arc<Storage>,
    which: Files,
    deadline: Instant,
    mut abort: watch::Receiver<bool>,
    mut exports_done: watch::Receiver<bool>,
) {
    let (shared, storage) = (&*shared, &*storage);
    let gate = &shared.gate;
    let hold = shared.timeout.saturating_add(LEASE_MARGIN);
    let mut waits = ProbeBackoff::new(&shared.retry);
    loop {
        if *abort.borrow() {
            return;
        }
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        // A `Retry-After` that ends in time is waited out by the delivery, after it has read
        // and compressed the file: the requests are ready when it ends.
        if gate
            .paused_for(now)
            .is_some_and(|rest| instant_after(now, rest) >= deadline)
        {
            return;
        }
        let lease = match storage.lease_next(hold, which) {
            Ok(Some(lease)) => lease,
            Ok(None) => {
                if *exports_done.borrow_and_update() {
                    // Nothing to take and no export runs: done, unless files of this process
                    // are still out, taken by the replay task, which sends each once and gives
                    // it back when that fails.
                    if storage.waiting_items() == 0 {
                        return;
                    }
                    let _ = race(tokio::time::sleep(RECHECK), deadline, &mut abort).await;
                } else {
                    // Exports still run and may store what they cannot deliver.
                    let changed = exports_done.changed();
                    let _ =
                        race(tokio::time::timeout(RECHECK, changed), deadline, &mut abort).await;
                }
                continue;
            }
            Err(e) => {
                opentelemetry::otel_warn!(
                    name: "AzureMonitor.Storage.ReadFailed",
                    message = "stored telemetry could not be taken for sending",
                    directory = storage.shown(),
                    error = e.to_string()
                );
                return;
            }
        };
        let sent = send_file(
            shared,
            storage,
            lease,
            deadline,
            abort.clone(),
            Some(&shared.retry),
        )
        .await;
        let Some(delivery) = sent else { continue };
        if delivery.pending.is_empty() {
            waits.reset();
            continue;
        }
        if delivery.stopped.is_some() {
            return;
        }
        let delay = waits.next();
        if instant_after(Instant::now(), delay) >= deadline
            || race(tokio::time::sleep(delay), deadline, &mut abort)
                .await
                .is_err()
        {
            return;
        }
    }
}

/// The one log line of a shutdown: items delivered since it began, items kept on disk for a
/// later run (and why), items lost.
pub(super) fn report(gate: &Gate, accepted_before: u64, dropped_before: u64) {
    let tally = &gate.tally;
    let delivered = tally.accepted_total().saturating_sub(accepted_before);
    let kept = tally.waiting_on_disk();
    let dropped = tally.dropped_total().saturating_sub(dropped_before);
    if kept == 0 && dropped == 0 {
        opentelemetry::otel_info!(
            name: "AzureMonitor.Transmit.ShutdownComplete",
            message = "everything was delivered before the exporter shut down",
            delivered_during_shutdown = delivered,
            accepted_total = tally.accepted_total()
        );
    } else {
        let reason = tally.last_failure().unwrap_or_default();
        opentelemetry::otel_warn!(
            name: "AzureMonitor.Transmit.ShutdownIncomplete",
            message = "not everything could be delivered before the exporter shut down; what is on disk is sent by the next process that uses the same storage directory",
            delivered_during_shutdown = delivered,
            kept_on_disk = kept,
            dropped = dropped,
            last_failure = reason.as_str()
        );
    }
}
