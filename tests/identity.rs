//! Identity and supersession as an operator meets them: keys that survive renaming a
//! connection, one table per ledger, and the first good day after a week-long outage of
//! the vendors' email endpoints.

mod support;

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;

use overdued::cycle::run_all_once;
use overdued::store::{JournalState, Store};
use overdued_connector::{Clock, TokenStore};
use overdued_sandbox::{Behaviour, FaultConfig, FaultKind};
use rust_decimal_macros::dec;
use support::*;

const POLICY: &str = r#"
[policies.default]
max_reminders_per_customer_per_day = 1

[[policies.default.steps]]
offset = "0d"
action = "remind"

[[policies.default.steps]]
offset = "+7d"
action = "remind"

[[policies.default.steps]]
offset = "+14d"
action = "remind"
"#;

/// Every cycle of `config` at `t`; the reports by connection, failures as strings.
async fn cycle(
    h: &Harness,
    config: &overdued::config::Config,
    t: chrono::DateTime<chrono::Utc>,
) -> Vec<(String, Result<overdued::cycle::CycleReport, String>)> {
    h.sandbox().set_now(t);
    h.clock.set(t);
    let store: Arc<dyn Store> = h.store.clone();
    let tokens: Arc<dyn TokenStore> = h.store.clone();
    let clock: Arc<dyn Clock> = h.clock.clone();
    run_all_once(config, store, tokens, clock).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renaming_both_connections_repeats_nothing_the_same_day() {
    let start = london(date(2026, 3, 2), 8, 0);
    let h = Harness::start(empty_world(start), "Europe/London", POLICY).await;
    for (i, name) in ["Alder Books", "Birch Cafe"].into_iter().enumerate() {
        h.invoice_in_both(
            name,
            dec!(120.00) + rust_decimal::Decimal::from(i as u32),
            date(2026, 2, 1),
            date(2026, 3, 2),
            Behaviour::Never,
        );
    }
    h.daily(date(2026, 3, 2), date(2026, 3, 16), 10).await;
    let before = h.ledger();
    assert_eq!(
        before.iter().filter(|r| !r.is_audit()).count(),
        12,
        "three reminders of two invoices in two systems: {before:#?}"
    );

    // The same file with both tables renamed. The grant moves with them (a rename in the
    // config leaves the tokens under the old name: the owner reconnects; here the stored
    // tokens are copied, as `overdued connect` would store fresh ones).
    let text = std::fs::read_to_string(&h.config.path).expect("config");
    let renamed = text
        .replace(&format!("[quickbooks.{QBO}]"), "[quickbooks.shop-books]")
        .replace(&format!("[xero.{XERO}]"), "[xero.shop-uk]");
    assert_ne!(renamed, text);
    let path = h.dir.path().join("renamed.toml");
    std::fs::write(&path, &renamed).expect("write");
    let config = overdued::config::parse(&renamed, &path).unwrap_or_else(|e| panic!("{e}"));
    for (old, new) in [(QBO, "shop-books"), (XERO, "shop-uk")] {
        let t = h.store.get_tokens(old).expect("tokens").expect("stored");
        h.store.put_tokens(new, &t).expect("copy");
    }

    for hour in [11, 15] {
        for (name, r) in cycle(&h, &config, london(date(2026, 3, 16), hour, 0)).await {
            let rep = r.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(
                rep.plan.actions.is_empty(),
                "{name} plans again what the old name did: {:#?}",
                rep.plan.actions
            );
        }
    }
    let after = h.ledger();
    assert_eq!(
        canonical(&after),
        canonical(&before),
        "{}",
        multiset_diff(&canonical(&after), &canonical(&before))
    );
    // And the next step still comes, once, under the new names.
    h.sandbox().set_now(london(date(2026, 3, 23), 10, 0));
    for (name, r) in cycle(&h, &config, london(date(2026, 3, 23), 10, 0)).await {
        r.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let later = h.ledger();
    assert_eq!(
        later.len(),
        after.len(),
        "nothing more is due by the +14d policy"
    );
}

#[test]
fn two_tables_on_one_realm_fail_check_with_78() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        "[quickbooks.shop]\nrealm_id = \"9341453\"\nclient_id = \"a\"\nclient_secret = \"s\"\n\n\
         [quickbooks.shop-again]\nrealm_id = \"9341453\"\nclient_id = \"b\"\nclient_secret = \"t\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_overdued"))
        .args(["check", "--config"])
        .arg(&path)
        .env_remove("OVERDUED_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:7:12:", path.display())),
        "at the second table's realm_id: {stderr}"
    );
    assert!(
        stderr.contains("[quickbooks.shop-again]") && stderr.contains("[quickbooks.shop]"),
        "{stderr}"
    );

    // Xero: the same organisation by id, whatever the case.
    std::fs::write(
        &path,
        "[xero.uk]\nclient_id = \"a\"\nclient_secret = \"s\"\ntenant = \"0a1b2c3d-0000-4000-8000-00000000000f\"\n\n\
         [xero.uk2]\nclient_id = \"a\"\nclient_secret = \"s\"\ntenant = \"0A1B2C3D-0000-4000-8000-00000000000F\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_overdued"))
        .args(["check", "--config"])
        .arg(&path)
        .env_remove("OVERDUED_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("[xero.uk2]") && stderr.contains("[xero.uk]"),
        "{stderr}"
    );
}

