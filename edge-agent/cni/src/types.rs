//! What goes into a CNI call (the pod, its port mappings) and what comes out (the result,
//! and the pod's attachment read from it).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::cidr::IpPrefix;
use crate::error::CniError;

/// The pod a sandbox belongs to, passed to plugins in CNI_ARGS as the kubelet does
/// (`K8S_POD_NAMESPACE`, `K8S_POD_NAME`, `K8S_POD_UID`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl PodRef {
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        uid: impl Into<String>,
    ) -> Self {
        PodRef {
            namespace: namespace.into(),
            name: name.into(),
            uid: uid.into(),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), CniError> {
        for (what, value) in [
            ("pod namespace", &self.namespace),
            ("pod name", &self.name),
            ("pod uid", &self.uid),
        ] {
            // CNI_ARGS is `K=V;K=V`: the values must not break that.
            if value.is_empty() || value.contains([';', '=']) || value.chars().any(char::is_control)
            {
                return Err(CniError::InvalidArgument {
                    what,
                    value: value.clone(),
                    reason: "it must be non-empty, without ';', '=' or control characters"
                        .to_string(),
                });
            }
        }
        Ok(())
    }
}

/// A port's transport protocol, as the portmap plugin spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

/// A hostPort: `host_ip:host_port` on the node forwarded to the pod's `container_port`.
/// Passed to plugins with the `portMappings` capability (portmap) in runtimeConfig.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
    /// Only this host address, or every one when `None`.
    #[serde(rename = "hostIP", default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<IpAddr>,
}

impl PortMapping {
    pub fn tcp(host_port: u16, container_port: u16) -> Self {
        PortMapping {
            host_port,
            container_port,
            protocol: Protocol::Tcp,
            host_ip: None,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), CniError> {
        if self.host_port == 0 || self.container_port == 0 {
            return Err(CniError::InvalidArgument {
                what: "port mapping",
                value: format!("{}:{}", self.host_port, self.container_port),
                reason: "host and container ports must be 1 to 65535".to_string(),
            });
        }
        Ok(())
    }
}

/// A CNI result (spec 1.0.0, also reading 0.4.0's): interfaces, IPs, routes, DNS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CniResult {
    pub cni_version: String,
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub dns: Dns,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// The netns path for interfaces inside the sandbox; empty for host-side ones.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
    pub address: IpPrefix,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub dst: IpPrefix,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// A sandbox's attachment to the pod network: what the pod manager reports as podIP(s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub sandbox_id: String,
    pub network: String,
    /// The interface inside the sandbox (`eth0`).
    pub ifname: String,
    /// The primary pod IP (the first IPv4 address, else the first): `status.podIP`.
    pub ip: IpAddr,
    /// Every address on the pod's interface with its prefix: `status.podIPs`.
    pub ips: Vec<IpPrefix>,
    /// The gateway of the primary address (the bridge's address).
    pub gateway: Option<IpAddr>,
    /// The pod interface's MAC address, when the plugin reported it.
    pub mac: Option<String>,
    /// The chain's final result, as DEL and CHECK get it back.
    pub result: CniResult,
}

impl Attachment {
    /// Reads the pod's addresses from a chain's final result.
    pub(crate) fn from_result(
        sandbox_id: &str,
        network: &str,
        ifname: &str,
        result: CniResult,
    ) -> Result<Self, CniError> {
        let pod_if = result
            .interfaces
            .iter()
            .position(|i| i.name == ifname && !i.sandbox.is_empty());
        let mut configs: Vec<&IpConfig> = result
            .ips
            .iter()
            .filter(|ip| pod_if.is_some() && ip.interface == pod_if)
            .collect();
        if configs.is_empty() {
            // Plugins that do not index interfaces: every non-loopback address is the pod's.
            configs = result
                .ips
                .iter()
                .filter(|ip| !ip.address.addr().is_loopback())
                .collect();
        }
        let primary = configs
            .iter()
            .find(|c| c.address.addr().is_ipv4())
            .or(configs.first())
            .ok_or_else(|| CniError::NoAddress {
                network: network.to_string(),
                sandbox_id: sandbox_id.to_string(),
            })?;
        Ok(Attachment {
            sandbox_id: sandbox_id.to_string(),
            network: network.to_string(),
            ifname: ifname.to_string(),
            ip: primary.address.addr(),
            ips: configs.iter().map(|c| c.address).collect(),
            gateway: primary.gateway,
            mac: pod_if
                .map(|i| result.interfaces[i].mac.clone())
                .filter(|m| !m.is_empty()),
            result,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BRIDGE_RESULT: &str = r#"{
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": "cni0", "mac": "4a:7a:10:ea:bb:3b"},
            {"name": "veth661f0fd3", "mac": "e6:64:ce:70:e5:08"},
            {"name": "eth0", "mac": "f6:37:01:50:22:a7", "sandbox": "/run/kedge/netns/p"}
        ],
        "ips": [{"interface": 2, "address": "10.42.3.2/24", "gateway": "10.42.3.1"}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.42.3.1"}],
        "dns": {}
    }"#;

    #[test]
    fn attachment_from_a_bridge_result() {
        let result: CniResult = serde_json::from_str(BRIDGE_RESULT).unwrap();
        let a = Attachment::from_result("s1", "kedge", "eth0", result).unwrap();
        assert_eq!(a.ip, "10.42.3.2".parse::<IpAddr>().unwrap());
        assert_eq!(a.ips, vec!["10.42.3.2/24".parse().unwrap()]);
        assert_eq!(a.gateway, Some("10.42.3.1".parse().unwrap()));
        assert_eq!(a.mac.as_deref(), Some("f6:37:01:50:22:a7"));
    }

    #[test]
    fn dual_stack_prefers_ipv4_and_0_4_0_results_parse() {
        let result: CniResult = serde_json::from_str(
            r#"{"cniVersion": "0.4.0",
                "interfaces": [{"name": "eth0", "sandbox": "/x"}],
                "ips": [
                  {"version": "6", "interface": 0, "address": "fd00::2/64"},
                  {"version": "4", "interface": 0, "address": "10.0.0.2/24", "gateway": "10.0.0.1"}
                ]}"#,
        )
        .unwrap();
        let a = Attachment::from_result("s1", "n", "eth0", result).unwrap();
        assert_eq!(a.ip, "10.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(a.ips.len(), 2);
    }

    #[test]
    fn no_address_is_an_error() {
        let result: CniResult =
            serde_json::from_str(r#"{"cniVersion": "1.0.0", "ips": [{"address": "127.0.0.1/8"}]}"#)
                .unwrap();
        assert!(matches!(
            Attachment::from_result("s1", "n", "eth0", result),
            Err(CniError::NoAddress { .. })
        ));
    }

    #[test]
    fn pod_ref_and_port_mapping_validation() {
        assert!(PodRef::new("default", "web-0", "u-1").validate().is_ok());
        assert!(PodRef::new("default", "a;b", "u").validate().is_err());
        assert!(PodRef::new("", "a", "u").validate().is_err());
        assert!(PortMapping::tcp(0, 80).validate().is_err());
        let json = serde_json::to_value(PortMapping::tcp(8080, 80)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"hostPort": 8080, "containerPort": 80, "protocol": "tcp"})
        );
    }
}
