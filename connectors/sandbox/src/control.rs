//! The control API under `/_sandbox/`, for tests, the demo and benchmarks.

use chrono::{Duration, NaiveDate};
use hyper::Method;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::wire::{Reply, Req};
use crate::world::{
    parse_datetime, parse_money, Behaviour, Customer, Invoice, Line, Status, World,
};
use crate::{lock, CreatedInvoice, FaultConfig, NewInvoice, Sandbox, SandboxError, System};

fn err(status: u16, msg: &str) -> Reply {
    Reply::json(status, &json!({"error": msg}))
}

fn body<T: for<'de> Deserialize<'de>>(req: &Req) -> Result<T, Reply> {
    serde_json::from_slice(&req.body).map_err(|e| err(400, &format!("bad JSON body: {e}")))
}

fn parse_system(s: &str) -> Option<System> {
    match s.to_ascii_lowercase().as_str() {
        "quickbooks" | "qbo" => Some(System::QuickBooks),
        "xero" => Some(System::Xero),
        _ => None,
    }
}

#[derive(Deserialize)]
struct SystemTenant {
    system: System,
    #[serde(default)]
    tenant: Option<String>,
}

fn resolve_tenant(w: &World, system: System, tenant: Option<&str>) -> Result<usize, SandboxError> {
    match tenant {
        Some(id) => w
            .tenant_index(system, id)
            .ok_or_else(|| SandboxError::UnknownTenant {
                system,
                tenant: id.to_string(),
            }),
        None => w
            .tenants
            .iter()
            .position(|t| t.system == system)
            .ok_or_else(|| SandboxError::UnknownTenant {
                system,
                tenant: "(none)".into(),
            }),
    }
}

fn tenant_id(sb: &Sandbox, system: System, tenant: Option<&str>) -> Result<String, SandboxError> {
    let w = sb.world();
    let t = resolve_tenant(&w, system, tenant)?;
    Ok(w.tenants[t].id.clone())
}

fn from_error(e: SandboxError) -> Reply {
    match e {
        SandboxError::UnknownTenant { .. } | SandboxError::UnknownInvoice(_) => {
            err(404, &e.to_string())
        }
        _ => err(400, &e.to_string()),
    }
}

