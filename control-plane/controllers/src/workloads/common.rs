//! What the workload controllers share: controller references and
//! adoption, label selectors, pod readiness and availability, pods made from
//! templates, the reconcile loop around a pure decision, and Events.
//!
//! Architecture invariant: nothing here decides what a controller does;
//! it only reads objects or performs an action a decision asked for.
//!
//! About upstream's "expectations": kube-controller-manager acts on its
//! informer caches, which lag behind its own writes, so it remembers what it
//! created and deleted until the watch shows it. kedge's controllers read the
//! objects they act on (pods, ReplicaSets, Jobs) with a LIST without
//! resourceVersion, which kedge's apiserver always serves from the datastore
//! at its latest revision. A reconcile therefore sees every pod an earlier
//! reconcile of the same object created, and kube-runtime never runs two
//! reconciles of one object at once; so the same pod is never created twice
//! while a watch lags, which is what expectations are for. The watches only
//! say *when* to reconcile.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    Event as CoreEvent, EventSource, ObjectReference, Pod, PodTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ObjectMeta, OwnerReference, Time,
};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Clock, Context, Error};

/// What every workload reconcile is given.
pub struct Shared {
    /// The API client.
    pub client: kube::Client,
    /// The injected time source.
    pub clock: Arc<dyn Clock>,
    /// The component named as the Events' source (`deployment-controller`).
    pub component: String,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("component", &self.component)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// The shared state for one controller, reporting Events as `component`.
    pub fn new(ctx: &Context, component: &str) -> Arc<Shared> {
        Arc::new(Shared {
            client: ctx.client.clone(),
            clock: ctx.clock.clone(),
            component: component.to_string(),
        })
    }

    /// Now, from the injected clock.
    pub fn now(&self) -> jiff::Timestamp {
        self.clock.timestamp()
    }

    /// Records a core/v1 Event about `obj`, as upstream's controllers do
    /// (one Event per occurrence; kube-runtime's recorder would fold every
    /// Event with the same reason on one object into one series and keep
    /// only the first message). A failure is logged, never fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        warning: bool,
        reason: &str,
        message: String,
    ) {
        let involved: ObjectReference = obj.object_ref(&());
        let ns = involved
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let now = self.now();
        let name = format!(
            "{}.{:x}",
            involved.name.as_deref().unwrap_or("object"),
            now.as_nanosecond()
        );
        let ev = CoreEvent {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: involved,
            reason: Some(reason.to_string()),
            message: Some(message),
            type_: Some(if warning { "Warning" } else { "Normal" }.to_string()),
            count: Some(1),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: None,
            }),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.component.clone()),
            ..Default::default()
        };
        let api: Api<CoreEvent> = Api::namespaced(self.client.clone(), &ns);
        if let Err(e) = api.create(&PostParams::default(), &ev).await {
            tracing::debug!(error = %e, reason, "could not record event");
        }
    }
}

/// The controller reference (`controller: true`) among `meta`'s owners.
pub fn controller_ref(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))
}

/// Whether `meta` is controlled by the object with `uid`.
pub fn controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    controller_ref(meta).is_some_and(|o| o.uid == uid)
}

/// A controller reference to `owner`, as upstream's controllers set it.
pub fn owner_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Whether `labels` match `selector`. An unparsable selector matches
/// nothing, and so does an empty one (upstream's controllers refuse to
/// select everything).
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    if selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(|m| m.is_empty())
    {
        return false;
    }
    match Selector::try_from(selector.clone()) {
        Ok(s) => s.matches(labels),
        Err(_) => false,
    }
}

/// The label selector as a query string for a LIST.
pub fn selector_query(selector: &LabelSelector) -> Result<String, Error> {
    Selector::try_from(selector.clone())
        .map(|s| s.to_string())
        .map_err(|e| Error::Invalid(format!("invalid selector: {e}")))
}

/// How the objects a controller may own split up.
#[derive(Debug, Default, PartialEq)]
pub struct Ownership {
    /// Indexes of objects this owner controls and that still match.
    pub owned: Vec<usize>,
    /// Indexes of orphans that match, to adopt.
    pub adopt: Vec<usize>,
    /// Indexes of objects this owner controls that no longer match.
    pub release: Vec<usize>,
}

