//! The admin endpoints for what the owner runs while the daemon holds the store:
//! `/admin/plan` (the output of `overdued plan`, made here with the daemon's own
//! connectors) and `/admin/connect` (the token set an `overdued connect` obtained,
//! taken over without a restart). Errors are [`OpError`] JSON, printed by the CLI.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use overdued_connector::{Connector, TokenSet, TokenStore};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::http::AppState;
use crate::cli::plan::{plan_text, ConnectionLock, PlanRequest};
use crate::config::ConnectionConfig;
use crate::ops::OpError;

const USAGE: u8 = 64;

fn refuse(status: StatusCode, code: u8, message: String) -> Response {
    (status, Json(OpError { code, message })).into_response()
}

fn read<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Box<Response>> {
    serde_json::from_slice(body).map_err(|e| {
        Box::new(refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            USAGE,
            format!("the daemon could not read the request: {e}"),
        ))
    })
}

/// Each connection's cycle lock, so a plan never refreshes a cache a cycle is writing.
struct CycleLocks(AppState);

#[async_trait::async_trait]
impl ConnectionLock for CycleLocks {
    async fn lock(&self, connection: &str) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        let lock = self
            .0
            .conns()
            .get(connection)
            .map(|c| c.cycle_lock.clone())?;
        Some(lock.lock_owned().await)
    }
}

/// `overdued plan` made by the daemon: the same text or JSON the CLI prints on its own.
pub async fn admin_plan(State(s): State<AppState>, body: axum::body::Bytes) -> Response {
    let req: PlanRequest = match read(&body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let (_, config) = s.config();
    // The daemon's own connectors: a second token manager on the same grant would race
    // the first to rotate its refresh token.
    let connectors: BTreeMap<String, Result<Arc<dyn Connector>, String>> = s
        .conns()
        .iter()
        .map(|(name, c)| {
            let got = match (&c.connector, &c.build_error) {
                (Some(k), _) => Ok(k.clone()),
                (None, Some(e)) => Err(e.clone()),
                (None, None) => Err("the connection has not started yet".to_string()),
            };
            (name.clone(), got)
        })
        .collect();
    let connector_for = move |cc: &ConnectionConfig| {
        connectors
            .get(&cc.name)
            .cloned()
            .unwrap_or_else(|| Err("the connection has not started yet".to_string()))
    };
    let locks = CycleLocks(s.clone());
    match plan_text(
        &config,
        s.store.as_ref(),
        &connector_for,
        &locks,
        s.clock.as_ref(),
        &req,
    )
    .await
    {
        Ok(text) => (StatusCode::OK, text).into_response(),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, e.code, e.message),
    }
}

/// What `overdued connect` sends: first without tokens (can the daemon take a grant for
/// this connection?), then with the token set the consent gave.
#[derive(Serialize, Deserialize)]
pub struct ConnectRequest {
    pub connection: String,
    #[serde(default)]
    pub tokens: Option<TokenSet>,
    /// Xero: join a grant the daemon already holds for another table of the same app
    /// that reaches this organisation, instead of a new consent. The answer is what it
    /// joined, or empty when no held grant reaches it.
    #[serde(default)]
    pub join: bool,
}

/// Takes over a new grant: stores it, clears NEEDS RECONNECT, rebuilds the connection's
/// connector (a token manager holding the refused grant would not re-read the store)
/// and starts a cycle. Loopback callers only: the tokens are the keys to the ledger.
pub async fn admin_connect(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: axum::body::Bytes,
) -> Response {
    if !peer.ip().is_loopback() {
        warn!(peer = %peer, "admin connect refused: not from this machine");
        return refuse(
            StatusCode::FORBIDDEN,
            USAGE,
            "tokens are taken only from this machine (loopback)".into(),
        );
    }
    let req: ConnectRequest = match read(&body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let (_, config) = s.config();
    if config.connection(&req.connection).is_none() {
        let names: Vec<&str> = config.connections.iter().map(|c| c.name.as_str()).collect();
        return refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            USAGE,
            format!(
                "the running daemon has no connection named {:?} (it runs with: {}; reload it after editing the config)",
                req.connection,
                names.join(", ")
            ),
        );
    }
    if req.join {
        let conn_cfg = config.connection(&req.connection).cloned();
        return match conn_cfg {
            Some(c) => match join_held_grant(&s, &config, &c).await {
                Ok(Some(what)) => {
                    resume(&s, &c.name);
                    (StatusCode::OK, what).into_response()
                }
                Ok(None) => (StatusCode::OK, String::new()).into_response(),
                Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, e.code, e.message),
            },
            None => (StatusCode::OK, String::new()).into_response(),
        };
    }
    let Some(mut tokens) = req.tokens else {
        return (StatusCode::OK, "ready\n").into_response();
    };
    tokens.needs_reconnect = false;
    let name = req.connection;
    let store = s.store.clone();
    let saved = {
        let name = name.clone();
        tokio::task::spawn_blocking(move || store.save_tokens(&name, &tokens)).await
    };
    match saved {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, 74, e.to_string()),
        Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, 70, e.to_string()),
    }
    resume(&s, &name);
    (
        StatusCode::OK,
        format!("{name}: the running daemon took over the new grant and is syncing now\n"),
    )
        .into_response()
}

