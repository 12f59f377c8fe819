//! The agent's packages (issue 8), for real: the cross-built arm64 and armv7 agents run
//! under qemu-user and join a real x86_64 `kedge server` over the tunnel; the .deb
//! installs with dpkg into a Debian tree made by debootstrap, its unit passes
//! `systemd-analyze verify`, and install.sh (from the .deb and from the tarball) writes
//! the config and the profile's drop-in that the installed agent then joins with.
//!
//! These tests need the packages that `scripts/setup-cross.sh` installs (qemu-user-static,
//! debootstrap), root, the Debian mirror, and the cross builds of `scripts/build-agent.sh`
//! and `scripts/package-agent.sh`, which take about 40 minutes on two cores. They are
//! `#[ignore]`d in `cargo test --workspace` for that reason; `scripts/accept-packages.sh`
//! builds everything and runs them. (CI builds the arm64 agent only, for the size
//! budget.) A test that finds something missing fails and names what to run.
//!
//! `KEDGE_AGENT_DIST` and `KEDGE_AGENT_PACKAGES` point them at other build outputs
//! (default `target/cross/dist` and `target/cross/packages`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::Cluster;
use common::agent::{Agent, server_token, wait_ready};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn dist() -> PathBuf {
    std::env::var_os("KEDGE_AGENT_DIST")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/cross/dist"))
}

fn packages() -> PathBuf {
    std::env::var_os("KEDGE_AGENT_PACKAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/cross/packages"))
}

#[track_caller]
fn need_file(path: &Path, how: &str) -> PathBuf {
    assert!(path.exists(), "{} is missing: {how}", path.display());
    path.to_path_buf()
}

#[track_caller]
fn need_program(name: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        found,
        "{name} is missing: install {package} (scripts/setup-cross.sh does)"
    );
}

#[track_caller]
fn need_root(what: &str) {
    let out = Command::new("id").arg("-u").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0",
        "{what} needs root: run the test as root (scripts/accept-packages.sh under sudo)"
    );
}

#[track_caller]
fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// One cross-built agent, and how to run it here.
struct Target {
    arch: &'static str,
    qemu: &'static str,
    sysroot: &'static str,
    go_arch: &'static str,
    profile: &'static str,
}

const ARM64: Target = Target {
    arch: "arm64",
    qemu: "qemu-aarch64-static",
    sysroot: "/usr/aarch64-linux-gnu",
    go_arch: "arm64",
    profile: "rpi-4-2gb",
};
const ARMHF: Target = Target {
    arch: "armhf",
    qemu: "qemu-arm-static",
    sysroot: "/usr/arm-linux-gnueabihf",
    go_arch: "arm",
    profile: "rpi-zero-2w",
};

impl Target {
    fn binary(&self) -> PathBuf {
        need_file(
            &dist().join(self.arch).join("kedge-agent"),
            &format!("run scripts/build-agent.sh --arch {}", self.arch),
        )
    }

    /// The agent under qemu-user, with the target's glibc from the cross sysroot.
    fn command(&self, args: &[&str]) -> Command {
        need_program(self.qemu, "qemu-user-static");
        need_file(
            &Path::new(self.sysroot).join("lib"),
            "install the cross glibc (libc6-dev-arm64-cross, libc6-dev-armhf-cross)",
        );
        // The sysroot through the environment, not `-L`: the agent executes itself once
        // at start (to set MALLOC_ARENA_MAX), and that exec reaches qemu through
        // binfmt_misc, which passes no arguments but keeps the environment.
        let mut cmd = Command::new(self.qemu);
        cmd.env("QEMU_LD_PREFIX", self.sysroot)
            .arg(self.binary())
            .args(args);
        cmd
    }

