//! The viewer's memory: a bounded store of received items and rejections, and the aggregations
//! the pages show (overview, application map, search, transactions, failures, metrics).
//!
//! Pure: no I/O, no clock (callers pass `now`). Items are summarised once, when they arrive, from
//! the envelope as received (plain JSON, not this crate's wire types, so that any exporter's
//! traffic is shown as it came). When the store is full the oldest item is evicted and counted.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use serde::Serialize;
use serde_json::{Map, Value};

/// What kind of telemetry an item is, as the portal's tables name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    Request,
    Dependency,
    Trace,
    Exception,
    Event,
    Metric,
    PageView,
    Availability,
    Other,
}

impl Kind {
    fn of(base_type: &str) -> Kind {
        match base_type {
            "RequestData" => Kind::Request,
            "RemoteDependencyData" => Kind::Dependency,
            "MessageData" => Kind::Trace,
            "ExceptionData" => Kind::Exception,
            "EventData" => Kind::Event,
            "MetricData" => Kind::Metric,
            "PageViewData" | "PageViewPerfData" => Kind::PageView,
            "AvailabilityData" => Kind::Availability,
            _ => Kind::Other,
        }
    }

    /// The kind named in a search filter (`request`, `dependency`, ...).
    pub(crate) fn parse(name: &str) -> Option<Kind> {
        Some(match name {
            "request" => Kind::Request,
            "dependency" => Kind::Dependency,
            "trace" => Kind::Trace,
            "exception" => Kind::Exception,
            "event" => Kind::Event,
            "metric" => Kind::Metric,
            "pageview" => Kind::PageView,
            "availability" => Kind::Availability,
            "other" => Kind::Other,
            _ => return None,
        })
    }
}

/// The node of the application map for callers outside every role.
pub(crate) const USERS: &str = "(users)";

/// One accepted item, summarised for lists, with the envelope kept for the detail views.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Item {
    /// Arrival number, from 0, over the store's whole life.
    pub(crate) seq: u64,
    pub(crate) kind: Kind,
    /// The envelope's `time`, as sent.
    pub(crate) time: String,
    /// `time` in milliseconds since the Unix epoch (0 when unreadable).
    pub(crate) time_ms: i64,
    pub(crate) role: String,
    pub(crate) instance: String,
    pub(crate) operation_id: String,
    pub(crate) operation_name: String,
    pub(crate) parent_id: String,
    /// `baseData.id` (requests and dependencies).
    pub(crate) id: String,
    /// Request or dependency name, event name, metric name.
    pub(crate) name: String,
    pub(crate) duration_ms: Option<f64>,
    pub(crate) success: Option<bool>,
    /// Request `responseCode` or dependency `resultCode`.
    pub(crate) result_code: String,
    pub(crate) dependency_type: String,
    pub(crate) target: String,
    /// Request `url` or dependency `data` (command, URL).
    pub(crate) data: String,
    pub(crate) severity: String,
    /// Trace message, or the first exception's message.
    pub(crate) message: String,
    pub(crate) exception_type: String,
    #[serde(skip)]
    pub(crate) envelope: Value,
}

impl Item {
    fn new(seq: u64, envelope: Value) -> Item {
        let text = |v: &Value| -> String {
            match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            }
        };
        let tags = &envelope["tags"];
        let data = &envelope["data"];
        let base = &data["baseData"];
        let kind = Kind::of(data["baseType"].as_str().unwrap_or(""));
        let first_exception = &base["exceptions"][0];
        let first_metric = &base["metrics"][0];
        let (name, message) = match kind {
            Kind::Trace => (String::new(), text(&base["message"])),
            Kind::Exception => (String::new(), text(&first_exception["message"])),
            Kind::Metric => (text(&first_metric["name"]), String::new()),
            Kind::Availability => (text(&base["name"]), text(&base["message"])),
            _ => (text(&base["name"]), String::new()),
        };
        let time = text(&envelope["time"]);
        Item {
            seq,
            kind,
            time_ms: parse_time_ms(&time).unwrap_or(0),
            time,
            role: text(&tags["ai.cloud.role"]),
            instance: text(&tags["ai.cloud.roleInstance"]),
            operation_id: text(&tags["ai.operation.id"]),
            operation_name: text(&tags["ai.operation.name"]),
            parent_id: text(&tags["ai.operation.parentId"]),
            id: text(&base["id"]),
            name,
            duration_ms: base["duration"].as_str().and_then(parse_duration_ms),
            success: base["success"].as_bool(),
            result_code: match kind {
                Kind::Request => text(&base["responseCode"]),
                _ => text(&base["resultCode"]),
            },
            dependency_type: text(&base["type"]),
            target: text(&base["target"]),
            data: match kind {
                Kind::Request | Kind::PageView => text(&base["url"]),
                _ => text(&base["data"]),
            },
            severity: text(&base["severityLevel"]),
            message,
            exception_type: text(&first_exception["typeName"]),
            envelope,
        }
    }

    /// Whether the item is a failure: an unsuccessful request or dependency, or an exception.
    pub(crate) fn failed(&self) -> bool {
        self.success == Some(false) || self.kind == Kind::Exception
    }

    fn end_ms(&self) -> f64 {
        self.time_ms as f64 + self.duration_ms.unwrap_or(0.0)
    }

    fn matches_text(&self, needle: &str) -> bool {
        [
            &self.name,
            &self.message,
            &self.operation_name,
            &self.operation_id,
            &self.target,
            &self.exception_type,
            &self.result_code,
            &self.data,
            &self.role,
            &self.dependency_type,
        ]
        .iter()
        .any(|field| field.to_lowercase().contains(needle))
    }
}

