//! Xero Accounting API 2.0 under `/api.xro/2.0/`, and the identity `/connections`.

use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use hyper::Method;
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};

use crate::auth::{check_access, AccessError};
use crate::util::{param, valid_email};
use crate::wire::{Endpoint, Reply, Req};
use crate::world::{
    midnight, num, parse_money, xero_date, xero_day, Customer, HistoryRecord, Invoice, Line,
    Status, StoredResponse, Tenant, World,
};
use crate::xero_where::{self, Expr, Val};
use crate::{Sandbox, System};

const PROVIDER: &str = "overdued sandbox";

fn problem(status: u16, title: &str, detail: &str) -> Reply {
    Reply::json(
        status,
        &json!({"Type": null, "Title": title, "Status": status, "Detail": detail, "Instance": uuid::Uuid::nil().to_string(), "Extensions": {}}),
    )
}

pub fn validation_error(elements: Vec<Value>, message: &str) -> Reply {
    Reply::json(
        400,
        &json!({"ErrorNumber": 10, "Type": "ValidationException", "Message": message, "Elements": elements}),
    )
}

pub(crate) fn single_validation(message: &str) -> Reply {
    validation_error(
        vec![json!({"ValidationErrors": [{"Message": message}]})],
        "A validation exception occurred",
    )
}

pub(crate) fn not_found() -> Reply {
    Reply::text(404, "The resource you're looking for cannot be found")
}

pub(crate) fn envelope(w: &mut World, key: &str, items: Value, pagination: Option<Value>) -> Value {
    let mut m = Map::new();
    m.insert("Id".into(), json!(w.new_uuid()));
    m.insert("Status".into(), json!("OK"));
    m.insert("ProviderName".into(), json!(PROVIDER));
    m.insert(
        "DateTimeUTC".into(),
        json!(format!("/Date({})/", w.now.timestamp_millis())),
    );
    if let Some(p) = pagination {
        m.insert("pagination".into(), p);
    }
    m.insert(key.into(), items);
    Value::Object(m)
}

fn auth(w: &World, req: &Req) -> Result<usize, Reply> {
    match check_access(w, System::Xero, req.header("authorization")) {
        Ok(g) => Ok(g),
        Err(e) => {
            let detail = match e {
                AccessError::Expired => "TokenExpired: token expired",
                AccessError::Revoked => "TokenRevoked: the connection was revoked",
                AccessError::Missing | AccessError::Unknown => "Unauthorized: invalid token",
            };
            Err(problem(401, "Unauthorized", detail)
                .with_header("www-authenticate", "Bearer error=\"invalid_token\""))
        }
    }
}

pub fn handle(sb: &Sandbox, req: &Req, ep: &Endpoint) -> Reply {
    let mut w = sb.world();
    let grant = match auth(&w, req) {
        Ok(g) => g,
        Err(r) => return r,
    };
    if ep.name == "xero.connections" {
        return connections(&mut w, grant, req);
    }
    let Some(tid) = req.header("xero-tenant-id").map(str::to_string) else {
        return problem(
            403,
            "Forbidden",
            "AuthenticationUnsuccessful: the xero-tenant-id header is missing",
        );
    };
    let reach = w.auth.grants[grant]
        .tenants
        .iter()
        .any(|t| t.eq_ignore_ascii_case(&tid));
    let Some(t) = w.tenant_index(System::Xero, &tid).filter(|_| reach) else {
        return problem(403, "Forbidden", "AuthenticationUnsuccessful");
    };
    if let Some(r) = documents(&mut w, t, req) {
        return r;
    }
    if !req.wants_json() {
        return Reply::text(
            406,
            "Not Acceptable: send Accept: application/json (Xero answers XML otherwise)",
        );
    }
    let segs: Vec<String> = req
        .segs
        .iter()
        .skip(2)
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let seg = |i: usize| segs.get(i).map(String::as_str);
    let write = req.method == Method::POST || req.method == Method::PUT;
    if write && seg(0) == Some("invoices") {
        let key = req.header("idempotency-key").map(str::to_string);
        if let Some(k) = &key {
            if k.is_empty() || k.len() > 128 {
                return single_validation("Idempotency-Key must be 1 to 128 characters");
            }
            if let Some(stored) = crate::keys::replay(&mut w, t, &format!("xero:{k}")) {
                let mut r = Reply::empty(stored.status);
                if let Some(ct) = stored.content_type {
                    r = r.with_header("content-type", ct);
                }
                r.body = bytes::Bytes::from(stored.body);
                return r;
            }
        }
        let reply = match (seg(1), seg(2), segs.len(), &req.method) {
            (None, _, 1, _) => save_invoices(
                &mut w,
                t,
                req,
                key.as_deref(),
                req.method == Method::POST,
                None,
            ),
            (Some(_), None, 2, &Method::POST) => {
                let id = req.segs[3].clone();
                save_invoices(&mut w, t, req, key.as_deref(), true, Some(&id))
            }
            (Some(_), Some("email"), 3, &Method::POST) => {
                email(&mut w, t, &req.segs[3], key.as_deref())
            }
            (Some(_), Some("history"), 3, &Method::PUT) => {
                add_history(&mut w, t, &req.segs[3], req, key.as_deref())
            }
            _ => Reply::text(405, "Method Not Allowed"),
        };
        if (200..300).contains(&reply.status) {
            if let Some(k) = key {
                let body = String::from_utf8_lossy(&reply.body).into_owned();
                crate::keys::remember(
                    &mut w,
                    t,
                    format!("xero:{k}"),
                    StoredResponse {
                        status: reply.status,
                        content_type: reply.content_type(),
                        body,
                        stored_at: None,
                    },
                );
            }
            drop(w);
            sb.mark_dirty();
        }
        return reply;
    }
    match (&req.method, seg(0), segs.len()) {
        (&Method::GET, Some("invoices"), 1) => list_invoices(&mut w, t, req),
        (&Method::GET, Some("invoices"), 2) => match find_invoice(&w.tenants[t], &req.segs[3]) {
            Some(i) => {
                let inv = render_invoice(&w.tenants[t], &w.tenants[t].invoices[i], true);
                let body = envelope(&mut w, "Invoices", json!([inv]), None);
                Reply::json(200, &body)
            }
            None => not_found(),
        },
        (&Method::GET, Some("invoices"), 3) if seg(2) == Some("history") => {
            match find_invoice(&w.tenants[t], &req.segs[3]) {
                Some(i) => {
                    let recs = history(&w.tenants[t], &w.tenants[t].invoices[i]);
                    let body = envelope(&mut w, "HistoryRecords", Value::Array(recs), None);
                    Reply::json(200, &body)
                }
                None => not_found(),
            }
        }
        (&Method::GET, Some("contacts"), 1) => list_contacts(&mut w, t, req),
        (&Method::GET, Some("contacts"), 2) => {
            let tenant = &w.tenants[t];
            match tenant.customer_index(&req.segs[3]) {
                Some(c) => {
                    let v = render_contact(tenant, &tenant.customers[c], Some(w.now.date_naive()));
                    let body = envelope(&mut w, "Contacts", json!([v]), None);
                    Reply::json(200, &body)
                }
                None => not_found(),
            }
        }
        _ => not_found(),
    }
}

