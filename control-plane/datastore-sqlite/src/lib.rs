//! kedge-datastore-sqlite: the embedded datastore, SQLite in WAL mode. It is
//! the default backend of `kedge server`, as kine's SQLite is for K3s.
//!
//! One thread owns the write connection and commits writes in groups
//! ([`writer`]); reads run on a small pool of read-only connections, each in
//! its own snapshot ([`reader`]). Because the writer hands out revisions in
//! commit order, the history in the `log` table is dense, and watchers follow
//! it through the shared [`EventWindow`] without polling.
//!
//! This crate depends on rusqlite (with SQLite bundled, so no system library is
//! needed, also when cross-compiling) and on `kedge-datastore`, nothing else of
//! kedge's.

mod reader;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot};
use tracing::info;

use kedge_datastore::list::ListPlan;
use kedge_datastore::watch::{self, EventWindow, History, HistoryPage, WindowLimits};
use kedge_datastore::{
    Clock, Deleted, Error, KeyValue, ListRequest, ListResponse, Result, Revision, StorageStats,
    Store, SystemClock, WatchStream, WriteOptions, key,
};

use kedge_datastore::sql::{self, Outcome, WriteOp};
use writer::{Job, Writer};

const BACKEND: &str = "sqlite";

/// How hard SQLite works to make each commit durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// fsync on every commit: a commit that returned survives power loss.
    #[default]
    Full,
    /// fsync only at checkpoints: safe against crashes of kedge, but the last
    /// commits can be lost if the machine loses power.
    Normal,
}

#[derive(Clone, Debug)]
pub struct SqliteConfig {
    pub path: PathBuf,
    pub synchronous: Synchronous,
    /// The clock TTLs are measured against.
    pub clock: Arc<dyn Clock>,
    /// Recent events kept in memory for watchers.
    pub window: WindowLimits,
    /// The most writes committed in one transaction.
    pub max_batch: usize,
    /// The most idle read connections kept open.
    pub read_connections: usize,
}

impl SqliteConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteConfig {
            path: path.into(),
            synchronous: Synchronous::default(),
            clock: Arc::new(SystemClock),
            window: WindowLimits::default(),
            max_batch: 512,
            read_connections: 4,
        }
    }
}

/// The SQLite store. Cheap to share behind an `Arc`; dropping the last handle
/// stops the writer thread and ends every watch.
#[derive(Debug)]
pub struct SqliteStore {
    jobs: mpsc::Sender<Job>,
    writer: Option<std::thread::JoinHandle<()>>,
    readers: Arc<ReadPool>,
    window: Arc<EventWindow>,
    clock: Arc<dyn Clock>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `config.path`.
    pub async fn open(config: SqliteConfig) -> Result<Self> {
        tokio::task::spawn_blocking(move || Self::open_blocking(config))
            .await
            .map_err(|e| Error::Backend {
                backend: BACKEND,
                op: "open the database",
                source: e.into(),
            })?
    }

    fn open_blocking(config: SqliteConfig) -> Result<Self> {
        let path_text = config.path.display().to_string();
        create_private(&config.path)?;
        let conn = Connection::open(&config.path).map_err(open_error(&path_text))?;
        let sync = match config.synchronous {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        };
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA busy_timeout = 10000;"
        ))
        .map_err(open_error(&path_text))?;
        schema::ensure(&conn, &path_text).map_err(|e| in_file(e, &path_text))?;
        let revision = schema::meta(&conn, "revision")?;
        let window = Arc::new(EventWindow::new(revision, config.window));
        let writer = Writer::new(conn, window.clone(), config.max_batch.max(1))?;
        let (jobs, rx) = mpsc::channel(4096);
        let writer = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| Error::Backend {
                backend: BACKEND,
                op: "start the writer thread",
                source: e.into(),
            })?;
        info!(path = %path_text, revision, "sqlite datastore open");
        Ok(SqliteStore {
            jobs,
            writer: Some(writer),
            readers: Arc::new(ReadPool {
                path: config.path,
                idle: Mutex::new(Vec::new()),
                max_idle: config.read_connections,
            }),
            window,
            clock: config.clock,
        })
    }

    async fn write(&self, op: WriteOp) -> Result<Outcome> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Write(op, reply))
            .await
            .map_err(|_| writer_gone("write"))?;
        answer.await.map_err(|_| writer_gone("write"))?
    }
}

