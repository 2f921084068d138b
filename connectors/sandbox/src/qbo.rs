//! QuickBooks Online Accounting API v3 under `/v3/company/{realmId}/`.

use std::cmp::Ordering;
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use hyper::Method;
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};

use crate::auth::{check_access, AccessError};
use crate::qbo_query::{Cond, Entity, Op, Query};
use crate::util::{param, valid_email};
use crate::wire::{Reply, Req};
use crate::world::{
    num, parse_money, qbo_local_date, qbo_offset, qbo_time, qbo_time_ms, Customer, DeletedStub,
    Invoice, Line, Status, StoredResponse, Tenant, World,
};
use crate::{Sandbox, System};

const LATEST_MINOR_VERSION: u32 = 75;

pub fn fault(
    now: DateTime<Utc>,
    status: u16,
    code: &str,
    message: &str,
    detail: &str,
    element: &str,
    kind: &str,
) -> Reply {
    Reply::json(
        status,
        &json!({"Fault": {"Error": [{"Message": message, "Detail": detail, "code": code, "element": element}], "type": kind}, "time": qbo_time_ms(now)}),
    )
}

fn validation(now: DateTime<Utc>, code: &str, message: &str, detail: &str, element: &str) -> Reply {
    fault(now, 400, code, message, detail, element, "ValidationFault")
}

pub(crate) fn not_found(now: DateTime<Utc>, entity: &str, id: &str) -> Reply {
    validation(now, "610", "Object Not Found", &format!("Object Not Found : Something you're trying to use has been made inactive. Check the fields with accounts, customers, items, vendors or employees. ({entity} {id})"), "")
}

