//! The tunnel listener of `kedge server`, and what it does with each connection.
//!
//! The server listens for agents on QUIC (UDP, port 6443 by default) and on TLS over
//! TCP: either a port of its own, or the API's port 6443, whose listener hands over the
//! connections that negotiate the tunnel's ALPN ([`NodeLink::handoff`]).
//!
//! Each connection is judged by its verified client certificate:
//! - none: the agent has not joined yet, and only `Bootstrap` is served;
//! - `CN=system:node:<name>, O=system:nodes`: a node; `Node` is served for that name
//!   only, and the connection is recorded as the node's tunnel, in memory for the
//!   reverse streams and in the datastore (`/kedge/tunnels/<node>`) so that other servers
//!   know which server holds it;
//! - anything else (an admin's certificate, say) is closed.
//!
//! A node that connects again replaces its previous connection, which is closed. While a
//! node's connection is up, this server renews the node's Lease ([`crate::lease`]).
//!
//! The API listener also hands over connections from the cluster's other servers (ALPN
//! [`crate::peer::PEER_ALPN`]), which reach the agents whose tunnels this server holds
//! ([`crate::peer`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use kedge_apiserver::ApiServer;
use kedge_datastore::{Clock, Store, WriteOptions};
use kedge_pki::ServerPki;
use kedge_tunnel::{ServerOptions, ServerTls, TunnelConfig, TunnelConnection, TunnelServer};
use serde_json::json;
use tracing::{Instrument, info, warn};

use crate::bootstrap::{BootstrapConfig, Bootstrapper};
use crate::lease::LeaseOptions;
use crate::peer::Peers;
use crate::report::Reporter;
use crate::service::{NodeService, NodeTokensService, Shared};
use crate::sync::SyncHub;

/// Where the datastore records which server holds each agent's tunnel.
pub const TUNNELS_PREFIX: &str = "/kedge/tunnels/";

/// How the node link listens.
#[derive(Debug, Clone)]
pub struct LinkOptions {
    /// UDP address for QUIC; `None` disables QUIC.
    pub quic_addr: Option<SocketAddr>,
    /// A TCP address of the tunnel's own; `None` when the TCP fallback arrives through
    /// the API listener's hand-over.
    pub tcp_addr: Option<SocketAddr>,
    /// Timers and limits of the tunnel.
    pub tunnel: TunnelConfig,
    /// Node certificates.
    pub bootstrap: BootstrapConfig,
    /// This server, as recorded for the tunnels it holds (its leader-election identity).
    pub server_id: String,
    /// Where other servers reach this one's API (`host:port`).
    pub advertise_address: String,
    /// How this server renews the Leases of the nodes whose tunnels it holds.
    pub lease: LeaseOptions,
}

/// The node link could not start.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("invalid node link settings: {0}")]
    Config(String),
    #[error(transparent)]
    Tunnel(#[from] kedge_tunnel::TunnelError),
    #[error(transparent)]
    Tls(#[from] kedge_tunnel::TlsError),
}

#[derive(Debug)]
struct Agent {
    id: u64,
    connection: TunnelConnection,
    /// gRPC to the agent over streams this server opens on its connection; one HTTP/2
    /// connection, opened on first use, shared by every call.
    channel: tonic::transport::Channel,
}

/// The server end of every agent link.
#[derive(Debug)]
pub struct NodeLink {
    server: TunnelServer,
    shared: Shared,
    store: Arc<dyn Store>,
    options: LinkOptions,
    agents: Mutex<HashMap<String, Agent>>,
    next_id: AtomicU64,
    peers: Peers,
}

/// Which server holds a node's tunnel, as recorded in the datastore.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct TunnelRecord {
    /// The holder's id.
    pub server: String,
    /// Where the holder's API listens (`host:port`).
    pub address: String,
    /// `quic` or `tcp`.
    #[serde(default)]
    pub transport: String,
    /// The agent's address as the holder sees it.
    #[serde(default)]
    pub remote: String,
}

