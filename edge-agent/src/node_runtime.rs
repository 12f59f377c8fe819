//! Starting the node's container runtime: the agent's own containerd (or an existing
//! one), the airgap images, the pause container's rootfs, and the pod manager on top.
//!
//! The runtime does not need the server: it starts from the local store, so an agent
//! that starts while the control plane is unreachable runs its pods all the same.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kedge_containerd::crilog::RotationPolicy;
use kedge_containerd::{Client, ContainerdConfig, Endpoint, Registries, Supervisor};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::budgets::{BudgetError, Budgets, EvictionLoop};
use crate::images::ImagePolicy;
use crate::node_status::LiveNodeStatus;
use crate::pods::containerd::{ContainerdRuntime, RuntimeConfig};
use crate::pods::events::Recorder;
use crate::pods::manager::{PodManager, PodSource};
use crate::pods::reporting::ReportStatuses;
use crate::pods::static_pods::StaticPods;
use crate::pods::streams::PodStreams;
use crate::pods::worker::PodContext;
use crate::report::ReportQueue;
use crate::store::Store;

/// How the runtime is set up (from the agent's flags and hardware profile).
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// An existing containerd's socket (`--container-runtime-endpoint`); `None` runs
    /// the agent's own.
    pub endpoint: Option<PathBuf>,
    /// The containerd binary the agent runs.
    pub containerd_binary: PathBuf,
    /// The pause binary; `None` looks next to the agent's executable.
    pub pause_binary: Option<PathBuf>,
    /// Where container logs go (`/var/log/pods`).
    pub pod_log_dir: PathBuf,
    /// Where sandboxes' network namespaces are pinned.
    pub netns_dir: PathBuf,
    pub cni_bin_dirs: Vec<PathBuf>,
    /// The pods' bridge.
    pub cni_bridge: String,
    /// K3s-style `registries.yaml`; a missing file means no mirrors and no auth.
    pub registries_file: PathBuf,
    pub cluster_dns: Option<IpAddr>,
    pub cluster_domain: String,
    pub log_rotation: RotationPolicy,
    /// The node's allocatable resources (for resourceFieldRef defaults).
    pub allocatable: BTreeMap<String, String>,
    /// The machine's memory in bytes.
    pub memory_capacity: i64,
    /// The node's address: the pods' hostIP.
    pub host_ip: Option<IpAddr>,
    /// Image GC thresholds, percent of the image filesystem used (the profile's).
    pub image_gc_high_percent: u8,
    pub image_gc_low_percent: u8,
    /// The cgroup budgets, set up already (`None`: `--disable-cgroups`): containerd and
    /// the pods go into them, and the eviction manager watches them.
    pub budgets: Option<Arc<Budgets>>,
}