pub fn handle(sb: &Sandbox, req: &Req) -> Reply {
    let mut w = sb.world();
    let now = w.now;
    let realm = req.segs.get(2).cloned().unwrap_or_default();
    // Authentication comes first, as in production: a bad token never learns whether a realm exists.
    let grant = match check_access(&w, System::QuickBooks, req.header("authorization")) {
        Ok(g) => g,
        Err(e) => {
            let detail = match e {
                AccessError::Expired => "Token expired",
                AccessError::Revoked => "Token revoked",
                AccessError::Missing | AccessError::Unknown => "Token invalid",
            };
            return Reply::json(
                401,
                &json!({"fault": {"error": [{"message": "message=AuthenticationFailed; errorCode=003200; statusCode=401", "detail": detail, "code": "3200"}], "type": "AUTHENTICATION"}, "time": qbo_time_ms(now)}),
            )
            .with_header("www-authenticate", "Bearer realm=\"Intuit\", error=\"invalid_token\"");
        }
    };
    let Some(t) = w.tenant_index(System::QuickBooks, &realm) else {
        return fault(
            now,
            403,
            "3100",
            "message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403",
            "The realm is not connected to this app",
            "",
            "AUTHENTICATION",
        );
    };
    if !w.auth.grants[grant]
        .tenants
        .iter()
        .any(|r| r.eq_ignore_ascii_case(&realm))
    {
        return fault(
            now,
            403,
            "3100",
            "message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403",
            "The token does not reach this realm",
            "",
            "AUTHENTICATION",
        );
    }
    if let Some(r) = quickbooks_pdf(&w, t, req) {
        return r;
    }
    if !req.wants_json() {
        return Reply::text(
            406,
            "Not Acceptable: send Accept: application/json (QuickBooks answers XML otherwise)",
        );
    }
    if let Some(mv) = param(&req.query, "minorversion") {
        match mv.parse::<u32>() {
            Ok(v) if v <= LATEST_MINOR_VERSION => {}
            _ => {
                return validation(
                    now,
                    "2050",
                    "Invalid minor version",
                    &format!(
                        "minorversion {mv} is not supported; the latest is {LATEST_MINOR_VERSION}"
                    ),
                    "minorversion",
                )
            }
        }
    }
    let segs: Vec<String> = req
        .segs
        .iter()
        .skip(3)
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let seg = |i: usize| segs.get(i).map(String::as_str);
    let write = req.method == Method::POST && seg(0) == Some("invoice");
    if write {
        let rid = param(&req.query, "requestid").map(str::to_string);
        if let Some(r) = &rid {
            if r.is_empty() || r.len() > 50 {
                return validation(
                    now,
                    "2050",
                    "Invalid requestid",
                    "requestid must be 1 to 50 characters",
                    "requestid",
                );
            }
            if let Some(stored) = crate::keys::replay(&mut w, t, &format!("qbo:{r}")) {
                let mut reply = Reply::json(stored.status, &Value::Null);
                reply.body = bytes::Bytes::from(stored.body);
                return reply;
            }
        }
        let reply = match (seg(1), seg(2), segs.len()) {
            (None, _, 1) => write_invoice(&mut w, t, req, rid.as_deref()),
            (Some(_), Some("send"), 3) => {
                send_invoice(&mut w, t, req, &req.segs[4], rid.as_deref())
            }
            _ => validation(
                now,
                "4",
                "Unsupported Operation",
                "Operation is not supported by the sandbox",
                "",
            ),
        };
        if (200..300).contains(&reply.status) {
            if let Some(r) = rid {
                let body = String::from_utf8_lossy(&reply.body).into_owned();
                crate::keys::remember(
                    &mut w,
                    t,
                    format!("qbo:{r}"),
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
        (&Method::GET, Some("query"), 1) => {
            query(&mut w, t, param(&req.query, "query").unwrap_or(""))
        }
        (&Method::POST, Some("query"), 1) => {
            let text = String::from_utf8_lossy(&req.body).into_owned();
            query(&mut w, t, &text)
        }
        (&Method::GET, Some("invoice"), 2) => {
            let tenant = &w.tenants[t];
            match tenant
                .invoice_index(&req.segs[4])
                .filter(|&i| tenant.invoices[i].status != Status::Deleted)
            {
                Some(i) => {
                    let mut inv = render_invoice(tenant, &tenant.invoices[i]);
                    quickbooks_include(tenant, &tenant.invoices[i], req, &mut inv);
                    Reply::json(200, &json!({"Invoice": inv, "time": qbo_time_ms(now)}))
                }
                None => not_found(now, "Invoice", &req.segs[4]),
            }
        }
        (&Method::GET, Some("customer"), 2) => {
            let tenant = &w.tenants[t];
            match tenant.customer_index(&req.segs[4]) {
                Some(c) => Reply::json(
                    200,
                    &json!({"Customer": render_customer(tenant, &tenant.customers[c]), "time": qbo_time_ms(now)}),
                ),
                None => not_found(now, "Customer", &req.segs[4]),
            }
        }
        // A payment as QuickBooks shows it: one line per invoice it settles, naming
        // the invoice in `LinkedTxn` (a sandbox payment always settles one).
        (&Method::GET, Some("payment"), 2) => {
            let tenant = &w.tenants[t];
            let id = &req.segs[4];
            let found = tenant
                .invoices
                .iter()
                .find_map(|inv| inv.payments.iter().find(|p| &p.id == id).map(|p| (inv, p)));
            match found {
                Some((inv, p)) => Reply::json(
                    200,
                    &json!({"Payment": {
                        "Id": p.id,
                        "TxnDate": p.date.to_string(),
                        "TotalAmt": crate::world::num(p.amount),
                        "CustomerRef": {"value": tenant.customers[inv.customer].id},
                        "Line": [{"Amount": crate::world::num(p.amount), "LinkedTxn": [{"TxnId": inv.id, "TxnType": "Invoice"}]}],
                    }, "time": qbo_time_ms(now)}),
                ),
                None => not_found(now, "Payment", id),
            }
        }
        (&Method::GET, Some("cdc"), 1) => cdc(&w, t, req),
        _ => validation(
            now,
            "4",
            "Unsupported Operation",
            &format!("Operation {} {} is not supported", req.method, req.path),
            "",
        ),
    }
}

fn currency_name(code: &str) -> &'static str {
    match code {
        "USD" => "United States Dollar",
        "GBP" => "British Pound Sterling",
        "EUR" => "Euro",
        _ => "Currency",
    }
}

pub fn render_invoice(t: &Tenant, inv: &Invoice) -> Value {
    let c = &t.customers[inv.customer];
    let voided = inv.status == Status::Voided;
    let zero_if_void = |d: Decimal| if voided { Decimal::ZERO } else { d };
    let mut lines: Vec<Value> = inv
        .lines
        .iter()
        .enumerate()
        .map(|(k, l)| {
            json!({
                "Id": l.id,
                "LineNum": k + 1,
                "Description": l.description,
                "Amount": num(zero_if_void(l.amount)),
                "DetailType": "SalesItemLineDetail",
                "SalesItemLineDetail": {
                    "ItemRef": {"value": l.item_id, "name": l.item},
                    "UnitPrice": num(l.unit_amount),
                    "Qty": num(if voided { Decimal::ZERO } else { l.quantity }),
                    "TaxCodeRef": {"value": "NON"}
                }
            })
        })
        .collect();
    lines.push(json!({"Amount": num(zero_if_void(inv.total)), "DetailType": "SubTotalLineDetail", "SubTotalLineDetail": {}}));
    let mut linked: Vec<Value> = inv
        .payments
        .iter()
        .map(|p| json!({"TxnId": p.id, "TxnType": "Payment"}))
        .collect();
    if let Some(cid) = &inv.credit_id {
        linked.push(json!({"TxnId": cid, "TxnType": "CreditMemo"}));
    }
    let mut o = Map::new();
    o.insert("Id".into(), json!(inv.id));
    o.insert("SyncToken".into(), json!(inv.sync_token.to_string()));
    o.insert(
        "MetaData".into(),
        json!({"CreateTime": qbo_time(inv.created), "LastUpdatedTime": qbo_time(inv.updated)}),
    );
    o.insert("CustomField".into(), json!([]));
    o.insert("DocNumber".into(), json!(inv.number));
    o.insert("TxnDate".into(), json!(inv.issue_date.to_string()));
    o.insert(
        "CurrencyRef".into(),
        json!({"value": inv.currency, "name": currency_name(&inv.currency)}),
    );
    let note = if voided {
        "Voided"
    } else {
        inv.private_note.as_str()
    };
    if !note.is_empty() {
        o.insert("PrivateNote".into(), json!(note));
    }
    o.insert("LinkedTxn".into(), Value::Array(linked));
    o.insert("Line".into(), Value::Array(lines));
    o.insert("TxnTaxDetail".into(), json!({"TotalTax": 0}));
    o.insert("CustomerRef".into(), json!({"value": c.id, "name": c.name}));
    if !inv.customer_memo.is_empty() {
        o.insert("CustomerMemo".into(), json!({"value": inv.customer_memo}));
    }
    o.insert("SalesTermRef".into(), json!({"value": "3"}));
    o.insert("DueDate".into(), json!(inv.due_date.to_string()));
    o.insert("GlobalTaxCalculation".into(), json!("TaxExcluded"));
    o.insert("TotalAmt".into(), num(zero_if_void(inv.total)));
    o.insert("ApplyTaxAfterDiscount".into(), json!(false));
    o.insert("PrintStatus".into(), json!("NeedToPrint"));
    o.insert("EmailStatus".into(), json!(inv.email_status));
    if let Some(e) = &inv.bill_email {
        o.insert("BillEmail".into(), json!({"Address": e}));
    }
    o.insert("Balance".into(), num(inv.balance()));
    if let Some(d) = inv.delivery_time {
        o.insert(
            "DeliveryInfo".into(),
            json!({"DeliveryType": "Email", "DeliveryTime": qbo_time(d)}),
        );
    }
    o.insert("Deposit".into(), json!(0));
    o.insert("AllowIPNPayment".into(), json!(false));
    o.insert("AllowOnlinePayment".into(), json!(false));
    // A company with QuickBooks Payments lets its invoices be paid online by default.
    let online = crate::documents::takes_online_payments(t);
    o.insert("AllowOnlineACHPayment".into(), json!(online));
    o.insert("AllowOnlineCreditCardPayment".into(), json!(online));
    Value::Object(o)
}

pub fn render_customer(t: &Tenant, c: &Customer) -> Value {
    let mut o = json!({
        "Id": c.id,
        "SyncToken": c.sync_token.to_string(),
        "MetaData": {"CreateTime": qbo_time(c.created), "LastUpdatedTime": qbo_time(c.updated)},
        "GivenName": c.given_name,
        "FamilyName": c.family_name,
        "FullyQualifiedName": c.name,
        "DisplayName": c.name,
        "PrintOnCheckName": c.name,
        "Active": true,
        "PrimaryEmailAddr": {"Address": c.email},
        "Taxable": false,
        "Job": false,
        "BillWithParent": false,
        "Balance": num(c.balance),
        "BalanceWithJobs": num(c.balance),
        "CurrencyRef": {"value": t.base_currency, "name": currency_name(&t.base_currency)},
        "PreferredDeliveryMethod": "Email",
    });
    if let (Some(company), Value::Object(m)) = (&c.company, &mut o) {
        m.insert("CompanyName".into(), json!(company));
    }
    // QuickBooks leaves the address out when the customer has none.
    if let (true, Value::Object(m)) = (c.email.is_empty(), &mut o) {
        m.remove("PrimaryEmailAddr");
    }
    // A TelephoneNumber per kind, the number as typed; absent when there is none.
    if let Value::Object(m) = &mut o {
        let mut landlines = c.phones.iter().filter(|p| !p.mobile);
        let free_form = |p: &crate::world::PhoneNumber| json!({"FreeFormNumber": format!("({}) {}", p.area_code, p.number)});
        if let Some(p) = landlines.next() {
            m.insert("PrimaryPhone".into(), free_form(p));
        }
        if let Some(p) = landlines.next() {
            m.insert("AlternatePhone".into(), free_form(p));
        }
        if let Some(p) = c.phones.iter().find(|p| p.mobile) {
            m.insert("Mobile".into(), free_form(p));
        }
    }
    o
}

// ---- query ----

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    // Without an offset a time is in the company's zone.
    let naive = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })?;
    naive
        .and_local_timezone(qbo_offset())
        .single()
        .map(|t| t.with_timezone(&Utc))
}

