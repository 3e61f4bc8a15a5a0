//! One delivery: posts the request bodies of a batch, retries within a deadline, follows
//! redirects and classifies the answers. [`Shared::request`] builds and sends one HTTP POST.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, LOCATION, RETRY_AFTER,
};
use reqwest::Url;
use tokio::sync::watch;

use super::encode::{Body, EncodedItems, Gzip};
use super::gate::{instant_after, lock, Gate};
use super::outcome::{auth_failure, classify, Outcome};
use super::report::Tally;
use super::retry::RetryPolicy;
use super::storage::Lease;
use crate::error::TransmitError;

/// Most consecutive redirects followed for one request (as the JS and Java exporters).
pub(super) const MAX_REDIRECTS: u32 = 10;

/// Most bytes of a response body read (a `TrackResponse` is small).
pub(super) const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// A redirect may move between two hosts that both end with one of these suffixes
/// (`_ALLOWED_REDIRECT_DOMAIN_SUFFIXES` of the Python exporter, MAPPING.md §8.4).
pub(super) const ALLOWED_REDIRECT_SUFFIXES: [&str; 8] = [
    ".livediagnostics.monitor.azure.com",
    ".monitor.azure.com",
    ".services.visualstudio.com",
    ".applicationinsights.azure.com",
    ".monitor.azure.us",
    ".applicationinsights.azure.us",
    ".monitor.azure.cn",
    ".applicationinsights.azure.cn",
];

/// Why waiting stopped early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stop {
    Deadline,
    Shutdown,
}

impl Stop {
    pub(super) fn describe(self) -> &'static str {
        match self {
            Stop::Deadline => "the export deadline passed",
            Stop::Shutdown => "the exporter shut down",
        }
    }
}

/// Runs `fut` until it completes, the deadline passes or the worker aborts.
pub(super) async fn race<F: Future>(
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
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) retry_after: Option<String>,
    pub(super) location: Option<String>,
    pub(super) body: Vec<u8>,
}

/// The result of posting one body (after following redirects).
pub(super) enum Attempt {
    Answered(Outcome),
    /// A network error or timeout of the HTTP client: retryable.
    Failed(String),
    Stopped(Stop),
}

/// What one delivery left undone.
pub(super) struct Delivery {
    /// Items refused for good.
    pub(super) rejections: Rejections,
    /// Items still undelivered, for a reason that may pass (indices, maybe repeated).
    pub(super) pending: Vec<usize>,
    /// The latest retryable failure.
    pub(super) reason: String,
    /// Set when the deadline or a shutdown cut the delivery short.
    pub(super) stopped: Option<Stop>,
    /// Whether the service took or refused any of it: it is up, whatever is left.
    pub(super) answered: bool,
}

impl Delivery {
    pub(super) fn answered(mut self, answered: bool) -> Delivery {
        self.answered = answered;
        self
    }

