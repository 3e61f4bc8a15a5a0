//! An axum service, instrumented the way Rust services usually are, into Azure Monitor with the
//! one-call setup.
//!
//! ```sh
//! cargo run --example axum_service
//! ```
//!
//! The `shop.orders` service answers `GET /orders/{id}`: it reads the order from an embedded
//! SQLite database (sqlx), then asks its own `GET /stock/{item}` route over HTTP (reqwest with
//! `reqwest-middleware`) whether the item is in stock, which reads SQLite again. Its
//! instrumentation is what a Rust team would write:
//!
//! - `AzureMonitor::builder().install()`: providers, resource, W3C propagator, and the `tracing`
//!   subscriber that turns `tracing` spans and events into telemetry;
//! - `axum-tracing-opentelemetry`'s `OtelAxumLayer`: one `SERVER` span per request, named by the
//!   route template, continuing the caller's `traceparent`;
//! - this crate's `ReqwestTracingMiddleware`: one `CLIENT` span per outgoing request, and the
//!   `traceparent` sent along;
//! - a `tracing` span with `otel.kind = "client"` and the database semantic conventions around
//!   each query (sqlx makes no spans of its own);
//! - `tracing::info!` / `warn!` / `error!` in the handlers.
//!
//! Without `APPLICATIONINSIGHTS_CONNECTION_STRING`, it starts the crate's local ingestion
//! server, sends three orders through the service (one shipped, one out of stock, one unknown),
//! shuts down, and prints what Azure Monitor would show: each end-to-end transaction with its
//! requests, HTTP and SQL dependencies and log lines, and the application map. With the variable
//! set, the same telemetry goes to that Application Insights resource.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use axum_tracing_opentelemetry::middleware::{OtelAxumLayer, OtelInResponseLayer};
use opentelemetry::KeyValue;
use opentelemetry_azure_monitor::testing::IngestionServer;
use opentelemetry_azure_monitor::{AzureMonitor, ReqwestTracingMiddleware};
use reqwest_middleware::ClientWithMiddleware;
use serde_json::Value;
use sqlx::sqlite::{SqlitePool, SqlitePoolOptions};
use tracing::Instrument as _;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The orders the example sends, and what the service answers to each.
const ORDERS: [(u32, u16); 3] = [(1, 200), (2, 409), (99, 404)];

#[derive(Clone)]
struct Shop {
    db: SqlitePool,
    client: ClientWithMiddleware,
    base: String,
}

/// A `tracing` span for one SQL statement, with what Azure Monitor needs for a SQL dependency:
/// `otel.kind = "client"`, `db.system.name`, `db.namespace` (the target) and `db.query.text`.
fn query_span(name: &'static str, statement: &'static str) -> tracing::Span {
    tracing::info_span!(
        "query",
        otel.name = name,
        otel.kind = "client",
        db.system.name = "sqlite",
        db.namespace = "shop",
        db.query.text = statement,
    )
}

/// `GET /orders/{id}`: the order from SQLite, then the stock of its item from `/stock/{item}`.
async fn order(State(shop): State<Shop>, Path(id): Path<u32>) -> (StatusCode, String) {
    tracing::info!(order = id, "order requested");
    const SELECT_ORDER: &str = "SELECT item FROM orders WHERE id = ?";
    let item: Option<String> = match sqlx::query_scalar(SELECT_ORDER)
        .bind(id)
        .fetch_optional(&shop.db)
        .instrument(query_span("SELECT shop.orders", SELECT_ORDER))
        .await
    {
        Ok(item) => item,
        Err(e) => {
            tracing::error!(error = %e, order = id, "could not read the order");
            return (StatusCode::INTERNAL_SERVER_ERROR, "database error".into());
        }
    };
    let Some(item) = item else {
        tracing::warn!(order = id, "no such order");
        return (StatusCode::NOT_FOUND, format!("no order {id}"));
    };

    let stock = shop
        .client
        .get(format!("{}/stock/{item}", shop.base))
        .send()
        .await;
    match stock {
        Ok(response) if response.status().is_success() => {
            tracing::info!(order = id, item = %item, "order shipped");
            (StatusCode::OK, format!("order {id}: {item} shipped"))
        }
        Ok(response) => {
            let status = response.status();
            tracing::error!(order = id, item = %item, status = status.as_u16(), "order not shipped: out of stock");
            (
                StatusCode::CONFLICT,
                format!("order {id}: {item} out of stock"),
            )
        }
        Err(e) => {
            tracing::error!(error = %e, order = id, "stock service unreachable");
            (StatusCode::BAD_GATEWAY, "stock service unreachable".into())
        }
    }
}

/// `GET /stock/{item}`: 200 with the quantity, or 409 when there is none left.
async fn stock(State(shop): State<Shop>, Path(item): Path<String>) -> (StatusCode, String) {
    const SELECT_STOCK: &str = "SELECT quantity FROM stock WHERE item = ?";
    let quantity: i64 = sqlx::query_scalar(SELECT_STOCK)
        .bind(&item)
        .fetch_optional(&shop.db)
        .instrument(query_span("SELECT shop.stock", SELECT_STOCK))
        .await
        .ok()
        .flatten()
        .unwrap_or(0);
    if quantity > 0 {
        tracing::info!(item = %item, quantity, "in stock");
        (StatusCode::OK, quantity.to_string())
    } else {
        tracing::warn!(item = %item, "out of stock");
        (StatusCode::CONFLICT, "out of stock".into())
    }
}

