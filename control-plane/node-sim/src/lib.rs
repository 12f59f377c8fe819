//! kedge-node-sim: simulated kubelets, for tests and benchmarks that need
//! nodes but no containers.
//!
//! A [`Simulator`] does, through the Kubernetes API and nothing else, what
//! a kubelet does to the API:
//! - registers each [`SimNode`] (a Node with capacity, allocatable, a Ready
//!   condition, nodeInfo and an InternalIP) and posts its status again when
//!   it comes back from silence, and every few Lease renewals;
//! - renews the node's Lease in `kube-node-lease` every
//!   [`SimConfig::lease_renew_interval`];
//! - "runs" the pods bound to its nodes: after [`SimConfig::start_delay`]
//!   it writes pods/status with phase Running, a pod IP from the node's
//!   podCIDR, running containerStatuses and the Ready conditions;
//! - finishes the deletion of pods being deleted gracefully (a delete with
//!   gracePeriodSeconds=0, as the kubelet does once containers stop).
//!
//! Tests steer pods with annotations, so that a plain `kubectl annotate` works:
//! - `sim.kedge.io/ready: "false"` keeps (or makes) the pod not Ready, as a
//!   failing readiness probe would;
//! - `sim.kedge.io/exit-code: "N"` makes its containers exit with N after
//!   `sim.kedge.io/run-seconds` (default 1): phase Succeeded for 0, Failed
//!   otherwise.
//!
//! [`Simulator::silence`] makes a node go quiet (no Lease renewals, no pod
//! updates), as a device that lost its link; [`Simulator::resume`] brings it
//! back.
//!
//! This is a test tool: it must never be linked into `kedge` or the agent.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, NodeSpec, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

/// Annotation that keeps a pod not Ready.
pub const READY_ANNOTATION: &str = "sim.kedge.io/ready";
/// Annotation that makes a pod's containers exit with this code.
pub const EXIT_CODE_ANNOTATION: &str = "sim.kedge.io/exit-code";
/// Annotation giving how long a pod with an exit code runs, in seconds.
pub const RUN_SECONDS_ANNOTATION: &str = "sim.kedge.io/run-seconds";

/// Errors of the simulator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to the API server failed.
    #[error("node simulator: API request for {what} failed: {source}")]
    Api {
        /// What was being written.
        what: String,
        /// The client's error.
        source: kube::Error,
    },
}

/// One simulated node.
#[derive(Debug, Clone)]
pub struct SimNode {
    /// The node's name.
    pub name: String,
    /// CPU capacity, a Kubernetes quantity ("4").
    pub cpu: String,
    /// Memory capacity ("8Gi").
    pub memory: String,
    /// Pod capacity (110).
    pub pods: u32,
    /// Labels beyond the standard hostname/os/arch ones.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// Taints.
    pub taints: Vec<Taint>,
}

impl SimNode {
    /// A node with 4 CPUs, 8 GiB and 110 pods.
    pub fn new(name: &str) -> Self {
        SimNode {
            name: name.to_string(),
            cpu: "4".to_string(),
            memory: "8Gi".to_string(),
            pods: 110,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            taints: Vec::new(),
        }
    }

    /// Adds a label.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_string(), value.to_string());
        self
    }

    /// Adds an annotation.
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.to_string(), value.to_string());
        self
    }

    /// Adds a taint.
    pub fn taint(mut self, key: &str, value: &str, effect: &str) -> Self {
        self.taints.push(Taint {
            key: key.to_string(),
            value: Some(value.to_string()).filter(|v| !v.is_empty()),
            effect: effect.to_string(),
            time_added: None,
        });
        self
    }
}

/// How the simulated kubelets behave.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// How often Leases are renewed (the kubelet's 10 s).
    pub lease_renew_interval: Duration,
    /// Status is posted again every this many renewals.
    pub status_every_renewals: u32,
    /// How long a bound pod takes to start.
    pub start_delay: Duration,
    /// Whether pods bound to the nodes are run at all (benchmarks of the
    /// scheduler turn this off).
    pub run_pods: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            lease_renew_interval: Duration::from_secs(10),
            status_every_renewals: 5,
            start_delay: Duration::from_millis(200),
            run_pods: true,
        }
    }
}

