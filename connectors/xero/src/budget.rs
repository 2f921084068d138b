//! The day budget: Xero allows 5000 calls a day per organisation (1000 on Starter). Calls
//! are counted here and checked against the `X-*-Remaining` headers of every response, and
//! when little is left, sync reads yield to the calls that matter (reminders, fees).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use overdued_connector::runtime::LimitSpec;
use overdued_connector::{ConnectionId, ConnectorError};
use reqwest::header::HeaderMap;
use tokio::time::Instant;

/// What the last response said was left.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Remaining {
    pub minute: Option<u32>,
    pub day: Option<u32>,
    pub app_minute: Option<u32>,
}

impl Remaining {
    pub fn from_headers(h: &HeaderMap) -> Remaining {
        let read = |name: &str| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u32>().ok())
        };
        Remaining {
            minute: read("x-minlimit-remaining"),
            day: read("x-daylimit-remaining"),
            app_minute: read("x-appminlimit-remaining"),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    /// Start instants of calls within the last day (and minute) window.
    day: VecDeque<Instant>,
    minute: VecDeque<Instant>,
    /// The day remaining the server reported, and how many calls we had counted then.
    header_day: Option<(u32, u64)>,
    counted: u64,
    last: Remaining,
}

/// A decision on whether a read may go now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Go,
    /// Only this many calls are left today (by count or by the server's word).
    Yield {
        left: u32,
        retry_after: Duration,
    },
}

#[derive(Debug)]
pub struct DayBudget {
    connection: ConnectionId,
    spec: LimitSpec,
    reserve: u32,
    state: Mutex<State>,
    yielding: AtomicBool,
}

