//! kedge-pause as it is used: the binary cargo built for this package, static, alone in a
//! read-only rootfs, run by the real runc in a container that joins a pinned network
//! namespace; it stays up, reaps orphans as PID 1, and exits 0 on SIGTERM.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const PAUSE: &str = env!("CARGO_BIN_EXE_kedge-pause");

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (runc, network namespaces): run it as root"
    );
}

fn require_program(program: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{program} is missing: install the Debian package {package} (scripts/setup.sh does)"
    );
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "process {} did not exit within {within:?}",
            child.id()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_binary_is_static_and_small() {
    let dir = tempfile::tempdir().unwrap();
    // prepare_pause_rootfs refuses a dynamically linked binary
    let rootfs = kedge_cni::prepare_pause_rootfs(dir.path(), Path::new(PAUSE)).unwrap();
    assert_eq!(rootfs.rootfs, dir.path().join("agent/pause/rootfs"));
    assert_eq!(rootfs.args, ["/pause"]);
    let installed = rootfs.rootfs.join("pause");
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(PAUSE).unwrap()
    );
    assert_eq!(std::fs::metadata(&installed).unwrap().mode() & 0o777, 0o555);
    let mut entries: Vec<String> = std::fs::read_dir(&rootfs.rootfs)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    entries.sort();
    assert_eq!(entries, ["dev", "pause", "proc", "sys"]);
    // preparing again changes nothing and leaves no temp files
    kedge_cni::prepare_pause_rootfs(dir.path(), Path::new(PAUSE)).unwrap();
    assert_eq!(std::fs::read_dir(&rootfs.rootfs).unwrap().count(), 4);

    let out = Command::new(PAUSE).arg("-v").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("kedge-pause "));
    let out = Command::new(PAUSE).arg("--bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown argument"));
}

#[test]
fn it_stays_up_and_exits_zero_on_sigterm_and_sigint() {
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        let mut child = Command::new(PAUSE).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            child.try_wait().unwrap().is_none(),
            "pause exited on its own"
        );
        // signals it must ignore
        kill(Pid::from_raw(child.id() as i32), Signal::SIGCHLD).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            child.try_wait().unwrap().is_none(),
            "pause exited on SIGCHLD"
        );
        kill(Pid::from_raw(child.id() as i32), signal).unwrap();
        let status = wait_exit(&mut child, Duration::from_secs(5));
        assert_eq!(status.code(), Some(0), "{signal:?} gave {status}");
    }
}

/// A runc container that is deleted (and its netns removed) however the test ends.
struct Container {
    id: String,
    netns: kedge_cni::NetnsDir,
    netns_name: String,
    runc: Option<Child>,
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("runc")
            .args(["kill", &self.id, "KILL"])
            .output();
        if let Some(mut child) = self.runc.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("runc")
            .args(["delete", "--force", &self.id])
            .output();
        let _ = self.netns.remove(&self.netns_name);
    }
}

fn runc_pid(id: &str) -> Option<i32> {
    let out = Command::new("runc").args(["state", id]).output().ok()?;
    let state: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    if state["status"] != "running" {
        return None;
    }
    state["pid"].as_i64().map(|p| p as i32)
}

/// Host pids whose parent is `ppid`, with their state letter.
fn children_of(ppid: i32) -> Vec<(i32, char)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so parse after the last ')'
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r.trim()) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        if fields.next().and_then(|p| p.parse::<i32>().ok()) == Some(ppid) {
            out.push((pid, state));
        }
    }
    out
}

#[test]
fn under_runc_it_joins_the_pinned_netns_reaps_orphans_and_exits_zero_on_sigterm() {
    require_root();
    require_program("runc", "runc");
    require_program("nsenter", "util-linux");

    let id = format!("kedge-pause-test-{}", std::process::id());
    let netns = kedge_cni::NetnsDir::default();
    let netns_name = format!("{id}-net");
    let _ = netns.remove(&netns_name);
    let mut container = Container {
        id: id.clone(),
        netns: netns.clone(),
        netns_name: netns_name.clone(),
        runc: None,
    };
    let ns = netns.create(&netns_name).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let rootfs = kedge_cni::prepare_pause_rootfs(dir.path(), Path::new(PAUSE)).unwrap();
    let bundle = dir.path().join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    let spec = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": rootfs.args,
            "env": [],
            "cwd": "/",
            "noNewPrivileges": true
        },
        "root": {"path": rootfs.rootfs, "readonly": true},
        "hostname": "pause",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=64k"]}
        ],
        "linux": {
            "namespaces": [
                {"type": "pid"},
                {"type": "network", "path": ns.path()},
                {"type": "ipc"},
                {"type": "uts"},
                {"type": "mount"}
            ]
        }
    });
    std::fs::write(
        bundle.join("config.json"),
        serde_json::to_vec_pretty(&spec).unwrap(),
    )
    .unwrap();

    // `runc run` in the foreground returns the container's exit status
    let child = Command::new("runc")
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(&id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    container.runc = Some(child);

    let deadline = Instant::now() + Duration::from_secs(20);
    let pid = loop {
        if let Some(pid) = runc_pid(&id) {
            break pid;
        }
        if let Some(status) = container.runc.as_mut().unwrap().try_wait().unwrap() {
            let out = container.runc.take().unwrap().wait_with_output().unwrap();
            panic!(
                "runc run exited with {status}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            Instant::now() < deadline,
            "the container did not start within 20 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };

    // it is our binary, in the pinned network namespace
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .unwrap()
            .trim(),
        "pause"
    );
    let pinned = std::fs::metadata(ns.path()).unwrap().ino();
    let joined = std::fs::metadata(format!("/proc/{pid}/ns/net"))
        .unwrap()
        .ino();
    assert_eq!(pinned, joined, "the container is not in the pinned netns");
    // and PID 1 of its own PID namespace
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert_eq!(nspid.split_whitespace().last(), Some("1"), "{nspid}");

    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(runc_pid(&id), Some(pid), "pause did not stay up");

    // An orphan in its PID namespace: nsenter forks into it, sh starts `sleep 1` in the
    // background and exits, so sleep's parent becomes pause (the namespace's init); when
    // sleep exits, pause must reap it.
    let orphan = Command::new("nsenter")
        .args([
            "-t",
            &pid.to_string(),
            "-p",
            "--",
            "/bin/sh",
            "-c",
            "sleep 1 & exit 0",
        ])
        .status()
        .unwrap();
    assert!(orphan.success());
    let mut adopted = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let kids = children_of(pid);
        if !kids.is_empty() {
            adopted = true;
        }
        if adopted && kids.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pause's children after 10 s: {kids:?} (a 'Z' is an unreaped zombie); adopted: {adopted}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // SIGTERM from the runtime: exit status 0
    let killed = Command::new("runc")
        .args(["kill", &id, "TERM"])
        .output()
        .unwrap();
    assert!(
        killed.status.success(),
        "{}",
        String::from_utf8_lossy(&killed.stderr)
    );
    let mut runc = container.runc.take().unwrap();
    let status = wait_exit(&mut runc, Duration::from_secs(10));
    assert_eq!(
        status.code(),
        Some(0),
        "pause under runc exited with {status}"
    );
    drop(container);
    assert!(!PathBuf::from(ns.path()).exists());
}
