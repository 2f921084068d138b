//! Scenario tests: simulated months of runs, feeding each run's planned actions back as
//! history, as the executor would.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde::Deserialize;

use overdued_connector::{ActionKind, InvoiceStatus, Money};

use crate::engine::fees::BalanceChange;

/// The ledger every scenario's invoices are in.
const LEDGER: &str = "quickbooks:1";
use crate::engine::plan::tests_support::{invoice, record};
use crate::engine::plan::{
    plan, InvoiceCase, InvoiceHistory, Pause, Plan, PlanInputs, PlannedAction, Promise, SkipCode,
};
use crate::engine::policy::{EngineSettings, Policy, PolicyBook};

const ALWAYS_OPEN: &str = "[policies.default.send_window]\ncron = \"* * * * *\"\n";

/// The built-in steps plus a late fee at +30d (a `steps` list replaces the default one).
const STEPS_WITH_FEE_AT_30: &str = r#"
[[policies.default.steps]]
offset = "-3d"
action = "remind"
template = "heads_up"
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
offset = "+30d"
action = "late_fee"
[[policies.default.steps]]
offset = "+30d"
action = "remind"
template = "stop_work"
[[policies.default.steps]]
offset = "+60d"
action = "remind"
template = "final_notice"
[[policies.default.steps]]
offset = "+90d"
action = "escalate"
"#;

fn book(toml_src: &str) -> PolicyBook {
    #[derive(Deserialize)]
    struct Doc {
        #[serde(default)]
        policies: BTreeMap<String, Policy>,
    }
    let doc: Doc = toml::from_str(toml_src).unwrap_or_else(|e| panic!("{e}"));
    PolicyBook::compile(&doc.policies).unwrap_or_else(|e| panic!("{e}"))
}

fn due() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 10, 31).unwrap()
}

struct Sim {
    book: PolicyBook,
    settings: EngineSettings,
    tz: Tz,
    cases: Vec<InvoiceCase>,
    /// Every action carried out: (local date, days overdue, action).
    log: Vec<(NaiveDate, PlannedAction)>,
}

impl Sim {
    fn new(book: PolicyBook, tz: Tz) -> Sim {
        Sim {
            book,
            settings: EngineSettings::default(),
            tz,
            cases: vec![],
            log: vec![],
        }
    }

    fn with_invoice(mut self, id: &str, customer: &str, total: i64) -> Sim {
        self.cases.push(InvoiceCase {
            invoice: invoice(id, customer, total),
            history: InvoiceHistory::default(),
        });
        self
    }

    fn case(&mut self, id: &str) -> &mut InvoiceCase {
        self.cases
            .iter_mut()
            .find(|c| c.invoice.remote_id == id)
            .unwrap()
    }

    /// The instant at `hour`:`minute` local time, `day` days after the due date.
    fn at(&self, day: i64, hour: u32, minute: u32) -> DateTime<Utc> {
        let local = (due() + Duration::days(day))
            .and_hms_opt(hour, minute, 0)
            .unwrap();
        self.tz
            .from_local_datetime(&local)
            .earliest()
            .unwrap()
            .with_timezone(&Utc)
    }

    fn plan_at(&self, now: DateTime<Utc>) -> Plan {
        plan(&PlanInputs {
            now,
            time_zone: self.tz,
            settings: &self.settings,
            policies: &self.book,
            default_policy: "default",
            ledger: LEDGER,
            invoices: &self.cases,
        })
        .unwrap()
    }

    /// Plans, then carries out every planned action (journals it).
    fn run(&mut self, now: DateTime<Utc>) -> Plan {
        let p = self.plan_at(now);
        for a in &p.actions {
            let rec = record(a, now);
            self.case(&a.invoice_id).history.actions.push(rec);
            self.log
                .push((now.with_timezone(&self.tz).date_naive(), a.clone()));
        }
        p
    }

    fn run_days(&mut self, days: std::ops::RangeInclusive<i64>, hour: u32) {
        for day in days {
            let t = self.at(day, hour, 0);
            self.run(t);
        }
    }

    /// (days overdue, kind, step id) of every action carried out on `invoice`.
    fn done(&self, invoice: &str) -> Vec<(i64, ActionKind, String)> {
        self.log
            .iter()
            .filter(|(_, a)| a.invoice_id == invoice)
            .map(|(_, a)| (a.days_overdue, a.kind, a.step_id.clone()))
            .collect()
    }

    /// Journals the reminders `invoice` was sent on time on these days after its due
    /// date, as if overdued had chased it all along (steps named by their offset).
    fn reminded_on(&mut self, invoice: &str, days: &[i64]) {
        let tz = self.tz;
        let case = self.case(invoice);
        for day in days {
            let step_id = crate::engine::dates::format_offset(*day);
            let local = (case.invoice.due_date + Duration::days(*day))
                .and_hms_opt(10, 0, 0)
                .unwrap();
            case.history
                .actions
                .push(crate::engine::plan::ActionRecord {
                    kind: ActionKind::Remind,
                    key: overdued_connector::IdempotencyKey::derive(
                        LEDGER,
                        &case.invoice.remote_id,
                        ActionKind::Remind,
                        &step_id,
                    ),
                    step_id,
                    at: tz
                        .from_local_datetime(&local)
                        .earliest()
                        .unwrap()
                        .with_timezone(&Utc),
                    fee: None,
                    period: None,
                });
        }
    }

    fn reminder_days(&self, invoice: &str) -> Vec<i64> {
        self.done(invoice)
            .into_iter()
            .filter(|(_, k, _)| *k == ActionKind::Remind)
            .map(|(d, _, _)| d)
            .collect()
    }
}

fn utc_sim(policies: &str) -> Sim {
    Sim::new(book(policies), chrono_tz::UTC)
}

#[test]
fn default_sequence_over_four_months() {
    let mut sim = utc_sim(ALWAYS_OPEN).with_invoice("1", "c1", 1000);
    sim.run_days(-10..=120, 10);
    assert_eq!(sim.reminder_days("1"), [-3, 0, 7, 14, 30, 60]);
    let steps: Vec<String> = sim.done("1").into_iter().map(|(_, _, s)| s).collect();
    assert_eq!(
        steps,
        ["-3d", "0d", "+7d", "+14d", "+30d", "+60d", "+90d", "+90d"]
    );
    let tail: Vec<(i64, ActionKind)> = sim
        .done("1")
        .into_iter()
        .skip(6)
        .map(|(d, k, _)| (d, k))
        .collect();
    assert_eq!(
        tail,
        [(90, ActionKind::Note), (90, ActionKind::Escalate)],
        "escalation at +90 and nothing after"
    );

    // Each later message says what comes next, with the date.
    let msg = |step: &str| {
        sim.log
            .iter()
            .find(|(_, a)| a.step_id == step)
            .and_then(|(_, a)| a.message.clone())
            .unwrap()
    };
    assert!(
        msg("+7d")
            .body
            .contains("by 14 November 2026, we will write to you again"),
        "{}",
        msg("+7d").body
    );
    assert!(
        msg("+60d")
            .body
            .contains("on 29 January 2027, we will refer it for collection"),
        "{}",
        msg("+60d").body
    );
    assert!(msg("+60d").subject.starts_with("Final reminder"));
    assert!(msg("-3d").body.contains("https://pay.example/x"));
    let escalation = sim
        .log
        .iter()
        .find(|(_, a)| a.kind == ActionKind::Escalate)
        .unwrap()
        .1
        .clone();
    assert!(
        escalation.message.unwrap().body.contains("ap@cc1.example"),
        "owner is told whom to call"
    );
    let note = sim
        .log
        .iter()
        .find(|(_, a)| a.kind == ActionKind::Note)
        .unwrap()
        .1
        .clone();
    assert!(note.ledger_text.unwrap().contains("marked for collection"));

    // After escalation the plan explains itself.
    let p = sim.plan_at(sim.at(100, 10, 0));
    assert!(p.actions.is_empty());
    assert_eq!(p.skipped[0].code, SkipCode::Escalated);
    assert!(
        p.skipped[0].reason.contains("2027-01-29"),
        "{}",
        p.skipped[0].reason
    );
}

