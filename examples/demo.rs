//! A small web shop, traced into Azure Monitor.
//!
//! ```sh
//! cargo run --example demo
//! ```
//!
//! The shop handles a few checkout requests: each reads the order from PostgreSQL, asks the
//! inventory service over HTTP, and one of them fails with an exception when inventory is down.
//!
//! With `APPLICATIONINSIGHTS_CONNECTION_STRING` set, the telemetry goes to that Application
//! Insights resource. Without it, the demo starts the crate's local ingestion server, which checks
//! every item against the Track-API contract, and prints what Azure Monitor would show: each
//! operation as a tree of its request, dependencies and exceptions.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    FutureExt, Span, SpanKind, Status, TraceContextExt, Tracer, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_azure_monitor::testing::IngestionServer;
use opentelemetry_azure_monitor::SpanExporter;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use serde_json::Value;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let from_env = std::env::var("APPLICATIONINSIGHTS_CONNECTION_STRING")
        .ok()
        .filter(|s| !s.trim().is_empty());
    let local = match from_env {
        Some(_) => None,
        None => Some(IngestionServer::start()?),
    };
    let mut builder = SpanExporter::builder();
    if let Some(server) = &local {
        builder = builder.with_connection_string(server.connection_string());
    }
    let exporter = builder.build()?;

    let provider = SdkTracerProvider::builder()
        .with_resource(
            Resource::builder()
                .with_service_name("checkout")
                .with_attributes([
                    KeyValue::new("service.namespace", "shop"),
                    KeyValue::new("service.version", "1.4.2"),
                    KeyValue::new("service.instance.id", "checkout-1"),
                ])
                .build(),
        )
        .with_batch_exporter(exporter)
        .build();
    let tracer = provider.tracer("shop");

    for order in [17, 42, 99] {
        let inventory_up = order != 42;
        handle_checkout(&tracer, order, inventory_up);
    }

    provider.force_flush()?;
    provider.shutdown()?;

    match local {
        Some(server) => print_local(&server),
        None => println!(
            "Sent to Azure Monitor. Open the Application Insights resource's Transaction search."
        ),
    }
    Ok(())
}

/// One incoming request with its database query and outgoing HTTP call.
fn handle_checkout(
    tracer: &impl Tracer<Span = impl Span + Send + Sync + 'static>,
    order: u32,
    inventory_up: bool,
) {
    let mut server = tracer
        .span_builder("POST /api/checkout/{order}")
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new("http.request.method", "POST"),
            KeyValue::new("http.route", "/api/checkout/{order}"),
            KeyValue::new("url.scheme", "https"),
            KeyValue::new("url.path", format!("/api/checkout/{order}")),
            KeyValue::new("server.address", "shop.example.com"),
            KeyValue::new("client.address", "203.0.113.7"),
            KeyValue::new("user_agent.original", "Mozilla/5.0 (demo)"),
            KeyValue::new("enduser.pseudo.id", format!("customer-{order}")),
        ])
        .start(tracer);
    let cx = Context::current().with_remote_span_context(server.span_context().clone());

    let mut db = tracer
        .span_builder("SELECT shop.orders")
        .with_kind(SpanKind::Client)
        .with_attributes([
            KeyValue::new("db.system.name", "postgresql"),
            KeyValue::new("db.namespace", "shop"),
            KeyValue::new(
                "db.query.text",
                "SELECT id, total FROM orders WHERE id = $1",
            ),
            KeyValue::new("server.address", "orders-db"),
            KeyValue::new("server.port", 5432),
        ])
        .start_with_context(tracer, &cx);
    std::thread::sleep(Duration::from_millis(3));
    db.end();

    let mut http = tracer
        .span_builder("GET")
        .with_kind(SpanKind::Client)
        .with_attributes([
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("url.full", format!("http://inventory:8080/items/{order}")),
            KeyValue::new("server.address", "inventory"),
            KeyValue::new("server.port", 8080),
        ])
        .start_with_context(tracer, &cx);
    std::thread::sleep(Duration::from_millis(5));
    let code = if inventory_up { 200 } else { 503 };
    http.set_attribute(KeyValue::new("http.response.status_code", code));
    if !inventory_up {
        http.set_status(Status::error("inventory unavailable"));
    }
    http.end();

    if inventory_up {
        server.set_attribute(KeyValue::new("http.response.status_code", 200));
    } else {
        server.add_event(
            "exception",
            vec![
                KeyValue::new("exception.type", "shop::InventoryError"),
                KeyValue::new("exception.message", "inventory service answered 503"),
                KeyValue::new(
                    "exception.stacktrace",
                    "0: shop::checkout::reserve\n   at src/checkout.rs:42:17\n1: shop::http::handle\n   at src/http.rs:88:9",
                ),
            ],
        );
        server.set_attribute(KeyValue::new("http.response.status_code", 500));
        server.set_status(Status::error("inventory unavailable"));
    }
    let _ = SystemTime::now();
    server.end();
    let _ = FutureExt::with_context(async {}, cx);
}

/// Prints what the local ingestion server accepted, as Azure Monitor would show it.
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
    print_operations(&items);
    for r in &rejected {
        println!("REJECTED: {r:?}");
    }
}

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_str().unwrap_or("")
}

/// Groups items by operation id and prints each operation as a tree.
fn print_operations(items: &[Value]) {
    let mut operations: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for item in items {
        let op = s(item, &["tags", "ai.operation.id"]);
        if !op.is_empty() {
            operations.entry(op.to_owned()).or_default().push(item);
        }
    }
    for (op, items) in &operations {
        println!("operation {op}");
        let roots: Vec<&Value> = items
            .iter()
            .copied()
            .filter(|i| {
                let parent = s(i, &["tags", "ai.operation.parentId"]);
                parent.is_empty()
                    || !items
                        .iter()
                        .any(|o| s(o, &["data", "baseData", "id"]) == parent)
            })
            .collect();
        for root in roots {
            print_tree(root, items, "  ");
        }
        println!();
    }
}

fn print_tree(item: &Value, all: &[&Value], indent: &str) {
    println!("{indent}{}", describe(item));
    let id = s(item, &["data", "baseData", "id"]);
    if id.is_empty() {
        return;
    }
    for child in all
        .iter()
        .filter(|c| s(c, &["tags", "ai.operation.parentId"]) == id)
    {
        print_tree(child, all, &format!("{indent}  "));
    }
}

fn describe(item: &Value) -> String {
    let d = &item["data"]["baseData"];
    let role = s(item, &["tags", "ai.cloud.role"]);
    match s(item, &["data", "baseType"]) {
        "RequestData" => format!(
            "request     {}  [{}]  {}  {}{}",
            s(d, &["name"]),
            role,
            s(d, &["responseCode"]),
            s(d, &["duration"]),
            if d["success"] == false {
                "  FAILED"
            } else {
                ""
            }
        ),
        "RemoteDependencyData" => format!(
            "dependency  {} {}  -> {}  {}  {}{}",
            s(d, &["type"]),
            s(d, &["name"]),
            s(d, &["target"]),
            s(d, &["resultCode"]),
            s(d, &["duration"]),
            if d["success"] == false {
                "  FAILED"
            } else {
                ""
            }
        ),
        "ExceptionData" => format!(
            "exception   {}: {}",
            s(&d["exceptions"][0], &["typeName"]),
            s(&d["exceptions"][0], &["message"])
        ),
        "MessageData" => format!("trace       {}", s(d, &["message"])),
        other => format!("{other}"),
    }
}
