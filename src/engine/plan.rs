//! [`plan`]: what to do today for each invoice, and why — or why nothing.
//!
//! The plan is a pure function of (invoices, their histories, the local date, the
//! policy). Every action carries an [`IdempotencyKey`] derived from what it is
//! (connection, invoice, kind, step occurrence), never from when it was planned, so
//! re-planning the same day, after a restart or across a DST change yields the same keys,
//! and an action recorded in the history is never planned again.
//!
//! Two tracks run per invoice:
//! - reminders: the policy's remind/note/escalate steps, then repeats of the last
//!   reminder (`step_id` `"+60d/r2"`), plus a "promise broken" message
//!   (`"promise/2026-11-20"`);
//! - late fees: one occurrence per fee period (`"+30d/p0"`, `"+30d/p1"`, ...).
//!
//! On each track only the latest occurrence now due is considered (after downtime the
//! missed ones are not all sent), and it is skipped if it is more than
//! `catch_up_horizon_days` past its day — except escalation, which is a change of state
//! that is never stale. After escalation nothing further is planned.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use overdued_connector::{
    ActionKind, ConnectionId, FeePosting, IdempotencyKey, InvoiceSnapshot, InvoiceStatus, Money,
};

use crate::engine::dates::long_date;
pub use crate::engine::fees::BalanceChange;
use crate::engine::fees::{quote_fee, ChargedFee, FeeInput, FeeQuote};
use crate::engine::policy::{
    Channel, CompiledPolicy, EngineSettings, PolicyBook, Resolution, StepAction,
};
use crate::engine::templates::{render_message, MessageContext, RenderedMessage, TemplateError};
use crate::engine::window::WindowState;

/// An action already carried out (as journalled by the executor).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRecord {
    pub kind: ActionKind,
    /// The occurrence id the action was planned under, e.g. "+7d", "+30d/p1".
    pub step_id: String,
    pub key: IdempotencyKey,
    pub at: DateTime<Utc>,
    /// For late fees: what was charged.
    #[serde(default)]
    pub fee: Option<Money>,
    /// For late fees: the period charged.
    #[serde(default)]
    pub period: Option<u32>,
}

/// A customer's promise to pay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promise {
    /// No chasing until this date (plus `promise_grace_days`).
    pub until: NaiveDate,
    /// The amount promised; `None`: the whole balance.
    #[serde(default, with = "rust_decimal::serde::str_option")]
    pub amount: Option<Decimal>,
    /// The amount due when the promise was made, to judge a promise of part of it.
    #[serde(default, with = "rust_decimal::serde::str_option")]
    pub balance_when_made: Option<Decimal>,
}

/// A pause (e.g. a dispute) of an invoice or a customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    pub reason: String,
    /// Last day of the pause (inclusive); `None`: until lifted.
    #[serde(default)]
    pub until: Option<NaiveDate>,
}

impl Pause {
    fn active_on(&self, d: NaiveDate) -> bool {
        self.until.is_none_or(|u| d <= u)
    }

    fn describe(&self) -> String {
        match self.until {
            Some(u) => format!("{} (until {u})", self.reason),
            None => self.reason.clone(),
        }
    }
}

/// Everything known about an invoice besides its snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceHistory {
    #[serde(default)]
    pub actions: Vec<ActionRecord>,
    /// See [`FeeInput::balance_history`].
    #[serde(default)]
    pub balance_history: Vec<BalanceChange>,
    #[serde(default)]
    pub promise: Option<Promise>,
    #[serde(default)]
    pub pause: Option<Pause>,
    #[serde(default)]
    pub customer_pause: Option<Pause>,
    /// Set when the invoice was marked for collection (by the engine or by hand).
    #[serde(default)]
    pub escalated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceCase {
    pub invoice: InvoiceSnapshot,
    pub history: InvoiceHistory,
}

/// Everything [`plan`] reads. Call it once per connection (the default policy is the
/// connection's); pass every invoice acted on today, closed ones included, so the daily
/// per-customer limit counts their reminders.
#[derive(Debug, Clone, Copy)]
pub struct PlanInputs<'a> {
    pub now: DateTime<Utc>,
    pub time_zone: Tz,
    pub settings: &'a EngineSettings,
    pub policies: &'a PolicyBook,
    pub default_policy: &'a str,
    pub invoices: &'a [InvoiceCase],
}

