//! `overdued sms opt-in`, `opt-out` and `list` as operations on the store (run by the
//! CLI, or by the daemon's admin endpoint while it holds the store; see `crate::ops`).

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::consent::{valid_e164, OptOut, SmsConsent};
use crate::config::Config;
use crate::ops::{io, usage};
use crate::ops::{known_connection, resolve_customer, OpError};
use crate::store::{AuditEvent, Store};

fn audit(
    store: &dyn Store,
    connection: &str,
    kind: &str,
    message: String,
    at: DateTime<Utc>,
) -> Result<(), OpError> {
    store
        .append_audit(&AuditEvent {
            at,
            connection: connection.to_string(),
            invoice_id: None,
            kind: kind.into(),
            message,
            detail: serde_json::Value::Null,
        })
        .map_err(io)
}

pub fn opt_in(
    config: &Config,
    store: &dyn Store,
    now: DateTime<Utc>,
    connection: &str,
    customer: &str,
    phone: &str,
    evidence: &str,
) -> Result<String, OpError> {
    known_connection(config, connection)?;
    let phone = phone.trim();
    valid_e164(phone).map_err(|m| usage(format!("--phone: {m}")))?;
    let evidence = evidence.trim();
    if evidence.is_empty() {
        return Err(usage(
            "--evidence must say who agreed, when and how (for example \"Jane Doe ticked the SMS box on the order form, 2026-03-01\")".into(),
        ));
    }
    let c = resolve_customer(store, connection, customer)?;
    let rec = SmsConsent {
        connection: connection.to_string(),
        customer_id: c.id.clone(),
        customer_name: c.name.clone(),
        phone: phone.to_string(),
        evidence: evidence.to_string(),
        recorded_at: now,
        opted_out: None,
    };
    store.put_sms_consent(&rec).map_err(io)?;
    audit(
        store,
        connection,
        "sms_opt_in",
        format!(
            "{} (id {}) agreed to text messages at {phone}: {evidence}",
            c.name, c.id
        ),
        now,
    )?;
    let note = if config.channels.sms.is_none() {
        " ([channels.sms] is not configured yet: nothing is texted until it is)"
    } else {
        ""
    };
    Ok(format!(
        "{connection}: {} (id {}) opted in to text messages at {phone}{note}\n",
        c.name, c.id
    ))
}

pub fn opt_out(
    config: &Config,
    store: &dyn Store,
    now: DateTime<Utc>,
    connection: &str,
    customer: &str,
) -> Result<String, OpError> {
    known_connection(config, connection)?;
    let wanted = customer.trim();
    let consents = store.sms_consents(Some(connection)).map_err(io)?;
    // A consent is found by the customer's id even when the customer is no longer synced.
    let id = match consents.iter().find(|c| c.customer_id == wanted) {
        Some(c) => c.customer_id.clone(),
        None => resolve_customer(store, connection, customer)?.id,
    };
    let Some(mut rec) = consents.into_iter().find(|c| c.customer_id == id) else {
        return Err(usage(format!(
            "{connection}: customer {wanted:?} has no SMS consent recorded: no text messages go to them"
        )));
    };
    if let Some(o) = &rec.opted_out {
        return Ok(format!(
            "{connection}: {} had already opted out ({}, {})\n",
            rec.customer_name,
            o.how,
            o.at.format("%Y-%m-%d")
        ));
    }
    rec.opted_out = Some(OptOut {
        at: now,
        how: "withdrawn by the owner with overdued sms opt-out".into(),
    });
    store.put_sms_consent(&rec).map_err(io)?;
    audit(
        store,
        connection,
        "sms_opt_out",
        format!(
            "{} ({}) opted out of text messages by the owner; email takes over",
            rec.customer_name, rec.phone
        ),
        now,
    )?;
    Ok(format!(
        "{connection}: {} opted out of text messages; their reminders go by email\n",
        rec.customer_name
    ))
}

#[derive(Serialize)]
struct Row<'a> {
    connection: &'a str,
    customer_id: &'a str,
    customer: &'a str,
    phone: &'a str,
    evidence: &'a str,
    recorded_at: DateTime<Utc>,
    opted_out: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    opted_out_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    opted_out_how: Option<&'a str>,
}

pub fn list(
    config: &Config,
    store: &dyn Store,
    connection: Option<&str>,
    json: bool,
) -> Result<String, OpError> {
    if let Some(c) = connection {
        known_connection(config, c)?;
    }
    let all = store.sms_consents(connection).map_err(io)?;
    if json {
        let rows: Vec<Row> = all
            .iter()
            .map(|c| Row {
                connection: &c.connection,
                customer_id: &c.customer_id,
                customer: &c.customer_name,
                phone: &c.phone,
                evidence: &c.evidence,
                recorded_at: c.recorded_at,
                opted_out: c.opted_out.is_some(),
                opted_out_at: c.opted_out.as_ref().map(|o| o.at),
                opted_out_how: c.opted_out.as_ref().map(|o| o.how.as_str()),
            })
            .collect();
        return serde_json::to_string_pretty(&rows)
            .map(|s| s + "\n")
            .map_err(|e| OpError {
                code: 70,
                message: e.to_string(),
            });
    }
    if all.is_empty() {
        return Ok("no SMS consent recorded: no customer gets text messages\n".into());
    }
    let mut out = String::new();
    for c in &all {
        let state = match &c.opted_out {
            None => "texts: yes".to_string(),
            Some(o) => format!(
                "texts: no, opted out {} ({})",
                o.at.format("%Y-%m-%d %H:%M UTC"),
                o.how
            ),
        };
        out.push_str(&format!(
            "{}  {} (id {})  {}  {}\n    consent recorded {}: {}\n",
            c.connection,
            c.customer_name,
            c.customer_id,
            c.phone,
            state,
            c.recorded_at.format("%Y-%m-%d %H:%M UTC"),
            c.evidence
        ));
    }
    Ok(out)
}
