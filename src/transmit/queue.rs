//! The callers' side of delivery: the [`Transmitter`] handle, its bounded queue of jobs to the
//! worker thread, and the flush and shutdown requests it sends there.
//!
//! [`Transmitter::send`] never blocks: it hands the encoded items to the worker over a bounded
//! queue and returns a future that waits for the answer on a runtime-agnostic oneshot channel,
//! so it can be awaited under a plain `block_on` (the SDK's default batch processors) as well as
//! inside Tokio (the async-runtime processors).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures_channel::oneshot;
use reqwest::Url;
use tokio::sync::mpsc;

use super::attempt::Shared;
use super::encode::{Body, EncodedItems, Gzip};
use super::gate::{instant_after, lock, Gate};
use super::gzip::Level;
use super::handoff::{Answer, Batch, Pace};
use super::retry::RetryPolicy;
use super::storage::Storage;
use super::worker::run;
use crate::error::TransmitError;

/// Exports waiting for the worker; when full, [`Transmitter::send`] fails instead of blocking.
pub(super) const QUEUE_CAPACITY: usize = 16;

/// At most this much of a shutdown's timeout is kept to wind down after in-flight work is
/// aborted, so that the shutdown returns within its timeout.
pub(super) const MAX_SHUTDOWN_MARGIN: Duration = Duration::from_millis(100);

/// With storage, a shutdown drains until its timeout less this margin (or a fifth of the
/// timeout, if less), kept to write aborted work to disk and end the thread. The SDK's batch
/// processors give the exporter's `shutdown` 5 s but count their own last export (at most the
/// 500 ms hand-off) into the same 5 s: 750 ms keeps the sum below 5 s, and leaves the drain
/// 4.25 s, enough to wait out a `Retry-After: 2` twice after the hand-off of a `force_flush`.
pub(super) const MAX_STORING_MARGIN: Duration = Duration::from_millis(750);

/// How long dropping a transmitter that was not shut down waits for its thread to end.
pub(super) const DROP_JOIN_WAIT: Duration = Duration::from_secs(1);

/// What a [`Transmitter`] needs.
#[derive(Clone, Debug)]
pub(crate) struct TransmitConfig {
    /// `{IngestionEndpoint}/v2.1/track`.
    pub(crate) track_url: String,
    /// Deadline of one export, counted from [`Transmitter::send`]; keep it below the SDK's
    /// export timeout.
    pub(crate) timeout: Duration,
    /// How failed deliveries are retried within the deadline.
    pub(crate) retry: RetryPolicy,
    /// A client of the user's (proxy, TLS settings). It should not follow redirects itself
    /// (`reqwest::redirect::Policy::none()`), or the host check of redirects is bypassed.
    /// Defaults to a rustls client that does not follow redirects.
    pub(crate) client: Option<reqwest::Client>,
    /// Where what could not be delivered is kept and sent again later. Without it, such an
    /// export fails with [`TransmitError::Undelivered`] and its items are lost.
    pub(crate) storage: Option<Arc<Storage>>,
    /// The gzip level of request bodies (see [`GZIP_LEVEL`](super::encode::GZIP_LEVEL)).
    pub(crate) gzip_level: Level,
    /// Entra ID: every request carries a bearer token of this cache.
    pub(crate) auth: Option<crate::auth::TokenCache>,
}

/// Delivers encoded telemetry to the Track API from a background worker thread.
pub(crate) struct Transmitter {
    pub(super) jobs: mpsc::Sender<Job>,
    /// The sequence number of the next job; locked while a job is queued, so numbers follow
    /// queue order without holes.
    pub(super) next_seq: Arc<Mutex<u64>>,
    pub(super) control: mpsc::UnboundedSender<Control>,
    pub(super) worker: Mutex<Option<Worker>>,
    pub(super) stopped: Arc<AtomicBool>,
    pub(super) timeout: Duration,
    pub(super) gate: Arc<Gate>,
    /// The exports so far, which tell how the next one is answered.
    pub(super) pace: Pace,
    /// The worker's state: its compressor, which an export uses first on the exporting
    /// thread (see [`Job::bodies`]).
    pub(super) shared: Arc<Shared>,
}

