//! The checks every fuzz target runs, shared by the cargo-fuzz targets (`fuzz/fuzz_targets`,
//! long runs on nightly) and the proptest suites (`tests/fuzz_*.rs`, bounded runs in CI).
//!
//! Each function feeds one piece of outside input to the parser that reads it in
//! production and panics only when an invariant breaks: the parser panicking, an error
//! without a message, or a parsed value that contradicts its input.
#![allow(dead_code)]

use std::path::Path;

use chrono::{DateTime, Datelike, TimeZone, Utc};
use overdued_connector::runtime::{parse_token_response, retry_after, HttpResponse};
use overdued_connector::{ConnectionId, Currency, InvoiceSnapshot, InvoiceStatus, Secret};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use rust_decimal::Decimal;

/// A realistic QuickBooks query answer (two invoices, one multicurrency, one paid).
pub const QBO_QUERY: &str = r#"{"QueryResponse":{"Invoice":[{"Id":"130","SyncToken":"2","DocNumber":"1037","TxnDate":"2025-11-14","DueDate":"2025-12-14","TotalAmt":362.07,"Balance":362.07,"CustomerRef":{"value":"3","name":"Cool Cars"},"CurrencyRef":{"value":"USD","name":"United States Dollar"},"BillEmail":{"Address":"cool_cars@intuit.com"},"PrivateNote":"","CustomerMemo":{"value":"Thank you"},"MetaData":{"CreateTime":"2025-11-14T13:25:05-08:00","LastUpdatedTime":"2025-11-20T10:01:02-08:00"},"InvoiceLink":"https://app.qbo.intuit.com/app/invoice?id=130","Line":[{"Id":"1","LineNum":1,"Amount":362.07,"DetailType":"SalesItemLineDetail","SalesItemLineDetail":{"ItemRef":{"value":"1","name":"Services"}}},{"Amount":362.07,"DetailType":"SubTotalLineDetail","SubTotalLineDetail":{}}]},{"Id":"131","SyncToken":"0","DocNumber":"1038","TxnDate":"2025-11-15","TotalAmt":"100.00","Balance":0,"CustomerRef":{"value":"4"},"PrivateNote":"Voided","MetaData":{"LastUpdatedTime":"2025-11-21T00:00:00Z"}}],"startPosition":1,"maxResults":2,"totalCount":2},"time":"2025-11-21T09:00:00.000-08:00"}"#;

/// A QuickBooks change-data-capture answer with a deleted stub.
pub const QBO_CDC: &str = r#"{"CDCResponse":[{"QueryResponse":[{"Invoice":[{"Id":"140","status":"Deleted","MetaData":{"LastUpdatedTime":"2025-11-22T10:00:00-08:00"}}],"startPosition":1,"maxResults":1}]}],"time":"2025-11-22T10:05:00-08:00"}"#;

/// A QuickBooks fault (inside a 400, and sometimes inside a 200).
pub const QBO_FAULT: &str = r#"{"Fault":{"Error":[{"Message":"Stale Object Error","Detail":"Stale Object Error : You and Bob were working on this at the same time.","code":"5010","element":""}],"type":"ValidationFault"},"time":"2025-11-22T10:05:00-08:00"}"#;

/// A realistic Xero invoices page.
pub const XERO_INVOICES: &str = r#"{"Id":"5e2c3b52-0ad6-4d2a-9b64-4d0c06c1d0a9","Status":"OK","ProviderName":"overdued","DateTimeUTC":"/Date(1732190400000)/","pagination":{"page":1,"pageSize":1000,"pageCount":1,"itemCount":2},"Invoices":[{"Type":"ACCREC","InvoiceID":"243216c5-369e-4056-ac67-05388f86dc81","InvoiceNumber":"INV-0017","Reference":"","Payments":[],"CreditNotes":[],"AmountDue":1475.25,"AmountPaid":0.00,"AmountCredited":0.00,"CurrencyRate":1.000000,"HasErrors":false,"Contact":{"ContactID":"9ce626d2-14ea-463c-9fff-6785ab5f9bfb","Name":"Boom FM","EmailAddress":"accounts@boomfm.example"},"DateString":"2025-11-01T00:00:00","Date":"/Date(1761955200000+0000)/","DueDateString":"2025-12-01T00:00:00","DueDate":"/Date(1764547200000+0000)/","Status":"AUTHORISED","LineAmountTypes":"Exclusive","LineItems":[{"Description":"Consulting","Quantity":1.0,"UnitAmount":1229.38,"LineAmount":1229.38,"AccountCode":"200"}],"SubTotal":1229.38,"TotalTax":245.87,"Total":1475.25,"UpdatedDateUTC":"/Date(1762000000000+0000)/","CurrencyCode":"GBP"},{"Type":"ACCREC","InvoiceID":"0032a1d3-b1a6-4d4c-9b8e-0a1f2b3c4d5e","InvoiceNumber":"INV-0018","AmountDue":0,"Total":50,"Contact":{"ContactID":"c1","Name":"Ridgeway"},"Date":"2025-10-01","DueDate":"2025-10-31T00:00:00","Status":"PAID","UpdatedDateUTC":"2025-11-02T10:00:00","CurrencyCode":"NZD"}]}"#;

