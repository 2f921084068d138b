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
