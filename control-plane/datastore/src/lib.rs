//! kedge-datastore: the revisioned key-value store that kedge's apiserver
//! stands on — the subset of etcd v3 a Kubernetes apiserver needs.
//!
//! This crate holds the [`Store`] trait, the values that cross it, the one
//! [`Error`] type, and what the backends share: key rules, continue tokens, the
//! in-memory event window that SQL backends watch through, and the maintenance
//! loop (compaction and TTL expiry). It must never depend on a backend; the
//! backends (`kedge-datastore-sqlite`, `-postgres`, `-etcd`) depend on it.
//!
//! Architecture invariants every backend keeps:
//! - Every write is a compare-and-swap and gets a revision greater than every
//!   revision before it, in commit order, on one server or many. On SQLite
//!   and PostgreSQL the revisions are dense: one write, one revision, no
//!   holes. On etcd they are etcd's own: the store's bookkeeping key takes a
//!   revision when it compacts, and a lease that expires deletes all its keys
//!   in one revision.
//! - A watch delivers every event of its prefix, in revision order, exactly
//!   once, with the previous value on update and delete. A watch from before
//!   the compacted revision fails with [`Error::Compacted`].
//! - A failed write leaves nothing behind.

pub mod clock;
pub mod continuation;
pub mod error;
pub mod key;
pub mod list;
pub mod maintenance;
pub mod sql;
pub mod types;
pub mod watch;

use async_trait::async_trait;
use bytes::Bytes;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{BoxError, Error, Result};
pub use types::{
    Deleted, Event, EventKind, KeyValue, ListRequest, ListResponse, MAX_KEY_BYTES, MAX_VALUE_BYTES,
    Revision, StorageStats, WriteOptions,
};
pub use watch::WatchStream;

/// A revisioned key-value store. Keys are UTF-8 strings starting with `/`,
/// ordered and compared as bytes; values are bytes of at most
/// [`MAX_VALUE_BYTES`].
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// A short name for logs and errors: "sqlite", "postgres", "etcd".
    fn backend(&self) -> &'static str;

    /// The revision of the newest committed write (0 for an empty store).
    async fn current_revision(&self) -> Result<Revision>;

    /// The oldest revision that can still be read or watched from (0 if the
    /// store was never compacted).
    async fn compact_revision(&self) -> Result<Revision>;

    /// Creates `key`. Fails with [`Error::AlreadyExists`] if it exists.
    async fn create(&self, key: &str, value: Bytes, opts: WriteOptions) -> Result<KeyValue>;

    /// Replaces `key`'s value if its mod revision is `expected_mod_revision`.
    /// Fails with [`Error::NotFound`] if the key is absent and with
    /// [`Error::Conflict`], carrying the current value, if the revision differs.
    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_mod_revision: Revision,
        opts: WriteOptions,
    ) -> Result<KeyValue>;

    /// Deletes `key`, only if its mod revision is `expected_mod_revision` when
    /// one is given.
    async fn delete(&self, key: &str, expected_mod_revision: Option<Revision>) -> Result<Deleted>;

    /// Reads `key` as it is now, or as it was at `revision`.
    async fn get(&self, key: &str, revision: Option<Revision>) -> Result<Option<KeyValue>>;

    /// Lists keys under a prefix, a page at a time, all pages from one snapshot.
    async fn list(&self, req: &ListRequest) -> Result<ListResponse>;

    /// How many keys are under `prefix` now.
    async fn count(&self, prefix: &str) -> Result<i64>;

    /// Watches `prefix` from `start_revision` on (inclusive); 0 means "from the
    /// next write". Fails with [`Error::Compacted`] if that history is gone.
    async fn watch(&self, prefix: &str, start_revision: Revision) -> Result<WatchStream>;

    /// Drops the history before `revision`: afterwards the state at any
    /// revision from `revision` on can still be read, and every event from
    /// `revision` on can still be watched. Compacting to a revision at or below
    /// the compact revision does nothing.
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// Deletes the keys whose TTL has passed, each as an ordinary delete with
    /// its own revision and event, and returns how many. Backends that expire
    /// keys on their own (etcd) return 0.
    async fn expire_keys(&self) -> Result<u64>;

    /// How much storage the store takes now.
    async fn storage_stats(&self) -> Result<StorageStats>;
}

/// Checks a create or update before it reaches a backend.
pub fn check_write(key: &str, value: &[u8]) -> Result<()> {
    key::validate_key(key)?;
    key::validate_value(key, value)
}
