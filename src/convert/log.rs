//! Log records → `ExceptionData` / `EventData` / `AvailabilityData` / `MessageData`
//! (MAPPING.md §4, the Python exporter's order with the recommended "R" rules).
//!
//! Classification, first match wins:
//!
//! 1. **exception**: the record has `exception.type` or `exception.message` (present, even
//!    empty; §4.1);
//! 2. **custom event**: `microsoft.custom_event.name` (or the Python exporter's legacy event
//!    marker attribute) is present;
//! 3. **availability result**: `microsoft.availability.id`, `.name`, `.duration` and
//!    `.success` are all present and not empty, and the duration is a TimeSpan string or a
//!    number of milliseconds (see [`availability`] for the fields);
//! 4. **exception**, beyond the official exporters: the severity is `ERROR` or higher and the
//!    record has a non-empty `error` attribute. That is how `tracing` users log errors
//!    (`tracing::error!(error = %e, "...")`: the appender records `%e` as the attribute `error`,
//!    and only a `&dyn Error` value as `exception.message`), and it puts those errors under
//!    Failures in the portal. It comes after the explicit markers: an event or an availability
//!    test that failed with an `error` stays what it says it is;
//! 5. otherwise a **trace** (`MessageData`).
//!
//! The `microsoft.availability.*` attributes are consumed by an availability result (PY
//! `_IGNORED_ATTRS`). A record that does not become one (a required attribute missing or empty,
//! a duration that cannot be sent, or an exception or event first) keeps them as properties,
//! where PY drops them, so nothing is lost and the reason can be seen.
//!
//! Everything borrows from the record where it can.

mod availability;
mod stack;

use std::borrow::Cow;
use std::fmt::Write;
use std::time::SystemTime;

use opentelemetry::logs::{AnyValue, Severity};
use opentelemetry::{InstrumentationScope, SpanId, TraceId};
use opentelemetry_sdk::logs::SdkLogRecord;

use super::attributes::{
    custom_measurements_json, int_text, push_json_str, set_context_tags, AttributeLookup,
};
use super::semconv::{Key, COUNT, REQUEST_LOCATION_IP};
use super::Context;
use crate::wire::limits::{truncate_str, GEN_AI_PROPERTY_VALUE};
use crate::wire::{
    tag, AvailabilityData, Bounded, Data, Envelope, EventData, ExceptionData, ExceptionDetails,
    Measurements, MessageData, Properties, SeverityLevel, Tags, TimeAt, Timestamp,
};
use availability::Availability;

pub(crate) use stack::{parse_stack, MAX_FRAMES_TEXT};

/// The message of a trace whose body is empty (PY `_DEFAULT_LOG_MESSAGE`).
const DEFAULT_MESSAGE: &str = "n/a";
/// The type name of an exception without `exception.type` (PY).
const DEFAULT_EXCEPTION: &str = "Exception";
/// The property with the record's logger (PY), see [`log_to_envelope`].
const LOGGER_NAME: &str = "logger_name";
/// The longest message, exception message and stack (characters).
const MAX_MESSAGE: usize = 32_768;
/// The bytes an item's own text (message, or exception message, stack and parsed frames) may
/// take together: the service refuses items over 64 KiB of JSON, and only properties can be
/// cut later (see `Envelope::shrink`), so the rest must leave room for escapes, tags and
/// properties.
const ITEM_TEXT_BUDGET: usize = 48 * 1024;
/// Rendering a body or a structured value stops after this many bytes: everything is cut to
/// [`MAX_MESSAGE`] characters later, and a character has at most 4 bytes.
const MAX_RENDERED_BYTES: usize = 4 * MAX_MESSAGE;
/// Rendering a property value stops after this many bytes (the longest property value is
/// [`GEN_AI_PROPERTY_VALUE`] characters).
const MAX_PROPERTY_BYTES: usize = 4 * GEN_AI_PROPERTY_VALUE;
/// Maps and lists nested deeper than this are rendered as a placeholder, so that a
/// pathological body cannot exhaust the stack.
const MAX_DEPTH: usize = 32;