fn connections(w: &mut World, grant: usize, req: &Req) -> Reply {
    let g = &w.auth.grants[grant];
    if req.method == Method::DELETE {
        let Some(id) = req.segs.get(1) else {
            return Reply::text(405, "Method Not Allowed");
        };
        let Some(tid) = w
            .tenants
            .iter()
            .find(|t| t.system == System::Xero && t.connection_id.eq_ignore_ascii_case(id))
            .map(|t| t.id.clone())
        else {
            return not_found();
        };
        let before = g.tenants.len();
        w.auth.grants[grant]
            .tenants
            .retain(|t| !t.eq_ignore_ascii_case(&tid));
        return if w.auth.grants[grant].tenants.len() < before {
            Reply::empty(204)
        } else {
            not_found()
        };
    }
    if req.method != Method::GET || req.segs.len() != 1 {
        return Reply::text(405, "Method Not Allowed");
    }
    let fmt = |t: DateTime<Utc>| {
        format!(
            "{}.{:07}",
            t.format("%Y-%m-%dT%H:%M:%S"),
            t.timestamp_subsec_nanos() / 100
        )
    };
    // One per consent (grant), the same on each of its tenant connections.
    let auth_event = w.auth_event_id(grant);
    let list: Vec<Value> = w
        .tenants
        .iter()
        .filter(|t| {
            t.system == System::Xero && g.tenants.iter().any(|x| x.eq_ignore_ascii_case(&t.id))
        })
        .map(|t| {
            json!({
                "id": t.connection_id,
                "authEventId": auth_event,
                "tenantId": t.id,
                "tenantType": "ORGANISATION",
                "tenantName": t.name,
                "createdDateUtc": fmt(g.created),
                "updatedDateUtc": fmt(g.created),
            })
        })
        .collect();
    Reply::json(200, &Value::Array(list))
}

pub(crate) fn find_invoice(t: &Tenant, key: &str) -> Option<usize> {
    t.invoice_index(key)
        .or_else(|| t.idx.by_number.get(key).copied())
}

fn rate(code: &str, base: &str) -> Decimal {
    if code == base {
        return Decimal::ONE;
    }
    match code {
        "EUR" => Decimal::new(1_1712, 4),
        "USD" => Decimal::new(1_2684, 4),
        _ => Decimal::ONE,
    }
}

fn render_contact_ref(c: &Customer) -> Value {
    json!({
        "ContactID": c.id,
        "Name": c.name,
        "EmailAddress": c.email,
        "Addresses": [],
        "Phones": [],
        "ContactGroups": [],
        "ContactPersons": [],
        "HasValidationErrors": false
    })
}

fn day_string(d: NaiveDate) -> String {
    format!("{}T00:00:00", d)
}

