//! Xero's JSON as read and written, and its mapping onto overdued's snapshots.

use chrono::{DateTime, NaiveDate, Utc};
use overdued_connector::{
    ConnectionId, Currency, Customer, CustomerRef, InvoiceSnapshot, InvoiceStatus, Phone, System,
    FEE_MARKER,
};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::dates::{parse_calendar_date, parse_instant};

/// `pagination` of a paged list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct Pagination {
    #[serde(default)]
    pub page: u32,
    #[serde(default, rename = "pageSize")]
    pub page_size: u32,
    #[serde(default, rename = "pageCount")]
    pub page_count: u32,
    #[serde(default, rename = "itemCount")]
    pub item_count: u32,
}

/// `L` as in [`XeroInvoice`]: a page read by sync keeps no lines.
#[derive(Debug, Clone, Deserialize)]
#[serde(bound(deserialize = "L: Deserialize<'de> + Default"))]
pub struct InvoicesEnvelope<L = Vec<Value>> {
    #[serde(default)]
    pub pagination: Option<Pagination>,
    #[serde(rename = "Invoices", default)]
    pub invoices: Vec<XeroInvoice<L>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ContactsEnvelope {
    #[serde(default)]
    pub pagination: Option<Pagination>,
    #[serde(rename = "Contacts", default)]
    pub contacts: Vec<XeroContact>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ValidationError {
    #[serde(rename = "Message", default)]
    pub message: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct XeroContact {
    #[serde(rename = "ContactID", default)]
    pub contact_id: String,
    #[serde(rename = "Name", default)]
    pub name: Option<String>,
    #[serde(rename = "EmailAddress", default)]
    pub email_address: Option<String>,
    #[serde(rename = "UpdatedDateUTC", default)]
    pub updated: Option<String>,
    #[serde(rename = "Phones", default)]
    pub phones: Vec<XeroPhone>,
}

/// Xero's `Phone`: every contact carries one per type, most of them empty.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct XeroPhone {
    #[serde(rename = "PhoneType", default)]
    pub kind: Option<String>,
    #[serde(rename = "PhoneNumber", default)]
    pub number: Option<String>,
    #[serde(rename = "PhoneAreaCode", default)]
    pub area_code: Option<String>,
    #[serde(rename = "PhoneCountryCode", default)]
    pub country_code: Option<String>,
}

impl XeroPhone {
    /// The number as dialled ("+44 20 7946 0000"), or `None` when Xero holds no number
    /// of this type (it lists empty DEFAULT, DDI, MOBILE and FAX entries). A fax line
    /// is no use to someone calling.
    fn to_phone(&self) -> Option<Phone> {
        let kind = self.kind.as_deref().unwrap_or("DEFAULT").trim();
        if kind.eq_ignore_ascii_case("FAX") {
            return None;
        }
        let number = self
            .number
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())?;
        fn part(p: &Option<String>) -> Option<&str> {
            p.as_deref().map(str::trim).filter(|p| !p.is_empty())
        }
        let mut text = String::new();
        if let Some(cc) = part(&self.country_code) {
            text.push_str(&format!("+{} ", cc.trim_start_matches('+')));
        }
        if let Some(area) = part(&self.area_code) {
            text.push_str(area);
            text.push(' ');
        }
        text.push_str(number);
        Some(Phone {
            kind: kind.to_ascii_lowercase(),
            number: text,
        })
    }
}

/// One invoice as Xero returns it. Money fields are read as exact decimals from the JSON
/// numbers (serde_json keeps the digits; nothing passes through a float).
/// An invoice as Xero sends it. `L` is what is kept of its line items and payments:
/// everything, as sent, for a read that may update the invoice; nothing ([`NoLines`])
/// for the pages a sync reads, which only become snapshots (decoding every line of
/// every invoice was a good part of a big sync's CPU).
#[derive(Debug, Clone, Deserialize)]
pub struct XeroInvoice<L = Vec<Value>> {
    #[serde(rename = "Type", default)]
    pub kind: Option<String>,
    #[serde(rename = "InvoiceID", default)]
    pub invoice_id: String,
    #[serde(rename = "InvoiceNumber", default)]
    pub invoice_number: Option<String>,
    #[serde(rename = "Reference", default)]
    pub reference: Option<String>,
    #[serde(rename = "Status", default)]
    pub status: Option<String>,
    #[serde(rename = "Contact", default)]
    pub contact: Option<XeroContact>,
    #[serde(rename = "Date", default)]
    pub date: Option<String>,
    #[serde(rename = "DateString", default)]
    pub date_string: Option<String>,
    #[serde(rename = "DueDate", default)]
    pub due_date: Option<String>,
    #[serde(rename = "DueDateString", default)]
    pub due_date_string: Option<String>,
    #[serde(rename = "UpdatedDateUTC", default)]
    pub updated: Option<String>,
    /// Set by Xero on a paid invoice: the day the last payment made it paid.
    #[serde(rename = "FullyPaidOnDate", default)]
    pub fully_paid_on: Option<String>,
    #[serde(rename = "CurrencyCode", default)]
    pub currency_code: Option<String>,
    #[serde(
        rename = "Total",
        default,
        with = "rust_decimal::serde::arbitrary_precision_option"
    )]
    pub total: Option<Decimal>,
    #[serde(
        rename = "AmountDue",
        default,
        with = "rust_decimal::serde::arbitrary_precision_option"
    )]
    pub amount_due: Option<Decimal>,
    #[serde(
        rename = "AmountPaid",
        default,
        with = "rust_decimal::serde::arbitrary_precision_option"
    )]
    pub amount_paid: Option<Decimal>,
    #[serde(
        rename = "AmountCredited",
        default,
        with = "rust_decimal::serde::arbitrary_precision_option"
    )]
    pub amount_credited: Option<Decimal>,
    /// Kept as raw JSON so that adding a line resends the existing ones unchanged.
    #[serde(rename = "LineItems", default)]
    pub line_items: L,
    #[serde(rename = "Payments", default)]
    pub payments: L,
    #[serde(rename = "HasErrors", default)]
    pub has_errors: bool,
    #[serde(rename = "ValidationErrors", default)]
    pub validation_errors: Vec<ValidationError>,
}

