//! overdued switched on over a ledger of invoices 1 to 150 days overdue, in both
//! systems, every reminder by SMTP: each message parsed back from the loopback receiver
//! states the amount due, due date and days overdue (and the late-fee invoice once there
//! is one) exactly as the ledger holds them at send time, says how to pay (the ledger's
//! online link, else the policy's payment instructions) and carries the invoice PDF.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{Duration, NaiveDate};
use overdued::channels::loopback::{Received, Receiver};
use overdued::engine::dates::long_date;
use overdued::store::{JournalPayload, JournalState, Store};
use overdued_connector::{ActionKind, Clock, Connector, InvoiceSnapshot, TokenStore};
use overdued_sandbox::{Behaviour, System};
use rust_decimal_macros::dec;
use support::*;

const INSTRUCTIONS: &str =
    "Bank transfer to Example Ltd, sort code 12-34-56, account 12345678, quoting the invoice number.";

fn config(port: u16) -> String {
    format!(
        r#"
[channels.smtp]
host = "127.0.0.1"
port = {port}
security = "plain"
from = "billing@example.com"
from_name = "Example Ltd Accounts"
statements = false

[policies.default]
max_reminders_per_customer_per_day = 1
payment_instructions = "{INSTRUCTIONS}"

[[policies.default.steps]]
offset = "0d"
action = "remind"
template = "due_today"
channel = "smtp"

[[policies.default.steps]]
offset = "+7d"
action = "remind"
template = "follow_up"
channel = "smtp"

[[policies.default.steps]]
offset = "+14d"
action = "remind"
template = "firm"
channel = "smtp"

[[policies.default.steps]]
offset = "+30d"
action = "late_fee"

[[policies.default.steps]]
offset = "+45d"
action = "remind"
template = "stop_work"
channel = "smtp"

[[policies.default.steps]]
offset = "+60d"
action = "remind"
template = "final_notice"
channel = "smtp"

[[policies.default.steps]]
offset = "+90d"
action = "escalate"
template = "escalation"

[policies.default.late_fee]
model = "fixed"
amount = "40.00"
every_days = 30
cap_amount = "40.00"
"#
    )
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

/// The head and raw body of the first part with `content_type`.
fn raw_part<'a>(m: &'a Received, content_type: &str) -> Option<(&'a str, &'a str)> {
    let start = m.data.find(&format!("Content-Type: {content_type}"))?;
    let rest = &m.data[start..];
    let head_end = rest.find("\r\n\r\n")?;
    let body = &rest[head_end + 4..];
    Some((
        &rest[..head_end],
        &body[..body.find("\r\n--").unwrap_or(body.len())],
    ))
}

