//! The HTTP side of [`IngestionServer`](super::IngestionServer): a hyper 1 server on its own
//! thread and current-thread Tokio runtime, and the request handler that answers like the
//! Track API.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::validate::check_item;
use super::{Fault, RequestRecord, Shared};

/// Largest request body accepted, compressed or not (the server's own guard, not a documented
/// limit of the service).
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
/// Most items in one request (INGESTION §2).
const MAX_ITEMS: usize = 64_000;
/// How long open connections get to finish when the server stops.
const GRACE: Duration = Duration::from_secs(1);
/// The track paths the service answers on.
const TRACK_PATHS: &[&str] = &["/v2.1/track", "/v2/track"];
/// The Live Metrics paths. The server's connection string names the server itself as
/// `LiveEndpoint`, so that a Live Metrics client pointed at it talks to loopback only; it
/// answers "no portal session is watching", and the client keeps pinging. (The scriptable fake
/// is [`LiveServer`](super::LiveServer).)
/// A viewer server plays the service instead and answers "watched" while its Live page is open
/// (see `viewer/live.rs`).
const LIVE_PATHS: &[&str] = &["/QuickPulseService.svc/ping", "/QuickPulseService.svc/post"];
/// Largest Live Metrics body a viewer reads (one data point with at most ~20 documents is far
/// smaller).
const MAX_LIVE_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Starts the server thread. Returns the bound address, the stop signal and the thread.
pub(crate) fn start(
    shared: Arc<Shared>,
    addr: SocketAddr,
) -> io::Result<(SocketAddr, watch::Sender<bool>, JoinHandle<()>)> {
    let std_listener = std::net::TcpListener::bind(addr)?;
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
    let (stop_tx, stop_rx) = watch::channel(false);
    let thread = std::thread::Builder::new()
        .name("azure-monitor-ingestion-server".to_owned())
        .spawn(move || {
            runtime.block_on(accept_loop(listener, shared, stop_rx));
            runtime.shutdown_timeout(GRACE);
        })?;
    Ok((addr, stop_tx, thread))
}

/// Resolves once the server is told to stop (or its handle is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which also means "stop".
    let _ = stop.wait_for(|stop| *stop).await;
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, stop: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    let mut stop_signal = stop.clone();
    loop {
        tokio::select! {
            () = stopped(&mut stop_signal) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve(stream, Arc::clone(&shared), stop.clone()));
                }
                // Out of file descriptors and the like: transient, the client sees a
                // connection error; back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    connections.abort_all();
}

/// Serves one connection until it closes or the server stops.
async fn serve(stream: TcpStream, shared: Arc<Shared>, stop: watch::Receiver<bool>) {
    let _ = stream.set_nodelay(true);
    let handler_stop = stop.clone();
    let service =
        service_fn(move |request| handle(request, Arc::clone(&shared), handler_stop.clone()));
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let mut stop = stop;
    tokio::select! {
        _ = connection.as_mut() => {}
        () = stopped(&mut stop) => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(GRACE, connection).await;
        }
    }
}

/// Returned by the handler to make hyper close the connection without an answer.
#[derive(Debug)]
struct Aborted;

impl std::fmt::Display for Aborted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection closed by the test server")
    }
}

impl std::error::Error for Aborted {}

/// A whole-request failure: status and message.
struct Failure {
    status: u16,
    message: String,
}

impl Failure {
    fn new(status: u16, message: impl Into<String>) -> Self {
        Failure {
            status,
            message: message.into(),
        }
    }
}

/// What the server will answer.
struct Answer {
    status: u16,
    body: Bytes,
    headers: Vec<(HeaderName, String)>,
    accepted: Vec<Value>,
    /// `(index, status, message, item, scripted)`.
    rejected: Vec<(usize, u16, String, Value, bool)>,
    error: Option<String>,
}

impl Answer {
    fn whole_request(failure: Failure, items_received: usize) -> Answer {
        let error = track_error(0, failure.status, &failure.message);
        Answer {
            status: failure.status,
            body: track_response(items_received, 0, vec![error]),
            headers: Vec::new(),
            accepted: Vec::new(),
            rejected: Vec::new(),
            error: Some(failure.message),
        }
    }
}

