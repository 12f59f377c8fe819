use super::*;
use std::os::unix::fs::MetadataExt;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;

fn yaml<T: serde::de::DeserializeOwned>(s: &str) -> T {
    serde_yaml::from_str(s).unwrap()
}

struct World {
    config_maps: BTreeMap<String, ConfigMap>,
    secrets: BTreeMap<String, Secret>,
    node: NodeInfo,
    tokens: BTreeMap<TokenProjection, String>,
}

impl World {
    fn new() -> Self {
        let cm: ConfigMap = yaml(
            "metadata: {name: app-config}\n\
             data: {app.conf: \"port=80\\n\", log.level: debug}\n\
             binaryData: {logo.png: iVBORw==}",
        );
        let ca: ConfigMap = yaml(
            "metadata: {name: kube-root-ca.crt}\ndata: {ca.crt: \"-----BEGIN CERTIFICATE-----\\n\"}",
        );
        let secret: Secret =
            yaml("metadata: {name: db}\ndata: {password: czNjcmV0, user: YWRtaW4=}");
        World {
            config_maps: [
                ("app-config".to_string(), cm),
                ("kube-root-ca.crt".to_string(), ca),
            ]
            .into(),
            secrets: [("db".to_string(), secret)].into(),
            node: NodeInfo {
                host_ips: vec!["10.0.0.5".into()],
                allocatable: [
                    ("cpu".to_string(), ApiQuantity("2".into())),
                    ("memory".to_string(), ApiQuantity("1Gi".into())),
                ]
                .into(),
                memory_capacity: 2 << 30,
            },
            tokens: tokens("eyJhbGciOiJSUzI1NiJ9.payload.sig"),
        }
    }

    fn sources(&self) -> VolumeSources<'_> {
        VolumeSources {
            config_maps: &self.config_maps,
            secrets: &self.secrets,
            node: &self.node,
            service_account_tokens: &self.tokens,
        }
    }
}

/// The same token for the projections these tests use: the API server's audience, for
/// 3607 s (the admission plugin's) and the default 3600 s.
fn tokens(token: &str) -> BTreeMap<TokenProjection, String> {
    [3607, TokenProjection::DEFAULT_EXPIRATION_SECONDS]
        .into_iter()
        .map(|expiration_seconds| {
            let p = TokenProjection {
                audience: String::new(),
                expiration_seconds,
            };
            (p, token.to_string())
        })
        .collect()
}

fn pod(volumes: &str) -> Pod {
    yaml(&format!(
        r#"
metadata:
  name: web-0
  namespace: shop
  uid: 5e1f
  labels: {{app: web}}
  annotations: {{build: "7"}}
spec:
  containers:
  - name: app
    resources: {{requests: {{cpu: 250m, memory: 64Mi}}, limits: {{memory: 128Mi}}}}
  volumes: {volumes}
"#
    ))
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap()
}

fn mode_of(p: &Path) -> u32 {
    fs::metadata(p).unwrap().mode() & 0o7777
}

fn prepare(dir: &Path, pod: &Pod, w: &World) -> Result<Vec<PreparedVolume>, VolumeError> {
    prepare_volumes(dir, pod, &w.sources(), &PlainDirs)
}