impl Drop for SqliteStore {
    /// Lets the writer finish what is queued, then waits for it to close the
    /// database, so the last commit is checkpointed before the process exits.
    fn drop(&mut self) {
        let (closed, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.jobs, closed));
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// Creates the database's directory (0700) and an empty database file (0600)
/// if they do not exist, so that nobody but the server's user can read what
/// the datastore will hold, Secrets included. SQLite creates the WAL and
/// shared-memory files with the database file's mode. Existing files keep
/// the mode their owner gave them.
fn create_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let failed = |what: &'static str, err: std::io::Error| Error::Unavailable {
        backend: BACKEND,
        op: what,
        source: format!("{}: {err}", path.display()).into(),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| failed("create the database directory", e))?;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(failed("create the database file", err)),
    }
}

fn writer_gone(op: &'static str) -> Error {
    Error::Unavailable {
        backend: BACKEND,
        op,
        source: "the writer thread has stopped".into(),
    }
}

/// Maps a rusqlite error: I/O trouble and locks are "unavailable" (retry may
/// help), everything else is a backend failure.
pub(crate) fn sql_error(op: &'static str) -> impl Fn(rusqlite::Error) -> Error {
    move |err| {
        use rusqlite::ErrorCode::*;
        let unavailable = matches!(
            err.sqlite_error_code(),
            Some(
                DatabaseBusy | DatabaseLocked | SystemIoFailure | DiskFull | CannotOpen | ReadOnly
            )
        );
        if unavailable {
            Error::Unavailable {
                backend: BACKEND,
                op,
                source: err.into(),
            }
        } else {
            Error::Backend {
                backend: BACKEND,
                op,
                source: err.into(),
            }
        }
    }
}

fn open_error(path: &str) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |err| in_file(sql_error("open the database")(err), path)
}

/// Names the file in an error about it, and says what to do about a file that
/// is not a database.
fn in_file(err: Error, path: &str) -> Error {
    match err {
        Error::Backend { op, source, .. } => {
            let hint = if source.to_string().contains("not a database") {
                ": the file is not a SQLite database; move it away or restore a snapshot"
            } else {
                ""
            };
            Error::Backend {
                backend: BACKEND,
                op,
                source: format!("{path}: {source}{hint}").into(),
            }
        }
        Error::Unavailable { op, source, .. } => Error::Unavailable {
            backend: BACKEND,
            op,
            source: format!("{path}: {source}").into(),
        },
        other => other,
    }
}

/// Read-only connections, opened on demand and kept for reuse.
#[derive(Debug)]
struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    max_idle: usize,
}

impl ReadPool {
    /// Runs `read` on a pooled connection, off the async runtime.
    async fn run<T, F>(self: &Arc<Self>, read: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let pool = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match pool.idle.lock().unwrap().pop() {
                Some(conn) => conn,
                None => open_reader(&pool.path)?,
            };
            let result = read(&conn);
            let mut idle = pool.idle.lock().unwrap();
            if idle.len() < pool.max_idle {
                idle.push(conn);
            }
            result
        })
        .await
        .map_err(|e| Error::Backend {
            backend: BACKEND,
            op: "read",
            source: e.into(),
        })?
    }
}

fn open_reader(path: &Path) -> Result<Connection> {
    let text = path.display().to_string();
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(open_error(&text))?;
    conn.execute_batch("PRAGMA query_only = ON; PRAGMA busy_timeout = 10000;")
        .map_err(open_error(&text))?;
    Ok(conn)
}

