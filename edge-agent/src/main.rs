//! kedge-agent: the device side of kedge. Joins a control plane with a token and keeps
//! the node's link to it alive. Flags follow `k3s agent` where the concept is the same.
//!
//! Flags may also come from a YAML file (`--config`, default /etc/kedge/agent.yaml when
//! it exists) whose keys are the long flag names, as K3s's config.yaml; flags and
//! environment variables override it. The hardware profile (`--profile`, or detected)
//! is resolved before anything starts: a broken one stops the agent. `kedge-agent
//! profile list | show | detect | check` inspects profiles.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use kedge_agent::agent::{AgentOptions, NodeResources, run};
use kedge_agent::bootstrap::{BootstrapOptions, DEFAULT_NODE_PASSWORD_FILE, RenewalPolicy};
use kedge_agent::budgets::{BudgetConfig, Budgets};
use kedge_agent::duration;
use kedge_agent::node_runtime::RuntimeOptions;
use kedge_agent::report::ReportConfig;
use kedge_containerd::crilog::RotationPolicy;
use kedge_hardware_profiles::{self as profiles, MachineInfo, Profile};
use kedge_tunnel::TunnelConfig;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "kedge-agent",
    version,
    about = "The kedge edge agent",
    subcommand_negates_reqs = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// A YAML file of flags, keyed by their long names (`server`, `token`, `profile`,
    /// `node-label`, `data-dir`, ...); flags and environment variables override it
    /// [default: /etc/kedge/agent.yaml if it exists].
    #[arg(long, short = 'c', env = "KEDGE_CONFIG_FILE")]
    config: Option<PathBuf>,
    /// The server to join: https://host:6443 (K3s's --server, env KEDGE_URL).
    #[arg(long, short = 's', env = "KEDGE_URL", required = true)]
    server: Option<String>,
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
    /// How often the agent renews the node's Lease itself, over the link; 0 (the
    /// default) leaves it to the server, which renews it while the tunnel is up.
    #[arg(long, default_value = "0s", value_parser = duration::parse)]
    lease_interval: Duration,
    /// How often the tunnel sends a keepalive when idle [default: the profile's].
    #[arg(long, value_parser = duration::parse)]
    tunnel_keepalive: Option<Duration>,
    /// A tunnel that hears nothing for this long is dead.
    #[arg(long, default_value = "45s", value_parser = duration::parse)]
    tunnel_idle_timeout: Duration,
    /// The longest wait between reconnect attempts [default: the profile's].
    #[arg(long, value_parser = duration::parse)]
    tunnel_backoff_cap: Option<Duration>,
    /// The hardware profile: a built-in name (`kedge-agent profile list`) or the path
    /// of a profile file [default: detected from the device].
    #[arg(long, env = "KEDGE_PROFILE")]
    profile: Option<String>,
    /// Use this containerd instead of starting the agent's own: the path of its socket
    /// (K3s's --container-runtime-endpoint).
    #[arg(long)]
    container_runtime_endpoint: Option<PathBuf>,
    /// The containerd binary the agent starts (looked up on PATH).
    #[arg(long, default_value = "containerd")]
    containerd_binary: PathBuf,
    /// The pause binary for pod sandboxes [default: kedge-pause next to kedge-agent].
    #[arg(long)]
    pause_binary: Option<PathBuf>,
    /// Run no containers: the node registers tainted node.kedge.io/no-runtime and only
    /// keeps the link and the local store (for link tests and benchmarks).
    #[arg(long)]
    disable_runtime: bool,
    /// Run pods without the cgroup budgets: nothing bounds the memory of the agent,
    /// containerd or pods, and nothing is evicted. For machines where the agent may
    /// not manage cgroups; the budgets are on by default and need root.
    #[arg(long)]
    disable_cgroups: bool,
    /// Behave as the profile's device rather than this machine: the node's capacity is
    /// the profile's memory and CPUs, and memory.available counts only what kedge's
    /// cgroups hold. For the soak harness and tests that emulate a small device on a
    /// big machine; needs --profile naming a device.
    #[arg(long)]
    emulate_device: bool,
    /// How long a pressure condition stays after its threshold was last crossed (the
    /// kubelet's --eviction-pressure-transition-period).
    #[arg(long, default_value = "5m", value_parser = duration::parse)]
    eviction_pressure_transition_period: Duration,
    /// Hard eviction thresholds that replace the profile's, as the kubelet's flag:
    /// `memory.available<100Mi,nodefs.available<10%`; `<0%` drops a signal's
    /// threshold (as kind does for disks in CI).
    #[arg(long, value_delimiter = ',')]
    eviction_hard: Vec<String>,
    /// Soft eviction thresholds that replace the profile's, in the same form; a signal
    /// the profile has no grace period for needs --eviction-soft-grace-period.
    #[arg(long, value_delimiter = ',')]
    eviction_soft: Vec<String>,
    /// Grace periods of soft thresholds: `memory.available=1m30s`.
    #[arg(long, value_delimiter = ',')]
    eviction_soft_grace_period: Vec<String>,
    /// Where container logs are written.
    #[arg(long, default_value = "/var/log/pods")]
    pod_log_dir: PathBuf,
    /// Directories holding the CNI plugins, searched in order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "/usr/lib/cni,/opt/cni/bin"
    )]
    cni_bin_dir: Vec<PathBuf>,
    /// The pods' bridge on this host.
    #[arg(long, default_value = "cni0")]
    cni_bridge: String,
    /// Registry mirrors and credentials, in K3s's registries.yaml format.
    #[arg(long, default_value = "/etc/kedge/registries.yaml")]
    private_registry: PathBuf,
    /// The cluster DNS server for pods with dnsPolicy ClusterFirst (K3s's
    /// --cluster-dns); without it, pods use this node's resolv.conf.
    #[arg(long)]
    cluster_dns: Option<std::net::IpAddr>,
    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// Turn on debug logs (RUST_LOG overrides).
    #[arg(long)]
    debug: bool,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Inspect hardware profiles.
    #[command(subcommand)]
    Profile(ProfileCommand),
}

