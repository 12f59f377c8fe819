//! The scheduler loop: the I/O around the pure decision.
//!
//! One task owns all state (the [`Snapshot`], the [`Queue`], the pods it
//! has assumed). It reads two watches (Nodes, Pods), decides one pod at a
//! time, and hands binds and event writes to child tasks, so that several
//! binds are in flight while it decides the next pod:
//!
//! - a pod it binds is *assumed*: placed in the snapshot at once, so the
//!   next decision counts it, and kept there until the watch shows it bound
//!   (or the bind fails, which takes it out again);
//! - a pod that fits nowhere gets the condition `PodScheduled=False`
//!   (reason `Unschedulable`, message the [`FitError`] text) through
//!   pods/status and a `FailedScheduling` Warning event, and waits in the
//!   queue (see [`crate::queue`]);
//! - a bound pod gets a `Scheduled` Normal event, "Successfully assigned
//!   ns/name to node".
//!
//! Watch events are handled before anything else (`biased` select), so a
//! decision always sees every change the loop has received. Nothing is
//! scheduled until both watches have listed everything once.
//!
//! Dropping the future stops everything: child tasks live in `JoinSet`s,
//! which abort them on drop. Time for events comes from the wall clock
//! here, at the edge; the decision and the queue are given it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::{Binding, Event, EventSource, Node, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use serde_json::json;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::config::{Config, ConfigError};
use crate::decide::{self, FitError, PendingPod};
use crate::queue::{Queue, Timing};
use crate::snapshot::{self, PlacedPod, Snapshot};

/// Why the loop stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("the {0} watch ended")]
    WatchEnded(&'static str),
}

/// Runs the scheduler until the future is dropped (or a watch ends for
/// good). The caller runs it under leader election.
pub async fn run(client: kube::Client, config: Config) -> Result<(), Error> {
    config.validate()?;
    let span = info_span!("scheduler", name = %config.scheduler_name);
    run_validated(client, config).instrument(span).await
}

async fn run_validated(client: kube::Client, config: Config) -> Result<(), Error> {
    let mut nodes: BoxStream<'static, Result<watcher::Event<Node>, watcher::Error>> =
        watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
            .default_backoff()
            .boxed();
    let mut pods: BoxStream<'static, Result<watcher::Event<Pod>, watcher::Error>> =
        watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
            .default_backoff()
            .boxed();
    let mut s = State::new(client, config);
    let mut binds: JoinSet<Bound> = JoinSet::new();
    let mut writes: JoinSet<()> = JoinSet::new();
    info!("scheduler started; waiting for the first lists of nodes and pods");
    loop {
        let now = Instant::now();
        let ready =
            s.synced() && binds.len() < s.config.bind_concurrency && s.queue.has_active(now);
        let timer = s.queue.next_timer();
        tokio::select! {
            biased;
            event = nodes.next() => match event {
                Some(Ok(e)) => s.node_event(e),
                Some(Err(e)) => warn!(error = %e, "node watch failed; retrying"),
                None => return Err(Error::WatchEnded("node")),
            },
            event = pods.next() => match event {
                Some(Ok(e)) => s.pod_event(e),
                Some(Err(e)) => warn!(error = %e, "pod watch failed; retrying"),
                None => return Err(Error::WatchEnded("pod")),
            },
            Some(done) = binds.join_next(), if !binds.is_empty() => match done {
                Ok(bound) => s.bind_done(bound, &mut writes),
                Err(e) => warn!(error = %e, "a bind task failed"),
            },
            Some(_) = writes.join_next(), if !writes.is_empty() => {}
            () = std::future::ready(()), if ready => s.schedule_one(&mut binds, &mut writes),
            () = tokio::time::sleep_until(timer.unwrap_or(now)), if timer.is_some() => {}
        }
    }
}

/// The outcome of one bind.
struct Bound {
    key: String,
    node: String,
    pod: Arc<Pod>,
    result: Result<(), kube::Error>,
}

/// Everything the loop knows.
struct State {
    client: kube::Client,
    config: Config,
    snapshot: Snapshot,
    queue: Queue,
    /// Pods bound (or being bound) by us that the watch has not shown
    /// bound yet, and their node.
    assumed: HashMap<String, String>,
    /// Buffers while a watch (re)lists; `Some` until its `InitDone`.
    node_list: Option<Vec<Node>>,
    pod_list: Option<Vec<Pod>>,
    nodes_synced: bool,
    pods_synced: bool,
    bound: u64,
    dropped_writes: u64,
}

