//! What `overdued status` shows, computed the same way by the daemon (for
//! `GET /admin/status`) and by the CLI reading the store directly when no daemon runs.

use chrono::{DateTime, Utc};
use overdued_connector::ActionKind;
use serde::{Deserialize, Serialize};

use super::ageing::{Ageing, Bucket};
use super::health::{Health, Problem};
use crate::config::{Config, ConnectionConfig};
use crate::store::{Hold, HoldTarget, JournalState, Store, StoreError};

/// The whole picture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    pub generated_at: DateTime<Utc>,
    /// Present when a running daemon answered.
    pub daemon: Option<DaemonInfo>,
    pub health: Health,
    pub connections: Vec<ConnectionStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonInfo {
    pub pid: u32,
    pub version: String,
    pub started_at: DateTime<Utc>,
    pub mode: crate::config::Mode,
    pub config: String,
    pub http: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionStatus {
    pub name: String,
    pub system: String,
    pub enabled: bool,
    pub needs_reconnect: bool,
    /// Why the daemon could not start this connection, if it could not.
    #[serde(default)]
    pub build_error: Option<String>,
    pub access_expires_at: Option<DateTime<Utc>>,
    pub refresh_expires_at: Option<DateTime<Utc>>,
    pub last_sync: Option<DateTime<Utc>>,
    pub last_full_sync: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub invoices_stored: usize,
    pub ageing: Ageing,
    pub attention: Attention,
    /// Payer profiles and the cash forecast ([`crate::profiles`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payers: Option<crate::profiles::PayersSummary>,
}

/// What needs a person.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attention {
    /// Open invoices referred for collection: someone should call.
    pub escalated: Vec<String>,
    /// Open invoices whose promised payment date has passed.
    pub promises_due: Vec<String>,
    /// Actions that failed and will be retried.
    pub failed_actions: usize,
    /// Overdue invoices of customers with no email address in the ledger: no reminder
    /// can reach them, so someone should call ("Customer name (invoice N)").
    #[serde(default)]
    pub no_email: Vec<String>,
    /// The calls list, one line per customer ("Name (owes X; phone)"), the same list
    /// `overdued calls` shows. Absent from an older daemon's answer.
    #[serde(default)]
    pub calls: Vec<String>,
    /// Payment plans running, or ended unpaid lately (one line each).
    #[serde(default)]
    pub payment_plans: Vec<String>,
}

impl Attention {
    pub fn is_empty(&self) -> bool {
        self.escalated.is_empty()
            && self.promises_due.is_empty()
            && self.failed_actions == 0
            && self.no_email.is_empty()
            && self.calls.is_empty()
    }
}

