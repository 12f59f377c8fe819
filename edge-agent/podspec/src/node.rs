//! What the spec layer needs to know about the node it runs on.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;

use crate::quantity::{Quantity, QuantityError};

/// The node, as the downward API and the OOM score see it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeInfo {
    /// The node's IPs, first the primary (`status.hostIP`, `status.hostIPs`).
    pub host_ips: Vec<String>,
    /// The node's allocatable resources (`status.allocatable`): what a
    /// `resourceFieldRef` to a missing limit shows, as the kubelet does.
    pub allocatable: BTreeMap<String, ApiQuantity>,
    /// The machine's memory in bytes (the kubelet's `MemoryCapacity`), for the
    /// Burstable OOM score.
    pub memory_capacity: i64,
}

impl NodeInfo {
    /// The allocatable amount of a resource (`cpu`, `memory`,
    /// `ephemeral-storage`, ...), zero when the node does not report it.
    pub fn allocatable_of(&self, resource: &str) -> Result<Quantity, QuantityError> {
        match self.allocatable.get(resource) {
            Some(q) => Quantity::parse(&q.0),
            None => Ok(Quantity::ZERO),
        }
    }
}
