//! Instalment payment plans ("arrangements"): a customer who cannot pay at once agrees to
//! pay one invoice, or several of theirs, in dated instalments. While the plan is kept the
//! covered invoices get no ordinary reminder, fee or escalation, only a heads-up before
//! each instalment and a reminder on its day; an instalment still unpaid
//! `plan_grace_days` after its date breaks the plan and the ladder resumes.
//!
//! A plan is a typed record in the store ([`Arrangement`]); what it stands at today
//! ([`Standing`]) is never stored but derived from the ledger's balances, so a payment
//! made through any route is credited without anyone recording it here.

pub mod ops;
mod schedule;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use overdued_connector::{Currency, Money};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

pub use schedule::{even_schedule, parse_schedule, ScheduleError};

/// One dated instalment of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instalment {
    pub due: NaiveDate,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
}

/// An invoice a plan covers, with its balance when the plan was agreed: what is paid
/// since is read from the difference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoveredInvoice {
    pub id: String,
    pub number: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub balance_when_agreed: Decimal,
}

/// A payment plan as agreed (and, once over, how it ended by hand or by a miss).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arrangement {
    /// Unique within its connection ("P1", "P2", ...): part of every key of its messages.
    pub id: String,
    pub connection: String,
    pub customer_id: String,
    pub customer_name: String,
    pub currency: Currency,
    pub invoices: Vec<CoveredInvoice>,
    pub instalments: Vec<Instalment>,
    pub agreed_at: DateTime<Utc>,
    /// The local day it was agreed: the ladder stood here while it was kept.
    pub agreed_on: NaiveDate,
    /// Set by `overdued cancel`.
    #[serde(default)]
    pub cancelled_on: Option<NaiveDate>,
    /// The first day the plan was seen broken; kept once set, so a late payment after
    /// the "plan missed" message does not revive a plan the customer was told has ended.
    #[serde(default)]
    pub broken_on: Option<NaiveDate>,
}

/// Where a plan stands on a day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Standing {
    /// Nothing is owed yet beyond what has been paid.
    Kept,
    /// Instalment `index` (0-based) is due or in its grace days, not fully paid.
    Due {
        index: usize,
    },
    /// Instalment `index` went unpaid past its grace days.
    Broken {
        index: usize,
        on: NaiveDate,
    },
    Completed,
    Cancelled {
        on: NaiveDate,
    },
}

impl Standing {
    pub fn label(&self) -> &'static str {
        match self {
            Standing::Kept => "kept",
            Standing::Due { .. } => "due",
            Standing::Broken { .. } => "broken",
            Standing::Completed => "completed",
            Standing::Cancelled { .. } => "cancelled",
        }
    }

    /// Still running: the covered invoices are not chased by the ladder.
    pub fn is_active(&self) -> bool {
        matches!(self, Standing::Kept | Standing::Due { .. })
    }
}

/// One instalment with what has been credited to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credited {
    pub due: NaiveDate,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub paid: Decimal,
}

impl Credited {
    pub fn outstanding(&self) -> Decimal {
        (self.amount - self.paid).max(Decimal::ZERO)
    }
}

impl Arrangement {
    pub fn total(&self) -> Decimal {
        self.instalments.iter().map(|i| i.amount).sum()
    }

    pub fn money(&self, amount: Decimal) -> Money {
        Money::new(amount, self.currency)
    }

    /// What has been paid towards the plan: the fall in the covered balances since it was
    /// agreed. `balances` gives each covered invoice's balance now (0 once closed); an
    /// invoice no longer known counts as unchanged.
    pub fn paid(&self, balance_now: &dyn Fn(&str) -> Option<Decimal>) -> Decimal {
        let mut paid = Decimal::ZERO;
        for c in &self.invoices {
            let now = balance_now(&c.id).unwrap_or(c.balance_when_agreed);
            paid += (c.balance_when_agreed - now).max(Decimal::ZERO);
        }
        paid.min(self.total())
    }

    /// The payments credited to the instalments in date order: a part-payment fills the
    /// earliest instalment first and the rest carries over to the next.
    pub fn credited(&self, paid: Decimal) -> Vec<Credited> {
        let mut left = paid;
        self.instalments
            .iter()
            .map(|i| {
                let p = left.min(i.amount).max(Decimal::ZERO);
                left -= p;
                Credited {
                    due: i.due,
                    amount: i.amount,
                    paid: p,
                }
            })
            .collect()
    }

