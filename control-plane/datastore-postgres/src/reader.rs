//! Reads. Those that need more than one statement run in a REPEATABLE READ,
//! READ ONLY transaction, so the revision bounds and the rows come from one
//! snapshot.

use bytes::Bytes;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, Row, Transaction};

use crate::schema::{KIND_CREATE, KIND_DELETE, KIND_UPDATE};
use crate::{BACKEND, db_error};
use kedge_datastore::list::ListPlan;
use kedge_datastore::sql::Bounds;
use kedge_datastore::watch::HistoryPage;
use kedge_datastore::{Error, Event, EventKind, KeyValue, Result, Revision, key};

pub async fn snapshot(pool: &PgPool) -> Result<Transaction<'static, Postgres>> {
    pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await
        .map_err(db_error("begin a read"))
}

/// The current and compacted revisions, in one round trip, in the caller's
/// snapshot.
pub async fn bounds<'c, E>(conn: E) -> Result<Bounds>
where
    E: sqlx::Executor<'c, Database = sqlx::Postgres>,
{
    let (current, compacted) = sqlx::query_as(
        "SELECT (SELECT value FROM kedge_meta WHERE name = 'revision'),
                (SELECT value FROM kedge_meta WHERE name = 'compact_revision')",
    )
    .fetch_one(conn)
    .await
    .map_err(db_error("read the store's revision"))?;
    Ok(Bounds { current, compacted })
}

pub fn corrupt(what: String) -> Error {
    Error::Backend {
        backend: BACKEND,
        op: "decode a row",
        source: what.into(),
    }
}

pub fn key_from(bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| corrupt(format!("a key is not UTF-8: {e}")))
}

/// Decodes columns key, value, create_revision, mod_revision.
pub fn kv_row(row: &PgRow) -> Result<KeyValue> {
    let get = db_error("decode a row");
    Ok(KeyValue {
        key: key_from(row.try_get(0).map_err(&get)?)?,
        value: Bytes::from(row.try_get::<Vec<u8>, _>(1).map_err(&get)?),
        create_revision: row.try_get(2).map_err(&get)?,
        mod_revision: row.try_get(3).map_err(&get)?,
    })
}

fn end_key(prefix_end: Option<Vec<u8>>) -> Vec<u8> {
    prefix_end.unwrap_or_else(|| vec![0xff])
}

pub async fn get(pool: &PgPool, key: &str, revision: Option<Revision>) -> Result<Option<KeyValue>> {
    let Some(revision) = revision else {
        let row = sqlx::query(
            "SELECT key, value, create_revision, mod_revision FROM kedge_kv WHERE key = $1",
        )
        .bind(key.as_bytes())
        .fetch_optional(pool)
        .await
        .map_err(db_error("read a key"))?;
        return row.as_ref().map(kv_row).transpose();
    };
    let mut tx = snapshot(pool).await?;
    bounds(&mut *tx).await?.check(revision)?;
    let row = sqlx::query(
        "SELECT key, value, create_revision, revision, kind FROM kedge_log
         WHERE key = $1 AND revision <= $2 ORDER BY revision DESC LIMIT 1",
    )
    .bind(key.as_bytes())
    .bind(revision)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_error("read a key"))?;
    tx.commit().await.map_err(db_error("read a key"))?;
    match row {
        Some(row) if row.try_get::<i16, _>(4).map_err(db_error("read a key"))? != KIND_DELETE => {
            kv_row(&row).map(Some)
        }
        _ => Ok(None),
    }
}

pub async fn list(pool: &PgPool, plan: &ListPlan) -> Result<(Revision, Vec<KeyValue>)> {
    let mut tx = snapshot(pool).await?;
    let bounds = bounds(&mut *tx).await?;
    let revision = plan.revision.unwrap_or(bounds.current);
    bounds.check(revision)?;
    let limit = plan.fetch_limit().map(|l| l as i64);
    let end = end_key(plan.end_key.clone());
    let rows = if revision == bounds.current {
        sqlx::query(
            "SELECT key, value, create_revision, mod_revision FROM kedge_kv
             WHERE key >= $1 AND key < $2 ORDER BY key LIMIT $3",
        )
        .bind(plan.start_key.as_bytes())
        .bind(end)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await
    } else {
        sqlx::query(
            "SELECT key, value, create_revision, revision FROM (
                 SELECT DISTINCT ON (key) key, value, create_revision, revision, kind
                 FROM kedge_log WHERE key >= $1 AND key < $2 AND revision <= $3
                 ORDER BY key, revision DESC
             ) newest WHERE kind <> $4 ORDER BY key LIMIT $5",
        )
        .bind(plan.start_key.as_bytes())
        .bind(end)
        .bind(revision)
        .bind(KIND_DELETE)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await
    }
    .map_err(db_error("list keys"))?;
    tx.commit().await.map_err(db_error("list keys"))?;
    let kvs = rows.iter().map(kv_row).collect::<Result<Vec<_>>>()?;
    Ok((revision, kvs))
}

