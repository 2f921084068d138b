//! overdued's internal events: one struct per thing that happens, which both logs it
//! (one tracing line, the same words whichever vendor the connection is) and counts it,
//! so the log and the metrics can never name an outcome differently. The model is
//! vector's `src/internal_events/`.

use std::collections::BTreeMap;

use overdued_connector::ActionKind;
use tracing::{info, warn};

use crate::store::{ActionPayload, JournalEntry};

/// The target the action lines have always had, which users' log filters name (the demo
/// quiets it, for one).
const EXECUTOR: &str = "overdued::executor";

/// Something that happened: [`InternalEvent::emit`] logs it and counts it.
pub trait InternalEvent {
    fn emit(self, counts: &mut ActionCounts);
}

/// How an action ended, as the metrics and the webhooks name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ActionOutcome {
    Done,
    AlreadyDone,
    Skipped,
    Failed,
}

impl ActionOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionOutcome::Done => "done",
            ActionOutcome::AlreadyDone => "already_done",
            ActionOutcome::Skipped => "skipped",
            ActionOutcome::Failed => "failed",
        }
    }
}

/// Actions ended, by kind and outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActionCounts(BTreeMap<(ActionKind, ActionOutcome), u64>);

impl ActionCounts {
    fn add(&mut self, kind: ActionKind, outcome: ActionOutcome) {
        *self.0.entry((kind, outcome)).or_insert(0) += 1;
    }

    /// How many actions ended with `outcome`, of any kind.
    pub fn of(&self, outcome: ActionOutcome) -> u64 {
        self.0
            .iter()
            .filter(|((_, o), _)| *o == outcome)
            .map(|(_, n)| n)
            .sum()
    }

    pub fn iter(&self) -> impl Iterator<Item = (ActionKind, ActionOutcome, u64)> + '_ {
        self.0.iter().map(|((k, o), n)| (*k, *o, *n))
    }
}

/// What an owner reading an action line needs to know which invoice it is: its number,
/// the customer's name and the amount the action is about (the fee for a late fee, the
/// balance otherwise). Built from the cached invoice; without one, from the journal (ids
/// and the balance the plan saw).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct About {
    pub invoice_number: String,
    pub customer: String,
    pub amount: String,
}

impl About {
    pub fn of(entry: &JournalEntry, snap: Option<&overdued_connector::InvoiceSnapshot>) -> About {
        let fee = match entry.payload.action() {
            Some(ActionPayload::LateFee { amount, .. }) => Some(*amount),
            _ => None,
        };
        match snap {
            Some(s) => About {
                invoice_number: s.display_number().to_string(),
                customer: if s.customer.name.trim().is_empty() {
                    entry.customer_id.clone()
                } else {
                    s.customer.name.clone()
                },
                amount: fee
                    .unwrap_or_else(|| {
                        overdued_connector::Money::new(entry.expected_amount_due, s.currency)
                    })
                    .display_human()
                    .to_string(),
            },
            None => About {
                invoice_number: entry.invoice_id.clone(),
                customer: entry.customer_id.clone(),
                amount: fee
                    .map(|m| m.display_human().to_string())
                    .unwrap_or_else(|| entry.expected_amount_due.to_string()),
            },
        }
    }
}

/// The one wording of a finished action, whichever vendor carried it out.
pub fn done_wording(kind: ActionKind) -> &'static str {
    match kind {
        ActionKind::Remind => "reminder sent",
        ActionKind::LateFee => "late-fee invoice created",
        ActionKind::Note => "note written",
        ActionKind::Escalate => "escalated: automatic reminders stop; refer to collection",
    }
}

/// What an action is called in a sentence ("the reminder at step +7d failed").
pub fn action_noun(kind: ActionKind) -> &'static str {
    match kind {
        ActionKind::Remind => "reminder",
        ActionKind::LateFee => "late fee",
        ActionKind::Note => "note",
        ActionKind::Escalate => "escalation",
    }
}

/// The system confirmed an action (or recognised its key from an earlier attempt).
pub struct ActionDone<'a> {
    pub entry: &'a JournalEntry,
    pub about: About,
    pub replayed: bool,
}