impl std::fmt::Debug for Transmitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transmitter")
            .field("timeout", &self.timeout)
            .field("stopped", &self.stopped.load(Ordering::Relaxed))
            .field("storage", &self.gate.storage)
            .field("failing", &self.gate.is_failing())
            .finish_non_exhaustive()
    }
}

/// Where an export stands right after [`Transmitter::send`].
pub(super) enum Queued {
    /// Finished without the worker: empty, stored, refused.
    Done(Result<(), TransmitError>),
    /// Handed to the worker, which answers here.
    Waiting(oneshot::Receiver<Result<(), TransmitError>>),
}

pub(super) struct Worker {
    pub(super) thread: JoinHandle<()>,
    /// Disconnected when the worker thread has finished (runtime and client dropped).
    pub(super) done: std_mpsc::Receiver<()>,
}

/// One export handed to the worker.
pub(super) struct Job {
    pub(super) seq: u64,
    pub(super) items: EncodedItems,
    /// The request bodies of all the items, compressed on the exporting thread, for the first
    /// attempt (later ones compress what is left on the worker). Compressing where the JSON
    /// was just written reads it from this core's cache; on the worker thread, on another
    /// core, each export's few hundred KiB of JSON were read across cores, and written back
    /// across cores by the next encode into the reused buffer: a log export took about 25%
    /// more CPU so (`benches/pipeline.rs`, compared with the whole process pinned to one
    /// core, where the two agree).
    pub(super) bodies: Option<Vec<Body>>,
    pub(super) deadline: Instant,
    /// When it is answered (see [`super::handoff`]).
    pub(super) answer: Answer,
    pub(super) reply: oneshot::Sender<Result<(), TransmitError>>,
}

pub(super) enum Control {
    /// Answer once every job with a sequence number below `upto` is finished; with
    /// `stored_until`, and the endpoint then answering, once this run's stored files are sent
    /// too (or that time has come).
    Flush {
        upto: u64,
        stored_until: Option<Instant>,
        reply: std_mpsc::SyncSender<()>,
    },
    /// Accept no more jobs, finish the queued and running ones, abort what is left at
    /// `abort_at`, then end the thread. With `drain` (a shutdown, not a drop), also send what
    /// is stored until `abort_at` and log what became of it (see [`super::drain`]).
    Stop { abort_at: Instant, drain: bool },
}

/// Flushes a [`Transmitter`] from elsewhere (see [`Transmitter::flush_handle`]).
#[derive(Clone, Debug)]
pub(crate) struct FlushHandle {
    control: mpsc::UnboundedSender<Control>,
    next_seq: Arc<Mutex<u64>>,
    stopped: Arc<AtomicBool>,
    timeout: Duration,
}

impl FlushHandle {
    /// Waits until every export handed over so far is finished (delivered, or stored after
    /// its attempt), at most `timeout`. With `stored_until`, then also sends the files this
    /// process stored (those a full batch wrote at once while the endpoint was failing),
    /// until that time, if the endpoint answers again by then.
    ///
    /// # Errors
    ///
    /// [`TransmitError::Timeout`] if that is not done in time,
    /// [`TransmitError::AlreadyShutdown`] after a shutdown.
    pub(crate) fn flush(
        &self,
        timeout: Duration,
        stored_until: Option<Instant>,
    ) -> Result<(), TransmitError> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(TransmitError::AlreadyShutdown);
        }
        let upto = *lock(&self.next_seq);
        let (reply, answer) = std_mpsc::sync_channel(1);
        self.control
            .send(Control::Flush {
                upto,
                stored_until,
                reply,
            })
            .map_err(|_| TransmitError::WorkerStopped)?;
        match answer.recv_timeout(timeout) {
            Ok(()) => Ok(()),
            Err(std_mpsc::RecvTimeoutError::Timeout) => Err(TransmitError::Timeout(timeout)),
            Err(std_mpsc::RecvTimeoutError::Disconnected) => Err(TransmitError::WorkerStopped),
        }
    }

    /// What "flushed means delivered" asks of this transmitter when the SDK's queue was
    /// already empty: the exports so far finished, each within its own deadline, then what
    /// they stored sent within one export timeout. Bounded by twice the export timeout.
    ///
    /// # Errors
    ///
    /// As [`flush`](Self::flush).
    pub(crate) fn flush_delivered(&self) -> Result<(), TransmitError> {
        let stored_until = instant_after(Instant::now(), self.timeout);
        self.flush(self.timeout.saturating_mul(2), Some(stored_until))
    }
}

