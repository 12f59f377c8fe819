//! The cells of each kind's row, as upstream's printers compute them.
//!
//! Numbers upstream prints as `int64` are JSON numbers here; everything
//! else is a string (or a boolean where upstream has one).

use std::collections::BTreeSet;

use kedge_apimachinery::validation::{is_qualified_name, is_valid_label_value};
use serde_json::Value;

use super::time::{ZERO_TIME, format_rfc3339, human_duration, parse_rfc3339, since};

static NULL: Value = Value::Null;

fn get<'a>(v: &'a Value, key: &str) -> &'a Value {
    v.get(key).unwrap_or(&NULL)
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn int(v: &Value, key: &str) -> i64 {
    v.get(key).and_then(Value::as_i64).unwrap_or(0)
}

fn name(obj: &Value) -> Value {
    Value::from(s(get(obj, "metadata"), "name"))
}

fn age(obj: &Value, now: i128) -> Value {
    Value::from(since(
        get(obj, "metadata")
            .get("creationTimestamp")
            .and_then(Value::as_str),
        now,
    ))
}

fn or_none(v: &str) -> &str {
    if v.is_empty() { "<none>" } else { v }
}

/// Upstream's `layoutContainerCells`: names and images, comma-separated.
fn container_cells(spec: &Value) -> [Value; 2] {
    let cs = list(spec, "containers");
    let names: Vec<&str> = cs.iter().map(|c| s(c, "name")).collect();
    let images: Vec<&str> = cs.iter().map(|c| s(c, "image")).collect();
    [Value::from(names.join(",")), Value::from(images.join(","))]
}

/// Upstream's `labels.FormatLabels`: `k=v,...` sorted, or `<none>`.
fn format_labels(labels: &Value) -> String {
    let mut pairs: Vec<String> = labels
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    pairs.sort();
    let out = pairs.join(",");
    if out.is_empty() {
        "<none>".to_string()
    } else {
        out
    }
}

/// Upstream's `LabelSelectorAsSelector(...).String()`; `None` when the
/// selector is invalid. Requirements are sorted by key, values sorted.
fn selector_string(selector: &Value) -> Option<String> {
    let Some(sel) = selector.as_object() else {
        return Some(String::new());
    };
    let valid_key = |k: &str| is_qualified_name(k).is_empty();
    let valid_value = |v: &str| is_valid_label_value(v).is_empty();
    let mut reqs: Vec<(String, String)> = Vec::new();
    for (k, v) in sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let v = v.as_str().unwrap_or("");
        if !valid_key(k) || !valid_value(v) {
            return None;
        }
        reqs.push((k.clone(), format!("{k}={v}")));
    }
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = s(e, "key");
        let mut values: Vec<&str> = list(e, "values").iter().filter_map(Value::as_str).collect();
        if !valid_key(key) || !values.iter().all(|v| valid_value(v)) {
            return None;
        }
        values.sort_unstable();
        let text = match s(e, "operator") {
            "In" | "NotIn" if values.is_empty() => return None,
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" | "DoesNotExist" if !values.is_empty() => return None,
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => return None,
        };
        reqs.push((key.to_string(), text));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    let parts: Vec<String> = reqs.into_iter().map(|(_, t)| t).collect();
    Some(parts.join(","))
}

/// Upstream's `metav1.FormatLabelSelector`: `<none>` when empty,
/// `<error>` when invalid.
fn format_label_selector(selector: &Value) -> String {
    match selector_string(selector) {
        None => "<error>".to_string(),
        Some(s) if s.is_empty() => "<none>".to_string(),
        Some(s) => s,
    }
}

/// Upstream's default table: the name and the creation time.
pub(super) fn default(obj: &Value) -> Vec<Value> {
    let created = get(obj, "metadata")
        .get("creationTimestamp")
        .and_then(Value::as_str)
        .and_then(parse_rfc3339)
        .map_or_else(|| ZERO_TIME.to_string(), format_rfc3339);
    vec![name(obj), Value::from(created)]
}

// --- Pod ---

fn has_condition(status: &Value, kind: &str) -> bool {
    list(status, "conditions")
        .iter()
        .any(|c| s(c, "type") == kind && s(c, "status") == "True")
}

fn finished_at(cs: &Value) -> Option<i128> {
    cs.pointer("/lastState/terminated/finishedAt")
        .and_then(Value::as_str)
        .and_then(parse_rfc3339)
}

