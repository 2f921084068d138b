//! `overdued called`: what a call settled, recorded and acted on.
//!
//! Each outcome is kept as a typed record in the audit log (kind `call_outcome`, one
//! event per invoice it concerns, the record in `detail`), so it survives restarts and
//! shows in `history` and `export`. It sets the hold it implies, queues a note on each
//! invoice in the ledger (a journalled note action the executor writes on the next
//! cycle, keyed by ledger, invoice, `call_outcome` and the outcome's time) and takes the
//! customer off the calls list or re-schedules them.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{DateTime, Duration, NaiveDate, SecondsFormat, Utc};
use overdued_connector::{ActionKind, IdempotencyKey, Money};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::ops::{self, OpError};
use crate::store::{
    ActionPayload, AuditEvent, Hold, HoldTarget, InvoiceRecord, JournalEntry, JournalPayload,
    JournalState, Store, StoreError,
};

/// How the pause a `paid` outcome sets begins: the calls list finds it by this.
pub const SAYS_PAID: &str = "the customer says paid on";

/// The audit kind of an outcome record.
pub const KIND: &str = "call_outcome";

/// What the person calling was told, as the CLI asks to record it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum CalledRequest {
    Promise {
        until: NaiveDate,
        /// As typed; checked against the balance where the invoices are.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        amount: Option<String>,
    },
    Dispute {
        reason: String,
    },
    NoAnswer,
    Paid {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        on: Option<NaiveDate>,
    },
    Handled,
    Collections,
}

/// An outcome as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum CallOutcome {
    Promise {
        until: NaiveDate,
        #[serde(default)]
        amount: Option<String>,
    },
    Dispute {
        reason: String,
    },
    NoAnswer {
        retry_on: NaiveDate,
    },
    Paid {
        on: NaiveDate,
    },
    Handled,
    Collections,
}

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeRecord {
    pub at: DateTime<Utc>,
    /// The caller's local date.
    pub on: NaiveDate,
    pub customer_id: String,
    pub customer_name: String,
    /// The invoices it concerns, by number.
    pub invoices: Vec<String>,
    #[serde(flatten)]
    pub outcome: CallOutcome,
}

impl OutcomeRecord {
    pub fn describe(&self) -> String {
        let what = match &self.outcome {
            CallOutcome::Promise {
                until,
                amount: Some(a),
            } => format!("promised {a} by {until}"),
            CallOutcome::Promise {
                until,
                amount: None,
            } => {
                format!("promised to pay by {until}")
            }
            CallOutcome::Dispute { reason } => format!("disputes: {reason}"),
            CallOutcome::NoAnswer { retry_on } => format!("no answer; call again on {retry_on}"),
            CallOutcome::Paid { on } => format!("says they paid on {on}"),
            CallOutcome::Handled => "handled".into(),
            CallOutcome::Collections => "sent to a collection agency".into(),
        };
        format!("{what} (call on {})", self.on)
    }
}

/// Every recorded outcome of a connection (the last two years), by customer id, oldest
/// first.
pub fn recorded(
    store: &dyn Store,
    connection: &str,
    now: DateTime<Utc>,
) -> Result<BTreeMap<String, Vec<OutcomeRecord>>, StoreError> {
    let mut out: BTreeMap<String, Vec<OutcomeRecord>> = BTreeMap::new();
    for e in store.audit_since(connection, now - Duration::days(730))? {
        if e.kind != KIND {
            continue;
        }
        let Ok(r) = serde_json::from_value::<OutcomeRecord>(e.detail) else {
            continue;
        };
        let list = out.entry(r.customer_id.clone()).or_default();
        // One event per invoice, each with the whole record: the same call once.
        if !list.contains(&r) {
            list.push(r);
        }
    }
    for list in out.values_mut() {
        list.sort_by_key(|o| o.at);
    }
    Ok(out)
}

/// The outcomes recorded for one invoice, oldest first.
pub fn for_invoice(events: &[AuditEvent]) -> Vec<OutcomeRecord> {
    events
        .iter()
        .filter(|e| e.kind == KIND)
        .filter_map(|e| serde_json::from_value(e.detail.clone()).ok())
        .collect()
}

