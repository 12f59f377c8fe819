//! The api-bench section of docs/benchmarks.md, and its latency plot.

use std::fmt::Write as _;
use std::time::Duration;

use kedge_datastore_testkit::report::{machine, today};

use crate::procfs::Usage;
use crate::stats::{mib, ms, percentile, thousands, times};
use crate::{Backend, BackendRun, ClosedPhase, OpenPhase, Plan};

/// The plot, next to docs/benchmarks.md.
pub const SVG_NAME: &str = "api-bench-latency.svg";

// Published anchors (not measured here).
const SLO_MUTATING: Duration = Duration::from_secs(1);
const SLO_READ_OBJECT: Duration = Duration::from_secs(1);
const SLO_LIST_NAMESPACE: Duration = Duration::from_secs(5);
const DESIGN_P99: Duration = Duration::from_millis(10);
const BRIEF_P99: Duration = Duration::from_millis(20);
const DESIGN_IDLE_MB: f64 = 50.0;
const BRIEF_IDLE_MB: f64 = 100.0;
const K3S_SQLITE_MB: (f64, f64) = (1215.0, 1596.0);
const RUSTERNETES_OPS: f64 = 600.0;

fn mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}

/// Writing to a String cannot fail; this keeps the builders short.
macro_rules! w {
    ($out:expr) => {{
        let _ = writeln!($out);
    }};
    ($out:expr, $($arg:tt)*) => {{
        let _ = writeln!($out, $($arg)*);
    }};
}

pub fn section(runs: &[BackendRun], plan: &Plan, command: &str) -> String {
    let mut s = String::new();
    w!(s, "## API server\n");
    w!(
        s,
        "Measured {} on {} with `{command}`{}.\n",
        today(),
        machine(),
        if plan.quick {
            " (quick: short phases, numbers only indicative)"
        } else {
            ""
        }
    );
    w!(
        s,
        "What runs: the release `kedge server` binary as a subprocess, on a free loopback port, \
         with its data directory on disk under /var/tmp; the datastore is embedded SQLite \
         (WAL, synchronous=FULL) or a throwaway PostgreSQL 15 on loopback with default \
         durability (fsync on every commit). The bench client runs on the same machine and \
         shares its CPUs with the server; its own CPU time is in the tables.\n"
    );
    w!(
        s,
        "The client is hyper's HTTP/2 client over rustls, authenticated with the admin client \
         certificate from the kubeconfig the server wrote (ALPN h2, which kubectl and client-go \
         also negotiate; flow-control windows of 4 MiB per stream, like client-go's). kube-rs's \
         `Client` was not used: it decodes every response into typed objects and shares one \
         connection pool, so on two shared cores its decoding would land in the latencies, and the \
         bench could not choose its connections. Here the open-loop phases share one connection; \
         each closed-loop client and each watcher has its own.\n"
    );
    w!(
        s,
        "Open loop: request *i* is issued at *start + i / rate*, each as its own task, whether or \
         not earlier ones have answered, and its latency runs from that scheduled time to the last \
         byte of the response (so a stall is not hidden by coordinated omission; the bench's own \
         timer lateness is included and given below each table). Closed loop: N clients issue \
         creates one after another as fast as answers come. ConfigMaps carry {} bytes of data \
         (about 0.7 KB as JSON). Watch fan-out: {} watches on one namespace from the same \
         resourceVersion, then creates at {}/s for {} s; delivery latency runs from the moment the \
         write's response reaches the writer to the moment a watcher has the event, over every \
         (watcher, event) pair. Memory is the kedge process's VmRSS and VmHWM from /proc \
         (PostgreSQL's own memory is not included), sampled every 50 ms for the peaks. CPU is \
         utime+stime from /proc as a share of one core over the phase (200% is the whole \
         machine), for the server, the bench, all other processes together (from /proc/stat: \
         PostgreSQL for that backend, and whatever else the shared machine ran at the time), and \
         steal: time the hypervisor gave to other guests while this virtual machine wanted to \
         run. Lists run at 10/s as well as at 100/s, to show the latency of one list apart from \
         any queueing.\n",
        crate::client::objects::DATA_BYTES,
        thousands(plan.watchers as u64),
        plan.watch_rate,
        plan.watch_for.as_secs()
    );

    for run in runs {
        backend_table(&mut s, run, plan);
    }
    memory_table(&mut s, runs);
    anchors(&mut s, runs);
    w!(
        s,
        "![Latency by percentile]({SVG_NAME})\n\n\
         Latency by percentile of each open-loop phase and of watch delivery, from the run \
         above (log scales; solid SQLite, dashed PostgreSQL; deliveries that beat the write's \
         own response are drawn at the 0.1 ms floor).\n"
    );
    s
}

