//! overdued's Xero connector (Accounting API 2.0) on the shared connection runtime.
//!
//! - Sync reads sales invoices (`ACCREC`) a thousand at a time with `If-Modified-Since`
//!   (incremental: every status, so payments, voids and deletes are seen; full: every
//!   open invoice, since some edits do not move `UpdatedDateUTC`).
//! - Every request carries `xero-tenant-id`; one grant may reach several organisations
//!   and each connector routes to its own.
//! - Writes (email, fee invoice or line, history note) carry the action's
//!   `Idempotency-Key`, so the runtime's retries never act twice.
//! - Limits: the runtime's limiter keeps to 60/min, 5 concurrent and 5000/day; the
//!   `X-*-Remaining` headers are read as well, and when the day runs low sync reads yield
//!   (`RateLimited`) while actions still go.
//! - `pay_url` stays empty in snapshots: Xero's online-invoice link is one extra call per
//!   invoice; [`XeroConnector::online_invoice_url`] (behind
//!   `Connector::online_payment_link`) fetches it when needed, and `Connector::invoice_pdf`
//!   reads `GET /Invoices/{id}` with `Accept: application/pdf`.
//!
//! Everything Xero decides lives here, in files named as in `overdued-quickbooks`:
//! `limits.rs`, `oauth.rs`, `webhook.rs`, `config.rs` (its config table's rules),
//! `settings.rs`, `connector.rs`, `wire.rs` (its JSON).

pub mod budget;
pub mod config;
pub mod connector;
pub mod dates;
pub mod errors;
pub mod limits;
mod lookup;
pub mod oauth;
pub mod settings;
pub mod tenant;
pub mod webhook;
pub mod wire;

pub use budget::{DayBudget, Remaining, Verdict};
pub use connector::{
    fee_reference, note_details, XeroConnector, IDS_PER_CALL, NOTE_MAX_CHARS, PAGE_SIZE,
};
pub use errors::XeroError;
pub use settings::XeroSettings;
pub use tenant::{bind_tenant, list_connections, resolve_tenant, TenantBinding, XeroTenant};
