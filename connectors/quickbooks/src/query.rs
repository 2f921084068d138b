//! Building QuickBooks query-language statements.

use chrono::{DateTime, SecondsFormat, Utc};

/// The most rows one query returns.
pub const PAGE_SIZE: u32 = 1000;

/// Quotes a value for the query language: `'` becomes `\'` (and `\` becomes `\\`, so a
/// value ending in a backslash cannot swallow the closing quote).
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A timestamp as the query language compares it.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// One page of invoices changed at or after `since`, oldest change first.
/// `open_only` restricts to invoices with a balance (full reconciliation).
pub fn invoices_page(open_only: bool, since: Option<DateTime<Utc>>, start: u32) -> String {
    let mut conds = Vec::new();
    if open_only {
        conds.push("Balance > '0'".to_string());
    }
    if let Some(s) = since {
        conds.push(format!(
            "MetaData.LastUpdatedTime >= {}",
            quote(&timestamp(s))
        ));
    }
    let filter = if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    };
    format!(
        "SELECT * FROM Invoice{filter} ORDERBY MetaData.LastUpdatedTime STARTPOSITION {} MAXRESULTS {PAGE_SIZE}",
        start.max(1)
    )
}

/// Invoices by id, in one statement.
pub fn invoices_by_id(ids: &[String]) -> String {
    let list: Vec<String> = ids.iter().map(|i| quote(i)).collect();
    format!(
        "SELECT * FROM Invoice WHERE Id IN ({}) MAXRESULTS {PAGE_SIZE}",
        list.join(",")
    )
}

/// One page of customers changed at or after `since`.
pub fn customers_page(since: Option<DateTime<Utc>>, start: u32) -> String {
    let filter = since
        .map(|s| {
            format!(
                " WHERE MetaData.LastUpdatedTime >= {}",
                quote(&timestamp(s))
            )
        })
        .unwrap_or_default();
    format!(
        "SELECT * FROM Customer{filter} ORDERBY MetaData.LastUpdatedTime STARTPOSITION {} MAXRESULTS {PAGE_SIZE}",
        start.max(1)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(quote("Amy's Bird Sanctuary"), r"'Amy\'s Bird Sanctuary'");
        assert_eq!(quote(r"C:\"), r"'C:\\'");
        assert_eq!(quote("130"), "'130'");
        assert_eq!(quote("''"), r"'\'\''");
    }

    #[test]
    fn builds_incremental_and_full_pages() {
        let since = DateTime::parse_from_rfc3339("2026-11-01T08:00:00-08:00")
            .unwrap()
            .to_utc();
        assert_eq!(
            invoices_page(false, Some(since), 1001),
            "SELECT * FROM Invoice WHERE MetaData.LastUpdatedTime >= '2026-11-01T16:00:00Z' ORDERBY MetaData.LastUpdatedTime STARTPOSITION 1001 MAXRESULTS 1000"
        );
        assert_eq!(
            invoices_page(true, None, 0),
            "SELECT * FROM Invoice WHERE Balance > '0' ORDERBY MetaData.LastUpdatedTime STARTPOSITION 1 MAXRESULTS 1000"
        );
        assert_eq!(
            invoices_page(false, None, 1),
            "SELECT * FROM Invoice ORDERBY MetaData.LastUpdatedTime STARTPOSITION 1 MAXRESULTS 1000"
        );
    }

    #[test]
    fn builds_id_lists_and_customer_pages() {
        let ids = vec!["1".to_string(), "2".to_string(), "o'x".to_string()];
        assert_eq!(
            invoices_by_id(&ids),
            r"SELECT * FROM Invoice WHERE Id IN ('1','2','o\'x') MAXRESULTS 1000"
        );
        assert_eq!(customers_page(None, 1), "SELECT * FROM Customer ORDERBY MetaData.LastUpdatedTime STARTPOSITION 1 MAXRESULTS 1000");
    }
}
