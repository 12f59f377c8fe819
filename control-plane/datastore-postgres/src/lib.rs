//! kedge-datastore-postgres: the datastore on PostgreSQL, for several
//! `kedge server`s sharing one database.
//!
//! One history across servers, by design. kine hands out revisions from a
//! sequence, so a row with revision 7 can commit before the row with revision
//! 6; a reader that saw 7 must then wait and guess whether 6 is coming, and
//! kine polls and fills gaps. Here the revision comes from a single row,
//! `kedge_meta('revision')`, which every writing transaction locks `FOR UPDATE`
//! and holds until it commits. Revision N+1 can only be handed out after the
//! transaction holding N has committed (or rolled back and given N back). So
//! the history is dense and commit-ordered: any snapshot that shows revision
//! N shows every revision before it.
//!
//! The cost is that commits from all servers are serial. Each instance makes
//! up for it with group commit ([`writer`]): it takes every write waiting and
//! commits them in one transaction, one fsync for the lot.
//!
//! Each instance runs a [`tailer`] that follows the history into an in-memory
//! event window, through which its watchers see every server's writes.
//!
//! Depends on sqlx (Postgres only) and `kedge-datastore`, nothing else of kedge's.

mod reader;
mod schema;
mod tailer;
mod writer;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::info;

use kedge_datastore::list::ListPlan;
use kedge_datastore::watch::{self, EventWindow, History, HistoryPage, WindowLimits};
use kedge_datastore::{
    Clock, Deleted, Error, KeyValue, ListRequest, ListResponse, Result, Revision, StorageStats,
    Store, SystemClock, WatchStream, WriteOptions, key,
};

use kedge_datastore::sql::{self, Outcome, WriteOp};
use writer::Writer;

const BACKEND: &str = "postgres";

/// Compacted history is deleted this many revisions per transaction.
const COMPACT_CHUNK: Revision = 10_000;

#[derive(Clone, Debug)]
pub struct PostgresConfig {
    /// A libpq-style URL: `postgres://user:password@host:port/database?sslmode=…`.
    pub url: String,
    /// The clock TTLs are measured against.
    pub clock: Arc<dyn Clock>,
    pub window: WindowLimits,
    /// The most writes committed in one transaction.
    pub max_batch: usize,
    /// Connections for reads, the tailer and compaction. The writer has its own.
    pub pool_size: u32,
    /// How long to wait for a connection before calling the database unavailable.
    pub connect_timeout: Duration,
    /// How often the tailer polls when no notification arrives.
    pub poll_interval: Duration,
    /// Listen for other servers' NOTIFY. Turn it off behind a pooler that does
    /// not pass LISTEN through (PgBouncer in transaction mode); other servers'
    /// writes then reach this server's watchers within `poll_interval`.
    pub notifications: bool,
}

impl PostgresConfig {
    pub fn new(url: impl Into<String>) -> Self {
        PostgresConfig {
            url: url.into(),
            clock: Arc::new(SystemClock),
            window: WindowLimits::default(),
            max_batch: 256,
            pool_size: 8,
            connect_timeout: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
            notifications: true,
        }
    }
}

/// One store instance: what one `kedge server` holds.
#[derive(Debug)]
pub struct PostgresStore {
    jobs: mpsc::Sender<writer::Job>,
    pool: PgPool,
    window: Arc<EventWindow>,
    clock: Arc<dyn Clock>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        self.window.close();
    }
}

