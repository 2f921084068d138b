//! A full disk under the running daemon: `/healthz` turns 503 at once, the daemon exits
//! with 74 (EX_IOERR) so the service manager restarts it, and once space is back the
//! restarted daemon chases on with nothing lost or done twice. Also: store files stay
//! private whatever the umask.

#[path = "support/service.rs"]
mod service;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use overdued::store::{JournalState, SledStore, Store};
use service::*;

/// Mounts a tmpfs of `size` at `at`; None (with the reason) where mounting is not
/// permitted (not root, no CAP_SYS_ADMIN, a container without mount rights).
fn mount_tmpfs(at: &Path, size: &str) -> Option<Tmpfs> {
    std::fs::create_dir_all(at).unwrap();
    let out = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0700"),
            "tmpfs",
        ])
        .arg(at)
        .output();
    match out {
        Ok(o) if o.status.success() => Some(Tmpfs(at.to_path_buf())),
        Ok(o) => {
            eprintln!(
                "SKIPPED: cannot mount a tmpfs at {} ({}); this test needs root with mount rights, as in CI",
                at.display(),
                String::from_utf8_lossy(&o.stderr).trim()
            );
            None
        }
        Err(e) => {
            eprintln!("SKIPPED: cannot run mount(8): {e}");
            None
        }
    }
}

struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes a file until the filesystem is full.
fn fill(path: &Path) -> u64 {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let block = vec![0xa5u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    // Small writes fill the last partial pages too.
    loop {
        match f.write(&[0u8; 512]) {
            Ok(n) if n > 0 => written += n as u64,
            _ => break,
        }
    }
    let _ = f.sync_all();
    written
}

fn kick(addr: &str, config: &Path) {
    let bearer = format!("Bearer {}", admin_token(config));
    let r = http(
        addr,
        "POST",
        "/admin/sync",
        &[("Authorization", &bearer)],
        "",
    );
    assert_eq!(r.status, 202, "{}", r.body);
}

fn cycles_finished(p: &Proc) -> usize {
    p.stderr
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("cycle finished"))
        .count()
}

