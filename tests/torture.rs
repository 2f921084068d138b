//! The torture proof: the real `overdued` binary, killed with SIGKILL at seeded random
//! moments of its cycles over a simulated 90-day season on QuickBooks and Xero, against
//! a sandbox running as its own process (`overdued sandbox --state FILE`) that loses the
//! responses of one write in five (the write is applied, the connection is closed
//! without an answer), ends with the same ledger as an uninterrupted run of the same
//! world: every effect exactly once, none missing.
//!
//! Two worlds are built from the same seed, each a sandbox process with its own state
//! file and an overdued config written by `overdued sandbox --write-config`. The
//! reference world runs without kills; the tortured one is killed `kills` times (short
//! form 50, spread over the weekdays, when actions go out), each kill after a seeded
//! random delay up to most of what that day's uninterrupted cycle took, so kills land
//! anywhere from start-up through refreshes, sync, planning and every write. After its
//! kills a day is run until a cycle completes with nothing failed (a lost response
//! leaves an action failed; it is retried under the same idempotency key). Both
//! sandboxes are stopped and restarted from their state files every 30 days, so the
//! season also crosses vendor restarts. The worlds run in parallel threads; the
//! reference runs ahead and hands the tortured world each day's cycle time.
//!
//! Token rotation. The sandbox keeps a QuickBooks refresh token's value for 24 hours
//! (Intuit's OAuth FAQ) and rotates it, voiding the old one at once, on the first
//! refresh after that. A process killed after the token endpoint answered a rotation but
//! before it saved the answer has lost the grant for good ("NEEDS RECONNECT"): no
//! client can avoid that, so it is the vendor's property, not an exactly-once bug. So
//! both worlds run one uninterrupted cycle at 07:00 UTC every day (08:00 at the latest
//! in London, outside the 09:00-17:59 send window: sync only), exactly 24 hours apart
//! across the change to summer time; it is the run that rotates. The killed 10:00
//! London runs then refresh with a token two or three hours old, which returns the same
//! token, as with the real vendor. Should a rotation ever land in a killed run, the day
//! never settles and the test says so instead of hiding it.
//!
//! What is compared is what customers and the books see: the multiset of (system,
//! invoice, effect kind, journal action and step, fee amount). Not compared: times
//! within a day (a retry lands later), audit-note texts (they quote the instant an
//! action was confirmed) and ids the sandbox mints at run time.
//!
//! `OVERDUED_TORTURE_KILLS` sets the number of kills (default 50; 1000 for the long
//! form, which README's "Proof" section reports); `OVERDUED_TORTURE_SEED` the seed of
//! the kill moments and of the lost responses (the world itself stays the same).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, NaiveDate, Utc, Weekday};
use overdued::store::{JournalState, SledStore};
use overdued_sandbox::{Effect, Ledger, System};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use support::*;

const SEED: u64 = 20260105;
const DAYS: u32 = 90;
/// Both sandboxes are restarted from their state files before these days.
const RESTART_DAYS: [u32; 2] = [30, 60];
/// The sandbox enforces the vendors' limits on a minute this many times shorter, and the
/// config it writes paces the client the same way.
const TIME_SCALE: &str = "1000";

/// Every write a reminder, fee or note makes; reads and OAuth do not fault here (a lost
/// token response is a reconnect by the vendors' design, not a duplicate).
const WRITE_ENDPOINTS: [&str; 6] = [
    "quickbooks.invoice.write",
    "quickbooks.invoice.send",
    "xero.invoices.write",
    "xero.invoices.email",
    "xero.invoices.history",
    // Text messages: Twilio takes no key, so a lost answer is looked up in its log.
    "twilio.messages.create",
];

/// The season's +7d reminder also goes as a text message to the customers who agreed
/// (`opt_in_some`); the others get the email alone, as before.
fn season_policy() -> String {
    let step = "offset = \"+7d\"\naction = \"remind\"\ntemplate = \"follow_up\"\n";
    assert!(
        SCENARIO_POLICY.contains(step),
        "the +7d step of the scenarios"
    );
    SCENARIO_POLICY.replace(step, &format!("{step}channel = \"email+sms\"\n"))
}

fn day(i: u32) -> NaiveDate {
    date(2026, 1, 5) + chrono::Duration::days(i64::from(i))
}

fn morning(d: NaiveDate) -> DateTime<Utc> {
    utc(d, 7)
}

fn is_weekday(d: NaiveDate) -> bool {
    !matches!(d.weekday(), Weekday::Sat | Weekday::Sun)
}

/// A sandbox as its own process, with its state in a file.
struct SandboxProcess {
    child: Option<Child>,
    dir: PathBuf,
    addr: String,
    starts: u32,
}

