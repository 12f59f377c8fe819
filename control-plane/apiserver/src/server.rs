//! TLS and HTTP serving.
//!
//! Client certificates are optional at the TLS layer (a bearer token may
//! authenticate instead) but, when presented, must chain to the client CA;
//! rustls checks that during the handshake, so a certificate the handler
//! sees is already verified. ALPN offers h2 and http/1.1.
//!
//! TCP 6443 is shared with the agent tunnel's TLS fallback, as UDP 6443 carries its
//! QUIC: when the server's rustls configuration also offers the tunnel's ALPN and a
//! client negotiates it, [`serve`] hands the TLS connection to the [`TunnelHandoff`]
//! instead of speaking HTTP on it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::ApiServer;
use crate::auth;

/// The certificates the server presents and trusts.
#[derive(Clone)]
pub struct TlsMaterial {
    /// The serving certificate chain, leaf first, DER.
    pub cert_chain: Vec<Vec<u8>>,
    /// The serving key, PKCS#8 DER.
    pub key_pkcs8: Vec<u8>,
    /// The CA that signs client certificates, DER.
    pub client_ca: Vec<u8>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("certs", &self.cert_chain.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

/// The TLS setup failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("invalid client CA certificate: {0}")]
    ClientCa(String),
    #[error("invalid serving certificate or key: {0}")]
    Serving(String),
}

/// Builds the rustls server configuration.
pub fn tls_config(m: &TlsMaterial) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(m.client_ca.clone()))
        .map_err(|e| TlsError::ClientCa(e.to_string()))?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| TlsError::ClientCa(e.to_string()))?;
    let certs: Vec<CertificateDer<'static>> = m
        .cert_chain
        .iter()
        .map(|c| CertificateDer::from(c.clone()))
        .collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(m.key_pkcs8.clone()));
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Serving(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Serving(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Takes TLS connections that negotiated another protocol than HTTP: the agent
/// tunnel's fallback, and other servers of the cluster. Called with the connection
/// (whose session names the ALPN protocol) and the peer.
pub struct TunnelHandoff {
    /// The ALPN protocol ids that select the hand-over.
    pub alpns: Vec<Vec<u8>>,
    /// Takes the connection.
    #[allow(clippy::type_complexity)]
    pub take: Box<
        dyn Fn(tokio_rustls::server::TlsStream<tokio::net::TcpStream>, SocketAddr) + Send + Sync,
    >,
}

impl std::fmt::Debug for TunnelHandoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let alpns: Vec<_> = self
            .alpns
            .iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        f.debug_struct("TunnelHandoff")
            .field("alpns", &alpns)
            .finish()
    }
}

/// Serves HTTPS on `listener` until `shutdown` completes. Connections that negotiate
/// the hand-over's ALPN go to it.
pub async fn serve(
    server: Arc<ApiServer>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    handoff: Option<Arc<TunnelHandoff>>,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let server = server.clone();
        let handoff = handoff.clone();
        connections.spawn(async move {
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
            if let Some(handoff) = handoff
                && let Some(alpn) = tls.get_ref().1.alpn_protocol()
                && handoff.alpns.iter().any(|a| a.as_slice() == alpn)
            {
                (handoff.take)(tls, peer);
                return;
            }
            let user = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(|leaf| auth::user_from_certificate(leaf));
            let service = service_fn(move |req| {
                let server = server.clone();
                let user = user.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(
                        crate::handlers::handle(server, user, req).await,
                    )
                }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    connections.abort_all();
}
