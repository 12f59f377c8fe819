//! What the pod manager sees of the container runtime, and what it asks of it.
//!
//! The shape follows the CRI that the upstream kubelet speaks (sandboxes and
//! containers, each with an attempt number), so that the kubelet's decisions translate
//! one to one. [`PodRuntime`] is implemented over containerd, CNI and the pause
//! process by [`super::containerd::ContainerdRuntime`]; unit tests of the manager use a
//! recording double.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod};

/// A pod's sandbox: its pause container and network namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxStatus {
    pub id: String,
    /// How many sandboxes this pod had before this one.
    pub attempt: u32,
    /// The pause process runs and the network is set up.
    pub ready: bool,
    /// The pod's IP; `None` for host-network pods and sandboxes without a network.
    pub ip: Option<IpAddr>,
    pub host_network: bool,
    /// The network namespace, for port-forward and probes; `None` on the host network.
    pub netns: Option<PathBuf>,
    pub created_at: Timestamp,
}

/// The state of one container instance, as the runtime reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    Unknown,
}

/// One container instance (one attempt of one container of the pod spec).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerStatus {
    pub id: String,
    /// The container's name in the pod spec.
    pub name: String,
    /// The restart count this instance was started with (0 for the first).
    pub attempt: u32,
    pub state: ContainerState,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub exit_code: i32,
    /// `Completed`, `Error` or `OOMKilled` once exited.
    pub reason: String,
    /// The termination message, if the container wrote one.
    pub message: String,
    /// The image as the spec names it.
    pub image: String,
    /// The image's resolved reference (`docker.io/library/busybox@sha256:…`).
    pub image_ref: String,
    /// [`container_hash`] of the spec this instance was created from.
    pub hash: String,
}

impl ContainerStatus {
    /// `containerd://<id>`, as the API shows containerID.
    pub fn container_id(&self) -> String {
        format!("containerd://{}", self.id)
    }
}

/// Everything the runtime holds for one pod, newest first in each list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodObserved {
    pub sandboxes: Vec<SandboxStatus>,
    pub containers: Vec<ContainerStatus>,
}

impl PodObserved {
    /// The newest instance of the named container.
    pub fn latest(&self, name: &str) -> Option<&ContainerStatus> {
        self.containers.iter().find(|c| c.name == name)
    }

    /// The instance before the newest, for `lastState` and `logs --previous`.
    pub fn previous(&self, name: &str) -> Option<&ContainerStatus> {
        self.containers.iter().filter(|c| c.name == name).nth(1)
    }

    /// The newest sandbox.
    pub fn sandbox(&self) -> Option<&SandboxStatus> {
        self.sandboxes.first()
    }

    /// Sorts newest first: sandboxes by attempt, containers by attempt then creation.
    pub fn sort(&mut self) {
        self.sandboxes.sort_by(|a, b| {
            b.attempt
                .cmp(&a.attempt)
                .then(b.created_at.cmp(&a.created_at))
        });
        self.containers.sort_by(|a, b| {
            b.attempt
                .cmp(&a.attempt)
                .then(b.created_at.cmp(&a.created_at))
        });
    }
}

/// A pod as the runtime's labels name it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PodRef {
    pub uid: String,
    pub namespace: String,
    pub name: String,
}

/// A stable hash of a container's spec: a container whose spec changed is restarted
/// (the kubelet's "Container spec hash changed").
pub fn container_hash(container: &Container) -> String {
    let json = serde_json::to_vec(container).unwrap_or_default();
    let digest = ring::digest::digest(&ring::digest::SHA256, &json);
    digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Why the runtime could not do what was asked. The variants carry the reason the pod
/// status shows (upstream's waiting reasons) and a message for the event.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The image is not there and cannot be pulled (`ErrImagePull`, `ErrImageNeverPull`).
    #[error("{message}")]
    Image {
        reason: &'static str,
        message: String,
    },
    /// The container's configuration cannot be built (a missing ConfigMap key, say).
    #[error("{0}")]
    Config(String),
    /// A volume could not be set up (`FailedMount`).
    #[error("{0}")]
    Mount(String),
    /// The sandbox could not be created (`FailedCreatePodSandBox`).
    #[error("{0}")]
    Sandbox(String),
    /// The runtime refused to create the container (`CreateContainerError`).
    #[error("{0}")]
    Create(String),
    /// The container was created but did not start (`RunContainerError`).
    #[error("{0}")]
    Start(String),
    /// Anything else the runtime said.
    #[error("{0}")]
    Other(String),
}

