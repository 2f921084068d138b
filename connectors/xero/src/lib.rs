//! The xero connector (built in its own issue).
