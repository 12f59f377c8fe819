//! Reports from an agent: node registration and status, pod statuses, events
//! and lease renewals, written through the registry.
//!
//! Every report is checked against the node the connection belongs to before
//! anything is written (upstream's NodeRestriction admission, enforced here):
//!
//! - `node`: the Node named like the connection. Absent: it is created
//!   (registration). Present: its reported labels and annotations are merged
//!   in (reported keys win, others stay: an admin's `kubectl label` survives)
//!   and its status is written through the status subresource; its spec is
//!   never touched after registration. Labels under
//!   `node-restriction.kubernetes.io/` are refused, as upstream refuses them.
//! - `pod_status`: only a pod bound to this node, with the reported uid (a
//!   pod recreated under the same name is another pod); only its status is
//!   written, with the read resourceVersion as precondition, re-read and
//!   re-checked on conflict.
//! - `event`: only about this node (in `default`, as the kubelet records
//!   node events) or one of its pods (in the pod's namespace).
//! - `lease`: `kube-node-lease/<node>`, stamped with the server's clock, so a
//!   device's clock skew cannot make a lease look fresh or stale.
//! - `pod_deletion`: the kubelet's final delete of a pod it stopped: only a pod
//!   bound to this node with the reported uid, and only once the API is deleting
//!   it (it has a deletionTimestamp) or when it is a mirror pod.
//! - `mirror_pod`: the API's copy of one of the node's static pods: bound to
//!   this node, annotated `kubernetes.io/config.mirror`, and (as upstream's
//!   NodeRestriction demands) using no Secret, ConfigMap, volume claim or
//!   ServiceAccount token.
//!
//! Each report gets a result of its own; a refused or failed report does not
//! stop the others. Nothing an agent sends can make this panic.

use std::sync::Arc;

use kedge_apiserver::registry::{DeleteOpts, Registry, WriteOpts};
use kedge_apiserver::status::ApiError;
use kedge_datastore::Clock;
use kedge_proto::v1::report::Report as Kind;
use kedge_proto::v1::{
    LeaseRenewal, PodDeletion, PodStatusReport, ReportBatch, ReportResponse, ReportResult,
};
use kedge_resources::catalog::{self, ResourceInfo, Subresource};
use serde_json::{Map, Value, json};
use tracing::Instrument;

/// How often a write is retried when it loses a compare-and-swap race.
const CONFLICT_RETRIES: usize = 5;

/// Upstream's NodeRestriction: labels a node may not set on itself.
const RESTRICTED_LABEL_PREFIX: &str = "node-restriction.kubernetes.io/";

/// The namespace of node Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// Why a report was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("empty report")]
    Empty,
    #[error("malformed {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
    #[error("node {node} may not {action}")]
    Forbidden { node: String, action: String },
    #[error("{0}")]
    Api(String),
}

impl From<ApiError> for ReportError {
    fn from(e: ApiError) -> Self {
        ReportError::Api(e.message)
    }
}

fn malformed(what: &'static str, reason: impl ToString) -> ReportError {
    ReportError::Malformed {
        what,
        reason: reason.to_string(),
    }
}

fn forbidden(node: &str, action: impl Into<String>) -> ReportError {
    ReportError::Forbidden {
        node: node.to_string(),
        action: action.into(),
    }
}

fn info(group: &str, plural: &str) -> Result<&'static ResourceInfo, ReportError> {
    catalog::find(group, "v1", plural)
        .ok_or_else(|| ReportError::Api(format!("resource {plural} is not served")))
}

fn parse_object(what: &'static str, bytes: &[u8]) -> Result<Value, ReportError> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| malformed(what, e))?;
    if !v.is_object() {
        return Err(malformed(what, "not a JSON object"));
    }
    Ok(v)
}

fn str_at<'a>(v: &'a Value, path: &str) -> Option<&'a str> {
    v.pointer(path).and_then(Value::as_str)
}

/// The taint an agent without a container runtime registers with.
pub const NO_RUNTIME_TAINT: &str = "node.kedge.io/no-runtime";

/// The taints the agent owns: they follow what it reports (the rest of the spec is
/// never touched after registration). Upstream, the node lifecycle controller derives
/// the pressure taints from the conditions; here the agent reports both together.
pub const AGENT_TAINTS: [&str; 4] = [
    NO_RUNTIME_TAINT,
    "node.kubernetes.io/memory-pressure",
    "node.kubernetes.io/disk-pressure",
    "node.kubernetes.io/pid-pressure",
];

fn sync_agent_taints(reported: &Value, updated: &mut Value) {
    for key in AGENT_TAINTS {
        sync_agent_taint(key, reported, updated);
    }
}

fn sync_agent_taint(key: &str, reported: &Value, updated: &mut Value) {
    let has = |v: &Value| {
        v.pointer("/spec/taints")
            .and_then(Value::as_array)
            .is_some_and(|t| t.iter().any(|t| str_at(t, "/key") == Some(key)))
    };
    let want = has(reported);
    if want == has(updated) {
        return;
    }
    let Some(obj) = updated.as_object_mut() else {
        return;
    };
    let spec = obj.entry("spec").or_insert_with(|| json!({}));
    if !spec.is_object() {
        *spec = json!({});
    }
    let taints = spec
        .as_object_mut()
        .map(|s| s.entry("taints").or_insert_with(|| json!([])));
    let Some(taints) = taints else { return };
    if !taints.is_array() {
        *taints = json!([]);
    }
    if let Some(list) = taints.as_array_mut() {
        if want {
            list.push(json!({"key": key, "effect": "NoSchedule"}));
        } else {
            list.retain(|t| str_at(t, "/key") != Some(key));
        }
    }
}

