//! The Live Metrics state machine (LIVE-METRICS.md §4): the .NET machine (Ping / Post /
//! Backoff) with the R amendments. Pure: the time is passed in as a [`Duration`] since any
//! fixed origin, so tests drive it with a fake clock.
//!
//! ```text
//! Ping:    every (polling hint ?? 5 s), from the start of the previous ping
//!          200 + subscribed      -> Post
//!          200 + not subscribed  -> stay (the hint, or its absence, applies to the next ping)
//!          failure               -> stay; no success for > 60 s -> Backoff
//! Post:    every 1 s, from the start of the previous post (no drift, no jitter)
//!          200 + subscribed      -> stay
//!          200 + not subscribed  -> Ping (the ETag is reset)
//!          failure               -> stay; no success for > 20 s -> Backoff
//! Backoff: wait 60 s -> Ping (a failure right after it backs off again)
//! ```
//!
//! Entering Post or Ping from an answer restarts the "time of the last success"; the end of
//! a backoff does not (see [`Machine::due`]).

use std::time::Duration;

/// The intervals of the machine; tests make them short.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Timings {
    /// Between pings when the service gives no hint (5 s).
    pub(crate) ping: Duration,
    /// Between posts (1 s).
    pub(crate) post: Duration,
    /// Failed pinging for longer than this backs off (60 s).
    pub(crate) max_ping_failure: Duration,
    /// Failed posting for longer than this backs off (20 s).
    pub(crate) max_post_failure: Duration,
    /// The backoff (60 s).
    pub(crate) backoff: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            ping: Duration::from_secs(5),
            post: Duration::from_secs(1),
            max_ping_failure: Duration::from_secs(60),
            max_post_failure: Duration::from_secs(20),
            backoff: Duration::from_secs(60),
        }
    }
}

/// The three states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Ping,
    Post,
    Backoff,
}

/// What the service answered, as the machine needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A 200 answer.
    Answered {
        subscribed: bool,
        /// `x-ms-qps-service-polling-interval-hint`, when present and valid.
        hint: Option<Duration>,
    },
    /// Any other status, or no answer.
    Failed,
}

/// The machine.
#[derive(Clone, Debug)]
pub(crate) struct Machine {
    timings: Timings,
    phase: Phase,
    /// Start of the current state, or time of the last success in it.
    last_success: Duration,
    /// The interval between pings: the last hint, or the default.
    ping_interval: Duration,
    /// When the next request is due.
    next: Duration,
}

impl Machine {
    /// A machine that pings at `now`.
    pub(crate) fn new(now: Duration, timings: Timings) -> Self {
        Machine {
            timings,
            phase: Phase::Ping,
            last_success: now,
            ping_interval: timings.ping,
            next: now,
        }
    }

    #[cfg(test)]
    pub(crate) fn phase(&self) -> Phase {
        self.phase
    }

    /// When the next request (or the end of the backoff) is due.
    pub(crate) fn next(&self) -> Duration {
        self.next
    }

    /// Called when [`next`](Self::next) has come: the request to send now. The end of a backoff
    /// enters Ping.
    pub(crate) fn due(&mut self, now: Duration) -> Phase {
        if self.phase == Phase::Backoff {
            // Deviation from NET, which restarts the failure window here and so pings for
            // another minute at full rate: the window keeps running (as JS and the RS anchor
            // do), so a service that is still down gets one ping per backoff (§13, 8).
            self.phase = Phase::Ping;
            let _ = now;
        }
        self.phase
    }

    fn enter(&mut self, phase: Phase, now: Duration) {
        self.phase = phase;
        self.last_success = now;
    }