impl SandboxProcess {
    /// Starts a fresh world on a free port and has it write overdued's config.
    fn create(dir: &Path) -> SandboxProcess {
        let mut p = SandboxProcess {
            child: None,
            dir: dir.to_path_buf(),
            addr: "127.0.0.1:0".into(),
            starts: 0,
        };
        let config = dir.join("overdued.toml");
        p.spawn(&[
            "--seed",
            &SEED.to_string(),
            "--customers",
            "12",
            "--invoices",
            "50",
            // Before the first 07:00 cycle, so the grants issued now are rotated by the
            // 07:00 cycles from the second day on.
            "--start",
            "2026-01-05T06:00:00Z",
            "--write-config",
            config.to_str().unwrap(),
        ]);
        p
    }

    fn spawn(&mut self, extra: &[&str]) {
        self.starts += 1;
        let out = self.dir.join(format!("sandbox-{}.out", self.starts));
        let err = self.dir.join(format!("sandbox-{}.err", self.starts));
        let state = self.dir.join("sandbox-state.json");
        let child = Command::new(env!("CARGO_BIN_EXE_overdued"))
            .args([
                "sandbox",
                "--listen",
                &self.addr,
                "--time-scale",
                TIME_SCALE,
            ])
            .arg("--state")
            .arg(&state)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .expect("spawn overdued sandbox");
        self.child = Some(child);
        let started = Instant::now();
        loop {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            if let Some(url) = text
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("sandbox listening on http://"))
            {
                self.addr = url.trim().to_string();
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "sandbox exited ({status}) before listening:\n{}",
                    std::fs::read_to_string(&err).unwrap_or_default()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "sandbox did not start"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM (the sandbox saves its state and exits), then the same port again,
    /// loading the world from the state file.
    fn restart(&mut self) {
        let mut child = self.child.take().expect("running");
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let status = child.wait().unwrap();
        assert!(status.success(), "sandbox stopped with {status}");
        self.spawn(&[]);
    }

    /// One request to the control API over HTTP/1.0 (no chunking; the body ends when
    /// the server closes).
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut s = TcpStream::connect(&self.addr).expect("connect to the sandbox");
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.0\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        s.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        assert!(
            head.lines().next().is_some_and(|l| l.contains(" 200 ")),
            "{method} {path}: {response}"
        );
        serde_json::from_str(body).expect("JSON from the control API")
    }

    fn set_now(&self, t: DateTime<Utc>) {
        self.call(
            "POST",
            "/_sandbox/clock",
            Some(&json!({"now": t.to_rfc3339()})),
        );
    }

    /// Faults are not part of the saved world: set again after every start.
    fn lose_responses(&self) {
        self.call(
            "POST",
            "/_sandbox/faults",
            Some(&json!({
                "rate": 0.2,
                "kinds": ["lost_response"],
                "seed": torture_seed() + u64::from(self.starts),
                "endpoints": WRITE_ENDPOINTS,
            })),
        );
    }

    /// Every write is applied and its response lost (the key-window variant).
    fn lose_all_responses(&self) {
        self.call(
            "POST",
            "/_sandbox/faults",
            Some(&json!({
                "rate": 1.0,
                "kinds": ["lost_response"],
                "seed": torture_seed(),
                "endpoints": WRITE_ENDPOINTS,
            })),
        );
    }

    fn ledger(&self) -> Ledger {
        serde_json::from_value(self.call("GET", "/_sandbox/ledger", None)).expect("ledger")
    }

    fn lost_responses(&self) -> u64 {
        self.call("GET", "/_sandbox/stats", None)["faults_injected"]
            .as_object()
            .map(|m| m.values().filter_map(Value::as_u64).sum())
            .unwrap_or(0)
    }
}

impl Drop for SandboxProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct World {
    name: &'static str,
    sandbox: SandboxProcess,
    dir: tempfile::TempDir,
    config: PathBuf,
    runs: u32,
    /// Responses lost before the last sandbox restart (a restarted sandbox counts from 0).
    lost: u64,
    /// Whether the sandbox loses one write response in five.
    faults: bool,
}

impl World {
    fn start(name: &'static str) -> World {
        World::start_with(name, true)
    }

    /// A world whose sandbox loses no responses unless `faults`.
    fn start_with(name: &'static str, faults: bool) -> World {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = SandboxProcess::create(dir.path());
        let config = dir.path().join("overdued.toml");
        // The written config is complete; the season runs in London under the
        // scenarios' policy (the steps, a fee every 30 days, weekday window).
        let text = std::fs::read_to_string(&config).unwrap();
        let mut doc: toml_edit::DocumentMut = text.parse().expect("the written config parses");
        doc["daemon"]["time_zone"] = toml_edit::value("Europe/London");
        // Named as the shared test helpers name connections.
        for (system, from, to) in [
            ("quickbooks", "sandbox-qbo", QBO),
            ("xero", "sandbox-xero", XERO),
        ] {
            let t = doc[system].as_table_mut().expect("one table per system");
            let conn = t.remove(from).expect("the written connection");
            t.insert(to, conn);
        }
        std::fs::write(&config, format!("{doc}\n{}", season_policy())).unwrap();
        if faults {
            sandbox.lose_responses();
        }
        World {
            name,
            sandbox,
            dir,
            config,
            runs: 0,
            lost: 0,
            faults,
        }
    }

