//! The kedge hierarchy, named as the kubelet's cgroupfs driver names the shared
//! parts:
//!
//! ```text
//! <prefix>/kedge/system              capped at kubeReserved (the kube daemons)
//! <prefix>/kedge/system/agent        capped at the agent's budget
//! <prefix>/kedge/system/containerd   capped at containerd's budget (its shims too)
//! <prefix>/kubepods                  capped at capacity − systemReserved − kubeReserved
//! <prefix>/kubepods/pod<uid>         a Guaranteed pod
//! <prefix>/kubepods/burstable/pod<uid>
//! <prefix>/kubepods/besteffort/pod<uid>
//! ```
//!
//! The prefix is empty on a device (the hierarchy sits at the cgroupfs root, as the
//! kubelet's `/kubepods` does) and unique in tests. A container's cgroup is made by
//! runc, under its pod's, from the cgroupsPath in its OCI spec
//! ([`Cgroups::container_cgroups_path`]).

use std::collections::BTreeMap;
use std::path::Path;

use kedge_hardware_profiles::{Capacity, Profile};
use tracing::info;

use crate::driver::{Driver, Limit, Resources, check_name};
use crate::resources::{CPU_PERIOD_US, MIN_SHARES, PodResources, QosClass, milli_cpu_to_shares};
use crate::stats::{MemoryStats, Psi};
use crate::{CgroupError, Version};

/// Where the hierarchy sits under the cgroupfs root.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Layout {
    prefix: String,
}

impl Layout {
    /// `prefix` is a relative cgroup path (`""` for the root).
    pub fn new(prefix: &str) -> Result<Layout, CgroupError> {
        let prefix = prefix.trim_matches('/');
        if !prefix.is_empty() {
            check_name(prefix)?;
        }
        Ok(Layout {
            prefix: prefix.to_string(),
        })
    }

    fn join(&self, path: &str) -> String {
        if self.prefix.is_empty() {
            path.to_string()
        } else {
            format!("{}/{path}", self.prefix)
        }
    }

    pub fn system(&self) -> String {
        self.join("kedge/system")
    }

    pub fn agent(&self) -> String {
        self.join("kedge/system/agent")
    }

    pub fn containerd(&self) -> String {
        self.join("kedge/system/containerd")
    }

    pub fn kubepods(&self) -> String {
        self.join("kubepods")
    }

    /// The cgroup a QoS class's pods sit in.
    pub fn qos(&self, qos: QosClass) -> String {
        match qos {
            QosClass::Guaranteed => self.kubepods(),
            QosClass::Burstable => self.join("kubepods/burstable"),
            QosClass::BestEffort => self.join("kubepods/besteffort"),
        }
    }

    pub fn pod(&self, qos: QosClass, uid: &str) -> Result<String, CgroupError> {
        check_uid(uid)?;
        Ok(format!("{}/pod{uid}", self.qos(qos)))
    }
}

fn check_uid(uid: &str) -> Result<(), CgroupError> {
    if uid.is_empty()
        || !uid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(CgroupError::InvalidName {
            name: uid.to_string(),
            reason: "a pod uid has only letters, digits, '-' and '_'",
        });
    }
    Ok(())
}

/// The numbers the hierarchy is capped at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemBudgets {
    pub agent: u64,
    pub containerd: u64,
    /// `kedge/system`: kubeReserved memory.
    pub system: u64,
    /// `kubepods`: what pods may use together.
    pub pods: u64,
    /// `kubepods` cpu.shares: from the allocatable CPU.
    pub pods_cpu_shares: u64,
}

impl SystemBudgets {
    /// The budgets a profile gives on a machine of this capacity.
    pub fn from_profile(profile: &Profile, capacity: &Capacity) -> SystemBudgets {
        SystemBudgets {
            agent: profile.budgets.agent.0,
            containerd: profile.budgets.containerd.0,
            system: profile.kube_reserved.memory.0,
            pods: profile.pods_cgroup_limit(capacity).0,
            pods_cpu_shares: milli_cpu_to_shares(profile.allocatable(capacity).cpu.0),
        }
    }
}

/// memory.high under a budget: a tenth less (at least 4 MiB), whole MiB, so the
/// kernel reclaims before the limit kills.
pub fn memory_high(budget: u64) -> u64 {
    const MI: u64 = 1 << 20;
    let gap = (budget / 10).max(4 * MI);
    (budget.saturating_sub(gap) / MI) * MI
}

/// The kedge hierarchy on one cgroupfs.
#[derive(Debug)]
pub struct Cgroups {
    driver: Box<dyn Driver>,
    layout: Layout,
}

