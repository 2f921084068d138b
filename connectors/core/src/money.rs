//! Money: an exact decimal amount with its ISO 4217 currency. Never a float.

use std::fmt;
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

/// An ISO 4217 currency code, three upper-case ASCII letters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid currency code {0:?}: expected three letters such as USD, GBP or EUR")]
pub struct CurrencyError(pub String);

impl Currency {
    pub const USD: Currency = Currency(*b"USD");
    pub const GBP: Currency = Currency(*b"GBP");
    pub const EUR: Currency = Currency(*b"EUR");

    pub fn code(&self) -> &str {
        // Constructed only from ASCII letters.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }

    /// Digits after the decimal point in the currency's minor unit (ISO 4217).
    pub fn minor_units(&self) -> u32 {
        match self.code() {
            "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF"
            | "UGX" | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
            "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
            _ => 2,
        }
    }

    /// Rounds an amount to this currency's minor unit, half away from zero
    /// (the commercial rounding accounting systems use).
    pub fn round(&self, amount: Decimal) -> Decimal {
        amount.round_dp_with_strategy(self.minor_units(), RoundingStrategy::MidpointAwayFromZero)
    }
}

impl FromStr for Currency {
    type Err = CurrencyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.trim().as_bytes();
        if b.len() == 3 && b.iter().all(|c| c.is_ascii_alphabetic()) {
            Ok(Currency([
                b[0].to_ascii_uppercase(),
                b[1].to_ascii_uppercase(),
                b[2].to_ascii_uppercase(),
            ]))
        } else {
            Err(CurrencyError(s.to_string()))
        }
    }
}

impl TryFrom<String> for Currency {
    type Error = CurrencyError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.code().to_string()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// An exact amount in one currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub currency: Currency,
}

impl Money {
    pub fn new(amount: Decimal, currency: Currency) -> Self {
        Money { amount, currency }
    }

    pub fn zero(currency: Currency) -> Self {
        Money {
            amount: Decimal::ZERO,
            currency,
        }
    }

    /// The same amount rounded to the currency's minor unit.
    pub fn rounded(&self) -> Money {
        Money {
            amount: self.currency.round(self.amount),
            currency: self.currency,
        }
    }

    pub fn is_positive(&self) -> bool {
        self.amount > Decimal::ZERO
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dp = self.currency.minor_units();
        let a = self.currency.round(self.amount);
        write!(f, "{} {:.*}", self.currency, dp as usize, a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn currency_parses_and_normalises() {
        assert_eq!("gbp".parse::<Currency>().unwrap(), Currency::GBP);
        assert!("GB".parse::<Currency>().is_err());
        assert!("G1P".parse::<Currency>().is_err());
        let json = serde_json::to_string(&Currency::EUR).unwrap();
        assert_eq!(json, "\"EUR\"");
        assert!(serde_json::from_str::<Currency>("\"EURO\"").is_err());
    }

    #[test]
    fn rounding_uses_minor_units() {
        let jpy: Currency = "JPY".parse().unwrap();
        let kwd: Currency = "KWD".parse().unwrap();
        assert_eq!(Currency::USD.round(dec!(10.005)), dec!(10.01));
        assert_eq!(Currency::USD.round(dec!(-10.005)), dec!(-10.01));
        assert_eq!(jpy.round(dec!(100.5)), dec!(101));
        assert_eq!(kwd.round(dec!(1.23456)), dec!(1.235));
    }

    #[test]
    fn money_displays_in_minor_units_and_round_trips() {
        let m = Money::new(dec!(1234.5), Currency::GBP);
        assert_eq!(m.to_string(), "GBP 1234.50");
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#"{"amount":"1234.5","currency":"GBP"}"#);
        assert_eq!(serde_json::from_str::<Money>(&json).unwrap(), m);
    }
}
