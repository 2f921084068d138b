//! Building and checking a plan's schedule: equal instalments at a fixed interval, or
//! dates and amounts as given. Each error names the option it is about.

use std::str::FromStr;

use chrono::{Duration, NaiveDate};
use overdued_connector::Currency;
use rust_decimal::Decimal;

use super::Instalment;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ScheduleError {
    /// The command-line option at fault ("--schedule", "--instalments", ...).
    pub field: &'static str,
    pub message: String,
}

fn err(field: &'static str, message: String) -> ScheduleError {
    ScheduleError { field, message }
}

/// `n` instalments `every` days apart from `first`, covering `total`: equal amounts in
/// the currency's minor units, the last taking the rounding.
pub fn even_schedule(
    total: Decimal,
    currency: Currency,
    n: u32,
    every: u32,
    first: NaiveDate,
) -> Result<Vec<Instalment>, ScheduleError> {
    if !(1..=60).contains(&n) {
        return Err(err(
            "--instalments",
            format!("{n}: expected between 1 and 60 instalments"),
        ));
    }
    if n > 1 && every == 0 {
        return Err(err(
            "--every",
            "0: instalments must be at least one day apart".into(),
        ));
    }
    let step = currency.round(total / Decimal::from(n));
    // Rounding half up could make the first n-1 exceed the total; round down then.
    let unit = Decimal::new(1, currency.minor_units());
    let each = if step * Decimal::from(n - 1) > total {
        step - unit
    } else {
        step
    };
    let mut out = Vec::new();
    for i in 0..n {
        let due = first + Duration::days(i64::from(every) * i64::from(i));
        let amount = if i + 1 == n {
            total - each * Decimal::from(n - 1)
        } else {
            each
        };
        out.push(Instalment { due, amount });
    }
    if out.iter().any(|i| i.amount <= Decimal::ZERO) {
        return Err(err(
            "--instalments",
            format!(
                "{n} instalments of {} {total} leave an instalment of nothing: use fewer",
                currency.code()
            ),
        ));
    }
    Ok(out)
}

/// `DATE:AMOUNT,DATE:AMOUNT,...` as written on the command line.
pub fn parse_schedule(s: &str, currency: Currency) -> Result<Vec<Instalment>, ScheduleError> {
    let mut out = Vec::new();
    for (i, part) in s.split(',').enumerate() {
        let part = part.trim();
        let n = i + 1;
        let Some((date, amount)) = part.split_once(':') else {
            return Err(err(
                "--schedule",
                format!("instalment {n} {part:?}: expected DATE:AMOUNT such as 2026-12-15:250.00"),
            ));
        };
        let due = NaiveDate::parse_from_str(date.trim(), "%Y-%m-%d").map_err(|_| {
            err(
                "--schedule",
                format!("instalment {n}: {date:?} is not a date as YYYY-MM-DD"),
            )
        })?;
        let amount = Decimal::from_str(amount.trim())
            .ok()
            .filter(|a| *a > Decimal::ZERO)
            .ok_or_else(|| {
                err(
                    "--schedule",
                    format!("instalment {n}: {amount:?} is not a positive amount such as 250.00"),
                )
            })?;
        if amount != currency.round(amount) {
            return Err(err(
                "--schedule",
                format!(
                    "instalment {n}: {amount} has more decimals than {} has ({})",
                    currency.code(),
                    currency.minor_units()
                ),
            ));
        }
        out.push(Instalment { due, amount });
    }
    Ok(out)
}