    /// The agent joining `cluster` as `node`, with its state in `dir`.
    fn agent(&self, cluster: &Cluster, dir: &Path, node: &str, token: &str) -> Agent {
        let mut cmd = self.command(&[]);
        cmd.arg("--server")
            .arg(cluster.server_url())
            .arg("--token")
            .arg(token)
            .arg("--node-name")
            .arg(node)
            .arg("--data-dir")
            .arg(dir)
            .arg("--node-password-file")
            .arg(dir.join("node-password"))
            .arg("--profile")
            .arg(self.profile)
            // The runtime (containerd, CNI, cgroups) would act on this host, and the two
            // agents would share its bridge: this test is about the join and the link.
            .arg("--disable-runtime")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        Agent::spawn(cmd)
    }
}

/// The node's Ready status, its labels, and its Lease's renewTime (`None` while the
/// Lease does not exist yet: the server makes it at its first renewal after the join).
fn node_state(cluster: &Cluster, node: &str) -> (String, serde_json::Value, Option<String>) {
    let n = json(&cluster.ok(&["get", "node", node, "-o", "json"]));
    let ready = n["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .map(|c| c["status"].as_str().unwrap_or("").to_string())
        .unwrap_or_default();
    let out = cluster.kubectl(&["get", "lease", "-n", "kube-node-lease", node, "-o", "json"]);
    let renew = if out.status.success() {
        let lease = json(&String::from_utf8_lossy(&out.stdout));
        lease["spec"]["renewTime"].as_str().map(str::to_string)
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("NotFound"), "kubectl get lease {node}: {err}");
        None
    };
    (ready, n["metadata"]["labels"].clone(), renew)
}

