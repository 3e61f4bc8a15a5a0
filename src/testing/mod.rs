//! A local Track-API ingestion server, to test telemetry end to end without Azure.
//!
//! [`IngestionServer`] listens on `127.0.0.1` (a free port), accepts `POST /v2.1/track` (and the
//! legacy `/v2/track`) like Application Insights' ingestion service ("Breeze"), checks every
//! telemetry item against the Track-API contract, and answers exactly as the service does: a
//! `TrackResponse` body `{"itemsReceived", "itemsAccepted", "errors": [{"index", "statusCode",
//! "message"}]}`, with status 200 when every item is accepted, 206 when some are, and the status
//! of the first item's error when none is. You then assert on what it received.
//!
//! It is independent of this crate's serializer: it reads what arrives as plain
//! [`serde_json::Value`]s and checks them against the contract itself, so it catches mistakes
//! of the exporter as well as of your own instrumentation. Enable it with the `testing` feature,
//! usually as a dev-dependency:
//!
//! ```toml
//! [dev-dependencies]
//! opentelemetry-azure-monitor = { version = "0.1", features = ["testing"] }
//! ```
//!
//! The [`viewer`] module starts the same server with web pages that show what it received the
//! way the Azure portal does (application map, transactions, failures, metrics): a local
//! Application Insights for any program on the machine.
//!
//! The server runs on its own thread with its own Tokio runtime, so it works the same from plain
//! `#[test]`s and from `#[tokio::test]`s of any flavour. It stops when it is dropped.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use opentelemetry_azure_monitor::testing::{Fault, IngestionServer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = IngestionServer::start()?;
//! // Script the answer to the next request: throttled, come back in 2 seconds.
//! server.push_fault(Fault::Status { code: 429, retry_after: Some("2".into()) });
//!
//! let url = format!("{}/v2.1/track", server.endpoint());
//! let body = serde_json::json!([{
//!     "name": "Microsoft.ApplicationInsights.Message",
//!     "time": now_rfc3339(), // e.g. "2025-01-31T12:00:00.0000000Z"
//!     "iKey": server.instrumentation_key(),
//!     "data": { "baseType": "MessageData", "baseData": { "ver": 2, "message": "hello" } }
//! }])
//! .to_string();
//!
//! let client = reqwest::Client::new();
//! let first = client.post(&url).body(body.clone()).send().await?;
//! assert_eq!(first.status(), 429);
//! assert_eq!(first.headers()["retry-after"], "2");
//!
//! let second = client.post(&url).body(body).send().await?;
//! assert_eq!(second.status(), 200);
//! assert_eq!(second.text().await?, r#"{"itemsReceived":1,"itemsAccepted":1,"errors":[]}"#);
//!
//! assert!(server.wait_for_envelopes(1, Duration::from_secs(5)));
//! assert_eq!(server.envelopes()[0]["data"]["baseData"]["message"], "hello");
//! // Only the scripted 429 refused anything: the data itself honours the contract.
//! assert!(server.rejected().iter().all(|rejection| rejection.scripted));
//! assert_eq!(server.requests().len(), 2);
//! # Ok(())
//! # }
//! # fn now_rfc3339() -> String {
//! #     let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
//! #     let (days, secs) = ((now.as_secs() / 86_400) as i64, now.as_secs() % 86_400);
//! #     let z = days + 719_468;
//! #     let (era, doe) = (z.div_euclid(146_097), z.rem_euclid(146_097));
//! #     let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
//! #     let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
//! #     let mp = (5 * doy + 2) / 153;
//! #     let (d, m) = (doy - (153 * mp + 2) / 5 + 1, if mp < 10 { mp + 3 } else { mp - 9 });
//! #     let y = yoe + era * 400 + i64::from(m <= 2);
//! #     format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:07}Z",
//! #         secs / 3600, secs / 60 % 60, secs % 60, now.subsec_nanos() / 100)
//! # }
//! ```
//!
//! With the exporters, point them at the server through its connection string, export, then
//! synchronise with `force_flush` or `shutdown` (never with sleeps):
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use opentelemetry::trace::{Tracer as _, TracerProvider as _};
//! use opentelemetry_azure_monitor::testing::IngestionServer;
//! use opentelemetry_azure_monitor::SpanExporter;
//! use opentelemetry_sdk::trace::SdkTracerProvider;
//!
//! let server = IngestionServer::start()?;
//! let exporter = SpanExporter::builder()
//!     .with_connection_string(server.connection_string())
//!     .with_offline_storage(false) // nothing to keep for a server that lives as long as the test
//!     .with_resource_metric(false) // only the spans' own items
//!     .build()?;
//! let provider = SdkTracerProvider::builder().with_simple_exporter(exporter).build();
//! provider.tracer("test").in_span("GET /orders", |_| {});
//! provider.force_flush()?;
//! assert!(server.rejected().is_empty(), "{:#?}", server.rejected());
//! assert_eq!(server.envelopes()[0]["data"]["baseType"], "RemoteDependencyData"); // an INTERNAL span
//! provider.shutdown()?;
//! # Ok(()) }
//! ```
//!
//! # What it checks
//!
//! The request:
//!
//! | Check | Answer when it fails |
//! |---|---|
//! | path is `/v2.1/track` or `/v2/track` | 404 |
//! | method is `POST` | 405 |
//! | `Content-Encoding` is absent, `identity` or `gzip` | 415 |
//! | the gzip body decompresses; the body is at most 64 MiB (compressed and not) | 400; 413 |
//! | the body is UTF-8, and a JSON array or NDJSON (one item per non-empty line; the `Content-Type` is not looked at, as the service does not) | 400 |
//! | at most 64,000 items | 400 |
//!
//! These whole-request failures answer a `TrackResponse` with one error at index 0 carrying the
//! reason; [`RequestRecord::error`] keeps it. An empty array `[]` is answered 200.
//!
//! Every item (see [`validate_envelope`]), each failure answered as a 400 for that item, with the
//! service's message format:
//!
//! | Where | Check |
//! |---|---|
//! | item | a JSON object of at most 64 KiB (65,536 bytes of compact JSON) |
//! | `name` | required, non-empty, at most 1024 characters |
//! | `time` | required, `YYYY-MM-DDThh:mm:ss[.f{1,9}]Z` (UTC with `Z`), a real date; not older than now − 48 h (`103`) |
//! | `iKey` | required, a GUID (either case); the server also requires its own key: otherwise `Invalid instrumentation key` |
//! | `ver` | when present, an int32 |
//! | `sampleRate` | when present, a number in (0, 100] |
//! | `seq` | when present, a string of at most 64 characters |
//! | `tags` | when present, an object of strings; the `ContextTagKeys` within their Bond limits (`ai.operation.id` 128, `ai.operation.name` 1024, `ai.cloud.role` 256, `ai.location.ip` 46, ...) |
//! | `data` | required, with `baseType` one of `RequestData`, `RemoteDependencyData`, `MessageData`, `ExceptionData`, `EventData`, `MetricData`, `PageViewData`, `PageViewPerfData`, `AvailabilityData`, and a `baseData` object with an int32 `ver` |
//! | `baseData` | the required fields of its type present and non-empty, every known field of the right JSON type and within its maximum length (table below) |
//! | durations | a .NET TimeSpan `[d.]hh:mm:ss[.f{1,7}]`, less than 1000 days (`108`) |
//! | `severityLevel` | `Verbose`, `Information`, `Warning`, `Error`, `Critical`, or the ordinal 0..4 |
//! | `properties` | an object; keys at most 150 characters; values strings of at most 8192 characters (262,144 for the gen_ai content keys such as `gen_ai.input.messages`) |
//! | `measurements` | an object; keys at most 150 characters; values numbers |
//!
//! | `baseType` | required | maximum lengths |
//! |---|---|---|
//! | `RequestData` | `id`, `duration`, `responseCode`, `success` (boolean) | id 512, name 1024, responseCode 1024, source 1024, url 2048 |
//! | `RemoteDependencyData` | `name`, `duration` | id 512, name 1024, resultCode 1024, data 8192, type 1024, target 1024 |
//! | `MessageData` | `message` | message 32768 |
//! | `ExceptionData` | `exceptions`: a non-empty array of `{typeName, message, ...}` | problemId 1024; typeName 1024, message 32768, stack 32768; `parsedStack` frames need `level` and `method` (1024) |
//! | `EventData` | `name` | name 512 |
//! | `MetricData` | `metrics`: a non-empty array of `{name, value, ...}` | name 1024, ns 256; `kind` is `Measurement` or `Aggregation` |
//! | `PageViewData`, `PageViewPerfData` | `id`, `name` | id 512, name 512, url 2048, referredUri 2048 |
//! | `AvailabilityData` | `id`, `name`, `duration`, `success` | id 512, name 1024, runLocation 1024, message 8192 |
//!
//! Where the sources disagree the stricter rule is applied (`ExceptionDetails.typeName` is
//! required, page-view names are limited to 512). Lengths count Unicode characters. A `null`
//! field counts as absent. Unknown fields and unknown tag keys are accepted, as the service does.
//!
//! Messages look like the service's: `109: Field 'name' on type 'Envelope' is required but
//! missing or empty. Expected: string, Actual: undefined`, `100: Field 'ai.operation.name' on
//! type 'ContextTagKeys' is too long. Expected: 1024 characters, Actual: 1169`, `108: Field
//! 'duration' on type 'RequestData' is not a valid duration string. ...`, `103: Field 'time' on
//! type 'Envelope' is older than the allowed min date. ...`. Checks whose real wording is not
//! publicly known (wrong JSON type, bad date-time, unknown `baseType`, item too large) use the
//! same shape without a numeric code.
//!
//! # Scripting faults
//!
//! [`IngestionServer::push_fault`] queues a [`Fault`]; each request takes the next one from the
//! queue (whatever its path) and gets it instead of the normal behaviour. With the queue empty,
//! requests are answered normally. Faulted requests are recorded with the fault
//! ([`RequestRecord::fault`]); items refused by a fault appear in
//! [`IngestionServer::rejected`] with [`Rejection::scripted`] set.
//!
//! | Fault | The client sees | Items kept in `envelopes()` |
//! |---|---|---|
//! | [`Fault::Status`] | that status, optional `Retry-After`, a `TrackResponse` with every item failed with that code | none |
//! | [`Fault::PartialFailure`] | the listed items failed with their codes (206: `Telemetry sampled out.`), the others checked normally: 206, or 200/4xx as the rules above say | the accepted ones |
//! | [`Fault::Delay`] | the normal answer, after the delay (the items are taken before it, as a slow service would) | the accepted ones |
//! | [`Fault::Hang`] | no answer until the server is dropped: a client timeout | none |
//! | [`Fault::DropConnection`] | the connection closed without an answer: a connection error | none |
//! | [`Fault::Redirect`] | a 307/308 (or any status given) with `Location` | none |
//!
//! A status that HTTP cannot carry (outside 100..=999) is answered as 500.
//!
//! # Entra ID
//!
//! [`IngestionServer::require_token`] and [`IngestionServer::require_bearer_token`] make the
//! server demand `Authorization: Bearer <token>`, as a resource with local authentication turned
//! off does: 401 without a valid token, 403 for an identity without the role (see
//! [`TokenCheck`]). [`IngestionServer::requests_with_token`] counts the requests that carried a
//! token.

