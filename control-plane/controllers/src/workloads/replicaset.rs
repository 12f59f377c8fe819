//! The ReplicaSet controller: keeps `spec.replicas` active pods that match
//! the selector, adopting orphans and releasing pods that stop matching, and
//! reports the counts in status.
//!
//! [`plan`] is the decision (a ReplicaSet and its pods in, pods to create and
//! delete and the status out); [`run`] is the loop around it. Pods are
//! created with generateName `<rs>-` (the apiserver adds five random
//! characters, as upstream), carry the template's labels, and a controller
//! reference with blockOwnerDeletion.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use tracing::Instrument;

use super::common::{self, Shared};
use crate::{Context, ControllerFuture, Error};

/// At most this many pods are created or deleted in one reconcile (upstream's
/// burstReplicas).
pub const BURST: usize = 500;

/// What one reconcile of a ReplicaSet should do.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// How many pods to create.
    pub create: usize,
    /// Names of pods to delete, in order.
    pub delete: Vec<String>,
    /// The status to write.
    pub status: ReplicaSetStatus,
    /// When to look again (minReadySeconds running out).
    pub requeue: Option<Duration>,
}

/// The decision: `pods` are the pods this ReplicaSet controls (after
/// adoption and release).
pub fn plan(rs: &ReplicaSet, pods: &[&Pod], now: jiff::Timestamp) -> Plan {
    let spec = rs.spec.clone().unwrap_or_default();
    let want = spec.replicas.unwrap_or(1).max(0) as usize;
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let active: Vec<&Pod> = pods
        .iter()
        .copied()
        .filter(|p| common::pod_active(p))
        .collect();

    let mut plan = Plan::default();
    if rs.metadata.deletion_timestamp.is_none() {
        if active.len() < want {
            plan.create = (want - active.len()).min(BURST);
        } else if active.len() > want {
            let n = (active.len() - want).min(BURST);
            plan.delete = deletion_order(&active)
                .into_iter()
                .take(n)
                .map(|p| p.name_any())
                .collect();
        }
    }

    let template_labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let mut status = ReplicaSetStatus {
        replicas: active.len() as i32,
        observed_generation: rs.metadata.generation,
        conditions: rs.status.as_ref().and_then(|s| s.conditions.clone()),
        ..Default::default()
    };
    let mut fully = 0;
    let mut ready = 0;
    let mut available = 0;
    for p in &active {
        let labels = p.labels();
        if template_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
        {
            fully += 1;
        }
        if common::pod_ready(p) {
            ready += 1;
            if common::pod_available(p, min_ready, now) {
                available += 1;
            } else {
                plan.requeue =
                    common::earliest(plan.requeue, common::until_available(p, min_ready, now));
            }
        }
    }
    status.fully_labeled_replicas = Some(fully);
    status.ready_replicas = Some(ready);
    status.available_replicas = Some(available);
    plan.status = status;
    plan
}

/// Pods in the order upstream deletes them when scaling down: unscheduled
/// before scheduled, pending before unknown before running, not ready
/// before ready, more pods of the set on the same node before fewer, ready
/// for less time before longer, more restarts before fewer, newer before
/// older.
pub fn deletion_order<'a>(pods: &[&'a Pod]) -> Vec<&'a Pod> {
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for p in pods {
        if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            *per_node.entry(n).or_default() += 1;
        }
    }
    let mut sorted: Vec<&Pod> = pods.to_vec();
    sorted.sort_by_key(|p| {
        let node = p.spec.as_ref().and_then(|s| s.node_name.as_deref());
        let phase = match common::phase(p) {
            "Pending" | "" => 0,
            "Unknown" => 1,
            "Running" => 2,
            _ => 3,
        };
        let ready = common::ready_since(p);
        let restarts: i32 = p
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map(|cs| cs.iter().map(|c| c.restart_count).sum())
            .unwrap_or(0);
        (
            node.is_some(),
            phase,
            ready.is_some(),
            Reverse(node.map_or(0, |n| per_node.get(n).copied().unwrap_or(0))),
            Reverse(ready.flatten()),
            Reverse(restarts),
            Reverse(p.metadata.creation_timestamp.as_ref().map(|t| t.0)),
        )
    });
    sorted
}

/// Whether two statuses differ in what the controller writes.
fn status_differs(old: Option<&ReplicaSetStatus>, new: &ReplicaSetStatus) -> bool {
    old != Some(new)
}

async fn reconcile(rs: Arc<ReplicaSet>, ctx: Arc<Shared>) -> Result<Action, Error> {
    let (ns, name) = common::ns_name(rs.as_ref());
    let span = tracing::debug_span!("reconcile", kind = "ReplicaSet", ns = %ns, name = %name);
    reconcile_inner(rs, ctx, ns).instrument(span).await
}

