//! A stateful, faithful simulator of the QuickBooks Online (Accounting v3) and Xero
//! (Accounting 2.0) APIs, their OAuth 2.0 endpoints and their rate limits, for overdued's
//! tests, demo and benchmarks.
//!
//! # Choices worth knowing
//! - **Clock.** The sandbox clock is virtual: it starts at [`SandboxOptions::start`] and only
//!   moves through `POST /_sandbox/clock` or [`Sandbox::set_now`]. Token expiry, `time`
//!   fields and timestamps of writes use it; moving it forward applies the customers'
//!   scheduled payments in time order. Rate-limit windows use real monotonic time times
//!   [`SandboxOptions::time_scale`], and `Retry-After` is given in real seconds.
//! - **State file.** Saving the whole world on every mutation is too slow for 100k-invoice
//!   worlds, so the world is written (atomically, via a temporary file) when [`Sandbox::serve`]
//!   shuts down, every 30 s while it runs and something changed, on `POST /_sandbox/save`
//!   and whenever [`Sandbox::save_state`] is called. A state file that exists is loaded by
//!   [`Sandbox::new`] instead of generating a world (the seed and sizes then come from it).
//! - **Strictness.** Where the vendors' behaviour is unclear the sandbox picks the stricter
//!   reading: `Accept: application/json` is required (both vendors answer XML otherwise),
//!   QuickBooks query values must be quoted, `MAXRESULTS` over 1000 and Xero `pageSize` over
//!   1000 are errors, a QuickBooks refresh token is void as soon as it has been rotated
//!   (it rotates only once it is 24 h old: refreshes before that return the same refresh
//!   token, as Intuit's OAuth FAQ describes; Xero rotates on every refresh, with 30 minutes'
//!   grace),
//!   sending a QuickBooks invoice bumps its `SyncToken`, and Xero lists are ordered by
//!   `UpdatedDateUTC` so an invoice changed mid-sync moves to the end.
//! - **Idempotency.** A `requestid` / `Idempotency-Key` replay returns the stored original
//!   response byte for byte and changes nothing; only successful (2xx) responses are stored,
//!   so a write that failed validation can be retried with the same key. Keys are
//!   forgotten after a window of sandbox time (default 24 h; see `keys`).
//! - **Faults.** See [`FaultConfig`]; the control API never faults.
//!
//! # Routes
//! QuickBooks: `/v3/company/{realmId}/{query,cdc,invoice,invoice/{id},invoice/{id}/send,invoice/{id}/pdf,customer/{id}}`,
//! OAuth `/oauth2/quickbooks/authorize` and `/oauth2/v1/tokens/bearer`.
//! Xero: `/api.xro/2.0/{Invoices,Invoices/{id},Invoices/{id}/Email,Invoices/{id}/History,Invoices/{id}/OnlineInvoice,Contacts,Contacts/{id}}`,
//! `/connections`, OAuth `/identity/connect/authorize` and `/connect/token`.
//! Control (`/_sandbox/`): `GET tenants`, `GET|POST clock`, `POST invoices`,
//! `GET invoices/{system}/{tenant}/{id}`, `POST invoices/{system}/{tenant}/{id}/payments`,
//! `GET|POST faults`, `POST token`, `POST revoke`, `GET|POST limits`, `GET ledger`,
//! `GET stats`, `POST save`, `POST online-payments`, `GET|POST idempotency-window`.
//! Invoice PDFs and payment links: see `documents`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

mod auth;
mod control;
mod credentials;
mod documents;
mod faults;
mod gen;
mod http;
mod keys;
mod limits;
mod qbo;
mod qbo_query;
mod twilio;
mod util;
mod wire;
mod world;
mod xero;
mod xero_where;

