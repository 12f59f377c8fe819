//! A recording, in-memory [`PodRuntime`] for unit tests of the pod manager's logic.
//! Containers "run" until the test makes them exit. It is never evidence that pods run:
//! the end-to-end tests drive real containerd.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod};
use tokio::sync::broadcast;

use super::runtime::{
    ContainerState, ContainerStatus, ExecResult, PodObserved, PodRef, PodRuntime, RuntimeError,
    SandboxStatus, container_hash,
};

#[derive(Debug, Default)]
struct State {
    sandboxes: HashMap<String, (PodRef, SandboxStatus)>,
    containers: HashMap<String, (String, ContainerStatus)>,
    calls: Vec<String>,
    next: u64,
    /// Exit code the next exec returns.
    exec_exit: i32,
}

/// The fake runtime.
#[derive(Debug)]
pub struct FakeRuntime {
    state: Mutex<State>,
    exits: broadcast::Sender<String>,
    clock: fn() -> Timestamp,
}

impl FakeRuntime {
    pub fn new(clock: fn() -> Timestamp) -> FakeRuntime {
        FakeRuntime {
            state: Mutex::new(State::default()),
            exits: broadcast::channel(64).0,
            clock,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Every call made, in order ("run_sandbox p 0", "start app 1", …).
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// How many calls started with `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        self.lock()
            .calls
            .iter()
            .filter(|c| c.starts_with(prefix))
            .count()
    }

    /// Makes the newest running instance of `name` exit with `code`.
    pub fn exit(&self, name: &str, code: i32) {
        let now = (self.clock)();
        let mut st = self.lock();
        let mut found = None;
        for (uid, c) in st.containers.values_mut() {
            if c.name == name && c.state == ContainerState::Running {
                c.state = ContainerState::Exited;
                c.exit_code = code;
                c.finished_at = Some(now);
                found = Some(uid.clone());
            }
        }
        drop(st);
        if let Some(uid) = found {
            let _ = self.exits.send(uid);
        }
    }

    /// The statuses of every instance of `name`.
    pub fn instances(&self, name: &str) -> Vec<ContainerStatus> {
        let mut v: Vec<_> = self
            .lock()
            .containers
            .values()
            .filter(|(_, c)| c.name == name)
            .map(|(_, c)| c.clone())
            .collect();
        v.sort_by_key(|c| c.attempt);
        v
    }

    /// What exec calls return from now on.
    pub fn set_exec_exit(&self, code: i32) {
        self.lock().exec_exit = code;
    }

    /// A pod whose containers are already running, as an agent restart finds them.
    pub fn adopt(&self, pod: &Pod) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let now = (self.clock)();
        let mut st = self.lock();
        let sandbox = SandboxStatus {
            id: format!("sb-{uid}-0"),
            attempt: 0,
            ready: true,
            ip: Some([10, 42, 0, 2].into()),
            host_network: false,
            netns: None,
            created_at: now,
        };
        let r = PodRef {
            uid: uid.clone(),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
        };
        st.sandboxes.insert(sandbox.id.clone(), (r, sandbox));
        for c in &pod.spec.as_ref().unwrap().containers {
            let id = format!("{}-0", c.name);
            st.containers
                .insert(id.clone(), (uid.clone(), running(c, &id, 0, now)));
        }
    }
}

fn running(c: &Container, id: &str, attempt: u32, now: Timestamp) -> ContainerStatus {
    ContainerStatus {
        id: id.to_string(),
        name: c.name.clone(),
        attempt,
        state: ContainerState::Running,
        created_at: now,
        started_at: Some(now),
        finished_at: None,
        exit_code: 0,
        reason: String::new(),
        message: String::new(),
        image: c.image.clone().unwrap_or_default(),
        image_ref: "sha256:fake".into(),
        hash: container_hash(c),
    }
}

#[async_trait::async_trait]
impl PodRuntime for FakeRuntime {
    async fn observe(&self, pod_uid: &str) -> Result<PodObserved, RuntimeError> {
        let st = self.lock();
        Ok(PodObserved {
            sandboxes: st
                .sandboxes
                .values()
                .filter(|(r, _)| r.uid == pod_uid)
                .map(|(_, s)| s.clone())
                .collect(),
            containers: st
                .containers
                .values()
                .filter(|(u, _)| u == pod_uid)
                .map(|(_, c)| c.clone())
                .collect(),
        })
    }

