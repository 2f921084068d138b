//! `overdued run`: the long-running service.
//!
//! One task per connection syncs, plans and acts every poll interval; a slow or broken
//! connection only delays itself. Signals arrive as a cancellation token (shutdown) and
//! a channel (reload), so tests drive the daemon exactly as systemd does. A loopback
//! HTTP server answers health checks, metrics and the CLI's admin requests while the
//! daemon holds the store lock.

pub mod ageing;
pub mod health;
pub mod http;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod notify;
pub mod scheduler;
pub mod signals;
pub mod status;
pub mod webhooks;

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use overdued_connector::{Clock, Connector, StatsSnapshot, System, TokenStore};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::{Config, ConfigError, ConnectionConfig};
use crate::store::{SledStore, Store, StoreError};

pub use logging::LogStyle;

/// How long a cycle in flight may go on after shutdown was asked for. Whatever is cut
/// off is safe: intents are journaled before acting and carry idempotency keys, so the
/// next start finishes them without doing anything twice. Together with the flush this
/// stays inside the 10 s systemd and operators expect.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The file in the state directory naming the address the HTTP server listens on.
pub const HTTP_ADDR_FILE: &str = "http.addr";
/// The file in the state directory holding the bearer token `/admin/*` requires.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// Where a running daemon's admin endpoint is and the token it accepts, from the files
/// it wrote into the state directory: (`http://ADDR`, token).
pub fn admin_endpoint(state_dir: &std::path::Path) -> Result<(String, String), String> {
    let read = |name: &str| {
        let p = state_dir.join(name);
        std::fs::read_to_string(&p)
            .map(|s| s.trim().to_string())
            .map_err(|e| format!("reading {}: {e}", p.display()))
    };
    Ok((
        format!("http://{}", read(HTTP_ADDR_FILE)?),
        read(ADMIN_TOKEN_FILE)?,
    ))
}

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

/// Exit codes (sysexits.h), as the CLI uses them.
pub mod exit {
    pub const OK: u8 = 0;
    pub const UNAVAILABLE: u8 = 69;
    pub const SOFTWARE: u8 = 70;
    pub const IOERR: u8 = 74;
    pub const CONFIG: u8 = 78;
}

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
}

