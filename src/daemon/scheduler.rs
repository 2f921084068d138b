//! One task per connection: cycle, record, sleep (jittered), repeat. Beside them, one
//! owner-wide task: the daily digest, once every connection's cycle of the day has ended.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Timelike, Utc};
use overdued_connector::{Connector, ErrorClass, TokenStore};
use rand::Rng;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::{Shared, SHUTDOWN_GRACE};
use crate::config::Config;
use crate::cycle::{run_cycle, send_digest, CycleError, CycleReport};
use crate::events::ActionOutcome;
use crate::report::status;

/// Spread of the poll interval, so connections (and many installations) do not all
/// hit the vendors at the same second.
const JITTER: f64 = 0.1;

/// How often the per-connection summary line is logged.
const SUMMARY_EVERY: chrono::Duration = chrono::Duration::hours(24);

/// `poll` spread by ±[`JITTER`].
pub fn jittered(poll: Duration, unit: f64) -> Duration {
    let f = 1.0 - JITTER + 2.0 * JITTER * unit.clamp(0.0, 1.0);
    poll.mul_f64(f)
}

/// What a connection's task keeps between cycles (not shared).
struct Local {
    connector: Option<Arc<dyn Connector>>,
    built_for: Option<u64>,
    /// When a build error was last logged, to remind daily rather than every poll.
    build_error_logged: Option<DateTime<Utc>>,
    next_summary: Option<DateTime<Utc>>,
    done_since_summary: u64,
    failed_since_summary: u64,
}

pub async fn connection_task(shared: Arc<Shared>, name: String, stop: CancellationToken) {
    let mut local = Local {
        connector: None,
        built_for: None,
        build_error_logged: None,
        next_summary: None,
        done_since_summary: 0,
        failed_since_summary: 0,
    };
    let (kick, reload) = {
        let conns = shared.conns();
        match conns.get(&name) {
            Some(c) => (c.kick.clone(), c.reload.clone()),
            None => return,
        }
    };
    // The first status from the store, so /metrics and status have numbers before
    // the first sync ends.
    refresh_snapshot(&shared, &name).await;
    loop {
        if stop.is_cancelled() {
            return;
        }
        let (gen, cfg) = shared.config_for(&name);
        let Some(conn_cfg) = cfg.connection(&name).cloned() else {
            info!(connection = %name, "connection removed from the config; stopping its task");
            shared.conns().remove(&name);
            return;
        };
        let poll = cfg.daemon.poll_interval.0;
        if let Some(c) = shared.conns().get_mut(&name) {
            c.enabled = conn_cfg.enabled;
            c.system = conn_cfg.system();
        }
        // While the store fails nothing could be journaled, and a token rotated now
        // might never be saved: wait for the supervisor to bring the store back.
        let store_ok = shared.store_trouble().is_none();
        if conn_cfg.enabled && store_ok {
            let regrant = shared
                .conns()
                .get_mut(&name)
                .is_some_and(|c| std::mem::take(&mut c.regrant));
            if local.built_for != Some(gen) || regrant {
                rebuild(&shared, &name, &conn_cfg, gen, &mut local);
            }
            if let Some(connector) = local.connector.clone() {
                let cycle_lock = shared.conns().get(&name).map(|c| c.cycle_lock.clone());
                let _cycle_guard = match cycle_lock {
                    Some(l) => Some(l.lock_owned().await),
                    None => None,
                };
                let cycle = run_cycle(
                    &cfg,
                    &conn_cfg,
                    connector.as_ref(),
                    shared.store.as_ref(),
                    shared.clock.as_ref(),
                );
                tokio::pin!(cycle);
                let result = tokio::select! {
                    r = &mut cycle => Some(r),
                    _ = stop.cancelled() => {
                        match tokio::time::timeout(SHUTDOWN_GRACE, &mut cycle).await {
                            Ok(r) => Some(r),
                            Err(_) => {
                                warn!(connection = %name, "cycle cut short by shutdown; the journal resumes it on the next start");
                                None
                            }
                        }
                    }
                };
                let Some(result) = result else { return };
                log_cycle(&name, &result);
                record(&shared, &name, &result, &mut local);
                shared.cycles_ended.record(&name, shared.clock.now());
                refresh_snapshot(&shared, &name).await;
                maybe_summary(&shared, &name, &mut local);
                super::memory::after_cycle(&shared, &name).await;
            }
        }
        if stop.is_cancelled() {
            return;
        }
        let unit: f64 = rand::thread_rng().gen();
        let deadline = tokio::time::Instant::now() + jittered(poll, unit);
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                _ = kick.notified() => break,
                _ = stop.cancelled() => return,
                _ = reload.notified() => {
                    let (_, cfg) = shared.config();
                    match cfg.connection(&name) {
                        None => break,
                        // Newly enabled: start now rather than at the old deadline.
                        Some(c) if c.enabled && local.connector.is_none() => break,
                        Some(_) => {}
                    }
                }
            }
        }
    }
}

