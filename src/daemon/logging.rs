//! Where log lines go and how they look.
//!
//! Under systemd, stderr is a stream to journald (`$JOURNAL_STREAM` names it): journald
//! stamps the time itself and shows colour codes as garbage, so both are dropped, and
//! each line starts with its syslog priority (`<3>` ... `<7>`) so `journalctl -p err`
//! works. Elsewhere lines carry a timestamp. `--log-format json` gives one JSON object
//! per line either way.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStyle {
    Text,
    Json,
}

/// The filter directives in effect: `$OVERDUED_LOG`, else `$RUST_LOG`, else `info`.
pub fn filter_directives() -> String {
    ["OVERDUED_LOG", "RUST_LOG"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
        .unwrap_or_else(|| "info".to_string())
}

/// True when stderr is the journal stream systemd connected, not merely inherited
/// from a parent that had one (the variable carries the stream's device and inode).
pub fn stderr_is_journal() -> bool {
    let Ok(v) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    // SAFETY: fstat writes only into the zeroed struct we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::fstat(2, &mut st) };
    rc == 0 && st.st_dev as u64 == dev && st.st_ino as u64 == ino
}

/// Installs the global subscriber. Returns false if one was installed already (tests
/// that run several daemons in one process).
pub fn init(style: LogStyle) -> bool {
    let directives = filter_directives();
    let (filter, bad) = match EnvFilter::try_new(&directives) {
        Ok(f) => (f, None),
        Err(e) => (EnvFilter::new("info"), Some(e.to_string())),
    };
    let journal = stderr_is_journal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // When stderr's reader goes away the lines go to the journal, or nowhere.
        .with_writer(super::log_fallback::StderrOrJournal::from_env())
        .with_target(false)
        // A failed write to stderr (its reader gone) is dropped: by default the
        // subscriber reports it with eprintln!, which panics on the same closed pipe, in
        // whatever task logged, and a signal task dying there left SIGTERM unheard.
        .log_internal_errors(false);
    let installed = match (style, journal) {
        (LogStyle::Json, _) => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
            .is_ok(),
        (LogStyle::Text, true) => builder
            .with_ansi(false)
            .without_time()
            .with_level(false)
            .event_format(Journald(
                tracing_subscriber::fmt::format()
                    .without_time()
                    .with_ansi(false)
                    .with_target(false)
                    .with_level(false),
            ))
            .try_init()
            .is_ok(),
        (LogStyle::Text, false) => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init()
            .is_ok(),
    };
    if let Some(e) = bad {
        tracing::warn!(filter = %directives, error = %e, "ignoring the invalid log filter; logging at info");
    }
    installed
}

/// Prefixes each line with its syslog priority for journald.
struct Journald<F>(F);

impl<S, N, F> FormatEvent<S, N> for Journald<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "<{}>", priority(*event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syslog_priorities() {
        assert_eq!(priority(Level::ERROR), 3);
        assert_eq!(priority(Level::WARN), 4);
        assert_eq!(priority(Level::INFO), 6);
        assert_eq!(priority(Level::DEBUG), 7);
        assert_eq!(priority(Level::TRACE), 7);
    }
}
