//! Text messages end to end through the real binary (`overdued run --once`, `overdued
//! sms ...`, `overdued run` for the reply webhook, `overdued check`) against the
//! sandbox's Twilio Messages API and its QuickBooks company:
//! - a customer without consent gets no text: the step goes by email, and `plan` says why;
//! - an opted-in customer gets the text steps inside the send window and outside quiet
//!   hours only;
//! - after STOP (Twilio's 21610, or a reply through the signed webhook) nothing more goes
//!   to the number and email takes over;
//! - a lost answer from Twilio never produces a second text (found in Twilio's log), and
//!   a request that never reached it is sent once;
//! - every text states the amount due at the time (after a part-payment) and the pay link;
//! - `check` refuses an SMS step without `[channels.sms]` and a template over the cap.

#[path = "support/service.rs"]
mod service;
mod support;

use std::path::Path;

use chrono::{DateTime, Utc};
use overdued_sandbox::{Effect, NewInvoice, RunningSandbox, Sandbox, System};
use rust_decimal_macros::dec;
use serde_json::{json, Value};
use service::{get, http, poll_until, run_to_end, spawn_daemon};
use support::{config_text, date, empty_world, utc};

const ALPHA: &str = "+447700900001";
const CHARLIE: &str = "+447700900003";
const DELTA: &str = "+447700900004";

/// Text steps at +1d, +8d and +15d (the last with the email too); email may go from 08:00,
/// texts not before 09:00 nor after 18:00.
const POLICY: &str = r#"
[policies.default]
max_reminders_per_customer_per_day = 1
notice_days = 0
payment_instructions = "Bank transfer to Sandbox Trading, sort code 12-34-56, account 12345678."

[[policies.default.steps]]
offset = "+1d"
action = "remind"
channel = "sms"

[[policies.default.steps]]
offset = "+8d"
action = "remind"
channel = "sms"

[[policies.default.steps]]
offset = "+15d"
action = "remind"
channel = "email+sms"

[policies.default.send_window]
cron = "* 8-19 * * Mon-Fri"
"#;

fn sms_table(url: &str, extra: &str) -> String {
    format!(
        "\n[channels.sms]\naccount_sid = \"{}\"\nauth_token = \"{}\"\nfrom = \"{}\"\n\
         sender_name = \"Sandbox Trading\"\napi_base = \"{url}\"\nquiet_hours = \"18:00-09:00\"\n{extra}",
        overdued_sandbox::TWILIO_ACCOUNT_SID,
        overdued_sandbox::TWILIO_AUTH_TOKEN,
        overdued_sandbox::TWILIO_FROM,
    )
}

struct World {
    rt: tokio::runtime::Runtime,
    running: RunningSandbox,
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
    numbers: Vec<(String, String)>,
}

impl World {
    fn sandbox(&self) -> &Sandbox {
        &self.running.sandbox
    }

    fn control(&self, method: &str, path: &str, body: &Value) -> Value {
        let addr = self.running.url().trim_start_matches("http://").to_string();
        let r = http(&addr, method, path, &[], &body.to_string());
        assert!(r.status < 300, "{path}: {} {}", r.status, r.body);
        serde_json::from_str(&r.body).unwrap_or(Value::Null)
    }

    fn overdued(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--config", self.config.to_str().unwrap()]);
        run_to_end(&all)
    }

    /// One cycle at `t` on both clocks; the run must succeed.
    fn cycle(&self, t: DateTime<Utc>) -> String {
        self.sandbox().set_now(t);
        let now = t.to_rfc3339();
        let (code, out, err) = self.overdued(&["run", "--once", "--now", &now]);
        assert_eq!(code, Some(0), "run --once at {now}: {out}\n{err}");
        err
    }

    fn effects(&self) -> Vec<Effect> {
        self.sandbox().ledger().effects
    }

    fn texts_to(&self, phone: &str) -> Vec<String> {
        self.effects()
            .iter()
            .filter(|e| e.kind == "sms" && e.detail["to"] == phone)
            .map(|e| e.detail["body"].as_str().unwrap_or("").to_string())
            .collect()
    }

    fn emails_for(&self, invoice_id: &str) -> usize {
        self.effects()
            .iter()
            .filter(|e| e.kind == "email" && e.invoice_id == invoice_id)
            .count()
    }

    fn invoice(&self, name: &str) -> String {
        self.numbers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| id.clone())
            .unwrap()
    }
}