/// A Xero contacts page.
pub const XERO_CONTACTS: &str = r#"{"pagination":{"page":1,"pageSize":1000,"pageCount":1,"itemCount":1},"Contacts":[{"ContactID":"9ce626d2-14ea-463c-9fff-6785ab5f9bfb","Name":"Boom FM","EmailAddress":"accounts@boomfm.example","UpdatedDateUTC":"/Date(1762000000000+0000)/"}]}"#;

/// A Xero validation error.
pub const XERO_ERROR: &str = r#"{"ErrorNumber":10,"Type":"ValidationException","Message":"A validation exception occurred","Elements":[{"InvoiceID":"243216c5-369e-4056-ac67-05388f86dc81","ValidationErrors":[{"Message":"Invoice not of valid status for modification"}]}]}"#;

/// A token endpoint answer.
pub const TOKEN_OK: &str = r#"{"access_token":"eyJhbGciOi","token_type":"bearer","expires_in":3600,"refresh_token":"AB11-rotated","x_refresh_token_expires_in":8726400}"#;
pub const TOKEN_ERR: &str = r#"{"error":"invalid_grant","error_description":"Token invalid"}"#;

/// The shipped example config.
pub const CONFIG_EXAMPLE: &str = include_str!("../config.example.toml");

/// Xero date strings of every shape the vendor sends.
pub const XERO_DATE_SEEDS: &[&str] = &[
    "/Date(1546128000000+0000)/",
    "/Date(1546128000000)/",
    "/Date(-86400000)/",
    "/Date(1546128000000-0530)/",
    "2018-12-30T00:00:00",
    "2018-12-30T10:11:12.123",
    "2018-12-30T10:11:12+13:00",
    "2018-12-30",
];

fn headers(pairs: &[(String, String)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_bytes(v.as_bytes()),
        ) {
            h.append(k, v);
        }
    }
    h
}

fn response(status: u16, header_pairs: &[(String, String)], body: &[u8]) -> HttpResponse {
    HttpResponse {
        status,
        headers: headers(header_pairs),
        body: body.to_vec(),
    }
}

/// A `Retry-After` is slept through or added to `Instant::now()`: it must stay in range.
fn check_retry_after(h: &HeaderMap) {
    if let Some(d) = retry_after(h) {
        assert!(d <= overdued_connector::runtime::MAX_RETRY_AFTER, "{d:?}");
        let _ = std::time::Instant::now() + d;
        let _ = tokio::time::Instant::now() + d;
    }
}

fn conn() -> ConnectionId {
    ConnectionId::new("fuzz")
}

/// What every snapshot a connector hands the engine must satisfy, whatever it was read from.
fn check_snapshot(s: &InvoiceSnapshot) {
    assert!(
        s.amount_due >= Decimal::ZERO,
        "negative amount due in {s:?}"
    );
    // Formatting the amounts is what every reminder does.
    let _ = s.due_money().to_string();
    let _ = s.total_money().to_string();
}

fn check_error_text(e: &dyn std::fmt::Display) {
    let text = e.to_string();
    assert!(!text.trim().is_empty(), "an error without a message");
}

// ---- Xero dates -----------------------------------------------------------------------

