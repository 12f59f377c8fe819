//! The scheduler end to end: the real `kedge server`, nodes written
//! through the API as a kubelet would write them, pods created with the
//! real kubectl, and the placements, conditions and events kubectl shows.
//!
//! The scheduler is the server's own once `kedge server` runs it (its log
//! then says "scheduler started"); before that, the test runs
//! `kedge_scheduler::run` in-process against the same API, which is the
//! same loop on the same client path.

mod common;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use common::Cluster;

/// How long a pod may take to be bound or to get its event.
const WAIT: Duration = Duration::from_secs(30);

async fn client(cluster: &Cluster) -> kube::Client {
    cluster.client().await
}

/// Whether the server runs its own scheduler: within a few seconds it
/// logs that it started, or holds the `kube-scheduler` Lease.
async fn server_schedules(cluster: &Cluster, client: &kube::Client) -> bool {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        while let Ok(line) = cluster.log.try_recv() {
            if line.contains("scheduler started") {
                return true;
            }
        }
        if let Ok(Some(_)) = leases.get_opt("kube-scheduler").await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// Registers a node: the object, then its status (allocatable and a Ready
/// condition) through nodes/status, as a kubelet does.
async fn add_node(client: &kube::Client, node: Value, memory: &str) {
    let api: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(node).unwrap();
    let name = node.metadata.name.clone().unwrap();
    api.create(&PostParams::default(), &node).await.unwrap();
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let resources =
        json!({"cpu": "4", "memory": memory, "pods": "110", "ephemeral-storage": "20Gi"});
    let status = json!({"status": {
        "capacity": resources,
        "allocatable": resources,
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "message": "kubelet is posting ready status",
                        "lastHeartbeatTime": now, "lastTransitionTime": now}],
    }});
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
}

/// Polls kubectl until `f` accepts its output.
#[track_caller]
fn wait_for(cluster: &Cluster, args: &[&str], what: &str, f: impl Fn(&str) -> bool) -> String {
    cluster.wait_for(args, what, WAIT, f)
}

fn node_of(cluster: &Cluster, pod: &str) -> String {
    wait_for(
        cluster,
        &[
            "get",
            "pod",
            pod,
            "-n",
            "sched",
            "-o",
            "jsonpath={.spec.nodeName}",
        ],
        &format!("pod {pod} bound"),
        |t| !t.trim().is_empty(),
    )
    .trim()
    .to_string()
}

const PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: on-rpi, namespace: sched}
spec:
  nodeSelector: {kedge.io/profile: rpi-4-2gb}
  containers: [{name: app, image: busybox, resources: {requests: {cpu: 100m, memory: 64Mi}}}]
---
apiVersion: v1
kind: Pod
metadata: {name: on-gpu, namespace: sched}
spec:
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
        - matchExpressions: [{key: kedge.io/profile, operator: In, values: [jetson]}]
  tolerations: [{key: gpu, operator: Exists, effect: NoSchedule}]
  containers: [{name: app, image: busybox}]
---
apiVersion: v1
kind: Pod
metadata: {name: anywhere, namespace: sched}
spec:
  containers: [{name: app, image: busybox, resources: {requests: {cpu: 500m}}}]
