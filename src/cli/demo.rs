//! `overdued demo`: the first command a new user runs. Needs no config and no network.

use std::time::Instant;

use crate::demo::{self, DemoError, DemoOptions};

use super::common::runtime;
use super::{exit, Speed};

/// Real time per simulated day with `--speed real`: slow enough to read along.
const REAL_DAY: std::time::Duration = std::time::Duration::from_secs(1);

pub fn run(days: u32, seed: u64, speed: Speed) -> u8 {
    quiet_logging();
    let opts = DemoOptions {
        days,
        seed,
        day_pause: (speed == Speed::Real).then_some(REAL_DAY),
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return e.report(),
    };
    let started = Instant::now();
    let stdout = std::io::stdout();
    let mut out = std::io::LineWriter::new(stdout.lock());
    match rt.block_on(demo::run(&opts, &mut out)) {
        Ok(()) => {
            use std::io::Write;
            // The one line that differs between runs of the same seed.
            let _ = writeln!(
                out,
                "Simulated {days} days in {:.1} s of real time.",
                started.elapsed().as_secs_f64()
            );
            0
        }
        Err(e) => {
            drop(out);
            eprintln!("error: {e}");
            match e {
                DemoError::Days(_) => exit::USAGE,
                DemoError::Io { .. } | DemoError::Store(_) | DemoError::Output(_) => exit::IOERR,
                _ => exit::SOFTWARE,
            }
        }
    }
}

/// Only warnings on stderr: the story goes to stdout. `OVERDUED_LOG` / `RUST_LOG` still
/// turn the engine's own logs on.
fn quiet_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("OVERDUED_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .and_then(|f| EnvFilter::try_new(f).ok())
        // Escalations are logged as warnings for a daemon's operator; here the day log
        // already tells them.
        .unwrap_or_else(|| EnvFilter::new("warn,overdued::executor=error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
