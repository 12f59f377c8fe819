//! The scheduling queue: which pending pod to try next, and when to try a
//! pod again after it did not fit.
//!
//! As upstream's, it has three parts. *Active* pods are tried in order of
//! priority, then of arrival. A pod whose attempt failed for a passing
//! reason (a bind error) waits out its *backoff* (doubling from
//! `initial_backoff` to `max_backoff`) and becomes active again. A pod that
//! did not fit is *unschedulable*: it is tried again when the cluster
//! changes in a way that might make room (once its backoff has passed), or
//! when `unschedulable_flush` has passed without such a change.
//!
//! Pure: time is passed in as a tokio `Instant` (`now`), so the queue is
//! tested without a clock.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use tokio::time::Instant;

/// Where a pending pod is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Active,
    /// Being decided or bound; not in any queue.
    InFlight,
    Backoff {
        until: Instant,
    },
    Unschedulable {
        backoff_until: Instant,
        flush_at: Instant,
    },
}

#[derive(Debug)]
struct Entry {
    pod: Arc<Pod>,
    priority: i32,
    attempts: u32,
    state: State,
    /// Bumped on each state change; stale heap items carry an old one.
    generation: u64,
}

/// How long pods wait.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub unschedulable_flush: Duration,
}

/// The queue of pods waiting for a node.
#[derive(Debug)]
pub struct Queue {
    timing: Timing,
    entries: HashMap<String, Entry>,
    /// (priority, earlier first, generation, key)
    active: BinaryHeap<(i32, Reverse<u64>, u64, String)>,
    /// (when, generation, key), earliest first
    timers: BinaryHeap<Reverse<(Instant, u64, String)>>,
    next_generation: u64,
}

impl Queue {
    pub fn new(timing: Timing) -> Queue {
        Queue {
            timing,
            entries: HashMap::new(),
            active: BinaryHeap::new(),
            timers: BinaryHeap::new(),
            next_generation: 0,
        }
    }