#[test]
#[ignore = "needs the cross-built agents and qemu-user: scripts/accept-packages.sh"]
fn arm_agents_under_qemu_join_and_stay_ready_for_a_minute() {
    for t in [&ARM64, &ARMHF] {
        let out = t.command(&["--version"]).output().unwrap();
        assert!(
            out.status.success(),
            "the {} agent does not run under {}: {}",
            t.arch,
            t.qemu,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let cluster = Cluster::sqlite();
    let token = server_token(&cluster);
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let targets = [&ARM64, &ARMHF];
    let nodes: Vec<String> = targets.iter().map(|t| format!("qemu-{}", t.arch)).collect();
    let started = Instant::now();
    let mut agents: Vec<Agent> = targets
        .iter()
        .zip(&dirs)
        .zip(&nodes)
        .map(|((t, dir), node)| t.agent(&cluster, dir.path(), node, &token))
        .collect();
    for (t, node) in targets.iter().zip(&nodes) {
        wait_ready(
            &cluster,
            node,
            &format!("the {} agent under qemu joins", t.arch),
            Duration::from_secs(180),
        );
        eprintln!(
            "{}: Ready {:.1} s after both agents started",
            t.arch,
            started.elapsed().as_secs_f64()
        );
    }
    for (t, node) in targets.iter().zip(&nodes) {
        let (_, labels, _) = node_state(&cluster, node);
        assert_eq!(
            labels["kubernetes.io/arch"], t.go_arch,
            "{node}: labels {labels}"
        );
        assert_eq!(
            labels["kedge.io/profile"], t.profile,
            "{node}: labels {labels}"
        );
    }

    // A minute of heartbeats: Ready the whole time, the Lease renewed again and again.
    let minute = Instant::now();
    let mut renewals: Vec<Vec<String>> = vec![Vec::new(); nodes.len()];
    while minute.elapsed() < Duration::from_secs(60) {
        for (i, node) in nodes.iter().enumerate() {
            let (ready, _, renew) = node_state(&cluster, node);
            assert_eq!(
                ready,
                "True",
                "{node} left Ready after {:?}; the agent said:\n{}",
                minute.elapsed(),
                agents[i].drain()
            );
            if let Some(renew) = renew
                && renewals[i].last() != Some(&renew)
            {
                renewals[i].push(renew);
            }
        }
        for (agent, node) in agents.iter_mut().zip(&nodes) {
            assert!(
                agent.child.try_wait().unwrap().is_none(),
                "the agent of {node} exited:\n{}",
                agent.drain()
            );
        }
        std::thread::sleep(Duration::from_secs(5));
    }
    for (node, seen) in nodes.iter().zip(&renewals) {
        // The Lease is renewed every 10 s while the node's tunnel is up (by the agent, or
        // by the server holding the tunnel): a minute holds at least five renewals.
        assert!(
            seen.len() >= 5,
            "{node}'s Lease was renewed only {} times in a minute: {seen:?}",
            seen.len()
        );
        eprintln!("{node}: Ready for 60 s, {} Lease renewals seen", seen.len());
    }
}

/// What a built binary needs from the device: its shared libraries and glibc symbol
/// versions stay within Raspberry Pi OS Bookworm (glibc 2.36).
#[test]
#[ignore = "needs the cross-built agents: scripts/accept-packages.sh"]
fn cross_built_agents_need_nothing_a_bookworm_device_lacks() {
    for (arch, tools) in [
        ("arm64", "aarch64-linux-gnu-"),
        ("armhf", "arm-linux-gnueabihf-"),
        ("amd64", "x86_64-linux-gnu-"),
    ] {
        let bin = need_file(
            &dist().join(arch).join("kedge-agent"),
            &format!("run scripts/build-agent.sh --arch {arch}"),
        );
        let dynamic = run_ok(Command::new(format!("{tools}readelf")).arg("-d").arg(&bin));
        let needed: Vec<&str> = dynamic
            .lines()
            .filter(|l| l.contains("(NEEDED)"))
            .filter_map(|l| l.split('[').nth(1)?.split(']').next())
            .collect();
        for lib in &needed {
            assert!(
                ["libc.so.6", "libm.so.6", "libgcc_s.so.1"].contains(lib),
                "{arch}: kedge-agent needs {lib}, which a minimal device may lack; needs {needed:?}"
            );
        }
        let symbols = run_ok(Command::new(format!("{tools}objdump")).arg("-T").arg(&bin));
        let floor = symbols
            .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
            .filter_map(|w| w.strip_prefix("GLIBC_"))
            .filter_map(|v| {
                let mut p = v.split('.').map(|x| x.parse::<u32>().ok());
                Some((p.next()??, p.next().flatten().unwrap_or(0)))
            })
            .max()
            .expect("the agent links glibc");
        assert!(
            floor <= (2, 36),
            "{arch}: kedge-agent needs glibc {}.{}, newer than Raspberry Pi OS Bookworm's 2.36",
            floor.0,
            floor.1
        );
        eprintln!(
            "{arch}: needs {needed:?}, glibc floor {}.{}",
            floor.0, floor.1
        );
        let pause = dist().join(arch).join("kedge-pause");
        if pause.exists() {
            let dynamic = run_ok(
                Command::new(format!("{tools}readelf"))
                    .arg("-d")
                    .arg(&pause),
            );
            assert!(
                !dynamic.contains("(NEEDED)"),
                "{arch}: kedge-pause must be static (it runs in a rootfs holding only itself):\n{dynamic}"
            );
        }
    }
}

/// A Debian bookworm tree for `arch`, made once by debootstrap (with what the .deb
/// depends on) and kept under target/cross/rootfs; each test works in an overlay of it.
fn debian_tree(arch: &str) -> PathBuf {
    need_root("debootstrap and chroot");
    need_program("debootstrap", "debootstrap");
    let base = workspace().join("target/cross/rootfs");
    let tree = base.join(format!("bookworm-{arch}"));
    if tree.join("usr/bin/dpkg").exists() {
        return tree;
    }
    std::fs::create_dir_all(&base).unwrap();
    let tmp = base.join(format!("bookworm-{arch}.tmp"));
    let _ = std::fs::remove_dir_all(&tmp);
    let started = Instant::now();
    run_ok(
        Command::new("debootstrap")
            .arg("--variant=minbase")
            .arg(format!("--arch={arch}"))
            .arg("--include=systemd,containerd,runc,containernetworking-plugins,iproute2,nftables")
            .arg("bookworm")
            .arg(&tmp)
            .arg("http://deb.debian.org/debian"),
    );
    std::fs::rename(&tmp, &tree).unwrap();
    eprintln!(
        "debootstrap bookworm {arch}: {:.0} s",
        started.elapsed().as_secs_f64()
    );
    tree
}

/// A throwaway overlay of a Debian tree, with /proc, /sys and /dev inside, torn down on
/// drop.
struct Chroot {
    root: PathBuf,
    _dir: tempfile::TempDir,
}

impl Chroot {
    fn new(lower: &Path) -> Chroot {
        let dir = tempfile::tempdir().unwrap();
        let (upper, work, root) = (
            dir.path().join("upper"),
            dir.path().join("work"),
            dir.path().join("root"),
        );
        for d in [&upper, &work, &root] {
            std::fs::create_dir(d).unwrap();
        }
        run_ok(
            Command::new("mount")
                .args(["-t", "overlay", "overlay", "-o"])
                .arg(format!(
                    "lowerdir={},upperdir={},workdir={}",
                    lower.display(),
                    upper.display(),
                    work.display()
                ))
                .arg(&root),
        );
        let c = Chroot { root, _dir: dir };
        run_ok(
            Command::new("mount")
                .args(["-t", "proc", "proc"])
                .arg(c.root.join("proc")),
        );
        run_ok(
            Command::new("mount")
                .args(["--rbind", "/sys"])
                .arg(c.root.join("sys")),
        );
        run_ok(
            Command::new("mount")
                .args(["--rbind", "/dev"])
                .arg(c.root.join("dev")),
        );
        // The agent reads the host's name; the tree's resolv.conf is not needed (loopback).
        c
    }

    fn path(&self, inside: &str) -> PathBuf {
        self.root.join(inside.trim_start_matches('/'))
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("chroot");
        cmd.arg(&self.root)
            .args(args)
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("LANG", "C.UTF-8");
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        run_ok(&mut self.command(args))
    }

    /// Copies a file from the host into the tree.
    fn put(&self, host: &Path, inside: &str) {
        std::fs::copy(host, self.path(inside)).unwrap();
    }
}

impl Drop for Chroot {
    fn drop(&mut self) {
        for m in ["dev", "sys", "proc", ""] {
            let _ = Command::new("umount")
                .arg("-R")
                .arg("-l")
                .arg(self.root.join(m))
                .status();
        }
    }
}

#[track_caller]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// `systemd-analyze verify` of the unit as installed in the tree, with its drop-ins.
#[track_caller]
fn verify_unit(chroot: &Chroot, unit: &str) {
    let out = chroot.run(&["systemd-analyze", "verify", unit]);
    let err = String::from_utf8_lossy(&out.stderr);
    // Lines about other units of the tree are not ours to judge.
    let ours: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("kedge-agent") || l.contains(unit))
        .collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify {unit} ({}):\n{err}",
        out.status
    );
}

