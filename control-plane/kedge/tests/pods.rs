//! Pods on a real node, end to end: the real `kedge server` and `kedge-agent`, the
//! agent's own containerd with runc, the standard CNI plugins, and kubectl v1.32.
//!
//! The agent imports a busybox image (built from the host's busybox-static) from its
//! airgap directory at start, as a device without a registry would. Each test uses its
//! own cluster CIDR and bridge, so that tests running side by side do not share a
//! network. These tests need root (namespaces, mounts, cgroups) and the packages
//! scripts/setup.sh installs (containerd, runc, containernetworking-plugins,
//! busybox-static, util-linux).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Cluster;
use common::agent::{Agent, airgap_busybox, cluster_with_cidr, server_token, wait_ready};

/// The image the agent imports; `IfNotPresent`, as no registry can be reached.
const IMAGE: &str = "docker.io/library/busybox:kedge-e2e";

fn require_root() {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next().map(str::to_string))
        })
        .unwrap_or_default();
    assert_eq!(
        uid, "0",
        "these tests run pods for real (network namespaces, mounts, cgroups): run them as root"
    );
    for (path, package) in [
        ("/usr/bin/containerd", "containerd"),
        ("/usr/sbin/runc", "runc"),
        ("/usr/lib/cni/bridge", "containernetworking-plugins"),
        ("/bin/busybox", "busybox-static"),
    ] {
        assert!(
            Path::new(path).exists(),
            "{path} is missing: install the {package} package (scripts/setup.sh does)"
        );
    }
}

/// A cluster and one agent with a runtime, on a cluster CIDR and bridge of their own.
struct Node {
    cluster: Cluster,
    agent: Option<Agent>,
    dir: tempfile::TempDir,
    name: String,
    bridge: String,
}

impl Node {
    /// `n` keeps concurrent tests apart: cluster CIDR 10.(100+n).0.0/16, bridge kedge-e2e<n>.
    fn start(n: u8) -> Node {
        require_root();
        let cluster = cluster_with_cidr(&format!("10.{}.0.0/16", 100 + n));
        let dir = tempfile::tempdir().unwrap();
        airgap_busybox(dir.path(), IMAGE);
        let name = format!("e2e-{n}");
        let bridge = format!("kedge-e2e{n}");
        let mut node = Node {
            cluster,
            agent: None,
            dir,
            name,
            bridge,
        };
        node.start_agent();
        wait_ready(
            &node.cluster,
            &node.name,
            "the node registers Ready",
            Duration::from_secs(60),
        );
        node
    }

    fn start_agent(&mut self) {
        let token = server_token(&self.cluster);
        let mut cmd = Agent::command_with_runtime(
            &self.cluster.server_url(),
            self.dir.path(),
            &self.name,
            &token,
        );
        cmd.args([
            "--cni-bridge",
            &self.bridge,
            "--pod-log-dir",
            &self.dir.path().join("pod-logs").display().to_string(),
        ]);
        self.agent = Some(Agent::spawn(cmd));
    }

    /// SIGTERM, as systemd stops it; the pods keep running.
    fn stop_agent(&mut self) {
        if let Some(agent) = self.agent.take() {
            let (status, log) = agent.terminate(Duration::from_secs(30));
            assert!(status.success(), "kedge-agent exited with {status}:\n{log}");
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Remove every pod first, so that the agent stops its containers and frees the
        // bridge's addresses; then stop the agent (its containerd stops with it).
        let _ = self.cluster.kubectl(&[
            "delete",
            "pods,deployments",
            "--all",
            "--wait=true",
            "--timeout=60s",
        ]);
        if let Some(agent) = self.agent.take() {
            let stopped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                agent.terminate(Duration::from_secs(30))
            }));
            // A failed test shows what the agent said last.
            if let (true, Ok((_, log))) = (std::thread::panicking(), stopped) {
                let lines: Vec<&str> = log.lines().collect();
                let tail = &lines[lines.len().saturating_sub(80)..];
                eprintln!("--- the agent's last log lines:\n{}", tail.join("\n"));
            }
        }
        let _ = Command::new("ip")
            .args(["link", "delete", &self.bridge])
            .stderr(Stdio::null())
            .status();
    }
}

