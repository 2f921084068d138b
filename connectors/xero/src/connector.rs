//! The Xero connector: one organisation seen through the shared connection runtime.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};
use overdued_connector::runtime::{ConnectionRuntime, HttpResponse, StatsSnapshot};
use overdued_connector::{
    ActionReceipt, Clock, ConnectionId, Connector, ConnectorError, Customer, FeePosting,
    IdempotencyKey, InvoiceSnapshot, LateFeeRequest, NoteRequest, ReminderRequest, SyncCursor,
    SyncMode, SyncPage, System, TokenStore, FEE_MARKER,
};
use reqwest::Method;
use serde_json::{json, Value};

use crate::budget::DayBudget;
use crate::dates::{format_date, if_modified_since};
use crate::errors::{classify, malformed, truncate_chars, XeroError};
use crate::settings::XeroSettings;
use crate::tenant::{looks_like_tenant_id, parse_connections, resolve_tenant, XeroTenant};
use crate::wire::{
    tombstone, ContactsEnvelope, InvoicesEnvelope, NoLines, Pagination, XeroInvoice,
};

mod documents;

/// The most invoices or contacts one list call returns.
pub const PAGE_SIZE: u32 = 1000;
/// The most ids one `IDs=` call carries (longer URLs fail).
pub const IDS_PER_CALL: usize = 50;
/// Xero's limit on a history note.
pub const NOTE_MAX_CHARS: usize = 250;
/// Xero's limit on an `Idempotency-Key`.
pub const IDEMPOTENCY_KEY_MAX: usize = 128;
/// `If-Modified-Since` compares whole seconds; reading one second further back means an
/// edit made in the same second as the newest one already seen is read again, not lost.
const OVERLAP: TimeDelta = TimeDelta::seconds(1);

const STATUSES_OPEN: &str = "AUTHORISED,SUBMITTED";
const STATUSES_ALL: &str = "DRAFT,SUBMITTED,AUTHORISED,PAID,VOIDED,DELETED";
const WHERE_SALES: &str = "Type==\"ACCREC\"";
const WHERE_SALES_OWING: &str = "Type==\"ACCREC\" AND AmountDue>0";

/// One Xero organisation. Cheap to clone: clones share the runtime (tokens, limiter),
/// the day budget and the resolved tenant.
#[derive(Clone)]
pub struct XeroConnector {
    settings: XeroSettings,
    runtime: ConnectionRuntime,
    clock: Arc<dyn Clock>,
    budget: Arc<DayBudget>,
    tenant: Arc<tokio::sync::OnceCell<String>>,
}

impl std::fmt::Debug for XeroConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XeroConnector")
            .field("connection", &self.settings.connection)
            .field("tenant", &self.settings.tenant)
            .finish_non_exhaustive()
    }
}

/// One HTTP call as the connector describes it; the runtime adds the bearer token.
pub(crate) struct Call<'a> {
    op: &'a str,
    method: Method,
    url: String,
    pub(crate) query: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
    key: Option<&'a IdempotencyKey>,
    if_modified_since: Option<String>,
    /// What the answer should be: JSON, or a rendered document such as a PDF.
    accept: &'static str,
}

impl<'a> Call<'a> {
    pub(crate) fn get(op: &'a str, url: String) -> Self {
        Call {
            op,
            method: Method::GET,
            url,
            query: Vec::new(),
            body: None,
            key: None,
            if_modified_since: None,
            accept: "application/json",
        }
    }

    fn write(
        op: &'a str,
        method: Method,
        url: String,
        body: &Value,
        key: &'a IdempotencyKey,
    ) -> Self {
        Call {
            op,
            method,
            url,
            query: Vec::new(),
            body: Some(body.to_string().into_bytes()),
            key: Some(key),
            if_modified_since: None,
            accept: "application/json",
        }
    }
}

