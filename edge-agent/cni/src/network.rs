//! Our CNI runtime: runs a network configuration list's plugins for a sandbox (ADD in
//! order passing prevResult, DEL in reverse, CHECK), and caches each ADD's result on disk
//! so that DEL has what it needs after an agent restart.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::cidr::IpPrefix;
use crate::conflist::{NetworkConfigList, PluginConfig};
use crate::error::CniError;
use crate::exec::{self, Invocation, Op};
use crate::netns::{Netns, NetnsDir, run_in_netns};
use crate::types::{Attachment, CniResult, PodRef, PortMapping};
use crate::{fsutil, netlink};

/// Where plugins, configs and cached results live, and how long a plugin may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniConfig {
    /// Searched in order for plugin binaries; also passed to plugins as CNI_PATH.
    pub bin_dirs: Vec<PathBuf>,
    /// Where the conflist is (the lexically first `*.conflist` is used).
    pub conf_dir: PathBuf,
    /// Where ADD results are cached (`<cache_dir>/results/<network>-<id>-<ifname>`).
    pub cache_dir: PathBuf,
    /// The pod's interface name.
    pub ifname: String,
    /// How long one plugin call may take before it is killed.
    pub plugin_timeout: Duration,
    /// Where teardown pins the short-lived stand-in namespace it needs when a sandbox's
    /// own is gone (see [`PodNetwork::teardown`]).
    pub netns_dir: PathBuf,
    /// Runs each plugin as `<launcher> <plugin>` when set: the agent's launcher puts
    /// the plugin in the container runtime's cgroup first, so that its memory is not
    /// charged to the agent's budget.
    pub launcher: Option<PathBuf>,
}

impl CniConfig {
    /// The default bin dirs: Debian's package location, then the upstream one.
    pub fn default_bin_dirs() -> Vec<PathBuf> {
        vec![PathBuf::from("/usr/lib/cni"), PathBuf::from("/opt/cni/bin")]
    }

    /// The agent's layout, as K3s's: the conflist in `<data-dir>/agent/etc/cni/net.d`,
    /// cached results in `<data-dir>/agent/cni/cache`.
    pub fn for_data_dir(data_dir: &Path) -> Self {
        CniConfig {
            bin_dirs: Self::default_bin_dirs(),
            conf_dir: data_dir.join("agent/etc/cni/net.d"),
            cache_dir: data_dir.join("agent/cni/cache"),
            ifname: "eth0".to_string(),
            plugin_timeout: Duration::from_secs(60),
            launcher: None,
            netns_dir: PathBuf::from(crate::netns::DEFAULT_NETNS_DIR),
        }
    }
}

/// The pod network: one network configuration list and the runtime that applies it to
/// sandboxes. Calls for different sandboxes run concurrently; calls for the same sandbox
/// wait for each other.
#[derive(Debug)]
pub struct PodNetwork {
    config: CniConfig,
    network: NetworkConfigList,
    locks: KeyedLocks,
}

/// What is cached per attachment: enough to run DEL (and CHECK) as ADD ran.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CacheEntry {
    kind: String,
    container_id: String,
    if_name: String,
    network_name: String,
    netns: Option<PathBuf>,
    pod: PodRef,
    #[serde(default)]
    port_mappings: Vec<PortMapping>,
    /// The network configuration list ADD ran with.
    config: Value,
    /// The chain's final result.
    result: Value,
}

const CACHE_KIND: &str = "kedgeCniCacheV1";

impl PodNetwork {
    /// Loads the conflist from `config.conf_dir`.
    pub fn load(config: CniConfig) -> Result<Self, CniError> {
        let (path, network) = NetworkConfigList::load_dir(&config.conf_dir)?;
        tracing::debug!(conflist = %path.display(), network = %network.name, "loaded CNI network");
        Self::with_network(config, network)
    }

    /// Uses `network` as given.
    pub fn with_network(config: CniConfig, network: NetworkConfigList) -> Result<Self, CniError> {
        validate_ifname(&config.ifname)?;
        Ok(PodNetwork {
            config,
            network,
            locks: KeyedLocks::default(),
        })
    }

    pub fn network(&self) -> &NetworkConfigList {
        &self.network
    }

