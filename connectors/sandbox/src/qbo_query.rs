//! The QuickBooks query language subset: SELECT * | COUNT(*) FROM Invoice|Customer
//! [WHERE cond AND cond ...] [ORDERBY field [ASC|DESC], ...] [STARTPOSITION n] [MAXRESULTS n].

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    Invoice,
    Customer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    Like,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cond {
    pub field: String,
    pub op: Op,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub entity: Entity,
    pub count: bool,
    pub conds: Vec<Cond>,
    pub order: Vec<(String, bool)>,
    pub start: usize,
    pub max: usize,
}

impl Query {
    /// A key that identifies the result set regardless of paging.
    pub fn signature(&self) -> String {
        format!("{:?}|{:?}|{:?}", self.entity, self.conds, self.order)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Sym(String),
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let c: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch == '\'' {
            let mut v = String::new();
            i += 1;
            loop {
                match c.get(i) {
                    None => return Err("unterminated string literal".into()),
                    Some('\\') if c.get(i + 1) == Some(&'\'') => {
                        v.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
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
        } else if "<>=!".contains(ch) {
            let mut op = ch.to_string();
            if c.get(i + 1) == Some(&'=') || (ch == '<' && c.get(i + 1) == Some(&'>')) {
                op.push(c[i + 1]);
                i += 1;
            }
            i += 1;
            out.push(Tok::Sym(op));
        } else if "(),*".contains(ch) {
            out.push(Tok::Sym(ch.to_string()));
            i += 1;
        } else if ch.is_alphanumeric() || ch == '_' || ch == '.' || ch == '-' {
            let st = i;
            while i < c.len()
                && (c[i].is_alphanumeric() || c[i] == '_' || c[i] == '.' || c[i] == '-')
            {
                i += 1;
            }
            out.push(Tok::Word(c[st..i].iter().collect()));
        } else {
            return Err(format!("Encountered \"{ch}\" at column {}", i + 1));
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
    fn kw(&mut self, k: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(k)) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn sym(&mut self, s: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Sym(x)) if x == s) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn word(&mut self) -> Result<String, String> {
        match self.t.get(self.i) {
            Some(Tok::Word(w)) => {
                self.i += 1;
                Ok(w.clone())
            }
            other => Err(format!("expected a name, found {other:?}")),
        }
    }
    fn string(&mut self) -> Result<String, String> {
        match self.t.get(self.i) {
            Some(Tok::Str(s)) => {
                self.i += 1;
                Ok(s.clone())
            }
            other => Err(format!("expected a quoted value, found {other:?}")),
        }
    }
    fn number(&mut self) -> Result<usize, String> {
        let w = self.word()?;
        w.parse()
            .map_err(|_| format!("expected a number, found {w}"))
    }
}

const KEYWORDS: &[&str] = &["WHERE", "ORDERBY", "ORDER", "STARTPOSITION", "MAXRESULTS"];

/// Parses a query; errors are the parser's message for the Fault's Detail.
pub fn parse(s: &str) -> Result<Query, String> {
    let mut p = P { t: lex(s)?, i: 0 };
    if !p.kw("SELECT") {
        return Err(
            "QueryParserError: Encountered an unexpected token: the query must start with SELECT"
                .into(),
        );
    }
    let mut count = false;
    if p.kw("COUNT") {
        if !(p.sym("(") && p.sym("*") && p.sym(")")) {
            return Err("QueryParserError: expected COUNT(*)".into());
        }
        count = true;
    } else if !p.sym("*") {
        // A field list: the entity is returned whole, which is a superset of the projection.
        loop {
            p.word()?;
            if !p.sym(",") {
                break;
            }
        }
    }
    if !p.kw("FROM") {
        return Err("QueryParserError: expected FROM".into());
    }
    let ent = p.word()?;
    let entity = match ent.to_ascii_lowercase().as_str() {
        "invoice" => Entity::Invoice,
        "customer" => Entity::Customer,
        _ => {
            return Err(format!(
                "QueryValidationError: the sandbox does not serve entity {ent}"
            ))
        }
    };
    let mut q = Query {
        entity,
        count,
        conds: Vec::new(),
        order: Vec::new(),
        start: 1,
        max: 100,
    };
    if p.kw("WHERE") {
        loop {
            let field = p.word()?;
            let op = if p.kw("IN") {
                Op::In
            } else if p.kw("LIKE") {
                Op::Like
            } else {
                match p.t.get(p.i) {
                    Some(Tok::Sym(s)) => {
                        let op = match s.as_str() {
                            "=" => Op::Eq,
                            "!=" | "<>" => Op::Ne,
                            "<" => Op::Lt,
                            "<=" => Op::Le,
                            ">" => Op::Gt,
                            ">=" => Op::Ge,
                            o => return Err(format!("QueryParserError: unsupported operator {o}")),
                        };
                        p.i += 1;
                        op
                    }
                    other => {
                        return Err(format!(
                            "QueryParserError: expected an operator after {field}, found {other:?}"
                        ))
                    }
                }
            };
            let values = if op == Op::In {
                if !p.sym("(") {
                    return Err("QueryParserError: expected ( after IN".into());
                }
                let mut v = vec![p.string()?];
                while p.sym(",") {
                    v.push(p.string()?);
                }
                if !p.sym(")") {
                    return Err("QueryParserError: expected ) to close IN".into());
                }
                v
            } else {
                vec![p
                    .string()
                    .map_err(|e| format!("QueryParserError: {e} (values must be quoted)"))?]
            };
            q.conds.push(Cond { field, op, values });
            if p.kw("OR") {
                return Err("QueryParserError: OR is not supported".into());
            }
            if !p.kw("AND") {
                break;
            }
        }
    }
    if p.kw("ORDERBY") || (p.kw("ORDER") && p.kw("BY")) {
        loop {
            let f = p.word()?;
            let desc = if p.kw("DESC") {
                true
            } else {
                p.kw("ASC");
                false
            };
            q.order.push((f, desc));
            if !p.sym(",") {
                break;
            }
        }
    }
    loop {
        if p.kw("STARTPOSITION") {
            q.start = p.number()?;
        } else if p.kw("MAXRESULTS") {
            q.max = p.number()?;
        } else {
            break;
        }
    }
    if let Some(t) = p.peek() {
        let shown = match t {
            Tok::Word(w) if KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(w)) => {
                format!("{w} (clauses out of order)")
            }
            Tok::Word(w) | Tok::Str(w) | Tok::Sym(w) => w.clone(),
        };
        return Err(format!("QueryParserError: Encountered \"{shown}\""));
    }
    if q.start < 1 {
        return Err("QueryValidationError: STARTPOSITION starts at 1".into());
    }
    if q.max > 1000 {
        return Err("QueryValidationError: MAXRESULTS must be at most 1000".into());
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_form() {
        let q = parse("SELECT * FROM Invoice WHERE Balance > '0' AND MetaData.LastUpdatedTime >= '2026-11-01T00:00:00Z' ORDERBY MetaData.LastUpdatedTime STARTPOSITION 1 MAXRESULTS 1000").expect("parse");
        assert_eq!(q.entity, Entity::Invoice);
        assert_eq!(q.conds.len(), 2);
        assert_eq!(q.conds[1].op, Op::Ge);
        assert_eq!(
            q.order,
            vec![("MetaData.LastUpdatedTime".to_string(), false)]
        );
        assert_eq!((q.start, q.max), (1, 1000));
        let q = parse("select count(*) from Customer where Id in ('1', '2') orderby Id desc")
            .expect("parse");
        assert!(q.count);
        assert_eq!(q.conds[0].values, vec!["1", "2"]);
        let q = parse(r"SELECT * FROM Customer WHERE DisplayName = 'Amy\'s Bird'").expect("parse");
        assert_eq!(q.conds[0].values[0], "Amy's Bird");
    }

    #[test]
    fn rejects_bad_queries_without_panicking() {
        for bad in [
            "",
            "SELECT",
            "SELECT * FROM",
            "SELECT * FROM Invoice WHERE Balance > 0",
            "SELECT * FROM Invoice WHERE Balance > '0' OR Id = '1'",
            "SELECT * FROM Invoice MAXRESULTS 1001",
            "SELECT * FROM Invoice STARTPOSITION 0",
            "SELECT * FROM Invoice WHERE Id IN ('1'",
            "SELECT * FROM Invoice WHERE DocNumber = 'unterminated",
            "SELECT * FROM Bill",
            "SELECT * FROM Invoice ; DROP",
            "SELECT * FROM Invoice MAXRESULTS 10 ORDERBY Id",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
