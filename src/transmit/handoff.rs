//! One export's job on the worker: deliver it, and answer the export when that is done or,
//! for a full batch, hand it off when the delivery takes longer than the SDK's batch processor
//! can wait.
//!
//! # Which exports wait for their delivery
//!
//! The SDK's batch processors (`BatchSpanProcessor`, `BatchLogProcessor`) hold a queue (2048
//! items by default) and export from it one batch at a time, on one thread: when
//! `max_export_batch_size` (512) items are queued, on their timer, on `force_flush` and on
//! `shutdown`, they export what is queued at that moment in batches of 512, the last one
//! smaller, and skip the export when nothing is queued. They never call the exporter's own
//! `force_flush`: `provider.force_flush()` returns when the processor's last export returned.
//! What arrives while an export runs and the queue is full is dropped. So the size of the batch
//! tells the exporter what is behind it ([`Batch`], [`waits`]):
//!
//! - **A full batch** (as large as the largest the exporter has seen, at least
//!   [`SDK_BATCH_SIZE`]) may have more queued behind it, and a slow endpoint must not stall the
//!   queue: after [`HANDOFF`] the export is answered, its items first written to disk "held" by
//!   the delivery, which goes on in the background. While the endpoint is failing, full
//!   batches go to disk at once.
//! - **A smaller batch** ends a drain of the processor's queue (a `force_flush`, a `shutdown`,
//!   the timer): nothing was waiting behind it. It is not handed off, and it is attempted and
//!   retried even while the circuit is open: it is answered once it is delivered (with retries, waiting out
//!   a `Retry-After` that ends in time) or stored after its attempt ran out, **and** every
//!   earlier export of this transmitter (handed off or not) has finished the same way, **and**
//!   what this process stored meanwhile has been sent (or given back after a real attempt), all
//!   by the export's deadline. The waiting is done here, on the worker, not on the caller's
//!   thread. So when `provider.force_flush()` returns, everything exported before it was
//!   accepted, or is on disk after its delivery ran to the deadline: an Azure Functions host
//!   may freeze the process right after.
//!
//!   One bound keeps steady load safe: under load a drain also ends in a smaller batch, and the
//!   application goes on producing while the export waits. So a smaller batch waits at most as
//!   long as the processor's queue would take to fill a quarter at the rate items came in over
//!   the last [`RATE_WINDOW`] before the current drain (the exports of the last
//!   [`MIN_HISTORY`]) ([`Pace::answer`]); then it is handed off as a full batch is. After a
//!   burst nothing came before the drain, and the flush waits for the whole delivery (a burst
//!   of 2000 spans then `force_flush`, through two 429s with `Retry-After: 2`, is delivered
//!   when the flush returns); at 2000 items per second through an outage it waits about a
//!   quarter of a second (half would not do: a full batch's hand-off before it has already let
//!   the queue fill up to half). A process that starts under such load during an outage has no
//!   rate yet: for its first second a smaller batch may wait to its deadline.
//! - **A metric export** ([`Batch::Reading`]) has no queue behind it (the `PeriodicReader`
//!   exports on its timer or when flushed): it waits the same way.
//!
//! What the exports alone cannot cover: a `force_flush` that finds the processor's queue empty
//! right after a full batch was handed off makes no export at all, so nothing waits; the
//! handed-off items are then on disk (held by their delivery, sent by this process or the
//! next). The exporter's [`FlushProcessor`](crate::FlushProcessor), registered after the batch
//! processor (the one-call setup does), covers it: its `force_flush` waits for every export
//! and then sends what they stored ([`FlushHandle::flush_delivered`](super::FlushHandle)).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::Either;
use tokio::sync::{mpsc, watch};

use super::attempt::{race, Shared};
use super::drain;
use super::gate::lock;
use super::queue::Job;
use super::replay::LEASE_MARGIN;
use super::storage::Files;
use super::worker::FinishedGuard;
use crate::error::TransmitError;

/// The batch size of the SDK's batch processors by default (`max_export_batch_size`): a batch
/// at least this large counts as full even before the exporter has seen a larger one.
pub(crate) const SDK_BATCH_SIZE: usize = 512;

