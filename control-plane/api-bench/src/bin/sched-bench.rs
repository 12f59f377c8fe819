//! sched-bench: scheduling throughput of the real `kedge server`, for
//! 10,000 pending pods on 1,000 simulated nodes, written into
//! docs/benchmarks.md (its own section, between `<!-- sched-bench:begin -->`
//! and `<!-- sched-bench:end -->`).
//!
//! It runs the release `kedge` binary on embedded SQLite (as api-bench
//! does, with api-bench's server launcher and /proc meters), registers the
//! nodes with `kedge-node-sim` (Ready, with allocatable, Leases renewed
//! every 10 s so the node lifecycle controller keeps them Ready; pods are
//! not "run"), creates the pods through the API, and watches them get
//! bound. It reports pods bound per second from the first create to the
//! last bind, the binding window alone, p50/p99 of create→bound, and the
//! server's CPU and memory.
//!
//! The scheduler measured is the server's own, on 10,000 *pending* pods:
//! while the pods are created the bench holds the `kube-system/kube-scheduler`
//! Lease (as a second server would), so the server's scheduler stands by;
//! then it releases the Lease, the server's elector acquires it, and the
//! clock runs from the release to the last bind.
//!
//! A server that does not run
//! one (before it was wired in) can be measured with the scheduler running
//! inside this bench instead: build with `--features in-process-scheduler`
//! and pass `--in-process`; then the pods are all created first and the
//! scheduler started afterwards, so the binding rate is the scheduler's
//! alone. Without that feature this crate depends on no server crate.
//!
//! Usage: `cargo build --release -p kedge && cargo run --release -p
//! kedge-api-bench --bin sched-bench -- [--nodes 1000] [--pods 10000] [--no-docs]`

#[allow(dead_code)]
#[path = "../procfs.rs"]
mod procfs;
#[allow(dead_code)]
#[path = "../server.rs"]
mod server;
#[allow(dead_code)]
#[path = "../stats.rs"]
mod stats;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use tokio::time::Instant;

use kedge_node_sim::{SimConfig, SimNode, Simulator};

use crate::procfs::Meter;
use crate::server::KedgeServer;
use crate::stats::{mib, ms, percentile, thousands};

const TARGET: f64 = 500.0;
const NAMESPACE: &str = "sched-bench";

