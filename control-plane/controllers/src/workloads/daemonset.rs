//! The DaemonSet controller: one pod on every node that matches the
//! DaemonSet's nodeSelector and required node affinity and whose taints its
//! pods tolerate, rolled out by RollingUpdate (maxUnavailable, maxSurge) or
//! OnDelete, with ControllerRevisions as history.
//!
//! As upstream, the controller does not bind: each pod gets required node
//! affinity `matchFields metadata.name In [<node>]` and the scheduler binds
//! it. DaemonSet pods get upstream's default tolerations (not-ready and
//! unreachable NoExecute; disk-, memory- and pid-pressure and unschedulable
//! NoSchedule; network-unavailable with hostNetwork).
//!
//! [`plan`] is the decision (the DaemonSet, nodes and pods in; pods to create
//! and delete and the status out); [`run`] is the loop. Not done: releasing
//! pods whose labels stop matching the selector (they are not listed), and
//! the backoff before replacing a failed daemon pod.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, Toleration,
};
use kedge_scheduler::selectors::tolerates;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::reflector::{self, Store, reflector};
use kube::runtime::watcher;
use tracing::Instrument;

use super::common::{self, Shared};
use super::deployment::scaled;
use super::revisions::{self, Choice, HASH_LABEL};
use crate::{Context, ControllerFuture, Error};

// --- which nodes ------------------------------------------------------------

fn toleration(key: &str, effect: &str) -> Toleration {
    Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Default::default()
    }
}

/// The pod spec with upstream's default DaemonSet tolerations added.
pub fn with_default_tolerations(spec: &PodSpec) -> PodSpec {
    let mut spec = spec.clone();
    let mut add = vec![
        toleration("node.kubernetes.io/not-ready", "NoExecute"),
        toleration("node.kubernetes.io/unreachable", "NoExecute"),
        toleration("node.kubernetes.io/disk-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/memory-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/pid-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        add.push(toleration(
            "node.kubernetes.io/network-unavailable",
            "NoSchedule",
        ));
    }
    let tols = spec.tolerations.get_or_insert_with(Vec::new);
    for t in add {
        if !tols.iter().any(|x| x.key == t.key && x.effect == t.effect) {
            tols.push(t);
        }
    }
    spec
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.clone().unwrap_or_default();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = node.labels();
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| {
            let v = (r.key == "metadata.name").then(|| node.name_any());
            requirement_matches(r, v.as_deref())
        })
}

/// Whether the pod spec's nodeSelector and required node affinity select
/// `node`.
pub fn node_selected(spec: &PodSpec, node: &Node) -> bool {
    let labels = node.labels();
    if let Some(sel) = &spec.node_selector
        && !sel.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    match required {
        Some(r) => r.node_selector_terms.iter().any(|t| term_matches(t, node)),
        None => true,
    }
}

/// Whether a daemon pod should run on `node` (new pods), and whether one
/// that runs there may go on running.
pub fn should_run(spec: &PodSpec, node: &Node) -> (bool, bool) {
    if !node_selected(spec, node) {
        return (false, false);
    }
    let tols = spec.tolerations.clone().unwrap_or_default();
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let untolerated = |effects: &[&str]| {
        taints
            .iter()
            .filter(|t| effects.contains(&t.effect.as_str()))
            .any(|t| !tols.iter().any(|tol| tolerates(tol, t)))
    };
    let keep = !untolerated(&["NoExecute"]);
    (keep && !untolerated(&["NoSchedule"]), keep)
}

/// The node a daemon pod is for: its nodeName, or the node its affinity
/// names.
pub fn pod_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = &spec.node_name {
        return Some(n.clone());
    }
    spec.affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|f| f.key == "metadata.name" && f.operator == "In")
        .and_then(|f| f.values.as_ref()?.first().cloned())
}

// --- the decision -----------------------------------------------------------

/// What one reconcile of a DaemonSet should do.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Nodes to create a pod for.
    pub create: Vec<String>,
    /// Pods to delete.
    pub delete: Vec<String>,
    /// The new status.
    pub status: DaemonSetStatus,
    /// When to look again (minReadySeconds).
    pub requeue: Option<Duration>,
}