/// An item (or a whole request) the ingestion contract refused.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Rejected {
    pub(crate) seq: u64,
    /// When it arrived, in milliseconds since the Unix epoch.
    pub(crate) received_ms: i64,
    pub(crate) status: u16,
    pub(crate) reason: String,
    /// Index in its request; `None` for a whole-request failure.
    pub(crate) index: Option<usize>,
    /// The item as received; `null` for a whole-request failure.
    pub(crate) item: Value,
    /// Whether a scripted fault refused it (tests), rather than the contract.
    pub(crate) scripted: bool,
}

/// The bounded store.
#[derive(Debug)]
pub(crate) struct Store {
    capacity: usize,
    items: VecDeque<Item>,
    /// Operation id → arrival numbers of its items still stored, oldest first.
    operations: HashMap<String, VecDeque<u64>>,
    next_seq: u64,
    evicted: u64,
    rejected: VecDeque<Rejected>,
    rejected_capacity: usize,
    rejected_total: u64,
    requests: u64,
    /// Changes whenever something arrives: pages poll it to know when to refresh.
    version: u64,
}

/// Ingestion counters and limits, for every page's header.
#[derive(Debug, Serialize)]
pub(crate) struct Stats {
    pub(crate) version: u64,
    pub(crate) received: u64,
    pub(crate) stored: usize,
    pub(crate) capacity: usize,
    pub(crate) evicted: u64,
    pub(crate) rejected: u64,
    pub(crate) rejected_stored: usize,
    pub(crate) requests: u64,
}

/// Which items a search returns. Every field is optional; all given must match.
#[derive(Debug, Default)]
pub(crate) struct Filter {
    pub(crate) kind: Option<Kind>,
    pub(crate) role: Option<String>,
    /// Case-insensitive substring of the name, message, operation, target, code, ...
    pub(crate) text: Option<String>,
    pub(crate) success: Option<bool>,
    /// Only items whose `time` is at or after this, in milliseconds since the epoch.
    pub(crate) since_ms: Option<i64>,
    /// Only the calls of one application-map edge: `(from, to)`.
    pub(crate) edge: Option<(String, String)>,
    /// Only items of this operation name.
    pub(crate) operation_name: Option<String>,
    /// Only exceptions of this type.
    pub(crate) exception_type: Option<String>,
    pub(crate) limit: usize,
}

impl Store {
    /// A store of at most `capacity` items and `rejected_capacity` rejections (each at least 1).
    pub(crate) fn new(capacity: usize, rejected_capacity: usize) -> Store {
        Store {
            capacity: capacity.max(1),
            items: VecDeque::new(),
            operations: HashMap::new(),
            next_seq: 0,
            evicted: 0,
            rejected: VecDeque::new(),
            rejected_capacity: rejected_capacity.max(1),
            rejected_total: 0,
            requests: 0,
            version: 0,
        }
    }

    /// Records one track request: its accepted items, then its refusals
    /// (`(index, status, reason, item, scripted)`; index `None` for a whole-request failure).
    pub(crate) fn record(
        &mut self,
        accepted: impl IntoIterator<Item = Value>,
        refused: impl IntoIterator<Item = (Option<usize>, u16, String, Value, bool)>,
        now_ms: i64,
    ) {
        self.requests += 1;
        self.version += 1;
        for envelope in accepted {
            self.push(envelope);
        }
        for (index, status, reason, item, scripted) in refused {
            if self.rejected.len() == self.rejected_capacity {
                self.rejected.pop_front();
            }
            self.rejected.push_back(Rejected {
                seq: self.rejected_total,
                received_ms: now_ms,
                status,
                reason,
                index,
                item,
                scripted,
            });
            self.rejected_total += 1;
        }
    }

