//! Xero webhook deliveries: the header carrying the signature and the `events` body,
//! which is empty for Xero's intent-to-receive check. The daemon checks the signature
//! over the raw bytes before calling [`parse`].

use overdued_connector::webhook::{Event, WebhookError};
use serde::Deserialize;

/// base64(HMAC-SHA256(body, webhook key)).
pub const SIGNATURE_HEADER: &str = "x-xero-signature";

#[derive(Deserialize)]
struct XeroBody {
    events: Vec<XeroEvent>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct XeroEvent {
    resource_id: String,
    tenant_id: String,
    event_category: String,
    event_type: String,
}

/// Parses a Xero delivery; the intent-to-receive check has an empty `events` list.
pub fn parse(body: &[u8]) -> Result<Vec<Event>, WebhookError> {
    let b: XeroBody =
        serde_json::from_slice(body).map_err(|e| WebhookError(format!("Xero events: {e}")))?;
    Ok(b.events
        .into_iter()
        .map(|e| Event {
            tenant: e.tenant_id,
            entity: e.event_category.to_lowercase(),
            id: e.resource_id,
            operation: e.event_type.to_lowercase(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xero_events_and_the_intent_to_receive_check_parse() {
        assert!(parse(br#"{"events":[],"firstEventSequence":0,"lastEventSequence":0,"entropy":"S0m3r4Nd0mt3xt"}"#).unwrap().is_empty());
        let body = br#"{"events":[{"resourceUrl":"https://api.xero.com/api.xro/2.0/Invoices/aa","resourceId":"aa","eventDateUtc":"2026-11-23T10:00:00.000","eventType":"UPDATE","eventCategory":"INVOICE","tenantId":"t1","tenantType":"ORGANISATION"}],"firstEventSequence":1,"lastEventSequence":1,"entropy":"x"}"#;
        assert_eq!(
            parse(body).unwrap(),
            vec![Event {
                tenant: "t1".into(),
                entity: "invoice".into(),
                id: "aa".into(),
                operation: "update".into()
            }]
        );
    }

    #[test]
    fn bad_bodies_are_errors_not_panics() {
        assert!(parse(b"{\"events\":[{}]}").is_err());
        assert!(parse(b"").is_err());
    }
}
