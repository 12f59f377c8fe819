//! Memory budgets end to end: the real `kedge server` and `kedge-agent`, the agent's
//! own containerd with runc, the standard CNI plugins, kubectl v1.32, and this
//! machine's real cgroup v1 hierarchy.
//!
//! The agents emulate a small device (`--emulate-device`): the node's capacity is the
//! profile's memory, and memory.available counts what kedge's cgroups hold, so memory
//! pressure comes from a few hundred MiB of pods, never from the machine's own
//! 24 GiB. Each agent's hierarchy sits under a prefix of its own
//! (`/sys/fs/cgroup/<controller>/kedge-<hash of its data dir>/`), which the agent
//! removes when it stops with no pods left, and which each test removes at its end
//! whatever happened. The disk thresholds are off (the host's disk is everyone's).
//!
//! These tests need root (cgroups, namespaces, mounts), cgroup v1 (this machine's;
//! the v2 code is tested on fixtures in kedge-cgroups), and the packages
//! scripts/setup.sh installs (containerd, runc, containernetworking-plugins,
//! busybox-static).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Cluster;
use common::agent::{Agent, airgap_busybox, cluster_with_cidr, server_token, wait_ready};

/// The image the agent imports; `IfNotPresent`, as no registry can be reached.
const IMAGE: &str = "docker.io/library/busybox:kedge-e2e";
const MI: u64 = 1 << 20;
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

fn require_root_and_cgroup_v1() {
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
        "these tests put real processes in real cgroups and run pods: run them as root"
    );
    assert!(
        Path::new(CGROUP_ROOT)
            .join("memory/memory.limit_in_bytes")
            .is_file(),
        "these tests read cgroup v1 files under {CGROUP_ROOT}/memory (this machine's hierarchy); the v2 code is tested on fixtures (edge-agent/cgroups/tests/v2_fixture.rs)"
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

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_string()
}

fn number(path: &Path) -> u64 {
    read(path)
        .parse()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A key of a flat-keyed cgroup file (memory.stat, memory.oom_control).
fn keyed(path: &Path, key: &str) -> u64 {
    read(path)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key} ")))
        .unwrap_or_else(|| panic!("{} has no {key}", path.display()))
        .trim()
        .parse()
        .unwrap()
}

/// A process's memory cgroup, from /proc/<pid>/cgroup.
fn memory_cgroup(pid: u32) -> String {
    let text = read(Path::new(&format!("/proc/{pid}/cgroup")));
    text.lines()
        .find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers
                .split(',')
                .any(|c| c == "memory")
                .then(|| path.to_string())
        })
        .unwrap_or_else(|| panic!("pid {pid} has no memory cgroup: {text}"))
}

fn status_field(pid: u32, key: &str) -> String {
    read(Path::new(&format!("/proc/{pid}/status")))
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

/// CAP_SYS_RESOURCE (bit 24), which lowering an OOM score needs.
fn has_cap_sys_resource() -> bool {
    u64::from_str_radix(&status_field(std::process::id(), "CapEff"), 16).unwrap() & (1 << 24) != 0
}

/// The children of a process (all its threads').
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(
                    text.split_whitespace()
                        .filter_map(|p| p.parse::<u32>().ok()),
                );
            }
        }
    }
    out
}

