//! Image records: lookup, listing, removal and garbage collection by disk thresholds.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use containerd_client::services::v1::{
    CreateImageRequest, DeleteImageRequest, GetImageRequest, Image as PbImage, ListImagesRequest,
    UpdateImageRequest,
};

use crate::client::Client;
use crate::content::{
    ConfigFile, Descriptor, Index, Manifest, chain_ids, is_index, is_manifest, pick_manifest,
};
use crate::error::{Error, Result};
use crate::reference::normalize;

/// Label holding when an image was last used by a container (RFC 3339).
pub const LAST_USED_LABEL: &str = "kedge.io/last-used";

/// An image ready to run: its name and the snapshot its containers start from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Full name, e.g. `docker.io/library/busybox:latest`.
    pub name: String,
    /// Digest of the record's target (index or manifest): the image's repo digest.
    pub digest: String,
    /// Digest of the image config: the image id.
    pub config_digest: String,
    /// The top layer's chain id: the committed snapshot containers are prepared from.
    pub chain_id: String,
}

/// The parts of an image's config the pod manager needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub stop_signal: Option<String>,
    pub exposed_ports: Vec<String>,
    pub labels: HashMap<String, String>,
}

/// An image as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub reference: ImageRef,
    /// Bytes of content: manifest, config and (compressed) layers.
    pub size: u64,
    pub config: ImageConfig,
    pub created_at: Option<jiff::Timestamp>,
    /// When a container last used it, if ever (from the `kedge.io/last-used` label).
    pub last_used: Option<jiff::Timestamp>,
    pub labels: HashMap<String, String>,
}

/// What an image GC run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GcReport {
    /// Usage of the image filesystem before, in percent.
    pub usage_before: f64,
    /// Usage after.
    pub usage_after: f64,
    /// Images removed, in removal order.
    pub removed: Vec<String>,
}

/// Disk usage of the filesystem holding containerd's root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsUsage {
    pub total_bytes: u64,
    pub available_bytes: u64,
}

impl FsUsage {
    /// Reads it with statvfs.
    pub fn of(path: &Path) -> Result<FsUsage> {
        let s = nix::sys::statvfs::statvfs(path)
            .map_err(|e| Error::io("statvfs", path, std::io::Error::from(e)))?;
        let frag = s.fragment_size() as u64;
        Ok(FsUsage {
            total_bytes: s.blocks() as u64 * frag,
            available_bytes: s.blocks_available() as u64 * frag,
        })
    }
    /// Used percent, as the kubelet computes it (capacity minus available).
    pub fn percent(&self) -> f64 {
        if self.total_bytes == 0 {
            return 0.0;
        }
        100.0 * (self.total_bytes - self.available_bytes.min(self.total_bytes)) as f64
            / self.total_bytes as f64
    }
}

/// The kubelet's image GC decision as a pure function: when usage is at or above `high`
/// percent, the bytes to free to get down to `low` percent; `None` when nothing is to do.
pub fn bytes_to_free(usage: FsUsage, high: u8, low: u8) -> Option<u64> {
    if usage.percent() < high as f64 {
        return None;
    }
    let target_used = usage.total_bytes as f64 * low as f64 / 100.0;
    let used = (usage.total_bytes - usage.available_bytes.min(usage.total_bytes)) as f64;
    Some((used - target_used).max(0.0) as u64)
}

/// The label that pins an image: image GC never removes it (containerd's CRI label,
/// which K3s sets on airgap images).
pub const PINNED_LABEL: &str = "io.cri-containerd.pinned";

/// How long an image is kept at least after it arrived or was last used (the kubelet's
/// ImageMinimumGCAge default), so that an image pulled for a pod about to start is not
/// collected before the pod's container exists.
pub const MINIMUM_GC_AGE: std::time::Duration = std::time::Duration::from_secs(120);