#[test]
fn config_map_whole_and_with_items_and_modes() {
    let tmp = tempfile::tempdir().unwrap();
    let w = World::new();
    let p = pod(r#"[
        {name: all, configMap: {name: app-config}},
        {name: some, configMap: {name: app-config, defaultMode: 256,
            items: [{key: app.conf, path: conf/app.conf}, {key: log.level, path: level, mode: 384}, {key: logo.png, path: logo}]}}
    ]"#);
    let vols = prepare(tmp.path(), &p, &w).unwrap();
    assert_eq!(vols.len(), 2);
    let all = &vols[0];
    assert_eq!(all.kind, VolumeKind::ConfigMap);
    assert!(all.read_only);
    assert_eq!(
        all.host_path,
        tmp.path().join("volumes/kubernetes.io~configmap/all")
    );
    assert_eq!(read(&all.host_path.join("app.conf")), "port=80\n");
    assert_eq!(read(&all.host_path.join("log.level")), "debug");
    assert_eq!(
        fs::read(all.host_path.join("logo.png")).unwrap(),
        [0x89, b'P', b'N', b'G']
    );
    assert_eq!(
        mode_of(&all.host_path.join("app.conf")),
        0o644,
        "defaultMode 0644"
    );
    assert_eq!(
        mode_of(&all.host_path),
        0o777,
        "the volume dir, as the kubelet's wrapped emptyDir"
    );
    assert!(
        fs::symlink_metadata(all.host_path.join("app.conf"))
            .unwrap()
            .file_type()
            .is_symlink()
    );

    let some = &vols[1].host_path;
    assert_eq!(read(&some.join("conf/app.conf")), "port=80\n");
    assert_eq!(mode_of(&some.join("conf/app.conf")), 0o400);
    assert_eq!(mode_of(&some.join("level")), 0o600);
    assert_eq!(fs::read(some.join("logo")).unwrap().len(), 4);
    assert!(
        fs::symlink_metadata(some.join("log.level")).is_err(),
        "only the items"
    );
}

#[test]
fn missing_sources_and_keys() {
    let w = World::new();
    let cases: &[(&str, Option<&str>)] = &[
        (
            "{name: v, configMap: {name: nope}}",
            Some("volume \"v\": configmap \"nope\" not found"),
        ),
        ("{name: v, configMap: {name: nope, optional: true}}", None),
        (
            "{name: v, configMap: {name: app-config, items: [{key: nope, path: x}]}}",
            Some("volume \"v\": configmap references non-existent config key: nope"),
        ),
        (
            "{name: v, configMap: {name: app-config, optional: true, items: [{key: nope, path: x}]}}",
            None,
        ),
        (
            "{name: v, secret: {secretName: nope}}",
            Some("volume \"v\": secret \"nope\" not found"),
        ),
        (
            "{name: v, secret: {secretName: nope, optional: true}}",
            None,
        ),
        (
            "{name: v, secret: {secretName: db, items: [{key: nope, path: x}]}}",
            Some("volume \"v\": references non-existent secret key: nope"),
        ),
        (
            "{name: v, configMap: {name: app-config, items: [{key: app.conf, path: ../x}]}}",
            Some("must not contain '..'"),
        ),
        (
            "{name: v, configMap: {name: app-config, items: [{key: app.conf, path: /etc/x}]}}",
            Some("must be relative path"),
        ),
        (
            "{name: v, configMap: {name: app-config, defaultMode: 4096}}",
            Some("mode 4096 is out of range"),
        ),
        (
            "{name: v, emptyDir: {medium: HugePages}}",
            Some("unknown emptyDir medium \"HugePages\""),
        ),
        (
            "{name: v, persistentVolumeClaim: {claimName: c}}",
            Some("persistentVolumeClaim volumes are not supported by kedge"),
        ),
        (
            "{name: v, nfs: {server: s, path: /}}",
            Some("nfs volumes are not supported"),
        ),
        (
            "{name: v, downwardAPI: {items: [{path: n, fieldRef: {fieldPath: spec.nodeName}}]}}",
            Some("unsupported fieldPath: spec.nodeName"),
        ),
        (
            "{name: v, downwardAPI: {items: [{path: n, resourceFieldRef: {containerName: ghost, resource: limits.cpu}}]}}",
            Some("container ghost not found"),
        ),
    ];
    for (vol, want) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let p = pod(&format!("[{vol}]"));
        match (prepare(tmp.path(), &p, &w), want) {
            (Ok(v), None) => {
                // an optional missing source is an empty volume
                let names: Vec<_> = fs::read_dir(&v[0].host_path)
                    .unwrap()
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with(".."))
                    .collect();
                assert!(names.is_empty(), "{vol}: {names:?}");
            }
            (Err(e), Some(want)) => assert!(e.to_string().contains(want), "{vol}: {e}"),
            (got, want) => panic!("{vol}: got {got:?}, want {want:?}"),
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let err = prepare(
        tmp.path(),
        &pod("[{name: config, configMap: {name: app-cfg}}]"),
        &w,
    )
    .unwrap_err();
    assert_eq!(
        err.event_message(),
        "MountVolume.SetUp failed for volume \"config\" : configmap \"app-cfg\" not found"
    );
}