/// One action to carry out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedAction {
    pub connection: ConnectionId,
    pub invoice_id: String,
    pub invoice_number: String,
    pub customer_id: String,
    pub kind: ActionKind,
    pub step_id: String,
    pub key: IdempotencyKey,
    pub channel: Channel,
    pub policy: String,
    pub days_overdue: i64,
    /// The message to send (reminders to the customer, escalations to the owner).
    pub message: Option<RenderedMessage>,
    /// The template the message came from, so a channel can render its own version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// The values the message was rendered with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<MessageContext>,
    /// Text written to the ledger: the note, or the fee line's description.
    pub ledger_text: Option<String>,
    pub fee: Option<FeeQuote>,
    pub fee_posting: Option<FeePosting>,
    pub reason: String,
}

/// Why nothing (or not everything) is done for an invoice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipCode {
    /// Paid, voided, deleted or draft.
    NotOpen,
    NothingDue,
    /// By a memo marker or a customer override.
    Excluded,
    Escalated,
    Paused,
    CustomerPaused,
    PromiseActive,
    BelowMinimum,
    NotYetDue,
    AlreadyDone,
    BeyondHorizon,
    /// A late fee step found no fee due (cap reached, fee invoice, ...).
    NoFee,
    OutsideWindow,
    CustomerLimit,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub connection: ConnectionId,
    pub invoice_id: String,
    pub invoice_number: String,
    pub customer_id: String,
    pub days_overdue: i64,
    /// The step concerned, when the skip is about one step.
    pub step_id: Option<String>,
    pub code: SkipCode,
    pub reason: String,
}

/// The outcome of one planning pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub generated_at: DateTime<Utc>,
    pub time_zone: String,
    pub local_date: NaiveDate,
    pub actions: Vec<PlannedAction>,
    pub skipped: Vec<Skipped>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("unknown policy {0:?}")]
    UnknownPolicy(String),
    /// Cannot happen with a policy compiled by [`PolicyBook::compile`], which checks
    /// every step's template.
    #[error("policy {policy:?} has no template {template:?}")]
    MissingTemplate { policy: String, template: String },
    #[error("template {template:?} of policy {policy:?}: {error}")]
    Template {
        policy: String,
        template: String,
        error: TemplateError,
    },
}

/// One scheduled thing on an invoice's timeline.
#[derive(Debug, Clone)]
struct Occurrence {
    day: i64,
    step_id: String,
    action: StepAction,
    template: Option<String>,
    channel: Channel,
    label: String,
}

/// An action decided for one invoice, before the window and the daily limit apply.
struct Candidate {
    action: PlannedAction,
    email_reminder: bool,
}

struct Evaluated {
    candidates: Vec<Candidate>,
    skipped: Vec<Skipped>,
    policy: Option<String>,
}

