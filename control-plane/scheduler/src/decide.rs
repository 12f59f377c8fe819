//! The placement decision: a pure function from a [`Snapshot`] and a
//! [`PendingPod`] to a node name or a [`FitError`].
//!
//! It runs upstream's default filters in upstream's order, and a node is
//! rejected by the first filter it fails (so each node contributes the
//! reasons of one filter, as in upstream's framework):
//!
//! 1. NodeUnschedulable: `spec.unschedulable`, unless the pod tolerates
//!    `node.kubernetes.io/unschedulable:NoSchedule`;
//! 2. TaintToleration: the first NoSchedule/NoExecute taint the pod does
//!    not tolerate (including the implicit readiness taint, see
//!    [`crate::snapshot`]);
//! 3. NodeAffinity: `nodeSelector` and required node affinity;
//! 4. NodePorts: host ports already in use;
//! 5. NodeResourcesFit: pod count against allocatable pods, then cpu,
//!    memory, ephemeral-storage and extended resources (every shortfall is
//!    a reason of its own);
//! 6. PodTopologySpread: `DoNotSchedule` constraints.
//!
//! The feasible nodes are then scored, each score normalised to 0–100 and
//! weighted as upstream's default profile weighs it: least allocated cpu
//! and memory (1), balanced allocation (1), untolerated PreferNoSchedule
//! taints (3), preferred node affinity (2), and spreading (2): the pod's
//! `ScheduleAnyway` topology spread constraints if it has any, else its
//! workload's pods per node (pods with the same controlling owner), which
//! stands in for upstream's default hostname spreading. Ties are broken by
//! starting the search at a node picked by a hash of the pod's key, so
//! equal nodes share a burst of identical pods without randomness.
//!
//! Unlike upstream, every node is evaluated (no `percentageOfNodesToScore`
//! sampling) and there is no preemption. The [`FitError`] text is
//! upstream's `0/N nodes are available: <count> <reason>, ….` with the
//! reasons sorted as strings, as upstream sorts them; without preemption
//! there is no `preemption: …` suffix, which is what upstream prints with
//! the DefaultPreemption plugin disabled.
//!
//! Pure: no I/O, no clock, no randomness.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{Hash, Hasher};

use k8s_openapi::api::core::v1::{
    NodeSelectorTerm, Pod, PreferredSchedulingTerm, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use crate::resources::{self, NonZero, ResourceError, Resources};
use crate::selectors::{label_selector_matches, terms_match, tolerated};
use crate::snapshot::{self, HostPort, NodeInfo, Snapshot, TAINT_UNSCHEDULABLE};

/// Upstream's filter failure reasons, word for word.
pub mod reason {
    pub const UNSCHEDULABLE: &str = "node(s) were unschedulable";
    pub const AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
    pub const PORTS: &str = "node(s) didn't have free ports for the requested pod ports";
    pub const TOO_MANY_PODS: &str = "Too many pods";
    pub const SPREAD: &str = "node(s) didn't match pod topology spread constraints";
    pub const SPREAD_LABEL: &str =
        "node(s) didn't match pod topology spread constraints (missing required label)";
}

/// Why no node fits a pod, worded as upstream's `FitError`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FitError {
    /// How many nodes there were.
    pub nodes: usize,
    /// Each reason and how many nodes gave it.
    pub reasons: BTreeMap<String, usize>,
}

impl fmt::Display for FitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nodes == 0 {
            // Upstream's ErrNoNodesAvailable.
            return write!(f, "no nodes available to schedule pods");
        }
        let mut histogram: Vec<String> = self
            .reasons
            .iter()
            .map(|(reason, n)| format!("{n} {reason}"))
            .collect();
        histogram.sort();
        write!(
            f,
            "0/{} nodes are available: {}.",
            self.nodes,
            histogram.join(", ")
        )
    }
}

/// A topology spread constraint, read once per pod.
#[derive(Debug, Clone)]
struct Spread {
    max_skew: i64,
    topology_key: String,
    hard: bool,
    min_domains: Option<usize>,
    /// The label selector with `matchLabelKeys` folded in.
    selector: Option<LabelSelector>,
    /// Whether the pod counts itself (its labels match the selector).
    self_match: bool,
    honor_affinity: bool,
    honor_taints: bool,
}

