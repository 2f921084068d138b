//! What a customer texts back, as Twilio's incoming-message webhook delivers it
//! (`POST /webhooks/sms`, form-encoded `From`, `To`, `Body`, `MessageSid`, signed with
//! `X-Twilio-Signature`). Twilio's opt-out keywords stop every message to the number
//! at once; its opt-in keywords resume them for a customer who had consented; anything
//! else is a conversation, passed to the owner (the log, the audit log and the digest).

use chrono::{DateTime, Utc};

use super::deliver::opt_out_number;
use crate::store::{AuditEvent, Store, StoreError};

/// Twilio's default opt-out keywords (case-insensitive, the whole message).
pub const STOP_WORDS: &[&str] = &["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"];
/// Twilio's default opt-in keywords.
pub const START_WORDS: &[&str] = &["START", "YES", "UNSTOP"];

/// What a reply did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The number opted out; the customers concerned.
    Stopped(Vec<String>),
    /// The number opted back in; the customers concerned.
    Started(Vec<String>),
    /// A message for the owner.
    Conversation { customers: Vec<String> },
}

fn keyword(body: &str) -> String {
    body.trim()
        .trim_matches(|c: char| c.is_ascii_punctuation())
        .to_ascii_uppercase()
}

/// Records one reply from `from`.
pub fn handle(
    store: &dyn Store,
    at: DateTime<Utc>,
    from: &str,
    body: &str,
    message_sid: &str,
) -> Result<Reply, StoreError> {
    let word = keyword(body);
    if STOP_WORDS.contains(&word.as_str()) {
        let changed = opt_out_number(store, at, from, &format!("replied {word}"))?;
        tracing::warn!(from = %from, customers = changed.len(), "text message reply {word}: opt-out recorded");
        return Ok(Reply::Stopped(
            changed.into_iter().map(|c| c.customer_name).collect(),
        ));
    }
    let mine: Vec<_> = store
        .sms_consents(None)?
        .into_iter()
        .filter(|c| c.phone == from)
        .collect();
    if START_WORDS.contains(&word.as_str()) {
        let mut names = Vec::new();
        for mut c in mine.into_iter().filter(|c| c.opted_out.is_some()) {
            c.opted_out = None;
            store.put_sms_consent(&c)?;
            store.append_audit(&AuditEvent {
                at,
                connection: c.connection.clone(),
                invoice_id: None,
                kind: "sms_opt_in".into(),
                message: format!(
                    "{} ({}) replied {word}: text messages resume under the consent recorded {}",
                    c.customer_name,
                    c.phone,
                    c.recorded_at.format("%Y-%m-%d")
                ),
                detail: serde_json::json!({"customer_id": c.customer_id, "phone": c.phone}),
            })?;
            names.push(c.customer_name);
        }
        tracing::info!(from = %from, customers = names.len(), "text message reply {word}: opt-in resumed");
        return Ok(Reply::Started(names));
    }
    let names: Vec<String> = mine.iter().map(|c| c.customer_name.clone()).collect();
    let who = if names.is_empty() {
        format!("{from} (no customer has this number)")
    } else {
        format!("{} ({from})", names.join(", "))
    };
    let clipped: String = body.chars().take(500).collect();
    tracing::warn!(from = %from, customer = %names.join(", "), "a customer replied to a text message: call or answer them");
    let connection = mine
        .first()
        .map(|c| c.connection.clone())
        .unwrap_or_else(|| "sms".into());
    store.append_audit(&AuditEvent {
        at,
        connection,
        invoice_id: None,
        kind: "sms_reply".into(),
        message: format!("text message reply from {who}: \"{clipped}\""),
        detail: serde_json::json!({"from": from, "body": clipped, "sid": message_sid, "customers": names}),
    })?;
    Ok(Reply::Conversation { customers: names })
}

