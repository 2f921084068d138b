//! `[channels.sms]`: text messages through Twilio's Messages API.
//!
//! ```toml
//! [channels.sms]
//! account_sid = "ACxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
//! auth_token_file = "twilio-token"     # or auth_token = "..." (never both)
//! from = "+441234567890"               # or messaging_service_sid = "MG..."
//! sender_name = "Example Ltd"          # who is writing; default: channels.smtp.from_name
//! quiet_hours = "20:00-09:00"          # local time; default: outside the send window
//! max_segments = 2                     # longest message, in billed segments
//! webhook_url = "https://billing.example.com/webhooks/sms"   # where Twilio posts replies
//! ```

use std::path::Path;
use std::time::Duration;

use chrono::NaiveTime;
use overdued_connector::Secret;
use serde::Deserialize;

use super::consent::valid_e164;
use crate::config::secret;
use crate::engine::Policy;

type Invalid = (String, String);

/// Twilio's API, unless `api_base` says otherwise.
pub const DEFAULT_API_BASE: &str = "https://api.twilio.com";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSms {
    account_sid: String,
    auth_token: Option<String>,
    auth_token_file: Option<String>,
    from: Option<String>,
    messaging_service_sid: Option<String>,
    sender_name: Option<String>,
    api_base: Option<String>,
    quiet_hours: Option<String>,
    max_segments: Option<u32>,
    timeout: Option<crate::config::HumanDuration>,
    webhook_url: Option<String>,
}

/// Who the messages come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sender {
    /// A Twilio number (`From`).
    Number(String),
    /// A Messaging Service that picks the number (`MessagingServiceSid`).
    Service(String),
}

/// Local hours in which no text message goes out, e.g. 20:00 to 09:00.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    pub start: NaiveTime,
    pub end: NaiveTime,
}

impl QuietHours {
    /// Whether local time `t` is quiet; a range may run over midnight.
    pub fn contains(&self, t: NaiveTime) -> bool {
        if self.start <= self.end {
            t >= self.start && t < self.end
        } else {
            t >= self.start || t < self.end
        }
    }

    pub fn parse(v: &str) -> Result<QuietHours, String> {
        let bad = || format!("{v:?} is not a range of local times such as \"20:00-09:00\"");
        let (a, b) = v.split_once('-').ok_or_else(bad)?;
        let t = |s: &str| NaiveTime::parse_from_str(s.trim(), "%H:%M").map_err(|_| bad());
        let q = QuietHours {
            start: t(a)?,
            end: t(b)?,
        };
        if q.start == q.end {
            return Err(format!("{v:?} is empty: start and end are the same time"));
        }
        Ok(q)
    }
}

impl std::fmt::Display for QuietHours {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}-{}",
            self.start.format("%H:%M"),
            self.end.format("%H:%M")
        )
    }
}

/// Validated `[channels.sms]`. The auth token is a [`Secret`]: never in Debug or logs.
#[derive(Debug, Clone)]
pub struct SmsConfig {
    pub account_sid: String,
    pub auth_token: Secret,
    pub sender: Sender,
    /// Who is writing, named in every message.
    pub sender_name: Option<String>,
    pub api_base: url::Url,
    /// `None`: only the policy's send window applies.
    pub quiet_hours: Option<QuietHours>,
    pub max_segments: u32,
    pub timeout: Duration,
    /// The address Twilio calls with replies (as configured in Twilio's console for
    /// the number, through your TLS proxy to `/webhooks/sms`): what Twilio signs.
    pub webhook_url: Option<url::Url>,
}

impl PartialEq for SmsConfig {
    fn eq(&self, o: &Self) -> bool {
        self.account_sid == o.account_sid
            && self.auth_token.expose() == o.auth_token.expose()
            && self.sender == o.sender
            && self.sender_name == o.sender_name
            && self.api_base == o.api_base
            && self.quiet_hours == o.quiet_hours
            && self.max_segments == o.max_segments
            && self.timeout == o.timeout
            && self.webhook_url == o.webhook_url
    }
}