#[test]
fn secrets_are_files_with_mode_0644_by_default() {
    let tmp = tempfile::tempdir().unwrap();
    let w = World::new();
    let p = pod(
        "[{name: creds, secret: {secretName: db}}, {name: strict, secret: {secretName: db, defaultMode: 256}}]",
    );
    let vols = prepare(tmp.path(), &p, &w).unwrap();
    let creds = &vols[0];
    assert_eq!(
        creds.host_path,
        tmp.path().join("volumes/kubernetes.io~secret/creds")
    );
    assert!(creds.read_only);
    assert_eq!(read(&creds.host_path.join("password")), "s3cret");
    assert_eq!(read(&creds.host_path.join("user")), "admin");
    assert_eq!(mode_of(&creds.host_path.join("password")), 0o644);
    assert_eq!(mode_of(&vols[1].host_path.join("password")), 0o400);
}

#[test]
fn downward_api_files() {
    let tmp = tempfile::tempdir().unwrap();
    let w = World::new();
    let p = pod(r#"[{name: info, downwardAPI: {items: [
            {path: name, fieldRef: {fieldPath: metadata.name}},
            {path: ns, fieldRef: {fieldPath: metadata.namespace}},
            {path: uid, fieldRef: {fieldPath: metadata.uid}},
            {path: labels, fieldRef: {fieldPath: metadata.labels}},
            {path: annotations, fieldRef: {fieldPath: metadata.annotations}},
            {path: app, fieldRef: {fieldPath: "metadata.labels['app']"}, mode: 384},
            {path: limits/cpu, resourceFieldRef: {containerName: app, resource: limits.cpu, divisor: 1m}},
            {path: limits/mem, resourceFieldRef: {containerName: app, resource: limits.memory, divisor: 1Mi}},
            {path: requests/cpu, resourceFieldRef: {containerName: app, resource: requests.cpu, divisor: 1m}}
        ]}}]"#);
    let vols = prepare(tmp.path(), &p, &w).unwrap();
    let d = &vols[0].host_path;
    assert_eq!(vols[0].kind, VolumeKind::DownwardApi);
    let want = [
        ("name", "web-0"),
        ("ns", "shop"),
        ("uid", "5e1f"),
        ("labels", "app=\"web\""),
        ("annotations", "build=\"7\""),
        ("app", "web"),
        // no cpu limit: the node's allocatable 2 cpus
        ("limits/cpu", "2000"),
        ("limits/mem", "128"),
        ("requests/cpu", "250"),
    ];
    for (file, value) in want {
        assert_eq!(read(&d.join(file)), value, "{file}");
    }
    assert_eq!(mode_of(&d.join("app")), 0o600);
    assert_eq!(mode_of(&d.join("name")), 0o644);
}

