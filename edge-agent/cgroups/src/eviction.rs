//! The memory eviction decision, as the kubelet's eviction manager makes it: pure
//! logic, with time passed in.
//!
//! Each observation (node memory and pod usage, at `now`) gives a [`Decision`]:
//! - `memory_pressure`: the node's MemoryPressure condition (and the taint
//!   `node.kubernetes.io/memory-pressure:NoSchedule`): true while any memory
//!   threshold is crossed, hard or soft (before its grace period too), and for the
//!   pressure transition period after the last time one was; on cgroup v2 also
//!   while memory PSI says tasks stall (kedge's addition: PSI sees thrashing before
//!   memory.available drops, and the taint keeps new pods off; it evicts nothing);
//! - `met`: the threshold that calls for an eviction now: the hard one, or the soft
//!   one once it has been crossed for its whole grace period;
//! - `evict`: the pod to evict, first in the kubelet's memory order (pods whose
//!   usage exceeds their requests first, then lower priority, then the most usage
//!   above requests), with the kubelet's message. Critical pods are never evicted.

use std::time::{Duration, Instant};

use kedge_hardware_profiles::{Bytes, Profile, Signal, Threshold};

use crate::stats::Psi;

/// The taint a node under memory pressure gets.
pub const MEMORY_PRESSURE_TAINT: &str = "node.kubernetes.io/memory-pressure";
/// The pod status reason of an evicted pod.
pub const EVICTED_REASON: &str = "Evicted";
/// The kubelet's default `--eviction-pressure-transition-period`.
pub const DEFAULT_PRESSURE_TRANSITION_PERIOD: Duration = Duration::from_secs(300);
/// From this priority on a pod is critical (system-cluster-critical is 2000000000).
pub const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;

/// The memory thresholds to watch.
#[derive(Debug, Clone, PartialEq)]
pub struct EvictionConfig {
    pub hard: Option<Threshold>,
    pub soft: Option<(Threshold, Duration)>,
    /// How long MemoryPressure stays after the last crossing.
    pub pressure_transition_period: Duration,
    /// The grace period a pod gets on a soft eviction (the kubelet's
    /// evictionMaxPodGracePeriod); hard evictions give none.
    pub max_pod_grace_period: Duration,
    /// MemoryPressure also when memory PSI `full avg10` (the share of the last 10 s
    /// in which every task stalled on memory) reaches this percentage.
    pub psi_full_avg10: Option<f64>,
}

/// The default PSI level for MemoryPressure: all tasks stalled a tenth of the time.
pub const DEFAULT_PSI_FULL_AVG10: f64 = 10.0;

impl EvictionConfig {
    /// The profile's memory.available thresholds.
    pub fn from_profile(profile: &Profile) -> EvictionConfig {
        EvictionConfig {
            hard: profile.eviction_hard.get(&Signal::MemoryAvailable).copied(),
            soft: profile
                .eviction_soft
                .get(&Signal::MemoryAvailable)
                .map(|s| (s.threshold, s.grace_period)),
            pressure_transition_period: DEFAULT_PRESSURE_TRANSITION_PERIOD,
            max_pod_grace_period: Duration::from_secs(30),
            psi_full_avg10: Some(DEFAULT_PSI_FULL_AVG10),
        }
    }
}

/// The node's memory, as the kubelet's memory.available signal sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NodeMemory {
    pub capacity: u64,
    pub available: u64,
    /// Memory PSI of the node (v2 root cgroup or /proc/pressure/memory), if any.
    pub psi: Option<Psi>,
}

impl NodeMemory {
    /// memory.available = capacity − the working set of the root cgroup (or of
    /// everything kedge runs), as the kubelet computes it.
    pub fn from_working_set(capacity: u64, working_set: u64) -> NodeMemory {
        NodeMemory {
            capacity,
            available: capacity.saturating_sub(working_set),
            psi: None,
        }
    }

    /// From the text of /proc/meminfo: MemTotal as capacity, MemAvailable as what
    /// is available (on v2 the root cgroup has no memory.current to take a working
    /// set from; MemAvailable also counts reclaimable cache as available, as the
    /// working set does).
    pub fn from_meminfo(text: &str) -> Option<NodeMemory> {
        let field = |name: &str| {
            text.lines().find_map(|l| {
                let rest = l.strip_prefix(name)?.strip_prefix(':')?;
                let mut parts = rest.split_whitespace();
                let kb: u64 = parts.next()?.parse().ok()?;
                (parts.next()? == "kB").then_some(kb * 1024)
            })
        };
        Some(NodeMemory {
            capacity: field("MemTotal")?,
            available: field("MemAvailable")?,
            psi: None,
        })
    }
}