impl XeroConnector {
    /// A connector for the organisation `settings.tenant` names. No call is made until
    /// the first operation.
    pub fn new(
        settings: XeroSettings,
        token_store: Arc<dyn TokenStore>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, XeroError> {
        if settings.fee_account_code.trim().is_empty() {
            return Err(XeroError::Settings("fee_account_code is empty".into()));
        }
        if settings.tenant.trim().is_empty() {
            return Err(XeroError::Settings(
                "tenant is empty: give the organisation's tenant id or name".into(),
            ));
        }
        let runtime = ConnectionRuntime::new(
            settings.connection.clone(),
            settings.runtime_settings(),
            settings.oauth_client(),
            settings.initial_refresh_token.clone(),
            token_store,
            clock.clone(),
        )?;
        Ok(Self::with_runtime(settings, runtime, clock))
    }

    /// A connector on a runtime built elsewhere (tests, custom token sources).
    pub fn with_runtime(
        settings: XeroSettings,
        runtime: ConnectionRuntime,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let budget = Arc::new(DayBudget::new(
            settings.connection.clone(),
            settings.limits,
            settings.day_reserve,
        ));
        XeroConnector {
            settings,
            runtime,
            clock,
            budget,
            tenant: Arc::new(tokio::sync::OnceCell::new()),
        }
    }

    pub fn settings(&self) -> &XeroSettings {
        &self.settings
    }

    pub fn runtime(&self) -> &ConnectionRuntime {
        &self.runtime
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.runtime.stats()
    }

    pub fn needs_reconnect(&self) -> bool {
        self.runtime.needs_reconnect()
    }

    /// The day budget: calls left today and whether sync reads are yielding.
    pub fn day_budget(&self) -> &DayBudget {
        &self.budget
    }

    /// The organisations the stored grant reaches.
    pub async fn connections(&self) -> Result<Vec<XeroTenant>, ConnectorError> {
        let op = "list Xero connections";
        let url = self.settings.connections_url();
        self.runtime
            .execute(
                op,
                |c| {
                    c.get(&url)
                        .header(reqwest::header::ACCEPT, "application/json")
                },
                |r| parse_connections(op, &r),
            )
            .await
    }

    /// The tenant id every call carries: the configured one when it is an id, else the
    /// organisation of that name among the grant's connections (looked up once).
    pub async fn tenant_id(&self) -> Result<String, ConnectorError> {
        let wanted = self.settings.tenant.trim();
        if looks_like_tenant_id(wanted) {
            return Ok(wanted.to_ascii_lowercase());
        }
        self.tenant
            .get_or_try_init(|| async {
                let reachable = self.connections().await?;
                match resolve_tenant(&reachable, wanted) {
                    Ok(t) => {
                        tracing::info!(connection = %self.settings.connection, tenant_id = %t.tenant_id, tenant_name = %t.tenant_name, "Xero organisation resolved");
                        Ok(t.tenant_id)
                    }
                    Err(e) => {
                        let bound = self.runtime.tokens().current().await.and_then(|t| t.bound_to);
                        // Bound at connect and gone now: the organisation was disconnected.
                        if bound.is_some_and(|b| !reachable.iter().any(|t| t.tenant_id.eq_ignore_ascii_case(&b))) {
                            Err(self.disconnected())
                        } else {
                            Err(ConnectorError::Permanent(e.to_string()))
                        }
                    }
                }
            })
            .await
            .cloned()
    }

    fn disconnected(&self) -> ConnectorError {
        let c = &self.settings.connection;
        ConnectorError::Reauth(format!("Xero organisation {:?} is no longer connected to this grant: run `overdued connect {c}`", self.settings.tenant))
    }

    /// Performs one call for this organisation, classifying what comes back; `parse`
    /// sees only 2xx answers.
    pub(crate) async fn call<T>(
        &self,
        call: Call<'_>,
        parse: impl Fn(&HttpResponse) -> Result<T, ConnectorError>,
    ) -> Result<T, ConnectorError> {
        let tenant = self.tenant_id().await?;
        if let Some(k) = call.key {
            if k.as_str().is_empty() || k.as_str().len() > IDEMPOTENCY_KEY_MAX {
                return Err(ConnectorError::Permanent(format!(
                    "{}: idempotency key must be 1 to {IDEMPOTENCY_KEY_MAX} characters",
                    call.op
                )));
            }
        }
        let forbidden = AtomicBool::new(false);
        let op = call.op;
        let result = self
            .runtime
            .execute(
                op,
                |c| {
                    self.budget.record_call();
                    let mut b = c
                        .request(call.method.clone(), &call.url)
                        .query(&call.query)
                        .header("xero-tenant-id", &tenant)
                        .header(reqwest::header::ACCEPT, call.accept);
                    if let Some(k) = call.key {
                        b = b.header("Idempotency-Key", k.as_str());
                    }
                    if let Some(ims) = &call.if_modified_since {
                        b = b.header(reqwest::header::IF_MODIFIED_SINCE, ims);
                    }
                    if let Some(body) = &call.body {
                        b = b
                            .header(reqwest::header::CONTENT_TYPE, "application/json")
                            .body(body.clone());
                    }
                    b
                },
                |resp| {
                    // A 429's own Retry-After governs it (the runtime pauses the
                    // limiter by it); its remaining-calls headers describe the refusal.
                    let observed = if resp.status == 429 {
                        None
                    } else {
                        self.budget.observe(&resp.headers)
                    };
                    if let Some(pause) = observed {
                        self.runtime
                            .limiter()
                            .pause_until(tokio::time::Instant::now() + pause);
                    }
                    if resp.status == 403 {
                        forbidden.store(true, Ordering::Relaxed);
                    }
                    if !(200..300).contains(&resp.status) {
                        return Err(classify(op, &resp));
                    }
                    parse(&resp)
                },
            )
            .await;
        match result {
            Err(ConnectorError::Permanent(m)) if forbidden.load(Ordering::Relaxed) => {
                // A 403 means either a scope/permission problem or that the organisation
                // was disconnected from the grant; only the latter needs a person to
                // reconnect, and /connections tells them apart.
                match self.connections().await {
                    Ok(reachable)
                        if !reachable
                            .iter()
                            .any(|t| t.tenant_id.eq_ignore_ascii_case(&tenant)) =>
                    {
                        tracing::error!(connection = %self.settings.connection, tenant_id = %tenant, op, "Xero organisation no longer connected to the grant");
                        Err(self.disconnected())
                    }
                    _ => Err(ConnectorError::Permanent(m)),
                }
            }
            r => r,
        }
    }

    fn parse_invoices(op: &str, resp: &HttpResponse) -> Result<InvoicesEnvelope, ConnectorError> {
        serde_json::from_slice(&resp.body).map_err(|e| malformed(op, e))
    }

    /// A page for sync: the invoices without their lines (see [`NoLines`]).
    fn parse_invoice_page(
        op: &str,
        resp: &HttpResponse,
    ) -> Result<InvoicesEnvelope<NoLines>, ConnectorError> {
        serde_json::from_slice(&resp.body).map_err(|e| malformed(op, e))
    }

    /// The one invoice a write answers with, its per-item validation errors checked
    /// (with `summarizeErrors=false` Xero reports them inside a 200).
    fn written_invoice(op: &str, resp: &HttpResponse) -> Result<XeroInvoice, ConnectorError> {
        let inv = Self::parse_invoices(op, resp)?
            .invoices
            .into_iter()
            .next()
            .ok_or_else(|| malformed(op, "no invoice in the answer"))?;
        item_errors(op, &inv)?;
        Ok(inv)
    }

    fn to_snapshots<L>(&self, invoices: &[XeroInvoice<L>]) -> Vec<InvoiceSnapshot> {
        let mut out = Vec::with_capacity(invoices.len());
        for inv in invoices {
            match inv.to_snapshot(&self.settings.connection) {
                Ok(s) => out.push(s),
                // One unreadable invoice must not stall the sync of all the others.
                Err(e) => {
                    tracing::error!(connection = %self.settings.connection, invoice = %inv.invoice_id, error = %e, "skipping an invoice Xero sent incomplete")
                }
            }
        }
        out
    }

    async fn read_invoices_by_id(
        &self,
        ids: &[String],
    ) -> Result<Vec<XeroInvoice>, ConnectorError> {
        let op = "read Xero invoices by id";
        let mut call = Call::get(op, self.settings.api("Invoices"));
        call.query.push(("IDs", ids.join(",")));
        let env = self.call(call, |r| Self::parse_invoices(op, r)).await?;
        Ok(env.invoices)
    }

    async fn read_invoice(&self, id: &str) -> Result<XeroInvoice, ConnectorError> {
        let op = "read Xero invoice";
        let env = self
            .call(
                Call::get(
                    op,
                    self.settings.api(&format!("Invoices/{}", path_segment(id))),
                ),
                |r| Self::parse_invoices(op, r),
            )
            .await?;
        env.invoices
            .into_iter()
            .find(|i| i.invoice_id.eq_ignore_ascii_case(id))
            .ok_or_else(|| ConnectorError::NotFound(format!("Xero invoice {id}")))
    }

    /// The link where the customer can view and pay the invoice online (one call per
    /// invoice, so sync leaves `pay_url` empty and callers fetch it when they need it).
    pub async fn online_invoice_url(
        &self,
        invoice_id: &str,
    ) -> Result<Option<String>, ConnectorError> {
        let op = "read Xero online invoice";
        let url = self.settings.api(&format!(
            "Invoices/{}/OnlineInvoice",
            path_segment(invoice_id)
        ));
        self.call(Call::get(op, url), |r| {
            let v: Value = serde_json::from_slice(&r.body).map_err(|e| malformed(op, e))?;
            Ok(v["OnlineInvoices"].as_array().and_then(|a| {
                a.iter()
                    .find_map(|o| o["OnlineInvoiceUrl"].as_str().map(str::to_string))
            }))
        })
        .await
    }

    fn receipt(&self, created_id: Option<String>, resp_replayed: bool) -> ActionReceipt {
        ActionReceipt {
            created_id,
            at: self.clock.now(),
            replayed: resp_replayed,
        }
    }

    /// The fee's line item, booked to the configured account (and item, if any).
    fn fee_line(
        &self,
        req: &LateFeeRequest,
        amount: overdued_connector::Money,
    ) -> Result<Value, ConnectorError> {
        let mut line = json!({
            "Description": req.description,
            "Quantity": 1,
            "UnitAmount": decimal_number(amount.amount)?,
            "AccountCode": self.settings.fee_account_code,
        });
        if let Some(item) = self
            .settings
            .fee_item_code
            .as_deref()
            .filter(|s| !s.trim().is_empty())
        {
            line["ItemCode"] = json!(item);
        }
        Ok(line)
    }

    async fn fee_as_separate_invoice(
        &self,
        req: &LateFeeRequest,
        key: &IdempotencyKey,
    ) -> Result<ActionReceipt, ConnectorError> {
        let op = "create Xero late-fee invoice";
        let amount = req.amount.rounded();
        let line = self.fee_line(req, amount)?;
        let body = json!({"Invoices": [{
            "Type": "ACCREC",
            "Status": "AUTHORISED",
            "Contact": {"ContactID": req.customer_id},
            "Date": format_date(req.issue_date),
            "DueDate": format_date(req.due_date),
            "CurrencyCode": amount.currency.code(),
            "LineAmountTypes": "NoTax",
            "Reference": fee_reference(&req.invoice_number),
            "LineItems": [line],
        }]});
        let mut call = Call::write(op, Method::PUT, self.settings.api("Invoices"), &body, key);
        call.query.push(("summarizeErrors", "false".into()));
        let (created, replayed) = self
            .call(call, |r| {
                let inv = Self::written_invoice(op, r)?;
                if inv.invoice_id.is_empty() {
                    return Err(malformed(op, "the created invoice has no InvoiceID"));
                }
                Ok((inv.invoice_id, replay_header(r)))
            })
            .await?;
        tracing::debug!(connection = %self.settings.connection, invoice = %req.invoice_id, fee_invoice = %created, amount = %amount, key = %key, replayed, "late-fee invoice created");
        Ok(self.receipt(Some(created), replayed))
    }

    async fn fee_as_line(
        &self,
        req: &LateFeeRequest,
        key: &IdempotencyKey,
    ) -> Result<ActionReceipt, ConnectorError> {
        let op = "add Xero late-fee line";
        let original = self.read_invoice(&req.invoice_id).await?;
        let amount = req.amount.rounded();
        let number = original
            .invoice_number
            .clone()
            .unwrap_or_else(|| req.invoice_id.clone());
        // A retry after a lost answer whose idempotency window has passed: the line is
        // already there, so adding it again would charge twice.
        let already = original.line_items.iter().any(|l| {
            l["Description"].as_str() == Some(req.description.as_str())
                && l["UnitAmount"]
                    .to_string()
                    .parse::<rust_decimal::Decimal>()
                    .ok()
                    == Some(amount.amount)
        });
        if already {
            tracing::debug!(connection = %self.settings.connection, invoice = %req.invoice_id, key = %key, "late-fee line already on the invoice; not adding it again");
            return Ok(self.receipt(None, true));
        }
        let paid =
            original.amount_paid.unwrap_or_default() + original.amount_credited.unwrap_or_default();
        if !original.payments.is_empty() || paid > rust_decimal::Decimal::ZERO {
            return Err(ConnectorError::Permanent(format!(
                "{op}: invoice {number} already has payments or credits ({paid} applied), and Xero does not allow editing its lines; use fee_posting = \"separate_invoice\""
            )));
        }
        let status = original.status.clone().unwrap_or_default();
        if !matches!(status.as_str(), "AUTHORISED" | "SUBMITTED" | "DRAFT") {
            return Err(ConnectorError::Permanent(format!(
                "{op}: invoice {number} is {status}; a line can only be added to an unpaid invoice"
            )));
        }
        let currency = original.currency_code.clone().unwrap_or_default();
        if !currency.eq_ignore_ascii_case(amount.currency.code()) {
            return Err(ConnectorError::Permanent(format!(
                "{op}: the fee is in {} but invoice {number} is in {currency}",
                amount.currency
            )));
        }
        let mut lines: Vec<Value> = original.line_items.iter().map(strip_read_only).collect();
        let line = self.fee_line(req, amount)?;
        lines.push(line);
        let body = json!({"Invoices": [{"InvoiceID": original.invoice_id, "LineItems": lines}]});
        let url = self
            .settings
            .api(&format!("Invoices/{}", path_segment(&req.invoice_id)));
        let mut call = Call::write(op, Method::POST, url, &body, key);
        call.query.push(("summarizeErrors", "false".into()));
        let replayed = self
            .call(call, |r| {
                Self::written_invoice(op, r)?;
                Ok(replay_header(r))
            })
            .await?;
        tracing::debug!(connection = %self.settings.connection, invoice = %req.invoice_id, amount = %amount, key = %key, replayed, "late-fee line added");
        Ok(self.receipt(None, replayed))
    }

    /// Turns a refused email into the reason a person can act on: a contact without an
    /// email address is named, with the invoice.
    async fn explain_email_refusal(&self, invoice_id: &str, original: String) -> ConnectorError {
        match self.read_invoice(invoice_id).await {
            Ok(inv) => {
                let number = inv
                    .invoice_number
                    .clone()
                    .unwrap_or_else(|| invoice_id.to_string());
                match &inv.contact {
                    Some(c) if c.email_address.as_deref().is_none_or(|e| e.trim().is_empty()) => ConnectorError::Permanent(format!(
                        "cannot email Xero invoice {number} ({invoice_id}): contact {:?} ({}) has no email address",
                        c.name.clone().unwrap_or_default(),
                        c.contact_id
                    )),
                    _ => ConnectorError::Permanent(format!("{original} (invoice {number}, status {})", inv.status.unwrap_or_default())),
                }
            }
            Err(_) => ConnectorError::Permanent(original),
        }
    }
}

/// The fee invoice's Reference: names the original and carries the fee marker, so the
/// fee is recognised as one on every later sync.
pub fn fee_reference(original_number: &str) -> String {
    format!("Late fee on {original_number} {FEE_MARKER}")
}

/// A note as Xero accepts it: at most 250 characters, cut on a character boundary.
pub fn note_details(text: &str) -> String {
    let t = text.trim();
    if t.chars().count() <= NOTE_MAX_CHARS {
        return t.to_string();
    }
    let mut s = truncate_chars(t, NOTE_MAX_CHARS - 1);
    s.push('…');
    s
}

/// A decimal as an exact JSON number (serde_json keeps the digits as written).
fn decimal_number(d: rust_decimal::Decimal) -> Result<Value, ConnectorError> {
    serde_json::from_str::<Value>(&d.normalize().to_string())
        .map_err(|e| ConnectorError::Permanent(format!("amount {d} is not a JSON number: {e}")))
}

pub(crate) fn path_segment(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes()).collect()
}