#[test]
fn running_five_times_a_day_equals_running_once() {
    let tz = chrono_tz::Europe::London;
    let policies = "[policies.default.repeat]\nevery_days = 3\n[policies.default.late_fee]\nmodel = \"interest\"\npercent = 12\nevery_days = 7\n[[policies.default.steps]]\noffset = \"+7d\"\naction = \"remind\"\n[[policies.default.steps]]\noffset = \"0d\"\naction = \"remind\"\n[[policies.default.steps]]\noffset = \"+10d\"\naction = \"late_fee\"\n[[policies.default.steps]]\noffset = \"+40d\"\naction = \"escalate\"\n";
    let mut once = Sim::new(book(policies), tz)
        .with_invoice("1", "c1", 1000)
        .with_invoice("2", "c1", 500)
        .with_invoice("3", "c2", 80);
    let mut often = Sim::new(book(policies), tz)
        .with_invoice("1", "c1", 1000)
        .with_invoice("2", "c1", 500)
        .with_invoice("3", "c2", 80);
    for c in [&mut once, &mut often] {
        c.case("2").invoice.due_date = due() + Duration::days(2);
    }
    for day in -5..=60 {
        let t = once.at(day, 11, 0);
        once.run(t);
        for (h, m) in [(9, 0), (10, 15), (11, 0), (14, 59), (16, 59)] {
            let t = often.at(day, h, m);
            often.run(t);
        }
    }
    let strip = |s: &Sim| -> Vec<(NaiveDate, String, ActionKind, String, Option<Money>)> {
        s.log
            .iter()
            .map(|(d, a)| {
                (
                    *d,
                    a.invoice_id.clone(),
                    a.kind,
                    a.key.to_string(),
                    a.fee.as_ref().map(|f| f.amount),
                )
            })
            .collect()
    };
    assert!(!once.log.is_empty());
    assert_eq!(strip(&once), strip(&often));
    let keys: BTreeSet<String> = often.log.iter().map(|(_, a)| a.key.to_string()).collect();
    assert_eq!(keys.len(), often.log.len(), "no key planned twice");
}

#[test]
fn fixed_recurring_fee_respects_the_cap_and_is_announced() {
    let policies = format!(
        "{ALWAYS_OPEN}{STEPS_WITH_FEE_AT_30}[policies.default.late_fee]\nmodel = \"fixed\"\namount = \"25\"\nevery_days = 15\ncap_amount = \"60\"\n"
    );
    let mut sim = utc_sim(&policies).with_invoice("1", "c1", 1000);
    sim.run_days(-10..=74, 10);
    let at_75 = sim.plan_at(sim.at(75, 10, 0));
    sim.run_days(75..=120, 10);
    let fees: Vec<(i64, String, Decimal)> = sim
        .log
        .iter()
        .filter(|(_, a)| a.kind == ActionKind::LateFee)
        .map(|(_, a)| {
            (
                a.days_overdue,
                a.step_id.clone(),
                a.fee.as_ref().unwrap().amount.amount,
            )
        })
        .collect();
    // Periods at +30, +45, +60 (cap 60 leaves 10), none at +75 (cap reached), none from +90.
    assert_eq!(
        fees,
        [
            (30, "+30d/p0".into(), dec!(25)),
            (45, "+30d/p1".into(), dec!(25)),
            (60, "+30d/p2".into(), dec!(10))
        ]
    );
    let stop_work = sim
        .log
        .iter()
        .find(|(_, a)| a.step_id == "+30d" && a.kind == ActionKind::Remind)
        .unwrap()
        .1
        .clone();
    assert!(stop_work
        .message
        .unwrap()
        .body
        .contains("A late payment fee of USD 25.00 has been added today"));
    let follow_up = sim
        .log
        .iter()
        .find(|(_, a)| a.step_id == "+14d")
        .unwrap()
        .1
        .clone();
    assert!(
        follow_up.message.unwrap().body.contains("If the invoice is still unpaid on 30 November 2026, a late payment fee of USD 25.00, charged every 15 days"),
        "the fee is disclosed before it is charged"
    );
    let p = at_75;
    assert!(
        p.skipped
            .iter()
            .any(|s| s.code == SkipCode::NoFee && s.reason.contains("cap reached")),
        "{:?}",
        p.skipped
    );
    let fee = sim
        .log
        .iter()
        .find(|(_, a)| a.kind == ActionKind::LateFee)
        .unwrap()
        .1
        .clone();
    assert_eq!(
        fee.ledger_text.as_deref(),
        Some("Late payment fee on invoice 101 (30 days overdue)")
    );
    assert_eq!(
        fee.fee_posting,
        Some(overdued_connector::FeePosting::SeparateInvoice)
    );
}

#[test]
fn interest_is_recomputed_after_a_partial_payment() {
    let policies = format!(
        "{ALWAYS_OPEN}[[policies.default.steps]]\noffset = \"0d\"\naction = \"remind\"\n[[policies.default.steps]]\noffset = \"+30d\"\naction = \"late_fee\"\n[policies.default.late_fee]\nmodel = \"interest\"\npercent = \"10\"\nevery_days = 30\n"
    );
    let mut sim = utc_sim(&policies).with_invoice("1", "c1", 1000);
    sim.run_days(-10..=44, 10);
    // Half is paid on day 45.
    let c = sim.case("1");
    c.invoice.amount_due = dec!(500);
    c.history.balance_history.push(BalanceChange {
        on: due() + Duration::days(45),
        balance: dec!(500),
    });
    sim.run_days(45..=89, 10);
    let fees: Vec<(i64, Decimal)> = sim
        .log
        .iter()
        .filter(|(_, a)| a.kind == ActionKind::LateFee)
        .map(|(_, a)| (a.days_overdue, a.fee.as_ref().unwrap().amount.amount))
        .collect();
    // Day 30: 30 days on 1000 = 30,000 -> 8.22. Day 60: 44 days on 1000 + 16 on 500 =
    // 52,000 -> 14.25 owed, 6.03 more.
    assert_eq!(fees, [(30, dec!(8.22)), (60, dec!(6.03))]);
}

