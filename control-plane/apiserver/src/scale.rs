//! The `scale` and `binding` subresources: small views onto a parent
//! object that write through to it.

use kedge_apimachinery::patch::PatchType;
use kedge_resources::catalog::ResourceInfo;
use serde_json::{Value, json};

use crate::object;
use crate::registry::{Registry, WriteOpts};
use crate::status::{ApiError, ApiResult};

/// How a scale request changes the Scale.
#[derive(Debug)]
pub enum ScaleChange {
    Replace(Value),
    Patch(PatchType, Value),
}

/// The label selector as one string, the form `Scale.status.selector` uses.
fn selector_string(selector: Option<&Value>) -> String {
    let Some(selector) = selector else {
        return String::new();
    };
    let mut parts: Vec<String> = Vec::new();
    if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in labels {
            parts.push(format!("{k}={}", v.as_str().unwrap_or_default()));
        }
    }
    if let Some(exprs) = selector.get("matchExpressions").and_then(Value::as_array) {
        for e in exprs {
            let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
            let values: Vec<&str> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|v| v.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            match e
                .get("operator")
                .and_then(Value::as_str)
                .unwrap_or_default()
            {
                "In" => parts.push(format!("{key} in ({})", values.join(","))),
                "NotIn" => parts.push(format!("{key} notin ({})", values.join(","))),
                "Exists" => parts.push(key.to_string()),
                "DoesNotExist" => parts.push(format!("!{key}")),
                _ => {}
            }
        }
    }
    parts.sort();
    parts.join(",")
}

/// The `autoscaling/v1` Scale of a Deployment, ReplicaSet or StatefulSet.
pub fn to_scale(obj: &Value) -> Value {
    let meta = object::metadata(obj);
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
            "creationTimestamp": meta.get("creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0)},
        "status": {
            "replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector_string(obj.pointer("/spec/selector")),
        },
    })
}

/// PUT or PATCH of `scale`: sets the parent's `spec.replicas`.
pub async fn update(
    registry: &Registry,
    info: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    change: ScaleChange,
    opts: &WriteOpts,
) -> ApiResult<Value> {
    for _ in 0..16 {
        let parent = registry.get(info, ns, name, None).await?;
        let current = to_scale(&parent);
        let wanted = match &change {
            ScaleChange::Replace(body) => body.clone(),
            ScaleChange::Patch(PatchType::Json, doc) => {
                kedge_apimachinery::patch::json::apply(&current, doc)
                    .map_err(crate::registry::patch_error)?
            }
            ScaleChange::Patch(PatchType::Apply, _) => {
                return Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    "server-side apply is not supported yet",
                ));
            }
            ScaleChange::Patch(_, doc) => kedge_apimachinery::patch::merge::apply(&current, doc)
                .map_err(crate::registry::patch_error)?,
        };
        let replicas = match wanted.pointer("/spec/replicas") {
            None | Some(Value::Null) => 0,
            Some(v) => match v.as_i64() {
                Some(n) if (0..=i64::from(i32::MAX)).contains(&n) => n,
                _ => {
                    return Err(ApiError::new(
                        422,
                        "Invalid",
                        format!(
                            "Scale.autoscaling \"{name}\" is invalid: spec.replicas: Invalid value: {v}: must be greater than or equal to 0"
                        ),
                    ));
                }
            },
        };
        let precondition = object::resource_version(&wanted)
            .filter(|rv| Some(*rv) != object::resource_version(&current));
        if precondition.is_some() {
            return Err(ApiError::modified(info, name));
        }
        let mut next = parent.clone();
        next["spec"]["replicas"] = json!(replicas);
        match registry.update(info, ns, name, None, next, opts).await {
            Ok(w) => return Ok(to_scale(&w.object)),
            Err(e) if e.code == 409 && e.reason == "Conflict" => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::modified(info, name))
}

/// Sets the pod's PodScheduled condition to True, keeping its transition
/// time when it already was.
fn set_pod_scheduled(pod: &mut Value, now: &str) {
    let Some(obj) = pod.as_object_mut() else {
        return;
    };
    let status = obj.entry("status").or_insert_with(|| json!({}));
    if !status.is_object() {
        *status = json!({});
    }
    let conditions = status
        .as_object_mut()
        .map(|s| s.entry("conditions").or_insert_with(|| json!([])))
        .filter(|c| c.is_array());
    let Some(Value::Array(conditions)) = conditions else {
        return;
    };
    let scheduled = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now});
    match conditions
        .iter_mut()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("PodScheduled"))
    {
        Some(c) if c.get("status").and_then(Value::as_str) == Some("True") => {}
        Some(c) => *c = scheduled,
        None => conditions.push(scheduled),
    }
}

/// POST of `pods/<name>/binding`: assigns the pod to a node, once.
pub async fn bind(
    registry: &Registry,
    info: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    binding: &Value,
    opts: &WriteOpts,
) -> ApiResult<Value> {
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                422,
                "Invalid",
                format!("Binding \"{name}\" is invalid: target.name: Required value"),
            )
        })?;
    for _ in 0..16 {
        let mut pod = registry.get(info, ns, name, None).await?;
        if object::is_deleting(&pod) {
            return Err(ApiError::conflict(
                info,
                name,
                "pod is being deleted, cannot be assigned to a host",
            ));
        }
        if let Some(existing) = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            return Err(ApiError::conflict(
                info,
                name,
                &format!("pod {name} is already assigned to node {existing:?}"),
            ));
        }
        pod["spec"]["nodeName"] = json!(node);
        // As upstream's assignPod: the PodScheduled condition becomes True
        // (replacing the scheduler's Unschedulable one).
        set_pod_scheduled(&mut pod, &object::timestamp(registry.now()));
        let written =
            crate::registry::Registry::update_spec_unchecked(registry, info, ns, name, pod, opts)
                .await;
        match written {
            Ok(_) => {
                return Ok(
                    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
                );
            }
            Err(e) if e.code == 409 && e.reason == "Conflict" => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::modified(info, name))
}

#[cfg(test)]
mod binding_tests {
    use super::*;

    #[test]
    fn binding_marks_the_pod_scheduled_once() {
        let mut pod = json!({"spec": {}, "status": {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "lastTransitionTime": "t0"}
        ]}});
        set_pod_scheduled(&mut pod, "t1");
        assert_eq!(
            pod["status"]["conditions"],
            json!([{"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": "t1"}])
        );
        set_pod_scheduled(&mut pod, "t2");
        assert_eq!(pod["status"]["conditions"][0]["lastTransitionTime"], "t1");
        let mut bare = json!({"spec": {}});
        set_pod_scheduled(&mut bare, "t3");
        assert_eq!(bare["status"]["conditions"][0]["status"], "True");
    }
}
