//! `overdued send-test-email` and `overdued check` on templates, as the binary.

use std::process::Command;

use overdued::channels::loopback::Receiver;

fn config(dir: &std::path::Path, port: u16, extra: &str) -> std::path::PathBuf {
    let path = dir.join("overdued.toml");
    std::fs::write(
        &path,
        format!(
            "[daemon]\nstate_dir = \"state\"\n\n[channels]\n{extra}\n[channels.smtp]\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"plain\"\nfrom = \"billing@example.com\"\nfrom_name = \"Example Ltd Accounts\"\n"
        ),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_test_email_delivers_one_message() {
    let rx = Receiver::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), rx.addr.port(), "");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_overdued"))
            .args(["send-test-email", "--to", "me@example.org", "--config"])
            .arg(&path)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let msgs = rx.messages();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].rcpt_to, vec!["me@example.org".to_string()]);
    assert_eq!(msgs[0].header("Subject").unwrap(), "overdued test message");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&msgs[0].header("Message-ID").unwrap()),
        "{stdout}"
    );
}

#[test]
fn send_test_email_to_a_closed_port_fails_clearly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), port, "");
    let out = Command::new(env!("CARGO_BIN_EXE_overdued"))
        .args(["send-test-email", "--to", "me@example.org", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(69));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SMTP"));
}

#[test]
fn check_renders_templates_and_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tpl")).unwrap();
    let path = config(dir.path(), 2525, "templates_dir = \"tpl\"\n");
    let ok = Command::new(env!("CARGO_BIN_EXE_overdued"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("against a sample invoice: ok"));

    std::fs::write(
        dir.path().join("tpl/firm.txt"),
        "{% block subject %}Overdue{% endblock %}\n{% block body %}\nDear {{ customer_name }},\n{{ amount_owed }}\n{% endblock %}\n",
    )
    .unwrap();
    let bad = Command::new(env!("CARGO_BIN_EXE_overdued"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(78));
    let stdout = String::from_utf8_lossy(&bad.stdout);
    assert!(stdout.contains("tpl/firm.txt:4: undefined"), "{stdout}");
}

#[test]
fn check_requires_payment_instructions_of_a_policy_that_emails() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), 2525, "");
    let base = std::fs::read_to_string(&path).unwrap();
    let policy = "\n[policies.chase]\nattach_pdf = true\n\n[[policies.chase.steps]]\noffset = \"+7d\"\naction = \"remind\"\nchannel = \"smtp\"\n";
    std::fs::write(&path, format!("{base}{policy}")).unwrap();
    let bad = Command::new(env!("CARGO_BIN_EXE_overdued"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&bad.stdout),
        String::from_utf8_lossy(&bad.stderr)
    );
    assert_eq!(bad.status.code(), Some(78), "{all}");
    // The policy's table is where the key belongs: FILE:LINE:COLUMN points at it.
    let line = base.lines().count() + 2;
    let at = format!("overdued.toml:{line}:");
    let hit = all
        .lines()
        .find(|l| l.contains("payment_instructions"))
        .unwrap_or_else(|| panic!("{all}"));
    assert!(hit.contains(&at), "{hit} (want {at})\n{all}");
    assert!(hit.contains("\"chase\""), "{hit}");

    std::fs::write(
        &path,
        format!(
            "{base}{}",
            policy.replace(
                "attach_pdf = true",
                "payment_instructions = \"Pay at https://pay.example\""
            )
        ),
    )
    .unwrap();
    let ok = Command::new(env!("CARGO_BIN_EXE_overdued"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(!all.contains("payment_instructions"), "{all}");
}