/// Reads one connection's status from the store, as of `now` in the config's time zone.
pub fn connection_status(
    config: &Config,
    conn: &ConnectionConfig,
    store: &dyn Store,
    now: DateTime<Utc>,
) -> Result<ConnectionStatus, StoreError> {
    let name = conn.name.as_str();
    let today = now.with_timezone(&config.daemon.time_zone).date_naive();
    let mut tokens = store.get_tokens(name)?;
    // A connection on a recorded grant (Xero, `overdued connect`) may find the grant's
    // tokens under the grant's key once they are shared: the newest copy is the one used.
    if let Some(grant_id) = tokens.as_ref().and_then(|t| t.grant_id.clone()) {
        let key = overdued_connector::runtime::GrantKey::from_grant_id(
            "xero",
            &conn.client_id,
            &grant_id,
        );
        if let Some(shared) = store.get_tokens(key.as_str())? {
            if tokens
                .as_ref()
                .is_none_or(|t| shared.obtained_at > t.obtained_at)
            {
                tokens = Some(shared);
            }
        }
    }
    let sync = store.get_sync_state(name)?;
    let mut ageing = Ageing::default();
    let mut overdue_ids = Vec::new();
    let mut no_email = Vec::new();
    let mut stored = 0usize;
    store.for_each_invoice(name, &mut |r| {
        stored += 1;
        ageing.add(&r.snapshot, today);
        if r.snapshot.status.is_open() && Bucket::of(r.snapshot.days_overdue(today)).is_overdue() {
            overdue_ids.push((
                r.snapshot.remote_id.clone(),
                r.snapshot.display_number().to_string(),
            ));
            if crate::engine::plan::no_email_reason(&r.snapshot).is_some() {
                no_email.push((
                    r.snapshot.customer.id.clone(),
                    format!(
                        "{} (invoice {})",
                        r.snapshot.customer.name,
                        r.snapshot.display_number()
                    ),
                ));
            }
        }
        true
    })?;
    // The customer record may have the address the invoice lacks (QuickBooks'
    // PrimaryEmailAddr, sent as sendTo): only those with none anywhere are to call.
    let mut to_call = Vec::new();
    for (customer, line) in no_email {
        let has_email = store
            .get_customer(name, &customer)?
            .and_then(|c| c.email)
            .is_some_and(|e| e.contains('@'));
        if !has_email {
            to_call.push(line);
        }
    }
    let mut attention = Attention {
        no_email: to_call,
        ..Attention::default()
    };
    // An escalated invoice handed to an agency, disputed or said to be paid (paused), or
    // taken back into the ladder, asks nothing more of the owner.
    let paused: Vec<String> = store
        .holds(name)?
        .into_iter()
        .filter_map(|(t, h)| match (t, h) {
            (HoldTarget::Invoice(id), Hold::Pause { .. }) => Some(id),
            _ => None,
        })
        .collect();
    for (id, number) in &overdue_ids {
        let escalated = store.journal_for_invoice(name, id)?.iter().any(|e| {
            e.kind == ActionKind::Escalate && matches!(e.state, JournalState::Done { .. })
        });
        if escalated
            && !paused.contains(id)
            && crate::calls::escalation::resumed_on(store, name, id)?.is_none()
        {
            attention.escalated.push(number.clone());
        }
    }
    for (target, hold) in store.holds(name)? {
        let (HoldTarget::Invoice(id), Hold::Promise { until, .. }) = (target, hold) else {
            continue;
        };
        if until < today {
            if let Some(r) = store.get_invoice(name, &id)? {
                if r.snapshot.status.is_open() {
                    attention
                        .promises_due
                        .push(r.snapshot.display_number().to_string());
                }
            }
        }
    }
    attention.calls = crate::calls::calls_list(config, conn, store, now)?
        .iter()
        .map(crate::calls::one_line)
        .collect();
    attention.payment_plans = crate::arrangements::ops::status_lines(config, store, name, today)?;
    attention.failed_actions = store
        .unfinished_journal(name)?
        .iter()
        .filter(|e| matches!(e.state, JournalState::Failed { .. }))
        .count();
    Ok(ConnectionStatus {
        name: name.to_string(),
        system: conn.system().as_str().to_string(),
        enabled: conn.enabled,
        needs_reconnect: tokens.as_ref().is_some_and(|t| t.needs_reconnect),
        build_error: None,
        access_expires_at: tokens.as_ref().map(|t| t.access_expires_at),
        refresh_expires_at: tokens.as_ref().and_then(|t| t.refresh_expires_at),
        last_sync: sync.as_ref().and_then(|s| s.last_success),
        last_full_sync: sync.as_ref().and_then(|s| s.last_full_sync),
        last_error: sync.and_then(|s| s.last_error),
        invoices_stored: stored,
        ageing,
        attention,
        payers: Some(crate::profiles::PayersSummary::of(
            &crate::profiles::ledger_profiles(
                store,
                name,
                today,
                config.daemon.time_zone,
                &config.payer_profiles,
                &crate::profiles::plan_outcomes(
                    store,
                    name,
                    crate::profiles::window_start(today, &config.payer_profiles),
                )?,
            )?,
        )),
    })
}

/// The report from the store alone, when no daemon is running.
pub fn from_store(
    config: &Config,
    store: &dyn Store,
    now: DateTime<Utc>,
) -> Result<StatusReport, StoreError> {
    let mut connections = Vec::new();
    for c in &config.connections {
        connections.push(connection_status(config, c, store, now)?);
    }
    let facts: Vec<_> = connections.iter().map(facts_of).collect();
    // Without a daemon there is no start time to excuse an old sync.
    let mut health = super::health::evaluate(
        now,
        DateTime::<Utc>::MIN_UTC,
        config.daemon.poll_interval.0,
        &facts,
        None,
    );
    health.problems.insert(
        0,
        Problem {
            connection: None,
            code: "not_running".into(),
            message: "the daemon is not running: nothing is synced or chased".into(),
        },
    );
    health.ok = false;
    Ok(StatusReport {
        generated_at: now,
        daemon: None,
        health,
        connections,
    })
}

