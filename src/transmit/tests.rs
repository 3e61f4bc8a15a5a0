//! The transmitter against a tiny HTTP/1.1 server on 127.0.0.1 with scripted answers.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures_executor::block_on;
use futures_util::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::attempt::follow;
use super::encode::EncodedItems;
use super::handoff::{Batch, SDK_BATCH_SIZE};
use super::queue::{TransmitConfig, Transmitter, DROP_JOIN_WAIT, QUEUE_CAPACITY};
use super::replay::{ProbeBackoff, MIN_PROBE_DELAY};
use super::retry::RetryPolicy;
use super::storage::Storage;
use super::worker::MAX_CONCURRENT_JOBS;
use crate::error::TransmitError;
use crate::transmit::encode::encode;
use crate::wire::{Data, Envelope, MessageData, SharedTags, Tags, TimeAt, Timestamp};

/// A full batch of the SDK: handed off when its delivery takes long.
const FULL: Batch = Batch::Of(SDK_BATCH_SIZE);
use reqwest::Url;
use std::sync::atomic::Ordering;

/// A request as the server saw it.
#[derive(Clone, Debug)]
struct Received {
    at: Instant,
    path: String,
    headers: Vec<(String, String)>,
    /// The gunzipped body.
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `message` of each envelope in the body, in order.
    fn messages(&self) -> Vec<String> {
        let json: Vec<serde_json::Value> = serde_json::from_slice(&self.body).unwrap();
        json.iter()
            .map(|v| {
                v["data"]["baseData"]["message"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }
}

enum Reply {
    Status(u16, Vec<(&'static str, String)>, String),
    /// Never answer (keep the connection open).
    Hang,
    /// Answer with this status after this long.
    Delayed(Duration, u16),
}

fn status(code: u16) -> Reply {
    Reply::Status(code, Vec::new(), String::new())
}

fn ok_body() -> String {
    r#"{"itemsReceived":1,"itemsAccepted":1,"errors":[]}"#.to_owned()
}

fn ok() -> Reply {
    Reply::Status(200, Vec::new(), ok_body())
}

type Script = Arc<dyn Fn(usize) -> Reply + Send + Sync>;

/// A raw HTTP/1.1 server: answers the n-th request (from 0) with `script(n)`.
struct Server {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    /// Notified after each request is recorded.
    arrived: Arc<Condvar>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(script: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Server {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let script: Script = Arc::new(script);
        let seen = Arc::clone(&received);
        let arrived = Arc::new(Condvar::new());
        let signal = Arc::clone(&arrived);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::from_std(listener).unwrap();
                let counter = Arc::new(AtomicUsize::new(0));
                loop {
                    tokio::select! {
                        _ = &mut stopped => break,
                        accepted = listener.accept() => {
                            let Ok((socket, _)) = accepted else { continue };
                            tokio::spawn(serve(
                                socket,
                                Arc::clone(&script),
                                (Arc::clone(&seen), Arc::clone(&signal)),
                                Arc::clone(&counter),
                            ));
                        }
                    }
                }
            });
        });
        Server {
            addr,
            received,
            arrived,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}/v2.1/track", self.addr)
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until `done` holds for the requests received, at most 10 s; whether it does.
    fn wait_until(&self, done: impl Fn(&[Received]) -> bool) -> bool {
        let guard = self.received.lock().unwrap();
        let (guard, _) = self
            .arrived
            .wait_timeout_while(guard, TEN_SECONDS, |got| !done(got))
            .unwrap();
        done(&guard)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    mut socket: TcpStream,
    script: Script,
    (received, arrived): (Arc<Mutex<Vec<Received>>>, Arc<Condvar>),
    counter: Arc<AtomicUsize>,
) {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let head_end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p;
            }
            let mut chunk = [0u8; 16 * 1024];
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let path = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .unwrap_or_default()
            .to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let body_start = head_end + 4;
        while buf.len() < body_start + len {
            let mut chunk = [0u8; 16 * 1024];
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let raw: Vec<u8> = buf.drain(..body_start + len).skip(body_start).collect();
        let gzip = headers
            .iter()
            .any(|(k, v)| k == "content-encoding" && v == "gzip");
        let body = if gzip {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&raw[..])
                .read_to_end(&mut out)
                .unwrap();
            out
        } else {
            raw
        };
        let n = counter.fetch_add(1, Ordering::SeqCst);
        received.lock().unwrap().push(Received {
            at: Instant::now(),
            path,
            headers,
            body,
        });
        arrived.notify_all();
        match script(n) {
            Reply::Hang => std::future::pending::<()>().await,
            Reply::Delayed(after, code) => {
                tokio::time::sleep(after).await;
                let body = if code == 200 {
                    ok_body()
                } else {
                    String::new()
                };
                let response = format!(
                    "HTTP/1.1 {code} Scripted\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                if socket.write_all(response.as_bytes()).await.is_err() {
                    return;
                }
            }
            Reply::Status(code, extra, body) => {
                let mut response = format!(
                    "HTTP/1.1 {code} Scripted\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
                    body.len()
                );
                for (k, v) in extra {
                    response.push_str(&format!("{k}: {v}\r\n"));
                }
                response.push_str("\r\n");
                response.push_str(&body);
                if socket.write_all(response.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn items(n: usize) -> EncodedItems {
    let shared = SharedTags::default();
    encode((0..n).map(|i| Envelope {
        time: Timestamp(std::time::UNIX_EPOCH),
        sample_rate: None,
        ikey: "00000000-0000-0000-0000-000000000000",
        tags: Tags::new(&shared),
        data: Data::Message(MessageData {
            message: format!("m{i}").into(),
            ..Default::default()
        }),
        time_at: TimeAt::AfterTags,
    }))
}

fn names(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("m{i}")).collect()
}

/// Short waits, so tests are fast; a generous deadline unless a test is about it.
fn fast_retries(attempts: u32) -> RetryPolicy {
    RetryPolicy::new()
        .with_max_attempts(attempts)
        .with_initial_delay(Duration::from_millis(5))
        .with_max_delay(Duration::from_millis(20))
}

fn transmitter(url: String, timeout: Duration, retry: RetryPolicy) -> Transmitter {
    Transmitter::new(TransmitConfig {
        track_url: url,
        timeout,
        retry,
        client: None,
        storage: None,
        gzip_level: crate::transmit::encode::GZIP_LEVEL,
        auth: None,
    })
    .unwrap()
}

const TEN_SECONDS: Duration = Duration::from_secs(10);

#[test]
fn the_transmitter_can_be_shared_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Transmitter>();
}

#[test]
fn delivers_a_gzip_json_array_with_the_right_headers_without_a_runtime() {
    let server = Server::start(|_| ok());
    let t = transmitter(server.url(), TEN_SECONDS, fast_retries(3));
    // No Tokio runtime on this thread: a plain executor, as the SDK's batch processor.
    assert!(tokio::runtime::Handle::try_current().is_err());
    block_on(t.send(items(3), FULL)).unwrap();
    let got = server.received();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.path, "/v2.1/track");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.header("accept"), Some("application/json"));
    assert_eq!(r.messages(), names(0..3));
    t.shutdown(TEN_SECONDS).unwrap();
}

#[tokio::test]
async fn works_when_awaited_inside_a_tokio_runtime() {
    let server = Server::start(|_| ok());
    let t = transmitter(server.url(), TEN_SECONDS, fast_retries(3));
    t.send(items(2), FULL).await.unwrap();
    // Also from a spawned task (the future is `Send + 'static`).
    tokio::spawn(t.send(items(1), FULL)).await.unwrap().unwrap();
    assert_eq!(server.received().len(), 2);
    t.shutdown(TEN_SECONDS).unwrap();
}

#[test]
fn retries_a_500_with_the_same_body() {
    let server = Server::start(|n| if n == 0 { status(500) } else { ok() });
    let t = transmitter(server.url(), TEN_SECONDS, fast_retries(3));
    block_on(t.send(items(4), FULL)).unwrap();
    let got = server.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].body, got[1].body);
    assert_eq!(got[1].messages(), names(0..4));
}

#[test]
fn a_429_is_not_retried_before_its_retry_after() {
    let server = Server::start(|n| {
        if n == 0 {
            Reply::Status(429, vec![("retry-after", "1".into())], String::new())
        } else {
            ok()
        }
    });
    let t = transmitter(server.url(), TEN_SECONDS, fast_retries(3));
    block_on(t.send(items(2), FULL)).unwrap();
    let got = server.received();
    assert_eq!(got.len(), 2);
    let gap = got[1].at - got[0].at;
    // The backoff alone would wait at most 60 ms.
    assert!(gap >= Duration::from_millis(990), "resent after {gap:?}");
}

#[test]
fn a_206_resends_only_the_retryable_items() {
    let server = Server::start(|n| {
        if n == 0 {
            Reply::Status(
                206,
                Vec::new(),
                r#"{"itemsReceived":6,"itemsAccepted":2,"errors":[
                    {"index":1,"statusCode":500,"message":"Internal Server Error"},
                    {"index":3,"statusCode":400,"message":"109: Field 'name' is required"},
                    {"index":4,"statusCode":206,"message":"Telemetry sampled out."},
                    {"index":5,"statusCode":503,"message":"busy"}]}"#
                    .into(),
            )
        } else {
            ok()
        }
    });
    let t = transmitter(server.url(), TEN_SECONDS, fast_retries(3));
    let result = block_on(t.send(items(6), FULL));
    let got = server.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].messages(), names(0..6));
    assert_eq!(got[1].messages(), ["m1", "m5"]);
    // Item 3 was refused for good: the export reports it.
    match result {
        Err(TransmitError::Rejected {
            items: 1,
            status: 400,
            message,
        }) => assert_eq!(message, "109: Field 'name' is required"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_400_is_dropped_with_the_service_message() {
    let server = Server::start(|_| {
        Reply::Status(
            400,
            Vec::new(),
            r#"{"itemsReceived":2,"itemsAccepted":0,"errors":[{"index":0,"statusCode":400,"message":"Invalid instrumentation key"}]}"#.into(),
        )
    });
    let t = transmitter(server.url(), TEN_SECONDS, fast_retries(3));
    match block_on(t.send(items(2), FULL)) {
        Err(TransmitError::Rejected {
            items: 2,
            status: 400,
            message,
        }) => assert_eq!(message, "Invalid instrumentation key"),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(server.received().len(), 1);
}

#[test]
fn a_redirect_is_followed_and_remembered() {
    let target = Server::start(|_| ok());
    let location = target.url();
    let origin = Server::start(move |_| {
        Reply::Status(307, vec![("location", location.clone())], String::new())
    });
    let t = transmitter(origin.url(), TEN_SECONDS, fast_retries(1));
    block_on(t.send(items(1), FULL)).unwrap();
    block_on(t.send(items(2), FULL)).unwrap();
    assert_eq!(origin.received().len(), 1);
    let got = target.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].messages(), names(0..1));
    assert_eq!(got[1].messages(), names(0..2));
}

#[test]
fn a_redirect_loop_is_bounded() {
    let server = Server::start(|_| {
        Reply::Status(308, vec![("location", "/v2.1/track".into())], String::new())
    });
    let t = transmitter(server.url(), TEN_SECONDS, fast_retries(3));
    match block_on(t.send(items(1), FULL)) {
        Err(TransmitError::Rejected {
            items: 1,
            status: 308,
            message,
        }) => assert!(message.contains("redirects"), "{message}"),
        other => panic!("unexpected {other:?}"),
    }
    // The first request and 10 redirects; a redirect loop is not retried.
    assert_eq!(server.received().len(), 11);
}

#[test]
fn a_redirect_to_a_foreign_host_is_refused() {
    let server = Server::start(|_| {
        Reply::Status(
            307,
            vec![("location", "http://attacker.example/v2.1/track".into())],
            String::new(),
        )
    });
    let t = transmitter(server.url(), TEN_SECONDS, fast_retries(3));
    match block_on(t.send(items(1), FULL)) {
        Err(TransmitError::Rejected {
            status: 307,
            message,
            ..
        }) => {
            assert!(message.contains("attacker.example"), "{message}")
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(server.received().len(), 1);
}

#[test]
fn a_hanging_server_fails_the_export_at_the_deadline() {
    let server = Server::start(|_| Reply::Hang);
    let deadline = Duration::from_millis(300);
    let t = transmitter(server.url(), deadline, fast_retries(5));
    let start = Instant::now();
    let result = block_on(t.send(items(3), FULL));
    let elapsed = start.elapsed();
    match result {
        Err(TransmitError::Undelivered { items: 3, reason }) => {
            assert!(reason.contains("deadline passed"), "{reason}")
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(elapsed >= deadline, "gave up after {elapsed:?}");
    assert!(
        elapsed < deadline + Duration::from_secs(1),
        "took {elapsed:?}"
    );
    assert_eq!(server.received().len(), 1);
}

#[test]
fn retries_stop_after_max_attempts() {
    let server = Server::start(|_| status(503));
    let t = transmitter(server.url(), TEN_SECONDS, fast_retries(3));
    match block_on(t.send(items(2), FULL)) {
        Err(TransmitError::Undelivered { items: 2, reason }) => {
            assert!(
                reason.contains("3 attempts") && reason.contains("503"),
                "{reason}"
            )
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(server.received().len(), 3);
}

#[test]
fn connection_errors_are_retried() {
    // A port that nobody listens on any more.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let t = transmitter(
        format!("http://127.0.0.1:{port}/v2.1/track"),
        TEN_SECONDS,
        fast_retries(2),
    );
    match block_on(t.send(items(1), FULL)) {
        Err(TransmitError::Undelivered { items: 1, reason }) => {
            assert!(reason.contains("2 attempts"), "{reason}")
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_retry_after_beyond_the_deadline_gives_up_at_once() {
    let server =
        Server::start(|_| Reply::Status(503, vec![("retry-after", "60".into())], String::new()));
    let t = transmitter(server.url(), Duration::from_secs(5), fast_retries(3));
    let start = Instant::now();
    match block_on(t.send(items(1), FULL)) {
        Err(TransmitError::Undelivered { items: 1, reason }) => {
            assert!(reason.contains("after the export deadline"), "{reason}")
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(4));
    assert_eq!(server.received().len(), 1);
}

#[test]
fn force_flush_waits_for_earlier_exports() {
    let server = Server::start(|n| if n < 2 { status(500) } else { ok() });
    let t = transmitter(
        server.url(),
        TEN_SECONDS,
        RetryPolicy::new()
            .with_max_attempts(3)
            .with_initial_delay(Duration::from_millis(50))
            .with_max_delay(Duration::from_millis(100)),
    );
    let pending = t.send(items(1), FULL);
    t.force_flush(TEN_SECONDS).unwrap();
    // The export finished before the flush returned.
    assert!(matches!(pending.now_or_never(), Some(Ok(()))));
    assert_eq!(server.received().len(), 3);
    // Nothing pending: returns at once.
    t.force_flush(TEN_SECONDS).unwrap();
}

#[test]
fn force_flush_times_out_on_a_hanging_export() {
    let server = Server::start(|_| Reply::Hang);
    let t = transmitter(server.url(), TEN_SECONDS, fast_retries(1));
    let _pending = t.send(items(1), FULL);
    let start = Instant::now();
    assert!(matches!(
        t.force_flush(Duration::from_millis(100)),
        Err(TransmitError::Timeout(_))
    ));
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn shutdown_aborts_in_flight_exports_within_its_timeout() {
    let server = Server::start(|_| Reply::Hang);
    let t = transmitter(server.url(), Duration::from_secs(60), fast_retries(1));
    let pending = t.send(items(2), FULL);
    let start = Instant::now();
    t.shutdown(Duration::from_millis(300)).unwrap();
    let elapsed = start.elapsed();
    assert!(
        elapsed <= Duration::from_millis(300),
        "shutdown took {elapsed:?}"
    );
    match block_on(pending) {
        Err(TransmitError::Undelivered { items: 2, reason }) => {
            assert!(reason.contains("shut down"), "{reason}")
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(
        t.shutdown(TEN_SECONDS),
        Err(TransmitError::AlreadyShutdown)
    ));
    assert!(matches!(
        block_on(t.send(items(1), FULL)),
        Err(TransmitError::AlreadyShutdown)
    ));
    assert!(matches!(
        t.force_flush(TEN_SECONDS),
        Err(TransmitError::AlreadyShutdown)
    ));
}

#[test]
fn shutdown_lets_queued_exports_finish() {
    let server = Server::start(|_| ok());
    let t = transmitter(server.url(), TEN_SECONDS, fast_retries(1));
    let pending: Vec<_> = (1..=3).map(|n| t.send(items(n), FULL)).collect();
    t.shutdown(TEN_SECONDS).unwrap();
    for p in pending {
        assert!(matches!(p.now_or_never(), Some(Ok(()))));
    }
    assert_eq!(server.received().len(), 3);
}

#[test]
fn a_full_queue_refuses_instead_of_blocking() {
    let server = Server::start(|_| Reply::Hang);
    let t = transmitter(server.url(), TEN_SECONDS, fast_retries(1));
    let results: Vec<_> = (0..QUEUE_CAPACITY + MAX_CONCURRENT_JOBS + 5)
        .map(|_| t.send(items(1), FULL).now_or_never())
        .collect();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Some(Err(TransmitError::QueueFull { items: 1 }))))
        .count();
    assert!(refused >= 5, "{refused} refused");
    t.shutdown(Duration::from_millis(200)).unwrap();
}

#[test]
fn dropping_the_transmitter_stops_its_worker() {
    let server = Server::start(|_| Reply::Hang);
    let t = transmitter(server.url(), Duration::from_secs(60), fast_retries(1));
    let pending = t.send(items(1), FULL);
    let start = Instant::now();
    drop(t);
    assert!(block_on(pending).is_err());
    assert!(start.elapsed() < DROP_JOIN_WAIT);
}

#[test]
fn empty_batches_are_not_sent() {
    let server = Server::start(|_| ok());
    let t = transmitter(server.url(), TEN_SECONDS, fast_retries(1));
    block_on(t.send(items(0), FULL)).unwrap();
    t.shutdown(TEN_SECONDS).unwrap();
    assert!(server.received().is_empty());
}

#[test]
fn invalid_urls_are_refused() {
    for url in [
        "",
        "not a url",
        "ftp://dc.services.visualstudio.com/v2.1/track",
        "unix:/tmp/x",
    ] {
        let result = Transmitter::new(TransmitConfig {
            track_url: url.into(),
            timeout: TEN_SECONDS,
            retry: RetryPolicy::default(),
            client: None,
            storage: None,
            gzip_level: crate::transmit::encode::GZIP_LEVEL,
            auth: None,
        });
        assert!(
            matches!(result, Err(TransmitError::InvalidUrl { .. })),
            "{url}"
        );
    }
}

#[test]
fn redirect_targets() {
    let from = |s: &str| Url::parse(s).unwrap();
    let ingest = from("https://westeurope-5.in.applicationinsights.azure.com/v2.1/track");
    let cases: [(&Url, &str, Option<&str>); 9] = [
        (
            &ingest,
            "https://westeurope-5.in.applicationinsights.azure.com/v2/track",
            Some("https://westeurope-5.in.applicationinsights.azure.com/v2/track"),
        ),
        (
            &ingest,
            "https://northeurope-2.in.applicationinsights.azure.com/v2.1/track",
            Some("https://northeurope-2.in.applicationinsights.azure.com/v2.1/track"),
        ),
        (
            &ingest,
            "/other/track",
            Some("https://westeurope-5.in.applicationinsights.azure.com/other/track"),
        ),
        (
            &ingest,
            "https://dc.services.visualstudio.com/v2.1/track",
            None,
        ),
        (
            &ingest,
            "https://evil-applicationinsights.azure.com/v2.1/track",
            None,
        ),
        (
            &ingest,
            "https://applicationinsights.azure.com.evil.example/v2.1/track",
            None,
        ),
        (
            &ingest,
            "http://westeurope-5.in.applicationinsights.azure.com/v2.1/track",
            None,
        ),
        (&ingest, "https://[::1", None),
        (&ingest, "file:///etc/passwd", None),
    ];
    for (current, location, expected) in cases {
        let got = follow(current, location).ok().map(|u| u.to_string());
        assert_eq!(got.as_deref(), expected, "{location}");
    }
    let dc = from("https://dc.services.visualstudio.com/v2.1/track");
    assert!(follow(&dc, "https://westus.services.visualstudio.com/v2.1/track").is_ok());
    assert!(follow(&dc, "https://DC.services.visualstudio.com/v2.1/track").is_ok());
}

// ---- With offline storage ----

use crate::transmit::storage::tests::TestDir;
use crate::transmit::storage::{StorageConfig, DEFAULT_MAX_SIZE, DEFAULT_RETENTION};

fn open_storage(dir: &std::path::Path) -> Arc<Storage> {
    Arc::new(
        Storage::open(StorageConfig {
            directory: dir.to_path_buf(),
            private_parent: false,
            max_size: DEFAULT_MAX_SIZE,
            retention: DEFAULT_RETENTION,
            secret: String::new(),
        })
        .unwrap(),
    )
}

fn with_storage(
    url: String,
    timeout: Duration,
    retry: RetryPolicy,
    dir: &std::path::Path,
) -> Transmitter {
    Transmitter::new(TransmitConfig {
        track_url: url,
        timeout,
        retry,
        client: None,
        storage: Some(open_storage(dir)),
        gzip_level: crate::transmit::encode::GZIP_LEVEL,
        auth: None,
    })
    .unwrap()
}

/// Waits so long between probes that none happens during a test.
fn slow_probes(attempts: u32) -> RetryPolicy {
    RetryPolicy::new()
        .with_max_attempts(attempts)
        .with_initial_delay(Duration::from_secs(600))
        .with_max_delay(Duration::from_secs(600))
}

/// The messages of every stored item (leased or not), sorted.
fn stored(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.ends_with(".blob") || name.ends_with(".lock")) {
            continue;
        }
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            out.push(
                v["data"]["baseData"]["message"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
    }
    out.sort();
    out
}

/// Every message received in requests answered 200 or 206 (the script decides; the caller
/// says which requests were accepted).
fn messages_of(got: &[Received], accepted: impl Fn(usize) -> bool) -> Vec<String> {
    let mut out: Vec<String> = got
        .iter()
        .enumerate()
        .filter(|(n, _)| accepted(*n))
        .flat_map(|(_, r)| r.messages())
        .collect();
    out.sort();
    out
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn what_cannot_be_delivered_is_stored_and_the_export_succeeds() {
    let server = Server::start(|_| status(503));
    let dir = TestDir::new("client-stored");
    let t = with_storage(server.url(), TEN_SECONDS, slow_probes(1), &dir.0);
    block_on(t.send(items(3), FULL)).unwrap();
    assert_eq!(server.received().len(), 1);
    assert_eq!(stored(&dir.0), names(0..3));
    assert!(t.gate.is_failing());
    t.shutdown(TEN_SECONDS).unwrap();
}

#[test]
fn while_the_endpoint_fails_exports_go_to_disk_without_a_request() {
    let server = Server::start(|_| status(500));
    let dir = TestDir::new("client-circuit");
    let t = with_storage(server.url(), TEN_SECONDS, slow_probes(3), &dir.0);
    block_on(t.send(items(2), FULL)).unwrap();
    // The first attempt failed and the next one (10 minutes away) is past the deadline.
    assert_eq!(server.received().len(), 1);
    let start = Instant::now();
    for _ in 0..5 {
        assert!(matches!(
            t.send(items(4), FULL).now_or_never(),
            Some(Ok(()))
        ));
    }
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        server.received().len(),
        1,
        "no request while the endpoint fails"
    );
    assert_eq!(stored(&dir.0).len(), 2 + 5 * 4);
    t.shutdown(TEN_SECONDS).unwrap();
}

#[test]
fn stored_telemetry_is_sent_once_the_service_answers_again() {
    // Three 503s: two attempts of the export, one failed probe; then the service is back.
    let server = Server::start(|n| if n < 3 { status(503) } else { ok() });
    let dir = TestDir::new("client-recover");
    let t = with_storage(server.url(), TEN_SECONDS, fast_retries(2), &dir.0);
    block_on(t.send(items(3), FULL)).unwrap();
    assert!(server.wait_until(|got| got.len() >= 4));
    t.shutdown(TEN_SECONDS).unwrap();
    let got = server.received();
    assert_eq!(got.len(), 4, "one probe failed, the next one delivered");
    assert_eq!(messages_of(&got, |n| n >= 3), names(0..3));
    assert!(stored(&dir.0).is_empty());
}

#[test]
fn data_left_by_an_earlier_process_is_sent_at_start_oldest_first() {
    let dir = TestDir::new("client-restart");
    {
        let storage = open_storage(&dir.0);
        let old = items(6);
        storage.store(&old, [0, 1, 2]).unwrap();
        storage.store(&old, [3, 4, 5]).unwrap();
    }
    let server = Server::start(|_| ok());
    let t = with_storage(server.url(), TEN_SECONDS, fast_retries(1), &dir.0);
    assert!(server.wait_until(|got| got.len() >= 2));
    t.shutdown(TEN_SECONDS).unwrap();
    let got = server.received();
    assert_eq!(got[0].messages(), names(0..3));
    assert_eq!(got[1].messages(), names(3..6));
    assert!(stored(&dir.0).is_empty());
}

#[test]
fn a_replay_resends_only_the_retryable_items_of_a_206() {
    let dir = TestDir::new("client-replay-206");
    open_storage(&dir.0).store(&items(3), 0..3).unwrap();
    let server = Server::start(|n| {
        if n == 0 {
            Reply::Status(
                206,
                Vec::new(),
                r#"{"itemsReceived":3,"itemsAccepted":1,"errors":[
                    {"index":1,"statusCode":500,"message":"try again"},
                    {"index":2,"statusCode":400,"message":"bad item"}]}"#
                    .to_owned(),
            )
        } else {
            ok()
        }
    });
    let t = with_storage(server.url(), TEN_SECONDS, fast_retries(1), &dir.0);
    assert!(server.wait_until(|got| got.len() >= 2));
    t.shutdown(TEN_SECONDS).unwrap();
    let got = server.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].messages(), ["m1"]);
    assert!(stored(&dir.0).is_empty());
}

#[test]
fn a_replay_drops_what_the_service_refuses_for_good() {
    let dir = TestDir::new("client-replay-400");
    open_storage(&dir.0).store(&items(2), 0..2).unwrap();
    let server = Server::start(|n| if n == 0 { status(400) } else { ok() });
    let t = with_storage(server.url(), TEN_SECONDS, fast_retries(1), &dir.0);
    assert!(server.wait_until(|got| !got.is_empty()));
    // A later export is delivered, and the refused file is gone.
    block_on(t.send(items(1), FULL)).unwrap();
    t.shutdown(TEN_SECONDS).unwrap();
    assert_eq!(server.received().len(), 2);
    assert!(stored(&dir.0).is_empty());
}

#[test]
fn a_retry_after_holds_back_replays_too() {
    let server = Server::start(|n| {
        if n == 0 {
            Reply::Status(429, vec![("retry-after", "1".into())], String::new())
        } else {
            ok()
        }
    });
    let dir = TestDir::new("client-retry-after");
    // The pause is longer than the export may last: stored at once.
    let t = with_storage(
        server.url(),
        Duration::from_millis(300),
        fast_retries(3),
        &dir.0,
    );
    let start = Instant::now();
    block_on(t.send(items(2), FULL)).unwrap();
    assert!(start.elapsed() < Duration::from_millis(900));
    // Within the pause, a new export is stored without a request.
    block_on(t.send(items(3), FULL)).unwrap();
    assert_eq!(server.received().len(), 1);
    assert!(server.wait_until(|got| got.len() >= 3));
    t.shutdown(TEN_SECONDS).unwrap();
    let got = server.received();
    for later in &got[1..] {
        let gap = later.at - got[0].at;
        assert!(gap >= Duration::from_millis(990), "sent after {gap:?}");
    }
    assert_eq!(
        messages_of(&got, |n| n >= 1),
        sorted([names(0..2), names(0..3)].concat())
    );
}

#[test]
fn a_shutdown_leaves_what_is_undelivered_on_disk() {
    let server = Server::start(|_| Reply::Hang);
    let dir = TestDir::new("client-shutdown");
    let t = with_storage(
        server.url(),
        Duration::from_secs(60),
        fast_retries(1),
        &dir.0,
    );
    let pending = t.send(items(2), FULL);
    assert!(server.wait_until(|got| !got.is_empty()));
    // A fifth of the deadline (400 ms) is left to store what is aborted: one file and its
    // `sync_data`, which took more than the 60 ms of a 300 ms deadline on a loaded CI disk.
    let deadline = Duration::from_secs(2);
    let start = Instant::now();
    t.shutdown(deadline).unwrap();
    let elapsed = start.elapsed();
    assert!(
        elapsed < deadline + Duration::from_millis(200),
        "shutdown took {elapsed:?}"
    );
    block_on(pending).unwrap();
    assert_eq!(stored(&dir.0), names(0..2));
    assert!(matches!(
        t.shutdown(TEN_SECONDS),
        Err(TransmitError::AlreadyShutdown)
    ));
}

#[test]
fn with_storage_a_full_queue_loses_nothing() {
    let server = Server::start(|_| Reply::Hang);
    let dir = TestDir::new("client-queue");
    let t = with_storage(
        server.url(),
        Duration::from_secs(60),
        fast_retries(1),
        &dir.0,
    );
    let total = QUEUE_CAPACITY + MAX_CONCURRENT_JOBS + 5;
    let results: Vec<_> = (0..total).map(|_| t.send(items(1), FULL)).collect();
    t.shutdown(Duration::from_secs(2)).unwrap();
    for r in results {
        block_on(r).unwrap();
    }
    assert_eq!(stored(&dir.0), vec!["m0".to_owned(); total]);
}

#[test]
fn when_storage_fails_the_export_fails_and_says_why() {
    let server = Server::start(|_| status(503));
    let dir = TestDir::new("client-storage-fails");
    let t = with_storage(server.url(), TEN_SECONDS, slow_probes(1), &dir.0);
    std::fs::remove_dir_all(&dir.0).unwrap();
    let err = block_on(t.send(items(2), FULL)).unwrap_err();
    assert!(
        matches!(&err, TransmitError::Undelivered { items: 2, reason } if reason.contains("offline storage failed")),
        "{err}"
    );
    t.shutdown(TEN_SECONDS).unwrap();
}

#[test]
fn a_flush_waits_for_the_stored_file_the_replay_task_is_sending() {
    // 0: a full batch fails and is stored; 1: the replay task's probe with that file, answered
    // 503 after a while; 2: the flush's last (smaller) export, delivered; 3: the stored file,
    // given back by the probe and sent again while the flush waits.
    let server = Server::start(|n| match n {
        0 => status(503),
        1 => Reply::Delayed(Duration::from_millis(300), 503),
        _ => ok(),
    });
    let dir = TestDir::new("client-flush-replayed");
    let t = with_storage(server.url(), TEN_SECONDS, fast_retries(1), &dir.0);
    block_on(t.send(items(3), FULL)).unwrap();
    assert_eq!(stored(&dir.0), names(0..3));
    assert!(server.wait_until(|got| got.len() >= 2), "no probe");
    // The probe holds the file: the smaller export must not be answered before that file is
    // delivered (a flush means delivered).
    block_on(t.send(items(1), Batch::Of(1))).unwrap();
    assert!(stored(&dir.0).is_empty(), "{:?}", stored(&dir.0));
    let got = server.received();
    assert_eq!(got.len(), 4);
    assert_eq!(got[3].messages(), names(0..3));
    t.shutdown(TEN_SECONDS).unwrap();
}

#[test]
fn a_delivered_flush_waits_for_handed_off_exports_and_sends_what_they_stored() {
    // 0: the first full batch, answered after the hand-off (so it is handed off and the endpoint
    // counts as failing); the second full batch then goes to disk at once; the flush waits for
    // the first and, the endpoint working again, sends the second's file.
    let server = Server::start(|n| match n {
        0 => Reply::Delayed(Duration::from_millis(800), 200),
        _ => ok(),
    });
    let dir = TestDir::new("client-flush-delivered");
    let t = with_storage(server.url(), TEN_SECONDS, slow_probes(1), &dir.0);
    block_on(t.send(items(3), FULL)).unwrap();
    assert!(t.gate.is_failing(), "handed off");
    block_on(t.send(items(2), FULL)).unwrap();
    assert_eq!(
        server.received().len(),
        1,
        "the second batch went to disk at once"
    );
    t.flush_handle().flush_delivered().unwrap();
    assert!(stored(&dir.0).is_empty(), "{:?}", stored(&dir.0));
    assert_eq!(
        messages_of(&server.received(), |_| true),
        sorted([names(0..3), names(0..2)].concat())
    );
    t.shutdown(TEN_SECONDS).unwrap();
}

#[test]
fn probes_back_off_within_the_policy() {
    let policy = RetryPolicy::new()
        .with_initial_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(2));
    let mut probes = ProbeBackoff::new(&policy);
    let delays: Vec<Duration> = (0..50).map(|_| probes.next()).collect();
    assert!(delays
        .iter()
        .all(|d| *d >= Duration::from_millis(100) && *d <= Duration::from_secs(2)));
    assert!(
        delays.iter().any(|d| *d > Duration::from_millis(300)),
        "{delays:?}"
    );
    probes.reset();
    assert!(probes.next() <= Duration::from_millis(300));
    // A zero delay does not make probes spin.
    let mut eager = ProbeBackoff::new(&RetryPolicy::new().with_initial_delay(Duration::ZERO));
    assert!((0..20).all(|_| eager.next() >= MIN_PROBE_DELAY));
}

#[test]
fn how_an_export_is_answered_follows_the_batch_and_the_recent_rate() {
    use super::handoff::{Pace, HANDOFF};
    let timeout = Duration::from_secs(4);
    let t0 = Instant::now();
    let pace = Pace::default();
    // A metric export and a first small batch (a flush after a few spans) wait to the deadline.
    let metric = pace.answer(Batch::Reading, t0, timeout);
    assert!(metric.waits);
    assert_eq!(metric.handoff, timeout);
    let small = pace.answer(Batch::Of(10), t0, timeout);
    assert!(small.waits);
    assert_eq!(small.handoff, timeout);
    // A burst: three full batches are handed off; the last, smaller one waits for its delivery
    // (the burst counts little over the 10 s window: more than 3 s).
    for _ in 0..3 {
        let full = pace.answer(Batch::Of(SDK_BATCH_SIZE), t0, timeout);
        assert!(!full.waits);
        assert_eq!(full.handoff, HANDOFF);
    }
    let last = pace.answer(Batch::Of(464), t0, timeout);
    assert!(last.waits);
    assert!(last.handoff > Duration::from_secs(3), "{last:?}");
    // A larger batch raises what counts as full.
    assert!(!pace.answer(Batch::Of(1000), t0, timeout).waits);
    assert!(pace.answer(Batch::Of(512), t0, timeout).waits);

    // Steady load, 2000 items per second for 10 s: a smaller batch waits only as long as the
    // SDK's queue takes to fill a quarter (about a quarter of a second).
    let steady = Pace::default();
    for i in 0..40u32 {
        let at = t0 + Duration::from_millis(256) * i;
        assert!(!steady.answer(Batch::Of(SDK_BATCH_SIZE), at, timeout).waits);
    }
    let drained = steady.answer(Batch::Of(100), t0 + Duration::from_secs(10), timeout);
    assert!(drained.waits);
    assert!(drained.handoff > Duration::from_millis(200) && drained.handoff < HANDOFF);
    // Once the load stops for longer than the window, a flush waits to the deadline again.
    let later = steady.answer(Batch::Of(100), t0 + Duration::from_secs(25), timeout);
    assert_eq!(later.handoff, timeout);

    // A host that flushes after each invocation: a few items every few seconds, then a burst
    // of 2000 and a flush. The burst is not a rate: the flush waits for its whole delivery.
    let invocations = Pace::default();
    for i in 0..3u32 {
        let at = t0 + Duration::from_secs(3) * i;
        assert_eq!(
            invocations.answer(Batch::Of(5), at, timeout).handoff,
            timeout
        );
    }
    let burst_at = t0 + Duration::from_secs(9);
    for _ in 0..3 {
        assert!(
            !invocations
                .answer(Batch::Of(SDK_BATCH_SIZE), burst_at, timeout)
                .waits
        );
    }
    let flushed = invocations.answer(Batch::Of(464), burst_at, timeout);
    assert!(flushed.waits);
    assert_eq!(flushed.handoff, timeout);
}
