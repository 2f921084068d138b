//! The daemon's view of its store's health. Every store call the daemon makes (sync,
//! plan, act, digest, status, admin) goes through [`WatchedStore`], so the first error
//! of any of them turns `/healthz` 503 at once rather than when the next sync happens to
//! fail.
//!
//! sled 0.34.7 keeps a fatal I/O error (ENOSPC while flushing) for the life of the
//! `Db`: every later flush fails even once space is back. So a failing store is not
//! waited out: the supervisor probes it and, while the probe fails, closes the handle and
//! opens a fresh one ([`WatchedStore::recover`]); the token managers keep a rotated
//! token they could not save in memory and save it to the fresh handle. When that keeps
//! failing the daemon exits with EX_IOERR for the service manager to restart it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use overdued_connector::{Customer, IdempotencyKey, TokenSet, TokenStore, TokenStoreError};

use crate::store::{
    AuditEvent, Hold, HoldKind, HoldTarget, InvoiceRecord, JournalEntry, Result, SledStore, Store,
    StoreError, SyncState,
};

/// The store the daemon shares, remembering whether its last durable write failed.
pub struct WatchedStore {
    dir: PathBuf,
    /// None while the handle is being replaced.
    inner: RwLock<Option<Arc<SledStore>>>,
    /// The error that put the store in trouble; cleared by the next durable write that
    /// reaches the disk.
    trouble: Mutex<Option<String>>,
    errors_total: AtomicU64,
    /// When the store was last reopened to give memory back.
    last_reopen: Mutex<Option<Instant>>,
}

impl WatchedStore {
    pub fn new(inner: Arc<SledStore>) -> WatchedStore {
        WatchedStore {
            dir: inner.dir().to_path_buf(),
            inner: RwLock::new(Some(inner)),
            trouble: Mutex::new(None),
            errors_total: AtomicU64::new(0),
            last_reopen: Mutex::new(None),
        }
    }