/// A field Xero should always send was missing or unreadable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invoice {invoice}: {problem}")]
pub struct MappingError {
    pub invoice: String,
    pub problem: String,
}

/// The line items and payments of a sync page's invoice, skipped unread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoLines;

impl<'de> Deserialize<'de> for NoLines {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| NoLines)
    }
}

impl<L> XeroInvoice<L> {
    pub fn is_sales(&self) -> bool {
        self.kind
            .as_deref()
            .is_none_or(|k| k.eq_ignore_ascii_case("ACCREC"))
    }

    fn amount_due_or_derived(&self) -> Option<Decimal> {
        self.amount_due.or_else(|| {
            let total = self.total?;
            Some(
                total
                    - self.amount_paid.unwrap_or_default()
                    - self.amount_credited.unwrap_or_default(),
            )
        })
    }

    /// Where the invoice stands, from Xero's status and what is still owed.
    pub fn snapshot_status(&self) -> Result<InvoiceStatus, MappingError> {
        let raw = self.status.as_deref().unwrap_or("");
        Ok(match raw.to_ascii_uppercase().as_str() {
            "AUTHORISED" | "SUBMITTED" => {
                if self.amount_due_or_derived().unwrap_or_default() > Decimal::ZERO {
                    InvoiceStatus::Open
                } else {
                    InvoiceStatus::Paid
                }
            }
            "PAID" => InvoiceStatus::Paid,
            "VOIDED" => InvoiceStatus::Voided,
            "DELETED" => InvoiceStatus::Deleted,
            "DRAFT" => InvoiceStatus::Draft,
            _ => return Err(self.problem(format!("unknown Status {raw:?}"))),
        })
    }

    /// `FullyPaidOnDate` of a paid invoice; nothing for any other.
    fn paid_on(&self, status: InvoiceStatus) -> Result<Option<NaiveDate>, MappingError> {
        match self.fully_paid_on.as_deref().filter(|d| !d.is_empty()) {
            Some(d) if status == InvoiceStatus::Paid => parse_calendar_date(d)
                .map(Some)
                .map_err(|e| self.problem(format!("FullyPaidOnDate: {e}"))),
            _ => Ok(None),
        }
    }

    fn problem(&self, problem: impl Into<String>) -> MappingError {
        MappingError {
            invoice: self.invoice_id.clone(),
            problem: problem.into(),
        }
    }

