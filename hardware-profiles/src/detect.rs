//! What the machine is: its model string, MemTotal, CPU count and architecture, read
//! from a root path (`/` on a device, a fixture directory in tests), and the profile
//! that fits it.

use std::path::{Path, PathBuf};

use crate::quantity::Bytes;
use crate::{Profile, ProfileError};

/// The facts detection and the generic profile work from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineInfo {
    /// `/proc/device-tree/model` (ARM boards), else the DMI vendor and product
    /// (`/sys/class/dmi/id/{sys_vendor,product_name}`, x86), if either exists.
    pub model: Option<String>,
    /// MemTotal from `/proc/meminfo`.
    pub mem_total: Bytes,
    pub cpus: u32,
    /// GOARCH name: `amd64`, `arm64`, `arm`.
    pub arch: String,
}

/// The machine's facts could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("cannot read {path}: {source}; give --profile to skip detection")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} has no MemTotal line in kB; give --profile to skip detection")]
    MemInfo { path: PathBuf },
}

/// The running binary's architecture as Kubernetes (GOARCH) names it.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    }
}

/// MemTotal from the text of /proc/meminfo.
pub fn parse_meminfo(text: &str) -> Option<Bytes> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix("MemTotal:")?;
        let mut parts = rest.split_whitespace();
        let kb: u64 = parts.next()?.parse().ok()?;
        (parts.next()? == "kB").then_some(Bytes(kb.checked_mul(1024)?))
    })
}

/// A device-tree model string: NUL-terminated in the file.
pub fn clean_model(raw: &str) -> Option<String> {
    let model = raw.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    (!model.is_empty()).then(|| model.to_string())
}

/// The number of CPUs in a kernel CPU list such as `0-3,6`.
pub fn count_cpu_list(list: &str) -> Option<u32> {
    let mut n = 0u32;
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        n += match part.split_once('-') {
            Some((a, b)) => b.parse::<u32>().ok()?.checked_sub(a.parse().ok()?)? + 1,
            None => {
                part.parse::<u32>().ok()?;
                1
            }
        };
    }
    (n > 0).then_some(n)
}

impl MachineInfo {
    /// Reads the facts under `root` (`/` on a real machine). The architecture is the
    /// running binary's.
    pub fn from_root(root: &Path) -> Result<MachineInfo, DetectError> {
        let meminfo_path = root.join("proc/meminfo");
        let meminfo =
            std::fs::read_to_string(&meminfo_path).map_err(|source| DetectError::Read {
                path: meminfo_path.clone(),
                source,
            })?;
        let mem_total =
            parse_meminfo(&meminfo).ok_or(DetectError::MemInfo { path: meminfo_path })?;
        let read = |p: &str| std::fs::read_to_string(root.join(p)).ok();
        let model = read("proc/device-tree/model")
            .and_then(|m| clean_model(&m))
            .or_else(|| {
                let vendor = read("sys/class/dmi/id/sys_vendor").and_then(|v| clean_model(&v));
                let product = read("sys/class/dmi/id/product_name").and_then(|v| clean_model(&v));
                match (vendor, product) {
                    (Some(v), Some(p)) => Some(format!("{v} {p}")),
                    (v, p) => v.or(p),
                }
            });
        let cpus = read("sys/devices/system/cpu/online")
            .and_then(|l| count_cpu_list(&l))
            .or_else(|| {
                read("proc/cpuinfo")
                    .map(|c| c.lines().filter(|l| l.starts_with("processor")).count() as u32)
            })
            .filter(|n| *n > 0)
            .unwrap_or(1);
        Ok(MachineInfo {
            model,
            mem_total,
            cpus,
            arch: go_arch().to_string(),
        })
    }

    /// The built-in profile that fits this machine: its model string contains one of
    /// the profile's `detect.modelContains`, its MemTotal lies in the profile's range,
    /// and its architecture is one the profile lists. `None`: unknown hardware (the
    /// caller uses the generic profile).
    pub fn detect(&self) -> Option<Profile> {
        let model = self.model.as_deref()?;
        crate::builtin_profiles().into_iter().find(|p| {
            p.detect.as_ref().is_some_and(|d| {
                d.model_contains.iter().any(|m| model.contains(m.as_str()))
                    && (d.mem_total_min..=d.mem_total_max).contains(&self.mem_total)
            }) && p.hardware.architectures.contains(&self.arch)
        })
    }

    /// Checks that a profile can run on this machine: the architecture is one it
    /// lists, and the machine's memory holds its reservations with room for pods.
    pub fn check(&self, profile: &Profile) -> Result<(), ProfileError> {
        if !profile.hardware.architectures.contains(&self.arch) {
            return Err(ProfileError::Machine {
                name: profile.name.clone(),
                reason: format!(
                    "it is for {} and this machine is {}; pick a profile for {} or `generic`",
                    profile.hardware.architectures.join(", "),
                    self.arch,
                    self.arch
                ),
            });
        }
        let reserved = profile
            .system_reserved
            .memory
            .saturating_add(profile.kube_reserved.memory)
            .saturating_add(profile.hard_memory_threshold(self.mem_total));
        if reserved >= self.mem_total {
            return Err(ProfileError::Machine {
                name: profile.name.clone(),
                reason: format!(
                    "its reservations ({reserved}) take all of this machine's memory ({}); pick a profile for a smaller device or `generic`",
                    self.mem_total
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo() {
        let text = "MemTotal:        1917468 kB\nMemFree:          123 kB\n";
        assert_eq!(parse_meminfo(text), Some(Bytes(1_917_468 * 1024)));
        assert_eq!(parse_meminfo("MemFree: 1 kB\n"), None);
        assert_eq!(parse_meminfo("MemTotal: lots kB\n"), None);
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(count_cpu_list("0-3\n"), Some(4));
        assert_eq!(count_cpu_list("0"), Some(1));
        assert_eq!(count_cpu_list("0-1,4,6-7"), Some(5));
        assert_eq!(count_cpu_list("3-1"), None);
        assert_eq!(count_cpu_list(""), None);
    }

    #[test]
    fn model_strings_lose_their_nul() {
        assert_eq!(
            clean_model("Raspberry Pi 4 Model B Rev 1.4\0"),
            Some("Raspberry Pi 4 Model B Rev 1.4".to_string())
        );
        assert_eq!(clean_model("\0"), None);
    }
}
