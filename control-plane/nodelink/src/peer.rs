//! Servers of one cluster reaching each other's agents.
//!
//! With several servers, any of them may hold a node's tunnel (recorded under
//! `/kedge/tunnels/<node>`), while `kubectl logs` or `exec` may land on another. That
//! server forwards the call to the holder, which relays it over the node's tunnel:
//!
//! - the holder serves `AgentStreams` to its peers on the API port, to TLS connections
//!   that negotiate ALPN [`PEER_ALPN`] (the API listener hands them over, as it does the
//!   tunnel's), and only to clients whose certificate is a server's: signed by the
//!   cluster's client CA with `O=`[`kedge_pki::SERVER_PEER_GROUP`], which no node or user
//!   certificate carries. Each call names its node in the metadata [`NODE_METADATA`];
//!   the holder relays it to that node's agent over its tunnel, and never forwards it
//!   again;
//! - the forwarding server dials the holder's recorded address with a peer certificate
//!   it issues itself ([`Peers`]), verifying the holder against the cluster's server CA,
//!   and keeps one HTTP/2 connection per peer for every call.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use futures::{Stream, StreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo};
use kedge_pki::ServerPki;
use kedge_proto::v1::agent_streams_client::AgentStreamsClient;
use kedge_proto::v1::agent_streams_server::{AgentStreams, AgentStreamsServer};
use kedge_proto::v1::{
    Chunk, ExecInput, ExecOutput, LogsRequest, PortForwardFrame, StatsRequest, StatsResponse,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tonic::codec::CompressionEncoding;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, warn};

use crate::NodeLink;

/// The ALPN protocol servers speak to each other on the API port.
pub const PEER_ALPN: &[u8] = b"kedge-peer/1";

/// The request metadata that names the node a forwarded call is for.
pub const NODE_METADATA: &str = "kedge-node";

/// How long dialing a peer may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a server's peer certificate is valid; a new one is issued for every
/// connection.
const PEER_CERT_VALIDITY: Duration = Duration::from_secs(24 * 3600);

/// Whether a verified client certificate is a server's of this cluster.
pub fn is_server_peer(certificate: &[u8]) -> bool {
    kedge_pki::client_identity(certificate).is_ok_and(|id| {
        id.user.starts_with(kedge_pki::SERVER_PEER_USER_PREFIX)
            && id.groups.iter().any(|g| g == kedge_pki::SERVER_PEER_GROUP)
    })
}

// ------------------------------------------------------------------ the holder

/// Serves one connection another server handed over (ALPN [`PEER_ALPN`]) until it
/// closes: `AgentStreams`, relayed to the agents whose tunnels this server holds.
pub(crate) async fn serve(
    link: Weak<NodeLink>,
    tls: tokio_rustls::server::TlsStream<TcpStream>,
    remote: SocketAddr,
) {
    let peer = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec());
    let Some(peer) = peer.filter(|c| is_server_peer(c)) else {
        warn!(%remote, "refused a peer connection: its certificate is not a server's of this cluster");
        return;
    };
    let who = kedge_pki::client_identity(&peer)
        .map(|id| id.user)
        .unwrap_or_default();
    debug!(%remote, peer = %who, "a peer server connected");
    let service = AgentStreamsServer::new(Relay { link })
        .max_decoding_message_size(kedge_proto::transport::MAX_MESSAGE_SIZE)
        .max_encoding_message_size(kedge_proto::transport::MAX_MESSAGE_SIZE);
    let served = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(
            TokioIo::new(tls),
            hyper_util::service::TowerToHyperService::new(service),
        )
        .await;
    if let Err(e) = served {
        debug!(%remote, peer = %who, error = %e, "peer connection ended");
    }
}

/// `AgentStreams` for peers: each call goes to the local tunnel of the node its
/// metadata names.
struct Relay {
    link: Weak<NodeLink>,
}

type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

