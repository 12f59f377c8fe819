//! The tables, created on first connect. They mirror the SQLite backend's:
//! `kedge_kv` is the current state, `kedge_log` the dense history (one row per
//! revision), `kedge_meta` the current and compacted revisions.
//!
//! The row `kedge_meta('revision')` is also the lock that orders commits: a
//! writer holds it `FOR UPDATE` from the moment it takes its first revision
//! until its transaction ends, so revision N+1 is handed out only once
//! revision N has committed (or rolled back, returning its number). See the
//! crate header for why that makes the history safe to tail.

use sqlx::{Connection, PgConnection, Row};

use crate::db_error;
use kedge_datastore::{Error, Result};

pub const SCHEMA_VERSION: i64 = 1;

pub const KIND_CREATE: i16 = 1;
pub const KIND_UPDATE: i16 = 2;
pub const KIND_DELETE: i16 = 3;

/// The channel writers notify after each commit.
pub const CHANNEL: &str = "kedge_log";

const CREATE: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS kedge_meta (
         name  TEXT PRIMARY KEY,
         value BIGINT NOT NULL)",
    "INSERT INTO kedge_meta (name, value) VALUES
         ('schema_version', 1), ('revision', 0), ('compact_revision', 0)
     ON CONFLICT (name) DO NOTHING",
    "CREATE TABLE IF NOT EXISTS kedge_kv (
         key             BYTEA PRIMARY KEY,
         value           BYTEA NOT NULL,
         create_revision BIGINT NOT NULL,
         mod_revision    BIGINT NOT NULL,
         expires_at      BIGINT)",
    "CREATE INDEX IF NOT EXISTS kedge_kv_expires_at ON kedge_kv (expires_at)
     WHERE expires_at IS NOT NULL",
    "CREATE TABLE IF NOT EXISTS kedge_log (
         revision        BIGINT PRIMARY KEY,
         key             BYTEA NOT NULL,
         kind            SMALLINT NOT NULL,
         value           BYTEA,
         create_revision BIGINT NOT NULL,
         prev_revision   BIGINT)",
    "CREATE INDEX IF NOT EXISTS kedge_log_key_revision ON kedge_log (key, revision)",
];

/// An arbitrary constant: the advisory lock that keeps two servers starting at
/// once from creating the tables twice.
const SCHEMA_LOCK: i64 = 0x6b65_6467_6501;

pub async fn ensure(conn: &mut PgConnection) -> Result<()> {
    let mut tx = conn.begin().await.map_err(db_error("create the schema"))?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(SCHEMA_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(db_error("create the schema"))?;
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('kedge_meta') IS NOT NULL")
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error("create the schema"))?;
    if exists {
        let version: Option<i64> =
            sqlx::query_scalar("SELECT value FROM kedge_meta WHERE name = 'schema_version'")
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error("read the schema version"))?;
        if let Some(version) = version.filter(|v| *v != SCHEMA_VERSION) {
            return Err(Error::Backend {
                backend: crate::BACKEND,
                op: "open the database",
                source: format!(
                    "the database has kedge schema version {version}, and this kedge understands \
                     only version {SCHEMA_VERSION}: use the kedge release that wrote it"
                )
                .into(),
            });
        }
    }
    for statement in CREATE {
        sqlx::query(*statement)
            .execute(&mut *tx)
            .await
            .map_err(db_error("create the schema"))?;
    }
    tx.commit().await.map_err(db_error("create the schema"))
}

/// Reads a `kedge_meta` value in the caller's transaction or connection.
pub async fn meta<'c, E>(conn: E, name: &str) -> Result<i64>
where
    E: sqlx::Executor<'c, Database = sqlx::Postgres>,
{
    sqlx::query("SELECT value FROM kedge_meta WHERE name = $1")
        .bind(name)
        .fetch_one(conn)
        .await
        .and_then(|row| row.try_get(0))
        .map_err(db_error("read the store's revision"))
}
