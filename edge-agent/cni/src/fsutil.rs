//! Writing files so that readers see the old content or the new, never half of it.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::CniError;

/// Writes `bytes` to `path` through a temp file in the same directory (fsync'd, then
/// renamed over `path`), creating the directory if needed.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CniError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().ok_or_else(|| CniError::InvalidArgument {
        what: "file path",
        value: path.display().to_string(),
        reason: "it has no parent directory".to_string(),
    })?;
    fs::create_dir_all(dir).map_err(|e| CniError::io("create directory", dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|e| CniError::io("create", &tmp, e))?;
        file.write_all(bytes)
            .map_err(|e| CniError::io("write", &tmp, e))?;
        file.sync_all().map_err(|e| CniError::io("sync", &tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| CniError::io("rename into place", path, e))?;
        // make the rename itself durable
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_replaces_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/file");
        write_atomic(&path, b"one", 0o600).unwrap();
        write_atomic(&path, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn failure_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        // the target is a directory: rename fails
        let target = dir.path().join("taken");
        fs::create_dir_all(target.join("inside")).unwrap();
        assert!(write_atomic(&target, b"x", 0o644).is_err());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
