//! kedge-agent: the device side of kedge.
//!
//! - [`agent`]: the main loop: join, dial, and on each connection register the node,
//!   sync, report, renew the Lease and the certificate.
//! - [`budgets`]: the cgroup memory budgets of the agent, containerd and pods (from the
//!   hardware profile), and the eviction manager.
//! - [`bootstrap`]: join a control plane: parse the token, download the CA and check its
//!   hash, generate a key and a CSR, trade them for a node certificate, keep it renewed.
//! - [`store`]: the local SQLite store of the node's desired state and the last revision
//!   acked to the server, so that a restart, online or offline, resumes from it.
//! - [`node_runtime`]: starts the container runtime (its own containerd, airgap images,
//!   the pause rootfs) and the pod manager.
//! - [`images`]: the node's image list and image GC by disk thresholds.
//! - [`node_status`]: the live part of the Node's status: pressure conditions, images.
//! - [`pods`]: the pod manager (the kubelet part): runs the node's pods on containerd.
//! - [`streams`]: what the server may call on the agent over reverse streams (logs,
//!   exec, port-forward, stats).
//! - [`sync`]: follows the server's `Node.Sync` stream into the store and acks.
//! - [`tokens`]: ServiceAccount tokens for pods' projected volumes, requested over the
//!   tunnel, kept in the store for offline restarts, renewed at 80% of their life.
//! - [`report`]: batches node status, pod statuses, events and lease renewals for
//!   `Node.Report`.
//!
//! Architecture invariant: the agent never listens on the network. Everything it says
//! or hears crosses the tunnel it dialed.

pub mod agent;
pub mod bootstrap;
pub mod budgets;
pub mod duration;
pub mod images;
pub mod node_runtime;
pub mod node_status;
pub mod pods;
pub mod report;
pub mod store;
pub mod streams;
pub mod sync;
pub mod tokens;
