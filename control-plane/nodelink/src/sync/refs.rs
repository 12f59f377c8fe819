//! What a pod makes visible to its node: the ConfigMaps and Secrets it
//! references, read from the pod's JSON without I/O.
//!
//! References counted: volumes (`configMap`, `secret`, and the `configMap` and
//! `secret` sources of `projected` volumes), container environment
//! (`valueFrom.configMapKeyRef` / `secretKeyRef`, `envFrom.configMapRef` /
//! `secretRef`) of containers, init containers and ephemeral containers, and
//! `imagePullSecrets`. Not counted (yet): ServiceAccount tokens, and the
//! `secretRef`s of in-tree and CSI volume plugins, which edge devices do not
//! run.

use kedge_proto::v1::ObjectKind;
use serde_json::Value;

/// One object of a node's view, by kind, namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub kind: ObjectKind,
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(kind: ObjectKind, namespace: &str, name: &str) -> ObjectKey {
        ObjectKey {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

/// The node a pod is bound to, if any.
pub fn pod_node(pod: &Value) -> Option<&str> {
    pod.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
}

fn str_at<'a>(v: &'a Value, path: &str) -> Option<&'a str> {
    v.pointer(path)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn array<'a>(v: &'a Value, path: &str) -> impl Iterator<Item = &'a Value> {
    v.pointer(path)
        .and_then(Value::as_array)
        .map(|a| a.iter())
        .into_iter()
        .flatten()
}

/// The ConfigMaps and Secrets a pod references, sorted and without
/// duplicates. They live in the pod's namespace.
pub fn pod_refs(pod: &Value) -> Vec<ObjectKey> {
    let ns = str_at(pod, "/metadata/namespace").unwrap_or("default");
    let mut out = Vec::new();
    let mut add = |kind: ObjectKind, name: Option<&str>| {
        if let Some(name) = name {
            out.push(ObjectKey::new(kind, ns, name));
        }
    };
    for vol in array(pod, "/spec/volumes") {
        add(ObjectKind::ConfigMap, str_at(vol, "/configMap/name"));
        add(ObjectKind::Secret, str_at(vol, "/secret/secretName"));
        for src in array(vol, "/projected/sources") {
            add(ObjectKind::ConfigMap, str_at(src, "/configMap/name"));
            add(ObjectKind::Secret, str_at(src, "/secret/name"));
        }
    }
    for list in [
        "/spec/containers",
        "/spec/initContainers",
        "/spec/ephemeralContainers",
    ] {
        for c in array(pod, list) {
            for env in array(c, "/env") {
                add(
                    ObjectKind::ConfigMap,
                    str_at(env, "/valueFrom/configMapKeyRef/name"),
                );
                add(
                    ObjectKind::Secret,
                    str_at(env, "/valueFrom/secretKeyRef/name"),
                );
            }
            for from in array(c, "/envFrom") {
                add(ObjectKind::ConfigMap, str_at(from, "/configMapRef/name"));
                add(ObjectKind::Secret, str_at(from, "/secretRef/name"));
            }
        }
    }
    for s in array(pod, "/spec/imagePullSecrets") {
        add(ObjectKind::Secret, str_at(s, "/name"));
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_kind_of_reference_is_found() {
        let pod = json!({
            "metadata": {"namespace": "apps", "name": "p"},
            "spec": {
                "nodeName": "n1",
                "volumes": [
                    {"name": "a", "configMap": {"name": "cm-vol"}},
                    {"name": "b", "secret": {"secretName": "s-vol"}},
                    {"name": "c", "projected": {"sources": [
                        {"configMap": {"name": "cm-proj"}},
                        {"secret": {"name": "s-proj"}},
                        {"serviceAccountToken": {"path": "token"}}
                    ]}},
                    {"name": "d", "emptyDir": {}}
                ],
                "containers": [{"name": "c", "env": [
                    {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm-env", "key": "k"}}},
                    {"name": "Y", "valueFrom": {"secretKeyRef": {"name": "s-env", "key": "k"}}},
                    {"name": "Z", "value": "plain"}
                ], "envFrom": [{"configMapRef": {"name": "cm-from"}}, {"secretRef": {"name": "s-from"}}]}],
                "initContainers": [{"name": "i", "envFrom": [{"secretRef": {"name": "s-init"}}]}],
                "imagePullSecrets": [{"name": "s-pull"}, {"name": "s-pull"}]
            }
        });
        let refs = pod_refs(&pod);
        assert!(refs.iter().all(|k| k.namespace == "apps"));
        let names: Vec<(ObjectKind, &str)> =
            refs.iter().map(|k| (k.kind, k.name.as_str())).collect();
        assert_eq!(
            names,
            vec![
                (ObjectKind::ConfigMap, "cm-env"),
                (ObjectKind::ConfigMap, "cm-from"),
                (ObjectKind::ConfigMap, "cm-proj"),
                (ObjectKind::ConfigMap, "cm-vol"),
                (ObjectKind::Secret, "s-env"),
                (ObjectKind::Secret, "s-from"),
                (ObjectKind::Secret, "s-init"),
                (ObjectKind::Secret, "s-proj"),
                (ObjectKind::Secret, "s-pull"),
                (ObjectKind::Secret, "s-vol"),
            ]
        );
        assert_eq!(pod_node(&pod), Some("n1"));
    }

    #[test]
    fn malformed_pods_reference_nothing() {
        for pod in [
            json!(null),
            json!("x"),
            json!({"spec": {"volumes": "nope", "containers": [1, 2]}}),
            json!({"spec": {"nodeName": ""}}),
        ] {
            assert!(pod_refs(&pod).is_empty());
            assert_eq!(pod_node(&pod), None);
        }
    }
}
