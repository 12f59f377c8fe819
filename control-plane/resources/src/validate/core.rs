//! The core types other than pods (`pkg/apis/core/validation`), Leases
//! (`pkg/apis/coordination/validation`), EndpointSlices
//! (`pkg/apis/discovery/validation`) and events.k8s.io Events.
//!
//! Left out: Service dual-stack field consistency beyond IP syntax, the
//! `healthCheckNodePort` requirement (allocated by the apiserver), load
//! balancer classes and status, Node status and resources, Node annotations
//! for taints, and the events.k8s.io series timing rules.

use std::collections::BTreeSet;
use std::net::IpAddr;

use kedge_apimachinery::field::{ErrorKind, FieldError};
use kedge_apimachinery::validation::{
    NameRule, is_config_map_key, is_dns1123_label, is_dns1123_subdomain, is_qualified_name,
    is_valid_label_value, is_valid_port_num, semantic_eq, validate_immutable, validate_label_name,
    validate_labels, validate_object_meta, validate_object_meta_update,
};
use serde_json::Value;

use super::pod::{port_num_or_name, protocol, taint_effect};
use super::{get, go_string_slice, has, int_at, invalid_raw, list, str_at};

/// Most bytes a ConfigMap's or Secret's data may hold.
pub const MAX_SECRET_SIZE: usize = 1024 * 1024;

fn one_of(value: &Value, path: &str, supported: &[&str]) -> Option<FieldError> {
    match value.as_str().unwrap_or("") {
        "" => Some(FieldError::required(path, "")),
        v if supported.contains(&v) => None,
        _ => Some(FieldError::not_supported(path, value, supported)),
    }
}

/// Upstream's `IsValidIP`.
pub fn ip(value: &str, path: &str) -> Option<FieldError> {
    value.parse::<IpAddr>().is_err().then(|| {
        FieldError::invalid(
            path,
            &Value::from(value),
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        )
    })
}

/// Upstream's `IsValidCIDR`.
fn cidr(value: &str, path: &str) -> Option<FieldError> {
    let ok = value.split_once('/').is_some_and(|(addr, bits)| {
        let max = match addr.parse::<IpAddr>() {
            Ok(IpAddr::V4(_)) => 32,
            Ok(IpAddr::V6(_)) => 128,
            Err(_) => return false,
        };
        !bits.is_empty()
            && bits.bytes().all(|b| b.is_ascii_digit())
            && bits.parse::<u32>().is_ok_and(|b| b <= max)
    });
    (!ok).then(|| {
        FieldError::invalid(
            path,
            &Value::from(value),
            "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
        )
    })
}

/// Upstream's `ValidateNonSpecialIP` (and `ValidateEndpointIP`).
fn non_special_ip(value: &str, path: &str) -> Vec<FieldError> {
    let Ok(addr) = value.parse::<IpAddr>() else {
        return vec![FieldError::invalid(
            path,
            &Value::from(value),
            "must be a valid IP address",
        )];
    };
    let v = Value::from(value);
    let mut errs = Vec::new();
    let (link_local, link_local_multicast) = match addr {
        IpAddr::V4(a) => {
            let o = a.octets();
            (a.is_link_local(), o[0] == 224 && o[1] == 0 && o[2] == 0)
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            ((s[0] & 0xffc0) == 0xfe80, (s[0] & 0xff0f) == 0xff02)
        }
    };
    if addr.is_unspecified() {
        errs.push(FieldError::invalid(
            path,
            &v,
            format!("may not be unspecified ({value})"),
        ));
    }
    if addr.is_loopback() {
        errs.push(FieldError::invalid(
            path,
            &v,
            "may not be in the loopback range (127.0.0.0/8, ::1/128)",
        ));
    }
    if link_local {
        errs.push(FieldError::invalid(
            path,
            &v,
            "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
        ));
    }
    if link_local_multicast {
        errs.push(FieldError::invalid(
            path,
            &v,
            "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
        ));
    }
    errs
}

fn dns_label(v: &str, path: &str) -> Vec<FieldError> {
    is_dns1123_label(v)
        .into_iter()
        .map(|msg| FieldError::invalid(path, &Value::from(v), msg))
        .collect()
}

fn qualified_name(v: &str, path: &str) -> Vec<FieldError> {
    is_qualified_name(v)
        .into_iter()
        .map(|msg| FieldError::invalid(path, &Value::from(v), msg))
        .collect()
}

fn too_many(path: &str, actual: usize, max: usize) -> FieldError {
    FieldError {
        kind: ErrorKind::TooMany,
        field: path.to_string(),
        value: Some(actual.to_string()),
        detail: format!("must have at most {max} items"),
    }
}

// --- Service ---

fn is_headless(spec: &Value) -> bool {
    let ips = list(spec, "clusterIPs");
    match ips {
        [one] => one.as_str() == Some("None"),
        [] => str_at(spec, "clusterIP") == "None",
        _ => false,
    }
}

/// The cluster IPs as upstream's strategy sees them: `clusterIPs`, or
/// `[clusterIP]` when only that is set.
fn cluster_ips(spec: &Value) -> Value {
    if !list(spec, "clusterIPs").is_empty() {
        get(spec, "clusterIPs").clone()
    } else if !str_at(spec, "clusterIP").is_empty() {
        Value::Array(vec![get(spec, "clusterIP").clone()])
    } else {
        Value::Array(Vec::new())
    }
}

/// Go's `%#v` of the `core.ServicePort{Protocol, Port}` key upstream
/// reports duplicate ports with.
fn go_service_port_key(protocol: &str, port: i64) -> String {
    format!(
        "core.ServicePort{{Name:\"\", Protocol:{protocol:?}, AppProtocol:(*string)(nil), Port:{port}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}"
    )
}

