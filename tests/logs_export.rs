//! Logs through a real `SdkLoggerProvider`, from `tracing` (opentelemetry-appender-tracing)
//! and `log` (opentelemetry-appender-log), into the local ingestion server. Synchronised with
//! `force_flush`: the batch processor's flush returns once the export has been delivered.

use std::error::Error;
use std::fmt;
use std::time::Duration;

use opentelemetry::trace::{TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use opentelemetry_azure_monitor::testing::IngestionServer;
use opentelemetry_azure_monitor::LogExporter;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use serde_json::Value;
use tracing_subscriber::layer::SubscriberExt;

fn resource() -> Resource {
    Resource::builder_empty()
        .with_attributes([
            KeyValue::new("service.name", "checkout"),
            KeyValue::new("service.namespace", "shop"),
            KeyValue::new("service.instance.id", "checkout-1"),
        ])
        .build()
}

fn provider(server: &IngestionServer) -> SdkLoggerProvider {
    let exporter = LogExporter::builder()
        .with_connection_string(server.connection_string())
        .with_offline_storage(false)
        .build()
        .expect("exporter");
    SdkLoggerProvider::builder()
        .with_resource(resource())
        .with_batch_exporter(exporter)
        .build()
}

/// The accepted item whose message (or exception message, or event name) is `text`.
fn item<'v>(items: &'v [Value], text: &str) -> &'v Value {
    items
        .iter()
        .find(|v| {
            let d = &v["data"]["baseData"];
            d["message"] == text || d["name"] == text || d["exceptions"][0]["message"] == text
        })
        .unwrap_or_else(|| panic!("no item {text:?} in {items:#?}"))
}

fn assert_all_accepted(server: &IngestionServer) {
    let rejected = server.rejected();
    assert!(rejected.is_empty(), "{rejected:#?}");
}

#[derive(Debug)]
struct PaymentError;

impl fmt::Display for PaymentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("card declined by issuer")
    }
}

impl Error for PaymentError {}

#[test]
fn tracing_events_become_traces_exceptions_and_events() {
    let server = IngestionServer::start().expect("server");
    let provider = provider(&server);
    let tracer_provider = SdkTracerProvider::builder().build();
    let tracer = tracer_provider.tracer("shop");
    let subscriber =
        tracing_subscriber::registry().with(OpenTelemetryTracingBridge::new(&provider));

    let (trace_id, span_id) = tracing::subscriber::with_default(subscriber, || {
        tracing::info!(order = 42, user = "alice", "order received");
        tracing::warn!(retries = 3_u64, ok = false, "inventory slow");
        tracing::debug!("cache miss");
        let e = PaymentError;
        // The common form: the error as a Display field.
        tracing::error!(error = %e, order = 42, "payment failed");
        // The error as `&dyn Error`: the appender writes `exception.message`.
        tracing::error!(error = &e as &dyn Error, "charge failed");
        tracing::info!(
            microsoft.custom_event.name = "checkout.completed",
            microsoft.custom_measurements = r#"{"total": 99.5}"#,
            "event body"
        );
        tracer.in_span("handle checkout", |cx| {
            tracing::info!("inside the span");
            let sc = cx.span().span_context().clone();
            (sc.trace_id().to_string(), sc.span_id().to_string())
        })
    });
    provider.force_flush().expect("flush");
    assert_all_accepted(&server);
    let items = server.envelopes();
    assert_eq!(items.len(), 7, "{items:#?}");

    let info = item(&items, "order received");
    assert_eq!(info["name"], "Microsoft.ApplicationInsights.Message");
    let d = &info["data"]["baseData"];
    assert_eq!(d["severityLevel"], "Information");
    assert_eq!(d["properties"]["order"], "42");
    assert_eq!(d["properties"]["user"], "alice");
    // The appender's scope has no name: the logger is the event's target.
    assert_eq!(d["properties"]["logger_name"], module_path!());
    assert_eq!(info["tags"]["ai.cloud.role"], "shop.checkout");
    assert_eq!(info["tags"]["ai.cloud.roleInstance"], "checkout-1");
    assert!(info["tags"].get("ai.operation.id").is_none());
    assert_eq!(info["iKey"], server.instrumentation_key());

    let warn = &item(&items, "inventory slow")["data"]["baseData"];
    assert_eq!(warn["severityLevel"], "Warning");
    assert_eq!(warn["properties"]["ok"], "False");
    assert_eq!(
        item(&items, "cache miss")["data"]["baseData"]["severityLevel"],
        "Verbose"
    );

    // `error = %e`: an exception under Failures, the error text kept.
    let failed = item(&items, "payment failed");
    assert_eq!(failed["name"], "Microsoft.ApplicationInsights.Exception");
    let d = &failed["data"]["baseData"];
    assert_eq!(d["severityLevel"], "Error");
    assert_eq!(d["exceptions"][0]["typeName"], "Exception");
    assert_eq!(d["properties"]["error"], "card declined by issuer");
    assert_eq!(d["properties"]["order"], "42");

    // `&dyn Error`: `exception.message`; the body still wins, the error text stays.
    let charged = item(&items, "charge failed");
    assert_eq!(charged["data"]["baseType"], "ExceptionData");
    assert_eq!(
        charged["data"]["baseData"]["properties"]["exception.message"],
        "card declined by issuer"
    );

    let event = item(&items, "checkout.completed");
    assert_eq!(event["name"], "Microsoft.ApplicationInsights.Event");
    assert_eq!(event["data"]["baseData"]["measurements"]["total"], 99.5);
    assert!(event["data"]["baseData"].get("severityLevel").is_none());

    // A log inside a span belongs to its operation.
    let inside = item(&items, "inside the span");
    assert_eq!(inside["tags"]["ai.operation.id"], trace_id.as_str());
    assert_eq!(inside["tags"]["ai.operation.parentId"], span_id.as_str());
    assert_eq!(trace_id.len(), 32);
    assert_eq!(span_id.len(), 16);

    provider.shutdown().expect("shutdown");
    let _ = tracer_provider.shutdown();
}

