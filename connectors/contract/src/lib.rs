//! One contract, run by every connector against the sandbox (object_store's
//! `src/integration.rs` is the model): sync paging, re-reads, the three actions under
//! every fault class without a duplicate effect, token expiry and revoked grants.
//!
//! A connector's test file describes its vendor in a [`Vendor`] and invokes
//! [`contract_tests!`]; what only one vendor does stays in that crate's own tests.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use overdued_connector::runtime::StatsSnapshot;
use overdued_connector::{
    ActionKind, ActionReceipt, Connector, ConnectorError, FeePosting, IdempotencyKey,
    InvoiceSnapshot, InvoiceStatus, LateFeeRequest, ManualClock, Money, NoteRequest,
    ReminderRequest, SyncCursor, TokenSet, TokenStore, TokenStoreError,
};
use overdued_sandbox::{FaultConfig, FaultKind, RunningSandbox, Sandbox, SandboxOptions, System};
use rust_decimal::Decimal;

/// A token store in memory.
#[derive(Default)]
pub struct MemStore {
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

/// A running sandbox and what a connector under test is built with.
pub struct Env {
    pub running: RunningSandbox,
    /// Ids of the vendor's tenants (QuickBooks realms, Xero organisations).
    pub tenants: Vec<String>,
    pub store: Arc<MemStore>,
    pub clock: Arc<ManualClock>,
}

impl Env {
    pub fn sb(&self) -> &Sandbox {
        &self.running.sandbox
    }
}

/// How the actions are exercised under faults; the figures are each vendor's own so
/// the sandbox's seeded fault sequence stays what the vendor's tests were tuned on.
#[derive(Debug, Clone)]
pub struct FaultPlan {
    pub invoices: usize,
    pub request_timeout: Duration,
    pub seed: u64,
    pub slow_ms: u64,
    /// The first replay of a reminder goes straight to the connector, with no executor
    /// retry around it.
    pub replay_reminder_directly: bool,
    /// Every fault class must have been injected at least once.
    pub every_kind_injected: bool,
}

/// How access tokens expire at the vendor.
#[derive(Debug, Clone)]
pub struct TokenPlan {
    /// How far the vendor's clock jumps so the access token (and, for QuickBooks, the
    /// refresh token's value) is past its life.
    pub expire_after: chrono::Duration,
    /// How far both clocks move so the connector refreshes ahead of expiry.
    pub refresh_ahead_after: chrono::Duration,
    /// The stored tokens name the refresh token they replaced.
    pub keeps_previous_refresh: bool,
}

/// What the contract needs to know about one vendor.
pub struct Vendor<C> {
    pub system: System,
    /// The connection name the single-connection tests use.
    pub connection: &'static str,
    /// The sandbox's name for the sync read (`quickbooks.query`, `xero.invoices.list`).
    pub sync_endpoint: &'static str,
    /// Calls a whole pass over `n` invoices takes.
    pub sync_calls: fn(usize) -> usize,
    /// An invoice id the vendor does not know, in the vendor's id format.
    pub unknown_id: &'static str,
    /// Invoices the re-read test creates.
    pub reread_invoices: usize,
    /// Builds a connector for `tenant` named `name`, bootstrapped from a fresh grant.
    pub build: fn(&Env, &str, &str, Option<Duration>) -> C,
    /// Which open invoices the fault test acts on.
    pub actionable: fn(&InvoiceSnapshot) -> bool,
    /// Where the reminder goes, `None` for the invoice's own contact.
    pub reminder_to: fn(&InvoiceSnapshot) -> Option<String>,
    /// Notes land in the invoice memo the connector reads back.
    pub notes_in_memo: bool,
    /// A fee on its own invoice names that invoice in its receipt.
    pub fee_receipt_names_invoice: bool,
    pub faults: FaultPlan,
    pub tokens: TokenPlan,
}

impl<C: Connector> Vendor<C> {
    fn opts(&self, invoices: usize, tenants: usize) -> SandboxOptions {
        let (q, x) = match self.system {
            System::QuickBooks => (tenants, 0),
            System::Xero => (0, tenants),
        };
        SandboxOptions {
            invoices,
            customers: 20,
            quickbooks_tenants: q,
            xero_tenants: x,
            ..SandboxOptions::default()
        }
    }

