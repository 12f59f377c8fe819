//! The Kubernetes API on each datastore: the same kubectl session against
//! `kedge server` on a real PostgreSQL and a real etcd, started by the test
//! on random loopback ports, including a restart of the server.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::Cluster;
use kedge_datastore_testkit::backends::{shared_postgres, unique_name};
use kedge_datastore_testkit::servers::{Durability, Etcd};

const APP: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: shop, labels: {app: cart}}
data: {mode: fast}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: cart, namespace: shop, labels: {app: cart}}
spec:
  replicas: 2
  selector: {matchLabels: {app: cart}}
  template:
    metadata: {labels: {app: cart}}
    spec:
      containers:
      - name: cart
        image: busybox
        env:
        - {name: A, value: "1"}
"#;

/// The session: apply, read, select, patch, scale, watch, conflict, delete,
/// and what survives a restart.
fn session(data_dir: &Path, endpoint: &str) {
    let mut c = Cluster::start_in(data_dir, endpoint);
    c.ok_stdin(&["apply", "-f", "-"], APP);
    assert_eq!(
        c.ok(&["get", "cm", "-n", "shop", "-l", "app=cart", "-o", "name"])
            .trim(),
        "configmap/settings"
    );
    assert_eq!(
        c.ok(&[
            "get",
            "deploy",
            "cart",
            "-n",
            "shop",
            "-o",
            "jsonpath={.spec.strategy.type}"
        ]),
        "RollingUpdate",
        "defaults applied"
    );
    // A strategic merge patch merges the env list by name.
    c.ok(&[
        "patch",
        "deploy",
        "cart",
        "-n",
        "shop",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"cart","env":[{"name":"B","value":"2"}]}]}}}}"#,
    ]);
    assert_eq!(
        c.ok(&[
            "get",
            "deploy",
            "cart",
            "-n",
            "shop",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].env[*].name} {.metadata.generation}",
        ]),
        "B A 2"
    );
    c.ok(&["scale", "deploy", "cart", "-n", "shop", "--replicas=5"]);

    // A watch sees a change made after it started.
    let (mut watch, lines) = c.kubectl_lines(&[
        "get",
        "cm",
        "settings",
        "-n",
        "shop",
        "--watch-only",
        "-o",
        "jsonpath={.data.mode}{\"\\n\"}",
    ]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    // Each round writes a new value: the watch may start after the first.
    for round in 0.. {
        if seen.iter().any(|l: &String| l.starts_with("slow")) {
            break;
        }
        c.ok(&[
            "patch",
            "cm",
            "settings",
            "-n",
            "shop",
            "--type=merge",
            "-p",
            &format!(r#"{{"data":{{"mode":"slow-{round}"}}}}"#),
        ]);
        if let Ok(line) = lines.recv_timeout(Duration::from_secs(2)) {
            seen.push(line);
        }
        assert!(Instant::now() < deadline, "the watch saw only {seen:?}");
    }
    let _ = watch.kill();
    let _ = watch.wait();

    // A replace with a stale resourceVersion is a conflict.
    let stale = c.ok(&["get", "cm", "settings", "-n", "shop", "-o", "json"]);
    c.ok(&[
        "patch",
        "cm",
        "settings",
        "-n",
        "shop",
        "--type=merge",
        "-p",
        r#"{"data":{"mode":"slow"}}"#,
    ]);
    c.ok(&["label", "cm", "settings", "-n", "shop", "tier=1"]);
    let err = c
        .kubectl_cmd(&["replace", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(stale.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(!err.status.success());
    assert!(
        String::from_utf8_lossy(&err.stderr).contains("the object has been modified"),
        "{}",
        String::from_utf8_lossy(&err.stderr)
    );
    let rv_before = c.ok(&[
        "get",
        "cm",
        "settings",
        "-n",
        "shop",
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ]);

    // Everything is still there after a restart, at the same versions.
    c.stop();
    drop(c);
    let c = Cluster::start_in(data_dir, endpoint);
    assert_eq!(
        c.ok(&[
            "get",
            "cm",
            "settings",
            "-n",
            "shop",
            "-o",
            "jsonpath={.metadata.resourceVersion} {.data.mode} {.metadata.labels.tier}"
        ]),
        format!("{rv_before} slow 1")
    );
    assert_eq!(
        c.ok(&[
            "get",
            "deploy",
            "cart",
            "-n",
            "shop",
            "-o",
            "jsonpath={.spec.replicas}"
        ]),
        "5"
    );
    // Deleting the namespace empties it, then removes it.
    c.ok(&[
        "delete",
        "namespace",
        "shop",
        "--wait=true",
        "--timeout=60s",
    ]);
    assert_eq!(
        c.ok(&["get", "ns", "-o", "name"])
            .lines()
            .filter(|l| l.contains("shop"))
            .count(),
        0
    );
    assert_eq!(
        c.ok(&["get", "cm,deploy", "-A", "-o", "name"])
            .lines()
            .filter(|l| l.contains("settings") || l.contains("cart"))
            .count(),
        0
    );
}

#[test]
fn kubectl_session_on_postgres() {
    let pg = shared_postgres();
    let name = unique_name("kedge_api");
    let url = pg.create_database(&name).unwrap();
    let dir = tempfile::tempdir().unwrap();
    session(dir.path(), &url);
}

#[test]
fn kubectl_session_on_etcd() {
    let etcd = Etcd::start(Durability::Fast).unwrap_or_else(|e| panic!("{e}"));
    let endpoint = etcd.endpoint().replace("http://", "etcd://");
    let dir = tempfile::tempdir().unwrap();
    session(dir.path(), &endpoint);
}
