//! The scheduler and the controllers inside `kedge server`: API clients of
//! the server's own Kubernetes API, each under its own leader election, as
//! kube-scheduler and kube-controller-manager are.
//!
//! Each gets a client certificate issued at start by the cluster's client
//! CA (`CN=system:kube-scheduler`, `CN=system:kube-controller-manager`),
//! kept in memory only, and talks to the API over loopback HTTPS like any
//! other client.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, Result};
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::task::JoinSet;
use tracing::{error, info};

use kedge_controllers::leader::{LeaderConfig, run_elected};
use kedge_controllers::{Clock, SystemClock};

/// What runs, and how.
#[derive(Debug, Clone)]
pub struct ControlPlaneOptions {
    /// `https://127.0.0.1:<port>`: where the components reach the API.
    pub api_url: String,
    pub run_scheduler: bool,
    pub run_controllers: bool,
    pub controllers: kedge_controllers::Config,
}

/// A kube-rs client of the local API as `user`, with a fresh certificate.
async fn client_as(pki: &kedge_pki::ServerPki, api_url: &str, user: &str) -> Result<kube::Client> {
    let cert = pki
        .issue_client_cert(user, &[], kedge_pki::LEAF_VALIDITY, SystemTime::now())
        .with_context(|| format!("issue the client certificate of {user}"))?;
    let yaml =
        kedge_pki::render_kubeconfig(api_url, pki.server_ca_pem(), &cert.cert_pem, &cert.key_pem)?;
    let kubeconfig = Kubeconfig::from_yaml(&yaml).context("read the generated kubeconfig")?;
    let options = KubeConfigOptions::default();
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .context("build the client configuration")?;
    config.read_timeout = Some(Duration::from_secs(300));
    kube::Client::try_from(config).with_context(|| format!("build the API client of {user}"))
}

/// A leader-election identity: the hostname and a random suffix, as upstream.
pub(crate) fn identity() -> String {
    let host = crate::server::hostname().unwrap_or_default();
    format!("{host}_{}", uuid::Uuid::new_v4())
}

/// Starts the scheduler and the controllers; each runs while this server
/// holds its Lease, until `stopped` resolves.
pub async fn start<S, F>(
    pki: &kedge_pki::ServerPki,
    options: ControlPlaneOptions,
    stopped: S,
) -> Result<JoinSet<()>>
where
    S: Fn() -> F,
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let identity = identity();
    let mut tasks = JoinSet::new();
    if options.run_controllers {
        let client = client_as(pki, &options.api_url, "system:kube-controller-manager").await?;
        let ctx = kedge_controllers::Context {
            client: client.clone(),
            clock: clock.clone(),
            config: Arc::new(options.controllers.clone()),
        };
        let lease = LeaderConfig::new("kube-controller-manager", &identity);
        let stop = stopped();
        tasks.spawn(async move {
            let work = || kedge_controllers::run(ctx.clone());
            if let Err(e) = run_elected(client, lease, clock, work, stop).await {
                error!(error = %e, "the controllers stopped");
            }
        });
        info!(
            "controllers started; they run while this server holds the kube-controller-manager lease"
        );
    }
    if options.run_scheduler {
        let client = client_as(pki, &options.api_url, "system:kube-scheduler").await?;
        let lease = LeaderConfig::new("kube-scheduler", &identity);
        let stop = stopped();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        tasks.spawn(async move {
            let work = || {
                let client = client.clone();
                async move {
                    kedge_scheduler::run(client, kedge_scheduler::Config::default())
                        .await
                        .map_err(|e| kedge_controllers::Error::Invalid(format!("scheduler: {e}")))
                }
            };
            if let Err(e) = run_elected(client.clone(), lease, clock, work, stop).await {
                error!(error = %e, "the scheduler stopped");
            }
        });
        info!("scheduler started; it runs while this server holds the kube-scheduler lease");
    }
    Ok(tasks)
}
