//! Pod specs, as upstream's `ValidatePodSpec` checks them (for pods and for
//! every pod template), plus what only pods get and the pod update rules.
//!
//! Covered: containers (names, images, ports, env and envFrom, volume
//! mounts, pull policy, termination message policy, resources, probes,
//! lifecycle handlers, security context ids), init containers, volumes
//! (names, exactly one source, the common sources' required fields),
//! restart and DNS policy, DNS config, node selector, tolerations,
//! readiness and scheduling gates, the names a spec refers to, and pod
//! updates (only images, `activeDeadlineSeconds`, added tolerations,
//! removed scheduling gates, and a negative grace period set to 1).
//!
//! Left out: affinity and topology spread constraints, sysctls, seccomp and
//! AppArmor, Windows/Linux-specific fields, resource claims, the
//! in-place resize (`resize` subresource) rules.

use std::collections::{BTreeMap, BTreeSet};

use kedge_apimachinery::field::FieldError;
use kedge_apimachinery::validation::{
    IS_NEGATIVE, NameRule, inclusive_range_error, is_config_map_key, is_dns1123_label,
    is_dns1123_subdomain, is_http_header_name, is_qualified_name, is_relaxed_env_var_name,
    is_valid_label_value, is_valid_port_name, is_valid_port_num, semantic_eq, validate_annotations,
    validate_label_name, validate_labels, validate_nonnegative,
};
use serde_json::{Value, json};

use super::quantity::Quantity;
use super::{NULL, get, has, int_at, list, str_at};

/// The fields a pod update may change, as upstream lists them (1.32, with
/// in-place resize off).
pub const UPDATABLE_POD_SPEC_FIELDS: &[&str] = &[
    "`spec.containers[*].image`",
    "`spec.initContainers[*].image`",
    "`spec.activeDeadlineSeconds`",
    "`spec.tolerations` (only additions to existing tolerations)",
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
];

const MAX_INT32: i64 = 2_147_483_647;

/// A Pod: its spec, the pod-only rules, and on update what may change.
pub fn pod(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let spec = get(obj, "spec");
    let mut errs = pod_spec(spec, "spec", true);
    // Pod-only rules (upstream's validatePodMetadataAndSpec).
    if str_at(spec, "serviceAccountName").is_empty() {
        for (vi, v) in list(spec, "volumes").iter().enumerate() {
            for (si, s) in list(get(v, "projected"), "sources").iter().enumerate() {
                if has(s, "serviceAccountToken") {
                    errs.push(FieldError::forbidden(
                        format!("spec.volumes[{vi}].projected.sources[{si}].serviceAccountToken"),
                        "must not be specified when serviceAccountName is not set",
                    ));
                }
            }
        }
    }
    for key in ["containers", "initContainers"] {
        for (i, c) in list(spec, key).iter().enumerate() {
            let image = str_at(c, "image");
            if image.trim() != image {
                errs.push(FieldError::invalid(
                    format!("spec.{key}[{i}].image"),
                    &Value::from(image),
                    "must not have leading or trailing whitespace",
                ));
            }
        }
    }
    match old {
        None => {
            if !list(spec, "ephemeralContainers").is_empty() {
                errs.push(FieldError::forbidden(
                    "spec.ephemeralContainers",
                    "cannot be set on create",
                ));
            }
            if !str_at(spec, "nodeName").is_empty() && !list(spec, "schedulingGates").is_empty() {
                errs.push(FieldError::forbidden(
                    "spec.nodeName",
                    "cannot be set until all schedulingGates have been cleared",
                ));
            }
        }
        Some(old) => errs.extend(pod_update(spec, get(old, "spec"))),
    }
    errs
}

/// A pod template (`spec.template` of a workload) at `path`: its labels and
/// annotations (reported at `<path>.labels`, as upstream does) and its spec.
pub fn template(t: &Value, path: &str) -> Vec<FieldError> {
    let meta = get(t, "metadata");
    let mut errs = validate_labels(get(meta, "labels"), &format!("{path}.labels"));
    errs.extend(validate_annotations(
        get(meta, "annotations"),
        &format!("{path}.annotations"),
    ));
    let spec = get(t, "spec");
    errs.extend(pod_spec(spec, &format!("{path}.spec"), false));
    if !list(spec, "ephemeralContainers").is_empty() {
        errs.push(FieldError::forbidden(
            format!("{path}.spec.ephemeralContainers"),
            "ephemeral containers not allowed in pod template",
        ));
    }
    errs
}

/// Upstream's `ValidatePodSpec`. `is_pod` is false for templates, where
/// a zero host port on the host network is still allowed.
pub fn pod_spec(spec: &Value, path: &str, is_pod: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if !has(spec, "terminationGracePeriodSeconds") {
        errs.push(FieldError::required(
            format!("{path}.terminationGracePeriodSeconds"),
            "",
        ));
    }
    let grace = int_at(spec, "terminationGracePeriodSeconds");
    let (vols, vol_errs) = volumes(list(spec, "volumes"), &format!("{path}.volumes"));
    errs.extend(vol_errs);
    let ctx = Ctx { vols: &vols, grace };
    errs.extend(containers(spec, path, &ctx));
    errs.extend(init_containers(spec, path, &ctx));
    errs.extend(host_network_deps(spec, path, is_pod));
    errs.extend(one_of(
        get(spec, "restartPolicy"),
        &format!("{path}.restartPolicy"),
        &["Always", "OnFailure", "Never"],
    ));
    errs.extend(one_of(
        get(spec, "dnsPolicy"),
        &format!("{path}.dnsPolicy"),
        &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
    ));
    errs.extend(validate_labels(
        get(spec, "nodeSelector"),
        &format!("{path}.nodeSelector"),
    ));
    errs.extend(pod_security_context(
        get(spec, "securityContext"),
        &format!("{path}.securityContext"),
        spec,
    ));
    errs.extend(dns_config(spec, &format!("{path}.dnsConfig")));
    for (i, g) in list(spec, "readinessGates").iter().enumerate() {
        errs.extend(qualified_name(
            str_at(g, "conditionType"),
            &format!("{path}.readinessGates[{i}].conditionType"),
        ));
    }
    let mut gates = BTreeSet::new();
    for (i, g) in list(spec, "schedulingGates").iter().enumerate() {
        let name = str_at(g, "name");
        let p = format!("{path}.schedulingGates[{i}]");
        errs.extend(qualified_name(name, &p));
        if !gates.insert(name) {
            errs.push(FieldError::duplicate(p, &Value::from(name)));
        }
    }
    for (key, rule) in [
        ("serviceAccountName", NameRule::Dns1123Subdomain),
        ("nodeName", NameRule::Dns1123Subdomain),
    ] {
        let v = str_at(spec, key);
        if !v.is_empty() {
            for msg in rule.check(v, false) {
                errs.push(FieldError::invalid(
                    format!("{path}.{key}"),
                    &Value::from(v),
                    msg,
                ));
            }
        }
    }
    if let Some(ads) = int_at(spec, "activeDeadlineSeconds")
        && !(1..=MAX_INT32).contains(&ads)
    {
        errs.push(FieldError::invalid(
            format!("{path}.activeDeadlineSeconds"),
            &Value::from(ads),
            inclusive_range_error(1, MAX_INT32),
        ));
    }
    for key in ["hostname", "subdomain"] {
        let v = str_at(spec, key);
        if !v.is_empty() {
            errs.extend(dns_label(v, &format!("{path}.{key}")));
        }
    }
    errs.extend(tolerations(
        list(spec, "tolerations"),
        &format!("{path}.tolerations"),
    ));
    for key in ["priorityClassName", "runtimeClassName"] {
        let v = str_at(spec, key);
        if !v.is_empty() {
            for msg in is_dns1123_subdomain(v) {
                errs.push(FieldError::invalid(
                    format!("{path}.{key}"),
                    &Value::from(v),
                    msg,
                ));
            }
        }
    }
    if has(spec, "preemptionPolicy") {
        errs.extend(one_of(
            get(spec, "preemptionPolicy"),
            &format!("{path}.preemptionPolicy"),
            &["PreemptLowerPriority", "Never"],
        ));
    }
    errs
}

/// What the containers of one spec are checked against.
struct Ctx<'a> {
    /// The valid volumes, by name.
    vols: &'a BTreeMap<String, &'a Value>,
    grace: Option<i64>,
}

