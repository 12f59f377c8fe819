//! The one writer. SQLite takes one write transaction at a time anyway, so all
//! writes go through a single thread that owns the write connection.
//!
//! Group commit: the thread takes every write that is waiting (up to
//! `max_batch`), applies them one after another in one transaction, each inside
//! a savepoint, and commits once. Each successful write gets the next revision,
//! so revisions follow commit order and the history stays dense. Only after the
//! commit are the events appended to the window and the callers answered; if
//! the commit fails, every write of the batch fails and nothing is visible.
//!
//! Compaction runs on this thread too, in short transactions between batches,
//! so it never holds writers up for long.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info_span};

use crate::schema::{KIND_CREATE, KIND_DELETE, KIND_UPDATE, meta};
use crate::sql_error;
use kedge_datastore::sql::{self, Outcome, WriteOp};
use kedge_datastore::watch::EventWindow;
use kedge_datastore::{Deleted, Error, Event, EventKind, KeyValue, Result, Revision};

/// Revisions of history examined per compaction transaction.
const COMPACT_CHUNK: Revision = 5000;

pub enum Job {
    Write(WriteOp, oneshot::Sender<Result<Outcome>>),
    Compact(Revision, oneshot::Sender<Result<()>>),
}

/// A compaction under way: rows below `target` are examined from `cursor` up.
struct Compaction {
    target: Revision,
    cursor: Revision,
    reply: oneshot::Sender<Result<()>>,
}

pub struct Writer {
    conn: Connection,
    window: Arc<EventWindow>,
    /// The newest committed revision.
    revision: Revision,
    max_batch: usize,
    queue: VecDeque<Job>,
    compactions: VecDeque<Compaction>,
}

impl Writer {
    pub fn new(conn: Connection, window: Arc<EventWindow>, max_batch: usize) -> Result<Self> {
        let revision = meta(&conn, "revision")?;
        Ok(Writer {
            conn,
            window,
            revision,
            max_batch,
            queue: VecDeque::new(),
            compactions: VecDeque::new(),
        })
    }