/// Maps a sqlx error. Lost connections, timeouts, a server shutting down or
/// out of resources are "unavailable"; everything else is a backend failure.
pub(crate) fn db_error(op: &'static str) -> impl Fn(sqlx::Error) -> Error {
    move |err| {
        let unavailable = match &err {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(db) => db.code().is_some_and(|code| {
                // 08: connection exception; 53: insufficient resources;
                // 57P01-57P03: admin shutdown, crash shutdown, cannot connect now.
                code.starts_with("08") || code.starts_with("53") || code.starts_with("57P")
            }),
            _ => false,
        };
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

impl PostgresStore {
    /// Connects, creates the tables if needed, and starts the writer and the tailer.
    pub async fn connect(config: PostgresConfig) -> Result<Self> {
        let options = PgConnectOptions::from_str(&config.url)
            .map_err(|e| Error::Backend {
                backend: BACKEND,
                op: "parse the datastore endpoint",
                source: e.into(),
            })?
            .log_statements(tracing::log::LevelFilter::Trace);
        // The pool pings a connection before lending it out (sqlx's default):
        // a round trip per read, paid so that after PostgreSQL restarts, dead
        // pooled connections are replaced instead of failing callers' reads.
        let pool = PgPoolOptions::new()
            .max_connections(config.pool_size.max(2))
            .acquire_timeout(config.connect_timeout)
            .connect_with(options.clone())
            .await
            .map_err(db_error("connect"))?;
        let mut conn = pool.acquire().await.map_err(db_error("connect"))?;
        schema::ensure(&mut conn).await?;
        let revision = schema::meta(&mut *conn, "revision").await?;
        drop(conn);

        let window = Arc::new(EventWindow::new(revision, config.window));
        let (jobs, rx) = mpsc::channel(4096);
        // Wakes the tailer: this server's writer after each commit, and the relay
        // on every other server's NOTIFY.
        let wake = Arc::new(tokio::sync::Notify::new());
        let writer = Writer::new(options, wake.clone(), config.max_batch.max(1));
        let mut tasks = vec![
            tokio::spawn(writer.run(rx)),
            tokio::spawn(tailer::run(
                pool.clone(),
                window.clone(),
                wake.clone(),
                config.poll_interval,
            )),
        ];
        if config.notifications {
            tasks.push(tokio::spawn(tailer::relay_notifications(
                pool.clone(),
                wake,
                Duration::from_secs(1),
            )));
        }
        info!(revision, "postgres datastore connected");
        Ok(PostgresStore {
            jobs,
            pool,
            window,
            clock: config.clock,
            tasks,
        })
    }

    async fn write(&self, op: WriteOp) -> Result<Outcome> {
        let gone = || Error::Unavailable {
            backend: BACKEND,
            op: "write",
            source: "the writer task has stopped".into(),
        };
        let (reply, answer) = oneshot::channel();
        self.jobs.send((op, reply)).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// Marks history before `target` compacted. Returns the oldest revision
    /// left in the log, where deleting starts, or `None` if there is nothing to do.
    async fn begin_compaction(&self, target: Revision) -> Result<Option<Revision>> {
        let mut tx = self.pool.begin().await.map_err(db_error("compact"))?;
        let compacted: Revision = sqlx::query_scalar(
            "SELECT value FROM kedge_meta WHERE name = 'compact_revision' FOR UPDATE",
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error("compact"))?;
        if target <= compacted {
            return Ok(None);
        }
        let current = schema::meta(&mut *tx, "revision").await?;
        if target > current {
            return Err(Error::FutureRevision {
                requested: target,
                current,
            });
        }
        sqlx::query("UPDATE kedge_meta SET value = $1 WHERE name = 'compact_revision'")
            .bind(target)
            .execute(&mut *tx)
            .await
            .map_err(db_error("compact"))?;
        let oldest: Option<Revision> = sqlx::query_scalar("SELECT min(revision) FROM kedge_log")
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error("compact"))?;
        tx.commit().await.map_err(db_error("compact"))?;
        Ok(Some(oldest.unwrap_or(target)))
    }
}

struct PostgresHistory(PgPool);

#[async_trait]
impl History for PostgresHistory {
    async fn read_history(&self, prefix: &str, from: Revision, max: i64) -> Result<HistoryPage> {
        reader::history(&self.0, prefix, from, max).await
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn current_revision(&self) -> Result<Revision> {
        schema::meta(&self.pool, "revision").await
    }

    async fn compact_revision(&self) -> Result<Revision> {
        schema::meta(&self.pool, "compact_revision").await
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
        reader::get(&self.pool, key, revision.filter(|r| *r > 0)).await
    }

    async fn list(&self, req: &ListRequest) -> Result<ListResponse> {
        let plan = ListPlan::new(req)?;
        let (revision, kvs) = reader::list(&self.pool, &plan).await?;
        Ok(plan.page(revision, kvs))
    }

    async fn count(&self, prefix: &str) -> Result<i64> {
        key::validate_prefix(prefix)?;
        reader::count(&self.pool, prefix).await
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
            // "From now" is after the newest commit of any server, which the
            // window may not have caught up with yet.
            self.current_revision().await? + 1
        };
        let history = Arc::new(PostgresHistory(self.pool.clone()));
        Ok(watch::watch(
            self.window.clone(),
            history,
            prefix.to_string(),
            start,
        ))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let Some(mut cursor) = self.begin_compaction(revision).await? else {
            return Ok(());
        };
        // Readers refuse revisions before the target from now on; delete what
        // they can no longer reach, a chunk per transaction. A row below the
        // target goes if it is a tombstone, or if a newer row of the same key
        // below the target replaced it.
        while cursor < revision {
            let hi = (cursor + COMPACT_CHUNK).min(revision);
            sqlx::query(
                "DELETE FROM kedge_log l WHERE l.revision >= $1 AND l.revision < $2
                 AND (l.kind = $3 OR EXISTS (
                     SELECT 1 FROM kedge_log newer WHERE newer.key = l.key
                     AND newer.revision > l.revision AND newer.revision < $4))",
            )
            .bind(cursor)
            .bind(hi)
            .bind(schema::KIND_DELETE)
            .bind(revision)
            .execute(&self.pool)
            .await
            .map_err(db_error("compact"))?;
            cursor = hi;
        }
        // Make the dead rows' space reusable now rather than whenever autovacuum
        // comes by, so the table stays the size of what it holds.
        if let Err(err) = sqlx::query("VACUUM kedge_log").execute(&self.pool).await {
            tracing::warn!(error = %err, "vacuum after compaction failed");
        }
        Ok(())
    }

    async fn expire_keys(&self) -> Result<u64> {
        sql::expire_all(self.clock.now_unix_ms(), 500, |op| self.write(op)).await
    }

    async fn storage_stats(&self) -> Result<StorageStats> {
        let (entries, bytes): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM kedge_log),
                    pg_total_relation_size('kedge_log') + pg_total_relation_size('kedge_kv')",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db_error("read storage stats"))?;
        Ok(StorageStats {
            history_entries: Some(entries as u64),
            bytes_in_use: bytes as u64,
        })
    }
}
