//! Hand-written JSON for the items' hot path.
//!
//! Every item is serialized once per export, and most of its bytes are strings: escaping them
//! one byte at a time, as `serde_json` does, was the largest single cost of a log export (18%
//! of the CPU of `benches/logs_export.rs`). [`write_str`] looks at eight bytes at a time and
//! copies runs that need no escape, and [`Object`] writes the fixed keys as they are. The
//! output is byte for byte what `serde_json` writes for the same values (the types keep their
//! `Serialize` implementations, and the tests compare both).

/// The escape of a byte that JSON does not allow raw in a string, as `serde_json` writes it.
fn escape(b: u8, out: &mut Vec<u8>) {
    match b {
        b'"' => out.extend_from_slice(b"\\\""),
        b'\\' => out.extend_from_slice(b"\\\\"),
        0x08 => out.extend_from_slice(b"\\b"),
        0x0c => out.extend_from_slice(b"\\f"),
        b'\n' => out.extend_from_slice(b"\\n"),
        b'\r' => out.extend_from_slice(b"\\r"),
        b'\t' => out.extend_from_slice(b"\\t"),
        _ => {
            out.extend_from_slice(b"\\u00");
            write_hex(out, &[b]);
        }
    }
}

fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Whether any of the eight bytes of `x` is a control character, `"` or `\` (exact: the
/// classic "has a byte less than n" and "has a zero byte" bit tricks; bytes of 0x80 and above,
/// the parts of non-ASCII characters, never match).
fn any_needs_escape(x: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let control = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
    (control | zero_byte(x ^ (ONES * u64::from(b'"'))) | zero_byte(x ^ (ONES * u64::from(b'\\'))))
        != 0
}

/// The index of the first byte at or after `i` that needs an escape, or `bytes.len()`.
fn next_escape(bytes: &[u8], mut i: usize) -> usize {
    while let Some(chunk) = bytes.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        if any_needs_escape(u64::from_le_bytes(word)) {
            break;
        }
        i += 8;
    }
    while bytes.get(i).is_some_and(|&b| !needs_escape(b)) {
        i += 1;
    }
    i
}

/// Whether any byte of `bytes` needs an escape: eight bytes at a time, and the last one to
/// seven bytes as the last eight (overlapping what was checked), so a short string costs one
/// or two word checks instead of a loop over its bytes.
fn has_escape(bytes: &[u8]) -> bool {
    let word = |chunk: &[u8]| {
        <[u8; 8]>::try_from(chunk).map_or(true, |w| any_needs_escape(u64::from_le_bytes(w)))
    };
    let mut chunks = bytes.chunks_exact(8);
    if chunks.by_ref().any(word) {
        return true;
    }
    let rest = chunks.remainder();
    if rest.is_empty() {
        return false;
    }
    match bytes.len().checked_sub(8) {
        Some(last) => bytes.get(last..).is_none_or(word),
        None => rest.iter().any(|&b| needs_escape(b)),
    }
}

/// Writes `s` as a JSON string, quoted and escaped.
///
/// Nearly every string of an item needs no escape (keys, ids, names, most messages): it is
/// checked a word at a time and copied whole. The others are copied in runs between escapes.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    if has_escape(bytes) {
        let mut start = 0;
        loop {
            let i = next_escape(bytes, start);
            out.extend_from_slice(bytes.get(start..i).unwrap_or_default());
            let Some(&b) = bytes.get(i) else { break };
            escape(b, out);
            start = i + 1;
        }
    } else {
        out.extend_from_slice(bytes);
    }
    out.push(b'"');
}

/// Writes the lower-case hex digits of `bytes`.
pub(crate) fn write_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    hex_chunks(bytes, |hex| out.extend_from_slice(hex));
}

/// The lower-case hex digits of `bytes`, handed to `emit` sixteen bytes (a trace id) at a
/// time from a stack buffer: one copy per chunk instead of a capacity check per digit. Only
/// ASCII digits are emitted.
pub(crate) fn hex_chunks(bytes: &[u8], mut emit: impl FnMut(&[u8])) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for chunk in bytes.chunks(16) {
        let mut hex = [0u8; 32];
        for (pair, &b) in hex.chunks_exact_mut(2).zip(chunk) {
            if let [hi, lo] = pair {
                *hi = DIGITS[usize::from(b >> 4)];
                *lo = DIGITS[usize::from(b & 0xf)];
            }
        }
        emit(hex.get(..2 * chunk.len()).unwrap_or(&hex));
    }
}

/// Writes a number as `serde_json` does (shortest round-trip form; `null` if not finite,
/// which the callers never pass).
pub(crate) fn write_f64(out: &mut Vec<u8>, v: f64) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &v);
}

/// Writes an integer.
pub(crate) fn write_int(out: &mut Vec<u8>, v: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// A JSON object being written: `{`, then members separated by commas, then `}` on
/// [`end`](Self::end). Keys are the swagger's field names, which need no escape.
pub(crate) struct Object<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl<'o> Object<'o> {
    /// Starts an object.
    pub(crate) fn new(out: &'o mut Vec<u8>) -> Self {
        out.push(b'{');
        Object { out, first: true }
    }

    /// Writes `"key":` (after a comma unless it is the first member) and returns the buffer for
    /// the value.
    pub(crate) fn key(&mut self, key: &str) -> &mut Vec<u8> {
        if !std::mem::take(&mut self.first) {
            self.out.push(b',');
        }
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    /// A string member.
    pub(crate) fn str(&mut self, key: &str, value: &str) {
        write_str(self.key(key), value);
    }

    /// A string member, if there is a value.
    pub(crate) fn opt_str(&mut self, key: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.str(key, v);
        }
    }

    /// A member whose value is already JSON.
    pub(crate) fn raw(&mut self, key: &str, json: &[u8]) {
        self.key(key).extend_from_slice(json);
    }

    /// A boolean member.
    pub(crate) fn bool(&mut self, key: &str, value: bool) {
        let v: &[u8] = if value { b"true" } else { b"false" };
        self.raw(key, v);
    }

    /// An integer member.
    pub(crate) fn int(&mut self, key: &str, value: impl itoa::Integer) {
        write_int(self.key(key), value);
    }

    /// A number member, if there is a value.
    pub(crate) fn opt_f64(&mut self, key: &str, value: Option<f64>) {
        if let Some(v) = value {
            write_f64(self.key(key), v);
        }
    }

    /// Ends the object.
    pub(crate) fn end(self) {
        self.out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ours(s: &str) -> String {
        let mut out = Vec::new();
        write_str(&mut out, s);
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn escapes_like_serde_json() {
        let mut every_ascii = String::new();
        for b in 0u8..0x80 {
            every_ascii.push(char::from(b));
        }
        for s in [
            "",
            "plain",
            "exactly8",
            "quote \" and backslash \\ and a newline\n",
            "\"",
            "\\\\\\\\\\\\\\\\\\",
            "tab\tcr\rff\u{c}bs\u{8}nul\u{0}us\u{1f}del\u{7f}",
            "ü and 😀 and \u{2028}, then \"",
            "0123456789abcdef0123456789abcdef\u{1}",
            every_ascii.as_str(),
        ] {
            assert_eq!(
                ours(s),
                serde_json::to_string(s).unwrap_or_default(),
                "{s:?}"
            );
        }
    }

    #[test]
    fn finds_an_escape_at_any_place_of_a_short_string() {
        // The word checks overlap at the end: each length and position, with one character
        // that needs an escape, and with none.
        for len in 0..=24 {
            let plain = "a".repeat(len);
            assert_eq!(
                ours(&plain),
                serde_json::to_string(&plain).unwrap_or_default()
            );
            for at in 0..len {
                for special in ['"', '\\', '\n', '\u{1}'] {
                    let mut s = plain.clone();
                    s.replace_range(at..=at, special.encode_utf8(&mut [0; 4]));
                    assert_eq!(
                        ours(&s),
                        serde_json::to_string(&s).unwrap_or_default(),
                        "{s:?}"
                    );
                }
            }
        }
    }

    proptest! {
        #[test]
        fn escapes_any_string_like_serde_json(s in any::<String>(), t in "[\\x00-\\x7f]{0,40}") {
            prop_assert_eq!(ours(&s), serde_json::to_string(&s).unwrap_or_default());
            prop_assert_eq!(ours(&t), serde_json::to_string(&t).unwrap_or_default());
        }

        #[test]
        fn hex_of_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let mut out = b"x".to_vec();
            write_hex(&mut out, &bytes);
            let want: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            prop_assert_eq!(String::from_utf8_lossy(&out[1..]), want);
        }
    }

    #[test]
    fn an_object_writes_members_in_order() {
        let mut out = Vec::new();
        let mut o = Object::new(&mut out);
        o.str("a", "x\"");
        o.opt_str("skipped", None);
        o.bool("b", true);
        o.int("c", -3);
        o.opt_f64("d", Some(0.5));
        o.raw("e", b"[1]");
        o.end();
        assert_eq!(
            String::from_utf8(out).unwrap_or_default(),
            r#"{"a":"x\"","b":true,"c":-3,"d":0.5,"e":[1]}"#
        );
    }
}
