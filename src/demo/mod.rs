//! `overdued demo`: the real engine against two in-process simulated businesses (one
//! QuickBooks Online company, one Xero organisation) on a virtual clock, day by day,
//! with a twin world of the same seed where nobody chases, for comparison.
//!
//! Everything stays in the process and on loopback; state lives in a temporary directory
//! that is removed at the end. The world starts on a fixed date so that one seed always
//! prints the same story.

mod adoption;
mod book;
mod format;
pub mod payers;
mod sales;
mod setup;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use overdued_connector::{ActionKind, Clock, Connector, ManualClock, TokenStore};
use overdued_sandbox::{SandboxError, System};
use rust_decimal::Decimal;

use crate::config::ConfigError;
use crate::connections::BuildError;
use crate::cycle::{run_all_once, CycleReport};
use crate::engine::plan::CATCH_UP;
use crate::executor::Outcome;
use crate::store::{AuditEvent, Hold, HoldTarget, SledStore, Store, StoreError};
use crate::sync::{sync_connection, SyncError};

use book::{Book, InvoiceKey, PerCurrency};
use format::{day, days_overdue, long_day, money, per_currency};
use setup::{config_for, sandbox_options, start_sandbox, TempDir, STEPS, TIME_ZONE};

/// The first simulated day (a Monday). Fixed, so a seed tells the same story every time.
pub const FIRST_DAY: (i32, u32, u32) = (2026, 1, 5);

/// The local hour each simulated day's cycle runs at: inside the default send window
/// (Mon-Fri 9-16 London), and already morning for the QuickBooks company on US Pacific
/// time, so both books agree on the date.
pub const CYCLE_HOUR: u32 = 15;

/// The demo's most days: enough for a year and a half, small enough to stay quick.
pub const MAX_DAYS: u32 = 550;

/// The order of a day's lines: what overdued did, then what the customers did.
const RANK_REMIND: u8 = 1;
const RANK_FEE: u8 = 2;
const RANK_ESCALATE: u8 = 3;
const RANK_TROUBLE: u8 = 4;
const RANK_PAID: u8 = 5;
const RANK_PROMISE: u8 = 6;

/// Days into the run before a customer may ask for time to pay.
const PROMISE_AFTER_DAYS: u32 = 8;
/// How long the customer in the story asks for.
const PROMISE_DAYS: i64 = 7;

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub days: u32,
    pub seed: u64,
    /// Real time to wait after each simulated day (none: as fast as possible).
    pub day_pause: Option<std::time::Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("--days {0}: must be between 1 and {MAX_DAYS}")]
    Days(u32),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("simulator: {0}")]
    Sandbox(SandboxError),
    #[error("the demo's own config is invalid: {0}")]
    Config(ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("unchased world: {0}")]
    Sync(#[from] SyncError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("day {day}: connection {connection}: {message}")]
    Cycle {
        day: u32,
        connection: String,
        message: String,
    },
    #[error("cannot write the demo log: {0}")]
    Output(std::io::Error),
}

/// What overdued did over the run, for the closing report.
#[derive(Debug, Default)]
struct Tally {
    reminders: usize,
    fees: usize,
    fees_charged: PerCurrency,
    escalations: usize,
    promises: usize,
}

/// The promise in the story, watched until it is kept or broken.
struct PromiseWatch {
    key: InvoiceKey,
    until: NaiveDate,
    settled: bool,
}

fn tz() -> Tz {
    TIME_ZONE.parse().unwrap_or(chrono_tz::Europe::London)
}

/// The instant of a day's cycle: `CYCLE_HOUR` local time (in the gap of a DST change,
/// the first valid instant after it).
fn cycle_instant(d: NaiveDate) -> DateTime<Utc> {
    let tz = tz();
    let local = d.and_hms_opt(CYCLE_HOUR, 0, 0).unwrap_or_default();
    match tz.from_local_datetime(&local).earliest() {
        Some(t) => t.with_timezone(&Utc),
        None => tz
            .from_local_datetime(&(local + Duration::hours(1)))
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|| local.and_utc()),
    }
}

fn first_day() -> NaiveDate {
    let (y, m, d) = FIRST_DAY;
    NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default()
}

fn out_err(e: std::io::Error) -> DemoError {
    DemoError::Output(e)
}

/// Runs the whole demo, writing the day-by-day log and the closing report to `out`.
pub async fn run(opts: &DemoOptions, out: &mut dyn Write) -> Result<(), DemoError> {
    run_checked(opts, out).await.map(|_| ())
}

