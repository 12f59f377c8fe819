//! PostgreSQL going away mid-write: every write either commits whole or fails
//! with a typed "unavailable" error, nothing is half-written, and the store
//! and its watchers carry on once the server is back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kedge_datastore::{Error, KeyValue, Store, WriteOptions};
use kedge_datastore_postgres::{PostgresConfig, PostgresStore};
use kedge_datastore_testkit::conformance::next_events;
use kedge_datastore_testkit::servers::{Durability, Postgres};

const WRITERS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_mid_write_loses_nothing_and_recovers() {
    // Durable: a crash must not lose what was acknowledged.
    let mut pg = tokio::task::spawn_blocking(|| Postgres::start(Durability::Durable))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    let url = pg.create_database("outage").unwrap();
    let mut config = PostgresConfig::new(&url);
    config.connect_timeout = Duration::from_secs(2);
    let store = Arc::new(PostgresStore::connect(config).await.unwrap());
    let mut watch = store.watch("/o/", 1).await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (store, stop) = (store.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut results: Vec<(String, Bytes, Result<KeyValue, Error>)> = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("/o/{w}/{i:05}");
                let value = Bytes::from(format!("writer {w} write {i}"));
                let result = store
                    .create(&key, value.clone(), WriteOptions::default())
                    .await;
                if result.is_err() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                results.push((key, value, result));
                i += 1;
            }
            results
        }));
    }

    tokio::time::sleep(Duration::from_millis(700)).await;
    tokio::task::block_in_place(|| pg.crash());

    // While the server is down, a write fails fast and says why.
    let t = Instant::now();
    match store
        .create("/o/while-down", Bytes::from("x"), WriteOptions::default())
        .await
    {
        Err(err @ Error::Unavailable { .. }) => {
            assert!(err.to_string().contains("postgres"), "{err}");
        }
        other => panic!("a write while postgres is down: {other:?}"),
    }
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    tokio::task::block_in_place(|| pg.restart()).unwrap_or_else(|e| panic!("{e}"));
    // Let every writer commit again after the restart, then stop them.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let mut results = Vec::new();
    for w in writers {
        results.extend(w.await.unwrap());
    }

    let mut committed = 0;
    let mut unavailable = 0;
    for (key, value, result) in &results {
        let now = store.get(key, None).await.unwrap();
        match result {
            Ok(kv) => {
                committed += 1;
                assert_eq!(now.as_ref(), Some(kv), "acknowledged write {key} was lost");
            }
            Err(Error::Unavailable { .. }) => {
                unavailable += 1;
                // The outcome was unknown to the writer: either it is not
                // there at all, or it is there whole.
                if let Some(kv) = now {
                    assert_eq!(&kv.value, value, "{key} is half-written");
                }
            }
            Err(other) => panic!("{key}: only 'unavailable' is expected, got {other}"),
        }
    }
    eprintln!("{committed} writes committed, {unavailable} failed as unavailable");
    assert!(unavailable > 0, "the crash should have failed some writes");
    let tail: Vec<_> = results.iter().rev().take(WRITERS).collect();
    assert!(
        tail.iter().all(|(_, _, r)| r.is_ok()),
        "every writer succeeds again after the restart"
    );

    // The tables agree with each other: the revision is the newest log row,
    // the log is dense, and every live key is its log row.
    let consistent = pg
        .query(
            "outage",
            "SELECT (SELECT value FROM kedge_meta WHERE name = 'revision') = (SELECT max(revision) FROM kedge_log),
                    (SELECT count(*) FROM kedge_log) = (SELECT max(revision) FROM kedge_log),
                    NOT EXISTS (SELECT 1 FROM kedge_kv k WHERE NOT EXISTS (
                        SELECT 1 FROM kedge_log l WHERE l.revision = k.mod_revision
                        AND l.key = k.key AND l.value = k.value))",
        )
        .unwrap();
    assert_eq!(consistent, "t|t|t", "tables disagree after the crash");

    // The watch from before the crash saw every committed write, in order.
    let current = store.current_revision().await.unwrap();
    let events = next_events(&mut watch, current as usize).await;
    let revisions: Vec<i64> = events.iter().map(|e| e.revision()).collect();
    assert_eq!(revisions, (1..=current).collect::<Vec<_>>());
    assert!(committed as i64 <= current);
}
