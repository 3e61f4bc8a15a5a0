//! How often and how long to wait before sending again: [`RetryPolicy`] and its [`Backoff`]
//! schedule.

use std::time::Duration;

/// How the exporter retries a delivery that failed for a reason that may pass: network errors,
/// timeouts, and the retryable answers of the ingestion service (401, 403, 408, 429, 439, 500,
/// 502, 503, 504, and the retryable items of a 206 partial success).
///
/// A delivery is tried at most [`max_attempts`](Self::max_attempts) times. Between two
/// attempts the exporter waits an exponentially growing, randomised delay ("decorrelated
/// jitter"): each delay is drawn uniformly between the initial delay and three times the
/// previous delay, and never exceeds the maximum delay. When the service asks for a pause with
/// `Retry-After`, the exporter never sends before it, even when that is longer than the maximum
/// delay.
///
/// All attempts and waits happen within the export timeout: a delivery that would have to wait
/// past it stops, and what is still undelivered goes to offline storage (without offline
/// storage, it is reported as a failed export). While the service keeps failing, stored
/// telemetry is re-sent in the background, with waits drawn the same way between the initial
/// and the maximum delay (at least 10 ms).
///
/// ```
/// use std::time::Duration;
/// use opentelemetry_azure_monitor::RetryPolicy;
///
/// let policy = RetryPolicy::default()
///     .with_max_attempts(5)
///     .with_initial_delay(Duration::from_millis(200))
///     .with_max_delay(Duration::from_secs(2));
/// assert_eq!(policy.max_attempts(), 5);
///
/// // Send once, never retry.
/// assert_eq!(RetryPolicy::no_retries().max_attempts(), 1);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct RetryPolicy {
    max_attempts: u32,
    initial_delay: Duration,
    max_delay: Duration,
}

impl RetryPolicy {
    /// Attempts of one delivery by default, the first one included.
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 4;
    /// The shortest wait before a retry by default.
    pub const DEFAULT_INITIAL_DELAY: Duration = Duration::from_millis(500);
    /// The longest wait between two attempts by default (unless `Retry-After` asks for more).
    pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(5);

    /// The default policy: at most 4 attempts, waits from 500 ms up to 5 s.
    pub fn new() -> Self {
        RetryPolicy {
            max_attempts: Self::DEFAULT_MAX_ATTEMPTS,
            initial_delay: Self::DEFAULT_INITIAL_DELAY,
            max_delay: Self::DEFAULT_MAX_DELAY,
        }
    }

    /// A policy that sends once and never retries.
    pub fn no_retries() -> Self {
        Self::new().with_max_attempts(1)
    }