    fn calendar(
        &self,
        primary: &Option<String>,
        fallback: &Option<String>,
        field: &str,
    ) -> Result<NaiveDate, MappingError> {
        match (primary, fallback) {
            (Some(p), _) if !p.is_empty() => {
                parse_calendar_date(p).map_err(|e| self.problem(format!("{field}: {e}")))
            }
            (_, Some(f)) if !f.is_empty() => {
                parse_calendar_date(f).map_err(|e| self.problem(format!("{field}: {e}")))
            }
            _ => Err(self.problem(format!("no {field}"))),
        }
    }

    /// The snapshot of this invoice. `pay_url` is left empty: the online invoice link is a
    /// separate call per invoice (see `XeroConnector::online_invoice_url`).
    pub fn to_snapshot(&self, connection: &ConnectionId) -> Result<InvoiceSnapshot, MappingError> {
        if self.invoice_id.is_empty() {
            return Err(self.problem("no InvoiceID"));
        }
        let status = self.snapshot_status()?;
        let currency: Currency = self
            .currency_code
            .as_deref()
            .ok_or_else(|| self.problem("no CurrencyCode"))?
            .parse()
            .map_err(|e: overdued_connector::CurrencyError| self.problem(e.to_string()))?;
        let total = self.total.ok_or_else(|| self.problem("no Total"))?;
        let amount_due = match status {
            // Xero reports the last balance of a voided or deleted invoice; nothing is owed.
            InvoiceStatus::Voided | InvoiceStatus::Deleted => Decimal::ZERO,
            _ => self
                .amount_due_or_derived()
                .ok_or_else(|| self.problem("no AmountDue"))?,
        };
        let updated_at = match self.updated.as_deref() {
            Some(u) => {
                parse_instant(u).map_err(|e| self.problem(format!("UpdatedDateUTC: {e}")))?
            }
            None => return Err(self.problem("no UpdatedDateUTC")),
        };
        let contact = self
            .contact
            .as_ref()
            .ok_or_else(|| self.problem("no Contact"))?;
        let memo = self.reference.clone().unwrap_or_default();
        Ok(InvoiceSnapshot {
            connection: connection.clone(),
            system: System::Xero,
            remote_id: self.invoice_id.clone(),
            number: self.invoice_number.clone().filter(|n| !n.is_empty()),
            customer: CustomerRef {
                id: contact.contact_id.clone(),
                name: contact.name.clone().unwrap_or_default(),
                email: contact
                    .email_address
                    .clone()
                    .filter(|e| !e.trim().is_empty()),
            },
            currency,
            total,
            amount_due,
            issue_date: self.calendar(&self.date, &self.date_string, "Date")?,
            due_date: self.calendar(&self.due_date, &self.due_date_string, "DueDate")?,
            status,
            updated_at,
            // Xero has no concurrency token; `updated_at` carries the change time.
            version: None,
            is_fee_invoice: memo.contains(FEE_MARKER),
            memo,
            pay_url: None,
            paid_on: self.paid_on(status)?,
        })
    }
}

impl XeroContact {
    pub fn to_customer(&self, connection: &ConnectionId) -> Customer {
        Customer {
            connection: connection.clone(),
            id: self.contact_id.clone(),
            name: self.name.clone().unwrap_or_default(),
            email: self.email_address.clone().filter(|e| !e.trim().is_empty()),
            updated_at: self.updated.as_deref().and_then(|u| parse_instant(u).ok()),
            phones: self.phones.iter().filter_map(XeroPhone::to_phone).collect(),
        }
    }
}

/// What fetch-by-id returns for an id Xero no longer knows: only the id and the status
/// are facts; the amounts are zero (nothing can be owed on it) and the currency is
/// ISO 4217's "XXX" (no currency), since nothing else about it can be known.
pub fn tombstone(connection: &ConnectionId, id: &str, now: DateTime<Utc>) -> InvoiceSnapshot {
    InvoiceSnapshot {
        connection: connection.clone(),
        system: System::Xero,
        remote_id: id.to_string(),
        number: None,
        customer: CustomerRef {
            id: String::new(),
            name: String::new(),
            email: None,
        },
        currency: "XXX".parse().unwrap_or(Currency::USD),
        total: Decimal::ZERO,
        amount_due: Decimal::ZERO,
        issue_date: now.date_naive(),
        due_date: now.date_naive(),
        status: InvoiceStatus::Deleted,
        updated_at: now,
        version: None,
        memo: String::new(),
        is_fee_invoice: false,
        pay_url: None,
        paid_on: None,
    }
}

