//! Spans → `RequestData` / `RemoteDependencyData`, span events → `MessageData` /
//! `ExceptionData`, and the `_OTELRESOURCE_` metric (MAPPING.md §1–§3, §5.5).
//!
//! Everything borrows from the [`SpanData`] where it can: only composed strings (ids,
//! `GET /path`, `host:port`, ...) are allocated. The span's attributes are read once (see
//! [`Known::scan`]), which also collects the custom properties.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{Event, Link, SpanId, SpanKind, Status};
use opentelemetry::Value;
use opentelemetry_sdk::trace::SpanData;
use opentelemetry_sdk::Resource;

use super::attributes::{
    custom_measurements, hex, insert_property, join, push_hex, render, sample_rate,
    set_context_tags,
};
use super::http::{
    http_dependency_target, http_url, path_or_root, peer_target, split_url, status_code,
    HostFallback,
};
use super::semconv::{
    Key, Known, AZURE_SDK_DESTINATION, AZURE_SDK_PEER, AZ_NAMESPACE, DB_NAME, DB_STATEMENT,
    DB_SYSTEM, GEN_AI_SYSTEM, HTTP_METHOD, LINK_ENQUEUED_TIME, LOCATION_IP, MESSAGING_DESTINATION,
    MESSAGING_REQUEST_PEER, REQUEST_LOCATION_IP, RPC_STATUS_CODE, RPC_SYSTEM, SAMPLE_RATE,
    TRACING_LEVEL, TRACING_TARGET, USER_AGENT,
};
use super::Context;
use crate::wire::{
    tag, Bounded, Data, DataPoint, Envelope, ExceptionData, ExceptionDetails, Measurements,
    MessageData, MetricData, Properties, RemoteDependencyData, RequestData, SeverityLevel, Tags,
    TimeAt, TimeSpan, Timestamp,
};

/// Property with the span's links (MAPPING.md §3.5).
const LINKS_PROPERTY: &str = "_MS.links";
/// At most this many links are sent (§3.5 R; 100 links are about 7.5 KB of JSON, under the
/// 8192-character property limit).
const MAX_LINKS: usize = 100;
/// Measurement of an Azure SDK consumer request (§3.3).
const TIME_SINCE_ENQUEUED: &str = "timeSinceEnqueued";
/// Name of the resource metric (§5.5).
const RESOURCE_METRIC: &str = "_OTELRESOURCE_";
/// SQL-family database systems, legacy and stable names: dependency type `SQL` (§3.4).
const SQL_FAMILY: [&str; 13] = [
    "db2",
    "ibm.db2",
    "derby",
    "mariadb",
    "mssql",
    "microsoft.sql_server",
    "oracle",
    "oracle.db",
    "sqlite",
    "other_sql",
    "hsqldb",
    "h2",
    "h2database",
];

/// Property of the request and dependency items whose standard metrics the
/// `StandardMetricsProcessor` counted (STANDARD-METRICS.md §4.3): the service then does not
/// count them again.
pub(crate) const PROCESSED_BY_METRIC_EXTRACTORS: &str = "_MS.ProcessedByMetricExtractors";
/// Its value on requests (the legacy SDKs' and JavaScript's; only its presence matters).
const COUNTED_REQUEST: &str = "(Name:'Requests', Ver:'1.1')";
/// Its value on dependencies.
const COUNTED_DEPENDENCY: &str = "(Name:'Dependencies', Ver:'1.1')";

