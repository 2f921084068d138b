use std::io::BufRead;

use chrono::{DateTime, NaiveDate, Utc};
use overdued_connector::*;
use rust_decimal_macros::dec;

use super::*;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

fn snapshot(conn: &str, id: &str) -> InvoiceSnapshot {
    InvoiceSnapshot {
        connection: ConnectionId::new(conn),
        system: System::Xero,
        remote_id: id.into(),
        number: Some(format!("INV-{id}")),
        customer: CustomerRef {
            id: "c1".into(),
            name: "Ridgeway Bakery".into(),
            email: Some("ap@ridgeway.example".into()),
        },
        currency: Currency::GBP,
        total: dec!(1200.50),
        amount_due: dec!(700.25),
        issue_date: NaiveDate::from_ymd_opt(2026, 9, 1).unwrap(),
        due_date: NaiveDate::from_ymd_opt(2026, 9, 30).unwrap(),
        status: InvoiceStatus::Open,
        updated_at: t("2026-10-02T08:00:00Z"),
        version: None,
        memo: "PO 4471".into(),
        is_fee_invoice: false,
        pay_url: Some("https://in.xero.com/abc".into()),
        paid_on: None,
    }
}

fn record(conn: &str, id: &str) -> InvoiceRecord {
    InvoiceRecord {
        snapshot: snapshot(conn, id),
        seen_at: t("2026-10-03T00:00:00Z"),
        first_seen_at: t("2026-09-01T00:00:00Z"),
        balance_history: vec![(NaiveDate::from_ymd_opt(2026, 9, 1).unwrap(), dec!(1200.50))],
    }
}

/// A distinct action key per name.
fn key(name: &str) -> IdempotencyKey {
    IdempotencyKey::derive("uk", "test", ActionKind::Remind, name)
}

fn journal(name: &str, inv: &str, state: JournalState) -> JournalEntry {
    JournalEntry {
        key: key(name),
        connection: "uk".into(),
        invoice_id: inv.into(),
        customer_id: "c1".into(),
        kind: ActionKind::Remind,
        step_id: "+7d".into(),
        planned_for: NaiveDate::from_ymd_opt(2026, 10, 7).unwrap(),
        created_at: t("2026-10-07T09:00:00Z"),
        expected_amount_due: dec!(700.25),
        payload: JournalPayload::Action(ActionPayload::Remind {
            subject: "Invoice INV-1".into(),
            body: "Please pay".into(),
            channel: None,
            template: None,
            context: None,
        }),
        state,
        audit_note_done: false,
        ledger: None,
        sent_key: None,
    }
}

