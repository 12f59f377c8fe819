//! Recording what concurrent clients did and saw, and checking it.
//!
//! Clients record every operation with the moment they invoked it and the
//! moment it returned. Watchers record every event. [`check`] then proves:
//!
//! 1. **Revisions form one dense sequence.** Every committed write has its own
//!    revision, and together they are `start, start+1, …` with no hole.
//! 2. **Revision order is a linearization.** Replayed in revision order, every
//!    write's precondition held (a create found no key, a CAS found the
//!    revision it named), and no write is ordered before one that finished
//!    before it began.
//! 3. **Every observation was true at some moment of its call.** A read, a lost
//!    CAS (with the revision it reported), a NotFound or an AlreadyExists names
//!    a state of the key that overlaps the call in real time.
//! 4. **Every watcher saw exactly the committed sequence**: the same events,
//!    with the same values and previous values, in revision order, nothing
//!    missing, nothing repeated.

use std::collections::HashMap;
use std::time::Instant;

use bytes::Bytes;
use kedge_datastore::{Error, Event, EventKind, KeyValue, Revision, Store, WriteOptions};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Create {
        key: String,
        value: Bytes,
    },
    Update {
        key: String,
        value: Bytes,
        expected: Revision,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
    Get {
        key: String,
    },
}

impl Op {
    pub fn key(&self) -> &str {
        match self {
            Op::Create { key, .. }
            | Op::Update { key, .. }
            | Op::Delete { key, .. }
            | Op::Get { key } => key,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The write committed at this revision.
    Committed(Revision),
    /// The read found the key at this mod revision, or found nothing.
    Read(Option<Revision>),
    AlreadyExists,
    NotFound,
    /// The CAS lost; the key's mod revision it reported.
    Conflict(Revision),
    /// Anything else: never expected in a healthy run.
    Failed(String),
}

#[derive(Clone, Debug)]
pub struct Entry {
    pub client: usize,
    pub op: Op,
    pub outcome: Outcome,
    pub invoked: Instant,
    pub completed: Instant,
}

/// Runs `op` on `store` and records it.
pub async fn run(store: &dyn Store, client: usize, op: Op) -> Entry {
    let invoked = Instant::now();
    let result = match &op {
        Op::Create { key, value } => store
            .create(key, value.clone(), WriteOptions::default())
            .await
            .map(|kv| Outcome::Committed(kv.mod_revision)),
        Op::Update {
            key,
            value,
            expected,
        } => store
            .update(key, value.clone(), *expected, WriteOptions::default())
            .await
            .map(|kv| Outcome::Committed(kv.mod_revision)),
        Op::Delete { key, expected } => store
            .delete(key, *expected)
            .await
            .map(|d| Outcome::Committed(d.revision)),
        Op::Get { key } => store
            .get(key, None)
            .await
            .map(|kv| Outcome::Read(kv.map(|kv| kv.mod_revision))),
    };
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(Error::AlreadyExists { .. }) => Outcome::AlreadyExists,
        Err(Error::NotFound { .. }) => Outcome::NotFound,
        Err(Error::Conflict { current, .. }) => Outcome::Conflict(current.mod_revision),
        Err(other) => Outcome::Failed(other.to_string()),
    };
    Entry {
        client,
        op,
        outcome,
        invoked,
        completed: Instant::now(),
    }
}

/// What a passing check covered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub writes: usize,
    pub observations: usize,
    pub watchers: usize,
    pub first: Revision,
    pub last: Revision,
}

/// A state of one key: present at a mod revision, or absent. It began with
/// the write `begin` (none: the key's initial absence) and ended with `end`.
struct Interval<'a> {
    state: Option<Revision>,
    begin: Option<&'a Entry>,
    end: Option<&'a Entry>,
}

impl Interval<'_> {
    /// Could this state have held at some moment of `obs`?
    fn overlaps(&self, obs: &Entry) -> bool {
        self.begin.is_none_or(|w| w.invoked <= obs.completed)
            && self.end.is_none_or(|w| w.completed >= obs.invoked)
    }
}

