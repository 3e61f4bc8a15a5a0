//! Telemetry processors through real SDK providers of all three signals into the local
//! ingestion server: set the role, drop health-check requests, scrub a property, add a
//! dimension to every item, and survive a processor that panics.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use opentelemetry::logs::{LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::{Span as _, SpanKind, Tracer as _, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_azure_monitor::testing::IngestionServer;
use opentelemetry_azure_monitor::{
    ContextTag, ItemKind, LogExporter, MetricExporter, SpanExporter, TelemetryItem,
};
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use serde_json::Value;

fn resource() -> Resource {
    Resource::builder_empty()
        .with_attributes([
            KeyValue::new("service.name", "detected"),
            KeyValue::new("service.instance.id", "instance-1"),
        ])
        .build()
}

/// The processors of the examples, in the order a user would add them.
fn set_role(item: &mut TelemetryItem<'_>) {
    item.set_tag(ContextTag::CloudRole, "orders-api");
}

fn drop_health_checks(item: &mut TelemetryItem<'_>) {
    if item.kind() == ItemKind::Request && item.name() == Some("GET /healthz") {
        item.discard();
    }
}

fn scrub(item: &mut TelemetryItem<'_>) {
    if item.property("user.email").is_some() {
        item.set_property("user.email", "<scrubbed>");
    }
}

fn add_ring(item: &mut TelemetryItem<'_>) {
    item.set_property("ring", "canary");
}

fn assert_all_accepted(server: &IngestionServer) {
    let rejected = server.rejected();
    assert!(rejected.is_empty(), "{rejected:#?}");
}

