//! Late fees: the models, their configuration and [`quote_fee`], a pure function from an
//! invoice's state on a date to the fee due for one period.
//!
//! Fees are charged in periods. Period 0 starts on the late-fee step's day (or at the end
//! of the grace period, whichever is later); with `every_days` a new period starts every
//! N days after that. The planner derives the fee's idempotency key from the period index,
//! so however often it runs, each period is charged at most once.
//!
//! Fixed and percentage fees are charged afresh each period. Interest models are
//! cumulative: each charge is the interest accrued from the due date to today (plus any
//! statutory compensation) minus every fee already charged, so the total never exceeds
//! what is owed and a payment lowers the interest from the day it was made.
//! Interest is simple, on a 365-day year, charged on the balance outstanding each day
//! after the due date; where fees are posted as lines on the original invoice they are
//! taken out of that balance first, so interest is never charged on a fee.

use chrono::{Datelike, NaiveDate};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use overdued_connector::{Currency, FeePosting, Money};

use crate::engine::dates::ConfigDate;

/// Which way a late fee is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeeModelKind {
    /// `amount` in the invoice's currency, each period.
    Fixed,
    /// `percent` of the amount due, each period.
    Percentage,
    /// `percent` a year, accruing daily on the outstanding balance.
    Interest,
    /// UK Late Payment of Commercial Debts (Interest) Act 1998: reference (base) rate + 8 %
    /// a year, plus fixed compensation of GBP 40 / 70 / 100 by debt size.
    StatutoryUk,
    /// EU Late Payment Directive 2011/7/EU: reference (ECB) rate + 8 points a year, plus
    /// EUR 40 compensation.
    StatutoryEu,
}

/// The `late_fee` table of a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LateFeeConfig {
    pub model: FeeModelKind,
    /// For `fixed`: the fee, in the invoice's currency.
    #[serde(default)]
    pub amount: Option<Decimal>,
    /// For `percentage`: percent of the amount due; for `interest`: percent a year.
    #[serde(default)]
    pub percent: Option<Decimal>,
    /// For the statutory models: reference rates, each in force from its date.
    #[serde(default)]
    pub reference_rates: Vec<ReferenceRateConfig>,
    /// Days after the due date during which no fee is charged.
    #[serde(default)]
    pub grace_days: u32,
    /// Charge again every N days; omitted: charge once.
    #[serde(default)]
    pub every_days: Option<u32>,
    /// Most that all fees on one invoice may add up to, in the invoice's currency.
    #[serde(default)]
    pub cap_amount: Option<Decimal>,
    /// Most that all fees on one invoice may add up to, as a percentage of its total.
    #[serde(default)]
    pub cap_percent_of_invoice: Option<Decimal>,
    /// No fee on invoices whose total is below this.
    #[serde(default)]
    pub min_invoice_amount: Option<Decimal>,
    /// A separate fee invoice (default, legal everywhere) or a line on the original.
    #[serde(default)]
    pub posting: FeePosting,
}

/// One row of a reference-rate table: `percent` is in force from `from` on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceRateConfig {
    pub from: ConfigDate,
    pub percent: Decimal,
}

/// How a fee is computed, with its parameters checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeeModel {
    Fixed {
        amount: Decimal,
    },
    Percentage {
        percent: Decimal,
    },
    Interest {
        annual_percent: Decimal,
    },
    Statutory {
        regime: Statutory,
        rates: Vec<(NaiveDate, Decimal)>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statutory {
    Uk,
    Eu,
}

/// A compiled late-fee policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LateFee {
    pub model: FeeModel,
    pub grace_days: u32,
    pub every_days: Option<u32>,
    pub cap_amount: Option<Decimal>,
    pub cap_percent_of_invoice: Option<Decimal>,
    pub min_invoice_amount: Option<Decimal>,
    pub posting: FeePosting,
}

/// The points statutory interest adds to the reference rate (UK and EU alike).
const STATUTORY_MARGIN: Decimal = Decimal::from_parts(8, 0, 0, false, 0);

