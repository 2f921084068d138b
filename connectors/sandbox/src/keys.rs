//! Idempotency keys (`requestid`, `Idempotency-Key`) and the window they are kept for.
//!
//! Neither Intuit nor Xero documents how long a key is remembered; a day is common in
//! the industry. The sandbox keeps a key's stored response for a window of sandbox time
//! (default 24 h, `--idempotency-window`, `POST /_sandbox/idempotency-window`
//! `{"seconds": N}`); after it the key is forgotten and the same request with the same
//! key is carried out again, as a vendor that forgot the key would. That is what a
//! client retrying an old intent blind must not rely on.

use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::json;

use crate::wire::{Reply, Req};
use crate::world::{StoredResponse, World};
use crate::Sandbox;

/// The window when none was set: one day.
pub const DEFAULT_WINDOW_SECS: i64 = 24 * 3600;

pub fn default_window_secs() -> i64 {
    DEFAULT_WINDOW_SECS
}

/// The stored response of `key` on tenant `t`, if the key is still remembered at the
/// world's now; a key past the window is dropped.
pub fn replay(w: &mut World, t: usize, key: &str) -> Option<StoredResponse> {
    let now = w.now;
    let window = Duration::seconds(w.idempotency_window_secs);
    let tenant = &mut w.tenants[t];
    let stored = tenant.idempotency.get(key)?;
    if expired(stored.stored_at, now, window) {
        tenant.idempotency.remove(key);
        return None;
    }
    Some(stored.clone())
}

/// Remembers a successful write's response under `key` from now.
pub fn remember(w: &mut World, t: usize, key: String, mut resp: StoredResponse) {
    resp.stored_at = Some(w.now);
    w.tenants[t].idempotency.insert(key, resp);
}

/// Keys stored before the window existed (older state files) carry no time and are
/// kept: dropping them on upgrade would repeat writes nobody asked to repeat.
fn expired(stored_at: Option<DateTime<Utc>>, now: DateTime<Utc>, window: Duration) -> bool {
    stored_at.is_some_and(|at| now.signed_duration_since(at) > window)
}

#[derive(Deserialize)]
struct WindowBody {
    seconds: i64,
}

/// `GET|POST /_sandbox/idempotency-window`.
pub fn control(sb: &Sandbox, req: &Req) -> Reply {
    if req.method == hyper::Method::POST {
        let b: WindowBody = match serde_json::from_slice(&req.body) {
            Ok(b) => b,
            Err(e) => return Reply::json(400, &json!({"error": e.to_string()})),
        };
        if b.seconds <= 0 {
            return Reply::json(400, &json!({"error": "seconds must be positive"}));
        }
        sb.set_idempotency_window(Duration::seconds(b.seconds));
    }
    Reply::json(
        200,
        &json!({"seconds": sb.idempotency_window().num_seconds()}),
    )
}

impl Sandbox {
    /// How long idempotency keys are remembered, in sandbox time.
    pub fn set_idempotency_window(&self, window: Duration) {
        self.world().idempotency_window_secs = window.num_seconds().max(1);
        self.mark_dirty();
    }

    pub fn idempotency_window(&self) -> Duration {
        Duration::seconds(self.world().idempotency_window_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_forgotten_only_after_the_window() {
        let at: DateTime<Utc> = "2026-01-05T09:00:00Z".parse().unwrap();
        let day = Duration::hours(24);
        assert!(!expired(Some(at), at + day, day));
        assert!(expired(Some(at), at + day + Duration::seconds(1), day));
        assert!(!expired(None, at + Duration::days(400), day));
    }
}
