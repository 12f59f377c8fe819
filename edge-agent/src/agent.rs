//! The agent's main loop: join, dial, and keep the node's link alive.
//!
//! [`run`] joins (or reuses stored credentials) and starts the tunnel client. On every
//! connection it (re)registers the Node, follows `Node.Sync` into the local store, sends
//! the report queue, and renews the node certificate when due. The server renews the
//! node's Lease while the tunnel is up, so the agent sends no renewals unless
//! `lease_interval` asks it to.
//! When the connection drops, all of that stops and starts again on the next one; the
//! store keeps the desired state and the last acked revision, so the next `Sync` resumes
//! from it. A renewed certificate is put to use by dialing again with it.
//!
//! Before any of that, it starts the node's container runtime and pod manager
//! ([`crate::node_runtime`]), which run from the local store whether or not the server
//! can be reached. An agent started without a runtime (`--disable-runtime`) registers
//! its Node with the taint `node.kedge.io/no-runtime:NoSchedule`, so nothing is
//! scheduled onto it that would never run.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kedge_proto::v1::node_client::NodeClient;
use kedge_tunnel::{ClientOptions, TunnelClient};
use serde_json::json;
use tonic::transport::Channel;
use tracing::{Instrument, info, warn};

use crate::bootstrap::{self, AgentPaths, BootstrapOptions, NodeCredentials, RenewalPolicy};
use crate::report::{ReportConfig, ReportQueue};
use crate::store::Store;

/// The taint that keeps pods off a node whose agent cannot run them yet.
pub const NO_RUNTIME_TAINT: &str = "node.kedge.io/no-runtime";

/// Everything the agent needs to run.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub bootstrap: BootstrapOptions,
    /// Extra node labels (`--node-label`).
    pub labels: BTreeMap<String, String>,
    /// How often the agent renews the node's Lease itself over the link (its duration is
    /// four times this); zero leaves it to the server, which renews it from the tunnel's
    /// liveness.
    pub lease_interval: Duration,
    /// How often the full node status is sent even when unchanged.
    pub status_interval: Duration,
    /// Report batching.
    pub report: ReportConfig,
    /// When the node certificate is renewed.
    pub renewal: RenewalPolicy,
    /// The container runtime; `None` runs no pods (the node is tainted).
    pub runtime: Option<crate::node_runtime::RuntimeOptions>,
    /// The node's capacity and allocatable resources (from the hardware profile).
    pub resources: NodeResources,
}

/// What the node offers, as its status shows it.
#[derive(Debug, Clone, Default)]
pub struct NodeResources {
    pub capacity: BTreeMap<String, String>,
    pub allocatable: BTreeMap<String, String>,
}

/// The agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Bootstrap(#[from] bootstrap::BootstrapError),
    #[error("cannot open the local store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("cannot start the tunnel: {0}")]
    Tunnel(#[from] kedge_tunnel::TunnelError),
    #[error("cannot resolve the server {server}; check --server")]
    Resolve { server: String },
    #[error(
        "cannot start the container runtime: {0} (to run the agent without containers, pass --disable-runtime)"
    )]
    Runtime(#[from] crate::node_runtime::RuntimeStartError),
}

/// Where the desired-state store lives.
pub fn store_path(data_dir: &std::path::Path) -> PathBuf {
    AgentPaths::new(data_dir).dir.join("desired-state.db")
}

/// Why a session on one connection ended.
enum SessionEnd {
    /// The connection (or one of its calls) failed; take the next connection.
    Disconnected,
    /// A new node certificate is stored; dial again with it.
    Renewed(NodeCredentials),
}

