//! Real kubectl against an in-process API server whose node is a fake
//! [`NodeStreams`]: logs, exec, port-forward and the node stats proxy, in
//! the protocols kubectl v1.32 chooses by itself.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use kedge_apiserver::nodestreams::{ExecChannels, LogStream, PortForwardChannels};
use kedge_apiserver::{ApiServer, Config, NodeStreams, StreamError, TlsMaterial, TokenFile};
use kedge_proto::v1::{
    ExecExit, ExecOutput, ExecStart, LogsRequest, PortForwardFrame, PortForwardStart, exec_input,
    exec_output, port_forward_frame,
};
use tokio::sync::mpsc;

const KUBECTL: &str = "/usr/bin/kubectl";
const LOG: &str = "one\ntwo\nthree\n";

/// A node whose containers log [`LOG`], whose commands echo stdin and
/// exit with the number after `exit`, and whose port 8080 echoes.
#[derive(Debug)]
struct FakeNode;

#[async_trait::async_trait]
impl NodeStreams for FakeNode {
    async fn logs(&self, node: &str, req: LogsRequest) -> Result<LogStream, StreamError> {
        assert_eq!(node, "n1");
        let lines: Vec<String> = LOG
            .lines()
            .map(|l| format!("{}/{}: {l}\n", req.pod, req.container))
            .collect();
        let skip = match req.tail_lines {
            Some(n) => lines.len().saturating_sub(n as usize),
            None => 0,
        };
        let fixed = futures::stream::iter(lines.into_iter().skip(skip).map(|l| Ok(Bytes::from(l))));
        if !req.follow {
            return Ok(fixed.boxed());
        }
        let ticks = futures::stream::unfold(0u64, |n| async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Some((Ok(Bytes::from(format!("tick {n}\n"))), n + 1))
        });
        Ok(fixed.chain(ticks).boxed())
    }

    async fn exec(&self, _node: &str, start: ExecStart) -> Result<ExecChannels, StreamError> {
        if start.command.first().is_some_and(|c| c == "refuse") {
            return Err(StreamError::failed("node n1: this node refuses to run it"));
        }
        let (input, mut input_rx) = mpsc::channel::<kedge_proto::v1::ExecInput>(16);
        let (out, out_rx) = mpsc::channel(16);
        let code = start
            .command
            .last()
            .and_then(|c| c.strip_prefix("exit "))
            .and_then(|c| c.trim().parse().ok())
            .unwrap_or(0);
        tokio::spawn(async move {
            // A real node answers after a round trip and a process start. kubectl v1.32
            // drops output that arrives before it has set up its streams (client-go's
            // websocket.go: "Unknown stream id"), which an instant fake can hit.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let send = |o| ExecOutput { output: Some(o) };
            let _ = out
                .send(Ok(send(exec_output::Output::Stderr(
                    format!("{}\n", start.command.join(" ")).into_bytes(),
                ))))
                .await;
            if start.stdin {
                while let Some(msg) = input_rx.recv().await {
                    match msg.input {
                        Some(exec_input::Input::Stdin(b)) => {
                            let _ = out.send(Ok(send(exec_output::Output::Stdout(b)))).await;
                        }
                        Some(exec_input::Input::StdinClosed(_)) => break,
                        _ => {}
                    }
                }
            }
            let _ = out
                .send(Ok(send(exec_output::Output::Exit(ExecExit {
                    code,
                    message: String::new(),
                }))))
                .await;
        });
        Ok(ExecChannels {
            input,
            output: tokio_stream(out_rx),
        })
    }

    async fn port_forward(
        &self,
        _node: &str,
        start: PortForwardStart,
    ) -> Result<PortForwardChannels, StreamError> {
        if start.port != 8080 {
            return Err(StreamError::failed(format!(
                "dial tcp4 127.0.0.1:{}: connect: connection refused",
                start.port
            )));
        }
        let (input, mut input_rx) = mpsc::channel::<PortForwardFrame>(16);
        let (out, out_rx) = mpsc::channel(16);
        tokio::spawn(async move {
            while let Some(f) = input_rx.recv().await {
                match f.frame {
                    Some(port_forward_frame::Frame::Data(d)) => {
                        let frame = port_forward_frame::Frame::Data(d);
                        let _ = out.send(Ok(PortForwardFrame { frame: Some(frame) })).await;
                    }
                    Some(port_forward_frame::Frame::Closed(_)) => break,
                    _ => {}
                }
            }
            let closed = port_forward_frame::Frame::Closed(true);
            let _ = out
                .send(Ok(PortForwardFrame {
                    frame: Some(closed),
                }))
                .await;
        });
        Ok(PortForwardChannels {
            input,
            output: tokio_stream(out_rx),
        })
    }

    async fn stats(&self, node: &str) -> Result<Bytes, StreamError> {
        Ok(Bytes::from(format!(
            "{{\"node\":{{\"nodeName\":\"{node}\"}},\"pods\":[]}}"
        )))
    }
}

