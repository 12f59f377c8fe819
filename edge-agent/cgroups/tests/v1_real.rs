//! The v1 driver on this machine's real cgroupfs (cgroup v1, hybrid): needs root.
//!
//! Each test builds the kedge hierarchy under its own prefix at the root of the v1
//! hierarchies (`/sys/fs/cgroup/<controller>/kedge-test-<pid>-<n>/…`), never under
//! the real `kedge` or `kubepods`, and removes it when it ends (pass or fail).
//!
//! This machine puts the session in a memory cgroup of its own
//! (`/proc/self/cgroup`: `memory:/process_api/<id>`). kedge's hierarchy is made at
//! the root of the memory hierarchy, beside that cgroup, not inside it, so a process
//! moved into it leaves the session's cgroup and is charged to kedge's budgets only;
//! on a device the agent does the same (as the kubelet's `/kubepods` sits at the
//! root). `Layout::new(prefix)` can nest the hierarchy elsewhere when a host wants
//! it inside a parent of its own.

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use kedge_cgroups::oom::{AGENT_OOM_SCORE_ADJ, oom_score_adj, set_oom_score_adj};
use kedge_cgroups::{
    Cgroups, ContainerResources, Layout, PodResources, QosClass, SystemBudgets, Version,
};

const ROOT: &str = "/sys/fs/cgroup";
const MI: u64 = 1 << 20;
const BUSYBOX: &str = "/bin/busybox";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A kedge hierarchy under a unique prefix, and the processes a test started;
/// both go away on drop.
struct TestHierarchy {
    cg: Cgroups,
    prefix: String,
    children: Vec<Child>,
}

impl TestHierarchy {
    fn new() -> TestHierarchy {
        let version = kedge_cgroups::detect(Path::new(ROOT))
            .unwrap_or_else(|e| panic!("this test needs the cgroup v1 hierarchies at {ROOT}: {e}"));
        assert!(
            matches!(version, Version::V1 | Version::Hybrid),
            "this test needs cgroup v1 (or hybrid) at {ROOT}, found {version:?}; the v2 code is tested on fixtures (tests/v2_fixture.rs)"
        );
        let prefix = format!(
            "kedge-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let probe = Path::new(ROOT).join("memory").join(&prefix);
        if let Err(e) = std::fs::create_dir(&probe) {
            panic!(
                "cannot create {}: {e}; these tests need root (run them as root, as CI does)",
                probe.display()
            );
        }
        let cg = Cgroups::open(Path::new(ROOT), Layout::new(&prefix).unwrap()).unwrap();
        TestHierarchy {
            cg,
            prefix,
            children: Vec::new(),
        }
    }

    fn dir(&self, controller: &str, path: &str) -> PathBuf {
        Path::new(ROOT).join(controller).join(path)
    }

    fn read(&self, controller: &str, path: &str, file: &str) -> String {
        let p = self.dir(controller, path).join(file);
        std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .trim()
            .to_string()
    }

    fn spawn(&mut self, cmd: &mut Command) -> u32 {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let pid = child.id();
        self.children.push(child);
        pid
    }
}

impl Drop for TestHierarchy {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Err(e) = self.cg.remove_all() {
            eprintln!("cleanup of {}: {e}", self.prefix);
        }
    }
}

fn budgets() -> SystemBudgets {
    SystemBudgets {
        agent: 32 * MI,
        containerd: 64 * MI,
        system: 112 * MI,
        pods: 240 * MI,
        pods_cpu_shares: 3584,
    }
}

fn pod(uid: &str, memory_limit: Option<u64>, cpu: Option<u64>) -> PodResources {
    PodResources {
        uid: uid.to_string(),
        containers: vec![ContainerResources {
            cpu_request: cpu,
            cpu_limit: cpu,
            memory_request: memory_limit,
            memory_limit,
        }],
        init_containers: vec![],
    }
}

/// CAP_SYS_RESOURCE (bit 24) in this process's effective capabilities.
fn has_cap_sys_resource() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .unwrap();
    eff & (1 << 24) != 0
}

fn need_busybox() {
    assert!(
        Path::new(BUSYBOX).is_file(),
        "{BUSYBOX} is missing: install the Debian package busybox-static (scripts/setup.sh does)"
    );
}

