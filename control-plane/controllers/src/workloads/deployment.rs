//! The Deployment controller: rolls a Deployment's pod template out through
//! ReplicaSets named `<deployment>-<pod-template-hash>`, RollingUpdate
//! (maxSurge/maxUnavailable, as ints or percentages rounded as upstream) or
//! Recreate, with revisions, history cleanup, pause, progress deadline, and
//! the status `kubectl rollout status` reads.
//!
//! [`rollout`] decides the next step (ReplicaSets in, one step out, as
//! upstream takes one step per sync); [`status`] computes the status and
//! conditions; [`run`] is the loop. `kubectl rollout undo` needs nothing
//! special: kubectl copies an old ReplicaSet's template into the
//! Deployment, and that ReplicaSet, whose template now equals the
//! Deployment's (ignoring pod-template-hash), becomes the new one and gets
//! the next revision.
//!
//! Not done: proportional scaling of several active ReplicaSets when a
//! Deployment is scaled in the middle of a rollout (the rollout steps still
//! converge, bounded by maxSurge), and `spec.rollbackTo` (gone from
//! apps/v1).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use tracing::Instrument;

use super::common::{self, Shared};
use crate::{Context, ControllerFuture, Error};

/// The label that ties a ReplicaSet and its pods to one template.
pub const HASH_LABEL: &str = "pod-template-hash";
/// The revision annotation on Deployments and their ReplicaSets.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
const DESIRED: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// Deployment annotations that are not copied to its ReplicaSets (upstream's
/// skipCopyAnnotation).
const SKIP_COPY: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

// --- hashing ---------------------------------------------------------------

/// FNV-32a.
fn fnv32a(bytes: &[u8], mut h: u32) -> u32 {
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(16_777_619);
    }
    h
}

/// Upstream's `rand.SafeEncodeString`: each character of `s` becomes one of
/// 27 characters that cannot spell words.
pub fn safe_encode(s: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| ALPHABET[usize::from(b) % ALPHABET.len()] as char)
        .collect()
}

/// The pod-template-hash: FNV-32a over the template (its JSON with sorted
/// keys; upstream hashes Go's printed struct, which Rust cannot reproduce)
/// and the collision count, rendered as upstream renders it.
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let json = serde_json::to_value(template)
        .map(|v| v.to_string())
        .unwrap_or_default();
    let mut h = fnv32a(json.as_bytes(), 2_166_136_261);
    if let Some(c) = collision_count {
        h = fnv32a(&(c as u32).to_le_bytes(), h);
    }
    safe_encode(&h.to_string())
}

/// Whether two templates are equal once pod-template-hash is ignored.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    fn strip(t: &PodTemplateSpec) -> serde_json::Value {
        let mut t = t.clone();
        if let Some(m) = t.metadata.as_mut()
            && let Some(l) = m.labels.as_mut()
        {
            l.remove(HASH_LABEL);
            if l.is_empty() {
                m.labels = None;
            }
        }
        serde_json::to_value(t).unwrap_or_default()
    }
    strip(a) == strip(b)
}

// --- the rollout decision -------------------------------------------------

