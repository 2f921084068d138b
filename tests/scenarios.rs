//! The dunning engine's proof scenarios, end to end: the sandbox (QuickBooks Online and
//! Xero), the real connectors, sync, planner, executor and store, driven over simulated
//! months by a manual clock. Expectations are exact days, kinds, steps and amounts, read
//! from the sandbox's ledger of effects and named by the store's journal.
//!
//! The calendar: 2026-01-21 is a Wednesday; the policy is [`support::SCENARIO_POLICY`]
//! (steps -3d, 0d, +7d, +14d, +30d fee 40 every 30 days capped at 80, +60d, +90d
//! escalate; window 09-17 Mon-Fri, Europe/London).

mod support;

use chrono::{Datelike, NaiveDate, Timelike};
use overdued::store::{Hold, HoldKind, HoldTarget, Store};
use overdued_sandbox::{Behaviour, CreatedInvoice, SandboxOptions};
use rust_decimal::Decimal;
use support::*;

fn d(m: u32, day: u32) -> NaiveDate {
    date(2026, m, day)
}

fn total() -> Decimal {
    "1200.00".parse().unwrap()
}

async fn harness() -> Harness {
    Harness::start(
        empty_world(london(d(1, 5), 9, 0)),
        "Europe/London",
        SCENARIO_POLICY,
    )
    .await
}

type Expected = Vec<(NaiveDate, String, String, Option<Decimal>)>;

fn assert_actions(rows: &[Row], invoices: &[CreatedInvoice], want: &Expected, what: &str) {
    let mut want = want.clone();
    want.sort_by(|a, b| (a.0, &a.1, &a.2).cmp(&(b.0, &b.1, &b.2)));
    let want = &want;
    for i in invoices {
        assert_eq!(
            &actions_on(rows, &i.id),
            want,
            "{what} ({:?} invoice {})",
            i.system,
            i.id
        );
    }
}

/// The fee invoices created for `orig`, in order.
fn fee_invoices(rows: &[Row], orig: &str) -> Vec<String> {
    rows.iter()
        .filter(|r| r.invoice_id == orig && r.kind == "fee")
        .map(|r| r.fee_invoice.clone().expect("fees are separate invoices"))
        .collect()
}

/// A customer who never pays, chased from a week before the first step to a month
/// after escalation: every step on its day, or on the next weekday when its day falls
/// on a weekend; 40 charged twice (the cap is 80); escalation at +90 and then silence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_fees_and_escalation_on_the_right_days_in_the_window() {
    let h = harness().await;
    let inv = h.invoice_in_both("Never Pays", total(), d(1, 5), d(1, 21), Behaviour::Never);
    h.daily(d(1, 12), d(5, 20), 10).await;

    let rows = h.ledger();
    assert_ledger_consistent(&rows);
    assert_in_window(&rows);
    let want = vec![
        act(d(1, 19), "remind", "-3d"), // -3d is Sunday 18 January
        act(d(1, 21), "remind", "0d"),
        act(d(1, 28), "remind", "+7d"),
        act(d(2, 4), "remind", "+14d"),
        fee(d(2, 20), "+30d/p0", "40"),
        act(d(3, 23), "remind", "+60d"), // +60d and the second fee period: Sunday 22 March
        fee(d(3, 23), "+30d/p1", "40"),
        act(d(4, 21), "note", "+90d"), // the ledger note, then the owner's escalation
        act(d(4, 21), "escalate", "+90d"),
    ];
    assert_actions(&rows, &inv, &want, "the schedule");
    for r in rows.iter().filter(|r| r.kind != "note") {
        assert_eq!(r.local().hour(), 10, "sent by the 10:00 cycle: {r:?}");
    }
    for i in &inv {
        assert!(
            journal_states(h.store.as_ref(), conn_of(i.system), &i.id)
                .iter()
                .all(|(_, s)| s == "done"),
            "{:?}",
            journal_states(h.store.as_ref(), conn_of(i.system), &i.id)
        );
        // Late-fee invoices are not chased through a ladder of their own (issue #13,
        // section 4): no reminder, fee, note or escalation on them; the customer is
        // reminded of the fee in the messages about the invoice it belongs to.
        let fees = fee_invoices(&rows, &i.id);
        assert_eq!(fees.len(), 2, "{fees:?}");
        for (n, f) in fees.iter().enumerate() {
            assert_eq!(
                actions_on(&rows, f),
                vec![],
                "fee invoice {n} ({f}) has a ladder of its own"
            );
        }
        let conn = conn_of(i.system);
        let number_of = |id: &str| {
            h.store
                .get_invoice(conn, id)
                .expect("store")
                .unwrap_or_else(|| panic!("fee invoice {id} not synced"))
                .snapshot
                .display_number()
                .to_string()
        };
        // The first reminder after the first fee (the +60d final notice of 23 March)
        // names that fee's invoice; the second fee is charged in the same cycle and the
        // message tells of it being added today.
        let journal = h.store.journal_for_invoice(conn, &i.id).expect("journal");
        let body = journal
            .iter()
            .find(|j| j.step_id == "+60d" && j.kind.as_str() == "remind")
            .and_then(|j| match j.payload.action() {
                Some(overdued::store::ActionPayload::Remind { body, .. }) => Some(body.clone()),
                _ => None,
            })
            .expect("the +60d reminder's text");
        let first_fee = number_of(&fees[0]);
        assert!(
            body.contains(&format!("invoice {first_fee} ")),
            "the +60d reminder does not name fee invoice {first_fee}:\n{body}"
        );
        assert!(
            body.contains("has been added today"),
            "the +60d reminder does not tell of the second fee:\n{body}"
        );
    }
    assert_journal_settled(h.store.as_ref());
}

