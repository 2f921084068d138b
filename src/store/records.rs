//! What the store keeps. Every record is written inside a versioned envelope so a later
//! release can read (or refuse clearly) what an earlier one wrote.

use chrono::{DateTime, NaiveDate, Utc};
use overdued_connector::{
    ActionKind, FeePosting, IdempotencyKey, InvoiceSnapshot, Money, SyncCursor,
};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::engine::templates::MessageContext;
use crate::engine::Channel;

/// The format version of every record this release writes.
///
/// 2: journal entries carry a typed [`JournalPayload`]. Version-1 journal entries (an
/// untyped payload, told apart by the key's namespace) are migrated as they are read,
/// by [`JournalEntry::from_v1`]; every other record is the same in both versions.
///
/// 3: invoice records are binary ([`super::codec`]); JSON ones of versions 1 and 2 are
/// read as before and rewritten in binary when the store opens. Every other record is
/// the same JSON as in version 2.
pub const FORMAT_VERSION: u32 = 3;

/// The cached state of one invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceRecord {
    pub snapshot: InvoiceSnapshot,
    /// When overdued last read it from the system.
    pub seen_at: DateTime<Utc>,
    /// When overdued first saw it.
    pub first_seen_at: DateTime<Utc>,
    /// Each change of the amount due as observed: (the day the system dated the change,
    /// the new amount). Interest on overdue balances accrues on these.
    #[serde(default)]
    pub balance_history: Vec<(NaiveDate, Decimal)>,
}

/// Where sync stands for one connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncState {
    pub cursor: SyncCursor,
    /// The cursor of an unfinished full reconciliation, if one is under way.
    #[serde(default)]
    pub full_cursor: Option<SyncCursor>,
    pub last_success: Option<DateTime<Utc>>,
    pub last_full_sync: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_error: Option<String>,
}

/// Where an action stands in the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum JournalState {
    /// Decided and recorded; not yet known to have happened.
    Intent,
    /// The system confirmed it.
    Done {
        at: DateTime<Utc>,
        created_id: Option<String>,
        replayed: bool,
    },
    /// Not done, on purpose (paid since planning, paused, ...), and never retried.
    Skipped { at: DateTime<Utc>, reason: String },
    /// Never carried out: the plan moved past its step (a later step is due, or the
    /// retry deadline counted from the first attempt passed) before it could be.
    Superseded { at: DateTime<Utc>, reason: String },
    /// Failed; `retry` says whether a later cycle tries again.
    Failed {
        at: DateTime<Utc>,
        error: String,
        attempts: u32,
        retry: bool,
    },
}

impl JournalState {
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            JournalState::Done { .. }
                | JournalState::Skipped { .. }
                | JournalState::Superseded { .. }
                | JournalState::Failed { retry: false, .. }
        )
    }
}

impl JournalEntry {
    /// Nothing more to do: a final state, and for a done action its audit note written.
    pub fn is_settled(&self) -> bool {
        match self.state {
            JournalState::Done { .. } => self.audit_note_done,
            ref s => s.is_final(),
        }
    }
}

/// One record in the journal, keyed by its idempotency key: an action on an invoice, or
/// one of the sends that carry actions out or report on them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub key: IdempotencyKey,
    pub connection: String,
    pub invoice_id: String,
    pub customer_id: String,
    pub kind: ActionKind,
    /// The policy step, e.g. `+7d`, or `fee:3` for a fee's third period.
    pub step_id: String,
    /// The local calendar day the action was planned for.
    pub planned_for: NaiveDate,
    pub created_at: DateTime<Utc>,
    /// The balance the plan saw; the executor re-checks it before acting.
    #[serde(with = "rust_decimal::serde::str")]
    pub expected_amount_due: Decimal,
    pub payload: JournalPayload,
    pub state: JournalState,
    /// The idempotency key of the audit note written to the ledger for this action,
    /// once it has been written.
    #[serde(default)]
    pub audit_note_done: bool,
    /// The ledger the key was derived from ([`overdued_connector::ledger_scope`]);
    /// absent on entries written before keys stopped naming the connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger: Option<String>,
    /// The key the vendor (and the SMTP and audit-note records) know this action by,
    /// when it is not `key`: an entry re-keyed from a name-derived key keeps the key
    /// that may already have been sent, so finishing it can never repeat its effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_key: Option<IdempotencyKey>,
}

