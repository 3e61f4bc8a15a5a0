//! The viewer's JSON API, fed through real SDK pipelines and this crate's exporters (the demo's
//! shop), and through raw Track-API requests like other languages' exporters send.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use opentelemetry_azure_monitor::testing::viewer::ViewerBuilder;
use opentelemetry_azure_monitor::testing::IngestionServer;
use serde_json::{json, Value};
use support::{get_json, get_with_host, item, post, shop};

fn viewer_with_shop() -> IngestionServer {
    let server = ViewerBuilder::new().start().unwrap();
    shop::send(
        &server.connection_string(),
        &[17, shop::FAILING_ORDER, 99, 7],
    );
    assert!(server.rejected().is_empty(), "{:#?}", server.rejected());
    server
}

fn names(list: &Value, field: &str) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|v| v[field].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn map_shows_both_roles_their_calls_and_their_dependencies() {
    let server = viewer_with_shop();
    let endpoint = server.endpoint();
    let map = get_json(&endpoint, "/api/map");
    let role = |id: &str| {
        map["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no node {id}: {map:#}"))
    };
    assert_eq!(role("shop.frontend")["kind"], "role");
    assert_eq!(role("shop.inventory")["kind"], "role");
    assert_eq!(role("shop.inventory")["calls"]["count"], 4);
    assert_eq!(role("shop.inventory")["calls"]["failed"], 1);
    assert_eq!(role("(users)")["kind"], "users");
    let edge = |from: &str, to: &str| {
        map["edges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["from"] == from && e["to"] == to)
            .cloned()
            .unwrap_or_else(|| panic!("no edge {from} -> {to}: {map:#}"))
    };
    assert_eq!(edge("(users)", "shop.frontend")["calls"]["count"], 4);
    let calls = edge("shop.frontend", "shop.inventory")["calls"].clone();
    assert_eq!(
        (calls["count"].as_u64(), calls["failed"].as_u64()),
        (Some(4), Some(1))
    );
    assert!(calls["avg_ms"].as_f64().unwrap() >= 0.0);
    // The databases have no telemetry of their own: external nodes named by type and target.
    let externals: Vec<String> = map["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "external")
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        externals.iter().any(|n| n.contains("orders-db")),
        "{externals:?}"
    );
    assert!(
        externals.iter().any(|n| n.contains("stock-cache")),
        "{externals:?}"
    );

    // The edge's calls, as the map's link asks for them.
    let calls = get_json(
        &endpoint,
        "/api/search?from=shop.frontend&to=shop.inventory",
    );
    assert_eq!(calls["total"], 4);
    assert!(names(&calls["items"], "kind")
        .iter()
        .all(|k| k == "dependency"));
}

#[test]
fn a_failed_transaction_is_one_tree_across_both_roles_with_its_logs() {
    let server = viewer_with_shop();
    let endpoint = server.endpoint();
    let exceptions = get_json(&endpoint, "/api/search?type=exception");
    assert_eq!(exceptions["total"], 1, "{exceptions:#}");
    let exception = &exceptions["items"][0];
    assert_eq!(exception["role"], "shop.frontend");
    assert_eq!(exception["exception_type"], "frontend::CheckoutFailed");
    let operation = exception["operation_id"].as_str().unwrap();

    let tx = get_json(&endpoint, &format!("/api/transactions/{operation}"));
    assert_eq!(tx["operation_id"], operation);
    let items = tx["items"].as_array().unwrap();
    let row = |kind: &str, role: &str| {
        items
            .iter()
            .find(|i| i["kind"] == kind && i["role"] == role)
            .unwrap_or_else(|| panic!("no {kind} of {role}: {tx:#}"))
    };
    assert_eq!(row("request", "shop.frontend")["depth"], 0);
    assert_eq!(row("request", "shop.frontend")["success"], false);
    assert_eq!(row("dependency", "shop.frontend")["depth"], 1);
    assert_eq!(row("request", "shop.inventory")["depth"], 2);
    assert_eq!(row("request", "shop.inventory")["result_code"], "503");
    assert_eq!(row("exception", "shop.frontend")["depth"], 1);
    // The logs sit under the request they were written in.
    let log = row("trace", "shop.inventory");
    assert_eq!(log["depth"], 3);
    assert!(log["message"]
        .as_str()
        .unwrap()
        .contains("stock cache unavailable"));
    // Every item carries its envelope, for the fields and properties.
    assert!(items
        .iter()
        .all(|i| i["envelope"]["data"]["baseType"].is_string()));
    assert!(tx["end_ms"].as_f64().unwrap() >= tx["start_ms"].as_f64().unwrap());

    let (status, _) = get_with_host(&endpoint, "/api/transactions/nope", "127.0.0.1");
    assert_eq!(status, 404);
}

