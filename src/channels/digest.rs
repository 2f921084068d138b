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
        date: Some(now),
    };
    let msg = build(&env, &rendered, &mid)?;
    if let Err(e) = mailer.reachable().await {
        warn!(date = %date, to = %dc.to, "daily digest not sent: {e}; tried again after the next cycle");
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
    match &delivery {
        Delivery::Sent { message_id, .. } => {
            info!(date = %date, to = %dc.to, message_id = %message_id, "daily digest sent")
        }
        Delivery::SentUnknown { message_id } => {
            warn!(date = %date, to = %dc.to, message_id = %message_id, "daily digest handed to the mail server, which did not confirm it; not resent")
        }
        Delivery::Failed { error, .. } => {
            warn!(date = %date, to = %dc.to, "daily digest not sent: {error}; tried again after the next cycle")
        }
    }
    Ok(Some(delivery))
}

/// The day's failures as the owner should read them: one line per action whose final
/// outcome is still a failure (one that a later retry carried out is not a failure, and
/// an action retried three times is one line), each naming the invoice by number, the
/// customer by name, the step and the reason, and whether overdued tries again.
pub fn failures(
    store: &dyn Store,
    connection: &str,
    events: &[AuditEvent],
) -> Result<Vec<String>, crate::store::StoreError> {
    let key_of = |ev: &AuditEvent| {
        ev.detail
            .get("key")
            .and_then(|k| k.as_str())
            .map(str::to_string)
    };
    let done: std::collections::HashSet<String> = events
        .iter()
        .filter(|ev| ev.kind == "action")
        .filter_map(key_of)
        .collect();
    // The latest failure of each action, in the order the actions first failed.
    let mut order: Vec<String> = Vec::new();
    let mut latest: std::collections::HashMap<String, &AuditEvent> = Default::default();
    let mut out = Vec::new();
    for ev in events.iter().filter(|ev| ev.kind == "failed") {
        match key_of(ev) {
            Some(k) => {
                if latest.insert(k.clone(), ev).is_none() {
                    order.push(k);
                }
            }
            // A record without its action's key (written by an older version): as it was.
            None => out.push(ev.message.clone()),
        }
    }
    for k in order {
        if done.contains(&k) {
            continue;
        }
        let ev = latest[&k];
        let key: Option<IdempotencyKey> = serde_json::from_value(serde_json::Value::String(k)).ok();
        let entry = match &key {
            Some(key) => store.get_journal(key)?,
            None => None,
        };
        let (reason, retry) = match entry.as_ref().map(|e| &e.state) {
            // Carried out since, by a retry past this digest's window of events.
            Some(JournalState::Done { .. }) => continue,
            Some(JournalState::Failed { error, retry, .. }) => (error.clone(), *retry),
            Some(JournalState::Skipped { reason, .. })
            | Some(JournalState::Superseded { reason, .. }) => {
                (format!("not retried: {reason}"), false)
            }
            _ => (
                ev.message
                    .split_once(" failed: ")
                    .map(|(_, r)| r.to_string())
                    .unwrap_or_else(|| ev.message.clone()),
                ev.detail
                    .get("retry")
                    .and_then(|r| r.as_bool())
                    .unwrap_or(false),
            ),
        };
        let invoice_id = ev
            .invoice_id
            .clone()
            .or_else(|| entry.as_ref().map(|e| e.invoice_id.clone()))
            .unwrap_or_default();
        let snap = store
            .get_invoice(connection, &invoice_id)?
            .map(|r| r.snapshot);
        let invoice = match &snap {
            Some(s) => format!(
                "invoice {} ({}, {} due)",
                s.display_number(),
                s.customer.name,
                s.due_money().display_human()
            ),
            None => format!("invoice {invoice_id}"),
        };
        let what = match entry.as_ref() {
            Some(e) => format!(
                "{} at step {}",
                crate::events::action_noun(e.kind),
                e.step_id
            ),
            None => "action".to_string(),
        };
        let then = if retry {
            "overdued tries again"
        } else {
            "not retried: needs a person"
        };
        out.push(format!("{invoice}: {what} failed: {reason}; {then}"));
    }
    Ok(out)
}

