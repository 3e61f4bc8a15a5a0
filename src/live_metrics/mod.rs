//! Live Metrics (QuickPulse): the portal's live stream, on the `2024-04-01-preview` protocol
//! (feature `live-metrics`, on by default).
//!
//! See [`LiveMetrics`] for what it shows and how to add it to a pipeline.
//!
//! Layout: [`filter`] (configurations, filters, derived metrics, document quotas), [`document`]
//! (items and documents from the Track mapping), [`collect`] (counters, CPU and memory),
//! [`state`] (the state machine) and [`protocol`] (wire format) are pure; [`client`] does the
//! I/O.

mod auth;
mod client;
mod collect;
mod document;
mod filter;
mod protocol;
mod state;

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::Resource;
use reqwest::Url;

use crate::convert::tags::shared_tags;
use crate::wire::{tag, Data, SharedTags};
use crate::{BuildError, ConnectionString};
pub(crate) use client::LiveAuth;
use client::{Client, ClientConfig};
use collect::Counters;
use document::{Item, Kind};
use filter::Engine;
use protocol::Identity;
use state::Timings;

/// The default shutdown timeout of [`LiveMetrics::shutdown`] and of the processors.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// The (instrumentation key, role, instance) of each client of this process that has not been
/// shut down: the portal expects one client per role instance (each has its own stream id, and
/// the page would show the instance twice). Clients of different roles (several services in one
/// process, as the demo runs) are fine.
static RUNNING_CLIENTS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Counts a client as running; `false` when one of the same key already runs.
fn register_client(key: &str) -> bool {
    let mut running = RUNNING_CLIENTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let first = !running.iter().any(|k| k == key);
    running.push(key.to_owned());
    first
}

/// Counts a client as stopped.
fn unregister_client(key: &str) {
    let mut running = RUNNING_CLIENTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(i) = running.iter().position(|k| k == key) {
        running.swap_remove(i);
    }
}

/// What the client thread and the processors share.
pub(crate) struct Shared {
    /// In Post state: the processors count and match only while this is set.
    subscribed: AtomicBool,
    /// Set once by the first shutdown.
    stopped: AtomicBool,
    counters: Counters,
    engine: Mutex<Engine>,
    /// `engine.wants(kind)` for each kind, so that items nobody asked for take no lock.
    wants: [AtomicBool; 4],
    ikey: String,
    identity: RwLock<Arc<Identity>>,
    /// Whether `identity` comes from the resource the process describes itself with (given to
    /// the builder, or handed to a processor by its provider) rather than the SDK's default:
    /// the client's first request waits for it (see [`client`]).
    identity_known: tokio::sync::watch::Sender<bool>,
    stream_id: String,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn new(ikey: String, tags: &SharedTags, identity_known: bool) -> Self {
        let stream_id = format!("{:032x}", fastrand::u128(..));
        Shared {
            identity_known: tokio::sync::watch::Sender::new(identity_known),
            subscribed: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            counters: Counters::default(),
            engine: Mutex::new(Engine::default()),
            wants: Default::default(),
            ikey,
            identity: RwLock::new(Arc::new(identity(tags, &stream_id))),
            stream_id,
        }
    }

    fn is_subscribed(&self) -> bool {
        self.subscribed.load(Relaxed)
    }

