//! What the subcommands share: loading the config and opening the store with exit
//! codes a service manager understands.

use std::path::Path;
use std::sync::Arc;

use crate::config::{self, Config};
use crate::store::{SledStore, StoreError};

use super::exit;

/// A failure that already has its message and exit code.
pub struct Fail(pub u8, pub String);

impl Fail {
    pub fn report(self) -> u8 {
        eprintln!("error: {}", self.1);
        self.0
    }
}

pub fn load_config(flag: Option<&Path>) -> Result<Config, Fail> {
    let path = config::resolve_path(flag);
    config::load(&path).map_err(|e| Fail(exit::CONFIG, e.to_string()))
}

pub fn open_store(c: &Config) -> Result<Arc<SledStore>, Fail> {
    SledStore::open(&c.daemon.state_dir)
        .map(Arc::new)
        .map_err(|e| {
            let hint = match &e {
                StoreError::Locked(_) => {
                    " (stop the daemon first; status, plan, connect, history, promise, pause and resume work while it runs)"
                }
                _ => "",
            };
            Fail(exit::IOERR, format!("{e}{hint}"))
        })
}

pub fn runtime() -> Result<tokio::runtime::Runtime, Fail> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| {
            Fail(
                exit::SOFTWARE,
                format!("cannot start the async runtime: {e}"),
            )
        })
}

pub fn parse_date(flag: &str, s: &str) -> Result<chrono::NaiveDate, Fail> {
    chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").map_err(|_| {
        Fail(
            exit::USAGE,
            format!("{flag} {s:?}: expected a date as YYYY-MM-DD"),
        )
    })
}

/// Logs to stderr, filtered by `OVERDUED_LOG` (or `RUST_LOG`), default `info`.
pub fn init_logging(format: super::LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("OVERDUED_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        // A failed write to a closed stderr is dropped instead of reported with eprintln!,
        // which would panic on the same closed pipe.
        .log_internal_errors(false)
        // Colour codes only for a person at a terminal, never into a redirected log file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        super::LogFormat::Json => builder.json().try_init(),
        super::LogFormat::Text => builder.try_init(),
    };
}