pub use auth::{
    GrantedTokens, QBO_ACCESS_SECS, QBO_REFRESH_SECS, QBO_ROTATE_SECS, XERO_ACCESS_SECS,
    XERO_GRACE_SECS, XERO_REFRESH_SECS,
};
pub use credentials::{
    DEFAULT_QBO_CLIENT_ID, DEFAULT_QBO_CLIENT_SECRET, DEFAULT_XERO_CLIENT_ID,
    DEFAULT_XERO_CLIENT_SECRET,
};
pub use faults::{FaultConfig, FaultKind};
pub use limits::{
    QBO_CONCURRENT, QBO_PER_MINUTE, XERO_APP_PER_MINUTE, XERO_CONCURRENT, XERO_PER_DAY,
    XERO_PER_MINUTE,
};
pub use overdued_connector::System;
pub use twilio::{TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_FROM, TWILIO_INVALID_NUMBER};
pub use world::{Behaviour, Effect};

/// How to build (or load) a sandbox.
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxOptions {
    pub seed: u64,
    /// Customers per tenant.
    pub customers: usize,
    /// Invoices per tenant.
    pub invoices: usize,
    /// Where the sandbox clock starts.
    pub start: DateTime<Utc>,
    pub state_file: Option<PathBuf>,
    pub time_scale: f64,
    pub enforce_limits: bool,
    pub quickbooks_tenants: usize,
    pub xero_tenants: usize,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            seed: 1,
            customers: 40,
            invoices: 200,
            start: Utc
                .with_ymd_and_hms(2026, 1, 5, 9, 0, 0)
                .single()
                .unwrap_or_default(),
            state_file: None,
            time_scale: 1.0,
            enforce_limits: true,
            quickbooks_tenants: 1,
            xero_tenants: 1,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("state file {path}: {source}")]
    State {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state file {path} is not a sandbox world: {source}")]
    StateFormat {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot listen: {0}")]
    Listen(std::io::Error),
    #[error("unknown {system} tenant {tenant}")]
    UnknownTenant { system: System, tenant: String },
    #[error("unknown invoice {0}")]
    UnknownInvoice(String),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("the sandbox state lock was poisoned")]
    Poisoned,
}

/// One QuickBooks company (realm) or Xero organisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantInfo {
    pub system: System,
    /// realmId or Xero tenantId.
    pub id: String,
    pub name: String,
    pub base_currency: String,
    pub client_id: String,
}

/// Every effect applied by client writes, plus the count of rate-limit violations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    pub effects: Vec<Effect>,
    pub rate_limit_violations: u64,
}

/// `POST /_sandbox/invoices` and [`Sandbox::create_invoice`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewInvoice {
    pub system: System,
    /// realmId / tenantId; the first tenant of the system when absent.
    #[serde(default)]
    pub tenant: Option<String>,
    pub customer_name: String,
    pub customer_email: String,
    #[serde(default)]
    pub number: Option<String>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    pub total: Decimal,
    pub issue_date: NaiveDate,
    pub due_date: NaiveDate,
    /// The customer's behaviour when the customer is new (default: never pays).
    #[serde(default)]
    pub behaviour: Option<Behaviour>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedInvoice {
    pub system: System,
    pub tenant: String,
    pub id: String,
    pub number: String,
    pub customer_id: String,
}

pub(crate) struct Inner {
    pub world: Mutex<world::World>,
    pub faults: Mutex<faults::FaultState>,
    pub limits: Arc<Mutex<limits::Limiter>>,
    pub stats: Mutex<http::Stats>,
    pub twilio_rate: Mutex<twilio::Rate>,
    pub state_file: Option<PathBuf>,
    pub dirty: AtomicBool,
}

/// The simulator. Cheap to clone: every clone shares one world.
#[derive(Clone)]
pub struct Sandbox {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves the world as consistent as any single request
    // left it; keep serving rather than poisoning every later request.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Sandbox {
    /// Builds the world from the options, or loads it from the state file if that exists.
    pub fn new(opts: SandboxOptions) -> Result<Sandbox, SandboxError> {
        let loaded = match &opts.state_file {
            Some(p) if p.exists() => {
                let text = std::fs::read_to_string(p).map_err(|source| SandboxError::State {
                    path: p.clone(),
                    source,
                })?;
                let mut w: world::World =
                    serde_json::from_str(&text).map_err(|source| SandboxError::StateFormat {
                        path: p.clone(),
                        source,
                    })?;
                w.rebuild_indexes();
                tracing::info!(path = %p.display(), "sandbox world loaded");
                Some(w)
            }
            _ => None,
        };
        let world = match loaded {
            Some(w) => w,
            None => {
                let started = std::time::Instant::now();
                let w = gen::generate(&opts);
                tracing::info!(
                    seed = opts.seed,
                    invoices = opts.invoices,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "sandbox world generated"
                );
                w
            }
        };
        Ok(Sandbox {
            inner: Arc::new(Inner {
                world: Mutex::new(world),
                faults: Mutex::new(faults::FaultState::new(FaultConfig::default())),
                limits: Arc::new(Mutex::new(limits::Limiter::new(
                    opts.enforce_limits,
                    opts.time_scale,
                ))),
                stats: Mutex::new(http::Stats::default()),
                twilio_rate: Mutex::new(twilio::Rate::default()),
                state_file: opts.state_file.clone(),
                dirty: AtomicBool::new(false),
            }),
        })
    }

