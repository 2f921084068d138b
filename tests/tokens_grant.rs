//! Several Xero organisations on one grant, through the daemon's cycle: three tables
//! configured with one consent's refresh token share one token manager, so Xero's
//! rotation on every refresh never voids one organisation's copy under another. Six
//! hours of Xero's clock (30-minute access tokens), a cycle every 10 minutes.

mod support;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use overdued::store::{SledStore, Store};
use overdued_connector::{Clock, ManualClock, TokenStore};
use overdued_sandbox::{NewInvoice, Sandbox, SandboxOptions, System};
use rust_decimal::Decimal;

fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-02T06:00:00Z")
        .unwrap()
        .to_utc()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_organisations_on_one_grant_cycle_for_six_hours() {
    let running = Sandbox::start(
        SandboxOptions {
            seed: 5,
            customers: 3,
            invoices: 6,
            quickbooks_tenants: 0,
            xero_tenants: 3,
            start: start(),
            enforce_limits: false,
            ..SandboxOptions::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .expect("sandbox starts");
    let sb = &running.sandbox;
    let url = running.url();
    let tenants: Vec<String> = sb
        .tenants()
        .into_iter()
        .filter(|t| t.system == System::Xero)
        .map(|t| t.id)
        .collect();
    let ids: Vec<&str> = tenants.iter().map(String::as_str).collect();
    let grant = sb.grant_many(System::Xero, &ids).expect("one consent");
    let (client_id, client_secret) = sb.client_credentials(System::Xero);
    let mut text = "[daemon]\nstate_dir = \"state\"\npoll_interval = \"1m\"\ntime_zone = \"UTC\"\n\
         allow_clock_override = true\nhttp_listen = \"127.0.0.1:0\"\n"
        .to_string();
    for (i, t) in tenants.iter().enumerate() {
        text.push_str(&format!(
            "\n[xero.org-{i}]\nclient_id = \"{client_id}\"\nclient_secret = \"{client_secret}\"\n\
             refresh_token = \"{rt}\"\ntenant = \"{t}\"\napi_base = \"{url}/api.xro/2.0\"\n\
             identity_base = \"{url}\"\ntoken_url = \"{url}/connect/token\"\n\
             authorize_url = \"{url}/identity/connect/authorize\"\nlimits_time_scale = 1000\n",
            rt = grant.refresh_token
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("overdued.toml");
    std::fs::write(&path, &text).unwrap();
    let config = overdued::config::parse(&text, &path).unwrap_or_else(|e| panic!("{e}"));
    let store = Arc::new(SledStore::open(&config.daemon.state_dir).expect("store"));
    let clock = Arc::new(ManualClock::new(start()));
    let token_requests = || {
        sb.stats()["requests"]["oauth.xero.token"]
            .as_u64()
            .unwrap_or(0)
    };

    let mut t = start();
    let mut made: Vec<(usize, String)> = Vec::new();
    for n in 0..=36 {
        sb.set_now(t);
        clock.set(t);
        if n % 6 == 3 {
            for (i, tenant) in tenants.iter().enumerate() {
                let inv = sb
                    .create_invoice(NewInvoice {
                        system: System::Xero,
                        tenant: Some(tenant.clone()),
                        customer_name: format!("Grant Check {n}"),
                        customer_email: format!("ap{n}@grant.example"),
                        number: None,
                        currency: None,
                        total: Decimal::from(100 + n),
                        issue_date: t.date_naive(),
                        due_date: t.date_naive() + chrono::Duration::days(30),
                        behaviour: None,
                    })
                    .expect("invoice");
                made.push((i, inv.id));
            }
        }
        let s: Arc<dyn Store> = store.clone();
        let tk: Arc<dyn TokenStore> = store.clone();
        let c: Arc<dyn Clock> = clock.clone();
        let results = overdued::cycle::run_all_once(&config, s, tk, c).await;
        assert_eq!(results.len(), 3);
        for (name, r) in results {
            let rep = r.unwrap_or_else(|e| panic!("{t}: cycle of {name} failed: {e}"));
            assert!(rep.sync.pages > 0, "{t}: {name} synced");
        }
        t += chrono::Duration::minutes(10);
    }
    assert_eq!(made.len(), 18);

    // Each organisation's cache holds its own new invoices and none of the others'.
    for (i, id) in &made {
        for (j, _) in tenants.iter().enumerate() {
            let held = store
                .get_invoice(&format!("org-{j}"), id)
                .expect("store read")
                .is_some();
            assert_eq!(held, *i == j, "org-{j} and {id} of org-{i}");
        }
    }
    // 6 hours of 30-minute tokens renewed ahead: one grant's worth of refreshes.
    let refreshes = token_requests();
    assert!(
        (12..=19).contains(&refreshes),
        "{refreshes} token requests for one grant in 6 hours"
    );
    for i in 0..3 {
        assert!(
            store.load_tokens(&format!("org-{i}")).unwrap().is_none(),
            "org-{i} keeps no copy of its own"
        );
    }
}
