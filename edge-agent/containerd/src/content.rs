//! Content store, leases and snapshots: the plumbing shared by import and pull.
//!
//! Everything an import or pull writes is held by a lease until the image records exist,
//! so an import that fails half-way leaves nothing behind once the lease is dropped. The
//! garbage-collection labels (`containerd.io/gc.ref.*`) tie index → manifest → config and
//! layers → the unpacked snapshot, as containerd's own client does.

use std::collections::HashMap;

use containerd_client::services::v1::ApplyRequest;
use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::services::v1::{CreateRequest as LeaseCreate, DeleteRequest as LeaseDelete};
use containerd_client::services::v1::{
    Info, InfoRequest, ReadContentRequest, UpdateRequest, WriteAction, WriteContentRequest,
};
use containerd_client::types::Descriptor as PbDescriptor;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::client::{Client, random_suffix};
use crate::error::{Error, Result};

pub(crate) const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const MT_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub(crate) const MT_OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub(crate) const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub(crate) const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

pub(crate) fn is_index(mt: &str) -> bool {
    mt == MT_OCI_INDEX || mt == MT_DOCKER_LIST
}
pub(crate) fn is_manifest(mt: &str) -> bool {
    mt == MT_OCI_MANIFEST || mt == MT_DOCKER_MANIFEST
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(data)))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(H[(b >> 4) as usize] as char);
        s.push(H[(b & 15) as usize] as char);
    }
    s
}

/// True for a well-formed `sha256:<64 hex>` digest.
pub(crate) fn valid_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    })
}

/// The chain ids of a layer stack (the snapshot names), from the config's diff ids.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => sha256_digest(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// An OCI content descriptor, as it appears in indexes and manifests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub annotations: HashMap<String, String>,
}

