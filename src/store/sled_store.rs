//! The [`Store`] on sled 0.34.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use overdued_connector::{Customer, IdempotencyKey, TokenSet, TokenStore, TokenStoreError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sled::Transactional;

use super::codec;
use super::index::{self, IndexMismatch, IndexRow, FLAG_HAS_HOLDS, FLAG_HAS_JOURNAL};
use super::records::JournalEntryV1;
use super::{
    AuditEvent, Hold, HoldKind, HoldTarget, InvoiceRecord, JournalEntry, Result, StateLock, Store,
    StoreError, SyncState, FORMAT_VERSION,
};

/// In the default tree: the binary invoice version every invoice record was rewritten
/// to, once the migration on open finished.
const INVOICE_FORMAT_MARK: &[u8] = b"overdued.invoice_format";
/// In the default tree: present once the summary index covers every invoice.
const PLAN_INDEX_MARK: &[u8] = b"overdued.plan_index";
/// Records rewritten (or index rows written) per sled batch on open.
const MIGRATION_BATCH: usize = 10_000;

/// Writes into one tree in batches of [`MIGRATION_BATCH`]: a pass over every record
/// (migration, index rebuild) neither holds a million writes in one batch nor pays a
/// write per record.
struct Batched<'t> {
    tree: &'t sled::Tree,
    batch: sled::Batch,
    pending: usize,
    written: usize,
}

impl<'t> Batched<'t> {
    fn new(tree: &'t sled::Tree) -> Self {
        Batched {
            tree,
            batch: sled::Batch::default(),
            pending: 0,
            written: 0,
        }
    }

    fn insert(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.batch.insert(key, value);
        self.pending += 1;
        if self.pending == MIGRATION_BATCH {
            self.apply()?;
        }
        Ok(())
    }

    fn apply(&mut self) -> Result<()> {
        self.tree
            .apply_batch(std::mem::take(&mut self.batch))
            .map_err(be)?;
        self.written += std::mem::take(&mut self.pending);
        Ok(())
    }

    /// Writes what is left; how many records were written in all.
    fn finish(mut self) -> Result<usize> {
        self.apply()?;
        Ok(self.written)
    }
}

const SEP: u8 = 0;

pub struct SledStore {
    dir: PathBuf,
    pub(super) db: sled::Db,
    invoices: sled::Tree,
    customers: sled::Tree,
    sync: sled::Tree,
    tokens: sled::Tree,
    journal: sled::Tree,
    journal_by_invoice: sled::Tree,
    journal_open: sled::Tree,
    journal_by_ledger: sled::Tree,
    audit: sled::Tree,
    audit_by_invoice: sled::Tree,
    /// Page events of a sync ("first seen"), by (connection, instant, sequence): an
    /// invoice finds its own through its record's `first_seen_at`.
    audit_pages: sled::Tree,
    holds: sled::Tree,
    sms_consent: sled::Tree,
    arrangements: sled::Tree,
    /// The summary index ([`IndexRow`]), keyed as `invoices`.
    plan_index: sled::Tree,
    // Dropped last: the lock outlives the database handle.
    _lock: StateLock,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore").field("dir", &self.dir).finish()
    }
}

#[derive(Serialize)]
struct EnvelopeOut<'a, T> {
    v: u32,
    r: &'a T,
}

#[derive(Deserialize)]
struct EnvelopeIn<T> {
    v: u32,
    r: T,
}

#[derive(Deserialize)]
struct VersionOnly {
    v: u32,
}

fn encode<T: Serialize>(r: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(&EnvelopeOut {
        v: FORMAT_VERSION,
        r,
    })
    .map_err(|e| StoreError::Backend(format!("encode: {e}")))
}

fn decode<T: DeserializeOwned>(tree: &'static str, key: &[u8], bytes: &[u8]) -> Result<T> {
    let key_s = || String::from_utf8_lossy(key).replace('\0', "/");
    match serde_json::from_slice::<EnvelopeIn<T>>(bytes) {
        Ok(env) if env.v <= FORMAT_VERSION => Ok(env.r),
        Ok(env) => Err(StoreError::TooNew {
            tree,
            key: key_s(),
            found: env.v,
        }),
        Err(e) => match serde_json::from_slice::<VersionOnly>(bytes) {
            Ok(v) if v.v > FORMAT_VERSION => Err(StoreError::TooNew {
                tree,
                key: key_s(),
                found: v.v,
            }),
            _ => Err(StoreError::Corrupt {
                tree,
                key: key_s(),
                message: e.to_string(),
            }),
        },
    }
}

/// An invoice record: binary, or a JSON envelope of an earlier version.
fn decode_invoice(key: &[u8], bytes: &[u8]) -> Result<InvoiceRecord> {
    match codec::binary_version(bytes) {
        None => decode("invoices", key, bytes),
        Some(v) => {
            let key_s = || String::from_utf8_lossy(key).replace('\0', "/");
            if u32::from(v) > FORMAT_VERSION {
                return Err(StoreError::TooNew {
                    tree: "invoices",
                    key: key_s(),
                    found: u32::from(v),
                });
            }
            codec::decode(bytes).map_err(|message| StoreError::Corrupt {
                tree: "invoices",
                key: key_s(),
                message,
            })
        }
    }
}

