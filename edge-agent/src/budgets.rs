//! The node's memory budgets and its eviction manager: the agent, its containerd and
//! every pod in the cgroups a hardware profile sets (kedge-cgroups), and the loop that
//! watches memory, disk and processes, sets the Node's pressure conditions, and
//! evicts pods when memory runs short, as the kubelet's eviction manager does.
//!
//! - [`Budgets::setup`], before anything else starts: the kedge hierarchy
//!   (`kedge/system/{agent,containerd}` capped at the profile's budgets, `kubepods`
//!   capped at what pods may use, the QoS classes), the agent moved into its cgroup,
//!   and its OOM score lowered to the kubelet's -999 where the process may. An agent
//!   that cannot do this stops with an error naming what to do.
//! - containerd is started through a launcher ([`Budgets::containerd_launcher`]) that
//!   joins containerd's cgroup before it execs containerd, so that everything it and
//!   its shims allocate, from the first page and after every restart, is charged to
//!   its budget (cgroup v1 leaves charges where they were made when a process moves);
//!   [`Budgets::follow_containerd`] checks each new containerd and sets its OOM score.
//! - [`Budgets`] is the pod runtime's [`CgroupPlacement`]: a cgroup per pod under its
//!   QoS class, the containers' cgroupsPath under it, the burstable class's CPU
//!   shares, and the pod's OOM kills (for `OOMKilled`).
//! - [`run_eviction_loop`] observes every [`BudgetConfig::interval`] (tokio time,
//!   so tests run it on paused time), decides with [`Monitor`] (pure: time is passed
//!   in), sets MemoryPressure, DiskPressure and PIDPressure in [`LiveNodeStatus`],
//!   and hands the pod to evict to the pod manager.
//!
//! The hierarchy of the default data dir sits at the cgroupfs root (`/kubepods`, as
//! the kubelet's); any other data dir gets a prefix of its own ([`layout_prefix`]),
//! so that several agents on one machine (tests) never share a cgroup.
//!
//! Signals, as the kubelet computes them:
//! - memory.available: capacity − the root cgroup's working set (v1), or
//!   MemAvailable (v2, whose root cgroup accounts nothing), plus memory PSI on v2.
//!   On an emulated device (`--emulate-device`) the machine is not the device: what
//!   is available is the profile's memory less what kedge's cgroups hold
//!   (`kedge/system` and `kubepods`).
//! - nodefs.available, nodefs.inodesFree and imagefs.available from statvfs of the
//!   data dir and of containerd's root, as cAdvisor reads them: available is what an
//!   unprivileged writer may still use (f_bavail), a percentage is of the whole
//!   filesystem (f_blocks), as image GC counts it too. Test harnesses on shared
//!   machines turn the disk thresholds off (`--eviction-hard=nodefs.available<0%`,
//!   as kind does), so that the host's disk does not taint their nodes.
//! - pid.available: pid_max (or threads-max, if lower) less the tasks that exist;
//!   profiles carry no threshold for it, so PIDPressure comes at under 10% left.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kedge_cgroups::eviction::{
    ContainerUsage, Eviction, EvictionConfig, EvictionManager, NodeMemory, PodUsage,
    SYSTEM_CRITICAL_PRIORITY,
};
use kedge_cgroups::oom::{AGENT_OOM_SCORE_ADJ, CONTAINERD_OOM_SCORE_ADJ, set_oom_score_adj};
use kedge_cgroups::{
    CgroupError, Cgroups, ContainerResources, Layout, PodResources, SystemBudgets, Version,
};
use kedge_containerd::ContainerdState;
use kedge_hardware_profiles::{Bytes, Capacity, Profile, Signal, Threshold};
use kedge_proto::v1::ObjectKind;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::node_status::{LiveNodeStatus, Pressure};
use crate::pods::containerd::CgroupPlacement;
use crate::pods::manager::{EvictionSender, is_mirror};
use crate::pods::runtime::{ContainerState, PodRuntime};
use crate::pods::worker::PodEviction;
use crate::store::Store;

/// How often the eviction manager looks (the kubelet's housekeeping is 10 s).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// How long an evicted pod has to let go of its memory before the next eviction
/// (the kubelet's podCleanupTimeout).
pub const POD_CLEANUP_TIMEOUT: Duration = Duration::from_secs(30);
/// PIDPressure below this share of pid_max left, in percent.
pub const PID_AVAILABLE_MIN_PERCENT: u64 = 10;

/// The cgroup layout prefix for a data dir: none for the default
/// (`/var/lib/kedge`), so the hierarchy sits at the cgroupfs root as the kubelet's;
/// `kedge-<hash of the data dir>` for any other, so agents of different data dirs
/// (tests) never share a cgroup.
pub fn layout_prefix(data_dir: &Path) -> String {
    crate::node_runtime::data_dir_tag(data_dir)
        .map(|tag| format!("kedge-{tag}"))
        .unwrap_or_default()
}

/// The disk thresholds to watch (the profile's nodefs and imagefs signals). A soft
/// threshold raises DiskPressure at once, as the kubelet's node condition does;
/// evicting for disk is left to image GC.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DiskThresholds {
    pub hard: Vec<(Signal, Threshold)>,
    pub soft: Vec<(Signal, Threshold)>,
}

impl DiskThresholds {
    pub fn from_profile(profile: &Profile) -> DiskThresholds {
        let disk = |s: &Signal| *s != Signal::MemoryAvailable;
        DiskThresholds {
            hard: profile
                .eviction_hard
                .iter()
                .filter(|(s, _)| disk(s))
                .map(|(s, t)| (*s, *t))
                .collect(),
            soft: profile
                .eviction_soft
                .iter()
                .filter(|(s, _)| disk(s))
                .map(|(s, t)| (*s, t.threshold))
                .collect(),
        }
    }
}

