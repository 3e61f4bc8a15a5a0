//! A small web shop of two services, traced, logged and measured into Azure Monitor.
//!
//! ```sh
//! cargo run --example demo
//! ```
//!
//! `frontend` takes checkout requests; for each it reads the order from its database and asks
//! `inventory` over real HTTP on a loopback port, passing the W3C trace context along.
//! `inventory` reserves the item, logs what it did, and fails when its stock service is down
//! (order 42). Each service has its own `service.name`, so each is its own role in the
//! Application Map; both emit spans, log records (correlated with the spans) and metrics.
//!
//! With `APPLICATIONINSIGHTS_CONNECTION_STRING` set, everything goes to that Application
//! Insights resource. Without it, the demo starts the crate's local ingestion server, which
//! checks every item against the Track-API contract, and prints what Azure Monitor would show:
//! the application map and one end-to-end transaction across both services with its log lines.
//!
//! With `--serve [--port N]` (default port 4390) it sends to the local viewer instead
//! (`testing::viewer`): after the demo's traffic it keeps the ingestion endpoint and the viewer's
//! pages up at `http://127.0.0.1:N/` until Ctrl-C or SIGTERM, and prints a connection string
//! with which any other program can send to it. While it serves, the shop keeps taking one
//! checkout a second (every tenth is order 42, which fails), so that the viewer's Live metrics
//! page has something to show: each service also has a Live Metrics client
//! (`LiveMetrics`), whose `LiveEndpoint` is the viewer.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use opentelemetry::logs::AnyValue;
use opentelemetry::logs::{LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{
    FutureExt, Span as _, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_azure_monitor::testing::{viewer, IngestionServer};
use opentelemetry_azure_monitor::{
    DeliveryReport, LiveMetrics, LogExporter, MetricExporter, SpanExporter,
};
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use serde_json::Value;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The three providers of one service, and its Live Metrics client.
struct Service {
    tracer: SdkTracerProvider,
    logger: SdkLoggerProvider,
    meter: SdkMeterProvider,
    /// What became of its spans, log records and metrics: taken from the exporters before the
    /// providers own them.
    reports: [(&'static str, DeliveryReport); 3],
    /// Feeds the Live Metrics stream (the portal's, or the local viewer's `/live`) while
    /// someone watches it; idle, it only pings every 5 seconds.
    live: LiveMetrics,
}

impl Service {
    fn new(name: &'static str, connection_string: Option<&str>) -> Result<Self, BoxError> {
        let resource = Resource::builder()
            .with_service_name(name)
            .with_attributes([
                KeyValue::new("service.namespace", "shop"),
                KeyValue::new("service.version", "1.4.2"),
                KeyValue::new("service.instance.id", format!("{name}-1")),
            ])
            .build();
        let mut spans = SpanExporter::builder();
        let mut logs = LogExporter::builder();
        let mut metrics = MetricExporter::builder();
        let mut live = LiveMetrics::builder().with_resource(resource.clone());
        if let Some(cs) = connection_string {
            live = live.with_connection_string(cs);
            // The local server lives only as long as the demo: nothing to keep on disk for it.
            spans = spans.with_connection_string(cs).with_offline_storage(false);
            logs = logs.with_connection_string(cs).with_offline_storage(false);
            metrics = metrics
                .with_connection_string(cs)
                .with_offline_storage(false);
        }
        let (spans, logs, metrics) = (spans.build()?, logs.build()?, metrics.build()?);
        let live = live.build()?;
        let reports = [
            ("spans", spans.delivery_report()),
            ("logs", logs.delivery_report()),
            ("metrics", metrics.delivery_report()),
        ];
        Ok(Service {
            tracer: SdkTracerProvider::builder()
                .with_resource(resource.clone())
                .with_span_processor(live.span_processor())
                .with_batch_exporter(spans)
                .build(),
            logger: SdkLoggerProvider::builder()
                .with_resource(resource.clone())
                .with_log_processor(live.log_processor())
                .with_batch_exporter(logs)
                .build(),
            meter: SdkMeterProvider::builder()
                .with_resource(resource)
                .with_reader(PeriodicReader::builder(metrics).build())
                .build(),
            reports,
            live,
        })
    }

    /// Emits a log record in the current context (so it carries the current span's ids).
    fn log(&self, severity: Severity, body: String, attributes: Vec<(&'static str, AnyValue)>) {
        let logger = self.logger.logger("shop");
        let mut record = logger.create_log_record();
        record.set_severity_number(severity);
        record.set_severity_text(severity.name());
        record.set_body(body.into());
        for (key, value) in attributes {
            record.add_attribute(key, value);
        }
        logger.emit(record);
    }

    /// Delivers what the three providers hold, and keeps them running.
    fn flush(&self) -> Result<(), BoxError> {
        self.tracer.force_flush()?;
        self.logger.force_flush()?;
        self.meter.force_flush()?;
        Ok(())
    }

    /// Flushes and shuts down the three providers, at the same time: each may take up to its
    /// timeout to deliver when the endpoint fails.
    fn shutdown(&self) -> Result<(), BoxError> {
        let (tracer, logger, meter) = (&self.tracer, &self.logger, &self.meter);
        let results = std::thread::scope(|scope| {
            let traces = scope.spawn(|| tracer.force_flush().and_then(|()| tracer.shutdown()));
            let logs = scope.spawn(|| logger.force_flush().and_then(|()| logger.shutdown()));
            let metrics = meter.force_flush().and_then(|()| meter.shutdown());
            [
                traces.join().unwrap_or(Ok(())),
                logs.join().unwrap_or(Ok(())),
                metrics,
            ]
        });
        for result in results {
            result?;
        }
        self.live.shutdown()?;
        Ok(())
    }
}

struct HeaderInjector<'a>(&'a mut reqwest::header::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            reqwest::header::HeaderName::from_bytes(key.as_bytes()),
            reqwest::header::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a hyper::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The inventory service: `GET /items/{id}` over HTTP/1.1 on a loopback port.
async fn inventory(service: Arc<Service>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(req.headers()));
    let item: u32 = req
        .uri()
        .path()
        .rsplit('/')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let tracer = service.tracer.tracer("inventory");
    let span = tracer
        .span_builder("GET /items/{id}")
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("http.route", "/items/{id}"),
            KeyValue::new("url.scheme", "http"),
            KeyValue::new("url.path", req.uri().path().to_owned()),
            KeyValue::new("server.address", "127.0.0.1"),
        ])
        .start_with_context(&tracer, &parent);
    let cx = parent.with_span(span);

    let mut stock = tracer
        .span_builder("HGET stock")
        .with_kind(SpanKind::Client)
        .with_attributes([
            KeyValue::new("db.system.name", "redis"),
            KeyValue::new("db.query.text", format!("HGET stock item:{item}")),
            KeyValue::new("server.address", "stock-cache"),
            KeyValue::new("server.port", 6379),
        ])
        .start_with_context(&tracer, &cx);
    tokio::time::sleep(Duration::from_millis(2)).await;
    // Log records take their trace context from the current context (no awaits past here).
    let _guard = cx.clone().attach();
    let span = cx.span();
    let (status, body) = if item == 42 {
        stock.set_status(Status::error("connection refused"));
        stock.set_attribute(KeyValue::new("error.type", "ConnectionRefused"));
        stock.end();
        service.log(
            Severity::Error,
            format!("could not reserve item {item}: stock cache unavailable"),
            vec![
                (
                    "exception.type",
                    AnyValue::from("inventory::StockUnavailable"),
                ),
                (
                    "exception.message",
                    AnyValue::from("stock cache refused the connection"),
                ),
                ("item", AnyValue::from(i64::from(item))),
            ],
        );
        span.set_status(Status::error("stock unavailable"));
        (503, "stock unavailable")
    } else {
        stock.end();
        service.log(
            Severity::Info,
            format!("reserved item {item}"),
            vec![("item", AnyValue::from(i64::from(item)))],
        );
        (200, "reserved")
    };
    span.set_attribute(KeyValue::new(
        "http.response.status_code",
        i64::from(status),
    ));
    span.end();
    service
        .meter
        .meter("inventory")
        .u64_counter("inventory.reservations")
        .build()
        .add(
            1,
            &[KeyValue::new(
                "outcome",
                if status == 200 { "reserved" } else { "failed" },
            )],
        );
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
    response
}

async fn serve_inventory(service: Arc<Service>) -> Result<SocketAddr, BoxError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = service.clone();
            tokio::spawn(async move {
                let handler = hyper::service::service_fn(move |req| {
                    let service = service.clone();
                    async move { Ok::<_, Infallible>(inventory(service, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), handler)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// The frontend: one checkout request, with a database query and a call to inventory.
async fn checkout(
    service: &Service,
    client: &reqwest::Client,
    inventory: SocketAddr,
    order: u32,
) -> Result<(), BoxError> {
    let tracer = service.tracer.tracer("frontend");
    let span = tracer
        .span_builder("POST /checkout/{order}")
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new("http.request.method", "POST"),
            KeyValue::new("http.route", "/checkout/{order}"),
            KeyValue::new("url.scheme", "https"),
            KeyValue::new("url.path", format!("/checkout/{order}")),
            KeyValue::new("server.address", "shop.example.com"),
            KeyValue::new("client.address", "203.0.113.7"),
            KeyValue::new("user_agent.original", "Mozilla/5.0 (demo)"),
        ])
        .start(&tracer);
    let cx = Context::current_with_span(span);
    let started = std::time::Instant::now();

    {
        let _guard = cx.clone().attach();
        service.log(
            Severity::Info,
            format!("checkout of order {order} started"),
            vec![("order", AnyValue::from(i64::from(order)))],
        );
        let mut db = tracer
            .span_builder("SELECT shop.orders")
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new("db.system.name", "postgresql"),
                KeyValue::new("db.namespace", "shop"),
                KeyValue::new(
                    "db.query.text",
                    "SELECT id, item, total FROM orders WHERE id = $1",
                ),
                KeyValue::new("server.address", "orders-db"),
                KeyValue::new("server.port", 5432),
            ])
            .start_with_context(&tracer, &cx);
        std::thread::sleep(Duration::from_millis(3));
        db.end();
    }

    let url = format!("http://{inventory}/items/{order}");
    let call = tracer
        .span_builder("GET")
        .with_kind(SpanKind::Client)
        .with_attributes([
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("url.full", url.clone()),
            KeyValue::new("server.address", "inventory"),
            KeyValue::new("server.port", i64::from(inventory.port())),
            KeyValue::new("peer.service", "shop.inventory"),
        ])
        .start_with_context(&tracer, &cx);
    let call_cx = cx.with_span(call);
    let mut headers = reqwest::header::HeaderMap::new();
    TraceContextPropagator::new().inject_context(&call_cx, &mut HeaderInjector(&mut headers));
    let response = client
        .get(&url)
        .headers(headers)
        .send()
        .with_context(call_cx.clone())
        .await?;
    let code = response.status().as_u16();
    let call = call_cx.span();
    call.set_attribute(KeyValue::new("http.response.status_code", i64::from(code)));
    if code >= 500 {
        call.set_status(Status::error(format!("inventory answered {code}")));
    }
    call.end();

    let span = cx.span();
    let status = if code == 200 { 200 } else { 502 };
    if status != 200 {
        let _guard = cx.clone().attach();
        span.add_event(
            "exception",
            vec![
                KeyValue::new("exception.type", "frontend::CheckoutFailed"),
                KeyValue::new("exception.message", format!("inventory answered {code}")),
                KeyValue::new(
                    "exception.stacktrace",
                    "0: frontend::checkout::reserve\n   at src/checkout.rs:42:17\n1: frontend::http::handle\n   at src/http.rs:88:9",
                ),
            ],
        );
        span.set_status(Status::error("checkout failed"));
        service.log(
            Severity::Warn,
            format!("order {order} not placed: inventory answered {code}"),
            vec![("order", AnyValue::from(i64::from(order)))],
        );
    }
    span.set_attribute(KeyValue::new(
        "http.response.status_code",
        i64::from(status),
    ));
    span.end();

    let meter = service.meter.meter("frontend");
    meter
        .f64_histogram("checkout.duration")
        .with_unit("ms")
        .build()
        .record(
            started.elapsed().as_secs_f64() * 1000.0,
            &[KeyValue::new("status", i64::from(status))],
        );
    meter
        .u64_counter("checkout.orders")
        .build()
        .add(1, &[KeyValue::new("placed", status == 200)]);
    Ok(())
}

/// `--serve [--port N]`: the port to serve the viewer on, if asked.
fn serve_port() -> Result<Option<u16>, BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut port = None;
    let mut serve = false;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--serve" => serve = true,
            "--port" => {
                let value = rest.next().ok_or("--port needs a number")?;
                port = Some(value.parse().map_err(|_| {
                    format!("--port needs a number from 0 to 65535, not {value:?}")
                })?);
            }
            other => {
                return Err(
                    format!("unknown argument {other:?}; usage: demo [--serve [--port N]]").into(),
                )
            }
        }
    }
    if port.is_some() && !serve {
        return Err("--port goes with --serve".into());
    }
    Ok(serve.then(|| port.unwrap_or(viewer::DEFAULT_PORT)))
}