/// A journal entry of any version this release reads: version 1 is migrated here, so
/// no caller ever sees an untyped payload.
fn decode_journal(key: &[u8], bytes: &[u8]) -> Result<JournalEntry> {
    let corrupt = |message: String| StoreError::Corrupt {
        tree: "journal",
        key: String::from_utf8_lossy(key).into_owned(),
        message,
    };
    match serde_json::from_slice::<VersionOnly>(bytes) {
        Ok(VersionOnly { v: 1 }) => {
            let env: EnvelopeIn<JournalEntryV1> =
                serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
            JournalEntry::from_v1(env.r).map_err(|e| corrupt(format!("version 1 payload: {e}")))
        }
        _ => decode("journal", key, bytes),
    }
}

fn key2(a: &str, b: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(a.len() + b.len() + 1);
    k.extend_from_slice(a.as_bytes());
    k.push(SEP);
    k.extend_from_slice(b.as_bytes());
    k
}

fn prefix(a: &str) -> Vec<u8> {
    let mut k = a.as_bytes().to_vec();
    k.push(SEP);
    k
}

fn be(e: sled::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl SledStore {
    /// Writes `e` with its indexes, removing `old` (an entry moving to a new key) in
    /// the same transaction, so the indexes never disagree with the entries after a crash.
    fn replace_journal(&self, old: Option<&JournalEntry>, e: &JournalEntry) -> Result<()> {
        let idx = key2(&e.connection, &format!("{}\0{}", e.invoice_id, e.key));
        let open = key2(&e.connection, e.key.as_str());
        let by_ledger = e
            .ledger
            .as_ref()
            .map(|l| key2(l, &format!("{}\0{}", e.invoice_id, e.key)));
        let gone = old.map(|o| {
            (
                o.key.as_str().as_bytes().to_vec(),
                key2(&o.connection, &format!("{}\0{}", o.invoice_id, o.key)),
                key2(&o.connection, o.key.as_str()),
            )
        });
        let value = encode(e)?;
        let settled = e.is_settled();
        let row_key = key2(&e.connection, &e.invoice_id);
        (
            &self.journal,
            &self.journal_by_invoice,
            &self.journal_open,
            &self.journal_by_ledger,
            &self.plan_index,
        )
            .transaction(|(j, by_inv, open_t, by_l, rows)| {
                flag_row(rows, &row_key, FLAG_HAS_JOURNAL, true)?;
                if let Some((k, i, o)) = &gone {
                    j.remove(k.clone())?;
                    by_inv.remove(i.clone())?;
                    open_t.remove(o.clone())?;
                }
                j.insert(e.key.as_str().as_bytes(), value.clone())?;
                by_inv.insert(idx.clone(), &[])?;
                if let Some(l) = &by_ledger {
                    by_l.insert(l.clone(), &[])?;
                }
                if settled {
                    open_t.remove(open.clone())?;
                } else {
                    open_t.insert(open.clone(), &[])?;
                }
                Ok(())
            })
            .map_err(|e: sled::transaction::TransactionError<()>| {
                StoreError::Backend(format!("{e:?}"))
            })
    }

    /// Opens (creating, mode 0700) the state directory and takes its lock.
    pub fn open(dir: &Path) -> Result<SledStore> {
        Self::open_holding(dir, None)
    }

    /// Closes the database and opens it again in place, keeping the state directory's
    /// lock all along so no other process can take the store in between. sled keeps every
    /// page it has read in memory (its cache bound is applied too lazily to matter), so
    /// this is how a daemon gives back what a pass over a large ledger pulled in.
    pub fn reopen(self) -> Result<SledStore> {
        self.durable()?;
        let dir = self.dir.clone();
        // Everything but the lock is dropped at the end of this block: the database is
        // closed before it is opened again.
        let lock = {
            let old = self;
            let SledStore { _lock, .. } = old;
            _lock
        };
        Self::open_holding(&dir, Some(lock))
    }

    fn open_holding(dir: &Path, lock: Option<StateLock>) -> Result<SledStore> {
        create_private_dir(dir)?;
        keep_new_files_private();
        let lock = match lock {
            Some(l) => l,
            None => StateLock::acquire(dir)?,
        };
        remove_unfinished_snapshots(&dir.join("db"))?;
        let db = open_sled(&dir.join("db"))?;
        tighten(dir)?;
        let t = |name: &str| db.open_tree(name).map_err(be);
        let store = SledStore {
            dir: dir.to_path_buf(),
            invoices: t("invoices")?,
            customers: t("customers")?,
            sync: t("sync")?,
            tokens: t("tokens")?,
            journal: t("journal")?,
            journal_by_invoice: t("journal_by_invoice")?,
            journal_open: t("journal_open")?,
            journal_by_ledger: t("journal_by_ledger")?,
            audit: t("audit")?,
            audit_by_invoice: t("audit_by_invoice")?,
            audit_pages: t("audit_pages")?,
            holds: t("holds")?,
            sms_consent: t("sms_consent")?,
            arrangements: t("arrangements")?,
            plan_index: t("plan_index")?,
            db,
            _lock: lock,
        };
        store.migrate_invoices()?;
        if store.db.get(PLAN_INDEX_MARK).map_err(be)?.is_none() {
            let rows = store.rebuild_index()?;
            tracing::info!(rows, "built the summary index of the stored invoices");
        }
        Ok(store)
    }

    /// Rewrites the JSON invoice records earlier releases wrote in binary, in batches,
    /// once: the mark in the default tree says it was done. A record that cannot be
    /// read (damaged, or newer than this release) is left as it is, to be named when
    /// it is read, as it always was.
    fn migrate_invoices(&self) -> Result<usize> {
        if self.db.get(INVOICE_FORMAT_MARK).map_err(be)?.as_deref()
            == Some(&[codec::BINARY_VERSION][..])
        {
            return Ok(0);
        }
        let mut out = Batched::new(&self.invoices);
        for kv in self.invoices.iter() {
            let (k, v) = kv.map_err(be)?;
            if codec::is_binary(&v) {
                continue;
            }
            match decode::<InvoiceRecord>("invoices", &k, &v) {
                Ok(rec) => out.insert(&k, &codec::encode(&rec))?,
                Err(e) => {
                    tracing::warn!(error = %e, "invoice record left in its old format");
                    continue;
                }
            }
        }
        let moved = out.finish()?;
        // The index is built from the rewritten records.
        self.db.remove(PLAN_INDEX_MARK).map_err(be)?;
        self.db
            .insert(INVOICE_FORMAT_MARK, &[codec::BINARY_VERSION])
            .map_err(be)?;
        self.durable()?;
        if moved > 0 {
            tracing::info!(
                records = moved,
                "rewrote invoice records in the binary format"
            );
        }
        Ok(moved)
    }

    /// Writes invoice records with their index rows in one transaction. A row keeps the
    /// journal and hold flags its predecessor had (journal and hold writes keep them);
    /// a new row looks them up, unless the connection has no journal and no holds at
    /// all (a first sync), which costs no lookup per invoice.
    fn write_invoices(&self, recs: &[InvoiceRecord]) -> Result<()> {
        let mut any: std::collections::HashMap<&str, (bool, bool)> = Default::default();
        let mut items = Vec::with_capacity(recs.len());
        for rec in recs {
            let s = &rec.snapshot;
            let conn = s.connection.as_str();
            let key = key2(conn, &s.remote_id);
            let (j, h) = match any.get(conn) {
                Some(a) => *a,
                None => {
                    let a = (
                        self.journal_by_invoice
                            .scan_prefix(prefix(conn))
                            .next()
                            .is_some(),
                        self.holds.scan_prefix(prefix(conn)).next().is_some(),
                    );
                    any.insert(conn, a);
                    a
                }
            };
            let mut fresh = 0;
            if (j || h) && !self.plan_index.contains_key(&key).map_err(be)? {
                if j && self.has_journal(conn, &s.remote_id)? {
                    fresh |= FLAG_HAS_JOURNAL;
                }
                if h && self.has_invoice_hold(conn, &s.remote_id)? {
                    fresh |= FLAG_HAS_HOLDS;
                }
            }
            // Without journal or holds there is no flag to keep: no read in the transaction.
            let keep = j || h;
            items.push((
                key,
                codec::encode(rec),
                IndexRow::of(rec, false, false),
                fresh,
                keep,
            ));
        }
        (&self.invoices, &self.plan_index)
            .transaction(|(inv, idx)| {
                for (k, v, row, fresh, keep) in &items {
                    let mut row = *row;
                    if *keep {
                        row.flags |= match idx.get(k)?.map(|old| IndexRow::decode(&old)) {
                            Some(Ok(old)) => old.flags & (FLAG_HAS_JOURNAL | FLAG_HAS_HOLDS),
                            _ => *fresh,
                        };
                    }
                    inv.insert(k.as_slice(), v.as_slice())?;
                    idx.insert(k.as_slice(), &row.encode()[..])?;
                }
                Ok(())
            })
            .map_err(|e: sled::transaction::TransactionError<()>| {
                StoreError::Backend(format!("{e:?}"))
            })
    }

    /// The invoice keys (connection, id) with journal entries.
    fn journalled_keys(&self) -> Result<std::collections::HashSet<Vec<u8>>> {
        let mut out = std::collections::HashSet::new();
        for k in self.journal_by_invoice.iter().keys() {
            let k = k.map_err(be)?;
            // connection \0 invoice \0 key
            let Some(a) = k.iter().position(|b| *b == SEP) else {
                continue;
            };
            let b = k[a + 1..]
                .iter()
                .position(|b| *b == SEP)
                .map_or(k.len(), |i| a + 1 + i);
            out.insert(k[..b].to_vec());
        }
        Ok(out)
    }

    /// The invoice keys (connection, id) with a hold on the invoice itself.
    fn held_keys(&self) -> Result<std::collections::HashSet<Vec<u8>>> {
        let mut out = std::collections::HashSet::new();
        for kv in self.holds.iter() {
            let (k, v) = kv.map_err(be)?;
            let Some(a) = k.iter().position(|b| *b == SEP) else {
                continue;
            };
            let (target, _): (HoldTarget, Hold) = decode("holds", &k, &v)?;
            if let HoldTarget::Invoice(id) = target {
                out.insert(key2(&String::from_utf8_lossy(&k[..a]), &id));
            }
        }
        Ok(out)
    }

    fn has_journal(&self, connection: &str, invoice_id: &str) -> Result<bool> {
        match self
            .journal_by_invoice
            .scan_prefix(key2(connection, &format!("{invoice_id}\0")))
            .keys()
            .next()
        {
            Some(k) => k.map(|_| true).map_err(be),
            None => Ok(false),
        }
    }

    fn has_invoice_hold(&self, connection: &str, invoice_id: &str) -> Result<bool> {
        let target = HoldTarget::Invoice(invoice_id.to_string());
        for kind in [HoldKind::Promise, HoldKind::Pause] {
            if self
                .holds
                .contains_key(hold_key(connection, &target, kind))
                .map_err(be)?
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes the database takes on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    /// Writes a few bytes and flushes them: whether the store can reach the disk now.
    /// sled may have nothing dirty to flush, so a bare flush would pass on a full disk.
    pub fn probe(&self) -> Result<()> {
        let now = Utc::now().timestamp_micros().to_be_bytes();
        self.db.insert(b"overdued.probe", &now).map_err(be)?;
        self.durable()
    }

    /// The journal entries an index (`journal_by_invoice`, `journal_by_ledger`) lists for
    /// one invoice under `scope`, oldest first.
    fn indexed_journal(
        &self,
        index: &sled::Tree,
        scope: &str,
        invoice_id: &str,
    ) -> Result<Vec<JournalEntry>> {
        let mut out = Vec::new();
        for k in index
            .scan_prefix(key2(scope, &format!("{invoice_id}\0")))
            .keys()
        {
            let k = k.map_err(be)?;
            let key = &k[k
                .iter()
                .rposition(|b| *b == SEP)
                .map(|i| i + 1)
                .unwrap_or(0)..];
            if let Some(e) = self.journal_entry(key)? {
                out.push(e);
            }
        }
        out.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.key.cmp(&b.key))
        });
        Ok(out)
    }

    fn journal_entry(&self, key: &[u8]) -> Result<Option<JournalEntry>> {
        match self.journal.get(key).map_err(be)? {
            Some(v) => decode_journal(key, &v).map(Some),
            None => Ok(None),
        }
    }

    fn durable(&self) -> Result<()> {
        self.db.flush().map(|_| ()).map_err(be)
    }

    fn get<T: DeserializeOwned>(
        &self,
        tree: &sled::Tree,
        name: &'static str,
        key: &[u8],
    ) -> Result<Option<T>> {
        match tree.get(key).map_err(be)? {
            Some(v) => decode(name, key, &v).map(Some),
            None => Ok(None),
        }
    }
}