/// Decides what to do now. Pure: the same inputs always give the same plan.
pub fn plan(inputs: &PlanInputs<'_>) -> Result<Plan, PlanError> {
    let tz = inputs.time_zone;
    let today = inputs.now.with_timezone(&tz).date_naive();
    if inputs.policies.get(inputs.default_policy).is_none() {
        return Err(PlanError::UnknownPolicy(inputs.default_policy.to_string()));
    }

    let mut actions = Vec::new();
    let mut skipped = Vec::new();
    let mut pending: Vec<(Candidate, String)> = Vec::new();
    for case in inputs.invoices {
        let ev = evaluate(inputs, case, today)?;
        skipped.extend(ev.skipped);
        if let Some(policy) = ev.policy {
            pending.extend(ev.candidates.into_iter().map(|c| (c, policy.clone())));
        }
    }

    // The send window, per policy (evaluated once per policy: finding the next opening
    // scans minutes).
    let mut open: Vec<(Candidate, String)> = Vec::new();
    let mut closed_why: BTreeMap<String, Option<String>> = BTreeMap::new();
    for (c, policy_name) in pending {
        let Some(policy) = inputs.policies.get(&policy_name) else {
            return Err(PlanError::UnknownPolicy(policy_name));
        };
        let why = closed_why.entry(policy_name.clone()).or_insert_with(|| {
            let why = match policy.window.state(inputs.now, tz) {
                WindowState::Open => return None,
                WindowState::Holiday(d) => format!("{d} is a holiday"),
                WindowState::OutsideHours => {
                    format!("outside the send window \"{}\"", policy.window.expression())
                }
            };
            let next = policy
                .window
                .next_open(inputs.now, tz)
                .map(|t| {
                    format!(
                        "; next opens {}",
                        t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z")
                    )
                })
                .unwrap_or_default();
            Some(format!("{why}{next}"))
        });
        match why.clone() {
            None => open.push((c, policy_name)),
            Some(why) => {
                skipped.push(skip_from(
                    &c.action,
                    SkipCode::OutsideWindow,
                    format!("would {} ({}) but {why}", c.action.kind, c.action.reason),
                ));
            }
        }
    }

    // At most N reminders a customer a day, most overdue first.
    let mut sent_today: BTreeMap<(String, String), u32> = BTreeMap::new();
    let mut seen_keys: BTreeSet<IdempotencyKey> = BTreeSet::new();
    for case in inputs.invoices {
        for r in &case.history.actions {
            if r.kind == ActionKind::Remind
                && r.at.with_timezone(&tz).date_naive() == today
                && seen_keys.insert(r.key.clone())
            {
                *sent_today
                    .entry((
                        case.invoice.connection.0.clone(),
                        case.invoice.customer.id.clone(),
                    ))
                    .or_default() += 1;
            }
        }
    }
    open.sort_by(|(a, _), (b, _)| {
        (
            b.action.days_overdue,
            &a.action.invoice_id,
            &a.action.step_id,
        )
            .cmp(&(
                a.action.days_overdue,
                &b.action.invoice_id,
                &b.action.step_id,
            ))
    });
    for (c, policy_name) in open {
        if c.email_reminder {
            let limit = inputs
                .policies
                .get(&policy_name)
                .map_or(0, |p| p.max_reminders_per_customer_per_day);
            let count = sent_today
                .entry((c.action.connection.0.clone(), c.action.customer_id.clone()))
                .or_default();
            if limit > 0 && *count >= limit {
                skipped.push(skip_from(
                    &c.action,
                    SkipCode::CustomerLimit,
                    format!("customer already reminded {count} time(s) today (limit {limit}, most overdue first); tried again tomorrow"),
                ));
                continue;
            }
            *count += 1;
        }
        actions.push(c.action);
    }

    actions.sort_by(|a, b| {
        (
            &a.connection,
            &a.customer_id,
            &a.invoice_id,
            kind_rank(a.kind),
            &a.step_id,
        )
            .cmp(&(
                &b.connection,
                &b.customer_id,
                &b.invoice_id,
                kind_rank(b.kind),
                &b.step_id,
            ))
    });
    skipped.sort_by(|a, b| {
        (
            &a.connection,
            &a.customer_id,
            &a.invoice_id,
            &a.step_id,
            a.code,
        )
            .cmp(&(
                &b.connection,
                &b.customer_id,
                &b.invoice_id,
                &b.step_id,
                b.code,
            ))
    });
    Ok(Plan {
        generated_at: inputs.now,
        time_zone: tz.name().to_string(),
        local_date: today,
        actions,
        skipped,
    })
}

/// Execution order within an invoice: the fee before the message announcing it, the
/// ledger note before the escalation that stops everything.
fn kind_rank(k: ActionKind) -> u8 {
    match k {
        ActionKind::LateFee => 0,
        ActionKind::Note => 1,
        ActionKind::Remind => 2,
        ActionKind::Escalate => 3,
    }
}

fn skip_from(a: &PlannedAction, code: SkipCode, reason: String) -> Skipped {
    Skipped {
        connection: a.connection.clone(),
        invoice_id: a.invoice_id.clone(),
        invoice_number: a.invoice_number.clone(),
        customer_id: a.customer_id.clone(),
        days_overdue: a.days_overdue,
        step_id: Some(a.step_id.clone()),
        code,
        reason,
    }
}

fn day_text(due: NaiveDate, day: i64) -> NaiveDate {
    due + Duration::days(day)
}

