//! A state directory written by the release before the typed journal (format version 1,
//! `tests/fixtures/state-v1`) opens with this release and the next cycle continues it:
//! no action repeated, none lost.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use overdued::channels::digest::DIGEST_CONNECTION;
use overdued::channels::loopback::Receiver;
use overdued::cycle::run_all_once;
use overdued::store::{
    ActionPayload, DigestSend, JournalPayload, JournalState, SledStore, SmtpSend, Store,
};
use overdued_connector::{ActionKind, Clock, IdempotencyKey, ManualClock, TokenStore};
use overdued_sandbox::{Sandbox, SandboxOptions};
use support::*;

/// The channels the fixture was written with (SMTP to a loopback receiver, the digest).
pub fn fixture_channels(port: u16) -> String {
    format!(
        r#"
[channels]
owner_email = "Owner <owner@example.com>"

[channels.smtp]
host = "127.0.0.1"
port = {port}
security = "plain"
from = "billing@example.com"
from_name = "Example Ltd Accounts"
reply_to = "accounts@example.com"

[channels.digest]
hour = 8
"#
    )
}

/// The policy the fixture was written with: every kind of action in sixteen days.
pub const FIXTURE_POLICY: &str = r#"
[policies.default]
max_reminders_per_customer_per_day = 1
payment_instructions = "Bank transfer to Example Ltd, sort code 12-34-56, account 12345678."

[[policies.default.steps]]
offset = "0d"
action = "remind"
template = "due_today"

[[policies.default.steps]]
offset = "+7d"
action = "remind"
template = "follow_up"
channel = "smtp"

[[policies.default.steps]]
offset = "+10d"
action = "note"

[[policies.default.steps]]
offset = "+14d"
action = "late_fee"

[[policies.default.steps]]
offset = "+15d"
action = "escalate"
template = "escalation"

[policies.default.late_fee]
model = "fixed"
amount = "40.00"
every_days = 30
cap_amount = "80.00"
"#;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read fixture") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

struct Resumed {
    running: overdued_sandbox::RunningSandbox,
    config: overdued::config::Config,
    store: Arc<SledStore>,
    clock: Arc<ManualClock>,
    rx: Receiver,
    _dir: tempfile::TempDir,
}

/// The fixture copied to a temporary directory, its sandbox world served, an SMTP
/// receiver, and a config pointing at both, as of `start`; the store not yet opened.
struct Prepared {
    running: overdued_sandbox::RunningSandbox,
    config: overdued::config::Config,
    config_path: PathBuf,
    rx: Receiver,
    dir: tempfile::TempDir,
}

impl Prepared {
    async fn new(start: chrono::DateTime<chrono::Utc>) -> Prepared {
        let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/state-v1");
        let dir = tempfile::tempdir().expect("tempdir");
        copy_dir(&fixture.join("state"), &dir.path().join("state"));
        std::fs::copy(
            fixture.join("sandbox-world.json"),
            dir.path().join("sandbox-world.json"),
        )
        .expect("copy world");
        let opts = SandboxOptions {
            state_file: Some(dir.path().join("sandbox-world.json")),
            ..empty_world(start)
        };
        let running = Sandbox::start(opts, "127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("sandbox starts");
        let rx = Receiver::start().await.expect("receiver");
        let policies = format!("{}\n{FIXTURE_POLICY}", fixture_channels(rx.addr.port()));
        let path = dir.path().join("overdued.toml");
        let text = config_text(
            &running.sandbox,
            &running.url(),
            "state",
            "Europe/London",
            &policies,
        );
        std::fs::write(&path, &text).expect("write config");
        let config = overdued::config::parse(&text, &path).unwrap_or_else(|e| panic!("{e}"));
        Prepared {
            running,
            config,
            config_path: path,
            rx,
            dir,
        }
    }
}

impl Resumed {
    async fn open() -> Resumed {
        let start = london(date(2026, 3, 17), 10, 0);
        let p = Prepared::new(start).await;
        let store = Arc::new(SledStore::open(&p.config.daemon.state_dir).expect("store opens"));
        Resumed {
            running: p.running,
            config: p.config,
            store,
            clock: Arc::new(ManualClock::new(start)),
            rx: p.rx,
            _dir: p.dir,
        }
    }

