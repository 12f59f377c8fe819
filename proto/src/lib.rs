//! kedge-proto: the protocol between `kedge-agent` and `kedge server`.
//!
//! The messages and services live in `proto/kedge/link/v1/link.proto`; [`v1`] is the
//! code tonic and prost generate from it. Four services:
//!
//! - `Bootstrap` (server side, connections without a client certificate): download the
//!   CA, then trade a join token and a CSR for a node certificate.
//! - `Node` (server side, connections with a node certificate): the per-node desired
//!   state sync (deltas by revision, acks, resume), batched reports, certificate renewal.
//! - `NodeTokens` (server side, node connections, next to `Node`): service-account tokens
//!   for the node's own pods.
//! - `AgentStreams` (agent side, called by the server over reverse streams): logs,
//!   exec/attach, port-forward and the stats summary. A server also serves it to the
//!   other servers of its cluster, relaying to the agents whose tunnels it holds.
//!
//! gRPC runs over the tunnel: see [`transport`] for serving tonic on streams a peer
//! opens and for a tonic channel whose connections are streams this side opens.
//!
//! Architecture invariant: this crate knows the wire format and the transport glue only.
//! What a message means (which objects a node may see, how a report is written) is the
//! business of the server's node link and of the agent.

/// Generated from `kedge.link.v1`.
#[allow(missing_debug_implementations, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("kedge.link.v1");
}

pub mod token;

pub mod transport;
