//! Issue #15's calls list and call outcomes, through the real binary with the daemon
//! running: after two months of chasing in both systems, `overdued calls` names each
//! customer to call once, with the phone numbers from the ledger's contact and what they
//! owe; `overdued called` records outcomes that change what overdued does next
//! (promise: nothing until the date, then chasing again; dispute: paused; collections:
//! nothing more; `resume` on an escalated invoice: reminders again), and refuses bad
//! input with exit 64 naming the field. `overdued export` writes the CSV and the letter.

#[path = "support/service.rs"]
mod service;
mod support;

use std::path::Path;
use std::sync::Arc;

use chrono::{Duration, NaiveDate, Utc};
use overdued::store::{SledStore, Store};
use overdued_connector::{Clock, TokenStore};
use overdued_sandbox::{Behaviour, CreatedInvoice, NewInvoice, System};
use rust_decimal::Decimal;
use service::{http_addr_from_log, run_to_end, spawn_daemon};
use support::*;

/// A ladder to an escalation a month after the due date, announced by a final notice.
const POLICY: &str = r#"
[policies.default]
notice_days = 7

[[policies.default.steps]]
offset = "0d"
action = "remind"
template = "due_today"

[[policies.default.steps]]
offset = "+7d"
action = "remind"
template = "follow_up"

[[policies.default.steps]]
offset = "+14d"
action = "remind"
template = "firm"

[[policies.default.steps]]
offset = "+21d"
action = "remind"
template = "final_notice"

[[policies.default.steps]]
offset = "+30d"
action = "escalate"
template = "escalation"
"#;

fn cli(config: &Path, args: &[&str]) -> (i32, String, String) {
    let mut all: Vec<&str> = args.to_vec();
    let c = config.to_str().unwrap();
    all.extend(["--config", c]);
    let (code, out, err) = run_to_end(&all);
    (code.expect("exit code"), out, err)
}

