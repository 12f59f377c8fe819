//! The server end: QUIC on UDP and TLS-over-TCP with the mux, both with mutual TLS.
//!
//! The TCP fallback and the Kubernetes API share port 6443 in `kedge server`. Two ways to
//! serve it, both supported here:
//! - on its own TCP port (`ServerOptions::tcp_addr`), when the API listens elsewhere;
//! - behind the API listener: the apiserver's TLS configuration also offers the ALPN
//!   protocol [`crate::ALPN`] (`kedge-tunnel/1`) next to `h2` and `http/1.1`; a connection
//!   that negotiates it is handed over with [`TunnelServer::adopt_tls`], which requires a
//!   client certificate signed by the client CA (the API listener lets requests without one
//!   through to its own authentication). Agents always offer only `kedge-tunnel/1`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, mpsc, watch};
use tracing::{Instrument, debug, info_span, warn};

use crate::config::{ALPN, TunnelConfig};
use crate::connection::TunnelConnection;
use crate::error::TunnelError;
use crate::machine::Transport;
use crate::mux::{MuxConfig, MuxConnection, Role};
use crate::stream::IoCounters;
use crate::tls::{ClientAuth, ServerTls};

/// Connections handshaken but not yet taken with `accept`.
const ACCEPT_BACKLOG: usize = 256;

/// What a [`TunnelServer`] listens on, and with which certificates.
#[derive(Debug)]
pub struct ServerOptions {
    /// UDP address for QUIC; `None` disables QUIC.
    pub quic_addr: Option<SocketAddr>,
    /// TCP address for the TLS fallback; `None` when the fallback only arrives through
    /// [`TunnelServer::adopt_tls`] (shared with the API listener).
    pub tcp_addr: Option<SocketAddr>,
    /// Timers and limits.
    pub config: TunnelConfig,
    /// Certificates.
    pub tls: ServerTls,
}

/// The server end of the tunnel. Yields authenticated [`TunnelConnection`]s from both
/// transports through [`TunnelServer::accept`]. Dropping it closes everything.
#[derive(Debug)]
pub struct TunnelServer {
    endpoint: Option<quinn::Endpoint>,
    quic_addr: Option<SocketAddr>,
    tcp_addr: Option<SocketAddr>,
    tls: Arc<rustls::ServerConfig>,
    client_auth: ClientAuth,
    mux: MuxConfig,
    handshake_timeout: Duration,
    incoming_tx: mpsc::Sender<TunnelConnection>,
    incoming_rx: Mutex<mpsc::Receiver<TunnelConnection>>,
    stop: watch::Sender<bool>,
    counters: Arc<IoCounters>,
}

impl TunnelServer {
    /// Validates the options, binds the sockets and starts accepting.
    pub async fn bind(options: ServerOptions) -> Result<TunnelServer, TunnelError> {
        options.config.validate()?;
        let tls = options.tls.rustls_config()?;
        let (stop, _) = watch::channel(false);
        let (incoming_tx, incoming_rx) = mpsc::channel(ACCEPT_BACKLOG);
        let mut server = TunnelServer {
            endpoint: None,
            quic_addr: None,
            tcp_addr: None,
            tls: tls.clone(),
            client_auth: options.tls.client_auth,
            mux: MuxConfig::from(&options.config),
            handshake_timeout: options.config.tcp_connect_timeout,
            incoming_tx,
            incoming_rx: Mutex::new(incoming_rx),
            stop,
            counters: Arc::new(IoCounters::default()),
        };

        if let Some(addr) = options.quic_addr {
            let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls.as_ref().clone())
                .map_err(|e| crate::error::TlsError::Quic(e.to_string()))?;
            let mut quic = quinn::ServerConfig::with_crypto(Arc::new(crypto));
            quic.transport_config(Arc::new(transport_config(&options.config)?));
            let endpoint =
                quinn::Endpoint::server(quic, addr).map_err(|source| TunnelError::Bind {
                    transport: Transport::Quic,
                    addr,
                    source,
                })?;
            server.quic_addr = Some(endpoint.local_addr()?);
            server.spawn(quic_accept_loop(
                endpoint.clone(),
                server.incoming_tx.clone(),
                server.counters.clone(),
                server.handshake_timeout,
                server.client_auth,
            ));
            server.endpoint = Some(endpoint);
        }