/// Xero's error body for HTTP 400 (`ValidationException`) and friends.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ApiError {
    #[serde(rename = "ErrorNumber", default)]
    pub error_number: Option<i64>,
    #[serde(rename = "Type", default)]
    pub kind: Option<String>,
    #[serde(rename = "Message", default)]
    pub message: Option<String>,
    #[serde(rename = "Detail", default)]
    pub detail: Option<String>,
    #[serde(rename = "Title", default)]
    pub title: Option<String>,
    #[serde(rename = "Elements", default)]
    pub elements: Vec<ErrorElement>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ErrorElement {
    #[serde(rename = "ValidationErrors", default)]
    pub validation_errors: Vec<ValidationError>,
}

impl ApiError {
    /// Every validation message, in order, without duplicates.
    pub fn messages(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for m in self
            .elements
            .iter()
            .flat_map(|e| e.validation_errors.iter())
            .map(|v| v.message.trim().to_string())
        {
            if !m.is_empty() && !out.contains(&m) {
                out.push(m);
            }
        }
        out
    }

    /// A one-line description: the validation messages, else the message or detail.
    pub fn describe(&self) -> String {
        let msgs = self.messages();
        if !msgs.is_empty() {
            return msgs.join("; ");
        }
        [&self.message, &self.detail, &self.title, &self.kind]
            .into_iter()
            .flatten()
            .find(|s| !s.trim().is_empty())
            .cloned()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn conn() -> ConnectionId {
        ConnectionId::new("uk")
    }

    fn inv(json: &str) -> XeroInvoice {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_contacts_phones_are_dialable_numbers_without_empty_entries_or_fax() {
        let c: XeroContact = serde_json::from_str(
            r#"{"ContactID":"c1","Name":"Barney","Phones":[
                {"PhoneType":"DEFAULT","PhoneNumber":"7946 0000","PhoneAreaCode":"20","PhoneCountryCode":"44"},
                {"PhoneType":"DDI","PhoneNumber":"","PhoneAreaCode":"","PhoneCountryCode":""},
                {"PhoneType":"FAX","PhoneNumber":"7946 0001","PhoneAreaCode":"20","PhoneCountryCode":"44"},
                {"PhoneType":"MOBILE","PhoneNumber":"07700 900123"}]}"#,
        )
        .unwrap();
        let c = c.to_customer(&conn());
        assert_eq!(
            c.phones,
            vec![
                Phone {
                    kind: "default".into(),
                    number: "+44 20 7946 0000".into()
                },
                Phone {
                    kind: "mobile".into(),
                    number: "07700 900123".into()
                }
            ]
        );
    }