async fn reconcile_inner(
    rs: Arc<ReplicaSet>,
    ctx: Arc<Shared>,
    ns: String,
) -> Result<Action, Error> {
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
    // Re-read the ReplicaSet: the cache may lag behind a scale.
    let Some(rs) = rs_api.get_opt(&rs.name_any()).await? else {
        return Ok(Action::await_change());
    };
    let uid = rs.metadata.uid.clone().unwrap_or_default();
    let selector = rs
        .spec
        .as_ref()
        .map(|s| s.selector.clone())
        .unwrap_or_default();
    let all = pods_api.list(&Default::default()).await?.items;
    let own = common::classify(
        &uid,
        &selector,
        rs.metadata.deletion_timestamp.is_some(),
        all.iter().map(|p| &p.metadata),
    );
    let mut pods: Vec<Pod> = own.owned.iter().map(|&i| all[i].clone()).collect();
    for &i in &own.adopt {
        match common::adopt(&pods_api, &all[i], &rs).await {
            Ok(p) => pods.push(p),
            Err(Error::Api(e)) if common::is_conflict(&e) || common::is_not_found(&e) => {}
            Err(e) => return Err(e),
        }
    }
    for &i in &own.release {
        common::release(&pods_api, &all[i], &uid).await?;
    }

    let now = ctx.now();
    let refs: Vec<&Pod> = pods.iter().collect();
    let plan = plan(&rs, &refs, now);

    let mut failed: Option<Error> = None;
    if plan.create > 0 {
        let template = rs
            .spec
            .as_ref()
            .and_then(|s| s.template.clone())
            .unwrap_or_default();
        let pod = common::pod_from_template(
            &template,
            &rs,
            &common::generate_prefix(&rs.name_any()),
            true,
        );
        let pp = PostParams::default();
        let mut left = plan.create;
        let mut batch = 1;
        'outer: while left > 0 {
            let n = batch.min(left);
            let results =
                futures::future::join_all((0..n).map(|_| pods_api.create(&pp, &pod))).await;
            for r in results {
                match r {
                    Ok(p) => {
                        ctx.event(
                            &rs,
                            false,
                            "SuccessfulCreate",
                            format!("Created pod: {}", p.name_any()),
                        )
                        .await
                    }
                    Err(e) => {
                        ctx.event(&rs, true, "FailedCreate", format!("Error creating: {e}"))
                            .await;
                        failed = Some(e.into());
                        break 'outer;
                    }
                }
            }
            left -= n;
            batch *= 2;
        }
    }
    for p in &plan.delete {
        let dp = common::delete_params(None);
        match common::delete_ignore_missing(&pods_api, p, &dp).await {
            Ok(()) => {
                ctx.event(&rs, false, "SuccessfulDelete", format!("Deleted pod: {p}"))
                    .await
            }
            Err(e) => {
                ctx.event(&rs, true, "FailedDelete", format!("Error deleting: {e}"))
                    .await;
                failed = Some(e);
                break;
            }
        }
    }

    if status_differs(rs.status.as_ref(), &plan.status) {
        let mut updated = rs.clone();
        updated.status = Some(plan.status.clone());
        common::write_status(&rs_api, &updated).await?;
    }
    if let Some(e) = failed {
        return Err(e);
    }
    Ok(common::action(plan.requeue))
}

/// The ReplicaSets a pod event concerns: its controller, or for an orphan
/// every ReplicaSet in its namespace whose selector matches it.
fn owners_of(store: &Store<ReplicaSet>, pod: &Pod) -> Vec<ObjectRef<ReplicaSet>> {
    let ns = pod.namespace().unwrap_or_default();
    if let Some(o) = common::controller_ref(&pod.metadata) {
        if o.kind == "ReplicaSet" {
            return vec![ObjectRef::new(&o.name).within(&ns)];
        }
        return Vec::new();
    }
    store
        .state()
        .iter()
        .filter(|rs| rs.namespace().as_deref() == Some(ns.as_str()))
        .filter(|rs| {
            rs.spec
                .as_ref()
                .is_some_and(|s| common::selector_matches(&s.selector, pod.labels()))
        })
        .map(|rs| ObjectRef::from_obj(rs.as_ref()))
        .collect()
}

