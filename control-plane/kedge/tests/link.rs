//! The agent↔server link end to end, on loopback: the real `kedge server` and the real
//! `kedge-agent` binaries, a join token, the tunnel, the sync into the agent's local
//! store, reports back into the API, and the refusals of bootstrap.
//!
//! The agent binary is `kedge-agent` from the edge-agent package, found next to the
//! `kedge` binary cargo built for these tests (`cargo test --workspace` builds both).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::Cluster;
use common::agent::{Agent, cluster_log_until, create_token, server_token, wait_ready};

/// The (kind, namespace, name) rows of the agent's desired-state store.
fn stored(dir: &Path) -> Vec<(i64, String, String)> {
    let path = dir.join("agent").join("desired-state.db");
    let Ok(db) =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return Vec::new();
    };
    let Ok(mut q) = db.prepare("SELECT kind, namespace, name FROM objects ORDER BY kind, name")
    else {
        return Vec::new();
    };
    q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .map(|rows| rows.filter_map(Result::ok).collect())
        .unwrap_or_default()
}

/// Kinds as the protocol numbers them.
const POD: i64 = 1;
const CONFIG_MAP: i64 = 2;
const SECRET: i64 = 3;

fn has(rows: &[(i64, String, String)], kind: i64, name: &str) -> bool {
    rows.iter().any(|(k, _, n)| *k == kind && n == name)
}