/// A ReplicaSet's revision, 0 when it has none.
pub fn revision(rs: &ReplicaSet) -> i64 {
    rs.annotations()
        .get(REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

fn desired(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1).max(0)
}

fn is_rolling(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        != Some("Recreate")
}

/// `value` of `total`, an int or a percentage, rounded up or down.
pub fn scaled(value: Option<&IntOrString>, total: i32, round_up: bool) -> i32 {
    match value {
        None => {
            // Upstream's default is 25%.
            let v = f64::from(total) * 25.0 / 100.0;
            (if round_up { v.ceil() } else { v.floor() }) as i32
        }
        Some(IntOrString::Int(i)) => *i,
        Some(IntOrString::String(s)) => {
            let pct: f64 = s.trim_end_matches('%').parse().unwrap_or(0.0);
            let v = pct * f64::from(total) / 100.0;
            (if round_up { v.ceil() } else { v.floor() }) as i32
        }
    }
}

/// maxSurge and maxUnavailable as numbers (upstream's ResolveFenceposts):
/// surge rounds up, unavailability down, and both zero means one may be
/// unavailable.
pub fn fenceposts(d: &Deployment) -> (i32, i32) {
    let total = desired(d);
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let surge = scaled(ru.and_then(|r| r.max_surge.as_ref()), total, true).max(0);
    let unavailable = scaled(ru.and_then(|r| r.max_unavailable.as_ref()), total, false).max(0);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

/// How many pods may be unavailable (upstream's MaxUnavailable).
pub fn max_unavailable(d: &Deployment) -> i32 {
    let n = desired(d);
    if !is_rolling(d) || n == 0 {
        return 0;
    }
    fenceposts(d).1.min(n)
}

/// One step of a rollout.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Create the new ReplicaSet with this many replicas.
    Create(i32),
    /// Scale ReplicaSets: (name, from, to).
    Scale(Vec<(String, i32, i32)>),
    /// Delete old ReplicaSets beyond revisionHistoryLimit.
    Cleanup(Vec<String>),
    /// Wait for pods or for a watch event.
    Wait,
}

fn oldest_first<'a>(rss: &[&'a ReplicaSet]) -> Vec<&'a ReplicaSet> {
    let mut v = rss.to_vec();
    v.sort_by_key(|r| {
        (
            r.metadata.creation_timestamp.as_ref().map(|t| t.0),
            r.name_any(),
        )
    });
    v
}

/// The new ReplicaSet's replicas for a rolling update (NewRSNewReplicas).
fn new_rs_replicas(d: &Deployment, new: Option<&ReplicaSet>, all: &[&ReplicaSet]) -> i32 {
    let want = desired(d);
    let new_replicas = new.map_or(0, replicas);
    if !is_rolling(d) {
        return want;
    }
    let (surge, _) = fenceposts(d);
    let current: i32 = all.iter().map(|r| replicas(r)).sum();
    let max_total = want + surge;
    if current >= max_total {
        return new_replicas;
    }
    let up = (max_total - current).min(want - new_replicas).max(0);
    new_replicas + up
}

