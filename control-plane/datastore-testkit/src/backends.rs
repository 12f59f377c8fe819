//! The backends the conformance suite runs against, each on a fresh database.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use tempfile::TempDir;

use crate::conformance::Backend;
use crate::servers::{Durability, Etcd, Postgres};
use kedge_datastore::watch::WindowLimits;
use kedge_datastore::{ManualClock, Store};
use kedge_datastore_etcd::{EtcdConfig, EtcdStore};
use kedge_datastore_postgres::{PostgresConfig, PostgresStore};
use kedge_datastore_sqlite::{SqliteConfig, SqliteStore};

/// A small window, so that tests exercise watchers falling out of it and
/// catching up from the database.
pub const TEST_WINDOW: WindowLimits = WindowLimits {
    max_events: 64,
    max_bytes: 1 << 20,
};

/// SQLite in a temporary directory, on a manual clock.
#[derive(Debug)]
pub struct SqliteBackend {
    pub dir: TempDir,
    pub clock: Arc<ManualClock>,
    pub store: Arc<dyn Store>,
}

impl SqliteBackend {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let clock = Arc::new(ManualClock::default());
        let mut config = SqliteConfig::new(dir.path().join("state.db"));
        config.clock = clock.clone();
        config.window = TEST_WINDOW;
        let store = Arc::new(SqliteStore::open(config).await.expect("open sqlite"));
        SqliteBackend { dir, clock, store }
    }
}

#[async_trait]
impl Backend for SqliteBackend {
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    async fn second_server(&self) -> Option<Arc<dyn Store>> {
        None
    }

    async fn pass_time(&self, by: Duration) {
        self.clock.advance(by);
        self.store.expire_keys().await.expect("expire keys");
    }

    fn short_ttl(&self) -> Duration {
        Duration::from_secs(60)
    }
}

/// The PostgreSQL server the tests of one process share; each test gets a
/// database of its own on it. The watchdog stops it when the process exits.
pub fn shared_postgres() -> &'static Postgres {
    static SERVER: OnceLock<Postgres> = OnceLock::new();
    SERVER.get_or_init(|| {
        Postgres::start(Durability::Fast).unwrap_or_else(|e| panic!("start PostgreSQL: {e}"))
    })
}

/// A database name unique to this process and call.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh database on the shared PostgreSQL, on a manual clock.
#[derive(Debug)]
pub struct PostgresBackend {
    pub url: String,
    pub clock: Arc<ManualClock>,
    pub store: Arc<dyn Store>,
}

impl PostgresBackend {
    pub async fn new() -> Self {
        let url = tokio::task::spawn_blocking(|| {
            shared_postgres()
                .create_database(&unique_name("kedge_test"))
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .await
        .unwrap();
        let clock = Arc::new(ManualClock::default());
        let store = Arc::new(Self::connect(&url, &clock).await);
        PostgresBackend { url, clock, store }
    }

    pub fn config(url: &str, clock: &Arc<ManualClock>) -> PostgresConfig {
        let mut config = PostgresConfig::new(url);
        config.clock = clock.clone();
        config.window = TEST_WINDOW;
        config
    }

    async fn connect(url: &str, clock: &Arc<ManualClock>) -> PostgresStore {
        PostgresStore::connect(Self::config(url, clock))
            .await
            .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
    }
}

#[async_trait]
impl Backend for PostgresBackend {
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    async fn second_server(&self) -> Option<Arc<dyn Store>> {
        Some(Arc::new(Self::connect(&self.url, &self.clock).await))
    }

    async fn pass_time(&self, by: Duration) {
        self.clock.advance(by);
        self.store.expire_keys().await.expect("expire keys");
    }

    fn short_ttl(&self) -> Duration {
        Duration::from_secs(60)
    }
}

/// A throwaway etcd of its own, on tmpfs. TTLs run on real time: etcd keeps
/// its own clock.
#[derive(Debug)]
pub struct EtcdBackend {
    pub etcd: Etcd,
    pub store: Arc<dyn Store>,
}

impl EtcdBackend {
    pub async fn new() -> Self {
        let etcd = tokio::task::spawn_blocking(|| Etcd::start(Durability::Fast))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("start etcd: {e}"));
        let store = Arc::new(Self::connect(&etcd).await);
        EtcdBackend { etcd, store }
    }

    async fn connect(etcd: &Etcd) -> EtcdStore {
        EtcdStore::connect(EtcdConfig::new([etcd.endpoint()]))
            .await
            .unwrap_or_else(|e| panic!("connect to etcd at {}: {e}", etcd.endpoint()))
    }
}

#[async_trait]
impl Backend for EtcdBackend {
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    async fn second_server(&self) -> Option<Arc<dyn Store>> {
        Some(Arc::new(Self::connect(&self.etcd).await))
    }

    async fn pass_time(&self, by: Duration) {
        tokio::time::sleep(by).await;
    }

    fn short_ttl(&self) -> Duration {
        Duration::from_secs(2)
    }
}
