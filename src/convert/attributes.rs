//! Helpers shared by every signal: rendering attribute values, custom measurements, the
//! sample rate, and the user, session, synthetic-source and location tags.

use std::borrow::Cow;
use std::fmt::Write;

use opentelemetry::{Array, Value};

use super::semconv::{Key, Known, USER_AGENT};
use crate::wire::limits::GEN_AI_PROPERTY_VALUE;
use crate::wire::{hex_chunks, tag, Measurements, Properties, Tags};

/// Rendering an array stops once it has this many bytes: every property value is cut to at
/// most [`GEN_AI_PROPERTY_VALUE`] characters later, and a character has at most 4 bytes.
const MAX_RENDERED_BYTES: usize = 4 * GEN_AI_PROPERTY_VALUE;

/// Renders an attribute value as a property string (MAPPING.md §10.3 R): strings as they are
/// (borrowed), integers and floats with `Display` (`1`, `0.5`, `NaN`, `inf`), booleans as
/// `True`/`False`, arrays as compact JSON (`["a","b"]`, `[1,2]`, `[true,false]`, non-finite
/// floats as `null`).
pub(crate) fn render(value: &Value) -> Cow<'_, str> {
    match value {
        Value::String(s) => Cow::Borrowed(s.as_str()),
        Value::Bool(true) => Cow::Borrowed("True"),
        Value::Bool(false) => Cow::Borrowed("False"),
        Value::I64(i) => int_text(*i),
        Value::F64(f) => Cow::Owned(f.to_string()),
        Value::Array(a) => Cow::Owned(array_json(a)),
        // `Value` is non-exhaustive: a future variant is rendered by its `Display`.
        other => Cow::Owned(other.to_string()),
    }
}

/// Integers from 0 to this, less one, have their text in [`SMALL_INT_TEXT`].
const SMALL_INTS: usize = 1024;

/// The digits of 0 to [`SMALL_INTS`] - 1, each at four times its value, padded with NULs.
const SMALL_INT_DIGITS: [u8; 4 * SMALL_INTS] = {
    let mut table = [0u8; 4 * SMALL_INTS];
    let mut n = 0;
    while n < SMALL_INTS {
        let mut len = small_int_len(n);
        let mut rest = n;
        while len > 0 {
            len -= 1;
            table[4 * n + len] = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        n += 1;
    }
    table
};

/// [`SMALL_INT_DIGITS`] as text.
const SMALL_INT_TEXT: &str = match std::str::from_utf8(&SMALL_INT_DIGITS) {
    Ok(text) => text,
    Err(_) => panic!("digits and NULs are UTF-8"),
};

/// The number of decimal digits of `n` (below 10,000).
const fn small_int_len(n: usize) -> usize {
    1 + (n >= 10) as usize + (n >= 100) as usize + (n >= 1000) as usize
}

/// The decimal text of an integer attribute. From 0 to [`SMALL_INTS`] - 1 (counts, attempts,
/// HTTP status codes, small ports: what integer attributes most often hold) it is borrowed
/// from a table built at compile time, without the allocation that formatting takes (about
/// one per log record in `benches/pipeline.rs`); other integers are formatted.
pub(crate) fn int_text(i: i64) -> Cow<'static, str> {
    let small = usize::try_from(i)
        .ok()
        .filter(|&n| n < SMALL_INTS)
        .and_then(|n| SMALL_INT_TEXT.get(4 * n..4 * n + small_int_len(n)));
    match small {
        Some(text) => Cow::Borrowed(text),
        None => Cow::Owned(itoa::Buffer::new().format(i).to_owned()),
    }
}

/// Whether a value renders as the empty string (an empty string or an empty array): such a
/// value counts as absent, like a falsy value in the Python exporter.
pub(crate) fn is_empty_value(value: &Value) -> bool {
    match value {
        Value::String(s) => s.as_str().is_empty(),
        Value::Array(Array::Bool(v)) => v.is_empty(),
        Value::Array(Array::I64(v)) => v.is_empty(),
        Value::Array(Array::F64(v)) => v.is_empty(),
        Value::Array(Array::String(v)) => v.is_empty(),
        _ => false,
    }
}

