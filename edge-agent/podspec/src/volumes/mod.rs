//! A pod's volumes, materialised under `<pod_dir>/volumes/<plugin>/<name>` as
//! the kubelet lays them out (`kubernetes.io~empty-dir`, `~configmap`,
//! `~secret`, `~downward-api`, `~projected`); hostPath volumes are checked
//! where they are.
//!
//! - emptyDir: a directory, mode 0777; `medium: Memory` mounts a tmpfs on it
//!   (through the [`Mounter`], so this needs root), sized as the kubelet sizes
//!   it: the smallest of `sizeLimit`, the pod's memory limit and the node's
//!   allocatable memory.
//! - configMap, secret, downwardAPI, projected: files written by the atomic
//!   writer ([`atomic`]), so that [`update_volumes`] can re-apply a changed
//!   ConfigMap on a live pod and the container sees the switch at once. As
//!   upstream, secret, downwardAPI and projected volumes sit on a tmpfs.
//! - `fsGroup`: the volume's files get that group and group read (and write,
//!   for emptyDir) permission, directories the setgid bit, as upstream's
//!   `SetVolumeOwnership`.
//!
//! Errors name the volume and say what is wrong, in upstream's words for the
//! `FailedMount` event ([`VolumeError::event_message`]).

pub mod atomic;
mod mounter;

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, ErrorKind};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, Pod, Secret, ServiceAccountTokenProjection, Volume,
};

pub use atomic::{FileProjection, Payload};
pub use mounter::{HostMounter, Mounter, PlainDirs, is_mount_point};

use crate::fieldpath::{self, FieldError};
use crate::node::NodeInfo;
use crate::quantity::{Quantity, QuantityError};
use crate::resources::pod_memory_limit;

/// The mode API defaulting gives configMap, secret, downwardAPI and projected files.
pub const DEFAULT_MODE: u32 = 0o644;

/// What a pod's volumes may read.
#[derive(Debug, Clone, Copy)]
pub struct VolumeSources<'a> {
    /// ConfigMaps of the pod's namespace, by name.
    pub config_maps: &'a BTreeMap<String, ConfigMap>,
    /// Secrets of the pod's namespace, by name.
    pub secrets: &'a BTreeMap<String, Secret>,
    /// The node (allocatable, for resourceFieldRef and tmpfs sizes).
    pub node: &'a NodeInfo,
    /// The ServiceAccount tokens for the pod's `serviceAccountToken`
    /// projections, by what each asks for (the pod manager obtains them; see
    /// [`token_projections`]).
    pub service_account_tokens: &'a BTreeMap<TokenProjection, String>,
}

/// What one `serviceAccountToken` projection asks for: a token for an audience
/// (empty: the API server's own) that lives `expiration_seconds` (API defaulting
/// gives 3600).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TokenProjection {
    pub audience: String,
    pub expiration_seconds: i64,
}

impl TokenProjection {
    /// The lifetime a projection without `expirationSeconds` gets.
    pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;

    fn of(p: &ServiceAccountTokenProjection) -> TokenProjection {
        TokenProjection {
            audience: p.audience.clone().unwrap_or_default(),
            expiration_seconds: p
                .expiration_seconds
                .unwrap_or(Self::DEFAULT_EXPIRATION_SECONDS),
        }
    }
}

/// The distinct tokens a pod's projected volumes need, in order.
pub fn token_projections(pod: &Pod) -> Vec<TokenProjection> {
    let mut out: Vec<TokenProjection> = pod
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| v.projected.as_ref())
        .flat_map(|p| p.sources.iter().flatten())
        .filter_map(|s| s.service_account_token.as_ref())
        .map(TokenProjection::of)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The volume plugins kedge implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VolumeKind {
    EmptyDir,
    ConfigMap,
    Secret,
    DownwardApi,
    Projected,
    HostPath,
}