/// [`run`], returning the check of payer profiles and the forecast against the
/// simulation's ground truth that the closing report prints.
pub async fn run_checked(
    opts: &DemoOptions,
    out: &mut dyn Write,
) -> Result<payers::PayersCheck, DemoError> {
    if opts.days == 0 || opts.days > MAX_DAYS {
        return Err(DemoError::Days(opts.days));
    }
    let first = first_day();
    let last = first + Duration::days(i64::from(opts.days) - 1);
    let start = cycle_instant(first);
    let dir = TempDir::new()?;
    let chased = start_sandbox(sandbox_options(opts.seed, start)).await?;
    let unchased = start_sandbox(sandbox_options(opts.seed, start)).await?;
    let cfg = config_for(&chased.sandbox, &chased.url(), dir.path(), "overdued")?;
    let base_cfg = config_for(&unchased.sandbox, &unchased.url(), dir.path(), "unchased")?;
    let store = Arc::new(SledStore::open(&cfg.daemon.state_dir)?);
    let base_store = Arc::new(SledStore::open(&base_cfg.daemon.state_dir)?);
    let clock = Arc::new(ManualClock::new(start));
    let base_clock = Arc::new(ManualClock::new(start));
    let base_tokens: Arc<dyn TokenStore> = base_store.clone();
    let base_conns = base_cfg
        .connections
        .iter()
        .map(|c| crate::connections::build(c, base_tokens.clone(), base_clock.clone()))
        .collect::<Result<Vec<Arc<dyn Connector>>, BuildError>>()?;
    let names: Vec<String> = cfg.connections.iter().map(|c| c.name.clone()).collect();
    let base_names: Vec<String> = base_cfg
        .connections
        .iter()
        .map(|c| c.name.clone())
        .collect();
    let full_every = base_cfg.daemon.full_sync_interval.as_duration();
    let grace = i64::from(cfg.engine.promise_grace_days);

    intro(out, opts, &chased.sandbox, first)?;

    let mut book = Book::default();
    let mut base_book = Book::default();
    let mut tally = Tally::default();
    let mut promise: Option<PromiseWatch> = None;
    let mut sales: Option<sales::Sales> = None;
    let mut forecast: Option<payers::ForecastWatch> = None;
    for n in 1..=opts.days {
        let today = first + Duration::days(i64::from(n) - 1);
        let t = cycle_instant(today);
        chased.sandbox.set_now(t);
        clock.set(t);
        unchased.sandbox.set_now(t);
        base_clock.set(t);
        if let Some(s) = sales.as_mut() {
            for inv in s.for_day(today) {
                chased
                    .sandbox
                    .create_invoice(inv.clone())
                    .map_err(DemoError::Sandbox)?;
                unchased
                    .sandbox
                    .create_invoice(inv)
                    .map_err(DemoError::Sandbox)?;
            }
        }

        let dyn_clock: Arc<dyn Clock> = clock.clone();
        let results = run_all_once(&cfg, store.clone(), store.clone(), dyn_clock).await;
        let mut reports = Vec::with_capacity(results.len());
        for (connection, r) in results {
            match r {
                Ok(rep) => reports.push(rep),
                Err(message) => {
                    return Err(DemoError::Cycle {
                        day: n,
                        connection,
                        message,
                    })
                }
            }
        }
        // The twin world is only read, never written to: its customers are never chased.
        for c in &base_conns {
            sync_connection(
                c.as_ref(),
                base_store.as_ref(),
                base_clock.as_ref(),
                full_every,
                false,
            )
            .await?;
        }
        let paid = book.observe(store.as_ref(), &names, today)?;
        base_book.observe(base_store.as_ref(), &base_names, today)?;
        if i64::from(opts.days) - i64::from(n) == payers::FORECAST_DAYS {
            forecast = Some(payers::take_forecast(&cfg, store.as_ref(), today)?);
        }

        let mut lines: Vec<(u8, String)> = Vec::new();
        if n == 1 {
            lines.push((0, opening_line(&book)));
            lines.extend(adoption::lines(&reports).into_iter().map(|l| (0, l)));
            sales = Some(sales::Sales::new(
                opts.seed,
                chased.sandbox.tenants(),
                &book,
                |t| {
                    cfg.connections
                        .iter()
                        .find(|c| c.system() == t.system)
                        .map(|c| c.name.clone())
                },
            ));
        }
        let mut firm_reminded: Vec<InvoiceKey> = Vec::new();
        for rep in &reports {
            action_lines(rep, &book, &mut tally, &mut lines, &mut firm_reminded);
        }
        if let Some(line) = paid_line(&paid) {
            lines.push((RANK_PAID, line));
        }
        if let Some(w) = promise.as_mut().filter(|w| !w.settled) {
            if let Some(line) = promise_outcome(w, &book, today, grace) {
                lines.push((RANK_PROMISE, line));
            }
        }
        if promise.is_none() && n >= PROMISE_AFTER_DAYS {
            if let Some(key) = firm_reminded
                .iter()
                .find(|k| book.invoice(k).is_some_and(|s| s.status.is_open()))
            {
                let (w, line) = record_promise(store.as_ref(), &book, key, today, t)?;
                tally.promises += 1;
                promise = Some(w);
                lines.push((RANK_PROMISE, line));
            }
        }
        if !lines.is_empty() {
            // Stable: within a kind, the order overdued acted in.
            lines.sort_by_key(|(rank, _)| *rank);
            writeln!(out, "Day {n} · {}", day(today)).map_err(out_err)?;
            for (_, l) in &lines {
                writeln!(out, "  {l}").map_err(out_err)?;
            }
            out.flush().map_err(out_err)?;
        }
        if let Some(p) = opts.day_pause {
            tokio::time::sleep(p).await;
        }
    }

    let ledger = chased.sandbox.ledger();
    let mut keys = BTreeSet::new();
    let duplicates = ledger
        .effects
        .iter()
        .filter_map(|e| {
            e.idempotency_key
                .as_ref()
                .map(|k| (e.tenant.clone(), e.kind.clone(), k.clone()))
        })
        .filter(|k| !keys.insert(k.clone()))
        .count();
    let with = book.closing();
    let without = base_book.closing();
    let report = format::Report {
        days: opts.days,
        seed: opts.seed,
        first_day: first,
        last_day: last,
        with: &with,
        without: &without,
        reminders: tally.reminders,
        fees_charged: &tally.fees_charged,
        fee_count: tally.fees,
        escalations: tally.escalations,
        promises: tally.promises,
        ledger_effects: ledger.effects.len(),
        duplicate_effects: duplicates,
        rate_limit_violations: ledger.rate_limit_violations,
    };
    let check = payers::check(
        &cfg,
        store.as_ref(),
        &chased.sandbox,
        last,
        forecast.as_ref(),
    )?;
    writeln!(out).map_err(out_err)?;
    write!(out, "{}", report.render()).map_err(out_err)?;
    write!(out, "{}", check.render()).map_err(out_err)?;
    out.flush().map_err(out_err)?;

    let _ = store.flush();
    drop(base_conns);
    drop(store);
    drop(base_store);
    let _ = chased.shutdown().await;
    let _ = unchased.shutdown().await;
    drop(dir);
    Ok(check)
}

