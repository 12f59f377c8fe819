//! The pod manager's logic on a fake runtime and paused time: what it starts,
//! restarts, backs off, kills and reports. Real containers are the end-to-end tests'.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kedge_proto::v1::{Change, ObjectKind, SyncBatch};
use serde_json::json;

use super::events::Recorder;
use super::events::tests::Collected;
use super::fake::FakeRuntime;
use super::manager::PodManager;
use super::worker::{PodContext, StatusSink};
use crate::store::Store;

thread_local! {
    static START: tokio::time::Instant = tokio::time::Instant::now();
}

/// Wall-clock time that follows tokio's paused clock.
fn clock() -> Timestamp {
    let elapsed = START.with(|s| s.elapsed());
    Timestamp::from_second(1_700_000_000).unwrap()
        + jiff::SignedDuration::try_from(elapsed).unwrap()
}

#[derive(Debug, Default)]
struct Statuses {
    reported: Mutex<Vec<(String, PodStatus)>>,
    terminated: Mutex<Vec<String>>,
}

impl StatusSink for Statuses {
    fn pod_status(&self, pod: &Pod, status: &PodStatus) {
        self.reported
            .lock()
            .unwrap()
            .push((pod.metadata.name.clone().unwrap(), status.clone()));
    }
    fn pod_terminated(&self, pod: &Pod) {
        self.terminated
            .lock()
            .unwrap()
            .push(pod.metadata.name.clone().unwrap());
    }
}

impl Statuses {
    fn last(&self, name: &str) -> Option<PodStatus> {
        self.reported
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s.clone())
    }
}

struct Harness {
    runtime: Arc<FakeRuntime>,
    statuses: Arc<Statuses>,
    events: Arc<Collected>,
    store: Store,
    revision: u64,
}

impl Harness {
    fn new() -> Harness {
        START.with(|_| {});
        Harness {
            runtime: Arc::new(FakeRuntime::new(clock)),
            statuses: Arc::new(Statuses::default()),
            events: Arc::new(Collected::default()),
            store: Store::in_memory().unwrap(),
            revision: 0,
        }
    }

    fn manager(&self) -> PodManager {
        let ctx = PodContext {
            runtime: self.runtime.clone(),
            events: Recorder::new("n1", self.events.clone()),
            statuses: self.statuses.clone(),
            host_ip: Some([192, 168, 0, 10].into()),
            clock,
        };
        PodManager::new(ctx, self.store.clone(), vec![])
    }

    fn put(&mut self, pod: serde_json::Value) {
        self.revision += 1;
        let mut pod = pod;
        pod["metadata"]["resourceVersion"] = json!(self.revision.to_string());
        self.store
            .apply(&SyncBatch {
                revision: self.revision,
                reset: false,
                changes: vec![Change {
                    kind: ObjectKind::Pod as i32,
                    namespace: pod["metadata"]["namespace"].as_str().unwrap().into(),
                    name: pod["metadata"]["name"].as_str().unwrap().into(),
                    revision: self.revision,
                    deleted: false,
                    object: pod.to_string().into_bytes(),
                }],
            })
            .unwrap();
    }

    fn delete(&mut self, name: &str) {
        self.revision += 1;
        self.store
            .apply(&SyncBatch {
                revision: self.revision,
                reset: false,
                changes: vec![Change {
                    kind: ObjectKind::Pod as i32,
                    namespace: "default".into(),
                    name: name.into(),
                    revision: self.revision,
                    deleted: true,
                    object: vec![],
                }],
            })
            .unwrap();
    }

    fn reasons(&self) -> Vec<String> {
        self.events
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|e| e["reason"].as_str().unwrap().to_string())
            .collect()
    }
}

fn pod(name: &str, restart: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut container = json!({"name": "app", "image": "busybox"});
    if let Some(obj) = extra.as_object() {
        for (k, v) in obj {
            container[k] = v.clone();
        }
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
        "spec": {"nodeName": "n1", "restartPolicy": restart, "containers": [container]},
        "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]}
    })
}

