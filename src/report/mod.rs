//! The views of the receivables and of the service's health that the CLI, the daemon's
//! HTTP endpoints and the owner's digest all show: computed from the config and the
//! store, so they need no running daemon.

pub mod ageing;
pub mod delivery;
pub mod health;
pub mod status;
