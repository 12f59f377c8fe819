//! File helpers: atomic writes with exact modes, and reads that tell "missing" apart from
//! "unreadable".
//!
//! Kept as plain functions over paths (tests use temp directories) rather than behind a
//! trait: they are small, and the real filesystem is what the tests need to prove.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::PkiError;

/// Mode of private key files.
pub const KEY_MODE: u32 = 0o600;
/// Mode of certificate files.
pub const CERT_MODE: u32 = 0o644;
/// Mode of the tls directory.
pub const TLS_DIR_MODE: u32 = 0o700;

fn write_err(path: &Path) -> impl FnOnce(io::Error) -> PkiError + '_ {
    move |source| PkiError::Write {
        path: path.to_path_buf(),
        source,
    }
}

fn read_err(path: &Path) -> impl FnOnce(io::Error) -> PkiError + '_ {
    move |source| PkiError::Read {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `contents` to `path` so that a crash leaves either the old file or the new one,
/// never a partial one, and never a moment where the file has a wider mode than `mode`.
///
/// A temporary file is created in the same directory with `mode` (set explicitly, so the
/// umask does not matter), written, fsynced, renamed over `path`, and the directory is
/// fsynced so the rename survives a power cut. The final file has exactly `mode` even if
/// `path` existed before with another one.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);

    let dir = parent_dir(path);
    let file_name = path
        .file_name()
        .ok_or_else(|| PkiError::Write {
            path: path.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"),
        })?
        .to_string_lossy();
    let tmp = dir.join(format!(
        ".{file_name}.tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));

    let result = write_new_file(&tmp, contents, mode)
        .and_then(|()| fs::rename(&tmp, path).map_err(write_err(path)))
        .and_then(|()| sync_dir(&dir));
    if result.is_err() {
        // Best effort: the temp file may not exist if creating it is what failed.
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn write_new_file(tmp: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(tmp)
        .map_err(write_err(tmp))?;
    // The mode given to open() is filtered by the umask; set it exactly.
    file.set_permissions(Permissions::from_mode(mode))
        .map_err(write_err(tmp))?;
    file.write_all(contents).map_err(write_err(tmp))?;
    file.sync_all().map_err(write_err(tmp))
}

fn sync_dir(dir: &Path) -> Result<(), PkiError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(write_err(dir))
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Reads a whole file, returning `None` when it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, PkiError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(read_err(path)(e)),
    }
}

/// Whether `path` exists (a dangling symlink counts as existing: something is there).
pub fn exists(path: &Path) -> Result<bool, PkiError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(read_err(path)(e)),
    }
}

/// Creates `dir` and any missing ancestors; directories this creates get `mode`, existing
/// ones are left alone.
pub fn create_dir_all(dir: &Path, mode: u32) -> Result<(), PkiError> {
    DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(write_err(dir))
}

/// Sets the permission bits of `path` to exactly `mode` unless they already are, and says
/// whether it changed anything.
pub fn ensure_mode(path: &Path, mode: u32) -> Result<bool, PkiError> {
    let current = fs::metadata(path)
        .map_err(read_err(path))?
        .permissions()
        .mode()
        & 0o7777;
    if current == mode {
        return Ok(false);
    }
    fs::set_permissions(path, Permissions::from_mode(mode)).map_err(write_err(path))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn write_atomic_sets_exact_mode_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.key");

        write_atomic(&path, b"one", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"one");
        assert_eq!(mode_of(&path), 0o600);

        // Overwriting a file that has another mode leaves the requested one.
        fs::set_permissions(&path, Permissions::from_mode(0o666)).unwrap();
        write_atomic(&path, b"two", 0o640).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(mode_of(&path), 0o640);

        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.key")]);
    }

    #[test]
    fn write_atomic_into_missing_dir_fails_with_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("a.crt");
        let err = write_atomic(&path, b"x", 0o644).unwrap_err();
        assert!(
            matches!(err, PkiError::Write { .. }),
            "unexpected error {err:?}"
        );
        assert!(err.to_string().contains("missing"), "{err}");
    }

    #[test]
    fn read_optional_tells_missing_from_present() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        assert_eq!(read_optional(&path).unwrap(), None);
        fs::write(&path, b"x").unwrap();
        assert_eq!(read_optional(&path).unwrap(), Some(b"x".to_vec()));
        // A directory where a file is expected is an error, not "missing".
        assert!(read_optional(dir.path()).is_err());
    }

    #[test]
    fn ensure_mode_reports_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"x").unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        assert!(ensure_mode(&path, 0o600).unwrap());
        assert_eq!(mode_of(&path), 0o600);
        assert!(!ensure_mode(&path, 0o600).unwrap());
    }
}