#[derive(Debug, Default)]
struct NodeState {
    silent: bool,
    /// Set by `resume`: post status at the next chance.
    post_status: bool,
    pod_cidr: Option<String>,
    next_ip: u32,
    /// Pod uid → IP, so that an IP is kept across status writes.
    ips: HashMap<String, String>,
}

struct Shared {
    client: kube::Client,
    config: SimConfig,
    nodes: Vec<SimNode>,
    state: Mutex<HashMap<String, NodeState>>,
    /// Nodes back from silence, whose pods' statuses are written again.
    resync: Mutex<Vec<String>>,
    resync_wake: tokio::sync::Notify,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .field("nodes", &self.nodes.len())
            .finish_non_exhaustive()
    }
}

/// Running simulated kubelets; dropping it stops them.
#[derive(Debug)]
pub struct Simulator {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Simulator {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Simulator {
    /// Registers the nodes (Ready, with fresh Leases) and starts their
    /// kubelets. Returns once every node is registered.
    pub async fn start(
        client: kube::Client,
        nodes: Vec<SimNode>,
        config: SimConfig,
    ) -> Result<Simulator, Error> {
        let state = nodes
            .iter()
            .map(|n| (n.name.clone(), NodeState::default()))
            .collect();
        let shared = Arc::new(Shared {
            client,
            config,
            nodes,
            state: Mutex::new(state),
            resync: Mutex::new(Vec::new()),
            resync_wake: tokio::sync::Notify::new(),
        });
        futures::stream::iter(shared.nodes.iter())
            .map(|n| register(&shared, n))
            .buffer_unordered(16)
            .try_collect::<Vec<()>>()
            .await?;
        let mut tasks = vec![tokio::spawn(heartbeats(shared.clone()))];
        if shared.config.run_pods {
            tasks.push(tokio::spawn(run_pods(shared.clone())));
        }
        Ok(Simulator { shared, tasks })
    }

    /// The node stops renewing its Lease and updating its pods.
    pub fn silence(&self, node: &str) {
        if let Some(s) = self.shared.state.lock().unwrap().get_mut(node) {
            s.silent = true;
        }
    }

    /// The node renews its Lease again, posts its status at once, and
    /// writes its pods' statuses again (the control plane may have marked
    /// them not Ready meanwhile).
    pub fn resume(&self, node: &str) {
        if let Some(s) = self.shared.state.lock().unwrap().get_mut(node) {
            s.silent = false;
            s.post_status = true;
        }
        self.shared.resync.lock().unwrap().push(node.to_string());
        self.shared.resync_wake.notify_one();
    }

    /// The names of the simulated nodes.
    pub fn node_names(&self) -> Vec<String> {
        self.shared.nodes.iter().map(|n| n.name.clone()).collect()
    }
}

fn node_index(shared: &Shared, node: &str) -> usize {
    shared
        .nodes
        .iter()
        .position(|n| n.name == node)
        .unwrap_or(0)
}

fn api_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Api { what, source }
}

fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

/// Creates (or takes over) the Node, posts its status and its Lease.
async fn register(shared: &Shared, node: &SimNode) -> Result<(), Error> {
    let nodes: Api<Node> = Api::all(shared.client.clone());
    let mut labels = node.labels.clone();
    labels.insert("kubernetes.io/hostname".into(), node.name.clone());
    labels.insert("kubernetes.io/os".into(), "linux".into());
    labels
        .entry("kubernetes.io/arch".into())
        .or_insert_with(|| "amd64".into());
    let object = Node {
        metadata: ObjectMeta {
            name: Some(node.name.clone()),
            labels: Some(labels),
            annotations: Some(node.annotations.clone()).filter(|a| !a.is_empty()),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            taints: Some(node.taints.clone()).filter(|t| !t.is_empty()),
            ..NodeSpec::default()
        }),
        status: None,
    };
    match nodes.create(&PostParams::default(), &object).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(api_error(format!("node {}", node.name))(e)),
    }
    post_status(shared, node).await?;
    renew_lease(shared, &node.name).await
}

