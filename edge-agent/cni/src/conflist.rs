//! The network configuration list: generated from the node's podCIDR, written atomically,
//! and read back (ours or any other standard conflist) for the runtime.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::cidr::IpPrefix;
use crate::error::CniError;
use crate::fsutil;

/// The file our conflist is written to in the CNI conf dir.
pub const CONFLIST_FILE_NAME: &str = "10-kedge.conflist";

/// The CNI spec versions this runtime speaks (the 1.1.x standard plugins speak both).
pub const SUPPORTED_VERSIONS: [&str; 2] = ["0.4.0", "1.0.0"];

/// How the node's bridge network is set up. [`BridgeOptions::for_data_dir`] gives K3s-like
/// defaults: network `kedge`, bridge `cni0`, IPAM state under `<data-dir>/agent/cni`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeOptions {
    /// The network's name (host-local keeps its leases in `<ipam_data_dir>/<name>`).
    pub network_name: String,
    /// The Linux bridge on the host (at most 15 characters).
    pub bridge: String,
    /// host-local's data directory.
    pub ipam_data_dir: PathBuf,
    /// MTU for the bridge and veths; the kernel's default when `None`.
    pub mtu: Option<u32>,
    /// Masquerade traffic from pods to outside the pod CIDR.
    pub ip_masq: bool,
    /// Let a pod reach itself through its Service IP.
    pub hairpin_mode: bool,
    /// The spec version written into the conflist.
    pub cni_version: String,
}

impl BridgeOptions {
    pub fn for_data_dir(data_dir: &Path) -> Self {
        BridgeOptions {
            network_name: "kedge".to_string(),
            bridge: "cni0".to_string(),
            ipam_data_dir: data_dir.join("agent/cni/networks"),
            mtu: None,
            ip_masq: true,
            hairpin_mode: true,
            cni_version: "1.0.0".to_string(),
        }
    }
}

/// The conflist for a node whose podCIDR is `pod_cidr` (`10.42.3.0/24`, or a dual-stack
/// pair such as `10.42.3.0/24,fd00:42:3::/64`), chaining the standard plugins the way
/// K3s's default chains flannel's: `bridge` (gateway, masquerade, hairpin, host-local IPAM),
/// `portmap` (hostPorts, through the `portMappings` capability) and `loopback`.
pub fn conflist(pod_cidr: &str, opts: &BridgeOptions) -> Result<String, CniError> {
    let ranges = parse_pod_cidrs(pod_cidr)?
        .into_iter()
        .map(|subnet| json!([{ "subnet": subnet.to_string() }]))
        .collect::<Vec<_>>();
    validate_network_name(&opts.network_name)?;
    validate_bridge_name(&opts.bridge)?;
    if !SUPPORTED_VERSIONS.contains(&opts.cni_version.as_str()) {
        return Err(CniError::InvalidArgument {
            what: "cniVersion",
            value: opts.cni_version.clone(),
            reason: format!("kedge speaks {}", SUPPORTED_VERSIONS.join(" and ")),
        });
    }
    let data_dir = opts
        .ipam_data_dir
        .to_str()
        .ok_or_else(|| CniError::InvalidArgument {
            what: "IPAM data dir",
            value: opts.ipam_data_dir.display().to_string(),
            reason: "it must be valid UTF-8".to_string(),
        })?;
    if !opts.ipam_data_dir.is_absolute() {
        return Err(CniError::InvalidArgument {
            what: "IPAM data dir",
            value: data_dir.to_string(),
            reason: "it must be an absolute path".to_string(),
        });
    }

    let mut bridge = json!({
        "type": "bridge",
        "bridge": opts.bridge,
        "isGateway": true,
        "isDefaultGateway": true,
        "ipMasq": opts.ip_masq,
        "hairpinMode": opts.hairpin_mode,
        "ipam": {
            "type": "host-local",
            "ranges": ranges,
            "dataDir": data_dir,
        },
    });
    if let Some(mtu) = opts.mtu {
        bridge["mtu"] = json!(mtu);
    }
    let list = json!({
        "cniVersion": opts.cni_version,
        "name": opts.network_name,
        "plugins": [
            bridge,
            { "type": "portmap", "capabilities": { "portMappings": true }, "snat": true },
            { "type": "loopback" },
        ],
    });
    Ok(serde_json::to_string_pretty(&list).expect("a JSON value always serializes") + "\n")
}