fn evaluate(
    inputs: &PlanInputs<'_>,
    case: &InvoiceCase,
    today: NaiveDate,
) -> Result<Evaluated, PlanError> {
    let inv = &case.invoice;
    let hist = &case.history;
    let tz = inputs.time_zone;
    let d = inv.days_overdue(today);
    let skip = |step_id: Option<String>, code: SkipCode, reason: String| Skipped {
        connection: inv.connection.clone(),
        invoice_id: inv.remote_id.clone(),
        invoice_number: inv.display_number().to_string(),
        customer_id: inv.customer.id.clone(),
        days_overdue: d,
        step_id,
        code,
        reason,
    };
    let only = |code: SkipCode, reason: String| {
        Ok(Evaluated {
            candidates: vec![],
            skipped: vec![skip(None, code, reason)],
            policy: None,
        })
    };

    if !inv.status.is_open() {
        let what = match inv.status {
            InvoiceStatus::Paid => "paid",
            InvoiceStatus::Voided => "voided",
            InvoiceStatus::Deleted => "deleted",
            InvoiceStatus::Draft => "a draft (not issued)",
            InvoiceStatus::Open => "open",
        };
        return only(SkipCode::NotOpen, format!("invoice is {what}"));
    }
    if inv.amount_due <= Decimal::ZERO {
        return only(
            SkipCode::NothingDue,
            format!("nothing due ({})", inv.due_money()),
        );
    }
    let policy = match inputs.policies.resolve(inputs.default_policy, inv) {
        None => return Err(PlanError::UnknownPolicy(inputs.default_policy.to_string())),
        Some(Resolution::Excluded { reason }) => return only(SkipCode::Excluded, reason),
        Some(Resolution::Policy { policy, .. }) => policy,
    };
    if let Some(m) = policy.marker_in(&inv.memo) {
        return only(
            SkipCode::Excluded,
            format!("memo contains the exclusion marker {m:?}"),
        );
    }
    let escalated_on = hist
        .actions
        .iter()
        .filter(|r| r.kind == ActionKind::Escalate)
        .map(|r| r.at)
        .min();
    if hist.escalated || escalated_on.is_some() {
        let when = escalated_on
            .map(|t| format!(" on {}", t.with_timezone(&tz).date_naive()))
            .unwrap_or_default();
        return only(
            SkipCode::Escalated,
            format!("marked for collection{when}; automatic actions stopped"),
        );
    }
    if let Some(p) = hist.pause.as_ref().filter(|p| p.active_on(today)) {
        return only(
            SkipCode::Paused,
            format!("invoice paused: {}", p.describe()),
        );
    }
    if let Some(p) = hist.customer_pause.as_ref().filter(|p| p.active_on(today)) {
        return only(
            SkipCode::CustomerPaused,
            format!("customer paused: {}", p.describe()),
        );
    }
    if inv.amount_due < policy.minimum_amount_due {
        return only(
            SkipCode::BelowMinimum,
            format!(
                "{} due is below the minimum {}",
                inv.due_money(),
                Money::new(policy.minimum_amount_due, inv.currency)
            ),
        );
    }

    let horizon = i64::from(inputs.settings.catch_up_horizon_days);
    let done: BTreeMap<&IdempotencyKey, &ActionRecord> =
        hist.actions.iter().map(|r| (&r.key, r)).collect();
    let local = |t: DateTime<Utc>| t.with_timezone(&tz).date_naive();
    let key = |kind: ActionKind, step: &str| {
        IdempotencyKey::derive(inv.connection.as_str(), &inv.remote_id, kind, step)
    };

    // The promise, if any: still standing, kept, or broken.
    let mut promise_broken: Option<(String, i64)> = None;
    if let Some(pr) = &hist.promise {
        let grace_end = pr.until + Duration::days(i64::from(inputs.settings.promise_grace_days));
        if today <= grace_end {
            return only(
                SkipCode::PromiseActive,
                format!(
                    "promise to pay by {} (not chased until after {grace_end})",
                    pr.until
                ),
            );
        }
        let tolerance = inputs.settings.promise_tolerance;
        let kept = inv.amount_due <= tolerance
            || match (pr.amount, pr.balance_when_made) {
                (Some(a), Some(b)) => b - inv.amount_due + tolerance >= a,
                _ => false,
            };
        if !kept {
            promise_broken = Some((
                format!("promise/{}", pr.until),
                (grace_end - inv.due_date).num_days() + 1,
            ));
        }
    }

    // The reminder track. A late-fee invoice is owed and gets the reminders, but neither
    // a heads-up before it is due nor an escalation of its own: referring a small fee to
    // collection apart from the invoice it belongs to would embarrass the owner.
    let mut track = reminder_track(policy, d);
    if inv.is_fee_invoice {
        track
            .retain(|o| o.day >= 0 && !matches!(o.action, StepAction::Escalate | StepAction::Note));
    }
    let broken_sent_day = hist
        .actions
        .iter()
        .filter(|r| r.kind == ActionKind::Remind && r.step_id.starts_with("promise/"))
        .map(|r| (local(r.at) - inv.due_date).num_days())
        .max();
    if let Some((id, day)) = &promise_broken {
        track.push(Occurrence {
            day: *day,
            step_id: id.clone(),
            action: StepAction::Remind,
            template: Some("promise_broken".into()),
            // By the way the policy reaches the customer.
            channel: policy
                .steps
                .iter()
                .rev()
                .find(|s| s.action == StepAction::Remind && s.channel.to_customer())
                .map_or(Channel::Email, |s| s.channel),
            label: format!("promise broken ({})", id.trim_start_matches("promise/")),
        });
        track.sort_by_key(|o| o.day);
    }

    let mut picked: Vec<Occurrence> = Vec::new();
    let mut notes: Vec<Skipped> = Vec::new();
    let latest_day = track.iter().filter(|o| o.day <= d).map(|o| o.day).max();
    // Only while it can still be sent: a promise-broken message past the catch-up
    // horizon is dropped and the ordinary sequence takes over again.
    let broken_pending = promise_broken.as_ref().filter(|(id, day)| {
        !done.contains_key(&key(ActionKind::Remind, id)) && *day <= d && d - *day <= horizon
    });
    if let Some(day) = latest_day {
        let group: Vec<&Occurrence> = track.iter().filter(|o| o.day == day).collect();
        let escalating = group.iter().any(|o| o.action == StepAction::Escalate);
        let undone: Vec<&Occurrence> = group
            .iter()
            .copied()
            .filter(|o| {
                expand(o)
                    .iter()
                    .any(|(k, _, _)| !done.contains_key(&key(*k, &o.step_id)))
            })
            .collect();
        let late = d - day;
        if undone.is_empty() {
            let when = group
                .iter()
                .flat_map(|o| {
                    expand(o)
                        .into_iter()
                        .filter_map(|(k, _, _)| done.get(&key(k, &o.step_id)))
                })
                .map(|r| local(r.at))
                .max();
            notes.push(skip(
                Some(group[0].step_id.clone()),
                SkipCode::AlreadyDone,
                format!(
                    "{} already done{}",
                    group[0].label,
                    when.map(|w| format!(" on {w}")).unwrap_or_default()
                ),
            ));
        } else if late > horizon && !escalating {
            for o in &undone {
                notes.push(skip(
                    Some(o.step_id.clone()),
                    SkipCode::BeyondHorizon,
                    format!(
                        "{} was due on {}, {late} days ago, beyond the catch-up horizon of {horizon} days",
                        o.label,
                        day_text(inv.due_date, day)
                    ),
                ));
            }
        } else {
            for o in undone {
                // A pending "promise broken" message speaks for the reminders missed
                // during the promise; once sent, it supersedes them.
                let is_broken_msg = o.step_id.starts_with("promise/");
                let superseded = o.action == StepAction::Remind
                    && !is_broken_msg
                    && (broken_pending.is_some() || broken_sent_day.is_some_and(|b| b >= o.day));
                if superseded && !escalating {
                    notes.push(skip(
                        Some(o.step_id.clone()),
                        SkipCode::AlreadyDone,
                        format!("{} superseded by the promise-broken message", o.label),
                    ));
                } else {
                    picked.push(o.clone());
                }
            }
        }
    }
    // A promise-broken message due on a day with no other occurrence is its own group;
    // when a later step is the latest group, still send it unless that group escalates.
    if let Some((id, day)) = broken_pending {
        let escalating = picked.iter().any(|o| o.action == StepAction::Escalate);
        if !escalating && !picked.iter().any(|o| &o.step_id == id) && *day <= d {
            picked.retain(|o| o.action != StepAction::Remind);
            if let Some(o) = track.iter().find(|o| &o.step_id == id) {
                picked.push(o.clone());
            }
        }
    }

    // The fee track.
    let mut fee_candidate: Option<(String, FeeQuote, i64)> = None;
    let fee_step = policy
        .steps
        .iter()
        .find(|s| s.action == StepAction::LateFee);
    if let (Some(fee), Some(step)) = (&policy.late_fee, fee_step) {
        if let Some((period, start)) = fee.period_on(d, step.day) {
            let id = format!("{}/p{period}", step.id);
            let before_escalation = policy.escalation_day.is_none_or(|e| start < e);
            if !before_escalation {
                // Fees stop with escalation; the escalation step handles the invoice.
            } else if let Some(r) = done.get(&key(ActionKind::LateFee, &id)) {
                if picked.is_empty() {
                    notes.push(skip(
                        Some(id),
                        SkipCode::AlreadyDone,
                        format!(
                            "late fee period {period} already charged on {}",
                            local(r.at)
                        ),
                    ));
                }
            } else if d - start > horizon {
                notes.push(skip(
                    Some(id),
                    SkipCode::BeyondHorizon,
                    format!(
                        "late fee period {period} began on {}, {} days ago, beyond the catch-up horizon of {horizon} days",
                        day_text(inv.due_date, start),
                        d - start
                    ),
                ));
            } else {
                let charged: Vec<ChargedFee> = hist
                    .actions
                    .iter()
                    .filter(|r| r.kind == ActionKind::LateFee)
                    .filter_map(|r| {
                        let m = r.fee.filter(|m| m.currency == inv.currency)?;
                        Some(ChargedFee {
                            period: r.period.unwrap_or(0),
                            amount: m.amount,
                            on: local(r.at),
                        })
                    })
                    .collect();
                let input = FeeInput {
                    currency: inv.currency,
                    invoice_total: inv.total,
                    amount_due: inv.amount_due,
                    due_date: inv.due_date,
                    as_of: today,
                    period,
                    balance_history: &hist.balance_history,
                    fees_charged: &charged,
                    is_fee_invoice: inv.is_fee_invoice,
                };
                match quote_fee(fee, &input) {
                    Ok(q) => fee_candidate = Some((id, q, start)),
                    Err(no) => notes.push(skip(
                        Some(id),
                        SkipCode::NoFee,
                        format!("late fee step: {}", no.explanation),
                    )),
                }
            }
        }
    }

    // Messages.
    let next_step = next_step_text(policy, inv, &track, d);
    let fee_notice = match (&fee_candidate, latest_fee(hist)) {
        (Some((_, q, _)), _) => format!(
            "A late payment fee of {} has been added today, as set out in our payment terms.",
            q.amount
        ),
        (None, Some((m, at))) => format!(
            "A late payment fee of {m} was added on {}, as set out in our payment terms.",
            long_date(local(at))
        ),
        (None, None) => String::new(),
    };
    let fee_text = match (&fee_candidate, latest_fee(hist)) {
        (Some((_, q, _)), _) => q.amount.to_string(),
        (None, Some((m, _))) => m.to_string(),
        (None, None) => "none".into(),
    };
    let (pay_link, pay_line) = match inv.pay_url.as_deref().filter(|u| !u.trim().is_empty()) {
        Some(u) => (
            u.to_string(),
            format!("You can pay online at {u}, or by any of the methods shown on the invoice."),
        ),
        None => (
            String::new(),
            "Payment details are shown on the invoice.".to_string(),
        ),
    };
    let ctx = MessageContext {
        customer_name: inv.customer.name.clone(),
        customer_email: inv
            .customer
            .email
            .clone()
            .unwrap_or_else(|| "no email on file".into()),
        invoice_number: inv.display_number().to_string(),
        amount_due: inv.due_money().to_string(),
        invoice_total: inv.total_money().to_string(),
        due_date: long_date(inv.due_date),
        days_overdue: d.to_string(),
        today: long_date(today),
        fee: fee_text,
        fee_notice,
        next_step,
        pay_link,
        pay_line,
        promise_date: hist
            .promise
            .as_ref()
            .map(|p| long_date(p.until))
            .unwrap_or_default(),
    };
    let render = |template: &str| -> Result<RenderedMessage, PlanError> {
        let t = policy
            .template(template)
            .ok_or_else(|| PlanError::MissingTemplate {
                policy: policy.name.clone(),
                template: template.to_string(),
            })?;
        render_message(t, &ctx).map_err(|error| PlanError::Template {
            policy: policy.name.clone(),
            template: template.to_string(),
            error,
        })
    };
    let when = |day: i64| -> String {
        let due_on = day_text(inv.due_date, day);
        let rel = if d < 0 {
            format!("due in {} days", -d)
        } else if d == 0 {
            "due today".into()
        } else {
            format!("{d} days overdue")
        };
        if d > day {
            format!("{rel}; due on {due_on}, caught up {} day(s) late", d - day)
        } else {
            format!("{rel}; due on {due_on}")
        }
    };
    let base = |kind: ActionKind, step_id: &str, channel: Channel, reason: String| PlannedAction {
        connection: inv.connection.clone(),
        invoice_id: inv.remote_id.clone(),
        invoice_number: inv.display_number().to_string(),
        customer_id: inv.customer.id.clone(),
        kind,
        step_id: step_id.to_string(),
        key: key(kind, step_id),
        channel,
        policy: policy.name.clone(),
        days_overdue: d,
        message: None,
        template: None,
        context: None,
        ledger_text: None,
        fee: None,
        fee_posting: None,
        reason,
    };

    let mut candidates = Vec::new();
    if let Some((id, q, start)) = fee_candidate {
        let mut a = base(
            ActionKind::LateFee,
            &id,
            Channel::Ledger,
            format!(
                "late fee period {} ({}): {}",
                q.period,
                when(start),
                q.explanation
            ),
        );
        a.ledger_text = Some(format!(
            "Late payment fee on invoice {} ({d} days overdue)",
            inv.display_number()
        ));
        a.fee_posting = policy.late_fee.as_ref().map(|f| f.posting);
        a.fee = Some(q);
        candidates.push(Candidate {
            action: a,
            email_reminder: false,
        });
    }
    for o in &picked {
        for (kind, channel, template) in expand(o) {
            if done.contains_key(&key(kind, &o.step_id)) {
                continue;
            }
            let template = template.or(o.template.clone());
            let mut a = base(
                kind,
                &o.step_id,
                channel,
                format!("{} ({})", o.label, when(o.day)),
            );
            match kind {
                ActionKind::Note => {
                    a.ledger_text = template
                        .as_deref()
                        .map(render)
                        .transpose()?
                        .map(|m| m.body.trim_end().to_string())
                }
                _ => {
                    a.message = template.as_deref().map(render).transpose()?;
                    if a.message.is_some() {
                        a.template = template.clone();
                        a.context = Some(ctx.clone());
                    }
                }
            }
            candidates.push(Candidate {
                email_reminder: kind == ActionKind::Remind && channel.to_customer(),
                action: a,
            });
        }
    }

    let mut skipped = notes;
    if candidates.is_empty() && skipped.is_empty() {
        let first = track.iter().map(|o| o.day).min();
        let reason = match first {
            Some(f) if f > d => format!("not yet due: first step on {}", day_text(inv.due_date, f)),
            _ => "no step due".into(),
        };
        skipped.push(skip(None, SkipCode::NotYetDue, reason));
    }
    Ok(Evaluated {
        candidates,
        skipped,
        policy: Some(policy.name.clone()),
    })
}