/// Upstream's `ValidateService` and, on update, the cluster IP rules of
/// `ValidateServiceUpdate`. On update a new object without cluster IPs is
/// taken to keep the old ones (the apiserver copies them over before
/// upstream validates).
pub fn service(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let spec = get(obj, "spec");
    let mut errs = Vec::new();
    if let Some(old) = old {
        errs.extend(cluster_ip_update(spec, get(old, "spec")));
    }
    let kind = str_at(spec, "type");
    let headless = is_headless(spec);
    let ports = list(spec, "ports");
    if ports.is_empty() && !headless && kind != "ExternalName" {
        errs.push(FieldError::required("spec.ports", ""));
    }
    match kind {
        "LoadBalancer" | "NodePort" if headless => errs.push(FieldError::invalid(
            "spec.clusterIPs[0]",
            &Value::from("None"),
            format!("may not be set to 'None' for {kind} services"),
        )),
        "ExternalName" => {
            if !list(spec, "clusterIPs").is_empty() || !str_at(spec, "clusterIP").is_empty() {
                errs.push(FieldError::forbidden(
                    "spec.clusterIPs",
                    "may not be set for ExternalName services",
                ));
            }
            if !list(spec, "ipFamilies").is_empty() {
                errs.push(FieldError::forbidden(
                    "spec.ipFamilies",
                    "may not be set for ExternalName services",
                ));
            }
            if has(spec, "ipFamilyPolicy") {
                errs.push(FieldError::forbidden(
                    "spec.ipFamilyPolicy",
                    "may not be set for ExternalName services",
                ));
            }
            let name = str_at(spec, "externalName");
            let cname = name.strip_suffix('.').unwrap_or(name);
            if cname.is_empty() {
                errs.push(FieldError::required("spec.externalName", ""));
            } else {
                for msg in is_dns1123_subdomain(cname) {
                    errs.push(FieldError::invalid(
                        "spec.externalName",
                        &Value::from(cname),
                        msg,
                    ));
                }
            }
        }
        _ => {}
    }
    let mut names = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let pp = format!("spec.ports[{i}]");
        let name = str_at(p, "name");
        if ports.len() > 1 && name.is_empty() {
            errs.push(FieldError::required(format!("{pp}.name"), ""));
        } else if !name.is_empty() {
            errs.extend(dns_label(name, &format!("{pp}.name")));
            if !names.insert(name) {
                errs.push(FieldError::duplicate(
                    format!("{pp}.name"),
                    &Value::from(name),
                ));
            }
        }
        let port = int_at(p, "port").unwrap_or(0);
        for msg in is_valid_port_num(port) {
            errs.push(FieldError::invalid(
                format!("{pp}.port"),
                &Value::from(port),
                msg,
            ));
        }
        errs.extend(protocol(p, &pp));
        errs.extend(port_num_or_name(
            get(p, "targetPort"),
            &format!("{pp}.targetPort"),
        ));
        let app = str_at(p, "appProtocol");
        if has(p, "appProtocol") {
            errs.extend(qualified_name(app, &format!("{pp}.appProtocol")));
        }
    }
    if has(spec, "selector") {
        errs.extend(validate_labels(get(spec, "selector"), "spec.selector"));
    }
    let affinity = get(spec, "sessionAffinity");
    errs.extend(one_of(
        affinity,
        "spec.sessionAffinity",
        &["ClientIP", "None"],
    ));
    match affinity.as_str() {
        Some("ClientIP") => errs.extend(client_ip_config(get(spec, "sessionAffinityConfig"))),
        Some("None") if has(spec, "sessionAffinityConfig") => errs.push(FieldError::forbidden(
            "spec.sessionAffinityConfig",
            "must not be set when session affinity is None",
        )),
        _ => {}
    }
    errs.extend(cluster_ip_fields(spec, headless));
    for (i, external) in list(spec, "externalIPs").iter().enumerate() {
        let external = external.as_str().unwrap_or("");
        let p = format!("spec.externalIPs[{i}]");
        match ip(external, &p) {
            Some(e) => errs.push(e),
            None => errs.extend(non_special_ip(external, &p)),
        }
    }
    errs.extend(one_of(
        get(spec, "type"),
        "spec.type",
        &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
    ));
    if kind == "ClusterIP" {
        for (i, p) in ports.iter().enumerate() {
            if int_at(p, "nodePort").unwrap_or(0) != 0 {
                errs.push(FieldError::forbidden(
                    format!("spec.ports[{i}].nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
    }
    let mut node_ports = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let node_port = int_at(p, "nodePort").unwrap_or(0);
        if node_port != 0 && !node_ports.insert((str_at(p, "protocol"), node_port)) {
            errs.push(FieldError::duplicate(
                format!("spec.ports[{i}].nodePort"),
                &Value::from(node_port),
            ));
        }
    }
    let mut port_keys = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let key = (str_at(p, "protocol"), int_at(p, "port").unwrap_or(0));
        if !port_keys.insert(key) {
            errs.push(FieldError {
                kind: ErrorKind::Duplicate,
                field: format!("spec.ports[{i}]"),
                value: Some(go_service_port_key(key.0, key.1)),
                detail: String::new(),
            });
        }
    }
    let ranges = list(spec, "loadBalancerSourceRanges");
    if !ranges.is_empty() {
        // Upstream spells this path with a capital L.
        let p = "spec.LoadBalancerSourceRanges";
        if kind != "LoadBalancer" {
            errs.push(FieldError::forbidden(
                p,
                "may only be used when `type` is 'LoadBalancer'",
            ));
        }
        for (i, r) in ranges.iter().enumerate() {
            errs.extend(cidr(r.as_str().unwrap_or("").trim(), &format!("{p}[{i}]")));
        }
    }
    if has(spec, "allocateLoadBalancerNodePorts") && kind != "LoadBalancer" {
        errs.push(FieldError::forbidden(
            "spec.allocateLoadBalancerNodePorts",
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    if kind == "LoadBalancer" && !has(spec, "allocateLoadBalancerNodePorts") {
        // Upstream reports this without the `spec.` prefix.
        errs.push(FieldError::required("allocateLoadBalancerNodePorts", ""));
    }
    let externally_accessible = kind == "LoadBalancer"
        || kind == "NodePort"
        || (kind == "ClusterIP" && !list(spec, "externalIPs").is_empty());
    let etp = get(spec, "externalTrafficPolicy");
    if !externally_accessible {
        if !str_at(spec, "externalTrafficPolicy").is_empty() {
            errs.push(FieldError::invalid(
                "spec.externalTrafficPolicy",
                etp,
                "may only be set for externally-accessible services",
            ));
        }
    } else {
        errs.extend(one_of(
            etp,
            "spec.externalTrafficPolicy",
            &["Cluster", "Local"],
        ));
    }
    let needs_health_check = kind == "LoadBalancer" && etp.as_str() == Some("Local");
    let hcnp = int_at(spec, "healthCheckNodePort").unwrap_or(0);
    if !needs_health_check && hcnp != 0 {
        errs.push(FieldError::invalid(
            "spec.healthCheckNodePort",
            &Value::from(hcnp),
            "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
        ));
    } else if needs_health_check && hcnp != 0 {
        for msg in is_valid_port_num(hcnp) {
            errs.push(FieldError::invalid(
                "spec.healthCheckNodePort",
                &Value::from(hcnp),
                msg,
            ));
        }
    }
    let itp = get(spec, "internalTrafficPolicy");
    if itp.is_null() {
        if matches!(kind, "ClusterIP" | "NodePort" | "LoadBalancer") {
            errs.push(FieldError::required("spec.internalTrafficPolicy", ""));
        }
    } else if !matches!(itp.as_str(), Some("Cluster" | "Local")) {
        errs.push(FieldError::not_supported(
            "spec.internalTrafficPolicy",
            itp,
            &["Cluster", "Local"],
        ));
    }
    if has(spec, "trafficDistribution") && str_at(spec, "trafficDistribution") != "PreferClose" {
        errs.push(FieldError::not_supported(
            "spec.trafficDistribution",
            get(spec, "trafficDistribution"),
            &["PreferClose"],
        ));
    }
    errs
}

fn client_ip_config(config: &Value) -> Vec<FieldError> {
    let p = "spec.sessionAffinityConfig";
    let when = "when session affinity type is ClientIP";
    if config.is_null() {
        return vec![FieldError::required(p, when)];
    }
    let client_ip = get(config, "clientIP");
    if client_ip.is_null() {
        return vec![FieldError::required(format!("{p}.clientIP"), when)];
    }
    let tp = format!("{p}.clientIP.timeoutSeconds");
    match int_at(client_ip, "timeoutSeconds") {
        None => vec![FieldError::required(tp, when)],
        Some(t) if t <= 0 || t > 86400 => vec![FieldError::invalid(
            tp,
            &Value::from(t),
            "must be greater than 0 and less than 86400",
        )],
        Some(_) => Vec::new(),
    }
}

/// Cluster IP syntax and the IP family fields (a subset of upstream's
/// `ValidateServiceClusterIPsRelatedFields`).
fn cluster_ip_fields(spec: &Value, headless: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let ips = list(spec, "clusterIPs");
    let cluster_ip = str_at(spec, "clusterIP");
    if !ips.is_empty() && !cluster_ip.is_empty() && ips[0].as_str() != Some(cluster_ip) {
        errs.push(invalid_raw(
            "spec.clusterIPs",
            go_string_slice(get(spec, "clusterIPs")),
            "first value must match `clusterIP`",
        ));
    }
    if !headless {
        for (i, v) in ips.iter().enumerate() {
            let v = v.as_str().unwrap_or("");
            if v == "None" {
                errs.push(FieldError::invalid(
                    format!("spec.clusterIPs[{i}]"),
                    &Value::from(v),
                    "'None' must be the first and only value",
                ));
            } else if !v.is_empty() {
                errs.extend(ip(v, &format!("spec.clusterIPs[{i}]")));
            }
        }
    }
    if has(spec, "ipFamilyPolicy") {
        let v = get(spec, "ipFamilyPolicy");
        let supported = ["PreferDualStack", "RequireDualStack", "SingleStack"];
        if !supported.contains(&v.as_str().unwrap_or("")) {
            errs.push(FieldError::not_supported(
                "spec.ipFamilyPolicy",
                v,
                &supported,
            ));
        }
    }
    let mut seen = BTreeSet::new();
    for (i, f) in list(spec, "ipFamilies").iter().enumerate() {
        let p = format!("spec.ipFamilies[{i}]");
        let v = f.as_str().unwrap_or("");
        if !matches!(v, "IPv4" | "IPv6") {
            errs.push(FieldError::not_supported(&p, f, &["IPv4", "IPv6"]));
        }
        if !seen.insert(v) {
            errs.push(FieldError::duplicate(&p, f));
        }
    }
    errs
}

fn cluster_ip_update(new: &Value, old: &Value) -> Vec<FieldError> {
    if str_at(new, "type") == "ExternalName" || str_at(old, "type") == "ExternalName" {
        return Vec::new();
    }
    if is_headless(new) && is_headless(old) {
        return Vec::new();
    }
    let new_ips = cluster_ips(new);
    let old_ips = cluster_ips(old);
    let (n, o) = (
        new_ips.as_array().map(Vec::as_slice).unwrap_or_default(),
        old_ips.as_array().map(Vec::as_slice).unwrap_or_default(),
    );
    if n.is_empty() {
        return Vec::new();
    }
    o.iter()
        .zip(n)
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(i, _)| {
            invalid_raw(
                format!("spec.clusterIPs[{i}]"),
                go_string_slice(&new_ips),
                "may not change once set",
            )
        })
        .collect()
}

// --- ConfigMap and Secret ---

/// The number of bytes a base64 string decodes to.
fn decoded_len(s: &str) -> usize {
    let trimmed = s.trim_end_matches('=');
    trimmed.len() * 3 / 4
}

fn immutable_data(obj: &Value, old: &Value, keys: &[&str]) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if get(old, "immutable").as_bool() != Some(true) {
        return errs;
    }
    let msg = "field is immutable when `immutable` is set";
    if get(obj, "immutable").as_bool() != Some(true) {
        errs.push(FieldError::forbidden("immutable", msg));
    }
    for key in keys {
        if get(obj, key) != get(old, key) && !semantic_eq(get(obj, key), get(old, key)) {
            errs.push(FieldError::forbidden(*key, msg));
        }
    }
    errs
}

/// Upstream's `ValidateConfigMap` and `ValidateConfigMapUpdate`.
pub fn config_map(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(old) = old {
        errs.extend(immutable_data(obj, old, &["data", "binaryData"]));
    }
    let binary = get(obj, "binaryData").as_object();
    let mut total = 0usize;
    for (key, value) in get(obj, "data").as_object().into_iter().flatten() {
        let p = format!("data[{key}]");
        for msg in is_config_map_key(key) {
            errs.push(FieldError::invalid(&p, &Value::from(key.as_str()), msg));
        }
        if binary.is_some_and(|b| b.contains_key(key)) {
            errs.push(FieldError::invalid(
                &p,
                &Value::from(key.as_str()),
                "duplicate of key present in binaryData",
            ));
        }
        total = total.saturating_add(value.as_str().map_or(0, str::len));
    }
    for (key, value) in binary.into_iter().flatten() {
        for msg in is_config_map_key(key) {
            errs.push(FieldError::invalid(
                format!("binaryData[{key}]"),
                &Value::from(key.as_str()),
                msg,
            ));
        }
        total = total.saturating_add(decoded_len(value.as_str().unwrap_or("")));
    }
    if total > MAX_SECRET_SIZE {
        errs.push(FieldError::too_long("", MAX_SECRET_SIZE));
    }
    errs
}

/// Upstream's `ValidateSecret` and `ValidateSecretUpdate`. `stringData` is
/// expected to be merged into `data` already (as defaulting does).
pub fn secret(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(old) = old {
        errs.extend(validate_immutable(
            get(obj, "type"),
            get(old, "type"),
            "type",
        ));
        errs.extend(immutable_data(obj, old, &["data"]));
    }
    let data = get(obj, "data").as_object();
    let mut total = 0usize;
    for (key, value) in data.into_iter().flatten() {
        for msg in is_config_map_key(key) {
            errs.push(FieldError::invalid(
                format!("data[{key}]"),
                &Value::from(key.as_str()),
                msg,
            ));
        }
        total = total.saturating_add(decoded_len(value.as_str().unwrap_or("")));
    }
    if total > MAX_SECRET_SIZE {
        errs.push(FieldError::too_long("data", MAX_SECRET_SIZE));
    }
    let has_key = |k: &str| data.is_some_and(|d| d.contains_key(k));
    let required = |k: &str| FieldError::required(format!("data[{k}]"), "");
    match str_at(obj, "type") {
        "kubernetes.io/service-account-token" => {
            let annotations = get(get(obj, "metadata"), "annotations");
            if str_at(annotations, "kubernetes.io/service-account.name").is_empty() {
                errs.push(FieldError::required(
                    "metadata.annotations[kubernetes.io/service-account.name]",
                    "",
                ));
            }
        }
        "kubernetes.io/dockercfg" if !has_key(".dockercfg") => errs.push(required(".dockercfg")),
        "kubernetes.io/dockerconfigjson" if !has_key(".dockerconfigjson") => {
            errs.push(required(".dockerconfigjson"));
        }
        "kubernetes.io/basic-auth" if !has_key("username") && !has_key("password") => {
            errs.push(required("username"));
            errs.push(required("password"));
        }
        "kubernetes.io/ssh-auth"
            if data
                .and_then(|d| d.get("ssh-privatekey"))
                .and_then(Value::as_str)
                .is_none_or(str::is_empty) =>
        {
            errs.push(required("ssh-privatekey"));
        }
        "kubernetes.io/tls" => {
            for k in ["tls.crt", "tls.key"] {
                if !has_key(k) {
                    errs.push(required(k));
                }
            }
        }
        _ => {}
    }
    errs
}

// --- Namespace, Node, Endpoints, ServiceAccount ---

/// Upstream's `ValidateNamespace`: the spec finalizers' names. Updates
/// check metadata only (the spec changes through `/finalize`).
pub fn namespace(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    if old.is_some() {
        return Vec::new();
    }
    let mut errs = Vec::new();
    for f in list(get(obj, "spec"), "finalizers") {
        let name = f.as_str().unwrap_or("");
        let v = Value::from(name);
        for msg in is_qualified_name(name) {
            errs.push(FieldError::invalid("spec.finalizers", &v, msg));
        }
        if !name.contains('/') && !matches!(name, "kubernetes" | "orphan" | "foregroundDeletion") {
            errs.push(FieldError::invalid(
                "spec.finalizers",
                &v,
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
    errs
}

/// Node taints (reported under `metadata.taints`, as upstream does) and,
/// on update, that `podCIDRs` and `providerID` are only ever set once.
pub fn node(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let spec = get(obj, "spec");
    let mut errs = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, t) in list(spec, "taints").iter().enumerate() {
        let p = format!("metadata.taints[{i}]");
        let key = str_at(t, "key");
        errs.extend(validate_label_name(key, &format!("{p}.key")));
        let value = str_at(t, "value");
        let msgs = is_valid_label_value(value);
        if !msgs.is_empty() {
            errs.push(FieldError::invalid(
                format!("{p}.value"),
                &Value::from(value),
                msgs.join(";"),
            ));
        }
        let effect = str_at(t, "effect");
        if effect.is_empty() {
            errs.push(FieldError::required(format!("{p}.effect"), ""));
        } else {
            errs.extend(taint_effect(effect, &format!("{p}.effect")));
        }
        if !seen.insert((key, effect)) {
            let mut e = FieldError::duplicate(&p, t);
            e.detail = "taints must be unique by key and effect pair".to_string();
            errs.push(e);
        }
    }
    for (i, c) in list(spec, "podCIDRs").iter().enumerate() {
        errs.extend(cidr(
            c.as_str().unwrap_or(""),
            &format!("spec.podCIDRs[{i}]"),
        ));
    }
    if let Some(old) = old {
        let old_spec = get(old, "spec");
        let old_cidrs = list(old_spec, "podCIDRs");
        if !old_cidrs.is_empty() && !semantic_eq(get(spec, "podCIDRs"), get(old_spec, "podCIDRs")) {
            errs.push(FieldError::forbidden(
                "spec.podCIDRs",
                "node updates may not change podCIDR except from \"\" to valid",
            ));
        }
        let old_provider = str_at(old_spec, "providerID");
        if !old_provider.is_empty() && str_at(spec, "providerID") != old_provider {
            errs.push(FieldError::forbidden(
                "spec.providerID",
                "node updates may not change providerID except from \"\" to valid",
            ));
        }
    }
    errs
}

/// Upstream's `ValidateEndpoints` subsets.
pub fn endpoints(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, ss) in list(obj, "subsets").iter().enumerate() {
        let p = format!("subsets[{i}]");
        let addresses = list(ss, "addresses");
        let not_ready = list(ss, "notReadyAddresses");
        if addresses.is_empty() && not_ready.is_empty() {
            errs.push(FieldError::required(
                &p,
                "must specify `addresses` or `notReadyAddresses`",
            ));
        }
        for (key, addrs) in [("addresses", addresses), ("notReadyAddresses", not_ready)] {
            for (j, a) in addrs.iter().enumerate() {
                let ap = format!("{p}.{key}[{j}]");
                let addr = str_at(a, "ip");
                match ip(addr, &format!("{ap}.ip")) {
                    Some(e) => errs.push(e),
                    None => errs.extend(non_special_ip(addr, &format!("{ap}.ip"))),
                }
                let hostname = str_at(a, "hostname");
                if !hostname.is_empty() {
                    errs.extend(dns_label(hostname, &format!("{ap}.hostname")));
                }
                let node = str_at(a, "nodeName");
                if !node.is_empty() {
                    for msg in NameRule::Dns1123Subdomain.check(node, false) {
                        errs.push(FieldError::invalid(
                            format!("{ap}.nodeName"),
                            &Value::from(node),
                            msg,
                        ));
                    }
                }
            }
        }
        let ports = list(ss, "ports");
        for (j, port) in ports.iter().enumerate() {
            let pp = format!("{p}.ports[{j}]");
            let name = str_at(port, "name");
            if ports.len() > 1 && name.is_empty() {
                errs.push(FieldError::required(format!("{pp}.name"), ""));
            } else if !name.is_empty() {
                errs.extend(dns_label(name, &format!("{pp}.name")));
            }
            let n = int_at(port, "port").unwrap_or(0);
            for msg in is_valid_port_num(n) {
                errs.push(FieldError::invalid(
                    format!("{pp}.port"),
                    &Value::from(n),
                    msg,
                ));
            }
            errs.extend(protocol(port, &pp));
            if has(port, "appProtocol") {
                errs.extend(qualified_name(
                    str_at(port, "appProtocol"),
                    &format!("{pp}.appProtocol"),
                ));
            }
        }
    }
    errs
}

// --- Events ---

const NOTE_LENGTH_LIMIT: usize = 1024;
const SHORT_FIELD_LIMIT: usize = 128;

/// Events. Core (`v1`) events get upstream's lenient legacy checks, then
/// the generic metadata checks only if those pass, as upstream's registry
/// does; events.k8s.io events (`strict`) get the full checks. Field paths
/// use the core field names, as upstream's do (`involvedObject`, `count`).
pub fn event(obj: &Value, old: Option<&Value>, strict: bool) -> Vec<FieldError> {
    let meta = get(obj, "metadata");
    let (regarding, note, count, first, last, source, reporting) = if strict {
        (
            "regarding",
            "note",
            "deprecatedCount",
            "deprecatedFirstTimestamp",
            "deprecatedLastTimestamp",
            "deprecatedSource",
            "reportingController",
        )
    } else {
        (
            "involvedObject",
            "message",
            "count",
            "firstTimestamp",
            "lastTimestamp",
            "source",
            "reportingComponent",
        )
    };
    let namespace = str_at(meta, "namespace");
    let involved_ns = str_at(get(obj, regarding), "namespace");
    let mismatch = || {
        FieldError::invalid(
            "involvedObject.namespace",
            &Value::from(involved_ns),
            "does not match event.namespace",
        )
    };
    let mut errs = Vec::new();
    if !has(obj, "eventTime") {
        if involved_ns.is_empty() {
            if !namespace.is_empty() && namespace != "default" {
                errs.push(mismatch());
            }
        } else if namespace != involved_ns {
            errs.push(mismatch());
        }
    } else {
        if involved_ns.is_empty() && namespace != "default" && namespace != "kube-system" {
            errs.push(mismatch());
        }
        let controller = str_at(obj, reporting);
        if controller.is_empty() {
            errs.push(FieldError::required(reporting, ""));
        }
        errs.extend(qualified_name(controller, reporting));
        for (key, limit) in [
            ("reportingInstance", SHORT_FIELD_LIMIT),
            ("action", SHORT_FIELD_LIMIT),
            ("reason", SHORT_FIELD_LIMIT),
        ] {
            let v = str_at(obj, key);
            if v.is_empty() {
                errs.push(FieldError::required(key, ""));
            }
            if v.len() > limit {
                errs.push(FieldError::invalid(
                    key,
                    &Value::from(""),
                    format!("can have at most {limit} characters"),
                ));
            }
        }
        if str_at(obj, note).len() > NOTE_LENGTH_LIMIT {
            errs.push(FieldError::invalid(
                "message",
                &Value::from(""),
                format!("can have at most {NOTE_LENGTH_LIMIT} characters"),
            ));
        }
    }
    for msg in is_dns1123_subdomain(namespace) {
        errs.push(FieldError::invalid(
            "namespace",
            &Value::from(namespace),
            msg,
        ));
    }
    if !strict {
        match old {
            Some(old) => errs.extend(validate_object_meta_update(meta, get(old, "metadata"))),
            None if errs.is_empty() => {
                errs.extend(validate_object_meta(meta, true, NameRule::PathSegment));
            }
            None => {}
        }
        return errs;
    }
    let empty = Value::from("");
    match old {
        None => {
            errs.extend(validate_object_meta(meta, true, NameRule::Dns1123Subdomain));
            if !has(obj, "eventTime") {
                errs.push(FieldError::required("eventTime", ""));
            }
            let kind = str_at(obj, "type");
            if kind != "Normal" && kind != "Warning" {
                errs.push(FieldError::invalid(
                    "type",
                    &empty,
                    format!("has invalid value: {kind}"),
                ));
            }
            for (key, path) in [(first, "firstTimestamp"), (last, "lastTimestamp")] {
                if has(obj, key) {
                    errs.push(FieldError::invalid(path, &empty, "needs to be unset"));
                }
            }
            if int_at(obj, count).unwrap_or(0) != 0 {
                errs.push(FieldError::invalid("count", &empty, "needs to be unset"));
            }
            let src = get(obj, source);
            if !str_at(src, "component").is_empty() || !str_at(src, "host").is_empty() {
                errs.push(FieldError::invalid("source", &empty, "needs to be unset"));
            }
            if has(obj, "series") {
                let series = get(obj, "series");
                if int_at(series, "count").unwrap_or(0) < 2 {
                    errs.push(FieldError::invalid(
                        "series.count",
                        &Value::from(""),
                        "should be at least 2",
                    ));
                }
                if !has(series, "lastObservedTime") {
                    errs.push(FieldError::required("series.lastObservedTime", ""));
                }
            }
        }
        Some(old) => {
            errs.extend(validate_object_meta_update(meta, get(old, "metadata")));
            for (key, path) in [
                (regarding, "involvedObject"),
                ("reason", "reason"),
                (note, "message"),
                (source, "source"),
                (first, "firstTimestamp"),
                (last, "lastTimestamp"),
                (count, "count"),
                ("type", "type"),
                ("action", "action"),
                ("related", "related"),
                (reporting, "reportingController"),
                ("reportingInstance", "reportingInstance"),
            ] {
                errs.extend(validate_immutable(get(obj, key), get(old, key), path));
            }
        }
    }
    errs
}

// --- Lease, EndpointSlice ---

/// Upstream's `ValidateLeaseSpec`.
pub fn lease(obj: &Value) -> Vec<FieldError> {
    let spec = get(obj, "spec");
    let mut errs = Vec::new();
    if let Some(d) = int_at(spec, "leaseDurationSeconds")
        && d <= 0
    {
        errs.push(FieldError::invalid(
            "spec.leaseDurationSeconds",
            &Value::from(d),
            "must be greater than 0",
        ));
    }
    if let Some(t) = int_at(spec, "leaseTransitions")
        && t < 0
    {
        errs.push(FieldError::invalid(
            "spec.leaseTransitions",
            &Value::from(t),
            "must be greater than or equal to 0",
        ));
    }
    errs
}

/// Upstream's `ValidateEndpointSlice` and, on update, the immutable
/// `addressType`.
pub fn endpoint_slice(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let address_type = str_at(obj, "addressType");
    if address_type.is_empty() {
        errs.push(FieldError::required("addressType", ""));
    } else if !matches!(address_type, "IPv4" | "IPv6" | "FQDN") {
        errs.push(FieldError::not_supported(
            "addressType",
            get(obj, "addressType"),
            &["FQDN", "IPv4", "IPv6"],
        ));
    }
    let endpoints = list(obj, "endpoints");
    if endpoints.len() > 1000 {
        errs.push(too_many("endpoints", endpoints.len(), 1000));
    }
    for (i, ep) in endpoints.iter().enumerate() {
        let p = format!("endpoints[{i}]");
        let addresses = list(ep, "addresses");
        if addresses.is_empty() {
            errs.push(FieldError::required(
                format!("{p}.addresses"),
                "must contain at least 1 address",
            ));
        } else if addresses.len() > 100 {
            errs.push(too_many(&format!("{p}.addresses"), addresses.len(), 100));
        }
        for (j, a) in addresses.iter().enumerate() {
            let ap = format!("{p}.addresses[{j}]");
            let a = a.as_str().unwrap_or("");
            let v = Value::from(a);
            match address_type {
                "IPv4" => match a.parse::<IpAddr>() {
                    Ok(IpAddr::V4(_)) => errs.extend(non_special_ip(a, &ap)),
                    _ => errs.push(FieldError::invalid(&ap, &v, "must be a valid IPv4 address")),
                },
                "IPv6" => match a.parse::<IpAddr>() {
                    Ok(IpAddr::V6(_)) => errs.extend(non_special_ip(a, &ap)),
                    _ => errs.push(FieldError::invalid(&ap, &v, "must be a valid IPv6 address")),
                },
                "FQDN" => errs.extend(fqdn(a, &ap)),
                _ => {}
            }
        }
        let node = str_at(ep, "nodeName");
        if !node.is_empty() {
            for msg in is_dns1123_subdomain(node) {
                errs.push(FieldError::invalid(
                    format!("{p}.nodeName"),
                    &Value::from(node),
                    msg,
                ));
            }
        }
        let hostname = str_at(ep, "hostname");
        if !hostname.is_empty() {
            errs.extend(dns_label(hostname, &format!("{p}.hostname")));
        }
    }
    let ports = list(obj, "ports");
    if ports.len() > 20000 {
        errs.push(too_many("ports", ports.len(), 20000));
    }
    let mut names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = format!("ports[{i}]");
        let name = str_at(port, "name");
        if !name.is_empty() {
            errs.extend(dns_label(name, &format!("{p}.name")));
        }
        if !names.insert(name) {
            errs.push(FieldError::duplicate(
                format!("{p}.name"),
                &Value::from(name),
            ));
        }
        errs.extend(protocol(port, &p));
        if let Some(n) = int_at(port, "port") {
            for msg in is_valid_port_num(n) {
                errs.push(FieldError::invalid(
                    format!("{p}.port"),
                    &Value::from(n),
                    msg,
                ));
            }
        }
        if has(port, "appProtocol") {
            errs.extend(qualified_name(
                str_at(port, "appProtocol"),
                &format!("{p}.appProtocol"),
            ));
        }
    }
    if let Some(old) = old {
        errs.extend(validate_immutable(
            get(obj, "addressType"),
            get(old, "addressType"),
            "addressType",
        ));
    }
    errs
}

/// Upstream's `IsFullyQualifiedDomainName`.
fn fqdn(name: &str, path: &str) -> Vec<FieldError> {
    if name.is_empty() {
        return vec![FieldError::required(path, "")];
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    let msgs = is_dns1123_subdomain(name);
    if !msgs.is_empty() {
        return vec![FieldError::invalid(
            path,
            &Value::from(name),
            msgs.join(","),
        )];
    }
    if name.split('.').count() < 2 {
        return vec![FieldError::invalid(
            path,
            &Value::from(name),
            "should be a domain with at least two segments separated by dots",
        )];
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{msgs, only_on};
    use super::super::validate;
    use super::*;
    use crate::defaults;
    use serde_json::json;

    fn svc(spec: Value) -> Value {
        let mut s = json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec});
        defaults::apply("", "Service", &mut s);
        s
    }

    #[test]
    fn services() {
        let ok = svc(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}));
        assert_eq!(
            msgs(&validate("", "Service", &ok, None)),
            Vec::<String>::new()
        );

        let s = svc(json!({"selector": {"app": "web"}}));
        assert_eq!(
            msgs(&validate("", "Service", &s, None)),
            vec!["spec.ports: Required value"]
        );

        let headless = svc(json!({"clusterIP": "None", "selector": {"app": "web"}}));
        assert!(validate("", "Service", &headless, None).is_empty());

        let s = svc(json!({"ports": [{"port": 80}, {"port": 443}]}));
        assert_eq!(
            msgs(&validate("", "Service", &s, None)),
            vec![
                "spec.ports[0].name: Required value",
                "spec.ports[1].name: Required value",
            ]
        );

        let s = svc(
            json!({"ports": [{"name": "a", "port": 0}, {"name": "a", "port": 80, "protocol": "ICMP"}]}),
        );
        assert_eq!(
            msgs(&validate("", "Service", &s, None)),
            vec![
                "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                "spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive",
                r#"spec.ports[1].name: Duplicate value: "a""#,
                r#"spec.ports[1].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP""#,
            ]
        );

        let s = svc(json!({"type": "Magic", "ports": [{"port": 80}]}));
        let e = validate("", "Service", &s, None);
        assert_eq!(
            only_on(&e, "spec.type").to_string(),
            r#"spec.type: Unsupported value: "Magic": supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort""#
        );

        let s = svc(json!({"ports": [{"port": 80}, {"name": "b", "port": 80}]}));
        let e = validate("", "Service", &s, None);
        assert_eq!(
            only_on(&e, "spec.ports[1]").to_string(),
            r#"spec.ports[1]: Duplicate value: core.ServicePort{Name:"", Protocol:"TCP", AppProtocol:(*string)(nil), Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:""}, NodePort:0}"#
        );

        let s = svc(json!({"selector": {"app": "-x"}, "ports": [{"port": 80}]}));
        assert!(
            only_on(&validate("", "Service", &s, None), "spec.selector")
                .to_string()
                .starts_with(r#"spec.selector: Invalid value: "-x": a valid label must be"#)
        );

        let s = svc(json!({"type": "ExternalName", "externalName": "db.example.com."}));
        assert!(validate("", "Service", &s, None).is_empty());
        let s = svc(json!({"type": "ExternalName"}));
        assert_eq!(
            msgs(&validate("", "Service", &s, None)),
            vec!["spec.externalName: Required value"]
        );
    }

    #[test]
    fn service_cluster_ip_is_immutable() {
        let mut old = svc(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}));
        old["spec"]["clusterIP"] = json!("10.96.0.10");
        old["spec"]["clusterIPs"] = json!(["10.96.0.10"]);
        let mut new = old.clone();
        new["spec"]["clusterIP"] = json!("10.96.0.11");
        new["spec"]["clusterIPs"] = json!(["10.96.0.11"]);
        assert_eq!(
            msgs(&validate("", "Service", &new, Some(&old))),
            vec![
                r#"spec.clusterIPs[0]: Invalid value: []string{"10.96.0.11"}: may not change once set"#,
            ]
        );
        // an apply without the allocated IP keeps it
        let mut new = old.clone();
        new["spec"].as_object_mut().unwrap().remove("clusterIP");
        new["spec"].as_object_mut().unwrap().remove("clusterIPs");
        assert!(validate("", "Service", &new, Some(&old)).is_empty());
    }

    #[test]
    fn config_maps() {
        let cm = json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"good.key": "v", "bad/key": "v"}});
        assert_eq!(
            msgs(&validate("", "ConfigMap", &cm, None)),
            vec![
                r#"data[bad/key]: Invalid value: "bad/key": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name', or 'KEY_NAME', or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"#,
            ]
        );
        let big = json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"a": "x".repeat(MAX_SECRET_SIZE + 1)}});
        assert_eq!(
            msgs(&validate("", "ConfigMap", &big, None)),
            vec![": Too long: may not be more than 1048576 bytes"]
        );

        let old = json!({"metadata": {"name": "c", "namespace": "d"}, "immutable": true, "data": {"a": "1"}});
        let mut new = old.clone();
        new["data"]["a"] = json!("2");
        assert_eq!(
            msgs(&validate("", "ConfigMap", &new, Some(&old))),
            vec!["data: Forbidden: field is immutable when `immutable` is set"]
        );
        new["immutable"] = json!(false);
        new["data"]["a"] = json!("1");
        assert_eq!(
            msgs(&validate("", "ConfigMap", &new, Some(&old))),
            vec!["immutable: Forbidden: field is immutable when `immutable` is set"]
        );
        let mut fine = old.clone();
        fine["metadata"]["labels"] = json!({"a": "b"});
        assert!(validate("", "ConfigMap", &fine, Some(&old)).is_empty());
    }

    #[test]
    fn secrets() {
        let mut s =
            json!({"metadata": {"name": "s", "namespace": "d"}, "stringData": {"password": "x"}});
        defaults::apply("", "Secret", &mut s);
        assert!(validate("", "Secret", &s, None).is_empty());

        let s = json!({"metadata": {"name": "s", "namespace": "d"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}});
        assert_eq!(
            msgs(&validate("", "Secret", &s, None)),
            vec!["data[tls.key]: Required value"]
        );

        let old = json!({"metadata": {"name": "s", "namespace": "d"}, "type": "Opaque"});
        let new = json!({"metadata": {"name": "s", "namespace": "d"}, "type": "kubernetes.io/basic-auth", "data": {"username": "eA=="}});
        assert_eq!(
            msgs(&validate("", "Secret", &new, Some(&old))),
            vec![r#"type: Invalid value: "kubernetes.io/basic-auth": field is immutable"#]
        );
    }

    #[test]
    fn namespaces_and_nodes() {
        let ns =
            json!({"metadata": {"name": "team-a"}, "spec": {"finalizers": ["kubernetes", "mine"]}});
        assert_eq!(
            msgs(&validate("", "Namespace", &ns, None)),
            vec![
                r#"spec.finalizers: Invalid value: "mine": name is neither a standard finalizer name nor is it fully qualified"#,
            ]
        );
        let node_obj = json!({"metadata": {"name": "edge-1"}, "spec": {"taints": [
            {"key": "k", "effect": "NoSchedule"}, {"key": "k", "effect": "NoSchedule"}, {"key": "j"}]}});
        let e = validate("", "Node", &node_obj, None);
        assert_eq!(
            only_on(&e, "metadata.taints[1]").detail,
            "taints must be unique by key and effect pair"
        );
        assert_eq!(
            only_on(&e, "metadata.taints[2].effect").to_string(),
            "metadata.taints[2].effect: Required value"
        );

        let old = json!({"metadata": {"name": "edge-1"}, "spec": {"podCIDRs": ["10.244.0.0/24"], "providerID": "kedge://a"}});
        let new = json!({"metadata": {"name": "edge-1"}, "spec": {"podCIDRs": ["10.244.1.0/24"], "providerID": "kedge://b"}});
        assert_eq!(
            msgs(&validate("", "Node", &new, Some(&old))),
            vec![
                r#"spec.podCIDRs: Forbidden: node updates may not change podCIDR except from "" to valid"#,
                r#"spec.providerID: Forbidden: node updates may not change providerID except from "" to valid"#,
            ]
        );
    }

    #[test]
    fn endpoints_and_slices() {
        let ep = json!({"metadata": {"name": "web", "namespace": "d"}, "subsets": [
            {"addresses": [{"ip": "10.0.0.1"}, {"ip": "127.0.0.1"}, {"ip": "nope"}], "ports": [{"port": 80, "protocol": "TCP"}]},
            {"ports": [{"port": 80, "protocol": "TCP"}, {"port": 81, "protocol": "TCP"}]},
        ]});
        assert_eq!(
            msgs(&validate("", "Endpoints", &ep, None)),
            vec![
                r#"subsets[0].addresses[1].ip: Invalid value: "127.0.0.1": may not be in the loopback range (127.0.0.0/8, ::1/128)"#,
                r#"subsets[0].addresses[2].ip: Invalid value: "nope": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"#,
                "subsets[1]: Required value: must specify `addresses` or `notReadyAddresses`",
                "subsets[1].ports[0].name: Required value",
                "subsets[1].ports[1].name: Required value",
            ]
        );

        let slice = json!({"metadata": {"name": "web-1", "namespace": "d"}, "endpoints": [{"addresses": ["10.0.0.1"]}], "ports": [{"name": "", "port": 80, "protocol": "TCP"}]});
        assert_eq!(
            msgs(&validate("discovery.k8s.io", "EndpointSlice", &slice, None)),
            vec!["addressType: Required value"]
        );
        let mut slice2 = slice.clone();
        slice2["addressType"] = json!("IPv4");
        assert!(validate("discovery.k8s.io", "EndpointSlice", &slice2, None).is_empty());
        let mut slice3 = slice2.clone();
        slice3["addressType"] = json!("IPv6");
        let e = validate("discovery.k8s.io", "EndpointSlice", &slice3, Some(&slice2));
        assert_eq!(
            msgs(&e),
            vec![
                r#"endpoints[0].addresses[0]: Invalid value: "10.0.0.1": must be a valid IPv6 address"#,
                r#"addressType: Invalid value: "IPv6": field is immutable"#,
            ]
        );
        let mut slice4 = slice2.clone();
        slice4["addressType"] = json!("IPX");
        assert_eq!(
            only_on(
                &validate("discovery.k8s.io", "EndpointSlice", &slice4, None),
                "addressType"
            )
            .to_string(),
            r#"addressType: Unsupported value: "IPX": supported values: "FQDN", "IPv4", "IPv6""#
        );
    }

    #[test]
    fn events() {
        // core events: lenient
        let ev = json!({"metadata": {"name": "web.17", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default"}, "reason": "Started"});
        assert!(validate("", "Event", &ev, None).is_empty());
        let bad_ns = json!({"metadata": {"name": "web.17", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web", "namespace": "other"}});
        assert_eq!(
            msgs(&validate("", "Event", &bad_ns, None)),
            vec![
                r#"involvedObject.namespace: Invalid value: "other": does not match event.namespace"#,
            ]
        );
        let no_name = json!({"metadata": {"namespace": "default"}, "involvedObject": {}});
        assert_eq!(
            msgs(&validate("", "Event", &no_name, None)),
            vec!["metadata.name: Required value: name or generateName is required"]
        );

        // events.k8s.io: strict
        let ev = json!({"metadata": {"name": "web.17", "namespace": "default"},
            "eventTime": "2024-01-01T00:00:00.000000Z", "type": "Normal", "reason": "Started", "action": "Start",
            "reportingController": "kedge.io/agent", "reportingInstance": "edge-1",
            "regarding": {"kind": "Pod", "name": "web", "namespace": "default"}});
        assert!(validate("events.k8s.io", "Event", &ev, None).is_empty());
        let mut bad = ev.clone();
        bad["type"] = json!("Bad");
        bad.as_object_mut().unwrap().remove("action");
        bad["deprecatedCount"] = json!(3);
        assert_eq!(
            msgs(&validate("events.k8s.io", "Event", &bad, None)),
            vec![
                "action: Required value",
                r#"type: Invalid value: "": has invalid value: Bad"#,
                r#"count: Invalid value: "": needs to be unset"#,
            ]
        );
        let mut changed = ev.clone();
        changed["note"] = json!("new");
        assert_eq!(
            msgs(&validate("events.k8s.io", "Event", &changed, Some(&ev))),
            vec![r#"message: Invalid value: "new": field is immutable"#]
        );
    }

    #[test]
    fn leases() {
        let l = json!({"metadata": {"name": "edge-1", "namespace": "kube-node-lease"}, "spec": {"holderIdentity": "edge-1", "leaseDurationSeconds": 0, "leaseTransitions": -1}});
        assert_eq!(
            msgs(&validate("coordination.k8s.io", "Lease", &l, None)),
            vec![
                "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0",
                "spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0",
            ]
        );
    }

    #[test]
    fn helpers() {
        assert!(cidr("10.0.0.0/8", "p").is_none());
        assert!(cidr("10.0.0.0/33", "p").is_some());
        assert!(cidr("10.0.0.0", "p").is_some());
        assert!(ip("::1", "p").is_none());
        assert_eq!(
            non_special_ip("0.0.0.0", "p")[0].detail,
            "may not be unspecified (0.0.0.0)"
        );
        assert_eq!(
            non_special_ip("fe80::1", "p")[0].detail,
            "may not be in the link-local range (169.254.0.0/16, fe80::/10)"
        );
        assert_eq!(
            non_special_ip("224.0.0.1", "p")[0].detail,
            "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"
        );
        assert_eq!(
            fqdn("localhost", "p")[0].detail,
            "should be a domain with at least two segments separated by dots"
        );
        assert_eq!(decoded_len("eA=="), 1);
        assert_eq!(decoded_len("aGVsbG8="), 5);
    }
}
