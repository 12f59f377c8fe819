//! OCI runtime specs for a pod's containers and its sandbox (pause), as the
//! kubelet's kuberuntime and containerd's CRI plugin build them together:
//! the kubelet decides command, env, user, mounts and resources from the pod;
//! containerd fills in its defaults (mounts, capabilities, masked paths,
//! namespaces shared with the sandbox).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};
use oci_spec::runtime::{Linux, LinuxCpuBuilder, LinuxResourcesBuilder};
use oci_spec::runtime::{
    LinuxDevice, LinuxDeviceCgroupBuilder, LinuxNamespace, LinuxNamespaceBuilder,
    LinuxNamespaceType, Mount, MountBuilder, Process, Root, RootBuilder, Spec, UserBuilder,
};

use crate::caps::{capability_set, linux_capabilities};
use crate::env::EnvVar;
use crate::expand::expand;
use crate::mounts::bind_mount;
use crate::quantity::QuantityError;
use crate::resources::{SANDBOX_CPU_SHARES, container_resources};
use crate::user::{UserError, pod_desc, process_user};

/// The OCI version runc 1.1 speaks.
pub const OCI_VERSION: &str = "1.0.2-dev";
/// containerd's default `PATH`.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Where a container's termination message goes unless the pod says otherwise.
pub const DEFAULT_TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
/// The pause container's command.
pub const PAUSE_ARGS: [&str; 1] = ["/pause"];

/// The kubelet's default masked paths (`securitycontext.defaultMaskedPaths`).
pub const DEFAULT_MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
/// The kubelet's default read-only paths.
pub const DEFAULT_READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Why a spec could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error(
        "container {container:?}: no command specified: set command in the pod spec, or use an image with an entrypoint or cmd"
    )]
    NoCommand { container: String },
    #[error("container {container:?}: {source}")]
    User {
        container: String,
        #[source]
        source: UserError,
    },
    #[error("container {container:?}: {source}")]
    Capabilities {
        container: String,
        #[source]
        source: crate::caps::CapError,
    },
    #[error("container {container:?}: bad resources: {source}")]
    Resources {
        container: String,
        #[source]
        source: QuantityError,
    },
    #[error(
        "pod {pod} does not use the host network and its sandbox has no network namespace: pass the CNI netns path"
    )]
    NoNetns { pod: String },
}

/// What the container image says about running it (its OCI config), and the
/// user database of its rootfs, for user names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=value` entries.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    /// `uid`, `name`, `uid:gid` or `name:group`.
    pub user: Option<String>,
    /// The rootfs's `/etc/passwd`, when it has one (needed for a named user).
    pub passwd: Option<String>,
    /// The rootfs's `/etc/group`, when it has one (for supplementary groups).
    pub group: Option<String>,
}

impl ImageConfig {
    /// From an OCI image config (passwd and group are left for the caller).
    pub fn from_oci(config: &oci_spec::image::Config) -> Self {
        ImageConfig {
            entrypoint: config.entrypoint().clone().unwrap_or_default(),
            cmd: config.cmd().clone().unwrap_or_default(),
            env: config.env().clone().unwrap_or_default(),
            working_dir: config.working_dir().clone().filter(|w| !w.is_empty()),
            user: config.user().clone().filter(|u| !u.is_empty()),
            passwd: None,
            group: None,
        }
    }
}

/// The pod's sandbox, as a container of the pod joins it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxRef {
    /// The sandbox's id (for the annotations).
    pub id: String,
    /// The pod's network namespace (the CNI netns); `None` for hostNetwork pods.
    pub netns: Option<PathBuf>,
    /// The sandbox's IPC namespace (`/proc/<pause pid>/ns/ipc`).
    pub ipc_ns: PathBuf,
    /// The sandbox's UTS namespace.
    pub uts_ns: PathBuf,
    /// The sandbox's PID namespace (joined with `shareProcessNamespace`).
    pub pid_ns: PathBuf,
    /// The pod's hostname (the `HOSTNAME` variable).
    pub hostname: String,
    /// The pod's `/etc/hosts` (the kubelet's `etc-hosts`), mounted read-write.
    pub hosts_file: Option<PathBuf>,
    /// The pod's `/etc/resolv.conf`.
    pub resolv_conf: Option<PathBuf>,
    /// The pod's `/etc/hostname`.
    pub hostname_file: Option<PathBuf>,
    /// The sandbox's `/dev/shm` (a tmpfs on the host shared by the pod's
    /// containers); `None` gives each container its own.
    pub shm: Option<PathBuf>,
}

