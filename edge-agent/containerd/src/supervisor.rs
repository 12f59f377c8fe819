//! The agent's own containerd: a generated config, a child process that is restarted with
//! backoff when it dies, and a clean stop on shutdown.
//!
//! Layout (K3s-like, under the agent's data dir `<data-dir>/agent`):
//! - `etc/containerd/config.toml`: generated on every start (atomically),
//! - `containerd/`: containerd's root (content store, snapshots, metadata),
//! - `containerd/containerd.log`: containerd's stdout and stderr,
//! - state (`/run/kedge/containerd` by default): sockets, shim bundles, runc state.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::client::ClientConfig;
use crate::error::{Error, Result};

/// Unix socket paths must fit `sun_path` (108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Where and how the agent runs its own containerd.
#[derive(Debug, Clone)]
pub struct ContainerdConfig {
    /// The agent's data dir, `<data-dir>/agent`.
    pub data_dir: PathBuf,
    /// containerd's state dir (sockets, shim bundles); `/run/kedge/containerd` by default.
    pub state_dir: PathBuf,
    /// The containerd binary; looked up on `PATH` when it has no slash.
    pub binary: PathBuf,
    /// How long to wait for the socket to answer after a (re)start.
    pub ready_timeout: Duration,
    /// First delay before a restart; doubled per quick failure up to `max_backoff`.
    pub initial_backoff: Duration,
    /// Longest delay between restarts.
    pub max_backoff: Duration,
    /// A run that lasted this long resets the backoff.
    pub stable_after: Duration,
    /// containerd's log level (`info`, `debug`, ...).
    pub log_level: String,
}

impl ContainerdConfig {
    /// The defaults for a data dir: state under `/run/kedge/containerd`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ContainerdConfig {
            data_dir: data_dir.into(),
            state_dir: PathBuf::from("/run/kedge/containerd"),
            binary: PathBuf::from("containerd"),
            ready_timeout: Duration::from_secs(30),
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            stable_after: Duration::from_secs(60),
            log_level: "info".to_string(),
        }
    }

    /// containerd's root: content store, snapshots and metadata.
    pub fn root_dir(&self) -> PathBuf {
        self.data_dir.join("containerd")
    }
    /// The generated config file.
    pub fn config_path(&self) -> PathBuf {
        self.data_dir.join("etc/containerd/config.toml")
    }
    /// containerd's log file.
    pub fn log_path(&self) -> PathBuf {
        self.root_dir().join("containerd.log")
    }
    /// The gRPC socket.
    pub fn socket_path(&self) -> PathBuf {
        self.state_dir.join("containerd.sock")
    }
    /// Where task and exec FIFOs are made.
    pub fn fifo_dir(&self) -> PathBuf {
        self.state_dir.join("io")
    }
    /// runc's state root for our containers.
    pub fn runc_root(&self) -> PathBuf {
        self.state_dir.join("runc")
    }
    /// Airgap image tarballs imported at start.
    pub fn images_dir(&self) -> PathBuf {
        self.data_dir.join("images")
    }

    /// The client settings that talk to this containerd.
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig {
            socket: self.socket_path(),
            fifo_dir: self.fifo_dir(),
            runc_root: Some(self.runc_root()),
            ..ClientConfig::new(self.socket_path())
        }
    }

    /// Checks the paths before anything is started.
    pub fn validate(&self) -> Result<()> {
        let socket = self.socket_path();
        let ttrpc_len = socket.as_os_str().len() + ".ttrpc".len();
        if ttrpc_len > MAX_SOCKET_PATH {
            return Err(Error::Config(format!(
                "socket path {} is {ttrpc_len} bytes with its .ttrpc sibling, over the {MAX_SOCKET_PATH}-byte unix socket limit; use a shorter state dir",
                socket.display()
            )));
        }
        for (what, p) in [("data dir", &self.data_dir), ("state dir", &self.state_dir)] {
            if !p.is_absolute() {
                return Err(Error::Config(format!(
                    "{what} {} must be an absolute path",
                    p.display()
                )));
            }
        }
        if self.initial_backoff.is_zero() || self.max_backoff < self.initial_backoff {
            return Err(Error::Config(
                "backoff must be positive and max_backoff at least initial_backoff".into(),
            ));
        }
        Ok(())
    }

    /// The containerd config this crate generates (version 2 schema, understood by 1.6+).
    pub fn render(&self) -> String {
        let root = self.root_dir();
        let q = |p: &Path| toml_str(&p.to_string_lossy());
        // The CRI plugin is off: the agent is the kubelet and speaks the native API. So are
        // snapshotters we never use, which saves memory on small devices. (The legacy v1 linux
        // runtime stays: containerd 1.6's tasks service will not load without it.)
        format!(
            r#"# generated by kedge-agent; edits are overwritten at every start
version = 2
root = {root}
state = {state}
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = {sock}

[ttrpc]
  address = {ttrpc}

[debug]
  address = ""
  level = {level}

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = {opt}
"#,
            root = q(&root),
            state = q(&self.state_dir),
            sock = q(&self.socket_path()),
            ttrpc = toml_str(&format!("{}.ttrpc", self.socket_path().display())),
            level = toml_str(&self.log_level),
            opt = q(&root.join("opt")),
        )
    }
}

fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Writes `data` to `path` atomically: a temp file beside it, then a rename.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create dir", dir, e))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    std::fs::write(&tmp, data).map_err(|e| Error::io("write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io("rename into", path, e)
    })
}

/// The supervised containerd as the agent sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerdState {
    /// Being started; the socket is not answering yet.
    Starting,
    /// Answering on its socket.
    Running {
        /// containerd's pid.
        pid: u32,
        /// How many times it has been restarted after dying.
        restarts: u32,
    },
    /// It died; waiting out the backoff before the next start.
    Backoff { restarts: u32, delay: Duration },
    /// Shut down on request.
    Stopped,
}

/// The restart policy as a pure function: the delay before the next start, given how long
/// the last run lasted and the previous delay.
pub fn next_backoff(
    cfg: &ContainerdConfig,
    ran_for: Duration,
    previous: Option<Duration>,
) -> Duration {
    match previous {
        _ if ran_for >= cfg.stable_after => cfg.initial_backoff,
        None => cfg.initial_backoff,
        Some(prev) => (prev * 2).min(cfg.max_backoff),
    }
}

/// Runs containerd as a child, restarting it when it dies, until [`Supervisor::shutdown`].
#[derive(Debug)]
pub struct Supervisor {
    config: ContainerdConfig,
    state: watch::Receiver<ContainerdState>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Supervisor {
    /// Generates the config, starts containerd and waits until its socket answers.
    #[tracing::instrument(name = "containerd_start", skip_all, fields(data_dir = %config.data_dir.display()))]
    pub async fn start(config: ContainerdConfig) -> Result<Supervisor> {
        config.validate()?;
        for dir in [
            config.root_dir(),
            config.state_dir.clone(),
            config.fifo_dir(),
        ] {
            std::fs::create_dir_all(&dir).map_err(|e| Error::io("create dir", &dir, e))?;
        }
        write_atomic(&config.config_path(), config.render().as_bytes())?;
        let socket = config.socket_path();
        if socket.exists() {
            stop_leftover(&config, &socket).await?;
            let _ = std::fs::remove_file(&socket);
        }

        let child = spawn(&config)?;
        let pid = child.id().unwrap_or_default();
        let (state_tx, state) = watch::channel(ContainerdState::Starting);
        let mut child = child;
        if let Err(e) = wait_ready(&config, &mut child).await {
            let _ = child.kill().await;
            return Err(e);
        }
        tracing::info!(pid, socket = %socket.display(), "containerd is running");
        state_tx.send_replace(ContainerdState::Running { pid, restarts: 0 });
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(supervise(config.clone(), child, state_tx, stop_rx));
        Ok(Supervisor {
            config,
            state,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }

    /// The config it was started with.
    pub fn config(&self) -> &ContainerdConfig {
        &self.config
    }

    /// The socket containerd listens on.
    pub fn socket(&self) -> PathBuf {
        self.config.socket_path()
    }

    /// The current state; watch it to see restarts.
    pub fn state(&self) -> watch::Receiver<ContainerdState> {
        self.state.clone()
    }

    /// containerd's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        match *self.state.borrow() {
            ContainerdState::Running { pid, .. } => Some(pid),
            _ => None,
        }
    }

    /// Stops containerd: SIGTERM, then SIGKILL after 10 s. Running tasks keep running (their
    /// shims are separate processes), as with any containerd restart.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        // Without an explicit shutdown the child is killed (kill_on_drop) when the task is
        // aborted.
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn spawn(config: &ContainerdConfig) -> Result<Child> {
    let log_path = config.log_path();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| Error::io("open containerd log", &log_path, e))?;
    let log2 = log
        .try_clone()
        .map_err(|e| Error::io("open containerd log", &log_path, e))?;
    let mut cmd = Command::new(&config.binary);
    cmd.arg("--config")
        .arg(config.config_path())
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2))
        .kill_on_drop(true);
    cmd.spawn().map_err(|source| Error::Spawn {
        binary: config.binary.clone(),
        source,
    })
}

