//! Why the daemon could not start or stopped, and the exit code each reason maps to.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::exit;
use crate::config::ConfigError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("config: {0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on http://{addr} (daemon.http_listen): {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("state directory: cannot write {path}: {source}")]
    StateFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start: {0}")]
    Runtime(std::io::Error),
}

impl DaemonError {
    pub fn exit_code(&self) -> u8 {
        match self {
            DaemonError::Config(_) => exit::CONFIG,
            DaemonError::Store(_) | DaemonError::Listen { .. } | DaemonError::StateFile { .. } => {
                exit::IOERR
            }
            DaemonError::Runtime(_) => exit::SOFTWARE,
        }
    }
}