pub fn render_invoice(t: &Tenant, inv: &Invoice, with_lines: bool) -> Value {
    let c = &t.customers[inv.customer];
    let r = rate(&inv.currency, &t.base_currency);
    let payments: Vec<Value> = inv
        .payments
        .iter()
        .map(|p| json!({"PaymentID": p.id, "Date": xero_day(p.date), "Amount": num(p.amount), "CurrencyRate": num(r), "HasAccount": false, "HasValidationErrors": false}))
        .collect();
    let credits: Vec<Value> = inv
        .credit_id
        .iter()
        .map(|id| {
            json!({
                "CreditNoteID": id,
                "CreditNoteNumber": format!("CN-{}", &inv.number.trim_start_matches("INV-")),
                "Type": "ACCRECCREDIT",
                "AppliedAmount": num(inv.credited),
                "Date": xero_day(inv.issue_date),
                "Total": num(inv.credited),
                "HasErrors": false
            })
        })
        .collect();
    let lines: Vec<Value> = if with_lines {
        inv.lines
            .iter()
            .map(|l| {
                json!({
                    "LineItemID": l.id,
                    "Description": l.description,
                    "Quantity": num(l.quantity),
                    "UnitAmount": num(l.unit_amount),
                    "ItemCode": l.item,
                    "AccountCode": "200",
                    "TaxType": "NONE",
                    "TaxAmount": num(Decimal::ZERO),
                    "LineAmount": num(l.amount),
                    "Tracking": []
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut o = Map::new();
    o.insert("Type".into(), json!(inv.kind));
    o.insert("InvoiceID".into(), json!(inv.id));
    o.insert("InvoiceNumber".into(), json!(inv.number));
    o.insert("Reference".into(), json!(inv.reference));
    o.insert("Payments".into(), Value::Array(payments));
    o.insert("CreditNotes".into(), Value::Array(credits));
    o.insert("Prepayments".into(), json!([]));
    o.insert("Overpayments".into(), json!([]));
    o.insert("AmountDue".into(), num(inv.balance()));
    o.insert("AmountPaid".into(), num(inv.paid));
    o.insert("AmountCredited".into(), num(inv.credited));
    o.insert("SentToContact".into(), json!(inv.sent_to_contact));
    o.insert("CurrencyRate".into(), num(r));
    o.insert("HasErrors".into(), json!(false));
    o.insert("IsDiscounted".into(), json!(false));
    o.insert("HasAttachments".into(), json!(false));
    o.insert("Contact".into(), render_contact_ref(c));
    o.insert("DateString".into(), json!(day_string(inv.issue_date)));
    o.insert("Date".into(), json!(xero_day(inv.issue_date)));
    o.insert("DueDateString".into(), json!(day_string(inv.due_date)));
    o.insert("DueDate".into(), json!(xero_day(inv.due_date)));
    o.insert("Status".into(), json!(inv.status.as_str()));
    o.insert("LineAmountTypes".into(), json!("Exclusive"));
    o.insert("LineItems".into(), Value::Array(lines));
    o.insert("SubTotal".into(), num(inv.total));
    o.insert("TotalTax".into(), num(Decimal::ZERO));
    o.insert("Total".into(), num(inv.total));
    o.insert("UpdatedDateUTC".into(), json!(xero_date(inv.updated)));
    o.insert(
        "UpdatedDateUTCString".into(),
        json!(inv.updated.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
    );
    o.insert("CurrencyCode".into(), json!(inv.currency));
    if let Some(d) = inv.fully_paid_on.filter(|_| inv.status == Status::Paid) {
        o.insert("FullyPaidOnDate".into(), json!(xero_day(d)));
    }
    Value::Object(o)
}

/// Xero lists one entry per phone type on every contact, empty where it has no number.
fn render_phones(c: &Customer) -> Value {
    let entry = |kind: &str, p: Option<&crate::world::PhoneNumber>| match p {
        Some(p) => json!({"PhoneType": kind, "PhoneNumber": p.number,
            "PhoneAreaCode": p.area_code, "PhoneCountryCode": p.country_code}),
        None => {
            json!({"PhoneType": kind, "PhoneNumber": "", "PhoneAreaCode": "", "PhoneCountryCode": ""})
        }
    };
    json!([
        entry("DEFAULT", c.phones.iter().find(|p| !p.mobile)),
        entry("DDI", None),
        entry("FAX", None),
        entry("MOBILE", c.phones.iter().find(|p| p.mobile)),
    ])
}

fn render_contact(t: &Tenant, c: &Customer, balances: Option<NaiveDate>) -> Value {
    let mut o = json!({
        "ContactID": c.id,
        "ContactStatus": "ACTIVE",
        "Name": c.name,
        "FirstName": c.given_name,
        "LastName": c.family_name,
        "EmailAddress": c.email,
        "BankAccountDetails": "",
        "Addresses": [],
        "Phones": render_phones(c),
        "UpdatedDateUTC": xero_date(c.updated),
        "ContactGroups": [],
        "IsSupplier": false,
        "IsCustomer": true,
        "DefaultCurrency": t.base_currency,
        "ContactPersons": [],
        "HasAttachments": false,
        "HasValidationErrors": false
    });
    if let Some(today) = balances {
        // Outstanding in the organisation's base currency, as Xero reports it.
        let ci = t
            .customers
            .iter()
            .position(|x| x.id == c.id)
            .unwrap_or(usize::MAX);
        let (mut outstanding, mut overdue) = (Decimal::ZERO, Decimal::ZERO);
        for inv in t
            .invoices
            .iter()
            .filter(|i| i.customer == ci && i.is_open())
        {
            let b = (inv.balance() / rate(&inv.currency, &t.base_currency)).round_dp(2);
            outstanding += b;
            if inv.due_date < today {
                overdue += b;
            }
        }
        if let Value::Object(m) = &mut o {
            m.insert(
                "Balances".into(),
                json!({"AccountsReceivable": {"Outstanding": num(outstanding), "Overdue": num(overdue)}, "AccountsPayable": {"Outstanding": num(Decimal::ZERO), "Overdue": num(Decimal::ZERO)}}),
            );
        }
    }
    o
}

/// History: derived records for what the world did (creation, payments, credits) plus the
/// explicit ones (notes, sends), newest first as Xero lists them.
fn history(t: &Tenant, inv: &Invoice) -> Vec<Value> {
    let c = &t.customers[inv.customer];
    let mut recs: Vec<HistoryRecord> = vec![HistoryRecord {
        at: inv.created,
        changes: "Created".into(),
        user: "System Generated".into(),
        details: format!("{} to {} for {}.", inv.number, c.name, inv.total),
    }];
    if matches!(
        inv.status,
        Status::Authorised | Status::Paid | Status::Voided
    ) {
        recs.push(HistoryRecord {
            at: inv.created,
            changes: "Approved".into(),
            user: "System Generated".into(),
            details: format!("{} to {} for {}.", inv.number, c.name, inv.total),
        });
    }
    if inv.credited > Decimal::ZERO {
        recs.push(HistoryRecord {
            at: inv.created,
            changes: "Credit Applied".into(),
            user: "System Generated".into(),
            details: format!("Credit note applied for {}.", inv.credited),
        });
    }
    for p in &inv.payments {
        recs.push(HistoryRecord {
            at: p.at,
            changes: "Payment Received".into(),
            user: "System Generated".into(),
            details: format!(
                "Payment received from {} on {} for {}.",
                c.name,
                p.date.format("%-d %B %Y"),
                p.amount
            ),
        });
    }
    recs.extend(inv.history.iter().cloned());
    recs.sort_by_key(|r| std::cmp::Reverse(r.at));
    recs.iter()
        .map(|r| json!({"Changes": r.changes, "DateUTCString": r.at.format("%Y-%m-%dT%H:%M:%S").to_string(), "DateUTC": xero_date(r.at), "User": r.user, "Details": r.details}))
        .collect()
}

// ---- listing ----

fn known_invoice_field(f: &str) -> bool {
    matches!(
        f.to_ascii_lowercase().as_str(),
        "type"
            | "status"
            | "amountdue"
            | "amountpaid"
            | "amountcredited"
            | "total"
            | "subtotal"
            | "totaltax"
            | "invoicenumber"
            | "reference"
            | "invoiceid"
            | "currencycode"
            | "date"
            | "duedate"
            | "updateddateutc"
            | "fullypaidondate"
            | "senttocontact"
            | "contact.contactid"
            | "contact.name"
            | "contact.emailaddress"
            | "hasattachments"
    )
}

fn invoice_field(t: &Tenant, inv: &Invoice, f: &str) -> Val {
    let c = &t.customers[inv.customer];
    match f.to_ascii_lowercase().as_str() {
        "type" => Val::S(inv.kind.clone()),
        "status" => Val::S(inv.status.as_str().into()),
        "amountdue" => Val::N(inv.balance()),
        "amountpaid" => Val::N(inv.paid),
        "amountcredited" => Val::N(inv.credited),
        "total" | "subtotal" => Val::N(inv.total),
        "totaltax" => Val::N(Decimal::ZERO),
        "invoicenumber" => Val::S(inv.number.clone()),
        "reference" => Val::S(inv.reference.clone()),
        "invoiceid" => Val::S(inv.id.clone()),
        "currencycode" => Val::S(inv.currency.clone()),
        "date" => Val::T(midnight(inv.issue_date)),
        "duedate" => Val::T(midnight(inv.due_date)),
        "updateddateutc" => Val::T(inv.updated),
        "fullypaidondate" => inv
            .fully_paid_on
            .map(|d| Val::T(midnight(d)))
            .unwrap_or(Val::Null),
        "senttocontact" => Val::B(inv.sent_to_contact),
        "contact.contactid" => Val::S(c.id.clone()),
        "contact.name" => Val::S(c.name.clone()),
        "contact.emailaddress" => Val::S(c.email.clone()),
        _ => Val::B(false),
    }
}

fn parse_ims(req: &Req) -> Option<DateTime<Utc>> {
    let h = req.header("if-modified-since")?;
    DateTime::parse_from_rfc2822(h)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| crate::world::parse_datetime(h))
}

/// where expression, Statuses, IDs, InvoiceNumbers, ContactIDs.
type ListFilters = (
    Option<Expr>,
    Vec<Status>,
    Vec<String>,
    Vec<String>,
    Vec<String>,
);

fn list_filter_params(req: &Req) -> Result<ListFilters, Reply> {
    let expr = match param(&req.query, "where").filter(|w| !w.trim().is_empty()) {
        Some(s) => {
            let e = xero_where::parse(s).map_err(|m| {
                Reply::json(
                    400,
                    &json!({"ErrorNumber": 16, "Type": "QueryParseException", "Message": m}),
                )
            })?;
            xero_where::check(&e, &known_invoice_field).map_err(|m| {
                Reply::json(
                    400,
                    &json!({"ErrorNumber": 16, "Type": "QueryParseException", "Message": m}),
                )
            })?;
            Some(e)
        }
        None => None,
    };
    let list = |k: &str| -> Vec<String> {
        param(&req.query, k)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut statuses = Vec::new();
    for s in list("Statuses") {
        match Status::parse(&s) {
            Some(st) => statuses.push(st),
            None => {
                return Err(single_validation(&format!(
                    "'{s}' is not a valid invoice status"
                )))
            }
        }
    }
    let ids = list("IDs");
    for id in &ids {
        if uuid::Uuid::parse_str(id).is_err() {
            return Err(single_validation(&format!("'{id}' is not a valid GUID")));
        }
    }
    Ok((
        expr,
        statuses,
        ids.into_iter().map(|s| s.to_ascii_lowercase()).collect(),
        list("InvoiceNumbers"),
        list("ContactIDs")
            .into_iter()
            .map(|s| s.to_ascii_lowercase())
            .collect(),
    ))
}

fn list_invoices(w: &mut World, ti: usize, req: &Req) -> Reply {
    let (expr, statuses, ids, numbers, contacts) = match list_filter_params(req) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let page = match param(&req.query, "page").map(|p| p.trim().parse::<usize>()) {
        None => None,
        Some(Ok(p)) if p >= 1 => Some(p),
        Some(_) => return single_validation("page must be a whole number of at least 1"),
    };
    let page_size = match param(&req.query, "pageSize").map(|p| p.trim().parse::<usize>()) {
        None => 100,
        Some(Ok(p)) if (1..=1000).contains(&p) => p,
        Some(_) => return single_validation("pageSize must be between 1 and 1000"),
    };
    let order = param(&req.query, "order").unwrap_or("").trim().to_string();
    let (order_field, desc) = match order.split_whitespace().collect::<Vec<_>>().as_slice() {
        [] => (String::from("updateddateutc"), false),
        [f] => (f.to_ascii_lowercase(), false),
        [f, d] if d.eq_ignore_ascii_case("DESC") || d.eq_ignore_ascii_case("ASC") => {
            (f.to_ascii_lowercase(), d.eq_ignore_ascii_case("DESC"))
        }
        _ => {
            return Reply::json(
                400,
                &json!({"ErrorNumber": 16, "Type": "QueryParseException", "Message": format!("Invalid order '{order}'")}),
            )
        }
    };
    if !known_invoice_field(&order_field) {
        return Reply::json(
            400,
            &json!({"ErrorNumber": 16, "Type": "QueryParseException", "Message": format!("No property or field '{order_field}' exists in type 'Invoice'")}),
        );
    }
    let ims = parse_ims(req);
    let sig = format!(
        "xero|{:?}|{statuses:?}|{ids:?}|{numbers:?}|{contacts:?}|{order_field}|{desc}|{:?}",
        param(&req.query, "where"),
        ims.map(|t| t.timestamp())
    );
    let t = &mut w.tenants[ti];
    let cached = t
        .idx
        .query_cache
        .get(&sig)
        .filter(|(g, _)| *g == t.idx.generation)
        .map(|(_, v)| v.clone());
    let matched = match cached {
        Some(v) => v,
        None => {
            // If-Modified-Since has second precision and is inclusive of that second.
            let from = ims
                .and_then(|t| DateTime::from_timestamp(t.timestamp(), 0))
                .unwrap_or(DateTime::<Utc>::MIN_UTC);
            let keep = |i: usize| {
                let inv = &t.invoices[i];
                (statuses.is_empty() || statuses.contains(&inv.status))
                    && (ids.is_empty() || ids.contains(&inv.id))
                    && (numbers.is_empty() || numbers.contains(&inv.number))
                    && (contacts.is_empty() || contacts.contains(&t.customers[inv.customer].id))
                    && expr
                        .as_ref()
                        .is_none_or(|e| xero_where::eval(e, &|f| invoice_field(t, inv, f)))
            };
            let mut v: Vec<usize> = if order_field == "updateddateutc" {
                t.idx
                    .by_updated
                    .range((from, 0)..)
                    .map(|&(_, i)| i)
                    .filter(|&i| keep(i))
                    .collect()
            } else {
                let mut v: Vec<usize> = (0..t.invoices.len())
                    .filter(|&i| t.invoices[i].updated >= from && keep(i))
                    .collect();
                v.sort_by(|&a, &b| {
                    let (x, y) = (
                        invoice_field(t, &t.invoices[a], &order_field),
                        invoice_field(t, &t.invoices[b], &order_field),
                    );
                    let o = match (&x, &y) {
                        (Val::S(p), Val::S(q)) => p.cmp(q),
                        (Val::N(p), Val::N(q)) => p.cmp(q),
                        (Val::T(p), Val::T(q)) => p.cmp(q),
                        _ => std::cmp::Ordering::Equal,
                    };
                    o.then(a.cmp(&b))
                });
                v
            };
            if desc {
                v.reverse();
            }
            let v = Arc::new(v);
            if t.idx.query_cache.len() > 64 {
                t.idx.query_cache.clear();
            }
            t.idx.query_cache.insert(sig, (t.idx.generation, v.clone()));
            v
        }
    };
    let total = matched.len();
    let (items, pagination): (Vec<Value>, Option<Value>) = match page {
        Some(p) => {
            let items = matched
                .iter()
                .skip((p - 1).saturating_mul(page_size))
                .take(page_size)
                .map(|&i| render_invoice(t, &t.invoices[i], true))
                .collect();
            (
                items,
                Some(
                    json!({"page": p, "pageSize": page_size, "pageCount": total.div_ceil(page_size), "itemCount": total}),
                ),
            )
        }
        // Without `page` Xero returns every match, without line items.
        None => (
            matched
                .iter()
                .map(|&i| render_invoice(t, &t.invoices[i], false))
                .collect(),
            None,
        ),
    };
    let body = envelope(w, "Invoices", Value::Array(items), pagination);
    Reply::json(200, &body)
}

fn list_contacts(w: &mut World, ti: usize, req: &Req) -> Reply {
    let t = &w.tenants[ti];
    let ims = parse_ims(req).and_then(|t| DateTime::from_timestamp(t.timestamp(), 0));
    let ids: Vec<String> = param(&req.query, "IDs")
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().to_ascii_lowercase())
                .collect()
        })
        .unwrap_or_default();
    let expr = match param(&req.query, "where").filter(|w| !w.trim().is_empty()) {
        Some(s) => match xero_where::parse(s).and_then(|e| {
            xero_where::check(&e, &|f| {
                matches!(
                    f.to_ascii_lowercase().as_str(),
                    "name"
                        | "emailaddress"
                        | "contactid"
                        | "contactstatus"
                        | "iscustomer"
                        | "firstname"
                        | "lastname"
                )
            })
            .map(|_| e)
        }) {
            Ok(e) => Some(e),
            Err(m) => {
                return Reply::json(
                    400,
                    &json!({"ErrorNumber": 16, "Type": "QueryParseException", "Message": m.replace("'Invoice'", "'Contact'")}),
                )
            }
        },
        None => None,
    };
    let get = |c: &Customer, f: &str| match f.to_ascii_lowercase().as_str() {
        "name" => Val::S(c.name.clone()),
        "emailaddress" => Val::S(c.email.clone()),
        "contactid" => Val::S(c.id.clone()),
        "contactstatus" => Val::S("ACTIVE".into()),
        "firstname" => Val::S(c.given_name.clone()),
        "lastname" => Val::S(c.family_name.clone()),
        _ => Val::B(true),
    };
    let matched: Vec<&Customer> = t
        .customers
        .iter()
        .filter(|c| {
            ims.is_none_or(|s| c.updated >= s)
                && (ids.is_empty() || ids.contains(&c.id))
                && expr
                    .as_ref()
                    .is_none_or(|e| xero_where::eval(e, &|f| get(c, f)))
        })
        .collect();
    let page_size = match param(&req.query, "pageSize").map(|p| p.trim().parse::<usize>()) {
        None => 100,
        Some(Ok(p)) if (1..=1000).contains(&p) => p,
        Some(_) => return single_validation("pageSize must be between 1 and 1000"),
    };
    let (items, pagination) = match param(&req.query, "page").map(|p| p.trim().parse::<usize>()) {
        Some(Ok(p)) if p >= 1 => {
            let total = matched.len();
            (
                matched
                    .iter()
                    .skip((p - 1) * page_size)
                    .take(page_size)
                    .map(|c| render_contact(t, c, None))
                    .collect::<Vec<_>>(),
                Some(
                    json!({"page": p, "pageSize": page_size, "pageCount": total.div_ceil(page_size), "itemCount": total}),
                ),
            )
        }
        Some(_) => return single_validation("page must be a whole number of at least 1"),
        None => (
            matched.iter().map(|c| render_contact(t, c, None)).collect(),
            None,
        ),
    };
    let body = envelope(w, "Contacts", Value::Array(items), pagination);
    Reply::json(200, &body)
}

// ---- writes ----

fn parse_date_value(v: &Value) -> Option<NaiveDate> {
    let s = v.as_str()?;
    if let Some(ms) = s
        .strip_prefix("/Date(")
        .and_then(|r| r.split(['+', ')']).next())
        .and_then(|n| n.parse::<i64>().ok())
    {
        return DateTime::from_timestamp_millis(ms).map(|t| t.date_naive());
    }
    crate::world::parse_datetime(s).map(|t| t.date_naive())
}

struct Parsed {
    kind: String,
    contact: Result<usize, (String, Option<String>)>,
    date: NaiveDate,
    due: Option<NaiveDate>,
    lines: Option<Vec<Line>>,
    status: Option<Status>,
    currency: String,
    number: Option<String>,
    reference: Option<String>,
}

fn parse_invoice(
    w: &mut World,
    t: usize,
    m: &Map<String, Value>,
    update: bool,
) -> Result<Parsed, Vec<String>> {
    let mut errs = Vec::new();
    let tenant = &w.tenants[t];
    let kind = m
        .get("Type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !update && kind.is_empty() {
        errs.push("Invoice Type must be specified".to_string());
    } else if !kind.is_empty() && kind != "ACCREC" && kind != "ACCPAY" {
        errs.push(format!("Invoice Type '{kind}' is not valid for an invoice"));
    }
    let contact = match m.get("Contact") {
        Some(c) => match (
            c.get("ContactID").and_then(Value::as_str),
            c.get("Name").and_then(Value::as_str),
        ) {
            (Some(id), _) => match tenant.customer_index(id) {
                Some(i) => Ok(i),
                None => {
                    errs.push(format!("Contact with ContactID {id} was not found"));
                    Ok(0)
                }
            },
            (None, Some(name)) if !name.trim().is_empty() => match tenant
                .customers
                .iter()
                .position(|x| x.name.eq_ignore_ascii_case(name.trim()))
            {
                Some(i) => Ok(i),
                None => Err((
                    name.trim().to_string(),
                    c.get("EmailAddress")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                )),
            },
            _ => {
                errs.push("A Contact must be specified for this type of transaction".into());
                Ok(0)
            }
        },
        None if update => Ok(usize::MAX),
        None => {
            errs.push("A Contact must be specified for this type of transaction".into());
            Ok(0)
        }
    };
    let date = match m.get("Date") {
        None | Some(Value::Null) => crate::world::qbo_local_date(w.now).max(w.now.date_naive()),
        Some(v) => parse_date_value(v).unwrap_or_else(|| {
            errs.push("Date is not a valid date".into());
            w.now.date_naive()
        }),
    };
    let due = match m.get("DueDate") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let d = parse_date_value(v);
            if d.is_none() {
                errs.push("Due Date is not a valid date".into());
            }
            d
        }
    };
    let status = match m.get("Status").and_then(Value::as_str) {
        Some(s) => match Status::parse(s) {
            Some(st) => Some(st),
            None => {
                errs.push(format!("'{s}' is not a valid invoice status"));
                None
            }
        },
        None => None,
    };
    let currency = m
        .get("CurrencyCode")
        .and_then(Value::as_str)
        .unwrap_or(&tenant.base_currency)
        .to_ascii_uppercase();
    if !["GBP", "EUR", "USD"].contains(&currency.as_str()) {
        errs.push(format!(
            "The currency code {currency} is not enabled for this organisation"
        ));
    }
    let lines = match m.get("LineItems") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => {
            let mut out = Vec::new();
            for (k, l) in a.iter().enumerate() {
                let desc = l
                    .get("Description")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let qty = l
                    .get("Quantity")
                    .and_then(parse_money)
                    .unwrap_or(Decimal::ONE);
                let unit = l.get("UnitAmount").and_then(parse_money);
                let amount = l
                    .get("LineAmount")
                    .and_then(parse_money)
                    .or_else(|| unit.map(|u| (u * qty).round_dp(2)));
                if desc.trim().is_empty() && l.get("ItemCode").is_none() {
                    errs.push(format!("Description is required for line item {}", k + 1));
                }
                let Some(amount) = amount else {
                    errs.push(format!(
                        "Line item {} needs a UnitAmount or LineAmount",
                        k + 1
                    ));
                    continue;
                };
                out.push(Line {
                    id: String::new(),
                    description: desc,
                    item: l
                        .get("ItemCode")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    item_id: String::new(),
                    quantity: qty,
                    unit_amount: unit.unwrap_or(amount),
                    amount,
                });
            }
            Some(out)
        }
        Some(_) => {
            errs.push("LineItems must be an array".into());
            None
        }
    };
    let number = m
        .get("InvoiceNumber")
        .and_then(Value::as_str)
        .map(str::to_string);
    let reference = m
        .get("Reference")
        .and_then(Value::as_str)
        .map(str::to_string);
    if !update {
        let st = status.unwrap_or(Status::Draft);
        if !matches!(st, Status::Draft | Status::Submitted | Status::Authorised) {
            errs.push("Invoice not of valid status for creation".into());
        }
        if st != Status::Draft {
            if lines.as_ref().is_none_or(|l| l.is_empty()) {
                errs.push("An invoice must have at least one line item".into());
            }
            if due.is_none() {
                errs.push("Due Date is required.".into());
            }
        }
        if let Some(n) = &number {
            if kind == "ACCREC" && tenant.idx.by_number.contains_key(n) {
                errs.push("Invoice # must be unique.".into());
            }
        }
    }
    if errs.is_empty() {
        Ok(Parsed {
            kind,
            contact,
            date,
            due,
            lines,
            status,
            currency,
            number,
            reference,
        })
    } else {
        Err(errs)
    }
}

