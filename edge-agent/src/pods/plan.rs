//! What to do next for one pod: a pure function of its spec and what the runtime
//! holds, as the upstream kubelet's `computePodActions` decides it.
//!
//! - No ready sandbox (none yet, its pause process died, it lost its IP): kill
//!   everything and start over in a new sandbox, beginning with the first init
//!   container — unless the pod has run and must not restart (restartPolicy `Never`),
//!   or every container it would start already succeeded (`OnFailure`).
//! - Init containers run one at a time, in order; a failed one is run again unless the
//!   policy is `Never`, which fails the pod.
//! - Regular containers that are not running are started when their restart policy
//!   says so; running ones are killed (and restarted) when their spec changed or a
//!   liveness or startup probe failed.
//! - A pod with nothing left running and nothing to start loses its sandbox.
//!
//! Back-off (CrashLoopBackOff) is applied when the actions are carried out, not here.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{Container, Pod};

use super::runtime::{ContainerState, ContainerStatus, PodObserved, container_hash};

/// What probes said about running containers, by container id.
#[derive(Clone, Debug, Default)]
pub struct ProbeVerdicts {
    pub liveness_failed: HashSet<String>,
    pub startup_failed: HashSet<String>,
}

/// A container to stop, and why (the `Killing` event's message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kill {
    pub container_id: String,
    pub name: String,
    pub message: String,
}

/// The actions for one sync of one pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodActions {
    /// Stop every container and the sandbox.
    pub kill_pod: bool,
    /// Start a new sandbox with this attempt number.
    pub create_sandbox: Option<u32>,
    /// The init container (index into `initContainers`) to run next.
    pub next_init_container: Option<usize>,
    /// Regular containers (indexes into `containers`) to start.
    pub containers_to_start: Vec<usize>,
    /// Containers to stop.
    pub containers_to_kill: Vec<Kill>,
}

fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

/// Whether the pod's containers are restarted after a failure.
pub fn restarts_on_failure(pod: &Pod) -> bool {
    restart_policy(pod) != "Never"
}

fn host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

fn containers(pod: &Pod) -> &[Container] {
    pod.spec.as_ref().map(|s| &s.containers[..]).unwrap_or(&[])
}

fn init_containers(pod: &Pod) -> &[Container] {
    pod.spec
        .as_ref()
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or(&[])
}

fn succeeded(status: Option<&ContainerStatus>) -> bool {
    status.is_some_and(|s| s.state == ContainerState::Exited && s.exit_code == 0)
}

/// Whether a container that is not running should be started (again).
pub fn should_restart(pod: &Pod, status: Option<&ContainerStatus>) -> bool {
    if pod.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let Some(status) = status else {
        return true;
    };
    match status.state {
        ContainerState::Running => false,
        ContainerState::Unknown | ContainerState::Created => true,
        ContainerState::Exited => match restart_policy(pod) {
            "Never" => false,
            "OnFailure" => status.exit_code != 0,
            _ => true,
        },
    }
}

fn init_failed(status: &ContainerStatus) -> bool {
    match status.state {
        ContainerState::Exited => status.exit_code != 0,
        ContainerState::Unknown => true,
        _ => false,
    }
}

/// The kubelet's `findNextInitContainerToRun`: the last status (when it failed), the
/// next init container to run, and whether initialisation is done.
fn next_init_container<'a>(
    pod: &Pod,
    observed: &'a PodObserved,
) -> (Option<&'a ContainerStatus>, Option<usize>, bool) {
    let inits = init_containers(pod);
    if inits.is_empty() {
        return (None, None, true);
    }
    // A regular container running means initialisation finished at some point.
    if containers(pod).iter().any(|c| {
        observed
            .latest(&c.name)
            .is_some_and(|s| s.state == ContainerState::Running)
    }) {
        return (None, None, true);
    }
    for (i, c) in inits.iter().enumerate().rev() {
        if let Some(s) = observed.latest(&c.name)
            && init_failed(s)
        {
            return (Some(s), Some(i), false);
        }
    }
    for (i, c) in inits.iter().enumerate().rev() {
        let Some(s) = observed.latest(&c.name) else {
            continue;
        };
        match s.state {
            ContainerState::Running | ContainerState::Created => return (None, None, false),
            ContainerState::Exited if i == inits.len() - 1 => return (None, None, true),
            ContainerState::Exited => return (None, Some(i + 1), false),
            ContainerState::Unknown => {}
        }
    }
    (None, Some(0), false)
}

