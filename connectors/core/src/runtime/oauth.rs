//! A vendor's OAuth 2.0 endpoints and the token endpoint calls (refresh, code exchange).
//!
//! The token endpoint is called with plain reqwest rather than through `oauth2`'s token
//! types so vendor fields such as QuickBooks' `x_refresh_token_expires_in` are read.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::error::ConnectorError;
use crate::secret::Secret;
use crate::token::TokenSet;

/// Where a vendor's OAuth endpoints are and what it wants on the way; each vendor crate
/// builds its own (`oauth.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendorOAuth {
    /// For logs and errors: "quickbooks", "xero".
    pub system: &'static str,
    pub authorize_url: String,
    pub token_url: String,
    pub scopes: Vec<String>,
    /// Extra query parameters on the authorize URL.
    pub extra_authorize_params: Vec<(String, String)>,
    /// Query parameters of the redirect to hand back besides `code` and `state`
    /// (QuickBooks `realmId`).
    pub redirect_params: Vec<String>,
    /// The redirect parameter naming what the grant is bound to (becomes
    /// `TokenSet::bound_to`).
    pub bound_param: Option<String>,
    /// Extra headers on token endpoint calls (QuickBooks
    /// `x-include-refresh-token-hard-expires-in`).
    pub token_headers: Vec<(String, String)>,
    /// How long before expiry an access token is replaced.
    pub refresh_ahead: Duration,
}

/// An app's credentials at one vendor.
#[derive(Debug, Clone)]
pub struct OAuthClient {
    pub vendor: VendorOAuth,
    pub client_id: String,
    pub client_secret: Secret,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    refresh_token: Option<String>,
    /// QuickBooks.
    #[serde(default)]
    x_refresh_token_expires_in: Option<serde_json::Value>,
    /// Some vendors use the unprefixed name.
    #[serde(default)]
    refresh_token_expires_in: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct TokenErrorBody {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// Lifetimes are kept within ten years: a vendor's (or a proxy's) absurd `expires_in`
/// must not overflow the expiry instant.
const MAX_LIFETIME_SECS: i64 = 10 * 366 * 86_400;

fn seconds(v: &Option<serde_json::Value>) -> Option<i64> {
    let s = match v.as_ref()? {
        serde_json::Value::Number(n) => n.to_string().parse::<f64>().ok().map(|f| f as i64),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }?;
    Some(s.clamp(0, MAX_LIFETIME_SECS))
}

/// Parses a token endpoint answer into tokens, keeping `previous_refresh` when the
/// vendor did not rotate it.
pub fn parse_token_response(
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
    system: &'static str,
    previous_refresh: Option<&Secret>,
    now: DateTime<Utc>,
) -> Result<TokenSet, ConnectorError> {
    if (200..300).contains(&status) {
        let t: TokenResponse = serde_json::from_slice(body).map_err(|e| {
            ConnectorError::transient(format!("{system} token response unreadable: {e}"))
        })?;
        let expires = seconds(&t.expires_in).unwrap_or(3600);
        let refresh_expires =
            seconds(&t.x_refresh_token_expires_in).or(seconds(&t.refresh_token_expires_in));
        let refresh_token = match (t.refresh_token, previous_refresh) {
            (Some(r), _) if !r.is_empty() => Secret::new(r),
            (_, Some(prev)) => prev.clone(),
            _ => {
                return Err(ConnectorError::Permanent(format!(
                    "{system} token response carries no refresh token"
                )))
            }
        };
        let rotated = previous_refresh
            .filter(|p| p.expose() != refresh_token.expose())
            .cloned();
        return Ok(TokenSet {
            access_token: Secret::new(t.access_token),
            access_expires_at: now + chrono::Duration::seconds(expires),
            refresh_token,
            refresh_expires_at: refresh_expires.map(|s| now + chrono::Duration::seconds(s)),
            previous_refresh_token: rotated,
            obtained_at: now,
            bound_to: None,
            grant_id: None,
            needs_reconnect: false,
        });
    }
    let parsed: Option<TokenErrorBody> = serde_json::from_slice(body).ok();
    let code = parsed.as_ref().map(|e| e.error.as_str()).unwrap_or("");
    let desc = parsed
        .as_ref()
        .and_then(|e| e.error_description.clone())
        .unwrap_or_default();
    match (status, code) {
        (_, "invalid_grant") => Err(ConnectorError::Reauth(format!(
            "{system} refused the grant (invalid_grant): {desc}"
        ))),
        (429, _) => Err(ConnectorError::RateLimited {
            system,
            retry_after,
        }),
        (s, _) if s >= 500 => Err(ConnectorError::Transient {
            message: format!("{system} token endpoint answered HTTP {s}"),
            retry_after,
        }),
        (s, c) => Err(ConnectorError::Permanent(format!(
            "{system} token endpoint answered HTTP {s} {c} {desc}"
        ))),
    }
}

/// The longest `Retry-After` honoured: Xero's daily limit asks for up to a day. A longer
/// (or absurd) value is cut to this, so `now + retry_after` can never overflow.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(2 * 86_400);

/// Reads `Retry-After` given in seconds (the form both vendors use), at most
/// [`MAX_RETRY_AFTER`].
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    v.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(MAX_RETRY_AFTER.as_secs_f64())))
}

