//! Placeholder until the defaults work lands.
pub fn apply(_group: &str, _kind: &str, _obj: &mut serde_json::Value) {}
