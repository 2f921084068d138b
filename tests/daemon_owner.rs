//! What the owner runs while the service is up: `overdued plan` (made by the daemon,
//! the same output as without it) and `overdued connect` (the daemon takes the new
//! grant and resumes without a restart), through the real binary.

#[path = "support/service.rs"]
mod service;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use service::*;

/// The sandbox's config, in dry-run (the daemon's cycles change nothing a plan reads)
/// and with a connect redirect on a free port.
fn dry_run_config(sb: &Sandbox) {
    let text = std::fs::read_to_string(&sb.config).unwrap();
    let text = text
        .replacen("[daemon]", "[daemon]\nmode = \"dry-run\"", 1)
        .replace(
            "environment = \"sandbox\"",
            "environment = \"sandbox\"\nredirect_uri = \"http://127.0.0.1:0/callback\"",
        );
    std::fs::write(&sb.config, text).unwrap();
}

fn plan(config: &Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let mut args = vec!["plan", "--config", config.to_str().unwrap()];
    args.extend_from_slice(extra);
    run_to_end(&args)
}

/// The JSON plan without the instant it was made at.
fn without_generated_at(json: &str) -> serde_json::Value {
    let mut v: serde_json::Value =
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
    for p in v.as_array_mut().expect("one plan per connection") {
        p.as_object_mut().unwrap().remove("generated_at");
    }
    v
}

fn daemon_up(config: &Path) -> (Proc, String) {
    let mut d = spawn_daemon(config, None, "info");
    let line = d.wait_stderr("http listening on");
    let addr = line
        .rsplit("http://")
        .next()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    d.wait_stderr("cycle finished");
    (d, addr)
}

#[test]
fn plan_with_the_daemon_up_prints_what_it_prints_without() {
    let dir = tempfile::tempdir().unwrap();
    let sb = start_sandbox(dir.path());
    dry_run_config(&sb);
    let at = ["--at", "2030-01-15"];
    let (code, text_before, err) = plan(&sb.config, &at);
    assert_eq!(code, Some(0), "{err}");
    assert!(text_before.contains("DO   "), "{text_before}");
    // The plan names customers, not their ids.
    let mut lines = 0;
    for l in text_before
        .lines()
        .filter(|l| l.starts_with("  DO ") || l.starts_with("  SKIP "))
    {
        lines += 1;
        let who = l
            .split("(customer ")
            .nth(1)
            .and_then(|r| r.split(')').next())
            .unwrap_or_else(|| panic!("no customer on {l:?}"));
        assert!(
            who.chars().any(|c| c.is_alphabetic()),
            "a customer id where the name belongs: {l:?}"
        );
    }
    assert!(lines > 0, "{text_before}");
    let (code, json_before, err) = plan(&sb.config, &["--at", "2030-01-15", "--json"]);
    assert_eq!(code, Some(0), "{err}");

    let (mut d, addr) = daemon_up(&sb.config);
    let (code, text_up, err) = plan(&sb.config, &at);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(text_up, text_before, "the daemon's plan differs");
    let (code, json_up, err) = plan(&sb.config, &["--at", "2030-01-15", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        without_generated_at(&json_up),
        without_generated_at(&json_before)
    );
    assert!(
        d.stderr_text().contains("INFO"),
        "the daemon ran: {}",
        d.stderr_text()
    );

    // A request the daemon cannot read is answered in JSON the CLI could print.
    let bearer = format!("Bearer {}", admin_token(&sb.config));
    let r = http(
        &addr,
        "POST",
        "/admin/plan",
        &[("Authorization", &bearer)],
        r#"{"at":"15 Jan"}"#,
    );
    assert_eq!(r.status, 422, "{}", r.body);
    let e: serde_json::Value =
        serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body));
    assert_eq!(e["code"], 64);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("could not read the request"),
        "{}",
        r.body
    );
    // Without the token, nothing.
    let r = http(&addr, "POST", "/admin/plan", &[], "{}");
    assert_eq!(r.status, 401);

    d.signal(libc::SIGTERM);
    let (code, _) = d.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    let (code, text_after, err) = plan(&sb.config, &at);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(text_after, text_before);
}