/// Writes `content` to `<conf_dir>/10-kedge.conflist` atomically (temp file + rename),
/// leaving the file alone if it already holds exactly that. Returns its path.
pub fn write_conflist(conf_dir: &Path, content: &str) -> Result<PathBuf, CniError> {
    NetworkConfigList::parse(content, CONFLIST_FILE_NAME)?;
    let path = conf_dir.join(CONFLIST_FILE_NAME);
    if std::fs::read(&path).is_ok_and(|old| old == content.as_bytes()) {
        return Ok(path);
    }
    fsutil::write_atomic(&path, content.as_bytes(), 0o644)?;
    tracing::info!(path = %path.display(), "wrote CNI conflist");
    Ok(path)
}

/// One or two CIDRs (comma-separated, at most one per family), each a network address.
pub fn parse_pod_cidrs(pod_cidr: &str) -> Result<Vec<IpPrefix>, CniError> {
    let bad = |reason: &str| CniError::InvalidCidr {
        cidr: pod_cidr.to_string(),
        reason: reason.to_string(),
    };
    let mut out: Vec<IpPrefix> = Vec::new();
    for part in pod_cidr.split(',').map(str::trim) {
        let prefix: IpPrefix = part.parse().map_err(|e| bad(&format!("{e}")))?;
        if !prefix.is_network() {
            return Err(bad(&format!(
                "{part} has host bits set (did you mean {}?)",
                prefix.network()
            )));
        }
        let max = if prefix.addr().is_ipv4() { 30 } else { 126 };
        if prefix.prefix_len() > max {
            return Err(bad(&format!("{part} is too small to hold pods")));
        }
        if out
            .iter()
            .any(|p| p.addr().is_ipv4() == prefix.addr().is_ipv4())
        {
            return Err(bad("give at most one CIDR per address family"));
        }
        out.push(prefix);
    }
    Ok(out)
}

fn validate_network_name(name: &str) -> Result<(), CniError> {
    let ok = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok {
        return Err(CniError::InvalidArgument {
            what: "network name",
            value: name.to_string(),
            reason: "use letters, digits, '_', '.' and '-', starting with a letter or digit"
                .to_string(),
        });
    }
    Ok(())
}

fn validate_bridge_name(name: &str) -> Result<(), CniError> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '/' && c != ':');
    if !ok {
        return Err(CniError::InvalidArgument {
            what: "bridge name",
            value: name.to_string(),
            reason: "an interface name is 1 to 15 visible characters, without '/' or ':'"
                .to_string(),
        });
    }
    Ok(())
}

/// One plugin of a list: its `type` and the capabilities it asks the runtime for.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConfig {
    pub plugin_type: String,
    pub capabilities: BTreeSet<String>,
    raw: Map<String, Value>,
}

impl PluginConfig {
    /// The plugin's own configuration object, as written in the list.
    pub fn raw(&self) -> &Map<String, Value> {
        &self.raw
    }
}

/// A parsed network configuration list.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfigList {
    pub name: String,
    pub cni_version: String,
    pub disable_check: bool,
    pub plugins: Vec<PluginConfig>,
    raw: Value,
}

impl NetworkConfigList {
    /// Parses and checks a conflist; `source_name` names it in errors (a path).
    pub fn parse(json: &str, source_name: &str) -> Result<Self, CniError> {
        let value: Value = serde_json::from_str(json).map_err(|e| CniError::InvalidConfig {
            source_name: source_name.to_string(),
            reason: format!("not JSON: {e}"),
        })?;
        Self::from_value(value, source_name)
    }

