//! One process per state directory. sled would refuse a second opener with an opaque
//! error; this lock names the process that holds the directory instead.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("state directory {dir} is in use by another overdued process (pid {pid}); stop it or use another state_dir")]
    HeldBy { dir: PathBuf, pid: String },
    #[error("state directory {dir}: cannot lock {file}: {source}")]
    Io {
        dir: PathBuf,
        file: PathBuf,
        source: std::io::Error,
    },
}

/// Held for as long as the store is open; released when dropped or when the process dies.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

impl StateLock {
    pub fn acquire(dir: &Path) -> Result<StateLock, LockError> {
        let path = dir.join("overdued.lock");
        let io = |source| LockError::Io {
            dir: dir.to_path_buf(),
            file: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(LockError::HeldBy {
                    dir: dir.to_path_buf(),
                    pid: if pid.is_empty() {
                        "unknown".into()
                    } else {
                        pid.to_string()
                    },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(StateLock { _file: file })
    }
}