fn is_updated(pod: &Pod, hash: &str) -> bool {
    pod.labels().get(HASH_LABEL).map(String::as_str) == Some(hash)
}

/// The decision: `pods` are the DaemonSet's pods, `hash` the current
/// revision's hash.
pub fn plan(
    ds: &DaemonSet,
    nodes: &[&Node],
    pods: &[&Pod],
    hash: &str,
    now: jiff::Timestamp,
) -> Plan {
    let spec = ds.spec.clone().unwrap_or_default();
    let pod_spec = with_default_tolerations(&spec.template.spec.clone().unwrap_or_default());
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let mut plan = Plan::default();
    let deleting = ds.metadata.deletion_timestamp.is_some();

    let mut by_node: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    for p in pods {
        if p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if common::phase(p) == "Failed" {
            // A failed daemon pod is replaced.
            plan.delete.push(p.name_any());
            continue;
        }
        if common::phase(p) == "Succeeded" {
            plan.delete.push(p.name_any());
            continue;
        }
        match pod_node(p) {
            Some(n) => by_node.entry(n).or_default().push(p),
            None => plan.delete.push(p.name_any()),
        }
    }
    let node_names: BTreeSet<String> = nodes.iter().map(|n| n.name_any()).collect();
    for (n, ps) in &by_node {
        if !node_names.contains(n) {
            plan.delete.extend(ps.iter().map(|p| p.name_any()));
        }
    }

    let mut st = DaemonSetStatus {
        observed_generation: ds.metadata.generation,
        collision_count: ds.status.as_ref().and_then(|s| s.collision_count),
        conditions: ds.status.as_ref().and_then(|s| s.conditions.clone()),
        ..Default::default()
    };
    // Per eligible node: (node, old pod, new pod).
    let mut eligible: Vec<(String, Vec<&Pod>)> = Vec::new();
    for node in nodes {
        let name = node.name_any();
        let (run, keep) = should_run(&pod_spec, node);
        let mut ps = by_node.get(&name).cloned().unwrap_or_default();
        ps.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
        if run || (keep && !ps.is_empty()) {
            st.desired_number_scheduled += 1;
            if !ps.is_empty() {
                st.current_number_scheduled += 1;
            }
            if ps.iter().any(|p| is_updated(p, hash)) {
                st.updated_number_scheduled = Some(st.updated_number_scheduled.unwrap_or(0) + 1);
            }
            if ps.iter().any(|p| common::pod_ready(p)) {
                st.number_ready += 1;
            }
            if ps.iter().any(|p| common::pod_available(p, min_ready, now)) {
                st.number_available = Some(st.number_available.unwrap_or(0) + 1);
            }
            for p in &ps {
                if common::pod_ready(p) && !common::pod_available(p, min_ready, now) {
                    plan.requeue =
                        common::earliest(plan.requeue, common::until_available(p, min_ready, now));
                }
            }
            eligible.push((name, ps));
        } else if !ps.is_empty() {
            st.number_misscheduled += 1;
            plan.delete.extend(ps.iter().map(|p| p.name_any()));
        }
    }
    st.number_unavailable = Some(st.desired_number_scheduled - st.number_available.unwrap_or(0));
    plan.status = st;
    if deleting {
        plan.delete.clear();
        return plan;
    }

    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        != Some("OnDelete");
    let ru = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.rolling_update.clone())
        .unwrap_or_default();
    let desired = plan.status.desired_number_scheduled;
    let max_surge = if rolling {
        scaled(
            Some(ru.max_surge.as_ref().unwrap_or(&Default::default())),
            desired,
            true,
        )
    } else {
        0
    };
    let mut max_unavailable = scaled(
        Some(
            ru.max_unavailable
                .as_ref()
                .unwrap_or(&k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1)),
        ),
        desired,
        true,
    );
    if max_surge == 0 && max_unavailable == 0 {
        max_unavailable = 1;
    }
    let available = |p: &Pod| common::pod_available(p, min_ready, now);

    let mut num_unavailable = 0;
    let mut replace_now: Vec<String> = Vec::new();
    let mut candidates: Vec<String> = Vec::new();
    let mut surge_now: Vec<String> = Vec::new();
    let mut surge_candidates: Vec<String> = Vec::new();
    let mut num_surge = 0;
    for (node, ps) in &eligible {
        let new: Vec<&&Pod> = ps.iter().filter(|p| is_updated(p, hash)).collect();
        let old: Vec<&&Pod> = ps.iter().filter(|p| !is_updated(p, hash)).collect();
        if ps.is_empty() {
            plan.create.push(node.clone());
            num_unavailable += 1;
            continue;
        }
        if !rolling {
            // OnDelete: keep the oldest pod; extra pods go.
            plan.delete.extend(ps.iter().skip(1).map(|p| p.name_any()));
            continue;
        }
        // Duplicates of one kind go, keeping the oldest.
        plan.delete.extend(new.iter().skip(1).map(|p| p.name_any()));
        if old.len() > 1 {
            plan.delete.extend(old.iter().skip(1).map(|p| p.name_any()));
        }
        match (old.first(), new.first()) {
            (Some(o), Some(n)) => {
                if available(n) {
                    plan.delete.push(o.name_any());
                } else {
                    if max_surge == 0 {
                        // Without surge, only one of them may stay: the new.
                        plan.delete.push(o.name_any());
                    }
                    num_unavailable += 1;
                    num_surge += 1;
                }
            }
            (None, Some(n)) => {
                if !available(n) {
                    num_unavailable += 1;
                }
            }
            (Some(o), None) => {
                if max_surge > 0 {
                    if !available(o) {
                        surge_now.push(node.clone());
                    } else {
                        surge_candidates.push(node.clone());
                    }
                } else if !available(o) {
                    replace_now.push(o.name_any());
                } else {
                    candidates.push(o.name_any());
                }
            }
            (None, None) => {}
        }
    }
    if rolling {
        if max_surge > 0 {
            let room = (max_surge - num_surge).max(0) as usize;
            plan.create.extend(surge_now);
            plan.create.extend(surge_candidates.into_iter().take(room));
        } else {
            let room = (max_unavailable - num_unavailable).max(0) as usize;
            plan.delete.extend(replace_now);
            plan.delete.extend(candidates.into_iter().take(room));
        }
    }
    plan.delete.sort();
    plan.delete.dedup();
    plan
}