#[derive(Debug, clap::Subcommand)]
enum ProfileCommand {
    /// The built-in profiles.
    List,
    /// A profile's settings (`generic`: derived for this machine).
    Show {
        /// A built-in name or the path of a profile file.
        profile: String,
        /// Print the systemd drop-in for kedge-agent.service instead.
        #[arg(long)]
        systemd: bool,
    },
    /// What this machine is, and the profile the agent would pick.
    Detect {
        /// Read /proc and /sys under this directory instead of /.
        #[arg(long, default_value = "/", hide = true)]
        root: PathBuf,
    },
    /// Validate a profile file.
    Check { file: PathBuf },
}

/// The default config file, used when it exists.
const DEFAULT_CONFIG_FILE: &str = "/etc/kedge/agent.yaml";

/// The command line with the config file's settings put in front of it: each key
/// of the file becomes `--key=value` (a list, one per item; `true` a bare flag)
/// unless the command line or the environment already sets that flag. Flags given
/// later win, so the command line overrides the file either way.
fn with_config_file(argv: Vec<std::ffi::OsString>) -> Result<Vec<std::ffi::OsString>> {
    use clap::CommandFactory;
    use clap::parser::ValueSource;
    // A first pass with nothing required, to find the config file and what the
    // command line and the environment set.
    let lenient = Args::command().mut_args(|a| a.required(false));
    let matches = match lenient.try_get_matches_from(&argv) {
        Ok(m) => m,
        // Let the real parse report it (and handle --help and --version).
        Err(_) => return Ok(argv),
    };
    if matches.subcommand().is_some() {
        return Ok(argv);
    }
    let path = match matches.get_one::<PathBuf>("config") {
        Some(p) => p.clone(),
        None if Path::new(DEFAULT_CONFIG_FILE).exists() => PathBuf::from(DEFAULT_CONFIG_FILE),
        None => return Ok(argv),
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("read the config file {}", path.display()))?;
    let injected = config_args(&text, &Args::command(), |id| {
        matches!(
            matches.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    })
    .with_context(|| format!("config file {}", path.display()))?;
    let mut out = Vec::with_capacity(argv.len() + injected.len());
    let mut rest = argv.into_iter();
    out.extend(rest.next());
    out.extend(injected.into_iter().map(std::ffi::OsString::from));
    out.extend(rest);
    Ok(out)
}

/// The flags a config file's YAML stands for. `is_set(id)`: the command line or the
/// environment sets that flag already (the file's value is then dropped).
fn config_args(
    text: &str,
    command: &clap::Command,
    is_set: impl Fn(&str) -> bool,
) -> Result<Vec<String>> {
    let value: serde_yaml::Value =
        serde_yaml::from_str(text).context("not valid YAML; write `flag-name: value` lines")?;
    let map = match value {
        serde_yaml::Value::Null => return Ok(Vec::new()),
        serde_yaml::Value::Mapping(m) => m,
        _ => bail!("the file must be a mapping of flag names to values"),
    };
    let known: Vec<&clap::Arg> = command
        .get_arguments()
        .filter(|a| {
            a.get_long()
                .is_some_and(|l| !matches!(l, "config" | "help" | "version"))
        })
        .collect();
    let mut out = Vec::new();
    for (key, value) in map {
        let Some(key) = key.as_str() else {
            bail!("keys must be flag names, found {key:?}");
        };
        let Some(arg) = known.iter().find(|a| a.get_long() == Some(key)) else {
            let names: Vec<&str> = known.iter().filter_map(|a| a.get_long()).collect();
            bail!(
                "unknown key {key:?}; the keys are the long flag names: {}",
                names.join(", ")
            );
        };
        if is_set(arg.get_id().as_str()) {
            continue;
        }
        let scalar = |v: &serde_yaml::Value| -> Result<String> {
            Ok(match v {
                serde_yaml::Value::String(s) => s.clone(),
                serde_yaml::Value::Number(n) => n.to_string(),
                serde_yaml::Value::Bool(b) => b.to_string(),
                _ => bail!("{key}: give a single value (a string or a number)"),
            })
        };
        match arg.get_action() {
            clap::ArgAction::SetTrue => match value {
                serde_yaml::Value::Bool(true) => out.push(format!("--{key}")),
                serde_yaml::Value::Bool(false) => {}
                _ => bail!("{key}: give true or false"),
            },
            clap::ArgAction::Append => match &value {
                serde_yaml::Value::Sequence(items) => {
                    for item in items {
                        out.push(format!("--{key}={}", scalar(item)?));
                    }
                }
                v => out.push(format!("--{key}={}", scalar(v)?)),
            },
            _ => out.push(format!("--{key}={}", scalar(&value)?)),
        }
    }
    Ok(out)
}

/// The built-in profile or file `spec` names, as written (no machine check);
/// `generic` is derived for this machine.
fn named_profile(spec: &str) -> Result<Profile> {
    if spec == profiles::GENERIC {
        let machine = MachineInfo::from_root(Path::new("/"))?;
        return Ok(profiles::generic::derive(
            &profiles::builtin(profiles::GENERIC)?,
            &machine,
        )?);
    }
    if spec.contains('/') || spec.ends_with(".toml") {
        return Ok(profiles::load_file(Path::new(spec))?);
    }
    Ok(profiles::builtin(spec)?)
}

fn profile_command(command: ProfileCommand) -> Result<()> {
    match command {
        ProfileCommand::List => {
            println!("{:<16} {:>9} {:<18} DESCRIPTION", "NAME", "MEMORY", "ARCH");
            for p in profiles::builtin_profiles() {
                let memory = if p.name == profiles::GENERIC {
                    "machine".to_string()
                } else {
                    p.hardware.memory.to_string()
                };
                println!(
                    "{:<16} {:>9} {:<18} {}",
                    p.name,
                    memory,
                    p.hardware.architectures.join(","),
                    p.description
                );
            }
        }
        ProfileCommand::Show { profile, systemd } => {
            let p = named_profile(&profile)?;
            if systemd {
                print!("{}", p.systemd_drop_in());
            } else {
                print!("{}", p.summary());
            }
        }
        ProfileCommand::Detect { root } => {
            let machine = MachineInfo::from_root(&root)?;
            println!("model: {}", machine.model.as_deref().unwrap_or("(none)"));
            println!("memory: {} (MemTotal)", machine.mem_total);
            println!("cpus: {}", machine.cpus);
            println!("arch: {}", machine.arch);
            let (p, source) = profiles::resolve(None, &machine)?;
            println!("profile: {} ({source:?})", p.name);
        }
        ProfileCommand::Check { file } => {
            let p = profiles::load_file(&file)?;
            println!("{}: ok, profile {}", file.display(), p.name);
        }
    }
    Ok(())
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

/// An eviction signal by its kubelet name.
fn signal(name: &str, flag: &str) -> Result<profiles::Signal> {
    profiles::Signal::ALL
        .into_iter()
        .find(|s| s.as_str() == name.trim())
        .with_context(|| {
            let names: Vec<&str> = profiles::Signal::ALL.iter().map(|s| s.as_str()).collect();
            format!(
                "--{flag}: unknown signal {name:?}; use one of {}",
                names.join(", ")
            )
        })
}

/// `signal<threshold` items; `None` for `<0%` or `<0` (no threshold).
fn thresholds(
    items: &[String],
    flag: &str,
) -> Result<Vec<(profiles::Signal, Option<profiles::Threshold>)>> {
    items
        .iter()
        .filter(|i| !i.trim().is_empty())
        .map(|item| {
            let (name, value) = item.split_once('<').with_context(|| {
                format!(
                    "--{flag} {item:?}: write it as signal<threshold, e.g. memory.available<100Mi"
                )
            })?;
            let value = value.trim();
            let threshold = if matches!(value, "0" | "0%") {
                None
            } else {
                Some(
                    profiles::Threshold::parse(value)
                        .with_context(|| format!("--{flag} {item:?}"))?,
                )
            };
            Ok((signal(name, flag)?, threshold))
        })
        .collect()
}

/// Applies --eviction-hard, --eviction-soft and --eviction-soft-grace-period to the
/// profile, and checks the result as a profile file is checked.
fn override_thresholds(profile: &mut Profile, args: &Args) -> Result<()> {
    if args.eviction_hard.is_empty()
        && args.eviction_soft.is_empty()
        && args.eviction_soft_grace_period.is_empty()
    {
        return Ok(());
    }
    let mut graces = BTreeMap::new();
    for item in args
        .eviction_soft_grace_period
        .iter()
        .filter(|i| !i.trim().is_empty())
    {
        let (name, value) = item.split_once('=').with_context(|| {
            format!("--eviction-soft-grace-period {item:?}: write it as signal=duration, e.g. memory.available=1m30s")
        })?;
        let grace = duration::parse(value.trim())
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("--eviction-soft-grace-period {item:?}"))?;
        graces.insert(signal(name, "eviction-soft-grace-period")?, grace);
    }
    for (s, t) in thresholds(&args.eviction_hard, "eviction-hard")? {
        match t {
            Some(t) => profile.eviction_hard.insert(s, t),
            None => profile.eviction_hard.remove(&s),
        };
    }
    for (s, t) in thresholds(&args.eviction_soft, "eviction-soft")? {
        let Some(threshold) = t else {
            profile.eviction_soft.remove(&s);
            continue;
        };
        let grace_period = match graces
            .get(&s)
            .copied()
            .or_else(|| profile.eviction_soft.get(&s).map(|old| old.grace_period))
        {
            Some(g) => g,
            None => bail!(
                "--eviction-soft {s}: the profile has no grace period for it; give one with --eviction-soft-grace-period={s}=1m"
            ),
        };
        profile.eviction_soft.insert(
            s,
            profiles::SoftThreshold {
                threshold,
                grace_period,
            },
        );
    }
    for (s, grace) in graces {
        if let Some(soft) = profile.eviction_soft.get_mut(&s) {
            soft.grace_period = grace;
        }
    }
    profile
        .validate("the --eviction-* flags")
        .context("hardware profile")?;
    Ok(())
}

/// The profile in force and the machine it is for: this one, or with
/// `--emulate-device` the device the profile describes (its memory and CPUs; the
/// architecture stays this machine's, whose binary runs).
fn resolve_profile(args: &Args) -> Result<(Profile, profiles::Source, MachineInfo)> {
    let machine = MachineInfo::from_root(Path::new("/")).context("hardware profile")?;
    if !args.emulate_device {
        let (mut profile, source) =
            profiles::resolve(args.profile.as_deref(), &machine).context("hardware profile")?;
        override_thresholds(&mut profile, args)?;
        machine.check(&profile).context("hardware profile")?;
        return Ok((profile, source, machine));
    }
    let spec = match args.profile.as_deref() {
        None | Some(profiles::GENERIC) => bail!(
            "--emulate-device needs --profile naming the device to emulate (a built-in name or a profile file, not generic)"
        ),
        Some(spec) => spec,
    };
    let mut profile = named_profile(spec).context("hardware profile")?;
    override_thresholds(&mut profile, args)?;
    let arch = if profile.hardware.architectures.contains(&machine.arch) {
        machine.arch.clone()
    } else {
        // Emulated: the device's architecture, though this machine's binary runs.
        profile.hardware.architectures[0].clone()
    };
    let device = MachineInfo {
        model: None,
        mem_total: profile.hardware.memory,
        cpus: profile.hardware.cpus,
        arch,
    };
    device.check(&profile).context("hardware profile")?;
    let source = if spec.contains('/') || spec.ends_with(".toml") {
        profiles::Source::File
    } else {
        profiles::Source::Named
    };
    tracing::warn!(
        profile = %profile.name,
        memory = %device.mem_total,
        cpus = device.cpus,
        "emulating the profile's device (--emulate-device): capacity and memory.available are the device's, not this machine's"
    );
    Ok((profile, source, device))
}

/// The agent's options, and the cgroup budgets to set up before it starts (`None`
/// without a runtime or with --disable-cgroups).
fn options(args: Args) -> Result<(AgentOptions, Option<BudgetConfig>)> {
    let server = args
        .server
        .clone()
        .context("give the server to join with --server")?;
    // The profile first: a broken one stops the agent before it does anything,
    // rather than letting it run unbounded.
    let (profile, source, machine) = resolve_profile(&args)?;
    tracing::info!(
        profile = %profile.name,
        ?source,
        memory = %machine.mem_total,
        "hardware profile"
    );
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
        keepalive_interval: args.tunnel_keepalive.unwrap_or(profile.tunnel.keepalive),
        idle_timeout: args.tunnel_idle_timeout,
        backoff_cap: args
            .tunnel_backoff_cap
            .unwrap_or(profile.tunnel.backoff_cap),
        ..TunnelConfig::default()
    };
    tunnel.validate().context("tunnel settings")?;
    let capacity = profile.capacity(&machine);
    let allocatable = profile.allocatable(&capacity);
    let resources = NodeResources {
        capacity: BTreeMap::from([
            ("cpu".into(), format!("{}m", capacity.cpu.0)),
            ("memory".into(), format!("{}Ki", capacity.memory.0 / 1024)),
            ("pods".into(), capacity.pods.to_string()),
        ]),
        allocatable: BTreeMap::from([
            ("cpu".into(), format!("{}m", allocatable.cpu.0)),
            (
                "memory".into(),
                format!("{}Ki", allocatable.memory.0 / 1024),
            ),
            ("pods".into(), allocatable.pods.to_string()),
        ]),
    };
    let runtime = (!args.disable_runtime).then(|| RuntimeOptions {
        endpoint: args.container_runtime_endpoint.clone(),
        containerd_binary: args.containerd_binary.clone(),
        pause_binary: args.pause_binary.clone(),
        pod_log_dir: args.pod_log_dir.clone(),
        netns_dir: PathBuf::from(kedge_cni::DEFAULT_NETNS_DIR),
        cni_bin_dirs: args.cni_bin_dir.clone(),
        cni_bridge: args.cni_bridge.clone(),
        registries_file: args.private_registry.clone(),
        cluster_dns: args.cluster_dns,
        cluster_domain: args.cluster_domain.clone(),
        log_rotation: RotationPolicy {
            max_size: profile.container_log_max_size.0,
            max_files: profile.container_log_max_files as usize,
        },
        allocatable: resources.allocatable.clone(),
        memory_capacity: i64::try_from(capacity.memory.0).unwrap_or(i64::MAX),
        host_ip: None,
        image_gc_high_percent: profile.image_gc_high_threshold_percent,
        image_gc_low_percent: profile.image_gc_low_threshold_percent,
        budgets: None,
    });
    let budgets = match (&runtime, args.disable_cgroups) {
        (None, _) => None,
        (Some(_), true) => {
            tracing::warn!(
                "cgroup budgets are off (--disable-cgroups): nothing bounds the memory of the agent, containerd or pods, and nothing is evicted"
            );
            None
        }
        (Some(_), false) => {
            let mut config = BudgetConfig::from_profile(
                &profile,
                &capacity,
                &args.data_dir,
                args.emulate_device,
            );
            config.eviction.pressure_transition_period = args.eviction_pressure_transition_period;
            Some(config)
        }
    };
    let agent = AgentOptions {
        bootstrap: BootstrapOptions {
            server,
            token,
            node_name,
            data_dir: args.data_dir,
            node_password_file: args.node_password_file,
            insecure_skip_ca_hash: args.insecure_skip_ca_hash,
            tunnel,
            connect_timeout: Duration::from_secs(10),
        },
        // The profile's labels, then --node-label (which wins on a clash).
        labels: {
            let mut l = profile.node_labels(profiles::go_arch());
            l.extend(labels(&args.node_labels)?);
            l
        },
        lease_interval: args.lease_interval,
        status_interval: Duration::from_secs(300),
        report: ReportConfig {
            batch_size: profile.sync_batch_size as usize,
            ..ReportConfig::default()
        },
        renewal: RenewalPolicy::default(),
        runtime,
        resources,
    };
    Ok((agent, budgets))
}