fn main() -> std::process::ExitCode {
    // The exporter's warnings (delivery failures, storage problems) on stderr.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter("opentelemetry-azure-monitor=warn")
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            println!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The message (e.g. what is wrong with the connection string), not `Debug`.
            println!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), BoxError> {
    let serve = serve_port()?;
    let from_env = std::env::var("APPLICATIONINSIGHTS_CONNECTION_STRING")
        .ok()
        .filter(|s| !s.trim().is_empty());
    if serve.is_some() && from_env.is_some() {
        println!("--serve: sending to the local viewer; APPLICATIONINSIGHTS_CONNECTION_STRING is not used.");
    }
    let local = match (serve, from_env) {
        (Some(port), _) => Some(
            viewer::ViewerBuilder::new()
                .with_port(port)
                .start()
                .map_err(|e| {
                    format!(
                        "cannot serve the viewer on 127.0.0.1:{port}: {e} (choose another --port)"
                    )
                })?,
        ),
        (None, Some(_)) => None,
        (None, None) => Some(IngestionServer::start()?),
    };
    let connection_string = local.as_ref().map(IngestionServer::connection_string);

    let frontend = Arc::new(Service::new("frontend", connection_string.as_deref())?);
    let inventory = Arc::new(Service::new("inventory", connection_string.as_deref())?);
    let inventory_addr = serve_inventory(inventory.clone()).await?;
    let client = reqwest::Client::new();

    for order in [17, 42, 99, 7] {
        checkout(&frontend, &client, inventory_addr, order).await?;
    }

    // Deliver everything before printing or exiting (blocking calls: off the async threads).
    let reports: Vec<(String, DeliveryReport)> = [&frontend, &*inventory]
        .iter()
        .zip(["frontend", "inventory"])
        .flat_map(|(service, name)| {
            service
                .reports
                .iter()
                .map(move |(signal, report)| (format!("{name} {signal}"), report.clone()))
        })
        .collect();
    // Both services at once: each may use up its shutdown timeout when the endpoint fails.
    // Serving the viewer, they keep running (for the trickle below) and are only flushed.
    let serving = local.is_some() && serve.is_some();
    let done = |service: &Arc<Service>| {
        let service = Arc::clone(service);
        tokio::task::spawn_blocking(move || {
            if serving {
                service.flush()
            } else {
                service.shutdown()
            }
        })
    };
    let (frontend_done, inventory_done) = (done(&frontend), done(&inventory));
    frontend_done.await??;
    inventory_done.await??;

    if let Some(server) = &local {
        print_local(server);
    }
    // What really happened, whichever the endpoint.
    println!("\nDelivery");
    let mut accepted_everything = true;
    for (what, report) in &reports {
        println!("  {what:<18} {report}");
        accepted_everything &= report.waiting_on_disk() == 0
            && report.dropped() == 0
            && report.rejected() == 0
            && report.accepted() > 0;
    }
    if local.is_none() {
        if accepted_everything {
            println!(
                "\nAccepted by Azure Monitor. Open the Application Insights resource: Application \
                 map, Transaction search, Failures, Logs."
            );
        } else {
            println!(
                "\nNot everything reached Azure Monitor (see above): what waits on disk is sent \
                 by the next run from this directory."
            );
        }
    }
    if let (Some(server), Some(_)) = (&local, serve) {
        println!(
            "\nViewer: {}\nSend from any program with\n  APPLICATIONINSIGHTS_CONNECTION_STRING=\"{}\"\nServing until Ctrl-C or SIGTERM.",
            server.viewer_url().unwrap_or_default(),
            server.connection_string()
        );
        println!(
            "The shop keeps taking a checkout a second (every tenth fails): open {}live to watch it.",
            server.viewer_url().unwrap_or_default()
        );
        let stop = viewer::shutdown_signal();
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut n: u32 = 0;
        loop {
            tokio::select! {
                result = &mut stop => {
                    result?;
                    break;
                }
                _ = tick.tick() => {
                    n = n.wrapping_add(1);
                    let order = if n % 10 == 0 { 42 } else { 100 + n % 900 };
                    if let Err(e) = checkout(&frontend, &client, inventory_addr, order).await {
                        println!("checkout {order}: {e}");
                    }
                }
            }
        }
        let (frontend_done, inventory_done) = (
            tokio::task::spawn_blocking(move || frontend.shutdown()),
            tokio::task::spawn_blocking(move || inventory.shutdown()),
        );
        frontend_done.await??;
        inventory_done.await??;
        println!("Stopped.");
    }
    Ok(())
}

