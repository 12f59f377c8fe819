//! The agent link with two servers on one real PostgreSQL: the real `kedge server` twice
//! with the same `--token`, the real `kedge-agent` behind a fixed registration address
//! (a TCP and UDP relay, as K3s advises a load balancer), and real kubectl.
//!
//! - The servers share one CA through the datastore; a join token from B lets the agent
//!   in through A; a server with another token, or none, refuses to start.
//! - The tunnel is held by A, as `/kedge/tunnels/<node>` records; kubectl on B reaches
//!   the agent through A (stats summary; logs and exec answer with the agent's own
//!   "needs a container runtime", which proves they got there).
//! - A dies: B answers "error dialing backend" naming the node while the record still
//!   names A; the relay then points at B, the agent reconnects there, and the record
//!   follows.
//!
//! What the real agent cannot show yet (it has no container runtime): exec and
//! port-forward carrying data through the forwarding. control-plane/nodelink/tests/peer.rs
//! drives those with kubectl against a fake agent.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::Cluster;
use common::agent::{Agent, cluster_log_until, server_token, wait_ready};
use common::relay::Relay;
use kedge_datastore_testkit::backends::{shared_postgres, unique_name};

const TOKEN: &str = "a passphrase shared by the cluster's servers";

/// A server of the cluster on `url`; the scheduler and controllers are not what this
/// test is about.
fn server(dir: &Path, url: &str, token: &str) -> Cluster {
    Cluster::start_with_args(
        dir,
        url,
        0,
        &[
            "--token",
            token,
            "--disable-scheduler",
            "--disable-controller-manager",
        ],
    )
}

/// `kedge server` that must refuse to start; returns what it said.
#[track_caller]
fn refuses(dir: &Path, url: &str, extra: &[&str]) -> String {
    let mut cmd = common::kedge(dir, url);
    cmd.args(extra).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            assert!(!status.success(), "the server started: {err}");
            return err;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("kedge server with {extra:?} neither started nor refused within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The tunnel record of `node` as the datastore holds it.
fn record(db: &str, node: &str) -> String {
    shared_postgres()
        .query(
            db,
            &format!(
                "SELECT convert_from(value, 'UTF8') FROM kedge_kv \
                 WHERE key = convert_to('/kedge/tunnels/{node}', 'UTF8')"
            ),
        )
        .unwrap()
}

#[track_caller]
fn wait_record(db: &str, node: &str, address: &str, within: Duration) {
    let deadline = Instant::now() + within;
    let want = format!("\"address\":\"{address}\"");
    loop {
        let got = record(db, node);
        if got.contains(&want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the tunnel record of {node} never named {address}; it is {got:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  nodeName: pi-1
  tolerations: [{key: node.kedge.io/no-runtime, operator: Exists}]
  containers: [{name: c, image: busybox}]
"#;

#[test]
fn two_servers_share_a_ca_and_forward_streams_to_the_tunnel_holder() {
    let db = unique_name("kedge_ha");
    let url = shared_postgres().create_database(&db).unwrap();
    let (dir_a, dir_b, dir_c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let mut a = server(dir_a.path(), &url, TOKEN);
    let b = server(dir_b.path(), &url, TOKEN);

    // One CA for the cluster; each server its own serving certificate.
    let tls = |dir: &Path, file: &str| std::fs::read(dir.join("server/tls").join(file)).unwrap();
    for shared in ["server-ca.crt", "client-ca.crt", "service.key"] {
        assert_eq!(
            tls(dir_a.path(), shared),
            tls(dir_b.path(), shared),
            "{shared}"
        );
    }
    assert_ne!(
        tls(dir_a.path(), "serving-kube-apiserver.crt"),
        tls(dir_b.path(), "serving-kube-apiserver.crt")
    );

    // Another token, or none, on the same datastore: a clear refusal.
    let err = refuses(dir_c.path(), &url, &["--token", "not the cluster's token"]);
    assert!(
        err.contains("bootstrap data already exists and is encrypted with a different token"),
        "{err}"
    );
    let err = refuses(dir_c.path(), &url, &[]);
    assert!(
        err.contains("give this server the cluster's token"),
        "{err}"
    );

    // The agent dials the fixed address, which leads to A, with a token from B.
    let relay = Relay::start(a.api_addr());
    let agent_dir = tempfile::tempdir().unwrap();
    let mut cmd = Agent::command_for(
        &format!("https://127.0.0.1:{}", relay.port()),
        agent_dir.path(),
        "pi-1",
        &server_token(&b),
    );
    cmd.args(["--tunnel-keepalive", "1s", "--tunnel-idle-timeout", "4s"]);
    let mut agent = Agent::spawn(cmd);
    agent.wait_log("joined; node certificate stored", Duration::from_secs(20));
    wait_ready(
        &b,
        "pi-1",
        "the node registers Ready",
        Duration::from_secs(20),
    );
    cluster_log_until(&a, "agent connected", Duration::from_secs(10));
    wait_record(
        &db,
        "pi-1",
        &a.api_addr().to_string(),
        Duration::from_secs(5),
    );

    // kubectl on B reaches the agent through A.
    let summary = b.ok(&["get", "--raw", "/api/v1/nodes/pi-1/proxy/stats/summary"]);
    let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(summary["node"]["nodeName"], "pi-1");
    b.ok_stdin(&["apply", "-f", "-"], POD);
    let refused = b.fails(&["logs", "web"]);
    assert!(refused.contains("needs a container runtime"), "{refused}");
    let refused = b.fails(&["exec", "web", "--", "true"]);
    assert!(refused.contains("needs a container runtime"), "{refused}");

    // A dies holding the tunnel: its record goes stale, and B says so, naming the node.
    a.kill();
    let err = b.fails(&["get", "--raw", "/api/v1/nodes/pi-1/proxy/stats/summary"]);
    assert!(err.contains("error dialing backend"), "{err}");
    assert!(err.contains("pi-1"), "{err}");

    // The registration address now leads to B: the agent moves, the record follows.
    relay.point_to(b.api_addr());
    wait_record(
        &db,
        "pi-1",
        &b.api_addr().to_string(),
        Duration::from_secs(30),
    );
    let summary = b.ok(&["get", "--raw", "/api/v1/nodes/pi-1/proxy/stats/summary"]);
    assert!(summary.contains("\"nodeName\":\"pi-1\""), "{summary}");
    let refused = b.fails(&["logs", "web"]);
    assert!(refused.contains("needs a container runtime"), "{refused}");
    wait_ready(&b, "pi-1", "the node stays Ready", Duration::from_secs(10));
    assert!(
        agent.drain().matches("full resync stored").count() == 1,
        "the move to B cost a full resync"
    );
}