---
apiVersion: v1
kind: Pod
metadata: {name: too-big, namespace: sched}
spec:
  containers: [{name: app, image: busybox, resources: {requests: {memory: 3Gi}}}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn places_pods_and_explains_what_does_not_fit() {
    let cluster = Cluster::sqlite();
    let client = client(&cluster).await;
    let in_process = scheduler_for(&cluster, &client).await;

    add_node(
        &client,
        json!({"metadata": {"name": "edge-a", "labels": {"kedge.io/profile": "rpi-4-2gb"}}}),
        "2Gi",
    )
    .await;
    add_node(
        &client,
        json!({"metadata": {"name": "edge-b", "labels": {"kedge.io/profile": "jetson"}},
               "spec": {"taints": [{"key": "gpu", "value": "true", "effect": "NoSchedule"}]}}),
        "8Gi",
    )
    .await;
    add_node(
        &client,
        json!({"metadata": {"name": "edge-c", "labels": {"kedge.io/profile": "nuc"}},
               "spec": {"unschedulable": true}}),
        "8Gi",
    )
    .await;

    let c = &cluster;
    tokio::task::block_in_place(|| {
        c.ok(&["create", "namespace", "sched"]);
        c.ok_stdin(&["apply", "-f", "-"], PODS);
        assert_eq!(node_of(c, "on-rpi"), "edge-a");
        assert_eq!(node_of(c, "on-gpu"), "edge-b");
        // edge-b is tainted and edge-c cordoned: only edge-a is left.
        assert_eq!(node_of(c, "anywhere"), "edge-a");

        let want = "0/3 nodes are available: 1 Insufficient memory, \
                    1 node(s) had untolerated taint {gpu: true}, 1 node(s) were unschedulable.";
        wait_for(
            c,
            &[
                "get",
                "pod",
                "too-big",
                "-n",
                "sched",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].status} {.status.conditions[?(@.type==\"PodScheduled\")].reason}: {.status.conditions[?(@.type==\"PodScheduled\")].message}",
            ],
            "PodScheduled=False on the pod that fits nowhere",
            |t| t == format!("False Unschedulable: {want}"),
        );
        let events = wait_for(
            c,
            &[
                "get",
                "events",
                "-n",
                "sched",
                "-o",
                "custom-columns=TYPE:.type,REASON:.reason,OBJECT:.involvedObject.name,SOURCE:.source.component,MESSAGE:.message",
            ],
            "a FailedScheduling event",
            |t| t.contains("FailedScheduling"),
        );
        let line = events
            .lines()
            .find(|l| l.contains("FailedScheduling"))
            .unwrap();
        assert!(line.starts_with("Warning"), "{line}");
        assert!(line.contains("too-big"), "{line}");
        assert!(line.contains("default-scheduler"), "{line}");
        assert!(line.contains(want), "{line}");
        let describe = c.ok(&["describe", "pod", "too-big", "-n", "sched"]);
        assert!(describe.contains("FailedScheduling"), "{describe}");
        assert!(describe.contains(want), "{describe}");
        assert!(describe.contains("default-scheduler"), "{describe}");
        // Bound pods were told so.
        let describe = c.ok(&["describe", "pod", "on-gpu", "-n", "sched"]);
        assert!(
            describe.contains("Successfully assigned sched/on-gpu to edge-b"),
            "{describe}"
        );

        // Uncordoning edge-c makes room; the waiting pod goes there
        // without waiting for its periodic retry.
        c.ok(&["uncordon", "edge-c"]);
        let started = Instant::now();
        assert_eq!(node_of(c, "too-big"), "edge-c");
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the pod waited {:?} after the node changed",
            started.elapsed()
        );

        // A pod whose request does not parse is refused by the API before
        // the scheduler sees it; one naming another scheduler is left alone.
        c.ok_stdin(
            &["apply", "-f", "-"],
            "apiVersion: v1\nkind: Pod\nmetadata: {name: not-ours, namespace: sched}\n\
             spec: {schedulerName: other-scheduler, containers: [{name: app, image: busybox}]}\n",
        );
        std::thread::sleep(Duration::from_secs(2));
        let node = c.ok(&[
            "get",
            "pod",
            "not-ours",
            "-n",
            "sched",
            "-o",
            "jsonpath={.spec.nodeName}",
        ]);
        assert_eq!(node.trim(), "", "a pod for another scheduler was bound");
    });
    if let Some(task) = in_process {
        assert!(
            !task.is_finished(),
            "the in-process scheduler stopped: {:?}",
            task.await
        );
        task.abort();
    }
}

/// Starts the scheduler in-process unless the server runs its own.
async fn scheduler_for(
    cluster: &Cluster,
    client: &kube::Client,
) -> Option<tokio::task::JoinHandle<Result<(), kedge_scheduler::Error>>> {
    if server_schedules(cluster, client).await {
        eprintln!("the server runs its own scheduler");
        None
    } else {
        eprintln!("the server runs no scheduler; running kedge_scheduler::run in the test");
        Some(tokio::spawn(kedge_scheduler::run(
            client.clone(),
            kedge_scheduler::Config::default(),
        )))
    }
}

const SPREAD: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: sched}
spec:
  replicas: 6
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: DoNotSchedule,
         labelSelector: {matchLabels: {app: web}}}
      containers: [{name: app, image: busybox, resources: {requests: {cpu: 100m}}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: ingress, namespace: sched}
spec:
  replicas: 4
  selector: {matchLabels: {app: ingress}}
  template:
    metadata: {labels: {app: ingress}}
    spec:
      containers: [{name: app, image: busybox, ports: [{containerPort: 80, hostPort: 8080}]}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spreads_workloads_and_keeps_host_ports_apart() {
    let cluster = Cluster::sqlite();
    let client = client(&cluster).await;
    let in_process = scheduler_for(&cluster, &client).await;
    for (name, zone) in [("z1", "zone-1"), ("z2", "zone-2"), ("z3", "zone-3")] {
        add_node(
            &client,
            json!({"metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone}}}),
            "8Gi",
        )
        .await;
    }
    let c = &cluster;
    tokio::task::block_in_place(|| {
        c.ok(&["create", "namespace", "sched"]);
        c.ok_stdin(&["apply", "-f", "-"], SPREAD);
        // Six replicas over three zones with maxSkew 1: two in each.
        let placed = wait_for(
            c,
            &[
                "get",
                "pods",
                "-n",
                "sched",
                "-l",
                "app=web",
                "-o",
                "jsonpath={range .items[*]}{.spec.nodeName}{\"\\n\"}{end}",
            ],
            "six web pods bound",
            |t| t.lines().filter(|l| !l.trim().is_empty()).count() == 6,
        );
        for node in ["z1", "z2", "z3"] {
            assert_eq!(
                placed.lines().filter(|l| l.trim() == node).count(),
                2,
                "web pods per node:\n{placed}"
            );
        }
        // Four replicas wanting host port 8080 on three nodes: one per
        // node, and the fourth explains why it waits.
        let placed = wait_for(
            c,
            &[
                "get",
                "pods",
                "-n",
                "sched",
                "-l",
                "app=ingress",
                "-o",
                "jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName}{\"\\n\"}{end}",
            ],
            "three ingress pods bound",
            |t| {
                t.lines()
                    .filter(|l| l.split_whitespace().count() == 2)
                    .count()
                    == 3
            },
        );
        let nodes: std::collections::BTreeSet<&str> = placed
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .collect();
        assert_eq!(nodes.len(), 3, "two ingress pods share a node:\n{placed}");
        let waiting = placed
            .lines()
            .find(|l| l.split_whitespace().count() == 1)
            .expect("a fourth ingress pod")
            .trim()
            .to_string();
        let want = "0/3 nodes are available: 3 node(s) didn't have free ports for the requested pod ports.";
        let describe = wait_for(
            c,
            &["describe", "pod", &waiting, "-n", "sched"],
            "the port conflict in describe",
            |t| t.contains(want),
        );
        assert!(describe.contains("FailedScheduling"), "{describe}");
    });
    if let Some(task) = in_process {
        assert!(
            !task.is_finished(),
            "the in-process scheduler stopped: {:?}",
            task.await
        );
        task.abort();
    }
}
