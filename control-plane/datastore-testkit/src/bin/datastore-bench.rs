//! datastore-bench: measures every datastore backend on real servers and
//! writes the numbers into docs/benchmarks.md.
//!
//! Per backend: writes/s and latency with one writer (creates, then CAS
//! updates) and with 16 concurrent writers, the time to list 10,000 keys, and
//! watch delivery latency. Servers run with production durability: fsync on
//! every commit, data on disk (/var/tmp), not tmpfs.
//!
//! Usage: datastore-bench [--backends sqlite,postgres,etcd] [--quick] [--no-docs]

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures::StreamExt;

use kedge_datastore::{ListRequest, Store, WriteOptions};
use kedge_datastore_etcd::{EtcdConfig, EtcdStore};
use kedge_datastore_postgres::{PostgresConfig, PostgresStore};
use kedge_datastore_sqlite::{SqliteConfig, SqliteStore};
use kedge_datastore_testkit::report;
use kedge_datastore_testkit::servers::{Durability, Etcd, Postgres};

const NO_TTL: WriteOptions = WriteOptions { ttl: None };

struct Sizes {
    sequential: usize,
    concurrent: usize,
    writers: usize,
    list_keys: usize,
    list_runs: usize,
    watch_events: usize,
}

/// What one backend measured.
#[derive(Debug, Default)]
struct Results {
    backend: &'static str,
    /// The same number of plain single-key writes straight to the backend
    /// (etcd put, PostgreSQL INSERT, SQLite INSERT), one at a time, each its
    /// own durable commit: the floor this machine's disk allows.
    raw_1: Latencies,
    create_1: Latencies,
    update_1: Latencies,
    create_16: Latencies,
    list_all_ms: f64,
    list_paged_ms: f64,
    watch: Latencies,
    /// Watch delivery when the watcher is on a second server (another store
    /// instance on the same database); SQLite has no second server.
    watch_peer: Option<Latencies>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Latencies {
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

impl Latencies {
    fn from(mut samples: Vec<Duration>, wall: Duration) -> Self {
        samples.sort();
        let pick = |q: f64| {
            samples
                .get(((samples.len() as f64 * q) as usize).min(samples.len().saturating_sub(1)))
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        Latencies {
            per_sec: samples.len() as f64 / wall.as_secs_f64(),
            p50_ms: pick(0.50),
            p99_ms: pick(0.99),
        }
    }
}

fn median_ms(mut runs: Vec<Duration>) -> f64 {
    runs.sort();
    runs[runs.len() / 2].as_secs_f64() * 1000.0
}

fn value(i: usize) -> Bytes {
    // About the size of a small Kubernetes object.
    Bytes::from(format!(
        "{{\"kind\":\"ConfigMap\",\"n\":{i},\"pad\":\"{}\"}}",
        "x".repeat(400)
    ))
}

/// Progress on one line per phase.
fn phase(backend: &str, what: &str) {
    eprintln!("[{backend}] {what}…");
}

/// Writes `n` keys on `writer`, one at a time, and times each from the call
/// to its event reaching a watcher on `watcher`.
async fn watch_latency(
    writer: &Arc<dyn Store>,
    watcher: &Arc<dyn Store>,
    prefix: &str,
    n: usize,
) -> Result<Latencies> {
    let mut watch = watcher.watch(prefix, 0).await?;
    let (sent_tx, mut sent_rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let writing = {
        let store = writer.clone();
        let prefix = prefix.to_string();
        tokio::spawn(async move {
            for i in 0..n {
                let _ = sent_tx.send(Instant::now());
                store
                    .create(&format!("{prefix}{i:06}"), value(i), NO_TTL)
                    .await?;
            }
            Ok::<_, kedge_datastore::Error>(())
        })
    };
    let mut samples = Vec::with_capacity(n);
    let wall = Instant::now();
    for _ in 0..n {
        tokio::time::timeout(Duration::from_secs(30), watch.next())
            .await
            .context("watch stalled")?
            .context("watch ended")??;
        let sent = sent_rx.recv().await.context("writer stopped")?;
        samples.push(sent.elapsed());
    }
    writing.await??;
    Ok(Latencies::from(samples, wall.elapsed()))
}

async fn measure(
    store: Arc<dyn Store>,
    peer: Option<Arc<dyn Store>>,
    sizes: &Sizes,
) -> Result<Results> {
    let name = store.backend();
    let mut r = Results {
        backend: name,
        ..Results::default()
    };

    phase(name, &format!("{} creates, one writer", sizes.sequential));
    let kvs;
    (r.create_1, kvs) = time_sequential(sizes.sequential, |i| {
        let store = store.clone();
        async move {
            Ok(store
                .create(&format!("/bench/seq/{i:06}"), value(i), NO_TTL)
                .await?)
        }
    })
    .await?;

    phase(
        name,
        &format!("{} CAS updates, one writer", sizes.sequential),
    );
    (r.update_1, _) = time_sequential(kvs.len(), |i| {
        let (store, kv) = (store.clone(), kvs[i].clone());
        async move {
            store
                .update(&kv.key, value(i + 1), kv.mod_revision, NO_TTL)
                .await?;
            Ok(())
        }
    })
    .await?;

    phase(
        name,
        &format!(
            "{} creates, {} concurrent writers",
            sizes.concurrent, sizes.writers
        ),
    );
    let wall = Instant::now();
    let per_writer = sizes.concurrent / sizes.writers;
    let mut tasks = Vec::new();
    for w in 0..sizes.writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::with_capacity(per_writer);
            for i in 0..per_writer {
                let t = Instant::now();
                store
                    .create(&format!("/bench/par/{w:02}/{i:06}"), value(i), NO_TTL)
                    .await?;
                samples.push(t.elapsed());
            }
            Ok::<_, kedge_datastore::Error>(samples)
        }));
    }
    let mut samples = Vec::new();
    for t in tasks {
        samples.extend(t.await??);
    }
    r.create_16 = Latencies::from(samples, wall.elapsed());

