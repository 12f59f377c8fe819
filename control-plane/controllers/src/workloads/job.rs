//! The Job controller: runs pods until `completions` of them succeeded, at
//! most `parallelism` at a time, and fails the Job once more than
//! `backoffLimit` pods failed or `activeDeadlineSeconds` ran out. It also
//! deletes finished Jobs after `ttlSecondsAfterFinished` (upstream's
//! separate TTL-after-finished controller).
//!
//! [`plan`] is the decision (a Job and its pods in, pods to create and
//! delete and the status out); [`run`] is the loop. The apiserver gives a
//! Job its selector and the `batch.kubernetes.io/job-name` and
//! `controller-uid` labels when it is created, so pods made from the template
//! carry them. Completion modes: NonIndexed and Indexed (each index gets a
//! pod named `<job>-<index>-…` with the `batch.kubernetes.io/job-completion-index`
//! annotation and label, and a JOB_COMPLETION_INDEX variable).
//!
//! Counting: upstream keeps a finalizer on each pod until it has counted it;
//! here a finished pod is counted while it exists and status counts never go
//! down, so a pod removed after it was counted is not lost. (A pod removed
//! before any reconcile saw it finish is; the pod GC only removes finished
//! pods in bulk, long after.) Not done: podFailurePolicy, successPolicy,
//! backoffLimitPerIndex, the exponential delay before recreating failed pods.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{EnvVar, Pod};
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use tracing::Instrument;

use super::common::{self, Shared};
use crate::{Context, ControllerFuture, Error};

/// The annotation and label with a pod's completion index.
pub const INDEX: &str = "batch.kubernetes.io/job-completion-index";

/// What one reconcile of a Job should do.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Pods to create: `None` for NonIndexed, the index for Indexed.
    pub create: Vec<Option<i32>>,
    /// Names of active pods to delete.
    pub delete: Vec<String>,
    /// The new status.
    pub status: JobStatus,
    /// An Event to emit for the finish: (warning, reason, message).
    pub finished: Option<(bool, String, String)>,
    /// Delete the Job itself (TTL after finished).
    pub delete_job: bool,
    /// When to look again.
    pub requeue: Option<Duration>,
}

fn finished_condition(status: &JobStatus) -> Option<&JobCondition> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
}

fn pod_index(p: &Pod) -> Option<i32> {
    p.annotations()
        .get(INDEX)
        .or_else(|| p.labels().get(INDEX))
        .and_then(|i| i.parse().ok())
}

/// Renders a set of indexes as upstream's completedIndexes: "0-2,5".
pub fn format_indexes(set: &BTreeSet<i32>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    out.join(",")
}

/// Parses completedIndexes back.
pub fn parse_indexes(s: &str) -> BTreeSet<i32> {
    let mut set = BTreeSet::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
                    set.extend(a..=b.min(a.saturating_add(100_000)));
                }
            }
            None => {
                if let Ok(i) = part.parse() {
                    set.insert(i);
                }
            }
        }
    }
    set
}

fn cond(type_: &str, reason: &str, message: &str, now: jiff::Timestamp) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(common::time(now)),
        last_transition_time: Some(common::time(now)),
    }
}

