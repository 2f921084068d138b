//! A client-side limiter per connection, so steady operation never meets a 429.
//!
//! A request holds its slot in the rate window from the moment it starts until one
//! window after it *finished*. The server counts a request somewhere between those two
//! instants, so no window of the server's can ever see more requests than the limit,
//! whatever the latency and however the server aligns its windows.
//!
//! The vendors count per account (a QuickBooks realm, a Xero organisation, each for one
//! app), not per connector object: live connectors of the same account in one process
//! (the one rebuilt after a config reload and its predecessor, two connections on one
//! organisation) share one limiter through [`RateLimiter::for_account`], so a rebuilt
//! connector does not start with an empty window the vendor still remembers. A reload
//! rebuilds only the connections whose table changed, but it does rebuild those, and
//! nothing forbids two tables naming one account (a QuickBooks realm may be learnt only
//! at `connect`), so the sharing stays; keyed by account within the process, it needs no
//! handle threaded through every vendor's builder. A process that starts afresh
//! (`run --once`, a restart) cannot know the last minute's calls; it meets at most a 429,
//! whose `Retry-After` it obeys.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::stats::RuntimeStats;

/// A vendor's limits for one connection (QuickBooks realm, Xero organisation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSpec {
    /// Requests allowed in any window of length `window`.
    pub per_window: u32,
    pub window: Duration,
    /// Requests in flight at once.
    pub concurrent: u32,
    /// Requests allowed in any window of length `day`, when the vendor has a daily cap.
    pub per_day: Option<u32>,
    pub day: Duration,
}

impl LimitSpec {
    /// The same limits with time running `factor` times faster, for a simulator that
    /// enforces the real limits at an accelerated time scale.
    pub fn accelerated(self, factor: u32) -> LimitSpec {
        let f = factor.max(1);
        LimitSpec {
            window: self.window / f,
            day: self.day / f,
            ..self
        }
    }
}

#[derive(Debug)]
struct Window {
    len: Duration,
    cap: usize,
    /// When finished requests stop counting, oldest first.
    finished: VecDeque<Instant>,
}

impl Window {
    fn purge(&mut self, now: Instant) {
        while self.finished.front().is_some_and(|t| *t + self.len <= now) {
            self.finished.pop_front();
        }
    }

    fn used(&self, in_flight: usize) -> usize {
        self.finished.len() + in_flight
    }

    /// When a slot frees up with no request finishing meanwhile, if ever.
    fn frees_at(&self) -> Option<Instant> {
        self.finished.front().map(|t| *t + self.len)
    }
}

#[derive(Debug)]
struct State {
    in_flight: usize,
    minute: Window,
    day: Option<Window>,
    /// Set after a 429 so every request of the connection waits, not just the one refused.
    paused_until: Option<Instant>,
}

/// The limiter of one connection. Cheap to clone; clones share the limits. Waits are
/// counted in the connection's own stats even when the limits are shared.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
    stats: Arc<RuntimeStats>,
}

#[derive(Debug)]
struct Inner {
    spec: LimitSpec,
    state: Mutex<State>,
    notify: Notify,
}

/// A started request's slot; dropping it marks the request finished.
#[derive(Debug)]
pub struct Permit {
    inner: Arc<Inner>,
}

/// The limits of the vendor accounts live connectors use. Weak: an account nobody uses
/// any more is forgotten, so a limiter never outlives the runtime whose clock its
/// instants came from.
fn accounts() -> &'static Mutex<HashMap<String, Weak<Inner>>> {
    static ACCOUNTS: OnceLock<Mutex<HashMap<String, Weak<Inner>>>> = OnceLock::new();
    ACCOUNTS.get_or_init(|| Mutex::new(HashMap::new()))
}

impl RateLimiter {
    /// A limiter of its own, shared with no other connector.
    pub fn new(spec: LimitSpec, stats: Arc<RuntimeStats>) -> Self {
        RateLimiter {
            inner: Arc::new(Inner::new(spec)),
            stats,
        }
    }

