//! Running one CNI plugin binary: its environment, its stdin, its result or error.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use crate::error::CniError;

/// The CNI operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Add,
    Del,
    Check,
    Version,
}

impl Op {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Op::Add => "ADD",
            Op::Del => "DEL",
            Op::Check => "CHECK",
            Op::Version => "VERSION",
        }
    }
}

/// The environment of one plugin call (the spec's CNI_* variables).
#[derive(Debug)]
pub(crate) struct Invocation<'a> {
    pub op: Op,
    pub container_id: &'a str,
    /// The netns path; passed as an empty CNI_NETNS when `None` (DEL of a gone sandbox).
    pub netns: Option<&'a Path>,
    pub ifname: &'a str,
    pub cni_args: &'a str,
    pub bin_dirs: &'a [PathBuf],
    /// Runs the plugin as `<launcher> <plugin>` (see `CniConfig::launcher`).
    pub launcher: Option<&'a Path>,
}

/// The most plugin processes this agent runs at once. Thirty pods starting together
/// would otherwise run sixty Go processes (bridge and its IPAM) of 5–10 MiB each, which
/// no small device's budget holds; the rest wait their turn.
pub const MAX_CONCURRENT_PLUGINS: usize = 4;

static PLUGIN_SLOTS: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(MAX_CONCURRENT_PLUGINS);

/// The error object a plugin prints on stdout when it fails.
#[derive(Debug, Deserialize)]
struct PluginErrorJson {
    code: u32,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    details: String,
}

/// Finds plugin `name` in the first of `bin_dirs` that has it as an executable file.
pub(crate) fn find_plugin(bin_dirs: &[PathBuf], name: &str) -> Result<PathBuf, CniError> {
    for dir in bin_dirs {
        let candidate = dir.join(name);
        if let Ok(meta) = std::fs::metadata(&candidate)
            && meta.is_file()
            && meta.permissions().mode() & 0o111 != 0
        {
            return Ok(candidate);
        }
    }
    Err(CniError::PluginNotFound {
        plugin: name.to_string(),
        dirs: bin_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Runs `binary` (plugin `name`) with `stdin` and returns its stdout on success. The
/// process is killed if it outlives `timeout`.
pub(crate) async fn run_plugin(
    name: &str,
    binary: &Path,
    inv: &Invocation<'_>,
    stdin: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, CniError> {
    let cni_path = std::env::join_paths(inv.bin_dirs).map_err(|e| CniError::InvalidArgument {
        what: "CNI bin dirs",
        value: format!("{:?}", inv.bin_dirs),
        reason: e.to_string(),
    })?;
    // Never closed, so acquiring only waits.
    let _slot = PLUGIN_SLOTS.acquire().await.ok();
    let mut cmd = match inv.launcher {
        Some(launcher) => {
            let mut cmd = tokio::process::Command::new(launcher);
            cmd.arg(binary);
            cmd
        }
        None => tokio::process::Command::new(binary),
    };
    // Plugins inherit our environment (they run iptables, which needs PATH), with the
    // CNI variables set fresh.
    cmd.env("CNI_COMMAND", inv.op.as_str())
        .env("CNI_CONTAINERID", inv.container_id)
        .env(
            "CNI_NETNS",
            inv.netns.map(Path::as_os_str).unwrap_or_default(),
        )
        .env("CNI_IFNAME", inv.ifname)
        .env("CNI_ARGS", inv.cni_args)
        .env("CNI_PATH", cni_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|source| CniError::Spawn {
        path: binary.to_path_buf(),
        source,
    })?;
    let mut child_stdin = child.stdin.take();
    let feed = async move {
        if let Some(pipe) = child_stdin.as_mut() {
            // A plugin that exits without reading all of stdin closes the pipe: not our error.
            let _ = pipe.write_all(stdin).await;
        }
        drop(child_stdin);
    };
    let run = async { tokio::join!(feed, child.wait_with_output()).1 };
    let output = match tokio::time::timeout(timeout, run).await {
        Ok(output) => output.map_err(|source| CniError::Spawn {
            path: binary.to_path_buf(),
            source,
        })?,
        Err(_) => {
            return Err(CniError::PluginTimeout {
                plugin: name.to_string(),
                command: inv.op.as_str(),
                container_id: inv.container_id.to_string(),
                timeout,
            });
        }
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !stderr.trim().is_empty() {
        tracing::debug!(plugin = name, op = inv.op.as_str(), stderr = %stderr.trim(), "plugin stderr");
    }
    if output.status.success() {
        return Ok(output.stdout);
    }
    match serde_json::from_slice::<PluginErrorJson>(&output.stdout) {
        Ok(err) => Err(CniError::Plugin {
            plugin: name.to_string(),
            command: inv.op.as_str(),
            container_id: inv.container_id.to_string(),
            code: err.code,
            msg: err.msg,
            details: err.details,
        }),
        Err(_) => {
            let text = if stderr.trim().is_empty() {
                String::from_utf8_lossy(&output.stdout).into_owned()
            } else {
                stderr.into_owned()
            };
            Err(CniError::PluginCrashed {
                plugin: name.to_string(),
                command: inv.op.as_str(),
                container_id: inv.container_id.to_string(),
                status: output.status.to_string(),
                stderr: tail(text.trim(), 2048).to_string(),
            })
        }
    }
}

/// The last `max` bytes of `s`, cut at a character boundary.
fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_cuts_at_char_boundaries() {
        assert_eq!(tail("abc", 10), "abc");
        assert_eq!(tail("abcdef", 3), "def");
        assert_eq!(tail("ääää", 3), "ä");
    }

    #[test]
    fn missing_plugin_names_the_dirs() {
        let dirs = [
            PathBuf::from("/nonexistent/a"),
            PathBuf::from("/nonexistent/b"),
        ];
        let err = find_plugin(&dirs, "bridge").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("/nonexistent/a, /nonexistent/b"), "{text}");
        assert!(text.contains("containernetworking-plugins"), "{text}");
    }
}