    phase(name, &format!("loading {} keys to list", sizes.list_keys));
    futures::stream::iter(0..sizes.list_keys)
        .map(|i| {
            let store = store.clone();
            async move {
                store
                    .create(&format!("/bench/list/{i:06}"), value(i), NO_TTL)
                    .await
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    phase(
        name,
        &format!(
            "listing {} keys, {} times",
            sizes.list_keys, sizes.list_runs
        ),
    );
    let mut all = Vec::new();
    let mut paged = Vec::new();
    for _ in 0..sizes.list_runs {
        let t = Instant::now();
        let page = store.list(&ListRequest::prefix("/bench/list/")).await?;
        all.push(t.elapsed());
        if page.kvs.len() != sizes.list_keys {
            bail!(
                "{name}: listed {} keys, expected {}",
                page.kvs.len(),
                sizes.list_keys
            );
        }
        let t = Instant::now();
        let mut token = None;
        let mut n = 0;
        loop {
            let mut req = ListRequest::prefix("/bench/list/").limit(500);
            req.continue_token = token;
            let page = store.list(&req).await?;
            n += page.kvs.len();
            token = page.continue_token;
            if token.is_none() {
                break;
            }
        }
        paged.push(t.elapsed());
        if n != sizes.list_keys {
            bail!(
                "{name}: paged through {n} keys, expected {}",
                sizes.list_keys
            );
        }
    }
    r.list_all_ms = median_ms(all);
    r.list_paged_ms = median_ms(paged);

    phase(
        name,
        &format!("watch delivery of {} writes", sizes.watch_events),
    );
    r.watch = watch_latency(&store, &store, "/bench/watch/", sizes.watch_events).await?;
    if let Some(peer) = peer {
        phase(
            name,
            &format!(
                "watch delivery of {} writes to another server",
                sizes.watch_events
            ),
        );
        r.watch_peer =
            Some(watch_latency(&store, &peer, "/bench/peer/", sizes.watch_events).await?);
    }
    Ok(r)
}

/// Times `n` calls of `write(i)`, one after another; returns their latencies
/// and what each returned.
async fn time_sequential<T, F, Fut>(n: usize, mut write: F) -> Result<(Latencies, Vec<T>)>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut samples = Vec::with_capacity(n);
    let mut outputs = Vec::with_capacity(n);
    let wall = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        outputs.push(write(i).await?);
        samples.push(t.elapsed());
    }
    Ok((Latencies::from(samples, wall.elapsed()), outputs))
}

async fn raw_sqlite(dir: &Path, n: usize) -> Result<Latencies> {
    let conn = rusqlite::Connection::open(dir.join("raw.db"))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
         CREATE TABLE raw (key BLOB PRIMARY KEY, value BLOB NOT NULL);",
    )?;
    let conn = std::sync::Mutex::new(conn);
    let (latencies, _) = time_sequential(n, |i| {
        let result = conn.lock().unwrap().execute(
            "INSERT INTO raw (key, value) VALUES (?1, ?2)",
            rusqlite::params![format!("/raw/{i:06}").as_bytes(), value(i).as_ref()],
        );
        async move { result.map(|_| ()).map_err(Into::into) }
    })
    .await?;
    Ok(latencies)
}