    /// Runs until every sender is gone, then closes the window.
    pub fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        loop {
            if self.queue.is_empty() && self.compactions.is_empty() {
                match jobs.blocking_recv() {
                    Some(job) => self.queue.push_back(job),
                    None => break,
                }
            }
            while let Ok(job) = jobs.try_recv() {
                self.queue.push_back(job);
            }
            self.write_batch();
            self.compact_step();
        }
        self.window.close();
    }

    fn write_batch(&mut self) {
        let mut batch = Vec::new();
        while batch.len() < self.max_batch {
            match self.queue.pop_front() {
                Some(Job::Write(op, reply)) => batch.push((op, reply)),
                Some(Job::Compact(target, reply)) => self.start_compaction(target, reply),
                None => break,
            }
        }
        if batch.is_empty() {
            return;
        }
        let _span = info_span!("sqlite_commit", writes = batch.len()).entered();
        match self.commit(&batch) {
            Ok((results, events)) => {
                self.revision = events.last().map_or(self.revision, Event::revision);
                if let Err(gap) = self.window.append(events) {
                    // Cannot happen while this thread is the only writer; if it
                    // does, watchers re-read from the database.
                    error!(error = %gap, "event window out of sequence; resetting it");
                    self.window.reset(self.revision);
                }
                for ((_, reply), result) in batch.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(err) => {
                // Nothing of the batch is committed. Every write fails, also those
                // whose precondition failed: they saw state that never existed.
                debug!(error = %err, "batch failed");
                for (_, reply) in batch {
                    let _ = reply.send(Err(sql::batch_error(&err, "sqlite")));
                }
            }
        }
    }

    /// Applies a batch in one transaction. Returns each write's result and the
    /// events of those that succeeded, in revision order.
    fn commit(
        &mut self,
        batch: &[(WriteOp, oneshot::Sender<Result<Outcome>>)],
    ) -> Result<(Vec<Result<Outcome>>, Vec<Event>)> {
        let mut tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sql_error("begin a write"))?;
        let mut next = self.revision + 1;
        let mut results = Vec::with_capacity(batch.len());
        let mut events = Vec::with_capacity(batch.len());
        for (op, _) in batch {
            let sp = tx.savepoint().map_err(sql_error("begin a write"))?;
            let result = apply(&sp, op, next);
            match result {
                Ok((outcome, new_events)) => {
                    sp.commit().map_err(sql_error("write"))?;
                    next += new_events.len() as Revision;
                    events.extend(new_events);
                    results.push(Ok(outcome));
                }
                Err(err) => {
                    drop(sp); // rolls back whatever the write did
                    results.push(Err(err));
                }
            }
        }
        if !events.is_empty() {
            tx.execute(
                "UPDATE meta SET value = ?1 WHERE name = 'revision'",
                [next - 1],
            )
            .map_err(sql_error("write"))?;
        }
        tx.commit().map_err(sql_error("commit"))?;
        Ok((results, events))
    }

    fn start_compaction(&mut self, target: Revision, reply: oneshot::Sender<Result<()>>) {
        let started = (|| -> Result<Option<Revision>> {
            if target > self.revision {
                return Err(Error::FutureRevision {
                    requested: target,
                    current: self.revision,
                });
            }
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(sql_error("begin compaction"))?;
            if target <= meta(&tx, "compact_revision")? {
                return Ok(None);
            }
            // Readers refuse older revisions from this commit on, before any row goes.
            tx.execute(
                "UPDATE meta SET value = ?1 WHERE name = 'compact_revision'",
                [target],
            )
            .map_err(sql_error("compact"))?;
            let oldest: Option<Revision> = tx
                .query_row("SELECT min(revision) FROM log", [], |r| r.get(0))
                .map_err(sql_error("compact"))?;
            tx.commit().map_err(sql_error("compact"))?;
            Ok(Some(oldest.unwrap_or(target)))
        })();
        match started {
            Ok(Some(cursor)) => self.compactions.push_back(Compaction {
                target,
                cursor,
                reply,
            }),
            Ok(None) => {
                let _ = reply.send(Ok(()));
            }
            Err(err) => {
                let _ = reply.send(Err(err));
            }
        }
    }

    /// Deletes one chunk of compacted history.
    fn compact_step(&mut self) {
        let Some(job) = self.compactions.front_mut() else {
            return;
        };
        let hi = (job.cursor + COMPACT_CHUNK).min(job.target);
        // A row below the target goes if it is a tombstone, or if a newer row of
        // the same key below the target replaced it. What stays is, per key, the
        // newest row below the target that is not a tombstone: exactly what reads
        // at the target and later, and the events after it, still need.
        let deleted = self
            .conn
            .execute(
                "DELETE FROM log WHERE revision >= ?1 AND revision < ?2 AND (kind = ?3 OR EXISTS (
                     SELECT 1 FROM log newer WHERE newer.key = log.key
                     AND newer.revision > log.revision AND newer.revision < ?4))",
                params![job.cursor, hi, KIND_DELETE, job.target],
            )
            .map_err(sql_error("compact"));
        match deleted {
            Ok(n) => {
                debug!(from = job.cursor, to = hi, deleted = n, "compacted a chunk");
                job.cursor = hi;
                if hi >= job.target {
                    let job = self.compactions.pop_front().expect("front exists");
                    let _ = job.reply.send(Ok(()));
                }
            }
            Err(err) => {
                let job = self.compactions.pop_front().expect("front exists");
                let _ = job.reply.send(Err(err));
            }
        }
    }
}

