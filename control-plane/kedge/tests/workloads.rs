//! The workload controllers end to end: the real `kedge server` (which runs
//! the controllers), the real kubectl v1.32, and simulated kubelets.
//!
//! The kubelets are `kedge-node-sim`: it registers Ready nodes, renews
//! their Leases, marks pods bound to them Running and Ready (or finished,
//! with the `sim.kedge.io/exit-code` annotation; or not Ready, with
//! `sim.kedge.io/ready: "false"`) and finishes graceful pod deletions,
//! through the API as a kubelet would. The scheduler and the garbage
//! collector are the server's own.

mod common;

use std::time::{Duration, Instant};

use kedge_node_sim::{SimConfig, SimNode, Simulator};
use serde_json::{Value, json};

use common::Cluster;

const WAIT: Duration = Duration::from_secs(60);

async fn client(cluster: &Cluster) -> kube::Client {
    cluster.client().await
}

/// Simulated kubelets (`kedge-node-sim`) for `nodes` (name, labels).
/// Dropping the simulator stops them.
async fn start_kubelets(
    _cluster: &Cluster,
    client: &kube::Client,
    nodes: &[(&str, Value)],
) -> Simulator {
    let nodes = nodes
        .iter()
        .map(|(name, labels)| {
            let mut node = SimNode::new(name);
            for (k, v) in labels.as_object().into_iter().flatten() {
                node = node.label(k, v.as_str().unwrap_or_default());
            }
            node
        })
        .collect();
    Simulator::start(client.clone(), nodes, SimConfig::default())
        .await
        .expect("register the simulated nodes")
}

/// Polls kubectl until `f` accepts its output.
#[track_caller]
fn wait_for(cluster: &Cluster, args: &[&str], what: &str, f: impl Fn(&str) -> bool) -> String {
    cluster.wait_for(args, what, WAIT, f)
}