    /// Sets how many times one delivery is attempted, the first attempt included. `0` is taken
    /// as `1`. Defaults to 4.
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets the shortest wait before a retry. Defaults to 500 ms.
    pub fn with_initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = delay;
        self
    }

    /// Sets the longest wait between two attempts; a `Retry-After` of the service can still
    /// ask for more. A value below the initial delay caps every wait at this value. Defaults
    /// to 5 s.
    pub fn with_max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// How many times one delivery is attempted, the first attempt included (at least 1).
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The shortest wait before a retry.
    pub fn initial_delay(&self) -> Duration {
        self.initial_delay
    }

    /// The longest wait between two attempts.
    pub fn max_delay(&self) -> Duration {
        self.max_delay
    }

    /// The waits before the second, third, ... attempt: `max_attempts - 1` delays, randomised
    /// by `rng` (seed it for a reproducible schedule).
    pub(crate) fn backoff(&self, rng: fastrand::Rng) -> Backoff {
        let cap = nanos(self.max_delay);
        let floor = nanos(self.initial_delay).min(cap);
        Backoff {
            rng,
            floor,
            cap,
            previous: floor,
            remaining: self.max_attempts.saturating_sub(1),
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::new()
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The schedule of waits of one delivery: a finite iterator of delays with decorrelated jitter
/// (`next = uniform(floor ..= min(cap, 3 * previous))`), starting from `uniform(floor ..= 3 *
/// floor)`.
#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    rng: fastrand::Rng,
    floor: u64,
    cap: u64,
    previous: u64,
    remaining: u32,
}

impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let high = self
            .previous
            .saturating_mul(3)
            .min(self.cap)
            .max(self.floor);
        let delay = self.rng.u64(self.floor..=high);
        self.previous = delay;
        Some(Duration::from_nanos(delay))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::try_from(self.remaining).unwrap_or(usize::MAX);
        (n, Some(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(policy: &RetryPolicy, seed: u64) -> Vec<Duration> {
        policy.backoff(fastrand::Rng::with_seed(seed)).collect()
    }

    #[test]
    fn yields_one_delay_per_retry() {
        let p = RetryPolicy::default();
        assert_eq!(schedule(&p, 1).len(), 3);
        assert_eq!(
            p.backoff(fastrand::Rng::with_seed(1)).size_hint(),
            (3, Some(3))
        );
        assert!(schedule(&RetryPolicy::no_retries(), 1).is_empty());
        assert!(schedule(&p.clone().with_max_attempts(0), 1).is_empty());
        assert_eq!(schedule(&p.with_max_attempts(10), 1).len(), 9);
    }

    #[test]
    fn delays_stay_between_floor_three_times_the_previous_and_cap() {
        let initial = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        let p = RetryPolicy::new()
            .with_max_attempts(30)
            .with_initial_delay(initial)
            .with_max_delay(max);
        for seed in 0..200 {
            let mut previous = initial;
            for d in schedule(&p, seed) {
                assert!(d >= initial, "{d:?} below the floor (seed {seed})");
                assert!(d <= max, "{d:?} above the cap (seed {seed})");
                assert!(d <= previous * 3, "{d:?} > 3 x {previous:?} (seed {seed})");
                previous = d;
            }
        }
    }

    #[test]
    fn the_schedule_grows_and_reaches_the_cap() {
        let p = RetryPolicy::new()
            .with_max_attempts(40)
            .with_initial_delay(Duration::from_millis(10))
            .with_max_delay(Duration::from_secs(1));
        // Averaged over seeds, later delays are longer than early ones (they settle around a
        // quarter of the cap), and delays come close to the cap.
        let runs: Vec<Vec<Duration>> = (0..100).map(|seed| schedule(&p, seed)).collect();
        let mean = |i: usize| runs.iter().map(|r| r[i]).sum::<Duration>() / 100;
        assert!(mean(0) < Duration::from_millis(30));
        assert!(mean(1) > mean(0));
        assert!(mean(10) > mean(0) * 5);
        assert!(runs
            .iter()
            .flatten()
            .any(|d| *d > Duration::from_millis(950)));
    }

    #[test]
    fn a_fixed_seed_gives_a_fixed_schedule() {
        let p = RetryPolicy::default();
        assert_eq!(schedule(&p, 42), schedule(&p, 42));
        assert_ne!(schedule(&p, 42), schedule(&p, 43));
    }

    #[test]
    fn degenerate_delays_do_not_panic() {
        let zero = RetryPolicy::new()
            .with_initial_delay(Duration::ZERO)
            .with_max_delay(Duration::ZERO);
        assert!(schedule(&zero, 7).iter().all(|d| d.is_zero()));
        // A cap below the initial delay caps every wait.
        let inverted = RetryPolicy::new()
            .with_initial_delay(Duration::from_secs(3))
            .with_max_delay(Duration::from_secs(1));
        assert!(schedule(&inverted, 7)
            .iter()
            .all(|d| *d == Duration::from_secs(1)));
        let huge = RetryPolicy::new()
            .with_max_attempts(u32::MAX)
            .with_initial_delay(Duration::MAX)
            .with_max_delay(Duration::MAX);
        assert!(huge
            .backoff(fastrand::Rng::with_seed(1))
            .take(5)
            .all(|d| d >= Duration::from_secs(1)));
    }

    #[test]
    fn setters_and_getters() {
        let p = RetryPolicy::default()
            .with_max_attempts(7)
            .with_initial_delay(Duration::from_millis(1))
            .with_max_delay(Duration::from_millis(9));
        assert_eq!(p.max_attempts(), 7);
        assert_eq!(p.initial_delay(), Duration::from_millis(1));
        assert_eq!(p.max_delay(), Duration::from_millis(9));
        assert_eq!(RetryPolicy::default(), RetryPolicy::new());
    }
}
