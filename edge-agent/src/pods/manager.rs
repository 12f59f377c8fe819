//! The pod manager: one [`Worker`] per pod the node should run, and cleanup of what
//! the runtime holds for pods it should not.
//!
//! The desired pods come from the local desired-state store (the pods bound to this
//! node, as the server last sent them) and from static pod manifests. The manager
//! reconciles whenever the store changes and every [`RECONCILE`] anyway, so it works
//! the same with the server connected, unreachable, or never reached since the agent
//! started: an agent restarted offline finds its pods in the store and their containers
//! in the runtime, and adopts them without restarting anything.
//!
//! Mirror pods (the API's copies of static pods, annotated
//! `kubernetes.io/config.mirror`) come back through the sync like any pod bound here;
//! they are never run, only used to report the static pod's status.
//!
//! Evictions come from the eviction manager ([`EvictionSender`]) and go to the pod's
//! worker, which stops the pod for good; the manager remembers them while the pod
//! is wanted, so a worker started again for it keeps it stopped.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kedge_proto::v1::ObjectKind;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, info, warn};

use super::runtime::PodRef;
use super::worker::{PodContext, PodEviction, Worker, WorkerEnd, WorkerMsg};
use crate::store::Store;

/// How often the manager reconciles even when the store did not change.
pub const RECONCILE: Duration = Duration::from_secs(10);

/// The annotation that marks a mirror pod.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// Where the desired pods come from, besides the store.
pub trait PodSource: Send + Sync + std::fmt::Debug {
    /// The pods this source wants to run now.
    fn pods(&self) -> Vec<Pod>;
}

#[derive(Debug)]
struct Handle {
    inbox: mpsc::Sender<WorkerMsg>,
    task: JoinHandle<WorkerEnd>,
    /// The pod's resourceVersion last sent to the worker.
    version: Option<String>,
}

/// Runs the node's pods.
#[derive(Debug)]
pub struct PodManager {
    ctx: PodContext,
    store: Store,
    sources: Vec<Arc<dyn PodSource>>,
    workers: HashMap<String, Handle>,
    /// Pods terminated while the API still lists them (until the server deletes them).
    terminated: HashSet<String>,
    /// Pods evicted, by uid, while they are wanted.
    evicted: HashMap<String, PodEviction>,
    /// Where the evictions arrive, once [`PodManager::eviction_sender`] made it.
    evictions: Option<mpsc::Receiver<(String, PodEviction)>>,
}

/// Hands evictions to the pod manager.
#[derive(Debug, Clone)]
pub struct EvictionSender(mpsc::Sender<(String, PodEviction)>);

impl EvictionSender {
    /// Asks for the pod with this uid to be evicted; false when the manager is gone
    /// or has too many evictions queued.
    pub fn evict(&self, uid: &str, eviction: PodEviction) -> bool {
        self.0.try_send((uid.to_string(), eviction)).is_ok()
    }
}

/// Whether a pod is a mirror pod.
pub fn is_mirror(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION))
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

impl PodManager {
    pub fn new(ctx: PodContext, store: Store, sources: Vec<Arc<dyn PodSource>>) -> PodManager {
        PodManager {
            ctx,
            store,
            sources,
            workers: HashMap::new(),
            terminated: HashSet::new(),
            evicted: HashMap::new(),
            evictions: None,
        }
    }

    /// The channel evictions reach this manager through, while it runs.
    pub fn eviction_sender(&mut self) -> EvictionSender {
        let (tx, rx) = mpsc::channel(16);
        self.evictions = Some(rx);
        EvictionSender(tx)
    }

    /// Evicts a pod: its worker stops it for good. A pod without a worker (not
    /// wanted, or already terminated) has nothing to stop.
    pub fn evict(&mut self, uid: &str, eviction: PodEviction) {
        let Some(handle) = self.workers.get(uid) else {
            debug!(uid, "no worker for the pod to evict");
            return;
        };
        let _ = handle.inbox.try_send(WorkerMsg::Evict(eviction.clone()));
        self.evicted.insert(uid.to_string(), eviction);
    }

    /// The pods the node should run now: the store's (minus mirror pods) and the
    /// sources'.
    pub fn desired(&self) -> Vec<Pod> {
        let mut pods = Vec::new();
        match self.store.list(ObjectKind::Pod) {
            Ok(objects) => {
                for o in objects {
                    match serde_json::from_slice::<Pod>(&o.object) {
                        Ok(pod) if !is_mirror(&pod) && pod.metadata.uid.is_some() => pods.push(pod),
                        Ok(_) => {}
                        Err(e) => warn!(
                            pod = %format!("{}/{}", o.namespace, o.name),
                            error = %e,
                            "the store holds a pod that does not decode; skipping it"
                        ),
                    }
                }
            }
            Err(e) => warn!(error = %e, "cannot list the pods in the local store"),
        }
        for source in &self.sources {
            pods.extend(source.pods());
        }
        pods
    }