/// What the SDK handed to one export, as far as delivery cares (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Batch {
    /// A batch of this many spans or log records from a batch processor.
    Of(usize),
    /// The metrics of one collection: no queue behind it.
    Reading,
}

/// The SDK's batch processors' queue by default (`max_queue_size`).
const SDK_QUEUE_SIZE: usize = 2048;

/// The items exported over this much time before an export tell how fast the application
/// produces them (twice the batch processors' default 5 s timer).
const RATE_WINDOW: Duration = Duration::from_secs(10);

/// The exports of the last this much time are taken as the current drain of the SDK's queue,
/// not as a rate: a burst of up to 2048 items (the queue) leaves in four full batches, of which
/// only the first may wait its [`HANDOFF`] (the endpoint then counts as failing, and the rest
/// go to disk at once). Twice the hand-off.
const MIN_HISTORY: Duration = Duration::from_secs(1);

/// How an export is answered: when it is handed off at the latest, and whether it waits for the
/// exports before it (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Answer {
    /// With storage, the export is answered (its items held on disk) at the latest this long
    /// after it was queued, whatever its delivery is doing.
    pub(super) handoff: Duration,
    /// Not a full batch: it is not stored at once while the endpoint is failing, and it is
    /// answered only once the exports before it and what this process stored are settled too
    /// (within `handoff`).
    pub(super) waits: bool,
}

/// What the exports so far say about the next one: the largest batch and the recent ones.
#[derive(Debug, Default)]
pub(super) struct Pace {
    largest: AtomicUsize,
    recent: Mutex<History>,
}

/// Exports are counted in buckets of this much time, so that the [`History`] holds at most
/// [`RATE_WINDOW`] / `BUCKET` of them at any export rate (a thousand, 24 KiB).
const BUCKET: Duration = Duration::from_millis(10);

/// The items exported over the last [`RATE_WINDOW`], in buckets of [`BUCKET`], oldest first,
/// with the sum over those before the current drain kept as they pass [`MIN_HISTORY`]: reading
/// the rate costs the same whatever the number of exports. (Summing every export of the window
/// at each export is quadratic: with 4 items per export, `perf` put nearly half of the
/// exporting thread's CPU there, in `benches/pipeline.rs` with `PIPELINE_BATCH=4`.)
#[derive(Debug, Default)]
struct History {
    /// (when the bucket began, items exported in it).
    buckets: VecDeque<(Instant, usize)>,
    /// How many of the first buckets began more than [`MIN_HISTORY`] ago, and their items.
    before: usize,
    before_items: usize,
}

impl History {
    /// When the first of the exports over the window before the current drain (those more than
    /// [`MIN_HISTORY`] before `now`) was made, and how many items they had; then counts this
    /// export of `len` items.
    fn read_and_count(&mut self, now: Instant, len: usize) -> (Option<Instant>, usize) {
        if let Some(cutoff) = now.checked_sub(MIN_HISTORY) {
            while let Some(&(at, n)) = self.buckets.get(self.before) {
                if at >= cutoff {
                    break;
                }
                self.before += 1;
                self.before_items = self.before_items.saturating_add(n);
            }
        }
        while let Some(&(at, n)) = self.buckets.front() {
            if now.saturating_duration_since(at) <= RATE_WINDOW {
                break;
            }
            self.buckets.pop_front();
            // Older than the window, so older than the drain too: counted in `before`.
            if self.before > 0 {
                self.before -= 1;
                self.before_items = self.before_items.saturating_sub(n);
            }
        }
        let first = self
            .buckets
            .front()
            .filter(|_| self.before > 0)
            .map(|&(at, _)| at);
        let read = (first, self.before_items);
        // The last bucket takes it if it is recent and not yet in `before`.
        let open = self.before < self.buckets.len();
        match self.buckets.back_mut() {
            Some((at, n)) if open && now.saturating_duration_since(*at) < BUCKET => {
                *n = n.saturating_add(len);
            }
            _ => self.buckets.push_back((now, len)),
        }
        read
    }
}