/// Converts one span into its envelope followed by one envelope per span event (MAPPING.md
/// §3.1, §3.7), appended to `out`.
///
/// Without `tracing_events`, the span events that `tracing-opentelemetry` makes from
/// `tracing` events ([`is_tracing_event`]) are left out: the log bridge sends those.
pub(crate) fn span_to_envelopes<'a>(
    span: &'a SpanData,
    cx: &Context<'a>,
    tracing_events: bool,
    out: &mut Vec<Envelope<'a>>,
) {
    let mut properties = Properties::with_capacity(span.attributes.len() + 1);
    let known = Known::scan(&span.attributes, Some(&mut properties));
    let sample_rate = sample_rate(known.first(SAMPLE_RATE));
    if !span.links.is_empty() {
        properties.insert(LINKS_PROPERTY, links_json(&span.links));
    }
    let mut measurements = Measurements::default();
    if let Some(v) = known.get(Key::MicrosoftCustomMeasurements) {
        custom_measurements(v, &mut measurements);
    }

    let trace_id = span.span_context.trace_id().to_bytes();
    let span_id = span.span_context.span_id().to_bytes();

    let mut tags = Tags::new(cx.tags);
    tags.set_operation(
        trace_id,
        (span.parent_span_id != SpanId::INVALID).then(|| span.parent_span_id.to_bytes()),
    );
    let common = Common {
        span,
        known: &known,
        id: hex(&span_id),
        properties,
        measurements,
    };
    let data = match span.span_kind {
        SpanKind::Server | SpanKind::Consumer => Data::Request(request(common, &mut tags)),
        _ => Data::RemoteDependency(dependency(common, &mut tags)),
    };
    out.reserve(1 + span.events.len());
    out.push(Envelope {
        time: Timestamp(span.start_time),
        sample_rate,
        ikey: cx.ikey,
        tags,
        data,
        time_at: TimeAt::Start,
    });

    if !span.events.is_empty() {
        let span_session = known.str(&[Key::SessionId]);
        for event in span.events.iter() {
            if !tracing_events && is_tracing_event(event) {
                continue;
            }
            out.push(event_envelope(
                event,
                cx,
                (trace_id, span_id),
                span_session,
                sample_rate,
            ));
        }
    }
}

/// What requests and dependencies share.
struct Common<'a, 'k> {
    span: &'a SpanData,
    known: &'k Known<'a>,
    id: String,
    properties: Properties<'a>,
    measurements: Measurements<'a>,
}

fn is_error(status: &Status) -> bool {
    matches!(status, Status::Error { .. })
}

/// The fields of a request item that come from the span alone (MAPPING.md §3.3): the item
/// and the standard metrics both use them.
pub(crate) struct RequestFields<'a> {
    pub(crate) name: Cow<'a, str>,
    pub(crate) response_code: Cow<'a, str>,
    pub(crate) success: bool,
    pub(crate) source: Option<Cow<'a, str>>,
    pub(crate) url: Option<Cow<'a, str>>,
    /// Whether it is an HTTP request.
    pub(crate) http: bool,
}

/// The [`RequestFields`] of a SERVER or CONSUMER span.
pub(crate) fn request_fields<'a>(span: &'a SpanData, k: &Known<'a>) -> RequestFields<'a> {
    let mut f = RequestFields {
        name: Cow::Borrowed(&span.name),
        response_code: Cow::Borrowed("0"),
        success: !is_error(&span.status),
        source: None,
        url: None,
        http: false,
    };
    if k.first(AZ_NAMESPACE).is_some() {
        f.source = azure_sdk_source(k);
    } else if let Some(method) = k.text(HTTP_METHOD) {
        f.http = true;
        let request_url = http_url(k, HostFallback::Server);
        if let Some(route) = k.text(&[Key::HttpRoute]) {
            f.name = Cow::Owned(join(&method, " ", &route));
        } else {
            // No route (an unmatched one is empty): the path, as the URL has it.
            let path = match &request_url {
                Some(u) => Some(split_url(u).path),
                None => k.str(&[Key::UrlPath]).or_else(|| {
                    k.str(&[Key::HttpTarget])
                        .map(|t| t.split(['?', '#']).next().unwrap_or_default())
                }),
            };
            if let Some(path) = path {
                f.name = Cow::Owned(join(&method, " ", path_or_root(path)));
            }
        }
        let code = status_code(k);
        f.response_code = Cow::Owned(code.to_string());
        // PY: only 4xx (and a missing code) fail a request; 5xx spans are ERROR anyway.
        f.success = f.success && code != 0 && !(400..=499).contains(&code);
        f.url = request_url;
    } else if k.has(Key::MessagingSystem) {
        if let Some(dest) = k.text(MESSAGING_DESTINATION) {
            f.source = Some(match k.text(MESSAGING_REQUEST_PEER) {
                Some(peer) => Cow::Owned(join(&peer, "/", &dest)),
                None => dest,
            });
        }
    } else if k.first(RPC_SYSTEM).is_some() {
        // As JS: a gRPC server reports the gRPC status.
        if let Some(code) = k.text(RPC_STATUS_CODE) {
            f.response_code = code;
        }
    }
    f
}

