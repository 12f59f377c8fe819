//! The real kubectl v1.32 against the real `kedge server`.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use common::Cluster;

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.25
        ports:
        - containerPort: 80
        env:
        - {name: A, value: "1"}
        - {name: B, value: "2"}
"#;

#[test]
fn discovery_version_and_cluster_info() {
    let c = Cluster::sqlite();
    let info = c.ok(&["cluster-info"]);
    assert!(info.contains("is running at https://127.0.0.1:"), "{info}");
    let version = c.ok(&["version", "-o", "json"]);
    assert!(
        version.contains("\"gitVersion\": \"v1.32.0+kedge"),
        "{version}"
    );
    let resources = c.ok(&["api-resources"]);
    for want in [
        "pods",
        "deployments",
        "leases",
        "endpointslices",
        "cronjobs",
        "namespaces",
    ] {
        assert!(
            resources.lines().any(|l| l.starts_with(want)),
            "{want} missing:\n{resources}"
        );
    }
    assert!(
        resources
            .lines()
            .any(|l| l.starts_with("deployments") && l.contains("deploy") && l.contains("apps/v1"))
    );
    // explain reads the OpenAPI v3 documents.
    let explain = c.ok(&["explain", "deployment.spec.strategy"]);
    assert!(explain.contains("GROUP:      apps"), "{explain}");
    assert!(explain.contains("rollingUpdate"), "{explain}");
    let explain = c.ok(&["explain", "pods.spec.containers.resources", "--recursive"]);
    assert!(explain.contains("limits"), "{explain}");
    let err = c.fails(&["explain", "pods.spec.nosuchfield"]);
    assert!(
        err.contains("field \"nosuchfield\" does not exist"),
        "{err}"
    );
    let ns = c.ok(&["get", "namespaces", "-o", "name"]);
    for want in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(ns.contains(&format!("namespace/{want}")), "{ns}");
    }
}

#[test]
fn anonymous_requests_get_401_and_tokens_authenticate() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(
        &tokens,
        "s3cret-admin,alice,1001,\"system:masters\"\ns3cret-user,bob,1002\n",
    )
    .unwrap();
    let mut cmd = common::kedge(dir.path(), "");
    cmd.arg("--token-auth-file").arg(&tokens);
    let (child, _log) = common::start_until(cmd, "Kubernetes API ready");
    let kubeconfig = dir.path().join("kubeconfig.yaml");
    let server = String::from_utf8(
        std::process::Command::new(common::KUBECTL)
            .args([
                "config",
                "view",
                "-o",
                "jsonpath={.clusters[0].cluster.server}",
            ])
            .env("KUBECONFIG", &kubeconfig)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let ca = dir.path().join("server/tls/server-ca.crt");
    let kubectl_as = |token: &str, args: &[&str]| {
        std::process::Command::new(common::KUBECTL)
            .arg("--server")
            .arg(&server)
            .arg("--certificate-authority")
            .arg(&ca)
            .arg("--token")
            .arg(token)
            .env("KUBECONFIG", "/dev/null")
            .env("HOME", dir.path())
            .args(args)
            .output()
            .unwrap()
    };
    // kubectl without credentials prompts for them, so ask with curl.
    let anon = std::process::Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(&ca)
        .arg(format!("{server}/api/v1/namespaces"))
        .output()
        .expect("curl is installed by scripts/setup.sh");
    let body = String::from_utf8_lossy(&anon.stdout);
    assert!(
        body.contains("\"code\":401") && body.contains("Unauthorized"),
        "{body}"
    );
    let bad = kubectl_as("wrong", &["get", "--raw", "/healthz"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("Unauthorized"));
    let admin = kubectl_as("s3cret-admin", &["get", "namespaces", "-o", "name"]);
    assert!(
        admin.status.success(),
        "{}",
        String::from_utf8_lossy(&admin.stderr)
    );
    let user = kubectl_as("s3cret-user", &["get", "pods", "-n", "default"]);
    let err = String::from_utf8_lossy(&user.stderr);
    assert!(
        err.contains("User \"bob\" cannot list resource \"pods\""),
        "{err}"
    );
    let user_version = kubectl_as("s3cret-user", &["get", "--raw", "/version"]);
    assert!(
        user_version.status.success(),
        "discovery is open to every authenticated user"
    );
    // Everyone may ask who they are and what they may do.
    let stdout = |o: std::process::Output| String::from_utf8_lossy(&o.stdout).trim().to_string();
    let whoami = stdout(kubectl_as(
        "s3cret-user",
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username} {.status.userInfo.groups}",
        ],
    ));
    assert_eq!(whoami, r#"bob ["system:authenticated"]"#);
    let whoami = stdout(kubectl_as(
        "s3cret-admin",
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
    ));
    assert_eq!(whoami, "alice");
    assert_eq!(
        stdout(kubectl_as(
            "s3cret-user",
            &["auth", "can-i", "create", "pods"]
        )),
        "no"
    );
    assert_eq!(
        stdout(kubectl_as(
            "s3cret-user",
            &["auth", "can-i", "get", "/version"]
        )),
        "yes"
    );
    assert_eq!(
        stdout(kubectl_as(
            "s3cret-user",
            &["auth", "can-i", "get", "/metrics"]
        )),
        "no"
    );
    assert_eq!(
        stdout(kubectl_as(
            "s3cret-admin",
            &["auth", "can-i", "delete", "nodes"]
        )),
        "yes"
    );
    common::stop(child);
}

