//! One conformance suite, run against every backend on a real server.
//!
//! Each case is an async function over a [`Backend`]; the
//! [`conformance_tests!`](crate::conformance_tests) macro turns them into
//! `#[tokio::test]`s for one backend. Cases that need two servers on one
//! database are in a separate list, generated only for backends that have
//! them (SQLite is embedded: one server).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use rand::Rng;
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::history::{self, Op, Outcome};
use kedge_datastore::maintenance::compact_once;
use kedge_datastore::{
    Error, Event, EventKind, ListRequest, MAX_VALUE_BYTES, Revision, Store, WatchStream,
    WriteOptions,
};

/// A backend under test: a fresh, empty database per value.
#[async_trait]
pub trait Backend: Send + Sync {
    /// The first server's store.
    fn store(&self) -> Arc<dyn Store>;
    /// A new store instance on the same database: a second server. `None` for
    /// embedded backends.
    async fn second_server(&self) -> Option<Arc<dyn Store>>;
    /// Lets `by` pass for TTLs, and runs expiry where the backend needs it.
    async fn pass_time(&self, by: Duration);
    /// A TTL short enough for a test and long enough for the backend to honour.
    fn short_ttl(&self) -> Duration;
}

fn b(s: &str) -> Bytes {
    Bytes::from(s.to_string())
}

const NO_TTL: WriteOptions = WriteOptions { ttl: None };

/// Takes the next `n` events, failing the test if they take over 20 s.
pub async fn next_events(stream: &mut WatchStream, n: usize) -> Vec<Event> {
    let mut events = Vec::with_capacity(n);
    while events.len() < n {
        match tokio::time::timeout(Duration::from_secs(20), stream.next()).await {
            Ok(Some(Ok(event))) => events.push(event),
            Ok(Some(Err(err))) => panic!("watch failed after {} events: {err}", events.len()),
            Ok(None) => panic!("watch ended after {} of {n} events", events.len()),
            Err(_) => panic!("watch stalled after {} of {n} events", events.len()),
        }
    }
    events
}

/// Asserts that no event arrives within a short while.
async fn assert_quiet(stream: &mut WatchStream) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(300), stream.next()).await {
        panic!("expected no event, got {item:?}");
    }
}

pub async fn create_then_get(b_: &dyn Backend) {
    let s = b_.store();
    let before = s.current_revision().await.unwrap();
    let kv = s.create("/a/one", b("1"), NO_TTL).await.unwrap();
    assert_eq!(kv.mod_revision, before + 1);
    assert_eq!(kv.create_revision, kv.mod_revision);
    assert_eq!(s.current_revision().await.unwrap(), kv.mod_revision);
    assert_eq!(s.get("/a/one", None).await.unwrap(), Some(kv.clone()));
    match s.create("/a/one", b("again"), NO_TTL).await {
        Err(Error::AlreadyExists { key }) => assert_eq!(key, "/a/one"),
        other => panic!("second create: {other:?}"),
    }
    assert_eq!(s.get("/a/missing", None).await.unwrap(), None);
    assert_eq!(
        s.current_revision().await.unwrap(),
        kv.mod_revision,
        "a failed create takes no revision"
    );
}

