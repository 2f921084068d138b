//! What a person does to the store by hand (promises, pauses, history), as operations
//! the CLI runs on the store directly, or, while the daemon holds it, sends to the
//! daemon's admin endpoint to run there. One implementation for both ways.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::store::{AuditEvent, Hold, HoldKind, HoldTarget, JournalState, Store, StoreError};

/// One operation, as the CLI asks for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    Promise {
        connection: String,
        invoice: String,
        until: NaiveDate,
        #[serde(default, with = "rust_decimal::serde::str_option")]
        amount: Option<Decimal>,
    },
    Pause {
        connection: String,
        id: String,
        customer: bool,
        reason: String,
    },
    Resume {
        connection: String,
        id: String,
        customer: bool,
    },
    History {
        connection: String,
        invoice: String,
    },
}

/// Why an operation failed, with the exit code the CLI should use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct OpError {
    pub code: u8,
    pub message: String,
}

const USAGE: u8 = 64;
const IOERR: u8 = 74;

fn usage(message: String) -> OpError {
    OpError {
        code: USAGE,
        message,
    }
}

fn io(e: StoreError) -> OpError {
    OpError {
        code: IOERR,
        message: e.to_string(),
    }
}

/// Runs `op` against `store`; returns what to print.
pub fn apply(
    op: &Op,
    config: &Config,
    store: &dyn Store,
    now: DateTime<Utc>,
) -> Result<String, OpError> {
    match op {
        Op::Promise {
            connection,
            invoice,
            until,
            amount,
        } => {
            known_connection(config, connection)?;
            let rec = store
                .get_invoice(connection, invoice)
                .map_err(io)?
                .ok_or_else(|| unknown_invoice(connection, invoice))?;
            let today = now.with_timezone(&config.daemon.time_zone).date_naive();
            if *until < today {
                return Err(usage(format!(
                    "--until {until} is in the past (today is {today} in {})",
                    config.daemon.time_zone
                )));
            }
            let hold = Hold::Promise {
                until: *until,
                amount: *amount,
                balance_when_made: Some(rec.snapshot.amount_due),
                set_at: now,
            };
            store
                .put_hold(connection, &HoldTarget::Invoice(invoice.clone()), &hold)
                .map_err(io)?;
            let what = match amount {
                Some(a) => format!(
                    "promise to pay {} by {until}",
                    overdued_connector::Money::new(*a, rec.snapshot.currency).display_human()
                ),
                None => format!(
                    "promise to pay the balance ({}) by {until}",
                    rec.snapshot.due_money().display_human()
                ),
            };
            audit(
                store,
                connection,
                Some(invoice),
                "promise",
                format!("{what}: no chasing until then"),
                now,
            )?;
            Ok(format!(
                "{connection} invoice {}: {what} recorded; chasing resumes after it if still unpaid\n",
                rec.snapshot.display_number()
            ))
        }
        Op::Pause {
            connection,
            id,
            customer,
            reason,
        } => {
            known_connection(config, connection)?;
            let reason = reason.trim();
            if reason.is_empty() {
                return Err(usage(
                    "--reason must say why (for example \"dispute: wrong quantity\")".into(),
                ));
            }
            let target = target(store, connection, id, *customer)?;
            store
                .put_hold(
                    connection,
                    &target,
                    &Hold::Pause {
                        reason: reason.into(),
                        set_at: now,
                    },
                )
                .map_err(io)?;
            let inv = (!customer).then_some(id.as_str());
            audit(
                store,
                connection,
                inv,
                "pause",
                format!("paused {}: {reason}", describe(&target)),
                now,
            )?;
            Ok(format!(
                "{connection}: paused {} ({reason})\n",
                describe(&target)
            ))
        }
        Op::Resume {
            connection,
            id,
            customer,
        } => {
            known_connection(config, connection)?;
            let target = if *customer {
                HoldTarget::Customer(id.clone())
            } else {
                HoldTarget::Invoice(id.clone())
            };
            let paused = store
                .remove_hold(connection, &target, HoldKind::Pause)
                .map_err(io)?;
            let promised = !customer
                && store
                    .remove_hold(connection, &target, HoldKind::Promise)
                    .map_err(io)?;
            if !paused && !promised {
                return Err(usage(format!(
                    "{connection}: {} is neither paused nor under a promise",
                    describe(&target)
                )));
            }
            let inv = (!customer).then_some(id.as_str());
            audit(
                store,
                connection,
                inv,
                "resume",
                format!("resumed {}", describe(&target)),
                now,
            )?;
            Ok(format!("{connection}: resumed {}\n", describe(&target)))
        }
        Op::History {
            connection,
            invoice,
        } => history(store, connection, invoice, config.daemon.time_zone),
    }
}

