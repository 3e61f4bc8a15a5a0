//! HTTP clients for `opentelemetry-application-insights` in the benches, and body helpers.

use std::io::Read;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};

/// Answers 200 to every request and keeps its body: the other exporter's conversion, JSON and
/// gzip are measured, not the network.
#[derive(Debug, Default, Clone)]
pub(crate) struct KeepBody(pub(crate) Arc<Mutex<Vec<Vec<u8>>>>);

impl KeepBody {
    /// The bodies received so far.
    pub(crate) fn bodies(&self) -> Vec<Vec<u8>> {
        self.0.lock().map(|b| b.clone()).unwrap_or_default()
    }

    /// Forgets the bodies received so far.
    pub(crate) fn clear(&self) {
        if let Ok(mut bodies) = self.0.lock() {
            bodies.clear();
        }
    }
}

#[async_trait]
impl HttpClient for KeepBody {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        if let Ok(mut bodies) = self.0.lock() {
            bodies.push(request.body().to_vec());
        }
        Ok(Response::builder().status(200).body(Bytes::from_static(
            br#"{"itemsReceived":0,"itemsAccepted":0,"errors":[]}"#,
        ))?)
    }
}

/// Posts to the local ingestion server. That exporter always speaks https, so the request goes
/// to `endpoint` (the server's plain-http address) with the request's path.
#[derive(Debug, Clone)]
pub(crate) struct Post {
    pub(crate) client: reqwest::Client,
    pub(crate) endpoint: String,
}

#[async_trait]
impl HttpClient for Post {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let url = format!("{}{}", self.endpoint, parts.uri.path());
        let mut builder = self.client.request(parts.method, url);
        for (name, value) in &parts.headers {
            builder = builder.header(name, value);
        }
        let response = builder.body(body).send().await?;
        let status = response.status();
        let body = response.bytes().await?;
        Ok(Response::builder().status(status).body(body)?)
    }
}

/// The JSON inside a gzip body.
pub(crate) fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = flate2::read::GzDecoder::new(body).read_to_end(&mut out);
    out
}

/// Prints the JSON and gzip bytes per item of both exporters' bodies for the same data; with
/// `BENCH_DUMP_DIR` set, also writes both exporters' uncompressed JSON bodies into that directory.
pub(crate) fn report_sizes(what: &str, items: usize, ours: &[Vec<u8>], theirs: &[Vec<u8>]) {
    let gz: usize = ours.iter().map(Vec::len).sum();
    let json: usize = ours.iter().map(|b| gunzip(b).len()).sum();
    let their_gz: usize = theirs.iter().map(Vec::len).sum();
    let their_json: usize = theirs.iter().map(|b| gunzip(b).len()).sum();
    let per = |n: usize| n as f64 / items.max(1) as f64;
    if let Some(dir) = std::env::var_os("BENCH_DUMP_DIR") {
        let dir = std::path::PathBuf::from(dir);
        for (who, bodies) in [("ours", ours), ("theirs", theirs)] {
            let json: Vec<u8> = bodies.iter().flat_map(|b| gunzip(b)).collect();
            let path = dir.join(format!("{}-{who}.json", what.replace(' ', "_")));
            std::fs::write(&path, json).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }
    println!(
        "bytes per {what}: ours JSON {:.0} B, gzip {:.0} B; \
         opentelemetry-application-insights JSON {:.0} B, gzip {:.0} B \
         (JSON ratio {:.2}, wire ratio {:.2})",
        per(json),
        per(gz),
        per(their_json),
        per(their_gz),
        json as f64 / their_json.max(1) as f64,
        gz as f64 / their_gz.max(1) as f64,
    );
}

/// The other exporter, sending with `client` for `connection_string`.
pub(crate) fn theirs<C: HttpClient + 'static>(
    connection_string: String,
    client: C,
) -> opentelemetry_application_insights::Exporter<C> {
    opentelemetry_application_insights::Exporter::new_from_connection_string(
        connection_string,
        client,
    )
    .unwrap_or_else(|e| panic!("building their exporter: {e}"))
}
