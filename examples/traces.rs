//! The shortest correct setup: spans to Azure Monitor.
//!
//! ```sh
//! APPLICATIONINSIGHTS_CONNECTION_STRING="InstrumentationKey=...;IngestionEndpoint=https://..." \
//!     cargo run --example traces
//! ```
//!
//! Without the variable, `build()` fails and says so (the demo, `cargo run --example demo`,
//! runs without it against the local ingestion server).
//!
//! With Entra ID through a managed identity (the README's "Entra ID" section), nothing changes
//! here: the `azure-identity` feature and the environment turn it on.
//!
//! ```sh
//! APPLICATIONINSIGHTS_AUTHENTICATION_STRING=Authorization=AAD \
//! APPLICATIONINSIGHTS_CONNECTION_STRING="InstrumentationKey=...;IngestionEndpoint=https://..." \
//!     cargo run --features azure-identity --example traces
//! ```

use opentelemetry::trace::{Span, SpanKind, Tracer, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_azure_monitor::SpanExporter;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;

fn main() {
    if let Err(e) = run() {
        println!("error: {e}"); // e.g. what is wrong with the connection string
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    // The exporter's warnings (delivery failures, storage problems) on stderr.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter("opentelemetry-azure-monitor=warn")
        .init();
    let exporter = SpanExporter::builder().build()?; // reads APPLICATIONINSIGHTS_CONNECTION_STRING
    let report = exporter.delivery_report(); // what became of the spans, readable at exit
    let provider = SdkTracerProvider::builder()
        .with_resource(
            Resource::builder()
                .with_service_name("traces-example")
                .build(),
        )
        .with_batch_exporter(exporter)
        .build();

    let tracer = provider.tracer("example");
    let mut span = tracer
        .span_builder("GET /hello")
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("http.route", "/hello"),
            KeyValue::new("http.response.status_code", 200),
        ])
        .start(&tracer);
    span.end();

    provider.shutdown()?; // delivers what is still queued
    println!("{report}"); // e.g. "2 items accepted, 0 rejected, 0 dropped, 0 waiting on disk"
    Ok(())
}
