//! Bringing the store up to date with one connection.
//!
//! Incremental passes read what changed since the stored cursor; a full reconciliation
//! on a slower cadence re-reads every open invoice and re-checks, by id, the ones it no
//! longer lists. The cursor is stored only after the page it follows is stored, so a
//! crash never skips a page.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use overdued_connector::{
    Clock, Connector, ConnectorError, InvoiceSnapshot, InvoiceStatus, SyncCursor, SyncMode,
};
use tracing::{info, warn};

use crate::store::{AuditEvent, InvoiceRecord, Store, StoreError, SyncState};

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("connection {connection}: {source}")]
    Connector {
        connection: String,
        source: ConnectorError,
    },
    #[error("connection {connection}: {source}")]
    Store {
        connection: String,
        source: StoreError,
    },
}

impl SyncError {
    pub fn connector_error(&self) -> Option<&ConnectorError> {
        match self {
            SyncError::Connector { source, .. } => Some(source),
            SyncError::Store { .. } => None,
        }
    }
}

/// What one sync did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    pub pages: u32,
    pub invoices_read: usize,
    /// Invoices whose status or balance changed (or that are new).
    pub changed: usize,
    pub full: bool,
    pub customers: usize,
}

/// Whether an open invoice names a customer whose record is not stored.
fn has_open_invoice_of_unknown_customer(
    store: &dyn Store,
    connection: &str,
) -> Result<bool, StoreError> {
    let mut customers = std::collections::BTreeSet::new();
    store.for_each_invoice(connection, &mut |r| {
        if r.snapshot.status.is_open() && !r.snapshot.customer.id.is_empty() {
            customers.insert(r.snapshot.customer.id);
        }
        true
    })?;
    for id in customers {
        if store.get_customer(connection, &id)?.is_none() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Runs an incremental pass, and a full reconciliation when one is due (or `force_full`).
pub async fn sync_connection(
    conn: &dyn Connector,
    store: &dyn Store,
    clock: &dyn Clock,
    full_every: Duration,
    force_full: bool,
) -> Result<SyncReport, SyncError> {
    let name = conn.connection().as_str().to_string();
    let st_err = |source| SyncError::Store {
        connection: name.clone(),
        source,
    };
    let mut state = store
        .get_sync_state(&name)
        .map_err(st_err)?
        .unwrap_or(SyncState {
            cursor: SyncCursor::initial(),
            full_cursor: None,
            last_success: None,
            last_full_sync: None,
            last_error: None,
        });
    let mut report = SyncReport::default();
    let now = clock.now();
    let full_due = force_full
        || state.full_cursor.is_some()
        || match state.last_full_sync {
            None => state.last_success.is_some(),
            Some(t) => now.signed_duration_since(t).to_std().unwrap_or_default() >= full_every,
        };

    // An incremental pass from the very beginning reads every invoice of every status:
    // it is a full reconciliation too, so the next one is due a full interval later
    // rather than on the very next poll (which would read everything a second time).
    let reads_everything = state.cursor.mode == SyncMode::Incremental
        && state.cursor.since.is_none()
        && state.cursor.position == SyncCursor::initial().position
        && state.last_full_sync.is_none();

    let conn_err = |source| SyncError::Connector {
        connection: name.clone(),
        source,
    };
    let result = async {
        // Incremental first: it is what keeps the cache fresh between reconciliations,
        // and on a first run (no cursor) it reads everything once.
        loop {
            let (next, more) =
                read_page(conn, store, clock, &name, &state.cursor, &mut report).await?;
            state.cursor = next;
            store.put_sync_state(&name, &state).map_err(st_err)?;
            if !more {
                break;
            }
        }
        if reads_everything && !full_due {
            state.last_full_sync = Some(now);
        }
        if full_due {
            report.full = true;
            let started = clock.now();
            let mut cursor = state.full_cursor.clone().unwrap_or_else(SyncCursor::full);
            if cursor.mode != SyncMode::Full {
                cursor = SyncCursor::full();
            }
            loop {
                let (next, more) =
                    read_page(conn, store, clock, &name, &cursor, &mut report).await?;
                cursor = next;
                state.full_cursor = more.then(|| cursor.clone());
                store.put_sync_state(&name, &state).map_err(st_err)?;
                if !more {
                    break;
                }
            }
            // Open in the cache but absent from the full listing: paid, voided or deleted
            // in a way incremental sync did not show. Ask for them by id.
            let stale = stale_open_invoices(store, &name, started).map_err(st_err)?;
            if !stale.is_empty() {
                let fresh = conn.fetch_invoices(&stale).await.map_err(conn_err)?;
                report.changed += store_page(store, clock, &name, fresh, &[]).map_err(st_err)?;
            }
            let customers = conn.list_customers(None).await.map_err(conn_err)?;
            report.customers = customers.len();
            for c in &customers {
                store.put_customer(c).map_err(st_err)?;
            }
            state.last_full_sync = Some(clock.now());
        } else if report.changed > 0
            && has_open_invoice_of_unknown_customer(store, &name).map_err(st_err)?
        {
            // A new customer's phone numbers and address are on their contact record,
            // not on the invoice: the calls list needs them before the next full sync.
            let customers = conn.list_customers(None).await.map_err(conn_err)?;
            report.customers = customers.len();
            for c in &customers {
                store.put_customer(c).map_err(st_err)?;
            }
        }
        Ok::<(), SyncError>(())
    }
    .await;

    match result {
        Ok(()) => {
            state.last_success = Some(clock.now());
            state.last_error = None;
            store.put_sync_state(&name, &state).map_err(st_err)?;
            info!(connection = %name, pages = report.pages, invoices = report.invoices_read, changed = report.changed, full = report.full, "sync finished");
            Ok(report)
        }
        Err(e) => {
            state.last_error = Some(e.to_string());
            // Best effort: the error itself is what the caller needs.
            let _ = store.put_sync_state(&name, &state);
            warn!(connection = %name, error = %e, "sync failed");
            Err(e)
        }
    }
}

/// Reads and stores one page of a pass; the caller stores the returned cursor once the
/// page is stored. Returns the next cursor and whether the pass goes on.
async fn read_page(
    conn: &dyn Connector,
    store: &dyn Store,
    clock: &dyn Clock,
    name: &str,
    cursor: &SyncCursor,
    report: &mut SyncReport,
) -> Result<(SyncCursor, bool), SyncError> {
    let page = conn
        .sync_page(cursor)
        .await
        .map_err(|source| SyncError::Connector {
            connection: name.to_string(),
            source,
        })?;
    report.pages += 1;
    report.invoices_read += page.invoices.len();
    report.changed +=
        store_page(store, clock, name, page.invoices, &page.deleted).map_err(|source| {
            SyncError::Store {
                connection: name.to_string(),
                source,
            }
        })?;
    Ok((page.next, page.more))
}

fn stale_open_invoices(
    store: &dyn Store,
    connection: &str,
    since: DateTime<Utc>,
) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    store.for_each_invoice(connection, &mut |r| {
        if r.snapshot.status.is_open() && r.seen_at < since {
            out.push(r.snapshot.remote_id);
        }
        true
    })?;
    Ok(out)
}

/// Stores a page of snapshots (and deletions), auditing every change of status or
/// balance. Returns how many invoices changed.
pub fn store_page(
    store: &dyn Store,
    clock: &dyn Clock,
    connection: &str,
    invoices: Vec<InvoiceSnapshot>,
    deleted: &[String],
) -> Result<usize, StoreError> {
    let now = clock.now();
    let mut changed = 0;
    let mut records = Vec::with_capacity(invoices.len() + deleted.len());
    let mut by_id: HashMap<String, InvoiceSnapshot> = HashMap::new();
    for s in invoices {
        by_id.insert(s.remote_id.clone(), s);
    }
    for id in deleted {
        if let Some(prev) = store.get_invoice(connection, id)? {
            let mut s = prev.snapshot;
            s.status = InvoiceStatus::Deleted;
            by_id.insert(id.clone(), s);
        }
    }
    let mut ids: Vec<&String> = by_id.keys().collect();
    ids.sort();
    for id in ids {
        let snap = &by_id[id];
        let prev = store.get_invoice(connection, id)?;
        if let Some(msg) = describe_change(prev.as_ref().map(|p| &p.snapshot), snap) {
            changed += 1;
            store.append_audit(&AuditEvent {
                at: now,
                connection: connection.to_string(),
                invoice_id: Some(id.clone()),
                kind: "observed".into(),
                message: msg,
                detail: serde_json::json!({
                    "status": snap.status,
                    "amount_due": snap.amount_due.to_string(),
                    "currency": snap.currency,
                    "due_date": snap.due_date,
                    "updated_at": snap.updated_at,
                }),
            })?;
        }
        let (first_seen_at, mut balance_history) = match prev {
            Some(p) => (p.first_seen_at, p.balance_history),
            None => (now, Vec::new()),
        };
        if balance_history.last().map(|b| b.1) != Some(snap.amount_due) {
            balance_history.push((snap.updated_at.date_naive(), snap.amount_due));
        }
        records.push(InvoiceRecord {
            snapshot: snap.clone(),
            seen_at: now,
            first_seen_at,
            balance_history,
        });
    }
    store.put_invoices(&records)?;
    Ok(changed)
}

fn describe_change(prev: Option<&InvoiceSnapshot>, now: &InvoiceSnapshot) -> Option<String> {
    let status = |s: InvoiceStatus| format!("{s:?}").to_lowercase();
    match prev {
        None => Some(format!(
            "first seen: {}, {} due of {}, due {}",
            status(now.status),
            now.due_money().display_human(),
            now.total_money().amount_human(),
            now.due_date
        )),
        Some(p) if p.status != now.status => Some(format!(
            "status {} -> {}, {} due",
            status(p.status),
            status(now.status),
            now.due_money().display_human()
        )),
        Some(p) if p.amount_due != now.amount_due => Some(format!(
            "amount due {} -> {}",
            p.due_money().display_human(),
            now.due_money().amount_human()
        )),
        Some(p) if p.due_date != now.due_date => {
            Some(format!("due date {} -> {}", p.due_date, now.due_date))
        }
        _ => None,
    }
}