pub fn facts_of(c: &ConnectionStatus) -> super::health::ConnectionFacts {
    super::health::ConnectionFacts {
        name: c.name.clone(),
        enabled: c.enabled,
        needs_reconnect: c.needs_reconnect,
        build_error: c.build_error.clone(),
        last_success: c.last_sync,
    }
}

fn when(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match t {
        None => "never".into(),
        Some(t) => {
            let d = now - t;
            let rel = if d.num_seconds() < 0 {
                format!("in {}", human(-d))
            } else {
                format!("{} ago", human(d))
            };
            format!(
                "{} ({rel})",
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )
        }
    }
}

fn human(d: chrono::Duration) -> String {
    let s = d.num_seconds();
    match s {
        ..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// The report as people read it.
pub fn render_text(r: &StatusReport) -> String {
    let now = r.generated_at;
    let mut out = String::new();
    match &r.daemon {
        Some(d) => out.push_str(&format!(
            "daemon: running (pid {}, overdued {}, since {}, mode {:?}, http://{})\n",
            d.pid,
            d.version,
            when(Some(d.started_at), now),
            d.mode,
            d.http
        )),
        None => out.push_str("daemon: not running (read from the store)\n"),
    }
    if r.health.ok {
        out.push_str("health: ok\n");
    } else {
        out.push_str("health: NEEDS ATTENTION\n");
        for p in &r.health.problems {
            out.push_str(&format!("  - {}\n", p.message));
        }
    }
    for c in &r.connections {
        out.push_str(&format!("\n{} ({})", c.name, c.system));
        if !c.enabled {
            out.push_str(" [disabled]");
        }
        out.push('\n');
        let token = if c.needs_reconnect {
            format!("NEEDS RECONNECT: run `overdued connect {}`", c.name)
        } else if c.access_expires_at.is_none() {
            "no tokens stored yet".to_string()
        } else {
            let mut s = format!("access token expires {}", when(c.access_expires_at, now));
            if c.refresh_expires_at.is_some() {
                s.push_str(&format!(
                    "; grant lapses if unused {}",
                    when(c.refresh_expires_at, now)
                ));
            }
            s
        };
        out.push_str(&format!("  connection: {token}\n"));
        if let Some(e) = &c.build_error {
            out.push_str(&format!("  cannot start: {e}\n"));
        }
        out.push_str(&format!(
            "  last sync:  {} (full: {})\n",
            when(c.last_sync, now),
            when(c.last_full_sync, now)
        ));
        if let Some(e) = &c.last_error {
            out.push_str(&format!("  last error: {e}\n"));
        }
        out.push_str(&format!("  invoices:   {} stored\n", c.invoices_stored));
        if c.ageing.by_currency.is_empty() {
            out.push_str("  ageing:     nothing open\n");
        }
        for (cur, buckets) in &c.ageing.by_currency {
            let open = c.ageing.open(cur);
            let overdue = c.ageing.overdue(cur);
            // Grouped as people write money; the code is named once, on the line above.
            let human = |a: rust_decimal::Decimal| match cur.parse::<overdued_connector::Currency>()
            {
                Ok(c) => overdued_connector::Money::new(a, c)
                    .amount_human()
                    .to_string(),
                Err(_) => a.to_string(),
            };
            out.push_str(&format!(
                "  {cur}: open {} ({}), overdue {} ({})\n",
                open.count,
                human(open.amount),
                overdue.count,
                human(overdue.amount)
            ));
            for b in Bucket::ALL {
                let t = buckets.get(&b).cloned().unwrap_or_default();
                out.push_str(&format!(
                    "    {:<8} {:>5}  {:>14}\n",
                    b.as_str(),
                    t.count,
                    human(t.amount)
                ));
            }
        }
        if let Some(p) = &c.payers {
            out.push_str(&crate::profiles::render::status_lines(p, &c.name));
        }
        let a = &c.attention;
        if a.is_empty() {
            out.push_str("  attention:  nothing\n");
        } else {
            if !a.calls.is_empty() {
                // One line per customer, from the calls list: it never grows by invoice.
                out.push_str(&format!(
                    "  attention:  {} to call (details: overdued calls {}): {}\n",
                    a.calls.len(),
                    c.name,
                    a.calls.join("; ")
                ));
                if !a.escalated.is_empty() {
                    out.push_str(&format!(
                        "  attention:  {} invoice(s) marked for collection\n",
                        a.escalated.len()
                    ));
                }
            } else if !a.escalated.is_empty() {
                // An older daemon's answer, without the calls list.
                out.push_str(&format!(
                    "  attention:  {} escalated, call: {}\n",
                    a.escalated.len(),
                    a.escalated.join(", ")
                ));
            }
            if !a.no_email.is_empty() && a.calls.is_empty() {
                out.push_str(&format!(
                    "  attention:  {} with no email address in the ledger, call: {}\n",
                    a.no_email.len(),
                    a.no_email.join(", ")
                ));
            }
            if !a.promises_due.is_empty() {
                out.push_str(&format!(
                    "  attention:  {} promise(s) to pay past their date: {}\n",
                    a.promises_due.len(),
                    a.promises_due.join(", ")
                ));
            }
            if a.failed_actions > 0 {
                out.push_str(&format!(
                    "  attention:  {} failed action(s) waiting for a retry\n",
                    a.failed_actions
                ));
            }
        }
        for p in &a.payment_plans {
            out.push_str(&format!("  plan:       {p}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations() {
        assert_eq!(human(chrono::Duration::seconds(5)), "5s");
        assert_eq!(human(chrono::Duration::minutes(30)), "30m");
        assert_eq!(human(chrono::Duration::hours(5)), "5h");
        assert_eq!(human(chrono::Duration::days(3)), "3d");
    }

    #[test]
    fn renders_reconnect_and_attention() {
        let now = DateTime::parse_from_rfc3339("2026-03-02T09:00:00Z")
            .unwrap()
            .to_utc();
        let r = StatusReport {
            generated_at: now,
            daemon: None,
            health: Health {
                ok: false,
                problems: vec![Problem {
                    connection: Some("a".into()),
                    code: "needs_reconnect".into(),
                    message: "connection a needs reconnect".into(),
                }],
            },
            connections: vec![ConnectionStatus {
                name: "a".into(),
                system: "xero".into(),
                enabled: true,
                needs_reconnect: true,
                build_error: None,
                access_expires_at: Some(now),
                refresh_expires_at: None,
                last_sync: Some(now - chrono::Duration::minutes(20)),
                last_full_sync: None,
                last_error: None,
                invoices_stored: 3,
                ageing: Ageing::default(),
                attention: Attention {
                    escalated: vec!["INV-7".into()],
                    promises_due: vec![],
                    no_email: vec!["Wiley Hardware (invoice INV-9)".into()],
                    failed_actions: 2,
                    calls: vec![],
                    payment_plans: vec![],
                },
                payers: None,
            }],
        };
        let t = render_text(&r);
        assert!(t.contains("daemon: not running"), "{t}");
        assert!(
            t.contains("NEEDS RECONNECT: run `overdued connect a`"),
            "{t}"
        );
        assert!(t.contains("2026-03-02T08:40:00Z (20m ago)"), "{t}");
        assert!(t.contains("1 escalated, call: INV-7"), "{t}");
        assert!(
            t.contains(
                "1 with no email address in the ledger, call: Wiley Hardware (invoice INV-9)"
            ),
            "{t}"
        );
        assert!(t.contains("2 failed action(s)"), "{t}");
        assert!(t.contains("full: never"), "{t}");

        // With the calls list, customers are named once each, with amount and phone,
        // and the bare invoice numbers go.
        let mut r = r;
        r.connections[0].attention.calls = vec![
            "Wiley Hardware (owes £120.00; +44 20 7946 0001)".into(),
            "Ridgeway Ltd (owes £80.00; no phone in the ledger)".into(),
        ];
        let t = render_text(&r);
        assert!(
            t.contains("2 to call (details: overdued calls a): Wiley Hardware (owes £120.00; +44 20 7946 0001); Ridgeway Ltd"),
            "{t}"
        );
        assert!(t.contains("1 invoice(s) marked for collection"), "{t}");
        assert!(!t.contains("call: INV-7"), "{t}");
        assert!(!t.contains("call: Wiley Hardware (invoice INV-9)"), "{t}");
    }
}
