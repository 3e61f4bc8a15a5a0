//! Telemetry items as Live Metrics sees them, and the documents it sends (LIVE-METRICS.md §8).
//!
//! An [`Item`] is read from the Track item that `convert` builds for a span, a span event or a
//! log record, so Live Metrics uses exactly the Track mapping's field rules (names, URLs,
//! response codes, success, dependency data, exception and message text, custom properties).

use std::borrow::Cow;

use serde::Serialize;

use crate::wire::limits::truncate_str;
use crate::wire::Data;

/// The telemetry types Live Metrics collects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Kind {
    Request,
    Dependency,
    Exception,
    #[default]
    Trace,
}

impl Kind {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "Request" => Kind::Request,
            "Dependency" => Kind::Dependency,
            "Exception" => Kind::Exception,
            "Trace" => Kind::Trace,
            _ => return None,
        })
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Request => "Request",
            Kind::Dependency => "Dependency",
            Kind::Exception => "Exception",
            Kind::Trace => "Trace",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// One telemetry item's fields, borrowed from its Track item. Fields a type does not have are
/// empty.
#[derive(Clone, Debug, Default)]
pub(crate) struct Item<'a> {
    pub(crate) kind: Kind,
    pub(crate) name: &'a str,
    pub(crate) url: &'a str,
    /// `ResponseCode` of a request, `ResultCode` of a dependency.
    pub(crate) code: &'a str,
    pub(crate) success: bool,
    pub(crate) duration_ms: f64,
    pub(crate) target: &'a str,
    pub(crate) type_: &'a str,
    pub(crate) data: &'a str,
    /// A trace's message, or an exception's message.
    pub(crate) message: &'a str,
    pub(crate) stack: &'a str,
    pub(crate) exception_type: &'a str,
    /// Custom properties (`CustomDimensions`).
    pub(crate) properties: Vec<(&'a str, &'a str)>,
}

impl<'a> Item<'a> {
    /// The item of a Track item: requests, dependencies, exceptions and traces (messages);
    /// `None` for the other types (custom events, availability results, metrics), which Live
    /// Metrics does not collect from OpenTelemetry.
    pub(crate) fn from_data(data: &'a Data<'a>) -> Option<Self> {
        Some(match data {
            Data::Request(r) => Item {
                kind: Kind::Request,
                name: r.name.as_str(),
                url: r.url.as_ref().map_or("", |u| u.as_str()),
                code: r.response_code.as_str(),
                success: r.success,
                duration_ms: r.duration.0.as_secs_f64() * 1000.0,
                properties: custom(r.properties.iter()),
                ..Item::default()
            },
            Data::RemoteDependency(d) => Item {
                kind: Kind::Dependency,
                name: d.name.as_str(),
                code: d.result_code.as_ref().map_or("", |c| c.as_str()),
                success: d.success,
                duration_ms: d.duration.0.as_secs_f64() * 1000.0,
                target: d.target.as_ref().map_or("", |t| t.as_str()),
                type_: d.type_.as_ref().map_or("", |t| t.as_str()),
                data: d.data.as_ref().map_or("", |t| t.as_str()),
                properties: custom(d.properties.iter()),
                ..Item::default()
            },
            Data::Exception(e) => {
                let first = e.exceptions.first();
                Item {
                    kind: Kind::Exception,
                    message: first.map_or("", |x| x.message.as_str()),
                    stack: first
                        .and_then(|x| x.stack.as_ref())
                        .map_or("", |s| s.as_str()),
                    exception_type: first
                        .and_then(|x| x.type_name.as_ref())
                        .map_or("", |t| t.as_str()),
                    properties: custom(e.properties.iter()),
                    ..Item::default()
                }
            }
            Data::Message(m) => Item {
                kind: Kind::Trace,
                message: m.message.as_str(),
                properties: custom(m.properties.iter()),
                ..Item::default()
            },
            _ => return None,
        })
    }
}

/// The custom dimensions of an item: its properties without the exporter's own `_MS.*` ones
/// (as the JS exporter's `createCustomDimsFromAttributes`).
fn custom<'a>(properties: impl Iterator<Item = (&'a str, &'a str)>) -> Vec<(&'a str, &'a str)> {
    properties.filter(|(k, _)| !k.starts_with("_MS.")).collect()
}

/// A `DocumentIngress` with its type's fields (SPEC maximum lengths applied).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Document {
    pub(crate) document_type: &'static str,
    pub(crate) document_stream_ids: Vec<String>,
    pub(crate) properties: Vec<Property>,
    #[serde(flatten)]
    pub(crate) fields: Fields,
}

/// A `KeyValuePairString` of a document's `Properties`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Property {
    pub(crate) key: String,
    pub(crate) value: String,
}

/// The fields of each document type.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub(crate) enum Fields {
    #[serde(rename_all = "PascalCase")]
    Request {
        name: String,
        url: String,
        response_code: String,
        duration: String,
    },
    #[serde(rename_all = "PascalCase")]
    RemoteDependency {
        name: String,
        command_name: String,
        result_code: String,
        duration: String,
    },
    #[serde(rename_all = "PascalCase")]
    Exception {
        exception_type: String,
        exception_message: String,
    },
    #[serde(rename_all = "PascalCase")]
    Trace { message: String },
}

fn cut(s: &str, max: usize) -> String {
    truncate_str(s, max).to_owned()
}

