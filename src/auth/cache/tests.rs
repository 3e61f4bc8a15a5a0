#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::auth::{TokenError, TokenFuture};

const HOUR: Duration = Duration::from_secs(3600);

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn token(secret: &str, expires_at: SystemTime) -> AccessToken {
    AccessToken::new(secret, expires_at)
}

fn bearer(secret: &str) -> Bearer {
    Bearer::new(&token(secret, t0())).unwrap()
}

fn header(step: &Step) -> String {
    match step {
        Step::Use(b) | Step::UseAndRefresh(b) => b.header_value().to_str().unwrap().to_owned(),
        other => panic!("no bearer in {other:?}"),
    }
}

#[test]
fn fetched_once_used_until_the_refresh_window_then_refreshed_in_the_background() {
    let mut s = State::default();
    assert_eq!(s.step(t0()), Step::Fetch);
    // A second caller meanwhile waits for the same fetch.
    assert_eq!(s.step(t0()), Step::Wait);
    s.fetching = false;
    s.apply(Ok(token("t1", t0() + HOUR)), t0());
    for at in [t0(), t0() + secs(1), t0() + HOUR - secs(301)] {
        assert_eq!(s.step(at), Step::Use(bearer("t1")), "{at:?}");
    }
    // Five minutes before expiry: one caller starts a refresh, everyone keeps sending t1.
    let due = t0() + HOUR - REFRESH_WINDOW;
    assert_eq!(s.step(due), Step::UseAndRefresh(bearer("t1")));
    assert_eq!(s.step(due), Step::Use(bearer("t1")));
    s.fetching = false;
    s.apply(Ok(token("t2", due + HOUR)), due);
    assert_eq!(header(&s.step(due)), "Bearer t2");
}

