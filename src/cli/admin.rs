//! Asking the running daemon to do what a command would do on the store the daemon
//! holds: a POST to its loopback admin endpoint with the token it left in the state
//! directory. The daemon answers the command's output as text, or an [`OpError`] as
//! JSON that is printed as the command's own error.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::ops::OpError;

use super::exit;

/// For requests that reach the vendors (a plan refreshes every connection first, and
/// waits for a cycle that is running to end).
pub const SLOW: Duration = Duration::from_secs(300);

/// POSTs `body` as JSON to `path` on the daemon whose state directory is `state_dir`.
/// The outer error is about reaching the daemon; the inner result is the command's own.
pub fn post_text(
    state_dir: &Path,
    path: &str,
    body: &impl Serialize,
    timeout: Duration,
) -> Result<Result<String, OpError>, OpError> {
    let unavailable = |message: String| OpError {
        code: exit::UNAVAILABLE,
        message,
    };
    let (base, token) = crate::daemon::admin_endpoint(state_dir).map_err(unavailable)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| unavailable(e.to_string()))?;
    rt.block_on(async {
        let url = format!("{base}{path}");
        let resp = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| unavailable(e.to_string()))?
            .post(&url)
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .map_err(|e| unavailable(format!("POST {url}: {e}")))?;
        let status = resp.status();
        if status.is_success() {
            let text = resp.text().await.map_err(|e| unavailable(e.to_string()))?;
            return Ok(Ok(text));
        }
        let text = resp.text().await.unwrap_or_default();
        match serde_json::from_str::<OpError>(&text) {
            Ok(e) => Ok(Err(e)),
            Err(_) => Err(unavailable(format!(
                "POST {url}: the daemon answered {status}: {}",
                text.trim()
            ))),
        }
    })
}
