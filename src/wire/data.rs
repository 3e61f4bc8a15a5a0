//! The domain types carried in `data.baseData` (Track API v2.1 swagger), with their limits.

use std::borrow::Cow;
use std::time::Duration;

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use super::envelope::{Measurements, Properties};
use super::format::TimeSpan;
use super::json::Object;
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

/// Longest duration the service accepts, exclusive: 1000 days (INGESTION.md, "Duration format").
const MAX_DURATION: Duration = Duration::from_secs(1000 * 86_400);

/// `duration` of an [`AvailabilityData`]: a .NET TimeSpan string, valid by construction. Either a
/// [`TimeSpan`] this crate writes, or a caller's text that was checked to be in TimeSpan form
/// (`[d.]hh:mm:ss[.f]`, at most 7 fraction digits, less than 1000 days) and is sent as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AvailabilityDuration<'a>(DurationRepr<'a>);

#[derive(Clone, Debug, PartialEq, Eq)]
enum DurationRepr<'a> {
    Span(TimeSpan),
    Text(Cow<'a, str>),
}

impl Default for AvailabilityDuration<'_> {
    fn default() -> Self {
        AvailabilityDuration(DurationRepr::Span(TimeSpan::default()))
    }
}

impl<'a> AvailabilityDuration<'a> {
    /// `text` when it is a TimeSpan the service accepts, else `None`.
    pub(crate) fn from_text(text: impl Into<Cow<'a, str>>) -> Option<Self> {
        let text = text.into();
        is_timespan(&text).then_some(AvailabilityDuration(DurationRepr::Text(text)))
    }

    /// A duration of less than 1000 days, else `None` (the service refuses longer ones).
    pub(crate) fn from_duration(duration: Duration) -> Option<Self> {
        (duration < MAX_DURATION)
            .then_some(AvailabilityDuration(DurationRepr::Span(TimeSpan(duration))))
    }

    /// A number of milliseconds: finite, not negative and less than 1000 days, else `None`.
    pub(crate) fn from_millis(millis: f64) -> Option<Self> {
        if millis.is_nan() || millis < 0.0 {
            return None;
        }
        Duration::try_from_secs_f64(millis / 1000.0)
            .ok()
            .and_then(Self::from_duration)
    }
}

impl Serialize for AvailabilityDuration<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            DurationRepr::Span(span) => span.serialize(serializer),
            DurationRepr::Text(text) => serializer.serialize_str(text),
        }
    }
}

/// Whether `text` is a .NET TimeSpan as the service accepts it: `[d.]hh:mm:ss[.f{1,7}]`, with
/// at most 3 digits of days (less than 1000 days), hours 0–23, minutes and seconds 0–59.
pub(crate) fn is_timespan(text: &str) -> bool {
    let (days, rest) = match text.split_once('.') {
        // A dot before the first colon separates the days.
        Some((days, rest)) if !days.contains(':') => (Some(days), rest),
        _ => (None, text),
    };
    if let Some(days) = days {
        if !(1..=3).contains(&days.len()) || !days.bytes().all(|c| c.is_ascii_digit()) {
            return false;
        }
    }
    let (clock, fraction) = match rest.split_once('.') {
        Some((clock, fraction)) => (clock, Some(fraction)),
        None => (rest, None),
    };
    if let Some(fraction) = fraction {
        if !(1..=7).contains(&fraction.len()) || !fraction.bytes().all(|c| c.is_ascii_digit()) {
            return false;
        }
    }
    let two = |at: usize, max: u8| match clock.as_bytes().get(at..at + 2) {
        Some(&[a, b]) if a.is_ascii_digit() && b.is_ascii_digit() => {
            (a - b'0') * 10 + (b - b'0') <= max
        }
        _ => false,
    };
    clock.len() == 8
        && clock.as_bytes().get(2) == Some(&b':')
        && clock.as_bytes().get(5) == Some(&b':')
        && two(0, 23)
        && two(3, 59)
        && two(6, 59)
}