fn push_items<T>(out: &mut String, items: &[T], mut push: impl FnMut(&mut String, &T)) {
    for (i, item) in items.iter().enumerate() {
        if out.len() > MAX_RENDERED_BYTES {
            break;
        }
        if i > 0 {
            out.push(',');
        }
        push(out, item);
    }
}

fn array_json(array: &Array) -> String {
    let mut out = String::with_capacity(32);
    out.push('[');
    match array {
        Array::Bool(v) => push_items(&mut out, v, |o, b| {
            o.push_str(if *b { "true" } else { "false" })
        }),
        Array::I64(v) => push_items(&mut out, v, |o, i| {
            let _ = write!(o, "{i}");
        }),
        Array::F64(v) => push_items(&mut out, v, |o, f| {
            if f.is_finite() {
                let _ = write!(o, "{f}");
            } else {
                o.push_str("null");
            }
        }),
        Array::String(v) => push_items(&mut out, v, |o, s| push_json_str(o, s.as_str())),
        // `Array` is non-exhaustive: a future variant is rendered by its `Display`.
        other => return other.to_string(),
    }
    out.push(']');
    out
}

/// Appends `s` as a JSON string literal (quoted and escaped).
pub(crate) fn push_json_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escaped = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        // `i` is at an ASCII byte, hence at a character boundary.
        out.push_str(s.get(start..i).unwrap_or_default());
        if escaped.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escaped);
        }
        start = i + 1;
    }
    out.push_str(s.get(start..).unwrap_or_default());
    out.push('"');
}

/// An integer from a value the way Python's `int()` reads it: integers as they are, finite
/// floats truncated, strings parsed after trimming whitespace; anything else is `None`.
pub(crate) fn to_int(value: &Value) -> Option<i64> {
    match value {
        Value::I64(i) => Some(*i),
        // `as` saturates; finite floats only.
        Value::F64(f) if f.is_finite() => Some(f.trunc() as i64),
        Value::String(s) => s.as_str().trim().parse().ok(),
        _ => None,
    }
}

/// A float from an integer, a float or a numeric string.
pub(crate) fn to_f64(value: &Value) -> Option<f64> {
    match value {
        Value::I64(i) => Some(*i as f64),
        Value::F64(f) => Some(*f),
        Value::String(s) => s.as_str().trim().parse().ok(),
        _ => None,
    }
}

/// Adds one attribute to `properties`, borrowing key and (string) value.
pub(crate) fn insert_property<'a>(properties: &mut Properties<'a>, key: &'a str, value: &'a Value) {
    properties.insert(key, render(value));
}

/// Adds the custom measurements of `microsoft.custom_measurements` (MAPPING.md §3.6): a JSON
/// object in a string attribute; entries with a non-empty key and a number that is a finite
/// f64 are kept (booleans and everything else are dropped, keys are cut to 150 characters).
/// Anything that is not a JSON object adds nothing.
pub(crate) fn custom_measurements(value: &Value, out: &mut Measurements<'_>) {
    if let Value::String(s) = value {
        custom_measurements_json(s.as_str(), out);
    }
}

/// [`custom_measurements`] from the attribute's text: a JSON object of numbers.
pub(crate) fn custom_measurements_json(json: &str, out: &mut Measurements<'_>) {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str(json) else {
        return;
    };
    for (key, value) in map {
        if let serde_json::Value::Number(n) = value {
            if let Some(f) = n.as_f64() {
                out.insert(key, f);
            }
        }
    }
}

/// The envelope `sampleRate` from a sample-rate attribute (MAPPING.md §1.4 R): a number (or a
/// numeric string) in (0, 100); 100 and anything invalid mean "not sampled" and are not sent.
pub(crate) fn sample_rate(value: Option<&Value>) -> Option<f64> {
    let rate = to_f64(value?)?;
    (rate > 0.0 && rate < 100.0).then_some(rate)
}

/// Whether an item comes from a bot or a test (PY `_is_any_synthetic_source`, MAPPING.md
/// §2.3): `user_agent.synthetic.type` is `bot` or `test`, or the user agent contains
/// `AlwaysOn` (the Azure availability tests).
pub(crate) fn is_synthetic(synthetic_type: Option<&str>, user_agent: Option<&str>) -> bool {
    matches!(synthetic_type, Some("bot" | "test"))
        || user_agent.is_some_and(|ua| ua.contains("AlwaysOn"))
}