async fn raw_postgres(url: &str, n: usize) -> Result<Latencies> {
    // One connection, as one client: each INSERT is its own durable commit.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .test_before_acquire(false) // no ping: one round trip per INSERT
        .connect(url)
        .await?;
    sqlx::query("CREATE TABLE raw (key BYTEA PRIMARY KEY, value BYTEA NOT NULL)")
        .execute(&pool)
        .await?;
    let (latencies, _) = time_sequential(n, |i| {
        let pool = pool.clone();
        async move {
            sqlx::query("INSERT INTO raw (key, value) VALUES ($1, $2)")
                .bind(format!("/raw/{i:06}").into_bytes())
                .bind(value(i).to_vec())
                .execute(&pool)
                .await?;
            Ok(())
        }
    })
    .await?;
    Ok(latencies)
}

async fn raw_etcd(endpoint: &str, n: usize) -> Result<Latencies> {
    let kv = etcd_client::Client::connect([endpoint], None)
        .await?
        .kv_client();
    let (latencies, _) = time_sequential(n, |i| {
        let mut kv = kv.clone();
        async move {
            kv.put(format!("/raw/{i:06}"), value(i).to_vec(), None)
                .await?;
            Ok(())
        }
    })
    .await?;
    Ok(latencies)
}

fn table(results: &[Results]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| backend | creates/s, 1 writer | create p50 / p99 | CAS updates/s, 1 writer | update p50 / p99 | creates/s, 16 writers | p50 / p99 at 16 | list 10k keys | list 10k, pages of 500 | watch delivery p50 / p99 | to another server p50 / p99 |"
    );
    let _ = writeln!(t, "|---|---|---|---|---|---|---|---|---|---|---|");
    for r in results {
        let _ = writeln!(
            t,
            "| {} | {:.0} | {:.2} / {:.2} ms | {:.0} | {:.2} / {:.2} ms | {:.0} | {:.2} / {:.2} ms | {:.1} ms | {:.1} ms | {:.2} / {:.2} ms | {} |",
            r.backend,
            r.create_1.per_sec,
            r.create_1.p50_ms,
            r.create_1.p99_ms,
            r.update_1.per_sec,
            r.update_1.p50_ms,
            r.update_1.p99_ms,
            r.create_16.per_sec,
            r.create_16.p50_ms,
            r.create_16.p99_ms,
            r.list_all_ms,
            r.list_paged_ms,
            r.watch.p50_ms,
            r.watch.p99_ms,
            r.watch_peer.map_or("—".to_string(), |w| format!(
                "{:.2} / {:.2} ms",
                w.p50_ms, w.p99_ms
            )),
        );
    }
    t
}

