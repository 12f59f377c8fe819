//! What the SQL backends (SQLite, PostgreSQL) share: the write operations
//! their writers apply, and the revision bounds their readers check. The SQL
//! itself differs per backend and stays there.

use std::future::Future;

use bytes::Bytes;

use crate::check_write;
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::key::validate_key;
use crate::types::{Deleted, KeyValue, Revision, WriteOptions};

/// One write, as a backend's writer applies it inside a transaction.
#[derive(Debug)]
pub enum WriteOp {
    Create {
        key: String,
        value: Bytes,
        /// Wall-clock deadline in Unix milliseconds, if the key has a TTL.
        expires_at: Option<i64>,
    },
    Update {
        key: String,
        value: Bytes,
        expected: Revision,
        expires_at: Option<i64>,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
    /// Delete up to `limit` keys whose deadline is at or before `now`.
    Expire { now: i64, limit: usize },
}

impl WriteOp {
    /// A checked create, with its TTL turned into a deadline on `clock`.
    pub fn create(key: &str, value: Bytes, opts: WriteOptions, clock: &dyn Clock) -> Result<Self> {
        check_write(key, &value)?;
        Ok(WriteOp::Create {
            key: key.to_string(),
            value,
            expires_at: expires_at(opts, clock),
        })
    }

    pub fn update(
        key: &str,
        value: Bytes,
        expected: Revision,
        opts: WriteOptions,
        clock: &dyn Clock,
    ) -> Result<Self> {
        check_write(key, &value)?;
        Ok(WriteOp::Update {
            key: key.to_string(),
            value,
            expected,
            expires_at: expires_at(opts, clock),
        })
    }

    pub fn delete(key: &str, expected: Option<Revision>) -> Result<Self> {
        validate_key(key)?;
        Ok(WriteOp::Delete {
            key: key.to_string(),
            expected,
        })
    }
}

fn expires_at(opts: WriteOptions, clock: &dyn Clock) -> Option<i64> {
    opts.ttl
        .map(|ttl| clock.now_unix_ms().saturating_add(ttl.as_millis() as i64))
}

/// What a write did.
#[derive(Debug)]
pub enum Outcome {
    Put(KeyValue),
    Deleted(Deleted),
    Expired(u64),
}

impl Outcome {
    pub fn into_put(self) -> Result<KeyValue> {
        match self {
            Outcome::Put(kv) => Ok(kv),
            other => Err(mismatch("put", other)),
        }
    }

    pub fn into_deleted(self) -> Result<Deleted> {
        match self {
            Outcome::Deleted(deleted) => Ok(deleted),
            other => Err(mismatch("delete", other)),
        }
    }

    pub fn into_expired(self) -> Result<u64> {
        match self {
            Outcome::Expired(n) => Ok(n),
            other => Err(mismatch("expiry", other)),
        }
    }
}

fn mismatch(wanted: &str, got: Outcome) -> Error {
    Error::Backend {
        backend: "sql",
        op: "write",
        source: format!("the writer answered a {wanted} with {got:?}").into(),
    }
}

/// The error each write of a failed batch gets: a copy of the batch's error
/// (errors own their cause, so they cannot be cloned), same kind, same cause.
pub fn batch_error(err: &Error, backend: &'static str) -> Error {
    let cause = || -> crate::error::BoxError {
        std::error::Error::source(err)
            .map_or_else(|| err.to_string(), ToString::to_string)
            .into()
    };
    match err {
        Error::Unavailable { op, .. } => Error::Unavailable {
            backend,
            op,
            source: cause(),
        },
        Error::Backend { op, .. } => Error::Backend {
            backend,
            op,
            source: cause(),
        },
        other => Error::Backend {
            backend,
            op: "commit",
            source: other.to_string().into(),
        },
    }
}

/// Expires every key whose deadline has passed, `batch` at a time, through
/// the backend's writer.
pub async fn expire_all<F, Fut>(now: i64, batch: usize, mut submit: F) -> Result<u64>
where
    F: FnMut(WriteOp) -> Fut,
    Fut: Future<Output = Result<Outcome>>,
{
    let mut total = 0;
    loop {
        let expired = submit(WriteOp::Expire { now, limit: batch })
            .await?
            .into_expired()?;
        total += expired;
        if expired < batch as u64 {
            return Ok(total);
        }
    }
}

/// The current and compacted revisions, read in one snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    pub current: Revision,
    pub compacted: Revision,
}

impl Bounds {
    /// Checks that the state at `revision` can be read.
    pub fn check(&self, revision: Revision) -> Result<()> {
        self.check_history(revision)?;
        if revision > self.current {
            return Err(Error::FutureRevision {
                requested: revision,
                current: self.current,
            });
        }
        Ok(())
    }

    /// Checks that history from `revision` on is still kept.
    pub fn check_history(&self, revision: Revision) -> Result<()> {
        if revision < self.compacted {
            return Err(Error::Compacted {
                requested: revision,
                compacted: self.compacted,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManualClock;
    use std::time::Duration;

    #[test]
    fn ops_are_checked_and_deadlines_come_from_the_clock() {
        let clock = ManualClock::default();
        let now = clock.now_unix_ms();
        let op = WriteOp::create(
            "/k",
            Bytes::new(),
            WriteOptions::ttl(Duration::from_secs(2)),
            &clock,
        )
        .unwrap();
        assert!(matches!(op, WriteOp::Create { expires_at: Some(t), .. } if t == now + 2000));
        assert!(WriteOp::delete("bad", None).is_err());
        assert!(
            WriteOp::update(
                "/k",
                Bytes::from(vec![0; crate::MAX_VALUE_BYTES + 1]),
                1,
                WriteOptions::default(),
                &clock
            )
            .is_err()
        );
    }

    #[test]
    fn bounds() {
        let b = Bounds {
            current: 10,
            compacted: 4,
        };
        assert!(b.check(4).is_ok() && b.check(10).is_ok());
        assert!(matches!(
            b.check(3),
            Err(Error::Compacted { compacted: 4, .. })
        ));
        assert!(matches!(
            b.check(11),
            Err(Error::FutureRevision { current: 10, .. })
        ));
        assert!(b.check_history(11).is_ok());
    }

    #[tokio::test]
    async fn expiry_goes_on_until_a_short_batch() {
        let mut left = 7u64;
        let total = expire_all(0, 3, |_| {
            let n = left.min(3);
            left -= n;
            async move { Ok(Outcome::Expired(n)) }
        })
        .await
        .unwrap();
        assert_eq!(total, 7);
    }
}
