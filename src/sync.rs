//! Bringing the store up to date with one connection.
//!
//! Incremental passes read what changed since the stored cursor; a full reconciliation
//! on a slower cadence re-reads every open invoice and re-checks, by id, the ones it no
//! longer lists. The cursor is stored only after the page it follows is stored, so a
//! crash never skips a page.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use overdued_connector::{
    Clock, Connector, ConnectorError, Currency, InvoiceSnapshot, InvoiceStatus, Money, SyncCursor,
    SyncMode,
};
use rust_decimal::Decimal;
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

/// Whether an open invoice read by this sync names a customer whose record is not
/// stored. Only what was read can have brought a new customer: the invoices already
/// stored were checked when they were read, so the store is not scanned again.
fn names_unknown_customer(
    store: &dyn Store,
    connection: &str,
    customers: &BTreeSet<String>,
) -> Result<bool, StoreError> {
    for id in customers {
        if store.get_customer(connection, id)?.is_none() {
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
    let mut fresh = FreshPass::begin(store, &name).map_err(st_err)?;
    let mut customers = BTreeSet::new();
    let result = async {
        // Incremental first: it is what keeps the cache fresh between reconciliations,
        // and on a first run (no cursor) it reads everything once.
        let start = state.cursor.clone();
        read_pages(
            conn,
            store,
            clock,
            &name,
            start,
            &mut report,
            &mut fresh,
            &mut customers,
            |next, _| {
                state.cursor = next.clone();
                store.put_sync_state(&name, &state).map_err(st_err)
            },
        )
        .await?;
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
            read_pages(
                conn,
                store,
                clock,
                &name,
                cursor,
                &mut report,
                &mut fresh,
                &mut customers,
                |next, more| {
                    state.full_cursor = more.then(|| next.clone());
                    store.put_sync_state(&name, &state).map_err(st_err)
                },
            )
            .await?;
            // Open in the cache but absent from the full listing: paid, voided or deleted
            // in a way incremental sync did not show. Ask for them by id.
            let stale = stale_open_invoices(store, &name, started).map_err(st_err)?;
            if !stale.is_empty() {
                let fresh_reads = conn.fetch_invoices(&stale).await.map_err(conn_err)?;
                report.changed +=
                    store_page_known(store, clock, &name, fresh_reads, &[], fresh.as_mut())
                        .map_err(st_err)?;
            }
            let customers = conn.list_customers(None).await.map_err(conn_err)?;
            report.customers = customers.len();
            for c in &customers {
                store.put_customer(c).map_err(st_err)?;
            }
            state.last_full_sync = Some(clock.now());
        } else if report.changed > 0
            && names_unknown_customer(store, &name, &customers).map_err(st_err)?
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

/// Reads and stores the pages of a pass from `cursor` on; `after` stores each page's
/// cursor once the page itself is stored, so a crash never skips a page.
///
/// Pipelined: the request for the next page goes out before this page is stored, so
/// the vendor's answer travels while the CPU writes, and the call rate holds on a busy
/// machine. The request goes through the connector's runtime like any other, within its
/// rate and concurrency limits; at most one page is read ahead (the next page's cursor
/// comes from this page's rows, so no more could be). A connector that can be shared
/// ([`Connector::shared`]) reads and decodes that page as a task of its own, on another
/// thread while this one stores; otherwise the request is only sent early.
#[allow(clippy::too_many_arguments)]
async fn read_pages(
    conn: &dyn Connector,
    store: &dyn Store,
    clock: &dyn Clock,
    name: &str,
    cursor: SyncCursor,
    report: &mut SyncReport,
    fresh: &mut Option<FreshPass>,
    customers: &mut BTreeSet<String>,
    mut after: impl FnMut(&SyncCursor, bool) -> Result<(), SyncError>,
) -> Result<(), SyncError> {
    let fetch = |cursor: SyncCursor| async move {
        conn.sync_page(&cursor)
            .await
            .map_err(|source| SyncError::Connector {
                connection: name.to_string(),
                source,
            })
    };
    let shared = conn.shared();
    let mut page = fetch(cursor).await?;
    loop {
        report.pages += 1;
        report.invoices_read += page.invoices.len();
        for s in &page.invoices {
            if s.status.is_open()
                && !s.customer.id.is_empty()
                && !customers.contains(&s.customer.id)
            {
                customers.insert(s.customer.id.clone());
            }
        }
        let (next, more) = (page.next.clone(), page.more);
        let task = match (&shared, more) {
            (Some(c), true) => {
                let (c, next) = (c.clone(), next.clone());
                Some(AbortOnDrop(tokio::spawn(async move {
                    c.sync_page(&next).await
                })))
            }
            _ => None,
        };
        let mut ahead = (more && task.is_none()).then(|| Box::pin(fetch(next.clone())));
        // One poll sends the request; the answer is read once this page is stored.
        let early = match ahead.as_mut() {
            Some(f) => match futures::poll!(f.as_mut()) {
                std::task::Poll::Ready(r) => Some(r),
                std::task::Poll::Pending => None,
            },
            None => None,
        };
        report.changed += store_page_known(
            store,
            clock,
            name,
            page.invoices,
            &page.deleted,
            fresh.as_mut(),
        )
        .map_err(|source| SyncError::Store {
            connection: name.to_string(),
            source,
        })?;
        after(&next, more)?;
        if let Some(mut t) = task {
            page = match (&mut t.0).await {
                Ok(r) => r.map_err(|source| SyncError::Connector {
                    connection: name.to_string(),
                    source,
                })?,
                Err(e) => {
                    return Err(SyncError::Connector {
                        connection: name.to_string(),
                        source: overdued_connector::ConnectorError::transient(format!(
                            "reading the next page: {e}"
                        )),
                    })
                }
            };
            continue;
        }
        let Some(f) = ahead else { return Ok(()) };
        page = match early {
            Some(r) => r?,
            None => f.await?,
        };
    }
}

/// A page read ahead that nobody will store (the pass failed, or was dropped at
/// shutdown) is not read to the end.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
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
    store_page_known(store, clock, connection, invoices, deleted, None)
}

/// What a pass over a connection the store had never seen knows without asking the
/// store: only the invoices this pass stored itself exist. An initial sync of 100,000
/// invoices then makes no lookup that can only answer "not found".
#[derive(Debug, Default)]
struct FreshPass {
    stored: HashSet<String>,
}

impl FreshPass {
    /// `Some` when the store holds no invoice of `connection` at the start of a pass.
    fn begin(store: &dyn Store, connection: &str) -> Result<Option<FreshPass>, StoreError> {
        let mut any = false;
        store.for_each_invoice(connection, &mut |_| {
            any = true;
            false
        })?;
        Ok((!any).then(FreshPass::default))
    }
}

/// One row of a page's "first seen" event: what the per-invoice event used to carry.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct FirstSeenRow {
    id: String,
    status: InvoiceStatus,
    #[serde(with = "rust_decimal::serde::str")]
    amount_due: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    total: Decimal,
    currency: Currency,
    due_date: NaiveDate,
    updated_at: DateTime<Utc>,
}

/// The detail key of a page's "first seen" event.
const FIRST_SEEN: &str = "first_seen";

fn store_page_known(
    store: &dyn Store,
    clock: &dyn Clock,
    connection: &str,
    invoices: Vec<InvoiceSnapshot>,
    deleted: &[String],
    fresh: Option<&mut FreshPass>,
) -> Result<usize, StoreError> {
    let now = clock.now();
    let mut changed = 0;
    let mut records = Vec::with_capacity(invoices.len() + deleted.len());
    // Ordered by id: the audit log and the batch are written in a stable order.
    let mut by_id: BTreeMap<String, InvoiceSnapshot> = BTreeMap::new();
    for s in invoices {
        by_id.insert(s.remote_id.clone(), s);
    }
    let known = |fresh: &Option<&mut FreshPass>, id: &str| match fresh {
        Some(f) => f.stored.contains(id),
        None => true,
    };
    let lookup = |fresh: &Option<&mut FreshPass>, id: &str| {
        if known(fresh, id) {
            store.get_invoice(connection, id)
        } else {
            Ok(None)
        }
    };
    for id in deleted {
        if let Some(prev) = lookup(&fresh, id)? {
            let mut s = prev.snapshot;
            s.status = InvoiceStatus::Deleted;
            by_id.insert(id.clone(), s);
        }
    }
    let mut first_seen = Vec::new();
    for (id, snap) in by_id {
        let prev = lookup(&fresh, &id)?;
        let (first_seen_at, mut balance_history) = match prev {
            // Formatted when read (`first_seen_event`), not for every invoice of a big
            // first sync: one event per page names them all.
            None => {
                changed += 1;
                first_seen.push(FirstSeenRow {
                    id: id.clone(),
                    status: snap.status,
                    amount_due: snap.amount_due,
                    total: snap.total,
                    currency: snap.currency,
                    due_date: snap.due_date,
                    updated_at: snap.updated_at,
                });
                (now, Vec::new())
            }
            Some(p) => {
                if let Some(msg) = describe_change(&p.snapshot, &snap) {
                    changed += 1;
                    store.append_audit(&AuditEvent {
                        at: now,
                        connection: connection.to_string(),
                        invoice_id: Some(id.clone()),
                        kind: "observed".into(),
                        message: msg,
                        detail: change_detail(&snap),
                    })?;
                }
                (p.first_seen_at, p.balance_history)
            }
        };
        if balance_history.last().map(|b| b.1) != Some(snap.amount_due) {
            balance_history.push((snap.updated_at.date_naive(), snap.amount_due));
        }
        records.push(InvoiceRecord {
            snapshot: snap,
            seen_at: now,
            first_seen_at,
            balance_history,
        });
    }
    if !first_seen.is_empty() {
        let ids: Vec<String> = first_seen.iter().map(|r| r.id.clone()).collect();
        let n = first_seen.len();
        let detail = serde_json::to_value(&first_seen)
            .map_err(|e| StoreError::Backend(format!("encode first-seen rows: {e}")))?;
        store.append_audit_for_invoices(
            &AuditEvent {
                at: now,
                connection: connection.to_string(),
                invoice_id: None,
                kind: "observed".into(),
                message: format!("first seen: {n} invoice{}", if n == 1 { "" } else { "s" }),
                detail: serde_json::json!({ FIRST_SEEN: detail }),
            },
            &ids,
        )?;
    }
    store.put_invoices(&records)?;
    if let Some(f) = fresh {
        f.stored
            .extend(records.into_iter().map(|r| r.snapshot.remote_id));
    }
    Ok(changed)
}

fn change_detail(snap: &InvoiceSnapshot) -> serde_json::Value {
    serde_json::json!({
        "status": snap.status,
        "amount_due": snap.amount_due.to_string(),
        "currency": snap.currency,
        "due_date": snap.due_date,
        "updated_at": snap.updated_at,
    })
}

/// The per-invoice "first seen" event of `invoice` inside a page's event, as it would
/// have been written on its own; `None` for any other event. The audit index lists the
/// page event under each invoice it names, so an invoice's history reads the same.
pub fn first_seen_event(e: &AuditEvent, invoice: &str) -> Option<AuditEvent> {
    if e.kind != "observed" || e.invoice_id.is_some() {
        return None;
    }
    let rows = e.detail.get(FIRST_SEEN)?.as_array()?;
    let row = rows
        .iter()
        .find(|r| r.get("id").and_then(|v| v.as_str()) == Some(invoice))?;
    let r: FirstSeenRow = serde_json::from_value(row.clone()).ok()?;
    let due = Money::new(r.amount_due, r.currency);
    let total = Money::new(r.total, r.currency);
    Some(AuditEvent {
        at: e.at,
        connection: e.connection.clone(),
        invoice_id: Some(r.id),
        kind: e.kind.clone(),
        message: format!(
            "first seen: {}, {} due of {}, due {}",
            status_word(r.status),
            due.display_human(),
            total.amount_human(),
            r.due_date
        ),
        detail: serde_json::json!({
            "status": r.status,
            "amount_due": r.amount_due.to_string(),
            "currency": r.currency,
            "due_date": r.due_date,
            "updated_at": r.updated_at,
        }),
    })
}

fn status_word(s: InvoiceStatus) -> String {
    format!("{s:?}").to_lowercase()
}

fn describe_change(p: &InvoiceSnapshot, now: &InvoiceSnapshot) -> Option<String> {
    let status = status_word;
    if p.status != now.status {
        Some(format!(
            "status {} -> {}, {} due",
            status(p.status),
            status(now.status),
            now.due_money().display_human()
        ))
    } else if p.amount_due != now.amount_due {
        Some(format!(
            "amount due {} -> {}",
            p.due_money().display_human(),
            now.due_money().amount_human()
        ))
    } else if p.due_date != now.due_date {
        Some(format!("due date {} -> {}", p.due_date, now.due_date))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SledStore;
    use overdued_connector::{ConnectionId, CustomerRef, ManualClock, System};
    use rust_decimal_macros::dec;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn snap(id: &str, due: Decimal) -> InvoiceSnapshot {
        InvoiceSnapshot {
            connection: ConnectionId::new("uk"),
            system: System::Xero,
            remote_id: id.into(),
            number: Some(format!("INV-{id}")),
            customer: CustomerRef {
                id: "c1".into(),
                name: "Ridgeway Bakery".into(),
                email: None,
            },
            currency: Currency::GBP,
            total: dec!(1200.50),
            amount_due: due,
            issue_date: NaiveDate::from_ymd_opt(2026, 9, 1).unwrap(),
            due_date: NaiveDate::from_ymd_opt(2026, 9, 30).unwrap(),
            status: InvoiceStatus::Open,
            updated_at: t("2026-10-02T08:00:00Z"),
            version: None,
            memo: String::new(),
            is_fee_invoice: false,
            pay_url: None,
            paid_on: None,
        }
    }

    /// The message and detail the per-invoice event carried before pages were batched.
    fn old_first_seen(s: &InvoiceSnapshot, at: DateTime<Utc>) -> AuditEvent {
        AuditEvent {
            at,
            connection: "uk".into(),
            invoice_id: Some(s.remote_id.clone()),
            kind: "observed".into(),
            message: format!(
                "first seen: open, {} due of {}, due {}",
                s.due_money().display_human(),
                s.total_money().amount_human(),
                s.due_date
            ),
            detail: change_detail(s),
        }
    }

    #[test]
    fn a_page_is_one_first_seen_event_and_each_invoice_history_reads_as_before() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let at = t("2026-10-03T09:00:00Z");
        let clock = ManualClock::new(at);
        let (a, b) = (snap("a1", dec!(700.25)), snap("b2", dec!(1200.50)));
        let changed = store_page(&store, &clock, "uk", vec![b.clone(), a.clone()], &[]).unwrap();
        assert_eq!(changed, 2);
        let log = store.audit_since("uk", at).unwrap();
        assert_eq!(log.len(), 1, "one event for the page: {log:?}");
        assert_eq!(log[0].message, "first seen: 2 invoices");
        assert_eq!(log[0].invoice_id, None);
        for s in [&a, &b] {
            assert_eq!(
                store.audit_for_invoice("uk", &s.remote_id).unwrap(),
                vec![old_first_seen(s, at)]
            );
        }
        assert!(store.audit_for_invoice("uk", "zz").unwrap().is_empty());
        let shown = crate::ops::history(&store, "uk", "a1", chrono_tz::UTC).unwrap();
        assert!(
            shown
                .contains("observed  first seen: open, GBP 700.25 due of 1,200.50, due 2026-09-30"),
            "{shown}"
        );
    }

    #[test]
    fn a_later_change_is_its_own_event_after_the_first_sight() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let clock = ManualClock::new(t("2026-10-03T09:00:00Z"));
        store_page(&store, &clock, "uk", vec![snap("a1", dec!(700.25))], &[]).unwrap();
        clock.set(t("2026-10-04T09:00:00Z"));
        let n = store_page(&store, &clock, "uk", vec![snap("a1", dec!(100))], &[]).unwrap();
        assert_eq!(n, 1);
        let log = store.audit_for_invoice("uk", "a1").unwrap();
        assert_eq!(log.len(), 2);
        assert!(log[0].message.starts_with("first seen: open"), "{log:?}");
        assert_eq!(log[1].message, "amount due GBP 700.25 -> 100.00");
        let rec = store.get_invoice("uk", "a1").unwrap().unwrap();
        assert_eq!(rec.first_seen_at, t("2026-10-03T09:00:00Z"));
    }

    /// On a connection the store never saw, an invoice read twice in one pass (changed
    /// between two pages) is known the second time: first seen once, its first sight kept.
    #[test]
    fn a_fresh_pass_knows_what_it_stored_itself() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let clock = ManualClock::new(t("2026-10-03T09:00:00Z"));
        let mut fresh = FreshPass::begin(&store, "uk")
            .unwrap()
            .expect("empty store");
        store_page_known(
            &store,
            &clock,
            "uk",
            vec![snap("a1", dec!(700.25))],
            &[],
            Some(&mut fresh),
        )
        .unwrap();
        clock.set(t("2026-10-03T09:00:05Z"));
        let n = store_page_known(
            &store,
            &clock,
            "uk",
            vec![snap("a1", dec!(100)), snap("b2", dec!(5))],
            &["a1".to_string(), "gone".to_string()],
            Some(&mut fresh),
        )
        .unwrap();
        assert_eq!(n, 2);
        let rec = store.get_invoice("uk", "a1").unwrap().unwrap();
        assert_eq!(rec.first_seen_at, t("2026-10-03T09:00:00Z"));
        assert_eq!(rec.snapshot.status, InvoiceStatus::Deleted);
        assert!(store.get_invoice("uk", "gone").unwrap().is_none());
        let log = store.audit_for_invoice("uk", "a1").unwrap();
        assert_eq!(log.len(), 2, "{log:?}");
        assert!(
            log[1].message.starts_with("status open -> deleted"),
            "{log:?}"
        );
        assert!(FreshPass::begin(&store, "uk").unwrap().is_none());
    }
}