/// A SERVER or CONSUMER span (MAPPING.md §3.3).
fn request<'a>(c: Common<'a, '_>, tags: &mut Tags<'a>) -> RequestData<'a> {
    let Common {
        span,
        known: k,
        id,
        mut properties,
        mut measurements,
    } = c;
    set_context_tags(tags, k, REQUEST_LOCATION_IP);
    let f = request_fields(span, k);
    if k.first(AZ_NAMESPACE).is_some() && !span.links.is_empty() {
        measurements.insert(TIME_SINCE_ENQUEUED, time_since_enqueued(span));
    }
    if f.http {
        if let Some(ua) = k.text(USER_AGENT) {
            tags.set(tag::USER_AGENT, ua);
        }
    }
    if k.has(Key::MsProcessedByMetricExtractors) {
        properties.insert(PROCESSED_BY_METRIC_EXTRACTORS, COUNTED_REQUEST);
    }
    tags.set(tag::OPERATION_NAME, f.name.clone());
    RequestData {
        ver: (),
        id: Bounded::new(id),
        name: Bounded::new(f.name),
        duration: TimeSpan::between(span.start_time, span.end_time),
        success: f.success,
        response_code: Bounded::new(f.response_code),
        source: f.source.map(Bounded::new),
        url: f.url.map(Bounded::new),
        properties,
        measurements,
    }
}

/// The fields of a dependency item that come from the span alone (MAPPING.md §3.4): the item
/// and the standard metrics both use them.
pub(crate) struct DependencyFields<'a> {
    pub(crate) name: Cow<'a, str>,
    pub(crate) result_code: Cow<'a, str>,
    pub(crate) data: Option<Cow<'a, str>>,
    pub(crate) type_: Cow<'a, str>,
    /// Never empty.
    pub(crate) target: Option<Cow<'a, str>>,
    pub(crate) success: bool,
    /// Whether it is an HTTP call.
    pub(crate) http: bool,
}

