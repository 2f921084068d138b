//! SIGHUP: re-read the config, put it in effect, and say which connections it touched so
//! only those are rebuilt, started or stopped.

use std::path::Path;
use std::sync::Arc;

use tracing::{error, info, warn};

use super::shared::Current;
use super::Shared;
use crate::config::diff::ConfigDiff;
use crate::config::Config;

/// Re-reads the config. A config that does not load is refused (`None`) and the running
/// one stays.
pub(super) fn reload_config(shared: &Shared, path: &Path) -> Option<ConfigDiff> {
    match crate::config::load(path) {
        Ok(new) => Some(apply(shared, new)),
        Err(e) => {
            error!(error = %e, "config reload refused: the new config is invalid; the running config stays in effect");
            None
        }
    }
}

/// Puts `new` in effect. Settings that only take effect at start are kept and called
/// out; the tables of added and changed connections get the new generation, so their
/// tasks rebuild the connector, and every other connection keeps the one it has.
pub(super) fn apply(shared: &Shared, mut new: Config) -> ConfigDiff {
    let mut current = shared.config.write().unwrap_or_else(|p| p.into_inner());
    let old = current.config.clone();
    if new.daemon.state_dir != old.daemon.state_dir {
        warn!(
            running = %old.daemon.state_dir.display(),
            new = %new.daemon.state_dir.display(),
            "daemon.state_dir changed: takes effect after a restart"
        );
        new.daemon.state_dir = old.daemon.state_dir.clone();
    }
    if new.daemon.http_listen != old.daemon.http_listen {
        warn!(
            running = %old.daemon.http_listen,
            new = %new.daemon.http_listen,
            "daemon.http_listen changed: takes effect after a restart"
        );
        new.daemon.http_listen = old.daemon.http_listen;
    }
    let diff = ConfigDiff::between(&old, &new);
    info!(
        connections = new.connections.len(),
        added = ?diff.added,
        removed = ?diff.removed,
        changed = ?diff.changed,
        mode = ?new.daemon.mode,
        "config reloaded"
    );
    let gen = current.gen + 1;
    let mut table_gen = std::mem::take(&mut current.table_gen);
    table_gen.retain(|name, _| !diff.removed.contains(name));
    for name in diff.added.iter().chain(&diff.changed) {
        table_gen.insert(name.clone(), gen);
    }
    *current = Current {
        gen,
        config: Arc::new(new),
        table_gen,
    };
    diff
}

