//! Text for people: amounts with thousands separators, short dates, the closing report.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use chrono::NaiveDate;
use overdued_connector::{Currency, Money};
use rust_decimal::Decimal;

use super::book::{Closing, PerCurrency, BUCKETS};

/// `USD`, `1234567.5` → `1,234,567.50`: grouped, in the currency's minor units (JPY
/// none), by the one formatter every text for people uses.
pub fn amount(currency: &str, d: Decimal) -> String {
    match currency.parse::<Currency>() {
        Ok(c) => Money::new(d, c).amount_human().to_string(),
        Err(_) => d.to_string(),
    }
}

/// `USD 1,234,567.50`
pub fn money(currency: &str, d: Decimal) -> String {
    match currency.parse::<Currency>() {
        Ok(c) => Money::new(d, c).display_human().to_string(),
        Err(_) => format!("{currency} {d}"),
    }
}

/// `+1,200.00`, `-35.10`, `0.00`
pub fn signed(currency: &str, d: Decimal) -> String {
    if d > Decimal::ZERO {
        format!("+{}", amount(currency, d))
    } else {
        amount(currency, d)
    }
}

/// `USD 1,200.00 · GBP 310.00`, or `none`.
pub fn per_currency(m: &PerCurrency) -> String {
    let parts: Vec<String> = m
        .iter()
        .filter(|(_, v)| !v.is_zero())
        .map(|(c, v)| money(c, *v))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(" · ")
    }
}

/// `Tue 17 Feb`
pub fn day(d: NaiveDate) -> String {
    d.format("%a %-d %b").to_string()
}

/// `Tue 17 Feb 2026`
pub fn long_day(d: NaiveDate) -> String {
    d.format("%a %-d %b %Y").to_string()
}

pub fn days_overdue(n: i64) -> String {
    match n {
        n if n < -1 => format!("due in {} days", -n),
        -1 => "due tomorrow".into(),
        0 => "due today".into(),
        1 => "1 day overdue".into(),
        n => format!("{n} days overdue"),
    }
}

fn tenths(t: i64) -> String {
    format!(
        "{}{}.{}",
        if t < 0 { "-" } else { "" },
        t.abs() / 10,
        t.abs() % 10
    )
}

/// The comparison of the two worlds at the end of the run.
pub struct Report<'a> {
    pub days: u32,
    pub seed: u64,
    pub first_day: NaiveDate,
    pub last_day: NaiveDate,
    pub with: &'a Closing,
    pub without: &'a Closing,
    pub reminders: usize,
    pub fees_charged: &'a PerCurrency,
    pub fee_count: usize,
    pub escalations: usize,
    pub promises: usize,
    pub ledger_effects: usize,
    pub duplicate_effects: usize,
    pub rate_limit_violations: u64,
}