    fn engine(&self) -> MutexGuard<'_, Engine> {
        lock(&self.engine)
    }

    fn etag(&self) -> String {
        self.engine().etag().to_owned()
    }

    fn identity(&self) -> Arc<Identity> {
        Arc::clone(&self.identity.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Role and instance of the resource the processors were given (the Track items' own).
    fn set_tags(&self, tags: &SharedTags) {
        *self
            .identity
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(identity(tags, &self.stream_id));
        self.identity_known.send_replace(true);
    }

    fn apply_configuration(&self, etag: &str, body: &[u8]) {
        let mut engine = self.engine();
        engine.apply(etag, body);
        self.publish_wants(&engine);
    }

    fn reset_configuration(&self) {
        let mut engine = self.engine();
        engine.reset();
        self.publish_wants(&engine);
    }

    fn publish_wants(&self, engine: &Engine) {
        for kind in [
            Kind::Request,
            Kind::Dependency,
            Kind::Exception,
            Kind::Trace,
        ] {
            self.wants[kind.index()].store(engine.wants(kind), Relaxed);
        }
    }

    /// Counts one Track item and matches it against the configuration (only while subscribed).
    fn record(&self, data: &Data<'_>) {
        self.counters.record(data);
        let kind = match data {
            Data::Request(_) => Kind::Request,
            Data::RemoteDependency(_) => Kind::Dependency,
            Data::Exception(_) => Kind::Exception,
            Data::Message(_) => Kind::Trace,
            _ => return,
        };
        if self.wants[kind.index()].load(Relaxed) {
            if let Some(item) = Item::from_data(data) {
                self.engine().observe(&item);
            }
        }
    }
}

/// The identity of the data points from the resource and process tags.
fn identity(tags: &SharedTags, stream_id: &str) -> Identity {
    let machine_name = crate::convert::tags::host_name_from_kernel()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .or_else(|| std::env::var("COMPUTERNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "Unknown".to_owned());
    let get = |key: &str| tags.get(key).map(str::to_owned);
    Identity {
        version: get(tag::INTERNAL_SDK_VERSION.name).unwrap_or_default(),
        instance: get(tag::CLOUD_ROLE_INSTANCE.name).unwrap_or_else(|| machine_name.clone()),
        role_name: get(tag::CLOUD_ROLE.name).unwrap_or_default(),
        machine_name,
        stream_id: stream_id.to_owned(),
        is_web_app: std::env::var_os("WEBSITE_SITE_NAME").is_some_and(|v| !v.is_empty()),
    }
}

/// The Live Metrics client of a process. Cheap to clone; every clone is the same client.
///
/// The portal's *Live Metrics* page shows, second by second, the incoming request rate,
/// failures and durations, dependency calls, exceptions, the process's CPU and memory, sample
/// documents of failed requests and dependencies, exceptions and log lines, and metrics that
/// a person defines in the portal with filters. Nothing is collected or sent beyond a ping
/// every 5 seconds until a portal session opens the page.
///
/// [`LiveMetrics`] is the one client of a process. Add its processors to the providers of a
/// manual pipeline, **before** the exporting processors, so that it sees every span and log
/// record (also those a sampler recorded but did not sample):
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use opentelemetry_azure_monitor::{LiveMetrics, LogExporter, SpanExporter};
/// use opentelemetry_sdk::logs::SdkLoggerProvider;
/// use opentelemetry_sdk::trace::SdkTracerProvider;
///
/// let live = LiveMetrics::builder().build()?; // APPLICATIONINSIGHTS_CONNECTION_STRING
/// let tracer_provider = SdkTracerProvider::builder()
///     .with_span_processor(live.span_processor())
///     .with_batch_exporter(SpanExporter::builder().build()?)
///     .build();
/// let logger_provider = SdkLoggerProvider::builder()
///     .with_log_processor(live.log_processor())
///     .with_batch_exporter(LogExporter::builder().build()?)
///     .build();
/// // ...
/// tracer_provider.shutdown()?; // also stops Live Metrics
/// logger_provider.shutdown()?;
/// # Ok(()) }
/// ```
///
/// To turn it off, do not add the processors (or build without the `live-metrics` feature).
///
/// The processors see every span the SDK records: a span that a sampler records without
/// sampling (`SamplingDecision::RecordOnly`) is counted here and not exported, so the live
/// counts stay true counts. A span the sampler drops (`Drop`) reaches no processor at all.
///
///
/// The span processor counts requests and dependencies (with the Track mapping's `success`) and
/// the exceptions among span events; the log processor counts exceptions and matches traces.
#[derive(Clone)]
pub struct LiveMetrics {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    client: Client,
    /// The tags of the builder's resource, until a provider gives its own.
    tags: Arc<SharedTags>,
    /// Its key among the running clients (see [`RUNNING_CLIENTS`]).
    key: String,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The client's own `Drop` stops its thread.
        if self.shared.mark_stopped() {
            unregister_client(&self.key);
        }
    }
}

impl std::fmt::Debug for LiveMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveMetrics")
            .field("subscribed", &self.is_subscribed())
            .finish_non_exhaustive()
    }
}

impl LiveMetrics {
    /// A builder; see [`LiveMetricsBuilder`].
    pub fn builder() -> LiveMetricsBuilder {
        LiveMetricsBuilder::default()
    }

    /// Whether a portal session is watching (the client is posting): only then are spans and
    /// log records counted.
    pub fn is_subscribed(&self) -> bool {
        self.inner.shared.is_subscribed()
    }

    /// A span processor that feeds this client. Add it to the tracer provider before the
    /// exporting processor. Its `shutdown` stops the client.
    #[cfg(feature = "trace")]
    pub fn span_processor(&self) -> LiveMetricsSpanProcessor {
        LiveMetricsSpanProcessor {
            live: self.clone(),
            tags: Arc::clone(&self.inner.tags),
        }
    }

    /// A log processor that feeds this client. Add it to the logger provider before the
    /// exporting processor. Its `shutdown` stops the client.
    #[cfg(feature = "logs")]
    pub fn log_processor(&self) -> LiveMetricsLogProcessor {
        LiveMetricsLogProcessor {
            live: self.clone(),
            tags: Arc::clone(&self.inner.tags),
        }
    }

    /// Stops the client within `timeout`: no ping or post is sent after this returns (a request
    /// in flight is abandoned). Later calls return `Ok` at once.
    ///
    /// # Errors
    ///
    /// [`OTelSdkError::Timeout`] if the client's thread did not end in time; it sends nothing
    /// more, and ends on its own.
    pub fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        if self.inner.shared.mark_stopped() {
            unregister_client(&self.inner.key);
        }
        self.inner.shared.set_subscribed(false);
        if self.inner.client.shutdown(timeout) {
            Ok(())
        } else {
            Err(OTelSdkError::Timeout(timeout))
        }
    }

    /// [`shutdown_with_timeout`](Self::shutdown_with_timeout) with 5 seconds.
    ///
    /// # Errors
    ///
    /// As [`shutdown_with_timeout`](Self::shutdown_with_timeout).
    pub fn shutdown(&self) -> OTelSdkResult {
        self.shutdown_with_timeout(SHUTDOWN_TIMEOUT)
    }

    fn record(&self, data: &Data<'_>) {
        self.inner.shared.record(data);
    }

    fn is_active(&self) -> bool {
        self.inner.shared.is_subscribed() && !self.inner.shared.is_stopped()
    }
}

