//! cgroupfs, v1 and v2, behind one small trait.
//!
//! A cgroup is named by a relative path (`kubepods/burstable/pod<uid>`) under the
//! cgroupfs root. On v1 it exists once per controller hierarchy
//! (`<root>/memory/<path>`, `<root>/cpu/<path>`, …); on v2 once
//! (`<root>/<path>`). Values are written the way the kernel reads them; the writes
//! go straight to the kernel's files (there is nothing to make atomic: each write
//! is one kernel call that takes or fails whole).

use std::fmt::Debug;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use tracing::debug;

use crate::CgroupError;
use crate::stats::{self, MemoryStats, Psi};

/// A limit that may be "no limit".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Max,
    Value(u64),
}

impl Limit {
    pub fn value(self) -> Option<u64> {
        match self {
            Limit::Max => None,
            Limit::Value(v) => Some(v),
        }
    }
}

/// What to set on a cgroup. `None` leaves a setting as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// v1 memory.limit_in_bytes (and memory.memsw.limit_in_bytes, so no swap, where it
    /// exists); v2 memory.max (and memory.swap.max 0, where it exists).
    pub memory_max: Option<Limit>,
    /// v2 memory.high: the kernel reclaims hard above it. v1 has no such knob.
    pub memory_high: Option<Limit>,
    /// v1 cpu.shares (2..=262144); v2 cpu.weight, converted as runc converts it.
    pub cpu_shares: Option<u64>,
    /// CPU time per period, in microseconds: v1 cpu.cfs_quota_us, v2 cpu.max.
    pub cpu_quota: Option<Limit>,
    /// The period of the quota, in microseconds (the kubelet's is 100000).
    pub cpu_period: Option<u64>,
}

/// cgroupfs operations kedge needs, on cgroups named by relative paths.
pub trait Driver: Debug + Send + Sync {
    fn version(&self) -> crate::Version;
    /// The cgroupfs root this driver works under.
    fn root(&self) -> &Path;
    /// Creates the cgroup and its ancestors (idempotent).
    fn create(&self, path: &str) -> Result<(), CgroupError>;
    fn exists(&self, path: &str) -> bool;
    /// Writes the settings in `resources`.
    fn apply(&self, path: &str, resources: &Resources) -> Result<(), CgroupError>;
    /// Removes the cgroup and every cgroup below it. Fails (EBUSY) while a process
    /// is still in one of them. Removing a cgroup that does not exist is no error.
    fn remove(&self, path: &str) -> Result<(), CgroupError>;
    /// Moves a process (all its threads) into the cgroup.
    fn add_process(&self, path: &str, pid: u32) -> Result<(), CgroupError>;
    /// The processes in the cgroup itself (not below it).
    fn processes(&self, path: &str) -> Result<Vec<u32>, CgroupError>;
    fn memory_stats(&self, path: &str) -> Result<MemoryStats, CgroupError>;
    /// Memory pressure (PSI), where the kernel reports it for the cgroup (v2).
    fn memory_pressure(&self, path: &str) -> Result<Option<Psi>, CgroupError>;
    /// The names of the cgroup's child cgroups (one path component each); none for
    /// a cgroup that does not exist.
    fn children(&self, path: &str) -> Result<Vec<String>, CgroupError>;
    /// The root cgroup's memory, where the kernel accounts it there (v1: the whole
    /// machine's usage and page cache). `None` on v2, whose root has no
    /// memory.current: read /proc/meminfo instead.
    fn root_memory_stats(&self) -> Result<Option<MemoryStats>, CgroupError>;
    /// The most memory the cgroup ever held (v1 memory.max_usage_in_bytes, v2
    /// memory.peak); `None` where the kernel does not keep it (v2 before 5.19).
    fn memory_peak(&self, path: &str) -> Result<Option<u64>, CgroupError>;
    /// Moves a process back into the cgroups a `/proc/<pid>/cgroup` text names (the
    /// ones it was in before kedge moved it), controller by controller on v1.
    fn return_process(&self, pid: u32, proc_cgroup: &str) -> Result<(), CgroupError>;
    /// The `cgroup.procs` files a process writes its pid into to join the cgroup
    /// (one per mounted controller on v1), for a launcher that joins it before it
    /// execs the real program.
    fn procs_files(&self, path: &str) -> Result<Vec<PathBuf>, CgroupError>;
}

pub(crate) fn check_name(path: &str) -> Result<(), CgroupError> {
    let bad = |reason| {
        Err(CgroupError::InvalidName {
            name: path.to_string(),
            reason,
        })
    };
    if path.starts_with('/') {
        return bad("it must be relative to the cgroup root");
    }
    if path
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return bad("it must not have empty, '.' or '..' components");
    }
    Ok(())
}

