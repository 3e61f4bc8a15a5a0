//! The transmitter: one background worker thread per transmitter, with a Tokio current-thread
//! runtime of its own that owns the HTTP client, the retry timers and the redirect memory.
//!
//! [`Transmitter::send`] never blocks: it hands the encoded items to the worker over a bounded
//! queue and returns a future that waits for the answer on a runtime-agnostic oneshot channel,
//! so it can be awaited under a plain `block_on` (the SDK's default batch processors) as well as
//! inside Tokio (the async-runtime processors).
//!
//! With offline [`Storage`], nothing retryable is lost:
//!
//! - what a delivery could not get through by its deadline for a reason that may pass (network
//!   error, timeout, retryable status, retryable items of a 206), or before a shutdown, is
//!   stored, and the export succeeds;
//! - after such a failure the endpoint counts as failing (the "circuit" is open): new exports
//!   (and exports that did not fit in the queue) are stored at once on the caller's thread, and
//!   the worker's replay task probes the endpoint with one stored file at a time, backing off
//!   between probes;
//! - once the service answers, the circuit closes and the replay task sends what is stored,
//!   oldest first, one file after the other; it also does so after every successful delivery
//!   and when the worker starts (data of an earlier process);
//! - a `Retry-After` of the service holds back every request, replays included, until it
//!   passes.

use std::collections::BTreeSet;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex, MutexGuard, PoisonError};
use std::task::Poll;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use futures_channel::oneshot;
use futures_util::future::Either;
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, LOCATION, RETRY_AFTER,
};
use reqwest::Url;
use tokio::sync::{mpsc, watch, Notify};

use super::encode::{Body, EncodedItems, Gzip};
use super::outcome::{auth_failure, classify, Outcome};
use super::retry::RetryPolicy;
use super::storage::Storage;
use crate::auth::TokenCache;
use crate::error::TransmitError;

/// How long an export waits for its delivery when offline storage is on. Past it, the export
/// returns `Ok` (the worker owns the items and delivers or stores them) and the endpoint counts
/// as failing until it answers. The SDK's batch processors export one batch at a time and drop
/// what arrives while their queue (2048 by default) is full, so an export must not hold them:
/// at 2000 items per second, half a second fills half the queue.
const HANDOFF: Duration = Duration::from_millis(500);
/// Exports waiting for the worker; when full, [`Transmitter::send`] fails instead of blocking.
const QUEUE_CAPACITY: usize = 16;
/// Exports the worker delivers at the same time; more wait in the queue.
const MAX_CONCURRENT_JOBS: usize = 8;
/// Most consecutive redirects followed for one request (as the JS and Java exporters).
const MAX_REDIRECTS: u32 = 10;
/// Most bytes of a response body read (a `TrackResponse` is small).
const MAX_RESPONSE_BYTES: usize = 256 * 1024;
/// At most this much of a shutdown's timeout is kept to wind down after in-flight work is
/// aborted, so that the shutdown returns within its timeout.
const MAX_SHUTDOWN_MARGIN: Duration = Duration::from_millis(100);
/// With storage, aborted work is written to disk after the abort: up to half of a shutdown's
/// timeout, at most this much, is kept for it.
const MAX_STORING_MARGIN: Duration = Duration::from_secs(1);
/// How long dropping a transmitter that was not shut down waits for its thread to end.
const DROP_JOIN_WAIT: Duration = Duration::from_secs(1);
/// While nothing is stored, the replay task still looks into the storage directory this often,
/// for files that other processes left there.
const IDLE_RESCAN: Duration = Duration::from_secs(60);
/// A stored file stays taken this much longer than a delivery may last, so that no other process
/// sends it meanwhile. A process that dies while sending a file delays that file by this much
/// (plus the export timeout): the next process takes it when the lease has run out.
const LEASE_MARGIN: Duration = Duration::from_secs(10);
/// The shortest wait between two probes of a failing endpoint, whatever the retry policy says.
const MIN_PROBE_DELAY: Duration = Duration::from_millis(10);
/// The longest pause a `Retry-After` can impose (as the JS exporter): a garbage value must not
/// silence the exporter for the rest of the process.
const MAX_PAUSE: Duration = Duration::from_secs(24 * 60 * 60);
/// A redirect may move between two hosts that both end with one of these suffixes
/// (`_ALLOWED_REDIRECT_DOMAIN_SUFFIXES` of the Python exporter, MAPPING.md §8.4).
const ALLOWED_REDIRECT_SUFFIXES: [&str; 8] = [
    ".livediagnostics.monitor.azure.com",
    ".monitor.azure.com",
    ".services.visualstudio.com",
    ".applicationinsights.azure.com",
    ".monitor.azure.us",
    ".applicationinsights.azure.us",
    ".monitor.azure.cn",
    ".applicationinsights.azure.cn",
];

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
    pub(crate) gzip_level: u32,
    /// Entra ID: every request carries a bearer token of this cache.
    pub(crate) auth: Option<TokenCache>,
}

