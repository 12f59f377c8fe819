//! `kedge server` with its local agent (the README's first command): one command gives a
//! cluster whose own machine is a Ready node that runs pods, as `k3s server` does. The
//! server starts the real `kedge-agent` next to it, which joins over the tunnel with the
//! server's token file and runs a pod on its own containerd; SIGTERM to the server stops
//! the agent too.
//!
//! Needs root, containerd, runc, the CNI plugins and busybox-static (scripts/setup.sh
//! installs them); without them the test fails and names what is missing.

mod common;

use std::time::{Duration, Instant};

use common::Cluster;
use common::agent::{agent_binary, wait_ready};

const IMAGE: &str = "docker.io/library/busybox:kedge-local";

#[test]
fn kedge_server_runs_a_local_agent_that_runs_pods() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root: the local agent runs containerd, runc and CNI plugins"
    );
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    // The local agent's state is <data-dir>/agent, airgap images included.
    common::agent::airgap_busybox(&data_dir, IMAGE);

    let mut cmd = common::kedge_with_local_agent(&data_dir, "", 0);
    cmd.args([
        "--node-name",
        "local-e2e",
        "--node-label",
        "role=control-plane",
    ])
    .args(["--cluster-cidr", "10.109.0.0/16"])
    .arg("--agent-binary")
    .arg(agent_binary())
    .arg("--agent-arg=--cni-bridge=kedge-local")
    // The test machine's disk is shared and often nearly full: no disk pressure.
    .arg("--agent-arg=--eviction-hard=nodefs.available<0%")
    .arg("--agent-arg=--eviction-soft=nodefs.available<0%")
    .arg(format!(
        "--agent-arg=--pod-log-dir={}",
        dir.path().join("pod-logs").display()
    ));
    let mut cluster = Cluster::from_command(cmd, &data_dir, "", 0);

    wait_ready(
        &cluster,
        "local-e2e",
        "the local agent's node registers Ready",
        Duration::from_secs(60),
    );
    let labels = cluster.ok(&[
        "get",
        "node",
        "local-e2e",
        "-o",
        "jsonpath={.metadata.labels.role}",
    ]);
    assert_eq!(labels, "control-plane");

    cluster.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: v1
kind: Pod
metadata:
  name: hello
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: {IMAGE}
    imagePullPolicy: Never
    command: [sh, -c, 'echo hello from the local node; sleep 3600']
"
        ),
    );
    let waited = cluster.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "pod/hello",
        "--timeout=60s",
    ]);
    if !waited.status.success() {
        let describe = cluster.kubectl(&["describe", "pod", "hello"]);
        let log: Vec<String> = cluster.log.try_iter().collect();
        panic!(
            "the pod did not get Ready: {}\n{}\n--- the server's (and its agent's) log:\n{}",
            String::from_utf8_lossy(&waited.stderr),
            String::from_utf8_lossy(&describe.stdout),
            log[log.len().saturating_sub(80)..].join("\n")
        );
    }
    let node = cluster.ok(&["get", "pod", "hello", "-o", "jsonpath={.spec.nodeName}"]);
    assert_eq!(node, "local-e2e");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let logs = cluster.kubectl(&["logs", "hello"]);
        if String::from_utf8_lossy(&logs.stdout).contains("hello from the local node") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "kubectl logs never showed the pod's output: {}",
            String::from_utf8_lossy(&logs.stderr)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    cluster.ok(&["delete", "pod", "hello", "--wait=true", "--timeout=60s"]);

    // SIGTERM to the server: the local agent stops with it (no kedge-agent of this data
    // dir is left), and the server exits cleanly.
    cluster.stop();
    let left = std::process::Command::new("pgrep")
        .args(["-f", &format!("kedge-agent.*{}", data_dir.display())])
        .output()
        .expect("run pgrep (procps)");
    assert!(
        left.stdout.is_empty(),
        "a local agent outlived its server: pids {}",
        String::from_utf8_lossy(&left.stdout)
    );
    let _ = std::process::Command::new("ip")
        .args(["link", "delete", "kedge-local"])
        .stderr(std::process::Stdio::null())
        .status();
}