/// Who a connection's certificate says the peer is.
#[derive(Debug, PartialEq, Eq)]
enum Peer {
    /// No certificate: bootstrap only.
    Joining,
    Node(String),
    Other(String),
}

fn identify(certificate: Option<&[u8]>) -> Peer {
    let Some(der) = certificate else {
        return Peer::Joining;
    };
    match kedge_pki::client_identity(der) {
        Ok(identity) => match identity
            .user
            .strip_prefix(crate::bootstrap::NODE_USER_PREFIX)
        {
            Some(node)
                if !node.is_empty() && identity.groups.iter().any(|g| g == "system:nodes") =>
            {
                Peer::Node(node.to_string())
            }
            _ => Peer::Other(identity.user),
        },
        Err(e) => Peer::Other(format!("unreadable certificate: {e}")),
    }
}

impl NodeLink {
    /// Binds the tunnel listener and starts serving agents.
    pub async fn start(
        api: &ApiServer,
        pki: Arc<ServerPki>,
        clock: Arc<dyn Clock>,
        options: LinkOptions,
    ) -> Result<Arc<NodeLink>, LinkError> {
        options.bootstrap.validate().map_err(LinkError::Config)?;
        let tls = ServerTls::from_pem(
            pki.serving_cert_pem(),
            pki.serving_key_pem(),
            pki.client_ca_pem(),
        )?
        .allow_unauthenticated();
        let server = TunnelServer::bind(ServerOptions {
            quic_addr: options.quic_addr,
            tcp_addr: options.tcp_addr,
            config: options.tunnel.clone(),
            tls,
        })
        .await?;
        let registry = api.registry.clone();
        let peers = Peers::new(pki.clone(), options.server_id.clone());
        let shared = Shared {
            hub: SyncHub::start(registry.clone()),
            reporter: Arc::new(Reporter::new(registry.clone(), clock.clone())),
            bootstrap: Arc::new(Bootstrapper::new(
                registry.clone(),
                pki,
                clock,
                options.bootstrap.clone(),
            )),
            tokens: NodeTokensService::new(registry.clone(), api.config.service_accounts.clone()),
        };
        let link = Arc::new(NodeLink {
            server,
            shared,
            store: registry.store().clone(),
            options,
            agents: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            peers,
        });
        info!(
            quic = ?link.server.quic_addr(),
            tcp = ?link.server.tcp_addr(),
            "agent tunnel listening"
        );
        tokio::spawn(accept_loop(Arc::downgrade(&link)));
        Ok(link)
    }

    /// The UDP address QUIC listens on.
    pub fn quic_addr(&self) -> Option<SocketAddr> {
        self.server.quic_addr()
    }