#[test]
fn promise_honoured_stops_chasing_until_paid() {
    let mut sim = utc_sim(ALWAYS_OPEN).with_invoice("1", "c1", 1000);
    sim.run_days(-10..=10, 10);
    sim.case("1").history.promise = Some(Promise {
        until: due() + Duration::days(20),
        amount: None,
        balance_when_made: Some(dec!(1000)),
    });
    sim.run_days(11..=19, 10);
    let p = sim.plan_at(sim.at(15, 10, 0));
    assert_eq!(p.skipped[0].code, SkipCode::PromiseActive);
    assert!(
        p.skipped[0].reason.contains("2026-11-20"),
        "{}",
        p.skipped[0].reason
    );
    sim.case("1").invoice.status = InvoiceStatus::Paid;
    sim.case("1").invoice.amount_due = Decimal::ZERO;
    sim.run_days(20..=120, 10);
    assert_eq!(sim.reminder_days("1"), [-3, 0, 7]);
    assert_eq!(
        sim.plan_at(sim.at(30, 10, 0)).skipped[0].code,
        SkipCode::NotOpen
    );
}

#[test]
fn promise_of_part_kept_resumes_normally_without_a_broken_message() {
    let mut sim = utc_sim(ALWAYS_OPEN).with_invoice("1", "c1", 1000);
    sim.run_days(-10..=10, 10);
    sim.case("1").history.promise = Some(Promise {
        until: due() + Duration::days(20),
        amount: Some(dec!(400)),
        balance_when_made: Some(dec!(1000)),
    });
    sim.run_days(11..=18, 10);
    sim.case("1").invoice.amount_due = dec!(600);
    sim.run_days(19..=40, 10);
    let steps: Vec<(i64, String)> = sim.done("1").into_iter().map(|(d, _, s)| (d, s)).collect();
    // Kept: no promise-broken message; the +14d step missed during the promise is caught
    // up the day after the grace (9 days late, within the horizon), then +30d as usual.
    let want: Vec<(i64, String)> = [
        (-3, "-3d"),
        (0, "0d"),
        (7, "+7d"),
        (23, "+14d"),
        (30, "+30d"),
    ]
    .map(|(d, s)| (d, s.to_string()))
    .to_vec();
    assert_eq!(steps, want);
}

#[test]
fn promise_broken_resumes_with_its_own_message() {
    let mut sim = utc_sim(ALWAYS_OPEN).with_invoice("1", "c1", 1000);
    sim.run_days(-10..=10, 10);
    sim.case("1").history.promise = Some(Promise {
        until: due() + Duration::days(20),
        amount: None,
        balance_when_made: Some(dec!(1000)),
    });
    sim.run_days(11..=40, 10);
    // Grace of 2 days: broken from day 23; the +14d reminder missed during the promise
    // is replaced by the promise-broken message, then the sequence continues at +30d.
    assert_eq!(sim.reminder_days("1"), [-3, 0, 7, 23, 30]);
    let broken = sim
        .log
        .iter()
        .find(|(_, a)| a.step_id == "promise/2026-11-20")
        .unwrap()
        .1
        .clone();
    let m = broken.message.unwrap();
    assert!(m.subject.contains("20 November 2026"), "{}", m.subject);
    assert!(
        m.body
            .contains("by 30 November 2026, we will write to you again"),
        "{}",
        m.body
    );
}

#[test]
fn pause_suppresses_and_catch_up_resumes_with_the_latest_step() {
    let mut sim = utc_sim(ALWAYS_OPEN).with_invoice("1", "c1", 1000);
    sim.run_days(-10..=4, 10);
    sim.case("1").history.pause = Some(Pause {
        reason: "dispute: wrong quantity".into(),
        until: Some(due() + Duration::days(35)),
    });
    sim.run_days(5..=35, 10);
    let p = sim.plan_at(sim.at(20, 10, 0));
    assert_eq!(p.skipped[0].code, SkipCode::Paused);
    assert!(p.skipped[0].reason.contains("dispute"));
    sim.run_days(36..=70, 10);
    assert_eq!(
        sim.reminder_days("1"),
        [-3, 0, 36, 60],
        "+30d sent late after the pause, +7d/+14d not at all"
    );
    let late = sim
        .log
        .iter()
        .find(|(_, a)| a.step_id == "+30d")
        .unwrap()
        .1
        .clone();
    assert!(
        late.reason.contains("caught up 6 day(s) late"),
        "{}",
        late.reason
    );
}

#[test]
fn customer_pause_applies_to_all_their_invoices() {
    let mut sim = utc_sim(ALWAYS_OPEN)
        .with_invoice("1", "c1", 1000)
        .with_invoice("2", "c1", 50);
    for c in &mut sim.cases {
        c.history.customer_pause = Some(Pause {
            reason: "payment plan agreed".into(),
            until: None,
        });
    }
    sim.run_days(-10..=50, 10);
    assert!(sim.log.is_empty());
    assert!(sim
        .plan_at(sim.at(20, 10, 0))
        .skipped
        .iter()
        .all(|s| s.code == SkipCode::CustomerPaused));
}

#[test]
fn catch_up_after_a_ten_day_gap_takes_only_the_latest_step() {
    let mut sim = utc_sim(ALWAYS_OPEN).with_invoice("1", "c1", 1000);
    sim.run_days(-10..=5, 10);
    // Down from day 6 to day 16.
    sim.run_days(17..=20, 10);
    let steps = |sim: &Sim| -> Vec<(i64, String)> {
        sim.done("1").into_iter().map(|(d, _, s)| (d, s)).collect()
    };
    assert_eq!(
        steps(&sim),
        [(-3, "-3d".into()), (0, "0d".into()), (17, "+14d".into())],
        "+7d is not sent late"
    );
    // Down so long the latest step is past the horizon: skipped with a reason.
    sim.run_days(21..=25, 10);
    let p = sim.plan_at(sim.at(45, 10, 0));
    let s = p
        .skipped
        .iter()
        .find(|s| s.code == SkipCode::BeyondHorizon)
        .expect("beyond horizon");
    assert_eq!(s.step_id.as_deref(), Some("+30d"));
    assert!(s.reason.contains("15 days ago"), "{}", s.reason);
    sim.run_days(45..=61, 10);
    assert_eq!(sim.reminder_days("1"), [-3, 0, 17, 60]);
}

#[test]
fn escalation_is_never_skipped_as_stale() {
    let mut sim = utc_sim(ALWAYS_OPEN).with_invoice("1", "c1", 1000);
    sim.run_days(-10..=70, 10);
    sim.run_days(110..=130, 10);
    let tail: Vec<(i64, ActionKind)> = sim
        .done("1")
        .into_iter()
        .filter(|(d, _, _)| *d > 70)
        .map(|(d, k, _)| (d, k))
        .collect();
    assert_eq!(tail, [(110, ActionKind::Note), (110, ActionKind::Escalate)]);
}