/// After a new grant was stored for `name`: clears NEEDS RECONNECT, has the task rebuild
/// its connector (a token manager holding a refused grant would not re-read the store)
/// and starts a cycle.
fn resume(s: &AppState, name: &str) {
    let kick = {
        let mut conns = s.conns();
        conns.get_mut(name).map(|c| {
            c.reauth = false;
            c.regrant = true;
            if let Some(snap) = c.snapshot.as_mut() {
                snap.needs_reconnect = false;
            }
            c.kick.clone()
        })
    };
    info!(connection = %name, "new grant taken over from `overdued connect`; syncing now");
    if let Some(k) = kick {
        k.notify_one();
    }
}

/// `overdued connect` of a Xero table while the daemon runs, when another table of the
/// same app already holds a grant that reaches the organisation: the connection joins
/// that grant (as `connect` does without the daemon). The grant's tokens are taken from
/// the other table's own token manager, which refreshes them if need be: a second
/// refresher on the same grant would race it to Xero's rotating refresh token.
async fn join_held_grant(
    s: &AppState,
    config: &crate::config::Config,
    conn: &ConnectionConfig,
) -> Result<Option<String>, OpError> {
    use crate::config::SystemConfig;
    let SystemConfig::Xero(x) = &conn.system else {
        return Ok(None);
    };
    let settings = crate::connections::xero_settings(conn, x);
    let candidates: Vec<(String, Arc<dyn Connector>)> = {
        let conns = s.conns();
        config
            .connections
            .iter()
            .filter(|o| o.name != conn.name && o.client_id == conn.client_id)
            .filter(|o| match &o.system {
                SystemConfig::Xero(ox) => {
                    let os = crate::connections::xero_settings(o, ox);
                    os.connections_url() == settings.connections_url()
                        && os.token_url == settings.token_url
                }
                SystemConfig::QuickBooks(_) => false,
            })
            .filter_map(|o| {
                let k = conns.get(&o.name)?.connector.clone()?;
                Some((o.name.clone(), k))
            })
            .collect()
    };
    let http = reqwest::Client::builder()
        .timeout(settings.request_timeout)
        .build()
        .map_err(|e| OpError {
            code: 70,
            message: e.to_string(),
        })?;
    let mut seen: Vec<String> = Vec::new();
    for (other, connector) in candidates {
        let Some(grant_id) = crate::connections::recorded_grant(s.store.as_ref(), &other) else {
            continue;
        };
        if seen.contains(&grant_id) {
            continue;
        }
        seen.push(grant_id.clone());
        let Some(rt) = connector.runtime() else {
            continue;
        };
        let manager = rt.tokens();
        if manager.needs_reconnect() {
            continue;
        }
        let access = match manager.access_token().await {
            Ok(a) => a,
            Err(e) => {
                warn!(connection = %conn.name, via = %other, error = %e, "the held grant could not give an access token; asking for a new consent");
                continue;
            }
        };
        let Some(mut tokens) = manager
            .current()
            .await
            .filter(|t| t.grant_id.as_deref() == Some(grant_id.as_str()))
        else {
            continue;
        };
        let reachable = match overdued_xero::list_connections(
            &http,
            &settings.connections_url(),
            &access,
        )
        .await
        {
            Ok(r) => r,
            Err(e) => {
                warn!(connection = %conn.name, via = %other, error = %e, "could not list what the held grant reaches; asking for a new consent");
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
        let store = s.store.clone();
        let name = conn.name.clone();
        let saved = tokio::task::spawn_blocking(move || store.save_tokens(&name, &tokens)).await;
        match saved {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(OpError {
                    code: 74,
                    message: e.to_string(),
                })
            }
            Err(e) => {
                return Err(OpError {
                    code: 70,
                    message: e.to_string(),
                })
            }
        }
        info!(connection = %conn.name, via = %other, "connection joined a grant the daemon holds");
        return Ok(Some(format!(
            "Xero organisation {} ({}) on the grant already stored for {other} (no new consent needed)",
            binding.tenant.tenant_name, binding.tenant.tenant_id
        )));
    }
    Ok(None)
}
