//! Seeded fault injection, per endpoint.

use std::collections::{BTreeMap, HashMap};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// A burst of 429s (with the vendor's headers) lasting `storm_length` calls.
    RateLimit,
    /// 500, 502 or 503 with the vendor's error body.
    ServerError,
    /// The call waits `slow_ms` before it is handled (a write still applies afterwards).
    Slow,
    /// The connection is closed before any response byte.
    Reset,
    /// Headers and part of the body, then the connection is closed.
    Truncated,
    /// A complete HTTP response whose JSON body is broken.
    Malformed,
    /// The call is handled (a write is applied), then the connection is closed without a
    /// response: what idempotency keys are for.
    LostResponse,
}

impl FaultKind {
    pub const ALL: [FaultKind; 7] = [
        FaultKind::RateLimit,
        FaultKind::ServerError,
        FaultKind::Slow,
        FaultKind::Reset,
        FaultKind::Truncated,
        FaultKind::Malformed,
        FaultKind::LostResponse,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::RateLimit => "rate_limit",
            FaultKind::ServerError => "server_error",
            FaultKind::Slow => "slow",
            FaultKind::Reset => "reset",
            FaultKind::Truncated => "truncated",
            FaultKind::Malformed => "malformed",
            FaultKind::LostResponse => "lost_response",
        }
    }
}

fn default_slow_ms() -> u64 {
    35_000
}
fn default_storm() -> u32 {
    3
}

/// Fault settings (`POST /_sandbox/faults`). `rate` 0 turns faults off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultConfig {
    #[serde(default)]
    pub rate: f64,
    /// Empty means every kind.
    #[serde(default)]
    pub kinds: Vec<FaultKind>,
    #[serde(default)]
    pub seed: u64,
    /// Endpoint filters: an endpoint matches when its name (e.g. `xero.invoices.email`,
    /// `quickbooks.query`, `oauth.xero.token`) starts with one of these. Empty means every
    /// API and OAuth endpoint; the control API never faults.
    #[serde(default)]
    pub endpoints: Vec<String>,
    #[serde(default = "default_slow_ms")]
    pub slow_ms: u64,
    #[serde(default = "default_storm")]
    pub storm_length: u32,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            rate: 0.0,
            kinds: Vec::new(),
            seed: 0,
            endpoints: Vec::new(),
            slow_ms: default_slow_ms(),
            storm_length: default_storm(),
        }
    }
}

#[derive(Debug)]
pub struct FaultState {
    pub config: FaultConfig,
    rng: ChaCha8Rng,
    storms: HashMap<String, u32>,
    pub injected: BTreeMap<String, u64>,
}

impl FaultState {
    pub fn new(config: FaultConfig) -> FaultState {
        let rng = ChaCha8Rng::seed_from_u64(config.seed);
        FaultState {
            config,
            rng,
            storms: HashMap::new(),
            injected: BTreeMap::new(),
        }
    }

    pub fn set(&mut self, config: FaultConfig) {
        self.rng = ChaCha8Rng::seed_from_u64(config.seed);
        self.storms.clear();
        self.config = config;
    }

    /// Decides whether this call faults. `scope` groups storms (system + tenant).
    pub fn decide(&mut self, endpoint: &str, scope: &str) -> Option<FaultKind> {
        let c = &self.config;
        // NaN counts as off.
        if c.rate.is_nan() || c.rate <= 0.0 {
            return None;
        }
        if !c.endpoints.is_empty() && !c.endpoints.iter().any(|e| endpoint.starts_with(e.as_str()))
        {
            return None;
        }
        if let Some(left) = self.storms.get_mut(scope) {
            if *left > 0 {
                *left -= 1;
                *self
                    .injected
                    .entry(FaultKind::RateLimit.as_str().into())
                    .or_default() += 1;
                return Some(FaultKind::RateLimit);
            }
        }
        if !self.rng.gen_bool(c.rate.min(1.0)) {
            return None;
        }
        let kinds: &[FaultKind] = if c.kinds.is_empty() {
            &FaultKind::ALL
        } else {
            &c.kinds
        };
        let kind = kinds[self.rng.gen_range(0..kinds.len())];
        if kind == FaultKind::RateLimit {
            self.storms
                .insert(scope.to_string(), c.storm_length.saturating_sub(1));
        }
        *self.injected.entry(kind.as_str().into()).or_default() += 1;
        Some(kind)
    }

    pub fn pick_server_status(&mut self) -> u16 {
        [500, 502, 503][self.rng.gen_range(0..3)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_filtered_and_off_at_zero() {
        let cfg = FaultConfig {
            rate: 0.5,
            kinds: vec![FaultKind::ServerError, FaultKind::Reset],
            seed: 7,
            endpoints: vec!["xero.invoices".into()],
            ..Default::default()
        };
        let run = |cfg: &FaultConfig| {
            let mut s = FaultState::new(cfg.clone());
            (0..200)
                .map(|_| s.decide("xero.invoices.list", "x"))
                .collect::<Vec<_>>()
        };
        let a = run(&cfg);
        assert_eq!(a, run(&cfg));
        let n = a.iter().filter(|f| f.is_some()).count();
        assert!((60..140).contains(&n), "{n}");
        assert!(a
            .iter()
            .flatten()
            .all(|k| matches!(k, FaultKind::ServerError | FaultKind::Reset)));
        let mut s = FaultState::new(cfg.clone());
        assert!((0..100).all(|_| s.decide("quickbooks.query", "q").is_none()));
        let mut off = FaultState::new(FaultConfig { rate: 0.0, ..cfg });
        assert!((0..100).all(|_| off.decide("xero.invoices.list", "x").is_none()));
    }

    #[test]
    fn rate_limit_storms_last() {
        let mut s = FaultState::new(FaultConfig {
            rate: 1.0,
            kinds: vec![FaultKind::RateLimit],
            storm_length: 4,
            ..Default::default()
        });
        assert_eq!(s.decide("e", "x"), Some(FaultKind::RateLimit));
        s.config.rate = 0.000_000_1;
        for _ in 0..3 {
            assert_eq!(s.decide("e", "x"), Some(FaultKind::RateLimit));
        }
        assert_eq!(s.injected["rate_limit"], 4);
    }
}