fn lines(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: app, image: "busybox:1"}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_rolls_out_updates_undoes_and_deletes() {
    let cluster = Cluster::sqlite();
    let client = client(&cluster).await;
    let _kubelets = start_kubelets(
        &cluster,
        &client,
        &[("edge-a", json!({})), ("edge-b", json!({}))],
    )
    .await;
    let c = &cluster;
    tokio::task::block_in_place(|| {
        c.ok_stdin(&["apply", "-f", "-"], DEPLOYMENT);
        let out = c.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
        assert!(out.contains("successfully rolled out"), "{out}");

        // One ReplicaSet web-<hash>, owned by the Deployment; three pods
        // owned by it, named after it, with the pod-template-hash label.
        let rs = c.ok(&["get", "rs", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.metadata.name} {.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name} {.metadata.annotations.deployment\\.kubernetes\\.io/revision}{\"\\n\"}{end}"]);
        let rs_lines: Vec<&str> = rs.lines().collect();
        assert_eq!(rs_lines.len(), 1, "{rs}");
        let first: Vec<&str> = rs_lines[0].split(' ').collect();
        let rs1 = first[0].to_string();
        assert!(rs1.starts_with("web-"), "{rs}");
        assert_eq!(first[1], "Deployment/web");
        assert_eq!(first[2], "1");
        let hash = rs1.trim_start_matches("web-").to_string();
        let pods = c.ok(&["get", "pods", "-l", &format!("pod-template-hash={hash}"), "-o", "jsonpath={range .items[*]}{.metadata.name} {.metadata.ownerReferences[0].name} {.metadata.ownerReferences[0].controller} {.metadata.ownerReferences[0].blockOwnerDeletion} {.status.phase}{\"\\n\"}{end}"]);
        assert_eq!(pods.lines().count(), 3, "{pods}");
        for line in pods.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            assert!(
                f[0].starts_with(&format!("{rs1}-")) && f[0].len() == rs1.len() + 6,
                "{line}"
            );
            assert_eq!(&f[1..], [rs1.as_str(), "true", "true", "Running"], "{line}");
        }
        let status = c.ok(&["get", "deployment", "web", "-o", "jsonpath={.status.replicas} {.status.updatedReplicas} {.status.readyReplicas} {.status.availableReplicas} {.metadata.annotations.deployment\\.kubernetes\\.io/revision}"]);
        assert_eq!(status, "3 3 3 3 1");
        let conds = c.ok(&[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={range .status.conditions[*]}{.type}={.status}/{.reason} {end}",
        ]);
        assert!(
            conds.contains("Available=True/MinimumReplicasAvailable"),
            "{conds}"
        );
        assert!(
            conds.contains("Progressing=True/NewReplicaSetAvailable"),
            "{conds}"
        );
        let events = wait_for(
            c,
            &[
                "get",
                "events",
                "-o",
                "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}",
            ],
            "events",
            |e| e.contains("ScalingReplicaSet"),
        );
        assert!(
            events.contains(&format!("Scaled up replica set {rs1} from 0 to 3")),
            "{events}"
        );
        assert!(
            events.contains("SuccessfulCreate: Created pod: web-"),
            "{events}"
        );

        // A rolling update to a new image.
        c.ok(&["set", "image", "deployment/web", "app=busybox:2"]);
        let out = c.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
        assert!(out.contains("successfully rolled out"), "{out}");
        let images = c.ok(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={range .items[*]}{.spec.containers[0].image}{\"\\n\"}{end}",
        ]);
        wait_for(
            c,
            &[
                "get",
                "pods",
                "-l",
                "app=web",
                "-o",
                "jsonpath={range .items[*]}{.spec.containers[0].image} {end}",
            ],
            "only new pods",
            |s| lines(s) == ["busybox:2"; 3],
        );
        let _ = images;
        let rs = c.ok(&["get", "rs", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.metadata.name}={.spec.replicas}/{.metadata.annotations.deployment\\.kubernetes\\.io/revision} {end}"]);
        assert_eq!(lines(&rs).len(), 2, "{rs}");
        assert!(rs.contains(&format!("{rs1}=0/1")), "{rs}");
        assert_eq!(
            c.ok(&[
                "get",
                "deployment",
                "web",
                "-o",
                "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}"
            ]),
            "2"
        );

        // Undo goes back to busybox:1 through the first ReplicaSet, now
        // revision 3.
        c.ok(&["rollout", "undo", "deployment/web"]);
        let out = c.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
        assert!(out.contains("successfully rolled out"), "{out}");
        wait_for(
            c,
            &[
                "get",
                "pods",
                "-l",
                "app=web",
                "-o",
                "jsonpath={range .items[*]}{.spec.containers[0].image} {end}",
            ],
            "pods back on busybox:1",
            |s| lines(s) == ["busybox:1"; 3],
        );
        let rs = c.ok(&["get", "rs", rs1.as_str(), "-o", "jsonpath={.spec.replicas}/{.metadata.annotations.deployment\\.kubernetes\\.io/revision}"]);
        assert_eq!(rs, "3/3");
        let history = c.ok(&["rollout", "history", "deployment/web"]);
        assert!(
            history.contains('2') && history.contains('3') && !history.contains("\n1 "),
            "{history}"
        );

        // Pause: a template change makes no new ReplicaSet until resume.
        c.ok(&["rollout", "pause", "deployment/web"]);
        c.ok(&["set", "image", "deployment/web", "app=busybox:3"]);
        std::thread::sleep(Duration::from_secs(2));
        let rs = c.ok(&["get", "rs", "-l", "app=web", "-o", "name"]);
        assert_eq!(rs.lines().count(), 2, "{rs}");
        c.ok(&["rollout", "resume", "deployment/web"]);
        let out = c.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
        assert!(out.contains("successfully rolled out"), "{out}");
        wait_for(
            c,
            &[
                "get",
                "pods",
                "-l",
                "app=web",
                "-o",
                "jsonpath={range .items[*]}{.spec.containers[0].image} {end}",
            ],
            "pods on busybox:3",
            |s| lines(s) == ["busybox:3"; 3],
        );

        // Scale.
        c.ok(&["scale", "deployment/web", "--replicas=5"]);
        c.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
        wait_for(
            c,
            &["get", "pods", "-l", "app=web", "-o", "name"],
            "five pods",
            |s| s.lines().count() == 5,
        );
        c.ok(&["scale", "deployment/web", "--replicas=2"]);
        wait_for(
            c,
            &["get", "pods", "-l", "app=web", "-o", "name"],
            "two pods",
            |s| s.lines().count() == 2,
        );

        // Deleting the Deployment removes its ReplicaSets and pods: the
        // garbage collector follows the ownerReferences. Without one in
        // kedge-controllers yet, the chain Deployment → ReplicaSet → pod it
        // would follow is what is checked.
        let chain = c.ok(&["get", "rs,pods", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.kind}:{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].blockOwnerDeletion} {end}"]);
        for item in lines(&chain) {
            assert!(
                item == "ReplicaSet:Deployment/true" || item == "Pod:ReplicaSet/true",
                "{chain}"
            );
        }
        c.ok(&["delete", "deployment", "web"]);
        // The garbage collector removes the ReplicaSets, then their pods.
        wait_for(
            c,
            &["get", "rs,pods", "-l", "app=web", "-o", "name"],
            "ReplicaSets and pods gone",
            |s| s.trim().is_empty(),
        );
    });
}

