//! Payment plans end to end. In both systems (the sandbox, the real connectors, sync,
//! planner, executor and store on a manual clock): a plan of 3 instalments kept with a
//! part-payment carried across instalments gets only its own messages on their days; its
//! twin whose first instalment is missed gets the "plan missed" message first, then the
//! ladder resumes. And the commands through the real binary while the daemon runs.
//!
//! The calendar: 2026-10-01 is a Thursday; the policy is [`support::SCENARIO_POLICY`]
//! (steps -3d, 0d, +7d, +14d, +30d fee, +60d, +90d; window 09-17 Mon-Fri, Europe/London).

mod support;

use chrono::NaiveDate;
use overdued::arrangements::ops::PlanSpec;
use overdued::ops::{apply, Op};
use overdued_sandbox::{Behaviour, CreatedInvoice, System};
use rust_decimal::Decimal;
use support::*;

fn d(m: u32, day: u32) -> NaiveDate {
    date(2026, m, day)
}

fn arrange(h: &Harness, inv: &CreatedInvoice) -> String {
    let op = Op::Arrange {
        connection: conn_of(inv.system).into(),
        target: inv.number.clone(),
        invoices: vec![],
        schedule: PlanSpec::Even {
            instalments: 3,
            every: 14,
            first: d(10, 21),
        },
    };
    apply(&op, &h.config, h.store.as_ref(), london(d(10, 12), 12, 0))
        .unwrap_or_else(|e| panic!("arrange {}: {e}", inv.number))
}

