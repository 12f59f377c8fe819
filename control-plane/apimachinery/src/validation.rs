//! Placeholder until the validation work lands: the interface the apiserver uses.
#![allow(clippy::all)]
use crate::field::FieldError;
use serde_json::Value;
#[derive(Clone, Copy, Debug)]
pub enum NameRule {
    Subdomain,
}
impl NameRule {
    pub fn for_kind(_g: &str, _k: &str) -> NameRule {
        NameRule::Subdomain
    }
}
pub fn validate_object_meta(meta: &Value, _namespaced: bool, _rule: NameRule) -> Vec<FieldError> {
    if meta.get("name").and_then(Value::as_str).is_none_or(str::is_empty) {
        return vec![FieldError::required("metadata.name", "name or generateName is required")];
    }
    vec![]
}
pub fn validate_object_meta_update(_new: &Value, _old: &Value) -> Vec<FieldError> {
    vec![]
}
