//! QoS classes and a pod cgroup's settings, from its containers' requests and
//! limits, as the kubelet computes them (pkg/apis/core/v1/helper/qos,
//! pkg/kubelet/cm/helpers_linux.go).

use crate::driver::{Limit, Resources};

/// The kubelet's CFS period, in microseconds.
pub const CPU_PERIOD_US: u64 = 100_000;
/// The least cpu.shares (what a BestEffort pod gets).
pub const MIN_SHARES: u64 = 2;
pub const MAX_SHARES: u64 = 262_144;
/// The least quota the kubelet sets (1 ms per period).
pub const MIN_QUOTA_US: u64 = 1000;

/// A pod's Quality of Service class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    /// As the API writes it in status.qosClass.
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }
}

/// One container's CPU (millicores) and memory (bytes) requests and limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ContainerResources {
    pub cpu_request: Option<u64>,
    pub cpu_limit: Option<u64>,
    pub memory_request: Option<u64>,
    pub memory_limit: Option<u64>,
}

/// What the cgroups need to know about a pod.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodResources {
    pub uid: String,
    pub containers: Vec<ContainerResources>,
    pub init_containers: Vec<ContainerResources>,
}

impl ContainerResources {
    /// A request left out where a limit is given defaults to the limit (the API
    /// server's defaulting).
    fn effective_requests(&self) -> (Option<u64>, Option<u64>) {
        (
            self.cpu_request.or(self.cpu_limit),
            self.memory_request.or(self.memory_limit),
        )
    }
}

impl PodResources {
    fn all(&self) -> impl Iterator<Item = &ContainerResources> {
        self.containers.iter().chain(&self.init_containers)
    }

    /// The kubelet's QoS rule: BestEffort when no container has a CPU or memory
    /// request or limit; Guaranteed when every container has CPU and memory limits
    /// and its requests equal them; otherwise Burstable.
    pub fn qos_class(&self) -> QosClass {
        let any = self.all().any(|c| {
            c.cpu_request.is_some_and(|v| v > 0)
                || c.cpu_limit.is_some_and(|v| v > 0)
                || c.memory_request.is_some_and(|v| v > 0)
                || c.memory_limit.is_some_and(|v| v > 0)
        });
        if !any {
            return QosClass::BestEffort;
        }
        let guaranteed = self.all().all(|c| {
            let (cpu_req, mem_req) = c.effective_requests();
            matches!((c.cpu_limit, c.memory_limit), (Some(cl), Some(ml))
                if cl > 0 && ml > 0 && cpu_req == Some(cl) && mem_req == Some(ml))
        });
        if guaranteed {
            QosClass::Guaranteed
        } else {
            QosClass::Burstable
        }
    }

    /// The pod's effective requests and limits, as the scheduler and the kubelet
    /// count them: the larger of the app containers' sum and the largest init
    /// container. A limit is `None` when a container has none (no limit at all).
    fn effective(&self, get: impl Fn(&ContainerResources) -> Option<u64>) -> Option<u64> {
        let mut sum = 0u64;
        for c in &self.containers {
            sum = sum.saturating_add(get(c)?);
        }
        let mut init_max = 0u64;
        for c in &self.init_containers {
            init_max = init_max.max(get(c)?);
        }
        Some(sum.max(init_max))
    }

    pub fn cpu_request(&self) -> u64 {
        self.effective(|c| Some(c.effective_requests().0.unwrap_or(0)))
            .unwrap_or(0)
    }

    pub fn memory_request(&self) -> u64 {
        self.effective(|c| Some(c.effective_requests().1.unwrap_or(0)))
            .unwrap_or(0)
    }

    /// The pod's memory limit: the sum of its containers' when every container has
    /// one.
    pub fn memory_limit(&self) -> Option<u64> {
        self.effective(|c| c.memory_limit)
    }

    pub fn cpu_limit(&self) -> Option<u64> {
        self.effective(|c| c.cpu_limit)
    }

    /// The pod cgroup's settings (the kubelet's ResourceConfigForPod): cpu.shares
    /// from the CPU requests, a quota from the CPU limits and a memory limit from
    /// the memory limits, each only when every container declares one. BestEffort
    /// pods get the least shares and no limits.
    pub fn cgroup_resources(&self) -> Resources {
        match self.qos_class() {
            QosClass::BestEffort => Resources {
                memory_max: Some(Limit::Max),
                cpu_shares: Some(MIN_SHARES),
                cpu_quota: Some(Limit::Max),
                cpu_period: Some(CPU_PERIOD_US),
                ..Resources::default()
            },
            _ => Resources {
                memory_max: Some(self.memory_limit().map_or(Limit::Max, Limit::Value)),
                memory_high: None,
                cpu_shares: Some(milli_cpu_to_shares(self.cpu_request())),
                cpu_quota: Some(self.cpu_limit().filter(|l| *l > 0).map_or(Limit::Max, |l| {
                    Limit::Value(milli_cpu_to_quota(l, CPU_PERIOD_US))
                })),
                cpu_period: Some(CPU_PERIOD_US),
            },
        }
    }
}