/// `AvailabilityData`: the result of an availability test (a log record with the
/// `microsoft.availability.*` attributes, MAPPING.md §4.2).
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AvailabilityData<'a> {
    #[serde(serialize_with = "ver")]
    pub(crate) ver: (),
    pub(crate) id: Bounded<'a, 512>,
    pub(crate) name: Bounded<'a, 1024>,
    pub(crate) duration: AvailabilityDuration<'a>,
    pub(crate) success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) run_location: Option<Bounded<'a, 1024>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) message: Option<Bounded<'a, 8192>>,
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
    Availability(AvailabilityData<'a>),
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
            Data::Availability(_) => "Microsoft.ApplicationInsights.Availability",
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
            Data::Availability(_) => "AvailabilityData",
        }
    }

    /// The longest of the item's own long texts: a message, an exception's message or stack, an
    /// availability result's message.
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
            Data::Availability(d) => d.message.as_mut().map(Bounded::text_mut),
            _ => None,
        }
    }

    pub(crate) fn properties(&self) -> Option<&Properties<'a>> {
        Some(match self {
            Data::Request(d) => &d.properties,
            Data::RemoteDependency(d) => &d.properties,
            Data::Message(d) => &d.properties,
            Data::Exception(d) => &d.properties,
            Data::Event(d) => &d.properties,
            Data::Metric(d) => &d.properties,
            Data::Availability(d) => &d.properties,
        })
    }

    /// The custom measurements; metrics have none.
    pub(crate) fn measurements(&self) -> Option<&Measurements<'a>> {
        match self {
            Data::Request(d) => Some(&d.measurements),
            Data::RemoteDependency(d) => Some(&d.measurements),
            Data::Message(d) => Some(&d.measurements),
            Data::Exception(d) => Some(&d.measurements),
            Data::Event(d) => Some(&d.measurements),
            Data::Availability(d) => Some(&d.measurements),
            Data::Metric(_) => None,
        }
    }

    pub(crate) fn measurements_mut(&mut self) -> Option<&mut Measurements<'a>> {
        match self {
            Data::Request(d) => Some(&mut d.measurements),
            Data::RemoteDependency(d) => Some(&mut d.measurements),
            Data::Message(d) => Some(&mut d.measurements),
            Data::Exception(d) => Some(&mut d.measurements),
            Data::Event(d) => Some(&mut d.measurements),
            Data::Availability(d) => Some(&mut d.measurements),
            Data::Metric(_) => None,
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
            Data::Availability(d) => &mut d.properties,
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
            Data::Availability(d) => s.serialize_field("baseData", d)?,
        }
        s.end()
    }
}

// The hand-written JSON of the hot path (see `super::json`): the same bytes as the
// `Serialize` implementations above, field for field and in the same order.

impl SeverityLevel {
    /// The swagger's name of the level.
    fn as_str(self) -> &'static str {
        match self {
            SeverityLevel::Verbose => "Verbose",
            SeverityLevel::Information => "Information",
            SeverityLevel::Warning => "Warning",
            SeverityLevel::Error => "Error",
            SeverityLevel::Critical => "Critical",
        }
    }
}

impl DataPointKind {
    /// The swagger's name of the kind.
    fn as_str(self) -> &'static str {
        match self {
            DataPointKind::Measurement => "Measurement",
            DataPointKind::Aggregation => "Aggregation",
        }
    }
}

/// Writes `properties` and `measurements` when they are not empty.
fn write_custom(o: &mut Object<'_>, properties: &Properties<'_>, measurements: &Measurements<'_>) {
    if !properties.is_empty() {
        properties.write_json(o.key("properties"));
    }
    if !measurements.is_empty() {
        measurements.write_json(o.key("measurements"));
    }
}

fn write_duration(o: &mut Object<'_>, duration: &TimeSpan) {
    let (bytes, len) = duration.to_bytes();
    // Digits and punctuation only: nothing to escape.
    o.str(
        "duration",
        std::str::from_utf8(&bytes[..len]).unwrap_or_default(),
    );
}

impl AvailabilityData<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut o = Object::new(out);
        o.int("ver", DATA_VERSION);
        o.str("id", self.id.as_str());
        o.str("name", self.name.as_str());
        match &self.duration.0 {
            DurationRepr::Span(span) => write_duration(&mut o, span),
            DurationRepr::Text(text) => o.str("duration", text),
        }
        o.bool("success", self.success);
        o.opt_str(
            "runLocation",
            self.run_location.as_ref().map(Bounded::as_str),
        );
        o.opt_str("message", self.message.as_ref().map(Bounded::as_str));
        write_custom(&mut o, &self.properties, &self.measurements);
        o.end();
    }
}

fn write_severity(o: &mut Object<'_>, level: Option<SeverityLevel>) {
    o.opt_str("severityLevel", level.map(SeverityLevel::as_str));
}

impl RequestData<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut o = Object::new(out);
        o.int("ver", DATA_VERSION);
        o.str("id", self.id.as_str());
        o.str("name", self.name.as_str());
        write_duration(&mut o, &self.duration);
        o.bool("success", self.success);
        o.str("responseCode", self.response_code.as_str());
        o.opt_str("source", self.source.as_ref().map(Bounded::as_str));
        o.opt_str("url", self.url.as_ref().map(Bounded::as_str));
        write_custom(&mut o, &self.properties, &self.measurements);
        o.end();
    }
}

