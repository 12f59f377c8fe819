//! The host's devices, for privileged containers (containerd's
//! `WithHostDevices`): every character and block device under `/dev`, except
//! what the container gets anyway (`/dev/pts`, `/dev/shm`, `/dev/mqueue`,
//! `/dev/fd`) and `/dev/console`. This reads the directory it is given and
//! nothing else; the pod manager calls it once and passes the list in
//! [`crate::ContainerInput::host_devices`].

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDevice, LinuxDeviceBuilder, LinuxDeviceType};

const SKIPPED_DIRS: [&str; 7] = ["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];

/// The character and block devices under `dev_dir` (normally `/dev`), as
/// devices at the same paths inside the container.
pub fn host_devices(dev_dir: &Path) -> io::Result<Vec<LinuxDevice>> {
    let mut out = Vec::new();
    walk(dev_dir, dev_dir, &mut out)?;
    out.sort_by(|a, b| a.path().cmp(b.path()));
    Ok(out)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<LinuxDevice>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let ty = entry.file_type()?;
        let name = entry.file_name();
        if ty.is_dir() {
            if dir == root && SKIPPED_DIRS.iter().any(|s| name == *s) {
                continue;
            }
            walk(root, &path, out)?;
            continue;
        }
        if dir == root && name == "console" {
            continue;
        }
        let typ = if ty.is_char_device() {
            LinuxDeviceType::C
        } else if ty.is_block_device() {
            LinuxDeviceType::B
        } else {
            continue;
        };
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            // a device that went away while we looked
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let rdev = meta.rdev();
        let rel = path.strip_prefix(root).unwrap_or(&path);
        let container_path = PathBuf::from("/dev").join(rel);
        let device = LinuxDeviceBuilder::default()
            .path(container_path)
            .typ(typ)
            .major(nix::sys::stat::major(rdev) as i64)
            .minor(nix::sys::stat::minor(rdev) as i64)
            .file_mode(meta.mode() & 0o777)
            .uid(meta.uid())
            .gid(meta.gid())
            .build()
            .map_err(io::Error::other)?;
        out.push(device);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_hosts_dev() {
        let devices = host_devices(Path::new("/dev")).expect("read /dev");
        let null = devices
            .iter()
            .find(|d| d.path() == Path::new("/dev/null"))
            .expect("/dev/null is a device on every Linux host");
        assert_eq!(null.typ(), LinuxDeviceType::C);
        assert_eq!((null.major(), null.minor()), (1, 3));
        assert!(devices.iter().all(|d| !d.path().starts_with("/dev/pts")));
        assert!(
            devices
                .iter()
                .all(|d| d.path() != Path::new("/dev/console"))
        );
    }
}