impl Transmitter {
    /// The gzip request bodies `items` would be sent in, without sending them (for
    /// `request_bodies` of the exporters, behind the `testing` feature).
    #[cfg(feature = "testing")]
    pub(crate) fn request_bodies(&self, items: &EncodedItems) -> Vec<Vec<u8>> {
        // The worker's own compressor, as an export uses it.
        self.shared
            .bodies(items, 0..items.len())
            .map(|bodies| bodies.into_iter().map(|b| b.gzip).collect())
            .unwrap_or_default()
    }

    /// A handle on what became of the items sent so far.
    pub(crate) fn delivery_report(&self) -> super::DeliveryReport {
        super::DeliveryReport::new(Arc::clone(&self.gate.tally))
    }

    /// Whether [`shutdown`](Self::shutdown) was called: no more sends are accepted.
    pub(crate) fn is_shutdown(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Validates the URL, builds the HTTP client (unless given) and starts the worker thread.
    ///
    /// # Errors
    ///
    /// [`TransmitError::InvalidUrl`] if `track_url` is not an absolute http(s) URL with a host,
    /// [`TransmitError::Client`] if the HTTP client cannot be built, [`TransmitError::Worker`]
    /// if the thread or its runtime cannot be started.
    pub(crate) fn new(cfg: TransmitConfig) -> Result<Self, TransmitError> {
        let url = parse_track_url(&cfg.track_url)?;
        let client = match cfg.client {
            Some(c) => c,
            None => reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(TransmitError::Client)?,
        };
        let gate = Arc::new(Gate::new(cfg.storage));
        let shared = Arc::new(Shared {
            client,
            endpoint: Mutex::new(url),
            retry: cfg.retry,
            gzip: Mutex::new(Gzip::new(cfg.gzip_level).map_err(TransmitError::Gzip)?),
            gate: Arc::clone(&gate),
            timeout: cfg.timeout,
            auth: cfg.auth,
        });
        let (jobs_tx, jobs_rx) = mpsc::channel(QUEUE_CAPACITY);
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = std_mpsc::sync_channel::<std::io::Result<()>>(1);
        let (done_tx, done_rx) = std_mpsc::sync_channel::<()>(1);
        let for_exports = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("azure-monitor-transmit".into())
            .spawn(move || {
                // The runtime is built and dropped on this thread only, never in the caller's
                // (possibly async) context.
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                let runtime = match runtime {
                    Ok(rt) => {
                        let _ = ready_tx.send(Ok(()));
                        rt
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                runtime.block_on(run(shared, jobs_rx, control_rx));
                drop(runtime);
                drop(done_tx);
            })
            .map_err(TransmitError::Worker)?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(TransmitError::Worker(e));
            }
            Err(_) => {
                let _ = thread.join();
                return Err(TransmitError::Worker(std::io::Error::other(
                    "the worker thread ended while starting",
                )));
            }
        }
        Ok(Transmitter {
            jobs: jobs_tx,
            next_seq: Arc::new(Mutex::new(0)),
            control: control_tx,
            worker: Mutex::new(Some(Worker {
                thread,
                done: done_rx,
            })),
            stopped: Arc::new(AtomicBool::new(false)),
            timeout: cfg.timeout,
            gate,
            pace: Pace::default(),
            shared: for_exports,
        })
    }

    /// Hands `items` (the export of `batch`) to the worker and returns a future of the
    /// delivery's result. The job is queued now, not when the future is first polled; dropping
    /// the future does not cancel the delivery. Never blocks on the network, and needs no async
    /// runtime to be awaited. A full batch resolves after at most the hand-off time with storage;
    /// any other export when it and the exports before it are delivered or stored (see
    /// [`super::handoff`]).
    ///
    /// With storage, the items of a full batch are stored right here instead, on the caller's
    /// thread, when the endpoint is known to be failing; those of any export when the queue is
    /// full. The future is then ready at once.
    ///
    /// # Errors
    ///
    /// The future resolves to [`TransmitError::QueueFull`] when too many exports are waiting
    /// and the items could not be stored, [`TransmitError::AlreadyShutdown`] after a shutdown,
    /// [`TransmitError::Undelivered`] when retryable items could neither be delivered by the
    /// deadline (or before the shutdown) nor stored, [`TransmitError::Rejected`] when the
    /// service refused items for good, and [`TransmitError::WorkerStopped`] if the worker ended
    /// without answering.
    pub(crate) fn send(
        &self,
        items: EncodedItems,
        batch: Batch,
    ) -> impl Future<Output = Result<(), TransmitError>> + Send + 'static {
        let queued = self.enqueue(items, batch);
        async move {
            match queued {
                Queued::Waiting(reply) => reply.await.unwrap_or(Err(TransmitError::WorkerStopped)),
                Queued::Done(result) => result,
            }
        }
    }

