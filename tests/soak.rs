//! The fault soak: with a fifth of the calls failing, in every way the sandbox knows how
//! to fail, the ledger ends exactly as it does in the same world without faults; and
//! when no 429 is injected, the client never breaks the vendors' rate limits.
//!
//! `twenty_percent_faults_of_every_kind_leave_the_fault_free_ledger`: two in-process
//! sandboxes built from the same options (seed, sizes, start), with the vendors' limits
//! enforced at the accelerated time scale the generated config's client limiters use
//! (`limits_time_scale = 1000`). Every simulated day runs a cycle at 08:00 London time
//! (outside the 09-17 weekday send window: sync only) and one at 10:00 (the day's
//! reminders, fees and notes). The fault-free world runs each once, through
//! `Harness::cycle_at` (any failure there fails the test). In the faulty world 20 % of
//! the calls fault, the kind drawn evenly from every `FaultKind`, and a cycle is
//! repeated at the same instant until one completes with nothing failed on either
//! connection (no failed sync, no failed action), as the daemon's next poll would; a
//! day that does not settle within [`MAX_TRIES`] cycles fails the test with the last
//! errors. What is compared is what the customers and the books see: the multiset of
//! (system, invoice, effect kind, journal action and step, fee amount) from
//! `canonical`, not times within the day, audit-note texts or the ids the sandbox mints
//! for fee invoices.
//!
//! OAuth. The token endpoints fault too, except in the one case no client can survive.
//! Xero rotates the refresh token on every refresh but honours the previous one for 30
//! minutes, and a repeated call or cycle runs at the same simulated instant, so a lost,
//! cut-short or garbled answer to a Xero refresh is recovered by refreshing again:
//! `oauth.xero.token` faults in every cycle. QuickBooks rotates a refresh token once it
//! is 24 hours old and voids the old one at once: if the answer to that one refresh is
//! lost, cut short or garbled, the grant is gone and a person must reconnect. That is
//! the vendor's design, not a client bug, and daily cycles exactly 24 hours apart would
//! put that rotation on a faulted call every day. So (as in `tests/torture.rs`) the 08:00
//! cycle is the one that rotates (the access token of the previous 10:00 cycle expired
//! at 11:00 and the refresh token is by then 24 hours old) and `oauth.quickbooks.token`
//! is left out of the fault filter in the 08:00 cycles only. The 10:00 cycles refresh
//! with a two-hour-old refresh token, which QuickBooks answers with the same refresh
//! token, so the faults those refreshes do get are recoverable. A connection that loses
//! its grant anyway fails the test saying so.
//!
//! Connectors, timeouts and retries. The faulty worlds build their connectors as the
//! daemon does (`overdued::connections`, kept from cycle to cycle as the daemon's
//! scheduler keeps them) with two changes, both about real time only: a one-second
//! request timeout instead of 60 s (the config has no key for it), and the daemon's
//! six attempts per call with a backoff from 20 ms instead of 500 ms. Injected 429s
//! still ask for (and get) a whole second. Slow faults alternate by day: on even days
//! the answer comes after 100 ms (a slow call that succeeds), on odd days after 1.2 s,
//! past the client's timeout, so the client gives up on a call the server may still
//! apply and retries it under the same idempotency key.
//!
//! `without_injected_429s_the_client_never_exceeds_the_limits`: a faulty world of 3000
//! invoices, every kind of fault but `RateLimit` at 20 %, the sandbox enforcing the
//! vendors' limits and counting every call over them. It runs at a limits time scale
//! of [`LIMITS_SCALE`] on both sides (sandbox and client limiters) rather than the
//! config's 1000, at which no debug build comes near Xero's 60 calls a minute. The
//! sandbox must then have counted no violation and sent no 429. Checked by hand while
//! writing it: with the sandbox at half the client's scale, or the client's limiter
//! effectively off (scale 100000), the same run fails both assertions.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use overdued::config::{ConnectionConfig, SystemConfig};
use overdued::connections::{quickbooks_settings, xero_settings};
use overdued::cycle::run_cycle;
use overdued::executor::Outcome;
use overdued_connector::runtime::{RetryPolicy, StatsSnapshot};
use overdued_connector::{Clock, Connector, TokenStore};
use overdued_quickbooks::QuickBooksConnector;
use overdued_sandbox::{FaultConfig, FaultKind, SandboxOptions};
use overdued_xero::XeroConnector;
use support::*;

