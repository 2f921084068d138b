//! End-to-end tests against the in-process API simulator (`overdued-sandbox`) of what
//! only QuickBooks does; what every connector does is in `contract.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use overdued_connector::runtime::{ConnectError, ConnectFlow, RetryPolicy};
use overdued_connector::{
    Clock, ConnectionId, Connector, FeePosting, InvoiceSnapshot, InvoiceStatus, ManualClock,
    SyncCursor, TokenSet, TokenStore, TokenStoreError,
};
use overdued_quickbooks::{Environment, FeeSettings, QuickBooksConnector, QuickBooksSettings};
use overdued_sandbox::{RunningSandbox, Sandbox, SandboxOptions, System};

const TOKEN_PATH: &str = "/oauth2/v1/tokens/bearer";
const AUTHORIZE_PATH: &str = "/oauth2/quickbooks/authorize";

/// A token store in memory that logs every save, and can "crash" right after one.
#[derive(Default)]
struct MemStore {
    tokens: Mutex<BTreeMap<String, TokenSet>>,
    events: Mutex<Vec<String>>,
    /// Counts API requests the sandbox saw at each save.
    sandbox: Mutex<Option<Sandbox>>,
    crash_after_save: Mutex<bool>,
}

impl TokenStore for MemStore {
    fn load_tokens(&self, c: &str) -> Result<Option<TokenSet>, TokenStoreError> {
        Ok(self.tokens.lock().unwrap().get(c).cloned())
    }
    fn save_tokens(&self, c: &str, t: &TokenSet) -> Result<(), TokenStoreError> {
        self.tokens.lock().unwrap().insert(c.to_string(), t.clone());
        let seen = self
            .sandbox
            .lock()
            .unwrap()
            .as_ref()
            .map(api_requests)
            .unwrap_or(0);
        self.events
            .lock()
            .unwrap()
            .push(format!("save after {seen} api requests"));
        if *self.crash_after_save.lock().unwrap() {
            panic!("simulated crash right after the token save");
        }
        Ok(())
    }
}

fn api_requests(sb: &Sandbox) -> u64 {
    let s = sb.stats();
    s.get("requests")
        .and_then(|r| r.as_object())
        .map(|m| {
            m.iter()
                .filter(|(k, _)| k.starts_with("quickbooks."))
                .filter_map(|(_, v)| v.as_u64())
                .sum()
        })
        .unwrap_or(0)
}

struct Env {
    running: RunningSandbox,
    realm: String,
    store: Arc<MemStore>,
    clock: Arc<ManualClock>,
}