    fn push(&mut self, envelope: Value) {
        if self.items.len() == self.capacity {
            if let Some(old) = self.items.pop_front() {
                self.evicted += 1;
                if let Some(seqs) = self.operations.get_mut(&old.operation_id) {
                    seqs.pop_front();
                    if seqs.is_empty() {
                        self.operations.remove(&old.operation_id);
                    }
                }
            }
        }
        let item = Item::new(self.next_seq, envelope);
        self.next_seq += 1;
        if !item.operation_id.is_empty() {
            self.operations
                .entry(item.operation_id.clone())
                .or_default()
                .push_back(item.seq);
        }
        self.items.push_back(item);
    }

    fn get(&self, seq: u64) -> Option<&Item> {
        let first = self.items.front()?.seq;
        let offset = usize::try_from(seq.checked_sub(first)?).ok()?;
        self.items.get(offset)
    }

    pub(crate) fn stats(&self) -> Stats {
        Stats {
            version: self.version,
            received: self.next_seq,
            stored: self.items.len(),
            capacity: self.capacity,
            evicted: self.evicted,
            rejected: self.rejected_total,
            rejected_stored: self.rejected.len(),
            requests: self.requests,
        }
    }

    pub(crate) fn rejected(&self) -> impl DoubleEndedIterator<Item = &Rejected> {
        self.rejected.iter()
    }

    fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &Item> {
        self.items.iter().filter(move |i| i.kind == kind)
    }

    /// Request `parentId` → the role that served it: a dependency with that id called that role.
    fn callees(&self) -> HashMap<&str, &str> {
        self.of_kind(Kind::Request)
            .filter(|r| !r.parent_id.is_empty())
            .map(|r| (r.parent_id.as_str(), r.role.as_str()))
            .collect()
    }

