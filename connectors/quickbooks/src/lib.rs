//! The QuickBooks Online connector: incremental and full sync by
//! `MetaData.LastUpdatedTime`, re-reads by id, reminders, late fees and notes through the
//! Accounting API v3, on the shared connector runtime. An invoice's payment link
//! (`InvoiceLink`, read with `include=invoiceLink`) and its PDF are read on demand.

pub mod connector;
pub mod query;
pub mod settings;
pub mod wire;

pub use connector::{QuickBooksConnector, QuickBooksError};
pub use settings::{Environment, FeeSettings, QuickBooksSettings};
