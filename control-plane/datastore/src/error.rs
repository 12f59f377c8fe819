//! The one error type of every datastore operation.

use crate::types::{KeyValue, Revision};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Boxed cause of a backend failure.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong. The apiserver maps each variant to one Kubernetes status:
/// `AlreadyExists` to 409 AlreadyExists, `Conflict` to 409 Conflict, `NotFound`
/// to 404, `Compacted` to 410 Gone, `Unavailable` to 503 and so on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("key {key:?} already exists")]
    AlreadyExists { key: String },

    #[error("key {key:?} not found")]
    NotFound { key: String },

    /// A compare-and-swap lost: the key's mod revision is not the one expected.
    #[error("conflict on key {key:?}: expected mod revision {expected}, it is {}", current.mod_revision)]
    Conflict {
        key: String,
        expected: Revision,
        /// The key as it is now, so the caller can retry without another read.
        current: Box<KeyValue>,
    },

    /// The revision asked for is older than the oldest one kept.
    #[error("revision {requested} has been compacted; the oldest revision kept is {compacted}")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },

    #[error("revision {requested} is in the future; the current revision is {current}")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },

    #[error("invalid key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },

    #[error("value for key {key:?} is {size} bytes, over the limit of {limit} bytes")]
    ValueTooLarge {
        key: String,
        size: usize,
        limit: usize,
    },

    #[error("invalid continue token: {reason}")]
    InvalidContinueToken { reason: String },

    /// The backend could not be reached, or went away during the operation.
    /// A write that fails this way may or may not have committed; it never
    /// committed in part.
    #[error("{backend} datastore unavailable while trying to {op}: {source}")]
    Unavailable {
        backend: &'static str,
        op: &'static str,
        #[source]
        source: BoxError,
    },

    /// The backend answered, but not in a way the store can use: a corrupt
    /// database, a schema from another program, a broken invariant.
    #[error("{backend} datastore failed to {op}: {source}")]
    Backend {
        backend: &'static str,
        op: &'static str,
        #[source]
        source: BoxError,
    },
}

impl Error {
    /// True if a retry of the same operation could succeed later.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Unavailable { .. })
    }
}
