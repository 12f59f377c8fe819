//! Plain values that cross the [`Store`](crate::Store) interface.

use bytes::Bytes;
use std::time::Duration;

/// A datastore revision. Every successful write gets a greater one than all
/// before it; on the SQL backends the history is the dense sequence 1, 2, 3, …
/// (see the crate header for etcd). Kubernetes calls this the resourceVersion.
pub type Revision = i64;

/// The largest value the store accepts: 1.5 MiB, etcd's default request limit,
/// which is also the practical ceiling on a Kubernetes object.
pub const MAX_VALUE_BYTES: usize = 1536 * 1024;

/// The longest key the store accepts, in bytes.
pub const MAX_KEY_BYTES: usize = 2048;

/// One key at one point of the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// The revision that created this incarnation of the key.
    pub create_revision: Revision,
    /// The revision of the last write to the key. A CAS update names this.
    pub mod_revision: Revision,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    Create,
    Update,
    Delete,
}

/// One entry of the history, as a watcher sees it.
///
/// For `Delete`, `kv` is a tombstone as in etcd: the key, an empty value,
/// `create_revision` 0 and `mod_revision` the revision of the delete; the deleted
/// value is in `prev_kv`. `prev_kv` is set for every `Update` and `Delete`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
    pub prev_kv: Option<KeyValue>,
}

impl Event {
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }

    /// A delete event for `prev`, committed at `revision`.
    pub fn deleted(prev: KeyValue, revision: Revision) -> Self {
        Event {
            kind: EventKind::Delete,
            kv: KeyValue {
                key: prev.key.clone(),
                value: Bytes::new(),
                create_revision: 0,
                mod_revision: revision,
            },
            prev_kv: Some(prev),
        }
    }
}

/// Options for create and update.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Delete the key this long after the write unless it is written again
    /// first. Kubernetes uses this for Events. `None` keeps the key forever, and
    /// an update without a TTL removes one set earlier.
    pub ttl: Option<Duration>,
}

impl WriteOptions {
    pub fn ttl(ttl: Duration) -> Self {
        WriteOptions { ttl: Some(ttl) }
    }
}

/// A successful delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deleted {
    /// The revision of the delete itself.
    pub revision: Revision,
    /// The value that was deleted.
    pub prev_kv: KeyValue,
}

/// A request to list the keys under a prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListRequest {
    pub prefix: String,
    /// Read the state as of this revision. `None` reads the latest state.
    /// Ignored when `continue_token` is set: the token carries the revision of
    /// the first page, so every page comes from one snapshot.
    pub revision: Option<Revision>,
    /// At most this many keys per page. `None` returns them all.
    pub limit: Option<usize>,
    /// The token from the previous page.
    pub continue_token: Option<String>,
}

impl ListRequest {
    pub fn prefix(prefix: impl Into<String>) -> Self {
        ListRequest {
            prefix: prefix.into(),
            ..Default::default()
        }
    }

    pub fn at_revision(mut self, revision: Revision) -> Self {
        self.revision = Some(revision);
        self
    }

    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    pub fn continue_from(mut self, token: impl Into<String>) -> Self {
        self.continue_token = Some(token.into());
        self
    }
}

/// One page of a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListResponse {
    /// The revision of the snapshot every page of this list reads.
    pub revision: Revision,
    /// Keys in ascending byte order.
    pub kvs: Vec<KeyValue>,
    /// Present when more keys follow; pass it back to get the next page.
    pub continue_token: Option<String>,
}

/// How much room the store takes, for checking that compaction keeps it bounded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StorageStats {
    /// Rows of history the backend keeps, where it can count them.
    pub history_entries: Option<u64>,
    /// Bytes of storage in use (SQLite pages in use, PostgreSQL relation sizes,
    /// etcd's dbSizeInUse).
    pub bytes_in_use: u64,
}
