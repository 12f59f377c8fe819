//! The profile file format, its parsing and its validation.
//!
//! A profile is TOML. Keys that the kubelet's KubeletConfiguration also has keep its
//! names and its value syntax (`systemReserved`, `evictionHard`, `"100Mi"`, `"10%"`);
//! kedge's own keys are camelCase too. Every table denies unknown keys, so a typo is an
//! error that names the key, the file and the line, never a silently ignored setting.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::ProfileError;
use crate::quantity::{Bytes, MilliCpu, QuantityError, Threshold, format_duration, parse_duration};

/// The architectures kedge builds the agent for, as Kubernetes (GOARCH) names them.
pub const ARCHITECTURES: [&str; 3] = ["amd64", "arm64", "arm"];

/// A validated hardware profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// The device class, e.g. `rpi-4-2gb`; the value of the node labels.
    pub name: String,
    pub description: String,
    pub hardware: Hardware,
    /// How to recognise the device; `None` when only `--profile` selects it.
    pub detect: Option<Detect>,
    /// What the agent's cgroup and containerd's cgroup are capped at.
    pub budgets: Budgets,
    pub system_reserved: Reserved,
    /// Reserved for the kube daemons: the agent, containerd and what they start
    /// (shims, CNI plugins). It covers both budgets.
    pub kube_reserved: Reserved,
    pub eviction_hard: BTreeMap<Signal, Threshold>,
    pub eviction_soft: BTreeMap<Signal, SoftThreshold>,
    pub max_pods: u32,
    pub image_gc_high_threshold_percent: u8,
    pub image_gc_low_threshold_percent: u8,
    pub container_log_max_size: Bytes,
    pub container_log_max_files: u32,
    pub tunnel: TunnelTimers,
    /// The most status reports the agent sends in one uplink batch.
    pub sync_batch_size: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Hardware {
    /// GOARCH names: `amd64`, `arm64`, `arm`.
    pub architectures: Vec<String>,
    pub cpus: u32,
    /// The memory the kernel reports on this device (MemTotal): less than the RAM on
    /// the box by the GPU's share and the kernel's own reservations. Budgets are
    /// checked against it.
    pub memory: Bytes,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Detect {
    /// The device matches when its model string contains one of these.
    pub model_contains: Vec<String>,
    /// ...and its MemTotal lies in this range (inclusive).
    pub mem_total_min: Bytes,
    pub mem_total_max: Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budgets {
    pub agent: Bytes,
    pub containerd: Bytes,
}

impl Budgets {
    pub fn total(&self) -> Bytes {
        self.agent.saturating_add(self.containerd)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reserved {
    pub memory: Bytes,
    pub cpu: MilliCpu,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SoftThreshold {
    pub threshold: Threshold,
    pub grace_period: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TunnelTimers {
    pub keepalive: Duration,
    pub backoff_cap: Duration,
}

/// An eviction signal, as the kubelet names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Signal {
    MemoryAvailable,
    NodefsAvailable,
    NodefsInodesFree,
    ImagefsAvailable,
}

impl Signal {
    pub const ALL: [Signal; 4] = [
        Signal::MemoryAvailable,
        Signal::NodefsAvailable,
        Signal::NodefsInodesFree,
        Signal::ImagefsAvailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory.available",
            Signal::NodefsAvailable => "nodefs.available",
            Signal::NodefsInodesFree => "nodefs.inodesFree",
            Signal::ImagefsAvailable => "imagefs.available",
        }
    }

    fn parse(name: &str) -> Option<Signal> {
        Signal::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---- the file format ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawProfile {
    name: String,
    description: String,
    hardware: RawHardware,
    detect: Option<RawDetect>,
    budgets: RawBudgets,
    kubelet: RawKubelet,
    tunnel: RawTunnel,
    sync: RawSync,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawHardware {
    architectures: Vec<String>,
    cpus: u32,
    memory: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawDetect {
    model_contains: Vec<String>,
    mem_total_min: String,
    mem_total_max: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawBudgets {
    agent: String,
    containerd: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawReserved {
    memory: String,
    cpu: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawKubelet {
    system_reserved: RawReserved,
    kube_reserved: RawReserved,
    eviction_hard: BTreeMap<String, String>,
    #[serde(default)]
    eviction_soft: BTreeMap<String, String>,
    #[serde(default)]
    eviction_soft_grace_period: BTreeMap<String, String>,
    max_pods: u32,
    #[serde(rename = "imageGCHighThresholdPercent")]
    image_gc_high_threshold_percent: u8,
    #[serde(rename = "imageGCLowThresholdPercent")]
    image_gc_low_threshold_percent: u8,
    container_log_max_size: String,
    container_log_max_files: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawTunnel {
    keepalive: String,
    backoff_cap: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSync {
    batch_size: u32,
}

impl Profile {
    /// Parses and validates a profile. `source` names it in errors (a path, or
    /// `profiles/<name>.toml` for a built-in one).
    pub fn parse(text: &str, source: &str) -> Result<Profile, ProfileError> {
        let raw: RawProfile = toml::from_str(text).map_err(|e| ProfileError::Parse {
            source_name: source.to_string(),
            message: toml_message(text, &e),
        })?;
        let profile = Profile::from_raw(raw, source)?;
        profile.validate(source)?;
        Ok(profile)
    }

    fn from_raw(raw: RawProfile, source: &str) -> Result<Profile, ProfileError> {
        fn q<T>(source: &str, key: &str, r: Result<T, QuantityError>) -> Result<T, ProfileError> {
            r.map_err(|error| ProfileError::Quantity {
                source_name: source.to_string(),
                key: key.to_string(),
                error,
            })
        }
        let mem = |key: &str, v: &str| q(source, key, Bytes::parse(v));
        let cpu = |key: &str, v: &str| q(source, key, MilliCpu::parse(v));
        let dur = |key: &str, v: &str| q(source, key, parse_duration(v));
        let signal = |table: &str, name: &str| {
            Signal::parse(name).ok_or_else(|| ProfileError::Invalid {
                source_name: source.to_string(),
                reason: format!(
                    "kubelet.{table}: unknown eviction signal {name:?}; use one of {}",
                    Signal::ALL.map(Signal::as_str).join(", ")
                ),
            })
        };
        let k = &raw.kubelet;
        let mut eviction_hard = BTreeMap::new();
        for (name, value) in &k.eviction_hard {
            let key = format!("kubelet.evictionHard.{name:?}");
            eviction_hard.insert(
                signal("evictionHard", name)?,
                q(source, &key, Threshold::parse(value))?,
            );
        }
        let mut eviction_soft = BTreeMap::new();
        for (name, value) in &k.eviction_soft {
            let s = signal("evictionSoft", name)?;
            let threshold = q(
                source,
                &format!("kubelet.evictionSoft.{name:?}"),
                Threshold::parse(value),
            )?;
            let Some(grace) = k.eviction_soft_grace_period.get(name) else {
                return Err(ProfileError::Invalid {
                    source_name: source.to_string(),
                    reason: format!(
                        "kubelet.evictionSoft.{name:?} has no grace period; add it to kubelet.evictionSoftGracePeriod"
                    ),
                });
            };
            let grace_period = dur(&format!("kubelet.evictionSoftGracePeriod.{name:?}"), grace)?;
            eviction_soft.insert(
                s,
                SoftThreshold {
                    threshold,
                    grace_period,
                },
            );
        }
        for name in k.eviction_soft_grace_period.keys() {
            signal("evictionSoftGracePeriod", name)?;
            if !k.eviction_soft.contains_key(name) {
                return Err(ProfileError::Invalid {
                    source_name: source.to_string(),
                    reason: format!(
                        "kubelet.evictionSoftGracePeriod.{name:?} has no soft threshold; add it to kubelet.evictionSoft or remove the grace period"
                    ),
                });
            }
        }
        Ok(Profile {
            detect: match &raw.detect {
                None => None,
                Some(d) => Some(Detect {
                    model_contains: d.model_contains.clone(),
                    mem_total_min: mem("detect.memTotalMin", &d.mem_total_min)?,
                    mem_total_max: mem("detect.memTotalMax", &d.mem_total_max)?,
                }),
            },
            hardware: Hardware {
                architectures: raw.hardware.architectures.clone(),
                cpus: raw.hardware.cpus,
                memory: mem("hardware.memory", &raw.hardware.memory)?,
            },
            budgets: Budgets {
                agent: mem("budgets.agent", &raw.budgets.agent)?,
                containerd: mem("budgets.containerd", &raw.budgets.containerd)?,
            },
            system_reserved: Reserved {
                memory: mem("kubelet.systemReserved.memory", &k.system_reserved.memory)?,
                cpu: cpu("kubelet.systemReserved.cpu", &k.system_reserved.cpu)?,
            },
            kube_reserved: Reserved {
                memory: mem("kubelet.kubeReserved.memory", &k.kube_reserved.memory)?,
                cpu: cpu("kubelet.kubeReserved.cpu", &k.kube_reserved.cpu)?,
            },
            eviction_hard,
            eviction_soft,
            max_pods: k.max_pods,
            image_gc_high_threshold_percent: k.image_gc_high_threshold_percent,
            image_gc_low_threshold_percent: k.image_gc_low_threshold_percent,
            container_log_max_size: mem("kubelet.containerLogMaxSize", &k.container_log_max_size)?,
            container_log_max_files: k.container_log_max_files,
            tunnel: TunnelTimers {
                keepalive: dur("tunnel.keepalive", &raw.tunnel.keepalive)?,
                backoff_cap: dur("tunnel.backoffCap", &raw.tunnel.backoff_cap)?,
            },
            sync_batch_size: raw.sync.batch_size,
            name: raw.name,
            description: raw.description,
        })
    }

    /// Checks that the numbers make sense together. `source` names the profile in
    /// errors.
    pub fn validate(&self, source: &str) -> Result<(), ProfileError> {
        let fail = |reason: String| {
            Err(ProfileError::Invalid {
                source_name: source.to_string(),
                reason,
            })
        };
        let valid_name = !self.name.is_empty()
            && self.name.len() <= 63
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !self.name.starts_with('-')
            && !self.name.ends_with('-');
        if !valid_name {
            return fail(format!(
                "name {:?} must be a label value: lowercase letters, digits and '-', at most 63",
                self.name
            ));
        }
        let hw = &self.hardware;
        if hw.architectures.is_empty() {
            return fail(format!(
                "hardware.architectures is empty; list one or more of {}",
                ARCHITECTURES.join(", ")
            ));
        }
        if let Some(a) = hw
            .architectures
            .iter()
            .find(|a| !ARCHITECTURES.contains(&a.as_str()))
        {
            return fail(format!(
                "hardware.architectures: unknown architecture {a:?}; use {}",
                ARCHITECTURES.join(", ")
            ));
        }
        if hw.cpus == 0 {
            return fail("hardware.cpus must be at least 1".into());
        }
        if let Some(d) = &self.detect {
            if d.model_contains.is_empty() || d.model_contains.iter().any(|m| m.trim().is_empty()) {
                return fail(
                    "detect.modelContains must list one or more non-empty model strings".into(),
                );
            }
            if d.mem_total_min > d.mem_total_max {
                return fail(format!(
                    "detect.memTotalMin {} is more than detect.memTotalMax {}",
                    d.mem_total_min, d.mem_total_max
                ));
            }
        }
        let b = &self.budgets;
        if b.agent < Bytes::mib(16) {
            return fail(format!(
                "budgets.agent {} is under 16Mi: the agent cannot start in it",
                b.agent
            ));
        }
        if b.containerd < Bytes::mib(24) {
            return fail(format!(
                "budgets.containerd {} is under 24Mi: containerd cannot start in it",
                b.containerd
            ));
        }
        if self.kube_reserved.memory < b.total() {
            return fail(format!(
                "kubelet.kubeReserved.memory {} is less than budgets.agent {} plus budgets.containerd {} ({}): kubeReserved is what the kube daemons may use, so raise it to at least {}",
                self.kube_reserved.memory,
                b.agent,
                b.containerd,
                b.total(),
                b.total()
            ));
        }
        let Some(hard_memory) = self.eviction_hard.get(&Signal::MemoryAvailable) else {
            return fail(
                "kubelet.evictionHard has no \"memory.available\"; every profile needs one (the kubelet's default is 100Mi)".into(),
            );
        };
        let hard = hard_memory.resolve(hw.memory);
        let reserved = self
            .system_reserved
            .memory
            .saturating_add(self.kube_reserved.memory)
            .saturating_add(hard);
        if reserved >= hw.memory {
            return fail(format!(
                "the reservations leave nothing for pods: kubelet.systemReserved.memory {} + kubelet.kubeReserved.memory {} (which holds budgets.agent {} and budgets.containerd {}) + kubelet.evictionHard memory.available {} = {}, but hardware.memory is {}; lower them or raise hardware.memory",
                self.system_reserved.memory,
                self.kube_reserved.memory,
                b.agent,
                b.containerd,
                hard,
                reserved,
                hw.memory
            ));
        }
        let cpu_reserved = self.system_reserved.cpu.0 + self.kube_reserved.cpu.0;
        if cpu_reserved >= u64::from(hw.cpus) * 1000 {
            return fail(format!(
                "kubelet.systemReserved.cpu {} + kubelet.kubeReserved.cpu {} leave no CPU for pods on {} CPUs",
                self.system_reserved.cpu, self.kube_reserved.cpu, hw.cpus
            ));
        }
        for (signal, soft) in &self.eviction_soft {
            let Some(hard) = self.eviction_hard.get(signal) else {
                continue;
            };
            let comparable = match (soft.threshold, *hard) {
                (Threshold::Percent(s), Threshold::Percent(h)) => Some(s <= h),
                (Threshold::Quantity(s), Threshold::Quantity(h)) => Some(s <= h),
                _ if *signal == Signal::MemoryAvailable => {
                    Some(soft.threshold.resolve(hw.memory) <= hard.resolve(hw.memory))
                }
                _ => None,
            };
            if comparable == Some(true) {
                return fail(format!(
                    "kubelet.evictionSoft {signal} {} must be more than kubelet.evictionHard {signal} {}: the soft threshold is the early warning, crossed before the hard one",
                    soft.threshold, hard
                ));
            }
            if soft.grace_period.is_zero() {
                return fail(format!(
                    "kubelet.evictionSoftGracePeriod {signal} must be more than 0s; use evictionHard for an immediate threshold"
                ));
            }
        }
        if !(1..=250).contains(&self.max_pods) {
            return fail(format!(
                "kubelet.maxPods {} must be between 1 and 250",
                self.max_pods
            ));
        }
        let (high, low) = (
            self.image_gc_high_threshold_percent,
            self.image_gc_low_threshold_percent,
        );
        if high > 100 || low >= high {
            return fail(format!(
                "kubelet.imageGCLowThresholdPercent {low} must be less than kubelet.imageGCHighThresholdPercent {high}, which is at most 100"
            ));
        }
        if self.container_log_max_size < Bytes(64 * 1024) {
            return fail(format!(
                "kubelet.containerLogMaxSize {} is under 64Ki",
                self.container_log_max_size
            ));
        }
        if self.container_log_max_files < 2 {
            return fail(format!(
                "kubelet.containerLogMaxFiles {} must be at least 2 (the kubelet's rule: the live file and one rotated)",
                self.container_log_max_files
            ));
        }
        let t = &self.tunnel;
        if t.keepalive < Duration::from_secs(1) || t.keepalive > Duration::from_secs(30) {
            return fail(format!(
                "tunnel.keepalive {} must be between 1s and 30s (the tunnel's idle timeout is 45s, and carrier NATs forget a UDP flow after about 30s)",
                format_duration(t.keepalive)
            ));
        }
        if t.backoff_cap < Duration::from_secs(1) || t.backoff_cap > Duration::from_secs(3600) {
            return fail(format!(
                "tunnel.backoffCap {} must be between 1s and 1h",
                format_duration(t.backoff_cap)
            ));
        }
        if !(1..=10_000).contains(&self.sync_batch_size) {
            return fail(format!(
                "sync.batchSize {} must be between 1 and 10000",
                self.sync_batch_size
            ));
        }
        Ok(())
    }

    /// The hard memory.available threshold in bytes, for a given capacity.
    pub fn hard_memory_threshold(&self, capacity: Bytes) -> Bytes {
        self.eviction_hard
            .get(&Signal::MemoryAvailable)
            .map(|t| t.resolve(capacity))
            .unwrap_or_default()
    }
}

/// A TOML error as one line: where (line and column) and what (toml's own message,
/// which names an unknown key and the keys allowed).
fn toml_message(text: &str, err: &toml::de::Error) -> String {
    let message = err.message().trim().to_string();
    match err.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}
