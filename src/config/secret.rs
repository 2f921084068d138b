//! Secrets given inline or as `*_file`, never both; secret files must be private.

use std::path::{Path, PathBuf};

use overdued_connector::Secret;

/// Resolves a secret from its two possible keys. `field` is the inline key's name;
/// the file key is `{field}_file`. Relative paths are taken from the config file's
/// directory. Returns `Ok(None)` when neither is given.
pub fn resolve(
    field: &str,
    inline: Option<&str>,
    file: Option<&str>,
    base_dir: &Path,
) -> Result<Option<Secret>, String> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(format!(
            "{field} and {field}_file are both set: give the secret inline or as a file, not both"
        )),
        (Some(v), None) => {
            if v.trim().is_empty() {
                Err(format!("{field} is empty"))
            } else {
                Ok(Some(Secret::new(v.trim())))
            }
        }
        (None, Some(p)) => read_secret_file(&base_dir.join(p)).map(Some),
        (None, None) => Ok(None),
    }
}

/// [`resolve`] for the keys `{table}.{field}` and `{table}.{field}_file`, with an error
/// that names the key to blame: the file key when only the file was given.
pub fn resolve_at(
    table: &str,
    field: &str,
    inline: Option<&str>,
    file: Option<&str>,
    base_dir: &Path,
) -> Result<Option<Secret>, (String, String)> {
    resolve(field, inline, file, base_dir).map_err(|m| {
        let key = if file.is_some() && inline.is_none() {
            format!("{field}_file")
        } else {
            field.to_string()
        };
        (format!("{table}.{key}"), m)
    })
}

/// Reads a secret file, refusing one that other users could read.
pub fn read_secret_file(path: &Path) -> Result<Secret, String> {
    let meta = std::fs::metadata(path).map_err(|e| {
        format!(
            "cannot read secret file {}: {}",
            path.display(),
            io_reason(&e)
        )
    })?;
    if !meta.is_file() {
        return Err(format!("{} is not a file", path.display()));
    }
    check_private(path, &meta)?;
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "cannot read secret file {}: {}",
            path.display(),
            io_reason(&e)
        )
    })?;
    let value = text.trim_end_matches(['\n', '\r']);
    if value.trim().is_empty() {
        return Err(format!("secret file {} is empty", path.display()));
    }
    Ok(Secret::new(value))
}

#[cfg(unix)]
fn check_private(path: &Path, meta: &std::fs::Metadata) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "secret file {} has mode {mode:04o}, readable by other users; run `chmod 600 {}`",
            path.display(),
            path.display()
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &Path, _: &std::fs::Metadata) -> Result<(), String> {
    Ok(())
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// Writes a secret file readable by its owner only.
pub fn write_secret_file(path: &PathBuf, value: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(value.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, body: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        p
    }

    #[test]
    fn inline_secret_is_used() {
        let s = resolve("client_secret", Some("abc"), None, Path::new("/"))
            .unwrap()
            .unwrap();
        assert_eq!(s.expose(), "abc");
    }

    #[test]
    fn both_inline_and_file_is_refused() {
        let e = resolve("client_secret", Some("abc"), Some("x"), Path::new("/")).unwrap_err();
        assert!(e.contains("not both"), "{e}");
    }

    #[test]
    fn errors_name_the_key_to_blame() {
        let dir = tempfile::tempdir().unwrap();
        let (key, _) =
            resolve_at("xero.uk", "client_secret", None, Some("nope"), dir.path()).unwrap_err();
        assert_eq!(key, "xero.uk.client_secret_file");
        let (key, m) =
            resolve_at("xero.uk", "client_secret", Some("a"), Some("b"), dir.path()).unwrap_err();
        assert_eq!(key, "xero.uk.client_secret");
        assert!(m.contains("not both"), "{m}");
    }

    #[test]
    fn neither_is_none() {
        assert!(resolve("client_secret", None, None, Path::new("/"))
            .unwrap()
            .is_none());
    }

    #[test]
    fn empty_inline_secret_is_refused() {
        assert!(resolve("client_secret", Some("  "), None, Path::new("/")).is_err());
    }

    #[test]
    fn private_file_is_read_relative_to_the_config_dir_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "s", "from-file\n", 0o600);
        let s = resolve("client_secret", None, Some("s"), dir.path())
            .unwrap()
            .unwrap();
        assert_eq!(s.expose(), "from-file");
    }

    #[cfg(unix)]
    #[test]
    fn world_or_group_readable_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "w", "x", 0o644);
        let e = resolve("client_secret", None, Some("w"), dir.path()).unwrap_err();
        assert!(
            e.contains("0644") && e.contains("readable by other users"),
            "{e}"
        );
        write(dir.path(), "g", "x", 0o640);
        assert!(resolve("client_secret", None, Some("g"), dir.path()).is_err());
    }

    #[test]
    fn missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = resolve("client_secret", None, Some("nope"), dir.path()).unwrap_err();
        assert!(e.contains("no such file"), "{e}");
    }

    #[test]
    fn empty_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "e", "\n", 0o600);
        assert!(resolve("client_secret", None, Some("e"), dir.path())
            .unwrap_err()
            .contains("empty"));
    }

    #[test]
    fn written_secret_files_are_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        write_secret_file(&p, "tok").unwrap();
        assert_eq!(read_secret_file(&p).unwrap().expose(), "tok");
    }
}
