//! Resources: a pod's QoS class, the kubelet's `oom_score_adj`, and the
//! cgroup numbers (cpu shares, CFS quota and period, memory limit) a
//! container's requests and limits become, as upstream's kuberuntime computes
//! them (`pkg/kubelet/qos`, `pkg/kubelet/cm/helpers_linux.go`,
//! `kuberuntime_container_linux.go`).

use k8s_openapi::api::core::v1::{Container, Pod};
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder,
};

use crate::quantity::{Quantity, QuantityError};

/// cgroup v1 `cpu.shares` for one CPU.
pub const SHARES_PER_CPU: i64 = 1024;
/// The smallest `cpu.shares` the kernel takes, and what a container without a
/// CPU request gets.
pub const MIN_SHARES: i64 = 2;
/// The largest `cpu.shares` the kernel takes.
pub const MAX_SHARES: i64 = 262_144;
/// The CFS period the kubelet sets, in microseconds (100 ms).
pub const CPU_PERIOD_US: i64 = 100_000;
/// The smallest CFS quota the kernel takes, in microseconds.
pub const MIN_QUOTA_US: i64 = 1000;
/// The OOM score of Guaranteed pods and node-critical pods.
pub const GUARANTEED_OOM_SCORE_ADJ: i32 = -997;
/// The OOM score of BestEffort pods.
pub const BEST_EFFORT_OOM_SCORE_ADJ: i32 = 1000;
/// The OOM score containerd's CRI gives the pause container.
pub const SANDBOX_OOM_SCORE_ADJ: i32 = -998;
/// The `cpu.shares` containerd's CRI gives the pause container.
pub const SANDBOX_CPU_SHARES: u64 = 2;

/// A pod's quality-of-service class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    /// The name as `status.qosClass` spells it.
    pub fn as_str(&self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }
}

/// A container's `resources.<kind>[name]` (kind is `limits` or `requests`).
pub fn resource_quantity(
    container: &Container,
    kind: &str,
    name: &str,
) -> Result<Option<Quantity>, QuantityError> {
    let Some(resources) = &container.resources else {
        return Ok(None);
    };
    let list = match kind {
        "limits" => resources.limits.as_ref(),
        "requests" => resources.requests.as_ref(),
        _ => None,
    };
    list.and_then(|l| l.get(name))
        .map(|q| Quantity::parse(&q.0))
        .transpose()
}

/// A container's request for `name`, or its limit when it sets no request: the
/// API server's defaulting, which the kubelet repeats for pods that skipped it
/// (static pods).
pub fn request_or_limit(
    container: &Container,
    name: &str,
) -> Result<Option<Quantity>, QuantityError> {
    match resource_quantity(container, "requests", name)? {
        Some(q) => Ok(Some(q)),
        None => resource_quantity(container, "limits", name),
    }
}

fn all_containers(pod: &Pod) -> impl Iterator<Item = &Container> {
    pod.spec.iter().flat_map(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
    })
}

/// The pod's QoS class by upstream's rules (`GetPodQOS`), over containers and
/// init containers, counting only cpu and memory:
/// - BestEffort: no container requests or limits any of them;
/// - Guaranteed: every container limits both, and requests equal limits;
/// - Burstable: anything else.
pub fn qos_class(pod: &Pod) -> Result<QosClass, QuantityError> {
    let mut requests: [Option<Quantity>; 2] = [None, None];
    let mut limits: [Option<Quantity>; 2] = [None, None];
    let mut guaranteed = true;
    for c in all_containers(pod) {
        let mut limited = [false, false];
        for (i, name) in ["cpu", "memory"].iter().enumerate() {
            if let Some(q) = request_or_limit(c, name)?
                && q.is_positive()
            {
                requests[i] = Some(match requests[i] {
                    Some(sum) => sum.saturating_add(&q),
                    None => q,
                });
            }
            if let Some(q) = resource_quantity(c, "limits", name)?
                && q.is_positive()
            {
                limited[i] = true;
                limits[i] = Some(match limits[i] {
                    Some(sum) => sum.saturating_add(&q),
                    None => q,
                });
            }
        }
        if !(limited[0] && limited[1]) {
            guaranteed = false;
        }
    }
    if requests.iter().all(Option::is_none) && limits.iter().all(Option::is_none) {
        return Ok(QosClass::BestEffort);
    }
    if guaranteed {
        for i in 0..2 {
            if let Some(req) = requests[i]
                && limits[i] != Some(req)
            {
                guaranteed = false;
            }
        }
        let n_req = requests.iter().filter(|r| r.is_some()).count();
        let n_lim = limits.iter().filter(|l| l.is_some()).count();
        if guaranteed && n_req == n_lim {
            return Ok(QosClass::Guaranteed);
        }
    }
    Ok(QosClass::Burstable)
}