/// Runs the agent until `shutdown` resolves.
pub async fn run(
    options: AgentOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), AgentError> {
    let mut creds = bootstrap::bootstrap(&options.bootstrap, SystemTime::now()).await?;
    let server = bootstrap::ServerAddress::parse(&options.bootstrap.server)?;
    let store = Store::open(store_path(&options.bootstrap.data_dir))?;
    info!(
        acked = store.acked().unwrap_or(0),
        "local store opened; the sync resumes from its last acked revision"
    );
    let reports = Arc::new(ReportQueue::new(options.report.clone()));
    let tokens = crate::tokens::ServiceAccountTokens::new(store.clone());
    // The runtime first: pods run from the store whether or not the server answers.
    let runtime = match &options.runtime {
        Some(rt) => {
            let mut rt = rt.clone();
            if rt.host_ip.is_none() {
                rt.host_ip = server_addr(&server).await.and_then(internal_ip);
            }
            Some(
                crate::node_runtime::NodeRuntime::start(
                    &rt,
                    &options.bootstrap.data_dir,
                    &options.bootstrap.node_name,
                    store.clone(),
                    reports.clone(),
                    tokens.clone(),
                )
                .await?,
            )
        }
        None => None,
    };
    let facts = NodeFacts {
        runtime_version: runtime.as_ref().map(|r| r.version()),
        resources: options.resources.clone(),
        live: runtime.as_ref().map(|r| r.live.clone()).unwrap_or_default(),
    };
    let pod_streams = runtime.as_ref().map(|r| r.streams.clone());
    // A server that cannot be resolved now (a device started offline) is looked up
    // again until it can: the pods run meanwhile.
    let addr = loop {
        if let Some(addr) = server_addr(&server).await {
            break addr;
        }
        if runtime.is_none() {
            return Err(AgentError::Resolve {
                server: server.to_string(),
            });
        }
        warn!(server = %server, "cannot resolve the server yet; trying again in 10s");
        tokio::time::sleep(Duration::from_secs(10)).await;
    };
    tokio::pin!(shutdown);
    'dial: loop {
        let tunnel = Arc::new(TunnelClient::start(ClientOptions {
            quic_addr: addr,
            tcp_addr: addr,
            config: options.bootstrap.tunnel.clone(),
            tls: creds.client_tls(&server.host)?,
        })?);
        // The server's reverse streams, on whichever connection is up.
        let streams = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(crate::streams::AgentStreamsService::server(
                    options.bootstrap.node_name.clone(),
                    pod_streams.clone(),
                ))
                .serve_with_incoming(kedge_proto::transport::agent_incoming(tunnel.clone())),
        );
        let _streams = AbortOnDrop(streams);
        loop {
            let connection = tokio::select! {
                _ = &mut shutdown => break 'dial,
                c = tunnel.connected() => c?,
            };
            // The tunnel client may still hand out the connection that just ended until
            // it notices; wait for a live one rather than spin on a dead one.
            if connection.close_reason().is_some() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let span = tracing::info_span!(
                "link",
                node = %options.bootstrap.node_name,
                transport = %connection.transport()
            );
            let channel = kedge_proto::transport::channel(connection.clone());
            // Pods may ask for ServiceAccount tokens while this connection is up.
            let _tokens_connected = tokens.connected(channel.clone());
            let session = session(&options, &creds, channel, &store, &reports, addr, &facts);
            let end = tokio::select! {
                _ = &mut shutdown => break 'dial,
                end = session.instrument(span) => end,
                // This connection, not the client's state: the two are updated apart, and
                // the state may still say "connecting" when the connection is handed out.
                _ = connection.closed() => SessionEnd::Disconnected,
            };
            match end {
                SessionEnd::Renewed(new) => {
                    creds = new;
                    info!("the node certificate was renewed; dialing again with it");
                    tunnel.shutdown();
                    continue 'dial;
                }
                SessionEnd::Disconnected => {
                    // The connection ended, or a call on it did (the server may end a
                    // sync stream that fell behind): start over, on this connection if it
                    // still lives, after a pause so that a failing call does not spin.
                    tokio::select! {
                        _ = connection.closed() => {}
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }
    if let Some(runtime) = runtime {
        runtime.shutdown().await;
    }
    info!("agent stopped");
    Ok(())
}

async fn server_addr(server: &bootstrap::ServerAddress) -> Option<SocketAddr> {
    tokio::net::lookup_host((server.host.as_str(), server.port))
        .await
        .ok()
        .and_then(|mut a| a.next())
}

/// Aborts a task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Everything that runs while one connection is up.
async fn session(
    options: &AgentOptions,
    creds: &NodeCredentials,
    channel: Channel,
    store: &Store,
    reports: &Arc<ReportQueue>,
    server: SocketAddr,
    facts: &NodeFacts,
) -> SessionEnd {
    let node = &options.bootstrap.node_name;
    let client = NodeClient::new(channel);
    let address = internal_ip(server);
    reports.node(node_object(node, &options.labels, address, facts));
    let own_lease = !options.lease_interval.is_zero();
    if own_lease {
        reports.lease(lease_duration(options.lease_interval));
    }
    info!("connected; registering the node and resuming the sync");

    let sync = {
        let client = client.clone();
        let store = store.clone();
        async move {
            match crate::sync::run_sync(client, store).await {
                Ok(()) => warn!("the sync stream ended; reconnecting"),
                Err(e) => warn!(error = %e, "the sync stream failed; reconnecting"),
            }
        }
    };
    let send_reports = {
        let mut client = client.clone();
        let reports = reports.clone();
        async move {
            if let Err(e) = reports.run(&mut client).await {
                warn!(error = %e, "reports cannot be sent; reconnecting");
            }
        }
    };
    let heartbeat = {
        let reports = reports.clone();
        async move {
            // A period nobody waits for when the server renews the Lease.
            let mut lease = tokio::time::interval(if own_lease {
                options.lease_interval
            } else {
                Duration::from_secs(3600)
            });
            let mut status = tokio::time::interval(options.status_interval);
            lease.tick().await;
            status.tick().await;
            loop {
                tokio::select! {
                    _ = lease.tick(), if own_lease => reports.lease(lease_duration(options.lease_interval)),
                    _ = status.tick() => reports.node(node_object(node, &options.labels, address, facts)),
                    _ = facts.live.changed() => reports.node(node_object(node, &options.labels, address, facts)),
                }
            }
        }
    };
    let renewal = async {
        let paths = AgentPaths::new(&options.bootstrap.data_dir);
        let mut client = client.clone();
        loop {
            let now = SystemTime::now();
            // The server backdates certificates (for devices whose clocks lag), so their
            // notBefore says little about when they were issued; the time the agent stored
            // the file does. Judge the lifetime from the later of the two.
            let issued = std::fs::metadata(paths.cert())
                .and_then(|m| m.modified())
                .map(|stored| stored.max(creds.not_before))
                .unwrap_or(creds.not_before);
            let due = options.renewal.due_at(issued, creds.not_after);
            if let Ok(wait) = due.duration_since(now) {
                // Look again at least hourly: the wall clock of a device may jump.
                tokio::time::sleep(wait.min(Duration::from_secs(3600))).await;
                continue;
            }
            match bootstrap::renew(&mut client, &paths, node, creds).await {
                Ok(new) => return new,
                Err(e) => {
                    warn!(error = %e, "cannot renew the node certificate; trying again in a minute");
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
            }
        }
    };
    tokio::select! {
        _ = sync => SessionEnd::Disconnected,
        _ = send_reports => SessionEnd::Disconnected,
        _ = heartbeat => SessionEnd::Disconnected,
        new = renewal => SessionEnd::Renewed(new),
    }
}

/// The Lease duration for a renew interval: four times it, as the kubelet's 40 s for 10 s.
fn lease_duration(interval: Duration) -> i32 {
    (interval.as_secs().max(1) * 4).min(i32::MAX as u64) as i32
}

/// The architecture as Kubernetes names it.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    }
}

fn kernel_version() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| "Linux".to_string())
}

