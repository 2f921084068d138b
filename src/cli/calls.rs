//! `overdued calls`, `called` and `export`: the owner's telephone work. Like `history`,
//! they run on the store, or through the running daemon that holds it.

use std::path::{Path, PathBuf};

use crate::calls::export::Export;
use crate::calls::outcome::CalledRequest;
use crate::ops::{self, Op};
use crate::store::{SledStore, StoreError};

use super::common::{load_config, parse_date, Fail};
use super::exit;

/// The outcome flags of `called`, as clap parsed them.
pub struct CalledArgs<'a> {
    pub outcome: super::Outcome,
    pub until: Option<&'a str>,
    pub amount: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub on: Option<&'a str>,
    pub invoice: Option<&'a str>,
}

pub fn calls(config: Option<&Path>, connection: Option<&str>, json: bool) -> u8 {
    print_answer(
        config,
        Ok(Op::Calls {
            connection: connection.map(String::from),
            json,
        }),
    )
}

pub fn called(config: Option<&Path>, connection: &str, customer: &str, a: CalledArgs<'_>) -> u8 {
    use super::Outcome as O;
    let op = || -> Result<Op, Fail> {
        let needs = |flag: &str, v: Option<&str>| {
            v.map(String::from).ok_or_else(|| {
                Fail(
                    exit::USAGE,
                    format!("--outcome {} needs {flag}", a.outcome.name()),
                )
            })
        };
        let refuse = |flag: &str, given: bool| {
            if given {
                Err(Fail(
                    exit::USAGE,
                    format!("{flag} does not go with --outcome {}", a.outcome.name()),
                ))
            } else {
                Ok(())
            }
        };
        if !matches!(a.outcome, O::Promise) {
            refuse("--until", a.until.is_some())?;
            refuse("--amount", a.amount.is_some())?;
        }
        if !matches!(a.outcome, O::Dispute) {
            refuse("--reason", a.reason.is_some())?;
        }
        if !matches!(a.outcome, O::Paid) {
            refuse("--on", a.on.is_some())?;
        }
        let outcome = match a.outcome {
            O::Promise => CalledRequest::Promise {
                until: parse_date("--until", &needs("--until DATE", a.until)?)?,
                amount: a.amount.map(String::from),
            },
            O::Dispute => CalledRequest::Dispute {
                reason: needs("--reason TEXT", a.reason)?,
            },
            O::NoAnswer => CalledRequest::NoAnswer,
            O::Paid => CalledRequest::Paid {
                on: a.on.map(|d| parse_date("--on", d)).transpose()?,
            },
            O::Handled => CalledRequest::Handled,
            O::Collections => CalledRequest::Collections,
        };
        Ok(Op::Called {
            connection: connection.into(),
            customer: customer.into(),
            invoice: a.invoice.map(String::from),
            outcome,
        })
    };
    print_answer(config, op())
}

pub fn export(
    config: Option<&Path>,
    connection: &str,
    target: &str,
    customer: bool,
    out: Option<&Path>,
) -> u8 {
    let op = Op::Export {
        connection: connection.into(),
        target: target.into(),
        customer,
    };
    let result = answer(config, Ok(op)).and_then(|text| {
        let export: Export = serde_json::from_str(&text)
            .map_err(|e| Fail(exit::SOFTWARE, format!("unexpected export answer: {e}")))?;
        let dir = out.map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Fail(exit::IOERR, format!("--out {}: {e}", dir.display())))?;
        let mut written = String::new();
        for f in &export.files {
            let path = dir.join(&f.name);
            std::fs::write(&path, &f.content)
                .map_err(|e| Fail(exit::IOERR, format!("{}: {e}", path.display())))?;
            written.push_str(&format!("wrote {}\n", path.display()));
        }
        Ok(written)
    });
    match result {
        Ok(text) => {
            print!("{text}");
            0
        }
        Err(e) => e.report(),
    }
}

fn print_answer(config: Option<&Path>, op: Result<Op, Fail>) -> u8 {
    match answer(config, op) {
        Ok(text) => {
            print!("{text}");
            0
        }
        Err(e) => e.report(),
    }
}

/// The operation's answer, from the store or from the daemon that holds it.
fn answer(config: Option<&Path>, op: Result<Op, Fail>) -> Result<String, Fail> {
    let op = op?;
    let c = load_config(config)?;
    match SledStore::open(&c.daemon.state_dir) {
        Ok(store) => {
            ops::apply(&op, &c, &store, chrono::Utc::now()).map_err(|e| Fail(e.code, e.message))
        }
        Err(StoreError::Locked(lock)) => super::holds::forward(&c.daemon.state_dir, &op)
            .map_err(|e| Fail(e.code, format!("{lock}; asking it failed: {}", e.message)))?,
        Err(e) => Err(Fail(exit::IOERR, e.to_string())),
    }
}
