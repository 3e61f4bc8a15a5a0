//! `ReqwestTracingMiddleware` with the OpenTelemetry API (no `tracing`), through the one-call
//! setup and the local ingestion server: each call an HTTP dependency of the current span, with
//! its result, and the W3C `traceparent` sent to the service called.
#![allow(clippy::unwrap_used)]

use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::Router;
use opentelemetry::trace::{FutureExt as _, SpanKind, TraceContextExt as _, Tracer as _};
use opentelemetry::{global, Context, KeyValue};
use opentelemetry_azure_monitor::testing::IngestionServer;
use opentelemetry_azure_monitor::{AzureMonitor, ReqwestTracingMiddleware};
use serde_json::Value;

fn text<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    path.iter()
        .fold(v, |cur, p| &cur[*p])
        .as_str()
        .unwrap_or("")
}

// The setup installs the global tracer provider the middleware uses: one test in this process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_dependencies_of_the_current_span_and_carry_its_context() {
    let server = IngestionServer::start().unwrap();
    let azure_monitor = AzureMonitor::builder()
        .with_connection_string(server.connection_string())
        .with_offline_storage(false)
        .with_tracing_subscriber(false)
        .install()
        .unwrap();

    // A service that answers with the `traceparent` it received, and one that is down.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route(
            "/echo",
            get(|headers: HeaderMap| async move {
                headers
                    .get("traceparent")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned()
            }),
        )
        .route("/fail", get(|| async { StatusCode::SERVICE_UNAVAILABLE }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };

    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(ReqwestTracingMiddleware::default())
        .build();
    let tracer = global::tracer("checkout");
    let parent = tracer
        .span_builder("POST /checkout")
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new("http.request.method", "POST"),
            KeyValue::new("http.route", "/checkout"),
        ])
        .start(&tracer);
    let cx = Context::current_with_span(parent);
    let (echoed, failed, refused) = async {
        let echoed = client
            .get(format!("http://{addr}/echo"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let failed = client
            .get(format!("http://{addr}/fail"))
            .send()
            .await
            .unwrap()
            .status();
        let refused = client.get(format!("http://{closed}/")).send().await;
        (echoed, failed, refused)
    }
    .with_context(cx.clone())
    .await;
    assert_eq!(failed, 503);
    assert!(refused.is_err());
    let trace_id = cx.span().span_context().trace_id().to_string();
    let parent_id = cx.span().span_context().span_id().to_string();
    cx.span().end();
    tokio::task::spawn_blocking(move || azure_monitor.shutdown())
        .await
        .unwrap()
        .unwrap();

    let items = server.envelopes();
    assert!(server.rejected().is_empty(), "{:?}", server.rejected());
    let mut calls: Vec<(&str, &str, bool, &Value)> = items
        .iter()
        .filter(|i| text(i, &["data", "baseType"]) == "RemoteDependencyData")
        .map(|i| {
            let d = &i["data"]["baseData"];
            assert_eq!(text(d, &["type"]), "HTTP", "{i:#}");
            assert_eq!(text(i, &["tags", "ai.operation.id"]), trace_id);
            assert_eq!(text(i, &["tags", "ai.operation.parentId"]), parent_id);
            (
                text(d, &["name"]),
                text(d, &["resultCode"]),
                d["success"].as_bool().unwrap(),
                i,
            )
        })
        .collect();
    calls.sort_by_key(|(name, ..)| *name);
    let summary: Vec<_> = calls.iter().map(|(n, c, s, _)| (*n, *c, *s)).collect();
    assert_eq!(
        summary,
        [
            ("GET /", "0", false),
            ("GET /echo", "200", true),
            ("GET /fail", "503", false),
        ]
    );
    let (_, _, _, echo) = calls[1];
    assert_eq!(
        text(echo, &["data", "baseData", "target"]),
        addr.to_string()
    );
    let echo_id = text(echo, &["data", "baseData", "id"]);
    assert_eq!(echoed, format!("00-{trace_id}-{echo_id}-01"));
}
