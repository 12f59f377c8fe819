//! Shared harness: a managed containerd on a temp data dir with its own short state dir,
//! run as root with the real containerd, shim and runc. Missing pieces fail loudly.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kedge_containerd::testimage::{ImageFormat, build_busybox_image};
use kedge_containerd::{Client, ContainerdConfig, ImageRef, Supervisor, TaskState};

pub fn require_host() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests need root (containerd, runc and overlay mounts): run them as root"
    );
    for bin in ["containerd", "containerd-shim-runc-v2", "runc"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
            .unwrap_or(false);
        assert!(
            found,
            "{bin} is not on PATH: install the containerd and runc packages (scripts/setup.sh)"
        );
    }
    assert!(
        Path::new(kedge_containerd::testimage::BUSYBOX).is_file(),
        "{} is missing: install the busybox-static package (scripts/setup.sh)",
        kedge_containerd::testimage::BUSYBOX
    );
}

#[derive(Debug)]
pub struct Env {
    pub dir: tempfile::TempDir,
    pub state: PathBuf,
    pub config: ContainerdConfig,
    pub sup: Option<Supervisor>,
    pub client: Client,
}

impl Env {
    pub async fn start() -> Env {
        Self::start_in(tempfile::tempdir().unwrap()).await
    }

    pub async fn start_in(dir: tempfile::TempDir) -> Env {
        require_host();
        let state = PathBuf::from(format!("/run/kt-{:08x}", rand::random::<u32>()));
        let mut config = ContainerdConfig::new(dir.path().join("agent"));
        config.state_dir = state.clone();
        config.initial_backoff = Duration::from_millis(200);
        let sup = Supervisor::start(config.clone())
            .await
            .expect("start containerd");
        let client = Client::connect(config.client_config())
            .await
            .expect("connect");
        Env {
            dir,
            state,
            config,
            sup: Some(sup),
            client,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Builds and imports a busybox image under `name`.
    pub async fn busybox(&self, name: &str) -> ImageRef {
        let tar = self.path(&format!("{}.tar", name.replace([':', '/'], "_")));
        build_busybox_image(&tar, name, ImageFormat::OciLayout).unwrap();
        let mut refs = self.client.import(&tar, |_| {}).await.expect("import");
        refs.pop().unwrap()
    }

    /// Deletes every container (so no shim outlives the test) and stops containerd.
    pub async fn teardown(mut self) {
        for c in self
            .client
            .list_containers(&HashMap::new())
            .await
            .unwrap_or_default()
        {
            let _ = self.client.delete(&c.id).await;
        }
        if let Some(s) = self.sup.take() {
            s.shutdown().await;
        }
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

/// A minimal spec running `args`.
pub fn spec(args: &[&str], terminal: bool) -> oci_spec::runtime::Spec {
    let mut spec = oci_spec::runtime::Spec::default();
    let mut process = spec.process().clone().unwrap_or_default();
    process.set_args(Some(args.iter().map(|s| s.to_string()).collect()));
    process.set_terminal(Some(terminal));
    spec.set_process(Some(process));
    spec.set_hostname(Some("kedge-test".into()));
    spec
}

pub fn process(args: &[&str]) -> oci_spec::runtime::Process {
    let mut p = oci_spec::runtime::Process::default();
    p.set_args(Some(args.iter().map(|s| s.to_string()).collect()));
    p
}

pub fn uid(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

pub async fn read_all(r: Option<tokio::net::unix::pipe::Receiver>) -> String {
    use tokio::io::AsyncReadExt;
    let mut s = Vec::new();
    if let Some(mut r) = r {
        let _ = tokio::time::timeout(Duration::from_secs(20), r.read_to_end(&mut s)).await;
    }
    String::from_utf8_lossy(&s).into_owned()
}

/// Awaits a step, failing the test with its name if it takes over a minute.
pub async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(60), fut).await {
        Ok(t) => t,
        Err(_) => panic!("{what} did not finish within 60s"),
    }
}

/// A task's status, asked again for up to 5 s while a (re)started containerd does not
/// answer yet.
pub async fn task_status_once_reachable(client: &Client, id: &str) -> Option<TaskState> {
    for _ in 0..50 {
        match client.task_status(id).await {
            Ok(status) => return status,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("containerd did not answer for task {id} within 5 s");
}