/// Paid in full the day before +7d: nothing more, ever. Paid in part: chasing goes on
/// for the rest (and the fee is still charged on the balance).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reminder_for_an_invoice_paid_before_its_step() {
    let h = harness().await;
    let paid = h.invoice_in_both("Pays Late", total(), d(1, 5), d(1, 21), Behaviour::Never);
    let part = h.invoice_in_both("Pays Half", total(), d(1, 5), d(1, 21), Behaviour::Never);
    h.daily(d(1, 12), d(1, 26), 10).await;
    // 27 January, 16:00: after that day's cycle, the day before +7d.
    h.sandbox().set_now(london(d(1, 27), 16, 0));
    for i in &paid {
        h.sandbox()
            .add_payment(i.system, &h.tenant(i.system), &i.id, total(), d(1, 27))
            .unwrap();
    }
    for i in &part {
        h.sandbox()
            .add_payment(
                i.system,
                &h.tenant(i.system),
                &i.id,
                "600.00".parse().unwrap(),
                d(1, 27),
            )
            .unwrap();
    }
    h.daily(d(1, 27), d(3, 31), 10).await;

    let rows = h.ledger();
    assert_ledger_consistent(&rows);
    assert_in_window(&rows);
    let early = vec![
        act(d(1, 19), "remind", "-3d"),
        act(d(1, 21), "remind", "0d"),
    ];
    assert_actions(&rows, &paid, &early, "paid in full on 27 January");
    let mut rest = early.clone();
    rest.extend([
        act(d(1, 28), "remind", "+7d"),
        act(d(2, 4), "remind", "+14d"),
        fee(d(2, 20), "+30d/p0", "40"),
        act(d(3, 23), "remind", "+60d"),
        fee(d(3, 23), "+30d/p1", "40"),
    ]);
    assert_actions(&rows, &part, &rest, "paid in part on 27 January");
    assert_journal_settled(h.store.as_ref());
}