pub async fn update_is_compare_and_swap(b_: &dyn Backend) {
    let s = b_.store();
    let v1 = s.create("/cas/k", b("1"), NO_TTL).await.unwrap();
    let v2 = s
        .update("/cas/k", b("2"), v1.mod_revision, NO_TTL)
        .await
        .unwrap();
    assert_eq!(v2.create_revision, v1.create_revision);
    assert_eq!(v2.mod_revision, v1.mod_revision + 1);
    assert_eq!(v2.value, b("2"));
    match s.update("/cas/k", b("3"), v1.mod_revision, NO_TTL).await {
        Err(Error::Conflict {
            key,
            expected,
            current,
        }) => {
            assert_eq!((key.as_str(), expected), ("/cas/k", v1.mod_revision));
            assert_eq!(*current, v2, "a conflict carries the current value");
        }
        other => panic!("stale update: {other:?}"),
    }
    assert!(matches!(
        s.update("/cas/missing", b("x"), 1, NO_TTL).await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(s.get("/cas/k", None).await.unwrap(), Some(v2.clone()));
    assert_eq!(s.current_revision().await.unwrap(), v2.mod_revision);
}

pub async fn delete_is_conditional_when_asked(b_: &dyn Backend) {
    let s = b_.store();
    let kv = s.create("/del/k", b("v"), NO_TTL).await.unwrap();
    match s.delete("/del/k", Some(kv.mod_revision + 100)).await {
        Err(Error::Conflict { current, .. }) => assert_eq!(*current, kv),
        other => panic!("delete on a wrong revision: {other:?}"),
    }
    assert!(s.get("/del/k", None).await.unwrap().is_some());
    let deleted = s.delete("/del/k", Some(kv.mod_revision)).await.unwrap();
    assert_eq!(deleted.prev_kv, kv);
    assert_eq!(deleted.revision, kv.mod_revision + 1);
    assert_eq!(s.get("/del/k", None).await.unwrap(), None);
    assert!(matches!(
        s.delete("/del/k", None).await,
        Err(Error::NotFound { .. })
    ));
    let again = s.create("/del/k", b("w"), NO_TTL).await.unwrap();
    assert_eq!(
        again.create_revision, again.mod_revision,
        "a new incarnation"
    );
    let unconditional = s.delete("/del/k", None).await.unwrap();
    assert_eq!(unconditional.prev_kv, again);
}

pub async fn revisions_are_dense(b_: &dyn Backend) {
    let s = b_.store();
    let mut last = s.current_revision().await.unwrap();
    for i in 0..20 {
        let key = format!("/dense/{}", i % 3);
        let rev = match s.get(&key, None).await.unwrap() {
            None => s.create(&key, b("c"), NO_TTL).await.unwrap().mod_revision,
            Some(kv) if i % 4 == 0 => {
                s.delete(&key, Some(kv.mod_revision))
                    .await
                    .unwrap()
                    .revision
            }
            Some(kv) => {
                s.update(&key, b("u"), kv.mod_revision, NO_TTL)
                    .await
                    .unwrap()
                    .mod_revision
            }
        };
        assert_eq!(rev, last + 1, "write {i} skipped or repeated a revision");
        last = rev;
    }
}

pub async fn get_at_revision(b_: &dyn Backend) {
    let s = b_.store();
    s.create("/hist/earlier", b("e"), NO_TTL).await.unwrap();
    let r1 = s.create("/hist/k", b("v1"), NO_TTL).await.unwrap();
    let r2 = s
        .update("/hist/k", b("v2"), r1.mod_revision, NO_TTL)
        .await
        .unwrap();
    let r3 = s.delete("/hist/k", None).await.unwrap().revision;
    let r4 = s.create("/hist/k", b("v3"), NO_TTL).await.unwrap();
    let at = |rev| s.get("/hist/k", Some(rev));
    assert_eq!(at(r1.mod_revision).await.unwrap(), Some(r1.clone()));
    assert_eq!(at(r2.mod_revision).await.unwrap(), Some(r2.clone()));
    assert_eq!(at(r3).await.unwrap(), None);
    assert_eq!(at(r4.mod_revision).await.unwrap(), Some(r4.clone()));
    assert_eq!(at(r1.mod_revision - 1).await.unwrap(), None);
    match at(r4.mod_revision + 10).await {
        Err(Error::FutureRevision { requested, current }) => {
            assert_eq!(
                (requested, current),
                (r4.mod_revision + 10, r4.mod_revision)
            );
        }
        other => panic!("get in the future: {other:?}"),
    }
}

pub async fn list_pages_share_one_snapshot(b_: &dyn Backend) {
    let s = b_.store();
    for i in 0..25 {
        s.create(&format!("/list/{i:02}"), b(&format!("v{i}")), NO_TTL)
            .await
            .unwrap();
    }
    // neighbours that must not show up
    for key in ["/lis", "/list0", "/lisu/x", "/l"] {
        s.create(key, b("other"), NO_TTL).await.unwrap();
    }
    let all = s.list(&ListRequest::prefix("/list/")).await.unwrap();
    assert_eq!(all.kvs.len(), 25);
    assert!(all.continue_token.is_none());
    assert!(all.kvs.windows(2).all(|w| w[0].key < w[1].key), "sorted");
    assert_eq!(all.revision, s.current_revision().await.unwrap());

    let first = s
        .list(&ListRequest::prefix("/list/").limit(10))
        .await
        .unwrap();
    assert_eq!(first.kvs, all.kvs[..10]);
    // Change the store between pages: later pages must not see it.
    s.create("/list/99", b("late"), NO_TTL).await.unwrap();
    s.delete("/list/15", None).await.unwrap();
    let k20 = &all.kvs[20];
    s.update(&k20.key, b("changed"), k20.mod_revision, NO_TTL)
        .await
        .unwrap();
    let mut pages = vec![first.clone()];
    let mut token = first.continue_token.clone();
    while let Some(t) = token {
        let page = s
            .list(&ListRequest::prefix("/list/").limit(10).continue_from(t))
            .await
            .unwrap();
        assert_eq!(
            page.revision, first.revision,
            "every page reads one revision"
        );
        token = page.continue_token.clone();
        pages.push(page);
    }
    let paged: Vec<_> = pages.into_iter().flat_map(|p| p.kvs).collect();
    assert_eq!(
        paged, all.kvs,
        "pages add up to the snapshot of the first page"
    );

    let now = s.list(&ListRequest::prefix("/list/")).await.unwrap();
    assert_eq!(now.kvs.len(), 25, "one added, one deleted");
    assert!(now.kvs.iter().any(|kv| kv.value == b("changed")));

    match s
        .list(&ListRequest::prefix("/other/").continue_from(first.continue_token.clone().unwrap()))
        .await
    {
        Err(Error::InvalidContinueToken { .. }) => {}
        other => panic!("a token for another prefix: {other:?}"),
    }
    assert!(matches!(
        s.list(&ListRequest::prefix("/list/").continue_from("garbage!"))
            .await,
        Err(Error::InvalidContinueToken { .. })
    ));
}

pub async fn list_at_revision(b_: &dyn Backend) {
    let s = b_.store();
    let a = s.create("/snap/a", b("a1"), NO_TTL).await.unwrap();
    let bkv = s.create("/snap/b", b("b1"), NO_TTL).await.unwrap();
    let then = s.current_revision().await.unwrap();
    s.update("/snap/a", b("a2"), a.mod_revision, NO_TTL)
        .await
        .unwrap();
    s.delete("/snap/b", None).await.unwrap();
    s.create("/snap/c", b("c1"), NO_TTL).await.unwrap();
    let old = s
        .list(&ListRequest::prefix("/snap/").at_revision(then))
        .await
        .unwrap();
    assert_eq!(old.revision, then);
    assert_eq!(old.kvs, vec![a.clone(), bkv.clone()]);
    let paged = s
        .list(&ListRequest::prefix("/snap/").at_revision(then).limit(1))
        .await
        .unwrap();
    assert_eq!(paged.kvs, vec![a]);
    let rest = s
        .list(&ListRequest::prefix("/snap/").continue_from(paged.continue_token.unwrap()))
        .await
        .unwrap();
    assert_eq!(rest.kvs, vec![bkv]);
    let now = s.list(&ListRequest::prefix("/snap/")).await.unwrap();
    let values: Vec<_> = now.kvs.iter().map(|kv| kv.value.clone()).collect();
    assert_eq!(values, vec![b("a2"), b("c1")]);
}

pub async fn count_by_prefix(b_: &dyn Backend) {
    let s = b_.store();
    for i in 0..7 {
        s.create(&format!("/count/x/{i}"), b("v"), NO_TTL)
            .await
            .unwrap();
    }
    s.create("/count/y/1", b("v"), NO_TTL).await.unwrap();
    s.delete("/count/x/3", None).await.unwrap();
    assert_eq!(s.count("/count/x/").await.unwrap(), 6);
    assert_eq!(s.count("/count/").await.unwrap(), 7);
    assert_eq!(s.count("/nothing/").await.unwrap(), 0);
}

pub async fn watch_carries_previous_values(b_: &dyn Backend) {
    let s = b_.store();
    let mut w = s.watch("/watch/", 0).await.unwrap();
    let v1 = s.create("/watch/k", b("1"), NO_TTL).await.unwrap();
    s.create("/watchx", b("not mine"), NO_TTL).await.unwrap();
    let v2 = s
        .update("/watch/k", b("2"), v1.mod_revision, NO_TTL)
        .await
        .unwrap();
    let gone = s.delete("/watch/k", None).await.unwrap();
    let events = next_events(&mut w, 3).await;
    assert_eq!(
        events[0],
        Event {
            kind: EventKind::Create,
            kv: v1.clone(),
            prev_kv: None
        }
    );
    assert_eq!(
        events[1],
        Event {
            kind: EventKind::Update,
            kv: v2.clone(),
            prev_kv: Some(v1)
        }
    );
    assert_eq!(events[2], Event::deleted(v2, gone.revision));
    assert_eq!(events[2].kv.create_revision, 0);
    assert!(events[2].kv.value.is_empty());
    assert_quiet(&mut w).await;
}

/// A watch from an old revision replays everything since, including history
/// that has left any in-memory window, then carries on live.
pub async fn watch_replays_history(b_: &dyn Backend) {
    let s = b_.store();
    let start = s.current_revision().await.unwrap() + 1;
    let mut expected = Vec::new();
    for i in 0..300 {
        let key = format!("/replay/{}", i % 7);
        let kv = match s.get(&key, None).await.unwrap() {
            None => s.create(&key, b(&i.to_string()), NO_TTL).await.unwrap(),
            Some(kv) => s
                .update(&key, b(&i.to_string()), kv.mod_revision, NO_TTL)
                .await
                .unwrap(),
        };
        expected.push(kv.mod_revision);
        s.create(&format!("/noise/{i}"), b("n"), NO_TTL)
            .await
            .unwrap();
    }
    let mut w = s.watch("/replay/", start).await.unwrap();
    let seen: Vec<Revision> = next_events(&mut w, expected.len())
        .await
        .iter()
        .map(Event::revision)
        .collect();
    assert_eq!(seen, expected);
    let live = s.create("/replay/live", b("l"), NO_TTL).await.unwrap();
    assert_eq!(next_events(&mut w, 1).await[0].kv, live);
}

pub async fn compaction_drops_old_history(b_: &dyn Backend) {
    let s = b_.store();
    let v1 = s.create("/cmp/k", b("1"), NO_TTL).await.unwrap();
    let keep = s.create("/cmp/untouched", b("u"), NO_TTL).await.unwrap();
    let old_page = s
        .list(&ListRequest::prefix("/cmp/").limit(1))
        .await
        .unwrap();
    let mut last = v1.clone();
    for i in 2..=10 {
        last = s
            .update("/cmp/k", b(&i.to_string()), last.mod_revision, NO_TTL)
            .await
            .unwrap();
    }
    s.create("/cmp/dead", b("d"), NO_TTL).await.unwrap();
    s.delete("/cmp/dead", None).await.unwrap();
    let target = last.mod_revision;
    s.compact(target).await.unwrap();
    assert_eq!(s.compact_revision().await.unwrap(), target);

    match s.get("/cmp/k", Some(target - 1)).await {
        Err(Error::Compacted {
            requested,
            compacted,
        }) => assert_eq!((requested, compacted), (target - 1, target)),
        other => panic!("get before the compact revision: {other:?}"),
    }
    assert!(matches!(
        s.list(&ListRequest::prefix("/cmp/").at_revision(target - 1))
            .await,
        Err(Error::Compacted { .. })
    ));
    assert!(matches!(
        s.watch("/cmp/", target - 1).await,
        Err(Error::Compacted { .. })
    ));
    assert!(
        matches!(
            s.list(&ListRequest::prefix("/cmp/").continue_from(old_page.continue_token.unwrap()))
                .await,
            Err(Error::Compacted { .. })
        ),
        "a continue token from before compaction has expired"
    );
    // The state at the compact revision and after is all still there.
    assert_eq!(
        s.get("/cmp/k", Some(target)).await.unwrap(),
        Some(last.clone())
    );
    assert_eq!(
        s.get("/cmp/untouched", Some(target)).await.unwrap(),
        Some(keep.clone())
    );
    let now = s.list(&ListRequest::prefix("/cmp/")).await.unwrap();
    assert_eq!(now.kvs, vec![last.clone(), keep]);
    let mut w = s.watch("/cmp/", target).await.unwrap();
    let events = next_events(&mut w, 3).await;
    assert_eq!(
        events[0].kv, last,
        "the event at the compact revision stays"
    );
    assert!(events[0].prev_kv.is_some(), "with its previous value");
    assert_eq!(events[2].kind, EventKind::Delete);
    assert_eq!(events[2].prev_kv.as_ref().unwrap().key, "/cmp/dead");

    s.compact(target - 3).await.unwrap();
    assert_eq!(
        s.compact_revision().await.unwrap(),
        target,
        "never goes back"
    );
    let current = s.current_revision().await.unwrap();
    assert!(matches!(
        s.compact(current + 5).await,
        Err(Error::FutureRevision { .. })
    ));
}

pub async fn ttl_keys_expire(b_: &dyn Backend) {
    let s = b_.store();
    let ttl = b_.short_ttl();
    let mut w = s.watch("/ttl/", 0).await.unwrap();
    let short = s
        .create("/ttl/short", b("s"), WriteOptions::ttl(ttl))
        .await
        .unwrap();
    s.create("/ttl/forever", b("f"), NO_TTL).await.unwrap();
    let cleared = s
        .create("/ttl/cleared", b("c"), WriteOptions::ttl(ttl))
        .await
        .unwrap();
    s.update("/ttl/cleared", b("c2"), cleared.mod_revision, NO_TTL)
        .await
        .unwrap();
    next_events(&mut w, 4).await;

    b_.pass_time(ttl / 2).await;
    assert!(
        s.get("/ttl/short", None).await.unwrap().is_some(),
        "not expired before its TTL"
    );
    b_.pass_time(ttl).await;
    let expired = next_events(&mut w, 1).await;
    assert_eq!(expired[0].kind, EventKind::Delete);
    assert_eq!(expired[0].prev_kv.as_ref(), Some(&short));
    assert_eq!(s.get("/ttl/short", None).await.unwrap(), None);
    assert!(s.get("/ttl/forever", None).await.unwrap().is_some());
    assert!(
        s.get("/ttl/cleared", None).await.unwrap().is_some(),
        "an update without a TTL keeps the key"
    );
    assert_quiet(&mut w).await;
}

pub async fn bad_input_is_refused_whole(b_: &dyn Backend) {
    let s = b_.store();
    let kv = s.create("/bad/k", b("v"), NO_TTL).await.unwrap();
    let before = s.current_revision().await.unwrap();
    let big = Bytes::from(vec![7u8; MAX_VALUE_BYTES + 1]);
    match s.create("/bad/big", big.clone(), NO_TTL).await {
        Err(Error::ValueTooLarge { size, limit, .. }) => {
            assert_eq!((size, limit), (MAX_VALUE_BYTES + 1, MAX_VALUE_BYTES));
        }
        other => panic!("oversized create: {other:?}"),
    }
    assert!(matches!(
        s.update("/bad/k", big, kv.mod_revision, NO_TTL).await,
        Err(Error::ValueTooLarge { .. })
    ));
    for key in ["", "no-slash", "/", "/nul\0byte", "/new\nline"] {
        assert!(
            matches!(
                s.create(key, b("v"), NO_TTL).await,
                Err(Error::InvalidKey { .. })
            ),
            "create {key:?}"
        );
        assert!(
            matches!(s.get(key, None).await, Err(Error::InvalidKey { .. })),
            "get {key:?}"
        );
    }
    assert!(matches!(
        s.list(&ListRequest::prefix("relative/")).await,
        Err(Error::InvalidKey { .. })
    ));
    assert!(matches!(
        s.watch("", 0).await,
        Err(Error::InvalidKey { .. })
    ));
    assert_eq!(
        s.current_revision().await.unwrap(),
        before,
        "refused writes take no revision"
    );
    assert_eq!(s.get("/bad/k", None).await.unwrap(), Some(kv));
    assert_eq!(s.get("/bad/big", None).await.unwrap(), None);

    // The largest value allowed goes through whole.
    let max = Bytes::from(vec![1u8; MAX_VALUE_BYTES]);
    let stored = s.create("/bad/max", max.clone(), NO_TTL).await.unwrap();
    assert_eq!(s.get("/bad/max", None).await.unwrap().unwrap().value, max);
    assert_eq!(stored.mod_revision, before + 1);
}

/// Two servers on one database: what one writes, the other reads and watches
/// at once.
pub async fn two_servers_share_one_history(b_: &dyn Backend) {
    let a = b_.store();
    let bs = b_
        .second_server()
        .await
        .expect("this backend runs several servers");
    let mut on_b = bs.watch("/ha/", 0).await.unwrap();
    let kv = a.create("/ha/k", b("from a"), NO_TTL).await.unwrap();
    assert_eq!(
        bs.get("/ha/k", None).await.unwrap(),
        Some(kv.clone()),
        "read your writes across servers"
    );
    assert_eq!(bs.current_revision().await.unwrap(), kv.mod_revision);
    let kv2 = bs
        .update("/ha/k", b("from b"), kv.mod_revision, NO_TTL)
        .await
        .unwrap();
    assert!(matches!(
        a.update("/ha/k", b("stale"), kv.mod_revision, NO_TTL).await,
        Err(Error::Conflict { .. })
    ));
    let events = next_events(&mut on_b, 2).await;
    assert_eq!(events[0].kv, kv);
    assert_eq!(events[1].kv, kv2);
    a.compact(kv2.mod_revision).await.unwrap();
    assert_eq!(bs.compact_revision().await.unwrap(), kv2.mod_revision);
}

/// How big [`history_is_linearizable`] is.
const WRITERS: usize = 6;
const OPS_PER_WRITER: usize = 150;
const HISTORY_KEYS: usize = 4;

/// Concurrent writers racing compare-and-swaps on a few keys, on every server
/// the backend has, while watchers on every server record what they see; then
/// [`history::check`] proves linearizability and exact watch delivery.
pub async fn history_is_linearizable(b_: &dyn Backend) {
    let mut servers = vec![b_.store()];
    if let Some(second) = b_.second_server().await {
        servers.push(second);
    }
    let start = servers[0].current_revision().await.unwrap() + 1;

    // Watchers from the start: two per server, one opened before the writes
    // and one opened halfway through (it must catch up through the database).
    let mut early = Vec::new();
    for s in &servers {
        early.push(s.watch("/h/", start).await.unwrap());
    }

    let mut writers = Vec::new();
    for client in 0..WRITERS {
        let store = servers[client % servers.len()].clone();
        writers.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(client as u64);
            let mut entries = Vec::with_capacity(OPS_PER_WRITER * 2);
            for i in 0..OPS_PER_WRITER {
                let key = format!("/h/{}", rng.random_range(0..HISTORY_KEYS));
                let read = history::run(store.as_ref(), client, Op::Get { key: key.clone() }).await;
                let value = Bytes::from(format!("c{client}-{i}"));
                let op = match read.outcome {
                    Outcome::Read(None) => Op::Create { key, value },
                    Outcome::Read(Some(rev)) if rng.random_bool(0.15) => Op::Delete {
                        key,
                        expected: Some(rev),
                    },
                    Outcome::Read(Some(rev)) => Op::Update {
                        key,
                        value,
                        expected: rev,
                    },
                    ref other => panic!("read failed: {other:?}"),
                };
                entries.push(read);
                entries.push(history::run(store.as_ref(), client, op).await);
            }
            entries
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut late = Vec::new();
    for s in &servers {
        late.push(s.watch("/h/", start).await.unwrap());
    }
    let mut entries = Vec::new();
    for w in writers {
        entries.extend(w.await.unwrap());
    }
    let committed = entries
        .iter()
        .filter(|e| matches!(e.outcome, Outcome::Committed(_)))
        .count();
    let conflicts = entries
        .iter()
        .filter(|e| matches!(e.outcome, Outcome::Conflict(_)))
        .count();
    assert!(conflicts > 0, "the workload should make CAS races");

    let mut watched = Vec::new();
    for mut w in early.into_iter().chain(late) {
        watched.push(next_events(&mut w, committed).await);
        assert_quiet(&mut w).await;
    }
    match history::check(&entries, &watched, start) {
        Ok(report) => {
            assert_eq!(report.writes, committed);
            assert_eq!(report.watchers, servers.len() * 2);
        }
        Err(violations) => panic!(
            "{} violations, first ones:\n{}",
            violations.len(),
            violations
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

/// 1,000 Lease-like keys renewed every 10 s, with the default compaction
/// policy (every 5 minutes, keep 1,000 revisions) on simulated time: the
/// history and the bytes in use stop growing.
pub async fn compaction_bounds_storage_under_lease_churn(b_: &dyn Backend) {
    const LEASES: usize = 1000;
    const ROUND: Duration = Duration::from_secs(10);
    const ROUNDS: usize = 90; // 15 minutes
    let policy = kedge_datastore::maintenance::MaintenanceConfig::default();
    let s = b_.store();
    let lease = |i: usize| format!("/registry/leases/kube-node-lease/node-{i:04}");
    let mut revisions = Vec::with_capacity(LEASES);
    for i in 0..LEASES {
        revisions.push(
            s.create(&lease(i), b("holder"), NO_TTL)
                .await
                .unwrap()
                .mod_revision,
        );
    }
    let mut since_compaction = Duration::ZERO;
    let mut before_first = None;
    let mut after_compaction = Vec::new();
    for round in 1..=ROUNDS {
        // Renew every lease, 50 at a time in flight, as 1,000 kubelets would.
        let renewals = futures::stream::iter(revisions.iter().enumerate().map(|(i, rev)| {
            let s = s.clone();
            let key = lease(i);
            let rev = *rev;
            async move {
                s.update(&key, b(&format!("renewed in round {round}")), rev, NO_TTL)
                    .await
                    .unwrap()
                    .mod_revision
            }
        }))
        .buffered(50)
        .collect::<Vec<_>>()
        .await;
        revisions = renewals;
        since_compaction += ROUND;
        if since_compaction >= policy.compact_interval {
            since_compaction = Duration::ZERO;
            if before_first.is_none() {
                before_first = Some(s.storage_stats().await.unwrap());
            }
            let compacted = compact_once(s.as_ref(), policy.compact_retain)
                .await
                .unwrap();
            assert!(
                compacted.is_some(),
                "round {round} had something to compact"
            );
            after_compaction.push(s.storage_stats().await.unwrap());
        }
    }
    assert_eq!(after_compaction.len(), 3);
    // Without compaction the store would hold three times the history it held
    // before the first compaction; with it, it never holds much more than one
    // interval's worth, however long the churn goes on.
    let peak = before_first.expect("measured before the first compaction");
    for (n, stats) in after_compaction.iter().enumerate() {
        assert!(
            stats.bytes_in_use as f64 <= peak.bytes_in_use as f64 * 1.25,
            "after compaction {} the store uses {} bytes, more than the {} it used \
             with five minutes of uncompacted history",
            n + 1,
            stats.bytes_in_use,
            peak.bytes_in_use
        );
        if let Some(entries) = stats.history_entries {
            // What is left: one row per lease, plus the revisions from the
            // compact revision to the current one.
            let bound = (LEASES as i64 + policy.compact_retain + 1) as u64;
            assert!(
                entries <= bound,
                "history kept {entries} rows after compaction {}; at most {bound} expected",
                n + 1
            );
        }
    }
    let state = s
        .list(&ListRequest::prefix("/registry/leases/"))
        .await
        .unwrap();
    assert_eq!(state.kvs.len(), LEASES, "compaction never drops live keys");
}

/// Generates one `#[tokio::test]` per conformance case for a backend.
///
/// ```text
/// kedge_datastore_testkit::conformance_tests!(SqliteBackend::new());
/// kedge_datastore_testkit::conformance_tests!(multi_server: PostgresBackend::new());
/// ```
#[macro_export]
macro_rules! conformance_tests {
    (multi_server: $make:expr) => {
        $crate::conformance_tests!($make);
        $crate::conformance_tests!(@cases $make; two_servers_share_one_history);
    };
    ($make:expr) => {
        $crate::conformance_tests!(@cases $make;
            create_then_get,
            update_is_compare_and_swap,
            delete_is_conditional_when_asked,
            revisions_are_dense,
            get_at_revision,
            list_pages_share_one_snapshot,
            list_at_revision,
            count_by_prefix,
            watch_carries_previous_values,
            watch_replays_history,
            compaction_drops_old_history,
            ttl_keys_expire,
            bad_input_is_refused_whole,
            history_is_linearizable,
            compaction_bounds_storage_under_lease_churn
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let backend = $make.await;
                $crate::conformance::$case(&backend).await;
            }
        )*
    };
}
