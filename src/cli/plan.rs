//! `overdued plan`: what would be done now (or on a date) and why. Writes nothing to
//! any ledger: it refreshes the local cache from each system, then plans.

use std::path::Path;
use std::sync::Arc;

use chrono::{NaiveDate, TimeZone, Utc};
use overdued_connector::{Clock, Connector, SystemClock, TokenStore};
use serde::{Deserialize, Serialize};

use crate::config::{Config, ConnectionConfig};
use crate::connections;
use crate::cycle::{make_plan, open_ledger};
use crate::engine::{adoption_summary, AdoptionSummary, Plan, PlannedAction};
use crate::ops::OpError;
use crate::store::{SledStore, Store, StoreError};
use crate::sync::sync_connection;

use super::common::{load_config, parse_date, runtime, Fail};
use super::exit;

/// What the CLI asks a running daemon's `/admin/plan` for: the same output it would
/// print itself, made by the daemon that holds the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanRequest {
    /// `--at`: plan for this local date instead of now.
    #[serde(default)]
    pub at: Option<NaiveDate>,
    /// `--json`
    #[serde(default)]
    pub json: bool,
}

pub fn run(config: Option<&Path>, at: Option<&str>, json: bool) -> u8 {
    match plan_output(config, at, json) {
        Ok(text) => {
            print!("{text}");
            0
        }
        Err(e) => e.report(),
    }
}

fn plan_output(config: Option<&Path>, at: Option<&str>, json: bool) -> Result<String, Fail> {
    let c = load_config(config)?;
    let req = PlanRequest {
        at: at.map(|s| parse_date("--at", s)).transpose()?,
        json,
    };
    match SledStore::open(&c.daemon.state_dir) {
        Ok(store) => {
            let store = Arc::new(store);
            let clock: Arc<dyn Clock> = Arc::new(SystemClock);
            let build = |conn_cfg: &ConnectionConfig| {
                let tokens: Arc<dyn TokenStore> = store.clone();
                connections::build(conn_cfg, tokens, clock.clone()).map_err(|e| e.to_string())
            };
            let rt = runtime()?;
            rt.block_on(plan_text(
                &c,
                store.as_ref(),
                &build,
                &NoLock,
                clock.as_ref(),
                &req,
            ))
            .map_err(|e| Fail(e.code, e.message))
        }
        // The daemon holds the store: it makes the plan, with its own connectors.
        Err(StoreError::Locked(lock)) => {
            super::admin::post_text(&c.daemon.state_dir, "/admin/plan", &req, super::admin::SLOW)
                .map_err(|e| Fail(e.code, format!("{lock}; asking it failed: {}", e.message)))?
                .map_err(|e| Fail(e.code, e.message))
        }
        Err(e) => Err(Fail(exit::IOERR, e.to_string())),
    }
}

/// Serialises a connection's plan with whatever else works on its cache (the daemon's
/// cycle), so a plan never reads a sync half written. The guard is held while the
/// connection is refreshed and planned.
#[async_trait::async_trait]
pub trait ConnectionLock: Send + Sync {
    async fn lock(&self, connection: &str) -> Option<tokio::sync::OwnedMutexGuard<()>>;
}

/// The CLI holds the whole store: nothing else runs.
struct NoLock;

#[async_trait::async_trait]
impl ConnectionLock for NoLock {
    async fn lock(&self, _: &str) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        None
    }
}

/// The connector of a connection, or why there is none.
pub type ConnectorFor<'a> =
    dyn Fn(&ConnectionConfig) -> Result<Arc<dyn Connector>, String> + Sync + 'a;

