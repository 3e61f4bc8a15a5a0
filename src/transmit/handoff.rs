//! One export's job on the worker: deliver it, and hand it off (answer the export) when the
//! delivery takes longer than the SDK's batch processor can wait.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::Either;
use tokio::sync::{mpsc, watch};

use super::attempt::Shared;
use super::queue::Job;
use super::replay::LEASE_MARGIN;
use super::worker::FinishedGuard;
use crate::error::TransmitError;

/// How long an export waits for its delivery when offline storage is on. Past it, the export
/// returns `Ok` (the items are on disk, and the worker still delivers them) and the endpoint
/// counts as failing until it answers. The SDK's batch processors export one batch at a time
/// and drop what arrives while their queue (2048 by default) is full, so an export must not
/// hold them: at 2000 items per second, half a second fills half the queue.
pub(super) const HANDOFF: Duration = Duration::from_millis(500);

/// Runs one export's job: stored at once when the endpoint is failing; otherwise delivered,
/// answered when done or, with storage, after [`HANDOFF`] (see there).
pub(super) async fn job_task(
    shared: Arc<Shared>,
    job: Job,
    abort: watch::Receiver<bool>,
    finished: mpsc::UnboundedSender<u64>,
) {
    let Job {
        seq,
        items,
        deadline,
        reply,
    } = job;
    let _guard = FinishedGuard { seq, finished };
    // Queued before the endpoint was found failing: store it now, the replay task probes. If
    // the write fails, try to deliver after all.
    if shared.gate.is_failing() && shared.gate.keep(&items, 0..items.len()).is_ok() {
        let _ = reply.send(Ok(()));
        return;
    }
    let delivery = shared.deliver_export(&items, deadline, abort);
    if shared.gate.storage.is_none() {
        // Without storage, the export waits for the outcome: nothing else could report it.
        let delivery = delivery.await;
        let _ = reply.send(shared.finish_export(&items, delivery, None));
        return;
    }
    let delivery = std::pin::pin!(delivery);
    let handoff = std::pin::pin!(tokio::time::sleep(HANDOFF));
    match futures_util::future::select(delivery, handoff).await {
        Either::Left((delivery, _)) => {
            let _ = reply.send(shared.finish_export(&items, delivery, None));
        }
        Either::Right(((), delivery)) => {
            // No answer yet. The export returns now, so that the SDK's queue keeps draining
            // (its batch processor exports one batch at a time and drops what arrives while
            // its queue is full); this delivery goes on in the background. First the items go
            // to disk, taken for this delivery: when the export returns (and with it a
            // `force_flush` of the SDK's processors, which never calls the exporter's own),
            // they are on disk after a real attempt, should the process stop or be frozen
            // right after. The delivery then removes the file, or gives back what is left.
            // Until an answer comes, new exports go to disk at once.
            shared.gate.handed_off.fetch_add(1, Ordering::AcqRel);
            let held = shared
                .gate
                .hold(&items, shared.timeout.saturating_add(LEASE_MARGIN));
            shared
                .gate
                .set_failing("no answer from the ingestion endpoint within the hand-off time");
            let _ = reply.send(Ok(()));
            let delivery = delivery.await;
            let result = shared.finish_export(&items, delivery, held);
            shared.gate.handed_off.fetch_sub(1, Ordering::AcqRel);
            if let Err(TransmitError::Undelivered { items, reason }) = result {
                opentelemetry::otel_warn!(
                    name: "AzureMonitor.Transmit.BackgroundDeliveryFailed",
                    message = "telemetry handed off after an export returned could not be delivered nor stored",
                    items = items,
                    error = reason.as_str()
                );
            }
        }
    }
}
