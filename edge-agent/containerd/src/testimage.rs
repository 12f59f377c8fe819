//! A busybox image built from the host's static busybox, with no registry: the image the
//! tests run, and the airgap path for users (write the tarball into
//! `<data-dir>/agent/images/` and the agent imports it at start).
//!
//! The layer holds `/bin/busybox`, a symlink per applet, `/etc/passwd` and `/etc/group`,
//! and the usual empty mount points. Output is deterministic (mtimes are zero).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;

use crate::content::{
    ConfigFile, Descriptor, Index, MT_OCI_CONFIG, MT_OCI_INDEX, MT_OCI_LAYER, MT_OCI_MANIFEST,
    Manifest, RootFs, RunConfig, host_platform, sha256_digest,
};
use crate::error::{Error, Result};
use crate::reference::normalize;

/// Where Debian's busybox-static puts the binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// The two tarball forms `import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/...`).
    OciLayout,
    /// `docker save` form (`manifest.json`, `<id>.json`, `<id>/layer.tar`).
    DockerArchive,
}

/// What to build.
#[derive(Debug, Clone)]
pub struct BusyboxImage {
    /// Image name, e.g. `busybox:test` (normalised to `docker.io/library/busybox:test`).
    pub name: String,
    pub format: ImageFormat,
    /// gzip the layer (OCI layout only; docker archives carry plain layers).
    pub gzip_layer: bool,
    /// gzip the whole tarball (`.tar.gz`).
    pub gzip_tarball: bool,
    /// Adds `/filler` with this many incompressible bytes (distinct images for GC tests).
    pub extra_bytes: usize,
    /// The static busybox binary.
    pub busybox: PathBuf,
}

impl BusyboxImage {
    pub fn new(name: &str, format: ImageFormat) -> Self {
        BusyboxImage {
            name: name.to_string(),
            format,
            gzip_layer: format == ImageFormat::OciLayout,
            gzip_tarball: false,
            extra_bytes: 0,
            busybox: PathBuf::from(BUSYBOX),
        }
    }
}

/// What was built, with the blobs (for serving them from a test registry).
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// Normalised name.
    pub name: String,
    pub manifest_digest: String,
    pub manifest_media_type: String,
    pub config_digest: String,
    /// Every blob by digest: manifest, config and layer.
    pub blobs: BTreeMap<String, Vec<u8>>,
}

/// Builds the image tarball at `path` in the given form.
pub fn build_busybox_image(path: &Path, name: &str, format: ImageFormat) -> Result<BuiltImage> {
    build_image(path, &BusyboxImage::new(name, format))
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::io("build image", path, e)
}

fn applets(busybox: &Path) -> Result<Vec<String>> {
    let out = std::process::Command::new(busybox)
        .arg("--list")
        .output()
        .map_err(|e| Error::io("run (install the busybox-static package)", busybox, e))?;
    if !out.status.success() {
        return Err(Error::invalid_image(
            busybox.display().to_string(),
            "busybox --list failed; is it busybox?",
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox" && !a.contains('/'))
        .map(String::from)
        .collect())
}

fn filler(n: usize, seed: &str) -> Vec<u8> {
    let mut x: u64 =
        0x9e37_79b9_7f4a_7c15 ^ seed.bytes().fold(0u64, |a, b| a.rotate_left(5) ^ b as u64);
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// The uncompressed layer.
fn layer_tar(opts: &BusyboxImage) -> Result<Vec<u8>> {
    let bb = std::fs::read(&opts.busybox).map_err(|e| {
        Error::io(
            "read (install the busybox-static package)",
            &opts.busybox,
            e,
        )
    })?;
    let mut b = tar::Builder::new(Vec::new());
    let p = &opts.busybox;
    let dir = |b: &mut tar::Builder<Vec<u8>>, name: &str, mode: u32| -> Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(mode);
        h.set_size(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, name, std::io::empty())
            .map_err(io_err(p))
    };
    let file = |b: &mut tar::Builder<Vec<u8>>, name: &str, mode: u32, data: &[u8]| -> Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, name, data).map_err(io_err(p))
    };
    for (d, mode) in [
        ("bin", 0o755),
        ("dev", 0o755),
        ("etc", 0o755),
        ("proc", 0o555),
        ("root", 0o700),
        ("sys", 0o555),
        ("tmp", 0o1777),
        ("usr", 0o755),
        ("usr/bin", 0o755),
        ("var", 0o755),
        ("var/www", 0o755),
    ] {
        dir(&mut b, d, mode)?;
    }
    file(&mut b, "bin/busybox", 0o755, &bb)?;
    for a in applets(&opts.busybox)? {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        h.set_mtime(0);
        b.append_link(&mut h, format!("bin/{a}"), "busybox")
            .map_err(io_err(p))?;
    }
    file(
        &mut b,
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )?;
    file(&mut b, "etc/group", 0o644, b"root:x:0:\nnogroup:x:65534:\n")?;
    file(
        &mut b,
        "var/www/index.html",
        0o644,
        b"hello from kedge busybox\n",
    )?;
    if opts.extra_bytes > 0 {
        file(
            &mut b,
            "filler",
            0o644,
            &filler(opts.extra_bytes, &opts.name),
        )?;
    }
    b.into_inner().map_err(io_err(p))
}

fn gzip(data: &[u8], path: &Path) -> Result<Vec<u8>> {
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).map_err(io_err(path))?;
    e.finish().map_err(io_err(path))
}

fn add(b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8], path: &Path) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_mtime(0);
    h.set_cksum();
    b.append_data(&mut h, name, data).map_err(io_err(path))
}

