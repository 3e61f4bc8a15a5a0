#![allow(clippy::unwrap_used)]

use serde_json::json;

use super::*;

fn request<'a>(name: &'a str, code: &'a str, success: bool, ms: f64) -> Item<'a> {
    Item {
        kind: Kind::Request,
        name,
        url: "http://shop.example/orders?id=1",
        code,
        success,
        duration_ms: ms,
        ..Item::default()
    }
}

fn engine(config: serde_json::Value) -> Engine {
    let mut e = Engine::default();
    e.apply("1::abc::2::", config.to_string().as_bytes());
    e
}

fn filter(field: &str, predicate: &str, comparand: &str, kind: Kind) -> Result<Filter, String> {
    Filter::parse(
        &FilterInfo {
            field_name: field.into(),
            predicate: predicate.into(),
            comparand: comparand.into(),
        },
        kind,
    )
}

/// The SPEC Post example's default configuration.
pub(crate) fn default_stream() -> serde_json::Value {
    let empty = json!({"Filters": []});
    let failed =
        json!({"Filters": [{"FieldName": "Success", "Predicate": "Equal", "Comparand": "False"}]});
    json!({
        "ETag": "1::abc::2::",
        "Metrics": [],
        "DocumentStreams": [{
            "Id": "all-types-default",
            "DocumentFilterGroups": [
                {"TelemetryType": "Request", "Filters": failed},
                {"TelemetryType": "Dependency", "Filters": failed},
                {"TelemetryType": "Exception", "Filters": empty},
                {"TelemetryType": "Event", "Filters": empty},
                {"TelemetryType": "Trace", "Filters": empty}
            ]
        }],
        "QuotaInfo": null
    })
}

#[test]
fn durations_parse_as_the_js_exporter_does() {
    assert_eq!(duration_ms("14.6:56:7.89"), Some(1_234_567_890.0));
    assert_eq!(duration_ms("0.0:0:0.2"), Some(200.0));
    assert_eq!(duration_ms("0.0:0:10"), Some(10_000.0));
    assert_eq!(duration_ms("0:0:1"), Some(1_000.0));
    assert_eq!(duration_ms("x"), None);
    assert_eq!(duration_ms("1:2"), None);
    assert_eq!(duration_ms("1:2:3:4"), None);
    assert_eq!(duration_ms("0.0:0:-1"), None);
}

#[test]
fn validation_follows_the_validator() {
    use Kind::*;
    let ok = [
        ("Url", "Contains", "orders", Request),
        ("Duration", "GreaterThan", "0.0:0:10", Request),
        ("ResponseCode", "GreaterThanOrEqual", "500", Request),
        ("Success", "Equal", "False", Request),
        ("Success", "NotEqual", "true", Dependency),
        ("Name", "Equal", "GET /", Dependency),
        ("ResultCode", "LessThan", "400", Dependency),
        ("Target", "DoesNotContain", "db", Dependency),
        ("Type", "Equal", "HTTP", Dependency),
        ("Data", "Contains", "select", Dependency),
        ("Exception.Message", "Contains", "boom", Exception),
        ("Exception.StackTrace", "Contains", "main", Exception),
        ("Message", "NotEqual", "x", Trace),
        ("*", "Contains", "x", Trace),
        ("*", "DoesNotContain", "x", Request),
        ("CustomDimensions.tenant", "Equal", "a", Exception),
    ];
    for (f, p, c, k) in ok {
        assert!(filter(f, p, c, k).is_ok(), "{f} {p} {c} {k:?}");
    }
    let bad = [
        ("Url", "Contains", "", Request),
        ("Url", "Matches", "x", Request),
        ("Url", "GreaterThan", "x", Request),
        ("Message", "Contains", "x", Request),
        ("Url", "Contains", "x", Dependency),
        ("Exception.Message", "Contains", "x", Trace),
        ("*", "Equal", "x", Request),
        ("Duration", "Contains", "x", Request),
        ("Duration", "GreaterThan", "ten seconds", Request),
        ("ResponseCode", "Equal", "abc", Request),
        ("ResultCode", "DoesNotContain", "5", Dependency),
        ("Success", "GreaterThan", "true", Request),
        ("Success", "Equal", "yes", Request),
        ("CustomDimensions.k", "LessThan", "3", Request),
        ("CustomDimensions.", "Equal", "3", Request),
        ("CustomMetrics.m", "Equal", "3", Request),
    ];
    for (f, p, c, k) in bad {
        assert!(filter(f, p, c, k).is_err(), "{f} {p} {c} {k:?}");
    }
}