/// How the budgets are set up and watched.
#[derive(Debug, Clone)]
pub struct BudgetConfig {
    /// The cgroupfs root (`/sys/fs/cgroup`).
    pub cgroup_root: PathBuf,
    /// `/proc`.
    pub proc_root: PathBuf,
    /// The layout prefix ([`layout_prefix`]).
    pub prefix: String,
    pub budgets: SystemBudgets,
    /// The node's memory capacity.
    pub memory_capacity: u64,
    /// The node is an emulated device: memory.available counts only kedge's cgroups.
    pub emulated: bool,
    pub eviction: EvictionConfig,
    pub disk: DiskThresholds,
    /// The filesystem of the data dir (nodefs).
    pub nodefs: PathBuf,
    /// The filesystem of containerd's root (imagefs).
    pub imagefs: PathBuf,
    /// How often the eviction manager observes.
    pub interval: Duration,
}

impl BudgetConfig {
    /// The profile's budgets and thresholds, for a node of this capacity whose state
    /// lives in `data_dir`.
    pub fn from_profile(
        profile: &Profile,
        capacity: &Capacity,
        data_dir: &Path,
        emulated: bool,
    ) -> BudgetConfig {
        BudgetConfig {
            cgroup_root: PathBuf::from(kedge_cgroups::DEFAULT_ROOT),
            proc_root: PathBuf::from("/proc"),
            prefix: layout_prefix(data_dir),
            budgets: SystemBudgets::from_profile(profile, capacity),
            memory_capacity: capacity.memory.0,
            emulated,
            eviction: EvictionConfig::from_profile(profile),
            disk: DiskThresholds::from_profile(profile),
            nodefs: data_dir.to_path_buf(),
            imagefs: data_dir.join("agent").join("containerd"),
            interval: DEFAULT_INTERVAL,
        }
    }
}

/// The budgets could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    #[error(
        "the cgroup budgets need root, and kedge-agent runs as uid {uid}: run it as root, or pass --disable-cgroups to run without budgets (nothing then bounds the memory of the agent, containerd or pods)"
    )]
    NotRoot { uid: u32 },
    #[error(
        "cannot set up the cgroup budgets under {root}: {source}; run kedge-agent as root on a machine with cgroupfs mounted at {root}, or pass --disable-cgroups to run without budgets (nothing then bounds the memory of the agent, containerd or pods)"
    )]
    Cgroups { root: PathBuf, source: CgroupError },
    #[error("cannot write containerd's launcher {path}: {source}")]
    Launcher {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot find the containerd binary {binary:?} on PATH; install containerd or give its path with --containerd-binary"
    )]
    NoContainerd { binary: PathBuf },
}

#[derive(Debug, Default)]
struct Placed {
    /// The pods given a cgroup, for the burstable class's shares.
    pods: HashMap<String, PodResources>,
    /// The highest OOM kill count seen per cgroup of each pod: a container's cgroup
    /// goes with the container, its count must not.
    oom: HashMap<String, BTreeMap<String, u64>>,
}

/// The kedge hierarchy of this agent, set up.
#[derive(Debug)]
pub struct Budgets {
    cgroups: Cgroups,
    config: BudgetConfig,
    /// `/proc/self/cgroup` before the agent moved: where it goes back on shutdown.
    origin: String,
    placed: Mutex<Placed>,
}

/// Lowers a process's OOM score; a process without CAP_SYS_RESOURCE may not, and
/// says so once.
fn protect(proc_root: &Path, pid: u32, score: i32, what: &str) {
    match set_oom_score_adj(proc_root, pid, score) {
        Ok(()) => debug!(pid, score, what, "OOM score set"),
        Err(e) => warn!(
            pid,
            what,
            error = %e,
            "cannot lower the OOM score: the kernel's OOM killer may pick this process as early as a pod's; the budgets still keep pods out of its memory"
        ),
    }
}