impl ConnState {
    fn new(c: &ConnectionConfig) -> ConnState {
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

/// Everything the tasks and the HTTP handlers share.
pub struct Shared {
    config: RwLock<(u64, Arc<Config>)>,
    pub store: Arc<SledStore>,
    pub clock: Arc<dyn Clock>,
    pub factory: ConnectorFactory,
    pub started_at: DateTime<Utc>,
    pub http_addr: SocketAddr,
    pub conns: Mutex<BTreeMap<String, ConnState>>,
    pub store_trouble: Mutex<Option<String>>,
    /// When each connection's last cycle ended, for the owner-wide digest task.
    pub cycles_ended: scheduler::CyclesEnded,
    admin_token: String,
}

impl Shared {
    /// The config in effect and its generation (bumped by every accepted reload).
    pub fn config(&self) -> (u64, Arc<Config>) {
        let g = self.config.read().unwrap_or_else(|p| p.into_inner());
        (g.0, g.1.clone())
    }

    pub fn conns(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, ConnState>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_store_trouble(&self, t: Option<String>) {
        *self.store_trouble.lock().unwrap_or_else(|p| p.into_inner()) = t;
    }

    pub fn store_trouble(&self) -> Option<String> {
        self.store_trouble
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// Health as `/healthz` reports it, including a live probe of the store.
    pub fn health(&self) -> health::Health {
        let (_, cfg) = self.config();
        let facts: Vec<health::ConnectionFacts> = self
            .conns()
            .iter()
            .map(|(name, c)| health::ConnectionFacts {
                name: name.clone(),
                enabled: c.enabled,
                needs_reconnect: c.needs_reconnect(),
                build_error: c.build_error.clone(),
                last_success: c
                    .last_success
                    .or_else(|| c.snapshot.as_ref().and_then(|s| s.last_sync)),
            })
            .collect();
        let probe = cfg
            .connections
            .first()
            .map(|c| self.store.get_sync_state(&c.name).err())
            .unwrap_or(None);
        let trouble = probe
            .map(|e| e.to_string())
            .or_else(|| self.store_trouble());
        health::evaluate(
            self.clock.now(),
            self.started_at,
            cfg.daemon.poll_interval.0,
            &facts,
            trouble.as_deref(),
        )
    }

    /// The status report, from the snapshots the tasks keep, with live fields on top.
    pub fn status_report(&self) -> status::StatusReport {
        let (_, cfg) = self.config();
        let now = self.clock.now();
        let mut connections = Vec::new();
        for c in &cfg.connections {
            let conns = self.conns();
            let live = conns.get(&c.name);
            let mut s = live
                .and_then(|l| l.snapshot.clone())
                .unwrap_or_else(|| empty_status(c));
            if let Some(l) = live {
                s.enabled = l.enabled;
                s.needs_reconnect = l.needs_reconnect();
                s.build_error = l.build_error.clone();
                s.last_sync = l.last_success.or(s.last_sync);
                if l.last_error.is_some() {
                    s.last_error = l.last_error.clone();
                }
            }
            drop(conns);
            if let Ok(Some(t)) = self.store.get_tokens(&c.name) {
                s.access_expires_at = Some(t.access_expires_at);
                s.refresh_expires_at = t.refresh_expires_at;
                s.needs_reconnect |= t.needs_reconnect;
            }
            connections.push(s);
        }
        status::StatusReport {
            generated_at: now,
            daemon: Some(status::DaemonInfo {
                pid: std::process::id(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                started_at: self.started_at,
                mode: cfg.daemon.mode,
                config: cfg.path.display().to_string(),
                http: self.http_addr.to_string(),
            }),
            health: self.health(),
            connections,
        }
    }

    /// The metrics snapshot.
    pub fn metrics_input(&self) -> metrics::MetricsInput {
        let now = self.clock.now();
        let healthy = self.health().ok;
        let mut connections = Vec::new();
        let names: Vec<String> = self.conns().keys().cloned().collect();
        for name in names {
            let tokens = self.store.get_tokens(&name).ok().flatten();
            let conns = self.conns();
            let Some(c) = conns.get(&name) else { continue };
            connections.push(metrics::ConnectionMetrics {
                connection: name.clone(),
                system: c.system.as_str().to_string(),
                enabled: c.enabled,
                syncs_ok: c.syncs_ok,
                syncs_failed: c.syncs_failed,
                last_success: c
                    .last_success
                    .or_else(|| c.snapshot.as_ref().and_then(|s| s.last_sync)),
                api: c.api_stats(),
                actions: c.actions.clone(),
                ageing: c
                    .snapshot
                    .as_ref()
                    .map(|s| s.ageing.clone())
                    .unwrap_or_default(),
                needs_reconnect: c.needs_reconnect()
                    || tokens.as_ref().is_some_and(|t| t.needs_reconnect),
                access_expires_at: tokens.as_ref().map(|t| t.access_expires_at),
                refresh_expires_at: tokens.as_ref().and_then(|t| t.refresh_expires_at),
            });
        }
        metrics::MetricsInput {
            now,
            started_at: self.started_at,
            healthy,
            connections,
        }
    }
}

fn empty_status(c: &ConnectionConfig) -> status::ConnectionStatus {
    status::ConnectionStatus {
        name: c.name.clone(),
        system: c.system().as_str().to_string(),
        enabled: c.enabled,
        needs_reconnect: false,
        build_error: None,
        access_expires_at: None,
        refresh_expires_at: None,
        last_sync: None,
        last_full_sync: None,
        last_error: None,
        invoices_stored: 0,
        ageing: ageing::Ageing::default(),
        attention: status::Attention::default(),
    }
}

/// What the daemon is started with.
pub struct DaemonOptions {
    pub config_path: PathBuf,
    pub factory: ConnectorFactory,
    pub clock: Arc<dyn Clock>,
    pub notifier: notify::Notifier,
}

/// A daemon that passed its startup checks and holds the store and the listener.
pub struct Daemon {
    shared: Arc<Shared>,
    listener: tokio::net::TcpListener,
    config_path: PathBuf,
    notifier: notify::Notifier,
}

impl Daemon {
    /// Checks the config, opens the store (taking its lock) and binds the HTTP listener,
    /// failing fast with the reason.
    pub async fn start(opts: DaemonOptions) -> Result<Daemon, DaemonError> {
        let config = crate::config::load(&opts.config_path)?;
        let dir = config.daemon.state_dir.clone();
        let store = Arc::new(SledStore::open(&dir)?);
        let listen = config.daemon.http_listen;
        if !listen.ip().is_loopback() {
            warn!(address = %listen, "daemon.http_listen is not a loopback address: /healthz and /metrics are reachable from the network (admin endpoints still need the token)");
        }
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| DaemonError::Listen {
                addr: listen,
                source,
            })?;
        let http_addr = listener
            .local_addr()
            .map_err(|source| DaemonError::Listen {
                addr: listen,
                source,
            })?;
        let admin_token = new_token();
        write_private(&dir.join(ADMIN_TOKEN_FILE), &format!("{admin_token}\n"))?;
        write_private(&dir.join(HTTP_ADDR_FILE), &format!("{http_addr}\n"))?;
        let conns = config
            .connections
            .iter()
            .map(|c| (c.name.clone(), ConnState::new(c)))
            .collect();
        let shared = Arc::new(Shared {
            config: RwLock::new((0, Arc::new(config))),
            store,
            started_at: opts.clock.now(),
            clock: opts.clock,
            factory: opts.factory,
            http_addr,
            conns: Mutex::new(conns),
            store_trouble: Mutex::new(None),
            cycles_ended: scheduler::CyclesEnded::default(),
            admin_token,
        });
        Ok(Daemon {
            shared,
            listener,
            config_path: opts.config_path,
            notifier: opts.notifier,
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.shared.http_addr
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Serves until `shutdown` is cancelled; `reload` asks for the config to be re-read.
    pub async fn run(
        self,
        shutdown: CancellationToken,
        mut reload: mpsc::Receiver<()>,
    ) -> Result<(), DaemonError> {
        let Daemon {
            shared,
            listener,
            config_path,
            notifier,
        } = self;
        let http_stop = CancellationToken::new();
        let server = tokio::spawn(http::serve(listener, shared.clone(), http_stop.clone()));
        info!("http listening on http://{}", shared.http_addr);

        let tasks_stop = shutdown.child_token();
        let mut tasks: HashMap<String, JoinHandle<()>> = HashMap::new();
        spawn_missing(&shared, &mut tasks, &tasks_stop);
        let digest = tokio::spawn(scheduler::digest_task(shared.clone(), tasks_stop.clone()));

        let (_, cfg) = shared.config();
        let summary = format!(
            "running: {} connection(s), mode {:?}, http://{}",
            cfg.connections.len(),
            cfg.daemon.mode,
            shared.http_addr
        );
        info!(
            config = %cfg.path.display(),
            state_dir = %cfg.daemon.state_dir.display(),
            connections = cfg.connections.len(),
            mode = ?cfg.daemon.mode,
            poll_interval = %cfg.daemon.poll_interval,
            "overdued {} started", env!("CARGO_PKG_VERSION")
        );
        drop(cfg);
        notifier.ready(&summary);

        let mut watchdog = notify::watchdog_interval().map(tokio::time::interval);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                r = reload.recv() => match r {
                    Some(()) => {
                        notifier.reloading();
                        reload_config(&shared, &config_path);
                        spawn_missing(&shared, &mut tasks, &tasks_stop);
                        for c in shared.conns().values() {
                            c.reload.notify_one();
                        }
                        let (_, cfg) = shared.config();
                        notifier.ready(&format!("running: {} connection(s), mode {:?}, http://{}", cfg.connections.len(), cfg.daemon.mode, shared.http_addr));
                    }
                    // Nobody can ask for reloads any more; keep serving until shutdown.
                    None => { shutdown.cancelled().await; break; }
                },
                _ = async { match watchdog.as_mut() { Some(w) => { w.tick().await; } None => std::future::pending().await } } => {
                    notifier.watchdog();
                }
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    tasks.retain(|_, t| !t.is_finished());
                }
            }
        }

        notifier.stopping();
        info!("stopping: waiting for cycles in flight");
        tasks_stop.cancel();
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE + Duration::from_millis(500);
        for (name, t) in tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout_at(deadline, t).await.is_err() {
                warn!(connection = %name, "cycle still running at the shutdown deadline; stopping it (the journal resumes it on the next start)");
                abort.abort();
            }
        }
        let abort_digest = digest.abort_handle();
        if tokio::time::timeout_at(deadline, digest).await.is_err() {
            warn!("digest still being sent at the shutdown deadline; the journal settles it on the next start");
            abort_digest.abort();
        }
        http_stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(1), server).await;
        let (_, cfg) = shared.config();
        for f in [HTTP_ADDR_FILE, ADMIN_TOKEN_FILE] {
            let _ = std::fs::remove_file(cfg.daemon.state_dir.join(f));
        }
        let flushed = tokio::task::spawn_blocking({
            let store = shared.store.clone();
            move || store.flush()
        })
        .await;
        match flushed {
            Ok(Ok(())) => info!("store flushed; stopped"),
            Ok(Err(e)) => error!(error = %e, "flushing the store at shutdown failed"),
            Err(e) => error!(error = %e, "flushing the store at shutdown failed"),
        }
        Ok(())
    }
}

/// Starts a task for every configured connection that has none.
fn spawn_missing(
    shared: &Arc<Shared>,
    tasks: &mut HashMap<String, JoinHandle<()>>,
    stop: &CancellationToken,
) {
    let (_, cfg) = shared.config();
    for c in &cfg.connections {
        if tasks.get(&c.name).is_some_and(|t| !t.is_finished()) {
            continue;
        }
        shared
            .conns()
            .entry(c.name.clone())
            .or_insert_with(|| ConnState::new(c));
        let handle = tokio::spawn(scheduler::connection_task(
            shared.clone(),
            c.name.clone(),
            stop.clone(),
        ));
        tasks.insert(c.name.clone(), handle);
    }
}

/// Re-reads the config. A config that does not load is refused and the running one
/// stays; settings that only take effect at start are kept and called out.
fn reload_config(shared: &Shared, path: &Path) {
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

fn new_token() -> String {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// Writes a file only the daemon's user can read, atomically.
fn write_private(path: &Path, text: &str) -> Result<(), DaemonError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| DaemonError::StateFile {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Runs the daemon until SIGTERM/SIGINT; the whole of `overdued run`.
pub fn main(config_path: PathBuf, factory: ConnectorFactory, clock: Arc<dyn Clock>) -> u8 {
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
