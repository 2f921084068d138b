//! overdued: chases unpaid QuickBooks Online and Xero invoices, exactly once.

pub mod cli;
pub mod config;
pub mod store;