impl VolumeKind {
    /// The kubelet's directory name for the plugin (`kubernetes.io~configmap`).
    pub fn plugin_dir(&self) -> &'static str {
        match self {
            VolumeKind::EmptyDir => "kubernetes.io~empty-dir",
            VolumeKind::ConfigMap => "kubernetes.io~configmap",
            VolumeKind::Secret => "kubernetes.io~secret",
            VolumeKind::DownwardApi => "kubernetes.io~downward-api",
            VolumeKind::Projected => "kubernetes.io~projected",
            VolumeKind::HostPath => "kubernetes.io~host-path",
        }
    }

    /// Whether the plugin's content lives in memory (upstream wraps these in
    /// an emptyDir with `medium: Memory`).
    fn memory_backed(&self) -> bool {
        matches!(
            self,
            VolumeKind::Secret | VolumeKind::DownwardApi | VolumeKind::Projected
        )
    }

    /// Whether containers always get it read-only (upstream's `ReadOnly` attribute).
    fn read_only(&self) -> bool {
        matches!(
            self,
            VolumeKind::ConfigMap
                | VolumeKind::Secret
                | VolumeKind::DownwardApi
                | VolumeKind::Projected
        )
    }
}

/// A volume ready to be bind-mounted into containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedVolume {
    /// The volume's name in the pod spec.
    pub name: String,
    pub kind: VolumeKind,
    /// Where it is on the host.
    pub host_path: PathBuf,
    /// Whether every mount of it is read-only (configMap, secret, downwardAPI,
    /// projected), whatever the volumeMount says.
    pub read_only: bool,
}

/// A volume that could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("volume {volume:?}: {failure}")]
pub struct VolumeError {
    /// The volume's name in the pod spec.
    pub volume: String,
    #[source]
    pub failure: VolumeFailure,
}

impl VolumeError {
    /// The message of upstream's `FailedMount` event.
    pub fn event_message(&self) -> String {
        format!(
            "MountVolume.SetUp failed for volume {:?} : {}",
            self.volume, self.failure
        )
    }
}