/// Short intervals for tests, in place of the protocol's 5 s / 1 s / 60 s / 20 s / 60 s
/// (feature `testing`).
#[cfg(feature = "testing")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveMetricsIntervals {
    /// Between pings without a polling hint (5 s).
    pub ping: Duration,
    /// Between posts (1 s).
    pub post: Duration,
    /// Pings failing for longer than this back off (60 s).
    pub max_ping_failure: Duration,
    /// Posts failing for longer than this back off (20 s).
    pub max_post_failure: Duration,
    /// The backoff (60 s).
    pub backoff: Duration,
}

#[cfg(feature = "testing")]
impl Default for LiveMetricsIntervals {
    fn default() -> Self {
        let t = Timings::default();
        LiveMetricsIntervals {
            ping: t.ping,
            post: t.post,
            max_ping_failure: t.max_ping_failure,
            max_post_failure: t.max_post_failure,
            backoff: t.backoff,
        }
    }
}

/// Builds a [`LiveMetrics`] client.
#[must_use]
#[derive(Default)]
pub struct LiveMetricsBuilder {
    connection_string: Option<String>,
    client: Option<reqwest::Client>,
    resource: Option<Resource>,
    timings: Option<Timings>,
    auth: Option<Arc<dyn LiveAuth>>,
    token_provider: Option<crate::auth::ProviderRef>,
}

impl std::fmt::Debug for LiveMetricsBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveMetricsBuilder")
            .field(
                "connection_string",
                &self.connection_string.as_ref().map(|_| "<redacted>"),
            )
            .field("resource", &self.resource)
            .finish_non_exhaustive()
    }
}

impl LiveMetricsBuilder {
    /// The connection string; its `LiveEndpoint` (or the one built from `EndpointSuffix`) is
    /// where the client talks. Defaults to `APPLICATIONINSIGHTS_CONNECTION_STRING`.
    pub fn with_connection_string(mut self, connection_string: impl Into<String>) -> Self {
        self.connection_string = Some(connection_string.into());
        self
    }

    /// The HTTP client (proxy, TLS settings). It should not follow redirects itself
    /// (`reqwest::redirect::Policy::none()`). Defaults to a rustls client that does not.
    pub fn with_http_client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// The resource whose `ai.cloud.role` and `ai.cloud.roleInstance` name this process in the
    /// portal until a provider hands its own resource to the processors (which the SDK does
    /// when the provider is built). Without it, the client sends nothing until a provider has
    /// done so (at most one ping interval, 5 s; then it names the process by the SDK's default
    /// resource until one does), so that the portal never lists the process under a role that
    /// is not its own.
    pub fn with_resource(mut self, resource: Resource) -> Self {
        self.resource = Some(resource);
        self
    }

