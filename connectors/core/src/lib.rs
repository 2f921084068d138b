//! The contract between overdued's core and the accounting systems it talks to.
//!
//! This crate holds the domain model both vendors map onto (money, invoices, customers,
//! actions), the [`Connector`] trait, the error classification that lets the core own
//! retries, and the injectable [`Clock`]. It knows nothing about storage or policy.

pub mod action;
pub mod clock;
pub mod connector;
pub mod document;
pub mod error;
pub mod invoice;
pub mod money;
pub mod runtime;
pub mod secret;
pub mod token;
pub mod webhook;

pub use action::{
    ledger_scope, ActionKind, ActionReceipt, FeePosting, IdempotencyKey, LateFeeRequest,
    NoteRequest, ReminderRequest,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use connector::{Connector, EffectFound, PriorEffect, SyncCursor, SyncMode, SyncPage};
pub use error::{ConnectorError, ErrorClass};
pub use invoice::{
    ConnectionId, Customer, CustomerRef, InvoiceSnapshot, InvoiceStatus, Phone, System, FEE_MARKER,
};
pub use money::{Currency, CurrencyError, HumanMoney, Money};
pub use runtime::{
    ConnectFlow, ConnectionRuntime, LimitSpec, OAuthClient, RetryPolicy, RuntimeSettings,
    StatsSnapshot, VendorOAuth,
};
pub use secret::Secret;
pub use token::{TokenSet, TokenStore, TokenStoreError};
pub use webhook::{Event, WebhookError};
