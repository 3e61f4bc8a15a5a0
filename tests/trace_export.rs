//! Spans through real SDK pipelines into the local ingestion server: what arrives on the wire,
//! with both processor kinds, and under every fault the service can produce.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use opentelemetry::trace::{Span, SpanKind, Status, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_azure_monitor::testing::{Fault, IngestionServer};
use opentelemetry_azure_monitor::{RetryPolicy, SpanExporter};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);

fn fast_retries() -> RetryPolicy {
    RetryPolicy::new()
        .with_max_attempts(5)
        .with_initial_delay(Duration::from_millis(5))
        .with_max_delay(Duration::from_millis(20))
}

fn resource() -> Resource {
    Resource::builder_empty()
        .with_attributes([
            KeyValue::new("service.name", "checkout"),
            KeyValue::new("service.namespace", "shop"),
            KeyValue::new("service.version", "1.2.3"),
            KeyValue::new("service.instance.id", "checkout-1"),
        ])
        .build()
}

fn exporter(server: &IngestionServer) -> SpanExporter {
    SpanExporter::builder()
        .with_connection_string(server.connection_string())
        .with_retry_policy(fast_retries())
        .with_resource_metric(false)
        // These tests are about delivery within one export; offline storage (whose default
        // directory every test of this binary would share) is tested in `no_data_lost.rs`.
        .with_offline_storage(false)
        .build()
        .unwrap()
}

fn provider(exporter: SpanExporter) -> SdkTracerProvider {
    SdkTracerProvider::builder()
        .with_resource(resource())
        .with_batch_exporter(exporter)
        .build()
}

/// One web request: a server span, a database call, an HTTP call that fails with an exception.
fn web_request(provider: &SdkTracerProvider) {
    let tracer = provider.tracer("shop");
    let server = tracer
        .span_builder("GET /orders/{id}")
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("http.route", "/orders/{id}"),
            KeyValue::new("url.scheme", "https"),
            KeyValue::new("url.path", "/orders/42"),
            KeyValue::new("server.address", "shop.example.com"),
            KeyValue::new("http.response.status_code", 500),
            KeyValue::new("client.address", "203.0.113.9"),
            KeyValue::new("order.id", 42),
        ])
        .start(&tracer);
    let cx = Context::current_with_span(server);
    let mut db = tracer
        .span_builder("SELECT orders")
        .with_kind(SpanKind::Client)
        .with_attributes([
            KeyValue::new("db.system.name", "postgresql"),
            KeyValue::new("db.namespace", "shop"),
            KeyValue::new("db.query.text", "SELECT * FROM orders WHERE id = $1"),
            KeyValue::new("server.address", "db"),
            KeyValue::new("server.port", 5432),
        ])
        .start_with_context(&tracer, &cx);
    db.end();
    let mut http = tracer
        .span_builder("GET")
        .with_kind(SpanKind::Client)
        .with_attributes([
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("url.full", "https://inventory.example.com:443/items/42"),
            KeyValue::new("server.address", "inventory.example.com"),
            KeyValue::new("server.port", 443),
            KeyValue::new("http.response.status_code", 503),
        ])
        .start_with_context(&tracer, &cx);
    http.set_status(Status::error("unavailable"));
    http.end();
    let span = cx.span();
    span.add_event(
        "exception",
        vec![
            KeyValue::new("exception.type", "InventoryError"),
            KeyValue::new("exception.message", "inventory answered 503"),
            KeyValue::new(
                "exception.stacktrace",
                "0: shop::load\n   at src/lib.rs:1:1",
            ),
        ],
    );
    span.set_status(Status::error("inventory unavailable"));
    span.end();
}

fn by_type<'a>(items: &'a [Value], base_type: &str) -> Vec<&'a Value> {
    items
        .iter()
        .filter(|i| i["data"]["baseType"] == base_type)
        .collect()
}

