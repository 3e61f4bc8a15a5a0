//! The Track-API contract check of one telemetry item, written against the swagger and
//! INGESTION.md, independently of the crate's own serializer.
//!
//! Messages follow the service's format (`<code>: Field '<f>' on type '<Type>' ...`). The codes
//! 100 (too long), 103 (older than the min date), 108 (invalid duration) and 109 (required but
//! missing or empty) are the ones the real service is known to answer; checks whose real wording
//! is not publicly known use the same shape without a numeric code.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

/// Largest accepted telemetry item, in bytes of compact JSON (INGESTION §2).
pub(crate) const MAX_ITEM_BYTES: usize = 65_536;
/// Oldest accepted envelope `time`, relative to now (Bond `MinDateOffsetFromNow`).
const MIN_DATE_OFFSET_MS: i64 = 172_800_000;
/// Longest property or measurement key.
const MAX_KEY_CHARS: usize = 150;
/// Longest property value.
const MAX_PROPERTY_CHARS: usize = 8_192;
/// Longest value of the gen_ai content properties (MAPPING §3.5).
const MAX_GEN_AI_PROPERTY_CHARS: usize = 262_144;
/// Properties that may carry up to [`MAX_GEN_AI_PROPERTY_CHARS`].
const GEN_AI_CONTENT_KEYS: &[&str] = &[
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.tool.definitions",
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
    "gen_ai.evaluation.explanation",
];

/// Message the service answers for a missing or malformed `iKey`.
pub(crate) const INVALID_IKEY: &str = "Invalid instrumentation key";

/// Context tags with a length limit (Bond `ContextTagKeys`, INGESTION §3).
const TAG_LIMITS: &[(&str, usize)] = &[
    ("ai.application.ver", 1024),
    ("ai.device.id", 1024),
    ("ai.device.locale", 64),
    ("ai.device.model", 256),
    ("ai.device.oemName", 256),
    ("ai.device.osVersion", 256),
    ("ai.device.type", 64),
    ("ai.location.ip", 46),
    ("ai.location.country", 256),
    ("ai.location.province", 256),
    ("ai.location.city", 256),
    ("ai.operation.id", 128),
    ("ai.operation.name", 1024),
    ("ai.operation.parentId", 512),
    ("ai.operation.syntheticSource", 1024),
    ("ai.operation.correlationVector", 64),
    ("ai.session.id", 64),
    ("ai.session.isFirst", 5),
    ("ai.user.accountId", 1024),
    ("ai.user.id", 128),
    ("ai.user.authUserId", 1024),
    ("ai.cloud.role", 256),
    ("ai.cloud.roleVer", 256),
    ("ai.cloud.roleInstance", 256),
    ("ai.cloud.location", 256),
    ("ai.internal.sdkVersion", 64),
    ("ai.internal.agentVersion", 64),
    ("ai.internal.nodeName", 256),
];

/// What a field must hold.
#[derive(Clone, Copy)]
enum Kind {
    /// A string, at most this many characters (`None`: no limit).
    Str(Option<usize>),
    Bool,
    Int32,
    Number,
    /// A .NET TimeSpan `[d.]hh:mm:ss[.fffffff]`, less than 1000 days.
    Duration,
    /// `SeverityLevel`: a name or its ordinal 0..=4.
    Severity,
    /// `DataPointType`: `Measurement` or `Aggregation`.
    DataPointType,
    /// A non-empty array of objects checked against a nested table.
    Array(&'static Table),
}

/// One field of a domain type.
struct Field {
    name: &'static str,
    kind: Kind,
    required: bool,
}

/// A domain type: its name in messages and its fields, required ones first.
struct Table {
    type_name: &'static str,
    fields: &'static [Field],
}

const fn req(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        required: true,
    }
}

const fn opt(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        required: false,
    }
}

const fn s(max: usize) -> Kind {
    Kind::Str(Some(max))
}

const REQUEST: Table = Table {
    type_name: "RequestData",
    fields: &[
        req("id", s(512)),
        req("duration", Kind::Duration),
        req("responseCode", s(1024)),
        req("success", Kind::Bool),
        opt("name", s(1024)),
        opt("source", s(1024)),
        opt("url", s(2048)),
    ],
};