#[test]
fn the_limits_land_in_cgroupfs() {
    let t = TestHierarchy::new();
    t.cg.ensure_hierarchy(&budgets()).unwrap();
    let l = t.cg.layout().clone();
    assert_eq!(
        t.read("memory", &l.agent(), "memory.limit_in_bytes"),
        (32 * MI).to_string()
    );
    assert_eq!(
        t.read("memory", &l.containerd(), "memory.limit_in_bytes"),
        (64 * MI).to_string()
    );
    assert_eq!(
        t.read("memory", &l.system(), "memory.limit_in_bytes"),
        (112 * MI).to_string()
    );
    assert_eq!(
        t.read("memory", &l.kubepods(), "memory.limit_in_bytes"),
        (240 * MI).to_string()
    );
    // Limits are hierarchical only with use_hierarchy (always 1 on recent kernels).
    assert_eq!(t.read("memory", &l.kubepods(), "memory.use_hierarchy"), "1");
    assert_eq!(t.read("cpu", &l.kubepods(), "cpu.shares"), "3584");
    assert_eq!(
        t.read("cpu", &l.qos(QosClass::BestEffort), "cpu.shares"),
        "2"
    );
    if t.dir("memory", &l.agent())
        .join("memory.memsw.limit_in_bytes")
        .exists()
    {
        assert_eq!(
            t.read("memory", &l.agent(), "memory.memsw.limit_in_bytes"),
            (32 * MI).to_string(),
            "no swap for the agent either"
        );
    }

    // A Guaranteed pod: memory limit, shares and quota.
    let g = pod(
        "0c5d7e5a-7b1f-4c1e-9a53-2b7f3d0a9e01",
        Some(64 * MI),
        Some(500),
    );
    let path = t.cg.update_pod(&g).unwrap();
    assert_eq!(path, format!("{}/kubepods/pod{}", t.prefix, g.uid));
    assert_eq!(
        t.read("memory", &path, "memory.limit_in_bytes"),
        (64 * MI).to_string()
    );
    assert_eq!(t.read("cpu", &path, "cpu.shares"), "512");
    assert_eq!(t.read("cpu", &path, "cpu.cfs_quota_us"), "50000");
    assert_eq!(t.read("cpu", &path, "cpu.cfs_period_us"), "100000");
    assert_eq!(
        t.cg.container_cgroups_path(&g, "c0ffee").unwrap(),
        format!("/{}/kubepods/pod{}/c0ffee", t.prefix, g.uid)
    );
    // Raising and lowering a limit both work (memsw is kept in step).
    let mut bigger = g.clone();
    bigger.containers[0].memory_limit = Some(128 * MI);
    bigger.containers[0].memory_request = Some(128 * MI);
    t.cg.update_pod(&bigger).unwrap();
    assert_eq!(
        t.read("memory", &path, "memory.limit_in_bytes"),
        (128 * MI).to_string()
    );
    t.cg.update_pod(&g).unwrap();
    assert_eq!(
        t.read("memory", &path, "memory.limit_in_bytes"),
        (64 * MI).to_string()
    );
    t.cg.remove_pod(&g.uid).unwrap();
    assert!(!t.dir("memory", &path).exists());
    assert!(!t.dir("cpu", &path).exists());
}

