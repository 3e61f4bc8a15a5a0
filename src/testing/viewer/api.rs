//! The viewer's routes: the JSON API over the [`Store`](super::store::Store), the embedded
//! assets, and the page paths (every page is the same HTML; its script renders the view the
//! path names).
//!
//! | Route | Answer |
//! |---|---|
//! | `GET /api/stats` | counters: `version` (changes when anything arrives), `received`, `stored`, `capacity`, `evicted`, `rejected`, `rejected_stored`, `requests` |
//! | `GET /api/overview?minutes=30` | `roles` (requests, dependencies, traces, exceptions... per role), `request_rate` (per minute), `slowest` operations |
//! | `GET /api/map` | `nodes` (`id`, `kind`: `role`, `external` or `users`, `calls`, `exceptions`, `instances`) and `edges` (`from`, `to`, `calls`: `count`, `failed`, `avg_ms`) |
//! | `GET /api/search?type=&role=&text=&success=&since=&from=&to=&operation=&exception=&limit=` | `total` and `items`, newest first |
//! | `GET /api/transactions/{operation id}` | `operation_id`, `start_ms`, `end_ms`, `items` in tree order, each with `depth` and its `envelope` |
//! | `GET /api/failures` | `operations`, `exceptions`, `dependencies`: failure groups |
//! | `GET /api/metrics` | `metrics`: `name`, `series` (`role`, `dimensions`, `points`: `t`, `value`, `count`, `min`, `max`) |
//! | `GET /api/rejected` | `rejected`: `status`, `reason`, `index`, `item`, newest first |
//! | `GET /api/live` | Live Metrics (reading it counts as watching: programs post for the next 10 s): `watching`, `metrics` (`key`, `label`, `unit`, `name`), `sources` per role and instance (`role`, `instance`, `stream_id`, `machine`, `last_ping_ms`, `last_post_ms`, `samples`, `evicted`, `times`, `series` and `latest` per metric key), `documents` newest first (`t`, `role`, `instance`, `document`), `problems`, counters |
//!
//! `since` is milliseconds since the Unix epoch; `success` is `true` or `false`; `type` is
//! `request`, `dependency`, `trace`, `exception`, `event`, `metric`, `pageview`, `availability`;
//! `from`/`to` select the calls of one application-map edge.

use serde_json::{json, Value};

use super::live::Live;
use super::store::{Filter, Kind, Store};

/// The page every view path serves.
const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// Paths that are pages (the script reads the path to know which view to render).
const PAGES: &[&str] = &[
    "/",
    "/map",
    "/search",
    "/failures",
    "/metrics",
    "/rejected",
    "/live",
];

/// Largest `limit` a search honours.
const MAX_LIMIT: usize = 1000;

/// An answer: status, content type, body.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) content_type: &'static str,
    pub(crate) body: String,
}

impl Reply {
    fn json(value: &impl serde::Serialize) -> Reply {
        match serde_json::to_string(value) {
            Ok(body) => Reply {
                status: 200,
                content_type: "application/json; charset=utf-8",
                body,
            },
            Err(e) => Reply::error(500, &format!("could not encode the answer: {e}")),
        }
    }

    fn error(status: u16, message: &str) -> Reply {
        Reply {
            status,
            content_type: "application/json; charset=utf-8",
            body: json!({ "error": message }).to_string(),
        }
    }

    fn asset(content_type: &'static str, body: &str) -> Reply {
        Reply {
            status: 200,
            content_type,
            body: body.to_owned(),
        }
    }
}