fn element(m: &Map<String, Value>, errs: &[String]) -> Value {
    let mut o = m.clone();
    o.insert("HasErrors".into(), json!(true));
    o.insert("StatusAttributeString".into(), json!("ERROR"));
    o.insert(
        "ValidationErrors".into(),
        Value::Array(errs.iter().map(|e| json!({"Message": e})).collect()),
    );
    Value::Object(o)
}

fn contact_for(w: &mut World, t: usize, c: Result<usize, (String, Option<String>)>) -> usize {
    match c {
        Ok(i) => i,
        Err((name, email)) => {
            // Xero creates a contact named in an invoice that does not exist yet.
            let id = w.new_uuid();
            let now = w.now;
            let mut parts = name.split_whitespace();
            let given = parts.next().unwrap_or("").to_string();
            let family = parts.collect::<Vec<_>>().join(" ");
            w.tenants[t].add_customer(Customer {
                id,
                name,
                given_name: given,
                family_name: family,
                company: None,
                email: email.unwrap_or_default(),
                behaviour: crate::world::Behaviour::Never,
                created: now,
                updated: now,
                sync_token: 0,
                balance: Decimal::ZERO,
                phones: Vec::new(),
            })
        }
    }
}

fn save_invoices(
    w: &mut World,
    t: usize,
    req: &Req,
    key: Option<&str>,
    allow_update: bool,
    path_id: Option<&str>,
) -> Reply {
    let body: Value = match serde_json::from_slice(&req.body) {
        Ok(v) => v,
        Err(e) => {
            return Reply::json(
                400,
                &json!({"ErrorNumber": 14, "Type": "PostDataInvalidException", "Message": format!("Invalid Json data: {e}")}),
            )
        }
    };
    let items: Vec<Map<String, Value>> = match &body {
        Value::Object(m) if m.contains_key("Invoices") => match m.get("Invoices") {
            Some(Value::Array(a)) => a.iter().filter_map(|v| v.as_object().cloned()).collect(),
            _ => {
                return Reply::json(
                    400,
                    &json!({"ErrorNumber": 14, "Type": "PostDataInvalidException", "Message": "Invoices must be an array"}),
                )
            }
        },
        Value::Object(m) => vec![m.clone()],
        _ => {
            return Reply::json(
                400,
                &json!({"ErrorNumber": 14, "Type": "PostDataInvalidException", "Message": "Invalid Json data"}),
            )
        }
    };
    if items.is_empty() {
        return Reply::json(
            400,
            &json!({"ErrorNumber": 14, "Type": "PostDataInvalidException", "Message": "No invoices were supplied"}),
        );
    }
    let summarize =
        param(&req.query, "summarizeErrors").is_none_or(|v| !v.eq_ignore_ascii_case("false"));
    // Validate everything first so that a summarised failure saves nothing.
    let mut plans = Vec::new();
    let mut failed = Vec::new();
    for (k, m) in items.iter().enumerate() {
        let existing = m
            .get("InvoiceID")
            .and_then(Value::as_str)
            .or(path_id)
            .map(|id| find_invoice(&w.tenants[t], id))
            .or_else(|| {
                m.get("InvoiceNumber")
                    .and_then(Value::as_str)
                    .filter(|_| allow_update)
                    .map(|n| w.tenants[t].idx.by_number.get(n).copied())
            });
        let r = match existing {
            Some(None) => Err(vec!["Invoice could not be found".to_string()]),
            Some(Some(_)) if !allow_update => Err(vec![
                "PUT creates invoices; use POST to update an existing invoice".to_string(),
            ]),
            Some(Some(i)) => parse_invoice(w, t, m, true)
                .and_then(|p| check_update(&w.tenants[t].invoices[i], &p).map(|_| (Some(i), p))),
            None => parse_invoice(w, t, m, false).map(|p| (None, p)),
        };
        match r {
            Ok(p) => plans.push((k, p)),
            Err(errs) => failed.push((k, errs)),
        }
    }
    if summarize && !failed.is_empty() {
        let elements = failed.iter().map(|(k, e)| element(&items[*k], e)).collect();
        return validation_error(elements, "A validation exception occurred");
    }
    let mut out: Vec<(usize, Value)> = failed
        .iter()
        .map(|(k, e)| (*k, element(&items[*k], e)))
        .collect();
    for (k, (existing, p)) in plans {
        let i = match existing {
            Some(i) => apply_update(w, t, i, p, key),
            None => create(w, t, p, key),
        };
        let mut v = render_invoice(&w.tenants[t], &w.tenants[t].invoices[i], true);
        if let Value::Object(m) = &mut v {
            m.insert("StatusAttributeString".into(), json!("OK"));
        }
        out.push((k, v));
    }
    out.sort_by_key(|(k, _)| *k);
    let body = envelope(
        w,
        "Invoices",
        Value::Array(out.into_iter().map(|(_, v)| v).collect()),
        None,
    );
    Reply::json(200, &body)
}

