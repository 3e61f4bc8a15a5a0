//! Availability results from log records (MAPPING.md §4.1 item 3, §4.2 "Availability").
//!
//! A record is an availability result when `microsoft.availability.id`, `.name`, `.duration`
//! and `.success` are all present and not empty (PY `_get_availability_data`; values of any
//! type count, rendered as text). Then:
//!
//! | attribute | `AvailabilityData` |
//! |---|---|
//! | `microsoft.availability.id` | `id` (512 characters) |
//! | `microsoft.availability.name` | `name` (1024 characters) |
//! | `microsoft.availability.duration` | `duration`, see below |
//! | `microsoft.availability.success` | `success`: `true` in any case, or the boolean `true` |
//! | `microsoft.availability.runLocation` | `runLocation` (1024 characters) |
//! | `microsoft.availability.message` | `message` (8192 characters), even when empty; else the body |
//!
//! The duration: a string already in .NET TimeSpan form (`[d.]hh:mm:ss[.fffffff]`, less than
//! 1000 days, e.g. `00:00:05` or `0.00:00:01.250`) is sent as it is; an integer or a float is a
//! number of **milliseconds** (`1250` → `0.00:00:01.250000`). The Python exporter passes
//! anything through as a string, which the service refuses unless it is already a TimeSpan.
//! Anything else (another string, a negative or non-finite number, 1000 days or more, another
//! type) cannot be sent as a duration: the record stays a trace, with every attribute kept as
//! a property, and a warning (`AzureMonitor.Logs.InvalidAvailabilityDuration`) says why.

use std::borrow::Cow;
use std::time::Duration;

use opentelemetry::logs::AnyValue;

use super::{render_any, LogKnown, MAX_PROPERTY_BYTES};
use crate::convert::semconv::Key;
use crate::wire::AvailabilityDuration;

/// The attributes an availability result consumes (PY `_IGNORED_ATTRS`).
pub(super) const KEYS: [Key; 6] = [
    Key::MicrosoftAvailabilityId,
    Key::MicrosoftAvailabilityName,
    Key::MicrosoftAvailabilityDuration,
    Key::MicrosoftAvailabilitySuccess,
    Key::MicrosoftAvailabilityRunLocation,
    Key::MicrosoftAvailabilityMessage,
];

/// The fields of an availability result read from a record's attributes.
pub(super) struct Availability<'a> {
    pub(super) id: Cow<'a, str>,
    pub(super) name: Cow<'a, str>,
    pub(super) duration: AvailabilityDuration<'a>,
    pub(super) success: bool,
    pub(super) run_location: Option<Cow<'a, str>>,
    /// `microsoft.availability.message` when present (even empty); `None`: use the body.
    pub(super) message: Option<Cow<'a, str>>,
}

/// The availability result of a record, if it is one (see the module docs).
pub(super) fn read<'a>(known: &LogKnown<'a>) -> Option<Availability<'a>> {
    // Most records have none of the keys: one slot check.
    known.get(Key::MicrosoftAvailabilityName)?;
    let required = |key| {
        known
            .get(key)
            .map(|v| (v, render_any(v, MAX_PROPERTY_BYTES)))
            .filter(|(_, text)| !text.is_empty())
    };
    let (_, id) = required(Key::MicrosoftAvailabilityId)?;
    let (_, name) = required(Key::MicrosoftAvailabilityName)?;
    let (duration, duration_text) = required(Key::MicrosoftAvailabilityDuration)?;
    let (_, success) = required(Key::MicrosoftAvailabilitySuccess)?;
    let Some(duration) = parse_duration(duration) else {
        opentelemetry::otel_warn!(
            name: "AzureMonitor.Logs.InvalidAvailabilityDuration",
            message = "a log record with microsoft.availability.* attributes was not sent as an availability result: its microsoft.availability.duration is neither a TimeSpan string such as 00:00:05 nor a number of milliseconds below 1000 days",
            duration = crate::wire::limits::truncate_str(&duration_text, 64).to_owned()
        );
        return None;
    };
    let optional = |key| known.get(key).map(|v| render_any(v, MAX_PROPERTY_BYTES));
    Some(Availability {
        id,
        name,
        duration,
        // PY: `str(value).lower() == "true"`; a boolean `true` renders as `True`.
        success: success.eq_ignore_ascii_case("true"),
        run_location: optional(Key::MicrosoftAvailabilityRunLocation),
        message: optional(Key::MicrosoftAvailabilityMessage),
    })
}

/// The duration of an availability result: a TimeSpan string, or milliseconds.
fn parse_duration(value: &AnyValue) -> Option<AvailabilityDuration<'_>> {
    match value {
        AnyValue::String(text) => AvailabilityDuration::from_text(text.as_str()),
        AnyValue::Int(millis) => u64::try_from(*millis)
            .ok()
            .and_then(|ms| AvailabilityDuration::from_duration(Duration::from_millis(ms))),
        AnyValue::Double(millis) => AvailabilityDuration::from_millis(*millis),
        _ => None,
    }
}
