//! Shared helpers of the end-to-end proof tests (`tests/scenarios.rs`, `tests/torture.rs`,
//! `tests/soak.rs`, `tests/channels_smtp.rs`):
//! a sandbox with a config pointing at it, a store and a manual clock; a ledger reading
//! that names every effect by the journal step it carries out.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use overdued::config::Config;
use overdued::cycle::{run_all_once, CycleReport};
use overdued::store::{JournalState, SledStore, Store};
use overdued_connector::{Clock, ManualClock, TokenStore};
use overdued_sandbox::{
    Behaviour, CreatedInvoice, Effect, NewInvoice, RunningSandbox, Sandbox, SandboxOptions, System,
};
use rust_decimal::Decimal;

pub const LONDON: Tz = chrono_tz::Europe::London;

/// The connection names every generated config uses.
pub const QBO: &str = "qbo";
pub const XERO: &str = "xero";

pub fn conn_of(system: System) -> &'static str {
    match system {
        System::QuickBooks => QBO,
        System::Xero => XERO,
    }
}

pub fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("valid date")
}

/// The instant of a London wall-clock time (the earlier one when it occurs twice).
pub fn london(d: NaiveDate, h: u32, min: u32) -> DateTime<Utc> {
    LONDON
        .from_local_datetime(&d.and_hms_opt(h, min, 0).expect("valid time"))
        .earliest()
        .expect("a London wall-clock time that exists")
        .with_timezone(&Utc)
}

pub fn utc(d: NaiveDate, h: u32) -> DateTime<Utc> {
    Utc.from_utc_datetime(&d.and_hms_opt(h, 0, 0).expect("valid time"))
}

/// The policy of the scenarios: the steps of the issue (-3d, 0d, +7d, +14d, +30d fee,
/// +60d, +90d escalate), a fixed fee of 40 charged every 30 days up to 80, and a send
/// window of 09:00-17:59 on weekdays in the daemon's time zone.
pub const SCENARIO_POLICY: &str = r#"
[policies.default]
max_reminders_per_customer_per_day = 1

[[policies.default.steps]]
offset = "-3d"
action = "remind"
template = "heads_up"

[[policies.default.steps]]
offset = "0d"
action = "remind"
template = "due_today"

[[policies.default.steps]]
offset = "+7d"
action = "remind"
template = "follow_up"

[[policies.default.steps]]
offset = "+14d"
action = "remind"
template = "firm"

[[policies.default.steps]]
offset = "+30d"
action = "late_fee"

[[policies.default.steps]]
offset = "+60d"
action = "remind"
template = "final_notice"

[[policies.default.steps]]
offset = "+90d"
action = "escalate"
template = "escalation"

[policies.default.late_fee]
model = "fixed"
amount = "40.00"
every_days = 30
cap_amount = "80.00"

[policies.default.send_window]
cron = "* 9-17 * * Mon-Fri"
"#;

/// The client-side rate limiters run this many times faster than real time: the
/// sandbox's clock is virtual and months pass in seconds (Xero's 60 calls a minute would
/// otherwise pace a simulated season over many real minutes).
const LIMITS: &str = "limits_time_scale = 1000\n";

/// A complete config for the sandbox at `url`: one connection per tenant (`qbo`,
/// `xero`), each with a fresh grant, state in `state_dir` (relative to the config).
pub fn config_text(sb: &Sandbox, url: &str, state_dir: &str, tz: &str, policies: &str) -> String {
    let mut text = format!(
        "[daemon]\nstate_dir = \"{state_dir}\"\npoll_interval = \"1m\"\ntime_zone = \"{tz}\"\n\
         allow_clock_override = true\nhttp_listen = \"127.0.0.1:0\"\n\n{policies}\n"
    );
    for t in sb.tenants() {
        let (client_id, client_secret) = sb.client_credentials(t.system);
        let grant = sb.grant(t.system, &t.id).expect("grant");
        let rt = grant.refresh_token;
        match t.system {
            System::QuickBooks => text.push_str(&format!(
                "\n[quickbooks.{QBO}]\nrealm_id = \"{id}\"\nclient_id = \"{client_id}\"\n\
                 client_secret = \"{client_secret}\"\nrefresh_token = \"{rt}\"\nenvironment = \"sandbox\"\n\
                 api_base = \"{url}\"\ntoken_url = \"{url}/oauth2/v1/tokens/bearer\"\n\
                 authorize_url = \"{url}/oauth2/quickbooks/authorize\"\n{LIMITS}",
                id = t.id
            )),
            System::Xero => text.push_str(&format!(
                "\n[xero.{XERO}]\nclient_id = \"{client_id}\"\nclient_secret = \"{client_secret}\"\n\
                 refresh_token = \"{rt}\"\ntenant = \"{id}\"\napi_base = \"{url}/api.xro/2.0\"\n\
                 identity_base = \"{url}\"\ntoken_url = \"{url}/connect/token\"\n\
                 authorize_url = \"{url}/identity/connect/authorize\"\n{LIMITS}",
                id = t.id
            )),
        }
    }
    text
}

