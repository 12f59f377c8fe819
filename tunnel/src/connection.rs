//! One established, mutually authenticated tunnel connection, over either transport.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;

use crate::error::TunnelError;
use crate::machine::Transport;
use crate::mux::MuxConnection;
use crate::stream::{IoCounters, RecvStream, SendStream};

#[derive(Debug, Clone)]
enum Inner {
    Quic {
        conn: quinn::Connection,
        // Keeps a client's own endpoint alive as long as the connection.
        _endpoint: Option<quinn::Endpoint>,
    },
    Mux(MuxConnection),
}

/// A live tunnel connection. Cheap to clone. Either side may open streams.
///
/// On QUIC, the peer's `accept_bi` sees a new stream only once the opener has written to
/// it (QUIC announces streams with their first frame); write before you wait to read.
#[derive(Debug, Clone)]
pub struct TunnelConnection {
    inner: Inner,
    remote: SocketAddr,
    peer_certs: Arc<Vec<CertificateDer<'static>>>,
    counters: Arc<IoCounters>,
}

impl TunnelConnection {
    pub(crate) fn quic(
        conn: quinn::Connection,
        endpoint: Option<quinn::Endpoint>,
        peer_certs: Vec<CertificateDer<'static>>,
        counters: Arc<IoCounters>,
    ) -> Self {
        TunnelConnection {
            remote: conn.remote_address(),
            inner: Inner::Quic {
                conn,
                _endpoint: endpoint,
            },
            peer_certs: Arc::new(peer_certs),
            counters,
        }
    }

    pub(crate) fn mux(
        conn: MuxConnection,
        remote: SocketAddr,
        peer_certs: Vec<CertificateDer<'static>>,
        counters: Arc<IoCounters>,
    ) -> Self {
        TunnelConnection {
            inner: Inner::Mux(conn),
            remote,
            peer_certs: Arc::new(peer_certs),
            counters,
        }
    }

    /// The transport this connection runs on.
    pub fn transport(&self) -> Transport {
        match self.inner {
            Inner::Quic { .. } => Transport::Quic,
            Inner::Mux(_) => Transport::Tcp,
        }
    }

    /// The peer's address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.remote
    }

    /// The peer's verified certificate chain, leaf first (DER). On the server this is the
    /// node's client certificate, from which the caller derives the node's identity.
    pub fn peer_certificates(&self) -> &[CertificateDer<'static>] {
        &self.peer_certs
    }

    /// The peer's verified leaf certificate (DER).
    pub fn peer_certificate(&self) -> Option<&[u8]> {
        self.peer_certs.first().map(|c| c.as_ref())
    }

    /// Opens a bidirectional stream to the peer.
    pub async fn open_bi(&self) -> Result<(SendStream, RecvStream), TunnelError> {
        let counters = self.counters.clone();
        let pair = match &self.inner {
            Inner::Quic { conn, .. } => {
                let (send, recv) = conn.open_bi().await?;
                (
                    SendStream::quic(send, counters.clone()),
                    RecvStream::quic(recv, counters.clone()),
                )
            }
            Inner::Mux(mux) => {
                let (send, recv) = mux.open_bi()?;
                (
                    SendStream::mux(send, counters.clone()),
                    RecvStream::mux(recv, counters.clone()),
                )
            }
        };
        IoCounters::add(&counters.streams_opened, 1);
        Ok(pair)
    }

    /// Waits for the next stream the peer opens.
    pub async fn accept_bi(&self) -> Result<(SendStream, RecvStream), TunnelError> {
        let counters = self.counters.clone();
        let pair = match &self.inner {
            Inner::Quic { conn, .. } => {
                let (send, recv) = conn.accept_bi().await?;
                (
                    SendStream::quic(send, counters.clone()),
                    RecvStream::quic(recv, counters.clone()),
                )
            }
            Inner::Mux(mux) => {
                let (send, recv) = mux.accept_bi().await?;
                (
                    SendStream::mux(send, counters.clone()),
                    RecvStream::mux(recv, counters.clone()),
                )
            }
        };
        IoCounters::add(&counters.streams_accepted, 1);
        Ok(pair)
    }

    /// Closes the connection and every stream on it.
    pub fn close(&self) {
        match &self.inner {
            Inner::Quic { conn, .. } => conn.close(0u32.into(), b"closed"),
            Inner::Mux(mux) => mux.close(),
        }
    }

    /// Why the connection ended, if it has.
    pub fn close_reason(&self) -> Option<TunnelError> {
        match &self.inner {
            Inner::Quic { conn, .. } => conn.close_reason().map(TunnelError::from),
            Inner::Mux(mux) => mux.close_reason().map(TunnelError::from),
        }
    }

    /// Waits until the connection ends, and returns why.
    pub async fn closed(&self) -> TunnelError {
        match &self.inner {
            Inner::Quic { conn, .. } => TunnelError::from(conn.closed().await),
            Inner::Mux(mux) => TunnelError::from(mux.closed().await),
        }
    }
}
