//! The Live Metrics client: the I/O around the pure core. One background thread with a Tokio
//! current-thread runtime of its own (the SDK's processors call on plain threads) runs the
//! state machine, sends the pings and posts with `reqwest` (no redirect following by the HTTP
//! client itself: §5 redirects are the protocol's own header), applies the configurations the
//! service sends, and flips the `subscribed` flag the processors check.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::{AcqRel, Relaxed, Release};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::Url;
use tokio::sync::watch;

use super::collect::{self, ProcessSampler};
use super::protocol::{self, DataPoint, MetricPoint};
use super::state::{Machine, Outcome, Phase, Timings};
use super::Shared;

/// The Entra ID hook (LIVE-METRICS.md §9): the same token cache as the Track path
/// ([`CacheAuth`](super::auth::CacheAuth)); tests use a fake.
pub(crate) trait LiveAuth: Send + Sync + 'static {
    /// The `Authorization` header's value (`Bearer <token>`, marked sensitive); an error (without the token in it)
    /// fails the request, which then counts as a failure of the state machine.
    fn bearer(
        &self,
    ) -> Pin<Box<dyn Future<Output = Result<reqwest::header::HeaderValue, String>> + Send + '_>>;
    /// The service refused the token (401): the next `bearer()` must fetch a new one.
    fn invalidate(&self);
}

/// What the client needs.
pub(crate) struct ClientConfig {
    /// The `LiveEndpoint`.
    pub(crate) base: Url,
    pub(crate) ikey: String,
    pub(crate) timings: Timings,
    pub(crate) client: reqwest::Client,
    pub(crate) auth: Option<Arc<dyn LiveAuth>>,
}

