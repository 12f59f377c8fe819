//! The garbage collector: dependents go when their owners go, with
//! upstream's three propagation policies.
//!
//! It watches the kinds that carry ownerReferences in practice
//! ([`watched_kinds`]) and, after each burst of changes, plans over the
//! whole graph ([`plan`], a pure function):
//! - **Background** (the default): an object whose owners are all gone is
//!   deleted; an owner that is gone is removed from the ownerReferences of
//!   an object that still has other owners.
//! - **Foreground**: an owner being deleted with the `foregroundDeletion`
//!   finalizer has its dependents deleted (in foreground too); the
//!   finalizer is removed once no dependent with `blockOwnerDeletion` is
//!   left, which completes the owner's deletion.
//! - **Orphan**: an owner being deleted with the `orphan` finalizer has
//!   its reference removed from every dependent; then the finalizer goes.
//!
//! "Gone" is never judged from the caches alone, which may lag: an owner
//! missing from them is looked up through the API (by kind, name and uid)
//! before anything is deleted. Every delete carries the dependent's uid as
//! a precondition, and every ownerReference edit its resourceVersion.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions,
    PropagationPolicy,
};
use kube::runtime::watcher;
use serde_json::json;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::cache::Cache;
use crate::{Context, ControllerFuture, Error};

/// A kind the collector watches.
#[derive(Debug, Clone)]
pub struct Kind {
    /// Group, version, kind and plural.
    pub resource: ApiResource,
    /// Whether its objects live in namespaces.
    pub namespaced: bool,
}

fn kind<K>(namespaced: bool) -> Kind
where
    K: kube::Resource<DynamicType = ()>,
{
    Kind {
        resource: ApiResource::erase::<K>(&()),
        namespaced,
    }
}

/// The kinds whose objects are owners or dependents in practice.
pub fn watched_kinds() -> Vec<Kind> {
    use k8s_openapi::api::{apps::v1 as apps, batch::v1 as batch, core::v1 as core};
    vec![
        kind::<core::Pod>(true),
        kind::<core::ConfigMap>(true),
        kind::<core::Secret>(true),
        kind::<core::Service>(true),
        kind::<core::Endpoints>(true),
        kind::<core::ServiceAccount>(true),
        kind::<apps::Deployment>(true),
        kind::<apps::ReplicaSet>(true),
        kind::<apps::DaemonSet>(true),
        kind::<apps::StatefulSet>(true),
        kind::<apps::ControllerRevision>(true),
        kind::<batch::Job>(true),
        kind::<batch::CronJob>(true),
        kind::<k8s_openapi::api::discovery::v1::EndpointSlice>(true),
    ]
}

/// One object of the graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Index into the watched kinds.
    pub kind: usize,
    /// Namespace, for namespaced kinds.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
    /// resourceVersion, for guarded edits.
    pub resource_version: Option<String>,
    /// Its owners.
    pub owners: Vec<OwnerReference>,
    /// Whether it is being deleted.
    pub deleting: bool,
    /// Its finalizers.
    pub finalizers: Vec<String>,
}

/// What the collector does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Delete this dependent, with this policy, once every listed owner is
    /// confirmed gone (an empty list: no confirmation needed).
    Delete {
        /// The dependent.
        item: Item,
        /// Propagation of the delete.
        policy: &'static str,
        /// Owners to confirm gone first.
        confirm_gone: Vec<OwnerReference>,
    },
    /// Remove these owners from the dependent's ownerReferences (those in
    /// `confirm_gone` only once confirmed gone).
    RemoveOwners {
        /// The dependent.
        item: Item,
        /// The owner uids to remove.
        uids: Vec<String>,
        /// Owners to confirm gone first.
        confirm_gone: Vec<OwnerReference>,
    },
    /// Remove a finalizer from an owner whose dependents are dealt with.
    RemoveFinalizer {
        /// The owner.
        item: Item,
        /// `orphan` or `foregroundDeletion`.
        finalizer: &'static str,
    },
}