async fn sandbox(opts: SandboxOptions) -> Env {
    let running = Sandbox::start(opts, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("sandbox starts");
    let realm = running
        .sandbox
        .tenants()
        .into_iter()
        .find(|t| t.system == System::QuickBooks)
        .expect("a realm")
        .id;
    let clock = Arc::new(ManualClock::new(running.sandbox.now()));
    let store = Arc::new(MemStore::default());
    *store.sandbox.lock().unwrap() = Some(running.sandbox.clone());
    Env {
        running,
        realm,
        store,
        clock,
    }
}

fn opts(invoices: usize) -> SandboxOptions {
    SandboxOptions {
        invoices,
        customers: 20,
        quickbooks_tenants: 1,
        xero_tenants: 0,
        ..SandboxOptions::default()
    }
}

fn settings(env: &Env, realm: &str, name: &str) -> QuickBooksSettings {
    let (id, secret) = env.running.sandbox.client_credentials(System::QuickBooks);
    let mut s = QuickBooksSettings::new(
        ConnectionId::new(name),
        realm,
        id,
        overdued_connector::Secret::new(secret),
        Environment::Sandbox,
        FeeSettings {
            item_id: "1".into(),
            item_name: Some("Services".into()),
            posting: FeePosting::SeparateInvoice,
        },
    );
    s.api_base_url = Some(env.running.url());
    s.token_url = Some(format!("{}{TOKEN_PATH}", env.running.url()));
    s.authorize_url = Some(format!("{}{AUTHORIZE_PATH}", env.running.url()));
    s.runtime.retry = RetryPolicy {
        max_attempts: 8,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(500),
        max_retry_after: Duration::from_secs(5),
    };
    s.runtime.request_timeout = Duration::from_secs(10);
    s
}

/// A connector bootstrapped from a fresh grant's refresh token, as `--write-config` does.
fn connector_for(
    env: &Env,
    realm: &str,
    name: &str,
    tweak: impl FnOnce(&mut QuickBooksSettings),
) -> QuickBooksConnector {
    let grant = env
        .running
        .sandbox
        .grant(System::QuickBooks, realm)
        .expect("grant");
    let mut s = settings(env, realm, name);
    s.initial_refresh_token = Some(overdued_connector::Secret::new(grant.refresh_token));
    tweak(&mut s);
    QuickBooksConnector::new(s, env.store.clone(), env.clock.clone()).expect("connector")
}

fn connector(env: &Env) -> QuickBooksConnector {
    connector_for(env, &env.realm.clone(), "acme-qbo", |_| {})
}

/// Runs one whole pass; returns the invoices and the cursor that ends it.
async fn pass(
    c: &QuickBooksConnector,
    mut cursor: SyncCursor,
) -> (Vec<InvoiceSnapshot>, SyncCursor) {
    let mut all = Vec::new();
    loop {
        let page = c.sync_page(&cursor).await.expect("sync page");
        all.extend(page.invoices);
        cursor = page.next;
        if !page.more {
            return (all, cursor);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_sync_reads_only_what_changed() {
    let env = sandbox(opts(300)).await;
    let c = connector(&env);
    let (all, cursor) = pass(&c, SyncCursor::initial()).await;
    assert_eq!(all.len(), 300);

    // Nothing changed: one query, no rows.
    let (none, cursor) = pass(&c, cursor).await;
    assert!(
        none.is_empty(),
        "unchanged invoices came back: {:?}",
        none.iter().map(|i| &i.remote_id).collect::<Vec<_>>()
    );

    let sb = &env.running.sandbox;
    sb.set_now(sb.now() + chrono::Duration::minutes(5));
    let open: Vec<&InvoiceSnapshot> = all
        .iter()
        .filter(|i| i.status == InvoiceStatus::Open)
        .take(2)
        .collect();
    for inv in &open {
        sb.add_payment(
            System::QuickBooks,
            &env.realm,
            &inv.remote_id,
            inv.amount_due,
            sb.now().date_naive(),
        )
        .unwrap();
    }
    let (changed, _) = pass(&c, cursor).await;
    let got: BTreeSet<&str> = changed.iter().map(|i| i.remote_id.as_str()).collect();
    let want: BTreeSet<&str> = open.iter().map(|i| i.remote_id.as_str()).collect();
    assert_eq!(got, want);
    assert!(changed.iter().all(|i| i.status == InvoiceStatus::Paid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_right_after_a_refresh_loses_no_access() {
    let env = sandbox(opts(5)).await;
    let c = connector(&env);
    pass(&c, SyncCursor::initial()).await;
    let at_bootstrap = api_requests(&env.running.sandbox);
    assert_eq!(
        env.store.events.lock().unwrap().as_slice(),
        ["save after 0 api requests"]
    );

    // Refresh ahead of expiry, and die inside the save, after the tokens hit the store.
    env.clock.advance(chrono::Duration::minutes(58));
    env.running.sandbox.set_now(env.clock.now());
    *env.store.crash_after_save.lock().unwrap() = true;
    let c2 = c.clone();
    let crashed = tokio::spawn(async move { c2.sync_page(&SyncCursor::initial()).await }).await;
    assert!(crashed.is_err(), "the simulated crash happened");
    *env.store.crash_after_save.lock().unwrap() = false;
    assert_eq!(
        api_requests(&env.running.sandbox),
        at_bootstrap,
        "the new access token was never used before the save"
    );
    drop(c);

    // A new process from the same store carries on with the rotated tokens.
    let mut s = settings(&env, &env.realm, "acme-qbo");
    s.initial_refresh_token = Some(overdued_connector::Secret::new("stale-config-token"));
    let reborn = QuickBooksConnector::new(s, env.store.clone(), env.clock.clone()).unwrap();
    let (all, _) = pass(&reborn, SyncCursor::initial()).await;
    assert_eq!(all.len(), 5);
    assert_eq!(
        reborn.runtime().stats().refreshes,
        0,
        "the stored access token was still good"
    );
    let events = env.store.events.lock().unwrap().clone();
    assert_eq!(events.len(), 2, "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_invoices_without_a_single_rate_limit_violation() {
    const SCALE: u32 = 60;
    let env = sandbox(SandboxOptions {
        time_scale: SCALE as f64,
        enforce_limits: true,
        ..opts(10_000)
    })
    .await;
    let c = connector_for(&env, &env.realm.clone(), "big", |s| {
        s.runtime.limits = overdued_quickbooks::limits::LIMITS.accelerated(SCALE)
    });
    let (all, _) = pass(&c, SyncCursor::initial()).await;
    assert_eq!(all.len(), 10_000);

    // Then far more reads than a (scaled) minute allows, as fast as they can go.
    let mut set = tokio::task::JoinSet::new();
    for inv in all.iter().take(1600) {
        let c = c.clone();
        let id = inv.remote_id.clone();
        set.spawn(async move { c.fetch_invoices(&[id]).await.map(|v| v.len()) });
    }
    while let Some(r) = set.join_next().await {
        assert_eq!(r.unwrap().unwrap(), 1);
    }
    let s = c.runtime().stats();
    assert_eq!(s.status(429), 0, "{s:?}");
    assert!(
        s.limiter_waits > 0,
        "the limiter had to hold requests back: {s:?}"
    );
    assert_eq!(env.running.sandbox.ledger().rate_limit_violations, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_flow_end_to_end() {
    let env = sandbox(opts(3)).await;
    let s = settings(&env, &env.realm, "fresh");
    let flow = QuickBooksConnector::connect_flow(&s).unwrap();
    let pending = flow.start(0).await.unwrap();
    let url = url::Url::parse(pending.authorize_url()).unwrap();
    let q: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(
        q.get("code_challenge_method").map(String::as_str),
        Some("S256")
    );
    assert_eq!(
        q.get("scope").map(String::as_str),
        Some("com.intuit.quickbooks.accounting")
    );
    assert!(q.contains_key("state"));

    // The "browser": the sandbox redirects straight back to the loopback listener.
    let browser = tokio::spawn({
        let u = pending.authorize_url().to_string();
        async move { reqwest::get(u).await.map(|r| r.status().as_u16()) }
    });
    let store: Arc<dyn TokenStore> = env.store.clone();
    let connected = pending
        .finish_and_store("fresh", store, Duration::from_secs(10), env.clock.as_ref())
        .await
        .unwrap();
    assert_eq!(browser.await.unwrap().unwrap(), 200);
    assert_eq!(connected.params.get("realmId"), Some(&env.realm));
    assert_eq!(
        connected.tokens.bound_to.as_deref(),
        Some(env.realm.as_str())
    );

    let c = QuickBooksConnector::new(s, env.store.clone(), env.clock.clone()).unwrap();
    let (all, _) = pass(&c, SyncCursor::initial()).await;
    assert_eq!(all.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_flow_rejects_a_forged_state() {
    let env = sandbox(opts(1)).await;
    let s = settings(&env, &env.realm, "forged");
    let pending = ConnectFlow::new(s.oauth_client())
        .unwrap()
        .start(0)
        .await
        .unwrap();
    let cb = format!(
        "{}?code=abc&state=not-the-state&realmId={}",
        pending.redirect_uri(),
        env.realm
    );
    let browser = tokio::spawn(async move { reqwest::get(cb).await.map(|r| r.status().as_u16()) });
    let r = pending
        .finish(Duration::from_secs(10), env.clock.as_ref())
        .await;
    assert!(matches!(r, Err(ConnectError::StateMismatch)), "{r:?}");
    browser.await.unwrap().unwrap();
    assert!(env.store.load_tokens("forged").unwrap().is_none());
}

/// The sandbox's clock stands still between moves, so every write in between carries one
/// `LastUpdatedTime`, as a burst of changes within a second does on QuickBooks. Rows
/// sharing a timestamp come back in QuickBooks' own order (here: creation order), so a
/// change made after a pass ended can sort before the rows that pass already read at
/// that instant. Resuming by offset (`>= T STARTPOSITION read+1`) skipped it until the
/// next full sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_sharing_one_timestamp_are_never_skipped_nor_repeated() {
    let env = sandbox(opts(40)).await;
    let c = connector(&env);
    let (all, cursor) = pass(&c, SyncCursor::initial()).await;
    let mut open: Vec<&InvoiceSnapshot> = all
        .iter()
        .filter(|i| i.status == InvoiceStatus::Open)
        .collect();
    open.sort_by_key(|i| i.remote_id.parse::<u64>().expect("numeric QuickBooks id"));
    assert!(
        open.len() >= 3,
        "need three open invoices, have {}",
        open.len()
    );
    let (first, second, last) = (open[0], open[1], open[open.len() - 1]);

    let sb = &env.running.sandbox;
    sb.set_now(sb.now() + chrono::Duration::minutes(5));
    let stamp = sb.now();
    let pay_part = |inv: &InvoiceSnapshot| {
        // A third, so three part payments never settle the invoice.
        let part = (inv.amount_due / rust_decimal::Decimal::from(3)).round_dp(2);
        sb.add_payment(
            System::QuickBooks,
            &env.realm,
            &inv.remote_id,
            part,
            stamp.date_naive(),
        )
        .unwrap();
    };
    let ids = |v: &[InvoiceSnapshot]| -> BTreeSet<String> {
        v.iter().map(|i| i.remote_id.clone()).collect()
    };

    // The newest invoice changes first and is read.
    pay_part(last);
    let (got, cursor) = pass(&c, cursor).await;
    assert_eq!(ids(&got), BTreeSet::from([last.remote_id.clone()]));

    // In the same second two older invoices change: they sort before the one read.
    pay_part(first);
    pay_part(second);
    assert_eq!(sb.now(), stamp, "the sandbox clock stood still");
    let (got, cursor) = pass(&c, cursor).await;
    assert_eq!(
        ids(&got),
        BTreeSet::from([first.remote_id.clone(), second.remote_id.clone()]),
        "every change at the shared timestamp is read once, none skipped"
    );

    // A second change to a row already read, still in the same second, is read again.
    pay_part(first);
    let (got, cursor) = pass(&c, cursor).await;
    assert_eq!(ids(&got), BTreeSet::from([first.remote_id.clone()]));

    // Nothing changed since: nothing comes back.
    let (got, _) = pass(&c, cursor).await;
    assert!(got.is_empty(), "rows repeated: {:?}", ids(&got));
}