/// Xero reports per-item problems inside a 200 when `summarizeErrors=false`.
fn item_errors(op: &str, inv: &XeroInvoice) -> Result<(), ConnectorError> {
    let msgs: Vec<&str> = inv
        .validation_errors
        .iter()
        .map(|v| v.message.trim())
        .filter(|m| !m.is_empty())
        .collect();
    if inv.has_errors || !msgs.is_empty() {
        let detail = if msgs.is_empty() {
            "HasErrors without a message".to_string()
        } else {
            msgs.join("; ")
        };
        return Err(ConnectorError::Permanent(format!(
            "{op}: ValidationException: {detail}"
        )));
    }
    Ok(())
}

/// Whether the answer says it replays an earlier request with the same key.
fn replay_header(r: &HttpResponse) -> bool {
    [
        "idempotent-replayed",
        "x-idempotent-replayed",
        "idempotency-replayed",
    ]
    .iter()
    .any(|h| {
        r.headers
            .get(*h)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    })
}

/// A line as read, minus what Xero computes itself (sending those back can conflict).
fn strip_read_only(line: &Value) -> Value {
    let mut l = line.clone();
    if let Some(o) = l.as_object_mut() {
        for k in [
            "ValidationErrors",
            "LineAmount",
            "TaxAmount",
            "DiscountAmount",
        ] {
            o.remove(k);
        }
    }
    l
}

