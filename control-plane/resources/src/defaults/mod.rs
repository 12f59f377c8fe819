//! Defaulting: the fields upstream fills in when a client leaves them out.
//!
//! Upstream runs the generated defaulters of each API version
//! (`pkg/apis/core/v1/defaults.go`, `pkg/apis/apps/v1/defaults.go`,
//! `pkg/apis/batch/v1/defaults.go`, `pkg/apis/discovery/v1/defaults.go`)
//! when it decodes a request, and a few admission plugins add more to pods
//! (`DefaultTolerationSeconds`, `Priority`, `ServiceAccount`). `kubectl get
//! -o yaml` shows all of it, so [`apply`] does the same.
//!
//! Works directly on the `serde_json::Value` the apiserver holds, after
//! [`crate::typed::normalize`]: a field of an unexpected shape is left alone,
//! nothing panics. Every default is idempotent, so applying twice is
//! harmless.
//!
//! - [`pod`]: pod specs, containers, probes, volumes, and the pod-only
//!   defaults.
//! - [`workloads`]: Deployments, ReplicaSets, DaemonSets, StatefulSets,
//!   Jobs, CronJobs.
//! - [`core`]: Services, Secrets, Namespaces, Nodes, Endpoints,
//!   EndpointSlices.

use serde_json::{Map, Value};

use crate::validate::quantity::Quantity;

pub mod core;
pub mod pod;
pub mod workloads;

/// Fills in upstream's defaults on `obj`, an object of `kind` in `group`
/// (`""` for core). Kinds without defaults are left as they are.
pub fn apply(group: &str, kind: &str, obj: &mut Value) {
    match (group, kind) {
        ("", "Pod") => pod::pod(obj),
        ("", "Service") => core::service(obj),
        ("", "Secret") => core::secret(obj),
        ("", "Namespace") => core::namespace(obj),
        ("", "Node") => core::node(obj),
        ("", "Endpoints") => core::endpoints(obj),
        ("discovery.k8s.io", "EndpointSlice") => core::endpoint_slice(obj),
        ("apps", "Deployment") => workloads::deployment(obj),
        ("apps", "ReplicaSet") => workloads::replica_set(obj),
        ("apps", "DaemonSet") => workloads::daemon_set(obj),
        ("apps", "StatefulSet") => workloads::stateful_set(obj),
        ("batch", "Job") => workloads::job(obj),
        ("batch", "CronJob") => workloads::cron_job(obj),
        _ => {}
    }
}

/// The object at `key` of `parent`, created empty when absent or null.
/// `None` when `parent` is not an object or `key` holds something else.
pub(crate) fn child<'a>(parent: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    let map = parent.as_object_mut()?;
    let slot = map
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if slot.is_null() {
        *slot = Value::Object(Map::new());
    }
    slot.is_object().then_some(slot)
}

/// The object at `key` of `parent` if it exists (never created).
pub(crate) fn existing<'a>(parent: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    parent.get_mut(key).filter(|v| v.is_object())
}

/// Each element of the list at `key`, if there is one.
pub(crate) fn each<'a>(parent: &'a mut Value, key: &str) -> impl Iterator<Item = &'a mut Value> {
    parent
        .get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
}

/// Whether `key` is unset the way Go sees a zero value: absent, null, or
/// an empty string.
pub(crate) fn unset(obj: &Value, key: &str) -> bool {
    match obj.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(_) => false,
    }
}

/// Sets `key` to `value` when it is [`unset`].
pub(crate) fn default(obj: &mut Value, key: &str, value: Value) {
    if unset(obj, key)
        && let Some(map) = obj.as_object_mut()
    {
        map.insert(key.to_string(), value);
    }
}

/// Upstream's `SetDefaults_ResourceList` and quantity serialization: every
/// quantity in the list at `key` is rounded up to milli precision and
/// written in canonical form (`1024Mi` is `1Gi`, `0.5` is `500m`).
/// Unparseable values are left for validation to report.
pub(crate) fn resource_list(holder: &mut Value, key: &str) {
    let Some(list) = holder.get_mut(key).and_then(Value::as_object_mut) else {
        return;
    };
    for v in list.values_mut() {
        if let Some(c) = canonical_quantity(v, true) {
            *v = Value::String(c);
        }
    }
}

/// The canonical form of a quantity given as a string or a number.
pub(crate) fn canonical_quantity(v: &Value, round_to_milli: bool) -> Option<String> {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let q = Quantity::parse(&text).ok()?;
    let q = if round_to_milli { q.round_up(-3) } else { q };
    Some(q.canonical())
}

/// The string at `key`, or `""`.
pub(crate) fn str_at<'a>(obj: &'a Value, key: &str) -> &'a str {
    obj.get(key).and_then(Value::as_str).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn helpers_leave_odd_shapes_alone() {
        let mut v = json!({"a": 5, "b": null, "s": ""});
        assert!(child(&mut v, "a").is_none());
        assert!(child(&mut v, "b").is_some());
        default(&mut v, "s", json!("x"));
        default(&mut v, "a", json!(6));
        assert_eq!(v, json!({"a": 5, "b": {}, "s": "x"}));
        let mut not_obj = json!([1]);
        default(&mut not_obj, "k", json!(1));
        assert!(child(&mut not_obj, "k").is_none());
        assert_eq!(not_obj, json!([1]));
    }

    #[test]
    fn resource_lists_are_canonical() {
        let mut v = json!({"limits": {"cpu": "0.5", "memory": "1024Mi", "x": 2, "bad": "lots", "tiny": "0.1m"}});
        resource_list(&mut v, "limits");
        assert_eq!(
            v,
            json!({"limits": {"cpu": "500m", "memory": "1Gi", "x": "2", "bad": "lots", "tiny": "1m"}})
        );
        let mut odd = json!({"limits": [1]});
        resource_list(&mut odd, "limits");
        assert_eq!(odd, json!({"limits": [1]}));
    }

    #[test]
    fn unknown_kinds_are_untouched() {
        let mut v = json!({"metadata": {"name": "x"}});
        apply("", "ConfigMap", &mut v);
        apply("example.com", "Widget", &mut v);
        assert_eq!(v, json!({"metadata": {"name": "x"}}));
    }

    #[test]
    fn any_input_shape_is_safe() {
        let kinds = [
            ("", "Pod"),
            ("", "Service"),
            ("", "Secret"),
            ("", "Namespace"),
            ("", "Node"),
            ("", "Endpoints"),
            ("discovery.k8s.io", "EndpointSlice"),
            ("apps", "Deployment"),
            ("apps", "ReplicaSet"),
            ("apps", "DaemonSet"),
            ("apps", "StatefulSet"),
            ("batch", "Job"),
            ("batch", "CronJob"),
        ];
        let shapes = [
            json!(null),
            json!(1),
            json!([]),
            json!({"spec": 1, "metadata": []}),
            json!({"spec": {"template": 1, "containers": [1, null, {"ports": "x"}], "ports": [1],
                "jobTemplate": {"spec": []}, "volumes": [{"secret": 1}]},
                "subsets": [1, {"ports": [null]}], "ports": {}}),
        ];
        for (g, k) in kinds {
            for s in &shapes {
                let mut v = s.clone();
                apply(g, k, &mut v);
                let once = v.clone();
                apply(g, k, &mut v);
                assert_eq!(v, once, "{k} not idempotent");
            }
        }
    }
}
