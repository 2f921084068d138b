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
    ActionKind, ConnectionId, FeePosting, IdempotencyKey, InvoiceSnapshot, Money,
};

pub use crate::engine::fees::BalanceChange;
use crate::engine::fees::FeeQuote;
use crate::engine::policy::{Channel, CompiledPolicy, EngineSettings, PolicyBook, StepAction};
use crate::engine::templates::{MessageContext, RenderedMessage, TemplateError};
use crate::engine::window::WindowState;

mod arrangement;
mod conduct;
mod fees;
mod gates;
mod messages;
mod promise;
mod reminders;
mod summary;

pub use arrangement::{missed_step, ArrangementCase};
pub use conduct::CATCH_UP;
pub use summary::{adoption_summary, AdoptionSummary, AGE_BANDS};

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
    /// When overdued first saw the invoice; first seen past due, it is adopted.
    #[serde(default)]
    pub first_seen_at: Option<DateTime<Utc>>,
    /// An escalated invoice taken back into the ladder (`overdued resume`, or a promise
    /// on it): the local date reminders start again.
    #[serde(default)]
    pub chasing_resumed_on: Option<NaiveDate>,
    /// The payment plan covering the invoice, if any (the latest).
    #[serde(default)]
    pub arrangement: Option<ArrangementCase>,
    /// The customer's payer profile ([`crate::profiles`]), when judged: policies may
    /// select by it and templates may use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer_profile: Option<crate::profiles::PayerProfile>,
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
    /// The ledger the invoices are in ([`overdued_connector::ledger_scope`]): what keys
    /// are derived from, so a renamed connection keeps them.
    pub ledger: &'a str,
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
    /// Always written (`null` without a message): `plan --json` keeps it per action.
    #[serde(default)]
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
    /// Held back until the customer has been told in time (`notice_days`), or until the
    /// first contact's catch-up has gone out; it comes later.
    AwaitingNotice,
    /// A late-fee invoice, reminded in the messages of the open invoice it belongs to.
    WithOriginal,
    /// A message to a customer with no email address anywhere in the ledger: no request
    /// the system would refuse is made; the owner is asked to call instead.
    NoEmail,
    /// Covered by a payment plan that is being kept: only the plan's own messages go.
    ArrangementActive,
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
    /// Its message is still to be rendered, from `template` and `context`.
    render: bool,
}

struct Evaluated<'p> {
    candidates: Vec<Candidate>,
    skipped: Vec<Skipped>,
    policy: Option<&'p CompiledPolicy>,
}