fn floor_second(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::seconds(1)).unwrap_or(t)
}

/// Whether a page was the last, from `pagination` when Xero sends it, else from its size.
fn last_page(pagination: Option<Pagination>, page: u32, items: usize) -> bool {
    match pagination {
        Some(p) if p.page_count > 0 || p.item_count > 0 => page >= p.page_count,
        _ => items < PAGE_SIZE as usize,
    }
}

/// Where a fee goes. A policy's `[late_fee]` table always names a posting (its default
/// is a separate invoice, indistinguishable from one written out), so taking the
/// request's alone silently overrode the connection's `fee_posting`. As on QuickBooks, a
/// line on the original is used when either the policy or the connection asks for one.
fn effective_posting(requested: FeePosting, connection: FeePosting) -> FeePosting {
    if requested == FeePosting::LineOnOriginal || connection == FeePosting::LineOnOriginal {
        FeePosting::LineOnOriginal
    } else {
        FeePosting::SeparateInvoice
    }
}

#[async_trait]
impl Connector for XeroConnector {
    fn runtime(&self) -> Option<&ConnectionRuntime> {
        Some(&self.runtime)
    }

    async fn ledger_id(&self) -> Result<String, ConnectorError> {
        self.tenant_id().await
    }

    fn system(&self) -> System {
        System::Xero
    }