/// Checks a schedule against the balance it covers and the calendar.
pub fn check(
    schedule: &[Instalment],
    total: Decimal,
    currency: Currency,
    today: NaiveDate,
    max_first_days: u32,
    field: &'static str,
) -> Result<(), ScheduleError> {
    let Some(first) = schedule.first() else {
        return Err(err(field, "no instalments".into()));
    };
    for (i, w) in schedule.windows(2).enumerate() {
        if w[1].due <= w[0].due {
            return Err(err(
                field,
                format!(
                    "instalment {} ({}) is not after instalment {} ({}): dates must be in order",
                    i + 2,
                    w[1].due,
                    i + 1,
                    w[0].due
                ),
            ));
        }
    }
    if first.due <= today {
        return Err(err(
            field,
            format!(
                "the first instalment ({}) must be in the future (today is {today})",
                first.due
            ),
        ));
    }
    let latest = today + Duration::days(i64::from(max_first_days));
    if first.due > latest {
        return Err(err(
            field,
            format!(
                "the first instalment ({}) is more than daemon.max_promise_days = {max_first_days} days away (at the latest {latest})",
                first.due
            ),
        ));
    }
    let sum: Decimal = schedule.iter().map(|i| i.amount).sum();
    if sum != total {
        return Err(err(
            field,
            format!(
                "the instalments add up to {}, not the balance covered, {}",
                overdued_connector::Money::new(sum, currency).display_human(),
                overdued_connector::Money::new(total, currency).display_human()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, m, day).unwrap()
    }

    #[test]
    fn the_last_instalment_takes_the_rounding() {
        let s = even_schedule(Decimal::new(10000, 2), Currency::USD, 3, 14, d(12, 1)).unwrap();
        let amounts: Vec<String> = s.iter().map(|i| i.amount.to_string()).collect();
        assert_eq!(amounts, ["33.33", "33.33", "33.34"]);
        assert_eq!(s[2].due, d(12, 29));
        let jpy: Currency = "JPY".parse().unwrap();
        let s = even_schedule(Decimal::from(1000), jpy, 3, 7, d(12, 1)).unwrap();
        let amounts: Vec<String> = s.iter().map(|i| i.amount.to_string()).collect();
        assert_eq!(amounts, ["333", "333", "334"]);
        // Half-up rounding of each would overshoot: 0.05 in 3 rounds to 0.02 each.
        let s = even_schedule(Decimal::new(5, 2), Currency::USD, 3, 7, d(12, 1)).unwrap();
        let sum: Decimal = s.iter().map(|i| i.amount).sum();
        assert_eq!(sum, Decimal::new(5, 2));
        assert!(s.iter().all(|i| i.amount > Decimal::ZERO), "{s:?}");
    }

    #[test]
    fn bad_schedules_name_the_field() {
        let e = parse_schedule("2026-12-01:50,2026-13-01:50", Currency::USD).unwrap_err();
        assert_eq!(e.field, "--schedule");
        assert!(e.message.contains("instalment 2"), "{e}");
        assert!(parse_schedule("2026-12-01:-5", Currency::USD).is_err());
        assert!(parse_schedule("2026-12-01:5.001", Currency::USD).is_err());
        let s = parse_schedule("2026-12-01:50,2026-12-15:40", Currency::USD).unwrap();
        let e = check(
            &s,
            Decimal::from(100),
            Currency::USD,
            d(11, 20),
            30,
            "--schedule",
        )
        .unwrap_err();
        assert!(e.message.contains("add up to USD 90.00, not"), "{e}");
        let e = check(
            &s,
            Decimal::from(90),
            Currency::USD,
            d(12, 1),
            30,
            "--schedule",
        )
        .unwrap_err();
        assert!(e.message.contains("in the future"), "{e}");
        let e = check(
            &s,
            Decimal::from(90),
            Currency::USD,
            d(10, 1),
            30,
            "--schedule",
        )
        .unwrap_err();
        assert!(e.message.contains("max_promise_days"), "{e}");
        let rev = parse_schedule("2026-12-15:50,2026-12-01:40", Currency::USD).unwrap();
        let e = check(
            &rev,
            Decimal::from(90),
            Currency::USD,
            d(11, 20),
            30,
            "--schedule",
        )
        .unwrap_err();
        assert!(e.message.contains("in order"), "{e}");
        assert!(check(
            &s,
            Decimal::from(90),
            Currency::USD,
            d(11, 20),
            30,
            "--schedule"
        )
        .is_ok());
        assert_eq!(
            even_schedule(Decimal::from(90), Currency::USD, 0, 7, d(12, 1))
                .unwrap_err()
                .field,
            "--instalments"
        );
    }
}
