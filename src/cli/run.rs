//! `overdued run`: the daemon. Everything but wiring lives in `crate::daemon`.

use std::path::Path;
use std::sync::Arc;

use overdued_connector::{Clock, SystemClock};

use crate::daemon::{self, ConnectorFactory, LogStyle};

use super::LogFormat;

/// Runs until SIGTERM/SIGINT; returns the process exit code (0 after a clean stop,
/// 78 for a config error, 74 when the state directory or listener is unusable).
pub fn run_daemon(config: Option<&Path>, log_format: LogFormat) -> u8 {
    daemon::logging::init(match log_format {
        LogFormat::Text => LogStyle::Text,
        LogFormat::Json => LogStyle::Json,
    });
    let path = crate::config::resolve_path(config);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    daemon::main(path, factory(), clock)
}

/// The real connectors.
pub fn factory() -> ConnectorFactory {
    Arc::new(crate::connections::build)
}
