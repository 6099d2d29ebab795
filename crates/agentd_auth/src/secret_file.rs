//! Secret files that the zero-config server makes for itself under `var/` (the development JWT secret, the
//! URL-signing secret): read when present, otherwise created **atomically with mode 0600** — written to a
//! private temporary file in the same directory and linked into place without replacing anything, so no other
//! user ever sees the secret, no reader ever sees half a file, and two processes starting together agree on
//! one secret. An existing file that others may read is tightened to 0600, with a warning.

use base64::Engine as _;
use std::io::Write as _;
use std::path::Path;

/// Shortest secret kept from an existing file; a shorter (or empty) file is replaced by a new secret.
pub const MIN_SECRET_CHARS: usize = 32;

/// The secret in `path`, made (32 random bytes, base64url) when the file is missing or holds fewer than
/// [`MIN_SECRET_CHARS`] characters. The parent directory is created when missing.
pub fn read_or_create_secret(path: &Path) -> std::io::Result<String> {
    if let Some(secret) = read_existing(path)? {
        return Ok(secret);
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    // tempfile creates the file with mode 0600 (O_EXCL) before a byte is written.
    let mut tmp = tempfile::Builder::new().prefix(".secret-").tempfile_in(dir)?;
    tmp.write_all(secret.as_bytes())?;
    tmp.as_file().sync_all()?;
    if path.exists() {
        // A file too short to keep: replace it (rename is atomic).
        tmp.persist(path).map_err(|e| e.error)?;
        return Ok(read_existing(path)?.unwrap_or(secret));
    }
    match tmp.persist_noclobber(path) {
        Ok(_) => Ok(secret),
        // Another process made it first: use theirs.
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => read_existing(path)?.ok_or(e.error),
        Err(e) => Err(e.error),
    }
}

/// The trimmed secret of an existing file (tightening its mode), `None` when missing or too short.
fn read_existing(path: &Path) -> std::io::Result<Option<String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let secret = text.trim();
    if secret.len() < MIN_SECRET_CHARS {
        return Ok(None);
    }
    tighten(path)?;
    Ok(Some(secret.to_owned()))
}

#[cfg(unix)]
fn tighten(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        tracing::warn!(
            path = %path.display(),
            was = format_args!("{mode:o}"),
            "a secret file was readable by other users; its mode is now 600"
        );
    }
    Ok(())
}

#[cfg(not(unix))]
fn tighten(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn made_once_private_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("var/secret");
        let first = read_or_create_secret(&path).unwrap();
        assert!(first.len() >= MIN_SECRET_CHARS);
        assert_eq!(read_or_create_secret(&path).unwrap(), first);
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);
        let leftovers = std::fs::read_dir(dir.path().join("var")).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file is left behind");
    }

    #[test]
    fn a_short_file_is_replaced_and_a_loose_one_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "short").unwrap();
        let made = read_or_create_secret(&path).unwrap();
        assert_ne!(made, "short");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(mode(&path), 0o600);
            let kept = "k".repeat(40);
            std::fs::write(&path, format!("{kept}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert_eq!(read_or_create_secret(&path).unwrap(), kept);
            assert_eq!(mode(&path), 0o600);
        }
    }
}
