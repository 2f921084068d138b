use chrono::TimeZone;
use overdued_connector::{ConnectionId, Customer, IdempotencyKey};

use super::outcome::CalledRequest;
use super::*;
use crate::engine::plan::tests_support::invoice;
use crate::ops::{apply, Op};
use crate::store::{InvoiceRecord, JournalEntry, JournalPayload, SledStore};

const CONFIG: &str = "[daemon]\nstate_dir = \"state\"\ntime_zone = \"UTC\"\n\n[quickbooks.acme-qbo]\nrealm_id = \"9341453\"\nclient_id = \"abc\"\nclient_secret = \"s\"\nenvironment = \"sandbox\"\n";

fn now() -> DateTime<Utc> {
    // A Wednesday, 40 days after the test invoices fell due (2026-10-31).
    Utc.with_ymd_and_hms(2026, 12, 10, 10, 0, 0).unwrap()
}

/// Customer 7 owes two invoices and has phones; customer 8 has no email anywhere;
/// customer 9 owes one invoice that was escalated.
fn world() -> (tempfile::TempDir, Config, SledStore) {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::config::parse(CONFIG, &dir.path().join("c.toml")).unwrap();
    let store = SledStore::open(&dir.path().join("state")).unwrap();
    let at = now() - Duration::days(60);
    for (id, customer, total) in [
        ("150", "7", 100),
        ("151", "7", 250),
        ("152", "8", 40),
        ("153", "9", 900),
    ] {
        let mut snapshot = invoice(id, customer, total);
        if customer == "8" {
            snapshot.customer.email = None;
        }
        store
            .put_invoice(&InvoiceRecord {
                snapshot,
                seen_at: at,
                first_seen_at: at,
                balance_history: Vec::new(),
            })
            .unwrap();
    }
    for (id, phones) in [
        (
            "7",
            vec![("primary", "(415) 555-0107"), ("mobile", "(650) 555-0157")],
        ),
        ("8", vec![("primary", "(415) 555-0108")]),
        ("9", vec![]),
    ] {
        store
            .put_customer(&Customer {
                connection: ConnectionId::new("acme-qbo"),
                id: id.into(),
                name: format!("Customer {id}"),
                email: (id != "8").then(|| format!("ap@c{id}.example")),
                updated_at: None,
                phones: phones
                    .into_iter()
                    .map(|(k, n)| Phone {
                        kind: k.into(),
                        number: n.into(),
                    })
                    .collect(),
            })
            .unwrap();
    }
    let ledger = "quickbooks:9341453";
    for (id, customer, kind, step, subject, days_ago) in [
        (
            "150",
            "7",
            ActionKind::Remind,
            "+7d",
            "Invoice 10150 is overdue",
            33,
        ),
        (
            "153",
            "9",
            ActionKind::Remind,
            "+7d",
            "Invoice 10153 is overdue",
            33,
        ),
        ("153", "9", ActionKind::Escalate, "+30d", "", 3),
    ] {
        let payload = match kind {
            ActionKind::Escalate => ActionPayload::Escalate {
                text: "referred".into(),
            },
            _ => ActionPayload::Remind {
                subject: subject.into(),
                body: "b".into(),
                channel: None,
                template: None,
                context: None,
            },
        };
        store
            .put_journal(&JournalEntry {
                key: IdempotencyKey::derive(ledger, id, kind, step),
                connection: "acme-qbo".into(),
                invoice_id: id.into(),
                customer_id: customer.into(),
                kind,
                step_id: step.into(),
                planned_for: (now() - Duration::days(days_ago)).date_naive(),
                created_at: now() - Duration::days(days_ago),
                expected_amount_due: Decimal::from(100),
                payload: JournalPayload::Action(payload),
                state: JournalState::Done {
                    at: now() - Duration::days(days_ago),
                    created_id: None,
                    replayed: false,
                },
                audit_note_done: true,
                ledger: Some(ledger.into()),
                sent_key: None,
            })
            .unwrap();
    }
    (dir, config, store)
}

fn list(config: &Config, store: &SledStore, at: DateTime<Utc>) -> Vec<CallEntry> {
    calls_list(config, &config.connections[0], store, at).unwrap()
}