impl LateFeeConfig {
    /// Checks the table; errors are `(field, message)` relative to the table.
    pub fn compile(&self) -> Result<LateFee, Vec<(String, String)>> {
        let mut errs = Vec::new();
        let need = |errs: &mut Vec<(String, String)>, v: Option<Decimal>, field: &str| -> Decimal {
            match v {
                Some(v) if v > Decimal::ZERO => v,
                Some(_) => {
                    errs.push((field.to_string(), "must be greater than zero".to_string()));
                    Decimal::ZERO
                }
                None => {
                    errs.push((
                        field.to_string(),
                        format!("is required for model {:?}", model_name(self.model)),
                    ));
                    Decimal::ZERO
                }
            }
        };
        let forbid = |errs: &mut Vec<(String, String)>, present: bool, field: &str| {
            if present {
                errs.push((
                    field.to_string(),
                    format!("does not apply to model {:?}", model_name(self.model)),
                ));
            }
        };
        let model = match self.model {
            FeeModelKind::Fixed => {
                forbid(&mut errs, self.percent.is_some(), "percent");
                forbid(
                    &mut errs,
                    !self.reference_rates.is_empty(),
                    "reference_rates",
                );
                FeeModel::Fixed {
                    amount: need(&mut errs, self.amount, "amount"),
                }
            }
            FeeModelKind::Percentage => {
                forbid(&mut errs, self.amount.is_some(), "amount");
                forbid(
                    &mut errs,
                    !self.reference_rates.is_empty(),
                    "reference_rates",
                );
                FeeModel::Percentage {
                    percent: need(&mut errs, self.percent, "percent"),
                }
            }
            FeeModelKind::Interest => {
                forbid(&mut errs, self.amount.is_some(), "amount");
                forbid(
                    &mut errs,
                    !self.reference_rates.is_empty(),
                    "reference_rates",
                );
                FeeModel::Interest {
                    annual_percent: need(&mut errs, self.percent, "percent"),
                }
            }
            FeeModelKind::StatutoryUk | FeeModelKind::StatutoryEu => {
                forbid(&mut errs, self.amount.is_some(), "amount");
                forbid(&mut errs, self.percent.is_some(), "percent");
                if self.reference_rates.is_empty() {
                    errs.push((
                        "reference_rates".into(),
                        "is required for statutory interest: a list of { from = YYYY-MM-DD, percent = ... }".into(),
                    ));
                }
                let mut rates = Vec::new();
                for (i, r) in self.reference_rates.iter().enumerate() {
                    match r.from.parse() {
                        Ok(d) => rates.push((d, r.percent)),
                        Err(m) => errs.push((format!("reference_rates[{i}].from"), m)),
                    }
                    if r.percent < Decimal::ZERO {
                        errs.push((
                            format!("reference_rates[{i}].percent"),
                            "must not be negative".into(),
                        ));
                    }
                }
                rates.sort();
                if rates.windows(2).any(|w| w[0].0 == w[1].0) {
                    errs.push((
                        "reference_rates".into(),
                        "two rows start on the same date".into(),
                    ));
                }
                let regime = if self.model == FeeModelKind::StatutoryUk {
                    Statutory::Uk
                } else {
                    Statutory::Eu
                };
                FeeModel::Statutory { regime, rates }
            }
        };
        if self.every_days == Some(0) {
            errs.push((
                "every_days".into(),
                "must be at least 1 (omit it to charge once)".into(),
            ));
        }
        for (field, v) in [
            ("cap_amount", self.cap_amount),
            ("cap_percent_of_invoice", self.cap_percent_of_invoice),
            ("min_invoice_amount", self.min_invoice_amount),
        ] {
            if matches!(v, Some(v) if v < Decimal::ZERO) {
                errs.push((field.into(), "must not be negative".into()));
            }
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        Ok(LateFee {
            model,
            grace_days: self.grace_days,
            every_days: self.every_days,
            cap_amount: self.cap_amount,
            cap_percent_of_invoice: self.cap_percent_of_invoice,
            min_invoice_amount: self.min_invoice_amount,
            posting: self.posting,
        })
    }
}

fn model_name(k: FeeModelKind) -> &'static str {
    match k {
        FeeModelKind::Fixed => "fixed",
        FeeModelKind::Percentage => "percentage",
        FeeModelKind::Interest => "interest",
        FeeModelKind::StatutoryUk => "statutory_uk",
        FeeModelKind::StatutoryEu => "statutory_eu",
    }
}

/// A fee already charged on the invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargedFee {
    pub period: u32,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    /// The local date it was charged.
    pub on: NaiveDate,
}

/// The invoice's balance from `on` (inclusive) until the next change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceChange {
    pub on: NaiveDate,
    #[serde(with = "rust_decimal::serde::str")]
    pub balance: Decimal,
}

/// What [`quote_fee`] needs to know about an invoice.
#[derive(Debug, Clone)]
pub struct FeeInput<'a> {
    pub currency: Currency,
    pub invoice_total: Decimal,
    pub amount_due: Decimal,
    pub due_date: NaiveDate,
    /// The local date the fee is charged on; interest accrues up to and including it.
    pub as_of: NaiveDate,
    pub period: u32,
    /// Changes of the outstanding balance, oldest first. The balance before the first
    /// change is the invoice total. Empty: the current `amount_due` is taken to have been
    /// outstanding throughout (no payment information; never overcharges after a payment).
    pub balance_history: &'a [BalanceChange],
    pub fees_charged: &'a [ChargedFee],
    pub is_fee_invoice: bool,
}

/// A fee to charge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeQuote {
    pub amount: Money,
    pub period: u32,
    pub explanation: String,
}

/// Why no fee is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoFeeReason {
    FeeInvoice,
    BelowMinimum,
    NothingDue,
    NoReferenceRate,
    CapReached,
    NothingAccrued,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoFee {
    pub reason: NoFeeReason,
    pub explanation: String,
}