/// Decides what to do now. Pure: the same inputs always give the same plan.
pub fn plan(inputs: &PlanInputs<'_>) -> Result<Plan, PlanError> {
    let tz = inputs.time_zone;
    let today = inputs.now.with_timezone(&tz).date_naive();
    if inputs.policies.get(inputs.default_policy).is_none() {
        return Err(PlanError::UnknownPolicy(inputs.default_policy.to_string()));
    }

    let mut skipped = Vec::new();
    // The send window's skips follow the evaluation's, as they always have: the final
    // sort is stable, so where keys tie the order they were found in decides.
    let mut window_skipped = Vec::new();
    // Candidates inside their window, with their policy and whether they are an email
    // reminder (which the daily limit counts); one vector, in evaluation order.
    let mut open: Vec<PlannedAction> = Vec::new();
    let mut open_of: Vec<(&CompiledPolicy, bool, bool)> = Vec::new();
    // The send window, per policy (evaluated once per policy: finding the next opening
    // scans minutes).
    let mut closed_why: BTreeMap<&str, Option<String>> = BTreeMap::new();
    let related = Related::index(inputs.invoices);
    for case in inputs.invoices {
        let ev = evaluate(inputs, case, today, &related)?;
        skipped.extend(ev.skipped);
        let Some(policy) = ev.policy else { continue };
        if ev.candidates.is_empty() {
            continue;
        }
        let why = closed_why
            .entry(policy.name.as_str())
            .or_insert_with(|| window_closed_why(inputs, policy));
        match why {
            None => {
                for c in ev.candidates {
                    open_of.push((policy, c.email_reminder, c.render));
                    open.push(c.action);
                }
            }
            Some(why) => {
                for c in ev.candidates {
                    window_skipped.push(skip_from(
                        &c.action,
                        SkipCode::OutsideWindow,
                        format!("would {} ({}) but {why}", c.action.kind, c.action.reason),
                    ));
                }
            }
        }
    }
    skipped.append(&mut window_skipped);
    drop(window_skipped);

    // At most N reminders a customer a day, most overdue first (ties in the order found).
    let mut by_urgency: Vec<(std::cmp::Reverse<i64>, &str, &str, u32)> = open
        .iter()
        .enumerate()
        .map(|(i, a)| {
            (
                std::cmp::Reverse(a.days_overdue),
                a.invoice_id.as_str(),
                a.step_id.as_str(),
                index(i),
            )
        })
        .collect();
    by_urgency.sort_unstable();
    let mut sent_today: BTreeMap<(&str, &str), u32> = BTreeMap::new();
    let mut seen_keys: BTreeSet<&IdempotencyKey> = BTreeSet::new();
    for case in inputs.invoices {
        for r in &case.history.actions {
            if r.kind == ActionKind::Remind
                && r.at.with_timezone(&tz).date_naive() == today
                && seen_keys.insert(&r.key)
            {
                *sent_today
                    .entry((
                        case.invoice.connection.as_str(),
                        case.invoice.customer.id.as_str(),
                    ))
                    .or_default() += 1;
            }
        }
    }
    drop(seen_keys);
    // A customer's reminders by our own email in one run go out as one message (a
    // statement), so after the first they add no message to the day's count.
    let mut in_statement: BTreeSet<(&str, &str)> = BTreeSet::new();
    // Each kept action's place in that order, the tie-break of the final sort.
    let mut kept: Vec<Option<u32>> = vec![None; open.len()];
    for (rank, &(_, _, _, i)) in by_urgency.iter().enumerate() {
        let a = &open[i as usize];
        let (policy, email_reminder, _) = open_of[i as usize];
        if email_reminder {
            let who = (a.connection.as_str(), a.customer_id.as_str());
            if !(a.channel == Channel::Smtp && in_statement.contains(&who)) {
                let limit = policy.max_reminders_per_customer_per_day;
                let count = sent_today.entry(who).or_default();
                if limit > 0 && *count >= limit {
                    skipped.push(skip_from(
                        a,
                        SkipCode::CustomerLimit,
                        format!("customer already reminded {count} time(s) today (limit {limit}, most overdue first); tried again tomorrow"),
                    ));
                    continue;
                }
                *count += 1;
                if a.channel == Channel::Smtp {
                    in_statement.insert(who);
                }
            }
        }
        kept[i as usize] = Some(index(rank));
    }
    drop((by_urgency, in_statement, sent_today));
    // Messages only for what goes: in evaluation order, so the first failure is the
    // one an eager render would have met first among them.
    for ((a, &(policy, _, render)), rank) in open.iter_mut().zip(&open_of).zip(&kept) {
        if rank.is_none() {
            // Held back: its context goes now, before the kept messages are rendered.
            a.context = None;
            continue;
        }
        if let (true, Some(t), Some(ctx)) = (render, a.template.as_deref(), a.context.as_ref()) {
            a.message = Some(messages::render_with(policy, t, ctx)?);
        }
    }
    drop(open_of);

    // Sorted by borrowed keys and indices, then moved once: the actions themselves are
    // large, and comparing tuples of owned strings moved them many times.
    let mut order: Vec<ActionOrder<'_>> = open
        .iter()
        .zip(&kept)
        .enumerate()
        .filter_map(|(i, (a, rank))| {
            Some((
                a.connection.as_str(),
                a.customer_id.as_str(),
                a.invoice_id.as_str(),
                kind_rank(a.kind),
                a.step_id.as_str(),
                (*rank)?,
                index(i),
            ))
        })
        .collect();
    order.sort_unstable();
    let n_kept = order.len();
    let mut to: Vec<u32> = order.iter().map(|o| o.6).collect();
    drop(order);
    to.extend(
        kept.iter()
            .enumerate()
            .filter(|(_, r)| r.is_none())
            .map(|(i, _)| index(i)),
    );
    drop(kept);
    let mut actions = open;
    permute(&mut actions, to);
    actions.truncate(n_kept);

    let mut order: Vec<SkipOrder<'_>> = skipped
        .iter()
        .enumerate()
        .map(|(i, s)| {
            (
                s.connection.as_str(),
                s.customer_id.as_str(),
                s.invoice_id.as_str(),
                s.step_id.as_deref(),
                s.code,
                index(i),
            )
        })
        .collect();
    order.sort_unstable();
    let to: Vec<u32> = order.iter().map(|o| o.5).collect();
    drop(order);
    permute(&mut skipped, to);
    Ok(Plan {
        generated_at: inputs.now,
        time_zone: tz.name().to_string(),
        local_date: today,
        actions,
        skipped,
    })
}