/// Builds an image tarball by the options.
pub fn build_image(path: &Path, opts: &BusyboxImage) -> Result<BuiltImage> {
    let name = normalize(&opts.name)?;
    let layer = layer_tar(opts)?;
    let diff_id = sha256_digest(&layer);
    let (arch, variant) = host_platform();
    let config = ConfigFile {
        architecture: arch.to_string(),
        os: "linux".into(),
        config: Some(RunConfig {
            env: Some(vec![
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            ]),
            cmd: Some(vec!["sh".into()]),
            working_dir: Some("/".into()),
            ..Default::default()
        }),
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: vec![diff_id.clone()],
        },
    };
    let mut config_json =
        serde_json::to_value(&config).map_err(|e| Error::invalid_image(&name, e.to_string()))?;
    if let Some(v) = variant {
        config_json["variant"] = v.into();
    }
    let config_bytes =
        serde_json::to_vec(&config_json).map_err(|e| Error::invalid_image(&name, e.to_string()))?;
    let config_digest = sha256_digest(&config_bytes);

    let mut out = tar::Builder::new(Vec::new());
    let mut blobs = BTreeMap::new();
    let manifest_digest;
    let manifest_media_type = MT_OCI_MANIFEST.to_string();
    match opts.format {
        ImageFormat::OciLayout => {
            let (layer_blob, layer_mt) = if opts.gzip_layer {
                (gzip(&layer, path)?, format!("{MT_OCI_LAYER}+gzip"))
            } else {
                (layer.clone(), MT_OCI_LAYER.to_string())
            };
            let desc = |mt: &str, data: &[u8]| Descriptor {
                media_type: mt.to_string(),
                digest: sha256_digest(data),
                size: data.len() as i64,
                platform: None,
                annotations: HashMap::new(),
            };
            let manifest = Manifest {
                schema_version: 2,
                media_type: Some(MT_OCI_MANIFEST.into()),
                config: desc(MT_OCI_CONFIG, &config_bytes),
                layers: vec![desc(&layer_mt, &layer_blob)],
            };
            let mbytes = serde_json::to_vec(&manifest)
                .map_err(|e| Error::invalid_image(&name, e.to_string()))?;
            let mut top = desc(MT_OCI_MANIFEST, &mbytes);
            let tag = name.rsplit_once(':').map(|(_, t)| t).unwrap_or("latest");
            top.annotations = HashMap::from([
                ("io.containerd.image.name".to_string(), name.clone()),
                (
                    "org.opencontainers.image.ref.name".to_string(),
                    tag.to_string(),
                ),
            ]);
            let index = Index {
                schema_version: 2,
                media_type: Some(MT_OCI_INDEX.into()),
                manifests: vec![top],
            };
            add(
                &mut out,
                "oci-layout",
                br#"{"imageLayoutVersion":"1.0.0"}"#,
                path,
            )?;
            add(
                &mut out,
                "index.json",
                &serde_json::to_vec(&index)
                    .map_err(|e| Error::invalid_image(&name, e.to_string()))?,
                path,
            )?;
            for data in [&layer_blob, &config_bytes, &mbytes] {
                let d = sha256_digest(data);
                add(&mut out, &format!("blobs/sha256/{}", &d[7..]), data, path)?;
                blobs.insert(d, data.to_vec());
            }
            manifest_digest = sha256_digest(&mbytes);
        }
        ImageFormat::DockerArchive => {
            let layer_id = &diff_id[7..];
            let config_name = format!("{}.json", &config_digest[7..]);
            let manifest = serde_json::json!([{
                "Config": config_name,
                "RepoTags": [opts.name],
                "Layers": [format!("{layer_id}/layer.tar")],
            }]);
            add(&mut out, &config_name, &config_bytes, path)?;
            add(&mut out, &format!("{layer_id}/layer.tar"), &layer, path)?;
            add(&mut out, &format!("{layer_id}/VERSION"), b"1.0", path)?;
            add(
                &mut out,
                "manifest.json",
                &serde_json::to_vec(&manifest)
                    .map_err(|e| Error::invalid_image(&name, e.to_string()))?,
                path,
            )?;
            // What import synthesises: an OCI manifest over the plain layer.
            let m = Manifest {
                schema_version: 2,
                media_type: Some(MT_OCI_MANIFEST.into()),
                config: Descriptor {
                    media_type: MT_OCI_CONFIG.into(),
                    digest: config_digest.clone(),
                    size: config_bytes.len() as i64,
                    platform: None,
                    annotations: HashMap::new(),
                },
                layers: vec![Descriptor {
                    media_type: MT_OCI_LAYER.into(),
                    digest: diff_id.clone(),
                    size: layer.len() as i64,
                    platform: None,
                    annotations: HashMap::new(),
                }],
            };
            let mbytes =
                serde_json::to_vec(&m).map_err(|e| Error::invalid_image(&name, e.to_string()))?;
            manifest_digest = sha256_digest(&mbytes);
            blobs.insert(manifest_digest.clone(), mbytes);
            blobs.insert(config_digest.clone(), config_bytes.clone());
            blobs.insert(diff_id.clone(), layer.clone());
        }
    }
    let tarball = out.into_inner().map_err(io_err(path))?;
    let tarball = if opts.gzip_tarball {
        gzip(&tarball, path)?
    } else {
        tarball
    };
    crate::supervisor::write_atomic(path, &tarball)?;
    Ok(BuiltImage {
        name,
        manifest_digest,
        manifest_media_type,
        config_digest,
        blobs,
    })
}
