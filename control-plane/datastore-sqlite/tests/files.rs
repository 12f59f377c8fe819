//! The SQLite file itself: a process killed mid-write, a file that is not a
//! database, a database from a newer kedge, and reopening.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use kedge_datastore::{Error, Store, WriteOptions};
use kedge_datastore_sqlite::{SqliteConfig, SqliteStore};

const CHILD_ENV: &str = "KEDGE_SQLITE_CRASH_CHILD";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The child: writes as fast as it can and prints every acknowledged write,
/// until it is killed.
fn write_until_killed(path: &Path) -> ! {
    runtime().block_on(async {
        let store = std::sync::Arc::new(SqliteStore::open(SqliteConfig::new(path)).await.unwrap());
        let mut tasks = Vec::new();
        for w in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0.. {
                    let key = format!("/crash/{w}/{i:06}");
                    let kv = store
                        .create(&key, Bytes::from(key.clone()), WriteOptions::default())
                        .await
                        .unwrap();
                    println!("ok {key} {}", kv.mod_revision);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    unreachable!("the writers never stop")
}

#[test]
fn killed_mid_write_reopens_whole_with_every_acknowledged_write() {
    if let Some(path) = std::env::var_os(CHILD_ENV) {
        write_until_killed(Path::new(&path));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "killed_mid_write_reopens_whole_with_every_acknowledged_write",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    // Let it write for a while, then kill it without warning.
    let mut acknowledged = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_millis(1500);
    while std::time::Instant::now() < deadline {
        if let Ok(line) = lines_rx.recv_timeout(Duration::from_millis(50)) {
            acknowledged.push(line);
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    acknowledged.extend(lines_rx.try_iter());
    let acknowledged: Vec<(String, i64)> = acknowledged
        .iter()
        .filter_map(|l| {
            let mut parts = l.strip_prefix("ok ")?.split(' ');
            Some((parts.next()?.to_string(), parts.next()?.parse().ok()?))
        })
        .collect();
    assert!(
        acknowledged.len() > 100,
        "the child acknowledged only {} writes",
        acknowledged.len()
    );

    // The tables agree: the revision is the newest log row, the log is dense,
    // every live key is its log row.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let (consistent, dense, keys_match): (bool, bool, bool) = conn
        .query_row(
            "SELECT (SELECT value FROM meta WHERE name = 'revision') = (SELECT max(revision) FROM log),
                    (SELECT count(*) FROM log) = (SELECT max(revision) FROM log),
                    NOT EXISTS (SELECT 1 FROM kv k WHERE NOT EXISTS (
                        SELECT 1 FROM log l WHERE l.revision = k.mod_revision
                        AND l.key = k.key AND l.value = k.value))",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert!(
        consistent && dense && keys_match,
        "tables disagree after the kill"
    );
    drop(conn);

    runtime().block_on(async {
        let store = SqliteStore::open(SqliteConfig::new(&path)).await.unwrap();
        for (key, revision) in &acknowledged {
            let kv = store.get(key, None).await.unwrap();
            assert_eq!(
                kv.map(|kv| kv.mod_revision),
                Some(*revision),
                "acknowledged write {key} was lost"
            );
        }
        // And it takes writes again, at the next revision.
        let current = store.current_revision().await.unwrap();
        let kv = store
            .create("/crash/after", Bytes::from("x"), WriteOptions::default())
            .await
            .unwrap();
        assert_eq!(kv.mod_revision, current + 1);
    });
}

#[test]
fn a_file_that_is_not_a_database_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    std::fs::write(
        &path,
        b"this is a text file, not a SQLite database; ".repeat(200),
    )
    .unwrap();
    let err = runtime()
        .block_on(SqliteStore::open(SqliteConfig::new(&path)))
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::Backend { .. }), "{err:?}");
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("not a SQLite database"), "{message}");
    let untouched = std::fs::read(&path).unwrap();
    assert!(
        untouched.starts_with(b"this is a text file"),
        "the file is left alone"
    );
}

#[test]
fn a_database_from_a_newer_kedge_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    runtime().block_on(async {
        let store = SqliteStore::open(SqliteConfig::new(&path)).await.unwrap();
        store
            .create("/k", Bytes::from("v"), WriteOptions::default())
            .await
            .unwrap();
    });
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "UPDATE meta SET value = 99 WHERE name = 'schema_version'",
            [],
        )
        .unwrap();
    let err = runtime()
        .block_on(SqliteStore::open(SqliteConfig::new(&path)))
        .unwrap_err();
    assert!(err.to_string().contains("schema version 99"), "{err}");
}

#[test]
fn reopening_keeps_data_revision_and_history() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let rt = runtime();
    let (first, second) = rt.block_on(async {
        let store = SqliteStore::open(SqliteConfig::new(&path)).await.unwrap();
        let first = store
            .create("/k", Bytes::from("1"), WriteOptions::default())
            .await
            .unwrap();
        let second = store
            .update(
                "/k",
                Bytes::from("2"),
                first.mod_revision,
                WriteOptions::default(),
            )
            .await
            .unwrap();
        (first, second)
    });
    rt.block_on(async {
        use futures::StreamExt;
        let store = SqliteStore::open(SqliteConfig::new(&path)).await.unwrap();
        assert_eq!(store.current_revision().await.unwrap(), second.mod_revision);
        assert_eq!(
            store.get("/k", Some(first.mod_revision)).await.unwrap(),
            Some(first.clone())
        );
        let mut watch = store.watch("/", 1).await.unwrap();
        let replayed = watch.next().await.unwrap().unwrap();
        assert_eq!(replayed.kv, first);
        let third = store
            .create("/j", Bytes::from("3"), WriteOptions::default())
            .await
            .unwrap();
        assert_eq!(third.mod_revision, second.mod_revision + 1);
    });
}

#[test]
fn a_new_database_is_private_to_its_user() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server/db/state.db");
    runtime().block_on(async {
        let store = SqliteStore::open(SqliteConfig::new(&path)).await.unwrap();
        store
            .create(
                "/registry/secrets/default/token",
                Bytes::from("s3cret"),
                WriteOptions::default(),
            )
            .await
            .unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600, "database file");
        assert_eq!(
            mode(&path.with_extension("db-wal")),
            0o600,
            "write-ahead log"
        );
        assert_eq!(mode(path.parent().unwrap()), 0o700, "database directory");
        assert_eq!(mode(&dir.path().join("server")), 0o700, "server directory");
    });
}
