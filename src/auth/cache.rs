//! The process-wide token cache: one token per (provider, scope), shared by every exporter
//! (and Live Metrics) of the process, refreshed before it expires, fetched by one caller at a
//! time (ENTRA-ID.md §4, R).
//!
//! # Use from the rest of the crate
//!
//! ```text
//! let cache: TokenCache = auth::resolve(..)?;        // in build(); None without Entra ID
//! let bearer = cache.bearer_for(&url).await?;        // per request: the cached token, at once
//! request.header(AUTHORIZATION, bearer.header_value());
//! if let Some(failure) = AuthFailure::of(status) {   // after the answer
//!     cache.refused(failure, &bearer);               // 401: drop the token; 401/403: log a hint
//! }
//! ```
//!
//! - [`TokenCache::bearer_for`] answers from memory while the token is valid: one short lock,
//!   no await. When the token enters its refresh window (5 minutes before expiry by default,
//!   or the provider's [`AccessToken::refresh_at`]), the call that notices it starts one
//!   background fetch on the caller's Tokio runtime and still returns the current token; a
//!   token is used until it really expires. Only when there is no valid token (the first
//!   request, after a 401, after expiry) do callers wait, all of them for the same fetch.
//! - A failed fetch (an error, an expired token, a hanging provider after [`FETCH_TIMEOUT`])
//!   is not retried before a backoff of 3 s doubling up to 60 s; meanwhile `bearer_for` fails
//!   at once with [`AuthError::Unavailable`] and the caller keeps its data for a later attempt.
//! - After a 401, the refused token is dropped and a new one fetched. If the provider hands the
//!   same token back (an `azure_identity` credential does until its token nears expiry), it is
//!   held back for one backoff and then sent again: a 401 can be passing (the resource's
//!   settings just changed), and resending one token per backoff costs little. ENTRA-ID.md §10
//!   says never to resend it; that would stop delivery for up to a token's lifetime (24 hours
//!   for managed identities), past the 48 hours offline storage keeps data.
//! - The fetch runs as a task on the runtime of the caller that started it (the exporter's
//!   transmit worker), so a cancelled request (its export deadline passed) does not cancel the
//!   fetch. Should that runtime stop mid-fetch, the fetch counts as not started and the next
//!   caller starts another.

use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use reqwest::header::HeaderValue;
use tokio::sync::Notify;

use super::settings::bearer_allowed;
use super::{AccessToken, ProviderRef, TokenProvider};

/// A token is refreshed this long before it expires, unless it says when itself.
pub(crate) const REFRESH_WINDOW: Duration = Duration::from_secs(5 * 60);
/// A token is refreshed no sooner than this after it was received (default refresh time)...
const MIN_REFRESH_AGE: Duration = Duration::from_secs(30);
/// ...or this, when the provider set the refresh time itself.
const MIN_EXPLICIT_REFRESH_AGE: Duration = Duration::from_secs(1);
/// The first wait after a failed fetch; it doubles with each failure in a row...
const FIRST_BACKOFF: Duration = Duration::from_secs(3);
/// ...up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A fetch that takes longer counts as failed.
pub(crate) const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// The 401 and 403 hints are logged at most this often per token cache.
const HINT_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Bounds the rounds of one `bearer` call (each round waits for a fetch to finish).
const MAX_ROUNDS: usize = 4;

/// Why no bearer token can be sent now. Messages never contain a token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AuthError {
    /// No valid token: the last fetch failed, and the next is not due yet.
    #[error("no Entra ID token (next attempt in {retry_in:?}): {reason}")]
    Unavailable {
        /// Why the last fetch failed.
        reason: String,
        /// How long until the next fetch may start.
        retry_in: Duration,
    },
    /// A token would go over plain http to a host that is not loopback.
    #[error(
        "an Entra ID token is never sent over plain http, except to localhost: refused to send \
         one to {0}; use https"
    )]
    InsecureUrl(String),
}

/// How the service refused a request's credentials (its classification is in
/// `transmit::outcome`, next to the other status codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AuthFailure {
    /// 401: no token, or the token is not valid (expired, wrong audience...).
    Unauthorized,
    /// 403: the identity lacks the Monitoring Metrics Publisher role, or Entra ID is not
    /// enabled on the resource.
    Forbidden,
}

/// The `Authorization` header value of a cached token. Its `Debug` output hides the token, and
/// the header value is marked sensitive (HTTP clients do not log it).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Bearer {
    value: HeaderValue,
}

impl Bearer {
    fn new(token: &AccessToken) -> Option<Self> {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", token.secret())).ok()?;
        value.set_sensitive(true);
        Some(Bearer { value })
    }

    /// `Bearer <token>`, for the `Authorization` header.
    pub(crate) fn header_value(&self) -> HeaderValue {
        self.value.clone()
    }
}

