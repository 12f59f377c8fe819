//! Placeholder until the table work lands: the interface the apiserver uses.
use serde_json::{Value, json};
use std::time::SystemTime;

/// One column of a `Table`.
#[derive(Clone, Copy, Debug)]
pub struct Column {
    pub name: &'static str,
    pub type_: &'static str,
    pub format: &'static str,
    pub description: &'static str,
    pub priority: i32,
}

static DEFAULT: &[Column] = &[
    Column { name: "Name", type_: "string", format: "name", description: "Name", priority: 0 },
    Column { name: "Created At", type_: "date", format: "", description: "Creation time", priority: 0 },
];

pub fn columns(_group: &str, _kind: &str) -> &'static [Column] {
    DEFAULT
}

pub fn row(_group: &str, _kind: &str, obj: &Value, _now: SystemTime) -> Vec<Value> {
    vec![
        obj.pointer("/metadata/name").cloned().unwrap_or(json!("")),
        obj.pointer("/metadata/creationTimestamp").cloned().unwrap_or(json!("")),
    ]
}