    const BASE: &str = r#"{"Type":"ACCREC","InvoiceID":"d4956132-ed94-4dd7-9eaa-aa22dfdf06f2","InvoiceNumber":"INV-0001",
        "Reference":"Ref","Contact":{"ContactID":"c1","Name":"Barney"},"Date":"/Date(1539993600000+0000)/",
        "DueDate":"/Date(1546128000000+0000)/","Status":"AUTHORISED","Total":46.10,"AmountDue":46.10,"AmountPaid":0.00,
        "UpdatedDateUTC":"/Date(1541176290160+0000)/","CurrencyCode":"NZD"}"#;

    #[test]
    fn money_is_exact_decimal() {
        let x = inv(
            r#"{"InvoiceID":"a","Total":0.1,"AmountDue":1234567890.123456789,"AmountPaid":40.0}"#,
        );
        assert_eq!(x.total, Some(dec!(0.1)));
        assert_eq!(x.amount_due.unwrap().to_string(), "1234567890.123456789");
        assert_eq!(x.amount_paid.unwrap().to_string(), "40.0");
    }

    #[test]
    fn statuses_map_with_amount_due() {
        let mut x = inv(BASE);
        assert_eq!(x.snapshot_status().unwrap(), InvoiceStatus::Open);
        x.status = Some("SUBMITTED".into());
        assert_eq!(x.snapshot_status().unwrap(), InvoiceStatus::Open);
        x.amount_due = Some(Decimal::ZERO);
        assert_eq!(x.snapshot_status().unwrap(), InvoiceStatus::Paid);
        for (s, want) in [
            ("PAID", InvoiceStatus::Paid),
            ("VOIDED", InvoiceStatus::Voided),
            ("DELETED", InvoiceStatus::Deleted),
            ("DRAFT", InvoiceStatus::Draft),
        ] {
            x.status = Some(s.into());
            assert_eq!(x.snapshot_status().unwrap(), want, "{s}");
        }
        x.status = Some("ARCHIVED".into());
        assert!(x.snapshot_status().is_err());
    }

    #[test]
    fn a_paid_invoice_carries_fully_paid_on_date() {
        let paid = BASE
            .replace(r#""Status":"AUTHORISED""#, r#""Status":"PAID""#)
            .replace(
                r#""AmountDue":46.10"#,
                r#""AmountDue":0.00,"FullyPaidOnDate":"/Date(1543449600000+0000)/""#,
            );
        let s = inv(&paid).to_snapshot(&conn()).unwrap();
        assert_eq!(s.paid_on, NaiveDate::from_ymd_opt(2018, 11, 29));
        // Open: no payment date, whatever the field says.
        let open = BASE.replace(
            r#""AmountDue":46.10"#,
            r#""AmountDue":46.10,"FullyPaidOnDate":"/Date(1543449600000+0000)/""#,
        );
        assert_eq!(inv(&open).to_snapshot(&conn()).unwrap().paid_on, None);
        let bad = paid.replace("/Date(1543449600000+0000)/", "soon");
        let e = inv(&bad).to_snapshot(&conn()).unwrap_err();
        assert!(e.to_string().contains("FullyPaidOnDate"), "{e}");
    }

    #[test]
    fn snapshot_fields() {
        let s = inv(BASE).to_snapshot(&conn()).unwrap();
        assert_eq!(s.remote_id, "d4956132-ed94-4dd7-9eaa-aa22dfdf06f2");
        assert_eq!(s.number.as_deref(), Some("INV-0001"));
        assert_eq!(s.due_date, NaiveDate::from_ymd_opt(2018, 12, 30).unwrap());
        assert_eq!(s.issue_date, NaiveDate::from_ymd_opt(2018, 10, 20).unwrap());
        assert_eq!(s.amount_due, dec!(46.10));
        assert_eq!(s.currency.code(), "NZD");
        assert_eq!(s.customer.id, "c1");
        assert_eq!(s.memo, "Ref");
        assert!(!s.is_fee_invoice);
        assert_eq!(s.status, InvoiceStatus::Open);
        assert_eq!(s.system, System::Xero);

        let mut fee = inv(BASE);
        fee.reference = Some(format!("Late fee on INV-0001 {FEE_MARKER}"));
        assert!(fee.to_snapshot(&conn()).unwrap().is_fee_invoice);

        let mut voided = inv(BASE);
        voided.status = Some("VOIDED".into());
        assert_eq!(
            voided.to_snapshot(&conn()).unwrap().amount_due,
            Decimal::ZERO
        );
    }

    #[test]
    fn missing_fields_are_errors_not_guesses() {
        for strip in [
            "CurrencyCode",
            "Total",
            "UpdatedDateUTC",
            "Contact",
            "DueDate",
        ] {
            let mut v: Value = serde_json::from_str(BASE).unwrap();
            v.as_object_mut().unwrap().remove(strip);
            let x: XeroInvoice = serde_json::from_value(v).unwrap();
            let e = x.to_snapshot(&conn()).unwrap_err();
            assert!(e.to_string().contains("d4956132"), "{e}");
        }
        // DueDateString stands in for a missing DueDate.
        let mut v: Value = serde_json::from_str(BASE).unwrap();
        v.as_object_mut().unwrap().remove("DueDate");
        v["DueDateString"] = "2018-12-30T00:00:00".into();
        let x: XeroInvoice = serde_json::from_value(v).unwrap();
        assert_eq!(
            x.to_snapshot(&conn()).unwrap().due_date,
            NaiveDate::from_ymd_opt(2018, 12, 30).unwrap()
        );
    }

    #[test]
    fn error_bodies_describe_their_validation_messages() {
        let e: ApiError = serde_json::from_str(r#"{"ErrorNumber":10,"Type":"ValidationException","Message":"A validation exception occurred","Elements":[{"ValidationErrors":[{"Message":"Please enter a unique Name."},{"Message":"Please enter a unique Name."}]},{"ValidationErrors":[{"Message":"Second."}]}]}"#).unwrap();
        assert_eq!(e.describe(), "Please enter a unique Name.; Second.");
        let e: ApiError =
            serde_json::from_str(r#"{"Type":"ValidationException","Message":"Only one"}"#).unwrap();
        assert_eq!(e.describe(), "Only one");
    }
}
