//! Airgap import: an image tarball in OCI image-layout form or docker-archive (`docker
//! save`) form, plain or gzip-compressed, into the content store, the image records and
//! the snapshotter.
//!
//! The tarball is read twice, both times as a stream (a `.tar.gz` is never unpacked to
//! disk): the first pass keeps the small JSON files and the size of every entry, so the
//! whole import is planned (and progress totals known) before anything is written; the
//! second streams the blobs the plan needs into containerd. Everything is written under a
//! lease and the image records are created last, so a failed import leaves nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::client::Client;
use crate::content::{
    ConfigFile, Descriptor, Index, Lease, MT_OCI_CONFIG, MT_OCI_LAYER, MT_OCI_MANIFEST, Manifest,
    chain_ids, is_index, is_manifest, pick_manifest, sha256_digest, valid_digest,
};
use crate::error::{Error, Result};
use crate::images::ImageRef;
use crate::reference::normalize;

/// Files up to this size are kept in memory by the first pass (indexes, manifests, configs).
const SMALL_FILE: u64 = 512 << 10;
/// Blobs are streamed to containerd in chunks of this size.
const CHUNK: usize = 1 << 20;

/// How far an import (or pull) has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Blob bytes written to the content store so far.
    pub bytes_done: u64,
    /// Blob bytes the import will write (blobs already in the store are not counted).
    pub bytes_total: u64,
    /// Layers unpacked into the snapshotter so far.
    pub layers_done: usize,
    /// Layers to unpack.
    pub layers_total: usize,
}

/// What the first pass learned about a tarball.
#[derive(Debug, Default)]
struct Scan {
    sizes: HashMap<String, u64>,
    small: HashMap<String, Vec<u8>>,
    links: HashMap<String, String>,
}

impl Scan {
    fn resolve<'a>(&'a self, path: &'a str) -> &'a str {
        let mut p = path;
        for _ in 0..8 {
            match self.links.get(p) {
                Some(t) => p = t,
                None => break,
            }
        }
        p
    }
    fn small(&self, path: &str) -> Option<&[u8]> {
        self.small.get(self.resolve(path)).map(|v| v.as_slice())
    }
    fn size(&self, path: &str) -> Option<u64> {
        self.sizes.get(self.resolve(path)).copied()
    }
}

/// Where the bytes of one blob come from.
#[derive(Debug)]
enum Source {
    Memory(Vec<u8>),
    Tar { path: String },
}

/// One image to create.
#[derive(Debug)]
pub(crate) struct PlannedImage {
    pub names: Vec<String>,
    /// The image record's target (an index or a manifest).
    pub target: Descriptor,
    /// Index blobs from the target down to the manifest, with the position followed in each.
    pub indexes: Vec<(String, usize)>,
    pub manifest_digest: String,
    pub manifest: Manifest,
    pub config: ConfigFile,
}

#[derive(Debug, Default)]
struct Plan {
    images: Vec<PlannedImage>,
    blobs: BTreeMap<String, (i64, Source)>,
}

fn tar_path(p: &Path) -> String {
    let s = p.to_string_lossy();
    s.trim_start_matches("./")
        .trim_start_matches('/')
        .to_string()
}

fn open_tar(path: &Path) -> Result<Box<dyn Read + Send>> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io("open image tarball", path, e))?;
    let mut magic = [0u8; 2];
    let n = f
        .read(&mut magic)
        .map_err(|e| Error::io("read image tarball", path, e))?;
    let f = std::fs::File::open(path).map_err(|e| Error::io("open image tarball", path, e))?;
    let f = std::io::BufReader::with_capacity(256 << 10, f);
    if n == 2 && magic == [0x1f, 0x8b] {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(f)))
    } else {
        Ok(Box::new(f))
    }
}

fn tar_err(path: &Path, e: std::io::Error) -> Error {
    Error::invalid_image(
        path.display().to_string(),
        format!("not a readable tar archive (truncated or corrupt?): {e}"),
    )
}

