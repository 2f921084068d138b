//! The actions the engine takes on a ledger, their requests and idempotency keys.

use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::money::Money;

/// What the engine can do about an invoice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Send the invoice to the customer with a reminder.
    Remind,
    /// Charge a late fee.
    LateFee,
    /// Write a note on the invoice in the ledger (audit trail).
    Note,
    /// Stop automatic reminders, mark for collection, tell the owner.
    Escalate,
}

impl ActionKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ActionKind::Remind => "remind",
            ActionKind::LateFee => "late_fee",
            ActionKind::Note => "note",
            ActionKind::Escalate => "escalate",
        }
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The key that makes a side effect happen at most once, derived only from what the
/// action is: the same (ledger, invoice, action, step) always gives the same key.
///
/// The ledger is [`ledger_scope`] of the system and the realm or tenant id, never the
/// connection's name in the config: renaming a connection must not make every action
/// look new. (Releases before this one derived keys from the name; the store re-keys
/// their journals, keeping the key a vendor may already hold for an unfinished intent.)
///
/// It is 40 characters, inside QuickBooks' 50-character `requestid` and Xero's
/// 128-character `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn derive(ledger: &str, invoice: &str, action: ActionKind, step: &str) -> Self {
        let mut h = Sha256::new();
        // Length-prefixed so ("a","bc") and ("ab","c") differ.
        for part in [ledger, invoice, action.as_str(), step] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        let digest = h.finalize();
        // A table, not `format!` per byte: a plan derives a key per step of every invoice.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut key = String::with_capacity(4 + 36);
        key.push_str("od1-");
        for b in &digest[..18] {
            key.push(char::from(HEX[usize::from(b >> 4)]));
            key.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        IdempotencyKey(key)
    }

    /// The key of the ledger note that records action `action` on its invoice; `ledger`
    /// is what `action` was derived from.
    pub fn audit_note(ledger: &str, invoice: &str, action: &IdempotencyKey) -> Self {
        Self::derive(
            ledger,
            invoice,
            ActionKind::Note,
            &format!("audit:{}", action.0),
        )
    }

    /// The key of the SMTP send that carries out action `action`. SMTP has no
    /// idempotency key of its own: this one names the send's journal record.
    pub fn smtp_send(action: &IdempotencyKey) -> Self {
        IdempotencyKey(format!("smtp:{}", action.0))
    }

    /// The key of the text message that carries out reminder `action` (ledger scope,
    /// invoice and step through the action's own key, plus the channel).
    pub fn sms_send(action: &IdempotencyKey) -> Self {
        IdempotencyKey(format!("sms:{}", action.0))
    }

    /// The key of the owner's digest of local day `day`: one a day.
    pub fn digest(day: NaiveDate) -> Self {
        IdempotencyKey(format!("digest:{day}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The identity of one ledger as keys see it: the system and the company's realm id
/// (QuickBooks) or the organisation's tenant id (Xero). Tenant ids are UUIDs whose case
/// varies between Xero's answers, so they are lower-cased.
pub fn ledger_scope(system: crate::System, id: &str) -> String {
    format!("{}:{}", system.as_str(), id.trim().to_ascii_lowercase())
}

/// Ask the system to send the invoice to the customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReminderRequest {
    pub invoice_id: String,
    /// Where to send it; `None` sends to the address the system holds for the invoice.
    pub to: Option<String>,
}

/// How a late fee lands in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeePosting {
    /// A new invoice for the fee that names the original (legal everywhere).
    #[default]
    SeparateInvoice,
    /// A line added to the original invoice (only where the user opts in).
    LineOnOriginal,
}

/// Charge a late fee for an invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LateFeeRequest {
    pub invoice_id: String,
    pub invoice_number: String,
    pub customer_id: String,
    pub amount: Money,
    /// The line's text, e.g. "Late payment fee on invoice 1037 (30 days overdue)".
    pub description: String,
    pub posting: FeePosting,
    pub issue_date: NaiveDate,
    pub due_date: NaiveDate,
}

/// Append a note to an invoice's record in the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoteRequest {
    pub invoice_id: String,
    pub text: String,
}

/// What the system answered to a write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionReceipt {
    /// The id of what was created, e.g. the fee invoice, when something was.
    pub created_id: Option<String>,
    pub at: DateTime<Utc>,
    /// True when the system recognised the idempotency key and did nothing new.
    pub replayed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_deterministic_short_and_distinct() {
        let a = IdempotencyKey::derive("acme", "130", ActionKind::Remind, "+7d");
        let b = IdempotencyKey::derive("acme", "130", ActionKind::Remind, "+7d");
        assert_eq!(a, b);
        assert!(a.as_str().len() <= 50);
        assert_ne!(
            a,
            IdempotencyKey::derive("acme", "130", ActionKind::Remind, "+14d")
        );
        assert_ne!(
            a,
            IdempotencyKey::derive("acme", "130", ActionKind::LateFee, "+7d")
        );
        assert_ne!(
            a,
            IdempotencyKey::derive("acme", "131", ActionKind::Remind, "+7d")
        );
        assert_ne!(
            IdempotencyKey::derive("ab", "c", ActionKind::Note, "x"),
            IdempotencyKey::derive("a", "bc", ActionKind::Note, "x")
        );
    }

    #[test]
    fn ledger_scopes_name_the_system_and_ignore_id_case() {
        assert_eq!(
            ledger_scope(crate::System::QuickBooks, "9341453"),
            "quickbooks:9341453"
        );
        let x = ledger_scope(
            crate::System::Xero,
            " 0A1B2C3D-0000-4000-8000-00000000000F ",
        );
        assert_eq!(x, "xero:0a1b2c3d-0000-4000-8000-00000000000f");
        assert_ne!(
            IdempotencyKey::derive(&x, "1", ActionKind::Remind, "0d"),
            IdempotencyKey::derive(
                &ledger_scope(
                    crate::System::QuickBooks,
                    "0a1b2c3d-0000-4000-8000-00000000000f"
                ),
                "1",
                ActionKind::Remind,
                "0d"
            )
        );
    }

    /// Journals written by earlier releases and the vendors' idempotency windows hold
    /// these exact strings: a change here repeats actions.
    #[test]
    fn key_strings_of_every_namespace_are_pinned() {
        let action = IdempotencyKey::derive("qbo", "3", ActionKind::Remind, "0d");
        assert_eq!(action.as_str(), "od1-43d10003c71f427f46d2ca0a6c53f5529869");
        assert_eq!(
            IdempotencyKey::derive("qbo", "3", ActionKind::LateFee, "+14d/p0").as_str(),
            "od1-02d34c902b748def61020ac6cba80c2b91e5"
        );
        assert_eq!(
            IdempotencyKey::audit_note("qbo", "3", &action).as_str(),
            "od1-8d2e1ef131721d5b75a5992467a811335057"
        );
        assert_eq!(
            IdempotencyKey::smtp_send(&action).as_str(),
            "smtp:od1-43d10003c71f427f46d2ca0a6c53f5529869"
        );
        assert_eq!(
            IdempotencyKey::digest(NaiveDate::from_ymd_opt(2026, 3, 18).unwrap()).as_str(),
            "digest:2026-03-18"
        );
    }
}
