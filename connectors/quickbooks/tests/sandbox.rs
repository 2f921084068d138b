//! End-to-end tests against the in-process API simulator (`overdued-sandbox`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use overdued_connector::runtime::{ConnectError, ConnectFlow, RetryPolicy};
use overdued_connector::{
    ActionKind, Clock, ConnectionId, Connector, ConnectorError, FeePosting, IdempotencyKey,
    InvoiceSnapshot, InvoiceStatus, LateFeeRequest, ManualClock, Money, NoteRequest,
    ReminderRequest, SyncCursor, TokenSet, TokenStore, TokenStoreError,
};
use overdued_quickbooks::{Environment, FeeSettings, QuickBooksConnector, QuickBooksSettings};
use overdued_sandbox::{FaultConfig, FaultKind, RunningSandbox, Sandbox, SandboxOptions, System};
use rust_decimal::Decimal;

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

fn endpoint_requests(sb: &Sandbox, name: &str) -> Option<u64> {
    sb.stats()
        .get("requests")
        .map(|r| r.get(name).and_then(|v| v.as_u64()).unwrap_or(0))
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
async fn sync_uses_the_minimum_number_of_queries() {
    for n in [0usize, 1, 1000, 1001, 2500] {
        let env = sandbox(opts(n)).await;
        let c = connector(&env);
        let before = c.runtime().stats().calls;
        let (all, _) = pass(&c, SyncCursor::initial()).await;
        let calls = c.runtime().stats().calls - before;
        let ids: BTreeSet<&str> = all.iter().map(|i| i.remote_id.as_str()).collect();
        assert_eq!(all.len(), n, "n={n}");
        assert_eq!(ids.len(), n, "no duplicates, n={n}");
        assert_eq!(calls as usize, n / 1000 + 1, "query calls for n={n}");
        if let Some(q) = endpoint_requests(&env.running.sandbox, "quickbooks.query") {
            assert_eq!(
                q as usize,
                n / 1000 + 1,
                "sandbox-counted queries for n={n}"
            );
        }
        // Full reconciliation sees exactly the open ones.
        let (open, _) = pass(&c, SyncCursor::full()).await;
        assert_eq!(
            open.len(),
            all.iter()
                .filter(|i| i.status == InvoiceStatus::Open)
                .count(),
            "n={n}"
        );
        assert!(open.iter().all(|i| i.amount_due > Decimal::ZERO));
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
async fn fetch_invoices_sees_payments_between_sync_and_action() {
    let env = sandbox(opts(50)).await;
    let c = connector(&env);
    let (all, _) = pass(&c, SyncCursor::initial()).await;
    let open: Vec<&InvoiceSnapshot> = all
        .iter()
        .filter(|i| i.status == InvoiceStatus::Open)
        .take(2)
        .collect();
    let (paid, still) = (open[0], open[1]);
    let sb = &env.running.sandbox;
    sb.add_payment(
        System::QuickBooks,
        &env.realm,
        &paid.remote_id,
        paid.amount_due,
        sb.now().date_naive(),
    )
    .unwrap();

    let before = c.runtime().stats().calls;
    let ids = vec![
        paid.remote_id.clone(),
        still.remote_id.clone(),
        "987654".to_string(),
    ];
    let fresh = c.fetch_invoices(&ids).await.unwrap();
    assert_eq!(
        c.runtime().stats().calls - before,
        1,
        "one query for all ids"
    );
    assert_eq!(fresh.len(), 3);
    assert_eq!(fresh[0].status, InvoiceStatus::Paid);
    assert_eq!(fresh[0].amount_due, Decimal::ZERO);
    assert_eq!(fresh[1].status, InvoiceStatus::Open);
    assert_eq!(fresh[1].amount_due, still.amount_due);
    assert_eq!(fresh[2].status, InvoiceStatus::Deleted);
    assert_eq!(fresh[2].remote_id, "987654");

    let customers = c.list_customers(None).await.unwrap();
    assert_eq!(customers.len(), 20);
    assert!(customers.iter().any(|c| c.email.is_some()));
}

fn fee_request(
    inv: &InvoiceSnapshot,
    today: chrono::NaiveDate,
    posting: FeePosting,
) -> LateFeeRequest {
    LateFeeRequest {
        invoice_id: inv.remote_id.clone(),
        invoice_number: inv.display_number().to_string(),
        customer_id: inv.customer.id.clone(),
        amount: Money::new(Decimal::from_str("12.50").unwrap(), inv.currency),
        description: format!("Late payment fee on invoice {}", inv.display_number()),
        posting,
        issue_date: today,
        due_date: today + chrono::Duration::days(14),
    }
}

/// Retries an action as the executor would after an error, with the same key.
async fn with_executor_retries<F, Fut>(
    mut f: F,
) -> Result<overdued_connector::ActionReceipt, ConnectorError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<overdued_connector::ActionReceipt, ConnectorError>>,
{
    let mut last = None;
    for _ in 0..4 {
        match f().await {
            Ok(r) => return Ok(r),
            Err(e) if e.is_retryable() => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.expect("an error"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_kind_is_survived_without_duplicate_effects() {
    let env = sandbox(opts(120)).await;
    let c = connector_for(&env, &env.realm.clone(), "acme-qbo", |s| {
        s.runtime.request_timeout = Duration::from_secs(2)
    });
    let (all, _) = pass(&c, SyncCursor::initial()).await;
    let open: Vec<InvoiceSnapshot> = all
        .iter()
        .filter(|i| i.status == InvoiceStatus::Open)
        .take(12)
        .cloned()
        .collect();
    assert!(open.len() >= 8, "enough open invoices to act on");
    let today = env.running.sandbox.now().date_naive();

    env.running.sandbox.set_faults(FaultConfig {
        rate: 0.35,
        kinds: FaultKind::ALL.to_vec(),
        seed: 7,
        endpoints: vec!["quickbooks.".into()],
        slow_ms: 3000,
        storm_length: 2,
    });
    let mut keys = Vec::new();
    for (k, inv) in open.iter().enumerate() {
        let conn = "acme-qbo";
        let remind = IdempotencyKey::derive(conn, &inv.remote_id, ActionKind::Remind, "+7d");
        let to = inv
            .customer
            .email
            .clone()
            .or_else(|| Some("ap@example.com".into()));
        let req = ReminderRequest {
            invoice_id: inv.remote_id.clone(),
            to,
        };
        with_executor_retries(|| c.send_reminder(&req, &remind))
            .await
            .expect("reminder");
        // Run twice: a second run of the same action must change nothing.
        c.send_reminder(&req, &remind)
            .await
            .expect("reminder replay");
        keys.push(remind.as_str().to_string());

        let posting = if k % 3 == 0 {
            FeePosting::LineOnOriginal
        } else {
            FeePosting::SeparateInvoice
        };
        let fee_key = IdempotencyKey::derive(conn, &inv.remote_id, ActionKind::LateFee, "+30d");
        let fee = fee_request(inv, today, posting);
        with_executor_retries(|| c.create_late_fee(&fee, &fee_key))
            .await
            .expect("fee");
        with_executor_retries(|| c.create_late_fee(&fee, &fee_key))
            .await
            .expect("fee replay");
        keys.push(fee_key.as_str().to_string());

        let note_key = IdempotencyKey::derive(conn, &inv.remote_id, ActionKind::Note, "+7d");
        let note = NoteRequest {
            invoice_id: inv.remote_id.clone(),
            text: format!("overdued: reminder sent ({})", remind),
        };
        with_executor_retries(|| c.add_note(&note, &note_key))
            .await
            .expect("note");
        with_executor_retries(|| c.add_note(&note, &note_key))
            .await
            .expect("note replay");
    }
    let faults = env.running.sandbox.stats();
    env.running.sandbox.set_faults(FaultConfig::default());

    let ledger = env.running.sandbox.ledger();
    let mut per: BTreeMap<(String, String), usize> = BTreeMap::new();
    for e in &ledger.effects {
        *per.entry((e.invoice_id.clone(), e.kind.clone()))
            .or_default() += 1;
    }
    for inv in &open {
        for kind in ["email", "fee", "note"] {
            assert_eq!(
                per.get(&(inv.remote_id.clone(), kind.to_string())),
                Some(&1),
                "{kind} on {} (faults: {faults})",
                inv.remote_id
            );
        }
    }
    let stats = c.runtime().stats();
    assert!(
        stats.retries > 0,
        "faults were injected and retried: {stats:?}"
    );

    // The notes kept what was there and the fees landed where asked.
    let fresh = c
        .fetch_invoices(&open.iter().map(|i| i.remote_id.clone()).collect::<Vec<_>>())
        .await
        .unwrap();
    for (k, (before, after)) in open.iter().zip(&fresh).enumerate() {
        assert!(
            after.memo.contains("overdued: reminder sent"),
            "{}",
            after.memo
        );
        if k % 3 == 0 {
            assert_eq!(
                after.total,
                before.total + Decimal::from_str("12.50").unwrap(),
                "fee line on {}",
                before.remote_id
            );
        } else {
            assert_eq!(after.total, before.total);
        }
    }
    let (fees, _) = pass(&c, SyncCursor::initial()).await;
    let fee_invoices = fees.iter().filter(|i| i.is_fee_invoice).count();
    assert_eq!(
        fee_invoices,
        open.iter().enumerate().filter(|(k, _)| k % 3 != 0).count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_access_tokens_are_refreshed_and_rotated() {
    let env = sandbox(opts(10)).await;
    let c = connector(&env);
    let (all, cursor) = pass(&c, SyncCursor::initial()).await;
    assert_eq!(all.len(), 10);
    let first = env
        .store
        .load_tokens("acme-qbo")
        .unwrap()
        .expect("bootstrapped tokens stored");

    // The vendor's clock moves past expiry while ours does not: a 401, one refresh, a retry.
    // A day on, so the refresh token (Intuit keeps its value for 24 hours) rotates too.
    let sb = &env.running.sandbox;
    sb.set_now(sb.now() + chrono::Duration::hours(25));
    pass(&c, cursor.clone()).await;
    let s = c.runtime().stats();
    assert_eq!(s.status(401), 1);
    let second = env.store.load_tokens("acme-qbo").unwrap().unwrap();
    assert_ne!(
        second.refresh_token, first.refresh_token,
        "rotated refresh token stored"
    );
    assert_ne!(second.access_token, first.access_token);

    // Our clock nearing expiry refreshes ahead, with no 401.
    env.clock.set(sb.now() + chrono::Duration::minutes(58));
    sb.set_now(sb.now() + chrono::Duration::minutes(58));
    pass(&c, cursor).await;
    let s2 = c.runtime().stats();
    assert_eq!(s2.status(401), 1, "no further 401");
    assert_eq!(s2.refreshes, s.refreshes + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_grant_needs_reconnect_and_other_connections_keep_running() {
    let env = sandbox(SandboxOptions {
        quickbooks_tenants: 2,
        ..opts(20)
    })
    .await;
    let realms: Vec<String> = env
        .running
        .sandbox
        .tenants()
        .into_iter()
        .filter(|t| t.system == System::QuickBooks)
        .map(|t| t.id)
        .collect();
    let a = connector_for(&env, &realms[0], "a", |_| {});
    let b = connector_for(&env, &realms[1], "b", |_| {});
    pass(&a, SyncCursor::initial()).await;
    pass(&b, SyncCursor::initial()).await;

    env.running.sandbox.revoke(System::QuickBooks, &realms[0]);
    let e = a.sync_page(&SyncCursor::initial()).await.unwrap_err();
    assert!(matches!(e, ConnectorError::Reauth(_)), "{e}");
    assert!(a.runtime().needs_reconnect());
    assert!(
        env.store.load_tokens("a").unwrap().unwrap().needs_reconnect,
        "flag persisted"
    );
    let calls = a.runtime().stats().calls;
    for _ in 0..3 {
        assert!(matches!(
            a.sync_page(&SyncCursor::initial()).await,
            Err(ConnectorError::Reauth(_))
        ));
    }
    assert_eq!(
        a.runtime().stats().calls,
        calls,
        "no API calls while it needs reconnect"
    );

    let (bs, _) = pass(&b, SyncCursor::initial()).await;
    assert_eq!(bs.len(), 20);
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
