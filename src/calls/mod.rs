//! The calls list: the customers a person should telephone, one entry each, and what to
//! have in front of them when they do. overdued cannot call; it keeps the list, and
//! `overdued called` records what the call settled (see [`outcome`]).
//!
//! Everything here is read from the store (invoices, customer records, journal, holds,
//! audit log), so the CLI and the daemon's admin endpoint compute the same list.

pub mod escalation;
pub mod export;
pub mod outcome;

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc, Weekday};
use overdued_connector::{ActionKind, Currency, Money, Phone};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::config::{Config, ConnectionConfig};
use crate::store::{
    ActionPayload, Hold, HoldTarget, InvoiceRecord, JournalState, Store, StoreError,
};

pub use outcome::{CallOutcome, OutcomeRecord};

/// Why a customer is on the list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum CallReason {
    /// overdued referred the invoice for collection: the owner decides what comes next.
    Escalated { invoice: String, on: NaiveDate },
    /// The policy's `action = "call"` step is due for the invoice.
    CallStep { invoice: String, step: String },
    /// No email address anywhere in the ledger: no reminder can reach them.
    NoEmail,
    /// The customer promised to pay by a date that has passed.
    BrokenPromise { invoice: String, until: NaiveDate },
    /// The customer said they paid (`called --outcome paid`), and a week on the ledger
    /// still shows the invoice unpaid.
    PaymentNotSeen { invoice: String, since: NaiveDate },
}

/// How long a payment the customer says they made may take to reach the ledger before
/// the customer is on the list again.
pub const PAYMENT_SEEN_WITHIN_DAYS: i64 = 7;

impl CallReason {
    pub fn describe(&self) -> String {
        match self {
            CallReason::Escalated { invoice, on } => {
                format!("invoice {invoice} was marked for collection on {on}")
            }
            CallReason::CallStep { invoice, step } => {
                format!("the policy calls for a call on invoice {invoice} (step {step})")
            }
            CallReason::NoEmail => "no email address anywhere in the ledger".into(),
            CallReason::BrokenPromise { invoice, until } => {
                format!("promised to pay invoice {invoice} by {until}, still unpaid")
            }
            CallReason::PaymentNotSeen { invoice, since } => format!(
                "said on {since} that invoice {invoice} was paid; the ledger still shows it unpaid"
            ),
        }
    }
}

/// Why a customer is on the list, in one line: reasons of a kind together
/// ("marked for collection: invoice 1012 (2026-12-15), 1045 (2026-12-16)").
pub fn describe_reasons(reasons: &[CallReason]) -> String {
    let mut parts = Vec::new();
    if reasons.contains(&CallReason::NoEmail) {
        parts.push(CallReason::NoEmail.describe());
    }
    let escalated: Vec<String> = reasons
        .iter()
        .filter_map(|r| match r {
            CallReason::Escalated { invoice, on } => Some(format!("{invoice} ({on})")),
            _ => None,
        })
        .collect();
    if !escalated.is_empty() {
        parts.push(format!(
            "marked for collection: invoice {}",
            escalated.join(", ")
        ));
    }
    let mut steps: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for r in reasons {
        if let CallReason::CallStep { invoice, step } = r {
            steps.entry(step).or_default().push(invoice);
        }
    }
    for (step, invoices) in steps {
        parts.push(format!(
            "the policy's call step {step} is due on invoice {}",
            invoices.join(", ")
        ));
    }
    let broken: Vec<String> = reasons
        .iter()
        .filter_map(|r| match r {
            CallReason::BrokenPromise { invoice, until } => Some(format!("{invoice} (by {until})")),
            _ => None,
        })
        .collect();
    for r in reasons {
        if let CallReason::PaymentNotSeen { .. } = r {
            parts.push(r.describe());
        }
    }
    if !broken.is_empty() {
        parts.push(format!(
            "promised to pay, still unpaid: invoice {}",
            broken.join(", ")
        ));
    }
    parts.join("; ")
}

/// One overdue invoice of a customer on the list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallInvoice {
    pub id: String,
    pub number: String,
    pub due_date: NaiveDate,
    pub days_overdue: i64,
    pub balance: Money,
    pub balance_text: String,
}

/// Something overdued sent (or did) about one of the customer's invoices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentItem {
    pub at: DateTime<Utc>,
    pub invoice: String,
    pub what: String,
}

