//! Sending a reminder's text message exactly once.
//!
//! Each message has its own journal record (key [`IdempotencyKey::sms_send`] of the
//! reminder: ledger scope, invoice, step, plus "sms"; connection `CONNECTION/sms`),
//! written durably before the request goes out (`intent`, with the number and the
//! exact words) and again after Twilio's answer (`done` with the message SID, or
//! `failed`).
//!
//! Twilio takes no idempotency key. A record still at `intent` means the answer was
//! lost (a timeout, a closed connection, a crash): the message may have gone. Before
//! anything is sent again, Twilio's own log is read (`GET Messages.json?To=&DateSent>=`
//! from the day of the intent) and searched for the same words to the same number;
//! what was found is journalled and written to the audit log: found, the message is
//! done (replayed) and never sent again; not found, it is sent now. When the log
//! cannot be read, nothing is sent and the next cycle looks again.
//!
//! A 21610 answer (the customer replied STOP) records the opt-out at once; that
//! message, and every later one to the number, goes by email instead.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use overdued_connector::runtime::Breakers;
use overdued_connector::{ActionReceipt, Clock, ConnectorError, IdempotencyKey, InvoiceSnapshot};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::consent::{self, OptOut, SmsConsent};
use super::content::SmsContext;
use super::twilio::TwilioError;
use super::Sms;
use crate::channels::facts;
use crate::store::{AuditEvent, JournalEntry, JournalPayload, JournalState, Store, StoreError};

/// One text message overdued sent (or attempted) for a reminder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmsSend {
    /// E.164.
    pub to: String,
    /// The exact words sent: what a lost answer is verified against.
    pub body: String,
    pub segments: u32,
    /// The key of the reminder the message carries out.
    pub action: String,
}

/// How the text message of one reminder ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmsDelivery {
    /// Twilio took it (now, or earlier when `replayed`).
    Sent { sid: String, replayed: bool },
    /// No text message for this reminder; the email goes instead (no consent now, the
    /// customer opted out, no pay link, an invalid number, a message over the cap).
    ByEmail { reason: String },
    /// Not sent now; `retry`: a later cycle tries again (after verifying, if it may
    /// have gone).
    Failed { error: String, retry: bool },
}

impl SmsDelivery {
    pub fn by_email(&self) -> bool {
        matches!(self, SmsDelivery::ByEmail { .. })
    }
}

/// A reminder whose text message is due, already checked fresh.
#[derive(Debug, Clone)]
pub struct Pending {
    pub entry: JournalEntry,
    pub snapshot: InvoiceSnapshot,
    pub template: Option<String>,
}

fn record_connection(connection: &str) -> String {
    format!("{connection}/sms")
}

/// The circuit breaker's name for Twilio's create endpoint.
const CREATE_OP: &str = "twilio.messages.create";

