//! `overdued send-test-email --to ADDRESS`: checks the SMTP settings by sending one
//! message.

use std::path::Path;

use overdued_connector::{Clock, SystemClock};

use super::common::{load_config, runtime, Fail};
use super::exit;

pub fn run(config: Option<&Path>, to: &str) -> u8 {
    match send(config, to) {
        Ok(mid) => {
            println!("sent a test message to {to} (Message-ID {mid})");
            0
        }
        Err(e) => e.report(),
    }
}

fn send(config: Option<&Path>, to: &str) -> Result<String, Fail> {
    let c = load_config(config)?;
    if c.channels.smtp.is_none() {
        return Err(Fail(
            exit::CONFIG,
            format!("{}: [channels.smtp] is not configured", c.path.display()),
        ));
    }
    let today = SystemClock
        .now()
        .with_timezone(&c.daemon.time_zone)
        .date_naive();
    let rt = runtime()?;
    rt.block_on(crate::channels::send_test_email(&c.channels, to, today))
        .map_err(|e| Fail(exit::UNAVAILABLE, e.to_string()))
}