/// A container's memory use and request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerUsage {
    pub name: String,
    /// Working set, bytes.
    pub usage: u64,
    pub request: u64,
}

/// A pod, as eviction ranks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodUsage {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// spec.priority (0 when unset).
    pub priority: i32,
    /// A static or mirror pod, or one at system-critical priority: never evicted.
    pub critical: bool,
    pub containers: Vec<ContainerUsage>,
}

impl PodUsage {
    pub fn usage(&self) -> u64 {
        self.containers.iter().map(|c| c.usage).sum()
    }

    pub fn request(&self) -> u64 {
        self.containers.iter().map(|c| c.request).sum()
    }

    fn exceeds_requests(&self) -> bool {
        self.usage() > self.request()
    }

    fn above_requests(&self) -> i128 {
        i128::from(self.usage()) - i128::from(self.request())
    }

    fn is_critical(&self) -> bool {
        self.critical || self.priority >= SYSTEM_CRITICAL_PRIORITY
    }
}

/// Hard or soft.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThresholdKind {
    Hard,
    Soft,
}

/// A threshold that calls for eviction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThresholdMet {
    pub kind: ThresholdKind,
    /// The threshold, resolved against capacity, bytes.
    pub quantity: u64,
    pub available: u64,
}

/// The pod to evict and what to tell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eviction {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// status.reason: `Evicted`.
    pub reason: &'static str,
    /// status.message and the event's message, worded as the kubelet's.
    pub message: String,
    /// How long the pod may take to stop: zero on a hard threshold.
    pub grace_period: Duration,
}

/// What to do after one observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub memory_pressure: bool,
    pub met: Option<ThresholdMet>,
    pub evict: Option<Eviction>,
}

impl Decision {
    /// The MemoryPressure condition: (status, reason, message) as the kubelet
    /// words it.
    pub fn memory_pressure_condition(&self) -> (&'static str, &'static str, &'static str) {
        if self.memory_pressure {
            (
                "True",
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available",
            )
        } else {
            (
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            )
        }
    }

    /// The taint the node should carry: `node.kubernetes.io/memory-pressure`
    /// (NoSchedule) under pressure, none otherwise.
    pub fn taint(&self) -> Option<&'static str> {
        self.memory_pressure.then_some(MEMORY_PRESSURE_TAINT)
    }
}

/// Remembers, between observations, since when the soft threshold has been
/// crossed and when any threshold last was.
#[derive(Debug, Clone)]
pub struct EvictionManager {
    config: EvictionConfig,
    soft_since: Option<Instant>,
    last_met: Option<Instant>,
}

impl EvictionManager {
    pub fn new(config: EvictionConfig) -> EvictionManager {
        EvictionManager {
            config,
            soft_since: None,
            last_met: None,
        }
    }

    pub fn config(&self) -> &EvictionConfig {
        &self.config
    }

    /// One observation at `now`.
    pub fn observe(&mut self, now: Instant, node: NodeMemory, pods: &[PodUsage]) -> Decision {
        let capacity = Bytes(node.capacity);
        let crossed = |t: &Threshold| t.resolve(capacity).0 > node.available;
        let hard = self.config.hard.filter(|t| crossed(t));
        let soft = self.config.soft.filter(|(t, _)| crossed(t));
        if soft.is_some() {
            self.soft_since.get_or_insert(now);
        } else {
            self.soft_since = None;
        }
        let stalled = match (self.config.psi_full_avg10, node.psi.and_then(|p| p.full)) {
            (Some(limit), Some(full)) => full.avg10 >= limit,
            _ => false,
        };
        if hard.is_some() || soft.is_some() || stalled {
            self.last_met = Some(now);
        }
        let memory_pressure = self.last_met.is_some_and(|t| {
            now.saturating_duration_since(t) < self.config.pressure_transition_period || t == now
        });
        let met = match (hard, soft) {
            (Some(t), _) => Some(ThresholdMet {
                kind: ThresholdKind::Hard,
                quantity: t.resolve(capacity).0,
                available: node.available,
            }),
            (None, Some((t, grace))) => self
                .soft_since
                .filter(|since| now.saturating_duration_since(*since) >= grace)
                .map(|_| ThresholdMet {
                    kind: ThresholdKind::Soft,
                    quantity: t.resolve(capacity).0,
                    available: node.available,
                }),
            (None, None) => None,
        };
        let evict = met.and_then(|met| {
            let victim = rank_for_memory(pods).into_iter().next()?;
            Some(Eviction {
                namespace: victim.namespace.clone(),
                name: victim.name.clone(),
                uid: victim.uid.clone(),
                reason: EVICTED_REASON,
                message: eviction_message(met.quantity, met.available, victim),
                grace_period: match met.kind {
                    ThresholdKind::Hard => Duration::ZERO,
                    ThresholdKind::Soft => self.config.max_pod_grace_period,
                },
            })
        });
        if let Some(e) = &evict {
            tracing::info!(pod = %format!("{}/{}", e.namespace, e.name), message = %e.message, "evicting");
        }
        Decision {
            memory_pressure,
            met,
            evict,
        }
    }
}

