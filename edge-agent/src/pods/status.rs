//! A pod's status, computed from its spec, what the runtime holds, the probes' results
//! and the errors of the last sync: the upstream kubelet's `generateAPIPodStatus`.
//!
//! A pure function; the worker calls it after every sync and reports the result when it
//! differs from what it reported last. Conditions keep their `lastTransitionTime` while
//! their status stays the same, and a pod that reached a terminal phase (Succeeded,
//! Failed) never leaves it.

use std::collections::HashMap;
use std::net::IpAddr;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    Container, ContainerState as ApiState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus as ApiStatus, HostIP, Pod, PodCondition, PodIP,
    PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::runtime::{ContainerState, ContainerStatus, PodObserved};

/// Why a container is waiting, when the last sync could not start it
/// (`CrashLoopBackOff`, `CreateContainerConfigError`, `ErrImagePull` …).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    pub reason: String,
    pub message: String,
}

/// Everything the status is computed from.
#[derive(Debug)]
pub struct StatusInput<'a> {
    /// The pod, with the status last reported (for transition times and startTime).
    pub pod: &'a Pod,
    pub observed: &'a PodObserved,
    /// Readiness probe results by container id; a container without a readiness
    /// probe is ready once started.
    pub ready: &'a HashMap<String, bool>,
    /// Startup probe results by container id; without a startup probe, a running
    /// container has started.
    pub started: &'a HashMap<String, bool>,
    /// Containers the last sync could not start, by container name.
    pub waiting: &'a HashMap<String, Waiting>,
    pub host_ip: Option<IpAddr>,
    /// The pod's QoS class (Guaranteed, Burstable, BestEffort).
    pub qos_class: &'a str,
    pub now: Timestamp,
}

fn time(t: Timestamp) -> Time {
    Time(t)
}

fn terminated(cs: &ContainerStatus) -> ContainerStateTerminated {
    if cs.state == ContainerState::Unknown {
        return ContainerStateTerminated {
            exit_code: 137,
            reason: Some("ContainerStatusUnknown".into()),
            message: Some("The container could not be located when the pod was terminated".into()),
            container_id: Some(cs.container_id()),
            ..Default::default()
        };
    }
    ContainerStateTerminated {
        exit_code: cs.exit_code,
        reason: Some(if cs.reason.is_empty() {
            if cs.exit_code == 0 {
                "Completed"
            } else {
                "Error"
            }
            .to_string()
        } else {
            cs.reason.clone()
        }),
        message: (!cs.message.is_empty()).then(|| cs.message.clone()),
        started_at: cs.started_at.map(time),
        finished_at: cs.finished_at.map(time),
        container_id: Some(cs.container_id()),
        signal: None,
    }
}

fn waiting(reason: &str, message: Option<&str>) -> ApiState {
    ApiState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_string()),
            message: message.map(str::to_string),
        }),
        ..Default::default()
    }
}

fn container_statuses(
    input: &StatusInput<'_>,
    specs: &[Container],
    init: bool,
    initializing: bool,
) -> Vec<ApiStatus> {
    let mut out = Vec::new();
    for spec in specs {
        let latest = input.observed.latest(&spec.name);
        let previous = input.observed.previous(&spec.name);
        let mut status = ApiStatus {
            name: spec.name.clone(),
            image: spec.image.clone().unwrap_or_default(),
            image_id: String::new(),
            ready: false,
            restart_count: 0,
            started: Some(false),
            ..Default::default()
        };
        match latest {
            None => {
                let reason = if !init && initializing {
                    "PodInitializing"
                } else {
                    "ContainerCreating"
                };
                status.state = Some(waiting(reason, None));
            }
            Some(cs) => {
                status.container_id = Some(cs.container_id());
                status.image_id = cs.image_ref.clone();
                if !cs.image.is_empty() {
                    status.image = cs.image.clone();
                }
                status.restart_count = cs.attempt as i32;
                match cs.state {
                    ContainerState::Running => {
                        let started = input
                            .started
                            .get(&cs.id)
                            .copied()
                            .unwrap_or(spec.startup_probe.is_none());
                        let ready = started
                            && input
                                .ready
                                .get(&cs.id)
                                .copied()
                                .unwrap_or(spec.readiness_probe.is_none());
                        status.started = Some(started);
                        status.ready = ready;
                        status.state = Some(ApiState {
                            running: Some(ContainerStateRunning {
                                started_at: cs.started_at.map(time),
                            }),
                            ..Default::default()
                        });
                    }
                    ContainerState::Created => {
                        status.state = Some(waiting("ContainerCreating", None));
                    }
                    ContainerState::Exited | ContainerState::Unknown => {
                        status.state = Some(ApiState {
                            terminated: Some(terminated(cs)),
                            ..Default::default()
                        });
                    }
                }
                if let Some(prev) = previous
                    .filter(|p| matches!(p.state, ContainerState::Exited | ContainerState::Unknown))
                {
                    status.last_state = Some(ApiState {
                        terminated: Some(terminated(prev)),
                        ..Default::default()
                    });
                }
            }
        }
        // A container the last sync could not start waits, and shows its last exit.
        if let Some(w) = input.waiting.get(&spec.name) {
            let running = latest.is_some_and(|c| c.state == ContainerState::Running);
            if !running {
                if let Some(cs) = latest
                    .filter(|c| matches!(c.state, ContainerState::Exited | ContainerState::Unknown))
                {
                    status.last_state = Some(ApiState {
                        terminated: Some(terminated(cs)),
                        ..Default::default()
                    });
                }
                status.state = Some(waiting(&w.reason, Some(&w.message)));
            }
        }
        if status.last_state.is_none() {
            status.last_state = Some(ApiState::default());
        }
        out.push(status);
    }
    out
}