/// "invoice 1037 (Acme Ltd)" from the cached invoice, for a line about it.
fn invoice_words(
    store: &dyn Store,
    connection: &str,
    invoice_id: Option<&str>,
) -> Result<Option<String>, crate::store::StoreError> {
    let Some(id) = invoice_id.filter(|i| !i.is_empty()) else {
        return Ok(None);
    };
    Ok(store.get_invoice(connection, id)?.map(|r| {
        format!(
            "invoice {} ({})",
            r.snapshot.display_number(),
            r.snapshot.customer.name
        )
    }))
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
        forecast: Vec::new(),
    };
    for c in &config.connections {
        let name = c.name.as_str();
        let events = store.audit_since(name, since)?;
        let sent = crate::report::delivery::sent_subjects(&events);
        for ev in events.iter().filter(|ev| ev.kind == "action") {
            let line = crate::report::delivery::audit_line_sent(ev, c.system(), &sent);
            ctx.actions.push(DigestLine {
                connection: name.to_string(),
                message: match invoice_words(store, name, ev.invoice_id.as_deref())? {
                    Some(who) => format!("{who}: {line}"),
                    None => line,
                },
            });
        }
        for message in failures(store, name, &events)? {
            ctx.failed.push(DigestLine {
                connection: name.to_string(),
                message,
            });
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
        if let Some(p) = &st.payers {
            ctx.forecast
                .extend(crate::profiles::render::digest_lines(p, name));
        }
    }
    // The calls list, one line per customer (src/calls).
    ctx.attention
        .extend(crate::calls::digest_lines(config, store, now)?);
    // Text messages: who said STOP (email took over) and who replied (call them).
    let names: Vec<String> = config.connections.iter().map(|c| c.name.clone()).collect();
    ctx.attention
        .extend(super::sms::inbound::digest_lines(store, &names, since)?);
    Ok(ctx)
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use overdued_connector::ActionKind;
    use rust_decimal::Decimal;

    use super::*;
    use crate::engine::plan::tests_support::invoice;
    use crate::store::{InvoiceRecord, SledStore};

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn entry(step: &str, state: JournalState) -> JournalEntry {
        JournalEntry {
            key: IdempotencyKey::derive("qbo:1", "7", ActionKind::Remind, step),
            connection: "acme-qbo".into(),
            invoice_id: "7".into(),
            customer_id: "c9".into(),
            kind: ActionKind::Remind,
            step_id: step.into(),
            planned_for: NaiveDate::from_ymd_opt(2026, 11, 7).unwrap(),
            created_at: t("2026-11-07T09:00:00Z"),
            expected_amount_due: Decimal::from(450),
            payload: JournalPayload::Digest(DigestSend {
                message_id: String::new(),
                to: String::new(),
                subject: String::new(),
            }),
            state,
            audit_note_done: true,
            ledger: None,
            sent_key: None,
        }
    }

    fn event(kind: &str, e: &JournalEntry, at: &str, message: &str) -> AuditEvent {
        AuditEvent {
            at: t(at),
            connection: "acme-qbo".into(),
            invoice_id: Some("7".into()),
            kind: kind.into(),
            message: message.into(),
            detail: serde_json::json!({"key": e.key, "retry": true}),
        }
    }

    fn failed(error: &str) -> JournalState {
        JournalState::Failed {
            at: t("2026-11-07T10:00:00Z"),
            error: error.into(),
            attempts: 2,
            retry: true,
        }
    }

    #[test]
    fn a_failure_a_retry_carried_out_is_not_reported_and_the_rest_name_invoice_and_customer() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let snap = invoice("7", "c9", 450);
        store
            .put_invoice(&InvoiceRecord {
                snapshot: snap,
                seen_at: t("2026-11-07T08:00:00Z"),
                first_seen_at: t("2026-11-01T08:00:00Z"),
                balance_history: Vec::new(),
            })
            .unwrap();
        let done = JournalState::Done {
            at: t("2026-11-07T11:00:00Z"),
            created_id: None,
            replayed: false,
        };
        // Retried within the day's events.
        let a = entry("+7d", done.clone());
        // Retried after them: only the journal knows.
        let b = entry("+14d", done);
        // Still failing, after two tries.
        let c = entry("+30d", failed("SMTP 451 mailbox busy"));
        for e in [&a, &b, &c] {
            store.put_journal(e).unwrap();
        }
        let events = vec![
            event(
                "failed",
                &a,
                "2026-11-07T09:00:00Z",
                "remind (+7d) failed: timeout",
            ),
            event(
                "failed",
                &b,
                "2026-11-07T09:00:01Z",
                "remind (+14d) failed: timeout",
            ),
            event(
                "failed",
                &c,
                "2026-11-07T09:00:02Z",
                "remind (+30d) failed: timeout",
            ),
            event(
                "action",
                &a,
                "2026-11-07T10:00:00Z",
                "reminder sent (+7d): Invoice 107",
            ),
            event(
                "failed",
                &c,
                "2026-11-07T10:00:02Z",
                "remind (+30d) failed: SMTP 451",
            ),
        ];
        let lines = failures(&store, "acme-qbo", &events).unwrap();
        assert_eq!(
            lines,
            vec![
                "invoice 107 (Customer c9, USD 450.00 due): reminder at step +30d failed: SMTP 451 mailbox busy; overdued tries again"
                    .to_string()
            ]
        );
    }

    /// A writer the test reads back.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_digest_that_cannot_go_says_so_in_a_sentence() {
        let dir = tempfile::tempdir().unwrap();
        // A port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let text = format!(
            "[daemon]\nstate_dir = \"state\"\ntime_zone = \"UTC\"\n\n\
             [quickbooks.books]\nenabled = false\nclient_id = \"x\"\nclient_secret = \"y\"\nrealm_id = \"1\"\n\n\
             [channels]\nowner_email = \"owner@example.com\"\n\n\
             [channels.smtp]\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"plain\"\nfrom = \"billing@example.com\"\n\n\
             [channels.digest]\nhour = 8\n\n\
             [policies.default]\npayment_instructions = \"Bank transfer, quoting the invoice number.\"\n"
        );
        let config = crate::config::parse(&text, &dir.path().join("c.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        let store = SledStore::open(&dir.path().join("state")).unwrap();
        let clock = overdued_connector::ManualClock::new(t("2026-11-09T09:30:00Z"));
        let mailer = Mailer::from_config(&config.channels).unwrap().unwrap();
        let out = Captured::default();
        let sub = tracing_subscriber::fmt()
            .with_writer({
                let out = out.clone();
                move || out.clone()
            })
            .with_ansi(false)
            .finish();
        let delivery = {
            let _g = tracing::subscriber::set_default(sub);
            send_if_due(&config, &store, &clock, &mailer).await.unwrap()
        };
        assert!(matches!(
            delivery,
            Some(Delivery::Failed { retry: true, .. })
        ));
        let log = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(log.contains("daily digest not sent: "), "{log}");
        assert!(log.contains("tried again after the next cycle"), "{log}");
        assert!(
            !log.contains("Failed {") && !log.contains("retry:"),
            "a Rust struct in the log: {log}"
        );
    }
}
