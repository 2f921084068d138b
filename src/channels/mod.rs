//! overdued's own channels to customers and the owner: SMTP email with escalating tone
//! from user-overridable templates, customer statements, the owner's daily digest and
//! signed outbound webhooks.
//!
//! An SMTP send is a side effect with no idempotency on the wire, so every message is
//! journaled like any other action (see [`deliver`]): the intent to send is recorded
//! before the first byte goes out and the outcome after; a message whose outcome was lost
//! to a crash is counted as sent and never repeated.

pub mod config;
pub mod deliver;
pub mod digest;
pub mod loopback;
pub mod message;
pub mod smtp;
pub mod templates;
pub mod webhook;

pub use config::{ChannelsConfig, DigestConfig, Security, SmtpConfig, WebhookConfig};
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