/// A daemon pod of `ds` for `node`, made from the current revision.
pub fn daemon_pod(ds: &DaemonSet, node: &str, hash: &str) -> Pod {
    let spec = ds.spec.clone().unwrap_or_default();
    let mut template = spec.template.clone();
    let meta = template.metadata.get_or_insert_with(Default::default);
    let labels = meta.labels.get_or_insert_with(Default::default);
    labels.insert(HASH_LABEL.into(), hash.into());
    labels.insert(
        "pod-template-generation".into(),
        ds.metadata.generation.unwrap_or(1).to_string(),
    );
    let mut pod = common::pod_from_template(
        &template,
        ds,
        &common::generate_prefix(&ds.name_any()),
        true,
    );
    let mut pod_spec = with_default_tolerations(&pod.spec.clone().unwrap_or_default());
    let affinity = pod_spec.affinity.get_or_insert_with(Affinity::default);
    let na = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    na.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.to_string()]),
            }]),
        }],
    });
    pod.spec = Some(pod_spec);
    pod
}

// --- the loop ---------------------------------------------------------------

async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<DsContext>) -> Result<Action, Error> {
    let (ns, name) = common::ns_name(ds.as_ref());
    let span = tracing::debug_span!("reconcile", kind = "DaemonSet", ns = %ns, name = %name);
    // Until the Node cache has its first full list, every pod would look
    // like it sits on a missing node.
    if ctx.nodes.wait_until_ready().await.is_err() {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let nodes: Vec<Node> = ctx.nodes.state().iter().map(|n| (**n).clone()).collect();
    reconcile_inner(name, ctx.shared.clone(), ns, nodes)
        .instrument(span)
        .await
}

/// Finds or makes the current ControllerRevision of a DaemonSet or
/// StatefulSet; returns its name and hash, or `None` after a hash collision
/// (the caller bumps collisionCount).
pub async fn current_revision<K>(
    ctx: &Shared,
    owner: &K,
    template: &k8s_openapi::api::core::v1::PodTemplateSpec,
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    collision_count: Option<i32>,
) -> Result<(Option<(String, String)>, Vec<ControllerRevision>), Error>
where
    K: kube::Resource<DynamicType = ()>,
{
    let ns = owner.meta().namespace.clone().unwrap_or_default();
    let uid = owner.meta().uid.clone().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    let q = common::selector_query(selector)?;
    let mut revs: Vec<ControllerRevision> = api
        .list(&ListParams::default().labels(&q))
        .await?
        .items
        .into_iter()
        .filter(|r| common::controlled_by(&r.metadata, &uid))
        .collect();
    let refs: Vec<&ControllerRevision> = revs.iter().collect();
    let labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let owner_name = owner.meta().name.clone().unwrap_or_default();
    let chosen = match revisions::choose(owner, template, &labels, collision_count, &refs) {
        Choice::Current(name, _) => name,
        Choice::Renumber(name, n) => {
            let patch = serde_json::json!({"revision": n});
            let r = api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            revs.retain(|x| x.name_any() != name);
            revs.push(r);
            name
        }
        Choice::Create(rev) => match api.create(&PostParams::default(), &rev).await {
            Ok(r) => {
                let name = r.name_any();
                revs.push(r);
                name
            }
            Err(e) if common::is_already_exists(&e) => {
                let existing = api.get_opt(&rev.name_any()).await?;
                let same = existing.as_ref().is_some_and(|x| {
                    common::controlled_by(&x.metadata, &uid) && x.data == rev.data
                });
                if !same {
                    return Ok((None, revs));
                }
                // Ours, but not listed: its labels no longer match.
                rev.name_any()
            }
            Err(e) => return Err(e.into()),
        },
    };
    let hash = revs
        .iter()
        .find(|r| r.name_any() == chosen)
        .map(|r| revisions::revision_hash(r, &owner_name))
        .unwrap_or_else(|| {
            chosen
                .trim_start_matches(&format!("{owner_name}-"))
                .to_string()
        });
    Ok((Some((chosen, hash)), revs))
}

/// Deletes revisions beyond the history limit that no pod uses.
pub async fn cleanup_revisions(
    ctx: &Shared,
    ns: &str,
    owner: &str,
    revs: &[ControllerRevision],
    current: &str,
    pods: &[Pod],
    limit: i32,
) -> Result<(), Error> {
    let api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), ns);
    let in_use: BTreeSet<String> = pods
        .iter()
        .filter_map(|p| p.labels().get(HASH_LABEL).cloned())
        .collect();
    let refs: Vec<&ControllerRevision> = revs.iter().collect();
    for name in revisions::to_delete(&refs, current, &in_use, owner, limit) {
        common::delete_ignore_missing(&api, &name, &common::delete_params(None)).await?;
    }
    Ok(())
}