    /// The limiter of the vendor account `account` (a key naming the vendor, its API
    /// base, the app and the realm or organisation), shared by every live connector of
    /// that account in this process. Limits changed by the config start a fresh window.
    pub fn for_account(account: &str, spec: LimitSpec, stats: Arc<RuntimeStats>) -> Self {
        let mut map = accounts().lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, w| w.strong_count() > 0);
        let inner = match map.get(account).and_then(Weak::upgrade) {
            Some(inner) if inner.spec == spec => inner,
            _ => {
                let inner = Arc::new(Inner::new(spec));
                map.insert(account.to_string(), Arc::downgrade(&inner));
                inner
            }
        };
        RateLimiter { inner, stats }
    }

    pub fn spec(&self) -> LimitSpec {
        self.inner.spec
    }

    /// Stops every request of this connection until `until` (after a 429's `Retry-After`).
    pub fn pause_until(&self, until: Instant) {
        let mut st = self.inner.lock();
        if st.paused_until.is_none_or(|p| p < until) {
            st.paused_until = Some(until);
        }
    }

    /// Waits until a request may start within every limit, and takes its slot.
    pub async fn acquire(&self) -> Permit {
        let started = Instant::now();
        let mut waited = false;
        loop {
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let wake_at = {
                let mut st = self.inner.lock();
                let now = Instant::now();
                match self.inner.try_take(&mut st, now) {
                    Ok(()) => {
                        let room = st.in_flight < self.inner.spec.concurrent.max(1) as usize;
                        drop(st);
                        if room {
                            // Pass the wake-up on: another waiter may fit as well.
                            self.inner.notify.notify_one();
                        }
                        if waited {
                            let s = &self.stats;
                            s.limiter_waits.fetch_add(1, Ordering::Relaxed);
                            s.limiter_wait_micros
                                .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                        }
                        return Permit {
                            inner: self.inner.clone(),
                        };
                    }
                    Err(at) => at,
                }
            };
            waited = true;
            match wake_at {
                // Only time frees a slot of the rate window; a finishing request does not.
                Some(at) => tokio::time::sleep_until(at).await,
                None => notified.await,
            }
        }
    }
}