#[allow(clippy::too_many_arguments)]
pub async fn deliver(
    sms: &Sms,
    store: &dyn Store,
    clock: &dyn Clock,
    today: NaiveDate,
    time_zone: Tz,
    sources: facts::Sources<'_>,
    breakers: &Breakers,
    pending: Vec<Pending>,
) -> Result<HashMap<IdempotencyKey, SmsDelivery>, StoreError> {
    let mut out = HashMap::new();
    for p in pending {
        let d = deliver_one(sms, store, clock, today, time_zone, sources, breakers, &p).await?;
        if let SmsDelivery::ByEmail { reason } = &d {
            info!(connection = %p.entry.connection, invoice = %p.snapshot.display_number(), customer = %p.snapshot.customer.name, %reason, "no text message; the reminder goes by email");
            store.append_audit(&AuditEvent {
                at: clock.now(),
                connection: p.entry.connection.clone(),
                invoice_id: Some(p.entry.invoice_id.clone()),
                kind: "sms_by_email".into(),
                message: format!(
                    "no text message for step {}: {reason}; the reminder goes by email",
                    p.entry.step_id
                ),
                detail: serde_json::json!({"key": p.entry.key}),
            })?;
        }
        out.insert(p.entry.key.clone(), d);
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
async fn deliver_one(
    sms: &Sms,
    store: &dyn Store,
    clock: &dyn Clock,
    today: NaiveDate,
    time_zone: Tz,
    sources: facts::Sources<'_>,
    breakers: &Breakers,
    p: &Pending,
) -> Result<SmsDelivery, StoreError> {
    let key = IdempotencyKey::sms_send(p.entry.vendor_key());
    let conn = p.entry.connection.as_str();
    let invoice = p.snapshot.display_number().to_string();
    let existing = store.get_journal(&key)?;
    if let Some(r) = &existing {
        match &r.state {
            JournalState::Done { created_id, .. } => {
                return Ok(SmsDelivery::Sent {
                    sid: created_id.clone().unwrap_or_default(),
                    replayed: true,
                })
            }
            JournalState::Failed {
                retry: false,
                error,
                ..
            }
            | JournalState::Skipped { reason: error, .. }
            | JournalState::Superseded { reason: error, .. } => {
                return Ok(SmsDelivery::ByEmail {
                    reason: format!("the text message could not be sent ({error})"),
                })
            }
            JournalState::Intent => {
                // The answer was lost: look in Twilio's log before anything else.
                if let Some(d) = verify(sms, store, clock, r).await? {
                    return Ok(d);
                }
            }
            JournalState::Failed { .. } => {}
        }
    }

    // Consent and quiet hours as they are now, not as the plan saw them.
    let consents = store.sms_consents(Some(conn))?;
    let consent = consents
        .iter()
        .find(|c| c.customer_id == p.entry.customer_id);
    let phone = match consent::reachable(consent) {
        Ok(phone) => phone.to_string(),
        Err(reason) => return Ok(SmsDelivery::ByEmail { reason }),
    };
    let local = clock.now().with_timezone(&time_zone).time();
    if let Some(q) = sms.settings.quiet_hours.filter(|q| q.contains(local)) {
        return Ok(SmsDelivery::Failed {
            error: format!("quiet hours for text messages ({q}); it waits for them to end"),
            retry: true,
        });
    }
    let Some(link) = facts::pay_link(sources.connector, &p.snapshot).await else {
        return Ok(SmsDelivery::ByEmail {
            reason: format!(
                "invoice {invoice} has no online payment link, and every text message carries one"
            ),
        });
    };
    let sender = sms.settings.sender_name.clone().unwrap_or_default();
    let ctx = SmsContext::new(&sender, &p.snapshot, &link, today);
    let id = sms.templates.for_step(p.template.as_deref());
    let (body, segs) = match sms
        .templates
        .render_checked(&id, &ctx, sms.settings.max_segments)
    {
        Ok(x) => x,
        Err(reason) => return Ok(SmsDelivery::ByEmail { reason }),
    };
    if let Err(e) = breakers.admit(CREATE_OP) {
        return Ok(SmsDelivery::Failed {
            error: e.to_string(),
            retry: true,
        });
    }
    let detail = SmsSend {
        to: phone.clone(),
        body: body.clone(),
        segments: segs.count as u32,
        action: p.entry.key.to_string(),
    };
    let attempts = match existing.as_ref().map(|r| &r.state) {
        Some(JournalState::Failed { attempts, .. }) => *attempts,
        _ => 0,
    };
    let mut rec = record(p, &key, &detail, clock.now());
    store.put_journal(&rec)?;
    let result = sms.twilio.create(&phone, &body).await;
    match &result {
        Err(e) if e.endpoint_down() => {
            breakers.failure(CREATE_OP, &e.as_connector_error());
        }
        _ => breakers.success(CREATE_OP),
    }
    match result {
        Ok(m) => {
            rec.state = JournalState::Done {
                at: clock.now(),
                created_id: Some(m.sid.clone()),
                replayed: false,
            };
            store.put_journal(&rec)?;
            info!(connection = %conn, invoice = %invoice, customer = %p.snapshot.customer.name, sid = %m.sid, segments = segs.count, "text message sent");
            Ok(SmsDelivery::Sent {
                sid: m.sid,
                replayed: false,
            })
        }
        Err(TwilioError::Unsubscribed) => {
            let how = "Twilio error 21610: the number replied STOP".to_string();
            opt_out_number(store, clock.now(), &phone, &how)?;
            fail(store, clock, &mut rec, &how, attempts, false)?;
            warn!(connection = %conn, invoice = %invoice, customer = %p.snapshot.customer.name, "customer unsubscribed from text messages (21610); opt-out recorded, email takes over");
            Ok(SmsDelivery::ByEmail {
                reason: "the customer replied STOP to our texts (Twilio 21610); opt-out recorded"
                    .into(),
            })
        }
        Err(e @ TwilioError::Refused { .. }) => {
            let error = e.to_string();
            fail(store, clock, &mut rec, &error, attempts, false)?;
            warn!(connection = %conn, invoice = %invoice, customer = %p.snapshot.customer.name, error = %error, "text message refused; email takes over");
            Ok(SmsDelivery::ByEmail { reason: error })
        }
        Err(e) if e.nothing_sent() => {
            let error = e.to_string();
            fail(store, clock, &mut rec, &error, attempts, true)?;
            Ok(SmsDelivery::Failed { error, retry: true })
        }
        Err(e) => {
            // It may have gone: the record stays at intent, so the next attempt looks
            // in Twilio's log first.
            let error = e.to_string();
            warn!(connection = %conn, invoice = %invoice, error = %error, "text message outcome unknown; verified before any retry");
            Ok(SmsDelivery::Failed {
                error: format!("{error}; it will be looked for in Twilio's log before any retry"),
                retry: true,
            })
        }
    }
}

/// For a record whose answer was lost: the message found in Twilio's log (`Some`
/// Sent), or `None` when it was not there and may be sent; `Some` Failed when the log
/// could not be read.
async fn verify(
    sms: &Sms,
    store: &dyn Store,
    clock: &dyn Clock,
    r: &JournalEntry,
) -> Result<Option<SmsDelivery>, StoreError> {
    let JournalPayload::SmsSend(s) = &r.payload else {
        return Ok(None);
    };
    let found = match sms.twilio.sent_to(&s.to, r.created_at).await {
        Ok(list) => list
            .into_iter()
            .find(|m| m.body.as_deref().map(str::trim) == Some(s.body.trim())),
        Err(e) => {
            return Ok(Some(SmsDelivery::Failed {
                error: format!("the text message's outcome was lost and Twilio's log could not be read to verify it ({e}); nothing sent"),
                retry: true,
            }))
        }
    };
    let connection = r
        .connection
        .strip_suffix("/sms")
        .unwrap_or(&r.connection)
        .to_string();
    let mut rec = r.clone();
    let (message, result) = match &found {
        Some(m) => {
            rec.state = JournalState::Done {
                at: r.created_at,
                created_id: Some(m.sid.clone()),
                replayed: true,
            };
            (
                format!(
                    "text message to {} ({}): its answer was lost; found in Twilio's log, not sent again",
                    s.to, m.sid
                ),
                Some(SmsDelivery::Sent {
                    sid: m.sid.clone(),
                    replayed: true,
                }),
            )
        }
        None => (
            format!(
                "text message to {}: its answer was lost; not in Twilio's log, so it is sent now",
                s.to
            ),
            None,
        ),
    };
    info!(connection = %connection, invoice = %r.invoice_id, found = found.is_some(), "{message}");
    let audit = AuditEvent {
        at: clock.now(),
        connection,
        invoice_id: Some(r.invoice_id.clone()),
        kind: "sms_lookup".into(),
        message,
        detail: serde_json::json!({"key": r.key, "sid": found.as_ref().map(|m| m.sid.clone())}),
    };
    store.put_journal_with_audit(&rec, &audit)?;
    Ok(result)
}

fn fail(
    store: &dyn Store,
    clock: &dyn Clock,
    rec: &mut JournalEntry,
    error: &str,
    attempts: u32,
    retry: bool,
) -> Result<(), StoreError> {
    rec.state = JournalState::Failed {
        at: clock.now(),
        error: error.to_string(),
        attempts: attempts + 1,
        retry,
    };
    store.put_journal(rec)
}

fn record(p: &Pending, key: &IdempotencyKey, detail: &SmsSend, now: DateTime<Utc>) -> JournalEntry {
    JournalEntry {
        key: key.clone(),
        connection: record_connection(&p.entry.connection),
        invoice_id: p.entry.invoice_id.clone(),
        customer_id: p.entry.customer_id.clone(),
        kind: p.entry.kind,
        step_id: p.entry.step_id.clone(),
        planned_for: p.entry.planned_for,
        created_at: now,
        expected_amount_due: p.entry.expected_amount_due,
        payload: JournalPayload::SmsSend(detail.clone()),
        state: JournalState::Intent,
        audit_note_done: true,
        ledger: None,
        sent_key: None,
    }
}

/// Records that `phone` may get no more text messages, on every consent that names it
/// (whatever connection); returns the consents changed. Durable before it returns.
pub fn opt_out_number(
    store: &dyn Store,
    at: DateTime<Utc>,
    phone: &str,
    how: &str,
) -> Result<Vec<SmsConsent>, StoreError> {
    let mut changed = Vec::new();
    for mut c in store.sms_consents(None)? {
        if c.phone == phone && c.opted_out.is_none() {
            c.opted_out = Some(OptOut {
                at,
                how: how.to_string(),
            });
            store.put_sms_consent(&c)?;
            store.append_audit(&AuditEvent {
                at,
                connection: c.connection.clone(),
                invoice_id: None,
                kind: "sms_opt_out".into(),
                message: format!(
                    "{} ({}) opted out of text messages: {how}; email takes over",
                    c.customer_name, c.phone
                ),
                detail: serde_json::json!({"customer_id": c.customer_id, "phone": c.phone}),
            })?;
            changed.push(c);
        }
    }
    Ok(changed)
}

/// What the executor needs to send text messages in one cycle.
pub struct Sender<'a> {
    pub sms: &'a Sms,
    /// The business's time zone, for quiet hours.
    pub time_zone: Tz,
    /// Twilio's endpoints' circuit breakers, per connection and cycle.
    pub breakers: &'a Breakers,
}

impl Sender<'_> {
    pub async fn deliver(
        &self,
        store: &dyn Store,
        clock: &dyn Clock,
        today: NaiveDate,
        sources: facts::Sources<'_>,
        pending: Vec<Pending>,
    ) -> Result<HashMap<IdempotencyKey, SmsDelivery>, StoreError> {
        deliver(
            self.sms,
            store,
            clock,
            today,
            self.time_zone,
            sources,
            self.breakers,
            pending,
        )
        .await
    }
}