/// A webhook's window ended naming only invoices (or payments): re-reads and stores
/// just those, under the connection's cycle lock ([`crate::targeted`]). What cannot be
/// followed by id, or a targeted cycle that fails, starts the connection's full cycle
/// instead, the safety net it always was. No status recomputation follows (it reads
/// every invoice); the next periodic cycle does that.
pub async fn targeted_cycle(shared: &Arc<Shared>, name: &str, targets: crate::targeted::Targets) {
    use crate::targeted::{describe, run_targeted, TargetedError};
    let (_, cfg) = shared.config_for(name);
    let Some(conn_cfg) = cfg.connection(name).cloned() else {
        return;
    };
    let kick = |shared: &Shared| {
        if let Some(c) = shared.conns().get(name) {
            c.kick.notify_one();
        }
    };
    let (connector, lock) = match shared.conns().get(name) {
        Some(c) => (c.connector.clone(), c.cycle_lock.clone()),
        None => return,
    };
    let Some(connector) = connector.filter(|_| conn_cfg.enabled) else {
        // Not built yet (or disabled): its own task decides what runs.
        kick(shared);
        return;
    };
    if shared.store_trouble().is_some() {
        return;
    }
    let asked = std::time::Instant::now();
    let _guard = lock.lock_owned().await;
    let started = std::time::Instant::now();
    // A periodic cycle under way holds the lock to its end: say so, it is most of the
    // wait when there is one.
    let waited_ms = started.duration_since(asked).as_millis() as u64;
    let r = run_targeted(
        &cfg,
        &conn_cfg,
        connector.as_ref(),
        shared.store.as_ref(),
        shared.clock.as_ref(),
        &targets,
    )
    .await;
    let now = shared.clock.now();
    match r {
        Ok(rep) => {
            let closed = rep.closed.results.len();
            let unknown = rep.unknown.join(", ");
            info!(
                connection = %name,
                invoices = %describe(&rep.touched),
                unknown = %unknown,
                actions_closed = closed,
                dry_run = rep.dry_run,
                ms = started.elapsed().as_millis() as u64,
                waited_ms,
                "targeted cycle finished"
            );
            let mut conns = shared.conns();
            if let Some(c) = conns.get_mut(name) {
                c.syncs_ok += 1;
                c.last_success = Some(now);
                c.last_error = None;
                for (kind, outcome, n) in rep.closed.counts.iter() {
                    *c.actions
                        .entry((kind.as_str().to_string(), outcome.as_str().to_string()))
                        .or_insert(0) += n;
                }
            }
        }
        Err(TargetedError::NeedsFullCycle(why)) => {
            info!(connection = %name, reason = %why, "targeted cycle not possible; syncing the whole connection");
            drop(_guard);
            kick(shared);
        }
        Err(TargetedError::Cycle(e)) => {
            warn!(connection = %name, error = %e, "targeted cycle failed; syncing the whole connection");
            if let Some(c) = shared.conns().get_mut(name) {
                c.syncs_failed += 1;
                c.last_error = Some(e.to_string());
            }
            drop(_guard);
            kick(shared);
        }
    }
}