    fn handle(&self) -> Result<Arc<SledStore>> {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| StoreError::Backend("the store is being reopened".into()))
    }

    fn call<T>(&self, f: impl FnOnce(&SledStore) -> Result<T>) -> Result<T> {
        self.seen(self.handle().and_then(|h| f(&h)))
    }

    fn call_durable<T>(&self, f: impl FnOnce(&SledStore) -> Result<T>) -> Result<T> {
        self.durable(self.handle().and_then(|h| f(&h)))
    }

    /// Brings a failing store back: a probe write first; when that fails, the handle is
    /// closed (once calls in flight are done with it) and the store opened afresh, which
    /// recovers what reached the disk, and probed again.
    pub fn recover(&self) -> Result<()> {
        if self.probe().is_ok() {
            return Ok(());
        }
        let old = self.inner.write().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut old) = old {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match Arc::try_unwrap(old) {
                    Ok(store) => {
                        drop(store);
                        break;
                    }
                    Err(still_used) if Instant::now() < deadline => {
                        old = still_used;
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(still_used) => {
                        *self.inner.write().unwrap_or_else(|p| p.into_inner()) = Some(still_used);
                        return self.seen(Err(StoreError::Backend(
                            "cannot reopen the store: still in use".into(),
                        )));
                    }
                }
            }
        }
        let fresh = self.seen(SledStore::open(&self.dir))?;
        *self.inner.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(fresh));
        tracing::warn!(dir = %self.dir.display(), "store reopened after errors");
        self.probe()
    }

    /// Closes and reopens the store in place to give back the pages sled has cached
    /// ([`SledStore::reopen`]). Callers meanwhile wait for the handle instead of failing.
    /// A call still holding the old handle after `patience` (one that calls the store
    /// again from inside a scan would wait for ever) leaves the store as it was:
    /// `Ok(false)`.
    pub fn reopen_to_free_memory(&self, patience: Duration) -> Result<bool> {
        *self.last_reopen.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        let mut slot = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let Some(mut old) = slot.take() else {
            return Ok(false);
        };
        let deadline = Instant::now() + patience;
        let store = loop {
            match Arc::try_unwrap(old) {
                Ok(store) => break store,
                Err(still_used) if Instant::now() < deadline => {
                    old = still_used;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(still_used) => {
                    *slot = Some(still_used);
                    return Ok(false);
                }
            }
        };
        match store.reopen() {
            Ok(fresh) => {
                *slot = Some(Arc::new(fresh));
                Ok(true)
            }
            // The handle is gone: calls fail until the supervisor's recovery opens the
            // store afresh, as after any other store failure.
            Err(e) => {
                drop(slot);
                self.seen(Err(e))
            }
        }
    }

    /// How long ago the store was last reopened to give memory back (None: never).
    pub fn since_reopen(&self) -> Option<Duration> {
        self.last_reopen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|t| t.elapsed())
    }

    /// Bytes the store takes on disk (0 while the handle is being replaced).
    pub fn size_on_disk(&self) -> u64 {
        self.handle().map(|h| h.size_on_disk()).unwrap_or(0)
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
        self.call_durable(|st| st.probe())
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
    fn journal_for_ledger(&self, ledger: &str, invoice_id: &str) -> Result<Vec<JournalEntry>> {
        self.call(|st| st.journal_for_ledger(ledger, invoice_id))
    }
    fn rekey_journal(
        &self,
        connection: &str,
        ledger: &str,
        rekey: &dyn Fn(&JournalEntry) -> IdempotencyKey,
    ) -> Result<usize> {
        self.call_durable(|st| st.rekey_journal(connection, ledger, rekey))
    }
    fn put_invoice(&self, rec: &InvoiceRecord) -> Result<()> {
        self.call(|st| st.put_invoice(rec))
    }
    fn put_invoices(&self, recs: &[InvoiceRecord]) -> Result<()> {
        self.call(|st| st.put_invoices(recs))
    }
    fn get_invoice(&self, connection: &str, id: &str) -> Result<Option<InvoiceRecord>> {
        self.call(|st| st.get_invoice(connection, id))
    }
    fn for_each_invoice(
        &self,
        connection: &str,
        f: &mut dyn FnMut(InvoiceRecord) -> bool,
    ) -> Result<()> {
        self.call(|st| st.for_each_invoice(connection, f))
    }
    fn count_invoices(&self, connection: &str) -> Result<usize> {
        self.call(|st| st.count_invoices(connection))
    }
    fn for_each_invoice_where(
        &self,
        connection: &str,
        keep: &dyn Fn(overdued_connector::InvoiceStatus, DateTime<Utc>) -> bool,
        f: &mut dyn FnMut(InvoiceRecord) -> bool,
    ) -> Result<()> {
        self.call(|st| st.for_each_invoice_where(connection, keep, f))
    }
    fn journalled_invoices(
        &self,
        scope: &str,
        by_ledger: bool,
    ) -> Result<Option<std::collections::HashSet<String>>> {
        self.call(|st| st.journalled_invoices(scope, by_ledger))
    }
    fn index_rows(
        &self,
        connection: &str,
        f: &mut dyn FnMut(&str, &crate::store::IndexRow) -> bool,
    ) -> Result<()> {
        self.call(|st| st.index_rows(connection, f))
    }
    fn rebuild_index(&self) -> Result<usize> {
        self.call_durable(|st| st.rebuild_index())
    }
    fn check_index(&self) -> Result<Vec<crate::store::IndexMismatch>> {
        self.call(|st| st.check_index())
    }
    fn put_customer(&self, c: &Customer) -> Result<()> {
        self.call(|st| st.put_customer(c))
    }
    fn get_customer(&self, connection: &str, id: &str) -> Result<Option<Customer>> {
        self.call(|st| st.get_customer(connection, id))
    }
    fn get_sync_state(&self, connection: &str) -> Result<Option<SyncState>> {
        self.call(|st| st.get_sync_state(connection))
    }
    fn put_sync_state(&self, connection: &str, s: &SyncState) -> Result<()> {
        self.call_durable(|st| st.put_sync_state(connection, s))
    }
    fn get_tokens(&self, connection: &str) -> Result<Option<TokenSet>> {
        self.call(|st| st.get_tokens(connection))
    }
    fn put_tokens(&self, connection: &str, t: &TokenSet) -> Result<()> {
        self.call_durable(|st| st.put_tokens(connection, t))
    }
    fn get_journal(&self, key: &IdempotencyKey) -> Result<Option<JournalEntry>> {
        self.call(|st| st.get_journal(key))
    }
    fn put_journal(&self, e: &JournalEntry) -> Result<()> {
        self.call_durable(|st| st.put_journal(e))
    }
    fn journal_for_invoice(&self, connection: &str, invoice_id: &str) -> Result<Vec<JournalEntry>> {
        self.call(|st| st.journal_for_invoice(connection, invoice_id))
    }
    fn unfinished_journal(&self, connection: &str) -> Result<Vec<JournalEntry>> {
        self.call(|st| st.unfinished_journal(connection))
    }
    fn put_journal_with_audit(&self, e: &JournalEntry, audit: &AuditEvent) -> Result<()> {
        self.call_durable(|st| st.put_journal_with_audit(e, audit))
    }
    fn append_audit(&self, e: &AuditEvent) -> Result<()> {
        self.call(|st| st.append_audit(e))
    }
    fn append_audit_for_invoices(&self, e: &AuditEvent, invoices: &[String]) -> Result<()> {
        self.call(|st| st.append_audit_for_invoices(e, invoices))
    }
    fn audit_for_invoice(&self, connection: &str, invoice_id: &str) -> Result<Vec<AuditEvent>> {
        self.call(|st| st.audit_for_invoice(connection, invoice_id))
    }
    fn audit_since(&self, connection: &str, since: DateTime<Utc>) -> Result<Vec<AuditEvent>> {
        self.call(|st| st.audit_since(connection, since))
    }
    fn put_hold(&self, connection: &str, target: &HoldTarget, hold: &Hold) -> Result<()> {
        self.call_durable(|st| st.put_hold(connection, target, hold))
    }
    fn remove_hold(&self, connection: &str, target: &HoldTarget, kind: HoldKind) -> Result<bool> {
        self.call_durable(|st| st.remove_hold(connection, target, kind))
    }
    fn holds(&self, connection: &str) -> Result<Vec<(HoldTarget, Hold)>> {
        self.call(|st| st.holds(connection))
    }
    fn put_sms_consent(&self, c: &crate::channels::sms::consent::SmsConsent) -> Result<()> {
        self.call_durable(|st| st.put_sms_consent(c))
    }
    fn sms_consents(
        &self,
        connection: Option<&str>,
    ) -> Result<Vec<crate::channels::sms::consent::SmsConsent>> {
        self.call(|st| st.sms_consents(connection))
    }
    fn put_arrangement(&self, plan: &crate::arrangements::Arrangement) -> Result<()> {
        self.call_durable(|st| st.put_arrangement(plan))
    }
    fn arrangements(&self, connection: &str) -> Result<Vec<crate::arrangements::Arrangement>> {
        self.call(|st| st.arrangements(connection))
    }
    fn flush(&self) -> Result<()> {
        self.call_durable(|st| st.flush())
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

    fn sync_state() -> SyncState {
        SyncState {
            cursor: overdued_connector::SyncCursor::initial(),
            full_cursor: None,
            last_success: Some(Utc::now()),
            last_full_sync: None,
            last_error: None,
        }
    }

    #[test]
    fn reopening_keeps_the_data_and_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let w = WatchedStore::new(Arc::new(SledStore::open(&path).unwrap()));
        let st = sync_state();
        w.put_sync_state("a", &st).unwrap();
        assert_eq!(w.since_reopen(), None);
        assert!(w.reopen_to_free_memory(Duration::from_secs(2)).unwrap());
        assert!(w.since_reopen().is_some());
        assert_eq!(w.get_sync_state("a").unwrap(), Some(st.clone()));
        // No other process (nor handle) could take the store while it was reopened.
        assert!(SledStore::open(&path).is_err(), "the state lock was let go");
        // A second reopen works from the reopened handle, and writes go on.
        assert!(w.reopen_to_free_memory(Duration::from_secs(2)).unwrap());
        w.put_sync_state("b", &st).unwrap();
        assert_eq!(w.get_sync_state("b").unwrap(), Some(st));
        assert_eq!(w.errors_total(), 0);
        assert_eq!(w.trouble(), None);
    }

    #[test]
    fn a_handle_in_use_is_not_taken_away() {
        let dir = tempfile::tempdir().unwrap();
        let w = WatchedStore::new(Arc::new(SledStore::open(&dir.path().join("s")).unwrap()));
        let held = w.handle().unwrap();
        let started = Instant::now();
        assert!(!w.reopen_to_free_memory(Duration::from_millis(100)).unwrap());
        assert!(started.elapsed() >= Duration::from_millis(100));
        // The old handle is back in place and still the one in use.
        let again = w.handle().unwrap();
        assert!(Arc::ptr_eq(&held, &again));
        w.put_sync_state("a", &sync_state()).unwrap();
        assert_eq!(w.errors_total(), 0);
    }

    #[test]
    fn callers_wait_for_the_reopen_instead_of_failing() {
        let dir = tempfile::tempdir().unwrap();
        let w = Arc::new(WatchedStore::new(Arc::new(
            SledStore::open(&dir.path().join("s")).unwrap(),
        )));
        w.put_sync_state("a", &sync_state()).unwrap();
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        w.get_sync_state("a").unwrap().unwrap();
                    }
                })
            })
            .collect();
        for _ in 0..3 {
            w.reopen_to_free_memory(Duration::from_secs(2)).unwrap();
        }
        for r in readers {
            r.join().unwrap();
        }
        assert_eq!(w.errors_total(), 0);
    }
}
