//! End-to-end tests of `overdued run` as a service: the real binary, against the
//! built-in sandbox (itself the real binary's `sandbox` subcommand), on random
//! loopback ports. Every wait polls with a generous deadline, so a loaded CI machine
//! slows these tests down instead of failing them.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "support/service.rs"]
mod service;
use service::*;

fn run_to_end(args: &[&str]) -> (Option<i32>, String, String) {
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

// ---- sd_notify ---------------------------------------------------------------------

struct NotifySocket {
    sock: UnixDatagram,
    path: PathBuf,
    seen: Vec<String>,
}

impl NotifySocket {
    fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        NotifySocket {
            sock,
            path,
            seen: Vec::new(),
        }
    }

    /// Waits for a datagram with the line `line` (e.g. `READY=1`) after those seen.
    fn wait_for(&mut self, line: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        let mut buf = [0u8; 4096];
        loop {
            match self.sock.recv(&mut buf) {
                Ok(n) => {
                    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                    self.seen.push(msg.clone());
                    if msg.lines().any(|l| l == line) {
                        return msg;
                    }
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => panic!("notify socket: {e}"),
            }
            assert!(
                Instant::now() < deadline,
                "no {line:?} on the notify socket; saw {:?}",
                self.seen
            );
        }
    }
}

// ---- HTTP ------------------------------------------------------------------------

fn poll_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---- a strict Prometheus text parser -------------------------------------------------

type Labels = BTreeMap<String, String>;

/// Parses the text exposition format, refusing anything a Prometheus server would:
/// bad names, bad escapes, unparsable values, samples before or outside their
/// family's TYPE line, a family declared twice, duplicate series.
fn parse_prometheus(text: &str) -> BTreeMap<String, Vec<(Labels, f64)>> {
    fn is_name(s: &str, colon: bool) -> bool {
        let mut c = s.chars();
        matches!(c.next(), Some(x) if x.is_ascii_alphabetic() || x == '_' || (colon && x == ':'))
            && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || (colon && x == ':'))
    }
    assert!(text.ends_with('\n'), "exposition must end with a newline");
    let mut out: BTreeMap<String, Vec<(Labels, f64)>> = BTreeMap::new();
    let mut typed: BTreeMap<String, String> = BTreeMap::new();
    let mut closed: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<String> = None;
    let mut series: BTreeSet<String> = BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let at = format!("line {}: {line:?}", i + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let kw = parts.next().unwrap();
            let name = parts.next().unwrap_or_else(|| panic!("{at}: no name"));
            assert!(is_name(name, true), "{at}: bad metric name");
            match kw {
                "HELP" => {
                    let help = parts.next().unwrap_or("");
                    assert!(!help.contains('\n'));
                }
                "TYPE" => {
                    let t = parts.next().unwrap_or_else(|| panic!("{at}: no type"));
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&t),
                        "{at}: bad type"
                    );
                    assert!(!typed.contains_key(name), "{at}: family declared twice");
                    assert!(
                        !out.contains_key(name),
                        "{at}: TYPE after samples of the family"
                    );
                    typed.insert(name.to_string(), t.to_string());
                    if let Some(c) = current.replace(name.to_string()) {
                        closed.insert(c);
                    }
                }
                _ => {}
            }
            continue;
        }
        assert!(!line.starts_with('#'), "{at}: comment without a space");
        let name_end = line
            .find(['{', ' '])
            .unwrap_or_else(|| panic!("{at}: no value"));
        let name = &line[..name_end];
        assert!(is_name(name, true), "{at}: bad metric name");
        let mut labels = Labels::new();
        let mut rest = &line[name_end..];
        if let Some(r) = rest.strip_prefix('{') {
            let mut chars = r.char_indices().peekable();
            let mut consumed = None;
            loop {
                let (start, c) = chars
                    .next()
                    .unwrap_or_else(|| panic!("{at}: unterminated labels"));
                if c == '}' {
                    consumed = consumed.or(Some(start + 1));
                    break;
                }
                let mut key = String::from(c);
                for (_, c) in chars.by_ref() {
                    if c == '=' {
                        break;
                    }
                    key.push(c);
                }
                assert!(is_name(&key, false), "{at}: bad label name {key:?}");
                assert_eq!(
                    chars.next().map(|x| x.1),
                    Some('"'),
                    "{at}: label value not quoted"
                );
                let mut val = String::new();
                loop {
                    let (_, c) = chars
                        .next()
                        .unwrap_or_else(|| panic!("{at}: unterminated value"));
                    match c {
                        '"' => break,
                        '\\' => match chars.next().map(|x| x.1) {
                            Some('\\') => val.push('\\'),
                            Some('"') => val.push('"'),
                            Some('n') => val.push('\n'),
                            other => panic!("{at}: bad escape {other:?}"),
                        },
                        '\n' => panic!("{at}: raw newline in a label value"),
                        c => val.push(c),
                    }
                }
                assert!(
                    labels.insert(key.clone(), val).is_none(),
                    "{at}: label {key} twice"
                );
                match chars.next() {
                    Some((_, ',')) => {}
                    Some((p, '}')) => {
                        consumed = Some(p + 1);
                        break;
                    }
                    other => panic!("{at}: expected , or }} after a label, got {other:?}"),
                }
            }
            rest = &r[consumed.unwrap()..];
        }
        let rest = rest
            .strip_prefix(' ')
            .unwrap_or_else(|| panic!("{at}: no space before the value"));
        let mut fields = rest.split(' ');
        let v = fields.next().unwrap();
        let value: f64 = match v {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("{at}: bad value {v:?}")),
        };
        if let Some(ts) = fields.next() {
            ts.parse::<i64>()
                .unwrap_or_else(|_| panic!("{at}: bad timestamp"));
        }
        assert!(fields.next().is_none(), "{at}: trailing fields");
        let family = current
            .clone()
            .unwrap_or_else(|| panic!("{at}: sample before any TYPE"));
        assert_eq!(name, family, "{at}: sample outside its family's block");
        assert!(
            !closed.contains(name),
            "{at}: family continued after another began"
        );
        let key = format!("{name}{labels:?}");
        assert!(series.insert(key), "{at}: duplicate series");
        out.entry(name.to_string())
            .or_default()
            .push((labels, value));
    }
    out
}

