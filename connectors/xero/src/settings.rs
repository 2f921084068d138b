//! What one Xero connection is configured with; the root config maps onto this.

use std::time::Duration;

use overdued_connector::runtime::{
    GrantKey, LimitSpec, OAuthClient, RetryPolicy, RuntimeSettings, VendorOAuth,
};
use overdued_connector::{ConnectionId, FeePosting, Secret};

/// Xero's production API base (accounting endpoints).
pub const DEFAULT_API_BASE: &str = "https://api.xero.com/api.xro/2.0";
/// Where `GET /connections` lives.
pub const DEFAULT_IDENTITY_BASE: &str = "https://api.xero.com";
pub const DEFAULT_TOKEN_URL: &str = crate::oauth::TOKEN_URL;
pub const DEFAULT_AUTHORIZE_URL: &str = crate::oauth::AUTHORIZE_URL;
/// The Sales revenue account in Xero's default chart of accounts.
pub const DEFAULT_FEE_ACCOUNT_CODE: &str = "200";
/// Below this share of the day's calls left, sync reads yield to reminders and fees.
pub const DEFAULT_DAY_RESERVE: f64 = 0.10;

/// One Xero organisation as overdued talks to it.
#[derive(Debug, Clone)]
pub struct XeroSettings {
    /// The user's name for this connection (the `[xero.NAME]` table).
    pub connection: ConnectionId,
    pub client_id: String,
    pub client_secret: Secret,
    /// The organisation: its tenant id (a UUID) or its name as Xero shows it.
    pub tenant: String,
    /// OAuth scopes; `offline_access` is added when missing, since without it there is
    /// no refresh token.
    pub scopes: Vec<String>,
    pub api_base: String,
    pub identity_base: String,
    pub token_url: String,
    pub authorize_url: String,
    /// A refresh token to bootstrap from when the store holds none.
    pub initial_refresh_token: Option<Secret>,
    /// The grant (Xero's `authEventId`) `overdued connect` recorded with the stored
    /// tokens: connections on one grant share one token manager and one stored token set.
    pub grant_id: Option<String>,
    pub fee_posting: FeePosting,
    pub fee_account_code: String,
    pub fee_item_code: Option<String>,
    /// Per-organisation limits; tests against an accelerated simulator shrink the windows.
    pub limits: LimitSpec,
    pub retry: RetryPolicy,
    pub request_timeout: Duration,
    /// Share of the daily call budget kept for actions: when less is left, sync reads are
    /// refused with `RateLimited` while reminders, fees, notes and re-reads still go.
    pub day_reserve: f64,
}

impl XeroSettings {
    /// Settings with Xero's production endpoints, default scopes and limits.
    pub fn new(
        connection: ConnectionId,
        client_id: impl Into<String>,
        client_secret: Secret,
        tenant: impl Into<String>,
    ) -> Self {
        XeroSettings {
            connection,
            client_id: client_id.into(),
            client_secret,
            tenant: tenant.into(),
            scopes: crate::oauth::vendor_oauth().scopes,
            api_base: DEFAULT_API_BASE.into(),
            identity_base: DEFAULT_IDENTITY_BASE.into(),
            token_url: DEFAULT_TOKEN_URL.into(),
            authorize_url: DEFAULT_AUTHORIZE_URL.into(),
            initial_refresh_token: None,
            grant_id: None,
            fee_posting: FeePosting::default(),
            fee_account_code: DEFAULT_FEE_ACCOUNT_CODE.into(),
            fee_item_code: None,
            limits: crate::limits::LIMITS,
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(60),
            day_reserve: DEFAULT_DAY_RESERVE,
        }
    }

    /// Points every endpoint at one simulator (or proxy) base URL, laid out as the
    /// sandbox serves Xero: `{base}/api.xro/2.0`, `{base}/connections`,
    /// `{base}/connect/token`, `{base}/identity/connect/authorize`.
    pub fn with_base_url(mut self, base: &str) -> Self {
        let b = base.trim_end_matches('/');
        self.api_base = format!("{b}/api.xro/2.0");
        self.identity_base = b.to_string();
        self.token_url = format!("{b}/connect/token");
        self.authorize_url = format!("{b}/identity/connect/authorize");
        self
    }

    /// The scopes asked for, `offline_access` first and always present.
    pub fn effective_scopes(&self) -> Vec<String> {
        let mut out = vec!["offline_access".to_string()];
        for s in &self.scopes {
            let s = s.trim();
            if !s.is_empty() && !out.iter().any(|o| o == s) {
                out.push(s.to_string());
            }
        }
        if out.len() == 1 {
            out.extend(
                crate::oauth::vendor_oauth()
                    .scopes
                    .into_iter()
                    .filter(|s| s != "offline_access"),
            );
        }
        out
    }