/// Upstream's `printPod`: READY, the STATUS reason logic, RESTARTS with
/// the time of the last restart, and the wide cells.
pub(super) fn pod(obj: &Value, now: i128) -> Vec<Value> {
    let spec = get(obj, "spec");
    let status = get(obj, "status");
    let mut restarts: i64 = 0;
    let mut restartable_restarts: i64 = 0;
    let mut total = list(spec, "containers").len();
    let mut ready = 0usize;
    let mut last_restart: Option<i128> = None;
    let mut last_restartable_restart: Option<i128> = None;
    let phase = s(status, "phase");
    let mut reason = phase.to_string();
    if !s(status, "reason").is_empty() {
        reason = s(status, "reason").to_string();
    }
    if list(status, "conditions")
        .iter()
        .any(|c| s(c, "type") == "PodScheduled" && s(c, "reason") == "SchedulingGated")
    {
        reason = "SchedulingGated".to_string();
    }
    let init_containers = list(spec, "initContainers");
    let restartable = |name: &str| {
        init_containers
            .iter()
            .any(|c| s(c, "name") == name && s(c, "restartPolicy") == "Always")
    };
    total += init_containers
        .iter()
        .filter(|c| s(c, "restartPolicy") == "Always")
        .count();

    let mut initializing = false;
    for (i, cs) in list(status, "initContainerStatuses").iter().enumerate() {
        let count = int(cs, "restartCount");
        restarts += count;
        let finished = finished_at(cs);
        if finished > last_restart {
            last_restart = finished;
        }
        let is_restartable = restartable(s(cs, "name"));
        if is_restartable {
            restartable_restarts += count;
            if finished > last_restartable_restart {
                last_restartable_restart = finished;
            }
        }
        let state = get(cs, "state");
        let terminated = get(state, "terminated");
        let waiting = get(state, "waiting");
        if !terminated.is_null() && int(terminated, "exitCode") == 0 {
            continue;
        }
        if is_restartable && get(cs, "started").as_bool() == Some(true) {
            if get(cs, "ready").as_bool() == Some(true) {
                ready += 1;
            }
            continue;
        }
        if !terminated.is_null() {
            reason = if s(terminated, "reason").is_empty() {
                if int(terminated, "signal") != 0 {
                    format!("Init:Signal:{}", int(terminated, "signal"))
                } else {
                    format!("Init:ExitCode:{}", int(terminated, "exitCode"))
                }
            } else {
                format!("Init:{}", s(terminated, "reason"))
            };
        } else if !s(waiting, "reason").is_empty() && s(waiting, "reason") != "PodInitializing" {
            reason = format!("Init:{}", s(waiting, "reason"));
        } else {
            reason = format!("Init:{i}/{}", init_containers.len());
        }
        initializing = true;
        break;
    }

    if !initializing || has_condition(status, "Initialized") {
        restarts = restartable_restarts;
        last_restart = last_restartable_restart;
        let mut has_running = false;
        for cs in list(status, "containerStatuses").iter().rev() {
            restarts += int(cs, "restartCount");
            let finished = finished_at(cs);
            if finished > last_restart {
                last_restart = finished;
            }
            let state = get(cs, "state");
            let waiting = get(state, "waiting");
            let terminated = get(state, "terminated");
            if !s(waiting, "reason").is_empty() {
                reason = s(waiting, "reason").to_string();
            } else if !s(terminated, "reason").is_empty() {
                reason = s(terminated, "reason").to_string();
            } else if !terminated.is_null() {
                reason = if int(terminated, "signal") != 0 {
                    format!("Signal:{}", int(terminated, "signal"))
                } else {
                    format!("ExitCode:{}", int(terminated, "exitCode"))
                };
            } else if get(cs, "ready").as_bool() == Some(true) && !get(state, "running").is_null() {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if has_condition(status, "Ready") {
                "Running".to_string()
            } else {
                "NotReady".to_string()
            };
        }
    }

    let deleting = get(obj, "metadata")
        .get("deletionTimestamp")
        .is_some_and(|v| !v.is_null());
    if deleting && s(status, "reason") == "NodeLost" {
        reason = "Unknown".to_string();
    } else if deleting && phase != "Failed" && phase != "Succeeded" {
        reason = "Terminating".to_string();
    }

    let restarts_cell = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", human_duration(now - t)),
        _ => restarts.to_string(),
    };

    let pod_ip = list(status, "podIPs").first().map_or("", |ip| s(ip, "ip"));
    let gates = list(spec, "readinessGates");
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let conditions = list(status, "conditions");
        let true_count = gates
            .iter()
            .filter(|g| {
                conditions
                    .iter()
                    .find(|c| s(c, "type") == s(g, "conditionType"))
                    .is_some_and(|c| s(c, "status") == "True")
            })
            .count();
        format!("{true_count}/{}", gates.len())
    };
    vec![
        name(obj),
        Value::from(format!("{ready}/{total}")),
        Value::from(reason),
        Value::from(restarts_cell),
        age(obj, now),
        Value::from(or_none(pod_ip)),
        Value::from(or_none(s(spec, "nodeName"))),
        Value::from(or_none(s(status, "nominatedNodeName"))),
        Value::from(readiness_gates),
    ]
}

// --- workloads ---

pub(super) fn deployment(obj: &Value, now: i128) -> Vec<Value> {
    let spec = get(obj, "spec");
    let status = get(obj, "status");
    let selector = selector_string(get(spec, "selector")).unwrap_or_else(|| "<invalid>".into());
    let [names, images] = container_cells(get(get(spec, "template"), "spec"));
    vec![
        name(obj),
        Value::from(format!(
            "{}/{}",
            int(status, "readyReplicas"),
            int(spec, "replicas")
        )),
        Value::from(int(status, "updatedReplicas")),
        Value::from(int(status, "availableReplicas")),
        age(obj, now),
        names,
        images,
        Value::from(selector),
    ]
}

pub(super) fn replica_set(obj: &Value, now: i128) -> Vec<Value> {
    let spec = get(obj, "spec");
    let status = get(obj, "status");
    let [names, images] = container_cells(get(get(spec, "template"), "spec"));
    vec![
        name(obj),
        Value::from(int(spec, "replicas")),
        Value::from(int(status, "replicas")),
        Value::from(int(status, "readyReplicas")),
        age(obj, now),
        names,
        images,
        Value::from(format_label_selector(get(spec, "selector"))),
    ]
}

pub(super) fn daemon_set(obj: &Value, now: i128) -> Vec<Value> {
    let spec = get(obj, "spec");
    let status = get(obj, "status");
    let template_spec = get(get(spec, "template"), "spec");
    let [names, images] = container_cells(template_spec);
    vec![
        name(obj),
        Value::from(int(status, "desiredNumberScheduled")),
        Value::from(int(status, "currentNumberScheduled")),
        Value::from(int(status, "numberReady")),
        Value::from(int(status, "updatedNumberScheduled")),
        Value::from(int(status, "numberAvailable")),
        Value::from(format_labels(get(template_spec, "nodeSelector"))),
        age(obj, now),
        names,
        images,
        Value::from(format_label_selector(get(spec, "selector"))),
    ]
}