/// Splits `objects` into owned, to-adopt and to-release for the owner with
/// `uid` and `selector`. Objects being deleted are never adopted. When the
/// owner is being deleted (`owner_deleting`) nothing is adopted or released.
pub fn classify<'a>(
    uid: &str,
    selector: &LabelSelector,
    owner_deleting: bool,
    objects: impl IntoIterator<Item = &'a ObjectMeta>,
) -> Ownership {
    let mut out = Ownership::default();
    for (i, meta) in objects.into_iter().enumerate() {
        let labels = meta.labels.clone().unwrap_or_default();
        let matches = selector_matches(selector, &labels);
        match controller_ref(meta) {
            Some(o) if o.uid == uid => {
                if matches || owner_deleting {
                    out.owned.push(i);
                } else {
                    out.release.push(i);
                }
            }
            Some(_) => {}
            None => {
                if matches && !owner_deleting && meta.deletion_timestamp.is_none() {
                    out.adopt.push(i);
                }
            }
        }
    }
    out
}

/// Adopts `obj` for `owner`: adds a controller reference, with the object's
/// resourceVersion as a precondition (a conflict is retried by requeue).
pub async fn adopt<C, O>(api: &Api<C>, obj: &C, owner: &O) -> Result<C, Error>
where
    C: Resource + Clone + DeserializeOwned + Debug,
    O: Resource<DynamicType = ()>,
{
    let mut refs = obj.meta().owner_references.clone().unwrap_or_default();
    refs.push(owner_ref(owner));
    let patch = serde_json::json!({
        "metadata": {
            "ownerReferences": refs,
            "resourceVersion": obj.meta().resource_version,
        }
    });
    let name = obj.meta().name.clone().unwrap_or_default();
    Ok(api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?)
}

/// Releases `obj` from the owner with `uid`: removes its reference.
pub async fn release<C>(api: &Api<C>, obj: &C, uid: &str) -> Result<(), Error>
where
    C: Resource + Clone + DeserializeOwned + Debug,
{
    let refs: Vec<OwnerReference> = obj
        .meta()
        .owner_references
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|o| o.uid != uid)
        .collect();
    let patch = serde_json::json!({
        "metadata": {
            "ownerReferences": refs,
            "resourceVersion": obj.meta().resource_version,
        }
    });
    let name = obj.meta().name.clone().unwrap_or_default();
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Whether an API error is a 404.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Whether an API error is a 409 (conflict or already exists).
pub fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// Whether an API error is a 409 AlreadyExists.
pub fn is_already_exists(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists")
}

/// Lists the objects of one kind in `ns` that `selector` may select (a
/// consistent read; see the module header).
pub async fn list_selected<K>(api: &Api<K>, selector: &LabelSelector) -> Result<Vec<K>, Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let q = selector_query(selector)?;
    Ok(api.list(&ListParams::default().labels(&q)).await?.items)
}

/// Deletes `name`; a pod already gone is fine.
pub async fn delete_ignore_missing<K>(
    api: &Api<K>,
    name: &str,
    dp: &DeleteParams,
) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    match api.delete(name, dp).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Background-propagated delete with a uid precondition.
pub fn delete_params(uid: Option<&str>) -> DeleteParams {
    let mut dp = DeleteParams::background();
    if let Some(uid) = uid {
        dp = dp.preconditions(kube::api::Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        });
    }
    dp
}

/// A pod from `template`, controlled by `owner`. `name` is either a fixed
/// name or, when `generate` is set, a generateName prefix.
pub fn pod_from_template<O: Resource<DynamicType = ()>>(
    template: &PodTemplateSpec,
    owner: &O,
    name: &str,
    generate: bool,
) -> Pod {
    let tmeta = template.metadata.clone().unwrap_or_default();
    let meta = ObjectMeta {
        name: (!generate).then(|| name.to_string()),
        generate_name: generate.then(|| name.to_string()),
        namespace: owner.meta().namespace.clone(),
        labels: tmeta.labels,
        annotations: tmeta.annotations,
        finalizers: tmeta.finalizers,
        owner_references: Some(vec![owner_ref(owner)]),
        ..Default::default()
    };
    Pod {
        metadata: meta,
        spec: template.spec.clone(),
        status: None,
    }
}

/// The generateName prefix upstream gives pods of `owner`: `<owner>-`,
/// shortened so that the generated name stays a valid name.
pub fn generate_prefix(owner: &str) -> String {
    let max = 63 - 5;
    let mut p = format!("{owner}-");
    if p.len() > max {
        p.truncate(max);
    }
    p
}

/// Whether the pod counts at all: not terminated and not being deleted.
pub fn pod_active(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none() && !pod_terminal(pod)
}

/// Whether the pod has finished (Succeeded or Failed).
pub fn pod_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// The pod's phase, or "" when it has none yet.
pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// The pod's Ready condition, when it is True: since when.
pub fn ready_since(pod: &Pod) -> Option<Option<jiff::Timestamp>> {
    let cond = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    (cond.status == "True").then(|| cond.last_transition_time.as_ref().map(|t| t.0))
}

