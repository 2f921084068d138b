//! Receivables by ageing bucket, the way collection reports group them.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use overdued_connector::{Currency, InvoiceSnapshot, Money};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// The usual ageing buckets: not yet due, then by days past the due date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Bucket {
    #[serde(rename = "current")]
    Current,
    #[serde(rename = "1-30")]
    D1To30,
    #[serde(rename = "31-60")]
    D31To60,
    #[serde(rename = "61-90")]
    D61To90,
    #[serde(rename = "90+")]
    Over90,
}

impl Bucket {
    pub const ALL: [Bucket; 5] = [
        Bucket::Current,
        Bucket::D1To30,
        Bucket::D31To60,
        Bucket::D61To90,
        Bucket::Over90,
    ];

    /// The bucket of an invoice `days_overdue` days past due (zero or negative: not overdue).
    pub fn of(days_overdue: i64) -> Bucket {
        match days_overdue {
            i64::MIN..=0 => Bucket::Current,
            1..=30 => Bucket::D1To30,
            31..=60 => Bucket::D31To60,
            61..=90 => Bucket::D61To90,
            _ => Bucket::Over90,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Bucket::Current => "current",
            Bucket::D1To30 => "1-30",
            Bucket::D31To60 => "31-60",
            Bucket::D61To90 => "61-90",
            Bucket::Over90 => "90+",
        }
    }

    pub fn is_overdue(&self) -> bool {
        *self != Bucket::Current
    }
}

/// Count and amount due of the invoices in one bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub count: u64,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
}

/// Open receivables of one connection: currency code → bucket → tally. Amounts in
/// different currencies are never added together.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ageing {
    pub by_currency: BTreeMap<String, BTreeMap<Bucket, Tally>>,
}

impl Ageing {
    /// Counts an invoice if it is open with something left to pay.
    pub fn add(&mut self, inv: &InvoiceSnapshot, today: NaiveDate) {
        if !inv.status.is_open() || inv.amount_due <= Decimal::ZERO {
            return;
        }
        let bucket = Bucket::of(inv.days_overdue(today));
        let t = self
            .by_currency
            .entry(inv.currency.code().to_string())
            .or_default()
            .entry(bucket)
            .or_default();
        t.count += 1;
        t.amount += inv.amount_due;
    }

    /// Everything open in one currency.
    pub fn open(&self, currency: &str) -> Tally {
        self.sum(currency, |_| true)
    }

    /// Everything past due in one currency.
    pub fn overdue(&self, currency: &str) -> Tally {
        self.sum(currency, Bucket::is_overdue)
    }

    fn sum(&self, currency: &str, keep: impl Fn(&Bucket) -> bool) -> Tally {
        let mut out = Tally::default();
        if let Some(m) = self.by_currency.get(currency) {
            for (b, t) in m {
                if keep(b) {
                    out.count += t.count;
                    out.amount += t.amount;
                }
            }
        }
        out
    }

