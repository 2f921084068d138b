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
    let kick = {
        let mut conns = s.conns();
        conns.get_mut(&name).map(|c| {
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
    (
        StatusCode::OK,
        format!("{name}: the running daemon took over the new grant and is syncing now\n"),
    )
        .into_response()
}