impl DayBudget {
    pub fn new(connection: ConnectionId, spec: LimitSpec, reserve_share: f64) -> Self {
        let per_day = spec.per_day.unwrap_or(u32::MAX);
        let share = if reserve_share.is_finite() {
            reserve_share.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let reserve = if per_day == u32::MAX {
            0
        } else {
            (per_day as f64 * share).ceil() as u32
        };
        DayBudget {
            connection,
            spec,
            reserve,
            state: Mutex::new(State::default()),
            yielding: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn purge(&self, st: &mut State, now: Instant) {
        while st.day.front().is_some_and(|t| *t + self.spec.day <= now) {
            st.day.pop_front();
        }
        while st
            .minute
            .front()
            .is_some_and(|t| *t + self.spec.window <= now)
        {
            st.minute.pop_front();
        }
    }

    /// Counts a request being sent.
    pub fn record_call(&self) {
        let now = Instant::now();
        let mut st = self.lock();
        self.purge(&mut st, now);
        st.day.push_back(now);
        st.minute.push_back(now);
        st.counted += 1;
    }

    /// Reads the `X-*-Remaining` headers of a response. Returns how long every call of
    /// the connection should pause when the server's minute budget is spent by someone
    /// else (another app instance on the same organisation), which our own count of
    /// calls cannot see.
    pub fn observe(&self, headers: &HeaderMap) -> Option<Duration> {
        let r = Remaining::from_headers(headers);
        let now = Instant::now();
        let mut st = self.lock();
        self.purge(&mut st, now);
        if let Some(d) = r.day {
            st.header_day = Some((d, st.counted));
        }
        if r.minute.is_some() || r.day.is_some() || r.app_minute.is_some() {
            st.last = r;
        }
        // Our own calls legitimately exhaust the minute; allow for in-flight calls the
        // server counted before our window saw them finish.
        let own = st.minute.len() as u32;
        let slack = self.spec.per_window.saturating_sub(self.spec.concurrent);
        let foreign_minute = r.minute == Some(0) && own < slack;
        let app_spent = r.app_minute == Some(0);
        if foreign_minute || app_spent {
            tracing::warn!(connection = %self.connection, own_calls_in_window = own, minute_left = ?r.minute, app_minute_left = ?r.app_minute, "Xero reports the minute budget spent by other callers; pausing this connection for one window");
            return Some(self.spec.window);
        }
        None
    }

    /// Calls left today: the smaller of our count and the server's last word (less the
    /// calls we made since it said so).
    pub fn left_today(&self) -> Option<u32> {
        let now = Instant::now();
        let mut st = self.lock();
        self.purge(&mut st, now);
        let counted = self
            .spec
            .per_day
            .map(|cap| cap.saturating_sub(st.day.len() as u32));
        let reported = st
            .header_day
            .map(|(d, at)| d.saturating_sub((st.counted - at) as u32));
        match (counted, reported) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn last_reported(&self) -> Remaining {
        self.lock().last
    }

    /// Whether a sync read may go now. Logs once when reads start yielding and once
    /// when they resume.
    pub fn check_read(&self) -> Verdict {
        let left = self.left_today();
        let low = left.is_some_and(|l| l <= self.reserve);
        if !low {
            if self.yielding.swap(false, Ordering::Relaxed) {
                tracing::info!(connection = %self.connection, left_today = ?left, "Xero day budget recovered; sync reads resume");
            }
            return Verdict::Go;
        }
        let left = left.unwrap_or(0);
        let retry_after = {
            let st = self.lock();
            // The oldest counted call leaving the day window is the soonest anything frees.
            st.day
                .front()
                .map(|t| (*t + self.spec.day).saturating_duration_since(Instant::now()))
                .filter(|d| !d.is_zero())
                .unwrap_or(self.spec.day / 24)
        };
        if !self.yielding.swap(true, Ordering::Relaxed) {
            tracing::warn!(connection = %self.connection, left_today = left, reserve = self.reserve, retry_after_s = retry_after.as_secs(), "Xero day budget low: sync reads yield so reminders and fees can still go");
        }
        Verdict::Yield { left, retry_after }
    }

    /// [`check_read`](Self::check_read) as the error a refused read returns.
    pub fn read_allowed(&self) -> Result<(), ConnectorError> {
        match self.check_read() {
            Verdict::Go => Ok(()),
            Verdict::Yield { retry_after, .. } => Err(ConnectorError::RateLimited {
                system: "xero",
                retry_after: Some(retry_after),
            }),
        }
    }

    pub fn is_yielding(&self) -> bool {
        self.yielding.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn spec(per_day: u32) -> LimitSpec {
        LimitSpec {
            per_day: Some(per_day),
            ..crate::limits::LIMITS
        }
    }

    fn headers(min: u32, day: u32, app: u32) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("X-MinLimit-Remaining", HeaderValue::from(min));
        h.insert("X-DayLimit-Remaining", HeaderValue::from(day));
        h.insert("X-AppMinLimit-Remaining", HeaderValue::from(app));
        h
    }

    #[tokio::test(start_paused = true)]
    async fn counted_calls_make_reads_yield_at_the_reserve() {
        let b = DayBudget::new(ConnectionId::new("uk"), spec(100), 0.10);
        for _ in 0..89 {
            b.record_call();
        }
        assert_eq!(b.check_read(), Verdict::Go);
        b.record_call();
        match b.check_read() {
            Verdict::Yield { left, retry_after } => {
                assert_eq!(left, 10);
                assert_eq!(retry_after, Duration::from_secs(86_400));
            }
            v => panic!("{v:?}"),
        }
        assert!(matches!(
            b.read_allowed(),
            Err(ConnectorError::RateLimited {
                retry_after: Some(_),
                ..
            })
        ));
        // A day later the window has emptied.
        tokio::time::advance(Duration::from_secs(86_400)).await;
        assert_eq!(b.check_read(), Verdict::Go);
        assert!(!b.is_yielding());
    }

    #[tokio::test(start_paused = true)]
    async fn the_servers_word_counts_too() {
        let b = DayBudget::new(ConnectionId::new("uk"), spec(5000), 0.10);
        b.record_call();
        assert_eq!(b.observe(&headers(59, 600, 9999)), None);
        assert_eq!(b.left_today(), Some(600));
        assert_eq!(b.check_read(), Verdict::Go);
        for _ in 0..100 {
            b.record_call();
        }
        assert_eq!(b.left_today(), Some(500));
        assert!(matches!(b.check_read(), Verdict::Yield { left: 500, .. }));
        assert_eq!(b.last_reported().day, Some(600));
    }

    #[tokio::test(start_paused = true)]
    async fn a_minute_spent_by_others_pauses_but_our_own_does_not() {
        let b = DayBudget::new(ConnectionId::new("uk"), spec(5000), 0.10);
        b.record_call();
        assert_eq!(
            b.observe(&headers(0, 4000, 9000)),
            Some(Duration::from_secs(60))
        );
        let b = DayBudget::new(ConnectionId::new("uk"), spec(5000), 0.10);
        for _ in 0..60 {
            b.record_call();
        }
        assert_eq!(b.observe(&headers(0, 4940, 9000)), None);
        assert_eq!(
            b.observe(&headers(10, 4940, 0)),
            Some(Duration::from_secs(60))
        );
    }
}