/// The collector's decisions over a graph.
pub fn plan(items: &[Item]) -> Vec<Action> {
    let by_uid: HashMap<&str, &Item> = items.iter().map(|i| (i.uid.as_str(), i)).collect();
    let mut dependents: HashMap<&str, Vec<&Item>> = HashMap::new();
    for item in items {
        for owner in &item.owners {
            dependents.entry(owner.uid.as_str()).or_default().push(item);
        }
    }
    let mut actions = Vec::new();
    let mut handled: HashSet<&str> = HashSet::new();
    for owner in items.iter().filter(|i| i.deleting) {
        let deps = dependents
            .get(owner.uid.as_str())
            .cloned()
            .unwrap_or_default();
        if owner.finalizers.iter().any(|f| f == "orphan") {
            if deps.is_empty() {
                actions.push(Action::RemoveFinalizer {
                    item: owner.clone(),
                    finalizer: "orphan",
                });
            }
            for dep in deps {
                handled.insert(dep.uid.as_str());
                actions.push(Action::RemoveOwners {
                    item: dep.clone(),
                    uids: vec![owner.uid.clone()],
                    confirm_gone: vec![],
                });
            }
        } else if owner.finalizers.iter().any(|f| f == "foregroundDeletion") {
            let blocking = deps.iter().any(|d| {
                d.owners
                    .iter()
                    .any(|o| o.uid == owner.uid && o.block_owner_deletion == Some(true))
            });
            if !blocking {
                actions.push(Action::RemoveFinalizer {
                    item: owner.clone(),
                    finalizer: "foregroundDeletion",
                });
            }
            for dep in deps.into_iter().filter(|d| !d.deleting) {
                handled.insert(dep.uid.as_str());
                actions.push(Action::Delete {
                    item: dep.clone(),
                    policy: "Foreground",
                    confirm_gone: vec![],
                });
            }
        }
    }
    for item in items.iter().filter(|i| !i.owners.is_empty() && !i.deleting) {
        if handled.contains(item.uid.as_str()) {
            continue;
        }
        let missing: Vec<OwnerReference> = item
            .owners
            .iter()
            .filter(|o| !by_uid.contains_key(o.uid.as_str()))
            .cloned()
            .collect();
        if missing.is_empty() {
            continue;
        }
        if missing.len() == item.owners.len() {
            actions.push(Action::Delete {
                item: item.clone(),
                policy: "Background",
                confirm_gone: missing,
            });
        } else {
            actions.push(Action::RemoveOwners {
                item: item.clone(),
                uids: missing.iter().map(|o| o.uid.clone()).collect(),
                confirm_gone: missing,
            });
        }
    }
    actions
}

/// The garbage collector.
pub fn controller(ctx: &Context) -> ControllerFuture {
    let ctx = ctx.clone();
    async move { run(ctx).await }.boxed()
}

struct Collector {
    ctx: Context,
    kinds: Vec<Kind>,
    /// Owners confirmed gone, by uid (a uid never comes back).
    gone: HashSet<String>,
    /// Recent actions, by dependent uid, so that a lagging cache does not
    /// repeat them.
    recent: HashMap<String, Instant>,
}

