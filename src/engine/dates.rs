//! Dates and day offsets as they are written in the configuration.

use std::fmt;

use chrono::NaiveDate;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A calendar date as written in the config, kept as text until `validate()` parses it
/// so that a bad date is reported with its field path.
///
/// Accepts both a TOML date literal (`2026-12-25`) and a string (`"2026-12-25"`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConfigDate(pub String);

impl ConfigDate {
    pub fn new(s: impl Into<String>) -> Self {
        ConfigDate(s.into())
    }

    pub fn parse(&self) -> Result<NaiveDate, String> {
        NaiveDate::parse_from_str(self.0.trim(), "%Y-%m-%d").map_err(|_| {
            format!(
                "{:?} is not a date: expected YYYY-MM-DD, e.g. 2026-12-25",
                self.0
            )
        })
    }
}

impl From<NaiveDate> for ConfigDate {
    fn from(d: NaiveDate) -> Self {
        ConfigDate(d.format("%Y-%m-%d").to_string())
    }
}

impl Serialize for ConfigDate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ConfigDate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ConfigDate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a date such as 2026-12-25")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ConfigDate, E> {
                Ok(ConfigDate(v.to_string()))
            }
            // The toml crate hands date literals over as a one-entry map.
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ConfigDate, A::Error> {
                let dt =
                    toml::value::Datetime::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(ConfigDate(dt.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses a step offset relative to the due date: `"-3d"`, `"0d"`, `"+7d"` (days).
pub fn parse_offset(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let bad = || {
        format!("{s:?} is not an offset: expected days relative to the due date such as \"-3d\", \"0d\" or \"+7d\"")
    };
    let body = t.strip_suffix('d').ok_or_else(bad)?;
    let (sign, digits) = match body.as_bytes().first() {
        Some(b'+') => (1, &body[1..]),
        Some(b'-') => (-1, &body[1..]),
        _ => (1, body),
    };
    if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: i64 = digits.parse().map_err(|_| bad())?;
    if n > 3650 {
        return Err(format!("{s:?} is more than ten years from the due date"));
    }
    Ok(sign * n)
}

/// The canonical spelling of an offset, used as the default step id: `-3d`, `0d`, `+7d`.
pub fn format_offset(days: i64) -> String {
    match days {
        0 => "0d".to_string(),
        d if d > 0 => format!("+{d}d"),
        d => format!("{d}d"),
    }
}

/// "31 October 2026": unambiguous in every locale the messages reach.
pub fn long_date(d: NaiveDate) -> String {
    d.format("%-d %B %Y").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_parse_and_round_trip() {
        assert_eq!(parse_offset("-3d"), Ok(-3));
        assert_eq!(parse_offset("0d"), Ok(0));
        assert_eq!(parse_offset("+7d"), Ok(7));
        assert_eq!(parse_offset("14d"), Ok(14));
        for bad in ["", "d", "+d", "7", "7w", "+-3d", "3.5d", "99999d", " 1 d"] {
            assert!(parse_offset(bad).is_err(), "{bad:?} accepted");
        }
        for d in [-3, 0, 7, 90] {
            assert_eq!(parse_offset(&format_offset(d)), Ok(d));
        }
        assert_eq!(format_offset(-3), "-3d");
        assert_eq!(format_offset(7), "+7d");
    }

    #[test]
    fn dates_accept_toml_literals_and_strings() {
        #[derive(Deserialize)]
        struct T {
            a: ConfigDate,
            b: ConfigDate,
            c: Vec<ConfigDate>,
        }
        let t: T =
            toml::from_str("a = 2026-12-25\nb = \"2026-12-26\"\nc = [2027-01-01, \"2027-01-02\"]")
                .unwrap();
        assert_eq!(
            t.a.parse(),
            Ok(NaiveDate::from_ymd_opt(2026, 12, 25).unwrap())
        );
        assert_eq!(
            t.b.parse(),
            Ok(NaiveDate::from_ymd_opt(2026, 12, 26).unwrap())
        );
        assert_eq!(t.c.len(), 2);
        assert!(ConfigDate::new("25/12/2026")
            .parse()
            .unwrap_err()
            .contains("YYYY-MM-DD"));
        assert_eq!(
            long_date(NaiveDate::from_ymd_opt(2026, 10, 1).unwrap()),
            "1 October 2026"
        );
    }
}
