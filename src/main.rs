//! The `overdued` binary: everything lives in the library; this only hands over.

/// jemalloc gives freed memory back by itself (background thread, short decay), where
/// glibc kept most of what a cycle over a large ledger had freed (README, "Performance").
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Read by jemalloc at start: return dirty pages within a second of being freed, from its
/// own thread, so an idle daemon shrinks without a call from us.
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

fn main() -> std::process::ExitCode {
    overdued::cli::main()
}
