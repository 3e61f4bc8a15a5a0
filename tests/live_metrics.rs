//! Live Metrics end to end: real SDK providers with the Live Metrics processors, against the
//! local Live Metrics fake (`testing::LiveServer`), one test per behaviour of LIVE-METRICS.md
//! §13. Intervals are shortened with `LiveMetricsBuilder::with_intervals`; waits are bounded
//! and wait for what the fake received, never for a fixed time.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime};

use opentelemetry::logs::{LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_azure_monitor::testing::{IngestionServer, LiveFault, LiveRequest, LiveServer};
use opentelemetry_azure_monitor::{LiveMetrics, LiveMetricsIntervals};
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

const NAMES: [&str; 11] = [
    r"\ApplicationInsights\Requests/Sec",
    r"\ApplicationInsights\Requests Failed/Sec",
    r"\ApplicationInsights\Request Duration",
    r"\ApplicationInsights\Dependency Calls/Sec",
    r"\ApplicationInsights\Dependency Calls Failed/Sec",
    r"\ApplicationInsights\Dependency Call Duration",
    r"\ApplicationInsights\Exceptions/Sec",
    r"\Memory\Committed Bytes",
    r"\Process\Physical Bytes",
    r"\Processor(_Total)\% Processor Time",
    r"\% Process\Processor Time Normalized",
];

fn intervals() -> LiveMetricsIntervals {
    LiveMetricsIntervals {
        ping: Duration::from_millis(50),
        post: Duration::from_millis(50),
        max_ping_failure: Duration::from_secs(60),
        max_post_failure: Duration::from_secs(20),
        backoff: Duration::from_secs(60),
    }
}

struct Setup {
    _ingestion: IngestionServer,
    fake: LiveServer,
    live: LiveMetrics,
    tracer_provider: SdkTracerProvider,
    logger_provider: SdkLoggerProvider,
}

fn setup_with(intervals: LiveMetricsIntervals, script: impl FnOnce(&LiveServer)) -> Setup {
    let ingestion = IngestionServer::start().unwrap();
    let fake = LiveServer::start().unwrap();
    script(&fake);
    let live = LiveMetrics::builder()
        .with_connection_string(fake.connection_string(&ingestion))
        .with_intervals(intervals)
        .build()
        .unwrap();
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name("shop")
        .with_attribute(KeyValue::new("service.instance.id", "shop-1"))
        .build();
    let tracer_provider = SdkTracerProvider::builder()
        .with_resource(resource.clone())
        .with_span_processor(live.span_processor())
        .build();
    let logger_provider = SdkLoggerProvider::builder()
        .with_resource(resource)
        .with_log_processor(live.log_processor())
        .build();
    Setup {
        _ingestion: ingestion,
        fake,
        live,
        tracer_provider,
        logger_provider,
    }
}

fn setup(script: impl FnOnce(&LiveServer)) -> Setup {
    setup_with(intervals(), script)
}

/// The service's default configuration (SPEC Post example).
fn default_configuration() -> Value {
    let failed =
        json!({"Filters": [{"FieldName": "Success", "Predicate": "Equal", "Comparand": "False"}]});
    let all = json!({"Filters": []});
    json!({
        "Metrics": [],
        "DocumentStreams": [{
            "Id": "all-types-default",
            "DocumentFilterGroups": [
                {"TelemetryType": "Request", "Filters": failed},
                {"TelemetryType": "Dependency", "Filters": failed},
                {"TelemetryType": "Exception", "Filters": all},
                {"TelemetryType": "Event", "Filters": all},
                {"TelemetryType": "Trace", "Filters": all}
            ]
        }],
        "QuotaInfo": null
    })
}

/// The SPEC Ping example's derived metric.
fn derived_metric_configuration() -> Value {
    json!({
        "Metrics": [{
            "Id": "141.8a7513a4",
            "TelemetryType": "Request",
            "FilterGroups": [{"Filters": [
                {"FieldName": "Duration", "Predicate": "GreaterThan", "Comparand": "0.0:0:10"},
                {"FieldName": "CustomDimensions.UXCustomFilterKey", "Predicate": "Equal", "Comparand": "UXCustomFilterValue"}
            ]}],
            "Projection": "Duration",
            "Aggregation": "Avg",
            "BackEndAggregation": "Avg"
        }],
        "DocumentStreams": [],
        "QuotaInfo": {"InitialQuota": 200, "MaxQuota": 200, "QuotaAccrualRatePerSec": 200}
    })
}

fn request_span(s: &Setup, name: &str, code: i64, duration: Duration, extra: Vec<KeyValue>) {
    let tracer = s.tracer_provider.tracer("test");
    let start = SystemTime::now() - duration;
    let mut attributes = vec![
        KeyValue::new("http.request.method", "GET"),
        KeyValue::new("url.scheme", "http"),
        KeyValue::new("url.path", name.to_owned()),
        KeyValue::new("server.address", "shop.example"),
        KeyValue::new("http.response.status_code", code),
    ];
    attributes.extend(extra);
    let mut span = tracer
        .span_builder(format!("GET {name}"))
        .with_kind(SpanKind::Server)
        .with_start_time(start)
        .with_attributes(attributes)
        .start(&tracer);
    if code >= 500 {
        span.set_status(Status::error("server error"));
    }
    span.end_with_timestamp(start + duration);
}

fn posts_after(fake: &LiveServer, n: usize) -> Vec<LiveRequest> {
    fake.posts().into_iter().skip(n).collect()
}

/// The posts among `requests` (inside `wait_until`, which holds the fake's lock).
fn posts_in(requests: &[LiveRequest]) -> Vec<LiveRequest> {
    requests
        .iter()
        .filter(|r| r.body.is_array())
        .cloned()
        .collect()
}

fn no_problems(fake: &LiveServer) {
    assert!(fake.problems().is_empty(), "{:#?}", fake.problems());
}

/// A program that builds its Live Metrics client, does other work, then builds its provider:
/// the client sends nothing before the provider has handed the processors its resource, so
/// that the portal never lists an `unknown_service` instance (the first ping used to go out
/// at once, under the SDK's default resource; CI saw it when the provider came a moment late).
#[test]
fn the_first_ping_names_the_role_of_the_providers_resource() {
    let ingestion = IngestionServer::start().unwrap();
    let fake = LiveServer::start().unwrap();
    let live = LiveMetrics::builder()
        .with_connection_string(fake.connection_string(&ingestion))
        .with_intervals(LiveMetricsIntervals {
            ping: Duration::from_secs(60),
            ..intervals()
        })
        .build()
        .unwrap();
    // Startup work between the two (not a synchronisation: the scenario itself).
    std::thread::sleep(Duration::from_millis(300));
    let provider = SdkTracerProvider::builder()
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("checkout")
                .build(),
        )
        .with_span_processor(live.span_processor())
        .build();
    assert!(fake.wait_until(WAIT, |r| !r.is_empty()));
    let pings = fake.pings();
    assert_eq!(pings[0].header("x-ms-qps-role-name"), Some("checkout"));
    assert_eq!(pings[0].data_point().unwrap()["RoleName"], "checkout");
    provider.shutdown().unwrap();
    assert!(pings
        .iter()
        .all(|p| p.header("x-ms-qps-role-name") == Some("checkout")));
    no_problems(&fake);
}