#![cfg_attr(docsrs, doc(cfg(feature = "testing")))]

mod live;
mod server;
mod validate;
pub mod viewer;

pub use live::{LiveFault, LiveOperation, LiveRequest, LiveServer};

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use tokio::sync::watch;

/// The instrumentation key of every [`IngestionServer`] (an obviously fake GUID).
const INSTRUMENTATION_KEY: &str = "11111111-2222-4333-8444-555555555555";

/// An in-process Track-API ingestion server on `127.0.0.1`. See the [module docs](self) for what
/// it checks and how to script faults.
///
/// All methods take `&self` and are safe to call from any thread while requests are being
/// served. Dropping the server stops it: the port is closed, open connections get a short grace
/// period (about a second at most), and hanging requests are cut.
pub struct IngestionServer {
    shared: std::sync::Arc<Shared>,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl IngestionServer {
    /// Starts a server on `127.0.0.1` on a free port, on its own thread.
    ///
    /// # Errors
    ///
    /// When the port cannot be bound, or the thread or its runtime cannot be created.
    pub fn start() -> std::io::Result<Self> {
        Self::start_with(SocketAddr::from(([127, 0, 0, 1], 0)), None, None)
    }

    /// Starts a server on `addr`, serving the viewer's routes too when `viewer` is given, and
    /// keeping at most `limit` entries in each of its lists when one is given.
    fn start_with(
        addr: SocketAddr,
        viewer: Option<std::sync::Arc<viewer::Hub>>,
        limit: Option<usize>,
    ) -> std::io::Result<Self> {
        let shared = std::sync::Arc::new(Shared {
            viewer,
            limit,
            ..Shared::default()
        });
        let (addr, stop, thread) = server::start(std::sync::Arc::clone(&shared), addr)?;
        Ok(IngestionServer {
            shared,
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The server's base URL, `http://127.0.0.1:PORT` (no trailing slash); the track endpoint
    /// is `{endpoint}/v2.1/track`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A connection string for this server:
    /// `InstrumentationKey=<key>;IngestionEndpoint=http://127.0.0.1:PORT;LiveEndpoint=http://127.0.0.1:PORT`.
    /// The server is its own `LiveEndpoint`, so that a Live Metrics client (the one-call setup
    /// starts one) talks to loopback only: it answers Live Metrics pings and posts with "no portal
    /// session is watching" (a [`viewer`]'s server: "watching" while its Live page is open)
    /// and does not count them among [`requests`](Self::requests). To
    /// script Live Metrics, use [`LiveServer::connection_string`](LiveServer::connection_string).
    pub fn connection_string(&self) -> String {
        format!(
            "InstrumentationKey={};IngestionEndpoint={};LiveEndpoint={}",
            INSTRUMENTATION_KEY,
            self.endpoint(),
            self.endpoint()
        )
    }

    /// The viewer's URL, `http://127.0.0.1:PORT/`, when the server was started by
    /// [`ViewerBuilder`](viewer::ViewerBuilder); `None` otherwise.
    pub fn viewer_url(&self) -> Option<String> {
        self.shared
            .viewer
            .as_ref()
            .map(|_| format!("{}/", self.endpoint()))
    }

    /// The instrumentation key the server expects in every envelope's `iKey` (a fixed test
    /// GUID, compared case-insensitively).
    pub fn instrumentation_key(&self) -> &str {
        INSTRUMENTATION_KEY
    }

    /// Every item accepted so far, as received, in arrival order.
    pub fn envelopes(&self) -> Vec<Value> {
        self.shared.lock().envelopes.clone()
    }

    /// Every item refused so far, with the status and message it was answered with, in arrival
    /// order. Contract violations have [`Rejection::scripted`] unset.
    pub fn rejected(&self) -> Vec<Rejection> {
        self.shared.lock().rejected.clone()
    }

    /// Every request received so far, in arrival order, including faulted ones.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.lock().requests.clone()
    }

    /// Queues a fault: the next request that has none gets it instead of the normal answer.
    /// Faults are used in the order they were pushed, one per request.
    pub fn push_fault(&self, fault: Fault) {
        self.shared.lock().faults.push_back(fault);
    }

    /// Waits until at least `n` items have been accepted in total, at most `timeout`. Returns
    /// whether they have.
    ///
    /// This blocks the calling thread. In an async test, call it where blocking is fine (a
    /// multi-threaded runtime, or `spawn_blocking`), not on the only thread of a current-thread
    /// runtime that still has to drive the request being waited for.
    pub fn wait_for_envelopes(&self, n: usize, timeout: Duration) -> bool {
        self.shared
            .wait_until(timeout, |state| state.envelopes.len() >= n)
    }

    /// Waits until at least `n` requests have been received in total (faulted ones included;
    /// a hanging request counts once it has arrived), at most `timeout`. Returns whether they
    /// have. Blocks the calling thread, like [`wait_for_envelopes`](Self::wait_for_envelopes).
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        self.shared
            .wait_until(timeout, |state| state.requests.len() >= n)
    }

    /// Demands an Entra ID bearer token, as a resource with local authentication turned off
    /// does: a request without `Authorization: Bearer <token>` is answered 401, and `check`
    /// decides for the others (see [`TokenCheck`]). Refused requests are answered with a
    /// `TrackResponse` failing every item with that status and the service's message (401
    /// `Authorization token missing or invalid.`, 403 `The Agent/SDK does not have permissions
    /// to send telemetry to this resource.`), before any scripted fault is used. They are
    /// recorded, with their items in [`rejected`](Self::rejected) (scripted).
    ///
    /// Defaults to no check (any or no token is accepted).
    ///
    /// ```
    /// use opentelemetry_azure_monitor::testing::{IngestionServer, TokenCheck};
    ///
    /// # fn main() -> std::io::Result<()> {
    /// let server = IngestionServer::start()?;
    /// server.require_bearer_token(|token| match token {
    ///     "good" => TokenCheck::Accept,
    ///     "no-role" => TokenCheck::Forbidden,
    ///     _ => TokenCheck::Unauthorized,
    /// });
    /// // ... export, then:
    /// assert_eq!(server.requests_with_token("good"), 0);
    /// # Ok(()) }
    /// ```
    pub fn require_bearer_token(&self, check: impl Fn(&str) -> TokenCheck + Send + Sync + 'static) {
        self.shared.lock().token_check = Some(std::sync::Arc::new(check));
    }

    /// Demands exactly this bearer token: [`require_bearer_token`](Self::require_bearer_token)
    /// accepting `token` and answering 401 to any other.
    pub fn require_token(&self, token: impl Into<String>) {
        let token = token.into();
        self.require_bearer_token(move |got| {
            if got == token {
                TokenCheck::Accept
            } else {
                TokenCheck::Unauthorized
            }
        });
    }

    /// How many requests so far carried `Authorization: Bearer <token>` (whatever the answer).
    pub fn requests_with_token(&self, token: &str) -> usize {
        let header = format!("Bearer {token}");
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| r.authorization.as_deref() == Some(header.as_str()))
            .count()
    }

    /// Forgets everything received so far (envelopes, rejections, requests) and every fault not
    /// used yet.
    pub fn clear(&self) {
        let mut state = self.shared.lock();
        state.envelopes.clear();
        state.rejected.clear();
        state.requests.clear();
        state.dropped_requests = 0;
        state.faults.clear();
    }
}

impl fmt::Debug for IngestionServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IngestionServer")
            .field("endpoint", &self.endpoint())
            .finish_non_exhaustive()
    }
}

