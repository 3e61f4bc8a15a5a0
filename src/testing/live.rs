//! A local Live Metrics (QuickPulse) service, beside the ingestion server: [`LiveServer`].
//!
//! See [`LiveServer`].

use std::collections::VecDeque;
use std::fmt;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::IngestionServer;

/// Which operation a request was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LiveOperation {
    /// `…/QuickPulseService.svc/ping` (`IsSubscribed`).
    Ping,
    /// `…/QuickPulseService.svc/post` (`Publish`).
    Post,
}

/// One request the server received.
#[derive(Clone, Debug)]
pub struct LiveRequest {
    /// Ping or post; `None` for any other path.
    pub operation: Option<LiveOperation>,
    /// Request headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The JSON body (`Null` when it was not JSON).
    pub body: Value,
    /// The status it was answered with.
    pub status: u16,
    /// Contract violations found in it (empty when it was valid).
    pub problems: Vec<String>,
    /// When it arrived.
    pub received_at: Instant,
}

impl LiveRequest {
    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `x-ms-qps-configuration-etag`.
    pub fn etag(&self) -> Option<&str> {
        self.header("x-ms-qps-configuration-etag")
    }

    /// The data point of a ping, or the first of a post.
    pub fn data_point(&self) -> Option<&Value> {
        match &self.body {
            Value::Array(points) => points.first(),
            Value::Object(_) => Some(&self.body),
            _ => None,
        }
    }

