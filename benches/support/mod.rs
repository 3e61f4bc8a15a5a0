//! A batch of spans shaped like a web service's, shared by the benches and the tests.
//!
//! Per operation: an HTTP server span, one or two outgoing HTTP calls, a database query; every
//! tenth operation fails with an exception event. The resource is what a typical service on
//! Kubernetes has after the SDK's default detectors.

#![allow(dead_code)]

pub(crate) mod http;
pub(crate) mod logs;
pub(crate) mod metrics;

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{
    Event, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use opentelemetry_sdk::Resource;

/// The resource of the service that produced the batch.
pub(crate) fn resource() -> Resource {
    Resource::builder_empty()
        .with_attributes([
            KeyValue::new("service.name", "checkout"),
            KeyValue::new("service.namespace", "shop"),
            KeyValue::new("service.version", "1.4.2"),
            KeyValue::new("service.instance.id", "checkout-7d9f8b6c5-x2x7k"),
            KeyValue::new("host.name", "aks-nodepool1-12345678-vmss000002"),
            KeyValue::new("k8s.pod.name", "checkout-7d9f8b6c5-x2x7k"),
            KeyValue::new("k8s.namespace.name", "shop"),
            KeyValue::new("k8s.deployment.name", "checkout"),
            KeyValue::new("telemetry.sdk.name", "opentelemetry"),
            KeyValue::new("telemetry.sdk.language", "rust"),
            KeyValue::new("telemetry.sdk.version", "0.33.1"),
            KeyValue::new("process.runtime.name", "rustc"),
        ])
        .build()
}

/// One span; `ids` are (trace id, span id, parent span id).
fn span(
    (trace, id, parent): (u128, u64, u64),
    kind: SpanKind,
    name: &'static str,
    start: SystemTime,
    micros: u64,
    attributes: Vec<KeyValue>,
) -> SpanData {
    SpanData {
        span_context: SpanContext::new(
            TraceId::from_bytes(trace.to_be_bytes()),
            SpanId::from_bytes(id.to_be_bytes()),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: SpanId::from_bytes(parent.to_be_bytes()),
        parent_span_is_remote: false,
        span_kind: kind,
        name: Cow::Borrowed(name),
        start_time: start,
        end_time: start + Duration::from_micros(micros),
        attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: InstrumentationScope::builder("shop-http").build(),
    }
}

/// A deterministic stand-in for random ids (SplitMix64), so that ids compress like real ones.
pub(crate) fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `n` spans (a multiple of four is exact), starting now.
pub(crate) fn web_service_batch(n: usize) -> Vec<SpanData> {
    let now = SystemTime::now();
    let base = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut spans = Vec::with_capacity(n);
    let mut op = 0u64;
    while spans.len() < n {
        op += 1;
        let trace = (u128::from(mix(op)) << 64) | u128::from(mix(op ^ 0xabcd));
        let server_id = mix(op << 8);
        let start = UNIX_EPOCH + base - Duration::from_micros(mix(op) % 60_000_000);
        let jitter = mix(op ^ 0x55) % 10_000;
        let failed = op % 10 == 0;
        let status = if failed { 500 } else { 200 };
        let order = op % 977;
        let mut server = span(
            (trace, server_id, 0),
            SpanKind::Server,
            "GET /api/orders/{id}",
            start,
            23_456 + jitter,
            vec![
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new("http.route", "/api/orders/{id}"),
                KeyValue::new("url.scheme", "https"),
                KeyValue::new("url.path", format!("/api/orders/{order}")),
                KeyValue::new("server.address", "shop.example.com"),
                KeyValue::new("server.port", 443),
                KeyValue::new("http.response.status_code", status),
                KeyValue::new("client.address", "203.0.113.7"),
                KeyValue::new("network.protocol.version", "1.1"),
                KeyValue::new(
                    "user_agent.original",
                    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36",
                ),
                KeyValue::new("enduser.pseudo.id", "u-1234"),
            ],
        );
        if failed {
            server.status = Status::error("inventory unavailable");
            let mut events = SpanEvents::default();
            events.events.push(Event::new(
                "exception",
                start + Duration::from_millis(20),
                vec![
                    KeyValue::new("exception.type", "shop::InventoryError"),
                    KeyValue::new("exception.message", "inventory service answered 503"),
                    KeyValue::new(
                        "exception.stacktrace",
                        "0: shop::orders::load\n   at src/orders.rs:42:17\n1: shop::http::handle\n   at src/http.rs:88:9",
                    ),
                ],
                0,
            ));
            server.events = events;
        }
        spans.push(server);
        let client = span(
            (trace, mix(server_id.wrapping_add(1)), server_id),
            SpanKind::Client,
            "GET",
            start + Duration::from_millis(1),
            12_345 + jitter / 2,
            vec![
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new("url.full", format!("http://inventory:8080/items/{order}")),
                KeyValue::new("server.address", "inventory"),
                KeyValue::new("server.port", 8080),
                KeyValue::new("http.response.status_code", if failed { 503 } else { 200 }),
                KeyValue::new("network.protocol.version", "1.1"),
            ],
        );
        spans.push(client);
        let db = span(
            (trace, mix(server_id.wrapping_add(2)), server_id),
            SpanKind::Client,
            "SELECT shop.orders",
            start + Duration::from_millis(2),
            3_210 + jitter / 7,
            vec![
                KeyValue::new("db.system.name", "postgresql"),
                KeyValue::new("db.namespace", "shop"),
                KeyValue::new(
                    "db.query.text",
                    "SELECT id, customer_id, total, status FROM orders WHERE id = $1",
                ),
                KeyValue::new("db.operation.name", "SELECT"),
                KeyValue::new("server.address", "orders-db.postgres.database.azure.com"),
                KeyValue::new("server.port", 5432),
            ],
        );
        spans.push(db);
        let pay = span(
            (trace, mix(server_id.wrapping_add(3)), server_id),
            SpanKind::Client,
            "POST",
            start + Duration::from_millis(5),
            8_765 + jitter / 3,
            vec![
                KeyValue::new("http.request.method", "POST"),
                KeyValue::new("url.full", "https://payments.example.net/v1/authorize"),
                KeyValue::new("server.address", "payments.example.net"),
                KeyValue::new("server.port", 443),
                KeyValue::new("http.response.status_code", 201),
            ],
        );
        spans.push(pay);
    }
    spans.truncate(n);
    spans
}