fn called(
    config: &Config,
    store: &SledStore,
    customer: &str,
    outcome: CalledRequest,
    invoice: Option<&str>,
) -> Result<String, crate::ops::OpError> {
    apply(
        &Op::Called {
            connection: "acme-qbo".into(),
            customer: customer.into(),
            invoice: invoice.map(String::from),
            outcome,
        },
        config,
        store,
        now(),
    )
}

#[test]
fn the_list_has_one_entry_per_customer_with_phones_amounts_and_reasons() {
    let (_dir, config, store) = world();
    let l = list(&config, &store, now());
    let names: Vec<&str> = l.iter().map(|e| e.name.as_str()).collect();
    // Customer 7 has an email and nothing escalated: not to call. Equally overdue,
    // by name.
    assert_eq!(names, ["Customer 8", "Customer 9"], "{l:#?}");
    let nine = &l[1];
    assert_eq!(nine.owed_text, "USD 900.00");
    assert_eq!(nine.oldest_days_overdue, 40);
    assert!(matches!(nine.reasons[0], CallReason::Escalated { .. }));
    assert_eq!(nine.sent.len(), 2, "{nine:#?}");
    let eight = &l[0];
    assert_eq!(eight.reasons, vec![CallReason::NoEmail]);
    assert_eq!(eight.phones[0].number, "(415) 555-0108");
    // Computing it again (another cycle, another day) never grows it.
    assert_eq!(list(&config, &store, now()).len(), 2);
    assert_eq!(list(&config, &store, now() + Duration::days(3)).len(), 2);
    let text = render(&l, chrono_tz::UTC, "acme-qbo");
    assert!(
        text.contains("Customer 8 (id 8): owes USD 40.00, oldest 40 days overdue"),
        "{text}"
    );
    assert!(
        text.contains("phone:    (415) 555-0108 (primary)"),
        "{text}"
    );
    assert!(
        text.contains("no email address anywhere in the ledger"),
        "{text}"
    );
    assert!(
        text.contains("marked for collection: invoice 10153 (2026-12-07)"),
        "{text}"
    );
}

#[test]
fn outcomes_take_customers_off_the_list_or_put_them_back() {
    let (_dir, config, store) = world();
    // No answer: off today, back the next working day (Thursday).
    let out = called(&config, &store, "Customer 8", CalledRequest::NoAnswer, None).unwrap();
    assert!(
        out.contains("stays on the calls list from 2026-12-11"),
        "{out}"
    );
    assert_eq!(list(&config, &store, now()).len(), 1);
    let back = list(&config, &store, now() + Duration::days(1));
    assert_eq!(back.len(), 2);
    assert!(
        back[0]
            .last_call
            .as_deref()
            .unwrap()
            .starts_with("no answer"),
        "{back:#?}"
    );

    // Handled: off the list until something new is due.
    called(&config, &store, "8", CalledRequest::Handled, None).unwrap();
    assert_eq!(list(&config, &store, now() + Duration::days(1)).len(), 1);

    // Collections: the invoices are paused for good and nothing more is asked.
    let out = called(
        &config,
        &store,
        "Customer 9",
        CalledRequest::Collections,
        None,
    )
    .unwrap();
    assert!(out.contains("sent to a collection agency"), "{out}");
    assert!(
        out.contains("a note goes onto invoice 10153 in the ledger"),
        "{out}"
    );
    assert!(list(&config, &store, now() + Duration::days(1)).is_empty());
    let holds = store.holds("acme-qbo").unwrap();
    assert!(holds
        .iter()
        .any(|(t, h)| *t == HoldTarget::Invoice("153".into())
            && matches!(h, Hold::Pause { reason, .. } if reason.contains("collection agency"))));
    // The ledger note is journalled with a key of its own, for the executor.
    let note = store
        .journal_for_invoice("acme-qbo", "153")
        .unwrap()
        .into_iter()
        .find(|e| e.step_id.starts_with("call_outcome@"))
        .unwrap();
    assert_eq!(note.kind, ActionKind::Note);
    assert!(matches!(note.state, JournalState::Intent));
    assert_eq!(
        note.key,
        IdempotencyKey::derive("quickbooks:9341453", "153", ActionKind::Note, &note.step_id)
    );
    // Recorded as a typed outcome that a later read finds.
    let rec = outcome::recorded(&store, "acme-qbo", now()).unwrap();
    assert_eq!(rec["9"][0].outcome, CallOutcome::Collections);
}