/// sled 0.34.7 writes a snapshot to `snap.<lsn>.generating`, syncs it, then renames it
/// to `snap.<lsn>`; but when it opens it reads the highest-named `snap.` file, counting
/// the `.generating` ones. A process killed while writing one (SIGKILL, OOM, power) left
/// a database that refused to open for good ("Read corrupted data", sled issues #1527 and
/// #1533). An unrenamed file is by that protocol an unfinished snapshot the previous
/// complete one (or the log itself) supersedes, so removing it loses nothing.
fn remove_unfinished_snapshots(db_dir: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(db_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(StoreError::Io {
                path: db_dir.display().to_string(),
                source,
            })
        }
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|source| StoreError::Io {
                path: path.display().to_string(),
                source,
            })?;
            tracing::warn!(
                path = %path.display(),
                "removed an unfinished store snapshot left by an interrupted run"
            );
        }
    }
    Ok(())
}

/// sled creates its files, and later its snapshots, with the process umask: under
/// umask 000 the ledger and the tokens would be world-writable. So from the store's
/// opening on, files the process creates keep group and others out. The process is
/// overdued itself (daemon or CLI), which writes nothing meant to be shared.
fn keep_new_files_private() {
    #[cfg(unix)]
    // SAFETY: umask(2) only swaps the process's file-creation mask and cannot fail.
    unsafe {
        let old = libc::umask(0o077);
        libc::umask(old | 0o077);
    }
}

