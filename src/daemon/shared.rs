//! What the connection tasks and the HTTP handlers share: the config in effect, the
//! store, and the live state of each connection.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};
use overdued_connector::{Clock, Connector, StatsSnapshot, System};
use tokio::sync::Notify;

use super::store_watch::WatchedStore;
use super::ConnectorFactory;
use crate::config::{Config, ConnectionConfig};
use crate::report::status;

/// The live state of one connection, shared between its task and the HTTP handlers.
pub struct ConnState {
    pub system: System,
    pub enabled: bool,
    pub connector: Option<Arc<dyn Connector>>,
    /// Counters of connectors replaced on reload, so metrics never go backwards.
    pub retired_stats: StatsSnapshot,
    pub build_error: Option<String>,
    pub syncs_ok: u64,
    pub syncs_failed: u64,
    pub last_success: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// The last cycle ended because the grant was refused.
    pub reauth: bool,
    /// (kind, outcome) → count since start.
    pub actions: BTreeMap<(String, String), u64>,
    /// The status computed from the store after the last cycle.
    pub snapshot: Option<status::ConnectionStatus>,
    pub kick: Arc<Notify>,
    pub reload: Arc<Notify>,
    /// Held by the connection's cycle, and by a plan made through the admin endpoint,
    /// so the two never work on the connection's cache at once.
    pub cycle_lock: Arc<tokio::sync::Mutex<()>>,
    /// Set when `overdued connect` handed over a new grant: the task rebuilds its
    /// connector before the next cycle.
    pub regrant: bool,
}

impl ConnState {
    pub(super) fn new(c: &ConnectionConfig) -> ConnState {
        ConnState {
            system: c.system(),
            enabled: c.enabled,
            connector: None,
            retired_stats: StatsSnapshot::default(),
            build_error: None,
            syncs_ok: 0,
            syncs_failed: 0,
            last_success: None,
            last_error: None,
            reauth: false,
            actions: BTreeMap::new(),
            snapshot: None,
            kick: Arc::new(Notify::new()),
            reload: Arc::new(Notify::new()),
            cycle_lock: Arc::new(tokio::sync::Mutex::new(())),
            regrant: false,
        }
    }

    pub fn needs_reconnect(&self) -> bool {
        self.reauth
            || self
                .connector
                .as_ref()
                .and_then(|c| c.runtime())
                .is_some_and(|r| r.needs_reconnect())
            || self.snapshot.as_ref().is_some_and(|s| s.needs_reconnect)
    }

    pub fn api_stats(&self) -> StatsSnapshot {
        let mut s = self.retired_stats.clone();
        if let Some(rt) = self.connector.as_ref().and_then(|c| c.runtime()) {
            add_stats(&mut s, &rt.stats());
        }
        s
    }
}

pub fn add_stats(into: &mut StatsSnapshot, s: &StatsSnapshot) {
    into.calls += s.calls;
    into.transport_errors += s.transport_errors;
    into.limiter_waits += s.limiter_waits;
    into.limiter_wait_micros += s.limiter_wait_micros;
    into.retries += s.retries;
    into.refreshes += s.refreshes;
    into.refresh_failures += s.refresh_failures;
    for (k, v) in &s.by_status {
        *into.by_status.entry(*k).or_insert(0) += v;
    }
}

/// The config in effect.
pub(super) struct Current {
    /// Bumped by every accepted reload.
    pub(super) gen: u64,
    pub(super) config: Arc<Config>,
    /// For each connection, the generation whose config added or changed its table. Its
    /// task rebuilds the connector only when this moves past the one it was built for,
    /// so a reload leaves the connections it did not touch running as they were.
    pub(super) table_gen: BTreeMap<String, u64>,
}

impl Current {
    pub(super) fn first(config: Config) -> Current {
        Current {
            gen: 0,
            table_gen: config
                .connections
                .iter()
                .map(|c| (c.name.clone(), 0))
                .collect(),
            config: Arc::new(config),
        }
    }
}

/// Everything the tasks and the HTTP handlers share.
pub struct Shared {
    pub(super) config: RwLock<Current>,
    pub store: Arc<WatchedStore>,
    pub clock: Arc<dyn Clock>,
    pub factory: ConnectorFactory,
    pub started_at: DateTime<Utc>,
    pub http_addr: SocketAddr,
    pub conns: Mutex<BTreeMap<String, ConnState>>,
    /// Webhook de-duplication and burst coalescing.
    pub webhooks: super::webhooks::WebhookGate,
    /// When each connection's last cycle ended, for the owner-wide digest task.
    pub cycles_ended: super::scheduler::CyclesEnded,
    pub(super) admin_token: String,
}

impl Shared {
    /// The config in effect and its generation (bumped by every accepted reload).
    pub fn config(&self) -> (u64, Arc<Config>) {
        let g = self.config.read().unwrap_or_else(|p| p.into_inner());
        (g.gen, g.config.clone())
    }

    /// The config in effect and the generation of `name`'s table in it (the last reload
    /// that added or changed it), read together so a task never pairs a new generation
    /// with an old table.
    pub fn config_for(&self, name: &str) -> (u64, Arc<Config>) {
        let g = self.config.read().unwrap_or_else(|p| p.into_inner());
        (
            g.table_gen.get(name).copied().unwrap_or(g.gen),
            g.config.clone(),
        )
    }

    pub fn conns(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, ConnState>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Why the store is failing, while it is (any phase's error, at once).
    pub fn store_trouble(&self) -> Option<String> {
        self.store.trouble()
    }

    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }
}