/// Delivers encoded telemetry to the Track API from a background worker thread.
pub(crate) struct Transmitter {
    jobs: mpsc::Sender<Job>,
    /// The sequence number of the next job; locked while a job is queued, so numbers follow
    /// queue order without holes.
    next_seq: Mutex<u64>,
    control: mpsc::UnboundedSender<Control>,
    worker: Mutex<Option<Worker>>,
    stopped: AtomicBool,
    timeout: Duration,
    gate: Arc<Gate>,
    /// The worker's state, for [`request_bodies`](Self::request_bodies).
    #[cfg(feature = "testing")]
    shared: Arc<Shared>,
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
enum Queued {
    /// Finished without the worker: empty, stored, refused.
    Done(Result<(), TransmitError>),
    /// Handed to the worker, which answers here.
    Waiting(oneshot::Receiver<Result<(), TransmitError>>),
}

struct Worker {
    thread: JoinHandle<()>,
    /// Disconnected when the worker thread has finished (runtime and client dropped).
    done: std_mpsc::Receiver<()>,
}

/// One export handed to the worker.
struct Job {
    seq: u64,
    items: EncodedItems,
    deadline: Instant,
    reply: oneshot::Sender<Result<(), TransmitError>>,
}

enum Control {
    /// Answer once every job with a sequence number below `upto` is finished.
    Flush {
        upto: u64,
        reply: std_mpsc::SyncSender<()>,
    },
    /// Accept no more jobs, finish the queued and running ones, abort what is left at
    /// `abort_at`, then end the thread.
    Stop { abort_at: Instant },
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `now + d`, saturating far in the future instead of overflowing.
fn instant_after(now: Instant, d: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
    now.checked_add(d)
        .or_else(|| now.checked_add(FAR))
        .unwrap_or(now)
}

/// What the callers' threads and the worker share: the storage, and what is known of the
/// endpoint's health.
struct Gate {
    storage: Option<Arc<Storage>>,
    /// A delivery failed for a reason that may pass and nothing got through since (the circuit is
    /// open): exports are stored at once, and the replay task probes the endpoint. Only ever set
    /// with storage.
    failing: AtomicBool,
    /// Nothing is sent before this: the service's latest `Retry-After`.
    paused_until: Mutex<Option<Instant>>,
    /// Wakes the replay task: a delivery succeeded (send what is stored), something was stored
    /// or the endpoint started failing (send it after a backoff).
    wake: Notify,
    /// Set with a wake-up when something was stored: the replay task waits a backoff first.
    stored: AtomicBool,
    /// Items dropped so far because the queue was full and they could not be stored.
    dropped: AtomicU64,
    /// Deliveries handed off after their export returned and still running: while there are
    /// any, an empty storage does not mean the endpoint recovered.
    handed_off: AtomicUsize,
}

impl Gate {
    fn new(storage: Option<Arc<Storage>>) -> Self {
        Gate {
            storage,
            failing: AtomicBool::new(false),
            paused_until: Mutex::new(None),
            wake: Notify::new(),
            stored: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            handed_off: AtomicUsize::new(0),
        }
    }

    fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Acquire)
    }