/// The annotation of a mirror pod (its static pod's hash).
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// Why a mirror pod may not be created, as upstream's NodeRestriction says: it
/// must not reach Secrets, ConfigMaps, volume claims or a ServiceAccount.
fn mirror_pod_refusal(pod: &Value) -> Option<String> {
    let spec = pod.get("spec")?;
    if spec
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
    {
        return Some("a mirror pod may not use a service account".into());
    }
    for v in spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for kind in [
            "secret",
            "configMap",
            "persistentVolumeClaim",
            "projected",
            "ephemeral",
        ] {
            if v.get(kind).is_some() {
                return Some(format!("a mirror pod may not use {kind} volumes"));
            }
        }
    }
    let containers = ["containers", "initContainers", "ephemeralContainers"]
        .into_iter()
        .flat_map(|k| spec.get(k).and_then(Value::as_array).into_iter().flatten());
    for c in containers {
        for e in c.get("env").and_then(Value::as_array).into_iter().flatten() {
            let from = e.get("valueFrom");
            if from.is_some_and(|f| {
                f.get("secretKeyRef").is_some() || f.get("configMapKeyRef").is_some()
            }) {
                return Some("a mirror pod may not reference secrets or config maps".into());
            }
        }
        for e in c
            .get("envFrom")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if e.get("secretRef").is_some() || e.get("configMapRef").is_some() {
                return Some("a mirror pod may not reference secrets or config maps".into());
            }
        }
    }
    None
}

/// `metav1.MicroTime` as upstream marshals it: RFC 3339, UTC, microseconds.
pub fn micro_time(t: std::time::SystemTime) -> String {
    match jiff::Timestamp::try_from(t) {
        Ok(ts) => ts.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        Err(_) => "1970-01-01T00:00:00.000000Z".to_string(),
    }
}

/// Applies reports for the node a connection belongs to.
#[derive(Debug, Clone)]
pub struct Reporter {
    registry: Registry,
    clock: Arc<dyn Clock>,
    /// Tells apart the names of events generated in the same millisecond.
    event_sequence: Arc<std::sync::atomic::AtomicU64>,
}

impl Reporter {
    pub fn new(registry: Registry, clock: Arc<dyn Clock>) -> Reporter {
        Reporter {
            registry,
            clock,
            event_sequence: Arc::default(),
        }
    }

    /// Applies each report of `batch` for `node`; one result per report, in
    /// order.
    pub async fn apply(&self, node: &str, batch: ReportBatch) -> ReportResponse {
        let span = tracing::debug_span!("report", node);
        self.apply_all(node, batch).instrument(span).await
    }

    async fn apply_all(&self, node: &str, batch: ReportBatch) -> ReportResponse {
        let mut results = Vec::with_capacity(batch.reports.len());
        for report in batch.reports {
            let outcome = match report.report {
                None => Err(ReportError::Empty),
                Some(Kind::Node(bytes)) => self.node(node, &bytes).await,
                Some(Kind::PodStatus(r)) => self.pod_status(node, &r).await,
                Some(Kind::Event(bytes)) => self.event(node, &bytes).await,
                Some(Kind::Lease(r)) => {
                    tracing::debug!(node, "a lease renewal reported by the agent");
                    self.lease(node, &r).await
                }
                Some(Kind::PodDeletion(r)) => self.pod_deletion(node, &r).await,
                Some(Kind::MirrorPod(bytes)) => self.mirror_pod(node, &bytes).await,
            };
            let error = match outcome {
                Ok(()) => String::new(),
                Err(e) => {
                    tracing::debug!(node, error = %e, "report refused");
                    e.to_string()
                }
            };
            results.push(ReportResult { error });
        }
        ReportResponse { results }
    }

