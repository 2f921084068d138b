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

use super::facts::{self, FeeIndex, NotYet, SendFacts, Sources};
use super::message::{build_with, message_id, FileAttachment};
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
    attachments: Vec<FileAttachment>,
}

/// A pending reminder with the facts it is rendered from.
struct Ready {
    p: Pending,
    facts: SendFacts,
}

/// Sends what `pending` asks for, grouping a customer's reminders into one statement,
/// and returns each action's delivery by action key. Every message is rendered from the
/// facts read now (see [`facts`]), not from the plan's texts.
pub async fn deliver(
    mailer: &Mailer,
    store: &dyn Store,
    clock: &dyn Clock,
    today: NaiveDate,
    sources: Sources<'_>,
    pending: Vec<Pending>,
) -> Result<HashMap<IdempotencyKey, Delivery>, StoreError> {
    let mut out = HashMap::new();
    let mut to_send: Vec<Pending> = Vec::new();
    for p in pending {
        match store.get_journal(&IdempotencyKey::smtp_send(p.entry.vendor_key()))? {
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

    let fees = FeeIndex::read(store, &to_send[0].entry.connection)?;
    let mut ready = Vec::new();
    for p in to_send {
        match facts::gather(sources, store, &fees, Some(&p.entry), &p.snapshot, today).await? {
            Ok(facts) => ready.push(Ready { p, facts }),
            Err(NotYet(error)) => {
                warn!(invoice = %p.snapshot.display_number(), %error, "email waits");
                out.insert(p.entry.key.clone(), Delivery::Failed { error, retry: true });
            }
        }
    }
    let units = plan_units(mailer, store, sources, &fees, today, ready, &mut out).await?;
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
        let msg = match build_with(
            &mailer.envelope(unit.to.clone()).dated(clock.now()),
            rendered,
            &mid,
            &unit.attachments,
        ) {
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
                    "emailed {to_text}: {}{}{} ({mid})",
                    rendered.subject,
                    match unit.statement {
                        Some(n) => format!(", a statement of {n} invoices"),
                        None => String::new(),
                    },
                    match unit.attachments.len() {
                        0 => String::new(),
                        1 => ", with the invoice PDF".to_string(),
                        n => format!(", with {n} invoice PDFs"),
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
        key: IdempotencyKey::smtp_send(m.entry.vendor_key()),
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
        ledger: None,
        sent_key: None,
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

#[allow(clippy::too_many_arguments)]
async fn plan_units(
    mailer: &Mailer,
    store: &dyn Store,
    sources: Sources<'_>,
    fees: &FeeIndex,
    today: NaiveDate,
    ready: Vec<Ready>,
    out: &mut HashMap<IdempotencyKey, Delivery>,
) -> Result<Vec<Unit>, StoreError> {
    let mut by_customer: BTreeMap<(String, String), Vec<Ready>> = BTreeMap::new();
    for r in ready {
        by_customer
            .entry((r.p.entry.connection.clone(), r.p.entry.customer_id.clone()))
            .or_default()
            .push(r);
    }
    let sender = mailer.sender_name();
    let mut units = Vec::new();
    'customers: for ((connection, customer), members) in by_customer {
        let to = recipients(&members[0].p.snapshot);
        // A payment plan's messages are about the plan, not a list of what is owed: each
        // goes as written, never folded into a statement.
        let (own, members): (Vec<Ready>, Vec<Ready>) = members
            .into_iter()
            .partition(|m| crate::arrangements::is_plan_template(m.p.template.as_deref()));
        for m in own {
            let rendered = render_one(mailer, &m, today, &sender).map_err(|e| e.to_string());
            units.push(Unit {
                rendered,
                attachments: m.facts.pdf.iter().cloned().collect(),
                members: vec![m.p],
                to: to.clone(),
                statement: None,
            });
        }
        if members.is_empty() {
            continue;
        }
        let listing = if mailer.settings.statements {
            statement_listing(store, &connection, &customer, today, &members)?
        } else {
            Vec::new()
        };
        if listing.len() > 1 {
            // Every listed invoice's facts: the members' as gathered, the others' now.
            let mut listed: Vec<(InvoiceSnapshot, SendFacts, Option<usize>)> = Vec::new();
            for s in listing {
                let member = members
                    .iter()
                    .position(|m| m.p.snapshot.remote_id == s.remote_id);
                let f = match member {
                    Some(i) => members[i].facts.clone(),
                    None => match facts::gather(sources, store, fees, None, &s, today).await? {
                        Ok(f) => f,
                        Err(NotYet(error)) => {
                            warn!(customer = %customer, %error, "statement waits");
                            for m in &members {
                                out.insert(
                                    m.p.entry.key.clone(),
                                    Delivery::Failed {
                                        error: error.clone(),
                                        retry: true,
                                    },
                                );
                            }
                            continue 'customers;
                        }
                    },
                };
                listed.push((s, f, member));
            }
            let ctx = statement_context(&members, &listed, today, &sender);
            let attachments = listed
                .iter()
                .filter_map(|(_, f, _)| f.pdf.clone())
                .collect();
            units.push(Unit {
                rendered: mailer
                    .templates
                    .render("statement", &ctx)
                    .map_err(|e| e.to_string()),
                statement: Some(listed.len()),
                members: members.into_iter().map(|m| m.p).collect(),
                to,
                attachments,
            });
            continue;
        }
        for m in members {
            let rendered = render_one(mailer, &m, today, &sender).map_err(|e| e.to_string());
            units.push(Unit {
                rendered,
                attachments: m.facts.pdf.iter().cloned().collect(),
                members: vec![m.p],
                to: to.clone(),
                statement: None,
            });
        }
    }
    Ok(units)
}

/// The template for the invoice's state now, whatever the plan's day said: never "due
/// today" off the due day, and a first message past the due date is the catch-up.
pub fn template_at_send(planned: &str, days_overdue: i64, earlier_reminders: usize) -> &str {
    const LADDER: &[&str] = &[
        "heads_up",
        "due_today",
        "follow_up",
        "firm",
        "stop_work",
        "final_notice",
    ];
    match planned {
        t if days_overdue > 0 && earlier_reminders == 0 && LADDER.contains(&t) => "catch_up",
        "heads_up" | "due_today" if days_overdue == 0 => "due_today",
        "heads_up" | "due_today" if days_overdue < 0 => "heads_up",
        "heads_up" | "due_today" => "follow_up",
        t => t,
    }
}

/// A step's values, with everything that may have changed since the plan read again.
pub fn context_at_send(
    planned: &MessageContext,
    snapshot: &InvoiceSnapshot,
    facts: &SendFacts,
    today: NaiveDate,
    sender: &str,
) -> StepContext {
    let mut c = StepContext::from_message(planned, sender);
    c.customer_name = snapshot.customer.name.clone();
    c.invoice_number = snapshot.display_number().to_string();
    c.amount_due = snapshot.due_money().display_human().to_string();
    c.invoice_total = snapshot.total_money().display_human().to_string();
    c.due_date = long_date(snapshot.due_date);
    c.days_overdue = snapshot.days_overdue(today);
    c.today = long_date(today);
    c.earlier_reminders = u32::try_from(facts.earlier_reminders.len()).unwrap_or(u32::MAX);
    c.first_reminder_date = facts
        .earlier_reminders
        .first()
        .map(|d| long_date(*d))
        .unwrap_or_default();
    if let Some(fee) = &facts.fee_invoice {
        c.fee_invoice_number = fee.display_number().to_string();
        c.fee_invoice_amount = fee.due_money().display_human().to_string();
        // Charged: the terms were disclosed before; the fee itself is named now.
        c.fee_terms = String::new();
    }
    c.pay_link = facts.pay_link.clone().unwrap_or_default();
    c.payment_instructions = facts.payment_instructions.clone().unwrap_or_default();
    c.pay_line = pay_paragraph(facts);
    c.pdf_attached = facts.pdf.is_some();
    c
}

/// How to pay, as one paragraph, for messages not rendered from a template file.
fn pay_paragraph(facts: &SendFacts) -> String {
    match (&facts.pay_link, &facts.payment_instructions) {
        (Some(l), _) => format!("You can pay online at {l}."),
        (None, Some(i)) => format!("How to pay: {i}"),
        (None, None) => "Payment details are shown on the invoice.".into(),
    }
}

fn render_one(
    mailer: &Mailer,
    m: &Ready,
    today: NaiveDate,
    sender: &str,
) -> Result<super::Rendered, super::TemplateError> {
    match (&m.p.template, &m.p.context) {
        (Some(t), Some(c)) if mailer.templates.has(t) => {
            let ctx = context_at_send(c, &m.p.snapshot, &m.facts, today, sender);
            let id = template_at_send(t, ctx.days_overdue, m.facts.earlier_reminders.len());
            let id = if mailer.templates.has(id) { id } else { t };
            mailer.templates.render(id, &ctx)
        }
        _ => {
            // The policy's own text, written for the plan's day: it goes as written,
            // with how to pay added so no reminder leaves without it.
            let mut body = m.p.body.trim_end().to_string();
            let pay = pay_paragraph(&m.facts);
            let link_there = m
                .facts
                .pay_link
                .as_deref()
                .is_some_and(|l| body.contains(l));
            if !link_there {
                body.push_str("\n\n");
                body.push_str(&pay);
            }
            if m.facts.pdf.is_some() {
                body.push_str("\n\nA copy of the invoice is attached.");
            }
            mailer.templates.plain(&m.p.subject, &body)
        }
    }
}

/// Every invoice a statement lists: the ones acted on now (as just re-read) and the
/// customer's other open invoices already due.
fn statement_listing(
    store: &dyn Store,
    connection: &str,
    customer: &str,
    today: NaiveDate,
    members: &[Ready],
) -> Result<Vec<InvoiceSnapshot>, StoreError> {
    let mut by_id: BTreeMap<String, InvoiceSnapshot> = members
        .iter()
        .map(|m| (m.p.snapshot.remote_id.clone(), m.p.snapshot.clone()))
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
    members: &[Ready],
    listed: &[(InvoiceSnapshot, SendFacts, Option<usize>)],
    today: NaiveDate,
    sender: &str,
) -> StatementContext {
    let first = &members[0].p.snapshot;
    let mut totals: BTreeMap<String, Money> = BTreeMap::new();
    for (s, _, _) in listed {
        let t = totals
            .entry(s.currency.code().to_string())
            .or_insert_with(|| Money::zero(s.currency));
        *t = Money::new(t.amount + s.amount_due, s.currency);
    }
    let mut notices: Vec<String> = Vec::new();
    for m in members {
        if let Some(c) = &m.p.context {
            let n = c.fee_terms.trim();
            if !n.is_empty() && m.facts.fee_invoice.is_none() && !notices.iter().any(|x| x == n) {
                notices.push(n.to_string());
            }
        }
    }
    StatementContext {
        customer_name: first.customer.name.clone(),
        customer_email: first.customer.email.clone().unwrap_or_default(),
        today: long_date(today),
        invoices: listed
            .iter()
            .map(|(s, f, member)| StatementLine {
                invoice_number: s.display_number().to_string(),
                amount_due: s.due_money().display_human().to_string(),
                due_date: long_date(s.due_date),
                days_overdue: s.days_overdue(today),
                pay_link: f.pay_link.clone().unwrap_or_default(),
                late_fee_for: FeeIndex::original_of(s).unwrap_or_default().to_string(),
                escalated: f.escalated_today,
                next_step: member
                    .and_then(|i| members[i].p.context.as_ref())
                    .map(|c| c.next_step.clone())
                    .unwrap_or_default(),
            })
            .collect(),
        totals: totals
            .into_iter()
            .map(|(currency, amount)| CurrencyTotal {
                currency,
                amount: amount.display_human().to_string(),
            })
            .collect(),
        notices,
        sender_name: sender.to_string(),
        any_pay_link: listed.iter().any(|(_, f, _)| f.pay_link.is_some()),
        payment_instructions: members[0]
            .facts
            .payment_instructions
            .clone()
            .unwrap_or_default(),
        pdf_count: listed.iter().filter(|(_, f, _)| f.pdf.is_some()).count(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use overdued_connector::{ConnectionId, Currency, CustomerRef, InvoiceStatus, System};
    use rust_decimal_macros::dec;

    fn snapshot(amount_due: rust_decimal::Decimal, due: NaiveDate) -> InvoiceSnapshot {
        InvoiceSnapshot {
            connection: ConnectionId("books".into()),
            system: System::QuickBooks,
            remote_id: "130".into(),
            number: Some("1037".into()),
            customer: CustomerRef {
                id: "7".into(),
                name: "Sonnenschein Family Store".into(),
                email: Some("ap@sonnenschein.example".into()),
            },
            currency: Currency::USD,
            total: dec!(36262.55),
            amount_due,
            issue_date: due - chrono::Duration::days(30),
            due_date: due,
            status: InvoiceStatus::Open,
            updated_at: chrono::Utc::now(),
            version: None,
            memo: String::new(),
            is_fee_invoice: false,
            pay_url: None,
            paid_on: None,
        }
    }

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn the_template_follows_the_state_at_send_time() {
        assert_eq!(template_at_send("due_today", 0, 1), "due_today");
        assert_eq!(template_at_send("due_today", 6, 1), "follow_up");
        assert_eq!(template_at_send("heads_up", 0, 0), "due_today");
        assert_eq!(template_at_send("firm", 20, 0), "catch_up");
        assert_eq!(template_at_send("final_notice", 61, 0), "catch_up");
        assert_eq!(template_at_send("firm", 20, 2), "firm");
        assert_eq!(template_at_send("promise_broken", 20, 0), "promise_broken");
        assert_eq!(template_at_send("my_own", 20, 0), "my_own");
    }

    #[test]
    fn the_context_is_the_ledger_now_not_the_plan() {
        // Planned on the due day for the full amount; sent three days later after a
        // part-payment, with one reminder and a fee invoice since.
        let mut planned = MessageContext::sample();
        planned.amount_due = "USD 36262.55".into();
        planned.days_overdue = "0".into();
        planned.earlier_reminders = "0".into();
        planned.first_reminder_date = String::new();
        let now = snapshot(dec!(1000.00), d(2026, 10, 31));
        let mut fee = snapshot(dec!(40.00), d(2026, 11, 14));
        fee.number = Some("1037-F".into());
        fee.is_fee_invoice = true;
        let facts = SendFacts {
            earlier_reminders: vec![d(2026, 10, 31)],
            fee_invoice: Some(fee),
            pay_link: None,
            payment_instructions: Some("Bank transfer to 12-34-56 12345678".into()),
            pdf: Some(FileAttachment::invoice_pdf("1037", b"%PDF-1.4".to_vec())),
            escalated_today: false,
        };
        let c = context_at_send(&planned, &now, &facts, d(2026, 11, 3), "Example Ltd");
        assert_eq!(c.amount_due, "USD 1,000.00");
        assert_eq!(c.invoice_total, "USD 36,262.55");
        assert_eq!(c.days_overdue, 3);
        assert_eq!(c.today, "3 November 2026");
        assert_eq!(c.earlier_reminders, 1);
        assert_eq!(c.first_reminder_date, "31 October 2026");
        assert_eq!(c.fee_invoice_number, "1037-F");
        assert_eq!(c.fee_invoice_amount, "USD 40.00");
        assert_eq!(c.fee_terms, "", "a fee charged is named, not announced");
        assert_eq!(c.pay_link, "");
        assert_eq!(c.payment_instructions, "Bank transfer to 12-34-56 12345678");
        assert_eq!(c.pay_line, "How to pay: Bank transfer to 12-34-56 12345678");
        assert!(c.pdf_attached);

        let t = super::super::Templates::built_in();
        let id = template_at_send("due_today", c.days_overdue, 1);
        let r = t.render(id, &c).unwrap();
        assert!(
            r.text.contains("payment of USD 1,000.00 for invoice 1037"),
            "{}",
            r.text
        );
        assert!(r.text.contains("3 days ago"), "{}", r.text);
        assert!(!r.text.contains("due today"), "{}", r.text);
        assert!(
            r.text
                .contains("Invoice 1037-F for USD 40.00 is the late fee for invoice 1037"),
            "{}",
            r.text
        );
        assert!(
            r.text
                .contains("We wrote to you about it on 31 October 2026."),
            "{}",
            r.text
        );
    }
}
