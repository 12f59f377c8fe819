//! Workload defaults: `apps/v1` (`pkg/apis/apps/v1/defaults.go`) and
//! `batch/v1` (`pkg/apis/batch/v1/defaults.go`), each with its pod
//! template's.
//!
//! Selector and label generation for Jobs is the apiserver's registry
//! strategy, not defaulting, and is not done here.

use serde_json::{Value, json};

use super::{child, default, each, existing, pod, resource_list, str_at, unset};

fn template(spec: &mut Value) {
    if let Some(t) = existing(spec, "template") {
        pod::template(t);
    }
}

/// `SetDefaults_Deployment`.
pub fn deployment(obj: &mut Value) {
    let Some(spec) = child(obj, "spec") else {
        return;
    };
    default(spec, "replicas", json!(1));
    if let Some(strategy) = child(spec, "strategy") {
        default(strategy, "type", json!("RollingUpdate"));
        if str_at(strategy, "type") == "RollingUpdate"
            && let Some(ru) = child(strategy, "rollingUpdate")
        {
            default(ru, "maxUnavailable", json!("25%"));
            default(ru, "maxSurge", json!("25%"));
        }
    }
    default(spec, "revisionHistoryLimit", json!(10));
    default(spec, "progressDeadlineSeconds", json!(600));
    template(spec);
}

/// `SetDefaults_ReplicaSet`.
pub fn replica_set(obj: &mut Value) {
    let Some(spec) = child(obj, "spec") else {
        return;
    };
    default(spec, "replicas", json!(1));
    template(spec);
}

/// `SetDefaults_DaemonSet`.
pub fn daemon_set(obj: &mut Value) {
    let Some(spec) = child(obj, "spec") else {
        return;
    };
    if let Some(strategy) = child(spec, "updateStrategy") {
        default(strategy, "type", json!("RollingUpdate"));
        if str_at(strategy, "type") == "RollingUpdate"
            && let Some(ru) = child(strategy, "rollingUpdate")
        {
            default(ru, "maxUnavailable", json!(1));
            default(ru, "maxSurge", json!(0));
        }
    }
    default(spec, "revisionHistoryLimit", json!(10));
    template(spec);
}

/// `SetDefaults_StatefulSet` (with the 1.32 default feature gates:
/// `StatefulSetAutoDeletePVC` on, `MaxUnavailableStatefulSet` off), and the
/// PersistentVolumeClaim defaults of its claim templates.
pub fn stateful_set(obj: &mut Value) {
    let Some(spec) = child(obj, "spec") else {
        return;
    };
    default(spec, "podManagementPolicy", json!("OrderedReady"));
    if let Some(strategy) = child(spec, "updateStrategy") {
        if unset(strategy, "type") {
            default(strategy, "type", json!("RollingUpdate"));
            child(strategy, "rollingUpdate");
        }
        if str_at(strategy, "type") == "RollingUpdate"
            && let Some(ru) = existing(strategy, "rollingUpdate")
        {
            default(ru, "partition", json!(0));
        }
    }
    if let Some(policy) = child(spec, "persistentVolumeClaimRetentionPolicy") {
        default(policy, "whenDeleted", json!("Retain"));
        default(policy, "whenScaled", json!("Retain"));
    }
    default(spec, "replicas", json!(1));
    default(spec, "revisionHistoryLimit", json!(10));
    template(spec);
    for claim in each(spec, "volumeClaimTemplates") {
        if let Some(claim_spec) = existing(claim, "spec") {
            default(claim_spec, "volumeMode", json!("Filesystem"));
            if let Some(r) = existing(claim_spec, "resources") {
                resource_list(r, "limits");
                resource_list(r, "requests");
            }
        }
        if let Some(status) = child(claim, "status") {
            default(status, "phase", json!("Pending"));
        }
    }
}

/// `SetDefaults_Job` (with the 1.32 default feature gates).
pub fn job(obj: &mut Value) {
    // A Job without labels takes its template's.
    let template_labels = obj
        .pointer("/spec/template/metadata/labels")
        .filter(|l| l.is_object())
        .cloned();
    let Some(spec) = child(obj, "spec") else {
        return;
    };
    job_spec(spec);
    template(spec);
    if let Some(labels) = template_labels
        && let Some(meta) = child(obj, "metadata")
        && meta
            .get("labels")
            .and_then(Value::as_object)
            .is_none_or(|l| l.is_empty())
        && let Some(map) = meta.as_object_mut()
    {
        map.insert("labels".into(), labels);
    }
}

fn job_spec(spec: &mut Value) {
    if unset(spec, "completions") && unset(spec, "parallelism") {
        default(spec, "completions", json!(1));
    }
    default(spec, "parallelism", json!(1));
    if unset(spec, "backoffLimit") {
        let limit = if unset(spec, "backoffLimitPerIndex") {
            6
        } else {
            i64::from(i32::MAX)
        };
        default(spec, "backoffLimit", json!(limit));
    }
    default(spec, "completionMode", json!("NonIndexed"));
    default(spec, "suspend", json!(false));
    let has_failure_policy = !unset(spec, "podFailurePolicy");
    if let Some(policy) = existing(spec, "podFailurePolicy") {
        for rule in each(policy, "rules") {
            for pattern in each(rule, "onPodConditions") {
                default(pattern, "status", json!("True"));
            }
        }
    }
    let replacement = if has_failure_policy {
        "Failed"
    } else {
        "TerminatingOrFailed"
    };
    default(spec, "podReplacementPolicy", json!(replacement));
}

