//! The controllers that are not workloads, end to end: the real `kedge
//! server`, the real kubectl v1.32, and simulated kubelets
//! (`kedge-node-sim`) writing Nodes, Leases and pod statuses through the
//! API.
//!
//! - Endpoints and EndpointSlices follow pod readiness; nodes get distinct
//!   podCIDRs; Services get ClusterIPs and NodePorts that are never shared.
//! - The garbage collector in its three modes, on ConfigMaps owned by
//!   ConfigMaps (no workload controller involved).
//! - Edge-aware node lifecycle: silent nodes become Unknown and tainted,
//!   keep their pods unless `kedge.io/autonomy` says otherwise, and come
//!   back Ready with the same pods.
//! - Leader failover between two servers on one etcd.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kedge_node_sim::{READY_ANNOTATION, SimConfig, SimNode, Simulator};
use kube::api::Api;
use serde_json::{Value, json};

use common::Cluster;

const WAIT: Duration = Duration::from_secs(60);

async fn client(cluster: &Cluster) -> kube::Client {
    cluster.client().await
}

/// Polls `kubectl get -o json` until `check` accepts the object.
fn wait_json(
    cluster: &Cluster,
    args: &[&str],
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + WAIT;
    let mut full: Vec<&str> = vec!["get"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["-o", "json"]);
    let mut last = Value::Null;
    while Instant::now() < deadline {
        let out = cluster.kubectl(&full);
        if out.status.success() {
            last = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            if check(&last) {
                return last;
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("timed out waiting for {what}; last seen:\n{last:#}");
}

/// Waits until `kubectl get` of the object fails with NotFound.
fn wait_gone(cluster: &Cluster, args: &[&str], what: &str) {
    let deadline = Instant::now() + WAIT;
    let mut full: Vec<&str> = vec!["get"];
    full.extend_from_slice(args);
    while Instant::now() < deadline {
        let out = cluster.kubectl(&full);
        if !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("NotFound") {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("{what} was never deleted");
}

/// A pod placed directly on `node` (no scheduler involved).
fn pod_on(name: &str, node: &str, app: &str, extra_spec: Value) -> String {
    let mut spec = json!({
        "nodeName": node,
        "containers": [{"name": "web", "image": "busybox", "ports": [{"name": "http", "containerPort": 8080}]}],
    });
    if let (Some(s), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
        for (k, v) in extra {
            s.insert(k.clone(), v.clone());
        }
    }
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "labels": {"app": app}}, "spec": spec})
    .to_string()
}

fn ips(addresses: &Value) -> BTreeSet<String> {
    addresses
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["ip"].as_str().map(String::from))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_follow_readiness_and_services_get_unique_addresses() {
    let cluster = Cluster::sqlite();
    let client = client(&cluster).await;
    let sim = Simulator::start(
        client.clone(),
        vec![SimNode::new("edge-a"), SimNode::new("edge-b")],
        SimConfig::default(),
    )
    .await
    .expect("register the simulated nodes");

    // Node IPAM: each node gets its own /24 of 10.42.0.0/16.
    let nodes = wait_json(&cluster, &["nodes"], "podCIDRs on both nodes", |v| {
        v["items"].as_array().is_some_and(|items| {
            items.len() == 2 && items.iter().all(|n| n["spec"]["podCIDR"].is_string())
        })
    });
    let cidrs: BTreeSet<&str> = nodes["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["spec"]["podCIDR"].as_str().unwrap())
        .collect();
    assert_eq!(cidrs.len(), 2, "podCIDRs are distinct: {cidrs:?}");
    assert!(
        cidrs
            .iter()
            .all(|c| c.starts_with("10.42.") && c.ends_with("/24")),
        "{cidrs:?}"
    );

    cluster.ok_stdin(
        &["apply", "-f", "-"],
        &pod_on("web-1", "edge-a", "web", json!({})),
    );
    cluster.ok_stdin(
        &["apply", "-f", "-"],
        &pod_on("web-2", "edge-b", "web", json!({})),
    );
    cluster.ok_stdin(
        &["apply", "-f", "-"],
        &pod_on("other", "edge-b", "other", json!({})),
    );
    let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}});
    cluster.ok_stdin(&["apply", "-f", "-"], &service.to_string());

    // Both web pods, resolved to their named port; the other pod is not selected.
    let ep = wait_json(
        &cluster,
        &["endpoints", "web"],
        "two ready endpoints",
        |v| ips(&v["subsets"][0]["addresses"]).len() == 2,
    );
    assert_eq!(ep["subsets"][0]["ports"][0]["port"], 8080, "{ep:#}");
    assert!(
        ep["subsets"][0].get("notReadyAddresses").is_none(),
        "{ep:#}"
    );
    let pod_ips: BTreeSet<String> = ["web-1", "web-2"]
        .iter()
        .map(|p| cluster.ok(&["get", "pod", p, "-o", "jsonpath={.status.podIP}"]))
        .collect();
    assert_eq!(ips(&ep["subsets"][0]["addresses"]), pod_ips);

    // web-2 stops being Ready (as a failing readiness probe would make it).
    cluster.ok(&[
        "annotate",
        "pod",
        "web-2",
        &format!("{READY_ANNOTATION}=false"),
    ]);
    let ep = wait_json(&cluster, &["endpoints", "web"], "web-2 not ready", |v| {
        ips(&v["subsets"][0]["addresses"]).len() == 1
            && ips(&v["subsets"][0]["notReadyAddresses"]).len() == 1
    });
    let web2_ip = cluster.ok(&["get", "pod", "web-2", "-o", "jsonpath={.status.podIP}"]);
    assert!(
        ips(&ep["subsets"][0]["notReadyAddresses"]).contains(web2_ip.trim()),
        "{ep:#}"
    );
    let slices = wait_json(
        &cluster,
        &["endpointslices", "-l", "kubernetes.io/service-name=web"],
        "the slice shows web-2 not ready",
        |v| {
            v["items"][0]["endpoints"].as_array().is_some_and(|eps| {
                eps.len() == 2
                    && eps
                        .iter()
                        .filter(|e| e["conditions"]["ready"] == json!(false))
                        .count()
                        == 1
            })
        },
    );
    assert_eq!(slices["items"].as_array().unwrap().len(), 1);
    assert_eq!(slices["items"][0]["ports"][0]["port"], 8080);
    assert_eq!(slices["items"][0]["addressType"], "IPv4");

    // And back.
    cluster.ok(&[
        "annotate",
        "pod",
        "web-2",
        &format!("{READY_ANNOTATION}=true"),
        "--overwrite",
    ]);
    wait_json(&cluster, &["endpoints", "web"], "both ready again", |v| {
        ips(&v["subsets"][0]["addresses"]).len() == 2
    });

    // A deleted pod leaves.
    cluster.ok(&["delete", "pod", "web-1", "--wait=false"]);
    wait_json(
        &cluster,
        &["endpoints", "web"],
        "web-1 gone from endpoints",
        |v| ips(&v["subsets"][0]["addresses"]).len() == 1,
    );

    // ClusterIPs and NodePorts: in range, distinct, and a taken one is refused.
    cluster.ok(&["create", "service", "nodeport", "np", "--tcp=80:8080"]);
    let svc = wait_json(&cluster, &["services"], "three services", |v| {
        v["items"].as_array().is_some_and(|i| i.len() >= 2)
    });
    let ips: BTreeSet<&str> = svc["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["spec"]["clusterIP"].as_str())
        .collect();
    assert!(
        ips.len() >= 2 && ips.iter().all(|ip| ip.starts_with("10.43.")),
        "{ips:?}"
    );
    let np = cluster.ok(&[
        "get",
        "svc",
        "np",
        "-o",
        "jsonpath={.spec.ports[0].nodePort}",
    ]);
    let np: u16 = np.trim().parse().expect("a nodePort");
    assert!((30000..=32767).contains(&np));
    let web_ip = cluster.ok(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    let err = cluster.fails(&[
        "create",
        "service",
        "clusterip",
        "dup",
        "--tcp=80",
        &format!("--clusterip={}", web_ip.trim()),
    ]);
    assert!(err.contains("provided IP is already allocated"), "{err}");
    let taken = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "np2"},
        "spec": {"type": "NodePort", "selector": {"app": "x"}, "ports": [{"port": 81, "nodePort": np}]}});
    let out = cluster.kubectl_cmd(&["create", "-f", "-"]);
    let err = run_with_stdin(out, &taken.to_string());
    assert!(err.contains("provided port is already allocated"), "{err}");
    drop(sim);
}