    /// Opens the circuit (with storage only: without it, every export tries on its own).
    fn set_failing(&self, reason: &str) {
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
    fn set_healthy(&self) {
        if self.failing.swap(false, Ordering::AcqRel) {
            opentelemetry::otel_debug!(
                name: "AzureMonitor.Transmit.EndpointRecovered",
                message = "the ingestion endpoint answers again; sending stored telemetry"
            );
        }
    }

    /// Holds back every request for `delay` from now (a `Retry-After`), at most [`MAX_PAUSE`].
    fn pause(&self, delay: Duration) {
        let until = instant_after(Instant::now(), delay.min(MAX_PAUSE));
        let mut paused = lock(&self.paused_until);
        if paused.is_none_or(|p| p < until) {
            *paused = Some(until);
        }
    }

    /// How much longer requests are held back, if they are.
    fn paused_for(&self, now: Instant) -> Option<Duration> {
        lock(&self.paused_until)
            .and_then(|until| until.checked_duration_since(now))
            .filter(|d| !d.is_zero())
    }

    /// Whether exports should go to storage at once instead of being attempted: the circuit is
    /// open, or the service asked for a pause longer than an export may last.
    fn store_first(&self, timeout: Duration) -> bool {
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
    fn keep(
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
            gzip: Mutex::new(Gzip::new(cfg.gzip_level)),
            gate: Arc::clone(&gate),
            timeout: cfg.timeout,
            auth: cfg.auth,
        });
        let (jobs_tx, jobs_rx) = mpsc::channel(QUEUE_CAPACITY);
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = std_mpsc::sync_channel::<std::io::Result<()>>(1);
        let (done_tx, done_rx) = std_mpsc::sync_channel::<()>(1);
        #[cfg(feature = "testing")]
        let for_request_bodies = Arc::clone(&shared);
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
            next_seq: Mutex::new(0),
            control: control_tx,
            worker: Mutex::new(Some(Worker {
                thread,
                done: done_rx,
            })),
            stopped: AtomicBool::new(false),
            timeout: cfg.timeout,
            gate,
            #[cfg(feature = "testing")]
            shared: for_request_bodies,
        })
    }

    /// Hands `items` to the worker and returns a future of the delivery's result. The job is
    /// queued now, not when the future is first polled; dropping the future does not cancel
    /// the delivery. Never blocks on the network, and needs no async runtime to be awaited.
    ///
    /// With storage, the items are stored right here instead, on the caller's thread, when the
    /// endpoint is known to be failing or the queue is full; the future is then ready at once.
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
    ) -> impl Future<Output = Result<(), TransmitError>> + Send + 'static {
        let queued = self.enqueue(items);
        async move {
            match queued {
                Queued::Waiting(reply) => reply.await.unwrap_or(Err(TransmitError::WorkerStopped)),
                Queued::Done(result) => result,
            }
        }
    }

    fn enqueue(&self, items: EncodedItems) -> Queued {
        if items.is_empty() {
            return Queued::Done(Ok(()));
        }
        if self.stopped.load(Ordering::Acquire) {
            return Queued::Done(Err(TransmitError::AlreadyShutdown));
        }
        let count = items.len();
        // The endpoint is failing: to disk at once; the worker probes and sends it later. If
        // the write fails, try to deliver after all.
        if self.gate.store_first(self.timeout) && self.gate.keep(&items, 0..count).is_ok() {
            return Queued::Done(Ok(()));
        }
        let (reply, answer) = oneshot::channel();
        let deadline = instant_after(Instant::now(), self.timeout);
        let mut seq = lock(&self.next_seq);
        let job = Job {
            seq: *seq,
            items,
            deadline,
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
    fn overflow(&self, items: &EncodedItems) -> Result<(), TransmitError> {
        let count = items.len();
        match self.gate.keep(items, 0..count) {
            Ok(_) => Ok(()),
            Err(why) => {
                let count64 = u64::try_from(count).unwrap_or(u64::MAX);
                let total = self
                    .gate
                    .dropped
                    .fetch_add(count64, Ordering::Relaxed)
                    .saturating_add(count64);
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
        if self.stopped.load(Ordering::Acquire) {
            return Err(TransmitError::AlreadyShutdown);
        }
        let upto = *lock(&self.next_seq);
        let (reply, answer) = std_mpsc::sync_channel(1);
        self.control
            .send(Control::Flush { upto, reply })
            .map_err(|_| TransmitError::WorkerStopped)?;
        match answer.recv_timeout(timeout) {
            Ok(()) => Ok(()),
            Err(std_mpsc::RecvTimeoutError::Timeout) => Err(TransmitError::Timeout(timeout)),
            Err(std_mpsc::RecvTimeoutError::Disconnected) => Err(TransmitError::WorkerStopped),
        }
    }

    /// Stops accepting exports, lets queued and in-flight ones finish, aborts what is still
    /// running before `timeout` (with storage, at half of it at the latest, and those items are
    /// stored; without, those exports fail with [`TransmitError::Undelivered`]), lets the replay
    /// task give back the file it is sending, stops the worker and joins its thread.
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
            (timeout / 2).min(MAX_STORING_MARGIN)
        } else {
            (timeout / 5).min(MAX_SHUTDOWN_MARGIN)
        };
        let abort_at = instant_after(now, timeout.saturating_sub(margin));
        // If the worker is already gone, `done` below says so at once.
        let _ = self.control.send(Control::Stop { abort_at });
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
        });
        // Aborted work ends at once; the wait only bounds a misbehaving worker.
        if let Err(std_mpsc::RecvTimeoutError::Disconnected) =
            worker.done.recv_timeout(DROP_JOIN_WAIT)
        {
            let _ = worker.thread.join();
        }
    }
}

