//! overdued: chases unpaid QuickBooks Online and Xero invoices, exactly once.

pub mod arrangements;
pub mod calls;
pub mod channels;
pub mod cli;
pub mod config;
pub mod connections;
pub mod cycle;
pub mod daemon;
pub mod demo;
pub mod engine;
pub mod events;
pub mod executor;
pub mod ops;
pub mod profiles;
pub mod report;
pub mod store;
pub mod sync;
pub mod targeted;
