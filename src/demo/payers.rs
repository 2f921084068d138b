//! The demo's check of payer profiles and the cash forecast against the simulation's
//! ground truth: the behaviour the sandbox gave each customer, and what they then paid.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::NaiveDate;
use overdued_sandbox::{Behaviour, Sandbox};
use rust_decimal::Decimal;
use serde::Serialize;

use super::book::PerCurrency;
use super::format::{day, money};
use crate::config::Config;
use crate::profiles::{ledger_profiles, PayerProfile, PlanOutcomes};
use crate::store::{Store, StoreError};

/// The days the forecast looks ahead that the demo checks.
pub const FORECAST_DAYS: i64 = 30;

/// The forecast made on one day, and the open invoices it was made from.
pub struct ForecastWatch {
    pub day: NaiveDate,
    pub forecast: PerCurrency,
    /// (connection, invoice id, currency, amount due that day).
    open: Vec<(String, String, String, Decimal)>,
}

/// Takes the 30-day forecast of every connection as overdued makes it on `today`.
pub fn take_forecast(
    config: &Config,
    store: &dyn Store,
    today: NaiveDate,
) -> Result<ForecastWatch, StoreError> {
    let mut w = ForecastWatch {
        day: today,
        forecast: PerCurrency::new(),
        open: Vec::new(),
    };
    for c in &config.connections {
        let p = ledger_profiles(
            store,
            &c.name,
            today,
            config.daemon.time_zone,
            &config.payer_profiles,
            &PlanOutcomes::new(),
        )?;
        for cur in p.forecast.by_currency.keys() {
            *w.forecast.entry(cur.clone()).or_default() += p.forecast.within(FORECAST_DAYS, cur);
        }
        for i in p.customers.iter().flat_map(|c| &c.open_invoices) {
            w.open.push((
                c.name.clone(),
                i.id.clone(),
                i.currency.clone(),
                i.amount_due,
            ));
        }
    }
    Ok(w)
}

/// The profiles on the last day against each customer's behaviour, and the forecast
/// against what was paid on the invoices it covered.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PayersCheck {
    /// Behaviour (as the sandbox names it) → profile → customers.
    pub confusion: BTreeMap<String, BTreeMap<PayerProfile, usize>>,
    pub customers: usize,
    /// Customers given a profile other than `new`.
    pub judged: usize,
    /// Of those, the ones whose profile is one the behaviour allows.
    pub matched: usize,
    pub forecast_day: Option<NaiveDate>,
    pub forecast: PerCurrency,
    pub paid: PerCurrency,
}

impl PayersCheck {
    /// The share of judged customers whose profile matches their behaviour, in percent.
    pub fn accuracy_percent(&self) -> Decimal {
        if self.judged == 0 {
            return Decimal::ZERO;
        }
        (Decimal::from(self.matched * 100) / Decimal::from(self.judged)).round_dp(1)
    }

    /// |forecast − paid| / paid for one currency, in percent; `None` when nothing was
    /// paid in it.
    pub fn forecast_error_percent(&self, currency: &str) -> Option<Decimal> {
        let paid = self.paid.get(currency).copied().unwrap_or_default();
        if paid <= Decimal::ZERO {
            return None;
        }
        let f = self.forecast.get(currency).copied().unwrap_or_default();
        Some(((f - paid).abs() * Decimal::from(100) / paid).round_dp(1))
    }

    pub fn render(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "Payer profiles on the last day against the behaviour the simulator gave each customer:"
        );
        let _ = write!(o, "  {:<38}", "behaviour");
        for p in PayerProfile::ALL {
            let _ = write!(o, "{:>11}", p.as_str());
        }
        let _ = writeln!(o);
        for (b, row) in &self.confusion {
            let _ = write!(o, "  {b:<38}");
            for p in PayerProfile::ALL {
                let _ = write!(o, "{:>11}", row.get(&p).copied().unwrap_or(0));
            }
            let _ = writeln!(o);
        }
        let _ = writeln!(
            o,
            "  {} customers, {} judged (not new); {} of them ({}%) with the profile their behaviour implies.",
            self.customers,
            self.judged,
            self.matched,
            self.accuracy_percent()
        );
        if let Some(d) = self.forecast_day {
            let _ = writeln!(
                o,
                "Cash forecast made on {} for the next {FORECAST_DAYS} days, against what the customers then paid on those invoices:",
                day(d)
            );
            let currencies: std::collections::BTreeSet<&String> =
                self.forecast.keys().chain(self.paid.keys()).collect();
            for c in currencies {
                let f = self.forecast.get(c).copied().unwrap_or_default();
                let p = self.paid.get(c).copied().unwrap_or_default();
                let err = self
                    .forecast_error_percent(c)
                    .map(|e| format!("off by {e}%"))
                    .unwrap_or_else(|| "nothing paid".into());
                let _ = writeln!(
                    o,
                    "  {c}: forecast {}, paid {} ({err})",
                    money(c, f),
                    money(c, p)
                );
            }
        }
        o
    }
}

