//! Several Xero organisations on one grant (one consent covering several tenants).
//! Xero rotates the refresh token on every refresh and honours the previous one for 30
//! minutes only: connections keeping their own copies of one grant void each other once
//! that grace has passed. They share one token manager instead.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use overdued_connector::runtime::RetryPolicy;
use overdued_connector::{
    ConnectionId, Connector, InvoiceSnapshot, ManualClock, Secret, SyncCursor, TokenSet,
    TokenStore, TokenStoreError,
};
use overdued_sandbox::{NewInvoice, RunningSandbox, Sandbox, SandboxOptions, System};
use overdued_xero::{XeroConnector, XeroSettings};
use rust_decimal::Decimal;

#[derive(Default)]
struct MemStore {
    tokens: Mutex<BTreeMap<String, TokenSet>>,
}

impl TokenStore for MemStore {
    fn load_tokens(&self, c: &str) -> Result<Option<TokenSet>, TokenStoreError> {
        Ok(self.tokens.lock().unwrap().get(c).cloned())
    }
    fn save_tokens(&self, c: &str, t: &TokenSet) -> Result<(), TokenStoreError> {
        self.tokens.lock().unwrap().insert(c.to_string(), t.clone());
        Ok(())
    }
}

struct Env {
    running: RunningSandbox,
    tenants: Vec<String>,
    store: Arc<MemStore>,
    clock: Arc<ManualClock>,
}

async fn three_organisations() -> Env {
    let running = Sandbox::start(
        SandboxOptions {
            invoices: 10,
            customers: 5,
            quickbooks_tenants: 0,
            xero_tenants: 3,
            ..SandboxOptions::default()
        },
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .expect("sandbox starts");
    let tenants: Vec<String> = running
        .sandbox
        .tenants()
        .into_iter()
        .filter(|t| t.system == System::Xero)
        .map(|t| t.id)
        .collect();
    assert_eq!(tenants.len(), 3);
    let clock = Arc::new(ManualClock::new(running.sandbox.now()));
    Env {
        running,
        tenants,
        store: Arc::new(MemStore::default()),
        clock,
    }
}

fn settings(env: &Env, tenant: &str, name: &str, refresh: &str) -> XeroSettings {
    let (id, secret) = env.running.sandbox.client_credentials(System::Xero);
    let mut s = XeroSettings::new(ConnectionId::new(name), id, Secret::new(secret), tenant)
        .with_base_url(&env.running.url());
    s.retry = RetryPolicy {
        max_attempts: 4,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(100),
        max_retry_after: Duration::from_secs(2),
    };
    s.request_timeout = Duration::from_secs(10);
    s.initial_refresh_token = Some(Secret::new(refresh));
    s
}

async fn pass(c: &XeroConnector, mut cursor: SyncCursor) -> (Vec<InvoiceSnapshot>, SyncCursor) {
    let mut all = Vec::new();
    loop {
        let page = c
            .sync_page(&cursor)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", c.connection()));
        all.extend(page.invoices);
        cursor = page.next;
        if !page.more {
            return (all, cursor);
        }
    }
}

fn token_requests(sb: &Sandbox) -> u64 {
    sb.stats()["requests"]["oauth.xero.token"]
        .as_u64()
        .unwrap_or(0)
}

/// Three organisations configured with one grant's refresh token sync every 10 minutes
/// for 6 hours of Xero's clock (access tokens last 30 minutes, each refresh rotates the
/// refresh token): no `invalid_grant`, every organisation keeps syncing its own invoices,
/// the grant is refreshed once per access-token lifetime, not once per organisation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_organisations_on_one_grant_sync_for_six_hours() {
    let env = three_organisations().await;
    let sb = &env.running.sandbox;
    let ids: Vec<&str> = env.tenants.iter().map(String::as_str).collect();
    let grant = sb.grant_many(System::Xero, &ids).expect("grant");
    assert_eq!(
        grant.expires_in,
        30 * 60,
        "Xero's access tokens last 30 minutes"
    );
    let orgs: Vec<XeroConnector> = env
        .tenants
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let s = settings(&env, t, &format!("org-{i}"), &grant.refresh_token);
            XeroConnector::new(s, env.store.clone(), env.clock.clone()).expect("connector")
        })
        .collect();
    let mut cursors: Vec<SyncCursor> = Vec::new();
    for c in &orgs {
        cursors.push(pass(c, SyncCursor::initial()).await.1);
    }
    let before = token_requests(sb);

    let step = chrono::Duration::minutes(10);
    let steps = 6 * 6;
    let mut created = 0;
    for n in 0..steps {
        let now = sb.now() + step;
        sb.set_now(now);
        env.clock.set(now);
        // Every hour each organisation gets a new invoice, which only it must see.
        let mut made = Vec::new();
        if n % 6 == 5 {
            for t in &env.tenants {
                let inv = sb
                    .create_invoice(NewInvoice {
                        system: System::Xero,
                        tenant: Some(t.clone()),
                        customer_name: "Grant Check Ltd".into(),
                        customer_email: "ap@grant.example".into(),
                        number: None,
                        currency: None,
                        total: Decimal::from(10 + n),
                        issue_date: now.date_naive(),
                        due_date: now.date_naive(),
                        behaviour: None,
                    })
                    .expect("invoice");
                made.push(inv.id);
            }
            created += 1;
        }
        // Organisations take turns going first, so each refreshes for the grant.
        for k in 0..orgs.len() {
            let i = (n as usize + k) % orgs.len();
            let (read, next) = pass(&orgs[i], cursors[i].clone()).await;
            cursors[i] = next;
            for (j, id) in made.iter().enumerate() {
                let seen = read.iter().any(|r| &r.remote_id == id);
                assert_eq!(seen, i == j, "org-{i} and the invoice {id} of org-{j}");
            }
            assert!(
                !orgs[i].needs_reconnect(),
                "org-{i} lost its grant at step {n}"
            );
        }
    }
    assert_eq!(created, 6);
    let refreshes = token_requests(sb) - before;
    // 6 hours of 30-minute tokens renewed 5 minutes ahead: about one refresh per 20-30
    // minutes for the whole grant; three copies would take three times as many.
    assert!(
        (12..=18).contains(&refreshes),
        "{refreshes} token requests for one grant in 6 hours"
    );
    let stored = env.store.tokens.lock().unwrap();
    let grant_keys: Vec<&String> = stored.keys().filter(|k| k.starts_with("grant:")).collect();
    assert_eq!(
        grant_keys.len(),
        1,
        "stored once, under the grant: {:?}",
        stored.keys()
    );
    assert!(
        !stored.contains_key("org-0")
            && !stored.contains_key("org-1")
            && !stored.contains_key("org-2"),
        "no per-organisation copies: {:?}",
        stored.keys()
    );
}

