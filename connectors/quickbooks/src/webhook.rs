//! QuickBooks webhook deliveries: the header carrying the signature and the two body
//! shapes Intuit sends (legacy `eventNotifications` and CloudEvents). The daemon checks
//! the signature over the raw bytes before calling [`parse`].

use overdued_connector::webhook::{Event, WebhookError};
use serde::Deserialize;

/// base64(HMAC-SHA256(body, verifier token)).
pub const SIGNATURE_HEADER: &str = "intuit-signature";

#[derive(Deserialize)]
struct Legacy {
    #[serde(rename = "eventNotifications")]
    event_notifications: Vec<LegacyNotification>,
}

#[derive(Deserialize)]
struct LegacyNotification {
    #[serde(rename = "realmId")]
    realm_id: String,
    #[serde(rename = "dataChangeEvent")]
    data_change_event: Option<LegacyChange>,
}

#[derive(Deserialize)]
struct LegacyChange {
    entities: Vec<LegacyEntity>,
}

#[derive(Deserialize)]
struct LegacyEntity {
    name: String,
    id: String,
    operation: String,
}

#[derive(Deserialize)]
struct CloudEvent {
    #[serde(rename = "type")]
    kind: String,
    intuitentityid: String,
    intuitaccountid: String,
}

/// Parses either QuickBooks body: the legacy `{"eventNotifications":[...]}` or the
/// CloudEvents array (`type` like `qbo.invoice.updated.v1`), which may mix realms.
pub fn parse(body: &[u8]) -> Result<Vec<Event>, WebhookError> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| WebhookError(format!("not JSON: {e}")))?;
    if v.is_array() {
        let events: Vec<CloudEvent> = serde_json::from_value(v)
            .map_err(|e| WebhookError(format!("CloudEvents array: {e}")))?;
        return events
            .into_iter()
            .map(|e| {
                let mut parts = e.kind.split('.');
                let (Some("qbo"), Some(entity), Some(op)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    return Err(WebhookError(format!(
                        "event type {:?} is not qbo.<entity>.<operation>.<version>",
                        e.kind
                    )));
                };
                Ok(Event {
                    tenant: e.intuitaccountid,
                    entity: entity.to_lowercase(),
                    id: e.intuitentityid,
                    operation: op.to_lowercase(),
                })
            })
            .collect();
    }
    let legacy: Legacy =
        serde_json::from_value(v).map_err(|e| WebhookError(format!("eventNotifications: {e}")))?;
    Ok(legacy
        .event_notifications
        .into_iter()
        .flat_map(|n| {
            let realm = n.realm_id;
            n.data_change_event
                .into_iter()
                .flat_map(|c| c.entities)
                .map(move |e| Event {
                    tenant: realm.clone(),
                    entity: e.name.to_lowercase(),
                    id: e.id,
                    operation: e.operation.to_lowercase(),
                })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_quickbooks_formats_parse() {
        let legacy = br#"{"eventNotifications":[{"realmId":"123","dataChangeEvent":{"entities":[{"name":"Invoice","id":"130","operation":"Update","lastUpdated":"2026-11-23T10:00:00.000Z"}]}}]}"#;
        assert_eq!(
            parse(legacy).unwrap(),
            vec![Event {
                tenant: "123".into(),
                entity: "invoice".into(),
                id: "130".into(),
                operation: "update".into()
            }]
        );
        let cloud = br#"[{"specversion":"1.0","id":"e1","type":"qbo.invoice.updated.v1","time":"2026-11-23T10:00:00Z","intuitentityid":"130","intuitaccountid":"123","data":{}},
                         {"specversion":"1.0","id":"e2","type":"qbo.payment.created.v1","intuitentityid":"9","intuitaccountid":"456"}]"#;
        let ev = parse(cloud).unwrap();
        assert_eq!(
            ev[0],
            Event {
                tenant: "123".into(),
                entity: "invoice".into(),
                id: "130".into(),
                operation: "updated".into()
            }
        );
        assert_eq!(ev[1].tenant, "456", "a CloudEvents delivery may mix realms");
    }

    #[test]
    fn bad_bodies_are_errors_not_panics() {
        for body in [
            &b""[..],
            b"null",
            b"{}",
            b"[1]",
            b"[{\"type\":\"invoice\",\"intuitentityid\":\"1\",\"intuitaccountid\":\"2\"}]",
            b"\xff\xfe",
        ] {
            assert!(parse(body).is_err(), "{:?}", String::from_utf8_lossy(body));
        }
    }
}
