//! What a vendor's webhook delivery says, in the vendor-neutral form the daemon routes
//! on. Each vendor crate parses its own bodies (`webhook.rs`) into these.

/// One change the vendor reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// QuickBooks realmId or Xero tenantId.
    pub tenant: String,
    /// `invoice`, `customer`, `contact`, ... lower case.
    pub entity: String,
    pub id: String,
    pub operation: String,
}

/// A delivery whose body is not what the vendor documents.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("webhook body: {0}")]
pub struct WebhookError(pub String);
