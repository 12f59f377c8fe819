//! Events the pod manager records about pods and the node (`Pulled`, `Created`,
//! `Started`, `Killing`, `BackOff`, `Unhealthy` …), as core/v1 Events with the
//! kubelet's source, reasons and messages, sent through the report queue.
//!
//! Repeats are aggregated as the kubelet's event correlator does: an event identical
//! to one recorded in the last [`SERIES_WINDOW`] (same object, type, reason and
//! message) is the same Event, its `count` raised and `lastTimestamp` moved, so that
//! one Event says how often and over how long it happened. To spare the uplink, a repeat is sent at
//! most every [`RESEND_EVERY`] (a container in CrashLoopBackOff syncs every 10 s); the
//! count it carries includes the repeats not sent. The agent names the Event
//! (`<object>.<unix nanoseconds, hex>`), so the server updates the one it created.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use crate::report::ReportQueue;

/// How long after its last occurrence an event may still be repeated into the same
/// Event (upstream's aggregation window is 10 minutes).
pub const SERIES_WINDOW: Duration = Duration::from_secs(600);

/// The least time between two sends of one series' updates.
pub const RESEND_EVERY: Duration = Duration::from_secs(30);

/// One Event and its repeats.
#[derive(Clone, Debug)]
struct Series {
    name: String,
    count: u32,
    first: Timestamp,
    last: Timestamp,
    last_sent: Timestamp,
}

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
    recent: Arc<Mutex<HashMap<String, Series>>>,
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
        let object = meta.name.as_deref().unwrap_or_default();
        let Some(series) = self.occurrence(key, object, now) else {
            return;
        };
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
            &series,
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
        let node = self.node.clone();
        let Some(series) = self.occurrence(key, &node, now) else {
            return;
        };
        let mut involved = json!({"kind": "Node", "name": self.node});
        if let Some(uid) = uid {
            involved["uid"] = json!(uid);
        }
        self.send("default", involved, kind, reason, message, &series);
    }

    /// Counts an occurrence of the event `key` about `object` at `now`: the series to
    /// send, or `None` when this repeat waits for a later one to be sent.
    fn occurrence(&self, key: String, object: &str, now: Timestamp) -> Option<Series> {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let window = jiff::SignedDuration::try_from(SERIES_WINDOW).unwrap_or_default();
        let resend = jiff::SignedDuration::try_from(RESEND_EVERY).unwrap_or_default();
        if let Some(series) = recent.get_mut(&key)
            && now.duration_since(series.last) < window
        {
            series.count += 1;
            series.last = now;
            if now.duration_since(series.last_sent) < resend {
                return None;
            }
            series.last_sent = now;
            return Some(series.clone());
        }
        if recent.len() > 4096 {
            recent.retain(|_, s| now.duration_since(s.last) < window);
        }
        let series = Series {
            name: format!("{object}.{:x}", now.as_nanosecond().max(0)),
            count: 1,
            first: now,
            last: now,
            last_sent: now,
        };
        recent.insert(key, series.clone());
        Some(series)
    }

    fn send(
        &self,
        namespace: &str,
        involved: serde_json::Value,
        kind: EventType,
        reason: &str,
        message: &str,
        series: &Series,
    ) {
        let seconds = |t: Timestamp| {
            t.round(jiff::Unit::Second)
                .map(|t| t.to_string())
                .unwrap_or_default()
        };
        let micro = series.first.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string();
        let event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"namespace": namespace, "name": series.name},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": kind.as_str(),
            "source": {"component": "kubelet", "host": self.node},
            "reportingComponent": "kubelet",
            "reportingInstance": self.node,
            "firstTimestamp": seconds(series.first),
            "lastTimestamp": seconds(series.last),
            "eventTime": micro,
            "action": reason,
            "count": series.count,
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
    fn container_events_carry_the_field_path_and_repeats_are_counted() {
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
            t0 + jiff::SignedDuration::from_secs(10),
        );
        r.pod(
            &pod,
            Some(path.clone()),
            EventType::Warning,
            "BackOff",
            "Back-off restarting failed container app in pod web_apps(u1)",
            t0 + jiff::SignedDuration::from_secs(40),
        );
        // Long after the last repeat: a new Event.
        r.pod(
            &pod,
            Some(path),
            EventType::Warning,
            "BackOff",
            "Back-off restarting failed container app in pod web_apps(u1)",
            t0 + jiff::SignedDuration::from_secs(40 + 601),
        );
        let events = sink.0.lock().unwrap();
        // The first, the third (the second waited for it: within 30 s), the fourth.
        assert_eq!(events.len(), 3);
        let name = events[0]["metadata"]["name"].as_str().unwrap();
        assert!(name.starts_with("web."), "{name}");
        assert_eq!(events[0]["count"], 1);
        assert_eq!(events[1]["metadata"]["name"], name, "the same Event");
        assert_eq!(events[1]["count"], 3);
        assert_eq!(events[1]["firstTimestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(events[1]["lastTimestamp"], "2023-11-14T22:14:00Z");
        assert_ne!(events[2]["metadata"]["name"], name);
        assert_eq!(events[2]["count"], 1);
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
