//! One export's job on the worker: deliver it, and hand it off (answer the export) when the
//! delivery takes longer than the SDK's batch processor can wait.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures_util::future::Either;
use tokio::sync::{mpsc, watch};

use super::attempt::*;
use super::queue::*;
use super::worker::*;

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
    let delivery = shared.deliver_job(&items, deadline, abort);
    if shared.gate.storage.is_none() {
        // Without storage, the export waits for the outcome: nothing else could report it.
        let _ = reply.send(delivery.await);
        return;
    }
    let delivery = std::pin::pin!(delivery);
    let handoff = std::pin::pin!(tokio::time::sleep(HANDOFF));
    match futures_util::future::select(delivery, handoff).await {
        Either::Left((result, _)) => {
            let _ = reply.send(result);
        }
        Either::Right(((), delivery)) => {
            // No answer yet. The export returns now, so that the SDK's queue keeps draining
            // (its batch processor exports one batch at a time and drops what arrives while
            // its queue is full); this delivery goes on in the background and stores what it
            // cannot deliver. Until an answer comes, new exports go to disk at once.
            shared.gate.handed_off.fetch_add(1, Ordering::AcqRel);
            shared
                .gate
                .set_failing("no answer from the ingestion endpoint within the hand-off time");
            let _ = reply.send(Ok(()));
            let result = delivery.await;
            shared.gate.handed_off.fetch_sub(1, Ordering::AcqRel);
            if let Err(e) = result {
                opentelemetry::otel_warn!(
                    name: "AzureMonitor.Transmit.BackgroundDeliveryFailed",
                    message = "telemetry handed off after an export returned could not be delivered nor stored",
                    error = e.to_string()
                );
            }
        }
    }
}