#[derive(Debug, Clone)]
enum V {
    S(String),
    N(Decimal),
    T(DateTime<Utc>),
    D(NaiveDate),
    B(bool),
}

fn cmp_v(a: &V, b: &V) -> Option<Ordering> {
    match (a, b) {
        (V::S(x), V::S(y)) => Some(x.cmp(y)),
        (V::N(x), V::N(y)) => Some(x.cmp(y)),
        (V::T(x), V::T(y)) => Some(x.cmp(y)),
        (V::D(x), V::D(y)) => Some(x.cmp(y)),
        (V::B(x), V::B(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// A condition compiled against a field's type.
struct Compiled {
    field: String,
    op: Op,
    values: Vec<V>,
}

fn field_kind(entity: Entity, field: &str) -> Option<&'static str> {
    let f = field.to_ascii_lowercase();
    Some(match (entity, f.as_str()) {
        (_, "id") => "id",
        (_, "metadata.lastupdatedtime") | (_, "metadata.createtime") => "time",
        (Entity::Invoice, "balance")
        | (Entity::Invoice, "totalamt")
        | (Entity::Customer, "balance") => "num",
        (Entity::Invoice, "txndate") | (Entity::Invoice, "duedate") => "date",
        (Entity::Invoice, "docnumber")
        | (Entity::Invoice, "customerref")
        | (Entity::Invoice, "emailstatus") => "str",
        (Entity::Customer, "displayname")
        | (Entity::Customer, "primaryemailaddr")
        | (Entity::Customer, "givenname")
        | (Entity::Customer, "familyname")
        | (Entity::Customer, "companyname") => "str",
        (Entity::Customer, "active") => "bool",
        _ => return None,
    })
}

fn compile(entity: Entity, conds: &[Cond]) -> Result<Vec<Compiled>, String> {
    conds
        .iter()
        .map(|c| {
            let kind = field_kind(entity, &c.field).ok_or_else(|| {
                format!(
                    "QueryValidationError: property '{}' is not queryable",
                    c.field
                )
            })?;
            if kind == "id" && !matches!(c.op, Op::Eq | Op::In) {
                return Err("QueryValidationError: Id supports only = and IN".into());
            }
            if c.op == Op::Like && kind != "str" {
                return Err(format!(
                    "QueryValidationError: LIKE is not supported on {}",
                    c.field
                ));
            }
            let values = c
                .values
                .iter()
                .map(|v| {
                    let bad = || {
                        format!(
                            "QueryValidationError: value '{v}' is not valid for {}",
                            c.field
                        )
                    };
                    Ok(match kind {
                        "id" | "str" => V::S(v.clone()),
                        "num" => V::N(v.trim().parse().map_err(|_| bad())?),
                        "time" => V::T(parse_time(v).ok_or_else(bad)?),
                        "date" => V::D(
                            NaiveDate::parse_from_str(v.trim(), "%Y-%m-%d").map_err(|_| bad())?,
                        ),
                        _ => V::B(v.trim().parse().map_err(|_| bad())?),
                    })
                })
                .collect::<Result<Vec<V>, String>>()?;
            Ok(Compiled {
                field: c.field.to_ascii_lowercase(),
                op: c.op,
                values,
            })
        })
        .collect()
}

fn inv_value(t: &Tenant, inv: &Invoice, field: &str) -> V {
    match field {
        "id" => V::S(inv.id.clone()),
        "metadata.lastupdatedtime" => V::T(trunc(inv.updated)),
        "metadata.createtime" => V::T(trunc(inv.created)),
        "balance" => V::N(inv.balance()),
        "totalamt" => V::N(if inv.status == Status::Voided {
            Decimal::ZERO
        } else {
            inv.total
        }),
        "txndate" => V::D(inv.issue_date),
        "duedate" => V::D(inv.due_date),
        "docnumber" => V::S(inv.number.clone()),
        "customerref" => V::S(t.customers[inv.customer].id.clone()),
        _ => V::S(inv.email_status.clone()),
    }
}

fn cust_value(c: &Customer, field: &str) -> V {
    match field {
        "id" => V::S(c.id.clone()),
        "metadata.lastupdatedtime" => V::T(trunc(c.updated)),
        "metadata.createtime" => V::T(trunc(c.created)),
        "balance" => V::N(c.balance),
        "displayname" => V::S(c.name.clone()),
        "primaryemailaddr" => V::S(c.email.clone()),
        "givenname" => V::S(c.given_name.clone()),
        "familyname" => V::S(c.family_name.clone()),
        "companyname" => V::S(c.company.clone().unwrap_or_default()),
        _ => V::B(true),
    }
}

/// QuickBooks timestamps have second precision on the wire; compare them that way.
fn trunc(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

fn like(pattern: &str, s: &str) -> bool {
    let p = pattern.to_ascii_lowercase();
    let s = s.to_ascii_lowercase();
    match (p.strip_prefix('%'), p.strip_suffix('%')) {
        (Some(_), Some(_)) if p.len() >= 2 => s.contains(&p[1..p.len() - 1]),
        (Some(rest), _) => s.ends_with(rest),
        (_, Some(rest)) => s.starts_with(rest),
        _ => s == p,
    }
}

fn matches(cs: &[Compiled], get: impl Fn(&str) -> V) -> bool {
    cs.iter().all(|c| {
        let v = get(&c.field);
        match c.op {
            Op::In => c
                .values
                .iter()
                .any(|x| cmp_v(&v, x) == Some(Ordering::Equal)),
            Op::Like => match (&v, &c.values[0]) {
                (V::S(s), V::S(p)) => like(p, s),
                _ => false,
            },
            op => {
                let Some(o) = cmp_v(&v, &c.values[0]) else {
                    return false;
                };
                match op {
                    Op::Eq => o == Ordering::Equal,
                    Op::Ne => o != Ordering::Equal,
                    Op::Lt => o == Ordering::Less,
                    Op::Le => o != Ordering::Greater,
                    Op::Gt => o == Ordering::Greater,
                    _ => o != Ordering::Less,
                }
            }
        }
    })
}

fn id_key(id: &str) -> (usize, String) {
    (id.len(), id.to_string())
}

/// The ordered indexes of the invoices matching a query, cached per tenant generation so
/// paging through a large result costs one scan, not one per page.
fn invoice_matches(t: &mut Tenant, q: &Query, cs: &[Compiled]) -> Arc<Vec<usize>> {
    let sig = q.signature();
    if let Some((g, v)) = t.idx.query_cache.get(&sig) {
        if *g == t.idx.generation {
            return v.clone();
        }
    }
    let live = |inv: &Invoice| inv.status != Status::Deleted;
    let order: Vec<(String, bool)> = q
        .order
        .iter()
        .map(|(f, d)| (f.to_ascii_lowercase(), *d))
        .collect();
    let by_updated = order.len() == 1 && order[0].0 == "metadata.lastupdatedtime";
    let mut out: Vec<usize> = if by_updated {
        // Start at the lower bound on LastUpdatedTime, if there is one.
        let lower = cs
            .iter()
            .filter(|c| {
                c.field == "metadata.lastupdatedtime" && matches!(c.op, Op::Ge | Op::Gt | Op::Eq)
            })
            .filter_map(|c| match c.values[0] {
                V::T(x) => Some(x),
                _ => None,
            });
        let from = lower.max().unwrap_or(DateTime::<Utc>::MIN_UTC);
        let iter = t.idx.by_updated.range((from, 0)..).map(|&(_, i)| i);
        let v: Vec<usize> = iter
            .filter(|&i| live(&t.invoices[i]) && matches(cs, |f| inv_value(t, &t.invoices[i], f)))
            .collect();
        if order[0].1 {
            let mut all: Vec<usize> = t
                .idx
                .by_updated
                .iter()
                .rev()
                .map(|&(_, i)| i)
                .filter(|&i| {
                    live(&t.invoices[i]) && matches(cs, |f| inv_value(t, &t.invoices[i], f))
                })
                .collect();
            all.shrink_to_fit();
            all
        } else {
            v
        }
    } else {
        // Without ORDERBY results come in Id order, which is creation order here.
        let mut v: Vec<usize> = (0..t.invoices.len())
            .filter(|&i| live(&t.invoices[i]) && matches(cs, |f| inv_value(t, &t.invoices[i], f)))
            .collect();
        if !order.is_empty() {
            v.sort_by(|&a, &b| {
                for (f, desc) in &order {
                    let o = if f == "id" {
                        id_key(&t.invoices[a].id).cmp(&id_key(&t.invoices[b].id))
                    } else {
                        cmp_v(
                            &inv_value(t, &t.invoices[a], f),
                            &inv_value(t, &t.invoices[b], f),
                        )
                        .unwrap_or(Ordering::Equal)
                    };
                    let o = if *desc { o.reverse() } else { o };
                    if o != Ordering::Equal {
                        return o;
                    }
                }
                a.cmp(&b)
            });
        }
        v
    };
    out.shrink_to_fit();
    let out = Arc::new(out);
    if t.idx.query_cache.len() > 64 {
        t.idx.query_cache.clear();
    }
    t.idx
        .query_cache
        .insert(sig, (t.idx.generation, out.clone()));
    out
}

fn query(w: &mut World, ti: usize, text: &str) -> Reply {
    let now = w.now;
    let q = match crate::qbo_query::parse(text) {
        Ok(q) => q,
        Err(e) => return validation(now, "4000", "Error parsing query", &e, ""),
    };
    let cs = match compile(q.entity, &q.conds) {
        Ok(c) => c,
        Err(e) => return validation(now, "4001", "Invalid query", &e, ""),
    };
    for (f, _) in &q.order {
        if field_kind(q.entity, f).is_none() {
            return validation(
                now,
                "4001",
                "Invalid query",
                &format!("QueryValidationError: property '{f}' is not sortable"),
                "",
            );
        }
    }
    let t = &mut w.tenants[ti];
    let (name, items, total): (&str, Vec<Value>, usize) = match q.entity {
        Entity::Invoice => {
            let m = invoice_matches(t, &q, &cs);
            let page = m
                .iter()
                .skip(q.start - 1)
                .take(if q.count { 0 } else { q.max });
            (
                "Invoice",
                page.map(|&i| render_invoice(t, &t.invoices[i])).collect(),
                m.len(),
            )
        }
        Entity::Customer => {
            let mut v: Vec<usize> = (0..t.customers.len())
                .filter(|&i| matches(&cs, |f| cust_value(&t.customers[i], f)))
                .collect();
            let order: Vec<(String, bool)> = q
                .order
                .iter()
                .map(|(f, d)| (f.to_ascii_lowercase(), *d))
                .collect();
            v.sort_by(|&a, &b| {
                for (f, desc) in &order {
                    let o = if f == "id" {
                        id_key(&t.customers[a].id).cmp(&id_key(&t.customers[b].id))
                    } else {
                        cmp_v(
                            &cust_value(&t.customers[a], f),
                            &cust_value(&t.customers[b], f),
                        )
                        .unwrap_or(Ordering::Equal)
                    };
                    let o = if *desc { o.reverse() } else { o };
                    if o != Ordering::Equal {
                        return o;
                    }
                }
                a.cmp(&b)
            });
            let total = v.len();
            (
                "Customer",
                v.into_iter()
                    .skip(q.start - 1)
                    .take(if q.count { 0 } else { q.max })
                    .map(|i| render_customer(t, &t.customers[i]))
                    .collect(),
                total,
            )
        }
    };
    let qr = if q.count {
        json!({"totalCount": total})
    } else if items.is_empty() {
        json!({})
    } else {
        let n = items.len();
        json!({name: items, "startPosition": q.start, "maxResults": n, "totalCount": n})
    };
    Reply::json(200, &json!({"QueryResponse": qr, "time": qbo_time_ms(now)}))
}

// ---- cdc ----

fn cdc(w: &World, ti: usize, req: &Req) -> Reply {
    let now = w.now;
    let Some(entities) = param(&req.query, "entities").filter(|e| !e.trim().is_empty()) else {
        return validation(
            now,
            "2020",
            "Required param missing, need to supply the required value for the API",
            "Required parameter entities is missing in the request",
            "entities",
        );
    };
    let Some(since) = param(&req.query, "changedSince").and_then(parse_time) else {
        return validation(
            now,
            "2020",
            "Required param missing, need to supply the required value for the API",
            "Required parameter changedSince is missing or not a date-time",
            "changedSince",
        );
    };
    if since < now - Duration::days(30) {
        return validation(
            now,
            "2050",
            "Invalid changedSince",
            "changedSince cannot be more than 30 days in the past",
            "changedSince",
        );
    }
    let t = &w.tenants[ti];
    let mut budget = 1000usize;
    let mut out = Vec::new();
    for e in entities.split(',').map(str::trim) {
        let mut items: Vec<(DateTime<Utc>, Value)> = Vec::new();
        match e.to_ascii_lowercase().as_str() {
            "invoice" => {
                for &(u, i) in t.idx.by_updated.range((since, 0)..) {
                    if t.invoices[i].status != Status::Deleted {
                        items.push((u, render_invoice(t, &t.invoices[i])));
                    }
                }
                for d in t.deleted.iter().filter(|d| d.at >= since) {
                    items.push((d.at, json!({"domain": "QBO", "status": "Deleted", "Id": d.id, "MetaData": {"LastUpdatedTime": qbo_time(d.at)}})));
                }
            }
            "customer" => {
                for c in t.customers.iter().filter(|c| c.updated >= since) {
                    items.push((c.updated, render_customer(t, c)));
                }
            }
            _ => {}
        }
        items.sort_by_key(|(u, _)| *u);
        items.truncate(budget);
        budget -= items.len();
        if items.is_empty() {
            out.push(json!({}));
        } else {
            let n = items.len();
            let name = if e.eq_ignore_ascii_case("invoice") {
                "Invoice"
            } else {
                "Customer"
            };
            out.push(json!({name: items.into_iter().map(|(_, v)| v).collect::<Vec<_>>(), "startPosition": 1, "maxResults": n, "totalCount": n}));
        }
    }
    Reply::json(
        200,
        &json!({"CDCResponse": [{"QueryResponse": out}], "time": qbo_time_ms(now)}),
    )
}

// ---- writes ----

fn body_json(now: DateTime<Utc>, req: &Req) -> Result<Map<String, Value>, Reply> {
    match serde_json::from_slice::<Value>(&req.body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(validation(
            now,
            "2010",
            "Request has invalid or unsupported property",
            "The request body must be a JSON object",
            "",
        )),
        Err(e) => Err(validation(
            now,
            "2010",
            "Request has invalid or unsupported property",
            &format!("Request body is not valid JSON: {e}"),
            "",
        )),
    }
}

fn parse_lines(now: DateTime<Utc>, v: &Value, existing: &[Line]) -> Result<Vec<Line>, Reply> {
    let Some(arr) = v.as_array() else {
        return Err(validation(
            now,
            "2010",
            "Request has invalid or unsupported property",
            "Line must be an array",
            "Line",
        ));
    };
    let mut out = Vec::new();
    for l in arr {
        let dt = l.get("DetailType").and_then(Value::as_str).unwrap_or("");
        if dt == "SubTotalLineDetail" {
            continue;
        }
        if dt != "SalesItemLineDetail" {
            return Err(validation(
                now,
                "2020",
                "Required param missing, need to supply the required value for the API",
                "Required parameter Line.DetailType is missing or not SalesItemLineDetail",
                "Line.DetailType",
            ));
        }
        let detail = l.get("SalesItemLineDetail").cloned().unwrap_or(json!({}));
        let qty = detail.get("Qty").and_then(parse_money);
        let unit = detail.get("UnitPrice").and_then(parse_money);
        let amount = match l
            .get("Amount")
            .and_then(parse_money)
            .or_else(|| qty.zip(unit).map(|(q, u)| q * u))
        {
            Some(a) if a >= Decimal::ZERO => a.round_dp(2),
            _ => {
                return Err(validation(
                    now,
                    "2020",
                    "Required param missing, need to supply the required value for the API",
                    "Required parameter Line.Amount is missing or negative",
                    "Line.Amount",
                ))
            }
        };
        let item_ref = detail.get("ItemRef");
        let id = l
            .get("Id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .filter(|id| existing.iter().any(|e| &e.id == id));
        let id = id.unwrap_or_else(|| {
            (existing
                .iter()
                .chain(out.iter())
                .filter_map(|e: &Line| e.id.parse::<u64>().ok())
                .max()
                .unwrap_or(0)
                + 1)
            .to_string()
        });
        out.push(Line {
            id,
            description: l
                .get("Description")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            item: item_ref
                .and_then(|r| r.get("name"))
                .and_then(Value::as_str)
                .unwrap_or("Services")
                .to_string(),
            item_id: item_ref
                .and_then(|r| r.get("value"))
                .and_then(Value::as_str)
                .unwrap_or("1")
                .to_string(),
            quantity: qty.unwrap_or(Decimal::ONE),
            unit_amount: unit.unwrap_or(amount),
            amount,
        });
    }
    if out.is_empty() {
        return Err(validation(
            now,
            "2020",
            "Required param missing, need to supply the required value for the API",
            "Required parameter Line is missing in the request",
            "Line",
        ));
    }
    Ok(out)
}

fn date_field(
    now: DateTime<Utc>,
    m: &Map<String, Value>,
    k: &str,
) -> Result<Option<NaiveDate>, Reply> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map(Some)
                .map_err(|_| {
                    validation(
                        now,
                        "2010",
                        "Request has invalid or unsupported property",
                        &format!("{k} must be a date (YYYY-MM-DD)"),
                        k,
                    )
                })
        }
        Some(_) => Err(validation(
            now,
            "2010",
            "Request has invalid or unsupported property",
            &format!("{k} must be a date (YYYY-MM-DD)"),
            k,
        )),
    }
}

fn str_at<'a>(m: &'a Map<String, Value>, k: &str, inner: Option<&str>) -> Option<&'a str> {
    let v = m.get(k)?;
    match inner {
        Some(i) => v.get(i)?.as_str(),
        None => v.as_str(),
    }
}