/// Sandbox options for hand-made worlds: one QuickBooks company and one Xero
/// organisation, no generated invoices, no rate limits (these tests are about what is
/// sent, not about pacing).
pub fn empty_world(start: DateTime<Utc>) -> SandboxOptions {
    SandboxOptions {
        seed: 11,
        customers: 1,
        invoices: 0,
        start,
        enforce_limits: false,
        ..SandboxOptions::default()
    }
}

/// An in-process sandbox, a config pointing at it, a store and a manual clock.
pub struct Harness {
    pub running: RunningSandbox,
    pub config: Config,
    pub store: Arc<SledStore>,
    pub clock: Arc<ManualClock>,
    pub dir: tempfile::TempDir,
}

impl Harness {
    pub async fn start(opts: SandboxOptions, tz: &str, policies: &str) -> Harness {
        let start = opts.start;
        let running = Sandbox::start(opts, "127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("sandbox starts");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("overdued.toml");
        let text = config_text(&running.sandbox, &running.url(), "state", tz, policies);
        std::fs::write(&path, &text).expect("write config");
        let config = overdued::config::parse(&text, &path).unwrap_or_else(|e| panic!("{e}"));
        let store = Arc::new(SledStore::open(&config.daemon.state_dir).expect("store"));
        Harness {
            running,
            config,
            store,
            clock: Arc::new(ManualClock::new(start)),
            dir,
        }
    }

    pub fn sandbox(&self) -> &Sandbox {
        &self.running.sandbox
    }

    pub fn tenant(&self, system: System) -> String {
        self.sandbox()
            .tenants()
            .into_iter()
            .find(|t| t.system == system)
            .expect("tenant")
            .id
    }

    /// Moves both clocks (the sandbox's first, so customers' payments due by then are
    /// applied) and runs one cycle on every connection; any failure fails the test.
    pub async fn cycle_at(&self, t: DateTime<Utc>) -> Vec<CycleReport> {
        self.sandbox().set_now(t);
        self.clock.set(t);
        let store: Arc<dyn Store> = self.store.clone();
        let tokens: Arc<dyn TokenStore> = self.store.clone();
        let clock: Arc<dyn Clock> = self.clock.clone();
        let results = run_all_once(&self.config, store, tokens, clock).await;
        results
            .into_iter()
            .map(|(name, r)| {
                let rep = r.unwrap_or_else(|e| panic!("{t}: cycle of {name} failed: {e}"));
                for (inv, kind, step, outcome) in &rep.exec.results {
                    assert!(
                        !matches!(outcome, overdued::executor::Outcome::Failed { .. }),
                        "{t}: {name} {inv} {kind} {step}: {outcome:?}"
                    );
                }
                rep
            })
            .collect()
    }

    /// One cycle a day at `hour:00` London time, on every day of `from..=to`.
    pub async fn daily(&self, from: NaiveDate, to: NaiveDate, hour: u32) {
        let mut d = from;
        while d <= to {
            self.cycle_at(london(d, hour, 0)).await;
            d = d.succ_opt().expect("next day");
        }
    }

    /// The same invoice in both systems (a new customer each, with `behaviour`).
    pub fn invoice_in_both(
        &self,
        customer: &str,
        total: Decimal,
        issue: NaiveDate,
        due: NaiveDate,
        behaviour: Behaviour,
    ) -> Vec<CreatedInvoice> {
        [System::QuickBooks, System::Xero]
            .into_iter()
            .map(|system| {
                self.sandbox()
                    .create_invoice(NewInvoice {
                        system,
                        tenant: None,
                        customer_name: customer.to_string(),
                        customer_email: format!(
                            "{}@{}.example",
                            customer.to_lowercase().replace(' ', "."),
                            system.as_str().to_lowercase()
                        ),
                        number: None,
                        currency: None,
                        total,
                        issue_date: issue,
                        due_date: due,
                        behaviour: Some(behaviour.clone()),
                    })
                    .expect("create invoice")
            })
            .collect()
    }

    pub fn ledger(&self) -> Vec<Row> {
        read_ledger(&self.sandbox().ledger().effects, &[self.store.as_ref()])
    }
}

/// One effect of the sandbox ledger, named by what overdued meant by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub system: System,
    pub tenant: String,
    pub invoice_id: String,
    /// The sandbox's kind: `email`, `fee`, `note` or `sms`.
    pub kind: String,
    /// The journal's action kind (`remind`, `late_fee`, `note`, `escalate`), or `audit`
    /// for the audit note of an action, `?` for a write overdued has no journal entry for.
    pub action: String,
    pub key: Option<String>,
    /// The journal's step for an action (`+7d`, `+30d/p1`, ...); `audit:<step>` for the
    /// audit note of an action.
    pub step: String,
    /// For late fees: the amount charged.
    pub amount: Option<Decimal>,
    /// For late fees posted as a separate invoice: that invoice's id.
    pub fee_invoice: Option<String>,
    pub at: DateTime<Utc>,
}