#[test]
fn every_record_type_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path()).unwrap();

    let r = record("uk", "a1");
    s.put_invoice(&r).unwrap();
    s.put_invoices(&[record("uk", "a2"), record("us", "b1")])
        .unwrap();
    assert_eq!(s.get_invoice("uk", "a1").unwrap().unwrap(), r);
    assert_eq!(s.count_invoices("uk").unwrap(), 2);
    let mut ids = vec![];
    s.for_each_invoice("uk", &mut |r| {
        ids.push(r.snapshot.remote_id);
        true
    })
    .unwrap();
    assert_eq!(ids, ["a1", "a2"]);

    let c = Customer {
        connection: ConnectionId::new("uk"),
        id: "c1".into(),
        name: "Ridgeway".into(),
        email: None,
        updated_at: None,
        phones: vec![overdued_connector::Phone {
            kind: "mobile".into(),
            number: "+44 7700 900123".into(),
        }],
    };
    s.put_customer(&c).unwrap();
    assert_eq!(s.get_customer("uk", "c1").unwrap().unwrap(), c);

    let st = SyncState {
        cursor: SyncCursor::initial(),
        full_cursor: Some(SyncCursor::full()),
        last_success: Some(t("2026-10-01T00:00:00Z")),
        last_full_sync: None,
        last_error: None,
    };
    s.put_sync_state("uk", &st).unwrap();
    assert_eq!(s.get_sync_state("uk").unwrap().unwrap(), st);

    let tok = TokenSet {
        access_token: Secret::new("at"),
        access_expires_at: t("2026-10-01T01:00:00Z"),
        refresh_token: Secret::new("rt"),
        refresh_expires_at: None,
        previous_refresh_token: None,
        obtained_at: t("2026-10-01T00:00:00Z"),
        bound_to: Some("tenant".into()),
        grant_id: None,
        needs_reconnect: false,
    };
    s.put_tokens("uk", &tok).unwrap();
    assert_eq!(s.get_tokens("uk").unwrap().unwrap(), tok);
    assert_eq!(s.load_tokens("uk").unwrap().unwrap(), tok);

    let j = journal("k1", "a1", JournalState::Intent);
    s.put_journal(&j).unwrap();
    assert_eq!(s.get_journal(&key("k1")).unwrap().unwrap(), j);
    assert_eq!(s.unfinished_journal("uk").unwrap(), vec![j.clone()]);
    let done = journal(
        "k1",
        "a1",
        JournalState::Done {
            at: t("2026-10-07T09:00:01Z"),
            created_id: None,
            replayed: false,
        },
    );
    s.put_journal(&done).unwrap();
    // Done, but its audit note is not in the ledger yet: still unfinished.
    assert_eq!(s.unfinished_journal("uk").unwrap(), vec![done.clone()]);
    let done = JournalEntry {
        audit_note_done: true,
        ..done
    };
    s.put_journal(&done).unwrap();
    assert!(s.unfinished_journal("uk").unwrap().is_empty());
    assert_eq!(s.journal_for_invoice("uk", "a1").unwrap(), vec![done]);
    assert!(
        s.journal_for_invoice("uk", "a").unwrap().is_empty(),
        "prefix of another id must not match"
    );

    let a = AuditEvent {
        at: t("2026-10-07T09:00:01Z"),
        connection: "uk".into(),
        invoice_id: Some("a1".into()),
        kind: "action".into(),
        message: "reminder sent".into(),
        detail: serde_json::json!({"step": "+7d"}),
    };
    s.append_audit(&a).unwrap();
    s.append_audit(&AuditEvent {
        invoice_id: None,
        ..a.clone()
    })
    .unwrap();
    assert_eq!(s.audit_for_invoice("uk", "a1").unwrap(), vec![a.clone()]);
    assert_eq!(
        s.audit_since("uk", t("2026-10-01T00:00:00Z"))
            .unwrap()
            .len(),
        2
    );
    assert!(s
        .audit_since("uk", t("2026-11-01T00:00:00Z"))
        .unwrap()
        .is_empty());

    let promise = Hold::Promise {
        until: NaiveDate::from_ymd_opt(2026, 10, 14).unwrap(),
        amount: Some(dec!(100)),
        balance_when_made: Some(dec!(700.25)),
        set_at: t("2026-10-07T10:00:00Z"),
    };
    let pause = Hold::Pause {
        reason: "dispute: wrong quantity".into(),
        set_at: t("2026-10-07T10:00:00Z"),
    };
    s.put_hold("uk", &HoldTarget::Invoice("a1".into()), &promise)
        .unwrap();
    s.put_hold("uk", &HoldTarget::Customer("c1".into()), &pause)
        .unwrap();
    assert_eq!(s.holds("uk").unwrap().len(), 2);
    assert!(s
        .remove_hold("uk", &HoldTarget::Invoice("a1".into()), HoldKind::Promise)
        .unwrap());
    assert!(!s
        .remove_hold("uk", &HoldTarget::Invoice("a1".into()), HoldKind::Promise)
        .unwrap());
    assert_eq!(
        s.holds("uk").unwrap(),
        vec![(HoldTarget::Customer("c1".into()), pause)]
    );
}

#[test]
fn records_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = SledStore::open(dir.path()).unwrap();
        s.put_invoice(&record("uk", "a1")).unwrap();
        s.flush().unwrap();
    }
    let s = SledStore::open(dir.path()).unwrap();
    assert!(s.get_invoice("uk", "a1").unwrap().is_some());
}

/// A process killed while sled wrote a snapshot leaves `snap.<lsn>.generating` behind;
/// sled 0.34.7 alone would read it as the newest snapshot and refuse to open.
#[test]
fn an_unfinished_snapshot_from_a_killed_run_does_not_lock_out_the_store() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = SledStore::open(dir.path()).unwrap();
        for i in 0..50 {
            s.put_invoice(&record("uk", &format!("a{i}"))).unwrap();
        }
        s.flush().unwrap();
    }
    for torn in [
        &b""[..],
        &b"\x01\x02\x03 half a snapshot, no length, no crc"[..],
    ] {
        let path = dir
            .path()
            .join("db")
            .join("snap.7FFFFFFFFFFFFFFF.generating");
        std::fs::write(&path, torn).unwrap();
        let s = SledStore::open(dir.path()).expect("the store opens");
        assert!(!path.exists(), "the torn snapshot is removed");
        assert_eq!(s.count_invoices("uk").unwrap(), 50, "nothing is lost");
    }
}

#[test]
fn a_second_open_names_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let _first = SledStore::open(dir.path()).unwrap();
    let e = SledStore::open(dir.path()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("in use by another overdued process")
            && msg.contains(&format!("pid {}", std::process::id())),
        "{msg}"
    );
}