impl Drop for IngestionServer {
    fn drop(&mut self) {
        // An error means the server thread is already gone.
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            // The thread bounds its own shutdown; a panic there has nothing left to clean up.
            let _ = thread.join();
        }
    }
}

/// A scripted answer for the next request (see [`IngestionServer::push_fault`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Fail the whole request with status `code` (e.g. 500, 503, 429, 402, 401): the body is a
    /// `TrackResponse` with every item failed with that code, and `Retry-After` is sent when
    /// given (delta-seconds such as `"2"` or an HTTP-date; sent as is).
    Status {
        /// The HTTP status.
        code: u16,
        /// The `Retry-After` header value, if any.
        retry_after: Option<String>,
    },
    /// Fail these items, by index in the request, with these codes; the others are checked
    /// normally. Code 206 is the service's "Telemetry sampled out." (accepted and sampled, not
    /// to be re-sent). Indices beyond the request are ignored.
    PartialFailure(Vec<(usize, u16)>),
    /// Answer normally, after this delay.
    Delay(Duration),
    /// Never answer; the request is cut when the server is dropped.
    Hang,
    /// Close the connection without answering.
    DropConnection,
    /// Answer with this status (307 or 308 for the service's stamp redirects) and `Location`.
    Redirect {
        /// The HTTP status.
        status: u16,
        /// The `Location` header value.
        location: String,
    },
}

