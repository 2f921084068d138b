//! The loopback HTTP server: `/healthz`, `/metrics`, and `/admin/*` for the CLI.
//!
//! Admin routes require `Authorization: Bearer <token>`, the token the daemon writes to
//! `state_dir/admin.token` (mode 0600) at start: loopback alone would let any local user
//! in. To add an admin endpoint, add a route in [`admin_router`]; handlers get
//! [`Shared`] (config, store, clock, connection states) as state.

use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use super::Shared;
use crate::store::Store;

pub type AppState = Arc<Shared>;

/// Every route.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/webhooks/quickbooks", post(webhook_quickbooks))
        .route("/webhooks/xero", post(webhook_xero))
        .route("/webhooks/sms", post(webhook_sms))
        .nest(
            "/admin",
            admin_router()
                .route_layer(middleware::from_fn_with_state(state.clone(), require_token)),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .with_state(state)
}

/// The endpoints the CLI uses while the daemon holds the store.
pub fn admin_router() -> Router<AppState> {
    Router::new()
        .route("/status", get(admin_status))
        .route("/sync", post(admin_sync))
        .route("/op", post(admin_op))
        .route("/plan", post(super::owner_admin::admin_plan))
        .route("/connect", post(super::owner_admin::admin_connect))
}

pub async fn serve(listener: tokio::net::TcpListener, state: AppState, stop: CancellationToken) {
    let app = router(state);
    // The peer's address, so `/admin/connect` can take tokens from loopback only.
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let r = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
    if let Err(e) = r {
        error!(error = %e, "http server stopped");
    }
}

async fn healthz(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let h = tokio::task::spawn_blocking(move || s.health()).await;
    let h = match h {
        Ok(h) => h,
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("health check failed: {e}\n"),
            )
                .into_response()
        }
    };
    let code = if h.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    if wants_json(&headers) {
        return (code, Json(h)).into_response();
    }
    let body = if h.ok {
        "ok\n".to_string()
    } else {
        h.problems
            .iter()
            .map(|p| format!("{}\n", p.message))
            .collect::<String>()
    };
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

async fn metrics(State(s): State<AppState>) -> Response {
    match tokio::task::spawn_blocking(move || super::metrics::render(&s.metrics_input())).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("metrics failed: {e}\n"),
        )
            .into_response(),
    }
}

async fn require_token(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !constant_time_eq(given.trim().as_bytes(), s.admin_token().as_bytes()) {
        warn!(path = %req.uri().path(), "admin request refused: missing or wrong token");
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "admin endpoints need the token in the state directory's admin.token\n",
        )
            .into_response();
    }
    next.run(req).await
}

/// Compares without an early exit, so response timing does not reveal the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn admin_status(State(s): State<AppState>) -> Response {
    match tokio::task::spawn_blocking(move || s.status_report()).await {
        Ok(r) => Json(r).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("status failed: {e}\n"),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct SyncQuery {
    connection: Option<String>,
}

/// Starts a cycle now on one connection (`?connection=NAME`) or all of them, instead
/// of at the next poll.
async fn admin_sync(State(s): State<AppState>, Query(q): Query<SyncQuery>) -> Response {
    let conns = s.conns();
    let mut kicked = Vec::new();
    for (name, c) in conns.iter() {
        if q.connection.as_deref().is_none_or(|n| n == name) && c.enabled {
            c.kick.notify_one();
            kicked.push(name.clone());
        }
    }
    if let Some(n) = &q.connection {
        if kicked.is_empty() {
            return (
                StatusCode::NOT_FOUND,
                Json(serde_json::json!({"error": format!("no enabled connection named {n:?}")})),
            )
                .into_response();
        }
    }
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"started": kicked})),
    )
        .into_response()
}