const STUCK: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: stuck, namespace: default}
spec:
  replicas: 2
  progressDeadlineSeconds: 3
  selector: {matchLabels: {app: stuck}}
  template:
    metadata: {labels: {app: stuck}, annotations: {sim.kedge.io/ready: "false"}}
    spec:
      containers: [{name: app, image: "busybox:1"}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: recreate, namespace: default}
spec:
  replicas: 2
  strategy: {type: Recreate}
  selector: {matchLabels: {app: recreate}}
  template:
    metadata: {labels: {app: recreate}}
    spec:
      containers: [{name: app, image: "busybox:1"}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_deadline_and_recreate() {
    let cluster = Cluster::sqlite();
    let client = client(&cluster).await;
    let _kubelets = start_kubelets(&cluster, &client, &[("edge-a", json!({}))]).await;
    let c = &cluster;
    tokio::task::block_in_place(|| {
        c.ok_stdin(&["apply", "-f", "-"], STUCK);
        // Pods that never become Ready: the rollout times out, and kubectl
        // says so.
        wait_for(
            c,
            &[
                "get",
                "deployment",
                "stuck",
                "-o",
                "jsonpath={range .status.conditions[*]}{.type}={.status}/{.reason} {end}",
            ],
            "ProgressDeadlineExceeded",
            |s| {
                s.contains("Progressing=False/ProgressDeadlineExceeded")
                    && s.contains("Available=False/MinimumReplicasUnavailable")
            },
        );
        let err = c.fails(&["rollout", "status", "deployment/stuck", "--timeout=20s"]);
        assert!(err.contains("exceeded its progress deadline"), "{err}");

        // Recreate: all old pods go before new ones come.
        let out = c.ok(&["rollout", "status", "deployment/recreate", "--timeout=60s"]);
        assert!(out.contains("successfully rolled out"), "{out}");
        c.ok(&["set", "image", "deployment/recreate", "app=busybox:2"]);
        let out = c.ok(&["rollout", "status", "deployment/recreate", "--timeout=60s"]);
        assert!(out.contains("successfully rolled out"), "{out}");
        wait_for(
            c,
            &[
                "get",
                "pods",
                "-l",
                "app=recreate",
                "-o",
                "jsonpath={range .items[*]}{.spec.containers[0].image} {end}",
            ],
            "new pods",
            |s| lines(s) == ["busybox:2"; 2],
        );
        let events = c.ok(&[
            "get",
            "events",
            "-o",
            "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}",
        ]);
        assert!(
            events
                .lines()
                .any(|l| l.starts_with("Scaled down replica set recreate-")
                    && l.ends_with("from 2 to 0")),
            "{events}"
        );
    });
}

const REPLICASET: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: orphan, namespace: default, labels: {app: rs}}
spec:
  containers: [{name: app, image: "busybox:1"}]
