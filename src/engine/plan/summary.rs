//! The summary `plan` starts with while adoptions are pending: how many invoices will
//! first hear from overdued by a catch-up, how old they are, and what waits behind it.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::conduct::CATCH_UP;
use super::{Plan, SkipCode};

/// Age bands in days overdue, as an owner reads an ageing report.
pub const AGE_BANDS: [(&str, i64, i64); 4] = [
    ("1-30", 1, 30),
    ("31-60", 31, 60),
    ("61-90", 61, 90),
    ("90+", 91, i64::MAX),
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdoptionSummary {
    /// Invoices whose first message from overdued is a catch-up (today or, outside the
    /// send window or over the daily limit, on the next run).
    pub invoices: usize,
    /// Count per age band, in [`AGE_BANDS`] order, every band listed.
    pub by_age: Vec<(String, usize)>,
    /// What each gets first: the template (always `catch_up`) and how many.
    pub first: BTreeMap<String, usize>,
    /// Steps held back behind the catch-up (by step id) and how many invoices each.
    pub held: BTreeMap<String, usize>,
}

/// `None` when no adoption is pending.
pub fn adoption_summary(plan: &Plan) -> Option<AdoptionSummary> {
    let mut ages: BTreeMap<&str, i64> = BTreeMap::new();
    for a in plan.actions.iter().filter(|a| a.step_id == CATCH_UP) {
        ages.insert(&a.invoice_id, a.days_overdue);
    }
    for s in &plan.skipped {
        if s.step_id.as_deref() == Some(CATCH_UP) {
            ages.insert(&s.invoice_id, s.days_overdue);
        }
    }
    if ages.is_empty() {
        return None;
    }
    let by_age = AGE_BANDS
        .iter()
        .map(|(name, lo, hi)| {
            let n = ages.values().filter(|d| (*lo..=*hi).contains(*d)).count();
            (name.to_string(), n)
        })
        .collect();
    let adopted: BTreeSet<&str> = ages.keys().copied().collect();
    let mut held: BTreeMap<String, usize> = BTreeMap::new();
    for s in &plan.skipped {
        if s.code == SkipCode::AwaitingNotice && adopted.contains(s.invoice_id.as_str()) {
            if let Some(step) = &s.step_id {
                // A fee step's id carries its period ("+30d/p0"): the owner knows the step.
                let label = match step.split_once("/p") {
                    Some((base, _)) => format!("{base} (late fee)"),
                    None => step.clone(),
                };
                *held.entry(label).or_default() += 1;
            }
        }
    }
    Some(AdoptionSummary {
        invoices: ages.len(),
        by_age,
        first: BTreeMap::from([(CATCH_UP.to_string(), ages.len())]),
        held,
    })
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeZone, Utc};
    use overdued_connector::{ActionKind, ConnectionId, IdempotencyKey};

    use super::*;
    use crate::engine::plan::{PlannedAction, Skipped};
    use crate::engine::policy::Channel;

    fn catch_up(id: &str, days: i64) -> PlannedAction {
        PlannedAction {
            connection: ConnectionId::new("c"),
            invoice_id: id.into(),
            invoice_number: id.into(),
            customer_id: id.into(),
            kind: ActionKind::Remind,
            step_id: CATCH_UP.into(),
            key: IdempotencyKey::derive("c", id, ActionKind::Remind, CATCH_UP),
            channel: Channel::Email,
            policy: "default".into(),
            days_overdue: days,
            message: None,
            template: Some(CATCH_UP.into()),
            context: None,
            ledger_text: None,
            fee: None,
            fee_posting: None,
            reason: String::new(),
        }
    }

    fn skip(id: &str, days: i64, step: &str, code: SkipCode) -> Skipped {
        Skipped {
            connection: ConnectionId::new("c"),
            invoice_id: id.into(),
            invoice_number: id.into(),
            customer_id: id.into(),
            days_overdue: days,
            step_id: Some(step.into()),
            code,
            reason: String::new(),
        }
    }

    fn plan(actions: Vec<PlannedAction>, skipped: Vec<Skipped>) -> Plan {
        Plan {
            generated_at: Utc.with_ymd_and_hms(2026, 11, 30, 10, 0, 0).unwrap(),
            time_zone: "UTC".into(),
            local_date: NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
            actions,
            skipped,
        }
    }

    #[test]
    fn counts_adoptions_by_age_band_and_what_waits() {
        let p = plan(
            vec![catch_up("a", 1), catch_up("b", 30), catch_up("c", 61)],
            vec![
                skip("d", 150, CATCH_UP, SkipCode::OutsideWindow),
                skip("d", 150, "+90d", SkipCode::AwaitingNotice),
                skip("c", 61, "+60d", SkipCode::AwaitingNotice),
                // Not an adoption: held for notice on an invoice already in the ladder.
                skip("e", 31, "+30d", SkipCode::AwaitingNotice),
            ],
        );
        let s = adoption_summary(&p).unwrap();
        assert_eq!(s.invoices, 4);
        assert_eq!(
            s.by_age,
            [
                ("1-30".to_string(), 2),
                ("31-60".to_string(), 0),
                ("61-90".to_string(), 1),
                ("90+".to_string(), 1)
            ]
        );
        assert_eq!(s.first, BTreeMap::from([("catch_up".to_string(), 4)]));
        assert_eq!(
            s.held,
            BTreeMap::from([("+60d".to_string(), 1), ("+90d".to_string(), 1)])
        );
        assert_eq!(adoption_summary(&plan(vec![], vec![])), None);
    }
}