async fn run(ctx: Context) -> Result<(), Error> {
    let kinds = watched_kinds();
    let mut caches = Vec::new();
    let mut drivers = futures::stream::FuturesUnordered::new();
    for k in &kinds {
        let api: Api<DynamicObject> = Api::all_with(ctx.client.clone(), &k.resource);
        let (cache, driver) =
            Cache::<DynamicObject>::start_with(api, watcher::Config::default(), k.resource.clone());
        caches.push(cache);
        drivers.push(driver);
    }
    let mut collector = Collector {
        ctx,
        kinds,
        gone: HashSet::new(),
        recent: HashMap::new(),
    };
    let work = async {
        for c in &caches {
            c.ready().await;
        }
        loop {
            collector.pass(&caches).await;
            let changed =
                futures::future::select_all(caches.iter().map(|c| Box::pin(c.changed.notified())));
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep(Duration::from_secs(30)) => {}
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::select! {
        _ = drivers.next() => {}
        _ = work => {}
    }
    Ok(())
}

impl Collector {
    async fn pass(&mut self, caches: &[Cache<DynamicObject>]) {
        let mut items = Vec::new();
        for (index, cache) in caches.iter().enumerate() {
            for obj in cache.store.state() {
                let m = &obj.metadata;
                items.push(Item {
                    kind: index,
                    namespace: m.namespace.clone(),
                    name: m.name.clone().unwrap_or_default(),
                    uid: m.uid.clone().unwrap_or_default(),
                    resource_version: m.resource_version.clone(),
                    owners: m.owner_references.clone().unwrap_or_default(),
                    deleting: m.deletion_timestamp.is_some(),
                    finalizers: m.finalizers.clone().unwrap_or_default(),
                });
            }
        }
        let now = Instant::now();
        self.recent
            .retain(|_, at| now.duration_since(*at) < Duration::from_secs(5));
        let actions: Vec<Action> = plan(&items)
            .into_iter()
            .filter(|a| !self.recent.contains_key(&action_key(a)))
            .collect();
        if actions.is_empty() {
            return;
        }
        debug!(count = actions.len(), "garbage collection");
        // Confirm the missing owners first, one lookup each.
        let mut to_confirm: Vec<(Option<String>, OwnerReference)> = Vec::new();
        for a in &actions {
            let (item, owners) = match a {
                Action::Delete {
                    item, confirm_gone, ..
                }
                | Action::RemoveOwners {
                    item, confirm_gone, ..
                } => (item, confirm_gone),
                Action::RemoveFinalizer { .. } => continue,
            };
            for o in owners {
                if !self.gone.contains(&o.uid) && !to_confirm.iter().any(|(_, c)| c.uid == o.uid) {
                    to_confirm.push((item.namespace.clone(), o.clone()));
                }
            }
        }
        let confirmed: Vec<Option<String>> = futures::stream::iter(to_confirm)
            .map(|(ns, owner)| {
                let client = self.ctx.client.clone();
                let kinds = self.kinds.clone();
                async move {
                    owner_gone(client, &kinds, ns.as_deref(), &owner)
                        .await
                        .then_some(owner.uid)
                }
            })
            .buffer_unordered(8)
            .collect()
            .await;
        self.gone.extend(confirmed.into_iter().flatten());
        let gone = &self.gone;
        let runnable: Vec<Action> = actions
            .into_iter()
            .filter(|a| match a {
                Action::Delete { confirm_gone, .. } | Action::RemoveOwners { confirm_gone, .. } => {
                    confirm_gone.iter().all(|o| gone.contains(&o.uid))
                }
                Action::RemoveFinalizer { .. } => true,
            })
            .collect();
        for a in &runnable {
            self.recent.insert(action_key(a), now);
        }
        let client = self.ctx.client.clone();
        let kinds = self.kinds.clone();
        futures::stream::iter(runnable)
            .for_each_concurrent(16, |a| {
                let client = client.clone();
                let kinds = &kinds;
                async move { execute(client, kinds, a).await }
            })
            .await;
    }
}

fn action_key(a: &Action) -> String {
    match a {
        Action::Delete { item, .. } => format!("delete/{}", item.uid),
        Action::RemoveOwners { item, uids, .. } => {
            format!("owners/{}/{}", item.uid, uids.join(","))
        }
        Action::RemoveFinalizer { item, finalizer } => {
            format!("finalizer/{}/{finalizer}", item.uid)
        }
    }
}

fn api_for(client: kube::Client, kind: &Kind, namespace: Option<&str>) -> Api<DynamicObject> {
    match (kind.namespaced, namespace) {
        (true, Some(ns)) => Api::namespaced_with(client, ns, &kind.resource),
        _ => Api::all_with(client, &kind.resource),
    }
}

/// Whether the owner is really gone: looked up through the API by its
/// kind, name and uid. Unknown kinds are resolved through discovery; an
/// owner whose kind cannot be resolved is not judged gone.
async fn owner_gone(
    client: kube::Client,
    kinds: &[Kind],
    namespace: Option<&str>,
    owner: &OwnerReference,
) -> bool {
    let (group, version) = match owner.api_version.split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), owner.api_version.clone()),
    };
    let known = kinds
        .iter()
        .find(|k| k.resource.group == group && k.resource.kind == owner.kind)
        .cloned();
    let kind = match known {
        Some(k) => k,
        None => {
            let gvk = kube::api::GroupVersionKind::gvk(&group, &version, &owner.kind);
            match kube::discovery::pinned_kind(&client, &gvk).await {
                Ok((resource, caps)) => Kind {
                    resource,
                    namespaced: caps.scope == kube::discovery::Scope::Namespaced,
                },
                Err(e) => {
                    debug!(kind = %owner.kind, error = %e, "cannot resolve an owner's kind; leaving its dependents alone");
                    return false;
                }
            }
        }
    };
    match api_for(client, &kind, namespace).get_opt(&owner.name).await {
        Ok(None) => true,
        Ok(Some(found)) => found.metadata.uid.as_deref() != Some(owner.uid.as_str()),
        Err(_) => false,
    }
}

