//! `arrange`, `arrangements` and `cancel` as operations on the store: run by the CLI on
//! the store directly or by the daemon for it (see [`crate::ops::Op`]).

use std::fmt::Write;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::schedule::{self, even_schedule, parse_schedule};
use super::{Arrangement, CoveredInvoice, Credited, Standing};
use crate::config::Config;
use crate::ops::OpError;
use crate::store::{AuditEvent, InvoiceRecord, Store, StoreError};

use crate::ops::{io, usage};

/// How the schedule was asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PlanSpec {
    Even {
        instalments: u32,
        every: u32,
        first: NaiveDate,
    },
    /// `DATE:AMOUNT,...` as typed: parsed where the currency is known.
    Listed { schedule: String },
}

/// A plan with where it stands, as `arrangements` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct PlanReport {
    pub id: String,
    pub connection: String,
    pub customer_id: String,
    pub customer_name: String,
    pub invoices: Vec<String>,
    pub currency: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub total: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub paid: Decimal,
    pub status: &'static str,
    pub agreed_on: NaiveDate,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_on: Option<NaiveDate>,
    /// The next instalment not fully paid, while the plan runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_due: Option<NaiveDate>,
    pub instalments: Vec<Credited>,
}

/// Where a stored plan stands on `today`, its balances read from the store.
pub fn assess(
    store: &dyn Store,
    plan: &Arrangement,
    today: NaiveDate,
    grace: u32,
) -> Result<(Standing, Decimal, Vec<Credited>), StoreError> {
    let mut balances = std::collections::BTreeMap::new();
    for c in &plan.invoices {
        if let Some(r) = store.get_invoice(&plan.connection, &c.id)? {
            let b = if r.snapshot.status.is_open() {
                r.snapshot.amount_due
            } else {
                Decimal::ZERO
            };
            balances.insert(c.id.clone(), b);
        }
    }
    let paid = plan.paid(&|id| balances.get(id).copied());
    // Once the customer was told the plan ended, it stays ended (see `attach`).
    let mut plan = plan.clone();
    if plan.cancelled_on.is_none() && plan.broken_on.is_none() && paid < plan.total() {
        let step = crate::engine::plan::missed_step(&plan.id);
        for c in &plan.invoices {
            for e in store.journal_for_invoice(&plan.connection, &c.id)? {
                if e.step_id == step && matches!(e.state, crate::store::JournalState::Done { .. }) {
                    let on = e.planned_for;
                    plan.broken_on = Some(plan.broken_on.map_or(on, |b| b.min(on)));
                }
            }
        }
    }
    Ok((plan.standing(paid, today, grace), paid, plan.credited(paid)))
}

pub fn report(
    store: &dyn Store,
    plan: &Arrangement,
    today: NaiveDate,
    grace: u32,
) -> Result<PlanReport, StoreError> {
    let (standing, paid, credited) = assess(store, plan, today, grace)?;
    let ended_on = match standing {
        Standing::Broken { on, .. } | Standing::Cancelled { on } => Some(on),
        _ => None,
    };
    let next_due = standing
        .is_active()
        .then(|| {
            credited
                .iter()
                .find(|c| c.outstanding() > Decimal::ZERO)
                .map(|c| c.due)
        })
        .flatten();
    Ok(PlanReport {
        id: plan.id.clone(),
        connection: plan.connection.clone(),
        customer_id: plan.customer_id.clone(),
        customer_name: plan.customer_name.clone(),
        invoices: plan.invoices.iter().map(|c| c.number.clone()).collect(),
        currency: plan.currency.code().to_string(),
        total: plan.total(),
        paid,
        status: standing.label(),
        agreed_on: plan.agreed_on,
        ended_on,
        next_due,
        instalments: credited,
    })
}