    /// The outcome of the request that started at `started`, known at `now`. Returns the phase
    /// entered, if the phase changed.
    pub(crate) fn answered(
        &mut self,
        started: Duration,
        now: Duration,
        outcome: Outcome,
    ) -> Option<Phase> {
        let before = self.phase;
        match (self.phase, outcome) {
            (Phase::Ping, Outcome::Answered { subscribed, hint }) => {
                // R: the hint applies at once, and its absence restores the default.
                self.ping_interval = hint.unwrap_or(self.timings.ping);
                if subscribed {
                    self.enter(Phase::Post, now);
                    self.next = started + self.timings.post;
                } else {
                    self.last_success = now;
                    self.next = started + self.ping_interval;
                }
            }
            (Phase::Post, Outcome::Answered { subscribed, hint }) => {
                if subscribed {
                    self.last_success = now;
                    self.next = started + self.timings.post;
                } else {
                    self.ping_interval = hint.unwrap_or(self.timings.ping);
                    self.enter(Phase::Ping, now);
                    self.next = started + self.ping_interval;
                }
            }
            (Phase::Ping, Outcome::Failed) => {
                if now.saturating_sub(self.last_success) > self.timings.max_ping_failure {
                    self.enter(Phase::Backoff, now);
                    self.next = now + self.timings.backoff;
                } else {
                    self.next = started + self.ping_interval;
                }
            }
            (Phase::Post, Outcome::Failed) => {
                if now.saturating_sub(self.last_success) > self.timings.max_post_failure {
                    self.enter(Phase::Backoff, now);
                    self.next = now + self.timings.backoff;
                } else {
                    self.next = started + self.timings.post;
                }
            }
            (Phase::Backoff, _) => self.next = now + self.timings.backoff,
        }
        (self.phase != before).then_some(self.phase)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    const SUBSCRIBED: Outcome = Outcome::Answered {
        subscribed: true,
        hint: None,
    };
    const NOT_SUBSCRIBED: Outcome = Outcome::Answered {
        subscribed: false,
        hint: None,
    };

    #[test]
    fn pings_every_five_seconds_from_the_start_of_the_previous_ping() {
        let mut m = Machine::new(s(0.0), Timings::default());
        assert_eq!(m.due(s(0.0)), Phase::Ping);
        assert_eq!(m.answered(s(0.0), s(0.3), NOT_SUBSCRIBED), None);
        assert_eq!(m.next(), s(5.0));
        assert_eq!(m.answered(s(5.0), s(5.9), Outcome::Failed), None);
        assert_eq!(m.next(), s(10.0));
    }

    #[test]
    fn the_hint_applies_at_once_and_its_absence_restores_five_seconds() {
        let mut m = Machine::new(s(0.0), Timings::default());
        let hint = Outcome::Answered {
            subscribed: false,
            hint: Some(s(0.3)),
        };
        m.answered(s(0.0), s(0.1), hint);
        assert_eq!(m.next(), s(0.3));
        m.answered(s(0.3), s(0.4), NOT_SUBSCRIBED);
        assert_eq!(m.next(), s(5.3));
    }

    #[test]
    fn subscribed_posts_every_second_without_drift_and_returns_to_ping() {
        let mut m = Machine::new(s(0.0), Timings::default());
        assert_eq!(m.answered(s(0.0), s(0.2), SUBSCRIBED), Some(Phase::Post));
        assert_eq!(m.next(), s(1.0));
        assert_eq!(m.due(s(1.0)), Phase::Post);
        // A slow answer does not shift the schedule.
        assert_eq!(m.answered(s(1.0), s(1.7), SUBSCRIBED), None);
        assert_eq!(m.next(), s(2.0));
        assert_eq!(
            m.answered(s(2.0), s(2.1), NOT_SUBSCRIBED),
            Some(Phase::Ping)
        );
        assert_eq!(m.next(), s(7.0));
    }

    #[test]
    fn twenty_seconds_of_failed_posts_back_off_for_a_minute_then_ping() {
        let mut m = Machine::new(s(0.0), Timings::default());
        m.answered(s(0.0), s(0.0), SUBSCRIBED);
        let mut t = 1.0;
        while m.phase() == Phase::Post {
            assert!(t < 30.0);
            m.due(s(t));
            m.answered(s(t), s(t), Outcome::Failed);
            t += 1.0;
        }
        // The post at 21 s is the first more than 20 s after the last success (0 s).
        assert_eq!(t, 22.0);
        assert_eq!(m.phase(), Phase::Backoff);
        assert_eq!(m.next(), s(81.0));
        assert_eq!(m.due(s(81.0)), Phase::Ping);
        // Still failing: one ping per backoff.
        m.answered(s(81.0), s(81.2), Outcome::Failed);
        assert_eq!(m.phase(), Phase::Backoff);
        assert_eq!(m.next(), s(141.2));
        // A success ends it.
        m.due(s(141.2));
        m.answered(s(141.2), s(141.3), NOT_SUBSCRIBED);
        m.answered(s(146.2), s(146.3), Outcome::Failed);
        assert_eq!(m.phase(), Phase::Ping);
    }

    #[test]
    fn sixty_seconds_of_failed_pings_back_off() {
        let mut m = Machine::new(s(0.0), Timings::default());
        let mut t = 0.0;
        while m.phase() == Phase::Ping {
            assert!(t < 100.0);
            m.due(s(t));
            m.answered(s(t), s(t), Outcome::Failed);
            t += 5.0;
        }
        assert_eq!(t, 70.0); // the ping at 65 s
        assert_eq!(m.next(), s(125.0));
        // A success in Post resets the failure window.
        let mut m = Machine::new(s(0.0), Timings::default());
        m.answered(s(0.0), s(0.0), SUBSCRIBED);
        m.answered(s(1.0), s(1.0), Outcome::Failed);
        m.answered(s(15.0), s(15.0), SUBSCRIBED);
        m.answered(s(30.0), s(30.0), Outcome::Failed);
        assert_eq!(m.phase(), Phase::Post);
    }
}
