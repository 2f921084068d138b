//! `overdued connect NAME`: the vendor's OAuth consent (authorization code with PKCE and
//! a `state` check) on a loopback redirect listener; the tokens go to the store.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use overdued_connector::runtime::{ConnectFlow, PendingConnect};
use overdued_connector::{Clock, SystemClock, TokenStore};

use crate::config::{Config, ConnectionConfig, SystemConfig, XeroConfig};
use crate::connections::{quickbooks_settings, recorded_grant, xero_settings};
use overdued_connector::runtime::GrantKey;

use crate::daemon::owner_admin::ConnectRequest;
use crate::ops::OpError;
use crate::store::{SledStore, StoreError};

use super::common::{load_config, open_store, runtime, Fail};
use super::exit;

/// The redirect port when the config names no `redirect_uri`.
pub const DEFAULT_REDIRECT_PORT: u16 = 53682;

/// How long to wait for the person to finish consenting.
const CONSENT_TIMEOUT: Duration = Duration::from_secs(600);

pub fn run(config: Option<&Path>, name: &str, no_browser: bool, new_consent: bool) -> u8 {
    match connect(config, name, no_browser, new_consent) {
        Ok(()) => 0,
        Err(e) => e.report(),
    }
}

fn connect(
    config: Option<&Path>,
    name: &str,
    no_browser: bool,
    new_consent: bool,
) -> Result<(), Fail> {
    let c = load_config(config)?;
    let conn = c.connection(name).ok_or_else(|| {
        let names: Vec<&str> = c.connections.iter().map(|c| c.name.as_str()).collect();
        Fail(
            exit::USAGE,
            format!(
                "no connection named {name:?} in {} (configured: {})",
                c.path.display(),
                names.join(", ")
            ),
        )
    })?;
    let port = conn
        .redirect_uri
        .as_ref()
        .and_then(|u| u.port())
        .unwrap_or(DEFAULT_REDIRECT_PORT);
    // With the daemon running (it holds the store) the consent runs here as usual and
    // the daemon is handed the tokens: it stores them and resumes the connection.
    let store = match SledStore::open(&c.daemon.state_dir) {
        Ok(s) => Some(Arc::new(s)),
        Err(StoreError::Locked(lock)) => {
            let ask = |join| ConnectRequest {
                connection: name.to_string(),
                tokens: None,
                join,
            };
            daemon_says(&c, &ask(false))
                .map_err(|e| Fail(e.code, format!("{lock}; asking it failed: {}", e.message)))?;
            // A Xero organisation a grant the daemon holds already reaches joins it.
            if matches!(conn.system, SystemConfig::Xero(_)) && !new_consent {
                let joined = daemon_says(&c, &ask(true)).map_err(|e| Fail(e.code, e.message))?;
                if !joined.trim().is_empty() {
                    println!("{name}: connected to {}", joined.trim());
                    println!(
                        "{name}: the running daemon took over the new grant and is syncing now"
                    );
                    return Ok(());
                }
            }
            None
        }
        Err(_) => Some(open_store(&c)?),
    };
    let rt = runtime()?;
    let clock = SystemClock;
    rt.block_on(async {
        if let (SystemConfig::Xero(x), false, Some(store)) = (&conn.system, new_consent, &store) {
            let token_store: Arc<dyn TokenStore> = store.clone();
            if let Some(done) = join_stored_grant(&c, conn, x, token_store.as_ref(), &clock).await? {
                println!("{name}: connected to {done}");
                return Ok(());
            }
        }
        let client = match &conn.system {
            SystemConfig::QuickBooks(q) => quickbooks_settings(conn, q, q.realm_id.clone().unwrap_or_default()).oauth_client(),
            SystemConfig::Xero(x) => xero_settings(conn, x).oauth_client(),
        };
        let flow = ConnectFlow::new(client).map_err(|e| Fail(exit::SOFTWARE, e.to_string()))?;
        let pending: PendingConnect = flow.start(port).await.map_err(|e| {
            Fail(exit::IOERR, format!("cannot listen for the redirect on 127.0.0.1:{port}: {e} (set redirect_uri to another port)"))
        })?;
        println!("Open this URL in a browser and approve access for {name}:");
        println!("{}", pending.authorize_url());
        println!("Waiting for the redirect to {} ...", pending.redirect_uri());
        use std::io::Write;
        let _ = std::io::stdout().flush();
        if !no_browser {
            open_browser(pending.authorize_url());
        }
        let connected = pending.finish(CONSENT_TIMEOUT, &clock as &dyn Clock).await.map_err(|e| Fail(exit::UNAVAILABLE, e.to_string()))?;
        let mut tokens = connected.tokens;
        let bound = match &conn.system {
            SystemConfig::QuickBooks(q) => {
                let realm = connected.params.get("realmId").cloned().or_else(|| q.realm_id.clone());
                if let (Some(configured), Some(got)) = (&q.realm_id, connected.params.get("realmId")) {
                    if configured != got {
                        return Err(Fail(
                            exit::CONFIG,
                            format!("the consent was given for QuickBooks company {got}, but {name} is configured for realm_id {configured}"),
                        ));
                    }
                }
                tokens.bound_to = realm.clone();
                realm.map(|r| format!("QuickBooks company {r}"))
            }
            SystemConfig::Xero(x) => {
                let settings = xero_settings(conn, x);
                let binding = overdued_xero::bind_tenant(&settings, &tokens).await.map_err(|e| Fail(exit::CONFIG, e.to_string()))?;
                binding.apply(&mut tokens);
                Some(format!("Xero organisation {} ({})", binding.tenant.tenant_name, binding.tenant.tenant_id))
            }
        };
        tokens.needs_reconnect = false;
        let bound = bound.map(|b| format!(" to {b}")).unwrap_or_default();
        match &store {
            Some(store) => {
                let store_dyn: Arc<dyn TokenStore> = store.clone();
                store_dyn.save_tokens(name, &tokens).map_err(|e| Fail(exit::IOERR, e.to_string()))?;
                println!("{name}: connected{bound}");
            }
            None => {
                let req = ConnectRequest { connection: name.to_string(), tokens: Some(tokens), join: false };
                // A blocking client inside the runtime: on a thread of its own.
                let said = tokio::task::block_in_place(|| daemon_says(&c, &req))
                    .map_err(|e| Fail(e.code, format!("the consent succeeded but the running daemon could not be given the tokens: {} (run `overdued connect {name}` again)", e.message)))?;
                println!("{name}: connected{bound}");
                print!("{said}");
            }
        }
        Ok(())
    })
}

