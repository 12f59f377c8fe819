//! The pause container's root filesystem: a directory holding nothing but the static
//! `kedge-pause` binary at `/pause`.
//!
//! What the OCI spec of the pause container needs (built by kedge-podspec):
//! - `root.path` = [`PauseRootfs::rootfs`], `root.readonly` = true;
//! - `process.args` = [`PauseRootfs::args`] (`["/pause"]`), no env or cwd needed (cwd `/`);
//! - `linux.namespaces`: `network` with `path` = the sandbox's pinned netns
//!   ([`crate::Netns::path`]), and new `pid`, `ipc`, `uts` and `mount` namespaces, which
//!   the pod's containers then join (pause reaps zombies as PID 1 of a shared PID namespace);
//! - no mounts beyond runc's defaults: the rootfs already has `/proc`, `/dev` and `/sys`
//!   as mount points, so nothing is written into the read-only rootfs;
//! - SIGTERM (or SIGINT) stops it with exit status 0.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::CniError;
use crate::fsutil;

/// The pause binary's file name, next to `kedge-agent`.
pub const PAUSE_BINARY_NAME: &str = "kedge-pause";

/// A prepared pause rootfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PauseRootfs {
    /// `<data-dir>/agent/pause/rootfs`.
    pub rootfs: PathBuf,
    /// The pause container's `process.args`.
    pub args: Vec<String>,
}

/// Where the pause binary is: `explicit` when given (a `--pause-binary` flag), else
/// `kedge-pause` in the directory of the running executable.
pub fn locate_pause_binary(explicit: Option<&Path>) -> Result<PathBuf, CniError> {
    let path = match explicit {
        Some(path) => path.to_path_buf(),
        None => {
            let exe = std::env::current_exe()
                .map_err(|e| CniError::io("find the running executable", "/proc/self/exe", e))?;
            exe.parent()
                .unwrap_or_else(|| Path::new("/"))
                .join(PAUSE_BINARY_NAME)
        }
    };
    match fs::metadata(&path) {
        Ok(meta) if meta.is_file() => Ok(path),
        _ => Err(CniError::PauseBinaryMissing { path }),
    }
}

/// Makes `<data-dir>/agent/pause/rootfs` hold `pause_binary` at `/pause` (mode 0555) and
/// empty `/proc`, `/dev`, `/sys` mount points. Refreshes the copy when the binary changed
/// (atomically, so a starting sandbox never sees half a binary), and refuses a dynamically
/// linked binary, which could not start in a rootfs without a libc.
pub fn prepare_pause_rootfs(data_dir: &Path, pause_binary: &Path) -> Result<PauseRootfs, CniError> {
    let binary = fs::read(pause_binary).map_err(|e| match e.kind() {
        ErrorKind::NotFound => CniError::PauseBinaryMissing {
            path: pause_binary.to_path_buf(),
        },
        _ => CniError::io("read", pause_binary, e),
    })?;
    match elf_interpreter(&binary) {
        Err(reason) => {
            return Err(CniError::InvalidArgument {
                what: "pause binary",
                value: pause_binary.display().to_string(),
                reason: format!("{reason}; give the kedge-pause executable"),
            });
        }
        Ok(true) => {
            return Err(CniError::InvalidArgument {
                what: "pause binary",
                value: pause_binary.display().to_string(),
                reason: "it is dynamically linked and cannot run in an empty rootfs; build kedge-pause with its build script (static)".to_string(),
            });
        }
        Ok(false) => {}
    }

    let rootfs = data_dir.join("agent/pause/rootfs");
    for dir in ["proc", "dev", "sys"] {
        let path = rootfs.join(dir);
        fs::create_dir_all(&path).map_err(|e| CniError::io("create directory", &path, e))?;
    }
    let target = rootfs.join("pause");
    let current = fs::read(&target).ok();
    if current.as_deref() != Some(binary.as_slice()) {
        fsutil::write_atomic(&target, &binary, 0o555)?;
        tracing::info!(path = %target.display(), bytes = binary.len(), "installed the pause binary");
    }
    // The mode may have been changed by hand; the binary must stay read-only.
    fs::set_permissions(&target, fs::Permissions::from_mode(0o555))
        .map_err(|e| CniError::io("chmod", &target, e))?;
    Ok(PauseRootfs {
        rootfs,
        args: vec!["/pause".to_string()],
    })
}

/// Whether an ELF file asks for a program interpreter (is dynamically linked); an error
/// if it is not an ELF executable at all.
fn elf_interpreter(elf: &[u8]) -> Result<bool, &'static str> {
    const PT_INTERP: u32 = 3;
    if elf.len() < 64 || &elf[0..4] != b"\x7fELF" {
        return Err("it is not an ELF executable");
    }
    let is64 = match elf[4] {
        1 => false,
        2 => true,
        _ => return Err("its ELF class is unknown"),
    };
    let little = match elf[5] {
        1 => true,
        2 => false,
        _ => return Err("its ELF byte order is unknown"),
    };
    let read = |at: usize, len: usize| -> Result<u64, &'static str> {
        let end = at.checked_add(len).ok_or("its ELF headers are corrupt")?;
        let bytes = elf.get(at..end).ok_or("its ELF headers are truncated")?;
        let mut v: u64 = 0;
        for i in 0..len {
            let b = if little { bytes[len - 1 - i] } else { bytes[i] };
            v = (v << 8) | u64::from(b);
        }
        Ok(v)
    };
    let (phoff, phentsize, phnum) = if is64 {
        (read(0x20, 8)?, read(0x36, 2)?, read(0x38, 2)?)
    } else {
        (read(0x1c, 4)?, read(0x2a, 2)?, read(0x2c, 2)?)
    };
    for i in 0..phnum {
        let at = phentsize
            .checked_mul(i)
            .and_then(|off| off.checked_add(phoff))
            .and_then(|at| usize::try_from(at).ok())
            .ok_or("its ELF headers are corrupt")?;
        if read(at, 4)? == u64::from(PT_INTERP) {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_checks() {
        // this test binary is dynamically linked (the default for tests)
        let me = fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(elf_interpreter(&me), Ok(true));
        assert!(elf_interpreter(b"#!/bin/sh\necho hi\n").is_err());
        let mut truncated = me[..64].to_vec();
        truncated[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(elf_interpreter(&truncated).is_err());
    }

    #[test]
    fn refuses_missing_and_dynamic_binaries() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            prepare_pause_rootfs(dir.path(), &dir.path().join("nope")),
            Err(CniError::PauseBinaryMissing { .. })
        ));
        let dynamic = std::env::current_exe().unwrap();
        let err = prepare_pause_rootfs(dir.path(), &dynamic).unwrap_err();
        assert!(err.to_string().contains("dynamically linked"), "{err}");
        assert!(matches!(
            locate_pause_binary(Some(&dir.path().join("nope"))),
            Err(CniError::PauseBinaryMissing { .. })
        ));
    }
}
