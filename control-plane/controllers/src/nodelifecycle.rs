//! Node lifecycle, edge-aware: nodes that stop renewing their Lease become
//! Unknown and get the unreachable taints, but their pods are evicted only
//! when the node opts in.
//!
//! Every [`MONITOR_PERIOD`] the controller looks at each Node:
//! - **Heartbeats** are judged by this server's own clock: a node is alive
//!   while its Lease's renewTime or its Ready condition's heartbeat keeps
//!   changing. When neither has changed for `--node-monitor-grace-period`,
//!   its Ready, MemoryPressure, DiskPressure and PIDPressure conditions
//!   become Unknown (reason NodeStatusUnknown, "Kubelet stopped posting node
//!   status."), and its pods are marked not Ready, as upstream does.
//! - **Taints** follow the Ready condition: Unknown gives
//!   `node.kubernetes.io/unreachable` (NoSchedule and NoExecute), False
//!   gives `node.kubernetes.io/not-ready` (the same two); True removes them.
//!   The kubelet (or the agent) sets Ready again when it comes back; nothing
//!   here restarts or recreates a pod.
//! - **Eviction** is decided by the node's `kedge.io/autonomy` annotation
//!   ([`Autonomy`]):
//!   - `never`, the default for agent nodes and for nodes without the
//!     annotation: pods are never evicted for a lost link;
//!   - a duration such as `10m`: pods stay at least that long, then the
//!     upstream rules apply (a pod tolerating the taint for `tolerationSeconds`
//!     goes when the later of the two has passed);
//!   - `0`: upstream behaviour, pods go after their tolerationSeconds (300 s
//!     from the default tolerations).
//!
//!   A pod that tolerates the taint with no tolerationSeconds (a DaemonSet
//!   pod) is never evicted.
//!
//! The decisions ([`heartbeat_state`], [`desired_taints`], [`eviction_time`])
//! are pure functions tested on tables.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use futures::FutureExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::json;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::cache::Cache;
use crate::{Context, ControllerFuture, Error};
pub use kedge_scheduler::selectors::tolerates;

/// How often nodes are checked (upstream's --node-monitor-period).
pub const MONITOR_PERIOD: Duration = Duration::from_secs(5);

/// The annotation by which a node chooses whether its pods are evicted
/// while it is unreachable.
pub const AUTONOMY_ANNOTATION: &str = "kedge.io/autonomy";

/// Taint of a node whose kubelet stopped reporting.
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// Taint of a node that reports it is not ready.
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";

/// What a node chose about eviction while it is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Autonomy {
    /// Pods are never evicted for a lost link.
    Never,
    /// Pods stay at least this long; then upstream rules apply.
    For(Duration),
}

impl Autonomy {
    /// Reads the annotation; absent or unreadable means [`Autonomy::Never`]
    /// (an unreadable value is reported, and the safe choice is to keep pods).
    pub fn of(node: &Node) -> Result<Autonomy, String> {
        let value = node
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(AUTONOMY_ANNOTATION));
        match value.map(|v| v.trim()) {
            None | Some("never") | Some("") => Ok(Autonomy::Never),
            Some(v) => parse_duration(v).map(Autonomy::For).ok_or_else(|| {
                format!(
                    "{AUTONOMY_ANNOTATION}: {v:?} is neither \"never\" nor a duration such as \"0\", \"90s\", \"10m\" or \"1h30m\""
                )
            }),
        }
    }
}

/// Go-style durations: "0", "300s", "10m", "1h30m", "1.5h".
pub fn parse_duration(text: &str) -> Option<Duration> {
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    (0.0..1e12)
        .contains(&total)
        .then(|| Duration::from_secs_f64(total))
}

/// When this server last saw a node's heartbeat change.
#[derive(Debug, Clone, PartialEq)]
pub struct Heartbeat {
    /// The Lease renewTime and Ready heartbeat that were seen.
    pub record: (Option<String>, Option<String>),
    /// When they were first seen in that form.
    pub seen_at: Instant,
}

