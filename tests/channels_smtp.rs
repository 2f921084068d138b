//! overdued's own email, end to end: the real cycle against an in-process sandbox,
//! delivering by SMTP to a receiver on 127.0.0.1 started by the test.

mod support;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use overdued::channels::loopback::{Received, Receiver};
use overdued::cycle::run_cycle;
use overdued::store::{
    AuditEvent, Hold, HoldKind, HoldTarget, InvoiceRecord, JournalEntry, JournalPayload,
    JournalState, SledStore, Store, StoreError, SyncState,
};
use overdued_connector::{Clock, Customer, IdempotencyKey, TokenSet, TokenStore};
use overdued_sandbox::{Behaviour, NewInvoice, System};
use rust_decimal_macros::dec;
use support::*;

/// The store, except that recording an email's outcome fails once, as a crash right
/// after the server accepted the message would leave it.
struct CrashAfterSend {
    inner: Arc<SledStore>,
    armed: std::sync::atomic::AtomicBool,
}

impl Store for CrashAfterSend {
    fn put_invoice(&self, r: &InvoiceRecord) -> Result<(), StoreError> {
        self.inner.put_invoice(r)
    }
    fn put_invoices(&self, r: &[InvoiceRecord]) -> Result<(), StoreError> {
        self.inner.put_invoices(r)
    }
    fn get_invoice(&self, c: &str, id: &str) -> Result<Option<InvoiceRecord>, StoreError> {
        self.inner.get_invoice(c, id)
    }
    fn for_each_invoice(
        &self,
        c: &str,
        f: &mut dyn FnMut(InvoiceRecord) -> bool,
    ) -> Result<(), StoreError> {
        self.inner.for_each_invoice(c, f)
    }
    fn count_invoices(&self, c: &str) -> Result<usize, StoreError> {
        self.inner.count_invoices(c)
    }
    fn put_customer(&self, c: &Customer) -> Result<(), StoreError> {
        self.inner.put_customer(c)
    }
    fn get_customer(&self, c: &str, id: &str) -> Result<Option<Customer>, StoreError> {
        self.inner.get_customer(c, id)
    }
    fn get_sync_state(&self, c: &str) -> Result<Option<SyncState>, StoreError> {
        self.inner.get_sync_state(c)
    }
    fn put_sync_state(&self, c: &str, s: &SyncState) -> Result<(), StoreError> {
        self.inner.put_sync_state(c, s)
    }
    fn get_tokens(&self, c: &str) -> Result<Option<TokenSet>, StoreError> {
        self.inner.get_tokens(c)
    }
    fn put_tokens(&self, c: &str, t: &TokenSet) -> Result<(), StoreError> {
        self.inner.put_tokens(c, t)
    }
    fn get_journal(&self, k: &IdempotencyKey) -> Result<Option<JournalEntry>, StoreError> {
        self.inner.get_journal(k)
    }
    fn put_journal(&self, e: &JournalEntry) -> Result<(), StoreError> {
        if matches!(e.payload, JournalPayload::SmtpSend(_))
            && !matches!(e.state, JournalState::Intent)
            && self.armed.swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return Err(StoreError::Backend("simulated crash after the send".into()));
        }
        self.inner.put_journal(e)
    }
    fn journal_for_invoice(&self, c: &str, i: &str) -> Result<Vec<JournalEntry>, StoreError> {
        self.inner.journal_for_invoice(c, i)
    }
    fn journal_for_ledger(&self, l: &str, i: &str) -> Result<Vec<JournalEntry>, StoreError> {
        self.inner.journal_for_ledger(l, i)
    }
    fn rekey_journal(
        &self,
        c: &str,
        l: &str,
        rekey: &dyn Fn(&JournalEntry) -> IdempotencyKey,
    ) -> Result<usize, StoreError> {
        self.inner.rekey_journal(c, l, rekey)
    }
    fn unfinished_journal(&self, c: &str) -> Result<Vec<JournalEntry>, StoreError> {
        self.inner.unfinished_journal(c)
    }
    fn append_audit(&self, e: &AuditEvent) -> Result<(), StoreError> {
        self.inner.append_audit(e)
    }
    fn audit_for_invoice(&self, c: &str, i: &str) -> Result<Vec<AuditEvent>, StoreError> {
        self.inner.audit_for_invoice(c, i)
    }
    fn audit_since(&self, c: &str, s: DateTime<Utc>) -> Result<Vec<AuditEvent>, StoreError> {
        self.inner.audit_since(c, s)
    }
    fn put_hold(&self, c: &str, t: &HoldTarget, h: &Hold) -> Result<(), StoreError> {
        self.inner.put_hold(c, t, h)
    }
    fn remove_hold(&self, c: &str, t: &HoldTarget, k: HoldKind) -> Result<bool, StoreError> {
        self.inner.remove_hold(c, t, k)
    }
    fn holds(&self, c: &str) -> Result<Vec<(HoldTarget, Hold)>, StoreError> {
        self.inner.holds(c)
    }
    fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush()
    }
}