async fn execute(client: kube::Client, kinds: &[Kind], action: Action) {
    match action {
        Action::Delete { item, policy, .. } => {
            let api = api_for(client, &kinds[item.kind], item.namespace.as_deref());
            let params = DeleteParams {
                propagation_policy: Some(match policy {
                    "Foreground" => PropagationPolicy::Foreground,
                    _ => PropagationPolicy::Background,
                }),
                preconditions: Some(Preconditions {
                    uid: Some(item.uid.clone()),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(&item.name, &params).await {
                Ok(_) => {
                    info!(kind = %kinds[item.kind].resource.kind, name = %item.name, namespace = ?item.namespace, policy, "deleted a dependent")
                }
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => {
                    warn!(name = %item.name, error = %e, "garbage collector could not delete")
                }
            }
        }
        Action::RemoveOwners { item, uids, .. } => {
            let remaining: Vec<&OwnerReference> = item
                .owners
                .iter()
                .filter(|o| !uids.contains(&o.uid))
                .collect();
            let patch = json!({"metadata": {
                "resourceVersion": item.resource_version,
                "ownerReferences": if remaining.is_empty() { serde_json::Value::Null } else { json!(remaining) },
            }});
            let api = api_for(client, &kinds[item.kind], item.namespace.as_deref());
            match api
                .patch(&item.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => debug!(name = %item.name, "removed owner references"),
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => {
                    warn!(name = %item.name, error = %e, "garbage collector could not edit ownerReferences")
                }
            }
        }
        Action::RemoveFinalizer { item, finalizer } => {
            let remaining: Vec<&String> =
                item.finalizers.iter().filter(|f| *f != finalizer).collect();
            let patch = json!({"metadata": {
                "resourceVersion": item.resource_version,
                "finalizers": if remaining.is_empty() { serde_json::Value::Null } else { json!(remaining) },
            }});
            let api = api_for(client, &kinds[item.kind], item.namespace.as_deref());
            match api
                .patch(&item.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => debug!(name = %item.name, finalizer, "removed finalizer"),
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => {
                    warn!(name = %item.name, error = %e, "garbage collector could not remove a finalizer")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(uid: &str, owners: &[(&str, bool)], deleting: bool, finalizers: &[&str]) -> Item {
        Item {
            kind: 0,
            namespace: Some("default".into()),
            name: format!("obj-{uid}"),
            uid: uid.into(),
            resource_version: Some("1".into()),
            owners: owners
                .iter()
                .map(|(u, block)| OwnerReference {
                    api_version: "v1".into(),
                    kind: "ConfigMap".into(),
                    name: format!("obj-{u}"),
                    uid: u.to_string(),
                    controller: None,
                    block_owner_deletion: Some(*block),
                })
                .collect(),
            deleting,
            finalizers: finalizers.iter().map(|f| f.to_string()).collect(),
        }
    }

    fn summary(actions: &[Action]) -> Vec<String> {
        let mut out: Vec<String> = actions
            .iter()
            .map(|a| match a {
                Action::Delete {
                    item,
                    policy,
                    confirm_gone,
                } => {
                    format!(
                        "delete {} {policy} confirm={}",
                        item.uid,
                        confirm_gone.len()
                    )
                }
                Action::RemoveOwners { item, uids, .. } => {
                    format!("unown {} {}", item.uid, uids.join(","))
                }
                Action::RemoveFinalizer { item, finalizer } => {
                    format!("finalize {} {finalizer}", item.uid)
                }
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn background_deletes_dependents_of_missing_owners_after_confirming() {
        let items = [
            item("b", &[("a", false)], false, &[]),
            item("c", &[("b", false)], false, &[]),
        ];
        assert_eq!(
            summary(&plan(&items)),
            vec!["delete b Background confirm=1"]
        );
    }

    #[test]
    fn a_missing_owner_among_live_ones_is_only_removed() {
        let items = [
            item("a", &[], false, &[]),
            item("b", &[("a", false), ("x", false)], false, &[]),
        ];
        assert_eq!(summary(&plan(&items)), vec!["unown b x"]);
    }

    #[test]
    fn orphan_unowns_every_dependent_then_finalizes() {
        let items = [
            item("a", &[], true, &["orphan"]),
            item("b", &[("a", true)], false, &[]),
            item("c", &[("a", true), ("d", false)], false, &[]),
            item("d", &[], false, &[]),
        ];
        assert_eq!(summary(&plan(&items)), vec!["unown b a", "unown c a"]);
        let after = [
            item("a", &[], true, &["orphan"]),
            item("b", &[], false, &[]),
        ];
        assert_eq!(summary(&plan(&after)), vec!["finalize a orphan"]);
    }

    #[test]
    fn foreground_deletes_dependents_and_waits_for_blocking_ones() {
        let items = [
            item("a", &[], true, &["foregroundDeletion"]),
            item("b", &[("a", true)], false, &[]),
            item("c", &[("a", false)], true, &[]),
        ];
        assert_eq!(
            summary(&plan(&items)),
            vec!["delete b Foreground confirm=0"]
        );
        // Only a non-blocking dependent left: the owner may go.
        let later = [
            item("a", &[], true, &["foregroundDeletion"]),
            item("c", &[("a", false)], true, &[]),
        ];
        assert_eq!(
            summary(&plan(&later)),
            vec!["finalize a foregroundDeletion"]
        );
    }

    #[test]
    fn objects_without_owners_or_with_live_owners_are_left_alone() {
        let items = [
            item("a", &[], false, &[]),
            item("b", &[("a", true)], false, &[]),
        ];
        assert!(plan(&items).is_empty());
    }
}
