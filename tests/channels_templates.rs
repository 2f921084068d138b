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

/// The step's message as the planner would fill it on the step's day.
fn context_for(day: i64, template: &str) -> StepContext {
    let mut c = StepContext::sample();
    c.days_overdue = day;
    c.fee = None;
    c.fee_notice = String::new();
    c.next_step = match template {
        "heads_up" | "due_today" => String::new(),
        "final_notice" => {
            "If the invoice is still unpaid on 29 January 2027, we will refer it for collection."
                .into()
        }
        _ => {
            "If payment has not reached us by 30 November 2026, we will write to you again.".into()
        }
    };
    if matches!(template, "stop_work" | "final_notice") {
        c.fee = Some("USD 25.00".into());
        c.fee_notice = "A late payment fee of USD 25.00 was added on 30 November 2026, as set out in our payment terms.".into();
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
    // Not a step of the built-in policy, but sent whenever a promise is broken.
    let r = t
        .render("promise_broken", &context_for(21, "promise_broken"))
        .unwrap();
    snapshot("promise_broken", &r);
    seen.push("promise_broken".into());
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
