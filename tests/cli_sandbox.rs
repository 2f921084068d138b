//! `overdued sandbox` as a user starts it: prints its URL first, writes a config that
//! `overdued check` accepts, with private secret files.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn sandbox_starts_prints_its_url_and_writes_a_valid_config() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_overdued"))
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
        .arg(&cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let url = first
        .trim()
        .strip_prefix("sandbox listening on ")
        .unwrap_or_else(|| panic!("first line was {first:?}"))
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let out = Command::new(env!("CARGO_BIN_EXE_overdued"))
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains("sandbox-qbo") && summary.contains("sandbox-xero"),
        "{summary}"
    );
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(
        text.contains(&url),
        "the config points at the sandbox: {text}"
    );
    #[cfg(unix)]
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        use std::os::unix::fs::PermissionsExt;
        let p = entry.unwrap().path();
        if p.to_string_lossy().ends_with("-token") || p.to_string_lossy().ends_with("-secret") {
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o077,
                0,
                "{} must be private",
                p.display()
            );
        }
    }
}

#[test]
fn a_bad_listen_address_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_overdued"))
        .args(["sandbox", "--listen", "nowhere"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--listen"));
}