impl Report<'_> {
    pub fn render(&self) -> String {
        let mut o = String::new();
        let (w, wo) = (self.with, self.without);
        let _ = writeln!(
            o,
            "Closing report · {} days, {} to {} · seed {}",
            self.days,
            long_day(self.first_day),
            long_day(self.last_day),
            self.seed
        );
        let _ = writeln!(
            o,
            "Compared with the same world (same seed) where nobody chased: customers there pay only as they would unprompted."
        );
        let _ = writeln!(
            o,
            "Both worlds start with {} open invoices ({}) and issue the same {} new ones ({}).",
            w.opening_invoices,
            per_currency(&w.opening_due),
            w.issued_invoices,
            per_currency(&w.issued)
        );
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "{:<28}{:>18}{:>18}{:>16}",
            "", "with overdued", "without", "difference"
        );
        let currencies: BTreeSet<&String> = w.opening_due.keys().chain(w.issued.keys()).collect();
        for (i, c) in currencies.iter().enumerate() {
            let a = w.collected.get(*c).copied().unwrap_or_default();
            let b = wo.collected.get(*c).copied().unwrap_or_default();
            let label = if i == 0 {
                format!("Collected            {c}")
            } else {
                format!("                     {c}")
            };
            let _ = writeln!(
                o,
                "{label:<28}{:>18}{:>18}{:>16}",
                amount(c, a),
                amount(c, b),
                signed(c, a - b)
            );
        }
        let _ = writeln!(
            o,
            "{:<28}{:>18}{:>18}{:>16}",
            "Invoices paid in full",
            format!(
                "{} of {}",
                w.paid_in_full,
                w.opening_invoices + w.issued_invoices
            ),
            format!(
                "{} of {}",
                wo.paid_in_full,
                wo.opening_invoices + wo.issued_invoices
            ),
            format!("{:+}", w.paid_in_full as i64 - wo.paid_in_full as i64)
        );
        let _ = writeln!(
            o,
            "{:<28}{:>18}{:>18}{:>16}",
            "Days sales outstanding",
            format!("{} days", tenths(w.dso_tenths)),
            format!("{} days", tenths(wo.dso_tenths)),
            format!(
                "{}{} days",
                if w.dso_tenths > wo.dso_tenths {
                    "+"
                } else {
                    ""
                },
                tenths(w.dso_tenths - wo.dso_tenths)
            )
        );
        let _ = writeln!(
            o,
            "  DSO here = the average, over every invoice open on day 1 or issued since, of the days from issue to payment"
        );
        let _ = writeln!(
            o,
            "  (a part-payment counts for its share; whatever is still unpaid counts up to the last day)."
        );
        let _ = writeln!(
            o,
            "  It counts in days, not money, so three currencies can be averaged without exchange rates."
        );
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "Still owed on {}, by days past due (late-fee invoices apart):",
            long_day(self.last_day)
        );
        let _ = write!(o, "{:<20}", "");
        for (name, _) in BUCKETS {
            let _ = write!(o, "{name:>13}");
        }
        let _ = writeln!(o, "{:>14}", "total");
        for c in &currencies {
            for (label, cl) in [("with", w), ("without", wo)] {
                let row = cl.ageing.get(*c).copied().unwrap_or_default();
                let _ = write!(o, "{:<20}", format!("{c} {label}"));
                for v in row {
                    let _ = write!(o, "{:>13}", amount(c, v));
                }
                let total: Decimal = row.iter().copied().sum();
                let _ = writeln!(o, "{:>14}", amount(c, total));
            }
        }
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "What overdued did: {} reminders, {} late fees ({}; {} paid so far), {} promise recorded, {} escalations to the owner.",
            self.reminders,
            self.fee_count,
            per_currency(self.fees_charged),
            per_currency(&w.fees_collected),
            self.promises,
            self.escalations
        );
        let _ = writeln!(
            o,
            "Exactly once: the simulator's ledger holds {} effects, {} of them duplicates; {} rate-limit violations.",
            self.ledger_effects, self.duplicate_effects, self.rate_limit_violations
        );
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn amounts_group_thousands_and_keep_cents() {
        assert_eq!(amount("USD", dec!(0)), "0.00");
        assert_eq!(amount("USD", dec!(999.5)), "999.50");
        assert_eq!(amount("USD", dec!(1000)), "1,000.00");
        assert_eq!(amount("USD", dec!(4554.613)), "4,554.61");
        assert_eq!(amount("USD", dec!(1234567.89)), "1,234,567.89");
        assert_eq!(amount("USD", dec!(-1234.5)), "-1,234.50");
        assert_eq!(signed("USD", dec!(12)), "+12.00");
        assert_eq!(signed("USD", dec!(-12)), "-12.00");
        assert_eq!(amount("JPY", dec!(1234567)), "1,234,567");
        assert_eq!(money("GBP", dec!(36262.55)), "GBP 36,262.55");
        assert_eq!(money("KWD", dec!(1234.5)), "KWD 1,234.500");
    }

    #[test]
    fn tenths_of_days_print_with_one_decimal() {
        assert_eq!(tenths(724), "72.4");
        assert_eq!(tenths(-95), "-9.5");
        assert_eq!(tenths(-5), "-0.5");
        assert_eq!(days_overdue(-3), "due in 3 days");
        assert_eq!(days_overdue(7), "7 days overdue");
    }
}
