//! Placeholder until the OpenAPI work lands.
pub fn patch_schema(_definition: &str) -> Option<kedge_apimachinery::schema::Unknown> {
    None
}