---
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: rs, namespace: default}
spec:
  replicas: 3
  selector: {matchLabels: {app: rs}}
  template:
    metadata: {labels: {app: rs}}
    spec:
      containers: [{name: app, image: "busybox:1"}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicaset_adopts_releases_and_replaces() {
    let cluster = Cluster::sqlite();
    let client = client(&cluster).await;
    let _kubelets = start_kubelets(&cluster, &client, &[("edge-a", json!({}))]).await;
    let c = &cluster;
    tokio::task::block_in_place(|| {
        c.ok_stdin(&["apply", "-f", "-"], REPLICASET);
        wait_for(
            c,
            &[
                "get",
                "rs",
                "rs",
                "-o",
                "jsonpath={.status.replicas} {.status.readyReplicas} {.status.availableReplicas} {.status.fullyLabeledReplicas} {.status.observedGeneration}",
            ],
            "rs ready",
            |s| s == "3 3 3 3 1",
        );
        // The orphan was adopted, so only two pods were made.
        assert_eq!(
            c.ok(&[
                "get",
                "pod",
                "orphan",
                "-o",
                "jsonpath={.metadata.ownerReferences[0].name}"
            ]),
            "rs"
        );
        assert_eq!(
            c.ok(&["get", "pods", "-l", "app=rs", "-o", "name"])
                .lines()
                .count(),
            3
        );
        // A pod relabelled out of the selector is released and replaced.
        c.ok(&["label", "pod", "orphan", "app=other", "--overwrite"]);
        wait_for(
            c,
            &[
                "get",
                "pod",
                "orphan",
                "-o",
                "jsonpath={.metadata.ownerReferences}",
            ],
            "released",
            |s| s.trim().is_empty() || s.trim() == "[]",
        );
        wait_for(
            c,
            &["get", "pods", "-l", "app=rs", "-o", "name"],
            "replaced",
            |s| s.lines().count() == 3,
        );
        // A deleted pod is replaced.
        let name = c.ok(&[
            "get",
            "pods",
            "-l",
            "app=rs",
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ]);
        c.ok(&["delete", "pod", &name]);
        wait_for(
            c,
            &["get", "rs", "rs", "-o", "jsonpath={.status.readyReplicas}"],
            "three again",
            |s| s == "3",
        );
        // Scale down.
        c.ok(&["scale", "rs/rs", "--replicas=1"]);
        wait_for(
            c,
            &["get", "pods", "-l", "app=rs", "-o", "name"],
            "one left",
            |s| s.lines().count() == 1,
        );
        let events = c.ok(&[
            "get",
            "events",
            "-o",
            "jsonpath={range .items[*]}{.reason}{\"\\n\"}{end}",
        ]);
        assert!(events.contains("SuccessfulDelete"), "{events}");
    });
}

const DAEMONSET: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: kube-system}
spec:
  selector: {matchLabels: {app: agent}}
  updateStrategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 1}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      nodeSelector: {kedge.io/profile: rpi-4-2gb}
      containers: [{name: app, image: "busybox:1"}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemonset_covers_matching_nodes_and_rolls() {
    let cluster = Cluster::sqlite();
    let client = client(&cluster).await;
    let rpi = json!({"kedge.io/profile": "rpi-4-2gb"});
    let _kubelets = start_kubelets(
        &cluster,
        &client,
        &[
            ("pi-1", rpi.clone()),
            ("pi-2", rpi.clone()),
            ("pi-3", rpi),
            ("nuc-1", json!({"kedge.io/profile": "nuc"})),
        ],
    )
    .await;
    let c = &cluster;
    tokio::task::block_in_place(|| {
        c.ok_stdin(&["apply", "-f", "-"], DAEMONSET);
        let out = c.ok(&[
            "-n",
            "kube-system",
            "rollout",
            "status",
            "ds/agent",
            "--timeout=60s",
        ]);
        assert!(out.contains("successfully rolled out"), "{out}");
        let nodes = c.ok(&[
            "-n",
            "kube-system",
            "get",
            "pods",
            "-l",
            "app=agent",
            "-o",
            "jsonpath={range .items[*]}{.spec.nodeName} {end}",
        ]);
        let mut nodes = lines(&nodes);
        nodes.sort();
        assert_eq!(nodes, ["pi-1", "pi-2", "pi-3"]);
        let status = c.ok(&["-n", "kube-system", "get", "ds", "agent", "-o", "jsonpath={.status.desiredNumberScheduled} {.status.currentNumberScheduled} {.status.numberReady} {.status.updatedNumberScheduled} {.status.numberAvailable}"]);
        assert_eq!(status, "3 3 3 3 3");
        // Pods are pinned by node affinity and tolerate the defaults.
        let pod = c.ok(&["-n", "kube-system", "get", "pods", "-l", "app=agent", "-o", "jsonpath={.items[0].spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchFields[0].key} {.items[0].spec.tolerations[*].key}"]);
        assert!(
            pod.starts_with("metadata.name ") && pod.contains("node.kubernetes.io/unreachable"),
            "{pod}"
        );

        // A rolling update through a new ControllerRevision.
        c.ok(&[
            "-n",
            "kube-system",
            "set",
            "image",
            "ds/agent",
            "app=busybox:2",
        ]);
        let out = c.ok(&[
            "-n",
            "kube-system",
            "rollout",
            "status",
            "ds/agent",
            "--timeout=60s",
        ]);
        assert!(out.contains("successfully rolled out"), "{out}");
        wait_for(
            c,
            &[
                "-n",
                "kube-system",
                "get",
                "pods",
                "-l",
                "app=agent",
                "-o",
                "jsonpath={range .items[*]}{.spec.containers[0].image} {end}",
            ],
            "new pods",
            |s| lines(s) == ["busybox:2"; 3],
        );
        let revs = c.ok(&[
            "-n",
            "kube-system",
            "get",
            "controllerrevisions",
            "-o",
            "jsonpath={range .items[*]}{.revision} {end}",
        ]);
        let mut revs = lines(&revs);
        revs.sort();
        assert_eq!(revs, ["1", "2"]);
        // And back.
        c.ok(&["-n", "kube-system", "rollout", "undo", "ds/agent"]);
        c.ok(&[
            "-n",
            "kube-system",
            "rollout",
            "status",
            "ds/agent",
            "--timeout=60s",
        ]);
        wait_for(
            c,
            &[
                "-n",
                "kube-system",
                "get",
                "pods",
                "-l",
                "app=agent",
                "-o",
                "jsonpath={range .items[*]}{.spec.containers[0].image} {end}",
            ],
            "old image back",
            |s| lines(s) == ["busybox:1"; 3],
        );

        // A node that starts matching gets a pod.
        c.ok(&[
            "label",
            "node",
            "nuc-1",
            "kedge.io/profile=rpi-4-2gb",
            "--overwrite",
        ]);
        wait_for(
            c,
            &[
                "-n",
                "kube-system",
                "get",
                "pods",
                "-l",
                "app=agent",
                "--field-selector",
                "spec.nodeName=nuc-1",
                "-o",
                "name",
            ],
            "pod on the relabelled node",
            |s| s.lines().count() == 1,
        );
    });
}

const JOB: &str = r#"
apiVersion: batch/v1
kind: Job
metadata: {name: pi, namespace: default}
spec:
  completions: 3
  parallelism: 2
  template:
    metadata: {annotations: {sim.kedge.io/exit-code: "0"}}
    spec:
      restartPolicy: Never
      containers: [{name: pi, image: "busybox:1"}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: fails, namespace: default}
spec:
  backoffLimit: 1
  template:
    metadata: {annotations: {sim.kedge.io/exit-code: "2"}}
    spec:
      restartPolicy: Never
      containers: [{name: f, image: "busybox:1"}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_complete_or_fail() {
    let cluster = Cluster::sqlite();
    let client = client(&cluster).await;
    let _kubelets = start_kubelets(&cluster, &client, &[("edge-a", json!({}))]).await;
    let c = &cluster;
    tokio::task::block_in_place(|| {
        c.ok_stdin(&["apply", "-f", "-"], JOB);
        c.ok(&[
            "wait",
            "--for=condition=complete",
            "job/pi",
            "--timeout=60s",
        ]);
        let status = c.ok(&["get", "job", "pi", "-o", "jsonpath={.status.succeeded} {.status.active} {.status.startTime} {.status.completionTime}"]);
        let f = lines(&status);
        assert_eq!(&f[..2], ["3", "0"], "{status}");
        assert_eq!(f.len(), 4, "{status}");
        let pods = c.ok(&[
            "get",
            "pods",
            "-l",
            "batch.kubernetes.io/job-name=pi",
            "-o",
            "name",
        ]);
        assert_eq!(pods.lines().count(), 3, "{pods}");

        c.ok(&[
            "wait",
            "--for=condition=failed",
            "job/fails",
            "--timeout=60s",
        ]);
        let status = c.ok(&[
            "get",
            "job",
            "fails",
            "-o",
            "jsonpath={.status.failed} {.status.conditions[?(@.type==\"Failed\")].reason}",
        ]);
        assert_eq!(status, "2 BackoffLimitExceeded");
    });
}

const STATEFULSET: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: default}
spec:
  replicas: 3
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: app, image: "busybox:1"}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_comes_up_in_order_and_rolls_back_down() {
    let cluster = Cluster::sqlite();
    let client = client(&cluster).await;
    let _kubelets = start_kubelets(&cluster, &client, &[("edge-a", json!({}))]).await;
    let c = &cluster;
    tokio::task::block_in_place(|| {
        c.ok_stdin(&["apply", "-f", "-"], STATEFULSET);
        // (The apiserver defaults partition to 0, so kubectl reports a
        // "partitioned roll out", as it does against upstream.)
        let out = c.ok(&["rollout", "status", "sts/db", "--timeout=60s"]);
        assert!(out.contains("roll out complete: 3 new pods"), "{out}");
        // Stable names and identity; each pod made only after the one
        // before it was Ready.
        let pods = c.ok(&["get", "pods", "-l", "app=db", "-o", "jsonpath={range .items[*]}{.metadata.name},{.spec.hostname},{.spec.subdomain},{.metadata.labels.statefulset\\.kubernetes\\.io/pod-name},{.metadata.labels.apps\\.kubernetes\\.io/pod-index},{.metadata.creationTimestamp},{.status.conditions[?(@.type==\"Ready\")].lastTransitionTime} {end}"]);
        let mut rows: Vec<Vec<String>> = lines(&pods)
            .iter()
            .map(|l| l.split(',').map(str::to_string).collect())
            .collect();
        rows.sort();
        assert_eq!(rows.len(), 3, "{pods}");
        for (i, r) in rows.iter().enumerate() {
            let name = format!("db-{i}");
            assert_eq!(
                r[..5],
                [
                    name.clone(),
                    name.clone(),
                    "db".to_string(),
                    name,
                    i.to_string()
                ],
                "{pods}"
            );
            if i > 0 {
                let prev_ready: k8s_openapi::jiff::Timestamp = rows[i - 1][6].parse().unwrap();
                let created: k8s_openapi::jiff::Timestamp = r[5].parse().unwrap();
                assert!(
                    created >= prev_ready,
                    "db-{i} made before db-{} was ready: {pods}",
                    i - 1
                );
            }
        }
        let status = c.ok(&["get", "sts", "db", "-o", "jsonpath={.status.replicas} {.status.readyReplicas} {.status.currentReplicas} {.status.updatedReplicas}"]);
        assert_eq!(status, "3 3 3 3");

        // A rolling update replaces the pods, highest ordinal first.
        c.ok(&["set", "image", "sts/db", "app=busybox:2"]);
        let out = c.ok(&["rollout", "status", "sts/db", "--timeout=90s"]);
        assert!(out.contains("roll out complete: 3 new pods"), "{out}");
        wait_for(
            c,
            &[
                "get",
                "pods",
                "-l",
                "app=db",
                "-o",
                "jsonpath={range .items[*]}{.spec.containers[0].image} {end}",
            ],
            "new pods",
            |s| lines(s) == ["busybox:2"; 3],
        );
        let events = c.ok(&[
            "get",
            "events",
            "--sort-by=.lastTimestamp",
            "-o",
            "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}",
        ]);
        let deletes: Vec<&str> = events
            .lines()
            .filter(|l| l.starts_with("delete Pod"))
            .collect();
        assert_eq!(
            deletes.first().copied(),
            Some("delete Pod db-2 in StatefulSet db successful"),
            "{events}"
        );
        wait_for(
            c,
            &[
                "get",
                "sts",
                "db",
                "-o",
                "jsonpath={.status.currentRevision} {.status.updateRevision} {.status.readyReplicas}",
            ],
            "current revision is the update revision",
            |s| {
                let f = lines(s);
                f.len() == 3 && f[0] == f[1] && f[2] == "3"
            },
        );

        // Scale down from the highest ordinal.
        c.ok(&["scale", "sts/db", "--replicas=1"]);
        wait_for(
            c,
            &[
                "get",
                "pods",
                "-l",
                "app=db",
                "-o",
                "jsonpath={range .items[*]}{.metadata.name} {end}",
            ],
            "db-0 left",
            |s| lines(s) == ["db-0"],
        );
    });
}