/// The kubelet's `getPhase`.
fn phase(pod: &Pod, inits: &[ApiStatus], apps: &[ApiStatus]) -> &'static str {
    let restart = pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");
    let terminated_exit = |s: &ApiStatus| {
        s.state
            .as_ref()
            .and_then(|st| st.terminated.as_ref())
            .map(|t| t.exit_code)
    };
    let last_exit = |s: &ApiStatus| {
        s.last_state
            .as_ref()
            .and_then(|st| st.terminated.as_ref())
            .map(|t| t.exit_code)
    };
    let (mut pending_init, mut failed_init) = (0, 0);
    for s in inits {
        let st = s.state.as_ref();
        if st.is_some_and(|st| st.running.is_some()) {
            pending_init += 1;
        } else if let Some(code) = terminated_exit(s) {
            if code != 0 {
                failed_init += 1;
            }
        } else if st.is_some_and(|st| st.waiting.is_some()) {
            match last_exit(s) {
                Some(code) if code != 0 => failed_init += 1,
                _ => pending_init += 1,
            }
        } else {
            pending_init += 1;
        }
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for s in apps {
        let st = s.state.as_ref();
        if st.is_some_and(|st| st.running.is_some()) {
            running += 1;
        } else if let Some(code) = terminated_exit(s) {
            stopped += 1;
            if code == 0 {
                succeeded += 1;
            }
        } else if last_exit(s).is_some() {
            stopped += 1;
        } else {
            waiting += 1;
        }
    }
    if failed_init > 0 && restart == "Never" {
        return "Failed";
    }
    if pending_init > 0 || waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        if restart == "Always" {
            return "Running";
        }
        if stopped == succeeded {
            return "Succeeded";
        }
        if restart == "Never" {
            return "Failed";
        }
        return "Running";
    }
    "Pending"
}