const DEPENDENCY: Table = Table {
    type_name: "RemoteDependencyData",
    fields: &[
        req("name", s(1024)),
        req("duration", Kind::Duration),
        opt("id", s(512)),
        opt("resultCode", s(1024)),
        opt("data", s(8192)),
        opt("type", s(1024)),
        opt("target", s(1024)),
        opt("success", Kind::Bool),
    ],
};

const MESSAGE: Table = Table {
    type_name: "MessageData",
    fields: &[
        req("message", s(32_768)),
        opt("severityLevel", Kind::Severity),
    ],
};

const STACK_FRAME: Table = Table {
    type_name: "StackFrame",
    fields: &[
        req("level", Kind::Int32),
        req("method", s(1024)),
        opt("assembly", s(1024)),
        opt("fileName", s(1024)),
        opt("line", Kind::Int32),
    ],
};

const EXCEPTION_DETAILS: Table = Table {
    type_name: "ExceptionDetails",
    fields: &[
        // Required in Bond, optional in the swagger: the stricter rule wins.
        req("typeName", s(1024)),
        req("message", s(32_768)),
        opt("id", Kind::Int32),
        opt("outerId", Kind::Int32),
        opt("hasFullStack", Kind::Bool),
        opt("stack", s(32_768)),
        opt("parsedStack", Kind::Array(&STACK_FRAME)),
    ],
};

const EXCEPTION: Table = Table {
    type_name: "ExceptionData",
    fields: &[
        req("exceptions", Kind::Array(&EXCEPTION_DETAILS)),
        opt("severityLevel", Kind::Severity),
        opt("problemId", s(1024)),
    ],
};

const EVENT: Table = Table {
    type_name: "EventData",
    fields: &[req("name", s(512))],
};

const DATA_POINT: Table = Table {
    type_name: "DataPoint",
    fields: &[
        req("name", s(1024)),
        req("value", Kind::Number),
        opt("ns", s(256)),
        opt("kind", Kind::DataPointType),
        opt("count", Kind::Int32),
        opt("min", Kind::Number),
        opt("max", Kind::Number),
        opt("stdDev", Kind::Number),
    ],
};

const METRIC: Table = Table {
    type_name: "MetricData",
    fields: &[req("metrics", Kind::Array(&DATA_POINT))],
};

const PAGE_VIEW: Table = Table {
    type_name: "PageViewData",
    fields: &[
        req("id", s(512)),
        // 1024 in swagger v2.1, 512 in TypeSpec and Bond: the stricter rule wins.
        req("name", s(512)),
        opt("url", s(2048)),
        opt("duration", Kind::Duration),
        opt("referredUri", s(2048)),
    ],
};

const PAGE_VIEW_PERF: Table = Table {
    type_name: "PageViewPerfData",
    fields: &[
        req("id", s(512)),
        req("name", s(512)),
        opt("url", s(2048)),
        opt("duration", Kind::Duration),
        opt("referredUri", s(2048)),
        opt("perfTotal", Kind::Str(None)),
        opt("networkConnect", Kind::Str(None)),
        opt("sentRequest", Kind::Str(None)),
        opt("receivedResponse", Kind::Str(None)),
        opt("domProcessing", Kind::Str(None)),
    ],
};

const AVAILABILITY: Table = Table {
    type_name: "AvailabilityData",
    fields: &[
        req("id", s(512)),
        req("name", s(1024)),
        req("duration", Kind::Duration),
        req("success", Kind::Bool),
        opt("runLocation", s(1024)),
        opt("message", s(8192)),
    ],
};

/// The known `data.baseType` values (Bond struct names) and their tables.
const DOMAINS: &[&Table] = &[
    &REQUEST,
    &DEPENDENCY,
    &MESSAGE,
    &EXCEPTION,
    &EVENT,
    &METRIC,
    &PAGE_VIEW,
    &PAGE_VIEW_PERF,
    &AVAILABILITY,
];