/// One customer to call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallEntry {
    pub connection: String,
    pub customer_id: String,
    pub name: String,
    pub email: Option<String>,
    pub phones: Vec<Phone>,
    /// What the customer owes on overdue invoices, one amount per currency.
    pub owed: Vec<Money>,
    /// `owed` as people read it ("£1,250.00, €80.00").
    pub owed_text: String,
    pub oldest_days_overdue: i64,
    pub invoices: Vec<CallInvoice>,
    pub sent: Vec<SentItem>,
    pub promises_broken: usize,
    pub reasons: Vec<CallReason>,
    /// The last call's outcome, when one was recorded ("no answer on 2026-11-30").
    pub last_call: Option<String>,
}

/// The customers of one connection to call on `now`'s local day, most overdue first.
pub fn calls_list(
    config: &Config,
    conn: &ConnectionConfig,
    store: &dyn Store,
    now: DateTime<Utc>,
) -> Result<Vec<CallEntry>, StoreError> {
    let name = conn.name.as_str();
    let tz = config.daemon.time_zone;
    let today = now.with_timezone(&tz).date_naive();
    let holds = store.holds(name)?;
    let paused_customers: Vec<&str> = holds
        .iter()
        .filter_map(|(t, h)| match (t, h) {
            (HoldTarget::Customer(c), Hold::Pause { .. }) => Some(c.as_str()),
            _ => None,
        })
        .collect();
    let invoice_hold = |id: &str| -> Vec<&Hold> {
        holds
            .iter()
            .filter_map(|(t, h)| match t {
                HoldTarget::Invoice(i) if i == id => Some(h),
                _ => None,
            })
            .collect()
    };

    let mut by_customer: BTreeMap<String, Vec<InvoiceRecord>> = BTreeMap::new();
    store.for_each_invoice(name, &mut |r| {
        let s = &r.snapshot;
        if s.status.is_open() && s.amount_due > Decimal::ZERO && s.days_overdue(today) > 0 {
            by_customer
                .entry(s.customer.id.clone())
                .or_default()
                .push(r);
        }
        true
    })?;
    let outcomes = outcome::recorded(store, name, now)?;

    let mut out = Vec::new();
    for (customer_id, invoices) in by_customer {
        if paused_customers.contains(&customer_id.as_str()) {
            continue;
        }
        let record = store.get_customer(name, &customer_id)?;
        let first = &invoices[0].snapshot;
        let email = first
            .customer
            .email
            .clone()
            .filter(|e| e.contains('@'))
            .or_else(|| {
                record
                    .as_ref()
                    .and_then(|c| c.email.clone())
                    .filter(|e| e.contains('@'))
            });
        let last = outcomes.get(&customer_id).and_then(|v| v.last());
        // A no-answer keeps the task for the next working day.
        if let Some(o) = last {
            if let CallOutcome::NoAnswer { retry_on } = &o.outcome {
                if *retry_on > today {
                    continue;
                }
            }
        }
        // What the last settled call dealt with is off the list; anything newer is not.
        let settled_at = outcomes
            .get(&customer_id)
            .and_then(|v| {
                v.iter()
                    .rev()
                    .find(|o| !matches!(o.outcome, CallOutcome::NoAnswer { .. }))
            })
            .map(|o| o.at);
        let settled_before = |t: DateTime<Utc>| settled_at.is_some_and(|s| t <= s);
        let day_start = |d: NaiveDate| {
            d.and_hms_opt(0, 0, 0)
                .and_then(|t| t.and_local_timezone(tz).earliest())
                .map_or(now, |t| t.with_timezone(&Utc))
        };

        let mut reasons = Vec::new();
        let mut listed = Vec::new();
        let mut sent = Vec::new();
        let mut promises_broken = 0;
        let mut became_overdue = None;
        for r in &invoices {
            let s = &r.snapshot;
            let id = s.remote_id.as_str();
            let number = s.display_number().to_string();
            let mut held = false;
            let mut paid_not_seen = Vec::new();
            for h in invoice_hold(id) {
                match h {
                    // "Says paid" that the ledger still does not show after a week is
                    // worth a call: the pause would otherwise hold for ever.
                    Hold::Pause { reason, set_at }
                        if reason.starts_with(outcome::SAYS_PAID)
                            && (today - set_at.with_timezone(&tz).date_naive()).num_days()
                                >= PAYMENT_SEEN_WITHIN_DAYS =>
                    {
                        held = true;
                        paid_not_seen.push(CallReason::PaymentNotSeen {
                            invoice: number.clone(),
                            since: set_at.with_timezone(&tz).date_naive(),
                        });
                    }
                    Hold::Pause { .. } => held = true,
                    Hold::Promise { until, .. } if *until >= today => held = true,
                    Hold::Promise { until, .. } => {
                        promises_broken += 1;
                        if !settled_before(day_start(*until + Duration::days(1))) {
                            reasons.push(CallReason::BrokenPromise {
                                invoice: number.clone(),
                                until: *until,
                            });
                        }
                    }
                }
            }
            if held {
                if !paid_not_seen.is_empty() {
                    reasons.append(&mut paid_not_seen);
                    listed.push(CallInvoice {
                        id: id.to_string(),
                        number: number.clone(),
                        due_date: s.due_date,
                        days_overdue: s.days_overdue(today),
                        balance: s.due_money(),
                        balance_text: s.due_money().display_human().to_string(),
                    });
                }
                continue;
            }
            // What the planner leaves alone (excluded by a marker or an override, below
            // the minimum) is no task for a person either.
            let policy = match config.policy_book.resolve(&conn.policy, s) {
                Some(crate::engine::policy::Resolution::Policy { policy, .. }) => policy,
                _ => continue,
            };
            if policy.marker_in(&s.memo).is_some() || s.amount_due < policy.minimum_amount_due {
                continue;
            }
            let journal = store.journal_for_invoice(name, id)?;
            let escalated = journal
                .iter()
                .filter(|e| e.kind == ActionKind::Escalate)
                .filter_map(|e| match e.state {
                    JournalState::Done { at, .. } => Some(at),
                    _ => None,
                })
                .min();
            if let Some(at) = escalated {
                if escalation::resumed_on(store, name, id)?.is_none() && !settled_before(at) {
                    reasons.push(CallReason::Escalated {
                        invoice: number.clone(),
                        on: at.with_timezone(&tz).date_naive(),
                    });
                }
            }
            let days = s.days_overdue(today);
            let escalation_listed = reasons
                .iter()
                .any(|r| matches!(r, CallReason::Escalated { invoice, .. } if *invoice == number));
            // A call step follows the customer's first message as the ladder does: never
            // before overdued has written about the invoice, and for an invoice adopted
            // late, no sooner than the step's gap after that first message. Calling a
            // customer on the day of a courteous catch-up would be firm before courteous.
            let first_contact = journal
                .iter()
                .filter(|e| e.kind == ActionKind::Remind)
                .filter_map(|e| match e.state {
                    JournalState::Done { at, .. } => Some(at.with_timezone(&tz).date_naive()),
                    _ => None,
                })
                .min();
            let call_day = |day: i64| -> Option<NaiveDate> {
                let first = first_contact?;
                let before = policy
                    .steps
                    .iter()
                    .filter(|st| st.action == crate::engine::policy::StepAction::Remind)
                    .map(|st| st.day)
                    .filter(|d| *d < day)
                    .max();
                let gap = before.map_or(0, |b| day - b);
                Some((s.due_date + Duration::days(day)).max(first + Duration::days(gap)))
            };
            // A referral already asks for the call; the step would only repeat it.
            if let Some((step, on)) = policy
                .steps
                .iter()
                .filter(|st| st.action == crate::engine::policy::StepAction::Call)
                .filter(|_| !escalation_listed && !s.is_fee_invoice)
                .filter_map(|st| call_day(st.day).map(|on| (&st.id, on)))
                .filter(|(_, on)| *on <= today)
                .max_by_key(|(_, on)| *on)
            {
                if !settled_before(day_start(on)) {
                    reasons.push(CallReason::CallStep {
                        invoice: number.clone(),
                        step: step.clone(),
                    });
                }
            }
            let overdue_since = s.due_date + Duration::days(1);
            became_overdue = became_overdue.max(Some(overdue_since));
            for e in journal {
                let JournalState::Done { at, .. } = e.state else {
                    continue;
                };
                let what = match e.payload.action() {
                    Some(ActionPayload::Remind { subject, .. }) => format!("reminder: {subject}"),
                    Some(ActionPayload::LateFee { amount, .. }) => {
                        format!("late fee {} charged", amount.display_human())
                    }
                    Some(ActionPayload::Escalate { .. }) => "marked for collection".into(),
                    Some(ActionPayload::Note { .. }) | None => continue,
                };
                sent.push(SentItem {
                    at,
                    invoice: number.clone(),
                    what,
                });
            }
            listed.push(CallInvoice {
                id: id.to_string(),
                number,
                due_date: s.due_date,
                days_overdue: days,
                balance: s.due_money(),
                balance_text: s.due_money().display_human().to_string(),
            });
        }
        if listed.is_empty() {
            continue;
        }
        if email.is_none() && !became_overdue.is_some_and(|d| settled_before(day_start(d))) {
            reasons.insert(0, CallReason::NoEmail);
        }
        if reasons.is_empty() {
            continue;
        }
        reasons.dedup();
        sent.sort_by_key(|s| s.at);
        let mut owed: BTreeMap<Currency, Decimal> = BTreeMap::new();
        for i in &listed {
            *owed.entry(i.balance.currency).or_default() += i.balance.amount;
        }
        let owed: Vec<Money> = owed.into_iter().map(|(c, a)| Money::new(a, c)).collect();
        listed.sort_by_key(|i| std::cmp::Reverse(i.days_overdue));
        out.push(CallEntry {
            connection: name.to_string(),
            customer_id: customer_id.clone(),
            name: record
                .as_ref()
                .map(|c| c.name.clone())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| first.customer.name.clone()),
            email,
            phones: record.map(|c| c.phones).unwrap_or_default(),
            owed_text: owed
                .iter()
                .map(|m| m.display_human().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            owed,
            oldest_days_overdue: listed.first().map_or(0, |i| i.days_overdue),
            invoices: listed,
            sent,
            promises_broken,
            reasons,
            last_call: last.map(|o| o.describe()),
        });
    }
    out.sort_by(|a, b| {
        b.oldest_days_overdue
            .cmp(&a.oldest_days_overdue)
            .then_with(|| a.name.cmp(&b.name))
    });
    Ok(out)
}