/// Checks a history; see the module header. `start` is the first revision the
/// run could produce, and the store must have had no other writers.
pub fn check(
    entries: &[Entry],
    watched: &[Vec<Event>],
    start: Revision,
) -> Result<Report, Vec<String>> {
    let mut violations = Vec::new();
    for e in entries {
        if let Outcome::Failed(err) = &e.outcome {
            violations.push(format!("client {} {:?} failed: {err}", e.client, e.op));
        }
    }

    // 1. One dense sequence of revisions.
    let mut writes: Vec<(Revision, &Entry)> = entries
        .iter()
        .filter_map(|e| match e.outcome {
            Outcome::Committed(rev) => Some((rev, e)),
            _ => None,
        })
        .collect();
    writes.sort_by_key(|(rev, _)| *rev);
    for (i, (rev, e)) in writes.iter().enumerate() {
        let want = start + i as Revision;
        if *rev != want {
            violations.push(format!(
                "revision {rev} ({:?}) where {want} was next: the sequence has a hole or a repeat",
                e.op
            ));
            break;
        }
    }

    // 2a. Replay in revision order: every precondition held.
    let mut state: HashMap<&str, Option<KeyValue>> = HashMap::new();
    let mut intervals: HashMap<&str, Vec<Interval>> = HashMap::new();
    let mut expected_events = Vec::with_capacity(writes.len());
    for &(rev, w) in &writes {
        let key = w.op.key();
        let prev = state.get(key).cloned().flatten();
        let next = match (&w.op, &prev) {
            (Op::Create { value, .. }, None) => Some(KeyValue {
                key: key.into(),
                value: value.clone(),
                create_revision: rev,
                mod_revision: rev,
            }),
            (
                Op::Update {
                    value, expected, ..
                },
                Some(p),
            ) if p.mod_revision == *expected => Some(KeyValue {
                key: key.into(),
                value: value.clone(),
                create_revision: p.create_revision,
                mod_revision: rev,
            }),
            (Op::Delete { expected, .. }, Some(p))
                if expected.is_none_or(|e| e == p.mod_revision) =>
            {
                None
            }
            (op, prev) => {
                violations.push(format!(
                    "{op:?} committed at revision {rev}, but the key was then {:?}",
                    prev.as_ref().map(|p| p.mod_revision)
                ));
                continue;
            }
        };
        expected_events.push(match (&prev, &next) {
            (None, Some(kv)) => Event {
                kind: EventKind::Create,
                kv: kv.clone(),
                prev_kv: None,
            },
            (Some(p), Some(kv)) => Event {
                kind: EventKind::Update,
                kv: kv.clone(),
                prev_kv: Some(p.clone()),
            },
            (Some(p), None) => Event::deleted(p.clone(), rev),
            (None, None) => unreachable!("a write to an absent key is a create"),
        });
        let timeline = intervals.entry(key).or_insert_with(|| {
            vec![Interval {
                state: None,
                begin: None,
                end: None,
            }]
        });
        timeline.last_mut().expect("timeline starts non-empty").end = Some(w);
        timeline.push(Interval {
            state: next.as_ref().map(|kv| kv.mod_revision),
            begin: Some(w),
            end: None,
        });
        state.insert(key, next);
    }

    // 2b. Real time: a write that finished before another began has the lower revision.
    let mut earliest_later_completion: Option<Instant> = None;
    for &(rev, w) in writes.iter().rev() {
        if let Some(done) = earliest_later_completion.filter(|done| *done < w.invoked) {
            violations.push(format!(
                "{:?} got revision {rev}, after a write that had completed {:?} before it began",
                w.op,
                w.invoked - done
            ));
        }
        earliest_later_completion =
            Some(earliest_later_completion.map_or(w.completed, |d| d.min(w.completed)));
    }

    // 3. Every observation names a state that overlapped the call.
    let mut observations = 0;
    let initial = [Interval {
        state: None,
        begin: None,
        end: None,
    }];
    for e in entries {
        let timeline = intervals
            .get(e.op.key())
            .map_or(&initial[..], Vec::as_slice);
        let fits = |want: &dyn Fn(Option<Revision>) -> bool| {
            timeline.iter().any(|i| want(i.state) && i.overlaps(e))
        };
        let ok = match (&e.op, &e.outcome) {
            (_, Outcome::Read(seen)) => fits(&|s| s == *seen),
            (_, Outcome::NotFound) => fits(&|s| s.is_none()),
            (_, Outcome::AlreadyExists) => fits(&|s| s.is_some()),
            (Op::Update { expected, .. }, Outcome::Conflict(seen))
            | (
                Op::Delete {
                    expected: Some(expected),
                    ..
                },
                Outcome::Conflict(seen),
            ) => seen != expected && fits(&|s| s == Some(*seen)),
            (op, Outcome::Conflict(_)) => {
                violations.push(format!("{op:?} cannot conflict"));
                continue;
            }
            (_, Outcome::Committed(_) | Outcome::Failed(_)) => continue,
        };
        observations += 1;
        if !ok {
            violations.push(format!(
                "client {} {:?} observed {:?}, a state the key was never in during the call",
                e.client, e.op, e.outcome
            ));
        }
    }

    // 4. Every watcher saw exactly the committed sequence.
    for (n, seen) in watched.iter().enumerate() {
        if let Some(i) = (0..seen.len().max(expected_events.len()))
            .find(|&i| seen.get(i) != expected_events.get(i))
        {
            violations.push(format!(
                "watcher {n} diverged at event {i} of {}: saw {:?}, committed {:?}",
                expected_events.len(),
                seen.get(i),
                expected_events.get(i)
            ));
        }
    }

    if violations.is_empty() {
        Ok(Report {
            writes: writes.len(),
            observations,
            watchers: watched.len(),
            first: start,
            last: writes.last().map_or(start - 1, |(rev, _)| *rev),
        })
    } else {
        Err(violations)
    }
}