fn condition(
    old: &[PodCondition],
    kind: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
    now: Timestamp,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let since = old
        .iter()
        .find(|c| c.type_ == kind && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    PodCondition {
        type_: kind.to_string(),
        status: status.to_string(),
        reason: reason.map(str::to_string),
        message,
        last_transition_time: Some(since),
        last_probe_time: None,
    }
}

fn names_where(statuses: &[ApiStatus], pred: impl Fn(&ApiStatus) -> bool) -> Vec<String> {
    statuses
        .iter()
        .filter(|s| pred(s))
        .map(|s| s.name.clone())
        .collect()
}

/// Computes the pod's status.
pub fn pod_status(input: &StatusInput<'_>) -> PodStatus {
    let pod = input.pod;
    let spec = pod.spec.clone().unwrap_or_default();
    let old = pod.status.clone().unwrap_or_default();
    let old_conditions = old.conditions.clone().unwrap_or_default();
    let init_specs = spec.init_containers.clone().unwrap_or_default();
    let init_statuses = container_statuses(input, &init_specs, true, false);
    let incomplete_inits = names_where(&init_statuses, |s| {
        s.state
            .as_ref()
            .and_then(|st| st.terminated.as_ref())
            .is_none_or(|t| t.exit_code != 0)
    });
    let initializing = !incomplete_inits.is_empty();
    let app_statuses = container_statuses(input, &spec.containers, false, initializing);

    let old_phase = old.phase.as_deref().unwrap_or("Pending");
    let phase = if matches!(old_phase, "Succeeded" | "Failed") {
        old_phase
    } else {
        phase(pod, &init_statuses, &app_statuses)
    };
    let terminal = matches!(phase, "Succeeded" | "Failed");

    let sandbox = input.observed.sandbox();
    let sandbox_ready = sandbox.is_some_and(|s| s.ready);
    let unready = names_where(&app_statuses, |s| !s.ready);
    let mut conditions = vec![condition(
        &old_conditions,
        "PodReadyToStartContainers",
        sandbox_ready,
        None,
        None,
        input.now,
    )];
    conditions.push(if init_statuses.is_empty() || !initializing {
        let reason = (terminal && init_statuses.is_empty()).then_some("PodCompleted");
        condition(
            &old_conditions,
            "Initialized",
            true,
            reason,
            None,
            input.now,
        )
    } else {
        condition(
            &old_conditions,
            "Initialized",
            false,
            Some("ContainersNotInitialized"),
            Some(format!(
                "containers with incomplete status: [{}]",
                incomplete_inits.join(" ")
            )),
            input.now,
        )
    });
    let (ready, reason, message) = if terminal {
        (false, Some("PodCompleted"), None)
    } else if unready.is_empty() {
        (true, None, None)
    } else {
        (
            false,
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        )
    };
    conditions.push(condition(
        &old_conditions,
        "Ready",
        ready,
        reason,
        message.clone(),
        input.now,
    ));
    conditions.push(condition(
        &old_conditions,
        "ContainersReady",
        ready,
        reason,
        message,
        input.now,
    ));
    if let Some(scheduled) = old_conditions.iter().find(|c| c.type_ == "PodScheduled") {
        conditions.push(scheduled.clone());
    }

    let pod_ip = sandbox.and_then(|s| if s.host_network { input.host_ip } else { s.ip });
    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conditions),
        host_ip: input.host_ip.map(|ip| ip.to_string()),
        host_ips: input.host_ip.map(|ip| vec![HostIP { ip: ip.to_string() }]),
        pod_ip: pod_ip.map(|ip| ip.to_string()),
        pod_ips: pod_ip.map(|ip| vec![PodIP { ip: ip.to_string() }]),
        start_time: old.start_time.clone().or(Some(Time(input.now))),
        qos_class: Some(input.qos_class.to_string()),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        container_statuses: Some(app_statuses),
        ..Default::default()
    }
}

/// Makes a status the status of an evicted pod, as the kubelet's eviction manager
/// writes it: phase `Failed`, the reason (`Evicted`) and message, and the
/// `DisruptionTarget` condition (reason `TerminationByKubelet`), which keeps its
/// transition time from `old`.
pub fn evicted(
    status: &mut PodStatus,
    old: &[PodCondition],
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    status.phase = Some("Failed".to_string());
    status.reason = Some(reason.to_string());
    status.message = Some(message.to_string());
    let target = condition(
        old,
        "DisruptionTarget",
        true,
        Some("TerminationByKubelet"),
        Some(message.to_string()),
        now,
    );
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    conditions.retain(|c| c.type_ != "DisruptionTarget");
    conditions.push(target);
}

#[cfg(test)]
mod tests {
    use super::super::runtime::{SandboxStatus, container_hash};
    use super::*;