fn check_update(inv: &Invoice, p: &Parsed) -> Result<(), Vec<String>> {
    let mut errs = Vec::new();
    if matches!(inv.status, Status::Voided | Status::Deleted) {
        errs.push(format!(
            "This invoice is {} and cannot be edited",
            inv.status.as_str()
        ));
    }
    if let Some(st) = p.status {
        let ok = match (inv.status, st) {
            (a, b) if a == b => true,
            (Status::Draft, Status::Submitted | Status::Authorised | Status::Deleted) => true,
            (Status::Submitted, Status::Draft | Status::Authorised | Status::Deleted) => true,
            (Status::Authorised, Status::Voided) => inv.payments.is_empty(),
            _ => false,
        };
        if !ok {
            errs.push(format!(
                "Invoice cannot be changed from {} to {}",
                inv.status.as_str(),
                st.as_str()
            ));
        }
    }
    if let Some(lines) = &p.lines {
        let total: Decimal = lines.iter().map(|l| l.amount).sum();
        if total < inv.paid + inv.credited {
            errs.push("This document cannot be edited as it has a payment or credit note allocated to it.".into());
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs)
    }
}

fn finish_lines(w: &mut World, mut lines: Vec<Line>) -> Vec<Line> {
    for l in &mut lines {
        l.id = w.new_uuid();
    }
    lines
}