    fn restart_sandbox(&mut self) {
        self.lost += self.sandbox.lost_responses();
        self.sandbox.restart();
        if self.faults {
            self.sandbox.lose_responses();
        }
    }

    fn spawn(&mut self, now: DateTime<Utc>) -> (Child, PathBuf, PathBuf) {
        self.runs += 1;
        let out = self.dir.path().join(format!("run-{}.out", self.runs));
        let err = self.dir.path().join(format!("run-{}.err", self.runs));
        let child = Command::new(env!("CARGO_BIN_EXE_overdued"))
            .args(["run", "--once", "--config"])
            .arg(&self.config)
            .args(["--now", &now.to_rfc3339()])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .expect("spawn overdued");
        (child, out, err)
    }

    /// Runs the cycle at `now` until one completes with nothing failed on any
    /// connection; returns how long that last run took.
    fn settle(&mut self, now: DateTime<Utc>) -> Duration {
        self.sandbox.set_now(now);
        let mut last = String::new();
        for _ in 0..12 {
            let started = Instant::now();
            let (mut child, out, err) = self.spawn(now);
            let status = child.wait().unwrap();
            let took = started.elapsed();
            let stdout = std::fs::read_to_string(&out).unwrap_or_default();
            let stderr = std::fs::read_to_string(&err).unwrap_or_default();
            if clean(status.code(), &stdout, &stderr) {
                let _ = std::fs::remove_file(out);
                let _ = std::fs::remove_file(err);
                return took;
            }
            assert!(
                !stderr.contains("NEEDS RECONNECT"),
                "{}: {now}: a connection lost its grant (a refresh-token rotation was \
                 killed?):\n{stdout}\n{stderr}",
                self.name
            );
            last = format!("exit {:?}\n{stdout}\n{stderr}", status.code());
        }
        panic!(
            "{}: {now}: no clean cycle in 12 runs; last:\n{last}",
            self.name
        );
    }