fn sid(field: &str, v: &str, prefix: &str) -> Result<String, Invalid> {
    let v = v.trim();
    let ok =
        v.len() == 34 && v.starts_with(prefix) && v[2..].chars().all(|c| c.is_ascii_hexdigit());
    if !ok {
        return Err((
            format!("channels.sms.{field}"),
            format!("{v:?} is not a Twilio SID: {prefix} followed by 32 hexadecimal digits"),
        ));
    }
    Ok(v.to_string())
}

pub fn validate(raw: RawSms, base: &Path) -> Result<SmsConfig, Invalid> {
    let account_sid = sid("account_sid", &raw.account_sid, "AC")?;
    let auth_token = secret::resolve_at(
        "channels.sms",
        "auth_token",
        raw.auth_token.as_deref(),
        raw.auth_token_file.as_deref(),
        base,
    )?
    .ok_or_else(|| {
        (
            "channels.sms".to_string(),
            "auth_token or auth_token_file is required".to_string(),
        )
    })?;
    let sender = match (raw.from, raw.messaging_service_sid) {
        (Some(_), Some(_)) => {
            return Err((
                "channels.sms.from".into(),
                "give from or messaging_service_sid, not both".into(),
            ))
        }
        (None, None) => {
            return Err((
                "channels.sms".into(),
                "from (a Twilio number) or messaging_service_sid is required".into(),
            ))
        }
        (Some(f), None) => {
            let f = f.trim().to_string();
            valid_e164(&f).map_err(|m| ("channels.sms.from".to_string(), m))?;
            Sender::Number(f)
        }
        (None, Some(m)) => Sender::Service(sid("messaging_service_sid", &m, "MG")?),
    };
    let api_base = match raw.api_base {
        None => url::Url::parse(DEFAULT_API_BASE).expect("a valid URL"),
        Some(u) => {
            let p = url::Url::parse(u.trim()).map_err(|e| {
                (
                    "channels.sms.api_base".to_string(),
                    format!("{u:?} is not a URL: {e}"),
                )
            })?;
            if p.scheme() != "https" && p.scheme() != "http" {
                return Err((
                    "channels.sms.api_base".into(),
                    "must be an http or https URL".into(),
                ));
            }
            p
        }
    };
    let quiet_hours = raw
        .quiet_hours
        .as_deref()
        .map(QuietHours::parse)
        .transpose()
        .map_err(|m| ("channels.sms.quiet_hours".to_string(), m))?;
    let max_segments = raw.max_segments.unwrap_or(2);
    if !(1..=10).contains(&max_segments) {
        return Err(("channels.sms.max_segments".into(), "must be 1 to 10".into()));
    }
    let webhook_url = raw
        .webhook_url
        .map(|u| {
            url::Url::parse(u.trim()).map_err(|e| {
                (
                    "channels.sms.webhook_url".to_string(),
                    format!("{u:?} is not a URL: {e}"),
                )
            })
        })
        .transpose()?;
    let sender_name = raw
        .sender_name
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    Ok(SmsConfig {
        account_sid,
        auth_token,
        sender,
        sender_name,
        api_base,
        quiet_hours,
        max_segments,
        timeout: raw.timeout.map(|t| t.0).unwrap_or(Duration::from_secs(30)),
        webhook_url,
    })
}

/// Renders every SMS template (built-in and from `templates_dir`) with the longest
/// values a real message is likely to carry; one that fails, leaves out how to stop, or
/// runs over `max_segments` is refused. Returns each template's size, for `check`.
pub fn check_templates(
    sms: &SmsConfig,
    templates_dir: Option<&Path>,
) -> Result<Vec<(String, super::segments::Segments)>, Invalid> {
    let t = super::content::SmsTemplates::load(templates_dir)
        .map_err(|m| ("channels.templates_dir".to_string(), m))?;
    let ctx = super::content::SmsContext::sample(sms.sender_name.as_deref().unwrap_or(""));
    let mut out = Vec::new();
    let ids: Vec<String> = t.ids().map(|(id, _)| id.to_string()).collect();
    for id in ids {
        let (_, segs) = t
            .render_checked(&id, &ctx, sms.max_segments)
            .map_err(|m| ("channels.sms.max_segments".to_string(), m))?;
        out.push((id, segs));
    }
    Ok(out)
}

