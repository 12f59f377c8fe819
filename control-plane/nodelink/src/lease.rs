//! The node's Lease, renewed by the server from the liveness of the tunnel itself.
//!
//! A kubelet renews its node's Lease in `kube-node-lease` every 10 s. Sent over an
//! edge link, those renewals were most of an idle agent's uplink. Instead, the server
//! that holds a node's tunnel renews the Lease while the connection is up: the tunnel's
//! keepalives already prove the agent is there (a connection that hears nothing for its
//! idle timeout is closed), so the renewal costs the link nothing. The agent sends no
//! renewals (`kedge-agent --lease-interval`, off by default, turns its own back on).
//!
//! The Lease keeps its meaning for the node lifecycle controller: when the tunnel goes
//! (the link is cut and the idle timeout passes, or the agent stops), renewals stop, and
//! after `--node-monitor-grace-period` the node becomes Unknown, as a node whose kubelet
//! stopped does. Nothing is written before the agent has registered its Node.

use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, warn};

use crate::report::Reporter;

/// How often, and for how long, the server renews a connected node's Lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseOptions {
    /// Between renewals.
    pub renew_interval: Duration,
    /// `leaseDurationSeconds` written on the Lease.
    pub duration_seconds: i32,
}

impl Default for LeaseOptions {
    /// The kubelet's: every 10 s, for 40 s.
    fn default() -> Self {
        LeaseOptions {
            renew_interval: Duration::from_secs(10),
            duration_seconds: 40,
        }
    }
}

impl LeaseOptions {
    /// For a node lifecycle grace period: at least five renewals within it (every 10 s
    /// at most, every second at least), each valid for four intervals, as the kubelet's
    /// 10 s and 40 s are for upstream's 50 s.
    pub fn for_grace_period(grace: Duration) -> LeaseOptions {
        let renew_interval = (grace / 5).clamp(Duration::from_secs(1), Duration::from_secs(10));
        let duration = (renew_interval * 4).as_secs_f64().ceil() as i32;
        LeaseOptions {
            renew_interval,
            duration_seconds: duration.max(1),
        }
    }
}

/// Renews `node`'s Lease every `options.renew_interval` for as long as it runs (the
/// caller drops it when the node's connection ends). Until the node has registered it
/// looks again every second.
pub(crate) async fn renew_while_connected(
    reporter: Arc<Reporter>,
    node: String,
    options: LeaseOptions,
) -> std::convert::Infallible {
    let soon = options.renew_interval.min(Duration::from_secs(1));
    loop {
        let wait = match reporter.renew_lease(&node, options.duration_seconds).await {
            Ok(true) => {
                debug!(%node, "renewed the node's Lease (its tunnel is up)");
                options.renew_interval
            }
            Ok(false) => soon,
            Err(e) => {
                warn!(%node, error = %e, "cannot renew the node's Lease");
                options.renew_interval
            }
        };
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewals_fit_the_grace_period() {
        assert_eq!(
            LeaseOptions::for_grace_period(Duration::from_secs(50)),
            LeaseOptions::default()
        );
        assert_eq!(
            LeaseOptions::for_grace_period(Duration::from_secs(300)),
            LeaseOptions::default()
        );
        let short = LeaseOptions::for_grace_period(Duration::from_secs(8));
        assert_eq!(short.renew_interval, Duration::from_millis(1600));
        assert_eq!(short.duration_seconds, 7);
        let tiny = LeaseOptions::for_grace_period(Duration::from_secs(1));
        assert_eq!(tiny.renew_interval, Duration::from_secs(1));
        assert_eq!(tiny.duration_seconds, 4);
    }
}