fn text<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    path.iter()
        .fold(v, |cur, p| &cur[*p])
        .as_str()
        .unwrap_or("")
}

fn millis(duration: &str) -> f64 {
    // d.hh:mm:ss.ffffff
    let (days, rest) = duration.split_once('.').unwrap_or(("0", duration));
    let parts: Vec<f64> = rest.split(':').filter_map(|p| p.parse().ok()).collect();
    match (days.parse::<f64>(), parts.as_slice()) {
        (Ok(d), [h, m, s]) => ((d * 24.0 + h) * 60.0 + m) * 60_000.0 + s * 1000.0,
        _ => 0.0,
    }
}

/// Prints what the local ingestion server accepted, as Azure Monitor would show it.
fn print_local(server: &IngestionServer) {
    let items = server.envelopes();
    let rejected = server.rejected();
    println!(
        "No APPLICATIONINSIGHTS_CONNECTION_STRING set: everything went to the local ingestion server at {}.",
        server.endpoint()
    );
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for item in &items {
        *kinds.entry(text(item, &["data", "baseType"])).or_default() += 1;
    }
    println!(
        "It accepted {} items in {} requests ({}) and rejected {}.",
        items.len(),
        server.requests().len(),
        kinds
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect::<Vec<_>>()
            .join(", "),
        rejected.len()
    );
    for r in &rejected {
        println!("  REJECTED: {r:?}");
    }
    print_application_map(&items);
    print_transaction(&items);
    print_metrics(&items);
}