pub fn handle(sb: &Sandbox, req: &Req) -> Reply {
    let segs: Vec<&str> = req.segs.iter().skip(1).map(String::as_str).collect();
    match (&req.method, segs.as_slice()) {
        (&Method::GET, ["tenants"]) => Reply::json(200, &json!(sb.tenants())),
        (&Method::GET, ["clock"]) => Reply::json(200, &json!({"now": sb.now()})),
        (&Method::POST, ["online-payments"]) => crate::documents::control(sb, req),
        (_, ["idempotency-window"]) => crate::keys::control(sb, req),
        (&Method::POST, ["clock"]) => {
            #[derive(Deserialize)]
            struct B {
                now: String,
            }
            let b: B = match body(req) {
                Ok(b) => b,
                Err(r) => return r,
            };
            let Some(t) = parse_datetime(&b.now) else {
                return err(400, "now must be an RFC 3339 time");
            };
            sb.set_now(t);
            Reply::json(200, &json!({"now": sb.now()}))
        }
        (&Method::POST, ["invoices"]) => {
            let b: NewInvoice = match body(req) {
                Ok(b) => b,
                Err(r) => return r,
            };
            match sb.create_invoice(b) {
                Ok(c) => Reply::json(201, &json!(c)),
                Err(e) => from_error(e),
            }
        }
        (&Method::GET, ["invoices", system, tenant, id]) => {
            let Some(system) = parse_system(system) else {
                return err(404, "unknown system");
            };
            let w = sb.world();
            let Some(t) = w.tenant_index(system, tenant) else {
                return err(404, "unknown tenant");
            };
            let Some(i) = w.tenants[t].invoice_index(id) else {
                return err(404, "unknown invoice");
            };
            let inv = &w.tenants[t].invoices[i];
            let c = &w.tenants[t].customers[inv.customer];
            Reply::json(
                200,
                &json!({"id": inv.id, "number": inv.number, "status": inv.status.as_str(), "total": inv.total.to_string(), "balance": inv.balance().to_string(),
                    "due_date": inv.due_date, "customer": {"id": c.id, "name": c.name, "email": c.email, "behaviour": c.behaviour}, "reminders": inv.reminders, "fees": inv.fees}),
            )
        }
        (&Method::POST, ["invoices", system, tenant, id, "payments"]) => {
            let Some(system) = parse_system(system) else {
                return err(404, "unknown system");
            };
            let b: Value = match body(req) {
                Ok(b) => b,
                Err(r) => return r,
            };
            let Some(amount) = b.get("amount").and_then(parse_money) else {
                return err(400, "amount must be a decimal number or string");
            };
            let date = match b.get("date").and_then(Value::as_str) {
                Some(d) => match parse_datetime(d) {
                    Some(t) => t.date_naive(),
                    None => return err(400, "date must be YYYY-MM-DD or RFC 3339"),
                },
                None => sb.now().date_naive(),
            };
            match sb.add_payment(system, tenant, id, amount, date) {
                Ok(()) => {
                    // The payment's id, for a webhook that names it (QuickBooks).
                    let w = sb.world();
                    let payment_id = w
                        .tenant_index(system, tenant)
                        .and_then(|t| {
                            let t = &w.tenants[t];
                            t.invoice_index(id).map(|i| &t.invoices[i])
                        })
                        .and_then(|inv| inv.payments.last())
                        .map(|p| p.id.clone());
                    Reply::json(200, &json!({"ok": true, "payment_id": payment_id}))
                }
                Err(e) => from_error(e),
            }
        }
        (&Method::GET, ["faults"]) => Reply::json(200, &json!(lock(&sb.inner.faults).config)),
        (&Method::POST, ["faults"]) => {
            let b: FaultConfig = match body(req) {
                Ok(b) => b,
                Err(r) => return r,
            };
            if !(0.0..=1.0).contains(&b.rate) {
                return err(400, "rate must be between 0 and 1");
            }
            sb.set_faults(b.clone());
            Reply::json(200, &json!(b))
        }
        (&Method::POST, ["token"]) => {
            let b: SystemTenant = match body(req) {
                Ok(b) => b,
                Err(r) => return r,
            };
            let tenant = match tenant_id(sb, b.system, b.tenant.as_deref()) {
                Ok(t) => t,
                Err(e) => return from_error(e),
            };
            match sb.grant(b.system, &tenant) {
                Ok(g) => Reply::json(
                    200,
                    &json!({"access_token": g.access_token, "refresh_token": g.refresh_token, "expires_in": g.expires_in, "tenant": tenant}),
                ),
                Err(e) => from_error(e),
            }
        }
        (&Method::POST, ["revoke"]) => {
            let b: SystemTenant = match body(req) {
                Ok(b) => b,
                Err(r) => return r,
            };
            let tenant = match tenant_id(sb, b.system, b.tenant.as_deref()) {
                Ok(t) => t,
                Err(e) => return from_error(e),
            };
            Reply::json(200, &json!({"revoked": sb.revoke(b.system, &tenant)}))
        }
        (&Method::GET, ["limits"]) | (&Method::POST, ["limits"]) => {
            if req.method == Method::POST {
                #[derive(Deserialize)]
                struct B {
                    #[serde(default)]
                    enforce: Option<bool>,
                    #[serde(default)]
                    time_scale: Option<f64>,
                }
                let b: B = match body(req) {
                    Ok(b) => b,
                    Err(r) => return r,
                };
                if b.time_scale.is_some_and(|s| !(s.is_finite() && s > 0.0)) {
                    return err(400, "time_scale must be a positive number");
                }
                sb.set_limits(b.enforce, b.time_scale);
            }
            let l = lock(&sb.inner.limits);
            Reply::json(
                200,
                &json!({"enforce": l.enforce, "time_scale": l.time_scale(), "violations": l.violations}),
            )
        }
        (&Method::GET, ["ledger"]) => Reply::json(200, &json!(sb.ledger())),
        (&Method::GET, ["stats"]) => Reply::json(200, &stats(sb)),
        (&Method::POST, ["save"]) => match sb.save_state() {
            Ok(()) => Reply::json(200, &json!({"saved": sb.inner.state_file.is_some()})),
            Err(e) => err(500, &e.to_string()),
        },
        _ => err(404, "no such control endpoint"),
    }
}

pub fn stats(sb: &Sandbox) -> Value {
    let (requests, by_tenant, s429, s5xx) = {
        let s = lock(&sb.inner.stats);
        (
            s.requests.clone(),
            s.by_tenant.clone(),
            s.status_429,
            s.status_5xx,
        )
    };
    let (violations, rejected) = {
        let l = lock(&sb.inner.limits);
        (l.violations, l.rejected)
    };
    let faults = lock(&sb.inner.faults).injected.clone();
    json!({"requests": requests, "requests_by_tenant": by_tenant, "responses_429": s429, "responses_5xx": s5xx, "rate_limit_violations": violations, "rate_limit_rejections": rejected, "faults_injected": faults})
}