fn tokio_stream<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
) -> futures::stream::BoxStream<'static, T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}

/// An API server on a loopback port, with kubectl pointed at it.
struct Cluster {
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

impl Cluster {
    fn start(with_node: bool) -> Cluster {
        assert!(
            Path::new(KUBECTL).exists(),
            "these tests drive the real kubectl, expected at {KUBECTL}"
        );
        let dir = tempfile::tempdir().unwrap();
        let pki = kedge_pki::ServerPki::load_or_create(
            &dir.path().join("tls"),
            &kedge_pki::PkiOptions::default(),
            std::time::SystemTime::now(),
        )
        .unwrap();
        let tls = kedge_apiserver::tls_config(&TlsMaterial {
            cert_chain: pki.serving_cert_chain_der(),
            key_pkcs8: pki.serving_key_der().to_vec(),
            client_ca: pki.client_ca_der().to_vec(),
        })
        .unwrap();
        let db = dir.path().join("state.db");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let store = kedge_datastore_sqlite::SqliteStore::open(
                    kedge_datastore_sqlite::SqliteConfig::new(db),
                )
                .await
                .unwrap();
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                let server = ApiServer::start(
                    Arc::new(store),
                    Arc::new(kedge_datastore::SystemClock),
                    Config {
                        advertise_address: addr.to_string(),
                        ..Config::default()
                    },
                    TokenFile::default(),
                )
                .await
                .unwrap();
                if with_node {
                    server.set_node_streams(Arc::new(FakeNode)).unwrap();
                }
                tx.send(addr).unwrap();
                kedge_apiserver::serve(server, listener, tls, None, std::future::pending()).await;
            });
        });
        let addr = rx.recv_timeout(Duration::from_secs(60)).unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        kedge_pki::write_kubeconfig(
            &kubeconfig,
            0o600,
            &format!("https://{addr}"),
            pki.server_ca_pem(),
            pki.admin_cert_pem(),
            pki.admin_key_pem(),
        )
        .unwrap();
        let c = Cluster { dir, kubeconfig };
        c.create(
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":"default",
                "annotations":{"kubectl.kubernetes.io/default-container":"app"}},
               "spec":{"nodeName":"n1","containers":[{"name":"app","image":"busybox"},{"name":"side","image":"busybox"}]}}"#,
        );
        c.create(
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"loose","namespace":"default"},
               "spec":{"containers":[{"name":"app","image":"busybox"}]}}"#,
        );
        c.create(r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"n1"}}"#);
        // kubectl port-forward and attach want a running pod.
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
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn create(&self, json: &str) {
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
        assert!(
            out.status.success(),
            "create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn logs_tail_and_follow() {
    let c = Cluster::start(true);
    assert_eq!(
        c.ok(&["logs", "web", "--tail", "2"]),
        "web/app: two\nweb/app: three\n"
    );
    assert_eq!(
        c.ok(&["logs", "web", "-c", "side"]),
        "web/side: one\nweb/side: two\nweb/side: three\n"
    );

    let mut follow = c
        .cmd(&["logs", "-f", "web", "--tail", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "web/app: three");
    assert_eq!(lines.next().unwrap().unwrap(), "tick 0");
    assert_eq!(lines.next().unwrap().unwrap(), "tick 1");
    follow.kill().unwrap();
    follow.wait().unwrap();

    // Upstream's wording for what never reaches a node.
    let out = c.run(&["logs", "web", "-c", "nope"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("container nope is not valid for pod web"),
        "{}",
        stderr(&out)
    );
    let out = c.run(&["logs", "loose"]);
    assert!(
        stderr(&out).contains("pod loose does not have a host assigned"),
        "{}",
        stderr(&out)
    );
    let out = c.run(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/pods/web/log?tailLines=-1",
    ]);
    assert!(
        stderr(&out).contains("tailLines: Invalid value: -1"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn exec_propagates_exit_codes_and_stdin() {
    let c = Cluster::start(true);
    let out = c.run(&["exec", "web", "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("sh -c exit 3"), "{}", stderr(&out));

    let out = c.run(&["exec", "web", "--", "true"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let mut child = c
        .cmd(&["exec", "-i", "web", "-c", "side", "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello through the tunnel\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, b"hello through the tunnel\n");

    // A node that refuses: its reason reaches kubectl (on the error channel, so kubectl
    // does not fall back to SPDY and lose it).
    let out = c.run(&["exec", "web", "--", "refuse"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("this node refuses to run it"),
        "{}",
        stderr(&out)
    );

    let out = c.run(&["exec", "web", "-c", "nope", "--", "true"]);
    assert!(
        stderr(&out).contains("container nope is not valid for pod web"),
        "{}",
        stderr(&out)
    );
    let out = c.run(&["exec", "loose", "--", "true"]);
    assert!(
        stderr(&out).contains("pod loose does not have a host assigned"),
        "{}",
        stderr(&out)
    );
}

/// Forwards a local port to the pod's 8080 and checks two connections
/// echo; `websockets`: kubectl's default (SPDY tunneled in WebSocket), or
/// plain SPDY as with `KUBECTL_PORT_FORWARD_WEBSOCKETS=false`.
fn forward_and_echo(c: &Cluster, websockets: bool) {
    let mut cmd = c.cmd(&["port-forward", "pod/web", ":8080", "-v=6"]);
    cmd.env(
        "KUBECTL_PORT_FORWARD_WEBSOCKETS",
        if websockets { "true" } else { "false" },
    );
    let mut child = cmd
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
        panic!("kubectl port-forward said nothing on stdout: {err}");
    };
    // "Forwarding from 127.0.0.1:41234 -> 8080"
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
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    // The upgrade kubectl made, as its -v=6 log shows it.
    let upgraded = err
        .lines()
        .find(|l| l.contains("portforward") && l.contains("101"))
        .unwrap_or_else(|| panic!("no upgrade in kubectl's log: {err}"));
    let method = if websockets { "GET" } else { "POST" };
    assert!(upgraded.contains(method), "{upgraded}");
}

#[test]
fn port_forward_echoes() {
    let c = Cluster::start(true);
    forward_and_echo(&c, true);
    forward_and_echo(&c, false);
}

#[test]
fn node_stats_summary() {
    let c = Cluster::start(true);
    let out = c.ok(&["get", "--raw", "/api/v1/nodes/n1/proxy/stats/summary"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["node"]["nodeName"], "n1");
    let out = c.run(&["get", "--raw", "/api/v1/nodes/n2/proxy/stats/summary"]);
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
}

#[test]
fn without_a_node_link_streams_are_unavailable() {
    let c = Cluster::start(false);
    let out = c.run(&["logs", "web"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no node link running"),
        "{}",
        stderr(&out)
    );
    let out = c.run(&["get", "--raw", "/api/v1/nodes/n1/proxy/stats/summary"]);
    assert!(
        stderr(&out).contains("ServiceUnavailable") || stderr(&out).contains("no node link"),
        "{}",
        stderr(&out)
    );
}
