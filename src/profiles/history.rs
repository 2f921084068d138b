//! Reading a connection's history from the store: paid invoices and their payment
//! dates, promises kept and broken, and the open invoices to forecast.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Duration, NaiveDate, TimeZone};
use chrono_tz::Tz;
use overdued_connector::InvoiceStatus;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::expect::{expected_date, Expectation, Forecast};
use super::{classify, median, PayerFigures, PayerProfile, PayerProfilesConfig};
use crate::store::{Hold, HoldTarget, InvoiceRecord, Store, StoreError};

/// Where a payment date came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaidDateSource {
    /// The system's own payment date on the invoice (Xero `FullyPaidOnDate`).
    Ledger,
    /// The day the ledger dated the change that brought the balance to zero, as sync
    /// recorded it (QuickBooks `MetaData.LastUpdatedTime`, Xero `UpdatedDateUTC` of the
    /// snapshot that first showed the invoice paid).
    BalanceHistory,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaidDate {
    pub on: NaiveDate,
    pub source: PaidDateSource,
}

/// When a paid invoice was paid in full, if it is paid.
pub fn paid_on(rec: &InvoiceRecord) -> Option<PaidDate> {
    if rec.snapshot.status != InvoiceStatus::Paid {
        return None;
    }
    if let Some(on) = rec.snapshot.paid_on {
        return Some(PaidDate {
            on,
            source: PaidDateSource::Ledger,
        });
    }
    // The last time the balance went from something to nothing: a payment reversed and
    // made again counts from the second.
    let h = &rec.balance_history;
    let i = h
        .iter()
        .rposition(|(_, b)| *b > Decimal::ZERO)
        .map_or(0, |i| i + 1);
    h.get(i)
        .filter(|(_, b)| *b <= Decimal::ZERO)
        .map(|(on, _)| PaidDate {
            on: *on,
            source: PaidDateSource::BalanceHistory,
        })
}

/// Payment plans kept and broken per customer id: (kept, broken).
pub type PlanOutcomes = BTreeMap<String, (u32, u32)>;

/// The payment plans (`overdued arrange`) of a connection that ended since `since`, per
/// customer: (kept, broken). Kept: every instalment paid. Broken: the customer was told
/// the plan ended (its "plan missed" message went out), the moment it became a fact the
/// customer knows; a plan cancelled by the owner is neither.
pub fn plan_outcomes(
    store: &dyn Store,
    connection: &str,
    since: NaiveDate,
) -> Result<PlanOutcomes, StoreError> {
    let mut out = PlanOutcomes::new();
    for plan in store.arrangements(connection)? {
        if plan.cancelled_on.is_some() {
            continue;
        }
        // Today only matters for an instalment inside its grace days; a broken plan is
        // read from its record or its journalled message, whatever the day.
        let (standing, _, _) = crate::arrangements::ops::assess(store, &plan, since, 36_500)?;
        let entry = out.entry(plan.customer_id.clone()).or_insert((0, 0));
        match standing {
            crate::arrangements::Standing::Completed if plan.agreed_on >= since => entry.0 += 1,
            crate::arrangements::Standing::Broken { on, .. } if on >= since => entry.1 += 1,
            _ => {}
        }
    }
    out.retain(|_, v| *v != (0, 0));
    Ok(out)
}

/// One open invoice and when its payment is expected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenInvoice {
    pub id: String,
    pub number: String,
    pub currency: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount_due: Decimal,
    pub due_date: NaiveDate,
    pub expected: Expectation,
}

/// One customer's profile, the figures behind it and their open invoices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerProfile {
    pub customer_id: String,
    pub name: String,
    pub profile: PayerProfile,
    pub reason: String,
    pub figures: PayerFigures,
    /// Open balances per currency.
    pub owed: BTreeMap<String, String>,
    pub open_invoices: Vec<OpenInvoice>,
}

/// Every customer of one connection, and the forecast of their open invoices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerProfiles {
    pub connection: String,
    pub today: NaiveDate,
    /// The median days late over every paid invoice of the ledger: what a `new`
    /// customer's invoices are expected by.
    pub ledger_median_days_late: Option<i64>,
    pub customers: Vec<CustomerProfile>,
    pub forecast: Forecast,
}

impl LedgerProfiles {
    /// The profile of a customer by id.
    pub fn profile_of(&self, customer_id: &str) -> Option<PayerProfile> {
        self.customers
            .iter()
            .find(|c| c.customer_id == customer_id)
            .map(|c| c.profile)
    }

    /// Profiles by customer id, for the planner.
    pub fn by_customer(&self) -> BTreeMap<String, PayerProfile> {
        self.customers
            .iter()
            .map(|c| (c.customer_id.clone(), c.profile))
            .collect()
    }