    async fn cycle_at(&self, t: chrono::DateTime<chrono::Utc>) {
        self.running.sandbox.set_now(t);
        self.clock.set(t);
        let store: Arc<dyn Store> = self.store.clone();
        let tokens: Arc<dyn TokenStore> = self.store.clone();
        let clock: Arc<dyn Clock> = self.clock.clone();
        for (name, r) in run_all_once(&self.config, store, tokens, clock).await {
            let rep = r.unwrap_or_else(|e| panic!("{t}: cycle of {name} failed: {e}"));
            for (inv, kind, step, outcome) in &rep.exec.results {
                assert!(
                    !matches!(outcome, overdued::executor::Outcome::Failed { .. }),
                    "{t}: {name} {inv} {kind} {step}: {outcome:?}"
                );
            }
        }
    }

    fn ledger(&self) -> Vec<Row> {
        read_ledger(
            &self.running.sandbox.ledger().effects,
            &[self.store.as_ref()],
        )
    }
}

/// Every journal record of the fixture reads back as the typed payload its namespace
/// stands for, under its old key string.
fn assert_journal_typed(r: &Resumed, rows: &[Row]) {
    let mut actions = 0;
    let mut sends = 0;
    for row in rows.iter().filter(|x| !x.is_audit()) {
        let conn = conn_of(row.system);
        for e in r
            .store
            .journal_for_invoice(conn, &row.invoice_id)
            .expect("journal")
        {
            actions += 1;
            let a = match &e.payload {
                JournalPayload::Action(a) => a,
                other => panic!("{}: an action's record reads as {other:?}", e.key),
            };
            let kind = match a {
                ActionPayload::Remind { .. } => ActionKind::Remind,
                ActionPayload::LateFee { .. } => ActionKind::LateFee,
                ActionPayload::Note { .. } => ActionKind::Note,
                ActionPayload::Escalate { .. } => ActionKind::Escalate,
            };
            assert_eq!(kind, e.kind, "{}", e.key);
            assert!(e.key.as_str().starts_with("od1-"), "{}", e.key);
            // The key is the one the engine derives for the action: plans match it.
            assert_eq!(
                e.key,
                IdempotencyKey::derive(conn, &e.invoice_id, e.kind, &e.step_id)
            );
            assert!(matches!(e.state, JournalState::Done { .. }), "{e:?}");
        }
        for e in r
            .store
            .journal_for_invoice(&format!("{conn}/smtp"), &row.invoice_id)
            .expect("journal")
        {
            sends += 1;
            let JournalPayload::SmtpSend(SmtpSend {
                message_id,
                actions,
                ..
            }) = &e.payload
            else {
                panic!("{}: an SMTP record reads as {:?}", e.key, e.payload);
            };
            assert!(!message_id.is_empty());
            let action = r
                .store
                .get_journal(&e.key)
                .expect("journal")
                .expect("itself");
            assert_eq!(action, e);
            assert!(actions
                .iter()
                .any(|k| e.key.as_str() == format!("smtp:{k}")));
        }
    }
    assert!(actions >= 14, "{actions} action records");
    assert!(sends >= 4, "{sends} SMTP records");
    let digests = r
        .store
        .journal_for_invoice(DIGEST_CONNECTION, "")
        .expect("journal");
    assert!(!digests.is_empty());
    for e in digests {
        assert!(
            matches!(&e.payload, JournalPayload::Digest(DigestSend { message_id, .. }) if !message_id.is_empty()),
            "{e:?}"
        );
        assert!(e.key.as_str().starts_with("digest:2026-03-"), "{}", e.key);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_dir_of_the_previous_release_continues_without_repeating_or_losing_an_action() {
    let r = Resumed::open().await;
    let before = r.ledger();
    assert_eq!(
        before.iter().filter(|x| !x.is_audit()).count(),
        16,
        "the fixture's ledger: {before:#?}"
    );
    assert_ledger_consistent(&before);
    assert_journal_typed(&r, &before);

    // The same day again: everything due was done by the previous release.
    r.cycle_at(london(date(2026, 3, 17), 11, 0)).await;
    let same_day = r.ledger();
    assert_eq!(
        same_day.len(),
        before.len(),
        "{}",
        multiset_diff(&canonical(&same_day), &canonical(&before))
    );
    assert!(
        r.rx.messages().is_empty(),
        "no email repeated: {:#?}",
        r.rx.messages()
    );

    // The next day: exactly the two escalations due (each with its ledger note), once each, and the day's digest.
    r.cycle_at(london(date(2026, 3, 18), 10, 0)).await;
    r.cycle_at(london(date(2026, 3, 18), 11, 0)).await;
    let next = r.ledger();
    assert_ledger_consistent(&next);
    let mut new: Vec<_> = canonical(&next);
    for row in canonical(&before) {
        let i = new.iter().position(|x| *x == row).expect("nothing lost");
        new.remove(i);
    }
    let mut steps: Vec<(String, String)> = new.iter().map(|x| (x.2.clone(), x.3.clone())).collect();
    steps.sort();
    assert_eq!(
        steps,
        vec![
            ("note escalate".to_string(), "+15d".to_string()),
            ("note escalate".to_string(), "+15d".to_string()),
            ("note note".to_string(), "+15d".to_string()),
            ("note note".to_string(), "+15d".to_string()),
        ],
        "{new:#?}"
    );
    let mails = r.rx.messages();
    assert_eq!(mails.len(), 1, "one digest for 2026-03-18: {mails:#?}");
    assert_journal_settled(r.store.as_ref());
}

/// The daemon on the same state dir, the morning after: each connection's task does its
/// escalation once, and the digest task sends the day's digest once, after both
/// connections' cycles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_continues_a_previous_release_state_dir_and_sends_one_digest() {
    let t = london(date(2026, 3, 18), 10, 0);
    let p = Prepared::new(t).await;
    p.running.sandbox.set_now(t);
    let factory: overdued::daemon::ConnectorFactory = Arc::new(overdued::connections::build);
    let daemon = overdued::daemon::Daemon::start(overdued::daemon::DaemonOptions {
        config_path: p.config_path.clone(),
        factory,
        clock: Arc::new(ManualClock::new(t)),
        notifier: overdued::daemon::notify::Notifier::disabled(),
    })
    .await
    .expect("daemon starts");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let (_reload_tx, reload_rx) = tokio::sync::mpsc::channel(1);
    let run = tokio::spawn(daemon.run(shutdown.clone(), reload_rx));

    let escalations = |effects: &[overdued_sandbox::Effect]| {
        effects
            .iter()
            .filter(|e| e.at >= t && e.kind == "note")
            .count()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    // Two escalations and their two ledger notes, and the digest.
    while escalations(&p.running.sandbox.ledger().effects) < 4 || p.rx.messages().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon did not finish the day: {} ledger notes, {} emails",
            escalations(&p.running.sandbox.ledger().effects),
            p.rx.messages().len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Further wake-ups of the digest task (each cycle's end, the poll) send no other.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    shutdown.cancel();
    run.await.expect("joins").expect("stops cleanly");

    let mails = p.rx.messages();
    assert_eq!(mails.len(), 1, "one digest: {mails:#?}");
    // Sent after both connections' cycles of the day: it names both escalations of today.
    let text = unqp(&mails[0].data);
    for line in [
        "qbo: invoice 1002 is referred for collection",
        "xero: invoice INV-0002 is referred for collection",
    ] {
        assert!(text.contains(line), "{line:?} not in the digest:\n{text}");
    }
    let store = SledStore::open(&p.config.daemon.state_dir).expect("store opens");
    let rows = read_ledger(&p.running.sandbox.ledger().effects, &[&store]);
    assert_ledger_consistent(&rows);
    let new: Vec<_> = rows.iter().filter(|r| r.at >= t).collect();
    assert_eq!(new.len(), 4, "{new:#?}");
    assert!(new.iter().all(|r| r.step == "+15d"), "{new:#?}");
    let digest = store
        .get_journal(&IdempotencyKey::digest(date(2026, 3, 18)))
        .expect("journal")
        .expect("the digest is journalled");
    assert!(matches!(digest.payload, JournalPayload::Digest(_)));
    assert!(matches!(digest.state, JournalState::Done { .. }));
}

/// Undoes quoted-printable (soft breaks and =XX).
fn unqp(s: &str) -> String {
    let s = s.replace("=\r\n", "");
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The previous release keyed actions by the connection's name. Opening its journal
/// re-keys every action by the ledger (system and realm/tenant id), so a renamed
/// connection finds them; an intent it left unfinished keeps the key it may already have
/// sent: here the vendor got the escalation under the old key and the answer was lost, and
/// finishing the intent must not escalate a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_intent_of_the_previous_release_keeps_the_key_it_sent() {
    let r = Resumed::open().await;
    let t = london(date(2026, 3, 18), 10, 0);
    r.running.sandbox.set_now(t);
    r.clock.set(t);
    let conn_cfg = r.config.connection(QBO).expect("qbo");
    let ledger = conn_cfg
        .configured_ledger()
        .expect("realm id in the config");
    let mut rec = None;
    r.store
        .for_each_invoice(QBO, &mut |i| {
            if i.snapshot.display_number() == "1002" {
                rec = Some(i);
            }
            rec.is_none()
        })
        .expect("invoices");
    let rec = rec.expect("invoice 1002 in the fixture");
    let id = rec.snapshot.remote_id.clone();
    let old_key = IdempotencyKey::derive(QBO, &id, ActionKind::Escalate, "+15d");
    let text = "Invoice 1002 is referred for collection.".to_string();
    // What the previous release did before it was killed: the intent on disk (format
    // version 1 reads as this), the call made, its answer lost.
    r.store
        .put_journal(&overdued::store::JournalEntry {
            key: old_key.clone(),
            connection: QBO.into(),
            invoice_id: id.clone(),
            customer_id: rec.snapshot.customer.id.clone(),
            kind: ActionKind::Escalate,
            step_id: "+15d".into(),
            planned_for: date(2026, 3, 18),
            created_at: t,
            expected_amount_due: rec.snapshot.amount_due,
            payload: JournalPayload::Action(ActionPayload::Escalate { text: text.clone() }),
            state: JournalState::Intent,
            audit_note_done: false,
            ledger: None,
            sent_key: None,
        })
        .expect("intent");
    let tokens: Arc<dyn TokenStore> = r.store.clone();
    let clock: Arc<dyn Clock> = r.clock.clone();
    let connector = overdued::connections::build(conn_cfg, tokens, clock).expect("connector");
    connector
        .add_note(
            &overdued_connector::NoteRequest {
                invoice_id: id.clone(),
                text,
            },
            &old_key,
        )
        .await
        .expect("the lost call");
    let notes_on = |effects: &[overdued_sandbox::Effect]| {
        effects
            .iter()
            .filter(|e| e.at >= t && e.kind == "note" && e.invoice_id == id)
            .map(|e| e.idempotency_key.clone().unwrap_or_default())
            .collect::<Vec<_>>()
    };
    assert_eq!(notes_on(&r.running.sandbox.ledger().effects).len(), 1);

    r.cycle_at(t).await;
    r.cycle_at(london(date(2026, 3, 18), 11, 0)).await;

    let new_key = IdempotencyKey::derive(&ledger, &id, ActionKind::Escalate, "+15d");
    assert_ne!(new_key, old_key);
    let e = r
        .store
        .get_journal(&new_key)
        .expect("journal")
        .expect("the intent, re-keyed by the ledger");
    assert_eq!(e.sent_key.as_ref(), Some(&old_key));
    assert_eq!(e.ledger.as_deref(), Some(ledger.as_str()));
    assert!(matches!(e.state, JournalState::Done { .. }), "{e:?}");
    assert!(r.store.get_journal(&old_key).expect("journal").is_none());
    // One escalation (under the key first sent) and its audit note; nothing under the new key.
    let keys = notes_on(&r.running.sandbox.ledger().effects);
    assert_eq!(keys.len(), 2, "{keys:#?}");
    assert!(keys.contains(&old_key.to_string()), "{keys:#?}");
    assert!(!keys.contains(&new_key.to_string()), "{keys:#?}");

    // Every action the previous release did is found by the ledger, under its new key,
    // with the key the vendor knows it by.
    let by_ledger = r.store.journal_for_ledger(&ledger, &id).expect("journal");
    assert!(by_ledger.len() >= 4, "{by_ledger:#?}");
    for e in by_ledger {
        if e.sent_key.is_none() && e.created_at >= t && e.kind != ActionKind::Escalate {
            // Written today by this release (the escalation's note): keyed by the ledger alone.
            assert_eq!(e.ledger.as_deref(), Some(ledger.as_str()));
            assert_eq!(
                e.key,
                IdempotencyKey::derive(&ledger, &id, e.kind, &e.step_id)
            );
            continue;
        }
        assert_eq!(
            e.key,
            IdempotencyKey::derive(&ledger, &id, e.kind, &e.step_id)
        );
        assert_eq!(
            e.sent_key,
            Some(IdempotencyKey::derive(QBO, &id, e.kind, &e.step_id)),
            "{e:?}"
        );
    }
    assert_ledger_consistent(&r.ledger());
    assert_journal_settled(r.store.as_ref());
}

/// The fixture's invoice records are JSON envelopes; opening the store rewrites each in
/// the binary format, equal to what its JSON said, and builds the summary index.
#[test]
fn the_previous_release_invoice_records_are_migrated_to_binary_equal_to_their_json() {
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/state-v1");
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&fixture.join("state"), &dir.path().join("state"));
    let db_path = dir.path().join("state/db");
    let mut before = Vec::new();
    {
        let db = sled::open(&db_path).expect("fixture opens");
        for kv in db.open_tree("invoices").expect("tree").iter() {
            let (k, v) = kv.expect("read");
            assert_eq!(v.first(), Some(&b'{'), "fixture record not JSON");
            let mut env: serde_json::Value = serde_json::from_slice(&v).expect("JSON");
            let rec: overdued::store::InvoiceRecord =
                serde_json::from_value(env["r"].take()).expect("an invoice record");
            before.push((k.to_vec(), rec));
        }
    }
    assert!(
        before.len() >= 4,
        "the fixture has {} invoices",
        before.len()
    );
    {
        let store = SledStore::open(&dir.path().join("state")).expect("opens");
        for (_, rec) in &before {
            let s = &rec.snapshot;
            let got = store
                .get_invoice(s.connection.as_str(), &s.remote_id)
                .expect("reads")
                .expect("still there");
            assert_eq!(&got, rec);
        }
        assert_eq!(store.check_index().expect("check"), vec![]);
        let mut rows = 0;
        for conn in ["qbo", "xero"] {
            store
                .index_rows(conn, &mut |_, _| {
                    rows += 1;
                    true
                })
                .expect("rows");
        }
        let conns: std::collections::BTreeSet<&str> = before
            .iter()
            .map(|(_, r)| r.snapshot.connection.as_str())
            .collect();
        assert_eq!(conns.into_iter().collect::<Vec<_>>(), ["qbo", "xero"]);
        assert_eq!(rows, before.len());
    }
    let db = sled::open(&db_path).expect("reopens");
    let tree = db.open_tree("invoices").expect("tree");
    for (k, _) in &before {
        let v = tree.get(k).expect("read").expect("kept");
        assert!(
            overdued::store::codec::is_binary(&v),
            "{} still JSON after the migration",
            String::from_utf8_lossy(k)
        );
    }
}
