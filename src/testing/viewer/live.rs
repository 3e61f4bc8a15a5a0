//! The viewer's Live Metrics: the server plays the Live Metrics (QuickPulse) service for the
//! programs that send to it (LIVE-METRICS.md §1–§3), and keeps what they post for the `/live`
//! page.
//!
//! - A program pings `/QuickPulseService.svc/ping` and is answered `x-ms-qps-subscribed: true`
//!   only while someone watches: a viewer's Live page (or `/api/live`) was read within the last
//!   [`WATCH_MS`]. Otherwise `false`, so idle programs only ping, as with the real service when
//!   no portal session is open.
//! - While subscribed, the answer carries the service's default configuration (the SPEC Post
//!   example's stream `all-types-default`: failed requests and dependencies, exceptions,
//!   traces), so that the programs send those documents (§8 **R**: a client sends only what a
//!   stream asks for).
//! - Each posted `MonitoringDataPoint` becomes one sample in a bounded ring per
//!   (role, instance), oldest evicted first and counted; its documents go to one bounded list.
//! - Bodies are parsed defensively: what cannot be read is listed as a problem, never a panic.
//!
//! Pure: the server's handler passes the headers and the decoded body in, the time as an
//! argument; `/api/live` reads [`Live::snapshot`].

use std::collections::{BTreeMap, VecDeque};

use serde_json::{json, Map, Value};

/// How long a read of the Live page keeps the programs subscribed (ms).
pub(crate) const WATCH_MS: i64 = 10_000;
/// One-second samples kept per (role, instance): five minutes.
const SAMPLES_PER_SOURCE: usize = 300;
/// (role, instance) pairs kept; beyond it the one heard from least recently is evicted.
const MAX_SOURCES: usize = 64;
/// Documents kept (all sources together).
const DOCUMENTS: usize = 200;
/// Documents `/api/live` lists.
const API_DOCUMENTS: usize = 50;
/// Samples per source `/api/live` returns (the latest).
const API_SAMPLES: usize = 60;
/// Problems kept.
const PROBLEMS: usize = 50;
/// The configuration ETag the viewer answers with while subscribed.
pub(crate) const ETAG: &str = "viewer::all-types-default::1";

/// The metrics the page shows: key, label, unit, and the names a data point may carry them
/// under, preferred first (CPU and memory are sent under a new and an old name, §7).
pub(crate) const METRICS: [(&str, &str, &str, &[&str]); 9] = [
    (
        "request_rate",
        "Request rate",
        "/s",
        &[r"\ApplicationInsights\Requests/Sec"],
    ),
    (
        "request_duration",
        "Request duration",
        "ms",
        &[r"\ApplicationInsights\Request Duration"],
    ),
    (
        "request_failed",
        "Failed requests",
        "/s",
        &[r"\ApplicationInsights\Requests Failed/Sec"],
    ),
    (
        "dependency_rate",
        "Dependency call rate",
        "/s",
        &[r"\ApplicationInsights\Dependency Calls/Sec"],
    ),
    (
        "dependency_duration",
        "Dependency call duration",
        "ms",
        &[r"\ApplicationInsights\Dependency Call Duration"],
    ),
    (
        "dependency_failed",
        "Failed dependency calls",
        "/s",
        &[r"\ApplicationInsights\Dependency Calls Failed/Sec"],
    ),
    (
        "exception_rate",
        "Exceptions",
        "/s",
        &[r"\ApplicationInsights\Exceptions/Sec"],
    ),
    (
        "cpu",
        "CPU",
        "%",
        &[
            r"\% Process\Processor Time Normalized",
            r"\Processor(_Total)\% Processor Time",
        ],
    ),
    (
        "memory",
        "Memory",
        "bytes",
        &[r"\Process\Physical Bytes", r"\Memory\Committed Bytes"],
    ),
];

/// The two Live Metrics operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Operation {
    /// `…/ping`: one optional data point, identity in the headers too.
    Ping,
    /// `…/post`: an array of data points.
    Post,
}