pub fn create_invoice(w: &mut World, req: NewInvoice) -> Result<CreatedInvoice, SandboxError> {
    let t = resolve_tenant(w, req.system, req.tenant.as_deref())?;
    if req.total <= Decimal::ZERO {
        return Err(SandboxError::Invalid("total must be positive".into()));
    }
    if req.due_date < req.issue_date {
        return Err(SandboxError::Invalid(
            "due_date is before issue_date".into(),
        ));
    }
    if req.customer_name.trim().is_empty() {
        return Err(SandboxError::Invalid("customer_name is required".into()));
    }
    let system = req.system;
    let now = w.now;
    let new_id = |w: &mut World| match system {
        System::QuickBooks => w.tenants[t].next_numeric(),
        System::Xero => w.new_uuid(),
    };
    let existing = w.tenants[t]
        .customers
        .iter()
        .position(|c| c.name.eq_ignore_ascii_case(req.customer_name.trim()));
    let cust = match existing {
        Some(c) => {
            w.tenants[t].customers[c].email = req.customer_email.clone();
            c
        }
        None => {
            let id = new_id(w);
            let mut parts = req.customer_name.split_whitespace();
            let given = parts.next().unwrap_or("").to_string();
            let family = parts.collect::<Vec<_>>().join(" ");
            let phones = crate::gen::phones_of(system, w.tenants[t].customers.len());
            w.tenants[t].add_customer(Customer {
                id,
                name: req.customer_name.trim().to_string(),
                given_name: given,
                family_name: family,
                company: None,
                email: req.customer_email.clone(),
                behaviour: req.behaviour.clone().unwrap_or(Behaviour::Never),
                created: now,
                updated: now,
                sync_token: 0,
                balance: Decimal::ZERO,
                // Numbers by position, as in a generated world.
                phones,
            })
        }
    };
    if let (Some(b), Some(_)) = (&req.behaviour, existing) {
        w.tenants[t].customers[cust].behaviour = b.clone();
    }
    let number = match req.number {
        Some(n) if w.tenants[t].idx.by_number.contains_key(&n) => {
            return Err(SandboxError::Invalid(format!(
                "invoice number {n} is taken"
            )))
        }
        Some(n) => n,
        None => {
            let tenant = &mut w.tenants[t];
            loop {
                tenant.next_number += 1;
                let n = match system {
                    System::QuickBooks => format!("{}", 1000 + tenant.next_number),
                    System::Xero => format!("INV-{:04}", tenant.next_number),
                };
                if !tenant.idx.by_number.contains_key(&n) {
                    break n;
                }
            }
        }
    };
    let currency = req
        .currency
        .clone()
        .unwrap_or_else(|| w.tenants[t].base_currency.clone())
        .to_ascii_uppercase();
    if system == System::QuickBooks && currency != w.tenants[t].base_currency {
        return Err(SandboxError::Invalid(format!(
            "a QuickBooks realm here bills in {} only",
            w.tenants[t].base_currency
        )));
    }
    let id = new_id(w);
    let line_id = match system {
        System::QuickBooks => "1".to_string(),
        System::Xero => w.new_uuid(),
    };
    let inv = Invoice {
        id: id.clone(),
        number: number.clone(),
        kind: "ACCREC".into(),
        customer: cust,
        currency,
        issue_date: req.issue_date,
        due_date: req.due_date,
        lines: vec![Line {
            id: line_id,
            description: "Services rendered".into(),
            item: "Services".into(),
            item_id: "1".into(),
            quantity: Decimal::ONE,
            unit_amount: req.total,
            amount: req.total,
        }],
        total: req.total,
        paid: Decimal::ZERO,
        credited: Decimal::ZERO,
        credit_id: None,
        payments: Vec::new(),
        status: Status::Authorised,
        sync_token: 0,
        created: now,
        updated: now,
        email_status: "EmailSent".into(),
        delivery_time: Some(now),
        bill_email: Some(req.customer_email.clone()),
        sent_to_contact: true,
        reference: String::new(),
        private_note: String::new(),
        customer_memo: String::new(),
        history: Vec::new(),
        reminders: 0,
        fees: 0,
        fee_for: None,
        fully_paid_on: None,
    };
    let i = w.tenants[t].add_invoice(inv);
    schedule_unprompted(w, t, i);
    let tenant = &w.tenants[t];
    Ok(CreatedInvoice {
        system,
        tenant: tenant.id.clone(),
        id,
        number,
        customer_id: tenant.customers[cust].id.clone(),
    })
}

/// Payments a behaviour makes without being chased.
fn schedule_unprompted(w: &mut World, t: usize, i: usize) {
    let inv = &w.tenants[t].invoices[i];
    let (issue, due) = (inv.issue_date, inv.due_date);
    let balance = inv.balance();
    let at = |d: NaiveDate| crate::world::midnight(d) + Duration::hours(15);
    let now = w.now;
    let mut plan: Vec<(chrono::DateTime<chrono::Utc>, Option<Decimal>, String)> = Vec::new();
    match w.tenants[t].customers[inv.customer].behaviour.clone() {
        Behaviour::PaysEarly { days_before_due } => plan.push((
            at(due - Duration::days(days_before_due)),
            None,
            "pays early".into(),
        )),
        Behaviour::ChronicallyLate { days_late } => plan.push((
            at(due + Duration::days(days_late)),
            None,
            format!("pays {days_late} days late"),
        )),
        Behaviour::PaysInParts { parts, every_days } => {
            let parts = parts.max(1);
            let part = (balance / Decimal::from(parts)).round_dp(2);
            for k in 0..parts {
                let amount = if k + 1 == parts { None } else { Some(part) };
                plan.push((
                    at(issue + Duration::days(every_days * (k as i64 + 1))),
                    amount,
                    format!("instalment {} of {parts}", k + 1),
                ));
            }
        }
        _ => {}
    }
    for (when, amount, reason) in plan {
        // A payment that would already be in the past lands at the current time.
        w.schedule(
            when.max(now),
            crate::world::ScheduledPayment {
                tenant: t,
                invoice: i,
                amount,
                reason,
            },
        );
    }
}