#[test]
fn a_promise_holds_the_invoices_and_bad_input_names_the_field() {
    let (_dir, config, store) = world();
    let promise = |until: NaiveDate, amount: Option<&str>, invoice: Option<&str>| {
        called(
            &config,
            &store,
            "customer 7",
            CalledRequest::Promise {
                until,
                amount: amount.map(String::from),
            },
            invoice,
        )
    };
    let today = now().date_naive();
    let e = promise(today, None, None).unwrap_err();
    assert_eq!(e.code, 64);
    assert!(
        e.message
            .starts_with("--until 2026-12-10 is not in the future"),
        "{}",
        e.message
    );
    let e = promise(today + Duration::days(31), None, None).unwrap_err();
    assert!(
        e.message.contains("daemon.max_promise_days = 30"),
        "{}",
        e.message
    );
    let e = promise(today + Duration::days(5), Some("50"), None).unwrap_err();
    assert!(
        e.message.contains("name the one promised with --invoice"),
        "{}",
        e.message
    );
    let e = promise(today + Duration::days(5), Some("101"), Some("10150")).unwrap_err();
    assert!(
        e.message
            .starts_with("--amount 101 must be at most the balance"),
        "{}",
        e.message
    );
    let e = promise(today + Duration::days(5), None, Some("10152")).unwrap_err();
    assert!(
        e.message.contains("is billed to Customer 8"),
        "{}",
        e.message
    );
    let e = called(&config, &store, "nobody", CalledRequest::Handled, None).unwrap_err();
    assert_eq!(e.code, 64);
    assert!(
        e.message
            .contains("no customer with id, name or email \"nobody\""),
        "{}",
        e.message
    );

    let out = promise(today + Duration::days(5), None, None).unwrap();
    assert!(
        out.contains("promise to pay the balance by 2026-12-15 recorded on invoice 10150, 10151"),
        "{out}"
    );
    let holds = store.holds("acme-qbo").unwrap();
    assert_eq!(
        holds
            .iter()
            .filter(|(_, h)| matches!(h, Hold::Promise { .. }))
            .count(),
        2
    );
}

#[test]
fn a_promise_on_an_escalated_invoice_resumes_chasing_after_it() {
    let (_dir, config, store) = world();
    let until = now().date_naive() + Duration::days(7);
    called(
        &config,
        &store,
        "9",
        CalledRequest::Promise {
            until,
            amount: None,
        },
        None,
    )
    .unwrap();
    // Off the list while the promise stands.
    assert!(list(&config, &store, now())
        .iter()
        .all(|e| e.customer_id != "9"));
    let grace = i64::from(config.engine.promise_grace_days);
    assert_eq!(
        escalation::resumed_on(&store, "acme-qbo", "153").unwrap(),
        Some(until + Duration::days(grace + 1))
    );
    // Broken: back on the list, for the broken promise (not the old escalation).
    let later = list(&config, &store, now() + Duration::days(8));
    let nine = later.iter().find(|e| e.customer_id == "9").unwrap();
    assert_eq!(nine.promises_broken, 1);
    assert!(
        matches!(&nine.reasons[..], [CallReason::BrokenPromise { until: u, .. }] if *u == until),
        "{nine:#?}"
    );
}

#[test]
fn resume_takes_an_escalated_invoice_back_into_the_ladder() {
    let (_dir, config, store) = world();
    let out = apply(
        &Op::Resume {
            connection: "acme-qbo".into(),
            id: "10153".into(),
            customer: false,
        },
        &config,
        &store,
        now(),
    )
    .unwrap();
    assert!(out.contains("taken back from collection"), "{out}");
    assert_eq!(
        escalation::resumed_on(&store, "acme-qbo", "153").unwrap(),
        Some(now().date_naive())
    );
    // No longer a call for the escalation.
    assert!(list(&config, &store, now())
        .iter()
        .all(|e| e.customer_id != "9"));
    // A second resume has nothing to resume.
    let e = apply(
        &Op::Resume {
            connection: "acme-qbo".into(),
            id: "10153".into(),
            customer: false,
        },
        &config,
        &store,
        now(),
    )
    .unwrap_err();
    assert_eq!(e.code, 64);
}