#[test]
fn search_filters_by_type_role_text_success_and_time() {
    let server = viewer_with_shop();
    let endpoint = server.endpoint();
    let all = get_json(&endpoint, "/api/search");
    let total = all["total"].as_u64().unwrap();
    assert!(total >= 4 * 6, "{all:#}");
    assert!(!names(&all["items"], "kind").contains(&"metric".to_owned()));
    let requests = get_json(&endpoint, "/api/search?type=request&role=shop.inventory");
    assert_eq!(requests["total"], 4);
    let failed = get_json(&endpoint, "/api/search?type=request&success=false");
    assert_eq!(failed["total"], 2); // the checkout and the inventory call of order 42
    let text = get_json(&endpoint, "/api/search?text=Order%2042%20NOT");
    assert_eq!(text["total"], 1);
    assert_eq!(text["items"][0]["kind"], "trace");
    let future = get_json(&endpoint, "/api/search?since=99999999999999");
    assert_eq!(future["total"], 0);
    let limited = get_json(&endpoint, "/api/search?limit=3");
    assert_eq!(limited["items"].as_array().unwrap().len(), 3);
    assert_eq!(limited["total"].as_u64(), Some(total));
    let (status, body) = get_with_host(&endpoint, "/api/search?type=bogus", "localhost");
    assert_eq!(status, 400, "{body}");
}

