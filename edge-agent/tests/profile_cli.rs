//! `kedge-agent profile …`, `--profile` and `--config`, on the real binary.

use std::path::Path;
use std::process::{Command, Output};

fn agent() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kedge-agent"));
    // Nothing from the environment of whoever runs the tests.
    for var in [
        "KEDGE_URL",
        "KEDGE_TOKEN",
        "KEDGE_PROFILE",
        "KEDGE_CONFIG_FILE",
        "KEDGE_DATA_DIR",
    ] {
        c.env_remove(var);
    }
    c
}

fn run(cmd: &mut Command) -> (bool, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("run kedge-agent");
    (
        status.success(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn zero_profile() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../hardware-profiles/profiles/rpi-zero-2w.toml");
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn profile_list_shows_every_built_in_profile() {
    let (ok, out, err) = run(agent().args(["profile", "list"]));
    assert!(ok, "{err}");
    for name in [
        "rpi-zero-2w",
        "rpi-3b",
        "rpi-4-2gb",
        "rpi-4-8gb",
        "rpi-5-4gb",
        "jetson-nano-4gb",
        "intel-nuc-16gb",
        "5g-edge-zone",
        "generic",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(&format!("{name} "))),
            "{name} in\n{out}"
        );
    }
}

#[test]
fn profile_show_and_its_systemd_drop_in() {
    let (ok, out, err) = run(agent().args(["profile", "show", "rpi-zero-2w"]));
    assert!(ok, "{err}");
    assert!(
        out.contains("budgets: agent 32Mi, containerd 64Mi\n"),
        "{out}"
    );
    assert!(
        out.contains("allocatable: memory 200Mi, cpu 3700m, pods 8\n"),
        "{out}"
    );
    let (ok, out, err) = run(agent().args(["profile", "show", "rpi-zero-2w", "--systemd"]));
    assert!(ok, "{err}");
    assert!(out.contains("[Service]\n"), "{out}");
    assert!(out.contains("\nMemoryMax=96M\n"), "{out}");
    assert!(out.contains("\nMemoryHigh=86M\n"), "{out}");
    assert!(out.contains("\nOOMScoreAdjust=-999\n"), "{out}");
    // generic is derived for the machine the command runs on.
    let (ok, out, err) = run(agent().args(["profile", "show", "generic"]));
    assert!(ok, "{err}");
    assert!(
        out.contains("description: derived from this machine: "),
        "{out}"
    );
    let (ok, _, err) = run(agent().args(["profile", "show", "rpi-6"]));
    assert!(!ok);
    assert!(
        err.starts_with("kedge-agent: unknown profile \"rpi-6\": give one of rpi-zero-2w, "),
        "{err}"
    );
}

#[test]
fn profile_check_gives_the_exact_error() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, zero_profile()).unwrap();
    let (ok, out, err) = run(agent().args(["profile", "check"]).arg(&good));
    assert!(ok, "{err}");
    assert_eq!(
        out,
        format!("{}: ok, profile rpi-zero-2w\n", good.display())
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        zero_profile().replace("memory = \"416Mi\"", "memory = \"200Mi\""),
    )
    .unwrap();
    let (ok, _, err) = run(agent().args(["profile", "check"]).arg(&bad));
    assert!(!ok);
    assert_eq!(
        err,
        format!(
            "kedge-agent: profile {}: the reservations leave nothing for pods: kubelet.systemReserved.memory 64Mi + kubelet.kubeReserved.memory 112Mi (which holds budgets.agent 32Mi and budgets.containerd 64Mi) + kubelet.evictionHard memory.available 40Mi = 216Mi, but hardware.memory is 200Mi; lower them or raise hardware.memory\n",
            bad.display()
        )
    );
}

#[test]
fn profile_detect_reads_a_root() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::create_dir_all(r.join("proc/device-tree")).unwrap();
    std::fs::create_dir_all(r.join("sys/devices/system/cpu")).unwrap();
    std::fs::write(
        r.join("proc/device-tree/model"),
        "Raspberry Pi 4 Model B Rev 1.4\0",
    )
    .unwrap();
    std::fs::write(r.join("proc/meminfo"), "MemTotal:        1917468 kB\n").unwrap();
    std::fs::write(r.join("sys/devices/system/cpu/online"), "0-3\n").unwrap();
    let (ok, out, err) = run(agent().args(["profile", "detect", "--root"]).arg(r));
    assert!(ok, "{err}");
    assert!(
        out.contains("model: Raspberry Pi 4 Model B Rev 1.4\n"),
        "{out}"
    );
    assert!(out.contains("cpus: 4\n"), "{out}");
    if cfg!(any(target_arch = "aarch64", target_arch = "arm")) {
        assert!(out.ends_with("profile: rpi-4-2gb (Detected)\n"), "{out}");
    } else {
        // The Pi profiles are for ARM: an x86 agent reading this root falls back.
        assert!(out.ends_with("profile: generic (Generic)\n"), "{out}");
    }
}

#[test]
fn a_broken_profile_stops_the_agent_before_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("profile.toml");
    std::fs::write(&bad, zero_profile().replace("maxPods = 8", "maxPod = 8")).unwrap();
    let (ok, _, err) = run(agent()
        .args(["--server", "https://127.0.0.1:1", "--token", "K10x::a.b"])
        .arg("--profile")
        .arg(&bad)
        .arg("--data-dir")
        .arg(dir.path().join("data")));
    assert!(!ok);
    assert!(
        err.contains(&format!(
            "kedge-agent: hardware profile: profile {}: line ",
            bad.display()
        )) && err.contains("unknown field `maxPod`"),
        "{err}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "nothing was written before the profile was checked"
    );
}

#[test]
fn config_file_flags_and_env_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.yaml");
    // Three profile files that do not exist: the error says which one won.
    std::fs::write(
        &config,
        "server: https://127.0.0.1:1\ntoken: K10x::a.b\nprofile: /nonexistent/from-file.toml\nnode-label:\n  - zone=a\n",
    )
    .unwrap();
    let with = |extra: &[&str], env: Option<&str>| {
        let mut c = agent();
        c.arg("--config").arg(&config).args(extra);
        if let Some(p) = env {
            c.env("KEDGE_PROFILE", p);
        }
        let (ok, _, err) = run(&mut c);
        assert!(!ok);
        err
    };
    let err = with(&[], None);
    assert!(
        err.contains("cannot read the profile file /nonexistent/from-file.toml"),
        "{err}"
    );
    let err = with(&[], Some("/nonexistent/from-env.toml"));
    assert!(err.contains("/nonexistent/from-env.toml"), "{err}");
    let err = with(
        &["--profile", "/nonexistent/from-flag.toml"],
        Some("/nonexistent/from-env.toml"),
    );
    assert!(err.contains("/nonexistent/from-flag.toml"), "{err}");

    // KEDGE_CONFIG_FILE names the file too; an unknown key is named.
    std::fs::write(&config, "server: https://127.0.0.1:1\nnode-labels: [a=b]\n").unwrap();
    let (ok, _, err) = run(agent().env("KEDGE_CONFIG_FILE", &config));
    assert!(!ok);
    assert!(
        err.starts_with(&format!(
            "kedge-agent: config file {}: unknown key \"node-labels\"; the keys are the long flag names: ",
            config.display()
        )),
        "{err}"
    );
}