    /// Xero's OAuth endpoints as configured (for the runtime and `overdued connect`).
    pub fn vendor_oauth(&self) -> VendorOAuth {
        VendorOAuth {
            authorize_url: self.authorize_url.clone(),
            token_url: self.token_url.clone(),
            scopes: self.effective_scopes(),
            ..crate::oauth::vendor_oauth()
        }
    }

    pub fn oauth_client(&self) -> OAuthClient {
        OAuthClient {
            vendor: self.vendor_oauth(),
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
        }
    }

    pub fn runtime_settings(&self) -> RuntimeSettings {
        RuntimeSettings {
            retry: self.retry,
            request_timeout: self.request_timeout,
            // Xero counts per organisation and app.
            limits_account: Some(format!(
                "xero {} app {} tenant {}",
                self.api_base.trim_end_matches('/'),
                self.client_id,
                self.tenant
            )),
            // One consent covers several organisations, and Xero rotates the refresh
            // token on every refresh: the organisations configured with one grant's
            // refresh token, or connected through one consent (its `authEventId`), share
            // its tokens.
            grant: self.grant_key(),
            ..RuntimeSettings::new(self.limits)
        }
    }

    /// The grant this connection's tokens belong to: the configured refresh token's
    /// lineage, else the grant `overdued connect` recorded.
    pub fn grant_key(&self) -> Option<GrantKey> {
        let lineage = self
            .initial_refresh_token
            .as_ref()
            .filter(|r| !r.is_empty())
            .map(|r| GrantKey::from_lineage("xero", &self.client_id, r));
        lineage.or_else(|| {
            self.grant_id
                .as_deref()
                .filter(|g| !g.trim().is_empty())
                .map(|g| GrantKey::from_grant_id("xero", &self.client_id, g))
        })
    }

    pub fn connections_url(&self) -> String {
        format!("{}/connections", self.identity_base.trim_end_matches('/'))
    }

    pub(crate) fn api(&self, path: &str) -> String {
        format!(
            "{}/{}",
            self.api_base.trim_end_matches('/'),
            path.trim_start_matches('/')
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn organisations_configured_with_one_grants_token_share_it() {
        let on = |tenant: &str, client: &str, refresh: Option<&str>| {
            let mut s =
                XeroSettings::new(ConnectionId::new(tenant), client, Secret::new("s"), tenant);
            s.initial_refresh_token = refresh.map(Secret::new);
            s.runtime_settings().grant
        };
        let a = on("Acme", "app", Some("R0"));
        assert!(a.is_some());
        assert_eq!(
            a,
            on("Bolt", "app", Some("R0")),
            "one consent, two organisations"
        );
        assert_ne!(a, on("Bolt", "app", Some("R9")), "another consent");
        assert_ne!(a, on("Bolt", "other-app", Some("R0")), "another app");
        assert_eq!(
            on("Acme", "app", None),
            None,
            "nothing to tell the grant by"
        );
        assert_eq!(on("Acme", "app", Some("")), None);
        let connected = |tenant: &str, client: &str, grant: &str| {
            let mut s =
                XeroSettings::new(ConnectionId::new(tenant), client, Secret::new("s"), tenant);
            s.grant_id = Some(grant.into());
            s.runtime_settings().grant
        };
        assert!(connected("Acme", "app", "ev-1").is_some());
        assert_eq!(
            connected("Acme", "app", "ev-1"),
            connected("Bolt", "app", "ev-1"),
            "two organisations of one recorded consent"
        );
        assert_ne!(
            connected("Acme", "app", "ev-1"),
            connected("Bolt", "app", "ev-2")
        );
        assert_ne!(
            connected("Acme", "app", "ev-1"),
            connected("Bolt", "other", "ev-1")
        );
    }

    #[test]
    fn offline_access_is_always_asked_for() {
        let mut s = XeroSettings::new(ConnectionId::new("uk"), "id", Secret::new("s"), "Acme");
        s.scopes = vec!["accounting.invoices".into(), "offline_access".into()];
        assert_eq!(
            s.effective_scopes(),
            vec!["offline_access", "accounting.invoices"]
        );
        s.scopes = vec![];
        let scopes = s.effective_scopes();
        assert_eq!(scopes[0], "offline_access");
        assert!(scopes.iter().any(|x| x == "accounting.transactions"));
    }

    #[test]
    fn base_url_override_lays_out_every_endpoint() {
        let s = XeroSettings::new(ConnectionId::new("uk"), "id", Secret::new("s"), "Acme")
            .with_base_url("http://127.0.0.1:9/");
        assert_eq!(
            s.api("/Invoices"),
            "http://127.0.0.1:9/api.xro/2.0/Invoices"
        );
        assert_eq!(s.connections_url(), "http://127.0.0.1:9/connections");
        assert_eq!(
            s.vendor_oauth().token_url,
            "http://127.0.0.1:9/connect/token"
        );
        assert_eq!(s.fee_account_code, "200");
    }
}