/// The [`DependencyFields`] of a CLIENT, PRODUCER or INTERNAL span.
pub(crate) fn dependency_fields<'a>(span: &'a SpanData, k: &Known<'a>) -> DependencyFields<'a> {
    let mut name: Cow<'a, str> = Cow::Borrowed(&span.name);
    let mut result_code: Cow<'a, str> = Cow::Borrowed("0");
    let mut data = None;
    let mut http = false;
    let type_: Cow<'a, str>;
    let mut target: Option<Cow<'a, str>> = None;
    let az_namespace = k.text(AZ_NAMESPACE);
    let gen_ai = k.text(GEN_AI_SYSTEM);

    match span.span_kind {
        SpanKind::Client => {
            let mut ty: Cow<'a, str> = Cow::Borrowed("N/A");
            if let Some(az) = az_namespace {
                ty = az;
                target = azure_sdk_source(k).or_else(|| peer_target(k));
            } else if let Some(method) = k.text(HTTP_METHOD) {
                ty = Cow::Borrowed("HTTP");
                http = true;
                let url = http_url(k, HostFallback::Peer);
                let path = url.as_deref().map_or("", |u| split_url(u).path);
                name = Cow::Owned(join(&method, " ", path_or_root(path)));
                target = http_dependency_target(k, url.as_ref());
                result_code = Cow::Owned(status_code(k).to_string());
                data = url;
            } else if let Some(system) = k.text(DB_SYSTEM) {
                ty = db_type(&system);
                data = k.text(DB_STATEMENT);
                target = Some(match (peer_target(k), k.text(DB_NAME)) {
                    (Some(t), Some(db)) => Cow::Owned(join(&t, "|", &db)),
                    (None, Some(db)) => db,
                    (Some(t), None) => t,
                    (None, None) => system,
                });
            } else if let Some(system) = k.text(&[Key::MessagingSystem]) {
                target = peer_target(k)
                    .or_else(|| k.text(MESSAGING_DESTINATION))
                    .or_else(|| Some(system.clone()));
                ty = system;
            } else if let Some(system) = k.text(RPC_SYSTEM) {
                // R: "GRPC" for gRPC (PY sends the literal "rpc.system").
                if let Some(code) = k.text(RPC_STATUS_CODE) {
                    result_code = code;
                }
                target = peer_target(k).or_else(|| Some(system.clone()));
                ty = if system == "grpc" {
                    Cow::Borrowed("GRPC")
                } else {
                    system
                };
            }
            if let Some(g) = &gen_ai {
                ty = Cow::Owned(join("GenAI", " | ", g));
                if target.is_none() {
                    target = Some(g.clone());
                }
            }
            type_ = ty;
        }
        SpanKind::Producer => {
            if let Some(az) = az_namespace {
                type_ = Cow::Owned(join("Queue Message", " | ", &az));
                target = azure_sdk_source(k).or_else(|| peer_target(k));
            } else {
                let system = k.text(&[Key::MessagingSystem]);
                type_ = match &system {
                    Some(s) => Cow::Owned(join("Queue Message", " | ", s)),
                    None => Cow::Borrowed("Queue Message"),
                };
                target = peer_target(k)
                    .or_else(|| k.text(MESSAGING_DESTINATION))
                    .or(system);
            }
        }
        _ => {
            type_ = match (&gen_ai, &az_namespace) {
                (Some(g), _) => Cow::Owned(join("GenAI", " | ", g)),
                (None, Some(az)) => Cow::Owned(join("InProc", " | ", az)),
                (None, None) => Cow::Borrowed("InProc"),
            };
            target = peer_target(k);
        }
    }

    // The service requires a dependency's name (an empty one is refused with 109).
    if name.trim().is_empty() {
        name = Cow::Borrowed(NO_NAME);
    }
    DependencyFields {
        name,
        result_code,
        data,
        type_,
        target: target.filter(|t| !t.is_empty()),
        success: !is_error(&span.status),
        http,
    }
}

/// A CLIENT, PRODUCER or INTERNAL span (MAPPING.md §3.4).
fn dependency<'a>(c: Common<'a, '_>, tags: &mut Tags<'a>) -> RemoteDependencyData<'a> {
    let Common {
        span,
        known: k,
        id,
        mut properties,
        measurements,
    } = c;
    set_context_tags(tags, k, LOCATION_IP);
    let f = dependency_fields(span, k);
    if f.http {
        if let Some(ua) = k.text(USER_AGENT) {
            tags.set(tag::USER_AGENT, ua);
        }
    }
    if k.has(Key::MsProcessedByMetricExtractors) {
        properties.insert(PROCESSED_BY_METRIC_EXTRACTORS, COUNTED_DEPENDENCY);
    }
    tags.set(tag::OPERATION_NAME, f.name.clone());
    RemoteDependencyData {
        ver: (),
        name: Bounded::new(f.name),
        id: Some(Bounded::new(id)),
        result_code: Some(Bounded::new(f.result_code)),
        duration: TimeSpan::between(span.start_time, span.end_time),
        success: f.success,
        data: f.data.map(Bounded::new),
        type_: Some(Bounded::new(f.type_)),
        target: f.target.map(Bounded::new),
        properties,
        measurements,
    }
}

