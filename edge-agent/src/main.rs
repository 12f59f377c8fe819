//! kedge-agent: the device side of kedge. Joins a control plane with a token and keeps
//! the node's link to it alive. Flags follow `k3s agent` where the concept is the same.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use kedge_agent::agent::{AgentOptions, run};
use kedge_agent::bootstrap::{BootstrapOptions, DEFAULT_NODE_PASSWORD_FILE, RenewalPolicy};
use kedge_agent::duration;
use kedge_agent::report::ReportConfig;
use kedge_tunnel::TunnelConfig;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(name = "kedge-agent", version, about = "The kedge edge agent")]
struct Args {
    /// The server to join: https://host:6443 (K3s's --server, env KEDGE_URL).
    #[arg(long, short = 's', env = "KEDGE_URL")]
    server: String,
    /// The join token, K10<ca hash>::<id>.<secret> (`kedge token create`; env KEDGE_TOKEN).
    #[arg(long, short = 't', env = "KEDGE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A file holding the join token.
    #[arg(long, env = "KEDGE_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// This node's name [default: the hostname].
    #[arg(long, env = "KEDGE_NODE_NAME")]
    node_name: Option<String>,
    /// Where the agent keeps its state; credentials and the local store go to
    /// <data-dir>/agent.
    #[arg(
        long,
        short = 'd',
        env = "KEDGE_DATA_DIR",
        default_value = "/var/lib/kedge"
    )]
    data_dir: PathBuf,
    /// A label for the node, key=value; repeatable.
    #[arg(long = "node-label")]
    node_labels: Vec<String>,
    /// The node password file (K3s's /etc/rancher/node/password).
    #[arg(long, default_value = DEFAULT_NODE_PASSWORD_FILE)]
    node_password_file: PathBuf,
    /// Accept a token without a CA hash and trust whatever CA the server presents.
    /// INSECURE: anyone between the device and the server can impersonate the server.
    #[arg(long)]
    insecure_skip_ca_hash: bool,
    /// How often the node's Lease is renewed.
    #[arg(long, default_value = "10s", value_parser = duration::parse)]
    lease_interval: Duration,
    /// How often the tunnel sends a keepalive when idle.
    #[arg(long, default_value = "15s", value_parser = duration::parse)]
    tunnel_keepalive: Duration,
    /// A tunnel that hears nothing for this long is dead.
    #[arg(long, default_value = "45s", value_parser = duration::parse)]
    tunnel_idle_timeout: Duration,
    /// The longest wait between reconnect attempts.
    #[arg(long, default_value = "30s", value_parser = duration::parse)]
    tunnel_backoff_cap: Duration,
    /// Turn on debug logs (RUST_LOG overrides).
    #[arg(long)]
    debug: bool,
}

fn labels(pairs: &[String]) -> Result<BTreeMap<String, String>> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("--node-label {pair:?}: write it as key=value"),
        })
        .collect()
}

fn options(args: Args) -> Result<AgentOptions> {
    let token = match (&args.token, &args.token_file) {
        (Some(t), _) => t.clone(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("read the token file {}", path.display()))?
            .trim()
            .to_string(),
        (None, None) => bail!(
            "give a join token with --token or --token-file (`kedge token create` prints one)"
        ),
    };
    let node_name = match args.node_name {
        Some(n) => n,
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .context("read the hostname; give --node-name")?
            .trim()
            .to_lowercase(),
    };
    let tunnel = TunnelConfig {
        keepalive_interval: args.tunnel_keepalive,
        idle_timeout: args.tunnel_idle_timeout,
        backoff_cap: args.tunnel_backoff_cap,
        ..TunnelConfig::default()
    };
    tunnel.validate().context("tunnel settings")?;
    Ok(AgentOptions {
        bootstrap: BootstrapOptions {
            server: args.server,
            token,
            node_name,
            data_dir: args.data_dir,
            node_password_file: args.node_password_file,
            insecure_skip_ca_hash: args.insecure_skip_ca_hash,
            tunnel,
            connect_timeout: Duration::from_secs(10),
        },
        labels: labels(&args.node_labels)?,
        lease_interval: args.lease_interval,
        status_interval: Duration::from_secs(300),
        report: ReportConfig::default(),
        renewal: RenewalPolicy::default(),
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    let level = if args.debug { "debug" } else { "info" };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = options(args).and_then(|options| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let stop = async {
                let mut term =
                    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    {
                        Ok(s) => s,
                        Err(_) => return std::future::pending().await,
                    };
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            };
            run(options, stop).await.map_err(anyhow::Error::from)
        })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("kedge-agent: {err:#}");
            ExitCode::FAILURE
        }
    }
}
