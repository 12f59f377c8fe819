//! Workload controllers: ReplicaSet, Deployment, DaemonSet, StatefulSet,
//! Job and CronJob, as kube-controller-manager runs them.
//!
//! Each controller module has the same shape: a pure decision (`plan`,
//! objects in, actions and status out) tested on tables in the module, and a
//! `run` loop on `kube::runtime::Controller` that reads the objects, applies
//! the decision and writes status with the object's resourceVersion as a
//! precondition (a 409 is retried by requeue). [`common`] holds what they
//! share and explains why they need no "expectations".
//!
//! | module | what |
//! |--------|------|
//! | [`replicaset`] | pods to match replicas; adoption and release; upstream's scale-down order |
//! | [`deployment`] | RollingUpdate/Recreate through ReplicaSets `<name>-<pod-template-hash>`, revisions, undo, pause, progress deadline |
//! | [`daemonset`] | a pod per eligible node (pinned by node affinity, bound by the scheduler), RollingUpdate/OnDelete |
//! | [`statefulset`] | `<name>-<ordinal>` pods, OrderedReady/Parallel, partitioned rolling update |
//! | [`revisions`] | ControllerRevisions for DaemonSets and StatefulSets |
//! | [`job`] | completions, parallelism, backoffLimit, deadline, Indexed, TTL after finished |
//! | [`cronjob`], [`cron`] | Jobs on a cron schedule in a time zone |
//! | [`common`] | ownership, selectors, pod readiness, Events, the reconcile plumbing |
//!
//! Each controller watches its own kind and what it owns (the ReplicaSet
//! controller watches every pod, to adopt orphans; the DaemonSet controller
//! watches Nodes). Time comes from the injected clock.
//!
//! Architecture invariant: a reconcile is level-triggered and idempotent; it
//! reads the current state and never relies on having seen an event.

pub mod common;
pub mod cron;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod job;
pub mod replicaset;
pub mod revisions;
pub mod statefulset;

use crate::{Context, ControllerFuture};

/// The workload controllers, by name.
pub fn controllers(ctx: &Context) -> Vec<(&'static str, ControllerFuture)> {
    vec![
        ("replicaset", replicaset::run(ctx)),
        ("deployment", deployment::run(ctx)),
        ("job", job::run(ctx)),
        ("daemonset", daemonset::run(ctx)),
        ("statefulset", statefulset::run(ctx)),
        ("cronjob", cronjob::run(ctx)),
    ]
}
