//! Shared by the viewer's tests: the demo's shop traffic and a minimal HTTP client.

#![allow(dead_code)] // each test file uses a part

pub(crate) mod shop;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_azure_monitor::testing::IngestionServer;
use serde_json::{json, Value};

/// `GET path` from `endpoint` (`http://127.0.0.1:PORT`) with this `Host`: status and body.
pub(crate) fn get_with_host(endpoint: &str, path: &str, host: &str) -> (u16, String) {
    let addr = endpoint.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).expect("connect to the viewer");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    (status, body.to_owned())
}

/// `GET path` as JSON; panics unless the status is 200.
pub(crate) fn get_json(endpoint: &str, path: &str) -> Value {
    let host = endpoint.trim_start_matches("http://");
    let (status, body) = get_with_host(endpoint, path, host);
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).expect("JSON")
}

/// `now` as RFC 3339 UTC with 7 fraction digits, as the Track API wants.
pub(crate) fn utc_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    let secs = i64::try_from(now.as_secs()).expect("seconds fit");
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let (era, doe) = (z.div_euclid(146_097), z.rem_euclid(146_097));
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:07}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        now.subsec_nanos() / 100
    )
}

/// A trace item of `role` for `server`, with a fixed operation id.
pub(crate) fn item(server: &IngestionServer, role: &str, message: &str) -> Value {
    json!({
        "name": "Microsoft.ApplicationInsights.Message",
        "time": utc_now(),
        "iKey": server.instrumentation_key(),
        "tags": {"ai.cloud.role": role, "ai.operation.id": "0123456789abcdef0123456789abcdef"},
        "data": {"baseType": "MessageData", "baseData": {"ver": 2, "message": message}}
    })
}

/// POSTs `body` to `/v2.1/track` (gzip-compressed if asked); the status.
pub(crate) fn post(server: &IngestionServer, body: &[u8], gzip: bool) -> u16 {
    let (encoding, body) = if gzip {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(body).unwrap();
        ("Content-Encoding: gzip\r\n", encoder.finish().unwrap())
    } else {
        ("", body.to_vec())
    };
    let mut stream =
        std::net::TcpStream::connect(server.endpoint().trim_start_matches("http://")).unwrap();
    write!(
        stream,
        "POST /v2.1/track HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{encoding}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(&body).unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut stream, &mut answer).unwrap();
    answer.split(' ').nth(1).unwrap().parse().unwrap()
}

/// POSTs `body` to `/QuickPulseService.svc/{operation}` (`ping` or `post`) as a Live Metrics
/// client would; the status and the head of the answer (lower-cased, to find headers in).
pub(crate) fn post_live(server: &IngestionServer, operation: &str, body: &[u8]) -> (u16, String) {
    let mut stream =
        std::net::TcpStream::connect(server.endpoint().trim_start_matches("http://")).unwrap();
    write!(
        stream,
        "POST /QuickPulseService.svc/{operation}?api-version=2024-04-01-preview&ikey={} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nx-ms-qps-role-name: from-header\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        server.instrumentation_key(),
        body.len()
    )
    .unwrap();
    stream.write_all(body).unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut stream, &mut answer).unwrap();
    let head = answer
        .split_once("\r\n\r\n")
        .map_or(answer.as_str(), |(head, _)| head)
        .to_ascii_lowercase();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head)
}

/// One Live Metrics data point of `role` with a request rate, a failed request and an
/// exception, as other languages' exporters post it.
pub(crate) fn live_point(role: &str) -> Value {
    json!({
        "Version": "test", "InvariantVersion": 5, "Instance": format!("{role}-1"),
        "RoleName": role, "MachineName": "devbox", "StreamId": "0123456789abcdef0123456789abcdef",
        "Timestamp": utc_now(), "IsWebApp": false, "PerformanceCollectionSupported": true,
        "Metrics": [
            {"Name": "\\ApplicationInsights\\Requests/Sec", "Value": 3.0, "Weight": 1},
            {"Name": "\\ApplicationInsights\\Requests Failed/Sec", "Value": 1.0, "Weight": 1},
            {"Name": "\\ApplicationInsights\\Request Duration", "Value": 12.5, "Weight": 1},
            {"Name": "\\ApplicationInsights\\Exceptions/Sec", "Value": 1.0, "Weight": 1},
            {"Name": "\\% Process\\Processor Time Normalized", "Value": 4.2, "Weight": 1},
            {"Name": "\\Process\\Physical Bytes", "Value": 52428800.0, "Weight": 1}
        ],
        "Documents": [
            {"DocumentType": "Request", "Name": "GET /broken", "Url": "http://shop.example/broken",
             "ResponseCode": "500", "Duration": "PT0.0125S", "DocumentStreamIds": ["all-types-default"]},
            {"DocumentType": "Exception", "ExceptionType": "shop::Broken",
             "ExceptionMessage": "it broke", "DocumentStreamIds": ["all-types-default"]}
        ]
    })
}