pub(super) fn stateful_set(obj: &Value, now: i128) -> Vec<Value> {
    let spec = get(obj, "spec");
    let status = get(obj, "status");
    let [names, images] = container_cells(get(get(spec, "template"), "spec"));
    vec![
        name(obj),
        Value::from(format!(
            "{}/{}",
            int(status, "readyReplicas"),
            int(spec, "replicas")
        )),
        age(obj, now),
        names,
        images,
    ]
}

/// Upstream's `formatResourceName` of the controlling owner: `<none>` or
/// `daemonset.apps/name`.
pub(super) fn controller_revision(obj: &Value, now: i128) -> Vec<Value> {
    let controller = list(get(obj, "metadata"), "ownerReferences")
        .iter()
        .find(|r| get(r, "controller").as_bool() == Some(true))
        .map_or_else(
            || "<none>".to_string(),
            |r| {
                let api_version = s(r, "apiVersion");
                let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
                let kind = s(r, "kind");
                let group_kind = if group.is_empty() {
                    kind.to_string()
                } else {
                    format!("{kind}.{group}")
                };
                if group_kind.is_empty() {
                    s(r, "name").to_string()
                } else {
                    format!("{}/{}", group_kind.to_lowercase(), s(r, "name"))
                }
            },
        );
    vec![
        name(obj),
        Value::from(controller),
        Value::from(int(obj, "revision")),
        age(obj, now),
    ]
}

fn has_true_condition(status: &Value, kind: &str) -> bool {
    list(status, "conditions")
        .iter()
        .find(|c| s(c, "type") == kind)
        .is_some_and(|c| s(c, "status") == "True")
}

pub(super) fn job(obj: &Value, now: i128) -> Vec<Value> {
    let spec = get(obj, "spec");
    let status = get(obj, "status");
    let succeeded = int(status, "succeeded");
    let completions = match spec.get("completions").and_then(Value::as_i64) {
        Some(c) => format!("{succeeded}/{c}"),
        None => {
            let parallelism = int(spec, "parallelism");
            if parallelism > 1 {
                format!("{succeeded}/1 of {parallelism}")
            } else {
                format!("{succeeded}/1")
            }
        }
    };
    let start = status
        .get("startTime")
        .and_then(Value::as_str)
        .and_then(parse_rfc3339);
    let end = status
        .get("completionTime")
        .and_then(Value::as_str)
        .and_then(parse_rfc3339);
    let duration = match (start, end) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(now - start),
        (Some(start), Some(end)) => human_duration(end - start),
    };
    let deleting = get(obj, "metadata")
        .get("deletionTimestamp")
        .is_some_and(|v| !v.is_null());
    let job_status = if has_true_condition(status, "Complete") {
        "Complete"
    } else if has_true_condition(status, "Failed") {
        "Failed"
    } else if deleting {
        "Terminating"
    } else if has_true_condition(status, "Suspended") {
        "Suspended"
    } else if has_true_condition(status, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let [names, images] = container_cells(get(get(spec, "template"), "spec"));
    vec![
        name(obj),
        Value::from(job_status),
        Value::from(completions),
        Value::from(duration),
        age(obj, now),
        names,
        images,
        Value::from(format_label_selector(get(spec, "selector"))),
    ]
}

fn bool_ptr(v: &Value) -> &'static str {
    match v.as_bool() {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    }
}

pub(super) fn cron_job(obj: &Value, now: i128) -> Vec<Value> {
    let spec = get(obj, "spec");
    let status = get(obj, "status");
    let last = match status.get("lastScheduleTime").and_then(Value::as_str) {
        Some(t) => since(Some(t), now),
        None => "<none>".to_string(),
    };
    let job_spec = get(get(spec, "jobTemplate"), "spec");
    let [names, images] = container_cells(get(get(job_spec, "template"), "spec"));
    vec![
        name(obj),
        Value::from(s(spec, "schedule")),
        Value::from(or_none(s(spec, "timeZone"))),
        Value::from(bool_ptr(get(spec, "suspend"))),
        Value::from(list(status, "active").len()),
        Value::from(last),
        age(obj, now),
        names,
        images,
        Value::from(format_label_selector(get(job_spec, "selector"))),
    ]
}

// --- services and endpoints ---

/// Upstream's `getServiceExternalIP` (wide, so never clipped).
fn service_external_ip(spec: &Value, status: &Value) -> String {
    let external: Vec<&str> = list(spec, "externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    match s(spec, "type") {
        "ClusterIP" | "NodePort" => {
            if external.is_empty() {
                "<none>".to_string()
            } else {
                external.join(",")
            }
        }
        "LoadBalancer" => {
            let ingress: BTreeSet<&str> = list(get(status, "loadBalancer"), "ingress")
                .iter()
                .filter_map(|i| {
                    let ip = s(i, "ip");
                    let host = s(i, "hostname");
                    if !ip.is_empty() {
                        Some(ip)
                    } else if !host.is_empty() {
                        Some(host)
                    } else {
                        None
                    }
                })
                .collect();
            let mut all: Vec<&str> = ingress.into_iter().collect();
            if all.is_empty() && external.is_empty() {
                return "<pending>".to_string();
            }
            all.extend(external);
            all.join(",")
        }
        "ExternalName" => s(spec, "externalName").to_string(),
        _ => "<unknown>".to_string(),
    }
}

