//! When actions may go out: a cron expression evaluated on the wall clock of the
//! configured time zone, minus holidays.
//!
//! # Syntax
//!
//! Five fields, `minute hour day-of-month month day-of-week`, e.g. `"* 9-16 * * Mon-Fri"`
//! (every minute from 09:00 to 16:59, Monday to Friday). Lists (`Mon,Wed`), ranges
//! (`9-16`, `Mon-Fri`) and steps (`*/15`) work as in classic cron. Days of the week must
//! be written as names (`Sun`..`Sat`): numbers are rejected, because cron dialects
//! disagree whether `0`, `1` or `7` is Sunday and a silent off-by-one would send on the
//! wrong day. Unlike classic cron, a day-of-month and a day-of-week restriction must
//! *both* match. Internally the expression becomes the 7-field form of the `cron` crate
//! (`0 <minute> <hour> <dom> <month> <dow> *`).
//!
//! # Daylight saving time
//!
//! Wall-clock minutes that do not exist on a spring-forward day (e.g. 01:00-01:59 in
//! London) are moved forward by the size of the gap, as classic cron does, so a window
//! lying in the gap still opens that day: never a lost day. Minutes that occur twice on
//! a fall-back day are open twice; that cannot cause a second send because the plan
//! depends on the local date only and every action carries a deterministic key.

use std::collections::BTreeSet;
use std::str::FromStr;

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, Offset, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::engine::dates::ConfigDate;

/// The `send_window` table of a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SendWindowConfig {
    /// Five-field cron expression with day names; see the module documentation.
    pub cron: String,
    /// Local dates on which nothing goes out.
    pub holidays: Vec<ConfigDate>,
}

/// Business hours on weekdays.
pub const DEFAULT_CRON: &str = "* 9-16 * * Mon-Fri";

impl Default for SendWindowConfig {
    fn default() -> Self {
        SendWindowConfig {
            cron: DEFAULT_CRON.to_string(),
            holidays: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("expected 5 fields (minute hour day-of-month month day-of-week), e.g. \"* 9-16 * * Mon-Fri\", found {0}")]
    FieldCount(usize),
    #[error("day-of-week {0:?} uses numbers; write day names such as Mon-Fri or Sat,Sun (cron dialects disagree which number is Sunday)")]
    NumericDayOfWeek(String),
    #[error("invalid cron expression {expr:?}: {message}")]
    Invalid { expr: String, message: String },
    #[error("cron expression {0:?} never matches within a year")]
    NeverOpens(String),
}

/// Whether the window is open at an instant, and if not, why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "date")]
pub enum WindowState {
    Open,
    Holiday(NaiveDate),
    OutsideHours,
}

/// A compiled send window.
#[derive(Debug, Clone)]
pub struct SendWindow {
    expr: String,
    schedule: cron::Schedule,
    holidays: BTreeSet<NaiveDate>,
}

/// Converts the user-facing 5-field syntax into the `cron` crate's 7-field syntax.
pub fn to_cron_crate_syntax(expr: &str) -> Result<String, WindowError> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(WindowError::FieldCount(fields.len()));
    }
    let dow = fields[4];
    if dow.bytes().any(|b| b.is_ascii_digit()) {
        return Err(WindowError::NumericDayOfWeek(dow.to_string()));
    }
    Ok(format!(
        "0 {} {} {} {} {} *",
        fields[0], fields[1], fields[2], fields[3], dow
    ))
}

impl SendWindow {
    pub fn parse(
        expr: &str,
        holidays: impl IntoIterator<Item = NaiveDate>,
    ) -> Result<Self, WindowError> {
        let converted = to_cron_crate_syntax(expr)?;
        let schedule = cron::Schedule::from_str(&converted).map_err(|e| WindowError::Invalid {
            expr: expr.to_string(),
            message: e.to_string(),
        })?;
        let w = SendWindow {
            expr: expr.to_string(),
            schedule,
            holidays: holidays.into_iter().collect(),
        };
        // A fixed reference keeps validation deterministic; a window that never opens in
        // a year (e.g. "* * 30 Feb *") would silently stop all chasing.
        let reference = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or_default();
        if w.next_open(reference, chrono_tz::UTC).is_none() {
            return Err(WindowError::NeverOpens(expr.to_string()));
        }
        Ok(w)
    }

    /// Open at every minute of every day.
    pub fn always() -> Self {
        SendWindow::parse("* * * * *", [])
            .unwrap_or_else(|e| unreachable!("constant expression: {e}"))
    }

    pub fn expression(&self) -> &str {
        &self.expr
    }

    pub fn is_holiday(&self, date: NaiveDate) -> bool {
        self.holidays.contains(&date)
    }

    pub fn is_open(&self, at: DateTime<Utc>, tz: Tz) -> bool {
        self.state(at, tz) == WindowState::Open
    }