    /// Short intervals, for tests (feature `testing`). Defaults to the protocol's.
    #[cfg(feature = "testing")]
    pub fn with_intervals(mut self, intervals: LiveMetricsIntervals) -> Self {
        self.timings = Some(Timings {
            ping: intervals.ping,
            post: intervals.post,
            max_ping_failure: intervals.max_ping_failure,
            max_post_failure: intervals.max_post_failure,
            backoff: intervals.backoff,
        });
        self
    }

    /// Authenticates with Entra ID, as the exporters'
    /// [`with_token_provider`](crate::SpanExporterBuilder::with_token_provider) does: with the
    /// same provider (the same `Arc`) they share one token.
    ///
    /// Defaults to the managed identity named by `APPLICATIONINSIGHTS_AUTHENTICATION_STRING`
    /// (feature `azure-identity`), else to no token.
    pub fn with_token_provider(mut self, provider: Arc<dyn crate::auth::TokenProvider>) -> Self {
        self.token_provider = Some(crate::auth::ProviderRef::new(provider));
        self
    }

    /// Authenticates with Entra ID through an Azure SDK credential, as the exporters'
    /// `with_credential` does (with the same credential they share one token).
    ///
    /// Defaults as [`with_token_provider`](Self::with_token_provider) does.
    #[cfg(feature = "azure-identity")]
    pub fn with_credential(
        mut self,
        credential: Arc<dyn azure_core::credentials::TokenCredential>,
    ) -> Self {
        self.token_provider = Some(crate::auth::ProviderRef::credential(credential));
        self
    }

    /// The connection string, HTTP client and Entra ID provider of the exporters' options: the
    /// one-call setup's Live Metrics talks to the same resource with the same identity.
    #[cfg(all(feature = "trace", feature = "logs", feature = "metrics"))]
    pub(crate) fn with_exporter_options(mut self, options: &crate::config::Options) -> Self {
        self.connection_string = options.connection_string.clone();
        self.client = options.client.clone();
        self.token_provider = options.token_provider.clone();
        self
    }

    /// The Entra ID token source (§9), in place of the token cache (tests).
    #[cfg(test)]
    pub(crate) fn with_auth(mut self, auth: Arc<dyn LiveAuth>) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Reads the connection string and starts the client's thread, which pings at once.
    ///
    /// # Errors
    ///
    /// [`BuildError::ConnectionString`] without a usable connection string,
    /// [`BuildError::Transport`] if the HTTP client or the thread cannot be started.
    pub fn build(self) -> Result<LiveMetrics, BuildError> {
        let cs = ConnectionString::resolve(self.connection_string.as_deref(), &|name| {
            std::env::var(name).ok()
        })?;
        let base = Url::parse(cs.live_endpoint())
            .map_err(|e| BuildError::Transport(format!("invalid LiveEndpoint: {e}")))?;
        // The Track path's token cache for the same provider and scope (one token per process).
        let auth = match self.auth {
            Some(auth) => Some(auth),
            None => crate::auth::resolve(
                self.token_provider,
                cs.aad_audience(),
                cs.live_endpoint(),
                &|name| std::env::var(name).ok(),
            )?
            .map(|cache| Arc::new(auth::CacheAuth::new(cache)) as Arc<dyn LiveAuth>),
        };
        let client = match self.client {
            Some(c) => c,
            None => reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| BuildError::Transport(e.to_string()))?,
        };
        // Without a resource here, the processors get their provider's when it is built.
        let known = self.resource.is_some();
        let resource = self.resource.unwrap_or_else(|| Resource::builder().build());
        let tags = Arc::new(shared_tags(&resource));
        let shared = Arc::new(Shared::new(
            cs.instrumentation_key().to_owned(),
            &tags,
            known,
        ));
        let client = Client::start(
            Arc::clone(&shared),
            ClientConfig {
                base,
                ikey: cs.instrumentation_key().to_owned(),
                timings: self.timings.unwrap_or_default(),
                client,
                auth,
            },
        )
        .map_err(|e| BuildError::Transport(format!("could not start Live Metrics: {e}")))?;
        let key = format!(
            "{}|{}|{}",
            cs.instrumentation_key(),
            tags.get("ai.cloud.role").unwrap_or_default(),
            tags.get("ai.cloud.roleInstance").unwrap_or_default()
        );
        if !register_client(&key) {
            opentelemetry::otel_warn!(
                name: "AzureMonitor.LiveMetrics.SecondClient",
                message = "a second Live Metrics client was started in this process for the same role instance; build one and share it (clone it) between providers"
            );
        }
        Ok(LiveMetrics {
            inner: Arc::new(Inner {
                shared,
                client,
                tags,
                key,
            }),
        })
    }
}

