//! Validation of the served types, as upstream's registry strategies run it
//! (`pkg/apis/*/validation`), with upstream's field paths and messages.
//!
//! [`validate`] is called with the object after defaulting, and on update
//! with the stored object as `old`. It covers object metadata for every
//! type and the rules behind the common mistakes for each served kind; see
//! the submodules for what each checks and what is left out.
//!
//! Works on `serde_json::Value` of any shape: a field of the wrong type is
//! treated as absent and nothing panics.
//!
//! - [`pod`]: pod specs (pods and every pod template) and pod updates.
//! - [`workloads`]: Deployments, ReplicaSets, DaemonSets, StatefulSets,
//!   ControllerRevisions, Jobs, CronJobs.
//! - [`core`]: Services, ConfigMaps, Secrets, Namespaces, Nodes,
//!   Endpoints, ServiceAccounts, Events, Leases, EndpointSlices.
//! - [`quantity`]: resource quantities; [`cron`]: cron schedules.

use kedge_apimachinery::field::{ErrorKind, FieldError};
use kedge_apimachinery::validation::{NameRule, validate_object_meta, validate_object_meta_update};
use serde_json::Value;

use crate::catalog;

pub mod core;
pub mod cron;
pub mod pod;
pub mod quantity;
pub mod workloads;

pub(crate) static NULL: Value = Value::Null;

/// Validates `obj`, an object of `kind` in `group` (`""` for core); `old`
/// is the stored object on update. Returns every problem found, in
/// upstream's order where it matters; empty means valid.
///
/// On update the metadata is checked as upstream's
/// `ValidateObjectMetaUpdate` does (immutable name, namespace, uid, ...)
/// rather than re-validated from scratch.
///
/// Kinds kedge does not serve get the generic registry checks only (a name
/// usable in a URL, labels, annotations).
pub fn validate(group: &str, kind: &str, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let meta = get(obj, "metadata");
    let Some(info) = catalog::RESOURCES
        .iter()
        .find(|r| r.group == group && r.kind == kind)
    else {
        return match old {
            Some(old) => validate_object_meta_update(meta, get(old, "metadata")),
            None => {
                let namespaced = !str_at(meta, "namespace").is_empty();
                validate_object_meta(meta, namespaced, NameRule::PathSegment)
            }
        };
    };
    // Core events are validated leniently, for old clients; see
    // [`core::event`].
    if (group, kind) == ("", "Event") {
        return core::event(obj, old, false);
    }
    let mut errs = match old {
        None => validate_object_meta(meta, info.namespaced, name_rule(group, kind)),
        Some(old) => validate_object_meta_update(meta, get(old, "metadata")),
    };
    errs.extend(match (group, kind) {
        ("", "Pod") => pod::pod(obj, old),
        ("", "Service") => core::service(obj, old),
        ("", "ConfigMap") => core::config_map(obj, old),
        ("", "Secret") => core::secret(obj, old),
        ("", "Namespace") => core::namespace(obj, old),
        ("", "Node") => core::node(obj, old),
        ("", "Endpoints") => core::endpoints(obj),
        ("events.k8s.io", "Event") => core::event(obj, old, true),
        ("coordination.k8s.io", "Lease") => core::lease(obj),
        ("discovery.k8s.io", "EndpointSlice") => core::endpoint_slice(obj, old),
        ("apps", "Deployment") => workloads::deployment(obj, old),
        ("apps", "ReplicaSet") => workloads::replica_set(obj, old),
        ("apps", "DaemonSet") => workloads::daemon_set(obj, old),
        ("apps", "StatefulSet") => workloads::stateful_set(obj, old),
        ("apps", "ControllerRevision") => workloads::controller_revision(obj, old),
        ("batch", "Job") => workloads::job(obj, old),
        ("batch", "CronJob") => workloads::cron_job(obj, old),
        _ => Vec::new(),
    });
    errs
}

