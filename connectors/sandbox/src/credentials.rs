//! What the sandbox's OAuth server remembers: registered clients, pending codes, grants
//! and the tokens issued for them. Types only, so the world can hold them without
//! depending on the OAuth endpoints in `auth.rs` (which need the world).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::System;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Client {
    pub system: System,
    pub client_id: String,
    pub client_secret: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthCode {
    pub system: System,
    pub client_id: String,
    pub redirect_uri: String,
    pub tenants: Vec<String>,
    pub challenge: Option<String>,
    pub scope: String,
    pub expires: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Grant {
    pub system: System,
    pub tenants: Vec<String>,
    pub scope: String,
    pub revoked: bool,
    pub created: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessToken {
    pub grant: usize,
    pub expires: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshToken {
    pub grant: usize,
    pub expires: DateTime<Utc>,
    /// When it was issued (state files from before this field count as old).
    #[serde(default)]
    pub issued: DateTime<Utc>,
    /// When a newer refresh token replaced this one.
    pub superseded_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AuthState {
    pub clients: Vec<Client>,
    pub codes: BTreeMap<String, AuthCode>,
    pub grants: Vec<Grant>,
    pub access: BTreeMap<String, AccessToken>,
    pub refresh: BTreeMap<String, RefreshToken>,
}

impl AuthState {
    pub fn with_default_clients() -> AuthState {
        AuthState {
            clients: vec![
                Client {
                    system: System::QuickBooks,
                    client_id: DEFAULT_QBO_CLIENT_ID.into(),
                    client_secret: DEFAULT_QBO_CLIENT_SECRET.into(),
                },
                Client {
                    system: System::Xero,
                    client_id: DEFAULT_XERO_CLIENT_ID.into(),
                    client_secret: DEFAULT_XERO_CLIENT_SECRET.into(),
                },
            ],
            ..AuthState::default()
        }
    }

    pub fn client(&self, system: System) -> Option<&Client> {
        self.clients.iter().find(|c| c.system == system)
    }
}

pub const DEFAULT_QBO_CLIENT_ID: &str = "sandbox-quickbooks-client";
pub const DEFAULT_QBO_CLIENT_SECRET: &str = "sandbox-quickbooks-secret";
pub const DEFAULT_XERO_CLIENT_ID: &str = "sandbox-xero-client";
pub const DEFAULT_XERO_CLIENT_SECRET: &str = "sandbox-xero-secret";