/// Promises (`overdued promise`: the whole balance by 2 February, grace 2 days) and
/// pauses (`overdued pause`, of an invoice or of a customer) set on 26 January, after
/// the 0d reminder. A kept promise ends the chase; a broken one resumes it on
/// 5 February with the "promise broken" message; lifting a pause on 10 February sends
/// the latest step then due (+14d of 4 February), not the ones missed meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promises_honoured_and_broken_and_pauses() {
    let h = harness().await;
    let kept = h.invoice_in_both(
        "Keeps Promise",
        total(),
        d(1, 5),
        d(1, 21),
        Behaviour::Never,
    );
    let broken = h.invoice_in_both(
        "Breaks Promise",
        total(),
        d(1, 5),
        d(1, 21),
        Behaviour::Never,
    );
    let paused = h.invoice_in_both("Disputed", total(), d(1, 5), d(1, 21), Behaviour::Never);
    let on_stop = h.invoice_in_both("On Stop", total(), d(1, 5), d(1, 21), Behaviour::Never);
    h.daily(d(1, 12), d(1, 26), 10).await;
    let set_at = london(d(1, 26), 12, 0);
    for i in kept.iter().chain(&broken) {
        let promise = Hold::Promise {
            until: d(2, 2),
            amount: None,
            balance_when_made: Some(total()),
            set_at,
        };
        h.store
            .put_hold(
                conn_of(i.system),
                &HoldTarget::Invoice(i.id.clone()),
                &promise,
            )
            .unwrap();
    }
    let pause = |reason: &str| Hold::Pause {
        reason: reason.into(),
        set_at,
    };
    for i in &paused {
        let target = HoldTarget::Invoice(i.id.clone());
        h.store
            .put_hold(conn_of(i.system), &target, &pause("disputed"))
            .unwrap();
    }
    for i in &on_stop {
        let target = HoldTarget::Customer(i.customer_id.clone());
        h.store
            .put_hold(conn_of(i.system), &target, &pause("on stop"))
            .unwrap();
    }
    h.daily(d(1, 27), d(1, 31), 10).await;
    h.sandbox().set_now(london(d(2, 1), 11, 0));
    for i in &kept {
        h.sandbox()
            .add_payment(i.system, &h.tenant(i.system), &i.id, total(), d(2, 1))
            .unwrap();
    }
    h.daily(d(2, 1), d(2, 9), 10).await;
    for i in &paused {
        let target = HoldTarget::Invoice(i.id.clone());
        assert!(h
            .store
            .remove_hold(conn_of(i.system), &target, HoldKind::Pause)
            .unwrap());
    }
    for i in &on_stop {
        let target = HoldTarget::Customer(i.customer_id.clone());
        assert!(h
            .store
            .remove_hold(conn_of(i.system), &target, HoldKind::Pause)
            .unwrap());
    }
    h.daily(d(2, 10), d(2, 28), 10).await;

    let rows = h.ledger();
    assert_ledger_consistent(&rows);
    assert_in_window(&rows);
    let early = vec![
        act(d(1, 19), "remind", "-3d"),
        act(d(1, 21), "remind", "0d"),
    ];
    assert_actions(&rows, &kept, &early, "promise kept");
    let mut want = early.clone();
    want.extend([
        act(d(2, 5), "remind", "promise/2026-02-02"),
        fee(d(2, 20), "+30d/p0", "40"),
    ]);
    assert_actions(&rows, &broken, &want, "promise broken");
    let mut want = early.clone();
    want.extend([
        act(d(2, 10), "remind", "+14d"),
        fee(d(2, 20), "+30d/p0", "40"),
    ]);
    assert_actions(&rows, &paused, &want, "invoice paused 26 Jan - 10 Feb");
    assert_actions(&rows, &on_stop, &want, "customer paused 26 Jan - 10 Feb");
    assert_journal_settled(h.store.as_ref());
}

/// Ten days of downtime (27 January - 5 February) that miss +7d and +14d: the first
/// cycle after it sends +14d only, once; the schedule then goes on as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_after_downtime_takes_only_the_latest_due_step() {
    let h = harness().await;
    let inv = h.invoice_in_both("Never Pays", total(), d(1, 5), d(1, 21), Behaviour::Never);
    h.daily(d(1, 12), d(1, 26), 10).await;
    h.daily(d(2, 6), d(2, 27), 10).await;

    let rows = h.ledger();
    assert_ledger_consistent(&rows);
    let want = vec![
        act(d(1, 19), "remind", "-3d"),
        act(d(1, 21), "remind", "0d"),
        act(d(2, 6), "remind", "+14d"),
        fee(d(2, 20), "+30d/p0", "40"),
    ];
    assert_actions(&rows, &inv, &want, "after downtime");
    assert_journal_settled(h.store.as_ref());
}