#[test]
fn matching_has_the_js_semantics() {
    let mut item = request("GET /orders", "503", false, 12_000.0);
    item.properties = vec![("tenant", "Contoso"), ("region", "eu")];
    let m = |f: &str, p: &str, c: &str| filter(f, p, c, Kind::Request).unwrap().matches(&item);
    // Success compares booleans, the comparand case-insensitively.
    assert!(m("Success", "Equal", "False"));
    assert!(!m("Success", "Equal", "TRUE"));
    assert!(m("Success", "NotEqual", "true"));
    // Numbers, Duration in ms.
    assert!(m("ResponseCode", "Equal", "503"));
    assert!(m("ResponseCode", "GreaterThanOrEqual", "500"));
    assert!(!m("ResponseCode", "LessThan", "500"));
    assert!(m("Duration", "GreaterThan", "0.0:0:10"));
    assert!(!m("Duration", "GreaterThan", "0.0:0:12"));
    assert!(m("Duration", "LessThanOrEqual", "0.0:0:12"));
    // Strings: Equal case-sensitive, Contains case-insensitive.
    assert!(m("Name", "Equal", "GET /orders"));
    assert!(!m("Name", "Equal", "get /orders"));
    assert!(m("Name", "NotEqual", "get /orders"));
    assert!(m("Url", "Contains", "SHOP.example"));
    assert!(m("Url", "DoesNotContain", "basket"));
    // Custom dimensions: absent is false.
    assert!(m("CustomDimensions.tenant", "Equal", "Contoso"));
    assert!(!m("CustomDimensions.tenant", "Equal", "contoso"));
    assert!(m("CustomDimensions.tenant", "Contains", "conto"));
    assert!(!m("CustomDimensions.missing", "NotEqual", "x"));
    // Any field, and any custom dimension value.
    assert!(m("*", "Contains", "orders"));
    assert!(m("*", "Contains", "503"));
    assert!(m("*", "Contains", "12000"));
    assert!(m("*", "Contains", "false"));
    assert!(m("*", "Contains", "EU"));
    assert!(!m("*", "Contains", "nowhere"));
    // A code that is not a number equals nothing.
    let odd = request("x", "abc", true, 1.0);
    let f = filter("ResponseCode", "Equal", "0", Kind::Request).unwrap();
    assert!(!f.matches(&odd));
    let f = filter("ResponseCode", "NotEqual", "0", Kind::Request).unwrap();
    assert!(f.matches(&odd));
}

#[test]
fn groups_and_inside_or_across() {
    let e = engine(json!({
        "Metrics": [{
            "Id": "m",
            "TelemetryType": "Request",
            "FilterGroups": [
                {"Filters": [
                    {"FieldName": "Name", "Predicate": "Contains", "Comparand": "orders"},
                    {"FieldName": "Success", "Predicate": "Equal", "Comparand": "false"}
                ]},
                {"Filters": [{"FieldName": "ResponseCode", "Predicate": "Equal", "Comparand": "418"}]}
            ],
            "Projection": "Count()",
            "Aggregation": "Sum"
        }],
        "DocumentStreams": []
    }));
    let mut e = e;
    // Only the second filter of the first group fails: the AND is evaluated (the PY bug is not).
    e.observe(&request("GET /orders", "200", true, 1.0));
    e.observe(&request("GET /orders", "500", false, 1.0));
    e.observe(&request("GET /tea", "418", true, 1.0));
    e.observe(&request("GET /tea", "200", true, 1.0));
    assert_eq!(e.take().metrics, vec![("m".to_owned(), 2.0)]);
    // The window was reset.
    assert_eq!(e.take().metrics, vec![("m".to_owned(), 0.0)]);
}

#[test]
fn the_spec_derived_metric_averages_only_the_matching_items() {
    let mut e = engine(json!({
        "ETag": "1::abc::2::",
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
    }));
    let dims = vec![("UXCustomFilterKey", "UXCustomFilterValue")];
    let mut slow = request("a", "200", true, 12_000.0);
    slow.properties = dims.clone();
    let mut slower = request("a", "200", true, 14_000.0);
    slower.properties = dims.clone();
    let mut fast = request("a", "200", true, 500.0);
    fast.properties = dims;
    let unmarked = request("a", "200", true, 30_000.0);
    for i in [&slow, &slower, &fast, &unmarked] {
        e.observe(i);
    }
    let w = e.take();
    assert_eq!(w.metrics, vec![("141.8a7513a4".to_owned(), 13_000.0)]);
    assert!(w.errors.is_empty(), "{:?}", w.errors);
    // A quiet second sends 0.
    assert_eq!(e.take().metrics, vec![("141.8a7513a4".to_owned(), 0.0)]);
    assert_eq!(e.etag(), "1::abc::2::");
}