/// Sends `req` to the running daemon's `/admin/connect`; its answer, or the error it
/// gave (or why it could not be reached).
fn daemon_says(c: &Config, req: &ConnectRequest) -> Result<String, OpError> {
    super::admin::post_text(
        &c.daemon.state_dir,
        "/admin/connect",
        req,
        Duration::from_secs(30),
    )?
}

/// `overdued connect` for a Xero organisation that a grant already stored for another
/// connection of the same app reaches: one consent at Xero can cover several
/// organisations, and a second consent would only make a parallel grant with its own
/// rotating refresh token. So the connection joins that grant (the tokens are copied,
/// bound to its organisation, with the grant's id) and no browser is needed. Returns
/// what it was connected to, or `None` when no stored grant reaches the organisation
/// (then the consent flow runs). The store is held exclusively (no daemon runs
/// meanwhile), so refreshing an expired access token here races with nothing.
async fn join_stored_grant(
    c: &Config,
    conn: &ConnectionConfig,
    x: &XeroConfig,
    store: &dyn TokenStore,
    clock: &dyn Clock,
) -> Result<Option<String>, Fail> {
    let settings = xero_settings(conn, x);
    let mut seen: Vec<String> = Vec::new();
    for other in &c.connections {
        let SystemConfig::Xero(ox) = &other.system else {
            continue;
        };
        if other.name == conn.name || other.client_id != conn.client_id {
            continue;
        }
        let os = xero_settings(other, ox);
        if os.connections_url() != settings.connections_url() || os.token_url != settings.token_url
        {
            continue;
        }
        let Some(grant_id) = recorded_grant(store, &other.name) else {
            continue;
        };
        if seen.contains(&grant_id) {
            continue;
        }
        seen.push(grant_id.clone());
        let key = GrantKey::from_grant_id("xero", &conn.client_id, &grant_id);
        // The newest copy of the grant's tokens: the grant's own once shared, else the
        // connection's.
        let newest = [other.name.as_str(), key.as_str()]
            .into_iter()
            .filter_map(|k| store.load_tokens(k).ok().flatten())
            .filter(|t| t.grant_id.as_deref() == Some(grant_id.as_str()))
            .max_by_key(|t| t.obtained_at);
        // A grant refused since (its newest copy flagged) needs a new consent.
        let Some(mut tokens) = newest.filter(|t| !t.needs_reconnect) else {
            continue;
        };
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .build()
            .map_err(|e| Fail(exit::SOFTWARE, e.to_string()))?;
        if tokens.access_expires_at - chrono::Duration::minutes(1) <= clock.now() {
            let mut fresh = match settings
                .oauth_client()
                .refresh(&http, &tokens.refresh_token, clock.now())
                .await
            {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(connection = %conn.name, grant = %key, error = %e, "the stored grant could not be refreshed; asking for a new consent");
                    continue;
                }
            };
            fresh.grant_id = Some(grant_id.clone());
            // Stored under the grant's key at once: every connection on it adopts the
            // newest copy, so the rotated-away token is never used again.
            store
                .save_tokens(key.as_str(), &fresh)
                .map_err(|e| Fail(exit::IOERR, e.to_string()))?;
            tokens = fresh;
        }
        let reachable = match overdued_xero::list_connections(
            &http,
            &settings.connections_url(),
            &tokens.access_token,
        )
        .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(connection = %conn.name, grant = %key, error = %e, "could not list what the stored grant reaches; asking for a new consent");
                continue;
            }
        };
        let Ok(tenant) = overdued_xero::resolve_tenant(&reachable, &settings.tenant) else {
            continue;
        };
        if tenant.auth_event_id != grant_id {
            continue;
        }
        let binding = overdued_xero::TenantBinding { tenant, reachable };
        binding.apply(&mut tokens);
        tokens.needs_reconnect = false;
        store
            .save_tokens(&conn.name, &tokens)
            .map_err(|e| Fail(exit::IOERR, e.to_string()))?;
        tracing::info!(connection = %conn.name, grant = %key, via = %other.name, "connection joined a stored grant");
        return Ok(Some(format!(
            "Xero organisation {} ({}) on the grant already stored for {} (no new consent needed)",
            binding.tenant.tenant_name, binding.tenant.tenant_id, other.name
        )));
    }
    Ok(None)
}

fn open_browser(url: &str) {
    // Best effort: a headless server has no browser, and the URL is printed anyway.
    let _ = std::process::Command::new("xdg-open")
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}