#[cfg(unix)]
#[test]
fn the_state_directory_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let _s = SledStore::open(&state).unwrap();
    assert_eq!(
        std::fs::metadata(&state).unwrap().permissions().mode() & 0o777,
        0o700
    );
}

#[test]
fn a_record_from_a_newer_release_is_refused_clearly() {
    let e = sled_decode_newer();
    assert!(
        e.contains("format version 9") && e.contains("upgrade overdued"),
        "{e}"
    );
}

fn sled_decode_newer() -> String {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path().join("db")).unwrap();
        db.open_tree("invoices")
            .unwrap()
            .insert(b"uk\0x", br#"{"v":9,"r":{"new":"shape"}}"#.to_vec())
            .unwrap();
        db.flush().unwrap();
    }
    let s = SledStore::open(dir.path()).unwrap();
    s.get_invoice("uk", "x").unwrap_err().to_string()
}

#[test]
fn a_corrupt_record_is_named() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path().join("db")).unwrap();
        db.open_tree("invoices")
            .unwrap()
            .insert(b"uk\0x", b"not json".to_vec())
            .unwrap();
        db.flush().unwrap();
    }
    let s = SledStore::open(dir.path()).unwrap();
    let e = s.get_invoice("uk", "x").unwrap_err().to_string();
    assert!(e.contains("invoices/uk/x"), "{e}");
}

/// Run as a child process by `flushed_writes_survive_sigkill`: writes journal entries
/// durably forever, printing each key once `put_journal` has returned.
#[test]
fn child_durable_writer() {
    let Ok(dir) = std::env::var("OVERDUED_STORE_CHILD_DIR") else {
        return;
    };
    let s = SledStore::open(std::path::Path::new(&dir)).unwrap();
    for i in 0.. {
        let key = format!("k{i:06}");
        s.put_journal(&journal(&key, &format!("inv{i}"), JournalState::Intent))
            .unwrap();
        s.put_invoice(&record("uk", &format!("inv{i}"))).unwrap();
        println!("DURABLE {key}");
    }
}

#[cfg(unix)]
#[test]
fn flushed_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3 {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "store::tests::child_durable_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("OVERDUED_STORE_CHILD_DIR", dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let mut confirmed = Vec::new();
        for line in std::io::BufReader::new(out).lines() {
            let line = line.unwrap();
            if let Some(k) = line.strip_prefix("DURABLE ") {
                confirmed.push(k.to_string());
                // Kill at a different point each round.
                if confirmed.len() >= 20 + round * 17 {
                    break;
                }
            }
        }
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        child.wait().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        for k in &confirmed {
            let e = s.get_journal(&key(k)).unwrap();
            assert!(
                e.is_some(),
                "round {round}: durable journal entry {k} lost after SIGKILL"
            );
        }
        assert!(!confirmed.is_empty());
    }
}

