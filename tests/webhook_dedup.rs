//! Webhook replays and bursts against the real binary: one captured signed body sent 100
//! times costs one sync, a burst of distinct events within the window costs one sync,
//! and a delivery naming 8,000 entities logs one INFO line.

#[path = "support/service.rs"]
mod service;

use std::time::{Duration, Instant};

use service::*;

const KEY: &str = "qbo-verifier";

fn sum_metric(addr: &str, name: &str, connection: Option<&str>) -> f64 {
    let r = get(addr, "/metrics");
    assert_eq!(r.status, 200);
    r.body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter(|l| connection.is_none_or(|c| l.contains(&format!("connection=\"{c}\""))))
        .filter(|l| !l.contains("result=\"error\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

fn syncs(addr: &str) -> f64 {
    sum_metric(addr, "overdued_syncs_total", Some("sandbox-qbo"))
}

fn api_calls(addr: &str) -> f64 {
    sum_metric(addr, "overdued_api_calls_total", Some("sandbox-qbo"))
}

fn lines_with(p: &Proc, needle: &str) -> Vec<String> {
    p.stderr
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(needle))
        .cloned()
        .collect()
}

fn post_signed(addr: &str, body: &str) {
    let r = http(
        addr,
        "POST",
        "/webhooks/quickbooks",
        &[("intuit-signature", &hmac_b64(body, KEY))],
        body,
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Waits until the qbo connection has synced more than `from` times, then for the rest
/// of a window and one more second, and returns how many syncs happened.
fn syncs_after(addr: &str, from: f64) -> f64 {
    poll_until("a webhook sync", || (syncs(addr) > from).then_some(()));
    std::thread::sleep(Duration::from_secs(7));
    syncs(addr) - from
}

fn legacy(realm: &str, entities: &[(String, String)]) -> String {
    let list: Vec<String> = entities
        .iter()
        .map(|(id, t)| {
            format!(r#"{{"name":"Invoice","id":"{id}","operation":"Update","lastUpdated":"{t}"}}"#)
        })
        .collect();
    format!(
        r#"{{"eventNotifications":[{{"realmId":"{realm}","dataChangeEvent":{{"entities":[{}]}}}}]}}"#,
        list.join(",")
    )
}

#[test]
fn replays_cost_nothing_and_bursts_cost_one_sync() {
    let dir = tempfile::tempdir().unwrap();
    let sb = start_sandbox_with(
        dir.path(),
        &[
            "--invoices",
            "40",
            "--customers",
            "12",
            "--time-scale",
            "60",
        ],
    );
    let text = std::fs::read_to_string(&sb.config).unwrap();
    let realm = text
        .lines()
        .find_map(|l| l.strip_prefix("realm_id = \""))
        .map(|r| r.trim_end_matches('"').to_string())
        .unwrap();
    // Syncs only when something asks for one.
    let text = text.replace(
        "poll_interval = \"1m\"",
        "poll_interval = \"1h\"\nfull_sync_interval = \"1h\"",
    );
    std::fs::write(
        &sb.config,
        format!("{text}\n[daemon.webhooks]\nquickbooks_verifier_token = \"{KEY}\"\n"),
    )
    .unwrap();
    let mut d = spawn_daemon(&sb.config, None, "info");
    let addr = http_addr_from_log(&mut d);
    poll_until("the first cycles", || {
        (lines_with(&d, "cycle finished").len() >= 2).then_some(())
    });
    d.wait_stderr("daily summary");

    // One captured body, sent 100 times.
    let s0 = syncs(&addr);
    let a0 = api_calls(&addr);
    let body = legacy(&realm, &[("130".into(), "2026-01-05T10:00:00.000Z".into())]);
    let t0 = Instant::now();
    for _ in 0..100 {
        post_signed(&addr, &body);
    }
    let sent_in = t0.elapsed();
    let replay_syncs = syncs_after(&addr, s0);
    let replay_calls = api_calls(&addr) - a0;
    assert!(
        replay_syncs <= 2.0,
        "{replay_syncs} syncs for one replayed body"
    );
    assert_eq!(
        sum_metric(&addr, "overdued_webhook_events_duplicate_total", None),
        99.0
    );
    assert_eq!(
        lines_with(&d, "webhook: change reported; syncing now").len(),
        1
    );
    eprintln!(
        "100 deliveries of one body in {:.2} s: {replay_syncs} sync(s), {replay_calls} API call(s)",
        sent_in.as_secs_f64()
    );

    // A burst of distinct events within the window.
    let s1 = syncs(&addr);
    let a1 = api_calls(&addr);
    let coalesced0 = sum_metric(&addr, "overdued_webhook_syncs_coalesced_total", None);
    for i in 0..20 {
        let body = legacy(
            &realm,
            &[(
                format!("{}", 100 + i),
                format!("2026-01-05T11:00:{i:02}.000Z"),
            )],
        );
        post_signed(&addr, &body);
    }
    let burst_syncs = syncs_after(&addr, s1);
    assert_eq!(burst_syncs, 1.0, "one sync for a burst within the window");
    assert_eq!(
        sum_metric(&addr, "overdued_webhook_syncs_coalesced_total", None) - coalesced0,
        19.0
    );
    eprintln!(
        "a burst of 20 distinct events: {burst_syncs} sync, {} API call(s)",
        api_calls(&addr) - a1
    );

    // One delivery naming 8,000 entities: one INFO line with the count.
    let before = lines_with(&d, "webhook").len();
    let many: Vec<(String, String)> = (0..8000)
        .map(|i| {
            (
                format!("{}", 10_000 + i),
                "2026-01-05T12:00:00.000Z".to_string(),
            )
        })
        .collect();
    let s2 = syncs(&addr);
    post_signed(&addr, &legacy(&realm, &many));
    syncs_after(&addr, s2);
    let webhook_lines = lines_with(&d, "webhook");
    let new: Vec<_> = webhook_lines[before..].to_vec();
    assert_eq!(new.len(), 1, "one line for 8,000 entities: {new:?}");
    assert!(new[0].contains("changes=8000"), "{}", new[0]);
    assert!(new[0].contains("INFO"), "{}", new[0]);

    d.signal(libc::SIGTERM);
    let (code, _) = d.wait_exit(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{}", d.stderr_text());
}
