#![allow(clippy::unwrap_used)]

use std::time::UNIX_EPOCH;

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};

use super::aggregate::{observe, Metric};
use super::*;

fn span(kind: SpanKind, status: Status, attributes: Vec<KeyValue>, ms: u64) -> SpanData {
    SpanData {
        span_context: SpanContext::new(
            TraceId::from(1u128),
            SpanId::from(2u64),
            TraceFlags::default(),
            false,
            TraceState::default(),
        ),
        parent_span_id: SpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: kind,
        name: "span".into(),
        start_time: UNIX_EPOCH,
        end_time: UNIX_EPOCH + Duration::from_millis(ms),
        attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status,
        instrumentation_scope: InstrumentationScope::default(),
    }
}

#[test]
fn observations_are_the_items_fields() {
    let kv = KeyValue::new;
    let request = span(
        SpanKind::Server,
        Status::Unset,
        vec![
            kv("http.request.method", "GET"),
            KeyValue::new("http.response.status_code", 404),
            kv("user_agent.original", "AlwaysOn probe"),
        ],
        12,
    );
    let o = observe(&request);
    assert_eq!(o.metric, Metric::Requests);
    assert!(!o.success, "a 4xx request failed, as its item says");
    assert_eq!(o.result_code, "404");
    assert!(o.synthetic);
    assert_eq!(o.duration_ms, 12.0);

    let consumer = span(SpanKind::Consumer, Status::Unset, vec![], 1);
    let o = observe(&consumer);
    assert_eq!(
        (o.metric, o.success, o.result_code.as_ref()),
        (Metric::Requests, true, "0")
    );

    let sql = span(
        SpanKind::Client,
        Status::error("x"),
        vec![
            kv("db.system", "postgresql"),
            kv("server.address", "db"),
            kv("db.name", "shop"),
        ],
        3,
    );
    let o = observe(&sql);
    assert_eq!(o.metric, Metric::Dependencies);
    assert!(!o.success);
    assert_eq!(
        (o.type_.as_ref(), o.target.as_ref()),
        ("postgresql", "db|shop")
    );

    let internal = span(SpanKind::Internal, Status::Unset, vec![], 1);
    let o = observe(&internal);
    assert_eq!(
        (o.metric, o.type_.as_ref(), o.target.as_ref()),
        (Metric::Dependencies, "InProc", "")
    );
}

#[test]
fn zero_interval_is_refused() {
    let err = StandardMetricsProcessor::builder()
        .with_connection_string("InstrumentationKey=12345678-aaaa-4bbb-8ccc-1234567890ab")
        .with_offline_storage(false)
        .with_export_interval(Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::InvalidExportInterval), "{err}");
}

#[test]
fn block_on_waits_for_wakes_from_other_threads() {
    let (tx, rx) = futures_channel::oneshot::channel();
    let t = thread::spawn(move || tx.send(42));
    assert_eq!(block_on(rx), Ok(42));
    t.join().unwrap().unwrap();
}