fn start() -> World {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Monday 2 March 2026; the invoices fall due on Tuesday.
    let t0 = utc(date(2026, 3, 2), 10);
    let running = rt
        .block_on(Sandbox::start(
            empty_world(t0),
            "127.0.0.1:0".parse().unwrap(),
        ))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = running.url();
    let mut text = config_text(&running.sandbox, &url, "state", "UTC", POLICY);
    text.push_str(&sms_table(&url, ""));
    let config = dir.path().join("overdued.toml");
    std::fs::write(&config, &text).unwrap();
    let mut numbers = Vec::new();
    for (name, total) in [
        ("Alpha Ltd", dec!(500.00)),
        ("Bravo Ltd", dec!(320.00)),
        ("Charlie Ltd", dec!(210.00)),
        ("Delta Ltd", dec!(90.00)),
    ] {
        let c = running
            .sandbox
            .create_invoice(NewInvoice {
                system: System::QuickBooks,
                tenant: None,
                customer_name: name.into(),
                customer_email: format!(
                    "accounts@{}.example",
                    name.split(' ').next().unwrap().to_lowercase()
                ),
                number: None,
                currency: None,
                total,
                issue_date: date(2026, 2, 1),
                due_date: date(2026, 3, 3),
                behaviour: None,
            })
            .unwrap();
        numbers.push((name.to_string(), c.id));
    }
    let w = World {
        rt,
        running,
        dir,
        config,
        numbers,
    };
    w.control(
        "POST",
        "/_sandbox/online-payments",
        &json!({"system": "quickbooks", "enabled": true}),
    );
    w
}

