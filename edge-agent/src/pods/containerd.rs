//! [`PodRuntime`] over containerd's native API, the CNI plugins and the pause process:
//! what containerd's CRI plugin does for the upstream kubelet, done in the agent.
//!
//! - A sandbox is a pinned network namespace (`kedge-cni`), attached to the pod network
//!   by the CNI plugins, and a pause container (`kedge-pause`, in a rootfs holding only
//!   itself) in that namespace, whose IPC, UTS and PID namespaces the pod's containers
//!   join. hostNetwork pods get no namespace and no CNI.
//! - A container is a containerd container and task (runc, through the v2 shim, one
//!   shim per pod), created from the OCI spec `kedge-podspec` builds, its stdout and
//!   stderr copied into a CRI-format log file under `<pod-log-dir>/<ns>_<name>_<uid>/
//!   <container>/<restart count>.log`, rotated by the profile's limits.
//! - Everything is labelled in containerd with the pod's uid, name and namespace, the
//!   container's name and attempt, so that the runtime itself is the record: an agent
//!   restarted (online or not) observes the same pods and adopts them, re-attaching the
//!   log copiers of running containers.
//! - Volumes, `/etc/hosts`, `/etc/resolv.conf` and termination-message files live in
//!   `<data-dir>/agent/pods/<uid>/`, as the kubelet's `/var/lib/kubelet/pods/<uid>/`.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};
use kedge_cni::{NetnsDir, PodNetwork, PortMapping};
use kedge_containerd::crilog::{CopierHandle, RotationPolicy, spawn_copier};
use kedge_containerd::{Client, ContainerInfo, PullPolicy, Registries, TaskIo, TaskState};
use kedge_podspec::{
    ContainerInput, EnvSources, HostMounter, NodeInfo, SandboxInput, SandboxRef, VolumeSources,
};
use kedge_proto::v1::ObjectKind;
use tokio::io::AsyncReadExt;
use tokio::sync::broadcast;
use tracing::{debug, info, warn};

use super::runtime::{
    ContainerState, ContainerStatus, ExecResult, PodObserved, PodRef, PodRuntime, RuntimeError,
    SandboxStatus, container_hash,
};
use crate::store::Store;

/// Labels on every containerd container of a pod (the CRI's names).
pub const POD_UID: &str = "io.kubernetes.pod.uid";
pub const POD_NAME: &str = "io.kubernetes.pod.name";
pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// `sandbox` or `container`.
pub const KIND: &str = "kedge.io/kind";
pub const ATTEMPT: &str = "kedge.io/attempt";
pub const SANDBOX_ID: &str = "kedge.io/sandbox-id";
pub const HASH: &str = "kedge.io/hash";
pub const IMAGE: &str = "kedge.io/image";
pub const IMAGE_REF: &str = "kedge.io/image-ref";
pub const NETNS: &str = "kedge.io/netns";
pub const POD_IP: &str = "kedge.io/ip";
pub const HOST_NETWORK: &str = "kedge.io/host-network";
pub const LOG_PATH: &str = "kedge.io/log-path";
pub const TERMINATION_LOG: &str = "kedge.io/termination-log";
pub const TERMINATION_POLICY: &str = "kedge.io/termination-message-policy";
pub const STOP_SIGNAL: &str = "kedge.io/stop-signal";

/// How the runtime is set up.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub node_name: String,
    /// The agent's `--data-dir`.
    pub data_dir: PathBuf,
    /// `<data-dir>/agent`.
    pub agent_dir: PathBuf,
    /// Where container logs go (`/var/log/pods`).
    pub pod_log_dir: PathBuf,
    /// Where sandboxes' network namespaces are pinned (`/run/kedge/netns`).
    pub netns_dir: PathBuf,
    /// The pause container's rootfs (holding `/pause`).
    pub pause_rootfs: PathBuf,
    /// CNI plugin directories.
    pub cni_bin_dirs: Vec<PathBuf>,
    /// The pods' bridge on the host (`cni0`).
    pub cni_bridge: String,
    pub registries: Registries,
    pub log_rotation: RotationPolicy,
    /// The cluster DNS server for `dnsPolicy: ClusterFirst`; without one, pods get the
    /// node's resolv.conf (the kubelet's fallback).
    pub cluster_dns: Option<IpAddr>,
    pub cluster_domain: String,
    /// The node's address (pods' hostIP).
    pub host_ip: Option<IpAddr>,
    /// The node's allocatable resources, for resourceFieldRef defaults.
    pub allocatable: BTreeMap<String, String>,
    /// The machine's memory, for OOM scores.
    pub memory_capacity: i64,
    /// Places pods and containers in cgroups; `None` leaves runc's defaults.
    pub cgroups: Option<Arc<dyn CgroupPlacement>>,
    /// ServiceAccount tokens for projected volumes.
    pub tokens: Arc<crate::tokens::ServiceAccountTokens>,
    /// Runs CNI plugins in the runtime's cgroup (see `Budgets::plugin_launcher`).
    pub cni_launcher: Option<PathBuf>,
}

/// Where pods' processes go in the cgroup tree (implemented over kedge-cgroups).
pub trait CgroupPlacement: Send + Sync + std::fmt::Debug {
    /// Creates or updates the pod's cgroup; returns the cgroupsPath of a container in
    /// it (`container_id` empty for the pod's own).
    fn pod_cgroup(&self, pod: &Pod) -> Result<String, String>;
    /// The cgroupsPath for a container of the pod.
    fn container_path(&self, pod: &Pod, container_id: &str) -> String;
    /// Removes the pod's cgroup once everything in it stopped.
    fn remove_pod(&self, pod_uid: &str);
    /// How many processes of the pod's cgroup the kernel OOM-killed so far.
    fn oom_kills(&self, pod_uid: &str) -> Option<u64>;
}

