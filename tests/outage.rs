//! A total outage of the vendors' email sending (every call to QuickBooks'
//! `invoice/{id}/send` and Xero's `Invoices/{id}/Email` answers 5xx) during a cycle over
//! the sandbox's 200 generated invoices: the circuit breaker of that endpoint opens
//! after a few failures, the cycle ends in seconds instead of retrying every reminder
//! with backoff, the reminders stay in the journal for the next cycle (not given up),
//! and the first cycle after the outage sends them.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use overdued::cycle::run_all_once;
use overdued::executor::Outcome;
use overdued::store::{JournalState, Store};
use overdued_connector::runtime::BreakerPolicy;
use overdued_connector::{ActionKind, Clock, TokenStore};
use overdued_sandbox::{FaultConfig, FaultKind, SandboxOptions};
use support::*;

const SEND_ENDPOINTS: [&str; 2] = ["quickbooks.invoice.send", "xero.invoices.email"];

fn send_calls(stats: &serde_json::Value, endpoint: &str) -> u64 {
    stats["requests"][endpoint].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_outage_opens_the_breaker_and_leaves_reminders_for_the_next_cycle() {
    let opts = SandboxOptions {
        enforce_limits: false,
        ..SandboxOptions::default()
    };
    let start = opts.start;
    let h = Harness::start(opts, "Europe/London", SCENARIO_POLICY).await;
    h.sandbox().set_faults(FaultConfig {
        rate: 1.0,
        kinds: vec![FaultKind::ServerError],
        seed: 7,
        endpoints: SEND_ENDPOINTS.iter().map(|s| s.to_string()).collect(),
        ..FaultConfig::default()
    });
    // Monday 2026-01-05, 10:00 in London: inside the send window, many invoices due.
    let t = start + chrono::Duration::hours(1);
    h.sandbox().set_now(t);
    h.clock.set(t);
    let store: Arc<dyn Store> = h.store.clone();
    let tokens: Arc<dyn TokenStore> = h.store.clone();
    let clock: Arc<dyn Clock> = h.clock.clone();

    let began = Instant::now();
    let results = run_all_once(&h.config, store.clone(), tokens.clone(), clock.clone()).await;
    let took = began.elapsed();

    let threshold = u64::from(BreakerPolicy::default().threshold);
    let stats = h.sandbox().stats();
    let mut waiting = 0usize;
    for (name, r) in results {
        let rep = r.unwrap_or_else(|e| panic!("cycle of {name} failed: {e}"));
        let reminders: Vec<&Outcome> = rep
            .exec
            .results
            .iter()
            .filter(|r| r.1 == ActionKind::Remind)
            .map(|r| &r.3)
            .collect();
        assert!(
            reminders.len() >= 5,
            "{name}: only {} reminders were due; the test needs an outage that matters",
            reminders.len()
        );
        assert!(
            reminders
                .iter()
                .all(|o| matches!(o, Outcome::Failed { retry: true, .. })),
            "{name}: {reminders:?}"
        );
        let refused = reminders
            .iter()
            .filter(
                |o| matches!(o, Outcome::Failed { error, .. } if error.contains("circuit open")),
            )
            .count();
        assert!(
            refused + 1 >= reminders.len(),
            "{name}: only {refused} of {} reminders were held back by the breaker",
            reminders.len()
        );
        waiting += reminders.len();
    }
    for ep in SEND_ENDPOINTS {
        let calls = send_calls(&stats, ep);
        assert!(
            calls >= 1 && calls <= threshold + 2,
            "{ep}: {calls} calls in one cycle (breaker threshold {threshold})"
        );
    }
    assert!(
        took < Duration::from_secs(30),
        "one cycle in a total email outage took {took:?}"
    );
    eprintln!("one cycle over 200 invoices in a total email outage: {took:?}; {waiting} reminders left for the next cycle");

    // Left for the next cycle, not given up: every reminder is still unfinished, and
    // those the breaker held back were never counted as a failed attempt.
    for conn in [QBO, XERO] {
        let open = h.store.unfinished_journal(conn).expect("journal");
        let reminders: Vec<_> = open
            .iter()
            .filter(|e| e.kind == ActionKind::Remind)
            .collect();
        assert!(!reminders.is_empty(), "{conn}: no reminder left waiting");
        let untouched = reminders
            .iter()
            .filter(|e| matches!(e.state, JournalState::Intent))
            .count();
        assert!(
            untouched + 1 >= reminders.len(),
            "{conn}: {untouched} of {} reminders kept as intents",
            reminders.len()
        );
        assert!(reminders.iter().all(|e| !matches!(
            e.state,
            JournalState::Skipped { .. } | JournalState::Done { .. }
        )));
    }

    // The outage ends. Each `run --once` builds its connectors afresh, so the next
    // cycle starts with closed breakers: every reminder left waiting goes out then
    // (`cycle_at` fails the test on any failed action).
    h.sandbox().set_faults(FaultConfig::default());
    let reports = h.cycle_at(t + chrono::Duration::hours(1)).await;
    let sent: usize = reports
        .iter()
        .map(|r| r.exec.count(|o| matches!(o, Outcome::Done { .. })))
        .sum();
    assert!(
        sent >= waiting,
        "{sent} actions done after the outage, {waiting} were waiting"
    );
    for conn in [QBO, XERO] {
        let open = h.store.unfinished_journal(conn).expect("journal");
        assert!(
            open.iter()
                .all(|e| e.kind != ActionKind::Remind
                    || matches!(e.state, JournalState::Done { .. })),
            "{conn}: {open:#?}"
        );
    }
}