#[test]
fn pings_at_the_hinted_interval_and_never_posts_unsubscribed() {
    // The default interval is a minute: only the hint can make five pings come quickly.
    let slow = LiveMetricsIntervals {
        ping: Duration::from_secs(60),
        ..intervals()
    };
    let s = setup_with(slow, |fake| {
        fake.set_polling_hint(Some(Duration::from_millis(100)))
    });
    assert!(s.fake.wait_until(WAIT, |r| r.len() >= 5));
    s.live.shutdown().unwrap();
    assert!(s.fake.posts().is_empty());
    let pings = s.fake.pings();
    for (a, b) in pings.iter().zip(pings.iter().skip(1)) {
        // The service asked for 100 ms; the client waits at least about that.
        assert!(b.received_at.duration_since(a.received_at) >= Duration::from_millis(80));
    }
    let first = &pings[0];
    assert_eq!(first.etag(), Some(""));
    assert_eq!(first.header("x-ms-qps-invariant-version"), Some("5"));
    assert_eq!(first.header("x-ms-qps-role-name"), Some("shop"));
    assert_eq!(first.header("x-ms-qps-instance-name"), Some("shop-1"));
    let stream = first.header("x-ms-qps-stream-id").unwrap();
    assert_eq!(stream.len(), 32);
    assert!(pings
        .iter()
        .all(|p| p.header("x-ms-qps-stream-id") == Some(stream)));
    assert_eq!(first.data_point().unwrap()["RoleName"], "shop");
    assert_eq!(first.data_point().unwrap()["InvariantVersion"], 5);
    no_problems(&s.fake);
    assert!(!s.live.is_subscribed());
}