#[test]
fn one_reminder_per_customer_per_day_most_overdue_first() {
    let mut sim = utc_sim(ALWAYS_OPEN)
        .with_invoice("a", "c1", 100)
        .with_invoice("b", "c1", 100)
        .with_invoice("c", "c1", 100)
        .with_invoice("z", "c2", 100);
    // Invoice b is the most overdue, then c, then a; each has its +14d step due on day 0 of the test.
    for (id, days) in [("a", 14), ("b", 16), ("c", 15), ("z", 14)] {
        sim.case(id).invoice.due_date = due() - Duration::days(days);
    }
    let order: Vec<Vec<String>> = (0..3)
        .map(|day| {
            let p = sim.run(sim.at(day, 10, 0));
            p.actions
                .iter()
                .map(|a| format!("{}:{}", a.invoice_id, a.step_id))
                .collect()
        })
        .collect();
    assert_eq!(
        order,
        [vec!["b:+14d", "z:+14d"], vec!["c:+14d"], vec!["a:+14d"]]
    );
    let p = sim.plan_at(sim.at(0, 10, 0));
    assert!(
        p.actions.is_empty(),
        "the day's reminder was already sent: {:?}",
        p.actions
    );
    let limited = p
        .skipped
        .iter()
        .filter(|s| s.code == SkipCode::CustomerLimit)
        .count();
    assert_eq!(
        limited, 0,
        "already done is reported instead: {:?}",
        p.skipped
    );
}

#[test]
fn reminders_by_our_own_email_share_one_statement_within_the_daily_limit() {
    // By SMTP, a customer's reminders of one day leave as one statement: one message,
    // however many invoices it lists. By the system's email each is a message of its own.
    let steps = "[[policies.default.steps]]\noffset = \"+14d\"\naction = \"remind\"\nchannel = \"smtp\"\n[policies.default]\npayment_instructions = \"Bank transfer\"\n";
    let mut sim = utc_sim(&format!("{ALWAYS_OPEN}{steps}"))
        .with_invoice("a", "c1", 100)
        .with_invoice("b", "c1", 100)
        .with_invoice("z", "c2", 100);
    for (id, days) in [("a", 14), ("b", 15), ("z", 14)] {
        sim.case(id).invoice.due_date = due() - Duration::days(days);
    }
    let p = sim.plan_at(sim.at(0, 10, 0));
    let mut ids: Vec<&str> = p.actions.iter().map(|a| a.invoice_id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["a", "b", "z"], "{:?}", p.skipped);

    let by_system = steps.replace("channel = \"smtp\"", "channel = \"email\"");
    let mut sim = utc_sim(&format!("{ALWAYS_OPEN}{by_system}"))
        .with_invoice("a", "c1", 100)
        .with_invoice("b", "c1", 100);
    for (id, days) in [("a", 14), ("b", 15)] {
        sim.case(id).invoice.due_date = due() - Duration::days(days);
    }
    let p = sim.plan_at(sim.at(0, 10, 0));
    let ids: Vec<&str> = p.actions.iter().map(|a| a.invoice_id.as_str()).collect();
    assert_eq!(ids, ["b"], "the most overdue first, one a day");
}

#[test]
fn per_customer_limit_can_be_raised() {
    let policies =
        format!("{ALWAYS_OPEN}[policies.default]\nmax_reminders_per_customer_per_day = 0\n");
    let mut sim = utc_sim(&policies)
        .with_invoice("a", "c1", 100)
        .with_invoice("b", "c1", 100);
    let p = sim.run(sim.at(0, 10, 0));
    assert_eq!(p.actions.len(), 2);
}

#[test]
fn paid_excluded_small_and_fee_invoices() {
    let policies = format!(
        "{ALWAYS_OPEN}{STEPS_WITH_FEE_AT_30}[policies.default]\nminimum_amount_due = \"20\"\n[policies.default.late_fee]\nmodel = \"fixed\"\namount = 5\n"
    );
    let mut sim = utc_sim(&policies)
        .with_invoice("paid", "c1", 100)
        .with_invoice("memo", "c2", 100)
        .with_invoice("small", "c3", 10)
        .with_invoice("fee", "c4", 25);
    sim.case("paid").invoice.status = InvoiceStatus::Paid;
    sim.case("memo").invoice.memo = "Customer on holiday #NOCHASE".into();
    sim.case("fee").invoice.is_fee_invoice = true;
    sim.run_days(-10..=120, 10);
    assert!(sim.done("paid").is_empty());
    assert!(sim.done("memo").is_empty());
    assert!(sim.done("small").is_empty());
    assert_eq!(
        sim.reminder_days("fee"),
        [0, 7, 14, 30, 60],
        "fee invoices are chased from their due date, without a heads-up"
    );
    assert!(
        sim.done("fee")
            .iter()
            .all(|(_, k, _)| !matches!(k, ActionKind::Escalate | ActionKind::Note)),
        "a fee invoice is never escalated on its own"
    );
    assert!(
        sim.done("fee")
            .iter()
            .all(|(_, k, _)| *k != ActionKind::LateFee),
        "never a fee on a fee"
    );
    let p = sim.plan_at(sim.at(7, 10, 0));
    let code = |id: &str| {
        p.skipped
            .iter()
            .find(|s| s.invoice_id == id)
            .map(|s| s.code)
    };
    assert_eq!(code("paid"), Some(SkipCode::NotOpen));
    assert_eq!(code("memo"), Some(SkipCode::Excluded));
    assert_eq!(code("small"), Some(SkipCode::BelowMinimum));
}

#[test]
fn weekends_and_holidays_defer_to_the_next_open_day() {
    // Business hours Mon-Fri with 2 Nov 2026 (Monday) a holiday; due Sat 31 Oct.
    let policies =
        "[policies.default.send_window]\ncron = \"* 9-16 * * Mon-Fri\"\nholidays = [2026-11-02]\n";
    let mut sim =
        Sim::new(book(policies), chrono_tz::America::New_York).with_invoice("1", "c1", 1000);
    let p = sim.plan_at(sim.at(0, 10, 0));
    let s = p
        .skipped
        .iter()
        .find(|s| s.code == SkipCode::OutsideWindow)
        .unwrap();
    assert!(
        s.reason.contains("would remind") && s.reason.contains("next opens 2026-11-03 09:00 EST"),
        "{}",
        s.reason
    );
    sim.run_days(-10..=20, 10);
    // -3d on Wed 28 Oct; 0d (Sat) caught up Tue 3 Nov as day 3; +7d on Sat 7 Nov goes Mon 9 Nov.
    assert_eq!(sim.reminder_days("1"), [-3, 3, 9, 16]);
}

