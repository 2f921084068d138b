//! `overdued arrange`, `arrangements` and `cancel`: payment plans, on the store or
//! through the running daemon, like `promise`.

use std::path::Path;

use crate::arrangements::ops::PlanSpec;
use crate::ops::Op;

use super::common::{parse_date, Fail};
use super::exit;
use super::holds::{run, run_at};

/// The schedule options as typed.
pub struct ScheduleArgs<'a> {
    pub instalments: Option<&'a str>,
    pub every: Option<&'a str>,
    pub first: Option<&'a str>,
    pub schedule: Option<&'a str>,
    pub invoices: Option<&'a str>,
}

fn count(flag: &str, s: &str) -> Result<u32, Fail> {
    s.trim()
        .parse::<u32>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            Fail(
                exit::USAGE,
                format!("{flag} {s:?}: expected a whole number of at least 1"),
            )
        })
}

fn spec(a: &ScheduleArgs<'_>) -> Result<PlanSpec, Fail> {
    let usage = |m: &str| Err(Fail(exit::USAGE, m.to_string()));
    match (a.schedule, a.instalments, a.every, a.first) {
        (Some(s), None, None, None) => {
            if s.trim().is_empty() {
                return usage("--schedule: empty; expected DATE:AMOUNT,DATE:AMOUNT,...");
            }
            Ok(PlanSpec::Listed {
                schedule: s.to_string(),
            })
        }
        (Some(_), ..) => usage(
            "--schedule gives dates and amounts itself: leave out --instalments, --every and --first",
        ),
        (None, Some(n), every, Some(first)) => {
            let instalments = count("--instalments", n)?;
            let every = match every {
                Some(e) => count("--every", e)?,
                None if instalments == 1 => 0,
                None => return usage("--every: how many days between instalments is missing"),
            };
            Ok(PlanSpec::Even {
                instalments,
                every,
                first: parse_date("--first", first)?,
            })
        }
        (None, None, ..) => usage(
            "--instalments: missing; give --instalments N --every DAYS --first DATE, or --schedule DATE:AMOUNT,...",
        ),
        (None, Some(_), _, None) => usage("--first: the first instalment's date is missing"),
    }
}

pub fn arrange(
    config: Option<&Path>,
    connection: &str,
    target: &str,
    a: ScheduleArgs<'_>,
    now: Option<&str>,
) -> u8 {
    let op = spec(&a).map(|schedule| Op::Arrange {
        connection: connection.into(),
        target: target.into(),
        invoices: a
            .invoices
            .map(|l| {
                l.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default(),
        schedule,
    });
    let op = match (op, a.invoices) {
        (Ok(Op::Arrange { invoices, .. }), Some(raw)) if invoices.is_empty() => Err(Fail(
            exit::USAGE,
            format!("--invoices {raw:?}: expected invoice numbers or ids, A,B,..."),
        )),
        (op, _) => op,
    };
    run_at(config, op, now)
}

pub fn list(config: Option<&Path>, connection: Option<&str>, json: bool) -> u8 {
    run(
        config,
        Ok(Op::Arrangements {
            connection: connection.map(String::from),
            json,
        }),
    )
}

pub fn cancel(config: Option<&Path>, connection: &str, plan: &str, now: Option<&str>) -> u8 {
    run_at(
        config,
        Ok(Op::CancelArrangement {
            connection: connection.into(),
            plan: plan.into(),
        }),
        now,
    )
}