    /// Cut short by `stop`: what is in `bodies` and `items` is left.
    pub(super) fn left(
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
pub(super) struct Rejections {
    pub(super) items: usize,
    pub(super) first: Option<(u16, String)>,
}

impl Rejections {
    pub(super) fn add(&mut self, tally: &Tally, items: usize, status: u16, message: &str) {
        if items == 0 {
            return;
        }
        tally.rejected(items);
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
pub(super) struct Shared {
    pub(super) client: reqwest::Client,
    /// The track URL, updated when a redirect was followed.
    pub(super) endpoint: Mutex<Url>,
    pub(super) retry: RetryPolicy,
    pub(super) gzip: Mutex<Gzip>,
    pub(super) gate: Arc<Gate>,
    /// The deadline of one delivery (of an export or of a stored file).
    pub(super) timeout: Duration,
    /// Entra ID tokens, when configured.
    pub(super) auth: Option<crate::auth::TokenCache>,
}

impl Shared {
    pub(super) fn bodies(
        &self,
        items: &EncodedItems,
        indices: impl IntoIterator<Item = usize>,
    ) -> Result<Vec<Body>, String> {
        lock(&self.gzip)
            .bodies(items, indices)
            .map_err(|e| format!("could not compress the request: {e}"))
    }

    /// Delivers one export: [`deliver`](Self::deliver) with the retry policy. What is left is
    /// for [`finish_export`](Self::finish_export). With `persist`, it retries until the
    /// deadline even while the endpoint counts as failing (an export that waits for its
    /// delivery, see [`super::handoff`]).
    pub(super) async fn deliver_export(
        &self,
        items: &EncodedItems,
        bodies: Option<Vec<Body>>,
        deadline: Instant,
        abort: watch::Receiver<bool>,
        persist: bool,
    ) -> Delivery {
        let backoff = self.retry.backoff(fastrand::Rng::new());
        self.deliver(items, bodies, deadline, abort, backoff, persist)
            .await
    }

    /// Settles one export's delivery: what is left undelivered goes to storage (into `held`,
    /// the file written when the export was handed off, if there is one), and the endpoint
    /// then counts as failing. A delivery that got everything through (or refused) closes the
    /// circuit and wakes the replay task.
    ///
    /// # Errors
    ///
    /// As [`undeliverable`](Self::undeliverable), and [`TransmitError::Rejected`] when the
    /// service refused items.
    pub(super) fn finish_export(
        &self,
        items: &EncodedItems,
        delivery: Delivery,
        held: Option<Lease>,
    ) -> Result<(), TransmitError> {
        if delivery.pending.is_empty() {
            if let Some(lease) = held {
                self.gate.settle(lease, items, Vec::new());
            }
            self.gate.set_healthy();
            if self.gate.storage.is_some() && self.gate.on_disk.load(Ordering::Acquire) {
                self.gate.wake.notify_one();
            }
            return delivery.rejections.into_result();
        }
        // Only an endpoint that took none of it counts as failing (not a 206 with throttled
        // items, not a shutdown).
        let failing = !delivery.answered && delivery.stopped != Some(Stop::Shutdown);
        let reason = delivery.reason.clone();
        let result = match held {
            Some(lease) => {
                self.gate.settle(lease, items, delivery.pending);
                Ok(())
            }
            None => self.undeliverable(items, delivery.pending, delivery.reason),
        };
        if failing {
            self.gate.set_failing(&reason);
        }
        result.and(delivery.rejections.into_result())
    }

    /// Delivers `items` by `deadline`: posts, retries after the delays of `backoff` (and not
    /// before a `Retry-After`), re-sends only the retryable items of a partial success, drops
    /// rejected items. Returns what is left. Gives up at a failure while the endpoint counts as
    /// failing, unless the exporter drains or `persist` is set. `bodies`, when given, are all
    /// of `items` already compressed (see [`super::queue::Job::bodies`]).
    pub(super) async fn deliver(
        &self,
        items: &EncodedItems,
        bodies: Option<Vec<Body>>,
        deadline: Instant,
        mut abort: watch::Receiver<bool>,
        mut backoff: impl Iterator<Item = Duration>,
        persist: bool,
    ) -> Delivery {
        let mut rejections = Rejections::default();
        let bodies = bodies.map_or_else(|| self.bodies(items, 0..items.len()), Ok);
        let mut bodies = match bodies {
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
                        self.gate.tally.failed(&why);
                        reason = why;
                        again.push(body);
                    }
                    Attempt::Answered(Outcome::Accepted) => {
                        answered = true;
                        self.gate.tally.accepted(body.items.len());
                    }
                    Attempt::Answered(Outcome::Partial {
                        retry,
                        rejected,
                        retry_after,
                    }) => {
                        answered = true;
                        let mut refused = rejected.iter().filter(|r| r.0 < body.items.len());
                        let mut refused_count = 0;
                        if let Some((_, status, message)) = refused.next() {
                            refused_count = 1 + refused.count();
                            rejections.add(&self.gate.tally, refused_count, *status, message);
                        }
                        let retried = retry.iter().filter(|p| **p < body.items.len()).count();
                        self.gate
                            .tally
                            .accepted(body.items.len().saturating_sub(retried + refused_count));
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
                            self.gate.tally.failed(&reason);
                        }
                    }
                    Attempt::Answered(Outcome::RetryAll { after, reason: why }) => {
                        if let Some(after) = after {
                            self.gate.pause(after);
                        }
                        self.gate.tally.failed(&why);
                        reason = why;
                        again.push(body);
                    }
                    Attempt::Answered(Outcome::Rejected { status, message }) => {
                        answered = true;
                        rejections.add(&self.gate.tally, body.items.len(), status, &message);
                    }
                    Attempt::Answered(Outcome::Redirect(location)) => {
                        // `post` follows redirects itself; this is not reached.
                        rejections.add(
                            &self.gate.tally,
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
            } else if !persist && self.gate.is_failing() && !self.gate.is_draining() {
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
    pub(super) fn undeliverable(
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
        self.gate.tally.dropped(pending.len());
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

    pub(super) fn endpoint(&self) -> Url {
        lock(&self.endpoint).clone()
    }

    /// Posts one body, following at most [`MAX_REDIRECTS`] consecutive redirects to allowed
    /// hosts. The endpoint a redirect chain ended at is used for later requests.
    pub(super) async fn post(
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
    pub(super) async fn request(&self, url: Url, gzip: Vec<u8>) -> Result<Answer, String> {
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
    pub(super) fn into_result(self) -> Result<(), TransmitError> {
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
pub(super) fn describe(e: &reqwest::Error) -> String {
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
pub(super) fn follow(current: &Url, location: &str) -> Result<Url, String> {
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