#[test]
fn dst_changes_never_send_twice_nor_lose_a_day() {
    for (tz, spring, fall) in [
        (chrono_tz::Europe::London, (2026, 3, 29), (2026, 10, 25)),
        (chrono_tz::America::New_York, (2026, 3, 8), (2026, 11, 1)),
    ] {
        for (cron, (y, m, d)) in [
            ("* 1-2 * * *", spring),
            ("* 1-2 * * *", fall),
            ("* * * * *", spring),
            ("* * * * *", fall),
        ] {
            let policies = format!(
                "[policies.default.send_window]\ncron = \"{cron}\"\n[[policies.default.steps]]\noffset = \"0d\"\naction = \"remind\"\n[policies.default.repeat]\nevery_days = 1\n"
            );
            let mut sim = Sim::new(book(&policies), tz).with_invoice("1", "c1", 1000);
            let change = NaiveDate::from_ymd_opt(y, m, d).unwrap();
            sim.case("1").invoice.due_date = change - Duration::days(3);
            // Every 10 minutes for a week around the change.
            let start =
                Utc.from_utc_datetime(&(change - Duration::days(3)).and_hms_opt(0, 0, 0).unwrap());
            let mut t = start;
            while t < start + Duration::days(7) {
                sim.run(t);
                t += Duration::minutes(10);
            }
            let mut per_day: BTreeMap<NaiveDate, usize> = BTreeMap::new();
            for (date, a) in &sim.log {
                assert_eq!(a.kind, ActionKind::Remind);
                *per_day.entry(*date).or_default() += 1;
            }
            let first = change - Duration::days(3);
            let expected: Vec<NaiveDate> = (0..6).map(|i| first + Duration::days(i)).collect();
            let got: Vec<NaiveDate> = per_day
                .keys()
                .copied()
                .filter(|d| *d < first + Duration::days(6))
                .collect();
            assert_eq!(got, expected, "{tz} {cron}: a day was lost");
            assert!(
                per_day.values().all(|n| *n == 1),
                "{tz} {cron}: {per_day:?}"
            );
        }
    }
}

#[test]
fn the_plan_explains_itself_as_json() {
    let policies = format!(
        "{ALWAYS_OPEN}{STEPS_WITH_FEE_AT_30}[policies.default.late_fee]\nmodel = \"percentage\"\npercent = \"2\"\n"
    );
    let mut sim = utc_sim(&policies)
        .with_invoice("1", "c1", 1000)
        .with_invoice("2", "c2", 1000);
    sim.case("2").invoice.due_date = due() + Duration::days(40);
    // Chased on time so far: the fee was disclosed and notice given (issue #13).
    sim.reminded_on("1", &[-3, 0, 7, 14]);
    let p = sim.plan_at(sim.at(30, 10, 0));
    let fee = p
        .actions
        .iter()
        .find(|a| a.kind == ActionKind::LateFee)
        .unwrap();
    assert_eq!(
        fee.fee.as_ref().unwrap().amount,
        Money::new(dec!(20), overdued_connector::Currency::USD)
    );
    assert!(
        fee.reason.contains("2% of USD 1,000.00 due = USD 20.00"),
        "{}",
        fee.reason
    );
    let remind = p
        .actions
        .iter()
        .find(|a| a.kind == ActionKind::Remind)
        .unwrap();
    assert!(
        remind.reason.contains("step +30d (30 days overdue"),
        "{}",
        remind.reason
    );
    assert_eq!(
        p.actions.iter().map(|a| a.kind).collect::<Vec<_>>(),
        [ActionKind::LateFee, ActionKind::Remind]
    );
    let not_yet = p.skipped.iter().find(|s| s.invoice_id == "2").unwrap();
    assert_eq!(not_yet.code, SkipCode::NotYetDue);
    assert!(not_yet.reason.contains("2026-12-07"), "{}", not_yet.reason);
    let json = serde_json::to_string_pretty(&p).unwrap();
    assert!(
        json.contains("\"kind\": \"late_fee\"") && json.contains("\"code\": \"not_yet_due\""),
        "{json}"
    );
    let back: Plan = serde_json::from_str(&json).unwrap();
    assert_eq!(back, p);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn a_fee_is_charged_at_most_once_per_period_however_often_the_engine_runs(
        runs in proptest::collection::vec(proptest::collection::vec(0u32..24 * 60, 0..4), 100),
        model in prop_oneof![Just("model = \"fixed\"\namount = 10"), Just("model = \"interest\"\npercent = 20")],
    ) {
        let policies = format!(
            "{ALWAYS_OPEN}[[policies.default.steps]]\noffset = \"0d\"\naction = \"remind\"\n[[policies.default.steps]]\noffset = \"+20d\"\naction = \"late_fee\"\n[policies.default.late_fee]\n{model}\nevery_days = 7\ncap_amount = 100\n"
        );
        let mut sim = utc_sim(&policies).with_invoice("1", "c1", 1000);
        for (i, minutes) in runs.iter().enumerate() {
            for m in minutes {
                let t = sim.at(i as i64 - 5, 0, 0) + Duration::minutes(i64::from(*m));
                sim.run(t);
            }
        }
        let fees: Vec<&PlannedAction> = sim.log.iter().map(|(_, a)| a).filter(|a| a.kind == ActionKind::LateFee).collect();
        let periods: BTreeSet<u32> = fees.iter().map(|a| a.fee.as_ref().unwrap().period).collect();
        prop_assert_eq!(periods.len(), fees.len(), "a period charged twice");
        let total: Decimal = fees.iter().map(|a| a.fee.as_ref().unwrap().amount.amount).sum();
        prop_assert!(total <= dec!(100));
        for a in &fees {
            prop_assert!(a.fee.as_ref().unwrap().amount.amount > Decimal::ZERO);
            prop_assert_eq!(&a.step_id, &format!("+20d/p{}", a.fee.as_ref().unwrap().period));
        }
    }
}

#[test]
fn a_broken_promise_missed_during_downtime_gives_way_to_the_sequence() {
    let mut sim = utc_sim(ALWAYS_OPEN).with_invoice("1", "c1", 1000);
    sim.run_days(-10..=10, 10);
    sim.case("1").history.promise = Some(Promise {
        until: due() + Duration::days(20),
        amount: None,
        balance_when_made: None,
    });
    sim.run_days(11..=22, 10);
    // Down from day 23 (when the promise broke) to day 39.
    sim.run_days(40..=61, 10);
    let steps: Vec<(i64, String)> = sim.done("1").into_iter().map(|(d, _, s)| (d, s)).collect();
    let want: Vec<(i64, String)> = [
        (-3, "-3d"),
        (0, "0d"),
        (7, "+7d"),
        (40, "+30d"),
        (60, "+60d"),
    ]
    .map(|(d, s)| (d, s.to_string()))
    .to_vec();
    assert_eq!(steps, want);
}