fn run_with_stdin(mut cmd: std::process::Command, stdin: &str) -> String {
    use std::io::Write;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run kubectl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "expected kubectl to fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn owned_config_map(name: &str, owner: &str, uid: &str, block: bool) -> String {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": owner, "uid": uid, "blockOwnerDeletion": block}
        ]},
        "data": {"k": "v"}})
    .to_string()
}

#[test]
fn garbage_collection_in_background_foreground_and_orphan_modes() {
    let cluster = Cluster::sqlite();
    let uid_of = |name: &str| {
        cluster
            .ok(&["get", "configmap", name, "-o", "jsonpath={.metadata.uid}"])
            .trim()
            .to_string()
    };

    // Background (kubectl's default): the owner goes at once, then its dependents.
    cluster.ok(&["create", "configmap", "owner-bg"]);
    let uid = uid_of("owner-bg");
    cluster.ok_stdin(
        &["apply", "-f", "-"],
        &owned_config_map("dep-bg", "owner-bg", &uid, false),
    );
    cluster.ok_stdin(
        &["apply", "-f", "-"],
        &owned_config_map("dep-bg-2", "owner-bg", &uid, true),
    );
    cluster.ok(&["delete", "configmap", "owner-bg"]);
    wait_gone(&cluster, &["configmap", "dep-bg"], "dep-bg");
    wait_gone(&cluster, &["configmap", "dep-bg-2"], "dep-bg-2");

    // A dependent whose owner never existed (wrong uid) is collected too.
    cluster.ok(&["create", "configmap", "owner-live"]);
    cluster.ok_stdin(
        &["apply", "-f", "-"],
        &owned_config_map(
            "dep-stale",
            "owner-live",
            "00000000-0000-0000-0000-000000000000",
            false,
        ),
    );
    wait_gone(&cluster, &["configmap", "dep-stale"], "dep-stale");
    // ... but one with a live owner stays.
    let live = uid_of("owner-live");
    cluster.ok_stdin(
        &["apply", "-f", "-"],
        &owned_config_map("dep-live", "owner-live", &live, false),
    );
    std::thread::sleep(Duration::from_secs(2));
    cluster.ok(&["get", "configmap", "dep-live"]);

    // Orphan: the dependent stays, without the reference.
    cluster.ok(&["create", "configmap", "owner-or"]);
    let uid = uid_of("owner-or");
    cluster.ok_stdin(
        &["apply", "-f", "-"],
        &owned_config_map("dep-or", "owner-or", &uid, true),
    );
    cluster.ok(&["delete", "configmap", "owner-or", "--cascade=orphan"]);
    wait_gone(&cluster, &["configmap", "owner-or"], "owner-or");
    let dep = wait_json(&cluster, &["configmap", "dep-or"], "dep-or unowned", |v| {
        v["metadata"].get("ownerReferences").is_none()
    });
    assert!(dep["metadata"]["deletionTimestamp"].is_null(), "{dep:#}");

    // Foreground: the owner waits, with its finalizer, until the blocking dependent is gone.
    cluster.ok(&["create", "configmap", "owner-fg"]);
    let uid = uid_of("owner-fg");
    let mut dep: Value =
        serde_json::from_str(&owned_config_map("dep-fg", "owner-fg", &uid, true)).unwrap();
    // A finalizer of the test's own holds the dependent, so the owner's wait is visible.
    dep["metadata"]["finalizers"] = json!(["example.com/hold"]);
    cluster.ok_stdin(&["apply", "-f", "-"], &dep.to_string());
    cluster.ok(&[
        "delete",
        "configmap",
        "owner-fg",
        "--cascade=foreground",
        "--wait=false",
    ]);
    let owner = wait_json(
        &cluster,
        &["configmap", "owner-fg"],
        "owner-fg deleting",
        |v| v["metadata"]["deletionTimestamp"].is_string(),
    );
    assert_eq!(
        owner["metadata"]["finalizers"],
        json!(["foregroundDeletion"]),
        "{owner:#}"
    );
    wait_json(
        &cluster,
        &["configmap", "dep-fg"],
        "dep-fg deleted in turn",
        |v| v["metadata"]["deletionTimestamp"].is_string(),
    );
    std::thread::sleep(Duration::from_secs(2));
    cluster.ok(&["get", "configmap", "owner-fg"]);
    cluster.ok(&[
        "patch",
        "configmap",
        "dep-fg",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    wait_gone(&cluster, &["configmap", "dep-fg"], "dep-fg");
    wait_gone(&cluster, &["configmap", "owner-fg"], "owner-fg");

    // Every namespace has its default ServiceAccount, recreated if deleted.
    cluster.ok(&["create", "namespace", "team"]);
    wait_json(
        &cluster,
        &["serviceaccount", "default", "-n", "team"],
        "default SA",
        |_| true,
    );
    cluster.ok(&["delete", "serviceaccount", "default", "-n", "team"]);
    wait_json(
        &cluster,
        &["serviceaccount", "default", "-n", "team"],
        "default SA again",
        |_| true,
    );
}

fn taint_keys(node: &Value) -> BTreeSet<String> {
    node["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            format!(
                "{}:{}",
                t["key"].as_str().unwrap_or(""),
                t["effect"].as_str().unwrap_or("")
            )
        })
        .collect()
}

