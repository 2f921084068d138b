//! `overdued index`: the summary index checked and rebuilt by the real binary, through
//! the running daemon and on the store directly, and a damaged row found by name.

use std::time::Duration;

#[path = "support/service.rs"]
mod service;
use service::*;

#[test]
fn the_index_is_checked_and_rebuilt_with_the_daemon_up_and_down() {
    let dir = tempfile::tempdir().unwrap();
    let sb = start_sandbox(dir.path());
    let cfg = sb.config.to_str().unwrap().to_string();
    let mut d = spawn_daemon(&sb.config, None, "info");
    let _addr = http_addr_from_log(&mut d);
    poll_until("the first QuickBooks sync", || {
        d.stderr_text()
            .lines()
            .any(|l| l.contains("sync finished") && l.contains("sandbox-qbo"))
            .then_some(())
    });

    // Through the daemon, which holds the store.
    let (code, out, err) = run_to_end(&["index", "--config", &cfg]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("agrees with the invoice records"), "{out}");
    let (code, out, err) = run_to_end(&["index", "--rebuild", "--config", &cfg]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("summary index rebuilt: "), "{out}");
    let rows: usize = out
        .split("rebuilt: ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("a row count");
    assert!(rows > 0, "{out}");

    d.signal(libc::SIGTERM);
    let (status, _) = d.wait_exit(Duration::from_secs(20));
    assert_eq!(status, Some(0));

    // A damaged row, as a disk fault or a bug might leave it.
    let state = state_dir_of(&sb.config);
    let damaged = {
        let db = sled::open(state.join("db")).unwrap();
        let t = db.open_tree("plan_index").unwrap();
        let (k, _) = t.iter().next().unwrap().unwrap();
        t.insert(&k, &b"\x01garbage"[..]).unwrap();
        db.flush().unwrap();
        String::from_utf8_lossy(&k).replace('\0', " invoice ")
    };
    let (code, out, err) = run_to_end(&["index", "--config", &cfg]);
    assert_eq!(code, Some(65), "{out}{err}");
    assert!(
        err.contains(&format!("connection {damaged}: unreadable index row")),
        "{damaged}: {err}"
    );
    assert!(err.contains("overdued index --rebuild"), "{err}");
    let (code, out, err) = run_to_end(&["index", "--rebuild", "--config", &cfg]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains(&format!("rebuilt: {rows} rows")), "{out}");
    assert!(out.contains("agrees with the invoice records"), "{out}");
}