impl State {
    fn new(client: kube::Client, config: Config) -> State {
        let queue = Queue::new(Timing {
            initial_backoff: config.initial_backoff,
            max_backoff: config.max_backoff,
            unschedulable_flush: config.unschedulable_flush,
        });
        State {
            client,
            config,
            snapshot: Snapshot::new(),
            queue,
            assumed: HashMap::new(),
            node_list: None,
            pod_list: None,
            nodes_synced: false,
            pods_synced: false,
            bound: 0,
            dropped_writes: 0,
        }
    }

    fn synced(&self) -> bool {
        self.nodes_synced && self.pods_synced
    }

    fn node_event(&mut self, event: watcher::Event<Node>) {
        match event {
            watcher::Event::Init => self.node_list = Some(Vec::new()),
            watcher::Event::InitApply(node) => match self.node_list.as_mut() {
                Some(list) => list.push(node),
                None => self.apply_node(&node),
            },
            watcher::Event::InitDone => {
                let list = self.node_list.take().unwrap_or_default();
                let names: HashSet<&str> = list
                    .iter()
                    .filter_map(|n| n.metadata.name.as_deref())
                    .collect();
                let gone: Vec<String> = self
                    .snapshot
                    .nodes()
                    .map(|n| n.name.clone())
                    .filter(|n| !names.contains(n.as_str()))
                    .collect();
                for name in gone {
                    self.snapshot.remove_node(&name);
                }
                for node in &list {
                    self.apply_node(node);
                }
                if !self.nodes_synced {
                    info!(nodes = self.snapshot.node_count(), "nodes listed");
                }
                self.nodes_synced = true;
            }
            watcher::Event::Apply(node) => self.apply_node(&node),
            watcher::Event::Delete(node) => {
                if let Some(name) = node.metadata.name.as_deref() {
                    self.snapshot.remove_node(name);
                }
            }
        }
    }

    fn apply_node(&mut self, node: &Node) {
        let Some(name) = node.metadata.name.as_deref() else {
            return;
        };
        let before = self.snapshot.node(name).map(schedulable_view);
        for e in self.snapshot.upsert_node(node) {
            warn!(node = name, error = %e, "node allocatable does not parse; counted as zero");
        }
        let after = self.snapshot.node(name).map(schedulable_view);
        if before != after {
            self.queue.cluster_changed(Instant::now());
        }
    }

    fn pod_event(&mut self, event: watcher::Event<Pod>) {
        match event {
            watcher::Event::Init => self.pod_list = Some(Vec::new()),
            watcher::Event::InitApply(pod) => match self.pod_list.as_mut() {
                Some(list) => list.push(pod),
                None => self.apply_pod(pod),
            },
            watcher::Event::InitDone => {
                let list = self.pod_list.take().unwrap_or_default();
                let keys: HashSet<String> = list.iter().map(snapshot::pod_key).collect();
                let known: Vec<String> = self
                    .snapshot
                    .placed_keys()
                    .chain(self.queue.keys())
                    .filter(|k| !keys.contains(*k))
                    .cloned()
                    .collect();
                for key in known {
                    self.forget_pod(&key);
                }
                for pod in list {
                    self.apply_pod(pod);
                }
                if !self.pods_synced {
                    info!(pending = self.queue.len(), "pods listed; scheduling starts");
                }
                self.pods_synced = true;
            }
            watcher::Event::Apply(pod) => self.apply_pod(pod),
            watcher::Event::Delete(pod) => self.forget_pod(&snapshot::pod_key(&pod)),
        }
    }

    fn forget_pod(&mut self, key: &str) {
        self.queue.remove(key);
        self.assumed.remove(key);
        if self.snapshot.remove_pod(key).is_some() {
            self.queue.cluster_changed(Instant::now());
        }
    }