/// "server / bench / others / steal" CPU as shares of one core.
fn cpu_cell(u: &Usage) -> String {
    format!(
        "{:.0}% / {:.0}% / {:.0}% / {:.0}%",
        u.server_core_pct(),
        u.bench_core_pct(),
        u.others_core_pct(),
        u.steal_core_pct()
    )
}

fn errors_cell(errors: u64) -> String {
    if errors == 0 {
        "0".into()
    } else {
        format!("**{errors}**")
    }
}

fn open_row(s: &mut String, what: &str, rate: f64, plan: &Plan, p: &OpenPhase) {
    let sum = &p.summary;
    w!(
        s,
        "| {what} | open loop, {rate:.0}/s for {} s | {} | {} | {} | {} | {} | {:.0}/s | {} | {} |",
        plan.open.as_secs(),
        thousands(sum.count as u64),
        errors_cell(sum.errors),
        ms(sum.p50),
        ms(sum.p99),
        ms(sum.max),
        sum.per_sec,
        mib(p.usage.peak_rss_kib),
        cpu_cell(&p.usage)
    );
}

fn closed_row(s: &mut String, p: &ClosedPhase, plan: &Plan) {
    let sum = &p.summary;
    w!(
        s,
        "| create ConfigMap, {} client{} | closed loop, {} s | {} | {} | {} | {} | {} | **{:.0}/s** | {} | {} |",
        p.clients,
        if p.clients == 1 { "" } else { "s" },
        plan.closed.as_secs(),
        thousands(sum.count as u64),
        errors_cell(sum.errors),
        ms(sum.p50),
        ms(sum.p99),
        ms(sum.max),
        sum.per_sec,
        mib(p.usage.peak_rss_kib),
        cpu_cell(&p.usage)
    );
}

