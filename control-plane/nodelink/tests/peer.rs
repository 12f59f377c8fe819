//! Streams forwarded between two servers of one cluster, with the real kubectl.
//!
//! Two in-process servers (A and B) share one SQLite datastore and one CA, each with its
//! own API listener and tunnel. A fake agent — a real tunnel client with a node
//! certificate, serving a scripted `AgentStreams` (its containers log, echo stdin and
//! echo a port) — connects to B. kubectl talks to A only: logs, exec (exit codes and
//! stdin), port-forward and the stats proxy must reach the agent through B (peer ALPN,
//! server certificates). A record naming a dead server, and a node no server holds,
//! answer "error dialing backend" naming the node.
//!
//! The real agent has no container runtime yet, so this fake is the only way to drive
//! exec and port-forward data through the forwarding; control-plane/kedge/tests/link_ha.rs
//! drives the real binaries.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::{Stream, StreamExt};
use kedge_apiserver::{ApiServer, Config, TlsMaterial, TokenFile};
use kedge_datastore::{Store, WriteOptions};
use kedge_nodelink::streams::LinkStreams;
use kedge_nodelink::{LinkOptions, NodeLink};
use kedge_pki::{PkiOptions, ServerPki};
use kedge_proto::v1::agent_streams_server::{AgentStreams, AgentStreamsServer};
use kedge_proto::v1::*;
use kedge_tunnel::{ClientOptions, ClientTls, Jitter, TunnelClient, TunnelConfig};
use tonic::{Request, Response, Status, Streaming};

const KUBECTL: &str = "/usr/bin/kubectl";

fn fast() -> TunnelConfig {
    TunnelConfig {
        keepalive_interval: Duration::from_millis(500),
        idle_timeout: Duration::from_secs(5),
        quic_connect_timeout: Duration::from_secs(2),
        backoff_base: Duration::from_millis(50),
        backoff_cap: Duration::from_millis(500),
        jitter: Jitter::Full,
        ..TunnelConfig::default()
    }
}

/// The fake agent's containers: logs "one two three", commands echo stdin and exit with
/// the number after `exit `, port 8080 echoes.
struct FakeAgent;