/// Without `[channels.sms]`, a step that sends text messages is refused at its channel.
pub fn refuse_sms_steps(
    policies: &std::collections::BTreeMap<String, Policy>,
) -> Result<(), Invalid> {
    for (name, p) in policies {
        for (i, s) in p.steps.iter().enumerate() {
            if s.channel.is_some_and(|c| c.uses_sms()) {
                return Err((
                    format!("policies.{name}.steps[{i}].channel"),
                    "sends text messages: configure [channels.sms]".into(),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_hours_over_midnight_and_within_a_day() {
        let q = QuietHours::parse("20:00-09:00").unwrap();
        let t = |h, m| NaiveTime::from_hms_opt(h, m, 0).unwrap();
        assert!(q.contains(t(20, 0)) && q.contains(t(3, 0)) && q.contains(t(8, 59)));
        assert!(!q.contains(t(9, 0)) && !q.contains(t(12, 0)) && !q.contains(t(19, 59)));
        let d = QuietHours::parse("12:00-13:30").unwrap();
        assert!(d.contains(t(12, 45)) && !d.contains(t(13, 30)) && !d.contains(t(11, 0)));
        assert!(QuietHours::parse("9-17").is_err());
        assert!(QuietHours::parse("09:00-09:00").is_err());
        assert_eq!(q.to_string(), "20:00-09:00");
    }

    fn raw(extra: &str) -> RawSms {
        toml::from_str(&format!(
            "account_sid = \"AC0123456789abcdef0123456789abcdef\"\nsender_name = \"X\"\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn the_token_is_a_secret_given_once_from_a_private_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let e = validate(
            raw("auth_token = \"t\"\nauth_token_file = \"tok\"\nfrom = \"+15005550006\""),
            dir.path(),
        )
        .unwrap_err();
        assert!(e.0.starts_with("channels.sms.auth_token"), "{e:?}");
        let f = dir.path().join("tok");
        std::fs::write(&f, "s3cret-token\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = validate(
            raw("auth_token_file = \"tok\"\nfrom = \"+15005550006\""),
            dir.path(),
        )
        .unwrap_err();
        assert_eq!(e.0, "channels.sms.auth_token_file", "{e:?}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = validate(
            raw("auth_token_file = \"tok\"\nfrom = \"+15005550006\""),
            dir.path(),
        )
        .unwrap();
        assert_eq!(c.auth_token.expose(), "s3cret-token");
        assert!(!format!("{c:?}").contains("s3cret"), "no secret in Debug");
        // Exactly one sender; a number in E.164.
        let both = "auth_token = \"t\"\nfrom = \"+15005550006\"\nmessaging_service_sid = \"MG0123456789abcdef0123456789abcdef\"";
        assert_eq!(
            validate(raw(both), dir.path()).unwrap_err().0,
            "channels.sms.from"
        );
        assert_eq!(
            validate(raw("auth_token = \"t\""), dir.path())
                .unwrap_err()
                .0,
            "channels.sms"
        );
        let bad = validate(
            raw("auth_token = \"t\"\nfrom = \"07700900123\""),
            dir.path(),
        );
        assert_eq!(bad.unwrap_err().0, "channels.sms.from");
        let cap = validate(
            raw("auth_token = \"t\"\nfrom = \"+15005550006\"\nmax_segments = 0"),
            dir.path(),
        );
        assert_eq!(cap.unwrap_err().0, "channels.sms.max_segments");
    }

    #[test]
    fn sids_are_checked() {
        assert!(sid("account_sid", "AC0123456789abcdef0123456789abcdef", "AC").is_ok());
        let e = sid("account_sid", "AC123", "AC").unwrap_err();
        assert_eq!(e.0, "channels.sms.account_sid");
        assert!(sid("x", "MG0123456789abcdef0123456789abcdef", "AC").is_err());
    }
}
