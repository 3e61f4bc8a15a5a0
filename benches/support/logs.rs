//! A batch of log records shaped like a web service's, shared by the log benches.

use std::time::{Duration, SystemTime};

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::{InstrumentationScope, SpanId, TraceFlags, TraceId};
use opentelemetry_sdk::logs::{SdkLogRecord, SdkLoggerProvider};

/// `n` records shaped like a web service's logs, as `opentelemetry-appender-tracing` makes
/// them (an unnamed scope, the module path as target): per request an info line with a few
/// fields, a debug line, every fifth request a warning, every tenth an error with an
/// exception (with a stack trace when `stack_trace` is set); all inside the request's trace.
pub(crate) fn web_service_logs(
    n: usize,
    stack_trace: bool,
) -> Vec<(SdkLogRecord, InstrumentationScope)> {
    let provider = SdkLoggerProvider::builder().build();
    let logger = provider.logger("");
    let scope = InstrumentationScope::builder("").build();
    let now = SystemTime::now();
    let mut records = Vec::with_capacity(n);
    let mut op = 0u64;
    while records.len() < n {
        op += 1;
        // Hashed ids and varied times, so that the batch compresses like real telemetry.
        let trace = TraceId::from_bytes(
            ((u128::from(super::mix(op)) << 64) | u128::from(super::mix(op ^ 0xabcd)))
                .to_be_bytes(),
        );
        let span = SpanId::from_bytes(super::mix(op << 8).to_be_bytes());
        let time = now - Duration::from_micros(super::mix(op ^ 0x77) % 60_000_000);
        let new = |severity: Severity, text: &'static str, target: &'static str| {
            let mut r = logger.create_log_record();
            r.set_timestamp(time);
            r.set_observed_timestamp(time);
            r.set_severity_number(severity);
            r.set_severity_text(text);
            r.set_target(target);
            r.set_event_name("event src/orders.rs:42");
            r.set_trace_context(trace, span, Some(TraceFlags::SAMPLED));
            r
        };
        let mut info = new(Severity::Info, "INFO", "shop::orders");
        info.set_body(AnyValue::from(format!("order {op} received")));
        info.add_attribute("order.id", AnyValue::Int(op as i64));
        info.add_attribute("customer.id", AnyValue::from(format!("c-{}", op % 977)));
        info.add_attribute("http.route", AnyValue::from("/api/orders/{id}"));
        info.add_attribute("items", AnyValue::Int(3));
        records.push((info, scope.clone()));
        let mut debug = new(Severity::Debug, "DEBUG", "shop::cache");
        debug.set_body(AnyValue::from("cache miss, loading from the database"));
        debug.add_attribute("cache.key", AnyValue::from(format!("order:{op}")));
        records.push((debug, scope.clone()));
        if op % 5 == 0 {
            let mut warn = new(Severity::Warn, "WARN", "shop::inventory");
            warn.set_body(AnyValue::from("inventory service slow, retrying"));
            warn.add_attribute("attempt", AnyValue::Int(2));
            warn.add_attribute("elapsed_ms", AnyValue::Double(812.5));
            records.push((warn, scope.clone()));
        }
        if op % 10 == 0 {
            let mut error = new(Severity::Error, "ERROR", "shop::payments");
            error.set_body(AnyValue::from("payment failed"));
            error.add_attribute("exception.type", AnyValue::from("shop::PaymentError"));
            error.add_attribute(
                "exception.message",
                AnyValue::from("the payment provider answered 402"),
            );
            if stack_trace {
                error.add_attribute(
                    "exception.stacktrace",
                    AnyValue::from(
                        "   0: shop::payments::charge\n             at src/payments.rs:88:17\n   1: shop::orders::checkout\n             at src/orders.rs:142:9\n   2: shop::http::handle\n             at src/http.rs:61:5",
                    ),
                );
            }
            error.add_attribute("order.id", AnyValue::Int(op as i64));
            records.push((error, scope.clone()));
        }
    }
    records.truncate(n);
    records
}