#[test]
fn overview_failures_and_metrics() {
    let server = viewer_with_shop();
    let endpoint = server.endpoint();
    let overview = get_json(&endpoint, "/api/overview");
    assert_eq!(
        names(&overview["roles"], "name"),
        ["shop.frontend", "shop.inventory"]
    );
    let minutes = overview["request_rate"].as_array().unwrap();
    assert_eq!(minutes.len(), 30);
    let requests: u64 = minutes
        .iter()
        .map(|m| m["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(requests, 8);
    assert!(names(&overview["slowest"], "name").contains(&"POST /checkout/{order}".to_owned()));

    let failures = get_json(&endpoint, "/api/failures");
    let checkout = &failures["operations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["role"] == "shop.frontend")
        .cloned()
        .unwrap();
    assert_eq!(checkout["name"], "POST /checkout/{order}");
    assert_eq!(
        (checkout["failed"].as_u64(), checkout["total"].as_u64()),
        (Some(1), Some(4))
    );
    assert_eq!(
        failures["exceptions"][0]["name"],
        "frontend::CheckoutFailed"
    );
    assert!(
        failures["exceptions"][0]["example_operation_id"]
            .as_str()
            .unwrap()
            .len()
            == 32
    );
    assert!(!failures["dependencies"].as_array().unwrap().is_empty());

    let metrics = get_json(&endpoint, "/api/metrics");
    let names = names(&metrics["metrics"], "name");
    assert!(names.contains(&"checkout.orders".to_owned()), "{names:?}");
    assert!(
        names.contains(&"inventory.reservations".to_owned()),
        "{names:?}"
    );
    assert!(!names.contains(&"_OTELRESOURCE_".to_owned()));
    let reservations = metrics["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "inventory.reservations")
        .unwrap();
    let dimensions = names_of_series(reservations);
    assert!(
        dimensions.iter().any(|d| d.contains("outcome=failed")),
        "{dimensions:?}"
    );
}

fn names_of_series(metric: &Value) -> Vec<String> {
    metric["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                s["role"].as_str().unwrap(),
                s["dimensions"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn other_exporters_gzip_arrays_and_rejections_with_their_reasons() {
    let server = ViewerBuilder::new().start().unwrap();
    let endpoint = server.endpoint();
    // As Microsoft's Python exporter sends: a gzip JSON array to /v2.1/track.
    let good = item(&server, "python-app", "hello from python");
    let mut bad = item(&server, "python-app", "no time");
    bad["time"] = json!("yesterday");
    let body = serde_json::to_vec(&json!([good, bad])).unwrap();
    let before = get_json(&endpoint, "/api/stats")["version"]
        .as_u64()
        .unwrap();
    assert_eq!(post(&server, &body, true), 206);
    // The pages poll the version to know when to refresh.
    let after = get_json(&endpoint, "/api/stats")["version"]
        .as_u64()
        .unwrap();
    assert!(after > before, "{before} -> {after}");
    assert_eq!(post(&server, b"{not json", false), 400);

    let found = get_json(&endpoint, "/api/search?role=python-app");
    assert_eq!(found["total"], 1);
    assert_eq!(found["items"][0]["message"], "hello from python");
    let rejected = get_json(&endpoint, "/api/rejected");
    let list = rejected["rejected"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{rejected:#}");
    // Newest first: the unreadable body, then the item with its bad time.
    assert_eq!(list[0]["index"], Value::Null);
    assert!(list[0]["reason"]
        .as_str()
        .unwrap()
        .contains("Invalid payload"));
    assert_eq!(list[1]["index"], 1);
    assert_eq!(list[1]["status"], 400);
    assert!(
        list[1]["reason"].as_str().unwrap().contains("'time'"),
        "{}",
        list[1]["reason"]
    );
    assert_eq!(list[1]["item"]["data"]["baseData"]["message"], "no time");
    let stats = get_json(&endpoint, "/api/stats");
    assert_eq!(
        (stats["received"].as_u64(), stats["rejected"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(stats["requests"], 2);

    // A huge refused item is kept cut, not whole.
    let mut huge = item(&server, "python-app", &"x".repeat(200_000));
    huge["time"] = json!("yesterday");
    let body = serde_json::to_vec(&json!([huge])).unwrap();
    assert_eq!(post(&server, &body, false), 400);
    let rejected = get_json(&endpoint, "/api/rejected");
    let kept = rejected["rejected"][0]["item"].as_str().unwrap();
    assert!(
        kept.len() < 5 * 1024 && kept.ends_with("bytes in all: cut by the viewer)"),
        "{}",
        kept.len()
    );
    assert!(server.rejected().last().unwrap().item.is_string());
}

#[test]
fn memory_is_bounded_and_evictions_counted() {
    let server = ViewerBuilder::new().with_capacity(5).start().unwrap();
    let endpoint = server.endpoint();
    for n in 0..12 {
        let body = serde_json::to_vec(&json!([item(&server, "r", &format!("m{n}"))])).unwrap();
        assert_eq!(post(&server, &body, n % 2 == 0), 200);
    }
    let stats = get_json(&endpoint, "/api/stats");
    assert_eq!(stats["stored"], 5);
    assert_eq!(stats["capacity"], 5);
    assert_eq!(stats["evicted"], 7);
    assert_eq!(stats["received"], 12);
    let found = get_json(&endpoint, "/api/search");
    assert_eq!(found["items"][0]["message"], "m11");
    assert_eq!(found["items"][4]["message"], "m7");
    // The server's own lists are bounded too (trimmed in batches of an eighth, at least 1).
    let bound = 5 + 1;
    assert!(server.envelopes().len() <= bound);
    assert!(server.requests().len() <= bound);
}

#[test]
fn pages_assets_and_the_loopback_guard() {
    let server = ViewerBuilder::new().start().unwrap();
    let endpoint = server.endpoint();
    assert_eq!(server.viewer_url(), Some(format!("{endpoint}/")));
    assert_eq!(IngestionServer::start().unwrap().viewer_url(), None);
    for page in [
        "/",
        "/map",
        "/search?type=request",
        "/failures",
        "/metrics",
        "/rejected",
        "/transactions/abc",
    ] {
        let (status, body) = get_with_host(&endpoint, page, "127.0.0.1");
        assert_eq!(status, 200, "{page}");
        assert!(body.contains("<main"), "{page}: {body}");
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "no remote assets"
        );
    }
    let (status, js) = get_with_host(&endpoint, "/assets/app.js", "localhost");
    assert_eq!(status, 200);
    assert!(js.contains("/api/stats"));
    assert_eq!(get_with_host(&endpoint, "/assets/app.css", "[::1]").0, 200);
    // A page elsewhere that rebinds its name to 127.0.0.1 gets nothing.
    assert_eq!(
        get_with_host(&endpoint, "/api/stats", "evil.example").0,
        421
    );
    // The track endpoint is unaffected by the guard.
    assert_eq!(get_with_host(&endpoint, "/nope", "localhost").0, 404);
    server.push_fault(opentelemetry_azure_monitor::testing::Fault::Status {
        code: 503,
        retry_after: None,
    });
    let body = serde_json::to_vec(&json!([item(&server, "r", "m")])).unwrap();
    assert_eq!(post(&server, &body, false), 503);
    // Scripted refusals are listed too, marked as such.
    let rejected = get_json(&endpoint, "/api/rejected");
    assert_eq!(rejected["rejected"][0]["scripted"], true);
    assert!(server.wait_for_requests(1, Duration::from_secs(1)));
}

/// The viewer is the programs' Live Metrics service: a real `LiveMetrics` client only pings
/// until a Live page polls, then posts one sample per interval, and `/api/live` shows its role
/// with the requests its spans made.
#[test]
fn live_metrics_post_while_the_live_page_polls_and_show_up_per_role() {
    use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _, TracerProvider as _};
    use opentelemetry::KeyValue;
    use opentelemetry_azure_monitor::{LiveMetrics, LiveMetricsIntervals};

    const WAIT: Duration = Duration::from_secs(20);
    let server = ViewerBuilder::new().start().unwrap();
    let endpoint = server.endpoint();
    let live = LiveMetrics::builder()
        .with_connection_string(server.connection_string())
        .with_intervals(LiveMetricsIntervals {
            ping: Duration::from_millis(50),
            post: Duration::from_millis(50),
            max_ping_failure: Duration::from_secs(60),
            max_post_failure: Duration::from_secs(20),
            backoff: Duration::from_secs(60),
        })
        .build()
        .unwrap();
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name("live-shop")
        .with_attribute(KeyValue::new("service.instance.id", "live-shop-1"))
        .build();
    let tracer_provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_resource(resource)
        .with_span_processor(live.span_processor())
        .build();
    let source = |l: &Value| {
        l["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["role"] == "live-shop")
            .cloned()
    };

    // Nobody watches: the program pings, is told "not subscribed", and posts nothing.
    assert!(
        server.wait_for_live(WAIT, |l| l["pings"].as_u64() >= Some(2)
            && source(l).is_some_and(|s| s["instance"] == "live-shop-1"))
    );
    assert!(server.wait_for_live(Duration::ZERO, |l| l["posts"] == 0
        && !l["watching"].as_bool().unwrap()));

    // A Live page polls: the next ping is answered "subscribed", and posts follow.
    let first = get_json(&endpoint, "/api/live");
    assert_eq!(first["watching"], true, "{first:#}");
    assert!(server.wait_for_live(WAIT, |l| l["posts"].as_u64() >= Some(1)));
    // Still watching (the page polls every second; this keeps the test independent of time).
    get_json(&endpoint, "/api/live");

    let tracer = tracer_provider.tracer("viewer-live-test");
    for code in [200_i64, 200, 500] {
        let mut span = tracer
            .span_builder("GET /orders")
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new("url.scheme", "http"),
                KeyValue::new("url.path", "/orders"),
                KeyValue::new("server.address", "shop.example"),
                KeyValue::new("http.response.status_code", code),
            ])
            .start(&tracer);
        if code >= 500 {
            span.set_status(Status::error("server error"));
        }
        span.end();
    }
    let counted = |l: &Value, key: &str| {
        source(l).is_some_and(|s| {
            s["series"][key]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v.as_f64().is_some_and(|v| v > 0.0))
        })
    };
    assert!(
        server.wait_for_live(WAIT, |l| counted(l, "request_rate")
            && counted(l, "request_failed")
            && l["documents"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["role"] == "live-shop"
                    && d["document"]["DocumentType"] == "Request"
                    && d["document"]["ResponseCode"] == "500")),
        "{:#}",
        get_json(&endpoint, "/api/live")
    );

    let snapshot = get_json(&endpoint, "/api/live");
    let s = source(&snapshot).unwrap();
    assert_eq!(s["instance"], "live-shop-1");
    assert!(s["samples"].as_u64().unwrap() >= 1);
    assert_eq!(
        s["times"].as_array().unwrap().len(),
        s["series"]["cpu"].as_array().unwrap().len()
    );
    assert!(
        s["latest"]["memory"].as_f64().is_some_and(|m| m > 0.0),
        "{s:#}"
    );
    assert_eq!(snapshot["problem_count"], 0, "{snapshot:#}");
    let keys: Vec<&str> = snapshot["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "request_rate",
            "request_duration",
            "request_failed",
            "dependency_rate",
            "dependency_duration",
            "dependency_failed",
            "exception_rate",
            "cpu",
            "memory"
        ]
    );
    // The Track API saw none of it: Live Metrics is a separate channel.
    assert!(server.requests().is_empty());
    live.shutdown().unwrap();
    drop(tracer_provider);
}
