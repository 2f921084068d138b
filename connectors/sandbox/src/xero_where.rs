//! Xero's `where` filter: comparisons (==, !=, <, <=, >, >=) joined by AND / OR (or && / ||),
//! parentheses, NOT, string/number/bool/null literals, DateTime(y,m,d[,h,m,s]),
//! Guid("..."), and the methods Contains / StartsWith / EndsWith on string fields.

use std::cmp::Ordering;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;

#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    S(String),
    N(Decimal),
    T(DateTime<Utc>),
    B(bool),
    Null,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cmp(String, String, Val),
    Method(String, String, String),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Id(String),
    Str(String),
    Num(String),
    Op(String),
    LP,
    RP,
    Comma,
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let c: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < c.len() {
        let ch = c[i];
        match ch {
            _ if ch.is_whitespace() => i += 1,
            '(' => {
                out.push(Tok::LP);
                i += 1
            }
            ')' => {
                out.push(Tok::RP);
                i += 1
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1
            }
            '"' => {
                let mut v = String::new();
                i += 1;
                loop {
                    match c.get(i) {
                        None => return Err("Unterminated string literal".into()),
                        Some('\\') if c.get(i + 1).is_some() => {
                            v.push(c[i + 1]);
                            i += 2;
                        }
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some(&x) => {
                            v.push(x);
                            i += 1;
                        }
                    }
                }
                out.push(Tok::Str(v));
            }
            '=' | '!' | '<' | '>' | '&' | '|' => {
                let two: String = c[i..(i + 2).min(c.len())].iter().collect();
                let (op, len) = if ["==", "!=", "<=", ">=", "&&", "||"].contains(&two.as_str()) {
                    (two, 2)
                } else if ch == '<' || ch == '>' || ch == '!' {
                    (ch.to_string(), 1)
                } else if ch == '=' {
                    // A single '=' is accepted as equality.
                    ("==".to_string(), 1)
                } else {
                    return Err(format!("Syntax error '{ch}'"));
                };
                i += len;
                out.push(Tok::Op(op));
            }
            _ if ch.is_ascii_digit()
                || (ch == '-' && c.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                let st = i;
                i += 1;
                while i < c.len() && (c[i].is_ascii_digit() || c[i] == '.') {
                    i += 1;
                }
                out.push(Tok::Num(c[st..i].iter().collect()));
            }
            _ if ch.is_alphabetic() || ch == '_' => {
                let st = i;
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_' || c[i] == '.') {
                    i += 1;
                }
                out.push(Tok::Id(c[st..i].iter().collect()));
            }
            _ => return Err(format!("Syntax error '{ch}'")),
        }
    }
    Ok(out)
}

struct P {
    t: Vec<Tok>,
    i: usize,
}