impl fmt::Debug for Bearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Bearer <redacted>")
    }
}

/// A handle on the token cache of one (provider, scope) of the process; clones share it.
#[derive(Clone)]
pub(crate) struct TokenCache {
    inner: Arc<Inner>,
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("scope", &self.inner.scope)
            .finish_non_exhaustive()
    }
}

struct Inner {
    provider: Arc<dyn TokenProvider>,
    scope: String,
    state: Mutex<State>,
    /// Woken when a fetch finishes (or is abandoned).
    changed: Notify,
}

/// Every cache of the process, by provider identity and scope. Entries whose caches are gone
/// are dropped on the next insertion. A live cache holds its provider, so no other provider
/// can have the same address meanwhile.
#[allow(clippy::type_complexity)]
static REGISTRY: Mutex<Vec<((usize, String), Weak<Inner>)>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl TokenCache {
    /// The cache of `provider` for `scope`: the one another exporter of the process already
    /// uses, or a new one.
    pub(crate) fn shared(provider: ProviderRef, scope: String) -> Self {
        let key = (provider.identity, scope);
        let mut registry = lock(&REGISTRY);
        if let Some(inner) = registry
            .iter()
            .filter(|(k, _)| *k == key)
            .find_map(|(_, weak)| weak.upgrade())
        {
            return TokenCache { inner };
        }
        registry.retain(|(_, weak)| weak.strong_count() > 0);
        let inner = Arc::new(Inner {
            provider: provider.provider,
            scope: key.1.clone(),
            state: Mutex::new(State::default()),
            changed: Notify::new(),
        });
        registry.push((key, Arc::downgrade(&inner)));
        TokenCache { inner }
    }

    /// The scope tokens are asked for.
    #[cfg(test)]
    pub(crate) fn scope(&self) -> &str {
        &self.inner.scope
    }

    /// Whether two handles share one cache.
    #[cfg(test)]
    pub(crate) fn same_as(&self, other: &TokenCache) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The bearer to send to `url`: [`bearer`](Self::bearer), after checking that a token may
    /// go there (https, or http to a loopback host).
    ///
    /// # Errors
    ///
    /// [`AuthError::InsecureUrl`] for plain http to another host, else as `bearer`.
    pub(crate) async fn bearer_for(&self, url: &reqwest::Url) -> Result<Bearer, AuthError> {
        if !bearer_allowed(url) {
            return Err(AuthError::InsecureUrl(format!(
                "{}://{}",
                url.scheme(),
                url.host_str().unwrap_or_default()
            )));
        }
        self.bearer().await
    }

    /// The current token as a bearer: from memory while it is valid (starting a background
    /// refresh when it is due), else after the one fetch that all callers share. Call it from
    /// inside a Tokio runtime with timers enabled (fetches run as tasks there, within
    /// [`FETCH_TIMEOUT`]); outside one, the caller fetches itself.
    ///
    /// # Errors
    ///
    /// [`AuthError::Unavailable`] when the provider failed and the next attempt is not due
    /// yet: keep the data and try later.
    pub(crate) async fn bearer(&self) -> Result<Bearer, AuthError> {
        for _ in 0..MAX_ROUNDS {
            // Registered before looking, so that a fetch finishing in between still wakes us.
            let mut notified = pin!(self.inner.changed.notified());
            notified.as_mut().enable();
            let step = lock(&self.inner.state).step(SystemTime::now());
            match step {
                Step::Use(bearer) => return Ok(bearer),
                Step::UseAndRefresh(bearer) => {
                    if let Some(inline) = self.start_fetch() {
                        // No runtime to run it in the background: keep the valid token now,
                        // and refresh when it expires.
                        drop(inline);
                        lock(&self.inner.state).fetching = false;
                    }
                    return Ok(bearer);
                }
                Step::Fail(e) => return Err(e),
                Step::Wait => notified.await,
                Step::Fetch => match self.start_fetch() {
                    None => notified.await,
                    Some(inline) => inline.await,
                },
            }
        }
        Err(AuthError::Unavailable {
            reason: "the token provider did not deliver a usable token".to_owned(),
            retry_in: Duration::ZERO,
        })
    }

    /// Starts the fetch that [`State::step`] asked for (it set `fetching`): as a task on the
    /// current Tokio runtime, or, outside of one, returns it for the caller to await.
    fn start_fetch(&self) -> Option<impl Future<Output = ()> + Send + 'static> {
        let inner = Arc::clone(&self.inner);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(fetch(inner, true));
                None
            }
            Err(_) => Some(fetch(inner, false)),
        }
    }

    /// Drops the cached token if it is `bearer` (the service refused it), so that the next
    /// request waits for a new one, and tells the provider
    /// ([`TokenProvider::token_refused`]). [`refused`](Self::refused) does this after a 401.
    pub(crate) fn invalidate(&self, bearer: &Bearer) {
        let dropped = lock(&self.inner.state).invalidate(bearer);
        if let Some(token) = dropped {
            self.inner.provider.token_refused(&token);
        }
    }

    /// Tells the cache that the service refused `bearer`: after a 401 the token is dropped
    /// ([`invalidate`](Self::invalidate)); both log what to check, at most every 5 minutes.
    /// The caller keeps the data and retries (after a 403, with a longer wait).
    pub(crate) fn refused(&self, failure: AuthFailure, bearer: &Bearer) {
        if failure == AuthFailure::Unauthorized {
            self.invalidate(bearer);
        }
        let now = SystemTime::now();
        let mut state = lock(&self.inner.state);
        let last = match failure {
            AuthFailure::Unauthorized => &mut state.hinted_401,
            AuthFailure::Forbidden => &mut state.hinted_403,
        };
        if last.is_some_and(|t| now.duration_since(t).is_ok_and(|d| d < HINT_INTERVAL)) {
            return;
        }
        *last = Some(now);
        drop(state);
        match failure {
            AuthFailure::Unauthorized => {
                opentelemetry::otel_warn!(
                    name: "AzureMonitor.Auth.Unauthorized",
                    message = "the ingestion service refused the Entra ID token (HTTP 401); a new token is fetched and the telemetry is retried. If this goes on, check that the token provider gives tokens for the scope below, of the tenant of the Application Insights resource",
                    scope = self.inner.scope.as_str()
                );
            }
            AuthFailure::Forbidden => {
                opentelemetry::otel_warn!(
                    name: "AzureMonitor.Auth.Forbidden",
                    message = "the ingestion service refused the Entra ID identity (HTTP 403): give it the \"Monitoring Metrics Publisher\" role on the Application Insights resource (a new role assignment takes a few minutes to apply); the telemetry is kept and retried with longer waits"
                );
            }
        }
    }
}

