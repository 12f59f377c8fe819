//! The local desired-state store: the node's view as the server last sent
//! it, in SQLite, so that a restart (online or offline) starts from it and
//! resumes the sync from its revision.
//!
//! One table of objects keyed by (kind, namespace, name), each with the
//! revision of its last write and its JSON, and one value: the revision the
//! store holds everything up to. A batch is applied in one transaction
//! together with its revision, so the store never holds half a batch, and
//! the revision it reports is always safe to resume from (it is what the
//! agent acks).
//!
//! Readers (the pod manager, the proxy, DNS) list by kind or get one object,
//! and follow [`Store::subscribe`], a counter bumped after every batch that
//! changed something.
//!
//! A second table keeps the ServiceAccount tokens the server issued for the
//! node's pods ([`crate::tokens`]), so that a pod restarted offline mounts
//! the token it had.
//!
//! The store is synchronous (rusqlite); async callers run [`Store::apply`] on
//! a blocking thread. It must not depend on the network or on tonic.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kedge_proto::v1::{ObjectKind, SyncBatch};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::watch;

/// The schema version this code writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

/// A store error, with the file it concerns.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the desired-state store {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "the desired-state store {path} has schema version {found}, this agent knows {SCHEMA_VERSION}"
    )]
    Schema { path: PathBuf, found: i64 },
    #[error("desired-state store {path}: cannot {op}: {source}")]
    Sql {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: rusqlite::Error,
    },
}

/// One stored object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredObject {
    pub kind: ObjectKind,
    pub namespace: String,
    pub name: String,
    /// The revision of the object's last write.
    pub revision: u64,
    /// The object, JSON, as the server sent it.
    pub object: Vec<u8>,
}

/// What applying a batch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub upserted: usize,
    pub deleted: usize,
    /// Changes skipped: an unknown kind, or an upsert without an object.
    pub skipped: usize,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    conn: Mutex<Connection>,
    changes: watch::Sender<u64>,
}

/// The store; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<Inner>,
}

fn kind_of(v: i32) -> Option<ObjectKind> {
    ObjectKind::try_from(v)
        .ok()
        .filter(|k| *k != ObjectKind::Unspecified)
}