#[cfg(feature = "trace")]
mod span_processor {
    use super::*;
    use crate::convert::{span_to_envelopes, Context};
    use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};

    /// Feeds every ended span to [`LiveMetrics`]: requests, dependencies and the exceptions of
    /// their events. Does nothing (one atomic load) while no portal session watches.
    #[derive(Debug)]
    pub struct LiveMetricsSpanProcessor {
        pub(super) live: LiveMetrics,
        pub(super) tags: Arc<SharedTags>,
    }

    impl SpanProcessor for LiveMetricsSpanProcessor {
        fn on_start(&self, _span: &mut Span, _cx: &opentelemetry::Context) {}

        fn on_end(&self, span: SpanData) {
            if !self.live.is_active() {
                return;
            }
            let cx = Context {
                ikey: &self.live.inner.shared.ikey,
                tags: &self.tags,
            };
            let mut items = Vec::with_capacity(1 + span.events.len());
            span_to_envelopes(&span, &cx, false, &mut items);
            for item in &items {
                // Span events that are not exceptions are not Live Metrics traces (as JS).
                if !matches!(item.data, Data::Message(_)) {
                    self.live.record(&item.data);
                }
            }
        }

        fn force_flush(&self) -> OTelSdkResult {
            Ok(())
        }

        fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
            self.live.shutdown_with_timeout(timeout)
        }

        fn set_resource(&mut self, resource: &Resource) {
            self.tags = Arc::new(shared_tags(resource));
            self.live.inner.shared.set_tags(&self.tags);
        }
    }
}
#[cfg(feature = "trace")]
pub use span_processor::LiveMetricsSpanProcessor;

#[cfg(feature = "logs")]
mod log_processor {
    use super::*;
    use crate::convert::{log_to_envelope, Context};
    use opentelemetry::InstrumentationScope;
    use opentelemetry_sdk::logs::{LogProcessor, SdkLogRecord};

    /// Feeds every log record to [`LiveMetrics`]: exceptions and traces. Does nothing (one
    /// atomic load) while no portal session watches.
    #[derive(Debug)]
    pub struct LiveMetricsLogProcessor {
        pub(super) live: LiveMetrics,
        pub(super) tags: Arc<SharedTags>,
    }

    impl LogProcessor for LiveMetricsLogProcessor {
        fn emit(&self, record: &mut SdkLogRecord, scope: &InstrumentationScope) {
            if !self.live.is_active() {
                return;
            }
            let cx = Context {
                ikey: &self.live.inner.shared.ikey,
                tags: &self.tags,
            };
            let item = log_to_envelope(record, scope, &cx, std::time::SystemTime::now());
            self.live.record(&item.data);
        }

        fn force_flush(&self) -> OTelSdkResult {
            Ok(())
        }

        fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
            self.live.shutdown_with_timeout(timeout)
        }

        fn set_resource(&mut self, resource: &Resource) {
            self.tags = Arc::new(shared_tags(resource));
            self.live.inner.shared.set_tags(&self.tags);
        }
    }
}
#[cfg(feature = "logs")]
pub use log_processor::LiveMetricsLogProcessor;

