//! `overdued plan`: what would be done now (or on a date) and why. Writes nothing to
//! any ledger: it refreshes the local cache from each system, then plans.

use std::path::Path;
use std::sync::Arc;

use chrono::{NaiveDate, TimeZone, Utc};
use overdued_connector::{Clock, SystemClock};

use crate::config::Config;
use crate::connections;
use crate::cycle::{make_plan, open_ledger};
use crate::engine::{adoption_summary, AdoptionSummary, Plan, PlannedAction};
use crate::store::{SledStore, Store};
use crate::sync::sync_connection;

use super::common::{load_config, open_store, parse_date, runtime, Fail};
use super::exit;

pub fn run(config: Option<&Path>, at: Option<&str>, json: bool) -> u8 {
    match plan_all(config, at) {
        Ok(plans) => {
            if json {
                match serde_json::to_string_pretty(&plans) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        return Fail(exit::SOFTWARE, format!("cannot render the plan: {e}"))
                            .report()
                    }
                }
            } else {
                for p in &plans {
                    print!("{}", render(p));
                }
            }
            0
        }
        Err(e) => e.report(),
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
}

fn plan_all(config: Option<&Path>, at: Option<&str>) -> Result<Vec<ConnectionPlan>, Fail> {
    let c = load_config(config)?;
    let now = match at {
        None => Utc::now(),
        Some(s) => noon_on(&c, parse_date("--at", s)?),
    };
    let store = open_store(&c)?;
    // `check` reports a broken template; the preview then shows the engine's subject.
    let templates = crate::channels::Templates::load(c.channels.templates_dir.as_deref()).ok();
    let rt = runtime()?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut out = Vec::new();
    for conn_cfg in c.connections.iter().filter(|c| c.enabled) {
        let sync_error = rt
            .block_on(refresh(&c, conn_cfg, store.clone(), clock.clone()))
            .err();
        // A Xero organisation named by its name and never bound at connect is resolved
        // by asking Xero; the plan is made without it only if that fails too.
        let resolved = rt.block_on(async {
            let c = connections::build(conn_cfg, store.clone(), clock.clone()).ok()?;
            c.ledger_id().await.ok()
        });
        let (plan, _) = open_ledger(conn_cfg, store.as_ref(), resolved.as_deref())
            .and_then(|ledger| make_plan(&c, conn_cfg, &ledger, store.as_ref(), now))
            .map_err(|e| Fail(exit::SOFTWARE, e.to_string()))?;
        let goes_out = plan
            .actions
            .iter()
            .map(|a| goes_out(&c, templates.as_ref(), conn_cfg.system(), a))
            .collect();
        out.push(ConnectionPlan {
            connection: conn_cfg.name.clone(),
            system: conn_cfg.system().to_string(),
            sync_error,
            adoption: adoption_summary(&plan),
            plan,
            goes_out,
        });
    }
    Ok(out)
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
    conn_cfg: &crate::config::ConnectionConfig,
    store: Arc<SledStore>,
    clock: Arc<dyn Clock>,
) -> Result<(), String> {
    let connector =
        connections::build(conn_cfg, store.clone(), clock.clone()).map_err(|e| e.to_string())?;
    sync_connection(
        connector.as_ref(),
        store.as_ref() as &dyn Store,
        clock.as_ref(),
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
            "  DO   {:<8} invoice {} (customer {}), {} days overdue, step {} of policy {}",
            a.kind.as_str(),
            a.invoice_number,
            a.customer_id,
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
            "  SKIP invoice {} (customer {}): {}",
            k.invoice_number, k.customer_id, k.reason
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