/// Files 0600 and directories 0700 under the state directory, for stores an earlier
/// run created under a looser umask.
fn tighten(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let io = |path: &Path, source| StoreError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).map_err(|e| io(&d, e))? {
                let entry = entry.map_err(|e| io(&d, e))?;
                let path = entry.path();
                let meta = std::fs::symlink_metadata(&path).map_err(|e| io(&path, e))?;
                let want = if meta.is_dir() {
                    stack.push(path.clone());
                    0o700
                } else if meta.is_file() {
                    0o600
                } else {
                    continue;
                };
                if meta.permissions().mode() & 0o777 != want {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(want))
                        .map_err(|e| io(&path, e))?;
                }
            }
        }
    }
    Ok(())
}

fn create_private_dir(dir: &Path) -> Result<()> {
    let io = |source| StoreError::Io {
        path: dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir).map_err(io)?.permissions().mode() & 0o777;
        if mode != 0o700 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        }
    }
    Ok(())
}

impl Store for SledStore {
    fn put_invoice(&self, rec: &InvoiceRecord) -> Result<()> {
        self.write_invoices(std::slice::from_ref(rec))
    }

    fn put_invoices(&self, recs: &[InvoiceRecord]) -> Result<()> {
        self.write_invoices(recs)
    }

    fn get_invoice(&self, connection: &str, id: &str) -> Result<Option<InvoiceRecord>> {
        let key = key2(connection, id);
        match self.invoices.get(&key).map_err(be)? {
            Some(v) => decode_invoice(&key, &v).map(Some),
            None => Ok(None),
        }
    }