/// The planned actions one occurrence stands for: escalation also writes a ledger note.
fn expand(o: &Occurrence) -> Vec<(ActionKind, Channel, Option<String>)> {
    match o.action {
        StepAction::Escalate => vec![
            (
                ActionKind::Note,
                Channel::Ledger,
                Some("escalation_note".into()),
            ),
            (ActionKind::Escalate, o.channel, None),
        ],
        a => vec![(a.kind(), o.channel, None)],
    }
}

/// The reminder track: every non-fee step, then repeats of the last reminder up to the
/// limit, before escalation, and far enough past `today_day` to say what comes next.
fn reminder_track(policy: &CompiledPolicy, today_day: i64) -> Vec<Occurrence> {
    let mut out: Vec<Occurrence> = policy
        .steps
        .iter()
        .filter(|s| s.action != StepAction::LateFee)
        .map(|s| Occurrence {
            day: s.day,
            step_id: s.id.clone(),
            action: s.action,
            template: s.template.clone(),
            channel: s.channel,
            label: format!("step {}", s.id),
        })
        .collect();
    if let (Some(r), Some(last)) = (
        &policy.repeat,
        policy
            .steps
            .iter()
            .rev()
            .find(|s| s.action == StepAction::Remind),
    ) {
        let every = i64::from(r.every_days.max(1));
        let mut n: u32 = 1;
        loop {
            let day = last.day + i64::from(n) * every;
            if r.max.is_some_and(|m| n > m)
                || policy.escalation_day.is_some_and(|e| day >= e)
                || day > today_day.max(last.day) + every
            {
                break;
            }
            out.push(Occurrence {
                day,
                step_id: format!("{}/r{n}", last.id),
                action: StepAction::Remind,
                template: last.template.clone(),
                channel: last.channel,
                label: format!("repeat {n} of step {}", last.id),
            });
            n += 1;
        }
    }
    out.sort_by_key(|o| o.day);
    out
}