/// Which rule the names of a kind follow upstream.
pub fn name_rule(group: &str, kind: &str) -> NameRule {
    match (group, kind) {
        ("", "Namespace") | ("apps", "StatefulSet") => NameRule::Dns1123Label,
        ("", "Service") => NameRule::Dns1035Label,
        _ => NameRule::Dns1123Subdomain,
    }
}

// --- reading values of any shape ---

/// `v[key]`, or null.
pub(crate) fn get<'a>(v: &'a Value, key: &str) -> &'a Value {
    v.get(key).unwrap_or(&NULL)
}

/// The string at `key`, or `""`.
pub(crate) fn str_at<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The list at `key`, or an empty one.
pub(crate) fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The integer at `key`, if any.
pub(crate) fn int_at(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(Value::as_i64)
}

/// Whether `key` holds something other than null.
pub(crate) fn has(v: &Value, key: &str) -> bool {
    v.get(key).is_some_and(|x| !x.is_null())
}

// --- errors whose value upstream prints as a Go value ---

/// An `Invalid value` error whose value is already rendered.
pub(crate) fn invalid_raw(
    field: impl Into<String>,
    rendered: impl Into<String>,
    detail: impl Into<String>,
) -> FieldError {
    FieldError {
        kind: ErrorKind::Invalid,
        field: field.into(),
        value: Some(rendered.into()),
        detail: detail.into(),
    }
}

/// A `map[string]string` as Go's `%#v` prints it, keys sorted.
pub(crate) fn go_string_map(v: &Value) -> String {
    match v.as_object() {
        Some(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| format!("{:?}:{:?}", k, m[k.as_str()].as_str().unwrap_or("")))
                .collect();
            format!("map[string]string{{{}}}", parts.join(", "))
        }
        _ => "map[string]string(nil)".to_string(),
    }
}

/// A `[]string` as Go's `%#v` prints it.
pub(crate) fn go_string_slice(v: &Value) -> String {
    match v.as_array() {
        Some(a) => {
            let parts: Vec<String> = a
                .iter()
                .map(|s| format!("{:?}", s.as_str().unwrap_or("")))
                .collect();
            format!("[]string{{{}}}", parts.join(", "))
        }
        None => "[]string(nil)".to_string(),
    }
}

/// An `intstr.IntOrString` as Go's `%#v` prints it.
pub(crate) fn go_int_or_string(v: &Value) -> String {
    match v {
        Value::String(s) => format!("intstr.IntOrString{{Type:1, IntVal:0, StrVal:{s:?}}}"),
        other => format!(
            "intstr.IntOrString{{Type:0, IntVal:{}, StrVal:\"\"}}",
            other.as_i64().unwrap_or(0)
        ),
    }
}

/// A `metav1.LabelSelector` as Go's `%#v` prints it, the way upstream's
/// `spec.selector: Invalid value: v1.LabelSelector{...}: field is
/// immutable` shows it.
pub(crate) fn go_label_selector(v: &Value) -> String {
    let exprs = match v.get("matchExpressions").and_then(Value::as_array) {
        Some(list) => {
            let parts: Vec<String> = list
                .iter()
                .map(|e| {
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{:?}, Operator:{:?}, Values:{}}}",
                        str_at(e, "key"),
                        str_at(e, "operator"),
                        go_string_slice(get(e, "values"))
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", parts.join(", "))
        }
        None => "[]v1.LabelSelectorRequirement(nil)".to_string(),
    };
    format!(
        "v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{}}}",
        go_string_map(get(v, "matchLabels")),
        exprs
    )
}

#[cfg(test)]
pub(crate) mod testutil {
    use kedge_apimachinery::field::FieldError;

    /// Every error as upstream prints it.
    pub fn msgs(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    /// Asserts that exactly one error is on `field`, and returns it.
    #[track_caller]
    pub fn only_on<'a>(errs: &'a [FieldError], field: &str) -> &'a FieldError {
        let on: Vec<&FieldError> = errs.iter().filter(|e| e.field == field).collect();
        assert_eq!(on.len(), 1, "errors on {field}: {:?}", msgs(errs));
        on[0]
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::msgs;
    use super::*;
    use serde_json::json;