/// What [`IngestionServer::require_bearer_token`] does with a request's bearer token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenCheck {
    /// Valid: the request is handled normally.
    Accept,
    /// Missing or invalid (expired, wrong audience): 401.
    Unauthorized,
    /// Valid, but the identity lacks the "Monitoring Metrics Publisher" role: 403.
    Forbidden,
}

/// The check of [`IngestionServer::require_bearer_token`].
type TokenChecker = std::sync::Arc<dyn Fn(&str) -> TokenCheck + Send + Sync>;

/// An item the server refused.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Rejection {
    /// The request it came in: an index into [`IngestionServer::requests`].
    pub request: usize,
    /// Its index in that request, as in the response's `errors[].index`.
    pub index: usize,
    /// The status code it was answered with (`errors[].statusCode`).
    pub status: u16,
    /// The message it was answered with (`errors[].message`).
    pub message: String,
    /// The item as received.
    pub item: Value,
    /// Whether a [`Fault`] refused it, rather than the contract check.
    pub scripted: bool,
}

/// What the server saw of one request and how it answered.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestRecord {
    /// The HTTP method, e.g. `POST`.
    pub method: String,
    /// The path, e.g. `/v2.1/track`.
    pub path: String,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// The `Content-Encoding` header.
    pub content_encoding: Option<String>,
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
    /// The `Authorization` header (e.g. `Bearer <token>`); hidden from `Debug`.
    pub authorization: Option<String>,
    /// The body size on the wire, in bytes.
    pub body_bytes: usize,
    /// The number of items the body held (0 when it could not be read).
    pub items: usize,
    /// The status answered; `None` when no answer was sent ([`Fault::Hang`],
    /// [`Fault::DropConnection`]).
    pub status: Option<u16>,
    /// The reason of a whole-request failure (bad body, wrong path, scripted status), if any.
    pub error: Option<String>,
    /// The fault used for this request, if any.
    pub fault: Option<Fault>,
}