const SEED: u64 = 20260105;
/// The limits' time scale of the generated config (`support::config_text`); the
/// sandbox's windows must run at the same speed.
const TIME_SCALE: f64 = 1000.0;
/// Cycles at one instant before a day counts as never settling.
const MAX_TRIES: u32 = 20;
/// The faulty world's request timeout (see the module doc).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
const SLOW_IN_TIME_MS: u64 = 100;
const SLOW_PAST_TIMEOUT_MS: u64 = 1_200;
/// The faulty world's retry policy: the daemon's attempts, with a shorter backoff.
const QUICK_RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 6,
    initial_backoff: Duration::from_millis(20),
    max_backoff: Duration::from_millis(500),
    max_retry_after: Duration::from_secs(300),
};

fn day(i: u32) -> NaiveDate {
    date(2026, 1, 5) + chrono::Duration::days(i64::from(i))
}

/// Every endpoint of both accounting APIs and Xero's token endpoint: everything the
/// daemon calls but QuickBooks' token endpoint (see the module doc).
fn all_but_quickbooks_oauth() -> Vec<String> {
    ["quickbooks.", "xero.", "oauth.xero."]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn injected(w: &Harness) -> BTreeMap<String, u64> {
    w.sandbox().stats()["faults_injected"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

fn stat(w: &Harness, name: &str) -> u64 {
    w.sandbox().stats()[name].as_u64().unwrap_or(0)
}

/// Builds a connection's connector as `overdued::connections::build` does, with another
/// request timeout.
fn connector(
    c: &ConnectionConfig,
    tokens: Arc<dyn TokenStore>,
    clock: Arc<dyn Clock>,
    timeout: Duration,
    retry: RetryPolicy,
) -> Arc<dyn Connector> {
    match &c.system {
        SystemConfig::QuickBooks(q) => {
            let realm = q
                .realm_id
                .clone()
                .expect("the generated config names the realm");
            let mut s = quickbooks_settings(c, q, realm);
            s.runtime.request_timeout = timeout;
            s.runtime.retry = retry;
            Arc::new(QuickBooksConnector::new(s, tokens, clock).expect("QuickBooks connector"))
        }
        SystemConfig::Xero(x) => {
            let mut s = xero_settings(c, x);
            s.request_timeout = timeout;
            s.retry = retry;
            Arc::new(XeroConnector::new(s, tokens, clock).expect("Xero connector"))
        }
    }
}

/// A world that may fail, and what it took to get through it. Its connectors are built
/// once and kept from cycle to cycle, as the daemon keeps them (a connector rebuilt for
/// every cycle would start with an empty rate limiter that knows nothing of the calls
/// its predecessor made in the last minute).
struct Faulty {
    h: Harness,
    connectors: Vec<Arc<dyn Connector>>,
    cycles: u32,
    repeats: u32,
}

impl Faulty {
    fn new(h: Harness, timeout: Duration, retry: RetryPolicy) -> Faulty {
        let tokens: Arc<dyn TokenStore> = h.store.clone();
        let clock: Arc<dyn Clock> = h.clock.clone();
        let connectors = h
            .config
            .connections
            .iter()
            .map(|c| connector(c, tokens.clone(), clock.clone(), timeout, retry))
            .collect();
        Faulty {
            h,
            connectors,
            cycles: 0,
            repeats: 0,
        }
    }

    /// The connectors' counters, summed over both connections.
    fn client(&self) -> StatsSnapshot {
        let mut sum = StatsSnapshot::default();
        for c in &self.connectors {
            overdued::daemon::add_stats(&mut sum, &c.runtime().expect("a runtime").stats());
        }
        sum
    }

    /// One cycle on every connection at `t`; what failed, if anything. A lost grant
    /// fails the test at once: no repeat can bring it back.
    async fn attempt(&mut self, t: DateTime<Utc>) -> Vec<String> {
        self.cycles += 1;
        let h = &self.h;
        h.sandbox().set_now(t);
        h.clock.set(t);
        let runs = h
            .config
            .connections
            .iter()
            .zip(&self.connectors)
            .map(|(c, conn)| async move {
                let r = run_cycle(
                    &h.config,
                    c,
                    conn.as_ref(),
                    h.store.as_ref(),
                    h.clock.as_ref(),
                )
                .await
                .map_err(|e| e.to_string());
                let lost = conn.runtime().expect("a runtime").needs_reconnect()
                    || r.as_ref().is_ok_and(|rep| rep.exec.needs_reconnect);
                assert!(!lost, "{t}: {} lost its grant: {r:?}", c.name);
                (c.name.clone(), r)
            });
        let mut problems = Vec::new();
        for (name, r) in futures::future::join_all(runs).await {
            match r {
                Err(e) => problems.push(format!("{name}: cycle failed: {e}")),
                Ok(rep) => {
                    for (inv, kind, step, outcome) in &rep.exec.results {
                        if let Outcome::Failed { .. } = outcome {
                            problems.push(format!("{name} {inv} {kind} {step}: {outcome:?}"));
                        }
                    }
                }
            }
        }
        problems
    }

    /// Cycles at `t` until one completes with nothing failed.
    async fn settle(&mut self, t: DateTime<Utc>) {
        let mut last = Vec::new();
        for i in 0..MAX_TRIES {
            if i > 0 {
                self.repeats += 1;
            }
            last = self.attempt(t).await;
            if last.is_empty() {
                return;
            }
            eprintln!("{t}: repeating the cycle after: {}", last.join("; "));
        }
        panic!(
            "{t}: no cycle without failures in {MAX_TRIES} tries; the last one:\n{}",
            last.join("\n")
        );
    }
}

fn count(rows: &[Row], action: &str) -> usize {
    rows.iter().filter(|r| r.action == action).count()
}

/// A world with a few dozen invoices in each system, some already overdue at the start,
/// with the vendors' limits enforced at the config's time scale.
fn small_world() -> SandboxOptions {
    SandboxOptions {
        seed: SEED,
        customers: 12,
        invoices: 40,
        // Before the first 08:00 cycle, so QuickBooks rotates at 08:00 (module doc).
        start: london(day(0), 7, 0),
        enforce_limits: true,
        time_scale: TIME_SCALE,
        ..SandboxOptions::default()
    }
}

/// Simulated days of the ledger comparison: reminders on several steps and late fees.
const DAYS: u32 = 21;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_percent_faults_of_every_kind_leave_the_fault_free_ledger() {
    let started = Instant::now();
    let clean = Harness::start(small_world(), "Europe/London", SCENARIO_POLICY).await;
    let mut faulty = Faulty::new(
        Harness::start(small_world(), "Europe/London", SCENARIO_POLICY).await,
        REQUEST_TIMEOUT,
        QUICK_RETRY,
    );
    let mut past_timeout = 0;
    for i in 0..DAYS {
        let slow_ms = if i % 2 == 0 {
            SLOW_IN_TIME_MS
        } else {
            SLOW_PAST_TIMEOUT_MS
        };
        let slow_before = injected(&faulty.h).get("slow").copied().unwrap_or(0);
        for (slot, hour) in [(0u64, 8), (1, 10)] {
            let t = london(day(i), hour, 0);
            clean.cycle_at(t).await;
            faulty.h.sandbox().set_faults(FaultConfig {
                rate: 0.2,
                kinds: Vec::new(),
                seed: SEED + u64::from(i) * 2 + slot,
                endpoints: if hour == 8 {
                    all_but_quickbooks_oauth()
                } else {
                    Vec::new()
                },
                slow_ms,
                storm_length: 2,
            });
            faulty.settle(t).await;
        }
        if slow_ms > REQUEST_TIMEOUT.as_millis() as u64 {
            past_timeout += injected(&faulty.h).get("slow").copied().unwrap_or(0) - slow_before;
        }
    }
    faulty.h.sandbox().set_faults(FaultConfig::default());

    let (a, b) = (clean.ledger(), faulty.h.ledger());
    let faults = injected(&faulty.h);
    let client = faulty.client();
    eprintln!(
        "soak: {DAYS} days, {} cycles ({} repeated), {} client calls, {} client retries, \
         {} transport errors, {} token refreshes ({} failed), faults {faults:?} \
         ({} in all, {past_timeout} slow past the timeout), {} responses 429, \
         {} rate-limit violations, {} effects ({} reminders, {} fees) in both worlds, {:.1} s",
        faulty.cycles,
        faulty.repeats,
        client.calls,
        client.retries,
        client.transport_errors,
        client.refreshes,
        client.refresh_failures,
        faults.values().sum::<u64>(),
        stat(&faulty.h, "responses_429"),
        stat(&faulty.h, "rate_limit_violations"),
        b.len(),
        count(&b, "remind"),
        count(&b, "late_fee"),
        started.elapsed().as_secs_f64()
    );
    assert_ledger_consistent(&a);
    assert_ledger_consistent(&b);
    assert_in_window(&b);
    assert_journal_settled(clean.store.as_ref());
    assert_journal_settled(faulty.h.store.as_ref());
    assert!(
        count(&a, "remind") >= 20 && count(&a, "late_fee") >= 1,
        "a world with something to do: {} reminders, {} fees",
        count(&a, "remind"),
        count(&a, "late_fee")
    );
    let steps: std::collections::BTreeSet<&str> = a
        .iter()
        .filter(|r| r.action == "remind")
        .map(|r| r.step.as_str())
        .collect();
    assert!(steps.len() >= 3, "reminders on several steps: {steps:?}");
    for kind in FaultKind::ALL {
        assert!(
            faults.get(kind.as_str()).copied().unwrap_or(0) > 0,
            "no {} fault was injected: {faults:?}",
            kind.as_str()
        );
    }
    assert!(past_timeout > 0, "no call ran past the client's timeout");
    let (ca, cb) = (canonical(&a), canonical(&b));
    assert!(
        ca == cb,
        "fault-free vs faulty: {}",
        multiset_diff(&ca, &cb)
    );
}

/// The limits' time scale of the limits test, on both sides. At the config's 1000 a
/// Xero minute lasts 60 ms and admits 60 calls: a thousand calls a second, more than a
/// debug build on two cores ever makes, so the limiter would never be what keeps the
/// client inside the limits. At 50 the Xero minute admits 50 calls a real second, which
/// the client's bursts (re-reads before acting, five at a time) exceed.
const LIMITS_SCALE: u32 = 50;
/// Invoices in each system of the limits test.
const LIMIT_INVOICES: usize = 1500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_injected_429s_the_client_never_exceeds_the_limits() {
    let started = Instant::now();
    let opts = SandboxOptions {
        seed: SEED + 1,
        customers: 100,
        invoices: LIMIT_INVOICES,
        start: london(day(0), 7, 0),
        enforce_limits: true,
        time_scale: f64::from(LIMITS_SCALE),
        ..SandboxOptions::default()
    };
    let mut h = Harness::start(opts, "Europe/London", SCENARIO_POLICY).await;
    // The same accelerated minute on both sides.
    for c in &mut h.config.connections {
        c.limits_time_scale = LIMITS_SCALE;
    }
    let mut w = Faulty::new(h, Duration::from_secs(60), QUICK_RETRY);
    let kinds: Vec<FaultKind> = FaultKind::ALL
        .into_iter()
        .filter(|k| *k != FaultKind::RateLimit)
        .collect();
    w.h.sandbox().set_faults(FaultConfig {
        rate: 0.2,
        kinds: kinds.clone(),
        seed: SEED + 1,
        // Only 10:00 cycles here, so QuickBooks rotates its refresh token in a faulted
        // cycle: its token endpoint stays out (module doc).
        endpoints: all_but_quickbooks_oauth(),
        // Slow, well inside the request timeout: a call the client gave up on while
        // the server still holds its concurrency slot is the first test's business.
        slow_ms: 50,
        ..FaultConfig::default()
    });
    const LIMIT_DAYS: u32 = 3;
    for i in 0..LIMIT_DAYS {
        w.settle(london(day(i), 10, 0)).await;
    }
    let ledger = w.h.sandbox().ledger();
    let rows = w.h.ledger();
    let faults = injected(&w.h);
    let requests = w.h.sandbox().stats()["requests_by_tenant"].clone();
    let client = w.client();
    eprintln!(
        "limits: {LIMIT_DAYS} days of {} invoices, {} cycles ({} repeated), {} client calls \
         {requests}, {} client retries, {} limiter waits, faults {faults:?}, \
         {} rate-limit violations, {} responses 429, {} effects ({} reminders, {} fees), {:.1} s",
        2 * LIMIT_INVOICES,
        w.cycles,
        w.repeats,
        client.calls,
        client.retries,
        client.limiter_waits,
        ledger.rate_limit_violations,
        stat(&w.h, "responses_429"),
        rows.len(),
        count(&rows, "remind"),
        count(&rows, "late_fee"),
        started.elapsed().as_secs_f64()
    );
    for kind in &kinds {
        assert!(
            faults.get(kind.as_str()).copied().unwrap_or(0) > 0,
            "no {} fault was injected: {faults:?}",
            kind.as_str()
        );
    }
    assert!(!faults.contains_key(FaultKind::RateLimit.as_str()));
    assert!(
        count(&rows, "remind") >= 100,
        "a workload that calls a lot: {} reminders",
        count(&rows, "remind")
    );
    assert_ledger_consistent(&rows);
    assert_journal_settled(w.h.store.as_ref());
    // Every call the sandbox admitted was within the vendor's per-minute, per-day,
    // concurrency and app limits (violations are counted whether or not enforced), and
    // none was refused: no 429 came back at all.
    assert_eq!(ledger.rate_limit_violations, 0, "calls over the limits");
    assert_eq!(stat(&w.h, "responses_429"), 0, "429s without injected ones");
}