/// What the server answers a ping or post with.
#[derive(Debug, PartialEq)]
pub(crate) struct Answer {
    /// `x-ms-qps-subscribed`.
    pub(crate) subscribed: bool,
    /// `x-ms-qps-configuration-etag` and the `CollectionConfigurationInfo` body, when
    /// subscribed.
    pub(crate) configuration: Option<(&'static str, String)>,
}

/// One data point as read from a body.
#[derive(Debug, PartialEq)]
pub(crate) struct Point {
    pub(crate) role: String,
    pub(crate) instance: String,
    pub(crate) stream_id: String,
    pub(crate) machine: String,
    /// Values in [`METRICS`] order.
    pub(crate) values: [Option<f64>; METRICS.len()],
    pub(crate) documents: Vec<Value>,
}

/// Reads a ping or post body (already decoded) into data points, with the headers as the
/// identity's fallback (a ping's `x-ms-qps-role-name` and the like; NET sends no ping body).
/// Returns the points and the problems found; never fails.
pub(crate) fn parse(
    operation: Operation,
    headers: &[(String, String)],
    body: &[u8],
) -> (Vec<Point>, Vec<String>) {
    let mut problems = Vec::new();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let text = String::from_utf8_lossy(body);
    let text = text.trim_start_matches('\u{feff}').trim();
    let value = if text.is_empty() {
        Value::Null
    } else {
        match serde_json::from_str::<Value>(text) {
            Ok(value) => value,
            Err(e) => {
                problems.push(format!("{operation:?} body is not JSON: {e}"));
                return (Vec::new(), problems);
            }
        }
    };
    let raw: Vec<&Value> = match (operation, &value) {
        (Operation::Ping, Value::Object(_)) => vec![&value],
        (Operation::Ping, Value::Null) => Vec::new(),
        (Operation::Post, Value::Array(points)) => points.iter().collect(),
        (Operation::Ping, _) => {
            problems.push("the ping body is not one MonitoringDataPoint object".to_owned());
            Vec::new()
        }
        (Operation::Post, _) => {
            problems.push("the post body is not an array of MonitoringDataPoint".to_owned());
            Vec::new()
        }
    };
    let mut points = Vec::new();
    for p in raw {
        if !p.is_object() {
            problems.push(format!(
                "a data point is not an object: {}",
                shorten(&p.to_string())
            ));
            continue;
        }
        let text = |field: &str, fallback: &str| {
            p[field]
                .as_str()
                .or_else(|| header(fallback))
                .unwrap_or_default()
                .chars()
                .take(1024)
                .collect::<String>()
        };
        let mut values = [None; METRICS.len()];
        let metrics = match &p["Metrics"] {
            Value::Array(metrics) => metrics.as_slice(),
            Value::Null => &[],
            other => {
                problems.push(format!(
                    "Metrics is not an array: {}",
                    shorten(&other.to_string())
                ));
                &[]
            }
        };
        for m in metrics {
            let (Some(name), Some(value)) = (m["Name"].as_str(), m["Value"].as_f64()) else {
                problems.push(format!(
                    "a metric is not {{Name, Value, Weight}}: {}",
                    shorten(&m.to_string())
                ));
                continue;
            };
            for (slot, (_, _, _, names)) in values.iter_mut().zip(METRICS.iter()) {
                if let Some(rank) = names.iter().position(|n| *n == name) {
                    // The preferred (first) name wins over an old one.
                    if slot.is_none() || rank == 0 {
                        *slot = Some(value);
                    }
                }
            }
        }
        let documents = match &p["Documents"] {
            Value::Array(docs) => docs
                .iter()
                .filter(|d| {
                    let ok = d["DocumentType"].is_string();
                    if !ok {
                        problems.push(format!(
                            "a document has no DocumentType: {}",
                            shorten(&d.to_string())
                        ));
                    }
                    ok
                })
                .map(|d| super::bounded(d.clone()))
                .collect(),
            Value::Null => Vec::new(),
            other => {
                problems.push(format!(
                    "Documents is not an array: {}",
                    shorten(&other.to_string())
                ));
                Vec::new()
            }
        };
        points.push(Point {
            role: text("RoleName", "x-ms-qps-role-name"),
            instance: text("Instance", "x-ms-qps-instance-name"),
            stream_id: text("StreamId", "x-ms-qps-stream-id"),
            machine: text("MachineName", "x-ms-qps-machine-name"),
            values,
            documents,
        });
    }
    if operation == Operation::Ping && points.is_empty() && problems.is_empty() {
        // No body: the identity is in the headers alone.
        if let Some(role) = header("x-ms-qps-role-name") {
            let h = |name: &str| header(name).unwrap_or_default().to_owned();
            points.push(Point {
                role: role.to_owned(),
                instance: h("x-ms-qps-instance-name"),
                stream_id: h("x-ms-qps-stream-id"),
                machine: h("x-ms-qps-machine-name"),
                values: [None; METRICS.len()],
                documents: Vec::new(),
            });
        }
    }
    (points, problems)
}

fn shorten(text: &str) -> String {
    if text.chars().count() <= 200 {
        return text.to_owned();
    }
    let cut: String = text.chars().take(200).collect();
    format!("{cut}…")
}

/// One second of one program.
#[derive(Debug)]
struct Sample {
    t: i64,
    values: [Option<f64>; METRICS.len()],
}

/// One (role, instance): the latest identity it sent and its ring of samples.
#[derive(Debug, Default)]
struct Source {
    stream_id: String,
    machine: String,
    last_ping_ms: Option<i64>,
    last_post_ms: Option<i64>,
    samples: VecDeque<Sample>,
    evicted: u64,
}

impl Source {
    fn last_seen(&self) -> i64 {
        self.last_ping_ms.max(self.last_post_ms).unwrap_or(0)
    }
}

/// What the viewer keeps of Live Metrics. See the [module docs](self).
#[derive(Debug, Default)]
pub(crate) struct Live {
    sources: BTreeMap<(String, String), Source>,
    evicted_sources: u64,
    documents: VecDeque<(i64, String, String, Value)>,
    evicted_documents: u64,
    problems: VecDeque<(i64, String)>,
    problem_count: u64,
    watched_ms: Option<i64>,
    pings: u64,
    posts: u64,
}

impl Live {
    /// Notes that someone is watching (the Live page or `/api/live` was read).
    pub(crate) fn watch(&mut self, now_ms: i64) {
        self.watched_ms = Some(now_ms);
    }