#[test]
fn the_plan_does_not_depend_on_the_order_of_its_inputs() {
    let policies = format!("{ALWAYS_OPEN}{STEPS_WITH_FEE_AT_30}[policies.default.late_fee]\nmodel = \"fixed\"\namount = 5\n");
    let mut sim = utc_sim(&policies);
    for (i, (customer, days)) in [
        ("c1", 30),
        ("c2", 14),
        ("c1", 31),
        ("c3", -3),
        ("c2", 7),
        ("c1", 60),
    ]
    .iter()
    .enumerate()
    {
        sim = sim.with_invoice(&i.to_string(), customer, 100 + i as i64);
        sim.case(&i.to_string()).invoice.due_date = due() - Duration::days(*days);
        // Chased on time up to the step now due, so fees and notices are not held back
        // (issue #13).
        let sent: Vec<i64> = [-3, 0, 7, 14, 30, 60]
            .into_iter()
            .filter(|d| *d <= days - 7)
            .collect();
        sim.reminded_on(&i.to_string(), &sent);
    }
    let forward = sim.plan_at(sim.at(0, 10, 0));
    sim.cases.reverse();
    let backward = sim.plan_at(sim.at(0, 10, 0));
    assert_eq!(forward, backward);
    // c1 has three invoices due a reminder: only the most overdue (60 days) goes today.
    let c1: Vec<(String, ActionKind)> = forward
        .actions
        .iter()
        .filter(|a| a.customer_id == "c1")
        .map(|a| (a.invoice_id.clone(), a.kind))
        .collect();
    assert_eq!(
        c1,
        [
            ("0".to_string(), ActionKind::LateFee),
            ("2".to_string(), ActionKind::LateFee),
            ("5".to_string(), ActionKind::Remind)
        ]
    );
    let limited: Vec<&str> = forward
        .skipped
        .iter()
        .filter(|s| s.code == SkipCode::CustomerLimit)
        .map(|s| s.invoice_id.as_str())
        .collect();
    // c2: the 14-day invoice goes, the 7-day one waits for tomorrow.
    assert_eq!(limited, ["0", "2", "4"]);
}

// Issue #13: adoption, notice and disclosure.

const FIXED_FEE: &str = "[policies.default.late_fee]\nmodel = \"fixed\"\namount = 25\n";

impl Sim {
    /// overdued first saw `invoice` on `day` (days after the due date).
    fn first_seen(&mut self, invoice: &str, day: i64) {
        let t = self.at(day, 0, 0);
        self.case(invoice).history.first_seen_at = Some(t);
    }
}

/// Checks what issue #13 requires of every action carried out, whatever the history.
fn assert_conduct(log: &[(NaiveDate, PlannedAction)], notice: i64) -> Result<(), String> {
    let mut by_invoice: BTreeMap<&str, Vec<&(NaiveDate, PlannedAction)>> = BTreeMap::new();
    for e in log {
        by_invoice.entry(&e.1.invoice_id).or_default().push(e);
    }
    for (inv, acts) in by_invoice {
        let reminders: Vec<&(NaiveDate, PlannedAction)> = acts
            .iter()
            .copied()
            .filter(|(_, a)| a.kind == ActionKind::Remind)
            .collect();
        for (on, a) in &acts {
            let warned = |pred: &dyn Fn(&PlannedAction) -> bool| {
                reminders
                    .iter()
                    .any(|(d, r)| *d <= *on - Duration::days(notice) && pred(r))
            };
            let notice_tpl = matches!(a.template.as_deref(), Some("stop_work" | "final_notice"));
            if (a.kind == ActionKind::LateFee || a.kind == ActionKind::Escalate || notice_tpl)
                && !warned(&|_| true)
            {
                return Err(format!(
                    "invoice {inv}: {} {} on {on} without a reminder {notice} days before",
                    a.kind, a.step_id
                ));
            }
            if a.kind == ActionKind::Escalate
                && !warned(&|r| {
                    r.context
                        .as_ref()
                        .is_some_and(|c| c.next_step.contains("refer it for collection"))
                })
            {
                return Err(format!(
                    "invoice {inv}: escalated on {on} without a final notice announcing it {notice} days before"
                ));
            }
            if a.kind == ActionKind::LateFee
                && !reminders.iter().any(|(d, r)| {
                    *d < *on
                        && r.context.as_ref().is_some_and(|c| {
                            c.fee_terms.contains("late payment fee")
                                || c.next_step.contains("late payment fee")
                        })
                })
            {
                return Err(format!(
                    "invoice {inv}: fee on {on} never disclosed in an earlier message"
                ));
            }
            if a.template.as_deref() == Some("due_today") && a.days_overdue != 0 {
                return Err(format!(
                    "invoice {inv}: due_today sent {} days overdue",
                    a.days_overdue
                ));
            }
            if let Some(c) = &a.context {
                if a.kind == ActionKind::Remind && notice_tpl && c.earlier_reminders == "0" {
                    return Err(format!(
                        "invoice {inv}: {:?} with no earlier reminder",
                        a.template
                    ));
                }
            }
        }
    }
    Ok(())
}

#[test]
fn adopted_invoices_of_any_age_first_get_only_a_catch_up() {
    let policies = format!("{ALWAYS_OPEN}{STEPS_WITH_FEE_AT_30}{FIXED_FEE}");
    let ages = [1, 10, 20, 35, 65, 95, 150];
    let mut sim = utc_sim(&policies);
    for (i, age) in ages.iter().enumerate() {
        let id = i.to_string();
        sim = sim.with_invoice(&id, &format!("c{i}"), 1000);
        sim.case(&id).invoice.due_date = due() - Duration::days(*age);
        sim.first_seen(&id, 0);
        // first seen today, which is `age` days after its own due date
        sim.case(&id).history.first_seen_at = Some(sim.at(0, 9, 0));
    }
    let p = sim.plan_at(sim.at(0, 10, 0));
    assert_eq!(p.actions.len(), ages.len(), "{:#?}", p.actions);
    for a in &p.actions {
        assert_eq!(a.kind, ActionKind::Remind, "{a:?}");
        assert_eq!(a.step_id, "catch_up");
        assert_eq!(a.template.as_deref(), Some("catch_up"));
        let body = &a.message.as_ref().unwrap().body;
        assert!(
            body.contains("If you have already paid, thank you"),
            "{body}"
        );
        assert!(!body.contains("earlier reminders"), "{body}");
        let c = a.context.as_ref().unwrap();
        assert_eq!(c.earlier_reminders, "0");
        assert!(c.fee_terms.contains("late payment fee"), "{}", c.fee_terms);
    }
    // The steps it stands for are held, with the reason, not dropped silently.
    assert!(p
        .skipped
        .iter()
        .any(|s| s.code == SkipCode::AwaitingNotice && s.reason.contains("catch-up")));
}

#[test]
fn an_adopted_ladder_runs_from_the_catch_up_and_escalates_only_after_notice() {
    let policies = format!("{ALWAYS_OPEN}{STEPS_WITH_FEE_AT_30}{FIXED_FEE}");
    let mut sim = utc_sim(&policies).with_invoice("1", "c1", 1000);
    sim.first_seen("1", 45);
    sim.run_days(45..=200, 10);
    let done = sim.done("1");
    assert_eq!(done[0], (45, ActionKind::Remind, "catch_up".to_string()));
    // The catch-up spoke for +30d (stop-work); the final notice keeps its 30-day gap
    // after it, and escalation its 30 days after that.
    let reminds: Vec<(i64, String)> = done
        .iter()
        .filter(|(_, k, _)| *k == ActionKind::Remind)
        .map(|(d, _, s)| (*d, s.clone()))
        .collect();
    assert_eq!(
        reminds,
        [(45, "catch_up".to_string()), (75, "+60d".to_string())]
    );
    let esc: Vec<i64> = done
        .iter()
        .filter(|(_, k, _)| *k == ActionKind::Escalate)
        .map(|(d, _, _)| *d)
        .collect();
    assert_eq!(esc, [105]);
    assert_conduct(&sim.log, 7).unwrap();
}

