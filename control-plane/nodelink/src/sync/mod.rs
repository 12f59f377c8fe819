//! The per-node desired-state sync: what `Node.Sync` streams to an agent.
//!
//! A node's view is: the pods bound to it (`spec.nodeName`, terminating ones
//! included); the ConfigMaps and Secrets those pods reference (see [`refs`]);
//! every Service and EndpointSlice (the node's proxy needs them all).
//! ServiceAccount tokens are not part of the view yet.
//!
//! # Design
//!
//! One [`SyncHub`] per server runs one *router*: a single cursor into the
//! apiserver's watch cache. The router keeps an `index::Index` of every
//! bound pod (node, referenced objects) and, for each batch of events it
//! reads, routes each event only to the connected nodes it concerns: a pod
//! event to its old and new node, a ConfigMap/Secret event to the nodes whose
//! pods reference it (index lookup), a Service/EndpointSlice event to every
//! connected node. A pod write that makes a node reference an object for the
//! first time queues a *fetch* of that object's current version for that
//! node; one that drops a node's last reference queues a delete. So the cost
//! of an event is the number of nodes it concerns, not the number of nodes.
//!
//! Each connected node has a bounded queue, filled by the router with
//! `try_send` only: the router never waits for an agent. A node whose queue is
//! full has fallen behind; its stream is ended and its agent resumes from its
//! last acked revision. Each node stream is a task that drains its queue,
//! merges whatever is queued into one batch (one batch per wake-up, the last
//! change of each object wins), performs the fetches, and sends it.
//!
//! Objects that leave a node's view (a pod moved or deleted, a ConfigMap or
//! Secret no longer referenced by any of its pods) are sent as
//! `deleted: true`: the server decides the view, the agent only mirrors it.
//!
//! Revisions: every batch carries the router position it was read up to, so
//! an ack means "everything up to here". An idle node gets an empty batch
//! with the current position every `progress_interval`, so that its ack keeps
//! up with the cache window and a reconnect rarely needs a reset.
//!
//! A stream resuming from `r` is registered at the router's current position
//! `h` (under the hub lock, so no event is lost or routed twice), and its
//! first batch is planned from the cached events in `(r, h]` and the node's
//! view at `h` (`index::plan_catch_up`). A resume older than the cache
//! window (the usual case after a server restart, whose cache starts empty)
//! reads the events in `(r, h]` from the datastore's history instead, the
//! way an API watch from before the window does. Only a resume of 0, one
//! from before the datastore's compaction, or one whose history does not
//! reach `h` within `history_wait` gets a `reset` batch: the full view read
//! from the registry. Content read after `h` may be newer than
//! `h`; the events after `h` that follow bring every object to its latest
//! version again, so the agent converges.
//!
//! Architecture invariant: a Secret (or ConfigMap) is sent to a node only
//! while one of that node's pods references it.

mod index;
pub mod refs;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use futures::StreamExt;
use kedge_apiserver::cache::{CachedEvent, REGISTRY_PREFIX, Read, decode};
use kedge_apiserver::registry::{self, ListOpts, Registry};
use kedge_datastore::{EventKind, Revision};
use kedge_proto::v1::{Change, ObjectKind, SyncBatch};
use kedge_resources::catalog::{self, ResourceInfo};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tracing::Instrument;

use index::{Index, StoredEvent, is_delete, plan_catch_up};
use refs::{ObjectKey, pod_refs};

/// How the hub behaves.
#[derive(Clone, Debug)]
pub struct SyncConfig {
    /// Routed batches a node may have queued before it counts as fallen
    /// behind and its stream is ended.
    pub node_queue: usize,
    /// How often an idle node is told the current revision.
    pub progress_interval: Duration,
    /// How long a stream resuming from a revision the router has not reached
    /// yet (another server was ahead) waits for it before resetting.
    pub resume_wait: Duration,
    /// How long a stream resuming from before the cache window waits for
    /// the datastore's history to reach the router's position before it
    /// gives up and resets.
    pub history_wait: Duration,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            node_queue: 64,
            progress_interval: Duration::from_secs(60),
            resume_wait: Duration::from_secs(3),
            history_wait: Duration::from_secs(2),
        }
    }
}