/// Converts one log record (MAPPING.md §4). `now` is the time of a record that has neither a
/// timestamp nor an observed timestamp.
pub(crate) fn log_to_envelope<'a>(
    record: &'a SdkLogRecord,
    scope: &'a InstrumentationScope,
    cx: &Context<'a>,
    now: SystemTime,
) -> Envelope<'a> {
    // The SDK's iterator is a `filter_map` (lower bound 0): count, so the properties are
    // allocated once instead of grown (a reallocation or two per record, measured in
    // `benches/pipeline.rs`); one more for `logger_name`.
    let mut properties = Properties::with_capacity(record.attributes_iter().count() + 1);
    let known = LogKnown::scan(record, &mut properties);
    let mut measurements = Measurements::default();
    if let Some(v) = known.get(Key::MicrosoftCustomMeasurements) {
        custom_measurements_any(v, &mut measurements);
    }
    // PY: `logger_name` unless an attribute has that name. The `tracing` and `log` appenders
    // leave the scope's name empty; their record's target (the module path) names the logger.
    let logger = Some(scope.name())
        .filter(|n| !n.is_empty())
        .or_else(|| record.target().map(|t| t.as_ref()))
        .filter(|n| !n.is_empty());
    if let Some(logger) = logger {
        properties.insert_if_absent(LOGGER_NAME, logger);
    }

    let mut tags = Tags::new(cx.tags);
    if let Some(tc) = record.trace_context() {
        // R (§4.3): only a valid context; PY writes zero ids.
        if tc.trace_id != TraceId::INVALID && tc.span_id != SpanId::INVALID {
            // `Display` of the ids is lower-case hex, 32 and 16 digits.
            tags.set_operation(tc.trace_id.to_bytes(), Some(tc.span_id.to_bytes()));
        }
    }
    if let Some(name) = known.text(&[Key::AiOperationName]) {
        tags.set(tag::OPERATION_NAME, name);
    }
    set_context_tags(&mut tags, &known, REQUEST_LOCATION_IP);

    let severity = severity_level(record.severity_number());
    let kind = classify(&known, record.severity_number());
    if !matches!(kind, Kind::Availability(_)) {
        // Not consumed: kept as properties (see the module docs).
        for key in availability::KEYS {
            if let Some(v) = known.get(key) {
                properties.insert(key.as_str(), render_any(v, MAX_PROPERTY_BYTES));
            }
        }
    }
    let data = match kind {
        Kind::Exception => {
            let (details, unused_message) = exception_details(record, &known);
            if let Some(message) = unused_message {
                // The body won (§4.2): keep the error's own text as a property.
                properties.insert(Key::ExceptionMessage.as_str(), message);
            }
            Data::Exception(ExceptionData {
                exceptions: vec![details],
                severity_level: Some(severity),
                properties,
                measurements,
                ..ExceptionData::default()
            })
        }
        Kind::Event => {
            let name = known
                .text(&[Key::MicrosoftCustomEventName])
                .or_else(|| non_empty(body_text(record.body())))
                .unwrap_or(Cow::Borrowed(DEFAULT_MESSAGE));
            Data::Event(EventData {
                name: Bounded::new(name),
                properties,
                measurements,
                ..EventData::default()
            })
        }
        Kind::Availability(a) => Data::Availability(AvailabilityData {
            id: Bounded::new(a.id),
            name: Bounded::new(a.name),
            duration: a.duration,
            success: a.success,
            run_location: a.run_location.map(Bounded::new),
            // PY: the body when there is no message attribute, even an empty one.
            message: Some(Bounded::new(
                a.message.unwrap_or_else(|| body_text(record.body())),
            )),
            properties,
            measurements,
            ..AvailabilityData::default()
        }),
        Kind::Message => Data::Message(MessageData {
            message: Bounded::new(
                non_empty(body_text(record.body())).unwrap_or(Cow::Borrowed(DEFAULT_MESSAGE)),
            ),
            severity_level: Some(severity),
            properties,
            measurements,
            ..MessageData::default()
        }),
    };
    let time = record
        .timestamp()
        .or_else(|| record.observed_timestamp())
        .unwrap_or(now);
    Envelope {
        time: Timestamp(time),
        sample_rate: None,
        ikey: cx.ikey,
        tags,
        data,
        time_at: TimeAt::AfterTags,
    }
}

