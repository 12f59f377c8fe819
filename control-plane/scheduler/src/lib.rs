//! kedge-scheduler: places pending pods on nodes.
//!
//! Two halves, split by what they depend on:
//!
//! - the decision ([`decide::schedule`]): a pure function from a
//!   [`Snapshot`] of nodes and placed pods, and a [`PendingPod`], to a node
//!   name or a [`FitError`] worded as upstream's kube-scheduler words it.
//!   [`quantity`], [`resources`], [`selectors`], [`snapshot`] and
//!   [`decide`] do no I/O and read no clock;
//! - the loop ([`run`]): watches Nodes and Pods through the Kubernetes API
//!   (kube-rs), keeps the snapshot current, decides one pod at a time, and
//!   binds through `pods/<name>/binding` with several binds in flight.
//!
//! It talks to the cluster only through the API: it must not depend on the
//! apiserver, the datastore or any other kedge crate.

pub mod config;
pub mod decide;
pub mod quantity;
pub mod queue;
pub mod resources;
mod run;
pub mod selectors;
pub mod snapshot;

pub use config::{Config, ConfigError};
pub use decide::{FitError, InvalidPod, PendingPod, schedule};
pub use run::{Error, run};
pub use snapshot::Snapshot;
