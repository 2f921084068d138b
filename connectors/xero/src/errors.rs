//! Turning Xero's HTTP answers into classified errors. Messages carry the operation and
//! Xero's own words, never a token.

use overdued_connector::runtime::{retry_after, HttpResponse};
use overdued_connector::{ConnectorError, Secret};

use crate::wire::ApiError;

/// Errors of the Xero connector's own API (construction, tenant binding).
#[derive(Debug, thiserror::Error)]
pub enum XeroError {
    #[error(transparent)]
    Runtime(#[from] overdued_connector::runtime::RuntimeBuildError),
    #[error("xero: {0}")]
    Connector(#[from] ConnectorError),
    #[error("no Xero organisation matches {wanted:?}; this grant reaches: {}", list_reachable(.reachable))]
    TenantNotFound {
        wanted: String,
        reachable: Vec<(String, String)>,
    },
    #[error("{wanted:?} names {count} Xero organisations; configure the tenant id instead: {}", list_reachable(.candidates))]
    AmbiguousTenant {
        wanted: String,
        count: usize,
        candidates: Vec<(String, String)>,
    },
    #[error("invalid Xero settings: {0}")]
    Settings(String),
}

fn list_reachable(r: &[(String, String)]) -> String {
    if r.is_empty() {
        return "no organisations (reconnect and tick the organisation on Xero's consent screen)"
            .into();
    }
    r.iter()
        .map(|(id, name)| format!("{name:?} ({id})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Classifies a non-2xx answer to `op`.
pub fn classify(op: &str, resp: &HttpResponse) -> ConnectorError {
    let status = resp.status;
    let body = String::from_utf8_lossy(&resp.body);
    let api: Option<ApiError> = serde_json::from_slice(&resp.body).ok();
    let said = api
        .as_ref()
        .map(ApiError::describe)
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| short(&body));
    match status {
        401 => ConnectorError::Unauthorized,
        403 => ConnectorError::Permanent(format!(
            "{op}: Xero refused access to the organisation (HTTP 403){}",
            suffix(&said)
        )),
        404 => ConnectorError::NotFound(format!("{op}: HTTP 404{}", suffix(&said))),
        429 => {
            let problem = resp
                .headers
                .get("x-rate-limit-problem")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("unknown");
            let after = retry_after(&resp.headers);
            tracing::warn!(
                op,
                problem,
                retry_after_s = after.map(|d| d.as_secs()),
                "Xero rate limit hit"
            );
            ConnectorError::RateLimited {
                system: "xero",
                retry_after: after,
            }
        }
        s if s >= 500 => ConnectorError::Transient {
            message: format!("{op}: Xero answered HTTP {s}{}", suffix(&said)),
            retry_after: retry_after(&resp.headers),
        },
        400 => {
            let kind = api
                .as_ref()
                .and_then(|a| a.kind.clone())
                .unwrap_or_else(|| "HTTP 400".into());
            ConnectorError::Permanent(format!("{op}: {kind}{}", suffix(&said)))
        }
        s => ConnectorError::Permanent(format!("{op}: Xero answered HTTP {s}{}", suffix(&said))),
    }
}

/// A 2xx whose body could not be read: the response was cut or garbled on the way, so
/// the same request (carrying its idempotency key when it writes) is tried again.
pub fn malformed(op: &str, e: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::transient(format!("{op}: unreadable Xero response: {e}"))
}

fn suffix(s: &str) -> String {
    if s.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", s.trim())
    }
}

fn short(body: &str) -> String {
    let t = body.trim();
    if t.starts_with('<') {
        return String::new();
    }
    truncate_chars(t, 300)
}

/// At most `max` characters, cut on a character boundary.
pub fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_string(),
        None => s.to_string(),
    }
}

/// Removes a secret that must never reach a log or message, should a server echo it.
pub fn scrub(message: String, secrets: &[&Secret]) -> String {
    secrets
        .iter()
        .filter(|s| s.expose().len() >= 8)
        .fold(message, |m, s| m.replace(s.expose(), "[redacted]"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};
    use std::time::Duration;

    fn resp(status: u16, body: &str, headers: &[(&'static str, &str)]) -> HttpResponse {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        HttpResponse {
            status,
            headers: h,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn classes() {
        assert!(matches!(
            classify("x", &resp(401, "", &[])),
            ConnectorError::Unauthorized
        ));
        assert!(matches!(
            classify(
                "x",
                &resp(403, r#"{"Type":"AuthorizationUnsuccessful"}"#, &[])
            ),
            ConnectorError::Permanent(_)
        ));
        assert!(matches!(
            classify(
                "x",
                &resp(404, "The resource you're looking for cannot be found", &[])
            ),
            ConnectorError::NotFound(_)
        ));
        match classify(
            "x",
            &resp(
                429,
                "",
                &[("retry-after", "17"), ("x-rate-limit-problem", "minute")],
            ),
        ) {
            ConnectorError::RateLimited { retry_after, .. } => {
                assert_eq!(retry_after, Some(Duration::from_secs(17)))
            }
            e => panic!("{e}"),
        }
        for s in [500, 502, 503, 504] {
            assert!(classify("x", &resp(s, "<html>oops</html>", &[])).is_retryable());
        }
        let e = classify(
            "create fee invoice",
            &resp(
                400,
                r#"{"ErrorNumber":10,"Type":"ValidationException","Message":"A validation exception occurred","Elements":[{"ValidationErrors":[{"Message":"Account code '999' is not a valid code for this document."}]}]}"#,
                &[],
            ),
        );
        match e {
            ConnectorError::Permanent(m) => {
                assert!(m.contains("ValidationException"), "{m}");
                assert!(m.contains("Account code '999'"), "{m}");
                assert!(m.starts_with("create fee invoice"), "{m}");
            }
            e => panic!("{e}"),
        }
    }

    #[test]
    fn truncation_is_char_safe_and_scrub_redacts() {
        assert_eq!(truncate_chars("héllo", 2), "hé");
        assert_eq!(truncate_chars("日本語テキスト", 3), "日本語");
        assert_eq!(truncate_chars("ab", 5), "ab");
        let s = Secret::new("xero_at_SECRETVALUE");
        assert_eq!(
            scrub("token xero_at_SECRETVALUE leaked".into(), &[&s]),
            "token [redacted] leaked"
        );
    }

    #[test]
    fn tenant_errors_list_what_the_grant_reaches() {
        let e = XeroError::TenantNotFound {
            wanted: "Acme".into(),
            reachable: vec![
                ("t-1".into(), "Demo Company (UK)".into()),
                ("t-2".into(), "Other Ltd".into()),
            ],
        };
        let m = e.to_string();
        assert!(
            m.contains("\"Acme\"") && m.contains("Demo Company (UK)") && m.contains("t-2"),
            "{m}"
        );
        let e = XeroError::TenantNotFound {
            wanted: "Acme".into(),
            reachable: vec![],
        };
        assert!(e.to_string().contains("reconnect"), "{e}");
    }
}