    /// Runs until `shutdown` resolves. On shutdown the workers stop, and the pods keep
    /// running: the next agent adopts them.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        let mut changes = self.store.subscribe();
        let mut evictions = self.evictions.take();
        tokio::pin!(shutdown);
        info!("pod manager started");
        loop {
            self.reconcile().await;
            tokio::select! {
                _ = &mut shutdown => break,
                Some((uid, eviction)) = next_eviction(&mut evictions) => self.evict(&uid, eviction),
                r = changes.changed() => if r.is_err() {
                    // The store is gone; keep reconciling on the timer.
                    changes = tokio::sync::watch::channel(0).1;
                },
                _ = tokio::time::sleep(RECONCILE) => {}
            }
        }
        // Workers stop where they are: whatever they were doing (a graceful stop, a
        // probe) the next agent picks up from what the runtime holds.
        for (_, handle) in self.workers.drain() {
            handle.task.abort();
            let _ = handle.task.await;
        }
        info!("pod manager stopped; the pods keep running");
    }

    fn spawn(&mut self, pod: Pod) {
        self.spawn_worker(pod, false);
    }

    fn spawn_worker(&mut self, pod: Pod, removed: bool) {
        let id = uid(&pod);
        let (tx, rx) = mpsc::channel(16);
        let span = tracing::info_span!(
            "pod",
            pod = %format!(
                "{}/{}",
                pod.metadata.namespace.as_deref().unwrap_or_default(),
                pod.metadata.name.as_deref().unwrap_or_default()
            )
        );
        let version = pod.metadata.resource_version.clone();
        let mut worker = Worker::new(self.ctx.clone(), Arc::new(pod));
        if removed {
            worker = worker.removed();
        }
        if let Some(eviction) = self.evicted.get(&id) {
            let _ = tx.try_send(WorkerMsg::Evict(eviction.clone()));
        }
        let exits = self.ctx.runtime.exits();
        let task = tokio::spawn(worker.run(rx, exits).instrument(span));
        self.workers.insert(
            id,
            Handle {
                inbox: tx,
                task,
                version,
            },
        );
    }

    /// One pass: start, update and stop workers; clean up orphans.
    pub async fn reconcile(&mut self) {
        // Reap finished workers.
        let finished: Vec<String> = self
            .workers
            .iter()
            .filter(|(_, h)| h.task.is_finished())
            .map(|(u, _)| u.clone())
            .collect();
        for id in finished {
            if let Some(h) = self.workers.remove(&id) {
                match h.task.await {
                    Ok(WorkerEnd::Terminated) => {
                        self.terminated.insert(id);
                    }
                    Ok(WorkerEnd::Stopped) => {}
                    Err(e) => warn!(uid = %id, error = %e, "a pod worker failed; it starts again"),
                }
            }
        }

        let desired = self.desired();
        let statics: Vec<Pod> = desired
            .iter()
            .filter(|p| super::static_pods::is_static(p))
            .cloned()
            .collect();
        self.ctx.statuses.static_pods(&statics);
        let wanted: HashSet<String> = desired.iter().map(uid).collect();
        self.terminated.retain(|u| wanted.contains(u));
        self.evicted.retain(|u, _| wanted.contains(u));
        for pod in desired {
            let id = uid(&pod);
            if self.terminated.contains(&id) {
                continue;
            }
            match self.workers.get_mut(&id) {
                Some(h) => {
                    if h.version != pod.metadata.resource_version
                        || pod.metadata.resource_version.is_none()
                    {
                        h.version = pod.metadata.resource_version.clone();
                        let _ = h.inbox.try_send(WorkerMsg::Update(Arc::new(pod)));
                    }
                }
                None => self.spawn(pod),
            }
        }
        for (id, h) in &self.workers {
            if !wanted.contains(id) {
                let _ = h.inbox.try_send(WorkerMsg::Removed);
            }
        }

        // What the runtime holds for pods nobody wants: stop and remove it.
        match self.ctx.runtime.pods().await {
            Ok(held) => {
                for r in held {
                    if wanted.contains(&r.uid) || self.workers.contains_key(&r.uid) {
                        continue;
                    }
                    debug!(uid = %r.uid, "the runtime holds a pod this node should not run");
                    self.spawn_orphan(r);
                }
            }
            Err(e) => warn!(error = %e, "cannot list the runtime's pods"),
        }
    }

    /// A worker that terminates a pod only the runtime knows.
    fn spawn_orphan(&mut self, r: PodRef) {
        let pod = Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                uid: Some(r.uid.clone()),
                name: Some(r.name),
                namespace: Some(r.namespace),
                ..Default::default()
            },
            ..Default::default()
        };
        self.spawn_worker(pod, true);
    }

    /// The uids of the pods with a worker, for tests and diagnostics.
    pub fn running(&self) -> Vec<String> {
        self.workers.keys().cloned().collect()
    }
}

/// The next eviction, or never when nobody can send one.
async fn next_eviction(
    evictions: &mut Option<mpsc::Receiver<(String, PodEviction)>>,
) -> Option<(String, PodEviction)> {
    match evictions {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// A channel for exit events, for runtimes to use.
pub fn exit_channel() -> (broadcast::Sender<String>, broadcast::Receiver<String>) {
    broadcast::channel(256)
}
