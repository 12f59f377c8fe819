//! The tunnel over real sockets on loopback: mutual TLS, streams both ways on both
//! transports, fallback, reconnect, tampering.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use common::*;
use kedge_tunnel::{RecvStream, SendStream, Transport, TunnelConnection, TunnelServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const WITHIN: Duration = Duration::from_secs(10);

/// Writes `message`, finishes, and reads the whole answer.
async fn call(mut send: SendStream, mut recv: RecvStream, message: &[u8]) -> Vec<u8> {
    send.write_all(message).await.unwrap();
    send.shutdown().await.unwrap();
    let mut answer = Vec::new();
    recv.read_to_end(&mut answer).await.unwrap();
    answer
}

/// Reads a whole request and answers with it reversed.
async fn answer_reversed((mut send, mut recv): (SendStream, RecvStream)) {
    let mut request = Vec::new();
    recv.read_to_end(&mut request).await.unwrap();
    request.reverse();
    send.write_all(&request).await.unwrap();
    send.shutdown().await.unwrap();
}

async fn accept_conn(server: &TunnelServer) -> TunnelConnection {
    tokio::time::timeout(WITHIN, server.accept())
        .await
        .expect("server accepted nothing")
        .expect("server shut down")
}

/// Streams opened by the client and by the server both carry data.
async fn exercise_streams(client: &kedge_tunnel::TunnelClient, server_conn: &TunnelConnection) {
    // Client → server.
    let serving = {
        let conn = server_conn.clone();
        tokio::spawn(async move { answer_reversed(conn.accept_bi().await.unwrap()).await })
    };
    let (send, recv) = client.open_bi().await.unwrap();
    assert_eq!(call(send, recv, b"hello").await, b"olleh");
    serving.await.unwrap();

    // Server → client (a reverse stream, as for logs or exec), with a large payload.
    let answering = tokio::spawn({
        let pair = tokio::time::timeout(WITHIN, async {
            let (send, recv) = server_conn.open_bi().await.unwrap();
            (send, recv)
        })
        .await
        .unwrap();
        async move {
            let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
            let mut expected = big.clone();
            expected.reverse();
            let answer = call(pair.0, pair.1, &big).await;
            assert_eq!(answer.len(), expected.len());
            assert!(answer == expected, "reverse stream corrupted data");
        }
    });
    let incoming = tokio::time::timeout(WITHIN, client.accept_bi())
        .await
        .expect("client never saw the server's stream")
        .unwrap();
    answer_reversed(incoming).await;
    answering.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_mutual_tls_and_streams_both_ways() {
    let pki = pki();
    let server = server(&pki, Some(localhost()), None).await;
    let addr = server.quic_addr().unwrap();
    let client = client(client_tls(&pki, &pki, "edge-1"), addr, addr, fast_config());
    wait_connected(&client, Transport::Quic, WITHIN).await;

    let conn = accept_conn(&server).await;
    assert_eq!(conn.transport(), Transport::Quic);
    let identity = kedge_pki::client_identity(conn.peer_certificate().unwrap()).unwrap();
    assert_eq!(identity.user, "system:node:edge-1");
    assert_eq!(identity.groups, ["system:nodes"]);
    // The client sees the server's certificate too.
    assert!(client.connection().unwrap().peer_certificate().is_some());

    exercise_streams(&client, &conn).await;
    let counters = client.counters();
    assert_eq!(counters.connects, 1);
    assert_eq!(counters.quic_attempts, 1);
    assert_eq!(counters.tcp_attempts, 0);
    assert_eq!(counters.streams_opened, 1);
    assert_eq!(counters.streams_accepted, 1);
    assert!(counters.bytes_sent >= 1_000_005, "{counters:?}");
    assert!(counters.bytes_received >= 1_000_005, "{counters:?}");
    let served = server.counters();
    assert_eq!((served.streams_opened, served.streams_accepted), (1, 1));
    assert_eq!(served.bytes_received, counters.bytes_sent, "{served:?}");
    assert_eq!(served.bytes_sent, counters.bytes_received, "{served:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_fallback_when_udp_is_not_answered() {
    let pki = pki();
    // No QUIC listener at all: the client's QUIC dial times out and it falls back by itself.
    let server = server(&pki, None, Some(localhost())).await;
    let tcp = server.tcp_addr().unwrap();
    let client = client(client_tls(&pki, &pki, "edge-2"), tcp, tcp, fast_config());
    wait_connected(&client, Transport::Tcp, WITHIN).await;

    let conn = accept_conn(&server).await;
    assert_eq!(conn.transport(), Transport::Tcp);
    let identity = kedge_pki::client_identity(conn.peer_certificate().unwrap()).unwrap();
    assert_eq!(identity.user, "system:node:edge-2");
    exercise_streams(&client, &conn).await;

    let counters = client.counters();
    assert_eq!(counters.fallbacks, 1, "{counters:?}");
    assert_eq!(counters.failures.timeout, 1, "{counters:?}");
    assert_eq!((counters.quic_attempts, counters.tcp_attempts), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_and_tcp_on_the_same_port_number() {
    let pki = pki();
    let quic_only = server(&pki, Some(localhost()), None).await;
    let port = quic_only.quic_addr().unwrap();
    drop(quic_only);
    // Like `kedge server` on 6443: UDP and TCP share the port number.
    let server = server(&pki, Some(port), Some(port)).await;
    assert_eq!(server.quic_addr(), server.tcp_addr());
    let client = client(client_tls(&pki, &pki, "edge-3"), port, port, fast_config());
    wait_connected(&client, Transport::Quic, WITHIN).await;
    let conn = accept_conn(&server).await;
    exercise_streams(&client, &conn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_with_a_certificate_from_another_ca_is_refused() {
    let pki = pki();
    let stranger = common::pki();
    for (quic, tcp) in [(true, false), (false, true)] {
        let server = server(&pki, quic.then(localhost), tcp.then(localhost)).await;
        let addr = server.quic_addr().or(server.tcp_addr()).unwrap();
        let client = client(
            client_tls(&pki, &stranger, "intruder"),
            addr,
            addr,
            fast_config(),
        );
        let accepted = tokio::time::timeout(Duration::from_secs(3), server.accept()).await;
        assert!(
            accepted.is_err(),
            "server accepted a stranger's certificate"
        );
        let counters = client.counters();
        assert!(
            counters.failures.tls >= 1 && counters.failures.protocol == 0,
            "refusals not counted as tls failures (quic {quic}): {counters:?}"
        );
        assert!(
            client
                .connection()
                .is_none_or(|c| c.close_reason().is_some())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_a_server_restart() {
    let pki = pki();
    let first = server(&pki, Some(localhost()), None).await;
    let addr = first.quic_addr().unwrap();
    let client = client(client_tls(&pki, &pki, "edge-4"), addr, addr, fast_config());
    wait_connected(&client, Transport::Quic, WITHIN).await;
    let conn = accept_conn(&first).await;

    // As a process exit would: the server and its connections go away.
    drop(conn);
    drop(first);
    wait_disconnected(&client, WITHIN).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let second = server(&pki, Some(addr), None).await;
    wait_connected(&client, Transport::Quic, WITHIN).await;
    let conn = accept_conn(&second).await;
    exercise_streams(&client, &conn).await;
    let counters = client.counters();
    assert_eq!(counters.reconnects, 1, "{counters:?}");
    assert!(counters.failures.closed >= 1, "{counters:?}");
}

/// What the relay does to the next chunk the server sends.
const PASS: u8 = 0;
const FLIP_A_BYTE: u8 = 1;
const CUT_MID_RECORD: u8 = 2;

/// A TCP relay that can flip one byte of what the server sends, or cut the connection in
/// the middle of a record, after the handshake.
async fn tampering_relay(
    upstream: std::net::SocketAddr,
    tamper: Arc<AtomicU8>,
) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut down, _)) = listener.accept().await else {
                return;
            };
            let tamper = tamper.clone();
            tokio::spawn(async move {
                let Ok(mut up) = TcpStream::connect(upstream).await else {
                    return;
                };
                let (mut down_r, mut down_w) = down.split();
                let (mut up_r, mut up_w) = up.split();
                let to_server = tokio::io::copy(&mut down_r, &mut up_w);
                let to_client = async {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match up_r.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        match tamper.swap(PASS, Ordering::SeqCst) {
                            FLIP_A_BYTE => buf[n / 2] ^= 0x5a,
                            CUT_MID_RECORD => {
                                let _ = down_w.write_all(&buf[..n / 2]).await;
                                return;
                            }
                            _ => {}
                        }
                        if down_w.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                };
                tokio::select! {
                    _ = to_server => {}
                    _ = to_client => {}
                }
            });
        }
    });
    addr
}

/// Damages the server → client byte stream once the client is up over TCP, and checks
/// that the client reports `reason`, reconnects on its own and works again.
async fn damage_and_recover(damage: u8, expect: kedge_tunnel::FailureReason) {
    let pki = pki();
    let server = server(&pki, None, Some(localhost())).await;
    let tamper = Arc::new(AtomicU8::new(PASS));
    let relay = tampering_relay(server.tcp_addr().unwrap(), tamper.clone()).await;
    let mut config = fast_config();
    config.quic_connect_timeout = Duration::from_millis(200);
    let client = client(client_tls(&pki, &pki, "edge-5"), relay, relay, config);
    wait_connected(&client, Transport::Tcp, WITHIN).await;
    let conn = accept_conn(&server).await;
    let before = client.counters().failures;

    // Damage the next server → client chunk, then make the server send one.
    tamper.store(damage, Ordering::SeqCst);
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    let _ = send.write_all(&[7u8; 4096]).await;
    wait_disconnected(&client, WITHIN).await;
    let counters = client.counters();
    assert_eq!(
        counters.failures.get(expect),
        before.get(expect) + 1,
        "{counters:?}"
    );

    // The client comes back on its own over a clean connection.
    wait_connected(&client, Transport::Tcp, WITHIN).await;
    let conn = accept_conn(&server).await;
    exercise_streams(&client, &conn).await;
    assert_eq!(client.counters().reconnects, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_tcp_frame_is_an_error_and_the_client_reconnects() {
    // TLS rejects the modified record (bad MAC): a protocol failure, never a panic.
    damage_and_recover(FLIP_A_BYTE, kedge_tunnel::FailureReason::Protocol).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_tcp_stream_is_an_error_and_the_client_reconnects() {
    // The connection ends inside a TLS record, without close_notify.
    damage_and_recover(CUT_MID_RECORD, kedge_tunnel::FailureReason::Closed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn returns_to_quic_when_udp_comes_back() {
    let pki = pki();
    let tcp_server = server(&pki, None, Some(localhost())).await;
    let port = tcp_server.tcp_addr().unwrap();
    let mut config = fast_config();
    config.quic_retry_interval = Duration::from_secs(1);
    let client = client(client_tls(&pki, &pki, "edge-6"), port, port, config);
    wait_connected(&client, Transport::Tcp, WITHIN).await;
    let tcp_conn = accept_conn(&tcp_server).await;

    // UDP becomes reachable: a QUIC listener appears on the same port number.
    let quic_server = server(&pki, Some(port), None).await;
    wait_connected(&client, Transport::Quic, WITHIN).await;
    let conn = accept_conn(&quic_server).await;
    exercise_streams(&client, &conn).await;
    let counters = client.counters();
    assert_eq!(counters.switches_to_quic, 1, "{counters:?}");
    assert_eq!(counters.reconnects, 0, "{counters:?}");
    // The replaced TCP connection was closed by the client.
    assert!(
        tokio::time::timeout(WITHIN, tcp_conn.closed())
            .await
            .is_ok(),
        "the tcp connection stayed open after the switch"
    );
}

/// The Kubernetes API and the TCP fallback share TCP 6443: the API listener offers the
/// tunnel's ALPN next to its own and hands such connections to the tunnel server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_listener_hands_over_tunnel_connections_by_alpn() {
    let pki = pki();
    let server = Arc::new(server(&pki, None, None).await);
    let mut api_tls = (*server.rustls_config()).clone();
    api_tls.alpn_protocols = vec![
        b"h2".to_vec(),
        b"http/1.1".to_vec(),
        kedge_tunnel::ALPN.to_vec(),
    ];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(api_tls));
    let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_addr = api.local_addr().unwrap();
    let handed_over = server.clone();
    tokio::spawn(async move {
        while let Ok((tcp, remote)) = api.accept().await {
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                continue;
            };
            if tls.get_ref().1.alpn_protocol() == Some(kedge_tunnel::ALPN) {
                handed_over.adopt_tls(tls, remote).unwrap();
            } else {
                // What the apiserver would serve; adopting it must be refused.
                let _ = tls.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
            }
        }
    });

    let mut config = fast_config();
    config.quic_connect_timeout = Duration::from_millis(200);
    // Nothing answers QUIC on the API port: the client falls back to TCP by itself.
    let client = client(client_tls(&pki, &pki, "edge-7"), api_addr, api_addr, config);
    wait_connected(&client, Transport::Tcp, WITHIN).await;
    let conn = accept_conn(&server).await;
    let identity = kedge_pki::client_identity(conn.peer_certificate().unwrap()).unwrap();
    assert_eq!(identity.user, "system:node:edge-7");
    exercise_streams(&client, &conn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopting_a_connection_without_the_tunnel_alpn_is_refused() {
    let pki = pki();
    let server = server(&pki, None, None).await;
    let mut api_tls = (*server.rustls_config()).clone();
    api_tls.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(api_tls));
    let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_addr = api.local_addr().unwrap();

    // A plain HTTPS client (kubectl, say) with a valid client certificate, speaking h2.
    let tls = client_tls(&pki, &pki, "kubectl");
    let mut client_config = (*tls.rustls_config().unwrap()).clone();
    client_config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config));
    let dial = tokio::spawn(async move {
        let tcp = TcpStream::connect(api_addr).await.unwrap();
        let name = tls.server_name().unwrap();
        let stream = connector.connect(name, tcp).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(stream);
    });
    let (tcp, remote) = api.accept().await.unwrap();
    let stream = acceptor.accept(tcp).await.unwrap();
    let err = server.adopt_tls(stream, remote).unwrap_err();
    assert!(
        matches!(err, kedge_tunnel::TunnelError::Alpn { .. }),
        "{err:?}"
    );
    dial.await.unwrap();
}

/// A server that also lets clients without a certificate in (bootstrap), on QUIC or TCP.
async fn bootstrap_server(pki: &Pki, quic: bool) -> TunnelServer {
    let tls = server_tls(pki).allow_unauthenticated();
    assert_eq!(
        tls.client_auth,
        kedge_tunnel::ClientAuth::AllowUnauthenticated
    );
    TunnelServer::bind(kedge_tunnel::ServerOptions {
        quic_addr: quic.then(localhost),
        tcp_addr: (!quic).then(localhost),
        config: fast_config(),
        tls,
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_clients_without_a_certificate_when_the_server_allows_them() {
    let pki = pki();
    for (quic, transport) in [(true, Transport::Quic), (false, Transport::Tcp)] {
        let server = bootstrap_server(&pki, quic).await;
        let addr = server.quic_addr().or(server.tcp_addr()).unwrap();

        // The CA download: no client certificate, the server not verified.
        let insecure = client(
            kedge_tunnel::ClientTls::insecure_for_ca_download("localhost"),
            addr,
            addr,
            fast_config(),
        );
        wait_connected(&insecure, transport, WITHIN).await;
        let conn = accept_conn(&server).await;
        assert!(conn.peer_certificate().is_none(), "{transport}");
        assert!(conn.peer_certificates().is_empty());
        let serving = tokio::spawn({
            let conn = conn.clone();
            async move { answer_reversed(conn.accept_bi().await.unwrap()).await }
        });
        let (send, recv) = insecure.open_bi().await.unwrap();
        assert_eq!(call(send, recv, b"ca?").await, b"?ac");
        serving.await.unwrap();
        drop(insecure);

        // The join: the server verified against its CA, still no client certificate.
        let joining = client(
            kedge_tunnel::ClientTls::without_identity(pki.pki.server_ca_pem(), "localhost")
                .unwrap(),
            addr,
            addr,
            fast_config(),
        );
        wait_connected(&joining, transport, WITHIN).await;
        assert!(accept_conn(&server).await.peer_certificate().is_none());
        drop(joining);

        // A node with its certificate is still authenticated on the same server.
        let node = client(client_tls(&pki, &pki, "edge-9"), addr, addr, fast_config());
        wait_connected(&node, transport, WITHIN).await;
        let conn = accept_conn(&server).await;
        let identity = kedge_pki::client_identity(conn.peer_certificate().unwrap()).unwrap();
        assert_eq!(identity.user, "system:node:edge-9");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_server_still_refuses_a_certificate_from_another_ca() {
    let pki = pki();
    let stranger = common::pki();
    for quic in [true, false] {
        let server = bootstrap_server(&pki, quic).await;
        let addr = server.quic_addr().or(server.tcp_addr()).unwrap();
        let _client = client(
            client_tls(&pki, &stranger, "intruder"),
            addr,
            addr,
            fast_config(),
        );
        let accepted = tokio::time::timeout(Duration::from_secs(3), server.accept()).await;
        assert!(accepted.is_err(), "accepted a stranger (quic {quic})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_server_refuses_clients_without_a_certificate() {
    let pki = pki();
    for (quic, tcp) in [(true, false), (false, true)] {
        let server = server(&pki, quic.then(localhost), tcp.then(localhost)).await;
        let addr = server.quic_addr().or(server.tcp_addr()).unwrap();
        let _client = client(
            kedge_tunnel::ClientTls::without_identity(pki.pki.server_ca_pem(), "localhost")
                .unwrap(),
            addr,
            addr,
            fast_config(),
        );
        let accepted = tokio::time::timeout(Duration::from_secs(3), server.accept()).await;
        assert!(accepted.is_err(), "accepted a client without a certificate");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_verifying_against_another_ca_does_not_connect() {
    let pki = pki();
    let stranger = common::pki();
    let server = bootstrap_server(&pki, false).await;
    let addr = server.tcp_addr().unwrap();
    let client = client(
        kedge_tunnel::ClientTls::without_identity(stranger.pki.server_ca_pem(), "localhost")
            .unwrap(),
        addr,
        addr,
        fast_config(),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(client.connection().is_none());
    assert!(
        client.counters().failures.tls >= 1,
        "{:?}",
        client.counters()
    );
}
