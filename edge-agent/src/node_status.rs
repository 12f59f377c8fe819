//! The parts of the Node's status that change while the agent runs: the pressure
//! conditions (MemoryPressure, DiskPressure, PIDPressure) and the images on the node.
//!
//! The loops that watch memory, disk and processes set them here; the agent renders
//! them into every Node it reports (`agent::node_object`). A condition keeps its
//! lastTransitionTime until its status changes, as the kubelet's do, and each pressure
//! that is on adds its `node.kubernetes.io/*-pressure` NoSchedule taint, which the
//! node lifecycle controller would add upstream.

use std::sync::Mutex;

use serde_json::{Value, json};

/// A node pressure the agent watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Pressure {
    Memory,
    Disk,
    Pid,
}

impl Pressure {
    pub const ALL: [Pressure; 3] = [Pressure::Memory, Pressure::Disk, Pressure::Pid];

    /// The condition type.
    pub fn condition(self) -> &'static str {
        match self {
            Pressure::Memory => "MemoryPressure",
            Pressure::Disk => "DiskPressure",
            Pressure::Pid => "PIDPressure",
        }
    }

    /// The taint a node under this pressure gets (NoSchedule).
    pub fn taint(self) -> &'static str {
        match self {
            Pressure::Memory => "node.kubernetes.io/memory-pressure",
            Pressure::Disk => "node.kubernetes.io/disk-pressure",
            Pressure::Pid => "node.kubernetes.io/pid-pressure",
        }
    }

    /// The kubelet's reason and message, with and without the pressure.
    fn wording(self, on: bool) -> (&'static str, &'static str) {
        match (self, on) {
            (Pressure::Memory, false) => (
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            (Pressure::Memory, true) => (
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available",
            ),
            (Pressure::Disk, false) => ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            (Pressure::Disk, true) => ("KubeletHasDiskPressure", "kubelet has disk pressure"),
            (Pressure::Pid, false) => (
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            (Pressure::Pid, true) => (
                "KubeletHasInsufficientPID",
                "kubelet has insufficient PID available",
            ),
        }
    }
}

/// An image on the node, as `status.images` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeImage {
    /// Its references: the name it was pulled or imported as, and `name@digest`.
    pub names: Vec<String>,
    pub size_bytes: u64,
}

/// How many images `status.images` lists at most (the kubelet's default,
/// --node-status-max-images).
pub const MAX_IMAGES: usize = 50;

#[derive(Debug, Default)]
struct State {
    /// Per pressure: whether it is on, and since when (RFC 3339).
    pressure: [(bool, Option<String>); 3],
    images: Vec<NodeImage>,
}

/// The live part of the Node's status, shared by the loops that set it and the agent
/// that reports it.
#[derive(Debug, Default)]
pub struct LiveNodeStatus {
    state: Mutex<State>,
    /// Signalled on every change, so that the agent reports the Node at once (as the
    /// kubelet does) rather than at its next periodic status report.
    changed: tokio::sync::Notify,
}

impl LiveNodeStatus {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets a pressure on or off at `now` (RFC 3339); returns whether it changed.
    pub fn set_pressure(&self, pressure: Pressure, on: bool, now: &str) -> bool {
        let mut s = self.lock();
        let slot = &mut s.pressure[pressure as usize];
        if slot.0 == on && slot.1.is_some() {
            return false;
        }
        let changed = slot.0 != on;
        *slot = (on, Some(now.to_string()));
        drop(s);
        if changed {
            self.changed.notify_one();
        }
        changed
    }

    /// Resolves after the next change (or at once if one happened since the last call).
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    /// Whether a pressure is on.
    pub fn under(&self, pressure: Pressure) -> bool {
        self.lock().pressure[pressure as usize].0
    }

    /// Replaces the list of images, largest first, at most [`MAX_IMAGES`].
    pub fn set_images(&self, mut images: Vec<NodeImage>) {
        images.sort_by(|a, b| {
            b.size_bytes
                .cmp(&a.size_bytes)
                .then_with(|| a.names.cmp(&b.names))
        });
        images.truncate(MAX_IMAGES);
        let mut s = self.lock();
        if s.images != images {
            s.images = images;
            drop(s);
            self.changed.notify_one();
        }
    }

    /// The pressure conditions, for `status.conditions`; `now` is the heartbeat time
    /// and the transition time of a condition never set.
    pub fn conditions(&self, now: &str) -> Vec<Value> {
        let s = self.lock();
        Pressure::ALL
            .iter()
            .map(|&p| {
                let (on, since) = &s.pressure[p as usize];
                let (reason, message) = p.wording(*on);
                json!({
                    "type": p.condition(),
                    "status": if *on { "True" } else { "False" },
                    "reason": reason,
                    "message": message,
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": since.as_deref().unwrap_or(now),
                })
            })
            .collect()
    }

    /// The taints of the pressures that are on.
    pub fn taints(&self) -> Vec<Value> {
        let s = self.lock();
        Pressure::ALL
            .iter()
            .filter(|&&p| s.pressure[p as usize].0)
            .map(|p| json!({"key": p.taint(), "effect": "NoSchedule"}))
            .collect()
    }

    /// `status.images`.
    pub fn images(&self) -> Vec<Value> {
        self.lock()
            .images
            .iter()
            .map(|i| json!({"names": i.names, "sizeBytes": i.size_bytes}))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_condition_keeps_its_transition_time_until_it_changes() {
        let live = LiveNodeStatus::default();
        let c = live.conditions("t0");
        assert_eq!(c[0]["type"], "MemoryPressure");
        assert_eq!(c[0]["status"], "False");
        assert_eq!(c[0]["reason"], "KubeletHasSufficientMemory");
        assert!(live.taints().is_empty());

        assert!(!live.set_pressure(Pressure::Memory, false, "t1"));
        assert!(!live.set_pressure(Pressure::Memory, false, "t2"));
        assert_eq!(live.conditions("t3")[0]["lastTransitionTime"], "t1");

        assert!(live.set_pressure(Pressure::Memory, true, "t4"));
        let c = live.conditions("t5");
        assert_eq!(c[0]["status"], "True");
        assert_eq!(c[0]["reason"], "KubeletHasInsufficientMemory");
        assert_eq!(c[0]["lastTransitionTime"], "t4");
        assert_eq!(c[0]["lastHeartbeatTime"], "t5");
        assert_eq!(c[1]["type"], "DiskPressure");
        assert_eq!(c[2]["type"], "PIDPressure");
        assert_eq!(
            live.taints(),
            [json!({"key": "node.kubernetes.io/memory-pressure", "effect": "NoSchedule"})]
        );
        assert!(live.under(Pressure::Memory));
        assert!(!live.under(Pressure::Disk));
    }

    #[test]
    fn images_are_listed_largest_first_and_bounded() {
        let live = LiveNodeStatus::default();
        let images = (0..60)
            .map(|i| NodeImage {
                names: vec![format!("img-{i}")],
                size_bytes: i,
            })
            .collect();
        live.set_images(images);
        let listed = live.images();
        assert_eq!(listed.len(), MAX_IMAGES);
        assert_eq!(listed[0]["names"][0], "img-59");
        assert_eq!(listed[0]["sizeBytes"], 59);
    }
}
