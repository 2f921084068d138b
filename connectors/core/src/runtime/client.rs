//! One connection's API client: limiter, token, retries and counters around each call.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::breaker::{BreakerPolicy, Breakers};
use super::limiter::{LimitSpec, RateLimiter};
use super::oauth::OAuthClient;
use super::retry::{RetryAction, RetryPolicy};
use super::stats::{RuntimeStats, StatsSnapshot};
use super::tokens::{GrantKey, HttpRefresher, TokenManager, TokenRefresher};
use crate::clock::Clock;
use crate::error::ConnectorError;
use crate::invoice::ConnectionId;
use crate::secret::Secret;
use crate::token::TokenStore;

/// How one connection talks to its vendor.
#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    pub limits: LimitSpec,
    pub retry: RetryPolicy,
    /// When an endpoint that keeps failing stops being called.
    pub breaker: BreakerPolicy,
    /// Whole-request timeout (connect, send, read the body).
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// The vendor account the limits apply to (vendor, API base, app, realm or
    /// organisation). Connectors of one account in a process share one limiter; `None`
    /// gives the connector a limiter of its own.
    pub limits_account: Option<String>,
    /// The OAuth grant, when several connections may share one: they then share one
    /// token manager (see [`GrantKey`]). `None` keeps the tokens per connection.
    pub grant: Option<GrantKey>,
}

impl RuntimeSettings {
    pub fn new(limits: LimitSpec) -> Self {
        RuntimeSettings {
            limits,
            retry: RetryPolicy::default(),
            breaker: BreakerPolicy::default(),
            request_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            limits_account: None,
            grant: None,
        }
    }
}

/// What came back for one request, read in full.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

/// The shared runtime of one connection. Connectors build requests and classify
/// responses; this owns the token, the limiter, retries and counting.
#[derive(Debug, Clone)]
pub struct ConnectionRuntime {
    connection: ConnectionId,
    http: reqwest::Client,
    limiter: RateLimiter,
    retry: RetryPolicy,
    tokens: Arc<TokenManager>,
    stats: Arc<RuntimeStats>,
    breakers: Arc<Breakers>,
}

/// Building the HTTP client failed (TLS backend unavailable).
#[derive(Debug, thiserror::Error)]
#[error("building the HTTP client: {0}")]
pub struct RuntimeBuildError(String);