#[test]
fn availability_results_arrive_as_availability_data() {
    use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _};

    let server = IngestionServer::start().expect("server");
    let provider = provider(&server);
    let subscriber =
        tracing_subscriber::registry().with(OpenTelemetryTracingBridge::new(&provider));
    tracing::subscriber::with_default(subscriber, || {
        // From `tracing`: the duration in milliseconds, success as a boolean.
        tracing::warn!(
            microsoft.availability.id = "run-1",
            microsoft.availability.name = "checkout ping",
            microsoft.availability.duration = 1250,
            microsoft.availability.success = false,
            microsoft.availability.runLocation = "westeurope",
            region = "eu",
            "checkout answered 503"
        );
        // A duration that cannot be sent: a trace, nothing lost.
        tracing::info!(
            microsoft.availability.id = "run-2",
            microsoft.availability.name = "checkout ping",
            microsoft.availability.duration = "1.25 s",
            microsoft.availability.success = true,
            "not a TimeSpan"
        );
    });
    // From the OpenTelemetry logs API: a TimeSpan string, an explicit (empty) message.
    let logger = provider.logger("probes");
    let mut record = logger.create_log_record();
    record.set_body(AnyValue::from("ignored: the message attribute wins"));
    record.add_attributes([
        ("microsoft.availability.id", AnyValue::from("run-3")),
        ("microsoft.availability.name", AnyValue::from("search ping")),
        (
            "microsoft.availability.duration",
            AnyValue::from("00:00:00.250"),
        ),
        ("microsoft.availability.success", AnyValue::from("True")),
        ("microsoft.availability.message", AnyValue::from("")),
    ]);
    logger.emit(record);
    provider.force_flush().expect("flush");
    assert_all_accepted(&server);
    let items = server.envelopes();
    assert_eq!(items.len(), 3, "{items:#?}");

    let find = |id: &str| {
        items
            .iter()
            .find(|v| v["data"]["baseData"]["id"] == id)
            .unwrap_or_else(|| panic!("no availability result {id} in {items:#?}"))
    };
    let failed = find("run-1");
    assert_eq!(failed["name"], "Microsoft.ApplicationInsights.Availability");
    assert_eq!(failed["tags"]["ai.cloud.role"], "shop.checkout");
    assert_eq!(
        failed["data"],
        serde_json::json!({
            "baseType": "AvailabilityData",
            "baseData": {
                "ver": 2,
                "id": "run-1",
                "name": "checkout ping",
                "duration": "0.00:00:01.250000",
                "success": false,
                "runLocation": "westeurope",
                "message": "checkout answered 503",
                "properties": {"region": "eu", "logger_name": module_path!()},
            },
        })
    );
    let ok = &find("run-3")["data"]["baseData"];
    assert_eq!(ok["duration"], "00:00:00.250");
    assert_eq!(ok["success"], true);
    assert_eq!(ok["message"], "");
    assert_eq!(
        ok["properties"],
        serde_json::json!({"logger_name": "probes"})
    );

    let trace = item(&items, "not a TimeSpan");
    assert_eq!(trace["data"]["baseType"], "MessageData");
    let props = &trace["data"]["baseData"]["properties"];
    assert_eq!(props["microsoft.availability.id"], "run-2");
    assert_eq!(props["microsoft.availability.duration"], "1.25 s");
    provider.shutdown().expect("shutdown");
}