    fn for_each_invoice(
        &self,
        connection: &str,
        f: &mut dyn FnMut(InvoiceRecord) -> bool,
    ) -> Result<()> {
        for kv in self.invoices.scan_prefix(prefix(connection)) {
            let (k, v) = kv.map_err(be)?;
            if !f(decode_invoice(&k, &v)?) {
                break;
            }
        }
        Ok(())
    }

    fn for_each_invoice_where(
        &self,
        connection: &str,
        keep: &dyn Fn(overdued_connector::InvoiceStatus, DateTime<Utc>) -> bool,
        f: &mut dyn FnMut(InvoiceRecord) -> bool,
    ) -> Result<()> {
        // One pass over the records, deciding from each one's first bytes: reading the
        // kept ones by key from the index rows cost more than sled's sequential scan
        // when most are kept, as in a book of mostly open invoices.
        for kv in self.invoices.scan_prefix(prefix(connection)) {
            let (k, v) = kv.map_err(be)?;
            let rec = match codec::peek(&v) {
                Some((status, seen_at)) if !keep(status, seen_at) => continue,
                Some(_) => decode_invoice(&k, &v)?,
                None => {
                    let r = decode_invoice(&k, &v)?;
                    if !keep(r.snapshot.status, r.seen_at) {
                        continue;
                    }
                    r
                }
            };
            if !f(rec) {
                break;
            }
        }
        Ok(())
    }

    fn journalled_invoices(
        &self,
        scope: &str,
        by_ledger: bool,
    ) -> Result<Option<std::collections::HashSet<String>>> {
        let tree = if by_ledger {
            &self.journal_by_ledger
        } else {
            &self.journal_by_invoice
        };
        let p = prefix(scope);
        let mut out = std::collections::HashSet::new();
        let mut last: Vec<u8> = Vec::new();
        for k in tree.scan_prefix(&p).keys() {
            let k = k.map_err(be)?;
            let rest = &k[p.len()..];
            let id = &rest[..rest.iter().position(|b| *b == SEP).unwrap_or(rest.len())];
            // Keys of one invoice are adjacent: one string per invoice.
            if id != last.as_slice() {
                last = id.to_vec();
                out.insert(String::from_utf8_lossy(id).into_owned());
            }
        }
        Ok(Some(out))
    }

    fn index_rows(
        &self,
        connection: &str,
        f: &mut dyn FnMut(&str, &IndexRow) -> bool,
    ) -> Result<()> {
        let p = prefix(connection);
        for kv in self.plan_index.scan_prefix(&p) {
            let (k, v) = kv.map_err(be)?;
            let row = IndexRow::decode(&v).map_err(|message| StoreError::Corrupt {
                tree: "plan_index",
                key: String::from_utf8_lossy(&k).replace('\0', "/"),
                message,
            })?;
            let id = String::from_utf8_lossy(&k[p.len()..]);
            if !f(&id, &row) {
                break;
            }
        }
        Ok(())
    }

    fn rebuild_index(&self) -> Result<usize> {
        self.db.remove(PLAN_INDEX_MARK).map_err(be)?;
        self.plan_index.clear().map_err(be)?;
        let journalled = self.journalled_keys()?;
        let held = self.held_keys()?;
        let mut out = Batched::new(&self.plan_index);
        for kv in self.invoices.iter() {
            let (k, v) = kv.map_err(be)?;
            let rec = match decode_invoice(&k, &v) {
                Ok(rec) => rec,
                Err(e) => {
                    tracing::warn!(error = %e, "invoice record left out of the summary index");
                    continue;
                }
            };
            let row = IndexRow::of(&rec, journalled.contains(&*k), held.contains(&*k));
            out.insert(&k, &row.encode())?;
        }
        let rows = out.finish()?;
        self.db.insert(PLAN_INDEX_MARK, &[1]).map_err(be)?;
        self.durable()?;
        Ok(rows)
    }

    fn check_index(&self) -> Result<Vec<IndexMismatch>> {
        let journalled = self.journalled_keys()?;
        let held = self.held_keys()?;
        let split = |k: &[u8]| {
            let at = k.iter().position(|b| *b == SEP).unwrap_or(k.len());
            (
                String::from_utf8_lossy(&k[..at]).into_owned(),
                String::from_utf8_lossy(k.get(at + 1..).unwrap_or_default()).into_owned(),
            )
        };
        let mut out = Vec::new();
        let mut miss = |k: &[u8], what: String| {
            let (connection, invoice_id) = split(k);
            out.push(IndexMismatch {
                connection,
                invoice_id,
                what,
            });
        };
        for kv in self.invoices.iter() {
            let (k, v) = kv.map_err(be)?;
            let Ok(rec) = decode_invoice(&k, &v) else {
                continue;
            };
            let want = IndexRow::of(&rec, journalled.contains(&*k), held.contains(&*k));
            match self.plan_index.get(&k).map_err(be)? {
                None => miss(&k, "no index row".into()),
                Some(v) => match IndexRow::decode(&v) {
                    Err(e) => miss(&k, format!("unreadable index row: {e}")),
                    Ok(row) => {
                        let d = index::differences(&row, &want);
                        if !d.is_empty() {
                            miss(&k, d.join("; "));
                        }
                    }
                },
            }
        }
        for k in self.plan_index.iter().keys() {
            let k = k.map_err(be)?;
            if !self.invoices.contains_key(&k).map_err(be)? {
                miss(&k, "an index row without an invoice record".into());
            }
        }
        Ok(out)
    }