/// Checks one telemetry item. `now` is the reference for the 48-hour window; `ikey`, when
/// given, is the only instrumentation key accepted (case-insensitively).
pub(crate) fn check_item(item: &Value, now: SystemTime, ikey: Option<&str>) -> Result<(), String> {
    let Value::Object(envelope) = item else {
        return Err(format!(
            "Telemetry item is not a JSON object. Expected: object, Actual: {}",
            json_type(item)
        ));
    };
    let size = serde_json::to_vec(item).map(|v| v.len()).unwrap_or(0);
    if size > MAX_ITEM_BYTES {
        return Err(format!(
            "Telemetry item is too large. Expected: at most {MAX_ITEM_BYTES} bytes, Actual: {size}"
        ));
    }

    const ENVELOPE: &str = "Envelope";
    opt_int32(envelope, "ver", ENVELOPE)?;
    required_str(envelope, "name", ENVELOPE, Some(1024))?;
    let time = required_str(envelope, "time", ENVELOPE, Some(64))?;
    check_time(time, now)?;
    match envelope.get("iKey") {
        Some(Value::String(key))
            if is_guid(key) && ikey.is_none_or(|want| want.eq_ignore_ascii_case(key)) => {}
        _ => return Err(INVALID_IKEY.to_owned()),
    }
    if let Some(rate) = present(envelope, "sampleRate") {
        let rate = rate
            .as_f64()
            .ok_or_else(|| wrong_type("sampleRate", ENVELOPE, "float", rate))?;
        if !(rate > 0.0 && rate <= 100.0) {
            return Err(format!(
                "Field 'sampleRate' on type 'Envelope' is out of range. Expected: a percentage in (0, 100], Actual: {rate}"
            ));
        }
    }
    optional_str(envelope, "seq", ENVELOPE, Some(64))?;
    if let Some(tags) = present(envelope, "tags") {
        check_tags(tags)?;
    }

    let data = match present(envelope, "data") {
        None => return Err(missing("data", ENVELOPE, "object", envelope.get("data"))),
        Some(Value::Object(data)) => data,
        Some(other) => return Err(wrong_type("data", ENVELOPE, "object", other)),
    };
    const BASE: &str = "Base";
    let base_type = required_str(data, "baseType", BASE, None)?;
    let Some(table) = DOMAINS.iter().find(|t| t.type_name == base_type) else {
        let known: Vec<&str> = DOMAINS.iter().map(|t| t.type_name).collect();
        return Err(format!(
            "Field 'baseType' on type 'Base' has an unknown value. Expected: one of {}, Actual: {}",
            known.join(", "),
            excerpt(base_type)
        ));
    };
    let base_data = match present(data, "baseData") {
        None => return Err(missing("baseData", BASE, "object", data.get("baseData"))),
        Some(Value::Object(base_data)) => base_data,
        Some(other) => return Err(wrong_type("baseData", BASE, "object", other)),
    };
    match present(base_data, "ver") {
        None => {
            return Err(missing(
                "ver",
                table.type_name,
                "int32",
                base_data.get("ver"),
            ))
        }
        Some(_) => opt_int32(base_data, "ver", table.type_name)?,
    }
    check_table(base_data, table)?;
    check_properties(base_data, table.type_name)?;
    check_measurements(base_data, table.type_name)
}

/// Checks the fields of `obj` against `table`, required ones first.
fn check_table(obj: &Map<String, Value>, table: &Table) -> Result<(), String> {
    let ty = table.type_name;
    for field in table.fields {
        let name = field.name;
        let Some(value) = present(obj, name) else {
            if field.required {
                return Err(missing(name, ty, expected(field.kind), obj.get(name)));
            }
            continue;
        };
        match field.kind {
            Kind::Str(max) => {
                let Value::String(text) = value else {
                    return Err(wrong_type(name, ty, "string", value));
                };
                if field.required && text.is_empty() {
                    return Err(missing(name, ty, "string", Some(value)));
                }
                check_len(name, ty, text, max)?;
            }
            Kind::Bool => {
                if !value.is_boolean() {
                    return Err(wrong_type(name, ty, "boolean", value));
                }
            }
            Kind::Int32 => opt_int32(obj, name, ty)?,
            Kind::Number => {
                if !value.is_number() {
                    return Err(wrong_type(name, ty, "double", value));
                }
            }
            Kind::Duration => {
                let Value::String(text) = value else {
                    return Err(wrong_type(name, ty, "string", value));
                };
                if field.required && text.is_empty() {
                    return Err(missing(name, ty, "string", Some(value)));
                }
                if !is_timespan(text) {
                    return Err(format!(
                        "108: Field '{name}' on type '{ty}' is not a valid duration string. Expected: dd:hh:mm:ss.fffffff format, Actual: {}",
                        excerpt(text)
                    ));
                }
            }
            Kind::Severity => {
                let ok = match value {
                    Value::String(level) => matches!(
                        level.as_str(),
                        "Verbose" | "Information" | "Warning" | "Error" | "Critical"
                    ),
                    Value::Number(n) => n.as_u64().is_some_and(|n| n <= 4),
                    _ => false,
                };
                if !ok {
                    return Err(invalid_value(
                        name,
                        ty,
                        "one of Verbose, Information, Warning, Error, Critical, or 0..4",
                        value,
                    ));
                }
            }
            Kind::DataPointType => {
                if !matches!(value.as_str(), Some("Measurement" | "Aggregation")) {
                    return Err(invalid_value(
                        name,
                        ty,
                        "one of Measurement, Aggregation",
                        value,
                    ));
                }
            }
            Kind::Array(inner) => {
                let Value::Array(items) = value else {
                    return Err(wrong_type(name, ty, "array", value));
                };
                if field.required && items.is_empty() {
                    return Err(missing(name, ty, "array", Some(value)));
                }
                for item in items {
                    let Value::Object(item) = item else {
                        return Err(wrong_type(name, ty, "array of objects", item));
                    };
                    check_table(item, inner)?;
                }
            }
        }
    }
    Ok(())
}