/// Whether the pod needs a new sandbox, and the attempt number it would get.
fn sandbox_changed(pod: &Pod, observed: &PodObserved) -> (bool, u32) {
    let Some(latest) = observed.sandbox() else {
        return (true, 0);
    };
    let ready = observed.sandboxes.iter().filter(|s| s.ready).count();
    let next = latest.attempt + 1;
    if ready > 1 || !latest.ready {
        return (true, next);
    }
    if latest.host_network != host_network(pod) {
        return (true, next);
    }
    if !latest.host_network && latest.ip.is_none() {
        return (true, next);
    }
    (false, latest.attempt)
}

/// Decides the next actions for a pod that is not being deleted.
pub fn compute(pod: &Pod, observed: &PodObserved, probes: &ProbeVerdicts) -> PodActions {
    let mut actions = PodActions::default();
    let (create, attempt) = sandbox_changed(pod, observed);
    if create {
        actions.kill_pod = observed.sandbox().is_some()
            || observed
                .containers
                .iter()
                .any(|c| c.state == ContainerState::Running);
        let has_run = !observed.containers.is_empty();
        if !restarts_on_failure(pod) && attempt != 0 && has_run {
            // The pod ran, and must not run again.
            return actions;
        }
        let to_start: Vec<usize> = containers(pod)
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                !(restart_policy(pod) == "OnFailure" && succeeded(observed.latest(&c.name)))
            })
            .map(|(i, _)| i)
            .collect();
        if to_start.is_empty() {
            // Everything succeeded; nothing to start a sandbox for.
            return actions;
        }
        actions.create_sandbox = Some(attempt);
        if !init_containers(pod).is_empty() {
            actions.next_init_container = Some(0);
        } else {
            actions.containers_to_start = to_start;
        }
        return actions;
    }

    let (last, next, done) = next_init_container(pod, observed);
    if !done {
        if let Some(next) = next {
            if last.is_some() && !restarts_on_failure(pod) {
                actions.kill_pod = true;
            } else {
                if let Some(last) = last.filter(|s| s.state == ContainerState::Unknown) {
                    actions.containers_to_kill.push(Kill {
                        container_id: last.id.clone(),
                        name: last.name.clone(),
                        message:
                            "Init container is in unknown state, try killing it before restart"
                                .into(),
                    });
                }
                actions.next_init_container = Some(next);
            }
        }
        return actions;
    }

    let mut keep = 0;
    for (i, container) in containers(pod).iter().enumerate() {
        let status = observed.latest(&container.name);
        let running = status.filter(|s| s.state == ContainerState::Running);
        let Some(running) = running else {
            if should_restart(pod, status) {
                actions.containers_to_start.push(i);
                if let Some(s) = status.filter(|s| s.state == ContainerState::Unknown) {
                    actions.containers_to_kill.push(Kill {
                        container_id: s.id.clone(),
                        name: s.name.clone(),
                        message: "Container is in unknown state, try killing it before restart"
                            .into(),
                    });
                }
            }
            continue;
        };
        let mut restart = restarts_on_failure(pod);
        let message = if running.hash != container_hash(container) {
            restart = true;
            format!(
                "Container {} definition changed, will be restarted",
                container.name
            )
        } else if probes.liveness_failed.contains(&running.id) {
            format!("Container {} failed liveness probe", container.name)
        } else if probes.startup_failed.contains(&running.id) {
            format!("Container {} failed startup probe", container.name)
        } else {
            keep += 1;
            continue;
        };
        let message = if restart {
            actions.containers_to_start.push(i);
            format!("{message}, will be restarted")
        } else {
            message
        };
        actions.containers_to_kill.push(Kill {
            container_id: running.id.clone(),
            name: container.name.clone(),
            message,
        });
    }
    if keep == 0 && actions.containers_to_start.is_empty() {
        actions.kill_pod = true;
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::super::runtime::SandboxStatus;
    use super::*;
    use jiff::Timestamp;

    fn pod(restart: &str, inits: &[&str], apps: &[&str]) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {
                "restartPolicy": restart,
                "initContainers": inits.iter().map(|n| serde_json::json!({"name": n, "image": "busybox"})).collect::<Vec<_>>(),
                "containers": apps.iter().map(|n| serde_json::json!({"name": n, "image": "busybox"})).collect::<Vec<_>>(),
            }
        }))
        .unwrap()
    }

    fn sandbox(attempt: u32, ready: bool) -> SandboxStatus {
        SandboxStatus {
            id: format!("sb{attempt}"),
            attempt,
            ready,
            ip: Some([10, 42, 0, 5].into()),
            host_network: false,
            netns: None,
            created_at: Timestamp::UNIX_EPOCH,
        }
    }

    fn container(pod: &Pod, name: &str, state: ContainerState, exit: i32) -> ContainerStatus {
        let spec = pod
            .spec
            .as_ref()
            .unwrap()
            .containers
            .iter()
            .chain(pod.spec.as_ref().unwrap().init_containers.iter().flatten())
            .find(|c| c.name == name)
            .unwrap();
        ContainerStatus {
            id: format!("{name}-id"),
            name: name.into(),
            attempt: 0,
            state,
            created_at: Timestamp::UNIX_EPOCH,
            started_at: None,
            finished_at: None,
            exit_code: exit,
            reason: String::new(),
            message: String::new(),
            image: "busybox".into(),
            image_ref: String::new(),
            hash: container_hash(spec),
        }
    }

    fn observed(sandboxes: Vec<SandboxStatus>, containers: Vec<ContainerStatus>) -> PodObserved {
        PodObserved {
            sandboxes,
            containers,
        }
    }

    #[test]
    fn a_new_pod_gets_a_sandbox_and_its_first_init_container() {
        let p = pod("Always", &["init"], &["app"]);
        let a = compute(&p, &PodObserved::default(), &ProbeVerdicts::default());
        assert_eq!(a.create_sandbox, Some(0));
        assert_eq!(a.next_init_container, Some(0));
        assert!(a.containers_to_start.is_empty());
        assert!(!a.kill_pod);
        let p = pod("Always", &[], &["a", "b"]);
        let a = compute(&p, &PodObserved::default(), &ProbeVerdicts::default());
        assert_eq!(a.containers_to_start, vec![0, 1]);
    }

    #[test]
    fn init_containers_run_in_order_then_the_app() {
        let p = pod("Always", &["i1", "i2"], &["app"]);
        let o = observed(
            vec![sandbox(0, true)],
            vec![container(&p, "i1", ContainerState::Exited, 0)],
        );
        let a = compute(&p, &o, &ProbeVerdicts::default());
        assert_eq!(a.next_init_container, Some(1));
        let o = observed(
            vec![sandbox(0, true)],
            vec![
                container(&p, "i2", ContainerState::Running, 0),
                container(&p, "i1", ContainerState::Exited, 0),
            ],
        );
        let a = compute(&p, &o, &ProbeVerdicts::default());
        assert_eq!(
            a,
            PodActions::default(),
            "wait for the running init container"
        );
        let o = observed(
            vec![sandbox(0, true)],
            vec![
                container(&p, "i2", ContainerState::Exited, 0),
                container(&p, "i1", ContainerState::Exited, 0),
            ],
        );
        let a = compute(&p, &o, &ProbeVerdicts::default());
        assert_eq!(a.containers_to_start, vec![0]);
    }

    #[test]
    fn a_failed_init_container_runs_again_or_fails_the_pod() {
        let p = pod("Always", &["i1"], &["app"]);
        let o = observed(
            vec![sandbox(0, true)],
            vec![container(&p, "i1", ContainerState::Exited, 1)],
        );
        assert_eq!(
            compute(&p, &o, &ProbeVerdicts::default()).next_init_container,
            Some(0)
        );
        let p = pod("Never", &["i1"], &["app"]);
        let o = observed(
            vec![sandbox(0, true)],
            vec![container(&p, "i1", ContainerState::Exited, 1)],
        );
        let a = compute(&p, &o, &ProbeVerdicts::default());
        assert!(a.kill_pod);
        assert_eq!(a.next_init_container, None);
    }

    #[test]
    fn restart_policies_decide_about_exited_containers() {
        for (policy, exit, restart) in [
            ("Always", 0, true),
            ("Always", 1, true),
            ("OnFailure", 0, false),
            ("OnFailure", 1, true),
            ("Never", 1, false),
        ] {
            let p = pod(policy, &[], &["app", "side"]);
            let o = observed(
                vec![sandbox(0, true)],
                vec![
                    container(&p, "app", ContainerState::Exited, exit),
                    container(&p, "side", ContainerState::Running, 0),
                ],
            );
            let a = compute(&p, &o, &ProbeVerdicts::default());
            assert_eq!(
                a.containers_to_start == vec![0],
                restart,
                "{policy} exit {exit}: {a:?}"
            );
            assert!(!a.kill_pod, "the running container keeps the pod");
        }
    }

    #[test]
    fn a_pod_that_finished_loses_its_sandbox_and_is_not_started_again() {
        let p = pod("Never", &[], &["app"]);
        let o = observed(
            vec![sandbox(0, true)],
            vec![container(&p, "app", ContainerState::Exited, 0)],
        );
        let a = compute(&p, &o, &ProbeVerdicts::default());
        assert!(a.kill_pod);
        assert!(a.containers_to_start.is_empty());
        // Once the sandbox is gone, no new one is made.
        let o = observed(
            vec![sandbox(0, false)],
            vec![container(&p, "app", ContainerState::Exited, 0)],
        );
        let a = compute(&p, &o, &ProbeVerdicts::default());
        assert_eq!(a.create_sandbox, None);
        let p = pod("OnFailure", &[], &["app"]);
        let o = observed(
            vec![sandbox(0, false)],
            vec![container(&p, "app", ContainerState::Exited, 0)],
        );
        assert_eq!(
            compute(&p, &o, &ProbeVerdicts::default()).create_sandbox,
            None
        );
    }

    #[test]
    fn a_dead_sandbox_is_replaced_and_everything_restarts() {
        let p = pod("Always", &[], &["app"]);
        let o = observed(
            vec![sandbox(2, false)],
            vec![container(&p, "app", ContainerState::Running, 0)],
        );
        let a = compute(&p, &o, &ProbeVerdicts::default());
        assert!(a.kill_pod);
        assert_eq!(a.create_sandbox, Some(3));
        assert_eq!(a.containers_to_start, vec![0]);
    }

    #[test]
    fn failed_liveness_or_a_changed_spec_kills_and_restarts() {
        let p = pod("Always", &[], &["app"]);
        let running = container(&p, "app", ContainerState::Running, 0);
        let o = observed(vec![sandbox(0, true)], vec![running.clone()]);
        assert_eq!(
            compute(&p, &o, &ProbeVerdicts::default()),
            PodActions::default()
        );
        let mut probes = ProbeVerdicts::default();
        probes.liveness_failed.insert(running.id.clone());
        let a = compute(&p, &o, &probes);
        assert_eq!(a.containers_to_start, vec![0]);
        assert_eq!(a.containers_to_kill[0].container_id, running.id);
        assert!(
            a.containers_to_kill[0]
                .message
                .contains("failed liveness probe")
        );
        let mut changed = running;
        changed.hash = "other".into();
        let o = observed(vec![sandbox(0, true)], vec![changed]);
        let a = compute(&p, &o, &ProbeVerdicts::default());
        assert!(
            a.containers_to_kill[0]
                .message
                .contains("definition changed")
        );
        assert_eq!(a.containers_to_start, vec![0]);
    }
}
