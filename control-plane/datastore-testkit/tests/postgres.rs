//! The conformance suite on a real PostgreSQL, with two servers on one database.

use kedge_datastore_testkit::backends::PostgresBackend;

kedge_datastore_testkit::conformance_tests!(multi_server: PostgresBackend::new());

use std::time::Duration;

use bytes::Bytes;
use kedge_datastore::{Error, Store, WriteOptions};
use kedge_datastore_postgres::PostgresStore;
use kedge_datastore_testkit::conformance::next_events;

/// A server whose tailer fell behind while another server wrote and compacted
/// catches up from the compact revision, and its watchers see every event
/// from there on. (Compaction removes rows in the middle of the range the
/// lagging server has not read yet, while the first of them survives.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_server_catches_up_across_a_compaction() {
    let backend = PostgresBackend::new().await;
    let a = backend.store;
    // Server b hears of other servers' writes only by polling, here once an hour:
    // its tailer lags until its own writer wakes it.
    let mut config = PostgresBackend::config(&backend.url, &backend.clock);
    config.notifications = false;
    config.poll_interval = Duration::from_secs(3600);
    let b = PostgresStore::connect(config).await.unwrap();

    let none = WriteOptions::default();
    a.create("/lag/keep", Bytes::from("kept"), none)
        .await
        .unwrap();
    let mut k = a.create("/lag/k", Bytes::from("0"), none).await.unwrap();
    for i in 1..=5 {
        k = a
            .update("/lag/k", Bytes::from(i.to_string()), k.mod_revision, none)
            .await
            .unwrap();
    }
    a.compact(k.mod_revision).await.unwrap();

    // b's own write wakes its tailer, which must now read past the hole.
    let mine = b.create("/lag/b", Bytes::from("b"), none).await.unwrap();
    let mut watch = b.watch("/lag/", k.mod_revision).await.unwrap();
    let events = next_events(&mut watch, 2).await;
    assert_eq!(events[0].kv, k);
    assert_eq!(events[1].kv, mine);
    assert!(matches!(
        b.watch("/lag/", k.mod_revision - 1).await,
        Err(Error::Compacted { .. })
    ));
}
