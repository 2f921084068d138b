//! OAuth tokens as the connectors hold them, and where they are persisted.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// The tokens of one connection. `Debug` never shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenSet {
    pub access_token: Secret,
    pub access_expires_at: DateTime<Utc>,
    pub refresh_token: Secret,
    /// When the refresh token stops working if unused (QuickBooks 100 days rolling,
    /// Xero 60 days), when the system says.
    pub refresh_expires_at: Option<DateTime<Utc>>,
    /// The refresh token this one replaced, kept for Xero's 30-minute retry grace.
    #[serde(default)]
    pub previous_refresh_token: Option<Secret>,
    pub obtained_at: DateTime<Utc>,
    /// QuickBooks realmId or Xero tenant id the grant was bound to, if learnt at connect.
    #[serde(default)]
    pub bound_to: Option<String>,
    /// The vendor's id of the consent (grant) these tokens belong to, when it says (Xero's
    /// `authEventId`, learnt at `overdued connect`): connections on one grant share it.
    #[serde(default)]
    pub grant_id: Option<String>,
    /// Set when the refresh token was refused (`invalid_grant`): the owner must reconnect.
    #[serde(default)]
    pub needs_reconnect: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("token store: {0}")]
pub struct TokenStoreError(pub String);

/// Durable token storage. `save` returns only once the tokens are on disk: a rotated
/// refresh token must never be lost to a crash.
pub trait TokenStore: Send + Sync {
    fn load_tokens(&self, connection: &str) -> Result<Option<TokenSet>, TokenStoreError>;
    fn save_tokens(&self, connection: &str, tokens: &TokenSet) -> Result<(), TokenStoreError>;
}