/// Answers a viewer request (`GET` or `HEAD` of `path?query`).
pub(crate) fn route(
    store: &Store,
    live: &Live,
    method: &str,
    path: &str,
    query: &str,
    now_ms: i64,
) -> Reply {
    if method != "GET" && method != "HEAD" {
        return Reply::error(
            405,
            "The viewer answers GET only; telemetry goes to POST /v2.1/track",
        );
    }
    let params = parse_query(query);
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.clone())
    };
    match path {
        "/assets/app.js" => Reply::asset("text/javascript; charset=utf-8", APP_JS),
        "/assets/app.css" => Reply::asset("text/css; charset=utf-8", APP_CSS),
        "/api/stats" => Reply::json(&store.stats()),
        "/api/overview" => {
            let minutes = param("minutes")
                .and_then(|m| m.parse::<usize>().ok())
                .unwrap_or(30)
                .clamp(1, 24 * 60);
            Reply::json(&store.overview(now_ms, minutes))
        }
        "/api/map" => Reply::json(&store.map()),
        "/api/live" => Reply::json(&live.snapshot(now_ms)),
        "/api/failures" => Reply::json(&store.failures()),
        "/api/metrics" => Reply::json(&json!({ "metrics": store.metrics() })),
        "/api/rejected" => {
            let rejected: Vec<_> = store.rejected().rev().collect();
            Reply::json(&json!({ "rejected": rejected }))
        }
        "/api/search" => {
            let kind = match param("type") {
                Some(name) => match Kind::parse(&name) {
                    Some(kind) => Some(kind),
                    None => return Reply::error(400, &format!("Unknown type {name:?}: use request, dependency, trace, exception, event, metric, pageview or availability")),
                },
                None => None,
            };
            let success = match param("success").as_deref() {
                None => None,
                Some("true") => Some(true),
                Some("false") => Some(false),
                Some(_) => return Reply::error(400, "success must be true or false"),
            };
            let since_ms = match param("since") {
                None => None,
                Some(t) => match t.parse::<i64>() {
                    Ok(t) => Some(t),
                    Err(_) => {
                        return Reply::error(400, "since must be milliseconds since the Unix epoch")
                    }
                },
            };
            let edge = match (param("from"), param("to")) {
                (Some(from), Some(to)) => Some((from, to)),
                (None, None) => None,
                _ => return Reply::error(400, "from and to select an edge: give both"),
            };
            let filter = Filter {
                kind,
                role: param("role"),
                text: param("text"),
                success,
                since_ms,
                edge,
                operation_name: param("operation"),
                exception_type: param("exception"),
                limit: param("limit")
                    .and_then(|l| l.parse::<usize>().ok())
                    .unwrap_or(200)
                    .min(MAX_LIMIT),
            };
            let (total, items) = store.search(&filter);
            Reply::json(&json!({ "total": total, "items": items }))
        }
        _ => {
            if let Some(id) = path.strip_prefix("/api/transactions/") {
                let id = percent_decode(id);
                return match store.transaction(&id) {
                    Some(tx) => {
                        let items: Vec<Value> = tx
                            .rows
                            .iter()
                            .map(|(depth, item)| {
                                let mut value = serde_json::to_value(item).unwrap_or(Value::Null);
                                value["depth"] = json!(depth);
                                value["envelope"] = item.envelope.clone();
                                value
                            })
                            .collect();
                        Reply::json(&json!({
                            "operation_id": tx.operation_id,
                            "start_ms": tx.start_ms,
                            "end_ms": tx.end_ms,
                            "items": items,
                        }))
                    }
                    None => Reply::error(
                        404,
                        &format!(
                            "No item of operation {id:?} is stored (never received, or evicted)"
                        ),
                    ),
                };
            }
            if PAGES.contains(&path) || path.starts_with("/transactions/") {
                return page(store, live, path, &params, now_ms);
            }
            Reply::error(404, "Not found")
        }
    }
}