fn http_get(addr: &str) -> Result<String, String> {
    http_get_path(addr, "/")
}

fn http_get_path(addr: &str, path: &str) -> Result<String, String> {
    let mut s = std::net::TcpStream::connect_timeout(
        &addr.parse().map_err(|e| format!("{addr}: {e}"))?,
        Duration::from_secs(3),
    )
    .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut body = String::new();
    s.read_to_string(&mut body).map_err(|e| e.to_string())?;
    Ok(body)
}

/// The projected ServiceAccount token a `web` pod copied into its document root.
fn served_token(ip: &str, port: u16) -> String {
    let response =
        http_get_path(&format!("{ip}:{port}"), "/token").expect("the pod serves its token");
    let token = response
        .rsplit("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .trim();
    assert_eq!(token.split('.').count(), 3, "a JWT: {response:?}");
    token.to_string()
}

fn web(name: &str, replicas: u32, port: u16) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: httpd
        image: {IMAGE}
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "mkdir -p /www && echo hello from $(hostname) > /www/index.html && cp /var/run/secrets/tokens/token /www/token && echo serving && exec httpd -f -v -p {port} -h /www"]
        ports: [{{containerPort: {port}}}]
        readinessProbe:
          httpGet: {{path: /, port: {port}}}
          periodSeconds: 1
        volumeMounts: [{{name: token, mountPath: /var/run/secrets/tokens, readOnly: true}}]
      volumes:
      - name: token
        projected:
          sources: [{{serviceAccountToken: {{path: token, expirationSeconds: 3600}}}}]
"#
    )
}