fn parse_track_url(s: &str) -> Result<Url, TransmitError> {
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

/// The worker's loop: takes jobs (at most [`MAX_CONCURRENT_JOBS`] at a time), answers flushes,
/// runs the replay task (with storage) and ends after a stop once everything is finished or
/// aborted.
async fn run(
    shared: Arc<Shared>,
    mut jobs: mpsc::Receiver<Job>,
    mut control: mpsc::UnboundedReceiver<Control>,
) {
    enum Event {
        Finished(u64),
        Control(Option<Control>),
        Abort,
        Job(Option<Job>),
    }
    let (finished_tx, mut finished_rx) = mpsc::unbounded_channel::<u64>();
    let (abort_tx, abort_rx) = watch::channel(false);
    let (stopping_tx, stopping_rx) = watch::channel(false);
    let mut replaying = shared.gate.storage.clone().map(|storage| {
        tokio::spawn(replay(
            Arc::clone(&shared),
            storage,
            stopping_rx,
            abort_rx.clone(),
        ))
    });
    let mut running: BTreeSet<u64> = BTreeSet::new();
    let mut received: u64 = 0;
    let mut flushes: Vec<(u64, std_mpsc::SyncSender<()>)> = Vec::new();
    let mut abort_timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    let (mut stopping, mut jobs_open, mut control_open) = (false, true, true);
    loop {
        let event = poll_fn(|cx| {
            if let Poll::Ready(Some(seq)) = finished_rx.poll_recv(cx) {
                return Poll::Ready(Event::Finished(seq));
            }
            if control_open {
                if let Poll::Ready(c) = control.poll_recv(cx) {
                    return Poll::Ready(Event::Control(c));
                }
            }
            if let Some(timer) = abort_timer.as_mut() {
                if timer.as_mut().poll(cx).is_ready() {
                    abort_timer = None;
                    return Poll::Ready(Event::Abort);
                }
            }
            if jobs_open && running.len() < MAX_CONCURRENT_JOBS {
                if let Poll::Ready(job) = jobs.poll_recv(cx) {
                    return Poll::Ready(Event::Job(job));
                }
            }
            Poll::Pending
        })
        .await;
        match event {
            Event::Finished(seq) => {
                running.remove(&seq);
            }
            Event::Control(Some(Control::Flush { upto, reply })) => flushes.push((upto, reply)),
            Event::Control(stop) => {
                // `None`: the transmitter was dropped; stop at once.
                let abort_at = match stop {
                    Some(Control::Stop { abort_at }) => abort_at,
                    _ => {
                        control_open = false;
                        Instant::now()
                    }
                };
                if !stopping {
                    stopping = true;
                    jobs.close();
                    stopping_tx.send_replace(true);
                    abort_timer = Some(Box::pin(tokio::time::sleep_until(abort_at.into())));
                }
            }
            Event::Abort => {
                abort_tx.send_replace(true);
            }
            Event::Job(Some(job)) => {
                received = job.seq + 1;
                running.insert(job.seq);
                tokio::spawn(job_task(
                    Arc::clone(&shared),
                    job,
                    abort_rx.clone(),
                    finished_tx.clone(),
                ));
            }
            Event::Job(None) => jobs_open = false,
        }
        flushes.retain(|(upto, reply)| {
            let done = received >= *upto && running.first().is_none_or(|first| first >= upto);
            if done {
                let _ = reply.send(());
            }
            !done
        });
        if stopping && !jobs_open && running.is_empty() {
            break;
        }
    }
    for (_, reply) in flushes {
        let _ = reply.send(());
    }
    // The replay task finishes the file it is sending, or gives it back when aborted.
    if let Some(task) = replaying.as_mut() {
        let finished = poll_fn(|cx| {
            if std::pin::Pin::new(&mut *task).poll(cx).is_ready() {
                return Poll::Ready(true);
            }
            if let Some(timer) = abort_timer.as_mut() {
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(false);
                }
            }
            Poll::Pending
        })
        .await;
        if !finished {
            abort_tx.send_replace(true);
            let _ = task.await;
        }
    }
}

/// Reports a job as finished when dropped, also if its task is cancelled.
struct FinishedGuard {
    seq: u64,
    finished: mpsc::UnboundedSender<u64>,
}

impl Drop for FinishedGuard {
    fn drop(&mut self) {
        let _ = self.finished.send(self.seq);
    }
}

