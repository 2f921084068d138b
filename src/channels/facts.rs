//! What is true about an invoice at the moment its email goes out, beyond the invoice
//! as just re-read: the reminders the customer already had (from the journal), its open
//! late-fee invoice, how to pay it (the ledger's online link, else the policy's
//! `payment_instructions`) and its PDF, read through the connector at send time.
//!
//! The plan's texts were written for the plan's day; an email may leave later (a retry,
//! a send window) and a part-payment may have come in between, so a message is always
//! rendered again from these facts.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use overdued_connector::{ActionKind, Connector, ConnectorError, ErrorClass, InvoiceSnapshot};
use rust_decimal::Decimal;
use tracing::warn;

use super::message::FileAttachment;
use crate::engine::plan::fee_original_number;
use crate::engine::policy::{PolicyBook, Resolution};
use crate::store::{JournalEntry, JournalPayload, JournalState, Store, StoreError};

/// The policies of a connection, to find the one an invoice falls under.
#[derive(Clone, Copy)]
pub struct PolicyChoice<'a> {
    pub book: &'a PolicyBook,
    /// The connection's policy (its overrides pick the others).
    pub default: &'a str,
}

/// Where the send-time facts come from.
#[derive(Clone, Copy)]
pub struct Sources<'a> {
    pub connector: &'a dyn Connector,
    pub policies: Option<PolicyChoice<'a>>,
}

/// The sending terms of the invoice's policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayTerms {
    pub payment_instructions: Option<String>,
    pub attach_pdf: bool,
}

impl PayTerms {
    pub fn for_invoice(policies: Option<PolicyChoice<'_>>, inv: &InvoiceSnapshot) -> PayTerms {
        Self::for_payer(policies, inv, None)
    }

    /// [`PayTerms::for_invoice`] for a customer whose payer profile may choose the policy.
    pub fn for_payer(
        policies: Option<PolicyChoice<'_>>,
        inv: &InvoiceSnapshot,
        payer: Option<crate::profiles::PayerProfile>,
    ) -> PayTerms {
        let policy =
            policies.and_then(|p| match p.book.resolve_for_payer(p.default, inv, payer)? {
                Resolution::Policy { policy, .. } => Some(policy),
                Resolution::Excluded { .. } => p.book.get(p.default),
            });
        match policy {
            Some(p) => PayTerms {
                payment_instructions: p.payment_instructions.clone(),
                attach_pdf: p.attach_pdf,
            },
            None => PayTerms {
                payment_instructions: None,
                attach_pdf: true,
            },
        }
    }
}

/// The facts one invoice's message is rendered from, besides its snapshot.
#[derive(Debug, Clone, Default)]
pub struct SendFacts {
    /// Days the customer was sent an earlier reminder about the invoice, oldest first.
    pub earlier_reminders: Vec<NaiveDate>,
    /// The invoice's open late-fee invoice, as the store last read it.
    pub fee_invoice: Option<InvoiceSnapshot>,
    /// The ledger's online payment link.
    pub pay_link: Option<String>,
    pub payment_instructions: Option<String>,
    pub pdf: Option<FileAttachment>,
    /// Marked for collection today (an escalation recorded for today).
    pub escalated_today: bool,
}

/// Why facts could not be had now: the message waits for a later cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotYet(pub String);

/// Open late-fee invoices by (customer, the number of the invoice they are for).
#[derive(Debug, Default)]
pub struct FeeIndex(BTreeMap<(String, String), Vec<InvoiceSnapshot>>);

impl FeeIndex {
    /// One pass over the connection's invoices.
    pub fn read(store: &dyn Store, connection: &str) -> Result<FeeIndex, StoreError> {
        let mut map: BTreeMap<(String, String), Vec<InvoiceSnapshot>> = BTreeMap::new();
        store.for_each_invoice(connection, &mut |r| {
            let s = r.snapshot;
            if s.is_fee_invoice && s.status.is_open() && s.amount_due > Decimal::ZERO {
                if let Some(n) = fee_original_number(&s.memo) {
                    map.entry((s.customer.id.clone(), n.to_string()))
                        .or_default()
                        .push(s);
                }
            }
            true
        })?;
        Ok(FeeIndex(map))
    }

    pub fn of(&self, inv: &InvoiceSnapshot) -> Option<&InvoiceSnapshot> {
        self.0
            .get(&(inv.customer.id.clone(), inv.display_number().to_string()))
            .and_then(|v| v.iter().max_by_key(|f| f.issue_date))
    }

    /// The number of the invoice a fee invoice is for.
    pub fn original_of(inv: &InvoiceSnapshot) -> Option<&str> {
        inv.is_fee_invoice
            .then(|| fee_original_number(&inv.memo))
            .flatten()
    }
}