/// The next step of the rollout. `olds` are the Deployment's other
/// ReplicaSets; `old_pods_running` says whether any pod of theirs still
/// runs (Recreate waits for none).
pub fn rollout(
    d: &Deployment,
    new: Option<&ReplicaSet>,
    olds: &[&ReplicaSet],
    old_pods_running: bool,
) -> Step {
    let want = desired(d);
    let mut all: Vec<&ReplicaSet> = olds.to_vec();
    if let Some(n) = new {
        all.push(n);
    }
    let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
    if paused {
        // A paused Deployment only scales; with one active ReplicaSet, that
        // one takes the replicas.
        let active: Vec<&&ReplicaSet> = all.iter().filter(|r| replicas(r) > 0).collect();
        let target = new.or_else(|| active.first().map(|r| **r));
        if active.len() <= 1
            && let Some(t) = target
            && replicas(t) != want
        {
            return Step::Scale(vec![(t.name_any(), replicas(t), want)]);
        }
        return Step::Wait;
    }
    if !is_rolling(d) {
        let to_zero: Vec<(String, i32, i32)> = oldest_first(olds)
            .iter()
            .filter(|r| replicas(r) > 0)
            .map(|r| (r.name_any(), replicas(r), 0))
            .collect();
        if !to_zero.is_empty() {
            return Step::Scale(to_zero);
        }
        if old_pods_running {
            return Step::Wait;
        }
        let Some(new) = new else {
            return Step::Create(want);
        };
        if replicas(new) != want {
            return Step::Scale(vec![(new.name_any(), replicas(new), want)]);
        }
        return cleanup(d, new, olds);
    }

    // RollingUpdate: scale the new ReplicaSet up first.
    let Some(new) = new else {
        return Step::Create(new_rs_replicas(d, None, &all));
    };
    let cur = replicas(new);
    if cur > want {
        return Step::Scale(vec![(new.name_any(), cur, want)]);
    }
    if cur < want {
        let to = new_rs_replicas(d, Some(new), &all);
        if to != cur {
            return Step::Scale(vec![(new.name_any(), cur, to)]);
        }
    }

    // Then scale old ones down, within maxUnavailable.
    let old_count: i32 = olds.iter().map(|r| replicas(r)).sum();
    if old_count > 0 {
        let all_count: i32 = all.iter().map(|r| replicas(r)).sum();
        let min_available = want - max_unavailable(d);
        let new_unavailable = replicas(new) - available(new);
        let max_scaled_down = all_count - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Step::Wait;
        }
        let mut scales: BTreeMap<String, (i32, i32)> = BTreeMap::new();
        let olds_sorted = oldest_first(olds);
        // Unhealthy replicas go first.
        let mut cleaned = 0;
        for r in &olds_sorted {
            if cleaned >= max_scaled_down {
                break;
            }
            let n = replicas(r);
            if n == 0 || n == available(r) {
                continue;
            }
            let down = (max_scaled_down - cleaned).min(n - available(r));
            cleaned += down;
            scales.insert(r.name_any(), (n, n - down));
        }
        // Then available ones, keeping minAvailable.
        let available_all: i32 = all.iter().map(|r| available(r)).sum();
        if available_all > min_available {
            let total_down = available_all - min_available;
            let mut done = 0;
            for r in &olds_sorted {
                if done >= total_down {
                    break;
                }
                let from = replicas(r);
                let now = scales.get(&r.name_any()).map_or(from, |s| s.1);
                if now == 0 {
                    continue;
                }
                let down = now.min(total_down - done);
                done += down;
                scales.insert(r.name_any(), (from, now - down));
            }
        }
        let scales: Vec<(String, i32, i32)> = scales
            .into_iter()
            .filter(|(_, (f, t))| f != t)
            .map(|(n, (f, t))| (n, f, t))
            .collect();
        if !scales.is_empty() {
            return Step::Scale(scales);
        }
        return Step::Wait;
    }
    if complete(d, &status_counts(d, Some(new), &all)) {
        return cleanup(d, new, olds);
    }
    Step::Wait
}

/// Old ReplicaSets beyond revisionHistoryLimit, oldest revision first; only
/// those already scaled to and at zero.
fn cleanup(d: &Deployment, _new: &ReplicaSet, olds: &[&ReplicaSet]) -> Step {
    let limit = d
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10)
        .max(0) as usize;
    let mut dead: Vec<&ReplicaSet> = olds
        .iter()
        .copied()
        .filter(|r| {
            replicas(r) == 0
                && r.status.as_ref().is_none_or(|s| s.replicas == 0)
                && r.metadata.deletion_timestamp.is_none()
        })
        .collect();
    if dead.len() <= limit {
        return Step::Wait;
    }
    dead.sort_by_key(|r| {
        (
            revision(r),
            r.metadata.creation_timestamp.as_ref().map(|t| t.0),
        )
    });
    let n = dead.len() - limit;
    Step::Cleanup(dead.into_iter().take(n).map(|r| r.name_any()).collect())
}

// --- status ----------------------------------------------------------------

/// The counts in a Deployment's status, from its ReplicaSets.
pub fn status_counts(
    d: &Deployment,
    new: Option<&ReplicaSet>,
    all: &[&ReplicaSet],
) -> DeploymentStatus {
    let st = |r: &ReplicaSet| r.status.clone().unwrap_or_default();
    let available: i32 = all
        .iter()
        .map(|r| st(r).available_replicas.unwrap_or(0))
        .sum();
    DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(all.iter().map(|r| st(r).replicas).sum()),
        updated_replicas: Some(new.map_or(0, |r| st(r).replicas)),
        ready_replicas: Some(all.iter().map(|r| st(r).ready_replicas.unwrap_or(0)).sum()),
        available_replicas: Some(available),
        unavailable_replicas: Some((desired(d) - available).max(0)),
        collision_count: d.status.as_ref().and_then(|s| s.collision_count),
        conditions: d.status.as_ref().and_then(|s| s.conditions.clone()),
    }
}

