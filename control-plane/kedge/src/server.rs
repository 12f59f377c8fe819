//! `kedge server`: the control plane. It opens the datastore and keeps it in
//! shape, takes the cluster's CAs from it (or starts the cluster), sets up this
//! server's certificates, writes the admin kubeconfig, serves the Kubernetes API
//! over HTTPS, runs the scheduler and the controllers, and serves agents on the
//! tunnel.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
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

    /// HTTPS listen port of the Kubernetes API.
    #[arg(long, default_value_t = 6443)]
    pub https_listen_port: u16,

    /// Address the Kubernetes API listens on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: IpAddr,

    /// Address clients are told to use; defaults to the bind address, or
    /// 127.0.0.1 when binding to all addresses.
    #[arg(long)]
    pub advertise_address: Option<IpAddr>,

    /// Extra hostnames or IPs for the serving certificate (repeat, or
    /// separate with commas).
    #[arg(long, value_delimiter = ',')]
    pub tls_san: Vec<String>,

    /// Write the admin kubeconfig to this file.
    #[arg(
        long,
        short = 'o',
        env = "KEDGE_KUBECONFIG_OUTPUT",
        default_value = "/etc/kedge/kedge.yaml"
    )]
    pub write_kubeconfig: PathBuf,

    /// File mode of the kubeconfig, in octal (e.g. 0644).
    #[arg(long, env = "KEDGE_KUBECONFIG_MODE", default_value = "0600", value_parser = parse_mode)]
    pub write_kubeconfig_mode: u32,

    /// The cluster's server token: it seals the CAs shared through the datastore (every
    /// server of a cluster needs the same one) and lets agents join. Without it the
    /// token in <data-dir>/server/token is used, or, for a new cluster, a new one is made
    /// and written there.
    #[arg(
        long,
        env = "KEDGE_TOKEN",
        hide_env_values = true,
        conflicts_with = "token_file"
    )]
    pub token: Option<String>,

    /// A file holding the server token.
    #[arg(long, env = "KEDGE_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// Static bearer tokens, one `token,user,uid,"group1,group2"` per line
    /// (kube-apiserver's --token-auth-file format).
    #[arg(long)]
    pub token_auth_file: Option<PathBuf>,

    /// Run the control plane without a local agent.
    #[arg(long)]
    pub disable_agent: bool,

    /// The local agent's node name (default: the hostname).
    #[arg(long, env = "KEDGE_NODE_NAME")]
    pub node_name: Option<String>,

    /// A label for the local agent's node, key=value (repeat for more).
    #[arg(long = "node-label")]
    pub node_labels: Vec<String>,

    /// The kedge-agent binary the local agent runs (default: the one next to kedge,
    /// else on PATH).
    #[arg(long)]
    pub agent_binary: Option<PathBuf>,

    /// A flag for the local agent, as K3s's --kubelet-arg (repeat for more), e.g.
    /// --agent-arg=--profile=rpi-4-8gb.
    #[arg(long = "agent-arg", allow_hyphen_values = true)]
    pub agent_args: Vec<String>,

    /// Do not run the scheduler.
    #[arg(long)]
    pub disable_scheduler: bool,

    /// Do not run the controllers.
    #[arg(long)]
    pub disable_controller_manager: bool,

    /// IPv4 network for pod IPs; each node gets a /24 of it as its podCIDR.
    #[arg(long, default_value = "10.42.0.0/16")]
    pub cluster_cidr: String,

    /// IPv4 network for Service ClusterIPs.
    #[arg(long, default_value = "10.43.0.0/16")]
    pub service_cidr: String,

    /// Port range for NodePort Services.
    #[arg(long, default_value = "30000-32767")]
    pub service_node_port_range: String,

    /// How long the node client certificates issued to agents are valid.
    #[arg(long, default_value = "8760h", value_parser = crate::duration::parse)]
    pub node_certificate_validity: Duration,

    /// How long a node may go without renewing its Lease before it is
    /// marked Unknown and tainted unreachable.
    #[arg(long, default_value = "50s", value_parser = crate::duration::parse)]
    pub node_monitor_grace_period: Duration,
}