/// Reports a 401 or 403 answer to a request that carried `bearer` of `cache` (see
/// [`TokenCache::refused`]), or, to one sent without a token, logs that the resource may
/// require Entra ID (at most every 5 minutes per process).
pub(crate) fn refused(cache: Option<&TokenCache>, bearer: Option<&Bearer>, failure: AuthFailure) {
    if let (Some(cache), Some(bearer)) = (cache, bearer) {
        return cache.refused(failure, bearer);
    }
    static HINTED: Mutex<Option<SystemTime>> = Mutex::new(None);
    let now = SystemTime::now();
    {
        let mut last = lock(&HINTED);
        if last.is_some_and(|t| now.duration_since(t).is_ok_and(|d| d < HINT_INTERVAL)) {
            return;
        }
        *last = Some(now);
    }
    opentelemetry::otel_warn!(
        name: "AzureMonitor.Auth.TokenRequired",
        message = "the ingestion service refused telemetry sent without an Entra ID token (HTTP 401 or 403): the Application Insights resource may accept Entra ID authentication only. Pass a token provider or credential (`with_token_provider`, `with_credential`) or set APPLICATIONINSIGHTS_AUTHENTICATION_STRING; the telemetry is kept and retried",
        status = match failure {
            AuthFailure::Unauthorized => 401,
            AuthFailure::Forbidden => 403,
        }
    );
}

/// Asks the provider for a token (within [`FETCH_TIMEOUT`] when `timed`, which needs a Tokio
/// runtime) and records the result.
async fn fetch(inner: Arc<Inner>, timed: bool) {
    let mut guard = FetchGuard {
        inner: Arc::clone(&inner),
        result: None,
    };
    let get = inner.provider.get_token(&inner.scope);
    let result = if timed {
        match tokio::time::timeout(FETCH_TIMEOUT, get).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err(format!(
                "the token provider did not answer within {FETCH_TIMEOUT:?}"
            )),
        }
    } else {
        get.await.map_err(|e| e.to_string())
    };
    guard.result = Some(result);
}

/// Records a fetch's result, or that it was abandoned (its task dropped), and wakes the
/// callers waiting for it.
struct FetchGuard {
    inner: Arc<Inner>,
    result: Option<Result<AccessToken, String>>,
}

impl Drop for FetchGuard {
    fn drop(&mut self) {
        let mut state = lock(&self.inner.state);
        state.fetching = false;
        if let Some(result) = self.result.take() {
            state.apply(result, SystemTime::now());
        }
        drop(state);
        self.inner.changed.notify_waiters();
    }
}

