//! End-to-end tests of the Xero connector against the in-process simulator, for what
//! only Xero does; what every connector does is in `contract.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use overdued_connector::runtime::{ConnectFlow, LimitSpec, RetryPolicy};
use overdued_connector::{
    ActionKind, ConnectionId, Connector, ConnectorError, FeePosting, IdempotencyKey,
    InvoiceSnapshot, InvoiceStatus, LateFeeRequest, ManualClock, Money, NoteRequest,
    ReminderRequest, Secret, SyncCursor, TokenSet, TokenStore, TokenStoreError,
};
use overdued_sandbox::{
    FaultConfig, FaultKind, NewInvoice, RunningSandbox, Sandbox, SandboxOptions, System,
};
use overdued_xero::{bind_tenant, XeroConnector, XeroError, XeroSettings};
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
    /// (tenant id, name) of every Xero organisation.
    tenants: Vec<(String, String)>,
    store: Arc<MemStore>,
    clock: Arc<ManualClock>,
}

impl Env {
    fn sb(&self) -> &Sandbox {
        &self.running.sandbox
    }
    fn tenant(&self) -> &str {
        &self.tenants[0].0
    }
}

fn opts(invoices: usize) -> SandboxOptions {
    SandboxOptions {
        invoices,
        customers: 20,
        quickbooks_tenants: 0,
        xero_tenants: 1,
        ..SandboxOptions::default()
    }
}

async fn sandbox(opts: SandboxOptions) -> Env {
    // `RUST_LOG=overdued_xero=debug cargo test` shows what the connector did.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let running = Sandbox::start(opts, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("sandbox starts");
    let tenants = running
        .sandbox
        .tenants()
        .into_iter()
        .filter(|t| t.system == System::Xero)
        .map(|t| (t.id, t.name))
        .collect();
    let clock = Arc::new(ManualClock::new(running.sandbox.now()));
    Env {
        running,
        tenants,
        store: Arc::new(MemStore::default()),
        clock,
    }
}

fn settings(env: &Env, tenant: &str, name: &str) -> XeroSettings {
    let (id, secret) = env.sb().client_credentials(System::Xero);
    let mut s = XeroSettings::new(ConnectionId::new(name), id, Secret::new(secret), tenant)
        .with_base_url(&env.running.url());
    s.retry = RetryPolicy {
        max_attempts: 8,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(500),
        max_retry_after: Duration::from_secs(5),
    };
    s.request_timeout = Duration::from_secs(10);
    s
}

/// A connector bootstrapped from a fresh single-tenant grant's refresh token.
fn connector_for(
    env: &Env,
    tenant: &str,
    name: &str,
    tweak: impl FnOnce(&mut XeroSettings),
) -> XeroConnector {
    let grant = env.sb().grant(System::Xero, tenant).expect("grant");
    let mut s = settings(env, tenant, name);
    s.initial_refresh_token = Some(Secret::new(grant.refresh_token));
    tweak(&mut s);
    XeroConnector::new(s, env.store.clone(), env.clock.clone()).expect("connector")
}

fn connector(env: &Env) -> XeroConnector {
    connector_for(env, env.tenant(), "acme-uk", |_| {})
}

fn endpoint_requests(sb: &Sandbox, name: &str) -> u64 {
    sb.stats()["requests"][name].as_u64().unwrap_or(0)
}

