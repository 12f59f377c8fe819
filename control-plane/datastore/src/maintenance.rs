//! Background upkeep of a store: compaction and TTL expiry.
//!
//! Compaction keeps the database bounded however fast keys churn: every
//! `compact_interval` the history is cut back to the newest `compact_retain`
//! revisions. With several servers on one database each runs this loop;
//! compacting is idempotent, so the first one to reach a revision does the work
//! and the others find nothing to do.

use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info, warn};

use crate::Store;
use crate::error::Result;
use crate::types::Revision;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaintenanceConfig {
    /// How often to compact. kine and the Kubernetes apiserver use 5 minutes.
    pub compact_interval: Duration,
    /// How many of the newest revisions compaction keeps. kine keeps 1000.
    pub compact_retain: i64,
    /// How often to look for keys whose TTL has passed.
    pub expire_interval: Duration,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        MaintenanceConfig {
            compact_interval: Duration::from_secs(300),
            compact_retain: 1000,
            expire_interval: Duration::from_secs(1),
        }
    }
}

/// Compacts `store` to its current revision minus `retain`, if that is newer
/// than what is compacted already. Returns the revision compacted to.
pub async fn compact_once(store: &dyn Store, retain: i64) -> Result<Option<Revision>> {
    let current = store.current_revision().await?;
    let target = current - retain.max(0);
    if target <= store.compact_revision().await? {
        return Ok(None);
    }
    store.compact(target).await?;
    Ok(Some(target))
}

/// Runs compaction and TTL expiry until `shutdown` resolves. Errors are logged
/// and retried at the next tick; the store keeps serving either way.
pub async fn run(
    store: Arc<dyn Store>,
    config: MaintenanceConfig,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut compact = tokio::time::interval(config.compact_interval);
    let mut expire = tokio::time::interval(config.expire_interval);
    compact.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    expire.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    compact.tick().await; // the first tick is immediate; compact one interval from now
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = compact.tick() => match compact_once(store.as_ref(), config.compact_retain).await {
                Ok(Some(revision)) => info!(backend = store.backend(), revision, "compacted"),
                Ok(None) => debug!(backend = store.backend(), "nothing to compact"),
                Err(err) => warn!(backend = store.backend(), error = %err, "compaction failed"),
            },
            _ = expire.tick() => match store.expire_keys().await {
                Ok(0) => {}
                Ok(n) => debug!(backend = store.backend(), expired = n, "expired keys"),
                Err(err) => warn!(backend = store.backend(), error = %err, "expiring keys failed"),
            },
        }
    }
}