    /// The value of metric `name` in the data point.
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.data_point()?["Metrics"]
            .as_array()?
            .iter()
            .find(|m| m["Name"] == name)
            .and_then(|m| m["Value"].as_f64())
    }

    /// The names of the metrics in the data point.
    pub fn metric_names(&self) -> Vec<String> {
        self.data_point()
            .and_then(|p| p["Metrics"].as_array())
            .map(|ms| {
                ms.iter()
                    .filter_map(|m| m["Name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The documents of the data point.
    pub fn documents(&self) -> Vec<Value> {
        self.data_point()
            .and_then(|p| p["Documents"].as_array().cloned())
            .unwrap_or_default()
    }

    /// The `CollectionConfigurationErrors` of the data point.
    pub fn errors(&self) -> Vec<Value> {
        self.data_point()
            .and_then(|p| p["CollectionConfigurationErrors"].as_array().cloned())
            .unwrap_or_default()
    }
}

/// A scripted failure for the next request (see [`LiveServer::push_fault`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LiveFault {
    /// Answer this status with a `ServiceError` body.
    Status(u16),
    /// Close the connection without an answer.
    DropConnection,
}

#[derive(Default)]
struct Script {
    subscribed: bool,
    etag: String,
    configuration: Option<Value>,
    hint: Option<Duration>,
    redirect: Option<String>,
    faults: VecDeque<LiveFault>,
    fail_all: Option<LiveFault>,
    bearer: Option<String>,
    forbidden: Option<String>,
}

#[derive(Default)]
struct State {
    script: Script,
    requests: Vec<LiveRequest>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A local Live Metrics (QuickPulse) service on `127.0.0.1`, beside the
/// [`IngestionServer`]. Dropping it stops it.
///
/// It answers `POST /QuickPulseService.svc/ping` and `/post` of the `2024-04-01-preview`
/// protocol as the service does, checks every request against the contract (LIVE-METRICS.md
/// §13: path and method, `api-version`, a GUID `ikey`, the identity headers and
/// `x-ms-qps-invariant-version: 5` on pings, a transmission time within ±5 minutes in .NET
/// ticks, one `MonitoringDataPoint` (ping) or an array of them (post) with the required fields,
/// ISO 8601 timestamps and durations, the `DocumentType` discriminator and the string
/// lengths), and records every request. A request that breaks the contract is answered 400 and
/// its [`LiveRequest::problems`] say why.
///
/// Scripted per test: whether a portal session is subscribed, the configuration and its ETag,
/// a polling hint, a one-time redirect, failures (a status or a dropped connection), a bearer
/// token to demand and one to refuse with 403. `GET /stats` answers a JSON summary (pings,
/// posts, the last ETag sent, documents by type and stream, metric names seen), also available
/// as [`LiveServer::stats`].
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use opentelemetry_azure_monitor::testing::{IngestionServer, LiveServer};
/// use opentelemetry_azure_monitor::{LiveMetrics, LiveMetricsIntervals};
///
/// let ingestion = IngestionServer::start()?;
/// let live = LiveServer::start()?;
/// live.set_polling_hint(Some(Duration::from_millis(50)));
/// let client = LiveMetrics::builder()
///     .with_connection_string(live.connection_string(&ingestion))
///     .build()?;
/// assert!(live.wait_until(Duration::from_secs(10), |requests| requests.len() >= 2));
/// client.shutdown()?;
/// assert!(live.problems().is_empty(), "{:?}", live.problems());
/// assert!(live.posts().is_empty()); // nobody subscribed
/// # Ok(()) }
/// ```
pub struct LiveServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for LiveServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveServer")
            .field("endpoint", &self.endpoint())
            .finish_non_exhaustive()
    }
}

impl LiveServer {
    /// Starts a server on a free port of `127.0.0.1`, on its own thread. Nobody is subscribed
    /// at first.
    ///
    /// # Errors
    ///
    /// When the port cannot be bound, or the thread or its runtime cannot be created.
    pub fn start() -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let std_listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let listener = {
            let _entered = runtime.enter();
            TcpListener::from_std(std_listener)?
        };
        let (stop, stop_rx) = watch::channel(false);
        let for_thread = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("azure-monitor-live-server".to_owned())
            .spawn(move || {
                runtime.block_on(accept_loop(listener, for_thread, stop_rx));
                runtime.shutdown_timeout(Duration::from_millis(200));
            })?;
        Ok(LiveServer {
            shared,
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The base URL, `http://127.0.0.1:PORT`: the `LiveEndpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `ingestion`'s connection string with `LiveEndpoint` set to this server.
    pub fn connection_string(&self, ingestion: &IngestionServer) -> String {
        format!(
            "InstrumentationKey={};IngestionEndpoint={};LiveEndpoint={}",
            ingestion.instrumentation_key(),
            ingestion.endpoint(),
            self.endpoint()
        )
    }

    /// Whether a portal session is watching: `x-ms-qps-subscribed` of the answers.
    pub fn set_subscribed(&self, subscribed: bool) {
        self.shared.lock().script.subscribed = subscribed;
    }

    /// The configuration sent with `x-ms-qps-configuration-etag: etag` to subscribed clients
    /// (a `CollectionConfigurationInfo`; its `ETag` member is set to `etag`).
    pub fn set_configuration(&self, etag: &str, mut configuration: Value) {
        configuration["ETag"] = Value::String(etag.to_owned());
        let mut state = self.shared.lock();
        state.script.etag = etag.to_owned();
        state.script.configuration = Some(configuration);
    }

    /// `x-ms-qps-service-polling-interval-hint` on answers to pings while not subscribed.
    pub fn set_polling_hint(&self, hint: Option<Duration>) {
        self.shared.lock().script.hint = hint;
    }

    /// Answers the next ping with `x-ms-qps-service-endpoint-redirect-v2: value`.
    pub fn redirect_next_ping(&self, value: &str) {
        self.shared.lock().script.redirect = Some(value.to_owned());
    }

    /// Queues a failure for the next request; failures are used in order, one per request.
    pub fn push_fault(&self, fault: LiveFault) {
        self.shared.lock().script.faults.push_back(fault);
    }

    /// Fails every request this way (after the queued ones) until called with `None`.
    pub fn fail_all(&self, fault: Option<LiveFault>) {
        self.shared.lock().script.fail_all = fault;
    }

    /// Demands `Authorization: Bearer <token>` (401 with the service's body otherwise).
    pub fn require_bearer(&self, token: Option<&str>) {
        self.shared.lock().script.bearer = token.map(str::to_owned);
    }

    /// Answers 403 (the service's "does not have permissions" body) to requests carrying
    /// `Authorization: Bearer <token>`: a valid token without the role on the resource.
    pub fn forbid_bearer(&self, token: Option<&str>) {
        self.shared.lock().script.forbidden = token.map(str::to_owned);
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<LiveRequest> {
        self.shared.lock().requests.clone()
    }

    /// The pings so far.
    pub fn pings(&self) -> Vec<LiveRequest> {
        self.of(LiveOperation::Ping)
    }

    /// The posts so far.
    pub fn posts(&self) -> Vec<LiveRequest> {
        self.of(LiveOperation::Post)
    }

    fn of(&self, op: LiveOperation) -> Vec<LiveRequest> {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| r.operation == Some(op))
            .cloned()
            .collect()
    }

    /// Every contract violation so far (`"<operation> #<index>: <problem>"`).
    pub fn problems(&self) -> Vec<String> {
        self.shared
            .lock()
            .requests
            .iter()
            .enumerate()
            .flat_map(|(i, r)| {
                r.problems
                    .iter()
                    .map(move |p| format!("{:?} #{i}: {p}", r.operation))
            })
            .collect()
    }

    /// Waits until `done(requests)` holds, at most `timeout`; returns whether it does. Blocks
    /// the calling thread.
    pub fn wait_until(&self, timeout: Duration, done: impl Fn(&[LiveRequest]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            if done(&state.requests) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Forgets the requests received so far.
    pub fn clear(&self) {
        self.shared.lock().requests.clear();
    }

    /// The `/stats` summary: `pings`, `posts`, `last_etag` (sent by the client), `documents`
    /// (by type and by stream id) and `metric_names`.
    pub fn stats(&self) -> Value {
        stats(&self.shared.lock().requests)
    }
}

impl Drop for LiveServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn stats(requests: &[LiveRequest]) -> Value {
    let mut by_type = serde_json::Map::new();
    let mut by_stream = serde_json::Map::new();
    let mut names: Vec<String> = Vec::new();
    for r in requests {
        for d in r.documents() {
            let t = d["DocumentType"].as_str().unwrap_or("?").to_owned();
            let n = by_type.get(&t).and_then(Value::as_u64).unwrap_or(0);
            by_type.insert(t, json!(n + 1));
            for id in d["DocumentStreamIds"].as_array().into_iter().flatten() {
                let id = id.as_str().unwrap_or("?").to_owned();
                let n = by_stream.get(&id).and_then(Value::as_u64).unwrap_or(0);
                by_stream.insert(id, json!(n + 1));
            }
        }
        for n in r.metric_names() {
            if !names.contains(&n) {
                names.push(n);
            }
        }
    }
    let count = |op| requests.iter().filter(|r| r.operation == Some(op)).count();
    json!({
        "pings": count(LiveOperation::Ping),
        "posts": count(LiveOperation::Post),
        "last_etag": requests.iter().rev().find_map(|r| r.etag()),
        "documents": {"by_type": by_type, "by_stream": by_stream},
        "metric_names": names,
    })
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let shared = Arc::clone(&shared);
                    connections.spawn(async move {
                        let service = service_fn(move |r| handle(r, Arc::clone(&shared)));
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.abort_all();
}

/// Makes hyper close the connection without an answer.
#[derive(Debug)]
struct Aborted;

impl fmt::Display for Aborted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection dropped by script")
    }
}

impl std::error::Error for Aborted {}

fn service_error(code: &str, message: &str) -> String {
    json!({
        "RequestId": "00000000-0000-0000-0000-000000000000",
        "ResponseDateTime": crate::wire::Timestamp(SystemTime::now()).to_bytes().iter().map(|b| char::from(*b)).collect::<String>(),
        "Code": code,
        "Message": message,
        "Exception": ""
    })
    .to_string()
}

fn respond(status: u16, headers: &[(&str, String)], body: String) -> Response<Full<Bytes>> {
    let mut builder = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    for (k, v) in headers {
        builder = builder.header(*k, v.as_str());
    }
    builder
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

async fn handle(
    request: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<Full<Bytes>>, Aborted> {
    let (parts, body) = request.into_parts();
    let raw = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if parts.method == Method::GET && parts.uri.path() == "/stats" {
        let s = stats(&shared.lock().requests).to_string();
        return Ok(respond(200, &[], s));
    }
    let operation = match parts.uri.path() {
        "/QuickPulseService.svc/ping" => Some(LiveOperation::Ping),
        "/QuickPulseService.svc/post" => Some(LiveOperation::Post),
        _ => None,
    };
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let gzip = find(&headers, "content-encoding") == Some("gzip");
    let authorization = find(&headers, "authorization").map(str::to_owned);
    let text = if gzip {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map(|_| out)
            .unwrap_or_default()
    } else {
        raw.to_vec()
    };
    let body: Value = serde_json::from_slice(&text).unwrap_or(Value::Null);
    let query: Vec<(String, String)> = parts.uri.query().map(url_pairs).unwrap_or_default();
    let q = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };

    let mut problems = Vec::new();
    let mut answer: Option<(u16, String)> = None;
    if operation.is_none() {
        answer = Some((404, service_error("NotFound", "")));
    } else if parts.method != Method::POST {
        answer = Some((405, service_error("InvalidOperation", "POST only")));
    } else if !q("ikey").is_some_and(is_guid) {
        problems.push("ikey is not a GUID".to_owned());
        answer = Some((
            400,
            service_error(
                "InvalidInput",
                "iKey is garbage or not in a valid GUID format",
            ),
        ));
    } else {
        if q("api-version") != Some("2024-04-01-preview") {
            problems.push(format!("api-version is {:?}", q("api-version")));
        }
        check_request(operation, &headers, &body, &mut problems);
        if !problems.is_empty() {
            answer = Some((400, service_error("InvalidInput", &problems.join("; "))));
        }
    }

    let mut state = shared.lock();
    let script = &mut state.script;
    let fault = if answer.is_none() {
        script
            .faults
            .pop_front()
            .or_else(|| script.fail_all.clone())
    } else {
        None
    };
    let mut extra: Vec<(&str, String)> = Vec::new();
    let (status, reply) = match (answer, fault) {
        (Some(a), _) => a,
        (None, Some(LiveFault::DropConnection)) => {
            state.requests.push(LiveRequest {
                operation,
                headers,
                body,
                status: 0,
                problems,
                received_at: Instant::now(),
            });
            shared.changed.notify_all();
            return Err(Aborted);
        }
        (None, Some(LiveFault::Status(code))) => (code, service_error("ServiceError", "")),
        (None, None) => {
            let expected = script.bearer.as_ref().map(|t| format!("Bearer {t}"));
            let forbidden = script.forbidden.as_ref().map(|t| format!("Bearer {t}"));
            if forbidden.is_some() && authorization == forbidden {
                (
                    403,
                    service_error(
                        "InvalidOperation",
                        "The Agent/SDK does not have permissions to send telemetry to this resource.",
                    ),
                )
            } else if expected.is_some() && authorization != expected {
                (
                    401,
                    service_error(
                        "InvalidOperation",
                        "Authorization token missing or invalid.",
                    ),
                )
            } else {
                extra.push(("x-ms-qps-subscribed", script.subscribed.to_string()));
                if operation == Some(LiveOperation::Ping) {
                    if let Some(r) = script.redirect.take() {
                        extra.push(("x-ms-qps-service-endpoint-redirect-v2", r));
                    }
                }
                if script.subscribed {
                    extra.push(("x-ms-qps-configuration-etag", script.etag.clone()));
                    let config = script.configuration.clone().unwrap_or_else(
                        || json!({"ETag": script.etag, "Metrics": [], "DocumentStreams": []}),
                    );
                    (200, config.to_string())
                } else {
                    if let Some(h) = script.hint {
                        if operation == Some(LiveOperation::Ping) {
                            extra.push((
                                "x-ms-qps-service-polling-interval-hint",
                                h.as_millis().to_string(),
                            ));
                        }
                    }
                    (
                        200,
                        json!({"ETag": "", "Metrics": [], "DocumentStreams": []}).to_string(),
                    )
                }
            }
        }
    };
    state.requests.push(LiveRequest {
        operation,
        headers,
        body,
        status,
        problems,
        received_at: Instant::now(),
    });
    shared.changed.notify_all();
    Ok(respond(status, &extra, reply))
}

/// `a=b&c=d`, percent-decoded.
fn url_pairs(query: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://x/?{query}"))
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

const TICKS_AT_UNIX_EPOCH: i64 = 621_355_968_000_000_000;

fn find<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn check_request(
    operation: Option<LiveOperation>,
    headers: &[(String, String)],
    body: &Value,
    problems: &mut Vec<String>,
) {
    let header = |name: &str| find(headers, name);
    let now_ticks = TICKS_AT_UNIX_EPOCH
        + (SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            / 100) as i64;
    match header("x-ms-qps-transmission-time").map(str::parse::<i64>) {
        Some(Ok(t)) if (t - now_ticks).abs() <= 5 * 60 * 10_000_000 => {}
        other => problems.push(format!(
            "x-ms-qps-transmission-time is not within 5 minutes of now in ticks: {other:?}"
        )),
    }
    if header("x-ms-qps-configuration-etag").is_none() {
        problems.push("no x-ms-qps-configuration-etag".to_owned());
    }
    match operation {
        Some(LiveOperation::Ping) => {
            for name in [
                "x-ms-qps-machine-name",
                "x-ms-qps-instance-name",
                "x-ms-qps-stream-id",
                "x-ms-qps-role-name",
            ] {
                if header(name).is_none() {
                    problems.push(format!("no {name} on a ping"));
                }
            }
            if header("x-ms-qps-invariant-version") != Some("5") {
                problems.push("x-ms-qps-invariant-version is not 5".to_owned());
            }
            if body.is_object() {
                check_point(body, problems);
            } else {
                problems.push("the ping body is not one MonitoringDataPoint".to_owned());
            }
        }
        Some(LiveOperation::Post) => match body.as_array() {
            Some(points) if !points.is_empty() => {
                for p in points {
                    check_point(p, problems);
                }
            }
            _ => problems.push("the post body is not an array of MonitoringDataPoint".to_owned()),
        },
        None => {}
    }
}

fn check_string(v: &Value, field: &str, max: usize, required: bool, problems: &mut Vec<String>) {
    match &v[field] {
        Value::String(s) if s.chars().count() <= max => {}
        Value::String(s) => problems.push(format!(
            "{field} is longer than {max} characters ({})",
            s.chars().count()
        )),
        Value::Null if !required => {}
        other => problems.push(format!("{field} is not a string: {other}")),
    }
}

fn check_point(p: &Value, problems: &mut Vec<String>) {
    for f in ["Version", "Instance", "RoleName", "MachineName", "StreamId"] {
        check_string(p, f, 1024, true, problems);
    }
    if !p["InvariantVersion"].is_i64() {
        problems.push("InvariantVersion is not an integer".to_owned());
    }
    for f in ["IsWebApp", "PerformanceCollectionSupported"] {
        if !p[f].is_boolean() {
            problems.push(format!("{f} is not a boolean"));
        }
    }
    if !p["Timestamp"].is_null() && !p["Timestamp"].as_str().is_some_and(is_iso_timestamp) {
        problems.push(format!("Timestamp is not ISO 8601: {}", p["Timestamp"]));
    }
    for m in p["Metrics"].as_array().into_iter().flatten() {
        if !(m["Name"].is_string() && m["Value"].is_number() && m["Weight"].is_i64()) {
            problems.push(format!("a metric is not {{Name, Value, Weight}}: {m}"));
        }
    }
    for d in p["Documents"].as_array().into_iter().flatten() {
        let fields: &[(&str, usize)] = match d["DocumentType"].as_str() {
            Some("Request") => &[
                ("Name", 1024),
                ("Url", 2048),
                ("ResponseCode", 1024),
                ("Duration", 1024),
            ],
            Some("RemoteDependency") => &[
                ("Name", 1024),
                ("CommandName", 2048),
                ("ResultCode", 1024),
                ("Duration", 1024),
            ],
            Some("Exception") => &[("ExceptionType", 1024), ("ExceptionMessage", 32_768)],
            Some("Event") => &[("Name", 512)],
            Some("Trace") => &[("Message", 32_768)],
            _ => {
                problems.push(format!("a document has no known DocumentType: {d}"));
                continue;
            }
        };
        for (f, max) in fields {
            check_string(d, f, *max, false, problems);
        }
        if let Some(duration) = d["Duration"].as_str() {
            if !is_iso_duration(duration) {
                problems.push(format!("Duration is not ISO 8601: {duration}"));
            }
        }
        if !d["DocumentStreamIds"].is_null() && !d["DocumentStreamIds"].is_array() {
            problems.push("DocumentStreamIds is not an array".to_owned());
        }
    }
    for e in p["CollectionConfigurationErrors"]
        .as_array()
        .into_iter()
        .flatten()
    {
        const TYPES: [&str; 13] = [
            "Unknown",
            "PerformanceCounterParsing",
            "PerformanceCounterUnexpected",
            "PerformanceCounterDuplicateIds",
            "DocumentStreamDuplicateIds",
            "DocumentStreamFailureToCreate",
            "DocumentStreamFailureToCreateFilterUnexpected",
            "MetricDuplicateIds",
            "MetricTelemetryTypeUnsupported",
            "MetricFailureToCreate",
            "MetricFailureToCreateFilterUnexpected",
            "FilterFailureToCreateUnexpected",
            "CollectionConfigurationFailureToCreateUnexpected",
        ];
        if !e["CollectionConfigurationErrorType"]
            .as_str()
            .is_some_and(|t| TYPES.contains(&t))
            || !e["Message"].is_string()
            || !e["FullException"].is_string()
            || !e["Data"].is_array()
        {
            problems.push(format!("an invalid CollectionConfigurationError: {e}"));
        }
    }
}

/// `YYYY-MM-DDThh:mm:ss[.f+](Z|±hh:mm)`.
fn is_iso_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if !(b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19))
    {
        return false;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &frac[n..];
    }
    rest == "Z" || (rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')))
}

/// `P[nY][nM][nD][T[nH][nM][n[.n]S]]` with at least one part.
fn is_iso_duration(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('P') else {
        return false;
    };
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let parts = |text: &str, units: &[char], fraction_last: bool| -> Option<usize> {
        let mut count = 0;
        let mut number = String::new();
        let mut allowed = units.iter();
        for c in text.chars() {
            if c.is_ascii_digit() || (c == '.' && fraction_last) {
                number.push(c);
            } else {
                allowed.by_ref().find(|u| **u == c)?;
                if number.is_empty() || number.matches('.').count() > 1 || number.ends_with('.') {
                    return None;
                }
                if number.contains('.') && c != 'S' {
                    return None;
                }
                number.clear();
                count += 1;
            }
        }
        number.is_empty().then_some(count)
    };
    let Some(d) = parts(date, &['Y', 'M', 'D'], false) else {
        return false;
    };
    match time {
        None => d > 0,
        Some(t) => parts(t, &['H', 'M', 'S'], true).is_some_and(|n| n > 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_checks() {
        assert!(is_iso_timestamp("2024-01-31T12:00:00.123456Z"));
        assert!(is_iso_timestamp("2024-01-31T12:00:00Z"));
        assert!(is_iso_timestamp("2024-01-31T12:00:00.1+01:00"));
        assert!(!is_iso_timestamp("/Date(1706702400000)/"));
        assert!(!is_iso_timestamp("2024-01-31 12:00:00Z"));
        assert!(is_iso_duration("PT0.0010105S"));
        assert!(is_iso_duration("PT2S"));
        assert!(is_iso_duration("P1DT2H"));
        assert!(!is_iso_duration("P0.0Y0.0M0.0DT0.0H0.0M0.0.000S"));
        assert!(!is_iso_duration("0.00:00:01.5"));
        assert!(!is_iso_duration("PT"));
        assert!(!is_iso_duration("P"));
    }

    #[test]
    fn guids() {
        assert!(is_guid("11111111-2222-4333-8444-555555555555"));
        assert!(!is_guid("garbage"));
    }
}
