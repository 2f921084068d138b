//! Snapshots of every default template at every step of the built-in policy: a change to
//! a template's wording fails here until the snapshot is deliberately rewritten
//! (`OVERDUED_UPDATE_SNAPSHOTS=1 cargo test --test channels_templates`).

use std::path::PathBuf;

use overdued::channels::templates::{
    DigestContext, StatementContext, StepContext, TestContext, STEP_TEMPLATES,
};
use overdued::channels::{Rendered, Templates};
use overdued::engine::Policy;

fn snapshot(name: &str, r: &Rendered) {
    let text = format!(
        "Subject: {}\n\n{}\n==== text/html ====\n{}",
        r.subject, r.text, r.html
    );
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots/channels")
        .join(format!("{name}.snap"));
    if std::env::var_os("OVERDUED_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (write it with OVERDUED_UPDATE_SNAPSHOTS=1)",
            path.display()
        )
    });
    assert_eq!(
        text, want,
        "{name} changed; if intended, rewrite the snapshot"
    );
}

/// The step's message as it is rendered at send time on the step's day: reminders sent
/// on the built-in policy's earlier days, the pay link, the attached PDF.
fn context_for(day: i64, template: &str) -> StepContext {
    let mut c = StepContext::sample();
    c.days_overdue = day;
    c.fee = None;
    c.fee_notice = String::new();
    c.fee_terms = String::new();
    c.payment_instructions = String::new();
    // The built-in ladder's customer reminders before `day`: -3, 0, 7, 14, 30, 60.
    let earlier = [-3i64, 0, 7, 14, 30, 60]
        .iter()
        .filter(|d| **d < day)
        .count();
    c.earlier_reminders = earlier as u32;
    c.first_reminder_date = if earlier > 0 {
        "28 October 2026".into()
    } else {
        String::new()
    };
    c.next_step = match template {
        "heads_up" | "due_today" | "catch_up" => String::new(),
        "final_notice" => {
            "If the invoice is still unpaid on 29 January 2027, we will refer it for collection."
                .into()
        }
        _ => {
            "If payment has not reached us by 30 November 2026, we will write to you again.".into()
        }
    };
    if matches!(template, "stop_work" | "final_notice" | "escalation") {
        c.fee = Some("USD 25.00".into());
        c.fee_invoice_number = "1037-F".into();
        c.fee_invoice_amount = "USD 25.00".into();
    }
    c
}

#[test]
fn every_default_step_template_matches_its_snapshot() {
    let t = Templates::built_in();
    let policy = Policy::default_policy();
    let mut seen = Vec::new();
    for step in &policy.steps {
        let id = step
            .template
            .clone()
            .expect("built-in steps name their template");
        let day: i64 = step.offset.trim_end_matches('d').parse().unwrap();
        let r = t.render(&id, &context_for(day, &id)).unwrap();
        snapshot(
            &format!(
                "{id}_at_{}",
                step.offset.replace('+', "plus").replace('-', "minus")
            ),
            &r,
        );
        seen.push(id);
    }
    // The first message to an invoice overdued adopted already past due.
    let r = t.render("catch_up", &context_for(45, "catch_up")).unwrap();
    snapshot("catch_up", &r);
    seen.push("catch_up".into());
    // Not a step of the built-in policy, but sent whenever a promise is broken.
    let r = t
        .render("promise_broken", &context_for(21, "promise_broken"))
        .unwrap();
    snapshot("promise_broken", &r);
    seen.push("promise_broken".into());
    // A payment plan's messages (see tests/arrangements.rs for when each goes).
    for (id, day) in [
        ("plan_agreed", 20),
        ("instalment_heads_up", 28),
        ("instalment_due", 31),
        ("plan_missed", 35),
    ] {
        let mut c = context_for(day, id);
        c.plan_id = "P1".into();
        c.plan_invoices = "1037".into();
        c.plan_schedule = if id == "plan_agreed" {
            "1. 1 December 2026: USD 120.69\n2. 15 December 2026: USD 120.69\n3. 29 December 2026: USD 120.69"
        } else {
            "1. 1 December 2026: USD 20.69 of USD 120.69 (the rest paid)\n2. 15 December 2026: USD 120.69\n3. 29 December 2026: USD 120.69"
        }
        .into();
        c.instalment_number = "1".into();
        c.instalment_date = "1 December 2026".into();
        c.instalment_amount = "USD 20.69".into();
        let r = t.render(id, &c).unwrap();
        assert!(
            r.text.contains("https://pay.example/1037"),
            "{id}: {}",
            r.text
        );
        snapshot(id, &r);
        seen.push(id.into());
    }
    for id in STEP_TEMPLATES {
        assert!(seen.iter().any(|s| s == id), "{id} has no snapshot");
    }
}