/// Whether a span event was made by `tracing-opentelemetry` from a `tracing` event: it has
/// the `level` and `target` attributes that layer gives every event.
pub(crate) fn is_tracing_event(event: &Event) -> bool {
    let has = |key: &str| event.attributes.iter().any(|kv| kv.key.as_str() == key);
    has(TRACING_LEVEL) && has(TRACING_TARGET)
}

/// Beyond MAPPING.md §3.7 (whose exporters send span events without a severity): the
/// severity of a span event from its `tracing` level (`TRACE`, `DEBUG`, `INFO`, `WARN`,
/// `ERROR`, as `tracing-opentelemetry` writes it; any case), as the log bridge maps the same
/// levels (MAPPING.md §4.4).
fn tracing_severity(level: Option<&Value>) -> Option<SeverityLevel> {
    let Some(Value::String(level)) = level else {
        return None;
    };
    let level = level.as_str();
    [
        ("TRACE", SeverityLevel::Verbose),
        ("DEBUG", SeverityLevel::Verbose),
        ("INFO", SeverityLevel::Information),
        ("WARN", SeverityLevel::Warning),
        ("ERROR", SeverityLevel::Error),
    ]
    .into_iter()
    .find(|(name, _)| level.eq_ignore_ascii_case(name))
    .map(|(_, severity)| severity)
}

/// One span event: `exception` → `ExceptionData`, anything else → `MessageData` (§3.7).
fn event_envelope<'a>(
    event: &'a Event,
    cx: &Context<'a>,
    (trace_id, span_id): ([u8; 16], [u8; 8]),
    span_session: Option<&'a str>,
    sample_rate: Option<f64>,
) -> Envelope<'a> {
    let mut properties = Properties::with_capacity(event.attributes.len());
    let k = Known::scan(&event.attributes, Some(&mut properties));
    let mut measurements = Measurements::default();
    if let Some(v) = k.get(Key::MicrosoftCustomMeasurements) {
        custom_measurements(v, &mut measurements);
    }
    let mut tags = Tags::new(cx.tags);
    tags.set_operation(trace_id, Some(span_id));
    if let Some(session) = k.str(&[Key::SessionId]).or(span_session) {
        tags.set(tag::SESSION_ID, session);
    }
    let data = if event.name == "exception" {
        let stack = k.first(&[Key::ExceptionStacktrace]);
        let details = ExceptionDetails {
            type_name: Some(Bounded::new(
                k.text(&[Key::ExceptionType])
                    .unwrap_or(Cow::Borrowed("Exception")),
            )),
            message: Bounded::new(
                k.text(&[Key::ExceptionMessage])
                    .unwrap_or(Cow::Borrowed("Exception")),
            ),
            has_full_stack: Some(stack.is_some()),
            // R: no stack rather than PY's "None".
            stack: stack.map(|s| Bounded::new(render(s))),
            parsed_stack: Vec::new(),
        };
        Data::Exception(ExceptionData {
            exceptions: vec![details],
            severity_level: tracing_severity(k.get(Key::Level)),
            properties,
            measurements,
            ..ExceptionData::default()
        })
    } else {
        Data::Message(MessageData {
            // The service requires a non-empty message (an empty one is refused with 109).
            message: Bounded::new(non_empty_or(event.name.as_ref(), NO_NAME)),
            severity_level: tracing_severity(k.get(Key::Level)),
            properties,
            measurements,
            ..MessageData::default()
        })
    };
    Envelope {
        time: Timestamp(event.timestamp),
        sample_rate,
        ikey: cx.ikey,
        tags,
        data,
        time_at: TimeAt::Start,
    }
}

