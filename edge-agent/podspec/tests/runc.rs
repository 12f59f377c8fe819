//! The specs this crate makes, run by the real runc: a pause-like sandbox in
//! a real network namespace, then the pod's containers joining it, each
//! checking from inside what the spec promised (env, cwd, uid/gid, a
//! configMap file through its mount, a read-only root, cgroup limits, a
//! dropped capability). Needs root, runc (Debian package `runc`),
//! busybox-static and iproute2; it fails, naming what is missing, without them.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use kedge_podspec::{
    ContainerInput, EnvSources, ImageConfig, NodeInfo, PlainDirs, SANDBOX_OOM_SCORE_ADJ,
    SandboxInput, SandboxRef, VolumeSources, cleanup_volumes, container_spec, oom_score_adj,
    pod_hostname, prepare_termination_log, prepare_volumes, resolve_env, restrict_oom_score_adj,
    sandbox_spec, update_volumes, volume_mounts,
};

const BUSYBOX: &str = "/bin/busybox";
const APPLETS: [&str; 16] = [
    "sh", "id", "cat", "touch", "echo", "pwd", "hostname", "chown", "grep", "readlink", "sleep",
    "env", "ls", "true", "tr", "cut",
];

fn require_tools() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the runc test runs containers and needs root: run it as root (CI does)"
    );
    let runc = Command::new("runc").arg("--version").output();
    assert!(
        runc.as_ref().is_ok_and(|o| o.status.success()),
        "runc is missing: install the Debian package runc (scripts/setup.sh does): {runc:?}"
    );
    let static_busybox = fs::read(BUSYBOX).is_ok_and(|b| b.starts_with(b"\x7fELF"));
    assert!(
        static_busybox,
        "{BUSYBOX} is missing: install the Debian package busybox-static (scripts/setup.sh does)"
    );
    let ip = Command::new("ip").arg("-V").output();
    assert!(
        ip.is_ok_and(|o| o.status.success()),
        "ip is missing: install the Debian package iproute2 (scripts/setup.sh does)"
    );
}

/// A rootfs with a static busybox and its applets, and the directories runc
/// and the spec need.
fn make_rootfs(dir: &Path, dirs: &[&str]) {
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::copy(BUSYBOX, dir.join("bin/busybox")).unwrap();
    for applet in APPLETS {
        symlink("busybox", dir.join("bin").join(applet)).unwrap();
    }
    for d in ["proc", "dev", "sys", "etc", "tmp"].iter().chain(dirs) {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    fs::write(dir.join("etc/hosts"), "").unwrap();
    fs::write(dir.join("etc/hostname"), "").unwrap();
    fs::write(dir.join("etc/resolv.conf"), "").unwrap();
}

/// Everything the test made on the host, removed however the test ends.
struct Cleanup {
    runc_root: PathBuf,
    containers: Vec<String>,
    netns: Option<String>,
    pod_dir: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for id in &self.containers {
            let _ = Command::new("runc")
                .arg("--root")
                .arg(&self.runc_root)
                .args(["delete", "--force", id])
                .stderr(Stdio::null())
                .status();
        }
        if let Some(ns) = &self.netns {
            let _ = Command::new("ip").args(["netns", "delete", ns]).status();
        }
        let _ = cleanup_volumes(&self.pod_dir, &PlainDirs);
    }
}

