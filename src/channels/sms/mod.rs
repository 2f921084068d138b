//! Text messages (SMS) through Twilio: only to customers who agreed, never in quiet
//! hours, stopped the moment they say STOP, and exactly once.
//!
//! - [`config`] reads `[channels.sms]`;
//! - [`consent`] keeps who agreed, with the evidence, and who opted out;
//! - [`route`] makes the plan's choice between a text and an email (consent, quiet hours);
//! - [`content`] and [`segments`] give the words, and what they cost;
//! - [`twilio`] is the Messages API client and the webhook signature;
//! - [`deliver`] sends exactly once, with lost answers verified in Twilio's log;
//! - [`inbound`] takes replies (STOP, START, anything else) from Twilio's webhook;
//! - [`admin`] runs `overdued sms opt-in | opt-out | list`.

pub mod admin;
pub mod config;
pub mod consent;
pub mod content;
pub mod deliver;
pub mod inbound;
pub mod route;
pub mod segments;
pub mod twilio;

use crate::config::channels::ChannelsConfig;
use crate::engine::Channel;
pub use config::SmsConfig;
pub use deliver::SmsDelivery;

/// The SMS channel, ready to send.
#[derive(Debug)]
pub struct Sms {
    pub settings: SmsConfig,
    pub twilio: twilio::Twilio,
    pub templates: content::SmsTemplates,
}

impl Sms {
    /// The channel for `[channels.sms]`, or `None` when it is not configured.
    pub fn from_config(cfg: &ChannelsConfig) -> Result<Option<Sms>, String> {
        let Some(s) = &cfg.sms else { return Ok(None) };
        Ok(Some(Sms {
            twilio: twilio::Twilio::new(s).map_err(|e| e.to_string())?,
            templates: content::SmsTemplates::load(cfg.templates_dir.as_deref())?,
            settings: s.clone(),
        }))
    }
}

/// Whether a reminder by `channel` has an email part sent by overdued's own SMTP
/// (`smtp_configured`), given how its text message ended (`sms`): the step's email,
/// or the email that takes over from a text that cannot go.
pub fn email_by_smtp(channel: Channel, smtp_configured: bool, sms: Option<&SmsDelivery>) -> bool {
    match channel {
        Channel::EmailSms => smtp_configured,
        Channel::Sms => smtp_configured && sms.is_some_and(SmsDelivery::by_email),
        c => c.uses_smtp(),
    }
}

/// Whether the accounting system's own email goes for a reminder by `channel` (see
/// [`email_by_smtp`]).
pub fn email_by_system(channel: Channel, smtp_configured: bool, sms: Option<&SmsDelivery>) -> bool {
    match channel {
        Channel::EmailSms => !smtp_configured,
        Channel::Sms => !smtp_configured && sms.is_some_and(SmsDelivery::by_email),
        c => c.uses_system_email(),
    }
}