/// "What happens next", for the customer: the next reminder, fee or escalation after today.
fn next_step_text(
    policy: &CompiledPolicy,
    inv: &InvoiceSnapshot,
    track: &[Occurrence],
    d: i64,
) -> String {
    let next_reminder = track
        .iter()
        .filter(|o| o.day > d && !o.step_id.starts_with("promise/"))
        .find(|o| {
            o.action == StepAction::Escalate
                || (o.action == StepAction::Remind && o.channel.to_customer())
        });
    let next_fee = match (
        &policy.late_fee,
        policy
            .steps
            .iter()
            .find(|s| s.action == StepAction::LateFee),
    ) {
        (Some(fee), Some(step))
            if !inv.is_fee_invoice && fee.min_invoice_amount.is_none_or(|m| inv.total >= m) =>
        {
            let day = match fee.period_on(d, step.day) {
                None => Some(fee.period_start(0, step.day)),
                Some((p, _)) if fee.every_days.is_some() => Some(fee.period_start(p + 1, step.day)),
                Some(_) => None,
            };
            day.filter(|day| policy.escalation_day.is_none_or(|e| *day < e))
                .map(|day| (day, fee.describe(inv.currency, inv.due_date)))
        }
        _ => None,
    };
    let date = |day: i64| long_date(day_text(inv.due_date, day));
    match (next_reminder, next_fee) {
        (r, Some((fday, desc))) if r.is_none_or(|r| fday <= r.day) => {
            format!("If the invoice is still unpaid on {}, {desc} will be added, as set out in our payment terms.", date(fday))
        }
        (Some(r), _) if r.action == StepAction::Escalate => {
            format!(
                "If the invoice is still unpaid on {}, we will refer it for collection.",
                date(r.day)
            )
        }
        (Some(r), _) => format!(
            "If payment has not reached us by {}, we will write to you again.",
            date(r.day)
        ),
        (None, _) => String::new(),
    }
}

