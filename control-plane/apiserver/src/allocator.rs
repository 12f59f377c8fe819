//! Service addresses: ClusterIPs out of `--service-cidr` and NodePorts out
//! of `--service-node-port-range`, given out when a Service is created (or
//! changes type) and never to two Services.
//!
//! Every address in use is a key of its own in the datastore
//! (`/kedge/serviceips/<ip>`, `/kedge/servicenodeports/<port>`), created
//! with the datastore's create-if-absent before the Service is written. Two
//! API servers sharing a datastore therefore cannot hand out the same
//! address: the second create fails, and the allocator tries another.
//!
//! A key whose Service is gone, or no longer uses it, is released by
//! [`ServiceAllocator::repair`], which the server runs periodically; a key
//! is only released once it is older than [`RESERVATION_GRACE`], so a
//! Service still being created is never robbed of its address.
//!
//! The first address of the range (10.43.0.1 by default) is kept for the
//! `default/kubernetes` Service, as upstream does.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kedge_apimachinery::field::FieldError;
use kedge_datastore::{Clock, Error as StoreError, ListRequest, Store, WriteOptions};
use serde_json::{Value, json};

use crate::status::{ApiError, ApiResult};

/// Where ClusterIP reservations live.
pub const IP_PREFIX: &str = "/kedge/serviceips/";
/// Where NodePort reservations live.
pub const PORT_PREFIX: &str = "/kedge/servicenodeports/";
/// How old an unused reservation must be before repair releases it.
pub const RESERVATION_GRACE: Duration = Duration::from_secs(60);

/// The Service networks, from the server's flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceNetworks {
    /// First address and prefix length of the ClusterIP range.
    pub cidr: (Ipv4Addr, u8),
    /// The NodePort range.
    pub node_ports: RangeInclusive<u16>,
}

impl Default for ServiceNetworks {
    fn default() -> Self {
        ServiceNetworks {
            cidr: (Ipv4Addr::new(10, 43, 0, 0), 16),
            node_ports: 30000..=32767,
        }
    }
}

impl ServiceNetworks {
    /// Parses `--service-cidr` ("10.43.0.0/16") and
    /// `--service-node-port-range` ("30000-32767").
    pub fn parse(cidr: &str, ports: &str) -> Result<ServiceNetworks, String> {
        let (addr, len) = cidr
            .split_once('/')
            .ok_or_else(|| format!("--service-cidr {cidr:?} is not a CIDR such as 10.43.0.0/16"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("--service-cidr {cidr:?}: only IPv4 ranges are supported"))?;
        let len: u8 = len
            .parse()
            .ok()
            .filter(|l| (8..=28).contains(l))
            .ok_or_else(|| format!("--service-cidr {cidr:?}: the prefix length must be 8 to 28"))?;
        let mask = u32::MAX << (32 - len);
        if u32::from(addr) & !mask != 0 {
            return Err(format!("--service-cidr {cidr:?} has host bits set"));
        }
        let (low, high) = ports.split_once('-').ok_or_else(|| {
            format!("--service-node-port-range {ports:?} is not a range such as 30000-32767")
        })?;
        let low: u16 = low
            .trim()
            .parse()
            .map_err(|_| format!("--service-node-port-range {ports:?}: {low:?} is not a port"))?;
        let high: u16 = high
            .trim()
            .parse()
            .map_err(|_| format!("--service-node-port-range {ports:?}: {high:?} is not a port"))?;
        if low == 0 || low > high {
            return Err(format!("--service-node-port-range {ports:?} is empty"));
        }
        Ok(ServiceNetworks {
            cidr: (addr, len),
            node_ports: low..=high,
        })
    }

    fn size(&self) -> u32 {
        1u32 << (32 - self.cidr.1)
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        let base = u32::from(self.cidr.0);
        let ip = u32::from(ip);
        ip >= base && ip - base < self.size()
    }

    /// The address kept for the `kubernetes` Service.
    pub fn kubernetes_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.cidr.0) + 1)
    }

    fn range_text(&self) -> String {
        format!("{}/{}", self.cidr.0, self.cidr.1)
    }
}