impl JournalEntry {
    /// The key every call to the vendor, the SMTP record and the audit note use.
    pub fn vendor_key(&self) -> &IdempotencyKey {
        self.sent_key.as_ref().unwrap_or(&self.key)
    }

    /// The key of this action's audit note in the ledger: derived from the ledger for
    /// entries keyed by it, from the connection name for the older ones (whose note may
    /// already be written under that key).
    pub fn audit_note_key(&self) -> IdempotencyKey {
        match (&self.sent_key, &self.ledger) {
            (None, Some(ledger)) => IdempotencyKey::audit_note(ledger, &self.invoice_id, &self.key),
            (Some(sent), _) => IdempotencyKey::audit_note(&self.connection, &self.invoice_id, sent),
            (None, None) => {
                IdempotencyKey::audit_note(&self.connection, &self.invoice_id, &self.key)
            }
        }
    }
}

/// What a journal record stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JournalPayload {
    /// An action on an invoice, as the engine decided it (key [`IdempotencyKey::derive`]).
    Action(ActionPayload),
    /// The email that carries out one or more reminders (key
    /// [`IdempotencyKey::smtp_send`] of each reminder).
    SmtpSend(SmtpSend),
    /// The owner's digest of one day (key [`IdempotencyKey::digest`]).
    Digest(DigestSend),
    /// The text message that carries out one reminder (key
    /// [`IdempotencyKey::sms_send`] of the reminder).
    SmsSend(crate::channels::sms::deliver::SmsSend),
}

impl JournalPayload {
    pub fn action(&self) -> Option<&ActionPayload> {
        match self {
            JournalPayload::Action(a) => Some(a),
            _ => None,
        }
    }
}

/// What exactly an action does, as recorded with its intent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ActionPayload {
    Remind {
        subject: String,
        body: String,
        /// How the reminder reaches the customer; absent (journals written before SMTP
        /// existed) means the accounting system's email.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        channel: Option<Channel>,
        /// The step's template and values, for channels that render their own message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        template: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        context: Option<Box<MessageContext>>,
    },
    LateFee {
        amount: Money,
        description: String,
        posting: FeePosting,
        explanation: String,
        /// The fee period charged (0 for the first).
        period: u32,
        /// Days the fee invoice gives the customer to pay.
        due_in_days: u32,
    },
    Note {
        text: String,
    },
    Escalate {
        text: String,
    },
}

/// One email overdued sent (or attempted) for reminders; the same record for each of
/// the actions it carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmtpSend {
    pub message_id: String,
    /// The recipients as written in the message ("Name <a@x>, b@y").
    pub to: String,
    pub subject: String,
    /// A statement of several invoices rather than one reminder.
    pub statement: bool,
    /// The keys of the actions the message carries.
    pub actions: Vec<String>,
}

/// The owner's digest of one day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestSend {
    pub message_id: String,
    pub to: String,
    pub subject: String,
}

/// A journal entry as format version 1 wrote it: the payload untyped, its kind told by
/// the key's namespace (`smtp:` an SMTP send, `digest:` a digest, otherwise an action).
#[derive(Debug, Deserialize)]
pub(super) struct JournalEntryV1 {
    key: String,
    connection: String,
    invoice_id: String,
    customer_id: String,
    kind: ActionKind,
    step_id: String,
    planned_for: NaiveDate,
    created_at: DateTime<Utc>,
    #[serde(with = "rust_decimal::serde::str")]
    expected_amount_due: Decimal,
    payload: serde_json::Value,
    state: JournalState,
    #[serde(default)]
    audit_note_done: bool,
}