/// Posts the node's status as a kubelet does: Ready, with capacity.
async fn post_status(shared: &Shared, node: &SimNode) -> Result<(), Error> {
    let nodes: Api<Node> = Api::all(shared.client.clone());
    let t = now().to_string();
    let condition = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({"type": kind, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": t, "lastTransitionTime": t})
    };
    let resources = json!({"cpu": node.cpu, "memory": node.memory, "pods": node.pods.to_string(),
                           "ephemeral-storage": "50Gi"});
    let index = node_index(shared, &node.name);
    let status = json!({"status": {
        "capacity": resources,
        "allocatable": resources,
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ],
        "addresses": [
            {"type": "InternalIP", "address": node_address(index)},
            {"type": "Hostname", "address": node.name},
        ],
        "nodeInfo": {
            "architecture": "amd64", "operatingSystem": "linux", "osImage": "kedge node simulator",
            "kernelVersion": "6.1.0", "containerRuntimeVersion": "sim://1.0",
            "kubeletVersion": "v1.32.0", "kubeProxyVersion": "v1.32.0",
            "machineID": "", "systemUUID": "", "bootID": "",
        },
    }});
    nodes
        .patch_status(&node.name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .map_err(api_error(format!("status of node {}", node.name)))?;
    Ok(())
}

/// Creates or renews the node's Lease in kube-node-lease.
async fn renew_lease(shared: &Shared, node: &str) -> Result<(), Error> {
    let leases: Api<Lease> = Api::namespaced(shared.client.clone(), "kube-node-lease");
    let spec = LeaseSpec {
        holder_identity: Some(node.to_string()),
        lease_duration_seconds: Some(40),
        renew_time: Some(MicroTime(now())),
        ..LeaseSpec::default()
    };
    let patch = json!({"spec": spec});
    match leases
        .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(node.to_string()),
                    namespace: Some("kube-node-lease".into()),
                    ..ObjectMeta::default()
                },
                spec: Some(spec),
            };
            match leases.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                Err(e) => Err(api_error(format!("lease of node {node}"))(e)),
            }
        }
        Err(e) => Err(api_error(format!("lease of node {node}"))(e)),
    }
}

/// Renews every live node's Lease, and posts status now and then.
async fn heartbeats(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.config.lease_renew_interval);
    tick.tick().await;
    let mut round: u32 = 0;
    loop {
        // Resumed nodes post status at once; others every few renewals.
        let mut due: Vec<(SimNode, bool)> = Vec::new();
        {
            let mut state = shared.state.lock().unwrap();
            for node in &shared.nodes {
                let Some(s) = state.get_mut(&node.name) else {
                    continue;
                };
                if s.silent {
                    continue;
                }
                let status = std::mem::take(&mut s.post_status)
                    || (round > 0
                        && round.is_multiple_of(shared.config.status_every_renewals.max(1)));
                due.push((node.clone(), status));
            }
        }
        futures::stream::iter(due)
            .for_each_concurrent(16, |(node, status)| {
                let shared = shared.clone();
                async move {
                    if status && let Err(e) = post_status(&shared, &node).await {
                        warn!(error = %e, "node simulator");
                    }
                    if let Err(e) = renew_lease(&shared, &node.name).await {
                        warn!(error = %e, "node simulator");
                    }
                }
            })
            .await;
        round = round.wrapping_add(1);
        // A resumed node should not wait for the next tick.
        let wait = tick.tick();
        tokio::pin!(wait);
        loop {
            tokio::select! {
                _ = &mut wait => break,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    let any = shared.state.lock().unwrap().values().any(|s| s.post_status && !s.silent);
                    if any { break; }
                }
            }
        }
    }
}