    pub fn config(&self) -> &CniConfig {
        &self.config
    }

    /// Checks that every plugin of the list is installed and speaks its cniVersion
    /// (the spec's VERSION command).
    pub async fn validate(&self) -> Result<(), CniError> {
        let stdin = serde_json::to_vec(&json!({ "cniVersion": self.network.cni_version }))
            .expect("a JSON value always serializes");
        for plugin in &self.network.plugins {
            let binary = exec::find_plugin(&self.config.bin_dirs, &plugin.plugin_type)?;
            let inv = Invocation {
                op: Op::Version,
                container_id: "",
                netns: None,
                ifname: "",
                cni_args: "",
                bin_dirs: &self.config.bin_dirs,
                launcher: self.config.launcher.as_deref(),
            };
            let out = exec::run_plugin(
                &plugin.plugin_type,
                &binary,
                &inv,
                &stdin,
                self.config.plugin_timeout,
            )
            .await?;
            #[derive(Deserialize)]
            struct Versions {
                #[serde(rename = "supportedVersions")]
                supported: Vec<String>,
            }
            let versions: Versions =
                serde_json::from_slice(&out).map_err(|e| CniError::BadResult {
                    plugin: plugin.plugin_type.clone(),
                    command: "VERSION",
                    reason: e.to_string(),
                })?;
            if !versions.supported.contains(&self.network.cni_version) {
                return Err(CniError::UnsupportedVersion {
                    plugin: plugin.plugin_type.clone(),
                    version: self.network.cni_version.clone(),
                    supported: versions.supported.join(", "),
                });
            }
        }
        Ok(())
    }