#[test]
fn projected_service_account_volume_with_token() {
    let tmp = tempfile::tempdir().unwrap();
    let w = World::new();
    let p = pod(
        r#"[{name: kube-api-access, projected: {defaultMode: 420, sources: [
            {serviceAccountToken: {path: token, expirationSeconds: 3607}},
            {configMap: {name: kube-root-ca.crt, items: [{key: ca.crt, path: ca.crt}]}},
            {downwardAPI: {items: [{path: namespace, fieldRef: {fieldPath: metadata.namespace}}]}},
            {secret: {name: db, items: [{key: user, path: db/user}]}}
        ]}}]"#,
    );
    let vols = prepare(tmp.path(), &p, &w).unwrap();
    let d = &vols[0].host_path;
    assert_eq!(
        *d,
        tmp.path()
            .join("volumes/kubernetes.io~projected/kube-api-access")
    );
    assert_eq!(read(&d.join("token")), "eyJhbGciOiJSUzI1NiJ9.payload.sig");
    assert_eq!(read(&d.join("ca.crt")), "-----BEGIN CERTIFICATE-----\n");
    assert_eq!(read(&d.join("namespace")), "shop");
    assert_eq!(read(&d.join("db/user")), "admin");
    assert_eq!(mode_of(&d.join("token")), 0o644);

    // a new token is an update, swapped atomically
    let before = fs::read_link(d.join("..data")).unwrap();
    let mut w2 = World::new();
    w2.tokens = tokens("rotated");
    let update = update_volumes(tmp.path(), &p, &w2.sources(), &PlainDirs);
    assert!(update.errors.is_empty(), "{:?}", update.errors);
    assert_eq!(update.changed, ["kube-api-access"]);
    assert_eq!(read(&d.join("token")), "rotated");
    assert_ne!(fs::read_link(d.join("..data")).unwrap(), before);

    // no token for this projection's audience: a clear error
    w2.tokens.clear();
    w2.tokens.insert(
        TokenProjection {
            audience: "vault".into(),
            expiration_seconds: 3607,
        },
        "for vault".into(),
    );
    let err = prepare(tmp.path(), &p, &w2).unwrap_err().to_string();
    assert!(err.contains("no ServiceAccount token"), "{err}");
}

#[test]
fn a_config_map_update_reaches_a_live_volume() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = World::new();
    let p = pod("[{name: cfg, configMap: {name: app-config}}, {name: scratch, emptyDir: {}}]");
    let vols = prepare(tmp.path(), &p, &w).unwrap();
    let d = vols[0].host_path.clone();
    fs::write(vols[1].host_path.join("keep"), "mine").unwrap();
    let old_ts = fs::read_link(d.join("..data")).unwrap();

    // nothing changed: nothing written
    let update = update_volumes(tmp.path(), &p, &w.sources(), &PlainDirs);
    assert!(update.changed.is_empty() && update.errors.is_empty());

    // the ConfigMap changes: one key edited, one removed, one added
    let cm = w.config_maps.get_mut("app-config").unwrap();
    let data = cm.data.as_mut().unwrap();
    data.insert("app.conf".into(), "port=8080\n".into());
    data.remove("log.level");
    data.insert("feature".into(), "on".into());
    let update = update_volumes(tmp.path(), &p, &w.sources(), &PlainDirs);
    assert_eq!(update.changed, ["cfg"]);
    assert_eq!(read(&d.join("app.conf")), "port=8080\n");
    assert_eq!(read(&d.join("feature")), "on");
    assert!(fs::symlink_metadata(d.join("log.level")).is_err());
    let new_ts = fs::read_link(d.join("..data")).unwrap();
    assert_ne!(old_ts, new_ts);
    assert!(!d.join(&old_ts).exists(), "the old timestamped dir is gone");
    // the emptyDir was not touched
    assert_eq!(read(&vols[1].host_path.join("keep")), "mine");

    // the ConfigMap is deleted: the error names the volume, the old files stay
    w.config_maps.remove("app-config");
    let update = update_volumes(tmp.path(), &p, &w.sources(), &PlainDirs);
    assert_eq!(update.errors.len(), 1);
    assert_eq!(
        update.errors[0].to_string(),
        "volume \"cfg\": configmap \"app-config\" not found"
    );
    assert_eq!(read(&d.join("app.conf")), "port=8080\n");
}