#[cfg(all(test, feature = "testing"))]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    use super::*;
    use crate::testing::{IngestionServer, LiveServer};
    use crate::LiveMetricsIntervals;

    /// Hands out `token-1`, `token-2`, ...: a new one after each `invalidate`.
    #[derive(Default)]
    struct FakeAuth {
        generation: AtomicUsize,
    }

    impl LiveAuth for FakeAuth {
        fn bearer(
            &self,
        ) -> Pin<Box<dyn Future<Output = Result<reqwest::header::HeaderValue, String>> + Send + '_>>
        {
            let token = format!("Bearer token-{}", self.generation.load(SeqCst) + 1);
            Box::pin(async move {
                reqwest::header::HeaderValue::from_str(&token).map_err(|e| e.to_string())
            })
        }

        fn invalidate(&self) {
            self.generation.fetch_add(1, SeqCst);
        }
    }

    fn quick() -> LiveMetricsIntervals {
        LiveMetricsIntervals {
            ping: Duration::from_millis(30),
            post: Duration::from_millis(30),
            ..LiveMetricsIntervals::default()
        }
    }

    #[test]
    fn a_401_refreshes_the_token_and_the_client_keeps_pinging() {
        let ingestion = IngestionServer::start().unwrap();
        let fake = LiveServer::start().unwrap();
        fake.require_bearer(Some("token-2"));
        fake.set_subscribed(true);
        let auth = Arc::new(FakeAuth::default());
        let live = LiveMetrics::builder()
            .with_connection_string(fake.connection_string(&ingestion))
            .with_intervals(quick())
            .with_auth(Arc::clone(&auth) as Arc<dyn LiveAuth>)
            .build()
            .unwrap();
        assert!(fake.wait_until(Duration::from_secs(20), |r| r
            .iter()
            .filter(|r| r.status == 200 && r.body.is_array())
            .count()
            >= 2));
        live.shutdown().unwrap();
        let requests = fake.requests();
        assert_eq!(requests[0].status, 401);
        assert_eq!(requests[0].header("authorization"), Some("Bearer token-1"));
        assert_eq!(auth.generation.load(SeqCst), 1);
        assert!(requests[1..]
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer token-2") && r.status == 200));
        assert!(fake.problems().is_empty(), "{:?}", fake.problems());
    }

    #[test]
    fn a_403_keeps_the_client_pinging_with_the_same_token() {
        let ingestion = IngestionServer::start().unwrap();
        let fake = LiveServer::start().unwrap();
        fake.forbid_bearer(Some("token-1"));
        fake.set_subscribed(true);
        let auth = Arc::new(FakeAuth::default());
        let live = LiveMetrics::builder()
            .with_connection_string(fake.connection_string(&ingestion))
            .with_intervals(quick())
            .with_auth(Arc::clone(&auth) as Arc<dyn LiveAuth>)
            .build()
            .unwrap();
        assert!(fake.wait_until(Duration::from_secs(20), |r| r.len() >= 4));
        live.shutdown().unwrap();
        let requests = fake.requests();
        assert!(requests
            .iter()
            .all(|r| r.status == 403 && r.body.is_object()));
        // Not an expired token: nothing to refresh.
        assert_eq!(auth.generation.load(SeqCst), 0);
        assert!(!live.is_subscribed());
    }

    #[test]
    fn the_token_goes_only_to_allowed_redirect_targets() {
        let ingestion = IngestionServer::start().unwrap();
        let fake = LiveServer::start().unwrap();
        let foreign = LiveServer::start().unwrap();
        let allowed = LiveServer::start().unwrap();
        fake.set_polling_hint(Some(Duration::from_millis(30)));
        // Another host name (`localhost` is not `127.0.0.1`): refused.
        let foreign_port = foreign.endpoint().rsplit(':').next().unwrap().to_owned();
        fake.redirect_next_ping(&format!(
            "http://localhost:{foreign_port}/QuickPulseService.svc"
        ));
        let live = LiveMetrics::builder()
            .with_connection_string(fake.connection_string(&ingestion))
            .with_intervals(quick())
            .with_auth(Arc::new(FakeAuth::default()))
            .build()
            .unwrap();
        assert!(fake.wait_until(Duration::from_secs(20), |r| r.len() >= 3));
        fake.redirect_next_ping(&format!("{}/QuickPulseService.svc", allowed.endpoint()));
        assert!(allowed.wait_until(Duration::from_secs(20), |r| r.len() >= 2));
        live.shutdown().unwrap();
        assert!(foreign.requests().is_empty());
        assert!(allowed
            .requests()
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer token-1")));
    }

    #[test]
    fn one_client_per_role_instance_is_expected() {
        // Keys of this test only: other tests' clients run in the same process.
        assert!(register_client("test-ikey|frontend|a"));
        assert!(register_client("test-ikey|inventory|a"));
        assert!(!register_client("test-ikey|frontend|a"));
        unregister_client("test-ikey|frontend|a");
        unregister_client("test-ikey|frontend|a");
        assert!(register_client("test-ikey|frontend|a"));
        unregister_client("test-ikey|frontend|a");
        unregister_client("test-ikey|inventory|a");
    }
}
