//! Every profile file parses and validates; broken profiles give exact errors;
//! detection works on fixture roots; the generated docs are current.

use std::path::{Path, PathBuf};

use kedge_hardware_profiles::{
    BUILTIN, Bytes, GENERIC, MachineInfo, Profile, Signal, Source, Threshold, builtin,
    builtin_profiles, generic, resolve, table,
};

fn profiles_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles")
}

#[test]
fn every_profile_file_parses_validates_and_is_compiled_in() {
    let mut on_disk: Vec<String> = std::fs::read_dir(profiles_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut compiled: Vec<String> = BUILTIN.iter().map(|(n, _)| n.to_string()).collect();
    compiled.sort();
    assert_eq!(on_disk, compiled, "every file in profiles/ is in BUILTIN");
    for name in &on_disk {
        let path = profiles_dir().join(format!("{name}.toml"));
        let profile = kedge_hardware_profiles::load_file(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(&profile.name, name, "the name inside {}", path.display());
        assert!(!profile.description.is_empty());
    }
    assert_eq!(builtin_profiles().len(), BUILTIN.len());
    let required = [
        "rpi-zero-2w",
        "rpi-3b",
        "rpi-4-2gb",
        "rpi-4-8gb",
        "rpi-5-4gb",
        "jetson-nano-4gb",
        "intel-nuc-16gb",
        "5g-edge-zone",
        "generic",
    ];
    for name in required {
        assert!(on_disk.iter().any(|n| n == name), "{name} is missing");
    }
}

#[test]
fn the_zero_keeps_the_agent_small() {
    let p = builtin("rpi-zero-2w").unwrap();
    assert!(p.budgets.agent <= Bytes::mib(32));
    assert!(p.hardware.memory <= Bytes::mib(512));
    assert_eq!(
        p.eviction_hard[&Signal::MemoryAvailable],
        Threshold::Quantity(Bytes::mib(40))
    );
}

#[test]
fn detection_ranges_of_one_model_never_overlap() {
    let profiles = builtin_profiles();
    for a in &profiles {
        for b in &profiles {
            let (Some(da), Some(db)) = (&a.detect, &b.detect) else {
                continue;
            };
            if a.name == b.name {
                continue;
            }
            let same_model = da.model_contains.iter().any(|m| {
                db.model_contains
                    .iter()
                    .any(|n| m.contains(n) || n.contains(m))
            });
            let overlap =
                da.mem_total_min <= db.mem_total_max && db.mem_total_min <= da.mem_total_max;
            assert!(
                !(same_model && overlap),
                "{} and {} could both match one device",
                a.name,
                b.name
            );
        }
    }
}

/// A fixture root laid out like / on a device.
fn fixture(model: Option<&[u8]>, meminfo: &str, cpus_online: &str) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("proc/device-tree")).unwrap();
    std::fs::create_dir_all(root.path().join("sys/devices/system/cpu")).unwrap();
    if let Some(model) = model {
        std::fs::write(root.path().join("proc/device-tree/model"), model).unwrap();
    }
    std::fs::write(root.path().join("proc/meminfo"), meminfo).unwrap();
    std::fs::write(
        root.path().join("sys/devices/system/cpu/online"),
        cpus_online,
    )
    .unwrap();
    root
}

fn meminfo(kib: u64) -> String {
    format!("MemTotal:       {kib} kB\nMemFree:          100000 kB\nMemAvailable:     200000 kB\n")
}

fn detect_on(model: Option<&[u8]>, kib: u64, arch: &str) -> (MachineInfo, Option<String>) {
    let root = fixture(model, &meminfo(kib), "0-3\n");
    let mut machine = MachineInfo::from_root(root.path()).unwrap();
    machine.arch = arch.to_string();
    let found = machine.detect().map(|p| p.name);
    (machine, found)
}