impl Row {
    pub fn local(&self) -> DateTime<Tz> {
        self.at.with_timezone(&LONDON)
    }

    pub fn local_date(&self) -> NaiveDate {
        self.local().date_naive()
    }

    pub fn is_audit(&self) -> bool {
        self.action == "audit"
    }
}

/// Names every effect by its journal entry (looked up in `stores`, one per process
/// history that wrote to this sandbox; a key is found in the store that wrote it).
pub fn read_ledger(effects: &[Effect], stores: &[&dyn Store]) -> Vec<Row> {
    let mut steps: HashMap<String, (String, String)> = HashMap::new();
    // Twilio takes no key: a text message is named by its number and exact words, as
    // its journal record (`CONNECTION/sms`) holds them.
    let mut texts: HashMap<(String, String), String> = HashMap::new();
    let mut loaded: HashMap<(System, String), ()> = HashMap::new();
    for e in effects {
        if loaded
            .insert((e.system, e.invoice_id.clone()), ())
            .is_some()
        {
            continue;
        }
        let conn = conn_of(e.system);
        for store in stores {
            for j in store
                .journal_for_invoice(conn, &e.invoice_id)
                .expect("journal")
            {
                let audit = j.audit_note_key();
                steps.insert(
                    audit.as_str().to_string(),
                    ("audit".into(), format!("audit:{}", j.step_id)),
                );
                steps.insert(
                    j.vendor_key().as_str().to_string(),
                    (j.kind.as_str().into(), j.step_id.clone()),
                );
            }
            for j in store
                .journal_for_invoice(&format!("{conn}/sms"), &e.invoice_id)
                .expect("journal")
            {
                if let overdued::store::JournalPayload::SmsSend(s) = &j.payload {
                    texts.insert((s.to.clone(), s.body.clone()), j.key.as_str().to_string());
                    steps.insert(
                        j.key.as_str().to_string(),
                        (j.kind.as_str().into(), j.step_id.clone()),
                    );
                }
            }
        }
    }
    effects
        .iter()
        .map(|e| {
            let key = e.idempotency_key.clone().or_else(|| {
                let text = |f: &str| e.detail.get(f).and_then(|v| v.as_str()).map(str::to_string);
                (e.kind == "sms")
                    .then(|| texts.get(&(text("to")?, text("body")?)).cloned())
                    .flatten()
            });
            let (action, step) = key
                .as_ref()
                .and_then(|k| steps.get(k).cloned())
                .unwrap_or_else(|| ("?".into(), "?".into()));
            let amount = (e.kind == "fee").then(|| {
                let a = e.detail.get("amount").expect("fee amount");
                let s = a
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| a.to_string());
                s.parse::<Decimal>().expect("fee amount is a decimal")
            });
            let fee_invoice = e
                .detail
                .get("fee_invoice_id")
                .and_then(|v| v.as_str())
                .map(str::to_string);
            Row {
                system: e.system,
                tenant: e.tenant.clone(),
                invoice_id: e.invoice_id.clone(),
                kind: e.kind.clone(),
                action,
                key,
                step,
                amount,
                fee_invoice,
                at: e.at,
            }
        })
        .collect()
}

/// `(local date, action, step, fee amount)` of the actions (audit notes left out) on one
/// invoice, by date (actions of one cycle may reach the ledger in any order).
pub fn actions_on(
    rows: &[Row],
    invoice: &str,
) -> Vec<(NaiveDate, String, String, Option<Decimal>)> {
    let mut v = rows
        .iter()
        .filter(|r| r.invoice_id == invoice && !r.is_audit())
        .map(|r| (r.local_date(), r.action.clone(), r.step.clone(), r.amount))
        .collect::<Vec<_>>();
    v.sort_by(|a, b| (a.0, &a.1, &a.2).cmp(&(b.0, &b.1, &b.2)));
    v
}

