//! Which organisations a grant reaches (`GET /connections`) and which one a connection
//! is bound to: the library half of `overdued connect` for Xero.

use overdued_connector::runtime::HttpResponse;
use overdued_connector::{ConnectorError, TokenSet};
use serde::{Deserialize, Serialize};

use crate::errors::{classify, malformed, XeroError};
use crate::settings::XeroSettings;

/// One entry of `GET /connections`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct XeroTenant {
    /// The connection's own id (what `DELETE /connections/{id}` takes).
    #[serde(rename = "id", default)]
    pub connection_id: String,
    /// The consent (grant) that connected it: the same for every organisation of one
    /// consent.
    #[serde(rename = "authEventId", default)]
    pub auth_event_id: String,
    #[serde(rename = "tenantId")]
    pub tenant_id: String,
    #[serde(rename = "tenantName", default)]
    pub tenant_name: String,
    /// ORGANISATION, or PRACTICEMANAGER / PRACTICE for accountants' products.
    #[serde(rename = "tenantType", default)]
    pub tenant_type: String,
}

impl XeroTenant {
    fn is_organisation(&self) -> bool {
        self.tenant_type.is_empty() || self.tenant_type.eq_ignore_ascii_case("ORGANISATION")
    }
}

/// The organisation a connection was bound to, and everything the grant reaches (for the
/// CLI to show).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantBinding {
    pub tenant: XeroTenant,
    pub reachable: Vec<XeroTenant>,
}

impl TenantBinding {
    /// Records the binding in the tokens, so it is stored with them.
    pub fn apply(&self, tokens: &mut TokenSet) {
        tokens.bound_to = Some(self.tenant.tenant_id.clone());
        if !self.tenant.auth_event_id.is_empty() {
            tokens.grant_id = Some(self.tenant.auth_event_id.clone());
        }
    }
}

pub(crate) fn parse_connections(
    op: &str,
    resp: &HttpResponse,
) -> Result<Vec<XeroTenant>, ConnectorError> {
    if !(200..300).contains(&resp.status) {
        return Err(classify(op, resp));
    }
    serde_json::from_slice(&resp.body).map_err(|e| malformed(op, e))
}

/// Whether `s` is written like a tenant id (a UUID), as opposed to a name.
pub fn looks_like_tenant_id(s: &str) -> bool {
    let s = s.trim();
    s.len() == 36
        && s.char_indices().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

/// Finds the configured organisation among those the grant reaches: by tenant id, else by
/// name (case and surrounding spaces ignored). A name two organisations share is refused.
pub fn resolve_tenant(reachable: &[XeroTenant], wanted: &str) -> Result<XeroTenant, XeroError> {
    let w = wanted.trim();
    let orgs: Vec<&XeroTenant> = reachable.iter().filter(|t| t.is_organisation()).collect();
    if let Some(t) = orgs.iter().find(|t| t.tenant_id.eq_ignore_ascii_case(w)) {
        return Ok((*t).clone());
    }
    let by_name: Vec<&&XeroTenant> = orgs
        .iter()
        .filter(|t| t.tenant_name.trim().eq_ignore_ascii_case(w))
        .collect();
    let pairs = |ts: &mut dyn Iterator<Item = &XeroTenant>| {
        ts.map(|t| (t.tenant_id.clone(), t.tenant_name.clone()))
            .collect::<Vec<_>>()
    };
    match by_name.len() {
        1 => Ok((**by_name[0]).clone()),
        0 => Err(XeroError::TenantNotFound {
            wanted: w.to_string(),
            reachable: pairs(&mut orgs.iter().copied()),
        }),
        n => Err(XeroError::AmbiguousTenant {
            wanted: w.to_string(),
            count: n,
            candidates: pairs(&mut by_name.iter().map(|t| **t)),
        }),
    }
}

/// Lists the organisations `access_token` reaches.
pub async fn list_connections(
    http: &reqwest::Client,
    connections_url: &str,
    access_token: &overdued_connector::Secret,
) -> Result<Vec<XeroTenant>, ConnectorError> {
    let op = "list Xero connections";
    let resp = http
        .get(connections_url)
        .bearer_auth(access_token.expose())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| ConnectorError::transient(format!("{op}: {}", e.without_url())))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .bytes()
        .await
        .map_err(|e| ConnectorError::transient(format!("{op}: {}", e.without_url())))?
        .to_vec();
    parse_connections(
        op,
        &HttpResponse {
            status,
            headers,
            body,
        },
    )
}

