//! Registry pulls (being written).
#[derive(Debug, Clone, Default)]
pub struct Registries;
#[derive(Debug, Clone, Copy)]
pub enum PullPolicy {
    Always,
}
