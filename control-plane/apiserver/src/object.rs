//! Reading and writing the metadata of objects held as JSON.

use std::collections::BTreeMap;
use std::time::SystemTime;

use kedge_resources::catalog::ResourceInfo;
use serde_json::{Map, Value, json};

pub fn metadata(obj: &Value) -> &Value {
    obj.get("metadata").unwrap_or(&Value::Null)
}

/// `metadata`, created as `{}` when absent or not an object.
pub fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = json!({});
    }
    let map = obj.as_object_mut().expect("made an object above");
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    meta.as_object_mut().expect("made an object above")
}

pub fn str_field<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut v = obj;
    for p in path {
        v = v.get(p)?;
    }
    v.as_str()
}

pub fn name(obj: &Value) -> Option<&str> {
    str_field(obj, &["metadata", "name"]).filter(|s| !s.is_empty())
}

pub fn namespace(obj: &Value) -> Option<&str> {
    str_field(obj, &["metadata", "namespace"]).filter(|s| !s.is_empty())
}

pub fn uid(obj: &Value) -> Option<&str> {
    str_field(obj, &["metadata", "uid"]).filter(|s| !s.is_empty())
}

pub fn resource_version(obj: &Value) -> Option<&str> {
    str_field(obj, &["metadata", "resourceVersion"]).filter(|s| !s.is_empty())
}

pub fn labels(obj: &Value) -> BTreeMap<String, String> {
    metadata(obj)
        .get("labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

pub fn finalizers(obj: &Value) -> Vec<String> {
    metadata(obj)
        .get("finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub fn is_deleting(obj: &Value) -> bool {
    metadata(obj)
        .get("deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

pub fn set_resource_version(obj: &mut Value, revision: i64) {
    metadata_mut(obj).insert("resourceVersion".into(), json!(revision.to_string()));
}

/// Sets `apiVersion` and `kind` to those of `info`.
pub fn set_type_meta(obj: &mut Value, info: &ResourceInfo) {
    if let Value::Object(map) = obj {
        map.insert("kind".into(), json!(info.kind));
        map.insert("apiVersion".into(), json!(info.group_version()));
    }
}

/// RFC 3339 in UTC with second precision, as `metav1.Time` marshals.
pub fn timestamp(t: SystemTime) -> String {
    match jiff::Timestamp::try_from(t) {
        Ok(ts) => ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        Err(_) => "1970-01-01T00:00:00Z".to_string(),
    }
}

/// The value of a field selector's field, for the fields upstream supports
/// on each type. `Err` names an unsupported field.
pub fn field_value(
    info: &ResourceInfo,
    obj: &Value,
    field: &str,
) -> Result<Option<String>, String> {
    let s = |path: &[&str]| str_field(obj, path).map(str::to_string);
    match field {
        "metadata.name" => return Ok(s(&["metadata", "name"])),
        "metadata.namespace" => return Ok(s(&["metadata", "namespace"])),
        _ => {}
    }
    let value = match (info.group, info.kind, field) {
        ("", "Pod", "spec.nodeName") => s(&["spec", "nodeName"]),
        ("", "Pod", "spec.restartPolicy") => s(&["spec", "restartPolicy"]),
        ("", "Pod", "spec.schedulerName") => s(&["spec", "schedulerName"]),
        ("", "Pod", "spec.serviceAccountName") => s(&["spec", "serviceAccountName"]),
        ("", "Pod", "spec.hostNetwork") => Some(
            obj.pointer("/spec/hostNetwork")
                .and_then(Value::as_bool)
                .unwrap_or(false)
                .to_string(),
        ),
        ("", "Pod", "status.phase") => s(&["status", "phase"]),
        ("", "Pod", "status.podIP") => s(&["status", "podIP"]),
        ("", "Pod", "status.nominatedNodeName") => s(&["status", "nominatedNodeName"]),
        ("", "Node", "spec.unschedulable") => Some(
            obj.pointer("/spec/unschedulable")
                .and_then(Value::as_bool)
                .unwrap_or(false)
                .to_string(),
        ),
        ("", "Namespace", "status.phase") => s(&["status", "phase"]),
        ("", "Secret", "type") => s(&["type"]),
        ("", "Service", "spec.clusterIP") => s(&["spec", "clusterIP"]),
        ("", "Service", "spec.type") => s(&["spec", "type"]),
        ("", "Event", f) if f.starts_with("involvedObject.") => {
            s(&["involvedObject", f.trim_start_matches("involvedObject.")])
        }
        ("", "Event", "reason") => s(&["reason"]),
        ("", "Event", "reportingComponent") => s(&["reportingComponent"]),
        ("", "Event", "source") => s(&["source", "component"]),
        ("", "Event", "type") => s(&["type"]),
        ("events.k8s.io", "Event", f) if f.starts_with("regarding.") => {
            s(&["regarding", f.trim_start_matches("regarding.")])
        }
        ("events.k8s.io", "Event", "reason") => s(&["reason"]),
        ("events.k8s.io", "Event", "type") => s(&["type"]),
        ("events.k8s.io", "Event", "reportingController") => s(&["reportingController"]),
        ("apps", "ReplicaSet", "status.replicas") => Some(
            obj.pointer("/status/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                .to_string(),
        ),
        ("batch", "Job", "status.successful") => Some(
            obj.pointer("/status/succeeded")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                .to_string(),
        ),
        _ => return Err(format!("field label not supported: {field}")),
    };
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kedge_resources::catalog;
    use std::time::Duration;

    #[test]
    fn timestamps_are_rfc3339_seconds() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_500);
        assert_eq!(timestamp(t), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn type_meta_is_set() {
        let deploy = catalog::find("apps", "v1", "deployments").unwrap();
        let mut v = json!({"metadata": {"name": "a"}, "kind": "Wrong"});
        set_type_meta(&mut v, deploy);
        assert_eq!(v["kind"], "Deployment");
        assert_eq!(v["apiVersion"], "apps/v1");
    }

    #[test]
    fn field_selectors_read_pod_fields() {
        let pods = catalog::find("", "v1", "pods").unwrap();
        let pod = json!({"metadata": {"name": "p", "namespace": "n"}, "spec": {"nodeName": "a"}, "status": {"phase": "Running"}});
        assert_eq!(
            field_value(pods, &pod, "spec.nodeName").unwrap().as_deref(),
            Some("a")
        );
        assert_eq!(
            field_value(pods, &pod, "status.phase").unwrap().as_deref(),
            Some("Running")
        );
        assert_eq!(
            field_value(pods, &pod, "metadata.namespace")
                .unwrap()
                .as_deref(),
            Some("n")
        );
        assert!(field_value(pods, &pod, "spec.bogus").is_err());
    }
}