    fn ours(&self, pod: &Pod) -> bool {
        let name = pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduler_name.as_deref())
            .unwrap_or_default();
        name.is_empty() || name == self.config.scheduler_name
    }

    fn apply_pod(&mut self, pod: Pod) {
        let key = snapshot::pod_key(&pod);
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            // Terminal pods hold nothing.
            self.forget_pod(&key);
            return;
        }
        if let Some(node) = snapshot::bound_node(&pod) {
            self.queue.remove(&key);
            self.assumed.remove(&key);
            let (placed, error) = PlacedPod::from_pod(&pod);
            if let Some(e) = error {
                debug!(pod = %key, error = %e, "a bound pod's requests do not parse; counted as zero");
            }
            let placed = Arc::new(placed);
            let unchanged = self.snapshot.placed_on(&key) == Some(node)
                && self
                    .snapshot
                    .node_slot(node)
                    .is_some_and(|n| n.pods.iter().any(|p| **p == *placed));
            if !unchanged {
                self.snapshot.place(placed, node);
            }
            return;
        }
        if self.assumed.contains_key(&key) {
            // Our bind is in flight or not seen back yet.
            return;
        }
        let gated = pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduling_gates.as_ref())
            .is_some_and(|g| !g.is_empty());
        if pod.metadata.deletion_timestamp.is_some() || gated || !self.ours(&pod) {
            self.queue.remove(&key);
            return;
        }
        self.queue.upsert(&key, Arc::new(pod), Instant::now());
    }

    fn schedule_one(&mut self, binds: &mut JoinSet<Bound>, writes: &mut JoinSet<()>) {
        let now = Instant::now();
        let Some((key, pod)) = self.queue.pop(now) else {
            return;
        };
        let pending = match PendingPod::from_pod(&pod) {
            Ok(p) => p,
            Err(e) => {
                warn!(pod = %key, error = %e, "cannot schedule an invalid pod");
                self.queue.failed(&key, true, now);
                self.unschedulable(pod, e.to_string(), writes);
                return;
            }
        };
        match decide::schedule(&self.snapshot, &pending) {
            Ok(node) => {
                debug!(pod = %key, node = %node, "assuming pod on node");
                let (placed, _) = PlacedPod::from_pod(&pod);
                self.snapshot.place(Arc::new(placed), &node);
                self.assumed.insert(key.clone(), node.clone());
                binds.spawn(bind(self.client.clone(), key, node, pod));
            }
            Err(fit) => {
                info!(pod = %key, reason = %fit, "unable to schedule pod; waiting");
                self.queue.failed(&key, true, now);
                self.unschedulable(pod, fit_message(&fit), writes);
            }
        }
    }

    fn unschedulable(&mut self, pod: Arc<Pod>, message: String, writes: &mut JoinSet<()>) {
        if writes.len() >= self.config.event_concurrency {
            self.dropped(writes);
            return;
        }
        let client = self.client.clone();
        let component = self.config.scheduler_name.clone();
        writes.spawn(async move {
            let now = jiff::Timestamp::now();
            mark_unschedulable(&client, &pod, &message, now).await;
            record(
                &client,
                &pod,
                "Warning",
                "FailedScheduling",
                "Scheduling",
                &message,
                &component,
                now,
            )
            .await;
        });
    }

    fn dropped(&mut self, writes: &JoinSet<()>) {
        self.dropped_writes += 1;
        if self.dropped_writes.is_power_of_two() {
            warn!(
                dropped = self.dropped_writes,
                in_flight = writes.len(),
                "event writes are falling behind; dropping some"
            );
        }
    }

    fn bind_done(&mut self, bound: Bound, writes: &mut JoinSet<()>) {
        let Bound {
            key,
            node,
            pod,
            result,
        } = bound;
        match result {
            Ok(()) => {
                self.bound += 1;
                self.queue.remove(&key);
                if self.bound.is_multiple_of(1000) {
                    info!(bound = self.bound, pending = self.queue.len(), "binding");
                }
                if writes.len() >= self.config.event_concurrency {
                    self.dropped(writes);
                    return;
                }
                let client = self.client.clone();
                let component = self.config.scheduler_name.clone();
                let message = format!("Successfully assigned {} to {node}", key);
                writes.spawn(async move {
                    let now = jiff::Timestamp::now();
                    record(
                        &client,
                        &pod,
                        "Normal",
                        "Scheduled",
                        "Binding",
                        &message,
                        &component,
                        now,
                    )
                    .await;
                });
            }
            Err(e) => {
                // Undo the assumption, unless the watch has meanwhile
                // shown where the pod really is.
                if self.assumed.remove(&key).is_some() {
                    self.snapshot.remove_pod(&key);
                }
                let not_found = matches!(&e, kube::Error::Api(s) if s.code == 404);
                warn!(pod = %key, node = %node, error = %e, "bind failed");
                if not_found {
                    self.queue.remove(&key);
                    return;
                }
                self.queue.failed(&key, false, Instant::now());
                if writes.len() < self.config.event_concurrency {
                    let client = self.client.clone();
                    let component = self.config.scheduler_name.clone();
                    let message = format!("Binding rejected: {e}");
                    writes.spawn(async move {
                        let now = jiff::Timestamp::now();
                        record(
                            &client,
                            &pod,
                            "Warning",
                            "FailedScheduling",
                            "Scheduling",
                            &message,
                            &component,
                            now,
                        )
                        .await;
                    });
                }
            }
        }
    }
}

