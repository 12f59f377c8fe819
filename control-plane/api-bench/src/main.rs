//! api-bench: measures the real `kedge server` Kubernetes API over HTTPS and
//! writes the numbers into docs/benchmarks.md (its own section, between
//! `<!-- api-bench:begin -->` and `<!-- api-bench:end -->`).
//!
//! For each backend (embedded SQLite, a throwaway PostgreSQL) it runs the
//! release `kedge` binary as a subprocess, as a user would, and measures:
//! mutating latency (create, update) and read latency (get, list of 1,000)
//! at a steady 100 requests/s in open loop; create throughput with 1, 16
//! and 64 clients in closed loop; watch delivery to 1,000 concurrent
//! watches; and the server's memory (VmRSS, VmHWM) and CPU time per phase.
//!
//! This is a benchmark, not a test: nothing in CI runs it, and nothing
//! ships it. It depends on the datastore test kit only for the throwaway
//! PostgreSQL and the report helpers; it must not depend on the server's
//! crates, so that it measures the binary users run and nothing else.
//!
//! Usage: `cargo build --release -p kedge && cargo run --release -p kedge-api-bench
//! --bin api-bench -- [--backends sqlite,postgres] [--quick] [--no-docs]`

mod client;
mod fanout;
mod load;
mod procfs;
mod report;
mod server;
mod stats;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use futures::StreamExt;
use http::Method;

use kedge_datastore_testkit::servers::{Durability, Postgres};

use crate::client::{Api, Conn, objects};
use crate::fanout::FanOut;
use crate::load::{OpenLoop, closed_loop, open_loop};
use crate::procfs::{Memory, Meter, Usage};
use crate::server::{KedgeServer, LogFindings};
use crate::stats::{Samples, Summary};

/// Measures the real `kedge server` API over HTTPS and writes docs/benchmarks.md.
#[derive(Debug, Parser)]
#[command(name = "api-bench")]
struct Args {
    /// Backends to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "sqlite,postgres")]
    backends: Vec<Backend>,
    /// Short phases (5 s instead of 30 s), to try the bench out.
    #[arg(long)]
    quick: bool,
    /// Print the results, but leave docs/benchmarks.md alone.
    #[arg(long)]
    no_docs: bool,
    /// The kedge binary to run [default: target/release/kedge].
    #[arg(long)]
    kedge: Option<PathBuf>,
    /// Concurrent watches in the fan-out phase.
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite (embedded)",
            Backend::Postgres => "PostgreSQL 15",
        }
    }
}

/// How long and how hard each phase runs.
#[derive(Debug, Clone)]
pub struct Plan {
    quick: bool,
    /// Requests per second of the open-loop phases.
    rate: f64,
    /// The rate of the second, slower list phase.
    list_slow_rate: f64,
    /// Length of each open-loop phase.
    open: Duration,
    /// ConfigMaps in the namespace that is listed.
    list_objects: usize,
    /// Length of each closed-loop phase, and its client counts.
    closed: Duration,
    clients: Vec<usize>,
    watchers: usize,
    watch_rate: f64,
    watch_for: Duration,
    /// Quiet time before the idle measurements.
    settle: Duration,
}

impl Plan {
    fn new(quick: bool, watchers: usize) -> Plan {
        Plan {
            quick,
            rate: 100.0,
            list_slow_rate: 10.0,
            open: Duration::from_secs(if quick { 5 } else { 30 }),
            list_objects: 1000,
            closed: Duration::from_secs(if quick { 5 } else { 20 }),
            clients: vec![1, 16, 64],
            watchers,
            watch_rate: 20.0,
            watch_for: Duration::from_secs(if quick { 5 } else { 10 }),
            settle: Duration::from_secs(if quick { 2 } else { 5 }),
        }
    }

    fn open_count(&self) -> usize {
        (self.rate * self.open.as_secs_f64()) as usize
    }
}

