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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_plan_and_a_missed_twin_in_both_systems() {
    let h = Harness::start(
        empty_world(london(d(9, 21), 9, 0)),
        "Europe/London",
        SCENARIO_POLICY,
    )
    .await;
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
        let out = arrange(&h, inv);
        assert!(out.contains("payment plan P1 agreed"), "{out}");
        assert!(
            out.contains("USD 100.00") || out.contains("100.00"),
            "{out}"
        );
    }
    for inv in &missed {
        let out = arrange(&h, inv);
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