/// Why the policy's send window is closed now, with when it next opens; `None`: open.
fn window_closed_why(inputs: &PlanInputs<'_>, policy: &CompiledPolicy) -> Option<String> {
    let tz = inputs.time_zone;
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
}

/// An action's place in the plan: (connection, customer, invoice, kind rank, step, its
/// place in the daily-limit order, its index).
type ActionOrder<'a> = (&'a str, &'a str, &'a str, u8, &'a str, u32, u32);

/// A skip's place in the plan: (connection, customer, invoice, step, code, its index).
type SkipOrder<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, SkipCode, u32);

/// A position as a sort key: plans are far below 4 billion entries.
fn index(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

/// Reorders `v` in place so that `v[k]` becomes the old `v[to[k]]`; `to` is a
/// permutation of `0..v.len()`.
fn permute<T>(v: &mut [T], mut to: Vec<u32>) {
    debug_assert_eq!(v.len(), to.len());
    for start in 0..v.len() {
        // Follow the cycle through `start`, fixing each position as it is filled.
        let mut cur = start;
        while to[cur] as usize != start {
            let next = to[cur] as usize;
            if next == cur {
                break;
            }
            v.swap(cur, next);
            to[cur] = index(cur);
            cur = next;
        }
        to[cur] = index(cur);
    }
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

/// Why no message can reach the invoice's customer, when the ledger holds no email
/// address for them; `None` when it does.
pub fn no_email_reason(inv: &InvoiceSnapshot) -> Option<String> {
    if inv
        .customer
        .email
        .as_deref()
        .is_some_and(|e| e.contains('@'))
    {
        return None;
    }
    let where_ = match inv.system {
        overdued_connector::System::QuickBooks => {
            "no BillEmail on the invoice and no PrimaryEmailAddr on the customer in QuickBooks"
        }
        overdued_connector::System::Xero => "no email address on the contact in Xero",
    };
    Some(format!(
        "{NO_EMAIL_REASON} for {} ({where_}): call them instead",
        inv.customer.name
    ))
}

/// How every no-email skip begins, so the owner's call list can find them.
pub const NO_EMAIL_REASON: &str = "no email address";

fn day_text(due: NaiveDate, day: i64) -> NaiveDate {
    due + Duration::days(day)
}

/// Late-fee invoices and the invoices they belong to, found by the original's number in
/// the fee invoice's memo (both connectors write "Late fee on [invoice] N").
struct Related<'a> {
    by_number: BTreeMap<(&'a str, &'a str), &'a InvoiceSnapshot>,
    fees_of: BTreeMap<(&'a str, &'a str), Vec<&'a InvoiceSnapshot>>,
}

impl<'a> Related<'a> {
    fn index(cases: &'a [InvoiceCase]) -> Related<'a> {
        let mut by_number = BTreeMap::new();
        let mut fees_of: BTreeMap<(&str, &str), Vec<&InvoiceSnapshot>> = BTreeMap::new();
        // Only the numbers some fee invoice names are ever looked up: most books have
        // few or none, and an entry for every invoice costs a million insertions.
        let mut named: BTreeSet<(&str, &str)> = BTreeSet::new();
        for c in cases {
            let inv = &c.invoice;
            if inv.is_fee_invoice {
                if let Some(n) = fee_original_number(&inv.memo) {
                    named.insert((inv.connection.as_str(), n));
                    if inv.status.is_open() && inv.amount_due > Decimal::ZERO {
                        fees_of
                            .entry((inv.connection.as_str(), n))
                            .or_default()
                            .push(inv);
                    }
                }
            }
        }
        if !named.is_empty() {
            for c in cases {
                let inv = &c.invoice;
                let k = (inv.connection.as_str(), inv.display_number());
                if !inv.is_fee_invoice && named.contains(&k) {
                    by_number.insert(k, inv);
                }
            }
        }
        Related { by_number, fees_of }
    }

    /// The open invoice a fee invoice belongs to.
    fn original_of(&self, fee: &InvoiceSnapshot) -> Option<&'a InvoiceSnapshot> {
        let n = fee_original_number(&fee.memo)?;
        self.by_number
            .get(&(fee.connection.as_str(), n))
            .copied()
            .filter(|o| o.status.is_open() && o.amount_due > Decimal::ZERO)
    }

    fn fees_of(&self, inv: &InvoiceSnapshot) -> Vec<&'a InvoiceSnapshot> {
        self.fees_of
            .get(&(inv.connection.as_str(), inv.display_number()))
            .cloned()
            .unwrap_or_default()
    }
}

