//! An Azure Functions custom handler in Rust, traced end to end: the Rust version of the
//! Python sample this crate grew from. Its files for the Functions host are in
//! `examples/azure_functions/`; the README section "Azure Functions" says how to run it under
//! `func start`.
//!
//! ```sh
//! FUNCTIONS_CUSTOMHANDLER_PORT=7071 WEBSITE_SITE_NAME=my-func WEBSITE_INSTANCE_ID=local-1 \
//!   EXTERNAL_DEPENDENCY_URL=https://example.com/ cargo run --example azure_functions
//! curl -H 'traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' \
//!   http://127.0.0.1:7071/api/instrumentation
//! ```
//!
//! It listens on `127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT` and serves the HTTP-triggered
//! function `instrumentation`: forwarded as `GET /api/instrumentation`
//! (`enableForwardingHttpRequest`), or in payload mode as `POST /instrumentation`. Each
//! invocation records a request continuing the caller's `traceparent`, an in-process
//! dependency, an HTTP dependency to `EXTERNAL_DEPENDENCY_URL`, a log line and an exception,
//! and is exported before the handler answers. On SIGTERM (or Ctrl-C) it delivers what is
//! pending, shuts down and exits 0.
//!
//! With `APPLICATIONINSIGHTS_CONNECTION_STRING` set, telemetry goes to that resource. Without
//! it, the handler starts the crate's local ingestion server and, at exit, prints what it
//! received. `INVOCATION_SPAN_KIND=internal` records each invocation as an `INTERNAL` span
//! instead of a request, for apps where the Functions host records the request itself.

#[path = "azure_functions/handler.rs"]
mod handler;

use std::sync::Arc;

use handler::{BoxError, Config, Handler};
use opentelemetry_azure_monitor::testing::IngestionServer;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let port: u16 = std::env::var("FUNCTIONS_CUSTOMHANDLER_PORT")
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or(7071);
    let from_env = std::env::var("APPLICATIONINSIGHTS_CONNECTION_STRING")
        .ok()
        .filter(|s| !s.trim().is_empty());
    let local = match from_env {
        Some(_) => None,
        None => Some(IngestionServer::start()?),
    };
    let config = Config {
        connection_string: local.as_ref().map(IngestionServer::connection_string),
        ..Config::from_env()
    };
    let handler = Arc::new(Handler::new(config)?);
    handler.install_tracing()?;

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!(
        "azure_functions: listening on http://{}{}",
        listener.local_addr()?,
        handler::ROUTE
    );
    handler.clone().serve(listener, stop_signal()).await;

    let pipelines = handler.clone();
    tokio::task::spawn_blocking(move || pipelines.shutdown()).await??;
    if let Some(server) = local {
        print_received(&server);
    }
    println!("azure_functions: shut down");
    Ok(())
}

/// Resolves on SIGTERM (how the Functions host stops a handler) or Ctrl-C.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// One line per item the local ingestion server accepted, grouped by operation.
fn print_received(server: &IngestionServer) {
    let items = server.envelopes();
    println!(
        "azure_functions: the local ingestion server received {} items:",
        items.len()
    );
    let mut rows: Vec<(String, String)> = items
        .iter()
        .map(|item| {
            let tags = &item["tags"];
            let data = &item["data"]["baseData"];
            let what = match item["data"]["baseType"].as_str().unwrap_or("") {
                "RequestData" => format!(
                    "request    {} {}",
                    text(data, "name"),
                    text(data, "responseCode")
                ),
                "RemoteDependencyData" => format!(
                    "dependency {} [{}] {}",
                    text(data, "name"),
                    text(data, "type"),
                    text(data, "resultCode")
                ),
                "MessageData" => format!("trace      {}", text(data, "message")),
                "ExceptionData" => {
                    format!("exception  {}", text(&data["exceptions"][0], "message"))
                }
                other => format!("{other}  {}", text(data, "name")),
            };
            (
                text(tags, "ai.operation.id").to_owned(),
                format!(
                    "  {what}  (role {}, instance {})",
                    text(tags, "ai.cloud.role"),
                    text(tags, "ai.cloud.roleInstance")
                ),
            )
        })
        .collect();
    rows.sort();
    let mut last = String::new();
    for (operation, row) in rows {
        if operation != last {
            println!("operation {operation}");
            last = operation;
        }
        println!("{row}");
    }
    let rejected = server.rejected();
    if !rejected.is_empty() {
        println!("rejected: {rejected:#?}");
    }
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}