impl Store {
    /// Opens (creating if needed) the store at `path`. A file that is not a
    /// store of this agent is an error, never overwritten.
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let path = path.as_ref().to_path_buf();
        let open_err = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(open_err)?;
        Store::init(conn, path)
    }

    /// A store in memory, for tests and for agents without a data dir.
    pub fn in_memory() -> Result<Store, StoreError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        Store::init(conn, path)
    }

    fn init(conn: Connection, path: PathBuf) -> Result<Store, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
        // The first statements read the header: a corrupt file fails here.
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(open_err)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Schema {
                path,
                found: version,
            });
        }
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS objects (
                 kind INTEGER NOT NULL,
                 namespace TEXT NOT NULL,
                 name TEXT NOT NULL,
                 revision INTEGER NOT NULL,
                 object BLOB NOT NULL,
                 PRIMARY KEY (kind, namespace, name)
             ) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS meta (
                 key TEXT PRIMARY KEY,
                 value INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS tokens (
                 pod_uid TEXT NOT NULL,
                 audience TEXT NOT NULL,
                 expiration_seconds INTEGER NOT NULL,
                 token TEXT NOT NULL,
                 issued_unix INTEGER NOT NULL,
                 expires_unix INTEGER NOT NULL,
                 PRIMARY KEY (pod_uid, audience, expiration_seconds)
             ) WITHOUT ROWID;
             PRAGMA user_version = 1;",
        )
        .map_err(open_err)?;
        // Make sure the tables are readable (a damaged page shows here).
        conn.query_row("SELECT count(*) FROM objects", [], |r| r.get::<_, i64>(0))
            .map_err(open_err)?;
        let (changes, _) = watch::channel(0);
        Ok(Store {
            inner: Arc::new(Inner {
                path,
                conn: Mutex::new(conn),
                changes,
            }),
        })
    }

    fn sql(&self, op: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Sql {
            path: self.inner.path.clone(),
            op,
            source,
        }
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.inner.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The file the store lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The revision the store holds everything up to (0: nothing yet): what
    /// the agent acks, and resumes the sync from.
    pub fn acked(&self) -> Result<u64, StoreError> {
        let conn = self.conn();
        let v: Option<i64> = conn
            .query_row("SELECT value FROM meta WHERE key = 'revision'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.sql("read the revision"))?;
        Ok(v.and_then(|v| u64::try_from(v).ok()).unwrap_or_default())
    }

    /// Applies a batch in one transaction: a reset replaces everything held.
    /// Wakes subscribers when something changed.
    pub fn apply(&self, batch: &SyncBatch) -> Result<Applied, StoreError> {
        let mut applied = Applied::default();
        {
            let mut conn = self.conn();
            let tx = conn
                .transaction()
                .map_err(self.sql("begin a transaction"))?;
            if batch.reset {
                let n = tx
                    .execute("DELETE FROM objects", [])
                    .map_err(self.sql("clear the store"))?;
                applied.deleted += n;
            }
            {
                let mut upsert = tx
                    .prepare_cached(
                        "INSERT OR REPLACE INTO objects (kind, namespace, name, revision, object)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                    )
                    .map_err(self.sql("prepare an upsert"))?;
                let mut delete = tx
                    .prepare_cached(
                        "DELETE FROM objects WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
                    )
                    .map_err(self.sql("prepare a delete"))?;
                for c in &batch.changes {
                    let Some(kind) = kind_of(c.kind) else {
                        applied.skipped += 1;
                        continue;
                    };
                    if c.deleted {
                        applied.deleted += delete
                            .execute(params![kind as i32, c.namespace, c.name])
                            .map_err(self.sql("delete an object"))?;
                    } else if c.object.is_empty() {
                        applied.skipped += 1;
                    } else {
                        let revision = i64::try_from(c.revision).unwrap_or(i64::MAX);
                        upsert
                            .execute(params![
                                kind as i32,
                                c.namespace,
                                c.name,
                                revision,
                                c.object
                            ])
                            .map_err(self.sql("write an object"))?;
                        applied.upserted += 1;
                    }
                }
            }
            let revision = i64::try_from(batch.revision).unwrap_or(i64::MAX);
            tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('revision', ?1)",
                params![revision],
            )
            .map_err(self.sql("record the revision"))?;
            tx.commit().map_err(self.sql("commit a batch"))?;
        }
        if applied.upserted + applied.deleted > 0 || batch.reset {
            self.inner.changes.send_modify(|n| *n += 1);
        }
        if applied.skipped > 0 {
            tracing::warn!(
                skipped = applied.skipped,
                revision = batch.revision,
                "store: skipped changes of unknown kind or without an object"
            );
        }
        Ok(applied)
    }

    /// One object.
    pub fn get(
        &self,
        kind: ObjectKind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<StoredObject>, StoreError> {
        let conn = self.conn();
        conn.query_row(
            "SELECT revision, object FROM objects WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
            params![kind as i32, namespace, name],
            |r| {
                Ok(StoredObject {
                    kind,
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                    revision: u64::try_from(r.get::<_, i64>(0)?).unwrap_or_default(),
                    object: r.get(1)?,
                })
            },
        )
        .optional()
        .map_err(self.sql("read an object"))
    }

    /// Every object of a kind, by namespace and name.
    pub fn list(&self, kind: ObjectKind) -> Result<Vec<StoredObject>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT namespace, name, revision, object FROM objects WHERE kind = ?1
                 ORDER BY namespace, name",
            )
            .map_err(self.sql("prepare a list"))?;
        let rows = stmt
            .query_map(params![kind as i32], |r| {
                Ok(StoredObject {
                    kind,
                    namespace: r.get(0)?,
                    name: r.get(1)?,
                    revision: u64::try_from(r.get::<_, i64>(2)?).unwrap_or_default(),
                    object: r.get(3)?,
                })
            })
            .map_err(self.sql("list objects"))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(self.sql("list objects"))
    }

    /// A counter bumped after every batch that changed the content.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    /// The token last stored for a pod's projection.
    pub fn token(
        &self,
        pod_uid: &str,
        audience: &str,
        expiration_seconds: i64,
    ) -> Result<Option<StoredToken>, StoreError> {
        let conn = self.conn();
        conn.query_row(
            "SELECT token, issued_unix, expires_unix FROM tokens
             WHERE pod_uid = ?1 AND audience = ?2 AND expiration_seconds = ?3",
            params![pod_uid, audience, expiration_seconds],
            |r| {
                Ok(StoredToken {
                    token: r.get(0)?,
                    issued_unix: r.get(1)?,
                    expires_unix: r.get(2)?,
                })
            },
        )
        .optional()
        .map_err(self.sql("read a token"))
    }

    /// Stores (replacing) the token for a pod's projection.
    pub fn put_token(
        &self,
        pod_uid: &str,
        audience: &str,
        expiration_seconds: i64,
        token: &StoredToken,
    ) -> Result<(), StoreError> {
        let conn = self.conn();
        conn.execute(
            "INSERT OR REPLACE INTO tokens
             (pod_uid, audience, expiration_seconds, token, issued_unix, expires_unix)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                pod_uid,
                audience,
                expiration_seconds,
                token.token,
                token.issued_unix,
                token.expires_unix
            ],
        )
        .map_err(self.sql("store a token"))?;
        Ok(())
    }

    /// Forgets every token of a pod (it is gone from the node).
    pub fn forget_tokens(&self, pod_uid: &str) -> Result<(), StoreError> {
        let conn = self.conn();
        conn.execute("DELETE FROM tokens WHERE pod_uid = ?1", params![pod_uid])
            .map_err(self.sql("forget tokens"))?;
        Ok(())
    }
}

