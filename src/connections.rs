//! Building the running connectors from the config (config structs stay separate from
//! the components they configure).

use std::sync::Arc;

use overdued_connector::{Clock, ConnectionId, Connector, TokenStore};
use overdued_quickbooks::{Environment, FeeSettings, QuickBooksConnector, QuickBooksSettings};
use overdued_xero::{XeroConnector, XeroSettings};

use crate::config::{
    ConnectionConfig, QuickBooksConfig, QuickBooksEnvironment, SystemConfig, XeroConfig,
};

/// QuickBooks' built-in "Services" item, used for fee lines unless `fee_item_id` names
/// the company's own late-fee item.
pub const DEFAULT_QUICKBOOKS_FEE_ITEM: &str = overdued_quickbooks::config::DEFAULT_FEE_ITEM;

#[derive(Debug, thiserror::Error)]
#[error("connection {connection}: {message}")]
pub struct BuildError {
    pub connection: String,
    pub message: String,
}

/// Builds the connector for one configured connection.
pub fn build(
    c: &ConnectionConfig,
    tokens: Arc<dyn TokenStore>,
    clock: Arc<dyn Clock>,
) -> Result<Arc<dyn Connector>, BuildError> {
    let err = |message: String| BuildError {
        connection: c.name.clone(),
        message,
    };
    match &c.system {
        SystemConfig::QuickBooks(q) => {
            let realm = q.realm_id.clone().or_else(|| bound_realm(tokens.as_ref(), &c.name)).ok_or_else(|| {
                err("no realm_id configured and none learnt yet: run `overdued connect` for this connection".into())
            })?;
            let s = quickbooks_settings(c, q, realm);
            let conn =
                QuickBooksConnector::new(s, tokens, clock).map_err(|e| err(e.to_string()))?;
            Ok(Arc::new(conn))
        }
        SystemConfig::Xero(x) => {
            let mut s = xero_settings(c, x);
            s.grant_id = recorded_grant(tokens.as_ref(), &c.name);
            let conn = XeroConnector::new(s, tokens, clock).map_err(|e| err(e.to_string()))?;
            Ok(Arc::new(conn))
        }
    }
}

/// The QuickBooks connector's settings for a configured connection.
pub fn quickbooks_settings(
    c: &ConnectionConfig,
    q: &QuickBooksConfig,
    realm: String,
) -> QuickBooksSettings {
    let env = match q.environment {
        QuickBooksEnvironment::Production => Environment::Production,
        QuickBooksEnvironment::Sandbox => Environment::Sandbox,
    };
    let fees = FeeSettings {
        item_id: q
            .fee_item_id
            .clone()
            .unwrap_or_else(|| DEFAULT_QUICKBOOKS_FEE_ITEM.into()),
        item_name: None,
        posting: c.fee_posting,
    };
    let mut s = QuickBooksSettings::new(
        ConnectionId::new(c.name.clone()),
        realm,
        c.client_id.clone(),
        c.client_secret.clone(),
        env,
        fees,
    );
    s.api_base_url = q
        .api_base
        .as_ref()
        .map(|u| u.as_str().trim_end_matches('/').to_string());
    s.token_url = q.token_url.as_ref().map(|u| u.to_string());
    s.authorize_url = q.authorize_url.as_ref().map(|u| u.to_string());
    s.initial_refresh_token = c.initial_refresh_token.clone();
    s.runtime.limits = overdued_quickbooks::limits::LIMITS.accelerated(c.limits_time_scale);
    s
}

/// The Xero connector's settings for a configured connection.
pub fn xero_settings(c: &ConnectionConfig, x: &XeroConfig) -> XeroSettings {
    let mut s = XeroSettings::new(
        ConnectionId::new(c.name.clone()),
        c.client_id.clone(),
        c.client_secret.clone(),
        x.tenant.clone(),
    );
    s.scopes = x.scopes.clone();
    if let Some(u) = &x.api_base {
        s.api_base = u.as_str().trim_end_matches('/').to_string();
    }
    if let Some(u) = &x.identity_base {
        s.identity_base = u.as_str().trim_end_matches('/').to_string();
    }
    if let Some(u) = &x.token_url {
        s.token_url = u.to_string();
    }
    if let Some(u) = &x.authorize_url {
        s.authorize_url = u.to_string();
    }
    s.initial_refresh_token = c.initial_refresh_token.clone();
    s.fee_posting = c.fee_posting;
    s.fee_account_code = x.fee_account_code.clone();
    s.fee_item_code = x.fee_item_code.clone();
    s.limits = overdued_xero::limits::LIMITS.accelerated(c.limits_time_scale);
    s
}

fn bound_realm(tokens: &dyn TokenStore, connection: &str) -> Option<String> {
    tokens
        .load_tokens(connection)
        .ok()
        .flatten()
        .and_then(|t| t.bound_to)
}

/// The grant `overdued connect` recorded with the connection's tokens (Xero's
/// `authEventId`), so connections connected through one consent share its tokens.
pub fn recorded_grant(tokens: &dyn TokenStore, connection: &str) -> Option<String> {
    tokens
        .load_tokens(connection)
        .ok()
        .flatten()
        .and_then(|t| t.grant_id)
}
