//! The Swagger 2.0 document `/openapi/v2` serves: every path of every
//! group-version and every definition, in one document.
//!
//! The definitions are the v3 ones rewritten the way upstream writes v2:
//! `#/definitions/` refs, a ref with siblings written as `$ref` beside them
//! instead of wrapped in `allOf` (kubectl's v2 parser reads nothing else),
//! and `IntOrString` and `Quantity` as strings. Query parameters are shared
//! under `parameters` and referred to, as upstream does, which keeps the
//! document small.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::definitions::{Definitions, V3_REFS};
use super::paths::{Api, In, Operation, PATCH_TYPES, Param, PathItem, Schema};
use super::{TITLE, VERSION};

/// Where v2 keeps its schemas.
pub(super) const V2_REFS: &str = "#/definitions/";

/// The whole v2 document.
pub(super) fn document(apis: &[Api], defs: &Definitions) -> Value {
    let mut shared = SharedParams::default();
    let mut paths = Map::new();
    for api in apis {
        for item in &api.paths {
            paths.insert(item.path.clone(), path_item(item, &mut shared));
        }
    }
    let definitions: Map<String, Value> = defs
        .iter()
        .map(|(name, schema)| (name.clone(), definition(name, schema)))
        .collect();
    json!({
        "swagger": "2.0",
        "info": {"title": TITLE, "version": VERSION},
        "paths": paths,
        "definitions": definitions,
        "parameters": shared.params,
        "securityDefinitions": {
            "BearerToken": {
                "description": "Bearer Token authentication",
                "in": "header",
                "name": "authorization",
                "type": "apiKey",
            },
        },
        "security": [{"BearerToken": []}],
    })
}

/// Rewrites one v3-style definition for v2.
fn definition(name: &str, schema: &Value) -> Value {
    let mut out = to_v2(schema);
    if matches!(
        name,
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
            | "io.k8s.apimachinery.pkg.api.resource.Quantity"
    ) && let Value::Object(s) = &mut out
    {
        s.remove("oneOf");
        s.insert("type".into(), json!("string"));
    }
    out
}

fn to_v2(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => {
                        let name = r.strip_prefix(V3_REFS).unwrap_or(r);
                        out.insert(k.clone(), json!(format!("{V2_REFS}{name}")));
                    }
                    ("allOf", Value::Array(items))
                        if items.len() == 1 && items[0].get("$ref").is_some() =>
                    {
                        if let Value::Object(inner) = to_v2(&items[0]) {
                            out.extend(inner);
                        }
                    }
                    _ => {
                        out.insert(k.clone(), to_v2(v));
                    }
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(to_v2).collect()),
        other => other.clone(),
    }
}

/// Query and path parameters, each written once under `parameters` with
/// a name derived from its content.
#[derive(Default)]
struct SharedParams {
    params: BTreeMap<String, Value>,
}

impl SharedParams {
    fn reference(&mut self, p: &Param) -> Value {
        let location = if p.location == In::Path {
            "path"
        } else {
            "query"
        };
        let mut v = json!({
            "name": p.name,
            "in": location,
            "description": p.description,
            "type": p.ty.name(),
            "uniqueItems": true,
        });
        if p.location == In::Path {
            v["required"] = json!(true);
        }
        let key = format!("{}-{:08x}", p.name, fnv1a(&v.to_string()));
        self.params.entry(key.clone()).or_insert(v);
        json!({"$ref": format!("#/parameters/{key}")})
    }
}

/// A stable, platform-independent 32-bit hash, for parameter names.
fn fnv1a(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

fn path_item(item: &PathItem, shared: &mut SharedParams) -> Value {
    let mut out = Map::new();
    for op in &item.operations {
        out.insert(op.method.to_string(), operation(op, shared));
    }
    if !item.params.is_empty() {
        let params: Vec<Value> = item.params.iter().map(|p| shared.reference(p)).collect();
        out.insert("parameters".into(), Value::Array(params));
    }
    Value::Object(out)
}

fn schema(s: &Schema) -> Value {
    match s {
        Schema::Ref(name) => json!({"$ref": format!("{V2_REFS}{name}")}),
        Schema::String => json!({"type": "string"}),
    }
}

fn operation(op: &Operation, shared: &mut SharedParams) -> Value {
    let consumes: &[&str] = match &op.body {
        Some(body) if body.patch => PATCH_TYPES,
        _ => &["*/*"],
    };
    let mut params = Vec::new();
    if let Some(body) = &op.body {
        let mut v = json!({"name": "body", "in": "body", "schema": schema(&body.schema)});
        if body.required {
            v["required"] = json!(true);
        }
        params.push(v);
    }
    params.extend(op.params.iter().map(|p| shared.reference(p)));
    let mut responses = Map::new();
    for r in &op.responses {
        let mut v = json!({"description": r.description});
        if let Some(s) = &r.schema {
            v["schema"] = schema(s);
        }
        responses.insert(r.code.to_string(), v);
    }
    let mut out = json!({
        "consumes": consumes,
        "description": op.description,
        "operationId": op.id,
        "produces": op.produces.media_types(),
        "responses": responses,
        "schemes": ["https"],
        "tags": [op.tag],
    });
    if !params.is_empty() {
        out["parameters"] = Value::Array(params);
    }
    if let Some(action) = op.action {
        out["x-kubernetes-action"] = json!(action);
    }
    if let Some(gvk) = &op.gvk {
        out["x-kubernetes-group-version-kind"] =
            json!({"group": gvk.group, "version": gvk.version, "kind": gvk.kind});
    }
    out
}
