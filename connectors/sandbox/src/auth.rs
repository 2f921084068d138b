//! OAuth 2.0: authorization codes (with PKCE), access tokens that expire on the sandbox
//! clock, refresh tokens that rotate, revocation.
//!
//! Rotation differs by vendor. Xero rotates the refresh token on every refresh and
//! accepts the previous one for [`XERO_GRACE_SECS`] more. QuickBooks (Intuit's OAuth
//! FAQ) changes a refresh token's value only about every 24 hours: a refresh within
//! [`QBO_ROTATE_SECS`] of the current refresh token's issue returns that same refresh
//! token (with its remaining lifetime); the first refresh after that rotates it, and the
//! old one is void at once (no grace). Every rotation starts a new 100-day lifetime, so
//! a grant refreshed at least once in 100 days never expires.

use base64::Engine;
use chrono::Duration;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::credentials::{AccessToken, AuthCode, Grant, RefreshToken};
use crate::util::{encode, param};
use crate::world::World;
use crate::System;

pub const QBO_ACCESS_SECS: i64 = 3600;
/// Intuit's x_refresh_token_expires_in today (about 100 days).
pub const QBO_REFRESH_SECS: i64 = 8_726_400;
/// A QuickBooks refresh token keeps its value for this long after it was issued:
/// refreshes within it return the same refresh token.
pub const QBO_ROTATE_SECS: i64 = 24 * 3600;
pub const XERO_ACCESS_SECS: i64 = 1800;
pub const XERO_REFRESH_SECS: i64 = 60 * 24 * 3600;
/// Xero lets the previous refresh token be used again for this long after a rotation.
pub const XERO_GRACE_SECS: i64 = 1800;
const CODE_SECS: i64 = 600;

/// Tokens handed out for one grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantedTokens {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: i64,
    /// Seconds the refresh token has left (QuickBooks' `x_refresh_token_expires_in`).
    pub refresh_expires_in: i64,
}

/// Why an API call's bearer token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessError {
    Missing,
    Unknown,
    Expired,
    Revoked,
}

/// An HTTP answer from the OAuth endpoints.
pub struct OAuthReply {
    pub status: u16,
    pub location: Option<String>,
    pub body: Value,
}

fn oauth_error(status: u16, error: &str, description: &str) -> OAuthReply {
    OAuthReply {
        status,
        location: None,
        body: json!({"error": error, "error_description": description}),
    }
}

fn access_secs(system: System) -> i64 {
    match system {
        System::QuickBooks => QBO_ACCESS_SECS,
        System::Xero => XERO_ACCESS_SECS,
    }
}

fn refresh_secs(system: System) -> i64 {
    match system {
        System::QuickBooks => QBO_REFRESH_SECS,
        System::Xero => XERO_REFRESH_SECS,
    }
}

/// Mints a fresh access + refresh token pair for a grant.
pub fn issue(w: &mut World, grant: usize) -> GrantedTokens {
    let system = w.auth.grants[grant].system;
    let (ap, rp) = match system {
        System::QuickBooks => ("qbo_at_", "qbo_rt_"),
        System::Xero => ("xero_at_", "xero_rt_"),
    };
    let access = w.new_token(ap);
    let refresh = w.new_token(rp);
    let now = w.now;
    w.auth.access.insert(
        access.clone(),
        AccessToken {
            grant,
            expires: now + Duration::seconds(access_secs(system)),
        },
    );
    w.auth.refresh.insert(
        refresh.clone(),
        RefreshToken {
            grant,
            expires: now + Duration::seconds(refresh_secs(system)),
            issued: now,
            superseded_at: None,
        },
    );
    GrantedTokens {
        access_token: access,
        refresh_token: refresh,
        expires_in: access_secs(system),
        refresh_expires_in: refresh_secs(system),
    }
}

/// A new access token for a grant, handed out with the refresh token `refresh` that
/// stays current (QuickBooks within [`QBO_ROTATE_SECS`] of its issue).
fn issue_access(w: &mut World, grant: usize, refresh: &str) -> GrantedTokens {
    let system = w.auth.grants[grant].system;
    let access = w.new_token(match system {
        System::QuickBooks => "qbo_at_",
        System::Xero => "xero_at_",
    });
    let now = w.now;
    w.auth.access.insert(
        access.clone(),
        AccessToken {
            grant,
            expires: now + Duration::seconds(access_secs(system)),
        },
    );
    let left = w
        .auth
        .refresh
        .get(refresh)
        .map_or(0, |r| (r.expires - now).num_seconds().max(0));
    GrantedTokens {
        access_token: access,
        refresh_token: refresh.to_string(),
        expires_in: access_secs(system),
        refresh_expires_in: left,
    }
}

pub fn token_body(system: System, t: &GrantedTokens, scope: &str) -> Value {
    match system {
        System::QuickBooks => json!({
            "token_type": "bearer",
            "expires_in": t.expires_in,
            "refresh_token": t.refresh_token,
            "x_refresh_token_expires_in": t.refresh_expires_in,
            "access_token": t.access_token,
        }),
        System::Xero => json!({
            "access_token": t.access_token,
            "expires_in": t.expires_in,
            "token_type": "Bearer",
            "refresh_token": t.refresh_token,
            "scope": scope,
        }),
    }
}

