//! The hub's indexes, and the catch-up plan of a resuming node. No I/O.
//!
//! [`Index`] holds every bound pod of the cluster with its node and the
//! ConfigMaps/Secrets it references, and counts, per referenced object, how
//! many pods of each node use it. The router updates it with each pod event
//! and learns from it which nodes an event concerns; a pod change reports the
//! (node, object) pairs that entered or left a node's view.
//!
//! [`plan_catch_up`] turns the cached events after a node's resume revision
//! into the changes that bring the node from its old view to the current one,
//! knowing only the current view: see its documentation for the rules.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use kedge_apiserver::cache::CachedEvent;
use kedge_datastore::{EventKind, Revision};
use kedge_proto::v1::ObjectKind;
use serde_json::Value;

use super::Item;
use super::refs::{ObjectKey, pod_node, pod_refs};

/// A bound pod: its node and what it references.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodEntry {
    pub node: String,
    pub refs: Vec<ObjectKey>,
}

/// What one pod write did to the views.
#[derive(Debug, Default)]
pub struct PodChange {
    /// The node the pod was bound to before, if any.
    pub old_node: Option<String>,
    /// The node it is bound to now, if any (none when deleted).
    pub new_node: Option<String>,
    /// (node, object) pairs that entered a node's view.
    pub acquired: Vec<(String, ObjectKey)>,
    /// (node, object) pairs that left a node's view.
    pub released: Vec<(String, ObjectKey)>,
}

/// Pods by key, pods by node, and referenced objects by node.
#[derive(Debug, Default)]
pub struct Index {
    pods: HashMap<ObjectKey, PodEntry>,
    by_node: HashMap<String, HashSet<ObjectKey>>,
    refs: HashMap<ObjectKey, HashMap<String, u32>>,
}

impl Index {
    /// Records the pod at `key` as `pod` now is (`None`: deleted).
    pub fn set_pod(&mut self, key: ObjectKey, pod: Option<&Value>) -> PodChange {
        let new = pod.and_then(|p| {
            pod_node(p).map(|node| PodEntry {
                node: node.to_string(),
                refs: pod_refs(p),
            })
        });
        let old = self.pods.remove(&key);
        let mut released = Vec::new();
        let mut acquired = Vec::new();
        if let Some(old) = &old {
            if let Some(set) = self.by_node.get_mut(&old.node) {
                set.remove(&key);
                if set.is_empty() {
                    self.by_node.remove(&old.node);
                }
            }
            for r in &old.refs {
                if let Some(nodes) = self.refs.get_mut(r) {
                    if let Some(count) = nodes.get_mut(&old.node) {
                        *count = count.saturating_sub(1);
                        if *count == 0 {
                            nodes.remove(&old.node);
                            released.push((old.node.clone(), r.clone()));
                        }
                    }
                    if nodes.is_empty() {
                        self.refs.remove(r);
                    }
                }
            }
        }
        if let Some(new) = &new {
            self.by_node
                .entry(new.node.clone())
                .or_default()
                .insert(key.clone());
            for r in &new.refs {
                let count = self
                    .refs
                    .entry(r.clone())
                    .or_default()
                    .entry(new.node.clone())
                    .or_insert(0);
                *count += 1;
                if *count == 1 {
                    acquired.push((new.node.clone(), r.clone()));
                }
            }
        }
        // A ref that left and came back in this one write never moved.
        let both: HashSet<(String, ObjectKey)> = released
            .iter()
            .filter(|p| acquired.contains(p))
            .cloned()
            .collect();
        released.retain(|p| !both.contains(p));
        acquired.retain(|p| !both.contains(p));
        let change = PodChange {
            old_node: old.as_ref().map(|o| o.node.clone()),
            new_node: new.as_ref().map(|n| n.node.clone()),
            acquired,
            released,
        };
        if let Some(new) = new {
            self.pods.insert(key, new);
        }
        change
    }

    /// The nodes whose pods reference `key`.
    pub fn ref_nodes<'a>(&'a self, key: &ObjectKey) -> impl Iterator<Item = &'a String> + 'a {
        self.refs.get(key).into_iter().flat_map(|m| m.keys())
    }

    /// A node's pods, each with what it references.
    pub fn node_pods(&self, node: &str) -> HashMap<ObjectKey, Vec<ObjectKey>> {
        self.by_node
            .get(node)
            .into_iter()
            .flatten()
            .filter_map(|k| self.pods.get(k).map(|e| (k.clone(), e.refs.clone())))
            .collect()
    }

    /// How many bound pods the index holds.
    pub fn len(&self) -> usize {
        self.pods.len()
    }
}

/// An event read from the datastore's history (older than the watch cache's
/// window), decoded like the cache decodes.
#[derive(Debug)]
pub struct StoredEvent {
    pub revision: Revision,
    pub delete: bool,
    /// The object after the change, or its last state for a delete.
    pub object: Value,
    pub prev: Option<Value>,
}