fn assert_web_request(items: &[Value]) {
    let requests = by_type(items, "RequestData");
    let deps = by_type(items, "RemoteDependencyData");
    let exceptions = by_type(items, "ExceptionData");
    assert_eq!(
        (requests.len(), deps.len(), exceptions.len()),
        (1, 2, 1),
        "{items:#?}"
    );
    let req = requests[0];
    let op = req["tags"]["ai.operation.id"].as_str().unwrap();
    assert_eq!(op.len(), 32);
    assert_eq!(req["name"], "Microsoft.ApplicationInsights.Request");
    assert_eq!(req["tags"]["ai.cloud.role"], "shop.checkout");
    assert_eq!(req["tags"]["ai.cloud.roleInstance"], "checkout-1");
    assert_eq!(req["tags"]["ai.application.ver"], "1.2.3");
    assert_eq!(req["tags"]["ai.operation.name"], "GET /orders/{id}");
    assert_eq!(req["tags"]["ai.location.ip"], "203.0.113.9");
    let rd = &req["data"]["baseData"];
    assert_eq!(rd["name"], "GET /orders/{id}");
    assert_eq!(rd["responseCode"], "500");
    assert_eq!(rd["success"], false);
    assert_eq!(rd["url"], "https://shop.example.com/orders/42");
    assert_eq!(rd["properties"]["order.id"], "42");
    assert!(rd["properties"].get("http.route").is_none());
    let req_id = rd["id"].as_str().unwrap();

    let db = deps
        .iter()
        .find(|d| d["data"]["baseData"]["type"] == "postgresql")
        .unwrap();
    let dd = &db["data"]["baseData"];
    assert_eq!(dd["target"], "db|shop");
    assert_eq!(dd["data"], "SELECT * FROM orders WHERE id = $1");
    assert_eq!(dd["success"], true);
    assert_eq!(db["tags"]["ai.operation.id"], op);
    assert_eq!(db["tags"]["ai.operation.parentId"], req_id);

    let http = deps
        .iter()
        .find(|d| d["data"]["baseData"]["type"] == "HTTP")
        .unwrap();
    let hd = &http["data"]["baseData"];
    assert_eq!(hd["target"], "inventory.example.com");
    assert_eq!(hd["name"], "GET /items/42");
    assert_eq!(hd["resultCode"], "503");
    assert_eq!(hd["success"], false);

    let ex = exceptions[0];
    assert_eq!(ex["tags"]["ai.operation.id"], op);
    assert_eq!(ex["tags"]["ai.operation.parentId"], req_id);
    let details = &ex["data"]["baseData"]["exceptions"][0];
    assert_eq!(details["typeName"], "InventoryError");
    assert_eq!(details["message"], "inventory answered 503");
    assert_eq!(details["hasFullStack"], true);
}

#[test]
fn thread_batch_processor_delivers_a_transaction() {
    let server = IngestionServer::start().unwrap();
    let provider = provider(exporter(&server));
    web_request(&provider);
    provider.force_flush().unwrap();
    let items = server.envelopes();
    assert_web_request(&items);
    assert!(server.rejected().is_empty(), "{:?}", server.rejected());
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].content_encoding.as_deref(), Some("gzip"));
    assert_eq!(requests[0].path, "/v2.1/track");
    provider.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_batch_processor_delivers_a_transaction() {
    use opentelemetry_sdk::runtime;
    use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;

    let server = IngestionServer::start().unwrap();
    let processor = BatchSpanProcessor::builder(exporter(&server), runtime::Tokio).build();
    let provider = SdkTracerProvider::builder()
        .with_resource(resource())
        .with_span_processor(processor)
        .build();
    web_request(&provider);
    let p = provider.clone();
    tokio::task::spawn_blocking(move || p.force_flush())
        .await
        .unwrap()
        .unwrap();
    assert_web_request(&server.envelopes());
    tokio::task::spawn_blocking(move || provider.shutdown())
        .await
        .unwrap()
        .unwrap();
}

#[test]
fn resource_metric_is_sent_once_per_batch() {
    let server = IngestionServer::start().unwrap();
    let exporter = SpanExporter::builder()
        .with_connection_string(server.connection_string())
        .with_offline_storage(false)
        .build()
        .unwrap();
    let provider = provider(exporter);
    web_request(&provider);
    provider.force_flush().unwrap();
    let metrics = server
        .envelopes()
        .into_iter()
        .filter(|i| i["data"]["baseType"] == "MetricData")
        .collect::<Vec<_>>();
    assert_eq!(metrics.len(), 1);
    let point = &metrics[0]["data"]["baseData"];
    assert_eq!(point["metrics"][0]["name"], "_OTELRESOURCE_");
    assert_eq!(point["properties"]["service.name"], "checkout");
    provider.shutdown().unwrap();
}

/// Span ids of the items received, with how often each arrived.
fn arrivals(server: &IngestionServer) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for item in server.envelopes() {
        if let Some(id) = item["data"]["baseData"]["id"].as_str() {
            *seen.entry(id.to_owned()).or_insert(0) += 1;
        }
    }
    seen
}

fn spans(provider: &SdkTracerProvider, n: usize) {
    let tracer = provider.tracer("load");
    for i in 0..n {
        tracer
            .span_builder(format!("job {i}"))
            .with_kind(SpanKind::Internal)
            .start(&tracer)
            .end();
    }
}

fn assert_each_once(server: &IngestionServer, n: usize) {
    let seen = arrivals(server);
    assert_eq!(seen.len(), n, "distinct spans received");
    assert!(seen.values().all(|&c| c == 1), "duplicates: {seen:?}");
}

#[test]
fn retries_a_run_of_503s() {
    let server = IngestionServer::start().unwrap();
    for _ in 0..3 {
        server.push_fault(Fault::Status {
            code: 503,
            retry_after: None,
        });
    }
    let provider = provider(exporter(&server));
    spans(&provider, 20);
    provider.force_flush().unwrap();
    assert_each_once(&server, 20);
    assert_eq!(server.requests().len(), 4);
    provider.shutdown().unwrap();
}