/// What went wrong with a volume.
#[derive(Debug, thiserror::Error)]
pub enum VolumeFailure {
    #[error("configmap {0:?} not found")]
    ConfigMapNotFound(String),
    #[error("secret {0:?} not found")]
    SecretNotFound(String),
    #[error("configmap references non-existent config key: {0}")]
    ConfigMapKey(String),
    #[error("references non-existent secret key: {0}")]
    SecretKey(String),
    #[error(transparent)]
    Field(#[from] FieldError),
    #[error(transparent)]
    Write(#[from] atomic::AtomicError),
    #[error("hostPath type check failed: {path} is not a {what}")]
    HostPathType { path: PathBuf, what: &'static str },
    #[error(
        "{0} is an invalid volume type: use Directory, DirectoryOrCreate, File, FileOrCreate, Socket, CharDevice or BlockDevice"
    )]
    BadHostPathType(String),
    #[error("hostPath {0:?} is not absolute: give an absolute path")]
    RelativeHostPath(String),
    #[error("unknown emptyDir medium {0:?}: use \"\" (the node's disk) or Memory")]
    BadMedium(String),
    #[error("mode {0} is out of range: use a mode from 0 to 0777")]
    BadMode(i32),
    #[error("bad sizeLimit: {0}")]
    SizeLimit(#[source] QuantityError),
    #[error(
        "no ServiceAccount token for the serviceAccountToken projection yet: the node obtains one from the control plane (is it reachable?)"
    )]
    NoToken,
    #[error(
        "{0} volumes are not supported by kedge: use emptyDir, configMap, secret, downwardAPI, projected or hostPath"
    )]
    Unsupported(&'static str),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "mount tmpfs on {path}: {source}: run the agent as root (or give it PlainDirs to keep memory volumes on disk)"
    )]
    Mount {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("unmount {path}: {source}: stop the pod's containers first")]
    Unmount {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "set fsGroup ownership under {path}: {source}: the agent must run as root to change group ownership"
    )]
    Ownership {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_failure(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> VolumeFailure + use<> {
    let path = path.to_path_buf();
    move |source| VolumeFailure::Io { op, path, source }
}

/// A volume's source, as kedge handles it.
enum Source<'a> {
    EmptyDir(&'a k8s_openapi::api::core::v1::EmptyDirVolumeSource),
    ConfigMap(&'a k8s_openapi::api::core::v1::ConfigMapVolumeSource),
    Secret(&'a k8s_openapi::api::core::v1::SecretVolumeSource),
    DownwardApi(&'a k8s_openapi::api::core::v1::DownwardAPIVolumeSource),
    Projected(&'a k8s_openapi::api::core::v1::ProjectedVolumeSource),
    HostPath(&'a k8s_openapi::api::core::v1::HostPathVolumeSource),
    /// No source set: API defaulting makes that an emptyDir.
    Default,
}

fn source(v: &Volume) -> Result<Source<'_>, VolumeFailure> {
    if let Some(s) = &v.empty_dir {
        return Ok(Source::EmptyDir(s));
    }
    if let Some(s) = &v.config_map {
        return Ok(Source::ConfigMap(s));
    }
    if let Some(s) = &v.secret {
        return Ok(Source::Secret(s));
    }
    if let Some(s) = &v.downward_api {
        return Ok(Source::DownwardApi(s));
    }
    if let Some(s) = &v.projected {
        return Ok(Source::Projected(s));
    }
    if let Some(s) = &v.host_path {
        return Ok(Source::HostPath(s));
    }
    let unsupported = [
        (v.persistent_volume_claim.is_some(), "persistentVolumeClaim"),
        (v.ephemeral.is_some(), "ephemeral"),
        (v.csi.is_some(), "csi"),
        (v.nfs.is_some(), "nfs"),
        (v.iscsi.is_some(), "iscsi"),
        (v.git_repo.is_some(), "gitRepo"),
        (v.image.is_some(), "image"),
        (v.aws_elastic_block_store.is_some(), "awsElasticBlockStore"),
        (v.azure_disk.is_some(), "azureDisk"),
        (v.azure_file.is_some(), "azureFile"),
        (v.cephfs.is_some(), "cephfs"),
        (v.cinder.is_some(), "cinder"),
        (v.fc.is_some(), "fc"),
        (v.flex_volume.is_some(), "flexVolume"),
        (v.flocker.is_some(), "flocker"),
        (v.gce_persistent_disk.is_some(), "gcePersistentDisk"),
        (v.glusterfs.is_some(), "glusterfs"),
        (v.photon_persistent_disk.is_some(), "photonPersistentDisk"),
        (v.portworx_volume.is_some(), "portworxVolume"),
        (v.quobyte.is_some(), "quobyte"),
        (v.rbd.is_some(), "rbd"),
        (v.scale_io.is_some(), "scaleIO"),
        (v.storageos.is_some(), "storageos"),
        (v.vsphere_volume.is_some(), "vsphereVolume"),
    ];
    match unsupported.iter().find(|(set, _)| *set) {
        Some((_, name)) => Err(VolumeFailure::Unsupported(name)),
        None => Ok(Source::Default),
    }
}

fn mode(m: Option<i32>, default: u32) -> Result<u32, VolumeFailure> {
    match m {
        None => Ok(default),
        Some(v) if (0..=0o777).contains(&v) => Ok(v as u32),
        Some(v) => Err(VolumeFailure::BadMode(v)),
    }
}

fn config_map_payload(
    name: &str,
    items: Option<&[KeyToPath]>,
    default_mode: u32,
    optional: bool,
    sources: &VolumeSources<'_>,
) -> Result<Payload, VolumeFailure> {
    let cm = match sources.config_maps.get(name) {
        Some(cm) => cm,
        None if optional => return Ok(Payload::new()),
        None => return Err(VolumeFailure::ConfigMapNotFound(name.to_string())),
    };
    let lookup = |key: &str| -> Option<Vec<u8>> {
        cm.data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|v| v.as_bytes().to_vec())
            .or_else(|| {
                cm.binary_data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .map(|v| v.0.clone())
            })
    };
    let mut payload = Payload::new();
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (k, v) in cm.data.iter().flatten() {
                payload.insert(
                    k.clone(),
                    FileProjection {
                        data: v.as_bytes().to_vec(),
                        mode: default_mode,
                    },
                );
            }
            for (k, v) in cm.binary_data.iter().flatten() {
                payload.insert(
                    k.clone(),
                    FileProjection {
                        data: v.0.clone(),
                        mode: default_mode,
                    },
                );
            }
        }
        Some(items) => {
            for item in items {
                let Some(data) = lookup(&item.key) else {
                    if optional {
                        continue;
                    }
                    return Err(VolumeFailure::ConfigMapKey(item.key.clone()));
                };
                payload.insert(
                    item.path.clone(),
                    FileProjection {
                        data,
                        mode: mode(item.mode, default_mode)?,
                    },
                );
            }
        }
    }
    Ok(payload)
}

fn secret_payload(
    name: &str,
    items: Option<&[KeyToPath]>,
    default_mode: u32,
    optional: bool,
    sources: &VolumeSources<'_>,
) -> Result<Payload, VolumeFailure> {
    let secret = match sources.secrets.get(name) {
        Some(s) => s,
        None if optional => return Ok(Payload::new()),
        None => return Err(VolumeFailure::SecretNotFound(name.to_string())),
    };
    let mut payload = Payload::new();
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (k, v) in secret.data.iter().flatten() {
                payload.insert(
                    k.clone(),
                    FileProjection {
                        data: v.0.clone(),
                        mode: default_mode,
                    },
                );
            }
        }
        Some(items) => {
            for item in items {
                let Some(data) = secret.data.as_ref().and_then(|d| d.get(&item.key)) else {
                    if optional {
                        continue;
                    }
                    return Err(VolumeFailure::SecretKey(item.key.clone()));
                };
                payload.insert(
                    item.path.clone(),
                    FileProjection {
                        data: data.0.clone(),
                        mode: mode(item.mode, default_mode)?,
                    },
                );
            }
        }
    }
    Ok(payload)
}

fn downward_payload(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: u32,
    node: &NodeInfo,
) -> Result<Payload, VolumeFailure> {
    let mut payload = Payload::new();
    for item in items {
        let data = if let Some(f) = &item.field_ref {
            fieldpath::metadata_field(pod, &f.field_path)?
        } else if let Some(r) = &item.resource_field_ref {
            let name = r.container_name.as_deref().unwrap_or("");
            let container = fieldpath::find_container(pod, name)
                .ok_or_else(|| FieldError::ContainerNotFound(name.to_string()))?;
            fieldpath::container_resource(r, container, node)?
        } else {
            String::new()
        };
        payload.insert(
            item.path.clone(),
            FileProjection {
                data: data.into_bytes(),
                mode: mode(item.mode, default_mode)?,
            },
        );
    }
    Ok(payload)
}

fn projected_payload(
    pod: &Pod,
    src: &k8s_openapi::api::core::v1::ProjectedVolumeSource,
    sources: &VolumeSources<'_>,
    fs_group: Option<u32>,
) -> Result<Payload, VolumeFailure> {
    let default_mode = mode(src.default_mode, DEFAULT_MODE)?;
    let mut payload = Payload::new();
    for p in src.sources.iter().flatten() {
        if let Some(cm) = &p.config_map {
            payload.extend(config_map_payload(
                &cm.name,
                cm.items.as_deref(),
                default_mode,
                cm.optional == Some(true),
                sources,
            )?);
        }
        if let Some(s) = &p.secret {
            payload.extend(secret_payload(
                &s.name,
                s.items.as_deref(),
                default_mode,
                s.optional == Some(true),
                sources,
            )?);
        }
        if let Some(d) = &p.downward_api {
            payload.extend(downward_payload(
                pod,
                d.items.as_deref().unwrap_or_default(),
                default_mode,
                sources.node,
            )?);
        }
        if let Some(t) = &p.service_account_token {
            let token = sources
                .service_account_tokens
                .get(&TokenProjection::of(t))
                .ok_or(VolumeFailure::NoToken)?;
            // with fsGroup, 0600 here and the group read bit from the ownership pass: 0640
            let mode = if fs_group.is_some() {
                0o600
            } else {
                default_mode
            };
            payload.insert(
                t.path.clone(),
                FileProjection {
                    data: token.as_bytes().to_vec(),
                    mode,
                },
            );
        }
        // clusterTrustBundle projections (alpha upstream) are not supported: nothing is written
    }
    Ok(payload)
}

/// The size of a memory-backed volume: the smallest positive of the node's
/// allocatable memory, the pod's memory limit and the volume's `sizeLimit`
/// (upstream's `calculateEmptyDirMemorySize`); `None` leaves the kernel's
/// default (half of RAM).
fn memory_size(
    pod: &Pod,
    node: &NodeInfo,
    size_limit: Option<&Quantity>,
) -> Result<Option<u64>, VolumeFailure> {
    let mut size = node
        .allocatable_of("memory")
        .map_err(VolumeFailure::SizeLimit)?
        .value();
    let mut smaller = |candidate: i64| {
        if candidate > 0 && (size <= 0 || candidate <= size) {
            size = candidate;
        }
    };
    if let Some(pod_limit) = pod_memory_limit(pod).map_err(VolumeFailure::SizeLimit)? {
        smaller(pod_limit);
    }
    if let Some(limit) = size_limit {
        smaller(limit.value());
    }
    Ok(u64::try_from(size).ok().filter(|s| *s > 0))
}

/// Creates `dir` (and its parents) and gives it `mode` whatever the umask.
fn make_dir(dir: &Path, mode: u32) -> Result<(), VolumeFailure> {
    fs::create_dir_all(dir).map_err(io_failure("create", dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode)).map_err(io_failure("chmod", dir))
}

/// Upstream's `SetVolumeOwnership`, without following symlinks: every entry
/// gets group `gid`; files and directories get group read (and write unless
/// `read_only`); directories also group search and the setgid bit.
pub fn set_ownership(root: &Path, gid: u32, read_only: bool) -> io::Result<()> {
    let meta = fs::symlink_metadata(root)?;
    std::os::unix::fs::lchown(root, None, Some(gid))?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mut mask = if read_only { 0o440 } else { 0o660 };
    if meta.is_dir() {
        mask |= 0o2000 | 0o110;
    }
    let mode = meta.mode() & 0o7777;
    if mode | mask != mode {
        fs::set_permissions(root, fs::Permissions::from_mode(mode | mask))?;
    }
    if meta.is_dir() {
        for entry in fs::read_dir(root)? {
            set_ownership(&entry?.path(), gid, read_only)?;
        }
    }
    Ok(())
}

fn fs_group(pod: &Pod) -> Option<u32> {
    pod.spec
        .as_ref()?
        .security_context
        .as_ref()?
        .fs_group
        .and_then(|g| u32::try_from(g).ok())
}

/// Sets up one volume; returns it and whether its content changed.
fn setup(
    pod_dir: &Path,
    pod: &Pod,
    volume: &Volume,
    sources: &VolumeSources<'_>,
    mounter: &dyn Mounter,
) -> Result<(PreparedVolume, bool), VolumeFailure> {
    let fs_group = fs_group(pod);
    let src = source(volume)?;
    let kind = match &src {
        Source::EmptyDir(_) | Source::Default => VolumeKind::EmptyDir,
        Source::ConfigMap(_) => VolumeKind::ConfigMap,
        Source::Secret(_) => VolumeKind::Secret,
        Source::DownwardApi(_) => VolumeKind::DownwardApi,
        Source::Projected(_) => VolumeKind::Projected,
        Source::HostPath(_) => VolumeKind::HostPath,
    };
    if let Source::HostPath(hp) = &src {
        let path = host_path(&hp.path, hp.type_.as_deref().unwrap_or(""))?;
        return Ok((
            PreparedVolume {
                name: volume.name.clone(),
                kind,
                host_path: path,
                read_only: false,
            },
            false,
        ));
    }
    let dir = pod_dir
        .join("volumes")
        .join(kind.plugin_dir())
        .join(&volume.name);
    let prepared = PreparedVolume {
        name: volume.name.clone(),
        kind,
        host_path: dir.clone(),
        read_only: kind.read_only(),
    };

    let (memory, size_limit) = match &src {
        Source::EmptyDir(e) => {
            let memory = match e.medium.as_deref().unwrap_or("") {
                "" => false,
                "Memory" => true,
                other => return Err(VolumeFailure::BadMedium(other.to_string())),
            };
            let limit = e
                .size_limit
                .as_ref()
                .map(|q| Quantity::parse(&q.0))
                .transpose()
                .map_err(VolumeFailure::SizeLimit)?;
            (memory, limit)
        }
        _ => (kind.memory_backed(), None),
    };

    let existed = dir.exists();
    make_dir(&dir, 0o777)?;
    if memory
        && !mounter
            .is_mount_point(&dir)
            .map_err(io_failure("stat", &dir))?
    {
        let size = memory_size(pod, sources.node, size_limit.as_ref())?;
        mounter
            .mount_tmpfs(&dir, size)
            .map_err(|source| VolumeFailure::Mount {
                path: dir.clone(),
                source,
            })?;
        tracing::debug!(volume = %volume.name, dir = %dir.display(), size, "mounted tmpfs");
    }

    let payload = match &src {
        Source::EmptyDir(_) | Source::Default | Source::HostPath(_) => {
            if let Some(gid) = fs_group {
                set_ownership(&dir, gid, false).map_err(|source| VolumeFailure::Ownership {
                    path: dir.clone(),
                    source,
                })?;
            }
            return Ok((prepared, !existed));
        }
        Source::ConfigMap(c) => config_map_payload(
            &c.name,
            c.items.as_deref(),
            mode(c.default_mode, DEFAULT_MODE)?,
            c.optional == Some(true),
            sources,
        )?,
        Source::Secret(s) => secret_payload(
            s.secret_name.as_deref().unwrap_or(""),
            s.items.as_deref(),
            mode(s.default_mode, DEFAULT_MODE)?,
            s.optional == Some(true),
            sources,
        )?,
        Source::DownwardApi(d) => downward_payload(
            pod,
            d.items.as_deref().unwrap_or_default(),
            mode(d.default_mode, DEFAULT_MODE)?,
            sources.node,
        )?,
        Source::Projected(p) => projected_payload(pod, p, sources, fs_group)?,
    };
    // the group read bit the ownership pass adds, already in the modes, so that
    // an unchanged volume compares equal to what is on disk
    let payload: Payload = match fs_group {
        Some(_) => payload
            .into_iter()
            .map(|(path, file)| {
                let mode = file.mode | 0o440;
                (path, FileProjection { mode, ..file })
            })
            .collect(),
        None => payload,
    };
    let perms = |ts: &Path| -> io::Result<()> {
        match fs_group {
            Some(gid) => set_ownership(ts, gid, true),
            None => Ok(()),
        }
    };
    let changed = atomic::write(&dir, &payload, &perms)?;
    if let Some(gid) = fs_group {
        set_ownership(&dir, gid, true).map_err(|source| VolumeFailure::Ownership {
            path: dir.clone(),
            source,
        })?;
    }
    Ok((prepared, changed))
}

/// Checks (and for the `*OrCreate` types makes) a hostPath as upstream's
/// `checkType`. An unset type with a missing path makes a directory, as
/// containerd's CRI does for a missing bind source.
fn host_path(path: &str, type_: &str) -> Result<PathBuf, VolumeFailure> {
    let p = PathBuf::from(path);
    if !p.is_absolute() {
        return Err(VolumeFailure::RelativeHostPath(path.to_string()));
    }
    let exists = fs::metadata(&p).is_ok();
    let is = |check: fn(&fs::FileType) -> bool| {
        fs::metadata(&p)
            .map(|m| check(&m.file_type()))
            .unwrap_or(false)
    };
    let wrong = |what| VolumeFailure::HostPathType {
        path: p.clone(),
        what,
    };
    match type_ {
        "" => {
            if !exists {
                make_dir_0755(&p)?;
            }
        }
        "DirectoryOrCreate" | "Directory" => {
            if type_ == "DirectoryOrCreate" && !exists {
                make_dir_0755(&p)?;
            }
            if !is(|t| t.is_dir()) {
                return Err(wrong("directory"));
            }
        }
        "FileOrCreate" | "File" => {
            if type_ == "FileOrCreate" && !exists {
                fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .mode(0o644)
                    .open(&p)
                    .map_err(io_failure("create", &p))?;
            }
            if !is(|t| t.is_file()) {
                return Err(wrong("file"));
            }
        }
        "Socket" => {
            if !is(|t| t.is_socket()) {
                return Err(wrong("socket file"));
            }
        }
        "CharDevice" => {
            if !is(|t| t.is_char_device()) {
                return Err(wrong("character device"));
            }
        }
        "BlockDevice" => {
            if !is(|t| t.is_block_device()) {
                return Err(wrong("block device"));
            }
        }
        other => return Err(VolumeFailure::BadHostPathType(other.to_string())),
    }
    Ok(p)
}

fn make_dir_0755(p: &Path) -> Result<(), VolumeFailure> {
    fs::create_dir_all(p).map_err(io_failure("create", p))?;
    fs::set_permissions(p, fs::Permissions::from_mode(0o755)).map_err(io_failure("chmod", p))
}

/// Sets up every volume of `pod` under `pod_dir` (the kubelet's
/// `pods/<uid>`), in spec order, and returns them for [`crate::volume_mounts`].
/// Calling it again is safe: existing volumes are brought up to date.
pub fn prepare_volumes(
    pod_dir: &Path,
    pod: &Pod,
    sources: &VolumeSources<'_>,
    mounter: &dyn Mounter,
) -> Result<Vec<PreparedVolume>, VolumeError> {
    let span = tracing::debug_span!(
        "prepare_volumes",
        pod = pod.metadata.name.as_deref().unwrap_or("")
    );
    let _enter = span.enter();
    let mut out = Vec::new();
    for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let (prepared, _) =
            setup(pod_dir, pod, volume, sources, mounter).map_err(|failure| VolumeError {
                volume: volume.name.clone(),
                failure,
            })?;
        out.push(prepared);
    }
    Ok(out)
}