    pub async fn env(&self, invoices: usize, tenants: usize) -> Env {
        // `RUST_LOG=overdued_xero=debug cargo test` shows what the connector did.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let running = Sandbox::start(
            self.opts(invoices, tenants),
            SocketAddr::from(([127, 0, 0, 1], 0)),
        )
        .await
        .expect("sandbox starts");
        let tenants = running
            .sandbox
            .tenants()
            .into_iter()
            .filter(|t| t.system == self.system)
            .map(|t| t.id)
            .collect();
        let clock = Arc::new(ManualClock::new(running.sandbox.now()));
        Env {
            running,
            tenants,
            store: Arc::new(MemStore::default()),
            clock,
        }
    }

    fn connector(&self, env: &Env) -> C {
        (self.build)(env, &env.tenants[0], self.connection, None)
    }
}

/// The runtime's counters, through the trait so both connectors answer alike.
pub fn stats<C: Connector>(c: &C) -> StatsSnapshot {
    Connector::runtime(c)
        .expect("a connector on the shared runtime")
        .stats()
}

fn needs_reconnect<C: Connector>(c: &C) -> bool {
    Connector::runtime(c)
        .expect("a connector on the shared runtime")
        .needs_reconnect()
}

/// Runs one whole pass; returns the invoices and the cursor that ends it.
pub async fn pass<C: Connector>(
    c: &C,
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

pub fn ids(v: &[InvoiceSnapshot]) -> BTreeSet<String> {
    v.iter().map(|i| i.remote_id.clone()).collect()
}

pub fn endpoint_requests(sb: &Sandbox, name: &str) -> u64 {
    sb.stats()["requests"][name].as_u64().unwrap_or(0)
}

/// Sync pages through every invoice once, in the fewest calls, and a full pass lists
/// exactly the open ones.
pub async fn sync_paging<C: Connector>(v: &Vendor<C>) {
    for n in [0usize, 1, 1000, 1001, 2500] {
        let env = v.env(n, 1).await;
        let c = v.connector(&env);
        let before = stats(&c).calls;
        let (all, _) = pass(&c, SyncCursor::initial()).await;
        let calls = (stats(&c).calls - before) as usize;
        let want_calls = (v.sync_calls)(n);
        assert_eq!(all.len(), n, "n={n}");
        assert_eq!(ids(&all).len(), n, "no duplicates, n={n}");
        assert_eq!(calls, want_calls, "calls for n={n}");
        assert_eq!(
            endpoint_requests(env.sb(), v.sync_endpoint) as usize,
            want_calls,
            "sandbox-counted calls for n={n}"
        );

        let (open, _) = pass(&c, SyncCursor::full()).await;
        let want: BTreeSet<String> = all
            .iter()
            .filter(|i| i.status == InvoiceStatus::Open)
            .map(|i| i.remote_id.clone())
            .collect();
        assert_eq!(
            ids(&open),
            want,
            "full pass lists exactly the open invoices, n={n}"
        );
        assert!(open
            .iter()
            .all(|i| i.amount_due > Decimal::ZERO && i.status == InvoiceStatus::Open));
    }
}

/// A re-read just before acting sees a payment made since the sync, in one call, and
/// an id the vendor does not know comes back deleted; customers are listed.
pub async fn reread<C: Connector>(v: &Vendor<C>) {
    let env = v.env(v.reread_invoices, 1).await;
    let c = v.connector(&env);
    let (all, _) = pass(&c, SyncCursor::initial()).await;
    let open: Vec<&InvoiceSnapshot> = all
        .iter()
        .filter(|i| i.status == InvoiceStatus::Open)
        .take(2)
        .collect();
    let (paid, still) = (open[0], open[1]);
    let sb = env.sb();
    sb.add_payment(
        v.system,
        &env.tenants[0],
        &paid.remote_id,
        paid.amount_due,
        sb.now().date_naive(),
    )
    .unwrap();

    let before = stats(&c).calls;
    let fresh = c
        .fetch_invoices(&[
            paid.remote_id.clone(),
            still.remote_id.clone(),
            v.unknown_id.to_string(),
        ])
        .await
        .unwrap();
    assert_eq!(stats(&c).calls - before, 1, "one call for all ids");
    assert_eq!(fresh.len(), 3);
    assert_eq!(
        (fresh[0].status, fresh[0].amount_due),
        (InvoiceStatus::Paid, Decimal::ZERO)
    );
    assert_eq!(
        (fresh[1].status, fresh[1].amount_due),
        (InvoiceStatus::Open, still.amount_due)
    );
    assert_eq!(
        (fresh[2].status, fresh[2].remote_id.as_str()),
        (InvoiceStatus::Deleted, v.unknown_id)
    );

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
pub async fn with_executor_retries<F, Fut>(mut f: F) -> Result<ActionReceipt, ConnectorError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<ActionReceipt, ConnectorError>>,
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

/// Reminder, fee (both postings) and note, each run twice under every fault class,
/// leave exactly one effect each at the vendor, and the fees land where asked.
pub async fn actions_under_faults<C: Connector>(v: &Vendor<C>) {
    let plan = &v.faults;
    let env = v.env(plan.invoices, 1).await;
    let conn = v.connection;
    let c = (v.build)(&env, &env.tenants[0], conn, Some(plan.request_timeout));
    let (all, _) = pass(&c, SyncCursor::initial()).await;
    let open: Vec<InvoiceSnapshot> = all
        .iter()
        .filter(|i| i.status == InvoiceStatus::Open && (v.actionable)(i))
        .take(12)
        .cloned()
        .collect();
    assert!(
        open.len() >= 8,
        "enough open invoices to act on: {}",
        open.len()
    );
    let today = env.sb().now().date_naive();
    let prefix = format!("{}.", v.system.as_str());

    env.sb().set_faults(FaultConfig {
        rate: 0.35,
        kinds: FaultKind::ALL.to_vec(),
        seed: plan.seed,
        endpoints: vec![prefix],
        slow_ms: plan.slow_ms,
        storm_length: 2,
    });
    for (k, inv) in open.iter().enumerate() {
        let remind = IdempotencyKey::derive(conn, &inv.remote_id, ActionKind::Remind, "+7d");
        let req = ReminderRequest {
            invoice_id: inv.remote_id.clone(),
            to: (v.reminder_to)(inv),
        };
        with_executor_retries(|| c.send_reminder(&req, &remind))
            .await
            .expect("reminder");
        // Run twice: a second run of the same action must change nothing.
        if plan.replay_reminder_directly {
            c.send_reminder(&req, &remind)
                .await
                .expect("reminder replay");
        } else {
            with_executor_retries(|| c.send_reminder(&req, &remind))
                .await
                .expect("reminder replay");
        }

        let posting = if k % 3 == 0 {
            FeePosting::LineOnOriginal
        } else {
            FeePosting::SeparateInvoice
        };
        let fee_key = IdempotencyKey::derive(conn, &inv.remote_id, ActionKind::LateFee, "+30d");
        let fee = fee_request(inv, today, posting);
        let r = with_executor_retries(|| c.create_late_fee(&fee, &fee_key))
            .await
            .expect("fee");
        if v.fee_receipt_names_invoice {
            assert_eq!(
                r.created_id.is_some(),
                posting == FeePosting::SeparateInvoice
            );
        }
        with_executor_retries(|| c.create_late_fee(&fee, &fee_key))
            .await
            .expect("fee replay");

        let note_key = IdempotencyKey::derive(conn, &inv.remote_id, ActionKind::Note, "+7d");
        let note = NoteRequest {
            invoice_id: inv.remote_id.clone(),
            text: format!("overdued: reminder sent ({remind})"),
        };
        with_executor_retries(|| c.add_note(&note, &note_key))
            .await
            .expect("note");
        with_executor_retries(|| c.add_note(&note, &note_key))
            .await
            .expect("note replay");
    }
    let faults = env.sb().stats()["faults_injected"].clone();
    env.sb().set_faults(FaultConfig::default());
    if plan.every_kind_injected {
        for kind in FaultKind::ALL {
            assert!(
                faults[kind.as_str()].as_u64().unwrap_or(0) > 0,
                "{} was injected: {faults}",
                kind.as_str()
            );
        }
    }

    let ledger = env.sb().ledger();
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
    let s = stats(&c);
    assert!(s.retries > 0, "faults were injected and retried: {s:?}");

    // The notes kept what was there and the fees landed where asked.
    let fresh = c
        .fetch_invoices(&open.iter().map(|i| i.remote_id.clone()).collect::<Vec<_>>())
        .await
        .unwrap();
    for (k, (before, after)) in open.iter().zip(&fresh).enumerate() {
        if v.notes_in_memo {
            assert!(
                after.memo.contains("overdued: reminder sent"),
                "{}",
                after.memo
            );
        }
        let want = if k % 3 == 0 {
            before.total + Decimal::from_str("12.50").unwrap()
        } else {
            before.total
        };
        assert_eq!(after.total, want, "fee line on {}", before.remote_id);
    }
    let (now_all, _) = pass(&c, SyncCursor::initial()).await;
    let fee_invoices: Vec<&InvoiceSnapshot> = now_all.iter().filter(|i| i.is_fee_invoice).collect();
    assert_eq!(
        fee_invoices.len(),
        open.iter().enumerate().filter(|(k, _)| k % 3 != 0).count()
    );
    assert!(
        fee_invoices
            .iter()
            .all(|f| f.status == InvoiceStatus::Open
                && f.total == Decimal::from_str("12.50").unwrap())
    );
}

/// An access token the vendor has expired costs one 401, one refresh and a retry; the
/// rotated tokens are stored; near expiry on our clock the refresh comes first.
pub async fn token_expiry<C: Connector>(v: &Vendor<C>) {
    let env = v.env(10, 1).await;
    let c = v.connector(&env);
    let (all, cursor) = pass(&c, SyncCursor::initial()).await;
    assert_eq!(all.len(), 10);
    let first = env
        .store
        .load_tokens(v.connection)
        .unwrap()
        .expect("bootstrapped tokens stored");

    // The vendor's clock moves past expiry while ours does not: a 401, one refresh, a retry.
    let sb = env.sb();
    sb.set_now(sb.now() + v.tokens.expire_after);
    pass(&c, cursor.clone()).await;
    let s = stats(&c);
    assert_eq!(s.status(401), 1);
    let second = env.store.load_tokens(v.connection).unwrap().unwrap();
    assert_ne!(
        second.refresh_token, first.refresh_token,
        "rotated refresh token stored"
    );
    assert_ne!(second.access_token, first.access_token);
    if v.tokens.keeps_previous_refresh {
        assert_eq!(
            second.previous_refresh_token.as_ref(),
            Some(&first.refresh_token)
        );
    }

    // Our clock nearing expiry refreshes ahead, with no 401.
    env.clock.set(sb.now() + v.tokens.refresh_ahead_after);
    sb.set_now(sb.now() + v.tokens.refresh_ahead_after);
    pass(&c, cursor).await;
    let s2 = stats(&c);
    assert_eq!(s2.status(401), 1, "no further 401");
    assert_eq!(s2.refreshes, s.refreshes + 1);
}

/// A revoked grant makes its connection need reconnecting, persistently and without
/// further calls, while another connection of the same vendor keeps running.
pub async fn revoked_grant<C: Connector>(v: &Vendor<C>) {
    let env = v.env(20, 2).await;
    let (ta, tb) = (env.tenants[0].clone(), env.tenants[1].clone());
    let a = (v.build)(&env, &ta, "a", None);
    let b = (v.build)(&env, &tb, "b", None);
    pass(&a, SyncCursor::initial()).await;
    pass(&b, SyncCursor::initial()).await;

    env.sb().revoke(v.system, &ta);
    let e = a.sync_page(&SyncCursor::initial()).await.unwrap_err();
    assert!(matches!(e, ConnectorError::Reauth(_)), "{e}");
    assert!(needs_reconnect(&a));
    assert!(
        env.store.load_tokens("a").unwrap().unwrap().needs_reconnect,
        "flag persisted"
    );
    let calls = stats(&a).calls;
    for _ in 0..3 {
        assert!(matches!(
            a.sync_page(&SyncCursor::initial()).await,
            Err(ConnectorError::Reauth(_))
        ));
        assert!(matches!(
            a.send_reminder(
                &ReminderRequest {
                    invoice_id: "x".into(),
                    to: None
                },
                &IdempotencyKey::derive("a", "x", ActionKind::Remind, "s")
            )
            .await,
            Err(ConnectorError::Reauth(_))
        ));
    }
    assert_eq!(
        stats(&a).calls,
        calls,
        "no API calls while it needs reconnect"
    );
    let (bs, _) = pass(&b, SyncCursor::initial()).await;
    assert_eq!(bs.len(), 20);
}

/// One `#[tokio::test]` per contract clause, for the [`Vendor`] the expression builds.
#[macro_export]
macro_rules! contract_tests {
    ($vendor:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn contract_sync_paging() {
            $crate::sync_paging(&$vendor).await
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn contract_reread() {
            $crate::reread(&$vendor).await
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn contract_actions_under_faults() {
            $crate::actions_under_faults(&$vendor).await
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn contract_token_expiry() {
            $crate::token_expiry(&$vendor).await
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn contract_revoked_grant() {
            $crate::revoked_grant(&$vendor).await
        }
    };
}