fn create(w: &mut World, t: usize, p: Parsed, key: Option<&str>) -> usize {
    let now = w.now;
    let cust = contact_for(w, t, p.contact);
    let id = w.new_uuid();
    let lines = finish_lines(w, p.lines.unwrap_or_default());
    let total: Decimal = lines.iter().map(|l| l.amount).sum();
    let tenant = &mut w.tenants[t];
    let number = p.number.unwrap_or_else(|| loop {
        tenant.next_number += 1;
        let n = format!("INV-{:04}", tenant.next_number);
        if !tenant.idx.by_number.contains_key(&n) {
            break n;
        }
    });
    let reference = p.reference.unwrap_or_default();
    let email = tenant.customers[cust].email.clone();
    let inv = Invoice {
        id,
        number: number.clone(),
        kind: p.kind,
        customer: cust,
        currency: p.currency,
        issue_date: p.date,
        due_date: p.due.unwrap_or(p.date + Duration::days(30)),
        lines,
        total,
        paid: Decimal::ZERO,
        credited: Decimal::ZERO,
        credit_id: None,
        payments: Vec::new(),
        status: p.status.unwrap_or(Status::Draft),
        sync_token: 0,
        created: now,
        updated: now,
        email_status: "NotSet".into(),
        delivery_time: None,
        bill_email: Some(email),
        sent_to_contact: false,
        reference: reference.clone(),
        private_note: String::new(),
        customer_memo: String::new(),
        history: Vec::new(),
        reminders: 0,
        fees: 0,
        fee_for: None,
        fully_paid_on: None,
    };
    let is_sale = inv.kind == "ACCREC";
    let i = w.tenants[t].add_invoice(inv);
    if is_sale {
        if let Some(orig) = w.named_original(t, &reference, &number) {
            w.tenants[t].invoices[i].fee_for = Some(orig);
            let inv = &w.tenants[t].invoices[i];
            let detail = json!({"fee_invoice_id": inv.id, "fee_invoice_number": number, "amount": crate::world::money_str(total), "currency": inv.currency});
            w.record_effect(t, orig, "fee", key, detail);
        }
    }
    i
}

