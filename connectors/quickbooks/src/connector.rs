//! The QuickBooks Online connector.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use overdued_connector::runtime::{
    ConnectFlow, ConnectionRuntime, HttpResponse, RuntimeBuildError,
};
use overdued_connector::{
    ActionReceipt, Clock, ConnectionId, Connector, ConnectorError, Customer, CustomerRef,
    FeePosting, IdempotencyKey, InvoiceSnapshot, InvoiceStatus, LateFeeRequest, NoteRequest,
    ReminderRequest, SyncCursor, SyncMode, SyncPage, System, TokenStore, FEE_MARKER,
};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::query::{self, PAGE_SIZE};
use crate::settings::QuickBooksSettings;
use crate::wire::{
    json_number, parse_ok, InvoiceEnvelope, PaymentEnvelope, QboInvoice, QueryEnvelope,
};

mod documents;

const MINOR_VERSION: &str = "75";
/// QuickBooks rejects a PrivateNote longer than this.
const PRIVATE_NOTE_MAX: usize = 4000;
/// Ids per `Id IN (...)` statement: one page, and a URL well under common limits.
const IDS_PER_QUERY: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum QuickBooksError {
    #[error("quickbooks settings: {0}")]
    Settings(String),
    #[error(transparent)]
    Runtime(#[from] RuntimeBuildError),
}

/// One QuickBooks company behind the [`Connector`] trait.
#[derive(Debug, Clone)]
pub struct QuickBooksConnector {
    settings: Arc<QuickBooksSettings>,
    rt: ConnectionRuntime,
    clock: Arc<dyn Clock>,
    company_url: String,
}

impl QuickBooksConnector {
    pub fn new(
        settings: QuickBooksSettings,
        token_store: Arc<dyn TokenStore>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, QuickBooksError> {
        crate::config::check_realm_id(&settings.realm_id).map_err(QuickBooksError::Settings)?;
        if settings.client_id.is_empty() || settings.client_secret.is_empty() {
            return Err(QuickBooksError::Settings(
                "client id and client secret are required".into(),
            ));
        }
        if settings.fees.item_id.trim().is_empty() {
            return Err(QuickBooksError::Settings(
                "the late fee item id is required".into(),
            ));
        }
        let mut runtime = settings.runtime.clone();
        // QuickBooks counts per realm and app.
        runtime.limits_account.get_or_insert_with(|| {
            format!(
                "quickbooks {} app {} realm {}",
                settings.api_base(),
                settings.client_id,
                settings.realm_id
            )
        });
        let rt = ConnectionRuntime::new(
            settings.connection.clone(),
            runtime,
            settings.oauth_client(),
            settings.initial_refresh_token.clone(),
            token_store,
            clock.clone(),
        )?;
        let company_url = format!("{}/v3/company/{}", settings.api_base(), settings.realm_id);
        Ok(QuickBooksConnector {
            settings: Arc::new(settings),
            rt,
            clock,
            company_url,
        })
    }

    /// The connect flow (`overdued connect NAME`) for this app.
    pub fn connect_flow(
        settings: &QuickBooksSettings,
    ) -> Result<ConnectFlow, overdued_connector::runtime::ConnectError> {
        ConnectFlow::new(settings.oauth_client())
    }

    pub fn runtime(&self) -> &ConnectionRuntime {
        &self.rt
    }

    pub fn settings(&self) -> &QuickBooksSettings {
        &self.settings
    }

    /// `{api_base}/v3/company/{realm}`, the root of every API call.
    pub(crate) fn company_url(&self) -> &str {
        &self.company_url
    }

    async fn query(&self, op: &str, statement: String) -> Result<QueryEnvelope, ConnectorError> {
        let url = format!("{}/query", self.company_url);
        self.rt
            .execute(
                op,
                |c| {
                    c.get(&url)
                        .query(&[
                            ("query", statement.as_str()),
                            ("minorversion", MINOR_VERSION),
                        ])
                        .header(ACCEPT, "application/json")
                },
                |r| parse_ok::<QueryEnvelope>(&r, op),
            )
            .await
    }

    async fn read_invoice(&self, id: &str) -> Result<QboInvoice, ConnectorError> {
        let url = format!("{}/invoice/{}", self.company_url, path_segment(id)?);
        let env: InvoiceEnvelope = self
            .rt
            .execute(
                "read_invoice",
                |c| {
                    c.get(&url)
                        .query(&[("minorversion", MINOR_VERSION)])
                        .header(ACCEPT, "application/json")
                },
                |r| parse_ok::<InvoiceEnvelope>(&r, "invoice read"),
            )
            .await?;
        Ok(env.invoice)
    }

    /// Creates or updates an invoice (`POST .../invoice`) under `requestid`.
    async fn post_invoice(
        &self,
        op: &str,
        body: &Value,
        request_id: &str,
    ) -> Result<QboInvoice, ConnectorError> {
        let url = format!("{}/invoice", self.company_url);
        let env: InvoiceEnvelope = self
            .rt
            .execute(
                op,
                |c| {
                    c.post(&url)
                        .query(&[("minorversion", MINOR_VERSION), ("requestid", request_id)])
                        .header(ACCEPT, "application/json")
                        .json(body)
                },
                |r| parse_ok::<InvoiceEnvelope>(&r, op),
            )
            .await?;
        Ok(env.invoice)
    }

    fn snapshot<L>(&self, inv: &QboInvoice<L>) -> Result<InvoiceSnapshot, ConnectorError> {
        Ok(inv.to_snapshot(&self.settings.connection, self.settings.home_currency)?)
    }

    /// What an id the company no longer knows looks like: only `status` and the id carry
    /// meaning; amounts are zero so nothing can be charged on it.
    fn gone(&self, id: &str) -> InvoiceSnapshot {
        let now = self.clock.now();
        InvoiceSnapshot {
            connection: self.settings.connection.clone(),
            system: System::QuickBooks,
            remote_id: id.to_string(),
            number: None,
            customer: CustomerRef {
                id: String::new(),
                name: String::new(),
                email: None,
            },
            currency: self.settings.home_currency,
            total: Decimal::ZERO,
            amount_due: Decimal::ZERO,
            issue_date: now.date_naive(),
            due_date: now.date_naive(),
            status: InvoiceStatus::Deleted,
            updated_at: now,
            version: None,
            memo: String::new(),
            is_fee_invoice: false,
            pay_url: None,
            paid_on: None,
        }
    }

    /// Runs a sparse update built from a fresh read; on a stale SyncToken (5010) reads
    /// again and retries once. `build` returns `None` when the change is already there.
    async fn update_fresh(
        &self,
        op: &str,
        invoice_id: &str,
        key: &IdempotencyKey,
        build: impl Fn(&QboInvoice) -> Result<Option<Value>, ConnectorError>,
    ) -> Result<ActionReceipt, ConnectorError> {
        for attempt in 0..2 {
            let current = self.read_invoice(invoice_id).await?;
            let Some(body) = build(&current)? else {
                tracing::debug!(connection = %self.settings.connection, invoice = invoice_id, op, "change already present; nothing written");
                return Ok(ActionReceipt {
                    created_id: None,
                    at: self.clock.now(),
                    replayed: true,
                });
            };
            // The retry after a 5010 is a different request than the refused one, so it
            // gets its own (still deterministic) request id.
            let request_id = if attempt == 0 {
                key.as_str().to_string()
            } else {
                format!("{}-s1", key.as_str())
            };
            match self.post_invoice(op, &body, &request_id).await {
                Ok(_) => {
                    tracing::debug!(connection = %self.settings.connection, invoice = invoice_id, op, key = %key, "invoice updated");
                    return Ok(ActionReceipt {
                        created_id: None,
                        at: self.clock.now(),
                        replayed: false,
                    });
                }
                Err(ConnectorError::StaleVersion(m)) if attempt == 0 => {
                    tracing::info!(connection = %self.settings.connection, invoice = invoice_id, op, "stale SyncToken; re-reading once: {m}");
                }
                Err(e) => return Err(e),
            }
        }
        Err(ConnectorError::StaleVersion(format!(
            "invoice {invoice_id} kept changing during {op}"
        )))
    }

    fn fee_line(&self, req: &LateFeeRequest) -> Value {
        let fees = &self.settings.fees;
        let amount = req.amount.rounded().amount;
        let mut item = json!({ "value": fees.item_id });
        if let Some(n) = &fees.item_name {
            item["name"] = json!(n);
        }
        json!({
            "Amount": json_number(amount),
            "DetailType": "SalesItemLineDetail",
            "Description": req.description,
            "SalesItemLineDetail": { "ItemRef": item, "Qty": 1, "UnitPrice": json_number(amount) }
        })
    }

    async fn fee_invoice(
        &self,
        req: &LateFeeRequest,
        key: &IdempotencyKey,
    ) -> Result<ActionReceipt, ConnectorError> {
        let note = format!(
            "{FEE_MARKER} Late fee on invoice {} (QuickBooks Id {})",
            req.invoice_number, req.invoice_id
        );
        let body = json!({
            "CustomerRef": { "value": req.customer_id },
            "CurrencyRef": { "value": req.amount.currency.code() },
            "TxnDate": req.issue_date.to_string(),
            "DueDate": req.due_date.to_string(),
            "PrivateNote": note,
            "CustomerMemo": { "value": format!("Late fee on invoice {}", req.invoice_number) },
            "Line": [ self.fee_line(req) ],
        });
        let created = self
            .post_invoice("create_fee_invoice", &body, key.as_str())
            .await?;
        tracing::debug!(connection = %self.settings.connection, invoice = %req.invoice_id, fee_invoice = %created.id, key = %key, "late fee invoice created");
        Ok(ActionReceipt {
            created_id: Some(created.id),
            at: self.clock.now(),
            replayed: false,
        })
    }

    async fn fee_line_on_original(
        &self,
        req: &LateFeeRequest,
        key: &IdempotencyKey,
    ) -> Result<ActionReceipt, ConnectorError> {
        let line = self.fee_line(req);
        let item_id = self.settings.fees.item_id.clone();
        self.update_fresh("add_fee_line", &req.invoice_id, key, |inv| {
            let already = inv.lines.iter().any(|l| {
                l.get("Description").and_then(Value::as_str) == Some(req.description.as_str())
                    && l.pointer("/SalesItemLineDetail/ItemRef/value")
                        .and_then(Value::as_str)
                        == Some(item_id.as_str())
            });
            if already {
                return Ok(None);
            }
            // Every existing line goes back (a Line array replaces all lines); the
            // subtotal line is computed by QuickBooks and is left out.
            let mut lines: Vec<Value> = inv
                .lines
                .iter()
                .filter(|l| {
                    l.get("DetailType").and_then(Value::as_str) != Some("SubTotalLineDetail")
                })
                .cloned()
                .collect();
            lines.push(line.clone());
            Ok(Some(json!({
                "Id": inv.id,
                "SyncToken": inv.sync_token.clone().unwrap_or_default(),
                "sparse": true,
                "Line": lines,
            })))
        })
        .await
    }
}

/// An id placed in a URL path: QuickBooks ids are digits, anything else is refused
/// rather than escaped.
fn path_segment(id: &str) -> Result<&str, ConnectorError> {
    if !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        Ok(id)
    } else {
        Err(ConnectorError::Permanent(format!(
            "{id:?} is not a QuickBooks id"
        )))
    }
}

/// How a row is remembered among those read at one instant: a change at the same
/// second bumps `SyncToken`, so a re-modified row is not mistaken for one already read.
fn version_tag<L>(row: &QboInvoice<L>) -> String {
    format!("{}:{}", row.id, row.sync_token.as_deref().unwrap_or(""))
}

/// Whether a row was already read at the cursor's `since` instant (and is unchanged).
fn already_read<L>(cursor: &SyncCursor, row: &QboInvoice<L>) -> bool {
    cursor.since.is_some()
        && row.updated_at() == cursor.since
        && cursor.read_at_since.contains(&version_tag(row))
}

/// Below this many rows read at the cursor's instant, a page restarts at the first row
/// of that instant and drops the versions already read; above it (a burst too big to
/// re-read), it skips them by offset.
const RESCAN_LIMIT: usize = PAGE_SIZE as usize / 2;

/// Where the next query starts. QuickBooks orders rows sharing a timestamp by its own
/// key, so a row changed later in the same second can sort *before* the rows already
/// read at it: an offset (`>= T STARTPOSITION read+1`) would skip it until the next full
/// sync. So the rows at `T` are read again from the first and the versions already read
/// are dropped (see [`already_read`]).
fn query_start(cursor: &SyncCursor) -> SyncCursor {
    if cursor.since.is_some() && cursor.read_at_since.len() < RESCAN_LIMIT {
        SyncCursor {
            position: 1,
            ..cursor.clone()
        }
    } else {
        cursor.clone()
    }
}

/// The cursor after a page read from `cursor.position`, for keyset paging on
/// `MetaData.LastUpdatedTime`: the next page starts at the newest time seen, past the
/// rows at exactly that time already read, whose versions it remembers.
fn advance<L>(cursor: &SyncCursor, page: &[QboInvoice<L>], more: bool) -> SyncCursor {
    let newest = page.iter().filter_map(QboInvoice::<L>::updated_at).max();
    let high_water = match (cursor.high_water, newest) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let (since, position, read_at_since) = match newest {
        None => (
            cursor.since,
            cursor.position.max(1),
            cursor.read_at_since.clone(),
        ),
        Some(n) => {
            let at_n: Vec<&QboInvoice<L>> =
                page.iter().filter(|i| i.updated_at() == Some(n)).collect();
            let ties = at_n.len() as u32;
            let (position, mut read) = if cursor.since == Some(n) {
                (cursor.position.max(1) + ties, cursor.read_at_since.clone())
            } else {
                (1 + ties, Vec::new())
            };
            for row in at_n {
                let tag = version_tag(row);
                if !read.contains(&tag) {
                    read.push(tag);
                }
            }
            (Some(n), position, read)
        }
    };
    match (cursor.mode, more) {
        (_, true) | (SyncMode::Incremental, false) => SyncCursor {
            mode: cursor.mode,
            since,
            position,
            high_water,
            read_at_since,
        },
        // A finished full pass starts over from scratch next time.
        (SyncMode::Full, false) => SyncCursor {
            high_water,
            ..SyncCursor::full()
        },
    }
}

#[async_trait]
impl Connector for QuickBooksConnector {
    fn runtime(&self) -> Option<&ConnectionRuntime> {
        Some(&self.rt)
    }

    async fn ledger_id(&self) -> Result<String, ConnectorError> {
        Ok(self.settings.realm_id.clone())
    }

    fn system(&self) -> System {
        System::QuickBooks
    }

    fn connection(&self) -> &ConnectionId {
        &self.settings.connection
    }

    async fn sync_page(&self, cursor: &SyncCursor) -> Result<SyncPage, ConnectorError> {
        let open_only = cursor.mode == SyncMode::Full;
        let cursor = &query_start(cursor);
        let statement = query::invoices_page(open_only, cursor.since, cursor.position);
        let env = self.query("sync_page", statement).await?;
        let rows = env.query.invoices;
        let more = rows.len() >= PAGE_SIZE as usize;
        let mut invoices = Vec::with_capacity(rows.len());
        let mut deleted = Vec::new();
        for r in rows.iter().filter(|r| !already_read(cursor, r)) {
            if r.is_deleted_stub() {
                deleted.push(r.id.clone());
            } else {
                invoices.push(self.snapshot(r)?);
            }
        }
        let next = advance(cursor, &rows, more);
        tracing::debug!(connection = %self.settings.connection, mode = ?cursor.mode, rows = rows.len(), more, "sync page read");
        Ok(SyncPage {
            invoices,
            deleted,
            next,
            more,
        })
    }

    async fn fetch_invoices(&self, ids: &[String]) -> Result<Vec<InvoiceSnapshot>, ConnectorError> {
        let unique: Vec<String> = ids
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut found: HashMap<String, InvoiceSnapshot> = HashMap::with_capacity(unique.len());
        for chunk in unique.chunks(IDS_PER_QUERY) {
            let env = self
                .query("fetch_invoices", query::invoices_by_id(chunk))
                .await?;
            for r in &env.query.invoices {
                if !r.is_deleted_stub() {
                    found.insert(r.id.clone(), self.snapshot(r)?);
                }
            }
        }
        Ok(ids
            .iter()
            .map(|id| found.get(id).cloned().unwrap_or_else(|| self.gone(id)))
            .collect())
    }

    async fn list_customers(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<Customer>, ConnectorError> {
        let mut out = Vec::new();
        let mut start = 1u32;
        loop {
            let env = self
                .query("list_customers", query::customers_page(since, start))
                .await?;
            let n = env.query.customers.len();
            out.extend(
                env.query
                    .customers
                    .iter()
                    .map(|c| c.to_customer(&self.settings.connection)),
            );
            if n < PAGE_SIZE as usize {
                return Ok(out);
            }
            start += PAGE_SIZE;
        }
    }

    async fn send_reminder(
        &self,
        req: &ReminderRequest,
        key: &IdempotencyKey,
    ) -> Result<ActionReceipt, ConnectorError> {
        let url = format!(
            "{}/invoice/{}/send",
            self.company_url,
            path_segment(&req.invoice_id)?
        );
        let mut params: Vec<(&str, &str)> =
            vec![("minorversion", MINOR_VERSION), ("requestid", key.as_str())];
        if let Some(to) = req.to.as_deref().filter(|t| !t.is_empty()) {
            params.push(("sendTo", to));
        }
        let sent: InvoiceEnvelope = self
            .rt
            .execute(
                "send_reminder",
                |c| {
                    c.post(&url)
                        .query(&params)
                        .header(ACCEPT, "application/json")
                        // JSON is refused here: the body is empty octets.
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .body(Vec::<u8>::new())
                },
                |r: HttpResponse| parse_ok::<InvoiceEnvelope>(&r, "invoice send"),
            )
            .await?;
        tracing::debug!(connection = %self.settings.connection, invoice = %sent.invoice.id, key = %key, "reminder sent");
        Ok(ActionReceipt {
            created_id: None,
            at: self.clock.now(),
            replayed: false,
        })
    }

    async fn create_late_fee(
        &self,
        req: &LateFeeRequest,
        key: &IdempotencyKey,
    ) -> Result<ActionReceipt, ConnectorError> {
        if !req.amount.is_positive() {
            return Err(ConnectorError::Permanent(format!(
                "late fee of {} is not positive",
                req.amount.display_human()
            )));
        }
        let on_original = req.posting == FeePosting::LineOnOriginal
            || self.settings.fees.posting == FeePosting::LineOnOriginal;
        if on_original {
            self.fee_line_on_original(req, key).await
        } else {
            self.fee_invoice(req, key).await
        }
    }

    async fn online_payment_link(
        &self,
        invoice_id: &str,
    ) -> Result<Option<String>, ConnectorError> {
        self.read_invoice_link(invoice_id).await
    }

    fn shared(&self) -> Option<Arc<dyn Connector>> {
        // A clone shares the runtime (tokens, limiter, breakers, counters) by `Arc`.
        Some(Arc::new(self.clone()))
    }

    async fn invoices_of_payment(
        &self,
        payment_id: &str,
    ) -> Result<Option<Vec<String>>, ConnectorError> {
        let url = format!("{}/payment/{}", self.company_url, path_segment(payment_id)?);
        let env: PaymentEnvelope = self
            .rt
            .execute(
                "read_payment",
                |c| {
                    c.get(&url)
                        .query(&[("minorversion", MINOR_VERSION)])
                        .header(ACCEPT, "application/json")
                },
                |r| parse_ok::<PaymentEnvelope>(&r, "payment read"),
            )
            .await?;
        Ok(Some(env.payment.invoice_ids()))
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
        let text = req.text.trim();
        if text.is_empty() {
            return Err(ConnectorError::Permanent("empty note".into()));
        }
        self.update_fresh("add_note", &req.invoice_id, key, |inv| {
            let existing = inv.private_note.clone().unwrap_or_default();
            if existing.lines().any(|l| l.trim() == text) {
                return Ok(None);
            }
            let note = if existing.trim().is_empty() {
                text.to_string()
            } else {
                format!("{}\n{text}", existing.trim_end())
            };
            if note.chars().count() > PRIVATE_NOTE_MAX {
                return Err(ConnectorError::Permanent(format!(
                    "invoice {} private note would exceed {PRIVATE_NOTE_MAX} characters",
                    inv.id
                )));
            }
            Ok(Some(json!({
                "Id": inv.id,
                "SyncToken": inv.sync_token.clone().unwrap_or_default(),
                "sparse": true,
                "PrivateNote": note,
            })))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv(id: &str, t: &str) -> QboInvoice {
        serde_json::from_value(json!({"Id": id, "MetaData": {"LastUpdatedTime": t}})).unwrap()
    }

    fn at(t: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(t).unwrap().to_utc()
    }

    #[test]
    fn keyset_cursor_skips_rows_already_read_at_the_boundary() {
        let c = SyncCursor::initial();
        let page = vec![
            inv("1", "2026-11-01T10:00:00Z"),
            inv("2", "2026-11-01T10:00:05Z"),
            inv("3", "2026-11-01T10:00:05Z"),
        ];
        let n = advance(&c, &page, true);
        assert_eq!(n.since, Some(at("2026-11-01T10:00:05Z")));
        assert_eq!(n.position, 3);
        assert_eq!(n.high_water, Some(at("2026-11-01T10:00:05Z")));
        // A page entirely at the same instant moves the offset on.
        let same = vec![
            inv("4", "2026-11-01T10:00:05Z"),
            inv("5", "2026-11-01T10:00:05Z"),
        ];
        let n2 = advance(&n, &same, true);
        assert_eq!(
            (n2.since, n2.position),
            (Some(at("2026-11-01T10:00:05Z")), 5)
        );
        // An empty page keeps the cursor.
        let n3 = advance::<Vec<Value>>(&n2, &[], false);
        assert_eq!(n3, n2);
    }

    #[test]
    fn a_finished_full_pass_restarts() {
        let c = SyncCursor::full();
        let page = vec![inv("1", "2026-11-01T10:00:00Z")];
        let n = advance(&c, &page, false);
        assert_eq!(n.mode, SyncMode::Full);
        assert_eq!((n.since, n.position), (None, 1));
        let mid = advance(&c, &page, true);
        assert_eq!(
            (mid.since, mid.position),
            (Some(at("2026-11-01T10:00:00Z")), 2)
        );
    }

    #[test]
    fn only_plain_ids_go_into_paths() {
        assert!(path_segment("130").is_ok());
        assert!(path_segment("../x").is_err());
        assert!(path_segment("").is_err());
    }
}