/// `tags`: a map of strings, known keys within their Bond limits.
fn check_tags(tags: &Value) -> Result<(), String> {
    let Value::Object(tags) = tags else {
        return Err(wrong_type("tags", "Envelope", "object", tags));
    };
    for (key, value) in tags {
        let Value::String(text) = value else {
            return Err(format!(
                "Field '{}' on type 'ContextTagKeys' has the wrong JSON type. Expected: string, Actual: {}",
                excerpt(key),
                json_type(value)
            ));
        };
        if let Some(&(_, max)) = TAG_LIMITS.iter().find(|(k, _)| k == key) {
            check_len(key, "ContextTagKeys", text, Some(max))?;
        }
    }
    Ok(())
}

/// `properties`: string keys of at most 150 characters, string values of at most 8192
/// (262144 for the gen_ai content keys).
fn check_properties(base_data: &Map<String, Value>, ty: &str) -> Result<(), String> {
    let Some(properties) = present(base_data, "properties") else {
        return Ok(());
    };
    let Value::Object(properties) = properties else {
        return Err(wrong_type("properties", ty, "object", properties));
    };
    for (key, value) in properties {
        check_key("properties", ty, key)?;
        let Value::String(text) = value else {
            return Err(format!(
                "Field 'properties' on type '{ty}' has the wrong JSON type for key '{}'. Expected: string, Actual: {}",
                excerpt(key),
                json_type(value)
            ));
        };
        let max = if GEN_AI_CONTENT_KEYS.contains(&key.as_str()) {
            MAX_GEN_AI_PROPERTY_CHARS
        } else {
            MAX_PROPERTY_CHARS
        };
        let actual = text.chars().count();
        if actual > max {
            return Err(format!(
                "100: Field 'properties' on type '{ty}' is too long for key '{}'. Expected: {max} characters, Actual: {actual}",
                excerpt(key)
            ));
        }
    }
    Ok(())
}

/// `measurements`: keys of at most 150 characters, numeric values.
fn check_measurements(base_data: &Map<String, Value>, ty: &str) -> Result<(), String> {
    let Some(measurements) = present(base_data, "measurements") else {
        return Ok(());
    };
    let Value::Object(measurements) = measurements else {
        return Err(wrong_type("measurements", ty, "object", measurements));
    };
    for (key, value) in measurements {
        check_key("measurements", ty, key)?;
        if !value.is_number() {
            return Err(format!(
                "Field 'measurements' on type '{ty}' has the wrong JSON type for key '{}'. Expected: double, Actual: {}",
                excerpt(key),
                json_type(value)
            ));
        }
    }
    Ok(())
}

fn check_key(field: &str, ty: &str, key: &str) -> Result<(), String> {
    let actual = key.chars().count();
    if actual > MAX_KEY_CHARS {
        return Err(format!(
            "100: Key '{}' of field '{field}' on type '{ty}' is too long. Expected: {MAX_KEY_CHARS} characters, Actual: {actual}",
            excerpt(key)
        ));
    }
    Ok(())
}