/// The behaviour's name as the confusion table shows it: the sandbox's name, with the
/// parameter that decides the profile, and whether overdued can reach the customer.
fn row_name(b: &Behaviour, reachable: bool) -> String {
    let base = match b {
        Behaviour::PaysAfterFirstReminder { days } if *days >= 7 => {
            "pays_after_first_reminder (7 days)".to_string()
        }
        Behaviour::PaysInParts { parts, every_days } => {
            let last = i64::from(*parts) * every_days;
            match last {
                ..=17 => "pays_in_parts (by day 17)".to_string(),
                18..=48 => "pays_in_parts (day 18-48)".to_string(),
                _ => "pays_in_parts (after day 48)".to_string(),
            }
        }
        b => b.name().to_string(),
    };
    if reachable {
        base
    } else {
        format!("{base}, no email")
    }
}

/// The profiles a behaviour implies under the demo's policy (a heads-up 3 days before
/// the due date, a fee at 30 days past it) and the default thresholds (late = paid more
/// than 3 days after the due date). Where a weekend or the first day's catch-up of old
/// debts can tip a customer either way, both neighbours are allowed.
pub fn implied(b: &Behaviour, reachable: bool) -> &'static [PayerProfile] {
    use PayerProfile::*;
    match b {
        Behaviour::PaysEarly { .. } => &[Prompt],
        // Without an email address, no reminder reaches them and no fee is disclosed, so
        // they never pay.
        Behaviour::PaysAfterFirstReminder { .. } | Behaviour::PaysAfterFee { .. } if !reachable => {
            &[Chronic]
        }
        // Paid `days` after the heads-up three days before the due date: on time up to
        // 6 days; old debts reminded on the first day were paid late.
        Behaviour::PaysAfterFirstReminder { days } if *days < 7 => &[Prompt, Occasional],
        Behaviour::PaysAfterFirstReminder { .. } => &[Occasional, Chronic],
        Behaviour::PaysAfterFee { .. } => &[Chronic],
        Behaviour::ChronicallyLate { .. } => &[Chronic],
        Behaviour::Never | Behaviour::Disputes => &[Chronic],
        // The last part comes parts × every days after the issue date; terms are 14 to
        // 45 days.
        Behaviour::PaysInParts { parts, every_days } => match i64::from(*parts) * every_days {
            ..=17 => &[Prompt, Occasional],
            18..=48 => &[Occasional, Chronic],
            _ => &[Chronic],
        },
    }
}

/// Compares the profiles on `today` with the simulator's behaviours, and settles the
/// forecast taken earlier against the invoices' balances now.
pub fn check(
    config: &Config,
    store: &dyn Store,
    sandbox: &Sandbox,
    today: NaiveDate,
    watch: Option<&ForecastWatch>,
) -> Result<PayersCheck, StoreError> {
    let mut out = PayersCheck::default();
    let tenants = sandbox.tenants();
    for c in &config.connections {
        let Some(t) = tenants.iter().find(|t| t.system == c.system()) else {
            continue;
        };
        let truth: BTreeMap<String, (String, Behaviour)> = sandbox
            .customer_behaviours(&t.id)
            .into_iter()
            .map(|(id, _, email, b)| (id.to_lowercase(), (email, b)))
            .collect();
        let p = ledger_profiles(
            store,
            &c.name,
            today,
            config.daemon.time_zone,
            &config.payer_profiles,
            &PlanOutcomes::new(),
        )?;
        for cp in &p.customers {
            let Some((email, b)) = truth.get(&cp.customer_id.to_lowercase()) else {
                continue;
            };
            let reachable = !email.trim().is_empty();
            out.customers += 1;
            *out.confusion
                .entry(row_name(b, reachable))
                .or_default()
                .entry(cp.profile)
                .or_default() += 1;
            if cp.profile != PayerProfile::New {
                out.judged += 1;
                if implied(b, reachable).contains(&cp.profile) {
                    out.matched += 1;
                }
            }
        }
    }
    if let Some(w) = watch {
        out.forecast_day = Some(w.day);
        out.forecast = w.forecast.clone();
        for (conn, id, cur, then) in &w.open {
            let now = match store.get_invoice(conn, id)? {
                Some(r) if r.snapshot.status.is_open() => r.snapshot.amount_due,
                Some(r) if r.snapshot.status == overdued_connector::InvoiceStatus::Paid => {
                    Decimal::ZERO
                }
                // Voided or deleted: nothing was paid.
                _ => *then,
            };
            let paid = (*then - now).max(Decimal::ZERO);
            *out.paid.entry(cur.clone()).or_default() += paid;
        }
    }
    Ok(out)
}