#[test]
fn a_failed_refresh_keeps_the_valid_token_until_it_expires() {
    let mut s = State::default();
    s.step(t0());
    s.fetching = false;
    let expiry = t0() + secs(400);
    let due = expiry - secs(5);
    s.apply(Ok(token("t1", expiry).with_refresh_at(due)), t0());
    assert_eq!(s.step(due), Step::UseAndRefresh(bearer("t1")));
    s.fetching = false;
    s.apply(Err("identity endpoint down".into()), due);
    // Backing off: no new refresh for 3 s, t1 still sent.
    assert_eq!(s.step(due + secs(2)), Step::Use(bearer("t1")));
    assert_eq!(s.step(due + secs(3)), Step::UseAndRefresh(bearer("t1")));
    s.fetching = false;
    s.apply(Err("identity endpoint down".into()), due + secs(3));
    // Expired: no token, and the next fetch only after the doubled backoff (6 s).
    match s.step(expiry) {
        Step::Fail(AuthError::Unavailable { reason, retry_in }) => {
            assert_eq!(reason, "identity endpoint down");
            assert_eq!(retry_in, secs(4));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.step(due + secs(9)), Step::Fetch);
}

#[test]
fn failures_back_off_from_3_to_60_seconds() {
    let waits: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
    assert_eq!(waits, [3, 6, 12, 24, 48, 60, 60, 60]);
    assert_eq!(backoff(u32::MAX), MAX_BACKOFF);

    let mut s = State::default();
    let mut now = t0();
    for expected in [3, 6, 12] {
        assert_eq!(s.step(now), Step::Fetch);
        s.fetching = false;
        s.apply(Err("nope".into()), now);
        assert!(matches!(s.step(now + secs(expected - 1)), Step::Fail(_)));
        now += secs(expected);
    }
    assert_eq!(s.step(now), Step::Fetch);
    s.fetching = false;
    s.apply(Ok(token("t1", now + HOUR)), now);
    assert_eq!(s.failures, 0);
}

#[test]
fn unusable_tokens_are_failures() {
    for (token, why) in [
        (token("old", t0()), "expired"),
        (token("new\nline", t0() + HOUR), "HTTP header"),
    ] {
        let mut s = State::default();
        s.step(t0());
        s.fetching = false;
        s.apply(Ok(token), t0());
        match s.step(t0()) {
            Step::Fail(AuthError::Unavailable { reason, .. }) => {
                assert!(reason.contains(why), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn after_a_401_a_new_token_is_taken_at_once() {
    let mut s = State::default();
    s.step(t0());
    s.fetching = false;
    s.apply(Ok(token("t1", t0() + HOUR)), t0());
    s.invalidate(&bearer("t1"));
    assert_eq!(s.step(t0()), Step::Fetch);
    s.fetching = false;
    s.apply(Ok(token("t2", t0() + HOUR)), t0());
    assert_eq!(s.step(t0()), Step::Use(bearer("t2")));
    // A stale 401 (for a token already replaced) changes nothing.
    s.invalidate(&bearer("t1"));
    assert_eq!(s.step(t0()), Step::Use(bearer("t2")));
}

#[test]
fn a_refused_token_handed_back_is_held_for_one_backoff() {
    let mut s = State::default();
    s.step(t0());
    s.fetching = false;
    s.apply(Ok(token("t1", t0() + HOUR)), t0());
    s.invalidate(&bearer("t1"));
    assert_eq!(s.step(t0()), Step::Fetch);
    s.fetching = false;
    // The credential's own cache hands t1 back: not sent for 3 s.
    s.apply(Ok(token("t1", t0() + HOUR)), t0());
    match s.step(t0() + secs(1)) {
        Step::Fail(AuthError::Unavailable { reason, .. }) => {
            assert!(reason.contains("refused (HTTP 401)"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.step(t0() + secs(3)), Step::Fetch);
    s.fetching = false;
    s.apply(Ok(token("t1", t0() + HOUR)), t0() + secs(3));
    assert_eq!(s.step(t0() + secs(3)), Step::Use(bearer("t1")));
    // Refused again: held for a longer backoff this time.
    s.invalidate(&bearer("t1"));
    s.step(t0() + secs(3));
    s.fetching = false;
    s.apply(Ok(token("t1", t0() + HOUR)), t0() + secs(3));
    assert!(matches!(s.step(t0() + secs(8)), Step::Fail(_)));
    assert_eq!(s.step(t0() + secs(9)), Step::Fetch);
}

#[test]
fn refresh_times() {
    // (lifetime, provider's refresh time after receipt, refresh after receipt)
    let cases = [
        (HOUR, None, HOUR - REFRESH_WINDOW),
        (secs(6 * 60), None, secs(60)),
        // Short-lived tokens: not refreshed more often than every 30 s (then at expiry).
        (secs(60), None, secs(30)),
        (secs(10), None, secs(30)),
        (HOUR, Some(secs(600)), secs(600)),
        (HOUR, Some(secs(0)), secs(1)),
    ];
    for (lifetime, explicit, expected) in cases {
        let mut s = State::default();
        let mut t = token("t", t0() + lifetime);
        if let Some(at) = explicit {
            t = t.with_refresh_at(t0() + at);
        }
        s.apply(Ok(t), t0());
        assert_eq!(
            s.refresh_at,
            Some(t0() + expected),
            "{lifetime:?} {explicit:?}"
        );
    }
}

#[test]
fn secrets_stay_out_of_debug_and_errors() {
    let t = token("s3cr3t-token", t0());
    let b = Bearer::new(&t).unwrap();
    assert!(b.header_value().is_sensitive());
    for text in [format!("{t:?}"), format!("{b:?}")] {
        assert!(!text.contains("s3cr3t"), "{text}");
    }
}

/// Counts its calls; hands out `t1`, `t2`, ... valid for an hour, after `gate` opens.
struct Counting {
    calls: AtomicUsize,
    refused: Mutex<Vec<String>>,
    gate: tokio::sync::Semaphore,
}

impl TokenProvider for Counting {
    fn get_token<'a>(&'a self, scope: &'a str) -> TokenFuture<'a> {
        Box::pin(async move {
            assert_eq!(scope, "scope/.default");
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            let _permit = self.gate.acquire().await.map_err(TokenError::new)?;
            Ok(AccessToken::new(format!("t{n}"), SystemTime::now() + HOUR))
        })
    }

    fn token_refused(&self, token: &AccessToken) {
        lock(&self.refused).push(token.secret().to_owned());
    }
}

fn counting(open: bool) -> Arc<Counting> {
    Arc::new(Counting {
        calls: AtomicUsize::new(0),
        refused: Mutex::new(Vec::new()),
        gate: tokio::sync::Semaphore::new(if open { 1000 } else { 0 }),
    })
}

#[tokio::test(flavor = "current_thread")]
async fn concurrent_callers_share_one_fetch() {
    let provider = counting(false);
    let cache = TokenCache::shared(
        ProviderRef::new(Arc::clone(&provider) as Arc<dyn TokenProvider>),
        "scope/.default".into(),
    );
    let callers: Vec<_> = (0..20)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.bearer().await })
        })
        .collect();
    tokio::task::yield_now().await;
    provider.gate.add_permits(1000);
    for caller in callers {
        let bearer = caller.await.unwrap().unwrap();
        assert_eq!(bearer.header_value(), "Bearer t1");
    }
    for _ in 0..100 {
        cache.bearer().await.unwrap();
    }
    assert_eq!(provider.calls.load(Ordering::SeqCst), 1);

    // A 401 drops t1; the next caller gets t2.
    cache.refused(AuthFailure::Unauthorized, &bearer("t1"));
    assert_eq!(cache.bearer().await.unwrap().header_value(), "Bearer t2");
    assert_eq!(provider.calls.load(Ordering::SeqCst), 2);
    // The provider heard of it, once (a late 401 for t1 is not news).
    cache.refused(AuthFailure::Unauthorized, &bearer("t1"));
    assert_eq!(*lock(&provider.refused), ["t1"]);
    // A 403 keeps it.
    cache.refused(AuthFailure::Forbidden, &bearer("t2"));
    assert_eq!(cache.bearer().await.unwrap().header_value(), "Bearer t2");
}

#[test]
fn one_cache_per_provider_and_scope_for_the_process() {
    let provider: Arc<dyn TokenProvider> = counting(true);
    let other: Arc<dyn TokenProvider> = counting(true);
    let a = TokenCache::shared(ProviderRef::new(Arc::clone(&provider)), "s/.default".into());
    let b = TokenCache::shared(ProviderRef::new(Arc::clone(&provider)), "s/.default".into());
    let c = TokenCache::shared(ProviderRef::new(Arc::clone(&provider)), "x/.default".into());
    let d = TokenCache::shared(ProviderRef::new(other), "s/.default".into());
    assert!(a.same_as(&b));
    assert!(!a.same_as(&c) && !a.same_as(&d));
    assert_eq!(c.scope(), "x/.default");
    assert!(format!("{a:?}").contains("s/.default"));
}

#[test]
fn a_fetch_abandoned_with_its_runtime_is_started_again() {
    let provider = counting(false);
    let cache = TokenCache::shared(
        ProviderRef::new(Arc::clone(&provider) as Arc<dyn TokenProvider>),
        "scope/.default".into(),
    );
    {
        // The caller's runtime (an exporter's worker) stops while the fetch hangs.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let pending = runtime.block_on(async {
            tokio::time::timeout(Duration::from_millis(20), cache.bearer()).await
        });
        assert!(pending.is_err(), "still waiting for the fetch");
    }
    assert!(!lock(&cache.inner.state).fetching);
    provider.gate.add_permits(1000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let bearer = runtime.block_on(cache.bearer()).unwrap();
    assert_eq!(bearer.header_value(), "Bearer t2");
}

#[test]
fn outside_a_runtime_the_caller_fetches_itself() {
    let provider = counting(true);
    let cache = TokenCache::shared(
        ProviderRef::new(Arc::clone(&provider) as Arc<dyn TokenProvider>),
        "scope/.default".into(),
    );
    let bearer = futures_executor::block_on(cache.bearer()).unwrap();
    assert_eq!(bearer.header_value(), "Bearer t1");
    let url = reqwest::Url::parse("http://example.com/v2.1/track").unwrap();
    let refused = futures_executor::block_on(cache.bearer_for(&url)).unwrap_err();
    assert_eq!(refused, AuthError::InsecureUrl("http://example.com".into()));
    assert!(refused.to_string().contains("use https"));
}