/// The priority at and above which a pod is critical (`system-cluster-critical`).
const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;

/// Whether the kubelet treats the pod as node-critical: priority class
/// `system-node-critical` and either a static or mirror pod or a priority of
/// at least 2,000,000,000.
pub fn is_node_critical(pod: &Pod) -> bool {
    let Some(spec) = &pod.spec else { return false };
    if spec.priority_class_name.as_deref() != Some("system-node-critical") {
        return false;
    }
    let annotations = pod.metadata.annotations.as_ref();
    let static_pod = annotations
        .and_then(|a| a.get("kubernetes.io/config.source"))
        .is_some_and(|s| s != "api");
    let mirror_pod = annotations.is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
    static_pod || mirror_pod || spec.priority.is_some_and(|p| p >= SYSTEM_CRITICAL_PRIORITY)
}

/// The kubelet's `oom_score_adj` for a container (`GetContainerOOMScoreAdjust`):
/// -997 for Guaranteed and node-critical pods, 1000 for BestEffort, and for
/// Burstable `1000 - 1000 * memoryRequest / memoryCapacity`, kept within
/// [3, 999] (upstream clamps at `1000 + guaranteedOOMScoreAdj` = 3, so that a
/// Burstable container always scores above a Guaranteed one). A sidecar
/// (an init container with `restartPolicy: Always`) scores no higher than the
/// pod's regular container with the smallest memory request.
pub fn oom_score_adj(
    pod: &Pod,
    container: &Container,
    memory_capacity: i64,
) -> Result<i32, QuantityError> {
    if is_node_critical(pod) {
        return Ok(GUARANTEED_OOM_SCORE_ADJ);
    }
    match qos_class(pod)? {
        QosClass::Guaranteed => return Ok(GUARANTEED_OOM_SCORE_ADJ),
        QosClass::BestEffort => return Ok(BEST_EFFORT_OOM_SCORE_ADJ),
        QosClass::Burstable => {}
    }
    let capacity = i128::from(memory_capacity.max(1));
    let score_for = |request: i64| -> i128 { 1000 - (1000 * i128::from(request)) / capacity };
    let request = memory_request(container)?;
    let mut score = score_for(request);
    let sidecar = container.restart_policy.as_deref() == Some("Always")
        && pod
            .spec
            .iter()
            .flat_map(|s| s.init_containers.iter().flatten())
            .any(|c| c.name == container.name);
    if sidecar {
        let regular = pod.spec.iter().flat_map(|s| s.containers.iter());
        let mut min_request: Option<i64> = None;
        for c in regular {
            let r = memory_request(c)?;
            min_request = Some(min_request.map_or(r, |m| m.min(r)));
        }
        if let Some(min) = min_request {
            score = score.min(score_for(min));
        }
    }
    let floor = i128::from(1000 + GUARANTEED_OOM_SCORE_ADJ);
    if score < floor {
        return Ok(1000 + GUARANTEED_OOM_SCORE_ADJ);
    }
    if score == i128::from(BEST_EFFORT_OOM_SCORE_ADJ) {
        return Ok(BEST_EFFORT_OOM_SCORE_ADJ - 1);
    }
    // within (3, 1000) here
    Ok(i32::try_from(score).unwrap_or(BEST_EFFORT_OOM_SCORE_ADJ - 1))
}