/// The OCI score to ask for: `preferred`, or as close as this process may go when it
/// cannot lower scores below its own (no CAP_SYS_RESOURCE, as in some sandboxes), as
/// containerd's `restrict_oom_score_adj` does.
fn oom_score(preferred: i32) -> i32 {
    static CURRENT: std::sync::OnceLock<Option<i32>> = std::sync::OnceLock::new();
    let current = *CURRENT.get_or_init(|| {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let caps = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0);
        const CAP_SYS_RESOURCE: u64 = 1 << 24;
        if caps & CAP_SYS_RESOURCE != 0 {
            return None;
        }
        std::fs::read_to_string("/proc/self/oom_score_adj")
            .ok()
            .and_then(|s| s.trim().parse().ok())
    });
    match current {
        Some(c) => kedge_podspec::restrict_oom_score_adj(preferred, c),
        None => preferred,
    }
}

/// The runtime.
#[derive(Debug)]
pub struct ContainerdRuntime {
    client: Client,
    config: RuntimeConfig,
    store: Store,
    netns: NetnsDir,
    network: Mutex<Option<(String, Arc<PodNetwork>)>>,
    exits: broadcast::Sender<String>,
    copiers: Mutex<HashMap<String, CopierHandle>>,
    owners: Arc<Mutex<HashMap<String, String>>>,
    /// The process spec each container was started with, for exec.
    processes: Mutex<HashMap<String, oci_spec::runtime::Process>>,
    /// OOM kill counts of pod cgroups when each container started.
    oom_baseline: Mutex<HashMap<String, u64>>,
}

fn err(e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Other(e.to_string())
}

fn random_id() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn meta(pod: &Pod) -> (String, String, String) {
    (
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
        pod.metadata.uid.clone().unwrap_or_default(),
    )
}

fn host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

fn label<'a>(c: &'a ContainerInfo, key: &str) -> &'a str {
    c.labels.get(key).map(String::as_str).unwrap_or_default()
}

impl ContainerdRuntime {
    /// A runtime on a connected client. Starts following containerd's exit events.
    pub fn new(client: Client, config: RuntimeConfig, store: Store) -> Arc<ContainerdRuntime> {
        let runtime = Arc::new(ContainerdRuntime {
            netns: NetnsDir::new(config.netns_dir.clone()),
            client,
            config,
            store,
            network: Mutex::new(None),
            exits: broadcast::channel(256).0,
            copiers: Mutex::new(HashMap::new()),
            owners: Arc::new(Mutex::new(HashMap::new())),
            processes: Mutex::new(HashMap::new()),
            oom_baseline: Mutex::new(HashMap::new()),
        });
        tokio::spawn(follow_exits(
            runtime.client.clone(),
            runtime.owners.clone(),
            runtime.exits.clone(),
        ));
        runtime
    }

