//! The domain types carried in `data.baseData` (Track API v2.1 swagger), with their limits.

use std::borrow::Cow;

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use super::envelope::{Measurements, Properties};
use super::format::TimeSpan;
use super::limits::Bounded;

/// `baseData.ver` of every domain type (MAPPING.md §1.1).
const DATA_VERSION: i32 = 2;

fn is_empty_props(p: &Properties<'_>) -> bool {
    p.is_empty()
}

fn is_empty_measurements(m: &Measurements<'_>) -> bool {
    m.is_empty()
}

fn ver<S: Serializer>(_: &(), s: S) -> Result<S::Ok, S::Error> {
    s.serialize_i32(DATA_VERSION)
}

/// `RequestData`: an incoming request (SERVER and CONSUMER spans).
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RequestData<'a> {
    #[serde(serialize_with = "ver")]
    pub(crate) ver: (),
    pub(crate) id: Bounded<'a, 512>,
    pub(crate) name: Bounded<'a, 1024>,
    pub(crate) duration: TimeSpan,
    pub(crate) success: bool,
    pub(crate) response_code: Bounded<'a, 1024>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) source: Option<Bounded<'a, 1024>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) url: Option<Bounded<'a, 2048>>,
    #[serde(skip_serializing_if = "is_empty_props")]
    pub(crate) properties: Properties<'a>,
    #[serde(skip_serializing_if = "is_empty_measurements")]
    pub(crate) measurements: Measurements<'a>,
}

/// `RemoteDependencyData`: an outgoing call or an in-process operation (CLIENT, PRODUCER and
/// INTERNAL spans).
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RemoteDependencyData<'a> {
    #[serde(serialize_with = "ver")]
    pub(crate) ver: (),
    pub(crate) name: Bounded<'a, 1024>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) id: Option<Bounded<'a, 512>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) result_code: Option<Bounded<'a, 1024>>,
    pub(crate) duration: TimeSpan,
    pub(crate) success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) data: Option<Bounded<'a, 8192>>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub(crate) type_: Option<Bounded<'a, 1024>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) target: Option<Bounded<'a, 1024>>,
    #[serde(skip_serializing_if = "is_empty_props")]
    pub(crate) properties: Properties<'a>,
    #[serde(skip_serializing_if = "is_empty_measurements")]
    pub(crate) measurements: Measurements<'a>,
}

/// Severity of a trace or an exception, sent as the swagger's string enum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(crate) enum SeverityLevel {
    Verbose,
    Information,
    Warning,
    Error,
    Critical,
}

/// `MessageData`: a trace (log line or span event).
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MessageData<'a> {
    #[serde(serialize_with = "ver")]
    pub(crate) ver: (),
    pub(crate) message: Bounded<'a, 32768>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) severity_level: Option<SeverityLevel>,
    #[serde(skip_serializing_if = "is_empty_props")]
    pub(crate) properties: Properties<'a>,
    #[serde(skip_serializing_if = "is_empty_measurements")]
    pub(crate) measurements: Measurements<'a>,
}

/// One frame of a parsed stack (`StackFrame`).
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StackFrame<'a> {
    pub(crate) level: i32,
    pub(crate) method: Bounded<'a, 1024>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) assembly: Option<Bounded<'a, 1024>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) file_name: Option<Bounded<'a, 1024>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) line: Option<i32>,
}

/// At most this many parsed frames are sent (MAPPING.md §10.1).
pub(crate) const MAX_PARSED_FRAMES: usize = 100;

/// `ExceptionDetails`: one exception of an `ExceptionData`.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ExceptionDetails<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) type_name: Option<Bounded<'a, 1024>>,
    pub(crate) message: Bounded<'a, 32768>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) has_full_stack: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) stack: Option<Bounded<'a, 32768>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) parsed_stack: Vec<StackFrame<'a>>,
}

/// `ExceptionData`: an exception (span event `exception`, or a log record with `exception.*`).
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ExceptionData<'a> {
    #[serde(serialize_with = "ver")]
    pub(crate) ver: (),
    pub(crate) exceptions: Vec<ExceptionDetails<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) severity_level: Option<SeverityLevel>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) problem_id: Option<Bounded<'a, 1024>>,
    #[serde(skip_serializing_if = "is_empty_props")]
    pub(crate) properties: Properties<'a>,
    #[serde(skip_serializing_if = "is_empty_measurements")]
    pub(crate) measurements: Measurements<'a>,
}