#[test]
fn create_get_apply_patch_replace_delete() {
    let c = Cluster::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "deploy.yaml", DEPLOYMENT);
    assert!(
        c.ok(&["create", "-f", &file])
            .contains("deployment.apps/web created")
    );
    assert!(c.fails(&["create", "-f", &file]).contains("AlreadyExists"));
    // Apply over a created object, then again: unchanged.
    c.ok(&["apply", "-f", &file]);
    assert!(
        c.ok(&["apply", "-f", &file])
            .contains("deployment.apps/web unchanged")
    );
    // Apply with a field removed: the env var goes away, merged by name.
    let trimmed = DEPLOYMENT.replace("        - {name: B, value: \"2\"}\n", "");
    let file2 = write(dir.path(), "deploy2.yaml", &trimmed);
    let diff = c.kubectl(&["diff", "-f", &file2]);
    assert_eq!(
        diff.status.code(),
        Some(1),
        "kubectl diff exits 1 when there are differences"
    );
    let diff = String::from_utf8_lossy(&diff.stdout);
    assert!(
        diff.contains("-        - name: B") || diff.contains("-        name: B"),
        "{diff}"
    );
    assert!(c.ok(&["apply", "-f", &file2]).contains("configured"));
    let env = c.ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].env[*].name}",
    ]);
    assert_eq!(env, "A");
    // Server-side defaults are visible.
    let strategy = c.ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.strategy.type} {.spec.revisionHistoryLimit} {.metadata.generation}",
    ]);
    assert_eq!(strategy, "RollingUpdate 10 2");
    // Output formats.
    let json = c.ok(&["get", "deploy", "web", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["kind"], "Deployment");
    assert!(
        v["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<i64>()
            .unwrap()
            > 0
    );
    assert!(
        c.ok(&["get", "deploy", "web", "-o", "yaml"])
            .contains("kind: Deployment")
    );
    let wide = c.ok(&["get", "deploy", "-o", "wide"]);
    assert!(
        wide.contains("READY") && wide.contains("IMAGES") && wide.contains("nginx:1.25"),
        "{wide}"
    );
    // Labels and annotations.
    c.ok(&["label", "deploy", "web", "tier=front"]);
    c.ok(&["annotate", "deploy", "web", "owner=me"]);
    assert_eq!(
        c.ok(&["get", "deploy", "-l", "tier=front", "-o", "name"])
            .trim(),
        "deployment.apps/web"
    );
    assert_eq!(
        c.ok(&["get", "deploy", "-l", "tier!=front", "-o", "name"])
            .trim(),
        ""
    );
    // All three patch types.
    c.ok(&[
        "patch",
        "deploy",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":3}]"#,
    ]);
    c.ok(&[
        "patch",
        "deploy",
        "web",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"m":"1"}}}"#,
    ]);
    c.ok(&[
        "patch",
        "deploy",
        "web",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:1.26"}]}}}}"#,
    ]);
    let state = c.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas} {.metadata.labels.m} {.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].env[0].name}"]);
    assert_eq!(state, "3 1 nginx:1.26 A");
    // Replace, describe, scale, delete.
    let current = c.ok(&["get", "deploy", "web", "-o", "yaml"]);
    let replaced = current.replace("nginx:1.26", "nginx:1.27");
    c.ok_stdin(&["replace", "-f", "-"], &replaced);
    // A stale resourceVersion conflicts.
    let err = c
        .kubectl_cmd(&["replace", "-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map(|mut ch| {
            ch.stdin
                .take()
                .unwrap()
                .write_all(replaced.as_bytes())
                .unwrap();
            ch.wait_with_output().unwrap()
        })
        .unwrap();
    assert!(
        String::from_utf8_lossy(&err.stderr).contains("the object has been modified"),
        "{}",
        String::from_utf8_lossy(&err.stderr)
    );
    assert!(c.ok(&["describe", "deploy", "web"]).contains("nginx:1.27"));
    c.ok(&["scale", "deploy", "web", "--replicas=5"]);
    let scale = c.ok(&[
        "get",
        "--raw",
        "/apis/apps/v1/namespaces/default/deployments/web/scale",
    ]);
    let scale: serde_json::Value = serde_json::from_str(&scale).unwrap();
    assert_eq!(scale["spec"]["replicas"], 5);
    assert_eq!(scale["status"]["selector"], "app=web");
    assert!(c.ok(&["delete", "deploy", "web"]).contains("deleted"));
    assert!(c.fails(&["get", "deploy", "web"]).contains("NotFound"));
}