#[test]
fn empty_dirs_and_memory_sizes() {
    let tmp = tempfile::tempdir().unwrap();
    let w = World::new();
    let p = pod(
        "[{name: scratch, emptyDir: {}}, {name: cache, emptyDir: {medium: Memory, sizeLimit: 16Mi}}, {name: plain}]",
    );
    let vols = prepare(tmp.path(), &p, &w).unwrap();
    for v in &vols {
        assert_eq!(v.kind, VolumeKind::EmptyDir);
        assert!(!v.read_only);
        assert!(
            v.host_path
                .starts_with(tmp.path().join("volumes/kubernetes.io~empty-dir"))
        );
        assert_eq!(mode_of(&v.host_path), 0o777);
    }
    // sizes: the smallest of node allocatable (1Gi), the pod's memory limit (128Mi) and sizeLimit
    let sized = |volumes: &str| -> Option<u64> {
        let p = pod(volumes);
        let v = p.spec.as_ref().unwrap().volumes.as_ref().unwrap()[0]
            .empty_dir
            .clone()
            .unwrap();
        let limit = v.size_limit.map(|q| Quantity::parse(&q.0).unwrap());
        memory_size(&p, &w.node, limit.as_ref()).unwrap()
    };
    assert_eq!(
        sized("[{name: a, emptyDir: {medium: Memory, sizeLimit: 16Mi}}]"),
        Some(16 << 20)
    );
    assert_eq!(
        sized("[{name: a, emptyDir: {medium: Memory}}]"),
        Some(128 << 20)
    );
    assert_eq!(
        sized("[{name: a, emptyDir: {medium: Memory, sizeLimit: 4Gi}}]"),
        Some(128 << 20)
    );
    let no_limits: Pod = yaml("metadata: {name: p}\nspec: {containers: [{name: a}]}");
    assert_eq!(
        memory_size(&no_limits, &w.node, None).unwrap(),
        Some(1 << 30)
    );
    assert_eq!(
        memory_size(&no_limits, &NodeInfo::default(), None).unwrap(),
        None
    );
}