/// The attributes of one item, read by [`Key`]: span and span-event attributes ([`Known`]) and
/// log-record attributes implement it, so that every signal derives its context tags through
/// the one code path of [`set_context_tags`].
pub(crate) trait AttributeLookup<'a> {
    /// The first of `keys` with a non-empty value, rendered as text (§10.3).
    fn text(&self, keys: &[Key]) -> Option<Cow<'a, str>>;
    /// The first of `keys` with a non-empty string value; other types are skipped.
    fn str(&self, keys: &[Key]) -> Option<&'a str>;
}

impl<'a> AttributeLookup<'a> for Known<'a> {
    fn text(&self, keys: &[Key]) -> Option<Cow<'a, str>> {
        Known::text(self, keys)
    }

    fn str(&self, keys: &[Key]) -> Option<&'a str> {
        Known::str(self, keys)
    }
}

/// Sets the user, session, synthetic-source and location tags from attributes (MAPPING.md
/// §2.3): `enduser.id` → `ai.user.authUserId`, `enduser.pseudo.id` → `ai.user.id`, a string
/// `session.id` → `ai.session.id`, `ai.operation.syntheticSource = "True"` for synthetic
/// traffic, and `ai.location.ip` from the first non-empty of `location`.
pub(crate) fn set_context_tags<'a>(
    tags: &mut Tags<'a>,
    known: &impl AttributeLookup<'a>,
    location: &[Key],
) {
    if let Some(v) = known.text(&[Key::EnduserId]) {
        tags.set(tag::USER_AUTH_USER_ID, v);
    }
    if let Some(v) = known.text(&[Key::EnduserPseudoId]) {
        tags.set(tag::USER_ID, v);
    }
    if let Some(v) = known.str(&[Key::SessionId]) {
        tags.set(tag::SESSION_ID, v);
    }
    if is_synthetic(
        known.str(&[Key::UserAgentSyntheticType]),
        known.str(USER_AGENT),
    ) {
        tags.set(tag::OPERATION_SYNTHETIC_SOURCE, "True");
    }
    if let Some(ip) = known.text(location) {
        tags.set(tag::LOCATION_IP, ip);
    }
}

/// Lower-case hex of an id (32 digits for a trace id, 16 for a span id).
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    push_hex(&mut s, bytes);
    s
}

/// Appends the lower-case hex of `bytes` to `out`.
pub(crate) fn push_hex(out: &mut String, bytes: &[u8]) {
    hex_chunks(bytes, |hex| {
        // Only ASCII digits are emitted.
        out.push_str(std::str::from_utf8(hex).unwrap_or_default());
    });
}