/// Applies one write at revision `rev`. Expiry can use several revisions.
fn apply(tx: &Connection, op: &WriteOp, rev: Revision) -> Result<(Outcome, Vec<Event>)> {
    match op {
        WriteOp::Create {
            key,
            value,
            expires_at,
        } => {
            let inserted = tx
                .execute(
                    "INSERT INTO kv (key, value, create_revision, mod_revision, expires_at)
                     VALUES (?1, ?2, ?3, ?3, ?4) ON CONFLICT (key) DO NOTHING",
                    params![key.as_bytes(), value.as_ref(), rev, expires_at],
                )
                .map_err(sql_error("create"))?;
            if inserted == 0 {
                return Err(Error::AlreadyExists { key: key.clone() });
            }
            log(tx, rev, key, KIND_CREATE, Some(value), rev, None)?;
            let kv = KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: rev,
                mod_revision: rev,
            };
            let event = Event {
                kind: EventKind::Create,
                kv: kv.clone(),
                prev_kv: None,
            };
            Ok((Outcome::Put(kv), vec![event]))
        }
        WriteOp::Update {
            key,
            value,
            expected,
            expires_at,
        } => {
            let current =
                read_current(tx, key)?.ok_or_else(|| Error::NotFound { key: key.clone() })?;
            if current.mod_revision != *expected {
                return Err(Error::Conflict {
                    key: key.clone(),
                    expected: *expected,
                    current: Box::new(current),
                });
            }
            tx.execute(
                "UPDATE kv SET value = ?2, mod_revision = ?3, expires_at = ?4 WHERE key = ?1",
                params![key.as_bytes(), value.as_ref(), rev, expires_at],
            )
            .map_err(sql_error("update"))?;
            log(
                tx,
                rev,
                key,
                KIND_UPDATE,
                Some(value),
                current.create_revision,
                Some(current.mod_revision),
            )?;
            let kv = KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: current.create_revision,
                mod_revision: rev,
            };
            let event = Event {
                kind: EventKind::Update,
                kv: kv.clone(),
                prev_kv: Some(current),
            };
            Ok((Outcome::Put(kv), vec![event]))
        }
        WriteOp::Delete { key, expected } => {
            let current =
                read_current(tx, key)?.ok_or_else(|| Error::NotFound { key: key.clone() })?;
            if let Some(expected) = expected.filter(|e| *e != current.mod_revision) {
                return Err(Error::Conflict {
                    key: key.clone(),
                    expected,
                    current: Box::new(current),
                });
            }
            let event = delete(tx, current, rev)?;
            let deleted = Deleted {
                revision: rev,
                prev_kv: event
                    .prev_kv
                    .clone()
                    .expect("a delete has its previous value"),
            };
            Ok((Outcome::Deleted(deleted), vec![event]))
        }
        WriteOp::Expire { now, limit } => {
            let expired = {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT key, value, create_revision, mod_revision FROM kv
                         WHERE expires_at <= ?1 ORDER BY expires_at, key LIMIT ?2",
                    )
                    .map_err(sql_error("expire keys"))?;
                stmt.query_map(params![now, *limit as i64], |row| {
                    Ok(KeyValue {
                        key: String::from_utf8_lossy(&row.get::<_, Vec<u8>>(0)?).into_owned(),
                        value: Bytes::from(row.get::<_, Vec<u8>>(1)?),
                        create_revision: row.get(2)?,
                        mod_revision: row.get(3)?,
                    })
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(sql_error("expire keys"))?
            };
            let mut events = Vec::with_capacity(expired.len());
            for (i, kv) in expired.into_iter().enumerate() {
                events.push(delete(tx, kv, rev + i as Revision)?);
            }
            Ok((Outcome::Expired(events.len() as u64), events))
        }
    }
}

fn read_current(tx: &Connection, key: &str) -> Result<Option<KeyValue>> {
    tx.query_row(
        "SELECT value, create_revision, mod_revision FROM kv WHERE key = ?1",
        [key.as_bytes()],
        |row| {
            Ok(KeyValue {
                key: key.to_string(),
                value: Bytes::from(row.get::<_, Vec<u8>>(0)?),
                create_revision: row.get(1)?,
                mod_revision: row.get(2)?,
            })
        },
    )
    .optional()
    .map_err(sql_error("read a key"))
}

fn delete(tx: &Connection, current: KeyValue, rev: Revision) -> Result<Event> {
    tx.execute("DELETE FROM kv WHERE key = ?1", [current.key.as_bytes()])
        .map_err(sql_error("delete"))?;
    log(
        tx,
        rev,
        &current.key,
        KIND_DELETE,
        None,
        current.create_revision,
        Some(current.mod_revision),
    )?;
    Ok(Event::deleted(current, rev))
}

fn log(
    tx: &Connection,
    rev: Revision,
    key: &str,
    kind: i64,
    value: Option<&Bytes>,
    create_revision: Revision,
    prev_revision: Option<Revision>,
) -> Result<()> {
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO log (revision, key, kind, value, create_revision, prev_revision)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .map_err(sql_error("write history"))?;
    stmt.execute(params![
        rev,
        key.as_bytes(),
        kind,
        value.map(|v| v.as_ref()),
        create_revision,
        prev_revision
    ])
    .map_err(sql_error("write history"))?;
    Ok(())
}
