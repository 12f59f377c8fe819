use super::*;
use crate::resources::SANDBOX_OOM_SCORE_ADJ;
use oci_spec::runtime::Capability;

fn pod(yaml: &str) -> Pod {
    serde_yaml::from_str(yaml).unwrap()
}

fn sandbox() -> SandboxRef {
    let mut s = SandboxRef::of_pause_pid(
        "sb-1",
        4242,
        Some(PathBuf::from("/var/run/netns/cni-1")),
        "web-0",
    );
    s.hosts_file = Some(PathBuf::from("/pods/u1/etc-hosts"));
    s.resolv_conf = Some(PathBuf::from("/sandboxes/sb-1/resolv.conf"));
    s.hostname_file = Some(PathBuf::from("/sandboxes/sb-1/hostname"));
    s.shm = Some(PathBuf::from("/run/sandboxes/sb-1/shm"));
    s
}

fn image() -> ImageConfig {
    ImageConfig {
        entrypoint: vec!["/docker-entrypoint.sh".into()],
        cmd: vec!["nginx".into(), "-g".into(), "daemon off;".into()],
        env: vec![
            "PATH=/usr/local/bin:/usr/bin:/bin".into(),
            "NGINX_VERSION=1.25".into(),
        ],
        working_dir: Some("/srv".into()),
        user: None,
        passwd: None,
        group: None,
    }
}

/// The spec for the first container of a pod whose spec is `spec` (YAML).
fn spec_for(spec_yaml: &str, env: &[EnvVar]) -> Result<Spec, SpecError> {
    let p = pod(&format!(
        "metadata: {{name: web-0, namespace: shop, uid: u1}}\nspec: {spec_yaml}"
    ));
    let c = p.spec.as_ref().unwrap().containers[0].clone();
    let img = image();
    let sb = sandbox();
    let input = ContainerInput {
        pod: &p,
        container: &c,
        image: &img,
        rootfs: Path::new("/rootfs/c1"),
        sandbox: &sb,
        env,
        mounts: &[],
        cgroups_path: "/kubepods/burstable/podu1/c1",
        oom_score_adj: 500,
        termination_log: Some(Path::new("/pods/u1/containers/app/abc")),
        host_devices: &[],
        pids_limit: None,
        cgroup_namespace: false,
    };
    container_spec(&input)
}

fn process(s: &Spec) -> &Process {
    s.process().as_ref().unwrap()
}

fn linux(s: &Spec) -> &Linux {
    s.linux().as_ref().unwrap()
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: value.into(),
    }
}