/// The Application Map: each role, the calls it receives from users, and its calls to other
/// roles (a dependency whose callee reported a request) or to components without telemetry.
fn print_application_map(items: &[Value]) {
    println!("\nApplication map");
    let of_type = |t: &'static str| {
        items
            .iter()
            .filter(move |i| text(i, &["data", "baseType"]) == t)
    };
    // Dependency id -> the role that served it.
    let callee: HashMap<&str, &str> = of_type("RequestData")
        .map(|r| {
            (
                text(r, &["tags", "ai.operation.parentId"]),
                text(r, &["tags", "ai.cloud.role"]),
            )
        })
        .collect();
    let dependency_ids: std::collections::HashSet<&str> = of_type("RemoteDependencyData")
        .map(|d| text(d, &["data", "baseData", "id"]))
        .collect();
    // (from, to) -> (calls, failed, total ms), seen from the caller.
    let mut edges: BTreeMap<(String, String), (usize, usize, f64)> = BTreeMap::new();
    let mut add = |from: String, to: String, d: &Value| {
        let e = edges.entry((from, to)).or_default();
        e.0 += 1;
        e.1 += usize::from(d["success"] == false);
        e.2 += millis(text(d, &["duration"]));
    };
    for r in of_type("RequestData") {
        if !dependency_ids.contains(text(r, &["tags", "ai.operation.parentId"])) {
            let role = text(r, &["tags", "ai.cloud.role"]).to_owned();
            add("(users)".to_owned(), role, &r["data"]["baseData"]);
        }
    }
    for dep in of_type("RemoteDependencyData") {
        let d = &dep["data"]["baseData"];
        let to = match callee.get(text(d, &["id"])) {
            Some(role) => role.to_string(),
            None => format!("{} {}", text(d, &["type"]), text(d, &["target"])),
        };
        add(text(dep, &["tags", "ai.cloud.role"]).to_owned(), to, d);
    }
    for ((from, to), (calls, failed, ms)) in &edges {
        println!(
            "  {from:>16} -> {to:<36} {calls} calls, {failed} failed, avg {:.1} ms",
            ms / *calls as f64
        );
    }
}

