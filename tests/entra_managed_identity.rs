//! Entra ID end to end through the real `azure_identity::ManagedIdentityCredential`, as on App
//! Service (ENTRA-ID.md §9.C): `APPLICATIONINSIGHTS_AUTHENTICATION_STRING=Authorization=AAD`
//! makes the exporter use the managed identity on its own; `IDENTITY_ENDPOINT` and
//! `IDENTITY_HEADER` point the credential at a local identity endpoint (plain http on
//! loopback) that this test serves; the ingestion server demands its tokens.
//!
//! It sets process environment variables, so it is the only test of this binary.

#![cfg(feature = "azure-identity")]
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use opentelemetry::trace::{Tracer as _, TracerProvider as _};
use opentelemetry_azure_monitor::testing::{IngestionServer, TokenCheck};
use opentelemetry_azure_monitor::{RetryPolicy, SpanExporter};
use opentelemetry_sdk::trace::SdkTracerProvider;

const WAIT: Duration = Duration::from_secs(20);
const IDENTITY_HEADER: &str = "test-identity-header";

/// What the identity endpoint was asked.
#[derive(Debug)]
struct TokenRequest {
    query: String,
    identity_header: Option<String>,
}

/// A local App Service identity endpoint: `GET /msi/token?api-version=2019-08-01&resource=...`
/// with `x-identity-header`, answering `mi-token-1`, `mi-token-2`, ... valid for an hour.
struct IdentityEndpoint {
    url: String,
    requests: Arc<Mutex<Vec<TokenRequest>>>,
    _runtime: tokio::runtime::Runtime,
}

impl IdentityEndpoint {
    fn start() -> IdentityEndpoint {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}/msi/token", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let seen = Arc::clone(&seen);
                        async move { Ok::<_, Infallible>(answer(&request, &seen)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        IdentityEndpoint {
            url,
            requests,
            _runtime: runtime,
        }
    }

    fn calls(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

fn answer(request: &Request<Incoming>, seen: &Mutex<Vec<TokenRequest>>) -> Response<Full<Bytes>> {
    let identity_header = request
        .headers()
        .get("x-identity-header")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let authorised =
        identity_header.as_deref() == Some(IDENTITY_HEADER) && request.uri().path() == "/msi/token";
    let mut seen = seen.lock().unwrap();
    seen.push(TokenRequest {
        query: request.uri().query().unwrap_or_default().to_owned(),
        identity_header,
    });
    if !authorised {
        let mut response = Response::new(Full::new(Bytes::from_static(b"{}")));
        *response.status_mut() = hyper::StatusCode::BAD_REQUEST;
        return response;
    }
    let expires_on = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let body = format!(
        r#"{{"access_token":"mi-token-{}","expires_on":"{expires_on}","token_type":"Bearer","resource":"https://monitor.azure.com/"}}"#,
        seen.len()
    );
    Response::new(Full::new(Bytes::from(body)))
}

#[test]
fn the_managed_identity_of_the_environment_authenticates_every_export() {
    let identity = IdentityEndpoint::start();
    // The only test of this binary: nothing else reads the environment meanwhile.
    std::env::set_var("IDENTITY_ENDPOINT", &identity.url);
    std::env::set_var("IDENTITY_HEADER", IDENTITY_HEADER);
    std::env::set_var(
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
        "Authorization=AAD",
    );

    let server = IngestionServer::start().unwrap();
    // Which managed-identity tokens the resource takes, and whether the identity has its role.
    let policy = Arc::new(Mutex::new((HashSet::from(["mi-token-1".to_owned()]), true)));
    let check = Arc::clone(&policy);
    server.require_bearer_token(move |token| {
        let (valid, has_role) = &*check.lock().unwrap();
        match (valid.contains(token), has_role) {
            (false, _) => TokenCheck::Unauthorized,
            (true, false) => TokenCheck::Forbidden,
            (true, true) => TokenCheck::Accept,
        }
    });
    let storage =
        std::env::temp_dir().join(format!("azure-monitor-entra-mi-{}", std::process::id()));
    // Two exporters of the process: one token.
    let exporters: Vec<SpanExporter> = (0..2)
        .map(|_| {
            SpanExporter::builder()
                .with_connection_string(server.connection_string())
                .with_storage_directory(&storage)
                .with_retry_policy(
                    RetryPolicy::default()
                        .with_initial_delay(Duration::from_millis(10))
                        .with_max_delay(Duration::from_millis(100)),
                )
                .with_resource_metric(false)
                .build()
                .unwrap()
        })
        .collect();
    let providers: Vec<SdkTracerProvider> = exporters
        .into_iter()
        .map(|exporter| {
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .build()
        })
        .collect();
    let mut sent = 0;
    let mut export = |count: usize| {
        for _ in 0..count {
            for provider in &providers {
                provider
                    .tracer("mi")
                    .in_span(format!("span {sent}"), |_| {});
                provider.force_flush().unwrap();
                sent += 1;
            }
        }
        sent
    };

    // Many batches, one token.
    let total = export(5);
    assert!(server.wait_for_envelopes(total, WAIT));
    assert_eq!(identity.calls(), 1);
    assert_eq!(server.requests_with_token("mi-token-1"), total);
    {
        let requests = identity.requests.lock().unwrap();
        let query = &requests[0].query;
        assert!(query.contains("api-version=2019-08-01"), "{query}");
        assert!(
            query.contains("resource=https%3A%2F%2Fmonitor.azure.com%2F")
                || query.contains("resource=https://monitor.azure.com/"),
            "{query}"
        );
        assert_eq!(
            requests[0].identity_header.as_deref(),
            Some(IDENTITY_HEADER)
        );
    }

    // The service stops taking mi-token-1: a 401, a fresh token from the endpoint, nothing
    // lost.
    *policy.lock().unwrap() = (HashSet::from(["mi-token-2".to_owned()]), true);
    let total = export(2);
    assert!(server.wait_for_envelopes(total, WAIT));
    assert_eq!(identity.calls(), 2);
    assert!(server.requests_with_token("mi-token-2") >= 4);

    // The identity loses its role: 403s, the data is kept, and arrives once the role is back.
    policy.lock().unwrap().1 = false;
    let seen = server.requests().len();
    let total = export(1);
    assert!(server.wait_for_requests(seen + 2, WAIT));
    assert!(server.requests()[seen..]
        .iter()
        .all(|r| r.status == Some(403)));
    assert_eq!(server.envelopes().len(), total - 2);
    policy.lock().unwrap().1 = true;
    assert!(server.wait_for_envelopes(total, WAIT));
    assert_eq!(identity.calls(), 2);

    for provider in providers {
        provider.shutdown().unwrap();
    }
    // Everything arrived exactly once, and never without a token.
    let mut names: Vec<String> = server
        .envelopes()
        .iter()
        .map(|e| e["data"]["baseData"]["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    let before = names.len();
    names.dedup();
    assert_eq!((before, names.len()), (total, total));
    assert!(server.requests().iter().all(|r| r
        .authorization
        .as_deref()
        .is_some_and(|a| a.starts_with("Bearer mi-token-"))));
    let _ = std::fs::remove_dir_all(&storage);
}