    /// The application-map edge an item is a call of: a dependency from its role to the role
    /// that served it (or to its target, when no role reported serving it); a request whose
    /// caller is not in the store, from the users.
    fn edge_of<'a>(
        item: &'a Item,
        callees: &HashMap<&str, &'a str>,
        dependency_ids: &HashSet<&str>,
    ) -> Option<(String, String)> {
        match item.kind {
            Kind::Dependency => {
                let to = match callees.get(item.id.as_str()) {
                    Some(role) => (*role).to_owned(),
                    None => external_node(item),
                };
                Some((item.role.clone(), to))
            }
            Kind::Request if !dependency_ids.contains(item.parent_id.as_str()) => {
                Some((USERS.to_owned(), item.role.clone()))
            }
            _ => None,
        }
    }

    fn dependency_ids(&self) -> HashSet<&str> {
        self.of_kind(Kind::Dependency)
            .map(|d| d.id.as_str())
            .filter(|id| !id.is_empty())
            .collect()
    }

    /// The application map: roles, users and external dependency targets as nodes; calls as
    /// edges with count, failures and average duration.
    pub(crate) fn map(&self) -> MapView {
        let callees = self.callees();
        let dependency_ids = self.dependency_ids();
        let mut edges: BTreeMap<(String, String), Calls> = BTreeMap::new();
        let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
        for item in &self.items {
            let node = nodes.entry(item.role.clone()).or_insert_with(|| Node {
                id: item.role.clone(),
                kind: "role",
                ..Node::default()
            });
            match item.kind {
                Kind::Request => node.calls.add(item),
                Kind::Exception => node.exceptions += 1,
                _ => {}
            }
            if !item.instance.is_empty() && !node.instances.contains(&item.instance) {
                node.instances.push(item.instance.clone());
            }
            if let Some((from, to)) = Self::edge_of(item, &callees, &dependency_ids) {
                edges
                    .entry((from.clone(), to.clone()))
                    .or_default()
                    .add(item);
                for end in [from, to] {
                    let kind = if end == USERS { "users" } else { "external" };
                    nodes.entry(end.clone()).or_insert_with(|| Node {
                        id: end,
                        kind,
                        ..Node::default()
                    });
                }
            }
        }
        // A role first seen as an external name (no item of its own yet) stays external until
        // it reports; a role with items is a role.
        let roles: HashSet<&str> = self.items.iter().map(|i| i.role.as_str()).collect();
        for node in nodes.values_mut() {
            if node.kind != "users" && roles.contains(node.id.as_str()) {
                node.kind = "role";
            }
        }
        MapView {
            nodes: nodes.into_values().collect(),
            edges: edges
                .into_iter()
                .map(|((from, to), calls)| Edge { from, to, calls })
                .collect(),
        }
    }

    /// Items matching `filter`, newest first, at most `filter.limit`; and how many matched.
    pub(crate) fn search(&self, filter: &Filter) -> (usize, Vec<&Item>) {
        let needle = filter.text.as_ref().map(|t| t.to_lowercase());
        let callees = self.callees();
        let dependency_ids = self.dependency_ids();
        let mut total = 0;
        let mut found = Vec::new();
        for item in self.items.iter().rev() {
            let kind_ok = match filter.kind {
                Some(kind) => item.kind == kind,
                // Metrics are charted, not searched, as in the portal.
                None => item.kind != Kind::Metric,
            };
            let ok = kind_ok
                && filter.role.as_ref().is_none_or(|r| &item.role == r)
                && filter.success.is_none_or(|s| item.failed() != s)
                && filter.since_ms.is_none_or(|t| item.time_ms >= t)
                && filter
                    .operation_name
                    .as_ref()
                    .is_none_or(|n| &item.operation_name == n)
                && filter
                    .exception_type
                    .as_ref()
                    .is_none_or(|t| &item.exception_type == t)
                && needle.as_ref().is_none_or(|n| item.matches_text(n))
                && filter.edge.as_ref().is_none_or(|edge| {
                    Self::edge_of(item, &callees, &dependency_ids).as_ref() == Some(edge)
                });
            if ok {
                total += 1;
                if found.len() < filter.limit {
                    found.push(item);
                }
            }
        }
        (total, found)
    }

    /// One end-to-end transaction: its items as a tree (depth-first, children by time), with
    /// its time span. `None` when no item of that operation is stored.
    pub(crate) fn transaction(&self, operation_id: &str) -> Option<Transaction<'_>> {
        let members: Vec<&Item> = self
            .operations
            .get(operation_id)?
            .iter()
            .filter_map(|seq| self.get(*seq))
            .collect();
        let ids: HashSet<&str> = members
            .iter()
            .map(|i| i.id.as_str())
            .filter(|id| !id.is_empty())
            .collect();
        let mut children: HashMap<&str, Vec<&Item>> = HashMap::new();
        let mut roots = Vec::new();
        for item in &members {
            if ids.contains(item.parent_id.as_str()) && item.parent_id != item.id {
                children
                    .entry(item.parent_id.as_str())
                    .or_default()
                    .push(item);
            } else {
                roots.push(*item);
            }
        }
        let by_time = |a: &&Item, b: &&Item| (a.time_ms, a.seq).cmp(&(b.time_ms, b.seq));
        roots.sort_by(by_time);
        for list in children.values_mut() {
            list.sort_by(by_time);
        }
        let mut rows = Vec::with_capacity(members.len());
        let mut seen = HashSet::new();
        let mut stack: Vec<(usize, &Item)> = roots.iter().rev().map(|i| (0, *i)).collect();
        while let Some((depth, item)) = stack.pop() {
            if !seen.insert(item.seq) {
                continue;
            }
            rows.push((depth, item));
            if !item.id.is_empty() {
                if let Some(kids) = children.get(item.id.as_str()) {
                    stack.extend(kids.iter().rev().map(|k| (depth + 1, *k)));
                }
            }
        }
        // Anything left over is in a parent cycle: show it rather than hide it.
        for item in &members {
            if !seen.contains(&item.seq) {
                rows.push((0, item));
            }
        }
        let start_ms = members.iter().map(|i| i.time_ms).min().unwrap_or(0);
        let end_ms = members
            .iter()
            .map(|i| i.end_ms())
            .fold(start_ms as f64, f64::max);
        Some(Transaction {
            operation_id: operation_id.to_owned(),
            start_ms,
            end_ms,
            rows,
        })
    }

    /// Requests per minute (and failed ones) over the `minutes` minutes before `now_ms`, the
    /// roles, and the slowest operations.
    pub(crate) fn overview(&self, now_ms: i64, minutes: usize) -> Overview {
        let mut roles: BTreeMap<&str, RoleSummary> = BTreeMap::new();
        let minutes_i64 = i64::try_from(minutes).unwrap_or(60);
        let first_minute = now_ms.div_euclid(60_000) - minutes_i64 + 1;
        let mut rate = vec![RatePoint::default(); minutes];
        for (n, point) in rate.iter_mut().enumerate() {
            point.t = (first_minute + i64::try_from(n).unwrap_or(0)) * 60_000;
        }
        let mut operations: BTreeMap<(&str, &str), Operation> = BTreeMap::new();
        for item in &self.items {
            let role = roles.entry(item.role.as_str()).or_default();
            match item.kind {
                Kind::Request => {
                    role.requests.add(item);
                    let slot = item.time_ms.div_euclid(60_000) - first_minute;
                    if let Some(point) = usize::try_from(slot).ok().and_then(|s| rate.get_mut(s)) {
                        point.requests += 1;
                        point.failed += u64::from(item.failed());
                    }
                    let op = operations
                        .entry((item.role.as_str(), item.name.as_str()))
                        .or_insert_with(|| Operation {
                            role: item.role.clone(),
                            name: item.name.clone(),
                            ..Operation::default()
                        });
                    op.calls.add(item);
                    let duration = item.duration_ms.unwrap_or(0.0);
                    if duration >= op.max_ms {
                        op.max_ms = duration;
                        op.slowest_operation_id = item.operation_id.clone();
                    }
                }
                Kind::Dependency => role.dependencies.add(item),
                Kind::Trace => role.traces += 1,
                Kind::Exception => role.exceptions += 1,
                Kind::Event => role.events += 1,
                Kind::Metric => role.metrics += 1,
                _ => role.other += 1,
            }
        }
        let mut slowest: Vec<Operation> = operations.into_values().collect();
        slowest.sort_by(|a, b| b.calls.avg_ms().total_cmp(&a.calls.avg_ms()));
        slowest.truncate(10);
        Overview {
            roles: roles
                .into_iter()
                .map(|(name, mut summary)| {
                    summary.name = name.to_owned();
                    summary
                })
                .collect(),
            request_rate: rate,
            slowest,
        }
    }

    /// Failed requests grouped by operation, exceptions by type and operation, failed
    /// dependencies by target; most frequent first.
    pub(crate) fn failures(&self) -> Failures {
        let mut operations: BTreeMap<(&str, &str), FailureGroup> = BTreeMap::new();
        let mut exceptions: BTreeMap<(&str, &str, &str), FailureGroup> = BTreeMap::new();
        let mut dependencies: BTreeMap<(&str, &str, &str), FailureGroup> = BTreeMap::new();
        for item in &self.items {
            let group = match item.kind {
                Kind::Request => operations
                    .entry((item.role.as_str(), item.name.as_str()))
                    .or_insert_with(|| FailureGroup::new(item, &item.name)),
                Kind::Dependency => dependencies
                    .entry((
                        item.role.as_str(),
                        item.dependency_type.as_str(),
                        item.target.as_str(),
                    ))
                    .or_insert_with(|| {
                        FailureGroup::new(
                            item,
                            &format!("{} {}", item.dependency_type, item.target),
                        )
                    }),
                Kind::Exception => exceptions
                    .entry((
                        item.role.as_str(),
                        item.exception_type.as_str(),
                        item.operation_name.as_str(),
                    ))
                    .or_insert_with(|| FailureGroup::new(item, &item.exception_type)),
                _ => continue,
            };
            group.total += 1;
            if item.failed() {
                group.failed += 1;
                group.example_operation_id = item.operation_id.clone();
                if !item.message.is_empty() {
                    group.message = item.message.clone();
                }
            }
        }
        let keep = |groups: Vec<FailureGroup>| {
            let mut groups: Vec<FailureGroup> =
                groups.into_iter().filter(|g| g.failed > 0).collect();
            groups.sort_by_key(|g| std::cmp::Reverse(g.failed));
            groups
        };
        Failures {
            operations: keep(operations.into_values().collect()),
            exceptions: keep(exceptions.into_values().collect()),
            dependencies: keep(dependencies.into_values().collect()),
        }
    }

    /// Custom metrics: one series per (name, role, dimensions), points in time order.
    pub(crate) fn metrics(&self) -> Vec<Metric> {
        let mut metrics: BTreeMap<&str, BTreeMap<(&str, String), Vec<MetricPoint>>> =
            BTreeMap::new();
        for item in self.of_kind(Kind::Metric) {
            // The exporter's resource carrier, not a metric anyone charts.
            if item.name == "_OTELRESOURCE_" || item.name.is_empty() {
                continue;
            }
            let base = &item.envelope["data"]["baseData"];
            let point = &base["metrics"][0];
            let dimensions = match &base["properties"] {
                Value::Object(map) => dimensions(map),
                _ => String::new(),
            };
            metrics
                .entry(item.name.as_str())
                .or_default()
                .entry((item.role.as_str(), dimensions))
                .or_default()
                .push(MetricPoint {
                    t: item.time_ms,
                    value: point["value"].as_f64().unwrap_or(0.0),
                    count: point["count"].as_u64(),
                    min: point["min"].as_f64(),
                    max: point["max"].as_f64(),
                });
        }
        metrics
            .into_iter()
            .map(|(name, series)| Metric {
                name: name.to_owned(),
                series: series
                    .into_iter()
                    .map(|((role, dimensions), mut points)| {
                        points.sort_by_key(|p| p.t);
                        Series {
                            role: role.to_owned(),
                            dimensions,
                            points,
                        }
                    })
                    .collect(),
            })
            .collect()
    }
}

