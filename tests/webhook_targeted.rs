//! The webhook path against the real binary and the sandbox: a payment's signed webhook
//! re-reads only the invoice it settled (no sync of the connection), and its reminder,
//! left unfinished by a failed send, never goes; another invoice's stays and goes at the
//! next full cycle. A webhook naming an invoice nobody knows, or one with a forged
//! signature, changes nothing. A Xero INVOICE event re-reads just its invoice the same way.

#[path = "support/service.rs"]
mod service;

use std::time::Duration;

use serde_json::Value;
use service::*;

const KEY: &str = "qbo-verifier";

const POLICY: &str = r#"
[policies.default]
max_reminders_per_customer_per_day = 5
notice_days = 0

[[policies.default.steps]]
offset = "+1d"
action = "remind"

[policies.default.send_window]
cron = "* * * * *"
"#;

fn lines_with(p: &Proc, needle: &str) -> Vec<String> {
    p.stderr
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(needle))
        .cloned()
        .collect()
}

/// Full cycles of the QuickBooks connection so far (not the targeted ones).
fn full_cycles(p: &Proc) -> usize {
    lines_with(p, "cycle finished connection=sandbox-qbo")
        .iter()
        .filter(|l| !l.contains("targeted"))
        .count()
}

fn sandbox_json(sb: &Sandbox, path: &str) -> Value {
    let r = get(&sb.addr, path);
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

/// Requests the sandbox served per endpoint name.
fn served(sb: &Sandbox, endpoint: &str) -> u64 {
    sandbox_json(sb, "/_sandbox/stats")["requests"][endpoint]
        .as_u64()
        .unwrap_or(0)
}

fn invoice(sb: &Sandbox, realm: &str, id: &str) -> Value {
    sandbox_json(sb, &format!("/_sandbox/invoices/quickbooks/{realm}/{id}"))
}

fn post_signed(addr: &str, body: &str, key: &str) -> u16 {
    http(
        addr,
        "POST",
        "/webhooks/quickbooks",
        &[("intuit-signature", &hmac_b64(body, key))],
        body,
    )
    .status
}

fn legacy(realm: &str, entities: &[(&str, String)]) -> String {
    let list: Vec<String> = entities
        .iter()
        .map(|(name, id)| {
            format!(
                r#"{{"name":"{name}","id":"{id}","operation":"Update","lastUpdated":"2026-01-05T10:00:00.000Z"}}"#
            )
        })
        .collect();
    format!(
        r#"{{"eventNotifications":[{{"realmId":"{realm}","dataChangeEvent":{{"entities":[{}]}}}}]}}"#,
        list.join(",")
    )
}

/// A sandbox world whose config polls hourly (only webhooks start anything after the
/// first cycle), with `webhooks` as its `[daemon.webhooks]` keys and [`POLICY`]; returns
/// the world and the value of its config's first `field = "..."` line.
fn world_with_webhooks(dir: &std::path::Path, webhooks: &str, field: &str) -> (Sandbox, String) {
    let sb = start_sandbox_with(dir, &["--invoices", "40", "--customers", "12"]);
    let text = std::fs::read_to_string(&sb.config).unwrap();
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field} = \"")))
        .map(|v| v.trim_end_matches('"').to_string())
        .unwrap();
    let text = text.replace(
        "poll_interval = \"1m\"",
        "poll_interval = \"1h\"\nfull_sync_interval = \"1h\"",
    );
    std::fs::write(
        &sb.config,
        format!("{text}\n[daemon.webhooks]\n{webhooks}\n{POLICY}"),
    )
    .unwrap();
    (sb, value)
}

