//! Rate limits at the vendors' numbers. Windows slide over real monotonic time multiplied by
//! the time scale, so `time_scale = 60` makes a limit "minute" last one real second.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::System;

pub const QBO_PER_MINUTE: usize = 500;
pub const QBO_CONCURRENT: usize = 10;
pub const XERO_PER_MINUTE: usize = 60;
pub const XERO_PER_DAY: usize = 5000;
pub const XERO_CONCURRENT: usize = 5;
pub const XERO_APP_PER_MINUTE: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Problem {
    Minute,
    Day,
    Concurrent,
    AppMinute,
}

impl Problem {
    pub fn as_str(self) -> &'static str {
        match self {
            Problem::Minute => "minute",
            Problem::Day => "day",
            Problem::Concurrent => "concurrent",
            Problem::AppMinute => "appminute",
        }
    }
}

/// What is left after a call, for Xero's X-*-Remaining headers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Remaining {
    pub minute: usize,
    pub day: usize,
    pub app_minute: usize,
}

#[derive(Debug)]
pub struct Rejection {
    pub problem: Problem,
    /// Real seconds until a retry can succeed (the window scaled back to real time).
    pub retry_after: u64,
    pub remaining: Remaining,
}

#[derive(Debug, Default)]
struct Window {
    minute: VecDeque<f64>,
    day: VecDeque<f64>,
    in_flight: usize,
}

#[derive(Debug)]
pub struct Limiter {
    pub enforce: bool,
    time_scale: f64,
    base_scaled: f64,
    since: Instant,
    tenants: HashMap<(System, String), Window>,
    app: HashMap<System, VecDeque<f64>>,
    pub violations: u64,
    pub rejected: u64,
}

fn prune(q: &mut VecDeque<f64>, now: f64, span: f64) {
    while q.front().is_some_and(|&t| t <= now - span) {
        q.pop_front();
    }
}

impl Limiter {
    pub fn new(enforce: bool, time_scale: f64) -> Limiter {
        Limiter {
            enforce,
            time_scale: sane_scale(time_scale),
            base_scaled: 0.0,
            since: Instant::now(),
            tenants: HashMap::new(),
            app: HashMap::new(),
            violations: 0,
            rejected: 0,
        }
    }

    pub fn time_scale(&self) -> f64 {
        self.time_scale
    }

    /// Changes the scale without making the scaled timeline jump.
    pub fn set_time_scale(&mut self, s: f64) {
        self.base_scaled = self.scaled_now();
        self.since = Instant::now();
        self.time_scale = sane_scale(s);
    }

    fn scaled_now(&self) -> f64 {
        self.base_scaled + self.since.elapsed().as_secs_f64() * self.time_scale
    }

    fn retry(&self, oldest: Option<f64>, span: f64, now: f64) -> u64 {
        let scaled_wait = oldest.map(|o| o + span - now).unwrap_or(1.0).max(0.0);
        ((scaled_wait / self.time_scale).ceil() as u64).max(1)
    }