fn apply_update(w: &mut World, t: usize, i: usize, p: Parsed, key: Option<&str>) -> usize {
    let now = w.now;
    let cust = match p.contact {
        Ok(usize::MAX) => None,
        other => Some(contact_for(w, t, other)),
    };
    let lines = p.lines.map(|l| finish_lines(w, l));
    let old = &w.tenants[t].invoices[i];
    let (old_total, old_count) = (old.total, old.lines.len());
    let partly_paid = old.paid > Decimal::ZERO && old.balance() > Decimal::ZERO;
    let only_due_date = lines.is_none()
        && p.status.is_none()
        && p.reference.is_none()
        && cust.is_none()
        && p.number.is_none();
    // Xero does not bump UpdatedDateUTC for a due-date change on a partly paid invoice.
    let touch = if only_due_date && partly_paid {
        None
    } else {
        Some(now)
    };
    let tenant = &mut w.tenants[t];
    if let Some(c) = cust {
        let bal = tenant.invoices[i].balance();
        let old_c = tenant.invoices[i].customer;
        tenant.customers[old_c].balance -= bal;
        tenant.customers[c].balance += bal;
        tenant.invoices[i].customer = c;
    }
    tenant.modify(i, touch, |inv| {
        if let Some(l) = lines {
            inv.total = l.iter().map(|x| x.amount).sum();
            inv.lines = l;
        }
        if let Some(d) = p.due {
            inv.due_date = d;
        }
        if let Some(r) = p.reference {
            inv.reference = r;
        }
        if let Some(n) = p.number {
            inv.number = n;
        }
        if let Some(s) = p.status {
            inv.status = s;
        }
        if inv.status == Status::Paid && inv.balance() > Decimal::ZERO {
            inv.status = Status::Authorised;
        }
        inv.sync_token += 1;
    });
    let inv = &w.tenants[t].invoices[i];
    if inv.total > old_total && inv.lines.len() > old_count && inv.kind == "ACCREC" {
        let detail = json!({"fee_line": true, "amount": crate::world::money_str(inv.total - old_total), "currency": inv.currency});
        w.record_effect(t, i, "fee", key, detail);
    }
    i
}

