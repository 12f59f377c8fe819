//! The v2 driver against a fixture directory laid out like a cgroup2 mount (this
//! machine runs v1; Raspberry Pi OS Bookworm runs v2).

use std::path::Path;

use kedge_cgroups::driver::{Limit, V2};
use kedge_cgroups::{
    Cgroups, ContainerResources, Driver, Layout, PodResources, QosClass, SystemBudgets, Version,
};
use kedge_hardware_profiles::{MachineInfo, builtin};

const MI: u64 = 1 << 20;

fn read(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

fn v2_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(
        root.path().join("cgroup.controllers"),
        "cpuset cpu io memory hugetlb pids rdma misc\n",
    )
    .unwrap();
    std::fs::write(root.path().join("cgroup.subtree_control"), "").unwrap();
    root
}

fn zero_budgets() -> SystemBudgets {
    let profile = builtin("rpi-zero-2w").unwrap();
    let machine = MachineInfo {
        model: None,
        mem_total: profile.hardware.memory,
        cpus: 4,
        arch: "arm64".into(),
    };
    SystemBudgets::from_profile(&profile, &profile.capacity(&machine))
}

#[test]
fn the_hierarchy_on_v2() {
    let root = v2_root();
    assert_eq!(kedge_cgroups::detect(root.path()).unwrap(), Version::V2);
    let cg = Cgroups::open(root.path(), Layout::new("").unwrap()).unwrap();
    assert_eq!(cg.version(), Version::V2);
    let budgets = zero_budgets();
    cg.ensure_hierarchy(&budgets).unwrap();
    let r = root.path();
    // Controllers are handed down level by level.
    assert_eq!(
        read(&r.join("cgroup.subtree_control")),
        "+memory +cpu +pids"
    );
    assert_eq!(
        read(&r.join("kedge/system/cgroup.subtree_control")),
        "+memory +cpu +pids"
    );
    // The budgets: memory.max, and memory.high a tenth under.
    assert_eq!(
        read(&r.join("kedge/system/agent/memory.max")),
        (32 * MI).to_string()
    );
    assert_eq!(
        read(&r.join("kedge/system/agent/memory.high")),
        (28 * MI).to_string()
    );
    assert_eq!(
        read(&r.join("kedge/system/containerd/memory.max")),
        (64 * MI).to_string()
    );
    assert_eq!(
        read(&r.join("kedge/system/memory.max")),
        (112 * MI).to_string()
    );
    // kubepods: capacity (416Mi) − systemReserved (64Mi) − kubeReserved (112Mi).
    assert_eq!(read(&r.join("kubepods/memory.max")), (240 * MI).to_string());
    assert!(r.join("kubepods/burstable").is_dir());
    // BestEffort: the least weight (cpu.shares 2 → cpu.weight 1).
    assert_eq!(read(&r.join("kubepods/besteffort/cpu.weight")), "1");
    // Idempotent.
    cg.ensure_hierarchy(&budgets).unwrap();
}

fn guaranteed_pod() -> PodResources {
    PodResources {
        uid: "1f0e4c52-9a7b-4e55-8d0c-0b8a5f3e2d11".into(),
        containers: vec![ContainerResources {
            cpu_request: Some(500),
            cpu_limit: Some(500),
            memory_request: Some(64 * MI),
            memory_limit: Some(64 * MI),
        }],
        init_containers: vec![],
    }
}