/// The pod's memory limit as the kubelet's pod cgroup gets it
/// (`ResourceConfigForPod`): the larger of the sum over regular containers and
/// the largest init container, and none when any container has no limit.
pub fn pod_memory_limit(pod: &Pod) -> Result<Option<i64>, QuantityError> {
    let Some(spec) = &pod.spec else {
        return Ok(None);
    };
    let mut sum: i64 = 0;
    for c in &spec.containers {
        match resource_quantity(c, "limits", "memory")? {
            Some(q) if q.is_positive() => sum = sum.saturating_add(q.value()),
            _ => return Ok(None),
        }
    }
    let mut init_max: i64 = 0;
    for c in spec.init_containers.iter().flatten() {
        match resource_quantity(c, "limits", "memory")? {
            Some(q) if q.is_positive() => init_max = init_max.max(q.value()),
            _ => return Ok(None),
        }
    }
    Ok(Some(sum.max(init_max)))
}

fn memory_request(container: &Container) -> Result<i64, QuantityError> {
    Ok(request_or_limit(container, "memory")?.map_or(0, |q| q.value()))
}

/// containerd's `restrict_oom_score_adj`: a process may not lower its
/// children's OOM score below its own without CAP_SYS_RESOURCE, so an agent
/// without it (in a container, say) asks for no less than `current`, its own
/// `/proc/self/oom_score_adj`.
pub fn restrict_oom_score_adj(preferred: i32, current: i32) -> i32 {
    preferred.max(current)
}

/// `cpu.shares` for a CPU request in millicores (`MilliCPUToShares`): 1024 per
/// CPU, at least 2, at most 262144.
pub fn milli_cpu_to_shares(milli_cpu: i64) -> u64 {
    if milli_cpu <= 0 {
        return MIN_SHARES as u64;
    }
    let shares = milli_cpu.saturating_mul(SHARES_PER_CPU) / 1000;
    shares.clamp(MIN_SHARES, MAX_SHARES) as u64
}

/// The CFS quota in microseconds for a CPU limit in millicores over `period`
/// (`milliCPUToQuota`): 0 (no quota) for no limit, else at least 1000.
pub fn milli_cpu_to_quota(milli_cpu: i64, period: i64) -> i64 {
    if milli_cpu <= 0 {
        return 0;
    }
    let quota = milli_cpu.saturating_mul(period) / 1000;
    quota.max(MIN_QUOTA_US)
}