        if let Some(addr) = options.tcp_addr {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| TunnelError::Bind {
                    transport: Transport::Tcp,
                    addr,
                    source,
                })?;
            server.tcp_addr = Some(listener.local_addr()?);
            server.spawn(tcp_accept_loop(listener, server.handle()));
        }
        Ok(server)
    }

    /// The UDP address QUIC listens on.
    pub fn quic_addr(&self) -> Option<SocketAddr> {
        self.quic_addr
    }

    /// The TCP address the fallback listens on.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// The rustls configuration both transports use; an API listener that shares its port
    /// can take the client verifier and ALPN from it.
    pub fn rustls_config(&self) -> Arc<rustls::ServerConfig> {
        self.tls.clone()
    }

    /// Streams and payload bytes over all connections so far (the other fields, which
    /// count the agent's dials, stay zero on the server).
    pub fn counters(&self) -> crate::machine::Counters {
        crate::machine::Counters {
            streams_opened: IoCounters::get(&self.counters.streams_opened),
            streams_accepted: IoCounters::get(&self.counters.streams_accepted),
            bytes_sent: IoCounters::get(&self.counters.bytes_sent),
            bytes_received: IoCounters::get(&self.counters.bytes_received),
            ..Default::default()
        }
    }

    /// The next authenticated connection; `None` after shutdown.
    pub async fn accept(&self) -> Option<TunnelConnection> {
        let mut stop = self.stop.subscribe();
        let mut rx = self.incoming_rx.lock().await;
        tokio::select! {
            conn = rx.recv() => conn,
            _ = stop.wait_for(|s| *s) => None,
        }
    }

    /// Takes over a TLS connection accepted by another listener (the API server) that
    /// negotiated [`ALPN`]. The peer must have presented a verified client certificate,
    /// unless the server allows unauthenticated clients ([`ClientAuth`]).
    pub fn adopt_tls<S>(
        &self,
        stream: tokio_rustls::server::TlsStream<S>,
        remote: SocketAddr,
    ) -> Result<(), TunnelError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (_, session) = stream.get_ref();
        if session.alpn_protocol() != Some(ALPN) {
            return Err(TunnelError::Alpn {
                expected: "kedge-tunnel/1",
            });
        }
        let certs = peer_certs_or_refuse(session.peer_certificates(), self.client_auth)?;
        self.handle().serve_mux(stream, remote, certs);
        Ok(())
    }

    /// Closes every connection and stops listening. Also done on drop.
    pub fn shutdown(&self) {
        if let Some(endpoint) = &self.endpoint {
            endpoint.close(0u32.into(), b"server shutdown");
        }
        self.stop.send_replace(true);
    }

    fn handle(&self) -> Handle {
        Handle {
            tls: self.tls.clone(),
            client_auth: self.client_auth,
            mux: self.mux,
            handshake_timeout: self.handshake_timeout,
            incoming_tx: self.incoming_tx.clone(),
            stop: self.stop.subscribe(),
            counters: self.counters.clone(),
        }
    }

    fn spawn<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        spawn_until(self.stop.subscribe(), task);
    }
}

impl Drop for TunnelServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Runs `task` until it ends or the server stops.
fn spawn_until<F>(mut stop: watch::Receiver<bool>, task: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        tokio::select! {
            _ = task => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    });
}

/// What a TCP connection task needs from the server.
#[derive(Debug, Clone)]
struct Handle {
    tls: Arc<rustls::ServerConfig>,
    client_auth: ClientAuth,
    mux: MuxConfig,
    handshake_timeout: Duration,
    incoming_tx: mpsc::Sender<TunnelConnection>,
    stop: watch::Receiver<bool>,
    counters: Arc<IoCounters>,
}

impl Handle {
    fn serve_mux<S>(&self, io: S, remote: SocketAddr, certs: Vec<CertificateDer<'static>>)
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (mux, driver) = MuxConnection::new(io, Role::Server, self.mux);
        let conn = TunnelConnection::mux(mux.clone(), remote, certs, self.counters.clone());
        let span = info_span!("tunnel", peer = %remote, transport = "tcp");
        let incoming_tx = self.incoming_tx.clone();
        spawn_until(
            self.stop.clone(),
            async move {
                let driver = tokio::spawn(driver.in_current_span());
                if incoming_tx.send(conn).await.is_err() {
                    mux.close();
                }
                match driver.await {
                    Ok(err) => debug!(error = %err, "connection ended"),
                    Err(err) => warn!(error = %err, "connection task failed"),
                }
            }
            .instrument(span),
        );
    }
}