    /// Attaches sandbox `sandbox_id` (whose network namespace is `netns`) to the network:
    /// runs ADD through the chain, caches the result, and returns the pod's addresses.
    ///
    /// If a plugin fails, what the earlier ones did is undone (DEL through the chain)
    /// before the error is returned, so a failed setup leaks no IP. Calling it again for
    /// an attached sandbox with the same `netns` returns the cached attachment (no second
    /// ADD); with another `netns` it fails with [`CniError::AlreadyAttached`].
    #[tracing::instrument(name = "cni_add", level = "debug", skip_all,
        fields(sandbox = sandbox_id, network = %self.network.name, pod = %format!("{}/{}", pod.namespace, pod.name)))]
    pub async fn setup(
        &self,
        sandbox_id: &str,
        netns: &Path,
        pod: &PodRef,
        port_mappings: &[PortMapping],
    ) -> Result<Attachment, CniError> {
        validate_container_id(sandbox_id)?;
        pod.validate()?;
        for mapping in port_mappings {
            mapping.validate()?;
        }
        if !crate::netns::is_netns(netns) {
            return Err(CniError::NotANetns {
                path: netns.to_path_buf(),
            });
        }
        let _guard = self.locks.lock(sandbox_id).await;
        // Set up already (an agent that restarted between setup and recording the
        // sandbox): the same answer again, without a second ADD that would lease a
        // second address.
        if let Some(entry) = self.read_cache(sandbox_id).await? {
            if entry.netns.as_deref() == Some(netns) {
                tracing::debug!("sandbox attached already; returning the cached attachment");
                return self.attachment_from_entry(sandbox_id, entry);
            }
            return Err(CniError::AlreadyAttached {
                network: self.network.name.clone(),
                sandbox_id: sandbox_id.to_string(),
                netns: entry.netns.unwrap_or_default(),
            });
        }
        let cni_args = cni_args(pod, sandbox_id);
        let inv = Invocation {
            op: Op::Add,
            container_id: sandbox_id,
            netns: Some(netns),
            ifname: &self.config.ifname,
            cni_args: &cni_args,
            bin_dirs: &self.config.bin_dirs,
            launcher: self.config.launcher.as_deref(),
        };

        let mut prev: Option<Value> = None;
        for plugin in &self.network.plugins {
            match self
                .run_one(&self.network, plugin, &inv, prev.as_ref(), port_mappings)
                .await
                .and_then(|out| parse_result(plugin, &out))
            {
                Ok(result) => prev = Some(result),
                Err(e) => {
                    tracing::warn!(plugin = %plugin.plugin_type, error = %e, "CNI ADD failed; undoing it");
                    let del = Invocation { op: Op::Del, ..inv };
                    if let Err(undo) = self
                        .del_chain(&self.network, &del, prev.as_ref(), port_mappings)
                        .await
                    {
                        tracing::warn!(error = %undo, "undoing a failed CNI ADD failed too");
                    }
                    return Err(e);
                }
            }
        }
        let result_value = prev.unwrap_or_else(|| json!({}));
        let result: CniResult =
            serde_json::from_value(result_value.clone()).map_err(|e| CniError::BadResult {
                plugin: self
                    .network
                    .plugins
                    .last()
                    .map(|p| p.plugin_type.clone())
                    .unwrap_or_default(),
                command: "ADD",
                reason: e.to_string(),
            })?;
        let attachment =
            Attachment::from_result(sandbox_id, &self.network.name, &self.config.ifname, result);
        let attachment = match attachment {
            Ok(a) => a,
            Err(e) => {
                let del = Invocation { op: Op::Del, ..inv };
                let _ = self
                    .del_chain(&self.network, &del, Some(&result_value), port_mappings)
                    .await;
                return Err(e);
            }
        };
        let entry = CacheEntry {
            kind: CACHE_KIND.to_string(),
            container_id: sandbox_id.to_string(),
            if_name: self.config.ifname.clone(),
            network_name: self.network.name.clone(),
            netns: Some(netns.to_path_buf()),
            pod: pod.clone(),
            port_mappings: port_mappings.to_vec(),
            config: self.network.to_value().clone(),
            result: result_value,
        };
        if let Err(e) = self.write_cache(&entry).await {
            // Without the cache a later DEL could not find what this ADD made: undo it.
            let del = Invocation { op: Op::Del, ..inv };
            let _ = self
                .del_chain(&self.network, &del, Some(&entry.result), port_mappings)
                .await;
            return Err(e);
        }
        tracing::info!(ip = %attachment.ip, "sandbox attached to the pod network");
        Ok(attachment)
    }

    /// Detaches sandbox `sandbox_id`: runs DEL through the chain in reverse, with the
    /// configuration, port mappings and result cached by ADD (the current conflist if
    /// nothing was cached), then forgets the cache. Idempotent: it succeeds for a sandbox
    /// never attached, already detached, or whose namespace is gone (`netns` `None` or
    /// missing). A failure keeps the cache, so the call can be retried.
    ///
    /// Call it before removing the sandbox's namespace. If the namespace (or the pod's
    /// interface in it) is gone already, DEL runs against a stand-in namespace holding an
    /// interface of that name with the pod's cached addresses: the bridge plugin learns the pod's
    /// addresses only from that interface, and without them it would leave its ipMasq
    /// rules behind (containernetworking/plugins#810, open upstream).
    #[tracing::instrument(name = "cni_del", level = "debug", skip_all,
        fields(sandbox = sandbox_id, network = %self.network.name))]
    pub async fn teardown(
        &self,
        sandbox_id: &str,
        netns: Option<&Path>,
        pod: &PodRef,
    ) -> Result<(), CniError> {
        validate_container_id(sandbox_id)?;
        pod.validate()?;
        let _guard = self.locks.lock(sandbox_id).await;
        let cached = self.read_cache(sandbox_id).await?;
        let (network, prev, port_mappings) = match &cached {
            Some(entry) => {
                let network = NetworkConfigList::from_value(
                    entry.config.clone(),
                    &self.cache_path(sandbox_id).display().to_string(),
                )
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "cached CNI config unusable; deleting with the current one");
                    self.network.clone()
                });
                (
                    network,
                    Some(entry.result.clone()),
                    entry.port_mappings.clone(),
                )
            }
            None => (self.network.clone(), None, Vec::new()),
        };
        let pod_ips = cached
            .as_ref()
            .and_then(|e| {
                Attachment::from_result(
                    sandbox_id,
                    &e.network_name,
                    &e.if_name,
                    serde_json::from_value(e.result.clone()).ok()?,
                )
                .ok()
            })
            .map(|a| a.ips)
            .unwrap_or_default();
        // Namespace work is blocking (threads, mounts, netlink): off the runtime's threads.
        let (live, stand_in) = {
            let netns = netns.map(Path::to_path_buf);
            let ifname = self.config.ifname.clone();
            let netns_dir = self.config.netns_dir.clone();
            let id = sandbox_id.to_string();
            tokio::task::spawn_blocking(move || {
                let live = netns.filter(|p| crate::netns::is_netns(p));
                let has_interface = live.as_deref().is_some_and(|p| {
                    run_in_netns(p, || nix::net::if_::if_nametoindex(ifname.as_str()).is_ok())
                        .unwrap_or(true)
                });
                let stand_in = if !has_interface && !pod_ips.is_empty() {
                    match stand_in_netns(&netns_dir, &id, &ifname, &pod_ips) {
                        Ok(ns) => Some(ns),
                        Err(e) => {
                            tracing::warn!(error = %e, "no stand-in namespace for DEL; the bridge plugin may leave its ipMasq rules");
                            None
                        }
                    }
                } else {
                    None
                };
                (live, stand_in)
            })
            .await
            .map_err(|e| CniError::io("prepare DEL", &self.config.netns_dir, std::io::Error::other(e)))?
        };
        // Plugins treat an empty CNI_NETNS as "the sandbox is gone": clean up host state only.
        let del_netns = stand_in.as_ref().map(|ns| ns.path()).or(live.as_deref());
        let cni_args = cni_args(pod, sandbox_id);
        let inv = Invocation {
            op: Op::Del,
            container_id: sandbox_id,
            netns: del_netns,
            ifname: &self.config.ifname,
            cni_args: &cni_args,
            bin_dirs: &self.config.bin_dirs,
            launcher: self.config.launcher.as_deref(),
        };
        let deleted = self
            .del_chain(&network, &inv, prev.as_ref(), &port_mappings)
            .await;
        if let Some(ns) = &stand_in
            && let Err(e) = crate::netns::remove_pinned(ns.path())
        {
            tracing::warn!(error = %e, "could not remove the stand-in namespace");
        }
        deleted?;
        self.remove_cache(sandbox_id).await?;
        tracing::info!("sandbox detached from the pod network");
        Ok(())
    }

    /// Runs CHECK through the chain for an attached sandbox (unless the list disables
    /// it) and returns its attachment.
    #[tracing::instrument(name = "cni_check", level = "debug", skip_all,
        fields(sandbox = sandbox_id, network = %self.network.name))]
    pub async fn status(
        &self,
        sandbox_id: &str,
        netns: &Path,
        pod: &PodRef,
    ) -> Result<Attachment, CniError> {
        validate_container_id(sandbox_id)?;
        pod.validate()?;
        let _guard = self.locks.lock(sandbox_id).await;
        let entry = self
            .read_cache(sandbox_id)
            .await?
            .ok_or_else(|| CniError::NotAttached {
                network: self.network.name.clone(),
                sandbox_id: sandbox_id.to_string(),
            })?;
        let network = NetworkConfigList::from_value(
            entry.config.clone(),
            &self.cache_path(sandbox_id).display().to_string(),
        )?;
        if !network.disable_check {
            let cni_args = cni_args(pod, sandbox_id);
            let inv = Invocation {
                op: Op::Check,
                container_id: sandbox_id,
                netns: Some(netns),
                ifname: &self.config.ifname,
                cni_args: &cni_args,
                bin_dirs: &self.config.bin_dirs,
                launcher: self.config.launcher.as_deref(),
            };
            for plugin in &network.plugins {
                self.run_one(
                    &network,
                    plugin,
                    &inv,
                    Some(&entry.result),
                    &entry.port_mappings,
                )
                .await?;
            }
        }
        self.attachment_from_entry(sandbox_id, entry)
    }

    /// The cached attachment of a sandbox (after an agent restart, its pod IP), if any.
    pub async fn attachment(&self, sandbox_id: &str) -> Result<Option<Attachment>, CniError> {
        validate_container_id(sandbox_id)?;
        match self.read_cache(sandbox_id).await? {
            Some(entry) => self.attachment_from_entry(sandbox_id, entry).map(Some),
            None => Ok(None),
        }
    }

    /// The sandbox ids with a cached attachment to this network, sorted: what a restarted
    /// agent compares with its sandboxes to find leftovers to tear down.
    pub async fn attached_sandboxes(&self) -> Result<Vec<String>, CniError> {
        let dir = self.config.cache_dir.join("results");
        let prefix = format!("{}-", self.network.name);
        let suffix = format!("-{}", self.config.ifname);
        let names = tokio::task::spawn_blocking(move || -> Result<Vec<String>, CniError> {
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(CniError::io("read directory", &dir, e)),
            };
            let mut out = Vec::new();
            for entry in entries.filter_map(Result::ok) {
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some(id) = name
                    .strip_prefix(&prefix)
                    .and_then(|rest| rest.strip_suffix(&suffix))
                    && validate_container_id(id).is_ok()
                {
                    out.push(id.to_string());
                }
            }
            out.sort();
            Ok(out)
        })
        .await
        .map_err(|e| {
            CniError::io(
                "list cache",
                &self.config.cache_dir,
                std::io::Error::other(e),
            )
        })??;
        Ok(names)
    }

    fn attachment_from_entry(
        &self,
        sandbox_id: &str,
        entry: CacheEntry,
    ) -> Result<Attachment, CniError> {
        let result: CniResult =
            serde_json::from_value(entry.result).map_err(|e| CniError::InvalidConfig {
                source_name: self.cache_path(sandbox_id).display().to_string(),
                reason: format!("cached result unreadable: {e}"),
            })?;
        Attachment::from_result(sandbox_id, &entry.network_name, &entry.if_name, result)
    }

    /// DEL through `network`'s plugins in reverse, each given `prev` (the cached result).
    /// Unlike libcni it does not stop at the first failure: DEL is idempotent, so every
    /// plugin gets its chance to release what it holds (a missing or broken portmap must
    /// not keep bridge from releasing the IP), and the first error is returned.
    async fn del_chain(
        &self,
        network: &NetworkConfigList,
        inv: &Invocation<'_>,
        prev: Option<&Value>,
        port_mappings: &[PortMapping],
    ) -> Result<(), CniError> {
        let mut first_error = None;
        for plugin in network.plugins.iter().rev() {
            if let Err(e) = self
                .run_one(network, plugin, inv, prev, port_mappings)
                .await
            {
                tracing::warn!(plugin = %plugin.plugin_type, error = %e, "CNI DEL failed; going on with the rest of the chain");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Runs one plugin of `network` with its config built as libcni builds it: the
    /// plugin's object plus the list's name and cniVersion, prevResult, and runtimeConfig
    /// for the capabilities it asks for.
    async fn run_one(
        &self,
        network: &NetworkConfigList,
        plugin: &PluginConfig,
        inv: &Invocation<'_>,
        prev: Option<&Value>,
        port_mappings: &[PortMapping],
    ) -> Result<Vec<u8>, CniError> {
        let stdin = plugin_stdin(network, plugin, prev, port_mappings);
        let binary = exec::find_plugin(&self.config.bin_dirs, &plugin.plugin_type)?;
        let started = tokio::time::Instant::now();
        let out = exec::run_plugin(
            &plugin.plugin_type,
            &binary,
            inv,
            &stdin,
            self.config.plugin_timeout,
        )
        .await;
        tracing::debug!(plugin = %plugin.plugin_type, op = inv.op.as_str(),
            ok = out.is_ok(), elapsed_ms = started.elapsed().as_millis() as u64, "ran CNI plugin");
        out
    }

    /// Whether ADD left a cached result for this sandbox that no DEL has cleared yet.
    pub fn has_cached_attachment(&self, sandbox_id: &str) -> bool {
        validate_container_id(sandbox_id).is_ok() && self.cache_path(sandbox_id).exists()
    }

    fn cache_path(&self, sandbox_id: &str) -> PathBuf {
        self.config.cache_dir.join("results").join(format!(
            "{}-{}-{}",
            self.network.name, sandbox_id, self.config.ifname
        ))
    }

    async fn write_cache(&self, entry: &CacheEntry) -> Result<(), CniError> {
        let path = self.cache_path(&entry.container_id);
        let bytes = serde_json::to_vec(entry).expect("a cache entry always serializes");
        tokio::task::spawn_blocking(move || fsutil::write_atomic(&path, &bytes, 0o600))
            .await
            .map_err(|e| {
                CniError::io(
                    "write cache",
                    &self.config.cache_dir,
                    std::io::Error::other(e),
                )
            })?
    }

    async fn read_cache(&self, sandbox_id: &str) -> Result<Option<CacheEntry>, CniError> {
        let path = self.cache_path(sandbox_id);
        let bytes = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CniError::io("read", &path, e)),
        };
        match serde_json::from_slice::<CacheEntry>(&bytes) {
            Ok(entry) if entry.kind == CACHE_KIND && entry.container_id == sandbox_id => {
                Ok(Some(entry))
            }
            Ok(_) | Err(_) => {
                // A cache we cannot use must not block DEL: treat it as absent.
                tracing::warn!(path = %path.display(), "ignoring an unreadable CNI cache entry");
                Ok(None)
            }
        }
    }

    async fn remove_cache(&self, sandbox_id: &str) -> Result<(), CniError> {
        let path = self.cache_path(sandbox_id);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CniError::io("remove", &path, e)),
        }
    }
}

