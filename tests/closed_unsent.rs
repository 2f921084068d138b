//! An action whose write was applied but whose answer was lost, and whose invoice is
//! paid before the retry, is not closed as skipped: the executor looks in the ledger
//! first, finds the write, records the action as done and writes its audit note. (The
//! key-window torture found a Xero late fee charged, denied by the journal and left
//! without its audit note.)

mod support;

use std::sync::Arc;

use overdued::cycle::run_all_once;
use overdued::store::Store;
use overdued_connector::{Clock, TokenStore};
use overdued_sandbox::{Behaviour, FaultConfig, FaultKind};
use rust_decimal::Decimal;
use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_reminder_sent_whose_answer_was_lost_is_done_with_its_note_when_the_invoice_is_paid() {
    let start = london(date(2026, 1, 5), 6, 0);
    let h = Harness::start(empty_world(start), "Europe/London", SCENARIO_POLICY).await;
    // Due on Thursday: the -3d reminder goes out on Monday; the customer pays a day
    // after it.
    let created = h.invoice_in_both(
        "Ada Lovelace",
        Decimal::new(1000, 0),
        date(2025, 12, 1),
        date(2026, 1, 8),
        Behaviour::PaysAfterFirstReminder { days: 1 },
    );
    assert_eq!(created.len(), 2);
    h.sandbox().set_faults(FaultConfig {
        rate: 1.0,
        kinds: vec![FaultKind::LostResponse],
        seed: 1,
        endpoints: vec![
            "quickbooks.invoice.send".into(),
            "xero.invoices.email".into(),
        ],
        ..FaultConfig::default()
    });
    // Monday: the reminders are sent, their answers lost.
    let t = london(date(2026, 1, 5), 10, 0);
    h.sandbox().set_now(t);
    h.clock.set(t);
    let store: Arc<dyn Store> = h.store.clone();
    let tokens: Arc<dyn TokenStore> = h.store.clone();
    let clock: Arc<dyn Clock> = h.clock.clone();
    for (name, r) in run_all_once(&h.config, store, tokens, clock).await {
        r.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    h.sandbox().set_faults(FaultConfig::default());
    // Wednesday: both invoices are paid; the failed reminders are looked for.
    h.cycle_at(london(date(2026, 1, 7), 10, 0)).await;
    let rows = h.ledger();
    assert_eq!(
        rows.iter().filter(|r| r.action == "remind").count(),
        2,
        "{rows:#?}"
    );
    assert_ledger_consistent(&rows);
    for c in created {
        let conn = conn_of(c.system);
        let states = journal_states(h.store.as_ref(), conn, &c.id);
        assert!(
            states.iter().any(|(s, st)| s == "-3d" && st == "done"),
            "{conn}: {states:?}"
        );
    }
}