fn known_connection(c: &Config, name: &str) -> Result<(), OpError> {
    if c.connection(name).is_none() {
        let names: Vec<&str> = c.connections.iter().map(|c| c.name.as_str()).collect();
        return Err(usage(format!(
            "no connection named {name:?} in {} (configured: {})",
            c.path.display(),
            names.join(", ")
        )));
    }
    Ok(())
}

fn target(
    store: &dyn Store,
    connection: &str,
    id: &str,
    customer: bool,
) -> Result<HoldTarget, OpError> {
    if customer {
        return Ok(HoldTarget::Customer(id.into()));
    }
    store
        .get_invoice(connection, id)
        .map_err(io)?
        .ok_or_else(|| unknown_invoice(connection, id))?;
    Ok(HoldTarget::Invoice(id.into()))
}

fn describe(t: &HoldTarget) -> String {
    match t {
        HoldTarget::Invoice(id) => format!("invoice {id}"),
        HoldTarget::Customer(id) => format!("customer {id}"),
    }
}

fn unknown_invoice(connection: &str, id: &str) -> OpError {
    usage(format!(
        "{connection}: no invoice with id {id:?} has been synced (ids are the system's: QuickBooks Id, Xero InvoiceID)"
    ))
}

fn audit(
    store: &dyn Store,
    connection: &str,
    invoice: Option<&str>,
    kind: &str,
    message: String,
    now: DateTime<Utc>,
) -> Result<(), OpError> {
    store
        .append_audit(&AuditEvent {
            at: now,
            connection: connection.into(),
            invoice_id: invoice.map(String::from),
            kind: kind.into(),
            message,
            detail: serde_json::Value::Null,
        })
        .and_then(|()| store.flush())
        .map_err(io)
}

/// Every observation and action for one invoice, oldest first.
pub fn history(
    store: &dyn Store,
    connection: &str,
    invoice: &str,
    tz: chrono_tz::Tz,
) -> Result<String, OpError> {
    use std::fmt::Write;
    let rec = store.get_invoice(connection, invoice).map_err(io)?;
    let events = store.audit_for_invoice(connection, invoice).map_err(io)?;
    let journal = store.journal_for_invoice(connection, invoice).map_err(io)?;
    if rec.is_none() && events.is_empty() {
        return Err(usage(format!(
            "{connection}: nothing is known about invoice {invoice:?}"
        )));
    }
    let mut out = String::new();
    if let Some(r) = &rec {
        let s = &r.snapshot;
        let _ = writeln!(
            out,
            "{connection} invoice {} (id {}): {}, {} due of {}, due {}, status {:?}",
            s.display_number(),
            s.remote_id,
            s.customer.name,
            s.due_money().display_human(),
            s.total_money().amount_human(),
            s.due_date,
            s.status
        );
    }
    let system = rec.as_ref().map(|r| r.snapshot.system);
    let sent = crate::report::delivery::sent_subjects(&events);
    for e in &events {
        let _ = writeln!(
            out,
            "{}  {:<9} {}",
            e.at.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z"),
            e.kind,
            match system {
                Some(sys) => crate::report::delivery::audit_line_sent(e, sys, &sent),
                None => e.message.clone(),
            }
        );
    }
    let open: Vec<_> = journal.iter().filter(|j| !j.is_settled()).collect();
    if !open.is_empty() {
        let _ = writeln!(out, "unfinished:");
        for j in open {
            let state = match &j.state {
                JournalState::Intent => "recorded, not yet confirmed".to_string(),
                JournalState::Failed {
                    error, attempts, ..
                } => format!("failed {attempts}x: {error}"),
                JournalState::Done { .. } => "done, audit note pending".to_string(),
                JournalState::Skipped { reason, .. } => reason.clone(),
                JournalState::Superseded { reason, .. } => format!("superseded: {reason}"),
            };
            let _ = writeln!(
                out,
                "  {} {} ({}) {state}",
                j.planned_for, j.kind, j.step_id
            );
        }
    }
    Ok(out)
}