/// Reserves and releases Service addresses in the datastore.
#[derive(Debug)]
pub struct ServiceAllocator {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    networks: ServiceNetworks,
}

/// The reservations one Service write made, to undo if the write fails.
#[derive(Debug, Default)]
pub struct Reserved {
    keys: Vec<String>,
}

fn ip_key(ip: Ipv4Addr) -> String {
    format!("{IP_PREFIX}{ip}")
}

fn port_key(port: i64) -> String {
    format!("{PORT_PREFIX}{port}")
}

fn str_at<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn wants_node_ports(spec: &Value) -> bool {
    match str_at(spec, "type") {
        "NodePort" => true,
        "LoadBalancer" => {
            spec.get("allocateLoadBalancerNodePorts")
                .and_then(Value::as_bool)
                != Some(false)
        }
        _ => false,
    }
}

impl ServiceAllocator {
    /// An allocator over these networks.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, networks: ServiceNetworks) -> Self {
        ServiceAllocator {
            store,
            clock,
            networks,
        }
    }

    /// The networks it allocates from.
    pub fn networks(&self) -> &ServiceNetworks {
        &self.networks
    }

    fn value(&self, obj: &Value) -> Bytes {
        let meta = &obj["metadata"];
        Bytes::from(
            json!({
                "namespace": str_at(meta, "namespace"),
                "name": str_at(meta, "name"),
                "uid": str_at(meta, "uid"),
                "at": self.clock.now_unix_ms(),
            })
            .to_string(),
        )
    }

    async fn reserve(
        &self,
        key: &str,
        obj: &Value,
        reserved: &mut Reserved,
    ) -> Result<bool, ApiError> {
        match self
            .store
            .create(key, self.value(obj), WriteOptions::default())
            .await
        {
            Ok(_) => {
                reserved.keys.push(key.to_string());
                Ok(true)
            }
            Err(StoreError::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(ApiError::internal(format!(
                "reserve a service address: {e}"
            ))),
        }
    }

    /// Undoes the reservations of a write that failed.
    pub async fn release(&self, reserved: Reserved) {
        for key in reserved.keys {
            if let Err(e) = self.store.delete(&key, None).await {
                tracing::warn!(%key, error = %e, "could not release a service address");
            }
        }
    }

    /// Fills in and reserves the Service's ClusterIP and NodePorts. On an
    /// update, `old` provides the addresses the Service already has, which
    /// it keeps when the new object leaves them out.
    pub async fn allocate(&self, obj: &mut Value, old: Option<&Value>) -> ApiResult<Reserved> {
        let mut reserved = Reserved::default();
        match self.allocate_inner(obj, old, &mut reserved).await {
            Ok(()) => Ok(reserved),
            Err(e) => {
                self.release(reserved).await;
                Err(e)
            }
        }
    }

    async fn allocate_inner(
        &self,
        obj: &mut Value,
        old: Option<&Value>,
        reserved: &mut Reserved,
    ) -> ApiResult<()> {
        let name = str_at(&obj["metadata"], "name").to_string();
        let snapshot = obj.clone();
        let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
            return Ok(());
        };
        let kind = spec
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP")
            .to_string();
        let old_spec = old.and_then(|o| o.get("spec"));

        // ClusterIP.
        if kind == "ExternalName" {
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
        } else {
            let mut ip = spec
                .get("clusterIPs")
                .and_then(Value::as_array)
                .and_then(|a| a.first())
                .and_then(Value::as_str)
                .or_else(|| spec.get("clusterIP").and_then(Value::as_str))
                .unwrap_or("")
                .to_string();
            let old_ip = old_spec
                .map(|s| str_at(s, "clusterIP"))
                .unwrap_or("")
                .to_string();
            if ip.is_empty() && !old_ip.is_empty() {
                ip = old_ip.clone();
            }
            if ip.is_empty() {
                ip = self.allocate_ip(&snapshot, reserved).await?.to_string();
            } else if ip != "None" && ip != old_ip {
                let invalid = |msg: String| {
                    ApiError::invalid_kind(
                        "",
                        "Service",
                        &name,
                        &[FieldError::invalid(
                            "spec.clusterIPs",
                            &json!([ip.clone()]),
                            msg,
                        )],
                    )
                };
                let addr: Ipv4Addr = ip.parse().map_err(|_| {
                    invalid(format!("failed to allocate IP {ip}: not an IPv4 address"))
                })?;
                if !self.networks.contains(addr) {
                    return Err(invalid(format!(
                        "failed to allocate IP {ip}: provided IP is not in the valid range. The range of valid IPs is {}",
                        self.networks.range_text()
                    )));
                }
                if !self.reserve(&ip_key(addr), &snapshot, reserved).await? {
                    return Err(invalid(format!(
                        "failed to allocate IP {ip}: provided IP is already allocated"
                    )));
                }
            }
            spec.insert("clusterIP".into(), json!(ip));
            spec.insert("clusterIPs".into(), json!([ip]));
        }

        // NodePorts.
        let node_ports = wants_node_ports(&Value::Object(spec.clone()));
        let old_ports: Vec<(i64, String, i64)> = old_spec
            .and_then(|s| s.get("ports"))
            .and_then(Value::as_array)
            .map(|ps| {
                ps.iter()
                    .map(|p| {
                        (
                            p.get("port").and_then(Value::as_i64).unwrap_or(0),
                            str_at(p, "protocol").to_string(),
                            p.get("nodePort").and_then(Value::as_i64).unwrap_or(0),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) else {
            return Ok(());
        };
        let mut taken_here: HashSet<i64> = HashSet::new();
        for (i, p) in ports.iter_mut().enumerate() {
            let Some(p) = p.as_object_mut() else {
                continue;
            };
            if !node_ports {
                p.remove("nodePort");
                continue;
            }
            let mut port = p.get("nodePort").and_then(Value::as_i64).unwrap_or(0);
            let number = p.get("port").and_then(Value::as_i64).unwrap_or(0);
            let protocol = p
                .get("protocol")
                .and_then(Value::as_str)
                .unwrap_or("TCP")
                .to_string();
            let kept = old_ports
                .iter()
                .find(|(n, proto, np)| *n == number && *proto == protocol && *np != 0)
                .map(|(_, _, np)| *np);
            if port == 0 {
                port = kept.unwrap_or(0);
            }
            if port == 0 {
                port = self.allocate_port(&snapshot, reserved, &taken_here).await?;
            } else if Some(port) != kept
                && !old_ports.iter().any(|(_, _, np)| *np == port)
                && !taken_here.contains(&port)
            {
                let invalid = |msg: String| {
                    ApiError::invalid_kind(
                        "",
                        "Service",
                        &name,
                        &[FieldError::invalid(
                            format!("spec.ports[{i}].nodePort"),
                            &json!(port),
                            msg,
                        )],
                    )
                };
                let range = &self.networks.node_ports;
                if port < i64::from(*range.start()) || port > i64::from(*range.end()) {
                    return Err(invalid(format!(
                        "provided port is not in the valid range. The range of valid ports is {}-{}",
                        range.start(),
                        range.end()
                    )));
                }
                if !self.reserve(&port_key(port), &snapshot, reserved).await? {
                    return Err(invalid("provided port is already allocated".into()));
                }
            }
            taken_here.insert(port);
            p.insert("nodePort".into(), json!(port));
        }
        Ok(())
    }

    async fn allocate_ip(&self, obj: &Value, reserved: &mut Reserved) -> ApiResult<Ipv4Addr> {
        let base = u32::from(self.networks.cidr.0);
        // Not the network address, not .1 (the kubernetes Service), not broadcast.
        let usable = self.networks.size().saturating_sub(3).max(1);
        let start = rand::random::<u32>() % usable;
        for step in 0..usable.min(64) {
            let ip = Ipv4Addr::from(base + 2 + (start + step) % usable);
            if self.reserve(&ip_key(ip), obj, reserved).await? {
                return Ok(ip);
            }
        }
        // Crowded: look for a hole among what is taken.
        let taken = self.taken(IP_PREFIX).await?;
        for offset in 0..usable {
            let ip = Ipv4Addr::from(base + 2 + (start + offset) % usable);
            if !taken.contains(&ip.to_string()) && self.reserve(&ip_key(ip), obj, reserved).await? {
                return Ok(ip);
            }
        }
        Err(ApiError::internal(format!(
            "failed to allocate a serviceIP: range is full ({} is used up; choose a larger --service-cidr)",
            self.networks.range_text()
        )))
    }

    async fn allocate_port(
        &self,
        obj: &Value,
        reserved: &mut Reserved,
        skip: &HashSet<i64>,
    ) -> ApiResult<i64> {
        let range = &self.networks.node_ports;
        let low = i64::from(*range.start());
        let count = i64::from(*range.end()) - low + 1;
        let start = i64::from(rand::random::<u16>()) % count;
        let taken = self.taken(PORT_PREFIX).await?;
        for offset in 0..count {
            let port = low + (start + offset) % count;
            if skip.contains(&port) || taken.contains(&port.to_string()) {
                continue;
            }
            if self.reserve(&port_key(port), obj, reserved).await? {
                return Ok(port);
            }
        }
        Err(ApiError::internal(format!(
            "failed to allocate a nodePort: range is full ({}-{} is used up)",
            range.start(),
            range.end()
        )))
    }

    async fn taken(&self, prefix: &str) -> ApiResult<HashSet<String>> {
        let list = self
            .store
            .list(&ListRequest::prefix(prefix))
            .await
            .map_err(|e| ApiError::internal(format!("list service addresses: {e}")))?;
        Ok(list
            .kvs
            .iter()
            .map(|kv| kv.key.trim_start_matches(prefix).to_string())
            .collect())
    }

    /// Releases reservations older than [`RESERVATION_GRACE`] that no
    /// Service uses: `services` are every Service object now. Returns how
    /// many were released.
    pub async fn repair(&self, services: &[Value]) -> Result<usize, StoreError> {
        let mut used: HashSet<String> = HashSet::new();
        for svc in services {
            let spec = &svc["spec"];
            for ip in spec
                .get("clusterIPs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(ip) = ip.as_str() {
                    used.insert(format!("{IP_PREFIX}{ip}"));
                }
            }
            if let Some(ip) = spec.get("clusterIP").and_then(Value::as_str) {
                used.insert(format!("{IP_PREFIX}{ip}"));
            }
            for p in spec
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(np) = p
                    .get("nodePort")
                    .and_then(Value::as_i64)
                    .filter(|n| *n != 0)
                {
                    used.insert(port_key(np));
                }
            }
        }
        let now = self.clock.now_unix_ms();
        let mut released = 0;
        for prefix in [IP_PREFIX, PORT_PREFIX] {
            let list = self.store.list(&ListRequest::prefix(prefix)).await?;
            for kv in list.kvs {
                if used.contains(&kv.key) {
                    continue;
                }
                let at = serde_json::from_slice::<Value>(&kv.value)
                    .ok()
                    .and_then(|v| v.get("at").and_then(Value::as_i64))
                    .unwrap_or(0);
                if now - at < RESERVATION_GRACE.as_millis() as i64 {
                    continue;
                }
                match self.store.delete(&kv.key, Some(kv.mod_revision)).await {
                    Ok(_) => released += 1,
                    Err(StoreError::Conflict { .. }) | Err(StoreError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(released)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_and_reject_nonsense() {
        let n = ServiceNetworks::parse("10.43.0.0/16", "30000-32767").unwrap();
        assert_eq!(n, ServiceNetworks::default());
        assert_eq!(n.kubernetes_ip(), Ipv4Addr::new(10, 43, 0, 1));
        assert!(n.contains(Ipv4Addr::new(10, 43, 255, 254)));
        assert!(!n.contains(Ipv4Addr::new(10, 44, 0, 0)));
        for (cidr, ports) in [
            ("10.43.0.1/16", "30000-32767"),
            ("10.43.0.0", "30000-32767"),
            ("fd00::/108", "30000-32767"),
            ("10.43.0.0/30", "30000-32767"),
            ("10.43.0.0/16", "32767-30000"),
            ("10.43.0.0/16", "30000"),
            ("10.43.0.0/16", "0-10"),
        ] {
            assert!(
                ServiceNetworks::parse(cidr, ports).is_err(),
                "{cidr} {ports}"
            );
        }
    }
}