/// The next day after `d` that is a working day (Monday to Friday).
pub fn next_working_day(d: NaiveDate) -> NaiveDate {
    let mut n = d + Duration::days(1);
    while matches!(n.weekday(), Weekday::Sat | Weekday::Sun) {
        n += Duration::days(1);
    }
    n
}

/// The list as a person reads it.
pub fn render(entries: &[CallEntry], tz: chrono_tz::Tz, connection: &str) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if entries.is_empty() {
        let _ = writeln!(out, "{connection}: nobody to call today");
        return out;
    }
    let _ = writeln!(
        out,
        "{connection}: {} {} to call",
        entries.len(),
        if entries.len() == 1 {
            "customer"
        } else {
            "customers"
        }
    );
    for e in entries {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{} (id {}): owes {}, oldest {} days overdue",
            e.name, e.customer_id, e.owed_text, e.oldest_days_overdue
        );
        let phones = if e.phones.is_empty() {
            "none in the ledger".to_string()
        } else {
            e.phones
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(out, "  phone:    {phones}");
        let _ = writeln!(
            out,
            "  email:    {}",
            e.email.as_deref().unwrap_or("none in the ledger")
        );
        let _ = writeln!(out, "  why:      {}", describe_reasons(&e.reasons));
        for i in &e.invoices {
            let _ = writeln!(
                out,
                "  invoice {}: {} due {} ({} days overdue)",
                i.number, i.balance_text, i.due_date, i.days_overdue
            );
        }
        if e.promises_broken > 0 {
            let _ = writeln!(out, "  promises broken: {}", e.promises_broken);
        }
        if let Some(c) = &e.last_call {
            let _ = writeln!(out, "  last call: {c}");
        }
        if e.sent.is_empty() {
            let _ = writeln!(out, "  sent:     nothing yet");
        } else {
            // The latest few: what the customer will remember hearing.
            let skip = e.sent.len().saturating_sub(5);
            if skip > 0 {
                let _ = writeln!(out, "  sent:     ({skip} earlier)");
            }
            for s in &e.sent[skip..] {
                let _ = writeln!(
                    out,
                    "  sent {}  invoice {}: {}",
                    s.at.with_timezone(&tz).format("%Y-%m-%d"),
                    s.invoice,
                    s.what
                );
            }
        }
    }
    out
}

/// One line per customer, for `status` and the digest: "Name (owes X; phone)".
pub fn one_line(e: &CallEntry) -> String {
    let phone = e.phones.first().map_or_else(
        || "no phone in the ledger".to_string(),
        |p| p.number.clone(),
    );
    format!("{} (owes {}; {phone})", e.name, e.owed_text)
}

/// The digest's "to call today" lines, one per customer of every enabled connection:
/// "to call today: Name (owes X; phone) [connection]: why".
pub fn digest_lines(
    config: &Config,
    store: &dyn Store,
    now: DateTime<Utc>,
) -> Result<Vec<String>, StoreError> {
    let mut lines = Vec::new();
    for conn in config.connections.iter().filter(|c| c.enabled) {
        for e in calls_list(config, conn, store, now)? {
            let why = describe_reasons(&e.reasons);
            lines.push(format!(
                "to call today: {} [{}]: {why}",
                one_line(&e),
                conn.name
            ));
        }
    }
    Ok(lines)
}

#[cfg(test)]
mod tests;
