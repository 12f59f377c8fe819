//! `kedge server` as a user runs it: the real binary, on each datastore.

mod common;

use common::{kedge, start, stop};

use kedge_datastore_testkit::backends::{shared_postgres, unique_name};
use kedge_datastore_testkit::servers::{Durability, Etcd};

#[test]
fn serves_on_embedded_sqlite_in_the_k3s_layout() {
    let dir = tempfile::tempdir().unwrap();
    let (child, _log) = start(kedge(dir.path(), ""));
    let db = dir.path().join("server/db/state.db");
    assert!(db.exists(), "the database is at {}", db.display());
    stop(child);
    assert!(
        !dir.path().join("server/db/state.db-wal").exists(),
        "a clean stop checkpoints the write-ahead log"
    );
    // It starts again on the same database.
    let (child, _log) = start(kedge(dir.path(), ""));
    stop(child);
}

#[test]
fn serves_on_postgres_without_logging_the_password() {
    let pg = shared_postgres();
    let name = unique_name("kedge_server");
    pg.create_database(&name).unwrap();
    pg.query(&name, "ALTER USER kedge PASSWORD 'hunter2-secret'")
        .unwrap();
    let url = format!(
        "postgres://kedge:hunter2-secret@127.0.0.1:{}/{name}",
        pg.port()
    );
    let dir = tempfile::tempdir().unwrap();
    let (child, log) = start(kedge(dir.path(), &url));
    stop(child);
    let all: Vec<String> = log.try_iter().collect();
    assert!(
        !all.iter().any(|l| l.contains("hunter2")),
        "the password leaked into the log"
    );
    let tables = pg
        .query(
            &name,
            "SELECT count(*) FROM kedge_meta WHERE name = 'revision'",
        )
        .unwrap();
    assert_eq!(tables, "1", "kedge created its tables");
}

#[test]
fn serves_on_etcd() {
    let etcd = Etcd::start(Durability::Fast).unwrap_or_else(|e| panic!("{e}"));
    let endpoint = etcd.endpoint().replace("http://", "etcd://");
    let dir = tempfile::tempdir().unwrap();
    let (child, _log) = start(kedge(dir.path(), &endpoint));
    stop(child);
}

#[test]
fn refuses_bad_configuration_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    for (endpoint, says) in [
        ("mysql://root@db/kedge", "MySQL is not a kedge datastore"),
        ("postgres://kedge@127.0.0.1:1/none", "open the datastore"),
        ("nonsense", "has no scheme"),
    ] {
        let out = kedge(dir.path(), endpoint).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{endpoint}: {stderr}");
        assert!(stderr.contains(says), "{endpoint}: {stderr}");
        assert!(!stderr.contains("panicked"), "{endpoint}: {stderr}");
    }
}
