//! The invoice snapshot both vendors map onto, and customers.

use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::money::{Currency, Money};

/// Which accounting system a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum System {
    #[serde(rename = "quickbooks")]
    QuickBooks,
    Xero,
}

impl System {
    pub fn as_str(&self) -> &'static str {
        match self {
            System::QuickBooks => "quickbooks",
            System::Xero => "xero",
        }
    }
}

impl fmt::Display for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The user's name for one QuickBooks company or Xero organisation, from the config.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConnectionId(pub String);

impl ConnectionId {
    pub fn new(s: impl Into<String>) -> Self {
        ConnectionId(s.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where an invoice stands in its system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InvoiceStatus {
    /// Issued and not fully paid (QuickBooks: Balance > 0; Xero: AUTHORISED or SUBMITTED).
    Open,
    Paid,
    Voided,
    Deleted,
    /// Not yet issued (Xero DRAFT): never chased.
    Draft,
}

impl InvoiceStatus {
    pub fn is_open(&self) -> bool {
        matches!(self, InvoiceStatus::Open)
    }
}

/// The customer an invoice is billed to, as the invoice names them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerRef {
    pub id: String,
    pub name: String,
    /// The address the system's own invoice email goes to, when known.
    pub email: Option<String>,
}

/// A customer (QuickBooks Customer, Xero Contact).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    pub connection: ConnectionId,
    pub id: String,
    pub name: String,
    pub email: Option<String>,
    pub updated_at: Option<DateTime<Utc>>,
    /// The contact's telephone numbers as the ledger holds them, main number first.
    /// Records stored before numbers were read have none.
    #[serde(default)]
    pub phones: Vec<Phone>,
}

/// One telephone number of a customer's contact record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phone {
    /// What the ledger calls it: QuickBooks `primary`, `mobile`, `alternate`; Xero
    /// `default`, `mobile`, `ddi`, `office`.
    pub kind: String,
    /// The number as a person dials it, country and area code included when given.
    pub number: String,
}

impl std::fmt::Display for Phone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.number, self.kind)
    }
}

/// One invoice as last read from its system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceSnapshot {
    pub connection: ConnectionId,
    pub system: System,
    /// QuickBooks `Id`, Xero `InvoiceID`.
    pub remote_id: String,
    /// QuickBooks `DocNumber`, Xero `InvoiceNumber`.
    pub number: Option<String>,
    pub customer: CustomerRef,
    pub currency: Currency,
    #[serde(with = "rust_decimal::serde::str")]
    pub total: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount_due: Decimal,
    pub issue_date: NaiveDate,
    /// A calendar date: never shifted across time zones.
    pub due_date: NaiveDate,
    pub status: InvoiceStatus,
    pub updated_at: DateTime<Utc>,
    /// The vendor's concurrency token (QuickBooks `SyncToken`); `None` where there is none.
    pub version: Option<String>,
    /// Free text the user controls from inside the ledger (QuickBooks `PrivateNote` and
    /// `CustomerMemo`, Xero `Reference`), searched for markers such as `#nochase`.
    #[serde(default)]
    pub memo: String,
    /// Set when this invoice is itself a late fee overdued (or the user) raised, so no
    /// fee is ever charged on a fee.
    #[serde(default)]
    pub is_fee_invoice: bool,
    /// Where the customer can pay online, when the system has such a link.
    #[serde(default)]
    pub pay_url: Option<String>,
    /// The day a paid invoice was paid in full, when the system says so on the invoice
    /// (Xero `FullyPaidOnDate`); QuickBooks dates its payments only on the linked
    /// Payment, so there it stays `None` and payer profiles use the balance history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paid_on: Option<NaiveDate>,
}

impl InvoiceSnapshot {
    pub fn total_money(&self) -> Money {
        Money::new(self.total, self.currency)
    }

    pub fn due_money(&self) -> Money {
        Money::new(self.amount_due, self.currency)
    }

    /// The name a person would use: the document number, else the remote id.
    pub fn display_number(&self) -> &str {
        self.number.as_deref().unwrap_or(&self.remote_id)
    }

    /// Whole days past the due date on `today` (negative before it).
    pub fn days_overdue(&self, today: NaiveDate) -> i64 {
        (today - self.due_date).num_days()
    }
}

/// The marker a fee invoice carries in its memo/reference so it is recognised as a fee
/// on every later sync, whichever system it lives in.
pub const FEE_MARKER: &str = "[overdued-fee]";

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    pub(crate) fn sample() -> InvoiceSnapshot {
        InvoiceSnapshot {
            connection: ConnectionId::new("acme-qbo"),
            system: System::QuickBooks,
            remote_id: "130".into(),
            number: Some("1037".into()),
            customer: CustomerRef {
                id: "7".into(),
                name: "Sonnenschein Family Store".into(),
                email: Some("ap@sonnenschein.example".into()),
            },
            currency: Currency::USD,
            total: dec!(362.07),
            amount_due: dec!(362.07),
            issue_date: NaiveDate::from_ymd_opt(2026, 10, 1).unwrap(),
            due_date: NaiveDate::from_ymd_opt(2026, 10, 31).unwrap(),
            status: InvoiceStatus::Open,
            updated_at: DateTime::parse_from_rfc3339("2026-10-01T10:00:00-07:00")
                .unwrap()
                .to_utc(),
            version: Some("0".into()),
            memo: String::new(),
            is_fee_invoice: false,
            pay_url: None,
            paid_on: None,
        }
    }

    #[test]
    fn snapshot_round_trips_exactly() {
        let inv = sample();
        let json = serde_json::to_string(&inv).unwrap();
        assert!(json.contains(r#""total":"362.07""#), "{json}");
        assert!(json.contains(r#""due_date":"2026-10-31""#), "{json}");
        assert_eq!(serde_json::from_str::<InvoiceSnapshot>(&json).unwrap(), inv);
    }

    #[test]
    fn days_overdue_counts_calendar_days() {
        let inv = sample();
        assert_eq!(
            inv.days_overdue(NaiveDate::from_ymd_opt(2026, 11, 7).unwrap()),
            7
        );
        assert_eq!(
            inv.days_overdue(NaiveDate::from_ymd_opt(2026, 10, 28).unwrap()),
            -3
        );
        assert_eq!(inv.display_number(), "1037");
        assert_eq!(inv.due_money().to_string(), "USD 362.07");
    }
}
