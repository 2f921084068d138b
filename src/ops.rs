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
        // Left out rather than `null` when absent: `str_option` reads no `null`.
        #[serde(
            default,
            with = "rust_decimal::serde::str_option",
            skip_serializing_if = "Option::is_none"
        )]
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
    /// The calls list of one connection, or of all; as text or JSON.
    Calls {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        connection: Option<String>,
        #[serde(default)]
        json: bool,
    },
    SmsOptIn {
        connection: String,
        customer: String,
        phone: String,
        evidence: String,
    },
    SmsOptOut {
        connection: String,
        customer: String,
    },
    SmsList {
        #[serde(default)]
        connection: Option<String>,
        #[serde(default)]
        json: bool,
    },
    /// What a call settled (`overdued called`).
    Called {
        connection: String,
        customer: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        invoice: Option<String>,
        outcome: crate::calls::outcome::CalledRequest,
    },
    /// The file an agency or a court needs; answered as JSON [`crate::calls::export::Export`].
    Export {
        connection: String,
        target: String,
        #[serde(default)]
        customer: bool,
    },
    /// A payment plan over one invoice or several of one customer.
    Arrange {
        connection: String,
        /// An invoice (number or id) or a customer (id, name or email).
        target: String,
        /// With a customer: the invoices to cover (all open ones when empty).
        #[serde(default)]
        invoices: Vec<String>,
        schedule: crate::arrangements::ops::PlanSpec,
    },
    Arrangements {
        #[serde(default)]
        connection: Option<String>,
        #[serde(default)]
        json: bool,
    },
    CancelArrangement {
        connection: String,
        plan: String,
    },
    /// Every customer's payer profile, the figures behind it and expected payment dates,
    /// of one connection or all.
    Customers {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        connection: Option<String>,
        #[serde(default)]
        json: bool,
    },
    /// Checks the summary index against the invoice records; with `rebuild`, builds it
    /// afresh from them first.
    Index {
        #[serde(default)]
        rebuild: bool,
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

pub(crate) fn usage(message: String) -> OpError {
    OpError {
        code: USAGE,
        message,
    }
}

pub(crate) fn io(e: StoreError) -> OpError {
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
        Op::SmsOptIn {
            connection,
            customer,
            phone,
            evidence,
        } => crate::channels::sms::admin::opt_in(
            config, store, now, connection, customer, phone, evidence,
        ),
        Op::SmsOptOut {
            connection,
            customer,
        } => crate::channels::sms::admin::opt_out(config, store, now, connection, customer),
        Op::SmsList { connection, json } => {
            crate::channels::sms::admin::list(config, store, connection.as_deref(), *json)
        }
        Op::Promise {
            connection,
            invoice,
            until,
            amount,
        } => {
            known_connection(config, connection)?;
            let rec = resolve_invoice(store, connection, invoice)?;
            let invoice = &rec.snapshot.remote_id;
            let today = now.with_timezone(&config.daemon.time_zone).date_naive();
            check_promise_date(config, *until, today)?;
            if let Some(a) = amount {
                if *a <= Decimal::ZERO || *a > rec.snapshot.amount_due {
                    return Err(usage(format!(
                        "--amount {a} must be more than zero and at most the balance of invoice {} ({})",
                        rec.snapshot.display_number(),
                        rec.snapshot.due_money().display_human()
                    )));
                }
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
            // On an escalated invoice, chasing resumes after the promise if it is not kept.
            if crate::calls::escalation::escalated_at(store, connection, invoice)
                .map_err(io)?
                .is_some()
            {
                let grace = i64::from(config.engine.promise_grace_days);
                crate::calls::escalation::resume(
                    store,
                    connection,
                    invoice,
                    *until + chrono::Duration::days(grace + 1),
                    "promise to pay",
                    now,
                )
                .map_err(io)?;
            }
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
            let inv = match &target {
                HoldTarget::Invoice(i) => Some(i.as_str()),
                HoldTarget::Customer(_) => None,
            };
            audit(
                store,
                connection,
                inv,
                "pause",
                format!("paused {}: {reason}", describe(store, connection, &target)),
                now,
            )?;
            Ok(format!(
                "{connection}: paused {}: {reason}\n",
                describe(store, connection, &target)
            ))
        }
        Op::Resume {
            connection,
            id,
            customer,
        } => {
            known_connection(config, connection)?;
            let target = if *customer {
                // A hold on a customer no longer synced is still found by id.
                match resolve_customer(store, connection, id) {
                    Ok(c) => HoldTarget::Customer(c.id),
                    Err(_)
                        if store.holds(connection).map_err(io)?.iter().any(
                            |(t, _)| matches!(t, HoldTarget::Customer(c) if c == id.trim()),
                        ) =>
                    {
                        HoldTarget::Customer(id.trim().to_string())
                    }
                    Err(e) => return Err(e),
                }
            } else {
                // By number or id; a hold on an invoice no longer synced is still found by id.
                match matching_invoices(store, connection, id)?.len() {
                    0 => HoldTarget::Invoice(id.clone()),
                    _ => HoldTarget::Invoice(
                        resolve_invoice(store, connection, id)?.snapshot.remote_id,
                    ),
                }
            };
            let paused = store
                .remove_hold(connection, &target, HoldKind::Pause)
                .map_err(io)?;
            let promised = !customer
                && store
                    .remove_hold(connection, &target, HoldKind::Promise)
                    .map_err(io)?;
            // An escalated invoice taken back into the ladder: reminders from today.
            let resumed_escalation = match &target {
                // With its pause or promise lifted too: `resume` means chase it again.
                HoldTarget::Invoice(id) => {
                    let escalated = crate::calls::escalation::escalated_at(store, connection, id)
                        .map_err(io)?
                        .is_some();
                    let today = now.with_timezone(&config.daemon.time_zone).date_naive();
                    let already = crate::calls::escalation::resumed_on(store, connection, id)
                        .map_err(io)?
                        .is_some_and(|d| d <= today);
                    if escalated && !already {
                        crate::calls::escalation::resume(
                            store,
                            connection,
                            id,
                            today,
                            "overdued resume",
                            now,
                        )
                        .map_err(io)?;
                    }
                    escalated && !already
                }
                _ => false,
            };
            if resumed_escalation {
                // Said plainly when another hold still stops it, so nobody expects a
                // reminder that will not come.
                let customer_pause = match &target {
                    HoldTarget::Invoice(id) => store
                        .get_invoice(connection, id)
                        .map_err(io)?
                        .and_then(|r| {
                            let c = r.snapshot.customer;
                            store.holds(connection).ok()?.into_iter().find_map(|(t, h)| {
                                match (t, h) {
                                    (HoldTarget::Customer(id), Hold::Pause { reason, .. })
                                        if id == c.id =>
                                    {
                                        Some(format!(
                                            "; customer {} is still paused ({reason}): nothing is sent until `overdued resume {connection} {} --customer`",
                                            c.name, c.id
                                        ))
                                    }
                                    _ => None,
                                }
                            })
                        }),
                    HoldTarget::Customer(_) => None,
                };
                let lifted = match (paused, promised) {
                    (true, true) => "; its pause and promise are lifted",
                    (true, false) => "; its pause is lifted",
                    (false, true) => "; its promise is cleared",
                    (false, false) => "",
                };
                return Ok(format!(
                    "{connection}: {} taken back from collection: reminders resume from today under the policy (the escalation is not repeated){lifted}{}\n",
                    describe(store, connection, &target),
                    customer_pause.unwrap_or_default()
                ));
            }
            if !paused && !promised {
                return Err(usage(format!(
                    "{connection}: {} is neither paused nor under a promise",
                    describe(store, connection, &target)
                )));
            }
            let inv = match &target {
                HoldTarget::Invoice(i) => Some(i.as_str()),
                HoldTarget::Customer(_) => None,
            };
            audit(
                store,
                connection,
                inv,
                "resume",
                format!("resumed {}", describe(store, connection, &target)),
                now,
            )?;
            Ok(format!(
                "{connection}: resumed {}\n",
                describe(store, connection, &target)
            ))
        }
        Op::History {
            connection,
            invoice,
        } => {
            known_connection(config, connection)?;
            // A number as people see it (1037, INV-0135) names the same invoice as its id.
            let id = match matching_invoices(store, connection, invoice)?.len() {
                // Not synced (any more): the audit log may still know the id.
                0 => invoice.clone(),
                _ => {
                    resolve_invoice(store, connection, invoice)?
                        .snapshot
                        .remote_id
                }
            };
            history(store, connection, &id, config.daemon.time_zone)
        }
        Op::Calls { connection, json } => {
            let conns: Vec<&crate::config::ConnectionConfig> = match connection {
                Some(c) => {
                    known_connection(config, c)?;
                    config.connection(c).into_iter().collect()
                }
                None => config.connections.iter().filter(|c| c.enabled).collect(),
            };
            let mut all = Vec::new();
            let mut text = String::new();
            for c in conns {
                let list = crate::calls::calls_list(config, c, store, now).map_err(io)?;
                text.push_str(&crate::calls::render(
                    &list,
                    config.daemon.time_zone,
                    &c.name,
                ));
                all.extend(list);
            }
            if *json {
                serde_json::to_string_pretty(&all)
                    .map(|s| s + "\n")
                    .map_err(|e| OpError {
                        code: 70,
                        message: e.to_string(),
                    })
            } else {
                Ok(text)
            }
        }
        Op::Called {
            connection,
            customer,
            invoice,
            outcome,
        } => crate::calls::outcome::record(
            config,
            store,
            now,
            connection,
            customer,
            outcome,
            invoice.as_deref(),
        ),
        Op::Export {
            connection,
            target,
            customer,
        } => {
            let export =
                crate::calls::export::build(config, store, now, connection, target, *customer)?;
            serde_json::to_string(&export).map_err(|e| OpError {
                code: 70,
                message: e.to_string(),
            })
        }
        Op::Arrange {
            connection,
            target,
            invoices,
            schedule,
        } => {
            known_connection(config, connection)?;
            crate::arrangements::ops::arrange(
                config, store, now, connection, target, invoices, schedule,
            )
        }
        Op::Arrangements { connection, json } => {
            if let Some(c) = connection {
                known_connection(config, c)?;
            }
            crate::arrangements::ops::list(config, store, now, connection.as_deref(), *json)
        }
        Op::CancelArrangement { connection, plan } => {
            known_connection(config, connection)?;
            crate::arrangements::ops::cancel(config, store, now, connection, plan)
        }
        Op::Customers { connection, json } => {
            if let Some(c) = connection {
                known_connection(config, c)?;
            }
            crate::profiles::customers_report(config, store, now, connection.as_deref(), *json)
                .map_err(io)
        }
        Op::Index { rebuild } => crate::store::index::check_report(store, *rebuild),
    }
}

/// A promised date is in the future and within `daemon.max_promise_days`: a promise
/// months away is a pause by another name, and the guides ask for about a week.
pub fn check_promise_date(
    config: &Config,
    until: NaiveDate,
    today: NaiveDate,
) -> Result<(), OpError> {
    if until <= today {
        return Err(usage(format!(
            "--until {until} is not in the future (today is {today} in {})",
            config.daemon.time_zone
        )));
    }
    let max = config.daemon.max_promise_days;
    let days = (until - today).num_days();
    if days > max {
        return Err(usage(format!(
            "--until {until} is {days} days away; a promise may run at most daemon.max_promise_days = {max} days (until {})",
            today + chrono::Duration::days(max)
        )));
    }
    Ok(())
}

/// Whether `handle` names a synced invoice (by id or number) rather than, say, a customer.
pub(crate) fn names_an_invoice(
    store: &dyn Store,
    connection: &str,
    handle: &str,
) -> Result<bool, OpError> {
    Ok(!matching_invoices(store, connection, handle)?.is_empty())
}

pub(crate) fn known_connection(c: &Config, name: &str) -> Result<(), OpError> {
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
        return Ok(HoldTarget::Customer(
            resolve_customer(store, connection, id)?.id,
        ));
    }
    let rec = resolve_invoice(store, connection, id)?;
    Ok(HoldTarget::Invoice(rec.snapshot.remote_id))
}

