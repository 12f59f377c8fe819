//! The downward API's field paths (upstream's `fieldpath.ExtractFieldPathAsString`)
//! and resource fields (`resource.ExtractContainerResourceValue`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, ResourceFieldSelector};

use crate::node::NodeInfo;
use crate::quantity::{Quantity, QuantityError};
use crate::resources::{request_or_limit, resource_quantity};

/// Why a downward API field could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error(
        "unsupported fieldPath: {0}: use metadata.name, metadata.namespace, metadata.uid, metadata.labels['key'] or metadata.annotations['key']"
    )]
    Unsupported(String),
    #[error(
        "unsupported container resource : {0}: use limits.cpu, limits.memory, requests.cpu or requests.memory"
    )]
    UnsupportedResource(String),
    #[error(
        "container {0} not found: name one of the pod's containers in resourceFieldRef.containerName"
    )]
    ContainerNotFound(String),
    #[error("resourceFieldRef for {resource} has a bad quantity: {source}")]
    Quantity {
        resource: String,
        #[source]
        source: QuantityError,
    },
    #[error("resourceFieldRef for {0} has a zero divisor: use a divisor such as 1, 1m, 1Mi")]
    ZeroDivisor(String),
}

/// A metadata field of the pod, as a string: the fields a downward API volume
/// may project (environment variables also get spec and status fields, see
/// [`crate::env`]).
pub fn metadata_field(pod: &Pod, path: &str) -> Result<String, FieldError> {
    let meta = &pod.metadata;
    if let Some((field, key)) = subscript(path) {
        let map = match field {
            "metadata.labels" => meta.labels.as_ref(),
            "metadata.annotations" => meta.annotations.as_ref(),
            _ => return Err(FieldError::Unsupported(path.to_string())),
        };
        return Ok(map.and_then(|m| m.get(key)).cloned().unwrap_or_default());
    }
    match path {
        "metadata.name" => Ok(meta.name.clone().unwrap_or_default()),
        "metadata.namespace" => Ok(meta.namespace.clone().unwrap_or_default()),
        "metadata.uid" => Ok(meta.uid.clone().unwrap_or_default()),
        "metadata.labels" => Ok(format_map(meta.labels.as_ref())),
        "metadata.annotations" => Ok(format_map(meta.annotations.as_ref())),
        _ => Err(FieldError::Unsupported(path.to_string())),
    }
}

/// `metadata.labels['app']` → ("metadata.labels", "app").
fn subscript(path: &str) -> Option<(&str, &str)> {
    let (field, rest) = path.split_once('[')?;
    let key = rest.strip_suffix(']')?;
    let key = key
        .strip_prefix('\'')
        .and_then(|k| k.strip_suffix('\''))
        .or_else(|| key.strip_prefix('"').and_then(|k| k.strip_suffix('"')))?;
    Some((field, key))
}

