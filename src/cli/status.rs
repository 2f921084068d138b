//! `overdued status`: from the running daemon's admin endpoint when it holds the store,
//! else from the store directly.

use std::path::Path;

use anyhow::{anyhow, Context};
use overdued_connector::{Clock, SystemClock};

use crate::report::status::{self, StatusReport};
use crate::store::{SledStore, StoreError};

use super::exit;

pub fn status(config: Option<&Path>) -> u8 {
    let path = crate::config::resolve_path(config);
    let cfg = match crate::config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::CONFIG;
        }
    };
    let report = match SledStore::open(&cfg.daemon.state_dir) {
        Ok(store) => match status::from_store(&cfg, &store, SystemClock.now()) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: reading the store: {e}");
                return exit::IOERR;
            }
        },
        Err(StoreError::Locked(lock)) => match from_daemon(&cfg.daemon.state_dir) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {lock}; asking it failed: {e:#}");
                return exit::UNAVAILABLE;
            }
        },
        Err(e) => {
            eprintln!("error: {e}");
            return exit::IOERR;
        }
    };
    print!("{}", status::render_text(&report));
    0
}

/// Asks the running daemon, at the address and with the token it wrote into the state
/// directory.
fn from_daemon(state_dir: &Path) -> anyhow::Result<StatusReport> {
    let (base, token) = crate::daemon::admin_endpoint(state_dir).map_err(|e| anyhow!(e))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let url = format!("{base}/admin/status");
        let resp = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()?
            .get(&url)
            .bearer_auth(token)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let code = resp.status();
        if !code.is_success() {
            return Err(anyhow!("GET {url}: HTTP {code}"));
        }
        resp.json::<StatusReport>()
            .await
            .with_context(|| format!("GET {url}: unexpected answer"))
    })
}