impl Descriptor {
    pub(crate) fn to_pb(&self) -> PbDescriptor {
        PbDescriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.size,
            annotations: HashMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Index {
    #[serde(default)]
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Manifest {
    #[serde(default)]
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// The parts of an image config the agent uses.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ConfigFile {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub config: Option<RunConfig>,
    pub rootfs: RootFs,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct RootFs {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RunConfig {
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub stop_signal: Option<String>,
    #[serde(default)]
    pub exposed_ports: Option<HashMap<String, serde_json::Value>>,
    #[serde(default)]
    pub labels: Option<HashMap<String, String>>,
}

/// The platform this agent runs containers for, in OCI terms.
pub(crate) fn host_platform() -> (&'static str, Option<&'static str>) {
    match std::env::consts::ARCH {
        "x86_64" => ("amd64", None),
        "aarch64" => ("arm64", None),
        "arm" => ("arm", Some("v7")),
        "x86" => ("386", None),
        "riscv64" => ("riscv64", None),
        "powerpc64" => ("ppc64le", None),
        "s390x" => ("s390x", None),
        other => (other, None),
    }
}

/// Picks our platform's manifest from an index: an exact match, else the first manifest
/// without a platform (single-platform indexes often leave it out).
pub(crate) fn pick_manifest(index: &Index) -> Option<&Descriptor> {
    let (arch, variant) = host_platform();
    let matches = |d: &&Descriptor| match &d.platform {
        Some(p) => {
            p.os == "linux"
                && p.architecture == arch
                && (variant.is_none() || p.variant.as_deref().is_none_or(|v| Some(v) == variant))
        }
        None => false,
    };
    index
        .manifests
        .iter()
        .filter(|d| is_manifest(&d.media_type) || is_index(&d.media_type))
        .find(matches)
        .or_else(|| index.manifests.iter().find(|d| d.platform.is_none()))
}

/// A lease that keeps what is written under it until dropped with [`Lease::release`].
#[derive(Debug)]
pub(crate) struct Lease {
    pub id: String,
}

impl Client {
    /// A lease that expires on its own after an hour, should the agent die holding it.
    pub(crate) async fn create_lease(&self, purpose: &str) -> Result<Lease> {
        let id = format!("kedge-{purpose}-{}", random_suffix());
        let expire = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
        let labels = HashMap::from([("containerd.io/gc.expire".to_string(), expire.to_string())]);
        self.leases()
            .create(self.req(LeaseCreate {
                id: id.clone(),
                labels,
            }))
            .await
            .map_err(|e| Error::containerd("create lease", &id, e))?;
        Ok(Lease { id })
    }

    /// Drops a lease; with `sync`, containerd collects what only it held before answering.
    pub(crate) async fn release_lease(&self, lease: Lease, sync: bool) -> Result<()> {
        self.leases()
            .delete(self.req(LeaseDelete {
                id: lease.id.clone(),
                sync,
            }))
            .await
            .map_err(|e| Error::containerd("delete lease", &lease.id, e))?;
        Ok(())
    }

    /// The content store's record of a blob, if it holds it.
    pub(crate) async fn content_info(&self, digest: &str) -> Result<Option<Info>> {
        match self
            .content()
            .info(self.req(InfoRequest {
                digest: digest.to_string(),
            }))
            .await
        {
            Ok(r) => Ok(r.into_inner().info),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(e) => Err(Error::containerd("content info", digest, e)),
        }
    }

    /// Reads a whole (small) blob: an index, a manifest, a config.
    pub(crate) async fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let mut stream = self
            .content()
            .read(self.req(ReadContentRequest {
                digest: digest.to_string(),
                offset: 0,
                size: 0,
            }))
            .await
            .map_err(|e| Error::containerd("read content", digest, e))?
            .into_inner();
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| Error::containerd("read content", digest, e))?;
            out.extend_from_slice(&chunk.data);
        }
        Ok(out)
    }

    /// Sets labels on a blob (the gc references of an index, manifest or config).
    pub(crate) async fn label_blob(
        &self,
        digest: &str,
        labels: HashMap<String, String>,
    ) -> Result<()> {
        if labels.is_empty() {
            return Ok(());
        }
        let paths = labels.keys().map(|k| format!("labels.{k}")).collect();
        self.content()
            .update(self.req(UpdateRequest {
                info: Some(Info {
                    digest: digest.to_string(),
                    labels,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask { paths }),
            }))
            .await
            .map_err(|e| Error::containerd("label content", digest, e))?;
        Ok(())
    }

    /// Starts writing one blob under a lease. `expected` is checked by containerd at commit.
    pub(crate) async fn blob_writer(
        &self,
        lease: &Lease,
        expected: &str,
        total: i64,
    ) -> Result<BlobWriter> {
        let (tx, rx) = tokio::sync::mpsc::channel::<WriteContentRequest>(2);
        let rx =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
        let reference = format!(
            "kedge-{}-{}",
            expected.trim_start_matches("sha256:"),
            random_suffix()
        );
        // The first message opens the writer; containerd answers each message once.
        tx.send(WriteContentRequest {
            action: WriteAction::Stat as i32,
            r#ref: reference.clone(),
            total,
            expected: expected.to_string(),
            ..Default::default()
        })
        .await
        .map_err(|_| Error::Config("content writer closed".into()))?;
        let mut content = self.content();
        let resp = content
            .write(self.req_leased(rx, &lease.id))
            .await
            .map_err(|e| Error::containerd("write content", expected, e))?;
        let mut responses = resp.into_inner();
        match responses.next().await {
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(Error::containerd("write content", expected, e)),
            None => {
                return Err(Error::containerd(
                    "write content",
                    expected,
                    tonic::Status::unavailable("stream closed"),
                ));
            }
        }
        Ok(BlobWriter {
            tx,
            responses,
            reference,
            expected: expected.to_string(),
            total,
            offset: 0,
        })
    }

    /// Writes a whole in-memory blob, unless the store already has it.
    pub(crate) async fn write_blob(&self, lease: &Lease, digest: &str, data: &[u8]) -> Result<()> {
        if self.content_info(digest).await?.is_some() {
            return Ok(());
        }
        let mut w = self.blob_writer(lease, digest, data.len() as i64).await?;
        for chunk in data.chunks(1 << 20) {
            w.write(chunk).await?;
        }
        w.commit().await
    }

    /// Prepares an active snapshot, applies a layer into it and commits it as `chain_id`.
    /// Returns false when the snapshot already existed.
    pub(crate) async fn unpack_layer(
        &self,
        lease: &Lease,
        layer: &Descriptor,
        parent: Option<&str>,
        chain_id: &str,
        diff_id: &str,
    ) -> Result<bool> {
        let snapshots = self.snapshots();
        let snapshotter = self.snapshotter.clone();
        match snapshots
            .clone()
            .stat(self.req(StatSnapshotRequest {
                snapshotter: snapshotter.clone(),
                key: chain_id.to_string(),
            }))
            .await
        {
            Ok(_) => return Ok(false),
            Err(s) if s.code() == tonic::Code::NotFound => {}
            Err(e) => return Err(Error::containerd("stat snapshot", chain_id, e)),
        }
        let key = format!("kedge-extract-{}-{chain_id}", random_suffix());
        let mounts = snapshots
            .clone()
            .prepare(self.req_leased(
                PrepareSnapshotRequest {
                    snapshotter: snapshotter.clone(),
                    key: key.clone(),
                    parent: parent.unwrap_or_default().to_string(),
                    labels: HashMap::new(),
                },
                &lease.id,
            ))
            .await
            .map_err(|e| Error::containerd("prepare snapshot", &key, e))?
            .into_inner()
            .mounts;
        let applied = self
            .diff()
            .apply(self.req_leased(
                ApplyRequest {
                    diff: Some(layer.to_pb()),
                    mounts,
                    payloads: HashMap::new(),
                    sync_fs: false,
                },
                &lease.id,
            ))
            .await;
        let remove_active = || async {
            let _ = self
                .snapshots()
                .remove(self.req(RemoveSnapshotRequest {
                    snapshotter: snapshotter.clone(),
                    key: key.clone(),
                }))
                .await;
        };
        let applied = match applied {
            Ok(r) => r.into_inner().applied,
            Err(e) => {
                remove_active().await;
                return Err(Error::containerd("apply layer", &layer.digest, e));
            }
        };
        if let Some(applied) = applied
            && applied.digest != diff_id
        {
            remove_active().await;
            return Err(Error::invalid_image(
                &layer.digest,
                format!(
                    "layer unpacks to {} but the image config says {diff_id}",
                    applied.digest
                ),
            ));
        }
        match snapshots
            .clone()
            .commit(self.req_leased(
                CommitSnapshotRequest {
                    snapshotter: snapshotter.clone(),
                    name: chain_id.to_string(),
                    key: key.clone(),
                    labels: HashMap::new(),
                },
                &lease.id,
            ))
            .await
        {
            Ok(_) => Ok(true),
            Err(s) if s.code() == tonic::Code::AlreadyExists => {
                remove_active().await;
                Ok(false)
            }
            Err(e) => {
                remove_active().await;
                Err(Error::containerd("commit snapshot", chain_id, e))
            }
        }
    }
}

/// One blob being written to the content store.
#[derive(Debug)]
pub(crate) struct BlobWriter {
    tx: tokio::sync::mpsc::Sender<WriteContentRequest>,
    responses: tonic::Streaming<containerd_client::services::v1::WriteContentResponse>,
    reference: String,
    expected: String,
    total: i64,
    offset: i64,
}

impl BlobWriter {
    async fn round_trip(&mut self, msg: WriteContentRequest) -> Result<()> {
        let closed = || {
            Error::containerd(
                "write content",
                self.expected.clone(),
                tonic::Status::unavailable("containerd closed the write stream"),
            )
        };
        if self.tx.send(msg).await.is_err() {
            return Err(closed());
        }
        match self.responses.next().await {
            Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(Error::containerd("write content", self.expected.clone(), e)),
            None => Err(closed()),
        }
    }

    pub(crate) async fn write(&mut self, data: &[u8]) -> Result<()> {
        let msg = WriteContentRequest {
            action: WriteAction::Write as i32,
            r#ref: self.reference.clone(),
            total: self.total,
            expected: self.expected.clone(),
            offset: self.offset,
            data: data.to_vec(),
            ..Default::default()
        };
        self.round_trip(msg).await?;
        self.offset += data.len() as i64;
        Ok(())
    }

    /// Commits: containerd checks the size and the digest.
    pub(crate) async fn commit(mut self) -> Result<()> {
        if self.offset != self.total {
            return Err(Error::invalid_image(
                self.expected.clone(),
                format!("blob is {} bytes, expected {}", self.offset, self.total),
            ));
        }
        let msg = WriteContentRequest {
            action: WriteAction::Commit as i32,
            r#ref: self.reference.clone(),
            total: self.total,
            expected: self.expected.clone(),
            offset: self.offset,
            ..Default::default()
        };
        match self.round_trip(msg).await {
            Ok(()) => Ok(()),
            Err(Error::Containerd { source, .. })
                if source.code() == tonic::Code::AlreadyExists =>
            {
                Ok(())
            }
            Err(Error::Containerd { source, .. })
                if source.code() == tonic::Code::FailedPrecondition
                    || source.message().contains("digest") =>
            {
                Err(Error::invalid_image(
                    self.expected.clone(),
                    format!(
                        "blob content does not match its digest: {}",
                        source.message()
                    ),
                ))
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_oci_definition() {
        let a = sha256_digest(b"a");
        let b = sha256_digest(b"b");
        let ids = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], a);
        assert_eq!(ids[1], sha256_digest(format!("{a} {b}").as_bytes()));
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn digests_are_checked_for_form() {
        assert!(valid_digest(&sha256_digest(b"x")));
        assert!(!valid_digest("sha256:abc"));
        assert!(!valid_digest("md5:00"));
        assert!(!valid_digest(&format!("sha256:{}", "A".repeat(64))));
    }

    #[test]
    fn picks_our_platform_from_an_index() {
        let (arch, _) = host_platform();
        let mk = |a: &str, d: &str| Descriptor {
            media_type: MT_OCI_MANIFEST.into(),
            digest: d.into(),
            size: 1,
            platform: Some(Platform {
                architecture: a.into(),
                os: "linux".into(),
                variant: None,
            }),
            annotations: HashMap::new(),
        };
        let idx = Index {
            schema_version: 2,
            media_type: None,
            manifests: vec![mk("mips", "sha256:1"), mk(arch, "sha256:2")],
        };
        assert_eq!(pick_manifest(&idx).unwrap().digest, "sha256:2");
        let none = Index {
            schema_version: 2,
            media_type: None,
            manifests: vec![mk("mips", "sha256:1")],
        };
        assert!(pick_manifest(&none).is_none());
    }
}