impl OAuthClient {
    async fn post_token(
        &self,
        http: &reqwest::Client,
        form: &[(&str, &str)],
        previous_refresh: Option<&Secret>,
        now: DateTime<Utc>,
    ) -> Result<TokenSet, ConnectorError> {
        let system = self.vendor.system;
        let mut req = http
            .post(&self.vendor.token_url)
            .basic_auth(&self.client_id, Some(self.client_secret.expose()))
            .header(reqwest::header::ACCEPT, "application/json")
            .form(form);
        for (k, v) in &self.vendor.token_headers {
            req = req.header(k.as_str(), v.as_str());
        }
        // `without_url` keeps the form (and so the refresh token) out of the message.
        let resp = req.send().await.map_err(|e| {
            ConnectorError::transient(format!("{system} token endpoint: {}", e.without_url()))
        })?;
        let status = resp.status().as_u16();
        let after = retry_after(resp.headers());
        let body = resp.bytes().await.map_err(|e| {
            ConnectorError::transient(format!("{system} token endpoint: {}", e.without_url()))
        })?;
        parse_token_response(status, after, &body, system, previous_refresh, now)
    }

    /// Trades a refresh token for new tokens.
    pub async fn refresh(
        &self,
        http: &reqwest::Client,
        refresh_token: &Secret,
        now: DateTime<Utc>,
    ) -> Result<TokenSet, ConnectorError> {
        self.post_token(
            http,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token.expose()),
            ],
            Some(refresh_token),
            now,
        )
        .await
    }

    /// Trades an authorization code (with its PKCE verifier) for tokens.
    pub async fn exchange_code(
        &self,
        http: &reqwest::Client,
        code: &str,
        redirect_uri: &str,
        pkce_verifier: &str,
        now: DateTime<Utc>,
    ) -> Result<TokenSet, ConnectorError> {
        self.post_token(
            http,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("code_verifier", pkce_verifier),
            ],
            None,
            now,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T09:00:00Z")
            .unwrap()
            .to_utc()
    }

    #[test]
    fn parses_quickbooks_refresh_with_vendor_fields() {
        let body = br#"{"token_type":"bearer","expires_in":3600,"refresh_token":"R2","x_refresh_token_expires_in":8726400,"access_token":"A2","id_token":"x"}"#;
        let prev = Secret::new("R1");
        let t = parse_token_response(200, None, body, "quickbooks", Some(&prev), now()).unwrap();
        assert_eq!(t.access_token.expose(), "A2");
        assert_eq!(t.refresh_token.expose(), "R2");
        assert_eq!(t.access_expires_at, now() + chrono::Duration::hours(1));
        assert_eq!(
            t.refresh_expires_at,
            Some(now() + chrono::Duration::days(101))
        );
        assert_eq!(
            t.previous_refresh_token.as_ref().map(|s| s.expose()),
            Some("R1")
        );
    }

    #[test]
    fn keeps_refresh_token_when_not_rotated() {
        let t = parse_token_response(
            200,
            None,
            br#"{"access_token":"A","expires_in":1800}"#,
            "xero",
            Some(&Secret::new("R")),
            now(),
        )
        .unwrap();
        assert_eq!(t.refresh_token.expose(), "R");
        assert!(t.previous_refresh_token.is_none());
        assert!(
            parse_token_response(200, None, br#"{"access_token":"A"}"#, "xero", None, now())
                .is_err()
        );
    }

    #[test]
    fn classifies_token_errors() {
        let e = parse_token_response(400, None, br#"{"error":"invalid_grant","error_description":"Token has been expired or revoked."}"#, "quickbooks", None, now()).unwrap_err();
        assert!(matches!(e, ConnectorError::Reauth(_)), "{e}");
        let e = parse_token_response(503, None, b"<html>", "quickbooks", None, now()).unwrap_err();
        assert!(e.is_retryable());
        let e = parse_token_response(200, None, br#"{"access_tok"#, "quickbooks", None, now())
            .unwrap_err();
        assert!(e.is_retryable(), "a truncated body is transient");
        let e = parse_token_response(
            401,
            None,
            br#"{"error":"invalid_client"}"#,
            "quickbooks",
            None,
            now(),
        )
        .unwrap_err();
        assert!(matches!(e, ConnectorError::Permanent(_)));
        let e = parse_token_response(429, Some(Duration::from_secs(3)), b"", "xero", None, now())
            .unwrap_err();
        assert!(matches!(
            e,
            ConnectorError::RateLimited {
                retry_after: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn shared_token_fixtures_parse() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/api/quickbooks");
        let Ok(ok) = std::fs::read(dir.join("token_refresh_response.json")) else {
            println!("skipping: shared fixtures not found at {}", dir.display());
            return;
        };
        let t = parse_token_response(200, None, &ok, "quickbooks", None, now()).unwrap();
        assert!(t.refresh_token.expose().starts_with("L3114"));
        let err = std::fs::read(dir.join("token_error_response.json")).unwrap();
        assert!(matches!(
            parse_token_response(400, None, &err, "quickbooks", None, now()),
            Err(ConnectorError::Reauth(_))
        ));
    }
}
