//! SIGHUP: re-read the config and put it in effect.

use std::path::Path;
use std::sync::Arc;

use tracing::{error, info, warn};

use super::Shared;

/// Re-reads the config. A config that does not load is refused and the running one
/// stays; settings that only take effect at start are kept and called out.
pub(super) fn reload_config(shared: &Shared, path: &Path) {
    let mut new = match crate::config::load(path) {
        Ok(c) => c,
        Err(e) => {
            error!(error = %e, "config reload refused: the new config is invalid; the running config stays in effect");
            return;
        }
    };
    let (gen, old) = shared.config();
    if new.daemon.state_dir != old.daemon.state_dir {
        warn!(
            running = %old.daemon.state_dir.display(),
            new = %new.daemon.state_dir.display(),
            "daemon.state_dir changed: takes effect after a restart"
        );
        new.daemon.state_dir = old.daemon.state_dir.clone();
    }
    if new.daemon.http_listen != old.daemon.http_listen {
        warn!(
            running = %old.daemon.http_listen,
            new = %new.daemon.http_listen,
            "daemon.http_listen changed: takes effect after a restart"
        );
        new.daemon.http_listen = old.daemon.http_listen;
    }
    let added: Vec<&str> = new
        .connections
        .iter()
        .filter(|c| old.connection(&c.name).is_none())
        .map(|c| c.name.as_str())
        .collect();
    let removed: Vec<&str> = old
        .connections
        .iter()
        .filter(|c| new.connection(&c.name).is_none())
        .map(|c| c.name.as_str())
        .collect();
    info!(
        connections = new.connections.len(),
        added = ?added,
        removed = ?removed,
        mode = ?new.daemon.mode,
        "config reloaded"
    );
    *shared.config.write().unwrap_or_else(|p| p.into_inner()) = (gen + 1, Arc::new(new));
}