/// What about a node can change where pods fit.
fn schedulable_view(n: &snapshot::NodeInfo) -> impl PartialEq + use<> {
    (
        n.labels.clone(),
        n.taints
            .iter()
            .map(|t| (t.key.clone(), t.value.clone(), t.effect.clone()))
            .collect::<Vec<_>>(),
        n.unschedulable,
        n.allocatable.clone(),
        n.allowed_pods,
    )
}

fn fit_message(fit: &FitError) -> String {
    fit.to_string()
}

async fn bind(client: kube::Client, key: String, node: String, pod: Arc<Pod>) -> Bound {
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = pod.metadata.name.clone().unwrap_or_default();
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.clone()),
            uid: pod.metadata.uid.clone(),
            ..ObjectMeta::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.clone()),
            ..ObjectReference::default()
        },
    };
    let api: Api<Pod> = Api::namespaced(client, &namespace);
    let result = api
        .create_subresource::<_, serde_json::Value>(
            "binding",
            &name,
            &PostParams::default(),
            &binding,
        )
        .await
        .map(|_| ());
    Bound {
        key,
        node,
        pod,
        result,
    }
}

/// Sets `PodScheduled=False` (Unschedulable) unless it already says this.
async fn mark_unschedulable(client: &kube::Client, pod: &Pod, message: &str, now: jiff::Timestamp) {
    let existing = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
    if existing.is_some_and(|c| {
        c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
            && c.message.as_deref() == Some(message)
    }) {
        return;
    }
    let transition = existing
        .filter(|c| c.status == "False")
        .and_then(|c| c.last_transition_time.clone())
        .map_or(now, |t| t.0);
    let patch = json!({"status": {"conditions": [{
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": message,
        "lastProbeTime": null,
        "lastTransitionTime": transition.to_string(),
    }]}});
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    if let Err(e) = api
        .patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
    {
        debug!(pod = name, error = %e, "could not set PodScheduled=False");
    }
}

static EVENT_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes a core/v1 Event about a pod, as upstream's recorder does.
#[allow(clippy::too_many_arguments)]
async fn record(
    client: &kube::Client,
    pod: &Pod,
    type_: &str,
    reason: &str,
    action: &str,
    message: &str,
    component: &str,
    now: jiff::Timestamp,
) {
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = pod.metadata.name.clone().unwrap_or_default();
    let unique =
        (now.as_nanosecond() as u64).wrapping_add(EVENT_COUNTER.fetch_add(1, Ordering::Relaxed));
    let event = Event {
        metadata: ObjectMeta {
            name: Some(format!("{name}.{unique:x}")),
            namespace: Some(namespace.clone()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(name.clone()),
            namespace: Some(namespace.clone()),
            uid: pod.metadata.uid.clone(),
            resource_version: pod.metadata.resource_version.clone(),
            ..ObjectReference::default()
        },
        reason: Some(reason.into()),
        message: Some(message.into()),
        type_: Some(type_.into()),
        action: Some(action.into()),
        source: Some(EventSource {
            component: Some(component.into()),
            host: None,
        }),
        reporting_component: Some(component.into()),
        reporting_instance: Some(component.into()),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        ..Event::default()
    };
    let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
    if let Err(e) = api.create(&PostParams::default(), &event).await {
        debug!(pod = %name, reason, error = %e, "could not record an event");
    }
}
