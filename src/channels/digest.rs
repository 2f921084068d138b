//! The owner's daily digest: the day's actions, the failures, what needs a person
//! (calls to make, accounts to refer to collection, connections to reconnect) and the
//! ageing table, in one email a day.
//!
//! The digest is journaled like any message (key [`IdempotencyKey::digest`] of the local
//! day, payload [`JournalPayload::Digest`]), so it goes out once a day however often it
//! is tried and whatever crashes. It is the owner's, not a connection's: the daemon runs
//! it as a task of its own once every connection's cycle of the day has ended, and
//! `run --once` after all its cycles.

use chrono::{Duration, NaiveDate, TimeZone, Timelike, Utc};
use overdued_connector::{ActionKind, Clock, IdempotencyKey};
use rust_decimal::Decimal;
use tracing::{info, warn};

use super::deliver::Delivery;
use super::message::{build, message_id};
use super::smtp::{Mailer, SendError};
use super::templates::{AgeingRow, DigestContext, DigestLine};
use super::ChannelError;
use crate::config::Config;
use crate::engine::dates::long_date;
use crate::report::ageing::Bucket;
use crate::report::status::connection_status;
use crate::store::{AuditEvent, DigestSend, JournalEntry, JournalPayload, JournalState, Store};

/// The journal's pseudo-connection for digests.
pub const DIGEST_CONNECTION: &str = "overdued/digest";

/// Sends today's digest if it is due (past the configured hour) and not yet sent.
///
/// One caller at a time: the daemon's digest task, or `run --once` after its cycles.
pub async fn send_if_due(
    config: &Config,
    store: &dyn Store,
    clock: &dyn Clock,
    mailer: &Mailer,
) -> Result<Option<Delivery>, ChannelError> {
    let Some(dc) = &config.channels.digest else {
        return Ok(None);
    };
    let tz = config.daemon.time_zone;
    let now = clock.now();
    let local = now.with_timezone(&tz);
    if local.hour() < dc.hour {
        return Ok(None);
    }
    let date = local.date_naive();
    let key = IdempotencyKey::digest(date);
    match store.get_journal(&key)? {
        Some(e) if matches!(e.state, JournalState::Done { .. }) => return Ok(None),
        Some(mut e) if matches!(e.state, JournalState::Intent) => {
            // Attempted before a crash: may have arrived; one digest missed beats two.
            let created_id = match &e.payload {
                JournalPayload::Digest(d) => Some(d.message_id.clone()),
                _ => None,
            };
            e.state = JournalState::Done {
                at: now,
                created_id,
                replayed: true,
            };
            store.put_journal(&e)?;
            warn!(date = %date, "digest outcome unknown after a restart; not resent");
            return Ok(None);
        }
        _ => {}
    }
    let since = tz
        .from_local_datetime(&date.and_hms_opt(dc.hour, 0, 0).unwrap_or_default())
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(now)
        - Duration::days(1);
    let ctx = context(config, store, now, since, date)?;
    let rendered = mailer.templates.render("digest", &ctx)?;
    let mid = message_id(&[key.as_str()], &mailer.settings.from);
    let env = super::message::Envelope {
        from: mailer.settings.from.clone(),
        reply_to: None,
        to: vec![dc.to.clone()],
        bcc: Vec::new(),
    };
    let msg = build(&env, &rendered, &mid)?;
    if let Err(e) = mailer.reachable().await {
        return Ok(Some(Delivery::Failed {
            error: e.to_string(),
            retry: true,
        }));
    }
    let sent = DigestSend {
        message_id: mid.clone(),
        to: dc.to.to_string(),
        subject: rendered.subject.clone(),
    };
    let mut entry = JournalEntry {
        key: key.clone(),
        connection: DIGEST_CONNECTION.into(),
        invoice_id: String::new(),
        customer_id: String::new(),
        kind: ActionKind::Note,
        step_id: "digest".into(),
        planned_for: date,
        created_at: now,
        expected_amount_due: Decimal::ZERO,
        payload: JournalPayload::Digest(sent.clone()),
        state: JournalState::Intent,
        audit_note_done: true,
        ledger: None,
        sent_key: None,
    };
    store.put_journal(&entry)?;
    let result = mailer.send(&msg).await;
    let delivery = match &result {
        Ok(()) => Delivery::Sent {
            message_id: mid.clone(),
            replayed: false,
        },
        Err(SendError::Unknown(_)) => Delivery::SentUnknown {
            message_id: mid.clone(),
        },
        Err(e) => Delivery::Failed {
            error: e.to_string(),
            retry: true,
        },
    };
    entry.state = match &delivery {
        Delivery::Failed { error, retry } => JournalState::Failed {
            at: clock.now(),
            error: error.clone(),
            attempts: 1,
            retry: *retry,
        },
        Delivery::SentUnknown { .. } => JournalState::Done {
            at: clock.now(),
            created_id: Some(mid.clone()),
            replayed: true,
        },
        Delivery::Sent { .. } => JournalState::Done {
            at: clock.now(),
            created_id: Some(mid.clone()),
            replayed: false,
        },
    };
    store.put_journal_with_audit(
        &entry,
        &AuditEvent {
            at: clock.now(),
            connection: DIGEST_CONNECTION.into(),
            invoice_id: None,
            kind: "digest".into(),
            message: match &result {
                Ok(()) => format!("digest for {date} sent to {}", dc.to),
                Err(e) => format!("digest for {date}: {e}"),
            },
            detail: serde_json::to_value(&sent).unwrap_or_default(),
        },
    )?;
    info!(date = %date, to = %dc.to, outcome = ?delivery, "digest");
    Ok(Some(delivery))
}

