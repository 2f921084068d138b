//! `/metrics` in the Prometheus text exposition format (version 0.0.4).
//!
//! Rendering works on a plain snapshot ([`MetricsInput`]) so the format is tested
//! without a daemon; the HTTP handler builds the snapshot from the live state.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use overdued_connector::StatsSnapshot;

use crate::report::ageing::{Ageing, Bucket};

/// One connection as the metrics see it.
#[derive(Debug, Clone, Default)]
pub struct ConnectionMetrics {
    pub connection: String,
    pub system: String,
    pub enabled: bool,
    pub syncs_ok: u64,
    pub syncs_failed: u64,
    pub last_success: Option<DateTime<Utc>>,
    pub api: StatsSnapshot,
    /// (action kind, outcome) → count since the daemon started.
    pub actions: BTreeMap<(String, String), u64>,
    pub ageing: Ageing,
    pub needs_reconnect: bool,
    pub access_expires_at: Option<DateTime<Utc>>,
    pub refresh_expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct MetricsInput {
    pub now: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub healthy: bool,
    pub connections: Vec<ConnectionMetrics>,
    pub webhooks: super::webhooks::WebhookCounts,
    /// Store calls that failed since start.
    pub store_errors: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

struct Family {
    kind: Kind,
    help: &'static str,
    samples: Vec<(String, String)>,
}

/// Collects samples by family so each family's samples come out together, as the
/// format requires, whatever order they were added in.
#[derive(Default)]
struct Registry {
    order: Vec<&'static str>,
    families: BTreeMap<&'static str, Family>,
}

impl Registry {
    fn add(
        &mut self,
        name: &'static str,
        kind: Kind,
        help: &'static str,
        labels: &[(&str, &str)],
        value: String,
    ) {
        let f = self.families.entry(name).or_insert_with(|| {
            self.order.push(name);
            Family {
                kind,
                help,
                samples: Vec::new(),
            }
        });
        debug_assert_eq!(f.kind, kind);
        f.samples.push((label_set(labels), value));
    }

    fn counter(&mut self, name: &'static str, help: &'static str, labels: &[(&str, &str)], v: u64) {
        self.add(name, Kind::Counter, help, labels, v.to_string());
    }

    fn gauge(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        v: String,
    ) {
        self.add(name, Kind::Gauge, help, labels, v);
    }

    fn render(&self) -> String {
        let mut out = String::new();
        for name in &self.order {
            let f = &self.families[name];
            let kind = match f.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
            };
            let _ = writeln!(out, "# HELP {name} {}", f.help);
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in &f.samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        }
        out
    }
}

fn label_set(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    format!("{{{}}}", parts.join(","))
}

/// Label values escape backslash, double quote and newline; nothing else.
fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn seconds(t: DateTime<Utc>) -> String {
    let ms = t.timestamp_millis();
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// Renders every metric.
pub fn render(m: &MetricsInput) -> String {
    let mut r = Registry::default();
    r.gauge(
        "overdued_build_info",
        "The running overdued version.",
        &[("version", env!("CARGO_PKG_VERSION"))],
        "1".into(),
    );
    r.gauge(
        "overdued_start_time_seconds",
        "When the daemon started (Unix time).",
        &[],
        seconds(m.started_at),
    );
    r.gauge(
        "overdued_healthy",
        "1 when /healthz answers 200, else 0.",
        &[],
        u8::from(m.healthy).to_string(),
    );
    r.counter(
        "overdued_store_errors_total",
        "Store calls that failed; /healthz answers 503 while the store fails.",
        &[],
        m.store_errors,
    );
    let w = &m.webhooks;
    r.counter(
        "overdued_webhook_events_total",
        "Events in webhook deliveries whose signature verified.",
        &[],
        w.events,
    );
    r.counter(
        "overdued_webhook_events_duplicate_total",
        "Webhook events dropped as already seen (replays, redeliveries).",
        &[],
        w.duplicates,
    );
    r.counter(
        "overdued_webhook_syncs_coalesced_total",
        "Webhook sync requests folded into a sync already scheduled for the connection.",
        &[],
        w.coalesced,
    );
    r.counter(
        "overdued_webhook_syncs_total",
        "Syncs started by webhooks.",
        &[],
        w.syncs,
    );
    for c in &m.connections {
        let id = [
            ("connection", c.connection.as_str()),
            ("system", c.system.as_str()),
        ];
        r.gauge(
            "overdued_connection_enabled",
            "1 when the connection is enabled in the config.",
            &id,
            u8::from(c.enabled).to_string(),
        );
        r.gauge(
            "overdued_connection_needs_reconnect",
            "1 while the connection's grant is refused and a person must run `overdued connect`.",
            &id,
            u8::from(c.needs_reconnect).to_string(),
        );
        for (result, n) in [("ok", c.syncs_ok), ("error", c.syncs_failed)] {
            r.counter(
                "overdued_syncs_total",
                "Sync passes by result.",
                &[id[0], id[1], ("result", result)],
                n,
            );
        }
        if let Some(t) = c.last_success {
            r.gauge(
                "overdued_last_successful_sync_timestamp_seconds",
                "When the last sync succeeded (Unix time).",
                &id,
                seconds(t),
            );
        }
        for (status, n) in &c.api.by_status {
            r.counter(
                "overdued_api_calls_total",
                "API requests by HTTP status (`transport_error` when no response came back).",
                &[id[0], id[1], ("status", &status.to_string())],
                *n,
            );
        }
        r.counter(
            "overdued_api_calls_total",
            "API requests by HTTP status (`transport_error` when no response came back).",
            &[id[0], id[1], ("status", "transport_error")],
            c.api.transport_errors,
        );
        r.counter(
            "overdued_api_retries_total",
            "API attempts after the first, for any reason.",
            &id,
            c.api.retries,
        );
        r.counter(
            "overdued_limiter_waits_total",
            "Requests that waited for the client-side rate limiter.",
            &id,
            c.api.limiter_waits,
        );
        r.gauge(
            "overdued_limiter_wait_seconds_total",
            "Time spent waiting for the client-side rate limiter.",
            &id,
            format!("{:.6}", c.api.limiter_wait_micros as f64 / 1e6),
        );
        let failed = c.api.refresh_failures.min(c.api.refreshes);
        for (result, n) in [("ok", c.api.refreshes - failed), ("error", failed)] {
            r.counter(
                "overdued_token_refreshes_total",
                "Access-token refreshes by result.",
                &[id[0], id[1], ("result", result)],
                n,
            );
        }
        for ((kind, outcome), n) in &c.actions {
            r.counter(
                "overdued_actions_total",
                "Actions by kind and outcome since the daemon started.",
                &[id[0], id[1], ("kind", kind), ("outcome", outcome)],
                *n,
            );
        }
        for (currency, buckets) in &c.ageing.by_currency {
            for b in Bucket::ALL {
                let t = buckets.get(&b).cloned().unwrap_or_default();
                let labels = [
                    id[0],
                    id[1],
                    ("currency", currency.as_str()),
                    ("bucket", b.as_str()),
                ];
                r.gauge(
                    "overdued_open_invoices",
                    "Open invoices by ageing bucket (`current` is not yet overdue).",
                    &labels,
                    t.count.to_string(),
                );
                r.gauge(
                    "overdued_open_amount",
                    "Amount due on open invoices by ageing bucket, in the invoice currency.",
                    &labels,
                    t.amount.normalize().to_string(),
                );
            }
            let overdue = c.ageing.overdue(currency);
            r.gauge(
                "overdued_overdue_amount",
                "Amount past due, all buckets but `current`, in the invoice currency.",
                &[id[0], id[1], ("currency", currency.as_str())],
                overdue.amount.normalize().to_string(),
            );
        }
        if let Some(t) = c.access_expires_at {
            r.gauge(
                "overdued_token_access_expires_in_seconds",
                "Seconds until the access token expires (negative: expired; refreshed on use).",
                &id,
                (t - m.now).num_seconds().to_string(),
            );
        }
        if let Some(t) = c.refresh_expires_at {
            r.gauge(
                "overdued_token_refresh_expires_in_seconds",
                "Seconds until the refresh token lapses if unused; a reconnect is needed after.",
                &id,
                (t - m.now).num_seconds().to_string(),
            );
        }
    }
    r.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn sample() -> MetricsInput {
        let mut api = StatsSnapshot {
            calls: 5,
            transport_errors: 1,
            retries: 2,
            refreshes: 3,
            refresh_failures: 1,
            limiter_waits: 4,
            limiter_wait_micros: 1_500_000,
            ..Default::default()
        };
        api.by_status.insert(200, 3);
        api.by_status.insert(429, 1);
        let mut ageing = Ageing::default();
        let mut usd = BTreeMap::new();
        usd.insert(
            Bucket::D1To30,
            crate::report::ageing::Tally {
                count: 2,
                amount: dec!(10.50),
            },
        );
        usd.insert(
            Bucket::Over90,
            crate::report::ageing::Tally {
                count: 1,
                amount: dec!(4.00),
            },
        );
        ageing.by_currency.insert("USD".into(), usd);
        let mut actions = BTreeMap::new();
        actions.insert(("remind".to_string(), "done".to_string()), 7);
        MetricsInput {
            now: t("2026-03-02T09:00:00Z"),
            started_at: t("2026-03-02T08:00:00.250Z"),
            healthy: false,
            connections: vec![
                ConnectionMetrics {
                    connection: "acme \"qbo\"".into(),
                    system: "quickbooks".into(),
                    enabled: true,
                    syncs_ok: 3,
                    syncs_failed: 1,
                    last_success: Some(t("2026-03-02T08:45:00Z")),
                    api,
                    actions,
                    ageing,
                    needs_reconnect: true,
                    access_expires_at: Some(t("2026-03-02T09:30:00Z")),
                    refresh_expires_at: Some(t("2026-03-01T09:00:00Z")),
                },
                ConnectionMetrics {
                    connection: "b".into(),
                    system: "xero".into(),
                    enabled: true,
                    ..Default::default()
                },
            ],
            webhooks: crate::daemon::webhooks::WebhookCounts {
                events: 100,
                duplicates: 99,
                coalesced: 3,
                syncs: 1,
            },
            store_errors: 2,
        }
    }

    #[test]
    fn renders_families_once_with_samples_together() {
        let text = render(&sample());
        let mut seen = Vec::new();
        let mut current = "";
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(
                    !seen.contains(&name.to_string()),
                    "family {name} twice:\n{text}"
                );
                seen.push(name.to_string());
                current = name;
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert_eq!(name, current, "sample outside its family:\n{text}");
            }
        }
        assert!(seen.contains(&"overdued_api_calls_total".to_string()));
    }