#[test]
fn command_and_args_against_the_image() {
    let vars = [env("GREETING", "hi"), env("EMPTY", "")];
    // (command, args, image entrypoint, image cmd, expected)
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a [&'a str],
        &'a [&'a str],
        Option<&'a [&'a str]>,
    );
    let cases: &[Case] = &[
        ("", "", &["/ep"], &["cmd", "x"], Some(&["/ep", "cmd", "x"])),
        ("", "[a, b]", &["/ep"], &["cmd"], Some(&["/ep", "a", "b"])),
        (
            "[/bin/sh, -c]",
            "",
            &["/ep"],
            &["cmd"],
            Some(&["/bin/sh", "-c"]),
        ),
        (
            "[/bin/sh]",
            "[-c, 'echo $(GREETING)']",
            &["/ep"],
            &["cmd"],
            Some(&["/bin/sh", "-c", "echo hi"]),
        ),
        (
            "[echo, '$(UNKNOWN)', '$$(GREETING)', '$(EMPTY)x']",
            "",
            &[],
            &[],
            Some(&["echo", "$(UNKNOWN)", "$(GREETING)", "x"]),
        ),
        ("", "", &[""], &["cmd"], Some(&["cmd"])),
        ("", "[a]", &[], &["cmd"], Some(&["a"])),
        ("", "", &[], &[], None),
        ("", "", &[""], &[], None),
    ];
    for (command, args, entrypoint, cmd, want) in cases {
        let mut fields = String::from("name: app");
        if !command.is_empty() {
            fields.push_str(&format!(", command: {command}"));
        }
        if !args.is_empty() {
            fields.push_str(&format!(", args: {args}"));
        }
        let p = pod(&format!(
            "metadata: {{name: p}}\nspec: {{containers: [{{{fields}}}]}}"
        ));
        let c = &p.spec.as_ref().unwrap().containers[0];
        let img = ImageConfig {
            entrypoint: entrypoint.iter().map(|s| s.to_string()).collect(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let got = process_args(c, &img, &vars);
        let want: Option<Vec<String>> = want.map(|w| w.iter().map(|s| s.to_string()).collect());
        assert_eq!(
            got, want,
            "command {command} args {args} entrypoint {entrypoint:?} cmd {cmd:?}"
        );
    }
    let err = {
        let p = pod("metadata: {name: p}\nspec: {containers: [{name: app}]}");
        let c = p.spec.as_ref().unwrap().containers[0].clone();
        let img = ImageConfig::default();
        let sb = sandbox();
        container_spec(&ContainerInput {
            pod: &p,
            container: &c,
            image: &img,
            rootfs: Path::new("/r"),
            sandbox: &sb,
            env: &[],
            mounts: &[],
            cgroups_path: "/x",
            oom_score_adj: 0,
            termination_log: None,
            host_devices: &[],
            pids_limit: None,
            cgroup_namespace: false,
        })
        .unwrap_err()
        .to_string()
    };
    assert!(err.contains("no command specified"), "{err}");
}

#[test]
fn env_order_image_then_container() {
    let s = spec_for(
        "{containers: [{name: app, tty: true}]}",
        &[
            env("NGINX_VERSION", "mine"),
            env("FOO", "bar"),
            env("PATH", "/custom"),
        ],
    )
    .unwrap();
    assert_eq!(
        process(&s).env().clone().unwrap(),
        [
            "PATH=/custom",
            "TERM=xterm",
            "HOSTNAME=web-0",
            "NGINX_VERSION=mine",
            "FOO=bar"
        ]
    );
    assert_eq!(process(&s).terminal(), Some(true));

    let mut env = vec!["A=1".to_string(), "B=2".to_string()];
    replace_or_append(
        &mut env,
        ["B=3".to_string(), "C=4".to_string(), "A".to_string()],
    );
    assert_eq!(env, ["B=3", "C=4"]);
}

#[test]
fn working_dir_user_and_no_new_privileges() {
    let s = spec_for("{containers: [{name: app}]}", &[]).unwrap();
    let p = process(&s);
    assert_eq!(p.cwd(), Path::new("/srv"), "the image's working dir");
    assert_eq!((p.user().uid(), p.user().gid()), (0, 0));
    assert_eq!(p.no_new_privileges(), Some(false));
    assert_eq!(p.oom_score_adj(), Some(500));
    assert_eq!(
        p.rlimits(),
        &None,
        "rlimits are the runtime's, as containerd's CRI"
    );
    assert_eq!(p.terminal(), Some(false));

    let s = spec_for(
        "{securityContext: {runAsUser: 1000, runAsGroup: 3000, supplementalGroups: [4000], fsGroup: 2000},
          containers: [{name: app, workingDir: /work, securityContext: {allowPrivilegeEscalation: false}}]}",
        &[],
    )
    .unwrap();
    let p = process(&s);
    assert_eq!(p.cwd(), Path::new("/work"));
    assert_eq!((p.user().uid(), p.user().gid()), (1000, 3000));
    assert_eq!(
        p.user().additional_gids().clone().unwrap(),
        [2000, 3000, 4000]
    );
    assert_eq!(p.no_new_privileges(), Some(true));

    let err = spec_for(
        "{securityContext: {runAsNonRoot: true}, containers: [{name: app}]}",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "container \"app\": container has runAsNonRoot and image will run as root (pod: \"web-0_shop(u1)\", container: app)"
    );
}