/// A new grant straight away, as if the user had consented (the control API's token).
pub fn grant_direct(w: &mut World, system: System, tenants: Vec<String>) -> GrantedTokens {
    let scope = default_scope(system);
    w.auth.grants.push(Grant {
        system,
        tenants,
        scope,
        revoked: false,
        created: w.now,
    });
    let g = w.auth.grants.len() - 1;
    issue(w, g)
}

fn default_scope(system: System) -> String {
    match system {
        System::QuickBooks => "com.intuit.quickbooks.accounting".into(),
        System::Xero => "offline_access accounting.transactions accounting.contacts".into(),
    }
}

/// Revokes every grant that reaches the tenant; returns how many.
pub fn revoke(w: &mut World, system: System, tenant: &str) -> usize {
    let mut n = 0;
    for g in &mut w.auth.grants {
        if g.system == system
            && !g.revoked
            && g.tenants.iter().any(|t| t.eq_ignore_ascii_case(tenant))
        {
            g.revoked = true;
            n += 1;
        }
    }
    n
}

/// Checks a bearer token for an API call and returns its grant.
pub fn check_access(
    w: &World,
    system: System,
    authorization: Option<&str>,
) -> Result<usize, AccessError> {
    let Some(h) = authorization else {
        return Err(AccessError::Missing);
    };
    let token = match h.split_once(' ') {
        Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim(),
        _ => return Err(AccessError::Missing),
    };
    let Some(a) = w.auth.access.get(token) else {
        return Err(AccessError::Unknown);
    };
    let g = &w.auth.grants[a.grant];
    if g.system != system {
        return Err(AccessError::Unknown);
    }
    if g.revoked {
        return Err(AccessError::Revoked);
    }
    if w.now >= a.expires {
        return Err(AccessError::Expired);
    }
    Ok(a.grant)
}

/// GET authorize: validates the request and redirects straight back with a code.
pub fn authorize(w: &mut World, system: System, q: &[(String, String)]) -> OAuthReply {
    let Some(client) = w.auth.client(system).cloned() else {
        return oauth_error(
            400,
            "invalid_client",
            "no client is registered for this system",
        );
    };
    if param(q, "client_id") != Some(client.client_id.as_str()) {
        return oauth_error(400, "invalid_client", "unknown client_id");
    }
    let Some(redirect) =
        param(q, "redirect_uri").filter(|r| r.starts_with("http://") || r.starts_with("https://"))
    else {
        return oauth_error(
            400,
            "invalid_request",
            "redirect_uri is missing or not an absolute http(s) URL",
        );
    };
    let redirect = redirect.to_string();
    if param(q, "response_type") != Some("code") {
        return oauth_error(
            400,
            "unsupported_response_type",
            "response_type must be code",
        );
    }
    let scope = param(q, "scope").unwrap_or("").to_string();
    if scope.trim().is_empty() {
        return oauth_error(400, "invalid_scope", "scope is required");
    }
    let challenge = param(q, "code_challenge").map(str::to_string);
    if challenge.is_some() && param(q, "code_challenge_method") != Some("S256") {
        return oauth_error(400, "invalid_request", "code_challenge_method must be S256");
    }
    let all: Vec<String> = w
        .tenants
        .iter()
        .filter(|t| t.system == system)
        .map(|t| t.id.clone())
        .collect();
    // The consent screen's choice: QuickBooks connects one company, Xero every organisation
    // the user picks (by default all of them). `tenant` lets a test pick one.
    let chosen = param(q, "tenant")
        .or_else(|| param(q, "realmId"))
        .map(str::to_string);
    let tenants = match (&chosen, system) {
        (Some(c), _) => match all.iter().find(|t| t.eq_ignore_ascii_case(c)) {
            Some(t) => vec![t.clone()],
            None => return oauth_error(400, "invalid_request", "unknown tenant"),
        },
        (None, System::QuickBooks) => all.into_iter().take(1).collect(),
        (None, System::Xero) => all,
    };
    if tenants.is_empty() {
        return oauth_error(400, "invalid_request", "no tenant to connect");
    }
    let code = w.new_token("code_");
    let expires = w.now + Duration::seconds(CODE_SECS);
    let realm = tenants[0].clone();
    w.auth.codes.insert(
        code.clone(),
        AuthCode {
            system,
            client_id: client.client_id,
            redirect_uri: redirect.clone(),
            tenants,
            challenge,
            scope,
            expires,
        },
    );
    let mut loc = redirect;
    loc.push(if loc.contains('?') { '&' } else { '?' });
    loc.push_str(&format!("code={}", encode(&code)));
    if let Some(state) = param(q, "state") {
        loc.push_str(&format!("&state={}", encode(state)));
    }
    if system == System::QuickBooks {
        loc.push_str(&format!("&realmId={}", encode(&realm)));
    }
    OAuthReply {
        status: 302,
        location: Some(loc),
        body: Value::Null,
    }
}

