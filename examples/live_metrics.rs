//! Live Metrics: steady web-service traffic, watched second by second.
//!
//! ```sh
//! cargo run --example live_metrics -- --seconds 20
//! ```
//!
//! For `--seconds N` (default 60) it serves about 20 requests a second: most succeed, some fail
//! with 500 (and log an exception), some are slow; each calls an HTTP dependency that
//! sometimes fails, and logs a line. Everything goes through the crate's exporters, with the
//! Live Metrics processors in front of them. Then it shuts down and exits by itself.
//!
//! With `APPLICATIONINSIGHTS_CONNECTION_STRING` set, telemetry and Live Metrics go to that
//! resource (plain `http://127.0.0.1:...` endpoints work, for a local receiver): open the
//! portal's Live Metrics page to watch. Without it, the example starts the crate's local
//! ingestion server and Live Metrics fake, subscribes to itself with the portal's default
//! configuration and one derived metric, and prints what the Live Metrics page would show.

use std::time::{Duration, Instant, SystemTime};

use opentelemetry::logs::{LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::trace::{
    Span as _, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_azure_monitor::testing::{IngestionServer, LiveRequest, LiveServer};
use opentelemetry_azure_monitor::{LiveMetrics, LogExporter, SpanExporter};
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use serde_json::json;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Requests a second.
const RATE: u32 = 20;

fn seconds_from_args() -> Result<u64, BoxError> {
    let mut args = std::env::args().skip(1);
    let mut seconds = 60;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => {
                seconds = args
                    .next()
                    .ok_or("--seconds needs a number")?
                    .parse()
                    .map_err(|e| format!("--seconds: {e}"))?;
            }
            other => return Err(format!("unknown argument {other:?}; usage: --seconds N").into()),
        }
    }
    Ok(seconds)
}

/// The portal's default configuration plus a derived metric: the mean duration of checkouts
/// slower than 100 ms.
fn portal_configuration() -> serde_json::Value {
    let failed =
        json!({"Filters": [{"FieldName": "Success", "Predicate": "Equal", "Comparand": "False"}]});
    let all = json!({"Filters": []});
    json!({
        "Metrics": [{
            "Id": "slow-checkouts",
            "TelemetryType": "Request",
            "FilterGroups": [{"Filters": [
                {"FieldName": "Name", "Predicate": "Contains", "Comparand": "checkout"},
                {"FieldName": "Duration", "Predicate": "GreaterThan", "Comparand": "0.0:0:0.1"}
            ]}],
            "Projection": "Duration",
            "Aggregation": "Avg",
            "BackEndAggregation": "Avg"
        }],
        "DocumentStreams": [{
            "Id": "all-types-default",
            "DocumentFilterGroups": [
                {"TelemetryType": "Request", "Filters": failed},
                {"TelemetryType": "Dependency", "Filters": failed},
                {"TelemetryType": "Exception", "Filters": all},
                {"TelemetryType": "Event", "Filters": all},
                {"TelemetryType": "Trace", "Filters": all}
            ]
        }],
        "QuotaInfo": null
    })
}

/// One request of the shop: a SERVER span with an HTTP dependency inside, a log line, and for
/// failures an exception.
fn serve(tracer_provider: &SdkTracerProvider, logger_provider: &SdkLoggerProvider, n: u64) {
    let tracer = tracer_provider.tracer("shop");
    let logger = logger_provider.logger("shop");
    let (route, fails, slow) = match n % 10 {
        0 => ("/checkout", n % 30 == 0, true),
        1..=3 => ("/checkout", false, false),
        _ => ("/products", false, false),
    };
    let started = SystemTime::now();
    let span = tracer
        .span_builder(format!("GET {route}"))
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("url.scheme", "http"),
            KeyValue::new("server.address", "shop.example"),
            KeyValue::new("url.path", route),
            KeyValue::new("http.route", route),
        ])
        .start(&tracer);
    let cx = Context::current_with_span(span);
    {
        let _guard = cx.clone().attach();
        let dependency_fails = n % 25 == 7;
        let mut call = tracer
            .span_builder("GET")
            .with_kind(SpanKind::Client)
            .with_start_time(started)
            .with_attributes([
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new("url.full", "http://inventory.example/stock"),
                KeyValue::new(
                    "http.response.status_code",
                    if dependency_fails { 503 } else { 200 },
                ),
            ])
            .start(&tracer);
        if dependency_fails {
            call.set_status(Status::error("inventory unavailable"));
        }
        call.end_with_timestamp(started + Duration::from_millis(3 + n % 5));

        let mut record = logger.create_log_record();
        record.set_severity_number(Severity::Info);
        record.set_body(format!("served {route}").into());
        logger.emit(record);
        if fails {
            let mut record = logger.create_log_record();
            record.set_severity_number(Severity::Error);
            record.set_body("checkout failed".into());
            record.add_attribute("exception.type", "PaymentDeclined");
            record.add_attribute("exception.message", "the card was declined");
            logger.emit(record);
        }
    }
    let span = cx.span();
    span.set_attribute(KeyValue::new(
        "http.response.status_code",
        if fails { 500 } else { 200 },
    ));
    if fails {
        span.set_status(Status::error("payment declined"));
    }
    let took = Duration::from_millis(if slow { 150 + n % 50 } else { 8 + n % 7 });
    span.end_with_timestamp(started + took);
}

