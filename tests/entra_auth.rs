//! Entra ID through real SDK pipelines into the local ingestion server demanding a bearer token
//! (ENTRA-ID.md §9.A), with a token provider of the test's own that counts its calls.
//!
//! Synchronisation is by `force_flush`, `shutdown` and the server's `wait_for_*`; the one test
//! that needs time to pass (a refresh before expiry) polls a bounded number of times.

#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use opentelemetry::logs::{LogRecord as _, Logger as _, LoggerProvider as _};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::{Tracer as _, TracerProvider as _};
use opentelemetry_azure_monitor::auth::{AccessToken, TokenError, TokenFuture, TokenProvider};
use opentelemetry_azure_monitor::testing::{IngestionServer, TokenCheck};
use opentelemetry_azure_monitor::{
    BuildError, LogExporter, MetricExporter, RetryPolicy, SpanExporter,
};
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;

const WAIT: Duration = Duration::from_secs(20);
const HOUR: Duration = Duration::from_secs(3600);

/// Hands out `t1`, `t2`, ... valid for an hour; fails the calls listed in `failing` (1-based);
/// asks for an early refresh of `t1` when `refresh_first` is set.
#[derive(Default)]
struct Tokens {
    calls: AtomicUsize,
    failing: Vec<usize>,
    refresh_first: bool,
    scopes: Mutex<Vec<String>>,
}

impl Tokens {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl TokenProvider for Tokens {
    fn get_token<'a>(&'a self, scope: &'a str) -> TokenFuture<'a> {
        Box::pin(async move {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            self.scopes.lock().unwrap().push(scope.to_owned());
            // Awaited on the exporter's worker: Tokio's timers work here.
            tokio::time::sleep(Duration::from_millis(1)).await;
            if self.failing.contains(&n) {
                return Err(TokenError::new("the identity endpoint is down"));
            }
            let token = AccessToken::new(format!("t{n}"), SystemTime::now() + HOUR);
            Ok(if n == 1 && self.refresh_first {
                token.with_refresh_at(SystemTime::now())
            } else {
                token
            })
        })
    }
}

/// A server that accepts only the tokens in the returned set (401 for others, 403 for all
/// while `forbidden` holds `true`).
fn demanding(server: &IngestionServer, accepted: &[&str]) -> Arc<Mutex<(HashSet<String>, bool)>> {
    let state = Arc::new(Mutex::new((
        accepted
            .iter()
            .map(|t| (*t).to_owned())
            .collect::<HashSet<_>>(),
        false,
    )));
    let check = Arc::clone(&state);
    server.require_bearer_token(move |token| {
        let (accepted, forbidden) = &*check.lock().unwrap();
        if !accepted.contains(token) {
            TokenCheck::Unauthorized
        } else if *forbidden {
            TokenCheck::Forbidden
        } else {
            TokenCheck::Accept
        }
    });
    state
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy::default()
        .with_max_attempts(6)
        .with_initial_delay(Duration::from_millis(10))
        .with_max_delay(Duration::from_millis(100))
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        TempDir(std::env::temp_dir().join(format!(
            "azure-monitor-entra-{label}-{}-{:x}",
            std::process::id(),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        )))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tracer_provider(
    server: &IngestionServer,
    tokens: &Arc<Tokens>,
    storage: Option<&TempDir>,
) -> SdkTracerProvider {
    let builder = SpanExporter::builder()
        .with_connection_string(server.connection_string())
        .with_token_provider(Arc::clone(tokens) as Arc<dyn TokenProvider>)
        .with_retry_policy(fast_retries())
        .with_resource_metric(false);
    let builder = match storage {
        Some(dir) => builder.with_storage_directory(&dir.0),
        None => builder.with_offline_storage(false),
    };
    // The SDK's thread-based batch processor: tokens are fetched on the exporter's runtime.
    SdkTracerProvider::builder()
        .with_batch_exporter(builder.build().unwrap())
        .build()
}

/// Exports one span per name, one batch each.
fn spans(provider: &SdkTracerProvider, names: impl IntoIterator<Item = String>) {
    let tracer = provider.tracer("entra");
    for name in names {
        tracer.in_span(name, |_| {});
        provider.force_flush().unwrap();
    }
}

/// How many times each span name arrived.
fn arrived(server: &IngestionServer) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for item in server.envelopes() {
        if let Some(name) = item["data"]["baseData"]["name"].as_str() {
            *counts.entry(name.to_owned()).or_insert(0) += 1;
        }
    }
    counts
}

fn exactly_once(server: &IngestionServer, names: &[String]) {
    let counts = arrived(server);
    for name in names {
        assert_eq!(counts.get(name), Some(&1), "{name}: {counts:?}");
    }
}

#[test]
fn one_token_for_every_batch_and_every_exporter_of_the_process() {
    let server = IngestionServer::start().unwrap();
    server.require_token("t1");
    let tokens = Arc::new(Tokens::default());
    let tracing = tracer_provider(&server, &tokens, None);
    let logging = SdkLoggerProvider::builder()
        .with_batch_exporter(
            LogExporter::builder()
                .with_connection_string(server.connection_string())
                .with_token_provider(Arc::clone(&tokens) as Arc<dyn TokenProvider>)
                .with_offline_storage(false)
                .build()
                .unwrap(),
        )
        .build();
    let metering = SdkMeterProvider::builder()
        .with_reader(
            PeriodicReader::builder(
                MetricExporter::builder()
                    .with_connection_string(server.connection_string())
                    .with_token_provider(Arc::clone(&tokens) as Arc<dyn TokenProvider>)
                    .with_offline_storage(false)
                    .build()
                    .unwrap(),
            )
            .build(),
        )
        .build();

    let names: Vec<String> = (0..10).map(|i| format!("span {i}")).collect();
    spans(&tracing, names.clone());
    let logger = logging.logger("entra");
    let counter = metering.meter("entra").u64_counter("entra.batches").build();
    for i in 0..10 {
        let mut record = logger.create_log_record();
        record.set_body(format!("log {i}").into());
        logger.emit(record);
        logging.force_flush().unwrap();
        counter.add(1, &[]);
        metering.force_flush().unwrap();
    }

    exactly_once(&server, &names);
    assert!(server.rejected().is_empty(), "{:#?}", server.rejected());
    let requests = server.requests();
    assert!(requests.len() >= 30, "{}", requests.len());
    assert_eq!(server.requests_with_token("t1"), requests.len());
    // Three exporters, thirty batches: one token.
    assert_eq!(tokens.calls(), 1);
    assert_eq!(
        *tokens.scopes.lock().unwrap(),
        ["https://monitor.azure.com//.default"]
    );
    tracing.shutdown().unwrap();
    logging.shutdown().unwrap();
    metering.shutdown().unwrap();
}

#[test]
fn the_scope_follows_the_connection_strings_audience() {
    let server = IngestionServer::start().unwrap();
    server.require_token("t1");
    let tokens = Arc::new(Tokens::default());
    let exporter = SpanExporter::builder()
        .with_connection_string(format!(
            "{};AADAudience=https://monitor.azure.us",
            server.connection_string()
        ))
        .with_token_provider(Arc::clone(&tokens) as Arc<dyn TokenProvider>)
        .with_offline_storage(false)
        .build()
        .unwrap();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter)
        .build();
    spans(&provider, ["sovereign".to_owned()]);
    assert_eq!(
        *tokens.scopes.lock().unwrap(),
        ["https://monitor.azure.us/.default"]
    );
    assert_eq!(server.requests_with_token("t1"), server.requests().len());
    provider.shutdown().unwrap();
}