impl SandboxRef {
    /// The namespaces of the pause process `pid`, and the pod's netns.
    pub fn of_pause_pid(id: &str, pid: u32, netns: Option<PathBuf>, hostname: &str) -> Self {
        let ns = |n: &str| PathBuf::from(format!("/proc/{pid}/ns/{n}"));
        SandboxRef {
            id: id.to_string(),
            netns,
            ipc_ns: ns("ipc"),
            uts_ns: ns("uts"),
            pid_ns: ns("pid"),
            hostname: hostname.to_string(),
            hosts_file: None,
            resolv_conf: None,
            hostname_file: None,
            shm: None,
        }
    }
}

/// Everything [`container_spec`] needs.
#[derive(Debug, Clone)]
pub struct ContainerInput<'a> {
    pub pod: &'a Pod,
    /// One of the pod's containers or init containers.
    pub container: &'a Container,
    pub image: &'a ImageConfig,
    /// The container's root filesystem on the host.
    pub rootfs: &'a Path,
    pub sandbox: &'a SandboxRef,
    /// The resolved environment ([`crate::resolve_env`]).
    pub env: &'a [EnvVar],
    /// The container's volume mounts ([`crate::volume_mounts`]).
    pub mounts: &'a [Mount],
    /// The cgroup, as runc takes it (`/kubepods/burstable/pod<uid>/<id>` or
    /// `kubepods-burstable-pod<uid>.slice:cri-containerd:<id>` for systemd).
    pub cgroups_path: &'a str,
    /// [`crate::oom_score_adj`] for the container.
    pub oom_score_adj: i32,
    /// The host file for the termination message ([`crate::prepare_termination_log`]).
    pub termination_log: Option<&'a Path>,
    /// The host's devices, for privileged containers ([`crate::host_devices`]).
    pub host_devices: &'a [LinuxDevice],
    /// A pids limit for the container's cgroup.
    pub pids_limit: Option<i64>,
    /// Give unprivileged containers their own cgroup namespace, as containerd
    /// does on cgroup v2 hosts.
    pub cgroup_namespace: bool,
}

fn tmpfs(dest: &str, source: &str, typ: &str, options: &[&str]) -> Mount {
    MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
        .expect("all fields have defaults")
}

/// containerd's default mounts (without `/run`), and the read-only cgroup
/// filesystem CRI adds; `/sys` and `/sys/fs/cgroup` are writable when privileged.
fn default_mounts(privileged: bool, with_cgroup: bool) -> Vec<Mount> {
    let ro = if privileged { "rw" } else { "ro" };
    let mut m = vec![
        tmpfs("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        tmpfs(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        tmpfs(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        tmpfs(
            "/dev/shm",
            "shm",
            "tmpfs",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        tmpfs(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        tmpfs("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", ro]),
    ];
    if with_cgroup {
        m.push(tmpfs(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", ro],
        ));
    }
    m
}

/// `/a/b/` → `/a/b`, for comparing mount destinations.
fn clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        if let std::path::Component::Normal(n) = c {
            out.push(n);
        }
    }
    out
}