/// The reminder as it went: one whose text gave way to the email is recorded as that
/// email (overdued's own when `smtp`, else the system's), so its audit line and history
/// never claim a text that was not sent.
pub fn as_sent(
    payload: crate::store::ActionPayload,
    text: &SmsDelivery,
    smtp: bool,
) -> crate::store::ActionPayload {
    use crate::engine::Channel;
    use crate::store::ActionPayload;
    match payload {
        ActionPayload::Remind {
            subject,
            body,
            channel: Some(c),
            template,
            context,
        } if c.uses_sms() && text.by_email() => ActionPayload::Remind {
            subject,
            body,
            channel: Some(if smtp { Channel::Smtp } else { Channel::Email }),
            template,
            context,
        },
        p => p,
    }
}

/// The outcome of a reminder by `channel` (SMS, or email and SMS) from its email part
/// (`None` when it has none) and its text message.
pub fn receipt(
    channel: crate::engine::Channel,
    email: Option<Result<ActionReceipt, ConnectorError>>,
    text: Option<&SmsDelivery>,
    at: DateTime<Utc>,
) -> Result<ActionReceipt, ConnectorError> {
    let sent = |sid: &str, replayed: bool| ActionReceipt {
        created_id: Some(sid.to_string()),
        at,
        replayed,
    };
    let text = match text {
        None => {
            return Err(ConnectorError::Permanent(
                "text message: the step sends by SMS but [channels.sms] is not configured".into(),
            ))
        }
        Some(t) => t,
    };
    let missing_email = || {
        Err(ConnectorError::Permanent(
            "the email that takes over from the text message was not sent".into(),
        ))
    };
    match (channel, text) {
        (_, SmsDelivery::Failed { error, retry: true }) => {
            // The email part (if any) is de-duplicated by its own key when retried.
            match email {
                Some(Err(e)) => Err(e),
                _ => Err(ConnectorError::transient(format!("text message: {error}"))),
            }
        }
        (_, SmsDelivery::Failed { error, .. }) => {
            Err(ConnectorError::Permanent(format!("text message: {error}")))
        }
        (_, SmsDelivery::ByEmail { .. }) => email.unwrap_or_else(missing_email),
        (crate::engine::Channel::EmailSms, SmsDelivery::Sent { sid, replayed }) => match email {
            Some(Ok(r)) => Ok(ActionReceipt {
                replayed: r.replayed && *replayed,
                ..sent(sid, *replayed)
            }),
            Some(Err(e)) => Err(e),
            None => missing_email(),
        },
        (_, SmsDelivery::Sent { sid, replayed }) => Ok(sent(sid, *replayed)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Channel;

    fn at() -> DateTime<Utc> {
        chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 3, 4, 10, 0, 0).unwrap()
    }

    fn email_ok() -> Option<Result<ActionReceipt, ConnectorError>> {
        Some(Ok(ActionReceipt {
            created_id: Some("mail".into()),
            at: at(),
            replayed: false,
        }))
    }

    #[test]
    fn a_text_that_may_have_gone_is_retried_never_counted_done() {
        let failed = SmsDelivery::Failed {
            error: "Twilio outcome unknown".into(),
            retry: true,
        };
        // email+sms: the email went, the text is not known: the action is retried (the
        // email is de-duplicated by its key, the text verified in Twilio's log).
        let r = receipt(Channel::EmailSms, email_ok(), Some(&failed), at());
        assert!(r.is_err_and(|e| e.is_retryable()));
        let r = receipt(Channel::Sms, None, Some(&failed), at());
        assert!(r.is_err_and(|e| e.is_retryable()));
    }

    #[test]
    fn the_email_takes_over_from_a_text_that_cannot_go() {
        let by_email = SmsDelivery::ByEmail {
            reason: "21610".into(),
        };
        let r = receipt(Channel::Sms, email_ok(), Some(&by_email), at()).unwrap();
        assert_eq!(r.created_id.as_deref(), Some("mail"));
        // No email sent for it: never counted as done.
        assert!(receipt(Channel::Sms, None, Some(&by_email), at()).is_err());
        let sent = SmsDelivery::Sent {
            sid: "SM1".into(),
            replayed: false,
        };
        let r = receipt(Channel::EmailSms, email_ok(), Some(&sent), at()).unwrap();
        assert_eq!(r.created_id.as_deref(), Some("SM1"));
        assert!(receipt(Channel::Sms, None, None, at()).is_err());
    }

    #[test]
    fn which_email_goes_with_a_text() {
        use crate::channels::sms::{email_by_smtp, email_by_system};
        let by_email = SmsDelivery::ByEmail { reason: "x".into() };
        let sent = SmsDelivery::Sent {
            sid: "SM1".into(),
            replayed: false,
        };
        assert!(email_by_smtp(Channel::EmailSms, true, Some(&sent)));
        assert!(!email_by_system(Channel::EmailSms, true, Some(&sent)));
        assert!(email_by_system(Channel::EmailSms, false, None));
        assert!(!email_by_smtp(Channel::Sms, true, Some(&sent)));
        assert!(email_by_smtp(Channel::Sms, true, Some(&by_email)));
        assert!(email_by_system(Channel::Sms, false, Some(&by_email)));
        assert!(!email_by_system(Channel::Sms, false, Some(&sent)));
    }
}