    /// Serves HTTP/1.1 on the listener until `shutdown` completes, then saves the state file.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), SandboxError> {
        let r = http::serve(self.clone(), listener, shutdown).await;
        if self.inner.state_file.is_some() {
            self.save_state()?;
        }
        r
    }

    /// Binds `addr` (port 0 picks one) and serves in the background.
    pub async fn start(
        opts: SandboxOptions,
        addr: SocketAddr,
    ) -> Result<RunningSandbox, SandboxError> {
        let sandbox = Sandbox::new(opts)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(SandboxError::Listen)?;
        let addr = listener.local_addr().map_err(SandboxError::Listen)?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let s = sandbox.clone();
        let task = tokio::spawn(async move {
            let r = s
                .serve(listener, async move {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = &r {
                tracing::error!(error = %e, "sandbox server stopped");
            }
            r
        });
        Ok(RunningSandbox {
            addr,
            sandbox,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    pub(crate) fn world(&self) -> MutexGuard<'_, world::World> {
        lock(&self.inner.world)
    }

    pub(crate) fn mark_dirty(&self) {
        self.inner.dirty.store(true, Ordering::Relaxed);
    }

    pub fn tenants(&self) -> Vec<TenantInfo> {
        let w = self.world();
        w.tenants
            .iter()
            .map(|t| TenantInfo {
                system: t.system,
                id: t.id.clone(),
                name: t.name.clone(),
                base_currency: t.base_currency.clone(),
                client_id: w
                    .auth
                    .client(t.system)
                    .map(|c| c.client_id.clone())
                    .unwrap_or_default(),
            })
            .collect()
    }

    /// Every customer of a tenant with the payment behaviour the sandbox gave them:
    /// (id, name, email, behaviour). The ground truth payer profiles are checked against.
    pub fn customer_behaviours(&self, tenant: &str) -> Vec<(String, String, String, Behaviour)> {
        let w = self.world();
        w.tenants
            .iter()
            .filter(|t| t.id == tenant)
            .flat_map(|t| {
                t.customers.iter().map(|c| {
                    (
                        c.id.clone(),
                        c.name.clone(),
                        c.email.clone(),
                        c.behaviour.clone(),
                    )
                })
            })
            .collect()
    }

    /// (client_id, client_secret) of the simulated app for a system.
    pub fn client_credentials(&self, system: System) -> (String, String) {
        let w = self.world();
        w.auth
            .client(system)
            .map(|c| (c.client_id.clone(), c.client_secret.clone()))
            .unwrap_or_default()
    }

    /// A fresh grant for one tenant, as `POST /_sandbox/token` gives.
    pub fn grant(&self, system: System, tenant: &str) -> Result<GrantedTokens, SandboxError> {
        let mut w = self.world();
        let t = w
            .tenant_index(system, tenant)
            .ok_or_else(|| SandboxError::UnknownTenant {
                system,
                tenant: tenant.to_string(),
            })?;
        let id = w.tenants[t].id.clone();
        let g = auth::grant_direct(&mut w, system, vec![id]);
        drop(w);
        self.mark_dirty();
        Ok(g)
    }

    /// One grant (one consent) covering several tenants, as a Xero user authorising
    /// several organisations at once gets.
    pub fn grant_many(
        &self,
        system: System,
        tenants: &[&str],
    ) -> Result<GrantedTokens, SandboxError> {
        let mut w = self.world();
        let mut ids = Vec::with_capacity(tenants.len());
        for tenant in tenants {
            let t = w
                .tenant_index(system, tenant)
                .ok_or_else(|| SandboxError::UnknownTenant {
                    system,
                    tenant: tenant.to_string(),
                })?;
            ids.push(w.tenants[t].id.clone());
        }
        let g = auth::grant_direct(&mut w, system, ids);
        drop(w);
        self.mark_dirty();
        Ok(g)
    }

    /// Revokes every grant reaching the tenant; returns how many were revoked.
    pub fn revoke(&self, system: System, tenant: &str) -> usize {
        let n = auth::revoke(&mut self.world(), system, tenant);
        self.mark_dirty();
        n
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.world().now
    }

    /// Moves the sandbox clock; moving forward applies the payments due by then.
    pub fn set_now(&self, t: DateTime<Utc>) {
        self.world().set_now(t);
        self.mark_dirty();
    }

    pub fn ledger(&self) -> Ledger {
        let effects = self.world().ledger.clone();
        let rate_limit_violations = lock(&self.inner.limits).violations;
        Ledger {
            effects,
            rate_limit_violations,
        }
    }

    pub fn set_faults(&self, config: FaultConfig) {
        lock(&self.inner.faults).set(config);
    }

    /// Switches limit enforcement and/or the time scale.
    pub fn set_limits(&self, enforce: Option<bool>, time_scale: Option<f64>) {
        let mut l = lock(&self.inner.limits);
        if let Some(e) = enforce {
            l.enforce = e;
        }
        if let Some(s) = time_scale {
            l.set_time_scale(s);
        }
    }

    /// Writes the world to the state file (no-op without one).
    pub fn save_state(&self) -> Result<(), SandboxError> {
        let Some(path) = &self.inner.state_file else {
            return Ok(());
        };
        self.inner.dirty.store(false, Ordering::Relaxed);
        let text = {
            let w = self.world();
            serde_json::to_string(&*w).map_err(|source| SandboxError::StateFormat {
                path: path.clone(),
                source,
            })?
        };
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).map_err(|source| SandboxError::State {
            path: tmp.clone(),
            source,
        })?;
        std::fs::rename(&tmp, path).map_err(|source| SandboxError::State {
            path: path.clone(),
            source,
        })?;
        Ok(())
    }

    pub fn create_invoice(&self, req: NewInvoice) -> Result<CreatedInvoice, SandboxError> {
        let r = control::create_invoice(&mut self.world(), req);
        self.mark_dirty();
        r
    }

    /// Records a customer payment now (the invoice's update time is the sandbox clock).
    pub fn add_payment(
        &self,
        system: System,
        tenant: &str,
        invoice_id: &str,
        amount: Decimal,
        date: NaiveDate,
    ) -> Result<(), SandboxError> {
        let mut w = self.world();
        let t = w
            .tenant_index(system, tenant)
            .ok_or_else(|| SandboxError::UnknownTenant {
                system,
                tenant: tenant.to_string(),
            })?;
        let i = w.tenants[t]
            .invoice_index(invoice_id)
            .ok_or_else(|| SandboxError::UnknownInvoice(invoice_id.to_string()))?;
        let now = w.now;
        w.pay(t, i, amount, date, now)
            .map_err(SandboxError::Invalid)?;
        drop(w);
        self.mark_dirty();
        Ok(())
    }

    /// Request, 429 and fault counters (as `GET /_sandbox/stats`).
    pub fn stats(&self) -> serde_json::Value {
        control::stats(self)
    }
}

/// A sandbox serving in the background; dropping it stops the server.
pub struct RunningSandbox {
    pub addr: SocketAddr,
    pub sandbox: Sandbox,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), SandboxError>>>,
}

impl RunningSandbox {
    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving and waits for the state file to be written.
    pub async fn shutdown(mut self) -> Result<(), SandboxError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(t) => t.await.unwrap_or(Ok(())),
            None => Ok(()),
        }
    }
}

impl Drop for RunningSandbox {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
