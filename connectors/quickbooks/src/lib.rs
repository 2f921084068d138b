//! The QuickBooks Online connector: incremental and full sync by
//! `MetaData.LastUpdatedTime`, re-reads by id, reminders, late fees and notes through the
//! Accounting API v3, on the shared connector runtime. An invoice's payment link
//! (`InvoiceLink`, read with `include=invoiceLink`) and its PDF are read on demand.
//!
//! Everything QuickBooks decides lives here, in files named as in `overdued-xero`:
//! `limits.rs`, `oauth.rs`, `webhook.rs`, `config.rs` (its config table's rules),
//! `settings.rs`, `connector.rs`, `wire.rs` (its JSON).

pub mod config;
pub mod connector;
pub mod limits;
mod lookup;
pub mod oauth;
pub mod query;
pub mod settings;
pub mod webhook;
pub mod wire;

pub use connector::{QuickBooksConnector, QuickBooksError};
pub use settings::{Environment, FeeSettings, QuickBooksSettings};