fn metric(
    m: &BTreeMap<String, Vec<(Labels, f64)>>,
    name: &str,
    want: &[(&str, &str)],
) -> Option<f64> {
    m.get(name)?
        .iter()
        .find(|(l, _)| {
            want.iter()
                .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|x| x.1)
}

#[test]
fn the_parser_refuses_what_prometheus_refuses() {
    let ok = "# HELP a_total x\n# TYPE a_total counter\na_total{k=\"v\\\"\"} 1\na_total 2 1700000000000\n";
    let m = parse_prometheus(ok);
    assert_eq!(metric(&m, "a_total", &[("k", "v\"")]), Some(1.0));
    for bad in [
        "a 1\n",                                           // no TYPE
        "# TYPE a gauge\na{k=v} 1\n",                      // unquoted
        "# TYPE a gauge\na{k=\"\\x\"} 1\n",                // bad escape
        "# TYPE a gauge\na one\n",                         // bad value
        "# TYPE a gauge\n# TYPE a gauge\n",                // declared twice
        "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na 2\n", // interleaved
        "# TYPE a gauge\na 1\na 1\n",                      // duplicate series
        "# TYPE 1a gauge\n",                               // bad name
        "# TYPE a gauge\na 1",                             // no final newline
    ] {
        let r = std::panic::catch_unwind(|| parse_prometheus(bad));
        assert!(r.is_err(), "accepted {bad:?}");
    }
}

// ---- the sandbox -------------------------------------------------------------------

fn start_sandbox(dir: &Path) -> Sandbox {
    let config = dir.join("overdued.toml");
    let mut cmd = Command::new(BIN);
    cmd.args([
        "sandbox",
        "--listen",
        "127.0.0.1:0",
        "--seed",
        "7",
        "--write-config",
    ])
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

/// Every secret the daemon was given or obtained: the configured client secrets and
/// refresh tokens (files beside the config) and the tokens in its store.
fn secrets(config: &Path) -> Vec<String> {
    let dir = config.parent().unwrap();
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".client-secret") || name.ends_with(".refresh-token") {
            out.push(std::fs::read_to_string(&p).unwrap().trim().to_string());
        }
    }
    let store = overdued::store::SledStore::open(&state_dir_of(config))
        .expect("open the store after the daemon stopped");
    for name in ["sandbox-qbo", "sandbox-xero"] {
        use overdued::store::Store;
        if let Some(t) = store.get_tokens(name).unwrap() {
            out.push(t.access_token.expose().to_string());
            out.push(t.refresh_token.expose().to_string());
            if let Some(p) = t.previous_refresh_token {
                out.push(p.expose().to_string());
            }
        }
    }
    out.retain(|s| s.len() >= 8);
    out
}