/// A week in which both vendors' email endpoints answer 5xx, then the first good day:
/// each invoice gets at most one reminder that day (the current step, never a stale
/// one beside it), no customer more than the daily limit, and the stale steps are
/// journalled as superseded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_week_long_email_outage_then_one_reminder_per_invoice() {
    let start = london(date(2026, 3, 2), 8, 0);
    let h = Harness::start(empty_world(start), "Europe/London", POLICY).await;
    // One customer with two invoices (the daily limit is one), one with one.
    let mut customer_of: HashMap<(String, String), String> = HashMap::new();
    for (name, total, due) in [
        ("Alder Books", dec!(200.00), date(2026, 3, 2)),
        ("Alder Books", dec!(90.00), date(2026, 3, 2)),
        ("Birch Cafe", dec!(75.00), date(2026, 3, 2)),
    ] {
        for c in h.invoice_in_both(name, total, date(2026, 2, 1), due, Behaviour::Never) {
            customer_of.insert((format!("{:?}", c.system), c.id), c.customer_id);
        }
    }
    // Day 0 goes out, then the outage from +7d for a week.
    h.daily(date(2026, 3, 2), date(2026, 3, 8), 10).await;
    let before = h.ledger();
    h.sandbox().set_faults(FaultConfig {
        rate: 1.0,
        kinds: vec![FaultKind::ServerError],
        endpoints: vec![
            "quickbooks.invoice.send".into(),
            "xero.invoices.email".into(),
        ],
        ..FaultConfig::default()
    });
    let mut d = date(2026, 3, 9);
    while d <= date(2026, 3, 16) {
        for (name, r) in cycle(&h, &h.config, london(d, 10, 0)).await {
            r.unwrap_or_else(|e| panic!("{d} {name}: {e}"));
        }
        d = d.succ_opt().unwrap();
    }
    let during = h.ledger();
    assert_eq!(
        canonical(&during),
        canonical(&before),
        "nothing reached the ledger during the outage"
    );
    h.sandbox().set_faults(FaultConfig::default());
    let good = date(2026, 3, 17);
    for hour in [10, 12] {
        for (name, r) in cycle(&h, &h.config, london(good, hour, 0)).await {
            r.unwrap_or_else(|e| panic!("{good} {name}: {e}"));
        }
    }
    let after = h.ledger();
    assert_ledger_consistent(&after);
    let today: Vec<_> = after
        .iter()
        .filter(|r| !r.is_audit() && r.at >= london(good, 0, 0))
        .collect();
    let mut per_invoice: HashMap<(String, String), usize> = HashMap::new();
    for r in &today {
        *per_invoice
            .entry((format!("{:?}", r.system), r.invoice_id.clone()))
            .or_default() += 1;
    }
    assert!(
        per_invoice.values().all(|n| *n <= 1),
        "an invoice reminded twice on the first good day: {today:#?}"
    );
    assert!(
        today.iter().all(|r| r.step == "+14d"),
        "only the current step goes out: {today:#?}"
    );
    let mut per_customer: HashMap<String, usize> = HashMap::new();
    for r in &today {
        let c = &customer_of[&(format!("{:?}", r.system), r.invoice_id.clone())];
        *per_customer
            .entry(format!("{:?}/{c}", r.system))
            .or_default() += 1;
    }
    assert!(
        per_customer.values().all(|n| *n <= 1),
        "a customer reminded beyond the daily limit of one: {today:#?}"
    );
    // One reminder per customer and system: Alder's second invoice waits for tomorrow.
    assert_eq!(today.len(), 4, "{today:#?}");
    // The +7d reminders never went out: superseded, in the journal.
    let mut superseded = 0;
    for conn in [QBO, XERO] {
        h.store
            .for_each_invoice(conn, &mut |inv| {
                for e in h
                    .store
                    .journal_for_invoice(conn, &inv.snapshot.remote_id)
                    .expect("journal")
                {
                    if e.step_id == "+7d" {
                        assert!(matches!(e.state, JournalState::Superseded { .. }), "{e:?}");
                        superseded += 1;
                        let shown = overdued::ops::history(
                            h.store.as_ref(),
                            conn,
                            &inv.snapshot.remote_id,
                            chrono_tz::Europe::London,
                        )
                        .expect("history");
                        assert!(
                            shown.contains("remind (+7d) superseded, never carried out"),
                            "{shown}"
                        );
                    }
                }
                true
            })
            .expect("invoices");
    }
    assert!(superseded >= 2, "{superseded} superseded +7d reminders");
}