impl fmt::Debug for RequestRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestRecord")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("content_type", &self.content_type)
            .field("content_encoding", &self.content_encoding)
            .field("user_agent", &self.user_agent)
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "<redacted>"),
            )
            .field("body_bytes", &self.body_bytes)
            .field("items", &self.items)
            .field("status", &self.status)
            .field("error", &self.error)
            .field("fault", &self.fault)
            .finish()
    }
}

/// Checks one telemetry item against the Track-API contract, as [`IngestionServer`] does (see
/// the [module docs](self) for the list), except that any GUID is accepted as `iKey`. The
/// 48-hour window of `time` is measured from now.
///
/// # Errors
///
/// The first violation found, with the message the server would answer, e.g.
/// `109: Field 'message' on type 'MessageData' is required but missing or empty. Expected:
/// string, Actual: undefined`.
pub fn validate_envelope(envelope: &Value) -> Result<(), String> {
    validate::check_item(envelope, SystemTime::now(), None)
}

/// State shared between the server thread and the handle.
#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    /// The viewer fed by this server and serving its pages, if any.
    viewer: Option<std::sync::Arc<viewer::Hub>>,
    /// Most entries kept in each list of [`State`] (oldest dropped first); `None`: all.
    limit: Option<usize>,
}

#[derive(Default)]
struct State {
    envelopes: Vec<Value>,
    rejected: Vec<Rejection>,
    requests: Vec<RequestRecord>,
    /// Requests dropped from the front of `requests` by the limit.
    dropped_requests: usize,
    faults: VecDeque<Fault>,
    token_check: Option<TokenChecker>,
}

