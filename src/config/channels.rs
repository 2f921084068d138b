//! The `[channels]` section of the config: the settings only; the email, digest and
//! webhook channels that use them live in `src/channels/`.
//!
//! ```toml
//! [channels]
//! templates_dir = "templates"          # overrides of the built-in templates
//! owner_email = "Owner <owner@example.com>"
//!
//! [channels.smtp]
//! host = "smtp.example.com"
//! security = "starttls"                # "starttls" (587), "tls" (465) or "plain" (loopback only)
//! username = "billing@example.com"
//! password_file = "smtp-password"      # or password = "..."
//! from = "billing@example.com"
//! from_name = "Example Ltd Accounts"
//! reply_to = "accounts@example.com"
//! copy_owner = true                    # a blind copy of every customer message to owner_email
//! statements = true                    # one message per customer listing every overdue invoice
//!
//! [channels.digest]
//! hour = 8                             # local hour from which the day's digest goes out
//!
//! [channels.webhook]
//! url = "https://hooks.example.com/overdued"
//! secret_file = "webhook-secret"       # HMAC-SHA256 key for X-Overdued-Signature
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::message::Mailbox;
use overdued_connector::Secret;
use serde::Deserialize;

use super::{secret, HumanDuration};
use crate::engine::Policy;

type Invalid = (String, String);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChannels {
    templates_dir: Option<String>,
    owner_email: Option<String>,
    smtp: Option<RawSmtp>,
    digest: Option<RawDigest>,
    webhook: Option<RawWebhook>,
    #[serde(default)]
    sms: Option<crate::channels::sms::config::RawSms>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    host: String,
    port: Option<u16>,
    #[serde(default)]
    security: Security,
    username: Option<String>,
    password: Option<String>,
    password_file: Option<String>,
    from: String,
    from_name: Option<String>,
    reply_to: Option<String>,
    #[serde(default)]
    copy_owner: bool,
    #[serde(default = "yes")]
    statements: bool,
    timeout: Option<HumanDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDigest {
    #[serde(default = "yes")]
    enabled: bool,
    to: Option<String>,
    hour: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    url: String,
    secret: Option<String>,
    secret_file: Option<String>,
    max_attempts: Option<u32>,
    queue_size: Option<usize>,
    timeout: Option<HumanDuration>,
}

fn yes() -> bool {
    true
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Plain connection upgraded with STARTTLS (required), port 587.
    #[default]
    Starttls,
    /// TLS from the first byte, port 465.
    Tls,
    /// No encryption and no upgrade: only for a relay on the same host (tests, a local MTA).
    Plain,
}

impl Security {
    pub fn default_port(self) -> u16 {
        match self {
            Security::Starttls => 587,
            Security::Tls => 465,
            Security::Plain => 25,
        }
    }
}

/// Validated `[channels]`.
#[derive(Debug, Clone, Default)]
pub struct ChannelsConfig {
    pub templates_dir: Option<PathBuf>,
    pub owner_email: Option<Mailbox>,
    pub smtp: Option<SmtpConfig>,
    pub digest: Option<DigestConfig>,
    pub webhook: Option<WebhookConfig>,
    /// `[channels.sms]`: text messages through Twilio.
    pub sms: Option<crate::channels::sms::config::SmsConfig>,
}

#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// The sender, with `from_name` as its display name.
    pub from: Mailbox,
    pub reply_to: Option<Mailbox>,
    /// A blind copy of every customer message to the owner.
    pub copy_owner: Option<Mailbox>,
    pub statements: bool,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct DigestConfig {
    pub to: Mailbox,
    /// The local hour (0-23) from which the day's digest is sent.
    pub hour: u32,
}

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: url::Url,
    pub secret: Secret,
    pub max_attempts: u32,
    pub queue_size: usize,
    pub timeout: Duration,
}

impl PartialEq for WebhookConfig {
    fn eq(&self, o: &Self) -> bool {
        self.url == o.url
            && self.secret.expose() == o.secret.expose()
            && self.max_attempts == o.max_attempts
            && self.queue_size == o.queue_size
            && self.timeout == o.timeout
    }
}

fn mailbox(field: &str, v: &str) -> Result<Mailbox, Invalid> {
    v.trim().parse::<Mailbox>().map_err(|e| {
        (
            field.to_string(),
            format!("{v:?} is not an email address such as \"Name <name@example.com>\": {e}"),
        )
    })
}