fn backend_table(s: &mut String, run: &BackendRun, plan: &Plan) {
    w!(s, "### {}\n", run.backend.title());
    w!(
        s,
        "| phase | load | done | errors | p50 | p99 | max | rate | peak RSS | CPU: server / bench / others / steal |"
    );
    w!(s, "|---|---|---|---|---|---|---|---|---|---|");
    open_row(s, "create ConfigMap (POST)", plan.rate, plan, &run.create);
    open_row(
        s,
        "update ConfigMap (PUT with resourceVersion)",
        plan.rate,
        plan,
        &run.update,
    );
    open_row(s, "get one ConfigMap", plan.rate, plan, &run.get);
    let f = &run.fan_out;
    let d = f.delivery.summary();
    w!(
        s,
        "| watch delivery to {} watches | {} creates at {:.0}/s | {} of {} events | {} | {} | {} | {} | {:.0} events/s | {} | {} |",
        thousands(f.watchers as u64),
        f.writes,
        plan.watch_rate,
        thousands(f.delivered),
        thousands(f.expected),
        if f.exact() {
            "0 missed".to_string()
        } else {
            format!("**{} missed**", f.missed)
        },
        ms(d.p50),
        ms(d.p99),
        ms(d.max),
        f.delivered as f64 / run.fan_out_usage.wall.as_secs_f64(),
        mib(run.fan_out_usage.peak_rss_kib),
        cpu_cell(&run.fan_out_usage)
    );
    let list = format!(
        "list {} ConfigMaps ({} KiB of JSON)",
        thousands(plan.list_objects as u64),
        run.list_bytes / 1024
    );
    open_row(s, &list, plan.list_slow_rate, plan, &run.list_slow);
    open_row(s, &list, plan.rate, plan, &run.list);
    for p in &run.closed {
        closed_row(s, p, plan);
    }
    w!(s);
    let lags: Vec<String> = [
        ("create", &run.create),
        ("update", &run.update),
        ("get", &run.get),
        ("list at 10/s", &run.list_slow),
        ("list at 100/s", &run.list),
    ]
    .iter()
    .map(|(what, p)| format!("{what} {} / {}", ms(p.lag.p50), ms(p.lag.p99)))
    .collect();
    w!(
        s,
        "The machine's load average was {:.2} when this backend started. The API was ready {} ms \
         after the process started. The bench's own timer woke late by (p50 / p99, inside the \
         latencies above): {}. Opening the {} watches took {:.1} s; {} of the deliveries arrived \
         before the write's own response (counted as 0 ms).\n",
        run.load_average,
        run.startup.as_millis(),
        lags.join(", "),
        thousands(f.watchers as u64),
        f.open_time.as_secs_f64(),
        thousands(f.before_response)
    );
    if run.list.summary.per_sec < 0.9 * plan.rate {
        w!(
            s,
            "**At {:.0} lists/s the server did not keep up: it answered {:.0}/s, so the list \
             latencies at that rate are mostly queueing.**",
            plan.rate,
            run.list.summary.per_sec
        );
    }
    if f.exact() {
        w!(
            s,
            "Every watcher received every event exactly once, in resourceVersion order, with \
             the resourceVersion its write returned.\n"
        );
    } else {
        w!(
            s,
            "\n**Watch delivery was not exact: {} missed, {} duplicated, {} out of order, {} \
             unexpected events, {} watches ended by the server. First problem: {}**\n",
            f.missed,
            f.duplicates,
            f.out_of_order,
            f.unexpected,
            f.ended_early,
            f.first_problem.as_deref().unwrap_or("—")
        );
    }
    for (what, p) in [
        ("create", &run.create),
        ("update", &run.update),
        ("get", &run.get),
        ("list (10/s)", &run.list_slow),
        ("list (100/s)", &run.list),
    ] {
        if let Some(e) = &p.samples.first_error {
            w!(
                s,
                "\n**{} {what} requests failed**; the first: `{}`\n",
                p.summary.errors,
                e.replace('`', "'")
            );
        }
    }
    for p in &run.closed {
        if let Some(e) = &p.first_error {
            w!(
                s,
                "\n**{} creates with {} clients failed**; the first: `{}`\n",
                p.summary.errors,
                p.clients,
                e.replace('`', "'")
            );
        }
    }
    w!(
        s,
        "The server logged {} warnings and {} errors, and {}.\n",
        run.log.warnings,
        run.log.errors,
        run.stop
    );
    if !run.log.examples.is_empty() {
        w!(s, "```");
        for line in &run.log.examples {
            w!(s, "{line}");
        }
        w!(s, "```\n");
    }
}

fn memory_table(s: &mut String, runs: &[BackendRun]) {
    w!(s, "### Memory and idle CPU of the kedge process\n");
    let mut header = "| when |".to_string();
    let mut rule = "|---|".to_string();
    for r in runs {
        let _ = write!(header, " {} |", r.backend.title());
        rule.push_str("---|");
    }
    w!(s, "{header}");
    w!(s, "{rule}");
    let row = |s: &mut String, what: &str, cell: &dyn Fn(&BackendRun) -> String| {
        let mut line = format!("| {what} |");
        for r in runs {
            let _ = write!(line, " {} |", cell(r));
        }
        w!(s, "{line}");
    };
    row(s, "VmRSS idle after start", &|r| {
        mib(r.idle_start.0.rss_kib)
    });
    row(s, "server CPU while idle after start", &|r| {
        format!("{:.1}% of a core", r.idle_start.1.server_core_pct())
    });
    row(s, "VmRSS after loading 1,000 ConfigMaps", &|r| {
        mib(r.after_load.rss_kib)
    });
    row(s, "peak VmRSS during the watch fan-out", &|r| {
        mib(r.fan_out_usage.peak_rss_kib)
    });
    row(s, "VmRSS after the fan-out (watches closed), idle", &|r| {
        mib(r.after_fan_out.rss_kib)
    });
    row(s, "VmRSS after the list phases, idle", &|r| {
        mib(r.after_lists.rss_kib)
    });
    row(s, "VmRSS idle at the end (no connections)", &|r| {
        mib(r.idle_end.0.rss_kib)
    });
    row(s, "server CPU while idle at the end", &|r| {
        format!("{:.1}% of a core", r.idle_end.1.server_core_pct())
    });
    row(s, "VmHWM at the end (peak of the whole run)", &|r| {
        mib(r.idle_end.0.hwm_kib)
    });
    w!(s);
    w!(
        s,
        "Peak VmRSS per phase is in the tables above (sampled every 50 ms).\n"
    );
}

