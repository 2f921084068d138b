//! Issue #13's "done when", in both systems: overdued switched on over a ledger that
//! already holds invoices 1 to 150 days overdue (every real business's first day).
//!
//! The first cycle sends only courteous catch-up reminders; over the next 60 days every
//! late fee and escalation comes at least `notice_days` after a reminder about that
//! invoice that reached the customer (an email in the sandbox's ledger), every
//! escalation at least `notice_days` after the message announcing it, no fee before a
//! message disclosing it, no late-fee invoice chased through a ladder of its own, and no
//! customer gets more than the daily limit of messages on any local day. Read from the
//! sandbox's ledger of effects (`/_sandbox/ledger`) and named by the store's journal.
//!
//! `plan --json`, through the binary, over the same kind of world keeps per action the
//! fields a script reads (`kind`, `step_id`, `template`, `days_overdue`, the invoice
//! number) and starts with the adoption summary.

mod support;

use std::collections::{BTreeMap, HashMap};

use chrono::{Duration, NaiveDate, Utc};
use overdued::store::{ActionPayload, Hold, HoldKind, HoldTarget, JournalEntry, Store};
use overdued_sandbox::{Behaviour, CreatedInvoice, NewInvoice, Sandbox, SandboxOptions, System};
use rust_decimal::Decimal;
use support::*;

const NOTICE_DAYS: i64 = 7;
/// Customers per system; each has `INVOICES / CUSTOMERS` invoices of different ages, so
/// the daily limit of one message per customer is what paces the catch-ups.
const CUSTOMERS: usize = 8;
const INVOICES: usize = 32;
const DAYS_AFTER: i64 = 60;
/// The invoice (by its index in [`overdue_world`]) disputed around its final notice.
const DISPUTED: usize = 7;

/// A ladder with every step that has consequences for the customer: a stop-work notice,
/// a late fee (40, every 30 days, up to 80), a final notice and an escalation; no send
/// window, so only the conduct rules decide when things go out. The final notice comes
/// exactly `notice_days` before the escalation, so a final notice sent late must hold the
/// escalation back.
const CONDUCT_POLICY: &str = r#"
[policies.default]
max_reminders_per_customer_per_day = 1
notice_days = 7

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
action = "remind"
template = "stop_work"

[[policies.default.steps]]
offset = "+30d"
action = "late_fee"

[[policies.default.steps]]
offset = "+53d"
action = "remind"
template = "final_notice"

[[policies.default.steps]]
offset = "+60d"
action = "escalate"
template = "escalation"

[policies.default.late_fee]
model = "fixed"
amount = "40.00"
every_days = 30
cap_amount = "80.00"
"#;

/// Reminder templates that tell the customer of a consequence: they too need an earlier
/// reminder `notice_days` before.
const NOTICE_TEMPLATES: [&str; 2] = ["stop_work", "final_notice"];

/// The template of a step of [`CONDUCT_POLICY`] (a catch-up is its own step).
fn template_of_step(step: &str) -> &'static str {
    match step {
        "catch_up" => "catch_up",
        "-3d" => "heads_up",
        "0d" => "due_today",
        "+7d" => "follow_up",
        "+14d" => "firm",
        "+30d" => "stop_work",
        "+53d" => "final_notice",
        other => panic!("a reminder of step {other}, not in the policy"),
    }
}

/// Days overdue on `today` of invoice `i` of [`INVOICES`]: spread evenly over 1..=150.
fn age(i: usize) -> i64 {
    1 + (i as i64 * 149) / (INVOICES as i64 - 1)
}

/// The world of a business on its first day with overdued: in each system, invoices
/// 1 to 150 days overdue on `today`, owed by customers who never pay.
fn overdue_world(sb: &Sandbox, today: NaiveDate) -> Vec<CreatedInvoice> {
    let mut out = Vec::new();
    for system in [System::QuickBooks, System::Xero] {
        for i in 0..INVOICES {
            let c = i % CUSTOMERS;
            let due = today - Duration::days(age(i));
            out.push(
                sb.create_invoice(NewInvoice {
                    system,
                    tenant: None,
                    customer_name: format!("Customer {c}"),
                    customer_email: format!("customer{c}@{}.example", system.as_str()),
                    number: None,
                    currency: None,
                    total: Decimal::new(100_000 + 2_500 * i as i64, 2),
                    issue_date: due - Duration::days(30),
                    due_date: due,
                    behaviour: Some(Behaviour::Never),
                })
                .expect("create invoice"),
            );
        }
    }
    assert_eq!(age(0), 1);
    assert_eq!(age(INVOICES - 1), 150);
    out
}

/// A reminder that reached the customer, with what it said.
struct Sent {
    on: NaiveDate,
    template: String,
    body: String,
}