/// An in-memory SQLite database with two orders and their items' stock. One connection, kept
/// open: an in-memory database lives as long as its connection.
async fn database() -> Result<SqlitePool, sqlx::Error> {
    let db = SqlitePoolOptions::new()
        .max_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect("sqlite::memory:")
        .await?;
    for statement in [
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT NOT NULL)",
        "CREATE TABLE stock (item TEXT PRIMARY KEY, quantity INTEGER NOT NULL)",
        "INSERT INTO orders VALUES (1, 'tea'), (2, 'coffee')",
        "INSERT INTO stock VALUES ('tea', 12), ('coffee', 0)",
    ] {
        sqlx::query(statement).execute(&db).await?;
    }
    Ok(db)
}

/// Starts the service on a loopback port.
async fn serve() -> Result<SocketAddr, BoxError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let shop = Shop {
        db: database().await?,
        client: reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(ReqwestTracingMiddleware::default())
            .build(),
        base: format!("http://{addr}"),
    };
    let app = Router::new()
        .route("/orders/{id}", get(order))
        .route("/stock/{item}", get(stock))
        .with_state(shop)
        // Adds `traceparent` to responses, then the SERVER span around everything.
        .layer(OtelInResponseLayer)
        .layer(OtelAxumLayer::default());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

/// Installs Azure Monitor, runs the service, sends [`ORDERS`] to it from outside (a client
/// without tracing, as a browser would), and shuts Azure Monitor down, which delivers
/// everything. Sends to `connection_string`, else to `APPLICATIONINSIGHTS_CONNECTION_STRING`.
pub(crate) async fn run(connection_string: Option<String>) -> Result<(), BoxError> {
    let mut builder = AzureMonitor::builder()
        .with_service_name("orders")
        .with_resource_attributes([KeyValue::new("service.namespace", "shop")]);
    if let Some(cs) = connection_string {
        // A local server lives only as long as the example: nothing to keep on disk for it.
        builder = builder
            .with_connection_string(cs)
            .with_offline_storage(false);
    }
    let azure_monitor = builder.install()?;

    let addr = serve().await?;
    let outside = reqwest::Client::new();
    for (id, expected) in ORDERS {
        let response = outside
            .get(format!("http://{addr}/orders/{id}"))
            .send()
            .await?;
        let status = response.status().as_u16();
        let body = response.text().await?;
        println!("GET /orders/{id} -> {status} {body}");
        if status != expected {
            return Err(format!("order {id}: expected {expected}, got {status}").into());
        }
    }

    // Delivers everything before returning (a blocking call: off the async threads).
    tokio::task::spawn_blocking(move || azure_monitor.shutdown()).await??;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let from_env = std::env::var("APPLICATIONINSIGHTS_CONNECTION_STRING")
        .ok()
        .filter(|s| !s.trim().is_empty());
    let local = match from_env {
        Some(_) => None,
        None => Some(IngestionServer::start()?),
    };
    run(local.as_ref().map(IngestionServer::connection_string)).await?;
    match local {
        Some(server) => print_local(&server),
        None => println!(
            "Sent to Azure Monitor. Open the Application Insights resource: Application map, \
             Transaction search, Performance, Failures."
        ),
    }
    Ok(())
}

fn text<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    path.iter()
        .fold(v, |cur, p| &cur[*p])
        .as_str()
        .unwrap_or("")
}

/// Prints what the local ingestion server accepted, as Azure Monitor would show it.
fn print_local(server: &IngestionServer) {
    let items = server.envelopes();
    println!(
        "\nThe local ingestion server at {} accepted {} items and rejected {}.",
        server.endpoint(),
        items.len(),
        server.rejected().len()
    );

    // One end-to-end transaction per operation id, its items in time order.
    let mut operations: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for item in &items {
        let id = text(item, &["tags", "ai.operation.id"]);
        if !id.is_empty() {
            operations.entry(id).or_default().push(item);
        }
    }
    let mut operations: Vec<_> = operations.into_values().collect();
    for items in &mut operations {
        items.sort_by_key(|item| text(item, &["time"]).to_owned());
    }
    operations.sort_by_key(|items| text(items[0], &["time"]).to_owned());
    for items in &operations {
        println!(
            "\nTransaction {}",
            text(items[0], &["tags", "ai.operation.name"])
        );
        for item in items {
            let data = &item["data"]["baseData"];
            match text(item, &["data", "baseType"]) {
                "RequestData" => println!(
                    "  request     {:<28} {} success={} url={}",
                    text(data, &["name"]),
                    text(data, &["responseCode"]),
                    data["success"],
                    text(data, &["url"])
                ),
                "RemoteDependencyData" => println!(
                    "  dependency  {:<28} {} success={} type={} target={} data={}",
                    text(data, &["name"]),
                    text(data, &["resultCode"]),
                    data["success"],
                    text(data, &["type"]),
                    text(data, &["target"]),
                    text(data, &["data"])
                ),
                "MessageData" => println!(
                    "  trace       [{}] {}",
                    text(data, &["severityLevel"]),
                    text(data, &["message"])
                ),
                "ExceptionData" => println!(
                    "  exception   {}",
                    text(&data["exceptions"][0], &["message"])
                ),
                other => println!("  {other}"),
            }
        }
    }

    // The application map: the role, and the targets of its dependencies.
    println!("\nApplication map");
    let mut edges: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    for item in &items {
        if text(item, &["data", "baseType"]) == "RemoteDependencyData" {
            let data = &item["data"]["baseData"];
            let key = (
                text(item, &["tags", "ai.cloud.role"]).to_owned(),
                text(data, &["type"]).to_owned(),
                text(data, &["target"]).to_owned(),
            );
            *edges.entry(key).or_default() += 1;
        }
    }
    for ((role, type_, target), calls) in edges {
        println!("  {role} --{type_}--> {target} ({calls} calls)");
    }
}