/// Journal records as format version 1 wrote them (taken from a state dir of that
/// release): each namespace migrates to its typed payload, keys kept byte for byte.
#[test]
fn version_1_journal_records_read_as_typed_payloads() {
    let action = r#"{"v":1,"r":{"key":"od1-02d34c902b748def61020ac6cba80c2b91e5","connection":"qbo","invoice_id":"3","customer_id":"2","kind":"late_fee","step_id":"+14d/p0","planned_for":"2026-03-16","created_at":"2026-03-16T10:00:00Z","expected_amount_due":"200.00","payload":{"type":"late_fee","amount":{"amount":"40.00","currency":"GBP"},"description":"Late fee","posting":"separate_invoice","explanation":"fixed 40.00","period":0,"due_in_days":14},"state":{"state":"done","at":"2026-03-16T10:00:00Z","created_id":"6","replayed":false},"audit_note_done":true}}"#;
    let smtp = r#"{"v":1,"r":{"key":"smtp:od1-43d10003c71f427f46d2ca0a6c53f5529869","connection":"qbo/smtp","invoice_id":"3","customer_id":"2","kind":"remind","step_id":"+7d","planned_for":"2026-03-09","created_at":"2026-03-09T10:00:00Z","expected_amount_due":"200.00","payload":{"message_id":"<a@example.com>","to":"Alder <alder@x.example>","subject":"Invoice 1001","statement":false,"actions":["od1-43d10003c71f427f46d2ca0a6c53f5529869"]},"state":{"state":"intent"},"audit_note_done":true}}"#;
    let digest = r#"{"v":1,"r":{"key":"digest:2026-03-16","connection":"overdued/digest","invoice_id":"","customer_id":"","kind":"note","step_id":"digest","planned_for":"2026-03-16","created_at":"2026-03-16T10:00:00Z","expected_amount_due":"0","payload":{"message_id":"<d@example.com>","to":"Owner <owner@example.com>","subject":"Digest"},"state":{"state":"done","at":"2026-03-16T10:00:01Z","created_id":"<d@example.com>","replayed":false},"audit_note_done":true}}"#;
    let dir = tempfile::tempdir().unwrap();
    let keys = [
        "od1-02d34c902b748def61020ac6cba80c2b91e5",
        "smtp:od1-43d10003c71f427f46d2ca0a6c53f5529869",
        "digest:2026-03-16",
    ];
    {
        let db = sled::open(dir.path().join("db")).unwrap();
        let j = db.open_tree("journal").unwrap();
        for (k, v) in keys.iter().zip([action, smtp, digest]) {
            j.insert(k.as_bytes(), v.as_bytes().to_vec()).unwrap();
        }
        db.flush().unwrap();
    }
    let s = SledStore::open(dir.path()).unwrap();
    let fee_key = IdempotencyKey::derive("qbo", "3", ActionKind::LateFee, "+14d/p0");
    let fee = s.get_journal(&fee_key).unwrap().unwrap();
    assert_eq!(fee.key, fee_key);
    assert!(matches!(
        fee.payload,
        JournalPayload::Action(ActionPayload::LateFee { period: 0, due_in_days: 14, ref amount, .. })
            if amount.amount == dec!(40.00)
    ));
    let remind = IdempotencyKey::derive("qbo", "3", ActionKind::Remind, "0d");
    let sent = s
        .get_journal(&IdempotencyKey::smtp_send(&remind))
        .unwrap()
        .unwrap();
    assert_eq!(sent.key.as_str(), keys[1]);
    assert!(matches!(
        &sent.payload,
        JournalPayload::SmtpSend(SmtpSend { message_id, actions, statement: false, .. })
            if message_id == "<a@example.com>" && actions == &vec![remind.as_str().to_string()]
    ));
    let day = s
        .get_journal(&IdempotencyKey::digest(
            NaiveDate::from_ymd_opt(2026, 3, 16).unwrap(),
        ))
        .unwrap()
        .unwrap();
    assert!(matches!(
        &day.payload,
        JournalPayload::Digest(DigestSend { message_id, .. }) if message_id == "<d@example.com>"
    ));

    // Written back, a migrated record is a version-2 record and reads the same.
    s.put_journal(&sent).unwrap();
    assert_eq!(
        s.get_journal(&IdempotencyKey::smtp_send(&remind))
            .unwrap()
            .unwrap(),
        sent
    );
}

#[test]
fn an_unreadable_version_1_payload_is_named_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path().join("db")).unwrap();
        db.open_tree("journal").unwrap().insert(
            b"digest:2026-03-16",
            br#"{"v":1,"r":{"key":"digest:2026-03-16","connection":"overdued/digest","invoice_id":"","customer_id":"","kind":"note","step_id":"digest","planned_for":"2026-03-16","created_at":"2026-03-16T10:00:00Z","expected_amount_due":"0","payload":{"to":"Owner"},"state":{"state":"intent"},"audit_note_done":true}}"#.to_vec(),
        ).unwrap();
        db.flush().unwrap();
    }
    let s = SledStore::open(dir.path()).unwrap();
    let e = s
        .get_journal(&IdempotencyKey::digest(
            NaiveDate::from_ymd_opt(2026, 3, 16).unwrap(),
        ))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("journal/digest:2026-03-16") && e.contains("message_id"),
        "{e}"
    );
}

#[test]
fn payment_plans_are_typed_records_in_order_and_survive_a_reopen() {
    use crate::arrangements::{Arrangement, CoveredInvoice, Instalment};
    let plan = |n: u32| Arrangement {
        id: format!("P{n}"),
        connection: "uk".into(),
        customer_id: "c1".into(),
        customer_name: "Sonnenschein".into(),
        currency: Currency::GBP,
        invoices: vec![CoveredInvoice {
            id: "a1".into(),
            number: "INV-1".into(),
            balance_when_agreed: dec!(300.00),
        }],
        instalments: vec![Instalment {
            due: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
            amount: dec!(300.00),
        }],
        agreed_at: t("2026-11-20T10:00:00Z"),
        agreed_on: NaiveDate::from_ymd_opt(2026, 11, 20).unwrap(),
        cancelled_on: None,
        broken_on: None,
    };
    let dir = tempfile::tempdir().unwrap();
    {
        let s = SledStore::open(dir.path()).unwrap();
        for n in [10, 2, 1] {
            s.put_arrangement(&plan(n)).unwrap();
        }
        // A change is a new version of the same record, not a second plan.
        let mut p2 = plan(2);
        p2.cancelled_on = Some(NaiveDate::from_ymd_opt(2026, 11, 25).unwrap());
        s.put_arrangement(&p2).unwrap();
        assert!(s.arrangements("other").unwrap().is_empty());
    }
    let s = SledStore::open(dir.path()).unwrap();
    let got = s.arrangements("uk").unwrap();
    let ids: Vec<&str> = got.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["P1", "P2", "P10"]);
    assert_eq!(got[1].cancelled_on, NaiveDate::from_ymd_opt(2026, 11, 25));
    assert_eq!(got[0], plan(1));
}