/// One open-loop phase.
#[derive(Debug)]
pub struct OpenPhase {
    pub samples: Samples,
    pub summary: Summary,
    pub lag: Summary,
    pub usage: Usage,
}

impl OpenPhase {
    fn new<T>(run: &OpenLoop<T>, usage: Usage) -> OpenPhase {
        OpenPhase {
            samples: run.samples.clone(),
            summary: run.samples.summary(),
            lag: run.lag.summary(),
            usage,
        }
    }
}

/// One closed-loop phase.
#[derive(Debug)]
pub struct ClosedPhase {
    pub clients: usize,
    pub summary: Summary,
    pub first_error: Option<String>,
    pub usage: Usage,
}

/// Everything one backend measured.
#[derive(Debug)]
pub struct BackendRun {
    pub backend: Backend,
    /// The machine's 1-minute load average when this backend started.
    pub load_average: f64,
    pub startup: Duration,
    pub create: OpenPhase,
    pub update: OpenPhase,
    pub get: OpenPhase,
    pub list: OpenPhase,
    pub list_slow: OpenPhase,
    pub list_bytes: usize,
    pub closed: Vec<ClosedPhase>,
    pub fan_out: FanOut,
    pub fan_out_usage: Usage,
    pub idle_start: (Memory, Usage),
    pub after_load: Memory,
    pub after_lists: Memory,
    pub after_fan_out: Memory,
    pub idle_end: (Memory, Usage),
    pub log: LogFindings,
    pub stop: String,
}

fn say(backend: Backend, what: impl std::fmt::Display) {
    eprintln!("[{}] {what}", backend.name());
}

/// Says how an open-loop phase went, loudly if requests failed.
fn report_open<T>(backend: Backend, run: &OpenLoop<T>) {
    let lag = run.lag.summary();
    say(
        backend,
        format!(
            "  {} (bench timer lag p50 {}, p99 {})",
            run.samples.summary(),
            stats::ms(lag.p50),
            stats::ms(lag.p99)
        ),
    );
    if let Some(e) = &run.samples.first_error {
        say(
            backend,
            format!(
                "  !! {} requests FAILED; the first: {e}",
                run.samples.errors
            ),
        );
    }
}

async fn create_namespace(conn: &Conn, name: &str) -> Result<()> {
    conn.call(
        Method::POST,
        "/api/v1/namespaces",
        Some(objects::namespace(name)),
    )
    .await?;
    Ok(())
}

async fn create_configmap(
    conn: Conn,
    ns: String,
    name: String,
    version: usize,
) -> Result<bytes::Bytes> {
    conn.call(
        Method::POST,
        &objects::configmaps_path(&ns),
        Some(objects::configmap(&ns, &name, version, None)),
    )
    .await
}