/// The reminders per invoice that the sandbox applied, named by their journal entries.
fn reminders_sent(
    rows: &[Row],
    store: &dyn Store,
    invoices: &[CreatedInvoice],
) -> HashMap<(System, String), Vec<Sent>> {
    let mut journal: HashMap<String, JournalEntry> = HashMap::new();
    for i in invoices {
        for j in store
            .journal_for_invoice(conn_of(i.system), &i.id)
            .expect("journal")
        {
            journal.insert(j.key.as_str().to_string(), j);
        }
    }
    let mut out: HashMap<(System, String), Vec<Sent>> = HashMap::new();
    for r in rows.iter().filter(|r| r.kind == "email") {
        assert_eq!(r.action, "remind", "an email that is not a reminder: {r:?}");
        let j = r
            .key
            .as_ref()
            .and_then(|k| journal.get(k))
            .unwrap_or_else(|| panic!("an email on an invoice not in the world: {r:?}"));
        let Some(ActionPayload::Remind { template, body, .. }) = j.payload.action() else {
            panic!("a reminder journalled as {:?}", j.payload)
        };
        // The journal keeps the template only for channels that render their own
        // message; otherwise the step names it.
        let template = template
            .clone()
            .unwrap_or_else(|| template_of_step(&r.step).to_string());
        out.entry((r.system, r.invoice_id.clone()))
            .or_default()
            .push(Sent {
                on: r.local_date(),
                template,
                body: body.clone(),
            });
    }
    out
}