/// The original invoice's number in a fee invoice's memo: "Late fee on invoice 1001
/// (QuickBooks Id 7) [overdued-fee]" or "Late fee on INV-0042 [overdued-fee]".
pub fn fee_original_number(memo: &str) -> Option<&str> {
    let rest = &memo[memo.find("Late fee on ")? + "Late fee on ".len()..];
    let rest = rest.strip_prefix("invoice ").unwrap_or(rest);
    rest.split_whitespace()
        .next()
        .filter(|n| !n.starts_with('['))
}

/// What every track reads about one invoice.
pub(super) struct Ctx<'a> {
    pub inv: &'a InvoiceSnapshot,
    /// For an invoice: its open late-fee invoices, reminded in its messages.
    pub fee_invoices: Vec<&'a InvoiceSnapshot>,
    pub hist: &'a InvoiceHistory,
    pub settings: &'a EngineSettings,
    pub tz: Tz,
    pub today: NaiveDate,
    /// Days overdue today.
    pub d: i64,
    pub horizon: i64,
    pub done: BTreeMap<&'a IdempotencyKey, &'a ActionRecord>,
    pub ledger: &'a str,
}

impl Ctx<'_> {
    fn skip(&self, step_id: Option<String>, code: SkipCode, reason: String) -> Skipped {
        Skipped {
            connection: self.inv.connection.clone(),
            invoice_id: self.inv.remote_id.clone(),
            invoice_number: self.inv.display_number().to_string(),
            customer_id: self.inv.customer.id.clone(),
            days_overdue: self.d,
            step_id,
            code,
            reason,
        }
    }

    fn local(&self, t: DateTime<Utc>) -> NaiveDate {
        t.with_timezone(&self.tz).date_naive()
    }

    fn key(&self, kind: ActionKind, step: &str) -> IdempotencyKey {
        IdempotencyKey::derive(self.ledger, &self.inv.remote_id, kind, step)
    }

    fn is_done(&self, kind: ActionKind, step: &str) -> bool {
        // Most invoices have no history: no key to derive to know that.
        !self.done.is_empty() && self.done.contains_key(&self.key(kind, step))
    }
}