/// Records outcome `req` of a call to `customer` (id, name or email) of `connection`,
/// about `invoice` (number or id) or every open invoice of theirs. Returns what to print.
pub fn record(
    config: &Config,
    store: &dyn Store,
    now: DateTime<Utc>,
    connection: &str,
    customer: &str,
    req: &CalledRequest,
    invoice: Option<&str>,
) -> Result<String, OpError> {
    ops::known_connection(config, connection)?;
    let conn_cfg = config
        .connection(connection)
        .ok_or_else(|| ops::usage(format!("no connection named {connection:?}")))?;
    let who = ops::resolve_customer(store, connection, customer)?;
    let today = now.with_timezone(&config.daemon.time_zone).date_naive();
    let targets: Vec<InvoiceRecord> = match invoice {
        Some(h) => {
            let r = ops::resolve_invoice(store, connection, h)?;
            if r.snapshot.customer.id != who.id {
                return Err(ops::usage(format!(
                    "--invoice {h}: invoice {} is billed to {}, not to {}",
                    r.snapshot.display_number(),
                    r.snapshot.customer.name,
                    who.name
                )));
            }
            if !r.snapshot.status.is_open() || r.snapshot.amount_due <= Decimal::ZERO {
                return Err(ops::usage(format!(
                    "--invoice {h}: invoice {} is {} with {} due; nothing to record a call about",
                    r.snapshot.display_number(),
                    format!("{:?}", r.snapshot.status).to_lowercase(),
                    r.snapshot.due_money().display_human()
                )));
            }
            vec![r]
        }
        None => {
            let mut v = Vec::new();
            store
                .for_each_invoice(connection, &mut |r| {
                    if r.snapshot.customer.id == who.id
                        && r.snapshot.status.is_open()
                        && r.snapshot.amount_due > Decimal::ZERO
                    {
                        v.push(r);
                    }
                    true
                })
                .map_err(ops::io)?;
            v
        }
    };
    if targets.is_empty() && !matches!(req, CalledRequest::Handled | CalledRequest::NoAnswer) {
        return Err(ops::usage(format!(
            "{connection}: {} (id {}) has no open invoice with a balance; nothing to hold",
            who.name, who.id
        )));
    }
    let numbers: Vec<String> = targets
        .iter()
        .map(|r| r.snapshot.display_number().to_string())
        .collect();
    let list = numbers.join(", ");

    // Validate everything before anything is written.
    let (outcome, effect) = match req {
        CalledRequest::Promise { until, amount } => {
            ops::check_promise_date(config, *until, today)?;
            let amount = match amount {
                None => None,
                Some(a) => {
                    let d = Decimal::from_str(a.trim())
                        .ok()
                        .filter(|d| *d > Decimal::ZERO)
                        .ok_or_else(|| {
                            ops::usage(format!(
                                "--amount {a:?}: expected a positive amount such as 250.00"
                            ))
                        })?;
                    let [one] = targets.as_slice() else {
                        return Err(ops::usage(format!(
                            "--amount {a}: {} has {} open invoices ({list}); name the one promised with --invoice",
                            who.name,
                            targets.len()
                        )));
                    };
                    if d > one.snapshot.amount_due {
                        return Err(ops::usage(format!(
                            "--amount {d} must be at most the balance of invoice {} ({})",
                            one.snapshot.display_number(),
                            one.snapshot.due_money().display_human()
                        )));
                    }
                    Some(d)
                }
            };
            let shown = amount.map(|a| {
                Money::new(a, targets[0].snapshot.currency)
                    .display_human()
                    .to_string()
            });
            (
                CallOutcome::Promise {
                    until: *until,
                    amount: shown.clone(),
                },
                format!(
                    "promise to pay {} by {until} recorded on invoice {list}: no chasing until then; chasing resumes after it if still unpaid",
                    shown.unwrap_or_else(|| "the balance".into())
                ),
            )
        }
        CalledRequest::Dispute { reason } => {
            let reason = reason.trim();
            if reason.is_empty() {
                return Err(ops::usage(
                    "--reason must say what is disputed (for example \"wrong quantity on line 2\")"
                        .into(),
                ));
            }
            let scope = if invoice.is_some() {
                format!("invoice {list}")
            } else {
                format!("every invoice of {}", who.name)
            };
            (
                CallOutcome::Dispute {
                    reason: reason.into(),
                },
                format!("{scope} paused (dispute: {reason}); `overdued resume` when it is settled"),
            )
        }
        CalledRequest::NoAnswer => {
            let retry_on = super::next_working_day(today);
            (
                CallOutcome::NoAnswer { retry_on },
                format!("no answer: {} stays on the calls list from {retry_on}", who.name),
            )
        }
        CalledRequest::Paid { on } => {
            let on = on.unwrap_or(today);
            if on > today {
                return Err(ops::usage(format!(
                    "--on {on} is in the future; a payment the customer says they made is on or before today ({today})"
                )));
            }
            (
                CallOutcome::Paid { on },
                format!("invoice {list} paused until the ledger shows the payment the customer says they made on {on}"),
            )
        }
        CalledRequest::Handled => (
            CallOutcome::Handled,
            format!("{} is off the calls list until something new is due", who.name),
        ),
        CalledRequest::Collections => (
            CallOutcome::Collections,
            format!("invoice {list} marked sent to a collection agency: no more messages, fees or calls from overdued"),
        ),
    };

    // The holds it implies.
    let hold_pause = |target: HoldTarget, reason: String| {
        store
            .put_hold(
                connection,
                &target,
                &Hold::Pause {
                    reason,
                    set_at: now,
                },
            )
            .map_err(ops::io)
    };
    match &outcome {
        CallOutcome::Promise { until, .. } => {
            let amount = match req {
                CalledRequest::Promise {
                    amount: Some(a), ..
                } => Decimal::from_str(a.trim()).ok(),
                _ => None,
            };
            for r in &targets {
                store
                    .put_hold(
                        connection,
                        &HoldTarget::Invoice(r.snapshot.remote_id.clone()),
                        &Hold::Promise {
                            until: *until,
                            amount,
                            balance_when_made: Some(r.snapshot.amount_due),
                            set_at: now,
                        },
                    )
                    .map_err(ops::io)?;
                // A promise on an escalated invoice takes it back into the ladder once
                // the promise (and its grace) has passed unkept.
                if super::escalation::escalated_at(store, connection, &r.snapshot.remote_id)
                    .map_err(ops::io)?
                    .is_some()
                {
                    let grace = i64::from(config.engine.promise_grace_days);
                    super::escalation::resume(
                        store,
                        connection,
                        &r.snapshot.remote_id,
                        *until + Duration::days(grace + 1),
                        "promise made on a call",
                        now,
                    )
                    .map_err(ops::io)?;
                }
            }
        }
        CallOutcome::Dispute { reason } => {
            let reason = format!("dispute (call on {today}): {reason}");
            if invoice.is_some() {
                for r in &targets {
                    hold_pause(
                        HoldTarget::Invoice(r.snapshot.remote_id.clone()),
                        reason.clone(),
                    )?;
                }
            } else {
                hold_pause(HoldTarget::Customer(who.id.clone()), reason)?;
            }
        }
        CallOutcome::Paid { on } => {
            for r in &targets {
                hold_pause(
                    HoldTarget::Invoice(r.snapshot.remote_id.clone()),
                    format!("{SAYS_PAID} {on}; held until the ledger shows it"),
                )?;
            }
        }
        CallOutcome::Collections => {
            for r in &targets {
                hold_pause(
                    HoldTarget::Invoice(r.snapshot.remote_id.clone()),
                    format!("sent to a collection agency on {today}: overdued sends nothing more"),
                )?;
            }
        }
        CallOutcome::NoAnswer { .. } | CallOutcome::Handled => {}
    }

    let rec = OutcomeRecord {
        at: now,
        on: today,
        customer_id: who.id.clone(),
        customer_name: who.name.clone(),
        invoices: numbers.clone(),
        outcome,
    };
    let detail = serde_json::to_value(&rec).map_err(|e| OpError {
        code: 70,
        message: e.to_string(),
    })?;
    let message = format!("call with {}: {}", who.name, rec.describe());

    // The note in the ledger, through the executor: journalled here, written with its
    // key at the next cycle, against the invoice as it then stands.
    let bound = store
        .get_tokens(connection)
        .map_err(ops::io)?
        .and_then(|t| t.bound_to);
    let ledger = conn_cfg.ledger(bound.as_deref());
    let step_id = format!(
        "{KIND}@{}",
        now.to_rfc3339_opts(SecondsFormat::Millis, true)
    );
    let mut noted = Vec::new();
    for r in &targets {
        let s = &r.snapshot;
        let audit = AuditEvent {
            at: now,
            connection: connection.into(),
            invoice_id: Some(s.remote_id.clone()),
            kind: KIND.into(),
            message: message.clone(),
            detail: detail.clone(),
        };
        let ledger = match &ledger {
            Some(l) => Some(l.clone()),
            None => store
                .journal_for_invoice(connection, &s.remote_id)
                .map_err(ops::io)?
                .into_iter()
                .find_map(|e| e.ledger),
        };
        match ledger {
            Some(ledger) => {
                let entry = JournalEntry {
                    key: IdempotencyKey::derive(&ledger, &s.remote_id, ActionKind::Note, &step_id),
                    connection: connection.into(),
                    invoice_id: s.remote_id.clone(),
                    customer_id: who.id.clone(),
                    kind: ActionKind::Note,
                    step_id: step_id.clone(),
                    planned_for: today,
                    created_at: now,
                    expected_amount_due: s.amount_due,
                    payload: JournalPayload::Action(ActionPayload::Note {
                        text: format!("overdued: {message}"),
                    }),
                    state: JournalState::Intent,
                    audit_note_done: false,
                    ledger: Some(ledger),
                    sent_key: None,
                };
                store
                    .put_journal_with_audit(&entry, &audit)
                    .map_err(ops::io)?;
                noted.push(s.display_number().to_string());
            }
            None => store.append_audit(&audit).map_err(ops::io)?,
        }
    }
    if targets.is_empty() {
        store
            .append_audit(&AuditEvent {
                at: now,
                connection: connection.into(),
                invoice_id: None,
                kind: KIND.into(),
                message: message.clone(),
                detail,
            })
            .map_err(ops::io)?;
    }
    store.flush().map_err(ops::io)?;
    tracing::info!(connection = %connection, customer = %who.name, customer_id = %who.id, invoices = %list, outcome = %rec.describe(), "call outcome recorded");

    let mut out = format!(
        "{connection}: call with {} (id {}) recorded: {}\n  {effect}\n",
        who.name,
        who.id,
        rec.describe()
    );
    if !noted.is_empty() {
        out.push_str(&format!(
            "  a note goes onto invoice {} in the ledger at the next cycle\n",
            noted.join(", ")
        ));
    } else if !targets.is_empty() {
        out.push_str("  no ledger note: the connection's company or organisation is not known yet (run a cycle first)\n");
    }
    Ok(out)
}
