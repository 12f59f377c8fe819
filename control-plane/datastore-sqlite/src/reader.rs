//! Reads. Each runs on a connection of its own inside one read transaction, so
//! it sees one snapshot even while the writer commits.

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::schema::{KIND_CREATE, KIND_DELETE, KIND_UPDATE, meta};
use crate::sql_error;
use kedge_datastore::list::ListPlan;
use kedge_datastore::sql::Bounds;
use kedge_datastore::watch::HistoryPage;
use kedge_datastore::{Event, EventKind, KeyValue, Result, Revision, key};

/// The current and compacted revisions, read in the caller's snapshot.
pub fn bounds(conn: &Connection) -> Result<Bounds> {
    Ok(Bounds {
        current: meta(conn, "revision")?,
        compacted: meta(conn, "compact_revision")?,
    })
}

fn key_from(bytes: Vec<u8>) -> rusqlite::Result<String> {
    String::from_utf8(bytes).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, Box::new(e))
    })
}

/// Reads a `kv` row: key, value, create_revision, mod_revision.
fn kv_row(row: &Row<'_>) -> rusqlite::Result<KeyValue> {
    Ok(KeyValue {
        key: key_from(row.get(0)?)?,
        value: Bytes::from(row.get::<_, Vec<u8>>(1)?),
        create_revision: row.get(2)?,
        mod_revision: row.get(3)?,
    })
}

pub fn get(conn: &Connection, key: &str, revision: Option<Revision>) -> Result<Option<KeyValue>> {
    let tx = conn
        .unchecked_transaction()
        .map_err(sql_error("begin a read"))?;
    let found = match revision {
        None => tx
            .query_row(
                "SELECT key, value, create_revision, mod_revision FROM kv WHERE key = ?1",
                [key.as_bytes()],
                kv_row,
            )
            .optional(),
        Some(revision) => {
            bounds(&tx)?.check(revision)?;
            tx.query_row(
                "SELECT key, value, create_revision, revision, kind FROM log
                 WHERE key = ?1 AND revision <= ?2 ORDER BY revision DESC LIMIT 1",
                params![key.as_bytes(), revision],
                |row| {
                    let kind: i64 = row.get(4)?;
                    if kind == KIND_DELETE {
                        Ok(None)
                    } else {
                        kv_row(row).map(Some)
                    }
                },
            )
            .optional()
            .map(Option::flatten)
        }
    };
    found.map_err(sql_error("read a key"))
}

pub fn list(conn: &Connection, plan: &ListPlan) -> Result<(Revision, Vec<KeyValue>)> {
    let tx = conn
        .unchecked_transaction()
        .map_err(sql_error("begin a read"))?;
    let bounds = bounds(&tx)?;
    let revision = plan.revision.unwrap_or(bounds.current);
    bounds.check(revision)?;
    let end = end_key(plan.end_key.as_deref());
    let limit = plan.fetch_limit().map_or(-1, |l| l as i64);
    let rows = if revision == bounds.current {
        // The snapshot is the latest state: read the current table.
        let mut stmt = tx
            .prepare_cached(
                "SELECT key, value, create_revision, mod_revision FROM kv
                 WHERE key >= ?1 AND key < ?2 ORDER BY key LIMIT ?3",
            )
            .map_err(sql_error("list keys"))?;
        stmt.query_map(params![plan.start_key.as_bytes(), end, limit], kv_row)
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
    } else {
        // An older snapshot: the newest log row of each key at or before it.
        let mut stmt = tx
            .prepare_cached(
                "SELECT key, value, create_revision, revision FROM (
                     SELECT key, value, create_revision, revision, kind,
                            row_number() OVER (PARTITION BY key ORDER BY revision DESC) AS newest
                     FROM log WHERE key >= ?1 AND key < ?2 AND revision <= ?3
                 ) WHERE newest = 1 AND kind != ?4 ORDER BY key LIMIT ?5",
            )
            .map_err(sql_error("list keys"))?;
        stmt.query_map(
            params![plan.start_key.as_bytes(), end, revision, KIND_DELETE, limit],
            kv_row,
        )
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
    };
    Ok((revision, rows.map_err(sql_error("list keys"))?))
}

pub fn count(conn: &Connection, prefix: &str) -> Result<i64> {
    let end = key::prefix_end(prefix.as_bytes());
    conn.query_row(
        "SELECT count(*) FROM kv WHERE key >= ?1 AND key < ?2",
        params![prefix.as_bytes(), end_key(end.as_deref())],
        |r| r.get(0),
    )
    .map_err(sql_error("count keys"))
}

pub fn history(
    conn: &Connection,
    prefix: &str,
    from: Revision,
    max_revisions: i64,
) -> Result<HistoryPage> {
    let tx = conn
        .unchecked_transaction()
        .map_err(sql_error("begin a read"))?;
    let bounds = bounds(&tx)?;
    bounds.check_history(from)?;
    let upto = bounds.current.min(from + max_revisions - 1);
    let end = key::prefix_end(prefix.as_bytes());
    let mut stmt = tx
        .prepare_cached(
            "SELECT l.key, l.value, l.create_revision, l.revision, l.kind, l.prev_revision,
                    p.value, p.create_revision
             FROM log l LEFT JOIN log p ON p.revision = l.prev_revision
             WHERE l.revision >= ?1 AND l.revision <= ?2 AND l.key >= ?3 AND l.key < ?4
             ORDER BY l.revision",
        )
        .map_err(sql_error("read history"))?;
    let events = stmt
        .query_map(
            params![from, upto, prefix.as_bytes(), end_key(end.as_deref())],
            event_row,
        )
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(sql_error("read history"))?;
    Ok(HistoryPage {
        events,
        next: upto + 1,
    })
}

/// Builds an event from a `log` row joined with the row it replaced.
fn event_row(row: &Row<'_>) -> rusqlite::Result<Event> {
    let key = key_from(row.get(0)?)?;
    let revision: Revision = row.get(3)?;
    let kind: i64 = row.get(4)?;
    let prev_revision: Option<Revision> = row.get(5)?;
    let prev_kv = match (prev_revision, row.get::<_, Option<Vec<u8>>>(6)?) {
        (Some(mod_revision), Some(value)) => Some(KeyValue {
            key: key.clone(),
            value: Bytes::from(value),
            create_revision: row.get(7)?,
            mod_revision,
        }),
        _ => None,
    };
    let kind = match kind {
        KIND_CREATE => EventKind::Create,
        KIND_UPDATE => EventKind::Update,
        KIND_DELETE => {
            let prev =
                prev_kv.ok_or_else(|| corrupt(revision, "a delete without its previous value"))?;
            return Ok(Event::deleted(prev, revision));
        }
        _ => return Err(corrupt(revision, "an unknown kind")),
    };
    if kind == EventKind::Update && prev_kv.is_none() {
        return Err(corrupt(revision, "an update without its previous value"));
    }
    Ok(Event {
        kind,
        kv: KeyValue {
            key,
            value: Bytes::from(row.get::<_, Option<Vec<u8>>>(1)?.unwrap_or_default()),
            create_revision: row.get(2)?,
            mod_revision: revision,
        },
        prev_kv,
    })
}

fn corrupt(revision: Revision, what: &str) -> rusqlite::Error {
    rusqlite::Error::InvalidColumnType(
        0,
        format!("log row {revision} is {what}"),
        rusqlite::types::Type::Null,
    )
}

/// Keys all start with '/', so a prefix always has an end; 0xff bounds them all.
fn end_key(end: Option<&[u8]>) -> &[u8] {
    end.unwrap_or(b"\xff")
}
