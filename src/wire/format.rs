//! Wire formats of times and durations, written without allocating.

use std::fmt::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day) (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `YYYY-MM-DDThh:mm:ss.` of a second since the epoch (years past 9999 as 9999).
fn second_prefix(secs: u64) -> [u8; 20] {
    let secs = secs.min(i64::MAX as u64) as i64;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400) as u32;
    let mut b = *b"0000-00-00T00:00:00.";
    digits(&mut b[0..4], y.clamp(0, 9999) as u32);
    digits(&mut b[5..7], mo);
    digits(&mut b[8..10], d);
    digits(&mut b[11..13], rem / 3600);
    digits(&mut b[14..16], (rem % 3600) / 60);
    digits(&mut b[17..19], rem % 60);
    b
}

/// [`second_prefix`] with the last second remembered per thread: the items of a batch are
/// mostly of a few seconds, so most items only write their microseconds.
fn second_prefix_cached(secs: u64) -> [u8; 20] {
    thread_local! {
        static LAST: std::cell::Cell<Option<(u64, [u8; 20])>> = const { std::cell::Cell::new(None) };
    }
    LAST.with(|last| match last.get() {
        Some((cached, prefix)) if cached == secs => prefix,
        _ => {
            let prefix = second_prefix(secs);
            last.set(Some((secs, prefix)));
            prefix
        }
    })
}

/// A point in time, written as RFC 3339 UTC with microseconds and a `Z`:
/// `2019-12-04T21:18:36.027613Z`. Times before 1970 are written as the epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Timestamp(pub(crate) SystemTime);

impl Timestamp {
    /// `YYYY-MM-DDThh:mm:ss.ffffffZ`, 27 bytes (years past 9999 are written as 9999).
    pub(crate) fn to_bytes(self) -> [u8; 27] {
        let since = self.0.duration_since(UNIX_EPOCH).unwrap_or_default();
        let mut b = *b"0000-00-00T00:00:00.000000Z";
        if let Some(head) = b.get_mut(..20) {
            head.copy_from_slice(&second_prefix_cached(since.as_secs()));
        }
        digits(&mut b[20..26], since.subsec_micros());
        b
    }

    pub(crate) fn write_to(&self, out: &mut impl Write) -> fmt::Result {
        let bytes = self.to_bytes();
        out.write_str(std::str::from_utf8(&bytes).unwrap_or_default())
    }
}

/// Writes `n` as decimal digits filling `out` (zero-padded; higher digits are cut).
fn digits(out: &mut [u8], mut n: u32) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let bytes = self.to_bytes();
        serializer.serialize_str(std::str::from_utf8(&bytes).unwrap_or_default())
    }
}

/// The longest duration the service accepts is just under 1000 days.
const MAX_DURATION_MICROS: u128 = 1000 * 86_400 * 1_000_000 - 1;

/// A duration, written as a .NET TimeSpan with days and microseconds: `d.hh:mm:ss.ffffff`,
/// e.g. `0.00:00:01.234567`. Durations of 1000 days or more are written as `999.23:59:59.999999`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct TimeSpan(pub(crate) Duration);

impl TimeSpan {
    /// The span between two instants; zero if `end` is before `start`.
    pub(crate) fn between(start: SystemTime, end: SystemTime) -> Self {
        TimeSpan(end.duration_since(start).unwrap_or_default())
    }

    /// `d.hh:mm:ss.ffffff` into a stack buffer (at most 25 bytes, days 0 to 999), written
    /// digit by digit: `write!` with padding specifiers costs a few percent of a span export.
    /// Returns the buffer and the length used.
    pub(crate) fn to_bytes(self) -> ([u8; 25], usize) {
        let micros = self.0.as_micros().min(MAX_DURATION_MICROS) as u64;
        let secs = micros / 1_000_000;
        // Below 1000 days, so it fits in a u32.
        let days = (secs / 86_400) as u32;
        let day_digits = match days {
            0..=9 => 1,
            10..=99 => 2,
            _ => 3,
        };
        let mut b = [0u8; 25];
        digits(&mut b[..day_digits], days);
        let rest = &mut b[day_digits..day_digits + 16];
        rest.copy_from_slice(b".00:00:00.000000");
        digits(&mut rest[1..3], ((secs % 86_400) / 3600) as u32);
        digits(&mut rest[4..6], ((secs % 3600) / 60) as u32);
        digits(&mut rest[7..9], (secs % 60) as u32);
        digits(&mut rest[10..16], (micros % 1_000_000) as u32);
        (b, day_digits + 16)
    }

    pub(crate) fn write_to(&self, out: &mut impl Write) -> fmt::Result {
        let (bytes, len) = self.to_bytes();
        out.write_str(std::str::from_utf8(&bytes[..len]).unwrap_or_default())
    }
}

impl fmt::Display for TimeSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

impl Serialize for TimeSpan {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (bytes, len) = self.to_bytes();
        serializer.serialize_str(std::str::from_utf8(&bytes[..len]).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(secs: u64, nanos: u32) -> String {
        Timestamp(UNIX_EPOCH + Duration::new(secs, nanos)).to_string()
    }

    #[test]
    fn timestamps() {
        let table = [
            (0, 0, "1970-01-01T00:00:00.000000Z"),
            (1_575_494_316, 27_613_000, "2019-12-04T21:18:36.027613Z"),
            // Nanoseconds are truncated to microseconds.
            (1_575_494_316, 27_613_999, "2019-12-04T21:18:36.027613Z"),
            (951_782_400, 0, "2000-02-29T00:00:00.000000Z"),
            (4_102_444_799, 999_999_000, "2099-12-31T23:59:59.999999Z"),
        ];
        for (secs, nanos, want) in table {
            assert_eq!(ts(secs, nanos), want, "{secs}.{nanos}");
        }
        let before_epoch = UNIX_EPOCH - Duration::from_secs(10);
        assert_eq!(
            Timestamp(before_epoch).to_string(),
            "1970-01-01T00:00:00.000000Z"
        );
    }

    #[test]
    fn durations() {
        let table = [
            (Duration::ZERO, "0.00:00:00.000000"),
            (Duration::from_millis(1001), "0.00:00:01.001000"),
            (Duration::from_nanos(1_234_567_891), "0.00:00:01.234567"),
            (Duration::from_secs(86_400), "1.00:00:00.000000"),
            (
                Duration::from_secs(3 * 86_400 + 4 * 3600 + 5 * 60 + 6),
                "3.04:05:06.000000",
            ),
            (Duration::from_secs(12 * 86_400 + 59), "12.00:00:59.000000"),
            (
                Duration::from_secs(123 * 86_400 + 23 * 3600),
                "123.23:00:00.000000",
            ),
            (Duration::from_secs(1000 * 86_400), "999.23:59:59.999999"),
            (Duration::MAX, "999.23:59:59.999999"),
        ];
        for (d, want) in table {
            assert_eq!(TimeSpan(d).to_string(), want);
        }
        let now = SystemTime::now();
        assert_eq!(
            TimeSpan::between(now, now - Duration::from_secs(1)),
            TimeSpan(Duration::ZERO)
        );
    }

    #[test]
    fn calendar_matches_a_day_by_day_walk() {
        let (mut y, mut m, mut d) = (1970i64, 1u32, 1u32);
        for days in 0..200_000i64 {
            assert_eq!(civil_from_days(days), (y, m, d));
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = match m {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }
}
