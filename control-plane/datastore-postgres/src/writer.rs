//! The writer of one store instance: a task with its own connection that
//! commits waiting writes in groups.
//!
//! A batch is one transaction: lock the revision row, apply each write with
//! the next free revision (a failed precondition writes nothing and takes no
//! revision), store the new revision, notify, commit. Writers of other
//! instances wait on the revision row, so batches from all servers commit one
//! after another and their revisions never interleave.
//!
//! If a statement fails for a reason other than a lost connection, the batch
//! is rolled back and each write is retried alone, so one bad write cannot
//! fail its neighbours.

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, Postgres, Row, Transaction};
use std::sync::Arc;

use tokio::sync::{Notify, mpsc, oneshot};
use tracing::{Instrument, debug, info_span};

use crate::reader::kv_row;
use crate::schema::{CHANNEL, KIND_CREATE, KIND_DELETE, KIND_UPDATE};
use crate::{BACKEND, db_error};
use kedge_datastore::sql::{self, Outcome, WriteOp};
use kedge_datastore::{Deleted, Error, KeyValue, Result, Revision};

pub type Job = (WriteOp, oneshot::Sender<Result<Outcome>>);

pub struct Writer {
    options: PgConnectOptions,
    /// Wakes this server's tailer after a commit.
    committed: Arc<Notify>,
    conn: Option<PgConnection>,
    max_batch: usize,
}

impl Writer {
    pub fn new(options: PgConnectOptions, committed: Arc<Notify>, max_batch: usize) -> Self {
        Writer {
            options,
            committed,
            conn: None,
            max_batch,
        }
    }

    pub async fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        let mut batch = Vec::new();
        while jobs.recv_many(&mut batch, self.max_batch).await > 0 {
            let span = info_span!("postgres_commit", writes = batch.len());
            self.write_batch(std::mem::take(&mut batch))
                .instrument(span)
                .await;
        }
    }

    async fn write_batch(&mut self, batch: Vec<Job>) {
        let ops: Vec<&WriteOp> = batch.iter().map(|(op, _)| op).collect();
        let results = match self.commit(&ops).await {
            Ok(results) => {
                self.committed.notify_one();
                results
            }
            Err(err) if err.is_unavailable() => {
                // The connection is gone or going; start afresh next time.
                self.conn = None;
                ops.iter()
                    .map(|_| Err(sql::batch_error(&err, BACKEND)))
                    .collect()
            }
            Err(err) if ops.len() > 1 => {
                debug!(error = %err, "batch failed; retrying its writes one by one");
                let mut results = Vec::with_capacity(ops.len());
                for op in &ops {
                    results.push(match self.commit(&[op]).await {
                        Ok(mut one) => one.pop().expect("one result per write"),
                        Err(err) => Err(err),
                    });
                }
                self.committed.notify_one();
                results
            }
            Err(err) => vec![Err(err)],
        };
        for ((_, reply), result) in batch.into_iter().zip(results) {
            let _ = reply.send(result);
        }
    }

    async fn connection(&mut self) -> Result<&mut PgConnection> {
        if self.conn.is_none() {
            let conn = PgConnection::connect_with(&self.options)
                .await
                .map_err(db_error("connect the writer"))?;
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("just connected"))
    }

    /// Applies `ops` in one transaction. Returns one result per write when the
    /// transaction committed; an error when nothing of it did.
    async fn commit(&mut self, ops: &[&WriteOp]) -> Result<Vec<Result<Outcome>>> {
        let conn = self.connection().await?;
        let mut tx = conn.begin().await.map_err(db_error("begin a write"))?;
        let start: Revision =
            sqlx::query_scalar("SELECT value FROM kedge_meta WHERE name = 'revision' FOR UPDATE")
                .fetch_one(&mut *tx)
                .await
                .map_err(db_error("lock the revision"))?;
        let mut next = start + 1;
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            let result = apply(&mut tx, op, next).await;
            match result {
                Ok((outcome, used)) => {
                    next += used;
                    results.push(Ok(outcome));
                }
                Err(err @ (Error::Unavailable { .. } | Error::Backend { .. })) => return Err(err),
                Err(precondition) => results.push(Err(precondition)),
            }
        }
        if next > start + 1 {
            // Store the revision and tell the other servers, in one round trip.
            sqlx::query(
                "WITH stored AS (UPDATE kedge_meta SET value = $1 WHERE name = 'revision')
                 SELECT pg_notify($2, $1::text)",
            )
            .bind(next - 1)
            .bind(CHANNEL)
            .execute(&mut *tx)
            .await
            .map_err(db_error("store the revision"))?;
        }
        tx.commit().await.map_err(db_error("commit"))?;
        Ok(results)
    }
}