#[test]
fn capabilities_and_privileged() {
    let caps = |s: &Spec| -> Vec<String> {
        let mut v: Vec<String> = process(s)
            .capabilities()
            .as_ref()
            .unwrap()
            .effective()
            .clone()
            .unwrap()
            .iter()
            .map(|c| c.to_string())
            .collect();
        v.sort();
        v
    };
    let s = spec_for("{containers: [{name: app}]}", &[]).unwrap();
    assert_eq!(caps(&s).len(), 14);
    let set = process(&s).capabilities().as_ref().unwrap();
    assert_eq!(set.bounding(), set.effective());
    assert_eq!(set.permitted(), set.effective());
    assert!(set.ambient().as_ref().unwrap().is_empty());

    let s = spec_for(
        "{containers: [{name: app, securityContext: {capabilities: {add: [NET_ADMIN], drop: [CHOWN, KILL]}}}]}",
        &[],
    )
    .unwrap();
    let c = caps(&s);
    assert!(
        c.contains(&"NET_ADMIN".to_string())
            && !c.contains(&"CHOWN".to_string())
            && !c.contains(&"KILL".to_string())
    );
    assert_eq!(c.len(), 13);

    let err = spec_for(
        "{containers: [{name: app, securityContext: {capabilities: {add: [FLY]}}}]}",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("unknown capability \"FLY\""), "{err}");

    // unprivileged: masked paths, read-only /sys and cgroups, no host devices, devices denied
    let l = linux(&s);
    assert_eq!(
        l.masked_paths().as_ref().unwrap().len(),
        DEFAULT_MASKED_PATHS.len()
    );
    assert_eq!(
        l.readonly_paths().as_ref().unwrap().len(),
        DEFAULT_READONLY_PATHS.len()
    );
    let dev_rule = &l.resources().as_ref().unwrap().devices().as_ref().unwrap()[0];
    assert!(!dev_rule.allow());
    assert_eq!(dev_rule.access().as_deref(), Some("rwm"));
    let sys = find_mount(&s, "/sys");
    assert!(sys.options().as_ref().unwrap().contains(&"ro".to_string()));
    assert!(
        find_mount(&s, "/sys/fs/cgroup")
            .options()
            .as_ref()
            .unwrap()
            .contains(&"ro".to_string())
    );

    // privileged: all capabilities whatever add/drop say, no masks, writable /sys, all devices
    let p = pod(
        "metadata: {name: p}\nspec: {containers: [{name: app, securityContext: {privileged: true, capabilities: {drop: [ALL]}}}]}",
    );
    let c = p.spec.as_ref().unwrap().containers[0].clone();
    let img = image();
    let sb = sandbox();
    let devices = vec![
        oci_spec::runtime::LinuxDeviceBuilder::default()
            .path("/dev/fuse")
            .typ(oci_spec::runtime::LinuxDeviceType::C)
            .major(10)
            .minor(229)
            .build()
            .unwrap(),
    ];
    let s = container_spec(&ContainerInput {
        pod: &p,
        container: &c,
        image: &img,
        rootfs: Path::new("/r"),
        sandbox: &sb,
        env: &[],
        mounts: &[],
        cgroups_path: "/x",
        oom_score_adj: 0,
        termination_log: None,
        host_devices: &devices,
        pids_limit: None,
        cgroup_namespace: true,
    })
    .unwrap();
    assert_eq!(caps(&s).len(), crate::ALL_CAPABILITIES.len());
    assert!(caps(&s).contains(&Capability::SysAdmin.to_string()));
    let l = linux(&s);
    assert_eq!(l.masked_paths(), &None);
    assert_eq!(l.readonly_paths(), &None);
    assert_eq!(l.devices().as_ref().unwrap(), &devices);
    assert!(l.resources().as_ref().unwrap().devices().as_ref().unwrap()[0].allow());
    assert!(
        !find_mount(&s, "/sys")
            .options()
            .as_ref()
            .unwrap()
            .contains(&"ro".to_string())
    );
    assert!(
        find_mount(&s, "/sys/fs/cgroup")
            .options()
            .as_ref()
            .unwrap()
            .contains(&"rw".to_string())
    );
    // no cgroup namespace for privileged containers
    assert!(
        !l.namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .any(|n| n.typ() == LinuxNamespaceType::Cgroup)
    );
}

fn find_mount<'a>(s: &'a Spec, dest: &str) -> &'a Mount {
    let found: Vec<&Mount> = s
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .filter(|m| m.destination() == Path::new(dest))
        .collect();
    assert_eq!(found.len(), 1, "exactly one mount at {dest}: {found:?}");
    found[0]
}

