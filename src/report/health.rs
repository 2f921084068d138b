//! When the daemon is healthy: the rules behind `/healthz`, kept pure so they are tested
//! without a daemon.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

/// Syncs may be this many poll intervals late before the daemon calls itself unhealthy:
/// one missed poll is a hiccup, three mean nobody is watching the invoices.
pub const STALE_AFTER_POLLS: i32 = 3;

/// What the rules need to know about one connection.
#[derive(Debug, Clone)]
pub struct ConnectionFacts {
    pub name: String,
    pub enabled: bool,
    pub needs_reconnect: bool,
    /// Why the connector could not be built from the config, if it could not.
    pub build_error: Option<String>,
    pub last_success: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Problem {
    /// The connection concerned; `None` for the daemon as a whole.
    pub connection: Option<String>,
    /// `needs_reconnect`, `sync_stale`, `not_built`, `store`.
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Health {
    pub ok: bool,
    pub problems: Vec<Problem>,
}

/// Applies the rules. A connection's sync counts as stale when neither a successful sync
/// nor the daemon's own start is within [`STALE_AFTER_POLLS`] poll intervals, so a daemon
/// restarted after a long stop is not called unhealthy before it had a chance to sync.
pub fn evaluate(
    now: DateTime<Utc>,
    started_at: DateTime<Utc>,
    poll_interval: std::time::Duration,
    connections: &[ConnectionFacts],
    store_trouble: Option<&str>,
) -> Health {
    let mut problems = Vec::new();
    if let Some(t) = store_trouble {
        problems.push(Problem {
            connection: None,
            code: "store".into(),
            message: format!("store trouble: {t}"),
        });
    }
    let limit =
        Duration::from_std(poll_interval).unwrap_or(Duration::minutes(15)) * STALE_AFTER_POLLS;
    for c in connections.iter().filter(|c| c.enabled) {
        let mut problem = |code: &str, message| {
            problems.push(Problem {
                connection: Some(c.name.clone()),
                code: code.to_string(),
                message,
            })
        };
        if c.needs_reconnect {
            problem(
                "needs_reconnect",
                format!(
                    "connection {} needs reconnect: run `overdued connect {}`",
                    c.name, c.name
                ),
            );
        }
        if let Some(e) = &c.build_error {
            problem(
                "not_built",
                format!("connection {} cannot start: {e}", c.name),
            );
        }
        let since = c.last_success.map_or(started_at, |t| t.max(started_at));
        if now - since > limit {
            let message = match c.last_success {
                Some(t) => format!(
                    "connection {}: last successful sync {} is older than {} poll intervals",
                    c.name,
                    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    STALE_AFTER_POLLS
                ),
                None => format!(
                    "connection {}: no successful sync in {} poll intervals since the daemon started",
                    c.name, STALE_AFTER_POLLS
                ),
            };
            problem("sync_stale", message);
        }
    }
    Health {
        ok: problems.is_empty(),
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn conn(name: &str) -> ConnectionFacts {
        ConnectionFacts {
            name: name.into(),
            enabled: true,
            needs_reconnect: false,
            build_error: None,
            last_success: None,
        }
    }

    const POLL: std::time::Duration = std::time::Duration::from_secs(900);

    #[test]
    fn fresh_start_is_healthy_until_three_polls_pass_without_a_sync() {
        let start = t("2026-03-02T09:00:00Z");
        let c = [conn("a")];
        assert!(evaluate(start, start, POLL, &c, None).ok);
        assert!(evaluate(t("2026-03-02T09:45:00Z"), start, POLL, &c, None).ok);
        let h = evaluate(t("2026-03-02T09:45:01Z"), start, POLL, &c, None);
        assert!(!h.ok);
        assert_eq!(h.problems[0].code, "sync_stale");
        assert_eq!(h.problems[0].connection.as_deref(), Some("a"));
        assert!(
            h.problems[0].message.contains("no successful sync"),
            "{:?}",
            h
        );
    }

    #[test]
    fn old_sync_from_before_a_restart_is_not_held_against_the_new_process() {
        let start = t("2026-03-02T09:00:00Z");
        let mut c = conn("a");
        c.last_success = Some(t("2026-02-01T00:00:00Z"));
        assert!(evaluate(t("2026-03-02T09:10:00Z"), start, POLL, &[c.clone()], None).ok);
        let h = evaluate(t("2026-03-02T10:00:00Z"), start, POLL, &[c], None);
        assert!(!h.ok);
        assert!(
            h.problems[0].message.contains("2026-02-01T00:00:00Z"),
            "{h:?}"
        );
    }

    #[test]
    fn recent_sync_keeps_it_healthy_and_a_late_one_does_not() {
        let start = t("2026-03-01T00:00:00Z");
        let mut c = conn("a");
        c.last_success = Some(t("2026-03-02T09:00:00Z"));
        assert!(evaluate(t("2026-03-02T09:30:00Z"), start, POLL, &[c.clone()], None).ok);
        assert!(!evaluate(t("2026-03-02T09:46:00Z"), start, POLL, &[c], None).ok);
    }

    #[test]
    fn reconnect_build_errors_and_store_trouble_each_count() {
        let now = t("2026-03-02T09:00:00Z");
        let mut a = conn("a");
        a.needs_reconnect = true;
        a.last_success = Some(now);
        let mut b = conn("b");
        b.build_error = Some("no realm_id".into());
        let h = evaluate(now, now, POLL, &[a, b], Some("disk full"));
        assert!(!h.ok);
        let codes: Vec<_> = h.problems.iter().map(|p| p.code.as_str()).collect();
        assert_eq!(codes, ["store", "needs_reconnect", "not_built"]);
        assert!(h.problems[1].message.contains("overdued connect a"));
    }

    #[test]
    fn disabled_connections_are_ignored() {
        let start = t("2026-03-01T00:00:00Z");
        let mut c = conn("off");
        c.enabled = false;
        c.needs_reconnect = true;
        assert!(evaluate(t("2026-03-09T00:00:00Z"), start, POLL, &[c], None).ok);
    }
}