/// Single-quotes a string for /bin/sh.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The path of a binary: as given when it has a slash, else the first match on PATH.
fn resolve_binary(binary: &Path) -> Option<PathBuf> {
    if binary.components().count() > 1 || binary.is_absolute() {
        return binary.is_file().then(|| binary.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(binary))
        .find(|candidate| candidate.is_file())
}

impl Budgets {
    /// Creates the hierarchy and caps it, and moves the agent (this process) into its
    /// cgroup with the kubelet's OOM score. Idempotent: an agent restarted finds its
    /// hierarchy and its pods' cgroups in place.
    pub fn setup(config: BudgetConfig) -> Result<Arc<Budgets>, BudgetError> {
        let uid = nix::unistd::geteuid();
        if !uid.is_root() {
            return Err(BudgetError::NotRoot { uid: uid.as_raw() });
        }
        let cgroup_error = |source| BudgetError::Cgroups {
            root: config.cgroup_root.clone(),
            source,
        };
        let layout = Layout::new(&config.prefix).map_err(cgroup_error)?;
        let cgroups = Cgroups::open(&config.cgroup_root, layout).map_err(cgroup_error)?;
        cgroups
            .ensure_hierarchy(&config.budgets)
            .map_err(cgroup_error)?;
        let pid = std::process::id();
        let origin =
            std::fs::read_to_string(config.proc_root.join("self/cgroup")).unwrap_or_default();
        cgroups.move_agent(pid).map_err(cgroup_error)?;
        protect(&config.proc_root, pid, AGENT_OOM_SCORE_ADJ, "kedge-agent");
        info!(
            version = ?cgroups.version(),
            agent = %cgroups.layout().agent(),
            budget = %Bytes(config.budgets.agent),
            containerd_budget = %Bytes(config.budgets.containerd),
            pods = %Bytes(config.budgets.pods),
            "the agent runs in its budget"
        );
        Ok(Arc::new(Budgets {
            cgroups,
            config,
            origin,
            placed: Mutex::new(Placed::default()),
        }))
    }

    fn placed(&self) -> std::sync::MutexGuard<'_, Placed> {
        self.placed.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn cgroups(&self) -> &Cgroups {
        &self.cgroups
    }

    pub fn config(&self) -> &BudgetConfig {
        &self.config
    }

    /// Writes the script containerd is started through: it writes its own pid into
    /// containerd's cgroup, then execs `containerd` (resolved on PATH) with the
    /// arguments it was given. Returns its path, `<dir>/containerd-in-cgroup`.
    pub fn containerd_launcher(
        &self,
        containerd: &Path,
        dir: &Path,
    ) -> Result<PathBuf, BudgetError> {
        let binary = resolve_binary(containerd).ok_or_else(|| BudgetError::NoContainerd {
            binary: containerd.to_path_buf(),
        })?;
        self.write_launcher(
            &dir.join("containerd-in-cgroup"),
            "containerd joins its budget's cgroup before it starts, so that everything\n\
             # it and its shims allocate is charged to that budget.",
            &format!("exec {} \"$@\"", sh_quote(&binary.to_string_lossy())),
        )
    }

    /// Writes the script CNI plugins run through (`<launcher> <plugin>`): the plugin
    /// joins containerd's cgroup, then runs. Under the kubelet, containerd's CRI plugin
    /// runs them, so their memory is the runtime's, never the agent's budget (thirty
    /// pods starting at once would otherwise run the agent out of its cgroup). Returns
    /// its path, `<dir>/in-runtime-cgroup`.
    pub fn plugin_launcher(&self, dir: &Path) -> Result<PathBuf, BudgetError> {
        self.write_launcher(
            &dir.join("in-runtime-cgroup"),
            "a CNI plugin joins containerd's cgroup before it runs, so that its memory is\n\
             # charged to the runtime's budget, not the agent's.",
            "exec \"$@\"",
        )
    }

    /// Writes (atomically, mode 0755) a shell script that writes its pid into
    /// containerd's cgroup, then runs `exec_line`.
    fn write_launcher(
        &self,
        path: &Path,
        why: &str,
        exec_line: &str,
    ) -> Result<PathBuf, BudgetError> {
        let files = self
            .cgroups
            .driver()
            .procs_files(&self.cgroups.layout().containerd())
            .map_err(|source| BudgetError::Cgroups {
                root: self.config.cgroup_root.clone(),
                source,
            })?;
        let files: Vec<String> = files
            .iter()
            .map(|f| sh_quote(&f.to_string_lossy()))
            .collect();
        let script = format!(
            "#!/bin/sh\n\
             # Generated by kedge-agent at every start; edits are overwritten.\n\
             # {why}\n\
             for procs in {files}; do\n\
             \techo $$ > \"$procs\" || exit 1\n\
             done\n\
             {exec_line}\n",
            files = files.join(" "),
        );
        let launcher_error = |source| BudgetError::Launcher {
            path: path.to_path_buf(),
            source,
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(launcher_error)?;
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o755)
                .open(&tmp)
                .map_err(launcher_error)?;
            f.write_all(script.as_bytes()).map_err(launcher_error)?;
            f.sync_all().map_err(launcher_error)?;
        }
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            launcher_error(e)
        })?;
        Ok(path.to_path_buf())
    }

    /// Puts a containerd in its cgroup (the launcher did already; this makes sure)
    /// and gives it the kubelet's OOM score for the runtime.
    pub fn place_containerd(&self, pid: u32) {
        if let Err(e) = self.cgroups.move_containerd(pid) {
            warn!(pid, error = %e, "cannot move containerd into its cgroup");
        }
        protect(
            &self.config.proc_root,
            pid,
            CONTAINERD_OOM_SCORE_ADJ,
            "containerd",
        );
        info!(pid, cgroup = %self.cgroups.layout().containerd(), "containerd runs in its budget");
    }

    /// Places every containerd the supervisor (re)starts, until it stops.
    pub async fn follow_containerd(self: Arc<Self>, mut state: watch::Receiver<ContainerdState>) {
        loop {
            let running = match *state.borrow_and_update() {
                ContainerdState::Running { pid, .. } => Some(pid),
                _ => None,
            };
            if let Some(pid) = running {
                self.place_containerd(pid);
            }
            if state.changed().await.is_err() {
                return;
            }
        }
    }

    /// On shutdown, after containerd stopped: when no pod has a cgroup left, the agent
    /// goes back where it came from, what is left in containerd's cgroup (shims that
    /// serve no pod) is killed, and the hierarchy is removed. With pods left,
    /// everything stays for the next agent.
    pub async fn release(&self) {
        match self.cgroups.pod_uids() {
            Ok(uids) if uids.is_empty() => {}
            Ok(uids) => {
                debug!(
                    pods = uids.len(),
                    "pods keep their cgroups for the next agent"
                );
                return;
            }
            Err(e) => {
                warn!(error = %e, "cannot list the pod cgroups; leaving the hierarchy");
                return;
            }
        }
        if let Err(e) = self
            .cgroups
            .release_process(std::process::id(), &self.origin)
        {
            warn!(error = %e, "cannot move the agent out of its cgroup; leaving the hierarchy");
            return;
        }
        let containerd = self.cgroups.layout().containerd();
        for pid in self
            .cgroups
            .driver()
            .processes(&containerd)
            .unwrap_or_default()
        {
            debug!(
                pid,
                "killing a process left in containerd's cgroup with no pod to serve"
            );
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // A killed process leaves its cgroup once its parent has reaped it.
        let mut tries = 0;
        loop {
            match self.cgroups.remove_all() {
                Ok(()) => {
                    info!("no pods left: the cgroup hierarchy is removed");
                    return;
                }
                Err(e) if tries >= 20 => {
                    warn!(error = %e, "cannot remove the cgroup hierarchy");
                    return;
                }
                Err(_) => tries += 1,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The pod's cgroup settings changed or it went: the burstable class's shares
    /// follow the pods placed.
    fn update_qos(&self) {
        let pods: Vec<PodResources> = self.placed().pods.values().cloned().collect();
        if let Err(e) = self.cgroups.update_qos(&pods) {
            warn!(error = %e, "cannot update the QoS cgroups");
        }
    }

    /// Removes the cgroups of pods the runtime holds nothing for (a removal that
    /// failed while a process was still leaving).
    fn remove_stale(&self, held: &HashSet<String>) {
        let Ok(uids) = self.cgroups.pod_uids() else {
            return;
        };
        for uid in uids.iter().filter(|u| !held.contains(*u)) {
            match self.cgroups.remove_pod(uid) {
                Ok(()) => {
                    debug!(uid, "removed the cgroup of a pod that is gone");
                    let mut placed = self.placed();
                    placed.pods.remove(uid);
                    placed.oom.remove(uid);
                }
                Err(e) => debug!(uid, error = %e, "a gone pod's cgroup is still busy"),
            }
        }
    }
}

/// A container's `resources.<kind>[name]` (kind `requests` or `limits`).
fn resource_quantity(
    c: &k8s_openapi::api::core::v1::Container,
    kind: &str,
    name: &str,
) -> Result<Option<kedge_podspec::Quantity>, kedge_podspec::QuantityError> {
    let resources = c.resources.as_ref();
    let list = match kind {
        "requests" => resources.and_then(|r| r.requests.as_ref()),
        _ => resources.and_then(|r| r.limits.as_ref()),
    };
    list.and_then(|l| l.get(name))
        .map(|q| kedge_podspec::Quantity::parse(&q.0))
        .transpose()
}

/// A container's memory request in bytes, or its limit when it sets no request (the
/// API server's defaulting); 0 for neither.
fn memory_request(c: &k8s_openapi::api::core::v1::Container) -> u64 {
    let q = match resource_quantity(c, "requests", "memory") {
        Ok(Some(q)) => Some(q),
        _ => resource_quantity(c, "limits", "memory").ok().flatten(),
    };
    q.map_or(0, |q| q.value().max(0) as u64)
}

/// What the cgroups need of a pod: its containers' CPU (millicores) and memory
/// (bytes) requests and limits.
pub fn pod_resources(pod: &Pod) -> Result<PodResources, kedge_podspec::QuantityError> {
    let container = |c: &k8s_openapi::api::core::v1::Container| {
        let milli = |kind| {
            resource_quantity(c, kind, "cpu").map(|q| q.map(|q| q.milli_value().max(0) as u64))
        };
        let bytes =
            |kind| resource_quantity(c, kind, "memory").map(|q| q.map(|q| q.value().max(0) as u64));
        Ok::<_, kedge_podspec::QuantityError>(ContainerResources {
            cpu_request: milli("requests")?,
            cpu_limit: milli("limits")?,
            memory_request: bytes("requests")?,
            memory_limit: bytes("limits")?,
        })
    };
    let spec = pod.spec.clone().unwrap_or_default();
    Ok(PodResources {
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        containers: spec
            .containers
            .iter()
            .map(container)
            .collect::<Result<_, _>>()?,
        init_containers: spec
            .init_containers
            .iter()
            .flatten()
            .map(container)
            .collect::<Result<_, _>>()?,
    })
}

impl CgroupPlacement for Budgets {
    fn pod_cgroup(&self, pod: &Pod) -> Result<String, String> {
        let resources = pod_resources(pod).map_err(|e| e.to_string())?;
        let path = self
            .cgroups
            .update_pod(&resources)
            .map_err(|e| e.to_string())?;
        self.placed().pods.insert(resources.uid.clone(), resources);
        self.update_qos();
        Ok(format!("/{path}"))
    }

    fn container_path(&self, pod: &Pod, container_id: &str) -> String {
        let path = pod_resources(pod).map_err(|e| e.to_string()).and_then(|r| {
            self.cgroups
                .container_cgroups_path(&r, container_id)
                .map_err(|e| e.to_string())
        });
        match path {
            Ok(p) => p,
            Err(e) => {
                // pod_cgroup failed the sandbox already for the same reason.
                warn!(error = %e, "no cgroup for the container; runc picks one");
                String::new()
            }
        }
    }

    fn remove_pod(&self, pod_uid: &str) {
        match self.cgroups.remove_pod(pod_uid) {
            Ok(()) => {
                let mut placed = self.placed();
                placed.pods.remove(pod_uid);
                placed.oom.remove(pod_uid);
            }
            // The eviction loop removes it once its last process is gone.
            Err(e) => debug!(uid = pod_uid, error = %e, "the pod's cgroup is still busy"),
        }
        self.update_qos();
    }

    fn oom_kills(&self, pod_uid: &str) -> Option<u64> {
        let path = self.cgroups.find_pod(pod_uid).ok()??;
        let counts = self.cgroups.oom_kills(&path).ok()?;
        let mut placed = self.placed();
        let seen = placed.oom.entry(pod_uid.to_string()).or_default();
        for (cgroup, n) in counts {
            let highest = seen.entry(cgroup).or_default();
            *highest = (*highest).max(n);
        }
        Some(seen.values().sum())
    }
}

// ---- signals ----

/// A filesystem, as the disk signals see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FsStats {
    /// The filesystem's size (f_blocks).
    pub capacity: u64,
    /// What an unprivileged writer may still use (statvfs f_bavail).
    pub available: u64,
    pub inodes: u64,
    pub inodes_free: u64,
}

impl FsStats {
    /// statvfs of the filesystem holding `path`.
    pub fn of(path: &Path) -> Option<FsStats> {
        let s = nix::sys::statvfs::statvfs(path).ok()?;
        let frag = s.fragment_size() as u64;
        Some(FsStats {
            capacity: s.blocks() as u64 * frag,
            available: s.blocks_available() as u64 * frag,
            inodes: s.files() as u64,
            inodes_free: s.files_available() as u64,
        })
    }
}

/// Processes (tasks) in use and the most there may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PidStats {
    pub max: u64,
    pub in_use: u64,
}

impl PidStats {
    /// From `/proc`: kernel.pid_max and kernel.threads-max (the lower), and the
    /// tasks that exist (`/proc/loadavg`'s fourth field, after the slash).
    pub fn read(proc_root: &Path) -> Option<PidStats> {
        let number = |p: &str| -> Option<u64> {
            std::fs::read_to_string(proc_root.join(p))
                .ok()?
                .trim()
                .parse()
                .ok()
        };
        let pid_max = number("sys/kernel/pid_max")?;
        let max = number("sys/kernel/threads-max").map_or(pid_max, |t| t.min(pid_max));
        let loadavg = std::fs::read_to_string(proc_root.join("loadavg")).ok()?;
        let in_use = parse_loadavg_tasks(&loadavg)?;
        Some(PidStats { max, in_use })
    }
}

/// The task count in `/proc/loadavg` ("0.20 0.18 0.12 1/80 11206": 80).
pub fn parse_loadavg_tasks(text: &str) -> Option<u64> {
    text.split_whitespace()
        .nth(3)?
        .split_once('/')?
        .1
        .parse()
        .ok()
}

/// One look at the node.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub memory: NodeMemory,
    /// The pods that may be evicted (running, not evicted yet).
    pub pods: Vec<PodUsage>,
    pub nodefs: Option<FsStats>,
    pub imagefs: Option<FsStats>,
    pub pids: Option<PidStats>,
    /// A pod evicted earlier still runs: no new eviction until it has stopped (or
    /// [`POD_CLEANUP_TIMEOUT`] passed).
    pub reclaiming: bool,
}