impl Document {
    /// The document of `item` for the streams `ids`.
    pub(crate) fn new(item: &Item<'_>, ids: Vec<String>) -> Self {
        let (document_type, fields) = match item.kind {
            Kind::Request => (
                "Request",
                Fields::Request {
                    name: cut(item.name, 1024),
                    url: cut(item.url, 2048),
                    response_code: cut(item.code, 1024),
                    duration: iso_duration(item.duration_ms).into_owned(),
                },
            ),
            Kind::Dependency => (
                "RemoteDependency",
                Fields::RemoteDependency {
                    name: cut(item.name, 1024),
                    command_name: cut(item.data, 2048),
                    result_code: cut(item.code, 1024),
                    duration: iso_duration(item.duration_ms).into_owned(),
                },
            ),
            Kind::Exception => (
                "Exception",
                Fields::Exception {
                    exception_type: cut(item.exception_type, 1024),
                    exception_message: cut(item.message, 32_768),
                },
            ),
            Kind::Trace => (
                "Trace",
                Fields::Trace {
                    message: cut(item.message, 32_768),
                },
            ),
        };
        Document {
            document_type,
            document_stream_ids: ids,
            properties: item
                .properties
                .iter()
                .map(|(k, v)| Property {
                    key: (*k).to_owned(),
                    value: (*v).to_owned(),
                })
                .collect(),
            fields,
        }
    }
}

/// An ISO 8601 duration in seconds with up to 7 decimals (§8 R): 1.5 ms is `PT0.0015S`, 2 s is
/// `PT2S`.
pub(crate) fn iso_duration(ms: f64) -> Cow<'static, str> {
    if !(ms.is_finite() && ms > 0.0) {
        return Cow::Borrowed("PT0S");
    }
    let ticks = (ms * 10_000.0).round() as u64;
    let (secs, frac) = (ticks / 10_000_000, ticks % 10_000_000);
    if frac == 0 {
        return Cow::Owned(format!("PT{secs}S"));
    }
    let digits = format!("{frac:07}");
    Cow::Owned(format!("PT{secs}.{}S", digits.trim_end_matches('0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_durations() {
        assert_eq!(iso_duration(0.0), "PT0S");
        assert_eq!(iso_duration(-3.0), "PT0S");
        assert_eq!(iso_duration(f64::NAN), "PT0S");
        assert_eq!(iso_duration(1.5), "PT0.0015S");
        assert_eq!(iso_duration(1.0105), "PT0.0010105S");
        assert_eq!(iso_duration(2000.0), "PT2S");
        assert_eq!(iso_duration(1500.0), "PT1.5S");
        assert_eq!(iso_duration(1_234_567_890.0), "PT1234567.89S");
    }

    #[cfg(feature = "trace")]
    #[test]
    fn items_follow_the_track_mapping() {
        use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId};
        use opentelemetry::KeyValue;
        use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
        use std::time::{Duration, UNIX_EPOCH};

        let start = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let span = SpanData {
            span_context: SpanContext::new(
                TraceId::from(1_u128),
                SpanId::from(2_u64),
                TraceFlags::SAMPLED,
                false,
                Default::default(),
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Client,
            name: "GET".into(),
            start_time: start,
            end_time: start + Duration::from_micros(12_500),
            attributes: vec![
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new("url.full", "https://inventory.example/stock?id=7"),
                KeyValue::new("http.response.status_code", 503),
                KeyValue::new("tenant", "contoso"),
            ],
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::error("unavailable"),
            instrumentation_scope: Default::default(),
        };
        let tags = crate::wire::SharedTags::default();
        let cx = crate::convert::Context {
            ikey: "k",
            tags: &tags,
        };
        let mut out = Vec::new();
        crate::convert::span_to_envelopes(&span, &cx, false, &mut out);
        let item = Item::from_data(&out[0].data).unwrap_or_default();
        assert_eq!(item.kind, Kind::Dependency);
        assert_eq!(item.name, "GET /stock");
        assert_eq!(item.code, "503");
        assert!(!item.success);
        assert_eq!(item.duration_ms, 12.5);
        assert_eq!(item.target, "inventory.example");
        assert_eq!(item.type_, "HTTP");
        assert_eq!(item.data, "https://inventory.example/stock?id=7");
        assert_eq!(item.properties, vec![("tenant", "contoso")]);
        let doc = serde_json::to_value(Document::new(&item, vec!["s".into()])).unwrap_or_default();
        assert_eq!(doc["DocumentType"], "RemoteDependency");
        assert_eq!(doc["CommandName"], "https://inventory.example/stock?id=7");
        assert_eq!(doc["ResultCode"], "503");
        assert_eq!(doc["Duration"], "PT0.0125S");
    }

    #[test]
    fn documents_serialize_with_their_type_fields() {
        let item = Item {
            kind: Kind::Request,
            name: "GET /orders",
            url: "http://shop/orders",
            code: "500",
            duration_ms: 12.0,
            properties: vec![("tenant", "a")],
            ..Item::default()
        };
        let doc = Document::new(&item, vec!["all-types-default".into()]);
        let json = serde_json::to_value(&doc).unwrap_or_default();
        assert_eq!(
            json,
            serde_json::json!({
                "DocumentType": "Request",
                "DocumentStreamIds": ["all-types-default"],
                "Properties": [{"key": "tenant", "value": "a"}],
                "Name": "GET /orders",
                "Url": "http://shop/orders",
                "ResponseCode": "500",
                "Duration": "PT0.012S"
            })
        );
        let trace = Document::new(
            &Item {
                kind: Kind::Trace,
                message: "hello",
                ..Item::default()
            },
            vec!["s".into()],
        );
        let json = serde_json::to_value(&trace).unwrap_or_default();
        assert_eq!(json["DocumentType"], "Trace");
        assert_eq!(json["Message"], "hello");
    }
}