async fn measure(backend: Backend, server: &KedgeServer, plan: &Plan) -> Result<BackendRun> {
    let load_average = procfs::load_average();
    say(
        backend,
        format!("machine load average (1 min): {load_average:.2}"),
    );
    let api = Api::from_kubeconfig(server.kubeconfig()).await?;
    let conn = api.connect().await?;
    client::wait_ready(&conn, Duration::from_secs(30)).await?;
    let meter = Meter::start(server.pid());

    say(backend, format!("idle for {:?}…", plan.settle));
    let mark = meter.begin()?;
    tokio::time::sleep(plan.settle).await;
    let idle_start = (meter.memory()?, meter.end(mark)?);
    say(
        backend,
        format!(
            "  RSS {}, {:.1}% of a core",
            stats::mib(idle_start.0.rss_kib),
            idle_start.1.server_core_pct()
        ),
    );

    for ns in ["bench-write", "bench-list", "bench-watch"] {
        create_namespace(&conn, ns).await?;
    }

    say(
        backend,
        format!("loading {} ConfigMaps to list…", plan.list_objects),
    );
    let loaded = futures::stream::iter(0..plan.list_objects)
        .map(|i| create_configmap(conn.clone(), "bench-list".into(), format!("l-{i:06}"), i))
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    for r in loaded {
        r.context("load the ConfigMaps to list")?;
    }
    tokio::time::sleep(plan.settle).await;
    let after_load = meter.memory()?;
    say(backend, format!("  RSS {}", stats::mib(after_load.rss_kib)));

    let n = plan.open_count();
    say(
        backend,
        format!("creates at {}/s for {:?}…", plan.rate, plan.open),
    );
    let mark = meter.begin()?;
    let creates = open_loop(plan.rate, n, |i| {
        let conn = conn.clone();
        async move {
            let body = create_configmap(conn, "bench-write".into(), format!("c-{i:06}"), i).await?;
            objects::resource_version(&body)
        }
    })
    .await;
    let create = OpenPhase::new(&creates, meter.end(mark)?);
    report_open(backend, &creates);

    say(
        backend,
        format!(
            "updates (PUT with resourceVersion) at {}/s for {:?}…",
            plan.rate, plan.open
        ),
    );
    let targets = creates.outputs;
    if targets.is_empty() {
        bail!("no create succeeded, so there is nothing to update");
    }
    let mark = meter.begin()?;
    let updates = open_loop(plan.rate, n, |i| {
        let conn = conn.clone();
        let (index, rv) = targets[i % targets.len()].clone();
        async move {
            let name = format!("c-{index:06}");
            conn.call(
                Method::PUT,
                &format!("{}/{name}", objects::configmaps_path("bench-write")),
                Some(objects::configmap("bench-write", &name, n + i, Some(&rv))),
            )
            .await?;
            Ok(())
        }
    })
    .await;
    let update = OpenPhase::new(&updates, meter.end(mark)?);
    report_open(backend, &updates);

    say(
        backend,
        format!("GET one ConfigMap at {}/s for {:?}…", plan.rate, plan.open),
    );
    let mark = meter.begin()?;
    let list_objects = plan.list_objects;
    let gets = open_loop(plan.rate, n, |i| {
        let conn = conn.clone();
        async move {
            let path = format!(
                "{}/l-{:06}",
                objects::configmaps_path("bench-list"),
                i % list_objects
            );
            conn.call(Method::GET, &path, None).await?;
            Ok(())
        }
    })
    .await;
    let get = OpenPhase::new(&gets, meter.end(mark)?);
    report_open(backend, &gets);

    say(
        backend,
        format!(
            "watch fan-out: opening {} watches, each on its own connection…",
            plan.watchers
        ),
    );
    let writes = (plan.watch_rate * plan.watch_for.as_secs_f64()) as usize;
    let mark = meter.begin()?;
    let fan_out = fanout::fan_out(
        &api,
        &conn,
        "bench-watch",
        plan.watchers,
        plan.watch_rate,
        writes,
        |took| {
            say(
                backend,
                format!(
                    "  opened in {:.1} s; writing {writes} ConfigMaps at {}/s…",
                    took.as_secs_f64(),
                    plan.watch_rate
                ),
            );
        },
    )
    .await?;
    let fan_out_usage = meter.end(mark)?;
    // The watch connections are closed by now; give the server a moment.
    tokio::time::sleep(plan.settle).await;
    let after_fan_out = meter.memory()?;
    say(
        backend,
        format!(
            "  delivered {} of {} events, p50 {}, p99 {}, max {}; peak RSS {}",
            fan_out.delivered,
            fan_out.expected,
            stats::ms(fan_out.delivery.summary().p50),
            stats::ms(fan_out.delivery.summary().p99),
            stats::ms(fan_out.delivery.summary().max),
            stats::mib(fan_out_usage.peak_rss_kib)
        ),
    );
    if !fan_out.exact() {
        say(
            backend,
            format!(
                "  !! WATCH DELIVERY WAS NOT EXACT: {} missed, {} duplicates, {} out of order, \
                 {} unexpected, {} watches ended early; first problem: {}",
                fan_out.missed,
                fan_out.duplicates,
                fan_out.out_of_order,
                fan_out.unexpected,
                fan_out.ended_early,
                fan_out.first_problem.as_deref().unwrap_or("—")
            ),
        );
    }
    if fan_out.write.samples.errors > 0 {
        say(
            backend,
            format!(
                "  !! {} writes FAILED: {}",
                fan_out.write.samples.errors,
                fan_out.write.samples.first_error.as_deref().unwrap_or("")
            ),
        );
    }

    let list_path = objects::configmaps_path("bench-list");
    let first = conn.call(Method::GET, &list_path, None).await?;
    let items = objects::item_count(&first)?;
    if items != plan.list_objects {
        bail!(
            "LIST {list_path} returned {items} items, expected {}",
            plan.list_objects
        );
    }
    // First at a rate the server keeps up with (the latency of one list),
    // then at the full rate (can the server keep up?).
    let mut lists = Vec::new();
    for rate in [plan.list_slow_rate, plan.rate] {
        say(
            backend,
            format!(
                "LIST {items} ConfigMaps ({} KiB) at {rate}/s for {:?}…",
                first.len() / 1024,
                plan.open
            ),
        );
        let count = (rate * plan.open.as_secs_f64()) as usize;
        let mark = meter.begin()?;
        let run = open_loop(rate, count, |_| {
            let (conn, path) = (conn.clone(), list_path.clone());
            async move {
                conn.call(Method::GET, &path, None).await?;
                Ok(())
            }
        })
        .await;
        lists.push(OpenPhase::new(&run, meter.end(mark)?));
        report_open(backend, &run);
    }
    let list = lists.pop().expect("two list phases");
    let list_slow = lists.pop().expect("two list phases");
    tokio::time::sleep(plan.settle).await;
    let after_lists = meter.memory()?;
    say(
        backend,
        format!("  RSS {} when idle again", stats::mib(after_lists.rss_kib)),
    );

    let mut closed = Vec::new();
    for &clients in &plan.clients {
        let ns = format!("bench-tput-{clients}");
        create_namespace(&conn, &ns).await?;
        let mut conns = Vec::with_capacity(clients);
        for _ in 0..clients {
            conns.push(api.connect().await?);
        }
        say(
            backend,
            format!(
                "creates as fast as {clients} client(s) go, each on its own connection, for {:?}…",
                plan.closed
            ),
        );
        let mark = meter.begin()?;
        let samples = closed_loop(&conns, plan.closed, move |conn, client, seq| {
            let ns = ns.clone();
            async move {
                create_configmap(conn, ns, format!("t-{client:03}-{seq:07}"), seq).await?;
                Ok(())
            }
        })
        .await;
        let usage = meter.end(mark)?;
        say(backend, format!("  {}", samples.summary()));
        if let Some(e) = &samples.first_error {
            say(
                backend,
                format!("  !! {} requests FAILED; the first: {e}", samples.errors),
            );
        }
        closed.push(ClosedPhase {
            clients,
            summary: samples.summary(),
            first_error: samples.first_error.clone(),
            usage,
        });
    }

    drop(conn);
    say(
        backend,
        format!("idle for {:?} with no connections…", plan.settle),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mark = meter.begin()?;
    tokio::time::sleep(plan.settle).await;
    let idle_end = (meter.memory()?, meter.end(mark)?);
    say(
        backend,
        format!(
            "  RSS {}, HWM {}, {:.1}% of a core",
            stats::mib(idle_end.0.rss_kib),
            stats::mib(idle_end.0.hwm_kib),
            idle_end.1.server_core_pct()
        ),
    );

    Ok(BackendRun {
        backend,
        load_average,
        startup: server.startup,
        create,
        update,
        get,
        list,
        list_slow,
        list_bytes: first.len(),
        closed,
        fan_out,
        fan_out_usage,
        idle_start,
        after_load,
        after_lists,
        after_fan_out,
        idle_end,
        log: server.log_findings(),
        stop: String::new(),
    })
}

async fn run_backend(backend: Backend, kedge: &std::path::Path, plan: &Plan) -> Result<BackendRun> {
    let postgres = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => {
            say(
                backend,
                "starting a throwaway PostgreSQL (durable, on disk)…",
            );
            let pg = tokio::task::spawn_blocking(|| Postgres::start(Durability::Durable))
                .await?
                .context("start PostgreSQL for the postgres backend")?;
            Some(pg)
        }
    };
    let endpoint = match &postgres {
        None => String::new(),
        Some(pg) => pg
            .create_database("kedge_api_bench")
            .context("create the benchmark database")?,
    };
    say(backend, format!("starting {}…", kedge.display()));
    let server = KedgeServer::start(kedge, &endpoint).await?;
    say(
        backend,
        format!(
            "  API ready {} ms after the process started",
            server.startup.as_millis()
        ),
    );
    let measured = measure(backend, &server, plan).await;
    let mut run = match measured {
        Ok(run) => run,
        Err(e) => {
            let tail = server.log_tail(40);
            let _ = server.stop().await;
            return Err(e.context(format!(
                "{} benchmark failed; the end of the server's log:\n{tail}",
                backend.name()
            )));
        }
    };
    if run.log.warnings + run.log.errors > 0 {
        say(
            backend,
            format!(
                "!! the server logged {} warnings and {} errors, e.g.:\n{}",
                run.log.warnings,
                run.log.errors,
                run.log.examples.join("\n")
            ),
        );
    }
    run.stop = server.stop().await?;
    say(backend, format!("server {}", run.stop));
    // Stopping PostgreSQL waits for it; keep that off the runtime's threads.
    tokio::task::spawn_blocking(move || drop(postgres)).await?;
    Ok(run)
}