/// The history source watchers fall back to. It holds only the read pool, so
/// live watchers never keep the writer alive.
struct SqliteHistory(Arc<ReadPool>);

#[async_trait]
impl History for SqliteHistory {
    async fn read_history(&self, prefix: &str, from: Revision, max: i64) -> Result<HistoryPage> {
        let prefix = prefix.to_string();
        self.0
            .run(move |c| reader::history(c, &prefix, from, max))
            .await
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn current_revision(&self) -> Result<Revision> {
        // The window is appended right after each commit, before any caller
        // hears of it, so it is exactly the committed revision.
        Ok(self.window.latest())
    }

    async fn compact_revision(&self) -> Result<Revision> {
        self.readers
            .run(|c| schema::meta(c, "compact_revision"))
            .await
    }

    async fn create(&self, key: &str, value: Bytes, opts: WriteOptions) -> Result<KeyValue> {
        let op = WriteOp::create(key, value, opts, self.clock.as_ref())?;
        self.write(op).await?.into_put()
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_mod_revision: Revision,
        opts: WriteOptions,
    ) -> Result<KeyValue> {
        let op = WriteOp::update(key, value, expected_mod_revision, opts, self.clock.as_ref())?;
        self.write(op).await?.into_put()
    }

    async fn delete(&self, key: &str, expected_mod_revision: Option<Revision>) -> Result<Deleted> {
        let op = WriteOp::delete(key, expected_mod_revision)?;
        self.write(op).await?.into_deleted()
    }

    async fn get(&self, key: &str, revision: Option<Revision>) -> Result<Option<KeyValue>> {
        key::validate_key(key)?;
        let key = key.to_string();
        let revision = revision.filter(|r| *r > 0);
        self.readers
            .run(move |c| reader::get(c, &key, revision))
            .await
    }

    async fn list(&self, req: &ListRequest) -> Result<ListResponse> {
        let plan = ListPlan::new(req)?;
        let read_plan = plan.clone();
        let (revision, kvs) = self
            .readers
            .run(move |c| reader::list(c, &read_plan))
            .await?;
        Ok(plan.page(revision, kvs))
    }

    async fn count(&self, prefix: &str) -> Result<i64> {
        key::validate_prefix(prefix)?;
        let prefix = prefix.to_string();
        self.readers.run(move |c| reader::count(c, &prefix)).await
    }

    async fn watch(&self, prefix: &str, start_revision: Revision) -> Result<WatchStream> {
        key::validate_prefix(prefix)?;
        let start = if start_revision > 0 {
            let compacted = self.compact_revision().await?;
            if start_revision < compacted {
                return Err(Error::Compacted {
                    requested: start_revision,
                    compacted,
                });
            }
            start_revision
        } else {
            self.window.latest() + 1
        };
        let history = Arc::new(SqliteHistory(self.readers.clone()));
        Ok(watch::watch(
            self.window.clone(),
            history,
            prefix.to_string(),
            start,
        ))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Compact(revision, reply))
            .await
            .map_err(|_| writer_gone("compact"))?;
        answer.await.map_err(|_| writer_gone("compact"))?
    }

    async fn expire_keys(&self) -> Result<u64> {
        sql::expire_all(self.clock.now_unix_ms(), 500, |op| self.write(op)).await
    }

    async fn storage_stats(&self) -> Result<StorageStats> {
        self.readers
            .run(|c| {
                let read = |sql: &str| -> Result<i64> {
                    c.query_row(sql, [], |r| r.get(0))
                        .map_err(sql_error("read storage stats"))
                };
                let pages = read("PRAGMA page_count")? - read("PRAGMA freelist_count")?;
                Ok(StorageStats {
                    history_entries: Some(read("SELECT count(*) FROM log")? as u64),
                    bytes_in_use: (pages * read("PRAGMA page_size")?) as u64,
                })
            })
            .await
    }
}
