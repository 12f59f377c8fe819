//! kedge-tunnel: the link an edge agent dials to its control plane.
//!
//! QUIC (quinn) over UDP, with a TCP+TLS fallback for networks that block UDP; mutual TLS
//! (rustls, ring provider) on both; keepalive and idle timeouts; reconnect with jittered
//! exponential backoff; bidirectional streams opened by either side.
//!
//! - [`machine`] and [`backoff`] are the sans-IO core: the agent's connection state machine
//!   and the backoff, with time passed in and randomness injected, tested on simulated time.
//! - [`mux`] multiplexes streams over one TLS-over-TCP connection (QUIC has its own).
//! - [`TunnelServer`] listens on UDP and TCP and hands out verified [`TunnelConnection`]s
//!   with the peer's certificate; [`TunnelClient`] dials, falls back, reconnects, and
//!   exposes its state and counters.
//!
//! Notes for callers:
//! - The server hands each connection's verified peer certificate (DER) to the caller
//!   ([`TunnelConnection::peer_certificate`]); mapping it to a node is the caller's job.
//! - TCP 6443 is shared with the Kubernetes API in `kedge server`: either give the tunnel
//!   its own TCP port, or let the API listener offer [`ALPN`] and pass such connections to
//!   [`TunnelServer::adopt_tls`] (see the `server` module).
//! - On QUIC a new stream reaches the peer's `accept_bi` with its first bytes; openers
//!   write first (the mux announces streams at once, so this holds on both transports).
//! - Keepalive, idle timeout, stream limit and stream window come from [`TunnelConfig`]
//!   (the hardware profile) and apply to quinn's transport config and to the mux alike.
//!
//! Architecture invariant: this crate knows nothing of Kubernetes. It must not depend on
//! the apiserver, the datastore, `kedge-pki` (except in tests) or any Kubernetes type crate;
//! identities are certificates (DER) that the caller interprets.

pub mod backoff;
mod client;
mod config;
mod connection;
mod error;
pub mod machine;
pub mod mux;
mod server;
mod stream;
mod tls;

pub use backoff::{Backoff, Jitter};
pub use client::{ClientOptions, TunnelClient};
pub use config::{ALPN, DEFAULT_PORT, MUX_FRAME_LIMIT, TunnelConfig};
pub use connection::TunnelConnection;
pub use error::{ConfigError, MuxError, TlsError, TunnelError};
pub use machine::{Counters, FailureCounts, FailureReason, State, Transport};
pub use server::{ServerOptions, TunnelServer};
pub use stream::{RecvStream, SendStream};
pub use tls::{ClientAuth, ClientIdentity, ClientTls, ServerTls, ServerVerification};