#[test]
fn an_invoice_never_reminded_gets_no_fee_or_notice_on_the_first_day() {
    // Not adopted (seen before it fell due), but the daemon was off until day 31: the
    // fee and the stop-work notice wait for a catch-up and notice_days after it.
    let policies = format!("{ALWAYS_OPEN}{STEPS_WITH_FEE_AT_30}[policies.default.late_fee]\nmodel = \"fixed\"\namount = 25\nevery_days = 30\n");
    let mut sim = utc_sim(&policies).with_invoice("1", "c1", 1000);
    sim.first_seen("1", -20);
    let first = sim.run(sim.at(31, 10, 0));
    let kinds: Vec<(ActionKind, &str, Option<&str>)> = first
        .actions
        .iter()
        .map(|a| (a.kind, a.step_id.as_str(), a.template.as_deref()))
        .collect();
    assert_eq!(kinds, [(ActionKind::Remind, "catch_up", Some("catch_up"))]);
    assert!(first
        .skipped
        .iter()
        .any(|s| s.code == SkipCode::AwaitingNotice));
    sim.run_days(32..=130, 10);
    assert_conduct(&sim.log, 7).unwrap();
    assert!(sim.log.iter().any(|(_, a)| a.kind == ActionKind::LateFee));
}

#[test]
fn a_late_due_today_step_does_not_say_due_today() {
    let mut sim = utc_sim(ALWAYS_OPEN).with_invoice("1", "c1", 1000);
    sim.run_days(-3..=-3, 10);
    // Down on the due day; back two days later, within the catch-up horizon.
    let p = sim.run(sim.at(2, 10, 0));
    let a = &p.actions[0];
    assert_eq!(a.step_id, "0d");
    assert_eq!(a.template.as_deref(), Some("follow_up"));
    assert!(!a.message.as_ref().unwrap().subject.contains("due today"));
    let c = a.context.as_ref().unwrap();
    assert_eq!(c.earlier_reminders, "1");
    assert_eq!(c.first_reminder_date, "28 October 2026");
}

#[test]
fn held_back_actions_come_later_rather_than_never() {
    // A fee policy whose fee is held on the first day is charged once notice is given.
    let policies = format!("{ALWAYS_OPEN}{STEPS_WITH_FEE_AT_30}[policies.default.late_fee]\nmodel = \"fixed\"\namount = 25\nevery_days = 30\n");
    let mut sim = utc_sim(&policies).with_invoice("1", "c1", 1000);
    sim.first_seen("1", 40);
    sim.run_days(40..=120, 10);
    let fees: Vec<i64> = sim
        .done("1")
        .iter()
        .filter(|(_, k, _)| *k == ActionKind::LateFee)
        .map(|(d, _, _)| *d)
        .collect();
    assert!(!fees.is_empty());
    assert!(fees[0] >= 47, "{fees:?}");
    assert_conduct(&sim.log, 7).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn no_fee_notice_or_escalation_without_notice(
        first_seen in -10i64..160,
        ages in proptest::collection::vec(-5i64..150, 1..4),
        down in proptest::collection::vec(any::<bool>(), 120),
        every in prop_oneof![Just(""), Just("every_days = 14\n")],
        notice in 3u32..10,
    ) {
        let policies = format!(
            "{ALWAYS_OPEN}{STEPS_WITH_FEE_AT_30}[policies.default]\nnotice_days = {notice}\n[policies.default.late_fee]\nmodel = \"fixed\"\namount = 25\n{every}"
        );
        let mut sim = utc_sim(&policies);
        for (i, age) in ages.iter().enumerate() {
            let id = i.to_string();
            sim = sim.with_invoice(&id, &format!("c{i}"), 1000);
            sim.case(&id).invoice.due_date = due() - Duration::days(*age);
            let seen = sim.at(first_seen.min(0), 0, 0);
            sim.case(&id).history.first_seen_at = Some(seen);
        }
        for (i, off) in down.iter().enumerate() {
            if !off {
                let t = sim.at(i as i64, 10, 0);
                sim.run(t);
            }
        }
        if let Err(e) = assert_conduct(&sim.log, i64::from(notice)) {
            return Err(TestCaseError::fail(e));
        }
    }
}

#[test]
fn a_fee_invoice_is_reminded_with_the_invoice_it_belongs_to() {
    let mut sim = utc_sim(ALWAYS_OPEN)
        .with_invoice("1", "c1", 1000)
        .with_invoice("9", "c1", 25);
    {
        let fee = &mut sim.case("9").invoice;
        fee.is_fee_invoice = true;
        fee.number = Some("101-F".into());
        fee.memo = "[overdued-fee] Late fee on invoice 101 (QuickBooks Id 1)".into();
    }
    sim.run_days(-3..=7, 10);
    assert!(sim.done("9").is_empty(), "{:?}", sim.done("9"));
    let p = sim.plan_at(sim.at(8, 10, 0));
    let own = p.skipped.iter().find(|s| s.invoice_id == "9").unwrap();
    assert_eq!(own.code, SkipCode::WithOriginal);
    assert!(own.reason.contains("invoice 101"), "{}", own.reason);
    let (_, follow_up) = sim
        .log
        .iter()
        .find(|(_, a)| a.invoice_id == "1" && a.step_id == "+7d")
        .unwrap();
    let body = &follow_up.message.as_ref().unwrap().body;
    assert!(body.contains("invoice 101-F for USD 25.00"), "{body}");
    // Once the original is paid, the fee invoice is chased on its own.
    sim.case("1").invoice.status = InvoiceStatus::Paid;
    let p = sim.plan_at(sim.at(14, 10, 0));
    assert!(p.actions.iter().any(|a| a.invoice_id == "9"), "{p:#?}");
}

#[test]
fn the_original_number_is_read_from_both_connectors_fee_memos() {
    use crate::engine::plan::fee_original_number;
    assert_eq!(
        fee_original_number("[overdued-fee] Late fee on invoice 1001 (QuickBooks Id 7)"),
        Some("1001")
    );
    assert_eq!(
        fee_original_number("Late fee on INV-0042 [overdued-fee]"),
        Some("INV-0042")
    );
    assert_eq!(fee_original_number("Consulting"), None);
}

