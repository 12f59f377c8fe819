//! The OpenAPI documents the apiserver serves, generated in-process from the
//! k8s-openapi types, and the [`PatchSchema`] strategic merge patch walks.
//!
//! - `/openapi/v2`: [`v2_json`] (JSON) and [`v2_protobuf`] (the gnostic
//!   protobuf client-go asks for); [`v2`] parses the JSON for callers that
//!   want to look inside.
//! - `/openapi/v3`: [`v3_index`] lists one document per group-version (and
//!   the discovery documents `api`, `apis`, `apis/<group>`, `version`), each
//!   at `/openapi/v3/<path>?hash=<HASH>`; [`v3_group_version_json`] and
//!   [`v3_hash`] give a document's bytes and hash, [`v3_group_version`] the
//!   parsed document.
//! - [`patch_schema`]: a definition's [`SchemaNode`], for strategic merge
//!   patch.
//!
//! Everything is deterministic, built on first use and kept: the documents
//! as the bytes that are served (the hash is over those bytes, which is
//! what client-go's cache relies on), the patch schema as a description-free
//! copy of the definitions. Nothing is kept as a `Value` unless [`v2`] or
//! [`v3_group_version`] is called.
//!
//! What kubectl 1.32 reads, and where:
//! - `apply` and `diff` (`pkg/cmd/apply/patcher.go`): `gvkSupportsPatchOpenAPIV3`
//!   looks for a PATCH operation with the kind's
//!   `x-kubernetes-group-version-kind` whose request body accepts
//!   `application/strategic-merge-patch+json`; `buildStrategicMergePatchFromOpenAPIV3`
//!   then takes the component schema whose `x-kubernetes-group-version-kind`
//!   lists the kind, and walks it with apimachinery's
//!   `PatchMetaFromOpenAPIV3`, reading the patch extensions from each
//!   property and following `allOf[0]` and `$ref`.
//! - `--validate=strict` (`pkg/cmd/util/factory_client_access.go`,
//!   cli-runtime `resource/query_param_verifier_v3.go`): server-side
//!   validation is used when the PATCH operation for the kind has a
//!   `fieldValidation` query parameter of its own. A `kind: List` document
//!   never qualifies and is validated on the client, against the v2
//!   document in protobuf (`pkg/validation/validation.go`); so is any kind
//!   whose group-version has no v3 document.
//! - `explain` (`pkg/explain/v2/templates/plaintext.tmpl`): the operation's
//!   `x-kubernetes-group-version-kind` on the resource's paths, then the
//!   component schema that lists it; `-o plaintext-openapiv2` and a server
//!   without `/openapi/v3` use the v2 protobuf.
//!
//! Must not depend on: I/O, the datastore, HTTP.

mod definitions;
mod extensions;
mod patch;
mod paths;
mod protobuf;
mod text;
mod v2;
mod v3;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::Value;
use sha2::{Digest, Sha512};

use definitions::Definitions;
pub use patch::SchemaNode;

/// `info.title` of every document.
pub const TITLE: &str = "Kubernetes";
/// `info.version` of every document: the Kubernetes version served.
pub const VERSION: &str = "v1.32.0";

/// The media types `/openapi/v2` answers with [`v2_protobuf`]: the first is
/// what client-go's `OpenAPISchema` sends (its only `Accept`), the second
/// upstream's current spelling. Upstream accepts both.
pub const V2_PROTOBUF_MEDIA_TYPES: [&str; 2] = [
    "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
];

/// The `Content-Type` upstream gives a [`v2_protobuf`] response, whichever
/// of [`V2_PROTOBUF_MEDIA_TYPES`] was asked for.
pub const V2_PROTOBUF_CONTENT_TYPE: &str =
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// The v2 document, as JSON bytes.
pub fn v2_json() -> &'static [u8] {
    static JSON: OnceLock<Vec<u8>> = OnceLock::new();
    JSON.get_or_init(|| serde_json::to_vec(&build_v2()).unwrap_or_default())
}

/// The v2 document, parsed. Built from [`v2_json`] on first call and kept;
/// serve [`v2_json`] rather than serialising this.
pub fn v2() -> &'static Value {
    static VALUE: OnceLock<Value> = OnceLock::new();
    VALUE.get_or_init(|| serde_json::from_slice(v2_json()).unwrap_or(Value::Null))
}

/// The v2 document as a gnostic `openapi.v2.Document` protobuf, for
/// requests that accept one of [`V2_PROTOBUF_MEDIA_TYPES`].
pub fn v2_protobuf() -> &'static [u8] {
    static PROTOBUF: OnceLock<Vec<u8>> = OnceLock::new();
    PROTOBUF.get_or_init(|| protobuf::document(&build_v2()))
}