/// Both Xero date parsers on one string.
pub fn xero_date(s: &str) {
    use overdued_xero::dates::{format_date, parse_calendar_date, parse_instant};
    match parse_instant(s) {
        Ok(t) => {
            // The `/Date(ms)/` form names exactly the milliseconds written.
            let trimmed = s.trim();
            if let Some(inner) = trimmed
                .strip_prefix("/Date(")
                .and_then(|r| r.strip_suffix(")/"))
            {
                let (neg, body) = match inner.strip_prefix('-') {
                    Some(r) => (true, r),
                    None => (false, inner),
                };
                let end = body
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(body.len());
                let ms: i64 = body[..end].parse().expect("accepted digits parse");
                let ms = if neg { -ms } else { ms };
                assert_eq!(t.timestamp_millis(), ms, "{s:?} moved the instant");
            }
        }
        Err(e) => {
            check_error_text(&e);
            assert_eq!(e.0, s, "the error names the input");
        }
    }
    match parse_calendar_date(s) {
        // Years outside 0000..=9999 have no four-digit form to round-trip through.
        Ok(d) if (0..=9999).contains(&d.year()) => {
            let text = format_date(d);
            // A written date round-trips through the request-body form.
            assert_eq!(
                parse_calendar_date(&text).ok(),
                Some(d),
                "{s:?} -> {d} -> {text:?} did not round-trip"
            );
        }
        Ok(_) => {}
        Err(e) => check_error_text(&e),
    }
}

/// `/Date(ms±hhmm)/` built from numbers: always accepted when in range, at exactly `ms`.
pub fn xero_date_ms(ms: i64, offset: Option<(bool, u32, u32)>) {
    use overdued_xero::dates::{parse_calendar_date, parse_instant};
    let off = match offset {
        Some((plus, h, m)) => format!("{}{h:02}{m:02}", if plus { '+' } else { '-' }),
        None => String::new(),
    };
    let s = format!("/Date({ms}{off})/");
    let valid_offset = offset.is_none_or(|(_, h, m)| h <= 14 && m <= 59);
    let expected = Utc.timestamp_millis_opt(ms).single();
    match (parse_instant(&s), expected) {
        (Ok(t), Some(e)) if valid_offset => {
            assert_eq!(t, e, "{s:?}");
            assert_eq!(parse_calendar_date(&s).ok(), Some(e.date_naive()));
        }
        (Ok(t), _) => panic!("{s:?} accepted as {t} (offset valid: {valid_offset})"),
        (Err(_), Some(_)) if valid_offset => panic!("{s:?} refused"),
        (Err(e), _) => check_error_text(&e),
    }
}

// ---- QuickBooks -----------------------------------------------------------------------

/// A QuickBooks response to every read the connector makes, plus error classification.
pub fn qbo_response(status: u16, header_pairs: &[(String, String)], body: &[u8]) {
    use overdued_quickbooks::wire::{
        classify, parse_ok, CdcEnvelope, InvoiceEnvelope, QueryEnvelope,
    };
    let resp = response(status, header_pairs, body);
    check_retry_after(&resp.headers);
    let c = classify(&resp);
    check_error_text(&c);
    match parse_ok::<QueryEnvelope>(&resp, "fuzz query") {
        Ok(env) => {
            assert!((200..300).contains(&status), "accepted HTTP {status}");
            for inv in &env.query.invoices {
                let _ = inv.memo();
                match inv.to_snapshot(&conn(), Currency::USD) {
                    Ok(s) => {
                        check_snapshot(&s);
                        assert_eq!(s.remote_id, inv.id);
                        if s.status == InvoiceStatus::Open {
                            assert!(s.amount_due > Decimal::ZERO);
                        }
                    }
                    Err(e) => check_error_text(&e),
                }
            }
            for c in &env.query.customers {
                let cust = c.to_customer(&conn());
                assert_eq!(cust.id, c.id);
            }
        }
        Err(e) => check_error_text(&e),
    }
    match parse_ok::<InvoiceEnvelope>(&resp, "fuzz read") {
        Ok(env) => {
            if let Ok(s) = env.invoice.to_snapshot(&conn(), Currency::GBP) {
                check_snapshot(&s);
            }
        }
        Err(e) => check_error_text(&e),
    }
    if let Ok(cdc) = serde_json::from_slice::<CdcEnvelope>(body) {
        for r in &cdc.responses {
            for q in &r.queries {
                for inv in &q.invoices {
                    if let Ok(s) = inv.to_snapshot(&conn(), Currency::USD) {
                        check_snapshot(&s);
                        if inv.is_deleted_stub() {
                            assert_eq!(s.status, InvoiceStatus::Deleted);
                        }
                    }
                }
            }
        }
    }
}

// ---- Xero -----------------------------------------------------------------------------