/// Orders GC candidates: not in use, not pinned, older than `min_age` at `now`; least
/// recently used first (never-used ones by age).
pub fn gc_candidates<'a>(
    images: &'a [Image],
    in_use: &HashSet<String>,
    now: jiff::Timestamp,
    min_age: std::time::Duration,
) -> Vec<&'a Image> {
    let young = |i: &Image| {
        i.last_used
            .or(i.created_at)
            .and_then(|t| now.duration_since(t).try_into().ok())
            .is_none_or(|age: std::time::Duration| age < min_age)
    };
    let mut c: Vec<&Image> = images
        .iter()
        .filter(|i| !in_use.contains(&i.reference.name))
        .filter(|i| i.labels.get(PINNED_LABEL).map(String::as_str) != Some("pinned"))
        .filter(|i| !young(i))
        .collect();
    c.sort_by_key(|i| (i.last_used.or(i.created_at), i.reference.name.clone()));
    c
}

fn ts(t: &Option<prost_types::Timestamp>) -> Option<jiff::Timestamp> {
    t.as_ref()
        .and_then(|t| jiff::Timestamp::new(t.seconds, t.nanos).ok())
}

impl Client {
    pub(crate) async fn put_image_record(&self, name: &str, target: &Descriptor) -> Result<()> {
        let image = PbImage {
            name: name.to_string(),
            labels: HashMap::from([("io.cri-containerd.image".to_string(), "managed".to_string())]),
            target: Some(target.to_pb()),
            created_at: None,
            updated_at: None,
        };
        match self
            .images_api()
            .create(self.req(CreateImageRequest {
                image: Some(image.clone()),
                source_date_epoch: None,
            }))
            .await
        {
            Ok(_) => Ok(()),
            Err(s) if s.code() == tonic::Code::AlreadyExists => {
                self.images_api()
                    .update(self.req(UpdateImageRequest {
                        image: Some(image),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec!["target".into()],
                        }),
                        source_date_epoch: None,
                    }))
                    .await
                    .map_err(|e| Error::containerd("update image", name, e))?;
                Ok(())
            }
            Err(e) => Err(Error::containerd("create image", name, e)),
        }
    }

    /// An image by reference (normalised: `busybox` finds `docker.io/library/busybox:latest`).
    pub async fn image(&self, reference: &str) -> Result<Option<Image>> {
        let name = normalize(reference)?;
        let rec = match self
            .images_api()
            .get(self.req(GetImageRequest { name: name.clone() }))
            .await
        {
            Ok(r) => r.into_inner().image,
            Err(s) if s.code() == tonic::Code::NotFound => None,
            Err(e) => return Err(Error::containerd("get image", &name, e)),
        };
        match rec {
            Some(rec) => Ok(Some(self.describe(rec).await?)),
            None => Ok(None),
        }
    }

    /// Every image in the namespace (records whose content is broken are skipped with a
    /// warning).
    pub async fn images(&self) -> Result<Vec<Image>> {
        let recs = self
            .images_api()
            .list(self.req(ListImagesRequest { filters: vec![] }))
            .await
            .map_err(|e| Error::containerd("list images", &self.config.namespace, e))?
            .into_inner()
            .images;
        let mut out = Vec::with_capacity(recs.len());
        for rec in recs {
            let name = rec.name.clone();
            match self.describe(rec).await {
                Ok(i) => out.push(i),
                Err(e) => tracing::warn!(image = %name, error = %e, "unreadable image record"),
            }
        }
        Ok(out)
    }

    /// Follows a record's target to its manifest and config.
    async fn describe(&self, rec: PbImage) -> Result<Image> {
        let name = rec.name.clone();
        let target = rec
            .target
            .clone()
            .ok_or_else(|| Error::invalid_image(&name, "image record has no target"))?;
        let mut desc = Descriptor {
            media_type: target.media_type.clone(),
            digest: target.digest.clone(),
            size: target.size,
            platform: None,
            annotations: HashMap::new(),
        };
        let mut size = 0u64;
        for _ in 0..5 {
            if !is_index(&desc.media_type) {
                break;
            }
            let bytes = self.read_blob(&desc.digest).await?;
            size += bytes.len() as u64;
            let idx: Index = serde_json::from_slice(&bytes)
                .map_err(|e| Error::invalid_image(&name, format!("index: {e}")))?;
            desc = pick_manifest(&idx)
                .ok_or_else(|| Error::invalid_image(&name, "no manifest for this platform"))?
                .clone();
        }
        if !is_manifest(&desc.media_type) {
            return Err(Error::invalid_image(
                &name,
                format!("unsupported media type {}", desc.media_type),
            ));
        }
        let mbytes = self.read_blob(&desc.digest).await?;
        let manifest: Manifest = serde_json::from_slice(&mbytes)
            .map_err(|e| Error::invalid_image(&name, format!("manifest: {e}")))?;
        let cbytes = self.read_blob(&manifest.config.digest).await?;
        let config: ConfigFile = serde_json::from_slice(&cbytes)
            .map_err(|e| Error::invalid_image(&name, format!("config: {e}")))?;
        size += (mbytes.len() + cbytes.len()) as u64
            + manifest
                .layers
                .iter()
                .map(|l| l.size.max(0) as u64)
                .sum::<u64>();
        let run = config.config.clone().unwrap_or_default();
        let mut exposed: Vec<String> = run.exposed_ports.unwrap_or_default().into_keys().collect();
        exposed.sort();
        let last_used = rec.labels.get(LAST_USED_LABEL).and_then(|s| s.parse().ok());
        Ok(Image {
            reference: ImageRef {
                name,
                digest: target.digest,
                config_digest: manifest.config.digest.clone(),
                chain_id: chain_ids(&config.rootfs.diff_ids).pop().unwrap_or_default(),
            },
            size,
            config: ImageConfig {
                entrypoint: run.entrypoint.unwrap_or_default(),
                cmd: run.cmd.unwrap_or_default(),
                env: run.env.unwrap_or_default(),
                working_dir: run.working_dir.unwrap_or_default(),
                user: run.user.unwrap_or_default(),
                stop_signal: run.stop_signal,
                exposed_ports: exposed,
                labels: run.labels.unwrap_or_default(),
            },
            created_at: ts(&rec.created_at),
            last_used,
            labels: rec.labels,
        })
    }

    /// Removes an image record; its content and snapshots are collected by containerd
    /// (synchronously) when no other image shares them. Removing a missing image is not an
    /// error.
    pub async fn remove_image(&self, reference: &str) -> Result<()> {
        let name = normalize(reference)?;
        match self
            .images_api()
            .delete(self.req(DeleteImageRequest {
                name: name.clone(),
                sync: true,
                target: None,
            }))
            .await
        {
            Ok(_) => Ok(()),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
            Err(e) => Err(Error::containerd("delete image", &name, e)),
        }
    }

    /// Pins an image ([`PINNED_LABEL`]): image GC leaves it alone.
    pub async fn pin_image(&self, name: &str) -> Result<()> {
        let update = UpdateImageRequest {
            image: Some(PbImage {
                name: name.to_string(),
                labels: HashMap::from([(PINNED_LABEL.to_string(), "pinned".to_string())]),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec![format!("labels.{PINNED_LABEL}")],
            }),
            source_date_epoch: None,
        };
        self.images_api()
            .update(self.req(update))
            .await
            .map_err(|e| Error::containerd("pin image", name, e))?;
        Ok(())
    }

    /// Records that a container uses an image now (for LRU image GC).
    pub(crate) async fn mark_image_used(&self, name: &str) {
        let now = jiff::Timestamp::now();
        self.last_used
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), now);
        let update = UpdateImageRequest {
            image: Some(PbImage {
                name: name.to_string(),
                labels: HashMap::from([(LAST_USED_LABEL.to_string(), now.to_string())]),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec![format!("labels.{LAST_USED_LABEL}")],
            }),
            source_date_epoch: None,
        };
        if let Err(e) = self.images_api().update(self.req(update)).await {
            tracing::debug!(image = name, error = %e.message(), "could not label image as used");
        }
    }

    /// Image GC with the kubelet's semantics: when the image filesystem (the one holding
    /// containerd's `root`) is at or above `high_percent` used, removes images not in
    /// `in_use` (names), least recently used first, until usage is below `low_percent`.
    /// Pinned images and images younger than `min_age` (the agent passes
    /// [`MINIMUM_GC_AGE`], the kubelet's `--minimum-image-ttl-duration`) stay.
    #[tracing::instrument(name = "image_gc", skip(self, in_use, root))]
    pub async fn image_gc(
        &self,
        root: &Path,
        high_percent: u8,
        low_percent: u8,
        min_age: std::time::Duration,
        in_use: &HashSet<String>,
    ) -> Result<GcReport> {
        if low_percent > high_percent || high_percent > 100 {
            return Err(Error::Config(format!(
                "image gc thresholds must satisfy low ({low_percent}) <= high ({high_percent}) <= 100"
            )));
        }
        let before = FsUsage::of(root)?;
        let mut report = GcReport {
            usage_before: before.percent(),
            usage_after: before.percent(),
            removed: Vec::new(),
        };
        let Some(mut to_free) = bytes_to_free(before, high_percent, low_percent) else {
            return Ok(report);
        };
        let in_use: HashSet<String> = in_use
            .iter()
            .map(|n| normalize(n).unwrap_or_else(|_| n.clone()))
            .collect();
        let images = self.images().await?;
        for image in gc_candidates(&images, &in_use, jiff::Timestamp::now(), min_age) {
            if to_free == 0 {
                break;
            }
            let before_rm = FsUsage::of(root)?;
            self.remove_image(&image.reference.name).await?;
            let after_rm = FsUsage::of(root)?;
            let freed = after_rm
                .available_bytes
                .saturating_sub(before_rm.available_bytes);
            tracing::info!(image = %image.reference.name, freed, "image garbage-collected");
            report.removed.push(image.reference.name.clone());
            to_free = to_free.saturating_sub(freed.max(1));
            if after_rm.percent() < low_percent as f64 {
                break;
            }
        }
        report.usage_after = FsUsage::of(root)?.percent();
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(name: &str, created: i64, used: Option<i64>) -> Image {
        Image {
            reference: ImageRef {
                name: name.into(),
                digest: String::new(),
                config_digest: String::new(),
                chain_id: String::new(),
            },
            size: 1,
            config: ImageConfig::default(),
            created_at: Some(jiff::Timestamp::from_second(created).unwrap()),
            last_used: used.map(|u| jiff::Timestamp::from_second(u).unwrap()),
            labels: HashMap::new(),
        }
    }

    #[test]
    fn gc_frees_down_to_low_only_above_high() {
        let u = FsUsage {
            total_bytes: 1000,
            available_bytes: 100,
        };
        assert_eq!(bytes_to_free(u, 85, 80), Some(100));
        assert_eq!(bytes_to_free(u, 85, 20), Some(700));
        assert_eq!(bytes_to_free(u, 95, 80), None);
        let empty = FsUsage {
            total_bytes: 0,
            available_bytes: 0,
        };
        assert_eq!(bytes_to_free(empty, 85, 80), None);
    }

    #[test]
    fn gc_candidates_are_unused_and_least_recently_used_first() {
        let images = vec![
            img("a", 10, Some(500)),
            img("b", 20, None),
            img("c", 5, Some(100)),
            img("d", 1, None),
        ];
        let in_use = HashSet::from(["d".to_string()]);
        let now = jiff::Timestamp::from_second(1000).unwrap();
        let order: Vec<_> = gc_candidates(&images, &in_use, now, MINIMUM_GC_AGE)
            .iter()
            .map(|i| i.reference.name.as_str())
            .collect();
        assert_eq!(order, ["b", "c", "a"]);
    }

    #[test]
    fn pinned_and_young_images_are_not_candidates() {
        let mut pinned = img("airgap", 1, None);
        pinned
            .labels
            .insert(PINNED_LABEL.to_string(), "pinned".to_string());
        let images = vec![
            pinned,
            img("fresh", 950, None),
            img("used-lately", 1, Some(990)),
            img("old", 1, Some(500)),
        ];
        let now = jiff::Timestamp::from_second(1000).unwrap();
        let order: Vec<_> = gc_candidates(&images, &HashSet::new(), now, MINIMUM_GC_AGE)
            .iter()
            .map(|i| i.reference.name.as_str())
            .collect();
        assert_eq!(order, ["old"]);
    }
}