/// What a record becomes (§4.1).
enum Kind<'a> {
    Exception,
    Event,
    Availability(Availability<'a>),
    Message,
}

/// §4.1, first match wins; see the module docs.
fn classify<'a>(known: &LogKnown<'a>, severity: Option<Severity>) -> Kind<'a> {
    if known.get(Key::ExceptionType).is_some() || known.get(Key::ExceptionMessage).is_some() {
        Kind::Exception
    } else if known.get(Key::MicrosoftCustomEventName).is_some()
        || known.get(Key::EventMarker).is_some()
    {
        Kind::Event
    } else if let Some(a) = availability::read(known) {
        Kind::Availability(a)
    } else if severity.is_some_and(|s| s >= Severity::Error)
        && known.first(&[Key::TracingError]).is_some()
    {
        Kind::Exception
    } else {
        Kind::Message
    }
}

/// The exception of a record (§4.2): `typeName` from `exception.type`, else `Exception`; the
/// message is the body when it has text (PY: the body wins), else `exception.message`, else
/// the `error` attribute, else `Exception`; `stack` from `exception.stacktrace`, whose frames
/// are parsed when it is in a known format. `hasFullStack` says whether a stack was sent
/// uncut. Also returns `exception.message` when it was not used because the body won.
fn exception_details<'a>(
    record: &'a SdkLogRecord,
    known: &LogKnown<'a>,
) -> (ExceptionDetails<'a>, Option<Cow<'a, str>>) {
    let exception_message = known.text(&[Key::ExceptionMessage]);
    let (message, unused) = match non_empty(body_text(record.body())) {
        Some(body) => {
            let unused = exception_message.filter(|m| m.trim() != body.trim());
            (body, unused)
        }
        None => (
            exception_message
                .or_else(|| known.text(&[Key::TracingError]))
                .unwrap_or(Cow::Borrowed(DEFAULT_EXCEPTION)),
            None,
        ),
    };
    // Within the item's text budget: the message first, then the stack, then its frames.
    let message = cut(message, MAX_MESSAGE, ITEM_TEXT_BUDGET);
    let mut budget = ITEM_TEXT_BUDGET.saturating_sub(message.len());
    let mut has_full_stack = false;
    let stack = known
        .text(&[Key::ExceptionStacktrace])
        .map(|full| {
            let full_len = full.len();
            let sent = cut(full, MAX_MESSAGE, budget);
            has_full_stack = sent.len() == full_len;
            budget = budget.saturating_sub(sent.len());
            sent
        })
        .or_else(|| {
            // PY: an empty `exception.stacktrace` is still a stack, whole and empty.
            has_full_stack = known.get(Key::ExceptionStacktrace).is_some();
            has_full_stack.then_some(Cow::Borrowed(""))
        });
    let parsed_stack = match &stack {
        // Frames borrow from the record: a stack that is not a string is not parsed.
        Some(Cow::Borrowed(s)) => parse_stack(s, budget.min(MAX_FRAMES_TEXT)),
        _ => Vec::new(),
    };
    let details = ExceptionDetails {
        type_name: Some(Bounded::new(
            known
                .text(&[Key::ExceptionType])
                .unwrap_or(Cow::Borrowed(DEFAULT_EXCEPTION)),
        )),
        message: Bounded::new(message),
        has_full_stack: Some(has_full_stack),
        stack: stack.map(Bounded::new),
        parsed_stack,
    };
    (details, unused)
}

/// `severityLevel` (§4.4, the string enum): unset and TRACE/DEBUG → `Verbose`, INFO →
/// `Information`, WARN → `Warning`, ERROR → `Error`, FATAL → `Critical`.
pub(crate) fn severity_level(severity: Option<Severity>) -> SeverityLevel {
    match severity.map_or(0, |s| s as i32) {
        ..=8 => SeverityLevel::Verbose,
        9..=12 => SeverityLevel::Information,
        13..=16 => SeverityLevel::Warning,
        17..=20 => SeverityLevel::Error,
        _ => SeverityLevel::Critical,
    }
}