/// The reminders recorded as sent about the invoice (other than `except`), and whether
/// it was marked for collection on `today`.
pub fn journal_facts(
    store: &dyn Store,
    connection: &str,
    invoice_id: &str,
    except: Option<&str>,
    today: NaiveDate,
) -> Result<(Vec<NaiveDate>, bool), StoreError> {
    let mut sent = Vec::new();
    let mut escalated = false;
    for e in store.journal_for_invoice(connection, invoice_id)? {
        if !matches!(e.payload, JournalPayload::Action(_)) {
            continue;
        }
        match e.kind {
            ActionKind::Remind
                if matches!(e.state, JournalState::Done { .. })
                    && Some(e.key.as_str()) != except
                    && reached_customer(&e) =>
            {
                sent.push(e.planned_for)
            }
            ActionKind::Escalate
                if e.planned_for == today
                    && matches!(e.state, JournalState::Intent | JournalState::Done { .. }) =>
            {
                escalated = true
            }
            _ => {}
        }
    }
    sent.sort();
    Ok((sent, escalated))
}

fn reached_customer(e: &JournalEntry) -> bool {
    match e.payload.action() {
        Some(crate::store::ActionPayload::Remind { channel, .. }) => {
            channel.is_none_or(|c| c.to_customer())
        }
        _ => false,
    }
}

/// The online payment link: the ledger's, read now; the snapshot's when the read fails.
pub async fn pay_link(connector: &dyn Connector, inv: &InvoiceSnapshot) -> Option<String> {
    let known = || inv.pay_url.clone().filter(|u| !u.trim().is_empty());
    match connector.online_payment_link(&inv.remote_id).await {
        Ok(Some(u)) if !u.trim().is_empty() => Some(u),
        Ok(_) => known(),
        Err(e) => {
            warn!(invoice = %inv.display_number(), error = %e, "online payment link not read; using the last one known");
            known()
        }
    }
}

/// The invoice PDF, read now. A temporary failure makes the message wait (no reminder
/// without its copy); a permanent one sends it without, logged once here.
pub async fn pdf(
    connector: &dyn Connector,
    inv: &InvoiceSnapshot,
) -> Result<Option<FileAttachment>, NotYet> {
    match connector.invoice_pdf(&inv.remote_id).await {
        Ok(bytes) if bytes.starts_with(b"%PDF") => Ok(Some(FileAttachment::invoice_pdf(
            inv.display_number(),
            bytes,
        ))),
        Ok(_) => {
            warn!(invoice = %inv.display_number(), "the ledger's invoice PDF is not a PDF; sending without it");
            Ok(None)
        }
        Err(e) if temporary(&e) => Err(NotYet(format!(
            "invoice {} PDF not read yet ({e}); the email waits for the next cycle",
            inv.display_number()
        ))),
        Err(e) => {
            warn!(invoice = %inv.display_number(), error = %e, "invoice PDF unavailable; sending without it");
            Ok(None)
        }
    }
}

fn temporary(e: &ConnectorError) -> bool {
    matches!(
        e.class(),
        ErrorClass::RetryLater(_) | ErrorClass::Refresh | ErrorClass::Reauth | ErrorClass::Stale
    )
}

/// Everything about one invoice at send time.
pub async fn gather(
    sources: Sources<'_>,
    store: &dyn Store,
    fees: &FeeIndex,
    entry: Option<&JournalEntry>,
    inv: &InvoiceSnapshot,
    today: NaiveDate,
) -> Result<Result<SendFacts, NotYet>, StoreError> {
    // The profile the plan chose the policy by travels with the reminder.
    let payer = entry.and_then(|e| match e.payload.action() {
        Some(crate::store::ActionPayload::Remind {
            context: Some(c), ..
        }) => crate::profiles::PayerProfile::parse(&c.payer_profile),
        _ => None,
    });
    let terms = PayTerms::for_payer(sources.policies, inv, payer);
    let (earlier_reminders, escalated_today) = journal_facts(
        store,
        inv.connection.as_str(),
        &inv.remote_id,
        entry.map(|e| e.key.as_str()),
        today,
    )?;
    let pdf = if terms.attach_pdf {
        match pdf(sources.connector, inv).await {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        }
    } else {
        None
    };
    Ok(Ok(SendFacts {
        earlier_reminders,
        fee_invoice: fees.of(inv).cloned(),
        pay_link: pay_link(sources.connector, inv).await,
        payment_instructions: terms.payment_instructions,
        pdf,
        escalated_today,
    }))
}