/// Wakes the tasks a reload concerns and leaves the rest asleep (they read the rest of the
/// new config at their next cycle). Woken, a removed connection's task stops, and one
/// enabled without a connector tries to build it at once: newly enabled, or still
/// unbuilt, since a reload is how the owner asks for another try after fixing what
/// stopped the build. A changed connection rebuilds at its next cycle.
pub(super) fn wake_touched(shared: &Shared, diff: &ConfigDiff) {
    for (name, c) in shared.conns().iter() {
        let touched = diff.changed.contains(name) || diff.removed.contains(name);
        if touched || c.connector.is_none() {
            c.reload.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::sync::Mutex;

    use futures::FutureExt as _;
    use overdued_connector::{ManualClock, TokenStore};

    use super::*;
    use crate::daemon::{ConnState, ConnectorFactory};
    use crate::store::SledStore;

    const BEFORE: &str = r#"
[daemon]
state_dir = "state"

[quickbooks.kept]
realm_id = "9341453"
client_id = "abc"
client_secret = "one"
environment = "sandbox"
api_base = "http://127.0.0.1:9/"
token_url = "http://127.0.0.1:9/token"

[xero.changed]
client_id = "def"
client_secret = "two"
api_base = "http://127.0.0.1:9/"
identity_base = "http://127.0.0.1:9/"
token_url = "http://127.0.0.1:9/token"
tenant = "Acme UK Ltd"

[xero.removed]
client_id = "ghi"
client_secret = "three"
api_base = "http://127.0.0.1:9/"
identity_base = "http://127.0.0.1:9/"
token_url = "http://127.0.0.1:9/token"
tenant = "Acme AU Pty"
"#;

    fn after() -> String {
        BEFORE
            .replace("client_secret = \"two\"", "client_secret = \"rotated\"")
            .replace("[xero.removed]", "[xero.added]")
            .replace("[daemon]", "[daemon]\nmode = \"dry-run\"")
    }

    fn config(text: &str, dir: &Path) -> Config {
        let mut c = crate::config::parse(text, &dir.join("config.toml")).unwrap();
        c.daemon.state_dir = dir.join("state");
        c
    }

    /// A daemon's shared state with every connection of `config` that can be built
    /// built, as its tasks leave it after their first cycle.
    fn shared(config: Config) -> Shared {
        let s = unstarted(config, real_factory());
        let (_, cfg) = s.config();
        for c in &cfg.connections {
            let tokens: Arc<dyn TokenStore> = s.store.clone();
            let built = (s.factory)(c, tokens, s.clock.clone()).ok();
            s.conns().get_mut(&c.name).unwrap().connector = built;
        }
        s
    }

    fn real_factory() -> ConnectorFactory {
        Arc::new(crate::connections::build)
    }

    /// A daemon's shared state before its tasks start.
    fn unstarted(config: Config, factory: ConnectorFactory) -> Shared {
        let store = Arc::new(crate::daemon::store_watch::WatchedStore::new(Arc::new(
            SledStore::open(&config.daemon.state_dir).unwrap(),
        )));
        let clock: Arc<dyn overdued_connector::Clock> =
            Arc::new(ManualClock::new(chrono::Utc::now()));
        let conns = config
            .connections
            .iter()
            .map(|c| (c.name.clone(), ConnState::new(c)))
            .collect::<BTreeMap<_, _>>();
        Shared {
            config: std::sync::RwLock::new(Current::first(config)),
            store,
            started_at: clock.now(),
            clock,
            factory,
            http_addr: "127.0.0.1:0".parse().unwrap(),
            conns: Mutex::new(conns),
            webhooks: Default::default(),
            cycles_ended: crate::daemon::scheduler::CyclesEnded::default(),
            admin_token: "t".into(),
        }
    }

    #[test]
    fn only_added_and_changed_tables_move_to_the_new_generation() {
        let dir = tempfile::tempdir().unwrap();
        let s = shared(config(BEFORE, dir.path()));
        assert_eq!(s.config_for("kept").0, 0);
        assert_eq!(s.config_for("changed").0, 0);

        let diff = apply(&s, config(&after(), dir.path()));
        assert_eq!(diff.unchanged, vec!["kept".to_string()]);
        assert_eq!(diff.changed, vec!["changed".to_string()]);
        assert_eq!(diff.added, vec!["added".to_string()]);
        assert_eq!(diff.removed, vec!["removed".to_string()]);

        let (gen, cfg) = s.config();
        assert_eq!(gen, 1);
        assert_eq!(cfg.daemon.mode, crate::config::Mode::DryRun);
        // Kept: its task sees the generation its connector was built for and keeps it.
        assert_eq!(s.config_for("kept").0, 0);
        // Changed and added: built anew from the new table.
        let (changed_gen, changed_cfg) = s.config_for("changed");
        assert_eq!(changed_gen, 1);
        assert!(Arc::ptr_eq(&changed_cfg, &cfg));
        assert_eq!(s.config_for("added").0, 1);
        assert!(!s.config.read().unwrap().table_gen.contains_key("removed"));

        // The same file again touches nothing: every table keeps its generation.
        let again = apply(&s, config(&after(), dir.path()));
        assert!(!again.touches_connections());
        assert_eq!(s.config().0, 2);
        assert_eq!(s.config_for("kept").0, 0);
        assert_eq!(s.config_for("changed").0, 1);
        assert_eq!(s.config_for("added").0, 1);
    }

    #[test]
    fn a_reload_wakes_the_changed_the_removed_and_the_unbuilt_only() {
        let dir = tempfile::tempdir().unwrap();
        // No realm id and no tokens yet: its connector cannot be built until `connect`.
        let unbuilt = "\n[quickbooks.unbuilt]\nclient_id = \"x\"\nclient_secret = \"y\"\n";
        let s = shared(config(&format!("{BEFORE}{unbuilt}"), dir.path()));
        assert!(s.conns()["unbuilt"].connector.is_none());
        assert!(s.conns()["kept"].connector.is_some());

        let diff = apply(&s, config(&format!("{}{unbuilt}", after()), dir.path()));
        assert_eq!(diff.unchanged, ["kept", "unbuilt"]);
        wake_touched(&s, &diff);
        let woken: Vec<String> = s
            .conns()
            .iter()
            .filter(|(_, c)| c.reload.notified().now_or_never().is_some())
            .map(|(n, _)| n.clone())
            .collect();
        assert_eq!(woken, ["changed", "removed", "unbuilt"]);
    }

    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        while !done() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// The whole path through the running tasks: after the first cycles, a reload leaves
    /// the unchanged connection's connector in place, rebuilds the changed one at its next
    /// cycle, starts the added one and stops the removed one.
    #[tokio::test]
    async fn running_tasks_rebuild_only_what_the_reload_changed() {
        let dir = tempfile::tempdir().unwrap();
        let builds: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
        let factory: ConnectorFactory = {
            let builds = builds.clone();
            let real = real_factory();
            Arc::new(move |c, tokens, clock| {
                *builds.lock().unwrap().entry(c.name.clone()).or_default() += 1;
                real(c, tokens, clock)
            })
        };
        let s = Arc::new(unstarted(config(BEFORE, dir.path()), factory));
        let stop = tokio_util::sync::CancellationToken::new();
        let mut tasks = std::collections::HashMap::new();
        crate::daemon::supervisor::spawn_missing(&s, &mut tasks, &stop);
        let cycled = |s: &Shared, name: &str| {
            s.conns()
                .get(name)
                .is_some_and(|c| c.syncs_ok + c.syncs_failed > 0)
        };
        until("the first cycles", || {
            ["kept", "changed", "removed"].iter().all(|n| cycled(&s, n))
        })
        .await;
        let count = |n: &str| builds.lock().unwrap().get(n).copied().unwrap_or(0);
        assert_eq!(
            (count("kept"), count("changed"), count("removed")),
            (1, 1, 1)
        );
        let kept = s.conns()["kept"].connector.clone().expect("built");
        let changed = s.conns()["changed"].connector.clone().expect("built");

        let diff = apply(&s, config(&after(), dir.path()));
        crate::daemon::supervisor::spawn_missing(&s, &mut tasks, &stop);
        wake_touched(&s, &diff);
        for n in ["kept", "changed"] {
            let mut conns = s.conns();
            let c = conns.get_mut(n).unwrap();
            (c.syncs_ok, c.syncs_failed) = (0, 0);
            c.kick.notify_one();
        }
        until("the next cycles", || {
            ["kept", "changed", "added"].iter().all(|n| cycled(&s, n))
        })
        .await;
        until("the removed task to stop", || {
            tasks["removed"].is_finished()
        })
        .await;

        assert_eq!(count("kept"), 1, "the unchanged connection is not rebuilt");
        assert!(Arc::ptr_eq(
            &kept,
            s.conns()["kept"].connector.as_ref().unwrap()
        ));
        assert_eq!(
            count("changed"),
            2,
            "the changed connection is rebuilt once"
        );
        assert!(!Arc::ptr_eq(
            &changed,
            s.conns()["changed"].connector.as_ref().unwrap()
        ));
        assert_eq!(count("added"), 1, "the added connection is started");
        assert_eq!(count("removed"), 1);
        assert!(
            !s.conns().contains_key("removed"),
            "the removed connection is gone"
        );

        stop.cancel();
        for (_, t) in tasks {
            t.await.unwrap();
        }
    }
}