/// The invoices `handle` may name: the one with that id, else those with that number.
fn matching_invoices(
    store: &dyn Store,
    connection: &str,
    handle: &str,
) -> Result<Vec<crate::store::InvoiceRecord>, OpError> {
    if let Some(r) = store.get_invoice(connection, handle).map_err(io)? {
        return Ok(vec![r]);
    }
    let wanted = handle.trim();
    let mut found = Vec::new();
    store
        .for_each_invoice(connection, &mut |r| {
            if r.snapshot.display_number().eq_ignore_ascii_case(wanted) {
                found.push(r);
            }
            true
        })
        .map_err(io)?;
    Ok(found)
}

/// The invoice a person names by the system's id or by its number as `plan`, `status`
/// and the digest show it (QuickBooks DocNumber, Xero InvoiceNumber).
pub(crate) fn resolve_invoice(
    store: &dyn Store,
    connection: &str,
    handle: &str,
) -> Result<crate::store::InvoiceRecord, OpError> {
    let wanted = handle.trim();
    let mut found = matching_invoices(store, connection, handle)?;
    match found.len() {
        0 => Err(unknown_invoice(connection, handle)),
        1 => Ok(found.remove(0)),
        _ => Err(usage(format!(
            "{connection}: {} invoices are numbered {wanted:?}; name one by id: {}",
            found.len(),
            found
                .iter()
                .map(|r| format!("{} ({})", r.snapshot.remote_id, r.snapshot.customer.name))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// A customer as a person names one: the system's id, the display name or an email
/// address (each compared without regard to case and surrounding space).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerHandle {
    pub id: String,
    pub name: String,
    pub email: Option<String>,
}

/// Every customer a connection's synced invoices name, by id, with the stored customer
/// record's details where there is one (it is fresher than an invoice's copy).
pub fn known_customers(
    store: &dyn Store,
    connection: &str,
) -> Result<Vec<CustomerHandle>, OpError> {
    let mut by_id: std::collections::BTreeMap<String, CustomerHandle> = Default::default();
    store
        .for_each_invoice(connection, &mut |r| {
            let c = &r.snapshot.customer;
            by_id.entry(c.id.clone()).or_insert_with(|| CustomerHandle {
                id: c.id.clone(),
                name: c.name.clone(),
                email: c.email.clone(),
            });
            true
        })
        .map_err(io)?;
    for h in by_id.values_mut() {
        if let Some(c) = store.get_customer(connection, &h.id).map_err(io)? {
            h.name = c.name;
            if c.email.is_some() {
                h.email = c.email;
            }
        }
    }
    Ok(by_id.into_values().collect())
}

/// The one customer `handle` names; an unknown or ambiguous handle is a usage error that
/// lists what was meant, so a typo never pauses (or chases) the wrong customer.
pub fn resolve_customer(
    store: &dyn Store,
    connection: &str,
    handle: &str,
) -> Result<CustomerHandle, OpError> {
    let wanted = handle.trim();
    if wanted.is_empty() {
        return Err(usage(
            "a customer is named by its id, its name or its email address; got nothing".into(),
        ));
    }
    let all = known_customers(store, connection)?;
    if let Some(c) = all.iter().find(|c| c.id == wanted) {
        return Ok(c.clone());
    }
    if let Some(c) = store.get_customer(connection, wanted).map_err(io)? {
        // Known to the ledger but with no invoice synced: still a real customer.
        return Ok(CustomerHandle {
            id: c.id,
            name: c.name,
            email: c.email,
        });
    }
    let same = |a: &str| a.trim().eq_ignore_ascii_case(wanted);
    let mut found: Vec<&CustomerHandle> = all
        .iter()
        .filter(|c| same(&c.name) || c.email.as_deref().is_some_and(same))
        .collect();
    match found.len() {
        1 => Ok(found.remove(0).clone()),
        0 => {
            let lower = wanted.to_lowercase();
            let near: Vec<String> = all
                .iter()
                .filter(|c| c.name.to_lowercase().contains(&lower))
                .take(5)
                .map(describe_customer)
                .collect();
            let hint = if near.is_empty() {
                String::new()
            } else {
                format!("; did you mean {}?", near.join(", "))
            };
            Err(usage(format!(
                "{connection}: no customer with id, name or email {wanted:?} has been synced{hint}"
            )))
        }
        n => Err(usage(format!(
            "{connection}: {n} customers match {wanted:?}; name one by id: {}",
            found
                .iter()
                .map(|c| describe_customer(c))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

fn describe_customer(c: &CustomerHandle) -> String {
    match &c.email {
        Some(e) => format!("{} (id {}, {e})", c.name, c.id),
        None => format!("{} (id {})", c.name, c.id),
    }
}

/// A hold's target as the owner knows it: number and customer name beside the id.
fn describe(store: &dyn Store, connection: &str, t: &HoldTarget) -> String {
    match t {
        HoldTarget::Invoice(id) => match store.get_invoice(connection, id).ok().flatten() {
            Some(r) if r.snapshot.display_number() != *id => format!(
                "invoice {} (id {id}, {})",
                r.snapshot.display_number(),
                r.snapshot.customer.name
            ),
            Some(r) => format!("invoice {id} ({})", r.snapshot.customer.name),
            None => format!("invoice {id}"),
        },
        HoldTarget::Customer(id) => match resolve_customer(store, connection, id) {
            Ok(c) if c.id == *id => format!("customer {id} ({})", c.name),
            _ => format!("customer {id}"),
        },
    }
}

fn unknown_invoice(connection: &str, id: &str) -> OpError {
    usage(format!(
        "{connection}: no invoice with id or number {id:?} has been synced (an invoice is named by its number, e.g. 1037 or INV-0135, or by the system's id)"
    ))
}

pub(crate) fn audit(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::plan::tests_support::invoice;

    #[test]
    fn a_promise_without_amount_crosses_to_the_daemon_and_back() {
        let op = Op::Promise {
            connection: "acme-qbo".into(),
            invoice: "1057".into(),
            until: NaiveDate::from_ymd_opt(2026, 12, 20).unwrap(),
            amount: None,
        };
        let wire = serde_json::to_string(&op).unwrap();
        assert_eq!(serde_json::from_str::<Op>(&wire).unwrap(), op, "{wire}");
        let with = Op::Promise {
            connection: "acme-qbo".into(),
            invoice: "1057".into(),
            until: NaiveDate::from_ymd_opt(2026, 12, 20).unwrap(),
            amount: Some(Decimal::new(5000, 2)),
        };
        let wire = serde_json::to_string(&with).unwrap();
        assert_eq!(serde_json::from_str::<Op>(&wire).unwrap(), with, "{wire}");
    }
    use crate::store::{InvoiceRecord, SledStore};

    fn world() -> (tempfile::TempDir, Config, SledStore) {
        let dir = tempfile::tempdir().unwrap();
        let text = "[daemon]\nstate_dir = \"state\"\n\n[quickbooks.acme-qbo]\nrealm_id = \"9341453\"\nclient_id = \"abc\"\nclient_secret = \"s\"\nenvironment = \"sandbox\"\n";
        let config = crate::config::parse(text, &dir.path().join("c.toml")).unwrap();
        let store = SledStore::open(&dir.path().join("state")).unwrap();
        let at = chrono::Utc::now();
        for (id, number) in [("150", "1057"), ("151", "1058"), ("152", "1058")] {
            let mut snapshot = invoice(id, "7", 100);
            snapshot.number = Some(number.into());
            store
                .put_invoice(&InvoiceRecord {
                    snapshot,
                    seen_at: at,
                    first_seen_at: at,
                    balance_history: Vec::new(),
                })
                .unwrap();
        }
        (dir, config, store)
    }

    #[test]
    fn an_invoice_is_named_by_its_number_or_its_id() {
        let (_dir, config, store) = world();
        let now = chrono::Utc::now();
        let history = |invoice: &str| {
            apply(
                &Op::History {
                    connection: "acme-qbo".into(),
                    invoice: invoice.into(),
                },
                &config,
                &store,
                now,
            )
        };
        let by_number = history("1057").unwrap();
        assert!(by_number.contains("invoice 1057 (id 150)"), "{by_number}");
        assert_eq!(history("150").unwrap(), by_number);

        let e = history("1058").unwrap_err();
        assert_eq!(e.code, 64);
        assert!(
            e.message.contains("2 invoices are numbered \"1058\""),
            "{}",
            e.message
        );
        assert!(
            e.message.contains("151") && e.message.contains("152"),
            "{}",
            e.message
        );

        let e = apply(
            &Op::History {
                connection: "nosuch".into(),
                invoice: "150".into(),
            },
            &config,
            &store,
            now,
        )
        .unwrap_err();
        assert_eq!(e.code, 64);
        assert!(
            e.message.contains("no connection named \"nosuch\""),
            "{}",
            e.message
        );

        // A pause by number holds the invoice's id, and resume by number finds it.
        let out = apply(
            &Op::Pause {
                connection: "acme-qbo".into(),
                id: "1057".into(),
                customer: false,
                reason: "dispute".into(),
            },
            &config,
            &store,
            now,
        )
        .unwrap();
        assert!(out.contains("paused invoice 1057 (id 150, "), "{out}");
        let out = apply(
            &Op::Resume {
                connection: "acme-qbo".into(),
                id: "1057".into(),
                customer: false,
            },
            &config,
            &store,
            now,
        )
        .unwrap();
        assert!(out.contains("resumed invoice 1057 (id 150, "), "{out}");

        // A promise of more than the balance is refused, naming the field.
        let promise = |amount: Option<Decimal>| {
            apply(
                &Op::Promise {
                    connection: "acme-qbo".into(),
                    invoice: "1057".into(),
                    until: now.date_naive() + chrono::Duration::days(5),
                    amount,
                },
                &config,
                &store,
                now,
            )
        };
        let e = promise(Some(Decimal::from(101))).unwrap_err();
        assert_eq!(e.code, 64);
        assert!(e.message.starts_with("--amount 101"), "{}", e.message);
        assert!(promise(Some(Decimal::from(40))).is_ok());
        assert!(promise(None).is_ok());
    }
}
