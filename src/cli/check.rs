//! `overdued check`: validate the config and say what it configures.

use crate::config::{self, Config, SystemConfig};

use super::{exit, ConfigArg};

pub fn run(arg: &ConfigArg) -> u8 {
    let path = config::resolve_path(arg.config.as_deref());
    match config::load(&path) {
        Ok(c) => {
            print!("{}", summary(&c));
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::CONFIG
        }
    }
}

pub fn summary(c: &Config) -> String {
    use std::fmt::Write;
    let d = &c.daemon;
    let mut s = String::new();
    let _ = writeln!(s, "config {}: ok", c.path.display());
    let _ = writeln!(
        s,
        "daemon: state in {}, poll every {}, full sync every {}, time zone {}, mode {}, http on {}",
        d.state_dir.display(),
        d.poll_interval,
        d.full_sync_interval,
        d.time_zone,
        match d.mode {
            config::Mode::Live => "live",
            config::Mode::DryRun => "dry-run (writes nothing)",
        },
        d.http_listen
    );
    let _ = writeln!(s, "connections: {}", c.connections.len());
    for conn in &c.connections {
        let what = match &conn.system {
            SystemConfig::QuickBooks(q) => format!(
                "quickbooks realm {} ({:?})",
                q.realm_id
                    .as_deref()
                    .unwrap_or("(set by `overdued connect`)"),
                q.environment
            )
            .to_lowercase(),
            SystemConfig::Xero(x) => format!("xero organisation {:?}", x.tenant),
        };
        let _ = writeln!(
            s,
            "  {:<20} {what}, policy {}{}",
            conn.name,
            conn.policy,
            if conn.enabled { "" } else { ", disabled" }
        );
    }
    let mut names: Vec<&str> = c.policies.keys().map(String::as_str).collect();
    if !names.contains(&"default") {
        names.insert(0, "default (built-in)");
    }
    let _ = writeln!(s, "policies: {}", names.join(", "));
    s
}
