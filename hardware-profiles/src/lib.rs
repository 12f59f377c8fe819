//! Hardware profiles: the device classes kedge knows, their memory budgets and timers,
//! validated, and detection of the class a machine belongs to.
//!
//! - [`Profile`]: one device class, parsed from `profiles/<name>.toml` and validated
//!   ([`Profile::parse`]). The built-in files are compiled in ([`builtin_profiles`]).
//! - [`MachineInfo`]: a machine's model, MemTotal, CPUs and architecture, read from a
//!   root path so that tests use fixtures; [`MachineInfo::detect`] finds its profile.
//! - [`resolve`]: what `kedge-agent --profile <name|path>` (or detection) gives.
//! - [`Profile::allocatable`]: the kubelet's node allocatable formula.
//! - [`Profile::node_labels`] and [`Profile::systemd_drop_in`].
//! - [`table::markdown`]: docs/hardware-profiles.md, generated from the files.
//!
//! Architecture invariant: this crate does no I/O but reading the files it is pointed
//! at, and depends on no other kedge crate, no async runtime and no Kubernetes type
//! crate: the agent, the packaging scripts and the soak tests all read it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub mod detect;
pub mod generic;
pub mod profile;
pub mod quantity;
pub mod table;

pub use detect::{DetectError, MachineInfo, go_arch};
pub use profile::{
    Budgets, Detect, Hardware, Profile, Reserved, Signal, SoftThreshold, TunnelTimers,
};
pub use quantity::{Bytes, MilliCpu, QuantityError, Threshold};

/// The label naming a node's profile.
pub const PROFILE_LABEL: &str = "kedge.io/profile";
/// The well-known instance-type label; kedge puts the profile name in it.
pub const INSTANCE_TYPE_LABEL: &str = "node.kubernetes.io/instance-type";
/// The well-known architecture label.
pub const ARCH_LABEL: &str = "kubernetes.io/arch";
/// The name of the profile derived from the machine.
pub const GENERIC: &str = "generic";

/// The profile files compiled into every binary that uses this crate.
pub const BUILTIN: [(&str, &str); 9] = [
    ("rpi-zero-2w", include_str!("../profiles/rpi-zero-2w.toml")),
    ("rpi-3b", include_str!("../profiles/rpi-3b.toml")),
    ("rpi-4-2gb", include_str!("../profiles/rpi-4-2gb.toml")),
    ("rpi-4-8gb", include_str!("../profiles/rpi-4-8gb.toml")),
    ("rpi-5-4gb", include_str!("../profiles/rpi-5-4gb.toml")),
    (
        "jetson-nano-4gb",
        include_str!("../profiles/jetson-nano-4gb.toml"),
    ),
    (
        "intel-nuc-16gb",
        include_str!("../profiles/intel-nuc-16gb.toml"),
    ),
    (
        "5g-edge-zone",
        include_str!("../profiles/5g-edge-zone.toml"),
    ),
    (GENERIC, include_str!("../profiles/generic.toml")),
];

/// A profile could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// TOML syntax, a missing key, a wrong type or an unknown key.
    #[error("profile {source_name}: {message}")]
    Parse {
        source_name: String,
        message: String,
    },
    #[error("profile {source_name}: {key}: {error}")]
    Quantity {
        source_name: String,
        key: String,
        error: QuantityError,
    },
    #[error("profile {source_name}: {reason}")]
    Invalid { source_name: String, reason: String },
    #[error("cannot read the profile file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "unknown profile {name:?}: give one of {known}, or the path of a profile file (`kedge-agent profile list` shows them)"
    )]
    Unknown { name: String, known: String },
    #[error("profile {name} does not fit this machine: {reason}")]
    Machine { name: String, reason: String },
    #[error(transparent)]
    Detect(#[from] DetectError),
}

/// The built-in profiles, parsed. They are tested to parse and validate, so this
/// cannot fail in a released binary.
pub fn builtin_profiles() -> Vec<Profile> {
    BUILTIN
        .iter()
        .filter_map(|(name, text)| Profile::parse(text, &builtin_source(name)).ok())
        .collect()
}