/// `Required` when empty, `Unsupported value` when not one of `supported`.
fn one_of(value: &Value, path: &str, supported: &[&str]) -> Option<FieldError> {
    match value.as_str().unwrap_or("") {
        "" => Some(FieldError::required(path, "")),
        v if supported.contains(&v) => None,
        _ => Some(FieldError::not_supported(path, value, supported)),
    }
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

// --- volumes ---

const VOLUME_SOURCES: &[&str] = &[
    "emptyDir",
    "hostPath",
    "gitRepo",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "flocker",
    "persistentVolumeClaim",
    "rbd",
    "cinder",
    "cephfs",
    "quobyte",
    "downwardAPI",
    "fc",
    "flexVolume",
    "configMap",
    "azureFile",
    "vsphereVolume",
    "photonPersistentDisk",
    "portworxVolume",
    "azureDisk",
    "storageos",
    "projected",
    "scaleIO",
    "csi",
    "ephemeral",
    "image",
];

/// Upstream's `ValidateVolumes`: the valid volumes by name, and the errors.
fn volumes<'a>(vols: &'a [Value], path: &str) -> (BTreeMap<String, &'a Value>, Vec<FieldError>) {
    let mut by_name = BTreeMap::new();
    let mut errs = Vec::new();
    for (i, v) in vols.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let name = str_at(v, "name");
        let mut el = volume_source(v, &p);
        if name.is_empty() {
            el.push(FieldError::required(format!("{p}.name"), ""));
        } else {
            el.extend(dns_label(name, &format!("{p}.name")));
        }
        if by_name.contains_key(name) {
            el.push(FieldError::duplicate(
                format!("{p}.name"),
                &Value::from(name),
            ));
        }
        if el.is_empty() {
            by_name.insert(name.to_string(), v);
        } else {
            errs.extend(el);
        }
    }
    (by_name, errs)
}