pub(super) fn service(obj: &Value, now: i128) -> Vec<Value> {
    let spec = get(obj, "spec");
    let cluster_ip = list(spec, "clusterIPs")
        .first()
        .and_then(Value::as_str)
        .unwrap_or_else(|| s(spec, "clusterIP"));
    let ports: Vec<String> = list(spec, "ports")
        .iter()
        .map(|p| {
            let node_port = int(p, "nodePort");
            if node_port > 0 {
                format!("{}:{node_port}/{}", int(p, "port"), s(p, "protocol"))
            } else {
                format!("{}/{}", int(p, "port"), s(p, "protocol"))
            }
        })
        .collect();
    let ports = ports.join(",");
    vec![
        name(obj),
        Value::from(s(spec, "type")),
        Value::from(or_none(cluster_ip)),
        Value::from(service_external_ip(spec, get(obj, "status"))),
        Value::from(or_none(&ports)),
        age(obj, now),
        Value::from(format_labels(get(spec, "selector"))),
    ]
}

/// Upstream's `formatEndpoints`: up to three `ip:port`, then `+ N more...`.
fn format_endpoints(obj: &Value) -> String {
    let subsets = list(obj, "subsets");
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    const MAX: usize = 3;
    let mut shown: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0usize;
    for ss in subsets {
        let addresses = list(ss, "addresses");
        let ports = list(ss, "ports");
        if ports.is_empty() {
            count += addresses.len();
            for a in addresses {
                if shown.len() == MAX {
                    more = true;
                    break;
                }
                shown.push(s(a, "ip").to_string());
            }
            continue;
        }
        for p in ports {
            count += addresses.len();
            for a in addresses {
                if shown.len() == MAX {
                    more = true;
                    break;
                }
                let ip = s(a, "ip");
                let port = int(p, "port");
                // Go's net.JoinHostPort brackets IPv6 addresses.
                shown.push(if ip.contains(':') {
                    format!("[{ip}]:{port}")
                } else {
                    format!("{ip}:{port}")
                });
            }
        }
    }
    let joined = shown.join(",");
    if more {
        format!("{joined} + {} more...", count.saturating_sub(MAX))
    } else {
        joined
    }
}

pub(super) fn endpoints(obj: &Value, now: i128) -> Vec<Value> {
    vec![name(obj), Value::from(format_endpoints(obj)), age(obj, now)]
}

/// Upstream's `listWithMoreString`.
fn list_with_more(shown: &[String], more: bool, count: usize) -> String {
    let joined = shown.join(",");
    if more {
        return format!("{joined} + {} more...", count.saturating_sub(3));
    }
    if joined.is_empty() {
        "<unset>".to_string()
    } else {
        joined
    }
}

pub(super) fn endpoint_slice(obj: &Value, now: i128) -> Vec<Value> {
    let mut ports = Vec::new();
    let mut more = false;
    let mut count = 0;
    for p in list(obj, "ports") {
        if ports.len() < 3 {
            ports.push(
                match (
                    p.get("port").and_then(Value::as_i64),
                    p.get("name").and_then(Value::as_str),
                ) {
                    (Some(n), _) => n.to_string(),
                    (None, Some(name)) => name.to_string(),
                    (None, None) => "*".to_string(),
                },
            );
        } else if ports.len() == 3 {
            more = true;
        }
        count += 1;
    }
    let ports = list_with_more(&ports, more, count);
    let mut addresses = Vec::new();
    let mut more = false;
    let mut count = 0;
    for ep in list(obj, "endpoints") {
        for a in list(ep, "addresses") {
            if addresses.len() < 3 {
                addresses.push(a.as_str().unwrap_or("").to_string());
            } else if addresses.len() == 3 {
                more = true;
            }
            count += 1;
        }
    }
    let addresses = list_with_more(&addresses, more, count);
    vec![
        name(obj),
        Value::from(s(obj, "addressType")),
        Value::from(ports),
        Value::from(addresses),
        age(obj, now),
    ]
}

// --- cluster objects ---

pub(super) fn node(obj: &Value, now: i128) -> Vec<Value> {
    let spec = get(obj, "spec");
    let status = get(obj, "status");
    let mut parts: Vec<String> = Vec::new();
    if let Some(c) = list(status, "conditions")
        .iter()
        .rev()
        .find(|c| s(c, "type") == "Ready")
    {
        parts.push(if s(c, "status") == "True" {
            "Ready".to_string()
        } else {
            "NotReady".to_string()
        });
    }
    if parts.is_empty() {
        parts.push("Unknown".to_string());
    }
    if get(spec, "unschedulable").as_bool() == Some(true) {
        parts.push("SchedulingDisabled".to_string());
    }
    let mut roles = BTreeSet::new();
    for (k, v) in get(get(obj, "metadata"), "labels")
        .as_object()
        .into_iter()
        .flatten()
    {
        if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
            if !role.is_empty() {
                roles.insert(role.to_string());
            }
        } else if k == "kubernetes.io/role" && !v.as_str().unwrap_or("").is_empty() {
            roles.insert(v.as_str().unwrap_or("").to_string());
        }
    }
    let roles: Vec<String> = roles.into_iter().collect();
    let roles = roles.join(",");
    let address = |kind: &str| {
        list(status, "addresses")
            .iter()
            .find(|a| s(a, "type") == kind)
            .map_or("<none>", |a| s(a, "address"))
            .to_string()
    };
    let info = get(status, "nodeInfo");
    let unknown = |v: &str| {
        if v.is_empty() {
            "<unknown>".to_string()
        } else {
            v.to_string()
        }
    };
    vec![
        name(obj),
        Value::from(parts.join(",")),
        Value::from(or_none(&roles)),
        age(obj, now),
        Value::from(s(info, "kubeletVersion")),
        Value::from(address("InternalIP")),
        Value::from(address("ExternalIP")),
        Value::from(unknown(s(info, "osImage"))),
        Value::from(unknown(s(info, "kernelVersion"))),
        Value::from(unknown(s(info, "containerRuntimeVersion"))),
    ]
}

pub(super) fn namespace(obj: &Value, now: i128) -> Vec<Value> {
    vec![
        name(obj),
        Value::from(s(get(obj, "status"), "phase")),
        age(obj, now),
    ]
}