    fn connection(&self) -> &ConnectionId {
        &self.settings.connection
    }

    /// Pages of 1000 in `UpdatedDateUTC` order, with one `If-Modified-Since` bound for the
    /// whole pass, so a pass takes the fewest calls `pagination.pageCount` allows. An
    /// invoice that changes mid-pass moves to the end and is read there; the one it
    /// shifts onto an already-read page is caught by the next full reconciliation (which
    /// re-reads by id every open invoice it does not list).
    async fn sync_page(&self, cursor: &SyncCursor) -> Result<SyncPage, ConnectorError> {
        self.budget.read_allowed()?;
        let op = match cursor.mode {
            SyncMode::Full => "list open Xero invoices",
            SyncMode::Incremental => "list changed Xero invoices",
        };
        let page = cursor.position.max(1);
        let (statuses, filter) = match cursor.mode {
            SyncMode::Full => (STATUSES_OPEN, WHERE_SALES_OWING),
            SyncMode::Incremental => (STATUSES_ALL, WHERE_SALES),
        };
        let bound = cursor.since.map(|s| floor_second(s) - OVERLAP);
        let mut call = Call::get(op, self.settings.api("Invoices"));
        call.query = vec![
            ("Statuses", statuses.into()),
            ("where", filter.into()),
            ("order", "UpdatedDateUTC ASC".into()),
            ("page", page.to_string()),
            ("pageSize", PAGE_SIZE.to_string()),
        ];
        call.if_modified_since = bound.map(if_modified_since);
        let env = self.call(call, |r| Self::parse_invoice_page(op, r)).await?;
        let n = env.invoices.len();
        let sales: Vec<XeroInvoice<NoLines>> =
            env.invoices.into_iter().filter(|i| i.is_sales()).collect();
        let invoices = self.to_snapshots(&sales);
        let newest = invoices.iter().map(|s| s.updated_at).max();
        let high_water = cursor.high_water.max(newest);
        let done = last_page(env.pagination, page, n);
        tracing::debug!(connection = %self.settings.connection, mode = ?cursor.mode, page, read = n, done, "Xero invoice page");
        let next = if done {
            match cursor.mode {
                SyncMode::Incremental => SyncCursor {
                    mode: SyncMode::Incremental,
                    since: high_water.or(cursor.since),
                    position: 1,
                    high_water: None,
                    read_at_since: Vec::new(),
                },
                SyncMode::Full => SyncCursor::full(),
            }
        } else {
            SyncCursor {
                mode: cursor.mode,
                since: cursor.since,
                position: page + 1,
                high_water,
                read_at_since: Vec::new(),
            }
        };
        Ok(SyncPage {
            invoices,
            deleted: Vec::new(),
            next,
            more: !done,
        })
    }