impl RemoteDependencyData<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut o = Object::new(out);
        o.int("ver", DATA_VERSION);
        o.str("name", self.name.as_str());
        o.opt_str("id", self.id.as_ref().map(Bounded::as_str));
        o.opt_str("resultCode", self.result_code.as_ref().map(Bounded::as_str));
        write_duration(&mut o, &self.duration);
        o.bool("success", self.success);
        o.opt_str("data", self.data.as_ref().map(Bounded::as_str));
        o.opt_str("type", self.type_.as_ref().map(Bounded::as_str));
        o.opt_str("target", self.target.as_ref().map(Bounded::as_str));
        write_custom(&mut o, &self.properties, &self.measurements);
        o.end();
    }
}

impl MessageData<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut o = Object::new(out);
        o.int("ver", DATA_VERSION);
        o.str("message", self.message.as_str());
        write_severity(&mut o, self.severity_level);
        write_custom(&mut o, &self.properties, &self.measurements);
        o.end();
    }
}

impl StackFrame<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut o = Object::new(out);
        o.int("level", self.level);
        o.str("method", self.method.as_str());
        o.opt_str("assembly", self.assembly.as_ref().map(Bounded::as_str));
        o.opt_str("fileName", self.file_name.as_ref().map(Bounded::as_str));
        if let Some(line) = self.line {
            o.int("line", line);
        }
        o.end();
    }
}

impl ExceptionDetails<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut o = Object::new(out);
        o.opt_str("typeName", self.type_name.as_ref().map(Bounded::as_str));
        o.str("message", self.message.as_str());
        if let Some(full) = self.has_full_stack {
            o.bool("hasFullStack", full);
        }
        o.opt_str("stack", self.stack.as_ref().map(Bounded::as_str));
        if !self.parsed_stack.is_empty() {
            write_array(
                o.key("parsedStack"),
                &self.parsed_stack,
                StackFrame::write_json,
            );
        }
        o.end();
    }
}

/// Writes `[a,b,...]`, each element with `write`.
fn write_array<T>(out: &mut Vec<u8>, items: &[T], write: impl Fn(&T, &mut Vec<u8>)) {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write(item, out);
    }
    out.push(b']');
}

impl ExceptionData<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut o = Object::new(out);
        o.int("ver", DATA_VERSION);
        write_array(
            o.key("exceptions"),
            &self.exceptions,
            ExceptionDetails::write_json,
        );
        write_severity(&mut o, self.severity_level);
        o.opt_str("problemId", self.problem_id.as_ref().map(Bounded::as_str));
        write_custom(&mut o, &self.properties, &self.measurements);
        o.end();
    }
}

impl EventData<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut o = Object::new(out);
        o.int("ver", DATA_VERSION);
        o.str("name", self.name.as_str());
        write_custom(&mut o, &self.properties, &self.measurements);
        o.end();
    }
}

impl DataPoint<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut o = Object::new(out);
        o.opt_str("ns", self.ns.as_ref().map(Bounded::as_str));
        o.str("name", self.name.as_str());
        o.opt_str("kind", self.kind.map(DataPointKind::as_str));
        o.opt_f64("value", Some(self.value));
        if let Some(count) = self.count {
            o.int("count", count);
        }
        o.opt_f64("min", self.min);
        o.opt_f64("max", self.max);
        o.opt_f64("stdDev", self.std_dev);
        o.end();
    }
}

impl MetricData<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut o = Object::new(out);
        o.int("ver", DATA_VERSION);
        write_array(o.key("metrics"), &self.metrics, DataPoint::write_json);
        if !self.properties.is_empty() {
            self.properties.write_json(o.key("properties"));
        }
        o.end();
    }
}