/// A pod waiting for a node, read once into what the decision needs.
#[derive(Debug, Clone)]
pub struct PendingPod {
    pub key: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub requests: Resources,
    pub non_zero: NonZero,
    pub ports: Vec<HostPort>,
    pub owner: Option<String>,
    pub priority: i32,
    node_selector: BTreeMap<String, String>,
    required: Option<Vec<NodeSelectorTerm>>,
    preferred: Vec<PreferredSchedulingTerm>,
    tolerations: Vec<Toleration>,
    spreads: Vec<Spread>,
}

/// A pod the scheduler cannot even consider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPod {
    #[error("pod {0} has no spec")]
    NoSpec(String),
    #[error("pod {key}: {source}")]
    Resources {
        key: String,
        #[source]
        source: ResourceError,
    },
}

impl PendingPod {
    /// Reads a pod. Fails on what the API should have refused: no spec, or
    /// a quantity that does not parse.
    pub fn from_pod(pod: &Pod) -> Result<PendingPod, InvalidPod> {
        let key = snapshot::pod_key(pod);
        let Some(spec) = pod.spec.as_ref() else {
            return Err(InvalidPod::NoSpec(key));
        };
        let (requests, non_zero) =
            resources::pod_requests(pod).map_err(|source| InvalidPod::Resources {
                key: key.clone(),
                source,
            })?;
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let affinity = spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref());
        let required = affinity
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|s| s.node_selector_terms.clone());
        let preferred = affinity
            .and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .clone()
            })
            .unwrap_or_default();
        let spreads = spec
            .topology_spread_constraints
            .iter()
            .flatten()
            .map(|c| {
                let mut selector = c.label_selector.clone();
                if let Some(sel) = selector.as_mut() {
                    for k in c.match_label_keys.iter().flatten() {
                        if let Some(v) = labels.get(k) {
                            sel.match_expressions.get_or_insert_with(Vec::new).push(
                                LabelSelectorRequirement {
                                    key: k.clone(),
                                    operator: "In".into(),
                                    values: Some(vec![v.clone()]),
                                },
                            );
                        }
                    }
                }
                let self_match = label_selector_matches(selector.as_ref(), &labels);
                Spread {
                    max_skew: i64::from(c.max_skew.max(1)),
                    topology_key: c.topology_key.clone(),
                    hard: c.when_unsatisfiable == "DoNotSchedule",
                    min_domains: c.min_domains.and_then(|m| usize::try_from(m).ok()),
                    selector,
                    self_match,
                    honor_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
                    honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
                }
            })
            .collect();
        Ok(PendingPod {
            namespace: pod
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            key,
            labels,
            requests,
            non_zero,
            ports: snapshot::host_ports(pod),
            owner: snapshot::controller_uid(pod),
            priority: spec.priority.unwrap_or(0),
            node_selector: spec.node_selector.clone().unwrap_or_default(),
            required,
            preferred,
            tolerations: spec.tolerations.clone().unwrap_or_default(),
            spreads,
        })
    }

    fn matches_affinity(&self, node: &NodeInfo) -> bool {
        self.node_selector
            .iter()
            .all(|(k, v)| node.labels.get(k) == Some(v))
            && self
                .required
                .as_ref()
                .is_none_or(|terms| terms_match(terms, &node.labels, &node.name))
    }

    fn untolerated_taint<'n>(&self, node: &'n NodeInfo) -> Option<&'n Taint> {
        node.taints.iter().find(|t| {
            (t.effect == "NoSchedule" || t.effect == "NoExecute")
                && !tolerated(&self.tolerations, t)
        })
    }
}

/// The outcome of the filters on one node.
enum Filtered {
    Fits,
    One(String),
    Many(Vec<String>),
}

/// Counts of matching pods per topology domain, for one constraint.
struct Domains {
    counts: HashMap<String, i64>,
    min: i64,
    weight: f64,
}

fn spread_eligible(pod: &PendingPod, node: &NodeInfo, s: &Spread) -> bool {
    (!s.honor_affinity || pod.matches_affinity(node))
        && (!s.honor_taints || pod.untolerated_taint(node).is_none())
        && pod
            .spreads
            .iter()
            .all(|c| node.labels.contains_key(&c.topology_key))
}

fn count_domains(snapshot: &Snapshot, pod: &PendingPod, s: &Spread) -> Domains {
    let mut counts: HashMap<String, i64> = HashMap::new();
    for node in snapshot.nodes() {
        if !spread_eligible(pod, node, s) {
            continue;
        }
        let Some(domain) = node.labels.get(&s.topology_key) else {
            continue;
        };
        let n = node
            .pods
            .iter()
            .filter(|p| {
                !p.terminating
                    && p.namespace == pod.namespace
                    && label_selector_matches(s.selector.as_ref(), &p.labels)
            })
            .count() as i64;
        *counts.entry(domain.clone()).or_default() += n;
    }
    let mut min = counts.values().copied().min().unwrap_or(0);
    if s.min_domains.is_some_and(|m| counts.len() < m) {
        min = 0;
    }
    let weight = ((counts.len() + 2) as f64).ln();
    Domains {
        counts,
        min,
        weight,
    }
}