/// The error and its causes, `: `-separated, leaving out a cause whose text the message
/// before it already holds (our errors often say their cause, and also keep it as their
/// source).
fn error_chain(err: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut previous = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !previous.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        previous = text;
    }
    out
}

/// glibc gives each thread that allocates its own malloc arena (up to eight per core),
/// and memory freed in one is not reused by another. The agent's allocations are small
/// and its threads few, so it runs with at most two arenas: pod-bench measured 17.0 MiB
/// instead of 19.7 MiB of RSS with 10 pods. glibc reads `MALLOC_ARENA_MAX` before the
/// first allocation, so the agent sets it and executes itself again, once; a value
/// already set (by the operator or a unit file) is kept.
fn limit_malloc_arenas() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    // The path /proc/self/exe names (not that link itself: under qemu-user it would
    // name the emulator).
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_else(|| "kedge-agent".into());
    let error = std::process::Command::new(exe)
        .arg0(argv0)
        .args(args)
        .env("MALLOC_ARENA_MAX", "2")
        .exec();
    // exec returns only when it failed: run as we are.
    eprintln!("kedge-agent: cannot limit malloc arenas ({error}); running without");
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let argv = match with_config_file(std::env::args_os().collect()) {
        Ok(a) => a,
        Err(err) => {
            eprintln!("kedge-agent: {}", error_chain(&err));
            return ExitCode::FAILURE;
        }
    };
    let mut args = Args::parse_from(argv);
    if let Some(Command::Profile(command)) = args.command.take() {
        return match profile_command(command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("kedge-agent: {}", error_chain(&err));
                ExitCode::FAILURE
            }
        };
    }
    let level = if args.debug { "debug" } else { "info" };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = options(args).and_then(|(mut options, budgets)| {
        // The budgets before anything else runs: the agent moves into its cgroup
        // now, and an agent that cannot set them up stops here.
        if let (Some(runtime), Some(config)) = (options.runtime.as_mut(), budgets) {
            runtime.budgets = Some(Budgets::setup(config)?);
        }
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
            eprintln!("kedge-agent: {}", error_chain(&err));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_chain_says_each_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("invalid containerd configuration: socket busy")]
        struct Inner;
        #[derive(Debug, thiserror::Error)]
        #[error("containerd: {0}")]
        struct Middle(#[source] Inner);
        #[derive(Debug, thiserror::Error)]
        #[error("cannot start the container runtime")]
        struct Outer(#[source] Middle);
        assert_eq!(
            error_chain(&anyhow::Error::from(Middle(Inner))),
            "containerd: invalid containerd configuration: socket busy"
        );
        assert_eq!(
            error_chain(&anyhow::Error::from(Outer(Middle(Inner)))),
            "cannot start the container runtime: containerd: invalid containerd configuration: socket busy"
        );
    }
    use clap::CommandFactory;

    fn args(yaml: &str, set: &[&str]) -> Result<Vec<String>> {
        config_args(yaml, &Args::command(), |id| set.contains(&id))
    }

    #[test]
    fn config_keys_are_the_long_flag_names() {
        let yaml = "server: https://cp:6443\ntoken: K10abc::x.y\nprofile: rpi-4-2gb\nnode-label:\n  - zone=a\n  - rack=3\ndata-dir: /data/kedge\ndebug: true\ninsecure-skip-ca-hash: false\n";
        assert_eq!(
            args(yaml, &[]).unwrap(),
            [
                "--server=https://cp:6443",
                "--token=K10abc::x.y",
                "--profile=rpi-4-2gb",
                "--node-label=zone=a",
                "--node-label=rack=3",
                "--data-dir=/data/kedge",
                "--debug",
            ]
        );
        // What the command line or the environment sets, the file does not.
        assert_eq!(
            args("server: https://cp:6443\nprofile: rpi-3b\n", &["profile"]).unwrap(),
            ["--server=https://cp:6443"]
        );
        assert!(args("", &[]).unwrap().is_empty());
    }

    #[test]
    fn config_errors_name_the_key() {
        let err = args("server: x\nprofil: rpi-3b\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "unknown key \"profil\"; the keys are the long flag names: server, token, "
            ),
            "{err}"
        );
        let err = args("config: /x\n", &[]).unwrap_err().to_string();
        assert!(err.starts_with("unknown key \"config\""), "{err}");
        let err = args("debug: yes please\n", &[]).unwrap_err().to_string();
        assert_eq!(err, "debug: give true or false");
        let err = args("server: [a, b]\n", &[]).unwrap_err().to_string();
        assert_eq!(err, "server: give a single value (a string or a number)");
        let err = args("- a\n", &[]).unwrap_err().to_string();
        assert_eq!(err, "the file must be a mapping of flag names to values");
    }

    #[test]
    fn the_profile_labels_the_node_and_sets_the_tunnel_timers() {
        let parse = |extra: &[&str]| {
            let mut argv = vec![
                "kedge-agent",
                "--server",
                "https://cp:6443",
                "--token",
                "K10abc::x.y",
                "--node-name",
                "n1",
                // Derived for whatever machine runs the test, so it fits any.
                "--profile",
                "generic",
            ];
            argv.extend_from_slice(extra);
            options(Args::try_parse_from(argv).unwrap()).unwrap().0
        };
        let o = parse(&["--node-label", "zone=a"]);
        assert_eq!(o.labels["kedge.io/profile"], "generic");
        assert_eq!(o.labels["node.kubernetes.io/instance-type"], "generic");
        assert_eq!(o.labels["kubernetes.io/arch"], profiles::go_arch());
        assert_eq!(o.labels["zone"], "a");
        let generic = profiles::builtin("generic").unwrap();
        assert_eq!(
            o.bootstrap.tunnel.keepalive_interval,
            generic.tunnel.keepalive
        );
        assert_eq!(o.bootstrap.tunnel.backoff_cap, generic.tunnel.backoff_cap);
        assert_eq!(o.report.batch_size, generic.sync_batch_size as usize);
        // Flags still win over the profile.
        let o = parse(&["--tunnel-keepalive", "7s", "--tunnel-backoff-cap", "9s"]);
        assert_eq!(
            o.bootstrap.tunnel.keepalive_interval,
            Duration::from_secs(7)
        );
        assert_eq!(o.bootstrap.tunnel.backoff_cap, Duration::from_secs(9));
    }

    #[test]
    fn eviction_flags_replace_the_profiles_thresholds() {
        let args = |extra: &[&str]| {
            let mut argv = vec!["kedge-agent", "--server", "https://cp:6443"];
            argv.extend_from_slice(extra);
            Args::try_parse_from(argv).unwrap()
        };
        let zero = || profiles::builtin("rpi-zero-2w").unwrap();
        let mut p = zero();
        override_thresholds(
            &mut p,
            &args(&[
                "--eviction-hard",
                "memory.available<60Mi,nodefs.available<0%",
                "--eviction-soft=nodefs.available<0%,imagefs.available<20%",
                "--eviction-soft-grace-period",
                "imagefs.available=1m",
            ]),
        )
        .unwrap();
        use profiles::{Signal, Threshold};
        assert_eq!(
            p.eviction_hard.get(&Signal::MemoryAvailable),
            Some(&Threshold::Quantity(profiles::Bytes::mib(60)))
        );
        assert!(!p.eviction_hard.contains_key(&Signal::NodefsAvailable));
        assert!(!p.eviction_soft.contains_key(&Signal::NodefsAvailable));
        let imagefs = p.eviction_soft[&Signal::ImagefsAvailable];
        assert_eq!(imagefs.threshold, Threshold::Percent(20.0));
        assert_eq!(imagefs.grace_period, Duration::from_secs(60));
        // The profile's own grace period serves when the flag gives none.
        let mut p = zero();
        override_thresholds(&mut p, &args(&["--eviction-soft=memory.available<100Mi"])).unwrap();
        assert_eq!(
            p.eviction_soft[&Signal::MemoryAvailable].grace_period,
            Duration::from_secs(30)
        );

        let err = |extra: &[&str]| {
            error_chain(&override_thresholds(&mut zero(), &args(extra)).unwrap_err())
        };
        assert_eq!(
            err(&["--eviction-hard=memory.avail<1Mi"]),
            "--eviction-hard: unknown signal \"memory.avail\"; use one of memory.available, nodefs.available, nodefs.inodesFree, imagefs.available"
        );
        assert!(
            err(&["--eviction-hard=memory.available=1Mi"]).starts_with(
                "--eviction-hard \"memory.available=1Mi\": write it as signal<threshold"
            )
        );
        assert!(err(&["--eviction-soft=imagefs.available<20%"]).starts_with(
            "--eviction-soft imagefs.available: the profile has no grace period for it"
        ));
        // What a profile file may not say, the flags may not either.
        assert!(
            err(&["--eviction-hard=memory.available<400Mi"])
                .contains("the reservations leave nothing for pods"),
            "{}",
            err(&["--eviction-hard=memory.available<400Mi"])
        );
    }

    #[test]
    fn the_file_goes_before_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.yaml");
        std::fs::write(&path, "server: https://file:6443\nprofile: rpi-3b\n").unwrap();
        let argv: Vec<std::ffi::OsString> = [
            "kedge-agent",
            "--config",
            path.to_str().unwrap(),
            "--profile",
            "rpi-zero-2w",
        ]
        .iter()
        .map(Into::into)
        .collect();
        let merged = with_config_file(argv).unwrap();
        let parsed = Args::try_parse_from(&merged).unwrap();
        assert_eq!(parsed.server.as_deref(), Some("https://file:6443"));
        assert_eq!(parsed.profile.as_deref(), Some("rpi-zero-2w"));
    }
}
