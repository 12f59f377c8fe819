//! Shaping responses: lists, Tables, PartialObjectMetadata, watch frames.

use std::time::SystemTime;

use bytes::Bytes;
use kedge_resources::catalog::ResourceInfo;
use kedge_resources::table;
use serde_json::{Value, json};

use crate::object;
use crate::request::Output;
use crate::watch::WatchItem;

/// `?includeObject=` for Tables.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    #[default]
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(v: Option<&str>) -> IncludeObject {
        match v {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

/// The `PartialObjectMetadata` of an object.
pub fn partial_metadata(obj: &Value, version: &str) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": format!("meta.k8s.io/{version}"),
        "metadata": object::metadata(obj),
    })
}

fn column_definitions(info: &ResourceInfo) -> Vec<Value> {
    table::columns(info.group, info.kind)
        .iter()
        .map(|c| {
            json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority})
        })
        .collect()
}

fn table_row(
    info: &ResourceInfo,
    obj: &Value,
    include: IncludeObject,
    version: &str,
    now: SystemTime,
) -> Value {
    let mut row = json!({"cells": table::row(info.group, info.kind, obj, now)});
    match include {
        IncludeObject::None => {}
        IncludeObject::Metadata => row["object"] = partial_metadata(obj, version),
        IncludeObject::Object => row["object"] = obj.clone(),
    }
    row
}

/// A `Table` of objects.
pub fn table(
    info: &ResourceInfo,
    items: &[Value],
    list_meta: Value,
    include: IncludeObject,
    version: &str,
    with_columns: bool,
    now: SystemTime,
) -> Value {
    let rows: Vec<Value> = items
        .iter()
        .map(|o| table_row(info, o, include, version, now))
        .collect();
    let mut t = json!({
        "kind": "Table",
        "apiVersion": format!("meta.k8s.io/{version}"),
        "metadata": list_meta,
        "rows": rows,
    });
    if with_columns {
        t["columnDefinitions"] = json!(column_definitions(info));
    } else {
        t["columnDefinitions"] = Value::Null;
    }
    t
}

/// A list response in the requested shape.
pub fn list(
    info: &ResourceInfo,
    items: Vec<Value>,
    revision: i64,
    continue_token: Option<String>,
    output: Output,
    include: IncludeObject,
    now: SystemTime,
) -> Value {
    let mut meta = json!({"resourceVersion": revision.to_string()});
    if let Some(token) = continue_token {
        meta["continue"] = json!(token);
    }
    match output {
        Output::Json => json!({
            "kind": info.list_kind(),
            "apiVersion": info.group_version(),
            "metadata": meta,
            "items": items,
        }),
        Output::Table(v) => table(info, &items, meta, include, v, true, now),
        Output::Metadata(v) => {
            let items: Vec<Value> = items.iter().map(|o| partial_metadata(o, v)).collect();
            json!({"kind": "PartialObjectMetadataList", "apiVersion": format!("meta.k8s.io/{v}"), "metadata": meta, "items": items})
        }
    }
}

/// One object in the requested shape.
pub fn single(
    info: &ResourceInfo,
    obj: Value,
    output: Output,
    include: IncludeObject,
    now: SystemTime,
) -> Value {
    match output {
        Output::Json => obj,
        Output::Table(v) => table(
            info,
            std::slice::from_ref(&obj),
            json!({"resourceVersion": object::resource_version(&obj).unwrap_or_default()}),
            include,
            v,
            true,
            now,
        ),
        Output::Metadata(v) => partial_metadata(&obj, v),
    }
}

/// Encodes one watch event as a line of JSON. `first` says whether this is
/// the first event of the stream, which alone carries a Table's columns.
pub fn watch_frame(
    info: &ResourceInfo,
    item: &WatchItem,
    output: Output,
    include: IncludeObject,
    first: bool,
    now: SystemTime,
) -> Bytes {
    match item {
        WatchItem::Event {
            kind,
            object,
            cached,
        } => {
            if output == Output::Json {
                // The common case: splice the shared, once-encoded object in.
                let body = match cached {
                    Some(c) => c.object_json(),
                    None => Bytes::from(serde_json::to_vec(&**object).unwrap_or_default()),
                };
                let mut out = Vec::with_capacity(body.len() + 32);
                out.extend_from_slice(b"{\"type\":\"");
                out.extend_from_slice(kind.as_bytes());
                out.extend_from_slice(b"\",\"object\":");
                out.extend_from_slice(&body);
                out.extend_from_slice(b"}\n");
                return Bytes::from(out);
            }
            let shaped = match output {
                Output::Table(v) => table(
                    info,
                    std::slice::from_ref(&**object),
                    json!({"resourceVersion": object::resource_version(object).unwrap_or_default()}),
                    include,
                    v,
                    first,
                    now,
                ),
                Output::Metadata(v) => partial_metadata(object, v),
                Output::Json => unreachable!("handled above"),
            };
            frame(kind, &shaped)
        }
        WatchItem::Bookmark {
            revision,
            initial_end,
        } => {
            let mut meta = json!({"resourceVersion": revision.to_string()});
            if *initial_end {
                meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
            }
            let obj = match output {
                Output::Json => {
                    json!({"kind": info.kind, "apiVersion": info.group_version(), "metadata": meta})
                }
                Output::Table(v) | Output::Metadata(v) => {
                    json!({"kind": "PartialObjectMetadata", "apiVersion": format!("meta.k8s.io/{v}"), "metadata": meta})
                }
            };
            frame("BOOKMARK", &obj)
        }
        WatchItem::Error(e) => frame("ERROR", &e.to_status()),
    }
}

fn frame(kind: &str, object: &Value) -> Bytes {
    let mut out = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    out.push(b'\n');
    Bytes::from(out)
}