fn dimensions(map: &Map<String, Value>) -> String {
    map.iter()
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The map node of a dependency whose callee reported nothing: `type target`.
fn external_node(item: &Item) -> String {
    match (item.dependency_type.as_str(), item.target.as_str()) {
        ("", "") => item.name.clone(),
        ("", target) => target.to_owned(),
        (kind, "") => kind.to_owned(),
        (kind, target) => format!("{kind} {target}"),
    }
}

/// Count, failures and total duration of some calls.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Calls {
    pub(crate) count: u64,
    pub(crate) failed: u64,
    #[serde(skip)]
    total_ms: f64,
    #[serde(rename = "avg_ms")]
    avg: f64,
}

impl Calls {
    fn add(&mut self, item: &Item) {
        self.count += 1;
        self.failed += u64::from(item.failed());
        self.total_ms += item.duration_ms.unwrap_or(0.0);
        self.avg = self.avg_ms();
    }

    fn avg_ms(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.total_ms / self.count as f64
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub(crate) struct Node {
    pub(crate) id: String,
    /// `role`, `external` or `users`.
    pub(crate) kind: &'static str,
    /// Requests the role served.
    pub(crate) calls: Calls,
    pub(crate) exceptions: u64,
    pub(crate) instances: Vec<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Edge {
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) calls: Calls,
}

#[derive(Debug, Serialize)]
pub(crate) struct MapView {
    pub(crate) nodes: Vec<Node>,
    pub(crate) edges: Vec<Edge>,
}

#[derive(Debug)]
pub(crate) struct Transaction<'a> {
    pub(crate) operation_id: String,
    pub(crate) start_ms: i64,
    pub(crate) end_ms: f64,
    /// `(depth, item)` in tree order.
    pub(crate) rows: Vec<(usize, &'a Item)>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct RatePoint {
    /// Start of the minute, milliseconds since the epoch.
    pub(crate) t: i64,
    pub(crate) requests: u64,
    pub(crate) failed: u64,
}

#[derive(Debug, Default, Serialize)]
pub(crate) struct RoleSummary {
    pub(crate) name: String,
    pub(crate) requests: Calls,
    pub(crate) dependencies: Calls,
    pub(crate) traces: u64,
    pub(crate) exceptions: u64,
    pub(crate) events: u64,
    pub(crate) metrics: u64,
    pub(crate) other: u64,
}

#[derive(Debug, Default, Serialize)]
pub(crate) struct Operation {
    pub(crate) role: String,
    pub(crate) name: String,
    pub(crate) calls: Calls,
    pub(crate) max_ms: f64,
    pub(crate) slowest_operation_id: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct Overview {
    pub(crate) roles: Vec<RoleSummary>,
    pub(crate) request_rate: Vec<RatePoint>,
    pub(crate) slowest: Vec<Operation>,
}

#[derive(Debug, Serialize)]
pub(crate) struct FailureGroup {
    pub(crate) role: String,
    /// Operation name, exception type, or `type target` of a dependency.
    pub(crate) name: String,
    /// For exceptions: the operation they were thrown in.
    pub(crate) operation_name: String,
    pub(crate) failed: u64,
    pub(crate) total: u64,
    pub(crate) message: String,
    pub(crate) example_operation_id: String,
}

impl FailureGroup {
    fn new(item: &Item, name: &str) -> FailureGroup {
        FailureGroup {
            role: item.role.clone(),
            name: name.to_owned(),
            operation_name: item.operation_name.clone(),
            failed: 0,
            total: 0,
            message: String::new(),
            example_operation_id: String::new(),
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct Failures {
    pub(crate) operations: Vec<FailureGroup>,
    pub(crate) exceptions: Vec<FailureGroup>,
    pub(crate) dependencies: Vec<FailureGroup>,
}

#[derive(Debug, Serialize)]
pub(crate) struct MetricPoint {
    pub(crate) t: i64,
    pub(crate) value: f64,
    pub(crate) count: Option<u64>,
    pub(crate) min: Option<f64>,
    pub(crate) max: Option<f64>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Series {
    pub(crate) role: String,
    pub(crate) dimensions: String,
    pub(crate) points: Vec<MetricPoint>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Metric {
    pub(crate) name: String,
    pub(crate) series: Vec<Series>,
}

/// A .NET TimeSpan `[d.]hh:mm:ss[.fffffff]` in milliseconds.
pub(crate) fn parse_duration_ms(text: &str) -> Option<f64> {
    let (days, rest) = match text.split_once(':') {
        Some((head, _)) if head.contains('.') => {
            let (d, r) = text.split_once('.')?;
            (d.parse::<f64>().ok()?, r)
        }
        _ => (0.0, text),
    };
    let mut parts = rest.split(':');
    let hours: f64 = parts.next()?.parse().ok()?;
    let minutes: f64 = parts.next()?.parse().ok()?;
    let seconds: f64 = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some((((days * 24.0 + hours) * 60.0 + minutes) * 60.0 + seconds) * 1000.0)
}

/// `YYYY-MM-DDThh:mm:ss[.f...]Z` in milliseconds since the Unix epoch.
pub(crate) fn parse_time_ms(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() < 20 || bytes[10] != b'T' || !text.ends_with('Z') {
        return None;
    }
    let num = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let millis = match text.get(19..text.len() - 1) {
        Some(fraction) if fraction.starts_with('.') && fraction.len() > 1 => {
            let digits: String = fraction[1..].chars().chain("000".chars()).take(3).collect();
            digits.parse::<i64>().ok()?
        }
        _ => 0,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn envelope(base_type: &str, role: &str, op: &str, parent: &str, base: Value) -> Value {
        json!({
            "name": "x", "time": "2025-01-31T12:00:00.5000000Z", "iKey": "k",
            "tags": {"ai.cloud.role": role, "ai.operation.id": op, "ai.operation.parentId": parent,
                     "ai.operation.name": "POST /checkout"},
            "data": {"baseType": base_type, "baseData": base}
        })
    }

    fn request(role: &str, op: &str, id: &str, parent: &str, ok: bool) -> Value {
        envelope(
            "RequestData",
            role,
            op,
            parent,
            json!({"id": id, "name": "GET /x", "duration": "00:00:00.0100000", "success": ok, "responseCode": "200"}),
        )
    }

    fn dependency(role: &str, op: &str, id: &str, parent: &str, target: &str) -> Value {
        envelope(
            "RemoteDependencyData",
            role,
            op,
            parent,
            json!({"id": id, "name": "GET", "type": "Http", "target": target, "duration": "00:00:00.0040000", "success": true}),
        )
    }

    fn sample() -> Store {
        let mut store = Store::new(100, 10);
        store.record(
            [
                request("frontend", "op1", "r1", "", false),
                dependency("frontend", "op1", "d1", "r1", "inventory:80"),
                dependency("frontend", "op1", "d2", "r1", "orders-db"),
                request("inventory", "op1", "r2", "d1", true),
                envelope(
                    "ExceptionData",
                    "frontend",
                    "op1",
                    "r1",
                    json!({"exceptions": [{"typeName": "Boom", "message": "it broke"}]}),
                ),
                envelope(
                    "MessageData",
                    "inventory",
                    "op1",
                    "r2",
                    json!({"message": "reserved", "severityLevel": "Information"}),
                ),
            ],
            [],
            0,
        );
        store
    }

    #[test]
    fn durations_and_times() {
        assert_eq!(parse_duration_ms("00:00:01.5000000"), Some(1500.0));
        assert_eq!(parse_duration_ms("1.00:00:00"), Some(86_400_000.0));
        assert_eq!(parse_duration_ms("00:01:00"), Some(60_000.0));
        assert_eq!(parse_duration_ms("nope"), None);
        assert_eq!(parse_time_ms("1970-01-01T00:00:01.250Z"), Some(1250));
        assert_eq!(
            parse_time_ms("2025-01-31T12:00:00.5000000Z"),
            Some(1_738_324_800_500)
        );
        assert_eq!(parse_time_ms("2025-01-31 12:00:00"), None);
    }

    #[test]
    fn map_links_roles_through_dependency_ids() {
        let map = sample().map();
        let edges: Vec<(&str, &str, u64)> = map
            .edges
            .iter()
            .map(|e| (e.from.as_str(), e.to.as_str(), e.calls.count))
            .collect();
        assert_eq!(
            edges,
            [
                (USERS, "frontend", 1),
                ("frontend", "Http orders-db", 1),
                ("frontend", "inventory", 1)
            ]
        );
        let kinds: Vec<(&str, &str)> = map.nodes.iter().map(|n| (n.id.as_str(), n.kind)).collect();
        assert!(kinds.contains(&("inventory", "role")));
        assert!(kinds.contains(&("Http orders-db", "external")));
        assert!(kinds.contains(&(USERS, "users")));
    }

    #[test]
    fn transaction_is_a_tree_across_roles() {
        let store = sample();
        let tx = store.transaction("op1").unwrap();
        let rows: Vec<(usize, &str, Kind)> = tx
            .rows
            .iter()
            .map(|(d, i)| (*d, i.role.as_str(), i.kind))
            .collect();
        assert_eq!(rows.len(), 6);
        assert_eq!(rows[0], (0, "frontend", Kind::Request));
        assert!(rows.contains(&(2, "inventory", Kind::Request)));
        assert!(rows.contains(&(3, "inventory", Kind::Trace)));
        assert!(rows.contains(&(1, "frontend", Kind::Exception)));
        assert!(store.transaction("missing").is_none());
    }

    #[test]
    fn search_filters_and_edges() {
        let store = sample();
        let all = Filter {
            limit: 100,
            ..Filter::default()
        };
        assert_eq!(store.search(&all).0, 6);
        let failed = Filter {
            success: Some(false),
            limit: 100,
            ..Filter::default()
        };
        assert_eq!(store.search(&failed).0, 2); // the failed request and the exception
        let text = Filter {
            text: Some("RESERVED".into()),
            limit: 100,
            ..Filter::default()
        };
        assert_eq!(store.search(&text).1[0].kind, Kind::Trace);
        let edge = Filter {
            edge: Some(("frontend".into(), "inventory".into())),
            limit: 100,
            ..Filter::default()
        };
        let (n, found) = store.search(&edge);
        assert_eq!((n, found[0].id.as_str()), (1, "d1"));
    }

    #[test]
    fn eviction_is_bounded_and_counted() {
        let mut store = Store::new(3, 2);
        for n in 0..5 {
            store.record(
                [request("r", &format!("op{n}"), "id", "", true)],
                [(None, 400, format!("bad {n}"), Value::Null, false)],
                0,
            );
        }
        let stats = store.stats();
        assert_eq!((stats.stored, stats.evicted, stats.received), (3, 2, 5));
        assert_eq!((stats.rejected, stats.rejected_stored), (5, 2));
        assert!(store.transaction("op0").is_none());
        assert_eq!(store.transaction("op4").unwrap().rows.len(), 1);
        assert_eq!(store.operations.len(), 3);
        assert_eq!(store.rejected().next().unwrap().reason, "bad 3");
    }

    #[test]
    fn failures_and_overview() {
        let store = sample();
        let failures = store.failures();
        assert_eq!(failures.operations.len(), 1);
        assert_eq!(failures.operations[0].role, "frontend");
        assert_eq!(failures.exceptions[0].name, "Boom");
        assert_eq!(failures.exceptions[0].example_operation_id, "op1");
        assert!(failures.dependencies.is_empty());
        let overview = store.overview(1_738_324_800_500, 30);
        assert_eq!(overview.request_rate.len(), 30);
        assert_eq!(overview.request_rate[29].requests, 2);
        assert_eq!(overview.request_rate[29].failed, 1);
        assert_eq!(overview.roles.len(), 2);
        assert_eq!(overview.slowest[0].calls.count, 1);
    }

    #[test]
    fn metrics_are_series_per_dimensions() {
        let mut store = Store::new(10, 10);
        let metric = |value: f64, outcome: &str| {
            envelope(
                "MetricData",
                "inventory",
                "",
                "",
                json!({"metrics": [{"name": "reservations", "value": value, "count": 1}],
                       "properties": {"outcome": outcome}}),
            )
        };
        store.record(
            [metric(1.0, "ok"), metric(2.0, "ok"), metric(3.0, "failed")],
            [],
            0,
        );
        let metrics = store.metrics();
        assert_eq!(metrics.len(), 1);
        assert_eq!(metrics[0].series.len(), 2);
        assert_eq!(metrics[0].series[1].dimensions, "outcome=ok");
        assert_eq!(metrics[0].series[1].points.len(), 2);
    }
}