/// Removes a prefix's cgroups from every hierarchy: kills what is left in them,
/// then removes the directories, deepest first.
fn remove_hierarchy(prefix: &str) {
    let Ok(hierarchies) = std::fs::read_dir(CGROUP_ROOT) else {
        return;
    };
    for h in hierarchies.flatten() {
        if h.path().is_symlink() {
            continue;
        }
        let top = h.path().join(prefix);
        if !top.is_dir() {
            continue;
        }
        let mut dirs = Vec::new();
        let mut stack = vec![top];
        while let Some(dir) = stack.pop() {
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        stack.push(e.path());
                    }
                }
            }
            dirs.push(dir);
        }
        for dir in dirs.iter().rev() {
            for pid in std::fs::read_to_string(dir.join("cgroup.procs"))
                .unwrap_or_default()
                .split_whitespace()
            {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
        for dir in dirs.iter().rev() {
            for _ in 0..50 {
                if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// A cluster and one agent emulating a device, on a cluster CIDR, bridge and cgroup
/// prefix of their own.
struct Node {
    cluster: Cluster,
    agent: Option<Agent>,
    dir: tempfile::TempDir,
    name: String,
    bridge: String,
    /// `kedge-<hash>`: where this agent's hierarchy sits.
    prefix: String,
}

impl Node {
    /// `n` keeps concurrent tests apart: cluster CIDR 10.(110+n).0.0/16, bridge
    /// kedge-bud<n>. `profile`: a built-in name or a file.
    fn start(n: u8, profile: &str, extra: &[&str]) -> Node {
        require_root_and_cgroup_v1();
        let cluster = cluster_with_cidr(&format!("10.{}.0.0/16", 110 + n));
        let dir = tempfile::tempdir().unwrap();
        airgap_busybox(dir.path(), IMAGE);
        let name = format!("budgets-{n}");
        let bridge = format!("kedge-bud{n}");
        let token = server_token(&cluster);
        let mut cmd = Agent::command_with_runtime(&cluster.server_url(), dir.path(), &name, &token);
        cmd.args(["--profile", profile, "--emulate-device"])
            .args(["--cni-bridge", &bridge])
            .arg("--pod-log-dir")
            .arg(dir.path().join("pod-logs"))
            .args(extra);
        let mut agent = Agent::spawn(cmd);
        let line = agent.wait_log("the agent runs in its budget", Duration::from_secs(60));
        let cgroup = memory_cgroup(agent.child.id());
        let prefix = cgroup
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap()
            .to_string();
        assert!(
            prefix.starts_with("kedge-") && cgroup.ends_with("/kedge/system/agent"),
            "the agent runs in {cgroup} ({line})"
        );
        let node = Node {
            cluster,
            agent: Some(agent),
            dir,
            name,
            bridge,
            prefix,
        };
        wait_ready(
            &node.cluster,
            &node.name,
            "the node registers Ready",
            Duration::from_secs(90),
        );
        node
    }

    fn agent_pid(&self) -> u32 {
        self.agent.as_ref().unwrap().child.id()
    }

    /// containerd: the agent's child running /usr/bin/containerd.
    fn containerd_pid(&self) -> u32 {
        children(self.agent_pid())
            .into_iter()
            .find(|p| {
                std::fs::read_link(format!("/proc/{p}/exe"))
                    .is_ok_and(|e| e.file_name().is_some_and(|n| n == "containerd"))
            })
            .expect("the agent runs containerd as its child")
    }

    /// `/sys/fs/cgroup/<controller>/<prefix>/<path>`.
    fn cg(&self, controller: &str, path: &str) -> PathBuf {
        Path::new(CGROUP_ROOT)
            .join(controller)
            .join(&self.prefix)
            .join(path)
    }

    fn uid(&self, pod: &str) -> String {
        self.cluster.jsonpath(&["pod", pod], "{.metadata.uid}")
    }

    /// The id of a pod's first container, from its status.
    fn container_id(&self, pod: &str) -> String {
        self.cluster
            .jsonpath(&["pod", pod], "{.status.containerStatuses[0].containerID}")
            .trim_start_matches("containerd://")
            .to_string()
    }

    /// Checks that the agent's and containerd's cgroups are capped at their budgets,
    /// peaked within them and had nothing OOM-killed; prints what they used.
    #[track_caller]
    fn check_budgets(&self, agent_budget: u64, containerd_budget: u64) {
        for (name, budget) in [("agent", agent_budget), ("containerd", containerd_budget)] {
            let dir = self.cg("memory", &format!("kedge/system/{name}"));
            let limit = number(&dir.join("memory.limit_in_bytes"));
            let peak = number(&dir.join("memory.max_usage_in_bytes"));
            let oom_kills = keyed(&dir.join("memory.oom_control"), "oom_kill");
            let rss = keyed(&dir.join("memory.stat"), "total_rss");
            eprintln!(
                "{name}: budget {} MiB, peak {:.1} MiB (page cache included), anonymous now {:.1} MiB, failcnt {}, OOM kills {oom_kills}",
                budget / MI,
                peak as f64 / MI as f64,
                rss as f64 / MI as f64,
                read(&dir.join("memory.failcnt")),
            );
            assert_eq!(limit, budget, "{name}'s cgroup is capped at its budget");
            assert!(peak <= budget, "{name} peaked at {peak} over {budget}");
            assert_eq!(oom_kills, 0, "nothing in {name}'s cgroup was OOM-killed");
        }
        let rss_kib: u64 = status_field(self.agent_pid(), "VmRSS")
            .trim_end_matches(" kB")
            .parse()
            .unwrap();
        eprintln!("agent VmRSS {:.1} MiB", rss_kib as f64 / 1024.0);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self
            .cluster
            .kubectl(&["delete", "pods", "--all", "--wait=true", "--timeout=60s"]);
        if let Some(agent) = self.agent.take() {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                agent.terminate(Duration::from_secs(30))
            }));
        }
        remove_hierarchy(&self.prefix);
        let _ = Command::new("ip")
            .args(["link", "delete", &self.bridge])
            .stderr(Stdio::null())
            .status();
    }
}

fn pod(name: &str, grace: u32, command: &str, resources: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: {grace}
  containers:
  - name: c
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "{command}"]
    resources: {resources}
"#
    )
}