impl Relay {
    fn agent<T>(&self, request: &Request<T>) -> Result<AgentStreamsClient<Channel>, Status> {
        let node = request
            .metadata()
            .get(NODE_METADATA)
            .and_then(|v| v.to_str().ok())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| Status::invalid_argument(format!("no {NODE_METADATA} metadata")))?;
        let link = self
            .link
            .upgrade()
            .ok_or_else(|| Status::unavailable("the server is shutting down"))?;
        let channel = link.agent_channel(node).ok_or_else(|| {
            Status::unavailable(format!(
                "node {node:?} has no tunnel to server {} either (its record is stale; is its agent connected?)",
                link.server_id()
            ))
        })?;
        Ok(AgentStreamsClient::new(channel)
            .send_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(kedge_proto::transport::MAX_MESSAGE_SIZE))
    }
}

/// The messages of an incoming client stream, up to its first error.
fn messages<T: Send + 'static>(input: Streaming<T>) -> impl Stream<Item = T> + Send + 'static {
    input
        .take_while(|r| futures::future::ready(r.is_ok()))
        .filter_map(|r| futures::future::ready(r.ok()))
}

#[tonic::async_trait]
impl AgentStreams for Relay {
    type LogsStream = Boxed<Chunk>;
    type ExecStream = Boxed<ExecOutput>;
    type PortForwardStream = Boxed<PortForwardFrame>;

    async fn logs(
        &self,
        request: Request<LogsRequest>,
    ) -> Result<Response<Self::LogsStream>, Status> {
        let mut agent = self.agent(&request)?;
        let stream = agent.logs(request.into_inner()).await?.into_inner();
        Ok(Response::new(Box::pin(stream)))
    }

    async fn exec(
        &self,
        request: Request<Streaming<ExecInput>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        let mut agent = self.agent(&request)?;
        let stream = agent
            .exec(messages(request.into_inner()))
            .await?
            .into_inner();
        Ok(Response::new(Box::pin(stream)))
    }

    async fn port_forward(
        &self,
        request: Request<Streaming<PortForwardFrame>>,
    ) -> Result<Response<Self::PortForwardStream>, Status> {
        let mut agent = self.agent(&request)?;
        let stream = agent
            .port_forward(messages(request.into_inner()))
            .await?
            .into_inner();
        Ok(Response::new(Box::pin(stream)))
    }

    async fn stats(
        &self,
        request: Request<StatsRequest>,
    ) -> Result<Response<StatsResponse>, Status> {
        let mut agent = self.agent(&request)?;
        // A new response: the agent's metadata (its grpc-encoding) is not the relay's.
        let summary = agent.stats(request.into_inner()).await?.into_inner();
        Ok(Response::new(summary))
    }
}

// ------------------------------------------------------------- the forwarder

/// This server's way to its peers: one lazily connected channel per peer address.
pub struct Peers {
    pki: Arc<ServerPki>,
    server_id: String,
    channels: Mutex<HashMap<String, Channel>>,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers")
            .field("server_id", &self.server_id)
            .finish_non_exhaustive()
    }
}

/// A peer could not be dialed.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("{address} is not a host:port address")]
    Address { address: String },
    #[error("cannot issue this server's peer certificate: {0}")]
    Certificate(#[from] kedge_pki::PkiError),
    #[error("tls: {0}")]
    Tls(String),
}

impl Peers {
    pub fn new(pki: Arc<ServerPki>, server_id: String) -> Peers {
        Peers {
            pki,
            server_id,
            channels: Mutex::new(HashMap::new()),
        }
    }

