//! Retry decisions: connectors classify their errors, the runtime owns the attempts.

use std::time::Duration;

use rand::Rng;

use crate::error::{ConnectorError, ErrorClass};

/// How persistently one logical call is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// Backoff before the first retry; doubles each time up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// A `Retry-After` longer than this is not slept through inside one call: the error
    /// goes back to the caller (e.g. Xero's daily limit asks for hours).
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(300),
        }
    }
}

/// What to do after an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAction {
    /// Sleep this long, then try again.
    Wait(Duration),
    /// Refresh the access token (once per call), then try again at once.
    Refresh,
    /// Give the error back.
    GiveUp,
}

/// Exponential backoff with full jitter and a cap, one per logical call.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    cap: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, cap: Duration) -> Self {
        Backoff { next: initial, cap }
    }

    /// The ceiling for the coming wait; the wait itself is drawn below it.
    pub fn peek_ceiling(&self) -> Duration {
        self.next.min(self.cap)
    }

    /// The next wait: uniform in [ceiling/2, ceiling], so retries of many calls spread
    /// out but never come back sooner than half the intended delay.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.peek_ceiling();
        self.next = (self.next * 2).min(self.cap);
        let half = ceiling / 2;
        let spread = ceiling.saturating_sub(half).as_micros() as u64;
        let extra = if spread == 0 {
            0
        } else {
            rand::thread_rng().gen_range(0..=spread)
        };
        half + Duration::from_micros(extra)
    }
}

impl RetryPolicy {
    pub fn backoff(&self) -> Backoff {
        Backoff::new(self.initial_backoff, self.max_backoff)
    }

    /// Decides after attempt number `attempt` (1-based) failed with `err`.
    /// `refreshed` says whether this call already refreshed its token once.
    pub fn decide(
        &self,
        attempt: u32,
        err: &ConnectorError,
        refreshed: bool,
        backoff: &mut Backoff,
    ) -> RetryAction {
        if attempt >= self.max_attempts.max(1) {
            return RetryAction::GiveUp;
        }
        match err.class() {
            ErrorClass::RetryLater(after) => {
                let drawn = backoff.next_delay();
                match after {
                    Some(a) if a > self.max_retry_after => RetryAction::GiveUp,
                    Some(a) => RetryAction::Wait(a.max(drawn.min(a + self.initial_backoff))),
                    None => RetryAction::Wait(drawn),
                }
            }
            ErrorClass::Refresh if !refreshed => RetryAction::Refresh,
            // Stale versions are re-read by the connector, which knows what to re-read.
            _ => RetryAction::GiveUp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let mut ceilings = Vec::new();
        for _ in 0..8 {
            let c = b.peek_ceiling();
            let d = b.next_delay();
            assert!(d >= c / 2 && d <= c, "{d:?} outside [{:?}, {c:?}]", c / 2);
            ceilings.push(c.as_millis());
        }
        assert_eq!(ceilings, vec![100, 200, 400, 800, 1000, 1000, 1000, 1000]);
    }

    #[test]
    fn jitter_actually_varies() {
        let draws: std::collections::BTreeSet<Duration> = (0..50)
            .map(|_| Backoff::new(Duration::from_secs(10), Duration::from_secs(10)).next_delay())
            .collect();
        assert!(
            draws.len() > 10,
            "jitter produced only {} distinct delays",
            draws.len()
        );
    }

    #[test]
    fn decisions_follow_the_error_class() {
        let p = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        let mut b = p.backoff();
        let t = ConnectorError::transient("reset");
        assert!(matches!(
            p.decide(1, &t, false, &mut b),
            RetryAction::Wait(_)
        ));
        assert_eq!(p.decide(3, &t, false, &mut b), RetryAction::GiveUp);

        let rl = ConnectorError::RateLimited {
            system: "quickbooks",
            retry_after: Some(Duration::from_secs(7)),
        };
        match p.decide(1, &rl, false, &mut p.backoff()) {
            RetryAction::Wait(d) => assert!(
                d >= Duration::from_secs(7) && d <= Duration::from_millis(7500),
                "{d:?}"
            ),
            other => panic!("{other:?}"),
        }
        let long = ConnectorError::RateLimited {
            system: "xero",
            retry_after: Some(Duration::from_secs(3600)),
        };
        assert_eq!(p.decide(1, &long, false, &mut b), RetryAction::GiveUp);

        assert_eq!(
            p.decide(1, &ConnectorError::Unauthorized, false, &mut b),
            RetryAction::Refresh
        );
        assert_eq!(
            p.decide(2, &ConnectorError::Unauthorized, true, &mut b),
            RetryAction::GiveUp
        );
        for e in [
            ConnectorError::Reauth("invalid_grant".into()),
            ConnectorError::NotFound("1".into()),
            ConnectorError::StaleVersion("5010".into()),
            ConnectorError::Permanent("bad".into()),
        ] {
            assert_eq!(p.decide(1, &e, false, &mut b), RetryAction::GiveUp, "{e}");
        }
    }
}
