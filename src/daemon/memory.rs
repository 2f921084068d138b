//! Giving memory back to the system between cycles.
//!
//! A cycle over a large ledger reads every open invoice, plans and drops the result, then
//! the daemon sleeps for the poll interval. Two things kept the idle daemon as big as its
//! busiest moment (README, "Performance", measured with `overdued-bench --only idle`):
//!
//! - sled keeps every page a pass has read: its cache bound is applied through per-shard
//!   queues that a pass over 100,000 invoices hardly fills, so about 70 MB of pages stayed
//!   live. Reopening the store in place after the cycle drops them (a fresh handle holds
//!   a few MB; reopening a 140 MB store takes a fraction of a second).
//! - glibc could not give back what was freed: the long-lived sled pages had been
//!   allocated among the cycle's short-lived objects, and its trim only returns whole free
//!   pages. The binary uses jemalloc (`src/main.rs`), which returns freed pages by itself;
//!   the glibc settings below remain for code that runs the daemon on glibc's malloc (the
//!   library's users, the tests).

use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, warn};

use super::Shared;

/// Stores smaller than this are not reopened: what sled caches of them is small.
const REOPEN_FROM_BYTES: u64 = 16 * 1024 * 1024;

/// How long a reopen waits for calls in flight to put the old handle down.
const REOPEN_PATIENCE: Duration = Duration::from_secs(2);

/// When to trim again after a cycle, once the closed handle's pages are freed.
const LATE_TRIM_AFTER: Duration = Duration::from_secs(3);

/// Sets the allocator up for a long-running process with bursts of work: called once,
/// before any thread starts.
pub fn configure_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes the allocator's parameters; called before the runtime
    // starts its threads.
    unsafe {
        // One arena: the daemon's work is mostly waiting, and memory freed in one place
        // can be trimmed (measured on glibc: 59 MiB instead of 76 MiB idle at 20,000
        // invoices, 210 instead of 227 at 100,000, before the store was reopened).
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Returns free heap pages to the system (glibc only; elsewhere a no-op).
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it has no
    // preconditions and is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// After a connection's cycle (its cycle lock held by the caller): reopens the store when
/// it is large, no other connection's cycle runs and it was not reopened within the poll
/// interval, then trims the heap.
pub async fn after_cycle(shared: &Arc<Shared>, name: &str) {
    let (_, cfg) = shared.config();
    let recently = shared
        .store
        .since_reopen()
        .is_some_and(|d| d < cfg.daemon.poll_interval.0);
    if !recently && shared.store.size_on_disk() >= REOPEN_FROM_BYTES {
        let others: Vec<_> = shared
            .conns()
            .iter()
            .filter(|(n, _)| n.as_str() != name)
            .map(|(_, c)| c.cycle_lock.clone())
            .collect();
        // Another cycle running would only wait, but its pages would come straight back.
        let guards: Option<Vec<_>> = others
            .into_iter()
            .map(|l| l.try_lock_owned().ok())
            .collect();
        if let Some(guards) = guards {
            let s = shared.clone();
            let r = tokio::task::spawn_blocking(move || {
                let started = std::time::Instant::now();
                let r = s.store.reopen_to_free_memory(REOPEN_PATIENCE);
                (r, started.elapsed())
            })
            .await;
            drop(guards);
            match r {
                Ok((Ok(true), took)) => {
                    debug!(connection = %name, ms = took.as_millis() as u64, "store reopened to free memory")
                }
                Ok((Ok(false), _)) => {
                    debug!(connection = %name, "store still in use; not reopened this time")
                }
                Ok((Err(e), _)) => {
                    warn!(connection = %name, error = %e, "reopening the store failed; it is opened afresh by the store's recovery")
                }
                Err(e) => warn!(connection = %name, error = %e, "reopening the store failed"),
            }
        }
    }
    release_freed_memory();
    // The old handle's pages are freed by sled's own threads a moment after it is
    // dropped, after the trim above: trim once more when they have been.
    tokio::spawn(async {
        tokio::time::sleep(LATE_TRIM_AFTER).await;
        let _ = tokio::task::spawn_blocking(release_freed_memory).await;
    });
}
