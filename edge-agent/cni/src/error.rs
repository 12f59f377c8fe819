//! The one error type of this crate.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong setting up a pod's network.
///
/// Variants carry what a caller needs to act: the path, the plugin, the sandbox.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// A pod CIDR that is not a network address such as `10.42.3.0/24`.
    #[error("invalid pod CIDR {cidr:?}: {reason}; give a network address such as 10.42.3.0/24")]
    InvalidCidr { cidr: String, reason: String },

    /// An argument the caller gave (a name, an id, an option) that cannot be used.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidArgument {
        what: &'static str,
        value: String,
        reason: String,
    },

    /// A network configuration list that cannot be read or is not one.
    #[error("invalid CNI network config {source_name}: {reason}")]
    InvalidConfig { source_name: String, reason: String },

    /// No `.conflist` in the configuration directory.
    #[error(
        "no CNI network config (*.conflist) in {dir}: write one with kedge_cni::write_conflist or point conf_dir at it"
    )]
    NoConfig { dir: PathBuf },

    /// The plugin binary named by a `type` is in none of the bin dirs.
    #[error(
        "cni plugin {plugin:?} not found in {dirs}: install containernetworking-plugins (it puts them in /usr/lib/cni) or add their directory to the CNI bin dirs"
    )]
    PluginNotFound { plugin: String, dirs: String },

    /// The plugin could not be started.
    #[error("could not run CNI plugin {path}: {source}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The plugin ran and reported a CNI error (its JSON error on stdout).
    #[error(
        "cni plugin {plugin} {command} failed for {container_id}: {msg} (code {code}){}",
        details_suffix(details)
    )]
    Plugin {
        plugin: String,
        command: &'static str,
        container_id: String,
        /// The spec's error code: 1 incompatible version, 2 unsupported field, 3 unknown
        /// container, 4 invalid environment, 5 I/O, 6 decoding, 7 invalid network config,
        /// 11 try again later, 100 and up the plugin's own.
        code: u32,
        msg: String,
        details: String,
    },

    /// The plugin failed without a readable CNI error.
    #[error(
        "cni plugin {plugin} {command} failed for {container_id} ({status}) without a CNI error: {stderr}"
    )]
    PluginCrashed {
        plugin: String,
        command: &'static str,
        container_id: String,
        status: String,
        stderr: String,
    },

    /// The plugin took longer than the configured timeout and was killed.
    #[error(
        "cni plugin {plugin} {command} for {container_id} did not finish within {timeout:?} and was killed; check the plugin (iptables lock, a hung netlink call) or raise the plugin timeout"
    )]
    PluginTimeout {
        plugin: String,
        command: &'static str,
        container_id: String,
        timeout: Duration,
    },

    /// The plugin succeeded but its stdout is not a CNI result.
    #[error("cni plugin {plugin} {command} returned a result that is not CNI JSON: {reason}")]
    BadResult {
        plugin: String,
        command: &'static str,
        reason: String,
    },

    /// The result of ADD gave the pod no IP address.
    #[error(
        "cni network {network} gave sandbox {sandbox_id} no IP address; check the ipam section of the conflist"
    )]
    NoAddress { network: String, sandbox_id: String },

    /// CHECK (or a cached result) was asked for a sandbox that has no attachment.
    #[error("sandbox {sandbox_id} has no attachment to CNI network {network}: set it up first")]
    NotAttached { network: String, sandbox_id: String },

    /// setup was called for a sandbox attached with another network namespace.
    #[error(
        "sandbox {sandbox_id} is attached to cni network {network} already, with netns {netns}: tear it down first"
    )]
    AlreadyAttached {
        network: String,
        sandbox_id: String,
        netns: PathBuf,
    },

    /// The plugins do not support the configuration's cniVersion.
    #[error("cni plugin {plugin} does not support cniVersion {version} (it supports {supported})")]
    UnsupportedVersion {
        plugin: String,
        version: String,
        supported: String,
    },

    /// A file-system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A namespace operation (unshare, setns, mount) failed.
    #[error("network namespace {path}: {op}: {source}; this needs root (CAP_SYS_ADMIN)")]
    Netns {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: nix::Error,
    },

    /// A named network namespace exists already.
    #[error("network namespace {path} exists already: remove it first or use it")]
    NetnsExists { path: PathBuf },

    /// A path that should be a network namespace is not one.
    #[error("{path} is not a network namespace (no nsfs mount there)")]
    NotANetns { path: PathBuf },

    /// Connecting to a port inside a network namespace failed.
    #[error("connect to {addr} in network namespace {netns}: {source}")]
    Connect {
        netns: PathBuf,
        addr: String,
        #[source]
        source: io::Error,
    },

    /// The pause binary was not where it should be.
    #[error(
        "pause binary not found at {path}: build it with `cargo build -p kedge-pause` and put kedge-pause next to kedge-agent, or give its path"
    )]
    PauseBinaryMissing { path: PathBuf },
}

fn details_suffix(details: &str) -> String {
    if details.is_empty() {
        String::new()
    } else {
        format!(": {details}")
    }
}

impl CniError {
    /// Whether the plugin asked to be called again later (CNI error code 11).
    pub fn is_try_again_later(&self) -> bool {
        matches!(self, CniError::Plugin { code: 11, .. })
    }

    /// The plugin this error came from, if it came from one.
    pub fn plugin(&self) -> Option<&str> {
        match self {
            CniError::Plugin { plugin, .. }
            | CniError::PluginCrashed { plugin, .. }
            | CniError::PluginTimeout { plugin, .. }
            | CniError::BadResult { plugin, .. }
            | CniError::PluginNotFound { plugin, .. }
            | CniError::UnsupportedVersion { plugin, .. } => Some(plugin),
            _ => None,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        CniError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
