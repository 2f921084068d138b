//! What a reminder really puts in front of the customer, in words for the owner.
//!
//! On the `system` channel, QuickBooks' `/send` and Xero's `Email` resend the invoice
//! with the company's own email template: none of the step's words go out, so `plan`,
//! `history` and the digest name that email rather than a step text nobody receives. By
//! SMTP the customer reads the step's own message, named by its subject line.

use overdued_connector::System;

use crate::engine::policy::Channel;
use std::collections::HashMap;

use crate::store::{ActionPayload, AuditEvent, SmtpSend};

/// The accounting system's own invoice email, as the owner knows it.
pub fn system_email(system: System) -> &'static str {
    match system {
        System::QuickBooks => "QuickBooks' own invoice email, with your company template",
        System::Xero => "Xero's own invoice email, with your company template",
    }
}

/// What goes out by `channel` for a message whose subject line is `subject`.
pub fn what_goes_out(channel: Channel, system: System, subject: &str) -> String {
    match channel {
        Channel::Email => system_email(system).to_string(),
        Channel::Smtp => format!("our email by SMTP, subject \"{subject}\""),
        Channel::Both => format!(
            "{}, and our email by SMTP, subject \"{subject}\"",
            system_email(system)
        ),
        Channel::Owner => format!("a message to you, not the customer: \"{subject}\""),
        Channel::Ledger => "a record in the ledger".to_string(),
        Channel::Sms => "a text message (SMS) to the customer's phone".to_string(),
        Channel::EmailSms => format!(
            "our email (or {}), and a text message (SMS) to the customer's phone",
            system_email(system)
        ),
    }
}

/// [`what_goes_out`], naming the email part of an email+sms step as it goes: overdued's
/// own when `smtp` (configured, or seen sent), else the accounting system's.
pub fn what_goes_out_sms(channel: Channel, system: System, subject: &str, smtp: bool) -> String {
    match channel {
        Channel::EmailSms => format!(
            "{}, and a text message (SMS) to the customer's phone",
            what_goes_out(
                if smtp { Channel::Smtp } else { Channel::Email },
                system,
                subject
            )
        ),
        c => what_goes_out(c, system, subject),
    }
}

/// An audit line as the owner should read it: a reminder says what the customer got;
/// every other line is the executor's own words.
pub fn audit_line(ev: &AuditEvent, system: System) -> String {
    audit_line_sent(ev, system, &HashMap::new())
}

/// The subject each action's email really went out with, by action key, from the
/// `email` events among `events`: a message is rendered again from the facts at send
/// time, and a statement carries several actions under its own subject.
pub fn sent_subjects(events: &[AuditEvent]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for ev in events.iter().filter(|e| e.kind == "email") {
        if let Ok(send) = serde_json::from_value::<SmtpSend>(ev.detail.clone()) {
            for k in send.actions {
                out.insert(k, send.subject.clone());
            }
        }
    }
    out
}

/// [`audit_line`], naming the subject the email really had where `sent` knows it.
pub fn audit_line_sent(ev: &AuditEvent, system: System, sent: &HashMap<String, String>) -> String {
    if ev.kind != "action" {
        return ev.message.clone();
    }
    let payload = ev
        .detail
        .get("payload")
        .cloned()
        .and_then(|p| serde_json::from_value::<ActionPayload>(p).ok());
    let Some(ActionPayload::Remind {
        subject, channel, ..
    }) = payload
    else {
        return ev.message.clone();
    };
    let step = ev
        .detail
        .get("step")
        .and_then(|s| s.as_str())
        .unwrap_or("?");
    // Journals written before SMTP existed carry no channel: the system's email.
    let channel = channel.unwrap_or(Channel::Email);
    let by_smtp = ev
        .detail
        .get("key")
        .and_then(|k| k.as_str())
        .and_then(|k| sent.get(k))
        .cloned();
    let smtp = by_smtp.is_some();
    let subject = by_smtp.unwrap_or(subject);
    format!(
        "reminder sent ({step}): {}",
        what_goes_out_sms(channel, system, &subject, smtp)
    )
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    fn remind_event(channel: Option<Channel>) -> AuditEvent {
        let payload = ActionPayload::Remind {
            subject: "Invoice 1037 is 14 days overdue".into(),
            body: "Dear Customer, ...".into(),
            channel,
            template: Some("firm".into()),
            context: None,
        };
        AuditEvent {
            at: Utc::now(),
            connection: "acme".into(),
            invoice_id: Some("7".into()),
            kind: "action".into(),
            message: "reminder sent (+14d): Invoice 1037 is 14 days overdue".into(),
            detail: serde_json::json!({"key": "k", "step": "+14d", "payload": payload}),
        }
    }

    #[test]
    fn a_system_reminder_names_the_vendor_email_not_the_step_text() {
        let line = audit_line(&remind_event(Some(Channel::Email)), System::QuickBooks);
        assert_eq!(
            line,
            "reminder sent (+14d): QuickBooks' own invoice email, with your company template"
        );
        assert!(!line.contains("14 days overdue"), "{line}");
        let line = audit_line(&remind_event(None), System::Xero);
        assert_eq!(
            line,
            "reminder sent (+14d): Xero's own invoice email, with your company template"
        );
    }

    #[test]
    fn an_smtp_reminder_names_its_subject() {
        let line = audit_line(&remind_event(Some(Channel::Smtp)), System::Xero);
        assert_eq!(
            line,
            "reminder sent (+14d): our email by SMTP, subject \"Invoice 1037 is 14 days overdue\""
        );
        let line = audit_line(&remind_event(Some(Channel::Both)), System::QuickBooks);
        assert!(line.contains("QuickBooks' own invoice email"), "{line}");
        assert!(line.contains("subject \"Invoice 1037"), "{line}");
    }

    #[test]
    fn other_lines_are_left_as_written() {
        let mut ev = remind_event(Some(Channel::Email));
        ev.kind = "skipped".into();
        assert_eq!(audit_line(&ev, System::QuickBooks), ev.message);
    }
}