fn build_v2() -> Value {
    v2::document(&paths::apis(), &definitions::build())
}

/// One v3 document, as served.
#[derive(Debug)]
struct V3Doc {
    json: Vec<u8>,
    hash: String,
    value: OnceLock<Value>,
}

/// Every v3 document, by path (`api/v1`, `apis/apps/v1`). Built together:
/// the index needs every hash, and clients read the index first.
fn v3_docs() -> &'static BTreeMap<String, V3Doc> {
    static DOCS: OnceLock<BTreeMap<String, V3Doc>> = OnceLock::new();
    DOCS.get_or_init(|| {
        let defs = definitions::build();
        paths::apis()
            .into_iter()
            .map(|api| {
                let json = v3::document(&api, &defs);
                let hash = hash(&json);
                let doc = V3Doc {
                    json,
                    hash,
                    value: OnceLock::new(),
                };
                (api.key, doc)
            })
            .collect()
    })
}

/// Upstream's hash of a document: SHA-512, uppercase hex. client-go treats
/// it as opaque; it keys its cache by the URL that carries it.
fn hash(bytes: &[u8]) -> String {
    Sha512::digest(bytes)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// The `/openapi/v3` index: `{"paths": {"api/v1": {"serverRelativeURL":
/// "/openapi/v3/api/v1?hash=..."}, ...}}`.
pub fn v3_index() -> Value {
    let paths: serde_json::Map<String, Value> = v3_docs()
        .iter()
        .map(|(path, doc)| {
            let url = format!("/openapi/v3/{path}?hash={}", doc.hash);
            (
                path.clone(),
                serde_json::json!({ "serverRelativeURL": url }),
            )
        })
        .collect();
    serde_json::json!({ "paths": paths })
}

/// The paths [`v3_group_version`] answers, in index order.
pub fn v3_paths() -> impl Iterator<Item = &'static str> {
    v3_docs().keys().map(String::as_str)
}

/// The v3 document at `path` (`api/v1`, `apis/apps/v1`), as served.
pub fn v3_group_version_json(path: &str) -> Option<&'static [u8]> {
    v3_docs().get(path).map(|d| d.json.as_slice())
}

/// The v3 document at `path`, parsed. Parsed on first call for each path and
/// kept; serve [`v3_group_version_json`] rather than serialising this.
pub fn v3_group_version(path: &str) -> Option<&'static Value> {
    let doc = v3_docs().get(path)?;
    Some(
        doc.value
            .get_or_init(|| serde_json::from_slice(&doc.json).unwrap_or(Value::Null)),
    )
}

/// The hash in the URL of the v3 document at `path`: also its `ETag`.
pub fn v3_hash(path: &str) -> Option<&'static str> {
    v3_docs().get(path).map(|d| d.hash.as_str())
}

/// The definitions cut down to what strategic merge patch walks, kept for
/// the life of the process.
fn patch_definitions() -> &'static Definitions {
    static DEFS: OnceLock<Definitions> = OnceLock::new();
    DEFS.get_or_init(|| {
        let mut defs = definitions::build();
        for schema in defs.values_mut() {
            keep_patch_keys(schema);
        }
        defs
    })
}

/// Keeps the keys a [`SchemaNode`] reads: the structure (`properties`,
/// `items`, `additionalProperties`, `$ref`, `allOf`) and the patch
/// extensions. Descriptions and the rest are most of the size.
fn keep_patch_keys(value: &mut Value) {
    const KEEP: &[&str] = &[
        "properties",
        "items",
        "additionalProperties",
        "$ref",
        "allOf",
        "x-kubernetes-patch-strategy",
        "x-kubernetes-patch-merge-key",
    ];
    let Value::Object(map) = value else {
        return;
    };
    map.retain(|k, _| KEEP.contains(&k.as_str()));
    for (key, v) in map.iter_mut() {
        match (key.as_str(), v) {
            // Property names are data, not keywords.
            ("properties", Value::Object(props)) => props.values_mut().for_each(keep_patch_keys),
            ("allOf", Value::Array(items)) => items.iter_mut().for_each(keep_patch_keys),
            (_, v) => keep_patch_keys(v),
        }
    }
}

/// The patch schema of `definition` (`io.k8s.api.core.v1.Pod`), or `None`
/// for a definition that is not served.
pub fn patch_schema(definition: &str) -> Option<SchemaNode<'static>> {
    SchemaNode::root(patch_definitions(), definition)
}