/// The ReplicaSet controller's loop.
pub fn run(ctx: &Context) -> ControllerFuture {
    let shared = Shared::new(ctx, "replicaset-controller");
    let client = ctx.client.clone();
    Box::pin(async move {
        let controller = Controller::new(
            Api::<ReplicaSet>::all(client.clone()),
            watcher::Config::default(),
        );
        let store = controller.store();
        let stream = controller
            .watches(
                Api::<Pod>::all(client),
                watcher::Config::default(),
                move |pod| owners_of(&store, &pod),
            )
            .run(reconcile, common::error_policy, shared);
        common::drive(stream).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rs(replicas: i32) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1", "generation": 3},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web", "tier": "fe"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
            }
        }))
        .unwrap()
    }

    fn pod(name: &str, node: Option<&str>, phase: &str, ready: Option<&str>, created: &str) -> Pod {
        let mut conds = vec![];
        if let Some(t) = ready {
            conds.push(json!({"type": "Ready", "status": "True", "lastTransitionTime": t}));
        }
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"app": "web", "tier": "fe"}, "creationTimestamp": created},
            "spec": {"nodeName": node, "containers": []},
            "status": {"phase": phase, "conditions": conds}
        }))
        .unwrap()
    }

    fn now() -> jiff::Timestamp {
        "2026-01-01T01:00:00Z".parse().unwrap()
    }

    #[test]
    fn creates_missing_pods_and_counts_status() {
        let p1 = pod(
            "a",
            Some("n1"),
            "Running",
            Some("2026-01-01T00:00:00Z"),
            "2026-01-01T00:00:00Z",
        );
        let p2 = pod("b", None, "Pending", None, "2026-01-01T00:00:00Z");
        let plan = plan(&rs(3), &[&p1, &p2], now());
        assert_eq!(plan.create, 1);
        assert!(plan.delete.is_empty());
        assert_eq!(plan.status.replicas, 2);
        assert_eq!(plan.status.ready_replicas, Some(1));
        assert_eq!(plan.status.available_replicas, Some(1));
        assert_eq!(plan.status.fully_labeled_replicas, Some(2));
        assert_eq!(plan.status.observed_generation, Some(3));
    }

    #[test]
    fn scale_down_order_is_upstreams() {
        let t0 = "2026-01-01T00:00:00Z";
        let t1 = "2026-01-01T00:10:00Z";
        let unscheduled = pod("unscheduled", None, "Pending", None, t0);
        let pending = pod("pending", Some("n1"), "Pending", None, t0);
        let running_not_ready = pod("notready", Some("n2"), "Running", None, t0);
        let ready_recently = pod("recent", Some("n3"), "Running", Some(t1), t0);
        let ready_long_old = pod("old", Some("n4"), "Running", Some(t0), t0);
        let ready_long_new = pod("new", Some("n5"), "Running", Some(t0), t1);
        let pods = [
            &ready_long_old,
            &ready_recently,
            &running_not_ready,
            &ready_long_new,
            &pending,
            &unscheduled,
        ];
        let order: Vec<String> = deletion_order(&pods).iter().map(|p| p.name_any()).collect();
        assert_eq!(
            order,
            ["unscheduled", "pending", "notready", "recent", "new", "old"]
        );
        let plan = plan(&rs(4), &pods, now());
        assert_eq!(plan.delete, ["unscheduled", "pending"]);
    }

    #[test]
    fn doubled_up_nodes_lose_pods_first() {
        let t0 = "2026-01-01T00:00:00Z";
        let a = pod("a", Some("n1"), "Running", Some(t0), t0);
        let b = pod("b", Some("n2"), "Running", Some(t0), t0);
        let c = pod("c", Some("n2"), "Running", Some(t0), t0);
        let order: Vec<String> = deletion_order(&[&a, &b, &c])
            .iter()
            .map(|p| p.name_any())
            .collect();
        assert_eq!(order[2], "a");
    }

    #[test]
    fn terminating_and_finished_pods_do_not_count() {
        let mut gone = pod("gone", Some("n1"), "Running", None, "2026-01-01T00:00:00Z");
        gone.metadata.deletion_timestamp = Some(common::time(now()));
        let done = pod(
            "done",
            Some("n1"),
            "Succeeded",
            None,
            "2026-01-01T00:00:00Z",
        );
        let plan = plan(&rs(1), &[&gone, &done], now());
        assert_eq!(plan.create, 1);
        assert_eq!(plan.status.replicas, 0);
    }

    #[test]
    fn min_ready_seconds_requeues() {
        let mut r = rs(1);
        r.spec.as_mut().unwrap().min_ready_seconds = Some(30);
        let p = pod(
            "a",
            Some("n1"),
            "Running",
            Some("2026-01-01T00:59:50Z"),
            "2026-01-01T00:00:00Z",
        );
        let plan = plan(&r, &[&p], now());
        assert_eq!(plan.status.available_replicas, Some(0));
        assert_eq!(plan.status.ready_replicas, Some(1));
        let wait = plan.requeue.unwrap();
        assert!(wait > Duration::from_secs(19) && wait < Duration::from_secs(21));
    }

    #[test]
    fn deleting_replicaset_is_left_alone() {
        let mut r = rs(3);
        r.metadata.deletion_timestamp = Some(common::time(now()));
        assert_eq!(plan(&r, &[], now()).create, 0);
    }
}
