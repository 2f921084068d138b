//! Outbound webhooks: signed JSON, retried with backoff, never blocking the sender.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use overdued::channels::webhook::{sign, Event, Hooks};
use overdued::config::channels::WebhookConfig;
use overdued_connector::Secret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

/// An HTTP endpoint that fails the first `fail` requests with 503, then answers 200;
/// records (signature, event header, body) of every request.
async fn endpoint(fail: usize) -> (String, Seen) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    let seen: Seen = Arc::default();
    let s = seen.clone();
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((mut sock, _)) = l.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head, body) = loop {
                let k = sock.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..k]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(i) = text.find("\r\n\r\n") {
                    let head = text[..i].to_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map(|v| v.trim().parse().unwrap())
                        .unwrap_or(0);
                    if buf.len() >= i + 4 + len {
                        break (head, text[i + 4..i + 4 + len].to_string());
                    }
                }
            };
            let header = |name: &str| {
                head.lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}:")))
                    .map(|v| v.trim().to_string())
                    .unwrap_or_default()
            };
            s.lock().unwrap().push((
                header("x-overdued-signature"),
                header("x-overdued-event"),
                body,
            ));
            n += 1;
            let status = if n <= fail {
                "503 Service Unavailable"
            } else {
                "200 OK"
            };
            let _ = sock
                .write_all(
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .as_bytes(),
                )
                .await;
        }
    });
    (url, seen)
}

fn event(key: &str) -> Event {
    Event {
        event: "action".into(),
        at: "2026-03-02T10:00:00Z".parse().unwrap(),
        connection: "books".into(),
        invoice_id: "42".into(),
        customer_id: "7".into(),
        kind: "remind".into(),
        step: "+7d".into(),
        key: key.into(),
        outcome: "done".into(),
        detail: None,
    }
}

fn cfg(url: &str, queue: usize) -> WebhookConfig {
    WebhookConfig {
        url: url.parse().unwrap(),
        secret: Secret::new("s3cret"),
        max_attempts: 3,
        queue_size: queue,
        timeout: Duration::from_secs(5),
    }
}

async fn wait_for(seen: &Seen, n: usize) {
    for _ in 0..200 {
        if seen.lock().unwrap().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("only {} requests arrived", seen.lock().unwrap().len());
}

#[tokio::test]
async fn events_are_signed_and_retried_until_accepted() {
    let (url, seen) = endpoint(2).await;
    let hooks = Hooks::start_with_backoff(cfg(&url, 10), Duration::from_millis(10));
    hooks.emit(event("k-1"));
    wait_for(&seen, 3).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.len(),
        3,
        "two failures, one success, no more: {seen:?}"
    );
    for (sig, ev, body) in &seen {
        assert_eq!(sig, &sign(b"s3cret", body.as_bytes()));
        assert_eq!(ev, "k-1");
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["key"], "k-1");
        assert_eq!(v["outcome"], "done");
        assert_eq!(v["step"], "+7d");
    }
}

#[tokio::test]
async fn a_full_queue_drops_instead_of_blocking() {
    // Nothing listens: every delivery fails slowly, so the queue fills.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let hooks = Hooks::start_with_backoff(
        cfg(&format!("http://127.0.0.1:{port}/"), 1),
        Duration::from_secs(60),
    );
    let t = std::time::Instant::now();
    for i in 0..1000 {
        hooks.emit(event(&format!("k-{i}")));
    }
    assert!(t.elapsed() < Duration::from_secs(1), "emit must not wait");
}