#[tokio::main]
async fn main() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let args = Args::parse();
    // On SIGINT or SIGTERM, drop the run: that kills the kedge server and
    // PostgreSQL and removes their data instead of leaving them behind.
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        result = run(args) => result,
        _ = int.recv() => bail!("interrupted; stopped the servers"),
        _ = term.recv() => bail!("terminated; stopped the servers"),
    }
}

async fn run(args: Args) -> Result<()> {
    if cfg!(debug_assertions) {
        eprintln!(
            "warning: api-bench is a debug build; its own overhead inflates the numbers. \
             Use cargo run --release."
        );
    }
    let kedge = server::find_kedge(args.kedge.as_deref())?;
    let plan = Plan::new(args.quick, args.watchers);
    let mut runs = Vec::new();
    for &backend in &args.backends {
        runs.push(run_backend(backend, &kedge, &plan).await?);
        say(backend, "done");
    }

    let flags: Vec<String> = std::env::args().skip(1).collect();
    let command = format!(
        "cargo build --release -p kedge && cargo run --release -p kedge-api-bench --bin api-bench --{}",
        if flags.is_empty() {
            String::new()
        } else {
            format!(" {}", flags.join(" "))
        }
    );
    let section = report::section(&runs, &plan, &command);
    println!("{section}");
    if !args.no_docs {
        let path = kedge_datastore_testkit::report::benchmarks_md();
        kedge_datastore_testkit::report::write_section(&path, "api-bench", &section)
            .with_context(|| format!("write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
        let svg = path.with_file_name(report::SVG_NAME);
        std::fs::write(&svg, report::latency_svg(&runs))
            .with_context(|| format!("write {}", svg.display()))?;
        eprintln!("wrote {}", svg.display());
    }
    let inexact: Vec<&str> = runs
        .iter()
        .filter(|r| !r.fan_out.exact())
        .map(|r| r.backend.name())
        .collect();
    if !inexact.is_empty() {
        bail!(
            "watch delivery was not exact on {}: see the report",
            inexact.join(", ")
        );
    }
    Ok(())
}
