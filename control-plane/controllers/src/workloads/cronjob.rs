//! The CronJob controller: makes a Job from `jobTemplate` at each
//! scheduled time ([`super::cron`]; `timeZone` optional), named
//! `<cronjob>-<scheduled time in minutes since the epoch>` as upstream,
//! honouring `suspend`, `startingDeadlineSeconds` and `concurrencyPolicy`
//! (Allow, Forbid, Replace), tracking `active`, `lastScheduleTime` and
//! `lastSuccessfulTime`, and keeping `successfulJobsHistoryLimit` and
//! `failedJobsHistoryLimit` finished Jobs.
//!
//! [`plan`] is the decision (the CronJob, its Jobs and `now` from the
//! injected clock in; the Job to make, Jobs to delete and the status out);
//! [`run`] is the loop, which wakes at the next scheduled time.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use tracing::Instrument;

use super::common::{self, Shared};
use super::cron::Schedule;
use crate::{Context, ControllerFuture, Error};

/// The annotation with the time a Job was scheduled for.
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// What one reconcile of a CronJob should do.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// A Job to create, and the time it was scheduled for.
    pub create: Option<(Job, jiff::Timestamp)>,
    /// Jobs to delete (Replace, and history beyond the limits).
    pub delete: Vec<String>,
    /// The new status.
    pub status: CronJobStatus,
    /// Warnings to emit as Events: (reason, message).
    pub warnings: Vec<(String, String)>,
    /// When to look again.
    pub requeue: Option<Duration>,
}

fn finished(job: &Job) -> Option<(&str, Option<jiff::Timestamp>)> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find_map(|c| {
            ((c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True").then(|| {
                (
                    c.type_.as_str(),
                    c.last_transition_time.as_ref().map(|t| t.0),
                )
            })
        })
}

fn job_ref(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        ..Default::default()
    }
}

