//! The files the daemon keeps in the state directory so the CLI can reach its admin
//! endpoint, and how they are written.

use std::io::Write as _;
use std::path::Path;

use super::DaemonError;

/// The file in the state directory naming the address the HTTP server listens on.
pub const HTTP_ADDR_FILE: &str = "http.addr";
/// The file in the state directory holding the bearer token `/admin/*` requires.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// Where a running daemon's admin endpoint is and the token it accepts, from the files
/// it wrote into the state directory: (`http://ADDR`, token).
pub fn admin_endpoint(state_dir: &std::path::Path) -> Result<(String, String), String> {
    let read = |name: &str| {
        let p = state_dir.join(name);
        std::fs::read_to_string(&p)
            .map(|s| s.trim().to_string())
            .map_err(|e| format!("reading {}: {e}", p.display()))
    };
    Ok((
        format!("http://{}", read(HTTP_ADDR_FILE)?),
        read(ADMIN_TOKEN_FILE)?,
    ))
}

pub(super) fn new_token() -> String {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// Writes a file only the daemon's user can read, atomically.
pub(super) fn write_private(path: &Path, text: &str) -> Result<(), DaemonError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| DaemonError::StateFile {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}
