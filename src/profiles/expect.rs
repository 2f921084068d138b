//! Expected payment dates and the cash forecast built from them.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::{PayerFigures, PayerProfilesConfig};

/// The forecast's horizons, in days from today.
pub const FORECAST_HORIZONS: [i64; 3] = [7, 30, 60];

/// When an open invoice is expected to be paid, and on what grounds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expectation {
    /// `None`: not expected at all (see `basis`).
    pub on: Option<NaiveDate>,
    pub basis: String,
}

/// Expected payment date of an invoice due on `due`, from its customer's figures; a
/// customer with no payments in the window is expected by the ledger's median.
pub fn expected_date(
    due: NaiveDate,
    today: NaiveDate,
    f: &PayerFigures,
    ledger_median: Option<i64>,
    ledger_max: Option<i64>,
    cfg: &PayerProfilesConfig,
) -> Expectation {
    let (lateness, max, whose) = match (f.median_days_late, f.max_days_late) {
        (Some(m), Some(x)) => (m, x, "this customer's"),
        _ if f.open_late > 0 => {
            return Expectation {
                on: None,
                basis: format!(
                    "no payment in the last {} days and {} invoice{} already late",
                    cfg.history_days,
                    f.open_late,
                    if f.open_late == 1 { "" } else { "s" }
                ),
            }
        }
        _ => match (ledger_median, ledger_max) {
            (Some(m), Some(x)) => (m, x, "the ledger's"),
            _ => {
                return Expectation {
                    on: Some(due.max(today)),
                    basis: "due date (no payment history in the ledger yet)".into(),
                }
            }
        },
    };
    let on = due + Duration::days(lateness);
    if on >= today {
        return Expectation {
            on: Some(on),
            basis: format!("due date {} by {whose} median", signed_days(lateness)),
        };
    }
    let overdue = (today - due).num_days();
    if overdue > max + cfg.unexpected_after_days {
        return Expectation {
            on: None,
            basis: format!(
                "{overdue} days past due: more than {} days later than {whose} latest payment ({})",
                cfg.unexpected_after_days,
                signed_days(max)
            ),
        };
    }
    // Later than usual but not beyond what has been seen: the next day is the earliest
    // it can still come.
    Expectation {
        on: Some(today + Duration::days(1)),
        basis: format!(
            "past {whose} median ({}), within {whose} latest ({})",
            signed_days(lateness),
            signed_days(max)
        ),
    }
}

fn signed_days(d: i64) -> String {
    match d {
        0 => "+0 days".into(),
        1 => "+1 day".into(),
        -1 => "-1 day".into(),
        d => format!("{d:+} days"),
    }
}

/// Expected receipts per currency within each of [`FORECAST_HORIZONS`] (cumulative:
/// the 30-day figure includes the 7-day one).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forecast {
    pub by_currency: BTreeMap<String, [Decimal; 3]>,
}

impl Forecast {
    /// Counts `amount` expected on `on` into every horizon it falls within.
    pub fn add(&mut self, today: NaiveDate, on: NaiveDate, currency: &str, amount: Decimal) {
        let ahead = (on - today).num_days();
        if ahead < 0 {
            return;
        }
        let row = self.by_currency.entry(currency.to_string()).or_default();
        for (i, h) in FORECAST_HORIZONS.iter().enumerate() {
            if ahead < *h {
                row[i] += amount;
            }
        }
    }

    /// The total expected within `days` (one of [`FORECAST_HORIZONS`]) in `currency`.
    pub fn within(&self, days: i64, currency: &str) -> Decimal {
        let Some(i) = FORECAST_HORIZONS.iter().position(|h| *h == days) else {
            return Decimal::ZERO;
        };
        self.by_currency
            .get(currency)
            .map(|r| r[i])
            .unwrap_or_default()
    }

    pub fn merge(&mut self, other: &Forecast) {
        for (c, r) in &other.by_currency {
            let row = self.by_currency.entry(c.clone()).or_default();
            for i in 0..FORECAST_HORIZONS.len() {
                row[i] += r[i];
            }
        }
    }
}
