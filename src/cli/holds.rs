//! `overdued promise`, `pause` and `resume`: a person steering the engine.

use std::path::Path;
use std::str::FromStr;

use rust_decimal::Decimal;

use crate::store::{AuditEvent, Hold, HoldKind, HoldTarget, Store};

use super::common::{load_config, open_store, parse_date, Fail};
use super::exit;

pub fn promise(
    config: Option<&Path>,
    connection: &str,
    invoice: &str,
    until: &str,
    amount: Option<&str>,
) -> u8 {
    run(|| {
        let c = load_config(config)?;
        known_connection(&c, connection)?;
        let until = parse_date("--until", until)?;
        let amount = amount
            .map(|a| {
                Decimal::from_str(a.trim())
                    .ok()
                    .filter(|d| *d > Decimal::ZERO)
                    .ok_or_else(|| {
                        Fail(
                            exit::USAGE,
                            format!("--amount {a:?}: expected a positive amount such as 250.00"),
                        )
                    })
            })
            .transpose()?;
        let store = open_store(&c)?;
        let rec = store
            .get_invoice(connection, invoice)
            .map_err(io)?
            .ok_or_else(|| unknown_invoice(connection, invoice))?;
        let now = chrono::Utc::now();
        let today = now.with_timezone(&c.daemon.time_zone).date_naive();
        if until < today {
            return Err(Fail(
                exit::USAGE,
                format!(
                    "--until {until} is in the past (today is {today} in {})",
                    c.daemon.time_zone
                ),
            ));
        }
        let hold = Hold::Promise {
            until,
            amount,
            balance_when_made: Some(rec.snapshot.amount_due),
            set_at: now,
        };
        store
            .put_hold(connection, &HoldTarget::Invoice(invoice.into()), &hold)
            .map_err(io)?;
        let what = match amount {
            Some(a) => format!("promise to pay {} {a} by {until}", rec.snapshot.currency),
            None => format!(
                "promise to pay the balance ({}) by {until}",
                rec.snapshot.due_money()
            ),
        };
        audit(
            store.as_ref(),
            connection,
            Some(invoice),
            "promise",
            format!("{what}: no chasing until then"),
        )?;
        println!(
            "{connection} invoice {}: {what} recorded; chasing resumes after it if still unpaid",
            rec.snapshot.display_number()
        );
        Ok(())
    })
}

pub fn pause(
    config: Option<&Path>,
    connection: &str,
    id: &str,
    customer: bool,
    reason: &str,
) -> u8 {
    run(|| {
        let c = load_config(config)?;
        known_connection(&c, connection)?;
        if reason.trim().is_empty() {
            return Err(Fail(
                exit::USAGE,
                "--reason must say why (for example \"dispute: wrong quantity\")".into(),
            ));
        }
        let store = open_store(&c)?;
        let target = target(store.as_ref(), connection, id, customer)?;
        let hold = Hold::Pause {
            reason: reason.trim().into(),
            set_at: chrono::Utc::now(),
        };
        store.put_hold(connection, &target, &hold).map_err(io)?;
        let inv = if customer { None } else { Some(id) };
        audit(
            store.as_ref(),
            connection,
            inv,
            "pause",
            format!("paused {}: {}", describe(&target), reason.trim()),
        )?;
        println!(
            "{connection}: paused {} ({})",
            describe(&target),
            reason.trim()
        );
        Ok(())
    })
}

pub fn resume(config: Option<&Path>, connection: &str, id: &str, customer: bool) -> u8 {
    run(|| {
        let c = load_config(config)?;
        known_connection(&c, connection)?;
        let store = open_store(&c)?;
        let target = if customer {
            HoldTarget::Customer(id.into())
        } else {
            HoldTarget::Invoice(id.into())
        };
        let paused = store
            .remove_hold(connection, &target, HoldKind::Pause)
            .map_err(io)?;
        let promised = !customer
            && store
                .remove_hold(connection, &target, HoldKind::Promise)
                .map_err(io)?;
        if !paused && !promised {
            return Err(Fail(
                exit::USAGE,
                format!(
                    "{connection}: {} is neither paused nor under a promise",
                    describe(&target)
                ),
            ));
        }
        let inv = if customer { None } else { Some(id) };
        audit(
            store.as_ref(),
            connection,
            inv,
            "resume",
            format!("resumed {}", describe(&target)),
        )?;
        println!("{connection}: resumed {}", describe(&target));
        Ok(())
    })
}

fn run(f: impl FnOnce() -> Result<(), Fail>) -> u8 {
    match f() {
        Ok(()) => 0,
        Err(e) => e.report(),
    }
}

fn known_connection(c: &crate::config::Config, name: &str) -> Result<(), Fail> {
    if c.connection(name).is_none() {
        let names: Vec<&str> = c.connections.iter().map(|c| c.name.as_str()).collect();
        return Err(Fail(
            exit::USAGE,
            format!(
                "no connection named {name:?} in {} (configured: {})",
                c.path.display(),
                names.join(", ")
            ),
        ));
    }
    Ok(())
}

fn target(
    store: &dyn Store,
    connection: &str,
    id: &str,
    customer: bool,
) -> Result<HoldTarget, Fail> {
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

fn unknown_invoice(connection: &str, id: &str) -> Fail {
    Fail(exit::USAGE, format!("{connection}: no invoice with id {id:?} has been synced (ids are the system's: QuickBooks Id, Xero InvoiceID)"))
}

fn io(e: crate::store::StoreError) -> Fail {
    Fail(exit::IOERR, e.to_string())
}

fn audit(
    store: &dyn Store,
    connection: &str,
    invoice: Option<&str>,
    kind: &str,
    message: String,
) -> Result<(), Fail> {
    store
        .append_audit(&AuditEvent {
            at: chrono::Utc::now(),
            connection: connection.into(),
            invoice_id: invoice.map(String::from),
            kind: kind.into(),
            message,
            detail: serde_json::Value::Null,
        })
        .and_then(|()| store.flush())
        .map_err(io)
}