    fn count_invoices(&self, connection: &str) -> Result<usize> {
        let mut n = 0;
        for kv in self.invoices.scan_prefix(prefix(connection)).keys() {
            kv.map_err(be)?;
            n += 1;
        }
        Ok(n)
    }

    fn put_customer(&self, c: &Customer) -> Result<()> {
        self.customers
            .insert(key2(c.connection.as_str(), &c.id), encode(c)?)
            .map_err(be)?;
        Ok(())
    }

    fn get_customer(&self, connection: &str, id: &str) -> Result<Option<Customer>> {
        self.get(&self.customers, "customers", &key2(connection, id))
    }

    fn get_sync_state(&self, connection: &str) -> Result<Option<SyncState>> {
        self.get(&self.sync, "sync", connection.as_bytes())
    }

    fn put_sync_state(&self, connection: &str, s: &SyncState) -> Result<()> {
        self.sync
            .insert(connection.as_bytes(), encode(s)?)
            .map_err(be)?;
        self.durable()
    }

    fn get_tokens(&self, connection: &str) -> Result<Option<TokenSet>> {
        self.get(&self.tokens, "tokens", connection.as_bytes())
    }

    fn put_tokens(&self, connection: &str, t: &TokenSet) -> Result<()> {
        self.tokens
            .insert(connection.as_bytes(), encode(t)?)
            .map_err(be)?;
        self.durable()
    }

    fn get_journal(&self, key: &IdempotencyKey) -> Result<Option<JournalEntry>> {
        self.journal_entry(key.as_str().as_bytes())
    }

    fn put_journal(&self, e: &JournalEntry) -> Result<()> {
        self.replace_journal(None, e)?;
        self.durable()
    }

    fn put_journal_with_audit(&self, e: &JournalEntry, audit: &AuditEvent) -> Result<()> {
        let idx = key2(&e.connection, &format!("{}\0{}", e.invoice_id, e.key));
        let open = key2(&e.connection, e.key.as_str());
        let value = encode(e)?;
        let settled = e.is_settled();
        let (audit_key, audit_idx) = audit_keys(self.db.generate_id().map_err(be)?, audit);
        let audit_value = encode(audit)?;
        let row_key = key2(&e.connection, &e.invoice_id);
        (
            &self.journal,
            &self.journal_by_invoice,
            &self.journal_open,
            &self.audit,
            &self.audit_by_invoice,
            &self.plan_index,
        )
            .transaction(|(j, by_inv, open_t, a, a_by_inv, rows)| {
                flag_row(rows, &row_key, FLAG_HAS_JOURNAL, true)?;
                j.insert(e.key.as_str().as_bytes(), value.clone())?;
                by_inv.insert(idx.clone(), &[])?;
                if settled {
                    open_t.remove(open.clone())?;
                } else {
                    open_t.insert(open.clone(), &[])?;
                }
                a.insert(audit_key.clone(), audit_value.clone())?;
                if let Some(ik) = &audit_idx {
                    a_by_inv.insert(ik.clone(), &[])?;
                }
                Ok(())
            })
            .map_err(|e: sled::transaction::TransactionError<()>| {
                StoreError::Backend(format!("{e:?}"))
            })?;
        self.durable()
    }

    fn journal_for_invoice(&self, connection: &str, invoice_id: &str) -> Result<Vec<JournalEntry>> {
        self.indexed_journal(&self.journal_by_invoice, connection, invoice_id)
    }

    fn journal_for_ledger(&self, ledger: &str, invoice_id: &str) -> Result<Vec<JournalEntry>> {
        self.indexed_journal(&self.journal_by_ledger, ledger, invoice_id)
    }

    fn rekey_journal(
        &self,
        connection: &str,
        ledger: &str,
        rekey: &dyn Fn(&JournalEntry) -> IdempotencyKey,
    ) -> Result<usize> {
        let marker = key2("rekeyed", connection);
        if self.db.get(&marker).map_err(be)?.as_deref() == Some(ledger.as_bytes()) {
            return Ok(0);
        }
        let mut moved = 0;
        for k in self
            .journal_by_invoice
            .scan_prefix(prefix(connection))
            .keys()
        {
            let k = k.map_err(be)?;
            let key = &k[k
                .iter()
                .rposition(|b| *b == SEP)
                .map(|i| i + 1)
                .unwrap_or(0)..];
            let Some(old) = self.journal_entry(key)? else {
                continue;
            };
            if old.ledger.is_some() || old.payload.action().is_none() {
                continue;
            }
            let new_key = rekey(&old);
            // An entry already under the new key was written by this release: it is the
            // one that counts; the old one stays as it is, keeping its own key.
            if new_key == old.key || self.journal.contains_key(new_key.as_str()).map_err(be)? {
                continue;
            }
            let mut new = old.clone();
            new.sent_key = Some(old.key.clone());
            new.key = new_key;
            new.ledger = Some(ledger.to_string());
            self.replace_journal(Some(&old), &new)?;
            moved += 1;
        }
        self.db.insert(marker, ledger.as_bytes()).map_err(be)?;
        self.durable()?;
        Ok(moved)
    }

