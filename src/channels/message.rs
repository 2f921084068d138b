//! Building a MIME message (multipart/alternative: plain text and HTML) with a
//! deterministic Message-ID.

use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::Message;
use sha2::{Digest, Sha256};

use super::templates::Rendered;
use super::ChannelError;

/// The Message-ID for a message standing for the actions `keys`: the same actions always
/// give the same id, so a receiving system (and the journal) can tell a repeat.
pub fn message_id(keys: &[&str], from: &Mailbox) -> String {
    let mut sorted: Vec<&str> = keys.to_vec();
    sorted.sort_unstable();
    let mut h = Sha256::new();
    for k in sorted {
        h.update(k.as_bytes());
        h.update([0u8]);
    }
    let digest = hex::encode(h.finalize());
    format!("<{}.overdued@{}>", &digest[..40], from.email.domain())
}

/// Who a message goes to.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub from: Mailbox,
    pub reply_to: Option<Mailbox>,
    pub to: Vec<Mailbox>,
    pub bcc: Vec<Mailbox>,
}

pub fn build(env: &Envelope, msg: &Rendered, message_id: &str) -> Result<Message, ChannelError> {
    let mut b = Message::builder()
        .message_id(Some(message_id.to_string()))
        .from(env.from.clone())
        .subject(msg.subject.clone());
    if let Some(r) = &env.reply_to {
        b = b.reply_to(r.clone());
    }
    for to in &env.to {
        b = b.to(to.clone());
    }
    for bcc in &env.bcc {
        b = b.bcc(bcc.clone());
    }
    b.multipart(
        MultiPart::alternative()
            .singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_PLAIN)
                    .body(msg.text.clone()),
            )
            .singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_HTML)
                    .body(msg.html.clone()),
            ),
    )
    .map_err(|e| ChannelError::Message(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_id_is_deterministic_and_order_free() {
        let from: Mailbox = "Billing <billing@example.com>".parse().unwrap();
        let a = message_id(&["k1", "k2"], &from);
        assert_eq!(a, message_id(&["k2", "k1"], &from));
        assert_ne!(a, message_id(&["k1"], &from));
        assert!(
            a.starts_with('<') && a.ends_with(".overdued@example.com>"),
            "{a}"
        );
    }
}
