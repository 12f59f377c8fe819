//! Node IPAM: each node gets a podCIDR (a /24 by default) out of
//! `--cluster-cidr` (10.42.0.0/16), never the same as another node's.
//!
//! The allocator is rebuilt from the Nodes at every pass, so it needs no
//! state of its own: the lowest free block goes to each node without one,
//! and a block is free again once its node is deleted. Only the leader
//! runs it, so two servers never hand out the same block.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::json;
use tracing::{info, warn};

use crate::cache::Cache;
use crate::{Context, ControllerFuture, Error};

/// An IPv4 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Net {
    /// The first address.
    pub base: Ipv4Addr,
    /// The prefix length.
    pub prefix: u8,
}

impl Ipv4Net {
    /// Parses "10.42.0.0/16"; host bits must be zero.
    pub fn parse(text: &str) -> Result<Ipv4Net, String> {
        let (addr, len) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not a CIDR such as 10.42.0.0/16"))?;
        let base: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("{text:?}: {addr:?} is not an IPv4 address"))?;
        let prefix: u8 = len
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to 32"))?;
        let net = Ipv4Net { base, prefix };
        if u32::from(base) & !net.mask() != 0 {
            return Err(format!(
                "{text:?} has host bits set; did you mean {}/{prefix}?",
                Ipv4Addr::from(u32::from(base) & net.mask())
            ));
        }
        Ok(net)
    }

    fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        }
    }

    /// How many addresses it holds.
    pub fn size(&self) -> u64 {
        1u64 << (32 - self.prefix)
    }
}

impl std::fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

/// Hands out `/mask` blocks of a cluster network.
#[derive(Debug, Clone)]
pub struct Allocator {
    cluster: Ipv4Net,
    mask: u8,
    used: BTreeSet<u32>,
}

impl Allocator {
    /// An allocator of `/mask` blocks of `cluster`.
    pub fn new(cluster: Ipv4Net, mask: u8) -> Result<Allocator, String> {
        if mask < cluster.prefix || mask > 30 {
            return Err(format!(
                "node CIDR mask /{mask} must be between the cluster CIDR's /{} and /30",
                cluster.prefix
            ));
        }
        Ok(Allocator {
            cluster,
            mask,
            used: BTreeSet::new(),
        })
    }

    /// How many blocks there are.
    pub fn capacity(&self) -> u64 {
        1u64 << (self.mask - self.cluster.prefix)
    }

    /// Marks a CIDR a node already has; false when it is not one of ours.
    pub fn occupy(&mut self, cidr: &str) -> bool {
        match self.index_of(cidr) {
            Some(i) => {
                self.used.insert(i);
                true
            }
            None => false,
        }
    }

    fn index_of(&self, cidr: &str) -> Option<u32> {
        let net = Ipv4Net::parse(cidr).ok()?;
        if net.prefix != self.mask {
            return None;
        }
        let offset = u32::from(net.base).checked_sub(u32::from(self.cluster.base))?;
        let index = offset >> (32 - self.mask);
        (u64::from(index) < self.capacity()).then_some(index)
    }

    /// The lowest free block, now taken.
    pub fn allocate(&mut self) -> Option<String> {
        let index = (0..self.capacity() as u32).find(|i| !self.used.contains(i))?;
        self.used.insert(index);
        let base = u32::from(self.cluster.base) + (index << (32 - self.mask));
        Some(format!("{}/{}", Ipv4Addr::from(base), self.mask))
    }
}

/// The node IPAM controller.
pub fn controller(ctx: &Context) -> ControllerFuture {
    let ctx = ctx.clone();
    async move { run(ctx).await }.boxed()
}

async fn run(ctx: Context) -> Result<(), Error> {
    let cluster = Ipv4Net::parse(&ctx.config.cluster_cidr)
        .map_err(|e| Error::Invalid(format!("--cluster-cidr: {e}")))?;
    let empty = Allocator::new(cluster, ctx.config.node_cidr_mask_size).map_err(Error::Invalid)?;
    let api: Api<Node> = Api::all(ctx.client.clone());
    let (nodes, driver) = Cache::<Node>::start(api.clone(), watcher::Config::default());
    let work = async {
        nodes.ready().await;
        loop {
            let all = nodes.store.state();
            let mut allocator = empty.clone();
            for node in &all {
                if let Some(cidr) = node.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()) {
                    allocator.occupy(cidr);
                }
            }
            for node in &all {
                if node
                    .spec
                    .as_ref()
                    .and_then(|s| s.pod_cidr.as_deref())
                    .is_some()
                {
                    continue;
                }
                let Some(name) = node.metadata.name.as_deref() else {
                    continue;
                };
                let Some(cidr) = allocator.allocate() else {
                    warn!(node = %name, cluster_cidr = %cluster, "no podCIDR left for the node");
                    break;
                };
                // Guarded by the resourceVersion: a node that changed since
                // is looked at again on the next pass.
                let patch = json!({
                    "metadata": {"resourceVersion": node.metadata.resource_version},
                    "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
                });
                match api
                    .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => info!(node = %name, pod_cidr = %cidr, "allocated the node's podCIDR"),
                    // The node changed since it was read: the next pass sees it again.
                    Err(e) if crate::workloads::common::is_conflict(&e) => {
                        tracing::debug!(node = %name, "node changed; podCIDR on the next pass")
                    }
                    Err(e) => warn!(node = %name, error = %e, "could not set the node's podCIDR"),
                }
            }
            nodes.changed.notified().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::select! {
        _ = driver => {}
        _ = work => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_and_reject_nonsense() {
        let net = Ipv4Net::parse("10.42.0.0/16").unwrap();
        assert_eq!(net.size(), 65536);
        assert_eq!(net.to_string(), "10.42.0.0/16");
        for bad in [
            "10.42.0.0",
            "10.42.0.1/16",
            "10.42.0.0/33",
            "fd00::/64",
            "x/8",
        ] {
            assert!(Ipv4Net::parse(bad).is_err(), "{bad}");
        }
        assert!(
            Ipv4Net::parse("10.42.0.1/16")
                .unwrap_err()
                .contains("10.42.0.0/16")
        );
    }

    #[test]
    fn blocks_are_handed_out_lowest_first_and_never_twice() {
        let mut a = Allocator::new(Ipv4Net::parse("10.42.0.0/16").unwrap(), 24).unwrap();
        assert_eq!(a.capacity(), 256);
        assert!(a.occupy("10.42.0.0/24"));
        assert!(a.occupy("10.42.2.0/24"));
        assert!(!a.occupy("10.43.0.0/24"), "outside the cluster CIDR");
        assert!(!a.occupy("10.42.1.0/25"), "another mask");
        assert_eq!(a.allocate().as_deref(), Some("10.42.1.0/24"));
        assert_eq!(a.allocate().as_deref(), Some("10.42.3.0/24"));
        let mut small = Allocator::new(Ipv4Net::parse("10.0.0.0/23").unwrap(), 24).unwrap();
        assert!(small.allocate().is_some());
        assert!(small.allocate().is_some());
        assert_eq!(small.allocate(), None);
        assert!(Allocator::new(Ipv4Net::parse("10.0.0.0/16").unwrap(), 8).is_err());
    }
}
