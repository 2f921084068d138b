//! Wire parsing against the shared QuickBooks samples and the fixtures beside this file.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use chrono::{DateTime, NaiveDate};
use overdued_connector::runtime::HttpResponse;
use overdued_connector::{ConnectionId, ConnectorError, Currency, InvoiceStatus};
use overdued_quickbooks::wire::{classify, parse_ok, CdcEnvelope, InvoiceEnvelope, QueryEnvelope};
use rust_decimal::Decimal;

fn shared_dir() -> Option<PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/api/quickbooks");
    if d.is_dir() {
        Some(d)
    } else {
        println!(
            "skipping: shared QuickBooks fixtures not found at {}",
            d.display()
        );
        None
    }
}

fn ok(body: Vec<u8>) -> HttpResponse {
    HttpResponse {
        status: 200,
        headers: Default::default(),
        body,
    }
}

fn local(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .unwrap()
}

fn conn() -> ConnectionId {
    ConnectionId::new("acme-qbo")
}

#[test]
fn shared_invoice_read_maps_exactly() {
    let Some(d) = shared_dir() else { return };
    let env: InvoiceEnvelope = parse_ok(
        &ok(std::fs::read(d.join("invoice_read_response.json")).unwrap()),
        "read",
    )
    .unwrap();
    let s = env.invoice.to_snapshot(&conn(), Currency::USD).unwrap();
    assert_eq!(s.remote_id, "130");
    assert_eq!(s.number.as_deref(), Some("1037"));
    assert_eq!(s.total, Decimal::from_str("100.00").unwrap());
    assert_eq!(s.amount_due, Decimal::from_str("100").unwrap());
    assert_eq!(s.issue_date, NaiveDate::from_ymd_opt(2019, 12, 20).unwrap());
    assert_eq!(s.due_date, NaiveDate::from_ymd_opt(2020, 1, 19).unwrap());
    assert_eq!(
        s.updated_at,
        DateTime::parse_from_rfc3339("2019-12-20T18:08:51Z")
            .unwrap()
            .to_utc()
    );
    assert_eq!(s.status, InvoiceStatus::Open);
    assert_eq!(s.customer.id, "1");
    assert_eq!(s.customer.name, "Amy's Bird Sanctuary");
    assert_eq!(s.memo, "Thank you for your business!");
    assert_eq!(s.version.as_deref(), Some("0"));
    assert!(!s.is_fee_invoice);
    assert_eq!(env.invoice.lines.len(), 2);
}

#[test]
fn shared_query_send_and_empty_responses_parse() {
    let Some(d) = shared_dir() else { return };
    let q: QueryEnvelope = parse_ok(
        &ok(std::fs::read(d.join("query_response_invoice.CONSTRUCTED.json")).unwrap()),
        "q",
    )
    .unwrap();
    assert_eq!(q.query.invoices.len(), 1);
    let empty: QueryEnvelope = parse_ok(
        &ok(std::fs::read(d.join("query_response_empty.CONSTRUCTED.json")).unwrap()),
        "q",
    )
    .unwrap();
    assert!(empty.query.invoices.is_empty());
    let sent: InvoiceEnvelope = parse_ok(
        &ok(std::fs::read(d.join("invoice_send_response.CONSTRUCTED.json")).unwrap()),
        "s",
    )
    .unwrap();
    let s = sent.invoice.to_snapshot(&conn(), Currency::USD).unwrap();
    assert_eq!(s.customer.email.as_deref(), Some("customer@example.com"));
    assert_eq!(s.version.as_deref(), Some("1"));
}

#[test]
fn shared_cdc_responses_parse_with_deleted_stubs() {
    let Some(d) = shared_dir() else { return };
    let cdc: CdcEnvelope =
        serde_json::from_slice(&std::fs::read(d.join("cdc_response_intuit_docs.json")).unwrap())
            .unwrap();
    assert_eq!(cdc.responses.len(), 1);
    assert_eq!(cdc.responses[0].queries[0].customers.len(), 2);
    let none: CdcEnvelope =
        serde_json::from_slice(&std::fs::read(d.join("cdc_response_no_changes.json")).unwrap())
            .unwrap();
    assert!(none.responses[0].queries[0].invoices.is_empty());
    // The docs' stub is an Estimate; the same shape as an Invoice maps to Deleted.
    let stub: overdued_quickbooks::wire::QboInvoice = serde_json::from_str(
        r#"{"domain":"QBO","status":"Deleted","Id":"979","MetaData":{"LastUpdatedTime":"2015-12-23T12:55:50-08:00"}}"#,
    )
    .unwrap();
    assert!(stub.is_deleted_stub());
}

#[test]
fn shared_faults_classify() {
    let Some(d) = shared_dir() else { return };
    let stale = HttpResponse {
        status: 400,
        headers: Default::default(),
        body: std::fs::read(d.join("error_stale_object_5010.CONSTRUCTED.json")).unwrap(),
    };
    assert!(matches!(classify(&stale), ConnectorError::StaleVersion(_)));
    let generic = HttpResponse {
        status: 400,
        headers: Default::default(),
        body: std::fs::read(d.join("error_fault_envelope.json")).unwrap(),
    };
    assert!(matches!(classify(&generic), ConnectorError::Permanent(_)));
}

#[test]
fn local_page_maps_statuses_memo_fees_and_links() {
    let q: QueryEnvelope = parse_ok(&ok(local("query_page_mixed.json")), "q").unwrap();
    let s: Vec<_> = q
        .query
        .invoices
        .iter()
        .map(|i| i.to_snapshot(&conn(), Currency::USD).unwrap())
        .collect();
    assert_eq!(s[0].status, InvoiceStatus::Open);
    assert_eq!(s[0].memo, "#nochase disputed\nThanks!");
    assert_eq!(
        s[0].pay_url.as_deref(),
        Some("https://connect.intuit.example/pay/201")
    );
    assert_eq!(s[0].amount_due, Decimal::from_str("362.07").unwrap());
    assert_eq!(s[1].status, InvoiceStatus::Voided);
    assert!(s[2].is_fee_invoice);
    assert_eq!(s[2].currency, Currency::EUR);
    assert_eq!(s[2].number, None);
    assert_eq!(
        s[2].updated_at,
        DateTime::parse_from_rfc3339("2026-10-05T10:00:00Z")
            .unwrap()
            .to_utc()
    );
    assert_eq!(s[3].status, InvoiceStatus::Paid);
    assert_eq!(s[3].total, Decimal::from_str("1000.10").unwrap());
}

#[test]
fn local_customers_and_throttle() {
    let q: QueryEnvelope = parse_ok(&ok(local("customers_page.json")), "q").unwrap();
    let c: Vec<_> = q
        .query
        .customers
        .iter()
        .map(|c| c.to_customer(&conn()))
        .collect();
    assert_eq!(c[0].email.as_deref(), Some("ap@sonnenschein.example"));
    assert_eq!(c[1].name, "Cool Cars");
    assert_eq!(c[1].email, None);
    let r = HttpResponse {
        status: 429,
        headers: Default::default(),
        body: local("throttle_fault.json"),
    };
    assert!(matches!(classify(&r), ConnectorError::RateLimited { .. }));
}
