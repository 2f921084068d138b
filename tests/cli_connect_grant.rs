//! Two Xero organisations connected with `overdued connect` through one consent: the
//! first connect runs the consent (which covers both organisations), the second finds
//! the organisation on the grant already stored and joins it. Both then share one token
//! manager keyed by the grant's `authEventId`, so Xero's rotation on every refresh never
//! voids one organisation's copy under the other: six hours of Xero's clock (30-minute
//! access tokens), a cycle every 10 minutes, no `invalid_grant`, both organisations sync.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use overdued::store::{SledStore, Store};
use overdued_connector::{Clock, ManualClock, TokenStore};
use overdued_sandbox::{Sandbox, SandboxOptions, System};

/// `overdued connect NAME`, following the authorize URL like the person's browser when
/// one is printed. Returns the exit code, the output and whether a consent was asked for.
fn connect(cfg: &std::path::Path, name: &str) -> (i32, String, bool) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_overdued"))
        .args(["connect", name, "--no-browser", "--config"])
        .arg(cfg)
        .env("OVERDUED_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let consented = first.contains("Open this URL");
    if consented {
        let mut url = String::new();
        out.read_line(&mut url).unwrap();
        let url = url.trim().to_string();
        // The browser, on a thread of its own (the test's runtime serves the sandbox).
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let resp = reqwest::get(&url).await.unwrap();
                assert!(resp.status().is_success(), "{}", resp.status());
            });
        })
        .join()
        .unwrap();
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
    (
        status.code().unwrap_or(-1),
        format!("{first}{rest}{err}"),
        consented,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_organisations_connected_through_one_consent_share_its_tokens_for_six_hours() {
    // The connect processes stamp tokens with the real clock: start there.
    let start: DateTime<Utc> = Utc::now().trunc_subsecs(0);
    let running = Sandbox::start(
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
    assert_eq!(tenants.len(), 2);
    let (client_id, client_secret) = sb.client_credentials(System::Xero);
    let mut text = "[daemon]\nstate_dir = \"state\"\npoll_interval = \"1m\"\ntime_zone = \"UTC\"\n\
         allow_clock_override = true\nhttp_listen = \"127.0.0.1:0\"\n"
        .to_string();
    for (i, t) in tenants.iter().enumerate() {
        // No refresh token in the config: the tokens come from `overdued connect`.
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
    let (code, out, consented) = tokio::task::spawn_blocking(move || connect(&p, "org-0"))
        .await
        .unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(consented, "the first organisation needs the consent: {out}");
    assert!(
        out.contains("org-0: connected to Xero organisation"),
        "{out}"
    );
    let p = path.clone();
    let (code, out, consented) = tokio::task::spawn_blocking(move || connect(&p, "org-1"))
        .await
        .unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(
        !consented,
        "the consent already covers the second organisation: {out}"
    );
    assert!(
        out.contains("org-1: connected to Xero organisation")
            && out.contains("already stored for org-0"),
        "{out}"
    );

    let config = overdued::config::parse(&text, &path).unwrap_or_else(|e| panic!("{e}"));
    let store = Arc::new(SledStore::open(&config.daemon.state_dir).expect("store"));
    let grant_ids: Vec<Option<String>> = (0..2)
        .map(|i| {
            store
                .load_tokens(&format!("org-{i}"))
                .unwrap()
                .expect("stored at connect")
                .grant_id
        })
        .collect();
    assert!(
        grant_ids[0].is_some(),
        "the grant's authEventId is recorded"
    );
    assert_eq!(grant_ids[0], grant_ids[1], "one consent, one grant");

    let clock = Arc::new(ManualClock::new(start));
    let token_requests = || {
        sb.stats()["requests"]["oauth.xero.token"]
            .as_u64()
            .unwrap_or(0)
    };
    let before = token_requests();
    let mut t = start;
    for _ in 0..=36 {
        sb.set_now(t);
        clock.set(t);
        let s: Arc<dyn Store> = store.clone();
        let tk: Arc<dyn TokenStore> = store.clone();
        let c: Arc<dyn Clock> = clock.clone();
        let results = overdued::cycle::run_all_once(&config, s, tk, c).await;
        assert_eq!(results.len(), 2);
        for (name, r) in results {
            let rep = r.unwrap_or_else(|e| panic!("{t}: cycle of {name} failed: {e}"));
            assert!(rep.sync.pages > 0, "{t}: {name} synced");
        }
        t += chrono::Duration::minutes(10);
    }
    // 6 hours of 30-minute tokens renewed ahead: one grant's worth of refreshes.
    let refreshes = token_requests() - before;
    assert!(
        (12..=19).contains(&refreshes),
        "{refreshes} token requests for one grant in 6 hours"
    );
    let key = format!(
        "grant:xero:{client_id}:{}",
        grant_ids[0].as_deref().unwrap()
    );
    let shared = store
        .load_tokens(&key)
        .unwrap()
        .expect("the grant's tokens are stored once, under its id");
    assert!(!shared.needs_reconnect);
    assert_eq!(shared.grant_id, grant_ids[0]);
    // `overdued status` shows the grant's tokens in use, not the copy stored at connect.
    for i in 0..2 {
        let conn = config.connection(&format!("org-{i}")).unwrap();
        let st = overdued::report::status::connection_status(&config, conn, store.as_ref(), t)
            .expect("status");
        assert_eq!(
            st.access_expires_at,
            Some(shared.access_expires_at),
            "org-{i}"
        );
        assert!(!st.needs_reconnect);
    }
}