/// Lets the manager and its workers run for `d` of paused time.
async fn run_for(manager: &mut PodManager, d: Duration) {
    let end = tokio::time::Instant::now() + d;
    while tokio::time::Instant::now() < end {
        manager.reconcile().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_pod_starts_runs_and_reports_ready() {
    let mut h = Harness::new();
    h.put(pod("web", "Always", json!({})));
    let mut m = h.manager();
    run_for(&mut m, Duration::from_secs(2)).await;
    assert_eq!(h.runtime.calls()[..2], ["run_sandbox 0", "start app 0"]);
    let status = h.statuses.last("web").expect("a status was reported");
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert_eq!(status.pod_ip.as_deref(), Some("10.42.0.2"));
    assert_eq!(status.host_ip.as_deref(), Some("192.168.0.10"));
    let ready = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "True");
    assert_eq!(h.reasons(), ["Pulled", "Created", "Started"]);
    // Nothing changes: nothing more is done or reported.
    let reported = h.statuses.reported.lock().unwrap().len();
    run_for(&mut m, Duration::from_secs(30)).await;
    assert_eq!(h.runtime.count("start"), 1);
    assert_eq!(h.statuses.reported.lock().unwrap().len(), reported);
}

#[tokio::test(start_paused = true)]
async fn a_crashing_container_backs_off_longer_each_time() {
    let mut h = Harness::new();
    h.put(pod("crash", "Always", json!({})));
    let mut m = h.manager();
    run_for(&mut m, Duration::from_secs(1)).await;
    // First exit: restarted at once (the kubelet's back-off starts after it).
    h.runtime.exit("app", 1);
    run_for(&mut m, Duration::from_secs(2)).await;
    assert_eq!(h.runtime.count("start app"), 2);
    // Second exit: 10 s of CrashLoopBackOff.
    h.runtime.exit("app", 1);
    run_for(&mut m, Duration::from_secs(5)).await;
    assert_eq!(h.runtime.count("start app"), 2);
    let status = h.statuses.last("crash").unwrap();
    let cs = &status.container_statuses.as_ref().unwrap()[0];
    let waiting = cs.state.as_ref().unwrap().waiting.as_ref().unwrap();
    assert_eq!(waiting.reason.as_deref(), Some("CrashLoopBackOff"));
    assert!(
        waiting.message.as_deref().unwrap().starts_with(
            "back-off 10s restarting failed container=app pod=crash_default(uid-crash)"
        ),
        "{waiting:?}"
    );
    assert_eq!(
        cs.last_state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap()
            .exit_code,
        1
    );
    assert!(h.reasons().contains(&"BackOff".to_string()));
    run_for(&mut m, Duration::from_secs(7)).await;
    assert_eq!(h.runtime.count("start app"), 3, "{:?}", h.runtime.calls());
    // Third exit: 20 s.
    h.runtime.exit("app", 1);
    run_for(&mut m, Duration::from_secs(15)).await;
    assert_eq!(h.runtime.count("start app"), 3);
    run_for(&mut m, Duration::from_secs(7)).await;
    assert_eq!(h.runtime.count("start app"), 4);
    let status = h.statuses.last("crash").unwrap();
    assert_eq!(status.container_statuses.unwrap()[0].restart_count, 3);
    // Old instances are pruned: the newest and the previous stay.
    assert_eq!(h.runtime.instances("app").len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_failing_liveness_probe_restarts_the_container() {
    let mut h = Harness::new();
    h.put(pod(
        "live",
        "Always",
        json!({"livenessProbe": {"exec": {"command": ["check"]}, "periodSeconds": 1, "failureThreshold": 2}}),
    ));
    let mut m = h.manager();
    run_for(&mut m, Duration::from_secs(5)).await;
    assert_eq!(h.runtime.count("start app"), 1);
    assert!(
        h.runtime.count("exec app-0 check") >= 3,
        "{:?}",
        h.runtime.calls()
    );
    h.runtime.set_exec_exit(1);
    run_for(&mut m, Duration::from_secs(5)).await;
    assert_eq!(h.runtime.count("stop app-0"), 1, "{:?}", h.runtime.calls());
    assert_eq!(h.runtime.count("start app 1"), 1, "{:?}", h.runtime.calls());
    let reasons = h.reasons();
    assert!(reasons.contains(&"Unhealthy".to_string()), "{reasons:?}");
    assert!(reasons.contains(&"Killing".to_string()), "{reasons:?}");
}

#[tokio::test(start_paused = true)]
async fn deletion_stops_the_pod_and_lets_the_server_delete_it() {
    let mut h = Harness::new();
    h.put(pod("gone", "Always", json!({})));
    let mut m = h.manager();
    run_for(&mut m, Duration::from_secs(1)).await;
    let mut deleting = pod("gone", "Always", json!({}));
    deleting["metadata"]["deletionTimestamp"] = json!("2023-11-14T22:13:20Z");
    deleting["metadata"]["deletionGracePeriodSeconds"] = json!(5);
    h.put(deleting);
    run_for(&mut m, Duration::from_secs(2)).await;
    assert_eq!(*h.statuses.terminated.lock().unwrap(), ["gone"]);
    let calls = h.runtime.calls();
    assert!(calls.contains(&"stop app-0".to_string()), "{calls:?}");
    assert!(
        calls.contains(&"stop_sandbox sb-uid-gone-0".to_string()),
        "{calls:?}"
    );
    assert!(calls.contains(&"cleanup uid-gone".to_string()), "{calls:?}");
    // Until the server deletes it, the pod is not started again.
    run_for(&mut m, Duration::from_secs(20)).await;
    assert_eq!(h.runtime.count("start"), 1);
    assert_eq!(h.runtime.count("run_sandbox"), 1);
    h.delete("gone");
    run_for(&mut m, Duration::from_secs(2)).await;
    assert!(m.running().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_agent_restart_adopts_running_pods_without_restarting_them() {
    let mut h = Harness::new();
    let p = pod("kept", "Always", json!({}));
    h.put(p.clone());
    h.runtime.adopt(&serde_json::from_value(p).unwrap());
    let mut m = h.manager();
    run_for(&mut m, Duration::from_secs(15)).await;
    assert_eq!(h.runtime.count("start"), 0, "{:?}", h.runtime.calls());
    assert_eq!(h.runtime.count("run_sandbox"), 0);
    assert_eq!(
        h.statuses.last("kept").unwrap().phase.as_deref(),
        Some("Running")
    );
}

#[tokio::test(start_paused = true)]
async fn what_nobody_wants_is_removed_and_mirror_pods_are_not_run() {
    let mut h = Harness::new();
    // The runtime holds a pod the store does not list (deleted while the agent was down).
    h.runtime
        .adopt(&serde_json::from_value(pod("orphan", "Always", json!({}))).unwrap());
    let mut mirror = pod("static-n1", "Always", json!({}));
    mirror["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "abc"});
    h.put(mirror);
    let mut m = h.manager();
    run_for(&mut m, Duration::from_secs(3)).await;
    let calls = h.runtime.calls();
    assert!(calls.contains(&"stop app-0".to_string()), "{calls:?}");
    assert!(
        calls.contains(&"cleanup uid-orphan".to_string()),
        "{calls:?}"
    );
    assert_eq!(
        h.runtime.count("run_sandbox"),
        0,
        "a mirror pod is not run: {calls:?}"
    );
    assert!(h.statuses.terminated.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_missing_image_waits_with_its_reason() {
    let mut h = Harness::new();
    h.put(pod(
        "noimg",
        "Always",
        json!({"image": "missing", "imagePullPolicy": "Never"}),
    ));
    let mut m = h.manager();
    run_for(&mut m, Duration::from_secs(2)).await;
    let status = h.statuses.last("noimg").unwrap();
    let waiting = status.container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .waiting
        .unwrap();
    assert_eq!(waiting.reason.as_deref(), Some("ErrImageNeverPull"));
    assert_eq!(status.phase.as_deref(), Some("Pending"));
}

#[tokio::test(start_paused = true)]
async fn a_failing_pull_backs_off_longer_each_time() {
    let mut h = Harness::new();
    h.put(pod("pull", "Always", json!({"image": "unreachable"})));
    let mut m = h.manager();
    let waiting = |h: &Harness| {
        let status = h.statuses.last("pull").unwrap();
        let state = status.container_statuses.unwrap()[0].state.clone().unwrap();
        let w = state.waiting.unwrap();
        (w.reason.unwrap_or_default(), w.message.unwrap_or_default())
    };
    run_for(&mut m, Duration::from_secs(2)).await;
    assert_eq!(h.runtime.count("pull"), 1);
    // ErrImagePull first, then (a sync later) ImagePullBackOff until the back-off ends:
    // 10 s, then 20 s, between pulls.
    let first = h.statuses.reported.lock().unwrap()[0].1.clone();
    let state = first.container_statuses.unwrap()[0].state.clone().unwrap();
    assert_eq!(
        state.waiting.unwrap().reason.as_deref(),
        Some("ErrImagePull")
    );
    run_for(&mut m, Duration::from_secs(7)).await;
    assert_eq!(h.runtime.count("pull"), 1, "{:?}", h.runtime.calls());
    let (reason, message) = waiting(&h);
    assert_eq!(reason, "ImagePullBackOff");
    assert_eq!(
        message,
        "Back-off pulling image \"unreachable\": ErrImagePull: failed to pull and unpack image \"unreachable\": no registry answers"
    );
    assert!(
        h.reasons().contains(&"BackOff".to_string()),
        "{:?}",
        h.reasons()
    );
    run_for(&mut m, Duration::from_secs(3)).await;
    assert_eq!(h.runtime.count("pull"), 2, "pulled again after 10 s");
    run_for(&mut m, Duration::from_secs(17)).await;
    assert_eq!(h.runtime.count("pull"), 2, "then waits 20 s");
    run_for(&mut m, Duration::from_secs(5)).await;
    assert_eq!(h.runtime.count("pull"), 3);
    assert_eq!(h.runtime.count("start"), 0);
}

#[tokio::test(start_paused = true)]
async fn an_evicted_pod_is_stopped_reported_failed_and_not_started_again() {
    use super::worker::PodEviction;
    let mut h = Harness::new();
    h.put(pod("hog", "Always", json!({})));
    // The fake names containers by name and attempt: the other pod's is "web".
    h.put(pod("web", "Always", json!({"name": "web"})));
    let mut m = h.manager();
    run_for(&mut m, Duration::from_secs(1)).await;
    let message = "The node was low on resource: memory. Threshold quantity: 40Mi, available: 12Mi. Container app was using 120Mi, request is 0, has larger consumption of memory. ";
    m.evict(
        "uid-hog",
        PodEviction {
            message: message.into(),
            grace_period: Duration::ZERO,
        },
    );
    run_for(&mut m, Duration::from_secs(2)).await;
    let calls = h.runtime.calls();
    assert!(calls.contains(&"stop app-0".to_string()), "{calls:?}");
    assert!(
        calls.contains(&"stop_sandbox sb-uid-hog-0".to_string()),
        "{calls:?}"
    );
    let status = h.statuses.last("hog").unwrap();
    assert_eq!(status.phase.as_deref(), Some("Failed"));
    assert_eq!(status.reason.as_deref(), Some("Evicted"));
    assert_eq!(status.message.as_deref(), Some(message));
    let conditions = status.conditions.unwrap();
    let target = conditions
        .iter()
        .find(|c| c.type_ == "DisruptionTarget")
        .unwrap();
    assert_eq!(target.reason.as_deref(), Some("TerminationByKubelet"));
    let ready = conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.status, "False");
    let evicted: Vec<serde_json::Value> = h
        .events
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e["reason"] == "Evicted")
        .cloned()
        .collect();
    assert_eq!(evicted.len(), 1);
    assert_eq!(evicted[0]["type"], "Warning");
    assert_eq!(evicted[0]["message"], message);
    // Never started again (restartPolicy Always notwithstanding); the other pod runs on.
    run_for(&mut m, Duration::from_secs(30)).await;
    assert_eq!(h.runtime.count("start app"), 1, "{:?}", h.runtime.calls());
    assert_eq!(h.runtime.count("run_sandbox"), 2);
    assert_eq!(
        h.statuses.last("web").unwrap().phase.as_deref(),
        Some("Running")
    );

    // An agent restarted after the server took the status: the store says Evicted,
    // so the new manager does not start the pod either.
    let mut failed = pod("hog", "Always", json!({}));
    failed["status"] = serde_json::to_value(h.statuses.last("hog").unwrap()).unwrap();
    h.put(failed);
    drop(m);
    let mut m = h.manager();
    run_for(&mut m, Duration::from_secs(15)).await;
    assert_eq!(h.runtime.count("start app"), 1, "{:?}", h.runtime.calls());
    assert_eq!(h.runtime.count("run_sandbox"), 2);

    // Deleted: terminated and let go, still reported Evicted.
    let mut deleting = pod("hog", "Always", json!({}));
    deleting["status"] = serde_json::to_value(h.statuses.last("hog").unwrap()).unwrap();
    deleting["metadata"]["deletionTimestamp"] = json!("2023-11-14T22:13:20Z");
    h.put(deleting);
    run_for(&mut m, Duration::from_secs(2)).await;
    assert_eq!(*h.statuses.terminated.lock().unwrap(), ["hog"]);
    assert_eq!(
        h.statuses.last("hog").unwrap().reason.as_deref(),
        Some("Evicted")
    );
}
