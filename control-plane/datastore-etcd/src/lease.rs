//! Which etcd lease a write with a TTL attaches to.
//!
//! A lease per write would mean a grant per write and a lease per key in etcd,
//! and Kubernetes writes an Event, each with a TTL, for nearly everything that
//! happens. So, as the Kubernetes apiserver does, keys written close together
//! with the same TTL share one lease: a lease granted less than the reuse
//! window ago is reused, and every lease is granted for the TTL plus that
//! window. A key attached at most one window after the grant therefore lives at
//! least its TTL, and at most one window longer.
//!
//! This module does no I/O and reads no clock: the store passes `now` in.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// The longest reuse window, whatever the TTL.
const MAX_REUSE: Duration = Duration::from_secs(60);
/// The reuse window as a share of the TTL, in percent.
const REUSE_PERCENT: u64 = 5;
/// The most keys attached to one lease, so that the expiry of one lease never
/// deletes an unbounded number of keys in one revision.
pub(crate) const MAX_KEYS_PER_LEASE: u32 = 1000;

/// A TTL in whole seconds, rounded up (etcd leases count seconds), at least 1.
pub(crate) fn ttl_seconds(ttl: Duration) -> i64 {
    let secs = ttl
        .as_secs()
        .saturating_add(u64::from(ttl.subsec_nanos() > 0));
    i64::try_from(secs.max(1)).unwrap_or(i64::MAX)
}

/// How long after its grant a lease for `ttl_secs` may still be reused:
/// min(60 s, 5 % of the TTL), in whole seconds.
pub(crate) fn reuse_window(ttl_secs: i64) -> i64 {
    let percent = ttl_secs.saturating_mul(REUSE_PERCENT as i64) / 100;
    percent.clamp(0, MAX_REUSE.as_secs() as i64)
}

/// The TTL to ask etcd for when granting a lease for keys of `ttl_secs`.
pub(crate) fn grant_ttl(ttl_secs: i64) -> i64 {
    ttl_secs.saturating_add(reuse_window(ttl_secs))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Granted {
    id: i64,
    /// When the grant was asked for; the lease itself started no earlier.
    at: Instant,
    attached: u32,
}

/// The newest lease granted for each TTL.
#[derive(Debug, Default)]
pub(crate) struct LeaseCache {
    by_ttl: HashMap<i64, Granted>,
}

impl LeaseCache {
    /// A lease to attach a key of `ttl_secs` to at `now`, if one granted
    /// recently enough has room.
    pub(crate) fn reuse(&mut self, ttl_secs: i64, now: Instant) -> Option<i64> {
        let window = Duration::from_secs(reuse_window(ttl_secs) as u64);
        let lease = self.by_ttl.get_mut(&ttl_secs)?;
        let fresh = now.saturating_duration_since(lease.at) < window;
        if fresh && lease.attached < MAX_KEYS_PER_LEASE {
            lease.attached += 1;
            Some(lease.id)
        } else {
            None
        }
    }

    /// Records a lease for `ttl_secs` whose grant was asked for at `asked_at`,
    /// with one key about to be attached. Forgets leases that can no longer be
    /// reused.
    pub(crate) fn granted(&mut self, ttl_secs: i64, id: i64, asked_at: Instant) {
        self.by_ttl.retain(|ttl, lease| {
            let window = Duration::from_secs(reuse_window(*ttl) as u64);
            asked_at.saturating_duration_since(lease.at) < window
        });
        self.by_ttl.insert(
            ttl_secs,
            Granted {
                id,
                at: asked_at,
                attached: 1,
            },
        );
    }

    /// Forgets a lease etcd no longer knows.
    pub(crate) fn forget(&mut self, id: i64) {
        self.by_ttl.retain(|_, lease| lease.id != id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_and_grants() {
        assert_eq!(ttl_seconds(Duration::from_millis(1)), 1);
        assert_eq!(ttl_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(ttl_seconds(Duration::from_secs(30)), 30);
        assert_eq!(ttl_seconds(Duration::MAX), i64::MAX);
        assert_eq!(reuse_window(10), 0, "short TTLs get no reuse");
        assert_eq!(reuse_window(100), 5);
        assert_eq!(reuse_window(3600), 60, "capped at a minute");
        assert_eq!(grant_ttl(3600), 3660);
        assert_eq!(grant_ttl(i64::MAX), i64::MAX);
    }

    #[test]
    fn reuses_within_the_window_only() {
        let t0 = Instant::now();
        let mut cache = LeaseCache::default();
        assert_eq!(cache.reuse(3600, t0), None);
        cache.granted(3600, 7, t0);
        assert_eq!(cache.reuse(3600, t0 + Duration::from_secs(59)), Some(7));
        assert_eq!(
            cache.reuse(3599, t0),
            None,
            "other TTLs get their own lease"
        );
        assert_eq!(cache.reuse(3600, t0 + Duration::from_secs(60)), None);
        // No key outlives its lease: one attached just inside the window still
        // has its whole TTL left.
        let attached_at = Duration::from_secs(59);
        assert!(
            attached_at + Duration::from_secs(3600) <= Duration::from_secs(grant_ttl(3600) as u64)
        );
    }

    #[test]
    fn short_ttls_never_share() {
        let t0 = Instant::now();
        let mut cache = LeaseCache::default();
        cache.granted(10, 1, t0);
        assert_eq!(cache.reuse(10, t0), None);
    }

    #[test]
    fn a_full_lease_is_not_reused() {
        let t0 = Instant::now();
        let mut cache = LeaseCache::default();
        cache.granted(3600, 1, t0);
        for _ in 1..MAX_KEYS_PER_LEASE {
            assert_eq!(cache.reuse(3600, t0), Some(1));
        }
        assert_eq!(cache.reuse(3600, t0), None);
    }

    #[test]
    fn forgets_revoked_and_stale_leases() {
        let t0 = Instant::now();
        let mut cache = LeaseCache::default();
        cache.granted(3600, 1, t0);
        cache.forget(1);
        assert_eq!(cache.reuse(3600, t0), None);
        cache.granted(3600, 2, t0);
        cache.granted(1800, 3, t0 + Duration::from_secs(120));
        assert_eq!(cache.by_ttl.len(), 1, "the stale 3600 s lease is dropped");
    }
}