#[test]
fn a_process_moves_into_a_pod_cgroup_and_the_agent_cgroup() {
    let mut t = TestHierarchy::new();
    t.cg.ensure_hierarchy(&budgets()).unwrap();
    let b = PodResources {
        uid: "5e2b1c9d-0000-4a7e-b1c2-d3e4f5a6b7c8".into(),
        containers: vec![ContainerResources {
            cpu_request: Some(100),
            memory_request: Some(8 * MI),
            ..Default::default()
        }],
        init_containers: vec![],
    };
    let path = t.cg.update_pod(&b).unwrap();
    assert!(path.ends_with(&format!("kubepods/burstable/pod{}", b.uid)));
    let pid = t.spawn(Command::new("sleep").arg("60"));
    t.cg.driver().add_process(&path, pid).unwrap();
    assert!(t.cg.driver().processes(&path).unwrap().contains(&pid));
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert_eq!(
        kedge_cgroups::proc_cgroup(&own, Some("memory")).as_deref(),
        Some(format!("/{path}").as_str()),
        "{own}"
    );
    assert_eq!(
        kedge_cgroups::proc_cgroup(&own, Some("cpu")).as_deref(),
        Some(format!("/{path}").as_str())
    );
    // v1 leaves the pages a process charged before the move with its old cgroup
    // (no move_charge_at_immigrate), so a sleeping process shows little or no usage.
    let stats = t.cg.memory_stats(&path).unwrap();
    assert!(stats.working_set <= stats.usage);
    assert_eq!(stats.limit, None, "a Burstable pod without limits has none");
    assert_eq!(stats.oom_kills, Some(0));
    assert_eq!(t.cg.memory_pressure(&path).unwrap(), None, "no PSI on v1");

    // A pod cgroup with a process in it cannot go.
    let err = t.cg.remove_pod(&b.uid).unwrap_err().to_string();
    assert!(err.starts_with("cannot remove /sys/fs/cgroup/"), "{err}");
    assert!(err.contains("busy"), "{err}");

    // The agent's cgroup, and the agent's OOM protection.
    let agent = t.spawn(Command::new("sleep").arg("60"));
    t.cg.move_agent(agent).unwrap();
    let own = std::fs::read_to_string(format!("/proc/{agent}/cgroup")).unwrap();
    assert_eq!(
        kedge_cgroups::proc_cgroup(&own, Some("memory")),
        Some(format!("/{}", t.cg.layout().agent()))
    );
    if has_cap_sys_resource() {
        set_oom_score_adj(Path::new("/proc"), agent, AGENT_OOM_SCORE_ADJ).unwrap();
        assert_eq!(oom_score_adj(Path::new("/proc"), agent).unwrap(), -999);
    } else {
        // This sandbox's root lacks CAP_SYS_RESOURCE, which lowering oom_score_adj
        // needs: the agent gets an error that says so (and raising still works, as
        // for a BestEffort container's 1000).
        eprintln!("no CAP_SYS_RESOURCE here: checking the error instead of -999");
        let err = set_oom_score_adj(Path::new("/proc"), agent, AGENT_OOM_SCORE_ADJ)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("lowering oom_score_adj needs CAP_SYS_RESOURCE"),
            "{err}"
        );
        set_oom_score_adj(Path::new("/proc"), agent, 1000).unwrap();
        assert_eq!(oom_score_adj(Path::new("/proc"), agent).unwrap(), 1000);
    }

    for child in &mut t.children {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    t.children.clear();
    t.cg.remove_pod(&b.uid).unwrap();
    assert!(!t.dir("memory", &path).exists());
}