fn intro(
    out: &mut dyn Write,
    opts: &DemoOptions,
    sb: &overdued_sandbox::Sandbox,
    first: NaiveDate,
) -> Result<(), DemoError> {
    let books: Vec<String> = sb
        .tenants()
        .iter()
        .map(|t| {
            let system = match t.system {
                System::QuickBooks => "QuickBooks Online",
                System::Xero => "Xero",
            };
            format!("{} ({system})", t.name)
        })
        .collect();
    let opts_s = sandbox_options(opts.seed, Utc::now());
    let steps: Vec<String> = STEPS
        .iter()
        .map(|(offset, _, _, label)| format!("{offset} {label}"))
        .collect();
    writeln!(
        out,
        "overdued demo · seed {} · {} simulated days from {}",
        opts.seed,
        opts.days,
        long_day(first)
    )
    .map_err(out_err)?;
    writeln!(
        out,
        "Two simulated businesses, running in this process on loopback: {}; {} customers and {} invoices each.",
        books.join(" and "),
        opts_s.customers,
        opts_s.invoices
    )
    .map_err(out_err)?;
    writeln!(
        out,
        "overdued syncs, plans and acts once a day at {CYCLE_HOUR}:00 {TIME_ZONE} (sending Mon-Fri) with this policy (days from the due date):"
    )
    .map_err(out_err)?;
    writeln!(
        out,
        "  {}; late fee {} in the invoice's currency.",
        steps.join(", "),
        setup::LATE_FEE
    )
    .map_err(out_err)?;
    writeln!(
        out,
        "A twin world with the same seed runs alongside where nobody chases, for the closing comparison."
    )
    .map_err(out_err)?;
    writeln!(out).map_err(out_err)?;
    Ok(())
}