/// A fresh namespace `<dir>/kedge-del-<sandbox>` holding an `<ifname>` (one end of a
/// veth pair) with the pod's addresses, for DEL when the sandbox's own is gone.
fn stand_in_netns(
    dir: &Path,
    sandbox_id: &str,
    ifname: &str,
    ips: &[IpPrefix],
) -> Result<Netns, CniError> {
    let dir = NetnsDir::new(dir);
    let name = format!("kedge-del-{sandbox_id}");
    dir.remove(&name)?;
    let ns = dir.create(&name)?;
    let added = run_in_netns(ns.path(), || {
        netlink::add_interface_with_addresses(ifname, "kedge-del0", ips)
    })
    .and_then(|r| {
        r.map_err(|source| CniError::Netns {
            path: ns.path().to_path_buf(),
            op: "add the stand-in interface",
            source,
        })
    });
    if let Err(e) = added {
        let _ = dir.remove(&name);
        return Err(e);
    }
    Ok(ns)
}

/// A plugin's stdin.
fn plugin_stdin(
    network: &NetworkConfigList,
    plugin: &PluginConfig,
    prev: Option<&Value>,
    port_mappings: &[PortMapping],
) -> Vec<u8> {
    let mut conf: Map<String, Value> = plugin.raw().clone();
    conf.insert("name".to_string(), json!(network.name));
    conf.insert("cniVersion".to_string(), json!(network.cni_version));
    if let Some(prev) = prev {
        conf.insert("prevResult".to_string(), prev.clone());
    }
    let mut runtime = Map::new();
    if plugin.capabilities.contains("portMappings") && !port_mappings.is_empty() {
        runtime.insert("portMappings".to_string(), json!(port_mappings));
    }
    if !runtime.is_empty() {
        conf.insert("runtimeConfig".to_string(), Value::Object(runtime));
    }
    serde_json::to_vec(&Value::Object(conf)).expect("a JSON value always serializes")
}