/// A Xero response to every read the connector makes, plus error classification and the
/// limit headers.
pub fn xero_response(status: u16, header_pairs: &[(String, String)], body: &[u8]) {
    use overdued_xero::errors::classify;
    use overdued_xero::wire::{ApiError, ContactsEnvelope, InvoicesEnvelope};
    use overdued_xero::Remaining;
    let resp = response(status, header_pairs, body);
    let _ = Remaining::from_headers(&resp.headers);
    check_retry_after(&resp.headers);
    check_error_text(&classify("fuzz", &resp));
    if let Ok(api) = serde_json::from_slice::<ApiError>(body) {
        let _ = api.messages();
        let _ = api.describe();
    }
    if let Ok(env) = serde_json::from_slice::<InvoicesEnvelope>(body) {
        for inv in &env.invoices {
            let _ = inv.is_sales();
            let _ = inv.snapshot_status();
            match inv.to_snapshot(&conn()) {
                Ok(s) => {
                    check_snapshot(&s);
                    assert_eq!(s.remote_id, inv.invoice_id);
                    assert!(s.due_date.year() > -10_000);
                }
                Err(e) => check_error_text(&e),
            }
        }
    }
    if let Ok(env) = serde_json::from_slice::<ContactsEnvelope>(body) {
        for c in &env.contacts {
            let cust = c.to_customer(&conn());
            assert_eq!(cust.id, c.contact_id);
        }
    }
}

// ---- OAuth token endpoint -------------------------------------------------------------

/// A token endpoint answer, with and without a refresh token to keep.
pub fn token_response(status: u16, body: &[u8]) {
    let now: DateTime<Utc> = Utc
        .with_ymd_and_hms(2026, 1, 5, 9, 0, 0)
        .single()
        .expect("a valid instant");
    let prev = Secret::new("previous-refresh".to_string());
    for previous in [None, Some(&prev)] {
        match parse_token_response(status, None, body, "fuzz", previous, now) {
            Ok(t) => {
                assert!((200..300).contains(&status));
                assert!(!t.refresh_token.expose().is_empty());
            }
            Err(e) => check_error_text(&e),
        }
    }
}

// ---- the config file ------------------------------------------------------------------

/// Config text as `overdued` reads it. Secrets files resolve beside a directory that
/// does not exist, so nothing outside is read.
pub fn config_text(text: &str) {
    let path = Path::new("/nonexistent-overdued-fuzz/overdued.toml");
    match overdued::config::parse(text, path) {
        Ok(cfg) => {
            let mut names: Vec<&str> = cfg.connections.iter().map(|c| c.name.as_str()).collect();
            let n = names.len();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), n, "duplicate connection names accepted");
        }
        Err(e) => {
            check_error_text(&e);
            assert_eq!(e.file, path);
            if let Some((line, col)) = e.position {
                let lines = text.split('\n').count();
                assert!(line >= 1 && line <= lines, "line {line} of {lines}");
                assert!(col >= 1);
            }
        }
    }
}

// ---- webhook bodies ---------------------------------------------------------------------

pub const QBO_WEBHOOK: &str = r#"{"eventNotifications":[{"realmId":"1269959970","dataChangeEvent":{"entities":[{"name":"Invoice","id":"130","operation":"Update","lastUpdated":"2026-11-23T10:00:00.000Z"}]}}]}"#;
pub const QBO_CLOUDEVENTS: &str = r#"[{"specversion":"1.0","id":"e1","type":"qbo.invoice.updated.v1","time":"2026-11-23T10:00:00Z","intuitentityid":"130","intuitaccountid":"9341455322581846","data":{}}]"#;
pub const XERO_WEBHOOK: &str = r#"{"events":[{"resourceUrl":"https://api.xero.com/api.xro/2.0/Invoices/aa","resourceId":"aa","eventDateUtc":"2026-11-23T10:00:00.000","eventType":"UPDATE","eventCategory":"INVOICE","tenantId":"t1","tenantType":"ORGANISATION"}],"firstEventSequence":1,"lastEventSequence":1,"entropy":"x"}"#;

/// A webhook delivery as the daemon reads it: the signature check and both parsers
/// answer every body, and every event they accept names a tenant and an id.
pub fn webhook_body(body: &[u8]) {
    use overdued::daemon::webhooks::{parse_quickbooks, parse_xero, signature_ok};
    let _ = signature_ok(body, "key", Some("c2lnbmF0dXJl"));
    for parsed in [parse_quickbooks(body), parse_xero(body)] {
        match parsed {
            Ok(events) => {
                for e in events {
                    let _ = (e.tenant.len(), e.id.len());
                }
            }
            Err(e) => assert!(!e.to_string().is_empty(), "an error without a message"),
        }
    }
}