    /// The client, for images and streams.
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// The pod's own directory (volumes, hosts, resolv.conf, termination logs).
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.config.agent_dir.join("pods").join(uid)
    }

    /// The pod's log directory, `<ns>_<name>_<uid>`.
    pub fn pod_log_dir(&self, namespace: &str, name: &str, uid: &str) -> PathBuf {
        self.config
            .pod_log_dir
            .join(format!("{namespace}_{name}_{uid}"))
    }

    /// The pod network for the node's podCIDR, made (and its conflist written) the
    /// first time, or again when the podCIDR changed.
    fn network(&self) -> Result<Arc<PodNetwork>, RuntimeError> {
        let cidr = self.pod_cidr().ok_or_else(|| {
            RuntimeError::Sandbox(
                "the node has no podCIDR yet: the server assigns one when the node registers"
                    .into(),
            )
        })?;
        let mut guard = self.network.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((c, n)) = guard.as_ref()
            && *c == cidr
        {
            return Ok(n.clone());
        }
        let mut config = kedge_cni::CniConfig::for_data_dir(&self.config.data_dir);
        config.bin_dirs = self.config.cni_bin_dirs.clone();
        config.netns_dir = self.config.netns_dir.clone();
        config.launcher = self.config.cni_launcher.clone();
        let mut options = kedge_cni::BridgeOptions::for_data_dir(&self.config.data_dir);
        options.bridge = self.config.cni_bridge.clone();
        let text = kedge_cni::conflist(&cidr, &options)
            .map_err(|e| RuntimeError::Sandbox(e.to_string()))?;
        kedge_cni::write_conflist(&config.conf_dir, &text)
            .map_err(|e| RuntimeError::Sandbox(e.to_string()))?;
        let network =
            Arc::new(PodNetwork::load(config).map_err(|e| RuntimeError::Sandbox(e.to_string()))?);
        info!(pod_cidr = %cidr, "pod network configured");
        *guard = Some((cidr, network.clone()));
        Ok(network)
    }

    /// The node's podCIDR: from its Node in the store, as the server assigned it.
    pub fn pod_cidr(&self) -> Option<String> {
        let node = self
            .store
            .get(ObjectKind::Node, "", &self.config.node_name)
            .ok()
            .flatten()?;
        let node: serde_json::Value = serde_json::from_slice(&node.object).ok()?;
        node.pointer("/spec/podCIDR")
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }

    fn node_info(&self) -> NodeInfo {
        NodeInfo {
            host_ips: self
                .config
                .host_ip
                .iter()
                .map(|ip| ip.to_string())
                .collect(),
            allocatable: self
                .config
                .allocatable
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        k8s_openapi::apimachinery::pkg::api::resource::Quantity(v.clone()),
                    )
                })
                .collect(),
            memory_capacity: self.config.memory_capacity,
        }
    }

    fn objects<T: serde::de::DeserializeOwned>(
        &self,
        kind: ObjectKind,
        namespace: &str,
    ) -> BTreeMap<String, T> {
        self.store
            .list(kind)
            .unwrap_or_default()
            .into_iter()
            .filter(|o| o.namespace == namespace)
            .filter_map(|o| Some((o.name.clone(), serde_json::from_slice(&o.object).ok()?)))
            .collect()
    }

    /// What the pod's volumes read: its namespace's ConfigMaps and Secrets from the
    /// store, the node, and the ServiceAccount tokens its projections need.
    async fn volume_inputs(&self, pod: &Pod) -> Result<VolumeInputs, RuntimeError> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let tokens = self
            .config
            .tokens
            .for_pod(pod, &kedge_podspec::token_projections(pod))
            .await
            .map_err(|e| RuntimeError::Mount(e.to_string()))?;
        Ok(VolumeInputs {
            config_maps: self.objects(ObjectKind::ConfigMap, &ns),
            secrets: self.objects(ObjectKind::Secret, &ns),
            node: self.node_info(),
            tokens,
        })
    }

    fn services(&self) -> Vec<Service> {
        self.store
            .list(ObjectKind::Service)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|o| serde_json::from_slice(&o.object).ok())
            .collect()
    }

    fn sandbox_of(&self, c: &ContainerInfo, state: Option<TaskState>) -> SandboxStatus {
        let host_network = label(c, HOST_NETWORK) == "true";
        let netns = Some(PathBuf::from(label(c, NETNS))).filter(|p| !p.as_os_str().is_empty());
        let running = matches!(state, Some(TaskState::Running { .. } | TaskState::Paused));
        let netns_ok = host_network || netns.as_deref().is_some_and(kedge_cni::is_netns);
        SandboxStatus {
            id: c.id.clone(),
            attempt: label(c, ATTEMPT).parse().unwrap_or(0),
            ready: running && netns_ok,
            ip: label(c, POD_IP).parse().ok(),
            host_network,
            netns,
            created_at: c.created_at.unwrap_or(Timestamp::UNIX_EPOCH),
        }
    }

    fn container_of(&self, c: &ContainerInfo, state: Option<TaskState>) -> ContainerStatus {
        let created = c.created_at.unwrap_or(Timestamp::UNIX_EPOCH);
        let mut status = ContainerStatus {
            id: c.id.clone(),
            name: label(c, CONTAINER_NAME).to_string(),
            attempt: label(c, ATTEMPT).parse().unwrap_or(0),
            state: ContainerState::Unknown,
            created_at: created,
            started_at: Some(created),
            finished_at: None,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            image: label(c, IMAGE).to_string(),
            image_ref: label(c, IMAGE_REF).to_string(),
            hash: label(c, HASH).to_string(),
        };
        match state {
            Some(TaskState::Running { .. }) | Some(TaskState::Paused) => {
                status.state = ContainerState::Running
            }
            Some(TaskState::Created) => status.state = ContainerState::Created,
            Some(TaskState::Stopped(exit)) => {
                status.state = ContainerState::Exited;
                status.exit_code = i32::try_from(exit.code).unwrap_or(255);
                status.finished_at = exit.exited_at.or(Some(created));
                status.reason = self.exit_reason(c, status.exit_code).to_string();
                status.message = self.termination_message(c, status.exit_code);
            }
            Some(TaskState::Unknown) => status.state = ContainerState::Unknown,
            None => {
                // No task: the machine rebooted, or containerd lost it. It ran and is gone.
                status.state = ContainerState::Exited;
                status.exit_code = 255;
                status.finished_at = Some(created);
                status.reason = "Unknown".into();
            }
        }
        status
    }

    fn exit_reason(&self, c: &ContainerInfo, code: i32) -> &'static str {
        if code == 137
            && let Some(cg) = &self.config.cgroups
        {
            let uid = label(c, POD_UID);
            let before = self
                .oom_baseline
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&c.id)
                .copied();
            if let (Some(before), Some(now)) = (before, cg.oom_kills(uid))
                && now > before
            {
                return "OOMKilled";
            }
        }
        if code == 0 { "Completed" } else { "Error" }
    }

    /// The termination message: the file the container wrote, or with
    /// `FallbackToLogsOnError` the tail of its log.
    fn termination_message(&self, c: &ContainerInfo, code: i32) -> String {
        const MAX: u64 = 4096;
        let path = label(c, TERMINATION_LOG);
        let mut message = String::new();
        if !path.is_empty()
            && let Ok(f) = std::fs::File::open(path)
        {
            let mut buf = Vec::new();
            use std::io::Read;
            let _ = f.take(MAX).read_to_end(&mut buf);
            message = String::from_utf8_lossy(&buf).to_string();
        }
        if message.is_empty()
            && code != 0
            && label(c, TERMINATION_POLICY) == "FallbackToLogsOnError"
        {
            message = tail_of_log(Path::new(label(c, LOG_PATH)), 80, 2048);
        }
        message
    }

    fn pod_labels(pod: &Pod, kind: &str) -> HashMap<String, String> {
        let (ns, name, uid) = meta(pod);
        HashMap::from([
            (POD_UID.to_string(), uid),
            (POD_NAME.to_string(), name),
            (POD_NAMESPACE.to_string(), ns),
            (KIND.to_string(), kind.to_string()),
        ])
    }

    /// The pod's `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname`, as the kubelet
    /// writes them.
    fn write_etc_files(
        &self,
        pod: &Pod,
        ip: Option<IpAddr>,
        hostname: &str,
    ) -> Result<(PathBuf, PathBuf, PathBuf), RuntimeError> {
        let (ns, _, uid) = meta(pod);
        let dir = self.pod_dir(&uid);
        std::fs::create_dir_all(&dir)
            .map_err(|e| RuntimeError::Sandbox(format!("{}: {e}", dir.display())))?;
        let spec = pod.spec.clone().unwrap_or_default();
        let hosts = if host_network(pod) {
            std::fs::read_to_string("/etc/hosts").unwrap_or_default()
        } else {
            let mut h = String::from(
                "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
            );
            if let Some(ip) = ip {
                let fqdn = spec
                    .subdomain
                    .as_ref()
                    .map(|sub| {
                        format!("{hostname}.{sub}.{ns}.svc.{}\t", self.config.cluster_domain)
                    })
                    .unwrap_or_default();
                h.push_str(&format!("{ip}\t{fqdn}{hostname}\n"));
            }
            for alias in spec.host_aliases.iter().flatten() {
                h.push_str(&format!(
                    "\n# Entries added by HostAliases.\n{}\t{}\n",
                    alias.ip,
                    alias.hostnames.clone().unwrap_or_default().join("\t")
                ));
            }
            h
        };
        let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
        let cluster_first = match policy {
            "ClusterFirstWithHostNet" => true,
            "ClusterFirst" => !host_network(pod),
            _ => false,
        };
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let mut resolv = match (policy, cluster_first, self.config.cluster_dns) {
            ("None", _, _) => String::new(),
            (_, true, Some(dns)) => {
                let d = &self.config.cluster_domain;
                format!("search {ns}.svc.{d} svc.{d} {d}\nnameserver {dns}\noptions ndots:5\n")
            }
            _ => host_resolv,
        };
        if let Some(cfg) = &spec.dns_config {
            for ns in cfg.nameservers.iter().flatten() {
                resolv.push_str(&format!("nameserver {ns}\n"));
            }
            if let Some(search) = &cfg.searches {
                resolv.push_str(&format!("search {}\n", search.join(" ")));
            }
            for o in cfg.options.iter().flatten() {
                match &o.value {
                    Some(v) => resolv.push_str(&format!(
                        "options {}:{v}\n",
                        o.name.clone().unwrap_or_default()
                    )),
                    None => resolv
                        .push_str(&format!("options {}\n", o.name.clone().unwrap_or_default())),
                }
            }
        }
        let write = |name: &str, text: &str| -> Result<PathBuf, RuntimeError> {
            let path = dir.join(name);
            let tmp = dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, text)
                .and_then(|_| std::fs::rename(&tmp, &path))
                .map_err(|e| RuntimeError::Sandbox(format!("{}: {e}", path.display())))?;
            Ok(path)
        };
        Ok((
            write("etc-hosts", &hosts)?,
            write("resolv.conf", &resolv)?,
            write("hostname", &format!("{hostname}\n"))?,
        ))
    }

    async fn sandbox_pid(&self, sandbox_id: &str) -> Result<u32, RuntimeError> {
        match self.client.task_status(sandbox_id).await.map_err(err)? {
            Some(TaskState::Running { pid }) => Ok(pid),
            _ => Err(RuntimeError::Start(format!(
                "the pod's sandbox {sandbox_id} is not running"
            ))),
        }
    }

    /// Starts copying a running container's output into its log, unless a copier runs.
    fn ensure_copier(&self, id: &str, log: &Path, streams: kedge_containerd::TaskStreams) {
        let mut copiers = self.copiers.lock().unwrap_or_else(|e| e.into_inner());
        if copiers.contains_key(id) {
            return;
        }
        if let Some(dir) = log.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        match spawn_copier(
            log,
            self.config.log_rotation,
            streams.stdout,
            streams.stderr,
        ) {
            Ok(h) => {
                copiers.insert(id.to_string(), h);
            }
            Err(e) => {
                warn!(container = %id, error = %e, "cannot copy the container's output to its log")
            }
        }
    }

    /// Re-attaches log copiers to running containers that have none (after an agent
    /// restart).
    async fn reattach(&self, running: &[(String, PathBuf)]) {
        for (id, log) in running {
            let has = self
                .copiers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(id);
            if has || log.as_os_str().is_empty() {
                continue;
            }
            match self.client.attach(id).await {
                Ok(streams) => {
                    debug!(container = %id, "re-attached to the container's output");
                    self.ensure_copier(id, log, streams);
                }
                Err(e) => {
                    debug!(container = %id, error = %e, "cannot re-attach to the container's output")
                }
            }
        }
    }

    async fn finish_copier(&self, id: &str) {
        let handle = self
            .copiers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        if let Some(h) = handle {
            let _ = tokio::time::timeout(Duration::from_secs(2), h.wait()).await;
        }
    }

    /// The process spec of a container, for exec: as it was started, else a default.
    fn exec_process(&self, container_id: &str, command: &[String]) -> oci_spec::runtime::Process {
        let base = self
            .processes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(container_id)
            .cloned();
        let mut p = base.unwrap_or_else(|| {
            let mut p = oci_spec::runtime::Process::default();
            p.set_env(Some(vec![
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            ]));
            p.set_cwd("/".into());
            p
        });
        p.set_args(Some(command.to_vec()));
        p.set_terminal(Some(false));
        p
    }

    /// Runs a process in a container with the given stdio; the caller drives the
    /// session (exec for `kubectl exec`, probes and hooks).
    pub async fn exec_session(
        &self,
        container_id: &str,
        command: &[String],
        io: TaskIo,
    ) -> Result<kedge_containerd::ExecSession, RuntimeError> {
        let mut process = self.exec_process(container_id, command);
        process.set_terminal(Some(io.terminal));
        let exec_id = format!("exec-{}", &random_id()[..12]);
        self.client
            .exec(container_id, &exec_id, &process, io)
            .await
            .map_err(|e| RuntimeError::Other(e.to_string()))
    }

    /// The log file of a container instance.
    pub fn container_log(&self, namespace: &str, pod: &str, uid: &str, container: &str) -> PathBuf {
        self.pod_log_dir(namespace, pod, uid).join(container)
    }
}

