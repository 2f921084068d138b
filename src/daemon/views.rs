//! The daemon's views of itself: health, the status report and the metrics snapshot,
//! from the state the tasks keep with live fields on top.

use super::{metrics, Shared};
use crate::config::ConnectionConfig;
use crate::report::{ageing, health, status};
use crate::store::Store;

impl Shared {
    /// Health as `/healthz` reports it, including a live probe of the store.
    pub fn health(&self) -> health::Health {
        let (_, cfg) = self.config();
        let facts: Vec<health::ConnectionFacts> = self
            .conns()
            .iter()
            .map(|(name, c)| health::ConnectionFacts {
                name: name.clone(),
                enabled: c.enabled,
                needs_reconnect: c.needs_reconnect(),
                build_error: c.build_error.clone(),
                last_success: c
                    .last_success
                    .or_else(|| c.snapshot.as_ref().and_then(|s| s.last_sync)),
            })
            .collect();
        let probe = cfg
            .connections
            .first()
            .map(|c| self.store.get_sync_state(&c.name).err())
            .unwrap_or(None);
        let trouble = probe
            .map(|e| e.to_string())
            .or_else(|| self.store_trouble());
        health::evaluate(
            self.clock.now(),
            self.started_at,
            cfg.daemon.poll_interval.0,
            &facts,
            trouble.as_deref(),
        )
    }

    /// The status report, from the snapshots the tasks keep, with live fields on top.
    pub fn status_report(&self) -> status::StatusReport {
        let (_, cfg) = self.config();
        let now = self.clock.now();
        let mut connections = Vec::new();
        for c in &cfg.connections {
            let conns = self.conns();
            let live = conns.get(&c.name);
            let mut s = live
                .and_then(|l| l.snapshot.clone())
                .unwrap_or_else(|| empty_status(c));
            if let Some(l) = live {
                s.enabled = l.enabled;
                s.needs_reconnect = l.needs_reconnect();
                s.build_error = l.build_error.clone();
                s.last_sync = l.last_success.or(s.last_sync);
                if l.last_error.is_some() {
                    s.last_error = l.last_error.clone();
                }
            }
            drop(conns);
            // Plans change by hand between cycles (`arrange`, `cancel`): read them live.
            let today = now.with_timezone(&cfg.daemon.time_zone).date_naive();
            if let Ok(lines) =
                crate::arrangements::ops::status_lines(&cfg, self.store.as_ref(), &c.name, today)
            {
                s.attention.payment_plans = lines;
            }
            if let Ok(Some(t)) = self.store.get_tokens(&c.name) {
                s.access_expires_at = Some(t.access_expires_at);
                s.refresh_expires_at = t.refresh_expires_at;
                s.needs_reconnect |= t.needs_reconnect;
            }
            connections.push(s);
        }
        status::StatusReport {
            generated_at: now,
            daemon: Some(status::DaemonInfo {
                pid: std::process::id(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                started_at: self.started_at,
                mode: cfg.daemon.mode,
                config: cfg.path.display().to_string(),
                http: self.http_addr.to_string(),
            }),
            health: self.health(),
            connections,
        }
    }

    /// The metrics snapshot.
    pub fn metrics_input(&self) -> metrics::MetricsInput {
        let now = self.clock.now();
        let healthy = self.health().ok;
        let mut connections = Vec::new();
        let names: Vec<String> = self.conns().keys().cloned().collect();
        for name in names {
            let tokens = self.store.get_tokens(&name).ok().flatten();
            let conns = self.conns();
            let Some(c) = conns.get(&name) else { continue };
            connections.push(metrics::ConnectionMetrics {
                connection: name.clone(),
                system: c.system.as_str().to_string(),
                enabled: c.enabled,
                syncs_ok: c.syncs_ok,
                syncs_failed: c.syncs_failed,
                last_success: c
                    .last_success
                    .or_else(|| c.snapshot.as_ref().and_then(|s| s.last_sync)),
                api: c.api_stats(),
                actions: c.actions.clone(),
                ageing: c
                    .snapshot
                    .as_ref()
                    .map(|s| s.ageing.clone())
                    .unwrap_or_default(),
                needs_reconnect: c.needs_reconnect()
                    || tokens.as_ref().is_some_and(|t| t.needs_reconnect),
                access_expires_at: tokens.as_ref().map(|t| t.access_expires_at),
                refresh_expires_at: tokens.as_ref().and_then(|t| t.refresh_expires_at),
            });
        }
        metrics::MetricsInput {
            now,
            started_at: self.started_at,
            healthy,
            connections,
            webhooks: self.webhooks.counts(),
            store_errors: self.store.errors_total(),
        }
    }
}

fn empty_status(c: &ConnectionConfig) -> status::ConnectionStatus {
    status::ConnectionStatus {
        name: c.name.clone(),
        system: c.system().as_str().to_string(),
        enabled: c.enabled,
        needs_reconnect: false,
        build_error: None,
        access_expires_at: None,
        refresh_expires_at: None,
        last_sync: None,
        last_full_sync: None,
        last_error: None,
        invoices_stored: 0,
        ageing: ageing::Ageing::default(),
        attention: status::Attention::default(),
        payers: None,
    }
}