/// The version the packages carry (the workspace's).
fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// Joins `cluster` with the agent the packages installed, as the unit would start it
/// (`--config /etc/kedge/agent.yaml`), and waits for its node to be Ready with `profile`.
fn installed_agent_joins(cluster: &Cluster, chroot: &Chroot, bin: &str, node: &str, profile: &str) {
    // --disable-runtime on top of the config (a flag wins over the file): the runtime
    // would start containerd and set up pod networking on this host, outside the tree.
    let mut cmd = chroot.command(&[
        bin,
        "--config",
        "/etc/kedge/agent.yaml",
        "--disable-runtime",
    ]);
    cmd.env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut agent = Agent::spawn(cmd);
    wait_ready(
        cluster,
        node,
        "the agent installed by install.sh joins with its config",
        Duration::from_secs(60),
    );
    let (_, labels, _) = node_state(cluster, node);
    assert_eq!(labels["kedge.io/profile"], profile, "labels {labels}");
    assert_eq!(labels["site"], "test-lab", "labels {labels}");
    agent.drain();
}

#[test]
#[ignore = "needs root, debootstrap, the Debian mirror and the packages: scripts/accept-packages.sh"]
fn amd64_deb_installs_into_a_debian_tree_and_install_sh_configures_it() {
    deb_installs_and_install_sh_configures_it("amd64", "deb-amd64");
}