impl Pace {
    /// How an export of `batch` queued at `now`, with a deadline `timeout` away, is answered:
    /// a full batch after [`HANDOFF`]; a metric export at its deadline; a smaller batch at its
    /// deadline too, unless the application produced items so fast before the current drain
    /// (over [`RATE_WINDOW`], leaving out the last [`MIN_HISTORY`]) that the SDK's queue,
    /// empty behind this batch, would be a quarter full before then: it is answered by then.
    /// Waiting longer would make the processor drop what the application keeps producing, as
    /// under steady load through an outage; after a burst (a short-lived process, a Functions
    /// invocation) nothing came before it, and the flush waits for the whole delivery.
    pub(super) fn answer(&self, batch: Batch, now: Instant, timeout: Duration) -> Answer {
        let Batch::Of(len) = batch else {
            return Answer {
                handoff: timeout,
                waits: true,
            };
        };
        let full = self
            .largest
            .fetch_max(len, Ordering::AcqRel)
            .max(SDK_BATCH_SIZE);
        // The rate is read from the exports before the current drain of the queue: those more
        // than `MIN_HISTORY` ago. The drain itself (a burst, or what a flush finds) says
        // nothing about what keeps coming.
        let (first, before) = lock(&self.recent).read_and_count(now, len);
        if len >= full {
            return Answer {
                handoff: HANDOFF,
                waits: false,
            };
        }
        // A quarter of the queue at that rate; without exports before the drain (a burst, a
        // process that just started), no rate to go by: the export waits to its deadline.
        let fills_quarter = match first {
            Some(first) if before > 0 => now
                .saturating_duration_since(first)
                .mul_f64(SDK_QUEUE_SIZE as f64 / 4.0 / before as f64),
            _ => timeout,
        };
        Answer {
            handoff: fills_quarter.min(timeout),
            waits: true,
        }
    }
}

/// How long an export of a full batch waits for its delivery when offline storage is on. Past
/// it, the export returns `Ok` (the items are on disk, and the worker still delivers them) and
/// the endpoint counts as failing until it answers. The SDK's batch processors export one batch
/// at a time and drop what arrives while their queue (2048 by default) is full, so an export
/// must not hold them: at 2000 items per second, half a second fills half the queue.
pub(super) const HANDOFF: Duration = Duration::from_millis(500);