fn opt_in(w: &World, customer: &str, phone: &str) {
    let (code, out, err) = w.overdued(&[
        "sms",
        "opt-in",
        "qbo",
        customer,
        "--phone",
        phone,
        "--evidence",
        "ticked the text-message box on the order form, 2026-02-01",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("opted in to text messages"), "{out}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn texts_only_with_consent_in_the_window_once_and_never_after_stop() {
    let w = start();
    let _keep = &w.rt;
    // First sight, before anything is due: the customers are synced.
    w.cycle(utc(date(2026, 3, 2), 10));
    assert!(w.effects().is_empty());

    // Consent: Alpha, Charlie and Delta agree; Bravo never does. Bad input is refused.
    opt_in(&w, "Alpha Ltd", ALPHA);
    opt_in(&w, "accounts@charlie.example", CHARLIE);
    opt_in(&w, "Delta Ltd", DELTA);
    let (code, _, err) = w.overdued(&[
        "sms",
        "opt-in",
        "qbo",
        "Bravo Ltd",
        "--phone",
        "07700 900002",
        "--evidence",
        "x",
    ]);
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("E.164"), "{err}");
    let (code, _, err) = w.overdued(&[
        "sms",
        "opt-in",
        "qbo",
        "Nobody Ltd",
        "--phone",
        "+447700900009",
        "--evidence",
        "x",
    ]);
    assert_eq!(code, Some(64), "{err}");

    // Delta's number replied STOP to Twilio earlier (no webhook yet): Twilio answers 21610.
    w.control(
        "POST",
        "/_sandbox/twilio/reply",
        &json!({"from": DELTA, "body": "STOP"}),
    );

    // The plan says why Bravo gets an email.
    w.sandbox().set_now(utc(date(2026, 3, 4), 10));
    let (code, out, err) = w.overdued(&["plan", "--json", "--at", "2026-03-04"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("by email instead of a text message: no SMS consent recorded"),
        "{out}"
    );

    // Wednesday 08:30: the send window is open for email, but it is quiet hours for
    // texts: Bravo's email goes, the texts wait.
    w.cycle(utc(date(2026, 3, 4), 8) + chrono::Duration::minutes(30));
    assert_eq!(w.emails_for(&w.invoice("Bravo Ltd")), 1);
    assert!(w.texts_to(ALPHA).is_empty() && w.texts_to(CHARLIE).is_empty());

    // 10:00: the texts go, Twilio allowing one a second (the second waits out its 429).
    // Delta's is refused with 21610: opt-out recorded, email instead.
    w.control("POST", "/_sandbox/twilio/limits", &json!({"per_second": 1}));
    w.cycle(utc(date(2026, 3, 4), 10));
    w.control("POST", "/_sandbox/twilio/limits", &json!({"per_second": 0}));
    let alpha = w.texts_to(ALPHA);
    assert_eq!(alpha.len(), 1, "{alpha:?}");
    assert!(
        alpha[0].contains("USD 500.00") || alpha[0].contains("500.00"),
        "{}",
        alpha[0]
    );
    assert!(alpha[0].contains("https://"), "the pay link: {}", alpha[0]);
    assert!(alpha[0].contains("Reply STOP to opt out"), "{}", alpha[0]);
    assert!(alpha[0].starts_with("Sandbox Trading:"), "{}", alpha[0]);
    assert_eq!(w.texts_to(CHARLIE).len(), 1);
    assert!(w.texts_to(DELTA).is_empty());
    assert_eq!(
        w.emails_for(&w.invoice("Delta Ltd")),
        1,
        "email took over from 21610"
    );
    assert_eq!(w.emails_for(&w.invoice("Alpha Ltd")), 0);
    // Delta's history says what really went: the email, and why no text.
    let (_, hist, _) = w.overdued(&["history", "qbo", &w.invoice("Delta Ltd")]);
    assert!(
        hist.contains("no text message for step +1d") && hist.contains("21610"),
        "{hist}"
    );
    assert!(
        hist.contains("reminder sent (+1d): QuickBooks' own invoice email")
            && !hist.contains("(SMS)"),
        "{hist}"
    );
    let (code, out, _) = w.overdued(&["sms", "list", "--json"]);
    assert_eq!(code, Some(0));
    let list: Vec<Value> = serde_json::from_str(&out).unwrap();
    let delta = list.iter().find(|r| r["phone"] == DELTA).unwrap();
    assert_eq!(delta["opted_out"], true, "{out}");
    assert!(
        delta["opted_out_how"].as_str().unwrap().contains("21610"),
        "{out}"
    );

    // The daemon up (dry run: it acts on nothing): Charlie replies STOP through Twilio's
    // signed webhook; a forged signature is refused; another reply is a conversation.
    let port = free_port();
    let daemon_cfg = w.dir.path().join("daemon.toml");
    let text = std::fs::read_to_string(&w.config)
        .unwrap()
        .replace("http_listen = \"127.0.0.1:0\"", &format!("http_listen = \"127.0.0.1:{port}\"\nmode = \"dry-run\""))
        .replace(
            "quiet_hours = \"18:00-09:00\"\n",
            &format!("quiet_hours = \"18:00-09:00\"\nwebhook_url = \"http://127.0.0.1:{port}/webhooks/sms\"\n"),
        );
    std::fs::write(&daemon_cfg, text).unwrap();
    let mut daemon = spawn_daemon(&daemon_cfg, None, "info");
    let addr = format!("127.0.0.1:{port}");
    poll_until("the daemon's HTTP server", || {
        std::net::TcpStream::connect(&addr).ok()
    });
    let _ = get(&addr, "/healthz");
    w.control(
        "POST",
        "/_sandbox/twilio/webhook",
        &json!({"url": format!("http://{addr}/webhooks/sms")}),
    );
    let forged = w.control(
        "POST",
        "/_sandbox/twilio/reply",
        &json!({"from": CHARLIE, "body": "STOP", "signature": "bm90IGEgc2lnbmF0dXJl"}),
    );
    assert_eq!(forged["webhook"], 401, "{forged}");
    let r = w.control(
        "POST",
        "/_sandbox/twilio/reply",
        &json!({"from": ALPHA, "body": "I paid half yesterday, the rest on Friday"}),
    );
    assert_eq!(r["webhook"], 200, "{r}");
    let r = w.control(
        "POST",
        "/_sandbox/twilio/reply",
        &json!({"from": CHARLIE, "body": "Stop"}),
    );
    assert_eq!(r["webhook"], 200, "{r}");
    // With the daemon holding the store, `sms list` goes through its admin endpoint.
    let run_d = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--config", daemon_cfg.to_str().unwrap()]);
        run_to_end(&all)
    };
    let (code, out, err) = run_d(&["sms", "list", "qbo"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("Charlie Ltd") && out.contains("replied STOP"),
        "{out}"
    );
    assert!(
        out.contains("Alpha Ltd") && out.contains("texts: yes"),
        "{out}"
    );
    daemon.signal(libc::SIGTERM);
    daemon.wait_exit(std::time::Duration::from_secs(20));
    assert!(
        daemon
            .stderr_text()
            .contains("a customer replied to a text message"),
        "{}",
        daemon.stderr_text()
    );

    // Alpha pays 100 of 500: the next text states 400.00. Its answer is lost (the message
    // went): the next cycle finds it in Twilio's log and sends nothing more.
    let alpha_id = w.invoice("Alpha Ltd");
    let tenant = w.sandbox().tenants()[0].id.clone();
    w.sandbox().set_now(utc(date(2026, 3, 10), 10));
    w.control(
        "POST",
        &format!("/_sandbox/invoices/quickbooks/{tenant}/{alpha_id}/payments"),
        &json!({"amount": "100.00", "date": "2026-03-10"}),
    );
    w.control(
        "POST",
        "/_sandbox/faults",
        &json!({"rate": 1.0, "kinds": ["lost_response"], "endpoints": ["twilio.messages.create"], "seed": 1}),
    );
    w.cycle(utc(date(2026, 3, 11), 10));
    w.control("POST", "/_sandbox/faults", &json!({"rate": 0.0}));
    let alpha = w.texts_to(ALPHA);
    assert_eq!(
        alpha.len(),
        2,
        "the second text went, its answer lost: {alpha:?}"
    );
    assert!(
        alpha[1].contains("400.00") && !alpha[1].contains("500.00"),
        "{}",
        alpha[1]
    );
    // Charlie said STOP by webhook: email instead, no text.
    assert_eq!(w.texts_to(CHARLIE).len(), 1);
    assert_eq!(w.emails_for(&w.invoice("Charlie Ltd")), 1);
    let err = w.cycle(utc(date(2026, 3, 11), 10) + chrono::Duration::minutes(30));
    assert_eq!(
        w.texts_to(ALPHA).len(),
        2,
        "no second text after a lost answer: {err}"
    );
    let (_, hist, _) = w.overdued(&["history", "qbo", &alpha_id]);
    assert!(
        hist.contains("found in Twilio's log, not sent again"),
        "{hist}"
    );

    // +15d, email and text: a request that never reached Twilio (reset) is sent once,
    // after the log shows it missing.
    w.control(
        "POST",
        "/_sandbox/faults",
        &json!({"rate": 1.0, "kinds": ["reset"], "endpoints": ["twilio.messages.create"], "seed": 2}),
    );
    w.cycle(utc(date(2026, 3, 18), 10));
    w.control("POST", "/_sandbox/faults", &json!({"rate": 0.0}));
    assert_eq!(w.texts_to(ALPHA).len(), 2);
    w.cycle(utc(date(2026, 3, 18), 11));
    w.cycle(utc(date(2026, 3, 18), 12));
    let alpha = w.texts_to(ALPHA);
    assert_eq!(alpha.len(), 3, "{alpha:?}");
    assert_eq!(w.emails_for(&alpha_id), 1, "the email of email+sms, once");
    assert_eq!(w.texts_to(CHARLIE).len(), 1, "never again after STOP");
    assert!(w.texts_to(DELTA).is_empty());
    // Bravo never consented: every step went by email, no text to anyone else.
    assert_eq!(w.emails_for(&w.invoice("Bravo Ltd")), 3);
    let all_texts = w.effects().iter().filter(|e| e.kind == "sms").count();
    assert_eq!(all_texts, 4, "Alpha 3, Charlie 1");
}

fn check(dir: &Path, text: &str) -> (Option<i32>, String, String) {
    let p = dir.join("check.toml");
    std::fs::write(&p, text).unwrap();
    run_to_end(&["check", "--config", p.to_str().unwrap()])
}

#[test]
fn check_refuses_a_text_step_without_sms_and_a_template_over_the_cap() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let running = rt
        .block_on(Sandbox::start(
            empty_world(utc(date(2026, 3, 2), 10)),
            "127.0.0.1:0".parse().unwrap(),
        ))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = running.url();
    let base = config_text(&running.sandbox, &url, "state", "UTC", POLICY);

    let (code, out, err) = check(dir.path(), &base);
    assert_eq!(code, Some(78), "{out}{err}");
    assert!(
        err.contains("check.toml:")
            && err.contains("policies.default.steps[0].channel")
            && err.contains("[channels.sms]"),
        "{err}"
    );

    let good = format!("{base}{}", sms_table(&url, ""));
    let (code, out, err) = check(dir.path(), &good);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("sms: template sms_reminder: 2 segment(s)")
            || out.contains("sms: template sms_reminder: 1 segment(s)"),
        "{out}"
    );

    let t = dir.path().join("templates");
    std::fs::create_dir_all(&t).unwrap();
    std::fs::write(
        t.join("sms_reminder.txt"),
        "{{ sender_name }}: invoice {{ invoice_number }} for {{ amount_due }} is overdue. We would be very grateful if you could arrange payment at your earliest convenience, or let us know if there is anything about the invoice that you would like to discuss with us before you pay it. Pay: {{ pay_link }} Reply STOP to opt out",
    )
    .unwrap();
    let over = good.replace(
        "[channels.sms]",
        "[channels]\ntemplates_dir = \"templates\"\n\n[channels.sms]",
    );
    let (code, out, err) = check(dir.path(), &over);
    assert_eq!(code, Some(78), "{out}{err}");
    assert!(
        err.contains("channels.sms.max_segments")
            && err.contains("sms_reminder.txt")
            && err.contains("3 segment(s)"),
        "{err}"
    );
    // The same template fits a cap of 3.
    let (code, out, err) = check(
        dir.path(),
        &over.replace("quiet_hours", "max_segments = 3\nquiet_hours"),
    );
    assert_eq!(code, Some(0), "{out}{err}");
}