/// `time`: RFC 3339 UTC with `Z`, not older than now − 48 h.
fn check_time(time: &str, now: SystemTime) -> Result<(), String> {
    let Some(at_ms) = parse_utc_millis(time) else {
        return Err(format!(
            "Field 'time' on type 'Envelope' is not a valid date-time. Expected: ISO 8601 in UTC with a trailing 'Z' (e.g. 2024-01-31T12:00:00.0000000Z), Actual: {}",
            excerpt(time)
        ));
    };
    let now_ms = match now.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    };
    let age = now_ms.saturating_sub(at_ms);
    if age > MIN_DATE_OFFSET_MS {
        return Err(format!(
            "103: Field 'time' on type 'Envelope' is older than the allowed min date. Expected: now - {MIN_DATE_OFFSET_MS}ms, Actual: now - {age}ms"
        ));
    }
    Ok(())
}

/// Milliseconds since the Unix epoch of `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z`.
pub(crate) fn parse_utc_millis(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20 || b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    if b.get(10) != Some(&b'T') || b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
        return None;
    }
    let year = digits(b, 0, 4)?;
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    let hour = digits(b, 11, 2)?;
    let minute = digits(b, 14, 2)?;
    let second = digits(b, 17, 2)?;
    let rest = b.get(19..)?;
    let (fraction, zone) = match rest.first() {
        Some(b'.') => {
            let n = rest
                .iter()
                .skip(1)
                .take_while(|c| c.is_ascii_digit())
                .count();
            if !(1..=9).contains(&n) {
                return None;
            }
            (rest.get(1..=n)?, rest.get(n + 1..)?)
        }
        _ => (&[][..], rest),
    };
    if zone != b"Z" {
        return None;
    }
    if !(1..=12).contains(&month) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    if day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let millis = fraction
        .iter()
        .chain(std::iter::repeat(&b'0'))
        .take(3)
        .fold(0_i64, |acc, c| acc * 10 + i64::from(c - b'0'));
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second;
    Some(seconds * 1_000 + millis)
}

/// `n` ASCII digits of `b` starting at `at`.
fn digits(b: &[u8], at: usize, n: usize) -> Option<i64> {
    b.get(at..at + n)?.iter().try_fold(0_i64, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
    })
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A .NET TimeSpan as the service accepts it: `[d.]hh:mm:ss[.f{1,7}]`, days < 1000.
pub(crate) fn is_timespan(text: &str) -> bool {
    let (clock, fraction) = match text.split_once('.') {
        // A first dot before the first colon separates the days.
        Some((days, rest)) if !days.contains(':') => {
            if !(1..=3).contains(&days.len()) || !days.bytes().all(|c| c.is_ascii_digit()) {
                return false;
            }
            match rest.split_once('.') {
                Some((clock, fraction)) => (clock, Some(fraction)),
                None => (rest, None),
            }
        }
        Some((clock, fraction)) => (clock, Some(fraction)),
        None => (text, None),
    };
    if let Some(fraction) = fraction {
        if !(1..=7).contains(&fraction.len()) || !fraction.bytes().all(|c| c.is_ascii_digit()) {
            return false;
        }
    }
    let b = clock.as_bytes();
    if b.len() != 8 || b.get(2) != Some(&b':') || b.get(5) != Some(&b':') {
        return false;
    }
    matches!(
        (digits(b, 0, 2), digits(b, 3, 2), digits(b, 6, 2)),
        (Some(h), Some(m), Some(s)) if h <= 23 && m <= 59 && s <= 59
    )
}

/// `8-4-4-4-12` hexadecimal digits, either case.
pub(crate) fn is_guid(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The field's value unless it is absent or `null` (both mean "not set").
fn present<'a>(obj: &'a Map<String, Value>, field: &str) -> Option<&'a Value> {
    obj.get(field).filter(|v| !v.is_null())
}

fn required_str<'a>(
    obj: &'a Map<String, Value>,
    field: &str,
    ty: &str,
    max: Option<usize>,
) -> Result<&'a str, String> {
    match present(obj, field) {
        Some(Value::String(text)) if !text.is_empty() => {
            check_len(field, ty, text, max)?;
            Ok(text)
        }
        Some(Value::String(_)) | None => Err(missing(field, ty, "string", obj.get(field))),
        Some(other) => Err(wrong_type(field, ty, "string", other)),
    }
}

fn optional_str(
    obj: &Map<String, Value>,
    field: &str,
    ty: &str,
    max: Option<usize>,
) -> Result<(), String> {
    match present(obj, field) {
        None => Ok(()),
        Some(Value::String(text)) => check_len(field, ty, text, max),
        Some(other) => Err(wrong_type(field, ty, "string", other)),
    }
}

