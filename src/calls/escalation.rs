//! Taking an escalated invoice back into the ladder. An escalation stops every
//! automatic action for its invoice (the planner's gate); a resumption, recorded in the
//! audit log with the local date chasing starts again, lifts that gate from that date.
//! The escalate step stays done, so it is never repeated; the planner runs reminders
//! again from the resumption under the same conduct rules.

use chrono::{DateTime, NaiveDate, Utc};
use overdued_connector::ActionKind;
use serde_json::json;

use crate::store::{AuditEvent, JournalState, Store, StoreError};

/// The audit kind of a resumption; its detail is `{"from": "YYYY-MM-DD"}`.
pub const RESUMED: &str = "escalation_resumed";

/// When an escalated invoice was escalated (the escalate action's confirmation).
pub fn escalated_at(
    store: &dyn Store,
    connection: &str,
    invoice: &str,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    Ok(store
        .journal_for_invoice(connection, invoice)?
        .iter()
        .filter(|e| e.kind == ActionKind::Escalate)
        .filter_map(|e| match e.state {
            JournalState::Done { at, .. } => Some(at),
            _ => None,
        })
        .min())
}

/// The local date chasing of an escalated invoice resumes (or resumed), if it was taken
/// back into the ladder.
pub fn resumed_on(
    store: &dyn Store,
    connection: &str,
    invoice: &str,
) -> Result<Option<NaiveDate>, StoreError> {
    Ok(resumed_from_audit(
        &store.audit_for_invoice(connection, invoice)?,
    ))
}

/// [`resumed_on`] from an invoice's audit log, oldest first.
pub fn resumed_from_audit(events: &[AuditEvent]) -> Option<NaiveDate> {
    events
        .iter()
        .rev()
        .find(|e| e.kind == RESUMED)
        .and_then(|e| e.detail.get("from")?.as_str()?.parse().ok())
}

/// Records that chasing of escalated invoice `invoice` resumes on `from`.
pub fn resume(
    store: &dyn Store,
    connection: &str,
    invoice: &str,
    from: NaiveDate,
    why: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    store.append_audit(&AuditEvent {
        at: now,
        connection: connection.into(),
        invoice_id: Some(invoice.into()),
        kind: RESUMED.into(),
        message: format!("taken back from collection: reminders resume on {from} ({why})"),
        detail: json!({ "from": from.to_string() }),
    })?;
    store.flush()
}