#[test]
fn detection_from_fixture_roots() {
    // The brief's example: a Pi 4 with 1.8 GiB of MemTotal.
    let (m, p) = detect_on(
        Some(b"Raspberry Pi 4 Model B Rev 1.4\0"),
        1_917_468,
        "arm64",
    );
    assert_eq!(p.as_deref(), Some("rpi-4-2gb"));
    assert_eq!(m.cpus, 4);
    assert_eq!(m.model.as_deref(), Some("Raspberry Pi 4 Model B Rev 1.4"));
    assert_eq!(m.mem_total, Bytes(1_917_468 * 1024));
    let cases: [(&[u8], u64, &str, Option<&str>); 10] = [
        (
            b"Raspberry Pi 4 Model B Rev 1.5\0",
            7_998_316,
            "arm64",
            Some("rpi-4-8gb"),
        ),
        // The 4 GB Pi 4 has no profile of its own: generic.
        (
            b"Raspberry Pi 4 Model B Rev 1.4\0",
            3_884_328,
            "arm64",
            None,
        ),
        (
            b"Raspberry Pi Zero 2 W Rev 1.0\0",
            426_720,
            "arm",
            Some("rpi-zero-2w"),
        ),
        (
            b"Raspberry Pi 3 Model B Plus Rev 1.3\0",
            908_000,
            "arm",
            Some("rpi-3b"),
        ),
        (
            b"Raspberry Pi 3 Model B Rev 1.2\0",
            906_000,
            "arm64",
            Some("rpi-3b"),
        ),
        (
            b"Raspberry Pi 5 Model B Rev 1.0\0",
            4_045_000,
            "arm64",
            Some("rpi-5-4gb"),
        ),
        (
            b"NVIDIA Jetson Nano Developer Kit\0",
            4_059_000,
            "arm64",
            Some("jetson-nano-4gb"),
        ),
        // The Jetson Nano profile is arm64 only: a 32-bit userland gets generic.
        (
            b"NVIDIA Jetson Nano Developer Kit\0",
            4_059_000,
            "arm",
            None,
        ),
        (
            b"Raspberry Pi Compute Module 4 Rev 1.0\0",
            1_917_468,
            "arm64",
            None,
        ),
        (b"Some Vendor Board\0", 1_000_000, "arm64", None),
    ];
    for (model, kib, arch, want) in cases {
        let (_, got) = detect_on(Some(model), kib, arch);
        assert_eq!(
            got.as_deref(),
            want,
            "{:?} with {kib} kB on {arch}",
            String::from_utf8_lossy(model)
        );
    }
}

#[test]
fn x86_detection_reads_dmi() {
    let root = fixture(None, &meminfo(16_200_000), "0-7\n");
    std::fs::create_dir_all(root.path().join("sys/class/dmi/id")).unwrap();
    std::fs::write(
        root.path().join("sys/class/dmi/id/sys_vendor"),
        "Intel(R) Client Systems\n",
    )
    .unwrap();
    std::fs::write(
        root.path().join("sys/class/dmi/id/product_name"),
        "NUC11TNHi5\n",
    )
    .unwrap();
    let mut m = MachineInfo::from_root(root.path()).unwrap();
    m.arch = "amd64".into();
    assert_eq!(
        m.model.as_deref(),
        Some("Intel(R) Client Systems NUC11TNHi5")
    );
    assert_eq!(m.cpus, 8);
    assert_eq!(
        m.detect().map(|p| p.name).as_deref(),
        Some("intel-nuc-16gb")
    );
    let (p, source) = resolve(None, &m).unwrap();
    assert_eq!(
        (p.name.as_str(), source),
        ("intel-nuc-16gb", Source::Detected)
    );
}

#[test]
fn unknown_hardware_gets_the_generic_profile_scaled_to_it() {
    let (m, found) = detect_on(None, 3_884_328, "arm64");
    assert_eq!(found, None);
    let (p, source) = resolve(None, &m).unwrap();
    assert_eq!(source, Source::Generic);
    assert_eq!(p.name, "generic");
    assert_eq!(p.hardware.memory, m.mem_total);
    assert_eq!(p.hardware.architectures, vec!["arm64".to_string()]);
    // The rule, worked by hand for 3,884,328 kB (3793Mi) and 4 CPUs.
    assert_eq!(p.max_pods, 59);
    assert_eq!(p.budgets.agent, Bytes::mib(64)); // 2% = 75Mi, capped at 64Mi
    assert_eq!(p.budgets.containerd, Bytes::mib(32 + 4 * 59));
    assert_eq!(
        p.kube_reserved.memory,
        Bytes::mib(64 + 268 + 75) // the budgets + 2% of M
    );
    assert_eq!(p.system_reserved.memory, Bytes::mib(227)); // 6%
    assert_eq!(
        p.eviction_hard[&Signal::MemoryAvailable],
        Threshold::Quantity(Bytes::mib(189)) // 5%
    );
    assert_eq!(
        p.eviction_soft[&Signal::MemoryAvailable].threshold,
        Threshold::Quantity(Bytes::mib(378))
    );
    assert_eq!(p.kube_reserved.cpu.0, 300);
}