impl P {
    fn peek(&self) -> Option<&Tok> {
        self.t.get(self.i)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.t.get(self.i).cloned();
        self.i += 1;
        t
    }
    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Id(x)) if x.eq_ignore_ascii_case(w))
    }
    fn or(&mut self) -> Result<Expr, String> {
        let mut l = self.and()?;
        while self.is_word("OR") || self.peek() == Some(&Tok::Op("||".into())) {
            self.i += 1;
            l = Expr::Or(Box::new(l), Box::new(self.and()?));
        }
        Ok(l)
    }
    fn and(&mut self) -> Result<Expr, String> {
        let mut l = self.unary()?;
        while self.is_word("AND") || self.peek() == Some(&Tok::Op("&&".into())) {
            self.i += 1;
            l = Expr::And(Box::new(l), Box::new(self.unary()?));
        }
        Ok(l)
    }
    fn unary(&mut self) -> Result<Expr, String> {
        if self.is_word("NOT") || self.peek() == Some(&Tok::Op("!".into())) {
            self.i += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.peek() == Some(&Tok::LP) {
            self.i += 1;
            let e = self.or()?;
            if self.next() != Some(Tok::RP) {
                return Err("')' expected".into());
            }
            return Ok(e);
        }
        let Some(Tok::Id(field)) = self.next() else {
            return Err("Expression expected".into());
        };
        for m in ["Contains", "StartsWith", "EndsWith", "ToUpper", "ToLower"] {
            if let Some(f) = field.strip_suffix(&format!(".{m}")) {
                if self.next() != Some(Tok::LP) {
                    return Err("'(' expected".into());
                }
                let Some(Tok::Str(arg)) = self.next() else {
                    return Err("String literal expected".into());
                };
                if self.next() != Some(Tok::RP) {
                    return Err("')' expected".into());
                }
                return Ok(Expr::Method(f.to_string(), m.to_string(), arg));
            }
        }
        let op = match self.next() {
            Some(Tok::Op(o)) if ["==", "!=", "<", "<=", ">", ">="].contains(&o.as_str()) => o,
            Some(_) | None => {
                // A bare boolean field, e.g. `SentToContact`.
                self.i -= 1;
                return Ok(Expr::Cmp(field, "==".into(), Val::B(true)));
            }
        };
        let v = self.value()?;
        Ok(Expr::Cmp(field, op, v))
    }
    fn value(&mut self) -> Result<Val, String> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(Val::S(s)),
            Some(Tok::Num(n)) => n
                .parse()
                .map(Val::N)
                .map_err(|_| format!("Invalid number {n}")),
            Some(Tok::Id(w)) if w.eq_ignore_ascii_case("true") => Ok(Val::B(true)),
            Some(Tok::Id(w)) if w.eq_ignore_ascii_case("false") => Ok(Val::B(false)),
            Some(Tok::Id(w)) if w.eq_ignore_ascii_case("null") => Ok(Val::Null),
            Some(Tok::Id(w))
                if w.eq_ignore_ascii_case("DateTime")
                    || w.eq_ignore_ascii_case("DateTime.Parse") =>
            {
                if self.next() != Some(Tok::LP) {
                    return Err("'(' expected".into());
                }
                let mut nums = Vec::new();
                loop {
                    match self.next() {
                        Some(Tok::Num(n)) => nums.push(
                            n.parse::<u32>()
                                .map_err(|_| format!("Invalid number {n}"))?,
                        ),
                        Some(Tok::Str(s)) => {
                            return self.finish_date(
                                crate::world::parse_datetime(&s)
                                    .ok_or_else(|| format!("Invalid date {s}"))?,
                            )
                        }
                        _ => return Err("Number expected".into()),
                    }
                    match self.next() {
                        Some(Tok::Comma) => continue,
                        Some(Tok::RP) => break,
                        _ => return Err("')' expected".into()),
                    }
                }
                let g = |k: usize| nums.get(k).copied().unwrap_or(0);
                let d = NaiveDate::from_ymd_opt(g(0) as i32, g(1), g(2))
                    .and_then(|d| d.and_hms_opt(g(3), g(4), g(5)))
                    .ok_or("Invalid DateTime")?;
                Ok(Val::T(d.and_utc()))
            }
            Some(Tok::Id(w))
                if w.eq_ignore_ascii_case("Guid") || w.eq_ignore_ascii_case("Guid.Parse") =>
            {
                if self.next() != Some(Tok::LP) {
                    return Err("'(' expected".into());
                }
                let Some(Tok::Str(s)) = self.next() else {
                    return Err("String literal expected".into());
                };
                if self.next() != Some(Tok::RP) {
                    return Err("')' expected".into());
                }
                uuid::Uuid::parse_str(&s).map_err(|_| format!("Invalid Guid {s}"))?;
                Ok(Val::S(s.to_ascii_lowercase()))
            }
            other => Err(format!("Value expected, found {other:?}")),
        }
    }
    fn finish_date(&mut self, t: DateTime<Utc>) -> Result<Val, String> {
        if self.next() != Some(Tok::RP) {
            return Err("')' expected".into());
        }
        Ok(Val::T(t))
    }
}

