//! kedge-podspec: a Pod and what it references, turned into what runc runs —
//! OCI runtime specs for the pod's sandbox and containers, resolved
//! environments, and volume directories — as the upstream kubelet
//! (`pkg/kubelet/kuberuntime`, `pkg/volume`) and containerd's CRI plugin
//! build them together.
//!
//! The pieces, in the order the pod manager uses them:
//!
//! 1. [`prepare_volumes`] writes the pod's volumes under
//!    `<pod_dir>/volumes/<plugin>/<name>` (emptyDir, configMap, secret,
//!    downwardAPI, projected with the ServiceAccount token; hostPath checked in
//!    place); [`update_volumes`] re-applies changed ConfigMaps and Secrets
//!    atomically on a live pod; [`cleanup_volumes`] removes them.
//! 2. [`sandbox_spec`] is the pause container's spec.
//! 3. For each container: [`resolve_env`] (env, envFrom, valueFrom, Service
//!    links), [`volume_mounts`] (subPath, readOnly, propagation),
//!    [`oom_score_adj`], then [`container_spec`].
//!
//! Quantities ([`Quantity`]), QoS classes ([`qos_class`]) and the cgroup
//! numbers ([`container_resources`]) are exposed for the pod manager's own
//! bookkeeping.
//!
//! Architecture invariant: this crate does no I/O beyond the volume
//! directories under the pod directory it is given (and, for volumes that ask
//! for it, hostPath checks, tmpfs mounts through [`Mounter`], and reading
//! `/dev` in [`host_devices`]). It must not depend on containerd, CNI, the
//! agent or the control plane: it takes typed API objects in and gives OCI
//! specs and files out.

mod caps;
mod devices;
mod env;
mod expand;
mod fieldpath;
mod mounts;
mod node;
mod quantity;
mod resources;
mod spec;
mod user;
pub mod volumes;

pub use caps::{ALL_CAPABILITIES, CapError, DEFAULT_CAPABILITIES, capability_set};
pub use devices::host_devices;
pub use env::{
    EnvError, EnvSources, EnvVar, ResolvedEnv, is_env_var_name, resolve_env, service_env,
};
pub use expand::expand;
pub use fieldpath::FieldError;
pub use mounts::{MountError, volume_mounts};
pub use node::NodeInfo;
pub use quantity::{Quantity, QuantityError};
pub use resources::{
    BEST_EFFORT_OOM_SCORE_ADJ, CPU_PERIOD_US, GUARANTEED_OOM_SCORE_ADJ, QosClass,
    SANDBOX_OOM_SCORE_ADJ, container_resources, is_node_critical, milli_cpu_to_quota,
    milli_cpu_to_shares, oom_score_adj, pod_memory_limit, qos_class, restrict_oom_score_adj,
};
pub use spec::{
    ContainerInput, DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS, ImageConfig, PAUSE_ARGS,
    SandboxInput, SandboxRef, SpecError, container_spec, pod_hostname, process_args, sandbox_spec,
};
pub use user::{ProcessUser, UserError, process_user};
pub use volumes::{
    HostMounter, Mounter, PlainDirs, PreparedVolume, TokenProjection, VolumeError, VolumeFailure,
    VolumeKind, VolumeSources, VolumeUpdate, cleanup_volumes, prepare_termination_log,
    prepare_volumes, token_projections, update_volumes,
};