/// A plugin's ADD output: a CNI result object.
fn parse_result(plugin: &PluginConfig, out: &[u8]) -> Result<Value, CniError> {
    let bad = |reason: String| CniError::BadResult {
        plugin: plugin.plugin_type.clone(),
        command: "ADD",
        reason,
    };
    let value: Value = serde_json::from_slice(out).map_err(|e| bad(e.to_string()))?;
    serde_json::from_value::<CniResult>(value.clone()).map_err(|e| bad(e.to_string()))?;
    Ok(value)
}

/// CNI_ARGS as the kubelet (dockershim, then CRI runtimes) sets them.
fn cni_args(pod: &PodRef, sandbox_id: &str) -> String {
    format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
        pod.namespace, pod.name, sandbox_id, pod.uid
    )
}

/// The spec's container id: letters, digits, `_`, `.`, `-`, starting with a letter or digit.
fn validate_container_id(id: &str) -> Result<(), CniError> {
    let ok = !id.is_empty()
        && id.len() <= 200
        && id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok {
        return Err(CniError::InvalidArgument {
            what: "sandbox id",
            value: id.to_string(),
            reason:
                "use 1 to 200 letters, digits, '_', '.' or '-', starting with a letter or digit"
                    .to_string(),
        });
    }
    Ok(())
}