/// Runs at most once a plan into the store; what `arrange` does.
pub fn arrange(
    config: &Config,
    store: &dyn Store,
    now: DateTime<Utc>,
    connection: &str,
    target: &str,
    chosen: &[String],
    spec: &PlanSpec,
) -> Result<String, OpError> {
    let today = now.with_timezone(&config.daemon.time_zone).date_naive();
    let engine = &config.engine;
    let covered = covered_invoices(store, connection, target, chosen)?;
    let currency = covered[0].snapshot.currency;
    if let Some(other) = covered.iter().find(|r| r.snapshot.currency != currency) {
        return Err(usage(format!(
            "{connection}: invoice {} is in {} and invoice {} in {}: one plan covers one currency; arrange them separately (--invoices)",
            covered[0].snapshot.display_number(),
            currency.code(),
            other.snapshot.display_number(),
            other.snapshot.currency.code()
        )));
    }
    // No invoice in two running plans: their payments could not be told apart.
    let existing = store.arrangements(connection).map_err(io)?;
    for p in &existing {
        let (standing, _, _) = assess(store, p, today, engine.plan_grace_days).map_err(io)?;
        if !standing.is_active() {
            continue;
        }
        if let Some(r) = covered
            .iter()
            .find(|r| p.invoices.iter().any(|c| c.id == r.snapshot.remote_id))
        {
            return Err(usage(format!(
                "{connection}: invoice {} is already in payment plan {} ({}); cancel it first (overdued cancel {connection} {})",
                r.snapshot.display_number(),
                p.id,
                standing.label(),
                p.id
            )));
        }
    }
    let total: Decimal = covered.iter().map(|r| r.snapshot.amount_due).sum();
    let fail = |e: schedule::ScheduleError| usage(format!("{}: {}", e.field, e.message));
    let (instalments, field) = match spec {
        PlanSpec::Even {
            instalments,
            every,
            first,
        } => (
            even_schedule(total, currency, *instalments, *every, *first).map_err(fail)?,
            "--first",
        ),
        PlanSpec::Listed { schedule } => (
            parse_schedule(schedule, currency).map_err(fail)?,
            "--schedule",
        ),
    };
    schedule::check(
        &instalments,
        total,
        currency,
        today,
        // One bound for promises and plans: `[daemon] max_promise_days`.
        u32::try_from(config.daemon.max_promise_days).unwrap_or(u32::MAX),
        field,
    )
    .map_err(fail)?;
    let n = existing
        .iter()
        .filter_map(|p| p.id.strip_prefix('P')?.parse::<u32>().ok())
        .max()
        .unwrap_or(0)
        + 1;
    let customer = &covered[0].snapshot.customer;
    let plan = Arrangement {
        id: format!("P{n}"),
        connection: connection.to_string(),
        customer_id: customer.id.clone(),
        customer_name: customer.name.clone(),
        currency,
        invoices: covered
            .iter()
            .map(|r| CoveredInvoice {
                id: r.snapshot.remote_id.clone(),
                number: r.snapshot.display_number().to_string(),
                balance_when_agreed: r.snapshot.amount_due,
            })
            .collect(),
        instalments,
        agreed_at: now,
        agreed_on: today,
        cancelled_on: None,
        broken_on: None,
    };
    store.put_arrangement(&plan).map_err(io)?;
    for c in &plan.invoices {
        store
            .append_audit(&AuditEvent {
                at: now,
                connection: connection.into(),
                invoice_id: Some(c.id.clone()),
                kind: "plan".into(),
                message: format!(
                    "payment plan {} agreed: {} in {} instalment(s); no reminders while it is kept",
                    plan.id,
                    plan.money(total).display_human(),
                    plan.instalments.len()
                ),
                detail: serde_json::Value::Null,
            })
            .map_err(io)?;
    }
    store.flush().map_err(io)?;
    tracing::info!(
        connection = %connection,
        plan = %plan.id,
        customer = %plan.customer_name,
        invoices = %plan.numbers(),
        total = %plan.money(total).display_human(),
        instalments = plan.instalments.len(),
        "payment plan agreed"
    );
    let mut out = format!(
        "{connection}: payment plan {} agreed with {} for {} (invoice(s) {}):\n",
        plan.id,
        plan.customer_name,
        plan.money(total).display_human(),
        plan.numbers()
    );
    for l in plan.schedule_lines(&plan.credited(Decimal::ZERO), false) {
        let _ = writeln!(out, "  {l}");
    }
    let _ = writeln!(
        out,
        "No ordinary reminder, fee or escalation while it is kept; a heads-up {} day(s) before each instalment and a reminder on its day; an instalment unpaid {} day(s) after its date ends the plan and chasing resumes.",
        engine.plan_heads_up_days, engine.plan_grace_days
    );
    Ok(out)
}