    pub(crate) fn from_value(value: Value, source_name: &str) -> Result<Self, CniError> {
        let bad = |reason: String| CniError::InvalidConfig {
            source_name: source_name.to_string(),
            reason,
        };
        let obj = value
            .as_object()
            .ok_or_else(|| bad("it must be a JSON object".to_string()))?;
        let name = obj
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| bad("\"name\" must be a non-empty string".to_string()))?;
        validate_network_name(name).map_err(|e| bad(e.to_string()))?;
        let cni_version = obj
            .get("cniVersion")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("\"cniVersion\" must be a string".to_string()))?;
        if !SUPPORTED_VERSIONS.contains(&cni_version) {
            return Err(bad(format!(
                "cniVersion {cni_version:?} is not one kedge speaks ({})",
                SUPPORTED_VERSIONS.join(", ")
            )));
        }
        let disable_check = match obj.get("disableCheck") {
            None => false,
            Some(Value::Bool(b)) => *b,
            // libcni also accepts the string forms
            Some(Value::String(s)) if s == "true" => true,
            Some(Value::String(s)) if s == "false" => false,
            Some(other) => {
                return Err(bad(format!(
                    "\"disableCheck\" must be a boolean, not {other}"
                )));
            }
        };
        let plugins = obj
            .get("plugins")
            .and_then(Value::as_array)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| bad("\"plugins\" must be a non-empty array".to_string()))?;
        let plugins = plugins
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let raw = p
                    .as_object()
                    .ok_or_else(|| bad(format!("plugins[{i}] must be an object")))?
                    .clone();
                let plugin_type = raw
                    .get("type")
                    .and_then(Value::as_str)
                    .filter(|t| {
                        !t.is_empty() && *t != "." && *t != ".." && !t.contains(['/', '\0'])
                    })
                    .ok_or_else(|| {
                        bad(format!(
                            "plugins[{i}].type must be a plugin's file name, such as \"bridge\""
                        ))
                    })?
                    .to_string();
                let capabilities = match raw.get("capabilities") {
                    None => BTreeSet::new(),
                    Some(Value::Object(caps)) => caps
                        .iter()
                        .filter(|(_, on)| on.as_bool() == Some(true))
                        .map(|(k, _)| k.clone())
                        .collect(),
                    Some(_) => {
                        return Err(bad(format!("plugins[{i}].capabilities must be an object")));
                    }
                };
                Ok(PluginConfig {
                    plugin_type,
                    capabilities,
                    raw,
                })
            })
            .collect::<Result<Vec<_>, CniError>>()?;
        Ok(NetworkConfigList {
            name: name.to_string(),
            cni_version: cni_version.to_string(),
            disable_check,
            plugins,
            raw: value,
        })
    }

    /// The lexically first `*.conflist` in `conf_dir`, as libcni picks it.
    pub fn load_dir(conf_dir: &Path) -> Result<(PathBuf, Self), CniError> {
        let entries = std::fs::read_dir(conf_dir).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                CniError::NoConfig {
                    dir: conf_dir.to_path_buf(),
                }
            } else {
                CniError::io("read directory", conf_dir, e)
            }
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "conflist") && p.is_file())
            .collect();
        files.sort();
        let path = files.into_iter().next().ok_or_else(|| CniError::NoConfig {
            dir: conf_dir.to_path_buf(),
        })?;
        let text = std::fs::read_to_string(&path).map_err(|e| CniError::io("read", &path, e))?;
        let list = Self::parse(&text, &path.display().to_string())?;
        Ok((path, list))
    }

    /// The list as JSON, exactly as parsed.
    pub fn to_value(&self) -> &Value {
        &self.raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> BridgeOptions {
        BridgeOptions::for_data_dir(Path::new("/var/lib/kedge"))
    }

    #[test]
    fn generated_conflist_chains_bridge_portmap_loopback() {
        let text = conflist("10.42.3.0/24", &opts()).unwrap();
        let list = NetworkConfigList::parse(&text, "test").unwrap();
        assert_eq!(list.name, "kedge");
        assert_eq!(list.cni_version, "1.0.0");
        let types: Vec<_> = list
            .plugins
            .iter()
            .map(|p| p.plugin_type.as_str())
            .collect();
        assert_eq!(types, ["bridge", "portmap", "loopback"]);
        let bridge = list.plugins[0].raw();
        assert_eq!(bridge["bridge"], "cni0");
        assert_eq!(bridge["isGateway"], true);
        assert_eq!(bridge["ipMasq"], true);
        assert_eq!(bridge["hairpinMode"], true);
        assert_eq!(bridge["ipam"]["type"], "host-local");
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.42.3.0/24");
        assert_eq!(
            bridge["ipam"]["dataDir"],
            "/var/lib/kedge/agent/cni/networks"
        );
        assert!(list.plugins[1].capabilities.contains("portMappings"));
        assert!(list.plugins[2].capabilities.is_empty());
    }

    #[test]
    fn dual_stack_gets_two_ranges() {
        let text = conflist("10.42.3.0/24, fd00:42:3::/64", &opts()).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        let ranges = &v["plugins"][0]["ipam"]["ranges"];
        assert_eq!(ranges[0][0]["subnet"], "10.42.3.0/24");
        assert_eq!(ranges[1][0]["subnet"], "fd00:42:3::/64");
    }

    #[test]
    fn bad_cidrs_and_options_are_refused() {
        for bad in [
            "",
            "10.42.3.0",
            "10.42.3.1/24",
            "10.42.3.0/31",
            "10.0.0.0/8,10.1.0.0/16",
            "banana",
        ] {
            assert!(
                matches!(conflist(bad, &opts()), Err(CniError::InvalidCidr { .. })),
                "{bad}"
            );
        }
        let err = conflist("10.42.3.1/24", &opts()).unwrap_err().to_string();
        assert!(err.contains("10.42.3.0/24"), "{err}");
        let mut o = opts();
        o.bridge = "a-very-long-bridge-name".into();
        assert!(conflist("10.42.3.0/24", &o).is_err());
        let mut o = opts();
        o.network_name = "bad name".into();
        assert!(conflist("10.42.3.0/24", &o).is_err());
        let mut o = opts();
        o.cni_version = "0.2.0".into();
        assert!(conflist("10.42.3.0/24", &o).is_err());
        let mut o = opts();
        o.ipam_data_dir = "relative".into();
        assert!(conflist("10.42.3.0/24", &o).is_err());
    }

    #[test]
    fn parse_refuses_broken_lists() {
        for (json, needle) in [
            ("not json", "not JSON"),
            ("[]", "object"),
            (
                r#"{"cniVersion":"1.0.0","plugins":[{"type":"bridge"}]}"#,
                "name",
            ),
            (
                r#"{"name":"n","plugins":[{"type":"bridge"}]}"#,
                "cniVersion",
            ),
            (
                r#"{"name":"n","cniVersion":"0.2.0","plugins":[{"type":"x"}]}"#,
                "0.2.0",
            ),
            (
                r#"{"name":"n","cniVersion":"1.0.0","plugins":[]}"#,
                "plugins",
            ),
            (
                r#"{"name":"n","cniVersion":"1.0.0","plugins":[{"type":"../sh"}]}"#,
                "type",
            ),
            (
                r#"{"name":"n","cniVersion":"1.0.0","plugins":[{"type":""}]}"#,
                "type",
            ),
            (
                r#"{"name":"n","cniVersion":"1.0.0","plugins":[{}]}"#,
                "type",
            ),
            (
                r#"{"name":"n","cniVersion":"1.0.0","plugins":[{"type":"x","capabilities":1}]}"#,
                "capabilities",
            ),
        ] {
            let err = NetworkConfigList::parse(json, "f.conflist").unwrap_err();
            assert!(
                matches!(err, CniError::InvalidConfig { .. }) && err.to_string().contains(needle),
                "{json}: {err}"
            );
        }
    }

    #[test]
    fn write_is_atomic_and_skips_identical_content() {
        let dir = tempfile::tempdir().unwrap();
        let conf_dir = dir.path().join("etc/cni/net.d");
        let text = conflist("10.42.3.0/24", &opts()).unwrap();
        let path = write_conflist(&conf_dir, &text).unwrap();
        assert_eq!(path, conf_dir.join(CONFLIST_FILE_NAME));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        let before = std::fs::metadata(&path).unwrap().modified().unwrap();
        write_conflist(&conf_dir, &text).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            before
        );
        // no temp files left behind
        assert_eq!(std::fs::read_dir(&conf_dir).unwrap().count(), 1);
        let (loaded_path, list) = NetworkConfigList::load_dir(&conf_dir).unwrap();
        assert_eq!(loaded_path, path);
        assert_eq!(list.name, "kedge");
        assert!(write_conflist(&conf_dir, "{").is_err());
        assert!(matches!(
            NetworkConfigList::load_dir(&dir.path().join("nope")),
            Err(CniError::NoConfig { .. })
        ));
    }
}
