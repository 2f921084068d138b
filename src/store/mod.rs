//! Durable state behind one trait, so the engine could move to another embedded store
//! without rewrites. [`SledStore`] is the implementation in use.

pub mod codec;
pub mod index;
mod lock;
mod records;
mod sled_store;

use overdued_connector::{Customer, IdempotencyKey, TokenSet};

pub use index::{IndexMismatch, IndexRow};
pub use lock::{LockError, StateLock};
pub use records::*;
pub use sled_store::SledStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state directory {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Locked(#[from] LockError),
    #[error("store: {0}")]
    Backend(String),
    #[error("store record {tree}/{key}: {message}")]
    Corrupt {
        tree: &'static str,
        key: String,
        message: String,
    },
    #[error("store record {tree}/{key} has format version {found}; this overdued reads up to {FORMAT_VERSION}: upgrade overdued")]
    TooNew {
        tree: &'static str,
        key: String,
        found: u32,
    },
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Everything overdued keeps between runs.
///
/// Methods documented as durable return only once the write is on disk; the others
/// are flushed by the backend within a short interval and at [`Store::flush`].
pub trait Store: Send + Sync {
    // Invoices, keyed by (connection, remote id).
    fn put_invoice(&self, rec: &InvoiceRecord) -> Result<()>;
    fn put_invoices(&self, recs: &[InvoiceRecord]) -> Result<()>;
    fn get_invoice(&self, connection: &str, id: &str) -> Result<Option<InvoiceRecord>>;
    /// Every stored invoice of a connection, in id order; `f` returns false to stop.
    fn for_each_invoice(
        &self,
        connection: &str,
        f: &mut dyn FnMut(InvoiceRecord) -> bool,
    ) -> Result<()>;
    fn count_invoices(&self, connection: &str) -> Result<usize>;
    /// The stored invoices of a connection that `keep` accepts by status and `seen_at`,
    /// in id order; `f` returns false to stop. Backends that know those two without
    /// decoding a record (the summary index) decode only the ones kept.
    fn for_each_invoice_where(
        &self,
        connection: &str,
        keep: &dyn Fn(overdued_connector::InvoiceStatus, chrono::DateTime<chrono::Utc>) -> bool,
        f: &mut dyn FnMut(InvoiceRecord) -> bool,
    ) -> Result<()> {
        self.for_each_invoice(connection, &mut |r| {
            if keep(r.snapshot.status, r.seen_at) {
                f(r)
            } else {
                true
            }
        })
    }
    /// The ids of the invoices with journal entries under `scope`: a connection, or with
    /// `by_ledger` a ledger ([`Store::journal_for_ledger`]). `None` when the backend
    /// cannot list them at once; then ask per invoice.
    fn journalled_invoices(
        &self,
        scope: &str,
        by_ledger: bool,
    ) -> Result<Option<std::collections::HashSet<String>>> {
        let _ = (scope, by_ledger);
        Ok(None)
    }
    /// The summary index rows of a connection's invoices, in id order; `f` returns false
    /// to stop. Backends without an index compute each row from its record.
    fn index_rows(
        &self,
        connection: &str,
        f: &mut dyn FnMut(&str, &IndexRow) -> bool,
    ) -> Result<()> {
        let mut held = std::collections::HashSet::new();
        for (target, _) in self.holds(connection)? {
            if let HoldTarget::Invoice(id) = target {
                held.insert(id);
            }
        }
        let mut failed = None;
        self.for_each_invoice(connection, &mut |r| {
            let id = r.snapshot.remote_id.as_str();
            match self.journal_for_invoice(connection, id) {
                Ok(j) => f(id, &IndexRow::of(&r, !j.is_empty(), held.contains(id))),
                Err(e) => {
                    failed = Some(e);
                    false
                }
            }
        })?;
        failed.map_or(Ok(()), Err)
    }
    /// Builds the summary index afresh from the records; returns the rows written.
    fn rebuild_index(&self) -> Result<usize> {
        Ok(0)
    }
    /// Where the summary index disagrees with the records (empty: it agrees).
    fn check_index(&self) -> Result<Vec<IndexMismatch>> {
        Ok(Vec::new())
    }

    fn put_customer(&self, c: &Customer) -> Result<()>;
    fn get_customer(&self, connection: &str, id: &str) -> Result<Option<Customer>>;

    fn get_sync_state(&self, connection: &str) -> Result<Option<SyncState>>;
    /// Durable: a cursor must never run ahead of the invoices stored before it.
    fn put_sync_state(&self, connection: &str, s: &SyncState) -> Result<()>;

    fn get_tokens(&self, connection: &str) -> Result<Option<TokenSet>>;
    /// Durable: a rotated refresh token lost to a crash means a manual reconnect.
    fn put_tokens(&self, connection: &str, t: &TokenSet) -> Result<()>;

    fn get_journal(&self, key: &IdempotencyKey) -> Result<Option<JournalEntry>>;
    /// Durable: intents are recorded before acting, outcomes before moving on.
    fn put_journal(&self, e: &JournalEntry) -> Result<()>;
    /// Every journal entry of one invoice, oldest first.
    fn journal_for_invoice(&self, connection: &str, invoice_id: &str) -> Result<Vec<JournalEntry>>;
    /// Every action of one invoice of ledger `ledger` ([`overdued_connector::ledger_scope`])
    /// journalled under whatever connection name, oldest first: what survives a rename.
    fn journal_for_ledger(&self, ledger: &str, invoice_id: &str) -> Result<Vec<JournalEntry>>;
    /// Durable. Moves the action entries connection `connection` wrote before keys were
    /// derived from the ledger to the key `rekey` gives (with `ledger` recorded), keeping
    /// the old key as the entry's `sent_key`; returns how many moved. Done once per
    /// (connection, ledger); later calls return 0 at once.
    fn rekey_journal(
        &self,
        connection: &str,
        ledger: &str,
        rekey: &dyn Fn(&JournalEntry) -> IdempotencyKey,
    ) -> Result<usize>;
    /// Entries not yet settled (intents, retryable failures, done actions whose audit
    /// note is not written yet) of a connection.
    fn unfinished_journal(&self, connection: &str) -> Result<Vec<JournalEntry>>;

    fn append_audit(&self, e: &AuditEvent) -> Result<()>;
    /// One event about many invoices, each first seen at `e.at` (their records'
    /// `first_seen_at`): a sync page's "first seen", listed in the audit log of each as
    /// its own event (`crate::sync::first_seen_event`), stored once instead of once per
    /// invoice. Backends without a page index write one event per invoice.
    fn append_audit_for_invoices(&self, e: &AuditEvent, invoices: &[String]) -> Result<()> {
        for id in invoices {
            let own = crate::sync::first_seen_event(e, id).unwrap_or_else(|| AuditEvent {
                invoice_id: Some(id.clone()),
                ..e.clone()
            });
            self.append_audit(&own)?;
        }
        Ok(())
    }
    /// Durable: a journal entry and the audit record of its change together, so the
    /// history never lags the journal after a crash. Backends that cannot do both at
    /// once write the entry first.
    fn put_journal_with_audit(&self, e: &JournalEntry, audit: &AuditEvent) -> Result<()> {
        self.put_journal(e)?;
        self.append_audit(audit)
    }
    /// The audit log of one invoice, oldest first.
    fn audit_for_invoice(&self, connection: &str, invoice_id: &str) -> Result<Vec<AuditEvent>>;
    /// The whole audit log of a connection since `since`, oldest first.
    fn audit_since(
        &self,
        connection: &str,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<AuditEvent>>;

    fn put_hold(&self, connection: &str, target: &HoldTarget, hold: &Hold) -> Result<()>;
    fn remove_hold(&self, connection: &str, target: &HoldTarget, kind: HoldKind) -> Result<bool>;
    fn holds(&self, connection: &str) -> Result<Vec<(HoldTarget, Hold)>>;

    /// Durable. A customer's consent to text messages (see `channels::sms::consent`),
    /// replacing the one recorded for the same (connection, customer).
    fn put_sms_consent(&self, c: &crate::channels::sms::consent::SmsConsent) -> Result<()> {
        let _ = c;
        Err(StoreError::Backend(
            "this store keeps no SMS consent".into(),
        ))
    }
    /// Every consent recorded, of one connection or of all.
    fn sms_consents(
        &self,
        connection: Option<&str>,
    ) -> Result<Vec<crate::channels::sms::consent::SmsConsent>> {
        let _ = connection;
        Ok(Vec::new())
    }
    /// Durable: a payment plan, new or changed (cancelled, broken).
    fn put_arrangement(&self, _plan: &crate::arrangements::Arrangement) -> Result<()> {
        Err(StoreError::Backend(
            "this store keeps no payment plans".into(),
        ))
    }
    /// Every payment plan of a connection, in id order.
    fn arrangements(&self, _connection: &str) -> Result<Vec<crate::arrangements::Arrangement>> {
        Ok(Vec::new())
    }

    /// Writes everything pending to disk.
    fn flush(&self) -> Result<()>;
}

/// Which of a target's holds to remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldKind {
    Promise,
    Pause,
}

#[cfg(test)]
mod tests;