/// `SetDefaults_CronJob`, and the pod template inside its job template.
/// Upstream does not default the job template's Job fields.
pub fn cron_job(obj: &mut Value) {
    let Some(spec) = child(obj, "spec") else {
        return;
    };
    default(spec, "concurrencyPolicy", json!("Allow"));
    default(spec, "suspend", json!(false));
    default(spec, "successfulJobsHistoryLimit", json!(3));
    default(spec, "failedJobsHistoryLimit", json!(1));
    if let Some(jt) = existing(spec, "jobTemplate")
        && let Some(job_spec) = existing(jt, "spec")
    {
        template(job_spec);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpl() -> Value {
        json!({"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "i:1"}]}})
    }

    fn defaulted_template_spec() -> Value {
        json!({
            "containers": [{"name": "c", "image": "i:1", "imagePullPolicy": "IfNotPresent",
                "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
                "resources": {}}],
            "dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "schedulerName": "default-scheduler",
            "securityContext": {}, "terminationGracePeriodSeconds": 30,
        })
    }

    #[test]
    fn deployment_before_after() {
        let mut d =
            json!({"spec": {"selector": {"matchLabels": {"app": "a"}}, "template": tmpl()}});
        deployment(&mut d);
        assert_eq!(
            d["spec"],
            json!({
                "replicas": 1,
                "revisionHistoryLimit": 10,
                "progressDeadlineSeconds": 600,
                "selector": {"matchLabels": {"app": "a"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
                "template": {"metadata": {"labels": {"app": "a"}}, "spec": defaulted_template_spec()},
            })
        );

        let mut d = json!({"spec": {"replicas": 0, "strategy": {"type": "Recreate"}}});
        deployment(&mut d);
        assert_eq!(d["spec"]["replicas"], 0);
        assert_eq!(d["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn replica_set_and_daemon_set() {
        let mut r = json!({"spec": {"template": tmpl()}});
        replica_set(&mut r);
        assert_eq!(r["spec"]["replicas"], 1);
        assert_eq!(r["spec"]["template"]["spec"], defaulted_template_spec());

        let mut d = json!({"spec": {"template": tmpl()}});
        daemon_set(&mut d);
        assert_eq!(
            d["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        );
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        let mut d = json!({"spec": {"updateStrategy": {"type": "OnDelete"}}});
        daemon_set(&mut d);
        assert_eq!(d["spec"]["updateStrategy"], json!({"type": "OnDelete"}));
    }

    #[test]
    fn stateful_set_before_after() {
        let mut s = json!({"spec": {"serviceName": "s", "template": tmpl(),
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]}});
        stateful_set(&mut s);
        let spec = &s["spec"];
        assert_eq!(spec["replicas"], 1);
        assert_eq!(spec["podManagementPolicy"], "OrderedReady");
        assert_eq!(
            spec["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        );
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(
            spec["persistentVolumeClaimRetentionPolicy"],
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
        );
        assert_eq!(
            spec["volumeClaimTemplates"][0]["spec"]["volumeMode"],
            "Filesystem"
        );
        assert_eq!(
            spec["volumeClaimTemplates"][0]["status"],
            json!({"phase": "Pending"})
        );

        // an explicit RollingUpdate without rollingUpdate gets no partition
        let mut s = json!({"spec": {"updateStrategy": {"type": "RollingUpdate"}}});
        stateful_set(&mut s);
        assert_eq!(
            s["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate"})
        );
    }

    #[test]
    fn job_before_after() {
        let mut j = json!({"metadata": {"name": "j"}, "spec": {"template": tmpl()}});
        job(&mut j);
        let spec = &j["spec"];
        assert_eq!(spec["completions"], 1);
        assert_eq!(spec["parallelism"], 1);
        assert_eq!(spec["backoffLimit"], 6);
        assert_eq!(spec["completionMode"], "NonIndexed");
        assert_eq!(spec["suspend"], false);
        assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");
        assert!(spec.get("manualSelector").is_none());
        assert_eq!(j["metadata"]["labels"], json!({"app": "a"}));

        let mut j = json!({"metadata": {"labels": {"mine": "x"}}, "spec": {"parallelism": 3, "backoffLimitPerIndex": 1,
            "podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]},
            "template": tmpl()}});
        job(&mut j);
        let spec = &j["spec"];
        assert!(spec.get("completions").is_none());
        assert_eq!(spec["parallelism"], 3);
        assert_eq!(spec["backoffLimit"], 2147483647);
        assert_eq!(spec["podReplacementPolicy"], "Failed");
        assert_eq!(
            spec["podFailurePolicy"]["rules"][0]["onPodConditions"][0]["status"],
            "True"
        );
        assert_eq!(j["metadata"]["labels"], json!({"mine": "x"}));
    }

    #[test]
    fn cron_job_before_after() {
        let mut c = json!({"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": tmpl()}}}});
        cron_job(&mut c);
        let spec = &c["spec"];
        assert_eq!(spec["concurrencyPolicy"], "Allow");
        assert_eq!(spec["suspend"], false);
        assert_eq!(spec["successfulJobsHistoryLimit"], 3);
        assert_eq!(spec["failedJobsHistoryLimit"], 1);
        assert_eq!(
            spec["jobTemplate"]["spec"]["template"]["spec"],
            defaulted_template_spec()
        );
        assert!(spec["jobTemplate"]["spec"].get("backoffLimit").is_none());
    }
}