fn opt_int32(obj: &Map<String, Value>, field: &str, ty: &str) -> Result<(), String> {
    match present(obj, field) {
        None => Ok(()),
        Some(v) if v.as_i64().is_some_and(|n| i32::try_from(n).is_ok()) => Ok(()),
        Some(other) => Err(wrong_type(field, ty, "int32", other)),
    }
}

fn check_len(field: &str, ty: &str, text: &str, max: Option<usize>) -> Result<(), String> {
    let Some(max) = max else { return Ok(()) };
    // Cheap bound first: a string has at least len/4 characters.
    if text.len() <= max {
        return Ok(());
    }
    let actual = text.chars().count();
    if actual > max {
        return Err(format!(
            "100: Field '{}' on type '{ty}' is too long. Expected: {max} characters, Actual: {actual}",
            excerpt(field)
        ));
    }
    Ok(())
}

/// `109`: a required field is absent, `null` or empty.
fn missing(field: &str, ty: &str, expected: &str, actual: Option<&Value>) -> String {
    let actual = match actual {
        None => "undefined".to_owned(),
        Some(Value::String(text)) => excerpt(text),
        Some(other) => excerpt(&other.to_string()),
    };
    format!(
        "109: Field '{field}' on type '{ty}' is required but missing or empty. Expected: {expected}, Actual: {actual}"
    )
}

fn wrong_type(field: &str, ty: &str, expected: &str, actual: &Value) -> String {
    format!(
        "Field '{field}' on type '{ty}' has the wrong JSON type. Expected: {expected}, Actual: {}",
        json_type(actual)
    )
}

fn invalid_value(field: &str, ty: &str, expected: &str, actual: &Value) -> String {
    format!(
        "Field '{field}' on type '{ty}' has an invalid value. Expected: {expected}, Actual: {}",
        excerpt(&actual.to_string())
    )
}