type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl AgentStreams for FakeAgent {
    type LogsStream = Boxed<Chunk>;
    type ExecStream = Boxed<ExecOutput>;
    type PortForwardStream = Boxed<PortForwardFrame>;

    async fn logs(&self, r: Request<LogsRequest>) -> Result<Response<Self::LogsStream>, Status> {
        let r = r.into_inner();
        let lines: Vec<Result<Chunk, Status>> = ["one", "two", "three"]
            .iter()
            .map(|l| {
                Ok(Chunk {
                    data: format!("{}/{}: {l}\n", r.pod, r.container).into_bytes(),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(futures::stream::iter(lines))))
    }

    async fn exec(
        &self,
        r: Request<Streaming<ExecInput>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        let mut input = r.into_inner();
        let Some(Ok(ExecInput {
            input: Some(exec_input::Input::Start(start)),
        })) = input.next().await
        else {
            return Err(Status::invalid_argument("no start"));
        };
        let code = start
            .command
            .last()
            .and_then(|c| c.strip_prefix("exit "))
            .and_then(|c| c.trim().parse().ok())
            .unwrap_or(0);
        let out = |o| Ok(ExecOutput { output: Some(o) });
        let echo = input
            .take_while(|m| {
                futures::future::ready(!matches!(
                    m,
                    Ok(ExecInput {
                        input: Some(exec_input::Input::StdinClosed(_))
                    }) | Err(_)
                ))
            })
            .filter_map(move |m| {
                futures::future::ready(match m {
                    Ok(ExecInput {
                        input: Some(exec_input::Input::Stdin(b)),
                    }) => Some(out(exec_output::Output::Stdout(b))),
                    _ => None,
                })
            });
        let echo: Boxed<ExecOutput> = if start.stdin {
            Box::pin(echo)
        } else {
            Box::pin(futures::stream::empty())
        };
        let exit = futures::stream::once(async move {
            out(exec_output::Output::Exit(ExecExit {
                code,
                message: String::new(),
            }))
        });
        Ok(Response::new(Box::pin(echo.chain(exit))))
    }

    async fn port_forward(
        &self,
        r: Request<Streaming<PortForwardFrame>>,
    ) -> Result<Response<Self::PortForwardStream>, Status> {
        let mut input = r.into_inner();
        match input.next().await {
            Some(Ok(PortForwardFrame {
                frame: Some(port_forward_frame::Frame::Start(s)),
            })) if s.port == 8080 => {}
            _ => return Err(Status::failed_precondition("only port 8080 answers")),
        }
        let frame = |f| Ok(PortForwardFrame { frame: Some(f) });
        let echo = input
            .take_while(|m| {
                futures::future::ready(matches!(
                    m,
                    Ok(PortForwardFrame {
                        frame: Some(port_forward_frame::Frame::Data(_))
                    })
                ))
            })
            .filter_map(move |m| {
                futures::future::ready(match m {
                    Ok(PortForwardFrame {
                        frame: Some(port_forward_frame::Frame::Data(d)),
                    }) => Some(frame(port_forward_frame::Frame::Data(d))),
                    _ => None,
                })
            })
            .chain(futures::stream::once(async move {
                frame(port_forward_frame::Frame::Closed(true))
            }));
        Ok(Response::new(Box::pin(echo)))
    }

    async fn stats(&self, _: Request<StatsRequest>) -> Result<Response<StatsResponse>, Status> {
        Ok(Response::new(StatsResponse {
            summary: br#"{"node":{"nodeName":"fake-node"},"pods":[]}"#.to_vec(),
        }))
    }
}

/// One server: API listener (with the tunnel and peer hand-over) and node link.
struct Server {
    link: Arc<NodeLink>,
    addr: SocketAddr,
}

async fn server(store: Arc<dyn Store>, pki: Arc<ServerPki>, id: &str) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let api = ApiServer::start(
        store,
        Arc::new(kedge_datastore::SystemClock),
        Config {
            advertise_address: addr.to_string(),
            ..Config::default()
        },
        TokenFile::default(),
    )
    .await
    .unwrap();
    let link = NodeLink::start(
        &api,
        pki.clone(),
        Arc::new(kedge_datastore::SystemClock),
        LinkOptions {
            quic_addr: Some("127.0.0.1:0".parse().unwrap()),
            tcp_addr: None,
            tunnel: fast(),
            bootstrap: Default::default(),
            server_id: id.to_string(),
            advertise_address: addr.to_string(),
            lease: Default::default(),
        },
    )
    .await
    .unwrap();
    api.set_node_streams(Arc::new(LinkStreams::new(link.clone())))
        .unwrap();
    let mut tls = (*kedge_apiserver::tls_config(&TlsMaterial {
        cert_chain: pki.serving_cert_chain_der(),
        key_pkcs8: pki.serving_key_der().to_vec(),
        client_ca: pki.client_ca_der().to_vec(),
    })
    .unwrap())
    .clone();
    tls.alpn_protocols.push(kedge_tunnel::ALPN.to_vec());
    tls.alpn_protocols
        .push(kedge_nodelink::peer::PEER_ALPN.to_vec());
    tokio::spawn(kedge_apiserver::serve(
        api.clone(),
        listener,
        Arc::new(tls),
        Some(Arc::new(link.handoff())),
        std::future::pending(),
    ));
    Server { link, addr }
}

/// Both servers, the fake agent connected to B, and kubectl pointed at A.
struct Cluster {
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    runtime: tokio::runtime::Runtime,
    store: Arc<dyn Store>,
    _a: Server,
    _b: Server,
    _agent: Arc<TunnelClient>,
}

impl Cluster {
    fn start() -> Cluster {
        assert!(
            Path::new(KUBECTL).exists(),
            "these tests drive the real kubectl, expected at {KUBECTL}"
        );
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let pki = Arc::new(
            ServerPki::load_or_create(
                &dir.path().join("tls"),
                &PkiOptions::default(),
                SystemTime::now(),
            )
            .unwrap(),
        );
        let db = dir.path().join("state.db");
        let (store, a, b, agent) = runtime.block_on(async {
            let store: Arc<dyn Store> = Arc::new(
                kedge_datastore_sqlite::SqliteStore::open(
                    kedge_datastore_sqlite::SqliteConfig::new(db),
                )
                .await
                .unwrap(),
            );
            let a = server(store.clone(), pki.clone(), "server-a").await;
            let b = server(store.clone(), pki.clone(), "server-b").await;
            // The fake agent dials B with a node certificate.
            let cert = pki
                .issue_client_cert(
                    "system:node:fake-node",
                    &["system:nodes"],
                    Duration::from_secs(3600),
                    SystemTime::now(),
                )
                .unwrap();
            let quic = b.link.quic_addr().unwrap();
            let agent = Arc::new(
                TunnelClient::start(ClientOptions {
                    quic_addr: quic,
                    tcp_addr: b.addr,
                    config: fast(),
                    tls: ClientTls::from_pem(
                        pki.server_ca_pem(),
                        &cert.cert_pem,
                        &cert.key_pem,
                        "127.0.0.1",
                    )
                    .unwrap(),
                })
                .unwrap(),
            );
            tokio::spawn(
                tonic::transport::Server::builder()
                    // gzip both ways, as the real agent serves it.
                    .add_service(
                        AgentStreamsServer::new(FakeAgent)
                            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
                            .send_compressed(tonic::codec::CompressionEncoding::Gzip),
                    )
                    .serve_with_incoming(kedge_proto::transport::agent_incoming(agent.clone())),
            );
            let deadline = Instant::now() + Duration::from_secs(20);
            while b.link.agent("fake-node").is_none()
                || a.link.tunnel_record("fake-node").await.is_none()
            {
                assert!(
                    Instant::now() < deadline,
                    "the fake agent never connected to B"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(a.link.agent("fake-node").is_none());
            (store, a, b, agent)
        });
        let kubeconfig = dir.path().join("kubeconfig");
        kedge_pki::write_kubeconfig(
            &kubeconfig,
            0o600,
            &format!("https://{}", a.addr),
            pki.server_ca_pem(),
            pki.admin_cert_pem(),
            pki.admin_key_pem(),
        )
        .unwrap();
        let c = Cluster {
            dir,
            kubeconfig,
            runtime,
            store,
            _a: a,
            _b: b,
            _agent: agent,
        };
        c.apply(r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"fake-node"}}"#);
        c.apply(
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":"default"},
               "spec":{"nodeName":"fake-node","containers":[{"name":"app","image":"busybox"}]}}"#,
        );
        c.ok(&[
            "patch",
            "pod",
            "web",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Running"}}"#,
        ]);
        c
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(KUBECTL);
        cmd.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.dir.path());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            stderr(&out)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn apply(&self, json: &str) {
        let mut child = self
            .cmd(&["create", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(json.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "create failed: {}", stderr(&out));
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn kubectl_on_one_server_reaches_an_agent_whose_tunnel_another_holds() {
    let c = Cluster::start();

    // Logs and the stats proxy, through B.
    assert_eq!(
        c.ok(&["logs", "web"]),
        "web/app: one\nweb/app: two\nweb/app: three\n"
    );
    let stats = c.ok(&[
        "get",
        "--raw",
        "/api/v1/nodes/fake-node/proxy/stats/summary",
    ]);
    assert!(stats.contains("\"nodeName\":\"fake-node\""), "{stats}");

    // Exec: exit codes, and stdin echoed back.
    let out = c.run(&["exec", "web", "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let mut child = c
        .cmd(&["exec", "-i", "web", "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello through two servers\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, b"hello through two servers\n");

    // Port-forward: two connections echo.
    let mut child = c
        .cmd(&["port-forward", "pod/web", ":8080"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let Some(Ok(first)) = lines.next() else {
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        panic!("kubectl port-forward said nothing: {err}");
    };
    let port: u16 = first
        .strip_prefix("Forwarding from 127.0.0.1:")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected kubectl output: {first}"));
    for round in 0..2 {
        let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let msg = format!("ping {round}");
        conn.write_all(msg.as_bytes()).unwrap();
        let mut buf = vec![0; msg.len()];
        conn.read_exact(&mut buf).unwrap();
        assert_eq!(buf, msg.as_bytes());
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn stale_or_missing_tunnel_records_are_dialing_errors_naming_the_node() {
    let c = Cluster::start();
    c.apply(r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"ghost"}}"#);
    c.apply(r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"nowhere"}}"#);
    // A record naming a server that is gone (nothing listens on its address).
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    c.runtime.block_on(async {
        c.store
            .create(
                "/kedge/tunnels/ghost",
                bytes::Bytes::from(format!(
                    r#"{{"server":"server-c","address":"{dead_addr}","transport":"quic","remote":"10.0.0.9:4000"}}"#
                )),
                WriteOptions::default(),
            )
            .await
            .unwrap();
    });
    let out = c.run(&["get", "--raw", "/api/v1/nodes/ghost/proxy/stats/summary"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("error dialing backend"), "{err}");
    assert!(err.contains("ghost") && err.contains("server-c"), "{err}");

    let out = c.run(&["get", "--raw", "/api/v1/nodes/nowhere/proxy/stats/summary"]);
    let err = stderr(&out);
    assert!(err.contains("error dialing backend"), "{err}");
    assert!(
        err.contains("\"nowhere\" has no tunnel to any server"),
        "{err}"
    );
}