async fn job_task(
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

/// The waits between probes of a failing endpoint: decorrelated jitter between the retry
/// policy's initial and maximum delays (at least [`MIN_PROBE_DELAY`]), for as long as it fails.
struct ProbeBackoff {
    rng: fastrand::Rng,
    floor: Duration,
    cap: Duration,
    previous: Duration,
}

impl ProbeBackoff {
    fn new(policy: &RetryPolicy) -> Self {
        let floor = policy.initial_delay().max(MIN_PROBE_DELAY);
        ProbeBackoff {
            rng: fastrand::Rng::new(),
            floor,
            cap: policy.max_delay().max(floor),
            previous: floor,
        }
    }

    fn next(&mut self) -> Duration {
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let high = nanos(self.previous)
            .saturating_mul(3)
            .min(nanos(self.cap))
            .max(nanos(self.floor));
        self.previous = Duration::from_nanos(self.rng.u64(nanos(self.floor)..=high));
        self.previous
    }

    fn reset(&mut self) {
        self.previous = self.floor;
    }
}

/// Waits `delay`, or until `wake` is notified; `false` when the worker is stopping.
async fn idle(
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
enum Next {
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
async fn replay(
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
        let loaded = match storage.read(&lease) {
            Ok(loaded) => loaded,
            // Taken over by another process after the lease ran out.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                next = Next::Now;
                continue;
            }
            Err(e) => {
                opentelemetry::otel_warn!(
                    name: "AzureMonitor.Storage.Unreadable",
                    message = "a stored file could not be read and was dropped",
                    items = lease.items(),
                    error = e.to_string()
                );
                storage.remove(lease);
                next = Next::Now;
                continue;
            }
        };
        let (items, skipped) = (loaded.items, loaded.corrupt);
        if items.is_empty() {
            storage.remove(lease);
            next = Next::Now;
            continue;
        }
        let deadline = instant_after(Instant::now(), shared.timeout);
        let delivery = shared
            .deliver(&items, deadline, abort.clone(), std::iter::empty())
            .await;
        // Refused items were reported by the delivery; they are not kept.
        let _ = delivery.rejections.into_result();
        let mut pending = delivery.pending;
        pending.sort_unstable();
        pending.dedup();
        pending.retain(|&i| i < items.len());
        if pending.is_empty() {
            opentelemetry::otel_debug!(
                name: "AzureMonitor.Storage.Sent",
                items = items.len(),
                skipped_lines = skipped
            );
            storage.remove(lease);
            gate.set_healthy();
            probes.reset();
            next = Next::Now;
            continue;
        }
        if pending.len() == items.len() {
            let until = gate
                .paused_for(Instant::now())
                .and_then(|rest| SystemTime::now().checked_add(rest));
            storage.release(lease, until);
        } else if let Err(e) = storage.replace(lease, &items, &pending) {
            // The lease runs out and the whole file is sent again: its delivered items twice.
            opentelemetry::otel_warn!(
                name: "AzureMonitor.Storage.WriteFailed",
                message = "telemetry could not be written to offline storage",
                error = e.to_string()
            );
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

/// Why waiting stopped early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    Deadline,
    Shutdown,
}

impl Stop {
    fn describe(self) -> &'static str {
        match self {
            Stop::Deadline => "the export deadline passed",
            Stop::Shutdown => "the exporter shut down",
        }
    }
}

/// Runs `fut` until it completes, the deadline passes or the worker aborts.
async fn race<F: Future>(
    fut: F,
    deadline: Instant,
    abort: &mut watch::Receiver<bool>,
) -> Result<F::Output, Stop> {
    if *abort.borrow_and_update() {
        return Err(Stop::Shutdown);
    }
    let mut fut = pin!(fut);
    let mut timer = pin!(tokio::time::sleep_until(deadline.into()));
    let mut aborted = pin!(abort.changed());
    poll_fn(|cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(out));
        }
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(Stop::Deadline));
        }
        // The only change ever sent is `true`; a closed channel means the worker is ending.
        if aborted.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(Stop::Shutdown));
        }
        Poll::Pending
    })
    .await
}

/// One answer of the service, as far as classification needs it.
struct Answer {
    status: u16,
    retry_after: Option<String>,
    location: Option<String>,
    body: Vec<u8>,
}

/// The result of posting one body (after following redirects).
enum Attempt {
    Answered(Outcome),
    /// A network error or timeout of the HTTP client: retryable.
    Failed(String),
    Stopped(Stop),
}

/// What one delivery left undone.
struct Delivery {
    /// Items refused for good.
    rejections: Rejections,
    /// Items still undelivered, for a reason that may pass (indices, maybe repeated).
    pending: Vec<usize>,
    /// The latest retryable failure.
    reason: String,
    /// Set when the deadline or a shutdown cut the delivery short.
    stopped: Option<Stop>,
    /// Whether the service took or refused any of it: it is up, whatever is left.
    answered: bool,
}

impl Delivery {
    fn answered(mut self, answered: bool) -> Delivery {
        self.answered = answered;
        self
    }

    /// Cut short by `stop`: what is in `bodies` and `items` is left.
    fn left(
        rejections: Rejections,
        bodies: &[Body],
        items: Vec<usize>,
        stop: Stop,
        reason: &str,
    ) -> Delivery {
        let mut pending: Vec<usize> = bodies
            .iter()
            .flat_map(|b| b.items.iter().copied())
            .collect();
        pending.extend(items);
        Delivery {
            rejections,
            pending,
            reason: if reason.is_empty() {
                format!("{}, no answer yet", stop.describe())
            } else {
                format!("{}; last failure: {reason}", stop.describe())
            },
            stopped: Some(stop),
            answered: false,
        }
    }
}

/// Items refused for good during one delivery.
#[derive(Default)]
struct Rejections {
    items: usize,
    first: Option<(u16, String)>,
}