fn no_fee(reason: NoFeeReason, explanation: impl Into<String>) -> NoFee {
    NoFee {
        reason,
        explanation: explanation.into(),
    }
}

impl LateFee {
    /// The fee period running on day `days_overdue`, when the fee step is at `step_day`:
    /// `(period, the day it started)`.
    pub fn period_on(&self, days_overdue: i64, step_day: i64) -> Option<(u32, i64)> {
        let first = step_day.max(i64::from(self.grace_days) + 1);
        if days_overdue < first {
            return None;
        }
        match self.every_days {
            None => Some((0, first)),
            Some(n) => {
                let n = i64::from(n.max(1));
                let p = (days_overdue - first) / n;
                Some((u32::try_from(p).ok()?, first + p * n))
            }
        }
    }

    /// The day period `p` starts on.
    pub fn period_start(&self, period: u32, step_day: i64) -> i64 {
        let first = step_day.max(i64::from(self.grace_days) + 1);
        first + i64::from(period) * i64::from(self.every_days.unwrap_or(0))
    }

    /// The fee disclosed up front in reminders, e.g. "a late payment fee of USD 25.00".
    pub fn describe(&self, currency: Currency, due_date: NaiveDate) -> String {
        let repeat = match self.every_days {
            Some(n) => format!(", charged every {n} days while the invoice remains unpaid"),
            None => String::new(),
        };
        match &self.model {
            FeeModel::Fixed { amount } => {
                format!(
                    "a late payment fee of {}{repeat}",
                    Money::new(*amount, currency)
                )
            }
            FeeModel::Percentage { percent } => {
                format!(
                    "a late payment fee of {}% of the amount due{repeat}",
                    percent.normalize()
                )
            }
            FeeModel::Interest { annual_percent } => {
                format!(
                    "interest at {}% a year on the overdue amount{repeat}",
                    annual_percent.normalize()
                )
            }
            FeeModel::Statutory { regime, rates } => {
                let law = match regime {
                    Statutory::Uk => "statutory interest under the Late Payment of Commercial Debts (Interest) Act 1998",
                    Statutory::Eu => "statutory late payment interest and compensation",
                };
                match reference_rate(rates, due_date) {
                    Some((_, r)) => format!(
                        "{law} at {}% a year{repeat}",
                        (r + STATUTORY_MARGIN).normalize()
                    ),
                    None => format!("{law}{repeat}"),
                }
            }
        }
    }
}

/// The first day of the half-year (1 January or 1 July) containing `d`.
pub fn half_year_start(d: NaiveDate) -> NaiveDate {
    let month = if d.month() <= 6 { 1 } else { 7 };
    NaiveDate::from_ymd_opt(d.year(), month, 1).unwrap_or(d)
}

/// The reference rate for an invoice due on `due`: the table row in force at the start of
/// the half-year in which it fell due. That approximates both laws (UK: base rate on
/// 31 Dec / 30 Jun before the half-year; EU: ECB rate on 1 Jan / 1 Jul) and holds for the
/// whole life of the debt, as both laws fix it.
pub fn reference_rate(
    rates: &[(NaiveDate, Decimal)],
    due: NaiveDate,
) -> Option<(NaiveDate, Decimal)> {
    let start = half_year_start(due);
    rates.iter().rev().find(|(from, _)| *from <= start).copied()
}

/// Sum over the days after the due date up to `as_of` of the principal outstanding that
/// day (in currency-days). Interest is this times the annual rate / 36,500.
pub fn principal_days(input: &FeeInput<'_>, posting: FeePosting) -> Decimal {
    let start = match input.due_date.succ_opt() {
        Some(d) => d,
        None => return Decimal::ZERO,
    };
    if input.as_of < start {
        return Decimal::ZERO;
    }
    // Dates on which the principal may change, and the principal on each.
    let mut cuts: Vec<NaiveDate> = vec![start];
    cuts.extend(
        input
            .balance_history
            .iter()
            .map(|c| c.on)
            .filter(|d| *d > start && *d <= input.as_of),
    );
    if posting == FeePosting::LineOnOriginal {
        cuts.extend(
            input
                .fees_charged
                .iter()
                .map(|f| f.on)
                .filter(|d| *d > start && *d <= input.as_of),
        );
    }
    cuts.sort();
    cuts.dedup();
    let mut total = Decimal::ZERO;
    for (i, from) in cuts.iter().enumerate() {
        let until = cuts
            .get(i + 1)
            .copied()
            .unwrap_or_else(|| input.as_of.succ_opt().unwrap_or(input.as_of));
        let days = Decimal::from((until - *from).num_days());
        total += principal_on(input, posting, *from) * days;
    }
    total
}

