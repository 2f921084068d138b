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
    let (first, elapsed) = demo(&["--days", "30", "--seed", "3"]);
    assert!(
        elapsed < Duration::from_secs(60),
        "30 days took {elapsed:?}"
    );

    let days: Vec<&str> = first.lines().filter(|l| l.starts_with("Day ")).collect();
    assert!(days.len() >= 20, "too few days with events: {days:?}");
    assert!(first.contains("Day 1 · Mon 5 Jan"), "{first}");
    assert!(!first.contains("Day 31 "), "ran past --days: {first}");
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

    let (second, _) = demo(&["--days", "30", "--seed", "3"]);
    assert_eq!(story(&first), story(&second), "same seed, different story");
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