#[test]
fn the_generic_template_is_what_the_rule_gives_for_one_gib() {
    let template = builtin(GENERIC).unwrap();
    let machine = MachineInfo {
        model: None,
        mem_total: Bytes(1 << 30),
        cpus: 1,
        arch: "amd64".into(),
    };
    let derived = generic::derive(&template, &machine).unwrap();
    assert_eq!(derived.budgets, template.budgets);
    assert_eq!(derived.system_reserved, template.system_reserved);
    assert_eq!(derived.kube_reserved, template.kube_reserved);
    assert_eq!(derived.eviction_hard, template.eviction_hard);
    assert_eq!(derived.eviction_soft, template.eviction_soft);
    assert_eq!(derived.max_pods, template.max_pods);
}

#[test]
fn a_machine_too_small_for_the_generic_rule_is_refused() {
    let (m, _) = detect_on(None, 150 * 1024, "arm");
    let err = resolve(None, &m).unwrap_err().to_string();
    assert_eq!(
        err,
        "profile generic profile for this machine (150Mi MemTotal): the reservations leave nothing for pods: kubelet.systemReserved.memory 64Mi + kubelet.kubeReserved.memory 96Mi (which holds budgets.agent 32Mi and budgets.containerd 48Mi) + kubelet.evictionHard memory.available 32Mi = 192Mi, but hardware.memory is 150Mi; lower them or raise hardware.memory"
    );
}

#[test]
fn a_named_profile_bigger_than_the_machine_is_refused() {
    let (m, _) = detect_on(None, 300 * 1024, "amd64");
    let err = resolve(Some("intel-nuc-16gb"), &m).unwrap_err().to_string();
    assert_eq!(
        err,
        "profile intel-nuc-16gb does not fit this machine: its reservations (1716Mi) take all of this machine's memory (300Mi); pick a profile for a smaller device or `generic`"
    );
}

// ---- broken profiles: the exact error ----

fn zero() -> String {
    std::fs::read_to_string(profiles_dir().join("rpi-zero-2w.toml")).unwrap()
}

fn broken(from: &str, to: &str) -> String {
    let text = zero();
    assert!(text.contains(from), "the fixture has {from:?}");
    let text = text.replacen(from, to, 1);
    Profile::parse(&text, "/etc/kedge/profile.toml")
        .unwrap_err()
        .to_string()
}

#[test]
fn an_unknown_key_is_named_with_its_line() {
    let err = broken("maxPods = 8", "maxPod = 8");
    let line = zero()
        .lines()
        .position(|l| l.starts_with("maxPods"))
        .unwrap()
        + 1;
    assert_eq!(
        err,
        format!(
            "profile /etc/kedge/profile.toml: line {line}, column 1: unknown field `maxPod`, expected one of `systemReserved`, `kubeReserved`, `evictionHard`, `evictionSoft`, `evictionSoftGracePeriod`, `maxPods`, `imageGCHighThresholdPercent`, `imageGCLowThresholdPercent`, `containerLogMaxSize`, `containerLogMaxFiles`"
        )
    );
    let err = broken("[sync]\n", "[sync]\nbatchsize = 3\n");
    assert!(
        err.contains("unknown field `batchsize`, expected `batchSize`"),
        "{err}"
    );
    let err = broken("[tunnel]", "[tunel]");
    assert!(err.contains("unknown field `tunel`"), "{err}");
}

#[test]
fn budgets_beyond_memory_name_the_numbers() {
    assert_eq!(
        broken("memory = \"416Mi\"", "memory = \"200Mi\""),
        "profile /etc/kedge/profile.toml: the reservations leave nothing for pods: kubelet.systemReserved.memory 64Mi + kubelet.kubeReserved.memory 112Mi (which holds budgets.agent 32Mi and budgets.containerd 64Mi) + kubelet.evictionHard memory.available 40Mi = 216Mi, but hardware.memory is 200Mi; lower them or raise hardware.memory"
    );
    assert_eq!(
        broken("containerd = \"64Mi\"", "containerd = \"128Mi\""),
        "profile /etc/kedge/profile.toml: kubelet.kubeReserved.memory 112Mi is less than budgets.agent 32Mi plus budgets.containerd 128Mi (160Mi): kubeReserved is what the kube daemons may use, so raise it to at least 160Mi"
    );
}