/// The decision for `job`, whose pods are `pods`.
pub fn plan(job: &Job, pods: &[&Pod], now: jiff::Timestamp) -> Plan {
    let spec = job.spec.clone().unwrap_or_default();
    let old = job.status.clone().unwrap_or_default();
    let mut plan = Plan {
        status: old.clone(),
        ..Default::default()
    };
    let st = &mut plan.status;
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");

    // A finished Job only waits for its TTL.
    if let Some(c) = finished_condition(&old) {
        if let Some(ttl) = spec.ttl_seconds_after_finished {
            let at = old
                .completion_time
                .as_ref()
                .or(c.last_transition_time.as_ref())
                .map(|t| t.0)
                .unwrap_or(now);
            let expiry = at
                .checked_add(jiff::SignedDuration::from_secs(i64::from(ttl)))
                .unwrap_or(at);
            if expiry <= now {
                plan.delete_job = true;
            } else {
                plan.requeue = Some(Duration::from_secs_f64(
                    expiry.duration_since(now).as_secs_f64(),
                ));
            }
        }
        // Stragglers of a finished Job are stopped.
        plan.delete = pods
            .iter()
            .filter(|p| common::pod_active(p))
            .map(|p| p.name_any())
            .collect();
        st.active = Some(0);
        return plan;
    }

    let active: Vec<&Pod> = pods
        .iter()
        .copied()
        .filter(|p| common::pod_active(p))
        .collect();
    let succeeded_pods: Vec<&Pod> = pods
        .iter()
        .copied()
        .filter(|p| common::phase(p) == "Succeeded")
        .collect();
    let failed_pods = pods.iter().filter(|p| common::phase(p) == "Failed").count() as i32;
    let mut completed: BTreeSet<i32> = old
        .completed_indexes
        .as_deref()
        .map(parse_indexes)
        .unwrap_or_default();
    if indexed {
        completed.extend(succeeded_pods.iter().filter_map(|p| pod_index(p)));
        st.completed_indexes = Some(format_indexes(&completed));
    }
    let succeeded = if indexed {
        completed.len() as i32
    } else {
        (succeeded_pods.len() as i32).max(old.succeeded.unwrap_or(0))
    };
    let failed = failed_pods.max(old.failed.unwrap_or(0));
    st.succeeded = Some(succeeded);
    st.failed = Some(failed);
    st.ready = Some(active.iter().filter(|p| common::pod_ready(p)).count() as i32);
    st.active = Some(active.len() as i32);
    let suspended = spec.suspend == Some(true);
    if st.start_time.is_none() && !suspended {
        st.start_time = Some(common::time(now));
    }

    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    let finish = |st: &mut JobStatus, type_: &str, reason: &str, msg: &str| {
        let conds = st.conditions.get_or_insert_with(Vec::new);
        if type_ == "Failed" {
            conds.push(cond("FailureTarget", reason, msg, now));
        } else {
            conds.push(cond("SuccessCriteriaMet", reason, msg, now));
        }
        conds.push(cond(type_, reason, msg, now));
        if type_ == "Complete" {
            st.completion_time = Some(common::time(now));
        }
        st.active = Some(0);
    };

    // Failure: too many failed pods, or the deadline passed.
    let deadline_at = spec.active_deadline_seconds.and_then(|d| {
        st.start_time
            .as_ref()
            .and_then(|s| s.0.checked_add(jiff::SignedDuration::from_secs(d)).ok())
    });
    let failure = if failed > backoff_limit {
        Some((
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        ))
    } else if deadline_at.is_some_and(|at| at <= now) && !suspended {
        Some((
            "DeadlineExceeded",
            "Job was active longer than specified deadline",
        ))
    } else {
        None
    };
    if let Some((reason, msg)) = failure {
        plan.delete = active.iter().map(|p| p.name_any()).collect();
        finish(st, "Failed", reason, msg);
        plan.finished = Some((true, reason.to_string(), msg.to_string()));
        return plan;
    }
    if let Some(at) = deadline_at {
        plan.requeue = Some(
            Duration::from_secs_f64(at.duration_since(now).as_secs_f64().max(0.0))
                + Duration::from_millis(100),
        );
    }

    // Success.
    let done = match spec.completions {
        Some(c) => succeeded >= c,
        None => succeeded > 0 && active.is_empty(),
    };
    if done {
        plan.delete = active.iter().map(|p| p.name_any()).collect();
        finish(
            st,
            "Complete",
            "CompletionsReached",
            "Reached expected number of succeeded pods",
        );
        plan.finished = Some((false, "Completed".into(), "Job completed".into()));
        return plan;
    }

    // How many should run.
    let want_active = if suspended {
        0
    } else {
        match spec.completions {
            None if succeeded > 0 => active.len() as i32,
            None => parallelism,
            Some(c) => (c - succeeded).clamp(0, parallelism),
        }
    };
    let n_active = active.len() as i32;
    if n_active > want_active {
        let order = super::replicaset::deletion_order(&active);
        plan.delete = order
            .iter()
            .take((n_active - want_active) as usize)
            .map(|p| p.name_any())
            .collect();
    } else if n_active < want_active {
        let missing = (want_active - n_active) as usize;
        if indexed {
            let running: BTreeSet<i32> = active.iter().filter_map(|p| pod_index(p)).collect();
            let completions = spec.completions.unwrap_or(1);
            plan.create = (0..completions)
                .filter(|i| !completed.contains(i) && !running.contains(i))
                .take(missing)
                .map(Some)
                .collect();
        } else {
            plan.create = vec![None; missing.min(super::replicaset::BURST)];
        }
    }
    plan
}