/// Updates the heartbeat observation and says whether the node is past
/// its grace period.
pub fn heartbeat_state(
    previous: Option<&Heartbeat>,
    record: (Option<String>, Option<String>),
    now: Instant,
    grace: Duration,
) -> (Heartbeat, bool) {
    let heartbeat = match previous {
        Some(h) if h.record == record => h.clone(),
        _ => Heartbeat {
            record,
            seen_at: now,
        },
    };
    let silent = now.saturating_duration_since(heartbeat.seen_at) > grace;
    (heartbeat, silent)
}

fn ready_status(node: &Node) -> Option<&str> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.as_str())
}

fn ready_heartbeat(node: &Node) -> Option<String> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .and_then(|c| c.last_heartbeat_time.as_ref())
        .map(|t| t.0.to_string())
}

/// The node's taints with the lifecycle taints made to match its Ready
/// condition; `None` when they already do. New NoExecute taints carry
/// `timeAdded = now`.
pub fn desired_taints(node: &Node, now: jiff::Timestamp) -> Option<Vec<Taint>> {
    let current = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let want_key = match ready_status(node) {
        Some("True") => None,
        Some("False") => Some(NOT_READY),
        // A node that never reported is treated as not ready, not unreachable.
        None => Some(NOT_READY),
        Some(_) => Some(UNREACHABLE),
    };
    let mut next: Vec<Taint> = current
        .iter()
        .filter(|t| {
            let ours = t.key == UNREACHABLE || t.key == NOT_READY;
            !ours || (Some(t.key.as_str()) == want_key && is_lifecycle_effect(&t.effect))
        })
        .cloned()
        .collect();
    if let Some(key) = want_key {
        for effect in ["NoSchedule", "NoExecute"] {
            if !next.iter().any(|t| t.key == key && t.effect == effect) {
                next.push(Taint {
                    key: key.to_string(),
                    value: None,
                    effect: effect.to_string(),
                    time_added: (effect == "NoExecute").then_some(Time(now)),
                });
            }
        }
    }
    (next != current).then_some(next)
}

fn is_lifecycle_effect(effect: &str) -> bool {
    effect == "NoSchedule" || effect == "NoExecute"
}

/// When a pod on a tainted node is to be evicted, given the node's NoExecute
/// lifecycle taint and its autonomy; `None` for never.
pub fn eviction_time(pod: &Pod, taint: &Taint, autonomy: Autonomy) -> Option<SystemTime> {
    let Autonomy::For(min_stay) = autonomy else {
        return None;
    };
    let added: SystemTime = taint
        .time_added
        .as_ref()
        .map(|t| SystemTime::from(t.0))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_ref())
        .cloned()
        .unwrap_or_default();
    let matching: Vec<&Toleration> = tolerations.iter().filter(|t| tolerates(t, taint)).collect();
    let tolerated_for = if matching.is_empty() {
        Duration::ZERO
    } else if matching.iter().any(|t| t.toleration_seconds.is_none()) {
        return None;
    } else {
        let seconds = matching
            .iter()
            .filter_map(|t| t.toleration_seconds)
            .min()
            .unwrap_or(0)
            .max(0);
        Duration::from_secs(seconds as u64)
    };
    Some(added + tolerated_for.max(min_stay))
}

/// The node lifecycle controller.
pub fn controller(ctx: &Context) -> ControllerFuture {
    let ctx = ctx.clone();
    async move { run(ctx).await }.boxed()
}

async fn run(ctx: Context) -> Result<(), Error> {
    let (nodes, nodes_driver) =
        Cache::<Node>::start(Api::all(ctx.client.clone()), watcher::Config::default());
    let (leases, leases_driver) = Cache::<Lease>::start(
        Api::namespaced(ctx.client.clone(), "kube-node-lease"),
        watcher::Config::default(),
    );
    let (pods, pods_driver) =
        Cache::<Pod>::start(Api::all(ctx.client.clone()), watcher::Config::default());
    let work = async {
        nodes.ready().await;
        leases.ready().await;
        pods.ready().await;
        let mut heartbeats: HashMap<String, Heartbeat> = HashMap::new();
        let mut tick = tokio::time::interval(MONITOR_PERIOD);
        loop {
            tick.tick().await;
            monitor(&ctx, &nodes, &leases, &pods, &mut heartbeats).await;
        }
    };
    tokio::select! {
        _ = nodes_driver => {}
        _ = leases_driver => {}
        _ = pods_driver => {}
        _ = work => {}
    }
    Ok(())
}