/// Upstream's `FormatMap`: sorted `key="value"` lines, the value quoted as Go's
/// `%q` does, no trailing newline.
pub fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    let Some(map) = map else {
        return String::new();
    };
    map.iter()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Go's `strconv.Quote`: a double-quoted string with Go escape sequences.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => {
                let n = c as u32;
                if n <= 0xffff {
                    out.push_str(&format!("\\u{n:04x}"));
                } else {
                    out.push_str(&format!("\\U{n:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A container's resource as the downward API shows it: an integer, rounded
/// up, in units of the divisor (default 1). A missing limit is the node's
/// allocatable amount, as the kubelet defaults it; a missing request is the
/// limit (the API server's defaulting), else zero.
pub fn container_resource(
    selector: &ResourceFieldSelector,
    container: &Container,
    node: &NodeInfo,
) -> Result<String, FieldError> {
    let resource = selector.resource.as_str();
    let bad = |source| FieldError::Quantity {
        resource: resource.to_string(),
        source,
    };
    let divisor = match &selector.divisor {
        Some(d) => Quantity::parse(&d.0).map_err(bad)?,
        None => Quantity::ZERO,
    };
    let divisor = if divisor.is_zero() {
        Quantity::parse("1").map_err(bad)?
    } else {
        divisor
    };
    let (kind, name) = resource
        .split_once('.')
        .ok_or_else(|| FieldError::UnsupportedResource(resource.to_string()))?;
    let amount = match kind {
        "limits" => match resource_quantity(container, "limits", name).map_err(bad)? {
            Some(q) => q,
            None => node.allocatable_of(name).map_err(bad)?,
        },
        "requests" => request_or_limit(container, name)
            .map_err(bad)?
            .unwrap_or(Quantity::ZERO),
        _ => return Err(FieldError::UnsupportedResource(resource.to_string())),
    };
    let value = match name {
        "cpu" => {
            let d = divisor.milli_value();
            if d == 0 {
                return Err(FieldError::ZeroDivisor(resource.to_string()));
            }
            ceil_div(amount.milli_value(), d)
        }
        "memory" | "ephemeral-storage" => {
            let d = divisor.value();
            if d == 0 {
                return Err(FieldError::ZeroDivisor(resource.to_string()));
            }
            ceil_div(amount.value(), d)
        }
        n if n.starts_with("hugepages-") => {
            let d = divisor.value();
            if d == 0 {
                return Err(FieldError::ZeroDivisor(resource.to_string()));
            }
            ceil_div(amount.value(), d)
        }
        _ => return Err(FieldError::UnsupportedResource(resource.to_string())),
    };
    Ok(value.to_string())
}

/// Integer division rounded up (towards +∞), as upstream's `math.Ceil` of the quotient.
fn ceil_div(a: i64, b: i64) -> i64 {
    let q = a / b;
    if (a % b != 0) && ((a < 0) == (b < 0)) {
        q + 1
    } else {
        q
    }
}

/// The container named `name` among the pod's containers and init containers.
pub fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Pod {
        serde_yaml::from_str(
            r#"
metadata:
  name: web-0
  namespace: shop
  uid: 1f0e-22
  labels: {app: web, tier: "front\"end"}
  annotations: {note: "line1\nline2", empty: ""}
spec:
  containers: [{name: app, image: busybox}]
"#,
        )
        .unwrap()
    }

    #[test]
    fn metadata_fields() {
        let p = pod();
        let cases: &[(&str, &str)] = &[
            ("metadata.name", "web-0"),
            ("metadata.namespace", "shop"),
            ("metadata.uid", "1f0e-22"),
            ("metadata.labels['app']", "web"),
            ("metadata.labels[\"app\"]", "web"),
            ("metadata.labels['missing']", ""),
            ("metadata.annotations['note']", "line1\nline2"),
            ("metadata.labels", "app=\"web\"\ntier=\"front\\\"end\""),
            ("metadata.annotations", "empty=\"\"\nnote=\"line1\\nline2\""),
        ];
        for (path, want) in cases {
            assert_eq!(metadata_field(&p, path).unwrap(), *want, "{path}");
        }
        for bad in [
            "spec.nodeName",
            "metadata.generateName",
            "metadata.labels[app]",
            "status.podIP",
        ] {
            let err = metadata_field(&p, bad).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("unsupported fieldPath: {bad}")),
                "{err}"
            );
        }
    }

    #[test]
    fn go_quoting() {
        assert_eq!(go_quote("plain"), "\"plain\"");
        assert_eq!(go_quote("tab\there"), "\"tab\\there\"");
        assert_eq!(go_quote("nul\u{0}"), "\"nul\\x00\"");
        assert_eq!(go_quote("del\u{7f}"), "\"del\\x7f\"");
        assert_eq!(go_quote("ünï ✓"), "\"ünï ✓\"");
        assert_eq!(go_quote("\u{85}"), "\"\\u0085\"");
    }

    #[test]
    fn ceil_division() {
        assert_eq!(ceil_div(250, 1000), 1);
        assert_eq!(ceil_div(2000, 1000), 2);
        assert_eq!(ceil_div(0, 1000), 0);
        assert_eq!(ceil_div(-1500, 1000), -1);
    }
}
