//! The kubelet's atomic writer (`pkg/volume/util/atomic_writer.go`), our own
//! implementation of its layout and algorithm:
//!
//! ```text
//! <volume>/..2024_05_01_10_00_00.123456789/   the files, in a timestamped directory
//! <volume>/..data -> ..2024_05_01_10_00_00.123456789
//! <volume>/<top-level name> -> ..data/<top-level name>
//! ```
//!
//! An update writes a new timestamped directory, points `..data_tmp` at it and
//! renames that over `..data` (one atomic `rename(2)`), so a reader inside the
//! container sees either the old files or the new ones, never a mix. Names
//! starting with `..` are reserved.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, ErrorKind};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};

const DATA_DIR: &str = "..data";
const NEW_DATA_DIR: &str = "..data_tmp";
const MAX_FILE_NAME: usize = 255;
const MAX_PATH: usize = 4096;

/// One file of a volume's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProjection {
    pub data: Vec<u8>,
    /// Permission bits (e.g. 0o644).
    pub mode: u32,
}

/// A volume's payload: relative path → content.
pub type Payload = BTreeMap<String, FileProjection>;

/// Why the atomic writer failed.
#[derive(Debug, thiserror::Error)]
pub enum AtomicError {
    #[error("invalid path: {0}")]
    InvalidPath(String),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> AtomicError + use<> {
    let path = path.to_path_buf();
    move |source| AtomicError::Io { op, path, source }
}

/// Checks a payload path as upstream: not empty, relative, no `..` element,
/// not starting with `..`, names ≤ 255 bytes, whole ≤ 4096 bytes. Returns the
/// cleaned path (no `.` elements, no repeated or trailing slashes).
pub fn validate_path(path: &str) -> Result<String, AtomicError> {
    if path.is_empty() {
        return Err(AtomicError::InvalidPath("must not be empty: \"\"".into()));
    }
    if path.starts_with('/') {
        return Err(AtomicError::InvalidPath(format!(
            "must be relative path: {path}"
        )));
    }
    if path.len() > MAX_PATH {
        return Err(AtomicError::InvalidPath(format!(
            "must be less than or equal to {MAX_PATH} characters"
        )));
    }
    let items: Vec<&str> = path.split('/').collect();
    for item in &items {
        if *item == ".." {
            return Err(AtomicError::InvalidPath(format!(
                "must not contain '..': {path}"
            )));
        }
        if item.len() > MAX_FILE_NAME {
            return Err(AtomicError::InvalidPath(format!(
                "filenames must be less than or equal to {MAX_FILE_NAME} characters"
            )));
        }
    }
    if items[0].starts_with("..") {
        return Err(AtomicError::InvalidPath(format!(
            "must not start with '..': {path}"
        )));
    }
    let cleaned: Vec<&str> = items
        .into_iter()
        .filter(|i| !i.is_empty() && *i != ".")
        .collect();
    if cleaned.is_empty() {
        return Err(AtomicError::InvalidPath(format!(
            "must name a file: {path}"
        )));
    }
    Ok(cleaned.join("/"))
}

/// Every relative path under `dir` (files and directories), without following symlinks.
fn walk(dir: &Path, prefix: &str, out: &mut BTreeSet<String>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let ty = entry.file_type()?;
        out.insert(rel.clone());
        if ty.is_dir() {
            walk(&entry.path(), &rel, out)?;
        }
    }
    Ok(())
}