/// A pod of `job` for `index` (Indexed) or none.
fn job_pod(job: &Job, index: Option<i32>) -> Pod {
    let template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let prefix = match index {
        Some(i) => common::generate_prefix(&format!("{}-{i}", job.name_any())),
        None => common::generate_prefix(&job.name_any()),
    };
    let mut pod = common::pod_from_template(&template, job, &prefix, true);
    if let Some(i) = index {
        pod.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(INDEX.into(), i.to_string());
        pod.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(INDEX.into(), i.to_string());
        if let Some(spec) = pod.spec.as_mut() {
            if spec.hostname.is_none() {
                spec.hostname = Some(format!("{}-{i}", job.name_any()));
            }
            for c in spec
                .containers
                .iter_mut()
                .chain(spec.init_containers.iter_mut().flatten())
            {
                c.env.get_or_insert_with(Vec::new).push(EnvVar {
                    name: "JOB_COMPLETION_INDEX".into(),
                    value: Some(i.to_string()),
                    value_from: None,
                });
            }
        }
    }
    pod
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Shared>) -> Result<Action, Error> {
    let (ns, name) = common::ns_name(job.as_ref());
    let span = tracing::debug_span!("reconcile", kind = "Job", ns = %ns, name = %name);
    reconcile_inner(name, ctx, ns).instrument(span).await
}

