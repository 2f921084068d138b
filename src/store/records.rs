//! What the store keeps. Every record is written inside a versioned envelope so a later
//! release can read (or refuse clearly) what an earlier one wrote.

use chrono::{DateTime, NaiveDate, Utc};
use overdued_connector::{ActionKind, InvoiceSnapshot, SyncCursor};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// The format version of every record this release writes.
pub const FORMAT_VERSION: u32 = 1;

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

/// One action in the journal, keyed by its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub key: String,
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
    /// What exactly to do (message, fee quote, ...), as the engine wrote it.
    pub payload: serde_json::Value,
    pub state: JournalState,
    /// The idempotency key of the audit note written to the ledger for this action,
    /// once it has been written.
    #[serde(default)]
    pub audit_note_done: bool,
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
