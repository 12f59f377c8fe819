//! Running the real `kedge-agent` against a `kedge server` in tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::Cluster;

/// The kedge-agent binary next to kedge's.
pub fn agent_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_kedge")).with_file_name("kedge-agent");
    assert!(
        path.exists(),
        "these tests run the real agent, expected at {}; build it with `cargo build -p kedge-agent` (cargo test --workspace does)",
        path.display()
    );
    path
}

/// kedge-agent flags that drop the profile's disk eviction thresholds.
pub const NO_DISK_THRESHOLDS: [&str; 2] = [
    "--eviction-hard=nodefs.available<0%,nodefs.inodesFree<0%,imagefs.available<0%",
    "--eviction-soft=nodefs.available<0%,nodefs.inodesFree<0%,imagefs.available<0%",
];

/// A running kedge-agent and its log.
pub struct Agent {
    pub child: Child,
    log: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Agent {
    /// The agent's command line for joining `server` (`https://host:port`), without a
    /// container runtime (the link tests need no containers, nor root for them).
    pub fn command_for(server: &str, dir: &Path, node: &str, token: &str) -> Command {
        let mut cmd = Agent::command_with_runtime(server, dir, node, token);
        cmd.arg("--disable-runtime");
        cmd
    }

    /// The agent's command line with its container runtime: it starts its own
    /// containerd and runs pods (needs root, containerd, runc and the CNI plugins).
    pub fn command_with_runtime(server: &str, dir: &Path, node: &str, token: &str) -> Command {
        let mut cmd = Command::new(agent_binary());
        cmd.arg("--server")
            .arg(server)
            .arg("--token")
            .arg(token)
            .arg("--node-name")
            .arg(node)
            .arg("--data-dir")
            .arg(dir)
            .arg("--node-password-file")
            .arg(dir.join("node-password"))
            // The host's disk is shared with everything else the machine runs: how full
            // it is must not put these nodes under DiskPressure (kind turns the disk
            // thresholds off for CI the same way).
            .arg(NO_DISK_THRESHOLDS[0])
            .arg(NO_DISK_THRESHOLDS[1])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    }

    pub fn command(cluster: &Cluster, dir: &Path, node: &str, token: &str) -> Command {
        Agent::command_for(&cluster.server_url(), dir, node, token)
    }

    pub fn spawn(mut cmd: Command) -> Agent {
        let mut child = cmd.spawn().expect("run kedge-agent");
        let (tx, log) = mpsc::channel();
        let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in stderr.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Agent {
            child,
            log,
            seen: Vec::new(),
        }
    }

    pub fn start(cluster: &Cluster, dir: &Path, node: &str, token: &str) -> Agent {
        Agent::spawn(Agent::command(cluster, dir, node, token))
    }

    /// Waits for a log line containing `text`.
    #[track_caller]
    pub fn wait_log(&mut self, text: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(line) = self.seen.iter().find(|l| l.contains(text)) {
                return line.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!(
                    "the agent did not log {text:?} within {within:?}; it said:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Everything logged so far.
    pub fn drain(&mut self) -> String {
        while let Ok(line) = self.log.try_recv() {
            self.seen.push(line);
        }
        self.seen.join("\n")
    }

    /// SIGTERM, as systemd stops it; then waits for the exit, as [`Agent::exits`].
    #[track_caller]
    pub fn terminate(self, within: Duration) -> (std::process::ExitStatus, String) {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.exits(within)
    }

    /// Waits for the agent to exit on its own, and returns its status and log.
    #[track_caller]
    pub fn exits(mut self, within: Duration) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100));
                let log = self.drain();
                return (status, log);
            }
            if Instant::now() > deadline {
                let log = self.drain();
                let _ = self.child.kill();
                panic!("the agent did not exit within {within:?}; it said:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `node`'s Ready condition is True.
#[track_caller]
pub fn wait_ready(cluster: &Cluster, node: &str, what: &str, within: Duration) {
    cluster.wait_for(
        &[
            "get",
            "node",
            node,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ],
        what,
        within,
        |s| s == "True",
    );
}

pub fn server_token(cluster: &Cluster) -> String {
    std::fs::read_to_string(cluster.data_dir.join("server").join("token"))
        .expect("kedge server writes <data-dir>/server/token")
        .trim()
        .to_string()
}

/// `kedge token create` against the cluster.
pub fn create_token(cluster: &Cluster, extra: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kedge"))
        .arg("token")
        .arg("create")
        .arg("--kubeconfig")
        .arg(&cluster.kubeconfig)
        .arg("--data-dir")
        .arg(&cluster.data_dir)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kedge token create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The server's log lines up to one containing `text`.
pub fn cluster_log_until(cluster: &Cluster, text: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    let mut lines = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match cluster.log.recv_timeout(left) {
            Ok(line) => {
                let done = line.contains(text);
                lines.push(line);
                if done {
                    return lines.join("\n");
                }
            }
            Err(_) => panic!(
                "the server did not log {text:?}; it said:\n{}",
                lines.join("\n")
            ),
        }
    }
}

/// Puts a busybox image tagged `image` (built from /bin/busybox) in the airgap directory
/// of the agent whose `--data-dir` is `data_dir`, for it to import at start.
pub fn airgap_busybox(data_dir: &Path, image: &str) {
    let images = data_dir.join("agent").join("images");
    std::fs::create_dir_all(&images).unwrap();
    kedge_containerd::testimage::build_busybox_image(
        &images.join("busybox.tar"),
        image,
        kedge_containerd::testimage::ImageFormat::OciLayout,
    )
    .expect("build the busybox image from /bin/busybox (busybox-static)");
}

/// A server of its own (its data dir owned by it) with pods in `cidr`.
pub fn cluster_with_cidr(cidr: &str) -> Cluster {
    let server_dir = tempfile::tempdir().unwrap();
    Cluster::start_with_args(
        server_dir.path(),
        "",
        super::free_port(),
        &["--cluster-cidr", cidr],
    )
    .owning(server_dir)
}