/// Whether the payload differs from what `old` holds (content or mode), or
/// `old` holds files the payload does not.
fn differs(payload: &Payload, old: &Path) -> io::Result<bool> {
    for (path, file) in payload {
        let p = old.join(path);
        let meta = match fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(true),
            Err(e) => return Err(e),
        };
        if !meta.is_file() || meta.permissions().mode() & 0o7777 != file.mode & 0o7777 {
            return Ok(true);
        }
        if fs::read(&p)? != file.data {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Writes `payload` into `target` (which must exist) atomically. `set_perms`
/// runs on the new timestamped directory before it becomes visible (the
/// kubelet's fsGroup ownership hook). Returns whether anything changed.
pub fn write(
    target: &Path,
    payload: &Payload,
    set_perms: &dyn Fn(&Path) -> io::Result<()>,
) -> Result<bool, AtomicError> {
    let mut clean = Payload::new();
    for (path, file) in payload {
        clean.insert(validate_path(path)?, file.clone());
    }

    let data_dir = target.join(DATA_DIR);
    let old_ts = match fs::read_link(&data_dir) {
        Ok(p) => Some(p),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => return Err(io_err("read link", &data_dir)(e)),
    };

    // the paths of the old version that the new one no longer has
    let mut to_remove = BTreeSet::new();
    if let Some(old) = &old_ts {
        let old_path = target.join(old);
        let mut old_paths = BTreeSet::new();
        match walk(&old_path, "", &mut old_paths) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("read", &old_path)(e)),
        }
        let mut new_paths = BTreeSet::new();
        for path in clean.keys() {
            let mut p = path.as_str();
            loop {
                new_paths.insert(p.to_string());
                match p.rfind('/') {
                    Some(i) => p = &p[..i],
                    None => break,
                }
            }
        }
        to_remove = old_paths.difference(&new_paths).cloned().collect();
        let changed = differs(&clean, &old_path).map_err(io_err("read", &old_path))?;
        if !changed && to_remove.is_empty() {
            return Ok(false);
        }
    }

    let ts_dir = new_timestamp_dir(target)?;
    let ts_name = ts_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let result = (|| {
        write_payload(&ts_dir, &clean)?;
        set_perms(&ts_dir).map_err(io_err("set ownership of", &ts_dir))?;
        let tmp_link = target.join(NEW_DATA_DIR);
        match fs::remove_file(&tmp_link) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove", &tmp_link)(e)),
        }
        symlink(&ts_name, &tmp_link).map_err(io_err("symlink", &tmp_link))?;
        fs::rename(&tmp_link, &data_dir).map_err(io_err("rename", &tmp_link))
    })();
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&ts_dir);
        let _ = fs::remove_file(target.join(NEW_DATA_DIR));
        return Err(e);
    }

    // user-visible links for the top-level names
    for path in clean.keys() {
        let top = path.split('/').next().unwrap_or(path);
        let visible = target.join(top);
        match fs::symlink_metadata(&visible) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {
                symlink(Path::new(DATA_DIR).join(top), &visible)
                    .map_err(io_err("symlink", &visible))?;
            }
            Err(e) => return Err(io_err("stat", &visible)(e)),
        }
    }
    for path in to_remove.iter().filter(|p| !p.contains('/')) {
        let visible = target.join(path);
        match fs::remove_file(&visible) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove", &visible)(e)),
        }
    }
    if let Some(old) = old_ts {
        let old_path = target.join(old);
        // only ever remove a directory of ours, inside the volume
        if old_path.parent() == Some(target)
            && old_path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".."))
        {
            match fs::remove_dir_all(&old_path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove", &old_path)(e)),
            }
        }
    }
    Ok(true)
}

/// `..2006_01_02_15_04_05.<random>`, mode 0755 whatever the umask.
fn new_timestamp_dir(target: &Path) -> Result<PathBuf, AtomicError> {
    let stamp = jiff::Timestamp::now()
        .strftime("..%Y_%m_%d_%H_%M_%S.")
        .to_string();
    for _ in 0..16 {
        let suffix: u32 = rand::random_range(0..1_000_000_000);
        let dir = target.join(format!("{stamp}{suffix:09}"));
        match fs::create_dir(&dir) {
            Ok(()) => {
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
                    .map_err(io_err("chmod", &dir))?;
                return Ok(dir);
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err("create", &dir)(e)),
        }
    }
    Err(AtomicError::Io {
        op: "create a timestamped directory in",
        path: target.to_path_buf(),
        source: io::Error::new(ErrorKind::AlreadyExists, "16 names were taken"),
    })
}

fn write_payload(dir: &Path, payload: &Payload) -> Result<(), AtomicError> {
    for (path, file) in payload {
        let full = dir.join(path);
        if let Some(parent) = full.parent() {
            create_dirs(dir, parent)?;
        }
        fs::write(&full, &file.data).map_err(io_err("write", &full))?;
        // the mode exactly, whatever the umask
        fs::set_permissions(&full, fs::Permissions::from_mode(file.mode & 0o7777))
            .map_err(io_err("chmod", &full))?;
    }
    Ok(())
}