/// Runs `runc run` on a bundle in the foreground and returns its stdout, or
/// fails after 60 s.
fn runc_run(runc_root: &Path, bundle: &Path, id: &str) -> String {
    let child = Command::new("runc")
        .arg("--root")
        .arg(runc_root)
        .args(["run", "--bundle"])
        .arg(bundle)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start runc");
    let pid = child.id();
    let waiter = std::thread::spawn(move || child.wait_with_output());
    let deadline = Instant::now() + Duration::from_secs(60);
    while !waiter.is_finished() {
        if Instant::now() > deadline {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("runc run {id} did not finish in 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = waiter.join().unwrap().expect("wait for runc");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "runc run {id} failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    stdout
}

fn write_bundle(bundle: &Path, spec: &oci_spec::runtime::Spec) {
    fs::create_dir_all(bundle).unwrap();
    let json = serde_json::to_vec_pretty(spec).unwrap();
    let tmp = bundle.join("config.json.tmp");
    fs::write(&tmp, json).unwrap();
    fs::rename(tmp, bundle.join("config.json")).unwrap();
}

const APP_SCRIPT: &str = r#"
echo "greeting=$GREETING"
echo "level=$LEVEL"
echo "hostname-env=$HOSTNAME"
echo "cwd=$(pwd)"
echo "id=$(id)"
echo "config=$(cat /etc/app/app.conf)"
echo "secret=$(cat /etc/creds/password)"
echo "podname-file=$(cat /etc/podinfo/name)"
echo "subpath=$(cat /etc/app.conf)"
echo "token=$(cat /var/run/secrets/kubernetes.io/serviceaccount/token)"
echo "ca=$(cat /var/run/secrets/kubernetes.io/serviceaccount/ca.crt)"
touch /rootfile 2>/dev/null && echo "root=writable" || echo "root=read-only"
touch /scratch/by-app && echo "scratch=writable" || echo "scratch=denied"
echo "hostname=$(hostname)"
echo "nnp=$(grep NoNewPrivs /proc/self/status | tr -d '\t ')"
echo "netns=$(readlink /proc/self/ns/net)"
echo "ipcns=$(readlink /proc/self/ns/ipc)"
echo "memory-limit=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max)"
echo "cpu-quota=$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cut -d' ' -f1 /sys/fs/cgroup/cpu.max)"
echo "cpu-shares=$(cat /sys/fs/cgroup/cpu/cpu.shares 2>/dev/null || cat /sys/fs/cgroup/cpu.weight)"
echo "oom=$(cat /proc/self/oom_score_adj)"
echo "done"
"#;

/// Waits (up to 10 s) for the configMap file to change under it.
const WATCH_SCRIPT: &str = r#"
touch /scratch/watcher-started
i=0
while [ $i -lt 200 ]; do
  if [ "$(cat /etc/app/app.conf)" = "port=8080" ]; then echo "seen=port=8080"; exit 0; fi
  sleep 0.05
  i=$((i+1))
done
echo "seen=$(cat /etc/app/app.conf)"
"#;

const CHOWN_SCRIPT: &str = r#"
touch /scratch/by-$NAME
chown 1234 /scratch/by-$NAME 2>/dev/null && echo "chown=ok" || echo "chown=denied"
"#;

#[test]
fn runc_runs_the_pods_specs() {
    require_tools();
    let tmp = tempfile::Builder::new()
        .prefix("kedge-podspec-runc")
        .tempdir()
        .unwrap();
    let t = tmp.path();
    let uid = format!("c0ffee-{}", std::process::id());
    let netns = format!("kedge-podspec-{}", std::process::id());
    let pod_dir = t.join("pods").join(&uid);
    let runc_root = t.join("runc");
    let mut cleanup = Cleanup {
        runc_root: runc_root.clone(),
        containers: Vec::new(),
        netns: None,
        pod_dir: pod_dir.clone(),
    };

    let status = Command::new("ip")
        .args(["netns", "add", &netns])
        .status()
        .unwrap();
    assert!(status.success(), "ip netns add {netns} failed");
    cleanup.netns = Some(netns.clone());
    let netns_path = PathBuf::from("/var/run/netns").join(&netns);

    let pod: Pod = serde_yaml::from_str(&format!(
        r#"
metadata: {{name: web-0, namespace: shop, uid: "{uid}", labels: {{app: web}}}}
spec:
  nodeName: pi-1
  securityContext: {{runAsUser: 1000, runAsGroup: 3000, supplementalGroups: [4000], fsGroup: 2000}}
  containers:
  - name: app
    image: busybox
    command: [/bin/sh, -c]
    args: ["{script}"]
    workingDir: /work
    env:
    - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
    - {{name: GREETING, value: "hello $(POD_NAME)"}}
    - {{name: LEVEL, valueFrom: {{configMapKeyRef: {{name: app-config, key: log.level}}}}}}
    securityContext: {{readOnlyRootFilesystem: true, allowPrivilegeEscalation: false}}
    resources: {{requests: {{cpu: 100m, memory: 32Mi}}, limits: {{cpu: 500m, memory: 64Mi}}}}
    volumeMounts:
    - {{name: config, mountPath: /etc/app}}
    - {{name: creds, mountPath: /etc/creds}}
    - {{name: podinfo, mountPath: /etc/podinfo}}
    - {{name: scratch, mountPath: /scratch}}
    - {{name: config, mountPath: /etc/app.conf, subPath: app.conf}}
    - {{name: token, mountPath: /var/run/secrets/kubernetes.io/serviceaccount}}
  - name: dropped
    image: busybox
    command: [/bin/sh, -c, "{chown}"]
    env: [{{name: NAME, value: dropped}}]
    securityContext: {{runAsUser: 0, capabilities: {{drop: [CHOWN]}}}}
    volumeMounts: [{{name: scratch, mountPath: /scratch}}]
  - name: kept
    image: busybox
    command: [/bin/sh, -c, "{chown}"]
    env: [{{name: NAME, value: kept}}]
    securityContext: {{runAsUser: 0}}
    volumeMounts: [{{name: scratch, mountPath: /scratch}}]
  - name: watcher
    image: busybox
    command: [/bin/sh, -c, "{watch}"]
    volumeMounts: [{{name: scratch, mountPath: /scratch}}, {{name: config, mountPath: /etc/app}}]
  volumes:
  - {{name: config, configMap: {{name: app-config}}}}
  - {{name: creds, secret: {{secretName: db}}}}
  - {{name: podinfo, downwardAPI: {{items: [{{path: name, fieldRef: {{fieldPath: metadata.name}}}}]}}}}
  - {{name: scratch, emptyDir: {{}}}}
  - {{name: token, projected: {{sources: [{{serviceAccountToken: {{path: token}}}},
      {{configMap: {{name: kube-root-ca.crt, items: [{{key: ca.crt, path: ca.crt}}]}}}}]}}}}
"#,
        script = APP_SCRIPT.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"),
        chown = CHOWN_SCRIPT.replace('"', "\\\"").replace('\n', "\\n"),
        watch = WATCH_SCRIPT.replace('"', "\\\"").replace('\n', "\\n"),
    ))
    .unwrap();

    let config_map: ConfigMap = serde_yaml::from_str(
        "metadata: {name: app-config}\ndata: {app.conf: port=80, log.level: debug}",
    )
    .unwrap();
    let secret: Secret =
        serde_yaml::from_str("metadata: {name: db}\ndata: {password: czNjcmV0}").unwrap();
    let root_ca: ConfigMap =
        serde_yaml::from_str("metadata: {name: kube-root-ca.crt}\ndata: {ca.crt: CLUSTER-CA}")
            .unwrap();
    let mut config_maps: BTreeMap<String, ConfigMap> = [
        ("app-config".to_string(), config_map),
        ("kube-root-ca.crt".to_string(), root_ca),
    ]
    .into();
    let secrets: BTreeMap<String, Secret> = [("db".to_string(), secret)].into();
    let node = NodeInfo {
        host_ips: vec!["192.0.2.10".into()],
        allocatable: [
            ("cpu".to_string(), ApiQuantity("2".into())),
            ("memory".to_string(), ApiQuantity("2Gi".into())),
        ]
        .into(),
        memory_capacity: 4 << 30,
    };

    // volumes (PlainDirs: this test is about the spec; the tmpfs mounts have their own test)
    let token = "eyJhbGciOiJSUzI1NiJ9.test.token";
    let tokens: BTreeMap<_, _> = kedge_podspec::token_projections(&pod)
        .into_iter()
        .map(|p| (p, token.to_string()))
        .collect();
    let volumes = prepare_volumes(
        &pod_dir,
        &pod,
        &VolumeSources {
            config_maps: &config_maps,
            secrets: &secrets,
            node: &node,
            service_account_tokens: &tokens,
        },
        &PlainDirs,
    )
    .unwrap();

    // this machine may not let root lower OOM scores (no CAP_SYS_RESOURCE in a
    // container): ask for no less than our own, as containerd's restrict_oom_score_adj
    let own_oom: i32 = fs::read_to_string("/proc/self/oom_score_adj")
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    // the sandbox: busybox sleeping in place of pause
    let hostname = pod_hostname(&pod, "pi-1");
    let pause_rootfs = t.join("pause/rootfs");
    make_rootfs(&pause_rootfs, &[]);
    let sandbox_id = format!("kedge-podspec-sb-{}", std::process::id());
    let sb_spec = sandbox_spec(&SandboxInput {
        pod: &pod,
        rootfs: &pause_rootfs,
        args: vec!["/bin/busybox".into(), "sleep".into(), "3600".into()],
        netns: Some(&netns_path),
        hostname: &hostname,
        cgroups_path: &format!("/{sandbox_id}"),
        shm: None,
        oom_score_adj: restrict_oom_score_adj(SANDBOX_OOM_SCORE_ADJ, own_oom),
    })
    .unwrap();
    write_bundle(&t.join("pause"), &sb_spec);
    let pid_file = t.join("pause.pid");
    cleanup.containers.push(sandbox_id.clone());
    // the detached sandbox keeps runc's stdio: give it files, not pipes we would wait on
    let sb_log = t.join("pause.log");
    let log = fs::File::create(&sb_log).unwrap();
    let status = Command::new("runc")
        .arg("--root")
        .arg(&runc_root)
        .args(["run", "--detach", "--pid-file"])
        .arg(&pid_file)
        .arg("--bundle")
        .arg(t.join("pause"))
        .arg(&sandbox_id)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "runc run the sandbox: {}",
        fs::read_to_string(&sb_log).unwrap_or_default()
    );
    let pause_pid: u32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    // the pod's files the caller makes
    let files = t.join("files");
    fs::create_dir_all(&files).unwrap();
    fs::write(
        files.join("hosts"),
        format!("127.0.0.1 localhost\n10.42.0.7 {hostname}\n"),
    )
    .unwrap();
    fs::write(files.join("resolv.conf"), "nameserver 10.43.0.10\n").unwrap();
    fs::write(files.join("hostname"), format!("{hostname}\n")).unwrap();
    let mut sandbox =
        SandboxRef::of_pause_pid(&sandbox_id, pause_pid, Some(netns_path.clone()), &hostname);
    sandbox.hosts_file = Some(files.join("hosts"));
    sandbox.resolv_conf = Some(files.join("resolv.conf"));
    sandbox.hostname_file = Some(files.join("hostname"));

    let image = ImageConfig {
        cmd: vec!["sh".into()],
        env: vec!["PATH=/bin".into()],
        ..Default::default()
    };
    let mut outputs = BTreeMap::new();
    let mut watcher = None;
    for container in &pod.spec.as_ref().unwrap().containers {
        let env = resolve_env(
            &pod,
            container,
            &EnvSources {
                config_maps: &config_maps,
                secrets: &secrets,
                services: &[],
                node: &node,
                pod_ips: &["10.42.0.7".to_string()],
            },
        )
        .unwrap();
        let mounts = volume_mounts(container, &volumes, &env.vars).unwrap();
        let rootfs = t.join(&container.name).join("rootfs");
        make_rootfs(&rootfs, &["work"]);
        let log = prepare_termination_log(&pod_dir, &container.name).unwrap();
        let id = format!("kedge-podspec-{}-{}", container.name, std::process::id());
        let spec = container_spec(&ContainerInput {
            pod: &pod,
            container,
            image: &image,
            rootfs: &rootfs,
            sandbox: &sandbox,
            env: &env.vars,
            mounts: &mounts,
            cgroups_path: &format!("/{id}"),
            oom_score_adj: restrict_oom_score_adj(
                oom_score_adj(&pod, container, node.memory_capacity).unwrap(),
                own_oom,
            ),
            termination_log: Some(&log),
            host_devices: &[],
            pids_limit: Some(64),
            cgroup_namespace: false,
        })
        .unwrap();
        let bundle = t.join(&container.name);
        write_bundle(&bundle, &spec);
        cleanup.containers.push(id.clone());
        if container.name == "watcher" {
            watcher = Some((bundle, id));
        } else {
            outputs.insert(container.name.clone(), runc_run(&runc_root, &bundle, &id));
        }
    }

    // a ConfigMap update reaches a running container: the watcher loops on the
    // file while the volume is updated under it
    let (bundle, id) = watcher.expect("the pod has a watcher container");
    let root = runc_root.clone();
    let running = std::thread::spawn(move || runc_run(&root, &bundle, &id));
    let started = pod_dir.join("volumes/kubernetes.io~empty-dir/scratch/watcher-started");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !started.exists() {
        assert!(
            Instant::now() < deadline,
            "the watcher container did not start in 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    config_maps
        .get_mut("app-config")
        .unwrap()
        .data
        .as_mut()
        .unwrap()
        .insert("app.conf".into(), "port=8080".into());
    let update = update_volumes(
        &pod_dir,
        &pod,
        &VolumeSources {
            config_maps: &config_maps,
            secrets: &secrets,
            node: &node,
            service_account_tokens: &tokens,
        },
        &PlainDirs,
    );
    assert!(update.errors.is_empty(), "{:?}", update.errors);
    assert_eq!(update.changed, ["config"]);
    outputs.insert(
        "watcher".to_string(),
        running.join().expect("the watcher's runc"),
    );

    let app = &outputs["app"];
    println!(
        "app:\n{app}\ndropped: {}kept: {}watcher: {}",
        outputs["dropped"], outputs["kept"], outputs["watcher"]
    );
    let line = |key: &str| -> String {
        app.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}= in the app's output:\n{app}"))
            .to_string()
    };
    assert_eq!(line("greeting"), "hello web-0", "env with $(VAR) expansion");
    assert_eq!(line("level"), "debug", "env from a configMap key");
    assert_eq!(line("hostname-env"), "web-0");
    assert_eq!(line("cwd"), "/work");
    assert_eq!(
        line("id"),
        "uid=1000 gid=3000 groups=2000,3000,4000",
        "runAsUser, runAsGroup, fsGroup, supplementalGroups"
    );
    assert_eq!(
        line("config"),
        "port=80",
        "a configMap file through its mount"
    );
    assert_eq!(line("secret"), "s3cret");
    assert_eq!(line("podname-file"), "web-0", "a downwardAPI file");
    assert_eq!(
        line("subpath"),
        "port=80",
        "a configMap key mounted by subPath"
    );
    assert_eq!(line("token"), token, "the projected ServiceAccount token");
    assert_eq!(
        line("ca"),
        "CLUSTER-CA",
        "kube-root-ca.crt's ca.crt in the projected volume"
    );
    assert_eq!(line("root"), "read-only", "readOnlyRootFilesystem");
    assert_eq!(
        line("scratch"),
        "writable",
        "an emptyDir the fsGroup may write"
    );
    assert_eq!(line("hostname"), "web-0", "the sandbox's UTS namespace");
    assert_eq!(
        line("nnp"),
        "NoNewPrivs:1",
        "allowPrivilegeEscalation: false"
    );
    let host_ns = |ns: &str| {
        fs::read_link(format!("/proc/{pause_pid}/ns/{ns}"))
            .unwrap()
            .display()
            .to_string()
    };
    assert_eq!(
        line("netns"),
        host_ns("net"),
        "the sandbox's network namespace"
    );
    assert_eq!(line("ipcns"), host_ns("ipc"), "the sandbox's IPC namespace");
    assert_eq!(line("memory-limit"), "67108864", "limits.memory 64Mi");
    assert_eq!(
        line("cpu-quota"),
        "50000",
        "limits.cpu 500m over a 100 ms period"
    );
    let shares = line("cpu-shares");
    assert!(
        shares == "102" || shares == "4",
        "requests.cpu 100m: 102 shares (or its cgroup v2 weight), got {shares}"
    );
    assert_eq!(line("oom"), "993", "Burstable: 1000 - 1000*32Mi/4Gi");
    assert!(app.contains("done"));

    assert_eq!(
        outputs["dropped"].trim(),
        "chown=denied",
        "CHOWN dropped: {}",
        outputs["dropped"]
    );
    assert_eq!(
        outputs["kept"].trim(),
        "chown=ok",
        "the default capabilities keep CHOWN: {}",
        outputs["kept"]
    );
    assert!(
        pod_dir
            .join("volumes/kubernetes.io~empty-dir/scratch/by-app")
            .exists()
    );
    let mode = fs::metadata(pod_dir.join("volumes/kubernetes.io~empty-dir/scratch"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o2777);

    drop(cleanup);
    assert!(!pod_dir.join("volumes").exists());
    assert!(!netns_path.exists(), "the netns was removed");
}