pub async fn count(pool: &PgPool, prefix: &str) -> Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM kedge_kv WHERE key >= $1 AND key < $2")
        .bind(prefix.as_bytes())
        .bind(end_key(key::prefix_end(prefix.as_bytes())))
        .fetch_one(pool)
        .await
        .map_err(db_error("count keys"))
}

/// A query for events: `kedge_log l` joined with the row each replaced, `p`,
/// selecting the columns [`event_row`] decodes (first), then any `$columns`
/// given, then the `$rest` of the query. A macro, so that queries built on it
/// stay string literals.
macro_rules! select_events {
    ($columns:literal WHERE $rest:literal) => {
        concat!(
            "SELECT l.key, l.value, l.create_revision, l.revision, l.kind, l.prev_revision, \
                    p.value, p.create_revision",
            $columns,
            " FROM kedge_log l LEFT JOIN kedge_log p ON p.revision = l.prev_revision WHERE ",
            $rest
        )
    };
    ($rest:literal) => {
        concat!(
            "SELECT l.key, l.value, l.create_revision, l.revision, l.kind, l.prev_revision, \
                    p.value, p.create_revision \
             FROM kedge_log l LEFT JOIN kedge_log p ON p.revision = l.prev_revision ",
            $rest
        )
    };
}
pub(crate) use select_events;

pub async fn history(
    pool: &PgPool,
    prefix: &str,
    from: Revision,
    max_revisions: i64,
) -> Result<HistoryPage> {
    let mut tx = snapshot(pool).await?;
    let bounds = bounds(&mut *tx).await?;
    bounds.check_history(from)?;
    let upto = bounds.current.min(from + max_revisions - 1);
    let rows = sqlx::query(select_events!(
        "WHERE l.revision >= $1 AND l.revision <= $2 AND l.key >= $3 AND l.key < $4
         ORDER BY l.revision"
    ))
    .bind(from)
    .bind(upto)
    .bind(prefix.as_bytes())
    .bind(end_key(key::prefix_end(prefix.as_bytes())))
    .fetch_all(&mut *tx)
    .await
    .map_err(db_error("read history"))?;
    tx.commit().await.map_err(db_error("read history"))?;
    Ok(HistoryPage {
        events: rows.iter().map(event_row).collect::<Result<_>>()?,
        next: upto + 1,
    })
}

/// Decodes a row of [`select_events`].
pub fn event_row(row: &PgRow) -> Result<Event> {
    let get = db_error("decode a log row");
    let key = key_from(row.try_get(0).map_err(&get)?)?;
    let revision: Revision = row.try_get(3).map_err(&get)?;
    let kind: i16 = row.try_get(4).map_err(&get)?;
    let prev_revision: Option<Revision> = row.try_get(5).map_err(&get)?;
    let prev_value: Option<Vec<u8>> = row.try_get(6).map_err(&get)?;
    let prev_kv = match (prev_revision, prev_value) {
        (Some(mod_revision), Some(value)) => Some(KeyValue {
            key: key.clone(),
            value: Bytes::from(value),
            create_revision: row.try_get(7).map_err(&get)?,
            mod_revision,
        }),
        _ => None,
    };
    let missing_prev = || corrupt(format!("log row {revision} has lost its previous value"));
    let kind = match kind {
        KIND_CREATE => EventKind::Create,
        KIND_UPDATE => EventKind::Update,
        KIND_DELETE => return Ok(Event::deleted(prev_kv.ok_or_else(missing_prev)?, revision)),
        other => {
            return Err(corrupt(format!(
                "log row {revision} has unknown kind {other}"
            )));
        }
    };
    if kind == EventKind::Update && prev_kv.is_none() {
        return Err(missing_prev());
    }
    Ok(Event {
        kind,
        kv: KeyValue {
            key,
            value: Bytes::from(
                row.try_get::<Option<Vec<u8>>, _>(1)
                    .map_err(&get)?
                    .unwrap_or_default(),
            ),
            create_revision: row.try_get(2).map_err(&get)?,
            mod_revision: revision,
        },
        prev_kv,
    })
}