#[test]
fn read_only_root_and_the_pod_files() {
    let s = spec_for(
        "{containers: [{name: app, securityContext: {readOnlyRootFilesystem: true}}]}",
        &[],
    )
    .unwrap();
    assert_eq!(s.root().as_ref().unwrap().readonly(), Some(true));
    assert_eq!(s.root().as_ref().unwrap().path(), Path::new("/rootfs/c1"));
    let opts = |d: &str| find_mount(&s, d).options().clone().unwrap();
    // /etc/hosts (the kubelet's) stays writable; hostname and resolv.conf follow the root
    assert_eq!(opts("/etc/hosts"), ["rbind", "rprivate", "rw"]);
    assert_eq!(opts("/etc/hostname"), ["rbind", "rprivate", "ro"]);
    assert_eq!(opts("/etc/resolv.conf"), ["rbind", "rprivate", "ro"]);
    assert_eq!(opts("/dev/termination-log"), ["rbind", "rprivate", "rw"]);
    assert_eq!(
        find_mount(&s, "/dev/termination-log").source().as_deref(),
        Some(Path::new("/pods/u1/containers/app/abc"))
    );
    // the sandbox's shm replaces the default /dev/shm
    assert_eq!(
        find_mount(&s, "/dev/shm").source().as_deref(),
        Some(Path::new("/run/sandboxes/sb-1/shm"))
    );
    assert_eq!(find_mount(&s, "/dev/shm").typ().as_deref(), Some("bind"));

    let s = spec_for(
        "{containers: [{name: app, terminationMessagePath: /tmp/msg}]}",
        &[],
    )
    .unwrap();
    assert_eq!(s.root().as_ref().unwrap().readonly(), Some(false));
    assert_eq!(
        find_mount(&s, "/etc/resolv.conf")
            .options()
            .as_ref()
            .unwrap()[2],
        "rw"
    );
    find_mount(&s, "/tmp/msg");
}

#[test]
fn mounts_are_ordered_and_override_defaults() {
    let p = pod("metadata: {name: p}\nspec: {containers: [{name: app, command: [x]}]}");
    let c = p.spec.as_ref().unwrap().containers[0].clone();
    let img = ImageConfig::default();
    let sb = sandbox();
    let vols = vec![
        bind_mount(Path::new("/v/deep"), "/data/a/b", "rprivate", false),
        bind_mount(Path::new("/v/data"), "/data", "rprivate", false),
        bind_mount(Path::new("/v/shm"), "/dev/shm", "rprivate", false),
        bind_mount(Path::new("/v/hosts"), "/etc/hosts", "rslave", true),
    ];
    let s = container_spec(&ContainerInput {
        pod: &p,
        container: &c,
        image: &img,
        rootfs: Path::new("/r"),
        sandbox: &sb,
        env: &[],
        mounts: &vols,
        cgroups_path: "/x",
        oom_score_adj: 0,
        termination_log: None,
        host_devices: &[],
        pids_limit: None,
        cgroup_namespace: false,
    })
    .unwrap();
    let dests: Vec<String> = s
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .map(|m| m.destination().display().to_string())
        .collect();
    // defaults first (minus the overridden /dev/shm), then supplied by depth
    assert_eq!(
        dests,
        [
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/mqueue",
            "/sys",
            "/sys/fs/cgroup",
            "/data",
            "/dev/shm",
            "/etc/hosts",
            "/etc/hostname",
            "/etc/resolv.conf",
            "/data/a/b",
        ]
    );
    assert_eq!(
        find_mount(&s, "/dev/shm").source().as_deref(),
        Some(Path::new("/v/shm"))
    );
    assert_eq!(
        find_mount(&s, "/etc/hosts").source().as_deref(),
        Some(Path::new("/v/hosts"))
    );
    // a HostToContainer mount makes the root rslave
    assert_eq!(linux(&s).rootfs_propagation().as_deref(), Some("rslave"));
    assert!(
        s.mounts()
            .as_ref()
            .unwrap()
            .iter()
            .all(|m| m.destination() != Path::new("/run"))
    );
}