/// Keepalive and idle timeout for quinn, from the tunnel config.
pub(crate) fn transport_config(
    config: &TunnelConfig,
) -> Result<quinn::TransportConfig, TunnelError> {
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(config.keepalive_interval));
    let idle = quinn::IdleTimeout::try_from(config.idle_timeout).map_err(|_| {
        crate::error::ConfigError {
            field: "idle_timeout",
            reason: "too large for quic".to_string(),
        }
    })?;
    transport.max_idle_timeout(Some(idle));
    // The same stream limit and per-stream window as the TCP mux, so memory budgets from
    // the hardware profile hold on both transports.
    transport.max_concurrent_bidi_streams(config.mux_max_streams.into());
    transport.max_concurrent_uni_streams(0u8.into());
    transport.stream_receive_window(config.mux_stream_window.into());
    Ok(transport)
}

async fn quic_accept_loop(
    endpoint: quinn::Endpoint,
    incoming_tx: mpsc::Sender<TunnelConnection>,
    counters: Arc<IoCounters>,
    handshake_timeout: Duration,
    client_auth: ClientAuth,
) {
    while let Some(incoming) = endpoint.accept().await {
        let remote = incoming.remote_address();
        let incoming_tx = incoming_tx.clone();
        let counters = counters.clone();
        let span = info_span!("tunnel", peer = %remote, transport = "quic");
        tokio::spawn(
            async move {
                let conn = match tokio::time::timeout(handshake_timeout, incoming).await {
                    Ok(Ok(conn)) => conn,
                    Ok(Err(err)) => {
                        debug!(error = %err, "quic handshake failed");
                        return;
                    }
                    Err(_) => {
                        debug!("quic handshake timed out");
                        return;
                    }
                };
                let certs = match (quic_peer_certs(&conn), client_auth) {
                    (Some(certs), _) => certs,
                    (None, ClientAuth::AllowUnauthenticated) => Vec::new(),
                    (None, ClientAuth::Required) => {
                        warn!("quic peer without a certificate");
                        conn.close(1u32.into(), b"no client certificate");
                        return;
                    }
                };
                let conn = TunnelConnection::quic(conn, None, certs, counters);
                let _ = incoming_tx.send(conn).await;
            }
            .instrument(span),
        );
    }
}

pub(crate) fn quic_peer_certs(conn: &quinn::Connection) -> Option<Vec<CertificateDer<'static>>> {
    let identity = conn.peer_identity()?;
    let certs = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    if certs.is_empty() { None } else { Some(*certs) }
}

async fn tcp_accept_loop(listener: TcpListener, handle: Handle) {
    let acceptor = tokio_rustls::TlsAcceptor::from(handle.tls.clone());
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors and the like: wait instead of spinning.
                warn!(error = %err, "tcp accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let handle = handle.clone();
        let span = info_span!("tunnel", peer = %remote, transport = "tcp");
        spawn_until(
            handle.stop.clone(),
            async move {
                if let Err(err) = serve_tcp(tcp, remote, acceptor, &handle).await {
                    debug!(error = %err, "tcp tunnel handshake failed");
                }
            }
            .instrument(span),
        );
    }
}

async fn serve_tcp(
    tcp: TcpStream,
    remote: SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
    handle: &Handle,
) -> Result<(), TunnelError> {
    tcp.set_nodelay(true)?;
    let tls = tokio::time::timeout(handle.handshake_timeout, acceptor.accept(tcp))
        .await
        .map_err(|_| TunnelError::Timeout {
            transport: Transport::Tcp,
            addr: remote,
        })??;
    let (_, session) = tls.get_ref();
    if session.alpn_protocol() != Some(ALPN) {
        return Err(TunnelError::Alpn {
            expected: "kedge-tunnel/1",
        });
    }
    let certs = peer_certs_or_refuse(session.peer_certificates(), handle.client_auth)?;
    handle.serve_mux(tls, remote, certs);
    Ok(())
}

/// The peer's verified certificates; none is an error unless unauthenticated clients are
/// allowed (then the connection has no peer certificate).
fn peer_certs_or_refuse(
    certs: Option<&[CertificateDer<'static>]>,
    client_auth: ClientAuth,
) -> Result<Vec<CertificateDer<'static>>, TunnelError> {
    match (certs, client_auth) {
        (Some(certs), _) if !certs.is_empty() => Ok(certs.to_vec()),
        (_, ClientAuth::AllowUnauthenticated) => Ok(Vec::new()),
        (_, ClientAuth::Required) => Err(TunnelError::NoPeerCertificate),
    }
}
