//! The webhook path: a change the vendor reports re-reads only the invoices it names,
//! stores them, and closes what is now wrong for them, so a payment stops its reminders
//! in the time of a few API calls and store writes, whatever the size of the store.
//!
//! What it does not do is start new actions: a plan needs the whole ledger (each
//! customer's payer profile and the reminders of their other invoices today), which is
//! the periodic cycle's work. An invoice a webhook reports changed in a way that makes
//! something due (a new due date, a partial payment) is acted on by the next periodic
//! cycle, which plans from what this path stored.
//!
//! Exactly once as everywhere: an unfinished action is closed through
//! [`Executor::close_stale`], which journals before and after and looks for an effect
//! that may have gone through before closing it unsent; the caller holds the
//! connection's cycle lock, so a targeted and a periodic cycle never run together.

use std::collections::{BTreeSet, HashMap};

use overdued_connector::{Clock, Connector, InvoiceSnapshot, InvoiceStatus};

use crate::config::{Config, ConnectionConfig, Mode};
use crate::cycle::{ledger_of, CycleError};
use crate::executor::{CustomerLimits, ExecReport, Executor};
use crate::store::{Store, StoreError};
use crate::sync::{store_page, SyncError};

/// More invoices than this in one window are read by a sync of the whole connection: a
/// page of changes costs about as many calls as reading them by id, and the full cycle
/// also plans whatever they made due.
pub const MAX_TARGETED_INVOICES: usize = 200;

/// What a webhook window names for one connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Targets {
    /// Invoice ids (QuickBooks `Invoice` entities, Xero `INVOICE` resource ids).
    pub invoices: BTreeSet<String>,
    /// QuickBooks `Payment` entity ids, resolved to their invoices through the connector.
    pub payments: BTreeSet<String>,
    /// Something was reported that cannot be read by id (too many changes, an entity
    /// the path does not know): the whole connection is synced instead.
    pub whole_connection: bool,
}

impl Targets {
    pub fn is_empty(&self) -> bool {
        self.invoices.is_empty() && self.payments.is_empty() && !self.whole_connection
    }

    /// Adds one reported change of `entity` (`invoice`, `payment`, lower case).
    pub fn add(&mut self, entity: &str, id: &str) {
        if self.whole_connection {
            return;
        }
        match entity {
            "invoice" => {
                self.invoices.insert(id.to_string());
            }
            "payment" => {
                self.payments.insert(id.to_string());
            }
            _ => self.whole_connection = true,
        }
        if self.invoices.len() + self.payments.len() > MAX_TARGETED_INVOICES {
            self.whole_connection = true;
            self.invoices.clear();
            self.payments.clear();
        }
    }

    pub fn merge(&mut self, other: Targets) {
        if other.whole_connection {
            self.whole_connection = true;
        }
        for id in other.invoices {
            self.add("invoice", &id);
        }
        for id in other.payments {
            self.add("payment", &id);
        }
        if self.whole_connection {
            self.invoices.clear();
            self.payments.clear();
        }
    }
}

/// One invoice the targeted cycle read and stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touched {
    pub id: String,
    pub number: String,
    pub customer: String,
    pub status: InvoiceStatus,
}