/// A page: the HTML with the data its view starts from (the counters and the view's API
/// answer, as `/api/...` would give them) in a `<script type="application/json">` block, so
/// that the first rendering needs no request and is complete when the page has loaded.
fn page(store: &Store, live: &Live, path: &str, params: &[(String, String)], now_ms: i64) -> Reply {
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    };
    let (api_path, query) = match path {
        "/" => ("/api/overview".to_owned(), "minutes=30".to_owned()),
        "/search" => {
            // The same filters the page's script sends, `minutes` turned into `since`.
            let mut query: Vec<String> = [
                "type",
                "role",
                "text",
                "success",
                "from",
                "to",
                "operation",
                "exception",
            ]
            .iter()
            .filter_map(|name| param(name).map(|v| format!("{name}={}", percent_encode(v))))
            .collect();
            if let Some(minutes) = param("minutes").and_then(|m| m.parse::<i64>().ok()) {
                query.push(format!(
                    "since={}",
                    now_ms.saturating_sub(minutes.saturating_mul(60_000))
                ));
            }
            ("/api/search".to_owned(), query.join("&"))
        }
        _ => match path.strip_prefix("/transactions/") {
            Some(id) => (format!("/api/transactions/{id}"), String::new()),
            None => (format!("/api{path}"), String::new()),
        },
    };
    let view = route(store, live, "GET", &api_path, &query, now_ms);
    let stats = route(store, live, "GET", "/api/stats", "", now_ms);
    let mut preload = format!(
        r#"{{"stats":{},"view":{{"status":{},"body":{}}}"#,
        stats.body, view.status, view.body
    );
    if path == "/search" {
        let roles = route(store, live, "GET", "/api/overview", "minutes=1", now_ms);
        preload.push_str(&format!(r#","roles":{}"#, roles.body));
    }
    preload.push('}');
    // `<` only occurs inside JSON strings, where `\u003c` means the same: the block cannot end
    // early whatever the telemetry says.
    let preload = preload.replace('<', "\\u003c");
    let html = INDEX_HTML.replace(
        "<!--preload-->",
        &format!(r#"<script type="application/json" id="preload">{preload}</script>"#),
    );
    Reply {
        status: 200,
        content_type: "text/html; charset=utf-8",
        body: html,
    }
}

/// Percent-encodes everything but unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Whether a `Host` header names the loopback interface (`127.0.0.1`, `localhost`, `[::1]`,
/// with or without a port). A loopback-bound viewer answers only those, so that a web page
/// elsewhere cannot read it through DNS rebinding.
pub(crate) fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `a=1&b=x%20y` as pairs, percent- and `+`-decoded.
pub(crate) fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (
                percent_decode(&k.replace('+', " ")),
                percent_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}

/// Decodes `%XX` escapes (invalid UTF-8 is replaced; malformed escapes are kept as they are).
pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode() {
        assert_eq!(
            parse_query("a=1&text=x%20y+z&b&=&c=%zz%4"),
            [
                ("a".into(), "1".into()),
                ("text".into(), "x y z".into()),
                ("b".into(), String::new()),
                (String::new(), String::new()),
                ("c".into(), "%zz%4".into())
            ]
        );
        assert_eq!(percent_decode("%C3%A9t%C3%A9"), "été");
        assert_eq!(percent_decode("%"), "%");
        let text = "a b&c=d/é%";
        assert_eq!(percent_decode(&percent_encode(text)), text);
    }

    #[test]
    fn hosts() {
        for host in [
            "127.0.0.1:8080",
            "localhost",
            "LOCALHOST:1",
            "[::1]:9",
            "127.1.2.3",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in ["evil.example:8080", "192.168.1.2", "[fe80::1]:3", ""] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn routes() {
        let store = Store::new(10, 10);
        let live = Live::default();
        assert_eq!(
            route(&store, &live, "POST", "/api/stats", "", 0).status,
            405
        );
        assert_eq!(route(&store, &live, "GET", "/api/stats", "", 0).status, 200);
        assert_eq!(route(&store, &live, "GET", "/nope", "", 0).status, 404);
        assert_eq!(
            route(&store, &live, "GET", "/api/transactions/x", "", 0).status,
            404
        );
        assert_eq!(
            route(&store, &live, "GET", "/api/search", "type=bogus", 0).status,
            400
        );
        assert_eq!(
            route(&store, &live, "GET", "/api/search", "from=a", 0).status,
            400
        );
        let page = route(&store, &live, "GET", "/transactions/abc", "", 0);
        assert!(page.content_type.starts_with("text/html"));
        assert!(
            page.body.contains(r#""view":{"status":404"#),
            "{}",
            page.body
        );
        let search = route(
            &store,
            &live,
            "GET",
            "/search",
            "text=%3C/script%3E&minutes=5",
            600_000,
        );
        assert!(search.body.contains(r#""roles":{"#), "{}", search.body);
        assert!(!search.body.contains("</script></script>"));
        for page in PAGES {
            let reply = route(&store, &live, "GET", page, "", 0);
            assert!(reply.body.contains(r#"id="preload">{"stats":{"#), "{page}");
            assert!(reply.body.contains(r#""view":{"status":200"#), "{page}");
        }
    }
}
