//! The Xero connector's payment link and invoice PDF against the in-process simulator.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use overdued_connector::runtime::RetryPolicy;
use overdued_connector::{
    ConnectionId, Connector, ConnectorError, InvoiceSnapshot, InvoiceStatus, ManualClock, Money,
    Secret, SyncCursor, TokenSet, TokenStore, TokenStoreError,
};
use overdued_sandbox::{FaultConfig, FaultKind, RunningSandbox, Sandbox, SandboxOptions, System};
use overdued_xero::{XeroConnector, XeroSettings};

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
    tenant: String,
}

impl Env {
    fn sb(&self) -> &Sandbox {
        &self.running.sandbox
    }
}

async fn sandbox() -> Env {
    let running = Sandbox::start(
        SandboxOptions {
            invoices: 80,
            customers: 10,
            quickbooks_tenants: 0,
            xero_tenants: 1,
            ..SandboxOptions::default()
        },
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .expect("sandbox starts");
    let tenant = running
        .sandbox
        .tenants()
        .into_iter()
        .find(|t| t.system == System::Xero)
        .expect("an organisation")
        .id;
    Env { running, tenant }
}

fn connector(env: &Env, max_attempts: u32) -> XeroConnector {
    let (id, secret) = env.sb().client_credentials(System::Xero);
    let grant = env.sb().grant(System::Xero, &env.tenant).expect("grant");
    let mut s = XeroSettings::new(
        ConnectionId::new("acme-uk"),
        id,
        Secret::new(secret),
        &env.tenant,
    )
    .with_base_url(&env.running.url());
    s.retry = RetryPolicy {
        max_attempts,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(100),
        max_retry_after: Duration::from_secs(2),
    };
    s.request_timeout = Duration::from_secs(5);
    s.initial_refresh_token = Some(Secret::new(grant.refresh_token));
    let clock = Arc::new(ManualClock::new(env.sb().now()));
    XeroConnector::new(s, Arc::new(MemStore::default()), clock).expect("connector")
}

async fn open_invoices(c: &XeroConnector) -> Vec<InvoiceSnapshot> {
    let mut cursor = SyncCursor::full();
    let mut all = Vec::new();
    loop {
        let page = c.sync_page(&cursor).await.expect("sync");
        all.extend(page.invoices);
        cursor = page.next;
        if !page.more {
            break;
        }
    }
    all.retain(|i| i.status == InvoiceStatus::Open);
    assert!(all.len() >= 5, "enough open invoices");
    all
}

fn requests(sb: &Sandbox, name: &str) -> u64 {
    sb.stats()["requests"][name].as_u64().unwrap_or(0)
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_payment_link_is_there_only_when_the_organisation_takes_online_payments() {
    let env = sandbox().await;
    let c = connector(&env, 4);
    let open = open_invoices(&c).await;
    env.sb()
        .set_online_payments(System::Xero, &env.tenant, true)
        .expect("switch");
    let a = c
        .online_payment_link(&open[0].remote_id)
        .await
        .expect("link")
        .expect("present");
    let b = c
        .online_payment_link(&open[1].remote_id)
        .await
        .expect("link")
        .expect("present");
    assert!(a.starts_with("https://in.xero.com/"), "{a}");
    assert_ne!(a, b, "each invoice has its own page");
    env.sb()
        .set_online_payments(System::Xero, &env.tenant, false)
        .expect("switch");
    assert_eq!(
        c.online_payment_link(&open[0].remote_id)
            .await
            .expect("read"),
        None
    );
    assert_eq!(requests(env.sb(), "xero.invoices.onlineinvoice"), 3);
    // An id Xero does not know is NotFound, not "no link".
    let missing = c
        .online_payment_link("00000000-0000-0000-0000-000000000001")
        .await;
    assert!(
        matches!(missing, Err(ConnectorError::NotFound(_))),
        "{missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pdf_is_the_invoice_as_xero_renders_it() {
    let env = sandbox().await;
    let c = connector(&env, 4);
    let inv = &open_invoices(&c).await[0];
    let calls = c.stats().calls;
    let pdf = c.invoice_pdf(&inv.remote_id).await.expect("pdf");
    assert_eq!(c.stats().calls, calls + 1, "one call");
    assert!(pdf.starts_with(b"%PDF"));
    assert!(overdued_connector::document::check_pdf(&pdf).is_ok());
    let number = inv.number.as_deref().expect("number");
    assert!(contains(&pdf, &format!("Invoice {number}")));
    let due = Money::new(inv.amount_due, inv.currency).display_human();
    assert!(contains(&pdf, &format!("Amount due: {due}")), "{due}");
    assert_eq!(requests(env.sb(), "xero.invoices.pdf"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_on_the_pdf_call_are_retried_and_classified() {
    let env = sandbox().await;
    let c = connector(&env, 8);
    let open = open_invoices(&c).await;
    env.sb().set_faults(FaultConfig {
        rate: 0.5,
        kinds: vec![
            FaultKind::ServerError,
            FaultKind::Truncated,
            FaultKind::Malformed,
            FaultKind::Reset,
        ],
        seed: 11,
        endpoints: vec!["xero.invoices.pdf".into()],
        slow_ms: 0,
        storm_length: 1,
    });
    let retries = c.stats().retries;
    for inv in open.iter().take(5) {
        let pdf = c
            .invoice_pdf(&inv.remote_id)
            .await
            .expect("pdf despite faults");
        assert!(overdued_connector::document::check_pdf(&pdf).is_ok());
    }
    let injected = env.sb().stats();
    assert!(
        c.stats().retries > retries,
        "faults were retried: {injected}"
    );
    // A fault on every call: the last one's class comes back, transient.
    env.sb().set_faults(FaultConfig {
        rate: 1.0,
        kinds: vec![FaultKind::ServerError],
        seed: 1,
        endpoints: vec!["xero.invoices.pdf".into()],
        slow_ms: 0,
        storm_length: 1,
    });
    let c2 = connector(&env, 2);
    let err = c2
        .invoice_pdf(&open[0].remote_id)
        .await
        .expect_err("every attempt fails");
    assert!(err.is_retryable(), "{err:?}");
    assert!(matches!(err, ConnectorError::Transient { .. }), "{err:?}");
}