fn volume_source(v: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut count = 0;
    for key in VOLUME_SOURCES {
        if !has(v, key) {
            continue;
        }
        if count > 0 {
            errs.push(FieldError::forbidden(
                format!("{path}.{key}"),
                "may not specify more than 1 volume type",
            ));
            continue;
        }
        count += 1;
        let src = get(v, key);
        let p = format!("{path}.{key}");
        match *key {
            "hostPath" => errs.extend(host_path(src, &p)),
            "secret" => {
                if str_at(src, "secretName").is_empty() {
                    errs.push(FieldError::required(format!("{p}.secretName"), ""));
                }
                errs.extend(file_mode(src, &p));
                errs.extend(key_to_paths(src, &p));
            }
            "configMap" => {
                if str_at(src, "name").is_empty() {
                    errs.push(FieldError::required(format!("{p}.name"), ""));
                }
                errs.extend(file_mode(src, &p));
                errs.extend(key_to_paths(src, &p));
            }
            "persistentVolumeClaim" if str_at(src, "claimName").is_empty() => {
                errs.push(FieldError::required(format!("{p}.claimName"), ""));
            }
            "nfs" => {
                if str_at(src, "server").is_empty() {
                    errs.push(FieldError::required(format!("{p}.server"), ""));
                }
                let nfs_path = str_at(src, "path");
                if nfs_path.is_empty() {
                    errs.push(FieldError::required(format!("{p}.path"), ""));
                } else if !nfs_path.starts_with('/') {
                    errs.push(FieldError::invalid(
                        format!("{p}.path"),
                        &Value::from(nfs_path),
                        "must be an absolute path",
                    ));
                }
            }
            "emptyDir" => {
                if let Some(limit) = get(src, "sizeLimit").as_str()
                    && Quantity::parse(limit).is_ok_and(|q| q.is_negative())
                {
                    errs.push(FieldError::forbidden(
                        format!("{p}.sizeLimit"),
                        "SizeLimit field must be a valid resource quantity",
                    ));
                }
            }
            "downwardAPI" => {
                errs.extend(file_mode(src, &p));
                for (i, item) in list(src, "items").iter().enumerate() {
                    let ip = format!("{p}.items[{i}]");
                    let item_path = str_at(item, "path");
                    if item_path.is_empty() {
                        errs.push(FieldError::required(format!("{ip}.path"), ""));
                    }
                    errs.extend(local_non_reserved_path(item_path, &format!("{ip}.path")));
                }
            }
            "projected" => {
                errs.extend(file_mode(src, &p));
                for (i, s) in list(src, "sources").iter().enumerate() {
                    let sp = format!("{p}.sources[{i}]");
                    let kinds = [
                        "secret",
                        "downwardAPI",
                        "configMap",
                        "serviceAccountToken",
                        "clusterTrustBundle",
                    ];
                    let mut n = 0;
                    for k in kinds {
                        if has(s, k) {
                            n += 1;
                            if n > 1 {
                                errs.push(FieldError::forbidden(
                                    format!("{sp}.{k}"),
                                    "may not specify more than 1 volume type per source",
                                ));
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    if count == 0 {
        errs.push(FieldError::required(path, "must specify a volume type"));
    }
    errs
}

fn host_path(src: &Value, path: &str) -> Vec<FieldError> {
    let p = str_at(src, "path");
    if p.is_empty() {
        return vec![FieldError::required(format!("{path}.path"), "")];
    }
    let mut errs = no_backsteps(p, &format!("{path}.path"));
    let kind = str_at(src, "type");
    let supported = [
        "",
        "BlockDevice",
        "CharDevice",
        "Directory",
        "DirectoryOrCreate",
        "File",
        "FileOrCreate",
        "Socket",
    ];
    if !supported.contains(&kind) {
        errs.push(FieldError::not_supported(
            format!("{path}.type"),
            &Value::from(kind),
            &supported,
        ));
    }
    errs
}

fn no_backsteps(p: &str, path: &str) -> Vec<FieldError> {
    if p.split(['/', '\\']).any(|part| part == "..") {
        vec![FieldError::invalid(
            path,
            &Value::from(p),
            "must not contain '..'",
        )]
    } else {
        Vec::new()
    }
}

/// Upstream's `validateLocalDescendingPath`.
fn local_descending_path(p: &str, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if p.starts_with('/') {
        errs.push(FieldError::invalid(
            path,
            &Value::from(p),
            "must be a relative path",
        ));
    }
    errs.extend(no_backsteps(p, path));
    errs
}

/// Upstream's `validateLocalNonReservedPath`.
fn local_non_reserved_path(p: &str, path: &str) -> Vec<FieldError> {
    let mut errs = local_descending_path(p, path);
    if p.starts_with("..") && !p.starts_with("../") {
        errs.push(FieldError::invalid(
            path,
            &Value::from(p),
            "must not start with '..'",
        ));
    }
    errs
}

const FILE_MODE_ERROR: &str = "must be a number between 0 and 0777 (octal), both inclusive";

fn file_mode(src: &Value, path: &str) -> Option<FieldError> {
    let mode = int_at(src, "defaultMode")?;
    (!(0..=0o777).contains(&mode)).then(|| {
        FieldError::invalid(
            format!("{path}.defaultMode"),
            &Value::from(mode),
            FILE_MODE_ERROR,
        )
    })
}

fn key_to_paths(src: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, item) in list(src, "items").iter().enumerate() {
        let p = format!("{path}.items[{i}]");
        if str_at(item, "key").is_empty() {
            errs.push(FieldError::required(format!("{p}.key"), ""));
        }
        let item_path = str_at(item, "path");
        if item_path.is_empty() {
            errs.push(FieldError::required(format!("{p}.path"), ""));
        }
        errs.extend(local_non_reserved_path(item_path, &format!("{p}.path")));
        if let Some(mode) = int_at(item, "mode")
            && !(0..=0o777).contains(&mode)
        {
            errs.push(FieldError::invalid(
                format!("{p}.mode"),
                &Value::from(mode),
                FILE_MODE_ERROR,
            ));
        }
    }
    errs
}

// --- containers ---

fn containers(spec: &Value, path: &str, ctx: &Ctx<'_>) -> Vec<FieldError> {
    let list_path = format!("{path}.containers");
    let cs = list(spec, "containers");
    if cs.is_empty() {
        return vec![FieldError::required(list_path, "")];
    }
    let mut errs = Vec::new();
    let mut names = BTreeSet::new();
    for (i, c) in cs.iter().enumerate() {
        let p = format!("{list_path}[{i}]");
        errs.extend(container_common(c, &p, ctx));
        let name = str_at(c, "name");
        if !names.insert(name) {
            errs.push(FieldError::duplicate(
                format!("{p}.name"),
                &Value::from(name),
            ));
        }
        errs.extend(lifecycle_and_probes(c, &p, ctx));
        if has(c, "restartPolicy") {
            errs.push(FieldError::forbidden(
                format!("{p}.restartPolicy"),
                "may not be set for non-init containers",
            ));
        }
    }
    errs.extend(host_port_conflicts(cs.iter().enumerate(), &list_path));
    errs
}

fn init_containers(spec: &Value, path: &str, ctx: &Ctx<'_>) -> Vec<FieldError> {
    let list_path = format!("{path}.initContainers");
    let mut errs = Vec::new();
    let mut names: BTreeSet<&str> = list(spec, "containers")
        .iter()
        .map(|c| str_at(c, "name"))
        .collect();
    for (i, c) in list(spec, "initContainers").iter().enumerate() {
        let p = format!("{list_path}[{i}]");
        errs.extend(container_common(c, &p, ctx));
        let mut restart_always = false;
        if has(c, "restartPolicy") {
            restart_always = str_at(c, "restartPolicy") == "Always";
            if !restart_always {
                errs.push(FieldError::not_supported(
                    format!("{p}.restartPolicy"),
                    get(c, "restartPolicy"),
                    &["Always"],
                ));
            }
        }
        let name = str_at(c, "name");
        if names.contains(name) {
            errs.push(FieldError::duplicate(
                format!("{p}.name"),
                &Value::from(name),
            ));
        } else if !name.is_empty() {
            names.insert(name);
        }
        errs.extend(host_port_conflicts(std::iter::once((i, c)), &list_path));
        if restart_always {
            errs.extend(lifecycle_and_probes(c, &p, ctx));
        } else {
            for key in [
                "lifecycle",
                "livenessProbe",
                "readinessProbe",
                "startupProbe",
            ] {
                if has(c, key) {
                    errs.push(FieldError::forbidden(
                        format!("{p}.{key}"),
                        "may not be set for init containers without restartPolicy=Always",
                    ));
                }
            }
        }
    }
    errs
}

fn host_port_conflicts<'a>(
    cs: impl Iterator<Item = (usize, &'a Value)>,
    path: &str,
) -> Vec<FieldError> {
    let mut seen = BTreeSet::new();
    let mut errs = Vec::new();
    for (ci, c) in cs {
        for (pi, port) in list(c, "ports").iter().enumerate() {
            let host_port = int_at(port, "hostPort").unwrap_or(0);
            if host_port == 0 {
                continue;
            }
            let key = format!(
                "{}/{}/{}",
                str_at(port, "protocol"),
                str_at(port, "hostIP"),
                host_port
            );
            if !seen.insert(key.clone()) {
                errs.push(FieldError::duplicate(
                    format!("{path}[{ci}].ports[{pi}].hostPort"),
                    &Value::from(key),
                ));
            }
        }
    }
    errs
}

/// Upstream's `validateContainerCommon`.
fn container_common(c: &Value, path: &str, ctx: &Ctx<'_>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = str_at(c, "name");
    if name.is_empty() {
        errs.push(FieldError::required(format!("{path}.name"), ""));
    } else {
        errs.extend(dns_label(name, &format!("{path}.name")));
    }
    if str_at(c, "image").is_empty() {
        errs.push(FieldError::required(format!("{path}.image"), ""));
    }
    errs.extend(one_of(
        get(c, "terminationMessagePolicy"),
        &format!("{path}.terminationMessagePolicy"),
        &["File", "FallbackToLogsOnError"],
    ));
    errs.extend(container_ports(list(c, "ports"), &format!("{path}.ports")));
    errs.extend(env(list(c, "env"), &format!("{path}.env")));
    errs.extend(env_from(list(c, "envFrom"), &format!("{path}.envFrom")));
    errs.extend(volume_mounts(c, &format!("{path}.volumeMounts"), ctx));
    errs.extend(one_of(
        get(c, "imagePullPolicy"),
        &format!("{path}.imagePullPolicy"),
        &["Always", "IfNotPresent", "Never"],
    ));
    errs.extend(resources(get(c, "resources"), &format!("{path}.resources")));
    errs.extend(container_security_context(
        get(c, "securityContext"),
        &format!("{path}.securityContext"),
    ));
    errs
}

fn container_ports(ports: &[Value], path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut names = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let pp = format!("{path}[{i}]");
        let name = str_at(p, "name");
        if !name.is_empty() {
            let msgs = is_valid_port_name(name);
            if !msgs.is_empty() {
                for msg in msgs {
                    errs.push(FieldError::invalid(
                        format!("{pp}.name"),
                        &Value::from(name),
                        msg,
                    ));
                }
            } else if !names.insert(name) {
                errs.push(FieldError::duplicate(
                    format!("{pp}.name"),
                    &Value::from(name),
                ));
            }
        }
        match int_at(p, "containerPort").unwrap_or(0) {
            0 => errs.push(FieldError::required(format!("{pp}.containerPort"), "")),
            n => {
                for msg in is_valid_port_num(n) {
                    errs.push(FieldError::invalid(
                        format!("{pp}.containerPort"),
                        &Value::from(n),
                        msg,
                    ));
                }
            }
        }
        let host_port = int_at(p, "hostPort").unwrap_or(0);
        if host_port != 0 {
            for msg in is_valid_port_num(host_port) {
                errs.push(FieldError::invalid(
                    format!("{pp}.hostPort"),
                    &Value::from(host_port),
                    msg,
                ));
            }
        }
        errs.extend(protocol(p, &pp));
    }
    errs
}

/// `protocol` required and one of TCP, UDP, SCTP.
pub(crate) fn protocol(port: &Value, path: &str) -> Option<FieldError> {
    one_of(
        get(port, "protocol"),
        &format!("{path}.protocol"),
        &["SCTP", "TCP", "UDP"],
    )
}

const ENV_FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

const RESOURCE_FIELD_PATHS: &[&str] = &[
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
];

fn env(vars: &[Value], path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, ev) in vars.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let name = str_at(ev, "name");
        if name.is_empty() {
            errs.push(FieldError::required(format!("{p}.name"), ""));
        } else {
            for msg in is_relaxed_env_var_name(name) {
                errs.push(FieldError::invalid(
                    format!("{p}.name"),
                    &Value::from(name),
                    msg,
                ));
            }
        }
        if !has(ev, "valueFrom") {
            continue;
        }
        let from = get(ev, "valueFrom");
        let fp = format!("{p}.valueFrom");
        let mut sources = 0;
        if has(from, "fieldRef") {
            sources += 1;
            errs.extend(field_ref(get(from, "fieldRef"), &format!("{fp}.fieldRef")));
        }
        if has(from, "resourceFieldRef") {
            sources += 1;
            let r = get(from, "resourceFieldRef");
            let rp = format!("{fp}.resourceFieldRef");
            let resource = str_at(r, "resource");
            if resource.is_empty() {
                errs.push(FieldError::required(format!("{rp}.resource"), ""));
            } else if !RESOURCE_FIELD_PATHS.contains(&resource)
                && !resource.starts_with("requests.hugepages-")
                && !resource.starts_with("limits.hugepages-")
            {
                errs.push(FieldError::not_supported(
                    format!("{rp}.resource"),
                    &Value::from(resource),
                    RESOURCE_FIELD_PATHS,
                ));
            }
        }
        for key in ["configMapKeyRef", "secretKeyRef"] {
            if has(from, key) {
                sources += 1;
                let r = get(from, key);
                let rp = format!("{fp}.{key}");
                let rname = str_at(r, "name");
                for msg in is_dns1123_subdomain(rname) {
                    errs.push(FieldError::invalid(
                        format!("{rp}.name"),
                        &Value::from(rname),
                        msg,
                    ));
                }
                let key = str_at(r, "key");
                if key.is_empty() {
                    errs.push(FieldError::required(format!("{rp}.key"), ""));
                } else {
                    for msg in is_config_map_key(key) {
                        errs.push(FieldError::invalid(
                            format!("{rp}.key"),
                            &Value::from(key),
                            msg,
                        ));
                    }
                }
            }
        }
        let empty = Value::from("");
        if sources == 0 {
            errs.push(FieldError::invalid(
                &fp,
                &empty,
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            ));
        } else if !str_at(ev, "value").is_empty() {
            errs.push(FieldError::invalid(
                &fp,
                &empty,
                "may not be specified when `value` is not empty",
            ));
        } else if sources > 1 {
            errs.push(FieldError::invalid(
                &fp,
                &empty,
                "may not have more than one field specified at a time",
            ));
        }
    }
    errs
}

/// Upstream's `validateObjectFieldSelector` for env vars.
fn field_ref(r: &Value, path: &str) -> Vec<FieldError> {
    let api_version = str_at(r, "apiVersion");
    if api_version.is_empty() {
        return vec![FieldError::required(format!("{path}.apiVersion"), "")];
    }
    let fp = str_at(r, "fieldPath");
    if fp.is_empty() {
        return vec![FieldError::required(format!("{path}.fieldPath"), "")];
    }
    if api_version != "v1" {
        return vec![FieldError::invalid(
            format!("{path}.fieldPath"),
            &Value::from(fp),
            format!("error converting fieldPath: unsupported pod version: {api_version}"),
        )];
    }
    // `metadata.labels['key']` and `metadata.annotations['key']`.
    if let Some(open) = fp.find("['")
        && let Some(subscript) = fp[open + 2..].strip_suffix("']")
    {
        let base = &fp[..open];
        return match base {
            "metadata.annotations" => qualified_name(&subscript.to_lowercase(), path),
            "metadata.labels" => qualified_name(subscript, path),
            _ => vec![FieldError::invalid(
                path,
                &Value::from(base),
                "does not support subscript",
            )],
        };
    }
    if ENV_FIELD_PATHS.contains(&fp) {
        Vec::new()
    } else {
        vec![FieldError::not_supported(
            format!("{path}.fieldPath"),
            &Value::from(fp),
            ENV_FIELD_PATHS,
        )]
    }
}

fn env_from(sources: &[Value], path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, ev) in sources.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let prefix = str_at(ev, "prefix");
        if !prefix.is_empty() {
            for msg in is_relaxed_env_var_name(prefix) {
                errs.push(FieldError::invalid(
                    format!("{p}.prefix"),
                    &Value::from(prefix),
                    msg,
                ));
            }
        }
        let mut n = 0;
        for key in ["configMapRef", "secretRef"] {
            if has(ev, key) {
                n += 1;
                let name = str_at(get(ev, key), "name");
                let np = format!("{p}.{key}.name");
                if name.is_empty() {
                    errs.push(FieldError::required(np, ""));
                } else {
                    for msg in NameRule::Dns1123Subdomain.check(name, true) {
                        errs.push(FieldError::invalid(&np, &Value::from(name), msg));
                    }
                }
            }
        }
        let empty = Value::from("");
        if n == 0 {
            errs.push(FieldError::invalid(
                path,
                &empty,
                "must specify one of: `configMapRef` or `secretRef`",
            ));
        } else if n > 1 {
            errs.push(FieldError::invalid(
                path,
                &empty,
                "may not have more than one field specified at a time",
            ));
        }
    }
    errs
}

fn volume_mounts(c: &Value, path: &str, ctx: &Ctx<'_>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut mount_points = BTreeSet::new();
    for (i, m) in list(c, "volumeMounts").iter().enumerate() {
        let p = format!("{path}[{i}]");
        let name = str_at(m, "name");
        if name.is_empty() {
            errs.push(FieldError::required(format!("{p}.name"), ""));
        }
        if !ctx.vols.contains_key(name) {
            errs.push(FieldError::not_found(
                format!("{p}.name"),
                &Value::from(name),
            ));
        }
        let mount_path = str_at(m, "mountPath");
        if mount_path.is_empty() {
            errs.push(FieldError::required(format!("{p}.mountPath"), ""));
        }
        if !mount_points.insert(mount_path) {
            errs.push(FieldError::invalid(
                format!("{p}.mountPath"),
                &Value::from(mount_path),
                "must be unique",
            ));
        }
        // Upstream reports these on the list's path, not the item's.
        let sub_path = str_at(m, "subPath");
        if !sub_path.is_empty() {
            errs.extend(local_descending_path(sub_path, &format!("{path}.subPath")));
        }
        let sub_path_expr = str_at(m, "subPathExpr");
        if !sub_path_expr.is_empty() {
            if !sub_path.is_empty() {
                errs.push(FieldError::invalid(
                    format!("{p}.subPathExpr"),
                    &Value::from(sub_path_expr),
                    "subPathExpr and subPath are mutually exclusive",
                ));
            }
            errs.extend(local_descending_path(
                sub_path_expr,
                &format!("{path}.subPathExpr"),
            ));
        }
        if has(m, "mountPropagation") {
            let supported = ["Bidirectional", "HostToContainer", "None"];
            let v = get(m, "mountPropagation");
            if !supported.contains(&v.as_str().unwrap_or("")) {
                errs.push(FieldError::not_supported(
                    format!("{path}.mountPropagation"),
                    v,
                    &supported,
                ));
            }
        }
    }
    errs
}

// --- resources ---

fn is_native_resource(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

fn is_huge_pages(name: &str) -> bool {
    name.starts_with("hugepages-")
}

fn is_extended_resource(name: &str) -> bool {
    !is_native_resource(name)
        && !name.starts_with("requests.")
        && is_qualified_name(&format!("requests.{name}")).is_empty()
}

fn overcommit_allowed(name: &str) -> bool {
    is_native_resource(name) && !is_huge_pages(name)
}

fn is_standard_container_resource(name: &str) -> bool {
    matches!(name, "cpu" | "memory" | "ephemeral-storage") || is_huge_pages(name)
}

fn is_standard_resource(name: &str) -> bool {
    const STANDARD: &[&str] = &[
        "cpu",
        "memory",
        "ephemeral-storage",
        "requests.cpu",
        "requests.memory",
        "requests.ephemeral-storage",
        "limits.cpu",
        "limits.memory",
        "limits.ephemeral-storage",
        "pods",
        "quotas",
        "services",
        "replicationcontrollers",
        "resourcequotas",
        "secrets",
        "configmaps",
        "persistentvolumeclaims",
        "storage",
        "requests.storage",
        "services.nodeports",
        "services.loadbalancers",
    ];
    STANDARD.contains(&name)
        || is_huge_pages(name)
        || name.starts_with("requests.hugepages-")
        || name.starts_with("limits.hugepages-")
}

fn container_resource_name(name: &str, path: &str) -> Vec<FieldError> {
    let v = Value::from(name);
    let mut errs: Vec<FieldError> = is_qualified_name(name)
        .into_iter()
        .map(|msg| FieldError::invalid(path, &v, msg))
        .collect();
    if errs.is_empty() && !name.contains('/') && !is_standard_resource(name) {
        errs.push(FieldError::invalid(
            path,
            &v,
            "must be a standard resource type or fully qualified",
        ));
    }
    if !name.contains('/') {
        if !is_standard_container_resource(name) {
            errs.push(FieldError::invalid(
                path,
                &v,
                "must be a standard resource for containers",
            ));
        }
    } else if !is_native_resource(name) && !is_extended_resource(name) {
        errs.push(FieldError::invalid(
            path,
            &v,
            "doesn't follow extended resource name standard",
        ));
    }
    errs
}

/// A quantity at `path`, or the parse error.
fn quantity(v: &Value, path: &str) -> Result<Quantity, FieldError> {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    Quantity::parse(&s).map_err(|e| FieldError::invalid(path, &Value::from(s), e.to_string()))
}

/// Upstream's `validateResourceRequirements` for a container.
pub fn resources(r: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let lim_path = format!("{path}.limits");
    let req_path = format!("{path}.requests");
    let limits = get(r, "limits").as_object();
    let requests = get(r, "requests").as_object();
    let mut cpu_or_memory = false;
    let mut huge_pages = false;
    let mut parsed_limits = BTreeMap::new();
    for (name, v) in limits.into_iter().flatten() {
        let p = format!("{lim_path}[{name}]");
        errs.extend(container_resource_name(name, &p));
        match quantity(v, &p) {
            Ok(q) => {
                errs.extend(quantity_value(name, &q, &p));
                parsed_limits.insert(name.as_str(), q);
            }
            Err(e) => errs.push(e),
        }
        huge_pages |= is_huge_pages(name);
        cpu_or_memory |= name == "cpu" || name == "memory";
    }
    for (name, v) in requests.into_iter().flatten() {
        let p = format!("{req_path}[{name}]");
        errs.extend(container_resource_name(name, &p));
        let q = match quantity(v, &p) {
            Ok(q) => q,
            Err(e) => {
                errs.push(e);
                continue;
            }
        };
        errs.extend(quantity_value(name, &q, &p));
        match parsed_limits.get(name.as_str()) {
            Some(limit) => {
                let value = Value::from(q.canonical());
                if q != *limit && !overcommit_allowed(name) {
                    errs.push(FieldError::invalid(
                        &req_path,
                        &value,
                        format!("must be equal to {name} limit of {limit}"),
                    ));
                } else if q > *limit {
                    errs.push(FieldError::invalid(
                        &req_path,
                        &value,
                        format!("must be less than or equal to {name} limit of {limit}"),
                    ));
                }
            }
            None if !overcommit_allowed(name) && !limits.is_some_and(|l| l.contains_key(name)) => {
                errs.push(FieldError::required(
                    &lim_path,
                    "Limit must be set for non overcommitable resources",
                ));
            }
            None => {}
        }
        huge_pages |= is_huge_pages(name);
        cpu_or_memory |= name == "cpu" || name == "memory";
    }
    if huge_pages && !cpu_or_memory {
        errs.push(FieldError::forbidden(
            path,
            "HugePages require cpu or memory",
        ));
    }
    errs
}

fn quantity_value(name: &str, q: &Quantity, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if q.is_negative() {
        errs.push(FieldError::invalid(
            path,
            &Value::from(q.canonical()),
            IS_NEGATIVE,
        ));
    }
    let integer = matches!(name, "pods" | "services" | "secrets" | "configmaps")
        || is_extended_resource(name);
    if integer && q.milli_value().is_some_and(|m| m % 1000 != 0) {
        errs.push(FieldError::invalid(
            path,
            &Value::from(q.canonical()),
            "must be an integer",
        ));
    }
    errs
}

// --- probes and lifecycle ---

fn lifecycle_and_probes(c: &Value, path: &str, ctx: &Ctx<'_>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if has(c, "lifecycle") {
        let l = get(c, "lifecycle");
        for key in ["postStart", "preStop"] {
            if has(l, key) {
                errs.extend(handler(
                    get(l, key),
                    &format!("{path}.lifecycle.{key}"),
                    true,
                    ctx,
                ));
            }
        }
    }
    for key in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if !has(c, key) {
            continue;
        }
        let probe = get(c, key);
        let p = format!("{path}.{key}");
        errs.extend(handler(probe, &p, false, ctx));
        for field in [
            "initialDelaySeconds",
            "timeoutSeconds",
            "periodSeconds",
            "successThreshold",
            "failureThreshold",
        ] {
            if let Some(v) = int_at(probe, field) {
                errs.extend(validate_nonnegative(v, &format!("{p}.{field}")));
            }
        }
        if let Some(t) = int_at(probe, "terminationGracePeriodSeconds")
            && t <= 0
        {
            errs.push(FieldError::invalid(
                format!("{p}.terminationGracePeriodSeconds"),
                &Value::from(t),
                "must be greater than 0",
            ));
        }
        if key != "readinessProbe" {
            let success = int_at(probe, "successThreshold").unwrap_or(0);
            if success != 1 {
                errs.push(FieldError::invalid(
                    format!("{p}.successThreshold"),
                    &Value::from(success),
                    "must be 1",
                ));
            }
        }
    }
    errs
}

