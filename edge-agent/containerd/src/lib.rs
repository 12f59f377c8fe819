//! kedge-containerd: the agent's containerd.
//!
//! - [`supervisor`]: runs the agent's own containerd (generated config, own root, state and
//!   socket under the agent's data dir), restarts it with backoff when it dies, stops it on
//!   shutdown. [`Endpoint`] is either that or an existing containerd's socket.
//! - [`Client`]: containerd's native gRPC API (containerd-client) in the `k8s.io` namespace:
//!   image import (OCI layout and docker-archive tarballs, the airgap path), registry pulls
//!   with K3s `registries.yaml` mirrors and auth, image listing and GC by disk thresholds,
//!   containers, tasks with FIFO stdio (and terminals), exec with resize, and a stream of
//!   exit events.
//! - [`crilog`]: CRI-format container log files with rotation, and the reader `kubectl
//!   logs` is served from.
//! - [`testimage`]: builds a busybox image tarball from the host's static busybox, for
//!   tests and for users who need an image with no registry in reach.
//!
//! Architecture invariant: this crate knows nothing of Pods, the API server or CNI. It takes
//! OCI specs as given and never builds one from a Pod; it must not depend on kube,
//! k8s-openapi or any other kedge crate.

mod client;
mod content;
pub mod crilog;
mod error;
mod images;
mod import;
pub mod pull;
pub mod reference;
pub mod supervisor;
mod tasks;
pub mod testimage;

pub use client::{Client, ClientConfig, K8S_NAMESPACE, RUNC_V2, SHIM_GROUP_ANNOTATION};
pub use content::{chain_ids, sha256_digest};
pub use error::{Error, Result};
pub use images::{
    FsUsage, GcReport, Image, ImageConfig, ImageRef, LAST_USED_LABEL, MINIMUM_GC_AGE, PINNED_LABEL,
    bytes_to_free, gc_candidates,
};
pub use import::{IMPORT_STATE, ImportDirReport, Progress};
pub use pull::{PullPolicy, Registries};
pub use supervisor::{ContainerdConfig, ContainerdState, Endpoint, Supervisor};
pub use tasks::{ContainerInfo, ExecSession, Exit, ExitEvent, TaskIo, TaskState, TaskStreams};