/// The principal outstanding on day `d`.
pub fn principal_on(input: &FeeInput<'_>, posting: FeePosting, d: NaiveDate) -> Decimal {
    let balance = if input.balance_history.is_empty() {
        input.amount_due
    } else {
        input
            .balance_history
            .iter()
            .filter(|c| c.on <= d)
            .max_by_key(|c| c.on)
            .map(|c| c.balance)
            .unwrap_or(input.invoice_total)
    };
    let fees_in_balance: Decimal = if posting == FeePosting::LineOnOriginal {
        input
            .fees_charged
            .iter()
            .filter(|f| f.on <= d)
            .map(|f| f.amount)
            .sum()
    } else {
        Decimal::ZERO
    };
    (balance - fees_in_balance).max(Decimal::ZERO)
}

/// Rounds toward zero to the currency's minor unit, so a cap is never overshot by rounding.
fn floor_minor(currency: Currency, v: Decimal) -> Decimal {
    v.round_dp_with_strategy(currency.minor_units(), RoundingStrategy::ToZero)
}

/// The fee due for `input.period`, or why none is.
pub fn quote_fee(fee: &LateFee, input: &FeeInput<'_>) -> Result<FeeQuote, NoFee> {
    let cur = input.currency;
    let money = |v: Decimal| Money::new(v, cur);
    if input.is_fee_invoice {
        return Err(no_fee(
            NoFeeReason::FeeInvoice,
            "no fee is ever charged on a fee invoice",
        ));
    }
    if let Some(min) = fee.min_invoice_amount {
        if input.invoice_total < min {
            return Err(no_fee(
                NoFeeReason::BelowMinimum,
                format!(
                    "invoice total {} is below the late-fee minimum {}",
                    money(input.invoice_total),
                    money(min)
                ),
            ));
        }
    }
    if input.amount_due <= Decimal::ZERO {
        return Err(no_fee(NoFeeReason::NothingDue, "nothing is due"));
    }
    let already: Decimal = input
        .fees_charged
        .iter()
        .map(|f| f.amount)
        .sum::<Decimal>()
        .max(Decimal::ZERO);
    let days = (input.as_of - input.due_date).num_days();

    let (raw, mut explanation) = match &fee.model {
        FeeModel::Fixed { amount } => (*amount, format!("fixed fee {}", money(*amount))),
        FeeModel::Percentage { percent } => {
            let v = input.amount_due * percent / Decimal::ONE_HUNDRED;
            (
                v,
                format!(
                    "{}% of {} due",
                    percent.normalize(),
                    money(input.amount_due)
                ),
            )
        }
        FeeModel::Interest { annual_percent } => {
            let accrued =
                principal_days(input, fee.posting) * annual_percent / Decimal::from(36_500);
            let owed = cur.round(accrued);
            (
                owed - already,
                format!(
                    "interest at {}% a year on the balance outstanding over {days} days since {}: {} accrued, {} already charged",
                    annual_percent.normalize(),
                    input.due_date,
                    money(owed),
                    money(already)
                ),
            )
        }
        FeeModel::Statutory { regime, rates } => {
            let Some((from, reference)) = reference_rate(rates, input.due_date) else {
                return Err(no_fee(
                    NoFeeReason::NoReferenceRate,
                    format!(
                        "no reference rate in force on {}",
                        half_year_start(input.due_date)
                    ),
                ));
            };
            let rate = reference + STATUTORY_MARGIN;
            let accrued = principal_days(input, fee.posting) * rate / Decimal::from(36_500);
            let debt = principal_on(input, fee.posting, input.due_date);
            let (compensation, comp_text) = compensation(*regime, cur, debt);
            let owed = cur.round(accrued) + compensation;
            let law = match regime {
                Statutory::Uk => "statutory interest (UK)",
                Statutory::Eu => "statutory interest (EU)",
            };
            (
                owed - already,
                format!(
                    "{law} at reference rate {}% (in force from {from}) + 8 = {}% a year on the balance outstanding over {days} days since {}: {} accrued; {comp_text}; {} already charged",
                    reference.normalize(),
                    rate.normalize(),
                    input.due_date,
                    money(cur.round(accrued)),
                    money(already)
                ),
            )
        }
    };
    let raw = cur.round(raw.max(Decimal::ZERO));

    let caps: Vec<(Decimal, String)> = [
        fee.cap_amount.map(|c| (c, format!("cap {}", money(c)))),
        fee.cap_percent_of_invoice.map(|p| {
            (
                input.invoice_total.max(Decimal::ZERO) * p / Decimal::ONE_HUNDRED,
                format!(
                    "cap {}% of the invoice total {}",
                    p.normalize(),
                    money(input.invoice_total)
                ),
            )
        }),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut amount = raw;
    for (cap, text) in &caps {
        let room = floor_minor(cur, (*cap - already).max(Decimal::ZERO));
        if room < amount {
            amount = room;
            explanation.push_str(&format!(
                "; limited by the {text} ({} charged before)",
                money(already)
            ));
        }
    }
    if amount <= Decimal::ZERO {
        return Err(if raw > Decimal::ZERO {
            no_fee(
                NoFeeReason::CapReached,
                format!("fee cap reached: {explanation}"),
            )
        } else {
            no_fee(
                NoFeeReason::NothingAccrued,
                format!("nothing further to charge: {explanation}"),
            )
        });
    }
    explanation.push_str(&format!(" = {} (period {})", money(amount), input.period));
    Ok(FeeQuote {
        amount: money(amount),
        period: input.period,
        explanation,
    })
}

fn compensation(regime: Statutory, cur: Currency, debt: Decimal) -> (Decimal, String) {
    match regime {
        Statutory::Uk if cur == Currency::GBP => {
            let c = if debt < Decimal::from(1_000) {
                Decimal::from(40)
            } else if debt < Decimal::from(10_000) {
                Decimal::from(70)
            } else {
                Decimal::from(100)
            };
            (
                c,
                format!(
                    "fixed compensation {} for a debt of {}",
                    Money::new(c, cur),
                    Money::new(debt, cur)
                ),
            )
        }
        Statutory::Eu if cur == Currency::EUR => {
            let c = Decimal::from(40);
            (c, format!("fixed compensation {}", Money::new(c, cur)))
        }
        Statutory::Uk => (
            Decimal::ZERO,
            format!("no fixed compensation (set in GBP; invoice is in {cur})"),
        ),
        Statutory::Eu => (
            Decimal::ZERO,
            format!("no fixed compensation (set in EUR; invoice is in {cur})"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn cfg(model: FeeModelKind) -> LateFeeConfig {
        LateFeeConfig {
            model,
            amount: None,
            percent: None,
            reference_rates: vec![],
            grace_days: 0,
            every_days: None,
            cap_amount: None,
            cap_percent_of_invoice: None,
            min_invoice_amount: None,
            posting: FeePosting::SeparateInvoice,
        }
    }

    fn input<'a>(cur: Currency, total: Decimal, as_of: NaiveDate) -> FeeInput<'a> {
        FeeInput {
            currency: cur,
            invoice_total: total,
            amount_due: total,
            due_date: d(2026, 10, 31),
            as_of,
            period: 0,
            balance_history: &[],
            fees_charged: &[],
            is_fee_invoice: false,
        }
    }

    fn uk_rates() -> Vec<ReferenceRateConfig> {
        vec![
            ReferenceRateConfig {
                from: ConfigDate::new("2025-01-01"),
                percent: dec!(4.75),
            },
            ReferenceRateConfig {
                from: ConfigDate::new("2026-07-01"),
                percent: dec!(4.00),
            },
            ReferenceRateConfig {
                from: ConfigDate::new("2026-09-15"),
                percent: dec!(3.50),
            },
        ]
    }

    #[test]
    fn fixed_and_percentage() {
        let fee = LateFeeConfig {
            amount: Some(dec!(25)),
            ..cfg(FeeModelKind::Fixed)
        }
        .compile()
        .unwrap();
        let q = quote_fee(&fee, &input(Currency::USD, dec!(362.07), d(2026, 11, 30))).unwrap();
        assert_eq!(q.amount, Money::new(dec!(25), Currency::USD));
        assert!(
            q.explanation.contains("fixed fee USD 25.00"),
            "{}",
            q.explanation
        );

        let fee = LateFeeConfig {
            percent: Some(dec!(1.5)),
            ..cfg(FeeModelKind::Percentage)
        }
        .compile()
        .unwrap();
        let q = quote_fee(&fee, &input(Currency::USD, dec!(362.07), d(2026, 11, 30))).unwrap();
        // 5.43105 rounds half away from zero to 5.43.
        assert_eq!(q.amount.amount, dec!(5.43));
        let jpy: Currency = "JPY".parse().unwrap();
        let q = quote_fee(&fee, &input(jpy, dec!(10_100), d(2026, 11, 30))).unwrap();
        assert_eq!(q.amount, Money::new(dec!(152), jpy)); // 151.5 -> 152
    }

    #[test]
    fn interest_accrues_daily_on_the_balance_outstanding() {
        let fee = LateFeeConfig {
            percent: Some(dec!(10)),
            ..cfg(FeeModelKind::Interest)
        }
        .compile()
        .unwrap();
        // 1000 at 10 % for 30 days = 8.219... -> 8.22
        let q = quote_fee(&fee, &input(Currency::USD, dec!(1000), d(2026, 11, 30))).unwrap();
        assert_eq!(q.amount.amount, dec!(8.22));
        // Half paid on 10 Nov: 9 days (1-9 Nov) on 1000, 21 days on 500 = 19,500 currency-days.
        let history = [BalanceChange {
            on: d(2026, 11, 10),
            balance: dec!(500),
        }];
        let mut i = input(Currency::USD, dec!(1000), d(2026, 11, 30));
        i.amount_due = dec!(500);
        i.balance_history = &history;
        let q = quote_fee(&fee, &i).unwrap();
        assert_eq!(q.amount.amount, dec!(5.34)); // 19500 * 10 / 36500 = 5.342
                                                 // A period later, the 5.34 already charged is subtracted.
        let charged = [ChargedFee {
            period: 0,
            amount: dec!(5.34),
            on: d(2026, 11, 30),
        }];
        i.fees_charged = &charged;
        i.as_of = d(2026, 12, 30);
        i.period = 1;
        let q = quote_fee(&fee, &i).unwrap();
        // 19500 + 30*500 = 34500 currency-days -> 9.45 owed, 4.11 new.
        assert_eq!(q.amount.amount, dec!(4.11));
        assert!(
            q.explanation.contains("USD 9.45 accrued"),
            "{}",
            q.explanation
        );
    }

    #[test]
    fn statutory_uk_uses_the_half_year_rate_and_compensation_by_size() {
        let fee = LateFeeConfig {
            reference_rates: uk_rates(),
            ..cfg(FeeModelKind::StatutoryUk)
        }
        .compile()
        .unwrap();
        // Due 31 Oct 2026: the half-year began 1 Jul 2026, rate 4.00 (the September cut is later).
        assert_eq!(
            reference_rate(
                &[(d(2026, 7, 1), dec!(4)), (d(2026, 9, 15), dec!(3.5))],
                d(2026, 10, 31)
            )
            .unwrap()
            .1,
            dec!(4)
        );
        let q = quote_fee(&fee, &input(Currency::GBP, dec!(1200), d(2026, 11, 30))).unwrap();
        // 1200 * 12 % * 30 / 365 = 11.835... -> 11.84, plus GBP 70 for a debt under 10,000.
        assert_eq!(q.amount, Money::new(dec!(81.84), Currency::GBP));
        assert!(q.explanation.contains("12% a year"), "{}", q.explanation);
        for (debt, comp) in [
            (dec!(999.99), dec!(40)),
            (dec!(1000), dec!(70)),
            (dec!(9999.99), dec!(70)),
            (dec!(10000), dec!(100)),
        ] {
            assert_eq!(
                compensation(Statutory::Uk, Currency::GBP, debt).0,
                comp,
                "{debt}"
            );
        }
        // No rate in force when the invoice fell due.
        let early = LateFeeConfig {
            reference_rates: vec![uk_rates().remove(2)],
            ..cfg(FeeModelKind::StatutoryUk)
        }
        .compile()
        .unwrap();
        assert_eq!(
            quote_fee(&early, &input(Currency::GBP, dec!(1200), d(2026, 11, 30)))
                .unwrap_err()
                .reason,
            NoFeeReason::NoReferenceRate
        );
    }

    #[test]
    fn statutory_eu_adds_eur_40_only_in_euros() {
        let rates = vec![ReferenceRateConfig {
            from: ConfigDate::new("2026-07-01"),
            percent: dec!(2.15),
        }];
        let fee = LateFeeConfig {
            reference_rates: rates,
            ..cfg(FeeModelKind::StatutoryEu)
        }
        .compile()
        .unwrap();
        let q = quote_fee(&fee, &input(Currency::EUR, dec!(500), d(2026, 11, 30))).unwrap();
        // 500 * 10.15 % * 30 / 365 = 4.171 -> 4.17, + 40.
        assert_eq!(q.amount.amount, dec!(44.17));
        let q = quote_fee(&fee, &input(Currency::USD, dec!(500), d(2026, 11, 30))).unwrap();
        assert_eq!(q.amount.amount, dec!(4.17));
        assert!(
            q.explanation.contains("no fixed compensation"),
            "{}",
            q.explanation
        );
    }

    #[test]
    fn caps_minimums_and_fee_invoices() {
        let fee = LateFeeConfig {
            amount: Some(dec!(40)),
            cap_amount: Some(dec!(100)),
            cap_percent_of_invoice: Some(dec!(10)),
            min_invoice_amount: Some(dec!(50)),
            ..cfg(FeeModelKind::Fixed)
        }
        .compile()
        .unwrap();
        let mut i = input(Currency::USD, dec!(500), d(2026, 11, 30));
        assert_eq!(quote_fee(&fee, &i).unwrap().amount.amount, dec!(40));
        let charged = [ChargedFee {
            period: 0,
            amount: dec!(40),
            on: d(2026, 11, 30),
        }];
        i.fees_charged = &charged;
        let q = quote_fee(&fee, &i).unwrap();
        assert_eq!(q.amount.amount, dec!(10)); // 10 % of 500 = 50, 40 already charged
        assert!(
            q.explanation.contains("limited by the cap 10%"),
            "{}",
            q.explanation
        );
        let charged = [ChargedFee {
            period: 0,
            amount: dec!(50),
            on: d(2026, 11, 30),
        }];
        i.fees_charged = &charged;
        assert_eq!(
            quote_fee(&fee, &i).unwrap_err().reason,
            NoFeeReason::CapReached
        );
        let small = input(Currency::USD, dec!(49.99), d(2026, 11, 30));
        assert_eq!(
            quote_fee(&fee, &small).unwrap_err().reason,
            NoFeeReason::BelowMinimum
        );
        let mut on_fee = input(Currency::USD, dec!(500), d(2026, 11, 30));
        on_fee.is_fee_invoice = true;
        assert_eq!(
            quote_fee(&fee, &on_fee).unwrap_err().reason,
            NoFeeReason::FeeInvoice
        );
    }

    #[test]
    fn line_fees_are_not_principal() {
        let mut c = cfg(FeeModelKind::Interest);
        c.percent = Some(dec!(10));
        c.posting = FeePosting::LineOnOriginal;
        let fee = c.compile().unwrap();
        // The fee of 100 was added to the invoice on 30 Nov; interest must not run on it.
        let charged = [ChargedFee {
            period: 0,
            amount: dec!(100),
            on: d(2026, 11, 30),
        }];
        let history = [BalanceChange {
            on: d(2026, 11, 30),
            balance: dec!(1100),
        }];
        let mut i = input(Currency::USD, dec!(1000), d(2026, 12, 30));
        i.amount_due = dec!(1100);
        i.balance_history = &history;
        i.fees_charged = &charged;
        assert_eq!(principal_days(&i, FeePosting::LineOnOriginal), dec!(60_000));
        // 60,000 currency-days at 10 % is 16.44, less than the 100 already charged.
        assert_eq!(
            quote_fee(&fee, &i).unwrap_err().reason,
            NoFeeReason::NothingAccrued
        );
    }

    #[test]
    fn periods_follow_the_step_grace_and_recurrence() {
        let mut c = LateFeeConfig {
            amount: Some(dec!(10)),
            ..cfg(FeeModelKind::Fixed)
        };
        let once = c.compile().unwrap();
        assert_eq!(once.period_on(29, 30), None);
        assert_eq!(once.period_on(30, 30), Some((0, 30)));
        assert_eq!(once.period_on(300, 30), Some((0, 30)));
        c.every_days = Some(30);
        c.grace_days = 40;
        let rec = c.compile().unwrap();
        assert_eq!(rec.period_on(40, 30), None);
        assert_eq!(rec.period_on(41, 30), Some((0, 41)));
        assert_eq!(rec.period_on(70, 30), Some((0, 41)));
        assert_eq!(rec.period_on(71, 30), Some((1, 71)));
        assert_eq!(rec.period_start(2, 30), 101);
    }

    #[test]
    fn compile_names_the_bad_field() {
        let errs = cfg(FeeModelKind::Fixed).compile().unwrap_err();
        assert_eq!(errs[0].0, "amount");
        let errs = LateFeeConfig {
            amount: Some(dec!(1)),
            percent: Some(dec!(1)),
            every_days: Some(0),
            ..cfg(FeeModelKind::Fixed)
        }
        .compile()
        .unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(fields, ["percent", "every_days"]);
        let bad_date = vec![ReferenceRateConfig {
            from: ConfigDate::new("2026-13-01"),
            percent: dec!(1),
        }];
        let errs = LateFeeConfig {
            reference_rates: bad_date,
            ..cfg(FeeModelKind::StatutoryUk)
        }
        .compile()
        .unwrap_err();
        assert_eq!(errs[0].0, "reference_rates[0].from");
    }

    fn any_model() -> impl Strategy<Value = LateFeeConfig> {
        let amount = (1u32..100_000).prop_map(|c| Decimal::new(i64::from(c), 2));
        let pct = (1u32..5_000).prop_map(|c| Decimal::new(i64::from(c), 2));
        prop_oneof![
            amount.prop_map(|a| LateFeeConfig {
                amount: Some(a),
                ..cfg(FeeModelKind::Fixed)
            }),
            pct.clone().prop_map(|p| LateFeeConfig {
                percent: Some(p),
                ..cfg(FeeModelKind::Percentage)
            }),
            pct.clone().prop_map(|p| LateFeeConfig {
                percent: Some(p),
                ..cfg(FeeModelKind::Interest)
            }),
            Just(LateFeeConfig {
                reference_rates: uk_rates(),
                ..cfg(FeeModelKind::StatutoryUk)
            }),
            Just(LateFeeConfig {
                reference_rates: vec![ReferenceRateConfig {
                    from: ConfigDate::new("2020-01-01"),
                    percent: dec!(2.15)
                }],
                ..cfg(FeeModelKind::StatutoryEu)
            }),
        ]
    }

    fn any_currency() -> impl Strategy<Value = Currency> {
        prop_oneof![
            Just(Currency::USD),
            Just(Currency::GBP),
            Just(Currency::EUR),
            Just("JPY".parse().unwrap()),
            Just("KWD".parse().unwrap())
        ]
    }

    proptest! {
        #[test]
        fn fees_are_never_negative_and_never_exceed_a_cap(
            mut c in any_model(),
            cur in any_currency(),
            total_cents in 1i64..10_000_000,
            due_frac in 1u32..=100,
            days in 1i64..400,
            already_cents in 0i64..100_000,
            cap_cents in proptest::option::of(0i64..50_000),
            cap_pct in proptest::option::of(0u32..3_000),
        ) {
            c.cap_amount = cap_cents.map(|v| Decimal::new(v, 2));
            c.cap_percent_of_invoice = cap_pct.map(|v| Decimal::new(i64::from(v), 2));
            let fee = c.compile().unwrap();
            let total = Decimal::new(total_cents, 2);
            let due = cur.round(total * Decimal::from(due_frac) / Decimal::ONE_HUNDRED);
            let as_of = d(2026, 10, 31) + chrono::Duration::days(days);
            let charged = [ChargedFee { period: 0, amount: cur.round(Decimal::new(already_cents, 2)), on: d(2026, 10, 31) }];
            let i = FeeInput { amount_due: due, fees_charged: &charged, period: 1, ..input(cur, total, as_of) };
            if let Ok(q) = quote_fee(&fee, &i) {
                prop_assert!(q.amount.amount > Decimal::ZERO);
                prop_assert_eq!(q.amount.amount, cur.round(q.amount.amount));
                prop_assert_eq!(q.amount.currency, cur);
                let after = charged[0].amount + q.amount.amount;
                if let Some(cap) = c.cap_amount {
                    prop_assert!(q.amount.amount <= cap && after <= cap.max(charged[0].amount), "{} + {} > cap {}", charged[0].amount, q.amount.amount, cap);
                }
                if let Some(p) = c.cap_percent_of_invoice {
                    let cap = total * p / Decimal::ONE_HUNDRED;
                    prop_assert!(after <= cap.max(charged[0].amount), "{} > {}% of {}", after, p, total);
                }
            }
        }

        #[test]
        fn interest_after_partial_payments_matches_a_day_by_day_count(
            c in any_model().prop_filter("cumulative", |c| matches!(c.model, FeeModelKind::Interest | FeeModelKind::StatutoryUk | FeeModelKind::StatutoryEu)),
            total_cents in 100i64..10_000_000,
            payments in proptest::collection::vec((1i64..200, 1u32..60), 0..5),
            periods in 1u32..8,
            every in 5u32..60,
        ) {
            let cur = Currency::GBP;
            let total = Decimal::new(total_cents, 2);
            let due = d(2026, 10, 31);
            // Payments shrink the balance by a share each time, on increasing days.
            let mut history = Vec::new();
            let mut balance = total;
            let mut day = 0;
            for (gap, pct) in &payments {
                day += gap;
                balance = cur.round(balance * Decimal::from(100 - pct) / Decimal::ONE_HUNDRED);
                history.push(BalanceChange { on: due + chrono::Duration::days(day), balance });
            }
            let fee = LateFeeConfig { every_days: Some(every), ..c }.compile().unwrap();
            let mut charged: Vec<ChargedFee> = Vec::new();
            let mut last_owed = Decimal::ZERO;
            for p in 0..periods {
                let as_of = due + chrono::Duration::days(fee.period_start(p, 1));
                let amount_due = history.iter().rev().find(|c| c.on <= as_of).map(|c| c.balance).unwrap_or(total);
                let i = FeeInput { amount_due, balance_history: &history, fees_charged: &charged, period: p, ..input(cur, total, as_of) };
                // Reference: principal summed one day at a time.
                let mut reference = Decimal::ZERO;
                let mut t = due.succ_opt().unwrap();
                while t <= as_of {
                    reference += history.iter().rev().find(|c| c.on <= t).map(|c| c.balance).unwrap_or(total);
                    t = t.succ_opt().unwrap();
                }
                prop_assert_eq!(principal_days(&i, FeePosting::SeparateInvoice), reference);
                if let Ok(q) = quote_fee(&fee, &i) {
                    prop_assert!(q.amount.amount > Decimal::ZERO);
                    charged.push(ChargedFee { period: p, amount: q.amount.amount, on: as_of });
                }
                // What the law allows by now: accrued interest plus compensation, rounded.
                let rate = match &fee.model {
                    FeeModel::Interest { annual_percent } => *annual_percent,
                    FeeModel::Statutory { rates, .. } => reference_rate(rates, due).unwrap().1 + STATUTORY_MARGIN,
                    _ => unreachable!(),
                };
                let debt = history.iter().rev().find(|c| c.on <= due).map(|c| c.balance).unwrap_or(total);
                let comp = match &fee.model {
                    FeeModel::Statutory { regime, .. } => compensation(*regime, cur, debt).0,
                    _ => Decimal::ZERO,
                };
                let owed = cur.round(reference * rate / Decimal::from(36_500)) + comp;
                let total_charged: Decimal = charged.iter().map(|f| f.amount).sum();
                prop_assert!(total_charged <= owed, "charged {} > owed {}", total_charged, owed);
                // Interest never goes backwards, so charging each period catches up exactly.
                prop_assert!(owed >= last_owed);
                if owed > Decimal::ZERO { prop_assert_eq!(total_charged, owed); }
                last_owed = owed;
            }
        }
    }
}