fn email(w: &mut World, t: usize, id: &str, key: Option<&str>) -> Reply {
    let now = w.now;
    let tenant = &w.tenants[t];
    let Some(i) = find_invoice(tenant, id) else {
        return not_found();
    };
    let inv = &tenant.invoices[i];
    if inv.kind != "ACCREC"
        || !matches!(
            inv.status,
            Status::Submitted | Status::Authorised | Status::Paid
        )
    {
        return single_validation("Invoice must be of type ACCREC and have a status of SUBMITTED, AUTHORISED or PAID to be emailed");
    }
    let to = tenant.customers[inv.customer].email.clone();
    if !valid_email(&to) {
        return single_validation("The contact does not have a valid email address");
    }
    let number = inv.number.clone();
    let partly_paid = inv.paid > Decimal::ZERO && inv.balance() > Decimal::ZERO;
    let touch = if partly_paid || inv.sent_to_contact {
        None
    } else {
        Some(now)
    };
    let to2 = to.clone();
    w.tenants[t].modify(i, touch, move |inv| {
        inv.sent_to_contact = true;
        inv.history.push(HistoryRecord {
            at: now,
            changes: "Sent".into(),
            user: "System Generated".into(),
            details: format!("This invoice has been sent to {to2} ({number})."),
        });
    });
    w.record_effect(t, i, "email", key, json!({"to": to}));
    Reply::empty(204)
}

fn add_history(w: &mut World, t: usize, id: &str, req: &Req, key: Option<&str>) -> Reply {
    let Some(i) = find_invoice(&w.tenants[t], id) else {
        return not_found();
    };
    let body: Value = match serde_json::from_slice(&req.body) {
        Ok(v) => v,
        Err(e) => {
            return Reply::json(
                400,
                &json!({"ErrorNumber": 14, "Type": "PostDataInvalidException", "Message": format!("Invalid Json data: {e}")}),
            )
        }
    };
    let Some(recs) = body
        .get("HistoryRecords")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
    else {
        return single_validation("HistoryRecords must be a non-empty array");
    };
    let mut texts = Vec::new();
    let mut bad = Vec::new();
    for r in recs {
        match r.get("Details").and_then(Value::as_str) {
            Some(d) if !d.trim().is_empty() && d.chars().count() <= 2500 => texts.push(d.to_string()),
            Some(d) if !d.trim().is_empty() => bad.push(json!({"Details": d, "ValidationErrors": [{"Message": "Details cannot be longer than 2500 characters"}]})),
            _ => bad.push(json!({"Details": "", "ValidationErrors": [{"Message": "The Details field is required"}]})),
        }
    }
    if !bad.is_empty() {
        return validation_error(bad, "A validation exception occurred");
    }
    let now = w.now;
    let mut out = Vec::new();
    for d in texts {
        // A note never bumps UpdatedDateUTC, and does not change any query result.
        w.tenants[t].invoices[i].history.push(HistoryRecord {
            at: now,
            changes: "Note".into(),
            user: PROVIDER.into(),
            details: d.clone(),
        });
        w.record_effect(t, i, "note", key, json!({"text": d}));
        out.push(json!({"DateUTCString": now.format("%Y-%m-%dT%H:%M:%S").to_string(), "DateUTC": xero_date(now), "Details": d, "ValidationErrors": []}));
    }
    let body = envelope(w, "HistoryRecords", Value::Array(out), None);
    Reply::json(200, &body)
}

/// Xero `GET /Invoices/{id}/OnlineInvoice` and `GET /Invoices/{id}` as PDF; `None` for
/// any other request.
fn documents(w: &mut World, t: usize, req: &Req) -> Option<Reply> {
    let s = &req.segs;
    if req.method != Method::GET || s.len() < 4 || !s[2].eq_ignore_ascii_case("invoices") {
        return None;
    }
    let online = s.len() == 5 && s[4].eq_ignore_ascii_case("onlineinvoice");
    let pdf = s.len() == 4 && crate::documents::wants_pdf(req);
    if !online && !pdf {
        return None;
    }
    if online && !req.wants_json() {
        return Some(Reply::text(
            406,
            "Not Acceptable: send Accept: application/json (Xero answers XML otherwise)",
        ));
    }
    let tenant = &w.tenants[t];
    let Some(i) = find_invoice(tenant, &s[3]) else {
        return Some(not_found());
    };
    let inv = &tenant.invoices[i];
    if pdf {
        return Some(crate::documents::pdf_reply(tenant, inv));
    }
    if inv.kind != "ACCREC" {
        return Some(single_validation(
            "Online invoices are only available for sales invoices (ACCREC)",
        ));
    }
    if matches!(inv.status, Status::Draft | Status::Deleted) {
        return Some(single_validation(&format!(
            "An online invoice cannot be retrieved for a {} invoice",
            inv.status.as_str()
        )));
    }
    let items = match crate::documents::xero_online_invoice_url(tenant, inv) {
        Some(url) => json!([{ "OnlineInvoiceUrl": url }]),
        None => json!([]),
    };
    Some(Reply::json(
        200,
        &envelope(w, "OnlineInvoices", items, None),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_ims(v: &str) -> Req {
        let mut headers = hyper::HeaderMap::new();
        headers.insert("if-modified-since", v.parse().unwrap());
        Req {
            method: Method::GET,
            path: "/api.xro/2.0/Invoices".into(),
            segs: Vec::new(),
            query: Vec::new(),
            headers,
            body: Default::default(),
        }
    }

    /// Xero's docs show the bound without a designator, its SDKs send `Z`: both mean UTC.
    #[test]
    fn if_modified_since_is_read_with_or_without_the_utc_designator() {
        let want = DateTime::parse_from_rfc3339("2018-11-02T16:37:27Z")
            .unwrap()
            .to_utc();
        assert_eq!(parse_ims(&with_ims("2018-11-02T16:37:27Z")), Some(want));
        assert_eq!(parse_ims(&with_ims("2018-11-02T16:37:27")), Some(want));
        assert_eq!(
            parse_ims(&with_ims("Fri, 02 Nov 2018 16:37:27 GMT")),
            Some(want)
        );
    }
}