    fn unfinished_journal(&self, connection: &str) -> Result<Vec<JournalEntry>> {
        let mut out = Vec::new();
        for k in self.journal_open.scan_prefix(prefix(connection)).keys() {
            let k = k.map_err(be)?;
            let key = &k[connection.len() + 1..];
            if let Some(e) = self.journal_entry(key)? {
                out.push(e);
            }
        }
        out.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.key.cmp(&b.key))
        });
        Ok(out)
    }

    fn append_audit(&self, e: &AuditEvent) -> Result<()> {
        let (k, ik) = audit_keys(self.db.generate_id().map_err(be)?, e);
        self.audit.insert(k, encode(e)?).map_err(be)?;
        if let Some(ik) = ik {
            self.audit_by_invoice.insert(ik, &[]).map_err(be)?;
        }
        Ok(())
    }

    fn append_audit_for_invoices(&self, e: &AuditEvent, _invoices: &[String]) -> Result<()> {
        let (k, _) = audit_keys(self.db.generate_id().map_err(be)?, e);
        let seq = &k[k.len() - 8..];
        self.audit.insert(&k, encode(e)?).map_err(be)?;
        // One index key for the page, not one per invoice (100,000 of them in a big
        // first sync): each invoice was first seen at `e.at`, and finds it from there.
        let mut pk = page_prefix(&e.connection, e.at);
        pk.extend_from_slice(seq);
        self.audit_pages.insert(pk, &[]).map_err(be)?;
        Ok(())
    }

    fn audit_for_invoice(&self, connection: &str, invoice_id: &str) -> Result<Vec<AuditEvent>> {
        // (sequence, from a page event)
        let mut seqs: Vec<(Vec<u8>, bool)> = Vec::new();
        let mut p = key2(connection, invoice_id);
        p.push(SEP);
        for k in self.audit_by_invoice.scan_prefix(&p).keys() {
            let k = k.map_err(be)?;
            seqs.push((k[p.len()..].to_vec(), false));
        }
        if let Some(rec) = self.get_invoice(connection, invoice_id)? {
            let pp = page_prefix(connection, rec.first_seen_at);
            for k in self.audit_pages.scan_prefix(&pp).keys() {
                let k = k.map_err(be)?;
                seqs.push((k[pp.len()..].to_vec(), true));
            }
        }
        seqs.sort();
        let mut out = Vec::new();
        for (seq, page) in seqs {
            let mut ak = prefix(connection);
            ak.extend_from_slice(&seq);
            if let Some(e) = self.get::<AuditEvent>(&self.audit, "audit", &ak)? {
                // A page's "first seen" event names many invoices: this one's part.
                match (crate::sync::first_seen_event(&e, invoice_id), page) {
                    (Some(own), _) => out.push(own),
                    // Another page seen at the same instant.
                    (None, true) => {}
                    (None, false) => out.push(e),
                }
            }
        }
        Ok(out)
    }

    fn audit_since(&self, connection: &str, since: DateTime<Utc>) -> Result<Vec<AuditEvent>> {
        let mut out = Vec::new();
        for kv in self.audit.scan_prefix(prefix(connection)) {
            let (k, v) = kv.map_err(be)?;
            let e: AuditEvent = decode("audit", &k, &v)?;
            if e.at >= since {
                out.push(e);
            }
        }
        Ok(out)
    }

    fn put_hold(&self, connection: &str, target: &HoldTarget, hold: &Hold) -> Result<()> {
        let kind = match hold {
            Hold::Promise { .. } => HoldKind::Promise,
            Hold::Pause { .. } => HoldKind::Pause,
        };
        let key = hold_key(connection, target, kind);
        let value = encode(&(target, hold))?;
        let row_key = match target {
            HoldTarget::Invoice(id) => Some(key2(connection, id)),
            HoldTarget::Customer(_) => None,
        };
        (&self.holds, &self.plan_index)
            .transaction(|(h, idx)| {
                h.insert(key.as_slice(), value.as_slice())?;
                if let Some(rk) = &row_key {
                    flag_row(idx, rk, FLAG_HAS_HOLDS, true)?;
                }
                Ok(())
            })
            .map_err(|e: sled::transaction::TransactionError<()>| {
                StoreError::Backend(format!("{e:?}"))
            })?;
        self.durable()
    }

    fn remove_hold(&self, connection: &str, target: &HoldTarget, kind: HoldKind) -> Result<bool> {
        let key = hold_key(connection, target, kind);
        let other = hold_key(
            connection,
            target,
            match kind {
                HoldKind::Promise => HoldKind::Pause,
                HoldKind::Pause => HoldKind::Promise,
            },
        );
        let row_key = match target {
            HoldTarget::Invoice(id) => Some(key2(connection, id)),
            HoldTarget::Customer(_) => None,
        };
        let removed = (&self.holds, &self.plan_index)
            .transaction(|(h, idx)| {
                let removed = h.remove(key.as_slice())?.is_some();
                if let Some(rk) = &row_key {
                    let still = h.get(other.as_slice())?.is_some();
                    flag_row(idx, rk, FLAG_HAS_HOLDS, still)?;
                }
                Ok(removed)
            })
            .map_err(|e: sled::transaction::TransactionError<()>| {
                StoreError::Backend(format!("{e:?}"))
            })?;
        self.durable()?;
        Ok(removed)
    }

    fn holds(&self, connection: &str) -> Result<Vec<(HoldTarget, Hold)>> {
        let mut out = Vec::new();
        for kv in self.holds.scan_prefix(prefix(connection)) {
            let (k, v) = kv.map_err(be)?;
            out.push(decode("holds", &k, &v)?);
        }
        Ok(out)
    }

    fn put_sms_consent(&self, c: &crate::channels::sms::consent::SmsConsent) -> Result<()> {
        self.sms_consent
            .insert(key2(&c.connection, &c.customer_id), encode(c)?)
            .map_err(be)?;
        self.durable()
    }
    fn put_arrangement(&self, plan: &crate::arrangements::Arrangement) -> Result<()> {
        // Zero-padded so the ids list in order ("P2" before "P10").
        let n = plan.id.trim_start_matches('P');
        self.arrangements
            .insert(key2(&plan.connection, &format!("{n:0>10}")), encode(plan)?)
            .map_err(be)?;
        self.durable()
    }

    fn sms_consents(
        &self,
        connection: Option<&str>,
    ) -> Result<Vec<crate::channels::sms::consent::SmsConsent>> {
        let scan = match connection {
            Some(c) => self.sms_consent.scan_prefix(prefix(c)),
            None => self.sms_consent.scan_prefix(b""),
        };
        let mut out = Vec::new();
        for kv in scan {
            let (k, v) = kv.map_err(be)?;
            out.push(decode("sms_consent", &k, &v)?);
        }
        Ok(out)
    }
    fn arrangements(&self, connection: &str) -> Result<Vec<crate::arrangements::Arrangement>> {
        let mut out = Vec::new();
        for kv in self.arrangements.scan_prefix(prefix(connection)) {
            let (k, v) = kv.map_err(be)?;
            out.push(decode("arrangements", &k, &v)?);
        }
        Ok(out)
    }

    fn flush(&self) -> Result<()> {
        self.durable()
    }
}