/// A probe's or lifecycle hook's handler: exactly one of its kinds.
fn handler(h: &Value, path: &str, lifecycle: bool, ctx: &Ctx<'_>) -> Vec<FieldError> {
    let kinds: &[&str] = if lifecycle {
        &["exec", "httpGet", "tcpSocket", "sleep"]
    } else {
        &["exec", "httpGet", "tcpSocket", "grpc"]
    };
    let mut errs = Vec::new();
    let mut n = 0;
    for kind in kinds {
        if !has(h, kind) {
            continue;
        }
        let p = format!("{path}.{kind}");
        if n > 0 {
            errs.push(FieldError::forbidden(
                p,
                "may not specify more than 1 handler type",
            ));
            continue;
        }
        n += 1;
        let action = get(h, kind);
        match *kind {
            "exec" if list(action, "command").is_empty() => {
                errs.push(FieldError::required(format!("{p}.command"), ""));
            }
            "httpGet" => {
                if str_at(action, "path").is_empty() {
                    errs.push(FieldError::required(format!("{p}.path"), ""));
                }
                errs.extend(port_num_or_name(get(action, "port"), &format!("{p}.port")));
                let scheme = get(action, "scheme");
                if !matches!(scheme.as_str(), Some("HTTP" | "HTTPS")) {
                    errs.push(FieldError::not_supported(
                        format!("{p}.scheme"),
                        scheme,
                        &["HTTP", "HTTPS"],
                    ));
                }
                for header in list(action, "httpHeaders") {
                    let name = str_at(header, "name");
                    for msg in is_http_header_name(name) {
                        errs.push(FieldError::invalid(
                            format!("{p}.httpHeaders"),
                            &Value::from(name),
                            msg,
                        ));
                    }
                }
            }
            "tcpSocket" => errs.extend(port_num_or_name(get(action, "port"), &format!("{p}.port"))),
            "grpc" => {
                let port = int_at(action, "port").unwrap_or(0);
                for msg in is_valid_port_num(port) {
                    errs.push(FieldError::invalid(
                        format!("{p}.port"),
                        &Value::from(port),
                        msg,
                    ));
                }
            }
            "sleep" => {
                let seconds = int_at(action, "seconds").unwrap_or(0);
                if let Some(grace) = ctx.grace
                    && (seconds <= 0 || seconds > grace)
                {
                    errs.push(FieldError::invalid(
                        &p,
                        &Value::from(seconds),
                        format!("must be greater than 0 and less than terminationGracePeriodSeconds ({grace}). Enable AllowPodLifecycleSleepActionZeroValue feature gate for zero sleep."),
                    ));
                }
            }
            _ => {}
        }
    }
    if n == 0 {
        errs.push(FieldError::required(path, "must specify a handler type"));
    }
    errs
}