/// Default mounts not overridden by `supplied`, then `supplied` sorted by depth
/// (containerd's `WithMounts`: a deeper mount never hidden by a shallower one).
fn merge_mounts(defaults: Vec<Mount>, mut supplied: Vec<Mount>) -> Vec<Mount> {
    let set: Vec<PathBuf> = supplied.iter().map(|m| clean(m.destination())).collect();
    let dev_supplied = set.iter().any(|d| d == Path::new("/dev"));
    let mut out: Vec<Mount> = defaults
        .into_iter()
        .filter(|m| {
            let d = clean(m.destination());
            let under_supplied_dev =
                dev_supplied && d.starts_with("/dev") && d != Path::new("/dev");
            !set.contains(&d) && !under_supplied_dev
        })
        .collect();
    supplied.sort_by_key(|m| clean(m.destination()).components().count());
    out.extend(supplied);
    out
}

/// containerd's `replaceOrAppendEnvValues`: a `KEY=value` replaces the same
/// key in place or is appended; a bare `KEY` removes it.
fn replace_or_append(env: &mut Vec<String>, more: impl IntoIterator<Item = String>) {
    for entry in more {
        match entry.split_once('=') {
            Some((key, _)) => {
                let prefix = format!("{key}=");
                match env.iter_mut().find(|e| e.starts_with(&prefix)) {
                    Some(existing) => *existing = entry,
                    None => env.push(entry),
                }
            }
            None => {
                let prefix = format!("{entry}=");
                env.retain(|e| !e.starts_with(&prefix) && *e != entry);
            }
        }
    }
}

fn namespace(typ: LinuxNamespaceType, path: Option<&Path>) -> LinuxNamespace {
    let mut b = LinuxNamespaceBuilder::default().typ(typ);
    if let Some(p) = path {
        b = b.path(p);
    }
    b.build().expect("all fields have defaults")
}

fn root(path: &Path, readonly: bool) -> Root {
    RootBuilder::default()
        .path(path)
        .readonly(readonly)
        .build()
        .expect("all fields have defaults")
}

/// The annotations naming the pod (the kubelet's labels and containerd's
/// CRI annotations).
fn pod_annotations(pod: &Pod, kind: &str, sandbox_id: &str) -> HashMap<String, String> {
    let meta = &pod.metadata;
    let name = meta.name.clone().unwrap_or_default();
    let namespace = meta.namespace.clone().unwrap_or_default();
    let uid = meta.uid.clone().unwrap_or_default();
    let mut a = HashMap::new();
    a.insert("io.kubernetes.pod.name".to_string(), name.clone());
    a.insert("io.kubernetes.pod.namespace".to_string(), namespace.clone());
    a.insert("io.kubernetes.pod.uid".to_string(), uid.clone());
    a.insert(
        "io.kubernetes.cri.container-type".to_string(),
        kind.to_string(),
    );
    a.insert("io.kubernetes.cri.sandbox-name".to_string(), name);
    a.insert("io.kubernetes.cri.sandbox-namespace".to_string(), namespace);
    a.insert("io.kubernetes.cri.sandbox-uid".to_string(), uid);
    if !sandbox_id.is_empty() {
        a.insert(
            "io.kubernetes.cri.sandbox-id".to_string(),
            sandbox_id.to_string(),
        );
    }
    a
}

fn sysctls(pod: &Pod) -> Option<HashMap<String, String>> {
    let list = pod
        .spec
        .as_ref()?
        .security_context
        .as_ref()?
        .sysctls
        .as_ref()?;
    if list.is_empty() {
        return None;
    }
    Some(
        list.iter()
            .map(|s| (s.name.clone(), s.value.clone()))
            .collect(),
    )
}