    /// The tunnel's own TCP address, when it has one.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.server.tcp_addr()
    }

    /// The per-node sync hub.
    pub fn hub(&self) -> &Arc<SyncHub> {
        &self.shared.hub
    }

    /// For the API listener: TLS connections that negotiated the tunnel's ALPN (agents)
    /// or the peers' (the cluster's other servers) come here.
    pub fn handoff(self: &Arc<Self>) -> kedge_apiserver::TunnelHandoff {
        let link = Arc::downgrade(self);
        kedge_apiserver::TunnelHandoff {
            alpns: vec![kedge_tunnel::ALPN.to_vec(), crate::peer::PEER_ALPN.to_vec()],
            take: Box::new(move |tls, peer| {
                if tls.get_ref().1.alpn_protocol() == Some(crate::peer::PEER_ALPN) {
                    tokio::spawn(crate::peer::serve(link.clone(), tls, peer));
                    return;
                }
                let Some(link) = link.upgrade() else { return };
                if let Err(e) = link.server.adopt_tls(tls, peer) {
                    warn!(%peer, error = %e, "refused a tunnel connection on the API port");
                }
            }),
        }
    }

    /// This server's id, as tunnel records name it.
    pub fn server_id(&self) -> &str {
        &self.options.server_id
    }

    /// Which server holds `node`'s tunnel, as the datastore records it; `None` when no
    /// server does (or the record cannot be read).
    pub async fn tunnel_record(&self, node: &str) -> Option<TunnelRecord> {
        let key = format!("{TUNNELS_PREFIX}{node}");
        match self.store.get(&key, None).await {
            Ok(Some(kv)) => serde_json::from_slice(&kv.value)
                .inspect_err(|e| warn!(%node, error = %e, "unreadable tunnel record"))
                .ok(),
            Ok(None) => None,
            Err(e) => {
                warn!(%node, error = %e, "cannot read the tunnel record");
                None
            }
        }
    }

    /// The channels to the cluster's other servers.
    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    /// The live tunnel of `node` on this server, for reverse streams.
    pub fn agent(&self, node: &str) -> Option<TunnelConnection> {
        let agents = self.agents.lock().unwrap_or_else(|e| e.into_inner());
        agents.get(node).map(|a| a.connection.clone())
    }

    /// A gRPC channel to `node`'s agent over its live tunnel on this server.
    pub fn agent_channel(&self, node: &str) -> Option<tonic::transport::Channel> {
        let agents = self.agents.lock().unwrap_or_else(|e| e.into_inner());
        agents.get(node).map(|a| a.channel.clone())
    }

    /// The nodes whose tunnel this server holds.
    pub fn connected_nodes(&self) -> Vec<String> {
        let agents = self.agents.lock().unwrap_or_else(|e| e.into_inner());
        let mut nodes: Vec<String> = agents.keys().cloned().collect();
        nodes.sort();
        nodes
    }

    /// Closes every tunnel and stops listening.
    pub fn shutdown(&self) {
        self.server.shutdown();
    }

    fn register(&self, node: &str, connection: TunnelConnection) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let previous = {
            let mut agents = self.agents.lock().unwrap_or_else(|e| e.into_inner());
            let channel = kedge_proto::transport::channel(connection.clone());
            agents.insert(
                node.to_string(),
                Agent {
                    id,
                    connection,
                    channel,
                },
            )
        };
        if let Some(previous) = previous {
            info!(%node, "the node connected again; closing its previous connection");
            previous.connection.close();
        }
        id
    }

    /// Forgets the connection `id` of `node`, unless a newer one replaced it; true when
    /// it was the current one.
    fn unregister(&self, node: &str, id: u64) -> bool {
        let mut agents = self.agents.lock().unwrap_or_else(|e| e.into_inner());
        if agents.get(node).is_some_and(|a| a.id == id) {
            agents.remove(node);
            true
        } else {
            false
        }
    }

    /// Records in the datastore that this server holds `node`'s tunnel.
    async fn record(&self, node: &str, connection: &TunnelConnection) {
        let key = format!("{TUNNELS_PREFIX}{node}");
        let value = Bytes::from(
            json!({
                "server": self.options.server_id,
                "address": self.options.advertise_address,
                "transport": connection.transport().to_string(),
                "remote": connection.remote_addr().to_string(),
            })
            .to_string(),
        );
        for _ in 0..5 {
            let result = match self.store.get(&key, None).await {
                Ok(Some(kv)) => self
                    .store
                    .update(
                        &key,
                        value.clone(),
                        kv.mod_revision,
                        WriteOptions::default(),
                    )
                    .await
                    .map(|_| ()),
                Ok(None) => self
                    .store
                    .create(&key, value.clone(), WriteOptions::default())
                    .await
                    .map(|_| ()),
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => return,
                Err(kedge_datastore::Error::Conflict { .. })
                | Err(kedge_datastore::Error::AlreadyExists { .. })
                | Err(kedge_datastore::Error::NotFound { .. }) => continue,
                Err(e) => {
                    warn!(%node, error = %e, "cannot record the tunnel in the datastore");
                    return;
                }
            }
        }
    }

    /// Removes the datastore record of `node`'s tunnel if this server still holds it.
    async fn forget(&self, node: &str) {
        let key = format!("{TUNNELS_PREFIX}{node}");
        let Ok(Some(kv)) = self.store.get(&key, None).await else {
            return;
        };
        let ours = serde_json::from_slice::<serde_json::Value>(&kv.value)
            .ok()
            .and_then(|v| v.get("server").and_then(|s| s.as_str()).map(str::to_string))
            .is_some_and(|s| s == self.options.server_id);
        if ours {
            let _ = self.store.delete(&key, Some(kv.mod_revision)).await;
        }
    }
}