/// Writes raw values into a fresh sled database the way an earlier release left it.
fn raw_db(dir: &std::path::Path, tree: &str, rows: &[(&[u8], Vec<u8>)]) {
    let db = sled::open(dir.join("db")).unwrap();
    let t = db.open_tree(tree).unwrap();
    for (k, v) in rows {
        t.insert(*k, v.clone()).unwrap();
    }
    db.flush().unwrap();
}

#[test]
fn json_invoice_records_are_rewritten_in_binary_once_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut paid = record("uk", "2");
    paid.snapshot.status = InvoiceStatus::Paid;
    paid.snapshot.paid_on = NaiveDate::from_ymd_opt(2026, 10, 9);
    paid.snapshot.version = Some("7".into());
    let old: Vec<InvoiceRecord> = vec![record("uk", "1"), paid];
    let json = |r: &InvoiceRecord, v: u32| {
        serde_json::to_vec(&serde_json::json!({ "v": v, "r": r })).unwrap()
    };
    raw_db(
        dir.path(),
        "invoices",
        &[
            (b"uk\x001", json(&old[0], 1)),
            (b"uk\x002", json(&old[1], 2)),
            (b"uk\x00bad", b"not json".to_vec()),
        ],
    );
    {
        let s = SledStore::open(dir.path()).unwrap();
        for r in &old {
            assert_eq!(
                s.get_invoice("uk", &r.snapshot.remote_id).unwrap().as_ref(),
                Some(r)
            );
        }
        // Damaged before: still named when read, not lost and not fatal to the open.
        let e = s.get_invoice("uk", "bad").unwrap_err().to_string();
        assert!(e.contains("invoices/uk/bad"), "{e}");
    }
    let db = sled::open(dir.path().join("db")).unwrap();
    let t = db.open_tree("invoices").unwrap();
    for id in ["1", "2"] {
        let v = t.get(format!("uk\0{id}")).unwrap().unwrap();
        assert!(codec::is_binary(&v), "{id} still JSON");
    }
    assert_eq!(&*t.get(b"uk\0bad").unwrap().unwrap(), b"not json");
    // Marked done: a JSON record appearing later is read as it is, not rescanned.
    t.insert(b"uk\x003", json(&record("uk", "3"), 2)).unwrap();
    db.flush().unwrap();
    drop((t, db));
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(s.get_invoice("uk", "3").unwrap(), Some(record("uk", "3")));
    drop(s);
    let db = sled::open(dir.path().join("db")).unwrap();
    let v = db
        .open_tree("invoices")
        .unwrap()
        .get(b"uk\x003")
        .unwrap()
        .unwrap();
    assert!(!codec::is_binary(&v));
}

#[test]
fn a_binary_record_of_a_newer_release_is_refused_and_a_damaged_one_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut newer = codec::encode(&record("uk", "n"));
    newer[0] = 0x80 | 9;
    let mut cut = codec::encode(&record("uk", "c"));
    cut.truncate(cut.len() - 3);
    raw_db(
        dir.path(),
        "invoices",
        &[(b"uk\x00n", newer), (b"uk\x00c", cut)],
    );
    let s = SledStore::open(dir.path()).unwrap();
    let e = s.get_invoice("uk", "n").unwrap_err();
    assert!(matches!(e, StoreError::TooNew { found: 9, .. }), "{e}");
    assert!(e.to_string().contains("upgrade overdued"), "{e}");
    let e = s.get_invoice("uk", "c").unwrap_err().to_string();
    assert!(e.contains("invoices/uk/c"), "{e}");
    let mut seen = Vec::new();
    let r = s.for_each_invoice("uk", &mut |r| {
        seen.push(r);
        true
    });
    assert!(r.is_err());
}

fn rows_of(s: &SledStore, conn: &str) -> Vec<(String, IndexRow)> {
    let mut out = Vec::new();
    s.index_rows(conn, &mut |id, row| {
        out.push((id.to_string(), *row));
        true
    })
    .unwrap();
    out
}