    /// The first four customers (by id) of each connection agree to text messages, with
    /// numbers of their own; run once the first sync has stored them.
    fn opt_in_some(&self) {
        let mut customers = Vec::new();
        {
            let store = SledStore::open(&self.dir.path().join("overdued-state")).expect("store");
            for conn in [QBO, XERO] {
                for c in overdued::ops::known_customers(&store, conn)
                    .expect("customers")
                    .into_iter()
                    .take(4)
                {
                    customers.push((conn, c.id));
                }
            }
        }
        assert_eq!(customers.len(), 8, "customers synced in both systems");
        for (n, (conn, id)) in customers.iter().enumerate() {
            let out = Command::new(env!("CARGO_BIN_EXE_overdued"))
                .args(["sms", "opt-in", conn, id, "--phone"])
                .arg(format!("+4477009001{n:02}"))
                .args(["--evidence", "agreed on the order form", "--config"])
                .arg(&self.config)
                .env_remove("OVERDUED_CONFIG")
                .output()
                .expect("overdued sms opt-in");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Text messages whose answer was lost and that were looked up in Twilio's log
    /// (found or not) before any retry.
    fn sms_lookups(&self) -> usize {
        let store = SledStore::open(&self.dir.path().join("overdued-state")).expect("store");
        let since = DateTime::<Utc>::MIN_UTC;
        [QBO, XERO]
            .into_iter()
            .flat_map(|c| overdued::store::Store::audit_since(&store, c, since).expect("audit"))
            .filter(|e| e.kind == "sms_lookup")
            .count()
    }

    fn ledger(&self) -> (Vec<Row>, Vec<Effect>) {
        let effects = self.sandbox.ledger().effects;
        let store = SledStore::open(&self.dir.path().join("overdued-state")).expect("store");
        assert_journal_settled(&store);
        (read_ledger(&effects, &[&store]), effects)
    }
}

impl World {
    /// The actions recorded but not settled (intents and failed attempts).
    fn pending(&self) -> Vec<overdued::store::JournalEntry> {
        let store = SledStore::open(&self.dir.path().join("overdued-state")).expect("store");
        [QBO, XERO]
            .into_iter()
            .flat_map(|c| overdued::store::Store::unfinished_journal(&store, c).expect("journal"))
            .filter(|e| matches!(e.state, JournalState::Intent | JournalState::Failed { .. }))
            .collect()
    }

    fn pending_intents(&self) -> usize {
        self.pending().len()
    }

    /// Pending actions whose write the sandbox has not applied.
    fn unsent_intents(&self) -> usize {
        let applied: std::collections::HashSet<String> = self
            .sandbox
            .ledger()
            .effects
            .into_iter()
            .filter_map(|e| e.idempotency_key)
            .collect();
        self.pending()
            .iter()
            .filter(|e| !applied.contains(e.vendor_key().as_str()))
            .count()
    }
}

/// The day both worlds agree two payment plans per system (issue #16): one the customer
/// keeps (its instalments paid through the sandbox on their days), one whose first
/// instalment is missed; their notes, instalment messages and "plan missed" message are
/// part of the ledger both worlds must end with.
const PLAN_DAY: u32 = 14;

/// A plan whose instalments the season pays.
struct KeptPlan {
    system: &'static str,
    tenant: String,
    id: String,
    instalments: Vec<(NaiveDate, rust_decimal::Decimal)>,
}

impl World {
    fn overdued(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_overdued"))
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run overdued");
        assert!(
            out.status.success(),
            "{}: overdued {args:?}: {}{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Agrees the season's plans on day `i` (between its 07:00 and 10:00 cycles) over
    /// the first two overdue invoices, by number, of customers who pay nothing by
    /// themselves meanwhile; the same two in both worlds, whose ledgers agree by then.
    fn agree_plans(&mut self, i: u32) -> Vec<KeptPlan> {
        let today = day(i);
        let now = utc(today, 8).to_rfc3339();
        let tenants = self.sandbox.call("GET", "/_sandbox/tenants", None);
        let mut kept = Vec::new();
        for (system, conn) in [("quickbooks", QBO), ("xero", XERO)] {
            let tenant = tenants
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["system"] == system)
                .and_then(|t| t["id"].as_str())
                .unwrap()
                .to_string();
            let mut open = Vec::new();
            {
                let store =
                    SledStore::open(&self.dir.path().join("overdued-state")).expect("store");
                overdued::store::Store::for_each_invoice(&store, conn, &mut |r| {
                    let s = &r.snapshot;
                    if s.status.is_open()
                        && !s.is_fee_invoice
                        && s.amount_due > rust_decimal::Decimal::ZERO
                        && s.due_date + chrono::Duration::days(7) <= today
                    {
                        open.push((s.display_number().to_string(), s.remote_id.clone()));
                    }
                    true
                })
                .expect("invoices");
            }
            open.sort();
            let mut chosen: Vec<(String, String, String)> = Vec::new();
            for (number, id) in open {
                let inv = self.sandbox.call(
                    "GET",
                    &format!("/_sandbox/invoices/{system}/{tenant}/{id}"),
                    None,
                );
                let customer = inv["customer"]["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                // Customers who pay nothing unless a fee is charged, which no kept plan
                // brings: what they pay is what the season pays for them.
                let kind = inv["customer"]["behaviour"]["kind"]
                    .as_str()
                    .unwrap_or_default();
                if matches!(kind, "never" | "disputes" | "pays_after_fee")
                    && !chosen.iter().any(|c| c.2 == customer)
                {
                    chosen.push((number, id, customer));
                }
                if chosen.len() == 2 {
                    break;
                }
            }
            assert_eq!(
                chosen.len(),
                2,
                "{}: two invoices to arrange in {system}",
                self.name
            );
            let first = (today + chrono::Duration::days(7)).to_string();
            self.overdued(&[
                "arrange",
                conn,
                &chosen[0].0,
                "--instalments",
                "3",
                "--every",
                "14",
                "--first",
                &first,
                "--now",
                &now,
            ]);
            let list: Value =
                serde_json::from_str(&self.overdued(&["arrangements", conn, "--json"]))
                    .expect("arrangements --json");
            // The twin: two instalments, the first of which is never paid.
            let total = self.sandbox.call(
                "GET",
                &format!("/_sandbox/invoices/{system}/{tenant}/{}", chosen[1].1),
                None,
            )["balance"]
                .as_str()
                .unwrap()
                .parse::<rust_decimal::Decimal>()
                .unwrap();
            let half = (total / rust_decimal::Decimal::from(2)).round_dp(2);
            self.overdued(&[
                "arrange",
                conn,
                &chosen[1].0,
                "--schedule",
                &format!(
                    "{first}:{half},{}:{}",
                    today + chrono::Duration::days(21),
                    total - half
                ),
                "--now",
                &now,
            ]);
            kept.push(KeptPlan {
                system,
                tenant,
                id: chosen[0].1.clone(),
                instalments: list[0]["instalments"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| {
                        (
                            c["due"].as_str().unwrap().parse().unwrap(),
                            c["amount"].as_str().unwrap().parse().unwrap(),
                        )
                    })
                    .collect(),
            });
        }
        kept
    }

    /// Pays the kept plans' instalments due on `d` (what is left of them at most).
    fn pay_instalments(&self, plans: &[KeptPlan], d: NaiveDate) {
        for p in plans {
            for (due, amount) in &p.instalments {
                if *due != d {
                    continue;
                }
                let path = format!("/_sandbox/invoices/{}/{}/{}", p.system, p.tenant, p.id);
                let balance: rust_decimal::Decimal = self.sandbox.call("GET", &path, None)
                    ["balance"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                let pay = (*amount).min(balance);
                if pay > rust_decimal::Decimal::ZERO {
                    self.sandbox.call(
                        "POST",
                        &format!("{path}/payments"),
                        Some(&json!({"amount": pay.to_string(), "date": d.to_string()})),
                    );
                }
            }
        }
    }
}

/// Exit 0, both connections cycled, no action failed.
fn clean(code: Option<i32>, stdout: &str, stderr: &str) -> bool {
    let lines: Vec<&str> = stdout.lines().filter(|l| l.contains(": synced ")).collect();
    code == Some(0)
        && lines.len() == 2
        && lines.iter().all(|l| l.contains(" 0 failed"))
        && !stderr.contains("cycle failed")
}

fn torture_seed() -> u64 {
    std::env::var("OVERDUED_TORTURE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEED)
}

fn kills_wanted() -> u32 {
    std::env::var("OVERDUED_TORTURE_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50)
}

/// Kills per day: `total` spread evenly over the weekdays of the season.
fn kill_plan(total: u32) -> Vec<u32> {
    let weekdays: Vec<u32> = (0..DAYS).filter(|&i| is_weekday(day(i))).collect();
    let n = weekdays.len() as u32;
    let mut plan = vec![0; DAYS as usize];
    for (k, &i) in weekdays.iter().enumerate() {
        let k = k as u32;
        plan[i as usize] = (k + 1) * total / n - k * total / n;
    }
    plan
}

#[test]
fn kill_plan_spreads_every_kill_over_weekdays() {
    for total in [50, 64, 1000] {
        let plan = kill_plan(total);
        assert_eq!(plan.iter().sum::<u32>(), total);
        for (i, k) in plan.iter().enumerate() {
            assert!(*k == 0 || is_weekday(day(i as u32)));
        }
    }
}

#[test]
fn sigkill_at_random_moments_over_a_season_leaves_the_same_ledger_as_an_uninterrupted_run() {
    let started = Instant::now();
    let wanted = kills_wanted();
    let plan = kill_plan(wanted);

    // The reference runs ahead in its own thread and sends each day's 10:00 cycle time.
    let (tx, rx) = mpsc::channel::<Duration>();
    let reference = std::thread::spawn(move || {
        let mut w = World::start("reference");
        let mut plans = Vec::new();
        for i in 0..DAYS {
            if RESTART_DAYS.contains(&i) {
                w.restart_sandbox();
            }
            w.settle(morning(day(i)));
            if i == 0 {
                w.opt_in_some();
            }
            if i == PLAN_DAY {
                plans = w.agree_plans(i);
            }
            w.pay_instalments(&plans, day(i));
            let took = w.settle(london(day(i), 10, 0));
            let _ = tx.send(took);
        }
        w.settle(london(day(DAYS - 1), 10, 0));
        (w, started.elapsed())
    });

    let mut w = World::start("tortured");
    let mut rng = rand::rngs::StdRng::seed_from_u64(torture_seed());
    let (mut kills, mut finished_first) = (0u32, 0u32);
    let mut plans = Vec::new();
    for i in 0..DAYS {
        if RESTART_DAYS.contains(&i) {
            w.restart_sandbox();
        }
        w.settle(morning(day(i)));
        if i == 0 {
            w.opt_in_some();
        }
        if i == PLAN_DAY {
            plans = w.agree_plans(i);
        }
        w.pay_instalments(&plans, day(i));
        let now = london(day(i), 10, 0);
        w.sandbox.set_now(now);
        let reference_took = rx
            .recv()
            .expect("the reference world failed (see its panic)");
        // Delays up to most of the day's uninterrupted cycle; once a run finishes before
        // its kill, up to most of that run (the day's work is then partly done).
        let mut max_ms = (reference_took.as_millis() as u64 * 4 / 5).max(20);
        let (mut today, mut attempts) = (0, 0);
        while today < plan[i as usize] && attempts < plan[i as usize] * 6 {
            attempts += 1;
            let delay = Duration::from_millis(rng.gen_range(1..=max_ms));
            let spawned = Instant::now();
            let (mut child, _, _) = w.spawn(now);
            loop {
                if child.try_wait().unwrap().is_some() {
                    finished_first += 1;
                    max_ms = (spawned.elapsed().as_millis() as u64 * 4 / 5).max(20);
                    break;
                }
                if spawned.elapsed() >= delay {
                    child.kill().unwrap(); // SIGKILL
                    child.wait().unwrap();
                    today += 1;
                    kills += 1;
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        w.settle(now);
    }
    w.settle(london(day(DAYS - 1), 10, 0));
    let tortured_took = started.elapsed();
    let (reference, reference_took) = match reference.join() {
        Ok(r) => r,
        Err(e) => std::panic::resume_unwind(e),
    };

    let (a, a_effects) = reference.ledger();
    let (b, b_effects) = w.ledger();
    let lookups = (reference.sms_lookups(), w.sms_lookups());
    assert_ledger_consistent(&a);
    assert_ledger_consistent(&b);
    // The plans' lifecycle took place in both systems: agreed, reminded, one missed.
    for system in [System::QuickBooks, System::Xero] {
        for step in [
            "plan/P1/agreed",
            "instalment/P1/1/heads_up",
            "instalment/P1/3/heads_up",
            "plan/P2/agreed",
            "instalment/P2/1/due",
            "promise/plan-P2",
        ] {
            assert!(
                a.iter().any(|r| r.system == system && r.step == step),
                "{system:?}: no {step} in the reference ledger"
            );
        }
    }
    let count = |rows: &[Row], action: &str| rows.iter().filter(|r| r.action == action).count();
    let texts = |rows: &[Row]| rows.iter().filter(|r| r.kind == "sms").count();
    assert!(
        texts(&a) >= 3,
        "the season sends text messages: {}",
        texts(&a)
    );
    assert!(
        count(&a, "remind") >= 60
            && count(&a, "late_fee") >= 3
            && count(&a, "escalate") >= 1
            && a.iter().any(|r| r.system == System::QuickBooks)
            && a.iter().any(|r| r.system == System::Xero),
        "a season with something to do in both systems: {} reminders, {} fees, {} escalations",
        count(&a, "remind"),
        count(&a, "late_fee"),
        count(&a, "escalate")
    );
    let lost = |w: &World| w.lost + w.sandbox.lost_responses();
    eprintln!(
        "torture (seed {}): {DAYS} days, {kills} kills ({finished_first} runs finished before their kill), \
         {} runs tortured / {} reference, {} effects ({} reminders of which {} text messages, \
         {} fees, {} escalations, {} sandbox effects), lost responses {} / {}, {} sandbox \
         restarts, texts looked up in Twilio's log after a lost answer {} / {}, {:.1} s \
         (reference {:.1} s)",
        torture_seed(),
        w.runs,
        reference.runs,
        b.len(),
        count(&b, "remind"),
        texts(&b),
        count(&b, "late_fee"),
        count(&b, "escalate"),
        b_effects.len(),
        lost(&w),
        lost(&reference),
        RESTART_DAYS.len(),
        lookups.1,
        lookups.0,
        tortured_took.as_secs_f64(),
        reference_took.as_secs_f64()
    );
    assert_eq!(a_effects.len(), b_effects.len(), "as many effects in both");
    assert!(kills >= wanted, "only {kills} of {wanted} kills landed");
    let (ca, cb) = (canonical(&a), canonical(&b));
    assert!(
        ca == cb,
        "reference vs tortured: {}",
        multiset_diff(&ca, &cb)
    );
}

/// The token endpoints of both vendors fail (server errors, connections reset, and
/// rotations applied whose answer is lost) while runs are SIGKILLed, mostly early, where
/// tokens are refreshed. Every tick moves the clock 31 minutes, past Xero's 30-minute
/// access tokens (a refresh, and so a rotation, in every tick) and QuickBooks' hour (one
/// every other tick), over 20 hours from the grants' issue.
///
/// What this proves: a refresh whose answer was lost or whose process was killed before
/// the answer was saved never costs a Xero grant, because the next run (same vendor
/// time) refreshes with the previous token inside Xero's 30-minute grace; a rotated token
/// is saved before it is used (no run ever uses a token it has not stored, or the next
/// run would hold a voided one); token failures leave the cycle to the next run without
/// a duplicate write (the ledger check). What no client can survive, and so is kept out
/// of this run by its 20-hour span: QuickBooks rotates a refresh token only on the first
/// refresh 24 hours after it was issued, voiding the old one at once with no grace, so a
/// lost answer to that one refresh loses the grant for good (the season test confines
/// those rotations to an uninterrupted run); on Xero, a lost answer followed by no retry
/// within 30 minutes is the same loss.
#[test]
fn token_endpoint_faults_and_kills_around_refreshes_never_lose_a_grant() {
    let mut w = World::start("tokens");
    let faults = |w: &World| {
        let mut endpoints: Vec<&str> = WRITE_ENDPOINTS.to_vec();
        endpoints.extend(["oauth.quickbooks.token", "oauth.xero.token"]);
        w.sandbox.call(
            "POST",
            "/_sandbox/faults",
            Some(&json!({
                "rate": 0.25,
                "kinds": ["lost_response", "server_error", "reset"],
                "seed": torture_seed() + 7,
                "endpoints": endpoints,
            })),
        );
    };
    faults(&w);
    let mut rng = rand::rngs::StdRng::seed_from_u64(torture_seed() ^ 0x7043);
    let first = london(day(0), 8, 0);
    let ticks = 40u32;
    let kills_per_tick = 2u32;
    let (mut kills, mut finished_first) = (0u32, 0u32);
    let mut took = w.settle(first);
    for n in 1..=ticks {
        let now = first + chrono::Duration::minutes(31 * i64::from(n));
        w.sandbox.set_now(now);
        // Refreshes come first in a run: most kills land in its first fifth.
        let mut max_ms = (took.as_millis() as u64 / 5).max(10);
        let mut today = 0;
        let mut attempts = 0;
        while today < kills_per_tick && attempts < kills_per_tick * 6 {
            attempts += 1;
            let delay = Duration::from_millis(rng.gen_range(1..=max_ms));
            let spawned = Instant::now();
            let (mut child, _, _) = w.spawn(now);
            loop {
                if child.try_wait().unwrap().is_some() {
                    finished_first += 1;
                    max_ms = (spawned.elapsed().as_millis() as u64 / 2).max(10);
                    break;
                }
                if spawned.elapsed() >= delay {
                    child.kill().unwrap(); // SIGKILL
                    child.wait().unwrap();
                    today += 1;
                    kills += 1;
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        // `settle` fails the test on NEEDS RECONNECT: a grant lost to a refresh.
        took = w.settle(now);
    }
    let stats = w.sandbox.call("GET", "/_sandbox/stats", None);
    let injected = stats["faults_injected"].clone();
    let token_calls = |vendor: &str| {
        stats["requests"][format!("oauth.{vendor}.token")]
            .as_u64()
            .unwrap_or(0)
    };
    let (qbo_tokens, xero_tokens) = (token_calls("quickbooks"), token_calls("xero"));
    let (rows, effects) = w.ledger();
    assert_ledger_consistent(&rows);
    eprintln!(
        "token torture (seed {}): {ticks} ticks of 31 min, {kills} kills ({finished_first} runs \
         finished first), {} runs, token requests QuickBooks {qbo_tokens} / Xero {xero_tokens}, \
         faults injected {injected}, {} effects",
        torture_seed(),
        w.runs,
        effects.len()
    );
    // Xero's token lasts 30 minutes: every tick refreshes it at least once.
    assert!(
        xero_tokens >= u64::from(ticks),
        "{xero_tokens} Xero token requests in {ticks} ticks"
    );
    assert!(
        kills >= ticks * kills_per_tick / 2,
        "only {kills} kills landed"
    );
    let total: u64 = injected
        .as_object()
        .map(|m| m.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0);
    assert!(total > 0, "faults were injected: {injected}");
}

fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The key-window variant: on every Friday of the season the tortured world is killed
/// at random moments of its 10:00 cycle (`OVERDUED_TORTURE_WINDOW_KILLS` kills, default
/// 2), then runs that cycle once more with every write's response lost (so every intent
/// of the day is pending, most with their write applied), and then stays down over the
/// weekend, longer than the vendors' idempotency window (the sandbox forgets keys after
/// 24 h of its time), with whatever intents the kills left pending; it comes back on
/// Monday at 07:00. The writes of those intents were applied, and their keys are gone by
/// then: a blind retry would act twice. The executor looks in the ledger for their
/// effects first.
///
/// The reference world is down on the same days (no cycle on those weekends), but is
/// never killed and loses no responses: both worlds see the same world and plan the
/// same catch-ups, so their ledgers must be equal, every effect exactly once, none
/// missing, as in the season test. `OVERDUED_TORTURE_WINDOW_DAYS` sets the season's
/// length (default 26, three long weekends; the long form 89, twelve).
#[test]
fn a_crash_and_a_weekend_down_past_the_key_window_leave_the_same_ledger() {
    let started = Instant::now();
    let days = env_u32("OVERDUED_TORTURE_WINDOW_DAYS", 26).clamp(8, DAYS);
    let kills_per_crash = env_u32("OVERDUED_TORTURE_WINDOW_KILLS", 2).max(1);
    let crash_day = move |i: u32| day(i).weekday() == Weekday::Fri && i + 3 < days;
    // The weekend after a crash: both worlds are down, not even the morning sync runs.
    let down_day = move |i: u32| (1..=2).any(|back| i >= back && crash_day(i - back));

    let (tx, rx) = mpsc::channel::<Duration>();
    let reference = std::thread::spawn(move || {
        let mut w = World::start_with("reference", false);
        for i in 0..days {
            if down_day(i) {
                let _ = tx.send(Duration::ZERO);
                continue;
            }
            w.settle(morning(day(i)));
            let took = w.settle(london(day(i), 10, 0));
            let _ = tx.send(took);
        }
        w.settle(london(day(days - 1), 10, 0));
        w
    });

    let mut w = World::start("tortured");
    let mut rng = rand::rngs::StdRng::seed_from_u64(torture_seed() ^ 0x6b65_7973);
    let (mut kills, mut crashes, mut pending_over_weekends) = (0u32, 0u32, 0usize);
    for i in 0..days {
        let d = day(i);
        let reference_took = rx
            .recv()
            .expect("the reference world failed (see its panic)");
        if down_day(i) {
            continue;
        }
        w.settle(morning(d));
        let now = london(d, 10, 0);
        w.sandbox.set_now(now);
        if !crash_day(i) {
            w.settle(now);
            continue;
        }
        let mut max_ms = (reference_took.as_millis() as u64 * 4 / 5).max(20);
        for _ in 0..kills_per_crash {
            let delay = Duration::from_millis(rng.gen_range(1..=max_ms));
            let spawned = Instant::now();
            let (mut child, _, _) = w.spawn(now);
            loop {
                if child.try_wait().unwrap().is_some() {
                    max_ms = (spawned.elapsed().as_millis() as u64 * 4 / 5).max(20);
                    break;
                }
                if spawned.elapsed() >= delay {
                    child.kill().unwrap(); // SIGKILL
                    child.wait().unwrap();
                    kills += 1;
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        // Then a whole run in which every write's response is lost: every intent of
        // the day is recorded and attempted, its write applied (or, once the endpoint's
        // breaker opens, not sent), none confirmed; the process is gone until Monday.
        w.sandbox.lose_all_responses();
        let (mut child, _, _) = w.spawn(now);
        child.wait().unwrap();
        w.sandbox.lose_responses();
        // An intent the open breakers kept from being sent would be the tortured
        // world's own loss, not the key window's: were the invoice paid over the
        // weekend, Monday rightly drops what the reference sent on Friday. So the day
        // runs on (one response in five lost) until every pending intent's write has
        // been applied; those whose response was lost stay pending over the weekend.
        let mut tries = 0;
        while w.unsent_intents() > 0 {
            tries += 1;
            assert!(
                tries <= 12,
                "{now}: intents still unsent after {tries} runs"
            );
            let (mut child, _, _) = w.spawn(now);
            child.wait().unwrap();
        }
        pending_over_weekends += w.pending_intents();
        crashes += 1;
    }
    w.settle(london(day(days - 1), 10, 0));
    let reference = match reference.join() {
        Ok(r) => r,
        Err(e) => std::panic::resume_unwind(e),
    };

    let (a, a_effects) = reference.ledger();
    let (b, b_effects) = w.ledger();
    assert_ledger_consistent(&a);
    assert_ledger_consistent(&b);
    let lookups = {
        let store = SledStore::open(&w.dir.path().join("overdued-state")).expect("store");
        let since = day(0).and_hms_opt(0, 0, 0).unwrap().and_utc();
        [QBO, XERO]
            .into_iter()
            .flat_map(|c| overdued::store::Store::audit_since(&store, c, since).expect("audit"))
            .filter(|e| e.kind == "lookup")
            .collect::<Vec<_>>()
    };
    let found = lookups
        .iter()
        .filter(|e| e.detail["found"].as_bool() == Some(true))
        .count();
    eprintln!(
        "torture past the key window (seed {}): {days} days, {crashes} crashes each followed by \
         a weekend down in both worlds, {kills} kills, {pending_over_weekends} actions pending \
         over the weekends, {} runs tortured / {} reference, {} effects ({} sandbox effects), \
         {} intents looked up in the ledger ({found} found), lost responses {}, {:.1} s",
        torture_seed(),
        w.runs,
        reference.runs,
        b.len(),
        b_effects.len(),
        lookups.len(),
        w.lost + w.sandbox.lost_responses(),
        started.elapsed().as_secs_f64()
    );
    assert!(crashes >= 2, "only {crashes} crashes in {days} days");
    // The crash left applied writes pending past the key window: the lookup was needed.
    assert!(
        found > 0,
        "no intent past the key window was found in the ledger ({} looked up)",
        lookups.len()
    );
    let (ca, cb) = (canonical(&a), canonical(&b));
    if ca != cb {
        // What the tortured world's journal and audit log say of the invoices that
        // differ.
        let store = SledStore::open(&w.dir.path().join("overdued-state")).expect("store");
        let since = day(0).and_hms_opt(0, 0, 0).unwrap().and_utc();
        let mut seen = std::collections::BTreeSet::new();
        let mut story = String::new();
        for (system, invoice, ..) in ca.iter().chain(&cb).filter(|r| {
            ca.iter().filter(|x| x == r).count() != cb.iter().filter(|x| x == r).count()
        }) {
            let conn = if system == System::QuickBooks.as_str() {
                QBO
            } else {
                XERO
            };
            if !seen.insert((conn, invoice.clone())) {
                continue;
            }
            story += &format!("\n{conn} {invoice}:\n");
            let audit = overdued::store::Store::audit_since(&store, conn, since).expect("audit");
            for e in audit
                .iter()
                .filter(|e| e.invoice_id.as_deref() == Some(invoice.as_str()))
            {
                story += &format!("  {} {}: {}\n", e.at, e.kind, e.message);
            }
        }
        panic!(
            "reference vs tortured: {}\nthe tortured world's audit log:{story}",
            multiset_diff(&ca, &cb)
        );
    }
    assert_eq!(a_effects.len(), b_effects.len(), "as many effects in both");
}