fn metrics_of(addr: &str) -> BTreeMap<String, Vec<(Labels, f64)>> {
    let r = get(addr, "/metrics");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.headers
            .to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{}",
        r.headers
    );
    parse_prometheus(&r.body)
}

/// The whole life of the service: start, READY, serve, reload (bad, then good), a
/// revoked grant turning /healthz to 503, `overdued status` both ways, SIGTERM, and no
/// secret in any log line at trace level.
#[test]
fn service_lifecycle_against_the_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let sb = start_sandbox(dir.path());
    // A connection nobody answers, to show it does not hold up the others.
    let dead_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut good = std::fs::read_to_string(&sb.config).unwrap();
    write(dir.path(), "dead.secret", "dead-client-secret-value\n");
    good.push_str(&format!(
        "\n[quickbooks.unreachable]\nrealm_id = \"1\"\nclient_id = \"x\"\nclient_secret_file = \"dead.secret\"\n\
         refresh_token = \"dead-refresh-token-value\"\nenvironment = \"sandbox\"\n\
         api_base = \"http://127.0.0.1:{dead_port}\"\ntoken_url = \"http://127.0.0.1:{dead_port}/token\"\n"
    ));
    std::fs::write(&sb.config, &good).unwrap();

    let mut notify = NotifySocket::bind(dir.path());
    let mut d = spawn_daemon(&sb.config, Some(&notify.path), "trace");
    let addr = http_addr_from_log(&mut d);
    let ready = notify.wait_for("READY=1");
    assert!(ready.contains("STATUS=running: 3 connection(s)"), "{ready}");
    assert!(
        addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
        "{addr}"
    );
    let addr_file = std::fs::read_to_string(state_dir_of(&sb.config).join("http.addr")).unwrap();
    assert_eq!(addr_file.trim(), addr);

    // Both sandbox connections sync while the unreachable one keeps failing.
    let m = poll_until("first syncs of both sandbox connections", || {
        let m = metrics_of(&addr);
        let ok = |c| {
            metric(
                &m,
                "overdued_syncs_total",
                &[("connection", c), ("result", "ok")],
            )
            .unwrap_or(0.0)
        };
        // The ageing gauges come from the status computed once a whole cycle (sync,
        // plan, act) has ended, a moment after the sync counter moves.
        let aged = m.get("overdued_open_invoices").is_some_and(|v| {
            v.iter()
                .any(|(l, _)| l.get("connection").map(String::as_str) == Some("sandbox-qbo"))
        });
        (ok("sandbox-qbo") >= 1.0 && ok("sandbox-xero") >= 1.0 && aged).then_some(m)
    });
    let first_metrics = m.clone();
    assert_eq!(
        metric(
            &m,
            "overdued_syncs_total",
            &[("connection", "unreachable"), ("result", "ok")]
        ),
        Some(0.0)
    );

    assert!(metric(
        &m,
        "overdued_token_access_expires_in_seconds",
        &[("connection", "sandbox-xero")]
    )
    .is_some());
    let open_usd: f64 = m["overdued_open_invoices"]
        .iter()
        .filter(|(l, _)| l["connection"] == "sandbox-qbo")
        .map(|x| x.1)
        .sum();
    assert!(open_usd > 0.0, "the seeded sandbox has open invoices");
    assert!(m.contains_key("overdued_open_amount"));
    assert_eq!(metric(&m, "overdued_build_info", &[]), Some(1.0));

    let h = get(&addr, "/healthz");
    assert_eq!((h.status, h.body.as_str()), (200, "ok\n"));

    // Admin endpoints need the token.
    let token = admin_token(&sb.config);
    assert_eq!(http(&addr, "GET", "/admin/status", &[], "").status, 401);
    assert_eq!(
        http(
            &addr,
            "GET",
            "/admin/status",
            &[("Authorization", "Bearer wrong")],
            ""
        )
        .status,
        401
    );
    let bearer = format!("Bearer {token}");
    let st = http(
        &addr,
        "GET",
        "/admin/status",
        &[("Authorization", &bearer)],
        "",
    );
    assert_eq!(st.status, 200, "{}", st.body);
    let j: serde_json::Value = serde_json::from_str(&st.body).unwrap();
    assert_eq!(j["daemon"]["mode"], "live");
    assert_eq!(j["connections"].as_array().unwrap().len(), 3);

    // A bad config is refused and the running one stays.
    std::fs::write(
        &sb.config,
        good.replace("[daemon]", "[daemon]\npoll_interval = \"often\""),
    )
    .unwrap();
    d.signal(libc::SIGHUP);
    let refused = d.wait_stderr("config reload refused");
    assert!(refused.contains("poll_interval"), "{refused}");
    notify.wait_for("READY=1");
    assert_eq!(get(&addr, "/healthz").status, 200);
    let st = http(
        &addr,
        "GET",
        "/admin/status",
        &[("Authorization", &bearer)],
        "",
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&st.body).unwrap()["daemon"]["mode"],
        "live"
    );

    // A good one is taken.
    std::fs::write(
        &sb.config,
        good.replace("[daemon]", "[daemon]\nmode = \"dry-run\""),
    )
    .unwrap();
    d.signal(libc::SIGHUP);
    d.wait_stderr("config reloaded");
    notify.wait_for("READY=1");
    let st = http(
        &addr,
        "GET",
        "/admin/status",
        &[("Authorization", &bearer)],
        "",
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&st.body).unwrap()["daemon"]["mode"],
        "dry-run"
    );

    // The grant is revoked and the access token expires: the next sync cannot refresh.
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
    let h = poll_until("/healthz to report the reconnect", || {
        let h = get(&addr, "/healthz");
        (h.status == 503).then_some(h)
    });
    assert!(h.body.contains("sandbox-qbo needs reconnect"), "{}", h.body);
    assert!(!h.body.contains("sandbox-xero"), "{}", h.body);
    let loud = d.wait_stderr("NEEDS RECONNECT");
    assert!(loud.contains("ERROR"), "said loudly: {loud}");
    let m = metrics_of(&addr);
    assert_eq!(
        metric(
            &m,
            "overdued_connection_needs_reconnect",
            &[("connection", "sandbox-qbo")]
        ),
        Some(1.0)
    );
    assert_eq!(metric(&m, "overdued_healthy", &[]), Some(0.0));

    // `overdued status` asks the running daemon.
    let (code, out, err) = run_to_end(&["status", "--config", sb.config.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("daemon: running"), "{out}");
    assert!(
        out.contains("NEEDS RECONNECT: run `overdued connect sandbox-qbo`"),
        "{out}"
    );
    assert!(out.contains("sandbox-xero (xero)"), "{out}");

    // SIGTERM: out within 10 s, exit 0, STOPPING=1 sent.
    d.signal(libc::SIGTERM);
    let (code, took) = d.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{}", d.stderr_text());
    assert!(took < Duration::from_secs(10), "{took:?}");
    notify.wait_for("STOPPING=1");
    assert!(!state_dir_of(&sb.config).join("http.addr").exists());

    // And without it, from the store.
    let (code, out, err) = run_to_end(&["status", "--config", sb.config.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("daemon: not running"), "{out}");
    assert!(out.contains("NEEDS RECONNECT"), "{out}");

    let log = d.stderr_text();
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "ran at trace level"
    );
    let mut all = secrets(&sb.config);
    all.push("dead-client-secret-value".into());
    all.push("dead-refresh-token-value".into());
    assert!(all.len() >= 6, "secrets found: {}", all.len());
    for s in &all {
        for line in log.lines() {
            assert!(!line.contains(s.as_str()), "a secret in the log: {line}");
        }
    }

    // API traffic is counted by the connectors' shared runtime.
    let m = &first_metrics;
    assert!(
        metric(
            m,
            "overdued_api_calls_total",
            &[("connection", "sandbox-qbo"), ("status", "200")]
        )
        .expect("no API call counts: the connector must return its ConnectionRuntime from Connector::runtime()")
            >= 1.0
    );
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    // Secret files must be private or the config is refused.
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// A config with one connection that cannot reach anything, on its own state dir.
fn offline_config(dir: &Path, name: &str, state: &str) -> PathBuf {
    write(dir, "s.secret", "offline-secret\n");
    write(
        dir,
        &format!("{name}.toml"),
        &format!(
            "[daemon]\nstate_dir = \"{state}\"\nhttp_listen = \"127.0.0.1:0\"\n\n\
             [quickbooks.shop]\nrealm_id = \"1\"\nclient_id = \"x\"\nclient_secret_file = \"s.secret\"\n\
             refresh_token = \"offline-refresh\"\napi_base = \"http://127.0.0.1:9\"\ntoken_url = \"http://127.0.0.1:9/t\"\n"
        ),
    )
}

#[test]
fn startup_fails_fast_with_sysexits_codes() {
    let dir = tempfile::tempdir().unwrap();

    // Config errors: 78, naming the place.
    let bad = write(dir.path(), "bad.toml", "[daemon]\npoll_interval = 5\n");
    let (code, _, err) = run_to_end(&["run", "--config", bad.to_str().unwrap()]);
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("bad.toml:2:"), "{err}");
    let (code, _, err) = run_to_end(&[
        "run",
        "--config",
        dir.path().join("missing.toml").to_str().unwrap(),
    ]);
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("no such file"), "{err}");

    // A state directory that cannot be created: 74.
    write(dir.path(), "plainfile", "");
    let cfg = offline_config(dir.path(), "plain", "plainfile/state");
    let (code, _, err) = run_to_end(&["run", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, Some(74), "{err}");
    assert!(err.contains("plainfile"), "{err}");

    // A state directory held by another daemon: 74, naming its pid.
    let cfg = offline_config(dir.path(), "held", "held");
    let mut notify = NotifySocket::bind(dir.path());
    let mut first = spawn_daemon(&cfg, Some(&notify.path), "info");
    notify.wait_for("READY=1");
    let (code, _, err) = run_to_end(&["run", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, Some(74), "{err}");
    assert!(err.contains(&format!("pid {}", first.pid())), "{err}");

    // The listener taken: 74.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let cfg2 = offline_config(dir.path(), "other", "other");
    let text = std::fs::read_to_string(&cfg2)
        .unwrap()
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    std::fs::write(&cfg2, text).unwrap();
    let (code, _, err) = run_to_end(&["run", "--config", cfg2.to_str().unwrap()]);
    assert_eq!(code, Some(74), "{err}");
    assert!(err.contains("cannot listen"), "{err}");

    // SIGINT stops as SIGTERM does.
    first.signal(libc::SIGINT);
    let (code, took) = first.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{}", first.stderr_text());
    assert!(took < Duration::from_secs(10));
    notify.wait_for("STOPPING=1");
}

/// While the daemon holds the store, `pause`, `resume` and `history` go through its
/// admin endpoint and act on its store; errors keep their exit codes.
#[test]
fn hand_operations_go_through_the_running_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let sb = start_sandbox(dir.path());
    let cfg = sb.config.to_str().unwrap().to_string();
    let mut d = spawn_daemon(&sb.config, None, "info");
    let _addr = http_addr_from_log(&mut d);
    // A customer is known once a sync has brought its invoices.
    poll_until("the first QuickBooks sync", || {
        d.stderr_text()
            .lines()
            .any(|l| l.contains("sync finished") && l.contains("sandbox-qbo"))
            .then_some(())
    });

    let (code, _, err) = run_to_end(&[
        "pause",
        "sandbox-qbo",
        "no such customer",
        "--customer",
        "--reason",
        "dispute",
        "--config",
        &cfg,
    ]);
    assert_eq!(code, Some(64), "{err}");
    assert!(
        err.contains("no customer with id, name or email \"no such customer\""),
        "{err}"
    );

    let (code, out, err) = run_to_end(&[
        "pause",
        "sandbox-qbo",
        "10",
        "--customer",
        "--reason",
        "dispute: wrong quantity",
        "--config",
        &cfg,
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("sandbox-qbo: paused customer 10 (Harper Lee): dispute: wrong quantity"),
        "{out}"
    );

    let (code, out, err) = run_to_end(&[
        "resume",
        "sandbox-qbo",
        "10",
        "--customer",
        "--config",
        &cfg,
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("resumed customer 10 (Harper Lee)"), "{out}");

    let (code, _, err) = run_to_end(&[
        "resume",
        "sandbox-qbo",
        "10",
        "--customer",
        "--config",
        &cfg,
    ]);
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("neither paused nor under a promise"), "{err}");

    // The name as `status` shows it, in any case, names the same customer.
    let (code, out, err) = run_to_end(&[
        "pause",
        "sandbox-qbo",
        "harper LEE",
        "--customer",
        "--reason",
        "dispute",
        "--config",
        &cfg,
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("paused customer 10 (Harper Lee)"), "{out}");
    let (code, out, err) = run_to_end(&[
        "resume",
        "sandbox-qbo",
        "Harper Lee",
        "--customer",
        "--config",
        &cfg,
    ]);
    assert_eq!(code, Some(0), "{out}{err}");

    let (code, _, err) = run_to_end(&[
        "history",
        "sandbox-qbo",
        "no-such-invoice",
        "--config",
        &cfg,
    ]);
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("nothing is known about invoice"), "{err}");

    d.signal(libc::SIGTERM);
    let (status, _) = d.wait_exit(Duration::from_secs(20));
    assert_eq!(status, Some(0));
    // Without the daemon the same store answers directly: the audit kept both events.
    let (code, _, err) = run_to_end(&[
        "resume",
        "sandbox-qbo",
        "10",
        "--customer",
        "--config",
        &cfg,
    ]);
    assert_eq!(code, Some(64), "{err}");
}

/// Inbound webhooks: a signed QuickBooks event starts a sync at once; Xero's
/// intent-to-receive check gets 200 or 401 with an empty body; a bad signature changes
/// nothing.
#[test]
fn webhooks_verify_signatures_and_sync_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let sb = start_sandbox(dir.path());
    let mut text = std::fs::read_to_string(&sb.config).unwrap();
    let realm = text
        .lines()
        .find_map(|l| l.strip_prefix("realm_id = \""))
        .map(|r| r.trim_end_matches('"').to_string())
        .unwrap();
    text.push_str("\n[daemon.webhooks]\nquickbooks_verifier_token = \"qbo-verifier\"\nxero_webhook_key = \"xero-key\"\n");
    std::fs::write(&sb.config, text).unwrap();
    let mut d = spawn_daemon(&sb.config, None, "info");
    let addr = http_addr_from_log(&mut d);
    d.wait_stderr("sync finished");

    // Xero's intent-to-receive check.
    let intent = r#"{"events":[],"firstEventSequence":0,"lastEventSequence":0,"entropy":"QWERTY"}"#;
    let good = hmac_b64(intent, "xero-key");
    let r = http(
        &addr,
        "POST",
        "/webhooks/xero",
        &[
            ("x-xero-signature", &good),
            ("content-type", "application/json"),
        ],
        intent,
    );
    assert_eq!((r.status, r.body.as_str()), (200, ""), "{}", r.headers);
    let bad = hmac_b64(intent, "not-the-key");
    let r = http(
        &addr,
        "POST",
        "/webhooks/xero",
        &[
            ("x-xero-signature", &bad),
            ("content-type", "application/json"),
        ],
        intent,
    );
    assert_eq!((r.status, r.body.as_str()), (401, ""));

    // A QuickBooks payment event for the sandbox company starts its cycle at once.
    let event = format!(
        r#"{{"eventNotifications":[{{"realmId":"{realm}","dataChangeEvent":{{"entities":[{{"name":"Invoice","id":"130","operation":"Update","lastUpdated":"2026-01-05T10:00:00.000Z"}}]}}}}]}}"#
    );
    let r = http(
        &addr,
        "POST",
        "/webhooks/quickbooks",
        &[("intuit-signature", &hmac_b64(&event, "not-the-key"))],
        &event,
    );
    assert_eq!(r.status, 401);
    let r = http(
        &addr,
        "POST",
        "/webhooks/quickbooks",
        &[("intuit-signature", &hmac_b64(&event, "qbo-verifier"))],
        &event,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    d.wait_stderr("webhook: change reported; syncing now");
    let r = http(
        &addr,
        "POST",
        "/webhooks/quickbooks",
        &[("intuit-signature", &hmac_b64("{", "qbo-verifier"))],
        "{",
    );
    assert_eq!(
        r.status, 400,
        "a signed but malformed body is refused clearly"
    );

    d.signal(libc::SIGTERM);
    let (status, _) = d.wait_exit(Duration::from_secs(20));
    assert_eq!(status, Some(0));
    assert!(
        !d.stderr_text().contains("qbo-verifier") && !d.stderr_text().contains("xero-key"),
        "no webhook key in the log"
    );
}