#[test]
fn pod_cgroups_on_v2() {
    let root = v2_root();
    let cg = Cgroups::open(root.path(), Layout::new("").unwrap()).unwrap();
    cg.ensure_hierarchy(&zero_budgets()).unwrap();
    let r = root.path();

    let g = guaranteed_pod();
    let path = cg.update_pod(&g).unwrap();
    assert_eq!(path, format!("kubepods/pod{}", g.uid));
    assert_eq!(
        read(&r.join(&path).join("memory.max")),
        (64 * MI).to_string()
    );
    assert_eq!(read(&r.join(&path).join("cpu.max")), "50000 100000");
    // cpu.shares 512 → weight 1 + 510 × 9999 / 262142 = 20.
    assert_eq!(read(&r.join(&path).join("cpu.weight")), "20");
    assert_eq!(
        cg.container_cgroups_path(&g, "abc123").unwrap(),
        format!("/kubepods/pod{}/abc123", g.uid)
    );

    let b = PodResources {
        uid: "b-1".into(),
        containers: vec![ContainerResources {
            cpu_request: Some(100),
            memory_request: Some(16 * MI),
            ..Default::default()
        }],
        init_containers: vec![],
    };
    assert_eq!(b.qos_class(), QosClass::Burstable);
    let bpath = cg.update_pod(&b).unwrap();
    assert_eq!(bpath, "kubepods/burstable/podb-1");
    assert_eq!(read(&r.join(&bpath).join("memory.max")), "max");
    assert_eq!(read(&r.join(&bpath).join("cpu.max")), "max 100000");
    cg.update_qos(&[g.clone(), b.clone()]).unwrap();
    // Burstable: shares of 100m = 102 → weight 4.
    assert_eq!(read(&r.join("kubepods/burstable/cpu.weight")), "4");

    // A process moves by pid into cgroup.procs.
    cg.driver().add_process(&bpath, 4242).unwrap();
    assert_eq!(cg.driver().processes(&bpath).unwrap(), vec![4242]);

    // Removal takes the pod's container cgroups with it.
    std::fs::create_dir_all(r.join(&path).join("abc123")).unwrap();
    std::fs::write(r.join(&path).join("abc123/memory.max"), "max").unwrap();
    cg.remove_pod(&g.uid).unwrap();
    assert!(!r.join(&path).exists());
    cg.remove_pod(&g.uid).unwrap(); // again: nothing to do
    assert!(r.join(&bpath).exists());
}

#[test]
fn stats_and_pressure_on_v2() {
    let root = v2_root();
    let d = V2::new(root.path());
    d.create("kubepods/besteffort/podx").unwrap();
    let dir = root.path().join("kubepods/besteffort/podx");
    std::fs::write(dir.join("memory.current"), "104857600\n").unwrap();
    std::fs::write(dir.join("memory.max"), "max\n").unwrap();
    std::fs::write(
        dir.join("memory.stat"),
        "anon 73400320\nfile 31457280\nactive_file 10485760\ninactive_file 20971520\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("memory.events"),
        "low 0\nhigh 0\nmax 7\noom 2\noom_kill 2\noom_group_kill 0\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("memory.pressure"),
        "some avg10=12.50 avg60=3.00 avg300=0.60 total=9000000\nfull avg10=4.00 avg60=1.00 avg300=0.20 total=3000000\n",
    )
    .unwrap();
    let s = d.memory_stats("kubepods/besteffort/podx").unwrap();
    assert_eq!(s.usage, 100 * MI);
    assert_eq!(s.working_set, 80 * MI);
    assert_eq!(s.limit, None);
    assert_eq!(s.oom_kills, Some(2));
    assert_eq!(s.limit_hits, Some(7));
    let psi = d
        .memory_pressure("kubepods/besteffort/podx")
        .unwrap()
        .unwrap();
    assert_eq!(psi.some.avg10, 12.5);
    assert_eq!(psi.full.unwrap().total, 3_000_000);

    std::fs::write(dir.join("memory.max"), "67108864\n").unwrap();
    assert_eq!(
        d.memory_stats("kubepods/besteffort/podx").unwrap().limit,
        Some(64 * MI)
    );
    // No PSI file: no PSI, no error.
    std::fs::remove_file(dir.join("memory.pressure")).unwrap();
    assert_eq!(d.memory_pressure("kubepods/besteffort/podx").unwrap(), None);
    // A garbled file is an error naming it.
    std::fs::write(dir.join("memory.current"), "lots\n").unwrap();
    let err = d
        .memory_stats("kubepods/besteffort/podx")
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with(
            "kubepods/besteffort/podx/memory.current: cannot parse a number from \"lots\\n\""
        ),
        "{err}"
    );
}