async fn pass(c: &XeroConnector, mut cursor: SyncCursor) -> (Vec<InvoiceSnapshot>, SyncCursor) {
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

fn ids(v: &[InvoiceSnapshot]) -> BTreeSet<String> {
    v.iter().map(|i| i.remote_id.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_sync_reads_only_what_changed() {
    let env = sandbox(opts(300)).await;
    let c = connector(&env);
    let (all, cursor) = pass(&c, SyncCursor::initial()).await;
    assert_eq!(all.len(), 300);
    let high = cursor.since.expect("the pass moved the cursor");
    assert_eq!(Some(high), all.iter().map(|i| i.updated_at).max());

    // Nothing changed: one call, and only the overlap second before the cursor comes back.
    let before = c.stats().calls;
    let (again, cursor) = pass(&c, cursor).await;
    assert_eq!(c.stats().calls - before, 1);
    let overlap_from = high - chrono::Duration::seconds(2);
    assert!(
        again.iter().all(|i| i.updated_at > overlap_from),
        "only the overlap is re-read"
    );
    assert!(again.len() < 5, "{} re-read", again.len());

    let sb = env.sb();
    sb.set_now(sb.now() + chrono::Duration::minutes(5));
    let open: Vec<&InvoiceSnapshot> = all
        .iter()
        .filter(|i| i.status == InvoiceStatus::Open)
        .take(2)
        .collect();
    for inv in &open {
        sb.add_payment(
            System::Xero,
            env.tenant(),
            &inv.remote_id,
            inv.amount_due,
            sb.now().date_naive(),
        )
        .unwrap();
    }
    let (changed, cursor) = pass(&c, cursor).await;
    let paid: BTreeSet<String> = open.iter().map(|i| i.remote_id.clone()).collect();
    let got = ids(&changed);
    assert!(paid.is_subset(&got), "payments are seen");
    assert!(
        got.difference(&paid).all(|id| ids(&again).contains(id)),
        "nothing else but the previous overlap"
    );
    assert!(changed
        .iter()
        .filter(|i| paid.contains(&i.remote_id))
        .all(|i| i.status == InvoiceStatus::Paid && i.amount_due.is_zero()));

    // The cursor moved to the payments: now only they (the overlap second) come back.
    let (last, _) = pass(&c, cursor).await;
    assert_eq!(ids(&last), paid);
}

/// The paid/open/unknown re-read is the contract's (`contract.rs`); this is Xero's
/// 50-ids-a-call batching, `If-Modified-Since` on contacts, and no tenant lookup when
/// the config names the tenant by id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_invoices_batches_ids_and_contacts_read_narrows_by_date() {
    let env = sandbox(opts(160)).await;
    let c = connector(&env);
    let (all, _) = pass(&c, SyncCursor::initial()).await;
    let sb = env.sb();
    assert_eq!(
        endpoint_requests(sb, "xero.connections"),
        0,
        "a tenant id needs no lookup"
    );

    // 160 ids: batches of at most 50.
    let before = c.stats().calls;
    let every: Vec<String> = all.iter().map(|i| i.remote_id.clone()).collect();
    let fresh = c.fetch_invoices(&every).await.unwrap();
    assert_eq!(c.stats().calls - before, 4);
    assert_eq!(ids(&fresh), ids(&all));
    assert!(fresh.iter().all(|i| i.status != InvoiceStatus::Deleted));

    let customers = c.list_customers(None).await.unwrap();
    assert_eq!(customers.len(), 20);
    assert!(customers.iter().any(|c| c.email.is_some()));
    sb.set_now(sb.now() + chrono::Duration::hours(1));
    let later = c.list_customers(Some(sb.now())).await.unwrap();
    assert!(
        later.len() < customers.len(),
        "If-Modified-Since narrows the contacts read"
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_refused_by_xero_are_permanent_with_a_clear_reason() {
    let env = sandbox(opts(60)).await;
    let c = connector(&env);
    let (all, _) = pass(&c, SyncCursor::initial()).await;
    let key =
        |id: &str, step: &str| IdempotencyKey::derive("acme-uk", id, ActionKind::Remind, step);

    let draft = all
        .iter()
        .find(|i| i.status == InvoiceStatus::Draft)
        .expect("a draft");
    let e = c
        .send_reminder(
            &ReminderRequest {
                invoice_id: draft.remote_id.clone(),
                to: None,
            },
            &key(&draft.remote_id, "a"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ConnectorError::Permanent(m) if m.contains("AUTHORISED")),
        "{e}"
    );

    let sb = env.sb();
    let today = sb.now().date_naive();
    let created = sb
        .create_invoice(NewInvoice {
            system: System::Xero,
            tenant: Some(env.tenant().to_string()),
            customer_name: "Nomail Traders".into(),
            customer_email: String::new(),
            number: None,
            currency: None,
            total: Decimal::from(100),
            issue_date: today,
            due_date: today,
            behaviour: None,
        })
        .unwrap();
    let e = c
        .send_reminder(
            &ReminderRequest {
                invoice_id: created.id.clone(),
                to: None,
            },
            &key(&created.id, "b"),
        )
        .await
        .unwrap_err();
    match &e {
        ConnectorError::Permanent(m) => assert!(
            m.contains(&created.number) && m.contains("Nomail Traders") && m.contains("no email"),
            "{m}"
        ),
        e => panic!("{e}"),
    }

    // A fee on a partly paid invoice cannot be a line on it.
    let inv = all
        .iter()
        .find(|i| i.status == InvoiceStatus::Open && i.amount_due == i.total)
        .expect("an unpaid invoice");
    sb.add_payment(
        System::Xero,
        env.tenant(),
        &inv.remote_id,
        Decimal::ONE,
        today,
    )
    .unwrap();
    let fee = fee_request(inv, today, FeePosting::LineOnOriginal);
    let e = c
        .create_late_fee(
            &fee,
            &IdempotencyKey::derive("acme-uk", &inv.remote_id, ActionKind::LateFee, "x"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ConnectorError::Permanent(m) if m.contains("payments")),
        "{e}"
    );

    // Per-item validation errors inside a 200 are permanent too.
    let bad = connector_for(&env, env.tenant(), "bad-account", |s| {
        s.fee_account_code = "999999".into()
    });
    let fee = fee_request(inv, today, FeePosting::SeparateInvoice);
    let r = bad
        .create_late_fee(
            &fee,
            &IdempotencyKey::derive("bad-account", &inv.remote_id, ActionKind::LateFee, "y"),
        )
        .await;
    if let Err(e) = &r {
        assert!(matches!(e, ConnectorError::Permanent(_)), "{e}");
    }

    let missing = "00000000-0000-4000-8000-000000000002";
    let e = c
        .add_note(
            &NoteRequest {
                invoice_id: missing.into(),
                text: "x".into(),
            },
            &key(missing, "n"),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, ConnectorError::NotFound(_)), "{e}");
}

async fn raw_refresh(env: &Env, refresh: &Secret) -> (u16, serde_json::Value) {
    let (id, secret) = env.sb().client_credentials(System::Xero);
    let r = reqwest::Client::new()
        .post(format!("{}/connect/token", env.running.url()))
        .basic_auth(id, Some(secret))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.expose()),
        ])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_refresh_response_is_retried_with_the_previous_token_within_the_grace() {
    let env = sandbox(opts(5)).await;
    let c = connector(&env);
    let (_, cursor) = pass(&c, SyncCursor::initial()).await;
    let held = env.store.load_tokens("acme-uk").unwrap().unwrap();

    // Xero rotated the token, but the answer never reached us (faults drop the connection
    // after the rotation happened).
    env.sb().set_faults(FaultConfig {
        rate: 0.5,
        kinds: vec![FaultKind::LostResponse],
        seed: 3,
        endpoints: vec!["oauth.xero.token".into()],
        ..FaultConfig::default()
    });
    let lost = || {
        env.sb().stats()["faults_injected"]["lost_response"]
            .as_u64()
            .unwrap_or(0)
    };
    // Each round expires the token on Xero's clock, so the pass has to refresh.
    for _ in 0..8 {
        env.sb()
            .set_now(env.sb().now() + chrono::Duration::minutes(31));
        pass(&c, cursor.clone()).await;
        if lost() > 0 {
            break;
        }
    }
    env.sb().set_faults(FaultConfig::default());
    assert!(
        lost() > 0,
        "a refresh answer was lost: {}",
        env.sb().stats()
    );
    assert!(c.stats().refresh_failures > 0);
    assert!(!c.needs_reconnect());

    // The same by hand, deterministically: rotate behind the connector's back...
    let now_held = env.store.load_tokens("acme-uk").unwrap().unwrap();
    assert_ne!(now_held.refresh_token, held.refresh_token);
    let (status, _) = raw_refresh(&env, &now_held.refresh_token).await;
    assert_eq!(
        status, 200,
        "rotation whose answer the connector never sees"
    );
    // ...and the connector's (now previous) token still works within 30 minutes: 29
    // minutes on, its access token is due for renewal and the refresh is accepted.
    let refreshes = c.stats().refreshes;
    let later = env.sb().now() + chrono::Duration::minutes(29);
    env.sb().set_now(later);
    env.clock.set(later);
    pass(&c, cursor).await;
    assert_eq!(c.stats().refreshes, refreshes + 1);
    assert!(!c.needs_reconnect());
    let after = env.store.load_tokens("acme-uk").unwrap().unwrap();
    assert_eq!(
        after.previous_refresh_token.as_ref(),
        Some(&now_held.refresh_token)
    );
    // Past the grace a superseded token is refused.
    env.sb()
        .set_now(env.sb().now() + chrono::Duration::minutes(31));
    let (status, body) = raw_refresh(&env, &now_held.refresh_token).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_invoices_without_a_single_rate_limit_violation() {
    const SCALE: u32 = 60;
    let env = sandbox(SandboxOptions {
        time_scale: SCALE as f64,
        enforce_limits: true,
        ..opts(5000)
    })
    .await;
    let c = connector_for(&env, env.tenant(), "big", |s| {
        s.limits = overdued_xero::limits::LIMITS.accelerated(SCALE)
    });
    let (all, _) = pass(&c, SyncCursor::initial()).await;
    assert_eq!(all.len(), 5000);
    pass(&c, SyncCursor::full()).await;

    // Then far more calls than a (scaled) minute allows: batched re-reads of everything,
    // and single ones from many tasks at once.
    let every: Vec<String> = all.iter().map(|i| i.remote_id.clone()).collect();
    assert_eq!(c.fetch_invoices(&every).await.unwrap().len(), 5000);
    let mut set = tokio::task::JoinSet::new();
    for inv in all.iter().take(150) {
        let (c, id) = (c.clone(), inv.remote_id.clone());
        set.spawn(async move { c.fetch_invoices(&[id]).await.map(|v| v.len()) });
    }
    while let Some(r) = set.join_next().await {
        assert_eq!(r.unwrap().unwrap(), 1);
    }
    let s = c.stats();
    assert_eq!(s.status(429), 0, "{s:?}");
    assert!(s.limiter_waits > 0, "the limiter held requests back: {s:?}");
    assert_eq!(env.sb().ledger().rate_limit_violations, 0);
    let left = c
        .day_budget()
        .last_reported()
        .day
        .expect("X-DayLimit-Remaining read");
    assert!(left <= 5000 - 250, "{left}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_reads_yield_to_actions_when_the_day_budget_runs_low() {
    let env = sandbox(opts(40)).await;
    let c = connector_for(&env, env.tenant(), "frugal", |s| {
        s.limits = LimitSpec {
            per_day: Some(40),
            ..overdued_xero::limits::LIMITS
        };
        s.day_reserve = 0.10;
    });
    let (all, cursor) = pass(&c, SyncCursor::initial()).await;
    for inv in all.iter().take(35) {
        c.fetch_invoices(std::slice::from_ref(&inv.remote_id))
            .await
            .unwrap();
    }
    assert_eq!(c.day_budget().left_today(), Some(4));
    let calls = c.stats().calls;
    let e = c.sync_page(&cursor).await.unwrap_err();
    assert!(
        matches!(
            e,
            ConnectorError::RateLimited {
                retry_after: Some(_),
                ..
            }
        ),
        "{e}"
    );
    assert!(matches!(
        c.list_customers(None).await,
        Err(ConnectorError::RateLimited { .. })
    ));
    assert_eq!(c.stats().calls, calls, "refused reads make no call");
    assert!(c.day_budget().is_yielding());

    // The calls that matter still go.
    let inv = all
        .iter()
        .find(|i| i.status == InvoiceStatus::Open && i.customer.email.is_some())
        .expect("an open invoice");
    c.send_reminder(
        &ReminderRequest {
            invoice_id: inv.remote_id.clone(),
            to: None,
        },
        &IdempotencyKey::derive("frugal", &inv.remote_id, ActionKind::Remind, "+7d"),
    )
    .await
    .expect("reminder goes");
    c.add_note(
        &NoteRequest {
            invoice_id: inv.remote_id.clone(),
            text: "reminded".into(),
        },
        &IdempotencyKey::derive("frugal", &inv.remote_id, ActionKind::Note, "+7d"),
    )
    .await
    .expect("note goes");
    assert_eq!(env.sb().ledger().effects.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_organisations_on_one_grant_are_routed_apart() {
    let env = sandbox(SandboxOptions {
        xero_tenants: 2,
        ..opts(15)
    })
    .await;
    let (ta, name_a) = env.tenants[0].clone();
    let (tb, _) = env.tenants[1].clone();

    // `overdued connect`: consent (the sandbox grants both organisations), then bind.
    let sa = settings(&env, &name_a, "org-a");
    let pending = ConnectFlow::new(sa.oauth_client())
        .unwrap()
        .start(0)
        .await
        .unwrap();
    let url = url::Url::parse(pending.authorize_url()).unwrap();
    let scope: String = url
        .query_pairs()
        .find(|(k, _)| k == "scope")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    assert!(scope.split(' ').any(|s| s == "offline_access"), "{scope}");
    let browser = tokio::spawn({
        let u = pending.authorize_url().to_string();
        async move { reqwest::get(u).await.map(|r| r.status().as_u16()) }
    });
    let connected = pending
        .finish(Duration::from_secs(10), env.clock.as_ref())
        .await
        .unwrap();
    assert_eq!(browser.await.unwrap().unwrap(), 200);
    let binding = bind_tenant(&sa, &connected.tokens).await.unwrap();
    assert_eq!(binding.tenant.tenant_id, ta);
    assert_eq!(binding.reachable.len(), 2);
    let mut tokens = connected.tokens.clone();
    binding.apply(&mut tokens);
    env.store.save_tokens("org-a", &tokens).unwrap();
    let sb_settings = settings(&env, &tb, "org-b");
    let mut tb_tokens = connected.tokens.clone();
    bind_tenant(&sb_settings, &tb_tokens)
        .await
        .unwrap()
        .apply(&mut tb_tokens);
    env.store.save_tokens("org-b", &tb_tokens).unwrap();

    let wrong = settings(&env, "No Such Org", "org-x");
    match bind_tenant(&wrong, &connected.tokens).await {
        Err(e @ XeroError::TenantNotFound { .. }) => {
            let m = e.to_string();
            assert!(
                m.contains("No Such Org") && m.contains(&name_a) && m.contains(&tb),
                "{m}"
            );
        }
        other => panic!("{other:?}"),
    }

    let a = XeroConnector::new(sa, env.store.clone(), env.clock.clone()).unwrap();
    let b = XeroConnector::new(sb_settings, env.store.clone(), env.clock.clone()).unwrap();
    assert_eq!(a.tenant_id().await.unwrap(), ta, "resolved by name");
    let today = env.sb().now().date_naive();
    let mut made = Vec::new();
    for t in [&ta, &tb] {
        let n = NewInvoice {
            system: System::Xero,
            tenant: Some(t.clone()),
            customer_name: "Routing Check Ltd".into(),
            customer_email: "ap@routing.example".into(),
            number: None,
            currency: None,
            total: Decimal::from(10),
            issue_date: today,
            due_date: today,
            behaviour: None,
        };
        made.push(env.sb().create_invoice(n).unwrap().id);
    }
    let (as_, _) = pass(&a, SyncCursor::initial()).await;
    let (bs, _) = pass(&b, SyncCursor::initial()).await;
    assert!(ids(&as_).contains(&made[0]) && !ids(&as_).contains(&made[1]));
    assert!(ids(&bs).contains(&made[1]) && !ids(&bs).contains(&made[0]));
    assert!(ids(&as_).is_disjoint(&ids(&bs)));

    // An action through b on a's invoice goes to b's organisation, where it does not exist.
    let e = b
        .add_note(
            &NoteRequest {
                invoice_id: made[0].clone(),
                text: "x".into(),
            },
            &IdempotencyKey::derive("org-b", &made[0], ActionKind::Note, "s"),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, ConnectorError::NotFound(_)), "{e}");
    a.add_note(
        &NoteRequest {
            invoice_id: made[0].clone(),
            text: "x".into(),
        },
        &IdempotencyKey::derive("org-a", &made[0], ActionKind::Note, "s"),
    )
    .await
    .unwrap();
    let effects = env.sb().ledger().effects;
    assert_eq!(effects.len(), 1);
    assert!(effects[0].tenant.eq_ignore_ascii_case(&ta));

    // The user disconnects organisation b in Xero: b needs a reconnect, a carries on.
    let conn_b = b
        .connections()
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.tenant_id == tb)
        .unwrap()
        .connection_id;
    let token = env
        .store
        .load_tokens("org-b")
        .unwrap()
        .unwrap()
        .access_token;
    let st = reqwest::Client::new()
        .delete(format!("{}/connections/{conn_b}", env.running.url()))
        .bearer_auth(token.expose())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(st.as_u16(), 204);
    let e = b.sync_page(&SyncCursor::initial()).await.unwrap_err();
    assert!(matches!(e, ConnectorError::Reauth(_)), "{e}");
    pass(&a, SyncCursor::initial()).await;
}

/// A policy's `[late_fee]` table always names a posting (a separate invoice unless it
/// says otherwise), and that used to win over the connection's `fee_posting`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connections_fee_posting_holds_under_a_policy_late_fee_table() {
    let env = sandbox(opts(40)).await;
    let c = connector_for(&env, env.tenant(), "acme-uk-lines", |s| {
        s.fee_posting = FeePosting::LineOnOriginal
    });
    let (all, _) = pass(&c, SyncCursor::initial()).await;
    let inv = all
        .iter()
        .find(|i| i.status == InvoiceStatus::Open && i.amount_due == i.total)
        .expect("an unpaid invoice");
    let today = env.sb().now().date_naive();
    // What the planner sends for a policy whose `[late_fee]` table leaves `posting` out.
    let fee = fee_request(inv, today, FeePosting::SeparateInvoice);
    let key = IdempotencyKey::derive("acme-uk-lines", &inv.remote_id, ActionKind::LateFee, "p");
    let receipt = c.create_late_fee(&fee, &key).await.expect("fee posted");
    assert_eq!(
        receipt.created_id, None,
        "no separate fee invoice: {receipt:?}"
    );
    let effects: Vec<_> = env
        .sb()
        .ledger()
        .effects
        .into_iter()
        .filter(|e| e.kind == "fee" && e.invoice_id == inv.remote_id)
        .collect();
    assert_eq!(effects.len(), 1, "{effects:?}");
    assert_eq!(effects[0].detail["fee_line"], serde_json::json!(true));
    assert_eq!(effects[0].detail["amount"], serde_json::json!("12.50"));
}