    /// Whether someone watched within the last [`WATCH_MS`].
    pub(crate) fn watching(&self, now_ms: i64) -> bool {
        self.watched_ms
            .is_some_and(|t| now_ms.saturating_sub(t) <= WATCH_MS)
    }

    /// Records a ping or post (headers and decoded body, or why the body could not be read)
    /// and says what to answer.
    pub(crate) fn receive(
        &mut self,
        operation: Operation,
        headers: &[(String, String)],
        body: Result<&[u8], String>,
        now_ms: i64,
    ) -> Answer {
        let (points, problems) = match body {
            Ok(body) => parse(operation, headers, body),
            Err(problem) => (Vec::new(), vec![format!("{operation:?} body: {problem}")]),
        };
        for problem in problems {
            self.problem(now_ms, problem);
        }
        match operation {
            Operation::Ping => self.pings += 1,
            Operation::Post => self.posts += 1,
        }
        for point in points {
            self.record(operation, point, now_ms);
        }
        let subscribed = self.watching(now_ms);
        Answer {
            subscribed,
            configuration: subscribed.then(|| (ETAG, default_configuration().to_string())),
        }
    }

    fn problem(&mut self, now_ms: i64, message: String) {
        self.problem_count += 1;
        if self.problems.len() == PROBLEMS {
            self.problems.pop_front();
        }
        self.problems.push_back((now_ms, message));
    }