/// The season both scenarios run: a kept plan (P1) and its missed twin (P2) of 300 due
/// 1 October, agreed on 12 October for 3 instalments of 100 every 14 days from the 21st,
/// then daily cycles to 25 November with the kept plan's payments.
async fn season(h: &Harness) -> (Vec<CreatedInvoice>, Vec<CreatedInvoice>) {
    let total: Decimal = "300.00".parse().unwrap();
    let kept = h.invoice_in_both("Kept Plan Ltd", total, d(9, 1), d(10, 1), Behaviour::Never);
    let missed = h.invoice_in_both(
        "Missed Plan Ltd",
        total,
        d(9, 1),
        d(10, 1),
        Behaviour::Never,
    );
    h.daily(d(9, 21), d(10, 12), 10).await;

    for inv in &kept {
        let out = arrange(h, inv);
        assert!(out.contains("payment plan P1 agreed"), "{out}");
        assert!(
            out.contains("USD 100.00") || out.contains("100.00"),
            "{out}"
        );
    }
    for inv in &missed {
        let out = arrange(h, inv);
        assert!(out.contains("payment plan P2 agreed"), "{out}");
    }

    // The kept plan's payments: the first instalment early, the second in two parts
    // (the rest within the grace days), the third the day after its date.
    let payments = [
        (d(10, 20), "100.00"),
        (d(11, 3), "60.00"),
        (d(11, 6), "40.00"),
        (d(11, 19), "100.00"),
    ];
    let mut day = d(10, 13);
    while day <= d(11, 25) {
        for (on, amount) in &payments {
            if *on == day {
                h.sandbox().set_now(london(day, 8, 0));
                for inv in &kept {
                    h.sandbox()
                        .add_payment(
                            inv.system,
                            &inv.tenant,
                            &inv.id,
                            amount.parse().unwrap(),
                            day,
                        )
                        .unwrap();
                }
            }
        }
        h.cycle_at(london(day, 10, 0)).await;
        day = day.succ_opt().unwrap();
    }
    (kept, missed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_plan_and_a_missed_twin_in_both_systems() {
    let h = Harness::start(
        empty_world(london(d(9, 21), 9, 0)),
        "Europe/London",
        SCENARIO_POLICY,
    )
    .await;
    let (kept, missed) = season(&h).await;

    let rows = h.ledger();
    assert_ledger_consistent(&rows);
    for inv in &kept {
        let after: Vec<_> = actions_on(&rows, &inv.id)
            .into_iter()
            .filter(|a| a.0 > d(10, 12))
            .collect();
        assert_eq!(
            after,
            vec![
                act(d(10, 13), "note", "plan/P1/agreed"),
                // The heads-up three days before falls on a Sunday: Monday.
                act(d(10, 19), "remind", "instalment/P1/1/heads_up"),
                // Paid on the 20th: no reminder on the first instalment's day.
                act(d(11, 2), "remind", "instalment/P1/2/heads_up"),
                // 60 of 100 paid the day before: still reminded, for the 40 left.
                act(d(11, 4), "remind", "instalment/P1/2/due"),
                act(d(11, 16), "remind", "instalment/P1/3/heads_up"),
                act(d(11, 18), "remind", "instalment/P1/3/due"),
            ],
            "{:?} {}",
            inv.system,
            inv.number
        );
        let before: Vec<_> = actions_on(&rows, &inv.id)
            .into_iter()
            .filter(|a| a.0 <= d(10, 12))
            .map(|a| a.2)
            .collect();
        assert_eq!(before, ["-3d", "0d", "+7d"], "{:?}", inv.system);
    }
    for inv in &missed {
        let after: Vec<_> = actions_on(&rows, &inv.id)
            .into_iter()
            .filter(|a| a.0 > d(10, 12))
            .collect();
        assert_eq!(
            after[..5],
            [
                act(d(10, 13), "note", "plan/P2/agreed"),
                act(d(10, 19), "remind", "instalment/P2/1/heads_up"),
                act(d(10, 21), "remind", "instalment/P2/1/due"),
                // Unpaid after the 3 grace days (to the 24th): broken on Sunday the 25th,
                // and the first message after it, on Monday, says so.
                act(d(10, 26), "remind", "promise/plan-P2"),
                // The ladder stood after +7d when the plan was agreed (day 11); its next
                // step, +14d, comes as late as the plan lasted (to the 26th): day 28.
                act(d(10, 29), "remind", "+14d"),
            ],
            "{:?} {after:?}",
            inv.system
        );
        // Chasing resumed within plan_grace_days plus one cycle (a weekend between).
        // A fee only after the notice it needs (7 days after +14d's message).
        for a in &after {
            if a.1 == "late_fee" {
                assert!(
                    a.0 >= d(11, 5),
                    "{:?}: fee too early: {after:?}",
                    inv.system
                );
            }
        }
    }

    // `arrangements` tells the owner how each stands.
    let list = apply(
        &Op::Arrangements {
            connection: None,
            json: true,
        },
        &h.config,
        h.store.as_ref(),
        london(d(11, 25), 12, 0),
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    let status = |conn: &str, id: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|p| p["connection"] == conn && p["id"] == id)
            .map(|p| (p["status"].as_str().unwrap().to_string(), p["paid"].clone()))
            .unwrap()
    };
    for conn in [QBO, XERO] {
        assert_eq!(status(conn, "P1").0, "completed", "{list}");
        assert_eq!(status(conn, "P1").1, "300.00", "{list}");
        assert_eq!(status(conn, "P2").0, "broken", "{list}");
    }
    assert!(kept
        .iter()
        .all(|i| i.system == System::QuickBooks || i.system == System::Xero));
}

/// With overdued's own email the customer reads the plan: a confirmation listing dates
/// and amounts, each heads-up and reminder with the instalments still to pay, and the
/// "plan has ended" message before the ladder's next reminder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_smtp_the_customer_reads_the_plan() {
    let rx = overdued::channels::loopback::Receiver::start()
        .await
        .unwrap();
    let policies = format!(
        "[channels.smtp]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\nfrom = \"billing@example.com\"\nfrom_name = \"Example Ltd Accounts\"\n{}",
        rx.addr.port(),
        SCENARIO_POLICY.replace(
            "[policies.default]\n",
            "[policies.default]\npayment_instructions = \"Bank transfer to Example Ltd, sort code 12-34-56, account 12345678.\"\nattach_pdf = false\n",
        )
    );
    let h = Harness::start(
        empty_world(london(d(9, 21), 9, 0)),
        "Europe/London",
        &policies,
    )
    .await;
    let (kept, missed) = season(&h).await;
    let messages = rx.messages();
    let to = |who: &str| -> Vec<(String, String)> {
        messages
            .iter()
            .filter(|m| m.rcpt_to.iter().any(|r| r.contains(who)))
            .map(|m| {
                (
                    m.header("Subject").unwrap_or_default(),
                    m.data.replace("=\r\n", "").replace("=3D", "="),
                )
            })
            .collect()
    };
    // The sandbox's QuickBooks company bills in USD, its Xero organisation in GBP: the
    // expectations are written in USD.
    for (system, cur) in [("quickbooks", "USD"), ("xero", "GBP")] {
        let k: Vec<(String, String)> = to(&format!("kept.plan.ltd@{system}"))
            .into_iter()
            .map(|(s, b)| (s.replace(cur, "USD"), b.replace(cur, "USD")))
            .collect();
        let subjects: Vec<String> = k.iter().map(|(s, _)| s.clone()).collect();
        let n = number_in(&kept, system);
        assert_eq!(
            subjects,
            [
                format!("Payment plan P1 for invoice {n}: our confirmation"),
                "Payment plan: instalment 1 of USD 100.00 is due on 21 October 2026".into(),
                "Payment plan: instalment 2 of USD 100.00 is due on 4 November 2026".into(),
                "Payment plan: instalment 2 of USD 40.00 is due today".into(),
                "Payment plan: instalment 3 of USD 100.00 is due on 18 November 2026".into(),
                "Payment plan: instalment 3 of USD 100.00 is due today".into(),
            ],
            "{system}"
        );
        let confirmation = &k[0].1;
        for line in [
            "1. 21 October 2026: USD 100.00",
            "2. 4 November 2026: USD 100.00",
            "3. 18 November 2026: USD 100.00",
            "Bank transfer to Example Ltd",
        ] {
            assert!(confirmation.contains(line), "{system}: {confirmation}");
        }
        // Part-paid: what is left of the instalment, and the rest of the schedule.
        let part = &k[3].1;
        assert!(
            part.contains("2. 4 November 2026: USD 40.00 of USD 100.00 (the rest paid)"),
            "{part}"
        );
        assert!(part.contains("3. 18 November 2026: USD 100.00"), "{part}");
        assert!(!part.contains("1. 21 October"), "{part}");

        let m: Vec<(String, String)> = to(&format!("missed.plan.ltd@{system}"))
            .into_iter()
            .map(|(s, b)| (s.replace(cur, "USD"), b.replace(cur, "USD")))
            .collect();
        let subjects: Vec<String> = m.iter().map(|(s, _)| s.clone()).collect();
        let n = number_in(&missed, system);
        assert!(subjects.len() > 4, "the ladder resumed: {subjects:?}");
        assert_eq!(
            subjects[..4],
            [
                format!("Payment plan P2 for invoice {n}: our confirmation"),
                "Payment plan: instalment 1 of USD 100.00 is due on 21 October 2026".into(),
                "Payment plan: instalment 1 of USD 100.00 is due today".into(),
                format!("Invoice {n}: the payment plan has ended"),
            ],
            "{system}"
        );
        let ended = &m[3].1;
        assert!(
            ended.contains("We have not received instalment 1"),
            "{ended}"
        );
        assert!(ended.contains("USD 300.00 remains due"), "{ended}");
    }
}