/// Whether the rollout is complete (upstream's DeploymentComplete).
pub fn complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let want = desired(d);
    s.updated_replicas == Some(want)
        && s.replicas == Some(want)
        && s.available_replicas == Some(want)
        && s.observed_generation >= d.metadata.generation
}

/// Whether the rollout moved since `old` (upstream's DeploymentProgressing).
fn progressing(old: &DeploymentStatus, new: &DeploymentStatus) -> bool {
    let old_olds = old.replicas.unwrap_or(0) - old.updated_replicas.unwrap_or(0);
    let new_olds = new.replicas.unwrap_or(0) - new.updated_replicas.unwrap_or(0);
    new.updated_replicas > old.updated_replicas
        || new_olds < old_olds
        || new.ready_replicas > old.ready_replicas
        || new.available_replicas > old.available_replicas
}

fn condition(status: &DeploymentStatus, type_: &str) -> Option<DeploymentCondition> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .cloned()
}

/// Sets a condition as upstream's SetDeploymentCondition does: nothing
/// changes when status and reason are the same; the transition time stays
/// when only the reason changes.
fn set_condition(status: &mut DeploymentStatus, mut c: DeploymentCondition) {
    let conds = status.conditions.get_or_insert_with(Vec::new);
    if let Some(cur) = conds.iter().find(|x| x.type_ == c.type_) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time = cur.last_transition_time.clone();
        }
    }
    conds.retain(|x| x.type_ != c.type_);
    conds.push(c);
}

fn cond(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: jiff::Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(common::time(now)),
        last_transition_time: Some(common::time(now)),
    }
}

/// What happened to the new ReplicaSet in this sync, for the Progressing
/// condition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NewRs {
    /// There is none (paused before the first rollout, or a collision).
    None,
    /// It was created now.
    Created,
    /// It existed.
    Found,
}

/// The Deployment's status: counts, Available and Progressing, and when to
/// look again for the progress deadline.
pub fn status(
    d: &Deployment,
    new: Option<&ReplicaSet>,
    all: &[&ReplicaSet],
    what: NewRs,
    now: jiff::Timestamp,
) -> (DeploymentStatus, Option<Duration>) {
    let old = d.status.clone().unwrap_or_default();
    let mut s = status_counts(d, new, all);
    let want = desired(d);
    if s.available_replicas.unwrap_or(0) >= want - max_unavailable(d) {
        set_condition(
            &mut s,
            cond(
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
                now,
            ),
        );
    } else {
        set_condition(
            &mut s,
            cond(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
                now,
            ),
        );
    }

    let spec = d.spec.clone().unwrap_or_default();
    let mut requeue = None;
    if spec.paused == Some(true) {
        set_condition(
            &mut s,
            cond(
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused".into(),
                now,
            ),
        );
        return (s, None);
    }
    if condition(&s, "Progressing")
        .and_then(|c| c.reason)
        .as_deref()
        == Some("DeploymentPaused")
    {
        set_condition(
            &mut s,
            cond(
                "Progressing",
                "Unknown",
                "DeploymentResumed",
                "Deployment is resumed".into(),
                now,
            ),
        );
    }
    let Some(deadline) = spec.progress_deadline_seconds.filter(|&p| p != i32::MAX) else {
        return (s, None);
    };
    let Some(new) = new else {
        return (s, None);
    };
    let rs_name = new.name_any();
    let current = condition(&s, "Progressing");
    if complete(d, &s) {
        set_condition(
            &mut s,
            cond(
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                format!("ReplicaSet {rs_name:?} has successfully progressed."),
                now,
            ),
        );
    } else if what == NewRs::Created {
        set_condition(
            &mut s,
            cond(
                "Progressing",
                "True",
                "NewReplicaSetCreated",
                format!("Created new replica set {rs_name:?}"),
                now,
            ),
        );
        requeue = Some(Duration::from_secs(deadline.max(0) as u64));
    } else if progressing(&old, &s) {
        let mut c = cond(
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            format!("ReplicaSet {rs_name:?} is progressing."),
            now,
        );
        if let Some(cur) = &current
            && cur.status == "True"
        {
            c.last_transition_time = cur.last_transition_time.clone();
        }
        let conds = s.conditions.get_or_insert_with(Vec::new);
        conds.retain(|x| x.type_ != "Progressing");
        conds.push(c);
        requeue = Some(Duration::from_secs(deadline.max(0) as u64));
    } else if current.is_none() {
        set_condition(
            &mut s,
            cond(
                "Progressing",
                "True",
                "FoundNewReplicaSet",
                format!("Found new replica set {rs_name:?}"),
                now,
            ),
        );
        requeue = Some(Duration::from_secs(deadline.max(0) as u64));
    } else if let Some(cur) = current {
        let reason = cur.reason.as_deref().unwrap_or("");
        if reason != "NewReplicaSetAvailable" && reason != "ProgressDeadlineExceeded" {
            let from = cur.last_update_time.map(|t| t.0).unwrap_or(now);
            let at = from
                .checked_add(jiff::SignedDuration::from_secs(i64::from(deadline)))
                .unwrap_or(from);
            if at < now {
                set_condition(
                    &mut s,
                    cond(
                        "Progressing",
                        "False",
                        "ProgressDeadlineExceeded",
                        format!("ReplicaSet {rs_name:?} has timed out progressing."),
                        now,
                    ),
                );
            } else {
                let wait = at.duration_since(now).as_secs_f64().max(0.0);
                requeue = Some(Duration::from_secs_f64(wait) + Duration::from_secs(1));
            }
        }
    }
    (s, requeue)
}

