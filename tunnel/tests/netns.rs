//! The tunnel between two network namespaces joined by a veth pair, with UDP blocked by
//! nftables: the agent comes up over TCP on its own, then returns to QUIC once UDP is let
//! through again.
//!
//! Needs root, iproute2 and nftables (CI runs as root, and `scripts/setup.sh` installs
//! the packages). Without them it fails, naming what is missing; it never skips.
//!
//! The server and the agent run as child processes of this test (the same test binary,
//! re-run under `ip netns exec` with a role in the environment), because a network
//! namespace belongs to a thread and this crate allows no `unsafe` to call `setns`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use kedge_tunnel::{ClientTls, ServerTls, State, Transport};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const TEST: &str = "udp_blocked_by_nftables_then_unblocked";
const ROLE: &str = "KEDGE_TUNNEL_NETNS_ROLE";
const DIR: &str = "KEDGE_TUNNEL_NETNS_DIR";
const SERVER: &str = "KEDGE_TUNNEL_NETNS_SERVER";
const PORT: u16 = 6443;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_blocked_by_nftables_then_unblocked() {
    match std::env::var(ROLE).as_deref() {
        Ok("server") => return server_role().await,
        Ok("client") => return client_role().await,
        _ => {}
    }
    require_prerequisites();
    let net = Netns::create();
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    write_pems(&pki, dir.path());
    let server_addr = format!("{}:{PORT}", net.server_ip);

    let mut server = net.spawn(&net.server_ns, "server", dir.path(), &server_addr);
    let mut server_out = lines(&mut server);
    expect_line(&mut server_out, "KEDGE READY").await;

    // Block UDP to the tunnel port on the agent's side.
    net.nft(&net.client_ns, &block_udp());

    let mut client = net.spawn(&net.client_ns, "client", dir.path(), &server_addr);
    let mut client_out = lines(&mut client);
    expect_line(&mut client_out, "KEDGE CONNECTED tcp").await;
    expect_line(&mut server_out, "KEDGE ACCEPTED tcp system:node:edge-ns").await;
    expect_line(&mut client_out, "KEDGE ECHO ok").await;

    // Let UDP through again: the agent's next QUIC probe succeeds and it switches.
    net.nft(&net.client_ns, "delete table inet kedge_test\n");
    expect_line(&mut client_out, "KEDGE CONNECTED quic").await;
    expect_line(&mut server_out, "KEDGE ACCEPTED quic system:node:edge-ns").await;
    expect_line(&mut client_out, "KEDGE ECHO ok").await;

    // UDP is blocked again under a live QUIC connection: the agent notices the silence
    // (idle timeout), and its next round falls back to TCP.
    net.nft(&net.client_ns, &block_udp());
    expect_line(&mut client_out, "KEDGE CONNECTED tcp").await;
    expect_line(&mut server_out, "KEDGE ACCEPTED tcp system:node:edge-ns").await;
    expect_line(&mut client_out, "KEDGE ECHO ok").await;
    expect_line(&mut client_out, "KEDGE DONE").await;
    let status = tokio::time::timeout(Duration::from_secs(10), client.wait())
        .await
        .expect("client did not exit")
        .unwrap();
    assert!(status.success(), "client exited with {status}");
    let _ = server.kill().await;
}

/// An nftables script that drops the agent's UDP to the tunnel port.
fn block_udp() -> String {
    format!(
        "add table inet kedge_test\n\
         add chain inet kedge_test out {{ type filter hook output priority 0; }}\n\
         add rule inet kedge_test out udp dport {PORT} drop\n"
    )
}

fn require_prerequisites() {
    let mut missing = Vec::new();
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(str::to_owned))
        });
    if uid.as_deref() != Some("0") {
        missing.push("root (effective uid 0) to create network namespaces".to_string());
    }
    for (tool, package) in [("ip", "iproute2"), ("nft", "nftables")] {
        let found = std::process::Command::new(tool)
            .arg(if tool == "ip" { "-V" } else { "--version" })
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            missing.push(format!("the `{tool}` command (Debian package {package})"));
        }
    }
    assert!(
        missing.is_empty(),
        "this test cannot run here; missing: {}",
        missing.join(", ")
    );
}

/// Two namespaces joined by a veth pair; removed on drop.
struct Netns {
    server_ns: String,
    client_ns: String,
    server_ip: String,
}

fn run(args: &[&str]) {
    let out = std::process::Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    fn create() -> Netns {
        let id = std::process::id() % 100_000;
        let net = Netns {
            server_ns: format!("kt-s-{id}"),
            client_ns: format!("kt-c-{id}"),
            server_ip: format!("10.254.{}.1", id % 250),
        };
        let client_ip = format!("10.254.{}.2", id % 250);
        let (veth_s, veth_c) = (format!("kts{id}"), format!("ktc{id}"));
        run(&["ip", "netns", "add", &net.server_ns]);
        run(&["ip", "netns", "add", &net.client_ns]);
        run(&[
            "ip", "link", "add", &veth_s, "type", "veth", "peer", "name", &veth_c,
        ]);
        run(&["ip", "link", "set", &veth_s, "netns", &net.server_ns]);
        run(&["ip", "link", "set", &veth_c, "netns", &net.client_ns]);
        for (ns, veth, ip) in [
            (&net.server_ns, &veth_s, &net.server_ip),
            (&net.client_ns, &veth_c, &client_ip),
        ] {
            let addr = format!("{ip}/24");
            run(&["ip", "-n", ns, "addr", "add", &addr, "dev", veth]);
            run(&["ip", "-n", ns, "link", "set", veth, "up"]);
            run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        net
    }

    fn nft(&self, ns: &str, script: &str) {
        let path = std::env::temp_dir().join(format!("kedge-tunnel-nft-{}", std::process::id()));
        std::fs::write(&path, script).unwrap();
        let path_text = path.to_string_lossy().into_owned();
        run(&["ip", "netns", "exec", ns, "nft", "-f", &path_text]);
        let _ = std::fs::remove_file(path);
    }

    fn spawn(&self, ns: &str, role: &str, dir: &Path, server: &str) -> Child {
        let exe = std::env::current_exe().unwrap();
        Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(exe)
            .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
            .env(ROLE, role)
            .env(DIR, dir)
            .env(SERVER, server)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end in it, and with it the pair.
        for ns in [&self.server_ns, &self.client_ns] {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", ns])
                .status();
        }
    }
}

fn lines(child: &mut Child) -> Lines<BufReader<ChildStdout>> {
    BufReader::new(child.stdout.take().unwrap()).lines()
}

async fn expect_line(lines: &mut Lines<BufReader<ChildStdout>>, expected: &str) {
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            // The harness may have printed `test name ... ` before our line.
            if line.ends_with(expected) {
                return true;
            }
            if line.starts_with("KEDGE ") {
                eprintln!("child: {line}");
            }
        }
        false
    })
    .await;
    assert!(
        matches!(found, Ok(true)),
        "never saw {expected:?} from the child"
    );
}

