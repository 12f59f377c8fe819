//! kedge's Kubernetes API server.
//!
//! It serves the Kubernetes REST API over HTTPS, from the datastore, to
//! unmodified clients: kubectl, kube-rs, client-go, the Python client.
//!
//! - [`server`]: TLS (client certificates optional, verified against the
//!   client CA), HTTP/1.1 and HTTP/2, the accept loop.
//! - [`auth`]: who is asking (certificate or bearer token) and may they.
//! - [`request`]: what a path and method ask for (upstream's RequestInfo).
//! - [`handlers`]: routing a request to discovery, OpenAPI, health or the
//!   registry, and shaping the answer.
//! - [`registry`]: create, get, list, update, patch, delete on the
//!   datastore with upstream's semantics (resourceVersion, preconditions,
//!   generation, finalizers, dry run).
//! - [`cache`] and [`watch`]: one datastore watch fanned out to every API
//!   watch, with bookmarks and 410 Gone.
//! - [`namespaces`]: system namespaces and namespace deletion.
//! - [`streams`]: log, exec, attach, port-forward and the node stats proxy,
//!   spoken to kubectl over [`websocket`] and [`spdy`], carried to the agent
//!   by a [`NodeStreams`] the node link installs.
//! - [`serviceaccount`]: the TokenRequest API and the service-account tokens it
//!   issues, checked as bearer tokens.
//! - [`discovery`], [`openapi`], [`output`], [`scale`], [`status`].
//!
//! Must not depend on: a particular datastore backend (it sees only the
//! `Store` trait), the agent, or how a node is reached (it sees only the
//! [`NodeStreams`] trait).

pub mod allocator;
pub mod auth;
pub mod cache;
pub mod discovery;
pub mod handlers;
pub mod namespaces;
pub mod nodestreams;
pub mod object;
pub mod openapi;
pub mod output;
pub mod registry;
pub mod request;
pub mod reviews;
pub mod scale;
pub mod server;
pub mod serviceaccount;
pub mod spdy;
pub mod status;
pub mod streams;
pub mod watch;
pub mod websocket;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use kedge_datastore::{Clock, Store};
use serde_json::{Value, json};

pub use auth::{TokenFile, User};
pub use nodestreams::{NodeStreams, StreamError, StreamErrorKind};
pub use server::{TlsMaterial, TunnelHandoff, serve, tls_config};

/// The Kubernetes version kedge speaks.
pub const KUBERNETES_VERSION: &str = "v1.32.0";

/// How the API server behaves.
#[derive(Clone, Debug)]
pub struct Config {
    /// `host:port` clients should use, as `/api` reports it.
    pub advertise_address: String,
    /// How often a watch with `allowWatchBookmarks` gets a bookmark.
    pub bookmark_interval: Duration,
    /// How many recent events the watch cache keeps.
    pub watch_cache_capacity: usize,
    /// Where Service ClusterIPs and NodePorts come from.
    pub service_networks: allocator::ServiceNetworks,
    /// Signs and checks service-account tokens; `None`: the TokenRequest API answers
    /// 503 and no bearer token is a service-account token.
    pub service_accounts: Option<serviceaccount::Issuer>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            advertise_address: "127.0.0.1:6443".to_string(),
            bookmark_interval: Duration::from_secs(60),
            watch_cache_capacity: 4096,
            service_networks: allocator::ServiceNetworks::default(),
            service_accounts: None,
        }
    }
}

/// The API server's shared state.
#[derive(Debug)]
pub struct ApiServer {
    pub config: Config,
    pub registry: registry::Registry,
    pub tokens: TokenFile,
    /// How to reach the agents; installed once the node link runs.
    node_streams: OnceLock<Arc<dyn NodeStreams>>,
}

/// The API server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot start the watch cache: {0}")]
    Cache(#[source] kedge_datastore::Error),
    #[error("cannot create the system namespaces: {0}")]
    Bootstrap(String),
}

impl ApiServer {
    /// Starts the watch cache and the namespace finalizer, and makes sure
    /// the system namespaces exist.
    pub async fn start(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: Config,
        tokens: TokenFile,
    ) -> Result<Arc<ApiServer>, StartError> {
        let cache = cache::WatchCache::start(store.clone(), config.watch_cache_capacity)
            .await
            .map_err(StartError::Cache)?;
        let registry =
            registry::Registry::new(store, cache, clock, config.service_networks.clone());
        namespaces::bootstrap(&registry)
            .await
            .map_err(|e| StartError::Bootstrap(e.message))?;
        namespaces::bootstrap_kubernetes_service(
            &registry,
            config.service_networks.kubernetes_ip(),
            &config.advertise_address,
        )
        .await
        .map_err(|e| StartError::Bootstrap(e.message))?;
        tokio::spawn(namespaces::run(registry.clone(), Duration::from_secs(1)));
        tokio::spawn(allocator_repair(registry.clone()));
        Ok(Arc::new(ApiServer {
            config,
            registry,
            tokens,
            node_streams: OnceLock::new(),
        }))
    }

    /// Installs the way to the agents. The node link starts after the API
    /// server, so this comes after [`ApiServer::start`]; until then logs,
    /// exec, attach, port-forward and the node proxy answer 503. Only the
    /// first call takes effect: a second gets its argument back.
    pub fn set_node_streams(
        &self,
        streams: Arc<dyn NodeStreams>,
    ) -> Result<(), Arc<dyn NodeStreams>> {
        self.node_streams.set(streams)
    }

    /// The way to the agents, once installed.
    pub fn node_streams(&self) -> Option<Arc<dyn NodeStreams>> {
        self.node_streams.get().cloned()
    }

    /// `/version`.
    pub fn version_info(&self) -> Value {
        json!({
            "major": "1",
            "minor": "32",
            "gitVersion": format!("{KUBERNETES_VERSION}+kedge-{}", env!("CARGO_PKG_VERSION")),
            "gitCommit": "",
            "gitTreeState": "clean",
            "buildDate": "1970-01-01T00:00:00Z",
            "goVersion": "rust",
            "compiler": "rustc",
            "platform": format!("linux/{}", go_arch()),
        })
    }
}

/// Releases Service addresses no Service uses any more, every 10 s.
async fn allocator_repair(registry: registry::Registry) {
    let info = kedge_resources::catalog::find("", "v1", "services");
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tick.tick().await;
        let Some(info) = info else { return };
        let services = match registry
            .list(info, None, &registry::ListOpts::default())
            .await
        {
            Ok(s) => s.items,
            Err(e) => {
                tracing::warn!(error = %e.message, "service address repair: cannot list Services");
                continue;
            }
        };
        match registry.services().repair(&services).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(released = n, "released unused service addresses"),
            Err(e) => tracing::warn!(error = %e, "service address repair failed"),
        }
    }
}

/// The architecture as Go (and so Kubernetes) names it.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    }
}