#[test]
fn namespaces_follow_the_pod() {
    let ns = |spec_yaml: &str| -> Vec<(LinuxNamespaceType, Option<PathBuf>)> {
        let s = spec_for(spec_yaml, &[]).unwrap();
        linux(&s)
            .namespaces()
            .clone()
            .unwrap()
            .into_iter()
            .map(|n| (n.typ(), n.path().clone()))
            .collect()
    };
    use LinuxNamespaceType::*;
    let p = |s: &str| Some(PathBuf::from(s));
    assert_eq!(
        ns("{containers: [{name: app}]}"),
        [
            (Mount, None),
            (Network, p("/var/run/netns/cni-1")),
            (Uts, p("/proc/4242/ns/uts")),
            (Ipc, p("/proc/4242/ns/ipc")),
            (Pid, None),
        ]
    );
    assert_eq!(
        ns("{shareProcessNamespace: true, containers: [{name: app}]}")[4],
        (Pid, p("/proc/4242/ns/pid"))
    );
    assert_eq!(
        ns("{hostNetwork: true, hostIPC: true, hostPID: true, containers: [{name: app}]}"),
        [(Mount, None)]
    );

    let p = pod("metadata: {name: p, namespace: n, uid: u}\nspec: {containers: [{name: app}]}");
    let c = p.spec.as_ref().unwrap().containers[0].clone();
    let img = image();
    let mut sb = sandbox();
    sb.netns = None;
    let err = container_spec(&ContainerInput {
        pod: &p,
        container: &c,
        image: &img,
        rootfs: Path::new("/r"),
        sandbox: &sb,
        env: &[],
        mounts: &[],
        cgroups_path: "/x",
        oom_score_adj: 0,
        termination_log: None,
        host_devices: &[],
        pids_limit: None,
        cgroup_namespace: false,
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("pass the CNI netns path"), "{err}");
}

#[test]
fn resources_sysctls_and_annotations() {
    let s = spec_for(
        "{securityContext: {sysctls: [{name: net.core.somaxconn, value: '1024'}]},
          containers: [{name: app, image: 'nginx:1.25', resources: {requests: {cpu: 250m, memory: 64Mi}, limits: {cpu: 500m, memory: 128Mi}}}]}",
        &[],
    )
    .unwrap();
    let l = linux(&s);
    let r = l.resources().as_ref().unwrap();
    let cpu = r.cpu().as_ref().unwrap();
    assert_eq!(
        (cpu.shares(), cpu.quota(), cpu.period()),
        (Some(256), Some(50_000), Some(100_000))
    );
    assert_eq!(r.memory().as_ref().unwrap().limit(), Some(128 << 20));
    assert_eq!(
        l.cgroups_path().as_deref(),
        Some(Path::new("/kubepods/burstable/podu1/c1"))
    );
    assert_eq!(l.sysctl().as_ref().unwrap()["net.core.somaxconn"], "1024");
    let a = s.annotations().as_ref().unwrap();
    for (k, v) in [
        ("io.kubernetes.pod.name", "web-0"),
        ("io.kubernetes.pod.namespace", "shop"),
        ("io.kubernetes.pod.uid", "u1"),
        ("io.kubernetes.container.name", "app"),
        ("io.kubernetes.cri.container-type", "container"),
        ("io.kubernetes.cri.sandbox-id", "sb-1"),
        ("io.kubernetes.cri.image-name", "nginx:1.25"),
    ] {
        assert_eq!(a.get(k).map(String::as_str), Some(v), "{k}");
    }
    assert_eq!(s.version(), OCI_VERSION);
    assert_eq!(
        s.hostname(),
        &None,
        "containers share the sandbox's UTS namespace"
    );

    let err = spec_for(
        "{containers: [{name: app, resources: {limits: {memory: lots}}}]}",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("container \"app\": bad resources: quantity \"lots\""),
        "{err}"
    );
}

