//! Cgroup v1 and v2 budgets for the agent, its containerd and every pod (QoS
//! classes), and the eviction order.
//!
//! - [`detect`]: cgroup v1, v2 or hybrid, from a root path (`/sys/fs/cgroup`).
//! - [`driver`]: the [`Driver`] trait over cgroupfs, with a [`driver::V1`] and a
//!   [`driver::V2`] implementation. Every function takes the cgroupfs root as a path,
//!   so v2 is tested against fixture directories and v1 against the real machine.
//! - [`hierarchy`]: the kedge hierarchy ([`Cgroups`]): `kedge/system/{agent,containerd}`
//!   capped at their budgets, `kubepods` capped at what pods may use, with
//!   `burstable` and `besteffort` children, Guaranteed pods directly under
//!   `kubepods`, and one `pod<uid>` cgroup per pod; the cgroupsPath of a container.
//! - [`resources`]: QoS classes and the pod cgroup's settings from container
//!   requests and limits, as the kubelet computes them.
//! - [`stats`]: memory usage, working set, limit, OOM kills; PSI.
//! - [`oom`]: oom_score_adj for the agent, containerd and containers.
//! - [`eviction`]: pure logic: thresholds crossed, MemoryPressure, which pod to
//!   evict and the kubelet's message.
//!
//! The agent puts it to work in `edge-agent/src/budgets.rs`: the hierarchy at start,
//! containerd and the pods placed in it, and the eviction loop over these stats.
//!
//! Why not cgroups-rs (which DESIGN.md names): its v1 hierarchy finds its mount
//! points in /proc/self/mountinfo and its v2 hierarchy is fixed at /sys/fs/cgroup,
//! so neither can be pointed at a fixture directory; what kedge writes is a handful
//! of files. Plain file I/O behind the small [`Driver`] trait does the job, is tested
//! on fixtures and on the real v1 hierarchy, and adds no dependency to the agent.
//!
//! Architecture invariant: no async runtime, no Kubernetes type crate, no other
//! kedge crate but kedge-hardware-profiles (for the thresholds). Time is passed in
//! (the eviction manager takes `now`); nothing here sleeps.

use std::path::{Path, PathBuf};

pub mod driver;
pub mod eviction;
pub mod hierarchy;
pub mod oom;
pub mod resources;
pub mod stats;

pub use driver::{Driver, Resources};
pub use hierarchy::{Cgroups, Layout, SystemBudgets};
pub use resources::{ContainerResources, PodResources, QosClass};
pub use stats::{MemoryStats, Psi};

/// The usual cgroupfs root.
pub const DEFAULT_ROOT: &str = "/sys/fs/cgroup";

/// What a cgroup operation failed on.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{root} is neither a cgroup v2 mount (no cgroup.controllers) nor a cgroup v1 tree with a memory hierarchy; mount cgroupfs there or give the right root"
    )]
    NoCgroupFs { root: PathBuf },
    #[error("{path}: cannot parse {what} from {text:?}")]
    Parse {
        path: PathBuf,
        what: &'static str,
        text: String,
    },
    #[error(
        "cgroup v2 at {root} does not offer the {controller} controller (cgroup.controllers: {available:?}); enable it on the kernel command line"
    )]
    MissingController {
        root: PathBuf,
        controller: &'static str,
        available: String,
    },
    #[error(
        "cannot set {path} to {value}: {source}; lowering oom_score_adj needs CAP_SYS_RESOURCE (run kedge-agent as root with its full capabilities)"
    )]
    OomScoreAdj {
        path: PathBuf,
        value: i32,
        source: std::io::Error,
    },
    #[error("invalid cgroup name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
}

/// Which cgroup interface the machine offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Only the legacy hierarchies (one mount per controller).
    V1,
    /// The v1 controllers plus an empty v2 mount at `unified/` (systemd's "hybrid"):
    /// kedge uses the v1 controllers.
    Hybrid,
    /// The unified hierarchy.
    V2,
}

/// Tells v1, hybrid and v2 apart from the files under `root`.
pub fn detect(root: &Path) -> Result<Version, CgroupError> {
    if root.join("cgroup.controllers").is_file() {
        return Ok(Version::V2);
    }
    if root.join("memory").join("memory.limit_in_bytes").is_file() {
        if root.join("unified").join("cgroup.controllers").is_file() {
            return Ok(Version::Hybrid);
        }
        return Ok(Version::V1);
    }
    Err(CgroupError::NoCgroupFs {
        root: root.to_path_buf(),
    })
}

/// The driver for the cgroupfs under `root`.
pub fn open(root: &Path) -> Result<Box<dyn Driver>, CgroupError> {
    Ok(match detect(root)? {
        Version::V1 | Version::Hybrid => Box::new(driver::V1::new(root)),
        Version::V2 => Box::new(driver::V2::new(root)),
    })
}

/// A process's cgroup for a v1 controller (or the v2 path for `None`), from the
/// text of `/proc/<pid>/cgroup`.
pub fn proc_cgroup(text: &str, controller: Option<&str>) -> Option<String> {
    text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let hit = match controller {
            None => controllers.is_empty(),
            Some(c) => controllers.split(',').any(|x| x == c),
        };
        hit.then(|| path.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_on_fixtures() {
        let v2 = tempfile::tempdir().unwrap();
        std::fs::write(v2.path().join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        assert_eq!(detect(v2.path()).unwrap(), Version::V2);

        let v1 = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(v1.path().join("memory")).unwrap();
        std::fs::write(v1.path().join("memory/memory.limit_in_bytes"), "-1\n").unwrap();
        assert_eq!(detect(v1.path()).unwrap(), Version::V1);
        std::fs::create_dir_all(v1.path().join("unified")).unwrap();
        std::fs::write(v1.path().join("unified/cgroup.controllers"), "").unwrap();
        assert_eq!(detect(v1.path()).unwrap(), Version::Hybrid);

        let none = tempfile::tempdir().unwrap();
        let err = detect(none.path()).unwrap_err().to_string();
        assert!(err.contains("neither a cgroup v2 mount"), "{err}");
    }

    #[test]
    fn proc_cgroup_lines() {
        let text = "9:name=systemd:/\n4:memory:/process_api/4d94\n2:cpu,cpuacct:/a\n0::/x\n";
        assert_eq!(
            proc_cgroup(text, Some("memory")).as_deref(),
            Some("/process_api/4d94")
        );
        assert_eq!(proc_cgroup(text, Some("cpuacct")).as_deref(), Some("/a"));
        assert_eq!(proc_cgroup(text, None).as_deref(), Some("/x"));
        assert_eq!(proc_cgroup(text, Some("pids")), None);
    }
}