/// Sets or clears `flag` on the index row at `key`, when there is a row (an invoice
/// not stored yet gets its flags looked up when it is).
fn flag_row(
    idx: &sled::transaction::TransactionalTree,
    key: &[u8],
    flag: u8,
    on: bool,
) -> std::result::Result<(), sled::transaction::ConflictableTransactionError<()>> {
    if let Some(v) = idx.get(key)? {
        if let Ok(mut row) = IndexRow::decode(&v) {
            let flags = if on {
                row.flags | flag
            } else {
                row.flags & !flag
            };
            if flags != row.flags {
                row.flags = flags;
                idx.insert(key, &row.encode()[..])?;
            }
        }
    }
    Ok(())
}

/// The key prefix of the page events of `connection` written at `at`.
fn page_prefix(connection: &str, at: DateTime<Utc>) -> Vec<u8> {
    let mut k = prefix(connection);
    k.extend_from_slice(&at.timestamp_micros().to_be_bytes());
    k.push(SEP);
    k
}

/// An audit record's key (connection, sequence) and, for one about an invoice, its
/// index key (connection, invoice, sequence).
fn audit_keys(seq: u64, e: &AuditEvent) -> (Vec<u8>, Option<Vec<u8>>) {
    let seq = seq.to_be_bytes();
    let mut k = prefix(&e.connection);
    k.extend_from_slice(&seq);
    let ik = e.invoice_id.as_ref().map(|inv| {
        let mut ik = key2(&e.connection, inv);
        ik.push(SEP);
        ik.extend_from_slice(&seq);
        ik
    });
    (k, ik)
}

fn hold_key(connection: &str, target: &HoldTarget, kind: HoldKind) -> Vec<u8> {
    let t = match target {
        HoldTarget::Invoice(id) => format!("invoice:{id}"),
        HoldTarget::Customer(id) => format!("customer:{id}"),
    };
    let k = match kind {
        HoldKind::Promise => "promise",
        HoldKind::Pause => "pause",
    };
    key2(connection, &format!("{t}\0{k}"))
}

impl TokenStore for SledStore {
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

/// How long to wait for sled's own file lock once ours is held.
const SLED_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Our `StateLock` already excludes other processes, so sled refusing its lock here can
/// only be a handle of this process that was just dropped: sled's flusher thread keeps
/// the file locked for a moment after the last `Db` goes (a reopen in place, a test that
/// writes a fixture and reopens). Waiting briefly is safe; anything else fails at once.
fn open_sled(path: &Path) -> Result<sled::Db> {
    let started = std::time::Instant::now();
    loop {
        let opened = sled::Config::new()
            .path(path)
            // Bounded so an idle daemon with a large ledger stays small in memory.
            .cache_capacity(64 * 1024 * 1024)
            .flush_every_ms(Some(500))
            .open();
        match opened {
            Err(sled::Error::Io(e))
                if e.kind() == std::io::ErrorKind::WouldBlock
                    && started.elapsed() < SLED_LOCK_WAIT =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other.map_err(be),
        }
    }
}
