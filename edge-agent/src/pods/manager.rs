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

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kedge_proto::v1::ObjectKind;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, info, warn};

use super::runtime::PodRef;
use super::worker::{PodContext, Worker, WorkerEnd, WorkerMsg};
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
        }
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
        tokio::pin!(shutdown);
        info!("pod manager started");
        loop {
            self.reconcile().await;
            tokio::select! {
                _ = &mut shutdown => break,
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

/// A channel for exit events, for runtimes to use.
pub fn exit_channel() -> (broadcast::Sender<String>, broadcast::Receiver<String>) {
    broadcast::channel(256)
}