/// What one observation calls for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub memory_pressure: bool,
    pub disk_pressure: bool,
    pub pid_pressure: bool,
    /// The pod to evict now.
    pub evict: Option<Eviction>,
}

/// The eviction manager's decisions, from one observation to the next: memory by
/// [`EvictionManager`], disk and pids by their thresholds, each pressure kept for
/// the transition period after it was last seen. Pure: `now` is passed in.
#[derive(Debug, Clone)]
pub struct Monitor {
    memory: EvictionManager,
    disk: DiskThresholds,
    transition: Duration,
    disk_since: Option<std::time::Instant>,
    pid_since: Option<std::time::Instant>,
}

fn crossed(
    signal: Signal,
    threshold: &Threshold,
    nodefs: Option<FsStats>,
    imagefs: Option<FsStats>,
) -> bool {
    let (value, capacity) = match (signal, nodefs, imagefs) {
        (Signal::NodefsAvailable, Some(fs), _) => (fs.available, fs.capacity),
        (Signal::NodefsInodesFree, Some(fs), _) => (fs.inodes_free, fs.inodes),
        (Signal::ImagefsAvailable, _, Some(fs)) => (fs.available, fs.capacity),
        _ => return false,
    };
    value < threshold.resolve(Bytes(capacity)).0
}

