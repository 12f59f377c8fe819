//! Static pods: Pod manifests in `<data-dir>/agent/pod-manifests` that the agent runs on
//! its own, with or without a server, as the kubelet's file source does.
//!
//! Each file (`.yaml`, `.yml` or `.json`; hidden files are skipped) holds one Pod. The
//! pod is named `<name>-<node>`, bound to this node, defaulted as the API server would
//! default it, and given a uid that is a hash of the node, the file and its content, so
//! that an unchanged file keeps its pod across agent restarts and a changed one replaces
//! it. The annotations `kubernetes.io/config.source: file`, `kubernetes.io/config.hash`
//! and `kubernetes.io/config.seen` mark it, as upstream.
//!
//! The directory is read again at most every [`RESCAN`]. A file that does not parse is
//! skipped with a warning naming it (once per content), never half-used.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, Probe, Toleration};
use tokio::time::Instant;
use tracing::warn;

use super::manager::PodSource;

/// How often the manifest directory is read.
pub const RESCAN: Duration = Duration::from_secs(5);

/// The annotation naming where a pod came from (`file` for static pods).
pub const SOURCE_ANNOTATION: &str = "kubernetes.io/config.source";
/// The annotation with a static pod's hash (its uid); its mirror pod carries it as
/// `kubernetes.io/config.mirror`.
pub const HASH_ANNOTATION: &str = "kubernetes.io/config.hash";
const SEEN_ANNOTATION: &str = "kubernetes.io/config.seen";

/// Whether a pod is a static pod of this agent.
pub fn is_static(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SOURCE_ANNOTATION))
        .is_some_and(|s| s == "file")
}

#[derive(Debug)]
struct Scan {
    at: Option<Instant>,
    pods: Vec<Pod>,
    warned: HashSet<String>,
}

/// The file source of static pods.
#[derive(Debug)]
pub struct StaticPods {
    dir: PathBuf,
    node: String,
    scan: Mutex<Scan>,
}

impl StaticPods {
    pub fn new(dir: impl Into<PathBuf>, node: impl Into<String>) -> StaticPods {
        StaticPods {
            dir: dir.into(),
            node: node.into(),
            scan: Mutex::new(Scan {
                at: None,
                pods: Vec::new(),
                warned: HashSet::new(),
            }),
        }
    }

    /// Reads every manifest now: the pods, and the files that failed with why.
    pub fn load(&self) -> (Vec<Pod>, Vec<(PathBuf, String)>) {
        load(&self.dir, &self.node)
    }
}

impl PodSource for StaticPods {
    fn pods(&self) -> Vec<Pod> {
        let mut scan = self.scan.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = scan.at.is_some_and(|at| at.elapsed() < RESCAN);
        if !fresh {
            let (pods, errors) = self.load();
            for (path, error) in errors {
                let key = format!("{}:{error}", path.display());
                if scan.warned.insert(key) {
                    warn!(file = %path.display(), %error, "skipping a static pod manifest");
                }
            }
            scan.pods = pods;
            scan.at = Some(Instant::now());
        }
        scan.pods.clone()
    }
}

/// Reads the manifests in `dir`. A missing directory holds no pods.
pub fn load(dir: &Path, node: &str) -> (Vec<Pod>, Vec<(PathBuf, String)>) {
    let mut pods = Vec::new();
    let mut errors = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (pods, errors);
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or(".");
            !name.starts_with('.')
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml" | "json")
                )
                && p.is_file()
        })
        .collect();
    files.sort();
    let mut names = HashSet::new();
    for file in files {
        let result = std::fs::read(&file)
            .map_err(|e| format!("cannot read it: {e}"))
            .and_then(|bytes| static_pod(&file, &bytes, node));
        match result {
            Ok(pod) => {
                let key = (pod.metadata.namespace.clone(), pod.metadata.name.clone());
                if names.insert(key) {
                    pods.push(pod);
                } else {
                    errors.push((
                        file,
                        "another manifest already defines a pod with this name and namespace"
                            .into(),
                    ));
                }
            }
            Err(e) => errors.push((file, e)),
        }
    }
    (pods, errors)
}

/// One manifest, as the static pod the agent runs.
pub fn static_pod(file: &Path, bytes: &[u8], node: &str) -> Result<Pod, String> {
    let value: serde_json::Value =
        serde_yaml::from_slice(bytes).map_err(|e| format!("not YAML or JSON: {e}"))?;
    let kind = value
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or_default();
    if kind != "Pod" {
        return Err(format!(
            "kind is {kind:?}: a static pod manifest holds one Pod"
        ));
    }
    let mut pod: Pod =
        serde_json::from_value(value).map_err(|e| format!("not a valid Pod: {e}"))?;
    let name = pod
        .metadata
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or("metadata.name is missing")?;
    let spec = pod.spec.as_mut().ok_or("spec is missing")?;
    if spec.containers.is_empty() {
        return Err("spec.containers is empty".into());
    }
    let mut seen = HashSet::new();
    for c in spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
    {
        if c.name.is_empty() || !seen.insert(c.name.clone()) {
            return Err(format!("container name {:?} is empty or repeated", c.name));
        }
        if c.image.as_deref().unwrap_or_default().is_empty() {
            return Err(format!("container {:?} has no image", c.name));
        }
    }
    let hash = {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(node.as_bytes());
        ctx.update(b"\0");
        ctx.update(file.display().to_string().as_bytes());
        ctx.update(b"\0");
        ctx.update(bytes);
        let d = ctx.finish();
        d.as_ref()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let node_lower = node.to_lowercase();
    pod.metadata.name = Some(format!("{name}-{node_lower}"));
    if pod
        .metadata
        .namespace
        .as_deref()
        .unwrap_or_default()
        .is_empty()
    {
        pod.metadata.namespace = Some("default".into());
    }
    pod.metadata.uid = Some(hash.clone());
    pod.metadata.resource_version = Some(hash.clone());
    let annotations = pod.metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(SOURCE_ANNOTATION.into(), "file".into());
    annotations.insert(HASH_ANNOTATION.into(), hash);
    annotations.insert(
        SEEN_ANNOTATION.into(),
        std::fs::metadata(file)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| jiff::Timestamp::try_from(t).ok())
            .map(|t| t.to_string())
            .unwrap_or_default(),
    );
    default_pod(&mut pod, node);
    Ok(pod)
}