/// The running client.
pub(crate) struct Client {
    stop: watch::Sender<bool>,
    worker: Mutex<Option<(JoinHandle<()>, std_mpsc::Receiver<()>)>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Client {
    /// Starts the thread.
    pub(crate) fn start(shared: Arc<Shared>, cfg: ClientConfig) -> std::io::Result<Self> {
        let (stop, stop_rx) = watch::channel(false);
        let (ready_tx, ready_rx) = std_mpsc::sync_channel::<std::io::Result<()>>(1);
        let (done_tx, done_rx) = std_mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("azure-monitor-live-metrics".into())
            .spawn(move || {
                // Our own requests are not telemetry.
                let _suppressed = opentelemetry::Context::enter_telemetry_suppressed_scope();
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
                runtime.block_on(run(Arc::clone(&shared), cfg, stop_rx));
                shared.set_subscribed(false);
                drop(runtime);
                drop(done_tx);
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(std::io::Error::other(
                    "the Live Metrics thread ended while starting",
                ));
            }
        }
        Ok(Client {
            stop,
            worker: Mutex::new(Some((thread, done_rx))),
        })
    }

    /// Stops the thread: no request starts after this returns `true`, and a request in flight
    /// is abandoned. `false` if the thread did not end within `timeout` (it then ends on its
    /// own, without sending anything more).
    pub(crate) fn shutdown(&self, timeout: Duration) -> bool {
        let _ = self.stop.send(true);
        let Some((thread, done)) = lock(&self.worker).take() else {
            return true;
        };
        match done.recv_timeout(timeout) {
            Ok(()) | Err(std_mpsc::RecvTimeoutError::Disconnected) => {
                let _ = thread.join();
                true
            }
            Err(std_mpsc::RecvTimeoutError::Timeout) => false,
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.shutdown(Duration::from_secs(1));
    }
}

/// The answer to one request, as far as the client reads it.
struct Answer {
    status: u16,
    subscribed: bool,
    hint: Option<Duration>,
    etag: Option<String>,
    redirect: Option<String>,
    body: Vec<u8>,
}

async fn run(shared: Arc<Shared>, cfg: ClientConfig, mut stop: watch::Receiver<bool>) {
    let origin = Instant::now();
    let now = || origin.elapsed();
    let mut machine = Machine::new(now(), cfg.timings);
    let mut base = cfg.base.clone();
    let mut sampler = ProcessSampler::default();
    let mut last_post = Instant::now();
    let mut quota_clock = Duration::ZERO;
    let mut refused_redirect: Option<String> = None;
    // Long enough for a slow answer, short enough not to stall the schedule for long.
    let request_timeout = cfg
        .timings
        .ping
        .clamp(Duration::from_secs(1), Duration::from_secs(5));

    // The first request waits until the process's identity is its own: the builder's resource,
    // or the one a provider hands the processors when it is built (right after this thread
    // starts, in a manual pipeline). A ping under the SDK's default resource would list an
    // `unknown_service` instance in the portal. At most one ping interval.
    let mut known = shared.identity_known.subscribe();
    tokio::select! {
        biased;
        _ = stop.changed() => return,
        _ = known.wait_for(|known| *known) => {}
        () = tokio::time::sleep(cfg.timings.ping) => {}
    }

    loop {
        let due = tokio::time::Instant::from_std(origin + machine.next());
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            () = tokio::time::sleep_until(due) => {}
        }
        if *stop.borrow() {
            break;
        }
        let started = now();
        let phase = machine.due(started);
        let identity = shared.identity();
        let wall = SystemTime::now();
        let etag = shared.etag();
        let (operation, body) = match phase {
            Phase::Post => {
                let elapsed = last_post.elapsed();
                last_post = Instant::now();
                let counts = shared.counters.take();
                let (cpu, rss) = sampler.sample(elapsed);
                let mut metrics = collect::metrics(&counts, elapsed, cpu, rss);
                quota_clock += elapsed;
                let window = {
                    let mut engine = shared.engine();
                    let whole = quota_clock.as_secs();
                    if whole > 0 {
                        engine.accrue(whole);
                        quota_clock -= Duration::from_secs(whole);
                    }
                    engine.take()
                };
                metrics.extend(window.metrics.into_iter().map(|(name, value)| MetricPoint {
                    name,
                    value,
                    weight: 1,
                }));
                let point =
                    DataPoint::new(&identity, wall, &metrics, &window.documents, &window.errors);
                ("post", protocol::post_body(&point))
            }
            _ => ("ping", protocol::ping_body(&identity, wall)),
        };
        let request = send(
            &cfg,
            &base,
            operation,
            protocol::headers(&identity, operation == "ping", &etag, wall),
            body,
            request_timeout,
        );
        let answer = tokio::select! {
            biased;
            _ = stop.changed() => break,
            a = request => a,
        };
        let outcome = match answer {
            Some(a) => {
                if let Some(value) = &a.redirect {
                    match protocol::redirect_target(&base, value) {
                        Ok(next) if next != base => {
                            opentelemetry::otel_info!(
                                name: "AzureMonitor.LiveMetrics.Redirected",
                                message = "Live Metrics moved to the endpoint the service named",
                                endpoint = next.as_str().to_owned()
                            );
                            base = next;
                        }
                        Ok(_) => {}
                        Err(reason) => {
                            if refused_redirect.as_deref() != Some(value) {
                                opentelemetry::otel_warn!(
                                    name: "AzureMonitor.LiveMetrics.RedirectRefused",
                                    message = "a Live Metrics redirect was not followed",
                                    reason = reason.as_str()
                                );
                                refused_redirect = Some(value.clone());
                            }
                        }
                    }
                }
                if a.status == 200 {
                    if a.subscribed {
                        if let Some(new) = a.etag.as_deref().filter(|e| *e != etag) {
                            shared.apply_configuration(new, &a.body);
                        }
                    }
                    Outcome::Answered {
                        subscribed: a.subscribed,
                        hint: a.hint,
                    }
                } else {
                    if a.status == 401 {
                        if let Some(auth) = &cfg.auth {
                            auth.invalidate();
                        }
                    }
                    Outcome::Failed
                }
            }
            None => Outcome::Failed,
        };
        match machine.answered(started, now(), outcome) {
            Some(Phase::Post) => {
                // Counting starts now; the first post covers the time since.
                let _ = shared.counters.take();
                last_post = Instant::now();
                quota_clock = Duration::ZERO;
                let _ = sampler.sample(Duration::ZERO);
                shared.set_subscribed(true);
            }
            Some(_) => {
                // R: back to Ping (or Backoff) forgets the configuration and its ETag.
                shared.set_subscribed(false);
                shared.reset_configuration();
                sampler.reset();
            }
            None => {}
        }
    }
}

/// Sends one ping or post; `None` when no answer came (network error, timeout, no token).
async fn send(
    cfg: &ClientConfig,
    base: &Url,
    operation: &str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    timeout: Duration,
) -> Option<Answer> {
    let mut request = cfg
        .client
        .post(protocol::url(base, operation, &cfg.ikey))
        .header(CONTENT_TYPE, "application/json")
        .header(ACCEPT, "application/json")
        .timeout(timeout)
        .body(body);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    if let Some(auth) = &cfg.auth {
        // `base` is the configured endpoint or one that passed the redirect allow-list.
        match auth.bearer().await {
            Ok(value) => request = request.header(AUTHORIZATION, value),
            Err(reason) => {
                opentelemetry::otel_warn!(
                    name: "AzureMonitor.LiveMetrics.NoToken",
                    message = "no Entra ID token for Live Metrics",
                    reason = reason.as_str()
                );
                return None;
            }
        }
    }
    let response = request.send().await.ok()?;
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let status = response.status().as_u16();
    let subscribed = header(protocol::HEADER_SUBSCRIBED).is_some_and(|v| v == "true");
    let hint = protocol::polling_hint(header(protocol::HEADER_POLLING_HINT).as_deref());
    let etag = header(protocol::HEADER_ETAG);
    let redirect = header(protocol::HEADER_REDIRECT);
    let body = if status == 200 {
        response
            .bytes()
            .await
            .map(|b| b.to_vec())
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    Some(Answer {
        status,
        subscribed,
        hint,
        etag,
        redirect,
        body,
    })
}

// Keep the atomics' orderings in one place for the flag the processors read.
impl Shared {
    pub(crate) fn set_subscribed(&self, on: bool) {
        self.subscribed.store(on, Release);
    }

    pub(crate) fn mark_stopped(&self) -> bool {
        !self.stopped.swap(true, AcqRel)
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Relaxed)
    }
}
