//! Intuit's OAuth 2.0 endpoints and what QuickBooks wants on the way.

use std::time::Duration;

use overdued_connector::runtime::VendorOAuth;

pub const AUTHORIZE_URL: &str = "https://appcenter.intuit.com/connect/oauth2";
pub const TOKEN_URL: &str = "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer";
pub const SCOPE: &str = "com.intuit.quickbooks.accounting";

/// QuickBooks Online's production endpoints and scope. The grant is bound to the
/// company the user picked (`realmId` on the redirect), and the token endpoint reports
/// the refresh token's hard expiry only when asked to by header.
pub fn vendor_oauth() -> VendorOAuth {
    VendorOAuth {
        system: "quickbooks",
        authorize_url: AUTHORIZE_URL.into(),
        token_url: TOKEN_URL.into(),
        scopes: vec![SCOPE.into()],
        extra_authorize_params: Vec::new(),
        redirect_params: vec!["realmId".into()],
        bound_param: Some("realmId".into()),
        token_headers: vec![(
            "x-include-refresh-token-hard-expires-in".into(),
            "true".into(),
        )],
        refresh_ahead: Duration::from_secs(300),
    }
}