    #[test]
    fn go_renderings() {
        assert_eq!(
            go_string_map(&json!({"b": "2", "a": "1"})),
            r#"map[string]string{"a":"1", "b":"2"}"#
        );
        assert_eq!(go_string_map(&json!(null)), "map[string]string(nil)");
        assert_eq!(go_string_map(&json!({})), "map[string]string{}");
        assert_eq!(
            go_label_selector(&json!({"matchLabels": {"app": "web"}})),
            r#"v1.LabelSelector{MatchLabels:map[string]string{"app":"web"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}"#
        );
        assert_eq!(
            go_label_selector(
                &json!({"matchExpressions": [{"key": "a", "operator": "In", "values": ["x"]}]})
            ),
            r#"v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement{v1.LabelSelectorRequirement{Key:"a", Operator:"In", Values:[]string{"x"}}}}"#
        );
    }

    #[test]
    fn name_rules_per_kind() {
        let ns = json!({"metadata": {"name": "a.b"}});
        let errs = validate("", "Namespace", &ns, None);
        assert_eq!(
            msgs(&errs),
            vec![r#"metadata.name: Invalid value: "a.b": must not contain dots"#]
        );
        let cm = json!({"metadata": {"name": "a.b", "namespace": "default"}});
        assert!(validate("", "ConfigMap", &cm, None).is_empty());
        let svc = json!({"metadata": {"name": "1abc", "namespace": "default"},
            "spec": {"type": "ClusterIP", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster",
                "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]}});
        let errs = validate("", "Service", &svc, None);
        assert_eq!(errs.len(), 1);
        assert!(errs[0].detail.starts_with("a DNS-1035 label"));
        assert_eq!(name_rule("apps", "StatefulSet"), NameRule::Dns1123Label);
    }

    #[test]
    fn unknown_kinds_get_the_generic_checks() {
        let obj = json!({"metadata": {"name": "a/b"}});
        let errs = validate("example.com", "Widget", &obj, None);
        assert_eq!(
            msgs(&errs),
            vec![r#"metadata.name: Invalid value: "a/b": may not contain '/'"#]
        );
        let obj = json!({"metadata": {"name": "Any_Name", "namespace": "x"}});
        assert!(validate("example.com", "Widget", &obj, None).is_empty());
    }

    #[test]
    fn metadata_update_rules_apply_to_every_kind() {
        let old =
            json!({"metadata": {"name": "a", "namespace": "default", "uid": "1"}, "data": {}});
        let new =
            json!({"metadata": {"name": "a", "namespace": "default", "uid": "2"}, "data": {}});
        let errs = validate("", "ConfigMap", &new, Some(&old));
        assert_eq!(
            msgs(&errs),
            vec![r#"metadata.uid: Invalid value: "2": field is immutable"#]
        );
    }

    #[test]
    fn any_shape_is_safe() {
        let shapes = [
            json!(null),
            json!("x"),
            json!({"metadata": 1, "spec": [], "data": "x", "status": 2}),
            json!({"metadata": {"name": "a", "namespace": "b"}, "spec": {"containers": [1, null, {"ports": [null, "x"], "env": [1], "resources": {"limits": {"cpu": 1}}}],
                "template": {"spec": {"containers": "x"}}, "selector": "x", "ports": [1, {"port": "x"}],
                "jobTemplate": 1, "schedule": 5, "volumes": [{"name": 1}]}, "subsets": [1], "endpoints": [1], "data": {"a": 1}}),
        ];
        for r in catalog::RESOURCES {
            for s in &shapes {
                let _ = validate(r.group, r.kind, s, None);
                let _ = validate(r.group, r.kind, s, Some(s));
                let _ = validate(r.group, r.kind, s, Some(&json!(null)));
            }
        }
    }
}