fn rebuild(
    shared: &Shared,
    name: &str,
    conn_cfg: &crate::config::ConnectionConfig,
    gen: u64,
    local: &mut Local,
) {
    let tokens: Arc<dyn TokenStore> = shared.store.clone();
    let built = (shared.factory)(conn_cfg, tokens, shared.clock.clone());
    let mut conns = shared.conns();
    let Some(state) = conns.get_mut(name) else {
        return;
    };
    if let Some(old) = state.connector.take() {
        if let Some(rt) = old.runtime() {
            super::add_stats(&mut state.retired_stats, &rt.stats());
        }
    }
    match built {
        Ok(c) => {
            if state.build_error.take().is_some() {
                info!(connection = %name, "connection can start now");
            }
            local.build_error_logged = None;
            state.connector = Some(c.clone());
            local.connector = Some(c);
            local.built_for = Some(gen);
        }
        Err(e) => {
            let now = shared.clock.now();
            let due = local
                .build_error_logged
                .is_none_or(|t| now - t >= chrono::Duration::days(1));
            if due {
                error!(connection = %name, reminder = local.build_error_logged.is_some(), error = %e.message, "connection CANNOT START; nothing is synced or chased for it until this is fixed");
                local.build_error_logged = Some(now);
            }
            state.build_error = Some(e.message);
            local.connector = None;
            // Not marked built: retried every poll, since `overdued connect` may fix it.
        }
    }
}

/// Logs how a cycle ended: one line, with the counts.
pub fn log_cycle(name: &str, r: &Result<CycleReport, CycleError>) {
    match r {
        Ok(rep) => {
            let failed = rep.exec.counts.of(ActionOutcome::Failed);
            let done = rep.exec.counts.of(ActionOutcome::Done);
            info!(
                connection = %name,
                invoices_read = rep.sync.invoices_read,
                changed = rep.sync.changed,
                full_sync = rep.sync.full,
                planned = rep.plan.actions.len(),
                done,
                failed,
                dry_run = rep.dry_run,
                "cycle finished"
            );
        }
        Err(e) => match class_of(e) {
            Some(ErrorClass::Reauth) => {
                // The token manager says this loudly (once, then daily); keep this quiet.
                info!(connection = %name, error = %e, "cycle stopped: the connection needs reconnect")
            }
            Some(_) => warn!(connection = %name, error = %e, "cycle failed; retrying next poll"),
            None => error!(connection = %name, error = %e, "cycle failed"),
        },
    }
}

fn class_of(e: &CycleError) -> Option<ErrorClass> {
    match e {
        CycleError::Sync(s) => s.connector_error().map(|c| c.class()),
        _ => None,
    }
}

fn record(shared: &Shared, name: &str, r: &Result<CycleReport, CycleError>, local: &mut Local) {
    let now = shared.clock.now();
    let mut conns = shared.conns();
    let Some(c) = conns.get_mut(name) else { return };
    match r {
        Ok(rep) => {
            c.syncs_ok += 1;
            c.last_success = Some(now);
            c.last_error = None;
            c.reauth = rep.exec.needs_reconnect;
            let counts = &rep.exec.counts;
            local.done_since_summary += counts.of(ActionOutcome::Done);
            local.failed_since_summary += counts.of(ActionOutcome::Failed);
            for (kind, outcome, n) in counts.iter() {
                *c.actions
                    .entry((kind.as_str().to_string(), outcome.as_str().to_string()))
                    .or_insert(0) += n;
            }
        }
        Err(e) => {
            c.syncs_failed += 1;
            c.last_error = Some(e.to_string());
            // A store error among them has already marked the store in trouble
            // (`WatchedStore`), whichever phase it came from.
            c.reauth = class_of(e) == Some(ErrorClass::Reauth);
        }
    }
}

