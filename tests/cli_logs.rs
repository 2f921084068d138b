//! The log lines an owner reads: every action line names the connection, the invoice
//! number, the customer's name, the amount and the step, in one wording whichever
//! vendor carried it out.

#[path = "support/service.rs"]
mod service;

use std::process::Command;

use service::*;

/// The value of `key=` on a log line (values may contain spaces: up to the next ` key=`).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    let rest = &line[start..];
    let end = rest
        .match_indices(' ')
        .map(|(i, _)| i)
        .find(|&i| {
            rest[i + 1..].split_once('=').is_some_and(|(k, _)| {
                !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            })
        })
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

#[test]
fn action_lines_name_invoice_customer_amount_and_step_for_both_vendors() {
    let dir = tempfile::tempdir().unwrap();
    let sb = start_sandbox_with(dir.path(), &["--invoices", "40"]);
    // A Tuesday mid-morning, inside the default send window.
    let out = Command::new(BIN)
        .args(["run", "--once", "--now", "2030-01-15T10:00:00Z", "--config"])
        .arg(&sb.config)
        .env_remove("OVERDUED_CONFIG")
        .env_remove("OVERDUED_LOG")
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let log = String::from_utf8_lossy(&out.stderr);
    let sent: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("reminder sent"))
        .collect();
    for conn in ["sandbox-qbo", "sandbox-xero"] {
        assert!(
            sent.iter().any(|l| field(l, "connection") == Some(conn)),
            "no reminder line for {conn}: {log}"
        );
    }
    for l in &sent {
        let number = field(l, "invoice").unwrap_or_else(|| panic!("no invoice on {l}"));
        let id = field(l, "invoice_id").unwrap_or_else(|| panic!("no invoice_id on {l}"));
        assert_ne!(number, id, "the invoice number, not its id: {l}");
        let customer = field(l, "customer").unwrap_or_else(|| panic!("no customer on {l}"));
        assert!(customer.chars().any(char::is_alphabetic), "a name: {l}");
        let amount = field(l, "amount").unwrap_or_else(|| panic!("no amount on {l}"));
        let (currency, figure) = amount.split_once(' ').unwrap_or_default();
        assert!(
            currency.len() == 3
                && currency.chars().all(|c| c.is_ascii_uppercase())
                && figure
                    .replace(',', "")
                    .parse::<rust_decimal::Decimal>()
                    .is_ok(),
            "an amount with its currency: {l}"
        );
        assert!(field(l, "step").is_some(), "no step on {l}");
    }
    // The vendors' own wordings of the same events stay at debug.
    for old in [
        "late fee invoice created",
        "invoice emailed by Xero",
        "history note added",
    ] {
        assert!(!log.contains(old), "{old:?} at info: {log}");
    }
}
