//! Sending reminders by SMTP exactly once, or at most once where SMTP cannot say.
//!
//! SMTP has no idempotency key. Each action's send has its own journal record (key
//! `smtp:ACTION_KEY`, connection `CONNECTION/smtp`), written durably *before* the
//! message goes out (state `intent`: "send attempted") and again after the server's
//! answer (`done` with the Message-ID, or `failed` when the server refused it, which
//! means nothing was accepted and a retry is safe).
//!
//! The trade-off, chosen deliberately: a record still at `intent` when overdued starts
//! again means a crash (or a broken connection) came between the attempt and its
//! outcome. The message may have been delivered. It is counted as sent ("sent, outcome
//! unknown"), written to the audit log, and **never resent**: a missed reminder is
//! caught up by the next step a week later, while a duplicate is exactly what users of
//! dunning tools complain about most. The one message that can be lost is one whose
//! attempt was recorded but whose connection never began; [`deliver`] makes that window
//! small by checking the server answers before recording the attempt.
//!
//! Messages also carry a Message-ID derived from the action keys, so a receiving
//! system that de-duplicates by Message-ID drops any repeat too.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use lettre::message::Mailbox;
use overdued_connector::{Clock, IdempotencyKey, InvoiceSnapshot, Money};
use tracing::{info, warn};

use super::message::{build, message_id};
use super::smtp::{Mailer, SendError};
use super::templates::{CurrencyTotal, StatementContext, StatementLine, StepContext};
use crate::engine::dates::long_date;
use crate::engine::templates::MessageContext;
use crate::store::{
    AuditEvent, JournalEntry, JournalPayload, JournalState, SmtpSend, Store, StoreError,
};

/// How the SMTP part of one action ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The server accepted it (now, or in an earlier run when `replayed`).
    Sent { message_id: String, replayed: bool },
    /// Attempted, outcome lost: counted as sent, never resent.
    SentUnknown { message_id: String },
    /// Not sent; `retry` says whether a later cycle may try again.
    Failed { error: String, retry: bool },
}

/// A reminder due to go by SMTP, already checked fresh (open, same balance, no hold).
#[derive(Debug, Clone)]
pub struct Pending {
    pub entry: JournalEntry,
    pub snapshot: InvoiceSnapshot,
    pub template: Option<String>,
    pub context: Option<MessageContext>,
    /// The message as the engine rendered it, used when no template file has the id.
    pub subject: String,
    pub body: String,
}

fn record_connection(connection: &str) -> String {
    format!("{connection}/smtp")
}

/// One message to send and the actions it stands for.
struct Unit {
    members: Vec<Pending>,
    to: Vec<Mailbox>,
    rendered: Result<super::Rendered, String>,
    /// For a statement, how many invoices it lists.
    statement: Option<usize>,
}

