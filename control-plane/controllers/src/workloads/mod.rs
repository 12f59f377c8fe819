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