fn number_in(invoices: &[CreatedInvoice], system: &str) -> String {
    invoices
        .iter()
        .find(|i| i.system.as_str().eq_ignore_ascii_case(system))
        .unwrap()
        .number
        .clone()
}

#[path = "support/service.rs"]
mod service;

/// `arrange`, `arrangements` and `cancel` through the real binary while the daemon holds
/// the store; bad input exits 64 naming the option; plans survive the daemon's restart.
#[test]
fn the_commands_work_with_the_daemon_running() {
    use service::{run_to_end, sandbox_post, spawn_daemon, start_sandbox};
    let dir = tempfile::tempdir().unwrap();
    let sb = start_sandbox(dir.path());
    let cfg = sb.config.to_str().unwrap().to_string();
    let today = chrono::Utc::now().date_naive();
    for (number, currency, total) in [
        ("PLAN-1", "GBP", "300.00"),
        ("PLAN-2", "GBP", "100.00"),
        ("PLAN-3", "EUR", "50.00"),
    ] {
        sandbox_post(
            &sb,
            "/_sandbox/invoices",
            &serde_json::json!({
                "system": "xero",
                "customer_name": "Plan Test Ltd",
                "customer_email": "ap@plan-test.example",
                "number": number,
                "currency": currency,
                "total": total,
                "issue_date": (today - chrono::Duration::days(60)).to_string(),
                "due_date": (today - chrono::Duration::days(30)).to_string(),
            })
            .to_string(),
        );
    }
    let mut daemon = spawn_daemon(&sb.config, None, "info");
    service::poll_until("the first Xero sync", || {
        daemon
            .stderr_text()
            .lines()
            .any(|l| l.contains("sync finished") && l.contains("sandbox-xero"))
            .then_some(())
    });
    let first = (today + chrono::Duration::days(7)).to_string();
    let run = |args: &[&str]| {
        let mut a = args.to_vec();
        a.extend(["--config", &cfg]);
        run_to_end(&a)
    };

    // Bad input: 64, naming the option at fault.
    let bad: &[(&[&str], &str)] = &[
        (
            &[
                "arrange",
                "sandbox-xero",
                "PLAN-1",
                "--instalments",
                "0",
                "--every",
                "7",
                "--first",
                &first,
            ],
            "--instalments",
        ),
        (
            &[
                "arrange",
                "sandbox-xero",
                "PLAN-1",
                "--instalments",
                "3",
                "--first",
                &first,
            ],
            "--every",
        ),
        (
            &[
                "arrange",
                "sandbox-xero",
                "PLAN-1",
                "--instalments",
                "3",
                "--every",
                "7",
                "--first",
                "2020-01-01",
            ],
            "--first: the first instalment (2020-01-01) must be in the future",
        ),
        (
            &[
                "arrange",
                "sandbox-xero",
                "PLAN-1",
                "--instalments",
                "3",
                "--every",
                "7",
                "--first",
                &(today + chrono::Duration::days(45)).to_string(),
            ],
            "max_promise_days = 30",
        ),
        (
            &[
                "arrange",
                "sandbox-xero",
                "PLAN-1",
                "--schedule",
                &format!("{first}:100,{}:100", today + chrono::Duration::days(21)),
            ],
            "--schedule: the instalments add up to GBP 200.00, not the balance covered, GBP 300.00",
        ),
        (
            &[
                "arrange",
                "sandbox-xero",
                "PLAN-1",
                "--schedule",
                "tomorrow:300",
            ],
            "--schedule: instalment 1",
        ),
        (
            &[
                "arrange",
                "sandbox-xero",
                "NO-SUCH",
                "--instalments",
                "3",
                "--every",
                "7",
                "--first",
                &first,
            ],
            "names no synced invoice",
        ),
        (
            &[
                "arrange",
                "sandbox-xero",
                "Plan Test Ltd",
                "--instalments",
                "3",
                "--every",
                "7",
                "--first",
                &first,
            ],
            "one plan covers one currency",
        ),
        (
            &[
                "arrange",
                "nosuch",
                "PLAN-1",
                "--instalments",
                "3",
                "--every",
                "7",
                "--first",
                &first,
            ],
            "no connection named \"nosuch\"",
        ),
        (&["cancel", "sandbox-xero", "P7"], "no payment plan \"P7\""),
    ];
    for (args, want) in bad {
        let (code, out, err) = run(args);
        assert_eq!(code, Some(64), "{args:?}: {out}{err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }

    // A plan over the customer's two GBP invoices, through the daemon.
    let (code, out, err) = run(&[
        "arrange",
        "sandbox-xero",
        "Plan Test Ltd",
        "--invoices",
        "PLAN-1,PLAN-2",
        "--instalments",
        "3",
        "--every",
        "14",
        "--first",
        &first,
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains(
            "payment plan P1 agreed with Plan Test Ltd for GBP 400.00 (invoice(s) PLAN-1, PLAN-2)"
        ),
        "{out}"
    );
    assert!(
        out.contains("GBP 133.33") && out.contains("GBP 133.34"),
        "{out}"
    );
    let (code, _, err) = run(&[
        "arrange",
        "sandbox-xero",
        "PLAN-2",
        "--instalments",
        "1",
        "--first",
        &first,
    ]);
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("already in payment plan P1"), "{err}");

    let (code, out, err) = run(&["arrangements", "sandbox-xero", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["id"], "P1", "{out}");
    assert_eq!(v[0]["status"], "kept", "{out}");
    assert_eq!(v[0]["total"], "400.00", "{out}");
    assert_eq!(v[0]["instalments"].as_array().unwrap().len(), 3, "{out}");

    // The owner sees it in `status` (through the daemon), with how the messages go.
    let (code, out, err) = run(&["status"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains(&format!("plan:       payment plan P1 Plan Test Ltd (invoice PLAN-1, PLAN-2): kept, GBP 0.00 of GBP 400.00 paid; next GBP 133.33 on {first} (by the system's invoice email")),
        "{out}"
    );

    let (code, out, err) = run(&["cancel", "sandbox-xero", "P1"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("payment plan P1 (Plan Test Ltd, invoice(s) PLAN-1, PLAN-2) cancelled"),
        "{out}"
    );
    assert!(out.contains("without a \"plan missed\" message"), "{out}");
    let (code, _, err) = run(&["cancel", "sandbox-xero", "P1"]);
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("is cancelled already"), "{err}");

    // The daemon stops; the plans are on disk and read without it.
    daemon.signal(libc::SIGTERM);
    let (code, _) = daemon.wait_exit(std::time::Duration::from_secs(15));
    assert_eq!(code, Some(0), "{}", daemon.stderr_text());
    let (code, out, err) = run(&["arrangements"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("sandbox-xero P1  cancelled  Plan Test Ltd  invoices PLAN-1, PLAN-2"),
        "{out}"
    );
}