/// One routed change for one node.
#[derive(Clone, Debug)]
pub(crate) enum Item {
    /// The object as this event left it (deleted when the event deleted it).
    Event(ObjectKey, Arc<CachedEvent>),
    /// The same, for an event read from the datastore's history.
    Stored(ObjectKey, Arc<StoredEvent>),
    /// The object left the node's view at this revision.
    Gone(ObjectKey, Revision),
    /// The object entered the view without an event of its own: send its
    /// current version.
    Fetch(ObjectKey),
}

#[derive(Debug)]
struct Routed {
    revision: Revision,
    items: Vec<Item>,
}

#[derive(Debug)]
struct Sub {
    id: u64,
    tx: mpsc::Sender<Routed>,
    last_sent: Revision,
}

#[derive(Debug, Default)]
struct State {
    /// The router's position; `None` until its index is built.
    cursor: Option<Revision>,
    generation: u64,
    index: Index,
    subs: HashMap<String, Sub>,
    next_id: u64,
}

/// The per-server sync hub: one router over the watch cache, and one stream
/// per connected node.
#[derive(Debug)]
pub struct SyncHub {
    registry: Registry,
    config: SyncConfig,
    state: Mutex<State>,
    /// The router's position, for streams waiting for it.
    position: watch::Sender<Option<Revision>>,
    acks: Mutex<HashMap<String, u64>>,
}

struct Kinds {
    table: Vec<(ObjectKind, &'static ResourceInfo, String)>,
}

static KINDS: LazyLock<Kinds> = LazyLock::new(|| {
    let wanted = [
        (ObjectKind::Pod, "", "pods"),
        (ObjectKind::ConfigMap, "", "configmaps"),
        (ObjectKind::Secret, "", "secrets"),
        (ObjectKind::Service, "", "services"),
        (
            ObjectKind::EndpointSlice,
            "discovery.k8s.io",
            "endpointslices",
        ),
        (ObjectKind::Node, "", "nodes"),
    ];
    let table = wanted
        .into_iter()
        .filter_map(|(kind, group, plural)| {
            let info = catalog::find(group, "v1", plural)?;
            Some((kind, info, registry::prefix(info, None)))
        })
        .collect();
    Kinds { table }
});

/// The resource of a kind the sync carries.
pub fn resource(kind: ObjectKind) -> Option<&'static ResourceInfo> {
    KINDS
        .table
        .iter()
        .find(|(k, _, _)| *k == kind)
        .map(|(_, info, _)| *info)
}

/// The object a datastore key names, if it is of a kind the sync carries.
pub fn object_key(key: &str) -> Option<ObjectKey> {
    KINDS.table.iter().find_map(|(kind, _, prefix)| {
        let rest = key.strip_prefix(prefix.as_str())?;
        if *kind == ObjectKind::Node {
            // Cluster-scoped: the key ends with the name.
            return (!rest.is_empty() && !rest.contains('/'))
                .then(|| ObjectKey::new(*kind, "", rest));
        }
        let (ns, name) = rest.split_once('/')?;
        (!name.contains('/')).then(|| ObjectKey::new(*kind, ns, name))
    })
}

fn revision_of(obj: &Value) -> u64 {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or_default()
}

/// Whether an update of a Node changed only its status (heartbeats, conditions,
/// images): the agent has no use for those, and they are most of a node's writes.
fn status_only(ev: &CachedEvent) -> bool {
    let Some(prev) = &ev.prev else {
        return false;
    };
    let same = |path: &str| ev.object.pointer(path) == prev.pointer(path);
    !is_delete(ev)
        && same("/spec")
        && same("/metadata/labels")
        && same("/metadata/annotations")
        && same("/metadata/deletionTimestamp")
}