/// Recomputes the connection's status from the store off the async threads: it reads
/// every invoice of the connection.
async fn refresh_snapshot(shared: &Arc<Shared>, name: &str) {
    let (_, cfg) = shared.config();
    let Some(conn_cfg) = cfg.connection(name).cloned() else {
        return;
    };
    let s = shared.clone();
    let now = shared.clock.now();
    let r = tokio::task::spawn_blocking(move || {
        status::connection_status(&cfg, &conn_cfg, s.store.as_ref(), now)
    })
    .await;
    match r {
        Ok(Ok(snap)) => {
            if let Some(c) = shared.conns().get_mut(name) {
                c.snapshot = Some(snap);
            }
        }
        Ok(Err(e)) => {
            error!(connection = %name, error = %e, "cannot read the connection's status from the store");
        }
        Err(e) => error!(connection = %name, error = %e, "status computation failed"),
    }
}

/// The daily line per connection: what is open and overdue, what was done, and what
/// needs a person.
fn maybe_summary(shared: &Shared, name: &str, local: &mut Local) {
    let now = shared.clock.now();
    if local.next_summary.is_some_and(|t| now < t) {
        return;
    }
    local.next_summary = Some(now + SUMMARY_EVERY);
    let conns = shared.conns();
    let Some(c) = conns.get(name) else { return };
    let Some(s) = c.snapshot.as_ref() else { return };
    let needs_reconnect = c.needs_reconnect();
    let a = &s.attention;
    let human = needs_reconnect || !a.is_empty();
    let line = format!(
        "daily summary: {}; actions done {}, failed {}; needs a person: {}",
        s.ageing.summary(),
        local.done_since_summary,
        local.failed_since_summary,
        if human {
            let mut v = Vec::new();
            if needs_reconnect {
                v.push(format!("RECONNECT (`overdued connect {name}`)"));
            }
            if !a.escalated.is_empty() {
                v.push(format!(
                    "{} escalated ({})",
                    a.escalated.len(),
                    a.escalated.join(", ")
                ));
            }
            if !a.promises_due.is_empty() {
                v.push(format!(
                    "{} promise(s) past due ({})",
                    a.promises_due.len(),
                    a.promises_due.join(", ")
                ));
            }
            if a.failed_actions > 0 {
                v.push(format!(
                    "{} failed action(s) awaiting retry",
                    a.failed_actions
                ));
            }
            v.join(", ")
        } else {
            "nothing".to_string()
        }
    );
    if human {
        warn!(connection = %name, "{line}");
    } else {
        info!(connection = %name, "{line}");
    }
    local.done_since_summary = 0;
    local.failed_since_summary = 0;
}

/// When each connection's last cycle ended; wakes the digest task at each end.
#[derive(Default)]
pub struct CyclesEnded {
    ended: Mutex<BTreeMap<String, DateTime<Utc>>>,
    notify: Notify,
}

impl CyclesEnded {
    pub fn record(&self, connection: &str, at: DateTime<Utc>) {
        self.ended
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(connection.to_string(), at);
        self.notify.notify_one();
    }

    /// Whether every one of `connections` (and at least one) ended a cycle at or after
    /// `since`.
    fn all_since(&self, connections: &[String], since: DateTime<Utc>) -> bool {
        let ended = self.ended.lock().unwrap_or_else(|p| p.into_inner());
        !connections.is_empty()
            && connections
                .iter()
                .all(|c| ended.get(c).is_some_and(|t| *t >= since))
    }
}

