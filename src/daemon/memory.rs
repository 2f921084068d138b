//! Giving freed memory back to the system between cycles.
//!
//! A cycle over a large ledger allocates much (every open case is loaded, planned and
//! dropped), then the daemon sleeps for the poll interval. glibc keeps the freed pages in
//! its arenas, so an idle daemon looked as big as its busiest moment; trimming once per
//! cycle returns them, at the cost of a few milliseconds. `overdued-bench --only idle`
//! measures the effect (README, "Performance").

/// Returns free heap pages to the system (glibc only; elsewhere a no-op).
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it has no
    // preconditions and is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}