#[track_caller]
fn wait_store(dir: &Path, what: &str, accept: impl Fn(&[(i64, String, String)]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows = stored(dir);
        if accept(&rows) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the agent's store holds {rows:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

const POD_WITH_REFS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  nodeName: pi-1
  tolerations: [{key: node.kedge.io/no-runtime, operator: Exists}]
  containers:
  - name: c
    image: busybox
    envFrom: [{configMapRef: {name: web-config}}]
    volumeMounts: [{name: s, mountPath: /s}]
  volumes: [{name: s, secret: {secretName: web-secret}}]
"#;

#[test]
fn an_agent_joins_syncs_its_objects_and_reports() {
    let cluster = Cluster::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let mut agent = Agent::start(&cluster, dir.path(), "pi-1", &server_token(&cluster));
    agent.wait_log("joined; node certificate stored", Duration::from_secs(20));

    // Registered, Ready, labelled, and renewing its Lease.
    wait_ready(
        &cluster,
        "pi-1",
        "the node registers Ready",
        Duration::from_secs(20),
    );
    let arch = cluster.ok(&[
        "get",
        "node",
        "pi-1",
        "-o",
        "jsonpath={.metadata.labels.kubernetes\\.io/arch}",
    ]);
    assert_eq!(arch, kedge_agent_arch());
    let ip = cluster.ok(&[
        "get",
        "node",
        "pi-1",
        "-o",
        "jsonpath={.status.addresses[?(@.type==\"InternalIP\")].address}",
    ]);
    assert_eq!(
        ip, "127.0.0.1",
        "the node reports the address it reaches the server from"
    );
    // The server renews the Lease while the tunnel is up (within a second of the
    // registration, then every 10 s).
    let first = cluster.wait_for(
        &[
            "get",
            "lease",
            "-n",
            "kube-node-lease",
            "pi-1",
            "-o",
            "jsonpath={.spec.renewTime}",
        ],
        "the node's Lease",
        Duration::from_secs(10),
        |s| !s.is_empty(),
    );
    cluster.wait_for(
        &[
            "get",
            "lease",
            "-n",
            "kube-node-lease",
            "pi-1",
            "-o",
            "jsonpath={.spec.renewTime}",
        ],
        "the Lease is renewed",
        Duration::from_secs(15),
        |s| !s.is_empty() && s != first,
    );

    // The pod bound to it and what it references reach the local store; a Secret it
    // does not use never does.
    cluster.ok(&["create", "configmap", "web-config", "--from-literal=a=b"]);
    cluster.ok(&[
        "create",
        "secret",
        "generic",
        "web-secret",
        "--from-literal=p=q",
    ]);
    cluster.ok(&[
        "create",
        "secret",
        "generic",
        "not-for-pi",
        "--from-literal=x=y",
    ]);
    cluster.ok_stdin(&["apply", "-f", "-"], POD_WITH_REFS);
    wait_store(
        dir.path(),
        "the pod and its ConfigMap and Secret are synced",
        |rows| {
            has(rows, POD, "web")
                && has(rows, CONFIG_MAP, "web-config")
                && has(rows, SECRET, "web-secret")
        },
    );
    assert!(
        !has(&stored(dir.path()), SECRET, "not-for-pi"),
        "a Secret no pod of the node uses was synced"
    );

    // The server reaches the agent over its tunnel, in reverse: the node's stats summary
    // comes from the agent's /proc; logs need the container runtime it does not have
    // yet, and kubectl shows that reason.
    let summary = cluster.ok(&["get", "--raw", "/api/v1/nodes/pi-1/proxy/stats/summary"]);
    let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(summary["node"]["nodeName"], "pi-1");
    assert!(
        summary["node"]["memory"]["availableBytes"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "{summary}"
    );
    let refused = cluster.fails(&["logs", "web"]);
    assert!(refused.contains("needs a container runtime"), "{refused}");

    // Deleting the pod removes it and the objects only it used.
    cluster.ok(&["delete", "pod", "web", "--grace-period=0", "--force"]);
    wait_store(
        dir.path(),
        "the deleted pod and its references leave the store",
        |rows| {
            !has(rows, POD, "web")
                && !has(rows, CONFIG_MAP, "web-config")
                && !has(rows, SECRET, "web-secret")
        },
    );
    assert!(
        agent.drain().contains("full resync stored"),
        "the first sync is a full one"
    );
}

fn kedge_agent_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

#[test]
fn after_a_server_restart_the_agent_resumes_without_a_full_resync() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start_on(dir.path(), "", common::free_port());
    let agent_dir = tempfile::tempdir().unwrap();
    let mut agent = Agent::start(&cluster, agent_dir.path(), "pi-1", &server_token(&cluster));
    cluster.ok(&["create", "configmap", "web-config", "--from-literal=a=b"]);
    cluster.ok(&[
        "create",
        "secret",
        "generic",
        "web-secret",
        "--from-literal=p=q",
    ]);
    cluster.ok_stdin(&["apply", "-f", "-"], POD_WITH_REFS);
    wait_store(agent_dir.path(), "the pod is synced", |rows| {
        has(rows, POD, "web")
    });
    let full_before = agent.drain().matches("full resync stored").count();
    assert_eq!(full_before, 1, "one full sync at the first connection");

    cluster.restart();
    // While the server was away nothing changed; after it, one change travels.
    cluster.ok(&["label", "pod", "web", "changed=yes"]);
    agent.wait_log(
        "connected; registering the node and resuming the sync",
        Duration::from_secs(5),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while agent.drain().matches("connected; registering").count() < 2 {
        assert!(
            Instant::now() < deadline,
            "the agent did not reconnect: {}",
            agent.drain()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = cluster_log_until(&cluster, "sync: resumed from", Duration::from_secs(30));
    assert!(
        !log.contains("sync: full resync"),
        "the server did a full resync after its restart:\n{log}"
    );
    wait_store(agent_dir.path(), "the new pod label is synced", |_| {
        store_object(agent_dir.path(), "web").contains("\"changed\":\"yes\"")
    });
    assert_eq!(
        agent.drain().matches("full resync stored").count(),
        1,
        "the agent received a full resync after the restart"
    );
}

fn store_object(dir: &Path, name: &str) -> String {
    let path = dir.join("agent").join("desired-state.db");
    let db =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    db.query_row(
        "SELECT object FROM objects WHERE kind = 1 AND name = ?1",
        [name],
        |r| r.get::<_, Vec<u8>>(0),
    )
    .map(|b| String::from_utf8_lossy(&b).into_owned())
    .unwrap_or_default()
}

#[test]
fn bootstrap_refusals() {
    let cluster = Cluster::sqlite();
    let good = server_token(&cluster);

    // A token whose CA hash is not this cluster's.
    let (hash, rest) = good.trim_start_matches("K10").split_once("::").unwrap();
    let wrong = format!("K10{}::{rest}", "0".repeat(hash.len()));
    let dir = tempfile::tempdir().unwrap();
    let (status, log) =
        Agent::start(&cluster, dir.path(), "pi-1", &wrong).exits(Duration::from_secs(20));
    assert!(!status.success());
    assert!(log.contains("does not match the token's hash"), "{log}");
    assert!(
        !dir.path().join("agent").join("client-node.crt").exists(),
        "a certificate was stored anyway"
    );

    // A short token without the insecure flag.
    let (status, log) =
        Agent::start(&cluster, dir.path(), "pi-1", rest).exits(Duration::from_secs(20));
    assert!(!status.success());
    assert!(log.contains("--insecure-skip-ca-hash"), "{log}");

    // A revoked token.
    let revoked = create_token(&cluster, &["--ttl", "1h"]);
    let id = revoked
        .rsplit_once("::")
        .unwrap()
        .1
        .split('.')
        .next()
        .unwrap()
        .to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_kedge"))
        .args(["token", "delete", &id, "--kubeconfig"])
        .arg(&cluster.kubeconfig)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, log) =
        Agent::start(&cluster, dir.path(), "pi-1", &revoked).exits(Duration::from_secs(20));
    assert!(!status.success());
    assert!(log.contains("Unauthenticated"), "{log}");

    // An expired token.
    let expired = create_token(&cluster, &["--ttl", "1s"]);
    std::thread::sleep(Duration::from_secs(2));
    let (status, log) =
        Agent::start(&cluster, dir.path(), "pi-1", &expired).exits(Duration::from_secs(20));
    assert!(!status.success());
    assert!(log.contains("expired"), "{log}");

    // The first machine takes the name; a second one with another node password cannot.
    let mut first = Agent::start(&cluster, dir.path(), "pi-1", &good);
    first.wait_log("joined; node certificate stored", Duration::from_secs(20));
    let other = tempfile::tempdir().unwrap();
    let (status, log) =
        Agent::start(&cluster, other.path(), "pi-1", &good).exits(Duration::from_secs(20));
    assert!(!status.success());
    assert!(log.contains("already taken"), "{log}");
    // The same machine (same password) may join again, e.g. after losing its certificate.
    drop(first);
    std::fs::remove_file(dir.path().join("agent").join("client-node.crt")).unwrap();
    let mut again = Agent::start(&cluster, dir.path(), "pi-1", &good);
    again.wait_log("joined; node certificate stored", Duration::from_secs(20));
}

#[test]
fn the_node_certificate_renews_over_the_live_tunnel() {
    // Node certificates that live one minute: the agent renews when a third is left.
    let dir = tempfile::tempdir().unwrap();
    let cluster =
        Cluster::start_with_args(dir.path(), "", 0, &["--node-certificate-validity", "60s"]);
    let agent_dir = tempfile::tempdir().unwrap();
    let mut agent = Agent::start(&cluster, agent_dir.path(), "pi-1", &server_token(&cluster));
    agent.wait_log("joined; node certificate stored", Duration::from_secs(20));
    let cert = agent_dir.path().join("agent").join("client-node.crt");
    let first = std::fs::read_to_string(&cert).unwrap();
    agent.wait_log("renewed the node certificate", Duration::from_secs(60));
    agent.wait_log("dialing again with it", Duration::from_secs(5));
    let second = std::fs::read_to_string(&cert).unwrap();
    assert_ne!(first, second, "the stored certificate did not change");
    // Renewed once, not in a loop, and the node stays connected with the new one.
    std::thread::sleep(Duration::from_secs(3));
    let log = agent.drain();
    assert_eq!(
        log.matches("renewed the node certificate").count(),
        1,
        "{log}"
    );
    let connects = log.matches("connected; registering").count();
    assert!(
        connects >= 2,
        "the agent did not reconnect with the new certificate:\n{log}"
    );
    wait_ready(
        &cluster,
        "pi-1",
        "the node stays Ready",
        Duration::from_secs(10),
    );
}

#[test]
fn the_server_renews_a_connected_agents_lease_and_a_silent_agent_turns_unknown() {
    // A short grace period, so that the server renews every 1.2 s; the agent's tunnel
    // keepalive is 1 s and a connection that hears nothing for 3 s is dead.
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start_with(
        dir.path(),
        "",
        0,
        &["--node-monitor-grace-period", "6s"],
        &[(
            "RUST_LOG",
            "info,kedge_nodelink::report=debug,kedge_nodelink::lease=debug",
        )],
    );
    let agent_dir = tempfile::tempdir().unwrap();
    let mut cmd = Agent::command(&cluster, agent_dir.path(), "pi-1", &server_token(&cluster));
    cmd.args(["--tunnel-keepalive", "1s", "--tunnel-idle-timeout", "3s"]);
    let agent = Agent::spawn(cmd);
    wait_ready(
        &cluster,
        "pi-1",
        "the node registers Ready",
        Duration::from_secs(20),
    );

    // Renewed again and again while the agent is idle; not one renewal came over the link.
    let renew_time = || {
        cluster.wait_for(
            &[
                "get",
                "lease",
                "-n",
                "kube-node-lease",
                "pi-1",
                "-o",
                "jsonpath={.spec.renewTime}",
            ],
            "the node's Lease",
            Duration::from_secs(10),
            |s| !s.is_empty(),
        )
    };
    let mut seen = vec![renew_time()];
    let deadline = Instant::now() + Duration::from_secs(15);
    while seen.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "the Lease is not renewed: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
        let now = renew_time();
        if Some(&now) != seen.last() {
            seen.push(now);
        }
    }
    let log = cluster_log_until(&cluster, "renewed the node's Lease", Duration::from_secs(5));
    let mut log = log + "\n";
    while let Ok(line) = cluster.log.try_recv() {
        log.push_str(&line);
        log.push('\n');
    }
    assert_eq!(
        log.matches("a lease renewal reported by the agent").count(),
        0,
        "the agent sent Lease renewals:\n{log}"
    );

    // The agent goes silent (SIGSTOP: no keepalives, as on a cut link). Its tunnel
    // idles out, the server stops renewing, and after the grace period the node is
    // Unknown.
    let signal = |sig: &str| {
        let status = Command::new("kill")
            .args([sig, &agent.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    signal("-STOP");
    let stopped = Instant::now();
    cluster_log_until(&cluster, "agent disconnected", Duration::from_secs(10));
    cluster.wait_for(
        &[
            "get",
            "node",
            "pi-1",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ],
        "the silent node becomes Unknown",
        Duration::from_secs(30),
        |s| s == "Unknown",
    );
    // The last renewal was at most one interval (1.2 s) before the stop.
    assert!(
        stopped.elapsed() >= Duration::from_millis(4800),
        "Unknown before the grace period passed ({:?})",
        stopped.elapsed()
    );
    // Back: it reconnects and is Ready again.
    signal("-CONT");
    wait_ready(
        &cluster,
        "pi-1",
        "the node is Ready again",
        Duration::from_secs(30),
    );
}