    /// Where the plan stands on `today` after `paid` was paid, with `grace` days after an
    /// instalment's date before a shortfall breaks it.
    pub fn standing(&self, paid: Decimal, today: NaiveDate, grace: u32) -> Standing {
        if let Some(on) = self.cancelled_on {
            return Standing::Cancelled { on };
        }
        let credited = self.credited(paid);
        let first_open = credited
            .iter()
            .position(|c| c.outstanding() > Decimal::ZERO);
        if let Some(on) = self.broken_on {
            let index = first_open.unwrap_or(0);
            return Standing::Broken { index, on };
        }
        let Some(index) = first_open else {
            return Standing::Completed;
        };
        let due = credited[index].due;
        let grace_end = due + Duration::days(i64::from(grace));
        if today > grace_end {
            Standing::Broken {
                index,
                on: grace_end + Duration::days(1),
            }
        } else if today >= due {
            Standing::Due { index }
        } else {
            Standing::Kept
        }
    }

    /// The schedule as one line per instalment, with what remains of each.
    pub fn schedule_lines(&self, credited: &[Credited], only_open: bool) -> Vec<String> {
        credited
            .iter()
            .enumerate()
            .filter(|(_, c)| !only_open || c.outstanding() > Decimal::ZERO)
            .map(|(i, c)| {
                let paid = if c.paid >= c.amount {
                    " (paid)".to_string()
                } else if c.paid > Decimal::ZERO {
                    format!(
                        " ({} paid, {} to pay)",
                        self.money(c.paid).amount_human(),
                        self.money(c.outstanding()).amount_human()
                    )
                } else {
                    String::new()
                };
                format!(
                    "{}. {}: {}{paid}",
                    i + 1,
                    crate::engine::dates::long_date(c.due),
                    self.money(c.amount).display_human()
                )
            })
            .collect()
    }

