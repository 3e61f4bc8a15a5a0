//! Sampling and the standard metrics through real SDK pipelines into the local ingestion
//! server: with 10% sampling, the standard metrics still count every request and dependency,
//! only sampled spans are sent, each marked as counted and carrying its sample rate; logs of
//! sampled-out traces can be dropped with them.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use opentelemetry::logs::{LogRecord as _, Logger as _, LoggerProvider as _};
use opentelemetry::trace::{
    Span as _, SpanKind, Status, TraceContextExt, Tracer, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_azure_monitor::testing::IngestionServer;
use opentelemetry_azure_monitor::{
    ApplicationInsightsSampler, LogExporter, SpanExporter, StandardMetricsProcessor,
};
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use serde_json::Value;

fn resource() -> Resource {
    Resource::builder_empty()
        .with_attributes([
            KeyValue::new("service.name", "checkout"),
            KeyValue::new("service.instance.id", "checkout-1"),
        ])
        .build()
}

fn base(v: &Value) -> &Value {
    &v["data"]["baseData"]
}

fn of_type<'a>(items: &'a [Value], base_type: &str) -> Vec<&'a Value> {
    items
        .iter()
        .filter(|v| v["data"]["baseType"] == base_type)
        .collect()
}

/// The standard-metric points received for `metric`, with their properties.
fn standard_points<'a>(items: &'a [Value], metric: &str) -> Vec<&'a Value> {
    of_type(items, "MetricData")
        .into_iter()
        .filter(|v| base(v)["properties"]["_MS.MetricId"] == metric)
        .collect()
}

#[test]
fn with_ten_percent_sampling_the_standard_metrics_count_everything() {
    let server = IngestionServer::start().unwrap();
    let processor = StandardMetricsProcessor::builder()
        .with_connection_string(server.connection_string())
        .with_offline_storage(false)
        .build()
        .unwrap();
    let exporter = SpanExporter::builder()
        .with_connection_string(server.connection_string())
        .with_offline_storage(false)
        .with_resource_metric(false)
        .build()
        .unwrap();
    // The SDK's default (thread-based) batch processor forwards unsampled spans to the
    // exporter: the exporter must drop them.
    let provider = SdkTracerProvider::builder()
        .with_resource(resource())
        .with_sampler(
            ApplicationInsightsSampler::new(0.1)
                .unwrap()
                .with_record_only(true),
        )
        .with_span_processor(processor)
        .with_batch_exporter(exporter)
        .build();
    let tracer = provider.tracer("shop");

    let t0 = SystemTime::now();
    let mut sampled_requests = 0;
    let mut sampled_dependencies = 0;
    for i in 0..1000u32 {
        let failed = i % 5 == 0; // 200 failures
        let mut span = tracer
            .span_builder("GET /orders/{id}")
            .with_kind(SpanKind::Server)
            .with_start_time(t0)
            .with_attributes([
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new("http.route", "/orders/{id}"),
                KeyValue::new("http.response.status_code", if failed { 500 } else { 200 }),
            ])
            .start(&tracer);
        if failed {
            span.set_status(Status::error("server error"));
        }
        if span.span_context().is_sampled() {
            sampled_requests += 1;
        }
        let cx = Context::current_with_span(span);
        if i % 4 == 0 {
            // 250 dependencies, children of their request: they follow its decision.
            let mut dep = tracer
                .span_builder("GET")
                .with_kind(SpanKind::Client)
                .with_start_time(t0)
                .with_attributes([
                    KeyValue::new("http.request.method", "GET"),
                    KeyValue::new("url.full", "http://inventory:8080/stock"),
                    KeyValue::new("http.response.status_code", 200),
                ])
                .start_with_context(&tracer, &cx);
            assert_eq!(
                dep.span_context().is_sampled(),
                cx.span().span_context().is_sampled()
            );
            if dep.span_context().is_sampled() {
                sampled_dependencies += 1;
            }
            dep.end_with_timestamp(t0 + Duration::from_millis(4));
        }
        let ms = if failed { 30 } else { 10 };
        cx.span().end_with_timestamp(t0 + Duration::from_millis(ms));
    }
    provider.force_flush().unwrap();
    let items = server.envelopes();
    assert!(server.rejected().is_empty(), "{:?}", server.rejected());

    // Every request counted: 1000, 800 successes of 10 ms and 200 failures of 30 ms.
    let requests = standard_points(&items, "requests/duration");
    let mut by_success: BTreeMap<String, (i64, f64, String)> = BTreeMap::new();
    for p in &requests {
        let props = &base(p)["properties"];
        let m = &base(p)["metrics"][0];
        assert_eq!(m["name"], "requests/duration");
        assert_eq!(props["_MS.IsAutocollected"], "True");
        assert_eq!(props["cloud/roleName"], "checkout");
        assert_eq!(props["cloud/roleInstance"], "checkout-1");
        assert!(p.get("sampleRate").is_none(), "metrics are never sampled");
        let entry = by_success
            .entry(props["Request.Success"].as_str().unwrap().to_owned())
            .or_default();
        entry.0 += m["count"].as_i64().unwrap();
        entry.1 += m["value"].as_f64().unwrap();
        entry.2 = props["request/resultCode"].as_str().unwrap().to_owned();
    }
    assert_eq!(by_success["True"].0, 800);
    assert_eq!(by_success["False"].0, 200);
    assert!((by_success["True"].1 - 8000.0).abs() < 1e-6);
    assert!((by_success["False"].1 - 6000.0).abs() < 1e-6);
    assert_eq!(by_success["True"].2, "200");
    assert_eq!(by_success["False"].2, "500");

    let dependencies = standard_points(&items, "dependencies/duration");
    assert_eq!(dependencies.len(), 1, "{dependencies:#?}");
    let props = &base(dependencies[0])["properties"];
    assert_eq!(base(dependencies[0])["metrics"][0]["count"], 250);
    assert_eq!(props["Dependency.Type"], "HTTP");
    assert_eq!(props["dependency/target"], "inventory:8080");
    assert_eq!(props["dependency/resultCode"], "200");
    assert_eq!(props["Dependency.Success"], "True");

    // Only the sampled spans arrive, each marked as counted and with its sample rate.
    let request_items = of_type(&items, "RequestData");
    let dependency_items = of_type(&items, "RemoteDependencyData");
    assert!(
        (40..=160).contains(&sampled_requests),
        "about 10% sampled: {sampled_requests}"
    );
    assert_eq!(request_items.len(), sampled_requests);
    assert_eq!(dependency_items.len(), sampled_dependencies);
    for item in request_items.iter().chain(&dependency_items) {
        assert_eq!(item["sampleRate"], 10.0);
        let flag = &base(item)["properties"]["_MS.ProcessedByMetricExtractors"];
        let want = if item["data"]["baseType"] == "RequestData" {
            "(Name:'Requests', Ver:'1.1')"
        } else {
            "(Name:'Dependencies', Ver:'1.1')"
        };
        assert_eq!(flag, want);
    }
    provider.shutdown().unwrap();
}

