//! The scheduler's picture of the cluster: nodes, each with the running
//! sums of what its pods request, kept up to date one change at a time.
//!
//! Everything a decision needs per node is precomputed here when a node or
//! pod changes (allocatable, requested totals, pod count, host ports in
//! use, pods per owning workload), so that placing one pod costs O(nodes)
//! cheap comparisons and never walks a node's pods for the common filters.
//!
//! A node whose Ready condition is not True carries an implicit
//! `node.kubernetes.io/not-ready` (Ready False or missing) or
//! `node.kubernetes.io/unreachable` (Ready Unknown) NoSchedule taint, the
//! taint upstream's node lifecycle controller would have added; so such a
//! node is filtered as upstream's scheduler filters it, and a pod that
//! tolerates the taint may still land there.
//!
//! Pods bound to a node the snapshot has not seen (yet) are kept against
//! that name and counted once the node appears, as upstream's cache does.
//!
//! Pure data: no I/O, no clock.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, Taint};

use crate::resources::{self, NonZero, Resources};

/// The implicit taint of a node whose Ready condition is False or missing.
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The implicit taint of a node whose Ready condition is Unknown.
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// The taint a pod must tolerate to land on a cordoned node.
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// A host port in use: `(protocol, ip, port)`, ip `0.0.0.0` for any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub protocol: String,
    pub ip: String,
    pub port: i32,
}

impl HostPort {
    /// Whether two host ports cannot be bound on the same node.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == "0.0.0.0" || other.ip == "0.0.0.0")
    }
}

/// The host ports a pod asks for (its containers and sidecars).
pub fn host_ports(pod: &Pod) -> Vec<HostPort> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|p| *p > 0)?;
            Some(HostPort {
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                ip: p
                    .host_ip
                    .clone()
                    .filter(|ip| !ip.is_empty())
                    .unwrap_or_else(|| "0.0.0.0".into()),
                port,
            })
        })
        .collect()
}

/// `namespace/name`, the key the scheduler knows a pod by.
pub fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The uid of a pod's controlling owner (its ReplicaSet, Job, …).
pub fn controller_uid(pod: &Pod) -> Option<String> {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.clone())
}

/// A pod that is on a node (bound, or assumed bound by this scheduler).
#[derive(Debug, Clone, PartialEq)]
pub struct PlacedPod {
    pub key: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub requests: Resources,
    pub non_zero: NonZero,
    pub ports: Vec<HostPort>,
    pub owner: Option<String>,
    /// Being deleted: still holds its resources, but topology spread does
    /// not count it (as upstream).
    pub terminating: bool,
}

impl PlacedPod {
    /// Reads a pod that is already on a node. A quantity that does not
    /// parse counts as nothing (the pod is there whatever it says); the
    /// error is returned so the caller can report it.
    pub fn from_pod(pod: &Pod) -> (PlacedPod, Option<resources::ResourceError>) {
        let (requests, non_zero, error) = match resources::pod_requests(pod) {
            Ok((r, nz)) => (r, nz, None),
            Err(e) => (Resources::default(), NonZero::default(), Some(e)),
        };
        (
            PlacedPod {
                key: pod_key(pod),
                namespace: pod
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into()),
                labels: pod.metadata.labels.clone().unwrap_or_default(),
                requests,
                non_zero,
                ports: host_ports(pod),
                owner: controller_uid(pod),
                terminating: pod.metadata.deletion_timestamp.is_some(),
            },
            error,
        )
    }
}

/// One node and what is placed on it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub name: String,
    /// Whether the Node object exists (false: only pods bound to its name).
    pub present: bool,
    pub labels: BTreeMap<String, String>,
    /// `spec.taints`, then the implicit readiness taint if any.
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub allocatable: Resources,
    pub allowed_pods: i64,
    /// The sum of the requests of the pods on the node.
    pub requested: Resources,
    /// The same, with upstream's scoring defaults.
    pub non_zero_requested: NonZero,
    pub pods: Vec<Arc<PlacedPod>>,
    /// Host ports in use, with the pod that uses each.
    pub used_ports: Vec<(HostPort, usize)>,
    /// Pods on the node by controlling owner uid.
    pub owners: HashMap<String, u32>,
}

impl NodeInfo {
    fn empty(name: &str) -> NodeInfo {
        NodeInfo {
            name: name.to_string(),
            present: false,
            labels: BTreeMap::new(),
            taints: Vec::new(),
            unschedulable: false,
            allocatable: Resources::default(),
            allowed_pods: 0,
            requested: Resources::default(),
            non_zero_requested: NonZero::default(),
            pods: Vec::new(),
            used_ports: Vec::new(),
            owners: HashMap::new(),
        }
    }