fn latest_fee(hist: &InvoiceHistory) -> Option<(Money, DateTime<Utc>)> {
    hist.actions
        .iter()
        .filter(|r| r.kind == ActionKind::LateFee)
        .filter_map(|r| r.fee.map(|m| (m, r.at)))
        .max_by_key(|(_, at)| *at)
}

#[cfg(test)]
pub(crate) mod tests_support {
    use chrono::TimeZone;
    use overdued_connector::{Currency, CustomerRef, System};

    use super::*;

    pub fn invoice(id: &str, customer: &str, total: i64) -> InvoiceSnapshot {
        InvoiceSnapshot {
            connection: ConnectionId::new("acme-qbo"),
            system: System::QuickBooks,
            remote_id: id.into(),
            number: Some(format!("10{id}")),
            customer: CustomerRef {
                id: customer.into(),
                name: format!("Customer {customer}"),
                email: Some(format!("ap@c{customer}.example")),
            },
            currency: Currency::USD,
            total: Decimal::from(total),
            amount_due: Decimal::from(total),
            issue_date: NaiveDate::from_ymd_opt(2026, 10, 1).unwrap(),
            due_date: NaiveDate::from_ymd_opt(2026, 10, 31).unwrap(),
            status: InvoiceStatus::Open,
            updated_at: Utc.with_ymd_and_hms(2026, 10, 1, 10, 0, 0).unwrap(),
            version: None,
            memo: String::new(),
            is_fee_invoice: false,
            pay_url: Some("https://pay.example/x".into()),
        }
    }

    /// What the executor journals after carrying out an action.
    pub fn record(a: &PlannedAction, at: DateTime<Utc>) -> ActionRecord {
        ActionRecord {
            kind: a.kind,
            step_id: a.step_id.clone(),
            key: a.key.clone(),
            at,
            fee: a.fee.as_ref().map(|f| f.amount),
            period: a.fee.as_ref().map(|f| f.period),
        }
    }
}
