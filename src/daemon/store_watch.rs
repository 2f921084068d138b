//! The daemon's view of its store's health. Every store call the daemon makes (sync,
//! plan, act, digest, status, admin) goes through [`WatchedStore`], so the first error
//! of any of them turns `/healthz` 503 at once rather than when the next sync happens to
//! fail.
//!
//! sled 0.34.7 keeps a fatal I/O error (ENOSPC while flushing) for the life of the
//! `Db`: every later flush fails even once space is back, and the handle cannot be
//! reopened while any tree is alive. So a store that keeps failing is not waited out:
//! the supervisor probes it and exits with EX_IOERR once the probes keep failing, and
//! the service manager's restart opens a fresh handle (`Restart=on-failure`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use overdued_connector::{Customer, IdempotencyKey, TokenSet, TokenStore, TokenStoreError};

use crate::store::{
    AuditEvent, Hold, HoldKind, HoldTarget, InvoiceRecord, JournalEntry, Result, SledStore, Store,
    SyncState,
};

/// The store the daemon shares, remembering whether its last durable write failed.
pub struct WatchedStore {
    inner: Arc<SledStore>,
    /// The error that put the store in trouble; cleared by the next durable write that
    /// reaches the disk.
    trouble: Mutex<Option<String>>,
    errors_total: AtomicU64,
}

impl WatchedStore {
    pub fn new(inner: Arc<SledStore>) -> WatchedStore {
        WatchedStore {
            inner,
            trouble: Mutex::new(None),
            errors_total: AtomicU64::new(0),
        }
    }

    pub fn sled(&self) -> &SledStore {
        &self.inner
    }

    /// Why the store is failing, while it is.
    pub fn trouble(&self) -> Option<String> {
        self.trouble
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Writes to the store and flushes: a success clears the trouble.
    pub fn probe(&self) -> Result<()> {
        self.durable(self.inner.probe())
    }

    /// Store calls that failed since start.
    pub fn errors_total(&self) -> u64 {
        self.errors_total.load(Ordering::Relaxed)
    }

    /// Records an error seen outside the store's own calls (a blocking task that died).
    pub fn note_error(&self, message: String) {
        self.errors_total.fetch_add(1, Ordering::Relaxed);
        *self.trouble.lock().unwrap_or_else(|p| p.into_inner()) = Some(message);
    }

    fn seen<T>(&self, r: Result<T>) -> Result<T> {
        if let Err(e) = &r {
            self.note_error(e.to_string());
        }
        r
    }

    /// Like [`Self::seen`] for writes that return only once on disk: their success is
    /// proof the store works again.
    fn durable<T>(&self, r: Result<T>) -> Result<T> {
        if r.is_ok() {
            *self.trouble.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        self.seen(r)
    }
}

impl Store for WatchedStore {
    fn put_invoice(&self, rec: &InvoiceRecord) -> Result<()> {
        self.seen(self.inner.put_invoice(rec))
    }
    fn put_invoices(&self, recs: &[InvoiceRecord]) -> Result<()> {
        self.seen(self.inner.put_invoices(recs))
    }
    fn get_invoice(&self, connection: &str, id: &str) -> Result<Option<InvoiceRecord>> {
        self.seen(self.inner.get_invoice(connection, id))
    }
    fn for_each_invoice(
        &self,
        connection: &str,
        f: &mut dyn FnMut(InvoiceRecord) -> bool,
    ) -> Result<()> {
        self.seen(self.inner.for_each_invoice(connection, f))
    }
    fn count_invoices(&self, connection: &str) -> Result<usize> {
        self.seen(self.inner.count_invoices(connection))
    }
    fn put_customer(&self, c: &Customer) -> Result<()> {
        self.seen(self.inner.put_customer(c))
    }
    fn get_customer(&self, connection: &str, id: &str) -> Result<Option<Customer>> {
        self.seen(self.inner.get_customer(connection, id))
    }
    fn get_sync_state(&self, connection: &str) -> Result<Option<SyncState>> {
        self.seen(self.inner.get_sync_state(connection))
    }
    fn put_sync_state(&self, connection: &str, s: &SyncState) -> Result<()> {
        self.durable(self.inner.put_sync_state(connection, s))
    }
    fn get_tokens(&self, connection: &str) -> Result<Option<TokenSet>> {
        self.seen(self.inner.get_tokens(connection))
    }
    fn put_tokens(&self, connection: &str, t: &TokenSet) -> Result<()> {
        self.durable(self.inner.put_tokens(connection, t))
    }
    fn get_journal(&self, key: &IdempotencyKey) -> Result<Option<JournalEntry>> {
        self.seen(self.inner.get_journal(key))
    }
    fn put_journal(&self, e: &JournalEntry) -> Result<()> {
        self.durable(self.inner.put_journal(e))
    }
    fn journal_for_invoice(&self, connection: &str, invoice_id: &str) -> Result<Vec<JournalEntry>> {
        self.seen(self.inner.journal_for_invoice(connection, invoice_id))
    }
    fn unfinished_journal(&self, connection: &str) -> Result<Vec<JournalEntry>> {
        self.seen(self.inner.unfinished_journal(connection))
    }
    fn append_audit(&self, e: &AuditEvent) -> Result<()> {
        self.seen(self.inner.append_audit(e))
    }
    fn audit_for_invoice(&self, connection: &str, invoice_id: &str) -> Result<Vec<AuditEvent>> {
        self.seen(self.inner.audit_for_invoice(connection, invoice_id))
    }
    fn audit_since(&self, connection: &str, since: DateTime<Utc>) -> Result<Vec<AuditEvent>> {
        self.seen(self.inner.audit_since(connection, since))
    }
    fn put_hold(&self, connection: &str, target: &HoldTarget, hold: &Hold) -> Result<()> {
        self.durable(self.inner.put_hold(connection, target, hold))
    }
    fn remove_hold(&self, connection: &str, target: &HoldTarget, kind: HoldKind) -> Result<bool> {
        self.durable(self.inner.remove_hold(connection, target, kind))
    }
    fn holds(&self, connection: &str) -> Result<Vec<(HoldTarget, Hold)>> {
        self.seen(self.inner.holds(connection))
    }
    fn flush(&self) -> Result<()> {
        self.durable(self.inner.flush())
    }
}

impl TokenStore for WatchedStore {
    fn load_tokens(
        &self,
        connection: &str,
    ) -> std::result::Result<Option<TokenSet>, TokenStoreError> {
        self.get_tokens(connection)
            .map_err(|e| TokenStoreError(e.to_string()))
    }

    fn save_tokens(
        &self,
        connection: &str,
        tokens: &TokenSet,
    ) -> std::result::Result<(), TokenStoreError> {
        self.put_tokens(connection, tokens)
            .map_err(|e| TokenStoreError(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    #[test]
    fn an_error_marks_trouble_until_a_durable_write_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let w = WatchedStore::new(Arc::new(SledStore::open(&dir.path().join("s")).unwrap()));
        assert_eq!(w.trouble(), None);
        let failed: Result<()> = Err(StoreError::Backend("No space left on device".into()));
        assert!(w.seen(failed).is_err());
        assert_eq!(w.errors_total(), 1);
        assert!(w.trouble().unwrap().contains("No space left"));
        w.get_sync_state("a").unwrap();
        assert!(
            w.trouble().is_some(),
            "a read proves nothing about the disk"
        );
        w.flush().unwrap();
        assert_eq!(w.trouble(), None, "a flush that reached the disk clears it");
        assert_eq!(w.errors_total(), 1, "the count never goes back");
    }
}
