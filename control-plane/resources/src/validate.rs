//! Placeholder until the validation work lands.
pub fn validate(
    _group: &str,
    _kind: &str,
    _obj: &serde_json::Value,
    _old: Option<&serde_json::Value>,
) -> Vec<kedge_apimachinery::field::FieldError> {
    vec![]
}