impl Monitor {
    pub fn new(eviction: EvictionConfig, disk: DiskThresholds) -> Monitor {
        Monitor {
            transition: eviction.pressure_transition_period,
            memory: EvictionManager::new(eviction),
            disk,
            disk_since: None,
            pid_since: None,
        }
    }

    fn lingering(&self, last: Option<std::time::Instant>, now: std::time::Instant) -> bool {
        last.is_some_and(|t| t == now || now.saturating_duration_since(t) < self.transition)
    }

    pub fn observe(&mut self, now: std::time::Instant, obs: &Observation) -> Verdict {
        let decision = self.memory.observe(now, obs.memory, &obs.pods);
        let disk = self
            .disk
            .hard
            .iter()
            .chain(&self.disk.soft)
            .any(|(s, t)| crossed(*s, t, obs.nodefs, obs.imagefs));
        if disk {
            self.disk_since = Some(now);
        }
        let pids = obs.pids.is_some_and(|p| {
            p.max.saturating_sub(p.in_use) < p.max / 100 * PID_AVAILABLE_MIN_PERCENT
        });
        if pids {
            self.pid_since = Some(now);
        }
        Verdict {
            memory_pressure: decision.memory_pressure,
            disk_pressure: self.lingering(self.disk_since, now),
            pid_pressure: self.lingering(self.pid_since, now),
            evict: decision.evict.filter(|_| !obs.reclaiming),
        }
    }
}

// ---- the loop ----

/// What the loop reads the node from.
#[derive(Debug, Clone)]
pub struct EvictionLoop {
    pub budgets: Arc<Budgets>,
    pub runtime: Arc<dyn PodRuntime>,
    pub store: Store,
    pub live: Arc<LiveNodeStatus>,
    pub evictor: EvictionSender,
    /// Wall-clock now, for the conditions' transition times.
    pub clock: fn() -> jiff::Timestamp,
}

/// A pod as the loop ranks it, with its own grace period.
struct Candidate {
    usage: PodUsage,
    grace: Duration,
}