    async fn node(&self, node: &str, bytes: &[u8]) -> Result<(), ReportError> {
        let nodes = info("", "nodes")?;
        let mut reported = parse_object("node", bytes)?;
        if let Some(kind) = str_at(&reported, "/kind")
            && kind != "Node"
        {
            return Err(malformed("node", format!("kind is {kind}, not Node")));
        }
        match str_at(&reported, "/metadata/name") {
            Some(name) if name == node => {}
            other => {
                return Err(forbidden(
                    node,
                    format!("report node {:?}", other.unwrap_or_default()),
                ));
            }
        }
        if let Some(labels) = reported
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            && let Some(bad) = labels
                .keys()
                .find(|k| k.starts_with(RESTRICTED_LABEL_PREFIX))
        {
            return Err(forbidden(node, format!("set label {bad}")));
        }
        let opts = WriteOpts::default();
        for _ in 0..CONFLICT_RETRIES {
            let current = match self.registry.get(nodes, None, node, None).await {
                Ok(current) => current,
                Err(e) if e.code == 404 => {
                    // Registration.
                    let mut obj = reported.clone();
                    obj["apiVersion"] = json!("v1");
                    obj["kind"] = json!("Node");
                    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                        for system in ["resourceVersion", "uid", "creationTimestamp"] {
                            meta.remove(system);
                        }
                    }
                    match self.registry.create(nodes, None, obj, &opts).await {
                        Ok(_) => tracing::info!(node, "node registered"),
                        Err(e) if e.code == 409 => {}
                        Err(e) => return Err(e.into()),
                    }
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let mut updated = current.clone();
            for field in ["labels", "annotations"] {
                if let Some(map) = reported
                    .pointer(&format!("/metadata/{field}"))
                    .and_then(Value::as_object)
                {
                    let meta = updated
                        .as_object_mut()
                        .and_then(|o| o.get_mut("metadata"))
                        .and_then(Value::as_object_mut);
                    if let Some(meta) = meta {
                        let target = meta
                            .entry(field)
                            .or_insert_with(|| Value::Object(Map::new()));
                        if !target.is_object() {
                            *target = Value::Object(Map::new());
                        }
                        if let Some(target) = target.as_object_mut() {
                            for (k, v) in map {
                                target.insert(k.clone(), v.clone());
                            }
                        }
                    }
                }
            }
            sync_agent_taints(&reported, &mut updated);
            let current = if updated != current {
                match self
                    .registry
                    .update(nodes, None, node, None, updated, &opts)
                    .await
                {
                    Ok(w) => w.object,
                    Err(e) if e.code == 409 => continue,
                    Err(e) => return Err(e.into()),
                }
            } else {
                current
            };
            let Some(status) = reported.get_mut("status").map(Value::take) else {
                return Ok(());
            };
            if current.get("status") == Some(&status) {
                return Ok(());
            }
            let mut body = current;
            body["status"] = status.clone();
            match self
                .registry
                .update(nodes, None, node, Some(Subresource::Status), body, &opts)
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if e.code == 409 => {
                    reported["status"] = status;
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ReportError::Api(format!(
            "node {node}: too many conflicting writes"
        )))
    }

    async fn pod_status(&self, node: &str, r: &PodStatusReport) -> Result<(), ReportError> {
        let pods = info("", "pods")?;
        let status = parse_object("pod status", &r.status)?;
        let opts = WriteOpts::default();
        for _ in 0..CONFLICT_RETRIES {
            let mut pod = self
                .registry
                .get(pods, Some(&r.namespace), &r.name, None)
                .await?;
            self.check_pod(node, &pod, &r.namespace, &r.name, Some(&r.uid))?;
            pod["status"] = status.clone();
            match self
                .registry
                .update(
                    pods,
                    Some(&r.namespace),
                    &r.name,
                    Some(Subresource::Status),
                    pod,
                    &opts,
                )
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if e.code == 409 => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ReportError::Api(format!(
            "pod {}/{}: too many conflicting writes",
            r.namespace, r.name
        )))
    }

    async fn pod_deletion(&self, node: &str, r: &PodDeletion) -> Result<(), ReportError> {
        let pods = info("", "pods")?;
        let pod = match self
            .registry
            .get(pods, Some(&r.namespace), &r.name, None)
            .await
        {
            Ok(pod) => pod,
            // Already gone: what the agent wanted.
            Err(e) if e.code == 404 => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if r.uid.is_empty() {
            return Err(malformed("pod deletion", "no uid"));
        }
        match self.check_pod(node, &pod, &r.namespace, &r.name, Some(&r.uid)) {
            Ok(()) => {}
            // A pod recreated under the name is another pod: this one is gone.
            Err(ReportError::Api(_)) => return Ok(()),
            Err(e) => return Err(e),
        }
        let deleting = pod.pointer("/metadata/deletionTimestamp").is_some();
        let mirror = pod
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(MIRROR_ANNOTATION))
            .is_some();
        if !deleting && !mirror {
            return Err(forbidden(
                node,
                format!(
                    "delete pod {}/{}, which the API is not deleting",
                    r.namespace, r.name
                ),
            ));
        }
        let opts = DeleteOpts {
            grace_period_seconds: Some(0),
            precondition_uid: Some(r.uid.clone()),
            ..Default::default()
        };
        match self
            .registry
            .delete(pods, Some(&r.namespace), &r.name, &opts)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code == 404 || e.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn mirror_pod(&self, node: &str, bytes: &[u8]) -> Result<(), ReportError> {
        let pods = info("", "pods")?;
        let mut pod = parse_object("mirror pod", bytes)?;
        let ns = str_at(&pod, "/metadata/namespace")
            .unwrap_or("default")
            .to_string();
        let name = str_at(&pod, "/metadata/name")
            .unwrap_or_default()
            .to_string();
        let is_mirror = pod
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(MIRROR_ANNOTATION))
            .and_then(Value::as_str)
            .is_some_and(|h| !h.is_empty());
        if !is_mirror {
            return Err(forbidden(
                node,
                format!("create pod {ns}/{name} without the {MIRROR_ANNOTATION} annotation"),
            ));
        }
        if str_at(&pod, "/spec/nodeName") != Some(node) {
            return Err(forbidden(
                node,
                format!("create mirror pod {ns}/{name} bound to another node"),
            ));
        }
        if let Some(why) = mirror_pod_refusal(&pod) {
            return Err(forbidden(
                node,
                format!("create mirror pod {ns}/{name}: {why}"),
            ));
        }
        if let Some(meta) = pod.get_mut("metadata").and_then(Value::as_object_mut) {
            for system in ["uid", "resourceVersion", "creationTimestamp"] {
                meta.remove(system);
            }
        }
        match self
            .registry
            .create(pods, Some(&ns), pod, &WriteOpts::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Refuses unless `pod` is bound to `node` (and has `uid`, when given).
    fn check_pod(
        &self,
        node: &str,
        pod: &Value,
        ns: &str,
        name: &str,
        uid: Option<&str>,
    ) -> Result<(), ReportError> {
        if str_at(pod, "/spec/nodeName") != Some(node) {
            return Err(forbidden(node, format!("report on pod {ns}/{name}")));
        }
        if let Some(uid) = uid
            && str_at(pod, "/metadata/uid") != Some(uid)
        {
            return Err(ReportError::Api(format!(
                "pod {ns}/{name} has another uid than {uid:?}: it was recreated"
            )));
        }
        Ok(())
    }

    async fn event(&self, node: &str, bytes: &[u8]) -> Result<(), ReportError> {
        let events = info("", "events")?;
        let mut ev = parse_object("event", bytes)?;
        let involved = ev
            .get("involvedObject")
            .filter(|v| v.is_object())
            .cloned()
            .ok_or_else(|| malformed("event", "no involvedObject"))?;
        let involved = &involved;
        let kind = str_at(involved, "/kind").unwrap_or_default();
        let name = str_at(involved, "/name").unwrap_or_default();
        let involved_ns = str_at(involved, "/namespace").unwrap_or_default();
        let own_ns = str_at(&ev, "/metadata/namespace")
            .unwrap_or_default()
            .to_string();
        let own_ns = own_ns.as_str();
        let ns = match kind {
            "Node" if name == node => {
                if !own_ns.is_empty() && own_ns != "default" {
                    return Err(forbidden(
                        node,
                        format!("record a node event in namespace {own_ns}"),
                    ));
                }
                "default".to_string()
            }
            "Pod" if !involved_ns.is_empty() && !name.is_empty() => {
                if !own_ns.is_empty() && own_ns != involved_ns {
                    return Err(forbidden(
                        node,
                        format!(
                            "record an event about pod {involved_ns}/{name} in namespace {own_ns}"
                        ),
                    ));
                }
                let pods = info("", "pods")?;
                let pod = match self.registry.get(pods, Some(involved_ns), name, None).await {
                    Ok(pod) => pod,
                    Err(e) if e.code == 404 => {
                        return Err(forbidden(
                            node,
                            format!(
                                "record an event about pod {involved_ns}/{name}, which does not exist"
                            ),
                        ));
                    }
                    Err(e) => return Err(e.into()),
                };
                let uid = str_at(involved, "/uid").filter(|u| !u.is_empty());
                self.check_pod(node, &pod, involved_ns, name, uid)?;
                involved_ns.to_string()
            }
            _ => {
                return Err(forbidden(
                    node,
                    format!("record an event about {kind} {involved_ns}/{name}"),
                ));
            }
        };
        ev["apiVersion"] = json!("v1");
        ev["kind"] = json!("Event");
        // The recorder is the node whose certificate sent it, whatever the body says.
        if !ev.get("source").is_some_and(Value::is_object) {
            ev["source"] = json!({"component": "kubelet"});
        }
        ev["source"]["host"] = json!(node);
        ev["reportingInstance"] = json!(node);
        // Upstream's `<object>.<unix nanoseconds, hex>`; the sub-millisecond digits
        // count, so that events of one batch (Created, Started) get distinct names.
        let sequence = self
            .event_sequence
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            % 1_000_000;
        let nanos = u128::try_from(self.clock.now_unix_ms()).unwrap_or_default() * 1_000_000
            + u128::from(sequence);
        let generated = format!("{name}.{nanos:x}");
        if let Some(meta) = ev.as_object_mut().map(|o| {
            o.entry("metadata")
                .or_insert_with(|| Value::Object(Map::new()))
        }) {
            if !meta.is_object() {
                return Err(malformed("event", "metadata is not an object"));
            }
            meta["namespace"] = json!(ns);
            let has_name = str_at(meta, "/name").is_some_and(|n| !n.is_empty())
                || str_at(meta, "/generateName").is_some_and(|n| !n.is_empty());
            if !has_name {
                meta["name"] = json!(generated);
            }
            if let Some(m) = meta.as_object_mut() {
                m.remove("resourceVersion");
            }
        }
        let event_name = str_at(&ev, "/metadata/name")
            .unwrap_or_default()
            .to_string();
        match self
            .registry
            .create(events, Some(&ns), ev.clone(), &WriteOpts::default())
            .await
        {
            Ok(_) => Ok(()),
            // A repeat of an Event the agent recorded before (its count raised).
            Err(e) if e.code == 409 && !event_name.is_empty() => {
                self.update_event_series(node, &ns, &event_name, ev).await
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces an Event with its repeat (count, lastTimestamp), if that Event was
    /// recorded by `node` about the same object; its firstTimestamp stays.
    async fn update_event_series(
        &self,
        node: &str,
        ns: &str,
        name: &str,
        mut ev: Value,
    ) -> Result<(), ReportError> {
        let events = info("", "events")?;
        let existing = self.registry.get(events, Some(ns), name, None).await?;
        let same_object = |field: &str| {
            str_at(&existing, &format!("/involvedObject/{field}"))
                == str_at(&ev, &format!("/involvedObject/{field}"))
        };
        let recorder = str_at(&existing, "/source/host").unwrap_or_default();
        if recorder != node || !(same_object("kind") && same_object("name") && same_object("uid")) {
            return Err(forbidden(
                node,
                format!("update event {ns}/{name}, which it did not record about this object"),
            ));
        }
        if let Some(first) = existing.get("firstTimestamp") {
            ev["firstTimestamp"] = first.clone();
        }
        if let Some(rv) = str_at(&existing, "/metadata/resourceVersion") {
            ev["metadata"]["resourceVersion"] = json!(rv);
        }
        self.registry
            .update(events, Some(ns), name, None, ev, &WriteOpts::default())
            .await?;
        Ok(())
    }

    /// The server's own renewal of `node`'s Lease while the node's tunnel is up (see
    /// [`crate::lease`]): a read and a write, as an agent's renewal. Before the node has
    /// registered nothing is written: `false`.
    pub async fn renew_lease(
        &self,
        node: &str,
        duration_seconds: i32,
    ) -> Result<bool, ReportError> {
        self.write_lease(node, &LeaseRenewal { duration_seconds }, false)
            .await
    }

    async fn lease(&self, node: &str, r: &LeaseRenewal) -> Result<(), ReportError> {
        self.write_lease(node, r, true).await.map(|_| ())
    }

    /// Renews (or creates) the Lease; `without_node`: create it even before the Node
    /// exists (false: then write nothing and answer `false`).
    async fn write_lease(
        &self,
        node: &str,
        r: &LeaseRenewal,
        without_node: bool,
    ) -> Result<bool, ReportError> {
        if r.duration_seconds <= 0 {
            return Err(malformed(
                "lease",
                format!(
                    "duration_seconds must be positive, not {}",
                    r.duration_seconds
                ),
            ));
        }
        let leases = info("coordination.k8s.io", "leases")?;
        let opts = WriteOpts::default();
        for _ in 0..CONFLICT_RETRIES {
            let renew_time = micro_time(self.clock.now());
            match self
                .registry
                .get(leases, Some(LEASE_NAMESPACE), node, None)
                .await
            {
                Ok(mut lease) => {
                    if !lease.get("spec").is_some_and(Value::is_object) {
                        lease["spec"] = json!({});
                    }
                    lease["spec"]["holderIdentity"] = json!(node);
                    lease["spec"]["leaseDurationSeconds"] = json!(r.duration_seconds);
                    lease["spec"]["renewTime"] = json!(renew_time);
                    match self
                        .registry
                        .update(leases, Some(LEASE_NAMESPACE), node, None, lease, &opts)
                        .await
                    {
                        Ok(_) => return Ok(true),
                        Err(e) if e.code == 409 => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(e) if e.code == 404 => {
                    let mut lease = json!({
                        "apiVersion": "coordination.k8s.io/v1",
                        "kind": "Lease",
                        "metadata": {"name": node, "namespace": LEASE_NAMESPACE},
                        "spec": {
                            "holderIdentity": node,
                            "leaseDurationSeconds": r.duration_seconds,
                            "renewTime": renew_time,
                        }
                    });
                    // As the kubelet does: the Node owns its Lease, so that
                    // deleting the Node collects it.
                    match self
                        .registry
                        .get(info("", "nodes")?, None, node, None)
                        .await
                    {
                        Ok(n) => {
                            if let Some(uid) = str_at(&n, "/metadata/uid") {
                                lease["metadata"]["ownerReferences"] = json!([{
                                    "apiVersion": "v1", "kind": "Node", "name": node, "uid": uid
                                }]);
                            }
                        }
                        Err(e) if e.code == 404 && !without_node => return Ok(false),
                        Err(_) => {}
                    }
                    match self
                        .registry
                        .create(leases, Some(LEASE_NAMESPACE), lease, &opts)
                        .await
                    {
                        Ok(_) => return Ok(true),
                        Err(e) if e.code == 409 => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ReportError::Api(format!(
            "lease {LEASE_NAMESPACE}/{node}: too many conflicting writes"
        )))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kedge_apiserver::{ApiServer, Config, TokenFile};
    use kedge_datastore::{ManualClock, SystemClock};
    use kedge_datastore_sqlite::{SqliteConfig, SqliteStore};
    use kedge_proto::v1::Report;

    use super::*;

    async fn setup() -> (
        tempfile::TempDir,
        Arc<ApiServer>,
        Arc<ManualClock>,
        Reporter,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(SqliteConfig::new(dir.path().join("db.sqlite")))
            .await
            .unwrap();
        let api = ApiServer::start(
            Arc::new(store),
            Arc::new(SystemClock),
            Config::default(),
            TokenFile::default(),
        )
        .await
        .unwrap();
        let clock = Arc::new(ManualClock::default());
        let reporter = Reporter::new(api.registry.clone(), clock.clone());
        (dir, api, clock, reporter)
    }

    fn batch(reports: Vec<Kind>) -> ReportBatch {
        ReportBatch {
            reports: reports
                .into_iter()
                .map(|r| Report { report: Some(r) })
                .collect(),
        }
    }

    async fn one(reporter: &Reporter, node: &str, r: Kind) -> String {
        let resp = reporter.apply(node, batch(vec![r])).await;
        assert_eq!(resp.results.len(), 1);
        resp.results[0].error.clone()
    }

    fn bytes(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    async fn get(
        api: &ApiServer,
        group: &str,
        plural: &str,
        ns: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        api.registry
            .get(info(group, plural).unwrap(), ns, name, None)
            .await
            .ok()
    }

    async fn make_pod(api: &ApiServer, name: &str, node: &str) -> String {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}});
        let w = api
            .registry
            .create(
                info("", "pods").unwrap(),
                Some("default"),
                pod,
                &WriteOpts::default(),
            )
            .await
            .unwrap();
        str_at(&w.object, "/metadata/uid").unwrap().to_string()
    }

    #[tokio::test]
    async fn a_node_registers_then_reports_status_and_labels_only() {
        let (_dir, api, _clock, reporter) = setup().await;
        let node = json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "n1", "labels": {"kedge.io/profile": "rpi-4-2gb"}},
            "spec": {"taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]},
            "status": {"capacity": {"cpu": "4"}}});
        assert_eq!(one(&reporter, "n1", Kind::Node(bytes(node))).await, "");
        let stored = get(&api, "", "nodes", None, "n1").await.unwrap();
        assert_eq!(
            stored["metadata"]["labels"]["kedge.io/profile"],
            "rpi-4-2gb"
        );
        assert_eq!(stored["spec"]["taints"][0]["key"], "k");
        assert_eq!(stored["status"]["capacity"]["cpu"], "4");

        // An admin labels the node; the agent reports again with another
        // spec, a new label and a new status.
        let mut labelled = stored.clone();
        labelled["metadata"]["labels"]["team"] = json!("edge");
        api.registry
            .update(
                info("", "nodes").unwrap(),
                None,
                "n1",
                None,
                labelled,
                &WriteOpts::default(),
            )
            .await
            .unwrap();
        let node = json!({"metadata": {"name": "n1", "labels": {"kedge.io/arch": "arm64"},
                                       "annotations": {"a": "b"}},
            "spec": {"unschedulable": true},
            "status": {"capacity": {"cpu": "2"}}});
        assert_eq!(one(&reporter, "n1", Kind::Node(bytes(node))).await, "");
        let stored = get(&api, "", "nodes", None, "n1").await.unwrap();
        let labels = &stored["metadata"]["labels"];
        assert_eq!(labels["team"], "edge");
        assert_eq!(labels["kedge.io/arch"], "arm64");
        assert_eq!(labels["kedge.io/profile"], "rpi-4-2gb");
        assert_eq!(stored["metadata"]["annotations"]["a"], "b");
        assert_eq!(stored["status"]["capacity"]["cpu"], "2");
        assert_eq!(stored["spec"].get("unschedulable"), None);
        assert_eq!(stored["spec"]["taints"][0]["key"], "k");
    }

    #[tokio::test]
    async fn a_node_cannot_report_another_node_or_restricted_labels() {
        let (_dir, api, _clock, reporter) = setup().await;
        let other = json!({"metadata": {"name": "n2"}, "status": {}});
        let err = one(&reporter, "n1", Kind::Node(bytes(other))).await;
        assert!(err.contains("node n1 may not"), "{err}");
        assert!(get(&api, "", "nodes", None, "n2").await.is_none());
        let restricted = json!({"metadata": {"name": "n1",
            "labels": {"node-restriction.kubernetes.io/x": "y"}}});
        let err = one(&reporter, "n1", Kind::Node(bytes(restricted))).await;
        assert!(err.contains("may not set label"), "{err}");
        for garbage in [
            b"{".to_vec(),
            b"[]".to_vec(),
            b"\xff\xfe".to_vec(),
            Vec::new(),
        ] {
            let err = one(&reporter, "n1", Kind::Node(garbage)).await;
            assert!(err.starts_with("malformed node"), "{err}");
        }
        let resp = reporter
            .apply(
                "n1",
                ReportBatch {
                    reports: vec![Report { report: None }],
                },
            )
            .await;
        assert_eq!(resp.results[0].error, "empty report");
    }

    #[tokio::test]
    async fn pod_status_only_for_the_nodes_own_pods() {
        let (_dir, api, _clock, reporter) = setup().await;
        let uid1 = make_pod(&api, "p1", "n1").await;
        let uid2 = make_pod(&api, "p2", "n2").await;
        let status = bytes(json!({"phase": "Running", "podIP": "10.42.0.5"}));
        let report = |name: &str, uid: &str, status: Vec<u8>| {
            Kind::PodStatus(PodStatusReport {
                namespace: "default".into(),
                name: name.into(),
                uid: uid.into(),
                status,
            })
        };
        let batch = batch(vec![
            report("p1", &uid1, status.clone()),
            report("p2", &uid2, status.clone()),
            report("p1", "not-the-uid", status.clone()),
            report("p1", &uid1, b"nope".to_vec()),
            report("missing", &uid1, status.clone()),
        ]);
        let resp = reporter.apply("n1", batch).await;
        let errors: Vec<&str> = resp.results.iter().map(|r| r.error.as_str()).collect();
        assert_eq!(errors[0], "");
        assert!(
            errors[1].contains("node n1 may not report on pod default/p2"),
            "{errors:?}"
        );
        assert!(errors[2].contains("recreated"), "{errors:?}");
        assert!(errors[3].starts_with("malformed pod status"), "{errors:?}");
        assert!(!errors[4].is_empty());
        let p1 = get(&api, "", "pods", Some("default"), "p1").await.unwrap();
        assert_eq!(p1["status"]["phase"], "Running");
        assert_eq!(p1["spec"]["containers"][0]["image"], "busybox");
        let p2 = get(&api, "", "pods", Some("default"), "p2").await.unwrap();
        assert_ne!(p2["status"]["phase"], "Running");
    }

    #[tokio::test]
    async fn events_only_about_the_node_or_its_pods() {
        let (_dir, api, _clock, reporter) = setup().await;
        let uid1 = make_pod(&api, "p1", "n1").await;
        make_pod(&api, "p2", "n2").await;
        let ev = |kind: &str, ns: &str, name: &str, uid: &str| {
            Kind::Event(bytes(json!({
                "involvedObject": {"kind": kind, "namespace": ns, "name": name, "uid": uid},
                "reason": "Started", "message": "m", "type": "Normal"
            })))
        };
        let resp = reporter
            .apply(
                "n1",
                batch(vec![
                    ev("Node", "", "n1", ""),
                    ev("Pod", "default", "p1", &uid1),
                    // A second event about p1 in the same millisecond (the clock stands
                    // still): a name of its own, not "already exists".
                    ev("Pod", "default", "p1", &uid1),
                    ev("Node", "", "n2", ""),
                    ev("Pod", "default", "p2", ""),
                    ev("Secret", "default", "s", ""),
                    Kind::Event(b"{\"involvedObject\": 3}".to_vec()),
                ]),
            )
            .await;
        let errors: Vec<&str> = resp.results.iter().map(|r| r.error.as_str()).collect();
        assert_eq!(&errors[..3], &["", "", ""], "{errors:?}");
        for e in &errors[3..6] {
            assert!(e.contains("node n1 may not"), "{errors:?}");
        }
        assert!(errors[6].starts_with("malformed event"), "{errors:?}");
        let list = api
            .registry
            .list(info("", "events").unwrap(), None, &Default::default())
            .await
            .unwrap();
        let about: Vec<&str> = list
            .items
            .iter()
            .filter_map(|e| str_at(e, "/involvedObject/name"))
            .collect();
        assert!(about.contains(&"n1") && about.contains(&"p1"), "{about:?}");
        assert_eq!(about.iter().filter(|&&a| a == "p1").count(), 2, "{about:?}");

        // An agent-named Event sent again is a repeat: its count and lastTimestamp
        // change, its firstTimestamp stays. Another node cannot take it over.
        let named = |count: u32, last: &str, about: &str, uid: &str| {
            Kind::Event(bytes(json!({
                "metadata": {"name": "p1.17a0"},
                "involvedObject": {"kind": "Pod", "namespace": "default", "name": about, "uid": uid},
                "reason": "BackOff", "message": "m", "type": "Warning",
                "source": {"component": "kubelet", "host": "n1"},
                "count": count, "firstTimestamp": last, "lastTimestamp": last
            })))
        };
        assert_eq!(
            one(
                &reporter,
                "n1",
                named(1, "2026-01-01T00:00:00Z", "p1", &uid1)
            )
            .await,
            ""
        );
        assert_eq!(
            one(
                &reporter,
                "n1",
                named(4, "2026-01-01T00:02:00Z", "p1", &uid1)
            )
            .await,
            ""
        );
        let ev = get(&api, "", "events", Some("default"), "p1.17a0")
            .await
            .unwrap();
        assert_eq!(ev["count"], 4);
        assert_eq!(ev["firstTimestamp"], "2026-01-01T00:00:00Z");
        assert_eq!(ev["lastTimestamp"], "2026-01-01T00:02:00Z");
        let uid2 = make_pod(&api, "p3", "n2").await;
        let taken = one(
            &reporter,
            "n2",
            named(5, "2026-01-01T00:03:00Z", "p3", &uid2),
        )
        .await;
        assert!(taken.contains("did not record"), "{taken}");
        assert!(
            !about.contains(&"n2") && !about.contains(&"p2"),
            "{about:?}"
        );
    }

    #[tokio::test]
    async fn leases_carry_the_server_clock() {
        let (_dir, api, clock, reporter) = setup().await;
        let renew = || {
            Kind::Lease(LeaseRenewal {
                duration_seconds: 40,
            })
        };
        assert_eq!(one(&reporter, "n1", renew()).await, "");
        let lease = get(
            &api,
            "coordination.k8s.io",
            "leases",
            Some(LEASE_NAMESPACE),
            "n1",
        )
        .await
        .unwrap();
        assert_eq!(lease["spec"]["holderIdentity"], "n1");
        assert_eq!(lease["spec"]["leaseDurationSeconds"], 40);
        assert_eq!(lease["spec"]["renewTime"], "2023-11-14T22:13:20.000000Z");
        clock.advance(Duration::from_micros(10_500_250));
        assert_eq!(one(&reporter, "n1", renew()).await, "");
        let lease = get(
            &api,
            "coordination.k8s.io",
            "leases",
            Some(LEASE_NAMESPACE),
            "n1",
        )
        .await
        .unwrap();
        assert_eq!(lease["spec"]["renewTime"], "2023-11-14T22:13:30.500250Z");
        let err = one(
            &reporter,
            "n1",
            Kind::Lease(LeaseRenewal {
                duration_seconds: 0,
            }),
        )
        .await;
        assert!(err.starts_with("malformed lease"), "{err}");
    }

    #[tokio::test]
    async fn the_server_renews_a_registered_nodes_lease_with_its_owner() {
        let (_dir, api, clock, reporter) = setup().await;
        assert!(!reporter.renew_lease("n1", 40).await.unwrap());
        assert!(
            get(
                &api,
                "coordination.k8s.io",
                "leases",
                Some(LEASE_NAMESPACE),
                "n1"
            )
            .await
            .is_none(),
            "a Lease before the node registered"
        );
        let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}});
        assert_eq!(one(&reporter, "n1", Kind::Node(bytes(node))).await, "");
        assert!(reporter.renew_lease("n1", 40).await.unwrap());
        let lease = get(
            &api,
            "coordination.k8s.io",
            "leases",
            Some(LEASE_NAMESPACE),
            "n1",
        )
        .await
        .unwrap();
        assert_eq!(lease["spec"]["holderIdentity"], "n1");
        assert_eq!(lease["spec"]["leaseDurationSeconds"], 40);
        assert_eq!(lease["metadata"]["ownerReferences"][0]["name"], "n1");
        clock.advance(Duration::from_secs(10));
        assert!(reporter.renew_lease("n1", 40).await.unwrap());
        let renewed = get(
            &api,
            "coordination.k8s.io",
            "leases",
            Some(LEASE_NAMESPACE),
            "n1",
        )
        .await
        .unwrap();
        assert_eq!(renewed["spec"]["renewTime"], "2023-11-14T22:13:30.000000Z");
    }
    #[tokio::test]
    async fn final_deletes_and_mirror_pods_only_for_the_nodes_own_pods() {
        let (_dir, api, _clock, reporter) = setup().await;
        let uid1 = make_pod(&api, "p1", "n1").await;
        let uid2 = make_pod(&api, "p2", "n2").await;
        let del = |name: &str, uid: &str| {
            Kind::PodDeletion(PodDeletion {
                namespace: "default".into(),
                name: name.into(),
                uid: uid.into(),
            })
        };
        // A pod the API is not deleting stays; another node's pod is refused.
        let e = one(&reporter, "n1", del("p1", &uid1)).await;
        assert!(e.contains("which the API is not deleting"), "{e}");
        let e = one(&reporter, "n1", del("p2", &uid2)).await;
        assert!(e.contains("node n1 may not"), "{e}");
        // Once a graceful delete started, the node's final delete removes it.
        let pods = info("", "pods").unwrap();
        let graceful = kedge_apiserver::registry::DeleteOpts {
            grace_period_seconds: Some(30),
            ..Default::default()
        };
        api.registry
            .delete(pods, Some("default"), "p1", &graceful)
            .await
            .unwrap();
        assert!(get(&api, "", "pods", Some("default"), "p1").await.is_some());
        assert_eq!(one(&reporter, "n1", del("p1", "someone-else")).await, "");
        assert!(
            get(&api, "", "pods", Some("default"), "p1").await.is_some(),
            "a uid mismatch deletes nothing"
        );
        assert_eq!(one(&reporter, "n1", del("p1", &uid1)).await, "");
        assert!(get(&api, "", "pods", Some("default"), "p1").await.is_none());
        assert_eq!(
            one(&reporter, "n1", del("p1", &uid1)).await,
            "",
            "gone already is fine"
        );

        // Mirror pods: bound to the node, annotated, without secrets.
        let mirror = |node: &str, extra: Value| {
            let mut p = json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "static-n1", "namespace": "default",
                             "annotations": {MIRROR_ANNOTATION: "h1"}},
                "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}});
            if let Some(v) = extra.get("volumes") {
                p["spec"]["volumes"] = v.clone();
            }
            if let Some(a) = extra.get("annotations") {
                p["metadata"]["annotations"] = a.clone();
            }
            Kind::MirrorPod(bytes(p))
        };
        let e = one(&reporter, "n1", mirror("n2", json!({}))).await;
        assert!(e.contains("bound to another node"), "{e}");
        let e = one(&reporter, "n1", mirror("n1", json!({"annotations": {}}))).await;
        assert!(e.contains("without the kubernetes.io/config.mirror"), "{e}");
        let e = one(
            &reporter,
            "n1",
            mirror(
                "n1",
                json!({"volumes": [{"name": "s", "secret": {"secretName": "x"}}]}),
            ),
        )
        .await;
        assert!(e.contains("may not use secret volumes"), "{e}");
        assert_eq!(one(&reporter, "n1", mirror("n1", json!({}))).await, "");
        assert_eq!(
            one(&reporter, "n1", mirror("n1", json!({}))).await,
            "",
            "an existing mirror pod is fine"
        );
        let m = get(&api, "", "pods", Some("default"), "static-n1")
            .await
            .unwrap();
        assert_eq!(m["spec"]["nodeName"], "n1");
        // A mirror pod may be deleted by its node without a graceful delete first.
        let uid = str_at(&m, "/metadata/uid").unwrap().to_string();
        assert_eq!(one(&reporter, "n1", del("static-n1", &uid)).await, "");
        assert!(
            get(&api, "", "pods", Some("default"), "static-n1")
                .await
                .is_none()
        );
    }
}