fn write_invoice(w: &mut World, t: usize, req: &Req, rid: Option<&str>) -> Reply {
    let now = w.now;
    let m = match body_json(now, req) {
        Ok(m) => m,
        Err(r) => return r,
    };
    match param(&req.query, "operation") {
        Some("delete") | Some("void") => {
            return void_or_delete(w, t, &m, param(&req.query, "operation") == Some("delete"))
        }
        Some(op) if op != "update" => {
            return validation(
                now,
                "2050",
                "Invalid operation",
                &format!("operation {op} is not supported"),
                "operation",
            )
        }
        _ => {}
    }
    if m.contains_key("Id") {
        update_invoice(w, t, &m, rid)
    } else {
        create_invoice(w, t, &m, rid)
    }
}

fn create_invoice(w: &mut World, t: usize, m: &Map<String, Value>, rid: Option<&str>) -> Reply {
    let now = w.now;
    let Some(cref) = str_at(m, "CustomerRef", Some("value")) else {
        return validation(
            now,
            "2020",
            "Required param missing, need to supply the required value for the API",
            "Required parameter CustomerRef is missing in the request",
            "CustomerRef",
        );
    };
    let Some(cust) = w.tenants[t].customer_index(cref) else {
        return validation(
            now,
            "2500",
            "Invalid Reference Id",
            &format!("Invalid Reference Id : Customer {cref} does not exist"),
            "CustomerRef",
        );
    };
    let Some(line_v) = m.get("Line") else {
        return validation(
            now,
            "2020",
            "Required param missing, need to supply the required value for the API",
            "Required parameter Line is missing in the request",
            "Line",
        );
    };
    let lines = match parse_lines(now, line_v, &[]) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let (txn, due) = match (date_field(now, m, "TxnDate"), date_field(now, m, "DueDate")) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let base = w.tenants[t].base_currency.clone();
    if let Some(c) = str_at(m, "CurrencyRef", Some("value")) {
        if c != base {
            return validation(
                now,
                "6000",
                "A business validation error has occurred while processing your request",
                &format!(
                    "Business Validation Error: multicurrency is off; the currency must be {base}"
                ),
                "CurrencyRef",
            );
        }
    }
    let number = match str_at(m, "DocNumber", None) {
        Some(n) if n.chars().count() > 21 => return validation(now, "2050", "String length is either shorter or longer than supported by specification", "DocNumber is at most 21 characters", "DocNumber"),
        Some(n) if w.tenants[t].idx.by_number.contains_key(n) => {
            return validation(now, "6140", "Duplicate Document Number Error", &format!("Duplicate Document Number Error : You must specify a different number. This number has already been used. DocNumber={n}"), "DocNumber")
        }
        Some(n) => n.to_string(),
        None => {
            let tenant = &mut w.tenants[t];
            loop {
                tenant.next_number += 1;
                let n = format!("{}", 1000 + tenant.next_number);
                if !tenant.idx.by_number.contains_key(&n) {
                    break n;
                }
            }
        }
    };
    let txn = txn.unwrap_or_else(|| qbo_local_date(now));
    let total: Decimal = lines.iter().map(|l| l.amount).sum();
    let tenant = &mut w.tenants[t];
    let id = tenant.next_numeric();
    let email = str_at(m, "BillEmail", Some("Address"))
        .map(str::to_string)
        .or_else(|| Some(tenant.customers[cust].email.clone()))
        .filter(|e| !e.is_empty());
    let inv = Invoice {
        id,
        number: number.clone(),
        kind: "ACCREC".into(),
        customer: cust,
        currency: base,
        issue_date: txn,
        due_date: due.unwrap_or(txn + Duration::days(30)),
        lines,
        total,
        paid: Decimal::ZERO,
        credited: Decimal::ZERO,
        credit_id: None,
        payments: Vec::new(),
        status: Status::Authorised,
        sync_token: 0,
        created: now,
        updated: now,
        email_status: str_at(m, "EmailStatus", None)
            .unwrap_or("NotSet")
            .to_string(),
        delivery_time: None,
        bill_email: email,
        sent_to_contact: false,
        reference: String::new(),
        private_note: str_at(m, "PrivateNote", None).unwrap_or("").to_string(),
        customer_memo: str_at(m, "CustomerMemo", Some("value"))
            .unwrap_or("")
            .to_string(),
        history: Vec::new(),
        reminders: 0,
        fees: 0,
        fee_for: None,
        fully_paid_on: None,
    };
    let text = format!("{} {}", inv.private_note, inv.customer_memo);
    let i = w.tenants[t].add_invoice(inv);
    if let Some(orig) = w.named_original(t, &text, &number) {
        w.tenants[t].invoices[i].fee_for = Some(orig);
        let detail = json!({"fee_invoice_id": w.tenants[t].invoices[i].id, "fee_doc_number": number, "amount": crate::world::money_str(total), "currency": w.tenants[t].invoices[i].currency});
        w.record_effect(t, orig, "fee", rid, detail);
    }
    let tenant = &w.tenants[t];
    Reply::json(
        200,
        &json!({"Invoice": render_invoice(tenant, &tenant.invoices[i]), "time": qbo_time_ms(now)}),
    )
}

