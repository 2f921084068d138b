//! The daemon outlives whatever reads its stderr: when the reader goes away it keeps
//! running, reloads on SIGHUP and stops on SIGTERM within the grace, exit 0. (Before, the
//! log writer's own error report panicked on the closed pipe inside the task that
//! logged, and a dead signal task left SIGTERM unheard.)

#[path = "support/service.rs"]
mod service;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use service::*;

#[test]
fn the_daemon_survives_its_stderr_closing_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let sb = start_sandbox(dir.path());
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&sb.config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM")
        .env_remove("WATCHDOG_USEC")
        .env_remove("OVERDUED_LOG")
        .env_remove("OVERDUED_CONFIG")
        .env("RUST_LOG", "info")
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let deadline = Instant::now() + PATIENCE;
    loop {
        assert!(
            Instant::now() < deadline,
            "the daemon never said it was listening"
        );
        match lines.next() {
            Some(Ok(l)) if l.contains("http listening on") => break,
            Some(_) => {}
            None => panic!("stderr closed before the daemon started"),
        }
    }
    // The reader goes away; everything logged from now on meets a closed pipe.
    drop(lines);
    let signal = |sig| {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    };
    signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the daemon died when its stderr closed"
    );
    signal(libc::SIGTERM);
    let asked = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if asked.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("SIGTERM unheard after its stderr closed: still running after 10 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "{status:?}");
}

/// With a journal listening, the lines logged after stderr closed reach it by the
/// native protocol; the daemon still reloads and stops on SIGTERM within 10 s.
#[test]
fn after_its_stderr_closes_the_daemon_logs_to_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let sb = start_sandbox(dir.path());
    let socket = dir.path().join("journal.socket");
    let journal = std::os::unix::net::UnixDatagram::bind(&socket).unwrap();
    journal
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&sb.config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM")
        .env_remove("WATCHDOG_USEC")
        .env_remove("OVERDUED_LOG")
        .env_remove("OVERDUED_CONFIG")
        .env("OVERDUED_JOURNAL_SOCKET", &socket)
        .env("RUST_LOG", "info")
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains("http listening on") => break,
            Some(_) => {}
            None => panic!("stderr closed before the daemon started"),
        }
    }
    // Nothing reached the journal while stderr worked.
    let mut buf = vec![0u8; 65536];
    assert!(
        journal.recv(&mut buf).is_err(),
        "a line went to the journal while stderr worked"
    );
    drop(lines);
    let signal = |sig| {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    };
    // Each reload logs; the first line after the close meets the closed pipe.
    let deadline = Instant::now() + PATIENCE;
    let mut got = Vec::new();
    while !got.iter().any(|m: &String| m.contains("config reloaded")) {
        assert!(
            Instant::now() < deadline,
            "nothing reached the journal: {got:?}"
        );
        signal(libc::SIGHUP);
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            if let Ok(n) = journal.recv(&mut buf) {
                got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
    }
    let line = got.iter().find(|m| m.contains("config reloaded")).unwrap();
    assert!(line.contains("PRIORITY=6\n"), "{line}");
    assert!(line.contains("SYSLOG_IDENTIFIER=overdued\n"), "{line}");
    assert!(
        child.try_wait().unwrap().is_none(),
        "the daemon died when its stderr closed"
    );
    signal(libc::SIGTERM);
    let asked = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if asked.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("SIGTERM unheard after its stderr closed: still running after 10 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "{status:?}");
}