fn validate_ifname(name: &str) -> Result<(), CniError> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '/' && c != ':');
    if !ok {
        return Err(CniError::InvalidArgument {
            what: "interface name",
            value: name.to_string(),
            reason: "use 1 to 15 visible characters, without '/' or ':'".to_string(),
        });
    }
    Ok(())
}

/// One async mutex per key, dropped when nobody holds or waits for it.
#[derive(Debug, Default)]
struct KeyedLocks {
    map: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

struct KeyGuard<'a> {
    locks: &'a KeyedLocks,
    key: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl KeyedLocks {
    async fn lock(&self, key: &str) -> KeyGuard<'_> {
        let mutex = {
            let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(key.to_string()).or_default().clone()
        };
        let guard = mutex.lock_owned().await;
        KeyGuard {
            locks: self,
            key: key.to_string(),
            guard: Some(guard),
        }
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.locks.map.lock().unwrap_or_else(|e| e.into_inner());
        if map
            .get(&self.key)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> NetworkConfigList {
        NetworkConfigList::parse(
            r#"{"cniVersion":"1.0.0","name":"net","plugins":[
                {"type":"bridge","bridge":"cni0"},
                {"type":"portmap","capabilities":{"portMappings":true}},
                {"type":"loopback"}]}"#,
            "t",
        )
        .unwrap()
    }

    #[test]
    fn stdin_carries_name_version_prev_result_and_capabilities() {
        let net = list();
        let prev = json!({"cniVersion":"1.0.0","ips":[{"address":"10.0.0.2/24"}]});
        let maps = [PortMapping::tcp(8080, 80)];
        let bridge: Value =
            serde_json::from_slice(&plugin_stdin(&net, &net.plugins[0], None, &maps)).unwrap();
        assert_eq!(bridge["name"], "net");
        assert_eq!(bridge["cniVersion"], "1.0.0");
        assert_eq!(bridge["bridge"], "cni0");
        assert!(bridge.get("prevResult").is_none());
        assert!(
            bridge.get("runtimeConfig").is_none(),
            "bridge did not ask for portMappings"
        );
        let portmap: Value =
            serde_json::from_slice(&plugin_stdin(&net, &net.plugins[1], Some(&prev), &maps))
                .unwrap();
        assert_eq!(portmap["prevResult"], prev);
        assert_eq!(
            portmap["runtimeConfig"]["portMappings"],
            json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}])
        );
        let no_maps: Value =
            serde_json::from_slice(&plugin_stdin(&net, &net.plugins[1], Some(&prev), &[])).unwrap();
        assert!(no_maps.get("runtimeConfig").is_none());
    }

    #[test]
    fn cni_args_and_ids() {
        let pod = PodRef::new("default", "web-0", "1234-5678");
        assert_eq!(
            cni_args(&pod, "abc"),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=1234-5678"
        );
        assert!(validate_container_id("0a1b2c-d_e.f").is_ok());
        for bad in ["", "-a", "a/b", "a b", "../x"] {
            assert!(validate_container_id(bad).is_err(), "{bad}");
        }
        assert!(validate_ifname("eth0").is_ok());
        assert!(validate_ifname("a/b").is_err());
        assert!(validate_ifname("0123456789abcdef").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn keyed_locks_serialize_one_key_and_clean_up() {
        let locks = KeyedLocks::default();
        let a = locks.lock("a").await;
        // another key is free
        let b = locks.lock("b").await;
        drop(b);
        // the same key waits
        let waiting = tokio::time::timeout(Duration::from_millis(20), locks.lock("a")).await;
        assert!(waiting.is_err());
        drop(a);
        let again = locks.lock("a").await;
        drop(again);
        assert!(locks.map.lock().unwrap().is_empty());
    }
}