pub(crate) fn read(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path).map_err(|source| CgroupError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    debug!(path = %path.display(), value, "cgroup write");
    std::fs::write(path, value).map_err(|source| CgroupError::Io {
        action: "write",
        path: path.to_path_buf(),
        source,
    })
}

fn mkdir(path: &Path) -> Result<(), CgroupError> {
    std::fs::create_dir_all(path).map_err(|source| CgroupError::Io {
        action: "create",
        path: path.to_path_buf(),
        source,
    })
}

/// rmdir, children first. cgroupfs lets a directory go with its control files in
/// it; a fixture directory (plain files) has them removed first.
fn remove_tree(dir: &Path) -> Result<(), CgroupError> {
    let io = |source, path: &Path| CgroupError::Io {
        action: "remove",
        path: path.to_path_buf(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(e, dir)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io(e, dir))?;
        if entry.file_type().map_err(|e| io(e, dir))?.is_dir() {
            remove_tree(&entry.path())?;
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == ErrorKind::DirectoryNotEmpty => {
            for entry in std::fs::read_dir(dir).map_err(|e| io(e, dir))? {
                let entry = entry.map_err(|e| io(e, dir))?;
                std::fs::remove_file(entry.path()).map_err(|e| io(e, &entry.path()))?;
            }
            std::fs::remove_dir(dir).map_err(|e| io(e, dir))
        }
        Err(e) => Err(io(e, dir)),
    }
}

/// The sub-directories of `dir`, by name; none when `dir` does not exist.
fn subdirs(dir: &Path) -> Result<Vec<String>, CgroupError> {
    let io = |source| CgroupError::Io {
        action: "list",
        path: dir.to_path_buf(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io)?;
        if entry.file_type().map_err(io)?.is_dir() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// A number from a one-line cgroup file.
fn read_number(path: &Path) -> Result<u64, CgroupError> {
    let text = read(path)?;
    text.trim().parse().map_err(|_| CgroupError::Parse {
        path: path.to_path_buf(),
        what: "a number",
        text,
    })
}

/// `/proc/<pid>/cgroup` names a cgroup relative to the hierarchy's root, with a
/// leading `/`; "/" is the root itself.
fn proc_path(path: &str) -> Result<String, CgroupError> {
    let relative = path.trim_start_matches('/');
    if !relative.is_empty() {
        check_name(relative)?;
    }
    Ok(relative.to_string())
}

fn parse_procs(path: &Path, text: &str) -> Result<Vec<u32>, CgroupError> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.trim().parse().map_err(|_| CgroupError::Parse {
                path: path.to_path_buf(),
                what: "a pid",
                text: l.to_string(),
            })
        })
        .collect()
}

/// runc's conversion of cpu.shares (2..=262144) to cpu.weight (1..=10000).
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 100;
    }
    1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142
}

// ---- v1 ----

/// The legacy hierarchies: one mount per controller under the root.
#[derive(Debug, Clone)]
pub struct V1 {
    root: PathBuf,
}

/// The v1 controllers kedge creates its cgroups in (those mounted). runc creates the
/// container's cgroup in the others itself.
pub const V1_CONTROLLERS: [&str; 4] = ["memory", "cpu", "cpuacct", "pids"];

/// v1 reports "no limit" as the largest page-aligned value; anything this large is
/// no limit.
const V1_UNLIMITED: u64 = 1 << 62;

impl V1 {
    pub fn new(root: &Path) -> V1 {
        V1 {
            root: root.to_path_buf(),
        }
    }

    /// `<root>/<controller>/<path>`.
    pub fn dir(&self, controller: &str, path: &str) -> PathBuf {
        self.root.join(controller).join(path)
    }

    /// Every hierarchy mounted under the root (`cpu,cpuacct` and the like are
    /// symlinks to one of them, and skipped).
    fn hierarchies(&self) -> Result<Vec<PathBuf>, CgroupError> {
        Ok(subdirs(&self.root)?
            .into_iter()
            .map(|name| self.root.join(name))
            .filter(|dir| !dir.is_symlink())
            .collect())
    }

    fn mounted(&self) -> impl Iterator<Item = &'static str> + '_ {
        V1_CONTROLLERS
            .into_iter()
            .filter(|c| self.root.join(c).is_dir())
    }