/// The arm64 .deb in an arm64 tree: dpkg, its maintainer scripts, systemd-analyze and
/// the installed agent all run under qemu-user through binfmt_misc.
#[test]
#[ignore = "needs root, binfmt_misc with qemu-aarch64, debootstrap, the Debian mirror and the packages: scripts/accept-packages.sh"]
fn arm64_deb_installs_into_an_arm64_tree_under_qemu() {
    need_binfmt("qemu-aarch64");
    deb_installs_and_install_sh_configures_it("arm64", "deb-arm64");
}

/// A tree of another arch runs only with the kernel handing its binaries to qemu.
#[track_caller]
fn need_binfmt(name: &str) {
    let entry = Path::new("/proc/sys/fs/binfmt_misc").join(name);
    let text = std::fs::read_to_string(&entry).unwrap_or_default();
    assert!(
        text.starts_with("enabled") && text.contains("flags: ") && text.contains('F'),
        "{} is not registered with the F flag, so a chroot of that arch cannot run: \
         scripts/accept-packages.sh registers it (mount binfmt_misc, then \
         /usr/lib/binfmt.d/{name}.conf into /proc/sys/fs/binfmt_misc/register)",
        entry.display()
    );
}

/// The profile for the installed agents: 5g-edge-zone is one for both amd64 and arm64
/// (the agent refuses a profile whose architectures do not include its own).
const TREE_PROFILE: &str = "5g-edge-zone";

