//! The one-call setup through the local ingestion server: the resource from the environment and
//! the code, the global providers and propagator, and the guard delivering everything on drop.
//! (The `tracing` side is in `tests/setup_tracing.rs`: each installs process-wide state.)
#![allow(clippy::unwrap_used)]

use opentelemetry::trace::{SpanKind, TraceContextExt as _, Tracer as _};
use opentelemetry::{global, Context, KeyValue};
use opentelemetry_azure_monitor::testing::IngestionServer;
use opentelemetry_azure_monitor::{AzureMonitor, SetupError};
use opentelemetry_sdk::resource::ResourceDetector;
use opentelemetry_sdk::Resource;
use serde_json::Value;
use std::collections::HashMap;

fn text<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    path.iter()
        .fold(v, |cur, p| &cur[*p])
        .as_str()
        .unwrap_or("")
}

/// A detector of the user's: wins over the environment, loses to the code's attributes.
struct Staging;

impl ResourceDetector for Staging {
    fn detect(&self) -> Resource {
        Resource::builder_empty()
            .with_attributes([
                KeyValue::new("deployment.environment.name", "staging"),
                KeyValue::new("service.version", "1.5"),
                KeyValue::new("host.name", "build-agent"),
            ])
            .build()
    }
}

#[test]
fn the_setup_installs_everything_and_delivers_on_drop() {
    // The environment names the service; the user's detector and code add to it, and win on
    // the same keys (code over detector over environment).
    std::env::set_var("OTEL_SERVICE_NAME", "checkout");
    std::env::set_var(
        "OTEL_RESOURCE_ATTRIBUTES",
        "service.name=ignored,service.namespace=shop,service.version=1.0,deployment.environment.name=prod",
    );
    let server = IngestionServer::start().unwrap();
    let azure_monitor = AzureMonitor::builder()
        .with_connection_string(server.connection_string())
        .with_offline_storage(false)
        .with_resource_detector(Staging)
        .with_resource_attributes([KeyValue::new("service.version", "2.0")])
        .with_tracing_subscriber(false)
        .install()
        .unwrap();

    // The global tracer and meter are the setup's; the global propagator is W3C's.
    let tracer = global::tracer("checkout");
    let span = tracer
        .span_builder("GET /cart")
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("http.route", "/cart"),
            KeyValue::new("http.response.status_code", 200),
        ])
        .start(&tracer);
    let cx = Context::current_with_span(span);
    let mut headers = HashMap::new();
    global::get_text_map_propagator(|p| p.inject_context(&cx, &mut headers));
    let trace_id = cx.span().span_context().trace_id().to_string();
    assert!(
        headers["traceparent"].starts_with(&format!("00-{trace_id}-")),
        "{headers:?}"
    );
    cx.span().end();
    global::meter("checkout")
        .u64_counter("carts")
        .build()
        .add(1, &[KeyValue::new("region", "eu")]);
    // Log appenders take the logger provider from the guard.
    let _ = azure_monitor.logger_provider();

    drop(azure_monitor);

    let items = server.envelopes();
    assert!(server.rejected().is_empty(), "{:?}", server.rejected());
    let request = items
        .iter()
        .find(|i| text(i, &["data", "baseType"]) == "RequestData")
        .unwrap();
    assert_eq!(text(request, &["data", "baseData", "name"]), "GET /cart");
    assert_eq!(text(request, &["tags", "ai.operation.id"]), trace_id);
    assert_eq!(text(request, &["tags", "ai.cloud.role"]), "shop.checkout");
    assert_eq!(text(request, &["tags", "ai.application.ver"]), "2.0");
    let resource = items
        .iter()
        .find(|i| i["data"]["baseData"]["metrics"][0]["name"] == "_OTELRESOURCE_")
        .unwrap();
    let properties = &resource["data"]["baseData"]["properties"];
    assert_eq!(properties["deployment.environment.name"], "staging");
    assert_eq!(properties["host.name"], "build-agent");
    assert_eq!(properties["service.namespace"], "shop");
    assert_eq!(properties["service.name"], "checkout");
    let carts = items
        .iter()
        .find(|i| i["data"]["baseData"]["metrics"][0]["name"] == "carts")
        .unwrap();
    assert_eq!(carts["data"]["baseData"]["metrics"][0]["value"], 1.0);
    assert_eq!(text(carts, &["tags", "ai.cloud.role"]), "shop.checkout");
}

#[test]
fn without_a_connection_string_install_fails_and_says_so() {
    let e = AzureMonitor::builder()
        .with_connection_string("IngestionEndpoint=https://example.com")
        .with_tracing_subscriber(false)
        .install()
        .unwrap_err();
    assert!(matches!(e, SetupError::Build(_)), "{e:?}");
    assert!(e.to_string().contains("InstrumentationKey"), "{e}");
}