#[test]
fn a_payment_webhook_stops_only_its_invoice_without_a_sync() {
    let dir = tempfile::tempdir().unwrap();
    let (sb, realm) = world_with_webhooks(
        dir.path(),
        &format!("quickbooks_verifier_token = \"{KEY}\""),
        "realm_id",
    );
    // Every reminder the first cycle tries fails (and stays in the journal, to retry).
    sandbox_post(
        &sb,
        "/_sandbox/faults",
        r#"{"rate":1.0,"kinds":["server_error"],"endpoints":["quickbooks.invoice.send"],"seed":1}"#,
    );
    let mut d = spawn_daemon(&sb.config, None, "info");
    let addr = http_addr_from_log(&mut d);
    poll_until("the first QuickBooks cycle", || {
        (full_cycles(&d) >= 1).then_some(())
    });
    sandbox_post(&sb, "/_sandbox/faults", r#"{"rate":0.0}"#);
    let first = lines_with(&d, "cycle finished connection=sandbox-qbo").join("\n");
    assert!(
        !first.contains("failed=0"),
        "the first cycle's reminders failed: {first}"
    );

    // Two overdue invoices of different customers, neither reminded yet.
    let today = chrono::Utc::now().date_naive().to_string();
    let mut overdue: Vec<Value> = Vec::new();
    for id in 13..13 + 60 {
        let r = get(
            &sb.addr,
            &format!("/_sandbox/invoices/quickbooks/{realm}/{id}"),
        );
        if r.status != 200 {
            continue;
        }
        let v: Value = serde_json::from_str(&r.body).unwrap();
        let due = v["due_date"].as_str().unwrap().to_string();
        if v["status"] == "AUTHORISED"
            && due.as_str() < today.as_str()
            && v["reminders"] == 0
            && overdue
                .iter()
                .all(|o| o["customer"]["id"] != v["customer"]["id"])
        {
            overdue.push(v);
        }
    }
    assert!(overdue.len() >= 2, "{overdue:?}");
    let (a, b) = (&overdue[0], &overdue[1]);
    let a_id = a["id"].as_str().unwrap();
    let b_id = b["id"].as_str().unwrap();

    // A forged signature and an invoice nobody knows change nothing.
    let effects0 = sandbox_json(&sb, "/_sandbox/ledger")["effects"]
        .as_array()
        .unwrap()
        .len();
    let queries0 = served(&sb, "quickbooks.query");
    let cdc0 = served(&sb, "quickbooks.cdc");
    assert_eq!(
        post_signed(
            &addr,
            &legacy(&realm, &[("Invoice", a_id.into())]),
            "forged"
        ),
        401
    );
    assert_eq!(
        post_signed(&addr, &legacy(&realm, &[("Invoice", "999999".into())]), KEY),
        200
    );
    let unknown = d.wait_stderr("targeted cycle finished");
    assert!(unknown.contains("unknown=999999"), "{unknown}");
    assert!(unknown.contains("invoices= "), "nothing stored: {unknown}");
    assert_eq!(
        served(&sb, "quickbooks.query"),
        queries0 + 1,
        "one read by id"
    );

    // The customer pays A; QuickBooks sends the Payment's webhook.
    let paid = sandbox_post(
        &sb,
        &format!("/_sandbox/invoices/quickbooks/{realm}/{a_id}/payments"),
        &format!(r#"{{"amount":"{}"}}"#, a["balance"].as_str().unwrap()),
    );
    let payment: Value = serde_json::from_str(&paid.body).unwrap();
    let payment_id = payment["payment_id"].as_str().unwrap().to_string();
    let reads0 = served(&sb, "quickbooks.payment.read");
    assert_eq!(
        post_signed(&addr, &legacy(&realm, &[("Payment", payment_id)]), KEY),
        200
    );
    poll_until("the payment's targeted cycle", || {
        (lines_with(&d, "targeted cycle finished").len() >= 2).then_some(())
    });
    let line = lines_with(&d, "targeted cycle finished").pop().unwrap();
    let a_number = a["number"].as_str().unwrap();
    assert!(
        line.contains(&format!("invoices={a_number} (")) && line.contains("paid"),
        "{line}"
    );
    assert!(line.contains("actions_closed=1"), "{line}");
    assert!(
        !line.contains(b["number"].as_str().unwrap()),
        "only the paid invoice: {line}"
    );
    assert_eq!(served(&sb, "quickbooks.payment.read"), reads0 + 1);
    assert_eq!(
        served(&sb, "quickbooks.query"),
        queries0 + 2,
        "one read by id per webhook, no page of the connection"
    );
    assert_eq!(served(&sb, "quickbooks.cdc"), cdc0, "no change feed read");
    assert_eq!(full_cycles(&d), 1, "no full cycle ran");
    let effects = sandbox_json(&sb, "/_sandbox/ledger")["effects"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(effects, effects0, "nothing was sent or written");
    let (code, hist, err) = run_to_end(&[
        "history",
        "--config",
        sb.config.to_str().unwrap(),
        "sandbox-qbo",
        a_id,
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(hist.contains("not sent: invoice is paid now"), "{hist}");

    // The next full cycle (a delivery too big to read by id starts one) sends B's
    // reminder, never A's.
    let many: Vec<(&str, String)> = (0..300)
        .map(|i| ("Invoice", format!("{}", 50_000 + i)))
        .collect();
    assert_eq!(post_signed(&addr, &legacy(&realm, &many), KEY), 200);
    poll_until("the full cycle", || (full_cycles(&d) >= 2).then_some(()));
    assert_eq!(invoice(&sb, &realm, b_id)["reminders"], 1);
    assert_eq!(invoice(&sb, &realm, a_id)["reminders"], 0);

    d.signal(libc::SIGTERM);
    let (code, _) = d.wait_exit(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{}", d.stderr_text());
}

/// Full cycles of the Xero connection so far (not the targeted ones).
fn full_xero_cycles(p: &Proc) -> usize {
    lines_with(p, "cycle finished connection=sandbox-xero")
        .iter()
        .filter(|l| !l.contains("targeted"))
        .count()
}

fn xero_invoice_event(tenant: &str, id: &str) -> String {
    format!(
        r#"{{"events":[{{"resourceUrl":"https://api.xero.com/api.xro/2.0/Invoices/{id}","resourceId":"{id}","eventDateUtc":"2026-12-01T10:00:00.000","eventType":"UPDATE","eventCategory":"INVOICE","tenantId":"{tenant}","tenantType":"ORGANISATION"}}],"firstEventSequence":1,"lastEventSequence":1,"entropy":"OVERDUEDTEST"}}"#
    )
}

fn post_xero(addr: &str, body: &str, key: &str) -> u16 {
    http(
        addr,
        "POST",
        "/webhooks/xero",
        &[
            ("x-xero-signature", &hmac_b64(body, key)),
            ("content-type", "application/json"),
        ],
        body,
    )
    .status
}

/// Xero names the invoice itself (`INVOICE` events): a payment's webhook re-reads just
/// that invoice, stores it paid, and no sync of the organisation runs.
#[test]
fn a_xero_invoice_webhook_stores_only_its_invoice_without_a_sync() {
    const XKEY: &str = "xero-webhook-key";
    let dir = tempfile::tempdir().unwrap();
    let (sb, tenant) = world_with_webhooks(
        dir.path(),
        &format!("xero_webhook_key = \"{XKEY}\""),
        "tenant",
    );
    let mut d = spawn_daemon(&sb.config, None, "info");
    let addr = http_addr_from_log(&mut d);
    poll_until("the first Xero cycle", || {
        (full_xero_cycles(&d) >= 1).then_some(())
    });

    // An open invoice with a balance, found by number through the running daemon.
    let cfg = sb.config.to_str().unwrap().to_string();
    let mut found = None;
    for n in 1..=40 {
        let number = format!("INV-{n:04}");
        let (code, out, _) = run_to_end(&["history", "--config", &cfg, "sandbox-xero", &number]);
        if code != Some(0) {
            continue;
        }
        let first = out.lines().next().unwrap_or_default().to_string();
        if first.ends_with("status Open") {
            let id = first
                .split("(id ")
                .nth(1)
                .and_then(|r| r.split(')').next())
                .unwrap()
                .to_string();
            found = Some((number, id));
            break;
        }
    }
    let (number, id) = found.expect("an open Xero invoice");
    let inv = sandbox_json(&sb, &format!("/_sandbox/invoices/xero/{tenant}/{id}"));
    let balance = inv["balance"].as_str().unwrap().to_string();

    // A forged signature changes nothing.
    let body = xero_invoice_event(&tenant, &id);
    assert_eq!(post_xero(&addr, &body, "not-the-key"), 401);

    // The customer pays in full; Xero sends the invoice's event.
    sandbox_post(
        &sb,
        &format!("/_sandbox/invoices/xero/{tenant}/{id}/payments"),
        &format!(r#"{{"amount":"{balance}"}}"#),
    );
    assert_eq!(post_xero(&addr, &body, XKEY), 200);
    poll_until("the invoice's targeted cycle", || {
        lines_with(&d, "targeted cycle finished connection=sandbox-xero").pop()
    });
    let line = lines_with(&d, "targeted cycle finished connection=sandbox-xero")
        .pop()
        .unwrap();
    assert!(
        line.contains(&format!("invoices={number} (")) && line.contains("paid"),
        "{line}"
    );
    assert_eq!(full_xero_cycles(&d), 1, "no sync of the organisation ran");
    let (code, hist, err) = run_to_end(&["history", "--config", &cfg, "sandbox-xero", &number]);
    assert_eq!(code, Some(0), "{err}");
    assert!(hist.contains("status open -> paid"), "{hist}");

    d.signal(libc::SIGTERM);
    let (code, _) = d.wait_exit(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{}", d.stderr_text());
}