    fn record(&mut self, operation: Operation, point: Point, now_ms: i64) {
        let key = (point.role.clone(), point.instance.clone());
        if !self.sources.contains_key(&key) && self.sources.len() >= MAX_SOURCES {
            let oldest = self
                .sources
                .iter()
                .min_by_key(|(_, s)| s.last_seen())
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                self.sources.remove(&oldest);
                self.evicted_sources += 1;
            }
        }
        let source = self.sources.entry(key).or_default();
        source.stream_id = point.stream_id;
        source.machine = point.machine;
        match operation {
            Operation::Ping => source.last_ping_ms = Some(now_ms),
            Operation::Post => {
                source.last_post_ms = Some(now_ms);
                if source.samples.len() == SAMPLES_PER_SOURCE {
                    source.samples.pop_front();
                    source.evicted += 1;
                }
                source.samples.push_back(Sample {
                    t: now_ms,
                    values: point.values,
                });
            }
        }
        for document in point.documents {
            if self.documents.len() == DOCUMENTS {
                self.documents.pop_front();
                self.evicted_documents += 1;
            }
            self.documents.push_back((
                now_ms,
                point.role.clone(),
                point.instance.clone(),
                document,
            ));
        }
    }

    /// What `GET /api/live` answers: per role and instance the latest samples of every metric
    /// (`times` and one list per metric key, `null` where a sample lacked it) and the latest
    /// values; the newest documents; the problems; the counters.
    pub(crate) fn snapshot(&self, now_ms: i64) -> Value {
        let metrics: Vec<Value> = METRICS
            .iter()
            .map(|(key, label, unit, names)| {
                json!({"key": key, "label": label, "unit": unit, "name": names[0]})
            })
            .collect();
        let sources: Vec<Value> = self
            .sources
            .iter()
            .map(|((role, instance), s)| {
                let skip = s.samples.len().saturating_sub(API_SAMPLES);
                let recent: Vec<&Sample> = s.samples.iter().skip(skip).collect();
                let mut series = Map::new();
                let mut latest = Map::new();
                for (i, (key, ..)) in METRICS.iter().enumerate() {
                    series.insert(
                        (*key).to_owned(),
                        recent.iter().map(|x| json!(x.values[i])).collect(),
                    );
                    latest.insert(
                        (*key).to_owned(),
                        json!(recent.last().and_then(|x| x.values[i])),
                    );
                }
                json!({
                    "role": role,
                    "instance": instance,
                    "stream_id": s.stream_id,
                    "machine": s.machine,
                    "last_ping_ms": s.last_ping_ms,
                    "last_post_ms": s.last_post_ms,
                    "samples": s.samples.len(),
                    "evicted": s.evicted,
                    "times": recent.iter().map(|x| x.t).collect::<Vec<_>>(),
                    "series": series,
                    "latest": latest,
                })
            })
            .collect();
        let documents: Vec<Value> = self
            .documents
            .iter()
            .rev()
            .take(API_DOCUMENTS)
            .map(|(t, role, instance, doc)| {
                json!({"t": t, "role": role, "instance": instance, "document": doc})
            })
            .collect();
        let problems: Vec<Value> = self
            .problems
            .iter()
            .rev()
            .map(|(t, message)| json!({"t": t, "message": message}))
            .collect();
        json!({
            "watching": self.watching(now_ms),
            "watch_ms": WATCH_MS,
            "pings": self.pings,
            "posts": self.posts,
            "capacity": SAMPLES_PER_SOURCE,
            "evicted_sources": self.evicted_sources,
            "metrics": metrics,
            "sources": sources,
            "documents": documents,
            "documents_evicted": self.evicted_documents,
            "problems": problems,
            "problem_count": self.problem_count,
        })
    }
}