    /// The invoices covered, as people know them.
    pub fn numbers(&self) -> String {
        self.invoices
            .iter()
            .map(|c| c.number.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The text of the ledger note written on each covered invoice when it is agreed.
    pub fn agreement_note(&self) -> String {
        let lines: Vec<String> = self
            .instalments
            .iter()
            .map(|i| format!("{} {}", i.due, self.money(i.amount).amount_human()))
            .collect();
        format!(
            "overdued: payment plan {} agreed on {} with {} for {} (invoices {}): {}. No reminders while it is kept.",
            self.id,
            self.agreed_on,
            self.customer_name,
            self.money(self.total()).display_human(),
            self.numbers(),
            lines.join("; ")
        )
    }
}

/// Whether a message template is one of a payment plan's (sent on its own, never in a
/// statement).
pub fn is_plan_template(t: Option<&str>) -> bool {
    matches!(
        t,
        Some("plan_agreed" | "instalment_heads_up" | "instalment_due" | "plan_missed")
    )
}

/// Gives each covered invoice among `cases` the latest plan covering it, as it stands on
/// `today`: balances from the cases (else the store), a plan whose "plan missed" message
/// went out stays broken.
pub fn attach(
    store: &dyn crate::store::Store,
    connection: &str,
    cases: &mut [crate::engine::plan::InvoiceCase],
    today: NaiveDate,
    tz: chrono_tz::Tz,
    settings: &crate::engine::EngineSettings,
) -> Result<(), crate::store::StoreError> {
    let mut plans = store.arrangements(connection)?;
    if plans.is_empty() {
        return Ok(());
    }
    plans.sort_by_key(|p| p.agreed_at);
    let index: std::collections::HashMap<String, usize> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| (c.invoice.remote_id.clone(), i))
        .collect();
    let missed_step = |p: &Arrangement| crate::engine::plan::missed_step(&p.id);
    for p in &plans {
        let mut balances = std::collections::BTreeMap::new();
        let mut missed_on: Option<NaiveDate> = None;
        for c in &p.invoices {
            let snap = match index.get(&c.id) {
                Some(i) => {
                    let h = &cases[*i].history;
                    let step = missed_step(p);
                    if let Some(r) = h.actions.iter().find(|r| r.step_id == step) {
                        let on = r.at.with_timezone(&tz).date_naive();
                        missed_on = Some(missed_on.map_or(on, |m: NaiveDate| m.min(on)));
                    }
                    Some(cases[*i].invoice.clone())
                }
                None => store.get_invoice(connection, &c.id)?.map(|r| r.snapshot),
            };
            if let Some(s) = snap {
                let open = s.status.is_open() && s.amount_due > Decimal::ZERO;
                balances.insert(
                    c.id.clone(),
                    if open { s.amount_due } else { Decimal::ZERO },
                );
            }
        }
        let paid = p.paid(&|id| balances.get(id).copied());
        let mut plan = p.clone();
        if plan.cancelled_on.is_none() && plan.broken_on.is_none() {
            // Told the customer it ended: it stays ended, whatever is paid after.
            plan.broken_on = missed_on.filter(|_| paid < p.total());
        }
        let standing = plan.standing(paid, today, settings.plan_grace_days);
        let carrier = p
            .invoices
            .iter()
            .find(|c| balances.get(&c.id).is_none_or(|b| *b > Decimal::ZERO))
            .map(|c| c.id.clone());
        for c in &p.invoices {
            let Some(i) = index.get(&c.id) else { continue };
            cases[*i].history.arrangement = Some(crate::engine::plan::ArrangementCase {
                id: p.id.clone(),
                agreed_on: p.agreed_on,
                standing: standing.clone(),
                carrier: carrier.as_deref() == Some(c.id.as_str()),
                numbers: p.numbers(),
                currency: p.currency,
                instalments: p.credited(paid),
                agreement_note: p.agreement_note(),
                carrier_number: carrier
                    .as_deref()
                    .and_then(|id| p.invoices.iter().find(|c| c.id == id))
                    .map(|c| c.number.clone())
                    .unwrap_or_default(),
                missed_sent: missed_on.is_some(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, m, day).unwrap()
    }

    fn plan() -> Arrangement {
        Arrangement {
            id: "P1".into(),
            connection: "acme".into(),
            customer_id: "7".into(),
            customer_name: "Sonnenschein".into(),
            currency: Currency::USD,
            invoices: vec![
                CoveredInvoice {
                    id: "1".into(),
                    number: "1001".into(),
                    balance_when_agreed: Decimal::from(200),
                },
                CoveredInvoice {
                    id: "2".into(),
                    number: "1002".into(),
                    balance_when_agreed: Decimal::from(100),
                },
            ],
            instalments: vec![
                Instalment {
                    due: d(12, 1),
                    amount: Decimal::from(100),
                },
                Instalment {
                    due: d(12, 15),
                    amount: Decimal::from(100),
                },
                Instalment {
                    due: d(12, 29),
                    amount: Decimal::from(100),
                },
            ],
            agreed_at: Utc::now(),
            agreed_on: d(11, 20),
            cancelled_on: None,
            broken_on: None,
        }
    }

    #[test]
    fn part_payments_carry_over_in_date_order() {
        let p = plan();
        // 60 on one invoice, 90 on the other: 150 credited, the second instalment half paid.
        let paid = p.paid(&|id| match id {
            "1" => Some(Decimal::from(140)),
            "2" => Some(Decimal::from(10)),
            _ => None,
        });
        assert_eq!(paid, Decimal::from(150));
        let c = p.credited(paid);
        assert_eq!(c[0].paid, Decimal::from(100));
        assert_eq!(c[1].paid, Decimal::from(50));
        assert_eq!(c[2].paid, Decimal::ZERO);
        // The second instalment is due and only half paid: within grace it is due...
        assert_eq!(p.standing(paid, d(12, 17), 3), Standing::Due { index: 1 });
        // ...and after grace the plan is broken on the day after the grace ends.
        assert_eq!(
            p.standing(paid, d(12, 19), 3),
            Standing::Broken {
                index: 1,
                on: d(12, 19)
            }
        );
        assert_eq!(p.standing(paid, d(12, 10), 3), Standing::Kept);
    }

    #[test]
    fn fully_paid_is_completed_and_cancel_wins() {
        let mut p = plan();
        assert_eq!(
            p.standing(Decimal::from(300), d(12, 31), 3),
            Standing::Completed
        );
        p.cancelled_on = Some(d(12, 2));
        assert_eq!(
            p.standing(Decimal::ZERO, d(12, 31), 3),
            Standing::Cancelled { on: d(12, 2) }
        );
    }

    #[test]
    fn a_broken_plan_stays_broken_after_a_late_payment() {
        let mut p = plan();
        p.broken_on = Some(d(12, 5));
        assert!(matches!(
            p.standing(Decimal::from(300), d(12, 31), 3),
            Standing::Broken { .. }
        ));
    }

    #[test]
    fn the_note_lists_the_schedule() {
        let n = plan().agreement_note();
        assert!(n.contains("2026-12-01 100.00"), "{n}");
        assert!(n.contains("invoices 1001, 1002"), "{n}");
    }
}