    /// How many pods are waiting (in any state).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The keys of all waiting pods.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.entries.keys()
    }

    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// How many pods are unschedulable right now.
    pub fn unschedulable(&self) -> usize {
        self.entries
            .values()
            .filter(|e| matches!(e.state, State::Unschedulable { .. }))
            .count()
    }

    fn set_state(&mut self, key: &str, state: State) {
        let generation = self.next_generation;
        self.next_generation += 1;
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        e.state = state;
        e.generation = generation;
        match state {
            State::Active => {
                self.active
                    .push((e.priority, Reverse(generation), generation, key.to_string()))
            }
            State::Backoff { until } => {
                self.timers
                    .push(Reverse((until, generation, key.to_string())))
            }
            State::Unschedulable { flush_at, .. } => {
                self.timers
                    .push(Reverse((flush_at, generation, key.to_string())))
            }
            State::InFlight => {}
        }
    }

    /// A pending pod was seen (added or updated). A new pod becomes active;
    /// an unschedulable pod whose spec or labels changed is tried again.
    pub fn upsert(&mut self, key: &str, pod: Arc<Pod>, now: Instant) {
        let priority = pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
        match self.entries.get_mut(key) {
            None => {
                self.entries.insert(
                    key.to_string(),
                    Entry {
                        pod,
                        priority,
                        attempts: 0,
                        state: State::InFlight,
                        generation: 0,
                    },
                );
                self.set_state(key, State::Active);
            }
            Some(e) => {
                let changed =
                    e.pod.spec != pod.spec || e.pod.metadata.labels != pod.metadata.labels;
                e.pod = pod;
                e.priority = priority;
                if changed && let State::Unschedulable { backoff_until, .. } = e.state {
                    self.wake(key, backoff_until, now);
                }
            }
        }
    }

    fn wake(&mut self, key: &str, backoff_until: Instant, now: Instant) {
        if backoff_until <= now {
            self.set_state(key, State::Active);
        } else {
            self.set_state(
                key,
                State::Backoff {
                    until: backoff_until,
                },
            );
        }
    }

    /// Forgets a pod (bound, deleted, or no longer ours).
    pub fn remove(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Moves the pods whose timers are due into the active queue.
    fn fire_timers(&mut self, now: Instant) {
        while let Some(Reverse((when, generation, _))) = self.timers.peek() {
            if *when > now {
                break;
            }
            let generation = *generation;
            let Some(Reverse((_, _, key))) = self.timers.pop() else {
                break;
            };
            if self
                .entries
                .get(&key)
                .is_some_and(|e| e.generation == generation)
            {
                self.set_state(&key, State::Active);
            }
        }
    }

    /// The next pod to try, now in flight.
    pub fn pop(&mut self, now: Instant) -> Option<(String, Arc<Pod>)> {
        self.fire_timers(now);
        while let Some((_, _, generation, key)) = self.active.pop() {
            let Some(e) = self.entries.get(&key) else {
                continue;
            };
            if e.generation != generation || e.state != State::Active {
                continue;
            }
            let pod = e.pod.clone();
            self.set_state(&key, State::InFlight);
            return Some((key, pod));
        }
        None
    }

    /// Whether a pod could be popped now.
    pub fn has_active(&mut self, now: Instant) -> bool {
        self.fire_timers(now);
        // Drop stale heads so that a stale item does not keep us busy.
        while let Some((_, _, generation, key)) = self.active.peek() {
            if self
                .entries
                .get(key)
                .is_some_and(|e| e.generation == *generation && e.state == State::Active)
            {
                return true;
            }
            self.active.pop();
        }
        false
    }

    /// When the next timer is due, if any.
    pub fn next_timer(&mut self) -> Option<Instant> {
        while let Some(Reverse((when, generation, key))) = self.timers.peek() {
            if self
                .entries
                .get(key)
                .is_some_and(|e| e.generation == *generation)
            {
                return Some(*when);
            }
            self.timers.pop();
        }
        None
    }

    fn backoff(&self, attempts: u32) -> Duration {
        let doubled = self
            .timing
            .initial_backoff
            .saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
        doubled.min(self.timing.max_backoff)
    }

    /// The attempt failed: `unschedulable` if no node fitted, else for a
    /// passing reason (the bind failed).
    pub fn failed(&mut self, key: &str, unschedulable: bool, now: Instant) {
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        e.attempts = e.attempts.saturating_add(1);
        let attempts = e.attempts;
        let backoff_until = now + self.backoff(attempts);
        let state = if unschedulable {
            State::Unschedulable {
                backoff_until,
                flush_at: now + self.timing.unschedulable_flush.max(self.backoff(attempts)),
            }
        } else {
            State::Backoff {
                until: backoff_until,
            }
        };
        self.set_state(key, state);
    }

    /// Something changed that may make room (a node added or changed, a
    /// pod gone): unschedulable pods are tried again once their backoff
    /// has passed.
    pub fn cluster_changed(&mut self, now: Instant) {
        let waiting: Vec<(String, Instant)> = self
            .entries
            .iter()
            .filter_map(|(k, e)| match e.state {
                State::Unschedulable { backoff_until, .. } => Some((k.clone(), backoff_until)),
                _ => None,
            })
            .collect();
        for (key, backoff_until) in waiting {
            self.wake(&key, backoff_until, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, priority: i32) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "ns"},
                "spec": {"priority": priority, "containers": []},
            }))
            .unwrap(),
        )
    }

    fn queue() -> Queue {
        Queue::new(Timing {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            unschedulable_flush: Duration::from_secs(60),
        })
    }

    fn names(q: &mut Queue, now: Instant) -> Vec<String> {
        std::iter::from_fn(|| q.pop(now).map(|(k, _)| k)).collect()
    }

    #[test]
    fn priority_then_arrival() {
        let now = Instant::now();
        let mut q = queue();
        q.upsert("a", pod("a", 0), now);
        q.upsert("b", pod("b", 10), now);
        q.upsert("c", pod("c", 0), now);
        // An update does not reorder or duplicate.
        q.upsert("a", pod("a", 0), now);
        assert_eq!(names(&mut q, now), ["b", "a", "c"]);
        assert!(!q.has_active(now));
    }

    #[test]
    fn bind_failures_back_off_and_double() {
        let now = Instant::now();
        let mut q = queue();
        q.upsert("a", pod("a", 0), now);
        q.pop(now).unwrap();
        q.failed("a", false, now);
        assert!(q.pop(now).is_none());
        assert_eq!(q.next_timer(), Some(now + Duration::from_secs(1)));
        let later = now + Duration::from_secs(1);
        assert_eq!(names(&mut q, later), ["a"]);
        q.failed("a", false, later);
        assert_eq!(q.next_timer(), Some(later + Duration::from_secs(2)));
        for _ in 0..10 {
            q.failed("a", false, later);
        }
        assert_eq!(q.next_timer(), Some(later + Duration::from_secs(10)));
    }

    #[test]
    fn unschedulable_pods_wait_for_a_change_or_the_flush() {
        let now = Instant::now();
        let mut q = queue();
        q.upsert("a", pod("a", 0), now);
        q.pop(now).unwrap();
        q.failed("a", true, now);
        assert_eq!(q.unschedulable(), 1);
        // Its backoff passes, but nothing changed: it stays.
        assert!(q.pop(now + Duration::from_secs(5)).is_none());
        // A change before the backoff passed: it waits out the backoff.
        q.cluster_changed(now + Duration::from_millis(500));
        assert!(q.pop(now + Duration::from_millis(600)).is_none());
        assert_eq!(names(&mut q, now + Duration::from_secs(1)), ["a"]);
        // Failing again, with no change, it comes back at the flush.
        let t = now + Duration::from_secs(1);
        q.failed("a", true, t);
        assert!(q.pop(t + Duration::from_secs(59)).is_none());
        assert_eq!(names(&mut q, t + Duration::from_secs(60)), ["a"]);
    }

    #[test]
    fn a_changed_pod_is_tried_again() {
        let now = Instant::now();
        let mut q = queue();
        q.upsert("a", pod("a", 0), now);
        q.pop(now).unwrap();
        q.failed("a", true, now);
        let t = now + Duration::from_secs(2);
        // The same pod (a status update) changes nothing.
        q.upsert("a", pod("a", 0), t);
        assert!(q.pop(t).is_none());
        q.upsert("a", pod("a", 5), t);
        assert_eq!(names(&mut q, t), ["a"]);
    }

    #[test]
    fn removed_pods_are_never_popped() {
        let now = Instant::now();
        let mut q = queue();
        q.upsert("a", pod("a", 0), now);
        q.remove("a");
        assert!(q.pop(now).is_none());
        assert!(q.is_empty());
    }
}
