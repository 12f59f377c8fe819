//! Resource arithmetic: what a pod requests and what a node can give.
//!
//! A pod's request is computed as upstream's resource helpers do: the sum
//! of its containers, or the largest init container if that is more (with
//! restartable "sidecar" init containers counted as running alongside),
//! plus the pod overhead. A container's missing request defaults to its
//! limit, as the API's defaulting would have set it. For scoring, upstream
//! counts a container with no CPU or memory request as 100m and 200 MiB
//! (`non_zero`), so that best-effort pods still spread.
//!
//! Pure: no I/O. Depends only on k8s-openapi's types.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;

use crate::quantity::{Quantity, QuantityError};

/// Upstream's default CPU request for scoring a container that sets none.
pub const DEFAULT_MILLI_CPU: i64 = 100;
/// Upstream's default memory request for scoring a container that sets none.
pub const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;

/// An amount of each resource the scheduler accounts for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    /// Extended resources (`example.com/gpu`) and hugepages, by name,
    /// sorted by name, each at most once.
    pub scalar: Vec<(String, i64)>,
}

/// CPU and memory as counted for scoring (with upstream's defaults).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NonZero {
    pub milli_cpu: i64,
    pub memory: i64,
}

impl NonZero {
    pub fn add(&mut self, other: NonZero) {
        self.milli_cpu = self.milli_cpu.saturating_add(other.milli_cpu);
        self.memory = self.memory.saturating_add(other.memory);
    }

    pub fn sub(&mut self, other: NonZero) {
        self.milli_cpu = self.milli_cpu.saturating_sub(other.milli_cpu);
        self.memory = self.memory.saturating_sub(other.memory);
    }

    fn max(&mut self, other: NonZero) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
    }
}

impl Resources {
    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.iter().all(|(_, v)| *v == 0)
    }

    /// The amount of an extended resource (0 if absent).
    pub fn scalar(&self, name: &str) -> i64 {
        self.scalar
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .map(|i| self.scalar[i].1)
            .unwrap_or(0)
    }

    fn scalar_mut(&mut self, name: &str) -> &mut i64 {
        let i = match self.scalar.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(i) => i,
            Err(i) => {
                self.scalar.insert(i, (name.to_string(), 0));
                i
            }
        };
        &mut self.scalar[i].1
    }

    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_add(other.milli_cpu);
        self.memory = self.memory.saturating_add(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_add(other.ephemeral_storage);
        for (name, v) in &other.scalar {
            let slot = self.scalar_mut(name);
            *slot = slot.saturating_add(*v);
        }
    }

    pub fn sub(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_sub(other.milli_cpu);
        self.memory = self.memory.saturating_sub(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_sub(other.ephemeral_storage);
        for (name, v) in &other.scalar {
            let slot = self.scalar_mut(name);
            *slot = slot.saturating_sub(*v);
        }
    }

    fn max(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (name, v) in &other.scalar {
            let slot = self.scalar_mut(name);
            *slot = (*slot).max(*v);
        }
    }

    /// Sets one named resource; names the scheduler does not account for
    /// are ignored, as upstream ignores them.
    fn set(&mut self, name: &str, q: &Quantity) {
        match name {
            "cpu" => self.milli_cpu = q.milli(),
            "memory" => self.memory = q.value(),
            "ephemeral-storage" => self.ephemeral_storage = q.value(),
            other if is_scalar(other) => *self.scalar_mut(other) = q.value(),
            _ => {}
        }
    }
}

/// Whether upstream accounts for a resource of this name as a "scalar"
/// resource: extended resources (domain-qualified outside kubernetes.io)
/// and hugepages.
fn is_scalar(name: &str) -> bool {
    name.starts_with("hugepages-")
        || (name.contains('/')
            && !name.starts_with("kubernetes.io/")
            && !name.starts_with("requests."))
}

/// A resource map whose quantities did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}[{resource}]: {source}")]
pub struct ResourceError {
    /// Where the quantity was, e.g. `spec.containers[app].resources.requests`.
    pub field: String,
    pub resource: String,
    #[source]
    pub source: QuantityError,
}