/// Creates `path` (under `base`) and its parents with mode 0755.
fn create_dirs(base: &Path, path: &Path) -> Result<(), AtomicError> {
    let rel = path.strip_prefix(base).unwrap_or(Path::new(""));
    let mut cur = base.to_path_buf();
    for c in rel.components() {
        if let Component::Normal(name) = c {
            cur.push(name);
            match fs::create_dir(&cur) {
                Ok(()) => {
                    fs::set_permissions(&cur, fs::Permissions::from_mode(0o755))
                        .map_err(io_err("chmod", &cur))?;
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err("create", &cur)(e)),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn payload(files: &[(&str, &str, u32)]) -> Payload {
        files
            .iter()
            .map(|(p, d, m)| {
                (
                    p.to_string(),
                    FileProjection {
                        data: d.as_bytes().to_vec(),
                        mode: *m,
                    },
                )
            })
            .collect()
    }

    fn no_perms(_: &Path) -> io::Result<()> {
        Ok(())
    }

    fn hidden_dirs(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("..") && n != DATA_DIR)
            .collect();
        v.sort();
        v
    }

    #[test]
    fn layout_and_update_swap_data() {
        let tmp = tempfile::tempdir().unwrap();
        let vol = tmp.path();
        let first = payload(&[
            ("app.conf", "a=1\n", 0o644),
            ("nested/deep/key", "deep", 0o600),
            ("gone", "x", 0o644),
        ]);
        assert!(write(vol, &first, &no_perms).unwrap());

        // ..data -> ..<timestamp>, visible names -> ..data/<name>
        let ts1 = fs::read_link(vol.join("..data")).unwrap();
        let ts1_name = ts1.to_string_lossy().into_owned();
        assert!(
            ts1_name.starts_with("..") && ts1_name.len() == "..2024_01_01_00_00_00.123456789".len(),
            "{ts1_name}"
        );
        assert_eq!(
            fs::read_link(vol.join("app.conf")).unwrap(),
            Path::new("..data/app.conf")
        );
        assert_eq!(
            fs::read_link(vol.join("nested")).unwrap(),
            Path::new("..data/nested")
        );
        assert_eq!(fs::read_to_string(vol.join("app.conf")).unwrap(), "a=1\n");
        assert_eq!(
            fs::read_to_string(vol.join("nested/deep/key")).unwrap(),
            "deep"
        );
        let mode = |p: &str| fs::metadata(vol.join(p)).unwrap().mode() & 0o7777;
        assert_eq!(mode("app.conf"), 0o644);
        assert_eq!(mode("nested/deep/key"), 0o600);
        assert_eq!(fs::metadata(vol.join(&ts1)).unwrap().mode() & 0o7777, 0o755);

        // the same payload again changes nothing
        assert!(!write(vol, &first, &no_perms).unwrap());
        assert_eq!(fs::read_link(vol.join("..data")).unwrap(), ts1);

        // an update: a new timestamped dir, ..data swapped, the old dir and the removed key gone
        let second = payload(&[
            ("app.conf", "a=2\n", 0o644),
            ("nested/deep/key", "deep", 0o600),
            ("new", "n", 0o400),
        ]);
        // a reader holding the old file keeps the old content
        let mut held = fs::File::open(vol.join("app.conf")).unwrap();
        assert!(write(vol, &second, &no_perms).unwrap());
        let ts2 = fs::read_link(vol.join("..data")).unwrap();
        assert_ne!(ts1, ts2);
        assert_eq!(fs::read_to_string(vol.join("app.conf")).unwrap(), "a=2\n");
        assert_eq!(fs::read_to_string(vol.join("new")).unwrap(), "n");
        assert_eq!(mode("new"), 0o400);
        assert!(
            fs::symlink_metadata(vol.join("gone")).is_err(),
            "removed key's link is gone"
        );
        assert_eq!(
            hidden_dirs(vol),
            [ts2.to_string_lossy().into_owned()],
            "only the new timestamped dir is left"
        );
        let mut old = String::new();
        io::Read::read_to_string(&mut held, &mut old).unwrap();
        assert_eq!(old, "a=1\n");

        // a mode change alone is an update
        let third = payload(&[
            ("app.conf", "a=2\n", 0o640),
            ("nested/deep/key", "deep", 0o600),
            ("new", "n", 0o400),
        ]);
        assert!(write(vol, &third, &no_perms).unwrap());
        assert_eq!(mode("app.conf"), 0o640);

        // an empty payload empties the volume but keeps the layout
        assert!(write(vol, &Payload::new(), &no_perms).unwrap());
        let names: Vec<String> = fs::read_dir(vol)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with(".."))
            .collect();
        assert!(names.is_empty(), "{names:?}");
    }

    #[test]
    fn bad_paths_are_rejected_before_writing() {
        let cases: &[(&str, &str)] = &[
            ("", "must not be empty"),
            ("/etc/passwd", "must be relative path"),
            ("../escape", "must not contain '..'"),
            ("a/../../b", "must not contain '..'"),
            ("..data", "must not start with '..'"),
            ("..hidden/x", "must not start with '..'"),
            (".", "must name a file"),
        ];
        let tmp = tempfile::tempdir().unwrap();
        for (path, want) in cases {
            let err = write(tmp.path(), &payload(&[(path, "x", 0o644)]), &no_perms)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{path:?}: {err}");
        }
        let long = "x".repeat(256);
        assert!(write(tmp.path(), &payload(&[(&long, "x", 0o644)]), &no_perms).is_err());
        assert_eq!(
            fs::read_dir(tmp.path()).unwrap().count(),
            0,
            "nothing written"
        );
        assert_eq!(validate_path("a//b/./c/").unwrap(), "a/b/c");
    }

    #[test]
    fn a_failing_permission_hook_leaves_the_old_version() {
        let tmp = tempfile::tempdir().unwrap();
        let vol = tmp.path();
        write(vol, &payload(&[("k", "v1", 0o644)]), &no_perms).unwrap();
        let before = fs::read_link(vol.join("..data")).unwrap();
        let failing = |_: &Path| -> io::Result<()> { Err(io::Error::other("chown refused")) };
        let err = write(vol, &payload(&[("k", "v2", 0o644)]), &failing)
            .unwrap_err()
            .to_string();
        assert!(err.contains("chown refused"), "{err}");
        assert_eq!(fs::read_link(vol.join("..data")).unwrap(), before);
        assert_eq!(fs::read_to_string(vol.join("k")).unwrap(), "v1");
        assert_eq!(
            hidden_dirs(vol).len(),
            1,
            "the half-made directory was removed"
        );
    }
}