    /// Admits a call or says which limit it breaks. Violations are counted whether or not
    /// limits are enforced; when they are not, the call goes through anyway.
    pub fn admit(&mut self, system: System, tenant: &str) -> Result<Remaining, Rejection> {
        let now = self.scaled_now();
        let (per_min, per_day, conc) = match system {
            System::QuickBooks => (QBO_PER_MINUTE, usize::MAX, QBO_CONCURRENT),
            System::Xero => (XERO_PER_MINUTE, XERO_PER_DAY, XERO_CONCURRENT),
        };
        let app_limit = match system {
            System::QuickBooks => usize::MAX,
            System::Xero => XERO_APP_PER_MINUTE,
        };
        let app = self.app.entry(system).or_default();
        prune(app, now, 60.0);
        let app_len = app.len();
        let app_oldest = app.front().copied();
        let w = self
            .tenants
            .entry((system, tenant.to_ascii_lowercase()))
            .or_default();
        prune(&mut w.minute, now, 60.0);
        prune(&mut w.day, now, 86_400.0);
        let problem = if w.in_flight >= conc {
            Some((Problem::Concurrent, None, 0.0))
        } else if w.minute.len() >= per_min {
            Some((Problem::Minute, w.minute.front().copied(), 60.0))
        } else if per_day != usize::MAX && w.day.len() >= per_day {
            Some((Problem::Day, w.day.front().copied(), 86_400.0))
        } else if app_len >= app_limit {
            Some((Problem::AppMinute, app_oldest, 60.0))
        } else {
            None
        };
        let remaining_now = Remaining {
            minute: per_min.saturating_sub(w.minute.len()),
            day: per_day.saturating_sub(w.day.len()).min(XERO_PER_DAY),
            app_minute: app_limit.saturating_sub(app_len).min(XERO_APP_PER_MINUTE),
        };
        if let Some((problem, oldest, span)) = problem {
            self.violations += 1;
            if self.enforce {
                self.rejected += 1;
                let retry_after = if problem == Problem::Concurrent {
                    1
                } else {
                    self.retry(oldest, span, now)
                };
                return Err(Rejection {
                    problem,
                    retry_after,
                    remaining: remaining_now,
                });
            }
        }
        let w = self
            .tenants
            .entry((system, tenant.to_ascii_lowercase()))
            .or_default();
        w.minute.push_back(now);
        if per_day != usize::MAX {
            w.day.push_back(now);
        }
        w.in_flight += 1;
        let remaining = Remaining {
            minute: per_min.saturating_sub(w.minute.len()),
            day: per_day.saturating_sub(w.day.len()).min(XERO_PER_DAY),
            app_minute: app_limit
                .saturating_sub(app_len + 1)
                .min(XERO_APP_PER_MINUTE),
        };
        self.app.entry(system).or_default().push_back(now);
        Ok(remaining)
    }

    pub fn release(&mut self, system: System, tenant: &str) {
        if let Some(w) = self.tenants.get_mut(&(system, tenant.to_ascii_lowercase())) {
            w.in_flight = w.in_flight.saturating_sub(1);
        }
    }
}

fn sane_scale(s: f64) -> f64 {
    if s.is_finite() && s > 0.0 {
        s
    } else {
        1.0
    }
}

/// Holds one concurrency slot until dropped (when the response has been produced).
pub struct Permit {
    pub limiter: Arc<Mutex<Limiter>>,
    pub system: System,
    pub tenant: String,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Ok(mut l) = self.limiter.lock() {
            l.release(self.system, &self.tenant);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xero_minute_limit_then_recovers() {
        let mut l = Limiter::new(true, 6000.0);
        for _ in 0..XERO_PER_MINUTE {
            let r = l.admit(System::Xero, "t").expect("under the limit");
            l.release(System::Xero, "t");
            assert!(r.minute < XERO_PER_MINUTE);
        }
        let e = l
            .admit(System::Xero, "t")
            .expect_err("61st call in a minute");
        assert_eq!(e.problem, Problem::Minute);
        assert_eq!(e.retry_after, 1);
        assert_eq!(l.violations, 1);
        // 6000x: a minute is 10 ms.
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(l.admit(System::Xero, "t").is_ok());
        // Another tenant has its own window.
        assert!(l.admit(System::Xero, "u").is_ok());
    }

    #[test]
    fn concurrency_and_unenforced_counting() {
        let mut l = Limiter::new(true, 1.0);
        for _ in 0..QBO_CONCURRENT {
            l.admit(System::QuickBooks, "r").expect("slot");
        }
        assert_eq!(
            l.admit(System::QuickBooks, "r").expect_err("11th").problem,
            Problem::Concurrent
        );
        l.release(System::QuickBooks, "r");
        assert!(l.admit(System::QuickBooks, "r").is_ok());
        l.enforce = false;
        assert!(l.admit(System::QuickBooks, "r").is_ok());
        assert_eq!(l.violations, 2);
        assert_eq!(l.rejected, 1);
    }
}