/// The pods that may be evicted, in the kubelet's order for memory
/// (rankMemoryPressure): usage above requests first, then lower priority first,
/// then more usage above requests first. BestEffort pods request nothing, so any
/// use puts them ahead. Critical pods are left out.
pub fn rank_for_memory(pods: &[PodUsage]) -> Vec<&PodUsage> {
    let mut ranked: Vec<&PodUsage> = pods.iter().filter(|p| !p.is_critical()).collect();
    ranked.sort_by(|a, b| {
        b.exceeds_requests()
            .cmp(&a.exceeds_requests())
            .then(a.priority.cmp(&b.priority))
            .then(b.above_requests().cmp(&a.above_requests()))
    });
    ranked
}

/// The kubelet's eviction message (pkg/kubelet/eviction/helpers.go), trailing
/// spaces and all: the node's state, then each container using more than it
/// requested.
pub fn eviction_message(quantity: u64, available: u64, pod: &PodUsage) -> String {
    let mut message = format!(
        "The node was low on resource: memory. Threshold quantity: {}, available: {}. ",
        Bytes(quantity),
        Bytes(available)
    );
    for c in &pod.containers {
        if c.usage > c.request {
            message.push_str(&format!(
                "Container {} was using {}, request is {}, has larger consumption of memory. ",
                c.name,
                Bytes(c.usage),
                Bytes(c.request)
            ));
        }
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    const MI: u64 = 1 << 20;

    fn pod(name: &str, priority: i32, containers: &[(&str, u64, u64)]) -> PodUsage {
        PodUsage {
            namespace: "default".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            priority,
            critical: false,
            containers: containers
                .iter()
                .map(|(n, usage, request)| ContainerUsage {
                    name: n.to_string(),
                    usage: *usage,
                    request: *request,
                })
                .collect(),
        }
    }

    fn config() -> EvictionConfig {
        EvictionConfig {
            hard: Some(Threshold::Quantity(Bytes::mib(100))),
            soft: Some((
                Threshold::Quantity(Bytes::mib(200)),
                Duration::from_secs(60),
            )),
            pressure_transition_period: Duration::from_secs(300),
            max_pod_grace_period: Duration::from_secs(30),
            psi_full_avg10: Some(10.0),
        }
    }

    fn node(available_mib: u64) -> NodeMemory {
        NodeMemory {
            capacity: 2048 * MI,
            available: available_mib * MI,
            psi: None,
        }
    }

    #[test]
    fn node_memory_from_meminfo() {
        let n = NodeMemory::from_meminfo(
            "MemTotal:        1917468 kB\nMemFree:  1000 kB\nMemAvailable:     812345 kB\n",
        )
        .unwrap();
        assert_eq!(n.capacity, 1_917_468 * 1024);
        assert_eq!(n.available, 812_345 * 1024);
        assert_eq!(NodeMemory::from_meminfo("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn memory_stalls_mean_pressure_but_no_eviction() {
        let mut m = EvictionManager::new(config());
        let pods = vec![pod("hog", 0, &[("a", 10 * MI, 0)])];
        let mut n = node(1000);
        n.psi = crate::stats::parse_psi(
            "some avg10=30.00 avg60=0 avg300=0 total=1\nfull avg10=12.00 avg60=0 avg300=0 total=1\n",
        );
        let d = m.observe(Instant::now(), n, &pods);
        assert!(d.memory_pressure);
        assert_eq!(d.met, None);
        assert_eq!(d.evict, None);
        let mut m = EvictionManager::new(config());
        n.psi = crate::stats::parse_psi("some avg10=30.00 avg60=0 avg300=0 total=1\n");
        assert!(!m.observe(Instant::now(), n, &pods).memory_pressure);
    }

    #[test]
    fn the_kubelets_order() {
        let pods = vec![
            pod("guaranteed", 0, &[("app", 90 * MI, 100 * MI)]),
            pod("burstable-over", 0, &[("app", 150 * MI, 100 * MI)]),
            pod("besteffort-small", 0, &[("app", 10 * MI, 0)]),
            pod("besteffort-big", 0, &[("app", 80 * MI, 0)]),
            pod("important-hog", 1000, &[("app", 500 * MI, 0)]),
            pod(
                "critical",
                SYSTEM_CRITICAL_PRIORITY,
                &[("app", 900 * MI, 0)],
            ),
        ];
        let order: Vec<&str> = rank_for_memory(&pods)
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(
            order,
            [
                "besteffort-big",
                "burstable-over",
                "besteffort-small",
                "important-hog",
                "guaranteed"
            ]
        );
    }

    #[test]
    fn hard_threshold_evicts_at_once_with_the_upstream_message() {
        let mut m = EvictionManager::new(config());
        let t0 = Instant::now();
        let pods = vec![
            pod("web", 0, &[("nginx", 64 * MI, 64 * MI)]),
            pod("hog", 0, &[("stress", 120 * MI, 0), ("side", 1 << 10, 0)]),
        ];
        let d = m.observe(t0, node(50), &pods);
        assert!(d.memory_pressure);
        assert_eq!(d.taint(), Some(MEMORY_PRESSURE_TAINT));
        assert_eq!(
            d.memory_pressure_condition().1,
            "KubeletHasInsufficientMemory"
        );
        let met = d.met.unwrap();
        assert_eq!(met.kind, ThresholdKind::Hard);
        let e = d.evict.unwrap();
        assert_eq!(e.name, "hog");
        assert_eq!(e.reason, "Evicted");
        assert_eq!(e.grace_period, Duration::ZERO);
        assert_eq!(
            e.message,
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. Container stress was using 120Mi, request is 0, has larger consumption of memory. Container side was using 1Ki, request is 0, has larger consumption of memory. "
        );
    }

    #[test]
    fn soft_threshold_waits_for_its_grace_period() {
        let mut m = EvictionManager::new(config());
        let t0 = Instant::now();
        let pods = vec![pod("hog", 0, &[("stress", 120 * MI, 0)])];
        // Below the soft threshold: pressure at once, but no eviction yet.
        let d = m.observe(t0, node(150), &pods);
        assert!(d.memory_pressure);
        assert_eq!(d.met, None);
        assert_eq!(d.evict, None);
        let d = m.observe(t0 + Duration::from_secs(59), node(150), &pods);
        assert_eq!(d.evict, None);
        let d = m.observe(t0 + Duration::from_secs(60), node(150), &pods);
        let e = d.evict.unwrap();
        assert_eq!(d.met.unwrap().kind, ThresholdKind::Soft);
        assert_eq!(e.grace_period, Duration::from_secs(30));
        assert!(
            e.message
                .contains("Threshold quantity: 200Mi, available: 150Mi. ")
        );
        // Recovery restarts the grace period.
        m.observe(t0 + Duration::from_secs(61), node(500), &pods);
        let d = m.observe(t0 + Duration::from_secs(62), node(150), &pods);
        assert_eq!(d.evict, None);
    }

    #[test]
    fn pressure_lingers_for_the_transition_period() {
        let mut m = EvictionManager::new(config());
        let t0 = Instant::now();
        m.observe(t0, node(50), &[]);
        let d = m.observe(t0 + Duration::from_secs(10), node(1000), &[]);
        assert!(d.memory_pressure, "still within 5m of the last crossing");
        assert_eq!(d.met, None);
        let d = m.observe(t0 + Duration::from_secs(300), node(1000), &[]);
        assert!(!d.memory_pressure);
        assert_eq!(d.taint(), None);
        assert_eq!(d.memory_pressure_condition().0, "False");
    }

    #[test]
    fn nothing_to_evict_but_critical_pods() {
        let mut m = EvictionManager::new(config());
        let mut p = pod("static", 0, &[("app", 900 * MI, 0)]);
        p.critical = true;
        let d = m.observe(Instant::now(), node(10), &[p]);
        assert!(d.memory_pressure);
        assert!(d.met.is_some());
        assert_eq!(d.evict, None);
    }

    #[test]
    fn percent_thresholds_resolve_against_capacity() {
        let mut c = config();
        c.hard = Some(Threshold::Percent(10.0));
        let mut m = EvictionManager::new(c);
        let pods = vec![pod("hog", 0, &[("a", 10 * MI, 0)])];
        // 10% of 2048Mi is 204.8Mi: 250Mi available crosses only the soft one.
        let d = m.observe(Instant::now(), node(250), &pods);
        assert_eq!(d.met, None);
        let d = m.observe(Instant::now(), node(200), &pods);
        assert_eq!(d.met.unwrap().kind, ThresholdKind::Hard);
    }
}