    fn set_memory(&self, dir: &Path, limit: Limit) -> Result<(), CgroupError> {
        let value = match limit {
            Limit::Max => "-1".to_string(),
            Limit::Value(v) => v.to_string(),
        };
        let mem = dir.join("memory.limit_in_bytes");
        let memsw = dir.join("memory.memsw.limit_in_bytes");
        if !memsw.exists() {
            // No swap accounting on this kernel (swapaccount=0): the memory limit
            // is all there is.
            return write(&mem, &value);
        }
        // memsw (memory + swap) may never be below memory: raise it first, lower it
        // last. Equal to the memory limit means no swap, as the kubelet's NoSwap.
        let current = read(&mem)?.trim().parse::<u64>().unwrap_or(u64::MAX);
        let raising = limit.value().is_none_or(|v| v > current);
        if raising {
            write(&memsw, &value)?;
            write(&mem, &value)
        } else {
            write(&mem, &value)?;
            write(&memsw, &value)
        }
    }
}

impl Driver for V1 {
    fn version(&self) -> crate::Version {
        crate::Version::V1
    }

    fn root(&self) -> &Path {
        &self.root
    }

    fn create(&self, path: &str) -> Result<(), CgroupError> {
        check_name(path)?;
        if !self.root.join("memory").is_dir() {
            return Err(CgroupError::NoCgroupFs {
                root: self.root.clone(),
            });
        }
        for c in self.mounted() {
            mkdir(&self.dir(c, path))?;
        }
        // Without use_hierarchy a parent's limit does not cover its children (older
        // kernels default to 0; since 5.x it is always 1). It can be turned on only
        // while a cgroup has no children, so right after it is made, top-down.
        let mut dir = self.root.join("memory");
        for component in path.split('/') {
            dir.push(component);
            let file = dir.join("memory.use_hierarchy");
            if std::fs::read_to_string(&file).is_ok_and(|v| v.trim() == "0") {
                write(&file, "1")?;
            }
        }
        Ok(())
    }

    fn exists(&self, path: &str) -> bool {
        check_name(path).is_ok() && self.dir("memory", path).is_dir()
    }

    fn apply(&self, path: &str, r: &Resources) -> Result<(), CgroupError> {
        check_name(path)?;
        let mem = self.dir("memory", path);
        if let Some(limit) = r.memory_max {
            self.set_memory(&mem, limit)?;
        }
        let cpu = self.dir("cpu", path);
        if let Some(shares) = r.cpu_shares {
            write(
                &cpu.join("cpu.shares"),
                &shares.clamp(2, 262_144).to_string(),
            )?;
        }
        if let Some(period) = r.cpu_period {
            write(&cpu.join("cpu.cfs_period_us"), &period.to_string())?;
        }
        if let Some(quota) = r.cpu_quota {
            let value = match quota {
                Limit::Max => "-1".to_string(),
                Limit::Value(q) => q.to_string(),
            };
            write(&cpu.join("cpu.cfs_quota_us"), &value)?;
        }
        Ok(())
    }

    /// Removes the cgroup in every hierarchy, not only kedge's controllers': runc
    /// makes a container's cgroup, and the parents it lacks, in all of them (blkio,
    /// devices, freezer, cpuset, name=systemd, ...), and deletes only the container's.
    fn remove(&self, path: &str) -> Result<(), CgroupError> {
        check_name(path)?;
        for hierarchy in self.hierarchies()? {
            remove_tree(&hierarchy.join(path))?;
        }
        Ok(())
    }