/// An int-or-string port: a number in 1..65535 or an IANA port name.
pub(crate) fn port_num_or_name(port: &Value, path: &str) -> Vec<FieldError> {
    match port {
        Value::String(name) => is_valid_port_name(name)
            .into_iter()
            .map(|msg| FieldError::invalid(path, port, msg))
            .collect(),
        other => {
            let n = other.as_i64().unwrap_or(0);
            is_valid_port_num(n)
                .into_iter()
                .map(|msg| FieldError::invalid(path, &Value::from(n), msg))
                .collect()
        }
    }
}

// --- the rest of the spec ---

fn host_network_deps(spec: &Value, path: &str, is_pod: bool) -> Vec<FieldError> {
    if get(spec, "hostNetwork").as_bool() != Some(true) {
        return Vec::new();
    }
    let mut errs = Vec::new();
    for (i, c) in list(spec, "containers").iter().enumerate() {
        for (j, p) in list(c, "ports").iter().enumerate() {
            let hp = int_at(p, "hostPort").unwrap_or(0);
            let cp = int_at(p, "containerPort").unwrap_or(0);
            if (is_pod || hp != 0) && hp != cp {
                errs.push(FieldError::invalid(
                    format!("{path}.containers[{i}].ports[{j}].hostPort"),
                    &Value::from(hp),
                    "must match `containerPort` when `hostNetwork` is true",
                ));
            }
        }
    }
    errs
}

const MAX_ID: i64 = 4_294_967_295;

fn id_range(sc: &Value, key: &str, path: &str) -> Option<FieldError> {
    let v = int_at(sc, key)?;
    (!(0..=MAX_ID).contains(&v)).then(|| {
        FieldError::invalid(
            format!("{path}.{key}"),
            &Value::from(v),
            inclusive_range_error(0, MAX_ID),
        )
    })
}

fn pod_security_context(sc: &Value, path: &str, spec: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for key in ["fsGroup", "runAsUser", "runAsGroup"] {
        errs.extend(id_range(sc, key, path));
    }
    for (i, g) in list(sc, "supplementalGroups").iter().enumerate() {
        let g = g.as_i64().unwrap_or(-1);
        if !(0..=MAX_ID).contains(&g) {
            errs.push(FieldError::invalid(
                format!("{path}.supplementalGroups[{i}]"),
                &Value::from(g),
                inclusive_range_error(0, MAX_ID),
            ));
        }
    }
    if get(spec, "shareProcessNamespace").as_bool() == Some(true)
        && get(spec, "hostPID").as_bool() == Some(true)
    {
        errs.push(FieldError::invalid(
            format!("{path}.shareProcessNamespace"),
            &Value::from(true),
            "ShareProcessNamespace and HostPID cannot both be enabled",
        ));
    }
    if has(sc, "fsGroupChangePolicy") {
        let v = get(sc, "fsGroupChangePolicy");
        let supported = ["Always", "OnRootMismatch"];
        if !supported.contains(&v.as_str().unwrap_or("")) {
            errs.push(FieldError::not_supported(
                format!("{path}.fsGroupChangePolicy"),
                v,
                &supported,
            ));
        }
    }
    errs
}

fn container_security_context(sc: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for key in ["runAsUser", "runAsGroup"] {
        errs.extend(id_range(sc, key, path));
    }
    if get(sc, "allowPrivilegeEscalation").as_bool() == Some(false) {
        if get(sc, "privileged").as_bool() == Some(true) {
            errs.push(FieldError::invalid(
                path,
                sc,
                "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
            ));
        }
        if list(get(sc, "capabilities"), "add")
            .iter()
            .any(|c| c.as_str() == Some("CAP_SYS_ADMIN"))
        {
            errs.push(FieldError::invalid(
                path,
                sc,
                "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN",
            ));
        }
    }
    errs
}

