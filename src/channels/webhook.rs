//! Outbound webhooks: every action as signed JSON POSTed to a configured URL (for an SMS
//! gateway, a chat channel, ...).
//!
//! Sending never waits for a webhook: events go into a bounded queue served by one
//! background task, which retries with exponential backoff. A full queue drops the event
//! with a warning rather than slowing the chasing down; the journal and audit log remain
//! the record.
//!
//! Each request carries `X-Overdued-Signature: sha256=HEX`, the HMAC-SHA256 of the body
//! under the shared secret, and `X-Overdued-Event`, the action's idempotency key, so a
//! receiver can verify the sender and drop a retried duplicate.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::config::channels::WebhookConfig;

/// One action as sent to the webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// Always `"action"`.
    pub event: String,
    pub at: DateTime<Utc>,
    pub connection: String,
    pub invoice_id: String,
    pub customer_id: String,
    /// `remind`, `late_fee`, `note`, `escalate`.
    pub kind: String,
    pub step: String,
    /// The action's idempotency key, the same on every retry.
    pub key: String,
    /// `done`, `already_done`, `skipped`, `failed`.
    pub outcome: String,
    /// The reason or error, when there is one.
    pub detail: Option<String>,
}

/// `sha256=HEX` of `body` under `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The handle that queues events.
#[derive(Debug, Clone)]
pub struct Hooks {
    tx: mpsc::Sender<Event>,
}

impl Hooks {
    /// Starts the delivery task (inside a Tokio runtime).
    pub fn start(cfg: WebhookConfig) -> Hooks {
        Hooks::start_with_backoff(cfg, Duration::from_secs(2))
    }

    /// As [`Hooks::start`], with the first retry after `base` (doubling each time, at
    /// most five minutes).
    pub fn start_with_backoff(cfg: WebhookConfig, base: Duration) -> Hooks {
        let (tx, rx) = mpsc::channel(cfg.queue_size);
        tokio::spawn(run(cfg, rx, base));
        Hooks { tx }
    }

    /// Queues an event without waiting; a full queue drops it with a warning.
    pub fn emit(&self, ev: Event) {
        match self.tx.try_send(ev) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(ev)) => {
                warn!(key = %ev.key, "webhook queue full; event dropped")
            }
            Err(mpsc::error::TrySendError::Closed(ev)) => {
                warn!(key = %ev.key, "webhook task stopped; event dropped")
            }
        }
    }
}

/// The process's webhook task for `cfg`, started on first use and restarted when the
/// configuration changes (a reload), so cycles share one queue.
pub fn shared(cfg: &WebhookConfig) -> Hooks {
    static SHARED: OnceLock<Mutex<Option<(WebhookConfig, Hooks)>>> = OnceLock::new();
    let mut g = SHARED
        .get_or_init(|| Mutex::new(None))
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    match &*g {
        Some((c, h)) if c == cfg && !h.tx.is_closed() => h.clone(),
        _ => {
            let h = Hooks::start(cfg.clone());
            *g = Some((cfg.clone(), h.clone()));
            h
        }
    }
}

async fn run(cfg: WebhookConfig, mut rx: mpsc::Receiver<Event>, base: Duration) {
    let client = match reqwest::Client::builder().timeout(cfg.timeout).build() {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "webhook client could not start; events are dropped");
            return;
        }
    };
    while let Some(ev) = rx.recv().await {
        let body = match serde_json::to_vec(&ev) {
            Ok(b) => b,
            Err(e) => {
                warn!(key = %ev.key, error = %e, "webhook event not serialisable");
                continue;
            }
        };
        let signature = sign(cfg.secret.expose().as_bytes(), &body);
        let mut delay = base;
        for attempt in 1..=cfg.max_attempts {
            let result = client
                .post(cfg.url.clone())
                .header("content-type", "application/json")
                .header("x-overdued-signature", &signature)
                .header("x-overdued-event", &ev.key)
                .body(body.clone())
                .send()
                .await;
            let (done, why) = match result {
                Ok(r) if r.status().is_success() => (true, String::new()),
                // A refusal other than "later" will not change on retry.
                Ok(r)
                    if r.status().is_client_error()
                        && r.status().as_u16() != 408
                        && r.status().as_u16() != 429 =>
                {
                    warn!(key = %ev.key, status = %r.status(), "webhook refused the event; not retried");
                    break;
                }
                Ok(r) => (false, format!("HTTP {}", r.status())),
                Err(e) => (false, e.to_string()),
            };
            if done {
                debug!(key = %ev.key, attempt, "webhook delivered");
                break;
            }
            if attempt == cfg.max_attempts {
                warn!(key = %ev.key, attempts = attempt, error = %why, "webhook gave up");
                break;
            }
            warn!(key = %ev.key, attempt, error = %why, retry_in = ?delay, "webhook failed; retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(300));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_hmac() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