    pub(super) fn enqueue(&self, items: EncodedItems, batch: Batch) -> Queued {
        if items.is_empty() {
            return Queued::Done(Ok(()));
        }
        if self.stopped.load(Ordering::Acquire) {
            return Queued::Done(Err(TransmitError::AlreadyShutdown));
        }
        let count = items.len();
        let now = Instant::now();
        let how = self.pace.answer(batch, now, self.timeout);
        // The endpoint is failing: a full batch goes to disk at once (a smaller one makes an
        // attempt of its own, see `handoff`); the worker probes and sends it later. If the
        // write fails, try to deliver after all.
        if !how.waits
            && self.gate.store_first(self.timeout)
            && self.gate.keep(&items, 0..count).is_ok()
        {
            return Queued::Done(Ok(()));
        }
        // Compressed here, on the exporting thread, while the JSON just written is in this
        // core's cache (see `Job::bodies`). If that fails, the worker tries again.
        let bodies = self.shared.bodies(&items, 0..count).ok();
        let (reply, answer) = oneshot::channel();
        let deadline = instant_after(now, self.timeout);
        let mut seq = lock(&self.next_seq);
        let job = Job {
            seq: *seq,
            items,
            bodies,
            deadline,
            answer: how,
            reply,
        };
        match self.jobs.try_send(job) {
            Ok(()) => {
                *seq += 1;
                Queued::Waiting(answer)
            }
            Err(mpsc::error::TrySendError::Full(job)) => {
                drop(seq);
                Queued::Done(self.overflow(&job.items))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                Queued::Done(Err(TransmitError::AlreadyShutdown))
            }
        }
    }

    /// An export that does not fit in the queue: stored, or dropped and counted.
    pub(super) fn overflow(&self, items: &EncodedItems) -> Result<(), TransmitError> {
        let count = items.len();
        match self.gate.keep(items, 0..count) {
            Ok(_) => Ok(()),
            Err(why) => {
                let total = self.gate.tally.dropped(count);
                opentelemetry::otel_warn!(
                    name: "AzureMonitor.Transmit.QueueFull",
                    message = "too many exports are waiting for delivery and the telemetry could not be stored; it was dropped",
                    items = count,
                    dropped_total = total,
                    reason = why.as_str()
                );
                Err(TransmitError::QueueFull { items: count })
            }
        }
    }

