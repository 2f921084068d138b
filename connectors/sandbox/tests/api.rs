//! End-to-end behaviour of the simulated APIs over HTTP on 127.0.0.1.

mod common;

use std::time::Duration as StdDuration;

use base64::Engine;
use chrono::{Duration, NaiveDate};
use common::{basic, small, Api};
use overdued_sandbox::{FaultConfig, FaultKind, SandboxOptions, System};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Digest;

#[tokio::test]
async fn paging_edges_for_both_systems() {
    for n in [0usize, 1, 1000, 1001, 2500] {
        let api = Api::new(small(n)).await;
        // QuickBooks: page until a short page.
        let mut seen = 0;
        let mut start = 1;
        loop {
            let (s, v) = api.qbo_query(&format!("SELECT * FROM Invoice ORDERBY MetaData.LastUpdatedTime STARTPOSITION {start} MAXRESULTS 1000")).await;
            assert_eq!(s, StatusCode::OK);
            let qr = &v["QueryResponse"];
            let page = qr
                .get("Invoice")
                .and_then(Value::as_array)
                .map(Vec::len)
                .unwrap_or(0);
            if page == 0 {
                assert_eq!(qr, &json!({}), "an empty result has no entity key");
            } else {
                assert_eq!(qr["startPosition"], json!(start));
                assert_eq!(qr["maxResults"], json!(page));
            }
            seen += page;
            start += page;
            if page < 1000 {
                break;
            }
        }
        assert_eq!(seen, n, "QuickBooks invoices for n={n}");
        let (_, count) = api.qbo_query("SELECT COUNT(*) FROM Invoice").await;
        assert_eq!(count["QueryResponse"]["totalCount"], json!(n));
        // Xero: pagination object.
        let mut ids = std::collections::HashSet::new();
        let mut page = 1;
        loop {
            let v: Value = api
                .xero(Method::GET, "Invoices")
                .query(&[("page", page.to_string()), ("pageSize", "1000".into())])
                .send()
                .await
                .expect("send")
                .json()
                .await
                .expect("json");
            let p = &v["pagination"];
            assert_eq!(p["itemCount"], json!(n));
            assert_eq!(p["pageCount"], json!(n.div_ceil(1000)));
            assert_eq!(p["pageSize"], json!(1000));
            let items = v["Invoices"].as_array().expect("Invoices").clone();
            for i in &items {
                ids.insert(i["InvoiceID"].as_str().expect("id").to_string());
            }
            if items.len() < 1000 {
                break;
            }
            page += 1;
        }
        assert_eq!(ids.len(), n, "Xero invoices for n={n}");
    }
}

#[tokio::test]
async fn page_size_limits_and_bad_queries_use_vendor_envelopes() {
    let api = Api::new(small(20)).await;
    let (s, v) = api.qbo_query("SELECT * FROM Invoice MAXRESULTS 1001").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["Fault"]["type"], "ValidationFault");
    for bad in [
        "SELEKT nonsense",
        "SELECT * FROM Invoice WHERE Balance > 0",
        "SELECT * FROM Invoice WHERE Nope = '1'",
        "SELECT * FROM Invoice WHERE Id > '1'",
        "'",
    ] {
        let (s, v) = api.qbo_query(bad).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}");
        assert!(v["Fault"]["Error"][0]["code"].is_string(), "{bad}: {v}");
    }
    let r = api
        .xero(Method::GET, "Invoices")
        .query(&[("page", "1"), ("pageSize", "1001")])
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["ErrorNumber"], 10);
    let r = api
        .xero(Method::GET, "Invoices")
        .query(&[("where", "Type==")])
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["Type"], "QueryParseException");
    // Bad JSON bodies.
    let r = api
        .qbo(Method::POST, "invoice")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.json::<Value>().await.expect("json")["Fault"].is_object());
    let r = api
        .xero(Method::PUT, "Invoices")
        .header("content-type", "application/json")
        .body("[1,")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.json::<Value>().await.expect("json")["ErrorNumber"].is_number());
    // XML would be the answer without Accept: application/json.
    let r = api
        .http
        .get(api.url("/api.xro/2.0/Invoices"))
        .bearer_auth(&api.xero_token)
        .header("xero-tenant-id", &api.xero_tenant)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::NOT_ACCEPTABLE);
}