#[test]
fn an_export_holds_the_invoices_messages_and_calls() {
    let (_dir, config, store) = world();
    called(
        &config,
        &store,
        "9",
        CalledRequest::Dispute {
            reason: "says the work was late".into(),
        },
        Some("10153"),
    )
    .unwrap();
    let x = export::build(&config, &store, now(), "acme-qbo", "Customer 9", false).unwrap();
    assert_eq!(x.files[0].name, "acme-qbo-customer-9-2026-12-10.csv");
    let csv = &x.files[0].content;
    assert!(csv.starts_with("record,date,invoice,customer,channel,description,amount,currency\n"));
    assert!(csv.contains("invoice,2026-10-01,10153,Customer 9,,\"issued 2026-10-01, due 2026-10-31, total 900.00, balance 900.00\",900,USD"), "{csv}");
    assert!(csv.contains("message,2026-11-07 10:00,10153,Customer 9,email (accounting system),reminder (+7d): Invoice 10153 is overdue,,"), "{csv}");
    assert!(csv.contains("escalation,2026-12-07"), "{csv}");
    assert!(csv.contains("call,2026-12-10 10:00,10153,Customer 9,telephone,call with Customer 9: disputes: says the work was late"), "{csv}");
    let letter = &x.files[1].content;
    assert!(letter.contains("Account of Customer 9"), "{letter}");
    assert!(letter.contains("Invoice 10153: issued 2026-10-01, due 2026-10-31, total USD 900.00, unpaid USD 900.00 (40 days overdue)"), "{letter}");
    assert!(letter.contains("Total unpaid: USD 900.00"), "{letter}");
    // By invoice number, the same invoice.
    let by_number = export::build(&config, &store, now(), "acme-qbo", "10153", false).unwrap();
    assert_eq!(
        by_number.files[0].name,
        "acme-qbo-invoice-10153-2026-12-10.csv"
    );
    let e = export::build(&config, &store, now(), "acme-qbo", "nobody", false).unwrap_err();
    assert_eq!(e.code, 64);
}

#[test]
fn a_working_day_follows_a_friday_on_monday() {
    let fri = NaiveDate::from_ymd_opt(2026, 12, 4).unwrap();
    assert_eq!(
        next_working_day(fri),
        NaiveDate::from_ymd_opt(2026, 12, 7).unwrap()
    );
    let wed = NaiveDate::from_ymd_opt(2026, 12, 9).unwrap();
    assert_eq!(
        next_working_day(wed),
        NaiveDate::from_ymd_opt(2026, 12, 10).unwrap()
    );
}

#[test]
fn a_call_step_puts_the_customer_on_the_list_and_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{CONFIG}\n[[policies.default.steps]]\noffset = \"+7d\"\naction = \"remind\"\ntemplate = \"follow_up\"\n\n[[policies.default.steps]]\noffset = \"+30d\"\naction = \"call\"\n"
    );
    let config = crate::config::parse(&text, &dir.path().join("c.toml")).unwrap();
    let store = SledStore::open(&dir.path().join("state")).unwrap();
    let at = now() - Duration::days(60);
    store
        .put_invoice(&InvoiceRecord {
            snapshot: invoice("150", "7", 100),
            seen_at: at,
            first_seen_at: at,
            balance_history: Vec::new(),
        })
        .unwrap();
    // Overdue but never written to: no call before the customer has heard from us.
    assert!(list(&config, &store, now()).is_empty());
    // Reminded at +7d (33 days ago); 40 days overdue: the +30d call step is due.
    put_done_reminder(&store, "150", "7", "+7d", now() - Duration::days(33));
    let l = list(&config, &store, now());
    assert_eq!(l.len(), 1);
    assert_eq!(
        l[0].reasons,
        vec![CallReason::CallStep {
            invoice: "10150".into(),
            step: "+30d".into()
        }]
    );
    // Not yet at +20d.
    assert!(list(&config, &store, now() - Duration::days(20)).is_empty());
    // Handled: off the list.
    called(&config, &store, "7", CalledRequest::Handled, None).unwrap();
    assert!(list(&config, &store, now() + Duration::days(1)).is_empty());

    // The planner makes no action of it: nothing goes to the customer for a call step.
    let case = crate::engine::plan::InvoiceCase {
        invoice: invoice("150", "7", 100),
        history: Default::default(),
    };
    for day in [30, 31, 40] {
        let at = Utc.from_utc_datetime(
            &(invoice("150", "7", 100).due_date + Duration::days(day))
                .and_hms_opt(10, 0, 0)
                .unwrap(),
        );
        let p = crate::engine::plan::plan(&crate::engine::plan::PlanInputs {
            now: at,
            time_zone: chrono_tz::UTC,
            settings: &config.engine,
            policies: &config.policy_book,
            default_policy: "default",
            ledger: "quickbooks:9341453",
            invoices: std::slice::from_ref(&case),
        })
        .unwrap();
        assert!(
            p.actions.iter().all(|a| a.step_id != "+30d"),
            "{:?}",
            p.actions
        );
    }
}