fn ready(node: &Value) -> String {
    node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .and_then(|c| c["status"].as_str())
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_edge_node_keeps_its_pods_unless_it_opts_into_eviction() {
    let dir = tempfile::tempdir().unwrap();
    let cluster =
        Cluster::start_with_args(dir.path(), "", 0, &["--node-monitor-grace-period", "4s"]);
    let client = client(&cluster).await;
    let config = SimConfig {
        lease_renew_interval: Duration::from_secs(1),
        ..SimConfig::default()
    };
    let sim = Simulator::start(
        client.clone(),
        vec![
            SimNode::new("pi-autonomous"),
            SimNode::new("pi-upstream").annotation("kedge.io/autonomy", "0"),
        ],
        config,
    )
    .await
    .expect("register the simulated nodes");

    // Short tolerations, so that upstream-style eviction is quick to see.
    let tolerate = json!({"tolerations": [
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2}
    ]});
    cluster.ok_stdin(
        &["apply", "-f", "-"],
        &pod_on("app-autonomous", "pi-autonomous", "app", tolerate.clone()),
    );
    cluster.ok_stdin(
        &["apply", "-f", "-"],
        &pod_on("app-upstream", "pi-upstream", "app", tolerate),
    );
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let mut uids = Vec::new();
    for name in ["app-autonomous", "app-upstream"] {
        wait_json(&cluster, &["pod", name], "a running pod", |v| {
            v["status"]["phase"] == "Running"
        });
        uids.push(pods.get(name).await.unwrap().metadata.uid.unwrap());
    }

    // Both devices lose their link.
    sim.silence("pi-autonomous");
    sim.silence("pi-upstream");
    for node in ["pi-autonomous", "pi-upstream"] {
        let n = wait_json(
            &cluster,
            &["node", node],
            "Unknown with the unreachable taints",
            |v| {
                ready(v) == "Unknown"
                    && taint_keys(v).contains("node.kubernetes.io/unreachable:NoExecute")
                    && taint_keys(v).contains("node.kubernetes.io/unreachable:NoSchedule")
            },
        );
        let reason = n["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap()["reason"]
            .clone();
        assert_eq!(reason, "NodeStatusUnknown");
    }
    // The pods are marked not Ready, as upstream does.
    wait_json(&cluster, &["pod", "app-autonomous"], "pod not Ready", |v| {
        v["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "False")
        })
    });

    // The upstream node's pod is evicted after its 2 s toleration.
    wait_json(
        &cluster,
        &["pod", "app-upstream"],
        "app-upstream evicted",
        |v| v["metadata"]["deletionTimestamp"].is_string(),
    );
    // The autonomous node's pod is not, however long we wait (here: well
    // past its toleration and the grace period).
    std::thread::sleep(Duration::from_secs(8));
    let kept = cluster.ok(&["get", "pod", "app-autonomous", "-o", "json"]);
    let kept: Value = serde_json::from_str(&kept).unwrap();
    assert!(kept["metadata"]["deletionTimestamp"].is_null(), "{kept:#}");

    // The link comes back: Ready, taints gone, the same pod, never restarted.
    sim.resume("pi-autonomous");
    wait_json(
        &cluster,
        &["node", "pi-autonomous"],
        "Ready without taints",
        |v| ready(v) == "True" && taint_keys(v).is_empty(),
    );
    let back = wait_json(
        &cluster,
        &["pod", "app-autonomous"],
        "pod Ready again",
        |v| {
            v["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        },
    );
    assert_eq!(
        back["metadata"]["uid"].as_str(),
        Some(uids[0].as_str()),
        "the same pod"
    );
    assert_eq!(back["status"]["containerStatuses"][0]["restartCount"], 0);
    drop(sim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_fail_over_between_two_servers() {
    use kedge_datastore_testkit::servers::{Durability, Etcd};
    let etcd = Etcd::start(Durability::Fast).expect("start a throwaway etcd (package etcd-server)");
    let endpoint = etcd.endpoint();
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    // Servers of one cluster share its token (and through it, its CA).
    let token = ["--token", "controllers-fail-over"];
    let mut leader = Cluster::start_with_args(dir_a.path(), &endpoint, 0, &token);
    let holder = |c: &Cluster, lease: &str| {
        let out = c.kubectl(&[
            "get",
            "lease",
            "-n",
            "kube-system",
            lease,
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // The first server takes both leases...
    let deadline = Instant::now() + WAIT;
    let (first_cm, first_sched) = loop {
        let (cm, sc) = (
            holder(&leader, "kube-controller-manager"),
            holder(&leader, "kube-scheduler"),
        );
        if !cm.is_empty() && !sc.is_empty() {
            break (cm, sc);
        }
        assert!(Instant::now() < deadline, "no leader was elected");
        std::thread::sleep(Duration::from_millis(250));
    };
    // ... and keeps them when a second one joins.
    let follower = Cluster::start_with_args(dir_b.path(), &endpoint, 0, &token);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(holder(&follower, "kube-controller-manager"), first_cm);
    assert_eq!(holder(&follower, "kube-scheduler"), first_sched);

    // Kill the leader without a chance to release its leases.
    leader.kill();
    let started = Instant::now();
    let deadline = Instant::now() + WAIT;
    loop {
        let now_cm = holder(&follower, "kube-controller-manager");
        let now_sched = holder(&follower, "kube-scheduler");
        if now_cm != first_cm && now_sched != first_sched && !now_cm.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the second server never took over"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(30), "takeover took {took:?}");
    // And its controllers work: a new namespace gets its ServiceAccount.
    follower.ok(&["create", "namespace", "after-failover"]);
    wait_json(
        &follower,
        &["serviceaccount", "default", "-n", "after-failover"],
        "default SA from the new leader",
        |_| true,
    );
    drop(leader);
}