/// The runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeStartError {
    #[error("containerd: {0}")]
    Containerd(#[from] kedge_containerd::Error),
    #[error("the pause container: {0}")]
    Pause(#[from] kedge_cni::CniError),
    #[error("cannot read the registries file {path}: {error}")]
    Registries { path: PathBuf, error: String },
    #[error("{0}")]
    Budgets(#[from] BudgetError),
}

/// The running runtime: stop it with [`NodeRuntime::shutdown`].
#[derive(Debug)]
pub struct NodeRuntime {
    pub runtime: Arc<ContainerdRuntime>,
    pub streams: PodStreams,
    /// The Node's pressure conditions and images, set by the runtime's loops.
    pub live: Arc<LiveNodeStatus>,
    endpoint: Endpoint,
    stop: watch::Sender<bool>,
    manager: tokio::task::JoinHandle<()>,
    housekeeping: tokio::task::JoinHandle<()>,
    /// The eviction manager and the task that places each new containerd.
    budget_tasks: Vec<tokio::task::JoinHandle<()>>,
    budgets: Option<Arc<Budgets>>,
    version: String,
}

/// containerd's state dir: `/run/kedge/containerd` for the default data dir, and one
/// per data dir otherwise, so that agents of different data dirs (tests) never share
/// a socket.
pub fn containerd_state_dir(data_dir: &Path) -> PathBuf {
    match data_dir_tag(data_dir) {
        None => PathBuf::from("/run/kedge/containerd"),
        Some(tag) => PathBuf::from(format!("/run/kedge/{tag}/containerd")),
    }
}

/// Eight hex digits of the SHA-256 of a data dir that is not the default
/// (`/var/lib/kedge`: `None`), to keep the host-wide names of agents with other data
/// dirs (state dirs, cgroups) apart.
pub fn data_dir_tag(data_dir: &Path) -> Option<String> {
    if data_dir == Path::new("/var/lib/kedge") {
        return None;
    }
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        data_dir.as_os_str().as_encoded_bytes(),
    );
    Some(
        digest.as_ref()[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    )
}

impl NodeRuntime {
    /// Starts containerd (or connects to the given one), imports the airgap images,
    /// and starts the pod manager.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        options: &RuntimeOptions,
        data_dir: &Path,
        node: &str,
        store: Store,
        reports: Arc<ReportQueue>,
        tokens: Arc<crate::tokens::ServiceAccountTokens>,
    ) -> Result<NodeRuntime, RuntimeStartError> {
        let agent_dir = data_dir.join("agent");
        let endpoint = match &options.endpoint {
            Some(socket) => {
                let mut client = kedge_containerd::ClientConfig::new(socket);
                client.fifo_dir = containerd_state_dir(data_dir).join("io");
                Endpoint::External(client)
            }
            None => {
                let mut config = ContainerdConfig::new(&agent_dir);
                config.binary = options.containerd_binary.clone();
                config.state_dir = containerd_state_dir(data_dir);
                if let Some(budgets) = &options.budgets {
                    // containerd starts inside its budget (and so after every restart).
                    let dir = config
                        .config_path()
                        .parent()
                        .unwrap_or(&agent_dir)
                        .to_path_buf();
                    config.binary =
                        budgets.containerd_launcher(&options.containerd_binary, &dir)?;
                }
                config.validate()?;
                Endpoint::Managed(Supervisor::start(config).await?)
            }
        };
        let mut budget_tasks = Vec::new();
        match (&options.budgets, &endpoint) {
            (Some(budgets), Endpoint::Managed(supervisor)) => budget_tasks.push(tokio::spawn(
                budgets.clone().follow_containerd(supervisor.state()),
            )),
            (Some(_), Endpoint::External(_)) => {
                info!("containerd is not the agent's own: it keeps its own cgroup and budget")
            }
            (None, _) => {}
        }
        let client = Client::connect(endpoint.client_config()).await?;
        // The filesystem images live on: the agent's own containerd root, or (for an
        // external containerd, whose root the agent does not know) the data dir's.
        let image_fs = match &endpoint {
            Endpoint::Managed(s) => s.config().root_dir(),
            Endpoint::External(_) => data_dir.to_path_buf(),
        };
        let version = client.version().await.unwrap_or_default();
        info!(containerd = %version, "container runtime ready");

        // Airgap images, as K3s imports them from <data-dir>/agent/images.
        let images = agent_dir.join("images");
        match client.import_dir(&images).await {
            Ok(report) => {
                for image in &report.imported {
                    info!(image = %image.name, "imported an airgap image");
                }
                for (file, e) in &report.failed {
                    warn!(file = %file.display(), error = %e, "cannot import an airgap image tarball; fix or remove it");
                }
            }
            Err(e) => warn!(dir = %images.display(), error = %e, "cannot read the airgap images"),
        }

        let pause = kedge_cni::locate_pause_binary(options.pause_binary.as_deref())?;
        let pause_rootfs = kedge_cni::prepare_pause_rootfs(data_dir, &pause)?;
        let registries = if options.registries_file.exists() {
            Registries::load(&options.registries_file).map_err(|e| {
                RuntimeStartError::Registries {
                    path: options.registries_file.clone(),
                    error: e.to_string(),
                }
            })?
        } else {
            Registries::default()
        };
        // CNI plugins run in the runtime's cgroup, as under containerd's CRI plugin.
        let cni_launcher = match &options.budgets {
            Some(budgets) => Some(budgets.plugin_launcher(&agent_dir.join("etc/cni"))?),
            None => None,
        };
        let config = RuntimeConfig {
            node_name: node.to_string(),
            data_dir: data_dir.to_path_buf(),
            agent_dir: agent_dir.clone(),
            pod_log_dir: options.pod_log_dir.clone(),
            netns_dir: options.netns_dir.clone(),
            pause_rootfs: pause_rootfs.rootfs.clone(),
            cni_bin_dirs: options.cni_bin_dirs.clone(),
            cni_bridge: options.cni_bridge.clone(),
            registries,
            log_rotation: options.log_rotation,
            cluster_dns: options.cluster_dns,
            cluster_domain: options.cluster_domain.clone(),
            host_ip: options.host_ip,
            allocatable: options.allocatable.clone(),
            memory_capacity: options.memory_capacity,
            cgroups: options
                .budgets
                .clone()
                .map(|b| b as Arc<dyn crate::pods::containerd::CgroupPlacement>),
            tokens,
            cni_launcher,
        };
        let runtime = ContainerdRuntime::new(client.clone(), config, store.clone());
        let streams = PodStreams::new(runtime.clone(), store.clone());
        let ctx = PodContext {
            runtime: runtime.clone(),
            events: Recorder::new(node, reports.clone()),
            statuses: Arc::new(ReportStatuses::new(reports, store.clone(), node)),
            host_ip: options.host_ip,
            clock: jiff::Timestamp::now,
        };
        let statics: Arc<dyn PodSource> =
            Arc::new(StaticPods::new(agent_dir.join("pod-manifests"), node));
        let mut manager = PodManager::new(ctx, store.clone(), vec![statics]);
        let (stop, mut stopped) = watch::channel(false);
        let live = Arc::new(LiveNodeStatus::default());
        if let Some(budgets) = &options.budgets {
            let eviction = EvictionLoop {
                budgets: budgets.clone(),
                runtime: runtime.clone(),
                store,
                live: live.clone(),
                evictor: manager.eviction_sender(),
                clock: jiff::Timestamp::now,
            };
            budget_tasks.push(crate::budgets::run_eviction_loop(eviction, stopped.clone()));
        }
        let housekeeping = tokio::spawn(crate::images::run(
            client,
            live.clone(),
            ImagePolicy {
                high_percent: options.image_gc_high_percent,
                low_percent: options.image_gc_low_percent,
                period: Duration::from_secs(60),
                image_fs,
            },
            stopped.clone(),
        ));
        let manager = tokio::spawn(manager.run(async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
        Ok(NodeRuntime {
            runtime,
            streams,
            live,
            housekeeping,
            budget_tasks,
            budgets: options.budgets.clone(),
            endpoint,
            stop,
            manager,
            version,
        })
    }

    /// `containerd://<version>`, as nodeInfo.containerRuntimeVersion shows it.
    pub fn version(&self) -> String {
        format!("containerd://{}", self.version.trim_start_matches('v'))
    }

    /// Stops the pod manager and the agent's own containerd. The pods keep running
    /// (their shims stay), and the next agent adopts them.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.manager.await;
        let _ = self.housekeeping.await;
        for task in self.budget_tasks {
            task.abort();
            let _ = task.await;
        }
        self.endpoint.shutdown().await;
        if let Some(budgets) = self.budgets {
            budgets.release().await;
        }
    }
}