#[test]
fn the_summary_index_follows_invoice_journal_and_hold_writes() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    s.put_invoices(&[record("uk", "1"), record("uk", "2"), record("us", "1")])
        .unwrap();
    let mut fee = record("uk", "3");
    fee.snapshot.is_fee_invoice = true;
    s.put_invoice(&fee).unwrap();
    assert_eq!(s.check_index().unwrap(), vec![]);

    // A journal entry flags its invoice; the flag survives the invoice's next sync.
    s.put_journal(&journal("a", "1", JournalState::Intent))
        .unwrap();
    let mut paid = record("uk", "1");
    paid.snapshot.status = InvoiceStatus::Paid;
    paid.snapshot.amount_due = dec!(0);
    s.put_invoice(&paid).unwrap();
    s.put_journal_with_audit(
        &journal("b", "2", JournalState::Intent),
        &AuditEvent {
            at: t("2026-10-07T09:00:00Z"),
            connection: "uk".into(),
            invoice_id: Some("2".into()),
            kind: "action".into(),
            message: "m".into(),
            detail: serde_json::Value::Null,
        },
    )
    .unwrap();
    // Holds: a promise and a pause, then one removed (still held), then the other.
    let promise = Hold::Promise {
        until: NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
        amount: None,
        balance_when_made: None,
        set_at: t("2026-10-07T09:00:00Z"),
    };
    let pause = Hold::Pause {
        reason: "dispute".into(),
        set_at: t("2026-10-07T09:00:00Z"),
    };
    let inv3 = HoldTarget::Invoice("3".into());
    s.put_hold("uk", &inv3, &promise).unwrap();
    s.put_hold("uk", &inv3, &pause).unwrap();
    s.put_hold("uk", &HoldTarget::Customer("c1".into()), &pause)
        .unwrap();
    assert_eq!(s.check_index().unwrap(), vec![]);
    s.remove_hold("uk", &inv3, HoldKind::Promise).unwrap();
    assert_eq!(s.check_index().unwrap(), vec![]);
    let rows = rows_of(&s, "uk");
    let ids: Vec<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["1", "2", "3"]);
    assert_eq!(rows[0].1.status, InvoiceStatus::Paid);
    assert!(rows[0].1.has(index::FLAG_HAS_JOURNAL));
    assert!(rows[1].1.has(index::FLAG_HAS_JOURNAL));
    assert!(rows[2].1.has(index::FLAG_HAS_HOLDS) && rows[2].1.has(index::FLAG_FEE_INVOICE));
    assert!(!rows[2].1.has(index::FLAG_HAS_JOURNAL));
    assert_eq!(rows[1].1.amount_due(), Some(dec!(700.25)));
    s.remove_hold("uk", &inv3, HoldKind::Pause).unwrap();
    assert!(!rows_of(&s, "uk")[2].1.has(index::FLAG_HAS_HOLDS));
    assert_eq!(rows_of(&s, "us").len(), 1);
    // An invoice stored after its journal entry and hold (rows rebuilt by an older
    // release's leftovers, or an entry for an invoice not synced yet) looks them up.
    s.put_journal(&journal("c", "9", JournalState::Intent))
        .unwrap();
    s.put_hold("uk", &HoldTarget::Invoice("9".into()), &pause)
        .unwrap();
    s.put_invoice(&record("uk", "9")).unwrap();
    let nine = rows_of(&s, "uk").pop().unwrap().1;
    assert!(nine.has(index::FLAG_HAS_JOURNAL) && nine.has(index::FLAG_HAS_HOLDS));
    assert_eq!(s.check_index().unwrap(), vec![]);

    // A damaged row, a stale one and one without a record are all found, and a
    // rebuild puts them right.
    let mut stale = rows_of(&s, "uk")[2].1;
    let raw = s.db.open_tree("plan_index").unwrap();
    raw.insert(b"uk\x002", &b"short"[..]).unwrap();
    stale.status = InvoiceStatus::Voided;
    raw.insert(b"uk\x003", &stale.encode()[..]).unwrap();
    raw.insert(b"uk\x00ghost", &stale.encode()[..]).unwrap();
    raw.remove(b"us\x001").unwrap();
    let found = s.check_index().unwrap();
    let got: Vec<(&str, &str)> = found
        .iter()
        .map(|m| (m.connection.as_str(), m.invoice_id.as_str()))
        .collect();
    assert_eq!(
        got,
        [("uk", "2"), ("uk", "3"), ("us", "1"), ("uk", "ghost")],
        "{found:?}"
    );
    assert!(
        found[1]
            .what
            .contains("status Voided in the row, Open in the record"),
        "{found:?}"
    );
    assert_eq!(s.rebuild_index().unwrap(), 5);
    assert_eq!(s.check_index().unwrap(), vec![]);
}