/// An event as the catch-up plan reads it: from the cache or from history.
pub trait PlanEvent {
    fn revision(&self) -> Revision;
    fn object(&self) -> &Value;
    fn prev(&self) -> Option<&Value>;
    /// The item that sends the object as this event left it.
    fn item(&self, key: ObjectKey) -> Item;
}

impl PlanEvent for Arc<CachedEvent> {
    fn revision(&self) -> Revision {
        self.revision
    }
    fn object(&self) -> &Value {
        &self.object
    }
    fn prev(&self) -> Option<&Value> {
        self.prev.as_deref()
    }
    fn item(&self, key: ObjectKey) -> Item {
        Item::Event(key, self.clone())
    }
}

impl PlanEvent for Arc<StoredEvent> {
    fn revision(&self) -> Revision {
        self.revision
    }
    fn object(&self) -> &Value {
        &self.object
    }
    fn prev(&self) -> Option<&Value> {
        self.prev.as_ref()
    }
    fn item(&self, key: ObjectKey) -> Item {
        Item::Stored(key, self.clone())
    }
}

/// The changes that bring a node that held its view as of revision `r` to
/// its view as of `h`, given `events` (every cached event in `(r, h]`, in
/// order, already classified by key) and `view` (the node's pods at `h`,
/// with their references).
///
/// - A pod touched in `(r, h]` is sent as it is at `h` when it is in the view,
///   and deleted when any version seen in the events was bound to the node
///   (it left). Other pods are none of the node's business.
/// - A ConfigMap or Secret referenced at `h` and touched is sent as at `h`
///   (deleted when the last event deleted it). One that was referenced by a
///   version of one of the node's pods seen in the events, but is not
///   referenced at `h`, is deleted. Nothing else is said about Secrets, so
///   a node never even learns the name of a Secret its pods never used.
/// - Every reference of a touched pod that is in the view but has no event
///   of its own is fetched at its current version: the pod may be new to
///   the node.
/// - Services and EndpointSlices touched are sent as at `h`.
pub fn plan_catch_up<E: PlanEvent>(
    node: &str,
    view: &HashMap<ObjectKey, Vec<ObjectKey>>,
    events: &[(ObjectKey, E)],
) -> Vec<Item> {
    let referenced: HashSet<&ObjectKey> = view.values().flatten().collect();
    let mut last: HashMap<&ObjectKey, &E> = HashMap::new();
    let mut order: Vec<&ObjectKey> = Vec::new();
    let mut stale: HashSet<ObjectKey> = HashSet::new();
    let mut left: HashSet<&ObjectKey> = HashSet::new();
    for (key, ev) in events {
        if last.insert(key, ev).is_none() {
            order.push(key);
        }
        if key.kind == ObjectKind::Pod {
            for version in [Some(ev.object()), ev.prev()].into_iter().flatten() {
                if pod_node(version) == Some(node) {
                    left.insert(key);
                    stale.extend(pod_refs(version));
                }
            }
        }
    }
    let mut items = Vec::new();
    let mut needed: Vec<&ObjectKey> = Vec::new();
    for key in order {
        let Some(ev) = last.get(key) else { continue };
        match key.kind {
            ObjectKind::Pod => {
                if let Some(refs) = view.get(key) {
                    items.push(ev.item(key.clone()));
                    needed.extend(refs);
                } else if left.contains(key) {
                    items.push(Item::Gone(key.clone(), ev.revision()));
                }
            }
            ObjectKind::ConfigMap | ObjectKind::Secret => {
                if referenced.contains(key) {
                    items.push(ev.item(key.clone()));
                } else if stale.contains(key) {
                    items.push(Item::Gone(key.clone(), ev.revision()));
                }
            }
            ObjectKind::Service | ObjectKind::EndpointSlice => {
                items.push(ev.item(key.clone()));
            }
            ObjectKind::Node => {
                if key.name == node {
                    items.push(ev.item(key.clone()));
                }
            }
            ObjectKind::Unspecified => {}
        }
    }
    // References that left the view without an event of their own (their
    // last pod moved away or was deleted).
    let revision = events.last().map(|(_, e)| e.revision()).unwrap_or_default();
    let mut stale: Vec<ObjectKey> = stale.into_iter().collect();
    stale.sort();
    for key in stale {
        if !referenced.contains(&key) && !last.contains_key(&key) {
            items.push(Item::Gone(key, revision));
        }
    }
    let mut fetched = HashSet::new();
    for key in needed {
        if !last.contains_key(key) && fetched.insert(key) {
            items.push(Item::Fetch(key.clone()));
        }
    }
    items
}

/// Whether a cached event removed its object.
pub fn is_delete(ev: &CachedEvent) -> bool {
    matches!(ev.kind, EventKind::Delete)
}