    async fn pods(&self) -> Result<Vec<PodRef>, RuntimeError> {
        let st = self.lock();
        let mut v: Vec<PodRef> = st.sandboxes.values().map(|(r, _)| r.clone()).collect();
        v.dedup();
        Ok(v)
    }

    fn exits(&self) -> broadcast::Receiver<String> {
        self.exits.subscribe()
    }

    async fn run_sandbox(&self, pod: &Pod, attempt: u32) -> Result<SandboxStatus, RuntimeError> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let now = (self.clock)();
        let mut st = self.lock();
        st.calls.push(format!("run_sandbox {attempt}"));
        let sandbox = SandboxStatus {
            id: format!("sb-{uid}-{attempt}"),
            attempt,
            ready: true,
            ip: Some([10, 42, 0, 2].into()),
            host_network: false,
            netns: None,
            created_at: now,
        };
        let r = PodRef {
            uid,
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
        };
        st.sandboxes
            .insert(sandbox.id.clone(), (r, sandbox.clone()));
        Ok(sandbox)
    }

    async fn stop_sandbox(&self, _pod: &Pod, sandbox_id: &str) -> Result<(), RuntimeError> {
        let mut st = self.lock();
        st.calls.push(format!("stop_sandbox {sandbox_id}"));
        if let Some((_, s)) = st.sandboxes.get_mut(sandbox_id) {
            s.ready = false;
        }
        Ok(())
    }

    async fn remove_sandbox(&self, _uid: &str, sandbox_id: &str) -> Result<(), RuntimeError> {
        let mut st = self.lock();
        st.calls.push(format!("remove_sandbox {sandbox_id}"));
        st.sandboxes.remove(sandbox_id);
        Ok(())
    }

    async fn ensure_image(&self, _pod: &Pod, c: &Container) -> Result<String, RuntimeError> {
        let image = c.image.clone().unwrap_or_default();
        if image == "unreachable" {
            self.lock().calls.push(format!("pull {image}"));
            return Err(RuntimeError::Image {
                reason: "ErrImagePull",
                message: "failed to pull and unpack image \"unreachable\": no registry answers"
                    .into(),
            });
        }
        if image == "missing" {
            return Err(RuntimeError::Image {
                reason: "ErrImageNeverPull",
                message: "Container image \"missing\" is not present with pull policy of Never"
                    .into(),
            });
        }
        Ok(format!(
            "Container image \"{image}\" already present on machine"
        ))
    }

    async fn start_container(
        &self,
        pod: &Pod,
        _sandbox: &SandboxStatus,
        c: &Container,
        attempt: u32,
        _init: bool,
    ) -> Result<String, RuntimeError> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let now = (self.clock)();
        let mut st = self.lock();
        st.next += 1;
        let id = format!("{}-{attempt}", c.name);
        st.calls.push(format!("start {} {attempt}", c.name));
        st.containers
            .insert(id.clone(), (uid, running(c, &id, attempt, now)));
        Ok(id)
    }

    async fn stop_container(&self, id: &str, _grace: Duration) -> Result<(), RuntimeError> {
        let now = (self.clock)();
        let mut st = self.lock();
        st.calls.push(format!("stop {id}"));
        if let Some((_, c)) = st.containers.get_mut(id)
            && c.state != ContainerState::Exited
        {
            c.state = ContainerState::Exited;
            c.exit_code = 137;
            c.finished_at = Some(now);
        }
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        let mut st = self.lock();
        st.calls.push(format!("remove {id}"));
        st.containers.remove(id);
        Ok(())
    }

    async fn exec_sync(
        &self,
        id: &str,
        command: &[String],
        _timeout: Duration,
    ) -> Result<ExecResult, RuntimeError> {
        let mut st = self.lock();
        st.calls.push(format!("exec {id} {}", command.join(" ")));
        Ok(ExecResult {
            exit_code: st.exec_exit,
            output: b"probe output".to_vec(),
        })
    }

    async fn cleanup_pod(&self, pod_uid: &str) -> Result<(), RuntimeError> {
        self.lock().calls.push(format!("cleanup {pod_uid}"));
        Ok(())
    }
}
