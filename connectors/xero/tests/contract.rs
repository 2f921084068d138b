//! The connector contract (`overdued-contract`) run against the sandbox's Xero.

use std::time::Duration;

use overdued_connector::runtime::RetryPolicy;
use overdued_connector::{ConnectionId, InvoiceSnapshot, Secret};
use overdued_contract::{contract_tests, Env, FaultPlan, TokenPlan, Vendor};
use overdued_sandbox::System;
use overdued_xero::{XeroConnector, XeroSettings};

fn build(env: &Env, tenant: &str, name: &str, timeout: Option<Duration>) -> XeroConnector {
    let (id, secret) = env.sb().client_credentials(System::Xero);
    let mut s = XeroSettings::new(ConnectionId::new(name), id, Secret::new(secret), tenant)
        .with_base_url(&env.running.url());
    s.retry = RetryPolicy {
        max_attempts: 8,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(500),
        max_retry_after: Duration::from_secs(5),
    };
    s.request_timeout = timeout.unwrap_or(Duration::from_secs(10));
    let grant = env.sb().grant(System::Xero, tenant).expect("grant");
    s.initial_refresh_token = Some(Secret::new(grant.refresh_token));
    XeroConnector::new(s, env.store.clone(), env.clock.clone()).expect("connector")
}

fn xero() -> Vendor<XeroConnector> {
    Vendor {
        system: System::Xero,
        connection: "acme-uk",
        sync_endpoint: "xero.invoices.list",
        // A page shorter than 1000 ends the pass without another call.
        sync_calls: |n| n.div_ceil(1000).max(1),
        unknown_id: "00000000-0000-4000-8000-000000000001",
        reread_invoices: 160,
        build,
        // Emailed through Xero, so only invoices with a contact address and nothing
        // paid yet.
        actionable: |i: &InvoiceSnapshot| i.customer.email.is_some() && i.amount_due == i.total,
        reminder_to: |_| None,
        notes_in_memo: false,
        fee_receipt_names_invoice: true,
        faults: FaultPlan {
            invoices: 150,
            request_timeout: Duration::from_secs(1),
            seed: 11,
            slow_ms: 1500,
            replay_reminder_directly: false,
            every_kind_injected: true,
        },
        tokens: TokenPlan {
            // Xero's access tokens live 30 minutes.
            expire_after: chrono::Duration::minutes(31),
            refresh_ahead_after: chrono::Duration::minutes(29),
            keeps_previous_refresh: true,
        },
    }
}

contract_tests!(xero());
