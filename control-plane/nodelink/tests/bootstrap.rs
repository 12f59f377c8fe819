//! Bootstrap end to end over a real tunnel on loopback: the agent's `bootstrap` against the
//! server's `Bootstrapper`, on a tunnel server that admits connections without a client
//! certificate for bootstrap only. Then the node's mutual-TLS connection, and certificate
//! renewal over it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kedge_agent::bootstrap::{
    AgentPaths, BootstrapError, BootstrapOptions, NodeCredentials, RenewalPolicy, bootstrap,
    renew_if_due,
};
use kedge_apiserver::registry::Registry;
use kedge_datastore::{Clock, ManualClock};
use kedge_nodelink::bootstrap::{BootstrapConfig, Bootstrapper};
use kedge_nodelink::tokens;
use kedge_pki::{PkiOptions, ServerPki};
use kedge_proto::token::{BootstrapToken, Token};
use kedge_proto::transport;
use kedge_proto::v1::node_client::NodeClient;
use kedge_proto::v1::node_server::{Node, NodeServer};
use kedge_proto::v1::*;
use kedge_tunnel::{
    ClientOptions, Jitter, ServerOptions, ServerTls, TunnelClient, TunnelConfig, TunnelServer,
};
use tonic::{Request, Response, Status};

fn fast_config() -> TunnelConfig {
    TunnelConfig {
        keepalive_interval: Duration::from_millis(500),
        idle_timeout: Duration::from_secs(5),
        quic_connect_timeout: Duration::from_secs(2),
        tcp_connect_timeout: Duration::from_secs(3),
        backoff_base: Duration::from_millis(50),
        backoff_factor: 2.0,
        backoff_cap: Duration::from_millis(500),
        jitter: Jitter::Full,
        ..TunnelConfig::default()
    }
}

/// The `Node` service, renewal only, for the node named by the connection's certificate.
struct RenewOnly {
    bootstrapper: Bootstrapper,
    node: String,
}

#[tonic::async_trait]
impl Node for RenewOnly {
    type SyncStream = futures::stream::Empty<Result<SyncBatch, Status>>;

    async fn sync(&self, _: Request<SyncRequest>) -> Result<Response<Self::SyncStream>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
    async fn ack(&self, _: Request<AckRequest>) -> Result<Response<AckResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
    async fn report(&self, _: Request<ReportBatch>) -> Result<Response<ReportResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
    async fn renew_certificate(
        &self,
        request: Request<RenewRequest>,
    ) -> Result<Response<RenewResponse>, Status> {
        self.bootstrapper
            .renew(&self.node, &request.get_ref().csr_der)
            .await
            .map(Response::new)
    }
}

struct Server {
    _dirs: Vec<tempfile::TempDir>,
    clock: Arc<ManualClock>,
    registry: Registry,
    pki: Arc<ServerPki>,
    tunnel: Arc<TunnelServer>,
    /// The node names of the mutual-TLS connections accepted, in order.
    nodes: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Server {
    fn addr(&self) -> String {
        self.tunnel.quic_addr().unwrap().to_string()
    }

    fn secure_token(&self, bootstrap: &str) -> String {
        Token::secure(
            &kedge_pki::ca_hash(self.pki.server_ca_pem()),
            BootstrapToken::parse(bootstrap).unwrap(),
        )
        .unwrap()
        .to_string()
    }
}

async fn server() -> Server {
    let data = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    let mut config = kedge_datastore_sqlite::SqliteConfig::new(data.path().join("state.db"));
    config.clock = clock.clone();
    let store = kedge_datastore_sqlite::SqliteStore::open(config)
        .await
        .unwrap();
    let api = kedge_apiserver::ApiServer::start(
        Arc::new(store),
        clock.clone(),
        kedge_apiserver::Config::default(),
        kedge_apiserver::TokenFile::default(),
    )
    .await
    .unwrap();
    let registry = api.registry.clone();
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = Arc::new(
        ServerPki::load_or_create(pki_dir.path(), &PkiOptions::default(), clock.now()).unwrap(),
    );
    let tls = ServerTls::from_pem(
        pki.serving_cert_pem(),
        pki.serving_key_pem(),
        pki.client_ca_pem(),
    )
    .unwrap()
    .allow_unauthenticated();
    let tunnel = Arc::new(
        TunnelServer::bind(ServerOptions {
            quic_addr: Some("127.0.0.1:0".parse().unwrap()),
            tcp_addr: None,
            config: fast_config(),
            tls,
        })
        .await
        .unwrap(),
    );
    let bootstrapper = Bootstrapper::new(
        registry.clone(),
        pki.clone(),
        clock.clone(),
        BootstrapConfig {
            node_cert_validity: Duration::from_secs(3 * 3600),
        },
    );
    let (nodes_tx, nodes) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn({
        let tunnel = tunnel.clone();
        async move {
            while let Some(conn) = tunnel.accept().await {
                let bootstrapper = bootstrapper.clone();
                let incoming = transport::incoming(conn.clone());
                let router = match conn.peer_certificate() {
                    None => {
                        tonic::transport::Server::builder().add_service(bootstrapper.into_service())
                    }
                    Some(cert) => {
                        let user = kedge_pki::client_identity(cert).unwrap().user;
                        let node = user.strip_prefix("system:node:").unwrap().to_owned();
                        let _ = nodes_tx.send(node.clone());
                        tonic::transport::Server::builder()
                            .add_service(NodeServer::new(RenewOnly { bootstrapper, node }))
                    }
                };
                tokio::spawn(router.serve_with_incoming(incoming));
            }
        }
    });
    Server {
        _dirs: vec![data, pki_dir],
        clock,
        registry,
        pki,
        tunnel,
        nodes,
    }
}

/// Runs `f`, failing the test if it takes longer than 20 s.
async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: still waiting after 20 s"))
}