fn default_probe(p: &mut Option<Probe>) {
    if let Some(p) = p {
        p.timeout_seconds.get_or_insert(1);
        p.period_seconds.get_or_insert(10);
        p.success_threshold.get_or_insert(1);
        p.failure_threshold.get_or_insert(3);
    }
}

fn default_container(c: &mut Container) {
    let image = c.image.clone().unwrap_or_default();
    let tag_latest = {
        let last = image.rsplit('/').next().unwrap_or(&image);
        !last.contains('@') && (!last.contains(':') || last.ends_with(":latest"))
    };
    c.image_pull_policy
        .get_or_insert_with(|| if tag_latest { "Always" } else { "IfNotPresent" }.into());
    c.termination_message_path
        .get_or_insert_with(|| "/dev/termination-log".into());
    c.termination_message_policy
        .get_or_insert_with(|| "File".into());
    for p in c.ports.iter_mut().flatten() {
        p.protocol.get_or_insert_with(|| "TCP".into());
    }
    default_probe(&mut c.liveness_probe);
    default_probe(&mut c.readiness_probe);
    default_probe(&mut c.startup_probe);
}

/// What the API server's defaulting would have set, and what the kubelet sets for
/// static pods (bound to this node; tolerating every NoExecute taint).
fn default_pod(pod: &mut Pod, node: &str) {
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    spec.node_name = Some(node.to_string());
    spec.restart_policy.get_or_insert_with(|| "Always".into());
    spec.termination_grace_period_seconds.get_or_insert(30);
    spec.dns_policy.get_or_insert_with(|| "ClusterFirst".into());
    spec.scheduler_name
        .get_or_insert_with(|| "default-scheduler".into());
    spec.enable_service_links.get_or_insert(true);
    spec.security_context.get_or_insert_with(Default::default);
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        default_container(c);
    }
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    if !tolerations
        .iter()
        .any(|t| t.operator.as_deref() == Some("Exists") && t.key.is_none())
    {
        tolerations.push(Toleration {
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            ..Default::default()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: app\n    image: busybox\n    ports: [{containerPort: 80}]\n";

    #[test]
    fn a_manifest_becomes_a_pod_of_this_node() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("web.yaml"), MANIFEST).unwrap();
        std::fs::write(dir.path().join(".hidden.yaml"), MANIFEST).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a pod").unwrap();
        let (pods, errors) = load(dir.path(), "Pi-1");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(pods.len(), 1);
        let p = &pods[0];
        assert_eq!(p.metadata.name.as_deref(), Some("web-pi-1"));
        assert_eq!(p.metadata.namespace.as_deref(), Some("default"));
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("Pi-1"));
        assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
        let c = &spec.containers[0];
        assert_eq!(c.image_pull_policy.as_deref(), Some("Always"));
        assert_eq!(
            c.ports.as_ref().unwrap()[0].protocol.as_deref(),
            Some("TCP")
        );
        assert!(is_static(p));
        let uid = p.metadata.uid.clone().unwrap();
        assert_eq!(uid.len(), 32);
        // The same file gives the same uid; a changed one another.
        let (again, _) = load(dir.path(), "Pi-1");
        assert_eq!(again[0].metadata.uid.as_deref(), Some(uid.as_str()));
        std::fs::write(
            dir.path().join("web.yaml"),
            MANIFEST.replace("busybox", "busybox:1.36"),
        )
        .unwrap();
        let (changed, _) = load(dir.path(), "Pi-1");
        assert_ne!(changed[0].metadata.uid.as_deref(), Some(uid.as_str()));
        assert_eq!(
            changed[0].spec.as_ref().unwrap().containers[0]
                .image_pull_policy
                .as_deref(),
            Some("IfNotPresent")
        );
    }

    #[test]
    fn broken_manifests_are_skipped_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (
                "a.yaml",
                "kind: Pod\nmetadata: {name: [unclosed",
                "not YAML",
            ),
            (
                "b.yaml",
                "kind: Deployment\nmetadata: {name: x}\n",
                "one Pod",
            ),
            (
                "c.yaml",
                "kind: Pod\nmetadata: {name: x}\nspec: {containers: []}\n",
                "empty",
            ),
            (
                "d.json",
                "{\"kind\":\"Pod\",\"metadata\":{\"name\":\"y\"},\"spec\":{\"containers\":[{\"name\":\"c\"}]}}",
                "no image",
            ),
        ];
        for (file, text, _) in cases {
            std::fs::write(dir.path().join(file), text).unwrap();
        }
        std::fs::write(dir.path().join("ok.yml"), MANIFEST).unwrap();
        let (pods, errors) = load(dir.path(), "n1");
        assert_eq!(pods.len(), 1);
        assert_eq!(errors.len(), 4, "{errors:?}");
        for ((_, _, want), (_, got)) in cases.iter().zip(&errors) {
            assert!(got.contains(want), "{got} should mention {want}");
        }
        // A missing directory holds no pods.
        let (pods, errors) = load(&dir.path().join("none"), "n1");
        assert!(pods.is_empty() && errors.is_empty());
    }
}