/// Runs one export's job, answered as its [`Answer`] says: a full batch is stored at once when
/// the endpoint is failing; otherwise delivered, and answered when done (and, if it
/// [`waits`](Answer::waits), when the exports before it and what this process stored are
/// settled) or, with storage, when its hand-off time has passed, whichever comes first.
pub(super) async fn job_task(
    shared: Arc<Shared>,
    job: Job,
    abort: watch::Receiver<bool>,
    settled: watch::Receiver<u64>,
    finished: mpsc::UnboundedSender<u64>,
) {
    let Job {
        seq,
        items,
        bodies,
        deadline,
        answer,
        reply,
    } = job;
    let _guard = FinishedGuard { seq, finished };
    // Queued before the endpoint was found failing: store it now, the replay task probes. If
    // the write fails, try to deliver after all.
    if !answer.waits && shared.gate.is_failing() && shared.gate.keep(&items, 0..items.len()).is_ok()
    {
        let _ = reply.send(Ok(()));
        return;
    }
    let delivery = shared.deliver_export(&items, bodies, deadline, abort.clone(), answer.waits);
    // The job starts when the worker takes it; the hand-off time counts from the export.
    let handoff_at = deadline
        .checked_sub(shared.timeout)
        .map_or(deadline, |queued| queued + answer.handoff)
        .min(deadline);
    if shared.gate.storage.is_none() {
        // Without storage, the export waits for the outcome: nothing else could report it.
        let delivery = delivery.await;
        let delivered = delivery.pending.is_empty();
        let result = shared.finish_export(&items, delivery, None);
        if answer.waits {
            let until = (deadline, deadline);
            settle_earlier(&shared, seq, until, delivered, abort, settled).await;
        }
        let _ = reply.send(result);
        return;
    }
    let delivery = std::pin::pin!(delivery);
    let handoff = std::pin::pin!(tokio::time::sleep_until(handoff_at.into()));
    match futures_util::future::select(delivery, handoff).await {
        Either::Left((delivery, _)) => {
            let delivered = delivery.pending.is_empty();
            let result = shared.finish_export(&items, delivery, None);
            if answer.waits {
                let until = (handoff_at, deadline);
                settle_earlier(&shared, seq, until, delivered, abort, settled).await;
            }
            let _ = reply.send(result);
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

/// For an export that [`waits`](Answer::waits), once its own delivery is done: waits for the
/// exports before it (`settled` is the lowest sequence number not finished), then, if its own
/// items got through (`delivered`: the endpoint works), for what this process stored to be
/// sent, until `until`. The stored files are sent by a task of their
/// own until the export's `deadline`: a request is never cut because the export is answered
/// (the service may have taken it, and it would be sent twice).
async fn settle_earlier(
    shared: &Arc<Shared>,
    seq: u64,
    (until, deadline): (Instant, Instant),
    delivered: bool,
    mut abort: watch::Receiver<bool>,
    mut settled: watch::Receiver<u64>,
) {
    let earlier = settled.wait_for(|&lowest| lowest >= seq);
    if race(earlier, until, &mut abort).await.is_err() {
        return;
    }
    let on_disk = delivered && shared.gate.on_disk.load(Ordering::Acquire);
    if let Some(storage) = shared.gate.storage.as_ref().filter(|_| on_disk) {
        // Sent here, not left to the replay task, which backs off after a failure. Its
        // `exports_done` is true: no export is waited for here.
        let (_, done) = watch::channel(true);
        let sending = tokio::spawn(drain::stored(
            Arc::clone(shared),
            Arc::clone(storage),
            Files::OwnOnly,
            deadline,
            abort.clone(),
            done,
        ));
        let _ = race(sending, until, &mut abort).await;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// What [`History::read_and_count`] reads, summed over every export (the first version).
    fn naive(exports: &[(Instant, usize)], now: Instant) -> (Option<Instant>, usize) {
        let cutoff = now.checked_sub(MIN_HISTORY);
        exports
            .iter()
            .filter(|&&(at, _)| now.saturating_duration_since(at) <= RATE_WINDOW)
            .take_while(|&&(at, _)| cutoff.is_some_and(|cutoff| at < cutoff))
            .fold((None, 0), |(first, sum), &(at, n)| {
                (first.or(Some(at)), sum + n)
            })
    }

    proptest! {
        /// Exports at least a bucket apart: the same reading as summing every export.
        #[test]
        fn reads_what_summing_every_export_reads(
            exports in proptest::collection::vec((10u64..3_000, 1usize..600), 1..200)
        ) {
            let t0 = Instant::now();
            let mut history = History::default();
            let mut seen = Vec::new();
            let mut at = t0;
            for (gap, len) in exports {
                at += Duration::from_millis(gap);
                prop_assert_eq!(history.read_and_count(at, len), naive(&seen, at));
                seen.push((at, len));
            }
        }
    }

    #[test]
    fn holds_a_bucket_per_ten_milliseconds_at_any_rate() {
        let t0 = Instant::now();
        let mut history = History::default();
        // 100,000 exports a second for 20 s.
        for i in 0..2_000_000u64 {
            let _ = history.read_and_count(t0 + Duration::from_micros(10 * i), 1);
        }
        let most = (RATE_WINDOW.as_millis() / BUCKET.as_millis()) as usize + 1;
        assert!(history.buckets.len() <= most, "{}", history.buckets.len());
        // The rate over the window before the last second: 100 items a millisecond.
        let now = t0 + Duration::from_secs(20);
        let (first, items) = history.read_and_count(now, 1);
        let span = first.map(|f| now.saturating_duration_since(f) - MIN_HISTORY);
        let rate = span.map(|s| items as f64 / s.as_secs_f64());
        assert!(
            rate.is_some_and(|r| (99_000.0..101_000.0).contains(&r)),
            "{rate:?}"
        );
    }
}