fn wait_cycles(p: &mut Proc, n: usize) {
    let deadline = Instant::now() + PATIENCE;
    while cycles_finished(p) < n {
        if let Ok(Some(st)) = p.child.try_wait() {
            panic!("exited ({st}):\n{}", p.stderr_text());
        }
        assert!(
            Instant::now() < deadline,
            "fewer than {n} cycles finished:\n{}",
            p.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every effect the sandbox recorded, keyed by what makes it one effect.
fn ledger(sb: &Sandbox) -> Vec<serde_json::Value> {
    let r = http(&sb.addr, "GET", "/_sandbox/ledger", &[], "");
    assert_eq!(r.status, 200, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    v["effects"].as_array().expect("effects").clone()
}

fn assert_nothing_twice(effects: &[serde_json::Value]) {
    let mut seen = BTreeMap::new();
    for e in effects {
        let Some(key) = e["idempotency_key"].as_str() else {
            continue;
        };
        let id = format!(
            "{} {} {} {} {key}",
            e["system"], e["tenant"], e["invoice_id"], e["kind"]
        );
        *seen.entry(id).or_insert(0) += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "effects done twice: {twice:?}");
}

/// Moves the sandbox's clock on by `by`, to 10:00 UTC of a weekday, inside the send
/// window.
fn advance_sandbox_clock(sb: &Sandbox, by: chrono::Duration) {
    use chrono::{Datelike, Timelike};
    let now = http(&sb.addr, "GET", "/_sandbox/clock", &[], "");
    let now: serde_json::Value = serde_json::from_str(&now.body).unwrap();
    let mut later = chrono::DateTime::parse_from_rfc3339(now["now"].as_str().unwrap())
        .unwrap()
        .to_utc()
        + by;
    later = later.with_hour(10).and_then(|t| t.with_minute(0)).unwrap();
    while later.weekday().number_from_monday() > 5 {
        later += chrono::Duration::days(1);
    }
    sandbox_post(
        sb,
        "/_sandbox/clock",
        &format!(r#"{{"now":"{}"}}"#, later.to_rfc3339()),
    );
}

/// A new customer's invoice 40 days past due (by the wall clock the daemon plans by) in
/// each system: work for the next cycle that no daily limit holds back.
fn add_overdue_invoices(sb: &Sandbox, tag: &str) {
    let today = chrono::Utc::now().date_naive();
    for system in ["quickbooks", "xero"] {
        #[rustfmt::skip]
        sandbox_post(
            sb,
            "/_sandbox/invoices",
            &serde_json::json!({
                "system": system,
                "customer_name": format!("Full Disk {tag} Ltd"),
                "customer_email": format!("ap+{tag}@full-disk.example"),
                "total": "120.00",
                "issue_date": (today - chrono::Duration::days(70)).to_string(),
                "due_date": (today - chrono::Duration::days(40)).to_string(),
            })
            .to_string(),
        );
    }
}

#[test]
fn a_full_disk_turns_health_red_exits_74_and_chasing_resumes_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mnt) = mount_tmpfs(&dir.path().join("small"), "6m") else {
        return;
    };
    // A small world on a fast limiter clock, so a cycle takes seconds.
    let sb = start_sandbox_with(
        dir.path(),
        &[
            "--invoices",
            "40",
            "--customers",
            "12",
            "--time-scale",
            "60",
        ],
    );
    let state = mnt.0.join("state");
    let text = std::fs::read_to_string(&sb.config).unwrap();
    let text = text
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("state_dir = ") {
                format!("state_dir = {:?}", state.display().to_string())
            } else if l.trim_start().starts_with("poll_interval = ") {
                // Cycles only when the test asks for one.
                "poll_interval = \"1h\"\nfull_sync_interval = \"1h\"".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    // The daemon plans by the wall clock; any hour is a sending hour here.
    let text = format!("{text}\n[policies.default.send_window]\ncron = \"* * * * *\"\n");
    std::fs::write(&sb.config, text).unwrap();

    // A healthy first day.
    let mut d = spawn_daemon(&sb.config, None, "info");
    let addr = http_addr_from_log(&mut d);
    wait_cycles(&mut d, 2);
    assert_eq!(get(&addr, "/healthz").status, 200);
    let before = ledger(&sb);

    // The disk fills; the next week's cycle cannot record anything (nor save the
    // token the refresh rotates).
    let filler = mnt.0.join("filler");
    assert!(fill(&filler) > 0);
    advance_sandbox_clock(&sb, chrono::Duration::days(8));
    add_overdue_invoices(&sb, "a");
    kick(&addr, &sb.config);
    let t0 = Instant::now();
    let h = poll_until("/healthz to report the store", || {
        let h = get(&addr, "/healthz");
        (h.status == 503).then_some(h)
    });
    assert!(h.body.contains("store trouble"), "{}", h.body);
    eprintln!(
        "health red {:.1} s after the kick",
        t0.elapsed().as_secs_f64()
    );
    d.wait_stderr("STORE FAILING");
    assert_nothing_twice(&ledger(&sb));

    // Space comes back within the daemon's patience: it reopens the store itself and
    // chases the week, with the rotated token saved.
    std::fs::remove_file(&filler).unwrap();
    d.wait_stderr("store reopened after errors");
    poll_until("/healthz to be green again", || {
        (get(&addr, "/healthz").status == 200).then_some(())
    });
    let cycles = cycles_finished(&d);
    kick(&addr, &sb.config);
    wait_cycles(&mut d, cycles + 2);
    let h = get(&addr, "/healthz");
    assert_eq!(h.status, 200, "{}", h.body);
    let recovered = ledger(&sb);
    assert_nothing_twice(&recovered);
    assert!(
        recovered.len() > before.len(),
        "the week was chased after the store came back ({} effects before, {} after)",
        before.len(),
        recovered.len()
    );

    // The disk fills again and stays full: the daemon exits 74 for a restart.
    assert!(fill(&filler) > 0);
    // sled writes into space it already holds until it needs a new segment, so the
    // fault shows once enough new work has to be recorded.
    let mut round = 0;
    loop {
        advance_sandbox_clock(&sb, chrono::Duration::minutes(5));
        for i in 0..20 {
            add_overdue_invoices(&sb, &format!("b{round}-{i}"));
        }
        let cycles = cycles_finished(&d);
        kick(&addr, &sb.config);
        let deadline = Instant::now() + Duration::from_secs(20);
        let red = loop {
            if get(&addr, "/healthz").status == 503 {
                break true;
            }
            if cycles_finished(&d) >= cycles + 2 || Instant::now() > deadline {
                break false;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if red {
            break;
        }
        round += 1;
        assert!(round < 30, "the full disk never failed a write");
    }
    let (code, exit_after) = d.wait_exit(Duration::from_secs(120));
    assert_eq!(
        code,
        Some(74),
        "a store that keeps failing ends the process with EX_IOERR:\n{}",
        d.stderr_text()
    );
    eprintln!(
        "exit 74 {:.1} s after the second fault",
        exit_after.as_secs_f64()
    );
    let during = ledger(&sb);
    assert_nothing_twice(&during);

    // Space is back; the service manager restarts it and chasing goes on.
    std::fs::remove_file(&filler).unwrap();
    advance_sandbox_clock(&sb, chrono::Duration::days(7));
    let mut d = spawn_daemon(&sb.config, None, "info");
    let addr = http_addr_from_log(&mut d);
    wait_cycles(&mut d, 2);
    let h = get(&addr, "/healthz");
    assert_eq!(h.status, 200, "{}", h.body);
    d.signal(libc::SIGTERM);
    let (code, _) = d.wait_exit(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{}", d.stderr_text());
    assert!(
        !d.stderr_text().contains("NEEDS RECONNECT"),
        "no grant was lost:\n{}",
        d.stderr_text()
    );

    let after = ledger(&sb);
    assert_nothing_twice(&after);
    assert!(
        after.len() > during.len(),
        "the next week was chased after the restart ({} effects before, {} during, {} after)",
        recovered.len(),
        during.len(),
        after.len()
    );
    for e in &before {
        assert!(after.contains(e), "an effect vanished: {e}");
    }
    // Nothing the daemon meant to do was left hanging.
    let store = SledStore::open(&state).unwrap();
    for conn in ["sandbox-qbo", "sandbox-xero"] {
        let stuck: Vec<_> = store
            .unfinished_journal(conn)
            .unwrap()
            .into_iter()
            .filter(|e| matches!(e.state, JournalState::Intent))
            .map(|e| e.key.to_string())
            .collect();
        assert!(stuck.is_empty(), "{conn}: intents never settled: {stuck:?}");
    }
    eprintln!(
        "effects: {} before the first fault, {} after the reopen, {} at the exit, {} after the restart",
        before.len(),
        recovered.len(),
        during.len(),
        after.len()
    );
}

/// sled creates its files with the process umask; under umask 000 the ledger and the
/// tokens would be world-writable. Run in a child process so the umask of the other
/// tests is not touched.
#[test]
fn store_files_are_private_whatever_the_umask() {
    if std::env::var_os("OVERDUED_UMASK_CHILD").is_some() {
        let dir = std::path::PathBuf::from(std::env::var("OVERDUED_UMASK_DIR").unwrap());
        // A store an earlier run left world-readable is tightened too.
        std::fs::create_dir_all(dir.join("old")).unwrap();
        std::fs::write(dir.join("old/leftover"), "x").unwrap();
        // SAFETY: umask(2) cannot fail.
        unsafe { libc::umask(0) };
        let store = SledStore::open(&dir).unwrap();
        store.flush().unwrap();
        drop(store);
        std::fs::write(dir.join("after-open"), "x").unwrap();
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let st = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "store_files_are_private_whatever_the_umask",
            "--nocapture",
        ])
        .env("OVERDUED_UMASK_CHILD", "1")
        .env("OVERDUED_UMASK_DIR", &dir)
        .status()
        .unwrap();
    assert!(st.success());
    let mut checked = 0;
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", d.display());
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p);
            } else {
                let mode = m.permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", p.display());
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 4,
        "the lock, sled's files, the leftover and a file made after opening"
    );
}

fn audited_entry(i: u64) -> (overdued::store::JournalEntry, overdued::store::AuditEvent) {
    use overdued::store::{ActionPayload, AuditEvent, JournalEntry, JournalPayload};
    use overdued_connector::{ActionKind, IdempotencyKey};
    let key: IdempotencyKey = serde_json::from_value(serde_json::json!(format!("od1-test{i:08}")))
        .expect("an idempotency key from its text");
    let at = chrono::DateTime::parse_from_rfc3339("2026-10-07T09:00:00Z")
        .unwrap()
        .to_utc();
    let entry = JournalEntry {
        key: key.clone(),
        connection: "uk".into(),
        invoice_id: "inv-1".into(),
        customer_id: "c1".into(),
        kind: ActionKind::Remind,
        step_id: format!("+{i}d"),
        planned_for: at.date_naive(),
        created_at: at,
        expected_amount_due: rust_decimal::Decimal::new(70025, 2),
        payload: JournalPayload::Action(ActionPayload::Remind {
            subject: "Invoice INV-1".into(),
            body: "Please pay".into(),
            channel: None,
            template: None,
            context: None,
        }),
        ledger: None,
        sent_key: None,
        state: JournalState::Done {
            at,
            created_id: None,
            replayed: false,
        },
        audit_note_done: true,
    };
    let audit = AuditEvent {
        at,
        connection: "uk".into(),
        invoice_id: Some("inv-1".into()),
        kind: "action".into(),
        message: "reminder sent".into(),
        detail: serde_json::json!({"key": key}),
    };
    (entry, audit)
}

/// The journal's state change and its audit record are one transaction: a process
/// killed at any instant leaves no done action without its history line.
#[test]
fn history_never_lags_the_journal_across_kills() {
    if let Some(dir) = std::env::var_os("OVERDUED_AUDIT_CHILD") {
        let store = SledStore::open(Path::new(&dir)).unwrap();
        let from: u64 = std::env::var("OVERDUED_AUDIT_FROM")
            .unwrap()
            .parse()
            .unwrap();
        for i in from.. {
            let (entry, audit) = audited_entry(i);
            store.put_journal_with_audit(&entry, &audit).unwrap();
        }
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    for round in 0..6u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "history_never_lags_the_journal_across_kills"])
            .env("OVERDUED_AUDIT_CHILD", &dir)
            .env("OVERDUED_AUDIT_FROM", (round * 1_000_000).to_string())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300 + 97 * round));
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let _ = child.wait();
    }
    let store = SledStore::open(&dir).unwrap();
    let journal = store.journal_for_invoice("uk", "inv-1").unwrap();
    let audited: std::collections::BTreeSet<String> = store
        .audit_for_invoice("uk", "inv-1")
        .unwrap()
        .into_iter()
        .filter_map(|a| a.detail["key"].as_str().map(str::to_string))
        .collect();
    assert!(journal.len() > 10, "the children recorded something");
    let lagging: Vec<_> = journal
        .iter()
        .filter(|e| !audited.contains(e.key.as_str()))
        .map(|e| e.key.to_string())
        .collect();
    assert!(
        lagging.is_empty(),
        "{} of {} done actions have no history line: {:?}",
        lagging.len(),
        journal.len(),
        &lagging[..lagging.len().min(5)]
    );
    eprintln!(
        "{} journal entries over 6 kills, every one with its history line",
        journal.len()
    );
}
