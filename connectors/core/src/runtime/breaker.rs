//! A circuit breaker per endpoint of one connection.
//!
//! During an outage of one endpoint (the vendor's email sending answering 5xx, say),
//! retrying every action six times with backoff, one after another, turns a cycle
//! into minutes of waiting that achieve nothing. After `threshold` consecutive
//! failures of an endpoint the breaker opens: calls to that endpoint are refused at
//! once, without a request, for `cooldown`; then one trial call is let through
//! (half-open) and its result closes or re-opens the breaker. Other endpoints of the
//! connection are unaffected, so reads and other writes go on.
//!
//! The endpoint is the `op` name a connector gives the runtime for each call: vendor
//! crates name one op per endpoint (and never put ids in it), so it keys the breaker.
//!
//! Only answers that say the endpoint is down count: HTTP 5xx, a refused connection, a
//! timeout (the runtime decides, see `client`). A 429 is the limiter's business, a 400
//! or 404 is about one request, and a connection closed mid-answer or a garbled body
//! happens on healthy endpoints too: counting those would open breakers on a merely
//! flaky network, where retrying is the right thing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::ConnectorError;
use crate::invoice::ConnectionId;

/// When a breaker opens and how long it stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive failures of one endpoint that open its breaker (at least 1).
    pub threshold: u32,
    /// How long an open breaker refuses calls before one trial call goes through.
    /// Longer than a cycle's acting phase, shorter than the gap between cycles, so a
    /// cycle that opened a breaker stops calling the endpoint and the next one tries
    /// again.
    pub cooldown: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        BreakerPolicy {
            threshold: 4,
            cooldown: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Default)]
struct Endpoint {
    consecutive: u32,
    /// Set while the breaker is open: calls before this instant are refused.
    open_until: Option<Instant>,
}

/// The breakers of one connection, one per endpoint.
#[derive(Debug)]
pub struct Breakers {
    connection: ConnectionId,
    policy: BreakerPolicy,
    endpoints: Mutex<HashMap<String, Endpoint>>,
}

impl Breakers {
    pub fn new(connection: ConnectionId, policy: BreakerPolicy) -> Self {
        Breakers {
            connection,
            policy,
            endpoints: Mutex::new(HashMap::new()),
        }
    }

    pub fn policy(&self) -> BreakerPolicy {
        self.policy
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Endpoint>> {
        self.endpoints.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a call to `op` may go out now. An open breaker whose cooldown has passed
    /// lets exactly one trial through and stays open for everyone else meanwhile.
    pub fn admit(&self, op: &str) -> Result<(), ConnectorError> {
        let now = Instant::now();
        let mut m = self.lock();
        let Some(ep) = m.get_mut(op) else {
            return Ok(());
        };
        match ep.open_until {
            Some(until) if now < until => Err(ConnectorError::CircuitOpen {
                endpoint: op.to_string(),
            }),
            Some(_) => {
                ep.open_until = Some(now + self.policy.cooldown);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// The endpoint answered: its breaker closes.
    pub fn success(&self, op: &str) {
        let mut m = self.lock();
        if let Some(ep) = m.get_mut(op) {
            if ep.open_until.is_some() {
                tracing::info!(connection = %self.connection, endpoint = op, "endpoint answers again; circuit closed");
            }
            *ep = Endpoint::default();
        }
    }

    /// The endpoint answered as a down endpoint does (`err` says how). Returns true
    /// when this failure opened (or re-opened) the breaker: the caller stops retrying.
    pub fn failure(&self, op: &str, err: &ConnectorError) -> bool {
        let mut m = self.lock();
        let ep = m.entry(op.to_string()).or_default();
        ep.consecutive = ep.consecutive.saturating_add(1);
        if ep.consecutive < self.policy.threshold.max(1) {
            return false;
        }
        let was_open = ep.open_until.is_some();
        ep.open_until = Some(Instant::now() + self.policy.cooldown);
        // One line per opening, not one per refused call: the owner sees the outage
        // once, with what to expect.
        if !was_open {
            tracing::warn!(
                connection = %self.connection,
                endpoint = op,
                failures = ep.consecutive,
                cooldown_s = self.policy.cooldown.as_secs(),
                error = %err,
                "endpoint failing; circuit open: calls to it wait for the next cycle"
            );
        }
        true
    }

    /// Endpoints whose breaker is open now.
    pub fn open_endpoints(&self) -> Vec<String> {
        let now = Instant::now();
        let mut v: Vec<String> = self
            .lock()
            .iter()
            .filter(|(_, ep)| ep.open_until.is_some_and(|u| now < u))
            .map(|(k, _)| k.clone())
            .collect();
        v.sort();
        v
    }

    /// Closes every breaker (a new cycle, or a reconnect).
    pub fn reset(&self) {
        self.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breakers(threshold: u32, cooldown_ms: u64) -> Breakers {
        Breakers::new(
            ConnectionId::new("b"),
            BreakerPolicy {
                threshold,
                cooldown: Duration::from_millis(cooldown_ms),
            },
        )
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_threshold_consecutive_failures_of_one_endpoint_only() {
        let b = breakers(3, 1000);
        let e = ConnectorError::transient("HTTP 503");
        assert!(!b.failure("send", &e));
        assert!(!b.failure("send", &e));
        assert!(b.admit("send").is_ok());
        assert!(b.failure("send", &e));
        assert!(matches!(
            b.admit("send"),
            Err(ConnectorError::CircuitOpen { ref endpoint }) if endpoint == "send"
        ));
        assert!(b.admit("query").is_ok(), "other endpoints stay closed");
        assert_eq!(b.open_endpoints(), vec!["send".to_string()]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_resets_the_count() {
        let b = breakers(2, 1000);
        let e = ConnectorError::transient("HTTP 500");
        assert!(!b.failure("send", &e));
        b.success("send");
        assert!(!b.failure("send", &e));
        assert!(b.admit("send").is_ok());
        assert!(b.failure("send", &e));
        assert!(b.admit("send").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_lets_one_trial_through_after_the_cooldown() {
        let b = breakers(1, 1000);
        let e = ConnectorError::transient("HTTP 502");
        assert!(b.failure("send", &e));
        assert!(b.admit("send").is_err());
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert!(b.admit("send").is_ok(), "the trial call");
        assert!(b.admit("send").is_err(), "only one trial at a time");
        assert!(b.failure("send", &e), "a failed trial re-opens");
        assert!(b.admit("send").is_err());
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert!(b.admit("send").is_ok());
        b.success("send");
        assert!(b.admit("send").is_ok());
        assert!(b.admit("send").is_ok());
        assert!(b.open_endpoints().is_empty());
    }
}