#[test]
fn aggregations_and_custom_projections() {
    let metric = |id: &str, agg: &str| {
        json!({"Id": id, "TelemetryType": "Trace", "FilterGroups": [{"Filters": []}],
               "Projection": "CustomDimensions.size", "Aggregation": agg})
    };
    let mut e = engine(json!({
        "Metrics": [metric("sum", "Sum"), metric("min", "Min"), metric("max", "Max"), metric("avg", "Avg")],
        "DocumentStreams": []
    }));
    for size in ["4", "-2", "10", "not a number"] {
        e.observe(&Item {
            kind: Kind::Trace,
            message: "m",
            properties: vec![("size", size)],
            ..Item::default()
        });
    }
    e.observe(&Item {
        kind: Kind::Trace,
        ..Item::default()
    });
    let w = e.take();
    let values: Vec<f64> = w.metrics.iter().map(|(_, v)| *v).collect();
    assert_eq!(values, vec![12.0, -2.0, 10.0, 4.0]);
    // One run-time error per metric, cleared after the post.
    assert_eq!(w.errors.len(), 4);
    assert!(w
        .errors
        .iter()
        .all(|e| e.collection_configuration_error_type == "MetricFailureToCreate"));
    assert!(e.take().errors.is_empty());
}

#[test]
fn invalid_configurations_are_reported_with_their_ids_and_etag() {
    let mut e = engine(json!({
        "Metrics": [
            {"Id": "pc", "TelemetryType": "PerformanceCounter", "FilterGroups": [], "Projection": "Count()", "Aggregation": "Sum"},
            {"Id": "ok", "TelemetryType": "Request", "FilterGroups": [], "Projection": "Count()", "Aggregation": "Sum"},
            {"Id": "ok", "TelemetryType": "Request", "FilterGroups": [], "Projection": "Count()", "Aggregation": "Sum"},
            {"Id": "bad-filter", "TelemetryType": "Request", "FilterGroups": [{"Filters": [{"FieldName": "Url", "Predicate": "LessThan", "Comparand": "x"}]}], "Projection": "Count()", "Aggregation": "Sum"},
            {"Id": "bad-projection", "TelemetryType": "Trace", "FilterGroups": [], "Projection": "Duration", "Aggregation": "Sum"},
            {"Id": "custom-metric", "TelemetryType": "Trace", "FilterGroups": [], "Projection": "CustomMetrics.x", "Aggregation": "Sum"},
            {"Id": "bad-aggregation", "TelemetryType": "Trace", "FilterGroups": [], "Projection": "Count()", "Aggregation": "Median"}
        ],
        "DocumentStreams": [
            {"Id": "s1", "DocumentFilterGroups": [
                {"TelemetryType": "Request", "Filters": {"Filters": [{"FieldName": "Duration", "Predicate": "Contains", "Comparand": "x"}]}},
                {"TelemetryType": "Metric", "Filters": {"Filters": []}},
                {"TelemetryType": "Trace", "Filters": {"Filters": []}}
            ]},
            {"Id": "s1", "DocumentFilterGroups": []}
        ]
    }));
    let w = e.take();
    let kinds: Vec<(&str, &str)> = w
        .errors
        .iter()
        .map(|e| {
            (
                e.collection_configuration_error_type,
                e.data[0].value.as_str(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("MetricTelemetryTypeUnsupported", "pc"),
            ("MetricDuplicateIds", "ok"),
            ("MetricFailureToCreateFilterUnexpected", "bad-filter"),
            ("MetricFailureToCreate", "bad-projection"),
            ("MetricFailureToCreate", "custom-metric"),
            ("MetricFailureToCreate", "bad-aggregation"),
            ("DocumentStreamFailureToCreateFilterUnexpected", "s1"),
            ("CollectionConfigurationFailureToCreateUnexpected", "s1"),
            ("DocumentStreamDuplicateIds", "s1"),
        ]
    );
    for err in &w.errors {
        let keys: Vec<&str> = err.data.iter().map(|d| d.key.as_str()).collect();
        assert!(keys == ["MetricId", "ETag"] || keys == ["DocumentStreamInfoId", "ETag"]);
        assert_eq!(err.data[1].value, "1::abc::2::");
        assert!(!err.message.is_empty());
    }
    // Validation errors stay until the next configuration; the valid parts work.
    assert_eq!(e.take().errors.len(), 9);
    assert_eq!(w.metrics, vec![("ok".to_owned(), 0.0)]);
    assert!(e.wants(Kind::Trace));
    assert!(e.wants(Kind::Request));
    assert!(!e.wants(Kind::Dependency));
    e.apply("2", b"{\"Metrics\":[],\"DocumentStreams\":[]}");
    assert!(e.take().errors.is_empty());
    // A body that is not a configuration.
    e.apply("3", b"<html>");
    let w = e.take();
    assert_eq!(
        w.errors[0].collection_configuration_error_type,
        "CollectionConfigurationFailureToCreateUnexpected"
    );
}

#[test]
fn documents_only_for_the_streams_that_ask_within_their_quota() {
    let mut e = engine(default_stream());
    assert!(!e.wants(Kind::Dependency) || e.wants(Kind::Dependency));
    e.observe(&request("GET /ok", "200", true, 1.0));
    e.observe(&request("GET /fail", "500", false, 1.0));
    e.observe(&Item {
        kind: Kind::Exception,
        message: "boom",
        exception_type: "Panic",
        ..Item::default()
    });
    let w = e.take();
    let types: Vec<&str> = w.documents.iter().map(|d| d.document_type).collect();
    assert_eq!(types, vec!["Request", "Exception"]);
    assert_eq!(
        w.documents[0].document_stream_ids,
        vec!["all-types-default"]
    );
    // Quota: 3 at first (2 Request tokens left), then max/60 = 0.5 a second.
    for _ in 0..5 {
        e.observe(&request("GET /fail", "500", false, 1.0));
    }
    assert_eq!(e.take().documents.len(), 2);
    e.accrue(1);
    e.observe(&request("GET /fail", "500", false, 1.0));
    assert_eq!(e.take().documents.len(), 0);
    e.accrue(1);
    e.observe(&request("GET /fail", "500", false, 1.0));
    assert_eq!(e.take().documents.len(), 1);
    // A stream with no group for a type collects nothing of it (NET).
    let mut e = engine(json!({"Metrics": [], "DocumentStreams": [
        {"Id": "only-traces", "DocumentFilterGroups": [{"TelemetryType": "Trace", "Filters": {"Filters": []}}]}
    ]}));
    e.observe(&request("GET /fail", "500", false, 1.0));
    assert!(e.take().documents.is_empty());
    // Without a configuration, nothing.
    let mut e = Engine::default();
    e.observe(&request("GET /fail", "500", false, 1.0));
    assert!(e.take().documents.is_empty());
}

#[test]
fn quota_info_sets_the_buckets_and_two_streams_share_a_document() {
    let stream = |id: &str| {
        json!({"Id": id, "DocumentFilterGroups": [{"TelemetryType": "Trace", "Filters": {"Filters": [
            {"FieldName": "Message", "Predicate": "Contains", "Comparand": "x"}]}}]})
    };
    let mut e = engine(
        json!({"Metrics": [], "DocumentStreams": [stream("a"), stream("b")],
        "QuotaInfo": {"InitialQuota": 1, "MaxQuota": 2, "QuotaAccrualRatePerSec": 1}}),
    );
    let trace = |m| Item {
        kind: Kind::Trace,
        message: m,
        ..Item::default()
    };
    e.observe(&trace("x1"));
    e.observe(&trace("x2"));
    e.observe(&trace("nope"));
    let w = e.take();
    assert_eq!(w.documents.len(), 1);
    assert_eq!(w.documents[0].document_stream_ids, vec!["a", "b"]);
    e.accrue(10);
    for _ in 0..5 {
        e.observe(&trace("x"));
    }
    assert_eq!(e.take().documents.len(), 2);
}

#[test]
fn reset_forgets_everything() {
    let mut e = engine(default_stream());
    e.observe(&request("GET /fail", "500", false, 1.0));
    e.reset();
    assert_eq!(e.etag(), "");
    assert!(!e.wants(Kind::Request));
    let w = e.take();
    assert!(w.documents.is_empty() && w.errors.is_empty() && w.metrics.is_empty());
}

proptest::proptest! {
    #[test]
    fn any_configuration_body_is_safe(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
        let mut e = Engine::default();
        e.apply("x", &body);
        e.observe(&request("a", "1", true, 1.0));
        let _ = e.take();
    }

    #[test]
    fn any_duration_text_is_safe(s in ".{0,20}") {
        let _ = duration_ms(&s);
    }
}
