//! The DJB2 score of a trace id (MAPPING.md §6.1): the number every Application Insights
//! exporter (Python, JavaScript) derives from a trace id to decide whether to keep it, so
//! that one trace is kept or dropped in every service at once. Pure.

use opentelemetry::trace::TraceId;

/// The DJB2 score of a trace id in [0, 1]: the 32-bit DJB2 hash (`h = h * 33 + c`, starting
/// at 5381, two's-complement wrapping) of the trace id's 32 **lower-case** hex digits, made
/// non-negative (`i32::MIN` counts as `i32::MAX`) and divided by `i32::MAX`.
///
/// The .NET exporter hashes the upper-case hex instead, so its decisions differ from these
/// (AZURE-HOSTS.md §4); this crate agrees with Python and JavaScript.
pub(crate) fn djb2_score(trace_id: TraceId) -> f64 {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut h: i32 = 5381;
    for byte in trace_id.to_bytes() {
        for nibble in [byte >> 4, byte & 0x0f] {
            let c = HEX[usize::from(nibble)];
            h = h.wrapping_mul(33).wrapping_add(i32::from(c));
        }
    }
    score_of_hash(h)
}

/// The score of a DJB2 hash: `|h| / i32::MAX`, with `i32::MIN` as `i32::MAX`.
fn score_of_hash(h: i32) -> f64 {
    let h = if h == i32::MIN { i32::MAX } else { h.abs() };
    f64::from(h) / f64::from(i32::MAX)
}

/// The DJB2 score of any string, for the spec's vectors.
#[cfg(test)]
pub(crate) fn djb2_score_str(s: &str) -> f64 {
    let mut h: i32 = 5381;
    for c in s.bytes() {
        h = h.wrapping_mul(33).wrapping_add(i32::from(c));
    }
    score_of_hash(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_vectors() {
        assert_eq!(djb2_score_str(""), 5381.0 / 2147483647.0);
        assert_eq!(djb2_score_str("a"), 177670.0 / 2147483647.0);
        assert_eq!(
            djb2_score_str("12345678901234567890123456789012"),
            0.9306821757604751
        );
        // AZURE-HOSTS.md §4: lower-case, not .NET's upper-case.
        let id = TraceId::from_hex("0123456789abcdef0123456789abcdef").unwrap_or(TraceId::INVALID);
        assert_eq!(djb2_score(id), 0.2572846455766282);
        assert_eq!(
            djb2_score_str("0123456789ABCDEF0123456789ABCDEF"),
            0.7609640917558987
        );
    }

    #[test]
    fn trace_ids_hash_their_lower_case_hex() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..1000 {
            let id = TraceId::from(rng.u128(..));
            assert_eq!(djb2_score(id), djb2_score_str(&format!("{id:032x}")));
        }
    }
}