/// Follows containerd's exit events and tells the workers which pod they concern.
async fn follow_exits(
    client: Client,
    owners: Arc<Mutex<HashMap<String, String>>>,
    exits: broadcast::Sender<String>,
) {
    loop {
        match client.exit_events().await {
            Ok(mut stream) => {
                while let Some(ev) = stream.next().await {
                    let Ok(ev) = ev else { break };
                    let owner = owners
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get(&ev.container_id)
                        .cloned();
                    if let Some(uid) = owner {
                        let _ = exits.send(uid);
                    }
                }
            }
            Err(e) => debug!(error = %e, "cannot follow containerd's exit events; trying again"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The last `lines` lines of a CRI log, content only, at most `max` bytes.
fn tail_of_log(path: &Path, lines: usize, max: usize) -> String {
    let Ok(text) = std::fs::read(path) else {
        return String::new();
    };
    let mut out: Vec<Vec<u8>> = text
        .split(|b| *b == b'\n')
        .filter_map(|l| kedge_containerd::crilog::parse_line(l).ok())
        .map(|l| l.content)
        .collect();
    let start = out.len().saturating_sub(lines);
    out.drain(..start);
    let mut joined = out.join(&b'\n');
    if joined.len() > max {
        joined.drain(..joined.len() - max);
    }
    String::from_utf8_lossy(&joined).to_string()
}

/// One runc shim serves the whole pod (the sandbox and its containers), which saves a
/// shim's memory per container on small devices.
fn with_shim_group(mut spec: oci_spec::runtime::Spec, sandbox_id: &str) -> oci_spec::runtime::Spec {
    let mut annotations = spec.annotations().clone().unwrap_or_default();
    annotations.insert(
        kedge_containerd::SHIM_GROUP_ANNOTATION.to_string(),
        sandbox_id.to_string(),
    );
    spec.set_annotations(Some(annotations));
    spec
}

fn pull_policy(container: &Container) -> PullPolicy {
    match container.image_pull_policy.as_deref() {
        Some("Never") => PullPolicy::Never,
        Some("IfNotPresent") => PullPolicy::IfNotPresent,
        Some("Always") => PullPolicy::Always,
        _ => {
            let image = container.image.as_deref().unwrap_or_default();
            let last = image.rsplit('/').next().unwrap_or(image);
            if !last.contains('@') && (!last.contains(':') || last.ends_with(":latest")) {
                PullPolicy::Always
            } else {
                PullPolicy::IfNotPresent
            }
        }
    }
}

fn port_mappings(pod: &Pod) -> Vec<PortMapping> {
    let mut out = Vec::new();
    for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
        for p in c.ports.iter().flatten() {
            let Some(host) = p
                .host_port
                .and_then(|h| u16::try_from(h).ok())
                .filter(|h| *h > 0)
            else {
                continue;
            };
            let Ok(container) = u16::try_from(p.container_port) else {
                continue;
            };
            let mut m = PortMapping::tcp(host, container);
            if p.protocol.as_deref() == Some("UDP") {
                m.protocol = kedge_cni::Protocol::Udp;
            }
            if let Some(ip) = p.host_ip.as_deref().and_then(|ip| ip.parse().ok()) {
                m.host_ip = Some(ip);
            }
            out.push(m);
        }
    }
    out
}

#[async_trait::async_trait]
impl PodRuntime for ContainerdRuntime {
    async fn observe(&self, pod_uid: &str) -> Result<PodObserved, RuntimeError> {
        let filter = HashMap::from([(POD_UID.to_string(), pod_uid.to_string())]);
        let containers = self.client.list_containers(&filter).await.map_err(err)?;
        let mut observed = PodObserved::default();
        let mut running = Vec::new();
        for c in containers {
            let state = self.client.task_status(&c.id).await.map_err(err)?;
            self.owners
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(c.id.clone(), pod_uid.to_string());
            if label(&c, KIND) == "sandbox" {
                observed.sandboxes.push(self.sandbox_of(&c, state));
            } else {
                let status = self.container_of(&c, state);
                if status.state == ContainerState::Running {
                    running.push((c.id.clone(), PathBuf::from(label(&c, LOG_PATH))));
                }
                observed.containers.push(status);
            }
        }
        self.reattach(&running).await;
        observed.sort();
        Ok(observed)
    }

    async fn pods(&self) -> Result<Vec<PodRef>, RuntimeError> {
        let all = self
            .client
            .list_containers(&HashMap::new())
            .await
            .map_err(err)?;
        let mut seen = HashMap::new();
        for c in all {
            let uid = label(&c, POD_UID);
            if uid.is_empty() {
                continue;
            }
            seen.entry(uid.to_string()).or_insert_with(|| PodRef {
                uid: uid.to_string(),
                namespace: label(&c, POD_NAMESPACE).to_string(),
                name: label(&c, POD_NAME).to_string(),
            });
        }
        Ok(seen.into_values().collect())
    }

    fn exits(&self) -> broadcast::Receiver<String> {
        self.exits.subscribe()
    }

    async fn run_sandbox(&self, pod: &Pod, attempt: u32) -> Result<SandboxStatus, RuntimeError> {
        let (ns, name, uid) = meta(pod);
        let id = random_id();
        let hostnet = host_network(pod);
        let (netns, ip) = if hostnet {
            (None, self.config.host_ip)
        } else {
            let network = self.network()?;
            let netns = self
                .netns
                .create(&id)
                .map_err(|e| RuntimeError::Sandbox(e.to_string()))?;
            let path = netns.path().to_path_buf();
            let podref = kedge_cni::PodRef::new(&ns, &name, &uid);
            match network
                .setup(&id, &path, &podref, &port_mappings(pod))
                .await
            {
                Ok(a) => (Some(path), Some(a.ip)),
                Err(e) => {
                    let _ = self.netns.remove(&id);
                    return Err(RuntimeError::Sandbox(format!(
                        "failed to setup network for sandbox {id}: {e}"
                    )));
                }
            }
        };
        let hostname = kedge_podspec::pod_hostname(pod, &self.config.node_name);
        let cleanup_net = || async {
            if let (Some(path), Ok(network)) = (&netns, self.network()) {
                let podref = kedge_cni::PodRef::new(&ns, &name, &uid);
                let _ = network.teardown(&id, Some(path), &podref).await;
                let _ = self.netns.remove(&id);
            }
        };
        let cgroups_path = match &self.config.cgroups {
            Some(cg) => match cg.pod_cgroup(pod) {
                Ok(_) => cg.container_path(pod, &id),
                Err(e) => {
                    cleanup_net().await;
                    return Err(RuntimeError::Sandbox(format!(
                        "cannot make the pod's cgroup: {e}"
                    )));
                }
            },
            None => String::new(),
        };
        let spec = kedge_podspec::sandbox_spec(&SandboxInput {
            pod,
            rootfs: &self.config.pause_rootfs,
            args: kedge_podspec::PAUSE_ARGS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            netns: netns.as_deref(),
            hostname: &hostname,
            cgroups_path: &cgroups_path,
            shm: None,
            oom_score_adj: oom_score(kedge_podspec::SANDBOX_OOM_SCORE_ADJ),
        });
        let spec = match spec {
            Ok(s) => with_shim_group(s, &id),
            Err(e) => {
                cleanup_net().await;
                return Err(RuntimeError::Sandbox(e.to_string()));
            }
        };
        let mut labels = Self::pod_labels(pod, "sandbox");
        labels.insert(ATTEMPT.into(), attempt.to_string());
        labels.insert(HOST_NETWORK.into(), hostnet.to_string());
        if let Some(p) = &netns {
            labels.insert(NETNS.into(), p.display().to_string());
        }
        if let Some(ip) = ip {
            labels.insert(POD_IP.into(), ip.to_string());
        }
        self.owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), uid.clone());
        if let Err(e) = self
            .client
            .create_container_with_rootfs(&id, &spec, labels)
            .await
        {
            cleanup_net().await;
            return Err(RuntimeError::Sandbox(format!(
                "failed to create the pause container: {e}"
            )));
        }
        if let Err(e) = self.client.start(&id, TaskIo::default()).await {
            let _ = self.client.delete(&id).await;
            cleanup_net().await;
            return Err(RuntimeError::Sandbox(format!(
                "failed to start the pause container: {e}"
            )));
        }
        info!(pod = %format!("{ns}/{name}"), sandbox = %id, ip = ?ip, "sandbox started");
        Ok(SandboxStatus {
            id,
            attempt,
            ready: true,
            ip,
            host_network: hostnet,
            netns,
            created_at: Timestamp::now(),
        })
    }

    async fn stop_sandbox(&self, pod: &Pod, sandbox_id: &str) -> Result<(), RuntimeError> {
        let (ns, name, uid) = meta(pod);
        let filter = HashMap::from([(POD_UID.to_string(), uid.clone())]);
        let info = self
            .client
            .list_containers(&filter)
            .await
            .map_err(err)?
            .into_iter()
            .find(|c| c.id == sandbox_id);
        if matches!(
            self.client.task_status(sandbox_id).await.map_err(err)?,
            Some(TaskState::Running { .. } | TaskState::Paused | TaskState::Created)
        ) {
            let _ = self
                .client
                .kill(sandbox_id, nix::sys::signal::Signal::SIGKILL, true)
                .await;
            let _ =
                tokio::time::timeout(Duration::from_secs(10), self.client.wait(sandbox_id)).await;
        }
        if let Some(info) = info {
            let netns = PathBuf::from(label(&info, NETNS));
            if !netns.as_os_str().is_empty() {
                if let Ok(network) = self.network() {
                    let podref = kedge_cni::PodRef::new(&ns, &name, &uid);
                    let present = kedge_cni::is_netns(&netns);
                    // A second stop (remove_sandbox stops first) finds the namespace
                    // unpinned and the attachment forgotten: DEL ran already.
                    let attached = present || network.has_cached_attachment(sandbox_id);
                    if attached
                        && let Err(e) = network
                            .teardown(sandbox_id, present.then_some(netns.as_path()), &podref)
                            .await
                    {
                        warn!(sandbox = %sandbox_id, error = %e, "cannot tear down the pod's network");
                    }
                }
                let _ = self.netns.remove(sandbox_id);
            }
        }
        Ok(())
    }

    async fn remove_sandbox(&self, pod_uid: &str, sandbox_id: &str) -> Result<(), RuntimeError> {
        let pod = Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                uid: Some(pod_uid.to_string()),
                ..Default::default()
            },
            ..Default::default()
        };
        // Names for CNI_ARGS come from the sandbox's labels.
        let filter = HashMap::from([(POD_UID.to_string(), pod_uid.to_string())]);
        let info = self
            .client
            .list_containers(&filter)
            .await
            .map_err(err)?
            .into_iter()
            .find(|c| c.id == sandbox_id);
        if let Some(info) = &info {
            let mut p = pod.clone();
            p.metadata.namespace = Some(label(info, POD_NAMESPACE).to_string());
            p.metadata.name = Some(label(info, POD_NAME).to_string());
            self.stop_sandbox(&p, sandbox_id).await?;
        }
        self.client.delete(sandbox_id).await.map_err(err)?;
        self.owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(sandbox_id);
        Ok(())
    }

    async fn ensure_image(
        &self,
        _pod: &Pod,
        container: &Container,
    ) -> Result<String, RuntimeError> {
        let image = container.image.clone().unwrap_or_default();
        let policy = pull_policy(container);
        let present = self.client.image(&image).await.map_err(err)?;
        if present.is_some() && policy != PullPolicy::Always {
            return Ok(format!(
                "Container image \"{image}\" already present on machine"
            ));
        }
        if policy == PullPolicy::Never {
            return Err(RuntimeError::Image {
                reason: "ErrImageNeverPull",
                message: format!(
                    "Container image \"{image}\" is not present with pull policy of Never"
                ),
            });
        }
        let started = std::time::Instant::now();
        match self.client.pull(&image, &self.config.registries).await {
            Ok(_) => {
                let size = self
                    .client
                    .image(&image)
                    .await
                    .ok()
                    .flatten()
                    .map(|i| i.size)
                    .unwrap_or(0);
                let took = started.elapsed().as_secs_f64();
                Ok(format!(
                    "Successfully pulled image \"{image}\" in {took:.3}s ({took:.3}s including waiting). Image size: {size} bytes."
                ))
            }
            Err(e) => Err(RuntimeError::Image {
                reason: "ErrImagePull",
                message: format!("failed to pull and unpack image \"{image}\": {e}"),
            }),
        }
    }

    async fn start_container(
        &self,
        pod: &Pod,
        sandbox: &SandboxStatus,
        container: &Container,
        attempt: u32,
        init: bool,
    ) -> Result<String, RuntimeError> {
        let _ = init;
        let (ns, name, uid) = meta(pod);
        let image_name = container.image.clone().unwrap_or_default();
        let image = self
            .client
            .image(&image_name)
            .await
            .map_err(err)?
            .ok_or_else(|| RuntimeError::Image {
                reason: "ErrImagePull",
                message: format!("image \"{image_name}\" is not present"),
            })?;
        let inputs = self.volume_inputs(pod).await?;
        let services = self.services();
        let pod_dir = self.pod_dir(&uid);
        let volumes =
            kedge_podspec::prepare_volumes(&pod_dir, pod, &inputs.sources(), &HostMounter)
                .map_err(|e| RuntimeError::Mount(e.event_message()))?;
        let pod_ips: Vec<String> = sandbox.ip.iter().map(|ip| ip.to_string()).collect();
        let env = kedge_podspec::resolve_env(
            pod,
            container,
            &EnvSources {
                config_maps: &inputs.config_maps,
                secrets: &inputs.secrets,
                services: &services,
                node: &inputs.node,
                pod_ips: &pod_ips,
            },
        )
        .map_err(|e| RuntimeError::Config(e.to_string()))?;
        let mounts = kedge_podspec::volume_mounts(container, &volumes, &env.vars)
            .map_err(|e| RuntimeError::Config(e.to_string()))?;
        let hostname = kedge_podspec::pod_hostname(pod, &self.config.node_name);
        let (hosts, resolv, hostname_file) = self.write_etc_files(pod, sandbox.ip, &hostname)?;
        let pause_pid = self.sandbox_pid(&sandbox.id).await?;
        let mut sandbox_ref =
            SandboxRef::of_pause_pid(&sandbox.id, pause_pid, sandbox.netns.clone(), &hostname);
        sandbox_ref.hosts_file = Some(hosts);
        sandbox_ref.resolv_conf = Some(resolv);
        sandbox_ref.hostname_file = Some(hostname_file);
        let termination_log = kedge_podspec::prepare_termination_log(&pod_dir, &container.name)
            .map_err(|e| RuntimeError::Mount(e.event_message()))?;
        let image_config = kedge_podspec::ImageConfig {
            entrypoint: image.config.entrypoint.clone(),
            cmd: image.config.cmd.clone(),
            env: image.config.env.clone(),
            working_dir: Some(image.config.working_dir.clone()).filter(|w| !w.is_empty()),
            user: Some(image.config.user.clone()).filter(|u| !u.is_empty()),
            passwd: None,
            group: None,
        };
        let id = random_id();
        let cgroups_path = self
            .config
            .cgroups
            .as_ref()
            .map(|cg| cg.container_path(pod, &id))
            .unwrap_or_default();
        let oom = kedge_podspec::oom_score_adj(pod, container, self.config.memory_capacity)
            .map_err(|e| RuntimeError::Config(e.to_string()))?;
        let privileged = container
            .security_context
            .as_ref()
            .and_then(|s| s.privileged)
            .unwrap_or(false);
        let devices = if privileged {
            kedge_podspec::host_devices(Path::new("/dev")).unwrap_or_default()
        } else {
            Vec::new()
        };
        let rootfs = PathBuf::from("rootfs");
        let spec = kedge_podspec::container_spec(&ContainerInput {
            pod,
            container,
            image: &image_config,
            rootfs: &rootfs,
            sandbox: &sandbox_ref,
            env: &env.vars,
            mounts: &mounts,
            cgroups_path: &cgroups_path,
            oom_score_adj: oom_score(oom),
            termination_log: Some(&termination_log),
            host_devices: &devices,
            pids_limit: None,
            cgroup_namespace: false,
        })
        .map_err(|e| RuntimeError::Config(e.to_string()))?;
        let spec = with_shim_group(spec, &sandbox.id);
        let log_dir = self.container_log(&ns, &name, &uid, &container.name);
        let log = kedge_containerd::crilog::instance_log_path(&log_dir, attempt);
        let mut labels = Self::pod_labels(pod, "container");
        labels.insert(CONTAINER_NAME.into(), container.name.clone());
        labels.insert(ATTEMPT.into(), attempt.to_string());
        labels.insert(SANDBOX_ID.into(), sandbox.id.clone());
        labels.insert(HASH.into(), container_hash(container));
        labels.insert(IMAGE.into(), image.reference.name.clone());
        labels.insert(
            IMAGE_REF.into(),
            format!(
                "{}@{}",
                image
                    .reference
                    .name
                    .rsplit_once(':')
                    .filter(|(repo, _)| !repo.contains('@') && !repo.ends_with('/'))
                    .map(|(repo, _)| repo)
                    .unwrap_or(&image.reference.name),
                image.reference.digest
            ),
        );
        labels.insert(LOG_PATH.into(), log.display().to_string());
        labels.insert(
            TERMINATION_LOG.into(),
            termination_log.display().to_string(),
        );
        labels.insert(
            TERMINATION_POLICY.into(),
            container
                .termination_message_policy
                .clone()
                .unwrap_or_else(|| "File".into()),
        );
        if let Some(sig) = &image.config.stop_signal {
            labels.insert(STOP_SIGNAL.into(), sig.clone());
        }
        self.owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), uid.clone());
        self.client
            .create_container(&id, &image.reference, &spec, labels)
            .await
            .map_err(|e| RuntimeError::Create(e.to_string()))?;
        if let Some(cg) = &self.config.cgroups
            && let Some(n) = cg.oom_kills(&uid)
        {
            self.oom_baseline
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id.clone(), n);
        }
        let io = TaskIo {
            stdin: container.stdin.unwrap_or(false),
            terminal: container.tty.unwrap_or(false),
        };
        match self.client.start(&id, io).await {
            Ok((_pid, streams)) => {
                if let Some(p) = spec.process() {
                    self.processes
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(id.clone(), p.clone());
                }
                self.ensure_copier(&id, &log, streams);
                Ok(id)
            }
            Err(e) => {
                // A container that cannot start is removed; the next sync tries again.
                let _ = self.client.delete(&id).await;
                Err(RuntimeError::Start(e.to_string()))
            }
        }
    }

    async fn stop_container(
        &self,
        container_id: &str,
        grace: Duration,
    ) -> Result<(), RuntimeError> {
        let running = matches!(
            self.client.task_status(container_id).await.map_err(err)?,
            Some(TaskState::Running { .. } | TaskState::Paused | TaskState::Created)
        );
        if running {
            let waiter = {
                let c = self.client.clone();
                let id = container_id.to_string();
                tokio::spawn(async move { c.wait(&id).await })
            };
            tokio::task::yield_now().await;
            let signal = nix::sys::signal::Signal::SIGTERM;
            if !grace.is_zero() {
                let _ = self.client.kill(container_id, signal, false).await;
            }
            let waiter = match tokio::time::timeout(grace, waiter).await {
                Ok(_) => None,
                Err(_) => Some(()),
            };
            if waiter.is_some() || grace.is_zero() {
                let _ = self
                    .client
                    .kill(container_id, nix::sys::signal::Signal::SIGKILL, true)
                    .await;
                let c = self.client.clone();
                let id = container_id.to_string();
                let _ =
                    tokio::time::timeout(Duration::from_secs(10), async move { c.wait(&id).await })
                        .await;
            }
        }
        self.finish_copier(container_id).await;
        Ok(())
    }

    async fn remove_container(&self, container_id: &str) -> Result<(), RuntimeError> {
        self.finish_copier(container_id).await;
        let info = self
            .client
            .list_containers(&HashMap::new())
            .await
            .map_err(err)?
            .into_iter()
            .find(|c| c.id == container_id);
        self.client.delete(container_id).await.map_err(err)?;
        if let Some(info) = info {
            for key in [LOG_PATH, TERMINATION_LOG] {
                let p = label(&info, key);
                if !p.is_empty() {
                    let _ = std::fs::remove_file(p);
                }
            }
        }
        self.owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(container_id);
        self.processes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(container_id);
        Ok(())
    }

    async fn exec_sync(
        &self,
        container_id: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecResult, RuntimeError> {
        let mut session = self
            .exec_session(container_id, command, TaskIo::default())
            .await?;
        let mut stdout = session.stdout.take();
        let mut stderr = session.stderr.take();
        let run = async {
            let mut out = Vec::new();
            let mut err_out = Vec::new();
            let read_out = async {
                if let Some(s) = stdout.as_mut() {
                    let _ = s.take(64 * 1024).read_to_end(&mut out).await;
                }
            };
            let read_err = async {
                if let Some(s) = stderr.as_mut() {
                    let _ = s.take(64 * 1024).read_to_end(&mut err_out).await;
                }
            };
            tokio::join!(read_out, read_err);
            out.extend_from_slice(&err_out);
            out
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(output) => {
                let exit = session.wait().await.map_err(err)?;
                Ok(ExecResult {
                    exit_code: i32::try_from(exit.code).unwrap_or(255),
                    output,
                })
            }
            Err(_) => {
                let _ = session.kill(nix::sys::signal::Signal::SIGKILL).await;
                Err(RuntimeError::Other(format!(
                    "command timed out after {}s",
                    timeout.as_secs()
                )))
            }
        }
    }

    async fn cleanup_pod(&self, pod_uid: &str) -> Result<(), RuntimeError> {
        let dir = self.pod_dir(pod_uid);
        if dir.exists() {
            kedge_podspec::cleanup_volumes(&dir, &HostMounter)
                .map_err(|e| RuntimeError::Other(e.to_string()))?;
            let _ = std::fs::remove_dir_all(&dir);
        }
        if let Ok(entries) = std::fs::read_dir(&self.config.pod_log_dir) {
            for e in entries.flatten() {
                if e.file_name()
                    .to_string_lossy()
                    .ends_with(&format!("_{pod_uid}"))
                {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        if let Some(cg) = &self.config.cgroups {
            cg.remove_pod(pod_uid);
        }
        self.config.tokens.forget(pod_uid);
        Ok(())
    }

    async fn refresh_volumes(&self, pod: &Pod) -> Result<Vec<String>, RuntimeError> {
        let refreshable = pod
            .spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .any(|v| {
                v.config_map.is_some()
                    || v.secret.is_some()
                    || v.downward_api.is_some()
                    || v.projected.is_some()
            });
        let dir = self.pod_dir(pod.metadata.uid.as_deref().unwrap_or_default());
        if !refreshable || !dir.exists() {
            return Ok(Vec::new());
        }
        let inputs = self.volume_inputs(pod).await?;
        let update = kedge_podspec::update_volumes(&dir, pod, &inputs.sources(), &HostMounter);
        match update.errors.into_iter().next() {
            Some(e) => Err(RuntimeError::Mount(e.event_message())),
            None => Ok(update.changed),
        }
    }
}

/// What a pod's volumes (and environment) read; see [`ContainerdRuntime::volume_inputs`].
struct VolumeInputs {
    config_maps: BTreeMap<String, ConfigMap>,
    secrets: BTreeMap<String, Secret>,
    node: NodeInfo,
    tokens: BTreeMap<kedge_podspec::TokenProjection, String>,
}

impl VolumeInputs {
    fn sources(&self) -> VolumeSources<'_> {
        VolumeSources {
            config_maps: &self.config_maps,
            secrets: &self.secrets,
            node: &self.node,
            service_account_tokens: &self.tokens,
        }
    }
}