fn deb_installs_and_install_sh_configures_it(arch: &str, node: &str) {
    let deb = need_file(
        &packages().join(format!("kedge-agent_{}_{arch}.deb", version())),
        &format!(
            "run scripts/build-agent.sh --arch {arch} && scripts/package-agent.sh --arch {arch}"
        ),
    );
    let tree = debian_tree(arch);
    let chroot = Chroot::new(&tree);
    chroot.put(&deb, "/tmp/kedge-agent.deb");
    chroot.ok(&["dpkg", "-i", "/tmp/kedge-agent.deb"]);

    let status = chroot.ok(&["dpkg-query", "-W", "-f=${Status} ${Version}", "kedge-agent"]);
    assert_eq!(status, format!("install ok installed {}", version()));
    for (file, want) in [
        ("/usr/bin/kedge-agent", 0o755),
        ("/lib/systemd/system/kedge-agent.service", 0o644),
        ("/usr/share/kedge-agent/install.sh", 0o755),
        ("/usr/share/kedge-agent/agent.yaml", 0o644),
        // the default config, made by postinst: 0600 from the start, as it will hold the token
        ("/etc/kedge/agent.yaml", 0o600),
    ] {
        assert_eq!(mode(&chroot.path(file)), want, "{file}");
    }
    if dist().join(arch).join("kedge-pause").exists() {
        assert_eq!(mode(&chroot.path("/usr/bin/kedge-pause")), 0o755);
    }
    let unit =
        std::fs::read_to_string(chroot.path("/lib/systemd/system/kedge-agent.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/bin/kedge-agent --config /etc/kedge/agent.yaml"),
        "{unit}"
    );
    for line in ["KillMode=process", "Delegate=yes", "Restart=always"] {
        assert!(
            unit.lines().any(|l| l == line),
            "the unit lacks {line}:\n{unit}"
        );
    }
    assert!(
        chroot
            .ok(&["/usr/bin/kedge-agent", "--version"])
            .contains(version())
    );
    verify_unit(&chroot, "/lib/systemd/system/kedge-agent.service");

    // install.sh from the .deb: the config with the token (0600), the profile's drop-in,
    // the unit enabled for the next boot (systemd does not run in a chroot).
    let cluster = Cluster::sqlite();
    let token = server_token(&cluster);
    let server = cluster.server_url();
    let out = chroot
        .command(&[
            "/usr/share/kedge-agent/install.sh",
            "--server",
            &server,
            "--token",
            &token,
            "--profile",
            TREE_PROFILE,
            "--node-name",
            node,
            "--node-label",
            "site=test-lab",
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "install.sh failed:\n{said}");
    assert!(
        !said.contains(&token),
        "install.sh printed the token:\n{said}"
    );
    assert!(said.contains("enabled for the next boot"), "{said}");
    // The tree's containerd package enabled its own service; the agent runs its own
    // containerd, and install.sh says the other one only takes memory.
    assert!(
        said.contains("containerd.service is enabled, but kedge-agent starts its own"),
        "{said}"
    );
    let config_path = chroot.path("/etc/kedge/agent.yaml");
    assert_eq!(mode(&config_path), 0o600);
    let config = std::fs::read_to_string(&config_path).unwrap();
    assert!(config.contains(&format!("token: '{token}'")), "{config}");
    assert!(
        config.contains(&format!("profile: '{TREE_PROFILE}'")),
        "{config}"
    );
    let dropin = std::fs::read_to_string(
        chroot.path("/etc/systemd/system/kedge-agent.service.d/profile.conf"),
    )
    .unwrap();
    assert!(
        dropin.lines().any(|l| l.starts_with("MemoryMax=")),
        "{dropin}"
    );
    let wants = chroot.path("/etc/systemd/system/multi-user.target.wants/kedge-agent.service");
    assert!(
        wants.symlink_metadata().is_ok(),
        "install.sh did not enable the unit ({} is missing); it said:\n{said}",
        wants.display()
    );
    verify_unit(&chroot, "kedge-agent.service");

    installed_agent_joins(
        &cluster,
        &chroot,
        "/usr/bin/kedge-agent",
        node,
        TREE_PROFILE,
    );

    // Bad input is refused before anything is written.
    let out = chroot.run(&[
        "/usr/share/kedge-agent/install.sh",
        "--server",
        "http://plain:6443",
        "--token",
        "x",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("must be an https:// URL"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Purge takes the config (it holds the token) and the drop-in; the state stays.
    chroot.ok(&["dpkg", "--purge", "kedge-agent"]);
    for gone in [
        "/usr/bin/kedge-agent",
        "/etc/kedge/agent.yaml",
        "/etc/systemd/system/kedge-agent.service.d",
        "/lib/systemd/system/kedge-agent.service",
    ] {
        assert!(!chroot.path(gone).exists(), "{gone} outlived dpkg --purge");
    }
}

#[test]
#[ignore = "needs root, debootstrap, the Debian mirror and the packages: scripts/accept-packages.sh"]
fn tarball_install_sh_installs_into_a_debian_tree() {
    let name = format!("kedge-agent-{}-linux-amd64", version());
    let tarball = need_file(
        &packages().join(format!("{name}.tar.gz")),
        "run scripts/build-agent.sh --arch amd64 && scripts/package-agent.sh --arch amd64",
    );
    let tree = debian_tree("amd64");
    let chroot = Chroot::new(&tree);
    run_ok(
        Command::new("tar")
            .arg("-xzf")
            .arg(&tarball)
            .arg("-C")
            .arg(chroot.path("/tmp")),
    );
    let cluster = Cluster::sqlite();
    let token = server_token(&cluster);
    let token_file = chroot.path("/tmp/token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let install = format!("/tmp/{name}/install.sh");
    let server = cluster.server_url();
    let out = chroot
        .command(&[
            &install,
            "--server",
            &server,
            "--token-file",
            "/tmp/token",
            "--profile",
            TREE_PROFILE,
            "--node-name",
            "tarball-node",
            "--node-label",
            "site=test-lab",
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "install.sh failed:\n{said}");
    assert_eq!(mode(&chroot.path("/usr/local/bin/kedge-agent")), 0o755);
    assert_eq!(mode(&chroot.path("/etc/kedge/agent.yaml")), 0o600);
    let unit =
        std::fs::read_to_string(chroot.path("/etc/systemd/system/kedge-agent.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/local/bin/kedge-agent --config /etc/kedge/agent.yaml"),
        "{unit}"
    );
    verify_unit(&chroot, "/etc/systemd/system/kedge-agent.service");
    installed_agent_joins(
        &cluster,
        &chroot,
        "/usr/local/bin/kedge-agent",
        "tarball-node",
        TREE_PROFILE,
    );
}
