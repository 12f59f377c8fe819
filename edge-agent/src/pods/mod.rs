//! The pod manager: the kubelet part of the agent.
//!
//! It runs the pods bound to this node (from the local desired-state store, so it works
//! with or without a server) on containerd, and reports their status.
//!
//! - [`runtime`]: what the manager sees of the container runtime and asks of it, in the
//!   CRI's terms (sandboxes, containers, attempts).
//! - [`containerd`]: the runtime over containerd, CNI and the pause process.
//! - [`streams`]: logs, exec, attach and port-forward into the pods.
//! - [`plan`]: what to do next for one pod, a pure function (the kubelet's
//!   `computePodActions`).
//! - [`status`]: the pod's status from what the runtime holds, a pure function.
//! - [`manager`]: one worker per pod the node should run; cleanup of the rest.
//! - [`worker`]: syncs one pod: decide, act, report; terminates it when deleted.
//! - [`static_pods`]: pods from manifest files, run with or without a server.
//! - [`reporting`]: statuses, final deletes and mirror pods into the report queue.
//! - [`events`]: the kubelet's events about pods.
//! - [`backoff`]: CrashLoopBackOff, the wait before a failed container starts again.
//! - [`probe`]: liveness, readiness and startup probes: running them and their thresholds.

pub mod backoff;
pub mod containerd;
pub mod events;
#[cfg(test)]
pub mod fake;
pub mod manager;
pub mod plan;
pub mod probe;
pub mod reporting;
pub mod runtime;
pub mod static_pods;
pub mod status;
pub mod streams;
#[cfg(test)]
mod tests;
pub mod worker;