/// `overdued connect NAME`, following the authorize URL as the person's browser would.
fn connect(config: &Path, name: &str) -> (Option<i32>, String) {
    let mut child = Command::new(BIN)
        .args(["connect", name, "--no-browser", "--config"])
        .arg(config)
        .env("OVERDUED_LOG", "warn")
        .env_remove("OVERDUED_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    if first.contains("Open this URL") {
        let mut url = String::new();
        out.read_line(&mut url).unwrap();
        let url = url.trim().to_string();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let resp = reqwest::get(&url).await.unwrap();
            assert!(resp.status().is_success(), "{}", resp.status());
        });
    }
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
    (status.code(), format!("{first}{rest}{err}"))
}

#[test]
fn connect_with_the_daemon_up_hands_it_the_grant_and_it_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let sb = start_sandbox(dir.path());
    dry_run_config(&sb);
    let (mut d, addr) = daemon_up(&sb.config);
    let bearer = format!("Bearer {}", admin_token(&sb.config));

    // The grant is revoked and the access token expires: the connection needs reconnect.
    sandbox_post(&sb, "/_sandbox/revoke", r#"{"system":"quickbooks"}"#);
    let now = http(&sb.addr, "GET", "/_sandbox/clock", &[], "");
    let now: serde_json::Value = serde_json::from_str(&now.body).unwrap();
    let later = chrono::DateTime::parse_from_rfc3339(now["now"].as_str().unwrap()).unwrap()
        + chrono::Duration::hours(3);
    sandbox_post(
        &sb,
        "/_sandbox/clock",
        &format!(r#"{{"now":"{}"}}"#, later.to_rfc3339()),
    );
    let kicked = http(
        &addr,
        "POST",
        "/admin/sync?connection=sandbox-qbo",
        &[("Authorization", &bearer)],
        "",
    );
    assert_eq!(kicked.status, 202, "{}", kicked.body);
    poll_until("/healthz to report the reconnect", || {
        let h = get(&addr, "/healthz");
        (h.status == 503 && h.body.contains("sandbox-qbo needs reconnect")).then_some(())
    });

    // The fix `status` recommends, with the daemon up.
    let (code, out) = connect(&sb.config, "sandbox-qbo");
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("sandbox-qbo: connected to QuickBooks company"),
        "{out}"
    );
    assert!(
        out.contains("the running daemon took over the new grant"),
        "{out}"
    );
    poll_until("/healthz to be ok again", || {
        (get(&addr, "/healthz").status == 200).then_some(())
    });
    d.wait_stderr("new grant taken over");
    let (code, out, err) = run_to_end(&["status", "--config", sb.config.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!out.contains("NEEDS RECONNECT"), "{out}");

    // A connection the running daemon does not know (added to the file, not reloaded):
    // its JSON error, printed by the CLI, before any consent is asked for.
    let text = std::fs::read_to_string(&sb.config).unwrap();
    let extra = text
        .split("\n[")
        .find(|t| t.starts_with("quickbooks.sandbox-qbo]"))
        .unwrap()
        .replacen("quickbooks.sandbox-qbo]", "quickbooks.added-later]", 1)
        .lines()
        .map(|l| {
            if l.starts_with("realm_id") {
                "realm_id = \"4620816365\""
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&sb.config, format!("{text}\n[{extra}")).unwrap();
    let (code, out) = connect(&sb.config, "added-later");
    assert_eq!(code, Some(64), "{out}");
    assert!(
        out.contains("the running daemon has no connection named \"added-later\""),
        "{out}"
    );
    assert!(!out.contains("Open this URL"), "{out}");

    d.signal(libc::SIGTERM);
    let (code, _) = d.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{}", d.stderr_text());
    // The new grant is the one stored, and no token of it is in the log.
    let store = overdued::store::SledStore::open(&state_dir_of(&sb.config)).unwrap();
    let tokens = overdued::store::Store::get_tokens(&store, "sandbox-qbo")
        .unwrap()
        .expect("tokens stored");
    assert!(!tokens.needs_reconnect);
    let log = d.stderr_text();
    for secret in [tokens.access_token.expose(), tokens.refresh_token.expose()] {
        assert!(!log.contains(secret), "a token in the log");
    }
}

/// Two Xero organisations on one consent, the second connected while the daemon runs:
/// it joins the grant the daemon holds for the first (no second consent), and the
/// daemon syncs it without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_xero_organisation_connected_with_the_daemon_up_joins_the_grant_it_holds() {
    use chrono::SubsecRound;
    use overdued_sandbox::{Sandbox as Sim, SandboxOptions, System};
    let start = chrono::Utc::now().trunc_subsecs(0);
    let running = Sim::start(
        SandboxOptions {
            seed: 7,
            customers: 3,
            invoices: 4,
            quickbooks_tenants: 0,
            xero_tenants: 2,
            start,
            enforce_limits: false,
            ..SandboxOptions::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .expect("sandbox starts");
    let sb = &running.sandbox;
    sb.set_now(start);
    let url = running.url();
    let tenants: Vec<String> = sb
        .tenants()
        .into_iter()
        .filter(|t| t.system == System::Xero)
        .map(|t| t.id)
        .collect();
    let (client_id, client_secret) = sb.client_credentials(System::Xero);
    let mut text = "[daemon]\nstate_dir = \"state\"\npoll_interval = \"1m\"\ntime_zone = \"UTC\"\n\
         mode = \"dry-run\"\nhttp_listen = \"127.0.0.1:0\"\n"
        .to_string();
    for (i, t) in tenants.iter().enumerate() {
        text.push_str(&format!(
            "\n[xero.org-{i}]\nclient_id = \"{client_id}\"\nclient_secret = \"{client_secret}\"\n\
             tenant = \"{t}\"\napi_base = \"{url}/api.xro/2.0\"\n\
             identity_base = \"{url}\"\ntoken_url = \"{url}/connect/token\"\n\
             authorize_url = \"{url}/identity/connect/authorize\"\n\
             redirect_uri = \"http://127.0.0.1:0/callback\"\nlimits_time_scale = 1000\n"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("overdued.toml");
    std::fs::write(&path, &text).unwrap();

    let p = path.clone();
    let (code, out) = tokio::task::spawn_blocking(move || connect(&p, "org-0"))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("Open this URL"),
        "the first needs the consent: {out}"
    );

    let p = path.clone();
    let (mut d, out) = tokio::task::spawn_blocking(move || {
        let mut d = spawn_daemon(&p, None, "info");
        d.wait_stderr("http listening on");
        d.wait_stderr("cycle finished connection=org-0");
        let out = connect(&p, "org-1");
        d.wait_stderr("new grant taken over");
        d.wait_stderr("cycle finished connection=org-1");
        (d, out)
    })
    .await
    .unwrap();
    let (code, out) = out;
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("Open this URL"), "no second consent: {out}");
    assert!(
        out.contains("org-1: connected to Xero organisation")
            && out.contains("already stored for org-0"),
        "{out}"
    );
    d.signal(libc::SIGTERM);
    let (code, _) = tokio::task::spawn_blocking(move || d.wait_exit(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(code, Some(0));
    let config = overdued::config::parse(&text, &path).unwrap_or_else(|e| panic!("{e}"));
    let store = overdued::store::SledStore::open(&config.daemon.state_dir).unwrap();
    let grant = |c: &str| {
        overdued::store::Store::get_tokens(&store, c)
            .unwrap()
            .expect("tokens stored")
            .grant_id
    };
    assert!(grant("org-0").is_some());
    assert_eq!(grant("org-1"), grant("org-0"), "one grant for both");
}