// --- the new ReplicaSet ----------------------------------------------------

/// The new ReplicaSet for `d` (not yet created), at `revision`, with
/// `replicas`.
pub fn new_replicaset(d: &Deployment, revision: i64, replicas: i32) -> ReplicaSet {
    let spec = d.spec.clone().unwrap_or_default();
    let collision = d.status.as_ref().and_then(|s| s.collision_count);
    let hash = template_hash(&spec.template, collision);
    let mut template = spec.template.clone();
    let tmeta = template.metadata.get_or_insert_with(Default::default);
    tmeta
        .labels
        .get_or_insert_with(Default::default)
        .insert(HASH_LABEL.into(), hash.clone());
    let mut selector = spec.selector.clone();
    selector
        .match_labels
        .get_or_insert_with(Default::default)
        .insert(HASH_LABEL.into(), hash.clone());
    let mut annotations: BTreeMap<String, String> = d
        .annotations()
        .iter()
        .filter(|(k, _)| !SKIP_COPY.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    annotations.insert(REVISION.into(), revision.to_string());
    annotations.insert(DESIRED.into(), desired(d).to_string());
    annotations.insert(
        MAX_REPLICAS.into(),
        (desired(d) + if is_rolling(d) { fenceposts(d).0 } else { 0 }).to_string(),
    );
    let name = format!("{}-{}", d.name_any(), hash);
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: d.namespace(),
            labels: tmeta.labels.clone(),
            annotations: Some(annotations),
            owner_references: Some(vec![common::owner_ref(d)]),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: spec.min_ready_seconds,
            selector,
            template: Some(template),
        }),
        status: None,
    }
}

/// The Deployment's new ReplicaSet among `owned`: the oldest whose template
/// equals the Deployment's.
pub fn find_new<'a>(d: &Deployment, owned: &[&'a ReplicaSet]) -> Option<&'a ReplicaSet> {
    let template = d
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    oldest_first(owned).into_iter().find(|r| {
        r.spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .is_some_and(|t| equal_ignore_hash(t, &template))
    })
}

// --- the loop ---------------------------------------------------------------