/// `overdued connect` for Xero, after the code exchange: lists what the new grant reaches
/// and picks the configured organisation. Call [`TenantBinding::apply`] on the tokens
/// before storing them.
pub async fn bind_tenant(
    settings: &XeroSettings,
    tokens: &TokenSet,
) -> Result<TenantBinding, XeroError> {
    let http = reqwest::Client::builder()
        .timeout(settings.request_timeout)
        .build()
        .map_err(|e| XeroError::Settings(e.to_string()))?;
    let reachable =
        list_connections(&http, &settings.connections_url(), &tokens.access_token).await?;
    let tenant = resolve_tenant(&reachable, &settings.tenant)?;
    tracing::info!(connection = %settings.connection, tenant_id = %tenant.tenant_id, tenant_name = %tenant.tenant_name, reachable = reachable.len(), "Xero organisation bound");
    Ok(TenantBinding { tenant, reachable })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(id: &str, name: &str, kind: &str) -> XeroTenant {
        XeroTenant {
            connection_id: format!("c-{id}"),
            auth_event_id: "ev".into(),
            tenant_id: id.into(),
            tenant_name: name.into(),
            tenant_type: kind.into(),
        }
    }

    #[test]
    fn resolves_by_id_or_name() {
        let a = "7b8c6f1e-0000-4000-8000-00000000000a";
        let b = "7b8c6f1e-0000-4000-8000-00000000000b";
        let all = vec![
            t(a, "Acme Trading Ltd", "ORGANISATION"),
            t(b, "Demo Company (UK)", "ORGANISATION"),
            t("pm", "Acme Trading Ltd", "PRACTICEMANAGER"),
        ];
        assert_eq!(
            resolve_tenant(&all, a).unwrap().tenant_name,
            "Acme Trading Ltd"
        );
        assert_eq!(
            resolve_tenant(&all, &b.to_uppercase()).unwrap().tenant_id,
            b
        );
        assert_eq!(
            resolve_tenant(&all, "  acme trading ltd ")
                .unwrap()
                .tenant_id,
            a,
            "a practice-manager tenant of the same name is not an organisation"
        );
        let e = resolve_tenant(&all, "Nope Ltd").unwrap_err().to_string();
        assert!(
            e.contains("Nope Ltd") && e.contains("Demo Company (UK)") && e.contains(b),
            "{e}"
        );
        let twins = vec![t(a, "Twin", "ORGANISATION"), t(b, "Twin", "ORGANISATION")];
        assert!(matches!(
            resolve_tenant(&twins, "Twin"),
            Err(XeroError::AmbiguousTenant { count: 2, .. })
        ));
        assert!(looks_like_tenant_id(a));
        assert!(!looks_like_tenant_id("Acme Trading Ltd"));
    }

    #[test]
    fn parses_the_connections_shape() {
        let body = br#"[{"id":"e1eede29-f875-4a5d-8470-17f6a29a88b1","authEventId":"d99ecdfe-391d-43d2-b834-17636ba90e8d","tenantId":"70784a63-d24b-46a9-a4db-0e70a274b056","tenantType":"ORGANISATION","tenantName":"Maple Florists","createdDateUtc":"2019-07-09T23:40:30.1833130","updatedDateUtc":"2020-05-15T01:35:13.8491980"}]"#;
        let r = HttpResponse {
            status: 200,
            headers: Default::default(),
            body: body.to_vec(),
        };
        let ts = parse_connections("x", &r).unwrap();
        assert_eq!(ts[0].tenant_name, "Maple Florists");
        assert_eq!(ts[0].connection_id, "e1eede29-f875-4a5d-8470-17f6a29a88b1");
        let cut = HttpResponse {
            status: 200,
            headers: Default::default(),
            body: body[..40].to_vec(),
        };
        assert!(parse_connections("x", &cut).unwrap_err().is_retryable());
    }
}