fn dns_config(spec: &Value, path: &str) -> Vec<FieldError> {
    let config = get(spec, "dnsConfig");
    if str_at(spec, "dnsPolicy") == "None" {
        if config.is_null() {
            return vec![FieldError::required(
                path,
                "must provide `dnsConfig` when `dnsPolicy` is None",
            )];
        }
        if list(config, "nameservers").is_empty() {
            return vec![FieldError::required(
                format!("{path}.nameservers"),
                "must provide at least one DNS nameserver when `dnsPolicy` is None",
            )];
        }
    }
    if config.is_null() {
        return Vec::new();
    }
    let mut errs = Vec::new();
    let nameservers = list(config, "nameservers");
    if nameservers.len() > 3 {
        errs.push(FieldError::invalid(
            format!("{path}.nameservers"),
            get(config, "nameservers"),
            "must not have more than 3 nameservers",
        ));
    }
    for (i, ns) in nameservers.iter().enumerate() {
        errs.extend(super::core::ip(
            ns.as_str().unwrap_or(""),
            &format!("{path}.nameservers[{i}]"),
        ));
    }
    let searches = list(config, "searches");
    if searches.len() > 32 {
        errs.push(FieldError::invalid(
            format!("{path}.searches"),
            get(config, "searches"),
            "must not have more than 32 search paths",
        ));
    }
    for (i, s) in searches.iter().enumerate() {
        let s = s.as_str().unwrap_or("");
        let s = s.strip_suffix('.').unwrap_or(s);
        for msg in is_dns1123_subdomain(s) {
            errs.push(FieldError::invalid(
                format!("{path}.searches[{i}]"),
                &Value::from(s),
                msg,
            ));
        }
    }
    for (i, o) in list(config, "options").iter().enumerate() {
        if str_at(o, "name").is_empty() {
            errs.push(FieldError::required(
                format!("{path}.options[{i}]"),
                "must not be empty",
            ));
        }
    }
    errs
}

