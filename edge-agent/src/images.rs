//! Image housekeeping: the node's `status.images`, and image garbage collection by
//! disk thresholds, as the kubelet's image manager does.
//!
//! Every [`ImagePolicy::period`] the loop lists containerd's images into
//! [`LiveNodeStatus`], and when the filesystem holding containerd's root is at or above
//! the profile's `imageGCHighThresholdPercent` it removes images no container uses,
//! least recently used first, until usage is below `imageGCLowThresholdPercent`. An
//! image some container still references (running or exited, as the kubelet counts
//! them) is never removed.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kedge_containerd::{Client, Image};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::node_status::{LiveNodeStatus, NodeImage};

/// When and how far images are collected.
#[derive(Debug, Clone)]
pub struct ImagePolicy {
    /// Collect at or above this percent of the image filesystem used...
    pub high_percent: u8,
    /// ...down to below this one.
    pub low_percent: u8,
    /// How often the images are listed and the thresholds checked (the kubelet: 5 min
    /// for GC, 10 s for status; one period serves both here).
    pub period: Duration,
    /// A directory on the image filesystem (containerd's root).
    pub image_fs: PathBuf,
}

/// The images as `status.images` lists them: one entry per image id, with every name
/// it has and its repo digest.
pub fn node_images(images: &[Image]) -> Vec<NodeImage> {
    let mut by_id: BTreeMap<&str, NodeImage> = BTreeMap::new();
    for image in images {
        let r = &image.reference;
        let id = if r.config_digest.is_empty() {
            r.name.as_str()
        } else {
            r.config_digest.as_str()
        };
        let entry = by_id.entry(id).or_insert_with(|| NodeImage {
            names: Vec::new(),
            size_bytes: image.size,
        });
        let mut add = |name: String| {
            if !entry.names.contains(&name) {
                entry.names.push(name);
            }
        };
        if !r.digest.is_empty() {
            let repo = repository(&r.name);
            add(format!("{repo}@{}", r.digest));
        }
        add(r.name.clone());
    }
    by_id
        .into_values()
        .map(|mut i| {
            i.names.sort();
            i
        })
        .collect()
}

/// `docker.io/library/busybox` of `docker.io/library/busybox:1.36` (a port in the
/// registry's host is not a tag).
fn repository(name: &str) -> &str {
    let name = name.split('@').next().unwrap_or(name);
    match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => &name[..i],
        _ => name,
    }
}

/// One round: the images into the node's status, then GC if the disk is full enough.
pub async fn housekeep(client: &Client, live: &LiveNodeStatus, policy: &ImagePolicy) {
    match client.images().await {
        Ok(images) => live.set_images(node_images(&images)),
        Err(e) => {
            warn!(error = %e, "cannot list images for the node's status");
            return;
        }
    }
    let in_use: HashSet<String> = match client.list_containers(&Default::default()).await {
        Ok(containers) => containers
            .into_iter()
            .map(|c| c.image)
            .filter(|i| !i.is_empty())
            .collect(),
        Err(e) => {
            // Without knowing what is in use nothing may go.
            warn!(error = %e, "cannot list containers; skipping image garbage collection");
            return;
        }
    };
    match client
        .image_gc(
            &policy.image_fs,
            policy.high_percent,
            policy.low_percent,
            kedge_containerd::MINIMUM_GC_AGE,
            &in_use,
        )
        .await
    {
        Ok(report) if !report.removed.is_empty() => {
            info!(
                removed = report.removed.len(),
                before = format!("{:.1}%", report.usage_before),
                after = format!("{:.1}%", report.usage_after),
                "image garbage collection freed disk space"
            );
            if let Ok(images) = client.images().await {
                live.set_images(node_images(&images));
            }
        }
        Ok(report) if report.usage_after >= policy.high_percent as f64 => warn!(
            usage = format!("{:.1}%", report.usage_after),
            "the image filesystem is above the GC threshold and no image is unused: free disk space or delete pods"
        ),
        Ok(_) => {}
        Err(e) => warn!(error = %e, "image garbage collection failed"),
    }
}

/// Runs [`housekeep`] every period until `stop` turns true.
pub async fn run(
    client: Client,
    live: Arc<LiveNodeStatus>,
    policy: ImagePolicy,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(policy.period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => housekeep(&client, &live, &policy).await,
            _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use kedge_containerd::{ImageConfig, ImageRef};

    use super::*;

    fn image(name: &str, digest: &str, id: &str, size: u64) -> Image {
        Image {
            reference: ImageRef {
                name: name.into(),
                digest: digest.into(),
                config_digest: id.into(),
                chain_id: String::new(),
            },
            size,
            config: ImageConfig::default(),
            created_at: None,
            last_used: None,
            labels: Default::default(),
        }
    }

    #[test]
    fn one_entry_per_image_id_with_tags_and_repo_digests() {
        let images = node_images(&[
            image(
                "docker.io/library/busybox:1.36",
                "sha256:aa",
                "sha256:id1",
                10,
            ),
            image(
                "docker.io/library/busybox:latest",
                "sha256:aa",
                "sha256:id1",
                10,
            ),
            image("registry.local:5000/web:v2", "sha256:bb", "sha256:id2", 20),
        ]);
        assert_eq!(images.len(), 2);
        assert_eq!(
            images[0].names,
            [
                "docker.io/library/busybox:1.36",
                "docker.io/library/busybox:latest",
                "docker.io/library/busybox@sha256:aa",
            ]
        );
        assert_eq!(images[0].size_bytes, 10);
        assert_eq!(
            images[1].names,
            [
                "registry.local:5000/web:v2",
                "registry.local:5000/web@sha256:bb"
            ]
        );
    }

    #[test]
    fn repositories_keep_registry_ports() {
        assert_eq!(
            repository("registry.local:5000/web"),
            "registry.local:5000/web"
        );
        assert_eq!(
            repository("registry.local:5000/web:v1"),
            "registry.local:5000/web"
        );
        assert_eq!(repository("busybox@sha256:aa"), "busybox");
    }
}
