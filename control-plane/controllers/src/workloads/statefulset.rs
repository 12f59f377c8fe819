//! The StatefulSet controller: pods with stable names `<sts>-<ordinal>`,
//! hostname and subdomain set, created in order (OrderedReady: ordinal i
//! only once 0..i are Running and Ready; scale-down from the highest
//! ordinal) or all at once (Parallel), and rolled to a new template from
//! the highest ordinal down to `partition`, through ControllerRevisions.
//!
//! [`plan`] is the decision (the set, its pods and revisions in; pods to
//! create and delete and the status out); [`run`] is the loop. Not done:
//! volumeClaimTemplates (no PersistentVolumeClaims are made; pods keep the
//! template's volumes), persistentVolumeClaimRetentionPolicy, and the alpha
//! maxUnavailable of rolling updates.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use tracing::Instrument;

use super::common::{self, Shared};
use super::revisions::HASH_LABEL;
use crate::{Context, ControllerFuture, Error};

/// The label with a pod's name.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The label with a pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// The ordinal of a pod of `set`, from its name.
pub fn ordinal(set: &str, pod: &str) -> Option<i32> {
    let rest = pod.strip_prefix(set)?.strip_prefix('-')?;
    if rest.is_empty() || (rest.len() > 1 && rest.starts_with('0')) {
        return None;
    }
    rest.parse().ok()
}

/// What one reconcile of a StatefulSet should do.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Ordinals to create, each with the revision hash to make it from.
    pub create: Vec<(i32, String)>,
    /// Pods to delete.
    pub delete: Vec<String>,
    /// The new status.
    pub status: StatefulSetStatus,
    /// When to look again.
    pub requeue: Option<Duration>,
}

fn healthy(p: &Pod) -> bool {
    common::phase(p) == "Running" && common::pod_ready(p) && p.metadata.deletion_timestamp.is_none()
}

fn revision_of(p: &Pod) -> &str {
    p.labels().get(HASH_LABEL).map(String::as_str).unwrap_or("")
}