async fn reconcile_inner(
    name: String,
    ctx: Arc<Shared>,
    ns: String,
    nodes: Vec<Node>,
) -> Result<Action, Error> {
    let api: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &ns);
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(ds) = api.get_opt(&name).await? else {
        return Ok(Action::await_change());
    };
    let uid = ds.metadata.uid.clone().unwrap_or_default();
    let spec = ds.spec.clone().unwrap_or_default();
    let deleting = ds.metadata.deletion_timestamp.is_some();
    let listed = common::list_selected(&pods_api, &spec.selector).await?;
    let own = common::classify(
        &uid,
        &spec.selector,
        deleting,
        listed.iter().map(|p| &p.metadata),
    );
    let mut pods: Vec<Pod> = own.owned.iter().map(|&i| listed[i].clone()).collect();
    for &i in &own.adopt {
        if let Ok(p) = common::adopt(&pods_api, &listed[i], &ds).await {
            pods.push(p);
        }
    }
    let collision = ds.status.as_ref().and_then(|s| s.collision_count);
    let (current, revs) =
        current_revision(&ctx, &ds, &spec.template, &spec.selector, collision).await?;
    let Some((rev_name, hash)) = current else {
        let mut updated = ds.clone();
        let st = updated.status.get_or_insert_with(Default::default);
        st.collision_count = Some(collision.unwrap_or(0).saturating_add(1));
        common::write_status(&api, &updated).await?;
        return Ok(Action::requeue(Duration::from_millis(100)));
    };
    let node_refs: Vec<&Node> = nodes.iter().collect();
    let pod_refs: Vec<&Pod> = pods.iter().collect();
    let plan = plan(&ds, &node_refs, &pod_refs, &hash, ctx.now());
    tracing::debug!(create = ?plan.create, delete = ?plan.delete, "daemonset plan");

    let mut failed = None;
    if !deleting {
        for node in &plan.create {
            match pods_api
                .create(&PostParams::default(), &daemon_pod(&ds, node, &hash))
                .await
            {
                Ok(p) => {
                    ctx.event(
                        &ds,
                        false,
                        "SuccessfulCreate",
                        format!("Created pod: {}", p.name_any()),
                    )
                    .await
                }
                Err(e) => {
                    ctx.event(&ds, true, "FailedCreate", format!("Error creating: {e}"))
                        .await;
                    failed = Some(e.into());
                    break;
                }
            }
        }
        for p in &plan.delete {
            common::delete_ignore_missing(&pods_api, p, &common::delete_params(None)).await?;
            ctx.event(&ds, false, "SuccessfulDelete", format!("Deleted pod: {p}"))
                .await;
        }
        cleanup_revisions(
            &ctx,
            &ns,
            &name,
            &revs,
            &rev_name,
            &pods,
            spec.revision_history_limit.unwrap_or(10),
        )
        .await?;
    }
    if ds.status.as_ref() != Some(&plan.status) {
        let mut updated = ds.clone();
        updated.status = Some(plan.status.clone());
        common::write_status(&api, &updated).await?;
    }
    if let Some(e) = failed {
        return Err(e);
    }
    let busy = !plan.create.is_empty() || !plan.delete.is_empty();
    Ok(common::action(if busy {
        common::earliest(plan.requeue, Some(Duration::from_secs(5)))
    } else {
        plan.requeue
    }))
}