/// "p99 3.1 ms = 323× under the 1 s SLO".
fn under(what: &str, p99: Duration, bound: Duration, bound_text: &str) -> String {
    let ratio = bound.as_secs_f64() / p99.as_secs_f64().max(1e-9);
    if p99 <= bound {
        format!(
            "{what} p99 {} = {} under {bound_text}",
            ms(p99),
            times(ratio)
        )
    } else {
        format!(
            "**{what} p99 {} = {} over {bound_text}**",
            ms(p99),
            times(1.0 / ratio)
        )
    }
}

fn anchors(s: &mut String, runs: &[BackendRun]) {
    w!(s, "### Against published anchors\n");
    w!(
        s,
        "The anchors are published figures, not measured here. The Kubernetes SLOs are defined \
         server-side (request received to last byte sent) as a p99 per cluster-day; these are \
         client-side p99s over a short run, with the client on the same two cores, so the \
         comparison is conservative. K3s's figure is its whole service at the 95th percentile \
         (apiserver, controllers, scheduler, kubelet and containerd, with a workload); today's \
         kedge is the API server and its datastore only, so that ratio is an upper bound of what \
         kedge will keep. rusternetes's figures are quoted from DESIGN.md, not run side by side. \
         Memory here is in MB (10^6 bytes), as the targets are; the tables above use MiB.\n"
    );
    // What else weighed on the open-loop latencies in this run.
    let phases = runs
        .iter()
        .flat_map(|r| [&r.create, &r.update, &r.get])
        .collect::<Vec<_>>();
    if !phases.is_empty() {
        let n = phases.len() as f64;
        let others = phases
            .iter()
            .map(|p| p.usage.others_core_pct())
            .sum::<f64>()
            / n;
        let steal = phases.iter().map(|p| p.usage.steal_core_pct()).sum::<f64>() / n;
        let lag = phases.iter().map(|p| p.lag.p99).max().unwrap_or_default();
        w!(
            s,
            "What weighs on the 100/s latencies and is not the server's: the bench's own timer \
             lateness (p99 up to {} in the create, update and get phases; it is in the \
             latencies), the other processes of this shared machine ({others:.0}% of a core on \
             average, of 200%, during those phases), and the hypervisor ({steal:.1}% of a core \
             stolen on average). A stall of the whole virtual machine shows as timer lateness \
             and as latency at once.\n",
            ms(lag),
        );
    }
    let mut header = "| anchor (published) |".to_string();
    let mut rule = "|---|".to_string();
    for r in runs {
        let _ = write!(header, " kedge, {} |", r.backend.title());
        rule.push_str("---|");
    }
    w!(s, "{header}");
    w!(s, "{rule}");
    let row = |s: &mut String, what: &str, cell: &dyn Fn(&BackendRun) -> String| {
        let mut line = format!("| {what} |");
        for r in runs {
            let _ = write!(line, " {} |", cell(r));
        }
        w!(s, "{line}");
    };
    row(
        s,
        "Kubernetes SLO (sig-scalability): mutating API calls, p99 ≤ 1 s",
        &|r| {
            format!(
                "{}; {}",
                under("create", r.create.summary.p99, SLO_MUTATING, "1 s"),
                under("update", r.update.summary.p99, SLO_MUTATING, "1 s")
            )
        },
    );
    row(
        s,
        "Kubernetes SLO: read-only, one object (scope=resource), p99 ≤ 1 s",
        &|r| under("get", r.get.summary.p99, SLO_READ_OBJECT, "1 s"),
    );
    row(
        s,
        "Kubernetes SLO: read-only, list in a namespace, p99 ≤ 5 s (cluster-wide: ≤ 30 s)",
        &|r| {
            format!(
                "{}; {}",
                under(
                    "at 10/s: list",
                    r.list_slow.summary.p99,
                    SLO_LIST_NAMESPACE,
                    "5 s"
                ),
                under(
                    "at 100/s: list",
                    r.list.summary.p99,
                    SLO_LIST_NAMESPACE,
                    "5 s"
                )
            )
        },
    );
    row(
        s,
        "kedge target (DESIGN.md): mutating p99 ≤ 10 ms at 100 QPS on SQLite",
        &|r| {
            let worst = r.create.summary.p99.max(r.update.summary.p99);
            let verdict = if worst <= DESIGN_P99 {
                "met"
            } else {
                "**missed**"
            };
            let note = if r.backend == Backend::Sqlite {
                ""
            } else {
                " (the target is for SQLite)"
            };
            format!(
                "{verdict}{note}: create p99 {}, update p99 {}",
                ms(r.create.summary.p99),
                ms(r.update.summary.p99)
            )
        },
    );
    row(
        s,
        "benchmark brief: mutating p99 ≤ 20 ms at 100 QPS on SQLite",
        &|r| {
            let worst = r.create.summary.p99.max(r.update.summary.p99);
            format!(
                "{}: worst p99 {} = {}",
                if worst <= BRIEF_P99 {
                    "met"
                } else {
                    "**missed**"
                },
                ms(worst),
                if worst <= BRIEF_P99 {
                    format!(
                        "{} under 20 ms",
                        times(BRIEF_P99.as_secs_f64() / worst.as_secs_f64().max(1e-9))
                    )
                } else {
                    format!(
                        "{} over 20 ms",
                        times(worst.as_secs_f64() / BRIEF_P99.as_secs_f64())
                    )
                }
            )
        },
    );
    row(
        s,
        "K3s docs (resource profiling, v1.26.5): server RAM with Kine/SQLite 1,215–1,596 M",
        &|r| {
            let idle = mb(r.idle_start.0.rss_kib);
            let peak = mb(r.idle_end.0.hwm_kib);
            format!(
                "idle {idle:.0} MB = {}–{} less; run's peak {peak:.0} MB = {}–{} less",
                times(K3S_SQLITE_MB.0 / idle),
                times(K3S_SQLITE_MB.1 / idle),
                times(K3S_SQLITE_MB.0 / peak),
                times(K3S_SQLITE_MB.1 / peak)
            )
        },
    );
    row(
        s,
        "kedge target (DESIGN.md): idle server RSS ≤ 50 MB (benchmark brief: ≤ 100 MB)",
        &|r| {
            let idle = mb(r.idle_start.0.rss_kib);
            let end = mb(r.idle_end.0.rss_kib);
            let verdict = |mb: f64| {
                if mb <= DESIGN_IDLE_MB {
                    "meets both"
                } else if mb <= BRIEF_IDLE_MB {
                    "meets ≤ 100 MB, **misses ≤ 50 MB**"
                } else {
                    "**misses both**"
                }
            };
            format!(
                "after start {idle:.1} MB ({}); idle at the end {end:.1} MB ({})",
                verdict(idle),
                verdict(end)
            )
        },
    );
    row(
        s,
        "rusternetes (DESIGN.md): create p50 1.9 ms, p99 8.9 ms, ~600 ops/s with one client",
        &|r| match r.closed.iter().find(|p| p.clients == 1) {
            Some(one) => format!(
                "one client: p50 {}, p99 {}, {:.0}/s = {} its rate",
                ms(one.summary.p50),
                ms(one.summary.p99),
                one.summary.per_sec,
                times(one.summary.per_sec / RUSTERNETES_OPS)
            ),
            None => "—".into(),
        },
    );
    row(
        s,
        "kedge target (DESIGN.md): ≥ 2× rusternetes's throughput (≥ 1,200/s)",
        &|r| {
            let best = r
                .closed
                .iter()
                .max_by(|a, b| a.summary.per_sec.total_cmp(&b.summary.per_sec));
            match best {
                Some(p) => format!(
                    "{}: {:.0}/s with {} clients = {} of 600/s",
                    if p.summary.per_sec >= 2.0 * RUSTERNETES_OPS {
                        "met"
                    } else {
                        "**missed**"
                    },
                    p.summary.per_sec,
                    p.clients,
                    times(p.summary.per_sec / RUSTERNETES_OPS)
                ),
                None => "—".into(),
            }
        },
    );
    w!(s);
}