#[test]
fn a_message_without_pay_link_or_next_step_reads_cleanly() {
    let t = Templates::built_in();
    let mut c = context_for(14, "firm");
    c.pay_link = String::new();
    c.next_step = String::new();
    let r = t.render("firm", &c).unwrap();
    snapshot("firm_no_link_no_next_step", &r);
    assert!(!r.text.contains("\n\n\n"));
    assert!(r.text.contains("Payment details are shown on the invoice."));
}

#[test]
fn statement_digest_and_test_email_match_their_snapshots() {
    let t = Templates::built_in();
    snapshot(
        "statement",
        &t.render("statement", &StatementContext::sample()).unwrap(),
    );
    snapshot(
        "digest",
        &t.render("digest", &DigestContext::sample()).unwrap(),
    );
    snapshot(
        "test_email",
        &t.render("test_email", &TestContext::sample()).unwrap(),
    );
}

#[test]
fn follow_up_says_how_many_reminders_came_before_and_since_when() {
    let t = Templates::built_in();
    let mut c = context_for(7, "follow_up");
    c.earlier_reminders = 0;
    c.first_reminder_date = String::new();
    let none = t.render("follow_up", &c).unwrap();
    snapshot("follow_up_no_earlier_reminders", &none);
    assert!(none.text.contains("It may simply have been missed."));
    assert!(!none.text.contains("written to you"), "{}", none.text);

    c.earlier_reminders = 2;
    c.first_reminder_date = "28 October 2026".into();
    let two = t.render("follow_up", &c).unwrap();
    snapshot("follow_up_two_earlier_reminders", &two);
    assert!(
        two.text
            .contains("We have written to you about it 2 times since 28 October 2026."),
        "{}",
        two.text
    );
    assert!(!two.text.contains("It may simply have been missed."));

    c.earlier_reminders = 1;
    let one = t.render("follow_up", &c).unwrap();
    assert!(
        one.text
            .contains("We wrote to you about it on 28 October 2026."),
        "{}",
        one.text
    );
}

#[test]
fn every_customer_message_says_how_to_pay_by_link_or_by_instructions() {
    let t = Templates::built_in();
    let instructions = "bank transfer to Example Ltd, sort code 12-34-56, account 12345678";
    for id in STEP_TEMPLATES.iter().filter(|id| **id != "escalation") {
        let day = if *id == "heads_up" { -3 } else { 20 };
        let mut c = context_for(day, id);
        let linked = t.render(id, &c).unwrap();
        assert!(
            linked
                .text
                .contains("You can pay online at https://pay.example/1037"),
            "{id}: {}",
            linked.text
        );
        assert!(
            linked.text.contains("A copy of the invoice is attached."),
            "{id}"
        );
        c.pay_link = String::new();
        c.payment_instructions = instructions.into();
        c.pdf_attached = false;
        let told = t.render(id, &c).unwrap();
        assert!(
            told.text.contains(&format!("How to pay: {instructions}")),
            "{id}: {}",
            told.text
        );
        assert!(!told.text.contains("pay online"), "{id}");
        assert!(!told.text.contains("attached"), "{id}: {}", told.text);
    }
    let mut c = context_for(20, "firm");
    c.pay_link = String::new();
    c.payment_instructions = instructions.into();
    snapshot("firm_with_instructions", &t.render("firm", &c).unwrap());
}

#[test]
fn a_late_step_never_says_due_today_and_names_the_fee_invoice() {
    let t = Templates::built_in();
    let mut c = context_for(0, "due_today");
    let on_the_day = t.render("due_today", &c).unwrap();
    assert!(on_the_day.text.contains("is due today, 31 October 2026"));
    c.days_overdue = 6;
    let late = t.render("due_today", &c).unwrap();
    assert!(!late.text.contains("due today"), "{}", late.text);
    assert!(!late.subject.contains("due today"), "{}", late.subject);
    assert!(
        late.text.contains("was due on 31 October 2026, 6 days ago"),
        "{}",
        late.text
    );

    let fee = t
        .render("stop_work", &context_for(30, "stop_work"))
        .unwrap();
    assert!(
        fee.text
            .contains("Invoice 1037-F for USD 25.00 is the late fee for invoice 1037"),
        "{}",
        fee.text
    );
    let mut terms = context_for(14, "firm");
    terms.fee_terms = "Under our payment terms, USD 25.00 is added to invoices unpaid 30 days after their due date.".into();
    let disclosed = t.render("firm", &terms).unwrap();
    assert!(
        disclosed.text.contains(&terms.fee_terms),
        "{}",
        disclosed.text
    );
}
