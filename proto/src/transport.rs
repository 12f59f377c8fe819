//! gRPC over the tunnel.
//!
//! Each tunnel stream carries one HTTP/2 connection, and tonic multiplexes calls inside
//! it. A side that *calls* a service opens the stream ([`channel`]); a side that *serves*
//! one accepts streams ([`incoming`]) and hands them to tonic's `serve_with_incoming`.
//! The agent calls `Node` and serves `AgentStreams`; the server does the opposite, so the
//! reverse streams for logs, exec and port-forward need no inbound connection to the
//! agent.
//!
//! A channel opens its stream lazily, on the first call, and opens a new one if that
//! stream fails while the tunnel connection lives. When the tunnel connection closes, the
//! channel's calls fail and the caller builds a new channel on the next connection.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use hyper_util::rt::TokioIo;
use kedge_tunnel::{RecvStream, SendStream, TunnelClient, TunnelConnection, TunnelError};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint};

/// The largest gRPC message either side accepts, in bytes. A full resync of a node with
/// many pods is the largest message; 64 MiB is far above what a device holds.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// One tunnel stream as a single read/write object, as HTTP/2 wants it.
#[derive(Debug)]
pub struct TunnelIo {
    send: SendStream,
    recv: RecvStream,
    remote: SocketAddr,
}

impl TunnelIo {
    /// Joins the two halves of a stream of a connection to `remote`.
    pub fn new(send: SendStream, recv: RecvStream, remote: SocketAddr) -> TunnelIo {
        TunnelIo { send, recv, remote }
    }
}

impl AsyncRead for TunnelIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.recv).poll_read(cx, buf)
    }
}

impl AsyncWrite for TunnelIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.send).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.send).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.send).poll_shutdown(cx)
    }
}

/// What tonic records about the stream a request came in on: the tunnel peer's address.
#[derive(Clone, Copy, Debug)]
pub struct StreamInfo {
    pub remote: SocketAddr,
}

impl Connected for TunnelIo {
    type ConnectInfo = StreamInfo;

    fn connect_info(&self) -> StreamInfo {
        StreamInfo {
            remote: self.remote,
        }
    }
}

/// The streams the agent opens on `connection`, for `Server::serve_with_incoming` on the
/// server. The stream ends when the connection closes. (On the agent, the tunnel client
/// takes the server's streams itself: use [`agent_incoming`].)
pub fn incoming(
    connection: TunnelConnection,
) -> impl Stream<Item = Result<TunnelIo, TunnelError>> + Send + 'static {
    futures::stream::unfold(Some(connection), |state| async move {
        let connection = state?;
        match connection.accept_bi().await {
            Ok((send, recv)) => {
                let io = TunnelIo::new(send, recv, connection.remote_addr());
                Some((Ok(io), Some(connection)))
            }
            Err(e) => {
                tracing::debug!(error = %e, "tunnel connection closed; no more streams to serve");
                None
            }
        }
    })
}

/// The streams the server opens to the agent, on whichever connection the client has,
/// for the agent's `Server::serve_with_incoming`; it spans reconnects and ends when the
/// client shuts down.
pub fn agent_incoming(
    client: Arc<TunnelClient>,
) -> impl Stream<Item = Result<TunnelIo, TunnelError>> + Send + 'static {
    futures::stream::unfold(Some(client), |state| async move {
        let client = state?;
        match client.accept_bi().await {
            Ok((send, recv)) => {
                let remote = client
                    .connection()
                    .map(|c| c.remote_addr())
                    .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
                Some((Ok(TunnelIo::new(send, recv, remote)), Some(client)))
            }
            Err(e) => {
                tracing::debug!(error = %e, "tunnel client stopped; no more streams to serve");
                None
            }
        }
    })
}

/// A tonic channel whose HTTP/2 connection is a stream opened on `connection`.
pub fn channel(connection: TunnelConnection) -> Channel {
    let connector = tower::service_fn(move |_: http::Uri| {
        let connection = connection.clone();
        async move {
            let (send, recv) = connection.open_bi().await?;
            let io = TunnelIo::new(send, recv, connection.remote_addr());
            Ok::<_, TunnelError>(TokioIo::new(io))
        }
    });
    // The URI is never dialled: the connector opens a tunnel stream instead.
    Endpoint::from_static("http://kedge.tunnel").connect_with_connector_lazy(connector)
}