async fn handle(
    request: Request<Incoming>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> Result<Response<Full<Bytes>>, Aborted> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    if LIVE_PATHS.contains(&path.as_str()) {
        let Some(viewer) = shared.viewer.as_ref() else {
            let mut response = respond(200, Bytes::new(), &[]);
            response.headers_mut().insert(
                HeaderName::from_static("x-ms-qps-subscribed"),
                HeaderValue::from_static("false"),
            );
            return Ok(response);
        };
        // A viewer plays the Live Metrics service (viewer/live.rs): it reads the body, records
        // it, and answers "subscribed" while someone watches its Live page.
        let headers: Vec<(String, String)> = request
            .headers()
            .iter()
            .map(|(k, v)| {
                let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (k.as_str().to_owned(), value)
            })
            .collect();
        let encoding = header_text(request.headers(), &header::CONTENT_ENCODING);
        let body = match Limited::new(request.into_body(), MAX_LIVE_BODY_BYTES)
            .collect()
            .await
        {
            Ok(collected) => {
                decode(&collected.to_bytes(), encoding.as_deref()).map_err(|f| f.message)
            }
            Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => Err(format!(
                "the body is larger than the viewer reads ({MAX_LIVE_BODY_BYTES} bytes)"
            )),
            Err(_) => return Err(Aborted),
        };
        let (subscribed, configuration) = viewer.live(
            path.ends_with("/post"),
            &headers,
            body.as_deref().map_err(Clone::clone),
        );
        let subscribed_header = HeaderName::from_static("x-ms-qps-subscribed");
        return Ok(match configuration {
            Some((etag, body)) => respond(
                200,
                Bytes::from(body),
                &[
                    (subscribed_header, subscribed.to_string()),
                    (
                        HeaderName::from_static("x-ms-qps-configuration-etag"),
                        etag.to_owned(),
                    ),
                ],
            ),
            None => respond(
                200,
                Bytes::new(),
                &[(subscribed_header, subscribed.to_string())],
            ),
        });
    }
    if let Some(viewer) = shared
        .viewer
        .as_ref()
        .filter(|_| !TRACK_PATHS.contains(&path.as_str()))
    {
        let host = header_text(request.headers(), &header::HOST);
        let reply = viewer.respond(
            method.as_str(),
            &path,
            request.uri().query().unwrap_or(""),
            host.as_deref(),
        );
        return Ok(viewer_response(reply, method == Method::HEAD));
    }
    let headers = request.headers().clone();
    let raw = match Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => Err(Failure::new(
            413,
            format!("Request body is too large. Expected: at most {MAX_BODY_BYTES} bytes"),
        )),
        // The client went away while sending: there is no one to answer.
        Err(_) => return Err(Aborted),
    };
    let body_bytes = raw.as_ref().map_or(0, Bytes::len);
    let encoding = header_text(&headers, &header::CONTENT_ENCODING);
    let items = raw.and_then(|raw| decode(&raw, encoding.as_deref()).and_then(|b| parse(&b)));
    let item_count = items.as_ref().map_or(0, Vec::len);

    let refused = shared.refuse_token(header_text(&headers, &header::AUTHORIZATION).as_deref());
    // A request refused for its credentials leaves the scripted faults for the next ones.
    let fault = if refused.is_some() {
        None
    } else {
        shared.pop_fault()
    };
    let is_track = TRACK_PATHS.contains(&path.as_str());
    let answer = match &fault {
        _ if refused.is_some() => Some(status_answer(refused.unwrap_or(401), None, items)),
        None | Some(Fault::Delay(_)) => Some(answer(&method, is_track, items, &[], &shared)),
        Some(Fault::PartialFailure(scripted)) => {
            Some(answer(&method, is_track, items, scripted, &shared))
        }
        Some(Fault::Status { code, retry_after }) => {
            Some(status_answer(*code, retry_after.as_deref(), items))
        }
        Some(Fault::Redirect { status, location }) => Some(Answer {
            status: *status,
            body: Bytes::new(),
            headers: vec![(header::LOCATION, location.clone())],
            accepted: Vec::new(),
            rejected: Vec::new(),
            error: None,
        }),
        Some(Fault::Hang | Fault::DropConnection) => None,
    };
    // A scripted code hyper cannot send is answered as 500; record what is really sent.
    let answer = answer.map(|mut answer| {
        answer.status = StatusCode::from_u16(answer.status).map_or(500, |status| status.as_u16());
        answer
    });

    let record = RequestRecord {
        method: method.to_string(),
        path,
        content_type: header_text(&headers, &header::CONTENT_TYPE),
        content_encoding: encoding,
        user_agent: header_text(&headers, &header::USER_AGENT),
        authorization: header_text(&headers, &header::AUTHORIZATION),
        body_bytes,
        items: item_count,
        status: answer.as_ref().map(|a| a.status),
        error: answer.as_ref().and_then(|a| a.error.clone()),
        fault: fault.clone(),
    };
    let Some(answer) = answer else {
        shared.record(record, Vec::new(), Vec::new());
        if matches!(fault, Some(Fault::Hang)) {
            stopped(&mut stop).await;
        }
        return Err(Aborted);
    };
    shared.record(record, answer.accepted, answer.rejected);

    if let Some(Fault::Delay(delay)) = fault {
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stopped(&mut stop) => return Err(Aborted),
        }
    }
    Ok(respond(answer.status, answer.body, &answer.headers))
}