/// The text of a body (PY `body_to_string`, §4.2 with the R of §10.3): a string as it is,
/// bytes as text when they are UTF-8 and with escapes otherwise, numbers and booleans as
/// properties render them, maps and lists as compact JSON with sorted keys; cut to 32768
/// characters (and the item's byte budget), then trimmed. No body is empty.
pub(crate) fn body_text(body: Option<&AnyValue>) -> Cow<'_, str> {
    let text = match body {
        None => Cow::Borrowed(""),
        Some(AnyValue::String(s)) => Cow::Borrowed(s.as_str()),
        Some(v) => render_any(v, MAX_RENDERED_BYTES),
    };
    // PY cuts, then strips.
    match cut(text, MAX_MESSAGE, ITEM_TEXT_BUDGET) {
        Cow::Borrowed(b) => Cow::Borrowed(b.trim()),
        Cow::Owned(o) if o.trim().len() == o.len() => Cow::Owned(o),
        Cow::Owned(o) => Cow::Owned(o.trim().to_owned()),
    }
}

/// Cuts text to at most `max_chars` characters and `max_bytes` bytes, at a character boundary.
fn cut(s: Cow<'_, str>, max_chars: usize, max_bytes: usize) -> Cow<'_, str> {
    let mut end = truncate_str(&s, max_chars).len().min(max_bytes);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    match s {
        Cow::Borrowed(b) => Cow::Borrowed(b.get(..end).unwrap_or_default()),
        Cow::Owned(mut o) => {
            o.truncate(end);
            Cow::Owned(o)
        }
    }
}

fn non_empty(s: Cow<'_, str>) -> Option<Cow<'_, str>> {
    (!s.is_empty()).then_some(s)
}

/// Renders a log value as a property string (the log side of MAPPING.md §10.3): strings as
/// they are (borrowed), integers and floats with `Display`, booleans `True`/`False`, bytes as
/// text when UTF-8 and escaped otherwise, lists and maps as compact JSON (keys sorted),
/// at most about `max_bytes` long.
pub(crate) fn render_any(value: &AnyValue, max_bytes: usize) -> Cow<'_, str> {
    match value {
        AnyValue::String(s) => Cow::Borrowed(s.as_str()),
        AnyValue::Int(i) => int_text(*i),
        AnyValue::Double(f) => Cow::Owned(f.to_string()),
        AnyValue::Boolean(true) => Cow::Borrowed("True"),
        AnyValue::Boolean(false) => Cow::Borrowed("False"),
        AnyValue::Bytes(b) => bytes_text(b),
        AnyValue::ListAny(_) | AnyValue::Map(_) => {
            let mut out = String::with_capacity(64);
            push_json(&mut out, value, 0, max_bytes);
            Cow::Owned(out)
        }
        // `AnyValue` is non-exhaustive: a future variant is rendered by its `Debug`.
        other => Cow::Owned(format!("{other:?}")),
    }
}

/// Bytes as text: UTF-8 as it is, anything else with `\xNN` escapes (`b"\xff\x00a"` →
/// `\xff\x00a`).
fn bytes_text(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(bytes.escape_ascii().to_string()),
    }
}

/// Appends `value` as compact JSON, stopping once `out` is longer than `max_bytes`.
fn push_json(out: &mut String, value: &AnyValue, depth: usize, max_bytes: usize) {
    if out.len() > max_bytes {
        return;
    }
    match value {
        AnyValue::Int(i) => {
            let _ = write!(out, "{i}");
        }
        AnyValue::Double(f) if f.is_finite() => {
            let _ = write!(out, "{f}");
        }
        AnyValue::Double(_) => out.push_str("null"),
        AnyValue::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        AnyValue::String(s) => push_json_str(out, s.as_str()),
        AnyValue::Bytes(b) => push_json_str(out, &bytes_text(b)),
        AnyValue::ListAny(_) | AnyValue::Map(_) if depth >= MAX_DEPTH => {
            out.push_str("\"...\"");
        }
        AnyValue::ListAny(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if out.len() > max_bytes {
                    break;
                }
                if i > 0 {
                    out.push(',');
                }
                push_json(out, item, depth + 1, max_bytes);
            }
            out.push(']');
        }
        AnyValue::Map(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if out.len() > max_bytes {
                    break;
                }
                if i > 0 {
                    out.push(',');
                }
                push_json_str(out, k.as_str());
                out.push(':');
                push_json(out, v, depth + 1, max_bytes);
            }
            out.push('}');
        }
        other => push_json_str(out, &format!("{other:?}")),
    }
}

