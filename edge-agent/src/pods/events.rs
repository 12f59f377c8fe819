//! Events the pod manager records about pods and the node (`Pulled`, `Created`,
//! `Started`, `Killing`, `BackOff`, `Unhealthy` …), as core/v1 Events with the
//! kubelet's source, reasons and messages, sent through the report queue.
//!
//! The kubelet's event recorder folds repeats of one event into a count; the server
//! here only creates events, so the agent drops an event identical to one it sent in
//! the last [`REPEAT_WINDOW`] instead (a container in CrashLoopBackOff would otherwise
//! send a BackOff every sync).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use crate::report::ReportQueue;

/// How long an identical event is not sent again.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(300);

/// Normal or Warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// Where events go: the report queue, or a test's list.
pub trait EventSink: Send + Sync + std::fmt::Debug {
    fn send(&self, event_json: Vec<u8>);
}

impl EventSink for ReportQueue {
    fn send(&self, event_json: Vec<u8>) {
        self.event(event_json);
    }
}

/// Records events for one node.
#[derive(Debug, Clone)]
pub struct Recorder {
    node: String,
    sink: Arc<dyn EventSink>,
    recent: Arc<Mutex<HashMap<String, Timestamp>>>,
}

/// `spec.containers{name}` / `spec.initContainers{name}`, the fieldPath of an event
/// about a container.
pub fn container_field_path(pod: &Pod, container: &str) -> String {
    let is_init = pod
        .spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .is_some_and(|inits| inits.iter().any(|c| c.name == container));
    if is_init {
        format!("spec.initContainers{{{container}}}")
    } else {
        format!("spec.containers{{{container}}}")
    }
}

impl Recorder {
    pub fn new(node: impl Into<String>, sink: Arc<dyn EventSink>) -> Recorder {
        Recorder {
            node: node.into(),
            sink,
            recent: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// An event about a pod, or one of its containers when `field_path` is given.
    pub fn pod(
        &self,
        pod: &Pod,
        field_path: Option<String>,
        kind: EventType,
        reason: &str,
        message: &str,
        now: Timestamp,
    ) {
        let meta = &pod.metadata;
        let key = format!(
            "{}/{}/{:?}/{reason}/{message}",
            meta.uid.as_deref().unwrap_or_default(),
            field_path.as_deref().unwrap_or_default(),
            kind
        );
        if !self.fresh(key, now) {
            return;
        }
        let mut involved = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "namespace": meta.namespace.as_deref().unwrap_or("default"),
            "name": meta.name.as_deref().unwrap_or_default(),
            "uid": meta.uid.as_deref().unwrap_or_default(),
        });
        if let Some(path) = field_path {
            involved["fieldPath"] = json!(path);
        }
        self.send(
            meta.namespace.as_deref().unwrap_or("default"),
            involved,
            kind,
            reason,
            message,
            now,
        );
    }

    /// An event about this node.
    pub fn node(
        &self,
        uid: Option<&str>,
        kind: EventType,
        reason: &str,
        message: &str,
        now: Timestamp,
    ) {
        let key = format!("node/{kind:?}/{reason}/{message}");
        if !self.fresh(key, now) {
            return;
        }
        let mut involved = json!({"kind": "Node", "name": self.node});
        if let Some(uid) = uid {
            involved["uid"] = json!(uid);
        }
        self.send("default", involved, kind, reason, message, now);
    }

    fn fresh(&self, key: String, now: Timestamp) -> bool {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let window = jiff::SignedDuration::try_from(REPEAT_WINDOW).unwrap_or_default();
        if let Some(last) = recent.get(&key)
            && now.duration_since(*last) < window
        {
            return false;
        }
        if recent.len() > 4096 {
            recent.retain(|_, t| now.duration_since(*t) < window);
        }
        recent.insert(key, now);
        true
    }

    fn send(
        &self,
        namespace: &str,
        involved: serde_json::Value,
        kind: EventType,
        reason: &str,
        message: &str,
        now: Timestamp,
    ) {
        let stamp = now
            .round(jiff::Unit::Second)
            .map(|t| t.to_string())
            .unwrap_or_default();
        let micro = now.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string();
        let event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"namespace": namespace},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": kind.as_str(),
            "source": {"component": "kubelet", "host": self.node},
            "reportingComponent": "kubelet",
            "reportingInstance": self.node,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "eventTime": micro,
            "action": reason,
            "count": 1,
        });
        self.sink.send(event.to_string().into_bytes());
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[derive(Debug, Default)]
    pub(crate) struct Collected(pub Mutex<Vec<serde_json::Value>>);

    impl EventSink for Collected {
        fn send(&self, event_json: Vec<u8>) {
            self.0
                .lock()
                .unwrap()
                .push(serde_json::from_slice(&event_json).unwrap());
        }
    }

    #[test]
    fn container_events_carry_the_field_path_and_repeats_are_dropped() {
        let sink = Arc::new(Collected::default());
        let r = Recorder::new("pi-1", sink.clone());
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "apps", "uid": "u1"},
            "spec": {"initContainers": [{"name": "setup"}], "containers": [{"name": "app"}]}
        }))
        .unwrap();
        let t0 = Timestamp::from_second(1_700_000_000).unwrap();
        let path = container_field_path(&pod, "app");
        r.pod(
            &pod,
            Some(path.clone()),
            EventType::Warning,
            "BackOff",
            "Back-off restarting failed container app in pod web_apps(u1)",
            t0,
        );
        r.pod(
            &pod,
            Some(path.clone()),
            EventType::Warning,
            "BackOff",
            "Back-off restarting failed container app in pod web_apps(u1)",
            t0 + jiff::SignedDuration::from_secs(30),
        );
        r.pod(
            &pod,
            Some(path),
            EventType::Warning,
            "BackOff",
            "Back-off restarting failed container app in pod web_apps(u1)",
            t0 + jiff::SignedDuration::from_secs(301),
        );
        let events = sink.0.lock().unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(
            events[0]["involvedObject"]["fieldPath"],
            "spec.containers{app}"
        );
        assert_eq!(events[0]["source"]["component"], "kubelet");
        assert_eq!(events[0]["metadata"]["namespace"], "apps");
        assert_eq!(
            container_field_path(&pod, "setup"),
            "spec.initContainers{setup}"
        );
    }
}