async fn reconcile_inner(name: String, ctx: Arc<Shared>, ns: String) -> Result<Action, Error> {
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(job) = api.get_opt(&name).await? else {
        return Ok(Action::await_change());
    };
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let selector = job
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default();
    let listed = common::list_selected(&pods_api, &selector).await?;
    let own = common::classify(&uid, &selector, false, listed.iter().map(|p| &p.metadata));
    let mut pods: Vec<Pod> = own.owned.iter().map(|&i| listed[i].clone()).collect();
    for &i in &own.adopt {
        if let Ok(p) = common::adopt(&pods_api, &listed[i], &job).await {
            pods.push(p);
        }
    }
    let refs: Vec<&Pod> = pods.iter().collect();
    let plan = plan(&job, &refs, ctx.now());

    if plan.delete_job {
        common::delete_ignore_missing(
            &api,
            &name,
            &common::delete_params(job.metadata.uid.as_deref()),
        )
        .await?;
        return Ok(Action::await_change());
    }
    let mut failed = None;
    for index in &plan.create {
        match pods_api
            .create(&PostParams::default(), &job_pod(&job, *index))
            .await
        {
            Ok(p) => {
                ctx.event(
                    &job,
                    false,
                    "SuccessfulCreate",
                    format!("Created pod: {}", p.name_any()),
                )
                .await
            }
            Err(e) => {
                ctx.event(&job, true, "FailedCreate", format!("Error creating: {e}"))
                    .await;
                failed = Some(e.into());
                break;
            }
        }
    }
    for p in &plan.delete {
        common::delete_ignore_missing(&pods_api, p, &common::delete_params(None)).await?;
        ctx.event(&job, false, "SuccessfulDelete", format!("Deleted pod: {p}"))
            .await;
    }
    if job.status.as_ref() != Some(&plan.status) {
        let mut updated = job.clone();
        updated.status = Some(plan.status.clone());
        common::write_status(&api, &updated).await?;
        if let Some((warning, reason, msg)) = &plan.finished {
            ctx.event(&job, *warning, reason, msg.clone()).await;
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    Ok(common::action(plan.requeue))
}

/// The Job controller's loop.
pub fn run(ctx: &Context) -> ControllerFuture {
    let shared = Shared::new(ctx, "job-controller");
    let client = ctx.client.clone();
    Box::pin(async move {
        let stream = Controller::new(Api::<Job>::all(client.clone()), watcher::Config::default())
            .owns(Api::<Pod>::all(client), watcher::Config::default())
            .run(reconcile, common::error_policy, shared);
        common::drive(stream).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(spec: serde_json::Value) -> Job {
        let mut s = json!({
            "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "j1"}},
            "template": {"metadata": {"labels": {"batch.kubernetes.io/controller-uid": "j1"}},
                         "spec": {"containers": [{"name": "c", "image": "i"}], "restartPolicy": "Never"}}
        });
        for (k, v) in spec.as_object().unwrap() {
            s[k] = v.clone();
        }
        serde_json::from_value(
            json!({"metadata": {"name": "pi", "namespace": "default", "uid": "j1"}, "spec": s}),
        )
        .unwrap()
    }

    fn pod(name: &str, phase: &str, index: Option<i32>) -> Pod {
        let mut p: Pod = serde_json::from_value(json!({
            "metadata": {"name": name},
            "status": {"phase": phase}
        }))
        .unwrap();
        if let Some(i) = index {
            p.metadata.annotations = Some([(INDEX.to_string(), i.to_string())].into());
        }
        p
    }

    fn now() -> jiff::Timestamp {
        "2026-01-01T01:00:00Z".parse().unwrap()
    }

    fn has(st: &JobStatus, type_: &str, reason: &str) -> bool {
        st.conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == type_ && c.reason.as_deref() == Some(reason) && c.status == "True")
    }

    #[test]
    fn starts_parallelism_pods_up_to_completions() {
        let p = plan(
            &job(json!({"completions": 5, "parallelism": 2})),
            &[],
            now(),
        );
        assert_eq!(p.create.len(), 2);
        assert!(p.status.start_time.is_some());
        let a = pod("a", "Succeeded", None);
        let b = pod("b", "Succeeded", None);
        let c = pod("c", "Succeeded", None);
        let d = pod("d", "Running", None);
        let p = plan(
            &job(json!({"completions": 5, "parallelism": 2})),
            &[&a, &b, &c, &d],
            now(),
        );
        assert_eq!(p.create.len(), 1);
        assert_eq!(p.status.succeeded, Some(3));
        assert_eq!(p.status.active, Some(1));
    }

    #[test]
    fn completes_and_sets_completion_time() {
        let a = pod("a", "Succeeded", None);
        let p = plan(
            &job(json!({"completions": 1, "parallelism": 1})),
            &[&a],
            now(),
        );
        assert!(has(&p.status, "Complete", "CompletionsReached"));
        assert!(p.status.completion_time.is_some());
        assert!(p.create.is_empty());
    }

    #[test]
    fn backoff_limit_fails_the_job() {
        let f: Vec<Pod> = (0..3)
            .map(|i| pod(&format!("f{i}"), "Failed", None))
            .collect();
        let r = pod("r", "Running", None);
        let mut refs: Vec<&Pod> = f.iter().collect();
        refs.push(&r);
        let p = plan(
            &job(json!({"completions": 1, "backoffLimit": 2})),
            &refs,
            now(),
        );
        assert!(has(&p.status, "Failed", "BackoffLimitExceeded"));
        assert_eq!(p.delete, vec!["r".to_string()]);
        assert_eq!(p.status.failed, Some(3));
        // At the limit, a failed pod is replaced.
        let p = plan(
            &job(json!({"completions": 1, "backoffLimit": 3})),
            &refs[..3],
            now(),
        );
        assert_eq!(p.create.len(), 1);
    }

    #[test]
    fn active_deadline_fails_the_job() {
        let mut j = job(json!({"activeDeadlineSeconds": 10}));
        j.status = Some(JobStatus {
            start_time: Some(common::time("2026-01-01T00:59:00Z".parse().unwrap())),
            ..Default::default()
        });
        let r = pod("r", "Running", None);
        let p = plan(&j, &[&r], now());
        assert!(has(&p.status, "Failed", "DeadlineExceeded"));
    }

    #[test]
    fn ttl_after_finished_deletes_the_job() {
        let mut j = job(json!({"ttlSecondsAfterFinished": 30}));
        let a = pod("a", "Succeeded", None);
        let p = plan(&j, &[&a], now());
        j.status = Some(p.status);
        let p = plan(&j, &[&a], now());
        assert!(!p.delete_job);
        assert_eq!(p.requeue, Some(Duration::from_secs(30)));
        let p = plan(&j, &[&a], now() + jiff::SignedDuration::from_secs(30));
        assert!(p.delete_job);
    }

    #[test]
    fn indexed_jobs_create_missing_indexes() {
        let j = job(json!({"completions": 4, "parallelism": 2, "completionMode": "Indexed"}));
        let a = pod("a", "Succeeded", Some(0));
        let b = pod("b", "Running", Some(1));
        let p = plan(&j, &[&a, &b], now());
        assert_eq!(p.create, vec![Some(2)]);
        assert_eq!(p.status.completed_indexes.as_deref(), Some("0"));
        let pod = job_pod(&j, Some(2));
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("pi-2-"));
        assert_eq!(pod.annotations().get(INDEX).map(String::as_str), Some("2"));
    }

    #[test]
    fn indexes_format_and_parse() {
        let set: BTreeSet<i32> = [0, 1, 2, 5, 7, 8].into();
        assert_eq!(format_indexes(&set), "0-2,5,7-8");
        assert_eq!(parse_indexes("0-2,5,7-8"), set);
    }

    #[test]
    fn without_completions_one_success_finishes_when_others_stop() {
        let j = job(json!({"parallelism": 2}));
        let a = pod("a", "Succeeded", None);
        let b = pod("b", "Running", None);
        let p = plan(&j, &[&a, &b], now());
        assert!(p.create.is_empty() && p.finished.is_none());
        let p = plan(&j, &[&a], now());
        assert!(has(&p.status, "Complete", "CompletionsReached"));
    }

    #[test]
    fn suspended_jobs_stop_their_pods() {
        let j = job(json!({"completions": 3, "parallelism": 3, "suspend": true}));
        let b = pod("b", "Running", None);
        let p = plan(&j, &[&b], now());
        assert_eq!(p.delete, vec!["b".to_string()]);
        assert!(p.status.start_time.is_none());
    }
}