/// Custom measurements of a log record (§3.6): a JSON object in a string, or (as PY accepts)
/// a map; numbers only.
fn custom_measurements_any<'a>(value: &'a AnyValue, out: &mut Measurements<'a>) {
    match value {
        AnyValue::String(s) => custom_measurements_json(s.as_str(), out),
        AnyValue::Map(map) => {
            for (k, v) in map.iter() {
                match v {
                    AnyValue::Int(i) => out.insert(k.as_str(), *i as f64),
                    AnyValue::Double(f) => out.insert(k.as_str(), *f),
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

/// Whether a value counts as absent (an empty string, list, map or byte string).
fn is_empty_any(value: &AnyValue) -> bool {
    match value {
        AnyValue::String(s) => s.as_str().is_empty(),
        AnyValue::Bytes(b) => b.is_empty(),
        AnyValue::ListAny(l) => l.is_empty(),
        AnyValue::Map(m) => m.is_empty(),
        _ => false,
    }
}

/// Attributes that are consumed and never copied into properties (PY `_IGNORED_ATTRS`,
/// §4.3). `exception.message` is consumed only when it becomes the exception's message.
fn is_consumed(key: Key) -> bool {
    matches!(
        key,
        Key::ExceptionType
            | Key::ExceptionMessage
            | Key::ExceptionStacktrace
            | Key::ExceptionEscaped
            | Key::EventMarker
            | Key::MicrosoftCustomEventName
            | Key::MicrosoftCustomMeasurements
            | Key::EnduserId
            | Key::EnduserPseudoId
            | Key::SessionId
    )
}

/// The attributes of a log record that the conversion reads, found with one pass that also
/// collects the properties.
struct LogKnown<'a> {
    slots: [Option<&'a AnyValue>; COUNT],
}

impl<'a> LogKnown<'a> {
    /// Reads the attributes once: known keys into their slot (a repeated key: the last one
    /// wins), every attribute but the consumed ones and the availability keys into
    /// `properties` (§4.3: unlike spans, `http.*` and similar keys are kept).
    fn scan(record: &'a SdkLogRecord, properties: &mut Properties<'a>) -> Self {
        let mut slots = [None; COUNT];
        for (key, value) in record.attributes_iter() {
            let key = key.as_str();
            let known = Key::lookup(key);
            if let Some(k) = known {
                if let Some(slot) = slots.get_mut(k as usize) {
                    *slot = Some(value);
                }
            }
            // Availability keys: added after classification unless consumed.
            if !known.is_some_and(|k| is_consumed(k) || availability::KEYS.contains(&k)) {
                properties.insert(key, render_any(value, MAX_PROPERTY_BYTES));
            }
        }
        LogKnown { slots }
    }

    /// The value of `key`, if present (even if empty).
    fn get(&self, key: Key) -> Option<&'a AnyValue> {
        self.slots.get(key as usize).copied().flatten()
    }

    /// The first of `keys` with a non-empty value.
    fn first(&self, keys: &[Key]) -> Option<&'a AnyValue> {
        keys.iter()
            .filter_map(|k| self.get(*k))
            .find(|v| !is_empty_any(v))
    }
}

impl<'a> AttributeLookup<'a> for LogKnown<'a> {
    fn text(&self, keys: &[Key]) -> Option<Cow<'a, str>> {
        self.first(keys).map(|v| render_any(v, MAX_PROPERTY_BYTES))
    }

    fn str(&self, keys: &[Key]) -> Option<&'a str> {
        keys.iter().find_map(|k| match self.get(*k) {
            Some(AnyValue::String(s)) if !s.as_str().is_empty() => Some(s.as_str()),
            _ => None,
        })
    }
}

#[cfg(test)]
mod py_cases;
#[cfg(test)]
mod tests;
