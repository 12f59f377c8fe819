//! Defaults of the core types other than pods, and of EndpointSlices.

use serde_json::{Value, json};

use super::{child, default, each, existing, resource_list, str_at, unset};

/// `SetDefaults_Service`, plus what upstream's service registry fills in
/// besides the cluster IP: the IP family policy and families of a
/// single-stack IPv4 cluster, and an empty `status.loadBalancer` (a struct,
/// always printed upstream).
pub fn service(obj: &mut Value) {
    let Some(spec) = child(obj, "spec") else {
        return;
    };
    default(spec, "sessionAffinity", json!("None"));
    match str_at(spec, "sessionAffinity") {
        "None" => {
            if let Some(map) = spec.as_object_mut() {
                map.remove("sessionAffinityConfig");
            }
        }
        "ClientIP" => {
            let has_timeout = spec
                .pointer("/sessionAffinityConfig/clientIP/timeoutSeconds")
                .is_some_and(|t| !t.is_null());
            if !has_timeout && let Some(map) = spec.as_object_mut() {
                map.insert(
                    "sessionAffinityConfig".into(),
                    json!({"clientIP": {"timeoutSeconds": 10800}}),
                );
            }
        }
        _ => {}
    }
    default(spec, "type", json!("ClusterIP"));
    for p in each(spec, "ports") {
        default(p, "protocol", json!("TCP"));
        let target_unset = match p.get("targetPort") {
            None | Some(Value::Null) => true,
            Some(Value::Number(n)) => n.as_i64() == Some(0),
            Some(Value::String(s)) => s.is_empty(),
            Some(_) => false,
        };
        if target_unset
            && let Some(port) = p.get("port").cloned()
            && let Some(map) = p.as_object_mut()
        {
            map.insert("targetPort".into(), port);
        }
    }
    let kind = str_at(spec, "type").to_string();
    let has_external_ips = spec
        .get("externalIPs")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    let externally_accessible =
        kind == "LoadBalancer" || kind == "NodePort" || (kind == "ClusterIP" && has_external_ips);
    if externally_accessible {
        default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if matches!(kind.as_str(), "ClusterIP" | "NodePort" | "LoadBalancer") {
        default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if kind == "LoadBalancer" {
        default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    if kind != "ExternalName" {
        let headless = str_at(spec, "clusterIP") == "None";
        let selectorless = spec
            .get("selector")
            .and_then(Value::as_object)
            .is_none_or(|s| s.is_empty());
        let policy = if headless && selectorless {
            "RequireDualStack"
        } else {
            "SingleStack"
        };
        default(spec, "ipFamilyPolicy", json!(policy));
        let families_unset = spec
            .get("ipFamilies")
            .and_then(Value::as_array)
            .is_none_or(|a| a.is_empty());
        if families_unset && let Some(map) = spec.as_object_mut() {
            map.insert("ipFamilies".into(), json!(["IPv4"]));
        }
    }
    if let Some(status) = child(obj, "status") {
        default(status, "loadBalancer", json!({}));
        if kind == "LoadBalancer"
            && let Some(lb) = existing(status, "loadBalancer")
        {
            for ing in each(lb, "ingress") {
                if !unset(ing, "ip") {
                    default(ing, "ipMode", json!("VIP"));
                }
            }
        }
    }
}

/// `SetDefaults_Secret` (type `Opaque`), and what decoding a v1 Secret
/// does upstream: `stringData` is base64-encoded into `data`, overriding
/// keys already there, and dropped.
pub fn secret(obj: &mut Value) {
    default(obj, "type", json!("Opaque"));
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    let Some(string_data) = map.remove("stringData") else {
        return;
    };
    let Some(entries) = string_data.as_object() else {
        return;
    };
    if entries.is_empty() {
        return;
    }
    let data = map
        .entry("data")
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    if !data.is_object() {
        *data = Value::Object(serde_json::Map::new());
    }
    if let Some(data) = data.as_object_mut() {
        for (k, v) in entries {
            let raw = v.as_str().unwrap_or("");
            data.insert(k.clone(), Value::String(base64(raw.as_bytes())));
        }
    }
}

/// Standard base64 with padding, as Go's `encoding/json` writes `[]byte`.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextet = |shift: u32| char::from(ALPHABET[((n >> shift) & 63) as usize]);
        out.push(sextet(18));
        out.push(sextet(12));
        out.push(if chunk.len() > 1 { sextet(6) } else { '=' });
        out.push(if chunk.len() > 2 { sextet(0) } else { '=' });
    }
    out
}

/// `SetDefaults_Namespace` (the `kubernetes.io/metadata.name` label) and
/// `SetDefaults_NamespaceStatus` (phase `Active`), plus the `kubernetes`
/// finalizer upstream's namespace strategy adds on create.
pub fn namespace(obj: &mut Value) {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !name.is_empty()
        && let Some(meta) = child(obj, "metadata")
        && let Some(labels) = child(meta, "labels").and_then(Value::as_object_mut)
    {
        labels.insert("kubernetes.io/metadata.name".into(), json!(name));
    }
    if let Some(spec) = child(obj, "spec") {
        let empty = spec
            .get("finalizers")
            .and_then(Value::as_array)
            .is_none_or(|f| f.is_empty());
        if empty && let Some(map) = spec.as_object_mut() {
            map.insert("finalizers".into(), json!(["kubernetes"]));
        }
    }
    if let Some(status) = child(obj, "status") {
        default(status, "phase", json!("Active"));
    }
}

/// `SetDefaults_NodeStatus`: allocatable is the capacity when unset; both
/// in canonical quantities.
pub fn node(obj: &mut Value) {
    let Some(status) = existing(obj, "status") else {
        return;
    };
    resource_list(status, "capacity");
    resource_list(status, "allocatable");
    if status.get("allocatable").is_none_or(Value::is_null)
        && let Some(capacity) = status.get("capacity").filter(|c| c.is_object()).cloned()
        && let Some(map) = status.as_object_mut()
    {
        map.insert("allocatable".into(), capacity);
    }
}

/// `SetDefaults_EndpointPort`: protocol TCP.
pub fn endpoints(obj: &mut Value) {
    for subset in each(obj, "subsets") {
        for p in each(subset, "ports") {
            default(p, "protocol", json!("TCP"));
        }
    }
}

/// discovery/v1 `SetDefaults_EndpointPort`: name `""` and protocol TCP.
pub fn endpoint_slice(obj: &mut Value) {
    for p in each(obj, "ports") {
        if p.get("name").is_none_or(Value::is_null)
            && let Some(map) = p.as_object_mut()
        {
            map.insert("name".into(), json!(""));
        }
        default(p, "protocol", json!("TCP"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_before_after() {
        let cases = [
            (
                json!({"spec": {"selector": {"app": "a"}, "ports": [{"port": 80}]}}),
                json!({"spec": {
                    "selector": {"app": "a"},
                    "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
                    "type": "ClusterIP", "sessionAffinity": "None",
                    "internalTrafficPolicy": "Cluster",
                    "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"],
                }, "status": {"loadBalancer": {}}}),
            ),
            (
                json!({"spec": {"type": "NodePort", "selector": {"app": "a"},
                    "ports": [{"port": 80, "targetPort": "http", "protocol": "UDP"}]}}),
                json!({"spec": {
                    "selector": {"app": "a"},
                    "ports": [{"port": 80, "protocol": "UDP", "targetPort": "http"}],
                    "type": "NodePort", "sessionAffinity": "None",
                    "externalTrafficPolicy": "Cluster",
                    "internalTrafficPolicy": "Cluster",
                    "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"],
                }, "status": {"loadBalancer": {}}}),
            ),
            (
                json!({"spec": {"type": "LoadBalancer", "sessionAffinity": "ClientIP",
                    "selector": {"a": "b"}, "ports": [{"port": 443}]},
                    "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}}),
                json!({"spec": {
                    "selector": {"a": "b"},
                    "ports": [{"port": 443, "protocol": "TCP", "targetPort": 443}],
                    "type": "LoadBalancer", "sessionAffinity": "ClientIP",
                    "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}},
                    "externalTrafficPolicy": "Cluster",
                    "internalTrafficPolicy": "Cluster",
                    "allocateLoadBalancerNodePorts": true,
                    "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"],
                }, "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4", "ipMode": "VIP"}]}}}),
            ),
            (
                json!({"spec": {"type": "ExternalName", "externalName": "example.com"}}),
                json!({"spec": {"type": "ExternalName", "externalName": "example.com",
                    "sessionAffinity": "None"}, "status": {"loadBalancer": {}}}),
            ),
            (
                json!({"spec": {"clusterIP": "None", "ports": [{"port": 5432}]}}),
                json!({"spec": {"clusterIP": "None",
                    "ports": [{"port": 5432, "protocol": "TCP", "targetPort": 5432}],
                    "type": "ClusterIP", "sessionAffinity": "None",
                    "internalTrafficPolicy": "Cluster",
                    "ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv4"],
                }, "status": {"loadBalancer": {}}}),
            ),
        ];
        for (before, after) in cases {
            let mut v = before.clone();
            service(&mut v);
            assert_eq!(v, after, "from {before}");
        }
    }

    #[test]
    fn secret_namespace_node() {
        let mut s = json!({"data": {}});
        secret(&mut s);
        assert_eq!(s, json!({"data": {}, "type": "Opaque"}));
        let mut s = json!({"type": "kubernetes.io/tls"});
        secret(&mut s);
        assert_eq!(s["type"], "kubernetes.io/tls");
        let mut s =
            json!({"data": {"a": "eA==", "b": "eA=="}, "stringData": {"b": "hello", "c": ""}});
        secret(&mut s);
        assert_eq!(
            s,
            json!({"type": "Opaque", "data": {"a": "eA==", "b": "aGVsbG8=", "c": ""}})
        );
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");

        let mut n = json!({"metadata": {"name": "team-a"}});
        namespace(&mut n);
        assert_eq!(
            n,
            json!({
                "metadata": {"name": "team-a", "labels": {"kubernetes.io/metadata.name": "team-a"}},
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            })
        );

        let mut node_obj = json!({"status": {"capacity": {"cpu": "4", "pods": "110"}}});
        node(&mut node_obj);
        assert_eq!(
            node_obj["status"]["allocatable"],
            json!({"cpu": "4", "pods": "110"})
        );
        let mut node_obj =
            json!({"status": {"capacity": {"cpu": "4"}, "allocatable": {"cpu": "3"}}});
        node(&mut node_obj);
        assert_eq!(node_obj["status"]["allocatable"], json!({"cpu": "3"}));
    }

    #[test]
    fn endpoint_ports() {
        let mut e = json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}]}]});
        endpoints(&mut e);
        assert_eq!(
            e["subsets"][0]["ports"],
            json!([{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}])
        );

        let mut s = json!({"addressType": "IPv4", "ports": [{"port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}]});
        endpoint_slice(&mut s);
        assert_eq!(
            s["ports"],
            json!([
                {"name": "", "port": 80, "protocol": "TCP"},
                {"name": "dns", "port": 53, "protocol": "UDP"},
            ])
        );
    }
}