fn filter(pod: &PendingPod, node: &NodeInfo, hard: &[(&Spread, Domains)]) -> Filtered {
    if node.unschedulable {
        let cordon = Taint {
            key: TAINT_UNSCHEDULABLE.into(),
            effect: "NoSchedule".into(),
            ..Taint::default()
        };
        if !tolerated(&pod.tolerations, &cordon) {
            return Filtered::One(reason::UNSCHEDULABLE.into());
        }
    }
    if let Some(t) = pod.untolerated_taint(node) {
        return Filtered::One(format!(
            "node(s) had untolerated taint {{{}: {}}}",
            t.key,
            t.value.as_deref().unwrap_or_default()
        ));
    }
    if !pod.matches_affinity(node) {
        return Filtered::One(reason::AFFINITY.into());
    }
    if !pod.ports.is_empty()
        && pod
            .ports
            .iter()
            .any(|want| node.used_ports.iter().any(|(used, _)| used.conflicts(want)))
    {
        return Filtered::One(reason::PORTS.into());
    }
    let mut short = Vec::new();
    if node.pods.len() as i64 + 1 > node.allowed_pods {
        short.push(reason::TOO_MANY_PODS.to_string());
    }
    let (want, have, used) = (&pod.requests, &node.allocatable, &node.requested);
    if !want.is_zero() {
        let lacks = |want: i64, have: i64, used: i64| want > 0 && want > have.saturating_sub(used);
        if lacks(want.milli_cpu, have.milli_cpu, used.milli_cpu) {
            short.push("Insufficient cpu".into());
        }
        if lacks(want.memory, have.memory, used.memory) {
            short.push("Insufficient memory".into());
        }
        if lacks(
            want.ephemeral_storage,
            have.ephemeral_storage,
            used.ephemeral_storage,
        ) {
            short.push("Insufficient ephemeral-storage".into());
        }
        for (name, amount) in &want.scalar {
            if lacks(*amount, have.scalar(name), used.scalar(name)) {
                short.push(format!("Insufficient {name}"));
            }
        }
    }
    if !short.is_empty() {
        return Filtered::Many(short);
    }
    for (s, domains) in hard {
        let Some(domain) = node.labels.get(&s.topology_key) else {
            return Filtered::One(reason::SPREAD_LABEL.into());
        };
        let matching = domains.counts.get(domain).copied().unwrap_or(0);
        let skew = matching + i64::from(s.self_match) - domains.min;
        if skew > s.max_skew {
            return Filtered::One(reason::SPREAD.into());
        }
    }
    Filtered::Fits
}

/// Upstream's least-allocated score for one resource, 0–100.
fn least_allocated(requested: i64, capacity: i64) -> f64 {
    if capacity <= 0 || requested > capacity {
        return 0.0;
    }
    (capacity - requested) as f64 * 100.0 / capacity as f64
}

fn fraction(requested: i64, capacity: i64) -> f64 {
    if capacity <= 0 {
        return 1.0;
    }
    (requested as f64 / capacity as f64).min(1.0)
}

/// Raw scores of one feasible node, before normalisation.
struct Raw {
    index: usize,
    /// Least allocated and balanced allocation, already 0–100 each.
    fit: f64,
    prefer_no_schedule: f64,
    affinity: f64,
    /// None: the node lacks a topology key of a soft constraint.
    spread: Option<f64>,
}