/// The process arguments: `command`/`args` with `$(VAR)` expanded from the
/// container's environment, else the image's entrypoint and cmd, as
/// containerd's CRI combines them:
/// - a command replaces the entrypoint and the image's cmd (args follow it);
/// - args alone replace the image's cmd, after the entrypoint;
/// - an entrypoint of `[""]` counts as none.
pub fn process_args(
    container: &Container,
    image: &ImageConfig,
    env: &[EnvVar],
) -> Option<Vec<String>> {
    let map: HashMap<&str, &str> = env
        .iter()
        .map(|v| (v.name.as_str(), v.value.as_str()))
        .collect();
    let exp = |list: &Option<Vec<String>>| -> Vec<String> {
        list.iter()
            .flatten()
            .map(|s| expand(s, |name| map.get(name).map(|v| v.to_string())))
            .collect()
    };
    let mut command = exp(&container.command);
    let mut args = exp(&container.args);
    if command.is_empty() {
        if args.is_empty() {
            args = image.cmd.clone();
        }
        if !(image.entrypoint.len() == 1 && image.entrypoint[0].is_empty()) {
            command = image.entrypoint.clone();
        }
    }
    command.extend(args);
    (!command.is_empty()).then_some(command)
}

/// The OCI spec for one of a pod's containers.
pub fn container_spec(input: &ContainerInput<'_>) -> Result<Spec, SpecError> {
    let pod = input.pod;
    let c = input.container;
    let span = tracing::debug_span!("container_spec", pod = pod.metadata.name.as_deref().unwrap_or(""), container = %c.name);
    let _enter = span.enter();
    let pod_spec = pod.spec.as_ref();
    let sc = c.security_context.as_ref();
    let privileged = sc.and_then(|s| s.privileged).unwrap_or(false);
    let read_only_root = sc
        .and_then(|s| s.read_only_root_filesystem)
        .unwrap_or(false);
    let host_network = pod_spec.and_then(|s| s.host_network).unwrap_or(false);
    let host_ipc = pod_spec.and_then(|s| s.host_ipc).unwrap_or(false);
    let host_pid = pod_spec.and_then(|s| s.host_pid).unwrap_or(false);
    let share_pid = pod_spec
        .and_then(|s| s.share_process_namespace)
        .unwrap_or(false);
    let tty = c.tty.unwrap_or(false);

    // process
    let args = process_args(c, input.image, input.env).ok_or_else(|| SpecError::NoCommand {
        container: c.name.clone(),
    })?;
    let mut env = vec![DEFAULT_PATH.to_string()];
    if tty {
        env.push("TERM=xterm".to_string());
    }
    replace_or_append(&mut env, [format!("HOSTNAME={}", input.sandbox.hostname)]);
    replace_or_append(&mut env, input.image.env.iter().cloned());
    replace_or_append(
        &mut env,
        input.env.iter().map(|v| format!("{}={}", v.name, v.value)),
    );
    let cwd = c
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| input.image.working_dir.clone())
        .unwrap_or_else(|| "/".to_string());
    let user = process_user(
        pod,
        c,
        input.image.user.as_deref(),
        input.image.passwd.as_deref(),
        input.image.group.as_deref(),
    )
    .map_err(|source| SpecError::User {
        container: c.name.clone(),
        source,
    })?;
    let caps_spec = sc.and_then(|s| s.capabilities.as_ref());
    let add = caps_spec.and_then(|c| c.add.clone()).unwrap_or_default();
    let drop = caps_spec.and_then(|c| c.drop.clone()).unwrap_or_default();
    let caps =
        capability_set(privileged, &add, &drop).map_err(|source| SpecError::Capabilities {
            container: c.name.clone(),
            source,
        })?;
    let no_new_privs = sc.and_then(|s| s.allow_privilege_escalation) == Some(false);

    let mut process = Process::default();
    process.set_terminal(Some(tty));
    process.set_console_size(None);
    process.set_user(
        UserBuilder::default()
            .uid(user.uid)
            .gid(user.gid)
            .additional_gids(user.additional_gids)
            .build()
            .expect("all fields have defaults"),
    );
    process.set_args(Some(args));
    process.set_env(Some(env));
    process.set_cwd(PathBuf::from(cwd));
    process.set_capabilities(Some(linux_capabilities(caps)));
    // as containerd's CRI: the runtime's own limits, no defaults of ours
    process.set_rlimits(None);
    process.set_no_new_privileges(Some(no_new_privs));
    process.set_oom_score_adj(Some(input.oom_score_adj));
    process.set_apparmor_profile(None);
    process.set_selinux_label(None);

    // mounts
    let mut supplied: Vec<Mount> = input.mounts.to_vec();
    let dest_taken =
        |m: &[Mount], d: &str| m.iter().any(|x| clean(x.destination()) == Path::new(d));
    if let Some(hosts) = &input.sandbox.hosts_file
        && !dest_taken(&supplied, "/etc/hosts")
    {
        supplied.push(bind_mount(hosts, "/etc/hosts", "rprivate", false));
    }
    let message_path = c
        .termination_message_path
        .clone()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| DEFAULT_TERMINATION_MESSAGE_PATH.to_string());
    if let Some(log) = input.termination_log
        && !dest_taken(&supplied, &message_path)
    {
        supplied.push(bind_mount(log, &message_path, "rprivate", false));
    }
    let mut extra = Vec::new();
    if let Some(f) = &input.sandbox.hostname_file {
        extra.push(bind_mount(f, "/etc/hostname", "rprivate", read_only_root));
    }
    if let Some(f) = &input.sandbox.resolv_conf {
        extra.push(bind_mount(
            f,
            "/etc/resolv.conf",
            "rprivate",
            read_only_root,
        ));
    }
    if host_ipc {
        extra.push(bind_mount(
            Path::new("/dev/shm"),
            "/dev/shm",
            "rprivate",
            false,
        ));
    } else if let Some(shm) = &input.sandbox.shm {
        extra.push(bind_mount(shm, "/dev/shm", "rprivate", false));
    }
    for m in extra {
        let d = clean(m.destination());
        if !supplied.iter().any(|s| clean(s.destination()) == d) {
            supplied.push(m);
        }
    }
    let rootfs_propagation = if supplied.iter().any(|m| has_option(m, "rshared")) {
        Some("rshared".to_string())
    } else if supplied.iter().any(|m| has_option(m, "rslave")) {
        Some("rslave".to_string())
    } else {
        None
    };
    let mounts = merge_mounts(default_mounts(privileged, true), supplied);

    // linux
    let mut namespaces = vec![namespace(LinuxNamespaceType::Mount, None)];
    if !host_network {
        let netns = input
            .sandbox
            .netns
            .as_deref()
            .ok_or_else(|| SpecError::NoNetns { pod: pod_desc(pod) })?;
        namespaces.push(namespace(LinuxNamespaceType::Network, Some(netns)));
        namespaces.push(namespace(
            LinuxNamespaceType::Uts,
            Some(&input.sandbox.uts_ns),
        ));
    }
    if !host_ipc {
        namespaces.push(namespace(
            LinuxNamespaceType::Ipc,
            Some(&input.sandbox.ipc_ns),
        ));
    }
    if share_pid && !host_pid {
        namespaces.push(namespace(
            LinuxNamespaceType::Pid,
            Some(&input.sandbox.pid_ns),
        ));
    } else if !host_pid {
        namespaces.push(namespace(LinuxNamespaceType::Pid, None));
    }
    if input.cgroup_namespace && !privileged {
        namespaces.push(namespace(LinuxNamespaceType::Cgroup, None));
    }

    let mut resources =
        container_resources(c, input.pids_limit).map_err(|source| SpecError::Resources {
            container: c.name.clone(),
            source,
        })?;
    resources.set_devices(Some(vec![
        LinuxDeviceCgroupBuilder::default()
            .allow(privileged)
            .access("rwm")
            .build()
            .expect("all fields have defaults"),
    ]));

    let unmasked = sc.and_then(|s| s.proc_mount.as_deref()) == Some("Unmasked");
    let mut linux = Linux::default();
    linux.set_namespaces(Some(namespaces));
    linux.set_uid_mappings(None);
    linux.set_gid_mappings(None);
    linux.set_resources(Some(resources));
    linux.set_cgroups_path(Some(PathBuf::from(input.cgroups_path)));
    linux.set_devices(privileged.then(|| input.host_devices.to_vec()));
    if privileged || unmasked {
        linux.set_masked_paths(None);
        linux.set_readonly_paths(None);
    } else {
        linux.set_masked_paths(Some(
            DEFAULT_MASKED_PATHS.iter().map(|s| s.to_string()).collect(),
        ));
        linux.set_readonly_paths(Some(
            DEFAULT_READONLY_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        ));
    }
    linux.set_sysctl(sysctls(pod));
    linux.set_rootfs_propagation(rootfs_propagation);
    linux.set_seccomp(None);

    let mut annotations = pod_annotations(pod, "container", &input.sandbox.id);
    annotations.insert("io.kubernetes.container.name".to_string(), c.name.clone());
    annotations.insert(
        "io.kubernetes.cri.container-name".to_string(),
        c.name.clone(),
    );
    if let Some(image) = &c.image {
        annotations.insert("io.kubernetes.cri.image-name".to_string(), image.clone());
    }

    let mut spec = Spec::default();
    spec.set_version(OCI_VERSION.to_string());
    spec.set_root(Some(root(input.rootfs, read_only_root)));
    spec.set_process(Some(process));
    spec.set_hostname(None);
    spec.set_mounts(Some(mounts));
    spec.set_linux(Some(linux));
    spec.set_annotations(Some(annotations));
    tracing::debug!(privileged, read_only_root, "container spec made");
    Ok(spec)
}

