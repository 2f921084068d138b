//! `overdued connect NAME`: the vendor's OAuth consent (authorization code with PKCE and
//! a `state` check) on a loopback redirect listener; the tokens go to the store.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use overdued_connector::runtime::{ConnectFlow, PendingConnect};
use overdued_connector::{Clock, SystemClock, TokenStore};

use crate::config::SystemConfig;
use crate::connections::{quickbooks_settings, xero_settings};

use super::common::{load_config, open_store, runtime, Fail};
use super::exit;

/// The redirect port when the config names no `redirect_uri`.
pub const DEFAULT_REDIRECT_PORT: u16 = 53682;

/// How long to wait for the person to finish consenting.
const CONSENT_TIMEOUT: Duration = Duration::from_secs(600);

pub fn run(config: Option<&Path>, name: &str, no_browser: bool) -> u8 {
    match connect(config, name, no_browser) {
        Ok(()) => 0,
        Err(e) => e.report(),
    }
}

fn connect(config: Option<&Path>, name: &str, no_browser: bool) -> Result<(), Fail> {
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
    let store = open_store(&c)?;
    let rt = runtime()?;
    let clock = SystemClock;
    rt.block_on(async {
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
        let store_dyn: Arc<dyn TokenStore> = store.clone();
        store_dyn.save_tokens(name, &tokens).map_err(|e| Fail(exit::IOERR, e.to_string()))?;
        println!("{name}: connected{}", bound.map(|b| format!(" to {b}")).unwrap_or_default());
        Ok(())
    })
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
