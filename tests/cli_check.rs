//! `overdued check` as a user runs it: the real binary, real files.

use std::path::Path;
use std::process::Command;

fn overdued() -> Command {
    Command::new(env!("CARGO_BIN_EXE_overdued"))
}

#[test]
fn the_example_config_checks_clean() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    let out = overdued()
        .args(["check", "--config"])
        .arg(&example)
        .env_remove("OVERDUED_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("connections: 2") && stdout.contains("acme-uk"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("replace-with-your-client-secret"),
        "a secret reached the output: {stdout}"
    );
}

#[test]
fn a_misspelt_key_exits_78_naming_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        "[daemon]\ntime_zone = \"UTC\"\n\n\nstate_dri = \"/tmp/x\"\n",
    )
    .unwrap();
    let out = overdued()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:5:1", path.display())) && stderr.contains("state_dri"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one message, one line: {stderr}");
}

#[cfg(unix)]
#[test]
fn a_world_readable_secret_file_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("xero-secret");
    std::fs::write(&secret, "very-secret-value\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        "[xero.uk]\nclient_id = \"abc\"\nclient_secret_file = \"xero-secret\"\ntenant = \"Acme\"\n",
    )
    .unwrap();
    let out = overdued()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains(":3:")
            && stderr.contains("mode 0644")
            && stderr.contains("readable by other users"),
        "{stderr}"
    );
    assert!(!stderr.contains("very-secret-value"));
}

#[test]
fn the_config_path_can_come_from_the_environment() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    let out = overdued()
        .arg("check")
        .env("OVERDUED_CONFIG", &example)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = overdued()
        .arg("check")
        .env("OVERDUED_CONFIG", "/nonexistent/overdued.toml")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/overdued.toml"));
}
