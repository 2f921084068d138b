//! QuickBooks Online JSON: entities, envelopes, faults, and their mapping onto the
//! shared domain model.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use overdued_connector::runtime::{retry_after, HttpResponse};
use overdued_connector::{
    ConnectionId, ConnectorError, Currency, Customer, CustomerRef, InvoiceSnapshot, InvoiceStatus,
    Phone, System, FEE_MARKER,
};
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// Money arrives as a JSON number; it is read from its exact text, never via f64.
fn de_decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => parse_decimal(&n.to_string())
            .map(Some)
            .map_err(serde::de::Error::custom),
        Some(Value::String(s)) => parse_decimal(&s)
            .map(Some)
            .map_err(serde::de::Error::custom),
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected a number, got {other}"
        ))),
    }
}

fn parse_decimal(s: &str) -> Result<Decimal, String> {
    Decimal::from_str(s.trim())
        .or_else(|_| Decimal::from_scientific(s.trim()))
        .map_err(|e| format!("bad amount {s:?}: {e}"))
}

/// A decimal as a JSON number with its exact digits.
pub fn json_number(d: Decimal) -> Value {
    serde_json::Number::from_str(&d.normalize().to_string())
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct Ref {
    pub value: String,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct MemoRef {
    #[serde(default)]
    pub value: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct EmailAddr {
    #[serde(rename = "Address", default)]
    pub address: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct MetaData {
    #[serde(rename = "LastUpdatedTime", default)]
    pub last_updated: Option<DateTime<Utc>>,
}

/// An invoice as QuickBooks sends it. `L` is what is kept of its lines: all of them,
/// as sent, for a read that may update the invoice; nothing ([`NoLines`]) for the rows
/// of a query, which only become snapshots (decoding every line of every row was a
/// good part of a big sync's CPU).
#[derive(Debug, Clone, Deserialize)]
pub struct QboInvoice<L = Vec<Value>> {
    #[serde(rename = "Id")]
    pub id: String,
    /// Deleted stubs (CDC) carry `"status": "Deleted"` and little else.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(rename = "SyncToken", default)]
    pub sync_token: Option<String>,
    #[serde(rename = "DocNumber", default)]
    pub doc_number: Option<String>,
    #[serde(rename = "TxnDate", default)]
    pub txn_date: Option<NaiveDate>,
    #[serde(rename = "DueDate", default)]
    pub due_date: Option<NaiveDate>,
    #[serde(rename = "TotalAmt", default, deserialize_with = "de_decimal")]
    pub total: Option<Decimal>,
    #[serde(rename = "Balance", default, deserialize_with = "de_decimal")]
    pub balance: Option<Decimal>,
    #[serde(rename = "CustomerRef", default)]
    pub customer: Option<Ref>,
    #[serde(rename = "CurrencyRef", default)]
    pub currency: Option<Ref>,
    #[serde(rename = "BillEmail", default)]
    pub bill_email: Option<EmailAddr>,
    #[serde(rename = "PrivateNote", default)]
    pub private_note: Option<String>,
    #[serde(rename = "CustomerMemo", default)]
    pub customer_memo: Option<MemoRef>,
    #[serde(rename = "MetaData", default)]
    pub meta: Option<MetaData>,
    #[serde(rename = "InvoiceLink", default)]
    pub invoice_link: Option<String>,
    /// Kept as sent: a line update has to send every existing line back unchanged.
    #[serde(rename = "Line", default)]
    pub lines: L,
}

/// The lines of a query row, skipped unread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoLines;

impl<'de> Deserialize<'de> for NoLines {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| NoLines)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct QboCustomer {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "DisplayName", default)]
    pub display_name: Option<String>,
    #[serde(rename = "CompanyName", default)]
    pub company_name: Option<String>,
    #[serde(rename = "PrimaryEmailAddr", default)]
    pub email: Option<EmailAddr>,
    #[serde(rename = "PrimaryPhone", default)]
    pub primary_phone: Option<TelephoneNumber>,
    #[serde(rename = "Mobile", default)]
    pub mobile: Option<TelephoneNumber>,
    #[serde(rename = "AlternatePhone", default)]
    pub alternate_phone: Option<TelephoneNumber>,
    #[serde(rename = "MetaData", default)]
    pub meta: Option<MetaData>,
}

/// QuickBooks' `TelephoneNumber`: the number as typed, in `FreeFormNumber`.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct TelephoneNumber {
    #[serde(rename = "FreeFormNumber", default)]
    pub free_form: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct QueryEnvelope {
    #[serde(rename = "QueryResponse")]
    pub query: QueryResponse,
}

/// An empty result is `{}`: no entity key at all.
#[derive(Debug, Deserialize, Default)]
pub struct QueryResponse {
    #[serde(rename = "Invoice", default)]
    pub invoices: Vec<QboInvoice<NoLines>>,
    #[serde(rename = "Customer", default)]
    pub customers: Vec<QboCustomer>,
}

#[derive(Debug, Deserialize)]
pub struct InvoiceEnvelope {
    #[serde(rename = "Invoice")]
    pub invoice: QboInvoice,
}

/// `GET .../payment/{id}`: only what says which invoices the payment was applied to.
#[derive(Debug, Deserialize)]
pub struct PaymentEnvelope {
    #[serde(rename = "Payment")]
    pub payment: QboPayment,
}

#[derive(Debug, Deserialize)]
pub struct QboPayment {
    #[serde(rename = "Line", default)]
    pub lines: Vec<QboPaymentLine>,
}

#[derive(Debug, Deserialize)]
pub struct QboPaymentLine {
    #[serde(rename = "LinkedTxn", default)]
    pub linked: Vec<QboLinkedTxn>,
}

#[derive(Debug, Deserialize)]
pub struct QboLinkedTxn {
    #[serde(rename = "TxnId")]
    pub id: String,
    #[serde(rename = "TxnType", default)]
    pub kind: String,
}

impl QboPayment {
    /// The ids of the invoices among the payment's linked transactions, each once, in
    /// the order given (a payment may also settle credit memos or journal entries).
    pub fn invoice_ids(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for t in self.lines.iter().flat_map(|l| &l.linked) {
            if t.kind == "Invoice" && !out.contains(&t.id) {
                out.push(t.id.clone());
            }
        }
        out
    }
}

#[derive(Debug, Deserialize)]
pub struct CdcEnvelope {
    #[serde(rename = "CDCResponse", default)]
    pub responses: Vec<CdcResponse>,
}

#[derive(Debug, Deserialize)]
pub struct CdcResponse {
    #[serde(rename = "QueryResponse", default)]
    pub queries: Vec<QueryResponse>,
}

/// Why a QuickBooks invoice could not be mapped.
#[derive(Debug, thiserror::Error)]
#[error("invoice {id}: {what}")]
pub struct MappingError {
    pub id: String,
    pub what: String,
}

impl From<MappingError> for ConnectorError {
    fn from(e: MappingError) -> Self {
        ConnectorError::Permanent(format!("unmappable QuickBooks {e}"))
    }
}

impl<L> QboInvoice<L> {
    pub fn is_deleted_stub(&self) -> bool {
        self.status
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("deleted"))
    }

    pub fn memo(&self) -> String {
        let parts = [
            self.private_note.as_deref(),
            self.customer_memo.as_ref().and_then(|m| m.value.as_deref()),
        ];
        parts
            .into_iter()
            .flatten()
            .filter(|s| !s.trim().is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn updated_at(&self) -> Option<DateTime<Utc>> {
        self.meta.as_ref().and_then(|m| m.last_updated)
    }

    /// Maps onto the shared snapshot. `home` is the company currency, used only when the
    /// invoice names none (companies without multicurrency).
    pub fn to_snapshot(
        &self,
        connection: &ConnectionId,
        home: Currency,
    ) -> Result<InvoiceSnapshot, MappingError> {
        let err = |what: &str| MappingError {
            id: self.id.clone(),
            what: what.to_string(),
        };
        let updated_at = self
            .updated_at()
            .ok_or_else(|| err("no MetaData.LastUpdatedTime"))?;
        let issue_date = self.txn_date.ok_or_else(|| err("no TxnDate"))?;
        let due_date = self.due_date.unwrap_or(issue_date);
        let balance = self.balance.ok_or_else(|| err("no Balance"))?;
        let total = self.total.ok_or_else(|| err("no TotalAmt"))?;
        let customer = self
            .customer
            .as_ref()
            .ok_or_else(|| err("no CustomerRef"))?;
        let currency = match &self.currency {
            Some(r) => r
                .value
                .parse::<Currency>()
                .map_err(|e| err(&e.to_string()))?,
            None => home,
        };
        let memo = self.memo();
        let status = if self.is_deleted_stub() {
            InvoiceStatus::Deleted
        } else if balance > Decimal::ZERO {
            InvoiceStatus::Open
        } else if self
            .private_note
            .as_deref()
            .is_some_and(|n| n.trim_start().starts_with("Voided"))
        {
            // QuickBooks voids zero the balance and write "Voided" into PrivateNote.
            InvoiceStatus::Voided
        } else {
            InvoiceStatus::Paid
        };
        Ok(InvoiceSnapshot {
            connection: connection.clone(),
            system: System::QuickBooks,
            remote_id: self.id.clone(),
            number: self.doc_number.clone().filter(|d| !d.is_empty()),
            customer: CustomerRef {
                id: customer.value.clone(),
                name: customer.name.clone().unwrap_or_default(),
                email: self
                    .bill_email
                    .as_ref()
                    .and_then(|e| e.address.clone())
                    .filter(|a| !a.is_empty()),
            },
            currency,
            total,
            amount_due: balance.max(Decimal::ZERO),
            issue_date,
            due_date,
            status,
            updated_at,
            version: self.sync_token.clone(),
            is_fee_invoice: memo.contains(FEE_MARKER),
            memo,
            pay_url: self.invoice_link.clone().filter(|l| !l.is_empty()),
            paid_on: None,
        })
    }
}

impl QboCustomer {
    pub fn to_customer(&self, connection: &ConnectionId) -> Customer {
        Customer {
            connection: connection.clone(),
            id: self.id.clone(),
            name: self
                .display_name
                .clone()
                .or_else(|| self.company_name.clone())
                .unwrap_or_default(),
            email: self
                .email
                .as_ref()
                .and_then(|e| e.address.clone())
                .filter(|a| !a.is_empty()),
            updated_at: self.meta.as_ref().and_then(|m| m.last_updated),
            phones: [
                ("primary", &self.primary_phone),
                ("mobile", &self.mobile),
                ("alternate", &self.alternate_phone),
            ]
            .into_iter()
            .filter_map(|(kind, p)| {
                let number = p.as_ref()?.free_form.as_deref()?.trim();
                (!number.is_empty()).then(|| Phone {
                    kind: kind.into(),
                    number: number.into(),
                })
            })
            .collect(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct FaultEnvelope {
    #[serde(alias = "fault")]
    #[serde(rename = "Fault")]
    fault: Fault,
}

#[derive(Debug, Deserialize)]
struct Fault {
    #[serde(rename = "Error", alias = "error", default)]
    errors: Vec<FaultError>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

#[derive(Debug, Deserialize)]
struct FaultError {
    #[serde(rename = "Message", alias = "message", default)]
    message: Option<String>,
    #[serde(rename = "Detail", alias = "detail", default)]
    detail: Option<String>,
    #[serde(default)]
    code: Option<Value>,
}

fn code_str(v: &Option<Value>) -> String {
    match v {
        Some(Value::String(s)) => s.trim_start_matches('0').to_string(),
        Some(Value::Number(n)) => n.to_string().trim_start_matches('0').to_string(),
        _ => String::new(),
    }
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

/// Reads a `Fault` envelope, if the body is one.
fn fault(body: &[u8]) -> Option<Fault> {
    // A cheap scan first: a full parse of a 1000-invoice page just to learn it is no
    // fault would double the cost of every read.
    if !mentions_fault(body) {
        return None;
    }
    serde_json::from_slice::<FaultEnvelope>(body)
        .ok()
        .map(|f| f.fault)
}

/// Whether `"fault"` (any case) occurs in `body`. Only the bytes after each quote are
/// compared: a byte-by-byte window over a megabyte page cost more than decoding it.
fn mentions_fault(body: &[u8]) -> bool {
    const REST: &[u8] = b"fault\"";
    let mut rest = body;
    while let Some(i) = rest.iter().position(|&b| b == b'"') {
        rest = &rest[i + 1..];
        if rest.len() >= REST.len() && rest[..REST.len()].eq_ignore_ascii_case(REST) {
            return true;
        }
    }
    false
}

/// Classifies a failed or faulted response. Messages carry the vendor's text only.
pub fn classify(resp: &HttpResponse) -> ConnectorError {
    let after = retry_after(&resp.headers);
    let text = String::from_utf8_lossy(&resp.body);
    let f = fault(&resp.body);
    let codes: Vec<String> = f
        .as_ref()
        .map(|f| f.errors.iter().map(|e| code_str(&e.code)).collect())
        .unwrap_or_default();
    let kind = f.as_ref().and_then(|f| f.kind.clone()).unwrap_or_default();
    let summary = match &f {
        Some(f) => f
            .errors
            .iter()
            .map(|e| {
                format!(
                    "{} {}: {}",
                    code_str(&e.code),
                    e.message.as_deref().unwrap_or(""),
                    clip(e.detail.as_deref().unwrap_or(""), 200)
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
        None => clip(text.trim(), 200),
    };
    let msg = format!("QuickBooks HTTP {}: {summary}", resp.status);
    let has = |c: &str| codes.iter().any(|x| x == c);
    if resp.status == 429 || text.contains("ThrottleExceeded") || has("3001") {
        return ConnectorError::RateLimited {
            system: "quickbooks",
            retry_after: after,
        };
    }
    if resp.status == 401 || has("3200") || kind.eq_ignore_ascii_case("AUTHENTICATION") {
        return ConnectorError::Unauthorized;
    }
    if resp.status >= 500 {
        return ConnectorError::Transient {
            message: msg,
            retry_after: after,
        };
    }
    if has("5010") {
        return ConnectorError::StaleVersion(msg);
    }
    if has("610") || resp.status == 404 {
        return ConnectorError::NotFound(msg);
    }
    ConnectorError::Permanent(msg)
}

/// Parses a successful body, turning faults inside a 200 and unreadable (e.g.
/// truncated) bodies into errors.
pub fn parse_ok<T: for<'de> Deserialize<'de>>(
    resp: &HttpResponse,
    what: &str,
) -> Result<T, ConnectorError> {
    if !(200..300).contains(&resp.status) || fault(&resp.body).is_some() {
        return Err(classify(resp));
    }
    serde_json::from_slice(&resp.body).map_err(|e| ConnectorError::Transient {
        message: format!(
            "QuickBooks {what} response unreadable (HTTP {}, {} bytes): {e}",
            resp.status,
            resp.body.len()
        ),
        retry_after: None::<Duration>,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderMap;

    #[test]
    fn a_customers_phone_numbers_are_read_in_order_and_empty_ones_skipped() {
        let c: QboCustomer = serde_json::from_str(
            r#"{"Id":"58","DisplayName":"Cool Cars","PrimaryEmailAddr":{"Address":"cool@x.test"},
                "PrimaryPhone":{"FreeFormNumber":"(415) 555-9933"},
                "Mobile":{"FreeFormNumber":"  "},
                "AlternatePhone":{"FreeFormNumber":"(650) 555-0123"}}"#,
        )
        .unwrap();
        let c = c.to_customer(&ConnectionId::new("us"));
        assert_eq!(
            c.phones,
            vec![
                Phone {
                    kind: "primary".into(),
                    number: "(415) 555-9933".into()
                },
                Phone {
                    kind: "alternate".into(),
                    number: "(650) 555-0123".into()
                }
            ]
        );
        let bare: QboCustomer =
            serde_json::from_str(r#"{"Id":"59","DisplayName":"Quiet"}"#).unwrap();
        assert!(bare.to_customer(&ConnectionId::new("us")).phones.is_empty());
    }

    fn resp(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: HeaderMap::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    fn fault_body(code: &str) -> String {
        format!(
            r#"{{"Fault":{{"Error":[{{"Message":"m","Detail":"d","code":"{code}","element":""}}],"type":"ValidationFault"}},"time":"2026-01-01T00:00:00Z"}}"#
        )
    }

    #[test]
    fn a_fault_is_found_in_any_case_and_nowhere_else() {
        assert!(mentions_fault(br#"{"Fault":{}}"#));
        assert!(mentions_fault(br#"{"x":1,"FAULT":{}}"#));
        assert!(mentions_fault(br#"["fault"]"#));
        assert!(!mentions_fault(br#"{"faulty":1,"Note":"no fault here"}"#));
        assert!(!mentions_fault(br#"{"Fault"#));
        assert!(!mentions_fault(b""));
    }

    #[test]
    fn classifies_faults_and_statuses() {
        assert!(matches!(
            classify(&resp(400, &fault_body("5010"))),
            ConnectorError::StaleVersion(_)
        ));
        assert!(matches!(
            classify(&resp(400, &fault_body("610"))),
            ConnectorError::NotFound(_)
        ));
        assert!(matches!(
            classify(&resp(400, &fault_body("6140"))),
            ConnectorError::Permanent(_)
        ));
        assert!(matches!(
            classify(&resp(401, "")),
            ConnectorError::Unauthorized
        ));
        let lower = r#"{"fault":{"error":[{"message":"message=AuthenticationFailed; errorCode=003200; statusCode=401","detail":"Token expired","code":"3200"}],"type":"AUTHENTICATION"}}"#;
        assert!(matches!(
            classify(&resp(401, lower)),
            ConnectorError::Unauthorized
        ));
        assert!(matches!(
            classify(&resp(429, "")),
            ConnectorError::RateLimited { .. }
        ));
        assert!(matches!(
            classify(&resp(
                400,
                r#"{"Fault":{"Error":[{"Message":"message=ThrottleExceeded","code":"003001"}],"type":"ThrottleExceeded"}}"#
            )),
            ConnectorError::RateLimited { .. }
        ));
        let e = classify(&resp(503, "<html>busy</html>"));
        assert!(matches!(e, ConnectorError::Transient { .. }) && e.is_retryable());
        assert!(matches!(
            classify(&resp(403, "")),
            ConnectorError::Permanent(_)
        ));
        assert!(matches!(
            classify(&resp(404, "")),
            ConnectorError::NotFound(_)
        ));
    }

    #[test]
    fn retry_after_is_carried() {
        let mut r = resp(429, "");
        r.headers
            .insert(reqwest::header::RETRY_AFTER, "12".parse().unwrap());
        match classify(&r) {
            ConnectorError::RateLimited { retry_after, .. } => {
                assert_eq!(retry_after, Some(Duration::from_secs(12)))
            }
            e => panic!("{e}"),
        }
    }

    #[test]
    fn faults_inside_200_and_truncated_bodies_are_errors() {
        let e = parse_ok::<InvoiceEnvelope>(&resp(200, &fault_body("5010")), "update").unwrap_err();
        assert!(matches!(e, ConnectorError::StaleVersion(_)));
        let e = parse_ok::<QueryEnvelope>(
            &resp(200, r#"{"QueryResponse":{"Invoice":[{"Id":"1","#),
            "query",
        )
        .unwrap_err();
        assert!(matches!(e, ConnectorError::Transient { .. }), "{e}");
    }

    #[test]
    fn money_is_exact() {
        let v: QboInvoice =
            serde_json::from_str(r#"{"Id":"1","TotalAmt":0.1,"Balance":12345678901234.37}"#)
                .unwrap();
        assert_eq!(v.total, Some(Decimal::from_str("0.1").unwrap()));
        assert_eq!(
            v.balance,
            Some(Decimal::from_str("12345678901234.37").unwrap())
        );
        assert_eq!(
            json_number(Decimal::from_str("12.50").unwrap()).to_string(),
            "12.5"
        );
    }

    #[test]
    fn a_payment_names_only_its_invoices() {
        let env = parse_ok::<PaymentEnvelope>(
            &resp(
                200,
                r#"{"Payment":{"Id":"77","TotalAmt":30,"Line":[
                    {"Amount":10,"LinkedTxn":[{"TxnId":"130","TxnType":"Invoice"}]},
                    {"Amount":15,"LinkedTxn":[{"TxnId":"131","TxnType":"Invoice"},{"TxnId":"9","TxnType":"CreditMemo"}]},
                    {"Amount":5,"LinkedTxn":[{"TxnId":"130","TxnType":"Invoice"}]},
                    {"Amount":0}]}}"#,
            ),
            "payment read",
        )
        .unwrap();
        assert_eq!(env.payment.invoice_ids(), vec!["130", "131"]);
    }
}
