//! Looking in a Xero organisation for the effect of an earlier attempt, before an action
//! is carried out again past the idempotency window (Xero keeps an `Idempotency-Key`
//! for an undocumented time; a retry after it could act twice).
//!
//! - A reminder went out when the invoice's History has a "Sent" record at or after the
//!   intent (`SentToContact` alone says only that it was sent some time).
//! - A fee posted as its own invoice is a live invoice whose `Reference` names the
//!   original (`fee_reference`), dated no earlier than the intent's day (a fee charged
//!   30 days before carries the same reference). A fee posted as a line needs no lookup:
//!   that write re-reads the invoice and adds the line only when it is missing.
//! - A note is a History record whose Details are the note's text.

use chrono::{DateTime, Duration, Utc};
use overdued_connector::{ConnectorError, EffectFound, PriorEffect};
use serde_json::Value;

use crate::connector::{fee_reference, note_details, path_segment, Call, XeroConnector};
use crate::dates::{parse_calendar_date, parse_instant};
use crate::errors::malformed;

impl XeroConnector {
    pub(crate) async fn look_up(
        &self,
        effect: &PriorEffect,
    ) -> Result<EffectFound, ConnectorError> {
        Ok(match effect {
            PriorEffect::Reminder { invoice_id, since } => {
                let recs = self.history(invoice_id).await?;
                found(recs.iter().any(|r| sent_since(r, *since)))
            }
            PriorEffect::Note { invoice_id, text } => {
                let want = note_details(text);
                let recs = self.history(invoice_id).await?;
                found(
                    !want.is_empty()
                        && recs
                            .iter()
                            .any(|r| r["Details"].as_str().is_some_and(|d| d.trim() == want)),
                )
            }
            PriorEffect::LateFee {
                separate: false, ..
            } => EffectFound::Unknown,
            PriorEffect::LateFee {
                invoice_number,
                since,
                ..
            } => {
                let reference = fee_reference(invoice_number);
                if reference.contains('"') {
                    return Err(ConnectorError::Permanent(format!(
                        "invoice number {invoice_number:?} cannot be searched for"
                    )));
                }
                let op = "find Xero late-fee invoice";
                let mut call = Call::get(op, self.settings().api("Invoices"));
                call.query
                    .push(("where", format!("Reference==\"{reference}\"")));
                let invoices: Vec<Value> = self
                    .call(call, |r| {
                        let v: Value =
                            serde_json::from_slice(&r.body).map_err(|e| malformed(op, e))?;
                        Ok(v["Invoices"].as_array().cloned().unwrap_or_default())
                    })
                    .await?;
                match invoices
                    .iter()
                    .find(|i| is_fee_since(i, &reference, *since))
                {
                    Some(i) => EffectFound::Found {
                        created_id: i["InvoiceID"].as_str().map(str::to_string),
                    },
                    None => EffectFound::NotFound,
                }
            }
        })
    }

    async fn history(&self, invoice_id: &str) -> Result<Vec<Value>, ConnectorError> {
        let op = "read Xero invoice history";
        let url = self
            .settings()
            .api(&format!("Invoices/{}/History", path_segment(invoice_id)));
        self.call(Call::get(op, url), |r| {
            let v: Value = serde_json::from_slice(&r.body).map_err(|e| malformed(op, e))?;
            Ok(v["HistoryRecords"].as_array().cloned().unwrap_or_default())
        })
        .await
    }
}

fn found(yes: bool) -> EffectFound {
    if yes {
        EffectFound::Found { created_id: None }
    } else {
        EffectFound::NotFound
    }
}

fn sent_since(rec: &Value, since: DateTime<Utc>) -> bool {
    let sent = rec["Changes"]
        .as_str()
        .is_some_and(|c| c.trim().eq_ignore_ascii_case("sent"));
    let at = rec["DateUTC"].as_str().and_then(|d| parse_instant(d).ok());
    // History times have whole seconds; the intent has more.
    sent && at.is_some_and(|at| at >= since - Duration::seconds(1))
}

fn is_fee_since(inv: &Value, reference: &str, since: DateTime<Utc>) -> bool {
    let live = !matches!(inv["Status"].as_str(), Some("DELETED" | "VOIDED"));
    let named = inv["Reference"].as_str() == Some(reference);
    let dated = inv["DateString"]
        .as_str()
        .or(inv["Date"].as_str())
        .and_then(|d| {
            parse_calendar_date(d)
                .ok()
                .or_else(|| parse_instant(d).ok().map(|t| t.date_naive()))
        })
        // The fee invoice is dated the business's day, which may be a day behind UTC.
        .is_some_and(|d| d >= since.date_naive() - Duration::days(1));
    live && named && dated
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_a_send_after_the_intent_counts() {
        let since: DateTime<Utc> = "2026-01-05T10:00:00Z".parse().unwrap();
        let after = json!({"Changes": "Sent", "DateUTC": "/Date(1767607200000+0000)/"});
        let before = json!({"Changes": "Sent", "DateUTC": "/Date(1767600000000+0000)/"});
        let note = json!({"Changes": "Note", "DateUTC": "/Date(1767607200000+0000)/"});
        assert!(sent_since(&after, since));
        assert!(!sent_since(&before, since));
        assert!(!sent_since(&note, since));
    }

    #[test]
    fn a_fee_of_an_earlier_month_is_not_this_one() {
        let since: DateTime<Utc> = "2026-02-04T10:00:00Z".parse().unwrap();
        let r = fee_reference("INV-0042");
        let fee = |d: &str, s: &str| json!({"InvoiceID": "x", "Reference": r, "Status": s, "DateString": d});
        assert!(is_fee_since(
            &fee("2026-02-04T00:00:00", "AUTHORISED"),
            &r,
            since
        ));
        assert!(!is_fee_since(
            &fee("2026-01-05T00:00:00", "AUTHORISED"),
            &r,
            since
        ));
        assert!(!is_fee_since(
            &fee("2026-02-04T00:00:00", "VOIDED"),
            &r,
            since
        ));
    }
}