/// What a DaemonSet reconcile is given: the shared state and a watched
/// copy of the Nodes (Nodes are written by kubelets, never by this
/// controller, so a cache that lags a little is as good as a LIST, and far
/// cheaper with thousands of nodes).
pub struct DsContext {
    shared: Arc<Shared>,
    nodes: Store<Node>,
}

impl std::fmt::Debug for DsContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DsContext").finish_non_exhaustive()
    }
}

fn ds_error_policy(ds: Arc<DaemonSet>, err: &Error, ctx: Arc<DsContext>) -> Action {
    common::error_policy(ds, err, ctx.shared.clone())
}

/// The DaemonSet controller's loop.
pub fn run(ctx: &Context) -> ControllerFuture {
    let shared = Shared::new(ctx, "daemonset-controller");
    let client = ctx.client.clone();
    Box::pin(async move {
        let (nodes, writer) = reflector::store::<Node>();
        // Every change to a Node reconciles every DaemonSet (debounced).
        let node_events = reflector(
            writer,
            watcher::watcher(Api::<Node>::all(client.clone()), watcher::Config::default()),
        )
        .touched_objects()
        .filter_map(|r| futures::future::ready(r.ok().map(|_| ())));
        let stream = Controller::new(
            Api::<DaemonSet>::all(client.clone()),
            watcher::Config::default(),
        )
        .with_config(Config::default().debounce(Duration::from_millis(500)))
        .owns(Api::<Pod>::all(client), watcher::Config::default())
        .reconcile_all_on(node_events)
        .run(
            reconcile,
            ds_error_policy,
            Arc::new(DsContext { shared, nodes }),
        );
        common::drive(stream).await
    })
}

#[cfg(test)]
mod tests;
