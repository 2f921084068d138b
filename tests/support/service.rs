//! Running the real binary as a service against the built-in sandbox, for the tests of
//! store faults and webhooks (`tests/store_faults.rs`, `tests/webhook_dedup.rs`):
//! processes whose output is collected, a plain HTTP client, and the sandbox.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_overdued");
pub const PATIENCE: Duration = Duration::from_secs(60);

// ---- processes -------------------------------------------------------------------

/// A child process whose output lines are collected; killed if the test fails early.
pub struct Proc {
    pub child: Child,
    pub stdout: Arc<Mutex<Vec<String>>>,
    pub stderr: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    pub fn spawn(mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .env_remove("WATCHDOG_USEC")
            .env_remove("OVERDUED_LOG")
            .env_remove("OVERDUED_CONFIG");
        let mut child = cmd.spawn().expect("spawn overdued");
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        Proc {
            child,
            stdout,
            stderr,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig})", self.pid());
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Waits for a stderr line containing `needle`, returning it.
    pub fn wait_stderr(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(l) = self
                .stderr
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
            {
                return l.clone();
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                // Give the reader thread a moment to drain the pipe.
                std::thread::sleep(Duration::from_millis(200));
                if let Some(l) = self
                    .stderr
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|l| l.contains(needle))
                {
                    return l.clone();
                }
                panic!(
                    "exited ({st}) before logging {needle:?}:\n{}",
                    self.stderr_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in stderr:\n{}",
                self.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn wait_stdout(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(l) = self
                .stdout
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
            {
                return l.clone();
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!(
                    "exited ({st}) before printing {needle:?}:\n{}",
                    self.stderr_text()
                );
            }
            assert!(Instant::now() < deadline, "no {needle:?} on stdout");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the exit and returns (code, how long it took).
    pub fn wait_exit(&mut self, limit: Duration) -> (Option<i32>, Duration) {
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100));
                return (st.code(), t0.elapsed());
            }
            if t0.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "did not exit within {limit:?}; killed. stderr:\n{}",
                    self.stderr_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn collect(r: impl Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let l = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            match line {
                Ok(s) => l.lock().unwrap().push(s),
                Err(_) => break,
            }
        }
    });
    lines
}

pub fn run_to_end(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("OVERDUED_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("run overdued");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// ---- HTTP ------------------------------------------------------------------------

pub struct Resp {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

pub fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("{method} http://{addr}{path}: {e}"));
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").expect("http head");
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Resp {
        status,
        headers: head.to_string(),
        body,
    }
}

pub fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").expect("chunk size");
        let n = usize::from_str_radix(size.trim(), 16).expect("chunk size hex");
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
}

pub fn get(addr: &str, path: &str) -> Resp {
    // The daemon's health is text unless JSON is asked for; ask for text here.
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("GET http://{addr}{path}: {e}"));
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").expect("http head");
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Resp {
        status,
        headers: head.to_string(),
        body,
    }
}

pub fn poll_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub struct Sandbox {
    pub _proc: Proc,
    pub addr: String,
    pub config: PathBuf,
}

pub fn start_sandbox(dir: &Path) -> Sandbox {
    start_sandbox_with(dir, &[])
}

/// A sandbox with more arguments (`--invoices 30`, `--time-scale 60`, ...).
pub fn start_sandbox_with(dir: &Path, extra: &[&str]) -> Sandbox {
    let config = dir.join("overdued.toml");
    let mut cmd = Command::new(BIN);
    cmd.args(["sandbox", "--listen", "127.0.0.1:0", "--seed", "7"])
        .args(extra)
        .arg("--write-config")
        .arg(&config)
        .env("RUST_LOG", "warn");
    let mut p = Proc::spawn(cmd);
    let line = p.wait_stdout("sandbox listening on http://");
    let addr = line
        .rsplit("http://")
        .next()
        .unwrap()
        .trim()
        .trim_end_matches('/')
        .to_string();
    Sandbox {
        _proc: p,
        addr,
        config,
    }
}

pub fn sandbox_post(sb: &Sandbox, path: &str, body: &str) -> Resp {
    let r = http(&sb.addr, "POST", path, &[], body);
    assert!(r.status < 300, "{path}: {} {}", r.status, r.body);
    r
}

pub fn state_dir_of(config: &Path) -> PathBuf {
    let text = std::fs::read_to_string(config).unwrap();
    let rel = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("state_dir = "))
        .expect("state_dir in the sandbox config")
        .trim_matches('"');
    config.parent().unwrap().join(rel)
}

pub fn spawn_daemon(config: &Path, notify: Option<&Path>, rust_log: &str) -> Proc {
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--config"]).arg(config);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("JOURNAL_STREAM")
        .env_remove("WATCHDOG_USEC")
        .env_remove("OVERDUED_LOG")
        .env_remove("OVERDUED_CONFIG")
        .env("RUST_LOG", rust_log);
    match notify {
        Some(p) => cmd.env("NOTIFY_SOCKET", p),
        None => cmd.env_remove("NOTIFY_SOCKET"),
    };
    let mut child = cmd.spawn().expect("spawn overdued run");
    let stdout = collect(child.stdout.take().unwrap());
    let stderr = collect(child.stderr.take().unwrap());
    Proc {
        child,
        stdout,
        stderr,
    }
}

pub fn admin_token(config: &Path) -> String {
    std::fs::read_to_string(state_dir_of(config).join("admin.token"))
        .unwrap()
        .trim()
        .to_string()
}

pub fn http_addr_from_log(p: &mut Proc) -> String {
    let line = p.wait_stderr("http listening on http://");
    line.rsplit("http://").next().unwrap().trim().to_string()
}

pub fn hmac_b64(body: &str, key: &str) -> String {
    use base64::Engine;
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}
