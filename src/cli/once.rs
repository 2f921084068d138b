//! `overdued run --once [--now RFC3339]`: one full cycle (sync, plan, act), then exit.
//! Exit 0 when the cycle ran, even if single actions failed (they are journalled,
//! retried next cycle and reported); non-zero only when the cycle itself could not run.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use overdued_connector::{Clock, ManualClock, SystemClock};

use crate::cycle::run_all_once;
use crate::events::ActionOutcome;

use super::common::{load_config, open_store, runtime, Fail};
use super::exit;

pub fn run(config: Option<&Path>, now: Option<&str>, log: super::LogFormat) -> u8 {
    super::common::init_logging(log);
    match once(config, now) {
        Ok(code) => code,
        Err(e) => e.report(),
    }
}

fn once(config: Option<&Path>, now: Option<&str>) -> Result<u8, Fail> {
    let c = load_config(config)?;
    let clock: Arc<dyn Clock> = match now {
        None => Arc::new(SystemClock),
        Some(s) => {
            if !c.daemon.allow_clock_override {
                return Err(Fail(
                    exit::USAGE,
                    format!(
                        "--now is refused: {} does not set allow_clock_override = true in [daemon]",
                        c.path.display()
                    ),
                ));
            }
            let t = DateTime::parse_from_rfc3339(s).map_err(|_| {
                Fail(
                    exit::USAGE,
                    format!(
                        "--now {s:?}: expected an RFC 3339 instant such as 2026-11-23T10:00:00Z"
                    ),
                )
            })?;
            Arc::new(ManualClock::new(t.with_timezone(&Utc)))
        }
    };
    let store = open_store(&c)?;
    let rt = runtime()?;
    let results = rt.block_on(run_all_once(&c, store.clone(), store.clone(), clock));
    let _ = crate::store::Store::flush(store.as_ref());
    let mut ran = 0;
    for (name, r) in &results {
        match r {
            Ok(rep) => {
                ran += 1;
                let e = &rep.exec;
                println!(
                    "{name}: synced {} invoices ({} changed); planned {} actions, {} done, {} already done, {} dropped, {} failed{}",
                    rep.sync.invoices_read,
                    rep.sync.changed,
                    rep.plan.actions.len(),
                    e.counts.of(ActionOutcome::Done),
                    e.counts.of(ActionOutcome::AlreadyDone),
                    e.counts.of(ActionOutcome::Skipped),
                    e.counts.of(ActionOutcome::Failed),
                    if rep.dry_run { " (dry run: nothing sent)" } else { "" }
                );
            }
            Err(e) => eprintln!("{name}: cycle failed: {e}"),
        }
    }
    Ok(if ran == 0 && !results.is_empty() {
        exit::UNAVAILABLE
    } else {
        0
    })
}