fn current<'a>(
    w: &'a World,
    t: usize,
    m: &Map<String, Value>,
) -> Result<(usize, &'a Invoice), Reply> {
    let now = w.now;
    let id = match m.get("Id") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => {
            return Err(validation(
                now,
                "2020",
                "Required param missing, need to supply the required value for the API",
                "Required parameter Id is missing in the request",
                "Id",
            ))
        }
    };
    let tenant = &w.tenants[t];
    let Some(i) = tenant
        .invoice_index(&id)
        .filter(|&i| tenant.invoices[i].status != Status::Deleted)
    else {
        return Err(not_found(now, "Invoice", &id));
    };
    let inv = &tenant.invoices[i];
    let Some(st) = m.get("SyncToken").and_then(Value::as_str) else {
        return Err(validation(
            now,
            "2020",
            "Required param missing, need to supply the required value for the API",
            "Required parameter SyncToken is missing in the request",
            "SyncToken",
        ));
    };
    if st != inv.sync_token.to_string() {
        return Err(validation(
            now,
            "5010",
            "Stale Object Error",
            &format!("Stale Object Error : You and another user were working on the same thing. The other user finished before you did, so your work was not saved. (SyncToken {st}, current {})", inv.sync_token),
            "",
        ));
    }
    Ok((i, inv))
}

