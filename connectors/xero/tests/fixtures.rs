//! Mapping Xero's JSON into snapshots: small fixtures beside this file always, and the
//! official examples in `../shared` when that checkout is present.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use chrono::{DateTime, NaiveDate};
use overdued_connector::runtime::HttpResponse;
use overdued_connector::{ConnectionId, ConnectorError, InvoiceStatus};
use overdued_xero::errors::classify;
use overdued_xero::wire::{ContactsEnvelope, InvoicesEnvelope};
use rust_decimal::Decimal;

fn shared_dir() -> Option<PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/api/xero/examples");
    if d.is_dir() {
        Some(d)
    } else {
        println!(
            "skipping: shared Xero examples not found at {}",
            d.display()
        );
        None
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
    ConnectionId::new("acme-uk")
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

#[test]
fn local_page_maps_every_status_exactly() {
    let env: InvoicesEnvelope = serde_json::from_slice(&local("invoices_page.json")).unwrap();
    assert_eq!(env.pagination.unwrap().item_count, 4);
    let s: Vec<_> = env
        .invoices
        .iter()
        .map(|i| i.to_snapshot(&conn()).unwrap())
        .collect();

    assert_eq!(s[0].status, InvoiceStatus::Open);
    assert_eq!(s[0].amount_due, dec("1149.995"), "no float rounding");
    assert_eq!(s[0].total, dec("1150.00"));
    // Midnight UTC stays that date whatever offset is written after the milliseconds.
    assert_eq!(s[0].issue_date, date(2025, 12, 1));
    assert_eq!(s[0].due_date, date(2025, 12, 31));
    assert_eq!(
        s[0].updated_at,
        DateTime::parse_from_rfc3339("2026-01-05T09:00:00.123Z")
            .unwrap()
            .to_utc()
    );
    assert_eq!(s[0].memo, "PO 7781 #nochase");
    assert_eq!(s[0].customer.email.as_deref(), Some("ap@kiwi.example"));
    assert!(!s[0].is_fee_invoice);

    assert_eq!(
        s[1].status,
        InvoiceStatus::Paid,
        "SUBMITTED with nothing due is paid"
    );
    assert!(s[1].is_fee_invoice);
    assert_eq!(s[1].customer.email, None);

    assert_eq!(s[2].status, InvoiceStatus::Voided);
    assert_eq!(s[2].amount_due, Decimal::ZERO);
    assert_eq!(s[2].due_date, date(2025, 12, 31));
    assert_eq!(s[2].customer.email, None, "an empty address is no address");
    assert_eq!(s[2].number.as_deref(), Some("INV-0103"));
    assert_eq!(s[2].memo, "");

    assert_eq!(s[3].status, InvoiceStatus::Draft);
    assert_eq!(s[3].issue_date, date(2026, 1, 5));
    assert_eq!(s[3].due_date, date(2026, 2, 4));
    assert_eq!(s[3].currency.code(), "JPY");
    assert!(s.iter().all(|x| x.pay_url.is_none() && x.version.is_none()));
}

#[test]
fn a_200_with_item_errors_is_read_as_errors() {
    let env: InvoicesEnvelope =
        serde_json::from_slice(&local("fee_invoice_has_errors.json")).unwrap();
    let inv = &env.invoices[0];
    assert!(inv.has_errors);
    assert_eq!(
        inv.validation_errors[0].message,
        "Account code '999' is not a valid code for this document."
    );
}

#[test]
fn shared_invoice_list_maps() {
    let Some(d) = shared_dir() else { return };
    let env: InvoicesEnvelope =
        serde_json::from_slice(&std::fs::read(d.join("get_invoices_200.json")).unwrap()).unwrap();
    let snaps: Vec<_> = env
        .invoices
        .iter()
        .map(|i| i.to_snapshot(&conn()).unwrap())
        .collect();
    let first = &snaps[0];
    assert_eq!(first.remote_id, "d4956132-ed94-4dd7-9eaa-aa22dfdf06f2");
    assert_eq!(first.number.as_deref(), Some("INV-0001"));
    assert_eq!(first.status, InvoiceStatus::Voided);
    assert_eq!(first.total, dec("40.0"));
    assert_eq!(first.issue_date, date(2018, 10, 20));
    assert_eq!(first.due_date, date(2018, 12, 30));
    assert_eq!(first.currency.code(), "NZD");
    assert_eq!(first.memo, "Red Fish, Blue Fish");
    assert_eq!(first.customer.name, "Barney Rubble-83203");
    let second = &snaps[1];
    assert_eq!(
        (second.status, second.amount_due, second.total),
        (InvoiceStatus::Paid, Decimal::ZERO, dec("46.0"))
    );
    assert!(snaps.iter().all(|s| !s.is_fee_invoice));
}

#[test]
fn shared_single_invoice_and_create_answers_map() {
    let Some(d) = shared_dir() else { return };
    for name in [
        "get_invoice_200.json",
        "create_invoices_put_200.json",
        "update_or_create_invoices_post_200.json",
    ] {
        let env: InvoicesEnvelope =
            serde_json::from_slice(&std::fs::read(d.join(name)).unwrap()).unwrap();
        assert!(!env.invoices.is_empty(), "{name}");
        for inv in &env.invoices {
            assert!(!inv.has_errors, "{name}");
            if inv.invoice_id.is_empty() || inv.invoice_id.starts_with("00000000") {
                continue;
            }
            let s = inv
                .to_snapshot(&conn())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(s.total >= s.amount_due, "{name}");
        }
    }
    let env: InvoicesEnvelope =
        serde_json::from_slice(&std::fs::read(d.join("create_invoices_put_200.json")).unwrap())
            .unwrap();
    let s = env.invoices[0].to_snapshot(&conn()).unwrap();
    assert_eq!(s.remote_id, "ed255415-e141-4150-aab7-89c3bbbb851c");
    assert_eq!(s.amount_due, dec("40.0"));
    assert_eq!(s.customer.email.as_deref(), Some("liam@rockstar.com"));
}

#[test]
fn shared_contacts_and_validation_error() {
    let Some(d) = shared_dir() else { return };
    let env: ContactsEnvelope =
        serde_json::from_slice(&std::fs::read(d.join("get_contacts_200.json")).unwrap()).unwrap();
    let customers: Vec<_> = env
        .contacts
        .iter()
        .map(|c| c.to_customer(&conn()))
        .collect();
    assert_eq!(customers[0].id, "5cc8cf28-567e-4d43-b287-687cfcaec47c");
    assert_eq!(
        customers[0].email.as_deref(),
        Some("kat.warren@clampett.com")
    );
    assert!(customers[0].updated_at.is_some());

    let body = std::fs::read(d.join("error_400_validation_example.json")).unwrap();
    let e = classify(
        "create fee invoice",
        &HttpResponse {
            status: 400,
            headers: Default::default(),
            body,
        },
    );
    match e {
        ConnectorError::Permanent(m) => assert!(
            m.contains("ValidationException") && m.contains("Please enter a unique Name."),
            "{m}"
        ),
        e => panic!("{e}"),
    }
}