#[test]
fn a_401_fetches_a_new_token_and_loses_nothing() {
    let server = IngestionServer::start().unwrap();
    let accepted = demanding(&server, &["t1"]);
    let tokens = Arc::new(Tokens::default());
    let provider = tracer_provider(&server, &tokens, None);
    let before: Vec<String> = (0..3).map(|i| format!("before {i}")).collect();
    spans(&provider, before.clone());
    assert_eq!(tokens.calls(), 1);

    // The service stops taking t1 (revoked, or expired early).
    *accepted.lock().unwrap() = (["t2".to_owned()].into(), false);
    let after: Vec<String> = (0..3).map(|i| format!("after {i}")).collect();
    spans(&provider, after.clone());

    exactly_once(&server, &before);
    exactly_once(&server, &after);
    assert_eq!(tokens.calls(), 2);
    let unauthorized: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.status == Some(401))
        .collect();
    assert_eq!(unauthorized.len(), 1, "{unauthorized:#?}");
    assert_eq!(server.requests_with_token("t1"), 4);
    assert_eq!(server.requests_with_token("t2"), 3);
    provider.shutdown().unwrap();
}

#[test]
fn a_403_keeps_the_data_until_the_role_is_granted() {
    let server = IngestionServer::start().unwrap();
    let accepted = demanding(&server, &["t1"]);
    accepted.lock().unwrap().1 = true;
    let tokens = Arc::new(Tokens::default());
    let storage = TempDir::new("403");
    let provider = tracer_provider(&server, &tokens, Some(&storage));
    let names = vec!["no role yet".to_owned()];
    spans(&provider, names.clone());
    assert!(server.wait_for_requests(2, WAIT));
    assert!(server.envelopes().is_empty());
    let refused = server.requests();
    assert!(
        refused.iter().all(|r| r.status == Some(403)),
        "{refused:#?}"
    );
    assert!(refused[0]
        .error
        .as_deref()
        .unwrap()
        .contains("does not have permissions"));

    // The role assignment applies: the kept span arrives, with the same token.
    accepted.lock().unwrap().1 = false;
    assert!(server.wait_for_envelopes(1, WAIT));
    provider.shutdown().unwrap();
    exactly_once(&server, &names);
    assert_eq!(tokens.calls(), 1);
}