#[test]
fn an_older_store_gets_its_index_built_on_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = SledStore::open(dir.path()).unwrap();
        s.put_invoices(&[record("uk", "1"), record("uk", "2")])
            .unwrap();
        s.put_journal(&journal("a", "2", JournalState::Intent))
            .unwrap();
        // As a store written before the index: no rows, no mark.
        s.db.open_tree("plan_index").unwrap().clear().unwrap();
        s.db.remove(b"overdued.plan_index").unwrap();
        s.flush().unwrap();
    }
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(s.check_index().unwrap(), vec![]);
    let rows = rows_of(&s, "uk");
    assert_eq!(rows.len(), 2);
    assert!(rows[1].1.has(index::FLAG_HAS_JOURNAL) && !rows[0].1.has(index::FLAG_HAS_JOURNAL));
}

#[test]
fn journalled_invoices_lists_each_invoice_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    s.put_journal(&journal("a", "1", JournalState::Intent))
        .unwrap();
    s.put_journal(&journal("b", "1", JournalState::Intent))
        .unwrap();
    s.put_journal(&journal("c", "22", JournalState::Intent))
        .unwrap();
    let set = s.journalled_invoices("uk", false).unwrap().unwrap();
    let mut ids: Vec<_> = set.into_iter().collect();
    ids.sort();
    assert_eq!(ids, ["1", "22"]);
    assert!(s
        .journalled_invoices("u", false)
        .unwrap()
        .unwrap()
        .is_empty());
}

#[test]
fn ageing_from_the_index_rows_equals_ageing_from_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    let mut recs = Vec::new();
    for i in 0..40u32 {
        let mut r = record("uk", &format!("{i:03}"));
        r.snapshot.due_date =
            NaiveDate::from_ymd_opt(2026, 6, 1).unwrap() + chrono::Days::new(u64::from(i) * 7);
        r.snapshot.amount_due = rust_decimal::Decimal::new(i64::from(i) * 1234 - 2000, 2);
        r.snapshot.status = match i % 5 {
            0 => InvoiceStatus::Paid,
            1 => InvoiceStatus::Draft,
            _ => InvoiceStatus::Open,
        };
        if i % 3 == 0 {
            r.snapshot.currency = Currency::EUR;
        }
        recs.push(r);
    }
    s.put_invoices(&recs).unwrap();
    let today = NaiveDate::from_ymd_opt(2026, 10, 15).unwrap();
    let mut want = crate::report::ageing::Ageing::default();
    for r in &recs {
        want.add(&r.snapshot, today);
    }
    assert!(want.by_currency.len() == 2 && want.by_currency["GBP"].len() >= 4);
    let got = index::ageing_from_rows(&s, "uk", today).unwrap().unwrap();
    assert_eq!(got, want);
}

/// A store that answers only what every backend must: the trait's defaults for the
/// rest (no journal listing, no index), as the planner's load was before it used them.
struct Plain<'a>(&'a SledStore);

