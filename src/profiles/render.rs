//! Profiles and the forecast in words, for `customers`, `status` and the digest.

use std::fmt::Write;

use rust_decimal::Decimal;

use super::{Forecast, LedgerProfiles, PayerProfile, FORECAST_HORIZONS};

fn money(currency: &str, amount: Decimal) -> String {
    match currency.parse::<overdued_connector::Currency>() {
        Ok(c) => overdued_connector::Money::new(amount, c)
            .rounded()
            .display_human()
            .to_string(),
        Err(_) => format!("{currency} {}", amount.round_dp(2)),
    }
}

/// `customers`: one block per customer.
pub fn customers_text(p: &LedgerProfiles) -> String {
    let mut out = String::new();
    let counts: Vec<String> = PayerProfile::ALL
        .iter()
        .map(|k| {
            let n = p.customers.iter().filter(|c| c.profile == *k).count();
            format!("{n} {k}")
        })
        .collect();
    let _ = writeln!(
        out,
        "{} · {} customers on {}: {}",
        p.connection,
        p.customers.len(),
        p.today,
        counts.join(", ")
    );
    for c in &p.customers {
        let f = &c.figures;
        let owed = if c.owed.is_empty() {
            "nothing owed".to_string()
        } else {
            c.owed
                .iter()
                .map(|(cur, a)| money(cur, a.parse().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(" + ")
                + " owed"
        };
        let _ = writeln!(out, "  {} [{}] · {owed}", c.name, c.profile);
        let mut figs = format!(
            "{} paid ({} late), {} open and late",
            f.paid, f.paid_late, f.open_late
        );
        if let Some(m) = f.median_days_late {
            let _ = write!(figs, ", median {m:+} days");
        }
        if f.promises_kept + f.promises_broken > 0 {
            let _ = write!(
                figs,
                ", promises {} kept / {} broken",
                f.promises_kept, f.promises_broken
            );
        }
        if f.plans_kept + f.plans_broken > 0 {
            let _ = write!(
                figs,
                ", plans {} kept / {} broken",
                f.plans_kept, f.plans_broken
            );
        }
        let _ = writeln!(out, "    {figs}: {}", c.reason);
        for i in &c.open_invoices {
            let when = match i.expected.on {
                Some(d) => format!("expected {d}"),
                None => "not expected".to_string(),
            };
            let _ = writeln!(
                out,
                "    {} · {} · due {} · {when} ({})",
                i.number,
                money(&i.currency, i.amount_due),
                i.due_date,
                i.expected.basis
            );
        }
    }
    out
}

/// The forecast as lines: one per currency, "USD: 1,200.00 in 7 days, ...".
pub fn forecast_lines(f: &Forecast) -> Vec<String> {
    if f.by_currency.is_empty() {
        return vec!["no receipts expected".to_string()];
    }
    f.by_currency
        .iter()
        .map(|(cur, row)| {
            let parts: Vec<String> = FORECAST_HORIZONS
                .iter()
                .zip(row.iter())
                .map(|(h, a)| format!("{} within {h} days", money(cur, *a)))
                .collect();
            parts.join(", ")
        })
        .collect()
}

/// The profile counts in one line: "3 prompt, 2 occasional, 4 chronic, 1 new".
pub fn profile_counts(p: &LedgerProfiles) -> String {
    PayerProfile::ALL
        .iter()
        .map(|k| {
            let n = p.customers.iter().filter(|c| c.profile == *k).count();
            format!("{n} {k}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `status`'s lines for one connection.
pub fn status_lines(p: &super::PayersSummary, connection: &str) -> String {
    let mut out = String::new();
    if p.customers == 0 {
        return out;
    }
    let counts: Vec<String> = PayerProfile::ALL
        .iter()
        .map(|k| format!("{} {k}", p.profiles.get(k.as_str()).copied().unwrap_or(0)))
        .collect();
    let _ = writeln!(
        out,
        "  payers:     {} (`overdued customers {connection}` for each)",
        counts.join(", ")
    );
    for l in forecast_lines(&p.forecast) {
        let _ = writeln!(out, "  forecast:   {l}");
    }
    for (cur, a) in &p.not_expected {
        let _ = writeln!(
            out,
            "  forecast:   {} not expected at all (later than these customers have ever paid)",
            money(cur, *a)
        );
    }
    out
}

/// The digest's lines for one connection: the profile counts and the forecast.
pub fn digest_lines(p: &super::PayersSummary, connection: &str) -> Vec<String> {
    if p.customers == 0 {
        return Vec::new();
    }
    let counts: Vec<String> = PayerProfile::ALL
        .iter()
        .map(|k| format!("{} {k}", p.profiles.get(k.as_str()).copied().unwrap_or(0)))
        .collect();
    let mut out = vec![format!("{connection}: payers {}", counts.join(", "))];
    if p.forecast.by_currency.is_empty() {
        out.push(format!("{connection}: no receipts expected"));
        return out;
    }
    out.extend(
        forecast_lines(&p.forecast)
            .into_iter()
            .map(|l| format!("{connection}: expected {l}")),
    );
    out
}