#[test]
fn edit_through_kube_editor() {
    let c = Cluster::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {color: red}\n",
    );
    c.ok(&["apply", "-f", &file]);
    let out = c
        .kubectl_cmd(&["edit", "configmap", "settings"])
        .env("KUBE_EDITOR", "sed -i s/red/blue/")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        c.ok(&["get", "cm", "settings", "-o", "jsonpath={.data.color}"]),
        "blue"
    );
}

#[test]
fn get_watch_sees_a_concurrent_change() {
    let c = Cluster::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: watched}\ndata: {v: \"1\"}\n",
    );
    c.ok(&["apply", "-f", &file]);
    let mut watcher = c
        .kubectl_cmd(&[
            "get",
            "configmaps",
            "-w",
            "-o",
            "jsonpath={.metadata.name}={.data.v}{\"\\n\"}",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    c.ok(&[
        "patch",
        "cm",
        "watched",
        "--type=merge",
        "-p",
        r#"{"data":{"v":"2"}}"#,
    ]);
    c.ok(&["delete", "cm", "watched"]);
    std::thread::sleep(Duration::from_secs(1));
    let _ = watcher.kill();
    let out = watcher.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("watched=1"), "initial state missing: {text}");
    assert!(
        text.contains("watched=2"),
        "the change was not seen: {text}"
    );
}

#[test]
fn bad_input_gets_upstream_status_codes_and_writes_nothing() {
    let c = Cluster::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let raw = |file: &str| {
        c.kubectl(&[
            "create",
            "--raw",
            "/api/v1/namespaces/default/configmaps",
            "-f",
            file,
        ])
    };
    let malformed = write(
        dir.path(),
        "bad.json",
        "{\"apiVersion\": \"v1\", \"kind\": ",
    );
    let err = String::from_utf8_lossy(&raw(&malformed).stderr).into_owned();
    assert!(
        err.contains("BadRequest") || err.contains("json parse error"),
        "{err}"
    );
    let wrong_version = write(
        dir.path(),
        "wrong.json",
        r#"{"apiVersion":"apps/v1","kind":"ConfigMap","metadata":{"name":"x"}}"#,
    );
    let err = String::from_utf8_lossy(&raw(&wrong_version).stderr).into_owned();
    assert!(
        err.contains("does not match the expected API version"),
        "{err}"
    );
    let bad_name = write(
        dir.path(),
        "name.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Bad_Name}\n",
    );
    let err = c.fails(&["create", "-f", &bad_name]);
    assert!(
        err.contains("is invalid") && err.contains("metadata.name"),
        "{err}"
    );
    let unknown = write(
        dir.path(),
        "unknown.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: u}\nbogus: 1\n",
    );
    let err = c.fails(&["create", "-f", &unknown]);
    assert!(err.contains("unknown field \"bogus\""), "{err}");
    let big = format!(
        "{{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{{\"name\":\"big\"}},\"data\":{{\"x\":\"{}\"}}}}",
        "a".repeat(3 * 1024 * 1024)
    );
    let big = write(dir.path(), "big.json", &big);
    let err = String::from_utf8_lossy(&raw(&big).stderr).into_owned();
    assert!(
        err.contains("Request entity too large") || err.contains("413"),
        "{err}"
    );
    // Nothing was written.
    assert_eq!(c.ok(&["get", "configmaps", "-o", "name"]).trim(), "");
}