/// The invoices a plan would cover: the one invoice named, the ones chosen with
/// `--invoices`, or every open invoice of the customer named.
fn covered_invoices(
    store: &dyn Store,
    connection: &str,
    target: &str,
    chosen: &[String],
) -> Result<Vec<InvoiceRecord>, OpError> {
    let open =
        |r: &InvoiceRecord| r.snapshot.status.is_open() && r.snapshot.amount_due > Decimal::ZERO;
    let mut out: Vec<InvoiceRecord> = Vec::new();
    if chosen.is_empty() && crate::ops::names_an_invoice(store, connection, target)? {
        let r = crate::ops::resolve_invoice(store, connection, target)?;
        if !open(&r) {
            return Err(usage(format!(
                "{connection}: invoice {} has nothing to pay ({}, {:?})",
                r.snapshot.display_number(),
                r.snapshot.due_money().display_human(),
                r.snapshot.status
            )));
        }
        return Ok(vec![r]);
    }
    let customer = match crate::ops::resolve_customer(store, connection, target) {
        Ok(c) => c,
        Err(e) if chosen.is_empty() => {
            return Err(usage(format!(
                "{connection}: {target:?} names no synced invoice (by number or id) and no customer: {}",
                e.message
                    .strip_prefix(&format!("{connection}: "))
                    .unwrap_or(&e.message)
            )))
        }
        Err(e) => return Err(e),
    };
    if chosen.is_empty() {
        store
            .for_each_invoice(connection, &mut |r| {
                if r.snapshot.customer.id == customer.id && open(&r) {
                    out.push(r);
                }
                true
            })
            .map_err(io)?;
        if out.is_empty() {
            return Err(usage(format!(
                "{connection}: customer {} ({}) has no open invoice with a balance",
                customer.name, customer.id
            )));
        }
    } else {
        for handle in chosen {
            let r = crate::ops::resolve_invoice(store, connection, handle)?;
            if r.snapshot.customer.id != customer.id {
                return Err(usage(format!(
                    "--invoices: invoice {} is {}'s, not {}'s",
                    r.snapshot.display_number(),
                    r.snapshot.customer.name,
                    customer.name
                )));
            }
            if !open(&r) {
                return Err(usage(format!(
                    "--invoices: invoice {} has nothing to pay ({})",
                    r.snapshot.display_number(),
                    r.snapshot.due_money().display_human()
                )));
            }
            if !out
                .iter()
                .any(|o| o.snapshot.remote_id == r.snapshot.remote_id)
            {
                out.push(r);
            }
        }
    }
    // Oldest first: the first still open carries the plan's messages.
    out.sort_by(|a, b| {
        let key = |r: &InvoiceRecord| {
            (
                r.snapshot.due_date,
                r.snapshot.display_number().to_string(),
                r.snapshot.remote_id.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    Ok(out)
}

/// What `arrangements` prints: every plan of one connection or of all, with status and
/// what was paid.
pub fn list(
    config: &Config,
    store: &dyn Store,
    now: DateTime<Utc>,
    connection: Option<&str>,
    json: bool,
) -> Result<String, OpError> {
    let today = now.with_timezone(&config.daemon.time_zone).date_naive();
    let names: Vec<String> = match connection {
        Some(c) => vec![c.to_string()],
        None => config.connections.iter().map(|c| c.name.clone()).collect(),
    };
    let mut reports = Vec::new();
    for name in &names {
        for p in store.arrangements(name).map_err(io)? {
            reports.push(report(store, &p, today, config.engine.plan_grace_days).map_err(io)?);
        }
    }
    if json {
        return serde_json::to_string_pretty(&reports)
            .map(|s| s + "\n")
            .map_err(|e| OpError {
                code: 70,
                message: e.to_string(),
            });
    }
    if reports.is_empty() {
        return Ok("no payment plans\n".into());
    }
    let mut out = String::new();
    for r in &reports {
        let money = |a: Decimal| match r.currency.parse::<overdued_connector::Currency>() {
            Ok(c) => overdued_connector::Money::new(a, c)
                .display_human()
                .to_string(),
            Err(_) => format!("{} {a}", r.currency),
        };
        let _ = writeln!(
            out,
            "{} {}  {}  {}  invoices {}  {} of {} paid  agreed {}{}{}",
            r.connection,
            r.id,
            r.status,
            r.customer_name,
            r.invoices.join(", "),
            money(r.paid),
            money(r.total),
            r.agreed_on,
            r.next_due
                .map(|d| format!("  next due {d}"))
                .unwrap_or_default(),
            r.ended_on
                .map(|d| format!("  ended {d}"))
                .unwrap_or_default()
        );
        for (i, c) in r.instalments.iter().enumerate() {
            let _ = writeln!(
                out,
                "    {}. {}  {}  paid {}",
                i + 1,
                c.due,
                money(c.amount),
                money(c.paid)
            );
        }
    }
    Ok(out)
}

/// Ends a running plan by hand: chasing resumes as after a broken plan, without the
/// "plan missed" message.
pub fn cancel(
    config: &Config,
    store: &dyn Store,
    now: DateTime<Utc>,
    connection: &str,
    id: &str,
) -> Result<String, OpError> {
    let today = now.with_timezone(&config.daemon.time_zone).date_naive();
    let plans = store.arrangements(connection).map_err(io)?;
    let wanted = id.trim();
    let Some(mut plan) = plans
        .iter()
        .find(|p| p.id.eq_ignore_ascii_case(wanted))
        .cloned()
    else {
        let ids: Vec<&str> = plans.iter().map(|p| p.id.as_str()).collect();
        return Err(usage(format!(
            "{connection}: no payment plan {wanted:?} (plans: {})",
            if ids.is_empty() {
                "none".to_string()
            } else {
                ids.join(", ")
            }
        )));
    };
    let (standing, _, _) =
        assess(store, &plan, today, config.engine.plan_grace_days).map_err(io)?;
    if !standing.is_active() {
        return Err(usage(format!(
            "{connection}: payment plan {} is {} already",
            plan.id,
            standing.label()
        )));
    }
    plan.cancelled_on = Some(today);
    store.put_arrangement(&plan).map_err(io)?;
    for c in &plan.invoices {
        store
            .append_audit(&AuditEvent {
                at: now,
                connection: connection.into(),
                invoice_id: Some(c.id.clone()),
                kind: "plan".into(),
                message: format!(
                    "payment plan {} cancelled; chasing resumes where it stood on {}",
                    plan.id, plan.agreed_on
                ),
                detail: serde_json::Value::Null,
            })
            .map_err(io)?;
    }
    store.flush().map_err(io)?;
    tracing::info!(
        connection = %connection,
        plan = %plan.id,
        customer = %plan.customer_name,
        invoices = %plan.numbers(),
        "payment plan cancelled; chasing resumes"
    );
    Ok(format!(
        "{connection}: payment plan {} ({}, invoice(s) {}) cancelled; chasing resumes where it stood when the plan was agreed ({}), without a \"plan missed\" message\n",
        plan.id,
        plan.customer_name,
        plan.numbers(),
        plan.agreed_on
    ))
}

/// One line per payment plan the owner should know of today: those running, and those
/// that ended unpaid in the last 14 days; for `status` and the digest.
pub fn status_lines(
    config: &Config,
    store: &dyn Store,
    connection: &str,
    today: NaiveDate,
) -> Result<Vec<String>, StoreError> {
    let by = if config.channels.smtp.is_some() {
        "by overdued's email"
    } else {
        "by the system's invoice email, which shows the balance, not the instalment"
    };
    let mut out = Vec::new();
    for p in store.arrangements(connection)? {
        let r = report(store, &p, today, config.engine.plan_grace_days)?;
        let money = |a: Decimal| p.money(a).display_human().to_string();
        let head = format!(
            "payment plan {} {} (invoice {})",
            p.id,
            p.customer_name,
            p.numbers()
        );
        match (r.status, r.ended_on) {
            ("kept" | "due", _) => {
                let next = r
                    .instalments
                    .iter()
                    .find(|c| c.outstanding() > Decimal::ZERO)
                    .map(|c| format!("; next {} on {} ({by})", money(c.outstanding()), c.due))
                    .unwrap_or_default();
                out.push(format!(
                    "{head}: {}, {} of {} paid{next}",
                    r.status,
                    money(r.paid),
                    money(r.total)
                ));
            }
            ("broken", Some(on)) if (today - on).num_days() <= 14 => out.push(format!(
                "{head}: BROKEN on {on} ({} of {} paid); the customer is told and chasing has resumed: consider a call",
                money(r.paid),
                money(r.total)
            )),
            _ => {}
        }
    }
    Ok(out)
}