/// The Job for the time `scheduled`.
pub fn job_for(cj: &CronJob, scheduled: jiff::Timestamp) -> Job {
    let spec = cj.spec.clone().unwrap_or_default();
    let template = spec.job_template;
    let tmeta = template.metadata.unwrap_or_default();
    let mut annotations = tmeta.annotations.unwrap_or_default();
    annotations.insert(SCHEDULED_TIMESTAMP.into(), scheduled.to_string());
    Job {
        metadata: ObjectMeta {
            name: Some(format!(
                "{}-{}",
                cj.name_any(),
                scheduled.as_second().div_euclid(60)
            )),
            namespace: cj.namespace(),
            labels: tmeta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![common::owner_ref(cj)]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

fn to_duration(d: jiff::SignedDuration) -> Duration {
    Duration::from_secs_f64(d.as_secs_f64().max(0.0))
}

/// The decision. `jobs` are the Jobs this CronJob controls.
pub fn plan(cj: &CronJob, jobs: &[&Job], now: jiff::Timestamp) -> Plan {
    let spec = cj.spec.clone().unwrap_or_default();
    let old = cj.status.clone().unwrap_or_default();
    let mut plan = Plan::default();
    let mut st = CronJobStatus {
        last_schedule_time: old.last_schedule_time.clone(),
        last_successful_time: old.last_successful_time.clone(),
        active: None,
    };

    // Active Jobs and history.
    let mut active: Vec<&Job> = Vec::new();
    let mut succeeded: Vec<(&Job, Option<jiff::Timestamp>)> = Vec::new();
    let mut failed: Vec<(&Job, Option<jiff::Timestamp>)> = Vec::new();
    for j in jobs {
        match finished(j) {
            None if j.metadata.deletion_timestamp.is_none() => active.push(j),
            None => {}
            Some(("Complete", at)) => {
                let at = j
                    .status
                    .as_ref()
                    .and_then(|s| s.completion_time.as_ref())
                    .map(|t| t.0)
                    .or(at);
                if let Some(at) = at
                    && st.last_successful_time.as_ref().is_none_or(|t| t.0 < at)
                {
                    st.last_successful_time = Some(common::time(at));
                }
                succeeded.push((j, at));
            }
            Some((_, at)) => failed.push((j, at)),
        }
    }
    for (list, limit) in [
        (
            &mut succeeded,
            spec.successful_jobs_history_limit.unwrap_or(3),
        ),
        (&mut failed, spec.failed_jobs_history_limit.unwrap_or(1)),
    ] {
        let limit = limit.max(0) as usize;
        if list.len() > limit {
            list.sort_by_key(|(j, at)| (*at, j.metadata.creation_timestamp.as_ref().map(|t| t.0)));
            let n = list.len() - limit;
            plan.delete
                .extend(list.iter().take(n).map(|(j, _)| j.name_any()));
        }
    }

    let tz = match spec.time_zone.as_deref() {
        None | Some("") => Ok(jiff::tz::TimeZone::system()),
        Some(name) => jiff::tz::TimeZone::get(name),
    };
    let (schedule, tz) = match (Schedule::parse(&spec.schedule), tz) {
        (Ok(s), Ok(tz)) => (s, tz),
        (Err(e), _) => {
            plan.warnings.push((
                "UnparseableSchedule".into(),
                format!("unparseable schedule: {e}"),
            ));
            st.active = refs(&active);
            plan.status = st;
            return plan;
        }
        (_, Err(_)) => {
            plan.warnings.push((
                "UnknownTimeZone".into(),
                format!("invalid timeZone: {:?}", spec.time_zone.unwrap_or_default()),
            ));
            st.active = refs(&active);
            plan.status = st;
            return plan;
        }
    };

    let earliest = old
        .last_schedule_time
        .as_ref()
        .or(cj.metadata.creation_timestamp.as_ref())
        .map(|t| t.0)
        .unwrap_or(now);
    plan.requeue = schedule
        .next(now, &tz)
        .map(|n| to_duration(n.duration_since(now)) + Duration::from_millis(100));

    let due = schedule.prev(now, &tz).filter(|t| *t > earliest);
    let Some(scheduled) = due else {
        st.active = refs(&active);
        plan.status = st;
        return plan;
    };
    if spec.suspend == Some(true) {
        st.active = refs(&active);
        plan.status = st;
        return plan;
    }
    if let Some(deadline) = spec.starting_deadline_seconds
        && scheduled
            .checked_add(jiff::SignedDuration::from_secs(deadline))
            .is_ok_and(|t| t < now)
    {
        // Too late for this one; wait for the next.
        st.active = refs(&active);
        plan.status = st;
        return plan;
    }
    match spec.concurrency_policy.as_deref() {
        Some("Forbid") if !active.is_empty() => {
            // This time stays due until the active Job ends (or its
            // deadline passes): look again soon.
            plan.requeue = common::earliest(plan.requeue, Some(Duration::from_secs(5)));
            st.active = refs(&active);
            plan.status = st;
            return plan;
        }
        Some("Replace") => {
            plan.delete.extend(active.iter().map(|j| j.name_any()));
            active.clear();
        }
        _ => {}
    }
    let job = job_for(cj, scheduled);
    let name = job.name_any();
    // A Job for this time may exist already (the status write after making
    // it was lost): then it is only recorded.
    if !jobs.iter().any(|j| j.name_any() == name) {
        plan.create = Some((job, scheduled));
    }
    st.last_schedule_time = Some(common::time(scheduled));
    st.active = refs(&active);
    plan.status = st;
    plan
}

fn refs(active: &[&Job]) -> Option<Vec<ObjectReference>> {
    if active.is_empty() {
        None
    } else {
        let mut v: Vec<ObjectReference> = active.iter().map(|j| job_ref(j)).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Some(v)
    }
}

async fn reconcile(cj: Arc<CronJob>, ctx: Arc<Shared>) -> Result<Action, Error> {
    let (ns, name) = common::ns_name(cj.as_ref());
    let span = tracing::debug_span!("reconcile", kind = "CronJob", ns = %ns, name = %name);
    reconcile_inner(name, ctx, ns).instrument(span).await
}

async fn reconcile_inner(name: String, ctx: Arc<Shared>, ns: String) -> Result<Action, Error> {
    let api: Api<CronJob> = Api::namespaced(ctx.client.clone(), &ns);
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(cj) = api.get_opt(&name).await? else {
        return Ok(Action::await_change());
    };
    if cj.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let uid = cj.meta().uid.clone().unwrap_or_default();
    let jobs: Vec<Job> = jobs_api
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter(|j| common::controlled_by(&j.metadata, &uid))
        .collect();
    let refs: Vec<&Job> = jobs.iter().collect();
    let mut plan = plan(&cj, &refs, ctx.now());
    for (reason, msg) in &plan.warnings {
        ctx.event(&cj, true, reason, msg.clone()).await;
    }
    for j in &plan.delete {
        common::delete_ignore_missing(&jobs_api, j, &common::delete_params(None)).await?;
        ctx.event(&cj, false, "SuccessfulDelete", format!("Deleted job {j}"))
            .await;
    }
    if let Some((job, _)) = &plan.create {
        match jobs_api.create(&PostParams::default(), job).await {
            Ok(created) => {
                ctx.event(
                    &cj,
                    false,
                    "SuccessfulCreate",
                    format!("Created job {}", created.name_any()),
                )
                .await;
                let active = plan.status.active.get_or_insert_with(Vec::new);
                active.push(job_ref(&created));
            }
            Err(e) if common::is_already_exists(&e) => {}
            Err(e) => {
                ctx.event(
                    &cj,
                    true,
                    "FailedCreate",
                    format!("Error creating job: {e}"),
                )
                .await;
                return Err(e.into());
            }
        }
    }
    if cj.status.as_ref() != Some(&plan.status) {
        let mut updated = cj.clone();
        updated.status = Some(plan.status.clone());
        common::write_status(&api, &updated).await?;
    }
    Ok(common::action(plan.requeue))
}

/// The CronJob controller's loop.
pub fn run(ctx: &Context) -> ControllerFuture {
    let shared = Shared::new(ctx, "cronjob-controller");
    let client = ctx.client.clone();
    Box::pin(async move {
        let stream = Controller::new(
            Api::<CronJob>::all(client.clone()),
            watcher::Config::default(),
        )
        .owns(Api::<Job>::all(client), watcher::Config::default())
        .run(reconcile, common::error_policy, shared);
        common::drive(stream).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cj(extra: serde_json::Value, status: serde_json::Value) -> CronJob {
        let mut spec = json!({
            "schedule": "*/5 * * * *",
            "timeZone": "Etc/UTC",
            "jobTemplate": {"metadata": {"labels": {"app": "report"}},
                            "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}], "restartPolicy": "Never"}}}}
        });
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        serde_json::from_value(json!({
            "metadata": {"name": "report", "namespace": "default", "uid": "c1", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": spec, "status": status
        }))
        .unwrap()
    }

    fn job(name: &str, done: Option<&str>, at: &str) -> Job {
        let conds = match done {
            Some(t) => json!([{"type": t, "status": "True", "lastTransitionTime": at}]),
            None => json!([]),
        };
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "uid": name, "creationTimestamp": at},
            "status": {"conditions": conds}
        }))
        .unwrap()
    }

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn makes_the_job_for_the_latest_time_named_in_minutes() {
        let c = cj(json!({}), json!({}));
        let p = plan(&c, &[], ts("2026-01-01T00:12:00Z"));
        let (job, at) = p.create.unwrap();
        assert_eq!(at, ts("2026-01-01T00:10:00Z"));
        assert_eq!(
            job.name_any(),
            format!("report-{}", ts("2026-01-01T00:10:00Z").as_second() / 60)
        );
        assert_eq!(job.labels().get("app").map(String::as_str), Some("report"));
        assert_eq!(
            job.metadata.owner_references.as_ref().unwrap()[0].kind,
            "CronJob"
        );
        assert_eq!(p.status.last_schedule_time.unwrap().0, at);
        assert_eq!(
            p.requeue,
            Some(Duration::from_secs(180) + Duration::from_millis(100))
        );
    }

    #[test]
    fn nothing_before_the_next_time() {
        let c = cj(
            json!({}),
            json!({"lastScheduleTime": "2026-01-01T00:10:00Z"}),
        );
        let p = plan(&c, &[], ts("2026-01-01T00:12:00Z"));
        assert!(p.create.is_none());
        let c = cj(json!({"suspend": true}), json!({}));
        assert!(plan(&c, &[], ts("2026-01-01T00:12:00Z")).create.is_none());
    }

    #[test]
    fn starting_deadline_skips_late_starts() {
        let c = cj(json!({"startingDeadlineSeconds": 60}), json!({}));
        assert!(plan(&c, &[], ts("2026-01-01T00:12:00Z")).create.is_none());
        assert!(plan(&c, &[], ts("2026-01-01T00:10:30Z")).create.is_some());
    }

    #[test]
    fn concurrency_policies() {
        let running = job("report-1", None, "2026-01-01T00:05:00Z");
        let forbid = cj(
            json!({"concurrencyPolicy": "Forbid"}),
            json!({"lastScheduleTime": "2026-01-01T00:05:00Z"}),
        );
        let p = plan(&forbid, &[&running], ts("2026-01-01T00:10:00Z"));
        assert!(p.create.is_none());
        assert_eq!(p.status.active.unwrap().len(), 1);
        let replace = cj(
            json!({"concurrencyPolicy": "Replace"}),
            json!({"lastScheduleTime": "2026-01-01T00:05:00Z"}),
        );
        let p = plan(&replace, &[&running], ts("2026-01-01T00:10:00Z"));
        assert!(p.create.is_some());
        assert_eq!(p.delete, vec!["report-1".to_string()]);
        let allow = cj(
            json!({}),
            json!({"lastScheduleTime": "2026-01-01T00:05:00Z"}),
        );
        let p = plan(&allow, &[&running], ts("2026-01-01T00:10:00Z"));
        assert!(p.create.is_some() && p.delete.is_empty());
    }

    #[test]
    fn history_limits_and_last_successful_time() {
        let jobs = [
            job("a", Some("Complete"), "2026-01-01T00:01:00Z"),
            job("b", Some("Complete"), "2026-01-01T00:02:00Z"),
            job("c", Some("Failed"), "2026-01-01T00:03:00Z"),
            job("d", Some("Failed"), "2026-01-01T00:04:00Z"),
        ];
        let refs: Vec<&Job> = jobs.iter().collect();
        let c = cj(
            json!({"successfulJobsHistoryLimit": 1, "failedJobsHistoryLimit": 1}),
            json!({"lastScheduleTime": "2026-01-01T00:05:00Z"}),
        );
        let p = plan(&c, &refs, ts("2026-01-01T00:06:00Z"));
        assert_eq!(p.delete, vec!["a".to_string(), "c".to_string()]);
        assert_eq!(
            p.status.last_successful_time.unwrap().0,
            ts("2026-01-01T00:02:00Z")
        );
    }

    #[test]
    fn bad_schedules_warn() {
        let c = cj(json!({"schedule": "nope"}), json!({}));
        let p = plan(&c, &[], ts("2026-01-01T00:12:00Z"));
        assert!(p.create.is_none());
        assert_eq!(p.warnings[0].0, "UnparseableSchedule");
    }
}