/// Copies each organisation kept before its grant was shared: the newest wins, and
/// the grant is stored once from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_organisation_copies_migrate_to_the_grant_and_the_newest_wins() {
    let env = three_organisations().await;
    let sb = &env.running.sandbox;
    let ids: Vec<&str> = env.tenants.iter().map(String::as_str).collect();
    let grant = sb.grant_many(System::Xero, &ids).expect("grant");

    // What the previous release left: org-0 refreshed first, then org-1 (voiding
    // nothing yet, inside the grace), org-2 never ran.
    let old = |name: &str, refresh: &str| {
        let s = settings(&env, &env.tenants[0], name, refresh);
        XeroConnector::new(s, env.store.clone(), env.clock.clone()).expect("connector")
    };
    {
        // A connection alone on its grant stores under its own name, as before.
        let c0 = old("org-0", &grant.refresh_token);
        pass(&c0, SyncCursor::initial()).await;
    }
    let t0 = env.store.load_tokens("org-0").unwrap().expect("org-0 copy");
    let later = sb.now() + chrono::Duration::minutes(1);
    sb.set_now(later);
    env.clock.set(later);
    {
        let c1 = old("org-1", t0.refresh_token.expose());
        pass(&c1, SyncCursor::initial()).await;
    }
    let t1 = env.store.load_tokens("org-1").unwrap().expect("org-1 copy");
    assert!(t1.obtained_at > t0.obtained_at);

    // Past the 30-minute grace org-0's copy is void; the newest (org-1's) must win.
    let later = sb.now() + chrono::Duration::minutes(45);
    sb.set_now(later);
    env.clock.set(later);
    let orgs: Vec<XeroConnector> = env
        .tenants
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let s = settings(&env, t, &format!("org-{i}"), &grant.refresh_token);
            XeroConnector::new(s, env.store.clone(), env.clock.clone()).expect("connector")
        })
        .collect();
    for c in &orgs {
        pass(c, SyncCursor::initial()).await;
        assert!(!c.needs_reconnect(), "{}", c.connection());
    }
    let stored = env.store.tokens.lock().unwrap();
    let (key, shared) = stored
        .iter()
        .find(|(k, _)| k.starts_with("grant:"))
        .expect("the grant's entry");
    assert_eq!(
        shared.previous_refresh_token.as_ref(),
        Some(&t1.refresh_token),
        "{key} continues org-1's lineage"
    );
}