#[test]
fn swap_is_off_for_limited_cgroups_where_the_kernel_offers_it() {
    let root = v2_root();
    let d = V2::new(root.path());
    d.create("kubepods/podg").unwrap();
    let dir = root.path().join("kubepods/podg");
    std::fs::write(dir.join("memory.swap.max"), "max\n").unwrap();
    d.apply(
        "kubepods/podg",
        &kedge_cgroups::Resources {
            memory_max: Some(Limit::Value(64 * MI)),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(read(&dir.join("memory.swap.max")), "0");
}

#[test]
fn a_v2_root_without_the_memory_controller_is_refused() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("cgroup.controllers"), "cpu io pids\n").unwrap();
    let err = V2::new(root.path())
        .create("kubepods")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("does not offer the memory controller (cgroup.controllers: \"cpu io pids\"); enable it on the kernel command line"),
        "{err}"
    );
}

#[test]
fn pods_children_oom_kills_and_peaks_on_v2() {
    let root = v2_root();
    let cg = Cgroups::open(root.path(), Layout::new("").unwrap()).unwrap();
    cg.ensure_hierarchy(&zero_budgets()).unwrap();
    let r = root.path();
    let g = guaranteed_pod();
    let path = cg.update_pod(&g).unwrap();
    assert_eq!(cg.find_pod(&g.uid).unwrap().as_deref(), Some(path.as_str()));
    assert_eq!(cg.find_pod("nobody").unwrap(), None);
    assert_eq!(cg.pod_uids().unwrap(), vec![g.uid.clone()]);
    std::fs::create_dir_all(r.join(&path).join("c1")).unwrap();
    assert_eq!(cg.driver().children(&path).unwrap(), ["c1"]);
    assert!(cg.driver().children("kubepods/nothing").unwrap().is_empty());

    // v2 counts OOM kills for the whole subtree in the pod's memory.events: the
    // containers' are not added on top.
    for (file, text) in [
        ("memory.current", "1048576\n"),
        ("memory.stat", "inactive_file 0\n"),
        ("memory.events", "max 1\noom 1\noom_kill 1\n"),
    ] {
        std::fs::write(r.join(&path).join(file), text).unwrap();
    }
    let counts = cg.oom_kills(&path).unwrap();
    assert_eq!(counts.into_iter().collect::<Vec<_>>(), [(String::new(), 1)]);

    // memory.peak where the kernel keeps it (5.19 and later).
    assert_eq!(cg.driver().memory_peak(&path).unwrap(), None);
    std::fs::write(r.join(&path).join("memory.peak"), "67108864\n").unwrap();
    assert_eq!(cg.driver().memory_peak(&path).unwrap(), Some(64 * MI));

    // No root memory.current on v2: the node's memory comes from /proc/meminfo.
    assert_eq!(cg.root_memory_stats().unwrap(), None);

    // A process goes back to the cgroup /proc/<pid>/cgroup named.
    std::fs::create_dir_all(r.join("system.slice/kedge-agent.service")).unwrap();
    cg.release_process(77, "0::/system.slice/kedge-agent.service\n")
        .unwrap();
    assert_eq!(
        read(&r.join("system.slice/kedge-agent.service/cgroup.procs")),
        "77"
    );
    cg.release_process(78, "0::/\n").unwrap();
    assert_eq!(read(&r.join("cgroup.procs")), "78");
    assert!(cg.release_process(79, "0::/../etc\n").is_err());
    assert_eq!(
        cg.driver().procs_files(&cg.layout().containerd()).unwrap(),
        [r.join("kedge/system/containerd/cgroup.procs")]
    );
}