#[test]
fn bad_quantities_and_thresholds() {
    assert_eq!(
        broken("agent = \"32Mi\"", "agent = \"32MB\""),
        "profile /etc/kedge/profile.toml: budgets.agent: \"32MB\" is not a valid memory quantity: write it like 100Mi, 1.5Gi, 512M or a number of bytes"
    );
    assert_eq!(
        broken(
            "\"nodefs.available\" = \"10%\"",
            "\"nodefs.available\" = \"110%\""
        ),
        "profile /etc/kedge/profile.toml: kubelet.evictionHard.\"nodefs.available\": \"110%\" is not a valid percentage: write it like 10% (more than 0, less than 100)"
    );
    assert_eq!(
        broken(
            "evictionSoft = { \"memory.available\" = \"64Mi\"",
            "evictionSoft = { \"memory.available\" = \"30Mi\""
        ),
        "profile /etc/kedge/profile.toml: kubelet.evictionSoft memory.available 30Mi must be more than kubelet.evictionHard memory.available 40Mi: the soft threshold is the early warning, crossed before the hard one"
    );
    assert_eq!(
        broken("\"memory.available\" = \"30s\", ", ""),
        "profile /etc/kedge/profile.toml: kubelet.evictionSoft.\"memory.available\" has no grace period; add it to kubelet.evictionSoftGracePeriod"
    );
    assert_eq!(
        broken(
            "\"memory.available\" = \"40Mi\"",
            "\"memory.free\" = \"40Mi\""
        ),
        "profile /etc/kedge/profile.toml: kubelet.evictionHard: unknown eviction signal \"memory.free\"; use one of memory.available, nodefs.available, nodefs.inodesFree, imagefs.available"
    );
    assert_eq!(
        broken(
            "imageGCLowThresholdPercent = 70",
            "imageGCLowThresholdPercent = 90"
        ),
        "profile /etc/kedge/profile.toml: kubelet.imageGCLowThresholdPercent 90 must be less than kubelet.imageGCHighThresholdPercent 80, which is at most 100"
    );
    assert_eq!(
        broken("keepalive = \"20s\"", "keepalive = \"2m\""),
        "profile /etc/kedge/profile.toml: tunnel.keepalive 2m must be between 1s and 30s (the tunnel's idle timeout is 45s, and carrier NATs forget a UDP flow after about 30s)"
    );
    assert_eq!(
        broken("backoffCap = \"2m\"", "backoffCap = \"soon\""),
        "profile /etc/kedge/profile.toml: tunnel.backoffCap: \"soon\" is not a valid duration: write it like 30s, 5m or 1h30m"
    );
    assert_eq!(
        broken(
            "architectures = [\"arm64\", \"arm\"]",
            "architectures = [\"aarch64\"]"
        ),
        "profile /etc/kedge/profile.toml: hardware.architectures: unknown architecture \"aarch64\"; use amd64, arm64, arm"
    );
    assert_eq!(
        broken("containerLogMaxFiles = 2", "containerLogMaxFiles = 1"),
        "profile /etc/kedge/profile.toml: kubelet.containerLogMaxFiles 1 must be at least 2 (the kubelet's rule: the live file and one rotated)"
    );
    let err = broken("maxPods = 8", "maxPods = \"8\"");
    assert!(
        err.starts_with("profile /etc/kedge/profile.toml: line ") && err.contains("invalid type"),
        "{err}"
    );
    let err = broken("batchSize = 16", "");
    assert!(err.contains("missing field `batchSize`"), "{err}");
}

#[test]
fn the_docs_table_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/hardware-profiles.md");
    let want = table::markdown();
    if std::env::var_os("KEDGE_UPDATE_DOCS").is_some() {
        let tmp = path.with_extension("md.tmp");
        std::fs::write(&tmp, &want).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "docs/hardware-profiles.md is stale: regenerate it with `{}` (or run this test with KEDGE_UPDATE_DOCS=1)",
        table::REGENERATE
    );
}