/// The address this machine reaches the server from: the source address the kernel
/// picks for a datagram to it (nothing is sent). That is the node's InternalIP.
pub fn internal_ip(server: SocketAddr) -> Option<std::net::IpAddr> {
    let any: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = std::net::UdpSocket::bind(any).ok()?;
    socket.connect(server).ok()?;
    Some(socket.local_addr().ok()?.ip())
}

/// What the agent knows of its node beyond its name and address.
#[derive(Debug, Clone, Default)]
pub struct NodeFacts {
    /// `containerd://<version>`; `None` when the agent runs no containers (then the
    /// node is tainted `node.kedge.io/no-runtime`).
    pub runtime_version: Option<String>,
    pub resources: NodeResources,
    /// Pressure conditions and images, kept up to date by the runtime's loops.
    pub live: Arc<crate::node_status::LiveNodeStatus>,
}

/// The Node this agent registers and keeps reporting, JSON.
pub fn node_object(
    node: &str,
    extra_labels: &BTreeMap<String, String>,
    address: Option<std::net::IpAddr>,
    facts: &NodeFacts,
) -> Vec<u8> {
    let mut labels = serde_json::Map::new();
    labels.insert("kubernetes.io/arch".into(), go_arch().into());
    labels.insert("kubernetes.io/os".into(), "linux".into());
    labels.insert("kubernetes.io/hostname".into(), node.into());
    for (k, v) in extra_labels {
        labels.insert(k.clone(), v.clone().into());
    }
    let now = jiff_now();
    let mut addresses = Vec::new();
    if let Some(ip) = address {
        addresses.push(json!({"type": "InternalIP", "address": ip.to_string()}));
    }
    addresses.push(json!({"type": "Hostname", "address": node}));
    let mut taints = facts.live.taints();
    let message = match &facts.runtime_version {
        Some(_) => "kubelet is posting ready status",
        None => {
            taints.push(json!({"key": NO_RUNTIME_TAINT, "effect": "NoSchedule"}));
            "kedge-agent is connected (it runs no container runtime: --disable-runtime)"
        }
    };
    let mut conditions = facts.live.conditions(&now);
    let machine_id = std::fs::read_to_string("/etc/machine-id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    // Ready is True whenever the agent reports at all: the server turns it Unknown
    // when the reports stop. It goes last, as the kubelet lists it.
    conditions.push(json!({
        "type": "Ready",
        "status": "True",
        "reason": "KubeletReady",
        "message": message,
        "lastHeartbeatTime": now,
        "lastTransitionTime": now,
    }));
    let mut status = json!({
        "conditions": conditions,
        "nodeInfo": {
            "architecture": go_arch(),
            "operatingSystem": "linux",
            "kernelVersion": kernel_version(),
            "osImage": os_image(),
            "kubeletVersion": concat!("v1.32.0-kedge-", env!("CARGO_PKG_VERSION")),
            "kubeProxyVersion": "",
            "containerRuntimeVersion": facts.runtime_version.clone().unwrap_or_default(),
            "machineID": machine_id,
            "systemUUID": "",
            "bootID": boot_id,
        },
        "addresses": addresses,
        "images": facts.live.images(),
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
    });
    if !facts.resources.capacity.is_empty() {
        status["capacity"] = json!(facts.resources.capacity);
        status["allocatable"] = json!(facts.resources.allocatable);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": node, "labels": labels},
        "spec": {"taints": taints},
        "status": status,
    })
    .to_string()
    .into_bytes()
}

/// Now, as metav1.Time writes it: RFC 3339 in UTC, whole seconds.
fn jiff_now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_is_labelled_and_tainted() {
        let mut extra = BTreeMap::new();
        extra.insert("kedge.io/profile".to_string(), "rpi-4-2gb".to_string());
        let node: serde_json::Value = serde_json::from_slice(&node_object(
            "pi-1",
            &extra,
            Some([10, 0, 0, 7].into()),
            &NodeFacts::default(),
        ))
        .unwrap();
        assert_eq!(node["metadata"]["name"], "pi-1");
        assert_eq!(node["metadata"]["labels"]["kubernetes.io/arch"], go_arch());
        assert_eq!(node["metadata"]["labels"]["kedge.io/profile"], "rpi-4-2gb");
        assert_eq!(node["spec"]["taints"][0]["key"], NO_RUNTIME_TAINT);
        assert_eq!(node["status"]["addresses"][0]["address"], "10.0.0.7");
        assert_eq!(node["status"]["addresses"][0]["type"], "InternalIP");
    }
}
