//! Where the pod manager's statuses go: the report queue, and through it the server.
//!
//! - A pod's status goes to the pod as the API knows it (namespace, name, uid).
//! - A static pod's status goes to its mirror pod, the API's copy the agent asked for;
//!   until the mirror pod exists (it comes back through the sync like any pod bound
//!   here), the status is kept and sent once it does.
//! - A pod the API is deleting is deleted for good once it has stopped.
//! - Mirror pods follow the static pods: created when missing, replaced when the
//!   manifest changed, deleted when the manifest is gone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kedge_proto::v1::{ObjectKind, PodStatusReport};

use super::manager::{MIRROR_ANNOTATION, is_mirror};
use super::static_pods::{HASH_ANNOTATION, is_static};
use super::worker::StatusSink;
use crate::report::ReportQueue;
use crate::store::Store;

fn key(pod: &Pod) -> (String, String) {
    (
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
    )
}

fn annotation<'a>(pod: &'a Pod, name: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(name))
        .map(String::as_str)
}

/// The report queue as the pod manager's status sink.
#[derive(Debug)]
pub struct ReportStatuses {
    reports: Arc<ReportQueue>,
    store: Store,
    node: String,
    /// Statuses of static pods whose mirror pod does not exist yet.
    waiting: Mutex<HashMap<(String, String), PodStatus>>,
}

impl ReportStatuses {
    pub fn new(reports: Arc<ReportQueue>, store: Store, node: impl Into<String>) -> Self {
        ReportStatuses {
            reports,
            store,
            node: node.into(),
            waiting: Mutex::new(HashMap::new()),
        }
    }

    /// The mirror pods bound to this node, as the store holds them.
    fn mirrors(&self) -> Vec<Pod> {
        self.store
            .list(ObjectKind::Pod)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|o| serde_json::from_slice::<Pod>(&o.object).ok())
            .filter(|p| {
                is_mirror(p)
                    && p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(&self.node)
            })
            .collect()
    }

    fn mirror_of(&self, pod: &Pod) -> Option<Pod> {
        let hash = annotation(pod, HASH_ANNOTATION)?;
        self.mirrors()
            .into_iter()
            .find(|m| key(m) == key(pod) && annotation(m, MIRROR_ANNOTATION) == Some(hash))
    }

    fn send_status(&self, pod: &Pod, uid: &str, status: &PodStatus) {
        let (namespace, name) = key(pod);
        self.reports.pod_status(PodStatusReport {
            namespace,
            name,
            uid: uid.to_string(),
            status: serde_json::to_vec(status).unwrap_or_default(),
        });
    }
}

/// The mirror pod for a static pod: the same spec, marked with its hash.
pub fn mirror_for(pod: &Pod) -> Pod {
    let mut m = pod.clone();
    let hash = annotation(pod, HASH_ANNOTATION)
        .unwrap_or_default()
        .to_string();
    m.metadata.uid = None;
    m.metadata.resource_version = None;
    m.status = None;
    m.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(MIRROR_ANNOTATION.to_string(), hash);
    m
}

impl StatusSink for ReportStatuses {
    fn pod_status(&self, pod: &Pod, status: &PodStatus) {
        if !is_static(pod) {
            self.send_status(pod, pod.metadata.uid.as_deref().unwrap_or_default(), status);
            return;
        }
        match self.mirror_of(pod) {
            Some(mirror) => {
                let uid = mirror.metadata.uid.clone().unwrap_or_default();
                self.send_status(pod, &uid, status);
            }
            None => {
                self.waiting
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key(pod), status.clone());
            }
        }
    }

    fn pod_terminated(&self, pod: &Pod) {
        if is_static(pod) {
            return;
        }
        let (namespace, name) = key(pod);
        self.reports.pod_deletion(
            &namespace,
            &name,
            pod.metadata.uid.as_deref().unwrap_or_default(),
        );
    }

    fn static_pods(&self, statics: &[Pod]) {
        let mirrors = self.mirrors();
        for pod in statics {
            let current = mirrors.iter().find(|m| key(m) == key(pod));
            let hash = annotation(pod, HASH_ANNOTATION);
            match current {
                Some(m) if annotation(m, MIRROR_ANNOTATION) == hash => {
                    // It exists: send what waited for it.
                    let waiting = self
                        .waiting
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&key(pod));
                    if let Some(status) = waiting {
                        let uid = m.metadata.uid.clone().unwrap_or_default();
                        self.send_status(pod, &uid, &status);
                    }
                }
                Some(stale) => {
                    // The manifest changed: the old mirror goes, a new one comes next.
                    let (ns, name) = key(stale);
                    self.reports.pod_deletion(
                        &ns,
                        &name,
                        stale.metadata.uid.as_deref().unwrap_or_default(),
                    );
                }
                None => {
                    let (ns, name) = key(pod);
                    let json = serde_json::to_vec(&mirror_for(pod)).unwrap_or_default();
                    self.reports.mirror_pod(&ns, &name, json);
                }
            }
        }
        for m in &mirrors {
            if !statics.iter().any(|p| key(p) == key(m)) {
                let (ns, name) = key(m);
                self.reports.pod_deletion(
                    &ns,
                    &name,
                    m.metadata.uid.as_deref().unwrap_or_default(),
                );
            }
        }
    }
}