/// The plain text, decoded, with lines joined so phrases can be searched whole.
fn text(m: &Received) -> String {
    let (head, body) =
        raw_part(m, "text/plain").unwrap_or_else(|| panic!("no text part in\n{}", m.data));
    let body = if head.contains("quoted-printable") {
        unqp(body)
    } else {
        assert!(!head.contains("base64"), "{head}");
        body.to_string()
    };
    body.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn days(n: i64) -> String {
    format!("{n} day{}", if n == 1 { "" } else { "s" })
}

/// One invoice of the world and who it belongs to.
struct Watched {
    system: System,
    id: String,
    number: String,
    email: String,
}

/// The ledger as the connector reads it now, for the watched invoices and their fees.
struct LedgerNow {
    invoices: BTreeMap<(System, String), InvoiceSnapshot>,
    /// The open late-fee invoice of each invoice, by the original's id.
    fees: BTreeMap<(System, String), InvoiceSnapshot>,
    links: BTreeMap<(System, String), Option<String>>,
}

async fn read_ledger_now(
    connectors: &BTreeMap<System, Arc<dyn Connector>>,
    store: &dyn Store,
    watched: &[Watched],
) -> LedgerNow {
    let mut now = LedgerNow {
        invoices: BTreeMap::new(),
        fees: BTreeMap::new(),
        links: BTreeMap::new(),
    };
    for (system, c) in connectors {
        let ids: Vec<String> = watched
            .iter()
            .filter(|w| w.system == *system)
            .map(|w| w.id.clone())
            .collect();
        for s in c.fetch_invoices(&ids).await.expect("read the ledger") {
            let link = c.online_payment_link(&s.remote_id).await.expect("link");
            now.links.insert((*system, s.remote_id.clone()), link);
            now.invoices.insert((*system, s.remote_id.clone()), s);
        }
        // The fee invoices overdued raised: their ids are in the journal.
        for id in &ids {
            let fee_ids: Vec<String> = store
                .journal_for_invoice(conn_of(*system), id)
                .unwrap()
                .into_iter()
                .filter(|e| {
                    e.kind == ActionKind::LateFee && matches!(e.payload, JournalPayload::Action(_))
                })
                .filter_map(|e| match e.state {
                    JournalState::Done { created_id, .. } => created_id,
                    _ => None,
                })
                .collect();
            if fee_ids.is_empty() {
                continue;
            }
            for f in c.fetch_invoices(&fee_ids).await.expect("read fee invoices") {
                if f.status.is_open() && f.amount_due > rust_decimal::Decimal::ZERO {
                    now.fees.insert((*system, id.clone()), f);
                }
            }
        }
    }
    now
}

/// What a message was found to carry.
struct Found {
    fee: bool,
    link: bool,
}

/// Checks one message against the ledger as it was when the message was sent.
fn check_message(m: &Received, watched: &[Watched], at: &LedgerNow, today: NaiveDate) -> Found {
    let w = watched
        .iter()
        .find(|w| m.rcpt_to.contains(&w.email))
        .unwrap_or_else(|| panic!("a message to nobody watched: {:?}", m.rcpt_to));
    let key = (w.system, w.id.clone());
    let inv = &at.invoices[&key];
    let subject = m.header("Subject").unwrap();
    let body = text(m);
    let ctx = format!(
        "{:?} invoice {} on {today}: {subject}\n{body}",
        w.system, w.number
    );
    assert!(subject.contains(&w.number), "{ctx}");

    let amount = inv.due_money().display_human().to_string();
    assert!(
        body.contains(&format!("invoice {} for {amount}", w.number))
            || body.contains(&format!("Invoice {} for {amount}", w.number))
            || body.contains(&format!("payment of {amount} for invoice {}", w.number)),
        "amount due {amount}: {ctx}"
    );
    assert!(body.contains(&long_date(inv.due_date)), "due date: {ctx}");
    let d = (today - inv.due_date).num_days();
    let n = days(d);
    assert!(
        body.contains(&format!("{n} ago"))
            || body.contains(&format!("{n} overdue"))
            || body.contains(&format!("after {n}")),
        "{d} days overdue: {ctx}"
    );
    if d != 0 {
        assert!(
            !body.contains("due today") && !subject.contains("due today"),
            "{ctx}"
        );
    }
    if let Some(fee) = at.fees.get(&key) {
        assert!(
            body.contains(&format!(
                "Invoice {} for {} is the late fee for invoice {}",
                fee.display_number(),
                fee.due_money().display_human(),
                w.number
            )),
            "fee invoice {}: {ctx}",
            fee.display_number()
        );
    }
    match &at.links[&key] {
        Some(link) => assert!(
            body.contains(&format!("pay online at {link}")),
            "link: {ctx}"
        ),
        None => assert!(
            body.contains(&format!("How to pay: {INSTRUCTIONS}")),
            "instructions: {ctx}"
        ),
    }
    let (head, pdf) = raw_part(m, "application/pdf").unwrap_or_else(|| panic!("no PDF: {ctx}"));
    // base64 of "%PDF": the attachment is the ledger's own PDF, sent as binary.
    assert!(head.contains("base64"), "{head}");
    assert!(pdf.trim_start().starts_with("JVBERi"), "{ctx}");
    assert!(body.contains("A copy of the invoice is attached."), "{ctx}");
    Found {
        fee: at.fees.contains_key(&key),
        link: at.links[&key].is_some(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_email_is_true_at_send_time_says_how_to_pay_and_carries_the_pdf() {
    let rx = Receiver::start().await.unwrap();
    let first_day = date(2026, 6, 1);
    let start = london(first_day, 8, 0);
    let h = Harness::start(empty_world(start), "Europe/London", &config(rx.addr.port())).await;

    let mut watched = Vec::new();
    for (i, overdue) in [1i64, 6, 20, 35, 61, 95, 150].into_iter().enumerate() {
        let due = first_day - Duration::days(overdue);
        let name = format!("Customer {i} Ltd");
        let total = dec!(1234.50) + rust_decimal::Decimal::from(i as i64 * 1000);
        for c in h.invoice_in_both(
            &name,
            total,
            due - Duration::days(30),
            due,
            Behaviour::Never,
        ) {
            watched.push(Watched {
                system: c.system,
                email: format!(
                    "{}@{}.example",
                    name.to_lowercase().replace(' ', "."),
                    c.system.as_str().to_lowercase()
                ),
                id: c.id,
                number: c.number,
            });
        }
    }

    let tokens: Arc<dyn TokenStore> = h.store.clone();
    let clock: Arc<dyn Clock> = h.clock.clone();
    let mut connectors: BTreeMap<System, Arc<dyn Connector>> = BTreeMap::new();
    for (system, name) in [(System::QuickBooks, QBO), (System::Xero, XERO)] {
        let conn = h.config.connection(name).unwrap();
        connectors.insert(
            system,
            overdued::connections::build(conn, tokens.clone(), clock.clone()).unwrap(),
        );
    }

    let mut seen = 0;
    let mut checked = BTreeMap::<(System, bool), usize>::new();
    let mut with_fee = 0;
    let mut day = first_day;
    while day <= first_day + Duration::days(60) {
        // Each system with online payments for half the time and without for the other.
        if day == first_day || day == first_day + Duration::days(30) {
            let first_half = day == first_day;
            for (system, on) in [
                (System::QuickBooks, first_half),
                (System::Xero, !first_half),
            ] {
                h.sandbox()
                    .set_online_payments(system, &h.tenant(system), on)
                    .unwrap();
            }
        }
        let t = london(day, 10, 0);
        h.sandbox().set_now(t);
        h.clock.set(t);
        // Nobody pays in this world, so the ledger read just before the cycle is the
        // ledger at send time, save for fees the cycle itself raises after its emails.
        let before = read_ledger_now(&connectors, h.store.as_ref(), &watched).await;
        h.cycle_at(t).await;
        let msgs = rx.messages();
        for m in &msgs[seen..] {
            let found = check_message(m, &watched, &before, day);
            with_fee += usize::from(found.fee);
            let w = watched
                .iter()
                .find(|w| m.rcpt_to.contains(&w.email))
                .unwrap();
            *checked.entry((w.system, found.link)).or_default() += 1;
        }
        if day == first_day {
            // The first contact about every invoice, whatever its age, is the catch-up.
            assert_eq!(
                msgs.len(),
                watched.len(),
                "one message per invoice on day one"
            );
            for m in &msgs {
                let s = m.header("Subject").unwrap();
                assert!(s.ends_with("our records show it unpaid"), "{s}");
            }
        }
        seen = msgs.len();
        day += Duration::days(1);
    }
    for system in [System::QuickBooks, System::Xero] {
        let linked = checked.get(&(system, true)).copied().unwrap_or(0);
        let told = checked.get(&(system, false)).copied().unwrap_or(0);
        assert!(
            linked + told > 14,
            "{system:?}: only {} messages checked",
            linked + told
        );
        assert!(
            linked > 0 && told > 0,
            "{system:?}: {linked} with a link, {told} with instructions"
        );
    }
    assert!(with_fee > 0, "some message named a late-fee invoice");
    eprintln!("checked (system, with link) {checked:?}; {with_fee} naming a late-fee invoice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_carries_one_pdf_per_invoice_and_says_how_to_pay() {
    let rx = Receiver::start().await.unwrap();
    let first_day = date(2026, 6, 1);
    let h = Harness::start(
        empty_world(london(first_day, 8, 0)),
        "Europe/London",
        &config(rx.addr.port()).replace("statements = false", "statements = true"),
    )
    .await;
    for system in [System::QuickBooks, System::Xero] {
        h.sandbox()
            .set_online_payments(system, &h.tenant(system), false)
            .unwrap();
    }
    let mut numbers = Vec::new();
    for (overdue, total) in [(40i64, dec!(2500.00)), (10, dec!(120.75))] {
        let due = first_day - Duration::days(overdue);
        let c = h
            .sandbox()
            .create_invoice(overdued_sandbox::NewInvoice {
                system: System::QuickBooks,
                tenant: None,
                customer_name: "Linden Joinery".into(),
                customer_email: "ap@linden.example".into(),
                number: None,
                currency: None,
                total,
                issue_date: due - Duration::days(30),
                due_date: due,
                behaviour: Some(Behaviour::Never),
            })
            .unwrap();
        numbers.push((c.number, due, total));
    }
    h.cycle_at(london(first_day, 10, 0)).await;
    let msgs = rx.messages();
    let to_linden: Vec<_> = msgs
        .iter()
        .filter(|m| m.rcpt_to.contains(&"ap@linden.example".to_string()))
        .collect();
    assert_eq!(to_linden.len(), 1, "one statement");
    let m = to_linden[0];
    assert_eq!(
        m.header("Subject").unwrap(),
        "Statement of overdue invoices for Linden Joinery"
    );
    let body = text(m);
    for (number, due, total) in &numbers {
        let d = (first_day - *due).num_days();
        let line = format!(
            "Invoice {number}: {}, due {} ({} overdue)",
            overdued_connector::Money::new(*total, overdued_connector::Currency::USD)
                .display_human(),
            long_date(*due),
            days(d)
        );
        assert!(body.contains(&line), "{line}\n{body}");
    }
    assert!(
        body.contains(&format!("How to pay: {INSTRUCTIONS}")),
        "{body}"
    );
    assert!(
        body.contains("A copy of each of the 2 invoices is attached."),
        "{body}"
    );
    let pdfs = m.data.matches("Content-Type: application/pdf").count();
    assert_eq!(pdfs, 2, "one PDF per listed invoice");
    for (number, _, _) in &numbers {
        assert!(
            m.data
                .contains(&format!("filename=\"invoice-{number}.pdf\"")),
            "{number}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reminder_waits_for_its_pdf_when_the_ledger_cannot_give_it_now() {
    let rx = Receiver::start().await.unwrap();
    let first_day = date(2026, 6, 1);
    let h = Harness::start(
        empty_world(london(first_day, 8, 0)),
        "Europe/London",
        &config(rx.addr.port()),
    )
    .await;
    let due = first_day - Duration::days(10);
    let number = h
        .sandbox()
        .create_invoice(overdued_sandbox::NewInvoice {
            system: System::QuickBooks,
            tenant: None,
            customer_name: "Rowan Print".into(),
            customer_email: "ap@rowan.example".into(),
            number: None,
            currency: None,
            total: dec!(310.00),
            issue_date: due - Duration::days(30),
            due_date: due,
            behaviour: Some(Behaviour::Never),
        })
        .unwrap()
        .number;
    h.sandbox().set_faults(overdued_sandbox::FaultConfig {
        rate: 1.0,
        kinds: vec![overdued_sandbox::FaultKind::ServerError],
        endpoints: vec!["quickbooks.invoice.pdf".into()],
        ..Default::default()
    });
    let store: Arc<dyn Store> = h.store.clone();
    let tokens: Arc<dyn TokenStore> = h.store.clone();
    let clock: Arc<dyn Clock> = h.clock.clone();
    let t = london(first_day, 10, 0);
    h.sandbox().set_now(t);
    h.clock.set(t);
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
            overdued::executor::Outcome::Failed { retry: true, error, .. } if error.contains("PDF")
        )),
        "{:?}",
        qbo.exec.results
    );
    assert!(rx.messages().is_empty(), "no reminder without its copy");

    h.sandbox()
        .set_faults(overdued_sandbox::FaultConfig::default());
    h.cycle_at(london(first_day, 11, 0)).await;
    let msgs = rx.messages();
    assert_eq!(msgs.len(), 1);
    assert!(msgs[0].header("Subject").unwrap().contains(&number));
    let (_, pdf) = raw_part(&msgs[0], "application/pdf").expect("the PDF, once it could be read");
    assert!(pdf.trim_start().starts_with("JVBERi"));
}