fn print_second(second: u64, post: Option<&LiveRequest>) {
    let Some(post) = post else {
        println!("{second:>3}s  (not subscribed yet)");
        return;
    };
    let m = |name: &str| post.metric(name).unwrap_or(0.0);
    let documents = post.documents();
    let count = |t: &str| documents.iter().filter(|d| d["DocumentType"] == t).count();
    println!(
        "{second:>3}s  requests {:>5.1}/s failed {:>4.1}/s {:>6.1} ms | dependencies {:>5.1}/s failed {:>4.1}/s {:>5.1} ms | exceptions {:>4.1}/s | CPU {:>5.1}% memory {:>6.1} MB | slow checkouts {:>6.1} ms | documents: {} requests, {} dependencies, {} exceptions, {} traces",
        m(r"\ApplicationInsights\Requests/Sec"),
        m(r"\ApplicationInsights\Requests Failed/Sec"),
        m(r"\ApplicationInsights\Request Duration"),
        m(r"\ApplicationInsights\Dependency Calls/Sec"),
        m(r"\ApplicationInsights\Dependency Calls Failed/Sec"),
        m(r"\ApplicationInsights\Dependency Call Duration"),
        m(r"\ApplicationInsights\Exceptions/Sec"),
        m(r"\% Process\Processor Time Normalized"),
        m(r"\Process\Physical Bytes") / 1e6,
        m("slow-checkouts"),
        count("Request"),
        count("RemoteDependency"),
        count("Exception"),
        count("Trace"),
    );
}

fn main() -> Result<(), BoxError> {
    let seconds = seconds_from_args()?;
    let from_env = std::env::var("APPLICATIONINSIGHTS_CONNECTION_STRING")
        .ok()
        .filter(|s| !s.trim().is_empty());
    // Without a connection string: the local fakes, subscribed to with the portal's defaults.
    let local = match from_env {
        Some(_) => None,
        None => {
            let ingestion = IngestionServer::start()?;
            let live = LiveServer::start()?;
            live.set_configuration("1::local::1::", portal_configuration());
            live.set_subscribed(true);
            Some((ingestion, live))
        }
    };
    let connection_string = match (&from_env, &local) {
        (Some(cs), _) => cs.clone(),
        (None, Some((ingestion, live))) => live.connection_string(ingestion),
        (None, None) => unreachable!("one of the two is set"),
    };

    let resource = Resource::builder()
        .with_service_name("shop")
        .with_attribute(KeyValue::new("service.instance.id", "shop-1"))
        .build();
    let live_metrics = LiveMetrics::builder()
        .with_connection_string(&connection_string)
        .build()?;
    let mut spans = SpanExporter::builder().with_connection_string(&connection_string);
    let mut logs = LogExporter::builder().with_connection_string(&connection_string);
    if local.is_some() {
        spans = spans.with_offline_storage(false);
        logs = logs.with_offline_storage(false);
    }
    // The Live Metrics processors come first: they see every span and record.
    let tracer_provider = SdkTracerProvider::builder()
        .with_resource(resource.clone())
        .with_span_processor(live_metrics.span_processor())
        .with_batch_exporter(spans.build()?)
        .build();
    let logger_provider = SdkLoggerProvider::builder()
        .with_resource(resource)
        .with_log_processor(live_metrics.log_processor())
        .with_batch_exporter(logs.build()?)
        .build();

    println!(
        "Serving about {RATE} requests a second for {seconds} s, with Live Metrics on ({}).",
        if local.is_some() {
            "local fakes"
        } else {
            "APPLICATIONINSIGHTS_CONNECTION_STRING"
        }
    );
    let start = Instant::now();
    let tick = Duration::from_secs(1) / RATE;
    let mut n: u64 = 0;
    let mut printed = 0;
    while start.elapsed() < Duration::from_secs(seconds) {
        serve(&tracer_provider, &logger_provider, n);
        n += 1;
        // A steady rate: the next request is due at n ticks from the start.
        let due = start + tick * u32::try_from(n).unwrap_or(u32::MAX);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let second = start.elapsed().as_secs();
        if second > printed {
            printed = second;
            if let Some((_, live)) = &local {
                print_second(second, live.posts().last());
            }
        }
    }

    // Shut down whatever happens: an ingestion endpoint that does not answer only loses this
    // run's last batch, and the example still ends (and exits 0) by itself.
    let results = [
        ("traces", tracer_provider.shutdown()), // also stops Live Metrics
        ("logs", logger_provider.shutdown()),
        ("Live Metrics", live_metrics.shutdown()),
    ];
    for (what, result) in results {
        if let Err(e) = result {
            println!("Shutting down {what}: {e}");
        }
    }
    println!("Served {n} requests; shut down.");
    if let Some((ingestion, live)) = &local {
        let stats = live.stats();
        println!(
            "The Live Metrics fake received {} pings and {} posts ({} contract problems); documents by type: {}; ingestion received {} items ({} refused).",
            stats["pings"],
            stats["posts"],
            live.problems().len(),
            stats["documents"]["by_type"],
            ingestion.envelopes().len(),
            ingestion.rejected().len(),
        );
    }
    Ok(())
}