/// `a + sep + b` in one allocation.
pub(crate) fn join(a: &str, sep: &str, b: &str) -> String {
    let mut s = String::with_capacity(a.len() + sep.len() + b.len());
    s.push_str(a);
    s.push_str(sep);
    s.push_str(b);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::StringValue;

    #[test]
    fn integers_render_as_their_decimal_text() {
        let edges = [i64::MIN, i64::MIN + 1, -1_000_000, i64::MAX, 1 << 40];
        for i in (-20..5000).chain(edges) {
            assert_eq!(int_text(i), i.to_string(), "{i}");
            assert_eq!(render(&Value::I64(i)), i.to_string(), "{i}");
        }
        // The common ones without allocating.
        for i in [0, 9, 10, 99, 100, 200, 503, 999, 1000, 1023] {
            assert!(matches!(int_text(i), Cow::Borrowed(_)), "{i}");
        }
        assert!(matches!(int_text(1024), Cow::Owned(_)));
        assert!(matches!(int_text(-1), Cow::Owned(_)));
    }

    #[test]
    fn renders_every_value_type() {
        let s = |v: &str| StringValue::from(v.to_owned());
        let table: Vec<(Value, &str)> = vec![
            (Value::from("as is"), "as is"),
            (Value::from(""), ""),
            (Value::I64(-42), "-42"),
            (Value::F64(0.5), "0.5"),
            (Value::F64(1.0), "1"),
            (Value::F64(f64::NAN), "NaN"),
            (Value::F64(f64::NEG_INFINITY), "-inf"),
            (Value::Bool(true), "True"),
            (Value::Bool(false), "False"),
            (Value::Array(Array::Bool(vec![true, false])), "[true,false]"),
            (Value::Array(Array::I64(vec![1, 2, 3])), "[1,2,3]"),
            (
                Value::Array(Array::F64(vec![0.5, f64::NAN, f64::INFINITY])),
                "[0.5,null,null]",
            ),
            (
                Value::Array(Array::String(vec![s("a"), s("b\"\\\n\u{1}é")])),
                r#"["a","b\"\\\n\u0001é"]"#,
            ),
            (Value::Array(Array::String(vec![])), "[]"),
        ];
        for (value, want) in table {
            assert_eq!(render(&value), want, "{value:?}");
        }
        assert!(matches!(render(&Value::from("x")), Cow::Borrowed("x")));
    }

    #[test]
    fn rendered_arrays_are_json() {
        let v = Value::Array(Array::String(vec![
            StringValue::from("\u{7f}\u{0}\t\"x\"".to_owned()),
            StringValue::from("😀".to_owned()),
        ]));
        let parsed: Vec<String> = serde_json::from_str(&render(&v)).unwrap_or_default();
        assert_eq!(parsed, ["\u{7f}\u{0}\t\"x\"", "😀"]);
    }

    #[test]
    fn huge_arrays_are_cut_while_rendering() {
        let v = Value::Array(Array::I64(vec![1_000_000; 1_000_000]));
        let r = render(&v);
        assert!(r.len() < MAX_RENDERED_BYTES + 64);
        assert!(r.len() > GEN_AI_PROPERTY_VALUE);
    }

    #[test]
    fn ints_like_python() {
        assert_eq!(to_int(&Value::I64(200)), Some(200));
        assert_eq!(to_int(&Value::from(" 404 ")), Some(404));
        assert_eq!(to_int(&Value::from("")), None);
        assert_eq!(to_int(&Value::from("2.5")), None);
        assert_eq!(to_int(&Value::F64(2.9)), Some(2));
        assert_eq!(to_int(&Value::F64(f64::NAN)), None);
        assert_eq!(to_int(&Value::Bool(true)), None);
    }

    #[test]
    fn custom_measurements_table() {
        let table = [
            (
                r#"{"a": 1, "b": 2.5, "c": true, "d": "x", "": 3, "e": null}"#,
                vec![("a", 1.0), ("b", 2.5)],
            ),
            ("[1, 2]", vec![]),
            ("not json", vec![]),
            ("1", vec![]),
        ];
        for (json, want) in table {
            let mut m = Measurements::default();
            custom_measurements(&Value::from(json.to_owned()), &mut m);
            let got: serde_json::Value = serde_json::to_value(&m).unwrap_or_default();
            let want: serde_json::Map<String, serde_json::Value> = want
                .into_iter()
                .map(|(k, v)| (k.to_owned(), serde_json::json!(v)))
                .collect();
            assert_eq!(got, serde_json::Value::Object(want), "{json}");
        }
        let mut m = Measurements::default();
        custom_measurements(&Value::I64(1), &mut m);
        let long_key = format!(r#"{{"{}": 1}}"#, "k".repeat(200));
        custom_measurements(&Value::from(long_key), &mut m);
        assert_eq!(m.get(&"k".repeat(150)), Some(1.0));
    }

    #[test]
    fn sample_rates() {
        assert_eq!(sample_rate(Some(&Value::I64(50))), Some(50.0));
        assert_eq!(sample_rate(Some(&Value::F64(12.5))), Some(12.5));
        assert_eq!(sample_rate(Some(&Value::from("25"))), Some(25.0));
        for v in [
            Value::I64(100),
            Value::I64(0),
            Value::I64(101),
            Value::F64(f64::NAN),
            Value::from("x"),
            Value::Bool(true),
        ] {
            assert_eq!(sample_rate(Some(&v)), None, "{v:?}");
        }
        assert_eq!(sample_rate(None), None);
    }

    #[test]
    fn synthetic_sources() {
        assert!(is_synthetic(Some("bot"), None));
        assert!(is_synthetic(Some("test"), None));
        assert!(!is_synthetic(Some("human"), None));
        assert!(is_synthetic(None, Some("Mozilla AlwaysOn")));
        assert!(!is_synthetic(None, Some("alwayson")));
        assert!(!is_synthetic(None, None));
    }
}