fn update_invoice(w: &mut World, t: usize, m: &Map<String, Value>, rid: Option<&str>) -> Reply {
    let now = w.now;
    let (i, inv) = match current(w, t, m) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let sparse = m.get("sparse").and_then(Value::as_bool).unwrap_or(false);
    let old_total = inv.total;
    let old_note = inv.private_note.clone();
    let old_line_count = inv.lines.len();
    let committed = inv.paid + inv.credited;
    if inv.status == Status::Voided {
        return validation(
            now,
            "6000",
            "A business validation error has occurred while processing your request",
            "Business Validation Error: a voided transaction cannot be edited",
            "",
        );
    }
    if !sparse && (!m.contains_key("CustomerRef") || !m.contains_key("Line")) {
        return validation(now, "2020", "Required param missing, need to supply the required value for the API", "A full update needs CustomerRef and Line; send \"sparse\": true to change only some fields", "");
    }
    let lines = match m.get("Line") {
        Some(v) => match parse_lines(now, v, &inv.lines) {
            Ok(l) => Some(l),
            Err(r) => return r,
        },
        None => None,
    };
    let new_total = lines
        .as_ref()
        .map(|l| l.iter().map(|x| x.amount).sum::<Decimal>());
    if new_total.is_some_and(|n| n < committed) {
        return validation(now, "6000", "A business validation error has occurred while processing your request", "Business Validation Error: the invoice total cannot be less than the payments and credits applied to it", "Line");
    }
    let (txn, due) = match (date_field(now, m, "TxnDate"), date_field(now, m, "DueDate")) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let cust = match str_at(m, "CustomerRef", Some("value")) {
        Some(c) => match w.tenants[t].customer_index(c) {
            Some(x) => Some(x),
            None => {
                return validation(
                    now,
                    "2500",
                    "Invalid Reference Id",
                    &format!("Invalid Reference Id : Customer {c} does not exist"),
                    "CustomerRef",
                )
            }
        },
        None => None,
    };
    if let Some(n) = str_at(m, "DocNumber", None) {
        if w.tenants[t].idx.by_number.get(n).is_some_and(|&j| j != i) {
            return validation(
                now,
                "6140",
                "Duplicate Document Number Error",
                &format!("Duplicate Document Number Error : DocNumber={n}"),
                "DocNumber",
            );
        }
    }
    let present = |k: &str| m.contains_key(k);
    let tenant = &mut w.tenants[t];
    // Moving an invoice to another customer moves its balance too.
    if let Some(c) = cust {
        let bal = tenant.invoices[i].balance();
        let old = tenant.invoices[i].customer;
        tenant.customers[old].balance -= bal;
        tenant.customers[c].balance += bal;
        tenant.invoices[i].customer = c;
    }
    tenant.modify(i, Some(now), |inv| {
        if let Some(l) = lines {
            inv.lines = l;
        }
        if let Some(n) = new_total {
            inv.total = n;
        }
        if let Some(d) = txn {
            inv.issue_date = d;
        }
        if let Some(n) = str_at(m, "DocNumber", None) {
            inv.number = n.to_string();
        }
        if present("DueDate") || !sparse {
            inv.due_date = due.unwrap_or(inv.issue_date + Duration::days(30));
        }
        if present("PrivateNote") || !sparse {
            inv.private_note = str_at(m, "PrivateNote", None).unwrap_or("").to_string();
        }
        if present("CustomerMemo") || !sparse {
            inv.customer_memo = str_at(m, "CustomerMemo", Some("value"))
                .unwrap_or("")
                .to_string();
        }
        if present("BillEmail") || !sparse {
            inv.bill_email = str_at(m, "BillEmail", Some("Address")).map(str::to_string);
        }
        if let Some(s) = str_at(m, "EmailStatus", None) {
            inv.email_status = s.to_string();
        }
        if inv.status == Status::Paid && inv.balance() > Decimal::ZERO {
            inv.status = Status::Authorised;
        }
        inv.sync_token += 1;
    });
    let inv = &w.tenants[t].invoices[i];
    let (new_total, new_note, new_count, currency) = (
        inv.total,
        inv.private_note.clone(),
        inv.lines.len(),
        inv.currency.clone(),
    );
    if new_total > old_total && new_count > old_line_count {
        let detail = json!({"fee_line": true, "amount": crate::world::money_str(new_total - old_total), "currency": currency});
        w.record_effect(t, i, "fee", rid, detail);
    }
    if new_note != old_note && !new_note.is_empty() {
        w.record_effect(t, i, "note", rid, json!({"text": new_note}));
    }
    let tenant = &w.tenants[t];
    Reply::json(
        200,
        &json!({"Invoice": render_invoice(tenant, &tenant.invoices[i]), "time": qbo_time_ms(now)}),
    )
}