/// The decision. `pods` are the set's pods; `update` is the current
/// template's revision hash, `current` the one the set is rolling from.
pub fn plan(
    sts: &StatefulSet,
    pods: &[&Pod],
    update: &str,
    current: &str,
    now: jiff::Timestamp,
) -> Plan {
    let spec = sts.spec.clone().unwrap_or_default();
    let name = sts.name_any();
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let start = spec
        .ordinals
        .as_ref()
        .and_then(|o| o.start)
        .unwrap_or(0)
        .max(0);
    let parallel = spec.pod_management_policy.as_deref() == Some("Parallel");
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let rolling = strategy.type_.as_deref() != Some("OnDelete");
    let partition = strategy
        .rolling_update
        .as_ref()
        .and_then(|r| r.partition)
        .unwrap_or(0)
        .max(0);
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let deleting = sts.metadata.deletion_timestamp.is_some();

    let mut by_ord: BTreeMap<i32, &Pod> = BTreeMap::new();
    for p in pods {
        if let Some(o) = ordinal(&name, &p.name_any()) {
            by_ord.insert(o, p);
        }
    }
    let wanted = start..start + replicas;
    let mut plan = Plan::default();

    // Status from what exists.
    let mut st = StatefulSetStatus {
        observed_generation: sts.metadata.generation,
        collision_count: sts.status.as_ref().and_then(|s| s.collision_count),
        conditions: sts.status.as_ref().and_then(|s| s.conditions.clone()),
        update_revision: Some(update.to_string()),
        current_revision: Some(current.to_string()),
        ..Default::default()
    };
    let mut current_replicas = 0;
    let mut updated = 0;
    let mut ready = 0;
    let mut available = 0;
    for p in by_ord.values() {
        if p.metadata.deletion_timestamp.is_some() || common::pod_terminal(p) {
            continue;
        }
        st.replicas += 1;
        if revision_of(p) == current {
            current_replicas += 1;
        }
        if revision_of(p) == update {
            updated += 1;
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
    st.current_replicas = Some(current_replicas);
    st.updated_replicas = Some(updated);
    st.ready_replicas = Some(ready);
    st.available_replicas = Some(available);
    if rolling && updated == st.replicas && ready == st.replicas && st.replicas == replicas {
        st.current_revision = Some(update.to_string());
        st.current_replicas = Some(updated);
    }
    plan.status = st;
    if deleting {
        return plan;
    }

    let revision_for = |o: i32| -> String {
        if rolling && o < start + partition {
            current.to_string()
        } else {
            update.to_string()
        }
    };

    // Failed pods are deleted, to be made again.
    for p in by_ord.values() {
        if common::pod_terminal(p) && p.metadata.deletion_timestamp.is_none() {
            plan.delete.push(p.name_any());
        }
    }
    if !plan.delete.is_empty() {
        return plan;
    }

    // Scale up, in order (or all at once when Parallel).
    for o in wanted.clone() {
        match by_ord.get(&o) {
            None => {
                plan.create.push((o, revision_for(o)));
                if !parallel {
                    return plan;
                }
            }
            Some(p) if !parallel && !healthy(p) => return plan,
            Some(_) => {}
        }
    }
    if !plan.create.is_empty() {
        return plan;
    }

    // Scale down from the highest ordinal.
    let condemned: Vec<&&Pod> = by_ord
        .iter()
        .rev()
        .filter(|(o, _)| !wanted.contains(o))
        .map(|(_, p)| p)
        .collect();
    if !condemned.is_empty() {
        if parallel {
            plan.delete = condemned
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .map(|p| p.name_any())
                .collect();
            return plan;
        }
        let all_healthy = wanted
            .clone()
            .all(|o| by_ord.get(&o).is_some_and(|p| healthy(p)));
        let first = condemned[0];
        if first.metadata.deletion_timestamp.is_none() && all_healthy {
            plan.delete.push(first.name_any());
        }
        return plan;
    }

    // Roll out the update revision from the highest ordinal down to the
    // partition, one pod at a time.
    if rolling {
        if !wanted
            .clone()
            .all(|o| by_ord.get(&o).is_some_and(|p| healthy(p)))
        {
            return plan;
        }
        for o in wanted.rev() {
            if o < start + partition {
                break;
            }
            if let Some(p) = by_ord.get(&o)
                && revision_of(p) != update
            {
                plan.delete.push(p.name_any());
                return plan;
            }
        }
    }
    plan
}

/// The template a ControllerRevision records.
pub fn revision_template(r: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = r.data.as_ref()?.0.get("spec")?.get("template")?.clone();
    if let Some(o) = t.as_object_mut() {
        o.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

/// Pod `ordinal` of `sts`, made from `template` at revision `hash`.
pub fn set_pod(sts: &StatefulSet, template: &PodTemplateSpec, ordinal: i32, hash: &str) -> Pod {
    let name = format!("{}-{ordinal}", sts.name_any());
    let mut template = template.clone();
    let labels = template
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(Default::default);
    labels.insert(HASH_LABEL.into(), hash.into());
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    let mut pod = common::pod_from_template(&template, sts, &name, false);
    if let Some(spec) = pod.spec.as_mut() {
        spec.hostname = Some(name.clone());
        spec.subdomain = sts
            .spec
            .as_ref()
            .and_then(|s| s.service_name.clone())
            .filter(|s| !s.is_empty());
    }
    pod
}

async fn reconcile(sts: Arc<StatefulSet>, ctx: Arc<Shared>) -> Result<Action, Error> {
    let (ns, name) = common::ns_name(sts.as_ref());
    let span = tracing::debug_span!("reconcile", kind = "StatefulSet", ns = %ns, name = %name);
    reconcile_inner(name, ctx, ns).instrument(span).await
}

async fn reconcile_inner(name: String, ctx: Arc<Shared>, ns: String) -> Result<Action, Error> {
    let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(sts) = api.get_opt(&name).await? else {
        return Ok(Action::await_change());
    };
    let uid = sts.metadata.uid.clone().unwrap_or_default();
    let spec = sts.spec.clone().unwrap_or_default();
    let deleting = sts.metadata.deletion_timestamp.is_some();
    let listed = common::list_selected(&pods_api, &spec.selector).await?;
    let own = common::classify(
        &uid,
        &spec.selector,
        deleting,
        listed.iter().map(|p| &p.metadata),
    );
    let mut pods: Vec<Pod> = own.owned.iter().map(|&i| listed[i].clone()).collect();
    for &i in &own.adopt {
        if ordinal(&name, &listed[i].name_any()).is_none() {
            continue;
        }
        if let Ok(p) = common::adopt(&pods_api, &listed[i], &sts).await {
            pods.push(p);
        }
    }
    let collision = sts.status.as_ref().and_then(|s| s.collision_count);
    let (chosen, revs) =
        super::daemonset::current_revision(&ctx, &sts, &spec.template, &spec.selector, collision)
            .await?;
    let Some((update_name, update)) = chosen else {
        let mut updated = sts.clone();
        let st = updated.status.get_or_insert_with(Default::default);
        st.collision_count = Some(collision.unwrap_or(0).saturating_add(1));
        common::write_status(&api, &updated).await?;
        return Ok(Action::requeue(Duration::from_millis(100)));
    };
    // The revision being rolled from: status.currentRevision while it still
    // exists, else the update revision.
    let current = sts
        .status
        .as_ref()
        .and_then(|s| s.current_revision.clone())
        .filter(|c| {
            revs.iter()
                .any(|r| super::revisions::revision_hash(r, &name) == *c)
        })
        .unwrap_or_else(|| update.clone());

    let refs: Vec<&Pod> = pods.iter().collect();
    let plan = plan(&sts, &refs, &update, &current, ctx.now());
    tracing::debug!(create = ?plan.create, delete = ?plan.delete, "statefulset plan");
    for (o, hash) in &plan.create {
        let template = if *hash == update {
            Some(spec.template.clone())
        } else {
            revs.iter()
                .find(|r| super::revisions::revision_hash(r, &name) == *hash)
                .and_then(revision_template)
        };
        let template = template.unwrap_or_else(|| spec.template.clone());
        let pod = set_pod(&sts, &template, *o, hash);
        match pods_api.create(&PostParams::default(), &pod).await {
            Ok(_) => {
                ctx.event(
                    &sts,
                    false,
                    "SuccessfulCreate",
                    format!(
                        "create Pod {} in StatefulSet {name} successful",
                        pod.name_any()
                    ),
                )
                .await
            }
            Err(e) if common::is_already_exists(&e) => {}
            Err(e) => {
                ctx.event(
                    &sts,
                    true,
                    "FailedCreate",
                    format!(
                        "create Pod {} in StatefulSet {name} failed error: {e}",
                        pod.name_any()
                    ),
                )
                .await;
                return Err(e.into());
            }
        }
    }
    for p in &plan.delete {
        common::delete_ignore_missing(&pods_api, p, &common::delete_params(None)).await?;
        ctx.event(
            &sts,
            false,
            "SuccessfulDelete",
            format!("delete Pod {p} in StatefulSet {name} successful"),
        )
        .await;
    }
    if !deleting {
        super::daemonset::cleanup_revisions(
            &ctx,
            &ns,
            &name,
            &revs,
            &update_name,
            &pods,
            spec.revision_history_limit.unwrap_or(10),
        )
        .await?;
    }
    if sts.status.as_ref() != Some(&plan.status) {
        let mut updated = sts.clone();
        updated.status = Some(plan.status.clone());
        common::write_status(&api, &updated).await?;
    }
    let busy = !plan.create.is_empty() || !plan.delete.is_empty();
    Ok(common::action(if busy {
        common::earliest(plan.requeue, Some(Duration::from_secs(2)))
    } else {
        plan.requeue
    }))
}

/// The StatefulSet controller's loop.
pub fn run(ctx: &Context) -> ControllerFuture {
    let shared = Shared::new(ctx, "statefulset-controller");
    let client = ctx.client.clone();
    Box::pin(async move {
        let stream = Controller::new(
            Api::<StatefulSet>::all(client.clone()),
            watcher::Config::default(),
        )
        .owns(Api::<Pod>::all(client), watcher::Config::default())
        .run(reconcile, common::error_policy, shared);
        common::drive(stream).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sts(replicas: i32, extra: serde_json::Value) -> StatefulSet {
        let mut spec = json!({
            "replicas": replicas,
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
        });
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        serde_json::from_value(json!({"metadata": {"name": "db", "namespace": "default", "uid": "s1", "generation": 1}, "spec": spec})).unwrap()
    }

    fn pod(ord: i32, rev: &str, healthy: bool) -> Pod {
        let conds = if healthy {
            json!([{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}])
        } else {
            json!([])
        };
        serde_json::from_value(json!({
            "metadata": {"name": format!("db-{ord}"), "labels": {"app": "db", HASH_LABEL: rev}},
            "status": {"phase": if healthy {"Running"} else {"Pending"}, "conditions": conds}
        }))
        .unwrap()
    }

    fn now() -> jiff::Timestamp {
        "2026-01-01T01:00:00Z".parse().unwrap()
    }

    #[test]
    fn ordinals_parse_strictly() {
        assert_eq!(ordinal("db", "db-0"), Some(0));
        assert_eq!(ordinal("db", "db-12"), Some(12));
        assert_eq!(ordinal("db", "db-012"), None);
        assert_eq!(ordinal("db", "dbx-1"), None);
        assert_eq!(ordinal("db", "db-"), None);
    }

    #[test]
    fn ordered_ready_creates_one_at_a_time() {
        let s = sts(3, json!({}));
        assert_eq!(
            plan(&s, &[], "r1", "r1", now()).create,
            vec![(0, "r1".into())]
        );
        let p0 = pod(0, "r1", false);
        assert!(plan(&s, &[&p0], "r1", "r1", now()).create.is_empty());
        let p0 = pod(0, "r1", true);
        assert_eq!(
            plan(&s, &[&p0], "r1", "r1", now()).create,
            vec![(1, "r1".into())]
        );
    }

    #[test]
    fn parallel_creates_all() {
        let s = sts(3, json!({"podManagementPolicy": "Parallel"}));
        assert_eq!(plan(&s, &[], "r1", "r1", now()).create.len(), 3);
    }

    #[test]
    fn scale_down_from_the_highest_when_all_healthy() {
        let s = sts(1, json!({}));
        let pods = [pod(0, "r1", true), pod(1, "r1", true), pod(2, "r1", true)];
        let refs: Vec<&Pod> = pods.iter().collect();
        assert_eq!(
            plan(&s, &refs, "r1", "r1", now()).delete,
            vec!["db-2".to_string()]
        );
        let pods = [pod(0, "r1", false), pod(1, "r1", true), pod(2, "r1", true)];
        let refs: Vec<&Pod> = pods.iter().collect();
        assert!(plan(&s, &refs, "r1", "r1", now()).delete.is_empty());
    }

    #[test]
    fn rolling_update_goes_down_to_the_partition() {
        let s = sts(
            3,
            json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}}),
        );
        let pods = [pod(0, "r1", true), pod(1, "r1", true), pod(2, "r1", true)];
        let refs: Vec<&Pod> = pods.iter().collect();
        assert_eq!(
            plan(&s, &refs, "r2", "r1", now()).delete,
            vec!["db-2".to_string()]
        );
        let pods = [pod(0, "r1", true), pod(1, "r1", true), pod(2, "r2", true)];
        let refs: Vec<&Pod> = pods.iter().collect();
        let p = plan(&s, &refs, "r2", "r1", now());
        assert_eq!(p.delete, vec!["db-1".to_string()]);
        assert_eq!(p.status.updated_replicas, Some(1));
        let pods = [pod(0, "r1", true), pod(1, "r2", true), pod(2, "r2", true)];
        let refs: Vec<&Pod> = pods.iter().collect();
        let p = plan(&s, &refs, "r2", "r1", now());
        assert!(p.delete.is_empty());
        // A missing pod below the partition is made at the old revision.
        let refs: Vec<&Pod> = pods[1..].iter().collect();
        assert_eq!(
            plan(&s, &refs, "r2", "r1", now()).create,
            vec![(0, "r1".into())]
        );
    }

    #[test]
    fn status_moves_current_revision_when_done() {
        let s = sts(2, json!({}));
        let pods = [pod(0, "r2", true), pod(1, "r2", true)];
        let refs: Vec<&Pod> = pods.iter().collect();
        let p = plan(&s, &refs, "r2", "r1", now());
        assert_eq!(p.status.current_revision.as_deref(), Some("r2"));
        assert_eq!(p.status.ready_replicas, Some(2));
        assert_eq!(p.status.current_replicas, Some(2));
    }

    #[test]
    fn pods_have_stable_identity() {
        let s = sts(2, json!({}));
        let t = s.spec.as_ref().unwrap().template.clone();
        let p = set_pod(&s, &t, 1, "r1");
        assert_eq!(p.name_any(), "db-1");
        assert_eq!(
            p.labels().get(POD_NAME_LABEL).map(String::as_str),
            Some("db-1")
        );
        assert_eq!(
            p.labels().get(POD_INDEX_LABEL).map(String::as_str),
            Some("1")
        );
        let spec = p.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("db-1"));
        assert_eq!(spec.subdomain.as_deref(), Some("db"));
    }

    #[test]
    fn failed_pods_are_replaced() {
        let s = sts(1, json!({}));
        let mut p0 = pod(0, "r1", false);
        p0.status.as_mut().unwrap().phase = Some("Failed".into());
        assert_eq!(
            plan(&s, &[&p0], "r1", "r1", now()).delete,
            vec!["db-0".to_string()]
        );
    }
}