impl EvictionLoop {
    /// The node's memory, by [`BudgetConfig::emulated`] and the cgroup version.
    fn node_memory(&self) -> Option<NodeMemory> {
        let b = &self.budgets;
        let c = &b.config;
        let cg = &b.cgroups;
        let psi = |memory: NodeMemory| -> NodeMemory {
            if cg.version() != Version::V2 {
                return memory;
            }
            let psi = if c.emulated {
                cg.memory_pressure(&cg.layout().kubepods()).ok().flatten()
            } else {
                kedge_cgroups::stats::node_memory_pressure(&c.proc_root)
                    .ok()
                    .flatten()
            };
            NodeMemory { psi, ..memory }
        };
        let memory = if c.emulated {
            let held = [cg.layout().system(), cg.layout().kubepods()]
                .iter()
                .filter_map(|p| cg.memory_stats(p).ok())
                .map(|s| s.working_set)
                .sum();
            NodeMemory::from_working_set(c.memory_capacity, held)
        } else {
            match cg.root_memory_stats() {
                Ok(Some(root)) => NodeMemory::from_working_set(c.memory_capacity, root.working_set),
                _ => {
                    let text = std::fs::read_to_string(c.proc_root.join("meminfo")).ok()?;
                    NodeMemory::from_meminfo(&text)?
                }
            }
        };
        Some(psi(memory))
    }

    /// The pods of the store that may be evicted, with their containers' usage.
    async fn candidates(&self, evicted: &HashMap<String, tokio::time::Instant>) -> Vec<Candidate> {
        let cg = &self.budgets.cgroups;
        let pods: Vec<Pod> = self
            .store
            .list(ObjectKind::Pod)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|o| serde_json::from_slice::<Pod>(&o.object).ok())
            .filter(|p| !is_mirror(p) && p.metadata.deletion_timestamp.is_none())
            .filter(|p| {
                let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
                !matches!(phase, Some("Succeeded" | "Failed"))
            })
            .collect();
        let mut out = Vec::new();
        for pod in pods {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            if uid.is_empty() || evicted.contains_key(&uid) {
                continue;
            }
            let Ok(Some(path)) = cg.find_pod(&uid) else {
                continue;
            };
            let observed = self.runtime.observe(&uid).await.unwrap_or_default();
            let spec = pod.spec.clone().unwrap_or_default();
            let containers = spec
                .containers
                .iter()
                .map(|c| {
                    let usage = observed
                        .containers
                        .iter()
                        .filter(|s| s.name == c.name && s.state == ContainerState::Running)
                        .filter_map(|s| cg.memory_stats(&format!("{path}/{}", s.id)).ok())
                        .map(|s| s.working_set)
                        .sum();
                    ContainerUsage {
                        name: c.name.clone(),
                        usage,
                        request: memory_request(c),
                    }
                })
                .collect();
            let priority = spec.priority.unwrap_or(0);
            out.push(Candidate {
                usage: PodUsage {
                    namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                    name: pod.metadata.name.clone().unwrap_or_default(),
                    uid,
                    priority,
                    critical: kedge_podspec::is_node_critical(&pod)
                        || priority >= SYSTEM_CRITICAL_PRIORITY,
                    containers,
                },
                grace: Duration::from_secs(
                    spec.termination_grace_period_seconds.unwrap_or(30).max(0) as u64,
                ),
            });
        }
        out
    }

    /// Whether a pod evicted within the cleanup timeout still runs anything.
    async fn reclaiming(&self, evicted: &HashMap<String, tokio::time::Instant>) -> bool {
        let now = tokio::time::Instant::now();
        for (uid, since) in evicted {
            if now.saturating_duration_since(*since) >= POD_CLEANUP_TIMEOUT {
                continue;
            }
            let Ok(observed) = self.runtime.observe(uid).await else {
                continue;
            };
            if observed
                .containers
                .iter()
                .any(|c| c.state == ContainerState::Running)
            {
                return true;
            }
        }
        false
    }

    fn set(&self, pressure: Pressure, on: bool) {
        let now = (self.clock)().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        if self.live.set_pressure(pressure, on, &now) {
            info!(
                condition = pressure.condition(),
                on, "node pressure changed"
            );
        }
    }

    /// Runs until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let config = self.budgets.config.clone();
        let mut monitor = Monitor::new(config.eviction.clone(), config.disk.clone());
        let mut evicted: HashMap<String, tokio::time::Instant> = HashMap::new();
        let mut interval = tokio::time::interval(config.interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        info!(every = ?config.interval, emulated = config.emulated, "eviction manager started");
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let now = tokio::time::Instant::now();
            let Some(memory) = self.node_memory() else {
                warn!("cannot read the node's memory; skipping this look");
                continue;
            };
            let candidates = self.candidates(&evicted).await;
            let graces: HashMap<String, Duration> = candidates
                .iter()
                .map(|c| (c.usage.uid.clone(), c.grace))
                .collect();
            let observation = Observation {
                memory,
                pods: candidates.into_iter().map(|c| c.usage).collect(),
                nodefs: FsStats::of(&config.nodefs),
                imagefs: FsStats::of(&config.imagefs).or(FsStats::of(&config.nodefs)),
                pids: PidStats::read(&config.proc_root),
                reclaiming: self.reclaiming(&evicted).await,
            };
            let verdict = monitor.observe(now.into_std(), &observation);
            self.set(Pressure::Memory, verdict.memory_pressure);
            self.set(Pressure::Disk, verdict.disk_pressure);
            self.set(Pressure::Pid, verdict.pid_pressure);
            if let Some(e) = verdict.evict {
                // Hard: at once. Soft: the pod's grace period, at most the maximum.
                let grace = match graces.get(&e.uid) {
                    Some(own) => e.grace_period.min(*own),
                    None => e.grace_period,
                };
                info!(
                    pod = %format!("{}/{}", e.namespace, e.name),
                    available = %Bytes(observation.memory.available),
                    grace = ?grace,
                    "evicting a pod: the node is low on memory"
                );
                let eviction = PodEviction {
                    message: e.message.clone(),
                    grace_period: grace,
                };
                if self.evictor.evict(&e.uid, eviction) {
                    evicted.insert(e.uid.clone(), now);
                } else {
                    warn!(uid = %e.uid, "the pod manager did not take the eviction");
                }
            }
            // Forget evictions of pods the store no longer lists; tidy cgroups the
            // runtime holds nothing for.
            let stored: HashSet<String> = self
                .store
                .list(ObjectKind::Pod)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|o| serde_json::from_slice::<Pod>(&o.object).ok())
                .filter_map(|p| p.metadata.uid)
                .collect();
            evicted.retain(|uid, _| stored.contains(uid));
            if let Ok(held) = self.runtime.pods().await {
                let held: HashSet<String> = held.into_iter().map(|r| r.uid).collect();
                self.budgets.remove_stale(&held);
            }
        }
    }
}