impl JournalEntry {
    /// The entry a version-1 record stands for. The key string is kept byte for byte:
    /// it is what the vendors and the ledger know the action by.
    pub(super) fn from_v1(old: JournalEntryV1) -> Result<JournalEntry, serde_json::Error> {
        let payload = if old.key.starts_with("smtp:") {
            JournalPayload::SmtpSend(serde_json::from_value(old.payload)?)
        } else if old.key.starts_with("digest:") {
            JournalPayload::Digest(serde_json::from_value(old.payload)?)
        } else {
            JournalPayload::Action(serde_json::from_value(old.payload)?)
        };
        Ok(JournalEntry {
            key: serde_json::from_value(serde_json::Value::String(old.key))?,
            connection: old.connection,
            invoice_id: old.invoice_id,
            customer_id: old.customer_id,
            kind: old.kind,
            step_id: old.step_id,
            planned_for: old.planned_for,
            created_at: old.created_at,
            expected_amount_due: old.expected_amount_due,
            payload,
            state: old.state,
            audit_note_done: old.audit_note_done,
            ledger: None,
            sent_key: None,
        })
    }
}

/// One line of the audit log: something overdued saw or did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub at: DateTime<Utc>,
    pub connection: String,
    pub invoice_id: Option<String>,
    /// `observed`, `action`, `skipped`, `promise`, `pause`, `resume`, `escalated`, ...
    pub kind: String,
    pub message: String,
    #[serde(default)]
    pub detail: serde_json::Value,
}

/// What a hold applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "scope", content = "id", rename_all = "snake_case")]
pub enum HoldTarget {
    Invoice(String),
    Customer(String),
}

/// A promise to pay or a pause, set by a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "hold", rename_all = "snake_case")]
pub enum Hold {
    Promise {
        until: NaiveDate,
        #[serde(default, with = "opt_decimal_str")]
        amount: Option<Decimal>,
        /// The amount due when the promise was made, to judge a promise of part of it.
        #[serde(default, with = "opt_decimal_str")]
        balance_when_made: Option<Decimal>,
        set_at: DateTime<Utc>,
    },
    Pause {
        reason: String,
        set_at: DateTime<Utc>,
    },
}

/// `Option<Decimal>` as a string or null, readable inside an internally tagged enum.
///
/// `rust_decimal::serde::str_option` cannot be used in [`Hold`]: serde buffers the fields
/// of an internally tagged enum, a buffered JSON `null` reaches the field as a unit, and
/// that visitor accepts only none/some, so a promise of the whole balance (`amount`
/// null) was written but could never be read back, failing every cycle afterwards.
mod opt_decimal_str {
    use rust_decimal::Decimal;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
        rust_decimal::serde::str_option::serialize(v, s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
        match Option::<serde_json::Value>::deserialize(d)? {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => s
                .trim()
                .parse::<Decimal>()
                .map(Some)
                .map_err(serde::de::Error::custom),
            Some(serde_json::Value::Number(n)) => n
                .to_string()
                .parse::<Decimal>()
                .map(Some)
                .map_err(serde::de::Error::custom),
            Some(other) => Err(serde::de::Error::custom(format!(
                "expected an amount such as \"250.00\", found {other}"
            ))),
        }
    }
}

#[cfg(test)]
mod hold_serde_tests {
    use super::*;

    #[test]
    fn a_promise_of_the_whole_balance_reads_back() {
        let set_at = "2026-01-26T12:00:00Z".parse().unwrap();
        let until = NaiveDate::from_ymd_opt(2026, 2, 2).unwrap();
        for (amount, balance) in [
            (None, None),
            (None, Some(Decimal::new(120000, 2))),
            (Some(Decimal::new(25000, 2)), Some(Decimal::new(120000, 2))),
        ] {
            let h = Hold::Promise {
                until,
                amount,
                balance_when_made: balance,
                set_at,
            };
            let json = serde_json::to_string(&h).unwrap();
            let back: Hold = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json}: {e}"));
            assert_eq!(back, h);
        }
        // Written by this release before the fix: amounts as strings.
        let old = r#"{"hold":"promise","until":"2026-02-02","amount":"250.00","balance_when_made":"1200.00","set_at":"2026-01-26T12:00:00Z"}"#;
        let back: Hold = serde_json::from_str(old).unwrap();
        assert!(
            matches!(back, Hold::Promise { amount: Some(a), .. } if a == Decimal::new(25000, 2))
        );
    }
}