/// The whole output of `overdued plan` (text or JSON), for every enabled connection:
/// each refreshed from its system through the connector `connector_for` gives, then
/// planned for `now` (or noon on `req.at`). Used by the CLI on its own store and by the
/// daemon's admin endpoint on the store it holds.
pub async fn plan_text(
    c: &Config,
    store: &dyn Store,
    connector_for: &ConnectorFor<'_>,
    locks: &dyn ConnectionLock,
    clock: &dyn Clock,
    req: &PlanRequest,
) -> Result<String, OpError> {
    let now = match req.at {
        None => clock.now(),
        Some(d) => noon_on(c, d),
    };
    // `check` reports a broken template; the preview then shows the engine's subject.
    let templates = crate::channels::Templates::load(c.channels.templates_dir.as_deref()).ok();
    let mut plans = Vec::new();
    for conn_cfg in c.connections.iter().filter(|c| c.enabled) {
        let _guard = locks.lock(&conn_cfg.name).await;
        let connector = connector_for(conn_cfg);
        let sync_error = match &connector {
            Ok(connector) => refresh(c, connector.as_ref(), store, clock).await.err(),
            Err(e) => Some(e.clone()),
        };
        // A Xero organisation named by its name and never bound at connect is resolved
        // by asking Xero; the plan is made without it only if that fails too.
        let resolved = match &connector {
            Ok(connector) => connector.ledger_id().await.ok(),
            Err(_) => None,
        };
        let (plan, _) = open_ledger(conn_cfg, store, resolved.as_deref())
            .and_then(|ledger| make_plan(c, conn_cfg, &ledger, store, now))
            .map_err(|e| OpError {
                code: exit::SOFTWARE,
                message: e.to_string(),
            })?;
        let goes_out = plan
            .actions
            .iter()
            .map(|a| goes_out(c, templates.as_ref(), conn_cfg.system(), a))
            .collect();
        let names = customer_names(store, &conn_cfg.name, &plan);
        plans.push(ConnectionPlan {
            connection: conn_cfg.name.clone(),
            system: conn_cfg.system().to_string(),
            sync_error,
            adoption: adoption_summary(&plan),
            plan,
            goes_out,
            customer_names: names,
        });
    }
    if req.json {
        serde_json::to_string_pretty(&plans)
            .map(|s| format!("{s}\n"))
            .map_err(|e| OpError {
                code: exit::SOFTWARE,
                message: format!("cannot render the plan: {e}"),
            })
    } else {
        Ok(plans.iter().map(render).collect())
    }
}

#[derive(serde::Serialize)]
pub struct ConnectionPlan {
    pub connection: String,
    pub system: String,
    /// Set when the cache could not be refreshed and the plan uses what was stored.
    pub sync_error: Option<String>,
    /// Present while invoices await their first contact (a catch-up reminder).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adoption: Option<AdoptionSummary>,
    #[serde(flatten)]
    pub plan: Plan,
    /// Per action (same order): what the customer really gets, for the text output.
    #[serde(skip)]
    pub goes_out: Vec<String>,
    /// Customer id → display name, for the text output (the JSON has the ids).
    #[serde(skip)]
    pub customer_names: std::collections::BTreeMap<String, String>,
}

/// What the customer really gets from action `a`: on the system channel the vendor's
/// own invoice email; by SMTP the subject line of the template file the email will be
/// rendered from (the policy's own text when no file has the id).
fn goes_out(
    c: &Config,
    templates: Option<&crate::channels::Templates>,
    system: overdued_connector::System,
    a: &PlannedAction,
) -> String {
    let engine_subject = a.message.as_ref().map(|m| m.subject.clone());
    let smtp = c.channels.smtp.is_some();
    let email_sms_by_smtp = a.channel == crate::engine::Channel::EmailSms && smtp;
    let subject = if a.channel.uses_smtp() || email_sms_by_smtp {
        let sender = c
            .channels
            .smtp
            .as_ref()
            .map(|s| {
                s.from
                    .name
                    .clone()
                    .unwrap_or_else(|| s.from.email.to_string())
            })
            .unwrap_or_default();
        match (templates, a.template.as_deref(), a.context.as_ref()) {
            (Some(t), Some(id), Some(ctx)) => match t.step_subject(id, ctx, &sender) {
                Some(Ok(s)) => Some(s),
                Some(Err(e)) => Some(format!("(template error: {e})")),
                None => engine_subject,
            },
            _ => engine_subject,
        }
    } else {
        engine_subject
    };
    match subject {
        Some(s) => crate::report::delivery::what_goes_out_sms(a.channel, system, &s, smtp),
        None => String::new(),
    }
}

/// The display name of every customer the plan names; an id the cache does not know
/// (or cannot read now) is left out and shown as the id.
fn customer_names(
    store: &dyn Store,
    connection: &str,
    plan: &Plan,
) -> std::collections::BTreeMap<String, String> {
    // (customer id, an invoice of theirs): the stored customer record is fresher, the
    // invoice's own copy of the name is there even before the first full sync.
    let wanted: std::collections::BTreeMap<&str, &str> = plan
        .actions
        .iter()
        .map(|a| (a.customer_id.as_str(), a.invoice_id.as_str()))
        .chain(
            plan.skipped
                .iter()
                .map(|k| (k.customer_id.as_str(), k.invoice_id.as_str())),
        )
        .collect();
    wanted
        .into_iter()
        .filter_map(|(id, invoice)| {
            let name = match store.get_customer(connection, id).ok().flatten() {
                Some(c) if !c.name.trim().is_empty() => c.name,
                _ => {
                    store
                        .get_invoice(connection, invoice)
                        .ok()
                        .flatten()?
                        .snapshot
                        .customer
                        .name
                }
            };
            let name = name.trim();
            (!name.is_empty()).then(|| (id.to_string(), name.to_string()))
        })
        .collect()
}