/// Watches every pod and acts for those bound to our nodes.
async fn run_pods(shared: Arc<Shared>) {
    let pods: Api<Pod> = Api::all(shared.client.clone());
    let ours: HashSet<String> = shared.nodes.iter().map(|n| n.name.clone()).collect();
    // Pods that have a status write in flight or done for this spec, by uid:
    // the value is what was written, so that repeated events are ignored.
    let written: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    // The latest of each pod bound to our nodes, by uid.
    let mut known: HashMap<String, Pod> = HashMap::new();
    let stream = watcher(pods.clone(), watcher::Config::default()).default_backoff();
    tokio::pin!(stream);
    loop {
        let batch: Vec<Pod> = tokio::select! {
            event = stream.next() => {
                let Some(event) = event else { break };
                let event = match event {
                    Ok(e) => e,
                    Err(e) => {
                        debug!(error = %e, "node simulator: pod watch");
                        continue;
                    }
                };
                match event {
                    watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                        let on_ours = p
                            .spec
                            .as_ref()
                            .and_then(|s| s.node_name.as_ref())
                            .is_some_and(|n| ours.contains(n));
                        if !on_ours {
                            continue;
                        }
                        known.insert(p.metadata.uid.clone().unwrap_or_default(), p.clone());
                        vec![p]
                    }
                    watcher::Event::Delete(p) => {
                        known.remove(&p.metadata.uid.clone().unwrap_or_default());
                        continue;
                    }
                    _ => continue,
                }
            }
            _ = shared.resync_wake.notified() => {
                let nodes: Vec<String> = std::mem::take(&mut *shared.resync.lock().unwrap());
                let again: Vec<Pod> = known
                    .values()
                    .filter(|p| {
                        p.spec
                            .as_ref()
                            .and_then(|s| s.node_name.as_ref())
                            .is_some_and(|n| nodes.contains(n))
                    })
                    .cloned()
                    .collect();
                let mut w = written.lock().unwrap();
                for p in &again {
                    w.remove(p.metadata.uid.as_deref().unwrap_or_default());
                }
                again
            }
        };
        for pod in batch {
            handle_pod(&shared, &written, pod);
        }
    }
}

/// Acts on one pod bound to one of our nodes, as its kubelet would.
fn handle_pod(shared: &Arc<Shared>, written: &Arc<Mutex<HashMap<String, String>>>, pod: Pod) {
    {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            return;
        };
        if shared
            .state
            .lock()
            .unwrap()
            .get(&node)
            .is_none_or(|s| s.silent)
        {
            return;
        }
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        if pod.metadata.deletion_timestamp.is_some() {
            let key = format!("{uid}/deleted");
            if written.lock().unwrap().insert(key, String::new()).is_some() {
                return;
            }
            let pods: Api<Pod> = Api::namespaced(shared.client.clone(), &namespace);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let params = DeleteParams {
                    grace_period_seconds: Some(0),
                    preconditions: Some(kube::api::Preconditions {
                        uid: Some(uid),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                if let Err(e) = pods.delete(&name, &params).await {
                    debug!(pod = %name, error = %e, "node simulator: final delete");
                }
            });
            return;
        }
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        if phase == "Succeeded" || phase == "Failed" {
            return;
        }
        let annotations = pod.metadata.annotations.clone().unwrap_or_default();
        let ready = annotations.get(READY_ANNOTATION).map(String::as_str) != Some("false");
        let exit = annotations
            .get(EXIT_CODE_ANNOTATION)
            .and_then(|c| c.parse::<i32>().ok());
        let want = format!("{ready}/{exit:?}");
        if written.lock().unwrap().get(&uid) == Some(&want) {
            return;
        }
        written.lock().unwrap().insert(uid.clone(), want);
        let run_for = annotations
            .get(RUN_SECONDS_ANNOTATION)
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64)
            .unwrap_or(Duration::from_secs(1));
        let shared = shared.clone();
        let first = phase != "Running";
        tokio::spawn(async move {
            if first {
                tokio::time::sleep(shared.config.start_delay).await;
            }
            let ip = pod_ip(&shared, &node, &uid).await;
            let started = pod
                .status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .map(|t| t.0)
                .unwrap_or_else(now);
            let host = node_address(node_index(&shared, &node));
            let running = status_running(&pod, &ip, &host, started, ready);
            write_status(&shared, &namespace, &name, &running).await;
            if let Some(code) = exit {
                tokio::time::sleep(run_for).await;
                let done = status_terminated(&pod, &ip, &host, started, code);
                write_status(&shared, &namespace, &name, &done).await;
            }
        });
    }
}

async fn write_status(shared: &Shared, namespace: &str, name: &str, status: &Value) {
    let pods: Api<Pod> = Api::namespaced(shared.client.clone(), namespace);
    if let Err(e) = pods
        .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
    {
        debug!(pod = %name, error = %e, "node simulator: pod status");
    }
}