fn void_or_delete(w: &mut World, t: usize, m: &Map<String, Value>, delete: bool) -> Reply {
    let now = w.now;
    let (i, inv) = match current(w, t, m) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if !inv.payments.is_empty() && delete {
        return validation(
            now,
            "6000",
            "A business validation error has occurred while processing your request",
            "Business Validation Error: an invoice with payments cannot be deleted",
            "",
        );
    }
    let id = inv.id.clone();
    let tenant = &mut w.tenants[t];
    tenant.modify(i, Some(now), |inv| {
        inv.status = if delete {
            Status::Deleted
        } else {
            Status::Voided
        };
        inv.sync_token += 1;
    });
    if delete {
        tenant.deleted.push(DeletedStub {
            id: id.clone(),
            at: now,
        });
        return Reply::json(
            200,
            &json!({"Invoice": {"domain": "QBO", "status": "Deleted", "Id": id}, "time": qbo_time_ms(now)}),
        );
    }
    Reply::json(
        200,
        &json!({"Invoice": render_invoice(tenant, &tenant.invoices[i]), "time": qbo_time_ms(now)}),
    )
}

fn send_invoice(w: &mut World, t: usize, req: &Req, id: &str, rid: Option<&str>) -> Reply {
    let now = w.now;
    let ct = req
        .header("content-type")
        .unwrap_or("")
        .to_ascii_lowercase();
    if !ct.starts_with("application/octet-stream") {
        return fault(
            now,
            415,
            "2010",
            "Unsupported Media Type",
            "invoice/{id}/send takes Content-Type: application/octet-stream and an empty body",
            "",
            "ValidationFault",
        );
    }
    let tenant = &w.tenants[t];
    let Some(i) = tenant
        .invoice_index(id)
        .filter(|&i| tenant.invoices[i].status != Status::Deleted)
    else {
        return not_found(now, "Invoice", id);
    };
    let to = match param(&req.query, "sendTo") {
        Some(a) if valid_email(a) => a.to_string(),
        Some(a) => {
            return validation(
                now,
                "2050",
                "Invalid Email Address",
                &format!("sendTo {a} is not a valid email address"),
                "sendTo",
            )
        }
        None => match &tenant.invoices[i].bill_email {
            Some(a) => a.clone(),
            None => {
                return validation(
                    now,
                    "6000",
                    "A business validation error has occurred while processing your request",
                    "Business Validation Error: the invoice has no BillEmail; pass sendTo",
                    "BillEmail",
                )
            }
        },
    };
    let to2 = to.clone();
    w.tenants[t].modify(i, Some(now), move |inv| {
        inv.email_status = "EmailSent".into();
        inv.delivery_time = Some(now);
        inv.bill_email = Some(to2);
        inv.sync_token += 1;
    });
    w.record_effect(t, i, "email", rid, json!({"to": to}));
    let tenant = &w.tenants[t];
    Reply::json(
        200,
        &json!({"Invoice": render_invoice(tenant, &tenant.invoices[i]), "time": qbo_time_ms(now)}),
    )
}

