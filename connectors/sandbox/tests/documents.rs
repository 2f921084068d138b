//! Invoice PDFs and online payment links as the sandbox serves them for both vendors.

mod common;

use common::{small, Api};
use overdued_sandbox::{SandboxOptions, System};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn is_complete_pdf(b: &[u8]) -> bool {
    b.starts_with(b"%PDF-1.4\n") && b.ends_with(b"%%EOF\n")
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Every xref entry points at the `N 0 obj` it names, and `startxref` at the table.
fn xref_is_exact(b: &[u8]) {
    let text = String::from_utf8(b.to_vec()).expect("ascii");
    let start: usize = text
        .rsplit("startxref\n")
        .next()
        .and_then(|t| t.lines().next())
        .and_then(|n| n.parse().ok())
        .expect("startxref");
    assert!(
        text[start..].starts_with("xref\n"),
        "startxref points at xref"
    );
    let entries: Vec<&str> = text[start..].lines().skip(3).take(5).collect();
    for (i, e) in entries.iter().enumerate() {
        let off: usize = e[..10].parse().expect("offset");
        assert!(
            text[off..].starts_with(&format!("{} 0 obj", i + 1)),
            "object {} at {off}",
            i + 1
        );
    }
}

async fn open_qbo_invoice(api: &Api) -> Value {
    let (s, v) = api
        .qbo_query("SELECT * FROM Invoice WHERE Balance > '0' MAXRESULTS 1000")
        .await;
    assert_eq!(s, StatusCode::OK);
    v["QueryResponse"]["Invoice"]
        .as_array()
        .expect("invoices")
        .iter()
        .find(|i| i.get("BillEmail").is_some())
        .cloned()
        .expect("an open invoice with a bill email")
}

/// A new invoice for the same customer, its bill email then cleared.
async fn invoice_without_email(api: &Api, like: &Value) -> Value {
    let post = |body: Value| async move {
        let r = api
            .qbo(Method::POST, "invoice")
            .query(&[("minorversion", "75")])
            .json(&body)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::OK);
        r.json::<Value>().await.expect("json")["Invoice"].clone()
    };
    let created = post(json!({
        "CustomerRef": {"value": like["CustomerRef"]["value"]},
        "Line": [{"Amount": 10, "DetailType": "SalesItemLineDetail",
                  "SalesItemLineDetail": {"ItemRef": {"value": "1"}, "Qty": 1, "UnitPrice": 10}}]
    }))
    .await;
    let inv = post(json!({
        "Id": created["Id"], "SyncToken": created["SyncToken"], "sparse": true, "BillEmail": null
    }))
    .await;
    assert!(inv.get("BillEmail").is_none(), "{inv}");
    inv
}

async fn read_qbo(api: &Api, id: &str, include: Option<&str>) -> Value {
    let mut q = vec![("minorversion", "75")];
    if let Some(i) = include {
        q.push(("include", i));
    }
    let r = api
        .qbo(Method::GET, &format!("invoice/{id}"))
        .query(&q)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    r.json::<Value>().await.expect("json")["Invoice"].clone()
}

#[tokio::test]
async fn quickbooks_gives_the_invoice_link_only_when_asked_and_when_the_company_takes_payments() {
    let api = Api::new(small(120)).await;
    let sb = &api.rs.sandbox;
    sb.set_online_payments(System::QuickBooks, &api.qbo_realm, true)
        .expect("switch");
    let inv = open_qbo_invoice(&api).await;
    let id = inv["Id"].as_str().expect("id");
    let plain = read_qbo(&api, id, None).await;
    assert!(plain.get("InvoiceLink").is_none(), "not without include");
    let linked = read_qbo(&api, id, Some("invoiceLink")).await;
    let link = linked["InvoiceLink"].as_str().expect("InvoiceLink");
    assert_eq!(linked["AllowOnlineCreditCardPayment"], true);
    assert!(link.starts_with("https://"), "{link}");
    // The link is the invoice's own: stable across reads, different for another invoice.
    assert_eq!(
        read_qbo(&api, id, Some("invoiceLink")).await["InvoiceLink"],
        linked["InvoiceLink"]
    );
    // No bill email, no link (Intuit: the link needs an email on the invoice).
    let bare = invoice_without_email(&api, &inv).await;
    let bare = read_qbo(&api, bare["Id"].as_str().expect("id"), Some("invoiceLink")).await;
    assert!(bare.get("InvoiceLink").is_none());
    // A company without online payments gives none, through the control API too.
    let (s, v) = api
        .control(
            "/_sandbox/online-payments",
            json!({"system": "quickbooks", "enabled": false}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(!sb
        .online_payments(System::QuickBooks, &api.qbo_realm)
        .expect("flag"));
    let off = read_qbo(&api, id, Some("invoiceLink")).await;
    assert!(off.get("InvoiceLink").is_none());
    assert_eq!(off["AllowOnlineCreditCardPayment"], false);
}

#[tokio::test]
async fn quickbooks_serves_the_invoice_pdf() {
    let api = Api::new(small(60)).await;
    let inv = open_qbo_invoice(&api).await;
    let id = inv["Id"].as_str().expect("id");
    let url = api.url(&format!("/v3/company/{}/invoice/{id}/pdf", api.qbo_realm));
    let r = api
        .http
        .get(&url)
        .bearer_auth(&api.qbo_token)
        .header("accept", "application/pdf")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["content-type"].to_str().expect("ct"),
        "application/pdf"
    );
    let b = r.bytes().await.expect("body");
    assert!(is_complete_pdf(&b));
    xref_is_exact(&b);
    let number = inv["DocNumber"].as_str().expect("number");
    assert!(contains(&b, &format!("Invoice {number}")));
    let due: rust_decimal::Decimal = inv["Balance"].to_string().parse().expect("balance");
    let human = overdued_connector::Money::new(due, overdued_connector::Currency::USD)
        .display_human()
        .to_string();
    assert!(contains(&b, &format!("Amount due: {human}")), "{human}");
    // JSON is not what this endpoint answers.
    let r = api
        .http
        .get(&url)
        .bearer_auth(&api.qbo_token)
        .header("accept", "application/json")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::NOT_ACCEPTABLE);
    // An unknown invoice is QuickBooks' 610.
    let r = api
        .http
        .get(api.url(&format!("/v3/company/{}/invoice/999999/pdf", api.qbo_realm)))
        .bearer_auth(&api.qbo_token)
        .header("accept", "application/pdf")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["Fault"]["Error"][0]["code"], "610");
    let stats = api.rs.sandbox.stats();
    assert_eq!(stats["requests"]["quickbooks.invoice.pdf"], 3, "{stats}");
}

