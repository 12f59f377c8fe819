//! OpenAPI 3.0 documents, one per group-version, as `/openapi/v3/<path>`
//! serves them.
//!
//! Each document holds the paths of its group-version and, under
//! `components.schemas`, exactly the definitions those paths reach.
//! Parameters are written inline on each operation, as upstream does;
//! `kubectl` (`resource.supportsQueryParamV3`) finds `fieldValidation`
//! only there.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::definitions::{Definitions, V3_REFS, closure, refs_in};
use super::paths::{Api, Body, In, Operation, PATCH_TYPES, Param, PathItem, Schema};
use super::{TITLE, VERSION};

/// The v3 document for `api`, serialised. The schemas are written from
/// `defs` as they are, not copied into the document first: building every
/// document at once then costs little more than the definitions.
pub(super) fn document(api: &Api, defs: &Definitions) -> Vec<u8> {
    let mut paths = Map::new();
    for item in &api.paths {
        paths.insert(item.path.clone(), path_item(item));
    }
    let paths = Value::Object(paths);
    let schemas: BTreeMap<&str, &Value> = {
        let mut start = Vec::new();
        refs_in(&paths, V3_REFS, &mut start);
        closure(defs, start)
            .into_iter()
            .filter_map(|name| Some((name, defs.get(name)?)))
            .collect()
    };
    // Fields in the order serde_json writes a map's keys, so that the
    // document reads the same as one written from a `Value`.
    #[derive(Serialize)]
    struct Document<'a> {
        components: Components<'a>,
        info: Value,
        openapi: &'static str,
        paths: Value,
    }
    #[derive(Serialize)]
    struct Components<'a> {
        schemas: BTreeMap<&'a str, &'a Value>,
        #[serde(rename = "securitySchemes")]
        security_schemes: Value,
    }
    let doc = Document {
        components: Components {
            schemas,
            security_schemes: json!({
                "BearerToken": {
                    "type": "apiKey",
                    "description": "Bearer Token authentication",
                    "name": "authorization",
                    "in": "header",
                },
            }),
        },
        info: json!({"title": TITLE, "version": VERSION}),
        openapi: "3.0.0",
        paths,
    };
    // Serialising values made of strings and maps cannot fail.
    serde_json::to_vec(&doc).unwrap_or_default()
}

fn path_item(item: &PathItem) -> Value {
    let mut out = Map::new();
    for op in &item.operations {
        out.insert(op.method.to_string(), operation(op));
    }
    if !item.params.is_empty() {
        out.insert("parameters".into(), params(&item.params));
    }
    Value::Object(out)
}

fn params(params: &[Param]) -> Value {
    params
        .iter()
        .map(|p| {
            let mut v = json!({
                "name": p.name,
                "in": if p.location == In::Path { "path" } else { "query" },
                "description": p.description,
                "schema": {"type": p.ty.name(), "uniqueItems": true},
            });
            if p.location == In::Path {
                v["required"] = json!(true);
            }
            v
        })
        .collect()
}

pub(super) fn schema(s: &Schema) -> Value {
    match s {
        Schema::Ref(name) => json!({"$ref": format!("{V3_REFS}{name}")}),
        Schema::String => json!({"type": "string"}),
    }
}

fn request_body(body: &Body) -> Value {
    let types: &[&str] = if body.patch { PATCH_TYPES } else { &["*/*"] };
    let content: Map<String, Value> = types
        .iter()
        .map(|t| (t.to_string(), json!({"schema": schema(&body.schema)})))
        .collect();
    let mut v = json!({"content": content});
    if body.required {
        v["required"] = json!(true);
    }
    v
}

fn operation(op: &Operation) -> Value {
    let mut out = json!({
        "tags": [op.tag],
        "description": op.description,
        "operationId": op.id,
    });
    if !op.params.is_empty() {
        out["parameters"] = params(&op.params);
    }
    if let Some(body) = &op.body {
        out["requestBody"] = request_body(body);
    }
    let mut responses = Map::new();
    for r in &op.responses {
        let mut v = json!({"description": r.description});
        if let Some(s) = &r.schema {
            let content: Map<String, Value> = op
                .produces
                .media_types()
                .iter()
                .map(|t| (t.to_string(), json!({"schema": schema(s)})))
                .collect();
            v["content"] = Value::Object(content);
        }
        responses.insert(r.code.to_string(), v);
    }
    out["responses"] = Value::Object(responses);
    if let Some(action) = op.action {
        out["x-kubernetes-action"] = json!(action);
    }
    if let Some(gvk) = &op.gvk {
        out["x-kubernetes-group-version-kind"] =
            json!({"group": gvk.group, "version": gvk.version, "kind": gvk.kind});
    }
    out
}