#[test]
fn namespaces_empty_before_they_go() {
    let c = Cluster::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let ns = write(
        dir.path(),
        "ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: team}\n",
    );
    c.ok(&["apply", "-f", &ns]);
    let file = write(
        dir.path(),
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: team}\n",
    );
    c.ok(&["apply", "-f", &file]);
    let held = write(
        dir.path(),
        "held.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: held, namespace: team, finalizers: [example.com/hold]}\n",
    );
    c.ok(&["apply", "-f", &held]);
    let missing = write(
        dir.path(),
        "missing.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: nowhere}\n",
    );
    assert!(
        c.fails(&["apply", "-f", &missing])
            .contains("namespaces \"nowhere\" not found")
    );
    c.ok(&["delete", "namespace", "team", "--wait=false"]);
    // The finalizer holds one object, so the namespace stays Terminating
    // and takes nothing new.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        c.ok(&["get", "namespace", "team", "-o", "jsonpath={.status.phase}"]),
        "Terminating"
    );
    assert!(
        c.fails(&["get", "cm", "a", "-n", "team"])
            .contains("NotFound")
    );
    let deleting = c.ok(&[
        "get",
        "cm",
        "held",
        "-n",
        "team",
        "-o",
        "jsonpath={.metadata.deletionTimestamp}",
    ]);
    assert!(
        !deleting.is_empty(),
        "the held object is marked for deletion"
    );
    let late = write(
        dir.path(),
        "late.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: late, namespace: team}\n",
    );
    let err = c.fails(&["create", "-f", &late]);
    assert!(err.contains("because it is being terminated"), "{err}");
    // Releasing the finalizer lets the object, then the namespace, go.
    c.ok(&[
        "patch",
        "cm",
        "held",
        "-n",
        "team",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    c.ok(&["wait", "--for=delete", "namespace/team", "--timeout=30s"]);
    assert!(c.fails(&["get", "namespace", "team"]).contains("NotFound"));
}

#[test]
fn resource_versions_exact_reads_and_410_after_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = common::kedge(dir.path(), "");
    cmd.args([
        "--datastore-compact-interval",
        "1s",
        "--datastore-compact-retain",
        "2",
    ]);
    let (child, _log) = common::start_until(cmd, "Kubernetes API ready");
    let kubeconfig = dir.path().join("kubeconfig.yaml");
    let home = tempfile::tempdir().unwrap();
    let kubectl = |args: &[&str]| {
        std::process::Command::new(common::KUBECTL)
            .args(args)
            .env("KUBECONFIG", &kubeconfig)
            .env("HOME", home.path())
            .output()
            .unwrap()
    };
    let cm = write(
        dir.path(),
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: rv}\ndata: {v: \"1\"}\n",
    );
    assert!(kubectl(&["apply", "-f", &cm]).status.success());
    let first = String::from_utf8(
        kubectl(&[
            "get",
            "cm",
            "rv",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
        .stdout,
    )
    .unwrap();
    // An exact list at that revision sees the state as it was then.
    for v in 2..6 {
        let out = kubectl(&[
            "patch",
            "cm",
            "rv",
            "--type=merge",
            "-p",
            &format!(r#"{{"data":{{"v":"{v}"}}}}"#),
        ]);
        assert!(out.status.success());
    }
    // Compaction (every second, keeping 2 revisions) drops revision `first`.
    std::thread::sleep(Duration::from_millis(2500));
    let list = kubectl(&[
        "get",
        "--raw",
        &format!(
            "/api/v1/namespaces/default/configmaps?resourceVersion={first}&resourceVersionMatch=Exact"
        ),
    ]);
    let err = String::from_utf8_lossy(&list.stderr);
    assert!(
        err.contains("Expired") || err.contains("too old"),
        "an exact list at a compacted revision is 410: {err}"
    );
    // The watch cache still holds those events in memory, as upstream's
    // does, so a watch from there is served. After a restart the cache
    // starts empty, and a watch from a compacted revision gets 410.
    common::stop(child);
    let mut cmd = common::kedge(dir.path(), "");
    cmd.args([
        "--datastore-compact-interval",
        "1s",
        "--datastore-compact-retain",
        "2",
    ]);
    let (child, _log) = common::start_until(cmd, "Kubernetes API ready");
    let watch = kubectl(&[
        "get",
        "--raw",
        &format!(
            "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={first}&timeoutSeconds=2"
        ),
    ]);
    let body = String::from_utf8_lossy(&watch.stdout);
    assert!(
        body.contains("\"type\":\"ERROR\"") && body.contains("\"code\":410"),
        "a watch from a compacted revision gets 410: {body}"
    );
    // A watch from a live revision streams the changes after it.
    let now = String::from_utf8(
        kubectl(&[
            "get",
            "cm",
            "rv",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
        .stdout,
    )
    .unwrap();
    let list_now = kubectl(&[
        "get",
        "--raw",
        &format!(
            "/api/v1/namespaces/default/configmaps?resourceVersion={now}&resourceVersionMatch=Exact"
        ),
    ]);
    assert!(String::from_utf8_lossy(&list_now.stdout).contains("\"v\":\"5\""));
    common::stop(child);
}

/// `kubectl create <kind>` sends protobuf bodies; they decode to the same
/// objects JSON would give. A corrupt protobuf body is a 400 and writes
/// nothing; YAML bodies work as upstream.
#[test]
fn kubectl_create_subcommands_send_protobuf() {
    let c = Cluster::sqlite();
    c.ok(&["create", "namespace", "pb"]);
    c.ok(&[
        "create",
        "configmap",
        "cm",
        "-n",
        "pb",
        "--from-literal=k=v",
    ]);
    c.ok(&[
        "create",
        "secret",
        "generic",
        "s",
        "-n",
        "pb",
        "--from-literal=p=q",
    ]);
    c.ok(&[
        "create",
        "deployment",
        "d",
        "-n",
        "pb",
        "--image=busybox",
        "--replicas=3",
        "--port=8080",
    ]);
    c.ok(&[
        "create",
        "service",
        "clusterip",
        "svc",
        "-n",
        "pb",
        "--tcp=80:8080",
    ]);
    c.ok(&["create", "job", "j", "-n", "pb", "--image=busybox"]);
    c.ok(&[
        "create",
        "cronjob",
        "cj",
        "-n",
        "pb",
        "--image=busybox",
        "--schedule=*/5 * * * *",
    ]);
    c.ok(&["create", "serviceaccount", "sa", "-n", "pb"]);

    let get = |what: &str, path: &str| {
        c.ok(&["get", what, "-n", "pb", "-o", &format!("jsonpath={path}")])
    };
    assert_eq!(get("configmap/cm", "{.data.k}"), "v");
    assert_eq!(get("secret/s", "{.data.p}"), "cQ==");
    assert_eq!(get("deployment/d", "{.spec.replicas}"), "3");
    assert_eq!(
        get(
            "deployment/d",
            "{.spec.template.spec.containers[0].ports[0].containerPort}"
        ),
        "8080"
    );
    // Defaults applied to the decoded object, as for JSON.
    assert_eq!(
        get("deployment/d", "{.spec.strategy.type}"),
        "RollingUpdate"
    );
    assert_eq!(get("service/svc", "{.spec.ports[0].targetPort}"), "8080");
    assert_eq!(get("cronjob/cj", "{.spec.schedule}"), "*/5 * * * *");
    assert_eq!(get("job/j", "{.spec.template.spec.restartPolicy}"), "Never");

    let url = c.server_url();
    let configmaps = format!("{url}/api/v1/namespaces/pb/configmaps");
    let post = |content_type: &str, data: &str| {
        c.curl_admin(&[
            "-X",
            "POST",
            "-H",
            &format!("Content-Type: {content_type}"),
            "--data-binary",
            data,
            &configmaps,
        ])
    };
    // A tampered body: the object's length runs past the end.
    let dir = tempfile::tempdir().unwrap();
    let tampered = dir.path().join("tampered.pb");
    std::fs::write(
        &tampered,
        b"k8s\x00\x0a\x0f\x0a\x02v1\x12\x09ConfigMap\x12\x7f\x0a",
    )
    .unwrap();
    let (code, body) = post(
        "application/vnd.kubernetes.protobuf",
        &format!("@{}", tampered.display()),
    );
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("protobuf body could not be decoded"),
        "{body}"
    );
    // Not protobuf at all.
    let (code, body) = post("application/vnd.kubernetes.protobuf", "{}");
    assert_eq!(code, 400, "{body}");
    // An unknown media type is a 415.
    let (code, body) = post("text/plain", "x");
    assert_eq!(code, 415, "{body}");
    assert_eq!(
        c.ok(&["get", "configmaps", "-n", "pb", "-o", "name"])
            .trim(),
        "configmap/cm"
    );

    // Malformed YAML is a 400, as malformed JSON is.
    let (code, body) = post(
        "application/yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [y\n",
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("yaml parse error"), "{body}");
    // YAML bodies, as curl users send them.
    let (code, body) = post(
        "application/yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: y}\ndata: {a: \"1\"}\n",
    );
    assert_eq!(code, 201, "{body}");
    assert_eq!(get("configmap/y", "{.data.a}"), "1");
}

/// core/v1 and events.k8s.io/v1 Events are two views of one set of objects,
/// converted field by field as upstream converts them, in reads, writes and
/// watches.
#[test]
fn events_are_served_by_both_event_apis() {
    let c = Cluster::sqlite();
    c.ok_stdin(
        &["create", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "core-event", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web-1", "namespace": "default"},
            "reason": "Pulled", "message": "pulled the image", "type": "Normal",
            "source": {"component": "kubelet", "host": "node-1"}, "count": 2,
            "firstTimestamp": "2026-11-22T00:00:00Z", "lastTimestamp": "2026-11-22T00:00:05Z"}"#,
    );
    c.ok_stdin(
        &["create", "-f", "-"],
        r#"{"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "new-event", "namespace": "default"},
            "eventTime": "2026-11-22T00:00:00.000000Z",
            "regarding": {"kind": "Node", "name": "node-2"},
            "reason": "Starting", "note": "agent started", "type": "Normal",
            "action": "Start", "reportingController": "kedge.io/agent",
            "reportingInstance": "node-2"}"#,
    );
    let new_api = "events.v1.events.k8s.io";
    let get = |resource: &str, name: &str, path: &str| {
        c.ok(&["get", resource, name, "-o", &format!("jsonpath={path}")])
    };
    // The core event through events.k8s.io.
    assert_eq!(
        get(new_api, "core-event", "{.apiVersion}"),
        "events.k8s.io/v1"
    );
    assert_eq!(get(new_api, "core-event", "{.note}"), "pulled the image");
    assert_eq!(get(new_api, "core-event", "{.regarding.name}"), "web-1");
    assert_eq!(get(new_api, "core-event", "{.deprecatedCount}"), "2");
    assert_eq!(
        get(new_api, "core-event", "{.deprecatedSource.host}"),
        "node-1"
    );
    assert_eq!(get(new_api, "core-event", "{.message}"), "");
    // The new event through core/v1.
    assert_eq!(get("events", "new-event", "{.apiVersion}"), "v1");
    assert_eq!(get("events", "new-event", "{.message}"), "agent started");
    assert_eq!(
        get("events", "new-event", "{.involvedObject.name}"),
        "node-2"
    );
    assert_eq!(
        get("events", "new-event", "{.reportingComponent}"),
        "kedge.io/agent"
    );
    // Both lists hold both.
    assert_eq!(
        c.ok(&["get", new_api, "-o", "name"]).lines().count(),
        2,
        "events.k8s.io lists every event"
    );
    // A write through one API is seen through the other; events.k8s.io
    // keeps the note immutable, as upstream does.
    c.ok(&[
        "patch",
        "events",
        "core-event",
        "--type=merge",
        "-p",
        r#"{"message":"pulled again"}"#,
    ]);
    assert_eq!(get(new_api, "core-event", "{.note}"), "pulled again");
    let err = c.fails(&[
        "patch",
        new_api,
        "core-event",
        "--type=merge",
        "-p",
        r#"{"note":"x"}"#,
    ]);
    assert!(err.contains("field is immutable"), "{err}");
    c.ok(&[
        "patch",
        new_api,
        "new-event",
        "--type=merge",
        "-p",
        r#"{"series":{"count":2,"lastObservedTime":"2026-11-22T00:01:00.000000Z"}}"#,
    ]);
    assert_eq!(get("events", "new-event", "{.series.count}"), "2");
    // A watch through events.k8s.io sees a core write in its own shape.
    let (mut watch, rx) = c.kubectl_lines(&[
        "get",
        new_api,
        "--watch-only",
        "-o",
        "jsonpath={.note}{\"\\n\"}",
    ]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    // Each round writes a new value: the watch may start after the first.
    for round in 0.. {
        if seen
            .iter()
            .any(|l: &String| l.starts_with("seen by the watch"))
        {
            break;
        }
        c.ok(&[
            "patch",
            "events",
            "core-event",
            "--type=merge",
            "-p",
            &format!(r#"{{"message":"seen by the watch {round}"}}"#),
        ]);
        if let Ok(line) = rx.recv_timeout(Duration::from_secs(2)) {
            seen.push(line);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the watch saw only {seen:?}"
        );
    }
    let _ = watch.kill();
    let _ = watch.wait();
}

/// DeleteOptions from the query (with upstream's loose booleans) and from
/// the body: propagation leaves a finalizer for the garbage collector, and
/// a failed precondition deletes nothing.
#[test]
fn delete_options_from_query_and_body() {
    // The finalizers are the point here; the garbage collector would act on them.
    let c = Cluster::sqlite_without_controllers();
    for name in ["orphaned", "foreground", "kept"] {
        c.ok(&["create", "configmap", name]);
    }
    let url = format!("{}/api/v1/namespaces/default/configmaps", c.server_url());
    let (code, body) = c.curl_admin(&[
        "-X",
        "DELETE",
        &format!("{url}/orphaned?orphanDependents=True"),
    ]);
    assert_eq!(code, 200, "{body}");
    let finalizers =
        |name: &str| c.ok(&["get", "cm", name, "-o", "jsonpath={.metadata.finalizers}"]);
    assert_eq!(finalizers("orphaned"), r#"["orphan"]"#);
    let (code, body) = c.curl_admin(&[
        "-X",
        "DELETE",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        r#"{"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Foreground"}"#,
        &format!("{url}/foreground"),
    ]);
    assert_eq!(code, 200, "{body}");
    assert_eq!(finalizers("foreground"), r#"["foregroundDeletion"]"#);
    let (code, body) = c.curl_admin(&[
        "-X",
        "DELETE",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        r#"{"kind":"DeleteOptions","apiVersion":"v1","preconditions":{"uid":"not-its-uid"}}"#,
        &format!("{url}/kept"),
    ]);
    assert_eq!(code, 409, "{body}");
    assert!(
        body.contains("Precondition failed: UID in precondition"),
        "{body}"
    );
    assert_eq!(
        c.ok(&[
            "get",
            "cm",
            "kept",
            "-o",
            "jsonpath={.metadata.deletionTimestamp}"
        ]),
        ""
    );
}