    pub fn state(&self, at: DateTime<Utc>, tz: Tz) -> WindowState {
        let local = at.with_timezone(&tz);
        let date = local.date_naive();
        if self.is_holiday(date) {
            return WindowState::Holiday(date);
        }
        if self.matches_wall(local.naive_local()) {
            return WindowState::Open;
        }
        // Spring forward: the wall time under the offset in force before the change is
        // a time that did not exist; if the window covers it, it opens now instead.
        let before = tz
            .offset_from_utc_datetime(&(at - Duration::hours(3)).naive_utc())
            .fix();
        let shifted = at.naive_utc() + Duration::seconds(i64::from(before.local_minus_utc()));
        if shifted != local.naive_local()
            && shifted.date() == date
            && tz.from_local_datetime(&shifted).earliest().is_none()
            && self.matches_wall(shifted)
        {
            return WindowState::Open;
        }
        WindowState::OutsideHours
    }

    fn matches_wall(&self, wall: NaiveDateTime) -> bool {
        let minute = wall
            .with_second(0)
            .and_then(|w| w.with_nanosecond(0))
            .unwrap_or(wall);
        self.schedule.includes(Utc.from_utc_datetime(&minute))
    }

    /// The first minute at or after `after` when the window is open, within about a year.
    pub fn next_open(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let mut t = after.with_second(0).and_then(|t| t.with_nanosecond(0))?;
        if t < after {
            t += Duration::minutes(1);
        }
        let end = after + Duration::days(400);
        while t < end {
            match self.state(t, tz) {
                WindowState::Open => return Some(t),
                WindowState::Holiday(_) => {
                    // Jump to the next local midnight (or a little past, if it does not exist).
                    let local = t.with_timezone(&tz);
                    let next_day = local.date_naive().succ_opt()?.and_hms_opt(0, 0, 0)?;
                    t = tz
                        .from_local_datetime(&next_day)
                        .earliest()
                        .map(|d| d.with_timezone(&Utc))
                        .unwrap_or(t + Duration::hours(1));
                }
                WindowState::OutsideHours => t += Duration::minutes(1),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::{America::New_York, Europe::London};

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).single().unwrap()
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    /// Open minutes per local date over [from, to), scanning every UTC minute.
    fn open_minutes(
        w: &SendWindow,
        tz: Tz,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<(NaiveDate, u32)> {
        let mut out: Vec<(NaiveDate, u32)> = Vec::new();
        let mut t = from;
        while t < to {
            if w.is_open(t, tz) {
                let d = t.with_timezone(&tz).date_naive();
                match out.last_mut() {
                    Some((ld, n)) if *ld == d => *n += 1,
                    _ => out.push((d, 1)),
                }
            }
            t += Duration::minutes(1);
        }
        out
    }

    #[test]
    fn five_fields_with_day_names_only() {
        assert_eq!(
            to_cron_crate_syntax("* 9-16 * * Mon-Fri").unwrap(),
            "0 * 9-16 * * Mon-Fri *"
        );
        assert_eq!(
            to_cron_crate_syntax("0 10 * * 1-5"),
            Err(WindowError::NumericDayOfWeek("1-5".into()))
        );
        assert_eq!(
            to_cron_crate_syntax("0 0 10 * * Mon-Fri"),
            Err(WindowError::FieldCount(6))
        );
        assert!(SendWindow::parse("* 9-16 * * Mon-Fri", []).is_ok());
        assert!(SendWindow::parse("*/15 9-16 * Jan-Jun Mon,Wed,Fri", []).is_ok());
        assert!(matches!(
            SendWindow::parse("* 25 * * *", []),
            Err(WindowError::Invalid { .. })
        ));
        assert!(matches!(
            SendWindow::parse("* * * * Funday", []),
            Err(WindowError::Invalid { .. })
        ));
        assert!(matches!(
            SendWindow::parse("* * 30 Feb *", []),
            Err(WindowError::NeverOpens(_))
        ));
        let e = to_cron_crate_syntax("* * * * 0").unwrap_err().to_string();
        assert!(e.contains("day names"), "{e}");
    }

    #[test]
    fn business_hours_in_the_local_zone_and_holidays() {
        let w = SendWindow::parse("* 9-16 * * Mon-Fri", [date(2026, 12, 25)]).unwrap();
        // Thursday 2026-12-24 09:30 in New York is 14:30 UTC.
        assert!(w.is_open(utc(2026, 12, 24, 14, 30), New_York));
        assert!(!w.is_open(utc(2026, 12, 24, 13, 59), New_York));
        assert_eq!(
            w.state(utc(2026, 12, 24, 22, 0), New_York),
            WindowState::OutsideHours
        );
        assert_eq!(
            w.state(utc(2026, 12, 25, 15, 0), New_York),
            WindowState::Holiday(date(2026, 12, 25))
        );
        // Saturday.
        assert!(!w.is_open(utc(2026, 12, 26, 15, 0), New_York));
        // The next opening after Christmas Eve's close skips the holiday and the weekend.
        assert_eq!(
            w.next_open(utc(2026, 12, 24, 22, 0), New_York),
            Some(utc(2026, 12, 28, 14, 0))
        );
    }

    #[test]
    fn london_spring_forward_keeps_the_day_and_the_hours() {
        // 2026-03-29 01:00 GMT becomes 02:00 BST.
        let business = SendWindow::parse("* 9-16 * * *", []).unwrap();
        let days = open_minutes(
            &business,
            London,
            utc(2026, 3, 28, 0, 0),
            utc(2026, 3, 31, 0, 0),
        );
        assert_eq!(
            days,
            vec![
                (date(2026, 3, 28), 480),
                (date(2026, 3, 29), 480),
                (date(2026, 3, 30), 480)
            ]
        );
        assert_eq!(
            business.next_open(utc(2026, 3, 29, 0, 0), London),
            Some(utc(2026, 3, 29, 8, 0))
        );

        // A window inside the missing hour opens right after the change instead.
        let in_gap = SendWindow::parse("* 1 * * *", []).unwrap();
        let days = open_minutes(
            &in_gap,
            London,
            utc(2026, 3, 28, 0, 0),
            utc(2026, 3, 31, 0, 0),
        );
        assert_eq!(
            days,
            vec![
                (date(2026, 3, 28), 60),
                (date(2026, 3, 29), 60),
                (date(2026, 3, 30), 60)
            ]
        );
        assert!(in_gap.is_open(utc(2026, 3, 29, 1, 0), London)); // 02:00 BST
        assert!(!in_gap.is_open(utc(2026, 3, 29, 2, 0), London)); // 03:00 BST
    }

    #[test]
    fn london_fall_back_repeats_the_hour_but_loses_no_day() {
        // 2026-10-25 02:00 BST becomes 01:00 GMT: 01:00-01:59 happens twice.
        let w = SendWindow::parse("* 1 * * *", []).unwrap();
        let days = open_minutes(&w, London, utc(2026, 10, 24, 0, 0), utc(2026, 10, 27, 0, 0));
        assert_eq!(
            days,
            vec![
                (date(2026, 10, 24), 60),
                (date(2026, 10, 25), 120),
                (date(2026, 10, 26), 60)
            ]
        );
        let business = SendWindow::parse("* 9-16 * * *", []).unwrap();
        let days = open_minutes(
            &business,
            London,
            utc(2026, 10, 24, 0, 0),
            utc(2026, 10, 27, 0, 0),
        );
        assert_eq!(
            days,
            vec![
                (date(2026, 10, 24), 480),
                (date(2026, 10, 25), 480),
                (date(2026, 10, 26), 480)
            ]
        );
    }

    #[test]
    fn new_york_spring_forward_and_fall_back() {
        // 2026-03-08 02:00 EST becomes 03:00 EDT; 2026-11-01 02:00 EDT becomes 01:00 EST.
        let gap = SendWindow::parse("*/30 2 * * *", []).unwrap();
        let days = open_minutes(
            &gap,
            New_York,
            utc(2026, 3, 7, 5, 0),
            utc(2026, 3, 10, 5, 0),
        );
        assert_eq!(
            days,
            vec![
                (date(2026, 3, 7), 2),
                (date(2026, 3, 8), 2),
                (date(2026, 3, 9), 2)
            ]
        );
        assert!(gap.is_open(utc(2026, 3, 8, 7, 0), New_York)); // 03:00 EDT stands in for 02:00
        assert!(gap.is_open(utc(2026, 3, 8, 7, 30), New_York)); // 03:30 EDT stands in for 02:30

        let repeated = SendWindow::parse("0 1 * * *", []).unwrap();
        let days = open_minutes(
            &repeated,
            New_York,
            utc(2026, 10, 31, 5, 0),
            utc(2026, 11, 3, 5, 0),
        );
        assert_eq!(
            days,
            vec![
                (date(2026, 10, 31), 1),
                (date(2026, 11, 1), 2),
                (date(2026, 11, 2), 1)
            ]
        );

        let business = SendWindow::parse("* 9-16 * * Mon-Fri", []).unwrap();
        // Monday after each change opens at 09:00 local.
        assert_eq!(
            business.next_open(utc(2026, 3, 8, 0, 0), New_York),
            Some(utc(2026, 3, 9, 13, 0))
        );
        assert_eq!(
            business.next_open(utc(2026, 11, 1, 0, 0), New_York),
            Some(utc(2026, 11, 2, 14, 0))
        );
    }
}
