//! `overdued check`: validate the config and say what it configures.

use crate::config::{self, Config, SystemConfig};

use super::{exit, ConfigArg};

pub fn run(arg: &ConfigArg) -> u8 {
    let path = config::resolve_path(arg.config.as_deref());
    match config::load(&path) {
        Ok(c) => {
            print!("{}", summary(&c));
            if let Some(w) = tone_warning(&c) {
                println!("{w}");
            }
            let (report, errors) = templates_report(&c);
            print!("{report}");
            if let Some(sms) = &c.channels.sms {
                print!("{}", crate::channels::sms::content::check_report(sms, &c));
            }
            if errors > 0 {
                return exit::CONFIG;
            }
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
    for name in c.policy_book.names() {
        let calls: Vec<String> = c
            .policy_book
            .get(name)
            .into_iter()
            .flat_map(|p| &p.steps)
            .filter(|st| st.action == crate::engine::policy::StepAction::Call)
            .map(|st| st.id.clone())
            .collect();
        if !calls.is_empty() {
            let _ = writeln!(
                s,
                "  {name}: call at {} (on `overdued calls`; nothing is sent)",
                calls.join(", ")
            );
        }
    }
    s
}

/// Without SMTP, reminders go by the accounting system's own invoice email, which
/// carries the invoice in the company's template and none of the ladder's words: one WARN
/// line naming the steps whose words would matter. `None` with SMTP configured.
pub fn tone_warning(c: &Config) -> Option<String> {
    if c.channels.smtp.is_some() {
        return None;
    }
    let steps: Vec<String> = c
        .policy_book
        .all()
        .filter_map(|p| {
            let s = p.tone_steps_by_system_email();
            (!s.is_empty()).then(|| format!("policy {} steps {}", p.name, s.join(", ")))
        })
        .collect();
    let systems: std::collections::BTreeSet<&str> = c
        .connections
        .iter()
        .map(|conn| match conn.system {
            SystemConfig::QuickBooks(_) => "QuickBooks'",
            SystemConfig::Xero(_) => "Xero's",
        })
        .collect();
    let by = if systems.is_empty() {
        "the accounting system's".to_string()
    } else {
        systems.into_iter().collect::<Vec<_>>().join(" or ")
    };
    Some(format!(
        "WARN: no [channels.smtp]: reminders go by {by} own invoice email (the invoice with your company template), so the ladder's words will not reach customers: the catch-up message to invoices first seen past due{}. Configure [channels.smtp] to send them; see README \"What each channel really sends\".",
        if steps.is_empty() {
            String::new()
        } else {
            format!(", and {}", steps.join("; "))
        }
    ))
}

/// Renders every message template (built-in or from `templates_dir`) against a sample
/// invoice; each error names its file and line. Returns the report and the error count.
pub fn templates_report(c: &Config) -> (String, usize) {
    use std::fmt::Write;
    let mut s = String::new();
    let t = match crate::channels::Templates::load(c.channels.templates_dir.as_deref()) {
        Ok(t) => t,
        Err(e) => {
            let _ = writeln!(s, "templates: error: {e}");
            return (s, 1);
        }
    };
    let errors = t.check();
    for e in &errors {
        let _ = writeln!(s, "templates: error: {e}");
    }
    // An SMTP step whose template has no file is mailed as the policy's plain text.
    for (name, p) in &c.policies {
        for (i, step) in p.steps.iter().enumerate() {
            if let (Some(ch), Some(id)) = (step.channel, &step.template) {
                if ch.uses_smtp() && !t.has(id) {
                    let _ = writeln!(
                        s,
                        "templates: note: policies.{name}.steps[{i}] sends {id:?} by SMTP with no {id}.txt: the policy's own text is sent as plain text"
                    );
                }
            }
        }
    }
    if errors.is_empty() {
        let _ = writeln!(
            s,
            "templates: {} rendered against a sample invoice: ok{}",
            t.ids().len(),
            match &c.channels.templates_dir {
                Some(d) => format!(" (overrides from {})", d.display()),
                None => String::new(),
            }
        );
    }
    (s, errors.len())
}