/// A ServiceAccount token as the store keeps it.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredToken {
    /// The JWT.
    pub token: String,
    /// Unix seconds at which the agent received it.
    pub issued_unix: i64,
    /// Unix seconds at which it expires.
    pub expires_unix: i64,
}

impl std::fmt::Debug for StoredToken {
    // A token is a credential: never in a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredToken")
            .field("token", &"<redacted>")
            .field("issued_unix", &self.issued_unix)
            .field("expires_unix", &self.expires_unix)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use kedge_proto::v1::Change;

    use super::*;

    fn upsert(kind: ObjectKind, name: &str, revision: u64, body: &str) -> Change {
        Change {
            kind: kind as i32,
            namespace: "default".into(),
            name: name.into(),
            revision,
            deleted: false,
            object: body.as_bytes().to_vec(),
        }
    }

    fn delete(kind: ObjectKind, name: &str, revision: u64) -> Change {
        Change {
            kind: kind as i32,
            namespace: "default".into(),
            name: name.into(),
            revision,
            deleted: true,
            object: Vec::new(),
        }
    }

    fn names(store: &Store, kind: ObjectKind) -> Vec<String> {
        store
            .list(kind)
            .unwrap()
            .into_iter()
            .map(|o| o.name)
            .collect()
    }

    #[test]
    fn batches_apply_reset_replaces_and_state_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = Store::open(&path).unwrap();
        assert_eq!(store.acked().unwrap(), 0);
        let mut changes = store.subscribe();
        let applied = store
            .apply(&SyncBatch {
                revision: 10,
                reset: true,
                changes: vec![
                    upsert(ObjectKind::Pod, "a", 5, "{\"a\":1}"),
                    upsert(ObjectKind::Pod, "b", 6, "{}"),
                    upsert(ObjectKind::Secret, "s", 7, "{}"),
                    upsert(ObjectKind::Unspecified, "x", 7, "{}"),
                    Change {
                        kind: 99,
                        ..upsert(ObjectKind::Pod, "y", 7, "{}")
                    },
                ],
            })
            .unwrap();
        assert_eq!(applied.upserted, 3);
        assert_eq!(applied.skipped, 2);
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        assert_eq!(store.acked().unwrap(), 10);
        store
            .apply(&SyncBatch {
                revision: 12,
                reset: false,
                changes: vec![
                    delete(ObjectKind::Pod, "b", 11),
                    upsert(ObjectKind::Pod, "a", 12, "{\"a\":2}"),
                    delete(ObjectKind::ConfigMap, "never-held", 12),
                ],
            })
            .unwrap();
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        assert_eq!(names(&store, ObjectKind::Pod), vec!["a"]);
        let a = store.get(ObjectKind::Pod, "default", "a").unwrap().unwrap();
        assert_eq!((a.revision, a.object.as_slice()), (12, &b"{\"a\":2}"[..]));
        assert!(
            store
                .get(ObjectKind::Pod, "default", "b")
                .unwrap()
                .is_none()
        );

