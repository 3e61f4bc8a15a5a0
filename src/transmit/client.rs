//! The transmitter: one background worker thread per transmitter, with a Tokio current-thread
//! runtime of its own that owns the HTTP client, the retry timers and the redirect memory.
//!
//! [`Transmitter::send`] never blocks: it hands the encoded items to the worker over a bounded
//! queue and returns a future that waits for the answer on a runtime-agnostic oneshot channel,
//! so it can be awaited under a plain `block_on` (the SDK's default batch processors) as well as
//! inside Tokio (the async-runtime processors).

use std::collections::BTreeSet;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex, MutexGuard, PoisonError};
use std::task::Poll;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use futures_channel::oneshot;
use reqwest::header::{ACCEPT, CONTENT_ENCODING, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use reqwest::Url;
use tokio::sync::{mpsc, watch};

use super::encode::{Body, EncodedItems, Gzip};
use super::outcome::{classify, Outcome};
use super::retry::RetryPolicy;
use crate::error::TransmitError;

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
/// How long dropping a transmitter that was not shut down waits for its thread to end.
const DROP_JOIN_WAIT: Duration = Duration::from_secs(1);
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
}

impl std::fmt::Debug for Transmitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transmitter")
            .field("timeout", &self.timeout)
            .field("stopped", &self.stopped.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
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

impl Transmitter {
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
        let shared = Arc::new(Shared {
            client,
            endpoint: Mutex::new(url),
            retry: cfg.retry,
            gzip: Mutex::new(Gzip::new()),
        });
        let (jobs_tx, jobs_rx) = mpsc::channel(QUEUE_CAPACITY);
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = std_mpsc::sync_channel::<std::io::Result<()>>(1);
        let (done_tx, done_rx) = std_mpsc::sync_channel::<()>(1);
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
        })
    }

    /// Hands `items` to the worker and returns a future of the delivery's result. The job is
    /// queued now, not when the future is first polled; dropping the future does not cancel
    /// the delivery. Never blocks, and needs no async runtime to be awaited.
    ///
    /// # Errors
    ///
    /// The future resolves to [`TransmitError::QueueFull`] when too many exports are waiting,
    /// [`TransmitError::AlreadyShutdown`] after a shutdown, [`TransmitError::Undelivered`] when
    /// retryable items could not be delivered by the deadline (or before the shutdown),
    /// [`TransmitError::Rejected`] when the service refused items for good, and
    /// [`TransmitError::WorkerStopped`] if the worker ended without answering.
    pub(crate) fn send(
        &self,
        items: EncodedItems,
    ) -> impl Future<Output = Result<(), TransmitError>> + Send + 'static {
        let queued = self.enqueue(items);
        async move {
            match queued {
                Ok(Some(reply)) => reply.await.unwrap_or(Err(TransmitError::WorkerStopped)),
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            }
        }
    }

    fn enqueue(
        &self,
        items: EncodedItems,
    ) -> Result<Option<oneshot::Receiver<Result<(), TransmitError>>>, TransmitError> {
        if items.is_empty() {
            return Ok(None);
        }
        if self.stopped.load(Ordering::Acquire) {
            return Err(TransmitError::AlreadyShutdown);
        }
        let count = items.len();
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
                Ok(Some(answer))
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                Err(TransmitError::QueueFull { items: count })
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(TransmitError::AlreadyShutdown),
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
    /// running shortly before `timeout` (those exports fail with
    /// [`TransmitError::Undelivered`]), stops the worker and joins its thread.
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
        let margin = (timeout / 5).min(MAX_SHUTDOWN_MARGIN);
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

/// The worker's loop: takes jobs (at most [`MAX_CONCURRENT_JOBS`] at a time), answers flushes
/// and ends after a stop once everything is finished or aborted.
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
    let _guard = FinishedGuard {
        seq: job.seq,
        finished,
    };
    let result = shared.deliver(&job.items, job.deadline, abort).await;
    let _ = job.reply.send(result);
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

    /// Delivers `items` by `deadline`: posts, retries per policy and `Retry-After`, re-sends
    /// only the retryable items of a partial success, drops rejected items.
    async fn deliver(
        &self,
        items: &EncodedItems,
        deadline: Instant,
        mut abort: watch::Receiver<bool>,
    ) -> Result<(), TransmitError> {
        let mut rejections = Rejections::default();
        let mut backoff = self.retry.backoff(fastrand::Rng::new());
        let mut bodies = match self.bodies(items, 0..items.len()) {
            Ok(b) => b,
            Err(reason) => return self.undeliverable(items, (0..items.len()).collect(), reason),
        };
        let mut attempts: u32 = 0;
        // The latest retryable failure, for the error and the logs.
        let mut reason = String::new();
        loop {
            attempts += 1;
            let mut again: Vec<Body> = Vec::new();
            let mut again_items: Vec<usize> = Vec::new();
            let mut not_before: Option<Duration> = None;
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
                    Attempt::Answered(Outcome::Accepted) => {}
                    Attempt::Answered(Outcome::Partial {
                        retry,
                        rejected,
                        retry_after,
                    }) => {
                        let mut refused = rejected.iter().filter(|r| r.0 < body.items.len());
                        if let Some((_, status, message)) = refused.next() {
                            rejections.add(1 + refused.count(), *status, message);
                        }
                        let before = again_items.len();
                        again_items.extend(retry.iter().filter_map(|p| body.items.get(*p)));
                        if again_items.len() > before {
                            not_before = not_before.max(retry_after);
                            reason = format!(
                                "partial success, {} items failed with a retryable status",
                                again_items.len() - before
                            );
                        }
                    }
                    Attempt::Answered(Outcome::RetryAll { after, reason: why }) => {
                        not_before = not_before.max(after);
                        reason = why;
                        again.push(body);
                    }
                    Attempt::Answered(Outcome::Rejected { status, message }) => {
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
                return rejections.into_result();
            }
            let give_up = if let Some(why) = failed_compression {
                Some(why)
            } else if let Some(stop) = stopped {
                Some(if reason.is_empty() {
                    format!("{}, no answer yet", stop.describe())
                } else {
                    format!("{}; last failure: {reason}", stop.describe())
                })
            } else if let Some(delay) = backoff.next() {
                let delay = delay.max(not_before.unwrap_or_default());
                if instant_after(Instant::now(), delay) >= deadline {
                    Some(format!(
                        "the next attempt (in {delay:?}) would be after the export deadline; \
                         last failure: {reason}"
                    ))
                } else {
                    match race(tokio::time::sleep(delay), deadline, &mut abort).await {
                        Ok(()) => None,
                        Err(stop) => Some(format!("{}; last failure: {reason}", stop.describe())),
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
                let undelivered = self.undeliverable(items, pending, reason);
                return undelivered.and(rejections.into_result());
            }
            bodies = again;
        }
    }

    /// The one place that decides the fate of items that are still undelivered and retryable
    /// when a delivery runs out of attempts or time, or the exporter shuts down: `pending` are
    /// indices into `items`. Today the export fails with [`TransmitError::Undelivered`];
    /// offline storage will keep them here (as JSON lines) for a later retry and return `Ok`.
    fn undeliverable(
        &self,
        items: &EncodedItems,
        mut pending: Vec<usize>,
        reason: String,
    ) -> Result<(), TransmitError> {
        pending.sort_unstable();
        pending.dedup();
        pending.retain(|&i| i < items.len());
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
                Ok(Err(e)) => return Attempt::Failed(describe(&e)),
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

    async fn request(&self, url: Url, gzip: Vec<u8>) -> Result<Answer, reqwest::Error> {
        let mut response = self
            .client
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header(CONTENT_ENCODING, "gzip")
            .header(ACCEPT, "application/json")
            .body(gzip)
            .send()
            .await?;
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