async fn monitor(
    ctx: &Context,
    nodes: &Cache<Node>,
    leases: &Cache<Lease>,
    pods: &Cache<Pod>,
    heartbeats: &mut HashMap<String, Heartbeat>,
) {
    let now = Instant::now();
    let grace = ctx.config.node_monitor_grace_period;
    let node_api: Api<Node> = Api::all(ctx.client.clone());
    let all_nodes = nodes.store.state();
    heartbeats.retain(|name, _| {
        all_nodes
            .iter()
            .any(|n| n.metadata.name.as_ref() == Some(name))
    });
    for node in &all_nodes {
        let Some(name) = node.metadata.name.clone() else {
            continue;
        };
        let lease_renew = leases
            .store
            .find(|l| l.metadata.name.as_ref() == Some(&name))
            .and_then(|l| {
                l.spec
                    .as_ref()?
                    .renew_time
                    .as_ref()
                    .map(|t| t.0.to_string())
            });
        let record = (lease_renew, ready_heartbeat(node));
        let (heartbeat, silent) = heartbeat_state(heartbeats.get(&name), record, now, grace);
        heartbeats.insert(name.clone(), heartbeat);

        if silent && ready_status(node) != Some("Unknown") {
            if let Err(e) = mark_unknown(ctx, &node_api, node).await {
                warn!(node = %name, error = %e, "could not mark the node Unknown");
                continue;
            }
            info!(node = %name, "node stopped renewing its lease: Ready is Unknown");
            mark_pods_not_ready(ctx, pods, &name).await;
            // The taints follow on the next round, from the new condition.
            continue;
        }
        if let Some(taints) = desired_taints(node, ctx.clock.timestamp()) {
            let patch = json!({
                "metadata": {"resourceVersion": node.metadata.resource_version},
                "spec": {"taints": taints},
            });
            if let Err(e) = node_api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                // A conflict means the node changed since it was read; the next round
                // looks at it again.
                if crate::workloads::common::is_conflict(&e) {
                    tracing::debug!(node = %name, "node changed; taints on the next round");
                } else {
                    warn!(node = %name, error = %e, "could not update the node's taints");
                }
            }
            continue;
        }
        evict(ctx, node, pods).await;
    }
}

/// Sets the node's conditions to Unknown, keeping their heartbeat times.
async fn mark_unknown(ctx: &Context, api: &Api<Node>, node: &Node) -> Result<(), Error> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let now = ctx.clock.timestamp();
    let mut conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    for kind in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
        match conditions.iter_mut().find(|c| c.type_ == kind) {
            Some(c) => {
                if c.status != "Unknown" {
                    c.last_transition_time = Some(Time(now));
                }
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
            }
            None => conditions.push(k8s_openapi::api::core::v1::NodeCondition {
                type_: kind.into(),
                status: "Unknown".into(),
                reason: Some("NodeStatusNeverUpdated".into()),
                message: Some("Kubelet never posted node status.".into()),
                last_transition_time: Some(Time(now)),
                last_heartbeat_time: None,
            }),
        }
    }
    // Conditions are a list merged by type in strategic merge patch; a JSON
    // merge patch replaces the list, with the resourceVersion as a guard.
    let patch = json!({
        "metadata": {"resourceVersion": node.metadata.resource_version},
        "status": {"conditions": conditions},
    });
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// Marks the pods of an unreachable node not Ready, so that Services stop
/// sending them traffic (upstream's MarkPodsNotReady).
async fn mark_pods_not_ready(ctx: &Context, pods: &Cache<Pod>, node: &str) {
    let now = ctx.clock.timestamp();
    for pod in pods
        .store
        .state_filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
    {
        let Some(status) = pod.status.as_ref() else {
            continue;
        };
        if matches!(status.phase.as_deref(), Some("Succeeded") | Some("Failed")) {
            continue;
        }
        let mut conditions = status.conditions.clone().unwrap_or_default();
        let mut changed = false;
        for c in conditions.iter_mut().filter(|c| c.type_ == "Ready") {
            if c.status != "False" {
                c.status = "False".into();
                c.last_transition_time = Some(Time(now));
                changed = true;
            }
        }
        if !changed {
            continue;
        }
        let (Some(ns), Some(name)) = (&pod.metadata.namespace, &pod.metadata.name) else {
            continue;
        };
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
        let patch = json!({"status": {"conditions": conditions}});
        if let Err(e) = api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            warn!(pod = %name, error = %e, "could not mark the pod not Ready");
        }
    }
}