/// A refused item as the handler reports it: `(index, status, message, item, scripted)`.
type RefusedItem = (usize, u16, String, Value, bool);

impl Shared {
    /// The state, also after a panic elsewhere poisoned the lock (every update is complete
    /// before the guard is released, so the data is consistent).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn instrumentation_key(&self) -> &str {
        INSTRUMENTATION_KEY
    }

    /// The status a request with this `Authorization` header gets for its credentials, if it
    /// is refused.
    fn refuse_token(&self, authorization: Option<&str>) -> Option<u16> {
        let check = self.lock().token_check.clone()?;
        let token = authorization
            .and_then(|a| a.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        match token.map(|t| check(t)) {
            Some(TokenCheck::Accept) => None,
            Some(TokenCheck::Forbidden) => Some(403),
            None | Some(TokenCheck::Unauthorized) => Some(401),
        }
    }

    fn pop_fault(&self) -> Option<Fault> {
        self.lock().faults.pop_front()
    }

    /// Records one request and what it brought, and wakes the waiters.
    fn record(&self, request: RequestRecord, accepted: Vec<Value>, refused: Vec<RefusedItem>) {
        let refused = match &self.viewer {
            Some(viewer) => {
                // A long-running viewer keeps refused items cut to a bounded size.
                let refused: Vec<RefusedItem> = refused
                    .into_iter()
                    .map(|(i, status, message, item, scripted)| {
                        (i, status, message, viewer::bounded(item), scripted)
                    })
                    .collect();
                viewer.record(&request, &accepted, &refused);
                refused
            }
            None => refused,
        };
        let mut state = self.lock();
        let request_index = state.dropped_requests + state.requests.len();
        state.requests.push(request);
        state.envelopes.extend(accepted);
        state.rejected.extend(refused.into_iter().map(
            |(index, status, message, item, scripted)| Rejection {
                request: request_index,
                index,
                status,
                message,
                item,
                scripted,
            },
        ));
        if let Some(limit) = self.limit {
            // Drop in batches, so that keeping the limit costs O(1) per item on average.
            let slack = limit / 8 + 1;
            if state.envelopes.len() > limit + slack {
                let excess = state.envelopes.len() - limit;
                state.envelopes.drain(..excess);
            }
            if state.rejected.len() > limit + slack {
                let excess = state.rejected.len() - limit;
                state.rejected.drain(..excess);
            }
            if state.requests.len() > limit + slack {
                let excess = state.requests.len() - limit;
                state.requests.drain(..excess);
                state.dropped_requests += excess;
            }
        }
        drop(state);
        self.changed.notify_all();
    }

    fn wait_until(&self, timeout: Duration, done: impl Fn(&State) -> bool) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        let mut state = self.lock();
        loop {
            if done(&state) {
                return true;
            }
            let left = match deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                // A timeout too large to represent: wait in long steps.
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                return false;
            }
            state = match self.changed.wait_timeout(state, left) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}