fn upsert(key: &ObjectKey, obj: &Value) -> Change {
    Change {
        kind: key.kind as i32,
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        revision: revision_of(obj),
        deleted: false,
        object: serde_json::to_vec(obj).unwrap_or_default(),
    }
}

fn gone(key: &ObjectKey, revision: Revision) -> Change {
    Change {
        kind: key.kind as i32,
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        revision: u64::try_from(revision).unwrap_or_default(),
        deleted: true,
        object: Vec::new(),
    }
}

/// Unregisters a node stream when it ends, unless a newer stream of the
/// same node replaced it.
struct Unsubscribe<'a> {
    hub: &'a SyncHub,
    node: &'a str,
    id: u64,
}

impl Drop for Unsubscribe<'_> {
    fn drop(&mut self) {
        let mut st = self.hub.lock();
        if st.subs.get(self.node).is_some_and(|s| s.id == self.id) {
            st.subs.remove(self.node);
        }
    }
}

enum Start {
    Reset,
    /// From the cache: the events in `(resume, h]` and the view at `h`.
    Resume(
        Vec<(ObjectKey, Arc<CachedEvent>)>,
        HashMap<ObjectKey, Vec<ObjectKey>>,
    ),
    /// From before the cache window: the view at `h`; the events come from
    /// the datastore's history.
    History(HashMap<ObjectKey, Vec<ObjectKey>>),
}

impl SyncHub {
    /// Starts the hub's router with the default configuration.
    pub fn start(registry: Registry) -> Arc<SyncHub> {
        SyncHub::with_config(registry, SyncConfig::default())
    }