fn options(server: &Server, dir: &Path, token: &str, node: &str) -> BootstrapOptions {
    BootstrapOptions {
        server: format!("https://{}", server.addr()),
        token: token.to_owned(),
        node_name: node.to_owned(),
        data_dir: dir.to_owned(),
        node_password_file: dir.join("node/password"),
        insecure_skip_ca_hash: false,
        tunnel: fast_config(),
        connect_timeout: Duration::from_secs(10),
    }
}

/// The node's own mutual-TLS tunnel, as the agent runs it after bootstrap.
fn node_tunnel(server: &Server, creds: &NodeCredentials) -> TunnelClient {
    let addr = server.tunnel.quic_addr().unwrap();
    TunnelClient::start(ClientOptions {
        quic_addr: addr,
        tcp_addr: addr,
        config: fast_config(),
        tls: creds.client_tls("127.0.0.1").unwrap(),
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_connect_and_renew() {
    let mut server = server().await;
    let now = server.clock.now();
    tokens::create(
        &server.registry,
        &BootstrapToken::parse("abcdef.0123456789abcdef").unwrap(),
        Some(Duration::from_secs(3600)),
        "",
        now,
    )
    .await
    .unwrap();
    let token = server.secure_token("abcdef.0123456789abcdef");
    let machine = tempfile::tempdir().unwrap();
    let options = options(&server, machine.path(), &token, "edge-1");

    let creds = within("bootstrap", bootstrap(&options, now)).await.unwrap();
    assert_eq!(creds.server_ca_pem, server.pki.server_ca_pem());
    let paths = AgentPaths::new(machine.path());
    for file in [
        paths.cert(),
        paths.key(),
        paths.server_ca(),
        options.node_password_file.clone(),
    ] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }

    // A restart reuses the stored certificate, even once the token is gone.
    tokens::delete(&server.registry, "abcdef").await.unwrap();
    let again = within("reuse", bootstrap(&options, now)).await.unwrap();
    assert_eq!(again.cert_pem, creds.cert_pem);

    // The node's own connection is authenticated as the node.
    let tunnel = node_tunnel(&server, &creds);
    let conn = tokio::time::timeout(Duration::from_secs(10), tunnel.connected())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        within("node seen", server.nodes.recv()).await.unwrap(),
        "edge-1"
    );

    // Renewal over it, once due (a third of 3 hours left).
    let mut client = NodeClient::new(transport::channel(conn));
    let policy = RenewalPolicy::default();
    let early = within(
        "not due",
        renew_if_due(&mut client, &paths, "edge-1", &creds, &policy, now),
    )
    .await
    .unwrap();
    assert!(early.is_none());
    // (Only the agent's clock moves: the server signs at the real time, which its TLS
    // verifier also uses.)
    let later = now + Duration::from_secs(2 * 3600 + 60);
    let renewed = within(
        "renew",
        renew_if_due(&mut client, &paths, "edge-1", &creds, &policy, later),
    )
    .await
    .unwrap()
    .expect("renewed");
    assert!(renewed.not_after >= creds.not_after);
    assert_ne!(renewed.cert_pem, creds.cert_pem);
    assert_ne!(renewed.key_pem, creds.key_pem);
    assert_eq!(
        std::fs::read_to_string(paths.cert()).unwrap(),
        renewed.cert_pem
    );
    assert_eq!(
        std::fs::read_to_string(paths.key()).unwrap(),
        renewed.key_pem
    );
    // The renewed certificate works for a new connection.
    let tunnel = node_tunnel(&server, &renewed);
    tokio::time::timeout(Duration::from_secs(10), tunnel.connected())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        within("node seen", server.nodes.recv()).await.unwrap(),
        "edge-1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals() {
    let server = server().await;
    let now = server.clock.now();
    tokens::create(
        &server.registry,
        &BootstrapToken::parse("abcdef.0123456789abcdef").unwrap(),
        Some(Duration::from_secs(3600)),
        "",
        now,
    )
    .await
    .unwrap();
    let token = server.secure_token("abcdef.0123456789abcdef");

    // A token pinning another CA: the agent stops before sending anything secret.
    let machine = tempfile::tempdir().unwrap();
    let wrong = format!("K10{}::abcdef.0123456789abcdef", "0".repeat(64));
    let err = bootstrap(&options(&server, machine.path(), &wrong, "edge-1"), now)
        .await
        .unwrap_err();
    assert!(matches!(err, BootstrapError::CaMismatch { .. }), "{err}");
    assert!(err.to_string().contains("man in the middle"), "{err}");
    assert!(
        !machine
            .path()
            .join("agent")
            .join("client-node.crt")
            .exists()
    );

    // A short token: refused without the flag, works with it.
    let short = "abcdef.0123456789abcdef";
    let err = bootstrap(&options(&server, machine.path(), short, "edge-1"), now)
        .await
        .unwrap_err();
    assert!(matches!(err, BootstrapError::NoCaHash), "{err}");
    let mut insecure = options(&server, machine.path(), short, "edge-1");
    insecure.insecure_skip_ca_hash = true;
    bootstrap(&insecure, now).await.unwrap();

    // A second machine under the same node name.
    let intruder = tempfile::tempdir().unwrap();
    let err = bootstrap(&options(&server, intruder.path(), &token, "edge-1"), now)
        .await
        .unwrap_err();
    match &err {
        BootstrapError::Refused { code, message, .. } => {
            assert_eq!(*code, tonic::Code::PermissionDenied, "{err}");
            assert!(message.contains("already taken"), "{err}");
        }
        other => panic!("{other}"),
    }

    // An expired token, then a revoked one.
    let later = now + Duration::from_secs(3601);
    server.clock.advance(Duration::from_secs(3601));
    let fresh = tempfile::tempdir().unwrap();
    let err = bootstrap(&options(&server, fresh.path(), &token, "edge-2"), later)
        .await
        .unwrap_err();
    match &err {
        BootstrapError::Refused { code, message, .. } => {
            assert_eq!(*code, tonic::Code::Unauthenticated, "{err}");
            assert!(message.contains("expired"), "{err}");
        }
        other => panic!("{other}"),
    }
    tokens::delete(&server.registry, "abcdef").await.unwrap();
    let err = bootstrap(&options(&server, fresh.path(), &token, "edge-2"), later)
        .await
        .unwrap_err();
    match &err {
        BootstrapError::Refused { code, message, .. } => {
            assert_eq!(*code, tonic::Code::Unauthenticated, "{err}");
            assert!(message.contains("not known"), "{err}");
        }
        other => panic!("{other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_a_certificate_gets_no_node_service() {
    let server = server().await;
    // Connected without a certificate, the Node service is not there: only Bootstrap.
    let addr = server.tunnel.quic_addr().unwrap();
    let tunnel = TunnelClient::start(ClientOptions {
        quic_addr: addr,
        tcp_addr: addr,
        config: fast_config(),
        tls: kedge_tunnel::ClientTls::without_identity(server.pki.server_ca_pem(), "127.0.0.1")
            .unwrap(),
    })
    .unwrap();
    let conn = tokio::time::timeout(Duration::from_secs(10), tunnel.connected())
        .await
        .unwrap()
        .unwrap();
    let mut client = NodeClient::new(transport::channel(conn));
    let err = client
        .renew_certificate(RenewRequest { csr_der: vec![] })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented, "{err:?}");
}