fn opening_line(book: &Book) -> String {
    let all = book.invoices().count();
    format!(
        "first sync   {all} invoices read, {} open: {}",
        book.opening_count(),
        per_currency(&book.amounts(false))
    )
}

/// One line for a day's payments: how many, how much, and who paid in full.
fn paid_line(paid: &[book::SeenPayment]) -> Option<String> {
    if paid.is_empty() {
        return None;
    }
    let mut total = PerCurrency::new();
    for p in paid {
        *total.entry(p.currency.clone()).or_default() += p.amount;
    }
    let full: Vec<&book::SeenPayment> = paid.iter().filter(|p| p.in_full).collect();
    let fees = paid.iter().filter(|p| p.fee_invoice).count();
    let parts = paid.len() - full.len();
    let mut what = format!(
        "{} invoice{}",
        paid.len(),
        if paid.len() == 1 { "" } else { "s" }
    );
    if parts > 0 {
        what.push_str(&format!(" ({parts} in part)"));
    }
    if fees > 0 {
        what.push_str(&format!(
            ", {fees} of them late fee{}",
            if fees == 1 { "" } else { "s" }
        ));
    }
    let who: Vec<String> = full
        .iter()
        .filter(|p| !p.fee_invoice)
        .map(|p| format!("{} {}", p.customer, p.number))
        .collect();
    let mut line = format!("paid       {what}: {}", per_currency(&total));
    if !who.is_empty() {
        line.push_str(&format!(" · in full: {}", who.join(", ")));
    }
    Some(line)
}

/// What the log calls a policy step; a step outside the demo policy (a repeat, or one
/// the engine adds) goes by its id.
fn step_label(kind: ActionKind, step: &str) -> String {
    let action = match kind {
        ActionKind::Remind => "remind",
        ActionKind::LateFee => "late_fee",
        ActionKind::Note => "note",
        ActionKind::Escalate => "escalate",
    };
    STEPS
        .iter()
        .find(|(offset, a, _, _)| *a == action && *offset == step)
        .map(|s| s.3.to_string())
        .unwrap_or_else(|| match step.strip_prefix("promise/") {
            Some(date) => format!("promise of {date} broken"),
            None if step == CATCH_UP => "catch-up (first message)".into(),
            None => format!("step {step}"),
        })
}