impl RuntimeError {
    /// The waiting reason the container shows while this error stands.
    pub fn waiting_reason(&self) -> &'static str {
        match self {
            RuntimeError::Image { reason, .. } => reason,
            RuntimeError::Config(_) => "CreateContainerConfigError",
            RuntimeError::Mount(_) | RuntimeError::Sandbox(_) => "ContainerCreating",
            RuntimeError::Create(_) => "CreateContainerError",
            RuntimeError::Start(_) => "RunContainerError",
            RuntimeError::Other(_) => "CreateContainerError",
        }
    }
}

/// The result of running a command in a container to completion.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecResult {
    pub exit_code: i32,
    pub output: Vec<u8>,
}

/// What the pod manager asks of the runtime. Every call is idempotent where the
/// kubelet's CRI calls are: stopping a stopped container or removing a removed one is
/// not an error.
#[async_trait::async_trait]
pub trait PodRuntime: Send + Sync + std::fmt::Debug + 'static {
    /// Everything the runtime holds for the pod with this uid.
    async fn observe(&self, pod_uid: &str) -> Result<PodObserved, RuntimeError>;

    /// Every pod the runtime holds anything for.
    async fn pods(&self) -> Result<Vec<PodRef>, RuntimeError>;

    /// The uids of pods one of whose containers exited, as it happens.
    fn exits(&self) -> tokio::sync::broadcast::Receiver<String>;

    /// Creates and starts a sandbox (network namespace, network, pause process).
    async fn run_sandbox(&self, pod: &Pod, attempt: u32) -> Result<SandboxStatus, RuntimeError>;

    /// Stops a sandbox's pause process and tears down its network; idempotent.
    async fn stop_sandbox(&self, pod: &Pod, sandbox_id: &str) -> Result<(), RuntimeError>;

    /// Removes a stopped sandbox: its pause container and network namespace. The pod's
    /// other containers stay (their last states are still reported); idempotent.
    async fn remove_sandbox(&self, pod_uid: &str, sandbox_id: &str) -> Result<(), RuntimeError>;

    /// Makes sure the container's image is present, pulling it as its pull policy
    /// says. Returns the event message to report (`Successfully pulled …` or
    /// `Container image … already present on machine`).
    async fn ensure_image(&self, pod: &Pod, container: &Container) -> Result<String, RuntimeError>;

    /// Creates and starts one container in the sandbox. `init` marks an init
    /// container.
    async fn start_container(
        &self,
        pod: &Pod,
        sandbox: &SandboxStatus,
        container: &Container,
        attempt: u32,
        init: bool,
    ) -> Result<String, RuntimeError>;

    /// Sends SIGTERM (or the image's stop signal), waits up to `grace`, then SIGKILLs;
    /// returns when the container has exited. Idempotent.
    async fn stop_container(&self, container_id: &str, grace: Duration)
    -> Result<(), RuntimeError>;

    /// Removes an exited container and its logs; idempotent.
    async fn remove_container(&self, container_id: &str) -> Result<(), RuntimeError>;

    /// Runs a command in a running container and waits for it, at most `timeout`.
    async fn exec_sync(
        &self,
        container_id: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecResult, RuntimeError>;

    /// Removes what is left of a pod the manager no longer knows: volumes, its log
    /// directory, its cgroup. Idempotent.
    async fn cleanup_pod(&self, pod_uid: &str) -> Result<(), RuntimeError>;

    /// Re-applies a running pod's configMap, secret, downwardAPI and projected
    /// volumes (a changed ConfigMap or Secret, a renewed token), as the kubelet does
    /// on every sync. Returns the volumes whose files changed.
    async fn refresh_volumes(&self, _pod: &Pod) -> Result<Vec<String>, RuntimeError> {
        Ok(Vec::new())
    }
}