#[tokio::test]
async fn xero_where_statuses_and_ids_filter() {
    let api = Api::new(small(300)).await;
    let v: Value = api
        .xero(Method::GET, "Invoices")
        .query(&[
            ("where", r#"Type=="ACCREC" AND AmountDue>0"#),
            ("Statuses", "AUTHORISED"),
            ("page", "1"),
            ("pageSize", "1000"),
        ])
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let items = v["Invoices"].as_array().expect("array");
    assert!(!items.is_empty());
    for i in items {
        assert_eq!(i["Status"], "AUTHORISED");
        assert!(i["AmountDue"].as_f64().expect("number") > 0.0);
        assert!(i["UpdatedDateUTC"]
            .as_str()
            .expect("date")
            .starts_with("/Date("));
    }
    let ids: Vec<&str> = items
        .iter()
        .take(3)
        .map(|i| i["InvoiceID"].as_str().expect("id"))
        .collect();
    let v: Value = api
        .xero(Method::GET, "Invoices")
        .query(&[("IDs", ids.join(","))])
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(v["Invoices"].as_array().expect("array").len(), 3);
    assert!(v.get("pagination").is_none());
    let one: Value = api
        .xero(Method::GET, &format!("Invoices/{}", ids[0]))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(one["Invoices"][0]["InvoiceID"], ids[0]);
    assert!(!one["Invoices"][0]["LineItems"]
        .as_array()
        .expect("lines")
        .is_empty());
    let missing = api
        .xero(Method::GET, "Invoices/00000000-0000-0000-0000-000000000001")
        .send()
        .await
        .expect("send");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    // Contacts carry EmailAddress.
    let c: Value = api
        .xero(Method::GET, "Contacts")
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert!(c["Contacts"][0]["EmailAddress"]
        .as_str()
        .expect("email")
        .contains('@'));
}

#[tokio::test]
async fn changed_since_filters_use_update_times() {
    let mut api = Api::new(small(200)).await;
    let later = api.rs.sandbox.now() + Duration::days(2);
    api.advance(later);
    // QuickBooks: a sparse update bumps LastUpdatedTime.
    let (_, v) = api
        .qbo_query("SELECT * FROM Invoice WHERE Balance > '0' MAXRESULTS 1")
        .await;
    let inv = &v["QueryResponse"]["Invoice"][0];
    let id = inv["Id"].as_str().expect("id");
    let body =
        json!({"Id": id, "SyncToken": inv["SyncToken"], "sparse": true, "DueDate": "2026-02-01"});
    let r = api
        .qbo(Method::POST, "invoice")
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    let since = later.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (_, v) = api.qbo_query(&format!("SELECT * FROM Invoice WHERE MetaData.LastUpdatedTime >= '{since}' ORDERBY MetaData.LastUpdatedTime")).await;
    let got = v["QueryResponse"]["Invoice"]
        .as_array()
        .expect("changed invoices");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["Id"], id);
    assert_eq!(got[0]["DueDate"], "2026-02-01");
    // Xero: If-Modified-Since, second precision, sees a newly created invoice only.
    let contact: Value = api
        .xero(Method::GET, "Contacts")
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let cid = contact["Contacts"][0]["ContactID"].clone();
    let new = json!({"Invoices": [{"Type": "ACCREC", "Contact": {"ContactID": cid}, "Date": "2026-01-07", "DueDate": "2026-01-21", "Status": "AUTHORISED", "LineItems": [{"Description": "Work", "Quantity": 1, "UnitAmount": 12.5}]}]});
    let created: Value = api
        .xero(Method::PUT, "Invoices")
        .json(&new)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let new_id = created["Invoices"][0]["InvoiceID"]
        .as_str()
        .expect("id")
        .to_string();
    let ims = later.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    let v: Value = api
        .xero(Method::GET, "Invoices")
        .header("If-Modified-Since", ims)
        .query(&[("page", "1")])
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let ids: Vec<&str> = v["Invoices"]
        .as_array()
        .expect("array")
        .iter()
        .map(|i| i["InvoiceID"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(ids, vec![new_id.as_str()]);
    let before = (later - Duration::seconds(1))
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    let v: Value = api
        .xero(Method::GET, "Invoices")
        .header("If-Modified-Since", before)
        .query(&[("page", "1")])
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(v["pagination"]["itemCount"], 1);
    // A history note does not change UpdatedDateUTC.
    api.advance(later + Duration::hours(1));
    let r = api
        .xero(Method::PUT, &format!("Invoices/{new_id}/History"))
        .json(&json!({"HistoryRecords": [{"Details": "Reminder 1 sent"}]}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    let after = (later + Duration::minutes(30))
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    let v: Value = api
        .xero(Method::GET, "Invoices")
        .header("If-Modified-Since", after)
        .query(&[("page", "1")])
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(v["pagination"]["itemCount"], 0);
    let h: Value = api
        .xero(Method::GET, &format!("Invoices/{new_id}/History"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert!(h["HistoryRecords"]
        .as_array()
        .expect("records")
        .iter()
        .any(|r| r["Details"] == "Reminder 1 sent"));
}

#[tokio::test]
async fn stale_sync_token_is_fault_5010() {
    let api = Api::new(small(10)).await;
    let (_, v) = api.qbo_query("SELECT * FROM Invoice MAXRESULTS 1").await;
    let inv = v["QueryResponse"]["Invoice"][0].clone();
    let id = inv["Id"].as_str().expect("id");
    let read: Value = api
        .qbo(Method::GET, &format!("invoice/{id}"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let token = read["Invoice"]["SyncToken"]
        .as_str()
        .expect("token")
        .to_string();
    let ok = api
        .qbo(Method::POST, "invoice")
        .json(&json!({"Id": id, "SyncToken": token, "sparse": true, "PrivateNote": "first"}))
        .send()
        .await
        .expect("send");
    assert_eq!(ok.status(), StatusCode::OK);
    let v: Value = ok.json().await.expect("json");
    assert_eq!(
        v["Invoice"]["SyncToken"],
        (token.parse::<u64>().expect("n") + 1).to_string()
    );
    let stale = api
        .qbo(Method::POST, "invoice")
        .json(&json!({"Id": id, "SyncToken": token, "sparse": true, "PrivateNote": "second"}))
        .send()
        .await
        .expect("send");
    assert_eq!(stale.status(), StatusCode::BAD_REQUEST);
    let v: Value = stale.json().await.expect("json");
    assert_eq!(v["Fault"]["Error"][0]["code"], "5010");
    assert_eq!(v["Fault"]["type"], "ValidationFault");
    let missing = api
        .qbo(Method::GET, "invoice/999999")
        .send()
        .await
        .expect("send");
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        missing.json::<Value>().await.expect("json")["Fault"]["Error"][0]["code"],
        "610"
    );
}

fn pkce() -> (String, String) {
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".to_string();
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

fn query_param(url: &str, k: &str) -> Option<String> {
    let q = url.split_once('?')?.1;
    q.split('&').find_map(|p| {
        p.split_once('=')
            .filter(|(a, _)| *a == k)
            .map(|(_, v)| v.to_string())
    })
}

async fn authorize(api: &Api, system: System) -> (Value, String) {
    let (verifier, challenge) = pkce();
    let (id, secret) = api.rs.sandbox.client_credentials(system);
    let (auth_path, token_path) = match system {
        System::QuickBooks => ("/oauth2/quickbooks/authorize", "/oauth2/v1/tokens/bearer"),
        System::Xero => ("/identity/connect/authorize", "/connect/token"),
    };
    let redirect = "http://127.0.0.1:9/callback";
    let r = api
        .http
        .get(api.url(auth_path))
        .query(&[
            ("client_id", id.as_str()),
            ("redirect_uri", redirect),
            ("state", "xyz"),
            ("scope", "accounting"),
            ("response_type", "code"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::FOUND);
    let loc = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    assert!(loc.starts_with(redirect));
    assert_eq!(query_param(&loc, "state").as_deref(), Some("xyz"));
    let realm = query_param(&loc, "realmId");
    assert_eq!(realm.is_some(), system == System::QuickBooks);
    let code = query_param(&loc, "code").expect("code");
    // A wrong verifier fails and burns the code.
    let bad = api
        .http
        .post(api.url(token_path))
        .header("authorization", basic(&id, &secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect),
            ("code_verifier", "wrong"),
        ])
        .send()
        .await
        .expect("send");
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        bad.json::<Value>().await.expect("json")["error"],
        "invalid_grant"
    );
    let r = api
        .http
        .get(api.url(auth_path))
        .query(&[
            ("client_id", id.as_str()),
            ("redirect_uri", redirect),
            ("state", "s2"),
            ("scope", "accounting"),
            ("response_type", "code"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await
        .expect("send");
    let code = query_param(r.headers()["location"].to_str().expect("loc"), "code").expect("code");
    // Form client credentials work as well as HTTP Basic.
    let tok = api
        .http
        .post(api.url(token_path))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect),
            ("code_verifier", &verifier),
            ("client_id", &id),
            ("client_secret", &secret),
        ])
        .send()
        .await
        .expect("send");
    assert_eq!(tok.status(), StatusCode::OK);
    (tok.json().await.expect("json"), token_path.to_string())
}

async fn refresh(api: &Api, system: System, path: &str, rt: &str) -> (StatusCode, Value) {
    let (id, secret) = api.rs.sandbox.client_credentials(system);
    let r = api
        .http
        .post(api.url(path))
        .header("authorization", basic(&id, &secret))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", rt)])
        .send()
        .await
        .expect("send");
    let s = r.status();
    (s, r.json().await.expect("json"))
}

#[tokio::test]
async fn quickbooks_tokens_expire_rotate_and_revoke() {
    let mut api = Api::new(small(5)).await;
    let (tok, path) = authorize(&api, System::QuickBooks).await;
    assert_eq!(tok["token_type"], "bearer");
    assert_eq!(tok["expires_in"], 3600);
    assert_eq!(tok["x_refresh_token_expires_in"], 8_726_400);
    api.qbo_token = tok["access_token"].as_str().expect("at").to_string();
    assert_eq!(
        api.qbo_query("SELECT * FROM Customer").await.0,
        StatusCode::OK
    );
    let t0 = api.rs.sandbox.now();
    api.rs.sandbox.set_now(t0 + Duration::minutes(61));
    let r = api
        .qbo(Method::GET, "query")
        .query(&[("query", "SELECT * FROM Customer")])
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let rt1 = tok["refresh_token"].as_str().expect("rt").to_string();
    // Within 24 hours of its issue a refresh returns the same refresh token (Intuit
    // changes its value only about once a day) with a new access token; it may be used
    // again (a lost answer costs nothing).
    let (s, t1) = refresh(&api, System::QuickBooks, &path, &rt1).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(t1["refresh_token"].as_str(), Some(rt1.as_str()));
    assert_ne!(t1["access_token"], tok["access_token"]);
    assert_eq!(t1["x_refresh_token_expires_in"], 8_726_400 - 61 * 60);
    api.rs
        .sandbox
        .set_now(t0 + Duration::hours(23) + Duration::minutes(59));
    let (s, t1b) = refresh(&api, System::QuickBooks, &path, &rt1).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(t1b["refresh_token"].as_str(), Some(rt1.as_str()));
    api.qbo_token = t1b["access_token"].as_str().expect("at").to_string();
    assert_eq!(
        api.qbo_query("SELECT * FROM Customer").await.0,
        StatusCode::OK
    );
    // From 24 hours on it rotates.
    api.rs.sandbox.set_now(t0 + Duration::hours(24));
    let (s, t2) = refresh(&api, System::QuickBooks, &path, &rt1).await;
    assert_eq!(s, StatusCode::OK);
    let rt2 = t2["refresh_token"].as_str().expect("rt").to_string();
    assert_ne!(rt1, rt2);
    assert_eq!(t2["x_refresh_token_expires_in"], 8_726_400);
    api.qbo_token = t2["access_token"].as_str().expect("at").to_string();
    assert_eq!(
        api.qbo_query("SELECT * FROM Customer").await.0,
        StatusCode::OK
    );
    // The rotated-out token is void at once.
    assert_eq!(
        refresh(&api, System::QuickBooks, &path, &rt1).await.1["error"],
        "invalid_grant"
    );
    // The new one is again returned as is for its first 24 hours.
    let (s, t2b) = refresh(&api, System::QuickBooks, &path, &rt2).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(t2b["refresh_token"].as_str(), Some(rt2.as_str()));
    // Rolling expiry: 99 days later the latest token still refreshes, and the new one
    // lasts another 100 days.
    api.rs.sandbox.set_now(t0 + Duration::days(99));
    let (s, t3) = refresh(&api, System::QuickBooks, &path, &rt2).await;
    assert_eq!(s, StatusCode::OK);
    let rt3 = t3["refresh_token"].as_str().expect("rt").to_string();
    assert_ne!(rt2, rt3);
    api.rs.sandbox.set_now(t0 + Duration::days(198));
    let (s, t4) = refresh(&api, System::QuickBooks, &path, &rt3).await;
    assert_eq!(s, StatusCode::OK);
    let rt4 = t4["refresh_token"].as_str().expect("rt").to_string();
    assert_ne!(rt3, rt4);
    // Unused for more than 100 days: expired.
    api.rs.sandbox.set_now(t0 + Duration::days(300));
    let (s, e) = refresh(&api, System::QuickBooks, &path, &rt4).await;
    assert_eq!(
        (s, e["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    // Revocation through the control API.
    let (_, t5) = api
        .control(
            "/_sandbox/token",
            json!({"system": "quickbooks", "tenant": api.qbo_realm}),
        )
        .await;
    api.qbo_token = t5["access_token"].as_str().expect("at").to_string();
    assert_eq!(
        api.qbo_query("SELECT * FROM Customer").await.0,
        StatusCode::OK
    );
    let (s, _) = api
        .control(
            "/_sandbox/revoke",
            json!({"system": "quickbooks", "tenant": api.qbo_realm}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let r = api
        .qbo(Method::GET, "query")
        .query(&[("query", "SELECT * FROM Customer")])
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (s, e) = refresh(
        &api,
        System::QuickBooks,
        &path,
        t5["refresh_token"].as_str().expect("rt"),
    )
    .await;
    assert_eq!(
        (s, e["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn xero_tokens_rotate_with_a_grace_period_and_connections_list_tenants() {
    let mut api = Api::new(SandboxOptions {
        xero_tenants: 2,
        ..small(5)
    })
    .await;
    let (tok, path) = authorize(&api, System::Xero).await;
    assert_eq!(tok["expires_in"], 1800);
    api.xero_token = tok["access_token"].as_str().expect("at").to_string();
    let conns: Value = api
        .http
        .get(api.url("/connections"))
        .bearer_auth(&api.xero_token)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let conns = conns.as_array().expect("array");
    assert_eq!(conns.len(), 2);
    for k in [
        "id",
        "tenantId",
        "tenantName",
        "tenantType",
        "createdDateUtc",
        "updatedDateUtc",
    ] {
        assert!(conns[0][k].is_string(), "{k}");
    }
    // One consent, one authEventId on each of its tenant connections.
    assert!(conns[0]["authEventId"].is_string());
    assert_eq!(conns[0]["authEventId"], conns[1]["authEventId"]);
    assert_ne!(conns[0]["id"], conns[1]["id"]);
    assert_eq!(
        api.xero(Method::GET, "Contacts")
            .send()
            .await
            .expect("send")
            .status(),
        StatusCode::OK
    );
    // A tenant the token does not reach: 403.
    let r = api
        .http
        .get(api.url("/api.xro/2.0/Contacts"))
        .bearer_auth(&api.xero_token)
        .header("accept", "application/json")
        .header("xero-tenant-id", "00000000-0000-0000-0000-000000000000")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let t0 = api.rs.sandbox.now();
    api.rs.sandbox.set_now(t0 + Duration::minutes(31));
    assert_eq!(
        api.xero(Method::GET, "Contacts")
            .send()
            .await
            .expect("send")
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let rt1 = tok["refresh_token"].as_str().expect("rt").to_string();
    let (s, t2) = refresh(&api, System::Xero, &path, &rt1).await;
    assert_eq!(s, StatusCode::OK);
    assert_ne!(t2["refresh_token"].as_str(), Some(rt1.as_str()));
    // The previous refresh token still works for 30 minutes (a lost response)...
    api.rs.sandbox.set_now(t0 + Duration::minutes(31 + 29));
    let (s, _) = refresh(&api, System::Xero, &path, &rt1).await;
    assert_eq!(s, StatusCode::OK);
    // ...and not after.
    api.rs.sandbox.set_now(t0 + Duration::minutes(31 + 31));
    let (s, e) = refresh(&api, System::Xero, &path, &rt1).await;
    assert_eq!(
        (s, e["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let (s, _) = refresh(
        &api,
        System::Xero,
        &path,
        t2["refresh_token"].as_str().expect("rt"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn replayed_writes_change_nothing() {
    let api = Api::new(small(30)).await;
    let (_, v) = api
        .qbo_query("SELECT * FROM Invoice WHERE Balance > '0' MAXRESULTS 1")
        .await;
    let id = v["QueryResponse"]["Invoice"][0]["Id"]
        .as_str()
        .expect("id")
        .to_string();
    let send = || {
        api.qbo(Method::POST, &format!("invoice/{id}/send"))
            .query(&[("sendTo", "ap@example.com"), ("requestid", "inv-send-1")])
            .header("content-type", "application/octet-stream")
    };
    let a = send().send().await.expect("send");
    assert_eq!(a.status(), StatusCode::OK);
    let a = a.text().await.expect("body");
    let b = send()
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("body");
    assert_eq!(a, b, "a replay returns the original response");
    let sent: Value = serde_json::from_str(&a).expect("json");
    assert_eq!(sent["Invoice"]["EmailStatus"], "EmailSent");
    assert_eq!(sent["Invoice"]["BillEmail"]["Address"], "ap@example.com");
    // A JSON content type is refused for send.
    let r = api
        .qbo(Method::POST, &format!("invoice/{id}/send"))
        .json(&json!({}))
        .send()
        .await
        .expect("send");
    assert!(r.status().is_client_error());
    // Xero: Email and a fee invoice with Idempotency-Key.
    let v: Value = api
        .xero(Method::GET, "Invoices")
        .query(&[("Statuses", "AUTHORISED"), ("page", "1")])
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let inv = v["Invoices"][0].clone();
    let xid = inv["InvoiceID"].as_str().expect("id").to_string();
    for _ in 0..2 {
        let r = api
            .xero(Method::POST, &format!("Invoices/{xid}/Email"))
            .header("Idempotency-Key", "email-1")
            .json(&json!({}))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }
    let fee = json!({"Invoices": [{"Type": "ACCREC", "Contact": {"ContactID": inv["Contact"]["ContactID"]}, "Date": "2026-01-05", "DueDate": "2026-01-19", "Status": "AUTHORISED", "Reference": format!("Late fee for {} [overdued-fee]", inv["InvoiceNumber"].as_str().unwrap_or("")), "LineItems": [{"Description": "Late fee", "Quantity": 1, "UnitAmount": 25}]}]});
    let mut created = Vec::new();
    for _ in 0..2 {
        let r = api
            .xero(Method::PUT, "Invoices")
            .header("Idempotency-Key", "fee-1")
            .json(&fee)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::OK);
        created.push(r.json::<Value>().await.expect("json")["Invoices"][0]["InvoiceID"].clone());
    }
    assert_eq!(created[0], created[1]);
    let ledger = api.ledger().await;
    let effects = ledger["effects"].as_array().expect("effects");
    let kinds: Vec<(&str, &str)> = effects
        .iter()
        .map(|e| {
            (
                e["system"].as_str().unwrap_or(""),
                e["kind"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![("quickbooks", "email"), ("xero", "email"), ("xero", "fee")]
    );
    assert_eq!(effects[0]["idempotency_key"], "inv-send-1");
    assert_eq!(effects[2]["invoice_id"], xid.as_str());
    assert_eq!(effects[2]["detail"]["amount"], "25.00");
    // The fee invoice is a real invoice in the world.
    let r = api
        .xero(
            Method::GET,
            &format!("Invoices/{}", created[0].as_str().expect("id")),
        )
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    // Email is refused for a draft.
    let d = api.xero(Method::PUT, "Invoices").json(&json!({"Type": "ACCREC", "Contact": {"Name": "New Person", "EmailAddress": "new@example.com"}})).send().await.expect("send");
    let did = d.json::<Value>().await.expect("json")["Invoices"][0]["InvoiceID"]
        .as_str()
        .expect("id")
        .to_string();
    let r = api
        .xero(Method::POST, &format!("Invoices/{did}/Email"))
        .json(&json!({}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.expect("json")["ErrorNumber"], 10);
}

#[tokio::test]
async fn summarize_errors_false_reports_per_item() {
    let api = Api::new(small(5)).await;
    let body = json!({"Invoices": [
        {"Type": "ACCREC", "Contact": {"Name": "Valid Co"}, "DueDate": "2026-02-01", "Status": "AUTHORISED", "LineItems": [{"Description": "x", "UnitAmount": 10}]},
        {"Type": "ACCREC", "Status": "AUTHORISED", "LineItems": []}
    ]});
    let r = api
        .xero(Method::PUT, "Invoices")
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["Type"], "ValidationException");
    assert!(!v["Elements"][0]["ValidationErrors"]
        .as_array()
        .expect("errors")
        .is_empty());
    let r = api
        .xero(Method::PUT, "Invoices")
        .query(&[("summarizeErrors", "false")])
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["Invoices"][0]["HasErrors"], false);
    assert_eq!(v["Invoices"][1]["HasErrors"], true);
    assert!(!v["Invoices"][1]["ValidationErrors"]
        .as_array()
        .expect("errors")
        .is_empty());
}

#[tokio::test]
async fn customers_react_to_reminders_and_the_clock() {
    let mut api = Api::new(small(0)).await;
    let (s, c) = api
        .control(
            "/_sandbox/invoices",
            json!({"system": "xero", "customer_name": "Prompt Payer", "customer_email": "pp@example.com", "number": "T-1", "currency": "EUR", "total": "120.50",
                    "issue_date": "2025-12-01", "due_date": "2025-12-31", "behaviour": {"kind": "pays_after_first_reminder", "days": 3}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let id = c["id"].as_str().expect("id").to_string();
    let r = api
        .xero(Method::POST, &format!("Invoices/{id}/Email"))
        .json(&json!({}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let now = api.rs.sandbox.now();
    api.control(
        "/_sandbox/clock",
        json!({"now": (now + Duration::days(2)).to_rfc3339()}),
    )
    .await;
    api.advance(now + Duration::days(2));
    let v: Value = api
        .xero(Method::GET, &format!("Invoices/{id}"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(v["Invoices"][0]["AmountDue"].to_string(), "120.50");
    api.control(
        "/_sandbox/clock",
        json!({"now": (now + Duration::days(4)).to_rfc3339()}),
    )
    .await;
    api.advance(now + Duration::days(4));
    let v: Value = api
        .xero(Method::GET, &format!("Invoices/{id}"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(v["Invoices"][0]["Status"], "PAID");
    assert_eq!(v["Invoices"][0]["AmountDue"].to_string(), "0.00");
    // A manual partial payment through the control API.
    let (_, c2) = api.control("/_sandbox/invoices", json!({"system": "quickbooks", "customer_name": "Slow Co", "customer_email": "slow@example.com", "total": 100, "issue_date": "2025-12-01", "due_date": "2025-12-15"})).await;
    let qid = c2["id"].as_str().expect("id").to_string();
    let (s, _) = api
        .control(
            &format!(
                "/_sandbox/invoices/quickbooks/{}/{qid}/payments",
                api.qbo_realm
            ),
            json!({"amount": "40.25", "date": "2026-01-06"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let v: Value = api
        .qbo(Method::GET, &format!("invoice/{qid}"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(v["Invoice"]["Balance"].to_string(), "59.75");
    assert_eq!(v["Invoice"]["LinkedTxn"][0]["TxnType"], "Payment");
    let (s, _) = api
        .control(
            &format!(
                "/_sandbox/invoices/quickbooks/{}/{qid}/payments",
                api.qbo_realm
            ),
            json!({"amount": "1000"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let clock: Value = api
        .http
        .get(api.url("/_sandbox/clock"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert!(clock["now"]
        .as_str()
        .expect("now")
        .starts_with("2026-01-09"));
}

#[tokio::test]
async fn qbo_fee_invoice_cdc_and_delete_stub() {
    let api = Api::new(small(20)).await;
    let (_, v) = api
        .qbo_query("SELECT * FROM Invoice WHERE Balance > '0' MAXRESULTS 1")
        .await;
    let orig = v["QueryResponse"]["Invoice"][0].clone();
    let mut body = json!({"CustomerRef": {"value": orig["CustomerRef"]["value"]}, "PrivateNote": format!("Late fee for invoice {} [overdued-fee]", orig["DocNumber"].as_str().unwrap_or(""))});
    // Money goes on the wire as an exact JSON number.
    body["Line"] = serde_json::from_str(r#"[{"Amount": 15.00, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": {"ItemRef": {"value": "99", "name": "Late Fee"}}}]"#).expect("lines");
    let r = api
        .qbo(Method::POST, "invoice")
        .query(&[("requestid", "fee-q-1")])
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    let fee: Value = r.json().await.expect("json");
    assert_eq!(fee["Invoice"]["TotalAmt"].to_string(), "15.00");
    let fid = fee["Invoice"]["Id"].as_str().expect("id").to_string();
    let ledger = api.ledger().await;
    assert_eq!(ledger["effects"][0]["kind"], "fee");
    assert_eq!(ledger["effects"][0]["idempotency_key"], "fee-q-1");
    assert_eq!(ledger["effects"][0]["invoice_id"], orig["Id"]);
    // Delete the fee invoice: CDC returns a stub.
    let r = api
        .qbo(Method::POST, "invoice")
        .query(&[("operation", "delete")])
        .json(&json!({"Id": fid, "SyncToken": "0"}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    let since = (api.rs.sandbox.now() - Duration::hours(1)).to_rfc3339();
    let cdc: Value = api
        .qbo(Method::GET, "cdc")
        .query(&[
            ("entities", "Invoice,Customer"),
            ("changedSince", since.as_str()),
        ])
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let invs = cdc["CDCResponse"][0]["QueryResponse"][0]["Invoice"]
        .as_array()
        .expect("invoices");
    assert!(invs
        .iter()
        .any(|i| i["status"] == "Deleted" && i["Id"] == fid.as_str() && i["domain"] == "QBO"));
    assert_eq!(cdc["CDCResponse"][0]["QueryResponse"][1], json!({}));
    let too_old = (api.rs.sandbox.now() - Duration::days(31)).to_rfc3339();
    let r = api
        .qbo(Method::GET, "cdc")
        .query(&[("entities", "Invoice"), ("changedSince", too_old.as_str())])
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = api
        .qbo(Method::GET, &format!("invoice/{fid}"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Customers.
    let cid = orig["CustomerRef"]["value"].as_str().expect("cid");
    let c: Value = api
        .qbo(Method::GET, &format!("customer/{cid}"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert!(c["Customer"]["PrimaryEmailAddr"]["Address"]
        .as_str()
        .expect("email")
        .contains('@'));
    let (_, q) = api
        .qbo_query(&format!("SELECT * FROM Customer WHERE Id = '{cid}'"))
        .await;
    assert_eq!(
        q["QueryResponse"]["Customer"].as_array().expect("c").len(),
        1
    );
}

async fn faulty(kind: FaultKind, endpoint: &str) -> Api {
    let api = Api::new(small(10)).await;
    api.rs.sandbox.set_faults(FaultConfig {
        rate: 1.0,
        kinds: vec![kind],
        seed: 3,
        endpoints: vec![endpoint.into()],
        slow_ms: 1500,
        storm_length: 2,
    });
    api
}

#[tokio::test]
async fn every_fault_kind_behaves() {
    // Reset: no response at all.
    let api = faulty(FaultKind::Reset, "xero.invoices.list").await;
    assert!(api.xero(Method::GET, "Invoices").send().await.is_err());
    // Other endpoints are untouched by the filter.
    assert_eq!(
        api.xero(Method::GET, "Contacts")
            .send()
            .await
            .expect("send")
            .status(),
        StatusCode::OK
    );

    let api = faulty(FaultKind::ServerError, "quickbooks.query").await;
    let r = api
        .qbo(Method::GET, "query")
        .query(&[("query", "SELECT * FROM Invoice")])
        .send()
        .await
        .expect("send");
    assert!(r.status().is_server_error());
    assert!(r.json::<Value>().await.expect("json")["Fault"].is_object());

    let api = faulty(FaultKind::RateLimit, "xero").await;
    for _ in 0..2 {
        let r = api
            .xero(Method::GET, "Invoices")
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(r.headers().contains_key("retry-after"));
        assert_eq!(r.headers()["x-rate-limit-problem"], "minute");
    }

    let api = faulty(FaultKind::Slow, "xero.invoices.list").await;
    let quick = reqwest::Client::builder()
        .timeout(StdDuration::from_millis(300))
        .build()
        .expect("client");
    let r = quick
        .get(api.url("/api.xro/2.0/Invoices"))
        .bearer_auth(&api.xero_token)
        .header("xero-tenant-id", &api.xero_tenant)
        .header("accept", "application/json")
        .send()
        .await;
    assert!(r.expect_err("times out").is_timeout());

    let api = faulty(FaultKind::Truncated, "xero.invoices.list").await;
    let r = api
        .xero(Method::GET, "Invoices")
        .send()
        .await
        .expect("headers arrive");
    assert!(r.bytes().await.is_err(), "the body is cut short");

    let api = faulty(FaultKind::Malformed, "quickbooks.invoice.read").await;
    let (_, v) = api.qbo_query("SELECT * FROM Invoice MAXRESULTS 1").await;
    let id = v["QueryResponse"]["Invoice"][0]["Id"]
        .as_str()
        .expect("id")
        .to_string();
    let body = api
        .qbo(Method::GET, &format!("invoice/{id}"))
        .send()
        .await
        .expect("send")
        .bytes()
        .await
        .expect("complete body");
    assert!(serde_json::from_slice::<Value>(&body).is_err());

    // Lost response: the write is applied, the client sees an error; the retry with the
    // same key does nothing new.
    let api = faulty(FaultKind::LostResponse, "xero.invoices.email").await;
    let v: Value = api
        .xero(Method::GET, "Invoices")
        .query(&[("Statuses", "AUTHORISED")])
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let id = v["Invoices"][0]["InvoiceID"]
        .as_str()
        .expect("id")
        .to_string();
    let r = api
        .xero(Method::POST, &format!("Invoices/{id}/Email"))
        .header("Idempotency-Key", "k-lost")
        .json(&json!({}))
        .send()
        .await;
    assert!(r.is_err());
    assert_eq!(
        api.ledger().await["effects"]
            .as_array()
            .expect("effects")
            .len(),
        1
    );
    api.rs.sandbox.set_faults(FaultConfig::default());
    let r = api
        .xero(Method::POST, &format!("Invoices/{id}/Email"))
        .header("Idempotency-Key", "k-lost")
        .json(&json!({}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        api.ledger().await["effects"]
            .as_array()
            .expect("effects")
            .len(),
        1
    );
    let stats: Value = api
        .http
        .get(api.url("/_sandbox/stats"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(stats["faults_injected"]["lost_response"], 1);
}

#[tokio::test]
async fn xero_limits_answer_429_with_headers_and_count_violations() {
    let api = Api::new(SandboxOptions {
        enforce_limits: true,
        ..small(3)
    })
    .await;
    let mut last_remaining = usize::MAX;
    for k in 0..60 {
        let r = api
            .xero(Method::GET, "Contacts")
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::OK, "call {k}");
        let rem: usize = r.headers()["x-minlimit-remaining"]
            .to_str()
            .expect("h")
            .parse()
            .expect("n");
        assert!(rem < last_remaining);
        last_remaining = rem;
        assert!(r.headers().contains_key("x-daylimit-remaining"));
        assert!(r.headers().contains_key("x-appminlimit-remaining"));
    }
    assert_eq!(last_remaining, 0);
    let r = api
        .xero(Method::GET, "Contacts")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["x-rate-limit-problem"], "minute");
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .expect("h")
        .parse()
        .expect("n");
    assert!((1..=60).contains(&retry));
    assert_eq!(api.rs.sandbox.ledger().rate_limit_violations, 1);
    // 6000x: a limit minute lasts 10 ms.
    let (s, _) = api
        .control("/_sandbox/limits", json!({"time_scale": 6000.0}))
        .await;
    assert_eq!(s, StatusCode::OK);
    tokio::time::sleep(StdDuration::from_millis(30)).await;
    assert_eq!(
        api.xero(Method::GET, "Contacts")
            .send()
            .await
            .expect("send")
            .status(),
        StatusCode::OK
    );
    // Concurrency: slow calls hold their slot.
    api.control("/_sandbox/limits", json!({"time_scale": 1.0}))
        .await;
    api.rs.sandbox.set_faults(FaultConfig {
        rate: 1.0,
        kinds: vec![FaultKind::Slow],
        endpoints: vec!["xero.contacts".into()],
        slow_ms: 400,
        ..FaultConfig::default()
    });
    api.control("/_sandbox/limits", json!({"time_scale": 6000.0}))
        .await;
    let calls: Vec<_> = (0..7)
        .map(|_| api.xero(Method::GET, "Contacts").send())
        .collect();
    let results = futures_join(calls).await;
    let problems: Vec<String> = results
        .iter()
        .filter(|r| r.0 == StatusCode::TOO_MANY_REQUESTS)
        .map(|r| r.1.clone())
        .collect();
    assert!(problems.iter().any(|p| p == "concurrent"), "{results:?}");
    let ledger = api.ledger().await;
    assert!(ledger["rate_limit_violations"].as_u64().expect("n") >= 3);
    // Unenforced: violations are still counted, calls go through.
    api.rs.sandbox.set_faults(FaultConfig::default());
    api.control(
        "/_sandbox/limits",
        json!({"enforce": false, "time_scale": 1.0}),
    )
    .await;
    let before = api.rs.sandbox.ledger().rate_limit_violations;
    for _ in 0..70 {
        assert_eq!(
            api.xero(Method::GET, "Contacts")
                .send()
                .await
                .expect("send")
                .status(),
            StatusCode::OK
        );
    }
    assert!(api.rs.sandbox.ledger().rate_limit_violations > before);
}

async fn futures_join(
    calls: Vec<
        impl std::future::Future<Output = reqwest::Result<reqwest::Response>> + Send + 'static,
    >,
) -> Vec<(StatusCode, String)> {
    let handles: Vec<_> = calls.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        let r = h.await.expect("join").expect("send");
        let p = r
            .headers()
            .get("x-rate-limit-problem")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        out.push((r.status(), p));
    }
    out
}

#[tokio::test]
async fn qbo_throttles_at_500_per_minute() {
    let api = Api::new(SandboxOptions {
        enforce_limits: true,
        ..small(1)
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..501 {
        let r = api
            .qbo(Method::GET, "query")
            .query(&[("query", "SELECT * FROM Customer MAXRESULTS 1")])
            .send()
            .await
            .expect("send");
        statuses.push(r.status());
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(r.headers().contains_key("retry-after"));
            assert!(r.text().await.expect("body").contains("ThrottleExceeded"));
        }
    }
    assert!(statuses[..500].iter().all(|s| *s == StatusCode::OK));
    assert_eq!(statuses[500], StatusCode::TOO_MANY_REQUESTS);
}

async fn script(seed: u64) -> (Vec<String>, Value) {
    let mut api = Api::new(SandboxOptions { seed, ..small(150) }).await;
    let mut out = Vec::new();
    out.push(
        api.xero(Method::GET, "Invoices")
            .query(&[("page", "1")])
            .send()
            .await
            .expect("send")
            .text()
            .await
            .expect("body"),
    );
    out.push(
        api.qbo_query("SELECT * FROM Invoice STARTPOSITION 1 MAXRESULTS 1000")
            .await
            .1
            .to_string(),
    );
    out.push(
        api.xero(Method::GET, "Contacts")
            .send()
            .await
            .expect("send")
            .text()
            .await
            .expect("body"),
    );
    let v: Value = serde_json::from_str(&out[0]).expect("json");
    for inv in v["Invoices"]
        .as_array()
        .expect("a")
        .iter()
        .filter(|i| i["Status"] == "AUTHORISED")
        .take(10)
    {
        let id = inv["InvoiceID"].as_str().expect("id");
        api.xero(Method::POST, &format!("Invoices/{id}/Email"))
            .json(&json!({}))
            .send()
            .await
            .expect("send");
    }
    let now = api.rs.sandbox.now();
    api.advance(now + Duration::days(30));
    out.push(
        api.xero(Method::GET, "Invoices")
            .query(&[("page", "1")])
            .send()
            .await
            .expect("send")
            .text()
            .await
            .expect("body"),
    );
    (
        out,
        serde_json::to_value(api.rs.sandbox.ledger()).expect("ledger"),
    )
}

#[tokio::test]
async fn same_seed_same_world_and_ledger() {
    let (a, la) = script(11).await;
    let (b, lb) = script(11).await;
    assert_eq!(a, b);
    assert_eq!(la, lb);
    assert_eq!(la["effects"].as_array().expect("effects").len(), 10);
    let (c, _) = script(12).await;
    assert_ne!(a[0], c[0]);
    // Payments landed between the two listings.
    assert_ne!(a[0], a[3]);
}

#[tokio::test]
async fn state_file_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("world.json");
    let opts = SandboxOptions {
        state_file: Some(path.clone()),
        ..small(20)
    };
    let api = Api::new(opts.clone()).await;
    let created = api
        .rs
        .sandbox
        .create_invoice(overdued_sandbox::NewInvoice {
            system: System::Xero,
            tenant: None,
            customer_name: "Persisted Ltd".into(),
            customer_email: "p@example.com".into(),
            number: Some("P-1".into()),
            currency: None,
            total: rust_decimal::Decimal::new(9999, 2),
            issue_date: NaiveDate::from_ymd_opt(2026, 1, 1).expect("date"),
            due_date: NaiveDate::from_ymd_opt(2026, 1, 15).expect("date"),
            behaviour: None,
        })
        .expect("created");
    let r = api
        .xero(Method::POST, &format!("Invoices/{}/Email", created.id))
        .json(&json!({}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let Api { rs, .. } = api;
    rs.shutdown().await.expect("shutdown saves");
    assert!(path.exists());
    let again = Api::new(SandboxOptions { seed: 999, ..opts }).await;
    let r = again
        .xero(Method::GET, &format!("Invoices/{}", created.id))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(again.rs.sandbox.ledger().effects.len(), 1);
}