async fn accept_loop(link: std::sync::Weak<NodeLink>) {
    loop {
        let connection = {
            let Some(strong) = link.upgrade() else { return };
            // Hold the link only while waiting for the next connection.
            let accepted = strong.server.accept().await;
            drop(strong);
            match accepted {
                Some(c) => c,
                None => return,
            }
        };
        let Some(strong) = link.upgrade() else { return };
        tokio::spawn(serve_connection(strong, connection));
    }
}

async fn serve_connection(link: Arc<NodeLink>, connection: TunnelConnection) {
    let remote = connection.remote_addr();
    let transport = connection.transport();
    match identify(connection.peer_certificate()) {
        Peer::Joining => {
            let span = tracing::info_span!("bootstrap", %remote);
            let service = (*link.shared.bootstrap).clone().into_service();
            drop(link);
            let served = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(kedge_proto::transport::incoming(connection))
                .instrument(span)
                .await;
            if let Err(e) = served {
                tracing::debug!(%remote, error = %e, "bootstrap connection ended");
            }
        }
        Peer::Node(node) => {
            let span = tracing::info_span!("node", %node, %remote);
            async {
                let id = link.register(&node, connection.clone());
                link.record(&node, &connection).await;
                info!(%transport, "agent connected");
                let service = NodeService::server(node.clone(), link.shared.clone());
                let tokens = link.shared.tokens.server(node.clone());
                let serving = tonic::transport::Server::builder()
                    .add_service(service)
                    .add_service(tokens)
                    .serve_with_incoming(kedge_proto::transport::incoming(connection.clone()));
                // The tunnel's liveness renews the node's Lease, for as long as it serves.
                let renewing = crate::lease::renew_while_connected(
                    link.shared.reporter.clone(),
                    node.clone(),
                    link.options.lease,
                );
                let served = tokio::select! {
                    served = serving => served,
                    never = renewing => match never {},
                };
                let why = connection
                    .close_reason()
                    .map(|e| e.to_string())
                    .or_else(|| served.err().map(|e| e.to_string()))
                    .unwrap_or_else(|| "closed".to_string());
                if link.unregister(&node, id) {
                    link.forget(&node).await;
                }
                info!(reason = %why, "agent disconnected");
            }
            .instrument(span)
            .await;
        }
        Peer::Other(user) => {
            warn!(%remote, %user, "refused a tunnel connection: its certificate is not a node's");
            connection.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    #[test]
    fn connections_are_judged_by_their_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let pki =
            ServerPki::load_or_create(dir.path(), &Default::default(), SystemTime::now()).unwrap();
        let der = |cn: &str, orgs: &[&str]| {
            let issued = pki
                .issue_client_cert(cn, orgs, Duration::from_secs(60), SystemTime::now())
                .unwrap();
            let pem = issued.cert_pem;
            let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, body).unwrap()
        };
        assert_eq!(identify(None), Peer::Joining);
        assert_eq!(
            identify(Some(&der("system:node:pi-1", &["system:nodes"]))),
            Peer::Node("pi-1".into())
        );
        // The node's name without the nodes group is not a node.
        assert!(matches!(
            identify(Some(&der("system:node:pi-1", &[]))),
            Peer::Other(_)
        ));
        assert!(matches!(
            identify(Some(&der("system:admin", &["system:masters"]))),
            Peer::Other(_)
        ));
        assert!(matches!(identify(Some(b"garbage")), Peer::Other(_)));
    }
}