    async fn fetch_invoices(&self, ids: &[String]) -> Result<Vec<InvoiceSnapshot>, ConnectorError> {
        let mut seen = HashSet::new();
        let unique: Vec<String> = ids
            .iter()
            .filter(|i| !i.trim().is_empty() && seen.insert(i.to_ascii_lowercase()))
            .cloned()
            .collect();
        if unique.is_empty() {
            return Ok(Vec::new());
        }
        let concurrency = self.settings.limits.concurrent.max(1) as usize;
        let chunks: Vec<Vec<String>> = unique
            .chunks(IDS_PER_CALL)
            .map(<[String]>::to_vec)
            .collect();
        let futures: Vec<_> = chunks
            .into_iter()
            .map(|c| Box::pin(async move { self.read_invoices_by_id(&c).await }))
            .collect();
        let batches: Vec<Vec<XeroInvoice>> = stream::iter(futures)
            .buffered(concurrency)
            .try_collect()
            .await?;
        let mut by_id: HashMap<String, InvoiceSnapshot> = HashMap::new();
        for s in self.to_snapshots(&batches.into_iter().flatten().collect::<Vec<_>>()) {
            by_id.insert(s.remote_id.to_ascii_lowercase(), s);
        }
        let now = self.clock.now();
        Ok(unique
            .iter()
            .map(|id| {
                by_id.remove(&id.to_ascii_lowercase()).unwrap_or_else(|| {
                    tracing::debug!(connection = %self.settings.connection, invoice = %id, "Xero no longer knows this invoice; reporting it deleted");
                    tombstone(&self.settings.connection, id, now)
                })
            })
            .collect())
    }