async fn reconcile(d: Arc<Deployment>, ctx: Arc<Shared>) -> Result<Action, Error> {
    let (ns, name) = common::ns_name(d.as_ref());
    let span = tracing::debug_span!("reconcile", kind = "Deployment", ns = %ns, name = %name);
    reconcile_inner(name, ctx, ns).instrument(span).await
}

async fn scale(
    api: &Api<ReplicaSet>,
    ctx: &Shared,
    d: &Deployment,
    name: &str,
    from: i32,
    to: i32,
) -> Result<(), Error> {
    let patch = serde_json::json!({
        "metadata": {"annotations": {DESIRED: desired(d).to_string(), MAX_REPLICAS:
            (desired(d) + if is_rolling(d) { fenceposts(d).0 } else { 0 }).to_string()}},
        "spec": {"replicas": to},
    });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    let dir = if to > from { "up" } else { "down" };
    ctx.event(
        d,
        false,
        "ScalingReplicaSet",
        format!("Scaled {dir} replica set {name} from {from} to {to}"),
    )
    .await;
    Ok(())
}

async fn reconcile_inner(name: String, ctx: Arc<Shared>, ns: String) -> Result<Action, Error> {
    let d_api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(d) = d_api.get_opt(&name).await? else {
        return Ok(Action::await_change());
    };
    let uid = d.metadata.uid.clone().unwrap_or_default();
    let spec = d.spec.clone().unwrap_or_default();
    let deleting = d.metadata.deletion_timestamp.is_some();

    let all = rs_api.list(&Default::default()).await?.items;
    let own = common::classify(
        &uid,
        &spec.selector,
        deleting,
        all.iter().map(|r| &r.metadata),
    );
    let mut owned: Vec<ReplicaSet> = own.owned.iter().map(|&i| all[i].clone()).collect();
    for &i in &own.adopt {
        match common::adopt(&rs_api, &all[i], &d).await {
            Ok(r) => owned.push(r),
            Err(Error::Api(e)) if common::is_conflict(&e) || common::is_not_found(&e) => {}
            Err(e) => return Err(e),
        }
    }
    for &i in &own.release {
        common::release(&rs_api, &all[i], &uid).await?;
    }

    let now = ctx.now();
    let refs: Vec<&ReplicaSet> = owned.iter().collect();
    let mut new = find_new(&d, &refs).cloned();
    let olds: Vec<&ReplicaSet> = refs
        .iter()
        .copied()
        .filter(|r| {
            new.as_ref()
                .is_none_or(|n| n.metadata.uid != r.metadata.uid)
        })
        .collect();
    let max_old_revision = olds.iter().map(|r| revision(r)).max().unwrap_or(0);

    if deleting {
        let (s, _) = status(&d, new.as_ref(), &refs, NewRs::None, now);
        write_status(&d_api, &d, s).await?;
        return Ok(Action::await_change());
    }

    // A ReplicaSet that became new again (rollout undo) takes the next
    // revision.
    let paused = spec.paused == Some(true);
    if let Some(n) = new.as_mut()
        && !paused
        && revision(n) <= max_old_revision
    {
        let mut annotations: BTreeMap<String, String> = d
            .annotations()
            .iter()
            .filter(|(k, _)| !SKIP_COPY.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        annotations.insert(REVISION.into(), (max_old_revision + 1).to_string());
        let patch = serde_json::json!({"metadata": {"annotations": annotations}});
        *n = rs_api
            .patch(
                &n.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
    }

    let old_pods_running = if is_rolling(&d) {
        false
    } else {
        let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
        let pods = common::list_selected(&pods_api, &spec.selector).await?;
        pods.iter().any(|p| {
            !common::pod_terminal(p)
                && olds.iter().any(|r| {
                    common::controlled_by(&p.metadata, r.metadata.uid.as_deref().unwrap_or(""))
                })
        })
    };

    let step = rollout(&d, new.as_ref(), &olds, old_pods_running);
    tracing::debug!(?step, "rollout step");
    let mut what = if new.is_some() {
        NewRs::Found
    } else {
        NewRs::None
    };
    match &step {
        Step::Create(replicas) => {
            let rs = new_replicaset(&d, max_old_revision + 1, *replicas);
            match rs_api.create(&PostParams::default(), &rs).await {
                Ok(created) => {
                    ctx.event(
                        &d,
                        false,
                        "ScalingReplicaSet",
                        format!(
                            "Scaled up replica set {} from 0 to {replicas}",
                            created.name_any()
                        ),
                    )
                    .await;
                    new = Some(created);
                    what = NewRs::Created;
                }
                Err(e) if common::is_already_exists(&e) => {
                    // Someone else's ReplicaSet has our name, or ours with a
                    // template that differs: a hash collision.
                    let name = rs.name_any();
                    let existing = rs_api.get_opt(&name).await?;
                    let ours_and_equal = existing.as_ref().is_some_and(|x| {
                        common::controlled_by(&x.metadata, &uid)
                            && x.spec
                                .as_ref()
                                .and_then(|s| s.template.as_ref())
                                .is_some_and(|t| equal_ignore_hash(t, &spec.template))
                    });
                    if !ours_and_equal {
                        let mut updated = d.clone();
                        let st = updated.status.get_or_insert_with(Default::default);
                        st.collision_count =
                            Some(st.collision_count.unwrap_or(0).saturating_add(1));
                        common::write_status(&d_api, &updated).await?;
                        return Ok(Action::requeue(Duration::from_millis(100)));
                    }
                    return Ok(Action::requeue(Duration::from_millis(100)));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Step::Scale(scales) => {
            for (name, from, to) in scales {
                scale(&rs_api, &ctx, &d, name, *from, *to).await?;
            }
        }
        Step::Cleanup(names) => {
            for name in names {
                common::delete_ignore_missing(&rs_api, name, &common::delete_params(None)).await?;
            }
        }
        Step::Wait => {}
    }

    // The Deployment's revision annotation follows its new ReplicaSet.
    if let Some(n) = &new {
        let rev = n.annotations().get(REVISION).cloned();
        if rev.is_some() && d.annotations().get(REVISION) != rev.as_ref() {
            let patch = serde_json::json!({"metadata": {"annotations": {REVISION: rev}}});
            d_api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            // The status write below needs the new resourceVersion.
            return Ok(Action::requeue(Duration::from_millis(10)));
        }
    }

    let refs: Vec<ReplicaSet> = owned
        .iter()
        .filter(|r| {
            new.as_ref()
                .is_none_or(|n| n.metadata.uid != r.metadata.uid)
        })
        .cloned()
        .chain(new.clone())
        .collect();
    let all_refs: Vec<&ReplicaSet> = refs.iter().collect();
    let (s, requeue) = status(&d, new.as_ref(), &all_refs, what, now);
    write_status(&d_api, &d, s).await?;
    // Pods going away change no ReplicaSet once they are Terminating, and
    // this controller watches ReplicaSets only: Recreate looks again soon.
    let requeue = if matches!(step, Step::Wait) && !old_pods_running {
        requeue
    } else {
        common::earliest(requeue, Some(Duration::from_secs(1)))
    };
    Ok(common::action(requeue))
}

async fn write_status(
    api: &Api<Deployment>,
    d: &Deployment,
    s: DeploymentStatus,
) -> Result<(), Error> {
    if d.status.as_ref() == Some(&s) {
        return Ok(());
    }
    let mut updated = d.clone();
    updated.status = Some(s);
    common::write_status(api, &updated).await?;
    Ok(())
}

/// The Deployment controller's loop.
pub fn run(ctx: &Context) -> ControllerFuture {
    let shared = Shared::new(ctx, "deployment-controller");
    let client = ctx.client.clone();
    Box::pin(async move {
        let stream = Controller::new(
            Api::<Deployment>::all(client.clone()),
            watcher::Config::default(),
        )
        .owns(Api::<ReplicaSet>::all(client), watcher::Config::default())
        .run(reconcile, common::error_policy, shared);
        common::drive(stream).await
    })
}

#[cfg(test)]
mod tests;