/// The normal behaviour: route, then check every item; `scripted` items fail with their code.
fn answer(
    method: &Method,
    is_track: bool,
    items: Result<Vec<Value>, Failure>,
    scripted: &[(usize, u16)],
    shared: &Shared,
) -> Answer {
    if !is_track {
        return Answer::whole_request(Failure::new(404, "Not Found"), 0);
    }
    if method != Method::POST {
        let mut answer = Answer::whole_request(Failure::new(405, "Method Not Allowed"), 0);
        answer
            .headers
            .push((header::ALLOW, Method::POST.to_string()));
        return answer;
    }
    let items = match items {
        Ok(items) => items,
        Err(failure) => return Answer::whole_request(failure, 0),
    };
    if items.len() > MAX_ITEMS {
        let message = format!(
            "Too many telemetry items in one request. Expected: at most {MAX_ITEMS}, Actual: {}",
            items.len()
        );
        return Answer::whole_request(Failure::new(400, message), items.len());
    }

    let now = SystemTime::now();
    let received = items.len();
    let mut accepted = Vec::new();
    let mut rejected = Vec::new();
    let mut errors = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        let outcome = match scripted.iter().find(|(i, _)| *i == index) {
            Some(&(_, code)) => Err((code, item_message(code), true)),
            None => check_item(&item, now, Some(shared.instrumentation_key()))
                .map_err(|message| (400, message, false)),
        };
        match outcome {
            Ok(()) => accepted.push(item),
            Err((code, message, is_scripted)) => {
                errors.push(track_error(index, code, &message));
                rejected.push((index, code, message, item, is_scripted));
            }
        }
    }
    let status = match rejected.first() {
        None => 200,
        Some(_) if !accepted.is_empty() => 206,
        Some(&(_, code, ..)) => code,
    };
    Answer {
        status,
        body: track_response(received, accepted.len(), errors),
        headers: Vec::new(),
        accepted,
        rejected,
        error: None,
    }
}

/// `Fault::Status`: every item fails with `code`.
fn status_answer(
    code: u16,
    retry_after: Option<&str>,
    items: Result<Vec<Value>, Failure>,
) -> Answer {
    let code = StatusCode::from_u16(code).map_or(500, |status| status.as_u16());
    let items = items.unwrap_or_default();
    let message = item_message(code);
    let errors = (0..items.len())
        .map(|index| track_error(index, code, &message))
        .collect();
    let body = track_response(items.len(), 0, errors);
    let rejected = items
        .into_iter()
        .enumerate()
        .map(|(index, item)| (index, code, message.clone(), item, true))
        .collect();
    Answer {
        status: code,
        body,
        headers: retry_after
            .map(|value| (header::RETRY_AFTER, value.to_owned()))
            .into_iter()
            .collect(),
        accepted: Vec::new(),
        rejected,
        error: Some(message),
    }
}

/// The per-item message the service uses for a status code.
fn item_message(code: u16) -> String {
    match code {
        // The Live Metrics service's messages (ENTRA-ID.md §1); the Track API's are not public.
        401 => "Authorization token missing or invalid.".to_owned(),
        403 => {
            "The Agent/SDK does not have permissions to send telemetry to this resource.".to_owned()
        }
        206 => "Telemetry sampled out.".to_owned(),
        439 => "Too Many Requests Over Extended Time".to_owned(),
        _ => StatusCode::from_u16(code)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Error")
            .to_owned(),
    }
}

