//! `overdued history CONNECTION INVOICE`: every observation and action, oldest first.

use std::path::Path;

use crate::store::{JournalState, Store};

use super::common::{load_config, open_store, Fail};
use super::exit;

pub fn run(config: Option<&Path>, connection: &str, invoice: &str) -> u8 {
    match history(config, connection, invoice) {
        Ok(text) => {
            print!("{text}");
            0
        }
        Err(e) => e.report(),
    }
}

fn history(config: Option<&Path>, connection: &str, invoice: &str) -> Result<String, Fail> {
    let c = load_config(config)?;
    let tz = c.daemon.time_zone;
    let store = open_store(&c)?;
    render(store.as_ref(), connection, invoice, tz)
}

pub fn render(
    store: &dyn Store,
    connection: &str,
    invoice: &str,
    tz: chrono_tz::Tz,
) -> Result<String, Fail> {
    use std::fmt::Write;
    let io = |e: crate::store::StoreError| Fail(exit::IOERR, e.to_string());
    let rec = store.get_invoice(connection, invoice).map_err(io)?;
    let events = store.audit_for_invoice(connection, invoice).map_err(io)?;
    let journal = store.journal_for_invoice(connection, invoice).map_err(io)?;
    if rec.is_none() && events.is_empty() {
        return Err(Fail(
            exit::USAGE,
            format!("{connection}: nothing is known about invoice {invoice:?}"),
        ));
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
            s.due_money(),
            s.total_money(),
            s.due_date,
            s.status
        );
    }
    for e in &events {
        let _ = writeln!(
            out,
            "{}  {:<9} {}",
            e.at.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z"),
            e.kind,
            e.message
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