/// The cgroup numbers for a container, as the kubelet computes them and
/// containerd's CRI writes them into the spec:
/// - `cpu.shares` from the CPU request (its limit when it has no request; 2 for none);
/// - CFS period 100 ms always, and a quota from the CPU limit when there is one;
/// - the memory limit, when there is one;
/// - a pids limit when the caller gives one (the node's `podPidsLimit`).
pub fn container_resources(
    container: &Container,
    pids_limit: Option<i64>,
) -> Result<LinuxResources, QuantityError> {
    let cpu_request = resource_quantity(container, "requests", "cpu")?;
    let cpu_limit = resource_quantity(container, "limits", "cpu")?.unwrap_or(Quantity::ZERO);
    let memory_limit = resource_quantity(container, "limits", "memory")?.unwrap_or(Quantity::ZERO);
    let shares = match cpu_request {
        None if !cpu_limit.is_zero() => milli_cpu_to_shares(cpu_limit.milli_value()),
        None => milli_cpu_to_shares(0),
        Some(req) => milli_cpu_to_shares(req.milli_value()),
    };
    let quota = milli_cpu_to_quota(cpu_limit.milli_value(), CPU_PERIOD_US);
    let mut cpu = LinuxCpuBuilder::default()
        .shares(shares)
        .period(CPU_PERIOD_US as u64);
    if quota != 0 {
        cpu = cpu.quota(quota);
    }
    let mut builder =
        LinuxResourcesBuilder::default().cpu(cpu.build().expect("all fields have defaults"));
    let limit = memory_limit.value();
    if limit > 0 {
        builder = builder.memory(
            LinuxMemoryBuilder::default()
                .limit(limit)
                .build()
                .expect("all fields have defaults"),
        );
    }
    if let Some(pids) = pids_limit {
        builder = builder.pids(
            LinuxPidsBuilder::default()
                .limit(pids)
                .build()
                .expect("all fields have defaults"),
        );
    }
    Ok(builder.build().expect("all fields have defaults"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pod from container resource lists: each entry is (requests, limits)
    /// as "cpu,memory" with "-" for unset.
    fn pod(containers: &[(&str, &str)], init: &[(&str, &str)]) -> Pod {
        let list = |spec: &str| -> serde_json::Value {
            let mut m = serde_json::Map::new();
            let parts: Vec<&str> = spec.split(',').collect();
            for (name, v) in ["cpu", "memory"].iter().zip(parts) {
                if v != "-" {
                    m.insert(name.to_string(), serde_json::Value::String(v.into()));
                }
            }
            serde_json::Value::Object(m)
        };
        let make = |cs: &[(&str, &str)], prefix: &str| -> Vec<serde_json::Value> {
            cs.iter()
                .enumerate()
                .map(|(i, (req, lim))| {
                    serde_json::json!({
                        "name": format!("{prefix}{i}"),
                        "resources": {"requests": list(req), "limits": list(lim)}
                    })
                })
                .collect()
        };
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"containers": make(containers, "c"), "initContainers": make(init, "i")}
        }))
        .unwrap()
    }

    #[test]
    fn qos_classes_as_upstream() {
        use QosClass::*;
        type Resources<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(Resources, Resources, QosClass)] = &[
            (&[("-,-", "-,-")], &[], BestEffort),
            (&[("-,-", "-,-"), ("-,-", "-,-")], &[], BestEffort),
            // zero requests count as none
            (&[("0,0", "-,-")], &[], BestEffort),
            (&[("100m,-", "-,-")], &[], Burstable),
            (&[("-,128Mi", "-,-")], &[], Burstable),
            (&[("1,1Gi", "1,1Gi")], &[], Guaranteed),
            (&[("1000m,1024Mi", "1,1Gi")], &[], Guaranteed),
            // limits only: requests default to limits
            (&[("-,-", "500m,256Mi")], &[], Guaranteed),
            (&[("100m,1Gi", "1,1Gi")], &[], Burstable),
            (&[("1,1Gi", "1,-")], &[], Burstable),
            (&[("1,1Gi", "1,1Gi"), ("-,-", "-,-")], &[], Burstable),
            (&[("1,1Gi", "1,1Gi"), ("2,2Gi", "2,2Gi")], &[], Guaranteed),
            // init containers count
            (&[("1,1Gi", "1,1Gi")], &[("-,-", "-,-")], Burstable),
            (&[("-,-", "-,-")], &[("100m,-", "-,-")], Burstable),
            (&[("1,1Gi", "1,1Gi")], &[("1,1Gi", "1,1Gi")], Guaranteed),
        ];
        for (containers, init, want) in cases {
            let got = qos_class(&pod(containers, init)).unwrap();
            assert_eq!(got, *want, "containers {containers:?} init {init:?}");
        }
    }

    #[test]
    fn oom_score_adj_as_upstream() {
        const GI: i64 = 1 << 30;
        let capacity = 4 * GI;
        type Resources<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(Resources, i64, i32)] = &[
            (&[("-,-", "-,-")], capacity, 1000),
            (&[("1,1Gi", "1,1Gi")], capacity, -997),
            // a quarter of memory: 1000 - 250
            (&[("100m,1Gi", "-,-")], capacity, 750),
            // no memory request: 1000 would tie BestEffort, so 999
            (&[("100m,-", "-,-")], capacity, 999),
            // a tiny request rounds to 1000, so 999
            (&[("100m,1Mi", "-,-")], capacity, 999),
            // all of memory: 0, floored at 3
            (&[("100m,4Gi", "-,-")], capacity, 3),
            // more than all of memory: negative, floored at 3
            (&[("100m,8Gi", "-,-")], capacity, 3),
            (&[("100m,4000Mi", "-,-")], capacity, 24),
        ];
        for (containers, cap, want) in cases {
            let p = pod(containers, &[]);
            let c = &p.spec.as_ref().unwrap().containers[0];
            assert_eq!(oom_score_adj(&p, c, *cap).unwrap(), *want, "{containers:?}");
        }
    }

    #[test]
    fn sidecar_scores_no_higher_than_the_smallest_regular_container() {
        let mut p = pod(
            &[("100m,2Gi", "-,-"), ("100m,1Gi", "-,-")],
            &[("10m,16Mi", "-,-")],
        );
        let spec = p.spec.as_mut().unwrap();
        spec.init_containers.as_mut().unwrap()[0].restart_policy = Some("Always".into());
        let sidecar = spec.init_containers.as_ref().unwrap()[0].clone();
        // 1000 - 1000*1Gi/4Gi = 750, below its own 997
        assert_eq!(oom_score_adj(&p, &sidecar, 4 << 30).unwrap(), 750);
        let mut plain = sidecar.clone();
        plain.restart_policy = None;
        assert_eq!(oom_score_adj(&p, &plain, 4 << 30).unwrap(), 997);
    }

    #[test]
    fn node_critical_pods_score_as_guaranteed() {
        let mut p = pod(&[("-,-", "-,-")], &[]);
        let c = p.spec.as_ref().unwrap().containers[0].clone();
        p.spec.as_mut().unwrap().priority_class_name = Some("system-node-critical".into());
        // not static and no priority: not critical
        assert_eq!(oom_score_adj(&p, &c, 1 << 30).unwrap(), 1000);
        p.spec.as_mut().unwrap().priority = Some(2_000_001_000);
        assert_eq!(oom_score_adj(&p, &c, 1 << 30).unwrap(), -997);
        p.spec.as_mut().unwrap().priority = None;
        p.metadata.annotations = Some(
            [(
                "kubernetes.io/config.source".to_string(),
                "file".to_string(),
            )]
            .into(),
        );
        assert_eq!(oom_score_adj(&p, &c, 1 << 30).unwrap(), -997);
    }

    #[test]
    fn restricted_oom_scores() {
        assert_eq!(restrict_oom_score_adj(-998, 0), 0);
        assert_eq!(restrict_oom_score_adj(500, 0), 500);
        assert_eq!(restrict_oom_score_adj(-997, -999), -997);
    }

    #[test]
    fn cpu_shares_and_quota_math() {
        let shares: &[(i64, u64)] = &[
            (0, 2),
            (1, 2),
            (2, 2),
            (250, 256),
            (1000, 1024),
            (1500, 1536),
            (300_000, 262_144),
        ];
        for (milli, want) in shares {
            assert_eq!(milli_cpu_to_shares(*milli), *want, "shares for {milli}m");
        }
        let quotas: &[(i64, i64)] = &[
            (0, 0),
            (1, 1000),
            (5, 1000),
            (10, 1000),
            (250, 25_000),
            (1000, 100_000),
            (2500, 250_000),
        ];
        for (milli, want) in quotas {
            assert_eq!(
                milli_cpu_to_quota(*milli, CPU_PERIOD_US),
                *want,
                "quota for {milli}m"
            );
        }
    }

    #[test]
    fn container_resources_become_cgroup_numbers() {
        // (requests, limits) -> (shares, quota, memory limit)
        type Want = (u64, Option<i64>, Option<i64>);
        let cases: &[((&str, &str), Want)] = &[
            (("-,-", "-,-"), (2, None, None)),
            (("250m,64Mi", "-,-"), (256, None, None)),
            (
                ("250m,64Mi", "500m,128Mi"),
                (256, Some(50_000), Some(134_217_728)),
            ),
            // limit only: shares from the limit
            (("-,-", "2,1G"), (2048, Some(200_000), Some(1_000_000_000))),
            (("1m,-", "1m,-"), (2, Some(1000), None)),
        ];
        for ((req, lim), (shares, quota, mem)) in cases {
            let p = pod(&[(req, lim)], &[]);
            let r =
                container_resources(&p.spec.as_ref().unwrap().containers[0], Some(1024)).unwrap();
            let cpu = r.cpu().as_ref().unwrap();
            assert_eq!(cpu.shares(), Some(*shares), "{req} {lim}");
            assert_eq!(cpu.quota(), *quota, "{req} {lim}");
            assert_eq!(cpu.period(), Some(100_000), "{req} {lim}");
            assert_eq!(
                r.memory().as_ref().and_then(|m| m.limit()),
                *mem,
                "{req} {lim}"
            );
            assert_eq!(r.pids().as_ref().map(|p| p.limit()), Some(1024));
        }
    }

    #[test]
    fn bad_quantities_are_errors() {
        let p = pod(&[("lots,-", "-,-")], &[]);
        let err = qos_class(&p).unwrap_err().to_string();
        assert!(err.contains("\"lots\""), "{err}");
        assert!(container_resources(&p.spec.as_ref().unwrap().containers[0], None).is_err());
    }
}