/// The pod's IP: the next free address of the node's podCIDR once the
/// node has one, or one from 10.244.0.0/16 before.
async fn pod_ip(shared: &Shared, node: &str, uid: &str) -> String {
    let cidr = {
        let state = shared.state.lock().unwrap();
        state.get(node).and_then(|s| s.pod_cidr.clone())
    };
    let cidr = match cidr {
        Some(c) => Some(c),
        None => {
            let nodes: Api<Node> = Api::all(shared.client.clone());
            let found = nodes
                .get(node)
                .await
                .ok()
                .and_then(|n| n.spec.and_then(|s| s.pod_cidr));
            if let Some(c) = &found
                && let Some(s) = shared.state.lock().unwrap().get_mut(node)
            {
                s.pod_cidr = Some(c.clone());
            }
            found
        }
    };
    let mut state = shared.state.lock().unwrap();
    let index = node_index(shared, node);
    let Some(s) = state.get_mut(node) else {
        return "10.244.0.1".to_string();
    };
    if let Some(ip) = s.ips.get(uid) {
        return ip.clone();
    }
    s.next_ip += 1;
    let n = s.next_ip;
    let base = cidr
        .as_deref()
        .and_then(|c| c.split('/').next())
        .and_then(|a| a.parse::<std::net::Ipv4Addr>().ok())
        .map(u32::from)
        .unwrap_or(u32::from(std::net::Ipv4Addr::new(10, 244, 0, 0)) + ((index as u32) << 8));
    let ip = std::net::Ipv4Addr::from(base + (n % 254) + 1).to_string();
    s.ips.insert(uid.to_string(), ip.clone());
    ip
}

fn containers(pod: &Pod) -> Vec<(String, String)> {
    pod.spec
        .as_ref()
        .map(|s| {
            s.containers
                .iter()
                .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

/// The InternalIP of the node at this index of the simulator's list.
fn node_address(index: usize) -> String {
    format!("172.31.{}.{}", index / 250, index % 250 + 1)
}

fn status_running(pod: &Pod, ip: &str, host: &str, started: jiff::Timestamp, ready: bool) -> Value {
    let t = now().to_string();
    let ready_s = if ready { "True" } else { "False" };
    let statuses: Vec<Value> = containers(pod)
        .into_iter()
        .map(|(name, image)| {
            json!({"name": name, "image": image, "imageID": format!("sim://{image}"),
                   "containerID": format!("sim://{name}"), "ready": ready, "started": true,
                   "restartCount": 0, "state": {"running": {"startedAt": started.to_string()}}})
        })
        .collect();
    let not_ready = (!ready).then_some("ContainersNotReady");
    json!({"status": {
        "phase": "Running",
        "hostIP": host,
        "hostIPs": [{"ip": host}],
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": started.to_string(),
        "conditions": [
            {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": t},
            {"type": "Initialized", "status": "True", "lastTransitionTime": t},
            {"type": "Ready", "status": ready_s, "lastTransitionTime": t, "reason": not_ready},
            {"type": "ContainersReady", "status": ready_s, "lastTransitionTime": t, "reason": not_ready},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": t},
        ],
        "containerStatuses": statuses,
    }})
}

fn status_terminated(
    pod: &Pod,
    ip: &str,
    host: &str,
    started: jiff::Timestamp,
    code: i32,
) -> Value {
    let t = now().to_string();
    let (phase, reason) = if code == 0 {
        ("Succeeded", "Completed")
    } else {
        ("Failed", "Error")
    };
    let statuses: Vec<Value> = containers(pod)
        .into_iter()
        .map(|(name, image)| {
            json!({"name": name, "image": image, "imageID": format!("sim://{image}"),
                   "containerID": format!("sim://{name}"), "ready": false, "started": false,
                   "restartCount": 0, "state": {"terminated": {"exitCode": code, "reason": reason,
                   "startedAt": started.to_string(), "finishedAt": t}}})
        })
        .collect();
    json!({"status": {
        "phase": phase,
        "hostIP": host,
        "hostIPs": [{"ip": host}],
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": started.to_string(),
        "conditions": [
            {"type": "Initialized", "status": "True", "lastTransitionTime": t},
            {"type": "Ready", "status": "False", "lastTransitionTime": t, "reason": "PodCompleted"},
            {"type": "ContainersReady", "status": "False", "lastTransitionTime": t, "reason": "PodCompleted"},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": t},
        ],
        "containerStatuses": statuses,
    }})
}