impl Rejections {
    fn add(&mut self, items: usize, status: u16, message: &str) {
        if items == 0 {
            return;
        }
        opentelemetry::otel_warn!(
            name: "AzureMonitor.Transmit.Rejected",
            message = "the ingestion service rejected telemetry items; they were dropped",
            items = items,
            status = status,
            reason = message
        );
        self.items += items;
        if self.first.is_none() {
            self.first = Some((status, message.to_owned()));
        }
    }
}

/// State of the worker shared by its jobs.
struct Shared {
    client: reqwest::Client,
    /// The track URL, updated when a redirect was followed.
    endpoint: Mutex<Url>,
    retry: RetryPolicy,
    gzip: Mutex<Gzip>,
    gate: Arc<Gate>,
    /// The deadline of one delivery (of an export or of a stored file).
    timeout: Duration,
    /// Entra ID tokens, when configured.
    auth: Option<TokenCache>,
}

impl Shared {
    fn bodies(
        &self,
        items: &EncodedItems,
        indices: impl IntoIterator<Item = usize>,
    ) -> Result<Vec<Body>, String> {
        lock(&self.gzip)
            .bodies(items, indices)
            .map_err(|e| format!("could not compress the request: {e}"))
    }

    /// Delivers one export: [`deliver`](Self::deliver) with the retry policy; what is left
    /// undelivered goes to storage, and the endpoint then counts as failing. A delivery that got
    /// everything through (or refused) closes the circuit and wakes the replay task.
    async fn deliver_job(
        &self,
        items: &EncodedItems,
        deadline: Instant,
        abort: watch::Receiver<bool>,
    ) -> Result<(), TransmitError> {
        let backoff = self.retry.backoff(fastrand::Rng::new());
        let delivery = self.deliver(items, deadline, abort, backoff).await;
        if delivery.pending.is_empty() {
            self.gate.set_healthy();
            if self.gate.storage.is_some() {
                self.gate.wake.notify_one();
            }
            return delivery.rejections.into_result();
        }
        // Only an endpoint that took none of it counts as failing (not a 206 with throttled
        // items, not a shutdown).
        let failing = !delivery.answered && delivery.stopped != Some(Stop::Shutdown);
        let reason = delivery.reason.clone();
        let result = self.undeliverable(items, delivery.pending, delivery.reason);
        if failing {
            self.gate.set_failing(&reason);
        }
        result.and(delivery.rejections.into_result())
    }