    fn set_node(&mut self, node: &Node) -> Vec<resources::ResourceError> {
        let (allocatable, allowed_pods, errors) = resources::node_allocatable(node);
        self.present = true;
        self.labels = node.metadata.labels.clone().unwrap_or_default();
        let spec = node.spec.as_ref();
        self.unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        self.taints = spec.and_then(|s| s.taints.clone()).unwrap_or_default();
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.as_str());
        let implicit = match ready {
            Some("True") => None,
            Some("Unknown") => Some(TAINT_UNREACHABLE),
            _ => Some(TAINT_NOT_READY),
        };
        if let Some(key) = implicit
            && !self
                .taints
                .iter()
                .any(|t| t.key == key && t.effect == "NoSchedule")
        {
            self.taints.push(Taint {
                key: key.to_string(),
                effect: "NoSchedule".to_string(),
                ..Taint::default()
            });
        }
        self.allocatable = allocatable;
        self.allowed_pods = allowed_pods;
        errors
    }

    fn add_pod(&mut self, pod: Arc<PlacedPod>) {
        self.requested.add(&pod.requests);
        self.non_zero_requested.add(pod.non_zero);
        let index = self.pods.len();
        for p in &pod.ports {
            self.used_ports.push((p.clone(), index));
        }
        if let Some(owner) = &pod.owner {
            *self.owners.entry(owner.clone()).or_default() += 1;
        }
        self.pods.push(pod);
    }

    fn remove_pod(&mut self, key: &str) -> Option<Arc<PlacedPod>> {
        let index = self.pods.iter().position(|p| p.key == key)?;
        let pod = self.pods.swap_remove(index);
        self.requested.sub(&pod.requests);
        self.non_zero_requested.sub(pod.non_zero);
        if let Some(owner) = &pod.owner
            && let Some(n) = self.owners.get_mut(owner)
        {
            *n -= 1;
            if *n == 0 {
                self.owners.remove(owner);
            }
        }
        // The last pod moved into `index`; renumber its ports.
        let moved_from = self.pods.len();
        self.used_ports.retain(|(_, i)| *i != index);
        for (_, i) in &mut self.used_ports {
            if *i == moved_from {
                *i = index;
            }
        }
        Some(pod)
    }

    /// How many pods on the node have this controlling owner.
    pub fn owned_by(&self, owner: &str) -> u32 {
        self.owners.get(owner).copied().unwrap_or(0)
    }
}

/// Nodes and the pods placed on them.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    nodes: Vec<NodeInfo>,
    by_name: HashMap<String, usize>,
    /// Where each placed pod is.
    placed: HashMap<String, usize>,
    present: usize,
}

impl Snapshot {
    pub fn new() -> Snapshot {
        Snapshot::default()
    }

    /// A snapshot of these nodes and pods (pods without a node are skipped).
    pub fn from_objects<'a>(
        nodes: impl IntoIterator<Item = &'a Node>,
        pods: impl IntoIterator<Item = &'a Pod>,
    ) -> Snapshot {
        let mut s = Snapshot::new();
        for n in nodes {
            s.upsert_node(n);
        }
        for p in pods {
            if let Some(node) = bound_node(p) {
                s.place(Arc::new(PlacedPod::from_pod(p).0), node);
            }
        }
        s
    }

    /// The nodes that exist, as filters see them.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.nodes.iter().filter(|n| n.present)
    }

    /// All node slots, in a stable order, including names only pods know.
    pub fn slots(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// How many nodes exist.
    pub fn node_count(&self) -> usize {
        self.present
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.by_name
            .get(name)
            .map(|i| &self.nodes[*i])
            .filter(|n| n.present)
    }

    /// A node slot by name, present or only known from its pods.
    pub fn node_slot(&self, name: &str) -> Option<&NodeInfo> {
        self.by_name.get(name).map(|i| &self.nodes[*i])
    }

    /// The keys of all placed pods.
    pub fn placed_keys(&self) -> impl Iterator<Item = &String> {
        self.placed.keys()
    }

    /// The node a pod is placed on, if any.
    pub fn placed_on(&self, key: &str) -> Option<&str> {
        self.placed.get(key).map(|i| self.nodes[*i].name.as_str())
    }

    fn slot(&mut self, name: &str) -> usize {
        if let Some(i) = self.by_name.get(name) {
            return *i;
        }
        self.nodes.push(NodeInfo::empty(name));
        let i = self.nodes.len() - 1;
        self.by_name.insert(name.to_string(), i);
        i
    }

    /// Adds or updates a node. Returns the allocatable quantities that did
    /// not parse (counted as zero).
    pub fn upsert_node(&mut self, node: &Node) -> Vec<resources::ResourceError> {
        let Some(name) = node.metadata.name.as_deref().filter(|n| !n.is_empty()) else {
            return Vec::new();
        };
        let i = self.slot(name);
        if !self.nodes[i].present {
            self.present += 1;
        }
        self.nodes[i].set_node(node)
    }

    /// Removes a node. Pods still bound to it stay counted against its name.
    pub fn remove_node(&mut self, name: &str) {
        let Some(&i) = self.by_name.get(name) else {
            return;
        };
        if self.nodes[i].present {
            self.present -= 1;
        }
        if self.nodes[i].pods.is_empty() {
            self.drop_slot(i);
        } else {
            let keep = NodeInfo::empty(name);
            let slot = &mut self.nodes[i];
            slot.present = false;
            slot.labels = keep.labels;
            slot.taints = keep.taints;
        }
    }

    fn drop_slot(&mut self, i: usize) {
        let removed = self.nodes.swap_remove(i);
        self.by_name.remove(&removed.name);
        if i < self.nodes.len() {
            let moved = &self.nodes[i];
            self.by_name.insert(moved.name.clone(), i);
            for p in &moved.pods {
                self.placed.insert(p.key.clone(), i);
            }
        }
    }

    /// Places a pod on a node (replacing wherever it was before).
    pub fn place(&mut self, pod: Arc<PlacedPod>, node: &str) {
        self.remove_pod(&pod.key);
        let i = self.slot(node);
        self.placed.insert(pod.key.clone(), i);
        self.nodes[i].add_pod(pod);
    }

    /// Forgets a pod. Returns the node it was on.
    pub fn remove_pod(&mut self, key: &str) -> Option<String> {
        let i = self.placed.remove(key)?;
        self.nodes[i].remove_pod(key);
        let name = self.nodes[i].name.clone();
        if !self.nodes[i].present && self.nodes[i].pods.is_empty() {
            self.drop_slot(i);
        }
        Some(name)
    }
}

