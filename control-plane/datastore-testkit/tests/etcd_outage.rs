//! etcd going away mid-write: writes fail with a typed "unavailable" error
//! quickly, acknowledged writes survive, and a watch opened before the crash
//! carries on after the restart without a gap or a repeat.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use kedge_datastore::{Error, KeyValue, Store, WriteOptions};
use kedge_datastore_etcd::{EtcdConfig, EtcdStore};
use kedge_datastore_testkit::servers::{Durability, Etcd};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_mid_write_loses_nothing_and_watch_resumes() {
    let mut etcd = tokio::task::spawn_blocking(|| Etcd::start(Durability::Durable))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut config = EtcdConfig::new([etcd.endpoint()]);
    config.request_timeout = Duration::from_secs(2);
    let store = Arc::new(EtcdStore::connect(config).await.unwrap());
    let start = store.current_revision().await.unwrap() + 1;
    let mut watch = store.watch("/o/", start).await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, stop) = (store.clone(), stop.clone());
        tokio::spawn(async move {
            let mut results: Vec<(String, Result<KeyValue, Error>)> = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("/o/{i:05}");
                let result = store
                    .create(&key, Bytes::from(key.clone()), WriteOptions::default())
                    .await;
                if result.is_err() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                results.push((key, result));
                i += 1;
            }
            results
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    tokio::task::block_in_place(|| etcd.crash());

    let t = Instant::now();
    match store.get("/o/00000", None).await {
        Err(Error::Unavailable { .. }) => {}
        other => panic!("a read while etcd is down: {other:?}"),
    }
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::block_in_place(|| etcd.restart()).unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let results = writer.await.unwrap();

    let mut committed = Vec::new();
    let mut unavailable = 0;
    for (key, result) in &results {
        match result {
            Ok(kv) => {
                assert_eq!(
                    store.get(key, None).await.unwrap().as_ref(),
                    Some(kv),
                    "{key} lost"
                );
                committed.push(kv.mod_revision);
            }
            Err(Error::Unavailable { .. }) => unavailable += 1,
            Err(other) => panic!("{key}: only 'unavailable' is expected, got {other}"),
        }
    }
    eprintln!(
        "{} writes committed, {unavailable} failed as unavailable",
        committed.len()
    );
    assert!(unavailable > 0, "the crash should have failed some writes");
    assert!(
        results.last().unwrap().1.is_ok(),
        "writes succeed after the restart"
    );

    // Every write that is in etcd now reaches the watch, in order, once.
    let present = store
        .list(&kedge_datastore::ListRequest::prefix("/o/"))
        .await
        .unwrap();
    let mut expected: Vec<i64> = present.kvs.iter().map(|kv| kv.mod_revision).collect();
    expected.sort();
    let mut seen = Vec::new();
    while seen.len() < expected.len() {
        match tokio::time::timeout(Duration::from_secs(20), watch.next()).await {
            Ok(Some(Ok(event))) => seen.push(event.revision()),
            other => panic!(
                "watch after {} of {} events: {other:?}",
                seen.len(),
                expected.len()
            ),
        }
    }
    assert_eq!(seen, expected, "the watch skipped, repeated or reordered");
    for rev in committed {
        assert!(seen.contains(&rev));
    }
}
