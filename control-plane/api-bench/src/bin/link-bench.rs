//! link-bench: the agent↔server link of the real `kedge server` and real `kedge-agent`
//! binaries across a network namespace, written into docs/benchmarks.md (its own
//! section, between `<!-- link-bench:begin -->` and `<!-- link-bench:end -->`).
//!
//! Setup: the release `kedge server` on embedded SQLite in the root namespace, bound to
//! one end of a veth pair (`--bind-address`/`--advertise-address`, so its certificate
//! carries that address); every agent runs in one network namespace behind the other
//! end (`ip netns exec`). Bytes are counted by nftables counters in the agent's
//! namespace on all packets to and from the server's address (IP packet lengths: IP,
//! UDP/TCP, QUIC or TLS headers included). Memory is the server's VmRSS from /proc.
//!
//! What is measured:
//! 1. Reconnect time after the link is restored, p50/p99 over `--trials`: the agent's
//!    veth goes down until the agent has noticed (tunnel idle timeout) and for at least
//!    `--down` seconds, then up; the time runs from just before `ip link set up` to the
//!    server logging the node's "agent connected" (and, also given, to the agent's
//!    "connected; registering"). These agents run with keepalive 1 s and idle timeout
//!    4 s so that an outage of a few seconds is a real disconnect (at the defaults, 15 s
//!    and 45 s, the QUIC connection would just ride it out), and the default reconnect
//!    backoff (250 ms doubling, full jitter, cap 30 s). The agent process is restarted
//!    before each trial, as if the outages were more than the tunnel's 30 s
//!    "stable connection" apart (its backoff starts over after one), without waiting
//!    30 s per trial.
//! 2. Bytes on the wire, both directions: (i) an agent whose local store is empty
//!    (already joined: its certificate is kept) starts and does the full sync of a node
//!    with 100 bound pods; (ii) the same agent restarts after one pod changed while it
//!    was offline, and resumes; (iii) it restarts with nothing changed. Each window runs
//!    from the agent's start to its store holding the result, plus 2 s.
//! 3. Server memory per connected agent: a fresh server's RSS with 0 agents, then with
//!    `--agents` agents connected (joined, registered, synced, idle 20 s):
//!    (RSS_N − RSS_0) / N.
//! 4. Idle uplink per agent: the same N agents at the default settings (the server
//!    renews their Leases from the tunnel's liveness; tunnel keepalive 15 s), bytes from
//!    the agents to the server in `--idle-windows` windows of `--idle` seconds, per
//!    agent, in kbit/s: the median window, and its ratio to KubeEdge's 0.25 kbit/s;
//!    then again with the agents renewing their own Leases every 10 s over the link
//!    (`--lease-interval 10s`, as before the server renewed them), for comparison.
//!
//! Needs root, iproute2, nftables and kubectl. Usage:
//! `cargo build --release -p kedge -p kedge-agent -p kedge-api-bench && sudo
//! target/release/link-bench [--trials 50] [--agents 50] [--idle 30] [--idle-windows 6]
//! [--no-docs]`

#[allow(dead_code)]
#[path = "../procfs.rs"]
mod procfs;
#[allow(dead_code)]
#[path = "../server.rs"]
mod server;
#[allow(dead_code)]
#[path = "../stats.rs"]
mod stats;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;

use crate::stats::{mib, ms, percentile};

const KUBECTL: &str = "/usr/bin/kubectl";
/// KubeEdge's published steady-state uplink per node, and the target.
const ANCHOR_KBPS: f64 = 0.25;
const RECONNECT_TARGET: Duration = Duration::from_secs(3);

/// Measures the agent↔server link in network namespaces.
#[derive(Debug, Parser)]
#[command(name = "link-bench")]
struct Args {
    /// Reconnect trials.
    #[arg(long, default_value_t = 50)]
    trials: usize,
    /// Minimum seconds the link stays down per trial.
    #[arg(long, default_value_t = 6)]
    down: u64,
    /// Agents connected at once for the memory and idle measurements.
    #[arg(long, default_value_t = 50)]
    agents: usize,
    /// Seconds of one idle-uplink window (a multiple of the 15 s keepalive).
    #[arg(long, default_value_t = 30)]
    idle: u64,
    /// Idle-uplink windows per setting; the median window is reported.
    #[arg(long, default_value_t = 6)]
    idle_windows: usize,
    /// Pods bound to the node for the full sync.
    #[arg(long, default_value_t = 100)]
    pods: usize,
    /// The kedge binary (default: target/release/kedge); kedge-agent is taken from
    /// the same directory.
    #[arg(long)]
    kedge: Option<PathBuf>,
    /// Print the section but do not write docs/benchmarks.md.
    #[arg(long)]
    no_docs: bool,
}

fn say(what: impl std::fmt::Display) {
    eprintln!("[link-bench] {what}");
}