/// One end-to-end transaction that crosses both roles, with its log lines in place.
fn print_transaction(items: &[Value]) {
    let mut operations: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for item in items {
        let op = text(item, &["tags", "ai.operation.id"]);
        if !op.is_empty() {
            operations.entry(op).or_default().push(item);
        }
    }
    // Prefer a failed one: it shows the most.
    let pick = operations
        .iter()
        .filter(|(_, items)| {
            let roles: std::collections::BTreeSet<&str> = items
                .iter()
                .map(|i| text(i, &["tags", "ai.cloud.role"]))
                .collect();
            roles.len() > 1
        })
        .max_by_key(|(_, items)| {
            items
                .iter()
                .filter(|i| i["data"]["baseData"]["success"] == false)
                .count()
        });
    let Some((op, members)) = pick else {
        println!("\nNo transaction crossed both services.");
        return;
    };
    println!("\nEnd-to-end transaction {op}");
    let ids: Vec<&str> = members
        .iter()
        .map(|i| text(i, &["data", "baseData", "id"]))
        .collect();
    for root in members.iter().filter(|i| {
        let parent = text(i, &["tags", "ai.operation.parentId"]);
        !text(i, &["data", "baseData", "id"]).is_empty()
            && (parent.is_empty() || !ids.contains(&parent))
    }) {
        print_tree(root, members, 1);
    }
}