impl Inner {
    fn new(spec: LimitSpec) -> Inner {
        let state = State {
            in_flight: 0,
            minute: Window {
                len: spec.window,
                cap: spec.per_window.max(1) as usize,
                finished: VecDeque::new(),
            },
            day: spec.per_day.map(|cap| Window {
                len: spec.day,
                cap: cap.max(1) as usize,
                finished: VecDeque::new(),
            }),
            paused_until: None,
        };
        Inner {
            spec,
            state: Mutex::new(state),
            notify: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a slot, or says when to look again (`None`: when a request finishes).
    fn try_take(&self, st: &mut State, now: Instant) -> Result<(), Option<Instant>> {
        if let Some(p) = st.paused_until {
            if now < p {
                return Err(Some(p));
            }
            st.paused_until = None;
        }
        if st.in_flight >= self.spec.concurrent.max(1) as usize {
            return Err(None);
        }
        st.minute.purge(now);
        if st.minute.used(st.in_flight) >= st.minute.cap {
            return Err(st.minute.frees_at());
        }
        let in_flight = st.in_flight;
        if let Some(day) = st.day.as_mut() {
            day.purge(now);
            if day.used(in_flight) >= day.cap {
                return Err(day.frees_at());
            }
        }
        st.in_flight += 1;
        Ok(())
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        {
            let mut st = self.inner.lock();
            let now = Instant::now();
            st.in_flight = st.in_flight.saturating_sub(1);
            st.minute.finished.push_back(now);
            if let Some(day) = st.day.as_mut() {
                day.finished.push_back(now);
            }
        }
        self.inner.notify.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn limiter(spec: LimitSpec) -> RateLimiter {
        RateLimiter::new(spec, Arc::new(RuntimeStats::default()))
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_than_the_rate_in_any_window() {
        let spec = LimitSpec {
            per_window: 5,
            window: Duration::from_secs(60),
            concurrent: 10,
            per_day: None,
            day: Duration::from_secs(86_400),
        };
        let l = limiter(spec);
        let t0 = Instant::now();
        let mut starts = Vec::new();
        for _ in 0..12 {
            let p = l.acquire().await;
            starts.push(Instant::now() - t0);
            drop(p);
        }
        // 5 at once, then each next batch one window after the previous finished.
        assert!(
            starts[..5].iter().all(|d| *d == Duration::ZERO),
            "{starts:?}"
        );
        assert!(
            starts[5..10].iter().all(|d| *d == Duration::from_secs(60)),
            "{starts:?}"
        );
        assert_eq!(starts[10], Duration::from_secs(120));
        for (i, s) in starts.iter().enumerate() {
            let in_window = starts
                .iter()
                .filter(|o| **o >= *s && **o < *s + spec.window)
                .count();
            assert!(
                in_window <= 5,
                "window starting at request {i} holds {in_window}"
            );
        }
        assert_eq!(l.stats.limiter_waits.load(Ordering::Relaxed), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn in_flight_requests_count_until_a_window_after_they_finish() {
        let spec = LimitSpec {
            per_window: 2,
            window: Duration::from_secs(10),
            concurrent: 10,
            per_day: None,
            day: Duration::from_secs(86_400),
        };
        let l = limiter(spec);
        let a = l.acquire().await;
        let _b = l.acquire().await;
        let l2 = l.clone();
        let third = tokio::spawn(async move {
            let _p = l2.acquire().await;
            Instant::now()
        });
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(
            !third.is_finished(),
            "a slot freed while both requests were still in flight"
        );
        let finished = Instant::now();
        drop(a);
        let started = third.await.unwrap();
        assert_eq!(started - finished, Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn caps_concurrency() {
        let spec = LimitSpec {
            per_window: 1000,
            window: Duration::from_secs(60),
            concurrent: 3,
            per_day: None,
            day: Duration::from_secs(86_400),
        };
        let l = limiter(spec);
        let live = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (l, live, peak) = (l.clone(), live.clone(), peak.clone());
            tasks.push(tokio::spawn(async move {
                let _p = l.acquire().await;
                let n = live.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                live.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn daily_cap_and_pause() {
        let spec = LimitSpec {
            per_window: 100,
            window: Duration::from_secs(60),
            concurrent: 5,
            per_day: Some(3),
            day: Duration::from_secs(3600),
        };
        let l = limiter(spec);
        let t0 = Instant::now();
        for _ in 0..3 {
            drop(l.acquire().await);
        }
        drop(l.acquire().await);
        assert_eq!(Instant::now() - t0, Duration::from_secs(3600));

        let t1 = Instant::now();
        l.pause_until(t1 + Duration::from_secs(7));
        drop(l.acquire().await);
        assert_eq!(Instant::now() - t1, Duration::from_secs(7));
    }

    #[test]
    fn acceleration_shrinks_windows_only() {
        let spec = LimitSpec {
            per_window: 500,
            window: Duration::from_secs(60),
            concurrent: 10,
            per_day: Some(5000),
            day: Duration::from_secs(86_400),
        };
        let s = spec.accelerated(60);
        assert_eq!(s.window, Duration::from_secs(1));
        assert_eq!(s.per_window, 500);
        assert_eq!(s.concurrent, 10);
        assert_eq!(s.per_day, Some(5000));
    }

    /// A connector rebuilt for the same account (config reload) must see
    /// the calls its predecessor made in the window, or it bursts into a 429.
    #[tokio::test(start_paused = true)]
    async fn connectors_of_one_account_share_the_window() {
        let spec = LimitSpec {
            per_window: 3,
            window: Duration::from_secs(60),
            concurrent: 10,
            per_day: None,
            day: Duration::from_secs(86_400),
        };
        let account = "test shared-window realm 1";
        let first = RateLimiter::for_account(account, spec, Arc::new(RuntimeStats::default()));
        for _ in 0..3 {
            drop(first.acquire().await);
        }
        // The daemon builds the new connector before it drops the old one.
        let start = Instant::now();
        let stats = Arc::new(RuntimeStats::default());
        let rebuilt = RateLimiter::for_account(account, spec, stats.clone());
        drop(first);
        drop(rebuilt.acquire().await);
        assert!(
            start.elapsed() >= Duration::from_secs(60),
            "the rebuilt connector waited for the window: {:?}",
            start.elapsed()
        );
        assert_eq!(
            stats.limiter_waits.load(Ordering::Relaxed),
            1,
            "counted as its own wait"
        );

        // Another account, and the same account under changed limits, start afresh.
        let start = Instant::now();
        let other = RateLimiter::for_account("test shared-window realm 2", spec, stats.clone());
        let changed = LimitSpec {
            per_window: 4,
            ..spec
        };
        let reloaded = RateLimiter::for_account(account, changed, stats);
        for _ in 0..3 {
            drop(other.acquire().await);
            drop(reloaded.acquire().await);
        }
        assert_eq!(start.elapsed(), Duration::ZERO);

        // Once no connector of the account lives, it is forgotten.
        drop((rebuilt, other, reloaded));
        let fresh = RateLimiter::for_account(account, spec, Arc::new(RuntimeStats::default()));
        for _ in 0..3 {
            drop(fresh.acquire().await);
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