impl Data<'_> {
    /// Appends `{"baseType":…,"baseData":{…}}`: the same bytes as the [`Serialize`] form.
    pub(crate) fn write_json(&self, out: &mut Vec<u8>) {
        let mut o = Object::new(out);
        o.str("baseType", self.base_type());
        let out = o.key("baseData");
        match self {
            Data::Request(d) => d.write_json(out),
            Data::RemoteDependency(d) => d.write_json(out),
            Data::Message(d) => d.write_json(out),
            Data::Exception(d) => d.write_json(out),
            Data::Event(d) => d.write_json(out),
            Data::Metric(d) => d.write_json(out),
            Data::Availability(d) => d.write_json(out),
        }
        o.end();
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    /// Every data type, once with every optional field and awkward text, once with none.
    fn all_kinds() -> Vec<Data<'static>> {
        let text = "a \"quoted\" \\ text\nwith ü, 😀 and \u{1}";
        let mut properties = Properties::default();
        properties.insert("k\"ey", text);
        properties.insert("plain", "value");
        let mut measurements = Measurements::default();
        measurements.insert("m\n", 1.5);
        measurements.insert("big", 1e21);
        measurements.insert("int", 3.0);
        let duration = TimeSpan::between(
            UNIX_EPOCH,
            UNIX_EPOCH + Duration::from_micros(90_061_000_001),
        );
        let frame = StackFrame {
            level: 0,
            method: text.into(),
            assembly: Some("asm".into()),
            file_name: Some("src/x.rs".into()),
            line: Some(42),
        };
        vec![
            Data::Request(RequestData {
                id: text.into(),
                name: text.into(),
                duration,
                success: true,
                response_code: "200".into(),
                source: Some(text.into()),
                url: Some(text.into()),
                properties: properties.clone(),
                measurements: measurements.clone(),
                ..RequestData::default()
            }),
            Data::Request(RequestData::default()),
            Data::RemoteDependency(RemoteDependencyData {
                name: text.into(),
                id: Some("id".into()),
                result_code: Some("500".into()),
                duration,
                success: false,
                data: Some(text.into()),
                type_: Some("HTTP".into()),
                target: Some(text.into()),
                properties: properties.clone(),
                measurements: measurements.clone(),
                ..RemoteDependencyData::default()
            }),
            Data::RemoteDependency(RemoteDependencyData::default()),
            Data::Message(MessageData {
                message: text.into(),
                severity_level: Some(SeverityLevel::Warning),
                properties: properties.clone(),
                measurements: measurements.clone(),
                ..MessageData::default()
            }),
            Data::Message(MessageData::default()),
            Data::Exception(ExceptionData {
                exceptions: vec![
                    ExceptionDetails {
                        type_name: Some(text.into()),
                        message: text.into(),
                        has_full_stack: Some(true),
                        stack: Some(text.into()),
                        parsed_stack: vec![frame.clone(), StackFrame::default()],
                    },
                    ExceptionDetails::default(),
                ],
                severity_level: Some(SeverityLevel::Critical),
                problem_id: Some(text.into()),
                properties: properties.clone(),
                measurements: measurements.clone(),
                ..ExceptionData::default()
            }),
            Data::Exception(ExceptionData::default()),
            Data::Event(EventData {
                name: text.into(),
                properties: properties.clone(),
                measurements,
                ..EventData::default()
            }),
            Data::Event(EventData::default()),
            Data::Metric(MetricData {
                metrics: vec![
                    DataPoint {
                        ns: Some(text.into()),
                        name: text.into(),
                        kind: Some(DataPointKind::Aggregation),
                        value: -0.1,
                        count: Some(7),
                        min: Some(-1e-7),
                        max: Some(123_456_789.5),
                        std_dev: Some(0.25),
                    },
                    DataPoint::default(),
                ],
                properties,
                ..MetricData::default()
            }),
            Data::Metric(MetricData::default()),
            Data::Availability(AvailabilityData {
                id: text.into(),
                name: text.into(),
                duration: AvailabilityDuration::from_text("1.02:03:04.5").unwrap_or_default(),
                success: true,
                run_location: Some(text.into()),
                message: Some(text.into()),
                properties: Properties::default(),
                measurements: Measurements::default(),
                ..AvailabilityData::default()
            }),
            Data::Availability(AvailabilityData {
                duration: AvailabilityDuration::from_millis(1250.0).unwrap_or_default(),
                message: Some("".into()),
                ..AvailabilityData::default()
            }),
        ]
    }

    #[test]
    fn every_data_type_writes_the_same_bytes_as_serde() {
        for data in all_kinds() {
            let mut fast = Vec::new();
            data.write_json(&mut fast);
            let slow = serde_json::to_vec(&data).unwrap_or_default();
            assert_eq!(
                String::from_utf8_lossy(&fast),
                String::from_utf8_lossy(&slow),
                "{}",
                data.base_type()
            );
        }
    }
}

