//! Metrics into Azure Monitor: a counter, an up-down counter, a histogram and a gauge, through
//! the SDK's `PeriodicReader`.
//!
//! ```sh
//! cargo run --example metrics
//! ```
//!
//! Every data point becomes one custom metric item (`customMetrics` in Log Analytics), with its
//! attributes as custom dimensions. The reader exports every 60 seconds by default; the
//! example collects twice by hand (`force_flush`) to show delta sums: the second collection
//! reports only what happened since the first, while the up-down counter reports its current
//! value.
//!
//! With `APPLICATIONINSIGHTS_CONNECTION_STRING` set, the telemetry goes to that Application
//! Insights resource. Without it, the example starts the crate's local ingestion server, which
//! checks every item against the Track-API contract, and prints what it accepted.

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_azure_monitor::testing::IngestionServer;
use opentelemetry_azure_monitor::MetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::Resource;
use serde_json::Value;

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

fn run() -> Result<(), Box<dyn std::error::Error>> {
    // The exporter's warnings (delivery failures, storage problems) on stderr.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter("opentelemetry-azure-monitor=warn")
        .init();
    let from_env = std::env::var("APPLICATIONINSIGHTS_CONNECTION_STRING")
        .ok()
        .filter(|s| !s.trim().is_empty());
    let local = match from_env {
        Some(_) => None,
        None => Some(IngestionServer::start()?),
    };
    let mut builder = MetricExporter::builder();
    if let Some(server) = &local {
        // The local server lives only as long as the example: nothing to keep on disk for it.
        builder = builder
            .with_connection_string(server.connection_string())
            .with_offline_storage(false);
    }
    let exporter = builder.build()?;
    // Taken before the provider owns the exporter: what became of the metrics, at exit.
    let report = exporter.delivery_report();
    let provider = SdkMeterProvider::builder()
        .with_resource(
            Resource::builder()
                .with_service_name("checkout")
                .with_attributes([KeyValue::new("service.namespace", "shop")])
                .build(),
        )
        .with_reader(PeriodicReader::builder(exporter).build())
        .build();
    let meter = provider.meter("shop");
    let orders = meter
        .u64_counter("shop.orders")
        .with_description("Orders placed")
        .build();
    let in_flight = meter.i64_up_down_counter("shop.checkouts.active").build();
    let duration = meter
        .f64_histogram("shop.checkout.duration")
        .with_unit("ms")
        .build();
    let stock = meter.i64_gauge("shop.stock").build();

    for (ms, region) in [(120.0, "eu"), (80.0, "eu"), (340.0, "us")] {
        in_flight.add(1, &[]);
        orders.add(1, &[KeyValue::new("region", region)]);
        duration.record(ms, &[KeyValue::new("region", region)]);
    }
    in_flight.add(-1, &[]);
    stock.record(41, &[KeyValue::new("sku", "mug")]);
    provider.force_flush()?;
    if let Some(server) = &local {
        print_local("First collection", server);
        server.clear();
    }

    orders.add(2, &[KeyValue::new("region", "eu")]);
    in_flight.add(-2, &[]);
    stock.record(39, &[KeyValue::new("sku", "mug")]);
    provider.force_flush()?;
    if let Some(server) = &local {
        print_local("Second collection", server);
    }
    // A last collection, then the exporter delivers what is left and stops.
    provider.shutdown()?;
    println!("Delivery: {report}");
    if local.is_none() && report.accepted() > 0 && report.waiting_on_disk() == 0 {
        println!(
            "Open the Application Insights resource's Metrics (custom metrics) or query customMetrics in Logs."
        );
    }
    Ok(())
}

/// Prints what the local ingestion server accepted.
fn print_local(title: &str, server: &IngestionServer) {
    let items = server.envelopes();
    let rejected = server.rejected();
    println!(
        "{title}: the local ingestion server at {} accepted {} metric items and rejected {}.",
        server.endpoint(),
        items.len(),
        rejected.len()
    );
    let mut lines: Vec<String> = items
        .iter()
        .map(|item| {
            let d = &item["data"]["baseData"];
            let m = &d["metrics"][0];
            let mut line = format!(
                "  {:<24} value={:<6} count={}",
                text(&m["name"]),
                m["value"],
                m["count"]
            );
            for key in ["min", "max"] {
                if let Some(v) = m.get(key) {
                    line.push_str(&format!(" {key}={v}"));
                }
            }
            if let Some(props) = d["properties"].as_object() {
                for (k, v) in props {
                    line.push_str(&format!("  {k}={}", text(v)));
                }
            }
            line
        })
        .collect();
    lines.sort();
    for line in lines {
        println!("{line}");
    }
    for r in &rejected {
        println!("REJECTED: {r:?}");
    }
    println!();
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}