#[test]
fn plan_json_keeps_kind_step_template_days_and_number_per_action() {
    let policies = format!("{ALWAYS_OPEN}{STEPS_WITH_FEE_AT_30}{FIXED_FEE}");
    let mut sim = utc_sim(&policies).with_invoice("1", "c1", 1000);
    sim.reminded_on("1", &[-3, 0, 7, 14]);
    let p = sim.plan_at(sim.at(30, 10, 0));
    let json: serde_json::Value = serde_json::to_value(&p).unwrap();
    let actions = json["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 2, "{json:#}");
    for a in actions {
        for field in [
            "kind",
            "step_id",
            "template",
            "days_overdue",
            "invoice_number",
        ] {
            assert!(a.get(field).is_some(), "{field} missing in {a:#}");
        }
        assert_eq!(a["invoice_number"], "101");
        assert_eq!(a["days_overdue"], 30);
    }
    assert_eq!(actions[0]["kind"], "late_fee");
    assert!(actions[0]["template"].is_null());
    assert_eq!(actions[1]["template"], "stop_work");
}

#[test]
fn a_customer_without_email_gets_no_request_and_the_owner_a_call() {
    let mut sim = utc_sim(ALWAYS_OPEN)
        .with_invoice("1", "c1", 36_262)
        .with_invoice("2", "c2", 100);
    sim.case("1").invoice.customer.email = None;
    sim.reminded_on("1", &[-3, 0]);
    sim.reminded_on("2", &[-3, 0]);
    let p = sim.plan_at(sim.at(7, 10, 0));
    assert!(
        p.actions.iter().all(|a| a.invoice_id != "1"),
        "no request for a customer without email: {:#?}",
        p.actions
    );
    assert!(p.actions.iter().any(|a| a.invoice_id == "2"));
    let s = p
        .skipped
        .iter()
        .find(|s| s.invoice_id == "1" && s.code == SkipCode::NoEmail)
        .expect("the no-email skip is in the plan");
    assert_eq!(s.step_id.as_deref(), Some("+7d"));
    assert!(s.reason.contains("Customer c1"), "{}", s.reason);
    assert!(s.reason.contains("BillEmail"), "{}", s.reason);
    assert!(s.reason.contains("call them"), "{}", s.reason);
    // An address without '@' is no address either.
    sim.case("1").invoice.customer.email = Some("  ".into());
    let p = sim.plan_at(sim.at(7, 10, 0));
    assert!(p.skipped.iter().any(|s| s.code == SkipCode::NoEmail));
}

#[test]
fn explanations_write_money_as_people_do() {
    let policies = format!("{ALWAYS_OPEN}[policies.default]\nminimum_amount_due = \"50000\"\n");
    let mut sim = utc_sim(&policies)
        .with_invoice("big", "c1", 36_262)
        .with_invoice("paid", "c2", 100);
    sim.case("paid").invoice.amount_due = Decimal::ZERO;
    let p = sim.plan_at(sim.at(7, 10, 0));
    let reason = |id: &str| {
        p.skipped
            .iter()
            .find(|s| s.invoice_id == id)
            .map(|s| s.reason.clone())
            .unwrap_or_default()
    };
    assert_eq!(
        reason("big"),
        "USD 36,262.00 due is below the minimum 50,000.00"
    );
    assert_eq!(reason("paid"), "nothing due (USD 0.00)");
}

#[test]
fn an_escalated_invoice_taken_back_is_reminded_again_without_a_second_escalation() {
    let mut sim = utc_sim(ALWAYS_OPEN).with_invoice("1", "c1", 1000);
    sim.run_days(-10..=100, 10);
    let escalations = |sim: &Sim| {
        sim.done("1")
            .iter()
            .filter(|(_, k, _)| *k == ActionKind::Escalate)
            .count()
    };
    assert_eq!(escalations(&sim), 1);
    assert_eq!(
        sim.plan_at(sim.at(100, 10, 0)).skipped[0].code,
        SkipCode::Escalated
    );

    // `overdued resume` on day 101: reminders again from that day, then every 14 days,
    // by a reminder that announces no consequence already taken.
    sim.case("1").history.chasing_resumed_on = Some(due() + Duration::days(101));
    sim.run_days(101..=130, 10);
    assert_eq!(escalations(&sim), 1, "{:?}", sim.done("1"));
    let after: Vec<(i64, String)> = sim
        .log
        .iter()
        .filter(|(_, a)| a.days_overdue > 100 && a.kind == ActionKind::Remind)
        .map(|(_, a)| (a.days_overdue, a.template.clone().unwrap_or_default()))
        .collect();
    assert_eq!(
        after.iter().map(|(d, _)| *d).collect::<Vec<_>>(),
        [101, 115, 129],
        "{after:?}"
    );
    assert!(
        after
            .iter()
            .all(|(_, t)| t != "final_notice" && t != "stop_work"),
        "{after:?}"
    );
    assert_conduct(&sim.log, 7).unwrap();
    let m = sim
        .log
        .iter()
        .find(|(_, a)| a.days_overdue == 101)
        .and_then(|(_, a)| a.message.clone())
        .unwrap();
    // True when sent: it tells what comes next, and names no referral already made.
    assert!(m.body.contains("is now 101 days overdue"), "{}", m.body);
    assert!(
        m.body
            .contains("by 23 February 2027, we will write to you again"),
        "{}",
        m.body
    );
    assert!(!m.body.contains("collection"), "{}", m.body);
}

/// "What happens next" is a promise to the customer: when a message is followed by a late
/// fee before any other message, that message named the fee and its day. An adopted
/// invoice past the fee step once heard "we will write to you again" and then was charged.
#[test]
fn the_next_step_a_message_names_is_the_fee_that_comes() {
    let mut total = 0;
    for (fee, first_seen) in [
        ("", 50),
        ("", 20),
        ("", 80),
        ("every_days = 30\n", 50),
        ("every_days = 30\n", 5),
        ("", -10),
    ] {
        let policies = format!("{ALWAYS_OPEN}{STEPS_WITH_FEE_AT_30}{FIXED_FEE}{fee}");
        let mut sim = utc_sim(&policies).with_invoice("1", "c1", 1000);
        sim.first_seen("1", first_seen);
        sim.run_days(first_seen.max(-3)..=200, 10);
        let log: Vec<&PlannedAction> = sim.log.iter().map(|(_, a)| a).collect();
        let mut fees_seen = 0;
        for (i, a) in log.iter().enumerate() {
            let Some(m) = a.message.as_ref().filter(|_| a.kind == ActionKind::Remind) else {
                continue;
            };
            let next = log[i + 1..]
                .iter()
                .find(|b| b.kind == ActionKind::Remind || b.kind == ActionKind::LateFee);
            if let Some(f) =
                next.filter(|b| b.kind == ActionKind::LateFee && b.days_overdue > a.days_overdue)
            {
                fees_seen += 1;
                let on = (due() + Duration::days(f.days_overdue))
                    .format("%-d %B %Y")
                    .to_string();
                assert!(
                    m.body.contains(&format!("If the invoice is still unpaid on {on}, a late payment fee")),
                    "first seen {first_seen}, fee {fee:?}: the {} message on day {} does not announce the fee of day {}:\n{}",
                    a.step_id,
                    a.days_overdue,
                    f.days_overdue,
                    m.body
                );
            }
        }
        total += fees_seen;
    }
    // Fees that came right after a message (and so had to be named in it).
    assert!(total >= 4, "only {total} fees followed a message");
}