/// The `_OTELRESOURCE_` metric that makes resource attributes queryable (MAPPING.md §5.5 R,
/// the JS way): value 1, the resource attributes as properties except `_MS.*` and
/// `telemetry.sdk.*`, sorted by key; `None` when no attribute remains.
pub(crate) fn resource_envelope<'a>(
    resource: &'a Resource,
    cx: &Context<'a>,
    now: SystemTime,
) -> Option<Envelope<'a>> {
    let mut attrs: Vec<(&'a str, &'a Value)> = resource
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .filter(|(k, _)| !k.starts_with("_MS.") && !k.starts_with("telemetry.sdk."))
        .collect();
    if attrs.is_empty() {
        return None;
    }
    attrs.sort_unstable_by_key(|(k, _)| *k);
    let mut properties = Properties::with_capacity(attrs.len());
    for (k, v) in attrs {
        insert_property(&mut properties, k, v);
    }
    Some(Envelope {
        time: Timestamp(now),
        sample_rate: None,
        ikey: cx.ikey,
        tags: Tags::new(cx.tags),
        time_at: TimeAt::AfterTags,
        data: Data::Metric(MetricData {
            ver: (),
            metrics: vec![DataPoint {
                name: Bounded::new(RESOURCE_METRIC),
                value: 1.0,
                ..DataPoint::default()
            }],
            properties,
        }),
    })
}

/// What is sent for a name or message the service requires but the span left empty (as the
/// Python exporter's `n/a` for empty log messages).
const NO_NAME: &str = "n/a";

/// `s`, or `default` when `s` is empty or only white space.
fn non_empty_or<'a>(s: &'a str, default: &'a str) -> &'a str {
    if s.trim().is_empty() {
        default
    } else {
        s
    }
}

/// `_MS.links`: `[{"operation_Id":"<trace id>","id":"<span id>"},...]`, compact, at most
/// [`MAX_LINKS`] (§3.5 R).
fn links_json(links: &[Link]) -> String {
    let n = links.len().min(MAX_LINKS);
    let mut s = String::with_capacity(2 + n * 75);
    s.push('[');
    for (i, link) in links.iter().take(MAX_LINKS).enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(r#"{"operation_Id":""#);
        push_hex(&mut s, &link.span_context.trace_id().to_bytes());
        s.push_str(r#"","id":""#);
        push_hex(&mut s, &link.span_context.span_id().to_bytes());
        s.push_str(r#""}"#);
    }
    s.push(']');
    s
}

/// `timeSinceEnqueued` in ms (§3.3, PY): the mean over **all** links of (start − the link's
/// integer `enqueuedTime`), counting only links that have one, and at least 0.
fn time_since_enqueued(span: &SpanData) -> f64 {
    let start_ms = span
        .start_time
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_nanos() as f64 / 1e6);
    let total: f64 = span
        .links
        .iter()
        .filter_map(|link| {
            link.attributes
                .iter()
                .find(|kv| kv.key.as_str() == LINK_ENQUEUED_TIME)
        })
        .filter_map(|kv| match kv.value {
            Value::I64(t) => Some(start_ms - t as f64),
            _ => None,
        })
        .sum();
    (total / span.links.len().max(1) as f64).max(0.0)
}

/// `"{peer}/{destination}"` of an Azure SDK messaging span, if both exist (§3.3).
fn azure_sdk_source<'a>(k: &Known<'a>) -> Option<Cow<'a, str>> {
    let peer = k.text(AZURE_SDK_PEER)?;
    let destination = k.text(AZURE_SDK_DESTINATION)?;
    Some(Cow::Owned(join(&peer, "/", &destination)))
}

/// The dependency `type` of a database system (§3.4).
fn db_type<'a>(system: &Cow<'a, str>) -> Cow<'a, str> {
    if SQL_FAMILY.contains(&system.as_ref()) {
        Cow::Borrowed("SQL")
    } else {
        system.clone()
    }
}

#[cfg(test)]
mod tests;