fn print_tree(item: &Value, all: &[&Value], depth: usize) {
    println!("{}{}", "  ".repeat(depth), describe(item));
    let id = text(item, &["data", "baseData", "id"]);
    if id.is_empty() {
        return;
    }
    let mut children: Vec<&&Value> = all
        .iter()
        .filter(|c| text(c, &["tags", "ai.operation.parentId"]) == id)
        .collect();
    children.sort_by_key(|c| text(c, &["time"]).to_owned());
    for child in children {
        print_tree(child, all, depth + 1);
    }
}

fn describe(item: &Value) -> String {
    let d = &item["data"]["baseData"];
    let role = text(item, &["tags", "ai.cloud.role"]);
    let failed = if d["success"] == false {
        "  FAILED"
    } else {
        ""
    };
    match text(item, &["data", "baseType"]) {
        "RequestData" => format!(
            "[{role}] request {}  {}  {:.1} ms{failed}",
            text(d, &["name"]),
            text(d, &["responseCode"]),
            millis(text(d, &["duration"]))
        ),
        "RemoteDependencyData" => format!(
            "[{role}] dependency {} {} -> {}  {}  {:.1} ms{failed}",
            text(d, &["type"]),
            text(d, &["name"]),
            text(d, &["target"]),
            text(d, &["resultCode"]),
            millis(text(d, &["duration"]))
        ),
        "ExceptionData" => format!(
            "[{role}] exception {}: {}",
            text(&d["exceptions"][0], &["typeName"]),
            text(&d["exceptions"][0], &["message"])
        ),
        "MessageData" => format!(
            "[{role}] log {}: {}",
            d["severityLevel"].as_str().unwrap_or("-"),
            text(d, &["message"])
        ),
        other => other.to_owned(),
    }
}

fn print_metrics(items: &[Value]) {
    println!("\nCustom metrics");
    for item in items
        .iter()
        .filter(|i| text(i, &["data", "baseType"]) == "MetricData")
    {
        let d = &item["data"]["baseData"];
        let point = &d["metrics"][0];
        let name = text(point, &["name"]);
        if name == "_OTELRESOURCE_" {
            continue;
        }
        println!(
            "  [{}] {name} {} = {} (count {})",
            text(item, &["tags", "ai.cloud.role"]),
            d["properties"],
            point["value"],
            point["count"]
        );
    }
}