#[test]
fn the_sandbox_spec() {
    let p = pod(
        "metadata: {name: web-0, namespace: shop, uid: u1}
spec:
  securityContext: {runAsUser: 65535, runAsGroup: 65535, sysctls: [{name: net.ipv4.ip_forward, value: '1'}]}
  containers: [{name: app}]",
    );
    let s = sandbox_spec(&SandboxInput {
        pod: &p,
        rootfs: Path::new("/rootfs/pause"),
        args: PAUSE_ARGS.iter().map(|s| s.to_string()).collect(),
        netns: Some(Path::new("/var/run/netns/cni-1")),
        hostname: "web-0",
        cgroups_path: "/kubepods/besteffort/podu1/sb-1",
        shm: Some(Path::new("/run/sandboxes/sb-1/shm")),
        oom_score_adj: SANDBOX_OOM_SCORE_ADJ,
    })
    .unwrap();
    let pr = process(&s);
    assert_eq!(pr.args().clone().unwrap(), ["/pause"]);
    assert_eq!((pr.user().uid(), pr.user().gid()), (65535, 65535));
    assert_eq!(pr.no_new_privileges(), Some(true));
    assert_eq!(pr.oom_score_adj(), Some(-998));
    let caps = pr.capabilities().as_ref().unwrap();
    assert!(
        caps.bounding().as_ref().unwrap().is_empty()
            && caps.effective().as_ref().unwrap().is_empty()
    );
    assert_eq!(s.root().as_ref().unwrap().readonly(), Some(true));
    assert_eq!(s.hostname().as_deref(), Some("web-0"));
    let l = linux(&s);
    let ns: Vec<(LinuxNamespaceType, Option<PathBuf>)> = l
        .namespaces()
        .clone()
        .unwrap()
        .into_iter()
        .map(|n| (n.typ(), n.path().clone()))
        .collect();
    use LinuxNamespaceType::*;
    assert_eq!(
        ns,
        [
            (Mount, None),
            (Network, Some(PathBuf::from("/var/run/netns/cni-1"))),
            (Uts, None),
            (Ipc, None),
            (Pid, None)
        ]
    );
    assert_eq!(
        l.resources()
            .as_ref()
            .unwrap()
            .cpu()
            .as_ref()
            .unwrap()
            .shares(),
        Some(2)
    );
    assert_eq!(l.sysctl().as_ref().unwrap()["net.ipv4.ip_forward"], "1");
    assert_eq!(
        l.cgroups_path().as_deref(),
        Some(Path::new("/kubepods/besteffort/podu1/sb-1"))
    );
    let dests: Vec<String> = s
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .map(|m| m.destination().display().to_string())
        .collect();
    assert_eq!(
        dests,
        [
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/mqueue",
            "/sys",
            "/dev/shm"
        ]
    );
    assert_eq!(
        s.annotations().as_ref().unwrap()["io.kubernetes.cri.container-type"],
        "sandbox"
    );

    // host network, IPC and PID: only a mount namespace, and no hostname
    let p = pod(
        "metadata: {name: h}\nspec: {hostNetwork: true, hostIPC: true, hostPID: true, containers: [{name: app}]}",
    );
    let s = sandbox_spec(&SandboxInput {
        pod: &p,
        rootfs: Path::new("/r"),
        args: vec!["/pause".into()],
        netns: None,
        hostname: "node-1",
        cgroups_path: "/x",
        shm: None,
        oom_score_adj: SANDBOX_OOM_SCORE_ADJ,
    })
    .unwrap();
    assert_eq!(linux(&s).namespaces().as_ref().unwrap().len(), 1);
    assert_eq!(s.hostname(), &None);
    // no netns for a pod network pod is an error
    let p = pod("metadata: {name: p}\nspec: {containers: [{name: app}]}");
    let err = sandbox_spec(&SandboxInput {
        pod: &p,
        rootfs: Path::new("/r"),
        args: vec!["/pause".into()],
        netns: None,
        hostname: "p",
        cgroups_path: "/x",
        shm: None,
        oom_score_adj: SANDBOX_OOM_SCORE_ADJ,
    })
    .unwrap_err();
    assert!(matches!(err, SpecError::NoNetns { .. }));
}

#[test]
fn hostnames() {
    let cases: &[(&str, &str)] = &[
        ("metadata: {name: web-0}\nspec: {containers: []}", "web-0"),
        (
            "metadata: {name: web-0}\nspec: {hostname: db, containers: []}",
            "db",
        ),
        (
            "metadata: {name: web-0}\nspec: {hostNetwork: true, containers: []}",
            "node-1",
        ),
    ];
    for (y, want) in cases {
        assert_eq!(pod_hostname(&pod(y), "node-1"), *want);
    }
    let long = format!("{}-.x", "a".repeat(62));
    let p = pod(&format!(
        "metadata: {{name: '{long}'}}\nspec: {{containers: []}}"
    ));
    assert_eq!(pod_hostname(&p, "n"), "a".repeat(62));
}

#[test]
fn the_spec_is_valid_json_for_runc() {
    let s = spec_for("{containers: [{name: app}]}", &[env("A", "1")]).unwrap();
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["ociVersion"], "1.0.2-dev");
    assert_eq!(json["process"]["user"]["uid"], 0);
    assert!(
        json["process"]["capabilities"]["bounding"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "CAP_CHOWN")
    );
    assert_eq!(json["linux"]["namespaces"][1]["type"], "network");
    assert!(json["process"].get("rlimits").is_none());
}
