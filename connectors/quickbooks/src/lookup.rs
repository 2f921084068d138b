//! Looking in a QuickBooks company for the effect of an earlier attempt, before an
//! action is carried out again past the idempotency window (Intuit keeps a `requestid`
//! for an undocumented time; a retry after it could act twice).
//!
//! - A reminder went out when the invoice's `EmailStatus` is `EmailSent` and its
//!   `DeliveryInfo.DeliveryTime` is at or after the intent.
//! - A fee posted as its own invoice is an invoice of the same customer created since
//!   the intent whose `PrivateNote` names the original (`Late fee on invoice N
//!   (QuickBooks Id X)`, written by `create_late_fee`). A fee posted as a line needs no
//!   lookup: that write re-reads the invoice and adds the line only when it is missing.
//! - A note is there when the invoice's `PrivateNote` has it as a line.

use chrono::{DateTime, SecondsFormat, Utc};
use overdued_connector::{ConnectorError, EffectFound, PriorEffect};
use reqwest::header::ACCEPT;
use serde_json::Value;

use crate::connector::QuickBooksConnector;
use crate::wire::parse_ok;

const MINOR_VERSION: &str = "75";

impl QuickBooksConnector {
    pub(crate) async fn look_up(
        &self,
        effect: &PriorEffect,
    ) -> Result<EffectFound, ConnectorError> {
        Ok(match effect {
            PriorEffect::Reminder { invoice_id, since } => {
                let inv = self.invoice_value(invoice_id).await?;
                found(delivered_since(&inv, *since), None)
            }
            PriorEffect::Note { invoice_id, text } => {
                let inv = self.invoice_value(invoice_id).await?;
                found(has_note(&inv, text), None)
            }
            PriorEffect::LateFee {
                separate: false, ..
            } => EffectFound::Unknown,
            PriorEffect::LateFee {
                invoice_id,
                invoice_number,
                customer_id,
                since,
                ..
            } => {
                let rows = self.fee_candidates(customer_id, *since).await?;
                match rows
                    .iter()
                    .find(|inv| names_original(inv, invoice_number, invoice_id))
                {
                    Some(inv) => EffectFound::Found {
                        created_id: inv["Id"].as_str().map(str::to_string),
                    },
                    None => EffectFound::NotFound,
                }
            }
        })
    }

    async fn invoice_value(&self, id: &str) -> Result<Value, ConnectorError> {
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(ConnectorError::Permanent(format!(
                "QuickBooks invoice id {id:?} is not an id"
            )));
        }
        let url = format!("{}/invoice/{id}", self.company_url());
        let v: Value = self
            .runtime()
            .execute(
                "read_invoice",
                |c| {
                    c.get(&url)
                        .query(&[("minorversion", MINOR_VERSION)])
                        .header(ACCEPT, "application/json")
                },
                |r| parse_ok::<Value>(&r, "invoice read"),
            )
            .await?;
        Ok(v["Invoice"].clone())
    }

    /// The customer's invoices created since `since` (fee invoices are few and new).
    async fn fee_candidates(
        &self,
        customer_id: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<Value>, ConnectorError> {
        if customer_id.is_empty() || !customer_id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(ConnectorError::Permanent(format!(
                "QuickBooks customer id {customer_id:?} is not an id"
            )));
        }
        // A minute of slack: the company's clock and ours differ a little.
        let from =
            (since - chrono::Duration::minutes(1)).to_rfc3339_opts(SecondsFormat::Secs, true);
        let statement = format!(
            "SELECT * FROM Invoice WHERE CustomerRef = '{customer_id}' AND MetaData.CreateTime >= '{from}' MAXRESULTS 1000"
        );
        let url = format!("{}/query", self.company_url());
        let v: Value = self
            .runtime()
            .execute(
                "query",
                |c| {
                    c.get(&url)
                        .query(&[
                            ("query", statement.as_str()),
                            ("minorversion", MINOR_VERSION),
                        ])
                        .header(ACCEPT, "application/json")
                },
                |r| parse_ok::<Value>(&r, "fee invoice lookup"),
            )
            .await?;
        Ok(v["QueryResponse"]["Invoice"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }
}

fn found(yes: bool, created_id: Option<String>) -> EffectFound {
    if yes {
        EffectFound::Found { created_id }
    } else {
        EffectFound::NotFound
    }
}

fn delivered_since(inv: &Value, since: DateTime<Utc>) -> bool {
    let sent = inv["EmailStatus"]
        .as_str()
        .is_some_and(|s| s.eq_ignore_ascii_case("EmailSent"));
    let at = inv["DeliveryInfo"]["DeliveryTime"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    // DeliveryTime has whole seconds; the intent has more.
    sent && at.is_some_and(|at| at >= since - chrono::Duration::seconds(1))
}

/// Whether the private note holds the text: a note of several lines counts when all of
/// them are there in order; whitespace (line ends, indentation) may differ.
fn has_note(inv: &Value, text: &str) -> bool {
    let want = squeeze(text);
    !want.is_empty()
        && inv["PrivateNote"].as_str().is_some_and(|n| {
            let have = squeeze(n);
            have == want
                || have.starts_with(&format!("{want} "))
                || have.ends_with(&format!(" {want}"))
                || have.contains(&format!(" {want} "))
        })
}

fn squeeze(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn names_original(inv: &Value, number: &str, id: &str) -> bool {
    let live = !inv["PrivateNote"]
        .as_str()
        .is_some_and(|n| n.contains("Voided"));
    let named = inv["PrivateNote"].as_str().is_some_and(|n| {
        n.contains(&format!(
            "Late fee on invoice {number} (QuickBooks Id {id})"
        ))
    });
    live && named
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_delivery_before_the_intent_is_not_this_reminder() {
        let since: DateTime<Utc> = "2026-01-05T10:00:00Z".parse().unwrap();
        let inv = |t: &str| json!({"EmailStatus": "EmailSent", "DeliveryInfo": {"DeliveryType": "Email", "DeliveryTime": t}});
        assert!(delivered_since(&inv("2026-01-05T02:00:30-08:00"), since));
        assert!(!delivered_since(&inv("2026-01-05T01:00:00-08:00"), since));
        assert!(!delivered_since(&json!({"EmailStatus": "NotSet"}), since));
    }

    #[test]
    fn a_fee_invoice_is_recognised_by_its_private_note() {
        let fee = json!({"Id": "77", "PrivateNote": "[overdued-late-fee] Late fee on invoice 1042 (QuickBooks Id 130)"});
        assert!(names_original(&fee, "1042", "130"));
        assert!(!names_original(&fee, "1043", "131"));
        assert!(!names_original(&json!({"Id": "78"}), "1042", "130"));
    }

    #[test]
    fn notes_match_whole_lines() {
        let inv = json!({"PrivateNote": "first\noverdued: escalated\n"});
        assert!(has_note(&inv, "overdued: escalated"));
        assert!(!has_note(&inv, "overdued"));
        let multi = json!({"PrivateNote": "first\nEscalated:\n  owes 40.00\nlast"});
        assert!(has_note(&multi, "Escalated:\nowes 40.00"));
        assert!(!has_note(&multi, "Escalated:\nowes 41.00"));
    }
}
