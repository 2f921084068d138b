//! `overdued export`: the file an agency or a court needs about a debt: the invoices,
//! every message sent with its date, channel and subject, fees, promises, notes and
//! call outcomes, as CSV (one record a line) and as a plain-text letter.
//!
//! The content is built here (by the daemon when it holds the store); the CLI writes it.

use chrono::{DateTime, NaiveDate, Utc};
use overdued_connector::ActionKind;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::engine::policy::Channel;
use crate::ops::{self, OpError};
use crate::store::{ActionPayload, InvoiceRecord, JournalState, Store};

/// One file to write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportFile {
    pub name: String,
    pub content: String,
}

/// What an export produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Export {
    pub files: Vec<ExportFile>,
}

/// One line of the record, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Event {
    at: DateTime<Utc>,
    invoice: String,
    record: &'static str,
    channel: String,
    description: String,
    amount: String,
}

/// The export of `target` (an invoice's number or id, else a customer's id, name or
/// email; `customer` forces the latter).
pub fn build(
    config: &Config,
    store: &dyn Store,
    now: DateTime<Utc>,
    connection: &str,
    target: &str,
    customer: bool,
) -> Result<Export, OpError> {
    ops::known_connection(config, connection)?;
    let tz = config.daemon.time_zone;
    let today = now.with_timezone(&tz).date_naive();
    let as_invoice = if customer {
        None
    } else {
        match ops::resolve_invoice(store, connection, target) {
            Ok(r) => Some(r),
            Err(e) if e.message.contains("no invoice with id or number") => None,
            Err(e) => return Err(e),
        }
    };
    let (invoices, who, slug) = match as_invoice {
        Some(r) => {
            let who = r.snapshot.customer.name.clone();
            let slug = format!("invoice-{}", r.snapshot.display_number());
            (vec![r], who, slug)
        }
        None => {
            let c = ops::resolve_customer(store, connection, target).map_err(|e| {
                ops::usage(format!(
                    "{} (an export names an invoice by number or id, or a customer by id, name or email)",
                    e.message
                ))
            })?;
            let mut v: Vec<InvoiceRecord> = Vec::new();
            store
                .for_each_invoice(connection, &mut |r| {
                    if r.snapshot.customer.id == c.id {
                        v.push(r);
                    }
                    true
                })
                .map_err(ops::io)?;
            // Paid and voided invoices are part of the story only when something was done
            // about them; what a court needs is what is owed and what was said about it.
            v.retain(|r| r.snapshot.status.is_open() && r.snapshot.amount_due > Decimal::ZERO);
            if v.is_empty() {
                return Err(ops::usage(format!(
                    "{connection}: {} (id {}) has no open invoice to export",
                    c.name, c.id
                )));
            }
            (v, c.name.clone(), format!("customer-{}", c.id))
        }
    };

    let mut events = Vec::new();
    for r in &invoices {
        let s = &r.snapshot;
        let number = s.display_number().to_string();
        for e in store
            .journal_for_invoice(connection, &s.remote_id)
            .map_err(ops::io)?
        {
            let JournalState::Done { at, .. } = e.state else {
                continue;
            };
            let Some(p) = e.payload.action() else {
                continue;
            };
            let (record, channel, description, amount) = match p {
                ActionPayload::Remind {
                    subject, channel, ..
                } => (
                    "message",
                    match channel {
                        Some(Channel::Smtp) => "email (overdued)",
                        Some(Channel::Owner) => "to the owner",
                        _ => "email (accounting system)",
                    }
                    .to_string(),
                    format!("reminder ({}): {subject}", e.step_id),
                    String::new(),
                ),
                ActionPayload::LateFee {
                    amount,
                    explanation,
                    ..
                } => (
                    "fee",
                    "ledger".to_string(),
                    format!("late fee: {explanation}"),
                    amount.amount.to_string(),
                ),
                ActionPayload::Note { text } => {
                    ("note", "ledger".to_string(), text.clone(), String::new())
                }
                // The owner's message is a letter of its own; the record needs the fact.
                ActionPayload::Escalate { .. } => (
                    "escalation",
                    "to the owner".to_string(),
                    "marked for collection; automatic reminders stopped".to_string(),
                    String::new(),
                ),
            };
            // A note recording a call is listed once, as the call.
            if e.kind == ActionKind::Note && e.step_id.starts_with(super::outcome::KIND) {
                continue;
            }
            events.push(Event {
                at,
                invoice: number.clone(),
                record,
                channel,
                description,
                amount,
            });
        }
        for a in store
            .audit_for_invoice(connection, &s.remote_id)
            .map_err(ops::io)?
        {
            let record = match a.kind.as_str() {
                "promise" => "promise",
                "pause" => "pause",
                "resume" => "resume",
                super::outcome::KIND => "call",
                super::escalation::RESUMED => "resume",
                _ => continue,
            };
            events.push(Event {
                at: a.at,
                invoice: number.clone(),
                record,
                channel: if record == "call" {
                    "telephone"
                } else {
                    "owner"
                }
                .into(),
                description: a.message,
                amount: String::new(),
            });
        }
    }
    events.sort_by_key(|e| e.at);

    let csv = render_csv(&invoices, &events, tz);
    let letter = render_letter(connection, &who, &invoices, &events, today, tz);
    let base = format!("{connection}-{}-{today}", sanitize(&slug));
    Ok(Export {
        files: vec![
            ExportFile {
                name: format!("{base}.csv"),
                content: csv,
            },
            ExportFile {
                name: format!("{base}.txt"),
                content: letter,
            },
        ],
    })
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn render_csv(invoices: &[InvoiceRecord], events: &[Event], tz: chrono_tz::Tz) -> String {
    let mut out =
        String::from("record,date,invoice,customer,channel,description,amount,currency\n");
    let mut row = |fields: [&str; 8]| {
        out.push_str(
            &fields
                .iter()
                .map(|f| csv_field(f))
                .collect::<Vec<_>>()
                .join(","),
        );
        out.push('\n');
    };
    for r in invoices {
        let s = &r.snapshot;
        let what = format!(
            "issued {}, due {}, total {}, balance {}",
            s.issue_date,
            s.due_date,
            s.total_money().amount_human(),
            s.due_money().amount_human()
        );
        row([
            "invoice",
            &s.issue_date.to_string(),
            s.display_number(),
            &s.customer.name,
            "",
            &what,
            &s.amount_due.to_string(),
            s.currency.code(),
        ]);
    }
    let currency_of = |number: &str| {
        invoices
            .iter()
            .find(|r| r.snapshot.display_number() == number)
            .map(|r| r.snapshot.currency.code().to_string())
            .unwrap_or_default()
    };
    let customer_of = |number: &str| {
        invoices
            .iter()
            .find(|r| r.snapshot.display_number() == number)
            .map(|r| r.snapshot.customer.name.clone())
            .unwrap_or_default()
    };
    for e in events {
        let currency = if e.amount.is_empty() {
            String::new()
        } else {
            currency_of(&e.invoice)
        };
        row([
            e.record,
            &e.at.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string(),
            &e.invoice,
            &customer_of(&e.invoice),
            &e.channel,
            &e.description,
            &e.amount,
            &currency,
        ]);
    }
    out
}

fn render_letter(
    connection: &str,
    who: &str,
    invoices: &[InvoiceRecord],
    events: &[Event],
    today: NaiveDate,
    tz: chrono_tz::Tz,
) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Account of {who}: unpaid invoices and the steps taken to collect them"
    );
    let _ = writeln!(
        out,
        "Prepared on {} from the records overdued keeps for {connection}.",
        crate::engine::dates::long_date(today)
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "Invoices outstanding");
    let mut totals: std::collections::BTreeMap<String, (overdued_connector::Currency, Decimal)> =
        Default::default();
    for r in invoices {
        let s = &r.snapshot;
        let _ = writeln!(
            out,
            "  Invoice {}: issued {}, due {}, total {}, unpaid {} ({} days overdue)",
            s.display_number(),
            s.issue_date,
            s.due_date,
            s.total_money().display_human(),
            s.due_money().display_human(),
            s.days_overdue(today).max(0)
        );
        totals
            .entry(s.currency.code().to_string())
            .or_insert((s.currency, Decimal::ZERO))
            .1 += s.amount_due;
    }
    let _ = writeln!(
        out,
        "  Total unpaid: {}",
        totals
            .values()
            .map(|(c, a)| overdued_connector::Money::new(*a, *c)
                .display_human()
                .to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let sections: [(&str, &[&str]); 4] = [
        ("Reminders and notices sent", &["message", "escalation"]),
        ("Late fees charged", &["fee"]),
        (
            "Promises, calls and holds",
            &["promise", "call", "pause", "resume"],
        ),
        ("Notes in the ledger", &["note"]),
    ];
    for (title, records) in sections {
        let lines: Vec<&Event> = events
            .iter()
            .filter(|e| records.contains(&e.record))
            .collect();
        let _ = writeln!(out);
        let _ = writeln!(out, "{title}");
        if lines.is_empty() {
            let _ = writeln!(out, "  none");
        }
        for e in lines {
            let amount = if e.amount.is_empty() {
                String::new()
            } else {
                format!(" ({})", e.amount)
            };
            let _ = writeln!(
                out,
                "  {}  invoice {}, {}: {}{amount}",
                e.at.with_timezone(&tz).format("%Y-%m-%d"),
                e.invoice,
                e.channel,
                e.description
            );
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Every date above is when the step was confirmed by the accounting system or by overdued. The same record, one line per event, is in the CSV file beside this letter."
    );
    out
}
