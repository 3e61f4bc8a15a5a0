//! The `tracing` side of the one-call setup, through the local ingestion server: one item per
//! event, ERROR events failing their span, the exporter's own traffic kept out, the builder's
//! sampler deciding, and a global subscriber set before `install()` reported.
#![allow(clippy::unwrap_used)]

use opentelemetry_azure_monitor::testing::IngestionServer;
use opentelemetry_azure_monitor::{AzureMonitor, SetupError};
use serde_json::Value;
use tracing_subscriber::prelude::*;

fn text<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    path.iter()
        .fold(v, |cur, p| &cur[*p])
        .as_str()
        .unwrap_or("")
}

fn of_type<'a>(items: &'a [Value], base_type: &str) -> Vec<&'a Value> {
    items
        .iter()
        .filter(|item| text(item, &["data", "baseType"]) == base_type)
        .collect()
}

#[test]
fn tracing_spans_and_events_become_one_item_each() {
    let server = IngestionServer::start().unwrap();
    let azure_monitor = AzureMonitor::builder()
        .with_connection_string(server.connection_string())
        .with_offline_storage(false)
        .with_tracing_subscriber(false)
        .with_tracing_filter("debug")
        .install()
        .unwrap();
    // A subscriber of one's own, with the setup's layer (scoped to this test).
    let subscriber = tracing_subscriber::registry().with(azure_monitor.tracing_layer());
    tracing::subscriber::with_default(subscriber, || {
        let charge = tracing::info_span!("charge", otel.kind = "internal", order = 17);
        charge.in_scope(|| {
            tracing::debug!(order = 17, "charging");
            tracing::error!(error = "card declined", "payment failed");
            // The exporter's own traffic and OpenTelemetry's internal log stay out, whatever
            // the filter; tower_http is the application's.
            tracing::info!(target: "hyper::proto::h1", "noise");
            tracing::info!(target: "hyper_util::client", "noise");
            tracing::info!(target: "reqwest::connect", "noise");
            tracing::warn!(target: "opentelemetry_sdk", "noise");
            tracing::warn!(target: "opentelemetry-azure-monitor", "noise");
            tracing::info!(target: "tower_http::trace", "served");
        });
        let _noise = tracing::info_span!(target: "h2::codec", "noise").entered();
        tracing::info_span!("fine", otel.kind = "internal").in_scope(|| {});
    });
    azure_monitor.shutdown().unwrap();

    let items = server.envelopes();
    assert!(server.rejected().is_empty(), "{:?}", server.rejected());
    let mut dependencies: Vec<(&str, bool)> = of_type(&items, "RemoteDependencyData")
        .iter()
        .map(|d| {
            let data = &d["data"]["baseData"];
            (text(data, &["name"]), data["success"].as_bool().unwrap())
        })
        .collect();
    dependencies.sort();
    // The ERROR event failed its span, as tracing-opentelemetry would have.
    assert_eq!(dependencies, [("charge", false), ("fine", true)]);
    let charge = of_type(&items, "RemoteDependencyData")
        .into_iter()
        .find(|d| text(d, &["data", "baseData", "name"]) == "charge")
        .unwrap();
    let charge_id = text(charge, &["data", "baseData", "id"]);

    // Each event once, with its level, in its span; none copied as a span event.
    let mut lines: Vec<(&str, &str)> = of_type(&items, "MessageData")
        .iter()
        .map(|t| {
            assert_eq!(text(t, &["tags", "ai.operation.parentId"]), charge_id);
            (
                text(t, &["data", "baseData", "message"]),
                text(t, &["data", "baseData", "severityLevel"]),
            )
        })
        .collect();
    lines.sort();
    assert_eq!(lines, [("charging", "Verbose"), ("served", "Information")]);
    let exceptions = of_type(&items, "ExceptionData");
    assert_eq!(exceptions.len(), 1, "{exceptions:#?}");
    assert_eq!(
        text(exceptions[0], &["tags", "ai.operation.parentId"]),
        charge_id
    );
    assert!(
        !serde_json::to_string(&items).unwrap().contains("noise"),
        "{items:#?}"
    );
}

#[test]
fn a_subscriber_set_before_is_reported_and_nothing_is_installed() {
    tracing::subscriber::set_global_default(tracing_subscriber::registry()).unwrap();
    let server = IngestionServer::start().unwrap();
    let e = AzureMonitor::builder()
        .with_connection_string(server.connection_string())
        .with_offline_storage(false)
        .install()
        .unwrap_err();
    assert!(matches!(e, SetupError::SubscriberAlreadySet), "{e:?}");
    assert!(
        e.to_string().contains("with_tracing_subscriber(false)"),
        "{e}"
    );
}

#[test]
fn a_bad_tracing_filter_is_reported() {
    let server = IngestionServer::start().unwrap();
    let e = AzureMonitor::builder()
        .with_connection_string(server.connection_string())
        .with_offline_storage(false)
        .with_tracing_subscriber(false)
        .with_tracing_filter("info,shop=loud")
        .install()
        .unwrap_err();
    assert!(
        matches!(e, SetupError::InvalidTracingFilter { .. }),
        "{e:?}"
    );
}

#[test]
fn the_builders_sampler_decides() {
    let server = IngestionServer::start().unwrap();
    let azure_monitor = AzureMonitor::builder()
        .with_connection_string(server.connection_string())
        .with_offline_storage(false)
        .with_tracing_subscriber(false)
        .with_sampler(opentelemetry_sdk::trace::Sampler::AlwaysOff)
        .install()
        .unwrap();
    let subscriber = tracing_subscriber::registry().with(azure_monitor.tracing_layer());
    tracing::subscriber::with_default(subscriber, || {
        tracing::info_span!("dropped", otel.kind = "internal").in_scope(|| {
            tracing::info!("kept");
        });
    });
    azure_monitor.shutdown().unwrap();

    let items = server.envelopes();
    assert!(
        of_type(&items, "RemoteDependencyData").is_empty(),
        "{items:#?}"
    );
    let traces = of_type(&items, "MessageData");
    assert_eq!(traces.len(), 1, "{items:#?}");
    assert_eq!(text(traces[0], &["data", "baseData", "message"]), "kept");
}
