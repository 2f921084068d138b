//! `overdued run`: the long-running service.
//!
//! One task per connection syncs, plans and acts every poll interval; a slow or broken
//! connection only delays itself. Signals arrive as a cancellation token (shutdown) and
//! a channel (reload), so tests drive the daemon exactly as systemd does. A loopback
//! HTTP server answers health checks, metrics and the CLI's admin requests while the
//! daemon holds the store lock.

mod error;
pub mod exit;
pub mod http;
pub mod log_fallback;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod notify;
pub mod owner_admin;
mod reload;
pub mod scheduler;
mod shared;
pub mod signals;
mod state_files;
pub mod store_watch;
mod supervisor;
mod views;
pub mod webhooks;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use overdued_connector::{Clock, Connector, TokenStore};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::error;

use crate::config::ConnectionConfig;

pub use error::DaemonError;
pub use logging::LogStyle;
pub use shared::{add_stats, ConnState, Shared};
pub use state_files::{admin_endpoint, ADMIN_TOKEN_FILE, HTTP_ADDR_FILE};
pub use supervisor::{Daemon, DaemonOptions, SHUTDOWN_GRACE};

/// Builds the connector of one configured connection (`crate::connections::build` in
/// the binary; fakes in tests).
pub type ConnectorFactory = Arc<
    dyn Fn(
            &ConnectionConfig,
            Arc<dyn TokenStore>,
            Arc<dyn Clock>,
        ) -> Result<Arc<dyn Connector>, crate::connections::BuildError>
        + Send
        + Sync,
>;

/// Runs the daemon until SIGTERM/SIGINT; the whole of `overdued run`.
pub fn main(config_path: PathBuf, factory: ConnectorFactory, clock: Arc<dyn Clock>) -> u8 {
    memory::configure_allocator();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("overdued")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the async runtime");
            return exit::SOFTWARE;
        }
    };
    let code = rt.block_on(async move {
        let shutdown = CancellationToken::new();
        let (reload_tx, reload_rx) = mpsc::channel(1);
        if let Err(e) = signals::install(shutdown.clone(), reload_tx) {
            error!(error = %e, "cannot install signal handlers");
            return exit::SOFTWARE;
        }
        let opts = DaemonOptions {
            config_path,
            factory,
            clock,
            notifier: notify::Notifier::from_env(),
        };
        let daemon = match Daemon::start(opts).await {
            Ok(d) => d,
            Err(e) => {
                error!(error = %e, "cannot start");
                return e.exit_code();
            }
        };
        match daemon.run(shutdown, reload_rx).await {
            Ok(()) => exit::OK,
            Err(e) => {
                error!(error = %e, "stopped with an error");
                e.exit_code()
            }
        }
    });
    // Blocking store work still queued must not hold the exit past systemd's patience.
    rt.shutdown_timeout(Duration::from_secs(1));
    code
}