#[test]
fn a_pod_that_allocates_past_its_limit_is_oom_killed_and_counted() {
    need_busybox();
    let t = TestHierarchy::new();
    t.cg.ensure_hierarchy(&budgets()).unwrap();
    let g = pod(
        "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a",
        Some(16 * MI),
        Some(100),
    );
    let path = t.cg.update_pod(&g).unwrap();
    // The shell waits on stdin until it is in the pod's cgroup, then becomes dd,
    // which reads 64 MiB of zeros into one buffer: four times the limit.
    let mut child = Command::new(BUSYBOX)
        .args([
            "sh",
            "-c",
            "read go; exec /bin/busybox dd if=/dev/zero of=/dev/null bs=64M count=1",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start busybox");
    t.cg.driver().add_process(&path, child.id()).unwrap();
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(9),
        "dd should be OOM-killed (SIGKILL), it ended with {status:?}"
    );
    let stats = t.cg.memory_stats(&path).unwrap();
    assert_eq!(stats.oom_kills, Some(1), "{stats:?}");
    // memory.failcnt is read too (this kernel, 6.18, leaves it at 0 on an OOM kill).
    assert!(stats.limit_hits.is_some(), "{stats:?}");
    assert_eq!(stats.limit, Some(16 * MI));
    let oom_control = t.read("memory", &path, "memory.oom_control");
    assert!(oom_control.contains("oom_kill 1"), "{oom_control}");
    t.cg.remove_pod(&g.uid).unwrap();
}

#[test]
fn the_nodes_memory_pressure_reads_from_proc() {
    // This kernel has PSI (/proc/pressure/memory) though its cgroups are v1.
    let psi = kedge_cgroups::stats::node_memory_pressure(Path::new("/proc"))
        .unwrap()
        .expect("this machine's kernel reports PSI in /proc/pressure/memory");
    assert!(psi.full.is_some(), "{psi:?}");
    assert!((0.0..=100.0).contains(&psi.some.avg10), "{psi:?}");
}

/// Starts `busybox sh` in a pod cgroup that fills a shell variable with `bytes`
/// bytes, says "ready" and holds it until stdin closes.
fn start_hog(t: &mut TestHierarchy, path: &str, bytes: u64) -> u32 {
    use std::io::BufRead;
    let script = format!(
        "read go; x=$(/bin/busybox head -c {bytes} /dev/zero | /bin/busybox tr '\\0' a); echo ready; read done"
    );
    let mut child = Command::new(BUSYBOX)
        .args(["sh", "-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start busybox");
    let pid = child.id();
    t.cg.driver().add_process(path, pid).unwrap();
    child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n", "the hog in {path} did not fill its memory");
    t.children.push(child);
    pid
}

#[test]
fn eviction_on_real_cgroup_stats_picks_the_besteffort_hog() {
    use kedge_cgroups::eviction::{
        ContainerUsage, EvictionConfig, EvictionManager, NodeMemory, PodUsage,
    };
    use kedge_hardware_profiles::{Bytes, Threshold};
    use std::time::{Duration, Instant};

    need_busybox();
    let mut t = TestHierarchy::new();
    t.cg.ensure_hierarchy(&budgets()).unwrap();
    let besteffort = pod("be-hog", None, None);
    let guaranteed = pod("g-web", Some(32 * MI), Some(100));
    let be_path = t.cg.update_pod(&besteffort).unwrap();
    let g_path = t.cg.update_pod(&guaranteed).unwrap();
    start_hog(&mut t, &be_path, 40_000_000);
    start_hog(&mut t, &g_path, 4_000_000);

    // A 256Mi device, emulated: what is available is 256Mi less what kubepods holds.
    let capacity = 256 * MI;
    let observe = |t: &TestHierarchy| {
        let pods_ws =
            t.cg.memory_stats(&t.cg.layout().kubepods())
                .unwrap()
                .working_set;
        let usage = |path: &str, name: &str, request: u64| PodUsage {
            namespace: "default".into(),
            name: name.into(),
            uid: name.into(),
            priority: 0,
            critical: false,
            containers: vec![ContainerUsage {
                name: name.into(),
                usage: t.cg.memory_stats(path).map(|s| s.working_set).unwrap_or(0),
                request,
            }],
        };
        (
            NodeMemory::from_working_set(capacity, pods_ws),
            vec![
                usage(&g_path, "g-web", 32 * MI),
                usage(&be_path, "be-hog", 0),
            ],
        )
    };
    let (node, pods) = observe(&t);
    assert!(
        pods[1].usage() >= 38 * MI,
        "the hog's working set is charged to its pod cgroup: {pods:?}"
    );
    assert!(node.available <= capacity - 40 * MI, "{node:?}");
    let mut manager = EvictionManager::new(EvictionConfig {
        hard: Some(Threshold::Quantity(Bytes(capacity - 30 * MI))),
        soft: None,
        pressure_transition_period: Duration::from_secs(300),
        max_pod_grace_period: Duration::from_secs(30),
        psi_full_avg10: None,
    });
    let now = Instant::now();
    let d = manager.observe(now, node, &pods);
    assert!(d.memory_pressure);
    let e = d.evict.expect("an eviction");
    assert_eq!(
        e.name, "be-hog",
        "BestEffort goes first, the Guaranteed pod stays"
    );
    assert!(
        e.message.starts_with(&format!(
            "The node was low on resource: memory. Threshold quantity: 226Mi, available: {}. Container be-hog was using ",
            Bytes(node.available)
        )),
        "{}",
        e.message
    );
    assert!(
        e.message
            .ends_with(", request is 0, has larger consumption of memory. ")
    );

    // Evict it: kill what runs in its cgroup, remove the cgroup.
    let hog = &mut t.children[0];
    hog.kill().unwrap();
    hog.wait().unwrap();
    t.cg.remove_pod(&besteffort.uid).unwrap();
    let (node, pods) = observe(&t);
    let d = manager.observe(now + Duration::from_secs(10), node, &pods);
    assert_eq!(d.met, None, "below the threshold again: {node:?}");
    assert_eq!(d.evict, None);
    assert!(
        d.memory_pressure,
        "the condition stays for the transition period"
    );
    assert!(
        t.children[1].try_wait().unwrap().is_none(),
        "the Guaranteed pod runs on"
    );
}

#[test]
fn an_oom_kill_in_a_container_cgroup_counts_for_its_pod() {
    need_busybox();
    let t = TestHierarchy::new();
    t.cg.ensure_hierarchy(&budgets()).unwrap();
    let g = pod(
        "3a4b5c6d-7e8f-4a0b-9c1d-2e3f4a5b6c7d",
        Some(64 * MI),
        Some(100),
    );
    let path = t.cg.update_pod(&g).unwrap();
    // A container's cgroup under the pod's, with the container's own limit, as runc
    // makes it from the OCI spec.
    let container = format!("{path}/c0ffee");
    t.cg.driver().create(&container).unwrap();
    t.cg.driver()
        .apply(
            &container,
            &kedge_cgroups::Resources {
                memory_max: Some(kedge_cgroups::driver::Limit::Value(16 * MI)),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(t.cg.driver().children(&path).unwrap(), ["c0ffee"]);
    let mut child = Command::new(BUSYBOX)
        .args([
            "sh",
            "-c",
            "read go; exec /bin/busybox dd if=/dev/zero of=/dev/null bs=64M count=1",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start busybox");
    t.cg.driver().add_process(&container, child.id()).unwrap();
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "{status:?}");
    // v1 counts the kill in the container's cgroup only, not in the pod's.
    let counts = t.cg.oom_kills(&path).unwrap();
    assert_eq!(counts[""], 0, "{counts:?}");
    assert_eq!(counts["c0ffee"], 1, "{counts:?}");
    assert!(
        t.cg.driver().memory_peak(&container).unwrap().unwrap() > 8 * MI,
        "max_usage_in_bytes records the peak"
    );
    t.cg.remove_pod(&g.uid).unwrap();
}

#[test]
fn the_root_memory_and_a_process_returned_where_it_was() {
    let mut t = TestHierarchy::new();
    t.cg.ensure_hierarchy(&budgets()).unwrap();
    let root =
        t.cg.root_memory_stats()
            .unwrap()
            .expect("v1 accounts the root");
    assert!(root.usage > 0 && root.working_set <= root.usage, "{root:?}");
    assert_eq!(root.limit, None);

    let pid = t.spawn(Command::new("sleep").arg("60"));
    let before = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    t.cg.move_agent(pid).unwrap();
    let moved = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert_ne!(moved, before);
    t.cg.release_process(pid, &before).unwrap();
    let back = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for controller in ["memory", "cpu", "cpuacct", "pids"] {
        assert_eq!(
            kedge_cgroups::proc_cgroup(&back, Some(controller)),
            kedge_cgroups::proc_cgroup(&before, Some(controller)),
            "{controller}: {back}"
        );
    }
    assert!(
        t.cg.driver()
            .processes(&t.cg.layout().agent())
            .unwrap()
            .is_empty()
    );
    assert!(t.cg.pod_uids().unwrap().is_empty());
    let files =
        t.cg.driver()
            .procs_files(&t.cg.layout().containerd())
            .unwrap();
    assert_eq!(files.len(), 4, "memory, cpu, cpuacct, pids: {files:?}");
    assert!(files.iter().all(|f| f.is_file()), "{files:?}");
}

#[test]
fn a_pod_cgroup_goes_from_every_hierarchy_runc_made_it_in() {
    let t = TestHierarchy::new();
    t.cg.ensure_hierarchy(&budgets()).unwrap();
    let g = pod(
        "7e6d5c4b-3a29-4181-8f7e-6d5c4b3a2918",
        Some(16 * MI),
        Some(100),
    );
    let path = t.cg.update_pod(&g).unwrap();
    // runc makes the container's cgroup, and the parents it lacks, in every
    // hierarchy; it deletes only the container's.
    let others: Vec<PathBuf> = ["blkio", "devices", "freezer", "systemd"]
        .iter()
        .map(|h| Path::new(ROOT).join(h))
        .filter(|h| h.is_dir())
        .map(|h| h.join(&path))
        .collect();
    assert!(
        !others.is_empty(),
        "this machine mounts more v1 hierarchies"
    );
    for dir in &others {
        std::fs::create_dir_all(dir.join("c0ffee")).unwrap();
    }
    t.cg.remove_pod(&g.uid).unwrap();
    for dir in &others {
        assert!(!dir.exists(), "{} is left", dir.display());
    }
    // And the whole hierarchy, from all of them.
    t.cg.remove_all().unwrap();
    for h in ["blkio", "devices", "freezer", "memory", "cpu"] {
        assert!(!Path::new(ROOT).join(h).join(&t.prefix).exists(), "{h}");
    }
}
