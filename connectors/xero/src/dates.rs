//! Xero's dates: `/Date(1546128000000+0000)/` (milliseconds since the epoch, in UTC, with
//! an optional zone offset that only says where the author was) and plain ISO strings.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};

/// Why a date field could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unreadable Xero date {0:?}")]
pub struct DateError(pub String);

/// Parses `/Date(ms)/`, `/Date(ms+hhmm)/`, `/Date(ms-hhmm)/` or an ISO 8601 string (with
/// or without a zone; without one it is taken as UTC) into the instant it names.
///
/// The milliseconds already are UTC: the offset, when present, does not move the instant
/// (the .NET JSON convention Xero follows), so it is validated and then ignored.
pub fn parse_instant(s: &str) -> Result<DateTime<Utc>, DateError> {
    let t = s.trim();
    let err = || DateError(s.to_string());
    if let Some(inner) = t.strip_prefix("/Date(").and_then(|r| r.strip_suffix(")/")) {
        // A leading '-' is a pre-1970 instant, not an offset.
        let (sign, digits_from) = if let Some(rest) = inner.strip_prefix('-') {
            (-1i64, rest)
        } else {
            (1, inner)
        };
        let end = digits_from
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(digits_from.len());
        let (ms_text, offset) = digits_from.split_at(end);
        if ms_text.is_empty() {
            return Err(err());
        }
        if !offset.is_empty() {
            // The first character may be any (multi-byte) character: strip, never split.
            let o_digits = offset.strip_prefix(['+', '-']).unwrap_or("");
            let valid = !o_digits.is_empty()
                && o_digits.len() == 4
                && o_digits.bytes().all(|b| b.is_ascii_digit());
            let hours: u32 = o_digits.get(..2).and_then(|h| h.parse().ok()).unwrap_or(99);
            let minutes: u32 = o_digits.get(2..).and_then(|m| m.parse().ok()).unwrap_or(99);
            if !valid || hours > 14 || minutes > 59 {
                return Err(err());
            }
        }
        let ms: i64 = ms_text.parse().map_err(|_| err())?;
        return Utc.timestamp_millis_opt(sign * ms).single().ok_or_else(err);
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Ok(d.to_utc());
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(n) = NaiveDateTime::parse_from_str(t, fmt) {
            return Ok(n.and_utc());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).ok_or_else(err)?.and_utc());
    }
    Err(err())
}

/// A calendar date (`Date`, `DueDate`): Xero stores it as midnight UTC, so the date is
/// the UTC date of the instant, never shifted into any other zone. A `DateString`-style
/// `2018-12-30T00:00:00` gives its date part as written.
pub fn parse_calendar_date(s: &str) -> Result<NaiveDate, DateError> {
    let t = s.trim();
    if !t.starts_with("/Date(") {
        // An ISO string's written date is the calendar date, whatever zone follows it.
        if let Some(d) = t
            .get(..10)
            .and_then(|p| NaiveDate::parse_from_str(p, "%Y-%m-%d").ok())
        {
            return Ok(d);
        }
    }
    parse_instant(t).map(|i| i.date_naive())
}

/// The `YYYY-MM-DD` form request bodies use.
pub fn format_date(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// An `If-Modified-Since` value: Xero compares at whole seconds, in UTC. The `Z` is
/// what Xero's own SDKs send (the OpenAPI types it as date-time); without it a server
/// is free to read the time as its local time and shift the bound by hours.
pub fn if_modified_since(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn ms_dates_are_exact() {
        assert_eq!(
            parse_instant("/Date(1546128000000+0000)/").unwrap(),
            utc("2018-12-30T00:00:00Z")
        );
        assert_eq!(
            parse_instant("/Date(1541176290160+0000)/").unwrap(),
            utc("2018-11-02T16:31:30.160Z")
        );
        // No offset at all (the envelope's DateTimeUTC).
        assert_eq!(
            parse_instant("/Date(1552326816230)/").unwrap(),
            utc("2019-03-11T17:53:36.230Z")
        );
        assert_eq!(
            parse_instant("/Date(0)/").unwrap(),
            utc("1970-01-01T00:00:00Z")
        );
        assert_eq!(
            parse_instant("/Date(-86400000+0000)/").unwrap(),
            utc("1969-12-31T00:00:00Z")
        );
    }

    #[test]
    fn an_offset_never_moves_the_instant_or_the_date() {
        let plain = parse_instant("/Date(1546128000000)/").unwrap();
        assert_eq!(parse_instant("/Date(1546128000000+1300)/").unwrap(), plain);
        assert_eq!(parse_instant("/Date(1546128000000-0500)/").unwrap(), plain);
        for s in [
            "/Date(1546128000000+1300)/",
            "/Date(1546128000000-0500)/",
            "/Date(1546128000000+0000)/",
            "/Date(1546128000000)/",
        ] {
            assert_eq!(
                parse_calendar_date(s).unwrap(),
                NaiveDate::from_ymd_opt(2018, 12, 30).unwrap(),
                "{s}"
            );
        }
        // 23:59:59.999 UTC is still that UTC day, even "in" +1300 where it is tomorrow.
        assert_eq!(
            parse_calendar_date("/Date(1546214399999+1300)/").unwrap(),
            NaiveDate::from_ymd_opt(2018, 12, 30).unwrap()
        );
    }

    #[test]
    fn iso_strings_and_rejections() {
        assert_eq!(
            parse_calendar_date("2018-12-30T00:00:00").unwrap(),
            NaiveDate::from_ymd_opt(2018, 12, 30).unwrap()
        );
        assert_eq!(
            parse_calendar_date("2018-12-30").unwrap(),
            NaiveDate::from_ymd_opt(2018, 12, 30).unwrap()
        );
        assert_eq!(
            parse_instant("2018-11-02T16:31:30Z").unwrap(),
            utc("2018-11-02T16:31:30Z")
        );
        assert_eq!(
            parse_instant("2018-11-02T16:31:30").unwrap(),
            utc("2018-11-02T16:31:30Z")
        );
        assert_eq!(
            parse_instant("2018-11-02T18:31:30+02:00").unwrap(),
            utc("2018-11-02T16:31:30Z")
        );
        for bad in [
            "",
            "/Date()/",
            "/Date(abc)/",
            "/Date(1546128000000+13)/",
            "/Date(1546128000000+2500)/",
            "/Date(1546128000000",
            "Date(1)",
            "/Date(1546128000000+0000x)/",
            "30/12/2018",
        ] {
            assert!(parse_instant(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn request_formats() {
        assert_eq!(
            format_date(NaiveDate::from_ymd_opt(2026, 3, 7).unwrap()),
            "2026-03-07"
        );
        assert_eq!(
            if_modified_since(utc("2026-01-05T09:00:01.999Z")),
            "2026-01-05T09:00:01Z"
        );
        // The header value round-trips as the same instant, designator included.
        assert_eq!(
            parse_instant(&if_modified_since(utc("2018-11-02T16:37:27Z"))).unwrap(),
            utc("2018-11-02T16:37:27Z")
        );
    }
}
