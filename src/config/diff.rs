//! What a reload changes in the connections, so the daemon rebuilds only those (vector's
//! `src/config/diff.rs` is the model).
//!
//! A connection's connector is built from its own `[quickbooks.NAME]` / `[xero.NAME]`
//! table and nothing else, so two tables that compare equal give the same connector and
//! the running one is kept, with its token state and its place in the vendor's rate-limit
//! window. Settings outside the tables (mode, poll interval, policies, channels) are read
//! afresh by every cycle and need no rebuild.

use super::{Config, ConnectionConfig};

/// The connections a new config adds, removes, changes and keeps, by name, each list in
/// the order of the config that holds them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigDiff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
}

impl ConfigDiff {
    pub fn between(old: &Config, new: &Config) -> ConfigDiff {
        Self::of_connections(&old.connections, &new.connections)
    }

    pub fn of_connections(old: &[ConnectionConfig], new: &[ConnectionConfig]) -> ConfigDiff {
        let find =
            |list: &'_ [ConnectionConfig], name: &str| list.iter().position(|c| c.name == name);
        let mut diff = ConfigDiff::default();
        for c in new {
            let list = match find(old, &c.name).map(|i| &old[i]) {
                None => &mut diff.added,
                Some(o) if o == c => &mut diff.unchanged,
                Some(_) => &mut diff.changed,
            };
            list.push(c.name.clone());
        }
        diff.removed = old
            .iter()
            .filter(|c| find(new, &c.name).is_none())
            .map(|c| c.name.clone())
            .collect();
        diff
    }

    /// Whether `name`'s connector must be (re)built: it is new or its table changed.
    pub fn rebuilds(&self, name: &str) -> bool {
        self.added.iter().chain(&self.changed).any(|n| n == name)
    }

    /// Whether any connection is added, removed or changed.
    pub fn touches_connections(&self) -> bool {
        !(self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const BASE: &str = r#"
[daemon]
state_dir = "state"

[quickbooks.acme-us]
realm_id = "9341453"
client_id = "abc"
client_secret = "one"
environment = "sandbox"

[xero.acme-uk]
client_id = "def"
client_secret = "two"
tenant = "Acme UK Ltd"
"#;

    fn config(text: &str) -> Config {
        crate::config::parse(text, Path::new("/etc/overdued/config.toml")).unwrap()
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_same_file_changes_nothing() {
        let d = ConfigDiff::between(&config(BASE), &config(BASE));
        assert_eq!(d.unchanged, names(&["acme-us", "acme-uk"]));
        assert!(!d.touches_connections());
        assert!(!d.rebuilds("acme-us") && !d.rebuilds("acme-uk"));
    }

    #[test]
    fn settings_outside_the_tables_keep_every_connector() {
        let new = BASE.replace(
            "[daemon]",
            "[daemon]\nmode = \"dry-run\"\npoll_interval = \"5m\"",
        );
        let d = ConfigDiff::between(&config(BASE), &config(&new));
        assert_eq!(d.unchanged, names(&["acme-us", "acme-uk"]));
        assert!(!d.touches_connections());
    }

    #[test]
    fn a_changed_table_is_rebuilt_and_the_other_kept() {
        let new = BASE.replace("client_secret = \"two\"", "client_secret = \"rotated\"");
        let d = ConfigDiff::between(&config(BASE), &config(&new));
        assert_eq!(d.changed, names(&["acme-uk"]));
        assert_eq!(d.unchanged, names(&["acme-us"]));
        assert!(d.added.is_empty() && d.removed.is_empty());
        assert!(d.rebuilds("acme-uk"));
        assert!(!d.rebuilds("acme-us"));
    }

    #[test]
    fn disabling_a_connection_is_a_change() {
        let new = BASE.replace(
            "environment = \"sandbox\"",
            "environment = \"sandbox\"\nenabled = false",
        );
        let d = ConfigDiff::between(&config(BASE), &config(&new));
        assert_eq!(d.changed, names(&["acme-us"]));
        assert_eq!(d.unchanged, names(&["acme-uk"]));
    }

    #[test]
    fn a_new_table_is_added_and_a_missing_one_removed() {
        let new = BASE.replace("[xero.acme-uk]", "[xero.acme-nz]");
        let d = ConfigDiff::between(&config(BASE), &config(&new));
        assert_eq!(d.added, names(&["acme-nz"]));
        assert_eq!(d.removed, names(&["acme-uk"]));
        assert_eq!(d.unchanged, names(&["acme-us"]));
        assert!(d.changed.is_empty());
        assert!(d.rebuilds("acme-nz"));
        assert!(!d.rebuilds("acme-uk"));
    }
}
