//! The one trait every accounting system sits behind.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::action::{ActionReceipt, IdempotencyKey, LateFeeRequest, NoteRequest, ReminderRequest};
use crate::error::ConnectorError;
use crate::invoice::{ConnectionId, Customer, InvoiceSnapshot, System};

/// Whether a sync pass reads only what changed or every open invoice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// Everything changed since `SyncCursor::since` (all statuses, so payments are seen).
    Incremental,
    /// Every open invoice, to catch what incremental sync misses.
    Full,
}

/// Where a sync pass stands. The core stores it after each page is stored, so a crash
/// resumes at the page after the last one kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncCursor {
    pub mode: SyncMode,
    /// Lower bound of the change time being read; `None` reads from the beginning.
    pub since: Option<DateTime<Utc>>,
    /// The next page to read within the pass: a 1-based page number (Xero) or
    /// start position (QuickBooks), as the connector defines it.
    pub position: u32,
    /// The newest change time seen so far in this pass; becomes `since` of the next.
    pub high_water: Option<DateTime<Utc>>,
    /// Versions (`id:version`) already read with a change time of exactly `since`, for
    /// connectors that resume at `>= since` and must neither skip nor repeat the rows
    /// sharing that instant (several changes can carry one timestamp).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read_at_since: Vec<String>,
}

impl SyncCursor {
    pub fn initial() -> Self {
        SyncCursor {
            mode: SyncMode::Incremental,
            since: None,
            position: 1,
            high_water: None,
            read_at_since: Vec::new(),
        }
    }

    pub fn full() -> Self {
        SyncCursor {
            mode: SyncMode::Full,
            since: None,
            position: 1,
            high_water: None,
            read_at_since: Vec::new(),
        }
    }
}

/// One page of a sync pass.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncPage {
    pub invoices: Vec<InvoiceSnapshot>,
    /// Ids the system reported deleted (QuickBooks CDC stubs).
    pub deleted: Vec<String>,
    /// The cursor to store once this page is stored.
    pub next: SyncCursor,
    /// False when this page ended the pass.
    pub more: bool,
}

/// An effect an earlier attempt of an action may have had, to look for in the ledger
/// before the action is carried out again past the vendor's idempotency window (when
/// its key may have been forgotten and a retry would act twice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PriorEffect {
    /// The system emailed the invoice at or after `since` (the intent's first attempt).
    Reminder {
        invoice_id: String,
        since: DateTime<Utc>,
    },
    /// A late fee for `invoice_id` (number `invoice_number`) charged at or after `since`;
    /// `separate` when it is posted as its own invoice (else a line on the original).
    LateFee {
        invoice_id: String,
        invoice_number: String,
        customer_id: String,
        separate: bool,
        since: DateTime<Utc>,
    },
    /// A note with this text on the invoice.
    Note { invoice_id: String, text: String },
}

/// What the ledger says about a [`PriorEffect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EffectFound {
    /// The effect is there: the earlier attempt went through. `created_id` names what
    /// it created (a fee invoice), when it created something.
    Found { created_id: Option<String> },
    /// The ledger shows no such effect: carrying the action out acts once.
    NotFound,
    /// The system cannot tell (no such lookup for this system or effect); the write
    /// itself must then be safe to repeat.
    Unknown,
}

/// An accounting system seen through one connection (a QuickBooks company or a Xero
/// organisation). Implementations classify their errors; the core owns retries.
///
/// Every write takes an idempotency key: calling it twice with the same key must have
/// the effect of calling it once.
#[async_trait]
pub trait Connector: Send + Sync {
    fn system(&self) -> System;
    fn connection(&self) -> &ConnectionId;

    /// The realm id (QuickBooks) or tenant id (Xero) the connection works on: the
    /// ledger's identity that idempotency keys derive from ([`crate::ledger_scope`]).
    /// Xero resolves an organisation configured by name here (one call, then cached).
    async fn ledger_id(&self) -> Result<String, ConnectorError>;

    /// Reads one page of the pass `cursor` describes.
    async fn sync_page(&self, cursor: &SyncCursor) -> Result<SyncPage, ConnectorError>;

    /// Re-reads invoices by id, in as few calls as the system allows. Ids the system no
    /// longer knows are returned with status `Deleted`.
    async fn fetch_invoices(&self, ids: &[String]) -> Result<Vec<InvoiceSnapshot>, ConnectorError>;

    /// The invoices a payment was applied to (QuickBooks: a Payment's
    /// `Line[].LinkedTxn` of type Invoice), for the webhook path, which re-reads only
    /// what a change names. `None` when the system cannot tell from a payment id (the
    /// caller then syncs the whole connection).
    ///
    /// The default is for systems whose webhooks name invoices themselves (Xero).
    async fn invoices_of_payment(
        &self,
        payment_id: &str,
    ) -> Result<Option<Vec<String>>, ConnectorError> {
        let _ = payment_id;
        Ok(None)
    }

    /// Customers (with their email addresses) changed since `since`, or all.
    async fn list_customers(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<Customer>, ConnectorError>;

    async fn send_reminder(
        &self,
        req: &ReminderRequest,
        key: &IdempotencyKey,
    ) -> Result<ActionReceipt, ConnectorError>;

    async fn create_late_fee(
        &self,
        req: &LateFeeRequest,
        key: &IdempotencyKey,
    ) -> Result<ActionReceipt, ConnectorError>;

    async fn add_note(
        &self,
        req: &NoteRequest,
        key: &IdempotencyKey,
    ) -> Result<ActionReceipt, ConnectorError>;

    /// The invoice's online payment page, where the customer can view and pay it, or
    /// `None` when the ledger has none for it (the company takes no online payments, or
    /// the invoice is not in a state the system offers one for). A read, through the
    /// runtime like every other call.
    ///
    /// The default is for systems without online invoices; both vendors override it.
    async fn online_payment_link(
        &self,
        invoice_id: &str,
    ) -> Result<Option<String>, ConnectorError> {
        let _ = invoice_id;
        Ok(None)
    }

    /// The invoice as the system renders it for the customer, as PDF bytes.
    ///
    /// The default refuses, for systems that render no documents; both vendors override it.
    async fn invoice_pdf(&self, invoice_id: &str) -> Result<Vec<u8>, ConnectorError> {
        Err(ConnectorError::Permanent(format!(
            "{} does not render invoice {invoice_id} as PDF",
            self.system()
        )))
    }

    /// Looks in the ledger for an effect an earlier attempt may have had (see
    /// [`PriorEffect`]). Reads only.
    ///
    /// The default knows nothing; both vendors override it (their `lookup` modules).
    async fn find_effect(&self, effect: &PriorEffect) -> Result<EffectFound, ConnectorError> {
        let _ = effect;
        Ok(EffectFound::Unknown)
    }

    /// An owned handle on this same connector (sharing its tokens, limiter, breakers and
    /// counters), for work that must run as a task of its own: the sync reads its next
    /// page on another thread while this one stores the last (`overdued::sync`). `None`
    /// where the connector cannot be shared; the page is then read in turn.
    fn shared(&self) -> Option<std::sync::Arc<dyn Connector>> {
        None
    }

    /// The shared runtime behind this connector (tokens, limiter, counters), for health
    /// checks and metrics.
    fn runtime(&self) -> Option<&crate::runtime::ConnectionRuntime> {
        None
    }
}