/// A generated world (every customer behaviour, both systems) over three months, run
/// once a day at 09:30 and five times a day (07:00, 09:30, 12:00, 15:30, 21:00): the
/// same effects, each once. (09:30 is the first cycle inside the window either way, so
/// customers react to reminders at the same times and the worlds stay alike.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_cycles_a_day_give_the_same_ledger_as_one() {
    let opts = SandboxOptions {
        seed: 7,
        customers: 12,
        invoices: 40,
        start: london(d(1, 5), 7, 0),
        enforce_limits: false,
        ..SandboxOptions::default()
    };
    let once = Harness::start(opts.clone(), "Europe/London", SCENARIO_POLICY).await;
    let five = Harness::start(opts, "Europe/London", SCENARIO_POLICY).await;
    let mut day = d(1, 5);
    while day <= d(3, 31) {
        once.cycle_at(london(day, 9, 30)).await;
        for (hh, mm) in [(7, 0), (9, 30), (12, 0), (15, 30), (21, 0)] {
            five.cycle_at(london(day, hh, mm)).await;
        }
        day = day.succ_opt().unwrap();
    }
    let (a, b) = (once.ledger(), five.ledger());
    assert_ledger_consistent(&a);
    assert_ledger_consistent(&b);
    assert_in_window(&b);
    let count = |rows: &[Row], action: &str| rows.iter().filter(|r| r.action == action).count();
    assert!(
        count(&a, "remind") >= 40 && count(&a, "late_fee") >= 5,
        "a world with something to do: {} reminders, {} fees",
        count(&a, "remind"),
        count(&a, "late_fee")
    );
    assert_eq!(canonical(&a), canonical(&b));
    assert_journal_settled(once.store.as_ref());
    assert_journal_settled(five.store.as_ref());
}

/// A policy that reminds every day at 01:xx London time, the hour that does not exist
/// on the spring-forward Sunday and occurs twice on the fall-back Sunday.
const DAILY_AT_ONE: &str = r#"
[policies.default]
max_reminders_per_customer_per_day = 1

[[policies.default.steps]]
offset = "0d"
action = "remind"
template = "due_today"

[policies.default.repeat]
every_days = 1

[policies.default.send_window]
cron = "* 1 * * *"
"#;

/// Cycles every hour through a week around a DST change; one reminder a local day.
async fn dst_week(first: NaiveDate) -> (Harness, Vec<CreatedInvoice>, Vec<Row>) {
    let h = Harness::start(
        empty_world(utc(first.pred_opt().unwrap(), 12)),
        "Europe/London",
        DAILY_AT_ONE,
    )
    .await;
    let inv = h.invoice_in_both(
        "Daily",
        total(),
        first - chrono::Duration::days(14),
        first,
        Behaviour::Never,
    );
    let mut t = utc(first, 0);
    while t < utc(first + chrono::Duration::days(7), 0) {
        h.cycle_at(t).await;
        t += chrono::Duration::hours(1);
    }
    let rows = h.ledger();
    assert_ledger_consistent(&rows);
    (h, inv, rows)
}

fn daily_steps(rows: &[Row], inv: &CreatedInvoice) -> Vec<(NaiveDate, u32, String)> {
    rows.iter()
        .filter(|r| r.invoice_id == inv.id && r.kind == "email")
        .map(|r| (r.local_date(), r.local().hour(), r.step.clone()))
        .collect()
}

fn expected_daily(first: NaiveDate, hours: [u32; 7]) -> Vec<(NaiveDate, u32, String)> {
    (0..7)
        .map(|i| {
            let step = if i == 0 {
                "0d".to_string()
            } else {
                format!("0d/r{i}")
            };
            (first + chrono::Duration::days(i), hours[i as usize], step)
        })
        .collect()
}

/// Spring forward, Sunday 29 March 2026: 01:00-01:59 does not exist; the window opens
/// at 02:00 BST instead (never a lost day), and every other day at 01:00.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dst_spring_forward_week_sends_once_a_day_and_skips_no_day() {
    let first = d(3, 26);
    let (_h, inv, rows) = dst_week(first).await;
    assert_eq!(first.weekday(), chrono::Weekday::Thu);
    for i in &inv {
        assert_eq!(
            daily_steps(&rows, i),
            expected_daily(first, [1, 1, 1, 2, 1, 1, 1]),
            "{:?}",
            i.system
        );
    }
}

/// Fall back, Sunday 25 October 2026: 01:00-01:59 happens twice (BST, then GMT); the
/// second time sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dst_fall_back_week_sends_once_a_day_and_never_twice() {
    let first = date(2026, 10, 22);
    let (_h, inv, rows) = dst_week(first).await;
    for i in &inv {
        let got = daily_steps(&rows, i);
        assert_eq!(got, expected_daily(first, [1; 7]), "{:?}", i.system);
        // The repeated hour: sent at 00:00 UTC (01:00 BST), not again at 01:00 UTC.
        let sunday = rows
            .iter()
            .find(|r| {
                r.invoice_id == i.id && r.kind == "email" && r.local_date() == date(2026, 10, 25)
            })
            .unwrap();
        assert_eq!(sunday.at, utc(date(2026, 10, 25), 0));
    }
}