fn builtin_source(name: &str) -> String {
    format!("profiles/{name}.toml")
}

/// The built-in profile `name`, as written in its file (for `generic`, the template
/// before it is derived for a machine: see [`generic::derive`]).
pub fn builtin(name: &str) -> Result<Profile, ProfileError> {
    let Some((_, text)) = BUILTIN.iter().find(|(n, _)| *n == name) else {
        return Err(ProfileError::Unknown {
            name: name.to_string(),
            known: BUILTIN.map(|(n, _)| n).join(", "),
        });
    };
    Profile::parse(text, &builtin_source(name))
}

/// Reads and validates a profile file.
pub fn load_file(path: &Path) -> Result<Profile, ProfileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Profile::parse(&text, &path.display().to_string())
}

/// How the profile in force was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `--profile <name>`.
    Named,
    /// `--profile <path>`.
    File,
    /// Detected from the model and memory.
    Detected,
    /// Unknown hardware: the generic profile derived from the machine.
    Generic,
}

/// The profile in force for `spec` (`--profile`: a built-in name or a file path; a
/// path has a `/` or ends in `.toml`), or detected from `machine` when `spec` is
/// `None`. The result is checked against the machine ([`MachineInfo::check`]).
pub fn resolve(
    spec: Option<&str>,
    machine: &MachineInfo,
) -> Result<(Profile, Source), ProfileError> {
    let (profile, source) = match spec {
        Some(GENERIC) => (generic::derive(&builtin(GENERIC)?, machine)?, Source::Named),
        Some(s) if s.contains('/') || s.ends_with(".toml") => {
            (load_file(Path::new(s))?, Source::File)
        }
        Some(name) => (builtin(name)?, Source::Named),
        None => match machine.detect() {
            Some(p) => (p, Source::Detected),
            None => (
                generic::derive(&builtin(GENERIC)?, machine)?,
                Source::Generic,
            ),
        },
    };
    machine.check(&profile)?;
    Ok((profile, source))
}

/// A node's capacity: what the machine has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    pub memory: Bytes,
    pub cpu: MilliCpu,
    pub pods: u32,
}

/// What the scheduler may place on the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocatable {
    pub memory: Bytes,
    pub cpu: MilliCpu,
    pub pods: u32,
}

impl Profile {
    /// The node's capacity on a machine: its memory and CPUs, and maxPods pods.
    pub fn capacity(&self, machine: &MachineInfo) -> Capacity {
        Capacity {
            memory: machine.mem_total,
            cpu: MilliCpu(u64::from(machine.cpus) * 1000),
            pods: self.max_pods,
        }
    }

    /// The kubelet's formula: allocatable = capacity − systemReserved − kubeReserved −
    /// the hard eviction threshold (memory only; CPU has no eviction threshold).
    /// Never negative.
    pub fn allocatable(&self, capacity: &Capacity) -> Allocatable {
        Allocatable {
            memory: capacity
                .memory
                .saturating_sub(self.system_reserved.memory)
                .saturating_sub(self.kube_reserved.memory)
                .saturating_sub(self.hard_memory_threshold(capacity.memory)),
            cpu: MilliCpu(
                capacity
                    .cpu
                    .0
                    .saturating_sub(self.system_reserved.cpu.0)
                    .saturating_sub(self.kube_reserved.cpu.0),
            ),
            pods: capacity.pods.min(self.max_pods),
        }
    }

    /// The memory limit of the `kubepods` cgroup: capacity − systemReserved −
    /// kubeReserved. As the kubelet enforces node allocatable, the hard eviction
    /// threshold is not taken off, so that eviction acts before the kernel's OOM
    /// killer does.
    pub fn pods_cgroup_limit(&self, capacity: &Capacity) -> Bytes {
        capacity
            .memory
            .saturating_sub(self.system_reserved.memory)
            .saturating_sub(self.kube_reserved.memory)
    }