fn run(args: &[&str]) -> Result<String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("run {args:?}"))?;
    ensure!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn prerequisites() -> Result<()> {
    let mut missing = Vec::new();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2));
    if euid != Some("0") {
        missing.push("root (to create network namespaces)".to_string());
    }
    for (tool, flag) in [("ip", "-V"), ("nft", "--version")] {
        if !Command::new(tool)
            .arg(flag)
            .output()
            .is_ok_and(|o| o.status.success())
        {
            missing.push(format!("the `{tool}` command"));
        }
    }
    if !Path::new(KUBECTL).exists() {
        missing.push(format!("kubectl at {KUBECTL}"));
    }
    if !missing.is_empty() {
        bail!(
            "link-bench cannot run here; missing: {}",
            missing.join(", ")
        );
    }
    Ok(())
}

/// The agents' namespace and the veth pair to it; nftables counters inside it.
struct Net {
    ns: String,
    host_veth: String,
    ns_veth: String,
    server_ip: String,
}

impl Net {
    fn create() -> Result<Net> {
        let id = std::process::id() % 100_000;
        let subnet = format!("10.199.{}", id % 250);
        let net = Net {
            ns: format!("lbn-{id}"),
            host_veth: format!("lbh{id}"),
            ns_veth: format!("lba{id}"),
            server_ip: format!("{subnet}.1"),
        };
        let _ = Command::new("ip").args(["netns", "del", &net.ns]).output();
        run(&["ip", "netns", "add", &net.ns])?;
        run(&[
            "ip",
            "link",
            "add",
            &net.host_veth,
            "type",
            "veth",
            "peer",
            "name",
            &net.ns_veth,
        ])?;
        run(&["ip", "link", "set", &net.ns_veth, "netns", &net.ns])?;
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", net.server_ip),
            "dev",
            &net.host_veth,
        ])?;
        run(&["ip", "link", "set", &net.host_veth, "up"])?;
        run(&[
            "ip",
            "-n",
            &net.ns,
            "addr",
            "add",
            &format!("{subnet}.2/24"),
            "dev",
            &net.ns_veth,
        ])?;
        run(&["ip", "-n", &net.ns, "link", "set", &net.ns_veth, "up"])?;
        run(&["ip", "-n", &net.ns, "link", "set", "lo", "up"])?;
        let ip = &net.server_ip;
        net.nft(&format!(
            "add table inet link_bench\n\
             add chain inet link_bench in {{ type filter hook input priority 0; }}\n\
             add chain inet link_bench out {{ type filter hook output priority 0; }}\n\
             add rule inet link_bench in ip saddr {ip} counter\n\
             add rule inet link_bench out ip daddr {ip} counter\n"
        ))?;
        Ok(net)
    }

    fn link(&self, up: bool) -> Result<()> {
        let state = if up { "up" } else { "down" };
        run(&["ip", "-n", &self.ns, "link", "set", &self.ns_veth, state]).map(drop)
    }

    fn nft(&self, script: &str) -> Result<()> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("run nft")?;
        child.stdin.take().unwrap().write_all(script.as_bytes())?;
        let out = child.wait_with_output()?;
        ensure!(
            out.status.success(),
            "nft -f failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// (bytes to the agent, bytes from the agent, packets to, packets from) so far.
    fn counters(&self) -> Result<Counters> {
        let text = run(&[
            "ip",
            "netns",
            "exec",
            &self.ns,
            "nft",
            "-j",
            "list",
            "table",
            "inet",
            "link_bench",
        ])?;
        let json: serde_json::Value = serde_json::from_str(&text).context("parse nft -j")?;
        let mut c = Counters::default();
        for item in json["nftables"].as_array().into_iter().flatten() {
            let Some(rule) = item.get("rule") else {
                continue;
            };
            let chain = rule["chain"].as_str().unwrap_or_default();
            for expr in rule["expr"].as_array().into_iter().flatten() {
                if let Some(counter) = expr.get("counter") {
                    let bytes = counter["bytes"].as_u64().unwrap_or(0);
                    let packets = counter["packets"].as_u64().unwrap_or(0);
                    if chain == "in" {
                        c.down_bytes += bytes;
                        c.down_packets += packets;
                    } else {
                        c.up_bytes += bytes;
                        c.up_packets += packets;
                    }
                }
            }
        }
        Ok(c)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_veth])
            .output();
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    down_bytes: u64,
    up_bytes: u64,
    down_packets: u64,
    up_packets: u64,
}

impl std::ops::Sub for Counters {
    type Output = Counters;
    fn sub(self, b: Counters) -> Counters {
        Counters {
            down_bytes: self.down_bytes - b.down_bytes,
            up_bytes: self.up_bytes - b.up_bytes,
            down_packets: self.down_packets - b.down_packets,
            up_packets: self.up_packets - b.up_packets,
        }
    }
}

impl Counters {
    fn total(&self) -> u64 {
        self.down_bytes + self.up_bytes
    }
}

/// A child's stderr lines, each with the moment it was read.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<(Instant, String)>>>);