/// Picks a node for the pod, or says why none fits.
pub fn schedule(snapshot: &Snapshot, pod: &PendingPod) -> Result<String, FitError> {
    let nodes = snapshot.slots();
    let total = snapshot.node_count();
    let hard: Vec<(&Spread, Domains)> = pod
        .spreads
        .iter()
        .filter(|s| s.hard)
        .map(|s| (s, count_domains(snapshot, pod, s)))
        .collect();
    let soft: Vec<(&Spread, Domains)> = pod
        .spreads
        .iter()
        .filter(|s| !s.hard)
        .map(|s| (s, count_domains(snapshot, pod, s)))
        .collect();

    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut feasible: Vec<Raw> = Vec::new();
    for (index, node) in nodes.iter().enumerate() {
        if !node.present {
            continue;
        }
        match filter(pod, node, &hard) {
            Filtered::Fits => {}
            Filtered::One(r) => {
                *reasons.entry(r).or_default() += 1;
                continue;
            }
            Filtered::Many(rs) => {
                for r in rs {
                    *reasons.entry(r).or_default() += 1;
                }
                continue;
            }
        }
        feasible.push(raw_score(pod, node, index, &soft));
    }
    if feasible.is_empty() {
        return Err(FitError {
            nodes: total,
            reasons,
        });
    }
    let best = pick(pod, &feasible, nodes.len());
    Ok(nodes[best].name.clone())
}

fn raw_score(pod: &PendingPod, node: &NodeInfo, index: usize, soft: &[(&Spread, Domains)]) -> Raw {
    let cpu = node
        .non_zero_requested
        .milli_cpu
        .saturating_add(pod.non_zero.milli_cpu);
    let mem = node
        .non_zero_requested
        .memory
        .saturating_add(pod.non_zero.memory);
    let (cap_cpu, cap_mem) = (node.allocatable.milli_cpu, node.allocatable.memory);
    let least = (least_allocated(cpu, cap_cpu) + least_allocated(mem, cap_mem)) / 2.0;
    let std_dev = (fraction(cpu, cap_cpu) - fraction(mem, cap_mem)).abs() / 2.0;
    let balanced = (1.0 - std_dev) * 100.0;

    let prefer_no_schedule = node
        .taints
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule" && !tolerated(&pod.tolerations, t))
        .count() as f64;
    let affinity = pod
        .preferred
        .iter()
        .filter(|p| {
            p.weight != 0 && crate::selectors::term_matches(&p.preference, &node.labels, &node.name)
        })
        .map(|p| f64::from(p.weight))
        .sum();
    let spread = if soft.is_empty() {
        // Default spreading: the workload's pods already on this node.
        Some(
            pod.owner
                .as_ref()
                .map_or(0.0, |o| f64::from(node.owned_by(o))),
        )
    } else if soft
        .iter()
        .all(|(s, _)| node.labels.contains_key(&s.topology_key))
    {
        Some(
            soft.iter()
                .map(|(s, d)| {
                    let domain = &node.labels[&s.topology_key];
                    let n = d.counts.get(domain).copied().unwrap_or(0);
                    (n as f64) * d.weight + (s.max_skew - 1) as f64
                })
                .sum(),
        )
    } else {
        None
    };
    Raw {
        index,
        fit: least + balanced,
        prefer_no_schedule,
        affinity,
        spread,
    }
}