async fn wait_ready(config: &ContainerdConfig, child: &mut Child) -> Result<()> {
    let socket = config.socket_path();
    let deadline = Instant::now() + config.ready_timeout;
    let not_ready = || Error::NotReady {
        socket: socket.clone(),
        log: config.log_path(),
        secs: config.ready_timeout.as_secs(),
    };
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            tracing::warn!(%status, "containerd exited while starting");
            return Err(not_ready());
        }
        if tokio::net::UnixStream::connect(&socket).await.is_ok() {
            let cc = ClientConfig::new(&socket);
            if let Ok(client) = crate::client::Client::connect(cc).await
                && client.version().await.is_ok()
            {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(not_ready());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn supervise(
    config: ContainerdConfig,
    mut child: Child,
    state: watch::Sender<ContainerdState>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut restarts = 0u32;
    let mut started = Instant::now();
    let mut backoff: Option<Duration> = None;
    loop {
        let status = tokio::select! {
            status = child.wait() => status,
            _ = &mut stop => {
                stop_child(&mut child).await;
                state.send_replace(ContainerdState::Stopped);
                return;
            }
        };
        let ran_for = started.elapsed();
        tracing::warn!(status = ?status.ok(), ran_for_ms = ran_for.as_millis() as u64, "containerd died; restarting it");
        let delay = next_backoff(&config, ran_for, backoff);
        backoff = Some(delay);
        restarts += 1;
        state.send_replace(ContainerdState::Backoff { restarts, delay });
        loop {
            tokio::select! {
                _ = tokio::time::sleep(backoff.unwrap_or(delay)) => {}
                _ = &mut stop => {
                    state.send_replace(ContainerdState::Stopped);
                    return;
                }
            }
            let _ = std::fs::remove_file(config.socket_path());
            state.send_replace(ContainerdState::Starting);
            match spawn(&config) {
                Ok(mut c) => match wait_ready(&config, &mut c).await {
                    Ok(()) => {
                        let pid = c.id().unwrap_or_default();
                        tracing::info!(pid, restarts, "containerd restarted");
                        state.send_replace(ContainerdState::Running { pid, restarts });
                        child = c;
                        started = Instant::now();
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "containerd restart failed");
                        let _ = c.kill().await;
                    }
                },
                Err(e) => tracing::warn!(error = %e, "containerd restart failed"),
            }
            let next = next_backoff(&config, Duration::ZERO, backoff);
            backoff = Some(next);
            state.send_replace(ContainerdState::Backoff {
                restarts,
                delay: next,
            });
        }
    }
}

/// Something answers on our socket. A containerd running with our config was left by
/// an agent that was killed without stopping it: it is stopped (SIGTERM, SIGKILL after
/// 10 s; the pods' containers live in their shims and keep running), so that the new
/// one runs supervised. Anything else is an error naming the process.
async fn stop_leftover(config: &ContainerdConfig, socket: &Path) -> Result<()> {
    let Ok(stream) = tokio::net::UnixStream::connect(socket).await else {
        return Ok(()); // a stale socket file
    };
    let pid = stream
        .peer_cred()
        .ok()
        .and_then(|c| c.pid())
        .filter(|&p| p > 0);
    drop(stream);
    let config_path = config.config_path();
    let Some(pid) = pid.filter(|&p| runs_with_config(p, &config_path)) else {
        let who = pid.map_or_else(|| "a process".to_string(), |p| format!("process {p}"));
        return Err(Error::Config(format!(
            "{who} already listens on {} and is not a containerd started with {}: stop it, or use it with --container-runtime-endpoint",
            socket.display(),
            config_path.display()
        )));
    };
    tracing::warn!(
        pid,
        "a containerd of an earlier agent still runs with this data dir; stopping it (the containers keep running) and starting a supervised one"
    );
    let target = nix::unistd::Pid::from_raw(pid);
    let _ = nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !process_gone(pid) {
        if Instant::now() >= deadline {
            tracing::warn!(
                pid,
                "the earlier containerd ignored SIGTERM for 10s; killing it"
            );
            let _ = nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGKILL);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !process_gone(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Whether process `pid` runs with `--config <config>` on its command line.
fn runs_with_config(pid: i32, config: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    args.windows(2)
        .any(|w| w[0] == b"--config" && w[1] == config.as_os_str().as_bytes())
}

/// Whether process `pid` has exited (gone, or a zombie its parent has not reaped).
fn process_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => true,
    }
}

async fn stop_child(child: &mut Child) {
    if let Some(pid) = child.id() {
        let pid = nix::unistd::Pid::from_raw(pid as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        if tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .is_ok()
        {
            tracing::info!("containerd stopped");
            return;
        }
        tracing::warn!("containerd ignored SIGTERM for 10s; killing it");
    }
    let _ = child.kill().await;
}

/// Which containerd the agent uses: its own, or one given by `--container-runtime-endpoint`.
#[derive(Debug)]
pub enum Endpoint {
    /// The agent's own supervised containerd.
    Managed(Supervisor),
    /// An existing containerd's socket; nothing is started or stopped.
    External(ClientConfig),
}

impl Endpoint {
    /// The client settings for this endpoint.
    pub fn client_config(&self) -> ClientConfig {
        match self {
            Endpoint::Managed(s) => s.config().client_config(),
            Endpoint::External(c) => c.clone(),
        }
    }

    /// Stops a managed containerd; does nothing for an external one.
    pub async fn shutdown(self) {
        if let Endpoint::Managed(s) = self {
            s.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_resets_after_a_stable_run() {
        let cfg = ContainerdConfig::new("/var/lib/kedge/agent");
        let b1 = next_backoff(&cfg, Duration::from_secs(1), None);
        assert_eq!(b1, Duration::from_millis(500));
        let b2 = next_backoff(&cfg, Duration::from_secs(1), Some(b1));
        assert_eq!(b2, Duration::from_secs(1));
        let mut b = b2;
        for _ in 0..10 {
            b = next_backoff(&cfg, Duration::from_secs(1), Some(b));
        }
        assert_eq!(b, cfg.max_backoff);
        assert_eq!(
            next_backoff(&cfg, Duration::from_secs(120), Some(b)),
            cfg.initial_backoff
        );
    }

    #[test]
    fn long_socket_paths_are_refused() {
        let mut cfg = ContainerdConfig::new("/var/lib/kedge/agent");
        cfg.validate().unwrap();
        cfg.state_dir = PathBuf::from(format!("/run/{}", "x".repeat(100)));
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("unix socket limit"), "{err}");
        cfg.state_dir = PathBuf::from("relative");
        assert!(cfg.validate().is_err());
    }

    #[test]
    fn config_names_our_own_root_state_and_socket() {
        let mut cfg = ContainerdConfig::new("/var/lib/kedge/agent");
        cfg.state_dir = PathBuf::from("/run/kedge/x\"y");
        let toml = cfg.render();
        assert!(toml.contains("root = \"/var/lib/kedge/agent/containerd\""));
        assert!(toml.contains("state = \"/run/kedge/x\\\"y\""));
        assert!(toml.contains("address = \"/run/kedge/x\\\"y/containerd.sock\""));
        assert!(toml.contains("\"io.containerd.grpc.v1.cri\""));
    }

    #[test]
    fn atomic_write_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b/config.toml");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }
}