#[cfg(test)]
mod tests {
    //! The checker must be able to fail: each test breaks one rule.
    use super::*;
    use std::time::Duration;

    struct Clock(Instant);
    impl Clock {
        fn at(&self, ms: u64) -> Instant {
            self.0 + Duration::from_millis(ms)
        }
    }

    fn entry(c: &Clock, op: Op, outcome: Outcome, from: u64, to: u64) -> Entry {
        Entry {
            client: 0,
            op,
            outcome,
            invoked: c.at(from),
            completed: c.at(to),
        }
    }

    fn create(v: &str) -> Op {
        Op::Create {
            key: "/k".into(),
            value: Bytes::from(v.to_string()),
        }
    }

    fn update(v: &str, expected: Revision) -> Op {
        Op::Update {
            key: "/k".into(),
            value: Bytes::from(v.to_string()),
            expected,
        }
    }

    fn get() -> Op {
        Op::Get { key: "/k".into() }
    }

    /// create at 1 (0-10ms), update at 2 (20-30ms)
    fn good(c: &Clock) -> Vec<Entry> {
        vec![
            entry(c, create("a"), Outcome::Committed(1), 0, 10),
            entry(c, update("b", 1), Outcome::Committed(2), 20, 30),
        ]
    }

    fn events(c: &Clock) -> Vec<Event> {
        let entries = good(c);
        let Ok(_) = check(&entries, &[], 1) else {
            panic!("good history")
        };
        let a = KeyValue {
            key: "/k".into(),
            value: Bytes::from("a"),
            create_revision: 1,
            mod_revision: 1,
        };
        let b = KeyValue {
            value: Bytes::from("b"),
            mod_revision: 2,
            ..a.clone()
        };
        vec![
            Event {
                kind: EventKind::Create,
                kv: a.clone(),
                prev_kv: None,
            },
            Event {
                kind: EventKind::Update,
                kv: b,
                prev_kv: Some(a),
            },
        ]
    }

    #[test]
    fn a_good_history_passes() {
        let c = Clock(Instant::now());
        let mut entries = good(&c);
        entries.push(entry(&c, get(), Outcome::Read(Some(1)), 11, 19));
        entries.push(entry(&c, update("x", 1), Outcome::Conflict(2), 31, 40));
        let report = check(&entries, &[events(&c)], 1).unwrap();
        assert_eq!((report.writes, report.observations, report.last), (2, 2, 2));
    }

    #[test]
    fn a_hole_in_the_revisions_fails() {
        let c = Clock(Instant::now());
        let mut entries = good(&c);
        entries[1].outcome = Outcome::Committed(3);
        assert!(check(&entries, &[], 1).is_err());
    }

    #[test]
    fn a_cas_on_a_stale_revision_that_committed_fails() {
        let c = Clock(Instant::now());
        let mut entries = good(&c);
        entries.push(entry(&c, update("c", 1), Outcome::Committed(3), 40, 50));
        assert!(check(&entries, &[], 1).is_err());
    }

    #[test]
    fn a_stale_read_fails() {
        let c = Clock(Instant::now());
        let mut entries = good(&c);
        // invoked after the update to revision 2 completed, yet saw revision 1
        entries.push(entry(&c, get(), Outcome::Read(Some(1)), 35, 40));
        assert!(check(&entries, &[], 1).is_err());
    }

    #[test]
    fn a_conflict_while_the_expected_revision_held_fails() {
        let c = Clock(Instant::now());
        let mut entries = good(&c);
        // during 11-19 the key was at revision 1 throughout
        entries.push(entry(&c, update("x", 1), Outcome::Conflict(2), 11, 19));
        assert!(check(&entries, &[], 1).is_err());
    }

    #[test]
    fn revision_order_against_real_time_fails() {
        let c = Clock(Instant::now());
        let entries = vec![
            entry(&c, create("a"), Outcome::Committed(2), 0, 10),
            entry(
                &c,
                Op::Create {
                    key: "/j".into(),
                    value: Bytes::from("j"),
                },
                Outcome::Committed(1),
                20,
                30,
            ),
        ];
        assert!(check(&entries, &[], 1).is_err());
    }

    #[test]
    fn a_watcher_that_missed_repeated_or_reordered_fails() {
        let c = Clock(Instant::now());
        let entries = good(&c);
        let all = events(&c);
        let missed = vec![all[1].clone()];
        let repeated = vec![all[0].clone(), all[0].clone(), all[1].clone()];
        let reordered = vec![all[1].clone(), all[0].clone()];
        for bad in [missed, repeated, reordered] {
            assert!(check(&entries, &[all.clone(), bad], 1).is_err());
        }
        let mut wrong_prev = all.clone();
        wrong_prev[1].prev_kv = None;
        assert!(check(&entries, &[wrong_prev], 1).is_err());
    }
}