#[test]
fn without_the_processor_nothing_is_marked() {
    let server = IngestionServer::start().unwrap();
    let exporter = SpanExporter::builder()
        .with_connection_string(server.connection_string())
        .with_offline_storage(false)
        .with_resource_metric(false)
        .build()
        .unwrap();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter)
        .build();
    let tracer = provider.tracer("shop");
    tracer
        .span_builder("GET /")
        .with_kind(SpanKind::Server)
        .start(&tracer)
        .end();
    provider.force_flush().unwrap();
    let items = server.envelopes();
    assert_eq!(items.len(), 1);
    assert!(base(&items[0])["properties"]
        .get("_MS.ProcessedByMetricExtractors")
        .is_none());
    assert!(items[0].get("sampleRate").is_none());
    provider.shutdown().unwrap();
}

#[test]
fn logs_of_sampled_out_traces_can_be_dropped_with_them() {
    let server = IngestionServer::start().unwrap();
    let logs = |drop: bool| {
        LogExporter::builder()
            .with_connection_string(server.connection_string())
            .with_offline_storage(false)
            .with_sampled_out_logs_dropped(drop)
            .build()
            .unwrap()
    };
    let (dropping, keeping) = (logs(true), logs(false));
    let dropping = SdkLoggerProvider::builder()
        .with_simple_exporter(dropping)
        .build();
    let keeping = SdkLoggerProvider::builder()
        .with_simple_exporter(keeping)
        .build();
    let tracer_provider = SdkTracerProvider::builder()
        .with_sampler(
            ApplicationInsightsSampler::new(0.5)
                .unwrap()
                .with_record_only(true),
        )
        .build();
    let tracer = tracer_provider.tracer("shop");

    let mut sampled = 0;
    for i in 0..40 {
        let span = tracer.start(format!("work {i}"));
        if span.span_context().is_sampled() {
            sampled += 1;
        }
        let _guard = Context::current_with_span(span).attach();
        for provider in [&dropping, &keeping] {
            let logger = provider.logger("shop");
            let mut record = logger.create_log_record();
            record.set_body("inside a span".into());
            logger.emit(record);
        }
    }
    // Outside any span: always sent.
    for provider in [&dropping, &keeping] {
        let logger = provider.logger("shop");
        let mut record = logger.create_log_record();
        record.set_body("outside".into());
        logger.emit(record);
    }
    dropping.force_flush().unwrap();
    keeping.force_flush().unwrap();
    assert!((5..35).contains(&sampled), "{sampled}");
    let items = server.envelopes();
    let inside = items
        .iter()
        .filter(|v| base(v)["message"] == "inside a span")
        .count();
    let outside = items
        .iter()
        .filter(|v| base(v)["message"] == "outside")
        .count();
    assert_eq!(
        inside,
        40 + sampled,
        "all from one exporter, the sampled from the other"
    );
    assert_eq!(outside, 2);
    dropping.shutdown().unwrap();
    keeping.shutdown().unwrap();
    tracer_provider.shutdown().unwrap();
}