/// Sends what `pending` asks for, grouping a customer's reminders into one statement,
/// and returns each action's delivery by action key.
pub async fn deliver(
    mailer: &Mailer,
    store: &dyn Store,
    clock: &dyn Clock,
    today: NaiveDate,
    pending: Vec<Pending>,
) -> Result<HashMap<IdempotencyKey, Delivery>, StoreError> {
    let mut out = HashMap::new();
    let mut to_send: Vec<Pending> = Vec::new();
    for p in pending {
        match store.get_journal(&IdempotencyKey::smtp_send(&p.entry.key))? {
            Some(r) => match r.state {
                JournalState::Done { ref created_id, .. } => {
                    out.insert(
                        p.entry.key.clone(),
                        Delivery::Sent {
                            message_id: created_id.clone().unwrap_or_default(),
                            replayed: true,
                        },
                    );
                }
                JournalState::Intent => {
                    let mid = settle_unknown(
                        store,
                        clock,
                        r,
                        "overdued stopped before the outcome was recorded",
                    )?;
                    out.insert(
                        p.entry.key.clone(),
                        Delivery::SentUnknown { message_id: mid },
                    );
                }
                _ => to_send.push(p),
            },
            None => to_send.push(p),
        }
    }
    if to_send.is_empty() {
        return Ok(out);
    }

    let units = plan_units(mailer, store, today, to_send)?;
    let mut reachable: Option<Result<(), SendError>> = None;
    for unit in units {
        let keys: Vec<&str> = unit.members.iter().map(|m| m.entry.key.as_str()).collect();
        let rendered = match (&unit.rendered, unit.to.is_empty()) {
            (_, true) => {
                let error = format!(
                    "customer {} has no usable email address in the ledger",
                    unit.members[0].snapshot.customer.name
                );
                fail_all(&mut out, &unit.members, &error, false);
                continue;
            }
            (Err(e), _) => {
                fail_all(&mut out, &unit.members, &format!("template: {e}"), false);
                continue;
            }
            (Ok(r), _) => r,
        };
        let mid = message_id(&keys, &mailer.settings.from);
        let msg = match build(&mailer.envelope(unit.to.clone()), rendered, &mid) {
            Ok(m) => m,
            Err(e) => {
                fail_all(&mut out, &unit.members, &e.to_string(), false);
                continue;
            }
        };
        // Only once the server answers is the attempt recorded: an unreachable server
        // leaves nothing that would later count as sent.
        let reach = match &reachable {
            Some(r) => r.clone(),
            None => {
                let r = mailer.reachable().await;
                reachable = Some(r.clone());
                r
            }
        };
        if let Err(e) = reach {
            fail_all(&mut out, &unit.members, &e.to_string(), true);
            continue;
        }
        let to_text = unit
            .to
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let detail = SmtpSend {
            message_id: mid.clone(),
            to: to_text.clone(),
            subject: rendered.subject.clone(),
            statement: unit.statement.is_some(),
            actions: keys.iter().map(|k| k.to_string()).collect(),
        };
        for m in &unit.members {
            store.put_journal(&record(m, &detail, JournalState::Intent, clock))?;
        }
        let result = mailer.send(&msg).await;
        let (state, delivery, audit) = match &result {
            Ok(()) => (
                JournalState::Done {
                    at: clock.now(),
                    created_id: Some(mid.clone()),
                    replayed: false,
                },
                Delivery::Sent {
                    message_id: mid.clone(),
                    replayed: false,
                },
                format!(
                    "emailed {to_text}: {}{} ({mid})",
                    rendered.subject,
                    match unit.statement {
                        Some(n) => format!(", a statement of {n} invoices"),
                        None => String::new(),
                    }
                ),
            ),
            Err(SendError::Unknown(e)) => (
                JournalState::Done {
                    at: clock.now(),
                    created_id: Some(mid.clone()),
                    replayed: true,
                },
                Delivery::SentUnknown {
                    message_id: mid.clone(),
                },
                format!("email to {to_text} ({mid}) may have been delivered: {e}; counted as sent and not repeated"),
            ),
            Err(e) => {
                let retry = !matches!(e, SendError::Refused { permanent: true, .. });
                (
                    JournalState::Failed {
                        at: clock.now(),
                        error: e.to_string(),
                        attempts: 1,
                        retry,
                    },
                    Delivery::Failed {
                        error: e.to_string(),
                        retry,
                    },
                    format!("email to {to_text} not sent: {e}"),
                )
            }
        };
        let first = &unit.members[0].entry;
        for m in &unit.members {
            // One transaction each, so the history never lags the journal.
            store.put_journal_with_audit(
                &record(m, &detail, state.clone(), clock),
                &AuditEvent {
                    at: clock.now(),
                    connection: first.connection.clone(),
                    invoice_id: Some(m.entry.invoice_id.clone()),
                    kind: "email".into(),
                    message: audit.clone(),
                    detail: serde_json::to_value(&detail).unwrap_or_default(),
                },
            )?;
            out.insert(m.entry.key.clone(), delivery.clone());
        }
        match &result {
            Ok(()) => info!(to = %to_text, message_id = %mid, actions = keys.len(), "email sent"),
            Err(e) => warn!(to = %to_text, message_id = %mid, error = %e, "email not sent"),
        }
    }
    Ok(out)
}

fn fail_all(
    out: &mut HashMap<IdempotencyKey, Delivery>,
    members: &[Pending],
    error: &str,
    retry: bool,
) {
    for m in members {
        out.insert(
            m.entry.key.clone(),
            Delivery::Failed {
                error: error.to_string(),
                retry,
            },
        );
    }
}

fn record(m: &Pending, detail: &SmtpSend, state: JournalState, clock: &dyn Clock) -> JournalEntry {
    JournalEntry {
        key: IdempotencyKey::smtp_send(&m.entry.key),
        connection: record_connection(&m.entry.connection),
        invoice_id: m.entry.invoice_id.clone(),
        customer_id: m.entry.customer_id.clone(),
        kind: m.entry.kind,
        step_id: m.entry.step_id.clone(),
        planned_for: m.entry.planned_for,
        created_at: clock.now(),
        expected_amount_due: m.entry.expected_amount_due,
        payload: JournalPayload::SmtpSend(detail.clone()),
        state,
        // The record is the email's own; the action's ledger note is the action's.
        audit_note_done: true,
    }
}

/// Settles a send whose outcome was lost as sent; returns its Message-ID.
fn settle_unknown(
    store: &dyn Store,
    clock: &dyn Clock,
    mut r: JournalEntry,
    why: &str,
) -> Result<String, StoreError> {
    let (mid, to, detail) = match &r.payload {
        JournalPayload::SmtpSend(s) => (
            s.message_id.clone(),
            s.to.clone(),
            serde_json::to_value(s).unwrap_or_default(),
        ),
        // An SMTP key always names an SMTP send; a record that does not is counted as
        // sent all the same, since a repeat is the one outcome never acceptable.
        _ => (String::new(), String::new(), serde_json::Value::Null),
    };
    r.state = JournalState::Done {
        at: clock.now(),
        created_id: Some(mid.clone()),
        replayed: true,
    };
    warn!(message_id = %mid, to = %to, "email outcome unknown ({why}); counted as sent, not resent");
    let audit = AuditEvent {
        at: clock.now(),
        connection: r
            .connection
            .strip_suffix("/smtp")
            .unwrap_or(&r.connection)
            .to_string(),
        invoice_id: Some(r.invoice_id.clone()),
        kind: "email".into(),
        message: format!(
            "email to {to} ({mid}) was being sent when {why}; it may have been delivered, so it is counted as sent and not repeated"
        ),
        detail,
    };
    store.put_journal_with_audit(&r, &audit)?;
    Ok(mid)
}