    #[test]
    fn values_and_labels() {
        let text = render(&sample());
        let has = |l: &str| assert!(text.lines().any(|x| x == l), "missing {l:?} in\n{text}");
        has("overdued_healthy 0");
        has("overdued_store_errors_total 2");
        has("overdued_webhook_events_duplicate_total 99");
        has("overdued_webhook_syncs_coalesced_total 3");
        has("overdued_start_time_seconds 1772438400.250");
        has(
            r#"overdued_connection_needs_reconnect{connection="acme \"qbo\"",system="quickbooks"} 1"#,
        );
        has(
            r#"overdued_api_calls_total{connection="acme \"qbo\"",system="quickbooks",status="429"} 1"#,
        );
        has(
            r#"overdued_api_calls_total{connection="acme \"qbo\"",system="quickbooks",status="transport_error"} 1"#,
        );
        has(
            r#"overdued_token_refreshes_total{connection="acme \"qbo\"",system="quickbooks",result="ok"} 2"#,
        );
        has(
            r#"overdued_limiter_wait_seconds_total{connection="acme \"qbo\"",system="quickbooks"} 1.500000"#,
        );
        has(
            r#"overdued_actions_total{connection="acme \"qbo\"",system="quickbooks",kind="remind",outcome="done"} 7"#,
        );
        has(
            r#"overdued_open_amount{connection="acme \"qbo\"",system="quickbooks",currency="USD",bucket="1-30"} 10.5"#,
        );
        has(
            r#"overdued_open_invoices{connection="acme \"qbo\"",system="quickbooks",currency="USD",bucket="31-60"} 0"#,
        );
        has(
            r#"overdued_overdue_amount{connection="acme \"qbo\"",system="quickbooks",currency="USD"} 14.5"#,
        );
        has(
            r#"overdued_token_access_expires_in_seconds{connection="acme \"qbo\"",system="quickbooks"} 1800"#,
        );
        has(
            r#"overdued_token_refresh_expires_in_seconds{connection="acme \"qbo\"",system="quickbooks"} -86400"#,
        );
        has(r#"overdued_syncs_total{connection="b",system="xero",result="ok"} 0"#);
        assert!(!text.contains(r#"overdued_last_successful_sync_timestamp_seconds{connection="b""#));
    }

    #[test]
    fn escapes_label_values() {
        assert_eq!(escape("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    }
}