/// Undoes `Content-Encoding`.
fn decode(raw: &Bytes, encoding: Option<&str>) -> Result<Bytes, Failure> {
    let encoding = encoding.map(|e| e.trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("" | "identity") => Ok(raw.clone()),
        Some("gzip" | "x-gzip") => {
            let mut out = Vec::new();
            let limit = u64::try_from(MAX_BODY_BYTES)
                .unwrap_or(u64::MAX)
                .saturating_add(1);
            flate2::read::MultiGzDecoder::new(raw.as_ref())
                .take(limit)
                .read_to_end(&mut out)
                .map_err(|e| Failure::new(400, format!("Invalid gzip body: {e}")))?;
            if out.len() > MAX_BODY_BYTES {
                return Err(Failure::new(
                    413,
                    format!(
                        "Request body is too large. Expected: at most {MAX_BODY_BYTES} bytes once decompressed"
                    ),
                ));
            }
            Ok(Bytes::from(out))
        }
        Some(other) => Err(Failure::new(
            415,
            format!("Unsupported Content-Encoding. Expected: gzip or none, Actual: {other}"),
        )),
    }
}

/// The items of a JSON array body, or of an NDJSON body (one item per non-empty line).
fn parse(body: &[u8]) -> Result<Vec<Value>, Failure> {
    let text = std::str::from_utf8(body)
        .map_err(|e| Failure::new(400, format!("Invalid payload: the body is not UTF-8 ({e})")))?;
    let text = text.trim_start_matches('\u{feff}').trim();
    if text.is_empty() {
        return Err(Failure::new(400, "Invalid payload: the body is empty"));
    }
    if text.starts_with('[') {
        return match serde_json::from_str::<Value>(text) {
            Ok(Value::Array(items)) => Ok(items),
            Ok(_) => Err(Failure::new(400, "Invalid payload: not a JSON array")),
            Err(e) => Err(Failure::new(400, format!("Invalid payload: {e}"))),
        };
    }
    if let Ok(item @ Value::Object(_)) = serde_json::from_str::<Value>(text) {
        return Ok(vec![item]);
    }
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            serde_json::from_str(line.trim())
                .map_err(|e| Failure::new(400, format!("Invalid payload: line {}: {e}", n + 1)))
        })
        .collect()
}

fn header_text(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

/// One `errors[]` entry of a `TrackResponse`, as JSON.
fn track_error(index: usize, status: u16, message: &str) -> String {
    let message = serde_json::to_string(message).unwrap_or_else(|_| "\"\"".to_owned());
    format!(r#"{{"index":{index},"statusCode":{status},"message":{message}}}"#)
}

/// A `TrackResponse` body, with the service's field order.
fn track_response(received: usize, accepted: usize, errors: Vec<String>) -> Bytes {
    Bytes::from(format!(
        r#"{{"itemsReceived":{received},"itemsAccepted":{accepted},"errors":[{}]}}"#,
        errors.join(",")
    ))
}

/// A viewer reply as an HTTP response; its pages may load only their own assets.
fn viewer_response(reply: super::viewer::Reply, head: bool) -> Response<Full<Bytes>> {
    let body = if head {
        Bytes::new()
    } else {
        Bytes::from(reply.body)
    };
    let mut response = respond(reply.status, body, &[]);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(reply.content_type),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    response
}

fn respond(status: u16, body: Bytes, headers: &[(HeaderName, String)]) -> Response<Full<Bytes>> {
    let has_body = !body.is_empty();
    let mut response = Response::new(Full::new(body));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if has_body {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
    }
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(value) {
            response.headers_mut().insert(name.clone(), value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bodies() {
        let ok = |body: &str| parse(body.as_bytes()).map(|items| items.len()).ok();
        assert_eq!(ok("[]"), Some(0));
        assert_eq!(ok(" [ {}, 1 ] "), Some(2));
        assert_eq!(ok("{\n  \"pretty\": true\n}\n"), Some(1));
        assert_eq!(ok("{}\r\n\r\n{}\n"), Some(2));
        assert_eq!(ok("\u{feff}{}"), Some(1));
        assert_eq!(ok(""), None);
        assert_eq!(ok("[{}"), None);
        assert_eq!(ok("{}\n{"), None);
        assert_eq!(ok("[1] [2]"), None);
    }

    #[test]
    fn encodings() {
        let raw = Bytes::from_static(b"[]");
        assert!(decode(&raw, None).is_ok());
        assert!(decode(&raw, Some(" Identity ")).is_ok());
        assert_eq!(
            decode(&raw, Some("gzip")).err().map(|f| f.status),
            Some(400)
        );
        assert_eq!(
            decode(&raw, Some("deflate")).err().map(|f| f.status),
            Some(415)
        );
    }

    proptest! {
        #[test]
        fn parsing_any_body_never_panics(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse(&body);
            let _ = decode(&Bytes::from(body), Some("gzip"));
        }
    }
}
