//! `overdued plan --json` and `overdued check` as a user runs them: the plan keeps per
//! action what it is and which invoice; `plan` names what the customer really gets; and
//! `check` warns when the ladder's words cannot reach customers.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

fn overdued() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_overdued"));
    c.env_remove("OVERDUED_CONFIG");
    c
}

/// A sandbox serving both systems, with a config written for it.
struct Sandbox {
    child: Child,
    _dir: tempfile::TempDir,
    config: std::path::PathBuf,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sandbox() -> Sandbox {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    let mut child = overdued()
        .args([
            "sandbox",
            "--listen",
            "127.0.0.1:0",
            "--seed",
            "7",
            "--start",
            "2026-01-05T09:00:00Z",
            "--write-config",
        ])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("sandbox listening on "), "{first:?}");
    Sandbox {
        child,
        _dir: dir,
        config,
    }
}

#[test]
fn plan_json_keeps_what_each_action_is_and_text_says_what_goes_out() {
    let sb = sandbox();
    let out = overdued()
        .args(["plan", "--json", "--at", "2026-01-05", "--config"])
        .arg(&sb.config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let plans: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let plans = plans.as_array().expect("one plan per connection");
    assert_eq!(plans.len(), 2, "{plans:#?}");
    let mut reminders = 0;
    for p in plans {
        let actions = p["actions"].as_array().expect("actions");
        assert!(
            !actions.is_empty(),
            "the sandbox world has overdue invoices: {p:#}"
        );
        for a in actions {
            for field in ["kind", "step_id", "invoice_number"] {
                assert!(
                    a[field].as_str().is_some_and(|s| !s.is_empty()),
                    "{field} in {a:#}"
                );
            }
            assert!(a["days_overdue"].is_i64(), "days_overdue in {a:#}");
            assert!(
                a.as_object().unwrap().contains_key("template"),
                "template is always written: {a:#}"
            );
            if a["kind"] == "remind" {
                reminders += 1;
                assert!(a["template"].as_str().is_some(), "{a:#}");
            }
        }
    }
    assert!(reminders > 0, "{plans:#?}");

    let out = overdued()
        .args(["plan", "--at", "2026-01-05", "--config"])
        .arg(&sb.config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    // The sandbox config has no SMTP: every reminder goes by the system's own email.
    assert!(
        text.contains("sends: QuickBooks' own invoice email, with your company template"),
        "{text}"
    );
    assert!(
        text.contains("sends: Xero's own invoice email, with your company template"),
        "{text}"
    );
}

#[test]
fn check_warns_once_without_smtp_and_not_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, "[daemon]\nstate_dir = \"state\"\n").unwrap();
    let out = overdued()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a warning, not an error: {stdout}"
    );
    let warns: Vec<&str> = stdout.lines().filter(|l| l.starts_with("WARN")).collect();
    assert_eq!(warns.len(), 1, "{stdout}");
    assert!(
        warns[0].contains("will not reach customers")
            && warns[0].contains(
                "policy default steps +14d (firm), +30d (stop_work), +60d (final_notice)"
            )
            && warns[0].contains("catch-up"),
        "{}",
        warns[0]
    );

    std::fs::write(
        &path,
        "[daemon]\nstate_dir = \"state\"\n\n[channels.smtp]\nhost = \"127.0.0.1\"\nport = 2525\nsecurity = \"plain\"\nfrom = \"billing@example.com\"\n",
    )
    .unwrap();
    let out = overdued()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(!stdout.contains("WARN"), "{stdout}");
}
