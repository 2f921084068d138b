//! The SMTP transport and how its failures are read.

use std::sync::Arc;

use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::message::Envelope;
use super::templates::Templates;
use super::ChannelError;
use crate::config::channels::{ChannelsConfig, Security, SmtpConfig};

/// How a send ended when it did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The server could not be reached: nothing was sent.
    #[error("SMTP server unreachable: {0}")]
    Unreachable(String),
    /// The server answered with a refusal: nothing was accepted.
    #[error("SMTP server refused the message ({}): {message}", if *.permanent { "permanent" } else { "temporary" })]
    Refused { permanent: bool, message: String },
    /// The connection broke mid-transaction: the message may or may not have been
    /// accepted.
    #[error("SMTP outcome unknown: {0}")]
    Unknown(String),
}

/// Sends overdued's own email.
#[derive(Clone)]
pub struct Mailer {
    pub settings: SmtpConfig,
    pub templates: Arc<Templates>,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("host", &self.settings.host)
            .field("port", &self.settings.port)
            .finish()
    }
}

impl Mailer {
    /// The mailer for `[channels.smtp]`, or `None` when SMTP is not configured.
    pub fn from_config(cfg: &ChannelsConfig) -> Result<Option<Mailer>, ChannelError> {
        let Some(s) = &cfg.smtp else { return Ok(None) };
        let templates = Templates::load(cfg.templates_dir.as_deref())?;
        Ok(Some(Mailer::new(s.clone(), Arc::new(templates))?))
    }

    pub fn new(settings: SmtpConfig, templates: Arc<Templates>) -> Result<Mailer, ChannelError> {
        let t = |e: lettre::transport::smtp::Error| ChannelError::Transport(e.to_string());
        let mut b = match settings.security {
            Security::Tls => {
                AsyncSmtpTransport::<Tokio1Executor>::relay(&settings.host).map_err(t)?
            }
            Security::Starttls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&settings.host).map_err(t)?
            }
            Security::Plain => {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host)
            }
        };
        b = b.port(settings.port).timeout(Some(settings.timeout));
        if let (Some(u), Some(p)) = (&settings.username, &settings.password) {
            b = b.credentials(Credentials::new(u.clone(), p.expose().to_string()));
        }
        Ok(Mailer {
            transport: b.build(),
            settings,
            templates,
        })
    }

    /// The envelope of a customer message: from, reply-to, and the owner's copy.
    pub fn envelope(&self, to: Vec<lettre::message::Mailbox>) -> Envelope {
        Envelope {
            from: self.settings.from.clone(),
            reply_to: self.settings.reply_to.clone(),
            to,
            bcc: self.settings.copy_owner.iter().cloned().collect(),
            date: None,
        }
    }

    /// The name messages are signed with.
    pub fn sender_name(&self) -> String {
        self.settings
            .from
            .name
            .clone()
            .unwrap_or_else(|| self.settings.from.email.to_string())
    }

    /// Checks the server answers, without sending anything.
    pub async fn reachable(&self) -> Result<(), SendError> {
        match self.transport.test_connection().await {
            Ok(true) => Ok(()),
            Ok(false) => Err(SendError::Unreachable("the server did not answer".into())),
            Err(e) => Err(SendError::Unreachable(e.to_string())),
        }
    }

    /// Sends one message. A refusal means nothing was accepted; any other failure after
    /// the connection worked leaves the outcome unknown.
    pub async fn send(&self, msg: &Message) -> Result<(), SendError> {
        match self.transport.send(msg.clone()).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(SendError::Refused {
                permanent: true,
                message: e.to_string(),
            }),
            Err(e) if e.is_transient() => Err(SendError::Refused {
                permanent: false,
                message: e.to_string(),
            }),
            Err(e) => Err(SendError::Unknown(e.to_string())),
        }
    }
}
