//! kedge-datastore-etcd: the datastore on an external etcd v3 cluster, for
//! deployments that run etcd already or want its replication.
//!
//! Each store operation is one etcd request (creates, updates and deletes are
//! single transactions with a compare), so revisions, history, watches and TTLs
//! are etcd's own: keys expire through etcd leases, and watches are etcd
//! watches that re-establish themselves from the next undelivered revision when
//! the connection breaks (see the `watch` module).
//!
//! Architecture invariants:
//! - Every request is bounded by [`EtcdConfig::request_timeout`]; an etcd that
//!   is down or unreachable gives [`Error::Unavailable`], never a hang.
//! - The store keeps its bookkeeping in keys without a leading `/`
//!   (`compact_rev_key`, the key the Kubernetes apiserver uses), so it never
//!   collides with a caller's key and never shows up in a list or a watch.
//!
//! This crate depends on `kedge-datastore` and on `etcd-client` (tonic, gRPC);
//! nothing else of kedge's, and never on another backend.

mod error;
mod lease;
mod watch;

use std::fmt;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    CompactionOptions, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, GetResponse,
    KvClient, LeaseClient, MaintenanceClient, PutOptions, ResponseHeader, Txn, TxnOp,
    TxnOpResponse, TxnResponse, WatchClient,
};
use tokio::time::Instant;
use tracing::{debug, info, instrument};

use kedge_datastore::list::ListPlan;
use kedge_datastore::{
    Deleted, Error, KeyValue, ListRequest, ListResponse, MAX_VALUE_BYTES, Result, Revision,
    StorageStats, Store, WatchStream, WriteOptions, check_write, key,
};

pub use error::ConfigError;
use error::{BACKEND, Failure, Kind, unexpected};
use lease::LeaseCache;

/// The key that holds the revision the store was compacted to. It has no
/// leading `/`, so no caller key can be it.
const COMPACT_REV_KEY: &str = "compact_rev_key";

/// The largest gRPC response the store accepts: a page of a list or a batch of
/// watch events can hold many values of up to 1.5 MiB each, far past tonic's
/// default of 4 MiB. This is gRPC's own ceiling.
const MAX_RESPONSE_BYTES: usize = i32::MAX as usize;

/// How to reach etcd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdConfig {
    /// Client URLs of the etcd members, like `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// The longest any one request may take before it fails as unavailable.
    pub request_timeout: Duration,
    /// The longest connecting to a member may take.
    pub connect_timeout: Duration,
    /// How often to ping etcd over HTTP/2, so that a dead connection (a
    /// partition rather than a closed socket) is noticed.
    pub keep_alive_interval: Duration,
    /// How long a ping may go unanswered before the connection counts as dead.
    pub keep_alive_timeout: Duration,
    /// How long a watch keeps trying to re-establish a broken stream before it
    /// ends with [`Error::Unavailable`].
    pub watch_outage_limit: Duration,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        EtcdConfig {
            endpoints: vec!["http://127.0.0.1:2379".to_string()],
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            keep_alive_interval: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(5),
            watch_outage_limit: Duration::from_secs(60),
        }
    }
}

impl EtcdConfig {
    /// The defaults, with these endpoints.
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> Self {
        EtcdConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            ..EtcdConfig::default()
        }
    }

    pub fn validate(&self) -> std::result::Result<(), ConfigError> {
        if self.endpoints.is_empty() {
            return Err(ConfigError::NoEndpoints);
        }
        for endpoint in &self.endpoints {
            let reason = if endpoint.trim().is_empty() {
                Some("it is empty")
            } else if endpoint.starts_with("https://") {
                Some("TLS is not supported yet; use http://")
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(ConfigError::BadEndpoint {
                    endpoint: endpoint.clone(),
                    reason,
                });
            }
        }
        for (name, value) in [
            ("request_timeout", self.request_timeout),
            ("connect_timeout", self.connect_timeout),
            ("keep_alive_interval", self.keep_alive_interval),
            ("keep_alive_timeout", self.keep_alive_timeout),
            ("watch_outage_limit", self.watch_outage_limit),
        ] {
            if value.is_zero() {
                return Err(ConfigError::ZeroDuration(name));
            }
        }
        Ok(())
    }
}

