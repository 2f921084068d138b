//! Xero's OAuth 2.0 endpoints and default scopes.

use std::time::Duration;

use overdued_connector::runtime::VendorOAuth;

pub const AUTHORIZE_URL: &str = "https://login.xero.com/identity/connect/authorize";
pub const TOKEN_URL: &str = "https://identity.xero.com/connect/token";
/// `offline_access` is what yields a refresh token.
pub const DEFAULT_SCOPES: &[&str] = &[
    "offline_access",
    "accounting.transactions",
    "accounting.contacts.read",
];

/// Xero's production endpoints and default scopes.
pub fn vendor_oauth() -> VendorOAuth {
    VendorOAuth {
        system: "xero",
        authorize_url: AUTHORIZE_URL.into(),
        token_url: TOKEN_URL.into(),
        scopes: DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect(),
        extra_authorize_params: Vec::new(),
        redirect_params: Vec::new(),
        bound_param: None,
        token_headers: Vec::new(),
        refresh_ahead: Duration::from_secs(120),
    }
}
