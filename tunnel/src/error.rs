//! The crate's errors.

use std::io;
use std::net::SocketAddr;

use crate::machine::{FailureReason, Transport};

/// A configuration value that does not make sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid tunnel config: {field} {reason}")]
pub struct ConfigError {
    /// The field at fault.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// A problem with certificates or keys, found while building a TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM input could not be parsed.
    #[error("cannot parse {what}: {reason}")]
    Pem {
        /// Which input.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A PEM input held no certificate or key.
    #[error("{what} holds no {expected}")]
    Empty {
        /// Which input.
        what: &'static str,
        /// What was looked for.
        expected: &'static str,
    },
    /// rustls refused the configuration.
    #[error("tls configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client-certificate verifier could not be built.
    #[error("client ca: {0}")]
    Verifier(String),
    /// quinn refused the rustls configuration.
    #[error("quic tls configuration: {0}")]
    Quic(String),
    /// The server name is not a valid DNS name or IP address.
    #[error("invalid server name {0:?}")]
    ServerName(String),
}

/// Why the TCP stream multiplexer stopped. Cloneable, so every stream can report it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MuxError {
    /// The peer broke the framing or the flow-control rules (tampered or truncated data).
    #[error("mux protocol violation: {0}")]
    Protocol(String),
    /// The byte stream underneath failed.
    #[error("mux transport: {kind}: {message}")]
    Io {
        /// The `io::ErrorKind` of the failure.
        kind: io::ErrorKind,
        /// The error's text.
        message: String,
    },
    /// Nothing came from the peer for the idle timeout.
    #[error("mux idle timeout: nothing received for {0:?}")]
    IdleTimeout(std::time::Duration),
    /// The peer said goodbye or closed the byte stream.
    #[error("mux closed by peer")]
    ClosedByPeer,
    /// This side closed the connection.
    #[error("mux closed locally")]
    ClosedLocally,
    /// The TLS layer refused the peer or was refused (an alert, a certificate problem).
    #[error("mux transport tls: {0}")]
    Tls(String),
    /// Too many streams are open.
    #[error("too many open streams (limit {0})")]
    TooManyStreams(u32),
}

impl MuxError {
    pub(crate) fn from_io(err: &io::Error) -> MuxError {
        // rustls reports through io::Error; tell a refusal apart from a corrupted record.
        if let Some(tls) = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
        {
            let refused = matches!(
                tls,
                rustls::Error::AlertReceived(_)
                    | rustls::Error::InvalidCertificate(_)
                    | rustls::Error::NoCertificatesPresented
                    | rustls::Error::PeerIncompatible(_)
            );
            if refused {
                return MuxError::Tls(tls.to_string());
            }
        }
        MuxError::Io {
            kind: err.kind(),
            message: err.to_string(),
        }
    }

    /// The failure reason this counts as.
    pub fn reason(&self) -> FailureReason {
        match self {
            MuxError::Protocol(_) => FailureReason::Protocol,
            // rustls reports a bad record (tampered ciphertext) as InvalidData.
            MuxError::Io {
                kind: io::ErrorKind::InvalidData,
                ..
            } => FailureReason::Protocol,
            MuxError::Io {
                kind: io::ErrorKind::UnexpectedEof,
                ..
            } => FailureReason::Closed,
            MuxError::Io { .. } => FailureReason::Io,
            MuxError::IdleTimeout(_) => FailureReason::Idle,
            MuxError::Tls(_) => FailureReason::Tls,
            MuxError::ClosedByPeer | MuxError::ClosedLocally => FailureReason::Closed,
            MuxError::TooManyStreams(_) => FailureReason::Protocol,
        }
    }
}

/// Errors of the tunnel's IO layer.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Certificates or keys are unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A listening socket could not be opened.
    #[error("cannot listen on {transport} {addr}: {source}")]
    Bind {
        /// Which listener.
        transport: Transport,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// A dial did not complete in time.
    #[error("{transport} connect to {addr} timed out")]
    Timeout {
        /// The transport dialed.
        transport: Transport,
        /// The address dialed.
        addr: SocketAddr,
    },
    /// A TCP connect or a TLS handshake failed.
    #[error("{transport} connect to {addr}: {source}")]
    Connect {
        /// The transport dialed.
        transport: Transport,
        /// The address dialed.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// quinn could not start a connection.
    #[error("quic connect to {addr}: {source}")]
    QuicConnect {
        /// The address dialed.
        addr: SocketAddr,
        /// Why.
        source: quinn::ConnectError,
    },
    /// A QUIC connection failed or ended.
    #[error("quic connection: {0}")]
    Quic(#[from] quinn::ConnectionError),
    /// The TCP stream multiplexer stopped.
    #[error(transparent)]
    Mux(#[from] MuxError),
    /// The peer presented no certificate (only possible on adopted TLS streams).
    #[error("peer presented no client certificate")]
    NoPeerCertificate,
    /// The peer did not negotiate the tunnel's ALPN protocol.
    #[error("peer did not negotiate alpn {expected:?}")]
    Alpn {
        /// The protocol expected.
        expected: &'static str,
    },
    /// Another I/O error.
    #[error("tunnel io: {0}")]
    Io(#[from] io::Error),
    /// The tunnel was shut down.
    #[error("tunnel shut down")]
    Shutdown,
}

impl TunnelError {
    /// The failure reason this counts as in the connection state machine.
    pub fn reason(&self) -> FailureReason {
        match self {
            TunnelError::Timeout { .. } => FailureReason::Timeout,
            TunnelError::Connect { source, .. } | TunnelError::Bind { source, .. } => {
                io_reason(source)
            }
            TunnelError::Io(source) => io_reason(source),
            TunnelError::QuicConnect { .. } => FailureReason::Unreachable,
            TunnelError::Quic(err) => match err {
                quinn::ConnectionError::TimedOut => FailureReason::Idle,
                quinn::ConnectionError::TransportError(t) if is_crypto_code(t.code) => {
                    FailureReason::Tls
                }
                quinn::ConnectionError::ConnectionClosed(c) if is_crypto_code(c.error_code) => {
                    FailureReason::Tls
                }
                quinn::ConnectionError::TransportError(_) => FailureReason::Protocol,
                quinn::ConnectionError::ApplicationClosed(_)
                | quinn::ConnectionError::ConnectionClosed(_)
                | quinn::ConnectionError::Reset
                | quinn::ConnectionError::LocallyClosed => FailureReason::Closed,
                _ => FailureReason::Io,
            },
            TunnelError::Mux(err) => err.reason(),
            TunnelError::Tls(_) | TunnelError::NoPeerCertificate | TunnelError::Alpn { .. } => {
                FailureReason::Tls
            }
            TunnelError::Config(_) | TunnelError::Shutdown => FailureReason::Io,
        }
    }
}

fn is_crypto_code(code: quinn::TransportErrorCode) -> bool {
    // QUIC maps TLS alerts to transport error codes 0x100..=0x1ff (RFC 9001 §4.8).
    u64::from(code) & !0xff == 0x100
}

fn io_reason(err: &io::Error) -> FailureReason {
    match err.kind() {
        io::ErrorKind::ConnectionRefused
        | io::ErrorKind::HostUnreachable
        | io::ErrorKind::NetworkUnreachable
        | io::ErrorKind::AddrNotAvailable => FailureReason::Unreachable,
        io::ErrorKind::TimedOut => FailureReason::Timeout,
        io::ErrorKind::InvalidData => FailureReason::Tls,
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => FailureReason::Closed,
        _ => FailureReason::Io,
    }
}