/// Checks `[channels]`; `base` anchors relative paths; `policies` are checked for steps
/// that name a channel this section does not configure.
pub fn validate(
    raw: RawChannels,
    base: &Path,
    policies: &std::collections::BTreeMap<String, Policy>,
) -> Result<ChannelsConfig, Invalid> {
    let templates_dir = match raw.templates_dir {
        Some(d) if d.trim().is_empty() => {
            return Err(("channels.templates_dir".into(), "is empty".into()))
        }
        Some(d) => {
            let p = base.join(d);
            if !p.is_dir() {
                return Err((
                    "channels.templates_dir".into(),
                    format!("{} is not a directory", p.display()),
                ));
            }
            Some(p)
        }
        None => None,
    };
    let owner_email = raw
        .owner_email
        .as_deref()
        .map(|v| mailbox("channels.owner_email", v))
        .transpose()?;

    let smtp = match raw.smtp {
        None => None,
        Some(s) => {
            if s.host.trim().is_empty() {
                return Err(("channels.smtp.host".into(), "is empty".into()));
            }
            let mut from = mailbox("channels.smtp.from", &s.from)?;
            if let Some(n) = s.from_name.filter(|n| !n.trim().is_empty()) {
                from.name = Some(n.trim().to_string());
            }
            let password = secret::resolve_at(
                "channels.smtp",
                "password",
                s.password.as_deref(),
                s.password_file.as_deref(),
                base,
            )?;
            if password.is_some() != s.username.is_some() {
                return Err((
                    "channels.smtp.username".into(),
                    "username and password (or password_file) go together".into(),
                ));
            }
            if s.security == Security::Plain && password.is_some() {
                return Err((
                    "channels.smtp.security".into(),
                    "\"plain\" would send the password unencrypted: use \"starttls\" or \"tls\""
                        .into(),
                ));
            }
            let copy_owner = if s.copy_owner {
                Some(owner_email.clone().ok_or_else(|| {
                    (
                        "channels.smtp.copy_owner".to_string(),
                        "needs channels.owner_email".to_string(),
                    )
                })?)
            } else {
                None
            };
            Some(SmtpConfig {
                host: s.host.trim().to_string(),
                port: s.port.unwrap_or(s.security.default_port()),
                security: s.security,
                username: s.username,
                password,
                from,
                reply_to: s
                    .reply_to
                    .as_deref()
                    .map(|v| mailbox("channels.smtp.reply_to", v))
                    .transpose()?,
                copy_owner,
                statements: s.statements,
                timeout: s.timeout.map(|t| t.0).unwrap_or(Duration::from_secs(30)),
            })
        }
    };

    let digest = match raw.digest {
        Some(d) if d.enabled => {
            if smtp.is_none() {
                return Err((
                    "channels.digest".into(),
                    "the digest is sent by email: configure [channels.smtp]".into(),
                ));
            }
            let to = match d.to.as_deref() {
                Some(v) => mailbox("channels.digest.to", v)?,
                None => owner_email.clone().ok_or_else(|| {
                    (
                        "channels.digest".to_string(),
                        "give channels.digest.to or channels.owner_email".to_string(),
                    )
                })?,
            };
            let hour = d.hour.unwrap_or(8);
            if hour > 23 {
                return Err(("channels.digest.hour".into(), "must be 0 to 23".into()));
            }
            Some(DigestConfig { to, hour })
        }
        _ => None,
    };

    let webhook = match raw.webhook {
        None => None,
        Some(w) => {
            let url = url::Url::parse(&w.url).map_err(|e| {
                (
                    "channels.webhook.url".to_string(),
                    format!("{:?} is not a URL: {e}", w.url),
                )
            })?;
            if url.scheme() != "https" && url.scheme() != "http" {
                return Err((
                    "channels.webhook.url".into(),
                    "must be an http or https URL".into(),
                ));
            }
            let secret = secret::resolve_at(
                "channels.webhook",
                "secret",
                w.secret.as_deref(),
                w.secret_file.as_deref(),
                base,
            )?
            .ok_or_else(|| {
                (
                    "channels.webhook".to_string(),
                    "secret or secret_file is required: receivers check the signature".to_string(),
                )
            })?;
            let max_attempts = w.max_attempts.unwrap_or(6);
            if max_attempts == 0 {
                return Err((
                    "channels.webhook.max_attempts".into(),
                    "must be at least 1".into(),
                ));
            }
            let queue_size = w.queue_size.unwrap_or(1000);
            if queue_size == 0 {
                return Err((
                    "channels.webhook.queue_size".into(),
                    "must be at least 1".into(),
                ));
            }
            Some(WebhookConfig {
                url,
                secret,
                max_attempts,
                queue_size,
                timeout: w.timeout.map(|t| t.0).unwrap_or(Duration::from_secs(10)),
            })
        }
    };

    let mut sms = raw
        .sms
        .map(|r| crate::channels::sms::config::validate(r, base))
        .transpose()?;
    if let Some(sms) = sms.as_mut() {
        if sms.sender_name.is_none() {
            sms.sender_name = smtp.as_ref().and_then(|s| s.from.name.clone());
        }
        if sms.sender_name.is_none() {
            return Err((
                "channels.sms".into(),
                "every text message names who is writing: give sender_name (or channels.smtp.from_name)".into(),
            ));
        }
        crate::channels::sms::config::check_templates(sms, templates_dir.as_deref())?;
    }
    if sms.is_none() {
        crate::channels::sms::config::refuse_sms_steps(policies)?;
    }

    if smtp.is_none() {
        for (name, p) in policies {
            for (i, s) in p.steps.iter().enumerate() {
                if s.channel.is_some_and(|c| c.uses_smtp()) {
                    return Err((
                        format!("policies.{name}.steps[{i}].channel"),
                        "sends by SMTP: configure [channels.smtp]".into(),
                    ));
                }
            }
        }
    }

    Ok(ChannelsConfig {
        templates_dir,
        owner_email,
        smtp,
        digest,
        webhook,
        sms,
    })
}