#[test]
fn a_deployment_serves_and_kubectl_reaches_its_pods() {
    let node = Node::start(1);
    node.cluster.apply(&web("web", 3, 8080));
    node.cluster
        .ok(&["rollout", "status", "deployment/web", "--timeout=90s"]);
    let pods = node
        .cluster
        .jsonpath(&["pods", "-l", "app=web"], "{.items[*].metadata.name}");
    let pods: Vec<&str> = pods.split_whitespace().collect();
    assert_eq!(pods.len(), 3, "{pods:?}");
    for pod in &pods {
        let ip = node.cluster.jsonpath(&["pod", pod], "{.status.podIP}");
        assert!(ip.starts_with("10.101."), "pod {pod} has IP {ip:?}");
        let body = http_get(&format!("{ip}:8080")).expect("the pod serves on its IP");
        assert!(body.contains(&format!("hello from {pod}")), "{body}");
    }
    let pod = pods[0];

    // The projected ServiceAccount token: requested by the agent over the tunnel, bound
    // to the pod, and accepted by the API server as the pod's service account.
    let ip = node.cluster.jsonpath(&["pod", pod], "{.status.podIP}");
    let token = served_token(&ip, 8080);
    let token = token.as_str();
    // kubectl as the pod would be: the cluster's server and CA, the token, no client
    // certificate (which the API server would take first).
    let view = |path: &str| {
        node.cluster.ok(&[
            "config",
            "view",
            "--raw",
            "--minify",
            "-o",
            &format!("jsonpath={path}"),
        ])
    };
    let as_pod = node.cluster.data_dir.join("pod-kubeconfig.yaml");
    std::fs::write(
        &as_pod,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: pod\nclusters:\n- name: c\n  cluster: {{server: '{}', certificate-authority-data: '{}'}}\nusers:\n- name: pod\n  user: {{token: '{token}'}}\ncontexts:\n- name: pod\n  context: {{cluster: c, user: pod}}\n",
            view("{.clusters[0].cluster.server}"),
            view("{.clusters[0].cluster.certificate-authority-data}"),
        ),
    )
    .unwrap();
    let whoami = node.cluster.ok(&[
        "auth",
        "whoami",
        "--kubeconfig",
        as_pod.to_str().unwrap(),
        "-o",
        "jsonpath={.status.userInfo.username}",
    ]);
    assert_eq!(whoami.trim(), "system:serviceaccount:default:default");
    let claims = token.split('.').nth(1).unwrap_or_default();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, claims)
            .expect("base64url claims"),
    )
    .expect("JSON claims");
    assert_eq!(claims["kubernetes.io"]["pod"]["name"], *pod, "{claims}");
    assert_eq!(
        claims["kubernetes.io"]["node"]["name"], node.name,
        "{claims}"
    );
    let life = claims["exp"].as_i64().unwrap_or(0) - claims["iat"].as_i64().unwrap_or(0);
    assert_eq!(life, 3600, "the projection's expirationSeconds: {claims}");

    // The node's status: its images (the imported one, by tag and repo digest), and the
    // pressure conditions next to Ready.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let names = node
            .cluster
            .jsonpath(&["node", &node.name], "{.status.images[*].names}");
        if names.contains(IMAGE) && names.contains("docker.io/library/busybox@sha256:") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the node does not list its image {IMAGE}: {names:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let conditions = node.cluster.jsonpath(
        &["node", &node.name],
        "{range .status.conditions[*]}{.type}={.status} {end}",
    );
    assert_eq!(
        conditions.trim(),
        "MemoryPressure=False DiskPressure=False PIDPressure=False Ready=True"
    );
    let runtime = node.cluster.jsonpath(
        &["node", &node.name],
        "{.status.nodeInfo.containerRuntimeVersion}",
    );
    assert!(runtime.starts_with("containerd://"), "{runtime:?}");

    // exec: output, exit codes, stdin.
    let out = node.cluster.ok(&["exec", pod, "--", "sh", "-c", "echo ok"]);
    assert_eq!(out.trim(), "ok");
    let failed = node
        .cluster
        .kubectl(&["exec", pod, "--", "sh", "-c", "exit 3"]);
    assert_eq!(
        failed.status.code(),
        Some(3),
        "kubectl exec passes the exit code on"
    );
    let echoed = node
        .cluster
        .ok_stdin(&["exec", "-i", pod, "--", "cat"], "through stdin\n");
    assert_eq!(echoed, "through stdin\n");

    // exec -it, with a terminal (kubectl runs under script(1), which gives it one).
    let kubeconfig = node.cluster.kubeconfig.display().to_string();
    let script = Command::new("script")
        .args([
            "-qec",
            &format!(
                "{} --kubeconfig {kubeconfig} exec -it {pod} -- sh -c 'tty; stty size; echo ok'",
                common::KUBECTL
            ),
            "/dev/null",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run script(1) from util-linux");
    let text = String::from_utf8_lossy(&script.stdout);
    assert!(script.status.success(), "exec -it failed: {text}");
    assert!(
        text.contains("/dev/pts/"),
        "the command has a terminal: {text}"
    );
    assert!(text.contains("ok"), "{text}");

    // logs: what the container printed.
    let logs = node.cluster.ok(&["logs", pod]);
    assert!(logs.contains("serving"), "{logs}");

    // port-forward, then an HTTP GET through it.
    let mut pf = node
        .cluster
        .kubectl_cmd(&["port-forward", &format!("pod/{pod}"), ":8080"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = BufReader::new(pf.stdout.take().unwrap());
    out.read_line(&mut line).unwrap();
    // Keep reading: kubectl prints a line per connection, and dies of SIGPIPE if
    // nobody reads them.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let port = line
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("kubectl port-forward said {line:?}"))
        .to_string();
    let body = http_get(&format!("127.0.0.1:{port}"));
    let _ = pf.kill();
    let _ = pf.wait();
    let body = body.expect("a GET through port-forward");
    assert!(body.contains(&format!("hello from {pod}")), "{body}");

    // logs -f follows a container that keeps printing.
    node.cluster.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: ticker}}
spec:
  containers:
  - name: c
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 1; done"]
"#
    ));
    node.cluster.wait_pod(
        "ticker",
        "{.status.phase}",
        "ticker runs",
        Duration::from_secs(60),
        |p| p == "Running",
    );
    let (mut follow, lines) = node.cluster.kubectl_lines(&["logs", "-f", "ticker"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l == "tick 4") {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(l) => seen.push(l),
            Err(_) => panic!("logs -f stopped following; it printed {seen:?}"),
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();
    let tail = node
        .cluster
        .ok(&["logs", "ticker", "--tail=1", "--timestamps"]);
    assert!(
        tail.lines().count() == 1 && tail.contains("Z tick "),
        "{tail}"
    );
}

#[test]
fn crashing_and_unhealthy_containers_restart_and_deleted_pods_stop_in_time() {
    let node = Node::start(2);
    node.cluster.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: crash}}
