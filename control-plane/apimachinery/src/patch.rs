//! Placeholder until the patch work lands: the interface the apiserver uses.
#![allow(missing_docs, clippy::all)]
use serde_json::Value;
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PatchError(pub String);
impl PatchError {
    pub fn is_bad_request(&self) -> bool {
        true
    }
}
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    StrategicMerge,
    Apply,
}
impl PatchType {
    pub fn from_content_type(ct: &str) -> Option<PatchType> {
        match ct.split(';').next().unwrap_or_default().trim() {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::StrategicMerge),
            "application/apply-patch+yaml" => Some(PatchType::Apply),
            _ => None,
        }
    }
}
pub mod json {
    use super::*;
    pub fn apply(_doc: &Value, _patch: &Value) -> Result<Value, PatchError> {
        Err(PatchError("json patch not implemented yet".into()))
    }
}
pub mod merge {
    use super::*;
    pub fn apply(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
        fn m(t: &mut Value, p: &Value) {
            if let Value::Object(pm) = p {
                if !t.is_object() {
                    *t = Value::Object(Default::default());
                }
                let tm = t.as_object_mut().unwrap();
                for (k, v) in pm {
                    if v.is_null() {
                        tm.remove(k);
                    } else {
                        m(tm.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            } else {
                *t = p.clone();
            }
        }
        let mut d = doc.clone();
        m(&mut d, patch);
        Ok(d)
    }
}
pub mod strategic {
    use super::*;
    pub fn apply(doc: &Value, patch: &Value, _s: &dyn crate::schema::PatchSchema) -> Result<Value, PatchError> {
        super::merge::apply(doc, patch)
    }
}