/// cpu.shares for a number of millicores (the kubelet's MilliCPUToShares).
pub fn milli_cpu_to_shares(milli: u64) -> u64 {
    if milli == 0 {
        return MIN_SHARES;
    }
    (milli * 1024 / 1000).clamp(MIN_SHARES, MAX_SHARES)
}

/// The CFS quota for a number of millicores and a period (MilliCPUToQuota).
pub fn milli_cpu_to_quota(milli: u64, period_us: u64) -> u64 {
    (milli * period_us / 1000).max(MIN_QUOTA_US)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MI: u64 = 1 << 20;

    fn c(
        cpu_req: Option<u64>,
        cpu_lim: Option<u64>,
        mem_req: Option<u64>,
        mem_lim: Option<u64>,
    ) -> ContainerResources {
        ContainerResources {
            cpu_request: cpu_req,
            cpu_limit: cpu_lim,
            memory_request: mem_req,
            memory_limit: mem_lim,
        }
    }

    fn pod(containers: Vec<ContainerResources>) -> PodResources {
        PodResources {
            uid: "u".into(),
            containers,
            init_containers: vec![],
        }
    }

    #[test]
    fn qos_classes() {
        assert_eq!(
            pod(vec![c(None, None, None, None)]).qos_class(),
            QosClass::BestEffort
        );
        assert_eq!(
            pod(vec![c(Some(100), Some(100), Some(64 * MI), Some(64 * MI))]).qos_class(),
            QosClass::Guaranteed
        );
        // Limits only: requests default to them.
        assert_eq!(
            pod(vec![c(None, Some(100), None, Some(64 * MI))]).qos_class(),
            QosClass::Guaranteed
        );
        assert_eq!(
            pod(vec![c(Some(100), None, None, None)]).qos_class(),
            QosClass::Burstable
        );
        // One container without limits makes the whole pod Burstable.
        assert_eq!(
            pod(vec![
                c(None, Some(100), None, Some(64 * MI)),
                c(None, None, None, None)
            ])
            .qos_class(),
            QosClass::Burstable
        );
    }

    #[test]
    fn pod_cgroup_settings_as_the_kubelet() {
        let g = pod(vec![
            c(Some(250), Some(250), Some(64 * MI), Some(64 * MI)),
            c(Some(250), Some(250), Some(32 * MI), Some(32 * MI)),
        ]);
        let r = g.cgroup_resources();
        assert_eq!(r.memory_max, Some(Limit::Value(96 * MI)));
        assert_eq!(r.cpu_shares, Some(512));
        assert_eq!(r.cpu_quota, Some(Limit::Value(50_000)));

        // Burstable, one container has no memory limit: no pod memory limit.
        let b = pod(vec![
            c(Some(100), Some(200), Some(16 * MI), Some(32 * MI)),
            c(Some(100), None, None, None),
        ]);
        let r = b.cgroup_resources();
        assert_eq!(b.qos_class(), QosClass::Burstable);
        assert_eq!(r.memory_max, Some(Limit::Max));
        assert_eq!(r.cpu_shares, Some(204));
        assert_eq!(r.cpu_quota, Some(Limit::Max));

        let be = pod(vec![c(None, None, None, None)]).cgroup_resources();
        assert_eq!(be.cpu_shares, Some(2));
        assert_eq!(be.memory_max, Some(Limit::Max));
    }

    #[test]
    fn init_containers_count_when_larger() {
        let mut p = pod(vec![c(Some(100), Some(100), Some(10 * MI), Some(10 * MI))]);
        p.init_containers = vec![c(Some(500), Some(500), Some(50 * MI), Some(50 * MI))];
        assert_eq!(p.memory_limit(), Some(50 * MI));
        assert_eq!(p.cpu_request(), 500);
        assert_eq!(p.memory_request(), 50 * MI);
    }

    #[test]
    fn shares_and_quota() {
        assert_eq!(milli_cpu_to_shares(0), 2);
        assert_eq!(milli_cpu_to_shares(1), 2);
        assert_eq!(milli_cpu_to_shares(1000), 1024);
        assert_eq!(milli_cpu_to_quota(1, CPU_PERIOD_US), 1000);
        assert_eq!(milli_cpu_to_quota(1500, CPU_PERIOD_US), 150_000);
    }
}