const CRONJOB: &str = r#"
apiVersion: batch/v1
kind: CronJob
metadata: {name: tick, namespace: default}
spec:
  schedule: "* * * * *"
  successfulJobsHistoryLimit: 1
  jobTemplate:
    spec:
      template:
        metadata: {annotations: {sim.kedge.io/exit-code: "0"}}
        spec:
          restartPolicy: Never
          containers: [{name: tick, image: "busybox:1"}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cronjob_makes_jobs_on_schedule() {
    let cluster = Cluster::sqlite();
    let client = client(&cluster).await;
    let _kubelets = start_kubelets(&cluster, &client, &[("edge-a", json!({}))]).await;
    let c = &cluster;
    tokio::task::block_in_place(|| {
        c.ok_stdin(&["apply", "-f", "-"], CRONJOB);
        // Within the next minute a Job named after the scheduled minute.
        let deadline = Instant::now() + Duration::from_secs(90);
        let jobs = loop {
            let jobs = c.ok(&["get", "jobs", "-o", "jsonpath={range .items[*]}{.metadata.name} {.metadata.ownerReferences[0].kind} {.metadata.annotations.batch\\.kubernetes\\.io/cronjob-scheduled-timestamp}{\"\\n\"}{end}"]);
            if !jobs.trim().is_empty() {
                break jobs;
            }
            assert!(Instant::now() < deadline, "no Job from the CronJob");
            std::thread::sleep(Duration::from_millis(500));
        };
        let f: Vec<&str> = jobs.lines().next().unwrap().split(' ').collect();
        let scheduled: k8s_openapi::jiff::Timestamp = f[2].parse().unwrap();
        assert_eq!(
            f[0],
            format!("tick-{}", scheduled.as_second() / 60),
            "{jobs}"
        );
        assert_eq!(f[1], "CronJob");
        c.ok(&[
            "wait",
            "--for=condition=complete",
            &format!("job/{}", f[0]),
            "--timeout=60s",
        ]);
        wait_for(
            c,
            &[
                "get",
                "cronjob",
                "tick",
                "-o",
                "jsonpath={.status.lastScheduleTime} {.status.lastSuccessfulTime}",
            ],
            "last times",
            |s| lines(s).len() == 2,
        );
    });
}
