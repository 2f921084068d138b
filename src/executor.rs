//! Doing what the plan decided, exactly once.
//!
//! Every action goes through the journal: the intent is recorded (on disk) before
//! anything is sent; just before acting, the invoice is re-read from its system and the
//! action is dropped if the invoice is no longer open with the balance the plan saw, or
//! a person paused it since; the connector is called with the action's idempotency key;
//! the outcome is recorded (on disk); then an audit note goes to the ledger (itself
//! idempotent). A crash anywhere leaves an intent or an outcome behind; the next run
//! finishes intents with the same key, so the system de-duplicates any effect whose
//! response was lost, and nothing is ever sent twice.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use overdued_connector::{
    ActionKind, ActionReceipt, Clock, Connector, ConnectorError, EffectFound, ErrorClass,
    IdempotencyKey, InvoiceSnapshot, LateFeeRequest, NoteRequest, PriorEffect, ReminderRequest,
};
use rust_decimal::Decimal;
use serde::Serialize;
use tracing::warn;

use crate::channels::deliver::{self, Delivery};
use crate::channels::webhook::{self, Hooks};
use crate::channels::Mailer;
use crate::engine::Channel;
use crate::events::{
    ActionAlreadyDone, ActionCounts, ActionDone, ActionFailed, ActionOutcome, ActionSkipped,
    ActionWaiting, InternalEvent, InvoicesNotReread,
};
use crate::store::{
    AuditEvent, Hold, HoldTarget, JournalEntry, JournalPayload, JournalState, Store, StoreError,
};
use crate::sync::store_page;

pub use crate::store::ActionPayload;

/// An action the plan wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub key: IdempotencyKey,
    pub connection: String,
    pub invoice_id: String,
    pub customer_id: String,
    pub kind: ActionKind,
    pub step_id: String,
    pub planned_for: NaiveDate,
    pub expected_amount_due: Decimal,
    pub payload: ActionPayload,
}

/// How one action ended in this run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Done {
        replayed: bool,
    },
    AlreadyDone,
    Skipped {
        reason: String,
    },
    Failed {
        error: String,
        /// How the system's refusal is to be treated; a reconnect stops the run.
        #[serde(skip)]
        class: ErrorClass,
        retry: bool,
    },
}