/// Normalises the scores, weighs them, and returns the best node's index.
fn pick(pod: &PendingPod, feasible: &[Raw], slots: usize) -> usize {
    let max_taints = feasible
        .iter()
        .map(|r| r.prefer_no_schedule)
        .fold(0.0, f64::max);
    let max_affinity = feasible.iter().map(|r| r.affinity).fold(0.0, f64::max);
    let spreads = feasible.iter().filter_map(|r| r.spread);
    let max_spread = spreads.clone().fold(0.0, f64::max);
    let min_spread = spreads.fold(f64::INFINITY, f64::min);
    let score = |r: &Raw| -> f64 {
        let taints = if max_taints > 0.0 {
            100.0 * (1.0 - r.prefer_no_schedule / max_taints)
        } else {
            100.0
        };
        let affinity = if max_affinity > 0.0 {
            100.0 * r.affinity / max_affinity
        } else {
            0.0
        };
        let spread = match r.spread {
            None => 0.0,
            Some(_) if max_spread <= 0.0 => 100.0,
            Some(s) => 100.0 * (max_spread + min_spread - s) / max_spread,
        };
        r.fit + 3.0 * taints + 2.0 * affinity + 2.0 * spread
    };
    // Start at a node chosen by the pod's key, so that ties go to
    // different nodes for different pods.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    pod.key.hash(&mut h);
    let start = (h.finish() % slots.max(1) as u64) as usize;
    let mut best: Option<(f64, usize, usize)> = None;
    for r in feasible {
        let s = score(r);
        let distance = (r.index + slots - start) % slots.max(1);
        let better = match best {
            None => true,
            Some((bs, bd, _)) => s > bs + 1e-9 || ((s - bs).abs() <= 1e-9 && distance < bd),
        };
        if better {
            best = Some((s, distance, r.index));
        }
    }
    best.map_or(0, |(_, _, i)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Node;
    use serde_json::{Value, json};

    /// A Ready node with 4 CPUs, 8 GiB and room for 110 pods; `extra` is
    /// merged into it.
    fn node(name: &str, extra: Value) -> Node {
        let mut n = json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {},
            "status": {
                "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110", "ephemeral-storage": "10Gi"},
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        });
        merge(&mut n, extra);
        serde_json::from_value(n).unwrap()
    }

    /// A pod in namespace `ns` with one container requesting `requests`;
    /// `extra` is merged into it.
    fn pod(name: &str, requests: Value, extra: Value) -> Pod {
        let mut p = json!({
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"containers": [{"name": "c", "image": "i", "resources": {"requests": requests}}]},
        });
        merge(&mut p, extra);
        serde_json::from_value(p).unwrap()
    }

    fn merge(a: &mut Value, b: Value) {
        match (a, b) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    fn on(node: &str, p: Pod) -> Pod {
        let mut p = p;
        p.spec.as_mut().unwrap().node_name = Some(node.into());
        p
    }

    struct Case {
        name: &'static str,
        nodes: Vec<Node>,
        placed: Vec<Pod>,
        pod: Pod,
        want: Result<&'static str, &'static str>,
    }

    fn run(case: Case) {
        let snapshot = Snapshot::from_objects(&case.nodes, &case.placed);
        let pending = PendingPod::from_pod(&case.pod).unwrap();
        let got = schedule(&snapshot, &pending).map_err(|e| e.to_string());
        let got = got.as_ref().map(String::as_str).map_err(String::as_str);
        assert_eq!(got, case.want, "case {:?}", case.name);
    }

    fn no_extra() -> Value {
        json!({})
    }

    #[test]
    fn filters() {
        let cases = vec![
            Case {
                name: "no nodes at all",
                nodes: vec![],
                placed: vec![],
                pod: pod("p", json!({}), no_extra()),
                want: Err("no nodes available to schedule pods"),
            },
            Case {
                name: "the example from the issue",
                nodes: vec![
                    node("a", json!({"status": {"allocatable": {"memory": "1Gi"}}})),
                    node("b", json!({"status": {"allocatable": {"memory": "1Gi"}}})),
                    node(
                        "c",
                        json!({"spec": {"taints": [{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]}}),
                    ),
                ],
                placed: vec![],
                pod: pod("p", json!({"memory": "2Gi"}), no_extra()),
                want: Err(
                    "0/3 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, 2 Insufficient memory.",
                ),
            },
            Case {
                name: "nodeSelector",
                nodes: vec![
                    node("a", json!({"metadata": {"labels": {"disk": "hdd"}}})),
                    node("b", json!({"metadata": {"labels": {"disk": "ssd"}}})),
                ],
                placed: vec![],
                pod: pod(
                    "p",
                    json!({}),
                    json!({"spec": {"nodeSelector": {"disk": "ssd"}}}),
                ),
                want: Ok("b"),
            },
            Case {
                name: "nodeSelector matching nothing",
                nodes: vec![node("a", no_extra()), node("b", no_extra())],
                placed: vec![],
                pod: pod(
                    "p",
                    json!({}),
                    json!({"spec": {"nodeSelector": {"disk": "ssd"}}}),
                ),
                want: Err(
                    "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector.",
                ),
            },
            Case {
                name: "required node affinity with Gt and matchFields",
                nodes: vec![
                    node("a", json!({"metadata": {"labels": {"gen": "3"}}})),
                    node("b", json!({"metadata": {"labels": {"gen": "5"}}})),
                    node("c", json!({"metadata": {"labels": {"gen": "7"}}})),
                ],
                placed: vec![],
                pod: pod(
                    "p",
                    json!({}),
                    json!({"spec": {"affinity": {"nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "gen", "operator": "Gt", "values": ["4"]}],
                         "matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["c"]}]},
                    ]}}}}}),
                ),
                want: Ok("b"),
            },
            Case {
                name: "taints: NoSchedule blocks, PreferNoSchedule does not, tolerations let through",
                nodes: vec![
                    node(
                        "a",
                        json!({"spec": {"taints": [{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]}}),
                    ),
                    node(
                        "b",
                        json!({"spec": {"taints": [{"key": "edge", "effect": "PreferNoSchedule"}]}}),
                    ),
                ],
                placed: vec![],
                pod: pod("p", json!({}), no_extra()),
                want: Ok("b"),
            },
            Case {
                name: "a tolerated taint, an untolerated one",
                nodes: vec![
                    node(
                        "a",
                        json!({"spec": {"taints": [{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]}}),
                    ),
                    node(
                        "b",
                        json!({"spec": {"taints": [{"key": "zone", "value": "far", "effect": "NoExecute"}]}}),
                    ),
                ],
                placed: vec![],
                pod: pod(
                    "p",
                    json!({}),
                    json!({"spec": {"tolerations": [{"key": "gpu", "operator": "Exists"}]}}),
                ),
                want: Ok("a"),
            },
            Case {
                name: "untolerated taints name key and value",
                nodes: vec![
                    node(
                        "a",
                        json!({"spec": {"taints": [{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]}}),
                    ),
                    node(
                        "b",
                        json!({"spec": {"taints": [{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]}}),
                    ),
                ],
                placed: vec![],
                pod: pod("p", json!({}), no_extra()),
                want: Err("0/2 nodes are available: 2 node(s) had untolerated taint {gpu: yes}."),
            },
            Case {
                name: "cordoned and not-ready nodes",
                nodes: vec![
                    node("a", json!({"spec": {"unschedulable": true}})),
                    node(
                        "b",
                        json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
                    ),
                    node(
                        "c",
                        json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}),
                    ),
                ],
                placed: vec![],
                pod: pod("p", json!({}), no_extra()),
                want: Err(
                    "0/3 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, 1 node(s) were unschedulable.",
                ),
            },
            Case {
                name: "a pod tolerating the cordon lands on a cordoned node",
                nodes: vec![
                    node("a", json!({"spec": {"unschedulable": true}})),
                    node(
                        "b",
                        json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
                    ),
                ],
                placed: vec![],
                pod: pod(
                    "p",
                    json!({}),
                    json!({"spec": {"tolerations": [
                    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}}),
                ),
                want: Ok("a"),
            },
            Case {
                name: "requests against allocatable minus what is placed",
                nodes: vec![node("a", no_extra()), node("b", no_extra())],
                placed: vec![
                    on("a", pod("x", json!({"cpu": "3500m"}), no_extra())),
                    on("b", pod("y", json!({"cpu": "3"}), no_extra())),
                ],
                pod: pod("p", json!({"cpu": "1"}), no_extra()),
                want: Ok("b"),
            },
            Case {
                name: "every shortfall of a node is a reason",
                nodes: vec![
                    node(
                        "a",
                        json!({"status": {"allocatable": {"cpu": "1", "memory": "1Gi"}}}),
                    ),
                    node("b", json!({"status": {"allocatable": {"pods": "1"}}})),
                    node("c", no_extra()),
                ],
                placed: vec![on("b", pod("x", json!({}), no_extra()))],
                pod: pod(
                    "p",
                    json!({"cpu": "2", "memory": "2Gi", "ephemeral-storage": "20Gi", "example.com/gpu": "1"}),
                    no_extra(),
                ),
                want: Err(
                    "0/3 nodes are available: 1 Insufficient cpu, 1 Insufficient memory, 1 Too many pods, 3 Insufficient ephemeral-storage, 3 Insufficient example.com/gpu.",
                ),
            },
            Case {
                name: "a pod requesting nothing still needs a pod slot",
                nodes: vec![node("a", json!({"status": {"allocatable": {"pods": "1"}}}))],
                placed: vec![on("a", pod("x", json!({}), no_extra()))],
                pod: pod("p", json!({}), no_extra()),
                want: Err("0/1 nodes are available: 1 Too many pods."),
            },
            Case {
                name: "host ports",
                nodes: vec![node("a", no_extra()), node("b", no_extra())],
                placed: vec![on(
                    "a",
                    pod(
                        "x",
                        json!({}),
                        json!({"spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}}),
                    ),
                )],
                pod: pod(
                    "p",
                    json!({}),
                    json!({"spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.1"}]}]}}),
                ),
                want: Ok("b"),
            },
            Case {
                name: "host ports everywhere",
                nodes: vec![node("a", no_extra())],
                placed: vec![on(
                    "a",
                    pod(
                        "x",
                        json!({}),
                        json!({"spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}}),
                    ),
                )],
                pod: pod(
                    "p",
                    json!({}),
                    json!({"spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}}),
                ),
                want: Err(
                    "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports.",
                ),
            },
            Case {
                name: "the first failing filter gives the reason",
                nodes: vec![node(
                    "a",
                    json!({
                    "spec": {"unschedulable": true, "taints": [{"key": "k", "effect": "NoSchedule"}]},
                    "status": {"allocatable": {"cpu": "1"}}}),
                )],
                placed: vec![],
                pod: pod(
                    "p",
                    json!({"cpu": "2"}),
                    json!({"spec": {"nodeSelector": {"x": "y"}}}),
                ),
                want: Err("0/1 nodes are available: 1 node(s) were unschedulable."),
            },
        ];
        for case in cases {
            run(case);
        }
    }

    fn zoned(name: &str, zone: &str) -> Node {
        node(name, json!({"metadata": {"labels": {"zone": zone}}}))
    }

    fn web(name: &str) -> Pod {
        pod(
            name,
            json!({}),
            json!({"metadata": {"labels": {"app": "web"}}}),
        )
    }

    fn spread(when: &str, skew: i32) -> Value {
        json!({"metadata": {"labels": {"app": "web"}}, "spec": {"topologySpreadConstraints": [{
            "maxSkew": skew, "topologyKey": "zone", "whenUnsatisfiable": when,
            "labelSelector": {"matchLabels": {"app": "web"}}}]}})
    }

    #[test]
    fn topology_spread() {
        let cases = vec![
            Case {
                name: "DoNotSchedule goes to the emptier zone",
                nodes: vec![zoned("a1", "a"), zoned("a2", "a"), zoned("b1", "b")],
                placed: vec![
                    on("a1", web("w1")),
                    on("a2", web("w2")),
                    on("b1", web("w3")),
                ],
                pod: pod("p", json!({}), spread("DoNotSchedule", 1)),
                want: Ok("b1"),
            },
            Case {
                name: "DoNotSchedule refuses a skew beyond maxSkew",
                nodes: vec![
                    zoned("a1", "a"),
                    zoned("b1", "b"),
                    node("nolabel", no_extra()),
                ],
                placed: vec![on("a1", web("w1"))],
                pod: pod(
                    "p",
                    json!({}),
                    json!({"metadata": {"labels": {"app": "web"}},
                    "spec": {"nodeSelector": {"zone": "a"}, "topologySpreadConstraints": [{
                    "maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
                    "nodeAffinityPolicy": "Ignore",
                    "labelSelector": {"matchLabels": {"app": "web"}}}]}}),
                ),
                want: Err(
                    "0/3 nodes are available: 1 node(s) didn't match pod topology spread constraints, 2 node(s) didn't match Pod's node affinity/selector.",
                ),
            },
            Case {
                name: "nodes without the topology key",
                nodes: vec![node("x", no_extra())],
                placed: vec![],
                pod: pod("p", json!({}), spread("DoNotSchedule", 1)),
                want: Err(
                    "0/1 nodes are available: 1 node(s) didn't match pod topology spread constraints (missing required label).",
                ),
            },
            Case {
                name: "pods of other namespaces and selectors do not count",
                nodes: vec![zoned("a1", "a"), zoned("b1", "b")],
                placed: vec![
                    on("b1", web("w1")),
                    on(
                        "a1",
                        pod(
                            "other",
                            json!({}),
                            json!({"metadata": {"namespace": "elsewhere", "labels": {"app": "web"}}}),
                        ),
                    ),
                    on(
                        "a1",
                        pod(
                            "db",
                            json!({}),
                            json!({"metadata": {"labels": {"app": "db"}}}),
                        ),
                    ),
                ],
                pod: pod("p", json!({}), spread("DoNotSchedule", 1)),
                want: Ok("a1"),
            },
            Case {
                name: "ScheduleAnyway prefers the emptier zone but never refuses",
                nodes: vec![zoned("a1", "a"), zoned("b1", "b")],
                placed: vec![
                    on("a1", web("w1")),
                    on("a1", web("w2")),
                    on("a1", web("w3")),
                ],
                pod: pod("p", json!({}), spread("ScheduleAnyway", 1)),
                want: Ok("b1"),
            },
        ];
        for case in cases {
            run(case);
        }
    }

    #[test]
    fn scores() {
        let rs = |name: &str| {
            pod(
                name,
                json!({"cpu": "100m"}),
                json!({"metadata": {"ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "rs-1", "controller": true}]}}),
            )
        };
        let cases = vec![
            Case {
                name: "least allocated",
                nodes: vec![node("a", no_extra()), node("b", no_extra())],
                placed: vec![on(
                    "a",
                    pod("x", json!({"cpu": "2", "memory": "4Gi"}), no_extra()),
                )],
                pod: pod("p", json!({"cpu": "100m"}), no_extra()),
                want: Ok("b"),
            },
            Case {
                name: "a workload spreads over nodes",
                nodes: vec![node("a", no_extra()), node("b", no_extra())],
                // b is busier, but a already runs two pods of the workload.
                placed: vec![
                    on("a", rs("r1")),
                    on("a", rs("r2")),
                    on(
                        "b",
                        pod("x", json!({"cpu": "500m", "memory": "512Mi"}), no_extra()),
                    ),
                ],
                pod: rs("p"),
                want: Ok("b"),
            },
            Case {
                name: "preferred node affinity",
                nodes: vec![
                    node("a", json!({"metadata": {"labels": {"tier": "gold"}}})),
                    node("b", json!({"metadata": {"labels": {"tier": "silver"}}})),
                ],
                placed: vec![on("a", pod("x", json!({"cpu": "1"}), no_extra()))],
                pod: pod(
                    "p",
                    json!({}),
                    json!({"spec": {"affinity": {"nodeAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {"weight": 50, "preference": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["gold"]}]}},
                    ]}}}}),
                ),
                want: Ok("a"),
            },
            Case {
                name: "PreferNoSchedule taints push pods elsewhere",
                nodes: vec![
                    node(
                        "a",
                        json!({"spec": {"taints": [{"key": "edge", "effect": "PreferNoSchedule"}]}}),
                    ),
                    node("b", no_extra()),
                ],
                placed: vec![on("b", pod("x", json!({"cpu": "1"}), no_extra()))],
                pod: pod("p", json!({}), no_extra()),
                want: Ok("b"),
            },
        ];
        for case in cases {
            run(case);
        }
    }

    #[test]
    fn identical_pods_share_identical_nodes() {
        let nodes: Vec<Node> = (0..10)
            .map(|i| node(&format!("n{i}"), no_extra()))
            .collect();
        let snapshot = Snapshot::from_objects(&nodes, &[]);
        let mut chosen = std::collections::BTreeSet::new();
        for i in 0..50 {
            let p = PendingPod::from_pod(&pod(&format!("p{i}"), json!({}), no_extra())).unwrap();
            chosen.insert(schedule(&snapshot, &p).unwrap());
        }
        assert!(chosen.len() >= 5, "ties all went to {chosen:?}");
    }

    #[test]
    fn a_burst_of_one_workload_fills_nodes_evenly() {
        use crate::snapshot::PlacedPod;
        use std::sync::Arc;
        let nodes: Vec<Node> = (0..100)
            .map(|i| node(&format!("n{i:03}"), no_extra()))
            .collect();
        let mut snapshot = Snapshot::from_objects(&nodes, &[]);
        let started = std::time::Instant::now();
        for i in 0..1000 {
            let p = pod(
                &format!("p{i}"),
                json!({"cpu": "100m", "memory": "128Mi"}),
                json!({
                "metadata": {"ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                                  "name": "rs", "uid": "rs-1", "controller": true}]}}),
            );
            let pending = PendingPod::from_pod(&p).unwrap();
            let node = schedule(&snapshot, &pending).unwrap();
            snapshot.place(Arc::new(PlacedPod::from_pod(&p).0), &node);
        }
        eprintln!("1,000 decisions on 100 nodes took {:?}", started.elapsed());
        let counts: Vec<usize> = snapshot.nodes().map(|n| n.pods.len()).collect();
        assert_eq!(counts.iter().min(), Some(&10), "{counts:?}");
        assert_eq!(counts.iter().max(), Some(&10), "{counts:?}");
    }

    #[test]
    fn odd_pods_are_refused_not_panicked_on() {
        let no_spec: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}})).unwrap();
        assert!(matches!(
            PendingPod::from_pod(&no_spec),
            Err(InvalidPod::NoSpec(_))
        ));
        let bad = pod("p", json!({"cpu": "one"}), no_extra());
        let e = PendingPod::from_pod(&bad).unwrap_err();
        assert_eq!(
            e.to_string(),
            "pod ns/p: spec.containers[c].resources.requests[cpu]: quantity \"one\" is invalid: it has no digits"
        );
        // A node with no status at all takes no pods, and says why.
        let bare: Node = serde_json::from_value(json!({"metadata": {"name": "bare"}})).unwrap();
        let snapshot = Snapshot::from_objects(&[bare], &[]);
        let p = PendingPod::from_pod(&pod("p", json!({}), no_extra())).unwrap();
        assert_eq!(
            schedule(&snapshot, &p).unwrap_err().to_string(),
            "0/1 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }."
        );
    }
}
