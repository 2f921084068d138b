//! Turning byte offsets and field paths into `file:line:column`.

use std::ops::Range;

/// 1-based line and column of a byte offset (columns count characters, as editors do).
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// One step of a field path such as `policies.default.steps[3].offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// Parses `a.b[2].c` into segments. Keys are the config's own names, which never
/// contain dots or brackets.
pub fn parse_path(path: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let mut rest = part;
        if let Some(i) = rest.find('[') {
            if i > 0 {
                out.push(Seg::Key(rest[..i].to_string()));
            }
            rest = &rest[i..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let end = stripped.find(']').unwrap_or(stripped.len());
                if let Ok(n) = stripped[..end].parse() {
                    out.push(Seg::Index(n));
                }
                rest = stripped.get(end + 1..).unwrap_or("");
            }
        } else if !rest.is_empty() {
            out.push(Seg::Key(rest.to_string()));
        }
    }
    out
}

/// The span of the deepest node of `path` found in the document: the value itself when
/// it exists, else its nearest existing parent (a missing key is reported at its table).
pub fn span_of(text: &str, path: &str) -> Option<Range<usize>> {
    use toml_edit::{Item, Value};
    #[derive(Clone, Copy)]
    enum Node<'a> {
        Item(&'a Item),
        Value(&'a Value),
        Table(&'a toml_edit::Table),
    }
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    let mut node = Node::Item(doc.as_item());
    let mut best = None;
    for seg in parse_path(path) {
        let next = match (&seg, node) {
            (Seg::Key(k), Node::Item(Item::Table(t))) | (Seg::Key(k), Node::Table(t)) => {
                t.get_key_value(k).map(|(key, it)| {
                    best = key.span().or(best.clone());
                    Node::Item(it)
                })
            }
            (Seg::Key(k), Node::Item(Item::Value(Value::InlineTable(t))))
            | (Seg::Key(k), Node::Value(Value::InlineTable(t))) => t.get(k).map(Node::Value),
            (Seg::Index(i), Node::Item(Item::ArrayOfTables(a))) => a.get(*i).map(Node::Table),
            (Seg::Index(i), Node::Item(Item::Value(Value::Array(a))))
            | (Seg::Index(i), Node::Value(Value::Array(a))) => a.get(*i).map(Node::Value),
            _ => None,
        };
        let Some(n) = next else { break };
        let span = match n {
            Node::Item(it) => it.span(),
            Node::Value(v) => v.span(),
            Node::Table(t) => t.span(),
        };
        if span.is_some() {
            best = span;
        }
        node = n;
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        let t = "a = 1\nbc = 2\n";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 6), (2, 1));
        assert_eq!(line_col(t, 8), (2, 3));
    }

    #[test]
    fn paths_parse() {
        assert_eq!(
            parse_path("policies.default.steps[3].offset"),
            vec![
                Seg::Key("policies".into()),
                Seg::Key("default".into()),
                Seg::Key("steps".into()),
                Seg::Index(3),
                Seg::Key("offset".into())
            ]
        );
    }

    #[test]
    fn spans_point_at_the_value() {
        let t = "[daemon]\ntime_zone = \"Mars/Olympus\"\n\n[xero.uk]\nclient_id = \"x\"\n";
        let s = span_of(t, "daemon.time_zone").unwrap();
        assert_eq!(line_col(t, s.start), (2, 13));
        let s = span_of(t, "xero.uk.client_id").unwrap();
        assert_eq!(line_col(t, s.start).0, 5);
        // A missing key is reported at the nearest parent that exists: its table.
        let s = span_of(t, "xero.uk.client_secret").unwrap();
        assert_eq!(line_col(t, s.start).0, 4);
    }
}