/// What [`update_volumes`] did.
#[derive(Debug, Default)]
pub struct VolumeUpdate {
    /// Volumes whose files changed.
    pub changed: Vec<String>,
    /// Volumes that could not be updated (the others still were).
    pub errors: Vec<VolumeError>,
}

/// Re-applies the configMap, secret, downwardAPI and projected volumes of a
/// running pod (a changed ConfigMap, Secret, label or token), each switched
/// atomically; the kubelet does this on every pod sync.
pub fn update_volumes(
    pod_dir: &Path,
    pod: &Pod,
    sources: &VolumeSources<'_>,
    mounter: &dyn Mounter,
) -> VolumeUpdate {
    let mut update = VolumeUpdate::default();
    for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let atomic = volume.config_map.is_some()
            || volume.secret.is_some()
            || volume.downward_api.is_some()
            || volume.projected.is_some();
        if !atomic {
            continue;
        }
        match setup(pod_dir, pod, volume, sources, mounter) {
            Ok((_, true)) => update.changed.push(volume.name.clone()),
            Ok((_, false)) => {}
            Err(failure) => update.errors.push(VolumeError {
                volume: volume.name.clone(),
                failure,
            }),
        }
    }
    update
}

/// Removes every volume under `<pod_dir>/volumes`, unmounting the tmpfs ones
/// first. Never follows symlinks, and never removes through a mount that
/// would not unmount.
pub fn cleanup_volumes(pod_dir: &Path, mounter: &dyn Mounter) -> Result<(), VolumeError> {
    let root = pod_dir.join("volumes");
    let fail = |volume: &str, failure| VolumeError {
        volume: volume.to_string(),
        failure,
    };
    let plugins = match fs::read_dir(&root) {
        Ok(p) => p,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(fail("", io_failure("read", &root)(e))),
    };
    for plugin in plugins {
        let plugin = plugin
            .map_err(|e| fail("", io_failure("read", &root)(e)))?
            .path();
        let volumes =
            fs::read_dir(&plugin).map_err(|e| fail("", io_failure("read", &plugin)(e)))?;
        for vol in volumes {
            let vol = vol
                .map_err(|e| fail("", io_failure("read", &plugin)(e)))?
                .path();
            let name = vol
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mounted = mounter
                .is_mount_point(&vol)
                .map_err(|e| fail(&name, io_failure("stat", &vol)(e)))?;
            if mounted {
                mounter.unmount(&vol).map_err(|source| {
                    fail(
                        &name,
                        VolumeFailure::Unmount {
                            path: vol.clone(),
                            source,
                        },
                    )
                })?;
                if mounter
                    .is_mount_point(&vol)
                    .map_err(|e| fail(&name, io_failure("stat", &vol)(e)))?
                {
                    return Err(fail(
                        &name,
                        VolumeFailure::Unmount {
                            path: vol.clone(),
                            source: io::Error::other("still mounted"),
                        },
                    ));
                }
            }
            fs::remove_dir_all(&vol).map_err(|e| fail(&name, io_failure("remove", &vol)(e)))?;
        }
        fs::remove_dir(&plugin).map_err(|e| fail("", io_failure("remove", &plugin)(e)))?;
    }
    fs::remove_dir(&root).map_err(|e| fail("", io_failure("remove", &root)(e)))
}

/// Makes the host file for a container's termination message
/// (`<pod_dir>/containers/<name>/<id>`, mode 0666 as the kubelet makes it),
/// for [`crate::ContainerInput::termination_log`].
pub fn prepare_termination_log(pod_dir: &Path, container: &str) -> Result<PathBuf, VolumeError> {
    let fail = |failure| VolumeError {
        volume: format!("termination-log of {container}"),
        failure,
    };
    let dir = pod_dir.join("containers").join(container);
    fs::create_dir_all(&dir).map_err(|e| fail(io_failure("create", &dir)(e)))?;
    let id: u64 = rand::random();
    let path = dir.join(format!("{id:016x}"));
    fs::File::create(&path).map_err(|e| fail(io_failure("create", &path)(e)))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o666))
        .map_err(|e| fail(io_failure("chmod", &path)(e)))?;
    Ok(path)
}

#[cfg(test)]
mod tests;