impl Log {
    fn follow(child: &mut Child, also: Option<PathBuf>) -> Log {
        let log = Log::default();
        let lines = log.0.clone();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            let mut file = also.and_then(|p| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .ok()
            });
            for line in stderr.lines().map_while(Result::ok) {
                if let Some(f) = file.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
                lines.lock().unwrap().push((Instant::now(), line));
            }
        });
        log
    }

    fn count(&self, text: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, l)| l.contains(text))
            .count()
    }

    /// Waits until lines containing all of `texts` number `n`; returns when the `n`th
    /// was read.
    fn wait(&self, texts: &[&str], n: usize, within: Duration) -> Result<Instant> {
        let deadline = Instant::now() + within;
        loop {
            if let Some((at, _)) = self
                .0
                .lock()
                .unwrap()
                .iter()
                .filter(|(_, l)| texts.iter().all(|t| l.contains(t)))
                .nth(n - 1)
            {
                return Ok(*at);
            }
            if Instant::now() > deadline {
                bail!(
                    "no {n}th line with {texts:?} within {within:?}; the last lines:\n{}",
                    self.tail(20)
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for the first line with all of `texts` read at or after `since`.
    fn wait_since(
        &self,
        texts: &[&str],
        since: Instant,
        within: Duration,
    ) -> Result<(Instant, String)> {
        let deadline = Instant::now() + within;
        loop {
            if let Some((at, line)) = self
                .0
                .lock()
                .unwrap()
                .iter()
                .find(|(at, l)| *at >= since && texts.iter().all(|t| l.contains(t)))
            {
                return Ok((*at, line.clone()));
            }
            if Instant::now() > deadline {
                bail!(
                    "no line with {texts:?} within {within:?}; the last lines:\n{}",
                    self.tail(20)
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn tail(&self, n: usize) -> String {
        let lines = self.0.lock().unwrap();
        lines[lines.len().saturating_sub(n)..]
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn terminate(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `kedge server` on SQLite, bound to the veth address, its data on disk.
struct Server {
    child: Child,
    log: Log,
    kubeconfig: PathBuf,
    data: PathBuf,
    home: tempfile::TempDir,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(kedge: &Path, net: &Net) -> Result<Server> {
        let dir = tempfile::Builder::new()
            .prefix("kedge-link-bench-")
            .tempdir_in("/var/tmp")?;
        let data = dir.path().join("data");
        let kubeconfig = dir.path().join("kubeconfig.yaml");
        let mut child = Command::new(kedge)
            .arg("server")
            .arg("--data-dir")
            .arg(&data)
            .args(["--datastore-endpoint", "", "--https-listen-port", "0"])
            // Bound to every address, advertising the veth's: the server's own scheduler
            // and controllers dial the API at 127.0.0.1:<port> whatever --bind-address
            // says, so a server bound to the veth address alone would run without them.
            .args(["--bind-address", "0.0.0.0"])
            .args(["--advertise-address", &net.server_ip])
            // The agents under test are started apart, in their namespace.
            .arg("--disable-agent")
            .arg("--write-kubeconfig")
            .arg(&kubeconfig)
            // Debug for reports: the idle measurement checks that no agent sent a Lease
            // renewal.
            .env("RUST_LOG", "info,kedge_nodelink::report=debug")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("run {}", kedge.display()))?;
        let log = Log::follow(&mut child, Some(dir.path().join("server.log")));
        let server = Server {
            child,
            log,
            kubeconfig,
            data,
            home: tempfile::tempdir()?,
            _dir: dir,
        };
        server
            .log
            .wait(&["Kubernetes API ready"], 1, Duration::from_secs(60))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.kubectl(&["get", "--raw", "/readyz"]).is_err() {
            ensure!(Instant::now() < deadline, "the API never became ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(server)
    }

    fn kubectl_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(KUBECTL);
        cmd.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.home.path());
        cmd
    }

    fn kubectl(&self, args: &[&str]) -> Result<String> {
        let out = self.kubectl_cmd(args).output().context("run kubectl")?;
        ensure!(
            out.status.success(),
            "kubectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn apply(&self, yaml: &str) -> Result<()> {
        let mut child = self
            .kubectl_cmd(&["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        child.stdin.take().unwrap().write_all(yaml.as_bytes())?;
        let out = child.wait_with_output()?;
        ensure!(
            out.status.success(),
            "kubectl apply: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    fn url(&self) -> Result<String> {
        self.kubectl(&[
            "config",
            "view",
            "-o",
            "jsonpath={.clusters[0].cluster.server}",
        ])
    }

    fn token(&self) -> Result<String> {
        Ok(std::fs::read_to_string(self.data.join("server/token"))
            .context("read the server token")?
            .trim()
            .to_string())
    }

    fn rss_kib(&self) -> Result<u64> {
        Ok(procfs::memory(self.child.id())?.rss_kib)
    }

    fn stop(mut self) {
        terminate(&mut self.child);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How an agent is started.
#[derive(Clone)]
struct AgentSpec {
    binary: PathBuf,
    ns: String,
    url: String,
    token: String,
    dir: PathBuf,
    node: String,
    flags: Vec<String>,
}

struct Agent {
    child: Child,
    log: Log,
}

impl AgentSpec {
    fn start(&self) -> Result<Agent> {
        std::fs::create_dir_all(&self.dir)?;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(&self.binary)
            .args(["--server", &self.url, "--token", &self.token])
            .args(["--node-name", &self.node])
            .arg("--data-dir")
            .arg(&self.dir)
            .arg("--node-password-file")
            .arg(self.dir.join("node-password"))
            .args(&self.flags)
            // The link is measured, not pods: no containerd per agent.
            .arg("--disable-runtime")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("run kedge-agent under ip netns exec")?;
        let log = Log::follow(&mut child, Some(self.dir.join("agent.log")));
        Ok(Agent { child, log })
    }

    fn store(&self) -> PathBuf {
        self.dir.join("agent/desired-state.db")
    }
}

impl Agent {
    fn stop(mut self) {
        terminate(&mut self.child);
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const CONNECTED: &str = "connected; registering the node and resuming the sync";

/// The agent's store, read with the sqlite3 shell: `query`'s single value.
fn store_query(db: &Path, query: &str) -> String {
    Command::new("sqlite3")
        .arg("-readonly")
        .arg(db)
        .arg(query)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + within;
    while !done() {
        ensure!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn pod_yaml(name: &str, node: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: bench, tier: edge}}\n\
         spec:\n  nodeName: {node}\n  tolerations: [{{key: node.kedge.io/no-runtime, operator: Exists}}]\n\
         \x20 containers:\n  - name: app\n    image: registry.example.com/edge/app:1.4.2\n\
         \x20   env: [{{name: MODE, value: edge}}, {{name: LOG_LEVEL, value: info}}]\n\
         \x20   resources: {{requests: {{cpu: 50m, memory: 32Mi}}}}\n---\n"
    )
}

struct Reconnects {
    to_server: Vec<Duration>,
    to_agent: Vec<Duration>,
    detect: Vec<Duration>,
    /// Trials whose reconnect was over the TCP fallback.
    over_tcp: usize,
    /// Trials in which the agent logged "connected" more than once before the link came up.
    early: usize,
}

struct Bytes {
    pods: usize,
    pods_json: usize,
    stored_pod: usize,
    full: Counters,
    one_change: Counters,
    nothing: Counters,
}

struct Fleet {
    agents: usize,
    rss0: u64,
    rss_n: u64,
    /// One entry per window: bytes and seconds.
    idle: Vec<(Counters, f64)>,
    /// The same with the agents renewing their own Leases every 10 s.
    idle_agent_lease: Vec<(Counters, f64)>,
    agent_rss_kib: u64,
}

/// Per agent and window: uplink kbit/s, downlink kbit/s, uplink packets per minute.
fn rates(windows: &[(Counters, f64)], agents: usize) -> Vec<(f64, f64, f64)> {
    windows
        .iter()
        .map(|(c, secs)| {
            (
                kbps(c.up_bytes, *secs, agents),
                kbps(c.down_bytes, *secs, agents),
                c.up_packets as f64 / agents as f64 / (secs / 60.0),
            )
        })
        .collect()
}

/// The median of some numbers (the mean of the middle two for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    prerequisites()?;
    let kedge = server::find_kedge(args.kedge.as_deref())?;
    let agent_bin = kedge.with_file_name("kedge-agent");
    ensure!(
        agent_bin.is_file(),
        "no kedge-agent next to {}; build it: cargo build --release -p kedge-agent",
        kedge.display()
    );
    let net = Net::create()?;
    say(format!(
        "namespace {} behind veth {} ({}); server {}",
        net.ns,
        net.host_veth,
        net.server_ip,
        kedge.display()
    ));
    let work = tempfile::Builder::new()
        .prefix("kedge-link-bench-agents-")
        .tempdir_in("/var/tmp")?;

    let server = Server::start(&kedge, &net)?;
    let (url, token) = (server.url()?, server.token()?);
    say(format!("server ready at {url}"));
    let spec = |node: &str, flags: &[&str]| AgentSpec {
        binary: agent_bin.clone(),
        ns: net.ns.clone(),
        url: url.clone(),
        token: token.clone(),
        dir: work.path().join(node),
        node: node.to_string(),
        flags: flags.iter().map(|s| s.to_string()).collect(),
    };

    let reconnects = reconnect_trials(&args, &net, &server, &spec("rc-0", &FAST))?;
    let bytes = wire_bytes(&args, &net, &server, &spec("bytes-0", &[]))?;
    server.stop();

    let fleet = fleet(&args, &kedge, &net, &agent_bin, work.path())?;

    let section = section(&args, &reconnects, &bytes, &fleet);
    println!("{section}");
    if !args.no_docs {
        let path = kedge_datastore_testkit::report::benchmarks_md();
        kedge_datastore_testkit::report::write_section(&path, "link-bench", &section)
            .with_context(|| format!("write {}", path.display()))?;
        say(format!("wrote {}", path.display()));
    }
    Ok(())
}

/// Tunnel timers for the reconnect trials (keepalive, idle timeout); backoff default.
const FAST: [&str; 4] = ["--tunnel-keepalive", "1s", "--tunnel-idle-timeout", "4s"];

fn reconnect_trials(
    args: &Args,
    net: &Net,
    server: &Server,
    spec: &AgentSpec,
) -> Result<Reconnects> {
    say(format!(
        "1/4 reconnect: {} trials, link down ≥ {} s each",
        args.trials, args.down
    ));
    let mut r = Reconnects {
        to_server: Vec::new(),
        to_agent: Vec::new(),
        detect: Vec::new(),
        over_tcp: 0,
        early: 0,
    };
    let node_is = format!("node={}", spec.node);
    let connected = ["agent connected", node_is.as_str()];
    for trial in 0..args.trials {
        let started = Instant::now();
        let agent = spec.start()?;
        agent.log.wait(&[CONNECTED], 1, Duration::from_secs(60))?;
        // The server has seen this start's connection too.
        server
            .log
            .wait_since(&connected, started, Duration::from_secs(30))?;
        // Let the session settle (registration, the sync's first batch).
        std::thread::sleep(Duration::from_millis(500));
        let down = Instant::now();
        net.link(false)?;
        let lost = agent
            .log
            .wait(&["tunnel connection lost"], 1, Duration::from_secs(30))?;
        r.detect.push(lost - down);
        let wait = Duration::from_secs(args.down).saturating_sub(down.elapsed());
        std::thread::sleep(wait);
        // Nothing can cross the link while it is down: a second "connected" logged by
        // now is a session started on a connection already dead.
        let early = agent.log.count(CONNECTED).saturating_sub(1);
        r.early += usize::from(early > 0);
        let up = Instant::now();
        net.link(true)?;
        let (at_server, line) = server
            .log
            .wait_since(&connected, up, Duration::from_secs(120))?;
        let (at_agent, _) = agent
            .log
            .wait_since(&[CONNECTED], up, Duration::from_secs(30))?;
        let tcp = line.contains("transport=tcp");
        r.over_tcp += usize::from(tcp);
        r.to_server.push(at_server - up);
        r.to_agent.push(at_agent - up);
        say(format!(
            "  trial {}/{}: noticed the loss after {}, reconnected {} after the link came up ({} at the agent){}{}",
            trial + 1,
            args.trials,
            ms(lost - down),
            ms(at_server - up),
            ms(at_agent - up),
            if tcp { ", over TCP" } else { "" },
            if early > 0 {
                "; the agent logged \"connected\" more than once before the link came up"
            } else {
                ""
            },
        ));
        if std::env::var_os("LINK_BENCH_DEBUG").is_some() {
            eprintln!(
                "agent log:\n{}\nserver log:\n{}",
                agent.log.tail(40),
                server.log.tail(20)
            );
        }
        agent.stop();
    }
    r.to_server.sort();
    r.to_agent.sort();
    r.detect.sort();
    Ok(r)
}

fn wire_bytes(args: &Args, net: &Net, server: &Server, spec: &AgentSpec) -> Result<Bytes> {
    say(format!(
        "2/4 bytes on the wire: full sync of {} pods, resume after one change",
        args.pods
    ));
    // Join and register once with nothing bound, then stop.
    let agent = spec.start()?;
    agent.log.wait(&[CONNECTED], 1, Duration::from_secs(60))?;
    agent
        .log
        .wait(&["full resync stored"], 1, Duration::from_secs(60))?;
    agent.stop();
    let yaml: String = (0..args.pods)
        .map(|i| pod_yaml(&format!("p-{i:03}"), &spec.node))
        .collect();
    server.apply(&yaml)?;
    let pods_json = server.kubectl(&["get", "pods", "-o", "json"])?.len();
    let db = spec.store();
    let count = || store_query(&db, "SELECT count(*) FROM objects WHERE kind = 1");
    let measure = |what: &str, done: &dyn Fn() -> bool| -> Result<Counters> {
        let start = net.counters()?;
        let agent = spec.start()?;
        agent.log.wait(&[CONNECTED], 1, Duration::from_secs(60))?;
        wait_until(what, Duration::from_secs(60), done)?;
        std::thread::sleep(Duration::from_secs(2));
        let used = net.counters()? - start;
        agent.stop();
        say(format!(
            "  {what}: {} bytes ({} down, {} up; {} packets)",
            used.total(),
            used.down_bytes,
            used.up_bytes,
            used.down_packets + used.up_packets
        ));
        Ok(used)
    };

    // (i) The local store is gone: a full sync. Credentials are kept, so no join.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let expect = args.pods.to_string();
    let full = measure("full sync", &|| count() == expect)?;
    // (ii) One pod changes while the agent is offline.
    let stored_pod = store_query(
        &db,
        "SELECT avg(length(object)) FROM objects WHERE kind = 1",
    )
    .parse::<f64>()
    .unwrap_or(0.0) as usize;
    let changed = format!("p-{:03}", args.pods / 2);
    server.kubectl(&["label", "pod", &changed, "changed=yes"])?;
    let query = format!(
        "SELECT count(*) FROM objects WHERE kind = 1 AND name = '{changed}' \
         AND CAST(object AS TEXT) LIKE '%\"changed\":\"yes\"%'"
    );
    let one_change = measure("resume after one change", &|| {
        store_query(&db, &query) == "1"
    })?;
    // (iii) Nothing changed: the cost of a reconnect alone.
    let resumed = server.log.count("sync: resumed from");
    let nothing = measure("resume with nothing changed", &|| {
        server.log.count("sync: resumed from") > resumed
    })?;
    ensure!(
        server.log.count("sync: resumed from") >= 2,
        "the restarted agents did not resume (no \"sync: resumed from\" in the server log)"
    );
    Ok(Bytes {
        pods: args.pods,
        pods_json,
        stored_pod,
        full,
        one_change,
        nothing,
    })
}

fn fleet(args: &Args, kedge: &Path, net: &Net, agent_bin: &Path, work: &Path) -> Result<Fleet> {
    say(format!(
        "3/4 server memory: a fresh server, 0 then {} agents",
        args.agents
    ));
    let server = Server::start(kedge, net)?;
    let (url, token) = (server.url()?, server.token()?);
    std::thread::sleep(Duration::from_secs(10));
    let rss0 = server.rss_kib()?;
    say(format!("  RSS with 0 agents: {}", mib(rss0)));
    let specs: Vec<AgentSpec> = (0..args.agents)
        .map(|i| AgentSpec {
            binary: agent_bin.to_path_buf(),
            ns: net.ns.clone(),
            url: url.clone(),
            token: token.clone(),
            dir: work.join(format!("fleet-{i:03}")),
            node: format!("fleet-{i:03}"),
            flags: Vec::new(),
        })
        .collect();
    let mut agents = Vec::new();
    for s in &specs {
        agents.push(s.start()?);
    }
    server
        .log
        .wait(&["agent connected"], args.agents, Duration::from_secs(300))?;
    for a in &agents {
        a.log
            .wait(&["full resync stored"], 1, Duration::from_secs(120))?;
    }
    say(format!("  {} agents connected and synced", args.agents));
    std::thread::sleep(Duration::from_secs(20));
    let rss_n = server.rss_kib()?;
    let agent_rss_kib = agents
        .iter()
        .filter_map(|a| procfs::memory(a.child.id()).ok())
        .map(|m| m.rss_kib)
        .sum::<u64>()
        / args.agents as u64;
    say(format!(
        "  RSS with {} agents: {} ({} per agent); an agent's own RSS: {}",
        args.agents,
        mib(rss_n),
        kib_text((rss_n.saturating_sub(rss0)) as f64 / args.agents as f64),
        mib(agent_rss_kib)
    ));

    say(format!(
        "4/4 idle uplink: {} agents at the default settings, {} windows of {} s",
        args.agents, args.idle_windows, args.idle
    ));
    let idle = idle_windows(net, args)?;
    say(format!(
        "  median {:.3} kbit/s up per agent",
        median(rates(&idle, args.agents).iter().map(|r| r.0).collect())
    ));
    // The server renews every connected node's Lease, so the Leases of all 50 must
    // have been renewed during the windows, with none sent by an agent.
    ensure!(
        server.log.count("a lease renewal reported by the agent") == 0,
        "an agent at the default settings sent a Lease renewal"
    );

    say("    again with the agents renewing their own Leases every 10 s (the kubelet's cadence)");
    for a in agents.drain(..) {
        a.stop();
    }
    let connected = server.log.count("agent connected");
    for s in &specs {
        let mut s = s.clone();
        s.flags = vec!["--lease-interval".into(), "10s".into()];
        agents.push(s.start()?);
    }
    server.log.wait(
        &["agent connected"],
        connected + args.agents,
        Duration::from_secs(300),
    )?;
    std::thread::sleep(Duration::from_secs(15));
    let idle_agent_lease = idle_windows(net, args)?;
    ensure!(
        server.log.count("a lease renewal reported by the agent") > 0,
        "agents with --lease-interval 10s sent no Lease renewal (or the server no longer logs them)"
    );
    say(format!(
        "  median {:.3} kbit/s up per agent with the agents' own renewals",
        median(
            rates(&idle_agent_lease, args.agents)
                .iter()
                .map(|r| r.0)
                .collect()
        )
    ));
    for a in agents.drain(..) {
        a.stop();
    }
    server.stop();
    Ok(Fleet {
        agents: args.agents,
        rss0,
        rss_n,
        idle,
        idle_agent_lease,
        agent_rss_kib,
    })
}

/// `--idle-windows` consecutive windows of `--idle` seconds.
fn idle_windows(net: &Net, args: &Args) -> Result<Vec<(Counters, f64)>> {
    let mut windows = Vec::new();
    for i in 0..args.idle_windows.max(1) {
        let start = net.counters()?;
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_secs(args.idle));
        let used = net.counters()? - start;
        let secs = t0.elapsed().as_secs_f64();
        say(format!(
            "  window {}: {:.3} kbit/s up per agent",
            i + 1,
            kbps(used.up_bytes, secs, args.agents)
        ));
        windows.push((used, secs));
    }
    Ok(windows)
}

fn kbps(bytes: u64, secs: f64, agents: usize) -> f64 {
    bytes as f64 * 8.0 / 1000.0 / secs / agents as f64
}

fn kib_text(kib: f64) -> String {
    if kib >= 1024.0 {
        format!("{:.2} MiB", kib / 1024.0)
    } else {
        format!("{kib:.0} KiB")
    }
}

fn bytes_text(b: u64) -> String {
    if b >= 10 * 1024 {
        format!("{:.1} KiB ({b} B)", b as f64 / 1024.0)
    } else {
        format!("{b} B")
    }
}

fn section(args: &Args, r: &Reconnects, b: &Bytes, f: &Fleet) -> String {
    let p50 = percentile(&r.to_server, 0.5);
    let p99 = percentile(&r.to_server, 0.99);
    let max = r.to_server.last().copied().unwrap_or_default();
    let reconnect_verdict = if p99 <= RECONNECT_TARGET {
        format!("meets the target (p99 {} ≤ 3 s)", ms(p99))
    } else {
        format!(
            "misses the target: p99 {} is {:.1}× the 3 s",
            ms(p99),
            p99.as_secs_f64() / 3.0
        )
    };
    let ours = rates(&f.idle, f.agents);
    let theirs = rates(&f.idle_agent_lease, f.agents);
    let column = |r: &[(f64, f64, f64)], pick: fn(&(f64, f64, f64)) -> f64| {
        median(r.iter().map(pick).collect())
    };
    let range = |r: &[(f64, f64, f64)]| {
        let ups: Vec<f64> = r.iter().map(|x| x.0).collect();
        let lo = ups.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = ups.iter().copied().fold(0.0, f64::max);
        format!("{lo:.3}–{hi:.3}")
    };
    let idle_up = column(&ours, |r| r.0);
    let idle_down = column(&ours, |r| r.1);
    let per_agent_packets = column(&ours, |r| r.2);
    let agent_lease_up = column(&theirs, |r| r.0);
    let agent_lease_down = column(&theirs, |r| r.1);
    let agent_lease_packets = column(&theirs, |r| r.2);
    let idle_verdict = if idle_up <= ANCHOR_KBPS {
        format!(
            "meets the target: {idle_up:.3} kbit/s ≤ 0.25 kbit/s, {:.2}× KubeEdge's anchor \
             ({:.1}× less). The agents' own renewals every 10 s would be {:.0}% of the uplink \
             ({agent_lease_up:.3} kbit/s, {:.2}× the anchor)",
            idle_up / ANCHOR_KBPS,
            ANCHOR_KBPS / idle_up.max(f64::EPSILON),
            (agent_lease_up - idle_up) / agent_lease_up.max(f64::EPSILON) * 100.0,
            agent_lease_up / ANCHOR_KBPS
        )
    } else {
        format!(
            "misses the target: {idle_up:.3} kbit/s is {:.2}× the 0.25 kbit/s",
            idle_up / ANCHOR_KBPS
        )
    };
    let windows = f.idle.len();
    let secs = f.idle.first().map_or(0.0, |w| w.1);
    let per_agent = (f.rss_n.saturating_sub(f.rss0)) as f64 / f.agents as f64;
    format!(
        "## Agent link\n\n\
         Measured {date} on {machine} with `cargo build --release -p kedge -p kedge-agent -p kedge-api-bench && \
         target/release/link-bench --trials {trials} --agents {agents} --idle {idle} --idle-windows {windows}` \
         (as root).\n\n\
         What runs: the release `kedge server` on embedded SQLite (data under /var/tmp) in the root network \
         namespace, advertising the address of one end of a veth pair (it binds 0.0.0.0: bound to the veth \
         address alone, its scheduler and controllers could not reach its API, which they dial at \
         127.0.0.1); the release `kedge-agent`s in one network namespace \
         behind the other end, started with `ip netns exec`. Bytes are nftables counters in the agents' \
         namespace on every packet to or from the server's address (whole IP packets: IP, UDP and QUIC \
         headers included). Server memory is its VmRSS from /proc. The agents connect over QUIC (after an outage, see below, over TCP). The \
         client, the server and {agents} agents share the machine's 2 cores.\n\n\
         ### Reconnect after the link is restored\n\n\
         {trials} trials. Each trial starts the agent (its store and certificate kept), lets it connect, \
         takes its veth down until the agent has noticed and for at least {down} s, then brings it up. \
         Time runs from just before `ip link set … up` to the server logging the node's `agent connected` \
         (and, second column, to the agent logging `connected; registering`). The agents run with \
         `--tunnel-keepalive 1s --tunnel-idle-timeout 4s`, so that a few seconds' outage is a real \
         disconnect (at the defaults, 15 s and 45 s, a QUIC connection rides out a 6 s outage and \
         nothing reconnects), and the default reconnect backoff: 250 ms doubling per failure, full \
         jitter, capped at 30 s. While the link is down the dials fail (TCP at once, with no route; \
         QUIC after its 3 s connect timeout), so the backoff grows during the outage. The agent is restarted before each trial, as though the outages were more than 30 s of \
         stable connection apart (the tunnel starts its backoff over after that).\n\n\
         | measure | p50 | p99 | max |\n|---|---|---|---|\n\
         | link up → server logs `agent connected` | **{p50}** | **{p99}** | {max} |\n\
         | link up → agent logs `connected; registering` | {a50} | {a99} | {amax} |\n\
         | link down → agent notices (idle timeout 4 s) | {d50} | {d99} | {dmax} |\n\n\
         {over_tcp} of the {trials} reconnects were over the TCP fallback: a QUIC dial that starts while \
         the link is down sends its first packets into nothing, and its 3 s connect timeout runs out \
         before the agent tries TCP, which then stays in use until the next QUIC probe (every 300 s).\n\n\
         In {early} of the {trials} trials the agent logged `connected; registering` more than once before \
         the link came up (one session per connection is expected); the times above are to the first \
         line read after `ip link set … up`, on both sides.\n\n\
         Against the target (p99 ≤ 3 s once the link is back): {reconnect_verdict}.\n\n\
         ### Bytes on the wire to resync\n\n\
         One node with {pods} bound pods ({pod_size} bytes of JSON each as the API lists them, \
         {stored_pod} bytes each as the agent stores them). The sync batches are gzip-compressed, and \
         these pods differ only in name, uid and timestamps, so they compress well. Each \
         window runs from the agent's start (certificate kept, so no join) to its store holding the \
         result, plus 2 s; it includes the QUIC handshake and the node's registration report, both \
         directions.\n\n\
         | sync | bytes, both directions | down / up | packets |\n|---|---|---|---|\n\
         | (i) full sync of {pods} pods (empty local store) | **{full}** | {fd} / {fu} | {fp} |\n\
         | (ii) resume after one pod changed while offline | **{one}** | {od} / {ou} | {op} |\n\
         | (iii) resume with nothing changed (the reconnect alone) | {none} | {nd} / {nu} | {np} |\n\n\
         The resume after one change takes {ratio:.1}% of the bytes of the full sync; above the bare \
         reconnect, the change itself costs {delta}.\n\n\
         ### Server memory per connected agent\n\n\
         A fresh server: RSS {rss0} with 0 agents (10 s after start); {agents} agents joined, registered \
         and synced, then 20 s idle: RSS {rss_n}. **{per_agent} per agent** ((RSS_N − RSS_0) / N; this \
         includes the joins' leftovers and each node's Node and Lease in the server's caches). Each agent \
         process itself used {agent_rss} RSS.\n\n\
         ### Idle uplink per agent\n\n\
         The same {agents} agents at the default settings (the server renews each node's Lease every \
         10 s while its tunnel is up, so the agents send none; tunnel keepalive 15 s, idle timeout \
         45 s), nothing changing, in {windows} consecutive windows of {secs:.0} s, counted from the \
         agents to the server and divided by {agents}; the median window, and the range over the \
         windows. Then the same agents renewing their own Leases every 10 s over the link \
         (`--lease-interval 10s`, the kubelet's cadence, which is what they did before), for \
         comparison:\n\n\
         | setting | uplink per agent (median) | range over {windows} windows | downlink per agent | packets up per agent per minute |\n|---|---|---|---|---|\n\
         | defaults: Lease renewed by the server | **{idle_up:.3} kbit/s** | {ours_range} | {idle_down:.3} kbit/s | {ppm:.1} |\n\
         | agents renew their own Leases every 10 s | {agent_lease_up:.3} kbit/s | {theirs_range} | {agent_lease_down:.3} kbit/s | {ppm_al:.1} |\n\n\
         Against KubeEdge's anchor (about 0.25 kbit/s uplink per node at steady state) and the target \
         (≤ 0.25 kbit/s): {idle_verdict}.\n\n",
        date = kedge_datastore_testkit::report::today(),
        machine = kedge_datastore_testkit::report::machine(),
        trials = args.trials,
        agents = f.agents,
        idle = args.idle,
        down = args.down,
        over_tcp = r.over_tcp,
        early = r.early,
        p50 = ms(p50),
        p99 = ms(p99),
        max = ms(max),
        a50 = ms(percentile(&r.to_agent, 0.5)),
        a99 = ms(percentile(&r.to_agent, 0.99)),
        amax = ms(r.to_agent.last().copied().unwrap_or_default()),
        d50 = ms(percentile(&r.detect, 0.5)),
        d99 = ms(percentile(&r.detect, 0.99)),
        dmax = ms(r.detect.last().copied().unwrap_or_default()),
        pods = b.pods,
        pod_size = b.pods_json / b.pods.max(1),
        stored_pod = b.stored_pod,
        full = bytes_text(b.full.total()),
        fd = b.full.down_bytes,
        fu = b.full.up_bytes,
        fp = b.full.down_packets + b.full.up_packets,
        one = bytes_text(b.one_change.total()),
        od = b.one_change.down_bytes,
        ou = b.one_change.up_bytes,
        op = b.one_change.down_packets + b.one_change.up_packets,
        none = bytes_text(b.nothing.total()),
        nd = b.nothing.down_bytes,
        nu = b.nothing.up_bytes,
        np = b.nothing.down_packets + b.nothing.up_packets,
        ratio = b.one_change.total() as f64 / b.full.total().max(1) as f64 * 100.0,
        delta = if b.one_change.total() >= b.nothing.total() {
            format!("{} B", b.one_change.total() - b.nothing.total())
        } else {
            "no measurable bytes (the runs differ by less than their noise)".to_string()
        },
        rss0 = mib(f.rss0),
        rss_n = mib(f.rss_n),
        per_agent = kib_text(per_agent),
        agent_rss = mib(f.agent_rss_kib),
        ours_range = range(&ours),
        theirs_range = range(&theirs),
        ppm = per_agent_packets,
        ppm_al = agent_lease_packets,
    )
}