/// Shorthand for expected actions.
pub fn act(d: NaiveDate, action: &str, step: &str) -> (NaiveDate, String, String, Option<Decimal>) {
    (d, action.into(), step.into(), None)
}

pub fn fee(d: NaiveDate, step: &str, amount: &str) -> (NaiveDate, String, String, Option<Decimal>) {
    (
        d,
        "late_fee".into(),
        step.into(),
        Some(amount.parse().expect("amount")),
    )
}

/// Every effect must be an action overdued journalled, or the audit note of one; every
/// done action has exactly one audit note (escalations are their own note).
pub fn assert_ledger_consistent(rows: &[Row]) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for r in rows {
        assert_ne!(r.step, "?", "an effect overdued did not journal: {r:?}");
        *seen
            .entry(r.key.as_deref().expect("every write carries a key"))
            .or_default() += 1;
    }
    for (k, n) in &seen {
        assert_eq!(*n, 1, "key {k} took effect {n} times");
    }
    for r in rows
        .iter()
        .filter(|r| matches!(r.action.as_str(), "remind" | "late_fee"))
    {
        let audits = rows
            .iter()
            .filter(|a| a.invoice_id == r.invoice_id && a.step == format!("audit:{}", r.step))
            .count();
        assert_eq!(audits, 1, "audit notes of {r:?}");
    }
}

/// Customers' emails and fees go out only inside the send window (Mon-Fri, 09:00-17:59
/// London).
pub fn assert_in_window(rows: &[Row]) {
    for r in rows.iter().filter(|r| r.kind != "note") {
        let l = r.local();
        assert!(
            !matches!(l.weekday(), Weekday::Sat | Weekday::Sun) && (9..=17).contains(&l.hour()),
            "outside the send window: {r:?} at {l}"
        );
    }
}

/// The ledger as a multiset of what matters, independent of when it was written and of
/// ids the sandbox mints at run time: (system, invoice, kind, step, fee amount), where
/// a fee invoice is named after the invoice and step it charges.
pub fn canonical(rows: &[Row]) -> Vec<(String, String, String, String, String)> {
    let mut fee_names: HashMap<String, String> = HashMap::new();
    for r in rows.iter().filter(|r| r.kind == "fee") {
        if let Some(f) = &r.fee_invoice {
            fee_names.insert(f.clone(), format!("fee[{} {}]", r.invoice_id, r.step));
        }
    }
    let mut v: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r.system.as_str().to_string(),
                fee_names
                    .get(&r.invoice_id)
                    .cloned()
                    .unwrap_or_else(|| r.invoice_id.clone()),
                format!("{} {}", r.kind, r.action),
                r.step.clone(),
                r.amount
                    .map(|a| a.normalize().to_string())
                    .unwrap_or_default(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Every journal entry of a store is settled as done or dropped on purpose.
pub fn assert_journal_settled(store: &dyn Store) {
    for conn in [QBO, XERO] {
        let open = store.unfinished_journal(conn).expect("journal");
        assert!(
            open.is_empty(),
            "{conn}: unfinished journal entries {open:#?}"
        );
    }
}

pub fn journal_states(store: &dyn Store, conn: &str, invoice: &str) -> Vec<(String, String)> {
    store
        .journal_for_invoice(conn, invoice)
        .expect("journal")
        .into_iter()
        .map(|e| {
            let s = match e.state {
                JournalState::Intent => "intent".to_string(),
                JournalState::Done { .. } => "done".to_string(),
                JournalState::Skipped { reason, .. } => format!("skipped: {reason}"),
                JournalState::Superseded { reason, .. } => format!("superseded: {reason}"),
                JournalState::Failed { error, .. } => format!("failed: {error}"),
            };
            (e.step_id, s)
        })
        .collect()
}

pub fn temp_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// What one multiset has that the other has not, both ways, for a readable failure.
pub fn multiset_diff<T: Ord + Clone + std::fmt::Debug>(a: &[T], b: &[T]) -> String {
    let mut only_a = a.to_vec();
    let mut only_b = Vec::new();
    for x in b {
        match only_a.iter().position(|y| y == x) {
            Some(p) => {
                only_a.remove(p);
            }
            None => only_b.push(x.clone()),
        }
    }
    format!("only in the first: {only_a:#?}\nonly in the second: {only_b:#?}")
}