    fn pod(restart: &str, inits: &[&str], apps: &[&str], readiness: bool) -> Pod {
        let c = |n: &&str| {
            let mut v = serde_json::json!({"name": n, "image": "busybox"});
            if readiness {
                v["readinessProbe"] = serde_json::json!({"exec": {"command": ["true"]}});
            }
            v
        };
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {
                "restartPolicy": restart,
                "initContainers": inits.iter().map(c).collect::<Vec<_>>(),
                "containers": apps.iter().map(c).collect::<Vec<_>>(),
            },
            "status": {"conditions": [{"type": "PodScheduled", "status": "True"}]}
        }))
        .unwrap()
    }

    fn cs(name: &str, attempt: u32, state: ContainerState, exit: i32) -> ContainerStatus {
        let t = Timestamp::from_second(1_700_000_000 + i64::from(attempt)).unwrap();
        ContainerStatus {
            id: format!("{name}-{attempt}"),
            name: name.into(),
            attempt,
            state,
            created_at: t,
            started_at: Some(t),
            finished_at: (state == ContainerState::Exited).then_some(t),
            exit_code: exit,
            reason: String::new(),
            message: String::new(),
            image: "docker.io/library/busybox:latest".into(),
            image_ref: "docker.io/library/busybox@sha256:abc".into(),
            hash: container_hash(&Default::default()),
        }
    }

    fn sandbox() -> SandboxStatus {
        SandboxStatus {
            id: "sb".into(),
            attempt: 0,
            ready: true,
            ip: Some([10, 42, 0, 9].into()),
            host_network: false,
            netns: None,
            created_at: Timestamp::UNIX_EPOCH,
        }
    }

    struct Case {
        observed: PodObserved,
        ready: HashMap<String, bool>,
        waiting: HashMap<String, Waiting>,
    }

    impl Case {
        fn new(containers: Vec<ContainerStatus>) -> Case {
            let mut observed = PodObserved {
                sandboxes: vec![sandbox()],
                containers,
            };
            observed.sort();
            Case {
                observed,
                ready: HashMap::new(),
                waiting: HashMap::new(),
            }
        }

        fn status(&self, pod: &Pod) -> PodStatus {
            pod_status(&StatusInput {
                pod,
                observed: &self.observed,
                ready: &self.ready,
                started: &HashMap::new(),
                waiting: &self.waiting,
                host_ip: Some([192, 168, 1, 2].into()),
                qos_class: "BestEffort",
                now: Timestamp::from_second(1_700_001_000).unwrap(),
            })
        }
    }

    fn cond<'a>(s: &'a PodStatus, kind: &str) -> &'a PodCondition {
        s.conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == kind)
            .unwrap()
    }

    #[test]
    fn a_running_pod_is_ready_with_its_ip() {
        let p = pod("Always", &[], &["app"], false);
        let s = Case::new(vec![cs("app", 0, ContainerState::Running, 0)]).status(&p);
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(s.pod_ip.as_deref(), Some("10.42.0.9"));
        assert_eq!(s.host_ip.as_deref(), Some("192.168.1.2"));
        assert_eq!(cond(&s, "Ready").status, "True");
        assert_eq!(cond(&s, "PodScheduled").status, "True");
        let c = &s.container_statuses.as_ref().unwrap()[0];
        assert!(c.ready);
        assert_eq!(c.container_id.as_deref(), Some("containerd://app-0"));
        assert!(c.state.as_ref().unwrap().running.is_some());
    }

    #[test]
    fn readiness_probes_gate_ready() {
        let p = pod("Always", &[], &["app"], true);
        let mut case = Case::new(vec![cs("app", 0, ContainerState::Running, 0)]);
        let s = case.status(&p);
        assert_eq!(cond(&s, "Ready").status, "False");
        assert_eq!(
            cond(&s, "Ready").message.as_deref(),
            Some("containers with unready status: [app]")
        );
        case.ready.insert("app-0".into(), true);
        assert_eq!(cond(&case.status(&p), "Ready").status, "True");
    }

    #[test]
    fn crash_loop_shows_waiting_with_the_last_exit() {
        let p = pod("Always", &[], &["app"], false);
        let mut case = Case::new(vec![
            cs("app", 0, ContainerState::Exited, 1),
            cs("app", 1, ContainerState::Exited, 2),
        ]);
        case.waiting.insert(
            "app".into(),
            Waiting {
                reason: "CrashLoopBackOff".into(),
                message: "back-off 20s restarting failed container=app pod=p_default(u1)".into(),
            },
        );
        let s = case.status(&p);
        let c = &s.container_statuses.as_ref().unwrap()[0];
        let w = c.state.as_ref().unwrap().waiting.as_ref().unwrap();
        assert_eq!(w.reason.as_deref(), Some("CrashLoopBackOff"));
        assert_eq!(
            c.last_state
                .as_ref()
                .unwrap()
                .terminated
                .as_ref()
                .unwrap()
                .exit_code,
            2
        );
        assert_eq!(c.restart_count, 1);
        assert_eq!(s.phase.as_deref(), Some("Running"));
    }

    #[test]
    fn phases_follow_the_restart_policy() {
        for (policy, exit, phase) in [
            ("Never", 0, "Succeeded"),
            ("Never", 1, "Failed"),
            ("OnFailure", 0, "Succeeded"),
            ("Always", 0, "Running"),
        ] {
            let p = pod(policy, &[], &["app"], false);
            let s = Case::new(vec![cs("app", 0, ContainerState::Exited, exit)]).status(&p);
            assert_eq!(s.phase.as_deref(), Some(phase), "{policy} exit {exit}");
            if matches!(phase, "Succeeded" | "Failed") {
                assert_eq!(cond(&s, "Ready").reason.as_deref(), Some("PodCompleted"));
            }
        }
    }

    #[test]
    fn init_containers_hold_the_pod_pending() {
        let p = pod("Always", &["init"], &["app"], false);
        let s = Case::new(vec![cs("init", 0, ContainerState::Running, 0)]).status(&p);
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        assert_eq!(cond(&s, "Initialized").status, "False");
        let app = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(
            app.state
                .as_ref()
                .unwrap()
                .waiting
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("PodInitializing")
        );
        let p2 = pod("Never", &["init"], &["app"], false);
        let s = Case::new(vec![cs("init", 0, ContainerState::Exited, 3)]).status(&p2);
        assert_eq!(s.phase.as_deref(), Some("Failed"));
    }

    #[test]
    fn transition_times_stay_while_a_condition_holds() {
        let mut p = pod("Always", &[], &["app"], false);
        let case = Case::new(vec![cs("app", 0, ContainerState::Running, 0)]);
        let first = case.status(&p);
        let since = cond(&first, "Ready").last_transition_time.clone();
        p.status = Some(first);
        let second = pod_status(&StatusInput {
            now: Timestamp::from_second(1_700_009_000).unwrap(),
            ..StatusInputOwned::of(&p, &case)
        });
        assert_eq!(cond(&second, "Ready").last_transition_time, since);
        assert_eq!(second.start_time, p.status.as_ref().unwrap().start_time);
    }

    /// Borrowing helper for the struct-update syntax above.
    struct StatusInputOwned;
    impl StatusInputOwned {
        fn of<'a>(p: &'a Pod, case: &'a Case) -> StatusInput<'a> {
            static EMPTY: std::sync::OnceLock<HashMap<String, bool>> = std::sync::OnceLock::new();
            StatusInput {
                pod: p,
                observed: &case.observed,
                ready: &case.ready,
                started: EMPTY.get_or_init(HashMap::new),
                waiting: &case.waiting,
                host_ip: None,
                qos_class: "BestEffort",
                now: Timestamp::UNIX_EPOCH,
            }
        }
    }

    #[test]
    fn a_terminal_phase_is_never_left() {
        let mut p = pod("Never", &[], &["app"], false);
        p.status.as_mut().unwrap().phase = Some("Failed".into());
        let s = Case::new(vec![cs("app", 0, ContainerState::Running, 0)]).status(&p);
        assert_eq!(s.phase.as_deref(), Some("Failed"));
    }

    #[test]
    fn an_evicted_pod_is_failed_with_its_reason_and_a_disruption_target() {
        let p = pod("Always", &[], &["app"], false);
        let mut s = Case::new(vec![cs("app", 0, ContainerState::Exited, 137)]).status(&p);
        let t0 = Timestamp::from_second(1_700_000_100).unwrap();
        evicted(
            &mut s,
            &[],
            "Evicted",
            "The node was low on resource: memory. ",
            t0,
        );
        assert_eq!(s.phase.as_deref(), Some("Failed"));
        assert_eq!(s.reason.as_deref(), Some("Evicted"));
        assert_eq!(
            s.message.as_deref(),
            Some("The node was low on resource: memory. ")
        );
        let target = |s: &PodStatus| {
            s.conditions
                .as_ref()
                .unwrap()
                .iter()
                .find(|c| c.type_ == "DisruptionTarget")
                .cloned()
                .unwrap()
        };
        let c = target(&s);
        assert_eq!(c.status, "True");
        assert_eq!(c.reason.as_deref(), Some("TerminationByKubelet"));
        // Again later: one condition, its transition time kept.
        let old = s.conditions.clone().unwrap();
        let t1 = Timestamp::from_second(1_700_000_200).unwrap();
        evicted(
            &mut s,
            &old,
            "Evicted",
            "The node was low on resource: memory. ",
            t1,
        );
        let n = s
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .filter(|c| c.type_ == "DisruptionTarget")
            .count();
        assert_eq!(n, 1);
        assert_eq!(target(&s).last_transition_time, Some(Time(t0)));
    }
}
