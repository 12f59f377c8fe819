//! The tables, shared by the writer and the readers.
//!
//! - `kv` holds the current state: one row per live key.
//! - `log` holds the history: one row per revision, dense. A row names the
//!   revision it replaced (`prev_revision`), so an event's previous value is a
//!   join away. Compaction deletes the rows nobody can read any more.
//! - `meta` holds the current and compacted revisions and the schema version.
//!
//! Keys are BLOBs so that SQLite compares them bytewise, which makes a prefix a
//! plain range `prefix <= key < prefix_end`.

use rusqlite::{Connection, OptionalExtension};

use crate::sql_error;
use kedge_datastore::{Error, Result};

pub const SCHEMA_VERSION: i64 = 1;

/// Row kinds in `log`.
pub const KIND_CREATE: i64 = 1;
pub const KIND_UPDATE: i64 = 2;
pub const KIND_DELETE: i64 = 3;

const CREATE: &str = "
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS kv (
    key             BLOB PRIMARY KEY,
    value           BLOB NOT NULL,
    create_revision INTEGER NOT NULL,
    mod_revision    INTEGER NOT NULL,
    expires_at      INTEGER
);
CREATE INDEX IF NOT EXISTS kv_expires_at ON kv (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS log (
    revision        INTEGER PRIMARY KEY,
    key             BLOB NOT NULL,
    kind            INTEGER NOT NULL,
    value           BLOB,
    create_revision INTEGER NOT NULL,
    prev_revision   INTEGER
);
CREATE INDEX IF NOT EXISTS log_key_revision ON log (key, revision);
INSERT OR IGNORE INTO meta (name, value) VALUES
    ('schema_version', 1), ('revision', 0), ('compact_revision', 0);
";

/// Creates the tables if they are missing and checks that the database is one
/// of ours, of a schema this build understands.
pub fn ensure(conn: &Connection, path: &str) -> Result<()> {
    let found: Option<i64> = conn
        .query_row(
            "SELECT value FROM meta WHERE name = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()
        .or_else(|err| match err {
            // a new or foreign database: no meta table yet
            rusqlite::Error::SqliteFailure(_, Some(ref msg))
                if msg.starts_with("no such table") =>
            {
                Ok(None)
            }
            other => Err(other),
        })
        .map_err(sql_error("read the schema version"))?;
    match found {
        Some(SCHEMA_VERSION) | None => conn
            .execute_batch(CREATE)
            .map_err(sql_error("create the schema")),
        Some(other) => Err(Error::Backend {
            backend: "sqlite",
            op: "open the database",
            source: format!(
                "{path} has schema version {other}, and this kedge understands only version \
                 {SCHEMA_VERSION}: use the kedge release that wrote it, or restore a snapshot"
            )
            .into(),
        }),
    }
}

pub fn meta(conn: &Connection, name: &str) -> Result<i64> {
    conn.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
        r.get(0)
    })
    .map_err(sql_error("read the store's revision"))
}
