//! Spans and events made with `tracing`, through tracing-opentelemetry 0.34 and the log
//! bridge (opentelemetry-appender-tracing), into the local ingestion server: the fields that
//! axum-tracing-opentelemetry and reqwest-tracing record map like OpenTelemetry-API spans,
//! and one `tracing` event is one item, with its level, in its span's operation.

#![allow(clippy::unwrap_used)]

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use opentelemetry_azure_monitor::testing::IngestionServer;
use opentelemetry_azure_monitor::{LogExporter, SpanExporter};
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde_json::Value;
use tracing_subscriber::layer::SubscriberExt;

fn base(v: &Value) -> &Value {
    &v["data"]["baseData"]
}

/// What an axum service instrumented with axum-tracing-opentelemetry 0.42 records for a plain
/// HTTP/1.1 request to an unmatched route, and a reqwest-tracing 0.7 client call inside it
/// that fails, with one `tracing` event in each.
fn serve_one_request() {
    let request = tracing::info_span!(
        "HTTP request",
        http.request.method = "GET",
        http.route = tracing::field::Empty,
        network.protocol.version = "1.1",
        server.address = "localhost:3000",
        user_agent.original = "curl/8.5",
        http.response.status_code = tracing::field::Empty,
        url.path = "/no/such",
        url.query = tracing::field::Empty,
        url.scheme = "",
        otel.name = "GET",
        otel.kind = "Server",
        otel.status_code = tracing::field::Empty,
    );
    request.in_scope(|| {
        tracing::warn!(path = "/no/such", "no route matched");
        let call = tracing::info_span!(
            "GET",
            http.request.method = "GET",
            url.scheme = "http",
            server.address = "inventory",
            server.port = 8080,
            url.full = "http://inventory:8080/stock/7",
            otel.name = "GET /stock/7",
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            http.response.status_code = tracing::field::Empty,
        );
        call.in_scope(|| {
            tracing::error!(attempt = 1, "inventory unavailable");
        });
        call.record("http.response.status_code", 503i64);
        call.record("otel.status_code", "ERROR");
    });
    request.record("http.response.status_code", 404i64);
}

/// Runs [`serve_one_request`] with the span layer, and the log bridge when `bridge`; the span
/// exporter leaves `tracing` span events to the bridge when it is on.
fn run(bridge: bool) -> Vec<Value> {
    let server = IngestionServer::start().unwrap();
    let spans = SpanExporter::builder()
        .with_connection_string(server.connection_string())
        .with_offline_storage(false)
        .with_resource_metric(false)
        .with_tracing_span_events(!bridge)
        .build()
        .unwrap();
    let logs = LogExporter::builder()
        .with_connection_string(server.connection_string())
        .with_offline_storage(false)
        .build()
        .unwrap();
    let tracer_provider = SdkTracerProvider::builder()
        .with_simple_exporter(spans)
        .build();
    let logger_provider = SdkLoggerProvider::builder()
        .with_simple_exporter(logs)
        .build();
    let layers = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(tracer_provider.tracer("svc")));
    if bridge {
        let subscriber = layers.with(OpenTelemetryTracingBridge::new(&logger_provider));
        tracing::subscriber::with_default(subscriber, serve_one_request);
    } else {
        tracing::subscriber::with_default(layers, serve_one_request);
    }
    tracer_provider.force_flush().unwrap();
    logger_provider.force_flush().unwrap();
    assert!(server.rejected().is_empty(), "{:?}", server.rejected());
    let items = server.envelopes();
    tracer_provider.shutdown().unwrap();
    logger_provider.shutdown().unwrap();
    items
}

fn one<'a>(items: &'a [Value], base_type: &str) -> &'a Value {
    let found: Vec<&Value> = items
        .iter()
        .filter(|v| v["data"]["baseType"] == base_type)
        .collect();
    assert_eq!(found.len(), 1, "{base_type}: {items:#?}");
    found[0]
}

fn check_spans(items: &[Value]) -> (&Value, &Value) {
    let request = one(items, "RequestData");
    let r = base(request);
    assert_eq!(r["name"], "GET /no/such");
    assert_eq!(request["tags"]["ai.operation.name"], "GET /no/such");
    assert_eq!(r["url"], "http://localhost:3000/no/such");
    assert_eq!(r["responseCode"], "404");
    assert_eq!(r["success"], false);
    assert_eq!(request["tags"]["ai.user.userAgent"], "curl/8.5");

    let dependency = one(items, "RemoteDependencyData");
    let d = base(dependency);
    assert_eq!(d["name"], "GET /stock/7");
    assert_eq!(d["type"], "HTTP");
    assert_eq!(d["target"], "inventory:8080");
    assert_eq!(d["resultCode"], "503");
    assert_eq!(d["success"], false);
    assert_eq!(
        dependency["tags"]["ai.operation.id"],
        request["tags"]["ai.operation.id"]
    );
    assert_eq!(dependency["tags"]["ai.operation.parentId"], r["id"]);
    (request, dependency)
}

#[test]
fn with_the_log_bridge_each_event_is_one_log_item_in_its_operation() {
    let items = run(true);
    let (request, dependency) = check_spans(&items);
    let messages: Vec<&Value> = items
        .iter()
        .filter(|v| v["data"]["baseType"] == "MessageData")
        .collect();
    assert_eq!(messages.len(), 2, "one item per event: {messages:#?}");
    let warn = messages
        .iter()
        .find(|m| base(m)["message"] == "no route matched")
        .unwrap();
    assert_eq!(base(warn)["severityLevel"], "Warning");
    assert_eq!(
        warn["tags"]["ai.operation.id"],
        request["tags"]["ai.operation.id"]
    );
    assert_eq!(warn["tags"]["ai.operation.parentId"], base(request)["id"]);
    let error = messages
        .iter()
        .find(|m| base(m)["message"] == "inventory unavailable")
        .unwrap();
    assert_eq!(base(error)["severityLevel"], "Error");
    assert_eq!(
        error["tags"]["ai.operation.parentId"],
        base(dependency)["id"]
    );
}

#[test]
fn without_the_bridge_span_events_carry_the_level() {
    let items = run(false);
    let (request, dependency) = check_spans(&items);
    let messages: Vec<&Value> = items
        .iter()
        .filter(|v| v["data"]["baseType"] == "MessageData")
        .collect();
    assert_eq!(messages.len(), 2, "{messages:#?}");
    let warn = messages
        .iter()
        .find(|m| base(m)["message"] == "no route matched")
        .unwrap();
    assert_eq!(base(warn)["severityLevel"], "Warning");
    assert_eq!(warn["tags"]["ai.operation.parentId"], base(request)["id"]);
    let error = messages
        .iter()
        .find(|m| base(m)["message"] == "inventory unavailable")
        .unwrap();
    assert_eq!(base(error)["severityLevel"], "Error");
    assert_eq!(
        error["tags"]["ai.operation.parentId"],
        base(dependency)["id"]
    );
}
