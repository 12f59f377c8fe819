//! The one OS call volumes need beyond files: tmpfs mounts for memory-backed
//! volumes (emptyDir with `medium: Memory`, and Secret, downwardAPI and
//! projected volumes, which upstream keeps in memory so that secrets never
//! touch the disk). Behind a trait so the volume logic is tested on plain
//! directories and the real mounts are tested for real, as root.

use std::fmt::Debug;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Mounts and unmounts tmpfs for memory-backed volumes.
pub trait Mounter: Debug + Send + Sync {
    /// Mounts a tmpfs on `target`, of at most `size` bytes when given.
    fn mount_tmpfs(&self, target: &Path, size: Option<u64>) -> io::Result<()>;
    /// Unmounts whatever is mounted on `target`.
    fn unmount(&self, target: &Path) -> io::Result<()>;
    /// Whether something is mounted on `path` (its device differs from its parent's).
    fn is_mount_point(&self, path: &Path) -> io::Result<bool> {
        is_mount_point(path)
    }
}

/// Whether `path` is a mount point: a different device than its parent.
pub fn is_mount_point(path: &Path) -> io::Result<bool> {
    let meta = std::fs::symlink_metadata(path)?;
    let Some(parent) = path.parent() else {
        return Ok(true);
    };
    let parent_meta = std::fs::symlink_metadata(parent)?;
    Ok(meta.dev() != parent_meta.dev() || meta.ino() == parent_meta.ino())
}

/// Real tmpfs mounts on this host (needs root, or CAP_SYS_ADMIN).
#[derive(Debug, Clone, Copy, Default)]
pub struct HostMounter;

impl Mounter for HostMounter {
    fn mount_tmpfs(&self, target: &Path, size: Option<u64>) -> io::Result<()> {
        use nix::mount::{MsFlags, mount};
        let data = size.map(|s| format!("size={s}"));
        mount(
            Some("tmpfs"),
            target,
            Some("tmpfs"),
            MsFlags::empty(),
            data.as_deref(),
        )
        .map_err(io::Error::from)
    }

    fn unmount(&self, target: &Path) -> io::Result<()> {
        use nix::mount::{MntFlags, umount2};
        umount2(target, MntFlags::empty()).map_err(io::Error::from)
    }
}

/// Keeps memory-backed volumes as plain directories on the pod directory's
/// filesystem: for tests, and for an agent that cannot mount.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainDirs;

impl Mounter for PlainDirs {
    fn mount_tmpfs(&self, target: &Path, _size: Option<u64>) -> io::Result<()> {
        tracing::debug!(target = %target.display(), "memory-backed volume kept as a plain directory");
        Ok(())
    }

    fn unmount(&self, _target: &Path) -> io::Result<()> {
        Ok(())
    }
}
