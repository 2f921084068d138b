//! Who agreed to receive text messages: one record per (connection, customer), with
//! the number, what the customer agreed to and how (the evidence), when it was
//! recorded, and whether and how they opted out since. Kept in the store, durable.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A customer's consent to text messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmsConsent {
    pub connection: String,
    pub customer_id: String,
    /// As the ledger named the customer when consent was recorded.
    pub customer_name: String,
    /// E.164, e.g. "+447700900123".
    pub phone: String,
    /// Who agreed, when and how ("signed the order form of 2026-03-01").
    pub evidence: String,
    pub recorded_at: DateTime<Utc>,
    #[serde(default)]
    pub opted_out: Option<OptOut>,
}

/// How a customer stopped text messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptOut {
    pub at: DateTime<Utc>,
    /// "replied STOP", "Twilio error 21610 (unsubscribed recipient)", "by the owner".
    pub how: String,
}

impl SmsConsent {
    /// Whether a message may go to this customer now.
    pub fn active(&self) -> bool {
        self.opted_out.is_none()
    }
}

/// Checks an E.164 number: "+", a country code not starting with 0, 8 to 15 digits in
/// all.
pub fn valid_e164(v: &str) -> Result<(), String> {
    let digits = v.strip_prefix('+').ok_or_else(|| {
        format!("{v:?} is not an E.164 number: it starts with + and the country code, e.g. +447700900123")
    })?;
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "{v:?} is not an E.164 number: only digits after the +, no spaces or punctuation"
        ));
    }
    if digits.starts_with('0') {
        return Err(format!(
            "{v:?} is not an E.164 number: country codes do not start with 0"
        ));
    }
    if !(8..=15).contains(&digits.len()) {
        return Err(format!(
            "{v:?} is not an E.164 number: {} digits, where 8 to 15 are allowed",
            digits.len()
        ));
    }
    Ok(())
}

/// The phone a message may go to for this customer, or why none may.
pub fn reachable(consent: Option<&SmsConsent>) -> Result<&str, String> {
    match consent {
        None => Err("no SMS consent recorded for the customer".into()),
        Some(c) => match &c.opted_out {
            Some(o) => Err(format!(
                "the customer opted out of text messages ({}, {})",
                o.how,
                o.at.format("%Y-%m-%d")
            )),
            None => Ok(&c.phone),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164() {
        assert!(valid_e164("+447700900123").is_ok());
        assert!(valid_e164("+15005550006").is_ok());
        assert!(valid_e164("447700900123").is_err());
        assert!(valid_e164("+44 7700 900123").is_err());
        assert!(valid_e164("+0447700900").is_err());
        assert!(valid_e164("+1234567").is_err());
        assert!(valid_e164("+1234567890123456").is_err());
    }
}
