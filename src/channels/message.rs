//! Building a MIME message (multipart/alternative: plain text and HTML, inside
//! multipart/mixed with the invoice PDFs when there are any) with a deterministic
//! Message-ID.

use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Attachment, Body, Mailbox, MultiPart, SinglePart};
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
    /// The `Date:` header, from the daemon's clock: a simulated day (`run --once --now`,
    /// the demo) dates its mail that day, as the text inside says. None: the wall clock.
    pub date: Option<chrono::DateTime<chrono::Utc>>,
}

impl Envelope {
    pub fn dated(mut self, at: chrono::DateTime<chrono::Utc>) -> Envelope {
        self.date = Some(at);
        self
    }
}

/// A file sent with a message (an invoice PDF).
#[derive(Clone, PartialEq, Eq)]
pub struct FileAttachment {
    pub filename: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for FileAttachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileAttachment")
            .field("filename", &self.filename)
            .field("content_type", &self.content_type)
            .field("len", &self.bytes.len())
            .finish()
    }
}

impl FileAttachment {
    /// The PDF of invoice `number`, named so the customer recognises it.
    pub fn invoice_pdf(number: &str, bytes: Vec<u8>) -> FileAttachment {
        let safe: String = number
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        FileAttachment {
            filename: format!("invoice-{safe}.pdf"),
            content_type: "application/pdf".into(),
            bytes,
        }
    }
}

pub fn build(env: &Envelope, msg: &Rendered, message_id: &str) -> Result<Message, ChannelError> {
    build_with(env, msg, message_id, &[])
}

/// The message with `attachments` after its text.
pub fn build_with(
    env: &Envelope,
    msg: &Rendered,
    message_id: &str,
    attachments: &[FileAttachment],
) -> Result<Message, ChannelError> {
    let mut b = Message::builder()
        .message_id(Some(message_id.to_string()))
        .from(env.from.clone())
        .subject(msg.subject.clone());
    if let Some(r) = &env.reply_to {
        b = b.reply_to(r.clone());
    }
    if let Some(at) = env.date {
        b = b.date(std::time::SystemTime::from(at));
    }
    for to in &env.to {
        b = b.to(to.clone());
    }
    for bcc in &env.bcc {
        b = b.bcc(bcc.clone());
    }
    let alternative = MultiPart::alternative()
        .singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_PLAIN)
                .body(msg.text.clone()),
        )
        .singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_HTML)
                .body(msg.html.clone()),
        );
    let body = if attachments.is_empty() {
        alternative
    } else {
        let mut mixed = MultiPart::mixed().multipart(alternative);
        for a in attachments {
            let ct = ContentType::parse(&a.content_type)
                .map_err(|e| ChannelError::Message(format!("{}: {e}", a.content_type)))?;
            // Always base64: a PDF is binary, and a text-looking one sent quoted-printable
            // would have its line ends rewritten on the way.
            let body = Body::new_with_encoding(a.bytes.clone(), ContentTransferEncoding::Base64)
                .map_err(|_| ChannelError::Message(format!("{}: cannot encode", a.filename)))?;
            mixed = mixed.singlepart(Attachment::new(a.filename.clone()).body(body, ct));
        }
        mixed
    };
    b.multipart(body)
        .map_err(|e| ChannelError::Message(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachments_go_in_a_mixed_part_after_the_text() {
        let env = Envelope {
            from: "billing@example.com".parse().unwrap(),
            reply_to: None,
            to: vec!["ap@customer.example".parse().unwrap()],
            bcc: Vec::new(),
            date: None,
        };
        let r = Rendered {
            subject: "Invoice 1037".into(),
            text: "Dear customer".into(),
            html: "<p>Dear customer</p>".into(),
        };
        let pdf = FileAttachment::invoice_pdf("1037/A", b"%PDF-1.4 test".to_vec());
        assert_eq!(pdf.filename, "invoice-1037_A.pdf");
        let raw = String::from_utf8(
            build_with(&env, &r, "<x@example.com>", &[pdf])
                .unwrap()
                .formatted(),
        )
        .unwrap();
        assert!(raw.contains("multipart/mixed"), "{raw}");
        assert!(raw.contains("multipart/alternative"), "{raw}");
        assert!(raw.contains("Content-Type: application/pdf"), "{raw}");
        assert!(raw.contains("Content-Transfer-Encoding: base64"), "{raw}");
        assert!(raw.contains("filename=\"invoice-1037_A.pdf\""), "{raw}");
        let plain =
            String::from_utf8(build(&env, &r, "<x@example.com>").unwrap().formatted()).unwrap();
        assert!(!plain.contains("multipart/mixed"), "{plain}");
    }

    #[test]
    fn a_simulated_day_dates_the_message_that_day() {
        let at = chrono::DateTime::parse_from_rfc3339("2027-01-04T10:00:00Z")
            .unwrap()
            .to_utc();
        let env = Envelope {
            from: "billing@example.com".parse().unwrap(),
            reply_to: None,
            to: vec!["ap@customer.example".parse().unwrap()],
            bcc: Vec::new(),
            date: None,
        }
        .dated(at);
        let r = Rendered {
            subject: "Invoice 1037".into(),
            text: "Dear customer".into(),
            html: "<p>Dear customer</p>".into(),
        };
        let raw =
            String::from_utf8(build(&env, &r, "<x@example.com>").unwrap().formatted()).unwrap();
        assert!(raw.contains("Date: Mon, 04 Jan 2027 10:00:00"), "{raw}");
    }

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