    /// Waits until every export handed over by [`send`](Self::send) before this call is
    /// finished (delivered, rejected or given up), at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`TransmitError::Timeout`] if they are not finished in time,
    /// [`TransmitError::AlreadyShutdown`] after a shutdown.
    pub(crate) fn force_flush(&self, timeout: Duration) -> Result<(), TransmitError> {
        self.flush_handle().flush(timeout, None)
    }

    /// A handle that flushes this transmitter from elsewhere (a span or log processor), also
    /// after the transmitter itself has moved into the SDK's pipeline.
    pub(crate) fn flush_handle(&self) -> FlushHandle {
        FlushHandle {
            control: self.control.clone(),
            next_seq: Arc::clone(&self.next_seq),
            stopped: Arc::clone(&self.stopped),
            timeout: self.timeout,
        }
    }

    /// Stops accepting exports and drains (see [`super::drain`]) until `timeout` less a margin
    /// to wind down (with storage, a fifth of it, at most [`MAX_STORING_MARGIN`]; without,
    /// a fifth, at most [`MAX_SHUTDOWN_MARGIN`]): queued, in-flight and handed-off exports are
    /// delivered with retries, then what is on disk. At the deadline, what is still running is
    /// aborted (with storage, those items are stored; without, those exports fail with
    /// [`TransmitError::Undelivered`]); then the worker stops and its thread is joined.
    ///
    /// # Errors
    ///
    /// [`TransmitError::AlreadyShutdown`] on a second call, [`TransmitError::Timeout`] if the
    /// worker did not end in time (the thread is then left to end on its own),
    /// [`TransmitError::WorkerStopped`] if the worker thread had panicked.
    pub(crate) fn shutdown(&self, timeout: Duration) -> Result<(), TransmitError> {
        let Some(worker) = lock(&self.worker).take() else {
            return Err(TransmitError::AlreadyShutdown);
        };
        self.stopped.store(true, Ordering::Release);
        let now = Instant::now();
        let margin = if self.gate.storage.is_some() {
            (timeout / 5).min(MAX_STORING_MARGIN)
        } else {
            (timeout / 5).min(MAX_SHUTDOWN_MARGIN)
        };
        let abort_at = instant_after(now, timeout.saturating_sub(margin));
        // If the worker is already gone, `done` below says so at once.
        let _ = self.control.send(Control::Stop {
            abort_at,
            drain: true,
        });
        match worker.done.recv_timeout(timeout) {
            Err(std_mpsc::RecvTimeoutError::Timeout) => Err(TransmitError::Timeout(timeout)),
            Ok(()) | Err(std_mpsc::RecvTimeoutError::Disconnected) => worker
                .thread
                .join()
                .map_err(|_| TransmitError::WorkerStopped),
        }
    }
}

impl Drop for Transmitter {
    fn drop(&mut self) {
        let Some(worker) = lock(&self.worker).take() else {
            return;
        };
        self.stopped.store(true, Ordering::Release);
        let _ = self.control.send(Control::Stop {
            abort_at: Instant::now(),
            drain: false,
        });
        // Aborted work ends at once; the wait only bounds a misbehaving worker.
        if let Err(std_mpsc::RecvTimeoutError::Disconnected) =
            worker.done.recv_timeout(DROP_JOIN_WAIT)
        {
            let _ = worker.thread.join();
        }
    }
}

pub(super) fn parse_track_url(s: &str) -> Result<Url, TransmitError> {
    let invalid = |reason: &str| TransmitError::InvalidUrl {
        url: s.to_owned(),
        reason: reason.to_owned(),
    };
    let url = Url::parse(s).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be https or http"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("the URL has no host"));
    }
    Ok(url)
}