/// Starts the eviction loop as a task.
pub fn run_eviction_loop(
    eviction: EvictionLoop,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(eviction.run(stop))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    const MI: u64 = 1 << 20;

    #[test]
    fn each_data_dir_has_its_own_prefix() {
        assert_eq!(layout_prefix(Path::new("/var/lib/kedge")), "");
        let a = layout_prefix(Path::new("/tmp/a"));
        let b = layout_prefix(Path::new("/tmp/b"));
        assert!(a.starts_with("kedge-") && a.len() == 14, "{a}");
        assert_ne!(a, b);
        assert_eq!(a, layout_prefix(Path::new("/tmp/a")));
        assert!(Layout::new(&a).is_ok());
    }

    #[test]
    fn pod_resources_from_the_spec() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"uid": "u1"},
            "spec": {
                "containers": [
                    {"name": "a", "resources": {
                        "requests": {"cpu": "250m", "memory": "64Mi"},
                        "limits": {"cpu": "0.5", "memory": "128Mi"}}},
                    {"name": "b"}
                ],
                "initContainers": [{"name": "i", "resources": {"limits": {"memory": "1G"}}}]
            }
        }))
        .unwrap();
        let r = pod_resources(&pod).unwrap();
        assert_eq!(r.uid, "u1");
        assert_eq!(r.containers[0].cpu_request, Some(250));
        assert_eq!(r.containers[0].cpu_limit, Some(500));
        assert_eq!(r.containers[0].memory_request, Some(64 * MI));
        assert_eq!(r.containers[0].memory_limit, Some(128 * MI));
        assert_eq!(r.containers[1], ContainerResources::default());
        assert_eq!(r.init_containers[0].memory_limit, Some(1_000_000_000));
        assert_eq!(r.qos_class(), kedge_cgroups::QosClass::Burstable);
        let bad: Pod = serde_json::from_value(serde_json::json!({
            "spec": {"containers": [{"name": "a", "resources": {"limits": {"memory": "lots"}}}]}
        }))
        .unwrap();
        assert!(pod_resources(&bad).is_err());
    }

    #[test]
    fn tasks_from_loadavg() {
        assert_eq!(parse_loadavg_tasks("0.20 0.18 0.12 1/80 11206\n"), Some(80));
        assert_eq!(parse_loadavg_tasks("0.20 0.18"), None);
    }

    #[test]
    fn the_launcher_joins_the_cgroup_and_execs_containerd() {
        // A v2 fixture root: the launcher's cgroup.procs file is the fixture's.
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        let cgroups = Cgroups::open(root.path(), Layout::new("kedge-t").unwrap()).unwrap();
        cgroups
            .ensure_hierarchy(&SystemBudgets {
                agent: 32 * MI,
                containerd: 64 * MI,
                system: 112 * MI,
                pods: 200 * MI,
                pods_cpu_shares: 1024,
            })
            .unwrap();
        let config = BudgetConfig {
            cgroup_root: root.path().to_path_buf(),
            proc_root: PathBuf::from("/proc"),
            prefix: "kedge-t".into(),
            budgets: SystemBudgets {
                agent: 32 * MI,
                containerd: 64 * MI,
                system: 112 * MI,
                pods: 200 * MI,
                pods_cpu_shares: 1024,
            },
            memory_capacity: 416 * MI,
            emulated: true,
            eviction: EvictionConfig::from_profile(
                &kedge_hardware_profiles::builtin("rpi-zero-2w").unwrap(),
            ),
            disk: DiskThresholds::default(),
            nodefs: root.path().to_path_buf(),
            imagefs: root.path().to_path_buf(),
            interval: DEFAULT_INTERVAL,
        };
        let budgets = Budgets {
            cgroups,
            config,
            origin: String::new(),
            placed: Mutex::new(Placed::default()),
        };
        let bin = tempfile::tempdir().unwrap();
        let fake = bin.path().join("it's containerd");
        std::fs::write(
            &fake,
            "#!/bin/sh\necho \"args: $*\"\ncat /proc/self/cgroup >/dev/null\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let launcher = budgets.containerd_launcher(&fake, bin.path()).unwrap();
        let out = std::process::Command::new(&launcher)
            .args(["--config", "/x y"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "args: --config /x y\n"
        );
        let procs = std::fs::read_to_string(
            root.path()
                .join("kedge-t/kedge/system/containerd/cgroup.procs"),
        )
        .unwrap();
        assert!(procs.trim().parse::<u32>().is_ok(), "{procs:?}");
        // A containerd that is not there is an error naming it.
        let err = budgets
            .containerd_launcher(Path::new("no-such-containerd-binary"), bin.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"no-such-containerd-binary\""), "{err}");
        // A cgroup it cannot join stops the launcher before containerd runs.
        std::fs::remove_dir_all(root.path().join("kedge-t/kedge/system/containerd")).unwrap();
        let out = std::process::Command::new(&launcher).output().unwrap();
        assert!(!out.status.success());
        assert!(out.stdout.is_empty(), "{out:?}");
    }

    fn pod(name: &str, usage: u64, request: u64) -> PodUsage {
        PodUsage {
            namespace: "default".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            priority: 0,
            critical: false,
            containers: vec![ContainerUsage {
                name: "c".into(),
                usage,
                request,
            }],
        }
    }

    fn zero_monitor() -> Monitor {
        let profile = kedge_hardware_profiles::builtin("rpi-zero-2w").unwrap();
        Monitor::new(
            EvictionConfig::from_profile(&profile),
            DiskThresholds::from_profile(&profile),
        )
    }

    fn observation(available_mib: u64, pods: Vec<PodUsage>) -> Observation {
        Observation {
            memory: NodeMemory {
                capacity: 416 * MI,
                available: available_mib * MI,
                psi: None,
            },
            pods,
            nodefs: Some(FsStats {
                capacity: 1000,
                available: 500,
                inodes: 1000,
                inodes_free: 900,
            }),
            imagefs: None,
            pids: Some(PidStats {
                max: 32768,
                in_use: 200,
            }),
            reclaiming: false,
        }
    }

    #[test]
    fn a_hard_threshold_evicts_the_besteffort_hog_and_waits_for_it() {
        let mut m = zero_monitor();
        let t0 = Instant::now();
        let pods = vec![pod("steady", 20 * MI, 64 * MI), pod("hog", 150 * MI, 0)];
        // Plenty: nothing.
        let v = m.observe(t0, &observation(200, pods.clone()));
        assert_eq!(
            v,
            Verdict {
                memory_pressure: false,
                disk_pressure: false,
                pid_pressure: false,
                evict: None
            }
        );
        // Under the hard 40Mi: the hog goes at once, with no grace.
        let v = m.observe(t0 + Duration::from_secs(5), &observation(30, pods.clone()));
        assert!(v.memory_pressure);
        let e = v.evict.unwrap();
        assert_eq!(e.name, "hog");
        assert_eq!(e.grace_period, Duration::ZERO);
        assert!(
            e.message.starts_with(
                "The node was low on resource: memory. Threshold quantity: 40Mi, available: 30Mi. Container c was using 150Mi"
            ),
            "{}",
            e.message
        );
        // While the evicted pod still runs, nobody else is evicted.
        let mut waiting = observation(30, vec![pod("steady", 20 * MI, 64 * MI)]);
        waiting.reclaiming = true;
        let v = m.observe(t0 + Duration::from_secs(10), &waiting);
        assert!(v.memory_pressure);
        assert_eq!(v.evict, None);
    }

    #[test]
    fn a_soft_threshold_waits_its_grace_period() {
        let mut m = zero_monitor();
        let t0 = Instant::now();
        let pods = vec![pod("hog", 150 * MI, 0)];
        // Under the soft 64Mi: pressure at once, eviction after 30 s.
        let v = m.observe(t0, &observation(50, pods.clone()));
        assert!(v.memory_pressure);
        assert_eq!(v.evict, None);
        let v = m.observe(t0 + Duration::from_secs(30), &observation(50, pods));
        let e = v.evict.unwrap();
        assert_eq!(e.grace_period, Duration::from_secs(30), "at most the max");
    }

    #[test]
    fn disk_and_pid_pressure_follow_their_thresholds_and_linger() {
        let mut m = zero_monitor();
        let t0 = Instant::now();
        // rpi-zero-2w: nodefs.available hard 10%, soft 15%.
        let mut o = observation(200, vec![]);
        o.nodefs = Some(FsStats {
            capacity: 1000,
            available: 140,
            inodes: 1000,
            inodes_free: 900,
        });
        let v = m.observe(t0, &o);
        assert!(v.disk_pressure, "under the soft threshold");
        assert!(!v.memory_pressure && !v.pid_pressure);
        o.nodefs = Some(FsStats {
            capacity: 1000,
            available: 600,
            inodes: 1000,
            inodes_free: 900,
        });
        let v = m.observe(t0 + Duration::from_secs(60), &o);
        assert!(v.disk_pressure, "lingers for the transition period");
        let v = m.observe(t0 + Duration::from_secs(301), &o);
        assert!(!v.disk_pressure);
        // Few pids left.
        o.pids = Some(PidStats {
            max: 32768,
            in_use: 30000,
        });
        let v = m.observe(t0 + Duration::from_secs(302), &o);
        assert!(v.pid_pressure);
        // Thresholds by percent of inodes too.
        let mut m = Monitor::new(
            EvictionConfig::from_profile(&kedge_hardware_profiles::builtin("rpi-zero-2w").unwrap()),
            DiskThresholds {
                hard: vec![(Signal::NodefsInodesFree, Threshold::Percent(5.0))],
                soft: vec![],
            },
        );
        let mut o = observation(200, vec![]);
        o.nodefs = Some(FsStats {
            capacity: 1000,
            available: 900,
            inodes: 1000,
            inodes_free: 40,
        });
        assert!(m.observe(t0, &o).disk_pressure);
    }

    #[test]
    fn disk_thresholds_from_the_profile() {
        let p = kedge_hardware_profiles::builtin("rpi-zero-2w").unwrap();
        let d = DiskThresholds::from_profile(&p);
        assert_eq!(
            d.hard,
            [(Signal::NodefsAvailable, Threshold::Percent(10.0))]
        );
        assert_eq!(
            d.soft,
            [(Signal::NodefsAvailable, Threshold::Percent(15.0))]
        );
    }
}