/// Applies one write at revision `rev`; returns its outcome and how many
/// revisions it used.
async fn apply(
    tx: &mut Transaction<'_, Postgres>,
    op: &WriteOp,
    rev: Revision,
) -> Result<(Outcome, i64)> {
    match op {
        WriteOp::Create {
            key,
            value,
            expires_at,
        } => {
            let created = sqlx::query(
                "WITH ins AS (
                     INSERT INTO kedge_kv (key, value, create_revision, mod_revision, expires_at)
                     VALUES ($1, $2, $3, $3, $4) ON CONFLICT (key) DO NOTHING
                     RETURNING key, value)
                 INSERT INTO kedge_log (revision, key, kind, value, create_revision, prev_revision)
                 SELECT $3, key, $5, value, $3, NULL FROM ins
                 RETURNING revision",
            )
            .bind(key.as_bytes())
            .bind(value.as_ref())
            .bind(rev)
            .bind(expires_at)
            .bind(KIND_CREATE)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db_error("create"))?;
            if created.is_none() {
                return Err(Error::AlreadyExists { key: key.clone() });
            }
            let kv = KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: rev,
                mod_revision: rev,
            };
            Ok((Outcome::Put(kv), 1))
        }
        WriteOp::Update {
            key,
            value,
            expected,
            expires_at,
        } => {
            let row = sqlx::query(
                "WITH old AS (
                     SELECT key, value, create_revision, mod_revision FROM kedge_kv WHERE key = $1),
                 upd AS (
                     UPDATE kedge_kv k SET value = $2, mod_revision = $3, expires_at = $4
                     FROM old WHERE k.key = old.key AND old.mod_revision = $5
                     RETURNING k.create_revision),
                 ins AS (
                     INSERT INTO kedge_log (revision, key, kind, value, create_revision, prev_revision)
                     SELECT $3, $1, $6, $2, create_revision, $5 FROM upd)
                 SELECT old.key, old.value, old.create_revision, old.mod_revision,
                        EXISTS (SELECT 1 FROM upd) AS updated
                 FROM old",
            )
            .bind(key.as_bytes())
            .bind(value.as_ref())
            .bind(rev)
            .bind(expires_at)
            .bind(expected)
            .bind(KIND_UPDATE)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db_error("update"))?
            .ok_or_else(|| Error::NotFound { key: key.clone() })?;
            let current = kv_row(&row)?;
            if !row.try_get::<bool, _>(4).map_err(db_error("update"))? {
                return Err(Error::Conflict {
                    key: key.clone(),
                    expected: *expected,
                    current: Box::new(current),
                });
            }
            let kv = KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: current.create_revision,
                mod_revision: rev,
            };
            Ok((Outcome::Put(kv), 1))
        }
        WriteOp::Delete { key, expected } => {
            let prev_kv = delete(tx, key, *expected, rev).await?;
            Ok((
                Outcome::Deleted(Deleted {
                    revision: rev,
                    prev_kv,
                }),
                1,
            ))
        }
        WriteOp::Expire { now, limit } => {
            let expired: Vec<(Vec<u8>, Revision)> = sqlx::query_as(
                "SELECT key, mod_revision FROM kedge_kv WHERE expires_at <= $1
                 ORDER BY expires_at, key LIMIT $2",
            )
            .bind(now)
            .bind(*limit as i64)
            .fetch_all(&mut **tx)
            .await
            .map_err(db_error("expire keys"))?;
            let mut used = 0;
            for (key, mod_revision) in expired {
                let key = crate::reader::key_from(key)?;
                delete(tx, &key, Some(mod_revision), rev + used).await?;
                used += 1;
            }
            Ok((Outcome::Expired(used as u64), used))
        }
    }
}

async fn delete(
    tx: &mut Transaction<'_, Postgres>,
    key: &str,
    expected: Option<Revision>,
    rev: Revision,
) -> Result<KeyValue> {
    let row = sqlx::query(
        "WITH old AS (
             SELECT key, value, create_revision, mod_revision FROM kedge_kv WHERE key = $1),
         del AS (
             DELETE FROM kedge_kv k USING old
             WHERE k.key = old.key AND ($3::BIGINT IS NULL OR old.mod_revision = $3)
             RETURNING k.key),
         ins AS (
             INSERT INTO kedge_log (revision, key, kind, value, create_revision, prev_revision)
             SELECT $2, old.key, $4, NULL, old.create_revision, old.mod_revision
             FROM old WHERE EXISTS (SELECT 1 FROM del))
         SELECT old.key, old.value, old.create_revision, old.mod_revision,
                EXISTS (SELECT 1 FROM del) AS deleted
         FROM old",
    )
    .bind(key.as_bytes())
    .bind(rev)
    .bind(expected)
    .bind(KIND_DELETE)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db_error("delete"))?
    .ok_or_else(|| Error::NotFound {
        key: key.to_string(),
    })?;
    let current = kv_row(&row)?;
    if !row.try_get::<bool, _>(4).map_err(db_error("delete"))? {
        return Err(Error::Conflict {
            key: key.to_string(),
            expected: expected.unwrap_or_default(),
            current: Box::new(current),
        });
    }
    Ok(current)
}