/// Deletes the pods whose time has come on a node with a NoExecute
/// lifecycle taint, as its autonomy allows.
async fn evict(ctx: &Context, node: &Node, pods: &Cache<Pod>) {
    let Some(taint) = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .and_then(|ts| {
            ts.iter()
                .find(|t| t.effect == "NoExecute" && (t.key == UNREACHABLE || t.key == NOT_READY))
        })
    else {
        return;
    };
    let name = node.metadata.name.as_deref().unwrap_or("");
    let autonomy = match Autonomy::of(node) {
        Ok(a) => a,
        Err(e) => {
            warn!(node = %name, "{e}; keeping its pods");
            return;
        }
    };
    let now = ctx.clock.now();
    for pod in pods
        .store
        .state_filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name))
    {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(at) = eviction_time(&pod, taint, autonomy) else {
            continue;
        };
        if at > now {
            continue;
        }
        let (Some(ns), Some(pod_name)) = (&pod.metadata.namespace, &pod.metadata.name) else {
            continue;
        };
        info!(node = %name, pod = %format!("{ns}/{pod_name}"), "evicting: the node is {} and its autonomy has run out", taint.key);
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
        if let Err(e) = api.delete(pod_name, &DeleteParams::default()).await {
            warn!(pod = %pod_name, error = %e, "eviction failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeSpec, NodeStatus, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn node(ready: Option<&str>, taints: Vec<Taint>, autonomy: Option<&str>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some("n1".into()),
                annotations: autonomy.map(|a| {
                    [(AUTONOMY_ANNOTATION.to_string(), a.to_string())]
                        .into_iter()
                        .collect()
                }),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec {
                taints: Some(taints),
                ..NodeSpec::default()
            }),
            status: Some(NodeStatus {
                conditions: ready.map(|s| {
                    vec![NodeCondition {
                        type_: "Ready".into(),
                        status: s.into(),
                        ..NodeCondition::default()
                    }]
                }),
                ..NodeStatus::default()
            }),
        }
    }

    fn taint(key: &str, effect: &str, added: i64) -> Taint {
        Taint {
            key: key.into(),
            value: None,
            effect: effect.into(),
            time_added: Some(Time(jiff::Timestamp::from_second(added).unwrap())),
        }
    }

    fn pod(tolerations: Vec<Toleration>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                tolerations: Some(tolerations),
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    fn toleration(key: &str, seconds: Option<i64>) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: seconds,
            value: None,
        }
    }

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn autonomy_reads_never_durations_and_rejects_nonsense() {
        let cases = [
            (None, Ok(Autonomy::Never)),
            (Some("never"), Ok(Autonomy::Never)),
            (Some("0"), Ok(Autonomy::For(Duration::ZERO))),
            (Some("90s"), Ok(Autonomy::For(Duration::from_secs(90)))),
            (Some("1h30m"), Ok(Autonomy::For(Duration::from_secs(5400)))),
            (Some("1.5h"), Ok(Autonomy::For(Duration::from_secs(5400)))),
        ];
        for (value, want) in cases {
            assert_eq!(Autonomy::of(&node(None, vec![], value)), want, "{value:?}");
        }
        for bad in ["soon", "10", "-5m", "5d", "m"] {
            let err = Autonomy::of(&node(None, vec![], Some(bad))).unwrap_err();
            assert!(err.contains("kedge.io/autonomy"), "{err}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_is_silent_only_after_its_heartbeat_stops_changing_for_the_grace_period() {
        let grace = Duration::from_secs(50);
        let t0 = Instant::now();
        let rec = |s: &str| (Some(s.to_string()), None);
        let (h, silent) = heartbeat_state(None, rec("a"), t0, grace);
        assert!(!silent);
        let (h, silent) = heartbeat_state(Some(&h), rec("a"), t0 + Duration::from_secs(50), grace);
        assert!(!silent);
        let (h, silent) = heartbeat_state(Some(&h), rec("b"), t0 + Duration::from_secs(60), grace);
        assert!(!silent, "a renewal resets the clock");
        let (_, silent) = heartbeat_state(Some(&h), rec("b"), t0 + Duration::from_secs(111), grace);
        assert!(silent);
    }

    #[test]
    fn taints_follow_the_ready_condition() {
        let now = jiff::Timestamp::from_second(1000).unwrap();
        // Unknown: both unreachable taints, NoExecute stamped.
        let t = desired_taints(&node(Some("Unknown"), vec![], None), now).unwrap();
        assert_eq!(t.len(), 2);
        assert!(t.iter().all(|t| t.key == UNREACHABLE));
        let no_exec = t.iter().find(|t| t.effect == "NoExecute").unwrap();
        assert_eq!(no_exec.time_added, Some(Time(now)));
        // Already right: nothing to do.
        assert_eq!(
            desired_taints(&node(Some("Unknown"), t.clone(), None), now),
            None
        );
        // Back to Ready: removed, other taints kept.
        let mut with_other = t.clone();
        with_other.push(taint("dedicated", "NoSchedule", 1));
        let t2 = desired_taints(&node(Some("True"), with_other, None), now).unwrap();
        assert_eq!(t2.len(), 1);
        assert_eq!(t2[0].key, "dedicated");
        // False: not-ready replaces unreachable.
        let t3 = desired_taints(&node(Some("False"), t, None), now).unwrap();
        assert!(t3.iter().all(|t| t.key == NOT_READY), "{t3:?}");
        assert_eq!(desired_taints(&node(Some("True"), vec![], None), now), None);
    }

    #[test]
    fn eviction_follows_autonomy_and_tolerations() {
        let t = taint(UNREACHABLE, "NoExecute", 1000);
        let default = pod(vec![
            toleration(NOT_READY, Some(300)),
            toleration(UNREACHABLE, Some(300)),
        ]);
        let forever = pod(vec![toleration(UNREACHABLE, None)]);
        let none = pod(vec![]);
        let zero = Autonomy::For(Duration::ZERO);
        let ten_min = Autonomy::For(Duration::from_secs(600));
        let cases = [
            (&default, Autonomy::Never, None),
            (&none, Autonomy::Never, None),
            (&default, zero, Some(at(1300))),
            (&none, zero, Some(at(1000))),
            (&forever, zero, None),
            (&default, ten_min, Some(at(1600))),
            (&none, ten_min, Some(at(1600))),
            (&forever, ten_min, None),
        ];
        for (i, (p, autonomy, want)) in cases.into_iter().enumerate() {
            assert_eq!(eviction_time(p, &t, autonomy), want, "case {i}");
        }
    }

    #[test]
    fn tolerations_match_as_upstream() {
        let t = Taint {
            key: "k".into(),
            value: Some("v".into()),
            effect: "NoExecute".into(),
            time_added: None,
        };
        let tol =
            |key: Option<&str>, op: &str, value: Option<&str>, effect: Option<&str>| Toleration {
                key: key.map(Into::into),
                operator: Some(op.into()),
                value: value.map(Into::into),
                effect: effect.map(Into::into),
                toleration_seconds: None,
            };
        assert!(tolerates(&tol(Some("k"), "Equal", Some("v"), None), &t));
        assert!(!tolerates(&tol(Some("k"), "Equal", Some("w"), None), &t));
        assert!(tolerates(
            &tol(Some("k"), "Exists", None, Some("NoExecute")),
            &t
        ));
        assert!(!tolerates(
            &tol(Some("k"), "Exists", None, Some("NoSchedule")),
            &t
        ));
        assert!(tolerates(&tol(None, "Exists", None, None), &t));
        assert!(!tolerates(&tol(Some("x"), "Exists", None, None), &t));
    }
}