/// The service's default configuration (the SPEC Post example): a stream that asks for failed
/// requests and dependencies, every exception and every trace.
fn default_configuration() -> Value {
    let empty = json!({"Filters": []});
    let failed =
        json!({"Filters": [{"FieldName": "Success", "Predicate": "Equal", "Comparand": "False"}]});
    json!({
        "ETag": ETAG,
        "Metrics": [],
        "DocumentStreams": [{
            "Id": "all-types-default",
            "DocumentFilterGroups": [
                {"TelemetryType": "Request", "Filters": failed},
                {"TelemetryType": "Dependency", "Filters": failed},
                {"TelemetryType": "Exception", "Filters": empty},
                {"TelemetryType": "Trace", "Filters": empty}
            ]
        }],
        "QuotaInfo": null
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn point(role: &str, instance: &str, requests: f64) -> Value {
        json!({
            "Version": "1", "InvariantVersion": 5, "Instance": instance, "RoleName": role,
            "MachineName": "m", "StreamId": "s1", "IsWebApp": false,
            "PerformanceCollectionSupported": true,
            "Metrics": [
                {"Name": r"\ApplicationInsights\Requests/Sec", "Value": requests, "Weight": 1},
                {"Name": r"\Processor(_Total)\% Processor Time", "Value": 9.0, "Weight": 1},
                {"Name": r"\% Process\Processor Time Normalized", "Value": 3.5, "Weight": 1},
                {"Name": "141.8a7513a4", "Value": 1.0, "Weight": 1}
            ],
            "Documents": [{"DocumentType": "Request", "Name": "GET /", "ResponseCode": "500",
                           "Duration": "PT0.01S", "DocumentStreamIds": ["all-types-default"]}]
        })
    }

    fn post(body: &Value) -> Vec<u8> {
        body.to_string().into_bytes()
    }

    #[test]
    fn a_post_is_read_into_points_with_the_preferred_metric_names() {
        let (points, problems) = parse(
            Operation::Post,
            &[],
            &post(&json!([point("shop", "i1", 4.0)])),
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(points.len(), 1);
        let p = &points[0];
        assert_eq!(
            (p.role.as_str(), p.instance.as_str(), p.stream_id.as_str()),
            ("shop", "i1", "s1")
        );
        assert_eq!(p.values[0], Some(4.0));
        assert_eq!(p.values[7], Some(3.5), "the new CPU name wins over the old");
        assert_eq!(p.values[1], None);
        assert_eq!(p.documents.len(), 1);
    }

    #[test]
    fn a_ping_takes_its_identity_from_the_headers_when_it_has_no_body() {
        let headers = vec![
            ("x-ms-qps-role-name".to_owned(), "shop".to_owned()),
            ("x-ms-qps-instance-name".to_owned(), "i2".to_owned()),
            ("x-ms-qps-stream-id".to_owned(), "abc".to_owned()),
        ];
        let (points, problems) = parse(Operation::Ping, &headers, b"");
        assert!(problems.is_empty());
        assert_eq!(points[0].instance, "i2");
        assert_eq!(points[0].stream_id, "abc");
        let (points, _) = parse(Operation::Ping, &headers, br#"{"RoleName":"body"}"#);
        assert_eq!(points[0].role, "body", "the body first");
        assert_eq!(points[0].instance, "i2", "then the headers");
    }

    #[test]
    fn bad_bodies_are_problems_not_panics() {
        for (op, body, expected) in [
            (Operation::Post, &b"{not json"[..], "not JSON"),
            (Operation::Post, br#"{"a":1}"#, "not an array"),
            (Operation::Ping, b"[1]", "not one MonitoringDataPoint"),
            (Operation::Post, b"[1]", "not an object"),
            (
                Operation::Post,
                br#"[{"Metrics":[{"Name":3}]}]"#,
                "a metric is not",
            ),
            (
                Operation::Post,
                br#"[{"Metrics":{}}]"#,
                "Metrics is not an array",
            ),
            (
                Operation::Post,
                br#"[{"Documents":[{}]}]"#,
                "no DocumentType",
            ),
            (
                Operation::Post,
                br#"[{"Documents":"x"}]"#,
                "Documents is not an array",
            ),
            (Operation::Post, &[0xff, 0xfe, 0x00][..], "not JSON"),
        ] {
            let (_, problems) = parse(op, &[], body);
            assert!(
                problems.iter().any(|p| p.contains(expected)),
                "{body:?}: {problems:?}"
            );
        }
        let mut live = Live::default();
        live.receive(Operation::Post, &[], Ok(b"nope"), 5);
        live.receive(Operation::Post, &[], Err("gzip is broken".into()), 5);
        let snapshot = live.snapshot(5);
        assert_eq!(snapshot["problem_count"], 2);
        assert_eq!(snapshot["problems"][0]["t"], 5);
        assert!(snapshot["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains("gzip is broken"));
    }

    #[test]
    fn programs_are_subscribed_only_while_someone_watched_recently() {
        let mut live = Live::default();
        let ping = post(&point("shop", "i1", 0.0));
        let answer = live.receive(Operation::Ping, &[], Ok(&ping), 1_000);
        assert_eq!(
            answer,
            Answer {
                subscribed: false,
                configuration: None
            }
        );
        live.watch(2_000);
        let answer = live.receive(Operation::Ping, &[], Ok(&ping), 2_000 + WATCH_MS);
        assert!(answer.subscribed);
        let (etag, body) = answer.configuration.unwrap();
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["ETag"], etag);
        assert_eq!(body["DocumentStreams"][0]["Id"], "all-types-default");
        assert!(
            !live
                .receive(Operation::Post, &[], Ok(b"[]"), 2_001 + WATCH_MS)
                .subscribed
        );
        let snapshot = live.snapshot(0);
        assert_eq!(snapshot["pings"], 2);
        assert_eq!(snapshot["posts"], 1);
        assert_eq!(snapshot["sources"][0]["last_ping_ms"], 2_000 + WATCH_MS);
        assert_eq!(snapshot["sources"][0]["samples"], 0, "a ping is no sample");
    }

    #[test]
    fn the_ring_keeps_the_latest_samples_per_role_and_instance_and_counts_evictions() {
        let mut live = Live::default();
        let total = SAMPLES_PER_SOURCE + 5;
        for t in 0..total {
            let body = post(&json!([
                point("shop", "i1", t as f64),
                point("shop", "i2", 1.0)
            ]));
            live.receive(Operation::Post, &[], Ok(&body), t as i64);
        }
        let snapshot = live.snapshot(0);
        let sources = snapshot["sources"].as_array().unwrap();
        assert_eq!(sources.len(), 2);
        let s = &sources[0];
        assert_eq!(s["instance"], "i1");
        assert_eq!(s["samples"], SAMPLES_PER_SOURCE);
        assert_eq!(s["evicted"], 5);
        assert_eq!(s["times"].as_array().unwrap().len(), API_SAMPLES);
        assert_eq!(s["times"][API_SAMPLES - 1], total as i64 - 1);
        assert_eq!(s["latest"]["request_rate"], (total - 1) as f64);
        assert_eq!(s["latest"]["cpu"], 3.5);
        assert_eq!(s["latest"]["memory"], Value::Null);
        assert_eq!(s["series"]["request_rate"][0], (total - API_SAMPLES) as f64);
        assert_eq!(
            snapshot["documents"].as_array().unwrap().len(),
            API_DOCUMENTS
        );
        assert_eq!(snapshot["documents_evicted"], 2 * total - DOCUMENTS);
        assert_eq!(
            snapshot["documents"][0]["t"],
            total as i64 - 1,
            "newest first"
        );
    }

    #[test]
    fn sources_are_bounded_too() {
        let mut live = Live::default();
        for i in 0..=MAX_SOURCES {
            let body = post(&json!([point("r", &format!("i{i:03}"), 1.0)]));
            live.receive(Operation::Post, &[], Ok(&body), i as i64);
        }
        let snapshot = live.snapshot(0);
        assert_eq!(snapshot["sources"].as_array().unwrap().len(), MAX_SOURCES);
        assert_eq!(snapshot["evicted_sources"], 1);
        assert_eq!(
            snapshot["sources"][0]["instance"], "i001",
            "the least recent went"
        );
    }
}
