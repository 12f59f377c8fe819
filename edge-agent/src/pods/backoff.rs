//! CrashLoopBackOff: how long a container that exited waits before it is started again.
//!
//! The upstream kubelet's rules: the first restart waits 10 s, each next one twice as
//! long, up to 5 minutes; a container that ran without failing for twice the cap starts
//! from 10 s again. The clock starts when the container last finished, so a restarted
//! agent waits out the same back-off instead of restarting at once.
//!
//! Time is passed in: the wall-clock instants come from the runtime (when a container
//! finished) and from the caller (now).

use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;

/// The first back-off.
pub const INITIAL: Duration = Duration::from_secs(10);
/// The longest back-off (the kubelet's MaxContainerBackOff).
pub const MAX: Duration = Duration::from_secs(300);

#[derive(Clone, Debug)]
struct Entry {
    backoff: Duration,
    last_update: Timestamp,
}

/// Back-off per container key (pod uid, container name, spec hash).
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    entries: HashMap<String, Entry>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(INITIAL, MAX)
    }
}

fn since(later: Timestamp, earlier: Timestamp) -> Duration {
    let nanos = later.as_nanosecond() - earlier.as_nanosecond();
    if nanos <= 0 {
        Duration::ZERO
    } else {
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            entries: HashMap::new(),
        }
    }

    /// The key of a container: a container whose spec changed starts its back-off over.
    pub fn key(pod_uid: &str, container: &str, hash: &str) -> String {
        format!("{pod_uid}/{container}/{hash}")
    }

    fn expired(&self, entry: &Entry, event: Timestamp) -> bool {
        since(event, entry.last_update) > self.max * 2
    }

    /// The back-off currently set for `key`.
    pub fn get(&self, key: &str) -> Duration {
        self.entries
            .get(key)
            .map(|e| e.backoff)
            .unwrap_or(Duration::ZERO)
    }

    /// Whether a container that finished at `finished` must still wait at `now`.
    pub fn in_backoff_since(&self, key: &str, finished: Timestamp, now: Timestamp) -> bool {
        match self.entries.get(key) {
            Some(entry) if !self.expired(entry, finished) => since(now, finished) < entry.backoff,
            _ => false,
        }
    }

    /// Records a restart of a container that finished at `finished`: the next back-off
    /// doubles (or starts over when the last one was long ago).
    pub fn next(&mut self, key: &str, finished: Timestamp) {
        let fresh = match self.entries.get(key) {
            None => true,
            Some(entry) => self.expired(entry, finished),
        };
        let backoff = if fresh {
            self.initial
        } else {
            (self.get(key) * 2).min(self.max)
        };
        self.entries.insert(
            key.to_string(),
            Entry {
                backoff,
                last_update: finished,
            },
        );
    }

    /// Forgets every key of a pod (it is gone).
    pub fn forget_pod(&mut self, pod_uid: &str) {
        let prefix = format!("{pod_uid}/");
        self.entries.retain(|k, _| !k.starts_with(&prefix));
    }

    /// Drops entries not updated for long, so that memory stays bounded.
    pub fn gc(&mut self, now: Timestamp) {
        let max = self.max;
        self.entries
            .retain(|_, e| since(now, e.last_update) <= max * 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    #[test]
    fn doubles_up_to_the_cap_and_starts_over_after_a_quiet_spell() {
        let mut b = Backoff::default();
        let k = Backoff::key("uid", "c", "h");
        assert!(
            !b.in_backoff_since(&k, at(0), at(0)),
            "no back-off before a restart"
        );
        b.next(&k, at(0));
        assert_eq!(b.get(&k), Duration::from_secs(10));
        assert!(b.in_backoff_since(&k, at(0), at(9)));
        assert!(!b.in_backoff_since(&k, at(0), at(10)));
        let mut t = 10;
        let mut seen = vec![];
        for _ in 0..7 {
            b.next(&k, at(t));
            seen.push(b.get(&k).as_secs());
            t += 1;
        }
        assert_eq!(seen, [20, 40, 80, 160, 300, 300, 300]);
        // A container that then ran fine for more than twice the cap starts from 10 s.
        b.next(&k, at(t + 601));
        assert_eq!(b.get(&k), Duration::from_secs(10));
    }

    #[test]
    fn a_changed_spec_has_its_own_back_off() {
        let mut b = Backoff::default();
        let old = Backoff::key("uid", "c", "h1");
        b.next(&old, at(0));
        b.next(&old, at(1));
        assert_eq!(b.get(&old), Duration::from_secs(20));
        let new = Backoff::key("uid", "c", "h2");
        assert!(!b.in_backoff_since(&new, at(1), at(2)));
        b.forget_pod("uid");
        assert_eq!(b.get(&old), Duration::ZERO);
    }
}