fn parse_map(
    map: Option<&BTreeMap<String, K8sQuantity>>,
    field: &dyn Fn() -> String,
    out: &mut Resources,
    seen: &mut Vec<String>,
) -> Result<(), ResourceError> {
    for (name, quantity) in map.into_iter().flatten() {
        let q = Quantity::parse(&quantity.0).map_err(|source| ResourceError {
            field: field(),
            resource: name.clone(),
            source,
        })?;
        if q.is_negative() {
            return Err(ResourceError {
                field: field(),
                resource: name.clone(),
                source: QuantityError {
                    text: quantity.0.clone(),
                    why: "it must not be negative",
                },
            });
        }
        out.set(name, &q);
        seen.push(name.clone());
    }
    Ok(())
}

/// What one container requests, and the same with scoring defaults.
fn container_requests(c: &Container, kind: &str) -> Result<(Resources, NonZero), ResourceError> {
    let mut r = Resources::default();
    let mut seen = Vec::new();
    let resources = c.resources.as_ref();
    // A limit stands in for a missing request, as API defaulting does.
    let field = || format!("spec.{kind}[{}].resources.limits", c.name);
    parse_map(
        resources.and_then(|r| r.limits.as_ref()),
        &field,
        &mut r,
        &mut seen,
    )?;
    let mut with_limits = seen.clone();
    seen.clear();
    let mut requests = Resources::default();
    let field = || format!("spec.{kind}[{}].resources.requests", c.name);
    parse_map(
        resources.and_then(|r| r.requests.as_ref()),
        &field,
        &mut requests,
        &mut seen,
    )?;
    for name in &seen {
        match name.as_str() {
            "cpu" => r.milli_cpu = requests.milli_cpu,
            "memory" => r.memory = requests.memory,
            "ephemeral-storage" => r.ephemeral_storage = requests.ephemeral_storage,
            other if is_scalar(other) => *r.scalar_mut(other) = requests.scalar(other),
            _ => {}
        }
    }
    with_limits.extend(seen);
    let non_zero = NonZero {
        milli_cpu: if with_limits.iter().any(|n| n == "cpu") {
            r.milli_cpu
        } else {
            DEFAULT_MILLI_CPU
        },
        memory: if with_limits.iter().any(|n| n == "memory") {
            r.memory
        } else {
            DEFAULT_MEMORY
        },
    };
    Ok((r, non_zero))
}

/// What a pod requests: `max(sum(containers), init phase) + overhead`.
pub fn pod_requests(pod: &Pod) -> Result<(Resources, NonZero), ResourceError> {
    let Some(spec) = pod.spec.as_ref() else {
        return Ok((Resources::default(), NonZero::default()));
    };
    let mut total = Resources::default();
    let mut total_nz = NonZero::default();
    for c in &spec.containers {
        let (r, nz) = container_requests(c, "containers")?;
        total.add(&r);
        total_nz.add(nz);
    }
    // Init containers run one at a time, except restartable ones
    // (sidecars), which keep running beside everything after them.
    let mut init_max = Resources::default();
    let mut init_max_nz = NonZero::default();
    let mut sidecars = Resources::default();
    let mut sidecars_nz = NonZero::default();
    for c in spec.init_containers.iter().flatten() {
        let (r, nz) = container_requests(c, "initContainers")?;
        let (mut during, mut during_nz) = (r.clone(), nz);
        if c.restart_policy.as_deref() == Some("Always") {
            total.add(&r);
            total_nz.add(nz);
            sidecars.add(&r);
            sidecars_nz.add(nz);
            during = sidecars.clone();
            during_nz = sidecars_nz;
        } else {
            during.add(&sidecars);
            during_nz.add(sidecars_nz);
        }
        init_max.max(&during);
        init_max_nz.max(during_nz);
    }
    total.max(&init_max);
    total_nz.max(init_max_nz);
    let mut overhead = Resources::default();
    let mut seen = Vec::new();
    parse_map(
        spec.overhead.as_ref(),
        &|| "spec.overhead".to_string(),
        &mut overhead,
        &mut seen,
    )?;
    total.add(&overhead);
    total_nz.add(NonZero {
        milli_cpu: overhead.milli_cpu,
        memory: overhead.memory,
    });
    Ok((total, total_nz))
}