fn map_len(v: &Value) -> usize {
    v.as_object().map_or(0, serde_json::Map::len)
}

pub(super) fn config_map(obj: &Value, now: i128) -> Vec<Value> {
    let n = map_len(get(obj, "data")) + map_len(get(obj, "binaryData"));
    vec![name(obj), Value::from(n), age(obj, now)]
}

pub(super) fn secret(obj: &Value, now: i128) -> Vec<Value> {
    vec![
        name(obj),
        Value::from(s(obj, "type")),
        Value::from(map_len(get(obj, "data"))),
        age(obj, now),
    ]
}

pub(super) fn service_account(obj: &Value, now: i128) -> Vec<Value> {
    vec![
        name(obj),
        Value::from(list(obj, "secrets").len()),
        age(obj, now),
    ]
}

pub(super) fn lease(obj: &Value, now: i128) -> Vec<Value> {
    vec![
        name(obj),
        Value::from(s(get(obj, "spec"), "holderIdentity")),
        age(obj, now),
    ]
}

/// Upstream's `printEvent` (wide): events.k8s.io events are read through
/// their core names (`regarding` for `involvedObject`, `note` for
/// `message`, the `deprecated*` fields).
pub(super) fn event(obj: &Value, now: i128, events_api: bool) -> Vec<Value> {
    let field = |core: &'static str, events: &'static str| if events_api { events } else { core };
    let involved = get(obj, field("involvedObject", "regarding"));
    let source = get(obj, field("source", "deprecatedSource"));
    let reporting_controller = s(obj, field("reportingComponent", "reportingController"));
    let event_time = obj.get("eventTime").and_then(Value::as_str);
    let first = match obj
        .get(field("firstTimestamp", "deprecatedFirstTimestamp"))
        .and_then(Value::as_str)
    {
        Some(t) => since(Some(t), now),
        None => since(event_time, now),
    };
    let mut last = match obj
        .get(field("lastTimestamp", "deprecatedLastTimestamp"))
        .and_then(Value::as_str)
    {
        Some(t) => since(Some(t), now),
        None => first.clone(),
    };
    let mut count = int(obj, field("count", "deprecatedCount"));
    let series = get(obj, "series");
    if !series.is_null() {
        last = since(series.get("lastObservedTime").and_then(Value::as_str), now);
        count = int(series, "count");
    } else if count == 0 {
        count = 1;
    }
    let kind = s(involved, "kind").to_lowercase();
    let target = if s(involved, "name").is_empty() {
        kind
    } else {
        format!("{kind}/{}", s(involved, "name"))
    };
    let component = if s(source, "component").is_empty() {
        reporting_controller
    } else {
        s(source, "component")
    };
    let instance = if s(source, "host").is_empty() {
        s(obj, "reportingInstance")
    } else {
        s(source, "host")
    };
    let source = if instance.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {instance}")
    };
    vec![
        Value::from(last),
        Value::from(s(obj, "type")),
        Value::from(s(obj, "reason")),
        Value::from(target),
        Value::from(s(involved, "fieldPath")),
        Value::from(source),
        Value::from(s(obj, field("message", "note")).trim()),
        Value::from(first),
        Value::from(count),
        name(obj),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::{columns, row};
    use super::*;
    use serde_json::json;
    use std::time::{Duration, SystemTime};

    /// 2024-05-01T12:00:00Z
    const T0: u64 = 1_714_564_800;

    fn at(secs_after_t0: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(T0 + secs_after_t0)
    }

    fn meta(name: &str) -> Value {
        json!({"name": name, "namespace": "default", "creationTimestamp": "2024-05-01T12:00:00Z"})
    }

    fn cells(group: &str, kind: &str, obj: &Value, now: SystemTime) -> Vec<Value> {
        let r = row(group, kind, obj, now);
        assert_eq!(r.len(), columns(group, kind).len());
        r
    }

    fn pod_with(status: Value, spec: Value) -> Value {
        json!({"metadata": meta("web"), "spec": spec, "status": status})
    }

    fn status_of(p: &Value) -> (String, String, String) {
        let c = cells("", "Pod", p, at(3600));
        (
            c[1].as_str().unwrap().to_string(),
            c[2].as_str().unwrap().to_string(),
            c[3].as_str().unwrap().to_string(),
        )
    }

    #[test]
    fn pods() {
        let spec = json!({"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "edge-1"});
        let running = pod_with(
            json!({"phase": "Running", "podIPs": [{"ip": "10.0.0.5"}],
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 0, "state": {"running": {}}},
                {"name": "b", "ready": true, "restartCount": 3, "state": {"running": {}},
                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T12:55:00Z"}}},
            ]}),
            spec.clone(),
        );
        assert_eq!(
            cells("", "Pod", &running, at(3600)),
            vec![
                json!("web"),
                json!("2/2"),
                json!("Running"),
                json!("3 (5m ago)"),
                json!("60m"),
                json!("10.0.0.5"),
                json!("edge-1"),
                json!("<none>"),
                json!("<none>"),
            ]
        );

        let pending = pod_with(
            json!({"phase": "Pending"}),
            json!({"containers": [{"name": "a"}]}),
        );
        assert_eq!(
            status_of(&pending),
            ("0/1".into(), "Pending".into(), "0".into())
        );
        let c = cells("", "Pod", &pending, at(5));
        assert_eq!(
            c[5..],
            [
                json!("<none>"),
                json!("<none>"),
                json!("<none>"),
                json!("<none>")
            ]
        );

        let creating = pod_with(
            json!({"phase": "Pending", "containerStatuses": [
            {"name": "a", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
            json!({"containers": [{"name": "a"}]}),
        );
        assert_eq!(status_of(&creating).1, "ContainerCreating");

        let crash = pod_with(
            json!({"phase": "Running", "containerStatuses": [
            {"name": "a", "ready": false, "restartCount": 7, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
             "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T12:59:30Z"}}}]}),
            json!({"containers": [{"name": "a"}]}),
        );
        assert_eq!(
            status_of(&crash),
            (
                "0/1".into(),
                "CrashLoopBackOff".into(),
                "7 (30s ago)".into()
            )
        );

        let completed = pod_with(
            json!({"phase": "Succeeded", "containerStatuses": [
            {"name": "a", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
            json!({"containers": [{"name": "a"}]}),
        );
        assert_eq!(status_of(&completed).1, "Completed");

        let killed = pod_with(
            json!({"phase": "Failed", "containerStatuses": [
            {"name": "a", "restartCount": 0, "state": {"terminated": {"exitCode": 137, "signal": 9}}}]}),
            json!({"containers": [{"name": "a"}]}),
        );
        assert_eq!(status_of(&killed).1, "Signal:9");

        let init = pod_with(
            json!({"phase": "Pending", "initContainerStatuses": [
            {"name": "i1", "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
            {"name": "i2", "restartCount": 0, "state": {"running": {}}}]}),
            json!({"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "a"}]}),
        );
        assert_eq!(status_of(&init).1, "Init:1/2");

        let init_failed = pod_with(
            json!({"phase": "Pending", "initContainerStatuses": [
            {"name": "i1", "restartCount": 2, "state": {"terminated": {"exitCode": 3}}}]}),
            json!({"initContainers": [{"name": "i1"}], "containers": [{"name": "a"}]}),
        );
        assert_eq!(
            status_of(&init_failed),
            ("0/1".into(), "Init:ExitCode:3".into(), "2".into())
        );

        let init_backoff = pod_with(
            json!({"phase": "Pending", "initContainerStatuses": [
            {"name": "i1", "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}),
            json!({"initContainers": [{"name": "i1"}], "containers": [{"name": "a"}]}),
        );
        assert_eq!(status_of(&init_backoff).1, "Init:CrashLoopBackOff");

        // a restartable init container (sidecar) counts as a container
        let sidecar = pod_with(
            json!({"phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}],
            "initContainerStatuses": [{"name": "s", "ready": true, "started": true, "restartCount": 1, "state": {"running": {}}}],
            "containerStatuses": [{"name": "a", "ready": true, "restartCount": 0, "state": {"running": {}}}]}),
            json!({"initContainers": [{"name": "s", "restartPolicy": "Always"}], "containers": [{"name": "a"}]}),
        );
        assert_eq!(
            status_of(&sidecar),
            ("2/2".into(), "Running".into(), "1".into())
        );

        let mut terminating = running.clone();
        terminating["metadata"]["deletionTimestamp"] = json!("2024-05-01T12:59:00Z");
        assert_eq!(status_of(&terminating).1, "Terminating");
        let mut lost = terminating.clone();
        lost["status"]["reason"] = json!("NodeLost");
        assert_eq!(status_of(&lost).1, "Unknown");

        let gated = pod_with(
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
            json!({"containers": [{"name": "a"}], "readinessGates": [{"conditionType": "x"}, {"conditionType": "y"}]}),
        );
        assert_eq!(status_of(&gated).1, "SchedulingGated");
        assert_eq!(cells("", "Pod", &gated, at(1))[8], json!("0/2"));

        let evicted = pod_with(
            json!({"phase": "Failed", "reason": "Evicted"}),
            json!({"containers": [{"name": "a"}]}),
        );
        assert_eq!(status_of(&evicted).1, "Evicted");
    }

    #[test]
    fn deployments_and_replica_sets() {
        let d = json!({"metadata": meta("web"), "spec": {"replicas": 3,
            "selector": {"matchLabels": {"app": "web", "tier": "fe"}, "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]}]},
            "template": {"spec": {"containers": [{"name": "web", "image": "nginx"}, {"name": "log", "image": "fluentd"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        assert_eq!(
            cells("apps", "Deployment", &d, at(2 * 86400 + 3 * 3600)),
            vec![
                json!("web"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("2d3h"),
                json!("web,log"),
                json!("nginx,fluentd"),
                json!("app=web,env in (dev,prod),tier=fe"),
            ]
        );
        let rs = json!({"metadata": meta("web-abc"), "spec": {"replicas": 3, "selector": {}, "template": {}},
            "status": {"replicas": 3, "readyReplicas": 1}});
        assert_eq!(
            cells("apps", "ReplicaSet", &rs, at(30)),
            vec![
                json!("web-abc"),
                json!(3),
                json!(3),
                json!(1),
                json!("30s"),
                json!(""),
                json!(""),
                json!("<none>"),
            ]
        );
        let bad =
            json!({"spec": {"selector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}}});
        assert_eq!(
            cells("apps", "ReplicaSet", &bad, at(0))[7],
            json!("<error>")
        );
        assert_eq!(
            cells("apps", "Deployment", &bad, at(0))[7],
            json!("<invalid>")
        );
    }

    #[test]
    fn daemon_sets_stateful_sets_revisions() {
        let ds = json!({"metadata": meta("agent"), "spec": {"selector": {"matchLabels": {"app": "agent"}},
            "template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}, "containers": [{"name": "a", "image": "a:1"}]}}},
            "status": {"desiredNumberScheduled": 4, "currentNumberScheduled": 4, "numberReady": 3, "updatedNumberScheduled": 4, "numberAvailable": 3}});
        assert_eq!(
            cells("apps", "DaemonSet", &ds, at(600)),
            vec![
                json!("agent"),
                json!(4),
                json!(4),
                json!(3),
                json!(4),
                json!(3),
                json!("kubernetes.io/os=linux"),
                json!("10m"),
                json!("a"),
                json!("a:1"),
                json!("app=agent"),
            ]
        );
        let sts = json!({"metadata": meta("db"), "spec": {"replicas": 3}, "status": {"readyReplicas": 1}});
        assert_eq!(cells("apps", "StatefulSet", &sts, at(61))[1], json!("1/3"));
        let cr = json!({"metadata": {"name": "agent-5d8f", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "controller": true}]}, "revision": 2});
        assert_eq!(
            cells("apps", "ControllerRevision", &cr, at(0)),
            vec![
                json!("agent-5d8f"),
                json!("daemonset.apps/agent"),
                json!(2),
                json!("<unknown>"),
            ]
        );
        let orphan = json!({"metadata": {"name": "x"}, "revision": 1});
        assert_eq!(
            cells("apps", "ControllerRevision", &orphan, at(0))[1],
            json!("<none>")
        );
    }

    #[test]
    fn jobs_and_cron_jobs() {
        let running = json!({"metadata": meta("pi"), "spec": {"completions": 1, "parallelism": 1},
            "status": {"startTime": "2024-05-01T12:00:10Z", "active": 1}});
        assert_eq!(
            cells("batch", "Job", &running, at(70))[1..4],
            [json!("Running"), json!("0/1"), json!("60s")]
        );
        let done = json!({"metadata": meta("pi"), "spec": {"completions": 3},
            "status": {"startTime": "2024-05-01T12:00:00Z", "completionTime": "2024-05-01T12:03:02Z", "succeeded": 3,
                "conditions": [{"type": "Complete", "status": "True"}]}});
        assert_eq!(
            cells("batch", "Job", &done, at(3600))[1..4],
            [json!("Complete"), json!("3/3"), json!("3m2s")]
        );
        let work_queue = json!({"spec": {"parallelism": 4}, "status": {"conditions": [{"type": "Failed", "status": "True"}]}});
        assert_eq!(
            cells("batch", "Job", &work_queue, at(0))[1..4],
            [json!("Failed"), json!("0/1 of 4"), json!("")]
        );
        let suspended = json!({"spec": {}, "status": {"conditions": [{"type": "Suspended", "status": "True"}]}});
        assert_eq!(
            cells("batch", "Job", &suspended, at(0))[1],
            json!("Suspended")
        );

        let cj = json!({"metadata": meta("tick"), "spec": {"schedule": "*/5 * * * *", "suspend": false,
            "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "t", "image": "busybox"}]}}}}},
            "status": {"active": [{"name": "tick-1"}], "lastScheduleTime": "2024-05-01T12:55:00Z"}});
        assert_eq!(
            cells("batch", "CronJob", &cj, at(3600)),
            vec![
                json!("tick"),
                json!("*/5 * * * *"),
                json!("<none>"),
                json!("False"),
                json!(1),
                json!("5m"),
                json!("60m"),
                json!("t"),
                json!("busybox"),
                json!("<none>"),
            ]
        );
    }

    #[test]
    fn services() {
        let svc = json!({"metadata": meta("web"), "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
            "selector": {"app": "web"}, "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}});
        assert_eq!(
            cells("", "Service", &svc, at(45)),
            vec![
                json!("web"),
                json!("ClusterIP"),
                json!("10.96.0.10"),
                json!("<none>"),
                json!("80/TCP,53/UDP"),
                json!("45s"),
                json!("app=web"),
            ]
        );
        let np = json!({"spec": {"type": "NodePort", "clusterIPs": ["10.96.0.11"], "externalIPs": ["192.0.2.1"],
            "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]}});
        let c = cells("", "Service", &np, at(0));
        assert_eq!(
            (c[3].clone(), c[4].clone(), c[6].clone()),
            (json!("192.0.2.1"), json!("80:30080/TCP"), json!("<none>"))
        );
        let lb =
            json!({"spec": {"type": "LoadBalancer", "ports": []}, "status": {"loadBalancer": {}}});
        let c = cells("", "Service", &lb, at(0));
        assert_eq!(
            (c[2].clone(), c[3].clone(), c[4].clone()),
            (json!("<none>"), json!("<pending>"), json!("<none>"))
        );
        let lb2 = json!({"spec": {"type": "LoadBalancer", "externalIPs": ["198.51.100.9"]},
            "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}, {"hostname": "lb.example.com"}]}}});
        assert_eq!(
            cells("", "Service", &lb2, at(0))[3],
            json!("203.0.113.7,lb.example.com,198.51.100.9")
        );
        let ext = json!({"spec": {"type": "ExternalName", "externalName": "db.example.com"}});
        assert_eq!(
            cells("", "Service", &ext, at(0))[3],
            json!("db.example.com")
        );
    }

    #[test]
    fn endpoints_and_slices() {
        let ep = json!({"metadata": meta("web"), "subsets": [
            {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}, {"port": 443}]}]});
        assert_eq!(
            cells("", "Endpoints", &ep, at(0))[1],
            json!("10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more...")
        );
        assert_eq!(
            cells("", "Endpoints", &json!({}), at(0))[1],
            json!("<none>")
        );
        let v6 = json!({"subsets": [{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]}]});
        assert_eq!(cells("", "Endpoints", &v6, at(0))[1], json!("[fd00::1]:80"));
        let headless = json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}]}]});
        assert_eq!(
            cells("", "Endpoints", &headless, at(0))[1],
            json!("10.0.0.1")
        );

        let slice = json!({"metadata": meta("web-x"), "addressType": "IPv4",
            "ports": [{"name": "http", "port": 80}, {"name": "named"}, {}],
            "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2", "10.0.0.3", "10.0.0.4"]}]});
        assert_eq!(
            cells("discovery.k8s.io", "EndpointSlice", &slice, at(0)),
            vec![
                json!("web-x"),
                json!("IPv4"),
                json!("80,named,*"),
                json!("10.0.0.1,10.0.0.2,10.0.0.3 + 1 more..."),
                json!("0s"),
            ]
        );
        let empty = json!({"addressType": "IPv4"});
        assert_eq!(
            cells("discovery.k8s.io", "EndpointSlice", &empty, at(0))[2..4],
            [json!("<unset>"), json!("<unset>")]
        );
    }

    #[test]
    fn nodes() {
        let n = json!({"metadata": {"name": "edge-1", "creationTimestamp": "2024-05-01T12:00:00Z",
                "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/edge": "", "kubernetes.io/role": "worker"}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}, {"type": "Hostname", "address": "edge-1"}],
                "nodeInfo": {"kubeletVersion": "v1.32.0", "osImage": "Debian GNU/Linux 12", "kernelVersion": "6.1.0",
                    "containerRuntimeVersion": "containerd://1.7.20"}}});
        assert_eq!(
            cells("", "Node", &n, at(9 * 86400)),
            vec![
                json!("edge-1"),
                json!("Ready,SchedulingDisabled"),
                json!("control-plane,edge,worker"),
                json!("9d"),
                json!("v1.32.0"),
                json!("192.168.1.10"),
                json!("<none>"),
                json!("Debian GNU/Linux 12"),
                json!("6.1.0"),
                json!("containerd://1.7.20"),
            ]
        );
        let bare = json!({"metadata": {"name": "edge-2"}});
        assert_eq!(
            cells("", "Node", &bare, at(0)),
            vec![
                json!("edge-2"),
                json!("Unknown"),
                json!("<none>"),
                json!("<unknown>"),
                json!(""),
                json!("<none>"),
                json!("<none>"),
                json!("<unknown>"),
                json!("<unknown>"),
                json!("<unknown>"),
            ]
        );
        let not_ready = json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
        assert_eq!(cells("", "Node", &not_ready, at(0))[1], json!("NotReady"));
    }

    #[test]
    fn small_kinds() {
        let ns = json!({"metadata": {"name": "team-a", "creationTimestamp": "2024-05-01T12:00:00Z"}, "status": {"phase": "Active"}});
        assert_eq!(
            cells("", "Namespace", &ns, at(7200)),
            vec![json!("team-a"), json!("Active"), json!("120m")]
        );
        let cm = json!({"metadata": meta("cfg"), "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
        assert_eq!(cells("", "ConfigMap", &cm, at(0))[1], json!(3));
        let secret = json!({"metadata": meta("s"), "type": "Opaque", "data": {"a": "eA=="}});
        assert_eq!(
            cells("", "Secret", &secret, at(0))[1..3],
            [json!("Opaque"), json!(1)]
        );
        let sa = json!({"metadata": meta("default")});
        assert_eq!(cells("", "ServiceAccount", &sa, at(0))[1], json!(0));
        let lease = json!({"metadata": meta("edge-1"), "spec": {"holderIdentity": "edge-1"}});
        assert_eq!(
            cells("coordination.k8s.io", "Lease", &lease, at(0))[1],
            json!("edge-1")
        );
    }

    #[test]
    fn events() {
        let ev = json!({"metadata": meta("web.17"), "type": "Warning", "reason": "BackOff",
            "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{web}"},
            "source": {"component": "kubelet", "host": "edge-1"}, "message": "Back-off restarting failed container\n",
            "firstTimestamp": "2024-05-01T12:00:00Z", "lastTimestamp": "2024-05-01T12:09:00Z", "count": 12});
        assert_eq!(
            cells("", "Event", &ev, at(600)),
            vec![
                json!("60s"),
                json!("Warning"),
                json!("BackOff"),
                json!("pod/web"),
                json!("spec.containers{web}"),
                json!("kubelet, edge-1"),
                json!("Back-off restarting failed container"),
                json!("10m"),
                json!(12),
                json!("web.17"),
            ]
        );
        let new_api = json!({"metadata": meta("web.18"), "type": "Normal", "reason": "Scheduled",
            "regarding": {"kind": "Pod", "name": "web"}, "note": "assigned", "eventTime": "2024-05-01T12:00:00.000000Z",
            "reportingController": "default-scheduler", "reportingInstance": ""});
        assert_eq!(
            cells("events.k8s.io", "Event", &new_api, at(5)),
            vec![
                json!("5s"),
                json!("Normal"),
                json!("Scheduled"),
                json!("pod/web"),
                json!(""),
                json!("default-scheduler"),
                json!("assigned"),
                json!("5s"),
                json!(1),
                json!("web.18"),
            ]
        );
        let series = json!({"type": "Normal", "involvedObject": {"kind": "Node"}, "eventTime": "2024-05-01T12:00:00.000000Z",
            "series": {"count": 4, "lastObservedTime": "2024-05-01T12:00:50.000000Z"}});
        let c = cells("", "Event", &series, at(60));
        assert_eq!(
            (c[0].clone(), c[3].clone(), c[8].clone()),
            (json!("10s"), json!("node"), json!(4))
        );
    }

    #[test]
    fn selector_strings() {
        assert_eq!(selector_string(&json!(null)), Some(String::new()));
        assert_eq!(
            selector_string(&json!({"matchExpressions": [
            {"key": "b", "operator": "Exists"}, {"key": "a", "operator": "DoesNotExist"}, {"key": "c", "operator": "NotIn", "values": ["y", "x"]}]})),
            Some("!a,b,c notin (x,y)".to_string())
        );
        assert_eq!(
            selector_string(
                &json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]})
            ),
            None
        );
        assert_eq!(format_labels(&json!({})), "<none>");
        assert_eq!(format_labels(&json!({"b": "2", "a": "1"})), "a=1,b=2");
    }
}