#[test]
fn the_budgets_land_in_cgroupfs_and_a_pod_past_its_limit_is_oom_killed() {
    // rpi-zero-2w: 416Mi, agent 32Mi, containerd 64Mi, kubeReserved 112Mi,
    // systemReserved 64Mi, 4 CPUs with 300m reserved.
    let node = Node::start(11, "rpi-zero-2w", &[]);
    let cg = |path: &str, file: &str| read(&node.cg("memory", path).join(file));
    let cpu = |path: &str, file: &str| read(&node.cg("cpu", path).join(file));
    assert_eq!(
        cg("kedge/system/agent", "memory.limit_in_bytes"),
        (32 * MI).to_string()
    );
    assert_eq!(
        cg("kedge/system/containerd", "memory.limit_in_bytes"),
        (64 * MI).to_string()
    );
    assert_eq!(
        cg("kedge/system", "memory.limit_in_bytes"),
        (112 * MI).to_string()
    );
    // kubepods: 416Mi − 64Mi − 112Mi; its CPU shares from the allocatable 3700m.
    assert_eq!(
        cg("kubepods", "memory.limit_in_bytes"),
        (240 * MI).to_string()
    );
    assert_eq!(cg("kubepods", "memory.use_hierarchy"), "1");
    assert_eq!(cpu("kubepods", "cpu.shares"), "3788");
    assert_eq!(cpu("kubepods/besteffort", "cpu.shares"), "2");

    // The agent and its containerd live in their budgets' cgroups, containerd from
    // its first instruction (its launcher joins the cgroup, then execs it).
    let agent = node.agent_pid();
    let containerd = node.containerd_pid();
    assert_eq!(
        memory_cgroup(agent),
        format!("/{}/kedge/system/agent", node.prefix)
    );
    assert_eq!(
        memory_cgroup(containerd),
        format!("/{}/kedge/system/containerd", node.prefix)
    );
    let launcher = node
        .dir
        .path()
        .join("agent/etc/containerd/containerd-in-cgroup");
    let script = read(&launcher);
    assert!(
        script.contains(&format!(
            "/sys/fs/cgroup/memory/{}/kedge/system/containerd/cgroup.procs",
            node.prefix
        )) && script.ends_with("exec '/usr/bin/containerd' \"$@\""),
        "{script}"
    );
    // The kubelet's -999 for both, where this process may lower a score.
    if has_cap_sys_resource() {
        for pid in [agent, containerd] {
            assert_eq!(
                read(Path::new(&format!("/proc/{pid}/oom_score_adj"))),
                "-999"
            );
        }
    }

    node.cluster.apply(&pod(
        "guaranteed",
        2,
        "sleep 3600",
        "{limits: {cpu: 100m, memory: 32Mi}}",
    ));
    node.cluster.apply(&pod(
        "burstable",
        2,
        "sleep 3600",
        "{requests: {cpu: 200m, memory: 16Mi}}",
    ));
    node.cluster
        .apply(&pod("besteffort", 2, "sleep 3600", "{}"));
    // tail holds its one endless line in memory: 200Mi against a 48Mi limit.
    node.cluster.apply(&pod(
        "oom",
        2,
        "head -c 200m /dev/zero | tail",
        "{limits: {memory: 48Mi}}",
    ));
    for p in ["guaranteed", "burstable", "besteffort"] {
        node.cluster.wait_pod(
            p,
            "{.status.phase}",
            "the pod runs",
            Duration::from_secs(90),
            |s| s == "Running",
        );
    }

    // A cgroup per pod, under its QoS class, with the kubelet's settings.
    let g = format!("kubepods/pod{}", node.uid("guaranteed"));
    assert_eq!(cg(&g, "memory.limit_in_bytes"), (32 * MI).to_string());
    assert_eq!(cpu(&g, "cpu.shares"), "102");
    assert_eq!(cpu(&g, "cpu.cfs_quota_us"), "10000");
    assert_eq!(cpu(&g, "cpu.cfs_period_us"), "100000");
    // runc made the container's cgroup under the pod's, from the OCI spec's limits.
    let c = format!("{g}/{}", node.container_id("guaranteed"));
    assert_eq!(cg(&c, "memory.limit_in_bytes"), (32 * MI).to_string());
    assert!(
        !read(&node.cg("memory", &c).join("cgroup.procs")).is_empty(),
        "the container's process is in its cgroup"
    );
    let b = format!("kubepods/burstable/pod{}", node.uid("burstable"));
    assert!(
        number(&node.cg("memory", &b).join("memory.limit_in_bytes")) >= 1 << 62,
        "a Burstable pod without limits has no memory limit"
    );
    assert_eq!(cpu(&b, "cpu.shares"), "204");
    let be = format!("kubepods/besteffort/pod{}", node.uid("besteffort"));
    assert_eq!(cpu(&be, "cpu.shares"), "2");
    // The burstable class gets its pods' CPU requests together (200m; the OOM pod
    // requests none).
    assert_eq!(cpu("kubepods/burstable", "cpu.shares"), "204");

    // The pod that allocates past its limit is OOM-killed, and reported so.
    let last = node.cluster.wait_pod(
        "oom",
        "{.status.containerStatuses[0].lastState.terminated.reason} {.status.containerStatuses[0].lastState.terminated.exitCode}",
        "the container is OOM-killed and restarted",
        Duration::from_secs(90),
        |s| s.starts_with("OOMKilled"),
    );
    assert_eq!(last, "OOMKilled 137");
    let oom = format!("kubepods/burstable/pod{}", node.uid("oom"));
    assert!(
        node.cg("memory", &oom).is_dir(),
        "the OOM pod is Burstable (a memory limit only)"
    );

    // The agent and containerd held to their budgets all along, and are the same
    // processes.
    node.check_budgets(32 * MI, 64 * MI);
    assert_eq!(node.agent_pid(), agent);
    assert_eq!(node.containerd_pid(), containerd);

    // Deleted pods take their cgroups with them, from every hierarchy.
    node.cluster
        .ok(&["delete", "pods", "--all", "--wait=true", "--timeout=60s"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let pod_dirs = |hierarchy: &str| -> Vec<String> {
        ["kubepods", "kubepods/burstable", "kubepods/besteffort"]
            .iter()
            .flat_map(|q| {
                std::fs::read_dir(node.cg(hierarchy, q))
                    .into_iter()
                    .flatten()
            })
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("pod"))
            .collect()
    };
    while !pod_dirs("memory").is_empty() || !pod_dirs("freezer").is_empty() {
        assert!(
            Instant::now() < deadline,
            "pod cgroups left: {:?} {:?}",
            pod_dirs("memory"),
            pod_dirs("freezer")
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // containerd dies: the agent's supervisor starts another, through the launcher,
    // so it is born in its cgroup again.
    let _ = Command::new("kill")
        .args(["-KILL", &containerd.to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(60);
    let restarted = loop {
        let pid = children(node.agent_pid()).into_iter().find(|p| {
            *p != containerd
                && std::fs::read_link(format!("/proc/{p}/exe"))
                    .is_ok_and(|e| e.file_name().is_some_and(|n| n == "containerd"))
        });
        if let Some(pid) = pid {
            break pid;
        }
        assert!(Instant::now() < deadline, "containerd was not restarted");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        memory_cgroup(restarted),
        format!("/{}/kedge/system/containerd", node.prefix)
    );

    // An agent that stops with no pods left removes its hierarchy.
    let mut node = node;
    let (status, log) = node
        .agent
        .take()
        .unwrap()
        .terminate(Duration::from_secs(30));
    assert!(status.success(), "{log}");
    assert!(
        log.contains("no pods left: the cgroup hierarchy is removed"),
        "{log}"
    );
    for h in ["memory", "cpu", "pids", "freezer", "devices", "blkio"] {
        let top = Path::new(CGROUP_ROOT).join(h).join(&node.prefix);
        assert!(!top.exists(), "{} is left", top.display());
    }
    if !has_cap_sys_resource() {
        // This sandbox's root lacks CAP_SYS_RESOURCE: the scores stay as inherited.
        assert!(
            log.contains("cannot lower the OOM score"),
            "the agent says it runs with its inherited OOM score:\n{log}"
        );
    }
}

/// An emulated 1Gi device: eviction starts when kedge's cgroups hold more than
/// 1Gi − 700Mi = 324Mi, well before kubepods' cap (1Gi − 32Mi − 160Mi = 832Mi), so
/// the eviction manager acts and the kernel's OOM killer never has to.
const EVICTION_PROFILE: &str = r#"
name = "budgets-e2e"
description = "an emulated 1Gi device for the eviction test"

[hardware]
architectures = ["amd64", "arm64", "arm"]
cpus = 2
memory = "1Gi"

[budgets]
agent = "48Mi"
containerd = "96Mi"

[kubelet]
systemReserved = { memory = "32Mi", cpu = "100m" }
kubeReserved = { memory = "160Mi", cpu = "200m" }
evictionHard = { "memory.available" = "700Mi" }
maxPods = 8
imageGCHighThresholdPercent = 99
imageGCLowThresholdPercent = 98
containerLogMaxSize = "1Mi"
containerLogMaxFiles = 2

[tunnel]
keepalive = "20s"
backoffCap = "30s"

[sync]
batchSize = 16
"#;

#[test]
fn besteffort_hogs_are_evicted_and_a_guaranteed_pod_survives() {
    let profiles = tempfile::tempdir().unwrap();
    let profile = profiles.path().join("budgets-e2e.toml");
    std::fs::write(&profile, EVICTION_PROFILE).unwrap();
    let node = Node::start(
        12,
        profile.to_str().unwrap(),
        &["--eviction-pressure-transition-period", "20s"],
    );
    // A Guaranteed pod that holds 16Mi of its 64Mi, and two BestEffort hogs that
    // wait for a signal, then hold 360Mi and 280Mi: together far past the
    // threshold, and each alone (with kedge's own ~60–120Mi) still past it.
    node.cluster.apply(&pod(
        "steady",
        2,
        "(head -c 16m /dev/zero; sleep 3600) | tail",
        "{limits: {cpu: 100m, memory: 64Mi}}",
    ));
    for (name, size) in [("hog-big", "360m"), ("hog-small", "280m")] {
        node.cluster.apply(&pod(
            name,
            30,
            &format!(
                "until [ -e /tmp/go ]; do sleep 0.2; done; (head -c {size} /dev/zero; sleep 3600) | tail"
            ),
            "{}",
        ));
    }
    for p in ["steady", "hog-big", "hog-small"] {
        node.cluster.wait_pod(
            p,
            "{.status.phase}",
            "the pod runs",
            Duration::from_secs(90),
            |s| s == "Running",
        );
    }
    let pressure = || {
        node.cluster.jsonpath(
            &["node", &node.name],
            "{.status.conditions[?(@.type==\"MemoryPressure\")].status}",
        )
    };
    assert_eq!(pressure(), "False", "no pressure before the hogs eat");
    for hog in ["hog-big", "hog-small"] {
        node.cluster.ok(&["exec", hog, "--", "touch", "/tmp/go"]);
    }

    // Both hogs are evicted, as the kubelet words it; the node reports the pressure.
    let mut saw_pressure = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        saw_pressure |= pressure() == "True";
        let phases: Vec<String> = ["hog-big", "hog-small"]
            .iter()
            .map(|h| {
                node.cluster
                    .jsonpath(&["pod", h], "{.status.phase}/{.status.reason}")
            })
            .collect();
        if phases.iter().all(|p| p == "Failed/Evicted") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the hogs were not evicted: {phases:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    saw_pressure |= pressure() == "True";
    assert!(saw_pressure, "the node reported MemoryPressure");
    for hog in ["hog-big", "hog-small"] {
        let message = node.cluster.jsonpath(&["pod", hog], "{.status.message}");
        assert!(
            message.starts_with(
                "The node was low on resource: memory. Threshold quantity: 700Mi, available: "
            ) && message.contains(". Container c was using ")
                && message.ends_with(", request is 0, has larger consumption of memory. "),
            "{message}"
        );
        let target = node.cluster.jsonpath(
            &["pod", hog],
            "{.status.conditions[?(@.type==\"DisruptionTarget\")].reason}",
        );
        assert_eq!(target, "TerminationByKubelet");
        let events = node.cluster.ok(&[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={hog}"),
            "-o",
            "jsonpath={range .items[*]}{.type} {.reason}: {.message}{\"\\n\"}{end}",
        ]);
        assert!(
            events.contains(&format!("Warning Evicted: {message}")),
            "{events}"
        );
    }

    // The Guaranteed pod was never touched; the evicted ones do not start again.
    std::thread::sleep(Duration::from_secs(15));
    assert_eq!(
        node.cluster.jsonpath(
            &["pod", "steady"],
            "{.status.phase} {.status.containerStatuses[0].restartCount}"
        ),
        "Running 0"
    );
    for hog in ["hog-big", "hog-small"] {
        let state = node.cluster.jsonpath(
            &["pod", hog],
            "{.status.phase} {.status.containerStatuses[0].restartCount} {.status.containerStatuses[0].state.terminated.exitCode}",
        );
        assert_eq!(state, "Failed 0 137", "{hog}");
        let dir = node.cg(
            "memory",
            &format!("kubepods/besteffort/pod{}", node.uid(hog)),
        );
        let procs = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| read(&e.path().join("cgroup.procs")))
            .collect::<Vec<_>>()
            .join("");
        assert!(procs.is_empty(), "{hog} runs nothing: {procs:?}");
    }

    // Once the transition period has passed, the pressure and its taint are gone.
    node.cluster.wait_for(
        &[
            "get",
            "node",
            &node.name,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"MemoryPressure\")].status} {.spec.taints}",
        ],
        "MemoryPressure clears after the transition period",
        Duration::from_secs(60),
        |s| s.starts_with("False") && !s.contains("memory-pressure"),
    );
    node.check_budgets(48 * MI, 96 * MI);
}

#[test]
fn the_agent_refuses_to_start_without_a_sound_profile_or_its_cgroups() {
    require_root_and_cgroup_v1();
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], data: &str| {
        let out = Command::new(common::agent::agent_binary())
            .args(["--server", "https://127.0.0.1:1", "--token", "K10x::a.b"])
            .arg("--data-dir")
            .arg(dir.path().join(data))
            .args(args)
            .env("NO_COLOR", "1")
            .env_remove("KEDGE_PROFILE")
            .output()
            .expect("run kedge-agent");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Budgets that add up to more than the device has: refused before anything runs,
    // so no cgroup was made for it.
    let oversized = dir.path().join("oversized.toml");
    std::fs::write(
        &oversized,
        EVICTION_PROFILE.replace("containerd = \"96Mi\"", "containerd = \"900Mi\""),
    )
    .unwrap();
    let (ok, err) = run(
        &["--profile", oversized.to_str().unwrap(), "--emulate-device"],
        "a",
    );
    assert!(!ok);
    assert!(
        err.contains("kedge-agent: hardware profile: ")
            && err.contains("kubelet.kubeReserved.memory 160Mi is less than budgets.agent 48Mi plus budgets.containerd 900Mi"),
        "{err}"
    );
    assert!(!dir.path().join("a").exists(), "nothing was written");
    // Thresholds from flags are checked as a profile's are.
    let sound = dir.path().join("sound.toml");
    std::fs::write(&sound, EVICTION_PROFILE).unwrap();
    let (ok, err) = run(
        &[
            "--profile",
            sound.to_str().unwrap(),
            "--emulate-device",
            "--eviction-hard=memory.available<900Mi",
        ],
        "b",
    );
    assert!(!ok);
    assert!(
        err.contains("the reservations leave nothing for pods"),
        "{err}"
    );
    // Emulating needs a device to emulate.
    let (ok, err) = run(&["--emulate-device"], "c");
    assert!(!ok);
    assert!(
        err.contains("--emulate-device needs --profile naming the device to emulate"),
        "{err}"
    );
    // Without root the budgets cannot be made: the agent says so and what to do.
    if Path::new("/usr/bin/setpriv").exists() {
        let out = Command::new("/usr/bin/setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(common::agent::agent_binary())
            .args(["--server", "https://127.0.0.1:1", "--token", "K10x::a.b"])
            .args(["--profile", "generic", "--data-dir", "/nonexistent/kedge"])
            .env("NO_COLOR", "1")
            .output()
            .expect("run setpriv (util-linux)");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            err.contains("kedge-agent: the cgroup budgets need root, and kedge-agent runs as uid 65534: run it as root, or pass --disable-cgroups"),
            "{err}"
        );
    } else {
        panic!("/usr/bin/setpriv is missing: install util-linux (scripts/setup.sh does)");
    }
}