fn expected(kind: Kind) -> &'static str {
    match kind {
        Kind::Str(_) | Kind::Duration => "string",
        Kind::Bool => "boolean",
        Kind::Int32 => "int32",
        Kind::Number => "double",
        Kind::Severity => "SeverityLevel",
        Kind::DataPointType => "DataPointType",
        Kind::Array(_) => "array",
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// At most 64 characters of `text`, for messages.
fn excerpt(text: &str) -> String {
    const MAX: usize = 64;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}...", text.get(..end).unwrap_or_default()),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn timespans() {
        for ok in [
            "00:00:00",
            "00:00:01.5",
            "23:59:59.9999999",
            "1.02:03:04",
            "999.23:59:59.9999999",
            "0.00:00:00.000",
        ] {
            assert!(is_timespan(ok), "{ok}");
        }
        for bad in [
            "",
            "0:00:00:04.4786555",
            "00:00:02.227.99999999988358",
            "00:00:00.12345678",
            "1000.00:00:00",
            "24:00:00",
            "00:60:00",
            "00:00:60",
            "0:00:00",
            "-00:00:01",
            "00:00:00.",
            ".00:00:00",
            "1.2.00:00:00",
            "00:00",
            "PT1S",
            "00:00:0a",
        ] {
            assert!(!is_timespan(bad), "{bad}");
        }
    }

    #[test]
    fn utc_times() {
        assert_eq!(parse_utc_millis("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_utc_millis("1970-01-01T00:00:01.5Z"), Some(1_500));
        assert_eq!(
            parse_utc_millis("2019-12-04T21:18:36.027613Z"),
            Some(1_575_494_316_027)
        );
        assert_eq!(
            parse_utc_millis("2000-02-29T00:00:00.123456789Z"),
            Some(951_782_400_123)
        );
        for bad in [
            "2019-12-04T21:18:36",
            "2019-12-04T21:18:36+00:00",
            "2019-12-04 21:18:36Z",
            "2019-13-04T21:18:36Z",
            "2019-02-29T21:18:36Z",
            "2019-12-04T24:00:00Z",
            "2019-12-04T21:18:36.Z",
            "2019-12-04T21:18:36.1234567890Z",
            "2019-12-04T21:18:36zZ",
            "2019-12-04t21:18:36Z",
            "",
            "é",
        ] {
            assert_eq!(parse_utc_millis(bad), None, "{bad}");
        }
    }

    #[test]
    fn guids() {
        assert!(is_guid("1234abcd-5678-4efa-8abc-1234567890AB"));
        assert!(!is_guid("1234abcd56784efa8abc1234567890ab"));
        assert!(!is_guid("{1234abcd-5678-4efa-8abc-1234567890ab}"));
        assert!(!is_guid("1234abcd-5678-4efa-8abc-1234567890ag"));
    }

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "[a-zA-Z0-9.:é -]{0,12}".prop_map(Value::from),
            Just(Value::from("RequestData")),
            Just(Value::from("00:00:01")),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            let keys = prop_oneof![
                Just("name".to_owned()),
                Just("time".to_owned()),
                Just("iKey".to_owned()),
                Just("tags".to_owned()),
                Just("data".to_owned()),
                Just("baseType".to_owned()),
                Just("baseData".to_owned()),
                Just("ver".to_owned()),
                Just("exceptions".to_owned()),
                Just("metrics".to_owned()),
                Just("properties".to_owned()),
                "[a-z]{1,6}",
            ];
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(keys, inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn never_panics_on_any_string(text in "\\PC{0,40}") {
            let _ = parse_utc_millis(&text);
            let _ = is_timespan(&text);
            let _ = is_guid(&text);
            let _ = excerpt(&text);
        }

        #[test]
        fn never_panics_on_any_json(item in any_json()) {
            let _ = check_item(&item, SystemTime::now(), Some("11111111-2222-4333-8444-555555555555"));
            let _ = check_item(&item, UNIX_EPOCH, None);
        }
    }

    /// `AvailabilityData` (swagger v2.1, INGESTION §3): `id`, `name`, `duration`, `success`
    /// required; an empty optional `message` is fine.
    #[test]
    fn availability_items() {
        let item = |base_data: Value| {
            serde_json::json!({
                "name": "Microsoft.ApplicationInsights.Availability",
                "time": "2024-01-31T12:00:00.0000000Z",
                "iKey": "11111111-2222-4333-8444-555555555555",
                "data": {"baseType": "AvailabilityData", "baseData": base_data},
            })
        };
        let now = UNIX_EPOCH + std::time::Duration::from_secs(1_706_702_400);
        let check = |base_data: Value| check_item(&item(base_data), now, None);
        let valid = || {
            serde_json::json!({"ver": 2, "id": "run-1", "name": "ping",
                               "duration": "0.00:00:01.250000", "success": true,
                               "runLocation": "westeurope", "message": ""})
        };
        assert_eq!(check(valid()), Ok(()));
        let with = |field: &str, value: Value| {
            let mut v = valid();
            v[field] = value;
            check(v)
        };
        let without = |field: &str| {
            let mut v = valid();
            v.as_object_mut().map(|o| o.remove(field));
            check(v)
        };
        assert_eq!(without("message"), Ok(()));
        assert_eq!(without("runLocation"), Ok(()));
        assert_eq!(with("message", Value::from("m".repeat(8192))), Ok(()));
        for (field, value, code) in [
            ("id", Value::from(""), "109: Field 'id'"),
            ("name", Value::Null, "109: Field 'name'"),
            ("id", Value::from("i".repeat(513)), "100: Field 'id'"),
            ("name", Value::from("n".repeat(1025)), "100: Field 'name'"),
            (
                "runLocation",
                Value::from("r".repeat(1025)),
                "100: Field 'runLocation'",
            ),
            (
                "message",
                Value::from("m".repeat(8193)),
                "100: Field 'message'",
            ),
            ("duration", Value::from("5000"), "108: Field 'duration'"),
            ("duration", Value::from(5000), "Field 'duration'"),
            ("success", Value::from("true"), "Field 'success'"),
        ] {
            let result = with(field, value);
            assert!(
                result.as_ref().is_err_and(|e| e.starts_with(code)),
                "{field}: {result:?}"
            );
        }
        for field in ["id", "name", "duration", "success"] {
            assert!(
                without(field).is_err_and(|e| e.starts_with("109:")),
                "{field}"
            );
        }
    }

    #[test]
    fn excerpt_is_char_safe() {
        let long = "é".repeat(100);
        assert_eq!(excerpt(&long).chars().count(), 64 + 3);
        assert_eq!(excerpt("short"), "short");
    }
}