impl Outcome {
    pub fn name(&self) -> ActionOutcome {
        match self {
            Outcome::Done { .. } => ActionOutcome::Done,
            Outcome::AlreadyDone => ActionOutcome::AlreadyDone,
            Outcome::Skipped { .. } => ActionOutcome::Skipped,
            Outcome::Failed { .. } => ActionOutcome::Failed,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ExecReport {
    pub results: Vec<(String, ActionKind, String, Outcome)>,
    /// The connection needs a person to reconnect it; nothing more was attempted.
    pub needs_reconnect: bool,
    /// The outcomes counted as their events were emitted.
    #[serde(skip)]
    pub counts: ActionCounts,
}

impl ExecReport {
    pub fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.results.iter().filter(|r| f(&r.3)).count()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Failed actions are retried on later cycles while they are this young; after that
/// the moment has passed and a later step of the policy takes over.
const RETRY_FOR_DAYS: i64 = 3;

/// How long the vendors are taken to remember an idempotency key. Neither documents
/// it; a day is common in the industry. An intent first attempted longer ago than this
/// is not retried blind: the ledger is searched for its effect first.
pub const KEY_WINDOW: Duration = Duration::hours(24);

/// Why an intent older than [`KEY_WINDOW`] is looked for (the lookup's audit record).
const PAST_THE_WINDOW: &str = "past the vendor's key window";

pub struct Executor<'a> {
    pub connector: &'a dyn Connector,
    pub store: &'a dyn Store,
    pub clock: &'a dyn Clock,
    /// The business's calendar day now, for fee invoice dates.
    pub today: NaiveDate,
    /// overdued's own email, for steps sent by SMTP.
    pub mailer: Option<&'a Mailer>,
    /// Where every action's outcome is announced, when webhooks are configured.
    pub hooks: Option<&'a Hooks>,
    /// The policies, for what an email needs at send time (how to pay, the PDF).
    pub policies: Option<crate::channels::facts::PolicyChoice<'a>>,
    /// The ledger the keys are derived from (`overdued_connector::ledger_scope`).
    pub ledger: &'a str,
    pub limits: CustomerLimits,
    /// Text messages, for steps sent by SMS.
    pub sms: Option<crate::channels::sms::deliver::Sender<'a>>,
}

impl Executor<'_> {
    /// Records the intents, then carries out the unfinished ones (this run's and those a
    /// crash or a failure left). An unfinished reminder the plan has moved past (another
    /// step of its invoice is planned now), or any action whose retries ran out (counted
    /// from the first attempt), is closed as superseded and never carried out. Reminders
    /// beyond a customer's daily limit wait for another day.
    pub async fn run(&self, intents: Vec<Intent>) -> Result<ExecReport, ExecError> {
        let conn = self.connector.connection().as_str().to_string();
        let mut report = ExecReport::default();
        let mut planned: HashSet<IdempotencyKey> = HashSet::new();
        for intent in intents {
            let existing = self.store.get_journal(&intent.key)?;
            // A re-planned intent keeps the time of its first attempt: the key window
            // runs from there (see `KEY_WINDOW`), however often it is re-recorded.
            let first_attempt = existing.as_ref().map(|e| e.created_at);
            match existing {
                Some(e) if matches!(e.state, JournalState::Done { .. }) => {
                    ActionAlreadyDone { kind: intent.kind }.emit(&mut report.counts);
                    report.results.push((
                        intent.invoice_id,
                        intent.kind,
                        intent.step_id,
                        Outcome::AlreadyDone,
                    ));
                    continue;
                }
                // Closed for good: its retries ran out, or the plan moved past it once.
                Some(e) if matches!(e.state, JournalState::Superseded { .. }) => {
                    let JournalState::Superseded { reason, .. } = e.state else {
                        unreachable!()
                    };
                    report.results.push((
                        intent.invoice_id,
                        intent.kind,
                        intent.step_id,
                        Outcome::Skipped {
                            reason: format!("superseded earlier: {reason}"),
                        },
                    ));
                    continue;
                }
                // An intent left by a crash, or a failure still within its retry
                // deadline, is finished below as it stands: same key, and its first
                // attempt's time kept for the deadline.
                Some(e)
                    if matches!(
                        e.state,
                        JournalState::Intent | JournalState::Failed { retry: true, .. }
                    ) =>
                {
                    // Left under a connection's former name: the renamed connection
                    // finishes it (the key is the ledger's, the same under either name).
                    if e.connection != intent.connection {
                        let mut e = e;
                        e.connection = intent.connection.clone();
                        self.store.put_journal(&e)?;
                        planned.insert(e.key);
                    } else {
                        planned.insert(e.key);
                    }
                    continue;
                }
                _ => {}
            }
            planned.insert(intent.key.clone());
            self.store.put_journal(&JournalEntry {
                key: intent.key.clone(),
                connection: intent.connection.clone(),
                invoice_id: intent.invoice_id.clone(),
                customer_id: intent.customer_id.clone(),
                kind: intent.kind,
                step_id: intent.step_id.clone(),
                planned_for: intent.planned_for,
                created_at: first_attempt.unwrap_or_else(|| self.clock.now()),
                expected_amount_due: intent.expected_amount_due,
                payload: JournalPayload::Action(intent.payload),
                state: JournalState::Intent,
                audit_note_done: false,
                ledger: Some(self.ledger.to_string()),
                sent_key: None,
            })?;
        }

        let (notes_due, unfinished): (Vec<JournalEntry>, Vec<JournalEntry>) = self
            .store
            .unfinished_journal(&conn)?
            .into_iter()
            .partition(|e| matches!(e.state, JournalState::Done { .. }));
        let pending = self.intake(unfinished, &planned, &mut report)?;
        if pending.is_empty() && notes_due.is_empty() {
            return Ok(report);
        }

        // One fresh read of every invoice about to be acted on.
        let ids: Vec<String> = {
            let mut seen = HashSet::new();
            pending
                .iter()
                .map(|e| e.invoice_id.clone())
                .filter(|id| seen.insert(id.clone()))
                .collect()
        };
        let fresh = if ids.is_empty() {
            HashMap::new()
        } else {
            match self.connector.fetch_invoices(&ids).await {
                Ok(list) => {
                    store_page(self.store, self.clock, &conn, list.clone(), &[])?;
                    list.into_iter().map(|s| (s.remote_id.clone(), s)).collect()
                }
                Err(e) => {
                    // Without fresh state nothing may be sent; intents stay for next time.
                    let error = e.to_string();
                    InvoicesNotReread {
                        connection: &conn,
                        error: &error,
                    }
                    .emit();
                    report.needs_reconnect = e.class() == ErrorClass::Reauth;
                    for p in &pending {
                        ActionWaiting { kind: p.kind }.emit(&mut report.counts);
                        report.results.push((
                            p.invoice_id.clone(),
                            p.kind,
                            p.step_id.clone(),
                            Outcome::Failed {
                                error: error.clone(),
                                class: e.class(),
                                retry: true,
                            },
                        ));
                    }
                    return Ok(report);
                }
            }
        };
        let holds = self.store.holds(&conn)?;
        let texts = self.deliver_sms(&pending, &fresh, &holds).await?;
        let mail = self.deliver_mail(&pending, &fresh, &holds, &texts).await?;

        for entry in pending {
            let reauth = self
                .carry_out(entry, &fresh, &holds, (&mail, &texts), &mut report)
                .await?;
            if reauth {
                report.needs_reconnect = true;
                break;
            }
        }
        if !report.needs_reconnect {
            let done_now = self
                .store
                .unfinished_journal(&conn)?
                .into_iter()
                .filter(|e| matches!(e.state, JournalState::Done { .. }));
            for entry in done_now {
                self.write_audit_note(entry).await?;
            }
        }
        Ok(report)
    }

    /// The webhook path's half of [`Executor::run`] (`crate::targeted`): the unfinished
    /// actions of the invoices in `fresh` (just re-read from the ledger) that must not
    /// go out any more (paid, voided, deleted, balance changed, on hold) are closed now,
    /// each as `run` closes it (an effect that may have gone through is looked for
    /// first). Nothing is sent: an action still due is left for the periodic cycle, whose
    /// plan sees the whole ledger (payer profiles, each customer's day).
    pub async fn close_stale(
        &self,
        fresh: &HashMap<String, InvoiceSnapshot>,
    ) -> Result<ExecReport, ExecError> {
        let conn = self.connector.connection().as_str().to_string();
        let mut report = ExecReport::default();
        let holds = self.store.holds(&conn)?;
        let now = self.clock.now();
        let stale: Vec<JournalEntry> = self
            .store
            .unfinished_journal(&conn)?
            .into_iter()
            .filter(|e| fresh.contains_key(&e.invoice_id))
            .filter(|e| !matches!(e.state, JournalState::Done { .. }))
            .filter(|e| {
                retries_expired(e, now).is_some()
                    || stale_reason(e, fresh.get(&e.invoice_id), &holds).is_some()
            })
            .collect();
        let (mail, texts) = (HashMap::new(), HashMap::new());
        for entry in stale {
            self.carry_out(entry, fresh, &holds, (&mail, &texts), &mut report)
                .await?;
        }
        Ok(report)
    }

    /// One unfinished action through [`Executor::execute_one`], announced and added to
    /// `report`; true when it failed for want of a reconnect.
    async fn carry_out(
        &self,
        mut entry: JournalEntry,
        fresh: &HashMap<String, InvoiceSnapshot>,
        holds: &[(HoldTarget, Hold)],
        sends: (
            &HashMap<IdempotencyKey, Delivery>,
            &HashMap<IdempotencyKey, crate::channels::sms::SmsDelivery>,
        ),
        report: &mut ExecReport,
    ) -> Result<bool, ExecError> {
        let snapshot = fresh.get(&entry.invoice_id);
        let outcome = self
            .execute_one(&mut entry, snapshot, holds, sends, &mut report.counts)
            .await?;
        self.announce(&entry, &outcome);
        let reauth = matches!(
            outcome,
            Outcome::Failed {
                class: ErrorClass::Reauth,
                ..
            }
        );
        report
            .results
            .push((entry.invoice_id, entry.kind, entry.step_id, outcome));
        Ok(reauth)
    }

    /// Which unfinished actions are carried out now: all but those closed as superseded
    /// (the plan moved past them, or their retry deadline passed), within each
    /// customer's daily limit.
    fn intake(
        &self,
        unfinished: Vec<JournalEntry>,
        planned: &HashSet<IdempotencyKey>,
        report: &mut ExecReport,
    ) -> Result<Vec<JournalEntry>, ExecError> {
        let now = self.clock.now();
        // The reminder steps the plan wants now, by invoice: any other reminder step of
        // the same invoice is one the plan moved past.
        let current_reminders: HashMap<&str, Vec<&str>> = {
            let mut m: HashMap<&str, Vec<&str>> = HashMap::new();
            for e in unfinished.iter().filter(|e| planned.contains(&e.key)) {
                if e.kind == ActionKind::Remind {
                    m.entry(e.invoice_id.as_str())
                        .or_default()
                        .push(e.step_id.as_str());
                }
            }
            m
        };
        let mut superseded = Vec::new();
        let mut pending = Vec::new();
        for e in &unfinished {
            if let Some(reason) = retries_expired(e, now) {
                superseded.push((e.clone(), reason));
            } else if let Some(steps) = current_reminders
                .get(e.invoice_id.as_str())
                .filter(|_| e.kind == ActionKind::Remind && !planned.contains(&e.key))
            {
                superseded.push((
                    e.clone(),
                    format!(
                        "the plan moved past step {} to {}",
                        e.step_id,
                        steps.join(", ")
                    ),
                ));
            } else {
                // Planned now, or left by a crash that the plan no longer names (a note
                // beside an escalation done since): finished under its key, within its
                // deadline and the customer's daily limit.
                pending.push(e.clone());
            }
        }
        for (mut e, reason) in superseded {
            self.supersede(&mut e, reason, &mut report.counts)?;
            report.results.push((
                e.invoice_id.clone(),
                e.kind,
                e.step_id.clone(),
                Outcome::Skipped {
                    reason: match &e.state {
                        JournalState::Superseded { reason, .. } => format!("superseded: {reason}"),
                        _ => unreachable!(),
                    },
                },
            ));
        }
        let mut sent_today = self.limits.sent_today.clone();
        // A customer's reminders by our own email in one run leave as one statement: after
        // the first, they add no message to the day's count.
        let mut in_statement: HashSet<String> = HashSet::new();
        let mut out = Vec::with_capacity(pending.len());
        for e in pending {
            if e.kind == ActionKind::Remind {
                let by_smtp_only = matches!(
                    e.payload.action(),
                    Some(ActionPayload::Remind {
                        channel: Some(Channel::Smtp),
                        ..
                    })
                );
                if by_smtp_only && in_statement.contains(&e.customer_id) {
                    out.push(e);
                    continue;
                }
                let limit = self.limits.limit_of(&e.customer_id);
                let count = sent_today.entry(e.customer_id.clone()).or_default();
                if limit > 0 && *count >= limit {
                    ActionWaiting { kind: e.kind }.emit(&mut report.counts);
                    report.results.push((
                        e.invoice_id.clone(),
                        e.kind,
                        e.step_id.clone(),
                        Outcome::Skipped {
                            reason: format!(
                                "customer already reminded {count} time(s) today (limit {limit}); left for another day"
                            ),
                        },
                    ));
                    continue;
                }
                *count += 1;
                if by_smtp_only {
                    in_statement.insert(e.customer_id.clone());
                }
            }
            out.push(e);
        }
        Ok(out)
    }

    fn supersede(
        &self,
        entry: &mut JournalEntry,
        reason: String,
        counts: &mut ActionCounts,
    ) -> Result<(), ExecError> {
        entry.state = JournalState::Superseded {
            at: self.clock.now(),
            reason: reason.clone(),
        };
        entry.audit_note_done = true;
        ActionSkipped {
            about: self.about(entry),
            entry,
            reason: &reason,
            notable: true,
        }
        .emit(counts);
        self.put_with_audit(
            entry,
            "superseded",
            format!(
                "{} ({}) superseded, never carried out: {reason}",
                entry.kind, entry.step_id
            ),
            serde_json::json!({"key": entry.key, "sent_key": entry.sent_key}),
        )?;
        Ok(())
    }

    /// Sends the SMTP part of every reminder about to go out, a customer's together, before
    /// the per-action loop records each outcome.
    async fn deliver_mail(
        &self,
        pending: &[JournalEntry],
        fresh: &HashMap<String, InvoiceSnapshot>,
        holds: &[(HoldTarget, Hold)],
        texts: &HashMap<IdempotencyKey, crate::channels::sms::SmsDelivery>,
    ) -> Result<HashMap<IdempotencyKey, Delivery>, ExecError> {
        let Some(mailer) = self.mailer else {
            return Ok(HashMap::new());
        };
        let now = self.clock.now();
        let mut items = Vec::new();
        for e in pending {
            let Some(ActionPayload::Remind {
                subject,
                body,
                channel: Some(channel),
                template,
                context,
            }) = e.payload.action().cloned()
            else {
                continue;
            };
            let snapshot = fresh.get(&e.invoice_id);
            if !crate::channels::sms::email_by_smtp(channel, true, texts.get(&e.key))
                || retries_expired(e, now).is_some()
                || stale_reason(e, snapshot, holds).is_some()
            {
                continue;
            }
            let Some(snapshot) = snapshot else { continue };
            items.push(deliver::Pending {
                entry: e.clone(),
                snapshot: snapshot.clone(),
                template,
                context: context.map(|c| *c),
                subject,
                body,
            });
        }
        if items.is_empty() {
            return Ok(HashMap::new());
        }
        let sources = crate::channels::facts::Sources {
            connector: self.connector,
            policies: self.policies,
        };
        Ok(deliver::deliver(mailer, self.store, self.clock, self.today, sources, items).await?)
    }

    /// Sends the text message of every reminder about to go out by SMS, before the
    /// emails: a text that cannot go (no consent now, STOP) is replaced by the email.
    async fn deliver_sms(
        &self,
        pending: &[JournalEntry],
        fresh: &HashMap<String, InvoiceSnapshot>,
        holds: &[(HoldTarget, Hold)],
    ) -> Result<HashMap<IdempotencyKey, crate::channels::sms::SmsDelivery>, ExecError> {
        let Some(sender) = &self.sms else {
            return Ok(HashMap::new());
        };
        let now = self.clock.now();
        let mut items = Vec::new();
        for e in pending {
            let Some(ActionPayload::Remind {
                channel: Some(channel),
                template,
                ..
            }) = e.payload.action().cloned()
            else {
                continue;
            };
            let snapshot = fresh.get(&e.invoice_id);
            if !channel.uses_sms()
                || retries_expired(e, now).is_some()
                || stale_reason(e, snapshot, holds).is_some()
            {
                continue;
            }
            let Some(snapshot) = snapshot else { continue };
            items.push(crate::channels::sms::deliver::Pending {
                entry: e.clone(),
                snapshot: snapshot.clone(),
                template,
            });
        }
        if items.is_empty() {
            return Ok(HashMap::new());
        }
        let sources = crate::channels::facts::Sources {
            connector: self.connector,
            policies: self.policies,
        };
        Ok(sender
            .deliver(self.store, self.clock, self.today, sources, items)
            .await?)
    }

    fn announce(&self, entry: &JournalEntry, outcome: &Outcome) {
        let Some(hooks) = self.hooks else { return };
        let detail = match outcome {
            Outcome::Done { .. } | Outcome::AlreadyDone => None,
            Outcome::Skipped { reason } => Some(reason.clone()),
            Outcome::Failed { error, .. } => Some(error.clone()),
        };
        hooks.emit(webhook::Event {
            event: "action".into(),
            at: self.clock.now(),
            connection: entry.connection.clone(),
            invoice_id: entry.invoice_id.clone(),
            customer_id: entry.customer_id.clone(),
            kind: entry.kind.to_string(),
            step: entry.step_id.clone(),
            key: entry.key.to_string(),
            outcome: outcome.name().as_str().into(),
            detail,
        });
    }

    async fn execute_one(
        &self,
        entry: &mut JournalEntry,
        fresh: Option<&InvoiceSnapshot>,
        holds: &[(HoldTarget, Hold)],
        (mail, texts): (
            &HashMap<IdempotencyKey, Delivery>,
            &HashMap<IdempotencyKey, crate::channels::sms::SmsDelivery>,
        ),
        counts: &mut ActionCounts,
    ) -> Result<Outcome, ExecError> {
        let expired = retries_expired(entry, self.clock.now());
        let stale = stale_reason(entry, fresh, holds);
        // An action about to be closed unsent may have gone through already: a write
        // applied whose answer was lost, or a process killed before it saved the
        // answer. Closing it as skipped would leave an effect in the ledger that the
        // journal denies, and without its audit note: look for it first.
        let went_through = match (&expired, &stale, fresh) {
            (None, None, _) | (_, _, None) => None,
            (_, _, Some(snap)) => self.went_through(entry, snap).await?,
        };
        if went_through.is_none() {
            if let Some(reason) = expired {
                self.supersede(entry, reason.clone(), counts)?;
                return Ok(Outcome::Skipped {
                    reason: format!("superseded: {reason}"),
                });
            }
            if let Some(reason) = stale {
                return self.skip(entry, reason.0, reason.1, counts);
            }
        }
        let snap = fresh.expect("stale_reason returns a reason when the invoice is unknown");
        let Some(payload) = entry.payload.action().cloned() else {
            // A connection's open journal holds only its actions; the sends have their own.
            return self.skip(
                entry,
                "journal record is not an action".into(),
                false,
                counts,
            );
        };
        // The key the vendor may already hold for this action (see `JournalEntry::sent_key`).
        let key = entry.vendor_key().clone();
        let prior = match (went_through, self.prior_effect(entry, &payload, snap)) {
            (Some(receipt), _) => Some(Ok(Some(receipt))),
            (None, Some(effect))
                if self.clock.now().signed_duration_since(entry.created_at) > KEY_WINDOW =>
            {
                Some(self.look_for(entry, &effect, PAST_THE_WINDOW).await?)
            }
            _ => None,
        };
        let from_ledger = matches!(prior, Some(Ok(Some(_))));
        let result = match prior {
            Some(Ok(Some(receipt))) => Ok(receipt),
            Some(Err(e)) => Err(e),
            _ => match &payload {
                ActionPayload::Remind { channel, .. } => {
                    let channel = channel.unwrap_or(Channel::Email);
                    let text = texts.get(&entry.key);
                    let has_smtp = self.mailer.is_some();
                    let by_system = if channel.uses_sms() {
                        crate::channels::sms::email_by_system(channel, has_smtp, text)
                    } else {
                        !channel.uses_smtp() || channel.uses_system_email()
                    };
                    let system = if !by_system {
                        None
                    } else {
                        Some(
                            self.connector
                                .send_reminder(
                                    &ReminderRequest {
                                        invoice_id: entry.invoice_id.clone(),
                                        // No address on the invoice (QuickBooks: no BillEmail):
                                        // the customer's own (PrimaryEmailAddr) as sendTo.
                                        to: match &snap.customer.email {
                                            Some(_) => None,
                                            None => self
                                                .store
                                                .get_customer(&entry.connection, &snap.customer.id)?
                                                .and_then(|c| c.email),
                                        },
                                    },
                                    &key,
                                )
                                .await,
                        )
                    };
                    let by_smtp = crate::channels::sms::email_by_smtp(channel, has_smtp, text);
                    let email = match (system, by_smtp) {
                        (Some(r), false) => Some(r),
                        (Some(Err(e)), true) => Some(Err(e)),
                        (None, false) if channel.uses_sms() => None,
                        (_, _) => Some(smtp_receipt(mail.get(&entry.key), self.clock.now())),
                    };
                    if channel.uses_sms() {
                        crate::channels::sms::deliver::receipt(
                            channel,
                            email,
                            text,
                            self.clock.now(),
                        )
                    } else {
                        email.expect("every channel but SMS has an email part")
                    }
                }
                ActionPayload::LateFee {
                    amount,
                    description,
                    posting,
                    due_in_days,
                    ..
                } => {
                    let req = LateFeeRequest {
                        invoice_id: entry.invoice_id.clone(),
                        invoice_number: snap.display_number().to_string(),
                        customer_id: snap.customer.id.clone(),
                        amount: *amount,
                        description: description.clone(),
                        posting: *posting,
                        issue_date: self.today,
                        due_date: self.today + Duration::days(i64::from(*due_in_days)),
                    };
                    self.connector.create_late_fee(&req, &key).await
                }
                ActionPayload::Note { text } | ActionPayload::Escalate { text } => {
                    self.connector
                        .add_note(
                            &NoteRequest {
                                invoice_id: entry.invoice_id.clone(),
                                text: text.clone(),
                            },
                            &key,
                        )
                        .await
                }
            },
        };
        // A text that could not go was replaced by the email: the record says what went.
        let payload = match (&result, texts.get(&entry.key)) {
            (Ok(_), Some(text)) => {
                let p =
                    crate::channels::sms::deliver::as_sent(payload, text, self.mailer.is_some());
                entry.payload = JournalPayload::Action(p.clone());
                p
            }
            _ => payload,
        };
        match result {
            Ok(receipt) => {
                entry.state = JournalState::Done {
                    at: if from_ledger {
                        receipt.at
                    } else {
                        self.clock.now()
                    },
                    created_id: receipt.created_id.clone(),
                    replayed: receipt.replayed,
                };
                // Notes and escalations are their own ledger record.
                entry.audit_note_done = matches!(
                    payload,
                    ActionPayload::Note { .. } | ActionPayload::Escalate { .. }
                );
                let message = describe_done(&payload, entry, receipt.created_id.as_deref());
                self.put_with_audit(entry, "action", message, serde_json::json!({"key": entry.key, "step": entry.step_id, "payload": payload}))?;
                ActionDone {
                    about: crate::events::About::of(entry, Some(snap)),
                    entry,
                    replayed: receipt.replayed,
                }
                .emit(counts);
                Ok(Outcome::Done {
                    replayed: receipt.replayed,
                })
            }
            Err(e @ ConnectorError::CircuitOpen { .. }) => {
                // Nothing was sent: the journal keeps the intent as it stands (no failed
                // attempt counted) and the next cycle carries it out. The breaker logged
                // the outage once; one line per action would bury it.
                ActionWaiting { kind: entry.kind }.emit(counts);
                Ok(Outcome::Failed {
                    error: e.to_string(),
                    class: e.class(),
                    retry: true,
                })
            }
            Err(e) => {
                let retry = e.is_retryable() || e.class() == ErrorClass::Reauth;
                let attempts = match &entry.state {
                    JournalState::Failed { attempts, .. } => attempts + 1,
                    _ => 1,
                };
                let error = e.to_string();
                entry.state = JournalState::Failed {
                    at: self.clock.now(),
                    error: error.clone(),
                    attempts,
                    retry,
                };
                self.put_with_audit(
                    entry,
                    "failed",
                    format!("{} ({}) failed: {error}", entry.kind, entry.step_id),
                    serde_json::json!({"key": entry.key, "retry": retry}),
                )?;
                ActionFailed {
                    about: crate::events::About::of(entry, Some(snap)),
                    entry,
                    error: &error,
                    retry,
                }
                .emit(counts);
                Ok(Outcome::Failed {
                    error,
                    class: e.class(),
                    retry,
                })
            }
        }
    }

    /// What carrying out `payload` leaves in the ledger, for the lookup past the key
    /// window; `None` when nothing goes to the system (a reminder sent by SMTP alone,
    /// whose delivery record is overdued's own).
    fn prior_effect(
        &self,
        entry: &JournalEntry,
        payload: &ActionPayload,
        snap: &InvoiceSnapshot,
    ) -> Option<PriorEffect> {
        Some(match payload {
            ActionPayload::Remind { channel, .. } => {
                let channel = channel.unwrap_or(Channel::Email);
                // A text message's step may go by the system's email too (its email part,
                // or the email that took over): that email is what the ledger shows.
                let by_system = if channel.uses_sms() {
                    self.mailer.is_none()
                } else {
                    !channel.uses_smtp() || channel.uses_system_email()
                };
                if !by_system {
                    return None;
                }
                PriorEffect::Reminder {
                    invoice_id: entry.invoice_id.clone(),
                    since: entry.created_at,
                }
            }
            ActionPayload::LateFee { posting, .. } => PriorEffect::LateFee {
                invoice_id: entry.invoice_id.clone(),
                invoice_number: snap.display_number().to_string(),
                customer_id: snap.customer.id.clone(),
                separate: *posting == overdued_connector::FeePosting::SeparateInvoice,
                since: entry.created_at,
            },
            ActionPayload::Note { text } | ActionPayload::Escalate { text } => PriorEffect::Note {
                invoice_id: entry.invoice_id.clone(),
                text: text.clone(),
            },
        })
    }

    /// For an action attempted before that is now to be closed unsent (its invoice was
    /// paid or changed, or its retries ran out): the receipt of its earlier attempt
    /// when the ledger shows that attempt went through, so it is recorded as done (as
    /// replayed) and gets its audit note. `None` when it was never attempted, cannot be
    /// looked for, was not found, or the lookup failed: it is closed as before.
    async fn went_through(
        &self,
        entry: &JournalEntry,
        snap: &InvoiceSnapshot,
    ) -> Result<Option<ActionReceipt>, StoreError> {
        // An intent is recorded before its first attempt, so it may have been sent.
        if !matches!(
            entry.state,
            JournalState::Intent | JournalState::Failed { .. }
        ) {
            return Ok(None);
        }
        let Some(payload) = entry.payload.action() else {
            return Ok(None);
        };
        let Some(effect) = self.prior_effect(entry, payload, snap) else {
            return Ok(None);
        };
        Ok(self
            .look_for(entry, &effect, "about to be closed unsent")
            .await?
            .unwrap_or(None))
    }

    /// Looks in the ledger for `effect` and records what was found in the audit log
    /// (`why` says why it was looked for). `Some` receipt when the earlier attempt went
    /// through (the action is then done, as replayed); `None` when it must be carried
    /// out.
    async fn look_for(
        &self,
        entry: &JournalEntry,
        effect: &PriorEffect,
        why: &str,
    ) -> Result<Result<Option<ActionReceipt>, ConnectorError>, StoreError> {
        let found = match self.connector.find_effect(effect).await {
            Ok(f) => f,
            Err(e) => return Ok(Err(e)),
        };
        let (what, receipt) = match &found {
            EffectFound::Found { created_id } => (
                "found in the ledger: the earlier attempt went through; not sent again",
                Some(ActionReceipt {
                    created_id: created_id.clone(),
                    // It went through when it was attempted, not now: the plan spaces
                    // the next steps and counts the day's messages from this.
                    at: match entry.state {
                        JournalState::Failed { at, .. } => at,
                        _ => entry.created_at,
                    },
                    replayed: true,
                }),
            ),
            EffectFound::NotFound => ("not in the ledger: carried out now", None),
            EffectFound::Unknown => (
                "the system cannot be searched for it: carried out under its key",
                None,
            ),
        };
        tracing::info!(connection = %entry.connection, invoice = %entry.invoice_id, key = %entry.key, first_attempt = %entry.created_at, why, outcome = what, "looked in the ledger for the effect of an earlier attempt");
        self.store.append_audit(&AuditEvent {
            at: self.clock.now(),
            connection: entry.connection.clone(),
            invoice_id: Some(entry.invoice_id.clone()),
            kind: "lookup".into(),
            message: format!(
                "{} ({}) first attempted {}, {why}: {what}",
                entry.kind,
                entry.step_id,
                entry.created_at.format("%Y-%m-%d %H:%M UTC")
            ),
            detail: serde_json::json!({"key": entry.key, "found": matches!(found, EffectFound::Found { .. }), "searchable": !matches!(found, EffectFound::Unknown)}),
        })?;
        Ok(Ok(receipt))
    }

    fn skip(
        &self,
        entry: &mut JournalEntry,
        reason: String,
        notable: bool,
        counts: &mut ActionCounts,
    ) -> Result<Outcome, ExecError> {
        entry.state = JournalState::Skipped {
            at: self.clock.now(),
            reason: reason.clone(),
        };
        entry.audit_note_done = true;
        self.put_with_audit(
            entry,
            "skipped",
            format!("{} ({}) not sent: {reason}", entry.kind, entry.step_id),
            serde_json::json!({"key": entry.key}),
        )?;
        ActionSkipped {
            about: self.about(entry),
            entry,
            reason: &reason,
            notable,
        }
        .emit(counts);
        Ok(Outcome::Skipped { reason })
    }

    /// Who and what an action line names, from the cached invoice when there is one.
    fn about(&self, entry: &JournalEntry) -> crate::events::About {
        let snap = self
            .store
            .get_invoice(&entry.connection, &entry.invoice_id)
            .ok()
            .flatten()
            .map(|r| r.snapshot);
        crate::events::About::of(entry, snap.as_ref())
    }

    /// Records the entry's new state and its audit record in one transaction, so the
    /// history never lags the journal.
    fn put_with_audit(
        &self,
        entry: &JournalEntry,
        kind: &str,
        message: String,
        detail: serde_json::Value,
    ) -> Result<(), StoreError> {
        self.store.put_journal_with_audit(
            entry,
            &AuditEvent {
                at: self.clock.now(),
                connection: entry.connection.clone(),
                invoice_id: Some(entry.invoice_id.clone()),
                kind: kind.into(),
                message,
                detail,
            },
        )
    }

    async fn write_audit_note(&self, mut entry: JournalEntry) -> Result<(), ExecError> {
        let when: DateTime<Utc> = match &entry.state {
            JournalState::Done { at, .. } => *at,
            _ => return Ok(()),
        };
        let what = match entry.payload.action() {
            Some(ActionPayload::Remind { .. }) => "reminder sent".to_string(),
            Some(ActionPayload::LateFee {
                amount,
                explanation,
                ..
            }) => format!("late fee {amount} charged ({explanation})"),
            _ => return Ok(()),
        };
        let text = format!(
            "overdued {}: {what}, step {}, ref {}",
            when.format("%Y-%m-%d %H:%M UTC"),
            entry.step_id,
            entry.key
        );
        let key = entry.audit_note_key();
        // Past the key window the note's key may be forgotten: a note already there is
        // not written twice.
        if self.clock.now().signed_duration_since(when) > KEY_WINDOW {
            let effect = PriorEffect::Note {
                invoice_id: entry.invoice_id.clone(),
                text: text.clone(),
            };
            if let Ok(EffectFound::Found { .. }) = self.connector.find_effect(&effect).await {
                entry.audit_note_done = true;
                self.store.put_journal(&entry)?;
                return Ok(());
            }
        }
        match self
            .connector
            .add_note(
                &NoteRequest {
                    invoice_id: entry.invoice_id.clone(),
                    text,
                },
                &key,
            )
            .await
        {
            Ok(_) => {
                entry.audit_note_done = true;
                self.store.put_journal(&entry)?;
            }
            // The endpoint is down and was reported once by its breaker.
            Err(ConnectorError::CircuitOpen { .. }) => {}
            Err(e) => {
                // Retried next cycle under the same key; the action itself is done.
                warn!(connection = %entry.connection, invoice = %entry.invoice_id, key = %entry.key, error = %e, "audit note not written yet");
            }
        }
        Ok(())
    }
}

/// Why an unfinished action is too old to carry out, if it is: its first attempt (the
/// intent's recording, which later retries keep) was more than [`RETRY_FOR_DAYS`] ago.
/// Counting from the last failure instead let an action failing daily live for ever,
/// and go out beside the step that replaced it on the first good day.
fn retries_expired(entry: &JournalEntry, now: DateTime<Utc>) -> Option<String> {
    let first = entry.created_at;
    (matches!(
        entry.state,
        JournalState::Intent | JournalState::Failed { .. }
    ) && now.signed_duration_since(first) > Duration::days(RETRY_FOR_DAYS))
    .then(|| {
        format!(
            "not carried out within {RETRY_FOR_DAYS} days of its first attempt ({})",
            first.format("%Y-%m-%d %H:%M UTC")
        )
    })
}

/// The per-customer daily reminder limit, enforced where reminders go out: what the
/// journal shows each customer was sent this local day, and each customer's limit
/// (`max_reminders_per_customer_per_day` of the policies chasing them; 0 is none).
#[derive(Debug, Clone, Default)]
pub struct CustomerLimits {
    pub sent_today: HashMap<String, u32>,
    pub limit: HashMap<String, u32>,
    /// For customers no reminder is planned for now (the connection's policy).
    pub default_limit: u32,
}

impl CustomerLimits {
    fn limit_of(&self, customer: &str) -> u32 {
        self.limit
            .get(customer)
            .copied()
            .unwrap_or(self.default_limit)
    }
}

/// The SMTP part of a reminder as a connector result: an outcome lost to a crash counts
/// as sent (replayed) and is never sent again; see `channels::deliver`.
fn smtp_receipt(
    d: Option<&Delivery>,
    at: DateTime<Utc>,
) -> Result<overdued_connector::ActionReceipt, ConnectorError> {
    match d {
        Some(Delivery::Sent {
            message_id,
            replayed,
        }) => Ok(overdued_connector::ActionReceipt {
            created_id: Some(message_id.clone()),
            at,
            replayed: *replayed,
        }),
        Some(Delivery::SentUnknown { message_id }) => Ok(overdued_connector::ActionReceipt {
            created_id: Some(message_id.clone()),
            at,
            replayed: true,
        }),
        Some(Delivery::Failed { error, retry: true }) => {
            Err(ConnectorError::transient(format!("email: {error}")))
        }
        Some(Delivery::Failed {
            error,
            retry: false,
        }) => Err(ConnectorError::Permanent(format!("email: {error}"))),
        None => Err(ConnectorError::Permanent(
            "email: the step sends by SMTP but [channels.smtp] is not configured".into(),
        )),
    }
}

/// Why an action must not go out any more, if it must not; the flag says whether the
/// reason is worth a log line (a payment is; a duplicate is not).
fn stale_reason(
    entry: &JournalEntry,
    fresh: Option<&InvoiceSnapshot>,
    holds: &[(HoldTarget, Hold)],
) -> Option<(String, bool)> {
    let Some(s) = fresh else {
        return Some(("invoice no longer found in the ledger".into(), true));
    };
    if !s.status.is_open() {
        return Some((
            format!("invoice is {:?} now", s.status).to_lowercase(),
            true,
        ));
    }
    if s.amount_due != entry.expected_amount_due {
        return Some((
            format!(
                "amount due changed from {} to {} since planning; re-planned next cycle",
                entry.expected_amount_due, s.amount_due
            ),
            true,
        ));
    }
    for (target, hold) in holds {
        let applies = match target {
            HoldTarget::Invoice(id) => *id == entry.invoice_id,
            HoldTarget::Customer(id) => *id == entry.customer_id,
        };
        if !applies || entry.kind == ActionKind::Note {
            continue;
        }
        match hold {
            Hold::Pause { reason, .. } => {
                return Some((format!("paused since planning: {reason}"), true))
            }
            Hold::Promise { until, .. } if *until >= entry.planned_for => {
                return Some((format!("customer promised to pay by {until}"), true))
            }
            Hold::Promise { .. } => {}
        }
    }
    None
}

fn describe_done(payload: &ActionPayload, entry: &JournalEntry, created: Option<&str>) -> String {
    match payload {
        ActionPayload::Remind { subject, .. } => match created {
            Some(id) => format!("reminder sent ({}): {subject} [{id}]", entry.step_id),
            None => format!("reminder sent ({}): {subject}", entry.step_id),
        },
        ActionPayload::LateFee {
            amount,
            explanation,
            ..
        } => match created {
            Some(id) => format!("late fee {amount} charged as invoice {id} ({explanation})"),
            None => format!("late fee {amount} charged ({explanation})"),
        },
        ActionPayload::Note { text } => format!("note written: {text}"),
        ActionPayload::Escalate { text } => format!("escalated for collection: {text}"),
    }
}
