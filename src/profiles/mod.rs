//! Payer profiles: how each customer has paid over the last year, read from the ledger as
//! synced, and what that says about when their open invoices will be paid.
//!
//! Collection guides put "know your audience" before any reminder ladder: a customer
//! rarely changes payment habits, and a chronically late one warrants a firmer approach
//! than a loyal one who slipped once (`DUNNING.md`, "The practice"). Policies select by
//! profile, templates may thank a prompt payer, and `status`/`customers` turn the same
//! figures into expected payment dates and a cash forecast.

mod config;
mod expect;
mod history;
pub mod render;

pub use config::PayerProfilesConfig;
pub use expect::{expected_date, Expectation, Forecast, FORECAST_HORIZONS};
pub use history::{
    attach_profiles, customers_report, ledger_profiles, paid_on, plan_outcomes, window_start,
    CustomerProfile, LedgerProfiles, OpenInvoice, PaidDate, PaidDateSource, PlanOutcomes,
};

use serde::{Deserialize, Serialize};

/// What a customer's history says about them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayerProfile {
    /// Too little history to judge.
    New,
    /// Pays on time.
    Prompt,
    /// Sometimes late.
    Occasional,
    /// Usually late, or broke a promise or a payment plan.
    Chronic,
}

impl PayerProfile {
    pub const ALL: [PayerProfile; 4] = [
        PayerProfile::New,
        PayerProfile::Prompt,
        PayerProfile::Occasional,
        PayerProfile::Chronic,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PayerProfile::New => "new",
            PayerProfile::Prompt => "prompt",
            PayerProfile::Occasional => "occasional",
            PayerProfile::Chronic => "chronic",
        }
    }

    pub fn parse(s: &str) -> Option<PayerProfile> {
        PayerProfile::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

impl std::fmt::Display for PayerProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The figures a profile is judged on, for one customer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayerFigures {
    /// Invoices paid in full within the history window.
    pub paid: u32,
    /// Of those, paid more than `late_after_days` after their due date.
    pub paid_late: u32,
    /// Open invoices already more than `late_after_days` past due: late whatever happens.
    pub open_late: u32,
    /// The median of days from due date to payment over the last `expect_from_last`
    /// paid invoices (negative: early).
    pub median_days_late: Option<i64>,
    /// The latest any of them was paid, in days after the due date.
    pub max_days_late: Option<i64>,
    pub promises_kept: u32,
    pub promises_broken: u32,
    pub plans_kept: u32,
    pub plans_broken: u32,
}

impl PayerFigures {
    /// Invoices whose lateness is known: paid ones, and open ones already late.
    pub fn judged(&self) -> u32 {
        self.paid + self.open_late
    }

    pub fn late(&self) -> u32 {
        self.paid_late + self.open_late
    }
}

/// Judges one customer; returns the profile and the reason in words.
pub fn classify(f: &PayerFigures, cfg: &PayerProfilesConfig) -> (PayerProfile, String) {
    let broken = f.promises_broken + f.plans_broken;
    if cfg.broken_promise_is_chronic && broken > 0 {
        let what = match (f.promises_broken, f.plans_broken) {
            (p, 0) => plural(p, "broken promise to pay"),
            (0, q) => plural(q, "broken payment plan"),
            (p, q) => format!(
                "{} and {}",
                plural(p, "broken promise to pay"),
                plural(q, "broken payment plan")
            ),
        };
        return (
            PayerProfile::Chronic,
            format!("{what} in the last {} days", cfg.history_days),
        );
    }
    let judged = f.judged();
    if judged < cfg.min_invoices {
        return (
            PayerProfile::New,
            format!(
                "{} to judge by (at least {} needed)",
                plural(judged, "invoice"),
                cfg.min_invoices
            ),
        );
    }
    let late = f.late();
    let share = |pct: u32| u64::from(late) * 100 >= u64::from(pct) * u64::from(judged);
    let why = format!(
        "{late} of {judged} invoices late (more than {} days after the due date)",
        cfg.late_after_days
    );
    if late > 0 && share(cfg.chronic_share_late) {
        (PayerProfile::Chronic, why)
    } else if u64::from(late) * 100 > u64::from(cfg.prompt_max_share_late) * u64::from(judged) {
        (PayerProfile::Occasional, why)
    } else {
        (PayerProfile::Prompt, why)
    }
}

fn plural(n: u32, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// The median of a list of whole days (the lower middle of an even count, so the result
/// is a day that was actually observed rather than a half day).
pub fn median(v: &mut [i64]) -> Option<i64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    Some(v[(v.len() - 1) / 2])
}

/// What `status` and the digest show of a connection's payers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayersSummary {
    pub customers: usize,
    /// Customers per profile name.
    pub profiles: std::collections::BTreeMap<String, usize>,
    pub forecast: Forecast,
    /// Open balances per currency with no expected payment date.
    pub not_expected: std::collections::BTreeMap<String, rust_decimal::Decimal>,
}

impl PayersSummary {
    pub fn of(p: &LedgerProfiles) -> PayersSummary {
        let mut s = PayersSummary {
            customers: p.customers.len(),
            forecast: p.forecast.clone(),
            ..PayersSummary::default()
        };
        for c in &p.customers {
            *s.profiles
                .entry(c.profile.as_str().to_string())
                .or_default() += 1;
            for i in c.open_invoices.iter().filter(|i| i.expected.on.is_none()) {
                *s.not_expected.entry(i.currency.clone()).or_default() += i.amount_due;
            }
        }
        s
    }
}

#[cfg(test)]
mod tests;
