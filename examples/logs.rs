//! Logs from `tracing` and from the `log` crate, into Azure Monitor.
//!
//! ```sh
//! cargo run --example logs
//! ```
//!
//! `tracing` events reach OpenTelemetry through `opentelemetry-appender-tracing`, `log` records
//! through `opentelemetry-appender-log`. Informational events become traces (`MessageData`)
//! with their severity, an error logged with `error = %e` becomes an exception (Failures in the
//! portal), and an event with `microsoft.custom_event.name` a custom event.
//!
//! With `APPLICATIONINSIGHTS_CONNECTION_STRING` set, the telemetry goes to that Application
//! Insights resource. Without it, the example starts the crate's local ingestion server, which
//! checks every item against the Track-API contract, and prints what it accepted.

use std::error::Error;
use std::fmt;

use opentelemetry::KeyValue;
use opentelemetry_appender_log::OpenTelemetryLogBridge;
use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use opentelemetry_azure_monitor::testing::IngestionServer;
use opentelemetry_azure_monitor::LogExporter;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::Resource;
use serde_json::Value;
use tracing_subscriber::filter::EnvFilter;
use tracing_subscriber::prelude::*;

#[derive(Debug)]
struct PaymentError {
    code: u16,
}

impl fmt::Display for PaymentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the payment provider answered {}", self.code)
    }
}

impl Error for PaymentError {}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The message (e.g. what is wrong with the connection string), not `Debug`.
            println!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let from_env = std::env::var("APPLICATIONINSIGHTS_CONNECTION_STRING")
        .ok()
        .filter(|s| !s.trim().is_empty());
    let local = match from_env {
        Some(_) => None,
        None => Some(IngestionServer::start()?),
    };
    let mut builder = LogExporter::builder();
    if let Some(server) = &local {
        // The local server lives only as long as the example: nothing to keep on disk for it.
        builder = builder
            .with_connection_string(server.connection_string())
            .with_offline_storage(false);
    }
    let exporter = builder.build()?;
    // Taken before the provider owns the exporter: what became of the records, at exit.
    let report = exporter.delivery_report();
    let provider = SdkLoggerProvider::builder()
        .with_resource(
            Resource::builder()
                .with_service_name("checkout")
                .with_attributes([KeyValue::new("service.namespace", "shop")])
                .build(),
        )
        .with_batch_exporter(exporter)
        .build();

    // `tracing`: the OpenTelemetry layer, without the exporter's own HTTP stack and
    // OpenTelemetry's internal logs (which would otherwise be exported too, in a loop).
    let filter = EnvFilter::new("info")
        .add_directive("hyper=off".parse()?)
        .add_directive("reqwest=off".parse()?)
        .add_directive("h2=off".parse()?)
        .add_directive("tower=off".parse()?)
        .add_directive("rustls=off".parse()?)
        .add_directive("opentelemetry=off".parse()?);
    tracing_subscriber::registry()
        .with(OpenTelemetryTracingBridge::new(&provider).with_filter(filter))
        // The exporter's own warnings (delivery failures) on stderr.
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(EnvFilter::new("opentelemetry-azure-monitor=warn")),
        )
        .init();
    // `log`: the bridge as the global logger.
    log::set_boxed_logger(Box::new(OpenTelemetryLogBridge::new(&provider)))?;
    log::set_max_level(log::LevelFilter::Info);

    tracing::info!(order = 17, customer = "c-42", "order received");
    tracing::debug!("filtered out: below info");
    tracing::warn!(attempt = 2, "inventory service slow, retrying");
    let e = PaymentError { code: 402 };
    tracing::error!(error = %e, order = 17, "payment failed");
    tracing::info!(
        microsoft.custom_event.name = "checkout.completed",
        microsoft.custom_measurements = r#"{"total": 99.5}"#,
        order = 18,
        "checkout completed"
    );
    log::info!(target: "shop::shipping", "order {} shipped", 18);
    log::error!(
        "could not write the invoice: {}",
        std::io::Error::other("disk full")
    );

    provider.force_flush()?;
    provider.shutdown()?;

    if let Some(server) = &local {
        print_local(server);
    }
    println!("\nDelivery: {report}");
    if local.is_none() && report.accepted() > 0 && report.waiting_on_disk() == 0 {
        println!(
            "Open the Application Insights resource's Logs: traces, exceptions, customEvents."
        );
    }
    Ok(())
}

/// Prints what the local ingestion server accepted.
fn print_local(server: &IngestionServer) {
    let items = server.envelopes();
    let rejected = server.rejected();
    println!(
        "No APPLICATIONINSIGHTS_CONNECTION_STRING set: sent to the local ingestion server at {}.",
        server.endpoint()
    );
    println!(
        "It accepted {} items in {} requests and rejected {}.\n",
        items.len(),
        server.requests().len(),
        rejected.len()
    );
    for item in &items {
        let d = &item["data"]["baseData"];
        let line = match item["data"]["baseType"].as_str().unwrap_or("") {
            "MessageData" => format!(
                "trace      [{}] {}",
                text(&d["severityLevel"]),
                text(&d["message"])
            ),
            "ExceptionData" => format!(
                "exception  [{}] {}: {}",
                text(&d["severityLevel"]),
                text(&d["exceptions"][0]["typeName"]),
                text(&d["exceptions"][0]["message"])
            ),
            "EventData" => format!("event      {} {}", text(&d["name"]), d["measurements"]),
            other => other.to_owned(),
        };
        println!("{line}");
        if let Some(props) = d["properties"].as_object() {
            let props: Vec<String> = props
                .iter()
                .map(|(k, v)| format!("{k}={}", text(v)))
                .collect();
            println!("             {}", props.join("  "));
        }
    }
    for r in &rejected {
        println!("REJECTED: {r:?}");
    }
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}
