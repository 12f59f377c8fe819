//! kedge-controllers: the controllers of `kedge server`, each a kube-rs
//! client of the local Kubernetes API, like kube-controller-manager's.
//!
//! The binary builds one [`Context`] (a [`kube::Client`] with the
//! controller-manager's certificate, an injected [`Clock`], and the
//! [`Config`] from the server's flags) and calls [`run`]. [`run`] waits for
//! the `kube-system/kube-controller-manager` Lease ([`leader`]) and, while it
//! holds it, runs every controller from [`controllers`]. When the lease is
//! lost, every controller is stopped before the server campaigns again, so
//! two servers never run them at once.
//!
//! Each controller is a plain future ([`ControllerFuture`]) that runs until
//! it is dropped; most are built on `kube::runtime::Controller`. Their
//! decisions are pure functions of the objects they read, tested on tables;
//! the loops around them are tested end to end against the real server in
//! `control-plane/kedge/tests`.
//!
//! | module | controllers |
//! |--------|-------------|
//! | [`workloads`] | ReplicaSet, Deployment, DaemonSet, StatefulSet, Job, CronJob |
//! | [`nodelifecycle`] | Unknown nodes, unreachable taints, eviction by `kedge.io/autonomy` |
//! | [`endpoints`] | Endpoints and EndpointSlices from Services and pod readiness |
//! | [`gc`] | ownerReferences: background, foreground and orphan deletion |
//! | [`nodeipam`] | a podCIDR per node out of `--cluster-cidr` |
//! | [`podgc`] | pods on deleted nodes, unscheduled terminating pods, old terminated pods |
//! | [`serviceaccounts`] | a "default" ServiceAccount in every namespace |
//! | [`leader`] | Lease-based leader election (also used for the scheduler) |
//! | [`cache`] | watched copies of objects that controllers read |

pub mod cache;
pub mod clock;
pub mod endpoints;
pub mod gc;
pub mod leader;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod podgc;
pub mod serviceaccounts;
pub mod workloads;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

pub use clock::{Clock, SystemClock};

/// Errors of the controllers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed.
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
    /// A watch stream failed.
    #[error("watch failed: {0}")]
    Watch(#[from] kube::runtime::watcher::Error),
    /// An object could not be turned into what the controller needs.
    #[error("{0}")]
    Invalid(String),
}

/// Settings from `kedge server`'s flags.
#[derive(Debug, Clone)]
pub struct Config {
    /// How long a node's Lease may go unrenewed before the node is Unknown
    /// (`--node-monitor-grace-period`, 50 s).
    pub node_monitor_grace_period: Duration,
    /// The pod network nodes get their podCIDRs from (`--cluster-cidr`).
    pub cluster_cidr: String,
    /// The prefix length of each node's podCIDR (`--node-cidr-mask-size`, 24).
    pub node_cidr_mask_size: u8,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_monitor_grace_period: Duration::from_secs(50),
            cluster_cidr: "10.42.0.0/16".to_string(),
            node_cidr_mask_size: 24,
        }
    }
}

impl Config {
    /// Checks the flags before anything starts.
    pub fn validate(&self) -> Result<(), Error> {
        let cluster = nodeipam::Ipv4Net::parse(&self.cluster_cidr)
            .map_err(|e| Error::Invalid(format!("--cluster-cidr: {e}")))?;
        nodeipam::Allocator::new(cluster, self.node_cidr_mask_size)
            .map_err(|e| Error::Invalid(format!("--cluster-cidr: {e}")))?;
        if self.node_monitor_grace_period < Duration::from_secs(1) {
            return Err(Error::Invalid(
                "--node-monitor-grace-period must be at least 1s".into(),
            ));
        }
        Ok(())
    }
}

/// What every controller is given.
#[derive(Clone)]
pub struct Context {
    /// A client of the local API server, as system:kube-controller-manager.
    pub client: kube::Client,
    /// The time source; tests inject their own.
    pub clock: Arc<dyn Clock>,
    /// Settings from the server's flags.
    pub config: Arc<Config>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A running controller: it returns only when it fails for good, and is
/// stopped by dropping it.
pub type ControllerFuture = BoxFuture<'static, Result<(), Error>>;

/// Runs every controller until one fails; the leader election around it
/// then steps down and campaigns again, which restarts them all.
pub async fn run(ctx: Context) -> Result<(), Error> {
    use futures::StreamExt;
    let mut running: futures::stream::FuturesUnordered<_> = controllers(&ctx)
        .into_iter()
        .map(|(name, controller)| async move { (name, controller.await) })
        .collect();
    tracing::info!(count = running.len(), "controllers running");
    while let Some((name, result)) = running.next().await {
        match result {
            Ok(()) => tracing::warn!(controller = name, "controller returned"),
            Err(e) => {
                tracing::error!(controller = name, error = %e, "controller failed");
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Every controller, by name.
pub fn controllers(ctx: &Context) -> Vec<(&'static str, ControllerFuture)> {
    let mut all = Vec::new();
    all.extend(workloads::controllers(ctx));
    all.push(("endpoints", endpoints::controller(ctx)));
    all.push(("garbagecollector", gc::controller(ctx)));
    all.push(("nodelifecycle", nodelifecycle::controller(ctx)));
    all.push(("nodeipam", nodeipam::controller(ctx)));
    all.push(("podgc", podgc::controller(ctx)));
    all.push(("serviceaccount", serviceaccounts::controller(ctx)));
    all
}