/// The etcd store. Cheap to share behind an `Arc`; clients underneath share
/// one connection per endpoint.
pub struct EtcdStore {
    kv: KvClient,
    watch: WatchClient,
    lease: LeaseClient,
    maintenance: MaintenanceClient,
    leases: Mutex<LeaseCache>,
    /// The newest compact revision this instance has seen: a lower bound of
    /// the real one, which other servers may have moved on.
    compacted: AtomicI64,
    config: EtcdConfig,
}

impl fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.config.endpoints)
            .field("compacted", &self.compacted.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// The compaction record.
#[derive(Clone, Copy, Debug)]
struct CompactState {
    /// The revision compacted to, 0 if never.
    stored: Revision,
    /// The mod revision of [`COMPACT_REV_KEY`], 0 if absent.
    mod_revision: Revision,
    /// The store's revision when it was read.
    current: Revision,
}

impl EtcdStore {
    /// Connects to etcd and checks, with one read, that it answers and has a
    /// leader. Fails with [`Error::Unavailable`] if it does not within
    /// `connect_timeout`.
    pub async fn connect(config: EtcdConfig) -> Result<Self> {
        const OP: &str = "connect";
        config.validate().map_err(|e| Error::Backend {
            backend: BACKEND,
            op: OP,
            source: Box::new(e),
        })?;
        let options = ConnectOptions::new()
            .with_connect_timeout(config.connect_timeout)
            .with_keep_alive(config.keep_alive_interval, config.keep_alive_timeout);
        let connecting = etcd_client::Client::connect(&config.endpoints, Some(options));
        let client = match tokio::time::timeout(config.connect_timeout, connecting).await {
            Ok(Ok(client)) => client,
            Ok(Err(err)) => return Err(Failure::classify(err).into_error(OP)),
            Err(_) => return Err(Failure::timed_out(config.connect_timeout).into_error(OP)),
        };
        let store = EtcdStore {
            kv: client
                .kv_client()
                .max_decoding_message_size(MAX_RESPONSE_BYTES),
            watch: client
                .watch_client()
                .max_decoding_message_size(MAX_RESPONSE_BYTES),
            lease: client.lease_client(),
            maintenance: client.maintenance_client(),
            leases: Mutex::new(LeaseCache::default()),
            compacted: AtomicI64::new(0),
            config,
        };
        let check = store.read_compact(OP);
        let state = match tokio::time::timeout(store.config.connect_timeout, check).await {
            Ok(state) => state?,
            Err(_) => return Err(Failure::timed_out(store.config.connect_timeout).into_error(OP)),
        };
        info!(
            endpoints = ?store.config.endpoints,
            revision = state.current,
            compacted = state.stored,
            "etcd datastore connected"
        );
        Ok(store)
    }

    /// Runs one etcd request, bounded by the request timeout.
    async fn call<T>(
        &self,
        request: impl Future<Output = std::result::Result<T, etcd_client::Error>>,
    ) -> std::result::Result<T, Failure> {
        match tokio::time::timeout(self.config.request_timeout, request).await {
            Ok(result) => result.map_err(Failure::classify),
            Err(_) => Err(Failure::timed_out(self.config.request_timeout)),
        }
    }

    async fn txn(&self, txn: Txn) -> std::result::Result<TxnResponse, Failure> {
        let mut kv = self.kv.clone();
        self.call(kv.txn(txn)).await
    }

    /// Reads the compaction record, and with it the current revision.
    async fn read_compact(&self, op: &'static str) -> Result<CompactState> {
        let mut kv = self.kv.clone();
        let resp = self
            .call(kv.get(COMPACT_REV_KEY, None))
            .await
            .map_err(|f| f.into_error(op))?;
        let current = header_revision(resp.header(), op)?;
        let (stored, mod_revision) = match resp.kvs().first() {
            Some(kv) => (parse_revision(kv.value(), op)?, kv.mod_revision()),
            None => (0, 0),
        };
        self.compacted.fetch_max(stored, Ordering::Relaxed);
        Ok(CompactState {
            stored,
            mod_revision,
            current,
        })
    }

    /// Fails with [`Error::Compacted`] if `revision` is older than the compact
    /// revision this instance knows, without asking etcd. (etcd itself is
    /// compacted one revision further back; see [`Store::compact`].)
    fn check_not_compacted(&self, revision: Revision) -> Result<()> {
        let compacted = self.compacted.load(Ordering::Relaxed);
        if revision < compacted {
            return Err(Error::Compacted {
                requested: revision,
                compacted,
            });
        }
        Ok(())
    }

    /// The error for a read at `requested` that etcd refused.
    async fn read_failure(
        &self,
        op: &'static str,
        requested: Option<Revision>,
        failure: Failure,
    ) -> Error {
        match (failure.kind, requested) {
            (Kind::Compacted, Some(requested)) => match self.read_compact(op).await {
                // If etcd was compacted behind the store's back, its compact
                // revision is unknown; it is at least one past the request.
                Ok(state) => Error::Compacted {
                    requested,
                    compacted: state.stored.max(requested.saturating_add(1)),
                },
                Err(err) => err,
            },
            (Kind::FutureRevision, Some(requested)) => match self.read_compact(op).await {
                Ok(state) => Error::FutureRevision {
                    requested,
                    current: state.current,
                },
                Err(err) => err,
            },
            _ => failure.into_error(op),
        }
    }

    /// The lease to attach a key with `ttl` to: a recent one, or a new grant.
    async fn lease_for(&self, ttl: Duration) -> Result<i64> {
        let ttl_secs = lease::ttl_seconds(ttl);
        let now = Instant::now();
        if let Some(id) = self.leases.lock().unwrap().reuse(ttl_secs, now) {
            return Ok(id);
        }
        let grant_ttl = lease::grant_ttl(ttl_secs);
        let mut client = self.lease.clone();
        let resp = self
            .call(client.grant(grant_ttl, None))
            .await
            .map_err(|f| f.into_error("grant a lease"))?;
        debug!(lease = resp.id(), ttl = grant_ttl, "granted a lease");
        self.leases
            .lock()
            .unwrap()
            .granted(ttl_secs, resp.id(), now);
        Ok(resp.id())
    }

    /// Runs a write transaction built for a lease (0 for none). If the cached
    /// lease is gone from etcd, forgets it and tries once more with a new one.
    async fn write(
        &self,
        op: &'static str,
        key: &str,
        size: usize,
        ttl: Option<Duration>,
        build: impl Fn(i64) -> Txn,
    ) -> Result<TxnResponse> {
        let mut retried = false;
        loop {
            let lease = match ttl {
                Some(ttl) => self.lease_for(ttl).await?,
                None => 0,
            };
            match self.txn(build(lease)).await {
                Ok(resp) => return Ok(resp),
                Err(f) if f.kind == Kind::LeaseNotFound && lease != 0 && !retried => {
                    debug!(lease, "cached lease is gone; granting a new one");
                    self.leases.lock().unwrap().forget(lease);
                    retried = true;
                }
                Err(f) if f.kind == Kind::TooLarge => {
                    return Err(Error::ValueTooLarge {
                        key: key.to_string(),
                        size,
                        limit: MAX_VALUE_BYTES,
                    });
                }
                Err(f) => return Err(f.into_error(op)),
            }
        }
    }
}

fn put_options(lease: i64) -> Option<PutOptions> {
    Some(PutOptions::new().with_lease(lease))
}

/// Limits `options` to the keys before `end`, or to every key from the start
/// key on when there is no end.
fn until(options: GetOptions, end: Option<Vec<u8>>) -> GetOptions {
    match end {
        Some(end) => options.with_range(end),
        None => options.with_from_key(),
    }
}

fn header_revision(header: Option<&ResponseHeader>, op: &'static str) -> Result<Revision> {
    header
        .map(ResponseHeader::revision)
        .ok_or_else(|| unexpected(op, "etcd sent a response without a header"))
}

fn parse_revision(value: &[u8], op: &'static str) -> Result<Revision> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.trim().parse::<Revision>().ok())
        .filter(|rev| *rev >= 0)
        .ok_or_else(|| {
            let shown: String = String::from_utf8_lossy(value).chars().take(64).collect();
            unexpected(
                op,
                format!("{COMPACT_REV_KEY} holds {shown:?}, which is not a revision"),
            )
        })
}

/// The first range (get) answer of a transaction.
fn first_range(resp: &TxnResponse) -> Option<GetResponse> {
    resp.op_responses().into_iter().find_map(|op| match op {
        TxnOpResponse::Get(get) => Some(get),
        _ => None,
    })
}

fn first_kv(resp: Option<GetResponse>, op: &'static str) -> Result<Option<KeyValue>> {
    match resp.and_then(|mut r| r.take_kvs().into_iter().next()) {
        Some(kv) => kv_from(kv, op).map(Some),
        None => Ok(None),
    }
}

/// An etcd key-value as a store key-value.
pub(crate) fn kv_from(kv: etcd_client::KeyValue, op: &'static str) -> Result<KeyValue> {
    let (create_revision, mod_revision) = (kv.create_revision(), kv.mod_revision());
    let (key, value) = kv.into_key_value();
    let key = String::from_utf8(key).map_err(|e| {
        unexpected(
            op,
            format!("etcd holds a key that is not UTF-8: {:?}", e.as_bytes()),
        )
    })?;
    Ok(KeyValue {
        key,
        value: Bytes::from(value),
        create_revision,
        mod_revision,
    })
}

pub(crate) fn kv_from_ref(kv: &etcd_client::KeyValue, op: &'static str) -> Result<KeyValue> {
    let key = std::str::from_utf8(kv.key()).map_err(|_| {
        unexpected(
            op,
            format!("etcd holds a key that is not UTF-8: {:?}", kv.key()),
        )
    })?;
    Ok(KeyValue {
        key: key.to_string(),
        value: Bytes::copy_from_slice(kv.value()),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    })
}

#[async_trait]
impl Store for EtcdStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    #[instrument(level = "debug", name = "current_revision", skip_all)]
    async fn current_revision(&self) -> Result<Revision> {
        const OP: &str = "read the current revision";
        let mut kv = self.kv.clone();
        let resp = self
            .call(kv.get(COMPACT_REV_KEY, Some(GetOptions::new().with_count_only())))
            .await
            .map_err(|f| f.into_error(OP))?;
        header_revision(resp.header(), OP)
    }

    #[instrument(level = "debug", name = "compact_revision", skip_all)]
    async fn compact_revision(&self) -> Result<Revision> {
        Ok(self.read_compact("read the compact revision").await?.stored)
    }

    #[instrument(level = "debug", name = "create", skip_all, fields(%key))]
    async fn create(&self, key: &str, value: Bytes, opts: WriteOptions) -> Result<KeyValue> {
        const OP: &str = "create";
        check_write(key, &value)?;
        let resp = self
            .write(OP, key, value.len(), opts.ttl, |lease| {
                Txn::new()
                    .when([Compare::create_revision(key, CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(key, value.to_vec(), put_options(lease))])
            })
            .await?;
        if !resp.succeeded() {
            return Err(Error::AlreadyExists {
                key: key.to_string(),
            });
        }
        let revision = header_revision(resp.header(), OP)?;
        Ok(KeyValue {
            key: key.to_string(),
            value,
            create_revision: revision,
            mod_revision: revision,
        })
    }

    #[instrument(level = "debug", name = "update", skip_all, fields(%key, expected = expected_mod_revision))]
    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_mod_revision: Revision,
        opts: WriteOptions,
    ) -> Result<KeyValue> {
        const OP: &str = "update";
        check_write(key, &value)?;
        let resp = self
            .write(OP, key, value.len(), opts.ttl, |lease| {
                Txn::new()
                    .when([
                        Compare::mod_revision(key, CompareOp::Equal, expected_mod_revision),
                        // An absent key has mod revision 0 too.
                        Compare::create_revision(key, CompareOp::Greater, 0),
                    ])
                    .and_then([
                        // For the create revision, which the put keeps.
                        TxnOp::get(key, Some(GetOptions::new().with_keys_only())),
                        TxnOp::put(key, value.to_vec(), put_options(lease)),
                    ])
                    .or_else([TxnOp::get(key, None)])
            })
            .await?;
        let before = first_kv(first_range(&resp), OP)?;
        if !resp.succeeded() {
            return Err(match before {
                None => Error::NotFound {
                    key: key.to_string(),
                },
                Some(current) => Error::Conflict {
                    key: key.to_string(),
                    expected: expected_mod_revision,
                    current: Box::new(current),
                },
            });
        }
        let before = before.ok_or_else(|| unexpected(OP, "the updated key was not read"))?;
        Ok(KeyValue {
            key: key.to_string(),
            value,
            create_revision: before.create_revision,
            mod_revision: header_revision(resp.header(), OP)?,
        })
    }

    #[instrument(level = "debug", name = "delete", skip_all, fields(%key, expected = expected_mod_revision))]
    async fn delete(&self, key: &str, expected_mod_revision: Option<Revision>) -> Result<Deleted> {
        const OP: &str = "delete";
        key::validate_key(key)?;
        let mut when = vec![Compare::create_revision(key, CompareOp::Greater, 0)];
        if let Some(expected) = expected_mod_revision {
            when.push(Compare::mod_revision(key, CompareOp::Equal, expected));
        }
        let txn = Txn::new()
            .when(when)
            .and_then([TxnOp::delete(
                key,
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key, None)]);
        let resp = self.txn(txn).await.map_err(|f| f.into_error(OP))?;
        if !resp.succeeded() {
            return Err(
                match (first_kv(first_range(&resp), OP)?, expected_mod_revision) {
                    (None, _) => Error::NotFound {
                        key: key.to_string(),
                    },
                    (Some(current), Some(expected)) => Error::Conflict {
                        key: key.to_string(),
                        expected,
                        current: Box::new(current),
                    },
                    (Some(_), None) => unexpected(OP, "etcd refused to delete a key that exists"),
                },
            );
        }
        let prev = resp.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Delete(mut deleted) => deleted.take_prev_kvs().into_iter().next(),
            _ => None,
        });
        let prev = prev.ok_or_else(|| unexpected(OP, "etcd did not return the deleted value"))?;
        Ok(Deleted {
            revision: header_revision(resp.header(), OP)?,
            prev_kv: kv_from(prev, OP)?,
        })
    }

    #[instrument(level = "debug", name = "get", skip_all, fields(%key, ?revision))]
    async fn get(&self, key: &str, revision: Option<Revision>) -> Result<Option<KeyValue>> {
        const OP: &str = "get";
        key::validate_key(key)?;
        let revision = revision.filter(|r| *r > 0);
        if let Some(revision) = revision {
            self.check_not_compacted(revision)?;
        }
        let options = GetOptions::new().with_revision(revision.unwrap_or(0));
        let mut kv = self.kv.clone();
        let resp = match self.call(kv.get(key, Some(options))).await {
            Ok(resp) => resp,
            Err(failure) => return Err(self.read_failure(OP, revision, failure).await),
        };
        first_kv(Some(resp), OP)
    }

    #[instrument(level = "debug", name = "list", skip_all, fields(prefix = %req.prefix))]
    async fn list(&self, req: &ListRequest) -> Result<ListResponse> {
        const OP: &str = "list";
        let plan = ListPlan::new(req)?;
        if let Some(revision) = plan.revision {
            self.check_not_compacted(revision)?;
        }
        let limit = plan
            .fetch_limit()
            .map_or(0, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let options = GetOptions::new()
            .with_revision(plan.revision.unwrap_or(0))
            .with_limit(limit);
        let options = until(options, plan.end_key.clone());
        let mut kv = self.kv.clone();
        let mut resp = match self
            .call(kv.get(plan.start_key.clone(), Some(options)))
            .await
        {
            Ok(resp) => resp,
            Err(failure) => return Err(self.read_failure(OP, plan.revision, failure).await),
        };
        // The header holds the revision etcd is at now; that is the snapshot
        // only when no revision was asked for.
        let revision = match plan.revision {
            Some(revision) => revision,
            None => header_revision(resp.header(), OP)?,
        };
        let kvs = resp
            .take_kvs()
            .into_iter()
            .map(|kv| kv_from(kv, OP))
            .collect::<Result<Vec<_>>>()?;
        Ok(plan.page(revision, kvs))
    }

    #[instrument(level = "debug", name = "count", skip_all, fields(%prefix))]
    async fn count(&self, prefix: &str) -> Result<i64> {
        key::validate_prefix(prefix)?;
        let options = until(
            GetOptions::new().with_count_only(),
            key::prefix_end(prefix.as_bytes()),
        );
        let mut kv = self.kv.clone();
        let resp = self
            .call(kv.get(prefix, Some(options)))
            .await
            .map_err(|f| f.into_error("count"))?;
        Ok(resp.count())
    }

    #[instrument(level = "debug", name = "watch", skip_all, fields(%prefix, start = start_revision))]
    async fn watch(&self, prefix: &str, start_revision: Revision) -> Result<WatchStream> {
        key::validate_prefix(prefix)?;
        let state = self.read_compact("watch").await?;
        let start = if start_revision > 0 {
            if start_revision < state.stored {
                return Err(Error::Compacted {
                    requested: start_revision,
                    compacted: state.stored,
                });
            }
            start_revision
        } else {
            state.current + 1
        };
        let settings = watch::Settings {
            request_timeout: self.config.request_timeout,
            outage_limit: self.config.watch_outage_limit,
        };
        watch::watch(self.watch.clone(), prefix, start, settings).await
    }

    /// Records `revision` in `compact_rev_key`, then compacts etcd to the
    /// revision before it, so that every event from `revision` on can still be
    /// watched with its previous value.
    #[instrument(level = "debug", name = "compact", skip_all, fields(revision = revision))]
    async fn compact(&self, revision: Revision) -> Result<()> {
        const OP: &str = "compact";
        const ATTEMPTS: usize = 5;
        let mut state = self.read_compact(OP).await?;
        if revision > state.current {
            return Err(Error::FutureRevision {
                requested: revision,
                current: state.current,
            });
        }
        let mut recorded = false;
        for _ in 0..ATTEMPTS {
            if revision <= state.stored {
                return Ok(());
            }
            // Several servers may compact at once; the compare makes the
            // record move forward only, and the loser reads the winner's.
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    COMPACT_REV_KEY,
                    CompareOp::Equal,
                    state.mod_revision,
                )])
                .and_then([TxnOp::put(COMPACT_REV_KEY, revision.to_string(), None)]);
            if self
                .txn(txn)
                .await
                .map_err(|f| f.into_error(OP))?
                .succeeded()
            {
                recorded = true;
                break;
            }
            state = self.read_compact(OP).await?;
        }
        if !recorded {
            return Err(unexpected(
                OP,
                format!(
                    "{COMPACT_REV_KEY} kept changing under {ATTEMPTS} attempts to record revision {revision}"
                ),
            ));
        }
        let target = revision - 1;
        if target > 0 {
            let mut kv = self.kv.clone();
            let options = CompactionOptions::new().with_physical();
            match self.call(kv.compact(target, Some(options))).await {
                Ok(_) => {}
                // Compacted further already, by another server or by etcd's
                // own auto-compaction.
                Err(f) if f.kind == Kind::Compacted => {}
                Err(f) => return Err(f.into_error(OP)),
            }
        }
        self.compacted.fetch_max(revision, Ordering::Relaxed);
        info!(revision, "compacted");
        Ok(())
    }

    /// etcd deletes keys whose lease expired on its own, each with a delete
    /// event; there is nothing to do.
    async fn expire_keys(&self) -> Result<u64> {
        Ok(0)
    }

    #[instrument(level = "debug", name = "storage_stats", skip_all)]
    async fn storage_stats(&self) -> Result<StorageStats> {
        let mut maintenance = self.maintenance.clone();
        let status = self
            .call(maintenance.status())
            .await
            .map_err(|f| f.into_error("read storage stats"))?;
        let in_use = match status.raft_used_db_size() {
            0 => status.db_size(),
            in_use => in_use,
        };
        Ok(StorageStats {
            history_entries: None,
            bytes_in_use: u64::try_from(in_use).unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validation() {
        assert_eq!(EtcdConfig::default().validate(), Ok(()));
        assert_eq!(
            EtcdConfig::new(Vec::<String>::new()).validate(),
            Err(ConfigError::NoEndpoints)
        );
        assert!(matches!(
            EtcdConfig::new(["https://etcd:2379"]).validate(),
            Err(ConfigError::BadEndpoint { .. })
        ));
        let zero = EtcdConfig {
            request_timeout: Duration::ZERO,
            ..EtcdConfig::default()
        };
        assert_eq!(
            zero.validate(),
            Err(ConfigError::ZeroDuration("request_timeout"))
        );
    }

    #[test]
    fn compact_record_parsing() {
        assert_eq!(parse_revision(b"42", "t").unwrap(), 42);
        assert!(matches!(
            parse_revision(b"forty-two", "t"),
            Err(Error::Backend { .. })
        ));
        assert!(parse_revision(b"-1", "t").is_err());
    }

    /// connect() never hangs: nothing listens on this port.
    #[tokio::test]
    async fn unreachable_etcd_is_unavailable() {
        let config = EtcdConfig {
            connect_timeout: Duration::from_millis(500),
            request_timeout: Duration::from_millis(500),
            ..EtcdConfig::new(["http://127.0.0.1:1"])
        };
        let started = std::time::Instant::now();
        let err = EtcdStore::connect(config).await.unwrap_err();
        assert!(err.is_unavailable(), "{err}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}
