//! Counters for later metrics: calls by status, limiter waits, retries, refreshes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Live counters of one connection's runtime. Shared by `Arc`; read with [`snapshot`].
///
/// [`snapshot`]: RuntimeStats::snapshot
#[derive(Debug, Default)]
pub struct RuntimeStats {
    /// API requests sent (every attempt, whatever came back).
    pub calls: AtomicU64,
    /// Requests that failed below HTTP: timeouts, resets, refused connections.
    pub transport_errors: AtomicU64,
    /// Times a request had to wait for the limiter.
    pub limiter_waits: AtomicU64,
    pub limiter_wait_micros: AtomicU64,
    /// Attempts after the first, for any reason.
    pub retries: AtomicU64,
    /// Access-token refreshes performed, and those that failed.
    pub refreshes: AtomicU64,
    pub refresh_failures: AtomicU64,
    by_status: Mutex<BTreeMap<u16, u64>>,
}

/// A point-in-time copy of [`RuntimeStats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub calls: u64,
    pub transport_errors: u64,
    pub limiter_waits: u64,
    pub limiter_wait_micros: u64,
    pub retries: u64,
    pub refreshes: u64,
    pub refresh_failures: u64,
    pub by_status: BTreeMap<u16, u64>,
}

impl StatsSnapshot {
    pub fn status(&self, code: u16) -> u64 {
        self.by_status.get(&code).copied().unwrap_or(0)
    }
}

impl RuntimeStats {
    pub fn record_status(&self, status: u16) {
        let mut m = self.by_status.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(status).or_insert(0) += 1;
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            calls: self.calls.load(Ordering::Relaxed),
            transport_errors: self.transport_errors.load(Ordering::Relaxed),
            limiter_waits: self.limiter_waits.load(Ordering::Relaxed),
            limiter_wait_micros: self.limiter_wait_micros.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            refreshes: self.refreshes.load(Ordering::Relaxed),
            refresh_failures: self.refresh_failures.load(Ordering::Relaxed),
            by_status: self
                .by_status
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_counts_statuses() {
        let s = RuntimeStats::default();
        s.record_status(200);
        s.record_status(200);
        s.record_status(429);
        s.calls.fetch_add(3, Ordering::Relaxed);
        let snap = s.snapshot();
        assert_eq!(snap.status(200), 2);
        assert_eq!(snap.status(429), 1);
        assert_eq!(snap.status(500), 0);
        assert_eq!(snap.calls, 3);
    }
}