/// The customer's addresses as the ledger holds them ("a@x.com, b@y.com").
fn recipients(s: &InvoiceSnapshot) -> Vec<Mailbox> {
    let Some(raw) = s.customer.email.as_deref() else {
        return Vec::new();
    };
    raw.split([',', ';'])
        .filter_map(|a| a.trim().parse::<lettre::Address>().ok())
        .map(|a| Mailbox::new(Some(s.customer.name.clone()), a))
        .collect()
}

fn plan_units(
    mailer: &Mailer,
    store: &dyn Store,
    today: NaiveDate,
    pending: Vec<Pending>,
) -> Result<Vec<Unit>, StoreError> {
    let mut by_customer: BTreeMap<(String, String), Vec<Pending>> = BTreeMap::new();
    for p in pending {
        by_customer
            .entry((p.entry.connection.clone(), p.entry.customer_id.clone()))
            .or_default()
            .push(p);
    }
    let sender = mailer.sender_name();
    let mut units = Vec::new();
    for ((connection, customer), members) in by_customer {
        let to = recipients(&members[0].snapshot);
        let listing = if mailer.settings.statements {
            statement_listing(store, &connection, &customer, today, &members)?
        } else {
            Vec::new()
        };
        if listing.len() > 1 {
            let ctx = statement_context(&members, &listing, today, &sender);
            units.push(Unit {
                rendered: mailer
                    .templates
                    .render("statement", &ctx)
                    .map_err(|e| e.to_string()),
                members,
                to,
                statement: Some(listing.len()),
            });
            continue;
        }
        for m in members {
            let rendered = match (&m.template, &m.context) {
                (Some(t), Some(c)) if mailer.templates.has(t) => mailer
                    .templates
                    .render(t, &StepContext::from_message(c, &sender)),
                _ => mailer.templates.plain(&m.subject, &m.body),
            }
            .map_err(|e| e.to_string());
            units.push(Unit {
                rendered,
                members: vec![m],
                to: to.clone(),
                statement: None,
            });
        }
    }
    Ok(units)
}

/// Every invoice a statement lists: the ones acted on now (as just re-read) and the
/// customer's other open invoices already due.
fn statement_listing(
    store: &dyn Store,
    connection: &str,
    customer: &str,
    today: NaiveDate,
    members: &[Pending],
) -> Result<Vec<InvoiceSnapshot>, StoreError> {
    let mut by_id: BTreeMap<String, InvoiceSnapshot> = members
        .iter()
        .map(|m| (m.snapshot.remote_id.clone(), m.snapshot.clone()))
        .collect();
    store.for_each_invoice(connection, &mut |r| {
        let s = r.snapshot;
        if s.customer.id == customer
            && s.status.is_open()
            && s.amount_due > rust_decimal::Decimal::ZERO
            && s.due_date <= today
        {
            by_id.entry(s.remote_id.clone()).or_insert(s);
        }
        true
    })?;
    let mut list: Vec<InvoiceSnapshot> = by_id.into_values().collect();
    list.sort_by(|a, b| {
        a.due_date
            .cmp(&b.due_date)
            .then_with(|| a.display_number().cmp(b.display_number()))
    });
    Ok(list)
}

fn statement_context(
    members: &[Pending],
    listing: &[InvoiceSnapshot],
    today: NaiveDate,
    sender: &str,
) -> StatementContext {
    let first = &members[0].snapshot;
    let mut totals: BTreeMap<String, Money> = BTreeMap::new();
    for s in listing {
        let t = totals
            .entry(s.currency.code().to_string())
            .or_insert_with(|| Money::zero(s.currency));
        *t = Money::new(t.amount + s.amount_due, s.currency);
    }
    let mut notices: Vec<String> = Vec::new();
    for m in members {
        if let Some(c) = &m.context {
            for n in [&c.fee_notice, &c.next_step] {
                let n = n.trim();
                if !n.is_empty() && !notices.iter().any(|x| x == n) {
                    notices.push(n.to_string());
                }
            }
        }
    }
    StatementContext {
        customer_name: first.customer.name.clone(),
        customer_email: first.customer.email.clone().unwrap_or_default(),
        today: long_date(today),
        invoices: listing
            .iter()
            .map(|s| StatementLine {
                invoice_number: s.display_number().to_string(),
                amount_due: s.due_money().to_string(),
                due_date: long_date(s.due_date),
                days_overdue: s.days_overdue(today),
                pay_link: s.pay_url.clone().unwrap_or_default(),
            })
            .collect(),
        totals: totals
            .into_iter()
            .map(|(currency, amount)| CurrencyTotal {
                currency,
                amount: amount.to_string(),
            })
            .collect(),
        notices,
        sender_name: sender.to_string(),
    }
}