fn by_customer(invoices: &[CreatedInvoice], system: System, n: usize) -> &CreatedInvoice {
    invoices
        .iter()
        .filter(|i| i.system == system)
        .nth(n)
        .expect("invoice")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_calls_list_and_call_outcomes_with_the_daemon_running() {
    let today = Utc::now().with_timezone(&LONDON).date_naive();
    let start = today - Duration::days(62);
    let h = Harness::start(empty_world(london(start, 9, 0)), "Europe/London", POLICY).await;
    let due = start + Duration::days(2);
    let names = ["Alder Works", "Birch Ltd", "Cedar Co", "Dune Traders"];
    let mut invoices = Vec::new();
    for (i, name) in names.iter().enumerate() {
        invoices.extend(h.invoice_in_both(
            name,
            Decimal::new(100_000 + 25_000 * i as i64, 2),
            due - Duration::days(30),
            due,
            Behaviour::Never,
        ));
    }
    // A customer with no email address anywhere in the ledger.
    for system in [System::QuickBooks, System::Xero] {
        invoices.push(
            h.sandbox()
                .create_invoice(NewInvoice {
                    system,
                    tenant: None,
                    customer_name: "Elm Supplies".into(),
                    customer_email: String::new(),
                    number: None,
                    currency: None,
                    total: Decimal::new(42_000, 2),
                    issue_date: due - Duration::days(30),
                    due_date: due,
                    behaviour: Some(Behaviour::Never),
                })
                .expect("create invoice"),
        );
    }
    // Two months of daily cycles, up to yesterday.
    h.daily(start, today - Duration::days(1), 10).await;
    let escalated = h.ledger().iter().filter(|r| r.action == "escalate").count();
    assert_eq!(escalated, 8, "every emailed invoice escalated at +30d");

    // The daemon takes the store (in dry-run: the outcomes' effects are checked below
    // on the library's clock, not left to the real one).
    let Harness {
        running,
        config,
        store,
        clock,
        dir,
    } = h;
    drop(store);
    let text = std::fs::read_to_string(dir.path().join("overdued.toml")).unwrap();
    let path = dir.path().join("daemon.toml");
    std::fs::write(
        &path,
        text.replacen("[daemon]\n", "[daemon]\nmode = \"dry-run\"\n", 1),
    )
    .unwrap();
    let mut daemon = spawn_daemon(&path, None, "info");
    http_addr_from_log(&mut daemon);

    // The list: one entry per customer, with names, phones from the ledger and amounts.
    let (code, out, err) = cli(&path, &["calls"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("qbo: 5 customers to call"), "{out}");
    assert!(out.contains("xero: 5 customers to call"), "{out}");
    for name in names.iter().chain(&["Elm Supplies"]) {
        assert_eq!(
            out.matches(&format!("{name} (id ")).count(),
            2,
            "{name} once per connection:\n{out}"
        );
    }
    // QuickBooks' PrimaryPhone and Mobile; Xero's DEFAULT and MOBILE with their codes.
    assert!(
        out.contains("(415) 555-0101 (primary), (650) 555-0151 (mobile)"),
        "{out}"
    );
    assert!(
        out.contains("+44 20 7946 0001 (default), +44 7700 900001 (mobile)"),
        "{out}"
    );
    assert!(out.contains("phone:    none in the ledger"), "{out}");
    assert!(
        out.contains("owes USD 1,000.00, oldest 60 days overdue"),
        "{out}"
    );
    assert!(
        out.contains("no email address anywhere in the ledger"),
        "{out}"
    );
    assert!(out.contains("marked for collection: invoice "), "{out}");
    assert!(out.contains("reminder: "), "{out}");
    // Asked again, the same list: it never grows.
    let (_, again, _) = cli(&path, &["calls"]);
    assert_eq!(again, out);
    let (code, json, err) = cli(&path, &["calls", "xero", "--json"]);
    assert_eq!(code, 0, "{err}");
    let list: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 5, "{json}");

    // Status shows the same customers, once each, with amount and phone.
    let (code, status, err) = cli(&path, &["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        status.contains("5 to call (details: overdued calls qbo): "),
        "{status}"
    );
    assert!(
        status.contains("Alder Works (owes USD 1,000.00; (415) 555-0101)"),
        "{status}"
    );

    // Bad input, through the daemon: exit 64 naming the field.
    let until_ok = (today + Duration::days(7)).to_string();
    let (code, _, err) = cli(
        &path,
        &["called", "qbo", "Nobody Inc", "--outcome", "handled"],
    );
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("no customer with id, name or email \"Nobody Inc\""),
        "{err}"
    );
    let past = (today - Duration::days(1)).to_string();
    let (code, _, err) = cli(
        &path,
        &[
            "called",
            "qbo",
            "Birch Ltd",
            "--outcome",
            "promise",
            "--until",
            &past,
        ],
    );
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains(&format!("--until {past} is not in the future")),
        "{err}"
    );
    let far = (today + Duration::days(31)).to_string();
    let (code, _, err) = cli(
        &path,
        &[
            "called",
            "qbo",
            "Birch Ltd",
            "--outcome",
            "promise",
            "--until",
            &far,
        ],
    );
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("daemon.max_promise_days = 30"), "{err}");
    let (code, _, err) = cli(
        &path,
        &[
            "promise",
            "qbo",
            &by_customer(&invoices, System::QuickBooks, 1).number,
            "--until",
            &far,
        ],
    );
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("daemon.max_promise_days = 30"), "{err}");
    let birch_qbo = by_customer(&invoices, System::QuickBooks, 1).number.clone();
    let (code, _, err) = cli(
        &path,
        &[
            "called",
            "qbo",
            "Birch Ltd",
            "--outcome",
            "promise",
            "--until",
            &until_ok,
            "--amount",
            "5000",
            "--invoice",
            &birch_qbo,
        ],
    );
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("--amount 5000 must be at most the balance"),
        "{err}"
    );
    let (code, _, err) = cli(
        &path,
        &["called", "qbo", "Birch Ltd", "--outcome", "dispute"],
    );
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("--outcome dispute needs --reason"), "{err}");

    // The outcomes, in both systems.
    for conn in ["qbo", "xero"] {
        let (code, out, err) = cli(
            &path,
            &[
                "called",
                conn,
                "Birch Ltd",
                "--outcome",
                "promise",
                "--until",
                &until_ok,
            ],
        );
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("no chasing until then"), "{out}");
        let (code, out, err) = cli(
            &path,
            &[
                "called",
                conn,
                "cedar co",
                "--outcome",
                "dispute",
                "--reason",
                "says the goods were damaged",
            ],
        );
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains("paused (dispute: says the goods were damaged)"),
            "{out}"
        );
        let (code, out, err) = cli(
            &path,
            &["called", conn, "Dune Traders", "--outcome", "collections"],
        );
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("a note goes onto invoice"), "{out}");
        let (code, out, err) = cli(
            &path,
            &["called", conn, "Elm Supplies", "--outcome", "no-answer"],
        );
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("stays on the calls list from"), "{out}");
    }
    let alder_qbo = by_customer(&invoices, System::QuickBooks, 0).number.clone();
    let (code, out, err) = cli(&path, &["resume", "qbo", &alder_qbo]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("taken back from collection"), "{out}");
    let alder_xero = by_customer(&invoices, System::Xero, 0).number.clone();
    let (code, out, err) = cli(&path, &["resume", "xero", &alder_xero]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("taken back from collection"), "{out}");

    // Off the list now: Alder taken back into the ladder, Birch promised, Cedar
    // disputed, Dune with an agency, Elm to be called again on the next working day.
    let (code, out, err) = cli(&path, &["calls"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("qbo: nobody to call today"), "{out}");
    assert!(out.contains("xero: nobody to call today"), "{out}");

    // The export, written by the CLI from what the daemon answers.
    let exports = dir.path().join("exports");
    let (code, out, err) = cli(
        &path,
        &[
            "export",
            "qbo",
            "Dune Traders",
            "--out",
            exports.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(".csv") && out.contains(".txt"), "{out}");
    let mut files: Vec<_> = std::fs::read_dir(&exports)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let csv = std::fs::read_to_string(&files[0]).unwrap();
    let letter = std::fs::read_to_string(&files[1]).unwrap();
    assert!(
        csv.lines().filter(|l| l.starts_with("message,")).count() >= 4,
        "{csv}"
    );
    assert!(csv.contains("escalation,"), "{csv}");
    assert!(
        csv.contains(",telephone,call with Dune Traders: sent to a collection agency"),
        "{csv}"
    );
    assert!(letter.contains("Account of Dune Traders"), "{letter}");
    assert!(letter.contains("Reminders and notices sent"), "{letter}");

    daemon.signal(libc::SIGTERM);
    let (status, _) = daemon.wait_exit(std::time::Duration::from_secs(10));
    assert_eq!(status, Some(0), "{}", daemon.stderr_text());

    // What overdued does next, on the library's clock over the following three weeks.
    let store = Arc::new(SledStore::open(&config.daemon.state_dir).expect("store"));
    let before = running.sandbox.ledger().effects.len();
    let mut d = today + Duration::days(1);
    while d <= today + Duration::days(21) {
        let t = london(d, 10, 0);
        running.sandbox.set_now(t);
        clock.set(t);
        let s: Arc<dyn Store> = store.clone();
        let tokens: Arc<dyn TokenStore> = store.clone();
        let c: Arc<dyn Clock> = clock.clone();
        for (name, r) in overdued::cycle::run_all_once(&config, s, tokens, c).await {
            r.unwrap_or_else(|e| panic!("{d}: cycle of {name}: {e}"));
        }
        d = d.succ_opt().unwrap();
    }
    let rows = read_ledger(
        &running.sandbox.ledger().effects[before..],
        &[store.as_ref()],
    );
    let after = |system: System, n: usize| -> Vec<(NaiveDate, String, String)> {
        let id = &by_customer(&invoices, system, n).id;
        rows.iter()
            .filter(|r| r.system == system && &r.invoice_id == id && !r.is_audit())
            .map(|r| (r.local_date(), r.action.clone(), r.step.clone()))
            .collect()
    };
    let grace = i64::from(config.engine.promise_grace_days);
    let until = today + Duration::days(7);
    for system in [System::QuickBooks, System::Xero] {
        // Resumed: reminders again (the escalation is not repeated).
        let alder = after(system, 0);
        assert!(
            alder
                .iter()
                .any(|(_, a, s)| a == "remind" && s.starts_with("resumed/")),
            "{system:?} Alder Works: {alder:?}"
        );
        assert!(alder.iter().all(|(_, a, _)| a != "escalate"), "{alder:?}");
        // Promised: only the call's note until the promise (and its grace) has passed;
        // then chasing again.
        let birch = after(system, 1);
        assert!(
            birch
                .iter()
                .filter(|(_, a, _)| a == "remind")
                .all(|(on, _, _)| *on > until + Duration::days(grace)),
            "{system:?} Birch Ltd: {birch:?}"
        );
        assert!(
            birch.iter().any(|(_, a, _)| a == "remind"),
            "{system:?} Birch Ltd: {birch:?}"
        );
        // Disputed and with an agency: the call's note in the ledger, nothing else.
        for n in [2, 3] {
            let rows = after(system, n);
            assert!(
                rows.iter()
                    .all(|(_, a, s)| a == "note" && s.starts_with("call_outcome@")),
                "{system:?} {}: {rows:?}",
                names[n]
            );
            assert_eq!(rows.len(), 1, "{system:?} {}: {rows:?}", names[n]);
        }
    }
}

/// On the very first cycle (an incremental pass that reads everything, before any full
/// reconciliation) the contacts of the customers it meets are read too: the calls list
/// has their phone numbers from day one, in both vendors' shapes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_cycle_reads_the_phone_numbers_of_new_customers() {
    let start = date(2026, 11, 2);
    let h = Harness::start(empty_world(london(start, 9, 0)), "Europe/London", POLICY).await;
    let created = h.invoice_in_both(
        "Alder Works",
        Decimal::new(50_000, 2),
        start - Duration::days(40),
        start - Duration::days(10),
        Behaviour::Never,
    );
    h.cycle_at(london(start, 10, 0)).await;
    for (i, conn) in created.iter().zip(["qbo", "xero"]) {
        let c = h
            .store
            .get_customer(conn, &i.customer_id)
            .expect("store")
            .unwrap_or_else(|| panic!("{conn}: customer {} not stored", i.customer_id));
        let numbers: Vec<&str> = c.phones.iter().map(|p| p.number.as_str()).collect();
        match conn {
            "qbo" => assert_eq!(numbers, ["(415) 555-0101", "(650) 555-0151"]),
            _ => assert_eq!(numbers, ["+44 20 7946 0001", "+44 7700 900001"]),
        }
    }
}