#[test]
fn subscribed_posts_carry_the_etag_the_eleven_metrics_and_only_asked_for_documents() {
    let s = setup(|fake| {
        fake.set_configuration("1::abc::2::", default_configuration());
        fake.set_subscribed(true);
    });
    assert!(s
        .fake
        .wait_until(WAIT, |r| r.iter().filter(|r| r.body.is_array()).count()
            >= 2));
    assert!(s.live.is_subscribed());
    let before = s.fake.posts().len();
    request_span(&s, "/ok", 200, Duration::from_millis(5), vec![]);
    request_span(&s, "/fail", 500, Duration::from_millis(7), vec![]);
    let logger = s.logger_provider.logger("test");
    let mut record = logger.create_log_record();
    record.set_severity_number(Severity::Error);
    record.set_body("payment failed".into());
    record.add_attribute("exception.type", "PaymentError");
    record.add_attribute("exception.message", "card declined");
    logger.emit(record);
    let mut record = logger.create_log_record();
    record.set_severity_number(Severity::Info);
    record.set_body("order placed".into());
    logger.emit(record);

    let seen = |posts: &[LiveRequest]| -> Vec<Value> {
        posts.iter().flat_map(LiveRequest::documents).collect()
    };
    assert!(s
        .fake
        .wait_until(WAIT, |r| seen(&posts_in(r)[before..]).len() >= 3));
    // One more post, so that every count is in.
    let n = s.fake.posts().len();
    assert!(s.fake.wait_until(WAIT, |r| posts_in(r).len() > n));
    s.live.shutdown().unwrap();
    no_problems(&s.fake);

    let posts = s.fake.posts();
    assert!(posts.iter().all(|p| p.etag() == Some("1::abc::2::")));
    for p in &posts {
        let names = p.metric_names();
        for name in NAMES {
            assert!(
                names.iter().any(|n| n == name),
                "{name} missing in {names:?}"
            );
        }
    }
    let documents = seen(&posts);
    let types: Vec<&str> = documents
        .iter()
        .map(|d| d["DocumentType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types.iter().filter(|t| **t == "Request").count(),
        1,
        "{documents:#?}"
    );
    let request = documents
        .iter()
        .find(|d| d["DocumentType"] == "Request")
        .unwrap();
    assert_eq!(request["Name"], "GET /fail");
    assert_eq!(request["ResponseCode"], "500");
    assert_eq!(request["Url"], "http://shop.example/fail");
    assert_eq!(request["Duration"], "PT0.007S");
    assert_eq!(request["DocumentStreamIds"], json!(["all-types-default"]));
    let exception = documents
        .iter()
        .find(|d| d["DocumentType"] == "Exception")
        .unwrap();
    assert_eq!(exception["ExceptionType"], "PaymentError");
    let trace = documents
        .iter()
        .find(|d| d["DocumentType"] == "Trace")
        .unwrap();
    assert_eq!(trace["Message"], "order placed");

    let counted = |name: &str| posts.iter().any(|p| p.metric(name).unwrap_or(0.0) > 0.0);
    assert!(counted(NAMES[0]), "requests");
    assert!(counted(NAMES[1]), "failed requests");
    assert!(counted(NAMES[6]), "exceptions");
    assert!(posts
        .iter()
        .any(|p| p.metric(NAMES[8]).unwrap_or(0.0) > 0.0));
    let durations: Vec<f64> = posts.iter().filter_map(|p| p.metric(NAMES[2])).collect();
    assert!(
        durations
            .iter()
            .all(|d| *d == 0.0 || (5.0..=7.0).contains(d)),
        "{durations:?}"
    );
}

#[test]
fn a_derived_metric_averages_only_the_matching_spans() {
    let s = setup(|fake| {
        fake.set_configuration("1::dm::1::", derived_metric_configuration());
        fake.set_subscribed(true);
    });
    assert!(s
        .fake
        .wait_until(WAIT, |r| r.iter().filter(|r| r.body.is_array()).count()
            >= 2));
    let before = s.fake.posts().len();
    let marked = || vec![KeyValue::new("UXCustomFilterKey", "UXCustomFilterValue")];
    request_span(&s, "/a", 200, Duration::from_secs(12), marked());
    request_span(&s, "/b", 200, Duration::from_secs(14), marked());
    request_span(&s, "/c", 200, Duration::from_secs(2), marked());
    request_span(&s, "/d", 200, Duration::from_secs(30), vec![]);
    let n = s.fake.posts().len();
    assert!(s.fake.wait_until(WAIT, |r| posts_in(r).len() >= n + 2));
    s.live.shutdown().unwrap();
    no_problems(&s.fake);
    let values: Vec<f64> = posts_after(&s.fake, before)
        .iter()
        .map(|p| p.metric("141.8a7513a4").unwrap())
        .collect();
    let busy: Vec<f64> = values.iter().copied().filter(|v| *v != 0.0).collect();
    // The four spans end within microseconds; should a post fall between them, the two
    // matching spans are averaged in two windows.
    assert!(
        busy == [13_000.0] || busy == [12_000.0, 14_000.0],
        "{values:?}"
    );
    assert!(values.contains(&0.0), "quiet windows send 0: {values:?}");
}

#[test]
fn invalid_configurations_are_reported_back() {
    let s = setup(|fake| {
        fake.set_configuration(
            "1::bad::1::",
            json!({
                "Metrics": [{"Id": "pc", "TelemetryType": "PerformanceCounter", "FilterGroups": [],
                             "Projection": "Count()", "Aggregation": "Sum"}],
                "DocumentStreams": [{"Id": "s", "DocumentFilterGroups": [{"TelemetryType": "Request",
                    "Filters": {"Filters": [{"FieldName": "Duration", "Predicate": "Contains", "Comparand": "x"}]}}]}]
            }),
        );
        fake.set_subscribed(true);
    });
    assert!(s
        .fake
        .wait_until(WAIT, |r| r.iter().filter(|r| r.body.is_array()).count()
            >= 2));
    s.live.shutdown().unwrap();
    no_problems(&s.fake);
    let errors = s.fake.posts()[0].errors();
    let find = |t: &str| {
        errors
            .iter()
            .find(|e| e["CollectionConfigurationErrorType"] == t)
            .unwrap_or_else(|| panic!("{t} missing in {errors:#?}"))
            .clone()
    };
    let metric = find("MetricTelemetryTypeUnsupported");
    assert_eq!(
        metric["Data"],
        json!([{"key": "MetricId", "value": "pc"}, {"key": "ETag", "value": "1::bad::1::"}])
    );
    let stream = find("DocumentStreamFailureToCreateFilterUnexpected");
    assert_eq!(
        stream["Data"],
        json!([{"key": "DocumentStreamInfoId", "value": "s"}, {"key": "ETag", "value": "1::bad::1::"}])
    );
    // Validation errors persist while the configuration stays.
    assert!(s.fake.posts().iter().all(|p| p.errors().len() == 2));
}

#[test]
fn a_new_configuration_replaces_the_old_one() {
    let s = setup(|fake| {
        fake.set_configuration("1::dm::1::", derived_metric_configuration());
        fake.set_subscribed(true);
    });
    assert!(s
        .fake
        .wait_until(WAIT, |r| r.iter().filter(|r| r.body.is_array()).count()
            >= 2));
    assert!(s.fake.posts()[0].metric("141.8a7513a4").is_some());
    let mut next = derived_metric_configuration();
    next["Metrics"][0]["Id"] = json!("new-metric");
    s.fake.set_configuration("2::dm::2::", next);
    assert!(s
        .fake
        .wait_until(WAIT, |r| r.iter().any(|r| r.etag() == Some("2::dm::2::"))));
    s.live.shutdown().unwrap();
    no_problems(&s.fake);
    let posts = s.fake.posts();
    let first_new = posts
        .iter()
        .position(|p| p.etag() == Some("2::dm::2::"))
        .unwrap();
    for p in &posts[first_new..] {
        assert_eq!(p.etag(), Some("2::dm::2::"));
        assert!(p.metric("141.8a7513a4").is_none());
        assert!(p.metric("new-metric").is_some());
    }
}

#[test]
fn unsubscribing_returns_to_pings_with_the_etag_reset() {
    let s = setup(|fake| {
        fake.set_configuration("1::abc::2::", default_configuration());
        fake.set_subscribed(true);
    });
    assert!(s
        .fake
        .wait_until(WAIT, |r| r.iter().filter(|r| r.body.is_array()).count()
            >= 2));
    s.fake.set_subscribed(false);
    let n = s.fake.requests().len();
    assert!(s.fake.wait_until(WAIT, |r| r
        .iter()
        .skip(n)
        .filter(|r| r.body.is_object())
        .count()
        >= 2));
    s.live.shutdown().unwrap();
    no_problems(&s.fake);
    let requests = s.fake.requests();
    let last_post = requests.iter().rposition(|r| r.body.is_array()).unwrap();
    assert!(requests[last_post + 1..].iter().all(|r| r.body.is_object()));
    assert!(requests[last_post + 1..]
        .iter()
        .all(|r| r.etag() == Some("")));
    assert!(!s.live.is_subscribed());
}

#[test]
fn redirects_are_followed_only_within_the_allow_list() {
    let second = LiveServer::start().unwrap();
    let target = format!("{}/QuickPulseService.svc", second.endpoint());
    let s = setup(|fake| {
        fake.set_polling_hint(Some(Duration::from_millis(30)));
        fake.redirect_next_ping("https://evil.example/QuickPulseService.svc");
    });
    assert!(s.fake.wait_until(WAIT, |r| r.len() >= 3));
    s.fake
        .redirect_next_ping("http://evil.example:1/QuickPulseService.svc");
    let n = s.fake.requests().len();
    assert!(s.fake.wait_until(WAIT, |r| r.len() >= n + 3));
    s.fake.redirect_next_ping(&target);
    assert!(second.wait_until(WAIT, |r| r.len() >= 3));
    let n = s.fake.requests().len();
    s.live.shutdown().unwrap();
    // After the redirect, nothing more went to the first host (at most the answer in flight).
    assert!(s.fake.requests().len() <= n);
    no_problems(&s.fake);
    assert!(second.problems().is_empty(), "{:#?}", second.problems());
}

#[test]
fn failing_posts_back_off_then_ping() {
    let quick = LiveMetricsIntervals {
        max_post_failure: Duration::from_millis(300),
        backoff: Duration::from_millis(800),
        ..intervals()
    };
    let s = setup_with(quick, |fake| fake.set_subscribed(true));
    assert!(s
        .fake
        .wait_until(WAIT, |r| r.iter().filter(|r| r.body.is_array()).count()
            >= 2));
    s.fake.fail_all(Some(LiveFault::Status(503)));
    let n = s.fake.requests().len();
    // Failing posts, then (after the backoff) a ping.
    assert!(s
        .fake
        .wait_until(WAIT, |r| r.iter().skip(n).any(|r| r.body.is_object())));
    s.fake.fail_all(None);
    let requests = s.fake.requests();
    let ping = n + requests[n..]
        .iter()
        .position(|r| r.body.is_object())
        .unwrap();
    let last_post = &requests[ping - 1];
    assert!(last_post.body.is_array());
    assert_eq!(last_post.status, 503);
    assert!(
        requests[ping]
            .received_at
            .duration_since(last_post.received_at)
            >= Duration::from_millis(800)
    );
    // Back to posting once the service answers again.
    assert!(s.fake.wait_until(WAIT, |r| r
        .iter()
        .skip(ping)
        .any(|r| r.body.is_array() && r.status == 200)));
    s.live.shutdown().unwrap();
    no_problems(&s.fake);
}

#[test]
fn failing_pings_back_off_to_one_ping_per_backoff() {
    let quick = LiveMetricsIntervals {
        max_ping_failure: Duration::from_millis(200),
        backoff: Duration::from_millis(500),
        ..intervals()
    };
    let s = setup_with(quick, |fake| fake.fail_all(Some(LiveFault::DropConnection)));
    // Failing for more than 200 ms, then one ping per 500 ms.
    assert!(s.fake.wait_until(WAIT, |r| r.len() >= 8));
    let requests = s.fake.requests();
    let gaps: Vec<Duration> = requests
        .windows(2)
        .map(|w| w[1].received_at.duration_since(w[0].received_at))
        .collect();
    let first_backoff = gaps
        .iter()
        .position(|g| *g >= Duration::from_millis(500))
        .unwrap();
    assert!(
        gaps[first_backoff..]
            .iter()
            .take(3)
            .all(|g| *g >= Duration::from_millis(500)),
        "{gaps:?}"
    );
    s.live.shutdown().unwrap();
    assert!(requests.iter().all(|r| r.body.is_object()));
}

#[test]
fn nothing_is_sent_after_shutdown() {
    let s = setup(|fake| fake.set_subscribed(true));
    assert!(s.fake.wait_until(WAIT, |r| r.len() >= 3));
    s.tracer_provider.shutdown().unwrap(); // stops the shared client
    let n = s.fake.requests().len();
    assert!(!s
        .fake
        .wait_until(Duration::from_millis(300), |r| r.len() > n));
    assert!(!s.live.is_subscribed());
    // Spans after shutdown are not counted, and a second shutdown is fine.
    s.live.shutdown().unwrap();
    s.logger_provider.shutdown().unwrap();
}

/// Records every span without sampling it: what a sampler does for spans it drops from export
/// but that Live Metrics must still count.
#[derive(Clone, Debug)]
struct RecordOnly;

impl opentelemetry_sdk::trace::ShouldSample for RecordOnly {
    fn should_sample(
        &self,
        _parent: Option<&opentelemetry::Context>,
        _trace_id: opentelemetry::trace::TraceId,
        _name: &str,
        _kind: &SpanKind,
        _attributes: &[KeyValue],
        _links: &[opentelemetry::trace::Link],
    ) -> opentelemetry_sdk::trace::SamplingResult {
        opentelemetry_sdk::trace::SamplingResult {
            decision: opentelemetry_sdk::trace::SamplingDecision::RecordOnly,
            attributes: Vec::new(),
            trace_state: Default::default(),
        }
    }
}

#[test]
fn spans_recorded_but_not_sampled_are_still_seen() {
    let ingestion = IngestionServer::start().unwrap();
    let fake = LiveServer::start().unwrap();
    fake.set_configuration("1::abc::2::", default_configuration());
    fake.set_subscribed(true);
    let live = LiveMetrics::builder()
        .with_connection_string(fake.connection_string(&ingestion))
        .with_intervals(intervals())
        .build()
        .unwrap();
    let exporter = opentelemetry_azure_monitor::SpanExporter::builder()
        .with_connection_string(ingestion.connection_string())
        .with_offline_storage(false)
        .build()
        .unwrap();
    let provider = SdkTracerProvider::builder()
        .with_sampler(RecordOnly)
        .with_span_processor(live.span_processor())
        .with_simple_exporter(exporter)
        .build();
    assert!(fake.wait_until(WAIT, |r| r.iter().any(|r| r.body.is_array())));
    let tracer = provider.tracer("test");
    let mut span = tracer
        .span_builder("GET /unsampled")
        .with_kind(SpanKind::Server)
        .start(&tracer);
    span.set_status(Status::error("boom"));
    span.end();
    assert!(fake.wait_until(WAIT, |r| r
        .iter()
        .flat_map(LiveRequest::documents)
        .any(|d| d["Name"] == "GET /unsampled")));
    provider.shutdown().unwrap();
    // Not sampled: not exported.
    assert!(ingestion.envelopes().is_empty());
    no_problems(&fake);
}