fn base_types(items: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = items
        .iter()
        .map(|i| {
            i["data"]["baseType"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    v.sort();
    v
}

#[test]
fn processors_on_spans() {
    let server = IngestionServer::start().unwrap();
    let exporter = SpanExporter::builder()
        .with_connection_string(server.connection_string())
        .with_offline_storage(false)
        .with_processor(set_role)
        .with_processor(drop_health_checks)
        .with_processor(scrub)
        .with_processor(add_ring)
        .build()
        .unwrap();
    let provider = SdkTracerProvider::builder()
        .with_resource(resource())
        .with_batch_exporter(exporter)
        .build();
    let tracer = provider.tracer("test");
    for name in ["GET /healthz", "GET /orders"] {
        let mut span = tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new("http.response.status_code", 200),
                KeyValue::new("url.path", name.trim_start_matches("GET ").to_owned()),
                KeyValue::new("user.email", "someone@example.com"),
            ])
            .start(&tracer);
        span.add_event("cache miss", vec![]);
        span.end();
    }
    provider.force_flush().unwrap();
    assert_all_accepted(&server);
    let items = server.envelopes();
    // The health check is gone (its event too stays: a trace, not a request); the resource
    // metric and the other request remain.
    let requests: Vec<&Value> = items
        .iter()
        .filter(|i| i["data"]["baseType"] == "RequestData")
        .collect();
    assert_eq!(requests.len(), 1, "{items:#?}");
    assert_eq!(requests[0]["data"]["baseData"]["name"], "GET /orders");
    assert_eq!(
        base_types(&items),
        ["MessageData", "MessageData", "MetricData", "RequestData"]
    );
    for item in &items {
        assert_eq!(item["tags"]["ai.cloud.role"], "orders-api", "{item}");
        assert_eq!(
            item["tags"]["ai.cloud.roleInstance"], "instance-1",
            "{item}"
        );
        assert_eq!(
            item["data"]["baseData"]["properties"]["ring"], "canary",
            "{item}"
        );
    }
    assert_eq!(
        requests[0]["data"]["baseData"]["properties"]["user.email"],
        "<scrubbed>"
    );
    provider.shutdown().unwrap();
}

#[test]
fn processors_on_logs_and_metrics() {
    let server = IngestionServer::start().unwrap();
    let logs = LogExporter::builder()
        .with_connection_string(server.connection_string())
        .with_offline_storage(false)
        .with_processor(set_role)
        .with_processor(scrub)
        .with_processor(add_ring)
        .with_processor(|item| {
            // Drop noisy debug lines: traces with the property `noisy`.
            if item.kind() == ItemKind::Trace && item.property("noisy").is_some() {
                item.discard();
            }
        })
        .build()
        .unwrap();
    let logger_provider = SdkLoggerProvider::builder()
        .with_resource(resource())
        .with_batch_exporter(logs)
        .build();
    let logger = logger_provider.logger("test");
    for (body, noisy) in [("kept", false), ("dropped", true)] {
        let mut record = logger.create_log_record();
        record.set_body(body.into());
        record.set_severity_number(Severity::Info);
        record.add_attribute("user.email", "someone@example.com");
        if noisy {
            record.add_attribute("noisy", true);
        }
        logger.emit(record);
    }
    logger_provider.force_flush().unwrap();

    let metrics = MetricExporter::builder()
        .with_connection_string(server.connection_string())
        .with_offline_storage(false)
        .with_processor(set_role)
        .with_processor(add_ring)
        .build()
        .unwrap();
    let meter_provider = SdkMeterProvider::builder()
        .with_resource(resource())
        .with_reader(PeriodicReader::builder(metrics).build())
        .build();
    let counter = meter_provider.meter("test").u64_counter("orders").build();
    counter.add(3, &[KeyValue::new("region", "eu")]);
    meter_provider.force_flush().unwrap();

    assert_all_accepted(&server);
    let items = server.envelopes();
    assert_eq!(
        base_types(&items),
        ["MessageData", "MetricData"],
        "{items:#?}"
    );
    for item in &items {
        assert_eq!(item["tags"]["ai.cloud.role"], "orders-api");
        assert_eq!(item["data"]["baseData"]["properties"]["ring"], "canary");
    }
    let log = items
        .iter()
        .find(|i| i["data"]["baseType"] == "MessageData")
        .unwrap();
    assert_eq!(log["data"]["baseData"]["message"], "kept");
    assert_eq!(
        log["data"]["baseData"]["properties"]["user.email"],
        "<scrubbed>"
    );
    let metric = items
        .iter()
        .find(|i| i["data"]["baseType"] == "MetricData")
        .unwrap();
    assert_eq!(metric["data"]["baseData"]["metrics"][0]["name"], "orders");
    assert_eq!(metric["data"]["baseData"]["properties"]["region"], "eu");
    logger_provider.shutdown().unwrap();
    meter_provider.shutdown().unwrap();
}

#[test]
fn a_panicking_processor_drops_nothing() {
    let server = IngestionServer::start().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let exporter = SpanExporter::builder()
        .with_connection_string(server.connection_string())
        .with_offline_storage(false)
        .with_resource_metric(false)
        .with_processor(|item| {
            // Half an edit, a discard, then a bug: none of it counts.
            item.set_tag(ContextTag::CloudRole, "half-done");
            item.discard();
            let name = item.name().unwrap_or_default().to_owned();
            if name.starts_with("op") {
                panic!("processor bug on {name}");
            }
        })
        .with_processor(move |item| {
            counted.fetch_add(1, Ordering::Relaxed);
            item.set_property("after", "ran");
        })
        .build()
        .unwrap();
    let provider = SdkTracerProvider::builder()
        .with_resource(resource())
        .with_batch_exporter(exporter)
        .build();
    let tracer = provider.tracer("test");
    for i in 0..3 {
        tracer.in_span(format!("op {i}"), |_| {});
    }
    provider.force_flush().unwrap();
    assert_all_accepted(&server);
    let items = server.envelopes();
    assert_eq!(items.len(), 3, "{items:#?}");
    for item in &items {
        assert_eq!(item["tags"]["ai.cloud.role"], "detected");
        assert_eq!(item["data"]["baseData"]["properties"]["after"], "ran");
    }
    assert_eq!(calls.load(Ordering::Relaxed), 3);
    provider.shutdown().unwrap();
}