/// One invoice, track by track: the gates that stop everything, the promise, the
/// reminders, the fees, then the messages that speak for them.
fn evaluate<'a, 'p>(
    inputs: &PlanInputs<'p>,
    case: &'a InvoiceCase,
    today: NaiveDate,
    related: &Related<'a>,
) -> Result<Evaluated<'p>, PlanError> {
    let cx = Ctx {
        inv: &case.invoice,
        fee_invoices: related.fees_of(&case.invoice),
        hist: &case.history,
        settings: inputs.settings,
        tz: inputs.time_zone,
        today,
        d: case.invoice.days_overdue(today),
        horizon: i64::from(inputs.settings.catch_up_horizon_days),
        done: case.history.actions.iter().map(|r| (&r.key, r)).collect(),
        ledger: inputs.ledger,
    };
    let only = |s: Skipped| {
        Ok(Evaluated {
            candidates: vec![],
            skipped: vec![s],
            policy: None,
        })
    };
    // A late-fee invoice is not chased through a ladder of its own while the invoice it
    // belongs to is open: that invoice's messages remind of both.
    if case.invoice.is_fee_invoice {
        if let Some(o) = related.original_of(&case.invoice) {
            if case.invoice.status.is_open() && case.invoice.amount_due > Decimal::ZERO {
                return only(cx.skip(
                    None,
                    SkipCode::WithOriginal,
                    format!(
                        "late fee for invoice {}: reminded together with it",
                        o.display_number()
                    ),
                ));
            }
        }
    }
    let policy = match gates::policy_for(inputs, &cx)? {
        Ok(p) => p,
        Err(s) => return only(s),
    };
    let plan_missed = match arrangement::gate(&cx, policy)? {
        arrangement::Gate::None => None,
        arrangement::Gate::Running(mut candidates, mut skipped) => {
            // The policy may charge late fees while a plan is kept: the fee track runs
            // as usual (with its notice rule); nothing else does.
            if policy.fees_during_plan {
                let r = reminders::pick(&cx, policy, None);
                let fee = fees::candidate(&cx, policy, &r.contact, true, &mut skipped);
                if fee.is_some() {
                    candidates.extend(messages::candidates(
                        &cx,
                        policy,
                        &r.contact,
                        &r.track,
                        &[],
                        fee,
                    )?);
                }
            }
            return Ok(Evaluated {
                candidates,
                skipped,
                policy: Some(policy),
            });
        }
        arrangement::Gate::Missed(b) => Some(b),
    };
    let promise_broken = match promise::state(&cx) {
        promise::PromiseState::None => None,
        promise::PromiseState::Standing(s) => return only(s),
        promise::PromiseState::Broken(b) => Some(b),
    };
    // A broken plan speaks before a promise made before it.
    let promise_broken = plan_missed.or(promise_broken);
    let reminders = reminders::pick(&cx, policy, promise_broken.as_ref());
    let mut skipped = reminders.notes;
    let fee = fees::candidate(
        &cx,
        policy,
        &reminders.contact,
        reminders.picked.is_empty(),
        &mut skipped,
    );
    let mut candidates = messages::candidates(
        &cx,
        policy,
        &reminders.contact,
        &reminders.track,
        &reminders.picked,
        fee,
    )?;
    if let Some(why) = no_email_reason(cx.inv) {
        candidates.retain(|c| {
            if !c.email_reminder {
                return true;
            }
            skipped.push(skip_from(&c.action, SkipCode::NoEmail, why.clone()));
            false
        });
    }

    if candidates.is_empty() && skipped.is_empty() {
        let first = reminders.track.iter().map(|o| o.day).min();
        let reason = match first {
            Some(f) if f > cx.d => format!(
                "not yet due: first step on {}",
                day_text(cx.inv.due_date, f)
            ),
            _ => "no step due".into(),
        };
        skipped.push(cx.skip(None, SkipCode::NotYetDue, reason));
    }
    Ok(Evaluated {
        candidates,
        skipped,
        policy: Some(policy),
    })
}

#[cfg(test)]
pub(crate) mod tests_support {
    use chrono::TimeZone;
    use overdued_connector::{Currency, CustomerRef, InvoiceStatus, System};

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
            paid_on: None,
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

#[cfg(test)]
mod order_tests {
    use super::permute;

    #[test]
    fn permute_moves_each_element_to_its_sorted_place() {
        // Every permutation of five elements, against the plain gather it replaces.
        let mut perm: Vec<u32> = (0..5).collect();
        let mut seen = 0;
        loop {
            let mut v: Vec<String> = (0..5).map(|i| format!("x{i}")).collect();
            let want: Vec<String> = perm.iter().map(|&i| v[i as usize].clone()).collect();
            permute(&mut v, perm.clone());
            assert_eq!(v, want, "permutation {perm:?}");
            seen += 1;
            // Next permutation in lexicographic order.
            let Some(i) = (0..4).rev().find(|&i| perm[i] < perm[i + 1]) else {
                break;
            };
            let j = (i + 1..5).rev().find(|&j| perm[j] > perm[i]).unwrap();
            perm.swap(i, j);
            perm[i + 1..].reverse();
        }
        assert_eq!(seen, 120);
        let mut empty: Vec<u8> = vec![];
        permute(&mut empty, vec![]);
        assert!(empty.is_empty());
    }
}