/// What a `bearer` call does next.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Send this.
    Use(Bearer),
    /// Send this, and start a background fetch (the token is due for refresh).
    UseAndRefresh(Bearer),
    /// Start a fetch and wait for it.
    Fetch,
    /// Another caller's fetch is running: wait for it.
    Wait,
    /// No token, and no fetch before the backoff has passed.
    Fail(AuthError),
}

/// The cache's state; every decision is a method here, given the time.
#[derive(Default)]
struct State {
    /// The token and its bearer header.
    token: Option<(AccessToken, Bearer)>,
    /// When to refresh the token in the background.
    refresh_at: Option<SystemTime>,
    /// A fetch is running.
    fetching: bool,
    /// After a failure: no fetch before this.
    retry_at: Option<SystemTime>,
    /// Failures in a row.
    failures: u32,
    /// Why the last fetch failed.
    last_error: Option<String>,
    /// The last token the service refused with 401, until another one comes, and whether the
    /// provider has already handed it back once (then it is taken the next time).
    refused: Option<(Bearer, bool)>,
    /// When the 401 and 403 hints were last logged.
    hinted_401: Option<SystemTime>,
    hinted_403: Option<SystemTime>,
}

impl State {
    fn step(&mut self, now: SystemTime) -> Step {
        if self
            .token
            .as_ref()
            .is_some_and(|(t, _)| t.expires_at() <= now)
        {
            self.token = None;
            self.refresh_at = None;
        }
        let backing_off = self.retry_at.is_some_and(|at| now < at);
        if let Some((_, bearer)) = &self.token {
            let due = self.refresh_at.is_some_and(|at| at <= now);
            if due && !self.fetching && !backing_off {
                self.fetching = true;
                return Step::UseAndRefresh(bearer.clone());
            }
            return Step::Use(bearer.clone());
        }
        if self.fetching {
            return Step::Wait;
        }
        if let (true, Some(at)) = (backing_off, self.retry_at) {
            return Step::Fail(AuthError::Unavailable {
                reason: self
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "the token provider failed".to_owned()),
                retry_in: at.duration_since(now).unwrap_or_default(),
            });
        }
        self.fetching = true;
        Step::Fetch
    }

    fn apply(&mut self, result: Result<AccessToken, String>, now: SystemTime) {
        let token = match result {
            Ok(token) => token,
            Err(why) => return self.failed(why, now),
        };
        if token.expires_at() <= now {
            return self.failed(
                "the token provider returned an expired token".to_owned(),
                now,
            );
        }
        let Some(bearer) = Bearer::new(&token) else {
            return self.failed(
                "the token contains characters that an HTTP header cannot carry".to_owned(),
                now,
            );
        };
        match &mut self.refused {
            Some((refused, handed_back)) if *refused == bearer => {
                if !*handed_back {
                    *handed_back = true;
                    return self.failed(
                        "the token provider handed back the token the service refused (HTTP \
                         401); it is sent again after a backoff unless a new one comes"
                            .to_owned(),
                        now,
                    );
                }
                // Sent again; failures in a row stay counted, so that the next hold is longer.
                self.refused = None;
            }
            _ => {
                self.refused = None;
                self.failures = 0;
            }
        }
        let refresh_at = match token.refresh_at() {
            Some(at) => at.max(now + MIN_EXPLICIT_REFRESH_AGE),
            None => token
                .expires_at()
                .checked_sub(REFRESH_WINDOW)
                .unwrap_or(now)
                .max(now + MIN_REFRESH_AGE),
        };
        self.refresh_at = Some(refresh_at);
        self.retry_at = None;
        self.last_error = None;
        self.token = Some((token, bearer));
    }

    fn failed(&mut self, why: String, now: SystemTime) {
        self.failures = self.failures.saturating_add(1);
        let backoff = backoff(self.failures);
        self.retry_at = Some(now + backoff);
        opentelemetry::otel_warn!(
            name: "AzureMonitor.Auth.TokenFailed",
            message = "no Entra ID token could be had; telemetry is kept and sent once there is one",
            retry_in_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX),
            reason = why.as_str()
        );
        self.last_error = Some(why);
    }

    /// Drops the token if it is `bearer`, and returns it.
    fn invalidate(&mut self, bearer: &Bearer) -> Option<AccessToken> {
        if self.refused.as_ref().is_none_or(|(r, _)| r != bearer) {
            self.refused = Some((bearer.clone(), false));
        }
        if self.token.as_ref().is_some_and(|(_, b)| b == bearer) {
            self.refresh_at = None;
            return self.token.take().map(|(t, _)| t);
        }
        None
    }
}

/// The wait after the `failures`-th failure in a row: 3 s, 6 s, 12 s, ... at most 60 s.
fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    FIRST_BACKOFF
        .saturating_mul(1 << doublings)
        .min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests;