fn parse_mode(text: &str) -> std::result::Result<u32, String> {
    let digits = text.trim_start_matches("0o");
    u32::from_str_radix(digits, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("{text:?} is not an octal file mode such as 0600 or 0644"))
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
    let controller_config = kedge_controllers::Config {
        node_monitor_grace_period: args.node_monitor_grace_period,
        cluster_cidr: args.cluster_cidr.clone(),
        ..kedge_controllers::Config::default()
    };
    controller_config.validate()?;
    let service_networks = kedge_apiserver::allocator::ServiceNetworks::parse(
        &args.service_cidr,
        &args.service_node_port_range,
    )
    .map_err(anyhow::Error::msg)?;
    let sans = args
        .tls_san
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim()
                .parse::<kedge_pki::San>()
                .with_context(|| format!("--tls-san {s:?}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let tokens = match &args.token_auth_file {
        Some(path) => kedge_apiserver::TokenFile::load(path)?,
        None => kedge_apiserver::TokenFile::default(),
    };
    let advertise = args
        .advertise_address
        .unwrap_or(if args.bind_address.is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            args.bind_address
        });
    // Catch SIGTERM before saying "ready", so a stop that follows at once is
    // a clean shutdown rather than the default kill.
    let signal = shutdown_signal()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        signal.await;
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };

    let store = open_datastore(&endpoint)
        .await
        .with_context(|| format!("open the datastore ({})", endpoint.redacted()))?;
    let revision = store.current_revision().await?;
    info!(datastore = %endpoint.redacted(), revision, "datastore ready");

    let mut pki_options = kedge_pki::PkiOptions { extra_sans: sans };
    pki_options.extra_sans.push(kedge_pki::San::Ip(advertise));
    if !args.bind_address.is_unspecified() {
        // The server's own components dial the address it listens on.
        pki_options
            .extra_sans
            .push(kedge_pki::San::Ip(args.bind_address));
    }
    if let Some(host) = hostname()
        && let Ok(san) = host.parse::<kedge_pki::San>()
    {
        pki_options.extra_sans.push(san);
    }
    let tls_dir = kedge_pki::layout::tls_dir(&args.data_dir);
    let server_token = server_token(&args)?;
    let cluster = kedge_nodelink::cluster::load_or_init(
        store.as_ref(),
        server_token,
        &tls_dir,
        std::time::SystemTime::now(),
        |buf| rand::RngCore::fill_bytes(&mut rand::rng(), buf),
    )
    .await
    .context("set up the cluster's certificate authorities")?;
    let pki = Arc::new(
        kedge_pki::ServerPki::load_or_create(&tls_dir, &pki_options, std::time::SystemTime::now())
            .context("set up the cluster certificates")?,
    );
    let tls = kedge_apiserver::tls_config(&kedge_apiserver::TlsMaterial {
        cert_chain: pki.serving_cert_chain_der(),
        key_pkcs8: pki.serving_key_der().to_vec(),
        client_ca: pki.client_ca_der().to_vec(),
    })?;

    let listen = SocketAddr::new(args.bind_address, args.https_listen_port);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| {
            format!(
                "listen on {listen} (is another server running? choose another --https-listen-port)"
            )
        })?;
    let port = listener.local_addr()?.port();
    let advertise_address = SocketAddr::new(advertise, port).to_string();
    if advertise.is_loopback() && !matches!(endpoint, Endpoint::Sqlite(_)) {
        // Other servers forward logs, exec and port-forward to the address a server
        // records for the tunnels it holds.
        tracing::warn!(
            advertise = %advertise_address,
            "this server advertises a loopback address on a shared datastore: the cluster's \
             other servers cannot reach the agents whose tunnels it holds; give \
             --advertise-address"
        );
    }
    let config = kedge_apiserver::Config {
        advertise_address: advertise_address.clone(),
        service_networks,
        service_accounts: Some(kedge_apiserver::serviceaccount::Issuer::new(
            pki.service_account_key().clone(),
            kedge_apiserver::serviceaccount::DEFAULT_ISSUER,
        )),
        ..Default::default()
    };
    let api = kedge_apiserver::ApiServer::start(
        store.clone(),
        Arc::new(kedge_datastore::SystemClock),
        config,
        tokens,
    )
    .await
    .context("start the API server")?;

    // Agents: the server token also joins them, and the tunnel on UDP <port> (QUIC) and,
    // through the API listener's ALPN hand-over, TCP <port>.
    let token = kedge_nodelink::tokens::ensure_server_token(
        &api.registry,
        &cluster.token,
        pki.server_ca_pem(),
        &args.data_dir,
        std::time::SystemTime::now(),
    )
    .await
    .context("store the server token")?;
    info!(
        token_file = %kedge_nodelink::tokens::server_token_path(&args.data_dir).display(),
        token_id = %token.id(),
        "join token ready"
    );
    let link = kedge_nodelink::NodeLink::start(
        &api,
        pki.clone(),
        Arc::new(kedge_datastore::SystemClock),
        kedge_nodelink::LinkOptions {
            quic_addr: Some(SocketAddr::new(args.bind_address, port)),
            tcp_addr: None,
            tunnel: kedge_tunnel::TunnelConfig::default(),
            bootstrap: kedge_nodelink::bootstrap::BootstrapConfig {
                node_cert_validity: args.node_certificate_validity,
            },
            server_id: crate::control::identity(),
            advertise_address: advertise_address.clone(),
            lease: kedge_nodelink::lease::LeaseOptions::for_grace_period(
                args.node_monitor_grace_period,
            ),
        },
    )
    .await
    .with_context(|| format!("listen for agents on UDP {port} (is another server using it?)"))?;
    if api
        .set_node_streams(Arc::new(kedge_nodelink::streams::LinkStreams::new(
            link.clone(),
        )))
        .is_err()
    {
        anyhow::bail!("the API server already has a way to the nodes");
    }
    let handoff = Some(Arc::new(link.handoff()));
    let mut tls = (*tls).clone();
    tls.alpn_protocols.push(kedge_tunnel::ALPN.to_vec());
    tls.alpn_protocols
        .push(kedge_nodelink::peer::PEER_ALPN.to_vec());
    let tls = Arc::new(tls);

    let server_url = format!("https://{advertise_address}");
    kedge_pki::write_kubeconfig(
        &args.write_kubeconfig,
        args.write_kubeconfig_mode,
        &server_url,
        pki.server_ca_pem(),
        pki.admin_cert_pem(),
        pki.admin_key_pem(),
    )
    .with_context(|| format!("write the kubeconfig {}", args.write_kubeconfig.display()))?;
    info!(kubeconfig = %args.write_kubeconfig.display(), "wrote kubeconfig");
    // The local agent, checked before anything listens: a missing binary is a clear
    // error now rather than a node that never appears.
    let local_agent = if args.disable_agent {
        None
    } else {
        let run_pods = nix::unistd::geteuid().is_root();
        if !run_pods {
            tracing::warn!(
                "the local agent runs pods only as root (containerd, runc, CNI): it joins without a container runtime"
            );
        }
        Some(crate::local_agent::LocalAgentOptions {
            binary: crate::local_agent::locate_binary(args.agent_binary.as_deref())?,
            server_url: String::new(),
            data_dir: args.data_dir.clone(),
            node_name: args.node_name.clone().or_else(hostname).context(
                "name the local agent's node with --node-name (the hostname is unknown)",
            )?,
            node_labels: args.node_labels.clone(),
            extra_args: args.agent_args.clone(),
            run_pods,
        })
    };
    info!(listen = %listen, server = %server_url, "Kubernetes API ready");
    // The token itself never goes to the log: the line names the file that holds it.
    // install.sh comes with the kedge-agent packages (docs/packaging.md).
    info!(
        "to join a device, run on it: sudo /usr/share/kedge-agent/install.sh --server {server_url} --token <the token in {}> (from the tarball: sudo ./install.sh ...)",
        kedge_nodelink::tokens::server_token_path(&args.data_dir).display()
    );

    // Loopback when the API listens on every address; otherwise the one it listens on,
    // since nothing answers on 127.0.0.1 then.
    let local_url = format!(
        "https://{}",
        SocketAddr::new(
            if args.bind_address.is_unspecified() {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            } else {
                args.bind_address
            },
            port
        )
    );
    let control = crate::control::start(
        &pki,
        crate::control::ControlPlaneOptions {
            api_url: local_url.clone(),
            run_scheduler: !args.disable_scheduler,
            run_controllers: !args.disable_controller_manager,
            controllers: controller_config,
        },
        &stopped,
    )
    .await?;

    // The API stops serving only after the scheduler and the controllers
    // have stopped and released their Leases through it.
    let (api_stop, mut api_stopped) = tokio::sync::watch::channel(false);
    let serving = tokio::spawn(kedge_apiserver::serve(
        api,
        listener,
        tls,
        handoff,
        async move {
            let _ = api_stopped.wait_for(|stop| *stop).await;
        },
    ));
    let local_agent = local_agent.map(|mut options| {
        options.server_url = local_url.clone();
        tokio::spawn(crate::local_agent::supervise(options, stopped()))
    });
    maintenance::run(store.clone(), maintenance, stopped()).await;
    // The local agent stops first, while the server still answers it.
    if let Some(agent) = local_agent {
        let _ = agent.await;
    }
    if tokio::time::timeout(Duration::from_secs(5), control.join_all())
        .await
        .is_err()
    {
        tracing::warn!("the scheduler and controllers did not stop within 5s");
    }
    link.shutdown();
    let _ = api_stop.send(true);
    let _ = serving.await;
    info!("shutting down");
    drop(store);
    Ok(())
}

/// The server token: `--token`, else `--token-file`, else the one an earlier start left
/// in `<data-dir>/server/token`; `None` for a new cluster.
fn server_token(args: &ServerArgs) -> Result<Option<kedge_nodelink::tokens::ServerToken>> {
    use kedge_nodelink::tokens::{ServerToken, read_server_token};
    if let Some(text) = &args.token {
        return ServerToken::parse(text).map(Some).context("--token");
    }
    if let Some(path) = &args.token_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read the token file {}", path.display()))?;
        return ServerToken::parse(&text)
            .map(Some)
            .with_context(|| format!("the token file {}", path.display()));
    }
    read_server_token(&args.data_dir).with_context(|| {
        format!(
            "read {}; remove it to start a new cluster, or give --token",
            kedge_nodelink::tokens::server_token_path(&args.data_dir).display()
        )
    })
}

pub(crate) fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_lowercase())
        .filter(|h| !h.is_empty())
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
