//! `overdued demo` as a new user runs it: no config, no network, a day log with the
//! engine's actions and a closing report that compares against the unchased world; the
//! same seed tells the same story.

use std::process::Command;
use std::time::{Duration, Instant};

fn demo(args: &[&str]) -> (String, Duration) {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_overdued"))
        .arg("demo")
        .args(args)
        // No config anywhere: the demo must not need one.
        .env("OVERDUED_CONFIG", "/nonexistent/overdued.toml")
        .env_remove("RUST_LOG")
        .env_remove("OVERDUED_LOG")
        .output()
        .expect("run overdued demo");
    let elapsed = started.elapsed();
    let stdout = String::from_utf8(out.stdout).expect("utf-8 stdout");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\nstderr:\n{stderr}\nstdout:\n{stdout}",
        out.status.code()
    );
    // Only warnings may reach stderr, and a clean run has none.
    assert!(stderr.trim().is_empty(), "stderr:\n{stderr}");
    (stdout, elapsed)
}

/// The output without the line that reports real elapsed time.
fn story(out: &str) -> String {
    out.lines()
        .filter(|l| !l.ends_with("s of real time."))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn demo_tells_a_deterministic_story_with_a_closing_comparison() {
    // Long enough for escalations: the first day adopts the old debts with catch-ups,
    // and escalation comes only a notice period after the final notice that follows.
    let (first, elapsed) = demo(&["--days", "45", "--seed", "3"]);
    assert!(
        elapsed < Duration::from_secs(90),
        "45 days took {elapsed:?}"
    );

    let days: Vec<&str> = first.lines().filter(|l| l.starts_with("Day ")).collect();
    assert!(days.len() >= 20, "too few days with events: {days:?}");
    assert!(first.contains("Day 1 · Mon 5 Jan"), "{first}");
    assert!(!first.contains("Day 46 "), "ran past --days: {first}");
    let reminders = first
        .lines()
        .filter(|l| l.trim_start().starts_with("reminder "))
        .count();
    assert!(reminders >= 20, "{reminders} reminders:\n{first}");
    for kind in ["late fee ", "escalated ", "paid ", "promise "] {
        assert!(
            first.lines().any(|l| l.trim_start().starts_with(kind)),
            "no {kind:?} line:\n{first}"
        );
    }

    let report = first
        .split("Closing report")
        .nth(1)
        .unwrap_or_else(|| panic!("no closing report:\n{first}"));
    assert!(report.contains("with overdued"), "{report}");
    assert!(report.contains("without"), "{report}");
    for row in [
        "Collected",
        "Invoices paid in full",
        "Days sales outstanding",
    ] {
        assert!(report.contains(row), "no {row:?} row:\n{report}");
    }
    let header = report
        .lines()
        .find(|l| l.contains("current"))
        .unwrap_or_else(|| panic!("no ageing table:\n{report}"));
    let buckets: Vec<&str> = header.split_whitespace().collect();
    assert_eq!(
        buckets,
        ["current", "1-30", "31-60", "61-90", "90+", "total"],
        "{header}"
    );
    for row in ["USD with", "USD without", "GBP with", "GBP without"] {
        assert!(
            report.lines().any(|l| l.starts_with(row)),
            "no {row:?} ageing row:\n{report}"
        );
    }
    assert!(
        report.contains("0 of them duplicates; 0 rate-limit violations"),
        "{report}"
    );
    // Chasing must collect something the unchased world does not.
    let paid_row = report
        .lines()
        .find(|l| l.starts_with("Invoices paid in full"))
        .unwrap_or_default();
    let counts: Vec<u32> = paid_row
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(
        counts.len() >= 4 && counts[0] > counts[2],
        "with overdued should settle more invoices: {paid_row}"
    );
    assert!(
        first.lines().any(|l| l.ends_with("s of real time.")),
        "no timing line:\n{first}"
    );

    let (second, _) = demo(&["--days", "45", "--seed", "3"]);
    assert_eq!(story(&first), story(&second), "same seed, different story");
}

/// The lines of day `n`'s block of the log.
fn day_block(out: &str, n: u32) -> Vec<&str> {
    let head = format!("Day {n} · ");
    out.lines()
        .skip_while(|l| !l.starts_with(&head))
        .skip(1)
        .take_while(|l| !l.starts_with("Day ") && !l.is_empty())
        .collect()
}

/// Installed over books full of old debts, the first day adopts them: a summary of the
/// adoption, then only courteous catch-ups for what is past due; no fee, no stop-work or
/// final notice and no escalation on day 1, and none before the customer had notice.
#[test]
fn demo_first_day_adopts_the_old_debts_with_catch_ups_only() {
    let (out, _) = demo(&["--days", "10", "--seed", "3"]);
    let day1 = day_block(&out, 1);
    assert!(
        day1.iter().any(|l| l.starts_with("  first sync ")),
        "{day1:#?}"
    );
    let adoption = day1
        .iter()
        .find(|l| l.starts_with("  adoption "))
        .unwrap_or_else(|| panic!("no adoption summary on day 1:\n{}", day1.join("\n")));
    for band in ["1-30 days: ", "31-60 days: ", "61-90 days: ", "90+ days: "] {
        assert!(adoption.contains(band), "no {band:?}: {adoption}");
    }
    assert!(adoption.contains("catch-up"), "{adoption}");
    let reminders: Vec<&&str> = day1
        .iter()
        .filter(|l| l.trim_start().starts_with("reminder "))
        .collect();
    assert!(reminders.len() >= 20, "{reminders:#?}");
    for l in &day1 {
        for kind in ["late fee ", "escalated ", "note "] {
            assert!(!l.trim_start().starts_with(kind), "on day 1: {l}");
        }
        for step in ["stop-work", "final notice", "escalation"] {
            assert!(
                !(l.trim_start().starts_with("reminder ") && l.ends_with(step)),
                "on day 1: {l}"
            );
        }
    }
    // Whatever is already past due hears from overdued first by a catch-up.
    for l in reminders.iter().filter(|l| l.contains(" days overdue ")) {
        assert!(l.ends_with("catch-up (first message)"), "{l}");
    }
    // Notice before consequences: nothing of the kind in the first week either.
    for n in 2..=7 {
        for l in day_block(&out, n) {
            assert!(
                !l.trim_start().starts_with("late fee ")
                    && !l.trim_start().starts_with("escalated "),
                "day {n}, within notice_days of the first message: {l}"
            );
        }
    }
}

#[test]
fn demo_refuses_zero_days() {
    let out = Command::new(env!("CARGO_BIN_EXE_overdued"))
        .args(["demo", "--days", "0"])
        .output()
        .expect("run overdued demo");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--days 0"));
}