impl ConnectionRuntime {
    /// A runtime whose tokens come from the vendor's token endpoint over HTTP.
    pub fn new(
        connection: ConnectionId,
        settings: RuntimeSettings,
        oauth: OAuthClient,
        initial_refresh_token: Option<Secret>,
        store: Arc<dyn TokenStore>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, RuntimeBuildError> {
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .connect_timeout(settings.connect_timeout)
            .build()
            .map_err(|e| RuntimeBuildError(e.to_string()))?;
        let refresher = Arc::new(HttpRefresher {
            oauth,
            http: http.clone(),
        });
        Ok(Self::with_refresher(
            connection,
            settings,
            http,
            refresher,
            initial_refresh_token,
            store,
            clock,
        ))
    }

    /// A runtime with any token source (tests, vendors with odd token endpoints).
    pub fn with_refresher(
        connection: ConnectionId,
        settings: RuntimeSettings,
        http: reqwest::Client,
        refresher: Arc<dyn TokenRefresher>,
        initial_refresh_token: Option<Secret>,
        store: Arc<dyn TokenStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let stats = Arc::new(RuntimeStats::default());
        let tokens = match &settings.grant {
            Some(grant) => TokenManager::shared(
                grant,
                connection.clone(),
                refresher,
                store,
                clock,
                initial_refresh_token,
                stats.clone(),
            ),
            None => Arc::new(TokenManager::new(
                connection.clone(),
                refresher,
                store,
                clock,
                initial_refresh_token,
                stats.clone(),
            )),
        };
        ConnectionRuntime {
            http,
            limiter: match &settings.limits_account {
                Some(account) => RateLimiter::for_account(account, settings.limits, stats.clone()),
                None => RateLimiter::new(settings.limits, stats.clone()),
            },
            retry: settings.retry,
            breakers: Arc::new(Breakers::new(connection.clone(), settings.breaker)),
            connection,
            tokens,
            stats,
        }
    }

    pub fn connection(&self) -> &ConnectionId {
        &self.connection
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn tokens(&self) -> &TokenManager {
        &self.tokens
    }

    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// The circuit breakers of this connection's endpoints.
    pub fn breakers(&self) -> &Breakers {
        &self.breakers
    }

    pub fn needs_reconnect(&self) -> bool {
        self.tokens.needs_reconnect()
    }

    /// Performs one logical call: `build` makes the request (the runtime adds the bearer
    /// token), `parse` turns the response into a value or a classified error. Retries
    /// follow the error's class; the request must therefore be safe to repeat (reads, or
    /// writes carrying their idempotency key).
    ///
    /// `op` names the endpoint (one name per endpoint, no ids): its circuit breaker
    /// refuses the call with [`ConnectorError::CircuitOpen`] while open, and a failure
    /// that opens it ends the call without further retries.
    pub async fn execute<T>(
        &self,
        op: &str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
        parse: impl Fn(HttpResponse) -> Result<T, ConnectorError>,
    ) -> Result<T, ConnectorError> {
        let mut backoff = self.retry.backoff();
        let mut refreshed = false;
        let mut rejected: Option<Secret> = None;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.breakers.admit(op)?;
            if attempt > 1 {
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
            }
            let mut used_token: Option<Secret> = None;
            let mut down = false;
            let pending_rejection = rejected.take();
            let result = self
                .attempt(
                    &build,
                    &parse,
                    pending_rejection.clone(),
                    &mut used_token,
                    &mut down,
                )
                .await;
            let err = match result {
                Ok(v) => {
                    self.breakers.success(op);
                    return Ok(v);
                }
                Err(e) => e,
            };
            if down && self.breakers.failure(op, &err) {
                // The endpoint is down: retrying inside this call only adds waiting.
                return Err(err);
            }
            // The refresh after a 401 failed before any request went out (e.g. its
            // answer was lost): the next attempt must refresh again, not reuse the
            // token the API already refused.
            if used_token.is_none() {
                rejected = pending_rejection;
            }
            if let ConnectorError::RateLimited {
                retry_after: Some(after),
                ..
            } = &err
            {
                self.limiter
                    .pause_until(tokio::time::Instant::now() + *after);
            }
            match self.retry.decide(attempt, &err, refreshed, &mut backoff) {
                RetryAction::Wait(d) => {
                    tracing::warn!(connection = %self.connection, op, attempt, wait_ms = d.as_millis() as u64, error = %err, "retrying");
                    tokio::time::sleep(d).await;
                }
                RetryAction::Refresh => {
                    tracing::info!(connection = %self.connection, op, "access token refused; refreshing once");
                    refreshed = true;
                    rejected = used_token;
                }
                RetryAction::GiveUp => {
                    if attempt > 1 || err.is_retryable() {
                        tracing::warn!(connection = %self.connection, op, attempt, error = %err, "giving up");
                    }
                    return Err(err);
                }
            }
        }
    }

    async fn attempt<T>(
        &self,
        build: &impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
        parse: &impl Fn(HttpResponse) -> Result<T, ConnectorError>,
        rejected: Option<Secret>,
        used_token: &mut Option<Secret>,
        down: &mut bool,
    ) -> Result<T, ConnectorError> {
        let token = match rejected {
            Some(r) => self.tokens.refresh_after_rejection(&r).await?,
            None => self.tokens.access_token().await?,
        };
        *used_token = Some(token.clone());
        let permit = self.limiter.acquire().await;
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let sent = build(&self.http).bearer_auth(token.expose()).send().await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                self.stats.transport_errors.fetch_add(1, Ordering::Relaxed);
                // Nobody listening, or no answer in time: what an outage looks like.
                *down = e.is_connect() || e.is_timeout();
                return Err(ConnectorError::transient(describe(&e)));
            }
        };
        let status = resp.status().as_u16();
        *down = status >= 500;
        self.stats.record_status(status);
        let headers = resp.headers().clone();
        let body = match resp.bytes().await {
            Ok(b) => b.to_vec(),
            Err(e) => {
                self.stats.transport_errors.fetch_add(1, Ordering::Relaxed);
                return Err(ConnectorError::transient(format!(
                    "reading HTTP {status} body: {}",
                    describe(&e)
                )));
            }
        };
        drop(permit);
        parse(HttpResponse {
            status,
            headers,
            body,
        })
    }
}

fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "request"
    };
    // The URL holds no secrets (tokens travel in headers), and names the endpoint.
    let mut msg = format!("{kind} error: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}
