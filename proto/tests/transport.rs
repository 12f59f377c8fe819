//! gRPC over real tunnel connections on loopback: the agent calls a server-side service
//! over a stream it opens, and the server calls an agent-side service over a reverse
//! stream, on QUIC and on the TCP fallback.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use kedge_pki::{PkiOptions, ServerPki};
use kedge_proto::transport;
use kedge_proto::v1::agent_streams_client::AgentStreamsClient;
use kedge_proto::v1::agent_streams_server::{AgentStreams, AgentStreamsServer};
use kedge_proto::v1::bootstrap_client::BootstrapClient;
use kedge_proto::v1::bootstrap_server::{Bootstrap, BootstrapServer};
use kedge_proto::v1::{self as v1};
use kedge_tunnel::{
    ClientOptions, ClientTls, Jitter, ServerOptions, ServerTls, Transport, TunnelClient,
    TunnelConfig, TunnelServer,
};
use tonic::{Request, Response, Status, Streaming};

struct TestBootstrap;

#[tonic::async_trait]
impl Bootstrap for TestBootstrap {
    async fn get_ca(
        &self,
        _: Request<v1::GetCaRequest>,
    ) -> Result<Response<v1::GetCaResponse>, Status> {
        Ok(Response::new(v1::GetCaResponse {
            ca_pem: "the ca".into(),
        }))
    }

    async fn join(
        &self,
        _: Request<v1::JoinRequest>,
    ) -> Result<Response<v1::JoinResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
}

struct TestAgent;

type Boxed<T> = std::pin::Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl AgentStreams for TestAgent {
    type LogsStream = Boxed<v1::Chunk>;
    type ExecStream = Boxed<v1::ExecOutput>;
    type PortForwardStream = Boxed<v1::PortForwardFrame>;

    async fn logs(
        &self,
        _: Request<v1::LogsRequest>,
    ) -> Result<Response<Self::LogsStream>, Status> {
        let chunks = (0..3).map(|i| {
            Ok(v1::Chunk {
                data: format!("line {i}\n").into_bytes(),
            })
        });
        Ok(Response::new(Box::pin(futures::stream::iter(chunks))))
    }

    async fn exec(
        &self,
        _: Request<Streaming<v1::ExecInput>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn port_forward(
        &self,
        _: Request<Streaming<v1::PortForwardFrame>>,
    ) -> Result<Response<Self::PortForwardStream>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn stats(
        &self,
        _: Request<v1::StatsRequest>,
    ) -> Result<Response<v1::StatsResponse>, Status> {
        Ok(Response::new(v1::StatsResponse {
            summary: b"{}".to_vec(),
        }))
    }
}

fn config() -> TunnelConfig {
    TunnelConfig {
        keepalive_interval: Duration::from_millis(500),
        idle_timeout: Duration::from_secs(3),
        quic_connect_timeout: Duration::from_millis(500),
        backoff_base: Duration::from_millis(50),
        backoff_cap: Duration::from_millis(500),
        jitter: Jitter::Full,
        ..TunnelConfig::default()
    }
}

async fn round_trip(quic: bool) {
    let dir = tempfile::tempdir().unwrap();
    let pki =
        ServerPki::load_or_create(dir.path(), &PkiOptions::default(), SystemTime::now()).unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = TunnelServer::bind(ServerOptions {
        quic_addr: quic.then_some(any),
        tcp_addr: Some(any),
        config: config(),
        tls: ServerTls::from_pem(
            pki.serving_cert_pem(),
            pki.serving_key_pem(),
            pki.client_ca_pem(),
        )
        .unwrap(),
    })
    .await
    .unwrap();
    let tcp_addr = server.tcp_addr().unwrap();
    // Without a QUIC listener, point QUIC at a port nobody serves: the client falls back.
    let quic_addr = server.quic_addr().unwrap_or(tcp_addr);

    let cert = pki
        .issue_client_cert(
            "system:node:n1",
            &["system:nodes"],
            Duration::from_secs(3600),
            SystemTime::now(),
        )
        .unwrap();
    let client = std::sync::Arc::new(
        TunnelClient::start(ClientOptions {
            quic_addr,
            tcp_addr,
            config: config(),
            tls: ClientTls::from_pem(
                pki.server_ca_pem(),
                &cert.cert_pem,
                &cert.key_pem,
                "localhost",
            )
            .unwrap(),
        })
        .unwrap(),
    );

    // The agent serves AgentStreams on the streams the server opens.
    let agent_conn = tokio::time::timeout(Duration::from_secs(10), client.connected())
        .await
        .expect("the agent connects within 10 s")
        .unwrap();
    let want = if quic {
        Transport::Quic
    } else {
        Transport::Tcp
    };
    assert_eq!(agent_conn.transport(), want);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AgentStreamsServer::new(TestAgent))
            .serve_with_incoming(transport::agent_incoming(client.clone())),
    );

    // The server serves Bootstrap on the streams the agent opens.
    let server_conn = server.accept().await.expect("the server accepts the agent");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(BootstrapServer::new(TestBootstrap))
            .serve_with_incoming(transport::incoming(server_conn.clone())),
    );

    let mut bootstrap = BootstrapClient::new(transport::channel(agent_conn.clone()));
    let ca = bootstrap
        .get_ca(v1::GetCaRequest {})
        .await
        .expect("agent → server call over the tunnel");
    assert_eq!(ca.into_inner().ca_pem, "the ca");

    let mut agent = AgentStreamsClient::new(transport::channel(server_conn.clone()));
    let stats = agent
        .stats(v1::StatsRequest {})
        .await
        .expect("server → agent call");
    assert_eq!(stats.into_inner().summary, b"{}");
    let mut logs = agent
        .logs(v1::LogsRequest::default())
        .await
        .expect("server → agent streaming call")
        .into_inner();
    let mut text = String::new();
    while let Some(chunk) = logs.message().await.unwrap() {
        text.push_str(std::str::from_utf8(&chunk.data).unwrap());
    }
    assert_eq!(text, "line 0\nline 1\nline 2\n");

    // Many calls share the one HTTP/2 connection, i.e. one tunnel stream per direction.
    for _ in 0..20 {
        bootstrap.get_ca(v1::GetCaRequest {}).await.unwrap();
    }
    let counters = client.counters();
    assert_eq!(counters.streams_opened, 1, "counters: {counters:?}");
    assert_eq!(counters.streams_accepted, 1, "counters: {counters:?}");
}

#[tokio::test]
async fn grpc_both_ways_over_quic() {
    round_trip(true).await;
}

#[tokio::test]
async fn grpc_both_ways_over_tcp_fallback() {
    round_trip(false).await;
}
