//! The one-call setup with an Azure Monitor sampler chosen by the environment
//! (`OTEL_TRACES_SAMPLER=microsoft.fixed_percentage`): only sampled requests are sent, and the
//! standard metrics, on by default, still count every request. (A test binary of its own: it
//! sets process-wide environment variables.)
#![allow(clippy::unwrap_used)]

use opentelemetry::global;
use opentelemetry::trace::{Span as _, SpanKind, Tracer as _};
use opentelemetry_azure_monitor::testing::IngestionServer;
use opentelemetry_azure_monitor::AzureMonitor;
use serde_json::Value;

const REQUESTS: usize = 400;

fn base(v: &Value) -> &Value {
    &v["data"]["baseData"]
}

#[test]
fn environment_sampling_with_standard_metrics_counts_every_request() {
    std::env::set_var("OTEL_TRACES_SAMPLER", "microsoft.fixed_percentage");
    std::env::set_var("OTEL_TRACES_SAMPLER_ARG", "0.1");
    let server = IngestionServer::start().unwrap();
    let azure_monitor = AzureMonitor::builder()
        .with_connection_string(server.connection_string())
        .with_offline_storage(false)
        .with_service_name("checkout")
        .with_tracing_subscriber(false)
        .install()
        .unwrap();

    let tracer = global::tracer("checkout");
    for i in 0..REQUESTS {
        let mut span = tracer
            .span_builder(format!("GET /orders/{i}"))
            .with_kind(SpanKind::Server)
            .with_attributes([
                opentelemetry::KeyValue::new("http.request.method", "GET"),
                opentelemetry::KeyValue::new("http.route", "/orders/{id}"),
                opentelemetry::KeyValue::new("http.response.status_code", 200),
            ])
            .start(&tracer);
        span.end();
    }
    azure_monitor.shutdown().unwrap();

    let items = server.envelopes();
    assert!(server.rejected().is_empty(), "{:?}", server.rejected());
    let requests: Vec<&Value> = items
        .iter()
        .filter(|v| v["data"]["baseType"] == "RequestData")
        .collect();
    // About 10% of the traces are kept (the DJB2 score of random trace ids), each with its rate
    // and marked as counted by the standard metrics.
    assert!(
        (10..=90).contains(&requests.len()),
        "{} of {REQUESTS} requests sent",
        requests.len()
    );
    for r in &requests {
        assert_eq!(r["sampleRate"], 10.0, "{r}");
        assert!(
            base(r)["properties"]["_MS.ProcessedByMetricExtractors"].is_string(),
            "{r}"
        );
    }
    // Every request, sampled or not, is in the standard metric.
    let counted: i64 = items
        .iter()
        .filter(|v| base(v)["properties"]["_MS.MetricId"] == "requests/duration")
        .map(|v| base(v)["metrics"][0]["count"].as_i64().unwrap())
        .sum();
    assert_eq!(counted, REQUESTS as i64);
}
