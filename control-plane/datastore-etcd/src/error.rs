//! What an etcd client error means to the store, and this crate's own errors.
//!
//! etcd answers with gRPC statuses whose codes are coarse (both "revision
//! compacted" and "future revision" are `OutOfRange`), so the few answers the
//! store must tell apart are recognised by their message, which etcd has kept
//! stable since 3.0 (`etcdserver/api/v3rpc/rpctypes`).

use std::time::Duration;

use kedge_datastore::{BoxError, Error};

pub(crate) const BACKEND: &str = "etcd";

/// A configuration that cannot work. [`EtcdStore::connect`](crate::EtcdStore::connect)
/// refuses it before touching the network.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("no etcd endpoints given")]
    NoEndpoints,
    #[error("etcd endpoint {endpoint:?} is not usable: {reason}")]
    BadEndpoint {
        endpoint: String,
        reason: &'static str,
    },
    #[error("{0} must be longer than zero")]
    ZeroDuration(&'static str),
}

/// A request that got no answer in time.
#[derive(Debug, thiserror::Error)]
#[error("etcd did not answer within {0:?}")]
pub(crate) struct TimedOut(pub(crate) Duration);

/// An etcd answer the store understood, but which breaks what the store
/// expects of etcd (a response without a header, a key that is not UTF-8).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Unexpected(pub(crate) String);

/// A watch whose stream broke and stayed broken.
#[derive(Debug, thiserror::Error)]
#[error("the watch stream broke and could not be re-established within {limit:?}: {last}")]
pub(crate) struct WatchLost {
    pub(crate) limit: Duration,
    pub(crate) last: String,
}

/// The kinds of failure the store reacts to differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// "mvcc: required revision has been compacted"
    Compacted,
    /// "mvcc: required revision is a future revision"
    FutureRevision,
    /// "request is too large", or the gRPC message limit
    TooLarge,
    /// "requested lease not found": a cached lease was revoked or expired
    LeaseNotFound,
    /// etcd could not be reached, or did not answer in time
    Unavailable,
    Other,
}

/// A failed etcd request, classified.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) kind: Kind,
    pub(crate) source: BoxError,
}

// gRPC status codes, from the gRPC spec (the numbers are part of the protocol).
const CANCELLED: i32 = 1;
const UNKNOWN: i32 = 2;
const DEADLINE_EXCEEDED: i32 = 4;
const NOT_FOUND: i32 = 5;
const RESOURCE_EXHAUSTED: i32 = 8;
const UNAVAILABLE: i32 = 14;

impl Failure {
    pub(crate) fn timed_out(after: Duration) -> Self {
        Failure {
            kind: Kind::Unavailable,
            source: Box::new(TimedOut(after)),
        }
    }

    pub(crate) fn classify(err: etcd_client::Error) -> Self {
        use etcd_client::Error as E;
        let kind = match &err {
            E::GRpcStatus(status) => {
                let code = i32::from(status.code());
                let message = status.message();
                if message.contains("required revision has been compacted") {
                    Kind::Compacted
                } else if message.contains("required revision is a future revision") {
                    Kind::FutureRevision
                } else if message.contains("request is too large")
                    || message.contains("received message larger than max")
                {
                    Kind::TooLarge
                } else if code == NOT_FOUND && message.contains("lease not found") {
                    Kind::LeaseNotFound
                } else if matches!(code, UNAVAILABLE | DEADLINE_EXCEEDED | CANCELLED)
                    || (code == RESOURCE_EXHAUSTED && message.contains("too many requests"))
                    // Errors tonic makes up on the client side (a reset
                    // connection, a broken stream) carry their cause; etcd's
                    // own answers never do.
                    || (code == UNKNOWN && std::error::Error::source(status).is_some())
                {
                    Kind::Unavailable
                } else {
                    Kind::Other
                }
            }
            E::TransportError(_) | E::IoError(_) | E::WatchError(_) => Kind::Unavailable,
            _ => Kind::Other,
        };
        Failure {
            kind,
            source: Box::new(err),
        }
    }

    /// The store error for an operation that has no special meaning for this
    /// kind of failure.
    pub(crate) fn into_error(self, op: &'static str) -> Error {
        match self.kind {
            Kind::Unavailable => Error::Unavailable {
                backend: BACKEND,
                op,
                source: self.source,
            },
            _ => Error::Backend {
                backend: BACKEND,
                op,
                source: self.source,
            },
        }
    }
}

/// A broken expectation about etcd's answer, as a store error.
pub(crate) fn unexpected(op: &'static str, what: impl Into<String>) -> Error {
    Error::Backend {
        backend: BACKEND,
        op,
        source: Box::new(Unexpected(what.into())),
    }
}
