//! `examples/axum_service.rs` through the local ingestion server: the one-call setup with
//! `tracing`, axum-tracing-opentelemetry, the crate's reqwest middleware and sqlx spans make
//! requests named by route, HTTP and SQL dependencies, and one correlated operation per order
//! with its logs inside, each item once.
#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};

use opentelemetry_azure_monitor::testing::IngestionServer;
use serde_json::Value;

#[allow(dead_code)]
#[path = "../examples/axum_service.rs"]
mod example;

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

fn data(item: &Value) -> &Value {
    &item["data"]["baseData"]
}

fn operation(item: &Value) -> (&str, &str) {
    (
        text(item, &["tags", "ai.operation.id"]),
        text(item, &["tags", "ai.operation.parentId"]),
    )
}

// The setup installs global providers and a global subscriber: one test in this process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_axum_service_shows_requests_dependencies_and_logs_in_one_operation() {
    let server = IngestionServer::start().unwrap();
    example::run(Some(server.connection_string()))
        .await
        .unwrap();
    let items = server.envelopes();
    assert!(server.rejected().is_empty(), "{:?}", server.rejected());

    // Nothing doubled: every item has its own id (requests, dependencies), and the log lines
    // come once each, as traces with a severity (no span-event copies without one).
    let ids: Vec<&str> = items
        .iter()
        .map(|item| text(data(item), &["id"]))
        .filter(|id| !id.is_empty())
        .collect();
    assert_eq!(
        ids.len(),
        ids.iter().collect::<HashSet<_>>().len(),
        "{items:#?}"
    );

    // Requests, named by route template, with their codes and success.
    let requests = of_type(&items, "RequestData");
    let mut seen: Vec<(&str, &str, bool)> = requests
        .iter()
        .map(|r| {
            let d = data(r);
            (
                text(d, &["name"]),
                text(d, &["responseCode"]),
                d["success"].as_bool().unwrap(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("GET /orders/{id}", "200", true),
            ("GET /orders/{id}", "404", false),
            ("GET /orders/{id}", "409", false),
            ("GET /stock/{item}", "200", true),
            ("GET /stock/{item}", "409", false),
        ]
    );
    for r in &requests {
        assert_eq!(
            text(r, &["tags", "ai.operation.name"]),
            text(data(r), &["name"]),
            "{r:#}"
        );
        assert_eq!(text(r, &["tags", "ai.cloud.role"]), "shop.orders");
    }

    // HTTP dependencies: the service's calls to its own stock route.
    let dependencies = of_type(&items, "RemoteDependencyData");
    let http: Vec<&Value> = dependencies
        .iter()
        .copied()
        .filter(|d| text(data(d), &["type"]) == "HTTP")
        .collect();
    assert_eq!(http.len(), 2, "{dependencies:#?}");
    for d in &http {
        let d = data(d);
        let target = text(d, &["target"]);
        assert!(target.starts_with("127.0.0.1:"), "{d:#}");
        assert!(
            text(d, &["data"]).starts_with(&format!("http://{target}/stock/")),
            "{d:#}"
        );
    }
    let mut calls: Vec<(&str, &str, bool)> = http
        .iter()
        .map(|d| {
            let d = data(d);
            (
                text(d, &["name"]),
                text(d, &["resultCode"]),
                d["success"].as_bool().unwrap(),
            )
        })
        .collect();
    calls.sort();
    assert_eq!(
        calls,
        [
            ("GET /stock/coffee", "409", false),
            ("GET /stock/tea", "200", true)
        ]
    );

    // SQL dependencies: one per query (three orders looked up, two stocks).
    let sql: Vec<&Value> = dependencies
        .iter()
        .copied()
        .filter(|d| text(data(d), &["type"]) == "SQL")
        .collect();
    assert_eq!(sql.len(), 5, "{dependencies:#?}");
    assert_eq!(dependencies.len(), http.len() + sql.len());
    for d in &sql {
        let d = data(d);
        assert_eq!(text(d, &["target"]), "shop");
        assert!(text(d, &["data"]).starts_with("SELECT "), "{d:#}");
        assert!(d["success"].as_bool().unwrap());
    }

    // One operation per order: outer request -> HTTP dependency -> nested request, with the
    // SQL dependencies and the log lines under the span they were made in.
    let by_id: HashMap<&str, &Value> = items
        .iter()
        .map(|item| (text(data(item), &["id"]), item))
        .filter(|(id, _)| !id.is_empty())
        .collect();
    let outer: Vec<&Value> = requests
        .iter()
        .copied()
        .filter(|r| text(data(r), &["name"]) == "GET /orders/{id}")
        .collect();
    let mut operations = HashSet::new();
    for r in &outer {
        let (op, parent) = operation(r);
        assert!(parent.is_empty() || parent == op, "a root request: {r:#}");
        assert!(operations.insert(op), "one operation per order");
    }
    for nested in requests
        .iter()
        .filter(|r| text(data(r), &["name"]) == "GET /stock/{item}")
    {
        let (op, parent) = operation(nested);
        let call = by_id[parent];
        assert_eq!(text(call, &["data", "baseType"]), "RemoteDependencyData");
        assert_eq!(text(data(call), &["type"]), "HTTP");
        let (call_op, call_parent) = operation(call);
        assert_eq!(call_op, op);
        let caller = by_id[call_parent];
        assert_eq!(text(data(caller), &["name"]), "GET /orders/{id}");
        assert_eq!(operation(caller).0, op);
    }
    for d in &sql {
        let (op, parent) = operation(d);
        assert!(operations.contains(op), "{d:#}");
        assert_eq!(text(by_id[parent], &["data", "baseType"]), "RequestData");
    }

    let traces = of_type(&items, "MessageData");
    let mut lines: Vec<(&str, &str)> = traces
        .iter()
        .map(|t| {
            (
                text(data(t), &["message"]),
                text(data(t), &["severityLevel"]),
            )
        })
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            ("in stock", "Information"),
            ("no such order", "Warning"),
            ("order not shipped: out of stock", "Error"),
            ("order requested", "Information"),
            ("order requested", "Information"),
            ("order requested", "Information"),
            ("order shipped", "Information"),
            ("out of stock", "Warning"),
        ]
    );
    for t in &traces {
        let (op, parent) = operation(t);
        assert!(operations.contains(op), "{t:#}");
        let span = by_id[parent];
        assert_eq!(
            text(span, &["data", "baseType"]),
            "RequestData",
            "a log line sits in its request: {t:#}"
        );
    }
    assert!(of_type(&items, "ExceptionData").is_empty());
}