pub fn parse(s: &str) -> Result<Expr, String> {
    let mut p = P { t: lex(s)?, i: 0 };
    let e = p.or()?;
    if p.i < p.t.len() {
        return Err(format!("Syntax error at token {}", p.i + 1));
    }
    Ok(e)
}

/// Checks the fields against a resolver; `None` from it means no such field.
pub fn check(e: &Expr, known: &dyn Fn(&str) -> bool) -> Result<(), String> {
    match e {
        Expr::And(a, b) | Expr::Or(a, b) => check(a, known).and_then(|_| check(b, known)),
        Expr::Not(a) => check(a, known),
        Expr::Cmp(f, _, _) | Expr::Method(f, _, _) => {
            if known(f) {
                Ok(())
            } else {
                Err(format!(
                    "No property or field '{f}' exists in type 'Invoice'"
                ))
            }
        }
    }
}

pub fn eval(e: &Expr, get: &dyn Fn(&str) -> Val) -> bool {
    match e {
        Expr::And(a, b) => eval(a, get) && eval(b, get),
        Expr::Or(a, b) => eval(a, get) || eval(b, get),
        Expr::Not(a) => !eval(a, get),
        Expr::Method(f, m, arg) => match get(f) {
            Val::S(s) => match m.as_str() {
                "Contains" => s.contains(arg.as_str()),
                "StartsWith" => s.starts_with(arg.as_str()),
                "EndsWith" => s.ends_with(arg.as_str()),
                _ => false,
            },
            _ => false,
        },
        Expr::Cmp(f, op, v) => {
            let x = get(f);
            let o = match (&x, v) {
                (Val::S(a), Val::S(b)) => Some(a.to_ascii_lowercase().cmp(&b.to_ascii_lowercase())),
                (Val::N(a), Val::N(b)) => Some(a.cmp(b)),
                (Val::T(a), Val::T(b)) => Some(a.cmp(b)),
                (Val::B(a), Val::B(b)) => Some(a.cmp(b)),
                (Val::Null, Val::Null) => Some(Ordering::Equal),
                _ => None,
            };
            match (op.as_str(), o) {
                ("==", Some(o)) => o == Ordering::Equal,
                ("!=", Some(o)) => o != Ordering::Equal,
                ("!=", None) => true,
                ("<", Some(o)) => o == Ordering::Less,
                ("<=", Some(o)) => o != Ordering::Greater,
                (">", Some(o)) => o == Ordering::Greater,
                (">=", Some(o)) => o != Ordering::Less,
                _ => false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_evaluates() {
        let e = parse(r#"Type=="ACCREC" AND AmountDue>0"#).expect("parse");
        let get = |amount: i64| {
            move |f: &str| match f {
                "Type" => Val::S("ACCREC".into()),
                "AmountDue" => Val::N(Decimal::from(amount)),
                _ => Val::Null,
            }
        };
        assert!(eval(&e, &get(5)));
        assert!(!eval(&e, &get(0)));
        let e = parse(r#"(Status == "PAID" || Status == "AUTHORISED") && Date >= DateTime(2026, 01, 01) AND Contact.Name.Contains("Bird")"#).expect("parse");
        let get = |f: &str| match f {
            "Status" => Val::S("AUTHORISED".into()),
            "Date" => Val::T(
                NaiveDate::from_ymd_opt(2026, 2, 1)
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .map(|d| d.and_utc())
                    .unwrap_or_default(),
            ),
            "Contact.Name" => Val::S("Amy's Bird Sanctuary".into()),
            _ => Val::Null,
        };
        assert!(eval(&e, &get));
        assert!(
            parse(r#"Contact.ContactID == Guid("d4956132-ed94-4dd7-9eaa-aa22dfdf06f2")"#).is_ok()
        );
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "Type ==",
            "((Type == \"A\"",
            "Type == \"A\" AND",
            "Type == Guid(\"nope\")",
            "Type # 1",
            "Type == \"unterminated",
            ")",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let e = parse("Nope == 1").expect("parse");
        assert!(check(&e, &|f| f == "Type").is_err());
    }
}