/// A `log` logger that drops the records of the HTTP stack.
struct WithoutOwnTraffic<L>(L);

impl<L: log::Log> log::Log for WithoutOwnTraffic<L> {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        let target = metadata.target();
        // `opentelemetry*`: the SDK's own internal log, which reaches `log` through `tracing`'s
        // `log` feature when no `tracing` subscriber is set.
        !["opentelemetry", "reqwest", "hyper", "h2", "rustls", "tower"]
            .iter()
            .any(|own| target.starts_with(own))
            && self.0.enabled(metadata)
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            self.0.log(record);
        }
    }
    fn flush(&self) {
        self.0.flush();
    }
}

#[test]
fn log_crate_records() {
    let server = IngestionServer::start().expect("server");
    let provider = provider(&server);
    // The only test that installs a global `log` logger.
    // The exporter's own HTTP client logs through `log` too: keep its records out, or they are
    // exported into the very pipeline that produced them (see the README).
    log::set_boxed_logger(Box::new(WithoutOwnTraffic(
        opentelemetry_appender_log::OpenTelemetryLogBridge::new(&provider),
    )))
    .expect("first logger");
    log::set_max_level(log::LevelFilter::Trace);

    log::info!(target: "shop::orders", order = 7; "order {} shipped", 7);
    log::error!(
        "disk full: {}",
        std::io::Error::other("no space left on device")
    );
    log::trace!("very detailed");
    provider.force_flush().expect("flush");
    assert_all_accepted(&server);
    let items = server.envelopes();
    assert_eq!(items.len(), 3, "{items:#?}");

    let shipped = &item(&items, "order 7 shipped")["data"]["baseData"];
    assert_eq!(shipped["severityLevel"], "Information");
    assert_eq!(shipped["properties"]["logger_name"], "shop::orders");
    assert_eq!(shipped["properties"]["order"], "7");
    let full = item(&items, "disk full: no space left on device");
    assert_eq!(full["data"]["baseType"], "MessageData");
    assert_eq!(full["data"]["baseData"]["severityLevel"], "Error");
    assert_eq!(
        item(&items, "very detailed")["data"]["baseData"]["severityLevel"],
        "Verbose"
    );
    provider.shutdown().expect("shutdown");
}

#[test]
fn simple_processor_and_shutdown() {
    let server = IngestionServer::start().expect("server");
    let exporter = LogExporter::builder()
        .with_connection_string(server.connection_string())
        .with_offline_storage(false)
        .with_sample_rate(25.0)
        .build()
        .expect("exporter");
    let provider = SdkLoggerProvider::builder()
        .with_resource(resource())
        .with_simple_exporter(exporter)
        .build();
    let subscriber =
        tracing_subscriber::registry().with(OpenTelemetryTracingBridge::new(&provider));
    tracing::subscriber::with_default(subscriber, || {
        for i in 0..5 {
            tracing::info!(i, "record {i}");
        }
    });
    // The simple processor exports each record as it is emitted.
    assert!(server.wait_for_envelopes(5, Duration::from_secs(10)));
    provider.shutdown().expect("shutdown");
    assert_all_accepted(&server);
    let items = server.envelopes();
    assert_eq!(items.len(), 5);
    for item in &items {
        assert_eq!(item["sampleRate"], 25.0);
    }
    // Shut down: nothing is exported any more.
    assert!(provider.shutdown().is_err());
}