fn anchors(results: &[Results]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "Each backend against plain single-key writes to the same server in the same run \
         (the floor this disk allows for one durable commit at a time):\n"
    );
    let _ = writeln!(
        t,
        "| backend | plain writes/s, p50 | kedge creates/s, p50 | kedge / plain |"
    );
    let _ = writeln!(t, "|---|---|---|---|");
    for r in results {
        let _ = writeln!(
            t,
            "| {} | {:.0}/s, {:.2} ms | {:.0}/s, {:.2} ms | {:.2}× the rate |",
            r.backend,
            r.raw_1.per_sec,
            r.raw_1.p50_ms,
            r.create_1.per_sec,
            r.create_1.p50_ms,
            r.create_1.per_sec / r.raw_1.per_sec
        );
    }
    let _ = writeln!(t, "\nAgainst the anchors in the issue:\n");
    let _ = writeln!(t, "| anchor | published | kedge, same run | ratio |");
    let _ = writeln!(t, "|---|---|---|---|");
    let find = |name: &str| results.iter().find(|r| r.backend == name);
    if let Some(r) = find("etcd") {
        let _ = writeln!(
            t,
            "| etcd docs: one client, writes/s | ~583/s at 1.6 ms | plain etcd 3.4 puts on this disk: {:.0}/s at p50 {:.2} ms; kedge on that etcd: {:.0}/s at p50 {:.2} ms | this disk gives etcd {:.2}× its published rate; kedge keeps {:.2}× of what this etcd gives |",
            r.raw_1.per_sec,
            r.raw_1.p50_ms,
            r.create_1.per_sec,
            r.create_1.p50_ms,
            r.raw_1.per_sec / 583.0,
            r.create_1.per_sec / r.raw_1.per_sec
        );
    }
    if let Some(r) = find("postgres") {
        let _ = writeln!(
            t,
            "| kine CI on PostgreSQL: create latency | 7–9 ms | p50 {:.2} ms, p99 {:.2} ms | {:.1}× faster at p50 than 7 ms |",
            r.create_1.p50_ms,
            r.create_1.p99_ms,
            7.0 / r.create_1.p50_ms
        );
        let _ = writeln!(
            t,
            "| kine CI on PostgreSQL: update latency | 13–17 ms | p50 {:.2} ms, p99 {:.2} ms | {:.1}× faster at p50 than 13 ms |",
            r.update_1.p50_ms,
            r.update_1.p99_ms,
            13.0 / r.update_1.p50_ms
        );
    }
    if let Some(r) = find("sqlite") {
        let _ = writeln!(
            t,
            "| etcd docs: one client, writes/s | ~583/s at 1.6 ms | kedge on SQLite, fsync per commit: {:.0}/s at p50 {:.2} ms | {:.2}× |",
            r.create_1.per_sec,
            r.create_1.p50_ms,
            r.create_1.per_sec / 583.0
        );
    }
    t
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let write = !args.iter().any(|a| a == "--no-docs");
    let backends: Vec<String> = args
        .iter()
        .position(|a| a == "--backends")
        .and_then(|i| args.get(i + 1))
        .map_or("sqlite,postgres,etcd".into(), |s| s.clone())
        .split(',')
        .map(str::to_string)
        .collect();
    let sizes = if quick {
        Sizes {
            sequential: 200,
            concurrent: 800,
            writers: 16,
            list_keys: 10_000,
            list_runs: 3,
            watch_events: 200,
        }
    } else {
        Sizes {
            sequential: 2000,
            concurrent: 8000,
            writers: 16,
            list_keys: 10_000,
            list_runs: 9,
            watch_events: 2000,
        }
    };

    let mut results = Vec::new();
    for backend in &backends {
        let result = match backend.as_str() {
            "sqlite" => {
                let dir = tempfile::Builder::new()
                    .prefix("kedge-bench-sqlite-")
                    .tempdir_in("/var/tmp")?;
                let store =
                    SqliteStore::open(SqliteConfig::new(dir.path().join("state.db"))).await?;
                let mut r = measure(Arc::new(store), None, &sizes).await?;
                phase("sqlite", "plain inserts for comparison");
                r.raw_1 = raw_sqlite(dir.path(), sizes.sequential).await?;
                r
            }
            "postgres" => {
                let pg =
                    tokio::task::spawn_blocking(|| Postgres::start(Durability::Durable)).await??;
                let url = pg.create_database("bench")?;
                let store = PostgresStore::connect(PostgresConfig::new(&url)).await?;
                let peer = PostgresStore::connect(PostgresConfig::new(&url)).await?;
                let mut r = measure(Arc::new(store), Some(Arc::new(peer)), &sizes).await?;
                phase("postgres", "plain inserts for comparison");
                r.raw_1 = raw_postgres(&url, sizes.sequential).await?;
                drop(pg);
                r
            }
            "etcd" => {
                let etcd =
                    tokio::task::spawn_blocking(|| Etcd::start(Durability::Durable)).await??;
                let store = EtcdStore::connect(EtcdConfig::new([etcd.endpoint()])).await?;
                let peer = EtcdStore::connect(EtcdConfig::new([etcd.endpoint()])).await?;
                let mut r = measure(Arc::new(store), Some(Arc::new(peer)), &sizes).await?;
                phase("etcd", "plain puts for comparison");
                r.raw_1 = raw_etcd(&etcd.endpoint(), sizes.sequential).await?;
                drop(etcd);
                r
            }
            other => bail!("unknown backend {other:?}: use sqlite, postgres or etcd"),
        };
        eprintln!("[{backend}] done");
        results.push(result);
    }

    let command = format!(
        "cargo run --release -p kedge-datastore-testkit --bin datastore-bench --{}",
        if args.is_empty() {
            String::new()
        } else {
            format!(" {}", args.join(" "))
        }
    );
    let mut section = String::new();
    let _ = writeln!(section, "## Datastore\n");
    let _ = writeln!(
        section,
        "Measured {} on {} with `{command}`{}. Servers run durable: SQLite in WAL mode with \
         synchronous=FULL, PostgreSQL 15 and etcd 3.4 with default settings (fsync on every \
         commit), all with data on disk under /var/tmp. Values are ~450 bytes. Latency is per \
         call as the client sees it; watch delivery is from the write's call to the event \
         reaching a watcher, on the same store instance or on a second one (another server) on the same database.\n",
        report::today(),
        report::machine(),
        if quick { " (quick sizes)" } else { "" }
    );
    section.push_str(&table(&results));
    section.push('\n');
    section.push_str(&anchors(&results));
    section.push('\n');
    println!("{section}");
    if write {
        let path = report::benchmarks_md();
        report::write_section(&path, "datastore-bench", &section)
            .with_context(|| format!("write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
