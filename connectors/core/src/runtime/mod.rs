//! The connector runtime both vendors share: tokens (single-flight refresh, durable
//! rotation, needs-reconnect), the connect flow, the client-side limiter, retries with
//! backoff, circuit breakers per endpoint, and counters.

pub mod breaker;
pub mod client;
pub mod connect;
pub mod limiter;
pub mod oauth;
pub mod retry;
pub mod stats;
pub mod tokens;

pub use breaker::{BreakerPolicy, Breakers};
pub use client::{ConnectionRuntime, HttpResponse, RuntimeBuildError, RuntimeSettings};
pub use connect::{ConnectError, ConnectFlow, Connected, PendingConnect};
pub use limiter::{LimitSpec, Permit, RateLimiter};
pub use oauth::{parse_token_response, retry_after, OAuthClient, VendorOAuth, MAX_RETRY_AFTER};
pub use retry::{Backoff, RetryAction, RetryPolicy};
pub use stats::{RuntimeStats, StatsSnapshot};
pub use tokens::{GrantKey, HttpRefresher, TokenManager, TokenRefresher};