#[test]
fn no_token_keeps_the_data_and_sends_nothing_without_one() {
    let server = IngestionServer::start().unwrap();
    server.require_token("t2");
    let tokens = Arc::new(Tokens {
        failing: vec![1],
        ..Tokens::default()
    });
    let storage = TempDir::new("no-token");
    let provider = tracer_provider(&server, &tokens, Some(&storage));
    let names = vec!["kept".to_owned()];
    spans(&provider, names.clone());
    // The first fetch failed: the span waits (stored), and the next fetch (after the cache's
    // 3 s backoff) brings it through.
    assert!(server.wait_for_envelopes(1, WAIT));
    provider.shutdown().unwrap();
    exactly_once(&server, &names);
    assert_eq!(tokens.calls(), 2);
    // Nothing was ever sent without a token.
    let requests = server.requests();
    assert_eq!(server.requests_with_token("t2"), requests.len());
}

#[test]
fn a_token_due_for_refresh_is_replaced_before_it_expires() {
    let server = IngestionServer::start().unwrap();
    demanding(&server, &["t1", "t2"]);
    let tokens = Arc::new(Tokens {
        refresh_first: true,
        ..Tokens::default()
    });
    let provider = tracer_provider(&server, &tokens, None);
    // t1 asks to be refreshed at once (the cache waits at least a second): batches keep
    // using t1 meanwhile, and the refresh runs in the background.
    let mut i = 0;
    while server.requests_with_token("t2") == 0 && i < 60 {
        spans(&provider, [format!("span {i}")]);
        std::thread::sleep(Duration::from_millis(50));
        i += 1;
    }
    assert!(
        server.requests_with_token("t2") > 0,
        "no refresh after {i} batches"
    );
    assert!(server.requests_with_token("t1") > 0);
    assert!(server.rejected().is_empty(), "{:#?}", server.rejected());
    assert_eq!(tokens.calls(), 2);
    provider.shutdown().unwrap();
    assert_eq!(arrived(&server).len(), i);
}

#[test]
fn a_token_never_goes_over_plain_http_to_another_host() {
    let tokens: Arc<dyn TokenProvider> = Arc::new(Tokens::default());
    let key = "0f0e0d0c-0b0a-4909-8807-060504030201";
    let build = |endpoint: &str, with_token: bool| {
        let builder = SpanExporter::builder()
            .with_connection_string(format!(
                "InstrumentationKey={key};IngestionEndpoint={endpoint}"
            ))
            .with_offline_storage(false);
        let builder = if with_token {
            builder.with_token_provider(Arc::clone(&tokens))
        } else {
            builder
        };
        builder.build().map(drop)
    };
    let error = build("http://ingestion.example.com", true).unwrap_err();
    assert!(
        matches!(error, BuildError::InsecureEndpoint(_)),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("http://ingestion.example.com/v2.1/track"),
        "{message}"
    );
    assert!(message.contains("must use https"), "{message}");
    assert!(!message.contains(key), "{message}");
    for (endpoint, with_token) in [
        ("https://ingestion.example.com", true),
        ("http://127.0.0.1:9", true),
        ("http://localhost:9", true),
        ("http://[::1]:9", true),
        ("http://ingestion.example.com", false),
    ] {
        build(endpoint, with_token).unwrap_or_else(|e| panic!("{endpoint}: {e}"));
    }
}

#[test]
fn live_metrics_uses_the_track_paths_token() {
    use opentelemetry_azure_monitor::testing::LiveServer;
    use opentelemetry_azure_monitor::{LiveMetrics, LiveMetricsIntervals};

    let server = IngestionServer::start().unwrap();
    server.require_token("t1");
    let live_fake = LiveServer::start().unwrap();
    live_fake.require_bearer(Some("t1"));
    let tokens = Arc::new(Tokens::default());
    let tracing = tracer_provider(&server, &tokens, None);
    let live = LiveMetrics::builder()
        .with_connection_string(live_fake.connection_string(&server))
        .with_token_provider(Arc::clone(&tokens) as Arc<dyn TokenProvider>)
        .with_intervals(LiveMetricsIntervals {
            ping: Duration::from_millis(50),
            post: Duration::from_millis(50),
            max_ping_failure: Duration::from_secs(60),
            max_post_failure: Duration::from_secs(20),
            backoff: Duration::from_secs(60),
        })
        .build()
        .unwrap();

    let names: Vec<String> = (0..3).map(|i| format!("span {i}")).collect();
    spans(&tracing, names.clone());
    // Pings carry the same token; the fake answers 401 to any other.
    assert!(live_fake.wait_until(WAIT, |requests| requests.len() >= 3));
    live.shutdown().unwrap();
    exactly_once(&server, &names);
    for ping in live_fake.pings() {
        let authorization = ping
            .headers
            .iter()
            .find(|(name, _)| name == "authorization");
        assert_eq!(
            authorization.map(|(_, value)| value.as_str()),
            Some("Bearer t1")
        );
    }
    assert!(
        live_fake.problems().is_empty(),
        "{:?}",
        live_fake.problems()
    );
    // The exporter and Live Metrics: one token.
    assert_eq!(tokens.calls(), 1);
    tracing.shutdown().unwrap();
}