    /// The channel to the peer at `address` (`host:port`), connected on first use and
    /// again after a failure.
    pub fn channel(&self, address: &str) -> Result<Channel, PeerError> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(channel) = channels.get(address) {
            return Ok(channel.clone());
        }
        let host = host_of(address).ok_or_else(|| PeerError::Address {
            address: address.to_string(),
        })?;
        let server_name = ServerName::try_from(host.to_string())
            .map_err(|e| PeerError::Tls(format!("server name {host:?}: {e}")))?;
        let server_ca = CertificateDer::from(self.pki.server_ca_der().to_vec());
        let pki = self.pki.clone();
        let user = format!("{}{}", kedge_pki::SERVER_PEER_USER_PREFIX, self.server_id);
        let target = address.to_string();
        let connector = tower::service_fn(move |_: http::Uri| {
            let pki = pki.clone();
            let user = user.clone();
            let target = target.clone();
            let server_name = server_name.clone();
            let server_ca = server_ca.clone();
            async move {
                let config =
                    client_config(&pki, &user, server_ca).map_err(std::io::Error::other)?;
                let dial = async {
                    let tcp = TcpStream::connect(&target).await?;
                    tcp.set_nodelay(true)?;
                    let tls = tokio_rustls::TlsConnector::from(config)
                        .connect(server_name, tcp)
                        .await?;
                    if tls.get_ref().1.alpn_protocol() != Some(PEER_ALPN) {
                        return Err(std::io::Error::other(format!(
                            "{target} does not speak {} (is it a kedge server of this version?)",
                            String::from_utf8_lossy(PEER_ALPN)
                        )));
                    }
                    Ok(TokioIo::new(tls))
                };
                match tokio::time::timeout(DIAL_TIMEOUT, dial).await {
                    Ok(result) => result,
                    Err(_) => Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("dial {target}: timed out after {DIAL_TIMEOUT:?}"),
                    )),
                }
            }
        });
        // The URI is never dialled: the connector opens the TLS connection itself.
        let channel =
            Endpoint::from_static("http://kedge.peer").connect_with_connector_lazy(connector);
        channels.insert(address.to_string(), channel.clone());
        Ok(channel)
    }
}

/// TLS 1.3 to a peer: verify it against the server CA, present a fresh peer certificate.
fn client_config(
    pki: &ServerPki,
    user: &str,
    server_ca: CertificateDer<'static>,
) -> Result<Arc<rustls::ClientConfig>, PeerError> {
    let issued = pki.issue_client_cert(
        user,
        &[kedge_pki::SERVER_PEER_GROUP],
        PEER_CERT_VALIDITY,
        SystemTime::now(),
    )?;
    use rustls::pki_types::pem::PemObject;
    let cert = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes())
        .map_err(|e| PeerError::Tls(e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes())
        .map_err(|e| PeerError::Tls(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(server_ca)
        .map_err(|e| PeerError::Tls(e.to_string()))?;
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .map_err(|e| PeerError::Tls(e.to_string()))?
    .with_root_certificates(roots)
    .with_client_auth_cert(vec![cert], key)
    .map_err(|e| PeerError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![PEER_ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// The host of `host:port` (brackets of an IPv6 address removed).
fn host_of(address: &str) -> Option<&str> {
    let (host, port) = address.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_addresses() {
        assert_eq!(host_of("127.0.0.1:6443"), Some("127.0.0.1"));
        assert_eq!(host_of("[fd00::1]:6443"), Some("fd00::1"));
        assert_eq!(host_of("cp-1.example:6443"), Some("cp-1.example"));
        assert_eq!(host_of("cp-1.example"), None);
        assert_eq!(host_of(":6443"), None);
        assert_eq!(host_of("x:y"), None);
    }

    #[test]
    fn only_server_certificates_are_peers() {
        let dir = tempfile::tempdir().unwrap();
        let pki =
            ServerPki::load_or_create(dir.path(), &Default::default(), SystemTime::now()).unwrap();
        let der = |cn: &str, orgs: &[&str]| {
            let pem = pki
                .issue_client_cert(cn, orgs, Duration::from_secs(60), SystemTime::now())
                .unwrap()
                .cert_pem;
            use rustls::pki_types::pem::PemObject;
            CertificateDer::from_pem_slice(pem.as_bytes())
                .unwrap()
                .to_vec()
        };
        assert!(is_server_peer(&der(
            "kedge:server:cp-1_x",
            &[kedge_pki::SERVER_PEER_GROUP]
        )));
        assert!(!is_server_peer(&der("system:node:pi-1", &["system:nodes"])));
        assert!(!is_server_peer(&der("system:admin", &["system:masters"])));
        assert!(!is_server_peer(&der(
            "system:node:pi-1",
            &[kedge_pki::SERVER_PEER_GROUP]
        )));
        assert!(!is_server_peer(b"garbage"));
    }
}