impl Store for Plain<'_> {
    fn put_invoice(&self, rec: &InvoiceRecord) -> Result<()> {
        self.0.put_invoice(rec)
    }
    fn put_invoices(&self, recs: &[InvoiceRecord]) -> Result<()> {
        self.0.put_invoices(recs)
    }
    fn get_invoice(&self, connection: &str, id: &str) -> Result<Option<InvoiceRecord>> {
        self.0.get_invoice(connection, id)
    }
    fn for_each_invoice(
        &self,
        connection: &str,
        f: &mut dyn FnMut(InvoiceRecord) -> bool,
    ) -> Result<()> {
        self.0.for_each_invoice(connection, f)
    }
    fn count_invoices(&self, connection: &str) -> Result<usize> {
        self.0.count_invoices(connection)
    }
    fn put_customer(&self, c: &Customer) -> Result<()> {
        self.0.put_customer(c)
    }
    fn get_customer(&self, connection: &str, id: &str) -> Result<Option<Customer>> {
        self.0.get_customer(connection, id)
    }
    fn get_sync_state(&self, connection: &str) -> Result<Option<SyncState>> {
        self.0.get_sync_state(connection)
    }
    fn put_sync_state(&self, connection: &str, s: &SyncState) -> Result<()> {
        self.0.put_sync_state(connection, s)
    }
    fn get_tokens(&self, connection: &str) -> Result<Option<TokenSet>> {
        self.0.get_tokens(connection)
    }
    fn put_tokens(&self, connection: &str, t: &TokenSet) -> Result<()> {
        self.0.put_tokens(connection, t)
    }
    fn get_journal(&self, key: &IdempotencyKey) -> Result<Option<JournalEntry>> {
        self.0.get_journal(key)
    }
    fn put_journal(&self, e: &JournalEntry) -> Result<()> {
        self.0.put_journal(e)
    }
    fn journal_for_invoice(&self, connection: &str, invoice_id: &str) -> Result<Vec<JournalEntry>> {
        self.0.journal_for_invoice(connection, invoice_id)
    }
    fn journal_for_ledger(&self, ledger: &str, invoice_id: &str) -> Result<Vec<JournalEntry>> {
        self.0.journal_for_ledger(ledger, invoice_id)
    }
    fn rekey_journal(
        &self,
        connection: &str,
        ledger: &str,
        rekey: &dyn Fn(&JournalEntry) -> IdempotencyKey,
    ) -> Result<usize> {
        self.0.rekey_journal(connection, ledger, rekey)
    }
    fn unfinished_journal(&self, connection: &str) -> Result<Vec<JournalEntry>> {
        self.0.unfinished_journal(connection)
    }
    fn append_audit(&self, e: &AuditEvent) -> Result<()> {
        self.0.append_audit(e)
    }
    fn audit_for_invoice(&self, connection: &str, invoice_id: &str) -> Result<Vec<AuditEvent>> {
        self.0.audit_for_invoice(connection, invoice_id)
    }
    fn audit_since(&self, connection: &str, since: DateTime<Utc>) -> Result<Vec<AuditEvent>> {
        self.0.audit_since(connection, since)
    }
    fn put_hold(&self, connection: &str, target: &HoldTarget, hold: &Hold) -> Result<()> {
        self.0.put_hold(connection, target, hold)
    }
    fn remove_hold(&self, connection: &str, target: &HoldTarget, kind: HoldKind) -> Result<bool> {
        self.0.remove_hold(connection, target, kind)
    }
    fn holds(&self, connection: &str) -> Result<Vec<(HoldTarget, Hold)>> {
        self.0.holds(connection)
    }
    fn flush(&self) -> Result<()> {
        self.0.flush()
    }
}

#[test]
fn the_lean_load_gives_the_cases_a_lookup_per_invoice_gives() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    let now = t("2026-10-08T09:00:00Z");
    let mut recs = Vec::new();
    for i in 0..30u32 {
        let mut r = record("uk", &format!("{i:02}"));
        r.snapshot.status = match i % 4 {
            0 => InvoiceStatus::Paid,
            1 => InvoiceStatus::Voided,
            _ => InvoiceStatus::Open,
        };
        // Closed ones seen long ago are left out; recently seen ones are kept.
        r.seen_at = if i % 8 < 4 {
            t("2026-09-01T00:00:00Z")
        } else {
            now - chrono::Duration::hours(1)
        };
        if i % 5 == 0 {
            r.snapshot.customer.email = None;
        }
        recs.push(r);
    }
    s.put_invoices(&recs).unwrap();
    s.put_customer(&Customer {
        connection: ConnectionId::new("uk"),
        id: "c1".into(),
        name: "Ridgeway Bakery".into(),
        email: Some("accounts@ridgeway.example".into()),
        updated_at: None,
        phones: vec![],
    })
    .unwrap();
    let done = JournalState::Done {
        at: t("2026-10-07T09:00:00Z"),
        created_id: None,
        replayed: false,
    };
    s.put_journal(&journal("a", "02", done.clone())).unwrap();
    s.put_journal(&journal("b", "07", JournalState::Intent))
        .unwrap();
    // Under an earlier connection name, found through the ledger.
    let mut old = journal("c", "10", done.clone());
    old.connection = "old-name".into();
    old.ledger = Some("xero:org".into());
    s.put_journal(&old).unwrap();
    s.put_hold(
        "uk",
        &HoldTarget::Invoice("06".into()),
        &Hold::Pause {
            reason: "dispute".into(),
            set_at: now,
        },
    )
    .unwrap();
    for ledger in [None, Some("xero:org")] {
        let lean = crate::cycle::load_cases_of(&s, "uk", ledger, now).unwrap();
        let plain = crate::cycle::load_cases_of(&Plain(&s), "uk", ledger, now).unwrap();
        assert_eq!(lean, plain);
        assert!(lean.len() > 10 && lean.len() < 30, "{}", lean.len());
        let with_history = lean
            .iter()
            .filter(|c| !c.history.actions.is_empty())
            .count();
        assert_eq!(with_history, if ledger.is_some() { 2 } else { 1 });
    }
}