    /// Delivers `items` by `deadline`: posts, retries after the delays of `backoff` (and not
    /// before a `Retry-After`), re-sends only the retryable items of a partial success, drops
    /// rejected items. Returns what is left.
    async fn deliver(
        &self,
        items: &EncodedItems,
        deadline: Instant,
        mut abort: watch::Receiver<bool>,
        mut backoff: impl Iterator<Item = Duration>,
    ) -> Delivery {
        let mut rejections = Rejections::default();
        let mut bodies = match self.bodies(items, 0..items.len()) {
            Ok(b) => b,
            Err(reason) => {
                return Delivery {
                    rejections,
                    pending: (0..items.len()).collect(),
                    reason,
                    stopped: None,
                    answered: false,
                }
            }
        };
        let mut attempts: u32 = 0;
        let mut answered = false;
        // The latest retryable failure, for the error and the logs.
        let mut reason = String::new();
        loop {
            // Nothing is sent before the service's `Retry-After`, also when another export
            // (or a replay) got it.
            if let Some(wait) = self.gate.paused_for(Instant::now()) {
                let give_up = if instant_after(Instant::now(), wait) >= deadline {
                    Some(format!(
                        "the service asked to wait {wait:?} (Retry-After), past the export \
                         deadline"
                    ))
                } else {
                    match race(tokio::time::sleep(wait), deadline, &mut abort).await {
                        Ok(()) => None,
                        Err(stop) => {
                            return Delivery::left(rejections, &bodies, Vec::new(), stop, &reason)
                                .answered(answered)
                        }
                    }
                };
                if let Some(why) = give_up {
                    return Delivery {
                        rejections,
                        pending: bodies
                            .iter()
                            .flat_map(|b| b.items.iter().copied())
                            .collect(),
                        reason: if reason.is_empty() {
                            why
                        } else {
                            format!("{why}; last failure: {reason}")
                        },
                        stopped: None,
                        answered,
                    };
                }
            }
            attempts += 1;
            let mut again: Vec<Body> = Vec::new();
            let mut again_items: Vec<usize> = Vec::new();
            let mut stopped = None;
            for body in bodies {
                if stopped.is_some() {
                    again.push(body);
                    continue;
                }
                match self.post(&body, deadline, &mut abort).await {
                    Attempt::Stopped(stop) => {
                        stopped = Some(stop);
                        again.push(body);
                    }
                    Attempt::Failed(why) => {
                        reason = why;
                        again.push(body);
                    }
                    Attempt::Answered(Outcome::Accepted) => answered = true,
                    Attempt::Answered(Outcome::Partial {
                        retry,
                        rejected,
                        retry_after,
                    }) => {
                        answered = true;
                        let mut refused = rejected.iter().filter(|r| r.0 < body.items.len());
                        if let Some((_, status, message)) = refused.next() {
                            rejections.add(1 + refused.count(), *status, message);
                        }
                        let before = again_items.len();
                        again_items.extend(retry.iter().filter_map(|p| body.items.get(*p)));
                        if again_items.len() > before {
                            if let Some(after) = retry_after {
                                self.gate.pause(after);
                            }
                            reason = format!(
                                "partial success, {} items failed with a retryable status",
                                again_items.len() - before
                            );
                        }
                    }
                    Attempt::Answered(Outcome::RetryAll { after, reason: why }) => {
                        if let Some(after) = after {
                            self.gate.pause(after);
                        }
                        reason = why;
                        again.push(body);
                    }
                    Attempt::Answered(Outcome::Rejected { status, message }) => {
                        answered = true;
                        rejections.add(body.items.len(), status, &message);
                    }
                    Attempt::Answered(Outcome::Redirect(location)) => {
                        // `post` follows redirects itself; this is not reached.
                        rejections.add(
                            body.items.len(),
                            307,
                            &format!("unfollowed redirect to {location}"),
                        );
                    }
                }
            }
            let mut failed_compression = None;
            if !again_items.is_empty() {
                again_items.sort_unstable();
                again_items.dedup();
                match self.bodies(items, again_items.iter().copied()) {
                    Ok(b) => again.extend(b),
                    Err(why) => failed_compression = Some(why),
                }
            }
            if again.is_empty() && failed_compression.is_none() {
                return Delivery {
                    rejections,
                    pending: Vec::new(),
                    reason,
                    stopped: None,
                    answered,
                };
            }
            if let Some(stop) = stopped {
                return Delivery::left(rejections, &again, again_items, stop, &reason)
                    .answered(answered);
            }
            let give_up = if let Some(why) = failed_compression {
                Some(why)
            } else if self.gate.is_failing() {
                Some(format!(
                    "the ingestion endpoint is failing; last failure: {reason}"
                ))
            } else if let Some(delay) = backoff.next() {
                let delay = delay.max(self.gate.paused_for(Instant::now()).unwrap_or_default());
                if instant_after(Instant::now(), delay) >= deadline {
                    Some(format!(
                        "the next attempt (in {delay:?}) would be after the export deadline; \
                         last failure: {reason}"
                    ))
                } else {
                    match race(tokio::time::sleep(delay), deadline, &mut abort).await {
                        Ok(()) => None,
                        Err(stop) => {
                            return Delivery::left(rejections, &again, again_items, stop, &reason)
                                .answered(answered)
                        }
                    }
                }
            } else {
                Some(format!(
                    "gave up after {attempts} attempts; last failure: {reason}"
                ))
            };
            if let Some(reason) = give_up {
                let mut pending: Vec<usize> =
                    again.iter().flat_map(|b| b.items.iter().copied()).collect();
                // Items whose new body could not be built (duplicates are removed).
                pending.extend(again_items);
                return Delivery {
                    rejections,
                    pending,
                    reason,
                    stopped: None,
                    answered,
                };
            }
            bodies = again;
        }
    }

    /// The one place that decides the fate of items that are still undelivered and retryable
    /// when a delivery runs out of attempts or time, or the exporter shuts down: `pending` are
    /// indices into `items`. With storage they are kept there for a later retry and the export
    /// succeeds; otherwise (or if the write fails) it fails with
    /// [`TransmitError::Undelivered`].
    fn undeliverable(
        &self,
        items: &EncodedItems,
        mut pending: Vec<usize>,
        reason: String,
    ) -> Result<(), TransmitError> {
        pending.sort_unstable();
        pending.dedup();
        pending.retain(|&i| i < items.len());
        if pending.is_empty() {
            return Ok(());
        }
        let reason = match self.gate.keep(items, pending.iter().copied()) {
            Ok(_) => {
                opentelemetry::otel_debug!(
                    name: "AzureMonitor.Transmit.Stored",
                    items = pending.len(),
                    reason = reason.as_str()
                );
                return Ok(());
            }
            Err(why) if self.gate.storage.is_some() => format!("{reason}; {why}"),
            Err(_) => reason,
        };
        opentelemetry::otel_debug!(
            name: "AzureMonitor.Transmit.Undelivered",
            items = pending.len(),
            reason = reason.as_str()
        );
        Err(TransmitError::Undelivered {
            items: pending.len(),
            reason,
        })
    }

    fn endpoint(&self) -> Url {
        lock(&self.endpoint).clone()
    }