/// Measures the scheduling throughput of `kedge server`.
#[derive(Debug, Parser)]
#[command(name = "sched-bench")]
struct Args {
    /// Simulated nodes.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Pods to schedule.
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Concurrent pod creates.
    #[arg(long, default_value_t = 32)]
    creators: usize,
    /// Run the scheduler inside this bench (needs the
    /// `in-process-scheduler` feature), for a server that runs none.
    #[arg(long)]
    in_process: bool,
    /// Print the results, but leave docs/benchmarks.md alone.
    #[arg(long)]
    no_docs: bool,
    /// The kedge binary to run [default: target/release/kedge].
    #[arg(long)]
    kedge: Option<PathBuf>,
    /// Give up when the pods are not all bound after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

/// What the run measured.
#[derive(Debug)]
struct Outcome {
    pods: usize,
    nodes: usize,
    mode: &'static str,
    create: Duration,
    /// First create sent → last pod seen bound.
    total: Duration,
    /// First pod seen bound → last pod seen bound.
    binding: Duration,
    latencies: Vec<Duration>,
    per_node_max: usize,
    per_node_min: usize,
    server_cpu: Duration,
    bench_cpu: Duration,
    steal: Duration,
    wall: Duration,
    peak_rss_kib: u64,
    rss_after_kib: u64,
    startup: Duration,
    register: Duration,
}

fn say(what: impl std::fmt::Display) {
    eprintln!("[sched-bench] {what}");
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.in_process && !cfg!(feature = "in-process-scheduler") {
        bail!("--in-process needs a build with --features in-process-scheduler");
    }
    let kedge = server::find_kedge(args.kedge.as_deref())?;
    say(format!("starting {}…", kedge.display()));
    let server = KedgeServer::start(&kedge, "").await?;
    say(format!(
        "kedge server ready in {} ms (pid {})",
        server.startup.as_millis(),
        server.pid()
    ));
    let outcome = measure(&args, &server).await;
    let findings = server.log_findings();
    for example in &findings.examples {
        say(format!("server log: {example}"));
    }
    let stop = server.stop().await?;
    let outcome = outcome?;
    say(format!("server {stop}"));
    let section = section(&outcome, &args, findings.warnings, findings.errors);
    println!("{section}");
    if !args.no_docs {
        let path = kedge_datastore_testkit::report::benchmarks_md();
        kedge_datastore_testkit::report::write_section(&path, "sched-bench", &section)
            .with_context(|| format!("write {}", path.display()))?;
        say(format!("wrote {}", path.display()));
    }
    Ok(())
}

async fn client(server: &KedgeServer) -> Result<kube::Client> {
    let kubeconfig = Kubeconfig::read_from(server.kubeconfig()).context("read the kubeconfig")?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    config.read_timeout = Some(Duration::from_secs(300));
    Ok(kube::Client::try_from(config)?)
}

/// Whether the server runs its own scheduler (it says so in its log).
async fn server_schedules(server: &KedgeServer) -> bool {
    for _ in 0..50 {
        if server.log_tail(100_000).contains("scheduler started") {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

const SCHEDULER_LEASE: &str = "kube-scheduler";
const BENCH_HOLDER: &str = "sched-bench";

/// Takes the server's kube-scheduler Lease (as a second server would hold it), and waits
/// until the server logs that its scheduler stopped.
async fn hold_scheduler_lease(client: &kube::Client, server: &KedgeServer) -> Result<()> {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    for _ in 0..100 {
        let Some(mut lease) = leases.get_opt(SCHEDULER_LEASE).await? else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        spec.holder_identity = Some(BENCH_HOLDER.to_string());
        spec.lease_duration_seconds = Some(3600);
        spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
        // A compare-and-swap on the resourceVersion just read; a renew in between
        // makes it fail with a conflict, and we read again.
        match leases
            .replace(SCHEDULER_LEASE, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {
                for _ in 0..100 {
                    let log = server.log_tail(200);
                    if log
                        .lines()
                        .any(|l| l.contains("stopped leading") && l.contains(SCHEDULER_LEASE))
                    {
                        return Ok(());
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                bail!("the server did not log \"stopped leading\" within 10 s of losing its Lease");
            }
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    bail!("could not take the kube-scheduler Lease")
}

/// Gives the Lease up (no holder), so the server's elector acquires it at once.
async fn release_scheduler_lease(client: &kube::Client) -> Result<()> {
    use k8s_openapi::api::coordination::v1::Lease;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let patch = json!({"spec": {"holderIdentity": null}});
    leases
        .patch(
            SCHEDULER_LEASE,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .context("release the kube-scheduler Lease")?;
    Ok(())
}

#[cfg(feature = "in-process-scheduler")]
fn start_in_process(client: kube::Client) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = kedge_scheduler::run(client, kedge_scheduler::Config::default()).await {
            eprintln!("[sched-bench] the in-process scheduler stopped: {e}");
        }
    })
}

#[cfg(not(feature = "in-process-scheduler"))]
fn start_in_process(_client: kube::Client) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async {})
}

fn bench_pod(i: usize) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": format!("pod-{i:05}"), "namespace": NAMESPACE,
                     "labels": {"app": "sched-bench", "group": format!("g{}", i % 10)}},
        "spec": {"containers": [{"name": "app", "image": "busybox",
                                 "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]},
    }))
    .expect("a valid pod")
}

async fn measure(args: &Args, server: &KedgeServer) -> Result<Outcome> {
    let client = client(server).await?;
    let in_server = server_schedules(server).await;
    let mode = match (in_server, args.in_process) {
        (true, false) => "the server's own scheduler",
        (true, true) => bail!("the server runs its own scheduler; drop --in-process"),
        (false, true) => "kedge_scheduler::run in the bench process (the server ran none)",
        (false, false) => bail!(
            "the server did not log \"scheduler started\": it runs no scheduler. \
             Measure the scheduler in-process with --features in-process-scheduler --in-process"
        ),
    };
    say(format!("scheduler: {mode}"));

    say(format!("registering {} simulated nodes…", args.nodes));
    let registered = Instant::now();
    let nodes: Vec<SimNode> = (0..args.nodes)
        .map(|i| {
            SimNode::new(&format!("node-{i:04}"))
                .label("topology.kubernetes.io/zone", &format!("zone-{}", i % 3))
        })
        .collect();
    let sim = Simulator::start(
        client.clone(),
        nodes,
        SimConfig {
            run_pods: false,
            ..SimConfig::default()
        },
    )
    .await
    .context("register the simulated nodes")?;
    let register = registered.elapsed();
    say(format!(
        "{} nodes registered in {:.1} s",
        args.nodes,
        register.as_secs_f64()
    ));

    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NAMESPACE}}))?,
        )
        .await
        .context("create the namespace")?;

    // Watch for binds before the first create.
    let created_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let bound_at: Arc<Mutex<HashMap<String, (Instant, String)>>> = Arc::default();
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let watch = {
        let bound_at = bound_at.clone();
        let stream = watcher(pods_api.clone(), watcher::Config::default()).applied_objects();
        tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(item) = stream.next().await {
                let Ok(pod) = item else { continue };
                let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
                    continue;
                };
                let name = pod.metadata.name.clone().unwrap_or_default();
                bound_at
                    .lock()
                    .unwrap()
                    .entry(name)
                    .or_insert((Instant::now(), node));
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;

    let meter = Meter::start(server.pid());
    let mark = meter.begin()?;
    let mut scheduler = None;
    if in_server {
        // Hold the server's scheduler back while the pods are created, so that all of
        // them are pending when it starts: take its Lease as another holder would.
        hold_scheduler_lease(&client, server).await?;
        say("the bench holds the kube-scheduler Lease: the server's scheduler has stopped");
    } else {
        say("in-process: all pods are created first, then the scheduler starts");
    }
    say(format!(
        "creating {} pods with {} concurrent creates…",
        args.pods, args.creators
    ));
    let first_create = Instant::now();
    let errors = futures::stream::iter(0..args.pods)
        .map(|i| {
            let api = pods_api.clone();
            let created_at = created_at.clone();
            async move {
                let pod = bench_pod(i);
                let name = pod.metadata.name.clone().unwrap_or_default();
                created_at.lock().unwrap().insert(name, Instant::now());
                api.create(&PostParams::default(), &pod).await.err()
            }
        })
        .buffer_unordered(args.creators)
        .filter_map(|e| async move { e })
        .collect::<Vec<_>>()
        .await;
    let create = first_create.elapsed();
    if let Some(e) = errors.first() {
        bail!(
            "{} of {} creates failed, the first: {e}",
            errors.len(),
            args.pods
        );
    }
    say(format!(
        "{} pods created in {:.1} s ({:.0}/s); {} bound so far",
        args.pods,
        create.as_secs_f64(),
        args.pods as f64 / create.as_secs_f64(),
        bound_at.lock().unwrap().len()
    ));
    let bound_before = bound_at.lock().unwrap().len();
    if bound_before > 0 {
        bail!("{bound_before} pods were bound while the scheduler was held back");
    }
    let started = if in_server {
        release_scheduler_lease(&client).await?;
        say("released the Lease: the server's scheduler takes it within its retry period");
        Instant::now()
    } else {
        scheduler = Some(start_in_process(client.clone()));
        Instant::now()
    };

    let deadline = started + Duration::from_secs(args.timeout);
    let mut last_report = Instant::now();
    loop {
        let bound = bound_at.lock().unwrap().len();
        if bound >= args.pods {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "only {bound} of {} pods were bound after {} s",
                args.pods,
                args.timeout
            );
        }
        if last_report.elapsed() >= Duration::from_secs(2) {
            let rss = meter.memory().map(|m| m.rss_kib).unwrap_or(0);
            say(format!(
                "{bound} of {} bound, {:.0} s in, server RSS {}",
                args.pods,
                started.elapsed().as_secs_f64(),
                mib(rss)
            ));
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let usage = meter.end(mark)?;
    watch.abort();
    if let Some(s) = scheduler {
        s.abort();
    }
    drop(sim);

    let created_at = created_at.lock().unwrap();
    let bound_at = bound_at.lock().unwrap();
    let first_bound = bound_at.values().map(|(t, _)| *t).min().unwrap_or(started);
    let last_bound = bound_at.values().map(|(t, _)| *t).max().unwrap_or(started);
    let mut latencies: Vec<Duration> = bound_at
        .iter()
        .filter_map(|(name, (t, _))| {
            let from = created_at.get(name)?;
            // In-process, pods wait for the scheduler to start: count from then.
            Some(t.saturating_duration_since((*from).max(started)))
        })
        .collect();
    latencies.sort();
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for (_, node) in bound_at.values() {
        *per_node.entry(node.as_str()).or_default() += 1;
    }
    Ok(Outcome {
        pods: args.pods,
        nodes: args.nodes,
        mode,
        create,
        total: last_bound.saturating_duration_since(started),
        binding: last_bound.saturating_duration_since(first_bound),
        latencies,
        per_node_max: per_node.values().copied().max().unwrap_or(0),
        per_node_min: if per_node.len() < args.nodes {
            0
        } else {
            per_node.values().copied().min().unwrap_or(0)
        },
        server_cpu: usage.server_cpu,
        bench_cpu: usage.bench_cpu,
        steal: usage.steal,
        wall: usage.wall,
        peak_rss_kib: usage.peak_rss_kib,
        rss_after_kib: meter.memory().map(|m| m.rss_kib).unwrap_or(0),
        startup: server.startup,
        register,
    })
}

fn rate(n: usize, d: Duration) -> f64 {
    if d.is_zero() {
        0.0
    } else {
        n as f64 / d.as_secs_f64()
    }
}

fn section(o: &Outcome, args: &Args, warnings: usize, errors: usize) -> String {
    let total_rate = rate(o.pods, o.total);
    let binding_rate = rate(o.pods, o.binding);
    let mut command =
        String::from("cargo build --release -p kedge && cargo run --release -p kedge-api-bench");
    if args.in_process {
        command.push_str(" --features in-process-scheduler");
    }
    command.push_str(" --bin sched-bench --");
    if args.in_process {
        command.push_str(" --in-process");
    }
    if args.nodes != 1000 {
        command.push_str(&format!(" --nodes {}", args.nodes));
    }
    if args.pods != 10_000 {
        command.push_str(&format!(" --pods {}", args.pods));
    }
    let pct = |cpu: Duration| 100.0 * cpu.as_secs_f64() / o.wall.as_secs_f64().max(1e-9);
    let verdict = |r: f64| {
        if r >= TARGET {
            format!(
                "meets the target ({:.1}× of {TARGET:.0} pods/s)",
                r / TARGET
            )
        } else {
            format!(
                "**misses** the target ({:.2}× of {TARGET:.0} pods/s)",
                r / TARGET
            )
        }
    };
    let start = if args.in_process {
        "the scheduler's start (all pods were created before it)"
    } else {
        "the Lease's release (all pods were pending before it)"
    };
    format!(
        "## Scheduler\n\n\
         Measured {date} on {machine} with `{command}`.\n\n\
         What runs: the release `kedge server` on embedded SQLite (data on disk under /var/tmp), \
         {nodes} nodes registered through the API by `kedge-node-sim` (4 CPUs, 8 GiB, 110 pods each, \
         Ready, Leases renewed every 10 s; registered in {register:.1} s), and {pods} pods in one \
         namespace, each requesting 100m CPU and 128 MiB, created by the bench with {creators} creates \
         in flight. Scheduler: {mode}; while the pods are created the bench holds the \
         `kube-scheduler` Lease, so the server's scheduler stands by, and then releases it. A pod counts as bound when the bench's own watch sees its \
         `spec.nodeName`. Everything shares the machine's 2 cores.\n\n\
         | measure | value |\n|---|---|\n\
         | pods bound per second, {start} → last bound | **{total_rate:.0} pods/s** ({total:.1} s) |\n\
         | binding window alone, first bound → last bound | {binding_rate:.0} pods/s ({binding:.1} s) |\n\
         | pod creation | {create:.1} s ({create_rate:.0} creates/s) |\n\
         | create → bound latency, p50 / p99 / max | {p50} / {p99} / {max} |\n\
         | pods per node, min / max | {min_node} / {max_node} |\n\
         | server CPU over the run (100% = one core) | {server_pct:.0}% |\n\
         | bench CPU (client, watch{inproc}) | {bench_pct:.0}% |\n\
         | CPU stolen by the hypervisor | {steal_pct:.0}% |\n\
         | server RSS, peak during the run / after | {peak} / {after} |\n\
         | server start → API ready | {startup} ms |\n\
         | server log | {warnings} warnings, {errors} errors |\n\n\
         {latency_note}Against the target of the issue (≥ {TARGET:.0} pods/s for 10,000 pending pods on 1,000 \
         nodes): {verdict}.\n\n",
        date = kedge_datastore_testkit::report::today(),
        machine = kedge_datastore_testkit::report::machine(),
        nodes = thousands(o.nodes as u64),
        pods = thousands(o.pods as u64),
        creators = args.creators,
        mode = o.mode,
        register = o.register.as_secs_f64(),
        total = o.total.as_secs_f64(),
        binding = o.binding.as_secs_f64(),
        create = o.create.as_secs_f64(),
        create_rate = rate(o.pods, o.create),
        p50 = ms(percentile(&o.latencies, 0.5)),
        p99 = ms(percentile(&o.latencies, 0.99)),
        max = ms(o.latencies.last().copied().unwrap_or_default()),
        min_node = o.per_node_min,
        max_node = o.per_node_max,
        server_pct = pct(o.server_cpu),
        bench_pct = pct(o.bench_cpu),
        inproc = if args.in_process {
            ", and the scheduler"
        } else {
            ""
        },
        steal_pct = pct(o.steal),
        peak = mib(o.peak_rss_kib),
        after = mib(o.rss_after_kib),
        startup = o.startup.as_millis(),
        verdict = verdict(total_rate),
        latency_note = "The latency counts from the scheduler's start, so for most pods it is \
             time spent queued behind the backlog of 10,000.\n\n",
    )
}
