//! Workload controllers: ReplicaSet, Deployment, DaemonSet, StatefulSet,
//! Job and CronJob. (Being written.)

use crate::{Context, ControllerFuture};

/// The workload controllers, by name.
pub fn controllers(_ctx: &Context) -> Vec<(&'static str, ControllerFuture)> {
    Vec::new()
}