#[test]
fn the_digest_names_each_customer_to_call_once() {
    let (_dir, config, store) = world();
    let lines = digest_lines(&config, &store, now()).unwrap();
    assert_eq!(
        lines,
        [
            "to call today: Customer 8 (owes USD 40.00; (415) 555-0108) [acme-qbo]: no email address anywhere in the ledger",
            "to call today: Customer 9 (owes USD 900.00; no phone in the ledger) [acme-qbo]: marked for collection: invoice 10153 (2026-12-07)",
        ]
    );
}

#[test]
fn resume_after_collections_lifts_the_pause_and_takes_the_invoice_back() {
    let (_dir, config, store) = world();
    called(&config, &store, "9", CalledRequest::Collections, None).unwrap();
    let out = apply(
        &Op::Resume {
            connection: "acme-qbo".into(),
            id: "10153".into(),
            customer: false,
        },
        &config,
        &store,
        now(),
    )
    .unwrap();
    assert!(out.contains("taken back from collection"), "{out}");
    assert!(out.contains("its pause is lifted"), "{out}");
    assert!(store.holds("acme-qbo").unwrap().is_empty());
    assert_eq!(
        escalation::resumed_on(&store, "acme-qbo", "153").unwrap(),
        Some(now().date_naive())
    );
}

#[test]
fn a_call_step_with_a_template_or_a_customer_channel_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (extra, field, words) in [
        (
            "template = \"firm\"\n",
            "template",
            "a call step sends no message",
        ),
        (
            "channel = \"smtp\"\n",
            "channel",
            "cannot carry a Call step",
        ),
    ] {
        let text = format!(
            "{CONFIG}\n[[policies.default.steps]]\noffset = \"+30d\"\naction = \"call\"\n{extra}"
        );
        let e = crate::config::parse(&text, &dir.path().join("c.toml")).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(&format!("steps[0].{field}")), "{msg}");
        assert!(msg.contains(words), "{msg}");
    }
}

#[test]
fn an_invoice_the_planner_leaves_alone_is_no_call() {
    let (_dir, config, store) = world();
    let mut r = store.get_invoice("acme-qbo", "152").unwrap().unwrap();
    r.snapshot.memo = "disputed by letter #nochase".into();
    store.put_invoice(&r).unwrap();
    let l = list(&config, &store, now());
    assert!(l.iter().all(|e| e.customer_id != "8"), "{l:#?}");
    assert_eq!(l.len(), 1);
}

#[test]
fn a_payment_the_ledger_does_not_show_within_a_week_is_a_call_again() {
    let (_dir, config, store) = world();
    let out = called(
        &config,
        &store,
        "7",
        CalledRequest::Paid { on: None },
        Some("10150"),
    )
    .unwrap();
    assert!(
        out.contains("paused until the ledger shows the payment"),
        "{out}"
    );
    let seven = |at: DateTime<Utc>| {
        list(&config, &store, at)
            .into_iter()
            .find(|e| e.customer_id == "7")
    };
    assert!(seven(now() + Duration::days(6)).is_none());
    let e = seven(now() + Duration::days(7)).expect("back on the list");
    assert_eq!(
        e.reasons,
        vec![CallReason::PaymentNotSeen {
            invoice: "10150".into(),
            since: now().date_naive()
        }]
    );
    // What they owe in all, the other overdue invoice included.
    assert_eq!(e.owed_text, "USD 350.00");
    // Paid in the ledger: the invoice is closed and the call with it.
    let mut r = store.get_invoice("acme-qbo", "150").unwrap().unwrap();
    r.snapshot.status = overdued_connector::InvoiceStatus::Paid;
    r.snapshot.amount_due = Decimal::ZERO;
    store.put_invoice(&r).unwrap();
    assert!(seven(now() + Duration::days(7)).is_none());
}

