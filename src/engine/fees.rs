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
                    Money::new(*amount, currency).display_human()
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
    let money = |v: Decimal| Money::new(v, cur).display_human();
    // A later amount in the same phrase as `money`: the currency is named once.
    let amount_only = |v: Decimal| Money::new(v, cur).amount_human();
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
                    amount_only(min)
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
                    amount_only(already)
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
                    amount_only(already)
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
                amount_only(already)
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
        amount: Money::new(amount, cur),
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
                    Money::new(c, cur).display_human(),
                    Money::new(debt, cur).display_human()
                ),
            )
        }
        Statutory::Eu if cur == Currency::EUR => {
            let c = Decimal::from(40);
            (
                c,
                format!("fixed compensation {}", Money::new(c, cur).display_human()),
            )
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
mod tests;