/// Upstream's `ValidateTolerations`.
pub fn tolerations(ts: &[Value], path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, t) in ts.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let key = str_at(t, "key");
        let operator = str_at(t, "operator");
        let effect = str_at(t, "effect");
        let value = str_at(t, "value");
        if !key.is_empty() {
            errs.extend(validate_label_name(key, &format!("{p}.key")));
        }
        if key.is_empty() && operator != "Exists" {
            errs.push(FieldError::invalid(
                format!("{p}.operator"),
                &Value::from(operator),
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if has(t, "tolerationSeconds") && effect != "NoExecute" {
            errs.push(FieldError::invalid(
                format!("{p}.effect"),
                &Value::from(effect),
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match operator {
            "Equal" | "" => {
                let msgs = is_valid_label_value(value);
                if !msgs.is_empty() {
                    errs.push(FieldError::invalid(
                        format!("{p}.operator"),
                        &Value::from(value),
                        msgs.join(";"),
                    ));
                }
            }
            "Exists" => {
                if !value.is_empty() {
                    errs.push(FieldError::invalid(
                        format!("{p}.operator"),
                        &Value::from(value),
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            _ => errs.push(FieldError::not_supported(
                format!("{p}.operator"),
                &Value::from(operator),
                &["Equal", "Exists"],
            )),
        }
        if !effect.is_empty() {
            errs.extend(taint_effect(effect, &format!("{p}.effect")));
        }
    }
    errs
}

/// NoSchedule, PreferNoSchedule or NoExecute.
pub(crate) fn taint_effect(effect: &str, path: &str) -> Option<FieldError> {
    let supported = ["NoSchedule", "PreferNoSchedule", "NoExecute"];
    (!supported.contains(&effect))
        .then(|| FieldError::not_supported(path, &Value::from(effect), &supported))
}

// --- updates ---

/// Upstream's `ValidatePodUpdate`, after the metadata and the new spec
/// have been validated.
fn pod_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for key in ["containers", "initContainers"] {
        let (n, o) = (list(new, key), list(old, key));
        if n.len() != o.len() {
            errs.push(FieldError::forbidden(
                format!("spec.{key}"),
                "pod updates may not add or remove containers",
            ));
            return errs;
        }
        for (i, c) in n.iter().enumerate() {
            if str_at(c, "image").is_empty() {
                errs.push(FieldError::required(format!("spec.{key}[{i}].image"), ""));
            }
        }
    }
    let ads_path = "spec.activeDeadlineSeconds";
    match (
        int_at(new, "activeDeadlineSeconds"),
        int_at(old, "activeDeadlineSeconds"),
    ) {
        (Some(n), _) if !(0..=MAX_INT32).contains(&n) => {
            errs.push(FieldError::invalid(
                ads_path,
                &Value::from(n),
                inclusive_range_error(0, MAX_INT32),
            ));
            return errs;
        }
        (Some(n), Some(o)) if o < n => {
            errs.push(FieldError::invalid(
                ads_path,
                &Value::from(n),
                "must be less than or equal to previous value",
            ));
            return errs;
        }
        (None, Some(_)) => errs.push(FieldError::invalid(
            ads_path,
            &Value::Null,
            "must not update from a positive integer to nil value",
        )),
        _ => {}
    }
    errs.extend(only_added_tolerations(
        list(new, "tolerations"),
        list(old, "tolerations"),
    ));
    let old_gates: BTreeSet<&str> = list(old, "schedulingGates")
        .iter()
        .map(|g| str_at(g, "name"))
        .collect();
    for (i, g) in list(new, "schedulingGates").iter().enumerate() {
        let name = str_at(g, "name");
        if !old_gates.contains(name) {
            errs.push(FieldError::forbidden(
                format!("spec.schedulingGates[{i}].name"),
                format!("only deletion is allowed, but found new scheduling gate '{name}'"),
            ));
        }
    }
    if semantic_eq(new, old) {
        return errs;
    }
    // Set what may change back to the old values; anything left is a
    // forbidden change.
    let mut munged = new.clone();
    for key in ["containers", "initContainers"] {
        if let Some(cs) = munged.get_mut(key).and_then(Value::as_array_mut) {
            for (i, c) in cs.iter_mut().enumerate() {
                let image = list(old, key)
                    .get(i)
                    .map_or(&NULL, |oc| get(oc, "image"))
                    .clone();
                set(c, "image", image);
            }
        }
    }
    for key in ["activeDeadlineSeconds", "schedulingGates", "tolerations"] {
        set(&mut munged, key, get(old, key).clone());
    }
    if int_at(old, "terminationGracePeriodSeconds").is_some_and(|g| g < 0)
        && int_at(&munged, "terminationGracePeriodSeconds") == Some(1)
    {
        set(
            &mut munged,
            "terminationGracePeriodSeconds",
            get(old, "terminationGracePeriodSeconds").clone(),
        );
    }
    // Gated pods may still get node selectors and node affinity (the
    // additions-only rule is not checked here).
    if !list(old, "schedulingGates").is_empty() {
        set(
            &mut munged,
            "nodeSelector",
            get(old, "nodeSelector").clone(),
        );
        let old_na = get(get(old, "affinity"), "nodeAffinity").clone();
        if has(&munged, "affinity") {
            let affinity_only_node = !has(get(&munged, "affinity"), "podAffinity")
                && !has(get(&munged, "affinity"), "podAntiAffinity");
            if !has(old, "affinity") && affinity_only_node {
                set(&mut munged, "affinity", Value::Null);
            } else if let Some(a) = munged.get_mut("affinity") {
                set(a, "nodeAffinity", old_na);
            }
        } else if !old_na.is_null() {
            set(&mut munged, "affinity", json!({"nodeAffinity": old_na}));
        }
    }
    if !semantic_eq(&munged, old) {
        errs.push(FieldError::forbidden(
            "spec",
            format!(
                "pod updates may not change fields other than {}\n{}",
                UPDATABLE_POD_SPEC_FIELDS.join(","),
                spec_diff(old, &munged)
            ),
        ));
    }
    errs
}

fn set(obj: &mut Value, key: &str, value: Value) {
    if let Some(map) = obj.as_object_mut() {
        if value.is_null() {
            map.remove(key);
        } else {
            map.insert(key.to_string(), value);
        }
    }
}

fn only_added_tolerations(new: &[Value], old: &[Value]) -> Option<FieldError> {
    let strip = |t: &Value| {
        let mut t = t.clone();
        set(&mut t, "tolerationSeconds", Value::Null);
        t
    };
    let all_kept = old
        .iter()
        .all(|o| new.iter().any(|n| semantic_eq(&strip(o), &strip(n))));
    (!all_kept).then(|| {
        FieldError::forbidden(
            "spec.tolerations",
            "existing toleration can not be modified except its tolerationSeconds",
        )
    })
}

/// A short, line-per-change description of how a spec changed, in the
/// spirit of the `cmp.Diff` upstream appends (not its exact format).
fn spec_diff(old: &Value, new: &Value) -> String {
    let mut lines = Vec::new();
    diff_into(old, new, &mut String::new(), &mut lines);
    const MAX_LINES: usize = 40;
    let more = lines.len().saturating_sub(MAX_LINES);
    lines.truncate(MAX_LINES);
    if more > 0 {
        lines.push(format!("  ... // {more} more"));
    }
    format!("  v1.PodSpec{{\n{}\n  }}", lines.join("\n"))
}

fn diff_into(old: &Value, new: &Value, path: &mut String, out: &mut Vec<String>) {
    if semantic_eq(old, new) {
        return;
    }
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                diff_into(
                    a.get(k).unwrap_or(&NULL),
                    b.get(k).unwrap_or(&NULL),
                    path,
                    out,
                );
                path.truncate(len);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                diff_into(x, y, path, out);
                path.truncate(len);
            }
        }
        _ => {
            if !old.is_null() {
                out.push(format!("- \t{path}: {old},"));
            }
            if !new.is_null() {
                out.push(format!("+ \t{path}: {new},"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{msgs, only_on};
    use super::*;
    use crate::defaults;

    fn valid_pod() -> Value {
        let mut p = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "volumes": [{"name": "data"}, {"name": "cfg", "configMap": {"name": "cfg"}}],
                "containers": [{
                    "name": "web", "image": "nginx:1.27",
                    "ports": [{"name": "http", "containerPort": 80}],
                    "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "cfg", "mountPath": "/etc/cfg"}],
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "128Mi"}},
                    "livenessProbe": {"httpGet": {"port": "http"}},
                    "readinessProbe": {"tcpSocket": {"port": 80}},
                }],
            }
        });
        defaults::apply("", "Pod", &mut p);
        p
    }

    fn with(mut p: Value, pointer: &str, v: Value) -> Value {
        if let Some(slot) = p.pointer_mut(pointer) {
            *slot = v;
        } else if let Some((parent, key)) = pointer.rsplit_once('/')
            && let Some(map) = p.pointer_mut(parent).and_then(Value::as_object_mut)
        {
            map.insert(key.to_string(), v);
        }
        p
    }

    fn errs(p: &Value) -> Vec<FieldError> {
        pod(p, None)
    }

    #[test]
    fn a_defaulted_pod_is_valid() {
        assert_eq!(msgs(&errs(&valid_pod())), Vec::<String>::new());
    }

    #[test]
    fn containers_are_required() {
        let p = with(valid_pod(), "/spec/containers", json!([]));
        assert_eq!(msgs(&errs(&p)), vec!["spec.containers: Required value"]);
    }

    #[test]
    fn container_names_and_images() {
        let p = with(valid_pod(), "/spec/containers/0/name", json!("Web_1"));
        let all = errs(&p);
        let e = only_on(&all, "spec.containers[0].name");
        assert!(e.to_string().starts_with(r#"spec.containers[0].name: Invalid value: "Web_1": a lowercase RFC 1123 label must consist of"#));

        let p = with(valid_pod(), "/spec/containers/0/name", json!(""));
        assert_eq!(
            only_on(&errs(&p), "spec.containers[0].name").to_string(),
            "spec.containers[0].name: Required value"
        );

        let mut p = valid_pod();
        let c = p["spec"]["containers"][0].clone();
        p["spec"]["containers"] = json!([c.clone(), c]);
        let e = errs(&p);
        assert_eq!(
            only_on(&e, "spec.containers[1].name").to_string(),
            r#"spec.containers[1].name: Duplicate value: "web""#
        );

        let p = with(valid_pod(), "/spec/containers/0/image", json!(""));
        assert_eq!(
            msgs(&errs(&p)),
            vec!["spec.containers[0].image: Required value"]
        );

        let p = with(valid_pod(), "/spec/containers/0/image", json!(" nginx"));
        assert_eq!(
            msgs(&errs(&p)),
            vec![
                r#"spec.containers[0].image: Invalid value: " nginx": must not have leading or trailing whitespace"#
            ]
        );
    }

    #[test]
    fn ports() {
        let p = with(
            valid_pod(),
            "/spec/containers/0/ports/0",
            json!({"containerPort": 70000, "protocol": "HTTP"}),
        );
        assert_eq!(
            msgs(&errs(&p)),
            vec![
                "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                r#"spec.containers[0].ports[0].protocol: Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP""#,
            ]
        );
        let p = with(
            valid_pod(),
            "/spec/containers/0/ports/0",
            json!({"containerPort": 0, "protocol": ""}),
        );
        assert_eq!(
            msgs(&errs(&p)),
            vec![
                "spec.containers[0].ports[0].containerPort: Required value",
                "spec.containers[0].ports[0].protocol: Required value",
            ]
        );
    }

    #[test]
    fn port_names_and_host_ports() {
        let p = with(
            valid_pod(),
            "/spec/containers/0/ports",
            json!([
                {"name": "web_1", "containerPort": 80, "protocol": "TCP"},
                {"name": "a", "containerPort": 81, "protocol": "TCP", "hostPort": 8080},
                {"name": "a", "containerPort": 82, "protocol": "TCP", "hostPort": 8080},
            ]),
        );
        let e = errs(&p);
        assert_eq!(
            only_on(&e, "spec.containers[0].ports[0].name").to_string(),
            r#"spec.containers[0].ports[0].name: Invalid value: "web_1": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"#
        );
        assert_eq!(
            only_on(&e, "spec.containers[0].ports[2].name").to_string(),
            r#"spec.containers[0].ports[2].name: Duplicate value: "a""#
        );
        assert_eq!(
            only_on(&e, "spec.containers[0].ports[2].hostPort").to_string(),
            r#"spec.containers[0].ports[2].hostPort: Duplicate value: "TCP//8080""#
        );
    }

    #[test]
    fn restart_policy() {
        let p = with(valid_pod(), "/spec/restartPolicy", json!("Sometimes"));
        assert_eq!(
            msgs(&errs(&p)),
            vec![
                r#"spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never""#
            ]
        );
    }

    #[test]
    fn resources_and_quantities() {
        let p = with(
            valid_pod(),
            "/spec/containers/0/resources",
            json!({"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}),
        );
        assert_eq!(
            msgs(&errs(&p)),
            vec![
                r#"spec.containers[0].resources.requests: Invalid value: "2": must be less than or equal to cpu limit of 1"#
            ]
        );

        let p = with(
            valid_pod(),
            "/spec/containers/0/resources",
            json!({"requests": {"memory": "1Gi"}, "limits": {"memory": "1024Mi"}}),
        );
        assert!(errs(&p).is_empty());

        let p = with(
            valid_pod(),
            "/spec/containers/0/resources",
            json!({"limits": {"memory": "lots"}}),
        );
        assert_eq!(
            msgs(&errs(&p)),
            vec![
                r#"spec.containers[0].resources.limits[memory]: Invalid value: "lots": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"#
            ]
        );

        let p = with(
            valid_pod(),
            "/spec/containers/0/resources",
            json!({"requests": {"cpu": "-1"}}),
        );
        assert_eq!(
            msgs(&errs(&p)),
            vec![
                r#"spec.containers[0].resources.requests[cpu]: Invalid value: "-1": must be greater than or equal to 0"#
            ]
        );

        let p = with(
            valid_pod(),
            "/spec/containers/0/resources",
            json!({"requests": {"gpu": "1"}}),
        );
        assert_eq!(
            msgs(&errs(&p)),
            vec![
                r#"spec.containers[0].resources.requests[gpu]: Invalid value: "gpu": must be a standard resource type or fully qualified"#,
                r#"spec.containers[0].resources.requests[gpu]: Invalid value: "gpu": must be a standard resource for containers"#,
            ]
        );

        let p = with(
            valid_pod(),
            "/spec/containers/0/resources",
            json!({"requests": {"example.com/gpu": "1"}}),
        );
        assert_eq!(
            msgs(&errs(&p)),
            vec![
                "spec.containers[0].resources.limits: Required value: Limit must be set for non overcommitable resources"
            ]
        );

        let p = with(
            valid_pod(),
            "/spec/containers/0/resources",
            json!({"requests": {"example.com/gpu": "500m"}, "limits": {"example.com/gpu": "500m"}}),
        );
        assert_eq!(
            msgs(&errs(&p)),
            vec![
                r#"spec.containers[0].resources.limits[example.com/gpu]: Invalid value: "500m": must be an integer"#,
                r#"spec.containers[0].resources.requests[example.com/gpu]: Invalid value: "500m": must be an integer"#,
            ]
        );
    }

    #[test]
    fn volumes_and_mounts() {
        let p = with(valid_pod(), "/spec/volumes/1/name", json!("data"));
        let e = errs(&p);
        assert_eq!(
            only_on(&e, "spec.volumes[1].name").to_string(),
            r#"spec.volumes[1].name: Duplicate value: "data""#
        );

        let p = with(
            valid_pod(),
            "/spec/containers/0/volumeMounts/0/name",
            json!("nope"),
        );
        assert_eq!(
            msgs(&errs(&p)),
            vec![r#"spec.containers[0].volumeMounts[0].name: Not found: "nope""#]
        );

        let p = with(
            valid_pod(),
            "/spec/volumes/1",
            json!({"name": "cfg", "configMap": {"name": "c"}, "secret": {"secretName": "s"}}),
        );
        let e = errs(&p);
        assert_eq!(
            only_on(&e, "spec.volumes[1].configMap").to_string(),
            "spec.volumes[1].configMap: Forbidden: may not specify more than 1 volume type"
        );
        // the invalid volume is not mountable
        assert_eq!(
            only_on(&e, "spec.volumes[1].configMap").kind.reason(),
            "FieldValueForbidden"
        );
        assert!(
            msgs(&e).contains(
                &r#"spec.containers[0].volumeMounts[1].name: Not found: "cfg""#.to_string()
            )
        );

        let p = with(
            valid_pod(),
            "/spec/volumes/0",
            json!({"name": "data", "hostPath": {"path": "/x/../y", "type": "Dir"}}),
        );
        assert_eq!(
            msgs(&errs(&p)),
            vec![
                r#"spec.volumes[0].hostPath.path: Invalid value: "/x/../y": must not contain '..'"#,
                r#"spec.volumes[0].hostPath.type: Unsupported value: "Dir": supported values: "", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File", "FileOrCreate", "Socket""#,
                r#"spec.containers[0].volumeMounts[0].name: Not found: "data""#,
            ]
        );

        let p = with(
            valid_pod(),
            "/spec/containers/0/volumeMounts/1/mountPath",
            json!("/data"),
        );
        assert_eq!(
            msgs(&errs(&p)),
            vec![
                r#"spec.containers[0].volumeMounts[1].mountPath: Invalid value: "/data": must be unique"#
            ]
        );
    }

    #[test]
    fn env_vars() {
        let p = with(
            valid_pod(),
            "/spec/containers/0/env",
            json!([
                {"name": ""},
                {"name": "A=B", "value": "x"},
                {"name": "OK", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.bogus"}}},
                {"name": "L", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.labels['app']"}}},
                {"name": "S", "value": "x", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                {"name": "N", "valueFrom": {}},
            ]),
        );
        assert_eq!(
            msgs(&errs(&p)),
            vec![
                "spec.containers[0].env[0].name: Required value",
                r#"spec.containers[0].env[1].name: Invalid value: "A=B": a valid environment variable name must consist only of printable ASCII characters other than '='"#,
                r#"spec.containers[0].env[2].valueFrom.fieldRef.fieldPath: Unsupported value: "spec.bogus": supported values: "metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName", "spec.serviceAccountName", "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs""#,
                r#"spec.containers[0].env[4].valueFrom: Invalid value: "": may not be specified when `value` is not empty"#,
                r#"spec.containers[0].env[5].valueFrom: Invalid value: "": must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"#,
            ]
        );
    }

    #[test]
    fn probes_need_exactly_one_handler() {
        let p = with(
            valid_pod(),
            "/spec/containers/0/livenessProbe",
            json!({"periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3}),
        );
        assert_eq!(
            msgs(&errs(&p)),
            vec!["spec.containers[0].livenessProbe: Required value: must specify a handler type"]
        );

        let p = with(
            valid_pod(),
            "/spec/containers/0/readinessProbe",
            json!({"exec": {"command": ["true"]}, "tcpSocket": {"port": 80}, "successThreshold": 2}),
        );
        assert_eq!(
            msgs(&errs(&p)),
            vec![
                "spec.containers[0].readinessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type"
            ]
        );

        let p = with(
            valid_pod(),
            "/spec/containers/0/livenessProbe/successThreshold",
            json!(2),
        );
        assert_eq!(
            msgs(&errs(&p)),
            vec!["spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1"]
        );
    }

    #[test]
    fn init_containers() {
        let mut p = valid_pod();
        p["spec"]["initContainers"] = json!([{"name": "web", "image": "busybox", "imagePullPolicy": "Always",
            "terminationMessagePolicy": "File", "readinessProbe": {"exec": {"command": ["true"]}}}]);
        assert_eq!(
            msgs(&errs(&p)),
            vec![
                r#"spec.initContainers[0].name: Duplicate value: "web""#,
                "spec.initContainers[0].readinessProbe: Forbidden: may not be set for init containers without restartPolicy=Always",
            ]
        );
    }

    #[test]
    fn tolerations_and_names() {
        let p = with(
            valid_pod(),
            "/spec/tolerations",
            json!([
                {"operator": "Equal", "value": "x"},
                {"key": "k", "operator": "Exists", "value": "v", "effect": "Sometimes"},
                {"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5},
            ]),
        );
        assert_eq!(
            msgs(&errs(&p)),
            vec![
                r#"spec.tolerations[0].operator: Invalid value: "Equal": operator must be Exists when `key` is empty, which means "match all values and all keys""#,
                r#"spec.tolerations[1].operator: Invalid value: "v": value must be empty when `operator` is 'Exists'"#,
                r#"spec.tolerations[1].effect: Unsupported value: "Sometimes": supported values: "NoSchedule", "PreferNoSchedule", "NoExecute""#,
                r#"spec.tolerations[2].effect: Invalid value: "NoSchedule": effect must be 'NoExecute' when `tolerationSeconds` is set"#,
            ]
        );
        let p = with(valid_pod(), "/spec/nodeName", json!("Node_1"));
        assert_eq!(
            only_on(&errs(&p), "spec.nodeName").kind.reason(),
            "FieldValueInvalid"
        );
    }

    #[test]
    fn templates_report_labels_without_metadata() {
        let t = json!({"metadata": {"labels": {"a": "-bad"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
        let mut t2 = t.clone();
        defaults::pod::template(&mut t2);
        let e = template(&t2, "spec.template");
        assert_eq!(e.len(), 1);
        assert!(
            e[0].to_string()
                .starts_with(r#"spec.template.labels: Invalid value: "-bad""#)
        );
        // without defaults, the defaulted fields are required
        let e = template(&t, "spec.template");
        assert!(msgs(&e).contains(
            &"spec.template.spec.terminationGracePeriodSeconds: Required value".to_string()
        ));
        assert!(msgs(&e).contains(
            &"spec.template.spec.containers[0].imagePullPolicy: Required value".to_string()
        ));
    }

    #[test]
    fn updates_may_change_only_images_and_a_few_fields() {
        let old = valid_pod();
        let mut new = old.clone();
        new["spec"]["containers"][0]["image"] = json!("nginx:1.28");
        new["spec"]["activeDeadlineSeconds"] = json!(100);
        new["spec"]["tolerations"]
            .as_array_mut()
            .unwrap()
            .push(json!({"key": "x", "operator": "Exists"}));
        assert_eq!(msgs(&pod(&new, Some(&old))), Vec::<String>::new());

        let mut new = old.clone();
        new["spec"]["containers"][0]["ports"][0]["containerPort"] = json!(8080);
        let e = pod(&new, Some(&old));
        assert_eq!(e.len(), 1);
        let m = e[0].to_string();
        assert!(m.starts_with("spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n"), "{m}");
        assert!(
            m.contains("- \tcontainers[0].ports[0].containerPort: 80,"),
            "{m}"
        );
        assert!(
            m.contains("+ \tcontainers[0].ports[0].containerPort: 8080,"),
            "{m}"
        );

        let mut new = old.clone();
        new["spec"]["containers"].as_array_mut().unwrap().push(json!({"name": "b", "image": "b", "imagePullPolicy": "Always", "terminationMessagePolicy": "File"}));
        assert_eq!(
            msgs(&pod(&new, Some(&old))),
            vec!["spec.containers: Forbidden: pod updates may not add or remove containers"]
        );

        let mut new = old.clone();
        new["spec"]["tolerations"] = json!([]);
        assert_eq!(
            msgs(&pod(&new, Some(&old))),
            vec![
                "spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds"
            ]
        );

        let mut old2 = old.clone();
        old2["spec"]["activeDeadlineSeconds"] = json!(50);
        let mut new = old2.clone();
        new["spec"]["activeDeadlineSeconds"] = json!(60);
        assert_eq!(
            msgs(&pod(&new, Some(&old2))),
            vec![
                "spec.activeDeadlineSeconds: Invalid value: 60: must be less than or equal to previous value"
            ]
        );
    }

    #[test]
    fn create_only_rules() {
        let p = with(
            valid_pod(),
            "/spec/ephemeralContainers",
            json!([{"name": "debug", "image": "busybox", "imagePullPolicy": "Always", "terminationMessagePolicy": "File"}]),
        );
        assert_eq!(
            msgs(&errs(&p)),
            vec!["spec.ephemeralContainers: Forbidden: cannot be set on create"]
        );
    }
}
