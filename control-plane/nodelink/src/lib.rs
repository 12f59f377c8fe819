//! kedge-nodelink: the server end of the link to edge agents.
//!
//! An agent dials `kedge server` over the tunnel (QUIC on UDP 6443, or TLS over TCP)
//! and speaks the `kedge.link.v1` protocol (kedge-proto) on it. This crate is what
//! answers:
//!
//! - [`cluster`]: the secrets every server of a cluster shares (CAs, service-account
//!   key), sealed with the server token in the datastore.
//! - [`tokens`]: join tokens, stored as upstream's bootstrap-token Secrets in
//!   kube-system, with a TTL, and revocable by deleting them; and the cluster's server
//!   token (`--token`), which is one of them.
//! - [`bootstrap`]: the `Bootstrap` service (CA download, join: token + node password +
//!   CSR → node certificate) and certificate renewal.
//! - [`nodepassword`]: K3s's node-password rule: a node name belongs to the first
//!   machine that joined with it.
//! - [`sync`]: the per-node desired state (its pods, the ConfigMaps and Secrets they use,
//!   Services and EndpointSlices) as deltas keyed by revision, resumable after a
//!   reconnect.
//! - [`report`]: node status, pod statuses, events and lease renewals from an agent,
//!   written through the registry after checking that they are the node's own.
//! - [`lease`]: the node's Lease, renewed by the server while the node's tunnel is up
//!   (the agent sends no renewals).
//!
//! - [`service`]: the `Node` and `NodeTokens` services of one connection, bound to the
//!   node its certificate names (`NodeTokens`: service-account tokens for the node's own
//!   pods).
//! - [`link`]: the tunnel listener, which serves `Bootstrap` or `Node` on each connection
//!   by its certificate, keeps the live tunnels for reverse streams, and records in the
//!   datastore which server holds which node.
//!
//! - [`streams`]: the API server's logs, exec, port-forward and stats, as reverse
//!   `AgentStreams` calls over the node's tunnel, or through the server that holds it.
//! - [`peer`]: servers of one cluster reaching each other's agents (ALPN
//!   `kedge-peer/1`, server-peer certificates).
//!
//! Architecture invariant: every call on a `Node` connection is scoped to the node named
//! by the connection's verified client certificate; nothing an agent sends can name
//! another node's objects. A peer connection serves only a certificate of the cluster's
//! servers, and relays only to tunnels its own server holds (never onward).
//!
//! Must not depend on: the scheduler, the controllers, a datastore backend.

pub mod bootstrap;
pub mod cluster;
pub mod lease;
pub mod link;
pub mod nodepassword;
pub mod peer;
pub mod report;
pub mod service;
pub mod streams;
pub mod sync;
pub mod tokens;

pub use link::{LinkError, LinkOptions, NodeLink};