/// POST token: authorization_code and refresh_token grants.
pub fn token(
    w: &mut World,
    system: System,
    authorization: Option<&str>,
    form: &[(String, String)],
) -> OAuthReply {
    let Some(client) = w.auth.client(system).cloned() else {
        return oauth_error(
            401,
            "invalid_client",
            "no client is registered for this system",
        );
    };
    let (id, secret) = match authorization.and_then(basic_credentials) {
        Some((i, s)) => (Some(i), Some(s)),
        None => (
            param(form, "client_id").map(str::to_string),
            param(form, "client_secret").map(str::to_string),
        ),
    };
    if id.as_deref() != Some(client.client_id.as_str()) {
        return oauth_error(401, "invalid_client", "client authentication failed");
    }
    let secret_ok = secret.as_deref() == Some(client.client_secret.as_str());
    match param(form, "grant_type") {
        Some("authorization_code") => {
            let code = param(form, "code").unwrap_or("");
            let Some(c) = w.auth.codes.get(code).cloned() else {
                return oauth_error(
                    400,
                    "invalid_grant",
                    "the authorization code is invalid or was already used",
                );
            };
            // A public PKCE client (Xero) may omit the secret; everyone else must send it.
            let pkce_public = system == System::Xero && c.challenge.is_some() && secret.is_none();
            if !secret_ok && !pkce_public {
                return oauth_error(401, "invalid_client", "client authentication failed");
            }
            w.auth.codes.remove(code);
            if c.system != system || w.now >= c.expires {
                return oauth_error(400, "invalid_grant", "the authorization code has expired");
            }
            if param(form, "redirect_uri") != Some(c.redirect_uri.as_str()) {
                return oauth_error(
                    400,
                    "invalid_grant",
                    "redirect_uri does not match the authorization request",
                );
            }
            if let Some(challenge) = &c.challenge {
                let Some(verifier) = param(form, "code_verifier") else {
                    return oauth_error(400, "invalid_grant", "code_verifier is required");
                };
                let digest = Sha256::digest(verifier.as_bytes());
                if base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest) != *challenge {
                    return oauth_error(
                        400,
                        "invalid_grant",
                        "code_verifier does not match the code_challenge",
                    );
                }
            }
            w.auth.grants.push(Grant {
                system,
                tenants: c.tenants,
                scope: c.scope.clone(),
                revoked: false,
                created: w.now,
            });
            let g = w.auth.grants.len() - 1;
            let t = issue(w, g);
            OAuthReply {
                status: 200,
                location: None,
                body: token_body(system, &t, &c.scope),
            }
        }
        Some("refresh_token") => {
            if !secret_ok {
                return oauth_error(401, "invalid_client", "client authentication failed");
            }
            let rt = param(form, "refresh_token").unwrap_or("");
            let Some(r) = w.auth.refresh.get(rt).cloned() else {
                return oauth_error(400, "invalid_grant", "Token has been expired or revoked.");
            };
            let g = &w.auth.grants[r.grant];
            let grace = match system {
                System::QuickBooks => Duration::zero(),
                System::Xero => Duration::seconds(XERO_GRACE_SECS),
            };
            let superseded = r.superseded_at.is_some_and(|s| w.now >= s + grace);
            if g.system != system || g.revoked || w.now >= r.expires || superseded {
                return oauth_error(400, "invalid_grant", "Token has been expired or revoked.");
            }
            let scope = g.scope.clone();
            let now = w.now;
            if system == System::QuickBooks
                && r.superseded_at.is_none()
                && now < r.issued + Duration::seconds(QBO_ROTATE_SECS)
            {
                // Younger than 24 hours: the same refresh token again, nothing voided.
                let t = issue_access(w, r.grant, rt);
                return OAuthReply {
                    status: 200,
                    location: None,
                    body: token_body(system, &t, &scope),
                };
            }
            if system == System::Xero {
                // A Xero grant has one live refresh token: a rotation supersedes every
                // earlier one of the grant (each then lasts the grace), so connections
                // holding separate copies of one grant void each other.
                for old in w.auth.refresh.values_mut().filter(|o| o.grant == r.grant) {
                    old.superseded_at.get_or_insert(now);
                }
            } else if let Some(old) = w.auth.refresh.get_mut(rt) {
                old.superseded_at.get_or_insert(now);
            }
            let t = issue(w, r.grant);
            OAuthReply {
                status: 200,
                location: None,
                body: token_body(system, &t, &scope),
            }
        }
        _ => oauth_error(
            400,
            "unsupported_grant_type",
            "grant_type must be authorization_code or refresh_token",
        ),
    }
}

fn basic_credentials(h: &str) -> Option<(String, String)> {
    let (scheme, rest) = h.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (i, p) = s.split_once(':')?;
    Some((crate::util::decode(i), crate::util::decode(p)))
}