/// What a node can give, and how many pods it takes.
///
/// A quantity that does not parse counts as zero (and is reported), so a
/// node with a broken status takes no pods that need that resource.
pub fn node_allocatable(node: &Node) -> (Resources, i64, Vec<ResourceError>) {
    let mut out = Resources::default();
    let mut pods = 0;
    let mut errors = Vec::new();
    let status = node.status.as_ref();
    let map = status
        .and_then(|s| s.allocatable.as_ref())
        .or_else(|| status.and_then(|s| s.capacity.as_ref()));
    for (name, quantity) in map.into_iter().flatten() {
        match Quantity::parse(&quantity.0) {
            Ok(q) if !q.is_negative() => {
                if name == "pods" {
                    pods = q.value();
                } else {
                    out.set(name, &q);
                }
            }
            Ok(_) => errors.push(ResourceError {
                field: "status.allocatable".into(),
                resource: name.clone(),
                source: QuantityError {
                    text: quantity.0.clone(),
                    why: "it must not be negative",
                },
            }),
            Err(source) => errors.push(ResourceError {
                field: "status.allocatable".into(),
                resource: name.clone(),
                source,
            }),
        }
    }
    (out, pods, errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
    }

    fn res(requests: serde_json::Value) -> serde_json::Value {
        json!({"name": "c", "image": "i", "resources": {"requests": requests}})
    }

    #[test]
    fn sums_containers_and_takes_the_largest_init_container() {
        let p = pod(json!({
            "containers": [res(json!({"cpu": "100m", "memory": "1Gi"})), res(json!({"cpu": "200m"}))],
            "initContainers": [res(json!({"cpu": "1", "memory": "10Mi"}))],
            "overhead": {"cpu": "10m", "memory": "1Mi"},
        }));
        let (r, nz) = pod_requests(&p).unwrap();
        assert_eq!(r.milli_cpu, 1010);
        assert_eq!(r.memory, (1 << 30) + (1 << 20));
        // The second container's memory counts as 200 MiB for scoring.
        assert_eq!(nz.memory, (1 << 30) + DEFAULT_MEMORY + (1 << 20));
        assert_eq!(nz.milli_cpu, 1010);
    }

    #[test]
    fn sidecars_run_beside_the_containers() {
        let mut sidecar = res(json!({"cpu": "500m"}));
        sidecar["restartPolicy"] = json!("Always");
        let p = pod(json!({
            "containers": [res(json!({"cpu": "100m"}))],
            "initContainers": [sidecar, res(json!({"cpu": "300m"}))],
        }));
        let (r, _) = pod_requests(&p).unwrap();
        // The second init container runs beside the sidecar: 300m + 500m
        // beats the app beside the sidecar: 100m + 500m.
        assert_eq!(r.milli_cpu, 800);
    }

    #[test]
    fn limits_stand_in_for_missing_requests_and_extended_resources_count() {
        let p = pod(json!({"containers": [{
            "name": "c", "image": "i",
            "resources": {"limits": {"cpu": "2", "example.com/gpu": "1", "hugepages-2Mi": "4Mi"}},
        }]}));
        let (r, nz) = pod_requests(&p).unwrap();
        assert_eq!(r.milli_cpu, 2000);
        assert_eq!(r.scalar("example.com/gpu"), 1);
        assert_eq!(r.scalar("hugepages-2Mi"), 4 << 20);
        assert_eq!(nz.memory, DEFAULT_MEMORY);
    }

    #[test]
    fn a_bad_quantity_is_a_clear_error() {
        let p = pod(json!({"containers": [res(json!({"memory": "lots"}))]}));
        let e = pod_requests(&p).unwrap_err();
        assert_eq!(
            e.to_string(),
            "spec.containers[c].resources.requests[memory]: quantity \"lots\" is invalid: it has no digits"
        );
        let p = pod(json!({"containers": [res(json!({"cpu": "-1"}))]}));
        assert!(pod_requests(&p).is_err());
    }

    #[test]
    fn a_pod_without_spec_requests_nothing() {
        let p: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}})).unwrap();
        assert!(pod_requests(&p).unwrap().0.is_zero());
    }

    #[test]
    fn reads_node_allocatable() {
        let n: Node = serde_json::from_value(json!({
            "metadata": {"name": "n"},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110", "ephemeral-storage": "bad"}},
        }))
        .unwrap();
        let (r, pods, errors) = node_allocatable(&n);
        assert_eq!((r.milli_cpu, r.memory, pods), (4000, 8 << 30, 110));
        assert_eq!(r.ephemeral_storage, 0);
        assert_eq!(errors.len(), 1);
    }
}
