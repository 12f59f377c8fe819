//! Shared helpers for the tunnel's loopback tests: a throwaway cluster PKI, fast timers.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use kedge_pki::{PkiOptions, ServerPki};
use kedge_tunnel::{
    ClientOptions, ClientTls, Jitter, ServerOptions, ServerTls, State, Transport, TunnelClient,
    TunnelConfig, TunnelServer,
};

/// A cluster PKI in a temporary directory.
pub struct Pki {
    _dir: tempfile::TempDir,
    pub pki: ServerPki,
}

pub fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let pki =
        ServerPki::load_or_create(dir.path(), &PkiOptions::default(), SystemTime::now()).unwrap();
    Pki { _dir: dir, pki }
}

pub fn server_tls(pki: &Pki) -> ServerTls {
    ServerTls::from_pem(
        pki.pki.serving_cert_pem(),
        pki.pki.serving_key_pem(),
        pki.pki.client_ca_pem(),
    )
    .unwrap()
}

/// A node certificate for `node`, signed by `signer`'s client CA, trusting `cluster`'s
/// server CA.
pub fn client_tls(cluster: &Pki, signer: &Pki, node: &str) -> ClientTls {
    let cert = signer
        .pki
        .issue_client_cert(
            &format!("system:node:{node}"),
            &["system:nodes"],
            Duration::from_secs(3600),
            SystemTime::now(),
        )
        .unwrap();
    ClientTls::from_pem(
        cluster.pki.server_ca_pem(),
        &cert.cert_pem,
        &cert.key_pem,
        "localhost",
    )
    .unwrap()
}

/// Timers short enough for tests on loopback.
pub fn fast_config() -> TunnelConfig {
    TunnelConfig {
        keepalive_interval: Duration::from_millis(500),
        idle_timeout: Duration::from_secs(3),
        quic_connect_timeout: Duration::from_millis(800),
        tcp_connect_timeout: Duration::from_secs(3),
        backoff_base: Duration::from_millis(50),
        backoff_factor: 2.0,
        backoff_cap: Duration::from_millis(500),
        jitter: Jitter::Full,
        stable_after: Duration::from_secs(5),
        quic_retry_interval: Duration::from_secs(600),
        ..TunnelConfig::default()
    }
}

pub fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Binds a server; a port that was just released (its sockets close asynchronously) is
/// retried for a few seconds.
pub async fn server(pki: &Pki, quic: Option<SocketAddr>, tcp: Option<SocketAddr>) -> TunnelServer {
    let mut tries = 0;
    loop {
        let bound = TunnelServer::bind(ServerOptions {
            quic_addr: quic,
            tcp_addr: tcp,
            config: fast_config(),
            tls: server_tls(pki),
        })
        .await;
        match bound {
            Ok(server) => return server,
            Err(kedge_tunnel::TunnelError::Bind { source, .. })
                if source.kind() == std::io::ErrorKind::AddrInUse && tries < 50 =>
            {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("cannot start the tunnel server: {err}"),
        }
    }
}

pub fn client(
    tls: ClientTls,
    quic_addr: SocketAddr,
    tcp_addr: SocketAddr,
    config: TunnelConfig,
) -> TunnelClient {
    TunnelClient::start(ClientOptions {
        quic_addr,
        tcp_addr,
        config,
        tls,
    })
    .unwrap()
}

/// Waits (real time, at most `within`) until the client is connected over `transport`.
pub async fn wait_connected(client: &TunnelClient, transport: Transport, within: Duration) {
    let mut state = client.state();
    let reached = tokio::time::timeout(
        within,
        state.wait_for(|s| matches!(s, State::Connected { transport: t, .. } if *t == transport)),
    )
    .await;
    assert!(
        matches!(reached, Ok(Ok(_))),
        "not connected over {transport} within {within:?}: state {:?}, counters {:?}",
        *client.state().borrow(),
        client.counters()
    );
}

/// Waits until the client is not connected.
pub async fn wait_disconnected(client: &TunnelClient, within: Duration) {
    let mut state = client.state();
    let left = tokio::time::timeout(
        within,
        state.wait_for(|s| !matches!(s, State::Connected { .. })),
    )
    .await;
    assert!(
        matches!(left, Ok(Ok(_))),
        "still connected after {within:?}"
    );
}