#[derive(Debug, Default)]
pub struct TargetedReport {
    /// Invoices read from the ledger and stored, in id order.
    pub touched: Vec<Touched>,
    /// Ids neither the ledger nor the store knows (a forged or stale event): ignored.
    pub unknown: Vec<String>,
    /// Unfinished actions of the touched invoices closed because of what was read.
    pub closed: ExecReport,
    pub dry_run: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TargetedError {
    /// The change cannot be followed by id; the whole connection must be synced.
    #[error("{0}")]
    NeedsFullCycle(String),
    #[error(transparent)]
    Cycle(#[from] CycleError),
}

/// Reads the invoices `targets` names (and those of the payments it names) from the
/// ledger, stores them and closes their unfinished actions that must not go out any
/// more. The caller holds the connection's cycle lock.
pub async fn run_targeted(
    config: &Config,
    conn_cfg: &ConnectionConfig,
    connector: &dyn Connector,
    store: &dyn Store,
    clock: &dyn Clock,
    targets: &Targets,
) -> Result<TargetedReport, TargetedError> {
    let name = conn_cfg.name.as_str();
    if targets.whole_connection {
        return Err(TargetedError::NeedsFullCycle(
            "the changes reported cannot be read invoice by invoice".into(),
        ));
    }
    let connector_error = |source| {
        TargetedError::Cycle(CycleError::Sync(SyncError::Connector {
            connection: name.to_string(),
            source,
        }))
    };
    let st = |source: StoreError| {
        TargetedError::Cycle(CycleError::Store {
            connection: name.to_string(),
            source,
        })
    };
    let mut ids: BTreeSet<String> = targets.invoices.clone();
    for p in &targets.payments {
        match connector.invoices_of_payment(p).await {
            Ok(Some(of)) => ids.extend(of),
            Ok(None) => {
                return Err(TargetedError::NeedsFullCycle(format!(
                    "{} does not say which invoices payment {p} settled",
                    connector.system()
                )))
            }
            // A payment deleted since (its invoices reopen) or unreadable: only a sync
            // of the connection finds what it changed.
            Err(e) => {
                return Err(TargetedError::NeedsFullCycle(format!(
                    "payment {p} could not be read: {e}"
                )))
            }
        }
    }
    if ids.len() > MAX_TARGETED_INVOICES {
        return Err(TargetedError::NeedsFullCycle(format!(
            "{} invoices changed",
            ids.len()
        )));
    }
    let mut report = TargetedReport {
        dry_run: config.daemon.mode == Mode::DryRun,
        ..TargetedReport::default()
    };
    if ids.is_empty() {
        return Ok(report);
    }
    let ids: Vec<String> = ids.into_iter().collect();
    let read = connector
        .fetch_invoices(&ids)
        .await
        .map_err(connector_error)?;
    let mut keep: Vec<InvoiceSnapshot> = Vec::with_capacity(read.len());
    for s in read {
        // The ledger reports ids it does not know as deleted: one the store never held
        // either is nobody's invoice, and storing it would invent one.
        let known = store.get_invoice(name, &s.remote_id).map_err(st)?.is_some();
        if s.status == InvoiceStatus::Deleted && !known {
            report.unknown.push(s.remote_id);
        } else {
            keep.push(s);
        }
    }
    if keep.is_empty() {
        return Ok(report);
    }
    report.touched = keep
        .iter()
        .map(|s| Touched {
            id: s.remote_id.clone(),
            number: s.number.clone().unwrap_or_else(|| s.remote_id.clone()),
            customer: s.customer.name.clone(),
            status: s.status,
        })
        .collect();
    report.touched.sort_by(|a, b| a.id.cmp(&b.id));
    let fresh: HashMap<String, InvoiceSnapshot> = keep
        .iter()
        .map(|s| (s.remote_id.clone(), s.clone()))
        .collect();
    store_page(store, clock, name, keep, &[]).map_err(st)?;
    if report.dry_run {
        return Ok(report);
    }
    let ledger = ledger_of(conn_cfg, connector, store).await?;
    let hooks = config
        .channels
        .webhook
        .as_ref()
        .map(crate::channels::webhook::shared);
    let executor = Executor {
        connector,
        store,
        clock,
        today: clock
            .now()
            .with_timezone(&config.daemon.time_zone)
            .date_naive(),
        // Nothing is sent from here, so no channel is opened.
        mailer: None,
        hooks: hooks.as_ref(),
        policies: Some(crate::channels::facts::PolicyChoice {
            book: &config.policy_book,
            default: &conn_cfg.policy,
        }),
        ledger: &ledger,
        limits: CustomerLimits::default(),
        sms: None,
    };
    report.closed = executor
        .close_stale(&fresh)
        .await
        .map_err(|source| CycleError::Exec {
            connection: name.to_string(),
            source,
        })?;
    Ok(report)
}

/// The one line a targeted cycle logs: which invoices, as the owner knows them.
pub fn describe(touched: &[Touched]) -> String {
    touched
        .iter()
        .map(|t| {
            format!(
                "{} ({}, {})",
                t.number,
                t.customer,
                format!("{:?}", t.status).to_lowercase()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_many_changes_fall_back_to_the_whole_connection() {
        let mut t = Targets::default();
        assert!(t.is_empty());
        t.add("invoice", "1");
        t.add("invoice", "1");
        t.add("payment", "9");
        assert_eq!(t.invoices.len() + t.payments.len(), 2);
        assert!(!t.whole_connection);
        for i in 0..MAX_TARGETED_INVOICES {
            t.add("invoice", &format!("x{i}"));
        }
        assert!(t.whole_connection);
        assert!(t.invoices.is_empty() && t.payments.is_empty());
        assert!(!t.is_empty());
    }

    #[test]
    fn an_unknown_entity_or_a_whole_window_wins_a_merge() {
        let mut a = Targets::default();
        a.add("invoice", "1");
        let mut b = Targets::default();
        b.add("creditmemo", "4");
        assert!(b.whole_connection);
        a.merge(b);
        assert!(a.whole_connection && a.invoices.is_empty());
        let mut c = Targets::default();
        c.add("invoice", "2");
        let mut d = Targets::default();
        d.add("payment", "3");
        c.merge(d);
        assert_eq!(
            (c.invoices.len(), c.payments.len(), c.whole_connection),
            (1, 1, false)
        );
    }
}
