//! Decoding into the k8s-openapi type and back.
//!
//! Upstream decodes every request body into its Go struct, which drops
//! fields the type does not have. Doing the same here through the
//! k8s-openapi structs gives the same normalised object, and comparing it
//! with the input tells which fields were unknown (for
//! `fieldValidation=Strict` and `Warn`).

use k8s_openapi::api::{apps, batch, coordination, core, discovery, events};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use crate::catalog::ResourceInfo;

/// A body decoded through its type.
#[derive(Clone, Debug, PartialEq)]
pub struct Decoded {
    /// The object as the type sees it: unknown fields gone, nulls dropped.
    pub object: Value,
    /// Paths of the fields the type does not know, upstream style:
    /// `spec.foo`, `spec.containers[0].bar`.
    pub unknown_fields: Vec<String>,
}

/// The body does not fit the type (a string where a list belongs, ...).
#[derive(Debug, thiserror::Error)]
#[error("{kind} in version \"{version}\" cannot be handled as a {kind}: {detail}")]
pub struct DecodeError {
    pub kind: String,
    pub version: String,
    pub detail: String,
}

/// Decodes `value` as the type of `info` and re-encodes it.
pub fn normalize(info: &ResourceInfo, value: Value) -> Result<Decoded, DecodeError> {
    match (info.group, info.kind) {
        ("", "Namespace") => roundtrip::<core::v1::Namespace>(info, value),
        ("", "Pod") => roundtrip::<core::v1::Pod>(info, value),
        ("", "Node") => roundtrip::<core::v1::Node>(info, value),
        ("", "Service") => roundtrip::<core::v1::Service>(info, value),
        ("", "Endpoints") => roundtrip::<core::v1::Endpoints>(info, value),
        ("", "ConfigMap") => roundtrip::<core::v1::ConfigMap>(info, value),
        ("", "Secret") => roundtrip::<core::v1::Secret>(info, value),
        ("", "ServiceAccount") => roundtrip::<core::v1::ServiceAccount>(info, value),
        ("", "Event") => roundtrip::<core::v1::Event>(info, value),
        ("apps", "Deployment") => roundtrip::<apps::v1::Deployment>(info, value),
        ("apps", "ReplicaSet") => roundtrip::<apps::v1::ReplicaSet>(info, value),
        ("apps", "DaemonSet") => roundtrip::<apps::v1::DaemonSet>(info, value),
        ("apps", "StatefulSet") => roundtrip::<apps::v1::StatefulSet>(info, value),
        ("apps", "ControllerRevision") => roundtrip::<apps::v1::ControllerRevision>(info, value),
        ("batch", "Job") => roundtrip::<batch::v1::Job>(info, value),
        ("batch", "CronJob") => roundtrip::<batch::v1::CronJob>(info, value),
        ("coordination.k8s.io", "Lease") => roundtrip::<coordination::v1::Lease>(info, value),
        ("discovery.k8s.io", "EndpointSlice") => {
            roundtrip::<discovery::v1::EndpointSlice>(info, value)
        }
        ("events.k8s.io", "Event") => roundtrip::<events::v1::Event>(info, value),
        _ => Err(DecodeError {
            kind: info.kind.to_string(),
            version: info.version.to_string(),
            detail: "no type is registered for this kind".to_string(),
        }),
    }
}

fn roundtrip<T: Serialize + DeserializeOwned>(
    info: &ResourceInfo,
    value: Value,
) -> Result<Decoded, DecodeError> {
    let typed: T = serde_path_to_error::deserialize(&value).map_err(|e| {
        let path = e.path().to_string();
        let detail = if path == "." || path.is_empty() {
            e.inner().to_string()
        } else {
            format!("{}: {}", path, e.inner())
        };
        DecodeError {
            kind: info.kind.to_string(),
            version: info.group_version(),
            detail,
        }
    })?;
    let object = serde_json::to_value(&typed).map_err(|e| DecodeError {
        kind: info.kind.to_string(),
        version: info.group_version(),
        detail: e.to_string(),
    })?;
    let mut unknown_fields = Vec::new();
    dropped_fields(&value, &object, &mut String::new(), &mut unknown_fields);
    Ok(Decoded {
        object,
        unknown_fields,
    })
}

/// Collects the paths present (and not null) in `input` but missing from
/// `output`.
fn dropped_fields(input: &Value, output: &Value, path: &mut String, out: &mut Vec<String>) {
    match (input, output) {
        (Value::Object(input), Value::Object(output)) => {
            for (key, value) in input {
                if value.is_null() {
                    continue;
                }
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                match output.get(key) {
                    None => out.push(path.clone()),
                    Some(kept) => dropped_fields(value, kept, path, out),
                }
                path.truncate(len);
            }
        }
        (Value::Array(input), Value::Array(output)) if input.len() == output.len() => {
            for (i, (a, b)) in input.iter().zip(output).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                dropped_fields(a, b, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog;
    use serde_json::json;

    fn pods() -> &'static ResourceInfo {
        catalog::find("", "v1", "pods").unwrap()
    }

    #[test]
    fn unknown_fields_are_dropped_and_named() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "a", "labels": {"x": "y"}, "bogus": 1},
            "spec": {"containers": [{"name": "c", "image": "i", "imagePullPolicyy": "Always"}], "nodeName": null}
        });
        let d = normalize(pods(), pod).unwrap();
        assert_eq!(
            d.unknown_fields,
            vec!["metadata.bogus", "spec.containers[0].imagePullPolicyy"]
        );
        assert!(d.object["metadata"].get("bogus").is_none());
        assert_eq!(d.object["metadata"]["labels"]["x"], "y");
    }

    #[test]
    fn a_wrong_type_is_a_decode_error_with_its_path() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}, "spec": {"containers": "nope"}});
        let e = normalize(pods(), pod).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("Pod in version \"v1\" cannot be handled as a Pod: spec.containers"),
            "{msg}"
        );
    }
}
