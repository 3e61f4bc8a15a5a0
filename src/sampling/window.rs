//! The rate window of the rate-limited sampler (AZURE-HOSTS.md §4, "exact"): an
//! exponentially decaying count of spans and of elapsed time, from which the percentage of
//! traces to keep follows. Pure: the caller passes the time.

/// Seconds over which the window adapts (hard-coded in every exporter).
const ADAPTATION_TIME_SECONDS: f64 = 0.1;

/// The state of the window: the decayed span count, the decayed time (ns) and the time of
/// the last update (ns on the caller's monotonic clock).
#[derive(Clone, Debug)]
pub(crate) struct RateWindow {
    inverse_adaptation_time_ns: f64,
    target_spans_per_ns: f64,
    count: f64,
    window_ns: f64,
    last_ns: u64,
}

impl RateWindow {
    /// A window for `traces_per_second`, starting at `now_ns`.
    pub(crate) fn new(traces_per_second: f64, now_ns: u64) -> Self {
        RateWindow {
            inverse_adaptation_time_ns: 1e-9 / ADAPTATION_TIME_SECONDS,
            target_spans_per_ns: 1e-9 * traces_per_second,
            count: 0.0,
            window_ns: 0.0,
            last_ns: now_ns,
        }
    }

    /// Counts one span at `now_ns` and returns the percentage of traces to keep, rounded down
    /// so that `100 / percentage` (the item count the portal multiplies by) is an integer.
    pub(crate) fn percentage(&mut self, now_ns: u64) -> f64 {
        if now_ns <= self.last_ns {
            self.count += 1.0;
        } else {
            let d = (now_ns - self.last_ns) as f64;
            let decay = (-d * self.inverse_adaptation_time_ns).exp();
            self.count = self.count * decay + 1.0;
            self.window_ns = self.window_ns * decay + d;
            self.last_ns = now_ns;
        }
        if self.count == 0.0 {
            return 100.0;
        }
        let p = 100.0 * (self.window_ns * self.target_spans_per_ns / self.count).min(1.0);
        round_down_to_nearest(p)
    }
}

/// `100 / ceil(100 / p)` (0 for 0): the largest percentage at or below `p` whose item count
/// `100 / percentage` is an integer.
pub(crate) fn round_down_to_nearest(p: f64) -> f64 {
    if p == 0.0 {
        0.0
    } else {
        100.0 / (100.0 / p).ceil()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The percentage after `n` spans `gap_ns` apart, the window starting at 0.
    fn after(traces_per_second: f64, gap_ns: u64, n: u64) -> f64 {
        let mut w = RateWindow::new(traces_per_second, 0);
        let mut p = f64::NAN;
        for i in 1..=n {
            p = w.percentage(i * gap_ns);
        }
        p
    }

    #[test]
    fn the_spec_vectors() {
        const MS: u64 = 1_000_000;
        assert_eq!(after(5.0, MS, 1), 0.5);
        assert_eq!(after(5.0, MS, 1000), 0.4975124378109453);
        assert_eq!(after(5.0, 10 * MS, 1000), 5.0);
        for n in [1, 10, 1000] {
            assert_eq!(after(5.0, 200 * MS, n), 100.0);
            assert_eq!(after(1000.0, 10 * MS, n), 100.0);
        }
        assert_eq!(after(0.5, MS, 1000), 0.04997501249375312);
    }

    #[test]
    fn spans_at_the_same_instant_count_without_time() {
        let mut w = RateWindow::new(5.0, 0);
        assert_eq!(w.percentage(0), 0.0);
        let mut w = RateWindow::new(5.0, 100);
        // A clock that goes back counts as the same instant.
        assert_eq!(w.percentage(50), 0.0);
    }

    #[test]
    fn rounding() {
        assert_eq!(round_down_to_nearest(0.0), 0.0);
        assert_eq!(round_down_to_nearest(100.0), 100.0);
        assert_eq!(round_down_to_nearest(60.0), 50.0);
        assert_eq!(round_down_to_nearest(0.49999999999999994), 100.0 / 201.0);
    }
}
