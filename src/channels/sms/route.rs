//! The plan's choice for a step that sends text messages: a text only to a customer
//! whose consent is recorded and who has not opted out, otherwise the email (overdued's
//! own when `[channels.smtp]` is configured, else the accounting system's), with the
//! reason in the plan; and no text in quiet hours: the step waits for them to end.
//! Run over every plan (`overdued plan` and each cycle), after the planner.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::config::SmsConfig;
use super::consent::{self, SmsConsent};
use crate::engine::{Channel, Plan, SkipCode, Skipped};

/// Rewrites `plan`'s SMS steps as the consents and the clock allow.
pub fn route(
    plan: &mut Plan,
    sms: Option<&SmsConfig>,
    smtp_configured: bool,
    consents: &[SmsConsent],
    now: DateTime<Utc>,
    tz: Tz,
) {
    let email = if smtp_configured {
        Channel::Smtp
    } else {
        Channel::Email
    };
    let quiet = sms
        .and_then(|s| s.quiet_hours)
        .filter(|q| q.contains(now.with_timezone(&tz).time()));
    let mut kept = Vec::with_capacity(plan.actions.len());
    for mut a in std::mem::take(&mut plan.actions) {
        if !a.channel.uses_sms() {
            kept.push(a);
            continue;
        }
        let consent = consents
            .iter()
            .find(|c| c.connection == a.connection.as_str() && c.customer_id == a.customer_id);
        match consent::reachable(consent) {
            Err(why) => {
                a.reason = format!("{}; by email instead of a text message: {why}", a.reason);
                a.channel = email;
                kept.push(a);
            }
            Ok(_) => match quiet {
                Some(q) => plan.skipped.push(Skipped {
                    connection: a.connection.clone(),
                    invoice_id: a.invoice_id.clone(),
                    invoice_number: a.invoice_number.clone(),
                    customer_id: a.customer_id.clone(),
                    days_overdue: a.days_overdue,
                    step_id: Some(a.step_id.clone()),
                    code: SkipCode::OutsideWindow,
                    reason: format!(
                        "would {} by text message ({}) but it is quiet hours for text messages ({q} local time); it waits for them to end",
                        a.kind, a.reason
                    ),
                }),
                None => kept.push(a),
            },
        }
    }
    plan.actions = kept;
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeZone};
    use overdued_connector::{ActionKind, ConnectionId, IdempotencyKey};

    use super::*;
    use crate::channels::sms::config::QuietHours;
    use crate::channels::sms::consent::OptOut;
    use crate::engine::PlannedAction;

    fn action(customer: &str, channel: Channel) -> PlannedAction {
        PlannedAction {
            connection: ConnectionId::new("qbo"),
            invoice_id: format!("inv-{customer}"),
            invoice_number: "1001".into(),
            customer_id: customer.into(),
            kind: ActionKind::Remind,
            step_id: "+7d".into(),
            key: IdempotencyKey::derive(
                "qbo:1",
                &format!("inv-{customer}"),
                ActionKind::Remind,
                "+7d",
            ),
            channel,
            policy: "default".into(),
            days_overdue: 7,
            message: None,
            template: None,
            context: None,
            ledger_text: None,
            fee: None,
            fee_posting: None,
            reason: "step +7d".into(),
        }
    }

    fn consent(customer: &str, opted_out: bool) -> SmsConsent {
        SmsConsent {
            connection: "qbo".into(),
            customer_id: customer.into(),
            customer_name: customer.into(),
            phone: "+447700900001".into(),
            evidence: "order form".into(),
            recorded_at: Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap(),
            opted_out: opted_out.then(|| OptOut {
                at: Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap(),
                how: "replied STOP".into(),
            }),
        }
    }

    fn plan(actions: Vec<PlannedAction>) -> Plan {
        Plan {
            generated_at: Utc.with_ymd_and_hms(2026, 3, 4, 10, 0, 0).unwrap(),
            time_zone: "UTC".into(),
            local_date: NaiveDate::from_ymd_opt(2026, 3, 4).unwrap(),
            actions,
            skipped: Vec::new(),
        }
    }

    fn settings(quiet: &str) -> SmsConfig {
        let dir = tempfile::tempdir().unwrap();
        let raw: super::super::config::RawSms = toml::from_str(&format!(
            "account_sid = \"AC0123456789abcdef0123456789abcdef\"\nauth_token = \"t\"\nfrom = \"+15005550006\"\nsender_name = \"X\"\nquiet_hours = \"{quiet}\"\n"
        ))
        .unwrap();
        super::super::config::validate(raw, dir.path()).unwrap()
    }

    #[test]
    fn without_consent_or_after_stop_the_email_goes_and_the_plan_says_why() {
        let mut p = plan(vec![
            action("a", Channel::Sms),
            action("b", Channel::EmailSms),
            action("c", Channel::Sms),
            action("d", Channel::Email),
        ]);
        let consents = [consent("a", false), consent("c", true)];
        let now = Utc.with_ymd_and_hms(2026, 3, 4, 10, 0, 0).unwrap();
        route(
            &mut p,
            Some(&settings("20:00-09:00")),
            false,
            &consents,
            now,
            chrono_tz::UTC,
        );
        let by = |c: &str| p.actions.iter().find(|a| a.customer_id == c).unwrap();
        assert_eq!(by("a").channel, Channel::Sms);
        assert_eq!(by("b").channel, Channel::Email);
        assert!(
            by("b").reason.contains("no SMS consent recorded"),
            "{}",
            by("b").reason
        );
        assert_eq!(by("c").channel, Channel::Email);
        assert!(by("c").reason.contains("opted out"), "{}", by("c").reason);
        assert_eq!(by("d").channel, Channel::Email);
        // With SMTP configured, the email that takes over is overdued's own.
        let mut p = plan(vec![action("b", Channel::Sms)]);
        route(&mut p, None, true, &[], now, chrono_tz::UTC);
        assert_eq!(p.actions[0].channel, Channel::Smtp);
    }

    #[test]
    fn a_text_in_quiet_hours_waits_and_says_so() {
        let mut p = plan(vec![action("a", Channel::Sms), action("b", Channel::Sms)]);
        let consents = [consent("a", false)];
        let late = Utc.with_ymd_and_hms(2026, 3, 4, 21, 0, 0).unwrap();
        route(
            &mut p,
            Some(&settings("20:00-09:00")),
            false,
            &consents,
            late,
            chrono_tz::UTC,
        );
        assert_eq!(
            p.actions.len(),
            1,
            "only the email of the customer without consent"
        );
        assert_eq!(p.actions[0].customer_id, "b");
        assert_eq!(p.skipped.len(), 1);
        assert!(p.skipped[0]
            .reason
            .contains("quiet hours for text messages (20:00-09:00"));
        let _ = QuietHours::parse("20:00-09:00").unwrap();
    }
}