/// What the digest says, from the store and audit log.
pub fn context(
    config: &Config,
    store: &dyn Store,
    now: chrono::DateTime<Utc>,
    since: chrono::DateTime<Utc>,
    date: NaiveDate,
) -> Result<DigestContext, crate::store::StoreError> {
    let mut ctx = DigestContext {
        date: long_date(date),
        actions: Vec::new(),
        failed: Vec::new(),
        attention: Vec::new(),
        ageing: Vec::new(),
    };
    for c in &config.connections {
        let name = c.name.as_str();
        let events = store.audit_since(name, since)?;
        let sent = crate::report::delivery::sent_subjects(&events);
        for ev in events {
            let line = DigestLine {
                connection: name.to_string(),
                message: crate::report::delivery::audit_line_sent(&ev, c.system(), &sent),
            };
            match ev.kind.as_str() {
                "action" => ctx.actions.push(line),
                "failed" => ctx.failed.push(line),
                _ => {}
            }
        }
        let st = connection_status(config, c, store, now)?;
        if st.needs_reconnect {
            ctx.attention.push(format!(
                "{name}: reconnect the connection (overdued connect {name}); nothing is chased until then"
            ));
        }
        for n in &st.attention.escalated {
            ctx.attention.push(format!(
                "{name}: invoice {n} is referred for collection: call the customer, then refer it to your agency"
            ));
        }
        for n in &st.attention.no_email {
            ctx.attention.push(format!(
                "{name}: call {n}: the ledger has no email address, so no reminder can reach them"
            ));
        }
        for n in &st.attention.promises_due {
            ctx.attention.push(format!(
                "{name}: the promised payment of invoice {n} has not arrived: call the customer"
            ));
        }
        for p in &st.attention.payment_plans {
            ctx.attention.push(format!("{name}: {p}"));
        }
        if st.attention.failed_actions > 0 {
            ctx.attention.push(format!(
                "{name}: {} action(s) failed and are retried",
                st.attention.failed_actions
            ));
        }
        for (currency, buckets) in &st.ageing.by_currency {
            // The row names its currency once; the amounts are grouped as people write them.
            let cur = currency.parse::<overdued_connector::Currency>().ok();
            let amt = |b: Bucket| {
                let a = buckets.get(&b).map(|t| t.amount).unwrap_or_default();
                match cur {
                    Some(c) => overdued_connector::Money::new(a, c)
                        .amount_human()
                        .to_string(),
                    None => a.round_dp(2).to_string(),
                }
            };
            ctx.ageing.push(AgeingRow {
                connection: name.to_string(),
                currency: currency.clone(),
                current: amt(Bucket::Current),
                d1_30: amt(Bucket::D1To30),
                d31_60: amt(Bucket::D31To60),
                d61_90: amt(Bucket::D61To90),
                d90_plus: amt(Bucket::Over90),
            });
        }
    }
    Ok(ctx)
}