/// Checks the conduct rules over the whole ledger; returns (fees, escalations).
fn assert_conduct(
    rows: &[Row],
    store: &dyn Store,
    invoices: &[CreatedInvoice],
    first_day: NaiveDate,
) -> (usize, usize) {
    let customer_of: HashMap<(System, &str), &str> = invoices
        .iter()
        .map(|i| ((i.system, i.id.as_str()), i.customer_id.as_str()))
        .collect();
    let sent = reminders_sent(rows, store, invoices);
    let none = Vec::new();
    let sent_on = |system: System, id: &str| sent.get(&(system, id.to_string())).unwrap_or(&none);
    let notice = Duration::days(NOTICE_DAYS);

    // First cycle: one courteous catch-up per customer (the daily limit), nothing else.
    let first: Vec<&Row> = rows
        .iter()
        .filter(|r| !r.is_audit() && r.local_date() == first_day)
        .collect();
    assert_eq!(
        first.len(),
        2 * CUSTOMERS,
        "one catch-up per customer and system on the first day: {first:#?}"
    );
    for r in &first {
        assert_eq!(
            (r.kind.as_str(), r.action.as_str(), r.step.as_str()),
            ("email", "remind", "catch_up"),
            "the first day sends only catch-up reminders: {r:?}"
        );
    }
    for msgs in sent.values() {
        for s in msgs.iter().filter(|s| s.on == first_day) {
            assert_eq!(s.template, "catch_up", "first-day message:\n{}", s.body);
        }
    }

    // Every invoice's first message is a catch-up, whatever its age.
    for ((system, id), msgs) in &sent {
        let first = msgs.iter().min_by_key(|s| s.on).expect("a message");
        assert_eq!(
            first.template, "catch_up",
            "{system:?} invoice {id}: the customer's first message about it"
        );
    }

    // Stop-work and final notices follow an earlier reminder by notice_days.
    for ((system, id), msgs) in &sent {
        for s in msgs
            .iter()
            .filter(|s| NOTICE_TEMPLATES.contains(&s.template.as_str()))
        {
            assert!(
                msgs.iter().any(|e| e.on <= s.on - notice),
                "{system:?} invoice {id}: {} on {} without a reminder {NOTICE_DAYS} days before",
                s.template,
                s.on
            );
        }
    }

    let mut fees = 0;
    let mut escalations = 0;
    for r in rows.iter().filter(|r| !r.is_audit()) {
        let on = r.local_date();
        let msgs = sent_on(r.system, &r.invoice_id);
        match r.action.as_str() {
            "late_fee" => {
                fees += 1;
                assert!(
                    msgs.iter().any(|s| s.on <= on - notice),
                    "{:?} invoice {}: fee on {on} without a reminder that reached the customer {NOTICE_DAYS} days before ({:?})",
                    r.system,
                    r.invoice_id,
                    msgs.iter().map(|s| s.on).collect::<Vec<_>>()
                );
                assert!(
                    msgs.iter()
                        .any(|s| s.on < on && s.body.contains("late payment fee of")),
                    "{:?} invoice {}: fee on {on} that no earlier message disclosed",
                    r.system,
                    r.invoice_id
                );
                let fee_invoice = r.fee_invoice.as_deref().expect("a separate fee invoice");
                assert!(
                    sent_on(r.system, fee_invoice).is_empty(),
                    "late-fee invoice {fee_invoice} chased through a ladder of its own"
                );
            }
            "escalate" => {
                escalations += 1;
                assert!(
                    msgs.iter().any(|s| s.on <= on - notice),
                    "{:?} invoice {}: escalated on {on} without a reminder that reached the customer {NOTICE_DAYS} days before",
                    r.system,
                    r.invoice_id
                );
                // The message announcing it: the final notice, or the catch-up that spoke
                // for it; either names the referral to collection.
                assert!(
                    msgs.iter()
                        .any(|s| s.on <= on - notice && s.body.contains("collection")),
                    "{:?} invoice {}: escalated on {on}, not announced {NOTICE_DAYS} days before: {:?}",
                    r.system,
                    r.invoice_id,
                    msgs.iter().map(|s| (s.on, &s.template)).collect::<Vec<_>>()
                );
            }
            _ => {}
        }
    }

    // The daily limit: at most one message per customer per local day.
    let mut per_day: BTreeMap<(String, String, NaiveDate), usize> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.kind == "email") {
        let customer = customer_of
            .get(&(r.system, r.invoice_id.as_str()))
            .unwrap_or_else(|| panic!("an email about an invoice not in the world: {r:?}"));
        *per_day
            .entry((
                format!("{:?}", r.system),
                customer.to_string(),
                r.local_date(),
            ))
            .or_default() += 1;
    }
    for ((system, customer, day), n) in &per_day {
        assert!(
            *n <= 1,
            "{system} customer {customer} got {n} messages on {day} (limit 1)"
        );
    }
    (fees, escalations)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switched_on_over_old_debts_it_catches_up_first_and_gives_notice_before_consequences() {
    // Monday 1 June 2026, 10:00 in London: the owner switches overdued on.
    let first_day = date(2026, 6, 1);
    let h = Harness::start(
        empty_world(london(first_day, 9, 0)),
        "Europe/London",
        CONDUCT_POLICY,
    )
    .await;
    let invoices = overdue_world(h.sandbox(), first_day);
    // One invoice per system is disputed for a few days around its final notice (34 days
    // overdue on day 1, its catch-up goes out on day 4, behind its customer's three older
    // invoices; the final notice falls due on day 27): the final notice goes out late, on
    // the day the pause is lifted, and the escalation must wait notice_days after it,
    // not merely follow the policy's day.
    let disputed: Vec<&CreatedInvoice> = invoices
        .iter()
        .filter(|i| i.number == invoices_of(&invoices, i.system)[DISPUTED].number)
        .collect();
    assert_eq!(age(DISPUTED), 34);
    let day = |n: i64| first_day + Duration::days(n);
    h.daily(day(0), day(24), 10).await;
    for i in &disputed {
        let pause = Hold::Pause {
            reason: "disputed".into(),
            set_at: london(day(24), 12, 0),
        };
        h.store
            .put_hold(
                conn_of(i.system),
                &HoldTarget::Invoice(i.id.clone()),
                &pause,
            )
            .expect("pause");
    }
    h.daily(day(25), day(30), 10).await;
    for i in &disputed {
        assert!(h
            .store
            .remove_hold(
                conn_of(i.system),
                &HoldTarget::Invoice(i.id.clone()),
                HoldKind::Pause
            )
            .expect("resume"));
    }
    h.daily(day(31), day(DAYS_AFTER), 10).await;

    let rows = h.ledger();
    assert_ledger_consistent(&rows);
    let (fees, escalations) = assert_conduct(&rows, h.store.as_ref(), &invoices, first_day);
    // The rules above must have had something to judge, in both systems.
    for system in [System::QuickBooks, System::Xero] {
        let of = |action: &str| {
            rows.iter()
                .filter(|r| r.system == system && r.action == action)
                .count()
        };
        assert!(of("late_fee") > 0, "{system:?}: no fee in 60 days");
        assert!(of("escalate") > 0, "{system:?}: no escalation in 60 days");
        let caught_up = rows
            .iter()
            .filter(|r| r.system == system && r.step == "catch_up")
            .count();
        assert_eq!(
            caught_up, INVOICES,
            "{system:?}: every invoice of the world adopted by one catch-up"
        );
    }
    assert!(
        fees >= 2 && escalations >= 2,
        "{fees} fees, {escalations} escalations"
    );
    eprintln!(
        "conduct: {} invoices adopted in two systems, {} reminders, {fees} fees, {escalations} escalations over {} days",
        invoices.len(),
        rows.iter().filter(|r| r.kind == "email").count(),
        DAYS_AFTER + 1
    );
    for i in &disputed {
        let final_notice = rows
            .iter()
            .find(|r| r.invoice_id == i.id && r.step == "+53d" && r.kind == "email")
            .map(Row::local_date)
            .unwrap_or_else(|| panic!("{:?}: no final notice on the disputed invoice", i.system));
        assert_eq!(
            final_notice,
            day(31),
            "{:?}: sent when the pause was lifted",
            i.system
        );
        let escalated = rows
            .iter()
            .find(|r| r.invoice_id == i.id && r.action == "escalate")
            .map(Row::local_date);
        assert_eq!(
            escalated,
            Some(day(31 + NOTICE_DAYS)),
            "{:?}: escalated notice_days after the late final notice",
            i.system
        );
    }
    assert_journal_settled(h.store.as_ref());
}

