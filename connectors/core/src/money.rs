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

    /// Money as people write it, for every text a person reads (email, plan, digest,
    /// logs, demo): `USD 36,262.55`, `JPY 1,500`, `KWD -12.345`. The plain `Display`
    /// stays ungrouped for machine-read text.
    pub fn display_human(&self) -> HumanMoney {
        HumanMoney {
            money: *self,
            with_code: true,
        }
    }

    /// The grouped amount without the code (`36,262.55`), for a phrase that already
    /// named the currency once, so it never reads "GBP 10.00 of GBP 250.00".
    pub fn amount_human(&self) -> HumanMoney {
        HumanMoney {
            money: *self,
            with_code: false,
        }
    }
}

/// [`Money`] formatted for people; see [`Money::display_human`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanMoney {
    money: Money,
    with_code: bool,
}

impl fmt::Display for HumanMoney {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let currency = self.money.currency;
        let dp = currency.minor_units() as usize;
        let rounded = currency.round(self.money.amount);
        // Sign from the rounded value: -0.001 USD is "0.00", never "-0.00".
        let sign = if rounded.is_sign_negative() && !rounded.is_zero() {
            "-"
        } else {
            ""
        };
        let digits = format!("{:.*}", dp, rounded.abs());
        let (int, frac) = match digits.split_once('.') {
            Some((i, fr)) => (i, Some(fr)),
            None => (digits.as_str(), None),
        };
        let mut grouped = String::with_capacity(int.len() + int.len() / 3);
        for (i, ch) in int.chars().enumerate() {
            if i > 0 && (int.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(ch);
        }
        if self.with_code {
            write!(f, "{currency} ")?;
        }
        f.write_str(sign)?;
        f.write_str(&grouped)?;
        if let Some(frac) = frac {
            write!(f, ".{frac}")?;
        }
        Ok(())
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

    fn human(amount: Decimal, code: &str) -> String {
        Money::new(amount, code.parse().unwrap())
            .display_human()
            .to_string()
    }

    #[test]
    fn human_money_groups_thousands_in_the_currency_minor_units() {
        assert_eq!(human(dec!(36262.55), "USD"), "USD 36,262.55");
        assert_eq!(human(dec!(1234567.5), "GBP"), "GBP 1,234,567.50");
        assert_eq!(human(dec!(999.999), "EUR"), "EUR 1,000.00");
        assert_eq!(human(dec!(100), "USD"), "USD 100.00");
        assert_eq!(human(dec!(1000), "USD"), "USD 1,000.00");
        assert_eq!(
            human(dec!(12345678901234.56), "USD"),
            "USD 12,345,678,901,234.56"
        );
    }

    #[test]
    fn human_money_zero_and_negative() {
        assert_eq!(human(Decimal::ZERO, "USD"), "USD 0.00");
        assert_eq!(human(dec!(-0.001), "USD"), "USD 0.00");
        assert_eq!(human(dec!(-1234.5), "GBP"), "GBP -1,234.50");
        assert_eq!(human(dec!(-0.5), "JPY"), "JPY -1");
        assert_eq!(human(dec!(-12), "EUR"), "EUR -12.00");
    }

    #[test]
    fn human_money_follows_zero_and_three_decimal_currencies() {
        assert_eq!(human(dec!(1500), "JPY"), "JPY 1,500");
        assert_eq!(human(dec!(1234567.4), "JPY"), "JPY 1,234,567");
        assert_eq!(human(dec!(0), "KRW"), "KRW 0");
        assert_eq!(human(dec!(1234.5), "BHD"), "BHD 1,234.500");
        assert_eq!(human(dec!(12.3456), "KWD"), "KWD 12.346");
        assert_eq!(human(dec!(1000000), "KWD"), "KWD 1,000,000.000");
    }

    #[test]
    fn human_amount_leaves_the_code_out() {
        let m = Money::new(dec!(36262.55), Currency::GBP);
        assert_eq!(m.amount_human().to_string(), "36,262.55");
        assert_eq!(
            format!(
                "{} of {}",
                Money::new(dec!(10), Currency::GBP).display_human(),
                m.amount_human()
            ),
            "GBP 10.00 of 36,262.55"
        );
        // The machine form is unchanged.
        assert_eq!(m.to_string(), "GBP 36262.55");
    }
}