#[test]
fn recorded_tmpfs_mounts_for_memory_backed_volumes() {
    #[derive(Debug, Default)]
    struct Recorder {
        mounted: std::sync::Mutex<Vec<(PathBuf, Option<u64>)>>,
    }
    impl Mounter for Recorder {
        fn mount_tmpfs(&self, target: &Path, size: Option<u64>) -> io::Result<()> {
            self.mounted
                .lock()
                .unwrap()
                .push((target.to_path_buf(), size));
            Ok(())
        }
        fn unmount(&self, _target: &Path) -> io::Result<()> {
            Ok(())
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let w = World::new();
    let p = pod(
        "[{name: c, configMap: {name: app-config}}, {name: s, secret: {secretName: db}},
          {name: d, downwardAPI: {items: [{path: n, fieldRef: {fieldPath: metadata.name}}]}},
          {name: m, emptyDir: {medium: Memory, sizeLimit: 1Mi}}, {name: e, emptyDir: {}}]",
    );
    let r = Recorder::default();
    prepare_volumes(tmp.path(), &p, &w.sources(), &r).unwrap();
    let mounted: Vec<(String, Option<u64>)> = r
        .mounted
        .lock()
        .unwrap()
        .iter()
        .map(|(p, s)| (p.file_name().unwrap().to_string_lossy().into_owned(), *s))
        .collect();
    // secrets, downwardAPI and Memory emptyDirs on tmpfs; configMaps and disk emptyDirs not
    assert_eq!(
        mounted,
        [
            ("s".to_string(), Some(128 << 20)),
            ("d".to_string(), Some(128 << 20)),
            ("m".to_string(), Some(1 << 20))
        ]
    );
}

#[test]
fn host_path_types() {
    let tmp = tempfile::tempdir().unwrap();
    let w = World::new();
    let t = tmp.path();
    fs::create_dir(t.join("dir")).unwrap();
    fs::write(t.join("file"), "x").unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(t.join("sock")).unwrap();
    let ok: &[(&str, &str)] = &[
        ("dir", "Directory"),
        ("dir", ""),
        ("new-dir/deep", "DirectoryOrCreate"),
        ("dir", "DirectoryOrCreate"),
        ("file", "File"),
        ("new-file", "FileOrCreate"),
        ("file", "FileOrCreate"),
        ("sock", "Socket"),
        ("unset-missing", ""),
    ];
    for (path, ty) in ok {
        let full = t.join(path);
        let p = pod(&format!(
            "[{{name: h, hostPath: {{path: '{}', type: '{ty}'}}}}]",
            full.display()
        ));
        let vols = prepare(t, &p, &w).unwrap_or_else(|e| panic!("{path} {ty}: {e}"));
        assert_eq!(vols[0].kind, VolumeKind::HostPath);
        assert_eq!(vols[0].host_path, full);
        assert!(full.exists(), "{path} {ty}");
    }
    assert!(t.join("new-dir/deep").is_dir());
    assert_eq!(mode_of(&t.join("new-dir/deep")), 0o755);
    assert!(t.join("new-file").is_file());
    assert_eq!(
        mode_of(&t.join("new-file")) & 0o133,
        0,
        "made 0644 (less the umask)"
    );

    let bad: &[(&str, &str, &str)] = &[
        (
            "file",
            "Directory",
            "hostPath type check failed: {} is not a directory",
        ),
        ("missing", "Directory", "is not a directory"),
        ("dir", "File", "is not a file"),
        ("missing", "File", "is not a file"),
        ("file", "Socket", "is not a socket file"),
        ("file", "CharDevice", "is not a character device"),
        ("file", "BlockDevice", "is not a block device"),
        ("file", "Sideways", "Sideways is an invalid volume type"),
        ("file", "DirectoryOrCreate", "is not a directory"),
    ];
    for (path, ty, want) in bad {
        let full = t.join(path);
        let p = pod(&format!(
            "[{{name: h, hostPath: {{path: '{}', type: '{ty}'}}}}]",
            full.display()
        ));
        let err = prepare(t, &p, &w).unwrap_err().to_string();
        let want = want.replace("{}", &full.display().to_string());
        assert!(err.contains(&want), "{path} {ty}: {err}");
    }
    let p = pod("[{name: h, hostPath: {path: relative/x}}]");
    assert!(
        prepare(t, &p, &w)
            .unwrap_err()
            .to_string()
            .contains("is not absolute")
    );
    // /dev/null is a character device on every host
    let p = pod("[{name: h, hostPath: {path: /dev/null, type: CharDevice}}]");
    prepare(t, &p, &w).unwrap();
}

#[test]
fn cleanup_removes_everything_and_only_volumes() {
    let tmp = tempfile::tempdir().unwrap();
    let w = World::new();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("precious"), "keep").unwrap();
    let pod_dir = tmp.path().join("pod");
    let p = pod(&format!(
        "[{{name: c, configMap: {{name: app-config}}}}, {{name: e, emptyDir: {{}}}}, {{name: h, hostPath: {{path: '{}'}}}}]",
        outside.display()
    ));
    let vols = prepare(&pod_dir, &p, &w).unwrap();
    // a symlink in an emptyDir pointing outside must not be followed
    std::os::unix::fs::symlink(&outside, vols[1].host_path.join("link")).unwrap();
    cleanup_volumes(&pod_dir, &PlainDirs).unwrap();
    assert!(!pod_dir.join("volumes").exists());
    assert_eq!(read(&outside.join("precious")), "keep");
    // twice is fine
    cleanup_volumes(&pod_dir, &PlainDirs).unwrap();
}

#[test]
fn termination_log_files() {
    let tmp = tempfile::tempdir().unwrap();
    let path = prepare_termination_log(tmp.path(), "app").unwrap();
    assert!(path.starts_with(tmp.path().join("containers/app")));
    assert_eq!(mode_of(&path), 0o666);
    assert_eq!(read(&path), "");
}

