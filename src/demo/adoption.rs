//! The first day's adoption: every invoice the demo's businesses already had past due
//! hears from overdued first by a courteous catch-up, and what has consequences waits
//! until the customer has had notice. Told from the plans of the day's cycles, the same
//! summary `overdued plan` starts with.

use std::collections::BTreeMap;

use crate::cycle::CycleReport;
use crate::engine::plan::{adoption_summary, AGE_BANDS, CATCH_UP};

use super::setup::STEPS;

/// The adoption lines of a day, or none when nothing is being adopted.
pub fn lines(reports: &[CycleReport]) -> Vec<String> {
    let mut invoices = 0;
    let mut today = 0;
    let mut by_age: BTreeMap<String, usize> = BTreeMap::new();
    let mut held: BTreeMap<&'static str, usize> = BTreeMap::new();
    for rep in reports {
        let Some(s) = adoption_summary(&rep.plan) else {
            continue;
        };
        invoices += s.invoices;
        today += rep
            .plan
            .actions
            .iter()
            .filter(|a| a.step_id == CATCH_UP)
            .count();
        for (band, n) in s.by_age {
            *by_age.entry(band).or_default() += n;
        }
        for (step, n) in s.held {
            *held.entry(held_label(&step)).or_default() += n;
        }
    }
    if invoices == 0 {
        return Vec::new();
    }
    let bands: Vec<String> = AGE_BANDS
        .iter()
        .map(|(band, _, _)| format!("{band} days: {}", by_age.get(*band).unwrap_or(&0)))
        .collect();
    let mut out = vec![format!(
        "adoption   {invoices} invoices were already past due when overdued started ({}); each first gets a courteous catch-up reminder, {today} today and the rest as the limit of one message per customer a day allows",
        bands.join(" · ")
    )];
    if !held.is_empty() {
        // In the policy's order, as the customer would meet them.
        let mut labels: Vec<&str> = STEPS.iter().map(|s| s.3).collect();
        labels.push("later step");
        let what: Vec<String> = labels
            .iter()
            .filter_map(|l| held.get(l).map(|n| format!("{l} x{n}")))
            .collect();
        out.push(format!(
            "           the steps their age would call for wait behind it, and the ladder runs on from it; no fee, stop-work, final notice or escalation comes without notice_days' notice: {}",
            what.join(", ")
        ));
    }
    out
}

/// What the demo policy calls a held step; fee periods (`+30d/p0`, summarised as
/// `+30d (late fee)`) are the late fee.
fn held_label(step: &str) -> &'static str {
    if step.contains("/p") || step.ends_with("(late fee)") {
        return "late fee";
    }
    STEPS
        .iter()
        .filter(|(offset, _, _, _)| *offset == step)
        .map(|s| s.3)
        .find(|label| *label != "late fee")
        .unwrap_or("later step")
}

#[cfg(test)]
mod tests {
    use super::held_label;

    #[test]
    fn held_steps_go_by_the_demo_policy_names() {
        assert_eq!(held_label("+30d/p0"), "late fee");
        assert_eq!(held_label("+30d/p2"), "late fee");
        assert_eq!(held_label("+30d (late fee)"), "late fee");
        // +30d is both the stop-work reminder and the fee step; a held reminder is the former.
        assert_eq!(held_label("+30d"), "stop-work");
        assert_eq!(held_label("+60d"), "final notice");
        assert_eq!(held_label("+90d"), "escalation");
        assert_eq!(held_label("+120d"), "later step");
    }
}