#[cfg(test)]
mod availability_tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    #[test]
    fn timespan_texts() {
        for ok in [
            "00:00:00",
            "00:00:05",
            "00:00:01.5",
            "23:59:59.9999999",
            "1.02:03:04",
            "999.23:59:59.9999999",
            "0.00:00:00.000",
            "0.00:00:01.234567",
        ] {
            assert!(is_timespan(ok), "{ok}");
            assert!(AvailabilityDuration::from_text(ok).is_some(), "{ok}");
        }
        for bad in [
            "",
            "5",
            "5000",
            "0:00:05",
            "0:00:00:04.4786555",
            "00:00:02.227.99999999988358",
            "00:00:00.12345678",
            "1000.00:00:00",
            "24:00:00",
            "00:60:00",
            "00:00:60",
            "-00:00:01",
            "00:00:00.",
            ".00:00:00",
            "1.2.00:00:00",
            "00:00",
            "PT1S",
            "00:00:0a",
            "00:00:05 ",
            "٠٠:٠٠:٠٥",
            "00:00:0é",
        ] {
            assert!(!is_timespan(bad), "{bad}");
            assert!(AvailabilityDuration::from_text(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn durations_from_numbers() {
        let text = |d: Option<AvailabilityDuration<'_>>| {
            d.map(|d| serde_json::to_value(d).unwrap_or_default())
        };
        let table = [
            (0.0, Some("0.00:00:00.000000")),
            (5000.0, Some("0.00:00:05.000000")),
            (1.5, Some("0.00:00:00.001500")),
            (90_061_001.0, Some("1.01:01:01.001000")),
            (999.0 * 86_400_000.0, Some("999.00:00:00.000000")),
            (1000.0 * 86_400_000.0, None),
            (-1.0, None),
            (-0.0, Some("0.00:00:00.000000")),
            (f64::NAN, None),
            (f64::INFINITY, None),
            (f64::MAX, None),
        ];
        for (millis, want) in table {
            assert_eq!(
                text(AvailabilityDuration::from_millis(millis)),
                want.map(Value::from),
                "{millis}"
            );
        }
        assert!(AvailabilityDuration::from_duration(Duration::MAX).is_none());
    }

    #[test]
    fn availability_data_shape() {
        let mut properties = Properties::default();
        properties.insert("k", "v");
        let data = Data::Availability(AvailabilityData {
            id: Bounded::new("i".repeat(600)),
            name: "ping".into(),
            duration: AvailabilityDuration::from_text("00:00:05").unwrap_or_default(),
            success: true,
            run_location: Some("westeurope".into()),
            message: Some(Bounded::new("m".repeat(9000))),
            properties,
            ..AvailabilityData::default()
        });
        assert_eq!(
            data.envelope_name(),
            "Microsoft.ApplicationInsights.Availability"
        );
        let v = serde_json::to_value(&data).unwrap_or_default();
        assert_eq!(v["baseType"], "AvailabilityData");
        let d = &v["baseData"];
        assert_eq!(d["ver"], 2);
        assert_eq!(d["id"].as_str().map(str::len), Some(512));
        assert_eq!(d["message"].as_str().map(str::len), Some(8192));
        assert_eq!(d["duration"], "00:00:05");
        assert_eq!(d["success"], true);
        assert_eq!(d["runLocation"], "westeurope");
        assert_eq!(d["properties"], json!({"k": "v"}));
        assert!(d.get("measurements").is_none());

        // Optional fields are left out; an empty message is sent (PY sends it).
        let data = Data::Availability(AvailabilityData {
            id: "1".into(),
            name: "ping".into(),
            message: Some("".into()),
            ..AvailabilityData::default()
        });
        assert_eq!(
            serde_json::to_value(&data).unwrap_or_default()["baseData"],
            json!({"ver": 2, "id": "1", "name": "ping", "duration": "0.00:00:00.000000",
                   "success": false, "message": ""})
        );
    }

    proptest! {
        #[test]
        fn timespan_check_never_panics(text in "\\PC{0,24}") {
            let _ = is_timespan(&text);
        }

        /// Whatever is accepted as a duration text is accepted by the local ingestion
        /// server's independent check, and the other way round.
        #[cfg(feature = "testing")]
        #[test]
        fn duration_texts_agree_with_the_ingestion_check(
            text in "[0-9]{0,4}[.]?[0-9]{1,3}:[0-9]{1,3}:[0-9]{1,3}([.][0-9]{0,8})?",
        ) {
            let item = json!({
                "name": "Microsoft.ApplicationInsights.Availability",
                "time": crate::wire::Timestamp(std::time::SystemTime::now()).to_string(),
                "iKey": "00000000-0000-4000-8000-000000000000",
                "data": {"baseType": "AvailabilityData", "baseData": {
                    "ver": 2, "id": "1", "name": "n", "duration": text, "success": true}},
            });
            let accepted = crate::testing::validate_envelope(&item).is_ok();
            prop_assert_eq!(AvailabilityDuration::from_text(text.as_str()).is_some(), accepted);
        }
    }
}