#[tokio::test]
async fn xero_serves_the_pdf_and_counts_document_calls_in_its_limits() {
    let api = Api::new(SandboxOptions {
        enforce_limits: true,
        ..small(60)
    })
    .await;
    let list: Value = api
        .xero(Method::GET, "Invoices")
        .query(&[("Statuses", "AUTHORISED")])
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let inv = &list["Invoices"][0];
    let id = inv["InvoiceID"].as_str().expect("id");
    let pdf = |accept: &'static str| {
        api.http
            .get(api.url(&format!("/api.xro/2.0/Invoices/{id}")))
            .bearer_auth(&api.xero_token)
            .header("xero-tenant-id", &api.xero_tenant)
            .header("accept", accept)
    };
    let r = pdf("application/pdf").send().await.expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["content-type"].to_str().expect("ct"),
        "application/pdf"
    );
    let first: u64 = r.headers()["x-minlimit-remaining"]
        .to_str()
        .expect("h")
        .parse()
        .expect("n");
    let b = r.bytes().await.expect("body");
    assert!(is_complete_pdf(&b));
    xref_is_exact(&b);
    let number = inv["InvoiceNumber"].as_str().expect("number");
    assert!(contains(&b, &format!("Invoice {number}")));
    let online = api
        .xero(Method::GET, &format!("Invoices/{id}/OnlineInvoice"))
        .send()
        .await
        .expect("send");
    assert_eq!(online.status(), StatusCode::OK);
    let second: u64 = online.headers()["x-minlimit-remaining"]
        .to_str()
        .expect("h")
        .parse()
        .expect("n");
    assert_eq!(
        second + 1,
        first,
        "each document call is one call of the minute"
    );
    // The same path with JSON still answers the invoice.
    let json: Value = pdf("application/json")
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(json["Invoices"][0]["InvoiceID"], inv["InvoiceID"]);
    let stats = api.rs.sandbox.stats();
    assert_eq!(stats["requests"]["xero.invoices.pdf"], 1, "{stats}");
    assert_eq!(
        stats["requests"]["xero.invoices.onlineinvoice"], 1,
        "{stats}"
    );
}

#[test]
fn about_one_tenant_in_five_takes_no_online_payments_by_default() {
    let sb = overdued_sandbox::Sandbox::new(SandboxOptions {
        customers: 1,
        invoices: 0,
        quickbooks_tenants: 40,
        xero_tenants: 40,
        ..SandboxOptions::default()
    })
    .expect("sandbox");
    let without = sb
        .tenants()
        .iter()
        .filter(|t| !sb.online_payments(t.system, &t.id).expect("flag"))
        .count();
    assert!((4..=32).contains(&without), "{without} of 80 without");
}

#[tokio::test]
async fn quickbooks_pdf_reads_count_against_the_per_minute_limit() {
    let api = Api::new(SandboxOptions {
        enforce_limits: true,
        ..small(20)
    })
    .await;
    let inv = open_qbo_invoice(&api).await;
    let url = api.url(&format!(
        "/v3/company/{}/invoice/{}/pdf",
        api.qbo_realm,
        inv["Id"].as_str().expect("id")
    ));
    // The query above was the first call of the minute.
    for n in 1..overdued_sandbox::QBO_PER_MINUTE {
        let r = api
            .http
            .get(&url)
            .bearer_auth(&api.qbo_token)
            .header("accept", "application/pdf")
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::OK, "call {n}");
    }
    let r = api
        .http
        .get(&url)
        .bearer_auth(&api.qbo_token)
        .header("accept", "application/pdf")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
}