impl Cgroups {
    pub fn new(driver: Box<dyn Driver>, layout: Layout) -> Cgroups {
        Cgroups { driver, layout }
    }

    /// The hierarchy on the cgroupfs under `root` (v1, hybrid or v2, detected).
    pub fn open(root: &Path, layout: Layout) -> Result<Cgroups, CgroupError> {
        Ok(Cgroups::new(crate::open(root)?, layout))
    }

    pub fn driver(&self) -> &dyn Driver {
        self.driver.as_ref()
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn version(&self) -> Version {
        self.driver.version()
    }

    fn capped(&self, budget: u64) -> Resources {
        Resources {
            memory_max: Some(Limit::Value(budget)),
            memory_high: Some(Limit::Value(memory_high(budget))),
            ..Resources::default()
        }
    }

    /// Creates (or updates) the whole fixed hierarchy and caps it. Idempotent.
    pub fn ensure_hierarchy(&self, budgets: &SystemBudgets) -> Result<(), CgroupError> {
        let l = &self.layout;
        let d = &self.driver;
        for path in [l.agent(), l.containerd()] {
            d.create(&path)?;
        }
        d.apply(&l.system(), &self.capped(budgets.system))?;
        d.apply(&l.agent(), &self.capped(budgets.agent))?;
        d.apply(&l.containerd(), &self.capped(budgets.containerd))?;
        d.create(&l.qos(QosClass::Burstable))?;
        d.create(&l.qos(QosClass::BestEffort))?;
        d.apply(
            &l.kubepods(),
            &Resources {
                memory_max: Some(Limit::Value(budgets.pods)),
                cpu_shares: Some(budgets.pods_cpu_shares),
                ..Resources::default()
            },
        )?;
        // BestEffort pods get what nobody else uses (the kubelet's MinShares).
        d.apply(
            &l.qos(QosClass::BestEffort),
            &Resources {
                cpu_shares: Some(MIN_SHARES),
                ..Resources::default()
            },
        )?;
        info!(
            version = ?d.version(),
            root = %d.root().display(),
            agent = budgets.agent,
            containerd = budgets.containerd,
            pods = budgets.pods,
            "cgroup hierarchy in place"
        );
        Ok(())
    }

    /// Moves a process into the agent's cgroup (the agent itself: its own pid).
    pub fn move_agent(&self, pid: u32) -> Result<(), CgroupError> {
        self.driver.add_process(&self.layout.agent(), pid)
    }

    /// Moves a process into containerd's cgroup.
    pub fn move_containerd(&self, pid: u32) -> Result<(), CgroupError> {
        self.driver.add_process(&self.layout.containerd(), pid)
    }

    /// The pod's cgroup, by its QoS class.
    pub fn pod_path(&self, pod: &PodResources) -> Result<String, CgroupError> {
        self.layout.pod(pod.qos_class(), &pod.uid)
    }

    /// Creates the pod's cgroup, or updates its settings. Returns its path.
    pub fn update_pod(&self, pod: &PodResources) -> Result<String, CgroupError> {
        let path = self.pod_path(pod)?;
        self.driver.create(&path)?;
        self.driver.apply(&path, &pod.cgroup_resources())?;
        Ok(path)
    }

    /// Removes the pod's cgroup (in whichever QoS class it is) and its containers'.
    /// Fails while a process is left in it: stop the containers first.
    pub fn remove_pod(&self, uid: &str) -> Result<(), CgroupError> {
        for qos in [
            QosClass::Guaranteed,
            QosClass::Burstable,
            QosClass::BestEffort,
        ] {
            let path = self.layout.pod(qos, uid)?;
            if self.driver.exists(&path) {
                self.driver.remove(&path)?;
            }
        }
        Ok(())
    }

    /// Sets the burstable class's cpu.shares to the sum of its pods' CPU requests
    /// (the kubelet's QoS container manager), so that Burstable pods together get
    /// what they asked for against Guaranteed ones.
    pub fn update_qos(&self, pods: &[PodResources]) -> Result<(), CgroupError> {
        let burstable: u64 = pods
            .iter()
            .filter(|p| p.qos_class() == QosClass::Burstable)
            .map(|p| p.cpu_request())
            .sum();
        self.driver.apply(
            &self.layout.qos(QosClass::Burstable),
            &Resources {
                cpu_shares: Some(milli_cpu_to_shares(burstable)),
                cpu_period: Some(CPU_PERIOD_US),
                ..Resources::default()
            },
        )
    }

    /// The cgroupsPath for a container's OCI spec:
    /// `/kubepods/burstable/pod<uid>/<container-id>` (absolute: from the cgroupfs
    /// root, as runc reads it with the cgroupfs driver).
    pub fn container_cgroups_path(
        &self,
        pod: &PodResources,
        container_id: &str,
    ) -> Result<String, CgroupError> {
        check_name(container_id)?;
        if container_id.contains('/') {
            return Err(CgroupError::InvalidName {
                name: container_id.to_string(),
                reason: "a container id is one path component",
            });
        }
        Ok(format!("/{}/{container_id}", self.pod_path(pod)?))
    }

    /// The cgroup of the pod with this uid, in whichever QoS class it is; `None`
    /// when it has none.
    pub fn find_pod(&self, uid: &str) -> Result<Option<String>, CgroupError> {
        for qos in [
            QosClass::Guaranteed,
            QosClass::Burstable,
            QosClass::BestEffort,
        ] {
            let path = self.layout.pod(qos, uid)?;
            if self.driver.exists(&path) {
                return Ok(Some(path));
            }
        }
        Ok(None)
    }

    /// The uids of the pods that have a cgroup.
    pub fn pod_uids(&self) -> Result<Vec<String>, CgroupError> {
        let mut uids = Vec::new();
        for qos in [
            QosClass::Guaranteed,
            QosClass::Burstable,
            QosClass::BestEffort,
        ] {
            for child in self.driver.children(&self.layout.qos(qos))? {
                if let Some(uid) = child.strip_prefix("pod") {
                    uids.push(uid.to_string());
                }
            }
        }
        Ok(uids)
    }

    /// OOM kills under a pod's cgroup, by cgroup: `""` for the pod's own and each
    /// container's by its name. v1 counts a kill only in the cgroup of the process
    /// killed (a container's, under the pod's), so the children are read too; v2
    /// counts the whole subtree in the pod's memory.events, so the pod's is enough.
    pub fn oom_kills(&self, path: &str) -> Result<BTreeMap<String, u64>, CgroupError> {
        let mut counts = BTreeMap::new();
        let own = self.driver.memory_stats(path)?.oom_kills.unwrap_or(0);
        counts.insert(String::new(), own);
        if self.driver.version() != Version::V2 {
            for child in self.driver.children(path)? {
                // A container cgroup that runc removes meanwhile is no error.
                if let Ok(s) = self.driver.memory_stats(&format!("{path}/{child}")) {
                    counts.insert(child, s.oom_kills.unwrap_or(0));
                }
            }
        }
        Ok(counts)
    }

    /// The root cgroup's memory (v1); `None` on v2 (read /proc/meminfo).
    pub fn root_memory_stats(&self) -> Result<Option<MemoryStats>, CgroupError> {
        self.driver.root_memory_stats()
    }

    /// Moves a process back where it was before kedge moved it: into the cgroups a
    /// `/proc/<pid>/cgroup` text read back then names.
    pub fn release_process(&self, pid: u32, proc_cgroup: &str) -> Result<(), CgroupError> {
        self.driver.return_process(pid, proc_cgroup)
    }

    pub fn memory_stats(&self, path: &str) -> Result<MemoryStats, CgroupError> {
        self.driver.memory_stats(path)
    }

    pub fn memory_pressure(&self, path: &str) -> Result<Option<Psi>, CgroupError> {
        self.driver.memory_pressure(path)
    }

    /// Removes the whole hierarchy (every pod must be gone). For tests and
    /// uninstall.
    pub fn remove_all(&self) -> Result<(), CgroupError> {
        self.driver.remove(&self.layout.kubepods())?;
        let kedge = match self.layout.prefix.as_str() {
            "" => "kedge".to_string(),
            p => format!("{p}/kedge"),
        };
        self.driver.remove(&kedge)?;
        if !self.layout.prefix.is_empty() {
            self.driver.remove(&self.layout.prefix)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let l = Layout::new("").unwrap();
        assert_eq!(l.agent(), "kedge/system/agent");
        assert_eq!(l.qos(QosClass::Guaranteed), "kubepods");
        assert_eq!(
            l.pod(QosClass::Burstable, "0a1b-2c").unwrap(),
            "kubepods/burstable/pod0a1b-2c"
        );
        let t = Layout::new("/kedge-test-1/").unwrap();
        assert_eq!(t.containerd(), "kedge-test-1/kedge/system/containerd");
        assert!(l.pod(QosClass::BestEffort, "../x").is_err());
        assert!(Layout::new("a/../b").is_err());
    }

    #[test]
    fn memory_high_is_a_bit_under() {
        const MI: u64 = 1 << 20;
        assert_eq!(memory_high(32 * MI), 28 * MI);
        assert_eq!(memory_high(512 * MI), 460 * MI);
    }
}