/// Twilio's incoming-message webhook: checks `X-Twilio-Signature` against
/// `[channels.sms] webhook_url` and the form parameters, then records the reply.
/// Returns the HTTP status and body to answer (an empty TwiML response: no auto-reply).
pub fn receive(
    sms: Option<&super::SmsConfig>,
    store: &dyn Store,
    at: DateTime<Utc>,
    signature: Option<&str>,
    body: &[u8],
) -> (u16, String) {
    let Some(sms) = sms else {
        return (404, "text messages are not configured\n".into());
    };
    let Some(url) = &sms.webhook_url else {
        return (
            404,
            "set [channels.sms] webhook_url to the address Twilio calls\n".into(),
        );
    };
    let params: Vec<(String, String)> = url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let ok = signature.is_some_and(|sig| {
        super::twilio::signature_ok(sms.auth_token.expose(), url.as_str(), &params, sig)
    });
    if !ok {
        tracing::warn!("SMS webhook refused: bad or missing X-Twilio-Signature");
        return (401, String::new());
    }
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    if get("AccountSid") != sms.account_sid {
        tracing::warn!("SMS webhook refused: for another Twilio account");
        return (401, String::new());
    }
    let from = get("From");
    if super::consent::valid_e164(from).is_err() {
        return (400, "From is not an E.164 number\n".into());
    }
    match handle(store, at, from, get("Body"), get("MessageSid")) {
        Ok(_) => (
            200,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>".into(),
        ),
        Err(e) => {
            tracing::error!(error = %e, "SMS reply not recorded");
            (503, "store unavailable; Twilio retries\n".into())
        }
    }
}

/// The owner's lines about text messages since `since`: opt-outs and replies, from
/// the audit log of each connection in `connections`.
pub fn digest_lines(
    store: &dyn Store,
    connections: &[String],
    since: DateTime<Utc>,
) -> Result<Vec<String>, StoreError> {
    let mut lines = Vec::new();
    for c in connections.iter().map(String::as_str).chain(["sms"]) {
        for e in store.audit_since(c, since)? {
            match e.kind.as_str() {
                "sms_opt_out" => lines.push(format!("{}: {}", c, e.message)),
                "sms_reply" => lines.push(format!("{}: {}: answer them or call", c, e.message)),
                _ => {}
            }
        }
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::channels::sms::consent::SmsConsent;
    use crate::store::SledStore;
    use chrono::TimeZone;

    fn consent(store: &SledStore, connection: &str, id: &str, phone: &str) {
        store
            .put_sms_consent(&SmsConsent {
                connection: connection.into(),
                customer_id: id.into(),
                customer_name: format!("Customer {id}"),
                phone: phone.into(),
                evidence: "order form".into(),
                recorded_at: Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap(),
                opted_out: None,
            })
            .unwrap();
    }

    #[test]
    fn stop_start_and_a_conversation_are_recorded_and_reach_the_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        // One number, two connections (the same customer in two ledgers).
        consent(&store, "qbo", "1", "+447700900001");
        consent(&store, "xero", "a", "+447700900001");
        consent(&store, "qbo", "2", "+447700900002");
        let t0 = Utc.with_ymd_and_hms(2026, 3, 4, 10, 0, 0).unwrap();
        let r = handle(&store, t0, "+447700900001", "Stop", "SM1").unwrap();
        assert_eq!(
            r,
            Reply::Stopped(vec!["Customer 1".into(), "Customer a".into()])
        );
        let all = store.sms_consents(None).unwrap();
        assert_eq!(all.iter().filter(|c| c.opted_out.is_some()).count(), 2);
        let r = handle(
            &store,
            t0,
            "+447700900002",
            "paid on Friday, see remittance",
            "SM2",
        )
        .unwrap();
        assert_eq!(
            r,
            Reply::Conversation {
                customers: vec!["Customer 2".into()]
            }
        );
        let lines = digest_lines(&store, &["qbo".into(), "xero".into()], t0).unwrap();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines
            .iter()
            .any(|l| l.contains("paid on Friday") && l.contains("call")));
        assert!(lines
            .iter()
            .any(|l| l.starts_with("xero:") && l.contains("replied STOP")));
        // START resumes under the consent recorded before.
        let r = handle(&store, t0, "+447700900001", "START", "SM3").unwrap();
        assert_eq!(
            r,
            Reply::Started(vec!["Customer 1".into(), "Customer a".into()])
        );
        assert!(store
            .sms_consents(None)
            .unwrap()
            .iter()
            .all(|c| c.opted_out.is_none()));
        // A consent survives the store being closed and opened again.
        drop(store);
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(store.sms_consents(Some("qbo")).unwrap().len(), 2);
    }

    #[test]
    fn keywords_are_whole_messages_in_any_case() {
        assert_eq!(keyword(" stop "), "STOP");
        assert_eq!(keyword("Stop."), "STOP");
        assert!(STOP_WORDS.contains(&keyword("unsubscribe").as_str()));
        assert!(!STOP_WORDS.contains(&keyword("please stop calling").as_str()));
        assert!(START_WORDS.contains(&keyword("Yes").as_str()));
    }
}
