//! `kedge server`: the control plane. Today it is the datastore and its upkeep;
//! the Kubernetes API, the scheduler, the controllers and the agent tunnel
//! build on it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tracing::info;

use crate::endpoint::Endpoint;
use kedge_datastore::Store;
use kedge_datastore::maintenance::{self, MaintenanceConfig};
use kedge_datastore_etcd::{EtcdConfig, EtcdStore};
use kedge_datastore_postgres::{PostgresConfig, PostgresStore};
use kedge_datastore_sqlite::{SqliteConfig, SqliteStore};

/// Flags of `kedge server`, named as in K3s where the concept is the same.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// Folder to hold state.
    #[arg(long, env = "KEDGE_DATA_DIR", default_value = "/var/lib/kedge")]
    pub data_dir: PathBuf,

    /// Datastore: empty for the embedded SQLite, or postgres://…, etcd://host:port,
    /// http(s)://host:port, sqlite:///path.
    #[arg(long, env = "KEDGE_DATASTORE_ENDPOINT", default_value = "")]
    pub datastore_endpoint: String,

    /// How often to compact the datastore's history.
    #[arg(long, default_value = "5m", value_parser = crate::duration::parse)]
    pub datastore_compact_interval: Duration,

    /// How many of the newest revisions compaction keeps.
    #[arg(long, default_value_t = 1000)]
    pub datastore_compact_retain: i64,
}

impl ServerArgs {
    /// Checks everything that can be checked before touching the disk or network.
    fn validate(&self) -> Result<(Endpoint, MaintenanceConfig)> {
        let endpoint = Endpoint::parse(&self.datastore_endpoint, &self.data_dir)?;
        if self.datastore_compact_interval < Duration::from_secs(1) {
            bail!("--datastore-compact-interval must be at least 1s");
        }
        if self.datastore_compact_retain < 0 {
            bail!("--datastore-compact-retain must not be negative");
        }
        let maintenance = MaintenanceConfig {
            compact_interval: self.datastore_compact_interval,
            compact_retain: self.datastore_compact_retain,
            ..MaintenanceConfig::default()
        };
        Ok((endpoint, maintenance))
    }
}

pub async fn open_datastore(endpoint: &Endpoint) -> Result<Arc<dyn Store>> {
    let store: Arc<dyn Store> = match endpoint {
        Endpoint::Sqlite(path) => Arc::new(SqliteStore::open(SqliteConfig::new(path)).await?),
        Endpoint::Postgres(url) => {
            Arc::new(PostgresStore::connect(PostgresConfig::new(url)).await?)
        }
        Endpoint::Etcd(hosts) => {
            Arc::new(EtcdStore::connect(EtcdConfig::new(hosts.clone())).await?)
        }
    };
    Ok(store)
}

pub async fn run(args: ServerArgs) -> Result<()> {
    let (endpoint, maintenance) = args.validate()?;
    // Catch SIGTERM before saying "ready", so a stop that follows at once is
    // a clean shutdown rather than the default kill.
    let shutdown = shutdown_signal()?;
    let store = open_datastore(&endpoint)
        .await
        .with_context(|| format!("open the datastore ({})", endpoint.redacted()))?;
    let revision = store.current_revision().await?;
    info!(
        datastore = %endpoint.redacted(),
        revision,
        "datastore ready; the Kubernetes API is not served by this release yet"
    );
    maintenance::run(store.clone(), maintenance, shutdown).await;
    info!("shutting down");
    drop(store);
    Ok(())
}

/// Installs the SIGINT and SIGTERM handlers now, and returns a future that
/// resolves when either signal arrives.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("install the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("install the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}