fn channels_config(port: u16) -> String {
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
copy_owner = true

[policies.default]
payment_instructions = "Bank transfer to Example Ltd, sort code 12-34-56, account 12345678."
# The messages' structure is the subject here; tests/conduct_email.rs checks the PDFs.
attach_pdf = false

[[policies.default.steps]]
offset = "+7d"
action = "remind"
template = "follow_up"
channel = "smtp"
"#
    )
}

fn invoice(
    h: &Harness,
    customer: &str,
    total: rust_decimal::Decimal,
    due: chrono::NaiveDate,
) -> String {
    h.sandbox()
        .create_invoice(NewInvoice {
            system: System::QuickBooks,
            tenant: None,
            customer_name: customer.to_string(),
            customer_email: format!("{}@example.net", customer.to_lowercase().replace(' ', ".")),
            number: None,
            currency: None,
            total,
            issue_date: due - chrono::Duration::days(30),
            due_date: due,
            behaviour: Some(Behaviour::Never),
        })
        .expect("create invoice")
        .number
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
    String::from_utf8(out).unwrap()
}

/// The decoded body of the part with `content_type`.
fn part(m: &Received, content_type: &str) -> String {
    let start = m
        .data
        .find(&format!("Content-Type: {content_type}"))
        .unwrap_or_else(|| panic!("no {content_type} part in\n{}", m.data));
    let rest = &m.data[start..];
    let head_end = rest.find("\r\n\r\n").unwrap();
    let head = &rest[..head_end];
    let body = &rest[head_end + 4..];
    let body = &body[..body.find("\r\n--").unwrap_or(body.len())];
    if head.contains("quoted-printable") {
        unqp(body)
    } else {
        assert!(!head.contains("base64"), "{head}");
        body.to_string()
    }
    .replace("\r\n", "\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_by_smtp_statements_and_no_duplicate_after_a_crash() {
    let rx = Receiver::start().await.unwrap();
    let start = london(date(2026, 3, 2), 8, 0);
    let h = Harness::start(
        empty_world(start),
        "Europe/London",
        &channels_config(rx.addr.port()),
    )
    .await;
    // Alder owes two invoices (one reminder due today, one overdue already), Birch one.
    let a1 = invoice(&h, "Alder Books", dec!(200.00), date(2026, 2, 23));
    let a2 = invoice(&h, "Alder Books", dec!(100.50), date(2026, 2, 26));
    let b1 = invoice(&h, "Birch Cafe", dec!(75.00), date(2026, 2, 23));

    let t = london(date(2026, 3, 2), 10, 0);
    h.sandbox().set_now(t);
    h.clock.set(t);
    let conn = h.config.connection(QBO).unwrap();
    let tokens: Arc<dyn TokenStore> = h.store.clone();
    let clock: Arc<dyn Clock> = h.clock.clone();
    let connector = overdued::connections::build(conn, tokens, clock.clone()).unwrap();

    // First run: the first message goes out, then recording its outcome "crashes".
    let crashing = CrashAfterSend {
        inner: h.store.clone(),
        armed: true.into(),
    };
    let r = run_cycle(
        &h.config,
        conn,
        connector.as_ref(),
        &crashing,
        clock.as_ref(),
    )
    .await;
    assert!(r.is_err(), "the simulated crash fails the cycle");
    assert_eq!(rx.messages().len(), 1);

    // Restart: the attempted message is counted as sent, the rest goes out once.
    let rep = run_cycle(
        &h.config,
        conn,
        connector.as_ref(),
        h.store.as_ref(),
        clock.as_ref(),
    )
    .await
    .unwrap();
    for (inv, kind, step, outcome) in &rep.exec.results {
        assert!(
            matches!(outcome, overdued::executor::Outcome::Done { .. }),
            "{inv} {kind} {step}: {outcome:?}"
        );
    }
    // And once more the same day: nothing new.
    run_cycle(
        &h.config,
        conn,
        connector.as_ref(),
        h.store.as_ref(),
        clock.as_ref(),
    )
    .await
    .unwrap();

    let msgs = rx.messages();
    assert_eq!(msgs.len(), 2, "{msgs:#?}");
    let ids: std::collections::BTreeSet<_> = msgs
        .iter()
        .map(|m| m.header("Message-ID").unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "distinct Message-IDs");

    let alder = msgs
        .iter()
        .find(|m| m.rcpt_to.contains(&"alder.books@example.net".to_string()))
        .expect("a message to Alder");
    assert_eq!(alder.mail_from, "billing@example.com");
    assert!(
        alder.rcpt_to.contains(&"owner@example.com".to_string()),
        "owner's copy"
    );
    assert!(alder.header("Bcc").is_none(), "the copy is blind");
    assert_eq!(
        alder.header("From").unwrap(),
        "\"Example Ltd Accounts\" <billing@example.com>"
    );
    assert_eq!(alder.header("Reply-To").unwrap(), "accounts@example.com");
    assert_eq!(
        alder.header("Subject").unwrap(),
        "Statement of overdue invoices for Alder Books"
    );
    assert!(alder
        .header("Content-Type")
        .unwrap()
        .starts_with("multipart/alternative"));
    let text = part(alder, "text/plain");
    assert!(
        text.contains(&format!(
            "Invoice {a1}: USD 200.00, due 23 February 2026 (7 days overdue)"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "Invoice {a2}: USD 100.50, due 26 February 2026 (4 days overdue)"
        )),
        "{text}"
    );
    assert!(text.contains("Total due: USD 300.50"), "{text}");
    assert!(
        text.contains("we will write to you again") || text.contains("Kind regards"),
        "{text}"
    );
    let html = part(alder, "text/html");
    assert!(
        html.contains(&format!("Invoice {a1}: USD 200.00")),
        "{html}"
    );
    assert!(html.contains("<p>Dear Alder Books,</p>"), "{html}");

    let birch = msgs
        .iter()
        .find(|m| m.rcpt_to.contains(&"birch.cafe@example.net".to_string()))
        .expect("a message to Birch");
    assert_eq!(
        birch.header("Subject").unwrap(),
        // Birch's first message from us comes after the due date: the catch-up.
        format!("Invoice {b1} for USD 75.00: our records show it unpaid")
    );
    let text = part(birch, "text/plain");
    assert!(text.starts_with("Dear Birch Cafe,\n"), "{text}");
    assert!(text.contains("USD 75.00"), "{text}");
    assert!(text.contains("Example Ltd Accounts"), "{text}");
    assert!(part(birch, "text/html").contains("<p>Dear Birch Cafe,</p>"));

    // The journal says what happened to the message whose outcome was lost.
    let audit = h.store.audit_since(QBO, start).unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.kind == "email" && e.message.contains("counted as sent and not repeated")),
        "{audit:#?}"
    );
    // The ledger still gets its audit note for every reminder.
    let notes = audit.iter().filter(|e| e.kind == "action").count();
    assert_eq!(notes, 2, "{audit:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_message_is_retried_and_then_sent_once() {
    let rx = Receiver::start().await.unwrap();
    rx.set_answer(overdued::channels::loopback::Answer::Refuse(451));
    let start = london(date(2026, 3, 2), 8, 0);
    let h = Harness::start(
        empty_world(start),
        "Europe/London",
        &channels_config(rx.addr.port()),
    )
    .await;
    invoice(&h, "Cedar Works", dec!(50.00), date(2026, 2, 23));
    let t = london(date(2026, 3, 2), 10, 0);
    h.sandbox().set_now(t);
    h.clock.set(t);
    let store: Arc<dyn Store> = h.store.clone();
    let tokens: Arc<dyn TokenStore> = h.store.clone();
    let clock: Arc<dyn Clock> = h.clock.clone();
    let first =
        overdued::cycle::run_all_once(&h.config, store.clone(), tokens.clone(), clock.clone())
            .await;
    let qbo = first
        .iter()
        .find(|(n, _)| n == QBO)
        .unwrap()
        .1
        .as_ref()
        .unwrap();
    assert!(
        qbo.exec.results.iter().any(|r| matches!(
            &r.3,
            overdued::executor::Outcome::Failed { retry: true, .. }
        )),
        "{:?}",
        qbo.exec.results
    );
    assert!(rx.messages().is_empty());

    rx.set_answer(overdued::channels::loopback::Answer::Accept);
    let t = london(date(2026, 3, 2), 11, 0);
    h.sandbox().set_now(t);
    h.clock.set(t);
    overdued::cycle::run_all_once(&h.config, store.clone(), tokens.clone(), clock.clone()).await;
    overdued::cycle::run_all_once(&h.config, store, tokens, clock).await;
    assert_eq!(rx.messages().len(), 1);
}