#[test]
fn waits_for_retry_after_on_429() {
    let server = IngestionServer::start().unwrap();
    server.push_fault(Fault::Status {
        code: 429,
        retry_after: Some("1".into()),
    });
    let provider = provider(exporter(&server));
    spans(&provider, 5);
    let start = Instant::now();
    provider.force_flush().unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(950),
        "{:?}",
        start.elapsed()
    );
    assert_each_once(&server, 5);
    provider.shutdown().unwrap();
}

#[test]
fn partial_success_resends_only_retryable_items() {
    let server = IngestionServer::start().unwrap();
    // Item 1 throttled (retried), item 2 sampled out (never retried), item 3 invalid (dropped).
    server.push_fault(Fault::PartialFailure(vec![(1, 429), (2, 206), (3, 400)]));
    let provider = provider(exporter(&server));
    spans(&provider, 6);
    // Item 3 was dropped for good, so the export reports a failure.
    assert!(provider.force_flush().is_err());
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].items, 1, "only the throttled item is re-sent");
    // Accepted: the 3 that passed at once, plus the re-sent one; the sampled one counts as
    // accepted by the service but is not stored.
    let seen = arrivals(&server);
    assert_eq!(seen.len(), 4);
    assert!(seen.values().all(|&c| c == 1));
    provider.shutdown().unwrap();
}

#[test]
fn dropped_connection_is_retried() {
    let server = IngestionServer::start().unwrap();
    server.push_fault(Fault::DropConnection);
    let provider = provider(exporter(&server));
    spans(&provider, 7);
    provider.force_flush().unwrap();
    assert_each_once(&server, 7);
    provider.shutdown().unwrap();
}

#[test]
fn redirect_is_followed_and_remembered() {
    let server = IngestionServer::start().unwrap();
    let stamp = IngestionServer::start().unwrap();
    server.push_fault(Fault::Redirect {
        status: 308,
        location: format!("{}/v2.1/track", stamp.endpoint()),
    });
    // The stamp server takes the same key as the first one.
    let exporter = SpanExporter::builder()
        .with_connection_string(server.connection_string())
        .with_retry_policy(fast_retries())
        .with_resource_metric(false)
        // These tests are about delivery within one export; offline storage (whose default
        // directory every test of this binary would share) is tested in `no_data_lost.rs`.
        .with_offline_storage(false)
        .build()
        .unwrap();
    let provider = provider(exporter);
    spans(&provider, 3);
    provider.force_flush().unwrap();
    spans(&provider, 2);
    provider.force_flush().unwrap();
    assert_eq!(
        server.requests().len(),
        1,
        "only the first request went to the old host"
    );
    assert_each_once(&stamp, 5);
    provider.shutdown().unwrap();
}

#[test]
fn redirect_loop_is_bounded() {
    let server = IngestionServer::start().unwrap();
    for _ in 0..20 {
        server.push_fault(Fault::Redirect {
            status: 307,
            location: format!("{}/v2.1/track", server.endpoint()),
        });
    }
    let provider = provider(exporter(&server));
    spans(&provider, 2);
    assert!(provider.force_flush().is_err());
    assert!(server.requests().len() <= 11, "{}", server.requests().len());
    provider.shutdown().unwrap();
}

#[test]
fn a_hanging_service_does_not_hold_the_export_past_its_deadline() {
    let server = IngestionServer::start().unwrap();
    server.push_fault(Fault::Hang);
    let exporter = SpanExporter::builder()
        .with_connection_string(server.connection_string())
        .with_retry_policy(fast_retries())
        .with_export_timeout(Duration::from_millis(400))
        .with_resource_metric(false)
        // These tests are about delivery within one export; offline storage (whose default
        // directory every test of this binary would share) is tested in `no_data_lost.rs`.
        .with_offline_storage(false)
        .build()
        .unwrap();
    let provider = provider(exporter);
    spans(&provider, 3);
    let start = Instant::now();
    let _ = provider.force_flush();
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    // The hung request never answered; a retry within the deadline may have delivered them.
    assert!(server.wait_for_requests(1, WAIT));
    provider.shutdown().unwrap();
}

#[test]
fn invalid_connection_strings_fail_the_build_without_printing_the_key() {
    let key = "0f0e0d0c-0b0a-4909-8807-060504030201";
    let err = SpanExporter::builder()
        .with_connection_string(format!(
            "InstrumentationKey={key};IngestionEndpoint=not a url"
        ))
        .build()
        .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(text.contains("IngestionEndpoint"), "{text}");
    assert!(!text.contains(key), "{text}");
}

#[test]
fn a_second_shutdown_reports_already_shut_down() {
    let server = IngestionServer::start().unwrap();
    let exporter = exporter(&server);
    use opentelemetry_sdk::trace::SpanExporter as _;
    exporter.shutdown().unwrap();
    assert!(matches!(
        exporter.shutdown(),
        Err(opentelemetry_sdk::error::OTelSdkError::AlreadyShutdown)
    ));
}