/// One line of the plot: (x in decades of 1 / (1 - q), latency in ms).
struct Curve {
    name: String,
    color: &'static str,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

/// Latency by percentile, HdrHistogram style: x is the percentile on a
/// log(1 / (1 - q)) scale up to 99.9 %, y the latency on a log scale.
pub fn latency_svg(runs: &[BackendRun]) -> String {
    const W: f64 = 820.0;
    const H: f64 = 460.0;
    const X0: f64 = 80.0;
    const X1: f64 = 600.0;
    const Y0: f64 = 30.0;
    const Y1: f64 = 400.0;
    const DECADES: f64 = 3.0; // 0, 90, 99, 99.9 %
    const FLOOR_MS: f64 = 0.1;
    let colors = [
        ("create", "#1f77b4"),
        ("update", "#ff7f0e"),
        ("get", "#2ca02c"),
        ("list at 10/s", "#8c564b"),
        ("list at 100/s", "#d62728"),
        ("watch delivery", "#9467bd"),
    ];
    let mut curves: Vec<Curve> = Vec::new();
    for run in runs {
        let sets: [&[Duration]; 6] = [
            &run.create.samples.latencies,
            &run.update.samples.latencies,
            &run.get.samples.latencies,
            &run.list_slow.samples.latencies,
            &run.list.samples.latencies,
            &run.fan_out.delivery.latencies,
        ];
        for ((name, color), sorted) in colors.iter().zip(sets) {
            if sorted.is_empty() {
                continue;
            }
            let points = (0..=300)
                .map(|k| {
                    let t = DECADES * k as f64 / 300.0;
                    let q = 1.0 - 10f64.powf(-t);
                    let ms = percentile(sorted, q).as_secs_f64() * 1000.0;
                    // Deliveries before the write's response count as 0 ms;
                    // they sit on the floor of the plot.
                    (t, ms.max(FLOOR_MS))
                })
                .collect();
            curves.push(Curve {
                name: format!("{name}, {}", run.backend.name()),
                color,
                dashed: run.backend != Backend::Sqlite,
                points,
            });
        }
    }
    let (lo, hi) = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p.1))
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if lo > hi { (0.1, 1000.0) } else { (lo, hi) };
    let dec_lo = lo.log10().floor();
    let dec_hi = hi.log10().ceil().max(dec_lo + 1.0);
    let x = |t: f64| X0 + (X1 - X0) * t / DECADES;
    let y = |ms: f64| Y1 - (Y1 - Y0) * (ms.log10() - dec_lo) / (dec_hi - dec_lo);

    let mut s = String::new();
    w!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    w!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    w!(
        s,
        r#"<text x="{}" y="18" text-anchor="middle" font-size="14">kedge API latency by percentile (api-bench, {})</text>"#,
        (X0 + X1) / 2.0,
        today()
    );
    for (t, label) in [(0.0, "0%"), (1.0, "90%"), (2.0, "99%"), (3.0, "99.9%")] {
        w!(
            s,
            r##"<line x1="{0:.1}" y1="{Y0}" x2="{0:.1}" y2="{Y1}" stroke="#ddd"/><text x="{0:.1}" y="{1}" text-anchor="middle">{label}</text>"##,
            x(t),
            Y1 + 16.0
        );
    }
    let mut d = dec_lo;
    while d <= dec_hi + 1e-9 {
        let v = 10f64.powf(d);
        let label = if v >= 1000.0 {
            format!("{:.0} s", v / 1000.0)
        } else if v >= 1.0 {
            format!("{v:.0} ms")
        } else {
            format!("{v} ms")
        };
        w!(
            s,
            r##"<line x1="{X0}" y1="{0:.1}" x2="{X1}" y2="{0:.1}" stroke="#ddd"/><text x="{1}" y="{2:.1}" text-anchor="end">{label}</text>"##,
            y(v),
            X0 - 6.0,
            y(v) + 4.0
        );
        d += 1.0;
    }
    w!(
        s,
        r#"<rect x="{X0}" y="{Y0}" width="{}" height="{}" fill="none" stroke="black"/>"#,
        X1 - X0,
        Y1 - Y0
    );
    w!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">percentile</text>"#,
        (X0 + X1) / 2.0,
        Y1 + 36.0
    );
    for (
        i,
        Curve {
            name,
            color,
            dashed,
            points,
        },
    ) in curves.iter().enumerate()
    {
        let path: Vec<String> = points
            .iter()
            .map(|&(t, v)| format!("{:.1},{:.1}", x(t), y(v)))
            .collect();
        let dash = if *dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        w!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.6"{dash} points="{}"/>"#,
            path.join(" ")
        );
        let ly = Y0 + 10.0 + 18.0 * i as f64;
        w!(
            s,
            r#"<line x1="{}" y1="{ly:.1}" x2="{}" y2="{ly:.1}" stroke="{color}" stroke-width="2"{dash}/><text x="{}" y="{:.1}">{name}</text>"#,
            X1 + 15.0,
            X1 + 45.0,
            X1 + 52.0,
            ly + 4.0
        );
    }
    w!(s, "</svg>");
    s
}