/// fsGroup ownership changes group ownership, which needs root.
#[test]
fn fs_group_ownership_as_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test changes group ownership and needs root: run the tests as root (CI does)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let w = World::new();
    let mut p = pod(
        "[{name: c, configMap: {name: app-config}}, {name: e, emptyDir: {}},
        {name: t, projected: {sources: [{serviceAccountToken: {path: token}}]}}]",
    );
    p.spec.as_mut().unwrap().security_context = Some(yaml("{fsGroup: 4321}"));
    let vols = prepare(tmp.path(), &p, &w).unwrap();
    let group = |path: &Path| fs::symlink_metadata(path).unwrap().gid();
    // configMap: files 0644 stay, group set; dirs setgid
    let c = &vols[0].host_path;
    let data = c.join("..data").canonicalize().unwrap();
    assert_eq!(group(&data.join("app.conf")), 4321);
    assert_eq!(mode_of(&data.join("app.conf")), 0o644);
    assert_eq!(group(c), 4321);
    assert_eq!(mode_of(c) & 0o2000, 0o2000);
    assert_eq!(group(&c.join("app.conf")), 4321, "the visible link too");
    // emptyDir: group-writable, setgid
    let e = &vols[1].host_path;
    assert_eq!(group(e), 4321);
    assert_eq!(mode_of(e), 0o2777);
    // the token: 0600 then group read: 0640
    let t = vols[2]
        .host_path
        .join("..data")
        .canonicalize()
        .unwrap()
        .join("token");
    assert_eq!(mode_of(&t), 0o640);
    assert_eq!(group(&t), 4321);
    // and nothing looks changed to the next update
    let update = update_volumes(tmp.path(), &p, &w.sources(), &PlainDirs);
    assert!(
        update.errors.is_empty() && update.changed.is_empty(),
        "{update:?}"
    );
}

/// Memory-backed volumes on a real tmpfs, and their unmounting, need root.
#[test]
fn real_tmpfs_mounts_as_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test mounts tmpfs and needs root: run the tests as root (CI does)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let w = World::new();
    let p = pod(
        "[{name: s, secret: {secretName: db}}, {name: m, emptyDir: {medium: Memory, sizeLimit: 2Mi}}]",
    );
    let pod_dir = tmp.path().join("pod");
    let result = prepare_volumes(&pod_dir, &p, &w.sources(), &HostMounter);
    let vols = match result {
        Ok(v) => v,
        Err(e) => {
            let _ = cleanup_volumes(&pod_dir, &HostMounter);
            panic!("{e}");
        }
    };
    let check = || -> Result<(), String> {
        for v in &vols {
            if !is_mount_point(&v.host_path).map_err(|e| e.to_string())? {
                return Err(format!("{} is not a mount point", v.host_path.display()));
            }
        }
        let st = nix::sys::statfs::statfs(&vols[1].host_path).map_err(|e| e.to_string())?;
        if st.filesystem_type() != nix::sys::statfs::TMPFS_MAGIC {
            return Err("not a tmpfs".into());
        }
        let size = st.blocks() as u64 * st.block_size() as u64;
        if size != 2 << 20 {
            return Err(format!("tmpfs size {size}, want 2Mi"));
        }
        if fs::read_to_string(vols[0].host_path.join("password")).map_err(|e| e.to_string())?
            != "s3cret"
        {
            return Err("secret not readable".into());
        }
        // preparing again does not mount twice
        prepare_volumes(&pod_dir, &p, &w.sources(), &HostMounter).map_err(|e| e.to_string())?;
        Ok(())
    };
    let checked = check();
    cleanup_volumes(&pod_dir, &HostMounter).unwrap();
    checked.unwrap();
    assert!(!pod_dir.join("volumes").exists());
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&pod_dir.display().to_string()),
        "nothing left mounted"
    );
}

#[test]
fn token_projections_are_distinct_and_defaulted() {
    let p = pod(r#"[{name: a, projected: {sources: [
            {serviceAccountToken: {path: token}},
            {serviceAccountToken: {path: vault-token, audience: vault, expirationSeconds: 7200}}]}},
            {name: b, projected: {sources: [{serviceAccountToken: {path: t}}]}},
            {name: c, configMap: {name: app-config}}]"#);
    let want = |audience: &str, expiration_seconds| TokenProjection {
        audience: audience.into(),
        expiration_seconds,
    };
    assert_eq!(
        token_projections(&p),
        [want("", 3600), want("vault", 7200)],
        "one token per audience and lifetime, the default lifetime filled in"
    );
    assert!(token_projections(&pod("[{name: c, configMap: {name: x}}]")).is_empty());
}
