//! The QuickBooks connector's payment link and invoice PDF against the in-process
//! simulator.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use overdued_connector::runtime::RetryPolicy;
use overdued_connector::{
    ConnectionId, Connector, ConnectorError, FeePosting, InvoiceSnapshot, InvoiceStatus,
    ManualClock, Money, Secret, SyncCursor, TokenSet, TokenStore, TokenStoreError,
};
use overdued_quickbooks::{Environment, FeeSettings, QuickBooksConnector, QuickBooksSettings};
use overdued_sandbox::{FaultConfig, FaultKind, RunningSandbox, Sandbox, SandboxOptions, System};

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
    realm: String,
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
            quickbooks_tenants: 1,
            xero_tenants: 0,
            ..SandboxOptions::default()
        },
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .expect("sandbox starts");
    let realm = running
        .sandbox
        .tenants()
        .into_iter()
        .find(|t| t.system == System::QuickBooks)
        .expect("a realm")
        .id;
    Env { running, realm }
}

fn connector(env: &Env, max_attempts: u32) -> QuickBooksConnector {
    let (id, secret) = env.sb().client_credentials(System::QuickBooks);
    let grant = env
        .sb()
        .grant(System::QuickBooks, &env.realm)
        .expect("grant");
    let mut s = QuickBooksSettings::new(
        ConnectionId::new("acme-qbo"),
        &env.realm,
        id,
        Secret::new(secret),
        Environment::Sandbox,
        FeeSettings {
            item_id: "1".into(),
            item_name: Some("Services".into()),
            posting: FeePosting::SeparateInvoice,
        },
    );
    let url = env.running.url();
    s.api_base_url = Some(url.clone());
    s.token_url = Some(format!("{url}/oauth2/v1/tokens/bearer"));
    s.authorize_url = Some(format!("{url}/oauth2/quickbooks/authorize"));
    s.runtime.retry = RetryPolicy {
        max_attempts,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(100),
        max_retry_after: Duration::from_secs(2),
    };
    s.runtime.request_timeout = Duration::from_secs(5);
    s.initial_refresh_token = Some(Secret::new(grant.refresh_token));
    let clock = Arc::new(ManualClock::new(env.sb().now()));
    QuickBooksConnector::new(s, Arc::new(MemStore::default()), clock).expect("connector")
}

async fn open_invoices(c: &QuickBooksConnector) -> Vec<InvoiceSnapshot> {
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
async fn the_invoice_link_is_there_only_when_the_company_takes_online_payments() {
    let env = sandbox().await;
    let c = connector(&env, 4);
    let open = open_invoices(&c).await;
    env.sb()
        .set_online_payments(System::QuickBooks, &env.realm, true)
        .expect("switch");
    let calls = c.runtime().stats().calls;
    let a = c
        .online_payment_link(&open[0].remote_id)
        .await
        .expect("read")
        .expect("a link");
    assert_eq!(c.runtime().stats().calls, calls + 1, "one read");
    let b = c
        .online_payment_link(&open[1].remote_id)
        .await
        .expect("read")
        .expect("a link");
    assert!(a.starts_with("https://"), "{a}");
    assert_ne!(a, b, "each invoice has its own page");
    env.sb()
        .set_online_payments(System::QuickBooks, &env.realm, false)
        .expect("switch");
    assert_eq!(
        c.online_payment_link(&open[0].remote_id)
            .await
            .expect("read"),
        None
    );
    assert_eq!(requests(env.sb(), "quickbooks.invoice.read"), 3);
    let missing = c.online_payment_link("999999").await;
    assert!(
        matches!(missing, Err(ConnectorError::NotFound(_))),
        "{missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pdf_is_the_invoice_as_quickbooks_renders_it() {
    let env = sandbox().await;
    let c = connector(&env, 4);
    let inv = &open_invoices(&c).await[0];
    let pdf = c.invoice_pdf(&inv.remote_id).await.expect("pdf");
    assert!(pdf.starts_with(b"%PDF"));
    assert!(overdued_connector::document::check_pdf(&pdf).is_ok());
    let number = inv.number.as_deref().expect("number");
    assert!(contains(&pdf, &format!("Invoice {number}")));
    let due = Money::new(inv.amount_due, inv.currency).display_human();
    assert!(contains(&pdf, &format!("Amount due: {due}")), "{due}");
    assert_eq!(requests(env.sb(), "quickbooks.invoice.pdf"), 1);
    let missing = c.invoice_pdf("999999").await;
    assert!(
        matches!(missing, Err(ConnectorError::NotFound(_))),
        "{missing:?}"
    );
    // Ids go into the path only when they are plain.
    assert!(matches!(
        c.invoice_pdf("../1").await,
        Err(ConnectorError::Permanent(_))
    ));
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
            FaultKind::RateLimit,
        ],
        seed: 5,
        endpoints: vec!["quickbooks.invoice.pdf".into()],
        slow_ms: 0,
        storm_length: 1,
    });
    let retries = c.runtime().stats().retries;
    for inv in open.iter().take(5) {
        let pdf = c
            .invoice_pdf(&inv.remote_id)
            .await
            .expect("pdf despite faults");
        assert!(overdued_connector::document::check_pdf(&pdf).is_ok());
    }
    let injected = env.sb().stats();
    assert!(
        c.runtime().stats().retries > retries,
        "faults were retried: {injected}"
    );
    env.sb().set_faults(FaultConfig {
        rate: 1.0,
        kinds: vec![FaultKind::Malformed],
        seed: 1,
        endpoints: vec!["quickbooks.invoice.pdf".into()],
        slow_ms: 0,
        storm_length: 1,
    });
    let c2 = connector(&env, 2);
    let err = c2
        .invoice_pdf(&open[0].remote_id)
        .await
        .expect_err("every answer is broken");
    assert!(matches!(err, ConnectorError::Transient { .. }), "{err:?}");
    assert_eq!(
        c2.runtime().stats().retries,
        1,
        "retried once, then given up"
    );
}
