//! `overdued connect` end to end against the sandbox's authorize endpoint: the URL is
//! printed, the consent redirect comes back to the loopback listener, the code is
//! exchanged (PKCE) and the tokens are stored, bound to the company or organisation.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sandbox(dir: &std::path::Path) -> (Killed, std::path::PathBuf) {
    let cfg = dir.join("c.toml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_overdued"))
        .args([
            "sandbox",
            "--listen",
            "127.0.0.1:0",
            "--seed",
            "3",
            "--start",
            "2026-01-05T09:00:00Z",
            "--time-scale",
            "600",
            "--write-config",
        ])
        .arg(&cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("sandbox listening on"), "{line}");
    // Port 0: the listener picks a free port and the flow sends its real address.
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text = text
        .replace(
            "[quickbooks.sandbox-qbo]\n",
            "[quickbooks.sandbox-qbo]\nredirect_uri = \"http://127.0.0.1:0/callback\"\n",
        )
        .replace(
            "[xero.sandbox-xero]\n",
            "[xero.sandbox-xero]\nredirect_uri = \"http://127.0.0.1:0/callback\"\n",
        );
    std::fs::write(&cfg, text).unwrap();
    (Killed(child), cfg)
}

fn connect(cfg: &std::path::Path, name: &str) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_overdued"))
        .args(["connect", name, "--no-browser", "--config"])
        .arg(cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let mut url = String::new();
    out.read_line(&mut url).unwrap();
    assert!(first.contains("Open this URL"), "{first}");
    let url = url.trim().to_string();
    assert!(
        url.contains("code_challenge=") && url.contains("state="),
        "PKCE and state in {url}"
    );
    // The person's browser: follow the authorize redirect back to the listener.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let resp = reqwest::get(&url).await.unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
    });
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code().unwrap_or(-1), format!("{rest}{err}"))
}

#[test]
fn connect_binds_a_quickbooks_company_and_a_xero_organisation() {
    let dir = tempfile::tempdir().unwrap();
    let (_sb, cfg) = sandbox(dir.path());
    let (code, out) = connect(&cfg, "sandbox-qbo");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("sandbox-qbo: connected to QuickBooks company"),
        "{out}"
    );
    let (code, out) = connect(&cfg, "sandbox-xero");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("sandbox-xero: connected to Xero organisation"),
        "{out}"
    );
    // The stored tokens work: one cycle syncs both.
    let run = Command::new(env!("CARGO_BIN_EXE_overdued"))
        .args(["run", "--once", "--now", "2026-01-05T10:00:00Z", "--config"])
        .arg(&cfg)
        .env("OVERDUED_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout.contains("sandbox-qbo: synced") && stdout.contains("sandbox-xero: synced"),
        "{stdout}"
    );
}

#[test]
fn connect_names_an_unknown_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (_sb, cfg) = sandbox(dir.path());
    let out = Command::new(env!("CARGO_BIN_EXE_overdued"))
        .args(["connect", "nope", "--no-browser", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no connection named \"nope\""));
}
