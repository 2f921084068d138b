//! `overdued promise`, `pause`, `resume` and `history`: a person steering the engine and
//! looking back. They work on the store, or through the running daemon that holds it.

use std::path::Path;
use std::str::FromStr;

use rust_decimal::Decimal;

use crate::ops::{self, Op, OpError};
use crate::store::{SledStore, StoreError};

use super::common::{load_config, parse_date, Fail};
use super::exit;

pub fn promise(
    config: Option<&Path>,
    connection: &str,
    invoice: &str,
    until: &str,
    amount: Option<&str>,
) -> u8 {
    let op = || -> Result<Op, Fail> {
        let until = parse_date("--until", until)?;
        let amount = amount
            .map(|a| {
                Decimal::from_str(a.trim())
                    .ok()
                    .filter(|d| *d > Decimal::ZERO)
                    .ok_or_else(|| {
                        Fail(
                            exit::USAGE,
                            format!("--amount {a:?}: expected a positive amount such as 250.00"),
                        )
                    })
            })
            .transpose()?;
        Ok(Op::Promise {
            connection: connection.into(),
            invoice: invoice.into(),
            until,
            amount,
        })
    };
    run(config, op())
}

pub fn pause(
    config: Option<&Path>,
    connection: &str,
    id: &str,
    customer: bool,
    reason: &str,
) -> u8 {
    run(
        config,
        Ok(Op::Pause {
            connection: connection.into(),
            id: id.into(),
            customer,
            reason: reason.into(),
        }),
    )
}

pub fn resume(config: Option<&Path>, connection: &str, id: &str, customer: bool) -> u8 {
    run(
        config,
        Ok(Op::Resume {
            connection: connection.into(),
            id: id.into(),
            customer,
        }),
    )
}

pub fn history(config: Option<&Path>, connection: &str, invoice: &str) -> u8 {
    run(
        config,
        Ok(Op::History {
            connection: connection.into(),
            invoice: invoice.into(),
        }),
    )
}

pub(super) fn run(config: Option<&Path>, op: Result<Op, Fail>) -> u8 {
    run_at(config, op, None)
}

/// [`run`] as of `now` (RFC 3339) instead of the wall clock, for a simulated world: only
/// with `allow_clock_override = true`, and only on the store itself (a running daemon
/// keeps its own clock).
pub(super) fn run_at(config: Option<&Path>, op: Result<Op, Fail>, now: Option<&str>) -> u8 {
    let result = op.and_then(|op| {
        let c = load_config(config)?;
        let at = match now {
            None => chrono::Utc::now(),
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
                chrono::DateTime::parse_from_rfc3339(s.trim())
                    .map_err(|_| {
                        Fail(
                            exit::USAGE,
                            format!("--now {s:?}: expected an RFC 3339 instant such as 2026-11-23T10:00:00Z"),
                        )
                    })?
                    .with_timezone(&chrono::Utc)
            }
        };
        match SledStore::open(&c.daemon.state_dir) {
            Ok(store) => ops::apply(&op, &c, &store, at).map_err(|e| Fail(e.code, e.message)),
            Err(StoreError::Locked(lock)) if now.is_some() => Err(Fail(
                exit::USAGE,
                format!("--now is refused while the daemon runs ({lock}): it keeps its own clock"),
            )),
            Err(StoreError::Locked(lock)) => forward(&c.daemon.state_dir, &op)
                .map_err(|e| Fail(e.code, format!("{lock}; asking it failed: {}", e.message)))?,
            Err(e) => Err(Fail(exit::IOERR, e.to_string())),
        }
    });
    match result {
        Ok(text) => {
            print!("{text}");
            0
        }
        Err(e) => e.report(),
    }
}

/// Sends the operation to the daemon holding the store. The outer error is about
/// reaching the daemon; the inner result is the operation's own.
pub(super) fn forward(state_dir: &Path, op: &Op) -> Result<Result<String, Fail>, OpError> {
    super::admin::post_text(
        state_dir,
        "/admin/op",
        op,
        std::time::Duration::from_secs(30),
    )
    .map(|r| r.map_err(|e| Fail(e.code, e.message)))
}
