//! The server's local agent: `kedge server` runs a `kedge-agent` next to itself, as
//! `k3s server` runs its embedded agent, so that one command gives a cluster with a node
//! that runs pods (`--disable-agent` turns it off).
//!
//! The agent is a child process rather than a part of the server: it moves itself into
//! its own memory budget and runs containerd, and the server must not live under that
//! budget. It joins like any device, over the tunnel on loopback, with the server's own
//! token file; its state is `<data-dir>/agent`, next to the server's `<data-dir>/server`.
//! If it exits, it is started again after a growing pause; when the server stops, it
//! gets SIGTERM first (its pods keep running, as they do for any agent that stops).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::process::{Child, Command};
use tracing::{info, warn};

/// How the local agent is started.
#[derive(Debug, Clone)]
pub struct LocalAgentOptions {
    /// The kedge-agent executable.
    pub binary: PathBuf,
    /// The server's URL on loopback (`https://127.0.0.1:6443`).
    pub server_url: String,
    /// The server's data dir: the token is in `server/token`, the agent's state goes to
    /// `agent/`.
    pub data_dir: PathBuf,
    pub node_name: String,
    /// `key=value` labels for the node.
    pub node_labels: Vec<String>,
    /// More flags for the agent (`--agent-arg`).
    pub extra_args: Vec<String>,
    /// Whether the agent runs pods: only root can (containerd, runc, CNI).
    pub run_pods: bool,
}

/// The kedge-agent to run: `--agent-binary`, else the one next to this executable (how
/// the packages and `cargo build` lay them out), else the first on PATH.
pub fn locate_binary(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        anyhow::ensure!(
            path.is_file(),
            "--agent-binary {} does not exist",
            path.display()
        );
        return Ok(path.to_path_buf());
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("kedge-agent")));
    if let Some(path) = beside.filter(|p| p.is_file()) {
        return Ok(path);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("kedge-agent"))
        .find(|p| p.is_file())
        .context(
            "the local agent needs the kedge-agent binary next to kedge or on PATH: \
             build it (cargo build -p kedge-agent), or run the control plane alone with --disable-agent",
        )
}

impl LocalAgentOptions {
    /// The agent's command line.
    pub fn command(&self) -> Command {
        let agent_dir = self.data_dir.join("agent");
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--server")
            .arg(&self.server_url)
            .arg("--token-file")
            .arg(kedge_nodelink::tokens::server_token_path(&self.data_dir))
            .arg("--node-name")
            .arg(&self.node_name)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--node-password-file")
            .arg(agent_dir.join("node-password"));
        for label in &self.node_labels {
            cmd.arg("--node-label").arg(label);
        }
        if !self.run_pods {
            cmd.arg("--disable-runtime");
        }
        cmd.args(&self.extra_args);
        // Its log joins the server's, as K3s's embedded agent's does.
        cmd.stdin(Stdio::null()).kill_on_drop(true);
        cmd
    }
}

/// Runs the local agent until `stop` resolves, starting it again whenever it exits.
pub async fn supervise(options: LocalAgentOptions, stop: impl std::future::Future<Output = ()>) {
    tokio::pin!(stop);
    let mut pause = Duration::from_secs(1);
    loop {
        let mut child = match options.command().spawn() {
            Ok(child) => child,
            Err(e) => {
                warn!(binary = %options.binary.display(), error = %e, "cannot start the local agent; trying again in {pause:?}");
                tokio::select! {
                    _ = &mut stop => return,
                    _ = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        info!(
            node = %options.node_name,
            pid = child.id().unwrap_or_default(),
            runs_pods = options.run_pods,
            "local agent started"
        );
        let started = tokio::time::Instant::now();
        tokio::select! {
            _ = &mut stop => {
                terminate(&mut child).await;
                return;
            }
            status = child.wait() => {
                // A run of a minute or more was a good one: start the backoff over.
                if started.elapsed() >= Duration::from_secs(60) {
                    pause = Duration::from_secs(1);
                }
                match status {
                    Ok(s) => warn!(status = %s, "the local agent exited; starting it again in {pause:?}"),
                    Err(e) => warn!(error = %e, "lost the local agent; starting it again in {pause:?}"),
                }
            }
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_secs(30));
    }
}

/// SIGTERM, then SIGKILL if it has not exited within 30 s.
async fn terminate(child: &mut Child) {
    if let Some(pid) = child.id() {
        let pid = nix::unistd::Pid::from_raw(pid as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    }
    match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
        Ok(_) => info!("local agent stopped"),
        Err(_) => {
            warn!("the local agent did not stop within 30s of SIGTERM; killing it");
            let _ = child.kill().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_joins_with_the_servers_token_file_and_data_dir() {
        let options = LocalAgentOptions {
            binary: "/usr/local/bin/kedge-agent".into(),
            server_url: "https://127.0.0.1:6443".into(),
            data_dir: "/var/lib/kedge".into(),
            node_name: "cp-1".into(),
            node_labels: vec!["zone=a".into()],
            extra_args: vec!["--profile=rpi-4-8gb".into()],
            run_pods: false,
        };
        let cmd = options.command();
        let args: Vec<String> = cmd
            .as_std()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "--server",
                "https://127.0.0.1:6443",
                "--token-file",
                "/var/lib/kedge/server/token",
                "--node-name",
                "cp-1",
                "--data-dir",
                "/var/lib/kedge",
                "--node-password-file",
                "/var/lib/kedge/agent/node-password",
                "--node-label",
                "zone=a",
                "--disable-runtime",
                "--profile=rpi-4-8gb",
            ]
        );
    }

    #[test]
    fn a_missing_explicit_binary_is_an_error() {
        let e = locate_binary(Some(Path::new("/nonexistent/kedge-agent"))).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
    }
}