spec:
  containers:
  - name: c
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo crashing; exit 1"]
---
apiVersion: v1
kind: Pod
metadata: {{name: unhealthy}}
spec:
  containers:
  - name: c
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "touch /tmp/healthy; sleep 4; rm /tmp/healthy; sleep 600"]
    livenessProbe:
      exec: {{command: ["cat", "/tmp/healthy"]}}
      periodSeconds: 1
      failureThreshold: 2
"#
    ));
    // CrashLoopBackOff, with a back-off that grows: record when the restart count moves.
    let start = Instant::now();
    let mut moves: Vec<(u32, Duration)> = Vec::new();
    let mut saw_crash_loop = false;
    while moves.last().map(|m| m.0).unwrap_or(0) < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "restarts so far: {moves:?}"
        );
        let count: u32 = node
            .cluster
            .jsonpath(
                &["pod", "crash"],
                "{.status.containerStatuses[0].restartCount}",
            )
            .parse()
            .unwrap_or(0);
        let reason = node.cluster.jsonpath(
            &["pod", "crash"],
            "{.status.containerStatuses[0].state.waiting.reason}",
        );
        saw_crash_loop |= reason == "CrashLoopBackOff";
        if count > moves.last().map(|m| m.0).unwrap_or(0) {
            moves.push((count, start.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(saw_crash_loop, "the pod showed CrashLoopBackOff");
    let gaps: Vec<f64> = moves
        .windows(2)
        .map(|w| (w[1].1 - w[0].1).as_secs_f64())
        .collect();
    assert!(
        gaps.windows(2).all(|g| g[1] > g[0] + 4.0),
        "the back-off grows between restarts: {moves:?} (gaps {gaps:?})"
    );
    let last = node.cluster.jsonpath(
        &["pod", "crash"],
        "{.status.containerStatuses[0].lastState.terminated.exitCode}",
    );
    assert_eq!(last, "1");
    let logs = node.cluster.ok(&["logs", "crash", "--previous"]);
    assert!(logs.contains("crashing"), "{logs}");
    // Repeated events are one Event with a count.
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let counts = node.cluster.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=crash,reason=BackOff",
            "-o",
            "jsonpath={range .items[*]}{.count} {end}",
        ]);
        let counts: Vec<u32> = counts
            .split_whitespace()
            .filter_map(|c| c.parse().ok())
            .collect();
        if counts.iter().any(|&c| c >= 2) {
            assert_eq!(counts.len(), 1, "one BackOff Event, counted: {counts:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the BackOff event is not counted: {counts:?}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }

    // The failing liveness probe restarts the other container.
    node.cluster.wait_pod(
        "unhealthy",
        "{.status.containerStatuses[0].restartCount}",
        "a failed liveness probe restarts the container",
        Duration::from_secs(60),
        |c| c.parse::<u32>().unwrap_or(0) >= 1,
    );
    let events = node.cluster.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=unhealthy",
        "-o",
        "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}",
    ]);
    assert!(
        events.contains("Unhealthy: Liveness probe failed"),
        "{events}"
    );
    assert!(
        events.contains("Killing: Container c failed liveness probe, will be restarted"),
        "{events}"
    );

    // Deletion: a pod that exits on SIGTERM goes at once; one that ignores it goes when
    // its grace period ends, not later.
    node.cluster.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: polite}}