fn scan(path: &Path) -> Result<Scan> {
    let mut archive = tar::Archive::new(open_tar(path)?);
    let mut scan = Scan::default();
    for entry in archive.entries().map_err(|e| tar_err(path, e))? {
        let mut entry = entry.map_err(|e| tar_err(path, e))?;
        let name = tar_path(&entry.path().map_err(|e| tar_err(path, e))?);
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            if let Ok(Some(target)) = entry.link_name() {
                let target = if kind.is_symlink() {
                    // Relative to the link's directory.
                    let base = Path::new(&name).parent().unwrap_or(Path::new(""));
                    normalize_path(&base.join(target))
                } else {
                    tar_path(&target)
                };
                scan.links.insert(name, target);
            }
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        let size = entry.size();
        if size <= SMALL_FILE {
            let mut buf = Vec::with_capacity(size as usize);
            entry.read_to_end(&mut buf).map_err(|e| tar_err(path, e))?;
            if buf.len() as u64 != size {
                return Err(tar_err(path, std::io::ErrorKind::UnexpectedEof.into()));
            }
            scan.small.insert(name.clone(), buf);
        } else {
            // Read through the data so a truncated file is caught now, not half-way
            // through the import.
            let n =
                std::io::copy(&mut entry, &mut std::io::sink()).map_err(|e| tar_err(path, e))?;
            if n != size {
                return Err(tar_err(path, std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
        scan.sizes.insert(name, size);
    }
    Ok(scan)
}

fn normalize_path(p: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                parts.pop();
            }
            std::path::Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            _ => {}
        }
    }
    parts.join("/")
}

fn blob_path(digest: &str) -> String {
    format!("blobs/{}", digest.replacen(':', "/", 1))
}

fn parse_json<T: for<'de> Deserialize<'de>>(source: &str, what: &str, data: &[u8]) -> Result<T> {
    serde_json::from_slice(data)
        .map_err(|e| Error::invalid_image(source, format!("{what} is not valid JSON: {e}")))
}

/// Plans an OCI image layout.
fn plan_oci(source: &str, scan: &Scan) -> Result<Plan> {
    let index_bytes = scan
        .small("index.json")
        .ok_or_else(|| Error::invalid_image(source, "index.json is missing"))?;
    let index: Index = parse_json(source, "index.json", index_bytes)?;
    let mut plan = Plan::default();
    let get = |d: &Descriptor| -> Result<Vec<u8>> {
        if !valid_digest(&d.digest) {
            return Err(Error::invalid_image(
                source,
                format!("bad digest {:?}", d.digest),
            ));
        }
        let data = scan.small(&blob_path(&d.digest)).ok_or_else(|| {
            Error::invalid_image(
                source,
                format!("blob {} is missing from the tarball", d.digest),
            )
        })?;
        if sha256_digest(data) != d.digest {
            return Err(Error::invalid_image(
                source,
                format!("blob {} does not match its digest", d.digest),
            ));
        }
        Ok(data.to_vec())
    };
    for top in &index.manifests {
        let name = top
            .annotations
            .get("io.containerd.image.name")
            .or_else(|| top.annotations.get("org.opencontainers.image.ref.name"))
            .filter(|n| n.contains(':') || n.contains('/'));
        let Some(name) = name else {
            tracing::warn!(source, digest = %top.digest, "image in the layout has no full name annotation; skipped");
            continue;
        };
        let name = normalize(name)?;
        // Walk index → ... → manifest.
        let mut desc = top.clone();
        let mut indexes = Vec::new();
        let mut depth = 0;
        while is_index(&desc.media_type) {
            depth += 1;
            if depth > 4 {
                return Err(Error::invalid_image(source, "indexes nested deeper than 4"));
            }
            let bytes = get(&desc)?;
            let idx: Index = parse_json(source, "image index", &bytes)?;
            let chosen = pick_manifest(&idx).ok_or_else(|| {
                Error::invalid_image(
                    source,
                    format!(
                        "{name} has no manifest for linux/{}",
                        crate::content::host_platform().0
                    ),
                )
            })?;
            let pos = idx.manifests.iter().position(|d| d == chosen).unwrap_or(0);
            indexes.push((desc.digest.clone(), pos));
            plan.blobs
                .insert(desc.digest.clone(), (desc.size, Source::Memory(bytes)));
            desc = chosen.clone();
        }
        if !is_manifest(&desc.media_type) {
            return Err(Error::invalid_image(
                source,
                format!("unsupported manifest media type {:?}", desc.media_type),
            ));
        }
        let mbytes = get(&desc)?;
        let manifest: Manifest = parse_json(source, "image manifest", &mbytes)?;
        let cbytes = get(&manifest.config)?;
        let config: ConfigFile = parse_json(source, "image config", &cbytes)?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(Error::invalid_image(
                source,
                format!(
                    "manifest lists {} layers but the config {} diff ids",
                    manifest.layers.len(),
                    config.rootfs.diff_ids.len()
                ),
            ));
        }
        plan.blobs
            .insert(desc.digest.clone(), (desc.size, Source::Memory(mbytes)));
        plan.blobs.insert(
            manifest.config.digest.clone(),
            (manifest.config.size, Source::Memory(cbytes)),
        );
        for layer in &manifest.layers {
            if !valid_digest(&layer.digest) {
                return Err(Error::invalid_image(
                    source,
                    format!("bad layer digest {:?}", layer.digest),
                ));
            }
            let path = blob_path(&layer.digest);
            let size = scan.size(&path).ok_or_else(|| {
                Error::invalid_image(
                    source,
                    format!("layer {} is missing from the tarball", layer.digest),
                )
            })?;
            if size as i64 != layer.size {
                return Err(Error::invalid_image(
                    source,
                    format!(
                        "layer {} is {size} bytes, the manifest says {}",
                        layer.digest, layer.size
                    ),
                ));
            }
            let src = match scan.small(&path) {
                Some(b) => Source::Memory(b.to_vec()),
                None => Source::Tar {
                    path: scan.resolve(&path).to_string(),
                },
            };
            plan.blobs.insert(layer.digest.clone(), (layer.size, src));
        }
        plan.images.push(PlannedImage {
            names: vec![name],
            target: top.clone(),
            indexes,
            manifest_digest: desc.digest.clone(),
            manifest,
            config,
        });
    }
    Ok(plan)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Plans a docker-archive: a synthesised OCI manifest over the uncompressed layers.
fn plan_docker(source: &str, scan: &Scan) -> Result<Plan> {
    let bytes = scan
        .small("manifest.json")
        .ok_or_else(|| Error::invalid_image(source, "manifest.json is missing"))?;
    let entries: Vec<DockerEntry> = parse_json(source, "manifest.json", bytes)?;
    let mut plan = Plan::default();
    for entry in entries {
        let names: Vec<String> = entry
            .repo_tags
            .unwrap_or_default()
            .iter()
            .map(|t| normalize(t))
            .collect::<Result<_>>()?;
        if names.is_empty() {
            tracing::warn!(source, config = %entry.config, "image in the archive has no RepoTags; skipped");
            continue;
        }
        let cbytes = scan
            .small(&tar_path(Path::new(&entry.config)))
            .ok_or_else(|| {
                Error::invalid_image(
                    source,
                    format!("config {} is missing from the tarball", entry.config),
                )
            })?;
        let config: ConfigFile = parse_json(source, "image config", cbytes)?;
        if config.rootfs.diff_ids.len() != entry.layers.len() {
            return Err(Error::invalid_image(
                source,
                format!(
                    "manifest.json lists {} layers but the config {} diff ids",
                    entry.layers.len(),
                    config.rootfs.diff_ids.len()
                ),
            ));
        }
        let config_desc = Descriptor {
            media_type: MT_OCI_CONFIG.into(),
            digest: sha256_digest(cbytes),
            size: cbytes.len() as i64,
            platform: None,
            annotations: HashMap::new(),
        };
        let mut layers = Vec::new();
        for (path, diff_id) in entry.layers.iter().zip(&config.rootfs.diff_ids) {
            if !valid_digest(diff_id) {
                return Err(Error::invalid_image(
                    source,
                    format!("bad diff id {diff_id:?}"),
                ));
            }
            let path = tar_path(Path::new(path));
            let size = scan.size(&path).ok_or_else(|| {
                Error::invalid_image(source, format!("layer {path} is missing from the tarball"))
            })?;
            // docker save writes layers uncompressed: their digest is their diff id.
            layers.push(Descriptor {
                media_type: MT_OCI_LAYER.into(),
                digest: diff_id.clone(),
                size: size as i64,
                platform: None,
                annotations: HashMap::new(),
            });
            let src = match scan.small(&path) {
                Some(b) => Source::Memory(b.to_vec()),
                None => Source::Tar {
                    path: scan.resolve(&path).to_string(),
                },
            };
            plan.blobs.insert(diff_id.clone(), (size as i64, src));
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(MT_OCI_MANIFEST.into()),
            config: config_desc.clone(),
            layers,
        };
        let mbytes = serde_json::to_vec(&manifest)
            .map_err(|e| Error::invalid_image(source, e.to_string()))?;
        let mdigest = sha256_digest(&mbytes);
        let target = Descriptor {
            media_type: MT_OCI_MANIFEST.into(),
            digest: mdigest.clone(),
            size: mbytes.len() as i64,
            platform: None,
            annotations: HashMap::new(),
        };
        plan.blobs
            .insert(mdigest.clone(), (target.size, Source::Memory(mbytes)));
        plan.blobs.insert(
            config_desc.digest.clone(),
            (config_desc.size, Source::Memory(cbytes.to_vec())),
        );
        plan.images.push(PlannedImage {
            names,
            target,
            indexes: Vec::new(),
            manifest_digest: mdigest,
            manifest,
            config,
        });
    }
    Ok(plan)
}

enum Chunk {
    Start { path: String, size: u64 },
    Data(Vec<u8>),
    End,
}

/// Second pass: sends the wanted entries' bytes down a channel.
fn stream_entries(
    path: &Path,
    wanted: HashSet<String>,
    tx: tokio::sync::mpsc::Sender<Result<Chunk>>,
) {
    let run = || -> Result<()> {
        let mut archive = tar::Archive::new(open_tar(path)?);
        for entry in archive.entries().map_err(|e| tar_err(path, e))? {
            let mut entry = entry.map_err(|e| tar_err(path, e))?;
            let name = tar_path(&entry.path().map_err(|e| tar_err(path, e))?);
            if !entry.header().entry_type().is_file() || !wanted.contains(&name) {
                continue;
            }
            let size = entry.size();
            if tx
                .blocking_send(Ok(Chunk::Start { path: name, size }))
                .is_err()
            {
                return Ok(());
            }
            loop {
                let mut buf = vec![0u8; CHUNK];
                let mut filled = 0;
                while filled < CHUNK {
                    let n = entry
                        .read(&mut buf[filled..])
                        .map_err(|e| tar_err(path, e))?;
                    if n == 0 {
                        break;
                    }
                    filled += n;
                }
                if filled == 0 {
                    break;
                }
                buf.truncate(filled);
                if tx.blocking_send(Ok(Chunk::Data(buf))).is_err() {
                    return Ok(());
                }
            }
            if tx.blocking_send(Ok(Chunk::End)).is_err() {
                return Ok(());
            }
        }
        Ok(())
    };
    if let Err(e) = run() {
        let _ = tx.blocking_send(Err(e));
    }
}

impl Client {
    /// Imports an image tarball (OCI image layout or docker-archive, plain or gzip) and
    /// returns the images it named. `progress` is called as bytes are written and layers
    /// unpacked.
    #[tracing::instrument(name = "image_import", skip_all, fields(path = %path.display()))]
    pub async fn import(
        &self,
        path: &Path,
        mut progress: impl FnMut(Progress) + Send,
    ) -> Result<Vec<ImageRef>> {
        let source = path.display().to_string();
        let p = path.to_path_buf();
        let scan = tokio::task::spawn_blocking(move || scan(&p))
            .await
            .map_err(|e| Error::invalid_image(&source, format!("scan task failed: {e}")))??;
        let plan = if scan.small.contains_key("index.json") {
            plan_oci(&source, &scan)?
        } else if scan.small.contains_key("manifest.json") {
            plan_docker(&source, &scan)?
        } else {
            return Err(Error::invalid_image(
                &source,
                "neither an OCI image layout (index.json) nor a docker-archive (manifest.json)",
            ));
        };
        if plan.images.is_empty() {
            return Err(Error::invalid_image(
                &source,
                "it names no image (no RepoTags, no io.containerd.image.name or full org.opencontainers.image.ref.name annotation)",
            ));
        }
        drop(scan);
        let lease = self.create_lease("import").await?;
        match self.import_planned(path, plan, &lease, &mut progress).await {
            Ok(refs) => {
                self.release_lease(lease, false).await?;
                tracing::info!(images = refs.len(), "imported");
                Ok(refs)
            }
            Err(e) => {
                // Collect now whatever only this import held.
                if let Err(le) = self.release_lease(lease, true).await {
                    tracing::warn!(error = %le, "could not drop the import lease; it expires in an hour");
                }
                Err(e)
            }
        }
    }

    async fn import_planned(
        &self,
        path: &Path,
        plan: Plan,
        lease: &Lease,
        progress: &mut (impl FnMut(Progress) + Send),
    ) -> Result<Vec<ImageRef>> {
        let source = path.display().to_string();
        let mut prog = Progress {
            layers_total: plan.images.iter().map(|i| i.manifest.layers.len()).sum(),
            ..Default::default()
        };
        // What is missing from the store, and where it comes from.
        let mut from_tar: HashMap<String, (String, i64)> = HashMap::new();
        let mut from_memory = Vec::new();
        for (digest, (size, src)) in plan.blobs.iter() {
            if self.content_info(digest).await?.is_some() {
                continue;
            }
            prog.bytes_total += *size as u64;
            match src {
                Source::Memory(b) => from_memory.push((digest.clone(), b)),
                Source::Tar { path } => {
                    from_tar.insert(path.clone(), (digest.clone(), *size));
                }
            }
        }
        progress(prog);
        for (digest, bytes) in from_memory {
            self.write_blob(lease, &digest, bytes).await?;
            prog.bytes_done += bytes.len() as u64;
            progress(prog);
        }
        if !from_tar.is_empty() {
            let (tx, mut rx) = tokio::sync::mpsc::channel(4);
            let wanted: HashSet<String> = from_tar.keys().cloned().collect();
            let p: PathBuf = path.to_path_buf();
            let reader = tokio::task::spawn_blocking(move || stream_entries(&p, wanted, tx));
            let mut done = HashSet::new();
            let mut writer = None;
            while let Some(msg) = rx.recv().await {
                match msg? {
                    Chunk::Start { path: entry, size } => {
                        let (digest, want) = &from_tar[&entry];
                        if size as i64 != *want {
                            return Err(Error::invalid_image(
                                &source,
                                format!("{entry} is {size} bytes, expected {want}"),
                            ));
                        }
                        writer = Some((self.blob_writer(lease, digest, *want).await?, entry));
                    }
                    Chunk::Data(buf) => {
                        if let Some((w, _)) = writer.as_mut() {
                            w.write(&buf).await?;
                            prog.bytes_done += buf.len() as u64;
                            progress(prog);
                        }
                    }
                    Chunk::End => {
                        if let Some((w, entry)) = writer.take() {
                            w.commit().await?;
                            done.insert(entry);
                        }
                    }
                }
            }
            let _ = reader.await;
            if let Some(missing) = from_tar.keys().find(|k| !done.contains(*k)) {
                return Err(Error::invalid_image(
                    &source,
                    format!("{missing} could not be read"),
                ));
            }
        }
        let mut refs = Vec::new();
        for image in &plan.images {
            refs.extend(
                self.finish_image(lease, image, |n| {
                    prog.layers_done += n;
                    progress(prog);
                })
                .await?,
            );
        }
        Ok(refs)
    }

    /// Unpacks an image whose blobs are all in the store, labels its blobs for the
    /// garbage collector and creates its records.
    pub(crate) async fn finish_image(
        &self,
        lease: &Lease,
        image: &PlannedImage,
        mut on_layer: impl FnMut(usize),
    ) -> Result<Vec<ImageRef>> {
        let diff_ids = &image.config.rootfs.diff_ids;
        let chains = chain_ids(diff_ids);
        for (i, layer) in image.manifest.layers.iter().enumerate() {
            let parent = if i == 0 {
                None
            } else {
                Some(chains[i - 1].as_str())
            };
            self.unpack_layer(lease, layer, parent, &chains[i], &diff_ids[i])
                .await?;
            on_layer(1);
        }
        let top = chains.last().cloned().unwrap_or_default();
        // gc references: index → manifest → config and layers; config → snapshot.
        let mut child = image.manifest_digest.clone();
        for (digest, pos) in image.indexes.iter().rev() {
            self.label_blob(
                digest,
                HashMap::from([(
                    format!("containerd.io/gc.ref.content.m.{pos}"),
                    child.clone(),
                )]),
            )
            .await?;
            child = digest.clone();
        }
        let mut mlabels = HashMap::from([(
            "containerd.io/gc.ref.content.config".to_string(),
            image.manifest.config.digest.clone(),
        )]);
        for (i, l) in image.manifest.layers.iter().enumerate() {
            mlabels.insert(
                format!("containerd.io/gc.ref.content.l.{i}"),
                l.digest.clone(),
            );
        }
        self.label_blob(&image.manifest_digest, mlabels).await?;
        if !top.is_empty() {
            self.label_blob(
                &image.manifest.config.digest,
                HashMap::from([(
                    format!("containerd.io/gc.ref.snapshot.{}", self.snapshotter),
                    top.clone(),
                )]),
            )
            .await?;
        }
        let mut refs = Vec::new();
        for name in &image.names {
            self.put_image_record(name, &image.target).await?;
            refs.push(ImageRef {
                name: name.clone(),
                digest: image.target.digest.clone(),
                config_digest: image.manifest.config.digest.clone(),
                chain_id: top.clone(),
            });
        }
        Ok(refs)
    }

    /// Imports every `*.tar`, `*.tar.gz` and `*.tgz` in a directory (the airgap images
    /// directory), skipping files imported before whose images all still exist. Returns
    /// the images, and one error per file that failed (the others are still imported).
    pub async fn import_dir(&self, dir: &Path) -> Result<ImportDirReport> {
        let mut report = ImportDirReport::default();
        let rd = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(report),
            Err(e) => return Err(Error::io("read images dir", dir, e)),
        };
        let mut files: Vec<PathBuf> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                let n = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                p.is_file()
                    && (n.ends_with(".tar") || n.ends_with(".tar.gz") || n.ends_with(".tgz"))
            })
            .collect();
        files.sort();
        let state_path = dir.join(IMPORT_STATE);
        let mut state: BTreeMap<String, ImportedFile> = std::fs::read(&state_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        for file in files {
            let key = file
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let stamp = file_stamp(&file);
            if let Some(prev) = state.get(&key)
                && Some(&prev.stamp) == stamp.as_ref()
            {
                let mut all = true;
                for n in &prev.images {
                    all &= self.image(n).await?.is_some();
                }
                if all {
                    for n in &prev.images {
                        self.pin_image(n).await?;
                    }
                    report.skipped.push(file);
                    continue;
                }
            }
            match self.import(&file, |_| {}).await {
                Ok(refs) => {
                    // Airgap images are pinned, as K3s pins them: image GC never takes
                    // what the device cannot pull again.
                    for r in &refs {
                        self.pin_image(&r.name).await?;
                    }
                    if let Some(stamp) = stamp {
                        state.insert(
                            key,
                            ImportedFile {
                                stamp,
                                images: refs.iter().map(|r| r.name.clone()).collect(),
                            },
                        );
                    }
                    report.imported.extend(refs);
                }
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "airgap image import failed");
                    report.failed.push((file, e));
                }
            }
        }
        if let Ok(bytes) = serde_json::to_vec_pretty(&state)
            && let Err(e) = crate::supervisor::write_atomic(&state_path, &bytes)
        {
            tracing::warn!(error = %e, "cannot record imported tarballs; they will be read again next start");
        }
        Ok(report)
    }
}

/// Name of the file in the images dir recording what was imported.
pub const IMPORT_STATE: &str = ".kedge-imported.json";

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct ImportedFile {
    stamp: (u64, i64, i64),
    images: Vec<String>,
}

fn file_stamp(p: &Path) -> Option<(u64, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).ok()?;
    Some((m.size(), m.mtime(), m.mtime_nsec()))
}

/// What [`Client::import_dir`] did.
#[derive(Debug, Default)]
pub struct ImportDirReport {
    /// Images imported now.
    pub imported: Vec<ImageRef>,
    /// Files imported before (same size and mtime) whose images all exist.
    pub skipped: Vec<PathBuf>,
    /// Files that failed, with why.
    pub failed: Vec<(PathBuf, Error)>,
}