fn has_option(m: &Mount, opt: &str) -> bool {
    m.options().iter().flatten().any(|o| o == opt)
}

/// Everything [`sandbox_spec`] needs.
#[derive(Debug, Clone)]
pub struct SandboxInput<'a> {
    pub pod: &'a Pod,
    /// The pause image's root filesystem on the host.
    pub rootfs: &'a Path,
    /// The pause process's command, normally [`PAUSE_ARGS`].
    pub args: Vec<String>,
    /// The pod's network namespace (the CNI netns); `None` for hostNetwork pods.
    pub netns: Option<&'a Path>,
    /// The pod's hostname ([`pod_hostname`]).
    pub hostname: &'a str,
    /// The pod's cgroup for the sandbox.
    pub cgroups_path: &'a str,
    /// The pod's `/dev/shm` on the host, when the caller made one.
    pub shm: Option<&'a Path>,
    /// The pause process's OOM score: [`crate::SANDBOX_OOM_SCORE_ADJ`] (-998), or
    /// that [restricted](crate::restrict_oom_score_adj) for an agent without
    /// CAP_SYS_RESOURCE.
    pub oom_score_adj: i32,
}

/// The OCI spec for the pod's sandbox: the pause process, in new IPC, UTS and
/// PID namespaces (unless the pod uses the host's), in the pod's network
/// namespace, read-only, with no capabilities and no new privileges, 2 cpu
/// shares as containerd gives it, and the pod's sysctls.
pub fn sandbox_spec(input: &SandboxInput<'_>) -> Result<Spec, SpecError> {
    let pod = input.pod;
    let pod_spec = pod.spec.as_ref();
    let host_network = pod_spec.and_then(|s| s.host_network).unwrap_or(false);
    let host_ipc = pod_spec.and_then(|s| s.host_ipc).unwrap_or(false);
    let host_pid = pod_spec.and_then(|s| s.host_pid).unwrap_or(false);
    let pod_sc = pod_spec.and_then(|s| s.security_context.as_ref());
    let id = |v: Option<i64>| v.and_then(|v| u32::try_from(v).ok()).unwrap_or(0);
    let uid = id(pod_sc.and_then(|s| s.run_as_user));
    let gid = id(pod_sc.and_then(|s| s.run_as_group));
    let mut gids: Vec<u32> = vec![gid];
    gids.extend(
        pod_sc
            .and_then(|s| s.supplemental_groups.clone())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|g| u32::try_from(g).ok()),
    );
    gids.extend(
        pod_sc
            .and_then(|s| s.fs_group)
            .and_then(|g| u32::try_from(g).ok()),
    );
    gids.sort_unstable();
    gids.dedup();

    let mut process = Process::default();
    process.set_terminal(Some(false));
    process.set_user(
        UserBuilder::default()
            .uid(uid)
            .gid(gid)
            .additional_gids(gids)
            .build()
            .expect("all fields have defaults"),
    );
    process.set_args(Some(input.args.clone()));
    process.set_env(Some(vec![DEFAULT_PATH.to_string()]));
    process.set_cwd(PathBuf::from("/"));
    process.set_capabilities(Some(linux_capabilities(Default::default())));
    process.set_rlimits(None);
    process.set_no_new_privileges(Some(true));
    process.set_oom_score_adj(Some(input.oom_score_adj));
    process.set_apparmor_profile(None);

    let mut supplied = Vec::new();
    if let Some(shm) = input.shm {
        supplied.push(bind_mount(shm, "/dev/shm", "rprivate", false));
    }
    let mounts = merge_mounts(default_mounts(false, false), supplied);

    let mut namespaces = vec![namespace(LinuxNamespaceType::Mount, None)];
    if !host_network {
        let netns = input
            .netns
            .ok_or_else(|| SpecError::NoNetns { pod: pod_desc(pod) })?;
        namespaces.push(namespace(LinuxNamespaceType::Network, Some(netns)));
        namespaces.push(namespace(LinuxNamespaceType::Uts, None));
    }
    if !host_ipc {
        namespaces.push(namespace(LinuxNamespaceType::Ipc, None));
    }
    if !host_pid {
        namespaces.push(namespace(LinuxNamespaceType::Pid, None));
    }

    let resources = LinuxResourcesBuilder::default()
        .cpu(
            LinuxCpuBuilder::default()
                .shares(SANDBOX_CPU_SHARES)
                .build()
                .expect("all fields have defaults"),
        )
        .devices(vec![
            LinuxDeviceCgroupBuilder::default()
                .allow(false)
                .access("rwm")
                .build()
                .expect("all fields have defaults"),
        ])
        .build()
        .expect("all fields have defaults");

    let mut linux = Linux::default();
    linux.set_namespaces(Some(namespaces));
    linux.set_resources(Some(resources));
    linux.set_cgroups_path(Some(PathBuf::from(input.cgroups_path)));
    linux.set_devices(None);
    linux.set_masked_paths(Some(
        DEFAULT_MASKED_PATHS.iter().map(|s| s.to_string()).collect(),
    ));
    linux.set_readonly_paths(Some(
        DEFAULT_READONLY_PATHS
            .iter()
            .map(|s| s.to_string())
            .collect(),
    ));
    linux.set_sysctl(sysctls(pod));
    linux.set_seccomp(None);

    let mut spec = Spec::default();
    spec.set_version(OCI_VERSION.to_string());
    spec.set_root(Some(root(input.rootfs, true)));
    spec.set_process(Some(process));
    spec.set_hostname((!host_network).then(|| input.hostname.to_string()));
    spec.set_mounts(Some(mounts));
    spec.set_linux(Some(linux));
    spec.set_annotations(Some(pod_annotations(pod, "sandbox", "")));
    Ok(spec)
}

/// The pod's hostname as the kubelet gives it: `spec.hostname`, else the
/// pod's name, cut to 63 characters (without a trailing `-` or `.`); the
/// node's hostname for hostNetwork pods. (`setHostnameAsFQDN` is not
/// supported.)
pub fn pod_hostname(pod: &Pod, node_hostname: &str) -> String {
    let spec = pod.spec.as_ref();
    if spec.and_then(|s| s.host_network).unwrap_or(false) {
        return node_hostname.to_string();
    }
    let name = spec
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default();
    if name.len() <= 63 {
        return name;
    }
    let mut cut = name.as_bytes()[..63].to_vec();
    while matches!(cut.last(), Some(b'-' | b'.')) {
        cut.pop();
    }
    String::from_utf8_lossy(&cut).into_owned()
}

#[cfg(test)]
mod tests;
