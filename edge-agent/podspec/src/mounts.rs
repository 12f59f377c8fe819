//! A container's `volumeMounts` turned into OCI bind mounts, as the kubelet's
//! `makeMounts` and containerd's CRI `WithMounts` do: subPath and
//! subPathExpr (made inside the volume, never escaping it), readOnly (forced
//! for configMap, secret, downwardAPI and projected volumes) and
//! mountPropagation (`None` → rprivate, `HostToContainer` → rslave,
//! `Bidirectional` → rshared, privileged containers only).

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::Container;
use oci_spec::runtime::{Mount, MountBuilder};

use crate::env::EnvVar;
use crate::expand::expand;
use crate::volumes::PreparedVolume;

/// Why a container's mounts could not be made.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error(
        "cannot find volume {volume:?} to mount into container {container:?}: add it to the pod's volumes"
    )]
    NoVolume { volume: String, container: String },
    #[error(
        "volumeMount {volume:?} of container {container:?}: mountPath {path:?} must be absolute"
    )]
    RelativePath {
        volume: String,
        container: String,
        path: String,
    },
    #[error("error SubPath `{0}` must not be an absolute path")]
    AbsoluteSubPath(String),
    #[error("unable to provision SubPath `{0}`: must not contain '..'")]
    BackstepSubPath(String),
    #[error(
        "volumeMount {volume:?} of container {container:?}: subPathExpr: missing value for {missing}"
    )]
    SubPathExpr {
        volume: String,
        container: String,
        missing: String,
    },
    #[error(
        "failed to create subPath directory for volumeMount {volume:?} of container {container:?}: {reason}"
    )]
    SubPathCreate {
        volume: String,
        container: String,
        reason: String,
    },
    #[error(
        "subpath {sub:?} of volume {volume:?} resolves to {resolved} outside the volume: fix the symlink in the volume"
    )]
    SubPathEscape {
        volume: String,
        sub: String,
        resolved: PathBuf,
    },
    #[error(
        "volumeMount {volume:?} of container {container:?}: Bidirectional mount propagation is available only to privileged containers"
    )]
    BidirectionalUnprivileged { volume: String, container: String },
    #[error(
        "volumeMount {volume:?}: unknown mountPropagation {mode:?}: use None, HostToContainer or Bidirectional"
    )]
    BadPropagation { volume: String, mode: String },
    #[error(
        "volumeMount {volume:?}: recursiveReadOnly Enabled needs runc 1.2 or newer, which kedge does not assume: use IfPossible or Disabled"
    )]
    RecursiveReadOnly { volume: String },
    #[error("volume {volume:?}: resolve {path}: {source}: the volume's path must exist")]
    Resolve {
        volume: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The OCI mounts for `container`'s `volumeMounts`, in their order (the spec
/// sorts all mounts later). `env` is the container's resolved environment,
/// for `subPathExpr`.
pub fn volume_mounts(
    container: &Container,
    volumes: &[PreparedVolume],
    env: &[EnvVar],
) -> Result<Vec<Mount>, MountError> {
    let privileged = container
        .security_context
        .as_ref()
        .and_then(|s| s.privileged)
        .unwrap_or(false);
    let mut out = Vec::new();
    for vm in container.volume_mounts.iter().flatten() {
        let volume =
            volumes
                .iter()
                .find(|v| v.name == vm.name)
                .ok_or_else(|| MountError::NoVolume {
                    volume: vm.name.clone(),
                    container: container.name.clone(),
                })?;
        if !vm.mount_path.starts_with('/') {
            return Err(MountError::RelativePath {
                volume: vm.name.clone(),
                container: container.name.clone(),
                path: vm.mount_path.clone(),
            });
        }
        let sub_path = match (vm.sub_path.as_deref(), vm.sub_path_expr.as_deref()) {
            (Some(s), _) if !s.is_empty() => Some(s.to_string()),
            (_, Some(expr)) if !expr.is_empty() => Some(expand_sub_path(expr, env).map_err(
                |missing| MountError::SubPathExpr {
                    volume: vm.name.clone(),
                    container: container.name.clone(),
                    missing,
                },
            )?),
            _ => None,
        };
        let root = volume
            .host_path
            .canonicalize()
            .map_err(|source| MountError::Resolve {
                volume: vm.name.clone(),
                path: volume.host_path.clone(),
                source,
            })?;
        let source = match &sub_path {
            None => root,
            Some(sub) => sub_path_source(&root, sub, &vm.name, &container.name)?,
        };

        let propagation = match vm.mount_propagation.as_deref().unwrap_or("None") {
            "None" | "" => "rprivate",
            "HostToContainer" => "rslave",
            "Bidirectional" => {
                if !privileged {
                    return Err(MountError::BidirectionalUnprivileged {
                        volume: vm.name.clone(),
                        container: container.name.clone(),
                    });
                }
                "rshared"
            }
            other => {
                return Err(MountError::BadPropagation {
                    volume: vm.name.clone(),
                    mode: other.to_string(),
                });
            }
        };
        if vm.recursive_read_only.as_deref() == Some("Enabled") {
            return Err(MountError::RecursiveReadOnly {
                volume: vm.name.clone(),
            });
        }
        let read_only = vm.read_only.unwrap_or(false) || volume.read_only;
        out.push(bind_mount(&source, &vm.mount_path, propagation, read_only));
    }
    Ok(out)
}

/// A bind mount as containerd's CRI writes it: `rbind`, a propagation, `ro` or `rw`.
pub fn bind_mount(source: &Path, destination: &str, propagation: &str, read_only: bool) -> Mount {
    MountBuilder::default()
        .destination(destination)
        .typ("bind")
        .source(source)
        .options(vec![
            "rbind".to_string(),
            propagation.to_string(),
            if read_only { "ro" } else { "rw" }.to_string(),
        ])
        .build()
        .expect("all fields have defaults")
}

/// upstream's `ExpandContainerVolumeMounts`: every reference must have a
/// non-empty value.
fn expand_sub_path(expr: &str, env: &[EnvVar]) -> Result<String, String> {
    let mut missing = Vec::new();
    let out = expand(expr, |name| {
        match env.iter().rev().find(|v| v.name == name) {
            Some(v) if !v.value.is_empty() => Some(v.value.clone()),
            _ => {
                missing.push(name.to_string());
                Some(String::new())
            }
        }
    });
    if missing.is_empty() {
        Ok(out)
    } else {
        missing.sort();
        missing.dedup();
        Err(missing.join(", "))
    }
}

/// The host path for `sub` inside the volume at `root` (canonical): checked
/// for backsteps, made (as a directory with the volume root's mode) when
/// missing, and resolved, so that a symlink in the volume cannot point the
/// mount outside it.
fn sub_path_source(
    root: &Path,
    sub: &str,
    volume: &str,
    container: &str,
) -> Result<PathBuf, MountError> {
    if sub.starts_with('/') {
        return Err(MountError::AbsoluteSubPath(sub.to_string()));
    }
    if Path::new(sub)
        .components()
        .any(|c| c == Component::ParentDir)
    {
        return Err(MountError::BackstepSubPath(sub.to_string()));
    }
    let create_err = |reason: String| MountError::SubPathCreate {
        volume: volume.to_string(),
        container: container.to_string(),
        reason,
    };
    let root_mode = fs::metadata(root)
        .map_err(|e| create_err(e.to_string()))?
        .permissions()
        .mode()
        & 0o7777;
    // walk down, making what is missing; every existing step must stay inside
    let mut cur = root.to_path_buf();
    for c in Path::new(sub).components() {
        let Component::Normal(name) = c else { continue };
        let next = cur.join(name);
        match fs::symlink_metadata(&next) {
            Ok(_) => {
                let resolved = next.canonicalize().map_err(|e| create_err(e.to_string()))?;
                if !resolved.starts_with(root) {
                    return Err(MountError::SubPathEscape {
                        volume: volume.to_string(),
                        sub: sub.to_string(),
                        resolved,
                    });
                }
                cur = resolved;
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                fs::create_dir(&next).map_err(|e| create_err(e.to_string()))?;
                fs::set_permissions(&next, fs::Permissions::from_mode(root_mode))
                    .map_err(|e| create_err(e.to_string()))?;
                cur = next;
            }
            Err(e) => return Err(create_err(e.to_string())),
        }
    }
    Ok(cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volumes::VolumeKind;
    use k8s_openapi::api::core::v1::Pod;

    fn pod(mounts: &str, privileged: bool) -> (Pod, Container) {
        let p: Pod = serde_yaml::from_str(&format!(
            "metadata: {{name: p, namespace: ns}}\n\
             spec: {{containers: [{{name: c, securityContext: {{privileged: {privileged}}}, volumeMounts: {mounts}}}]}}"
        ))
        .unwrap();
        let c = p.spec.as_ref().unwrap().containers[0].clone();
        (p, c)
    }

    fn options(m: &Mount) -> Vec<String> {
        m.options().clone().unwrap_or_default()
    }

    #[test]
    fn mounts_with_sub_paths_read_only_and_propagation() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let cfg = tmp.path().join("cfg");
        fs::create_dir_all(&data).unwrap();
        fs::set_permissions(&data, fs::Permissions::from_mode(0o777)).unwrap();
        fs::create_dir_all(cfg.join("..2024")).unwrap();
        fs::write(cfg.join("..2024/app.conf"), "x").unwrap();
        std::os::unix::fs::symlink("..2024", cfg.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/app.conf", cfg.join("app.conf")).unwrap();
        let volumes = vec![
            PreparedVolume {
                name: "data".into(),
                kind: VolumeKind::EmptyDir,
                host_path: data.clone(),
                read_only: false,
            },
            PreparedVolume {
                name: "cfg".into(),
                kind: VolumeKind::ConfigMap,
                host_path: cfg.clone(),
                read_only: true,
            },
        ];
        let env = vec![EnvVar {
            name: "POD".into(),
            value: "web-0".into(),
        }];
        let (_, c) = pod(
            r#"[
              {name: data, mountPath: /data},
              {name: data, mountPath: /logs, subPathExpr: "logs/$(POD)", readOnly: true},
              {name: cfg, mountPath: /etc/app},
              {name: cfg, mountPath: /etc/app.conf, subPath: app.conf},
              {name: data, mountPath: /shared, mountPropagation: HostToContainer}
            ]"#,
            false,
        );
        let mounts = volume_mounts(&c, &volumes, &env).unwrap();
        let data = data.canonicalize().unwrap();
        let cfg = cfg.canonicalize().unwrap();
        let got: Vec<(String, PathBuf, Vec<String>)> = mounts
            .iter()
            .map(|m| {
                (
                    m.destination().display().to_string(),
                    m.source().clone().unwrap(),
                    options(m),
                )
            })
            .collect();
        let o = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            got,
            vec![
                (
                    "/data".into(),
                    data.clone(),
                    o(&["rbind", "rprivate", "rw"])
                ),
                (
                    "/logs".into(),
                    data.join("logs/web-0"),
                    o(&["rbind", "rprivate", "ro"])
                ),
                // configMap volumes are read-only whatever the mount says
                (
                    "/etc/app".into(),
                    cfg.clone(),
                    o(&["rbind", "rprivate", "ro"])
                ),
                // a subPath into the atomic writer's layout resolves to the file itself
                (
                    "/etc/app.conf".into(),
                    cfg.join("..2024/app.conf"),
                    o(&["rbind", "rprivate", "ro"])
                ),
                (
                    "/shared".into(),
                    data.clone(),
                    o(&["rbind", "rslave", "rw"])
                ),
            ]
        );
        // the subPath directory was made with the volume root's mode
        let mode = fs::metadata(data.join("logs/web-0"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777;
        assert_eq!(mode, 0o777);
        assert!(mounts.iter().all(|m| m.typ().as_deref() == Some("bind")));
    }

    #[test]
    fn bad_mounts_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        fs::create_dir_all(&data).unwrap();
        std::os::unix::fs::symlink("/etc", data.join("escape")).unwrap();
        let volumes = vec![PreparedVolume {
            name: "data".into(),
            kind: VolumeKind::EmptyDir,
            host_path: data,
            read_only: false,
        }];
        let cases: &[(&str, bool, &str)] = &[
            (
                "[{name: nope, mountPath: /x}]",
                false,
                "cannot find volume \"nope\" to mount into container \"c\"",
            ),
            (
                "[{name: data, mountPath: x}]",
                false,
                "mountPath \"x\" must be absolute",
            ),
            (
                "[{name: data, mountPath: /x, subPath: /abs}]",
                false,
                "error SubPath `/abs` must not be an absolute path",
            ),
            (
                "[{name: data, mountPath: /x, subPath: a/../../b}]",
                false,
                "unable to provision SubPath `a/../../b`: must not contain '..'",
            ),
            (
                "[{name: data, mountPath: /x, subPath: escape}]",
                false,
                "outside the volume",
            ),
            (
                "[{name: data, mountPath: /x, subPath: escape/passwd}]",
                false,
                "outside the volume",
            ),
            (
                "[{name: data, mountPath: /x, subPathExpr: \"$(NOPE)/$(EMPTY)\"}]",
                false,
                "missing value for EMPTY, NOPE",
            ),
            (
                "[{name: data, mountPath: /x, mountPropagation: Bidirectional}]",
                false,
                "available only to privileged containers",
            ),
            (
                "[{name: data, mountPath: /x, mountPropagation: Sideways}]",
                false,
                "unknown mountPropagation \"Sideways\"",
            ),
            (
                "[{name: data, mountPath: /x, readOnly: true, recursiveReadOnly: Enabled}]",
                false,
                "needs runc 1.2",
            ),
        ];
        let env = vec![EnvVar {
            name: "EMPTY".into(),
            value: String::new(),
        }];
        for (mounts, privileged, want) in cases {
            let (_, c) = pod(mounts, *privileged);
            let err = volume_mounts(&c, &volumes, &env).unwrap_err().to_string();
            assert!(err.contains(want), "{mounts}: {err}");
        }
        let (_, c) = pod(
            "[{name: data, mountPath: /x, mountPropagation: Bidirectional}]",
            true,
        );
        let m = volume_mounts(&c, &volumes, &env).unwrap();
        assert_eq!(options(&m[0])[1], "rshared");
    }
}