/// Whether the pod is Ready.
pub fn pod_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Whether the pod has been Ready for `min_ready_seconds` at `now`.
pub fn pod_available(pod: &Pod, min_ready_seconds: i32, now: jiff::Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(None) => false,
        Some(Some(since)) => since
            .checked_add(jiff::SignedDuration::from_secs(i64::from(
                min_ready_seconds,
            )))
            .is_ok_and(|t| t <= now),
    }
}

/// When a Ready pod that is not yet available becomes available, as a wait
/// from `now` (for a requeue).
pub fn until_available(
    pod: &Pod,
    min_ready_seconds: i32,
    now: jiff::Timestamp,
) -> Option<Duration> {
    if min_ready_seconds <= 0 {
        return None;
    }
    let since = ready_since(pod)??;
    let at = since
        .checked_add(jiff::SignedDuration::from_secs(i64::from(
            min_ready_seconds,
        )))
        .ok()?;
    let wait = at.duration_since(now);
    (wait.is_positive())
        .then(|| Duration::from_secs_f64(wait.as_secs_f64()) + Duration::from_millis(100))
}

/// The earlier of two optional waits.
pub fn earliest(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A `Time` for `t`.
pub fn time(t: jiff::Timestamp) -> Time {
    Time(t)
}

/// The reconcile loop's answer: requeue after `wait`, or wait for a watch
/// event (with a slow resync, as upstream's informers have).
pub fn action(wait: Option<Duration>) -> Action {
    match wait {
        Some(w) => Action::requeue(w.max(Duration::from_millis(100))),
        None => Action::requeue(Duration::from_secs(300)),
    }
}

/// What to do after a failed reconcile: conflicts retry soon, the rest back
/// off a little.
pub fn error_policy<K>(_obj: Arc<K>, err: &Error, _ctx: Arc<Shared>) -> Action {
    match err {
        Error::Api(e) if is_conflict(e) => Action::requeue(Duration::from_millis(200)),
        _ => {
            tracing::warn!(error = %err, "reconcile failed");
            Action::requeue(Duration::from_secs(2))
        }
    }
}

/// Drives a kube-runtime controller stream until it ends; each item's
/// errors were already handled by the error policy.
pub async fn drive<S, T, E>(stream: S) -> Result<(), Error>
where
    S: futures::Stream<Item = Result<T, E>>,
    E: std::fmt::Display,
{
    stream
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "controller event");
            }
        })
        .await;
    Ok(())
}

/// Writes `obj`'s status with its resourceVersion as a precondition (409 if
/// another writer got there first; the reconcile is then retried).
pub async fn write_status<K>(api: &Api<K>, obj: &K) -> Result<K, Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    Ok(api
        .replace_status(&name, &PostParams::default(), obj)
        .await?)
}

/// The namespace and name of `obj`, for spans.
pub fn ns_name<K: Resource>(obj: &K) -> (String, String) {
    (obj.namespace().unwrap_or_default(), obj.name_any())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(labels: &[(&str, &str)], owner: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            owner_references: owner.map(|uid| {
                vec![OwnerReference {
                    uid: uid.into(),
                    controller: Some(true),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }
    }

    #[test]
    fn classify_owned_adopt_release() {
        let sel = LabelSelector {
            match_labels: Some([("app".to_string(), "a".to_string())].into()),
            ..Default::default()
        };
        let objs = [
            meta(&[("app", "a")], Some("me")),
            meta(&[("app", "a")], None),
            meta(&[("app", "b")], Some("me")),
            meta(&[("app", "a")], Some("other")),
            meta(&[("app", "b")], None),
        ];
        let o = classify("me", &sel, false, objs.iter());
        assert_eq!(o.owned, vec![0]);
        assert_eq!(o.adopt, vec![1]);
        assert_eq!(o.release, vec![2]);
        let o = classify("me", &sel, true, objs.iter());
        assert_eq!(o.owned, vec![0, 2]);
        assert!(o.adopt.is_empty() && o.release.is_empty());
    }

    #[test]
    fn empty_selector_matches_nothing() {
        assert!(!selector_matches(
            &LabelSelector::default(),
            &BTreeMap::new()
        ));
    }

    #[test]
    fn availability_waits_min_ready_seconds() {
        let since: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
            ]}
        }))
        .unwrap();
        let later = |s| since + jiff::SignedDuration::from_secs(s);
        assert!(pod_available(&pod, 0, since));
        assert!(!pod_available(&pod, 10, later(5)));
        assert!(pod_available(&pod, 10, later(10)));
        assert!(until_available(&pod, 10, later(5)).is_some());
        assert!(until_available(&pod, 10, later(11)).is_none());
    }
}