#[test]
fn the_promise_command_on_an_escalated_invoice_resumes_chasing_after_it() {
    let (_dir, config, store) = world();
    let until = now().date_naive() + Duration::days(5);
    let out = apply(
        &Op::Promise {
            connection: "acme-qbo".into(),
            invoice: "10153".into(),
            until,
            amount: None,
        },
        &config,
        &store,
        now(),
    )
    .unwrap();
    assert!(
        out.contains("chasing resumes after it if still unpaid"),
        "{out}"
    );
    let grace = i64::from(config.engine.promise_grace_days);
    assert_eq!(
        escalation::resumed_on(&store, "acme-qbo", "153").unwrap(),
        Some(until + Duration::days(grace + 1))
    );
    // Not an escalated invoice: nothing to resume.
    apply(
        &Op::Promise {
            connection: "acme-qbo".into(),
            invoice: "10150".into(),
            until,
            amount: None,
        },
        &config,
        &store,
        now(),
    )
    .unwrap();
    assert_eq!(
        escalation::resumed_on(&store, "acme-qbo", "150").unwrap(),
        None
    );
}

#[test]
fn status_no_longer_asks_for_a_call_about_an_invoice_with_an_agency() {
    let (_dir, config, store) = world();
    let status = |store: &SledStore| {
        crate::report::status::connection_status(&config, &config.connections[0], store, now())
            .unwrap()
            .attention
    };
    let a = status(&store);
    assert_eq!(a.escalated, ["10153"]);
    assert_eq!(a.calls.len(), 2);
    assert!(a.calls[1].starts_with("Customer 9 (owes USD 900.00; no phone in the ledger)"));
    called(&config, &store, "9", CalledRequest::Collections, None).unwrap();
    let a = status(&store);
    assert!(a.escalated.is_empty(), "{a:?}");
    assert_eq!(a.calls.len(), 1, "{a:?}");
}

fn put_done_reminder(store: &SledStore, id: &str, customer: &str, step: &str, at: DateTime<Utc>) {
    let ledger = "quickbooks:9341453";
    store
        .put_journal(&JournalEntry {
            key: IdempotencyKey::derive(ledger, id, ActionKind::Remind, step),
            connection: "acme-qbo".into(),
            invoice_id: id.into(),
            customer_id: customer.into(),
            kind: ActionKind::Remind,
            step_id: step.into(),
            planned_for: at.date_naive(),
            created_at: at,
            expected_amount_due: Decimal::from(100),
            payload: JournalPayload::Action(ActionPayload::Remind {
                subject: format!("Invoice {id}"),
                body: "b".into(),
                channel: None,
                template: None,
                context: None,
            }),
            state: JournalState::Done {
                at,
                created_id: None,
                replayed: false,
            },
            audit_note_done: true,
            ledger: Some(ledger.into()),
            sent_key: None,
        })
        .unwrap();
}

/// An invoice adopted late (first message a catch-up at 38 days overdue) gets its +30d
/// call no sooner than the step's gap after that catch-up: 23 days, as the ladder runs.
#[test]
fn a_call_step_follows_the_first_message_of_an_adopted_invoice() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{CONFIG}\n[[policies.default.steps]]\noffset = \"+7d\"\naction = \"remind\"\ntemplate = \"follow_up\"\n\n[[policies.default.steps]]\noffset = \"+30d\"\naction = \"call\"\n"
    );
    let config = crate::config::parse(&text, &dir.path().join("c.toml")).unwrap();
    let store = SledStore::open(&dir.path().join("state")).unwrap();
    let at = now() - Duration::days(2);
    store
        .put_invoice(&InvoiceRecord {
            snapshot: invoice("150", "7", 100),
            seen_at: at,
            first_seen_at: at,
            balance_history: Vec::new(),
        })
        .unwrap();
    put_done_reminder(&store, "150", "7", "catch_up", at);
    // Two days after the catch-up, 40 days overdue: the step's day has passed, its gap not.
    assert!(list(&config, &store, now()).is_empty());
    assert!(list(&config, &store, at + Duration::days(22)).is_empty());
    let l = list(&config, &store, at + Duration::days(23));
    assert_eq!(
        l[0].reasons,
        vec![CallReason::CallStep {
            invoice: "10150".into(),
            step: "+30d".into()
        }]
    );
}