    /// One line for logs: `USD open 12 (4,210.00): current 3 (900.00), 1-30 ...`.
    pub fn summary(&self) -> String {
        if self.by_currency.is_empty() {
            return "nothing open".to_string();
        }
        let mut parts = Vec::new();
        for (cur, m) in &self.by_currency {
            let open = self.open(cur);
            let overdue = self.overdue(cur);
            // The line names the currency once; amounts are grouped as people write them.
            let currency = cur.parse::<Currency>().ok();
            let amount = |a: Decimal| match currency {
                Some(c) => Money::new(a, c).amount_human().to_string(),
                None => a.to_string(),
            };
            let buckets: Vec<String> = Bucket::ALL
                .iter()
                .map(|b| {
                    let t = m.get(b).cloned().unwrap_or_default();
                    format!("{} {} ({})", b.as_str(), t.count, amount(t.amount))
                })
                .collect();
            parts.push(format!(
                "{cur} open {} ({}), overdue {} ({}): {}",
                open.count,
                amount(open.amount),
                overdue.count,
                amount(overdue.amount),
                buckets.join(", ")
            ));
        }
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use overdued_connector::{ConnectionId, Currency, CustomerRef, InvoiceStatus, System};
    use rust_decimal_macros::dec;

    fn inv(
        due: NaiveDate,
        amount: Decimal,
        currency: Currency,
        status: InvoiceStatus,
    ) -> InvoiceSnapshot {
        InvoiceSnapshot {
            connection: ConnectionId::new("c"),
            system: System::Xero,
            remote_id: "1".into(),
            number: None,
            customer: CustomerRef {
                id: "k".into(),
                name: "K".into(),
                email: None,
            },
            currency,
            total: amount,
            amount_due: amount,
            issue_date: due,
            due_date: due,
            status,
            updated_at: DateTime::<Utc>::UNIX_EPOCH,
            version: None,
            memo: String::new(),
            is_fee_invoice: false,
            pay_url: None,
            paid_on: None,
        }
    }

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn bucket_edges() {
        assert_eq!(Bucket::of(-10), Bucket::Current);
        assert_eq!(Bucket::of(0), Bucket::Current);
        assert_eq!(Bucket::of(1), Bucket::D1To30);
        assert_eq!(Bucket::of(30), Bucket::D1To30);
        assert_eq!(Bucket::of(31), Bucket::D31To60);
        assert_eq!(Bucket::of(60), Bucket::D31To60);
        assert_eq!(Bucket::of(61), Bucket::D61To90);
        assert_eq!(Bucket::of(90), Bucket::D61To90);
        assert_eq!(Bucket::of(91), Bucket::Over90);
        assert_eq!(Bucket::of(4000), Bucket::Over90);
    }

    #[test]
    fn tallies_per_currency_and_skips_closed_or_settled() {
        let today = d(2026, 5, 1);
        let mut a = Ageing::default();
        let usd = Currency::USD;
        let eur: Currency = "EUR".parse().unwrap();
        a.add(
            &inv(d(2026, 5, 1), dec!(100.10), usd, InvoiceStatus::Open),
            today,
        );
        a.add(
            &inv(d(2026, 4, 30), dec!(50), usd, InvoiceStatus::Open),
            today,
        );
        a.add(
            &inv(d(2026, 4, 1), dec!(25.5), usd, InvoiceStatus::Open),
            today,
        ); // 30 days
        a.add(
            &inv(d(2026, 1, 1), dec!(7), usd, InvoiceStatus::Open),
            today,
        ); // 120 days
        a.add(
            &inv(d(2026, 3, 1), dec!(9), eur, InvoiceStatus::Open),
            today,
        ); // 61 days
        a.add(
            &inv(d(2026, 1, 1), dec!(1000), usd, InvoiceStatus::Paid),
            today,
        );
        a.add(
            &inv(d(2026, 1, 1), dec!(1000), usd, InvoiceStatus::Draft),
            today,
        );
        a.add(
            &inv(d(2026, 1, 1), dec!(0), usd, InvoiceStatus::Open),
            today,
        );

        let u = &a.by_currency["USD"];
        assert_eq!(
            u[&Bucket::Current],
            Tally {
                count: 1,
                amount: dec!(100.10)
            }
        );
        assert_eq!(
            u[&Bucket::D1To30],
            Tally {
                count: 2,
                amount: dec!(75.5)
            }
        );
        assert_eq!(
            u[&Bucket::Over90],
            Tally {
                count: 1,
                amount: dec!(7)
            }
        );
        assert!(!u.contains_key(&Bucket::D31To60));
        assert_eq!(
            a.open("USD"),
            Tally {
                count: 4,
                amount: dec!(182.60)
            }
        );
        assert_eq!(
            a.overdue("USD"),
            Tally {
                count: 3,
                amount: dec!(82.5)
            }
        );
        assert_eq!(
            a.overdue("EUR"),
            Tally {
                count: 1,
                amount: dec!(9)
            }
        );
        assert_eq!(a.by_currency["EUR"][&Bucket::D61To90].count, 1);
        assert_eq!(a.open("GBP"), Tally::default());
        let s = a.summary();
        assert!(s.contains("USD open 4 (182.60), overdue 3 (82.50)"), "{s}");
        assert!(s.contains("90+ 1 (7.00)"), "{s}");
    }

    #[test]
    fn serialises_with_bucket_names() {
        let mut a = Ageing::default();
        a.add(
            &inv(
                d(2026, 1, 1),
                dec!(3.00),
                Currency::USD,
                InvoiceStatus::Open,
            ),
            d(2026, 1, 5),
        );
        let j = serde_json::to_value(&a).unwrap();
        assert_eq!(j["by_currency"]["USD"]["1-30"]["amount"], "3.00");
        let back: Ageing = serde_json::from_value(j).unwrap();
        assert_eq!(back, a);
    }

    #[test]
    fn the_summary_writes_amounts_as_people_do_and_names_the_currency_once() {
        let mut a = Ageing::default();
        a.add(
            &inv(
                d(2026, 1, 1),
                dec!(36262.55),
                Currency::USD,
                InvoiceStatus::Open,
            ),
            d(2026, 1, 20),
        );
        let s = a.summary();
        assert!(
            s.starts_with("USD open 1 (36,262.55), overdue 1 (36,262.55): "),
            "{s}"
        );
        assert!(s.contains("1-30 1 (36,262.55)"), "{s}");
        assert_eq!(s.matches("USD").count(), 1, "{s}");
    }
}