/// The invoices of one system, in the order [`overdue_world`] made them.
fn invoices_of(all: &[CreatedInvoice], system: System) -> Vec<&CreatedInvoice> {
    all.iter().filter(|i| i.system == system).collect()
}

/// `plan --json` on the first run, through the binary: adoption pending for every
/// invoice, and per action the fields a script reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_json_names_kind_step_template_days_overdue_and_invoice_number() {
    // `plan` refreshes with the real clock: build the world around today.
    let now = Utc::now();
    let today = now.with_timezone(&LONDON).date_naive();
    let running = Sandbox::start(
        SandboxOptions {
            seed: 13,
            customers: 1,
            invoices: 0,
            start: now,
            enforce_limits: false,
            ..SandboxOptions::default()
        },
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("sandbox starts");
    let invoices = overdue_world(&running.sandbox, today);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("overdued.toml");
    let text = config_text(
        &running.sandbox,
        &running.url(),
        "state",
        "Europe/London",
        CONDUCT_POLICY,
    );
    std::fs::write(&path, text).expect("write config");

    let at = today.to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_overdued"))
            .args(["plan", "--json", "--at", &at, "--config"])
            .arg(&path)
            .env_remove("RUST_LOG")
            .env_remove("OVERDUED_LOG")
            .output()
            .expect("run overdued plan")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}\n{}\n{stdout}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let plans: serde_json::Value = serde_json::from_str(&stdout).expect("plan --json is JSON");
    let plans = plans.as_array().expect("one plan per connection");
    assert_eq!(plans.len(), 2, "{stdout}");

    for p in plans {
        let system = match p["system"].as_str() {
            Some(s) if s.to_lowercase().contains("xero") => System::Xero,
            Some(_) => System::QuickBooks,
            None => panic!("no system: {p}"),
        };
        assert!(p["sync_error"].is_null(), "{p}");
        let world: HashMap<&str, &CreatedInvoice> = invoices
            .iter()
            .filter(|i| i.system == system)
            .map(|i| (i.id.as_str(), i))
            .collect();
        // First run: every invoice is adopted, whatever its age.
        let adoption = &p["adoption"];
        assert_eq!(adoption["invoices"], INVOICES, "{adoption}");
        assert_eq!(adoption["first"]["catch_up"], INVOICES, "{adoption}");

        let actions = p["actions"].as_array().expect("actions");
        let brief: Vec<String> = actions
            .iter()
            .map(|a| {
                format!(
                    "{} {} {} {}",
                    a["customer_id"], a["invoice_number"], a["step_id"], a["days_overdue"]
                )
            })
            .collect();
        assert_eq!(
            actions.len(),
            CUSTOMERS,
            "one per customer today: {brief:#?}"
        );
        for a in actions {
            for field in [
                "kind",
                "step_id",
                "template",
                "days_overdue",
                "invoice_number",
            ] {
                assert!(
                    a.get(field).is_some_and(|v| !v.is_null()),
                    "no {field}: {a}"
                );
            }
            assert_eq!(a["kind"], "remind", "{a}");
            assert_eq!(a["step_id"], "catch_up", "{a}");
            assert_eq!(a["template"], "catch_up", "{a}");
            let id = a["invoice_id"].as_str().expect("invoice_id");
            let inv = world
                .get(id)
                .unwrap_or_else(|| panic!("not in the world: {a}"));
            assert_eq!(a["invoice_number"], inv.number.as_str(), "{a}");
            let i = invoices
                .iter()
                .filter(|i| i.system == system)
                .position(|i| i.id == id)
                .expect("position");
            assert_eq!(a["days_overdue"], age(i), "{a}");
        }
        // Most overdue first: each customer's oldest invoice goes out today.
        let mut oldest = vec![0i64; CUSTOMERS];
        for i in 0..INVOICES {
            oldest[i % CUSTOMERS] = oldest[i % CUSTOMERS].max(age(i));
        }
        let mut got: Vec<i64> = actions
            .iter()
            .map(|a| a["days_overdue"].as_i64().expect("days"))
            .collect();
        got.sort_unstable();
        oldest.sort_unstable();
        assert_eq!(got, oldest, "most overdue first");
    }
    drop(running);
}
