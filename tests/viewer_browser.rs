//! The viewer's pages in a real browser: headless Chromium (Debian's `chromium`) loads each view
//! from a viewer fed by the demo's shop through real SDK pipelines, runs its script, and the test
//! asserts on the rendered DOM (`--dump-dom`).
//!
//! Without Chromium the test prints a skip line and passes, unless `CI` is set (`true`, `1`...):
//! then a missing browser fails it (`.ci/run` installs Chromium first). `CHROMIUM=/path` picks
//! the binary.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use opentelemetry_azure_monitor::testing::viewer::ViewerBuilder;
use serde_json::json;
use support::{item, live_point, post, post_live, shop};

/// How long one page load may take before the browser is killed.
const PAGE_TIMEOUT: Duration = Duration::from_secs(90);

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The Chromium binary, if one runs.
fn chromium() -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = match std::env::var_os("CHROMIUM") {
        Some(path) => vec![path.into()],
        None => ["chromium", "chromium-browser", "google-chrome"]
            .iter()
            .map(PathBuf::from)
            .collect(),
    };
    candidates.into_iter().find(|candidate| {
        Command::new(candidate)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    })
}

/// Loads `url` in headless Chromium (fresh profile, no network but loopback; with
/// `virtual_time`, 5 s of virtual time for the page's script and its polling) and returns the
/// DOM it rendered.
fn dump_dom(chromium: &PathBuf, url: &str, virtual_time: bool) -> String {
    static RUN: AtomicUsize = AtomicUsize::new(0);
    let profile = std::env::temp_dir().join(format!(
        "viewer-browser-test-{}-{}",
        std::process::id(),
        RUN.fetch_add(1, Ordering::Relaxed)
    ));
    let child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(virtual_time.then_some("--virtual-time-budget=5000"))
        .args(["--dump-dom", url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let pid = child.id();
    let (done, outcome) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    let output = match outcome.recv_timeout(PAGE_TIMEOUT) {
        Ok(output) => output.expect("chromium ran"),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            panic!("chromium did not finish loading {url} within {PAGE_TIMEOUT:?}");
        }
    };
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        output.status.success(),
        "chromium failed on {url}: {:?}",
        output.status
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Every `href="{prefix}..."` in `dom`, in order.
fn hrefs(dom: &str, prefix: &str) -> Vec<String> {
    let needle = format!("href=\"{prefix}");
    dom.match_indices(&needle)
        .map(|(at, _)| {
            let rest = &dom[at + 6..];
            rest[..rest.find('"').unwrap()].replace("&amp;", "&")
        })
        .collect()
}

#[test]
fn every_view_renders_the_shop_in_a_real_browser() {
    let Some(chromium) = chromium() else {
        assert!(
            !in_ci(),
            "CI is set but Chromium is missing: install Debian's chromium (.ci/run does), or set CHROMIUM=/path"
        );
        println!("SKIP viewer_browser: no chromium found (apt-get install chromium, or set CHROMIUM=/path); set CI=true to fail instead");
        return;
    };
    let server = ViewerBuilder::new().start().unwrap();
    shop::send(
        &server.connection_string(),
        &[17, shop::FAILING_ORDER, 99, 7],
    );
    let mut bad = item(&server, "shop.frontend", "late");
    bad["time"] = json!("2001-01-01T00:00:00Z");
    assert_eq!(
        post(&server, &serde_json::to_vec(&[bad]).unwrap(), false),
        400
    );
    let base = server.viewer_url().unwrap();
    let page = |path: &str| {
        let dom = dump_dom(
            &chromium,
            &format!("{base}{}", path.trim_start_matches('/')),
            true,
        );
        assert!(!dom.contains("Could not load this view"), "{path}: {dom}");
        dom
    };

    // The map: both roles, their dependencies, and links to the calls of each edge.
    let map = page("/map");
    for node in [
        "shop.frontend",
        "shop.inventory",
        "orders-db",
        "stock-cache",
        "(users)",
    ] {
        assert!(map.contains(node), "the map lacks {node}: {map}");
    }
    let edges = hrefs(&map, "/search?from=");
    assert!(
        edges.contains(&"/search?from=shop.frontend&to=shop.inventory".to_owned()),
        "{edges:?}"
    );
    assert!(map.contains("4 calls"), "{map}");
    let calls = page(
        &edges[edges
            .iter()
            .position(|e| e.ends_with("to=shop.inventory"))
            .unwrap()],
    );
    assert!(calls.contains("4 matching items"), "{calls}");

    // The failures lead to the failed transaction through its links.
    let failures = page("/failures");
    assert!(failures.contains("frontend::CheckoutFailed"), "{failures}");
    assert!(failures.contains("POST /checkout/{order}"), "{failures}");
    let examples = hrefs(&failures, "/transactions/");
    assert!(!examples.is_empty(), "{failures}");
    let transaction = page(&examples[0]);
    let operation = examples[0].trim_start_matches("/transactions/");
    assert!(
        transaction.contains(operation),
        "the page names its operation"
    );
    for text in [
        "shop.frontend",
        "shop.inventory",
        "POST /checkout/{order}",
        "GET /items/{id}",
        "frontend::CheckoutFailed",
        "could not reserve item 42: stock cache unavailable",
        "order 42 not placed",
        "Properties (customDimensions)",
    ] {
        assert!(
            transaction.contains(text),
            "the transaction lacks {text:?}: {transaction}"
        );
    }

    // The same transaction from the search, filtered to exceptions.
    let search = page("/search?type=exception");
    assert!(search.contains("1 matching item."), "{search}");
    assert!(
        hrefs(&search, "/transactions/").contains(&examples[0]),
        "{search}"
    );

    let overview = page("/");
    for text in [
        "shop.frontend",
        "shop.inventory",
        "POST /checkout/{order}",
        "failed requests",
    ] {
        assert!(
            overview.contains(text),
            "the overview lacks {text:?}: {overview}"
        );
    }
    assert!(overview.contains("0 evicted"), "{overview}");

    let metrics = page("/metrics");
    for text in [
        "checkout.orders",
        "inventory.reservations",
        "outcome=failed",
        "<svg",
    ] {
        assert!(
            metrics.contains(text),
            "the metrics lack {text:?}: {metrics}"
        );
    }

    let rejected = page("/rejected");
    assert!(
        rejected.contains("older than the allowed min date"),
        "{rejected}"
    );
    assert!(rejected.contains("1 rejected"), "{rejected}");

    // Without virtual time Chromium dumps the DOM as soon as the page has loaded: the first
    // rendering must be complete by then (it starts from data embedded in the page).
    let at_load = dump_dom(
        &chromium,
        &format!("{base}{}", examples[0].trim_start_matches('/')),
        false,
    );
    for text in [
        "shop.inventory",
        "frontend::CheckoutFailed",
        "could not reserve item 42",
    ] {
        assert!(
            at_load.contains(text),
            "at load, the transaction lacks {text:?}: {at_load}"
        );
    }
    let map_at_load = dump_dom(&chromium, &format!("{base}map"), false);
    assert!(
        map_at_load.contains("shop.frontend") && map_at_load.contains("stock-cache"),
        "{map_at_load}"
    );

    let missing = page("/transactions/0000");
    assert!(
        missing.contains("No item of operation 0000 is stored"),
        "{missing}"
    );
}

/// The Live metrics page: a program's posted samples as sparklines with its role, and its
/// failing documents; opening the page subscribes the programs.
#[test]
fn the_live_view_renders_posted_samples_in_a_real_browser() {
    let Some(chromium) = chromium() else {
        assert!(!in_ci(), "CI is set but Chromium is missing");
        println!("SKIP viewer_browser: no chromium found");
        return;
    };
    let server = ViewerBuilder::new().start().unwrap();
    let (status, head) = post_live(&server, "ping", b"");
    assert_eq!(status, 200);
    assert!(head.contains("x-ms-qps-subscribed: false"), "{head}");
    for _ in 0..3 {
        let body = serde_json::to_vec(&[live_point("shop.live")]).unwrap();
        assert_eq!(post_live(&server, "post", &body).0, 200);
    }
    let base = server.viewer_url().unwrap();
    for virtual_time in [false, true] {
        let dom = dump_dom(&chromium, &format!("{base}live"), virtual_time);
        assert!(!dom.contains("Could not load this view"), "{dom}");
        for text in [
            "shop.live · shop.live-1",
            "Request rate",
            "Request duration",
            "Failed requests",
            "Dependency call rate",
            "Dependency call duration",
            "Failed dependency calls",
            "Exceptions",
            "CPU",
            "Memory",
            "50.0 MiB",
            "12.5 ms",
            "GET /broken",
            "shop::Broken: it broke",
            "3 of 300 samples kept",
            r#"class="spark""#,
            r#"href="/live" aria-current="page""#,
        ] {
            assert!(dom.contains(text), "/live lacks {text:?}: {dom}");
        }
        assert!(dom.contains("Request rate: latest 3/s"), "{dom}");
        assert!(
            dom.find("Request rate").unwrap() < dom.find("Memory").unwrap(),
            "the metrics in the API's order"
        );
    }
    // The page was read: the next ping is told to post, with the default document stream.
    let (status, head) = post_live(&server, "ping", b"");
    assert_eq!(status, 200);
    assert!(head.contains("x-ms-qps-subscribed: true"), "{head}");
    assert!(
        head.contains("x-ms-qps-configuration-etag: viewer::"),
        "{head}"
    );
    // A ping without a body is known by its headers.
    assert!(server.wait_for_live(Duration::ZERO, |l| l["sources"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["role"] == "from-header")));
}