async fn webhook_quickbooks(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (_, config) = s.config();
    let Some(key) = config.daemon.webhooks.quickbooks_verifier_token.clone() else {
        return (StatusCode::NOT_FOUND, "webhooks are not configured\n").into_response();
    };
    let sig = headers
        .get(overdued_quickbooks::webhook::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok());
    if !super::webhooks::signature_ok(&body, key.expose(), sig) {
        warn!(
            system = "quickbooks",
            "webhook refused: bad or missing intuit-signature"
        );
        return StatusCode::UNAUTHORIZED.into_response();
    }
    match super::webhooks::parse_quickbooks(&body) {
        Ok(events) => {
            dispatch(
                &s,
                &config,
                overdued_connector::System::QuickBooks,
                &body,
                &events,
            );
            StatusCode::OK.into_response()
        }
        Err(e) => {
            warn!(system = "quickbooks", error = %e, "webhook body refused");
            (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response()
        }
    }
}

/// Replies to text messages, from Twilio (see `channels::sms::inbound`).
async fn webhook_sms(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let sig = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let r = tokio::task::spawn_blocking(move || {
        let (_, config) = s.config();
        crate::channels::sms::inbound::receive(
            config.channels.sms.as_ref(),
            s.store.as_ref(),
            s.clock.now(),
            sig.as_deref(),
            &body,
        )
    })
    .await;
    let (status, text) = r.unwrap_or((500, String::new()));
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status == 200 {
        (code, [(header::CONTENT_TYPE, "text/xml")], text).into_response()
    } else {
        (code, text).into_response()
    }
}

/// Xero's intent-to-receive check sends good and bad signatures and wants 200 or 401
/// with an empty body, within 5 s.
async fn webhook_xero(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (_, config) = s.config();
    let Some(key) = config.daemon.webhooks.xero_webhook_key.clone() else {
        return (StatusCode::NOT_FOUND, "webhooks are not configured\n").into_response();
    };
    let sig = headers
        .get(overdued_xero::webhook::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok());
    if !super::webhooks::signature_ok(&body, key.expose(), sig) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    match super::webhooks::parse_xero(&body) {
        Ok(events) => {
            dispatch(
                &s,
                &config,
                overdued_connector::System::Xero,
                &body,
                &events,
            );
            StatusCode::OK.into_response()
        }
        Err(e) => {
            warn!(system = "xero", error = %e, "webhook body refused");
            StatusCode::BAD_REQUEST.into_response()
        }
    }
}

/// Schedules the cycle of every connection an invoice or payment event names, once per
/// [`super::webhooks::COALESCE_WINDOW`], unless every event of the delivery was seen
/// before. One INFO line per sync with the count of changes, however many events the
/// window brought (a delivery may name thousands); each event at debug.
fn dispatch(
    s: &AppState,
    config: &crate::config::Config,
    system: overdued_connector::System,
    body: &[u8],
    events: &[super::webhooks::Event],
) {
    use crate::config::SystemConfig;
    if !s.webhooks.fresh(&super::webhooks::event_ids(system, body)) {
        tracing::debug!(system = %system, events = events.len(), "webhook: every event already seen; dropped");
        return;
    }
    let candidates: Vec<(String, Option<String>, Option<String>)> = config
        .connections
        .iter()
        .filter(|c| c.enabled && c.system() == system)
        .map(|c| {
            let configured = match &c.system {
                SystemConfig::QuickBooks(q) => q.realm_id.clone(),
                SystemConfig::Xero(x) => Some(x.tenant.clone()),
            };
            let bound = s
                .store
                .get_tokens(&c.name)
                .ok()
                .flatten()
                .and_then(|t| t.bound_to);
            (c.name.clone(), configured, bound)
        })
        .collect();
    let mut matched: Vec<&str> = Vec::new();
    let mut targets: std::collections::BTreeMap<&str, crate::targeted::Targets> =
        std::collections::BTreeMap::new();
    let mut unknown = std::collections::BTreeSet::new();
    for e in events
        .iter()
        .filter(|e| matches!(e.entity.as_str(), "invoice" | "payment"))
    {
        let conn = candidates.iter().find(|(_, configured, bound)| {
            configured.as_deref() == Some(e.tenant.as_str())
                || bound.as_deref() == Some(e.tenant.as_str())
        });
        match conn {
            Some((name, _, _)) => {
                tracing::debug!(connection = %name, entity = %e.entity, id = %e.id, operation = %e.operation, "webhook: change reported");
                matched.push(name);
                targets.entry(name).or_default().add(&e.entity, &e.id);
            }
            None => {
                unknown.insert(e.tenant.as_str());
            }
        }
    }
    for tenant in unknown {
        warn!(system = %system, tenant = %tenant, "webhook for a company or organisation no connection is configured for");
    }
    for (name, n) in super::webhooks::count_by(matched.into_iter()) {
        let t = targets.remove(name).unwrap_or_default();
        // Changes named by id are read by id after a short window; anything else waits
        // for the long one and syncs the connection.
        let window = if t.whole_connection {
            super::webhooks::COALESCE_WINDOW
        } else {
            super::webhooks::TARGETED_WINDOW
        };
        s.webhooks.add_targets(name, t);
        if s.webhooks.schedule(name, n) {
            let s = s.clone();
            let name = name.to_string();
            tokio::spawn(async move {
                tokio::time::sleep(window).await;
                let changes = s.webhooks.fire(&name);
                let t = s.webhooks.take_targets(&name);
                if t.whole_connection {
                    tracing::info!(connection = %name, changes, "webhook: change reported; syncing now");
                    if let Some(c) = s.conns().get(&name) {
                        c.kick.notify_one();
                    }
                } else if !t.is_empty() {
                    tracing::info!(connection = %name, changes, invoices = t.invoices.len(), payments = t.payments.len(), "webhook: change reported; syncing now what it names");
                    super::scheduler::targeted_cycle(&s, &name, t).await;
                }
            });
        } else {
            tracing::debug!(connection = %name, changes = n, "webhook: a sync is already scheduled; folded into it");
        }
    }
}

/// Runs a CLI operation (`promise`, `pause`, `resume`, `history`) on the daemon's store.
async fn admin_op(State(s): State<AppState>, body: axum::body::Bytes) -> Response {
    // Parsed here, not by axum's extractor, so a bad request gets the JSON error the CLI
    // prints rather than a plain-text rejection it cannot read.
    let op: crate::ops::Op = match serde_json::from_slice(&body) {
        Ok(op) => op,
        Err(e) => {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(crate::ops::OpError {
                    code: 64,
                    message: format!("the daemon could not read the request: {e}"),
                }),
            )
                .into_response()
        }
    };
    let r = tokio::task::spawn_blocking(move || {
        let (_, config) = s.config();
        crate::ops::apply(&op, &config, s.store.as_ref(), s.clock.now())
    })
    .await;
    match r {
        Ok(Ok(text)) => (StatusCode::OK, text).into_response(),
        Ok(Err(e)) => (StatusCode::UNPROCESSABLE_ENTITY, Json(e)).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(crate::ops::OpError {
                code: 70,
                message: e.to_string(),
            }),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