impl InternalEvent for ActionDone<'_> {
    fn emit(self, counts: &mut ActionCounts) {
        let e = self.entry;
        let a = &self.about;
        let what = done_wording(e.kind);
        if e.kind == ActionKind::Escalate {
            warn!(target: EXECUTOR, connection = %e.connection, invoice = %a.invoice_number, customer = %a.customer, amount = %a.amount, step = %e.step_id, invoice_id = %e.invoice_id, key = %e.key, "{what}");
        } else {
            info!(target: EXECUTOR, connection = %e.connection, invoice = %a.invoice_number, customer = %a.customer, amount = %a.amount, step = %e.step_id, action = %e.kind, invoice_id = %e.invoice_id, key = %e.key, replayed = self.replayed, "{what}");
        }
        counts.add(e.kind, ActionOutcome::Done);
    }
}

/// The plan asked again for an action the journal already has as done.
pub struct ActionAlreadyDone {
    pub kind: ActionKind,
}

impl InternalEvent for ActionAlreadyDone {
    fn emit(self, counts: &mut ActionCounts) {
        // Every cycle re-plans the day: this is routine and not worth a line.
        counts.add(self.kind, ActionOutcome::AlreadyDone);
    }
}

/// An action dropped on purpose before it was sent (paid since planning, held, ...).
pub struct ActionSkipped<'a> {
    pub entry: &'a JournalEntry,
    pub about: About,
    pub reason: &'a str,
    /// Worth a line (a payment is; a duplicate is not).
    pub notable: bool,
}

impl InternalEvent for ActionSkipped<'_> {
    fn emit(self, counts: &mut ActionCounts) {
        let e = self.entry;
        if self.notable {
            let a = &self.about;
            info!(target: EXECUTOR, connection = %e.connection, invoice = %a.invoice_number, customer = %a.customer, amount = %a.amount, step = %e.step_id, action = %e.kind, invoice_id = %e.invoice_id, reason = %self.reason, "action dropped before sending");
        }
        counts.add(e.kind, ActionOutcome::Skipped);
    }
}

/// An action the system refused or could not be reached for.
pub struct ActionFailed<'a> {
    pub entry: &'a JournalEntry,
    pub about: About,
    pub error: &'a str,
    pub retry: bool,
}

impl InternalEvent for ActionFailed<'_> {
    fn emit(self, counts: &mut ActionCounts) {
        let e = self.entry;
        let a = &self.about;
        warn!(target: EXECUTOR, connection = %e.connection, invoice = %a.invoice_number, customer = %a.customer, amount = %a.amount, step = %e.step_id, action = %e.kind, invoice_id = %e.invoice_id, key = %e.key, error = %self.error, retry = self.retry, "action failed");
        counts.add(e.kind, ActionOutcome::Failed);
    }
}

/// The invoices about to be acted on could not be re-read: nothing is sent this cycle.
pub struct InvoicesNotReread<'a> {
    pub connection: &'a str,
    pub error: &'a str,
}

impl InvoicesNotReread<'_> {
    pub fn emit(self) {
        warn!(target: EXECUTOR, connection = %self.connection, error = %self.error, "cannot re-read invoices before acting; actions wait for the next cycle");
    }
}

/// An action that waits because its invoice could not be re-read before acting.
pub struct ActionWaiting {
    pub kind: ActionKind,
}

impl InternalEvent for ActionWaiting {
    fn emit(self, counts: &mut ActionCounts) {
        // One line for the whole cycle says why (see [`InvoicesNotReread`]).
        counts.add(self.kind, ActionOutcome::Failed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_wording_per_event_whichever_vendor() {
        let words: Vec<&str> = [
            ActionKind::Remind,
            ActionKind::LateFee,
            ActionKind::Note,
            ActionKind::Escalate,
        ]
        .into_iter()
        .map(done_wording)
        .collect();
        assert_eq!(
            words,
            [
                "reminder sent",
                "late-fee invoice created",
                "note written",
                "escalated: automatic reminders stop; refer to collection"
            ]
        );
    }

    #[test]
    fn counts_by_kind_and_outcome() {
        let mut c = ActionCounts::default();
        ActionAlreadyDone {
            kind: ActionKind::Remind,
        }
        .emit(&mut c);
        for _ in 0..2 {
            ActionWaiting {
                kind: ActionKind::LateFee,
            }
            .emit(&mut c);
        }
        assert_eq!(c.of(ActionOutcome::AlreadyDone), 1);
        assert_eq!(c.of(ActionOutcome::Failed), 2);
        assert_eq!(c.of(ActionOutcome::Done), 0);
        assert_eq!(
            c.iter().collect::<Vec<_>>(),
            vec![
                (ActionKind::Remind, ActionOutcome::AlreadyDone, 1),
                (ActionKind::LateFee, ActionOutcome::Failed, 2),
            ]
        );
    }
}
