//! overdued's own channels to customers and the owner: SMTP email with escalating tone
//! from user-overridable templates, customer statements, the owner's daily digest and
//! signed outbound webhooks.
//!
//! An SMTP send is a side effect with no idempotency on the wire, so every message is
//! journaled like any other action (see [`deliver`]): the intent to send is recorded
//! before the first byte goes out and the outcome after; a message whose outcome was lost
//! to a crash is counted as sent and never repeated.

pub mod deliver;
pub mod digest;
pub mod facts;
pub mod loopback;
pub mod message;
pub mod sms;
pub mod smtp;
pub mod templates;
pub mod webhook;

use crate::config::channels::ChannelsConfig;
pub use deliver::Delivery;
pub use smtp::{Mailer, SendError};
pub use templates::{Rendered, TemplateError, Templates};

/// Errors of the channels that are not a delivery outcome.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("building the message: {0}")]
    Message(String),
    #[error("SMTP settings: {0}")]
    Transport(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Send(#[from] SendError),
}

/// Sends the test message (`test_email` template) to `to` through `[channels.smtp]`;
/// returns its Message-ID.
pub async fn send_test_email(
    cfg: &ChannelsConfig,
    to: &str,
    today: chrono::NaiveDate,
) -> Result<String, ChannelError> {
    let mailer = Mailer::from_config(cfg)?
        .ok_or_else(|| ChannelError::Transport("[channels.smtp] is not configured".into()))?;
    let to: lettre::message::Mailbox = to
        .parse()
        .map_err(|e| ChannelError::Message(format!("{to:?} is not an email address: {e}")))?;
    let ctx = templates::TestContext {
        today: crate::engine::dates::long_date(today),
        sender_name: mailer.sender_name(),
    };
    let rendered = mailer.templates.render("test_email", &ctx)?;
    // Unique per run: a test message is meant to go out every time it is asked for.
    let seed = format!("test:{to}:{}", rand::random::<u64>());
    let mid = message::message_id(&[seed.as_str()], &mailer.settings.from);
    let mut envelope = mailer.envelope(vec![to]);
    envelope.bcc.clear();
    let msg = message::build(&envelope, &rendered, &mid)?;
    mailer.send(&msg).await?;
    Ok(mid)
}