spec:
  terminationGracePeriodSeconds: 30
  containers:
  - name: c
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "trap 'echo bye; exit 0' TERM; while true; do sleep 1; done"]
---
apiVersion: v1
kind: Pod
metadata: {{name: stubborn}}
spec:
  terminationGracePeriodSeconds: 4
  containers:
  - name: c
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "trap '' TERM; while true; do sleep 1; done"]
"#
    ));
    for pod in ["polite", "stubborn"] {
        node.cluster.wait_pod(
            pod,
            "{.status.phase}",
            "the pod runs",
            Duration::from_secs(60),
            |p| p == "Running",
        );
    }
    let t = Instant::now();
    node.cluster.ok(&["delete", "pod", "polite", "--wait=true"]);
    let polite = t.elapsed();
    let t = Instant::now();
    node.cluster
        .ok(&["delete", "pod", "stubborn", "--wait=true"]);
    let stubborn = t.elapsed();
    assert!(
        polite < Duration::from_secs(10),
        "a pod that exits on SIGTERM took {polite:?}"
    );
    assert!(
        stubborn >= Duration::from_secs(3) && stubborn < Duration::from_secs(15),
        "a pod that ignores SIGTERM is killed after its 4 s grace period; it took {stubborn:?}"
    );
}

/// Waits until every address answers a GET, or panics naming the ones that did not.
#[track_caller]
fn wait_serving(ips: &[String], port: u16, what: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let failing: Vec<String> = ips
            .iter()
            .filter_map(|ip| http_get(&format!("{ip}:{port}")).err())
            .collect();
        if failing.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {failing:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Kills every httpd serving `port` on this machine (the port is unique to one test).
fn kill_httpd(port: u16) {
    let status = Command::new("pkill")
        .args(["-KILL", "-f", &format!("httpd -f -v -p {port}")])
        .status()
        .expect("run pkill (procps)");
    assert!(
        status.success(),
        "no httpd on port {port} was found to kill"
    );
}

#[test]
fn pods_keep_running_through_two_minutes_without_the_control_plane() {
    const PORT: u16 = 8183;
    let mut node = Node::start(3);
    node.cluster.apply(&web("steady", 2, PORT));
    node.cluster
        .ok(&["rollout", "status", "deployment/steady", "--timeout=90s"]);
    let names = node
        .cluster
        .jsonpath(&["pods", "-l", "app=steady"], "{.items[*].metadata.name}");
    let names: Vec<String> = names.split_whitespace().map(str::to_string).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    let before: Vec<(String, String)> = names
        .iter()
        .map(|n| {
            (
                node.cluster.jsonpath(&["pod", n], "{.metadata.uid}"),
                node.cluster.jsonpath(&["pod", n], "{.status.podIP}"),
            )
        })
        .collect();
    let ips: Vec<String> = before.iter().map(|(_, ip)| ip.clone()).collect();
    wait_serving(&ips, PORT, "the pods serve", Duration::from_secs(10));
    let tokens: Vec<String> = ips.iter().map(|ip| served_token(ip, PORT)).collect();

    // The control plane goes away.
    node.cluster.stop();
    let down = Instant::now();

    // The pods keep serving.
    wait_serving(
        &ips,
        PORT,
        "the pods serve without the control plane",
        Duration::from_secs(5),
    );
    // A killed container is restarted by the agent alone.
    kill_httpd(PORT);
    wait_serving(
        &ips,
        PORT,
        "killed containers are restarted while offline",
        Duration::from_secs(30),
    );
    // The agent restarts while offline: it finds its pods in its store and the runtime,
    // and keeps them (and restarts them: a second kill is handled by the new agent).
    node.stop_agent();
    wait_serving(
        &ips,
        PORT,
        "the pods serve while the agent is down",
        Duration::from_secs(5),
    );
    node.start_agent();
    node.agent
        .as_mut()
        .unwrap()
        .wait_log("pod manager started", Duration::from_secs(30));
    // The agent's first back-off for this container is 10 s: the second exit waits it out.
    kill_httpd(PORT);
    wait_serving(
        &ips,
        PORT,
        "the restarted agent restarts killed containers",
        Duration::from_secs(40),
    );
    // The restarted containers mount the ServiceAccount tokens the agent stored: the
    // control plane that issued them is still away.
    for (ip, token) in ips.iter().zip(&tokens) {
        assert_eq!(
            &served_token(ip, PORT),
            token,
            "a container restarted offline by a restarted agent has its pod's token"
        );
    }
    let left = Duration::from_secs(120).saturating_sub(down.elapsed());
    std::thread::sleep(left);
    wait_serving(
        &ips,
        PORT,
        "the pods serve after two minutes offline",
        Duration::from_secs(5),
    );

    // The control plane returns: the statuses converge, and no pod was recreated.
    node.cluster.start();
    wait_ready(
        &node.cluster,
        &node.name,
        "the node is Ready again",
        Duration::from_secs(60),
    );
    for (name, (uid, ip)) in names.iter().zip(&before) {
        node.cluster.wait_pod(
            name,
            "{.metadata.uid} {.status.podIP} {.status.containerStatuses[0].restartCount} {.status.containerStatuses[0].ready}",
            "the pod's status converges",
            Duration::from_secs(60),
            |s| s == format!("{uid} {ip} 2 true"),
        );
    }
    let now = node
        .cluster
        .jsonpath(&["pods", "-l", "app=steady"], "{.items[*].metadata.name}");
    let mut now: Vec<String> = now.split_whitespace().map(str::to_string).collect();
    now.sort();
    let mut names = names;
    names.sort();
    assert_eq!(now, names, "no pod was recreated");
}

#[test]
fn static_pods_run_from_manifest_files_and_appear_as_mirror_pods() {
    const PORT: u16 = 8184;
    let node = Node::start(4);
    let manifests = node.dir.path().join("agent").join("pod-manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(
        manifests.join("static-web.yaml"),
        format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: static-web, namespace: default}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: httpd
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "mkdir -p /www && echo static > /www/index.html && exec httpd -f -v -p {PORT} -h /www"]
"#
        ),
    )
    .unwrap();
    let mirror = format!("static-web-{}", node.name);
    let status = node.cluster.wait_pod(
        &mirror,
        "{.metadata.annotations.kubernetes\\.io/config\\.mirror} {.status.phase} {.status.podIP}",
        "the static pod runs and its mirror pod shows it",
        Duration::from_secs(60),
        |s| {
            let parts: Vec<&str> = s.split_whitespace().collect();
            parts.len() == 3 && parts[1] == "Running"
        },
    );
    let ip = status.split_whitespace().nth(2).unwrap().to_string();
    let body = http_get(&format!("{ip}:{PORT}")).expect("the static pod serves");
    assert!(body.contains("static"), "{body}");
    assert_eq!(
        node.cluster.jsonpath(&["pod", &mirror], "{.spec.nodeName}"),
        node.name
    );

    // The manifest goes: the pod stops and its mirror pod is deleted.
    std::fs::remove_file(manifests.join("static-web.yaml")).unwrap();
    node.cluster.wait_for(
        &["get", "pods", "-o", "name"],
        "the mirror pod goes with its manifest",
        Duration::from_secs(60),
        |s| !s.contains(&mirror),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(&format!("{ip}:{PORT}")).is_ok() {
        assert!(Instant::now() < deadline, "the static pod still serves");
        std::thread::sleep(Duration::from_millis(250));
    }
}
