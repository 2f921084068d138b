//! Connector errors, classified so the core owns retries and backoff.

use std::time::Duration;

/// What went wrong talking to an accounting system. Messages never contain secrets.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// HTTP 429: wait at least `retry_after` (the vendor's `Retry-After`) and try again.
    #[error("rate limited by {system}{}", fmt_after(.retry_after))]
    RateLimited {
        system: &'static str,
        retry_after: Option<Duration>,
    },
    /// 5xx, timeouts, connection resets, truncated or malformed bodies: try again later.
    #[error("temporary failure: {message}")]
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
    /// The access token was refused (HTTP 401): refresh once and retry.
    #[error("access token refused")]
    Unauthorized,
    /// The grant itself is gone (`invalid_grant`, revoked): a person must reconnect.
    #[error("needs reconnect: {0}")]
    Reauth(String),
    /// The object does not exist (QuickBooks 610, HTTP 404).
    #[error("not found: {0}")]
    NotFound(String),
    /// The object changed since it was read (QuickBooks 5010): re-read and retry.
    #[error("stale version: {0}")]
    StaleVersion(String),
    /// The request will never succeed as it is (validation errors, 400, 403).
    #[error("rejected: {0}")]
    Permanent(String),
    /// Not sent: the endpoint failed repeatedly and its circuit breaker is open (see
    /// `runtime::breaker`). Nothing reached the vendor; try in a later cycle.
    #[error("not sent: {endpoint} is failing (circuit open); left for the next cycle")]
    CircuitOpen { endpoint: String },
}

fn fmt_after(d: &Option<Duration>) -> String {
    match d {
        Some(d) => format!(", retry after {}s", d.as_secs()),
        None => String::new(),
    }
}

/// How the core should react to an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Back off and retry; `Some` is the least the server asked to wait.
    RetryLater(Option<Duration>),
    /// Refresh the access token once, then retry.
    Refresh,
    /// Stop calling this connection until a person reconnects it.
    Reauth,
    /// Re-read the object and retry once.
    Stale,
    NotFound,
    Permanent,
}

impl ConnectorError {
    pub fn class(&self) -> ErrorClass {
        match self {
            ConnectorError::RateLimited { retry_after, .. } => ErrorClass::RetryLater(*retry_after),
            ConnectorError::Transient { retry_after, .. } => ErrorClass::RetryLater(*retry_after),
            ConnectorError::Unauthorized => ErrorClass::Refresh,
            ConnectorError::Reauth(_) => ErrorClass::Reauth,
            ConnectorError::NotFound(_) => ErrorClass::NotFound,
            ConnectorError::StaleVersion(_) => ErrorClass::Stale,
            ConnectorError::Permanent(_) => ErrorClass::Permanent,
            ConnectorError::CircuitOpen { .. } => ErrorClass::RetryLater(None),
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(
            self.class(),
            ErrorClass::RetryLater(_) | ErrorClass::Refresh | ErrorClass::Stale
        )
    }

    pub fn transient(message: impl Into<String>) -> Self {
        ConnectorError::Transient {
            message: message.into(),
            retry_after: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let e = ConnectorError::RateLimited {
            system: "xero",
            retry_after: Some(Duration::from_secs(7)),
        };
        assert_eq!(
            e.class(),
            ErrorClass::RetryLater(Some(Duration::from_secs(7)))
        );
        assert_eq!(e.to_string(), "rate limited by xero, retry after 7s");
        assert!(e.is_retryable());
        assert!(!ConnectorError::Reauth("invalid_grant".into()).is_retryable());
        assert!(!ConnectorError::Permanent("bad".into()).is_retryable());
        assert_eq!(ConnectorError::Unauthorized.class(), ErrorClass::Refresh);
    }
}
