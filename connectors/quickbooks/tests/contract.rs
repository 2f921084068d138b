//! The connector contract (`overdued-contract`) run against the sandbox's QuickBooks.

use std::time::Duration;

use overdued_connector::runtime::RetryPolicy;
use overdued_connector::{ConnectionId, FeePosting, InvoiceSnapshot, Secret};
use overdued_contract::{contract_tests, Env, FaultPlan, TokenPlan, Vendor};
use overdued_quickbooks::{Environment, FeeSettings, QuickBooksConnector, QuickBooksSettings};
use overdued_sandbox::System;

const TOKEN_PATH: &str = "/oauth2/v1/tokens/bearer";
const AUTHORIZE_PATH: &str = "/oauth2/quickbooks/authorize";

fn build(env: &Env, realm: &str, name: &str, timeout: Option<Duration>) -> QuickBooksConnector {
    let (id, secret) = env.sb().client_credentials(System::QuickBooks);
    let mut s = QuickBooksSettings::new(
        ConnectionId::new(name),
        realm,
        id,
        Secret::new(secret),
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
    s.runtime.request_timeout = timeout.unwrap_or(Duration::from_secs(10));
    let grant = env.sb().grant(System::QuickBooks, realm).expect("grant");
    s.initial_refresh_token = Some(Secret::new(grant.refresh_token));
    QuickBooksConnector::new(s, env.store.clone(), env.clock.clone()).expect("connector")
}

fn quickbooks() -> Vendor<QuickBooksConnector> {
    Vendor {
        system: System::QuickBooks,
        connection: "acme-qbo",
        sync_endpoint: "quickbooks.query",
        // A full page of 1000 asks for the next one, which comes back empty.
        sync_calls: |n| n / 1000 + 1,
        unknown_id: "987654",
        reread_invoices: 50,
        build,
        actionable: |_| true,
        // Sent to the invoice's contact, or to an address given for those without one.
        reminder_to: |inv: &InvoiceSnapshot| {
            inv.customer
                .email
                .clone()
                .or_else(|| Some("ap@example.com".into()))
        },
        notes_in_memo: true,
        fee_receipt_names_invoice: false,
        faults: FaultPlan {
            invoices: 120,
            request_timeout: Duration::from_secs(2),
            seed: 7,
            slow_ms: 3000,
            replay_reminder_directly: true,
            every_kind_injected: false,
        },
        tokens: TokenPlan {
            // A day on, so the refresh token (Intuit keeps its value for 24 hours) rotates.
            expire_after: chrono::Duration::hours(25),
            refresh_ahead_after: chrono::Duration::minutes(58),
            keeps_previous_refresh: false,
        },
    }
}

contract_tests!(quickbooks());