/// The node a pod is bound to, if any.
pub fn bound_node(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "10"},
                       "conditions": [{"type": "Ready", "status": "True"}]},
        }))
        .unwrap()
    }

    fn pod(name: &str, node: &str, cpu: &str, port: Option<i32>) -> Pod {
        let mut c = json!({"name": "c", "image": "i", "resources": {"requests": {"cpu": cpu}}});
        if let Some(p) = port {
            c["ports"] = json!([{"containerPort": 80, "hostPort": p}]);
        }
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns",
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u1", "controller": true}]},
            "spec": {"nodeName": node, "containers": [c]},
        }))
        .unwrap()
    }

    #[test]
    fn keeps_running_sums() {
        let nodes = [node("a"), node("b")];
        let pods = [
            pod("p1", "a", "500m", Some(8080)),
            pod("p2", "a", "250m", Some(9090)),
            pod("p3", "b", "1", None),
        ];
        let mut s = Snapshot::from_objects(&nodes, &pods);
        let a = s.node("a").unwrap();
        assert_eq!(a.requested.milli_cpu, 750);
        assert_eq!(a.pods.len(), 2);
        assert_eq!(a.owned_by("u1"), 2);
        assert_eq!(a.used_ports.len(), 2);
        assert_eq!(s.remove_pod("ns/p1").as_deref(), Some("a"));
        let a = s.node("a").unwrap();
        assert_eq!(a.requested.milli_cpu, 250);
        assert_eq!(a.used_ports, vec![(host_ports(&pods[1])[0].clone(), 0)]);
        assert_eq!(a.owned_by("u1"), 1);
        // Moving a pod takes it off its old node.
        s.place(Arc::new(PlacedPod::from_pod(&pods[1]).0), "b");
        assert_eq!(s.node("a").unwrap().requested.milli_cpu, 0);
        assert_eq!(s.node("b").unwrap().requested.milli_cpu, 1250);
    }

    #[test]
    fn pods_on_unknown_nodes_wait_for_the_node() {
        let mut s = Snapshot::new();
        s.place(
            Arc::new(PlacedPod::from_pod(&pod("p", "later", "1", None)).0),
            "later",
        );
        assert_eq!(s.node_count(), 0);
        assert!(s.node("later").is_none());
        s.upsert_node(&node("later"));
        assert_eq!(s.node("later").unwrap().requested.milli_cpu, 1000);
        s.remove_node("later");
        assert_eq!(s.node_count(), 0);
        assert_eq!(s.placed_on("ns/p"), Some("later"));
        s.remove_pod("ns/p");
        assert!(s.slots().is_empty());
    }

    #[test]
    fn readiness_becomes_an_implicit_taint() {
        let mut n = node("n");
        let mut s = Snapshot::new();
        s.upsert_node(&n);
        assert!(s.node("n").unwrap().taints.is_empty());
        n.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = "Unknown".into();
        s.upsert_node(&n);
        assert_eq!(s.node("n").unwrap().taints[0].key, TAINT_UNREACHABLE);
        n.status.as_mut().unwrap().conditions = None;
        s.upsert_node(&n);
        let taints = &s.node("n").unwrap().taints;
        assert_eq!((taints.len(), taints[0].key.as_str()), (1, TAINT_NOT_READY));
    }

    #[test]
    fn host_port_conflicts() {
        let hp = |ip: &str, port, proto: &str| HostPort {
            protocol: proto.into(),
            ip: ip.into(),
            port,
        };
        assert!(hp("0.0.0.0", 80, "TCP").conflicts(&hp("10.0.0.1", 80, "TCP")));
        assert!(hp("10.0.0.1", 80, "TCP").conflicts(&hp("10.0.0.1", 80, "TCP")));
        assert!(!hp("10.0.0.1", 80, "TCP").conflicts(&hp("10.0.0.2", 80, "TCP")));
        assert!(!hp("0.0.0.0", 80, "TCP").conflicts(&hp("0.0.0.0", 80, "UDP")));
        assert!(!hp("0.0.0.0", 80, "TCP").conflicts(&hp("0.0.0.0", 81, "TCP")));
    }
}
