//! What a QuickBooks connection needs to run; the root config maps onto this.

use overdued_connector::runtime::{OAuthClient, RuntimeSettings, VendorOAuth};
use overdued_connector::{ConnectionId, Currency, FeePosting, Secret};

/// Which Intuit environment the app and company live in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    #[default]
    Production,
    Sandbox,
}

impl Environment {
    pub fn default_api_base(&self) -> &'static str {
        match self {
            Environment::Production => "https://quickbooks.api.intuit.com",
            Environment::Sandbox => "https://sandbox-quickbooks.api.intuit.com",
        }
    }
}

/// How late fees are written to QuickBooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeeSettings {
    /// The service item fee lines are booked to (e.g. a "Late Fee" item).
    pub item_id: String,
    pub item_name: Option<String>,
    /// `SeparateInvoice` unless the user opted in to editing issued invoices; a request
    /// asking for `LineOnOriginal` also opts in.
    pub posting: FeePosting,
}

/// One QuickBooks company (realm) as overdued talks to it.
#[derive(Debug, Clone)]
pub struct QuickBooksSettings {
    pub connection: ConnectionId,
    pub realm_id: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub environment: Environment,
    /// Overrides (the sandbox, a proxy): scheme and host, without `/v3/...`.
    pub api_base_url: Option<String>,
    pub token_url: Option<String>,
    pub authorize_url: Option<String>,
    /// Used once, when the token store has nothing for this connection.
    pub initial_refresh_token: Option<Secret>,
    /// The company's home currency, for invoices that name none.
    pub home_currency: Currency,
    pub fees: FeeSettings,
    pub runtime: RuntimeSettings,
}

impl QuickBooksSettings {
    /// Settings with QuickBooks' default limits and retry policy.
    pub fn new(
        connection: ConnectionId,
        realm_id: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: Secret,
        environment: Environment,
        fees: FeeSettings,
    ) -> Self {
        QuickBooksSettings {
            connection,
            realm_id: realm_id.into(),
            client_id: client_id.into(),
            client_secret,
            environment,
            api_base_url: None,
            token_url: None,
            authorize_url: None,
            initial_refresh_token: None,
            home_currency: Currency::USD,
            fees,
            runtime: RuntimeSettings::new(crate::limits::LIMITS),
        }
    }

    pub fn api_base(&self) -> String {
        self.api_base_url
            .as_deref()
            .unwrap_or(self.environment.default_api_base())
            .trim_end_matches('/')
            .to_string()
    }

    /// The vendor description with any endpoint overrides applied.
    pub fn vendor(&self) -> VendorOAuth {
        let mut v = crate::oauth::vendor_oauth();
        if let Some(u) = &self.token_url {
            v.token_url = u.clone();
        }
        if let Some(u) = &self.authorize_url {
            v.authorize_url = u.clone();
        }
        v
    }

    pub fn oauth_client(&self) -> OAuthClient {
        OAuthClient {
            vendor: self.vendor(),
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
        }
    }
}