    /// Posts one body, following at most [`MAX_REDIRECTS`] consecutive redirects to allowed
    /// hosts. The endpoint a redirect chain ended at is used for later requests.
    async fn post(
        &self,
        body: &Body,
        deadline: Instant,
        abort: &mut watch::Receiver<bool>,
    ) -> Attempt {
        let mut url = self.endpoint();
        let mut redirects = 0;
        loop {
            let answer = match race(
                self.request(url.clone(), body.gzip.clone()),
                deadline,
                abort,
            )
            .await
            {
                Err(stop) => return Attempt::Stopped(stop),
                Ok(Err(why)) => return Attempt::Failed(why),
                Ok(Ok(answer)) => answer,
            };
            let outcome = classify(
                answer.status,
                answer.retry_after.as_deref(),
                answer.location.as_deref(),
                &answer.body,
                SystemTime::now(),
            );
            let Outcome::Redirect(location) = outcome else {
                if redirects > 0 {
                    opentelemetry::otel_debug!(
                        name: "AzureMonitor.Transmit.Redirected",
                        endpoint = url.as_str()
                    );
                    *lock(&self.endpoint) = url;
                }
                return Attempt::Answered(outcome);
            };
            redirects += 1;
            if redirects > MAX_REDIRECTS {
                return Attempt::Answered(Outcome::Rejected {
                    status: answer.status,
                    message: format!(
                        "more than {MAX_REDIRECTS} consecutive redirects (circular redirects?)"
                    ),
                });
            }
            match follow(&url, &location) {
                Ok(next) => url = next,
                Err(message) => {
                    return Attempt::Answered(Outcome::Rejected {
                        status: answer.status,
                        message,
                    })
                }
            }
        }
    }

    /// Sends one request. A failure (network, no Entra ID token) is retryable: the data is
    /// kept.
    async fn request(&self, url: Url, gzip: Vec<u8>) -> Result<Answer, String> {
        // Entra ID: the cached token (a token failure keeps the data, unlike the Python
        // exporter).
        let bearer = match &self.auth {
            Some(auth) => Some(auth.bearer_for(&url).await.map_err(|e| e.to_string())?),
            None => None,
        };
        let mut request = self.client.post(url);
        if let Some(bearer) = &bearer {
            request = request.header(AUTHORIZATION, bearer.header_value());
        }
        let mut response = request
            .header(CONTENT_TYPE, "application/json")
            .header(CONTENT_ENCODING, "gzip")
            .header(ACCEPT, "application/json")
            .body(gzip)
            .send()
            .await
            .map_err(|e| describe(&e))?;
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let retry_after = header(RETRY_AFTER);
        let location = header(LOCATION);
        let status = response.status().as_u16();
        // Entra ID refused: 401 drops the token (the retry waits for a new one), 403 holds
        // every request back for a longer wait.
        if let Some(failure) = auth_failure(status) {
            crate::auth::refused(self.auth.as_ref(), bearer.as_ref(), failure);
            if let Some(wait) = failure.min_wait(&self.retry) {
                self.gate.pause(wait);
            }
        }
        // The status decides; a body cut short only loses detail.
        let mut body = Vec::new();
        while let Ok(Some(chunk)) = response.chunk().await {
            let room = MAX_RESPONSE_BYTES.saturating_sub(body.len());
            body.extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or_default());
            if body.len() >= MAX_RESPONSE_BYTES {
                break;
            }
        }
        Ok(Answer {
            status,
            retry_after,
            location,
            body,
        })
    }
}

impl Rejections {
    fn into_result(self) -> Result<(), TransmitError> {
        match self.first {
            None => Ok(()),
            Some((status, message)) => Err(TransmitError::Rejected {
                items: self.items,
                status,
                message,
            }),
        }
    }
}

/// A network error with its causes ("error sending request: connection refused").
fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        format!("timed out: {e}")
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// Resolves a `Location` against the URL that answered, and allows it only to the same host or
/// between two hosts sharing an allowed Azure suffix, never from https to http.
fn follow(current: &Url, location: &str) -> Result<Url, String> {
    let next = current
        .join(location)
        .map_err(|e| format!("redirect with an unreadable Location ({e})"))?;
    if !matches!(next.scheme(), "http" | "https") {
        return Err(format!("redirect to a {} URL refused", next.scheme()));
    }
    if current.scheme() == "https" && next.scheme() != "https" {
        return Err("redirect from https to http refused".to_owned());
    }
    let from = current.host_str().unwrap_or_default().to_ascii_lowercase();
    let to = next.host_str().unwrap_or_default().to_ascii_lowercase();
    let same_domain = ALLOWED_REDIRECT_SUFFIXES
        .iter()
        .any(|suffix| from.ends_with(suffix) && to.ends_with(suffix));
    if !to.is_empty() && (from == to || same_domain) {
        Ok(next)
    } else {
        Err(format!(
            "redirect to {to:?}, outside the ingestion domains, refused"
        ))
    }
}

#[cfg(test)]
mod tests;