        // An empty batch only moves the revision, and wakes nobody.
        store
            .apply(&SyncBatch {
                revision: 15,
                reset: false,
                changes: vec![],
            })
            .unwrap();
        assert!(!changes.has_changed().unwrap());
        drop(store);

        let store = Store::open(&path).unwrap();
        assert_eq!(store.acked().unwrap(), 15);
        assert_eq!(names(&store, ObjectKind::Pod), vec!["a"]);
        assert_eq!(names(&store, ObjectKind::Secret), vec!["s"]);

        // A reset drops whatever it does not hold.
        store
            .apply(&SyncBatch {
                revision: 30,
                reset: true,
                changes: vec![upsert(ObjectKind::Pod, "c", 29, "{}")],
            })
            .unwrap();
        assert_eq!(names(&store, ObjectKind::Pod), vec!["c"]);
        assert!(names(&store, ObjectKind::Secret).is_empty());
        assert_eq!(store.acked().unwrap(), 30);
    }

    #[test]
    fn a_corrupt_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
        let err = Store::open(&path).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("cannot open the desired-state store"), "{msg}");
        assert!(msg.contains("state.db"), "{msg}");
        // And the file is left as it was, for a human to look at.
        assert_eq!(std::fs::read(&path).unwrap(), vec![0x42u8; 8192]);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch("PRAGMA user_version = 7;").unwrap();
        }
        assert!(matches!(
            Store::open(&path),
            Err(StoreError::Schema { found: 7, .. })
        ));
    }

    #[test]
    fn tokens_survive_a_restart_and_a_reset_and_go_with_their_pod() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let token = |t: &str, issued_unix| StoredToken {
            token: t.into(),
            issued_unix,
            expires_unix: issued_unix + 3600,
        };
        {
            let store = Store::open(&path).unwrap();
            assert_eq!(store.token("uid-1", "", 3600).unwrap(), None);
            store
                .put_token("uid-1", "", 3600, &token("a", 100))
                .unwrap();
            store
                .put_token("uid-1", "", 3600, &token("b", 200))
                .unwrap();
            store
                .put_token("uid-1", "vault", 3600, &token("v", 100))
                .unwrap();
            store
                .put_token("uid-2", "", 3600, &token("c", 100))
                .unwrap();
            // A full resync replaces the objects, not the tokens.
            store
                .apply(&SyncBatch {
                    revision: 3,
                    reset: true,
                    changes: vec![],
                })
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(
            store.token("uid-1", "", 3600).unwrap(),
            Some(token("b", 200))
        );
        assert_eq!(store.token("uid-1", "", 7200).unwrap(), None);
        assert_eq!(
            store.token("uid-1", "vault", 3600).unwrap(),
            Some(token("v", 100))
        );
        store.forget_tokens("uid-1").unwrap();
        assert_eq!(store.token("uid-1", "", 3600).unwrap(), None);
        assert_eq!(store.token("uid-1", "vault", 3600).unwrap(), None);
        assert_eq!(
            store.token("uid-2", "", 3600).unwrap(),
            Some(token("c", 100))
        );
        assert!(!format!("{:?}", token("secret-jwt", 1)).contains("secret-jwt"));
    }
}