/// "customer NAME", or "customer ID" when the name is unknown.
fn customer_label(p: &ConnectionPlan, id: &str) -> String {
    match p.customer_names.get(id) {
        Some(name) => format!("customer {name}"),
        None => format!("customer {id}"),
    }
}

/// Plans for a date look at mid-day, inside any business-hours send window.
fn noon_on(c: &Config, d: NaiveDate) -> chrono::DateTime<Utc> {
    let local = d.and_hms_opt(12, 0, 0).unwrap_or_default();
    c.daemon
        .time_zone
        .from_local_datetime(&local)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| Utc.from_utc_datetime(&local))
}

async fn refresh(
    c: &Config,
    connector: &dyn Connector,
    store: &dyn Store,
    clock: &dyn Clock,
) -> Result<(), String> {
    sync_connection(
        connector,
        store,
        clock,
        c.daemon.full_sync_interval.as_duration(),
        false,
    )
    .await
    .map(|_| ())
    .map_err(|e| e.to_string())
}

pub fn render(p: &ConnectionPlan) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} ({}): plan for {} ({})",
        p.connection, p.system, p.plan.local_date, p.plan.time_zone
    );
    if let Some(e) = &p.sync_error {
        let _ = writeln!(
            s,
            "  note: could not refresh from {}: {e}; planning from the last stored state",
            p.system
        );
    }
    if let Some(a) = &p.adoption {
        s.push_str(&render_adoption(a));
    }
    if p.plan.actions.is_empty() {
        let _ = writeln!(s, "  nothing to do");
    }
    for (i, a) in p.plan.actions.iter().enumerate() {
        let _ = writeln!(
            s,
            "  DO   {:<8} invoice {} ({}), {} days overdue, step {} of policy {}",
            a.kind.as_str(),
            a.invoice_number,
            customer_label(p, &a.customer_id),
            a.days_overdue,
            a.step_id,
            a.policy
        );
        let _ = writeln!(s, "       why: {}", a.reason);
        if let Some(f) = &a.fee {
            let _ = writeln!(
                s,
                "       fee: {} ({})",
                f.amount.display_human(),
                f.explanation
            );
        }
        if a.message.is_some() {
            let what = p
                .goes_out
                .get(i)
                .filter(|g| !g.is_empty())
                .cloned()
                .unwrap_or_else(|| {
                    a.message
                        .as_ref()
                        .map(|m| m.subject.clone())
                        .unwrap_or_default()
                });
            let _ = writeln!(
                s,
                "       sends: {what} (template {})",
                a.template.as_deref().unwrap_or("-")
            );
        }
    }
    for k in &p.plan.skipped {
        let _ = writeln!(
            s,
            "  SKIP invoice {} ({}): {}",
            k.invoice_number,
            customer_label(p, &k.customer_id),
            k.reason
        );
    }
    s
}

/// The lines `plan` starts with while adoptions are pending.
fn render_adoption(a: &AdoptionSummary) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "  adoption: {} invoice(s) already past due have not heard from overdued; each first gets a courteous catch-up reminder, and the rest of the ladder runs on from it",
        a.invoices
    );
    let bands: Vec<String> = a
        .by_age
        .iter()
        .map(|(band, n)| format!("{band} days: {n}"))
        .collect();
    let _ = writeln!(s, "    by age: {}", bands.join(", "));
    let first: Vec<String> = a.first.iter().map(|(t, n)| format!("{t} x{n}")).collect();
    let _ = writeln!(s, "    first message: {}", first.join(", "));
    if !a.held.is_empty() {
        let held: Vec<String> = a
            .held
            .iter()
            .map(|(step, n)| format!("step {step} x{n}"))
            .collect();
        let _ = writeln!(
            s,
            "    held back until notice is given (no fee, stop-work, final notice or escalation before): {}",
            held.join(", ")
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn the_adoption_summary_reads_as_bands_and_first_messages() {
        let a = AdoptionSummary {
            invoices: 3,
            by_age: vec![
                ("1-30".into(), 1),
                ("31-60".into(), 0),
                ("61-90".into(), 0),
                ("90+".into(), 2),
            ],
            first: BTreeMap::from([("catch_up".into(), 3)]),
            held: BTreeMap::from([("+90d".into(), 2)]),
        };
        let text = render_adoption(&a);
        assert!(text.contains("adoption: 3 invoice(s)"), "{text}");
        assert!(
            text.contains("1-30 days: 1, 31-60 days: 0, 61-90 days: 0, 90+ days: 2"),
            "{text}"
        );
        assert!(text.contains("first message: catch_up x3"), "{text}");
        assert!(text.contains("step +90d x2"), "{text}");
    }
}