    /// The expectation of one open invoice.
    pub fn expected(&self, invoice_id: &str) -> Option<&Expectation> {
        self.customers
            .iter()
            .flat_map(|c| &c.open_invoices)
            .find(|i| i.id == invoice_id)
            .map(|i| &i.expected)
    }
}

/// What the forecast needs of an open invoice.
struct Open {
    id: String,
    number: String,
    currency: String,
    amount_due: Decimal,
    due_date: NaiveDate,
}

#[derive(Default)]
struct Acc {
    name: String,
    /// (paid on, days late) of every payment in the window.
    days_late: Vec<(NaiveDate, i64)>,
    figures: PayerFigures,
    open: Vec<Open>,
    owed: BTreeMap<String, Decimal>,
}

/// Reads everything a connection's profiles need from the store and judges every
/// customer with an invoice in it. `today` is the local calendar day.
pub fn ledger_profiles(
    store: &dyn Store,
    connection: &str,
    today: NaiveDate,
    tz: Tz,
    cfg: &PayerProfilesConfig,
    plans: &PlanOutcomes,
) -> Result<LedgerProfiles, StoreError> {
    compute(store, connection, today, tz, cfg, plans, true)
}

/// [`ledger_profiles`]; without `with_open`, no open invoice is listed or forecast
/// (the planner needs only the profiles).
fn compute(
    store: &dyn Store,
    connection: &str,
    today: NaiveDate,
    tz: Tz,
    cfg: &PayerProfilesConfig,
    plans: &PlanOutcomes,
    with_open: bool,
) -> Result<LedgerProfiles, StoreError> {
    let since = window_start(today, cfg);
    // Promises: made as audited, broken when the planner scheduled their "promise
    // broken" message, kept when the invoice closed without one.
    let start = tz
        .from_local_datetime(&since.and_hms_opt(0, 0, 0).unwrap_or_default())
        .earliest()
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_else(|| since.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    let mut promised: BTreeSet<String> = store
        .audit_since(connection, start)?
        .into_iter()
        .filter(|e| e.kind == "promise")
        .filter_map(|e| e.invoice_id)
        .collect();
    // A promise still standing dates its invoice's payment better than any history.
    let mut standing: BTreeMap<String, NaiveDate> = BTreeMap::new();
    for (target, hold) in store.holds(connection)? {
        if let (HoldTarget::Invoice(id), Hold::Promise { until, .. }) = (target, hold) {
            if until >= today {
                standing.insert(id.clone(), until);
            }
            promised.insert(id);
        }
    }
    let mut by_customer: BTreeMap<String, Acc> = BTreeMap::new();
    let mut all_late = Vec::new();
    // Only the promised invoices' customers are looked up afterwards: with a million
    // invoices a map of every one would be most of the memory this takes.
    let mut customer_of: BTreeMap<String, (String, bool)> = BTreeMap::new();
    store.for_each_invoice(connection, &mut |r| {
        let s = &r.snapshot;
        if promised.contains(&s.remote_id) {
            customer_of.insert(
                s.remote_id.clone(),
                (s.customer.id.clone(), s.status.is_open()),
            );
        }
        let acc = by_customer.entry(s.customer.id.clone()).or_default();
        if acc.name.is_empty() {
            acc.name = s.customer.name.clone();
        }
        // A fee is a consequence of lateness already counted on the invoice it is for.
        let judged = !s.is_fee_invoice;
        if s.status.is_open() && s.amount_due > Decimal::ZERO {
            *acc.owed.entry(s.currency.code().to_string()).or_default() += s.amount_due;
            if judged && s.days_overdue(today) > cfg.late_after_days {
                acc.figures.open_late += 1;
            }
            if with_open {
                acc.open.push(Open {
                    id: s.remote_id.clone(),
                    number: s.display_number().to_string(),
                    currency: s.currency.code().to_string(),
                    amount_due: s.amount_due,
                    due_date: s.due_date,
                });
            }
        } else if let Some(p) = paid_on(&r).filter(|p| judged && p.on >= since && p.on <= today) {
            let late = (p.on - s.due_date).num_days();
            acc.figures.paid += 1;
            if late > cfg.late_after_days {
                acc.figures.paid_late += 1;
            }
            acc.days_late.push((p.on, late));
            all_late.push(late);
        }
        true
    })?;

    for id in promised {
        let Some((customer, open)) = customer_of.get(&id) else {
            continue;
        };
        let broken: BTreeSet<String> = store
            .journal_for_invoice(connection, &id)?
            .into_iter()
            .filter(|e| e.step_id.starts_with("promise/"))
            .map(|e| e.step_id)
            .collect();
        if let Some(acc) = by_customer.get_mut(customer) {
            acc.figures.promises_broken += broken.len() as u32;
            if broken.is_empty() && !open {
                acc.figures.promises_kept += 1;
            }
        }
    }

    let ledger_median = median(&mut all_late.clone());
    let ledger_max = all_late.iter().copied().max();
    let mut customers = Vec::with_capacity(by_customer.len());
    let mut forecast = Forecast::default();
    for (id, mut acc) in by_customer {
        if let Some((kept, broken)) = plans.get(&id) {
            acc.figures.plans_kept = *kept;
            acc.figures.plans_broken = *broken;
        }
        acc.figures.max_days_late = acc.days_late.iter().map(|(_, l)| *l).max();
        // Habits as lately seen: a customer who pays on time since being reminded is
        // expected on time, whatever their old debts took.
        acc.days_late.sort_unstable();
        let recent = acc
            .days_late
            .len()
            .saturating_sub(cfg.expect_from_last as usize);
        let mut lately: Vec<i64> = acc.days_late[recent..].iter().map(|(_, l)| *l).collect();
        acc.figures.median_days_late = median(&mut lately);
        let (profile, reason) = classify(&acc.figures, cfg);
        let mut open_invoices = Vec::with_capacity(acc.open.len());
        acc.open
            .sort_by(|a, b| (a.due_date, &a.id).cmp(&(b.due_date, &b.id)));
        for s in &acc.open {
            let expected = match standing.get(&s.id) {
                Some(until) => Expectation {
                    on: Some(*until),
                    basis: format!("promised by {until}"),
                },
                None => expected_date(
                    s.due_date,
                    today,
                    &acc.figures,
                    ledger_median,
                    ledger_max,
                    cfg,
                ),
            };
            if let Some(on) = expected.on {
                forecast.add(today, on, &s.currency, s.amount_due);
            }
            open_invoices.push(OpenInvoice {
                id: s.id.clone(),
                number: s.number.clone(),
                currency: s.currency.clone(),
                amount_due: s.amount_due,
                due_date: s.due_date,
                expected,
            });
        }
        customers.push(CustomerProfile {
            customer_id: id,
            name: acc.name,
            profile,
            reason,
            figures: acc.figures,
            owed: acc
                .owed
                .into_iter()
                .map(|(c, a)| {
                    let mut r = a;
                    if let Ok(cur) = c.parse::<overdued_connector::Currency>() {
                        r = cur.round(a);
                        r.rescale(cur.minor_units());
                    }
                    (c, r.to_string())
                })
                .collect(),
            open_invoices,
        });
    }
    customers.sort_by(|a, b| {
        a.name
            .to_lowercase()
            .cmp(&b.name.to_lowercase())
            .then_with(|| a.customer_id.cmp(&b.customer_id))
    });
    Ok(LedgerProfiles {
        connection: connection.to_string(),
        today,
        ledger_median_days_late: ledger_median,
        customers,
        forecast,
    })
}

/// Sets each case's payer profile from the connection's history, for the planner.
pub fn attach_profiles(
    store: &dyn Store,
    connection: &str,
    today: NaiveDate,
    tz: Tz,
    cfg: &PayerProfilesConfig,
    cases: &mut [crate::engine::InvoiceCase],
) -> Result<(), StoreError> {
    if cases.is_empty() {
        return Ok(());
    }
    let plans = plan_outcomes(store, connection, window_start(today, cfg))?;
    let profiles = compute(store, connection, today, tz, cfg, &plans, false)?;
    let by_customer = profiles.by_customer();
    for c in cases.iter_mut() {
        c.history.payer_profile = by_customer.get(&c.invoice.customer.id).copied();
    }
    Ok(())
}

/// `overdued customers [CONNECTION] [--json]`: every customer of the named connection (or
/// of every connection) as text, or as one JSON document.
pub fn customers_report(
    config: &crate::config::Config,
    store: &dyn Store,
    now: chrono::DateTime<chrono::Utc>,
    connection: Option<&str>,
    json: bool,
) -> Result<String, StoreError> {
    let tz = config.daemon.time_zone;
    let today = now.with_timezone(&tz).date_naive();
    let mut all = Vec::new();
    for c in config
        .connections
        .iter()
        .filter(|c| connection.is_none_or(|n| n == c.name))
    {
        all.push(ledger_profiles(
            store,
            &c.name,
            today,
            tz,
            &config.payer_profiles,
            &plan_outcomes(store, &c.name, window_start(today, &config.payer_profiles))?,
        )?);
    }
    if json {
        let doc = serde_json::json!({ "today": today, "connections": all });
        return Ok(serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n");
    }
    let mut out = String::new();
    for (i, p) in all.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&super::render::customers_text(p));
        for l in super::render::forecast_lines(&p.forecast) {
            out.push_str(&format!("  forecast: {l}\n"));
        }
    }
    Ok(out)
}

/// The first day of the history window ending `today`.
pub fn window_start(today: NaiveDate, cfg: &PayerProfilesConfig) -> NaiveDate {
    today - Duration::days(i64::from(cfg.history_days))
}
