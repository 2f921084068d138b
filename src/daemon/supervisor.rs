//! The service's life: start (checks, store, listener), the connection tasks, reloads,
//! the watchdog, and a shutdown that lets cycles in flight finish.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use overdued_connector::Clock;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::shared::Current;
use super::state_files::{new_token, write_private, ADMIN_TOKEN_FILE, HTTP_ADDR_FILE};
use super::store_watch::WatchedStore;
use super::{http, notify, reload, scheduler, ConnState, ConnectorFactory, DaemonError, Shared};
use crate::store::{SledStore, Store};

/// How long a cycle in flight may go on after shutdown was asked for. Whatever is cut
/// off is safe: intents are journaled before acting and carry idempotency keys, so the
/// next start finishes them without doing anything twice. Together with the flush this
/// stays inside the 10 s systemd and operators expect.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A failing store is probed once a second and, while the probe fails, reopened (sled
/// 0.34 keeps failing after ENOSPC even once space is back, until its handle is
/// replaced). After this many failed attempts in a row the daemon exits with EX_IOERR
/// for the service manager to restart it. Meanwhile the watchdog is not pinged, so a
/// hung exit is restarted too.
pub const STORE_ATTEMPTS_BEFORE_EXIT: u32 = 30;

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
        let store = Arc::new(WatchedStore::new(Arc::new(SledStore::open(&dir)?)));
        // The config may name a Xero organisation by name, or leave out a realm id: the
        // token store knows what each grant was bound to at connect.
        if let Some(d) = config.shared_ledger(|n| bound_to(store.as_ref(), n)) {
            return Err(crate::config::ConfigError {
                file: config.path.clone(),
                position: None,
                message: format!("{d} (as bound at `overdued connect`)"),
            }
            .into());
        }
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
            config: RwLock::new(Current::first(config)),
            store,
            started_at: opts.clock.now(),
            clock: opts.clock,
            factory: opts.factory,
            http_addr,
            conns: Mutex::new(conns),
            webhooks: Default::default(),
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
        let mut failed_probes = 0u32;
        let mut fatal: Option<String> = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                r = reload.recv() => match r {
                    Some(()) => {
                        notifier.reloading();
                        let diff = reload::reload_config(&shared, &config_path);
                        spawn_missing(&shared, &mut tasks, &tasks_stop);
                        if let Some(diff) = diff {
                            reload::wake_touched(&shared, &diff);
                        }
                        let (_, cfg) = shared.config();
                        notifier.ready(&format!("running: {} connection(s), mode {:?}, http://{}", cfg.connections.len(), cfg.daemon.mode, shared.http_addr));
                    }
                    // Nobody can ask for reloads any more; keep serving until shutdown.
                    None => { shutdown.cancelled().await; break; }
                },
                _ = async { match watchdog.as_mut() { Some(w) => { w.tick().await; } None => std::future::pending().await } } => {
                    if shared.store_trouble().is_none() {
                        notifier.watchdog();
                    }
                }
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    tasks.retain(|_, t| !t.is_finished());
                    if let Some(trouble) = shared.store_trouble() {
                        let store = shared.store.clone();
                        let probe = tokio::task::spawn_blocking(move || store.recover()).await;
                        match probe {
                            Ok(Ok(())) => {
                                info!("the store accepts writes again; chasing resumes");
                                failed_probes = 0;
                                for c in shared.conns().values() {
                                    c.kick.notify_one();
                                }
                            }
                            Ok(Err(e)) => {
                                failed_probes += 1;
                                if failed_probes == 1 {
                                    error!(error = %e, first_error = %trouble, "STORE FAILING: nothing can be recorded, so nothing is chased; retrying every second, exiting for a restart after {STORE_ATTEMPTS_BEFORE_EXIT} s");
                                }
                                if failed_probes >= STORE_ATTEMPTS_BEFORE_EXIT {
                                    fatal = Some(e.to_string());
                                    break;
                                }
                            }
                            Err(e) => error!(error = %e, "store probe failed to run"),
                        }
                    } else {
                        failed_probes = 0;
                    }
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
        if let Some(e) = fatal {
            // Nothing more reaches the disk; what the journal holds is what the next
            // start resumes from.
            return Err(DaemonError::Store(crate::store::StoreError::Backend(format!(
                "the store kept failing ({e}); exiting so the service manager restarts overdued with a fresh store handle"
            ))));
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
pub(super) fn spawn_missing(
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

fn bound_to(store: &dyn crate::store::Store, connection: &str) -> Option<String> {
    store
        .get_tokens(connection)
        .ok()
        .flatten()
        .and_then(|t| t.bound_to)
}