    /// The labels the node carries: `kedge.io/profile`,
    /// `node.kubernetes.io/instance-type` (both the profile name) and
    /// `kubernetes.io/arch` (`arch`, the running binary's).
    pub fn node_labels(&self, arch: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (PROFILE_LABEL.to_string(), self.name.clone()),
            (INSTANCE_TYPE_LABEL.to_string(), self.name.clone()),
            (ARCH_LABEL.to_string(), arch.to_string()),
        ])
    }

    /// The `MemoryMax=` of the agent's systemd unit: the agent's budget plus
    /// containerd's, since the agent runs its containerd as a child in the unit.
    pub fn unit_memory_max(&self) -> Bytes {
        self.budgets.total()
    }

    /// `MemoryHigh=`: where the kernel starts reclaiming hard, a bit under the max
    /// (a tenth of it, at least 8Mi), so the unit is throttled before it is killed.
    pub fn unit_memory_high(&self) -> Bytes {
        let max = self.unit_memory_max();
        let gap = Bytes((max.0 / 10).max(Bytes::mib(8).0));
        Bytes::mib(max.saturating_sub(gap).as_mib())
    }

    /// A readable listing of every setting (`kedge-agent profile show`), with the
    /// allocatable it gives on a machine of the profile's own size.
    pub fn summary(&self) -> String {
        use quantity::format_duration;
        let thresholds = |soft: bool| -> String {
            let mut parts = Vec::new();
            if soft {
                for (s, t) in &self.eviction_soft {
                    parts.push(format!(
                        "{s}<{} ({})",
                        t.threshold,
                        format_duration(t.grace_period)
                    ));
                }
            } else {
                for (s, t) in &self.eviction_hard {
                    parts.push(format!("{s}<{t}"));
                }
            }
            if parts.is_empty() {
                "none".into()
            } else {
                parts.join(", ")
            }
        };
        let capacity = Capacity {
            memory: self.hardware.memory,
            cpu: MilliCpu(u64::from(self.hardware.cpus) * 1000),
            pods: self.max_pods,
        };
        let alloc = self.allocatable(&capacity);
        format!(
            "name: {}\n\
             description: {}\n\
             architectures: {}\n\
             cpus: {}\n\
             memory: {}\n\
             budgets: agent {}, containerd {}\n\
             systemReserved: memory {}, cpu {}\n\
             kubeReserved: memory {}, cpu {}\n\
             evictionHard: {}\n\
             evictionSoft: {}\n\
             allocatable: memory {}, cpu {}, pods {}\n\
             kubepods cgroup limit: {}\n\
             maxPods: {}\n\
             imageGC: high {}%, low {}%\n\
             containerLog: {} x {} files\n\
             tunnel: keepalive {}, backoffCap {}\n\
             sync: batchSize {}\n",
            self.name,
            self.description,
            self.hardware.architectures.join(", "),
            self.hardware.cpus,
            self.hardware.memory,
            self.budgets.agent,
            self.budgets.containerd,
            self.system_reserved.memory,
            self.system_reserved.cpu,
            self.kube_reserved.memory,
            self.kube_reserved.cpu,
            thresholds(false),
            thresholds(true),
            alloc.memory,
            alloc.cpu,
            alloc.pods,
            self.pods_cgroup_limit(&capacity),
            self.max_pods,
            self.image_gc_high_threshold_percent,
            self.image_gc_low_threshold_percent,
            self.container_log_max_size,
            self.container_log_max_files,
            format_duration(self.tunnel.keepalive),
            format_duration(self.tunnel.backoff_cap),
            self.sync_batch_size,
        )
    }

    /// A systemd drop-in for kedge-agent.service
    /// (`/etc/systemd/system/kedge-agent.service.d/profile.conf`).
    pub fn systemd_drop_in(&self) -> String {
        let mib = |b: Bytes| format!("{}M", b.as_mib());
        format!(
            "# kedge-agent.service drop-in for the hardware profile {name}.\n\
             # Generated by `kedge-agent profile show {name} --systemd`; do not edit.\n\
             # MemoryMax is the agent's budget ({agent}) plus containerd's ({containerd}),\n\
             # which runs as the agent's child; OOMScoreAdjust matches the kubelet's own.\n\
             [Service]\n\
             MemoryAccounting=yes\n\
             MemoryHigh={high}\n\
             MemoryMax={max}\n\
             OOMScoreAdjust=-999\n",
            name = self.name,
            agent = self.budgets.agent,
            containerd = self.budgets.containerd,
            high = mib(self.unit_memory_high()),
            max = mib(self.unit_memory_max()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(model: Option<&str>, mem_kib: u64, arch: &str) -> MachineInfo {
        MachineInfo {
            model: model.map(str::to_string),
            mem_total: Bytes(mem_kib * 1024),
            cpus: 4,
            arch: arch.to_string(),
        }
    }

    #[test]
    fn allocatable_is_the_kubelets_formula() {
        let p = builtin("rpi-4-2gb").unwrap();
        let m = machine(None, 1_917_468, "arm64");
        let cap = p.capacity(&m);
        let alloc = p.allocatable(&cap);
        let expected = m.mem_total.0
            - p.system_reserved.memory.0
            - p.kube_reserved.memory.0
            - p.hard_memory_threshold(m.mem_total).0;
        assert_eq!(alloc.memory, Bytes(expected));
        assert_eq!(
            alloc.cpu.0,
            4000 - p.system_reserved.cpu.0 - p.kube_reserved.cpu.0
        );
        assert_eq!(alloc.pods, p.max_pods);
        assert_eq!(
            p.pods_cgroup_limit(&cap).0,
            expected + p.hard_memory_threshold(m.mem_total).0
        );
        // Never negative.
        let tiny = Capacity {
            memory: Bytes::mib(10),
            cpu: MilliCpu(100),
            pods: 1,
        };
        assert_eq!(p.allocatable(&tiny).memory, Bytes(0));
        assert_eq!(p.allocatable(&tiny).cpu, MilliCpu(0));
    }

    #[test]
    fn labels() {
        let p = builtin("rpi-zero-2w").unwrap();
        let l = p.node_labels("arm");
        assert_eq!(l[PROFILE_LABEL], "rpi-zero-2w");
        assert_eq!(l[INSTANCE_TYPE_LABEL], "rpi-zero-2w");
        assert_eq!(l[ARCH_LABEL], "arm");
    }

    #[test]
    fn the_drop_in_caps_the_unit_at_both_budgets() {
        let p = builtin("rpi-zero-2w").unwrap();
        let text = p.systemd_drop_in();
        let max = p.budgets.agent.as_mib() + p.budgets.containerd.as_mib();
        assert!(text.contains(&format!("\nMemoryMax={max}M\n")), "{text}");
        let high = p.unit_memory_high().as_mib();
        assert!(high < max && high >= max - max / 10 - 8, "{high} vs {max}");
        assert!(text.contains(&format!("\nMemoryHigh={high}M\n")), "{text}");
        assert!(text.contains("[Service]\n"));
    }

    #[test]
    fn resolve_names_paths_and_unknowns() {
        let m = machine(None, 24_683_784, "amd64");
        let (p, s) = resolve(Some("intel-nuc-16gb"), &m).unwrap();
        assert_eq!((p.name.as_str(), s), ("intel-nuc-16gb", Source::Named));
        let (p, s) = resolve(None, &m).unwrap();
        assert_eq!((p.name.as_str(), s), ("generic", Source::Generic));
        let err = resolve(Some("rpi-6"), &m).unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown profile \"rpi-6\": give one of rpi-zero-2w, rpi-3b, rpi-4-2gb, rpi-4-8gb, rpi-5-4gb, jetson-nano-4gb, intel-nuc-16gb, 5g-edge-zone, generic, or the path of a profile file (`kedge-agent profile list` shows them)"
        );
        let err = resolve(Some("rpi-4-2gb"), &m).unwrap_err().to_string();
        assert_eq!(
            err,
            "profile rpi-4-2gb does not fit this machine: it is for arm64, arm and this machine is amd64; pick a profile for amd64 or `generic`"
        );
        let err = resolve(Some("/nonexistent/p.toml"), &m)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("cannot read the profile file /nonexistent/p.toml: "),
            "{err}"
        );
    }
}