/// The owner's daily digest as a task of its own: sent once a day, after every running
/// connection's first cycle past the digest hour has ended, so it reports the whole
/// day's work of all of them. The journal keeps it to one a day across restarts.
pub async fn digest_task(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let (_, cfg) = shared.config();
        if cycles_of_the_day_ended(&shared, &cfg) {
            // No cycle runs while the digest reads the day, so it never reports one
            // part-way; each cycle takes only its own lock, so waiting here cannot
            // deadlock.
            let locks: Vec<_> = shared
                .conns()
                .values()
                .map(|c| c.cycle_lock.clone())
                .collect();
            let guards = no_cycle_running(locks).await;
            send_digest(&cfg, shared.store.as_ref(), shared.clock.as_ref()).await;
            drop(guards);
        }
        let poll = cfg.daemon.poll_interval.0;
        drop(cfg);
        tokio::select! {
            _ = shared.cycles_ended.notify.notified() => {}
            _ = tokio::time::sleep(poll) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// Waits until no connection's cycle runs and holds them all off until the guards drop.
async fn no_cycle_running(
    locks: Vec<Arc<tokio::sync::Mutex<()>>>,
) -> Vec<tokio::sync::OwnedMutexGuard<()>> {
    let mut guards = Vec::with_capacity(locks.len());
    for l in locks {
        guards.push(l.lock_owned().await);
    }
    guards
}

/// Past today's digest hour, and every connection that can run (enabled, its connector
/// built) has ended a cycle since that hour. One that cannot start holds nothing up: the
/// digest is where the owner reads that it needs a person.
fn cycles_of_the_day_ended(shared: &Shared, cfg: &Config) -> bool {
    let Some(dc) = &cfg.channels.digest else {
        return false;
    };
    let tz = cfg.daemon.time_zone;
    let local = shared.clock.now().with_timezone(&tz);
    if local.hour() < dc.hour {
        return false;
    }
    let Some(since) = local
        .date_naive()
        .and_hms_opt(dc.hour, 0, 0)
        .and_then(|t| tz.from_local_datetime(&t).earliest())
        .map(|t| t.with_timezone(&Utc))
    else {
        return false;
    };
    let running: Vec<String> = shared
        .conns()
        .iter()
        .filter(|(_, c)| c.enabled && c.connector.is_some())
        .map(|(name, _)| name.clone())
        .collect();
    shared.cycles_ended.all_since(&running, since)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_digest_waits_for_a_cycle_in_progress_and_holds_off_the_next() {
        let a = Arc::new(tokio::sync::Mutex::new(()));
        let b = Arc::new(tokio::sync::Mutex::new(()));
        // Connection b is mid-cycle.
        let cycle = b.clone().lock_owned().await;
        let waiting = tokio::spawn(no_cycle_running(vec![a.clone(), b.clone()]));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "the digest ran part-way through b's cycle"
        );
        drop(cycle);
        let guards = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the digest goes once the cycle ended")
            .unwrap();
        // While it is written, no cycle starts.
        assert!(a.try_lock().is_err() && b.try_lock().is_err());
        drop(guards);
        assert!(a.try_lock().is_ok() && b.try_lock().is_ok());
    }

    #[test]
    fn the_digest_waits_for_every_running_connection() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        let ended = CyclesEnded::default();
        let both = vec!["qbo".to_string(), "xero".to_string()];
        let since = t("2026-03-18T08:00:00Z");
        assert!(!ended.all_since(&both, since));
        ended.record("qbo", t("2026-03-18T09:00:00Z"));
        assert!(!ended.all_since(&both, since), "xero has not cycled");
        ended.record("xero", t("2026-03-18T07:59:00Z"));
        assert!(
            !ended.all_since(&both, since),
            "xero's cycle was before the hour"
        );
        ended.record("xero", t("2026-03-18T09:01:00Z"));
        assert!(ended.all_since(&both, since));
        assert!(
            !ended.all_since(&[], since),
            "no connection ran: nothing to report"
        );
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let p = Duration::from_secs(900);
        assert_eq!(jittered(p, 0.0), Duration::from_secs(810));
        assert_eq!(jittered(p, 1.0), Duration::from_secs(990));
        assert_eq!(jittered(p, 0.5), p);
        assert_eq!(jittered(p, 7.0), Duration::from_secs(990));
    }
}
