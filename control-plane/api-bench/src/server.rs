//! The real `kedge server`, run as a subprocess on a throwaway data
//! directory on disk, the way a user runs it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};

/// What the server logs once the API is served.
const READY: &str = "Kubernetes API ready";
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Finds the release `kedge` binary: `--kedge` if given, else the one next
/// to this bench (both live in target/release), else the workspace's
/// target/release. Warns when a source file is newer than the binary.
pub fn find_kedge(given: Option<&Path>) -> Result<PathBuf> {
    const BUILD: &str = "cargo build --release -p kedge";
    if let Some(path) = given {
        if !path.is_file() {
            bail!("--kedge {}: no such file", path.display());
        }
        return Ok(path.to_path_buf());
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let workspace = workspace.canonicalize().unwrap_or(workspace);
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
        && dir.file_name().is_some_and(|n| n == "release")
    {
        candidates.push(dir.join("kedge"));
    }
    let in_workspace = workspace.join("target/release/kedge");
    if !candidates.contains(&in_workspace) {
        candidates.push(in_workspace);
    }
    let Some(found) = candidates.iter().find(|p| p.is_file()) else {
        bail!(
            "no release kedge binary (looked at {}); build it first: {BUILD}",
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let built = std::fs::metadata(found)?.modified()?;
    if let Some(newer) = newest_source(&workspace.join("control-plane"))
        .filter(|(modified, _)| *modified > built)
        .map(|(_, path)| path)
    {
        eprintln!(
            "warning: {} is newer than {}; the bench measures the old binary. Run {BUILD} first.",
            newer.display(),
            found.display()
        );
    }
    Ok(found.clone())
}

/// The most recently modified .rs or Cargo.toml under `dir` that the
/// server is built from.
fn newest_source(dir: &Path) -> Option<(SystemTime, PathBuf)> {
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).ok()?.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                // Tests, benches and the test kit are not part of the server.
                let skip = [
                    "api-bench",
                    "datastore-testkit",
                    "tests",
                    "benches",
                    "target",
                ];
                if !skip.iter().any(|d| path.ends_with(d)) {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs")
                || path.file_name().is_some_and(|n| n == "Cargo.toml")
            {
                let modified = meta.modified().ok()?;
                if newest.as_ref().is_none_or(|(m, _)| modified > *m) {
                    newest = Some((modified, path));
                }
            }
        }
    }
    newest
}

/// A running `kedge server` and its data directory (removed on drop).
#[derive(Debug)]
pub struct KedgeServer {
    child: tokio::process::Child,
    pid: u32,
    log: PathBuf,
    kubeconfig: PathBuf,
    /// How long from spawning the process to "Kubernetes API ready".
    pub startup: Duration,
    _dir: tempfile::TempDir,
}

impl KedgeServer {
    /// Runs `kedge server` on `endpoint` (empty: embedded SQLite) on a free
    /// loopback port and waits until it serves the API.
    pub async fn start(binary: &Path, endpoint: &str) -> Result<KedgeServer> {
        // On disk, like the datastore bench: SQLite's fsyncs are real.
        let dir = tempfile::Builder::new()
            .prefix("kedge-api-bench-")
            .tempdir_in("/var/tmp")
            .context("create a data directory in /var/tmp")?;
        let log = dir.path().join("server.log");
        let kubeconfig = dir.path().join("kubeconfig.yaml");
        let out =
            std::fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let started = Instant::now();
        let mut child = tokio::process::Command::new(binary)
            .arg("server")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--datastore-endpoint")
            .arg(endpoint)
            .args(["--https-listen-port", "0", "--bind-address", "127.0.0.1"])
            // The API is measured alone, without a node.
            .arg("--disable-agent")
            .arg("--write-kubeconfig")
            .arg(&kubeconfig)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("run {}", binary.display()))?;
        let pid = child.id().context("kedge exited as soon as it started")?;
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains(READY) {
                break;
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "kedge server exited with {status} before it was ready; the end of its log:\n{}",
                    tail(&text, 40)
                );
            }
            if started.elapsed() > START_TIMEOUT {
                let _ = child.kill().await;
                bail!(
                    "kedge server did not log {READY:?} within {START_TIMEOUT:?}; the end of its log:\n{}",
                    tail(&text, 40)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(KedgeServer {
            child,
            pid,
            log,
            kubeconfig,
            startup: started.elapsed(),
            _dir: dir,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The last `lines` lines of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(
            &std::fs::read_to_string(&self.log).unwrap_or_default(),
            lines,
        )
    }

    /// The warnings and errors the server logged so far.
    pub fn log_findings(&self) -> LogFindings {
        findings(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// Stops the server with SIGTERM, as systemd would, and says how it went.
    pub async fn stop(mut self) -> Result<String> {
        let asked = Instant::now();
        std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status()
            .context("run kill")?;
        Ok(
            match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
                Ok(Ok(status)) if status.success() => format!(
                    "exited cleanly {} ms after SIGTERM",
                    asked.elapsed().as_millis()
                ),
                Ok(Ok(status)) => format!("exited with {status} after SIGTERM"),
                Ok(Err(e)) => format!("could not be waited for: {e}"),
                Err(_) => {
                    let _ = self.child.kill().await;
                    format!(
                        "did not exit within {} s of SIGTERM and was killed",
                        STOP_TIMEOUT.as_secs()
                    )
                }
            },
        )
    }
}

/// Warnings and errors in a server log.
#[derive(Debug, Default, Clone)]
pub struct LogFindings {
    pub warnings: usize,
    pub errors: usize,
    /// The first few of them, as logged.
    pub examples: Vec<String>,
}

fn findings(log: &str) -> LogFindings {
    let mut f = LogFindings::default();
    for line in log.lines() {
        let (is_warn, is_error) = (line.contains(" WARN "), line.contains(" ERROR "));
        f.warnings += usize::from(is_warn);
        f.errors += usize::from(is_error);
        if (is_warn || is_error) && f.examples.len() < 5 {
            f.examples.push(line.trim().to_string());
        }
    }
    f
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_warnings_and_errors() {
        let log = "2026-01-01T00:00:00Z  INFO kedge: ready\n\
                   2026-01-01T00:00:01Z  WARN kedge_apiserver: slow\n\
                   2026-01-01T00:00:02Z ERROR kedge_apiserver: broke\n";
        let f = findings(log);
        assert_eq!((f.warnings, f.errors), (1, 1));
        assert_eq!(f.examples.len(), 2);
    }

    #[test]
    fn tails_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}