    /// Starts the hub's router.
    pub fn with_config(registry: Registry, config: SyncConfig) -> Arc<SyncHub> {
        let (position, _) = watch::channel(None);
        let hub = Arc::new(SyncHub {
            registry,
            config,
            state: Mutex::new(State::default()),
            position,
            acks: Mutex::new(HashMap::new()),
        });
        let weak = Arc::downgrade(&hub);
        tokio::spawn(route_loop(weak).instrument(tracing::info_span!("sync_router")));
        hub
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The desired state of `node` as a stream of batches: first the changes
    /// after `resume_revision` (or a reset), then live changes. A newer
    /// stream of the same node ends this one. The stream ends with an
    /// `UNAVAILABLE` status when it fell behind or the server's history was
    /// reset; the agent then calls `Sync` again with its last ack.
    pub fn stream(
        self: &Arc<Self>,
        node: String,
        resume_revision: u64,
    ) -> ReceiverStream<Result<SyncBatch, Status>> {
        let (out, rx) = mpsc::channel(2);
        let hub = self.clone();
        let span = tracing::info_span!("sync", node = %node);
        tokio::spawn(
            async move {
                let ended = hub.serve(&node, resume_revision, &out).await;
                if let Err(status) = ended {
                    tracing::debug!(%status, "sync stream ended");
                    let _ = out.send(Err(status)).await;
                }
            }
            .instrument(span),
        );
        ReceiverStream::new(rx)
    }

    /// Records that `node` holds everything up to `revision`.
    pub fn ack(&self, node: &str, revision: u64) {
        let mut acks = self.acks.lock().unwrap_or_else(|e| e.into_inner());
        acks.insert(node.to_string(), revision);
    }

    /// The last revision `node` acked, if it did since this server started.
    pub fn acked(&self, node: &str) -> Option<u64> {
        let acks = self.acks.lock().unwrap_or_else(|e| e.into_inner());
        acks.get(node).copied()
    }

    /// How many node streams are connected.
    pub fn connected(&self) -> usize {
        self.lock().subs.len()
    }

    async fn serve(
        &self,
        node: &str,
        resume: u64,
        out: &mpsc::Sender<Result<SyncBatch, Status>>,
    ) -> Result<(), Status> {
        let want = Revision::try_from(resume).unwrap_or(Revision::MAX);
        self.wait_for_router(want).await?;
        let (tx, mut rx) = mpsc::channel(self.config.node_queue.max(1));
        let cache = self.registry.cache().clone();
        let (id, h, start) = {
            let mut st = self.lock();
            let Some(h) = st.cursor else {
                return Err(Status::unavailable("sync is restarting; try again"));
            };
            let id = st.next_id;
            st.next_id += 1;
            // Replacing a node's subscription drops the old sender, which
            // ends the old stream.
            st.subs.insert(
                node.to_string(),
                Sub {
                    id,
                    tx,
                    last_sent: h,
                },
            );
            let start = if resume == 0 || want > h {
                Start::Reset
            } else {
                match cache.read(want, st.generation) {
                    Read::Lost => Start::History(st.index.node_pods(node)),
                    Read::Events(events, _) => {
                        let events = events
                            .into_iter()
                            .take_while(|e| e.revision <= h)
                            .filter_map(|e| object_key(&e.key).map(|k| (k, e)))
                            .collect();
                        Start::Resume(events, st.index.node_pods(node))
                    }
                }
            };
            (id, h, start)
        };
        let _guard = Unsubscribe {
            hub: self,
            node,
            id,
        };
        let (items, events, from) = match start {
            Start::Reset => (None, 0, "nowhere"),
            Start::Resume(events, view) => (
                Some(plan_catch_up(node, &view, &events)),
                events.len(),
                "the watch cache",
            ),
            Start::History(view) => match self.history(want, h).await? {
                Some(events) => (
                    Some(plan_catch_up(node, &view, &events)),
                    events.len(),
                    "the datastore's history",
                ),
                None => (None, 0, "nowhere"),
            },
        };
        let first = match items {
            Some(items) => {
                tracing::info!(
                    resume,
                    revision = h,
                    events,
                    changes = items.len(),
                    "sync: resumed from {from}"
                );
                SyncBatch {
                    revision: h as u64,
                    reset: false,
                    changes: self.resolve(items, h).await?,
                }
            }
            None => {
                tracing::info!(resume, revision = h, "sync: full resync");
                self.full_view(node, h).await?
            }
        };
        if out.send(Ok(first)).await.is_err() {
            return Ok(());
        }
        loop {
            let routed = tokio::select! {
                r = rx.recv() => r,
                _ = out.closed() => return Ok(()),
            };
            let Some(routed) = routed else {
                return Err(Status::unavailable(
                    "sync stream ended by the server (fell behind, replaced, or history reset); resume from the last acked revision",
                ));
            };
            let mut revision = routed.revision;
            let mut items = routed.items;
            while let Ok(more) = rx.try_recv() {
                revision = more.revision;
                items.extend(more.items);
            }
            let batch = SyncBatch {
                revision: revision as u64,
                reset: false,
                changes: self.resolve(items, revision).await?,
            };
            if out.send(Ok(batch)).await.is_err() {
                return Ok(());
            }
        }
    }

    /// Waits until the router is ready and, within `resume_wait`, has reached
    /// `want`.
    async fn wait_for_router(&self, want: Revision) -> Result<(), Status> {
        let mut position = self.position.subscribe();
        let deadline = tokio::time::Instant::now() + self.config.resume_wait;
        loop {
            let now = *position.borrow_and_update();
            if now.is_some_and(|p| p >= want) {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, position.changed())
                .await
                .is_err()
            {
                return if now.is_some() {
                    Ok(())
                } else {
                    Err(Status::unavailable("sync is starting; try again"))
                };
            }
        }
    }

    /// Turns routed items into changes: the last item of each object wins,
    /// fetches read the object's current version.
    async fn resolve(&self, items: Vec<Item>, revision: Revision) -> Result<Vec<Change>, Status> {
        let mut slot: HashMap<ObjectKey, usize> = HashMap::new();
        let mut latest: Vec<Option<Item>> = Vec::new();
        for item in items {
            let key = match &item {
                Item::Event(k, _) | Item::Stored(k, _) | Item::Gone(k, _) | Item::Fetch(k) => {
                    k.clone()
                }
            };
            match slot.get(&key) {
                Some(&i) => latest[i] = Some(item),
                None => {
                    slot.insert(key, latest.len());
                    latest.push(Some(item));
                }
            }
        }
        let mut changes = Vec::with_capacity(latest.len());
        for item in latest.into_iter().flatten() {
            let change = match item {
                Item::Event(key, ev) if is_delete(&ev) => gone(&key, ev.revision),
                Item::Event(key, ev) => Change {
                    kind: key.kind as i32,
                    namespace: key.namespace,
                    name: key.name,
                    revision: u64::try_from(ev.revision).unwrap_or_default(),
                    deleted: false,
                    object: ev.object_json().to_vec(),
                },
                Item::Stored(key, ev) if ev.delete => gone(&key, ev.revision),
                Item::Stored(key, ev) => upsert(&key, &ev.object),
                Item::Gone(key, rev) => gone(&key, rev),
                Item::Fetch(key) => match self.fetch(&key).await? {
                    Some(obj) => upsert(&key, &obj),
                    None => gone(&key, revision),
                },
            };
            changes.push(change);
        }
        Ok(changes)
    }

    /// The events in `(from, h]` from the datastore's history, for a resume
    /// from before the cache window; `None` when that history is compacted,
    /// or when it does not reach `h` within `history_wait` (then a reset is
    /// the safe answer: a catch-up must never miss an event).
    async fn history(
        &self,
        from: Revision,
        h: Revision,
    ) -> Result<Option<Vec<(ObjectKey, Arc<StoredEvent>)>>, Status> {
        let mut out = Vec::new();
        if from >= h {
            return Ok(Some(out));
        }
        let unavailable = |e: kedge_datastore::Error| {
            Status::unavailable(format!("cannot read the datastore's history: {e}"))
        };
        let store = self.registry.store().clone();
        let mut stream = match store.watch(REGISTRY_PREFIX, from + 1).await {
            Ok(s) => s,
            Err(kedge_datastore::Error::Compacted { .. }) => return Ok(None),
            Err(e) => return Err(unavailable(e)),
        };
        let deadline = tokio::time::Instant::now() + self.config.history_wait;
        loop {
            let ev = match tokio::time::timeout_at(deadline, stream.next()).await {
                Err(_) => {
                    tracing::info!(from, h, "sync: history did not reach the router in time");
                    return Ok(None);
                }
                Ok(None) => return Err(Status::unavailable("the datastore's history ended")),
                Ok(Some(Err(kedge_datastore::Error::Compacted { .. }))) => return Ok(None),
                Ok(Some(Err(e))) => return Err(unavailable(e)),
                Ok(Some(Ok(ev))) => ev,
            };
            let revision = ev.revision();
            if revision > h {
                return Ok(Some(out));
            }
            if let Some(key) = object_key(&ev.kv.key) {
                let prev = ev
                    .prev_kv
                    .as_ref()
                    .and_then(|kv| decode(&kv.value, kv.mod_revision));
                let delete = ev.kind == EventKind::Delete;
                let object = if delete {
                    prev.clone().map(|mut p| {
                        if let Some(meta) = p.get_mut("metadata").and_then(Value::as_object_mut) {
                            meta.insert("resourceVersion".into(), revision.to_string().into());
                        }
                        p
                    })
                } else {
                    decode(&ev.kv.value, revision)
                };
                if let Some(object) = object {
                    let stored = StoredEvent {
                        revision,
                        delete,
                        object,
                        prev,
                    };
                    out.push((key, Arc::new(stored)));
                }
            }
            if revision == h {
                return Ok(Some(out));
            }
        }
    }

    async fn fetch(&self, key: &ObjectKey) -> Result<Option<Value>, Status> {
        let Some(info) = resource(key.kind) else {
            return Ok(None);
        };
        let namespace = (!key.namespace.is_empty()).then_some(key.namespace.as_str());
        match self.registry.get(info, namespace, &key.name, None).await {
            Ok(obj) => Ok(Some(obj)),
            Err(e) if e.code == 404 => Ok(None),
            Err(e) => Err(Status::unavailable(format!(
                "cannot read {} {}/{}: {}",
                info.kind, key.namespace, key.name, e.message
            ))),
        }
    }

    async fn list_all(
        &self,
        kind: ObjectKind,
        opts: &ListOpts,
        changes: &mut Vec<Change>,
    ) -> Result<Vec<Value>, Status> {
        let Some(info) = resource(kind) else {
            return Ok(Vec::new());
        };
        let list = self.registry.list(info, None, opts).await.map_err(|e| {
            Status::unavailable(format!("cannot list {}: {}", info.plural, e.message))
        })?;
        for obj in &list.items {
            let ns = obj
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let name = obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            changes.push(upsert(&ObjectKey::new(kind, ns, name), obj));
        }
        Ok(list.items)
    }

    /// The node's whole view, as a reset batch at revision `h`.
    async fn full_view(&self, node: &str, h: Revision) -> Result<SyncBatch, Status> {
        let mut changes = Vec::new();
        let field =
            kedge_apimachinery::selector::FieldSelector::parse(&format!("spec.nodeName={node}"))
                .map_err(|e| Status::invalid_argument(format!("bad node name {node:?}: {e}")))?;
        let opts = ListOpts {
            field,
            ..Default::default()
        };
        let pods = self.list_all(ObjectKind::Pod, &opts, &mut changes).await?;
        let mut refs: Vec<ObjectKey> = pods.iter().flat_map(pod_refs).collect();
        refs.sort();
        refs.dedup();
        for key in refs {
            if let Some(obj) = self.fetch(&key).await? {
                changes.push(upsert(&key, &obj));
            }
        }
        let all = ListOpts::default();
        self.list_all(ObjectKind::Service, &all, &mut changes)
            .await?;
        self.list_all(ObjectKind::EndpointSlice, &all, &mut changes)
            .await?;
        let own = ObjectKey::new(ObjectKind::Node, "", node);
        if let Some(obj) = self.fetch(&own).await? {
            changes.push(upsert(&own, &obj));
        }
        Ok(SyncBatch {
            revision: h as u64,
            reset: true,
            changes,
        })
    }

    /// Routes one read of the cache to the nodes it concerns.
    fn route(&self, events: &[Arc<CachedEvent>], upto: Revision) {
        let mut st = self.lock();
        let st = &mut *st;
        let mut out: HashMap<String, Vec<Item>> = HashMap::new();
        let subs = &st.subs;
        let mut push = |node: &str, item: Item| {
            if subs.contains_key(node) {
                out.entry(node.to_string()).or_default().push(item);
            }
        };
        for ev in events {
            let Some(key) = object_key(&ev.key) else {
                continue;
            };
            match key.kind {
                ObjectKind::Pod => {
                    let now = (!is_delete(ev)).then_some(&*ev.object);
                    let change = st.index.set_pod(key.clone(), now);
                    if let Some(n) = &change.new_node {
                        push(n, Item::Event(key.clone(), ev.clone()));
                    }
                    if let Some(o) = &change.old_node
                        && change.new_node.as_ref() != Some(o)
                    {
                        push(o, Item::Gone(key.clone(), ev.revision));
                    }
                    for (n, r) in change.acquired {
                        push(&n, Item::Fetch(r));
                    }
                    for (n, r) in change.released {
                        push(&n, Item::Gone(r, ev.revision));
                    }
                }
                ObjectKind::ConfigMap | ObjectKind::Secret => {
                    for n in st.index.ref_nodes(&key) {
                        push(n, Item::Event(key.clone(), ev.clone()));
                    }
                }
                ObjectKind::Service | ObjectKind::EndpointSlice => {
                    for n in subs.keys() {
                        push(n, Item::Event(key.clone(), ev.clone()));
                    }
                }
                ObjectKind::Node => {
                    if !status_only(ev) {
                        push(&key.name, Item::Event(key.clone(), ev.clone()));
                    }
                }
                ObjectKind::Unspecified => {}
            }
        }
        st.cursor = Some(upto);
        for (node, items) in out {
            deliver(
                &mut st.subs,
                &node,
                Routed {
                    revision: upto,
                    items,
                },
            );
        }
    }

    /// Tells idle nodes the current position.
    fn progress(&self) {
        let mut st = self.lock();
        let Some(cursor) = st.cursor else { return };
        let behind: Vec<String> = st
            .subs
            .iter()
            .filter(|(_, s)| s.last_sent < cursor)
            .map(|(n, _)| n.clone())
            .collect();
        for node in behind {
            deliver(
                &mut st.subs,
                &node,
                Routed {
                    revision: cursor,
                    items: Vec::new(),
                },
            );
        }
    }
}

/// Queues a routed batch for a node without waiting; a node whose queue is
/// full has fallen behind and is dropped (its stream ends).
fn deliver(subs: &mut HashMap<String, Sub>, node: &str, routed: Routed) {
    let Some(sub) = subs.get_mut(node) else {
        return;
    };
    let revision = routed.revision;
    match sub.tx.try_send(routed) {
        Ok(()) => sub.last_sent = revision,
        Err(mpsc::error::TrySendError::Full(_)) => {
            tracing::warn!(node, revision, "sync: node fell behind; ending its stream");
            subs.remove(node);
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {
            subs.remove(node);
        }
    }
}

/// The router: builds the pod index from a list, then follows the watch
/// cache from the list's revision, routing each read. When the cache loses
/// its cursor (the router fell out of the window, or the cache restarted) it
/// rebuilds and ends every node stream.
async fn route_loop(hub: Weak<SyncHub>) {
    loop {
        let Some(h) = hub.upgrade() else { return };
        let cache = h.registry.cache().clone();
        let mut position = cache.subscribe();
        let (_, generation) = cache.window_start();
        let Some(pods_info) = resource(ObjectKind::Pod) else {
            tracing::error!("sync: the pod resource is not in the catalogue");
            return;
        };
        let list = match h.registry.list(pods_info, None, &ListOpts::default()).await {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!(error = %e.message, "sync: cannot list pods; retrying");
                drop(h);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut index = Index::default();
        for pod in &list.items {
            let ns = pod.pointer("/metadata/namespace").and_then(Value::as_str);
            let name = pod.pointer("/metadata/name").and_then(Value::as_str);
            if let (Some(ns), Some(name)) = (ns, name) {
                index.set_pod(ObjectKey::new(ObjectKind::Pod, ns, name), Some(pod));
            }
        }
        let mut cursor = list.revision;
        tracing::info!(revision = cursor, pods = index.len(), "sync: router ready");
        {
            let mut st = h.lock();
            st.generation = generation;
            st.index = index;
            st.subs.clear();
            st.cursor = Some(cursor);
        }
        h.position.send_replace(Some(cursor));
        let mut progress = tokio::time::interval(h.config.progress_interval);
        progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        progress.tick().await;
        drop(h);
        loop {
            let Some(h) = hub.upgrade() else { return };
            match cache.read(cursor, generation) {
                Read::Lost => {
                    tracing::warn!(
                        cursor,
                        "sync: router lost its place in the watch cache; rebuilding"
                    );
                    h.lock().cursor = None;
                    h.position.send_replace(None);
                    break;
                }
                Read::Events(events, upto) => {
                    if !events.is_empty() || upto > cursor {
                        h.route(&events, upto);
                        cursor = upto;
                        h.position.send_replace(Some(cursor));
                    }
                }
            }
            drop(h);
            tokio::select! {
                changed = position.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                _ = progress.tick() => {
                    if let Some(h) = hub.upgrade() {
                        h.progress();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
