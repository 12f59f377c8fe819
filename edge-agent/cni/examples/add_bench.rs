//! Times CNI ADD and DEL through the real plugins (bridge + host-local, portmap, loopback)
//! for one sandbox, `N` times (default 20) without and with a hostPort, and prints the
//! median and spread.
//!
//!   sudo cargo run --release -p kedge-cni --example add_bench [-- N]
//!
//! Needs root and containernetworking-plugins. It uses bridge `kbench0`, network
//! `kedge-bench` and subnet 10.199.250.0/24, and removes them when done.

use std::time::{Duration, Instant};

use kedge_cni::{
    BridgeOptions, CniConfig, NetnsDir, PodNetwork, PodRef, PortMapping, conflist, write_conflist,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // RUST_LOG=kedge_cni=debug shows each plugin's time
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let runs: usize = match std::env::args().nth(1) {
        Some(n) => n
            .parse()
            .map_err(|_| format!("runs must be a number, not {n:?}"))?,
        None => 20,
    };
    let dir = tempfile::tempdir()?;
    let mut opts = BridgeOptions::for_data_dir(dir.path());
    opts.network_name = "kedge-bench".into();
    opts.bridge = "kbench0".into();
    let config = CniConfig::for_data_dir(dir.path());
    write_conflist(&config.conf_dir, &conflist("10.199.250.0/24", &opts)?)?;
    let net = PodNetwork::load(config)?;
    net.validate().await?;

    let netns = NetnsDir::default();
    let pod = PodRef::new("default", "bench", "uid-bench");
    let plain = run(&net, &netns, &pod, runs, &[]).await;
    let host_port = run(&net, &netns, &pod, runs, &[PortMapping::tcp(41000, 80)]).await;
    let _ = netns.remove("kedge-bench");
    let _ = std::process::Command::new("ip")
        .args(["link", "del", "kbench0"])
        .status();
    let (adds, dels) = plain?;
    report(
        "ADD, no hostPort (bridge+host-local, portmap, loopback)",
        adds,
    );
    report("DEL, no hostPort", dels);
    let (adds, dels) = host_port?;
    report("ADD, one hostPort", adds);
    report("DEL, one hostPort", dels);
    Ok(())
}

async fn run(
    net: &PodNetwork,
    netns: &NetnsDir,
    pod: &PodRef,
    runs: usize,
    mappings: &[PortMapping],
) -> Result<(Vec<Duration>, Vec<Duration>), Box<dyn std::error::Error>> {
    let _ = netns.remove("kedge-bench");
    let ns = netns.create("kedge-bench")?;
    let mut adds = Vec::new();
    let mut dels = Vec::new();
    // one warm-up run creates the bridge and the portmap chains
    for i in 0..=runs {
        let id = format!("bench-{i}");
        let started = Instant::now();
        net.setup(&id, ns.path(), pod, mappings).await?;
        let added = started.elapsed();
        let started = Instant::now();
        net.teardown(&id, Some(ns.path()), pod).await?;
        let deleted = started.elapsed();
        if i > 0 {
            adds.push(added);
            dels.push(deleted);
        }
    }
    Ok((adds, dels))
}

fn report(what: &str, mut times: Vec<Duration>) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let pick = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    println!(
        "{what}: n={} median {:.1} ms, p90 {:.1} ms, min {:.1} ms, max {:.1} ms",
        times.len(),
        ms(pick(0.5)),
        ms(pick(0.9)),
        ms(times[0]),
        ms(times[times.len() - 1])
    );
}