/// `EventData`: a custom event.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EventData<'a> {
    #[serde(serialize_with = "ver")]
    pub(crate) ver: (),
    pub(crate) name: Bounded<'a, 512>,
    #[serde(skip_serializing_if = "is_empty_props")]
    pub(crate) properties: Properties<'a>,
    #[serde(skip_serializing_if = "is_empty_measurements")]
    pub(crate) measurements: Measurements<'a>,
}

/// `DataPointType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[allow(dead_code)]
pub(crate) enum DataPointKind {
    Measurement,
    Aggregation,
}

/// `DataPoint`: one metric value (the service stores only the first point of a `MetricData`).
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DataPoint<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ns: Option<Bounded<'a, 256>>,
    pub(crate) name: Bounded<'a, 1024>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) kind: Option<DataPointKind>,
    pub(crate) value: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) count: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) std_dev: Option<f64>,
}

/// `MetricData` (the swagger calls it `MetricsData`; the wire `baseType` is `MetricData`).
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MetricData<'a> {
    #[serde(serialize_with = "ver")]
    pub(crate) ver: (),
    pub(crate) metrics: Vec<DataPoint<'a>>,
    #[serde(skip_serializing_if = "is_empty_props")]
    pub(crate) properties: Properties<'a>,
}

/// `data` of an envelope: `baseType` plus `baseData`.
#[derive(Clone, Debug)]
pub(crate) enum Data<'a> {
    Request(RequestData<'a>),
    RemoteDependency(RemoteDependencyData<'a>),
    Message(MessageData<'a>),
    Exception(ExceptionData<'a>),
    Event(EventData<'a>),
    Metric(MetricData<'a>),
}

impl<'a> Data<'a> {
    /// The envelope `name` (long form, MAPPING.md §1.1).
    pub(crate) fn envelope_name(&self) -> &'static str {
        match self {
            Data::Request(_) => "Microsoft.ApplicationInsights.Request",
            Data::RemoteDependency(_) => "Microsoft.ApplicationInsights.RemoteDependency",
            Data::Message(_) => "Microsoft.ApplicationInsights.Message",
            Data::Exception(_) => "Microsoft.ApplicationInsights.Exception",
            Data::Event(_) => "Microsoft.ApplicationInsights.Event",
            Data::Metric(_) => "Microsoft.ApplicationInsights.Metric",
        }
    }

    /// The `baseType`.
    pub(crate) fn base_type(&self) -> &'static str {
        match self {
            Data::Request(_) => "RequestData",
            Data::RemoteDependency(_) => "RemoteDependencyData",
            Data::Message(_) => "MessageData",
            Data::Exception(_) => "ExceptionData",
            Data::Event(_) => "EventData",
            Data::Metric(_) => "MetricData",
        }
    }

    /// The longest of the item's own long texts: a message, an exception's message or stack.
    pub(crate) fn longest_text_mut(&mut self) -> Option<&mut Cow<'a, str>> {
        match self {
            Data::Message(d) => Some(d.message.text_mut()),
            Data::Exception(d) => d
                .exceptions
                .iter_mut()
                .flat_map(|e| {
                    std::iter::once(e.message.text_mut())
                        .chain(e.stack.as_mut().map(Bounded::text_mut))
                })
                .max_by_key(|t| t.len()),
            _ => None,
        }
    }

    pub(crate) fn properties_mut(&mut self) -> Option<&mut Properties<'a>> {
        Some(match self {
            Data::Request(d) => &mut d.properties,
            Data::RemoteDependency(d) => &mut d.properties,
            Data::Message(d) => &mut d.properties,
            Data::Exception(d) => &mut d.properties,
            Data::Event(d) => &mut d.properties,
            Data::Metric(d) => &mut d.properties,
        })
    }
}

impl Serialize for Data<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Data", 2)?;
        s.serialize_field("baseType", self.base_type())?;
        match self {
            Data::Request(d) => s.serialize_field("baseData", d)?,
            Data::RemoteDependency(d) => s.serialize_field("baseData", d)?,
            Data::Message(d) => s.serialize_field("baseData", d)?,
            Data::Exception(d) => s.serialize_field("baseData", d)?,
            Data::Event(d) => s.serialize_field("baseData", d)?,
            Data::Metric(d) => s.serialize_field("baseData", d)?,
        }
        s.end()
    }
}