    async fn list_customers(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<Customer>, ConnectorError> {
        let op = "list Xero contacts";
        let mut out = Vec::new();
        let mut page = 1u32;
        loop {
            self.budget.read_allowed()?;
            let mut call = Call::get(op, self.settings.api("Contacts"));
            call.query = vec![
                ("page", page.to_string()),
                ("pageSize", PAGE_SIZE.to_string()),
            ];
            call.if_modified_since = since.map(|s| if_modified_since(floor_second(s) - OVERLAP));
            let env: ContactsEnvelope = self
                .call(call, |r| {
                    serde_json::from_slice(&r.body).map_err(|e| malformed(op, e))
                })
                .await?;
            let n = env.contacts.len();
            out.extend(
                env.contacts
                    .iter()
                    .filter(|c| !c.contact_id.is_empty())
                    .map(|c| c.to_customer(&self.settings.connection)),
            );
            if last_page(env.pagination, page, n) {
                break;
            }
            page += 1;
        }
        Ok(out)
    }

    /// Xero emails the invoice to the contact's primary address (and contact persons
    /// marked for email) with the organisation's template; it cannot send elsewhere, so
    /// `req.to` is not used.
    async fn send_reminder(
        &self,
        req: &ReminderRequest,
        key: &IdempotencyKey,
    ) -> Result<ActionReceipt, ConnectorError> {
        let op = "email Xero invoice";
        let url = self
            .settings
            .api(&format!("Invoices/{}/Email", path_segment(&req.invoice_id)));
        let sent = self
            .call(Call::write(op, Method::POST, url, &json!({}), key), |r| {
                // 204 has no body; a body that is not JSON means the answer was garbled.
                let body = String::from_utf8_lossy(&r.body);
                if !body.trim().is_empty() && serde_json::from_str::<Value>(&body).is_err() {
                    return Err(malformed(op, "expected no content"));
                }
                Ok(replay_header(r))
            })
            .await;
        match sent {
            Ok(replayed) => {
                tracing::debug!(connection = %self.settings.connection, invoice = %req.invoice_id, key = %key, replayed, "invoice emailed by Xero");
                Ok(self.receipt(None, replayed))
            }
            Err(ConnectorError::Permanent(m)) => {
                Err(self.explain_email_refusal(&req.invoice_id, m).await)
            }
            Err(e) => Err(e),
        }
    }

    async fn create_late_fee(
        &self,
        req: &LateFeeRequest,
        key: &IdempotencyKey,
    ) -> Result<ActionReceipt, ConnectorError> {
        if !req.amount.is_positive() {
            return Err(ConnectorError::Permanent(format!(
                "late fee on {} must be positive, got {}",
                req.invoice_number,
                req.amount.display_human()
            )));
        }
        match effective_posting(req.posting, self.settings.fee_posting) {
            FeePosting::SeparateInvoice => self.fee_as_separate_invoice(req, key).await,
            FeePosting::LineOnOriginal => self.fee_as_line(req, key).await,
        }
    }

    async fn online_payment_link(
        &self,
        invoice_id: &str,
    ) -> Result<Option<String>, ConnectorError> {
        Ok(self
            .online_invoice_url(invoice_id)
            .await?
            .filter(|u| !u.trim().is_empty()))
    }

    async fn invoice_pdf(&self, invoice_id: &str) -> Result<Vec<u8>, ConnectorError> {
        self.read_invoice_pdf(invoice_id).await
    }

    async fn find_effect(
        &self,
        effect: &overdued_connector::PriorEffect,
    ) -> Result<overdued_connector::EffectFound, ConnectorError> {
        self.look_up(effect).await
    }

    async fn add_note(
        &self,
        req: &NoteRequest,
        key: &IdempotencyKey,
    ) -> Result<ActionReceipt, ConnectorError> {
        let op = "add Xero history note";
        let details = note_details(&req.text);
        if details.is_empty() {
            return Err(ConnectorError::Permanent(format!(
                "{op}: the note for {} is empty",
                req.invoice_id
            )));
        }
        let url = self.settings.api(&format!(
            "Invoices/{}/History",
            path_segment(&req.invoice_id)
        ));
        let body = json!({"HistoryRecords": [{"Details": details}]});
        let replayed = self
            .call(Call::write(op, Method::PUT, url, &body, key), |r| {
                let v: Value = serde_json::from_slice(&r.body).map_err(|e| malformed(op, e))?;
                let errors: Vec<String> = v["HistoryRecords"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|h| {
                        h["ValidationErrors"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default()
                    })
                    .filter_map(|e| e["Message"].as_str().map(str::to_string))
                    .collect();
                if !errors.is_empty() {
                    return Err(ConnectorError::Permanent(format!(
                        "{op}: ValidationException: {}",
                        errors.join("; ")
                    )));
                }
                Ok(replay_header(r))
            })
            .await?;
        tracing::debug!(connection = %self.settings.connection, invoice = %req.invoice_id, key = %key, replayed, "history note added");
        Ok(self.receipt(None, replayed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_fit_xeros_limit_on_a_char_boundary() {
        let long: String = "é".repeat(300);
        let d = note_details(&long);
        assert_eq!(d.chars().count(), NOTE_MAX_CHARS);
        assert!(d.ends_with('…'));
        assert_eq!(note_details("  short note "), "short note");
        let exact = "x".repeat(250);
        assert_eq!(note_details(&exact), exact);
    }

    #[test]
    fn fee_reference_carries_the_marker_and_the_number() {
        let r = fee_reference("INV-0042");
        assert!(r.contains("INV-0042") && r.contains(FEE_MARKER), "{r}");
    }

    #[test]
    fn decimals_go_out_as_exact_numbers() {
        let v = decimal_number(rust_decimal::Decimal::new(1050, 2)).unwrap();
        assert_eq!(v.to_string(), "10.5");
        let v = decimal_number("0.1".parse().unwrap()).unwrap();
        assert_eq!(
            json!({"UnitAmount": v}).to_string(),
            r#"{"UnitAmount":0.1}"#
        );
    }

    #[test]
    fn per_item_errors_inside_a_200_are_permanent() {
        let bad: XeroInvoice = serde_json::from_str(
            r#"{"InvoiceID":"00000000-0000-0000-0000-000000000000","HasErrors":true,"ValidationErrors":[{"Message":"Account code '999' is not a valid code for this document."}]}"#,
        )
        .unwrap();
        match item_errors("create fee", &bad) {
            Err(ConnectorError::Permanent(m)) => assert!(m.contains("Account code '999'"), "{m}"),
            other => panic!("{other:?}"),
        }
        let flagged: XeroInvoice =
            serde_json::from_str(r#"{"InvoiceID":"x","HasErrors":true}"#).unwrap();
        assert!(matches!(
            item_errors("create fee", &flagged),
            Err(ConnectorError::Permanent(_))
        ));
        let ok: XeroInvoice =
            serde_json::from_str(r#"{"InvoiceID":"x","HasErrors":false,"ValidationErrors":[]}"#)
                .unwrap();
        assert!(item_errors("create fee", &ok).is_ok());
    }

    #[test]
    fn paging_ends_by_page_count_or_short_page() {
        let p = |count, items| {
            Some(Pagination {
                page: 1,
                page_size: 1000,
                page_count: count,
                item_count: items,
            })
        };
        assert!(
            last_page(p(1, 1000), 1, 1000),
            "exactly 1000 needs no second call"
        );
        assert!(!last_page(p(2, 1001), 1, 1000));
        assert!(last_page(p(0, 0), 1, 0));
        assert!(last_page(None, 1, 999));
        assert!(!last_page(None, 1, 1000));
    }
}