/// QuickBooks `GET /v3/company/{realm}/invoice/{id}/pdf`; `None` for any other request.
fn quickbooks_pdf(w: &World, t: usize, req: &Req) -> Option<Reply> {
    let s = &req.segs;
    let is_pdf = req.method == Method::GET
        && s.len() == 6
        && s[3].eq_ignore_ascii_case("invoice")
        && s[5].eq_ignore_ascii_case("pdf");
    if !is_pdf {
        return None;
    }
    if !crate::documents::wants_pdf(req) {
        return Some(Reply::text(
            406,
            "Not Acceptable: send Accept: application/pdf for an invoice PDF",
        ));
    }
    let tenant = &w.tenants[t];
    Some(
        match tenant
            .invoice_index(&s[4])
            .filter(|&i| tenant.invoices[i].status != Status::Deleted)
        {
            Some(i) => crate::documents::pdf_reply(tenant, &tenant.invoices[i]),
            None => not_found(w.now, "Invoice", &s[4]),
        },
    )
}

/// Adds `InvoiceLink` to a QuickBooks invoice read that asked for it
/// (`include=invoiceLink`) when the company would give one.
fn quickbooks_include(t: &Tenant, inv: &Invoice, req: &Req, rendered: &mut Value) {
    let asked = crate::util::param(&req.query, "include").is_some_and(|v| {
        v.split(',')
            .any(|x| x.trim().eq_ignore_ascii_case("invoiceLink"))
    });
    if let (true, Some(link), Value::Object(m)) = (
        asked,
        crate::documents::quickbooks_invoice_link(t, inv),
        rendered,
    ) {
        m.insert("InvoiceLink".into(), json!(link));
    }
}
