//! The demo's shop, in process: `frontend` takes checkouts, queries its database and calls
//! `inventory`, which reads its stock cache and logs; order 42 fails in inventory and the
//! frontend records an exception. Real SDK providers and this crate's exporters send it all to
//! a connection string; `send` returns after everything was delivered.

use opentelemetry::logs::{LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::{
    Span as _, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_azure_monitor::{LogExporter, MetricExporter, SpanExporter};
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;

/// The order that fails.
pub(crate) const FAILING_ORDER: u32 = 42;

struct Service {
    tracer: SdkTracerProvider,
    logger: SdkLoggerProvider,
    meter: SdkMeterProvider,
}

impl Service {
    fn new(name: &'static str, connection_string: &str) -> Service {
        let resource = Resource::builder()
            .with_service_name(name)
            .with_attributes([
                KeyValue::new("service.namespace", "shop"),
                KeyValue::new("service.instance.id", format!("{name}-1")),
            ])
            .build();
        let spans = SpanExporter::builder()
            .with_connection_string(connection_string)
            .with_offline_storage(false)
            .build()
            .expect("span exporter");
        let logs = LogExporter::builder()
            .with_connection_string(connection_string)
            .with_offline_storage(false)
            .build()
            .expect("log exporter");
        let metrics = MetricExporter::builder()
            .with_connection_string(connection_string)
            .with_offline_storage(false)
            .build()
            .expect("metric exporter");
        Service {
            tracer: SdkTracerProvider::builder()
                .with_resource(resource.clone())
                .with_simple_exporter(spans)
                .build(),
            logger: SdkLoggerProvider::builder()
                .with_resource(resource.clone())
                .with_simple_exporter(logs)
                .build(),
            meter: SdkMeterProvider::builder()
                .with_resource(resource)
                .with_reader(PeriodicReader::builder(metrics).build())
                .build(),
        }
    }

    fn log(&self, severity: Severity, body: String) {
        let logger = self.logger.logger("shop");
        let mut record = logger.create_log_record();
        record.set_severity_number(severity);
        record.set_severity_text(severity.name());
        record.set_body(body.into());
        logger.emit(record);
    }

    fn shutdown(&self) {
        self.tracer.force_flush().expect("spans delivered");
        self.logger.force_flush().expect("logs delivered");
        self.meter.force_flush().expect("metrics delivered");
        self.tracer.shutdown().expect("tracer shut down");
        self.logger.shutdown().expect("logger shut down");
        self.meter.shutdown().expect("meter shut down");
    }
}

/// Inventory serves `GET /items/{id}` under the caller's context.
fn inventory(service: &Service, parent: &Context, item: u32) -> bool {
    let tracer = service.tracer.tracer("inventory");
    let span = tracer
        .span_builder("GET /items/{id}")
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("http.route", "/items/{id}"),
            KeyValue::new("url.scheme", "http"),
            KeyValue::new("url.path", format!("/items/{item}")),
        ])
        .start_with_context(&tracer, parent);
    let cx = parent.with_span(span);
    let _guard = cx.clone().attach();
    let mut stock = tracer
        .span_builder("HGET stock")
        .with_kind(SpanKind::Client)
        .with_attributes([
            KeyValue::new("db.system.name", "redis"),
            KeyValue::new("server.address", "stock-cache"),
            KeyValue::new("server.port", 6379),
        ])
        .start_with_context(&tracer, &cx);
    let ok = item != FAILING_ORDER;
    if !ok {
        stock.set_status(Status::error("connection refused"));
    }
    stock.end();
    let status = if ok {
        service.log(Severity::Info, format!("reserved item {item}"));
        200
    } else {
        service.log(
            Severity::Error,
            format!("could not reserve item {item}: stock cache unavailable"),
        );
        cx.span().set_status(Status::error("stock unavailable"));
        503
    };
    cx.span()
        .set_attribute(KeyValue::new("http.response.status_code", status));
    cx.span().end();
    service
        .meter
        .meter("inventory")
        .u64_counter("inventory.reservations")
        .build()
        .add(
            1,
            &[KeyValue::new(
                "outcome",
                if ok { "reserved" } else { "failed" },
            )],
        );
    ok
}

fn checkout(frontend: &Service, inventory_service: &Service, order: u32) {
    let tracer = frontend.tracer.tracer("frontend");
    let span = tracer
        .span_builder("POST /checkout/{order}")
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new("http.request.method", "POST"),
            KeyValue::new("http.route", "/checkout/{order}"),
            KeyValue::new("url.scheme", "https"),
            KeyValue::new("url.path", format!("/checkout/{order}")),
            KeyValue::new("server.address", "shop.example.com"),
        ])
        .start(&tracer);
    let cx = Context::current_with_span(span);
    let _guard = cx.clone().attach();
    frontend.log(Severity::Info, format!("checkout of order {order} started"));
    tracer
        .span_builder("SELECT shop.orders")
        .with_kind(SpanKind::Client)
        .with_attributes([
            KeyValue::new("db.system.name", "postgresql"),
            KeyValue::new("db.namespace", "shop"),
            KeyValue::new("server.address", "orders-db"),
            KeyValue::new("server.port", 5432),
        ])
        .start_with_context(&tracer, &cx)
        .end();
    let call = tracer
        .span_builder("GET")
        .with_kind(SpanKind::Client)
        .with_attributes([
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("url.full", format!("http://inventory:8080/items/{order}")),
            KeyValue::new("server.address", "inventory"),
            KeyValue::new("server.port", 8080),
        ])
        .start_with_context(&tracer, &cx);
    let call_cx = cx.with_span(call);
    let ok = inventory(inventory_service, &call_cx, order);
    let code = if ok { 200 } else { 503 };
    call_cx
        .span()
        .set_attribute(KeyValue::new("http.response.status_code", code));
    if !ok {
        call_cx
            .span()
            .set_status(Status::error(format!("inventory answered {code}")));
    }
    call_cx.span().end();
    if !ok {
        cx.span().add_event(
            "exception",
            vec![
                KeyValue::new("exception.type", "frontend::CheckoutFailed"),
                KeyValue::new("exception.message", format!("inventory answered {code}")),
            ],
        );
        cx.span().set_status(Status::error("checkout failed"));
        frontend.log(
            Severity::Warn,
            format!("order {order} not placed: inventory answered {code}"),
        );
    }
    cx.span().set_attribute(KeyValue::new(
        "http.response.status_code",
        if ok { 200 } else { 502 },
    ));
    cx.span().end();
    frontend
        .meter
        .meter("frontend")
        .u64_counter("checkout.orders")
        .build()
        .add(1, &[KeyValue::new("placed", ok)]);
}

/// Sends the shop's checkouts of `orders` (both services) and waits until all is delivered.
pub(crate) fn send(connection_string: &str, orders: &[u32]) {
    let frontend = Service::new("frontend", connection_string);
    let inventory = Service::new("inventory", connection_string);
    for order in orders {
        checkout(&frontend, &inventory, *order);
    }
    frontend.shutdown();
    inventory.shutdown();
}