fn action_lines(
    rep: &CycleReport,
    book: &Book,
    tally: &mut Tally,
    lines: &mut Vec<(u8, String)>,
    firm_reminded: &mut Vec<InvoiceKey>,
) {
    let done = |o: &Outcome| matches!(o, Outcome::Done { .. });
    for (invoice_id, kind, step, outcome) in &rep.exec.results {
        let key = (rep.connection.clone(), invoice_id.clone());
        let planned = rep
            .plan
            .actions
            .iter()
            .find(|a| &a.invoice_id == invoice_id && a.kind == *kind && &a.step_id == step);
        let inv = book.invoice(&key);
        let number = inv
            .map(|s| s.display_number().to_string())
            .or_else(|| planned.map(|a| a.invoice_number.clone()))
            .unwrap_or_else(|| invoice_id.clone());
        let customer = inv.map(|s| s.customer.name.clone()).unwrap_or_default();
        let due = inv
            .map(|s| money(s.currency.code(), s.amount_due))
            .unwrap_or_default();
        let late = planned.map(|a| a.days_overdue).unwrap_or_default();
        let fee_invoice = if inv.is_some_and(|s| s.is_fee_invoice) {
            " (late-fee invoice)"
        } else {
            ""
        };
        match outcome {
            Outcome::Done { .. } => match kind {
                ActionKind::Remind => {
                    tally.reminders += 1;
                    if step == "+14d" {
                        firm_reminded.push(key.clone());
                    }
                    lines.push((
                        RANK_REMIND,
                        format!(
                            "reminder   {customer} · {number}{fee_invoice} · {due} · {} · {}",
                            days_overdue(late),
                            step_label(*kind, step)
                        ),
                    ));
                }
                ActionKind::LateFee => {
                    tally.fees += 1;
                    let fee = planned.and_then(|a| a.fee.as_ref()).map(|f| f.amount);
                    if let Some(f) = fee {
                        *tally
                            .fees_charged
                            .entry(f.currency.code().to_string())
                            .or_default() += f.amount;
                    }
                    lines.push((
                        RANK_FEE,
                        format!(
                            "late fee   {customer} · {number} · {} charged as a separate invoice · {}",
                            fee.map(|f| money(f.currency.code(), f.amount))
                                .unwrap_or_default(),
                            days_overdue(late)
                        ),
                    ));
                }
                ActionKind::Escalate => {
                    tally.escalations += 1;
                    let noted = rep.exec.results.iter().any(|(i, k, s, o)| {
                        i == invoice_id && *k == ActionKind::Note && s == step && done(o)
                    });
                    lines.push((
                        RANK_ESCALATE,
                        format!(
                            "escalated  {customer} · {number}{fee_invoice} · {due} · {} · owner to call, collections next{}",
                            days_overdue(late),
                            if noted { " (noted on the invoice)" } else { "" }
                        ),
                    ));
                }
                ActionKind::Note => {
                    // An escalation's ledger note is told with the escalation.
                    let with_escalation = rep.exec.results.iter().any(|(i, k, s, _)| {
                        i == invoice_id && *k == ActionKind::Escalate && s == step
                    });
                    if !with_escalation {
                        lines.push((
                            RANK_ESCALATE,
                            format!("note       {customer} · {number} · {due}"),
                        ));
                    }
                }
            },
            Outcome::AlreadyDone => {}
            Outcome::Skipped { reason } => {
                lines.push((
                    RANK_TROUBLE,
                    format!("held back  {kind} on {number} · {customer}: {reason}"),
                ));
            }
            Outcome::Failed { error, retry, .. } => {
                lines.push((
                    RANK_TROUBLE,
                    format!(
                        "failed     {kind} on {number} · {customer}: {error}{}",
                        if *retry { " (retried next cycle)" } else { "" }
                    ),
                ));
            }
        }
    }
}

fn record_promise(
    store: &dyn Store,
    book: &Book,
    key: &InvoiceKey,
    today: NaiveDate,
    now: DateTime<Utc>,
) -> Result<(PromiseWatch, String), DemoError> {
    let until = today + Duration::days(PROMISE_DAYS);
    let (customer, number, due, amount_due) = match book.invoice(key) {
        Some(s) => (
            s.customer.name.clone(),
            s.display_number().to_string(),
            money(s.currency.code(), s.amount_due),
            Some(s.amount_due),
        ),
        None => (String::new(), key.1.clone(), String::new(), None),
    };
    // The whole balance, given as an amount: a promise stored without one cannot be
    // read back (`Hold::Promise.amount` = None serialises as null, which its
    // `str_option` deserialiser rejects; reported to the lead).
    let hold = Hold::Promise {
        until,
        amount: amount_due,
        balance_when_made: amount_due,
        set_at: now,
    };
    store.put_hold(&key.0, &HoldTarget::Invoice(key.1.clone()), &hold)?;
    store.append_audit(&AuditEvent {
        at: now,
        connection: key.0.clone(),
        invoice_id: Some(key.1.clone()),
        kind: "promise".into(),
        message: format!("promise to pay the balance ({due}) by {until}: no chasing until then"),
        detail: serde_json::Value::Null,
    })?;
    let line = format!(
        "promise    {customer} answers the firm reminder asking for a week: promise to pay {number} ({due}) by {} recorded, no chasing until then",
        day(until)
    );
    Ok((
        PromiseWatch {
            key: key.clone(),
            until,
            settled: false,
        },
        line,
    ))
}

fn promise_outcome(
    w: &mut PromiseWatch,
    book: &Book,
    today: NaiveDate,
    grace_days: i64,
) -> Option<String> {
    let s = book.invoice(&w.key)?;
    let open = s.status.is_open() && s.amount_due > Decimal::ZERO;
    if !open {
        w.settled = true;
        return Some(format!(
            "promise    kept: {} paid {} (promised by {})",
            s.customer.name,
            s.display_number(),
            day(w.until)
        ));
    }
    if today > w.until + Duration::days(grace_days) {
        w.settled = true;
        return Some(format!(
            "promise    broken: {} has not paid {} ({}) by {} plus {grace_days} days' grace; the sequence resumes",
            s.customer.name,
            s.display_number(),
            money(s.currency.code(), s.amount_due),
            day(w.until)
        ));
    }
    None
}