fn write_pems(pki: &Pki, dir: &Path) {
    let node = pki
        .pki
        .issue_client_cert(
            "system:node:edge-ns",
            &["system:nodes"],
            Duration::from_secs(3600),
            std::time::SystemTime::now(),
        )
        .unwrap();
    for (name, text) in [
        ("server.crt", pki.pki.serving_cert_pem()),
        ("server.key", pki.pki.serving_key_pem()),
        ("client-ca.crt", pki.pki.client_ca_pem()),
        ("server-ca.crt", pki.pki.server_ca_pem()),
        ("node.crt", node.cert_pem.as_str()),
        ("node.key", node.key_pem.as_str()),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

/// Tells the parent test a step was reached. Written straight to the process's stdout,
/// because the test harness captures `println!`.
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap()
}

fn env_dir() -> PathBuf {
    PathBuf::from(std::env::var(DIR).unwrap())
}

/// In the server namespace: serve until killed, echoing streams reversed.
async fn server_role() {
    let dir = env_dir();
    let addr = std::env::var(SERVER).unwrap().parse().unwrap();
    let tls = ServerTls::from_pem(
        &read(&dir, "server.crt"),
        &read(&dir, "server.key"),
        &read(&dir, "client-ca.crt"),
    )
    .unwrap();
    let server = kedge_tunnel::TunnelServer::bind(kedge_tunnel::ServerOptions {
        quic_addr: Some(addr),
        tcp_addr: Some(addr),
        config: fast_config(),
        tls,
    })
    .await
    .unwrap();
    say("KEDGE READY");
    while let Some(conn) = server.accept().await {
        let user = kedge_pki::client_identity(conn.peer_certificate().unwrap())
            .unwrap()
            .user;
        say(&format!("KEDGE ACCEPTED {} {user}", conn.transport()));
        tokio::spawn(async move {
            while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                let mut request = Vec::new();
                if recv.read_to_end(&mut request).await.is_err() {
                    continue;
                }
                request.reverse();
                let _ = send.write_all(&request).await;
                let _ = send.shutdown().await;
            }
        });
    }
}

/// In the agent namespace: connect, echo, wait for QUIC, echo again.
async fn client_role() {
    let dir = env_dir();
    let addr = std::env::var(SERVER).unwrap().parse().unwrap();
    let tls = ClientTls::from_pem(
        &read(&dir, "server-ca.crt"),
        &read(&dir, "node.crt"),
        &read(&dir, "node.key"),
        // The serving certificate carries 127.0.0.1 and localhost, not the veth address.
        "localhost",
    )
    .unwrap();
    let mut config = fast_config();
    config.quic_retry_interval = Duration::from_secs(1);
    let client = client(tls, addr, addr, config);
    let echo = |client: &kedge_tunnel::TunnelClient| {
        let client = client.connection().unwrap();
        async move {
            let (mut send, mut recv) = client.open_bi().await.unwrap();
            send.write_all(b"over the veth").await.unwrap();
            send.shutdown().await.unwrap();
            let mut answer = Vec::new();
            recv.read_to_end(&mut answer).await.unwrap();
            assert_eq!(answer, b"htev eht revo");
            say("KEDGE ECHO ok");
        }
    };
    for transport in [Transport::Tcp, Transport::Quic, Transport::Tcp] {
        if transport == Transport::Tcp && client.counters().switches_to_quic == 1 {
            // The QUIC connection must be lost first (idle timeout under blocked UDP).
            let mut state = client.state();
            let lost = tokio::time::timeout(
                Duration::from_secs(20),
                state.wait_for(|s| !matches!(s, State::Connected { .. })),
            )
            .await;
            assert!(matches!(lost, Ok(Ok(_))), "quic connection never timed out");
        }
        let mut state = client.state();
        let reached = tokio::time::timeout(
            Duration::from_secs(20),
            state.wait_for(
                |s| matches!(s, State::Connected { transport: t, .. } if *t == transport),
            ),
        )
        .await;
        assert!(
            matches!(reached, Ok(Ok(_))),
            "not connected over {transport}: {:?}",
            client.counters()
        );
        say(&format!("KEDGE CONNECTED {transport}"));
        echo(&client).await;
    }
    let counters = client.counters();
    assert!(counters.fallbacks >= 1, "{counters:?}");
    assert_eq!(counters.switches_to_quic, 1, "{counters:?}");
    assert_eq!(counters.failures.idle, 1, "{counters:?}");
    assert_eq!(counters.reconnects, 1, "{counters:?}");
    say("KEDGE DONE");
}