    fn add_process(&self, path: &str, pid: u32) -> Result<(), CgroupError> {
        check_name(path)?;
        for c in self.mounted() {
            write(&self.dir(c, path).join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    fn processes(&self, path: &str) -> Result<Vec<u32>, CgroupError> {
        check_name(path)?;
        let file = self.dir("memory", path).join("cgroup.procs");
        parse_procs(&file, &read(&file)?)
    }

    fn memory_stats(&self, path: &str) -> Result<MemoryStats, CgroupError> {
        check_name(path)?;
        v1_memory_stats(&self.dir("memory", path))
    }

    fn memory_pressure(&self, _path: &str) -> Result<Option<Psi>, CgroupError> {
        Ok(None)
    }

    fn children(&self, path: &str) -> Result<Vec<String>, CgroupError> {
        check_name(path)?;
        subdirs(&self.dir("memory", path))
    }

    fn root_memory_stats(&self) -> Result<Option<MemoryStats>, CgroupError> {
        v1_memory_stats(&self.root.join("memory")).map(Some)
    }

    fn memory_peak(&self, path: &str) -> Result<Option<u64>, CgroupError> {
        check_name(path)?;
        read_number(&self.dir("memory", path).join("memory.max_usage_in_bytes")).map(Some)
    }

    fn procs_files(&self, path: &str) -> Result<Vec<PathBuf>, CgroupError> {
        check_name(path)?;
        Ok(self
            .mounted()
            .map(|c| self.dir(c, path).join("cgroup.procs"))
            .collect())
    }

    fn return_process(&self, pid: u32, proc_cgroup: &str) -> Result<(), CgroupError> {
        for c in self.mounted() {
            // A controller the process's file does not name: its root.
            let path = match crate::proc_cgroup(proc_cgroup, Some(c)) {
                Some(p) => proc_path(&p)?,
                None => String::new(),
            };
            write(&self.dir(c, &path).join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }
}

/// A v1 memory cgroup's stats, from its directory (the root's too).
fn v1_memory_stats(dir: &Path) -> Result<MemoryStats, CgroupError> {
    let number = |file: &str| read_number(&dir.join(file));
    let usage = number("memory.usage_in_bytes")?;
    let limit = number("memory.limit_in_bytes")?;
    let stat_path = dir.join("memory.stat");
    let stat = stats::parse_flat_keyed(&read(&stat_path)?);
    // cAdvisor's working set: usage less the inactive file cache, which the
    // kernel can drop at once. total_ counts the subtree (use_hierarchy).
    let inactive_file = stat
        .get("total_inactive_file")
        .or_else(|| stat.get("inactive_file"))
        .copied()
        .unwrap_or(0);
    let oom_control = stats::parse_flat_keyed(&read(&dir.join("memory.oom_control"))?);
    Ok(MemoryStats {
        usage,
        working_set: usage.saturating_sub(inactive_file),
        limit: (limit < V1_UNLIMITED).then_some(limit),
        oom_kills: oom_control.get("oom_kill").copied(),
        limit_hits: Some(number("memory.failcnt")?),
    })
}

// ---- v2 ----

/// The unified hierarchy.
#[derive(Debug, Clone)]
pub struct V2 {
    root: PathBuf,
}

/// The v2 controllers kedge enables for its cgroups.
pub const V2_CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];

impl V2 {
    pub fn new(root: &Path) -> V2 {
        V2 {
            root: root.to_path_buf(),
        }
    }

    pub fn dir(&self, path: &str) -> PathBuf {
        self.root.join(path)
    }

    /// Enables kedge's controllers in `dir`'s children (cgroup.subtree_control).
    fn delegate(&self, dir: &Path) -> Result<(), CgroupError> {
        let file = dir.join("cgroup.subtree_control");
        let enabled = std::fs::read_to_string(&file).unwrap_or_default();
        let missing: Vec<String> = V2_CONTROLLERS
            .iter()
            .filter(|c| {
                !enabled
                    .split_whitespace()
                    .any(|e| e.trim_start_matches('+') == **c)
            })
            .map(|c| format!("+{c}"))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        write(&file, &missing.join(" "))
    }
}

impl Driver for V2 {
    fn version(&self) -> crate::Version {
        crate::Version::V2
    }

    fn root(&self) -> &Path {
        &self.root
    }

    fn create(&self, path: &str) -> Result<(), CgroupError> {
        check_name(path)?;
        let controllers_file = self.root.join("cgroup.controllers");
        let available = read(&controllers_file)?;
        for c in ["memory", "cpu"] {
            if !available.split_whitespace().any(|a| a == c) {
                return Err(CgroupError::MissingController {
                    root: self.root.clone(),
                    controller: c,
                    available: available.trim().to_string(),
                });
            }
        }
        // Top-down: each ancestor hands the controllers to its children, then the
        // child is made.
        let mut dir = self.root.clone();
        for component in path.split('/') {
            self.delegate(&dir)?;
            dir.push(component);
            mkdir(&dir)?;
        }
        Ok(())
    }

    fn exists(&self, path: &str) -> bool {
        check_name(path).is_ok() && self.dir(path).is_dir()
    }

    fn apply(&self, path: &str, r: &Resources) -> Result<(), CgroupError> {
        check_name(path)?;
        let dir = self.dir(path);
        let limit = |l: Limit| match l {
            Limit::Max => "max".to_string(),
            Limit::Value(v) => v.to_string(),
        };
        if let Some(high) = r.memory_high {
            write(&dir.join("memory.high"), &limit(high))?;
        }
        if let Some(max) = r.memory_max {
            write(&dir.join("memory.max"), &limit(max))?;
            let swap = dir.join("memory.swap.max");
            if swap.exists() {
                let value = if max == Limit::Max { "max" } else { "0" };
                write(&swap, value)?;
            }
        }
        if let Some(shares) = r.cpu_shares {
            write(
                &dir.join("cpu.weight"),
                &shares_to_weight(shares).to_string(),
            )?;
        }
        if r.cpu_quota.is_some() || r.cpu_period.is_some() {
            let quota = r.cpu_quota.unwrap_or(Limit::Max);
            let period = r.cpu_period.unwrap_or(100_000);
            write(&dir.join("cpu.max"), &format!("{} {period}", limit(quota)))?;
        }
        Ok(())
    }

    fn remove(&self, path: &str) -> Result<(), CgroupError> {
        check_name(path)?;
        remove_tree(&self.dir(path))
    }

    fn add_process(&self, path: &str, pid: u32) -> Result<(), CgroupError> {
        check_name(path)?;
        write(&self.dir(path).join("cgroup.procs"), &pid.to_string())
    }

    fn processes(&self, path: &str) -> Result<Vec<u32>, CgroupError> {
        check_name(path)?;
        let file = self.dir(path).join("cgroup.procs");
        parse_procs(&file, &read(&file)?)
    }

    fn memory_stats(&self, path: &str) -> Result<MemoryStats, CgroupError> {
        check_name(path)?;
        let dir = self.dir(path);
        let current_path = dir.join("memory.current");
        let text = read(&current_path)?;
        let usage: u64 = text.trim().parse().map_err(|_| CgroupError::Parse {
            path: current_path,
            what: "a number",
            text,
        })?;
        let max_path = dir.join("memory.max");
        let max_text = read(&max_path)?;
        let limit = match max_text.trim() {
            "max" => None,
            v => Some(v.parse().map_err(|_| CgroupError::Parse {
                path: max_path,
                what: "a limit",
                text: max_text.clone(),
            })?),
        };
        let stat = stats::parse_flat_keyed(&read(&dir.join("memory.stat"))?);
        let inactive_file = stat.get("inactive_file").copied().unwrap_or(0);
        let events = stats::parse_flat_keyed(&read(&dir.join("memory.events"))?);
        Ok(MemoryStats {
            usage,
            working_set: usage.saturating_sub(inactive_file),
            limit,
            oom_kills: events.get("oom_kill").copied(),
            limit_hits: events.get("max").copied(),
        })
    }

    fn memory_pressure(&self, path: &str) -> Result<Option<Psi>, CgroupError> {
        check_name(path)?;
        let file = self.dir(path).join("memory.pressure");
        match std::fs::read_to_string(&file) {
            Ok(text) => stats::parse_psi(&text).map(Some).ok_or(CgroupError::Parse {
                path: file,
                what: "pressure stall information",
                text,
            }),
            // No PSI in this kernel (CONFIG_PSI off, or psi=0).
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CgroupError::Io {
                action: "read",
                path: file,
                source,
            }),
        }
    }

    fn children(&self, path: &str) -> Result<Vec<String>, CgroupError> {
        check_name(path)?;
        subdirs(&self.dir(path))
    }

    fn root_memory_stats(&self) -> Result<Option<MemoryStats>, CgroupError> {
        Ok(None)
    }

    fn memory_peak(&self, path: &str) -> Result<Option<u64>, CgroupError> {
        check_name(path)?;
        let file = self.dir(path).join("memory.peak");
        if !file.exists() {
            return Ok(None);
        }
        read_number(&file).map(Some)
    }

    fn procs_files(&self, path: &str) -> Result<Vec<PathBuf>, CgroupError> {
        check_name(path)?;
        Ok(vec![self.dir(path).join("cgroup.procs")])
    }

    fn return_process(&self, pid: u32, proc_cgroup: &str) -> Result<(), CgroupError> {
        let path = match crate::proc_cgroup(proc_cgroup, None) {
            Some(p) => proc_path(&p)?,
            None => String::new(),
        };
        write(&self.dir(&path).join("cgroup.procs"), &pid.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_relative_and_clean() {
        assert!(check_name("kubepods/burstable/podx").is_ok());
        for bad in ["/kubepods", "a//b", "a/../b", "", "a/."] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn v1_turns_on_use_hierarchy_where_it_is_off() {
        let root = tempfile::tempdir().unwrap();
        let mem = root.path().join("memory");
        std::fs::create_dir_all(mem.join("kubepods")).unwrap();
        std::fs::write(mem.join("kubepods/memory.use_hierarchy"), "0\n").unwrap();
        V1::new(root.path()).create("kubepods/burstable").unwrap();
        assert_eq!(
            std::fs::read_to_string(mem.join("kubepods/memory.use_hierarchy")).unwrap(),
            "1"
        );
        assert!(mem.join("kubepods/burstable").is_dir());
    }

    #[test]
    fn weight_from_shares_as_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1), 1);
    }
}
