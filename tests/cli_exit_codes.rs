//! The exit codes the README documents, as the binary really returns them.

use std::path::Path;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_overdued");

fn code(args: &[&str], dir: &Path) -> i32 {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("OVERDUED_CONFIG")
        .env("OVERDUED_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run overdued")
        .code()
        .unwrap_or(-1)
}

fn config(dir: &Path, name: &str, state_dir: &str) -> String {
    let text = format!(
        "[daemon]\nstate_dir = \"{state_dir}\"\ntime_zone = \"UTC\"\n\n\
         [quickbooks.books]\nenabled = false\nclient_id = \"x\"\nclient_secret = \"y\"\nrealm_id = \"1\"\n"
    );
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

#[test]
fn exit_codes_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = config(d, "good.toml", "state");
    // `run --once` with no connection enabled: nothing to do is not a failure.
    assert_eq!(code(&["run", "--once", "--config", &good], d), 0);
    assert_eq!(code(&["check", "--config", &good], d), 0);
    assert_eq!(code(&["--help"], d), 0);
    assert_eq!(code(&["--version"], d), 0);
    // Usage errors, clap's included: 64, never clap's own 2.
    assert_eq!(code(&["plan", "--bogus"], d), 64);
    assert_eq!(code(&[], d), 64);
    assert_eq!(
        code(&["plan", "--at", "tomorrow", "--config", &good], d),
        64
    );
    assert_eq!(
        code(&["history", "nosuch", "1001", "--config", &good], d),
        64
    );
    assert_eq!(
        code(
            &["run", "--now", "2026-01-01T00:00:00Z", "--config", &good],
            d
        ),
        64
    );
    // Configuration: 78.
    std::fs::write(
        d.join("bad.toml"),
        "[daemon]\nstate_dir = \"s\"\npoll_intervl = \"1m\"\n",
    )
    .unwrap();
    assert_eq!(code(&["check", "--config", "bad.toml"], d), 78);
    assert_eq!(code(&["run", "--once", "--config", "bad.toml"], d), 78);
    assert_eq!(
        code(
            &["send-test-email", "--to", "a@b.example", "--config", &good],
            d
        ),
        78
    );
    // An unusable state directory: 74.
    let unusable = config(d, "unusable.toml", "/proc/overdued-no-such-state");
    assert_eq!(code(&["run", "--once", "--config", &unusable], d), 74);
    assert_eq!(code(&["plan", "--config", &unusable], d), 74);
}
