//! The Kubernetes API side of `pods/log`, `pods/exec`, `pods/attach`,
//! `pods/portforward` and `nodes/proxy/stats/summary`.
//!
//! Each request is checked as upstream checks it (the pod exists, is bound
//! to a node, and has the container) before anything reaches a node, so
//! the errors kubectl prints are upstream's. Then the [`NodeStreams`] the
//! server was given carries the request to the agent on the pod's node.
//!
//! What kubectl v1.32 speaks, and so what is served:
//! - log: a plain chunked `text/plain` body.
//! - exec and attach: WebSocket with `v5.channel.k8s.io` (or v4), see
//!   [`crate::websocket`]. kubectl falls back to SPDY only when the
//!   WebSocket upgrade fails, which it does not here.
//! - port-forward: SPDY/3.1 ([`crate::spdy`]) carried in WebSocket binary
//!   messages (`SPDY/3.1+portforward.k8s.io`, kubectl's default since
//!   1.31), or on the raw connection after an `Upgrade: SPDY/3.1`
//!   (kubectl with `KUBECTL_PORT_FORWARD_WEBSOCKETS=false`, older clients).
//! - nodes/proxy: only `stats/summary`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame as BodyFrame, Incoming};
use kedge_proto::v1::{
    ExecStart, LogsRequest, PortForwardFrame, PortForwardStart, TerminalSize, exec_input,
    exec_output, port_forward_frame,
};
use kedge_resources::catalog::{self, Subresource};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tracing::Instrument;

use crate::ApiServer;
use crate::handlers::Body;
use crate::nodestreams::{ExecChannels, NodeStreams, StreamError};
use crate::request::Query;
use crate::spdy::{self, Codec, Frame};
use crate::status::{ApiError, ApiResult};
use crate::websocket::{self, Channel, ClientMessage};

/// Whether `sub` of a pod is served here.
pub fn is_pod_stream(sub: Subresource) -> bool {
    matches!(
        sub,
        Subresource::Log | Subresource::Exec | Subresource::Attach | Subresource::PortForward
    )
}

/// The annotation naming the container kubectl picks by default.
const DEFAULT_CONTAINER: &str = "kubectl.kubernetes.io/default-container";

/// The pod a stream is for, as read from the registry.
struct Target {
    node: String,
    uid: String,
    container: Option<String>,
}

/// `pods/{name}/{log,exec,attach,portforward}`.
pub async fn pod(
    server: &Arc<ApiServer>,
    ns: &str,
    name: &str,
    sub: Subresource,
    query: &Query,
    req: Request<Incoming>,
) -> ApiResult<Response<Body>> {
    let method = req.method().clone();
    match sub {
        Subresource::Log => {
            if method != Method::GET {
                return Err(not_allowed());
            }
            logs(server, ns, name, query).await
        }
        Subresource::Exec | Subresource::Attach => {
            if method != Method::GET && method != Method::POST {
                return Err(not_allowed());
            }
            exec(server, ns, name, sub == Subresource::Attach, query, req).await
        }
        Subresource::PortForward => {
            if method != Method::GET && method != Method::POST {
                return Err(not_allowed());
            }
            port_forward(server, ns, name, req).await
        }
        _ => Err(ApiError::path_not_found()),
    }
}

fn not_allowed() -> ApiError {
    ApiError::method_not_allowed("the server does not allow this method on the requested resource")
}

fn node_streams(server: &ApiServer, what: &str, node: &str) -> ApiResult<Arc<dyn NodeStreams>> {
    server.node_streams().ok_or_else(|| {
        ApiError::unavailable(format!(
            "{what} needs the agent on node {node}, and this server has no node link running"
        ))
    })
}

/// Reads the pod and works out its node and container, with upstream's
/// errors. `container`: `None` for port-forward, which has none.
async fn target(
    server: &ApiServer,
    ns: &str,
    name: &str,
    container: Option<Option<&str>>,
) -> ApiResult<Target> {
    let info = catalog::find("", "v1", "pods").ok_or_else(ApiError::path_not_found)?;
    let pod = server.registry.get(info, Some(ns), name, None).await?;
    let names = |field: &str| -> Vec<String> {
        pod.pointer(&format!("/spec/{field}"))
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| c.get("name").and_then(Value::as_str))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let container = match container {
        None => None,
        Some(asked) => {
            let containers = names("containers");
            let init = names("initContainers");
            let ephemeral = names("ephemeralContainers");
            let chosen = match asked {
                Some(c) => c.to_string(),
                None => {
                    let annotated = pod
                        .pointer("/metadata/annotations")
                        .and_then(|a| a.get(DEFAULT_CONTAINER))
                        .and_then(Value::as_str)
                        .filter(|c| containers.iter().any(|n| n == c));
                    match (annotated, containers.as_slice()) {
                        (Some(c), _) => c.to_string(),
                        (None, [only]) => only.clone(),
                        (None, []) => {
                            return Err(ApiError::bad_request(format!(
                                "a container name must be specified for pod {name}"
                            )));
                        }
                        (None, many) => {
                            let mut msg = format!(
                                "a container name must be specified for pod {name}, choose one of: [{}]",
                                many.join(" ")
                            );
                            if !init.is_empty() {
                                msg.push_str(&format!(
                                    " or one of the init containers: [{}]",
                                    init.join(" ")
                                ));
                            }
                            return Err(ApiError::bad_request(msg));
                        }
                    }
                }
            };
            let known = containers
                .iter()
                .chain(&init)
                .chain(&ephemeral)
                .any(|n| *n == chosen);
            if !known {
                return Err(ApiError::bad_request(format!(
                    "container {chosen} is not valid for pod {name}"
                )));
            }
            Some(chosen)
        }
    };
    let node = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if node.is_empty() {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    Ok(Target {
        node: node.to_string(),
        uid: pod
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        container,
    })
}

/// A PodLogOptions field that is out of range: upstream's 422.
fn invalid_log_option(name: &str, field: &str, value: i64, want: &str) -> ApiError {
    ApiError::new(
        422,
        "Invalid",
        format!("PodLogOptions \"{name}\" is invalid: {field}: Invalid value: {value}: {want}"),
    )
}

fn int_param(query: &Query, key: &str) -> ApiResult<Option<i64>> {
    match query.get(key) {
        None => Ok(None),
        Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
            ApiError::bad_request(format!(
                "{key}: Invalid value: \"{v}\": strconv.ParseInt: parsing \"{v}\": invalid syntax"
            ))
        }),
    }
}

/// `PodLogOptions` from the query, validated as upstream validates them.
fn log_options(
    query: &Query,
    name: &str,
    now: SystemTime,
) -> ApiResult<(LogsRequest, Option<String>)> {
    let tail_lines = int_param(query, "tailLines")?;
    let mut since_seconds = int_param(query, "sinceSeconds")?;
    let limit_bytes = int_param(query, "limitBytes")?;
    if let Some(t) = tail_lines
        && t < 0
    {
        return Err(invalid_log_option(
            name,
            "tailLines",
            t,
            "must be greater than or equal to 0",
        ));
    }
    if let Some(l) = limit_bytes
        && l < 1
    {
        return Err(invalid_log_option(
            name,
            "limitBytes",
            l,
            "must be greater than 0",
        ));
    }
    if let Some(s) = since_seconds
        && s < 1
    {
        return Err(invalid_log_option(
            name,
            "sinceSeconds",
            s,
            "must be greater than 0",
        ));
    }
    if let Some(since_time) = query.get("sinceTime") {
        if since_seconds.is_some() {
            return Err(ApiError::new(
                422,
                "Invalid",
                format!(
                    "PodLogOptions \"{name}\" is invalid: []: Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified"
                ),
            ));
        }
        let at: jiff::Timestamp = since_time.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "sinceTime: Invalid value: \"{since_time}\": parsing time \"{since_time}\" as RFC3339 failed"
            ))
        })?;
        let now = jiff::Timestamp::try_from(now).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let ago = now.as_second() - at.as_second();
        since_seconds = Some(ago.max(1));
    }
    let req = LogsRequest {
        namespace: String::new(),
        pod: name.to_string(),
        container: String::new(),
        follow: query.flag("follow"),
        previous: query.flag("previous"),
        tail_lines,
        since_seconds,
        timestamps: query.flag("timestamps"),
        limit_bytes,
    };
    Ok((req, query.get("container").map(str::to_string)))
}

async fn logs(
    server: &Arc<ApiServer>,
    ns: &str,
    name: &str,
    query: &Query,
) -> ApiResult<Response<Body>> {
    let (mut req, container) = log_options(query, name, server.registry.now())?;
    let target = target(server, ns, name, Some(container.as_deref())).await?;
    req.namespace = ns.to_string();
    req.container = target.container.clone().unwrap_or_default();
    let streams = node_streams(server, &format!("the log of pod {name}"), &target.node)?;
    let span = tracing::info_span!("logs", pod = %format!("{ns}/{name}"), node = %target.node);
    let stream = streams
        .logs(&target.node, req)
        .instrument(span.clone())
        .await
        .map_err(|e| e.to_api_error())?;
    let body = stream
        .take_while(move |chunk| {
            if let Err(e) = chunk {
                let _g = span.enter();
                tracing::debug!(error = %e, "log stream ended with an error");
            }
            futures::future::ready(chunk.is_ok())
        })
        .filter_map(|chunk| futures::future::ready(chunk.ok()))
        .map(|bytes| Ok::<_, std::convert::Infallible>(BodyFrame::data(bytes)));
    let mut resp = Response::new(StreamBody::new(body).boxed_unsync());
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(resp)
}

/// The answer to a request that should have been an upgrade.
fn upgrade_required() -> ApiError {
    ApiError::bad_request("Upgrade request required")
}

async fn exec(
    server: &Arc<ApiServer>,
    ns: &str,
    name: &str,
    attach: bool,
    query: &Query,
    mut req: Request<Incoming>,
) -> ApiResult<Response<Body>> {
    let command: Vec<String> =
        form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
            .filter(|(k, _)| k == "command")
            .map(|(_, v)| v.into_owned())
            .collect();
    let (stdin, stdout, stderr, tty) = (
        query.flag("stdin"),
        query.flag("stdout"),
        query.flag("stderr"),
        query.flag("tty"),
    );
    if !attach && command.is_empty() {
        return Err(ApiError::bad_request("you must specify at least 1 command"));
    }
    if !stdin && !stdout && !stderr {
        return Err(ApiError::bad_request(
            "you must specify at least one of stdin, stdout, stderr",
        ));
    }
    let target = target(server, ns, name, Some(query.get("container"))).await?;
    if !websocket::is_upgrade(req.headers()) {
        return Err(upgrade_required());
    }
    let (protocol, accept) = websocket::negotiate(
        req.headers(),
        &[websocket::CHANNEL_V5, websocket::CHANNEL_V4],
    )
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let what = if attach { "attach" } else { "exec" };
    let streams = node_streams(server, &format!("{what} into pod {name}"), &target.node)?;
    let start = ExecStart {
        namespace: ns.to_string(),
        pod: name.to_string(),
        container: target.container.clone().unwrap_or_default(),
        command,
        stdin,
        stdout,
        stderr: stderr && !tty,
        tty,
        attach,
    };
    let span =
        tracing::info_span!("exec", pod = %format!("{ns}/{name}"), node = %target.node, attach);
    let on_upgrade = hyper::upgrade::on(&mut req);
    let v5 = protocol == websocket::CHANNEL_V5;
    let node = target.node.clone();
    // The node is asked only once the client's WebSocket is up, and what it says goes on
    // the error channel, as a kubelet reports a runtime's failure. (Answered over HTTP
    // instead, the failure would send kubectl to its SPDY fallback, which this server
    // does not speak for exec, and the node's reason would be lost.)
    tokio::spawn(
        async move {
            let socket = match on_upgrade.await {
                Ok(upgraded) => websocket::accept(upgraded).await,
                Err(e) => {
                    tracing::debug!(error = %e, "the upgrade failed");
                    return;
                }
            };
            match streams.exec(&node, start).await {
                Ok(channels) => run_exec(socket, channels, v5).await,
                Err(e) => {
                    tracing::debug!(error = %e, "the node refused the exec");
                    fail_exec(socket, &e.to_api_error()).await;
                }
            }
        }
        .instrument(span),
    );
    Ok(websocket::switching_protocols(
        Full::new(Bytes::new()).boxed_unsync(),
        protocol,
        &accept,
    ))
}

/// The error channel's `Status`, as the kubelet writes it.
fn exit_status(code: i32, message: &str) -> Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    let detail = if message.is_empty() {
        format!("exit code {code}")
    } else {
        message.to_string()
    };
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("command terminated with non-zero exit code: {detail}"),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

fn failure_status(message: &str) -> Value {
    json!({"metadata": {}, "status": "Failure", "message": message})
}

/// Ends an exec session the node refused: the failure on the error channel, then close.
async fn fail_exec(socket: websocket::Socket, error: &ApiError) {
    let (mut sink, _source) = socket.split();
    let status = json!({
        "metadata": {},
        "status": "Failure",
        "message": error.message,
        "reason": error.reason,
        "code": error.code,
    });
    let body = serde_json::to_vec(&status).unwrap_or_default();
    let _ = sink.send(websocket::frame(Channel::Error, &body)).await;
    let _ = sink
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        })))
        .await;
    let _ = sink.close().await;
}

/// Moves an exec session between the client's WebSocket and the node.
async fn run_exec(socket: websocket::Socket, channels: ExecChannels, v5: bool) {
    let (mut sink, mut source) = socket.split();
    let ExecChannels { input, mut output } = channels;
    let from_client = async move {
        while let Some(Ok(msg)) = source.next().await {
            let data = match msg {
                Message::Binary(data) => data,
                Message::Close(_) => break,
                _ => continue,
            };
            let item = match websocket::parse_client(&data, v5) {
                Ok(ClientMessage::Stdin(b)) if b.is_empty() => continue,
                Ok(ClientMessage::Stdin(b)) => exec_input::Input::Stdin(b.to_vec()),
                Ok(ClientMessage::Resize { width, height }) => {
                    exec_input::Input::Resize(TerminalSize { width, height })
                }
                Ok(ClientMessage::CloseStdin) => exec_input::Input::StdinClosed(true),
                Ok(ClientMessage::Other) => continue,
                Err(e) => {
                    tracing::debug!(error = %e, "ignoring a malformed channel message");
                    continue;
                }
            };
            let closing = matches!(item, exec_input::Input::StdinClosed(_));
            if input
                .send(kedge_proto::v1::ExecInput { input: Some(item) })
                .await
                .is_err()
            {
                break;
            }
            if closing {
                // Nothing more to read but the close; keep the socket
                // open for output.
                std::future::pending::<()>().await;
            }
        }
    };
    let to_client = async move {
        let mut status = None;
        while let Some(item) = output.next().await {
            let msg = match item {
                Ok(out) => match out.output {
                    Some(exec_output::Output::Stdout(b)) => websocket::frame(Channel::Stdout, &b),
                    Some(exec_output::Output::Stderr(b)) => websocket::frame(Channel::Stderr, &b),
                    Some(exec_output::Output::Exit(exit)) => {
                        status = Some(exit_status(exit.code, &exit.message));
                        break;
                    }
                    None => continue,
                },
                Err(e) => {
                    status = Some(failure_status(&e.message));
                    break;
                }
            };
            if sink.send(msg).await.is_err() {
                return;
            }
        }
        let status = status.unwrap_or_else(|| {
            failure_status("the stream from the node ended without an exit status")
        });
        let body = serde_json::to_vec(&status).unwrap_or_default();
        let _ = sink.send(websocket::frame(Channel::Error, &body)).await;
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            })))
            .await;
        let _ = sink.close().await;
    };
    // The session is over when the command is (the exit is sent), or when
    // the client goes away (which cancels the command).
    tokio::select! {
        _ = to_client => {}
        _ = from_client => tracing::debug!("the client left before the command ended"),
    }
}

async fn port_forward(
    server: &Arc<ApiServer>,
    ns: &str,
    name: &str,
    mut req: Request<Incoming>,
) -> ApiResult<Response<Body>> {
    for (k, v) in form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes()) {
        if k == "ports" {
            for p in v.split(',') {
                if !matches!(p.trim().parse::<u16>(), Ok(n) if n > 0) {
                    return Err(ApiError::bad_request(format!(
                        "invalid port {p:?}: must be between 1 and 65535, inclusive"
                    )));
                }
            }
        }
    }
    let target = target(server, ns, name, None).await?;
    let websocket = websocket::is_upgrade(req.headers());
    let spdy = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("SPDY/3.1"));
    if !websocket && !spdy {
        return Err(upgrade_required());
    }
    let streams = node_streams(server, &format!("port-forward to pod {name}"), &target.node)?;
    let forward = Forward {
        streams,
        node: target.node.clone(),
        namespace: ns.to_string(),
        pod: name.to_string(),
        uid: target.uid.clone(),
    };
    let span =
        tracing::info_span!("portforward", pod = %format!("{ns}/{name}"), node = %target.node);
    let on_upgrade = hyper::upgrade::on(&mut req);
    if websocket {
        let (protocol, accept) =
            websocket::negotiate(req.headers(), &[websocket::PORT_FORWARD_TUNNEL])
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
        tokio::spawn(
            async move {
                match on_upgrade.await {
                    Ok(upgraded) => {
                        let pipe = websocket::tunnel(websocket::accept(upgraded).await);
                        forward.run(pipe).await;
                    }
                    Err(e) => tracing::debug!(error = %e, "the upgrade failed"),
                }
            }
            .instrument(span),
        );
        return Ok(websocket::switching_protocols(
            Full::new(Bytes::new()).boxed_unsync(),
            protocol,
            &accept,
        ));
    }
    let offered = req
        .headers()
        .get_all("x-stream-protocol-version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == "portforward.k8s.io");
    if !offered {
        return Err(ApiError::new(
            403,
            "Forbidden",
            "unable to upgrade: unable to negotiate protocol: client supports no protocols the server supports: portforward.k8s.io",
        ));
    }
    tokio::spawn(
        async move {
            match on_upgrade.await {
                Ok(upgraded) => forward.run(hyper_util::rt::TokioIo::new(upgraded)).await,
                Err(e) => tracing::debug!(error = %e, "the upgrade failed"),
            }
        }
        .instrument(span),
    );
    let mut resp = Response::new(Full::new(Bytes::new()).boxed_unsync());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    h.insert(
        "X-Stream-Protocol-Version",
        HeaderValue::from_static("portforward.k8s.io"),
    );
    Ok(resp)
}

/// What the client sends for one forwarded connection.
enum Upstream {
    Data(Bytes),
    /// FIN: the client will write no more.
    Closed,
}

/// One port-forward session: the pod and the way to its node.
struct Forward {
    streams: Arc<dyn NodeStreams>,
    node: String,
    namespace: String,
    pod: String,
    uid: String,
}

/// The two streams of a forwarded connection, as they arrive.
#[derive(Default)]
struct Pair {
    port: u16,
    error: Option<u32>,
    data: Option<u32>,
}

impl Forward {
    /// Serves the SPDY session on `io` until either side ends it.
    async fn run<IO: AsyncRead + AsyncWrite + Send + 'static>(self, io: IO) {
        let this = Arc::new(self);
        let (mut rd, mut wr) = tokio::io::split(io);
        let (frames, mut to_write) = mpsc::channel::<Frame>(64);
        let writer = tokio::spawn(async move {
            let mut codec = Codec::new();
            let mut buf = Vec::new();
            while let Some(frame) = to_write.recv().await {
                buf.clear();
                codec.encode(&frame, &mut buf);
                if wr.write_all(&buf).await.is_err() {
                    break;
                }
            }
            let _ = wr.shutdown().await;
        });
        let mut codec = Codec::new();
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let mut pairs: HashMap<String, Pair> = HashMap::new();
        let mut conns: HashMap<u32, mpsc::Sender<Upstream>> = HashMap::new();
        'session: loop {
            loop {
                let frame = match codec.decode(&mut buf) {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(error = %e, "ending the SPDY session");
                        let _ = frames
                            .send(Frame::GoAway {
                                last_good_stream_id: 0,
                                status: spdy::RST_PROTOCOL_ERROR,
                            })
                            .await;
                        break 'session;
                    }
                };
                match frame {
                    Frame::SynStream {
                        stream_id, headers, ..
                    } => {
                        let _ = frames
                            .send(Frame::SynReply {
                                stream_id,
                                fin: false,
                                headers: Vec::new(),
                            })
                            .await;
                        let get = |k: &str| {
                            headers
                                .iter()
                                .find(|(n, _)| n == k)
                                .map(|(_, v)| v.as_str())
                        };
                        let port = get("port").and_then(|p| p.parse::<u16>().ok());
                        let (Some(port), Some(kind)) = (port.filter(|p| *p > 0), get("streamtype"))
                        else {
                            let _ = frames
                                .send(Frame::RstStream {
                                    stream_id,
                                    status: spdy::RST_PROTOCOL_ERROR,
                                })
                                .await;
                            continue;
                        };
                        let request = get("requestid").unwrap_or_default().to_string();
                        let key = format!("{request}/{port}");
                        let pair = pairs.entry(key.clone()).or_default();
                        pair.port = port;
                        match kind {
                            "error" => pair.error = Some(stream_id),
                            "data" => pair.data = Some(stream_id),
                            _ => {
                                let _ = frames
                                    .send(Frame::RstStream {
                                        stream_id,
                                        status: spdy::RST_PROTOCOL_ERROR,
                                    })
                                    .await;
                                continue;
                            }
                        }
                        if let (Some(error), Some(data)) = (pair.error, pair.data) {
                            pairs.remove(&key);
                            let (tx, rx) = mpsc::channel(16);
                            conns.insert(data, tx);
                            tokio::spawn(
                                this.clone()
                                    .connection(port, error, data, frames.clone(), rx)
                                    .in_current_span(),
                            );
                        }
                    }
                    Frame::Data {
                        stream_id,
                        fin,
                        data,
                    } => {
                        if let Some(tx) = conns.get(&stream_id) {
                            let mut ok = true;
                            if !data.is_empty() {
                                ok = tx.send(Upstream::Data(data)).await.is_ok();
                            }
                            if fin && ok {
                                let _ = tx.send(Upstream::Closed).await;
                            }
                            if fin || !ok {
                                conns.remove(&stream_id);
                            }
                        }
                    }
                    Frame::RstStream { stream_id, .. } => {
                        conns.remove(&stream_id);
                    }
                    Frame::Ping(id) => {
                        let _ = frames.send(Frame::Ping(id)).await;
                    }
                    Frame::GoAway { .. } => break 'session,
                    Frame::SynReply { .. } | Frame::Ignored(_) => {}
                }
            }
            match rd.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        drop(conns);
        drop(frames);
        let _ = writer.await;
    }

    /// One forwarded connection: opens it on the node, then copies both
    /// ways. Errors go to the client on the error stream, in the kubelet's
    /// words.
    async fn connection(
        self: Arc<Self>,
        port: u16,
        error_stream: u32,
        data_stream: u32,
        frames: mpsc::Sender<Frame>,
        mut from_client: mpsc::Receiver<Upstream>,
    ) {
        let start = PortForwardStart {
            namespace: self.namespace.clone(),
            pod: self.pod.clone(),
            port: u32::from(port),
        };
        let fail = |e: String| {
            format!(
                "error forwarding port {port} to pod {}, uid {}: {e}",
                self.pod, self.uid
            )
        };
        let data = |stream_id: u32, fin: bool, data: Bytes| Frame::Data {
            stream_id,
            fin,
            data,
        };
        let channels = match self.streams.port_forward(&self.node, start).await {
            Ok(c) => c,
            Err(e) => {
                let _ = frames
                    .send(data(error_stream, true, Bytes::from(fail(describe(&e)))))
                    .await;
                let _ = frames.send(data(data_stream, true, Bytes::new())).await;
                return;
            }
        };
        let input = channels.input;
        let mut output = channels.output;
        let up = async {
            while let Some(item) = from_client.recv().await {
                let frame = match item {
                    Upstream::Data(b) => port_forward_frame::Frame::Data(b.to_vec()),
                    Upstream::Closed => {
                        let _ = input
                            .send(PortForwardFrame {
                                frame: Some(port_forward_frame::Frame::Closed(true)),
                            })
                            .await;
                        return false;
                    }
                };
                if input
                    .send(PortForwardFrame { frame: Some(frame) })
                    .await
                    .is_err()
                {
                    return false;
                }
            }
            // Reset by the client.
            true
        };
        let down = async {
            let mut error = None;
            while let Some(item) = output.next().await {
                match item.map(|f| f.frame) {
                    Ok(Some(port_forward_frame::Frame::Data(b))) => {
                        if frames
                            .send(data(data_stream, false, Bytes::from(b)))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    Ok(Some(port_forward_frame::Frame::Closed(_))) => break,
                    Ok(Some(port_forward_frame::Frame::Error(e))) => {
                        error = Some(e);
                        break;
                    }
                    Ok(Some(port_forward_frame::Frame::Start(_)) | None) => {}
                    Err(e) => {
                        error = Some(describe(&e));
                        break;
                    }
                }
            }
            if let Some(e) = error {
                let _ = frames
                    .send(data(error_stream, false, Bytes::from(fail(e))))
                    .await;
            }
            let _ = frames.send(data(data_stream, true, Bytes::new())).await;
            let _ = frames.send(data(error_stream, true, Bytes::new())).await;
        };
        tokio::pin!(down);
        tokio::select! {
            _ = &mut down => {}
            reset = up => {
                if !reset {
                    down.await;
                }
            }
        }
    }
}

fn describe(e: &StreamError) -> String {
    e.to_api_error().message
}

/// `nodes/{name}/proxy/{path}`: only the stats summary.
pub async fn node_proxy(
    server: &Arc<ApiServer>,
    method: &Method,
    node: &str,
    path: &str,
) -> ApiResult<Response<Body>> {
    let info = catalog::find("", "v1", "nodes").ok_or_else(ApiError::path_not_found)?;
    server.registry.get(info, None, node, None).await?;
    if path.trim_matches('/') != "stats/summary" {
        return Err(ApiError::new(
            404,
            "NotFound",
            format!("the node proxy serves only stats/summary, not {path:?}"),
        ));
    }
    if method != Method::GET {
        return Err(not_allowed());
    }
    let streams = node_streams(server, "the stats summary", node)?;
    let summary = streams
        .stats(node)
        .instrument(tracing::info_span!("stats", node))
        .await
        .map_err(|e| e.to_api_error())?;
    let mut resp = Response::new(Full::new(summary).boxed_unsync());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    #[test]
    fn log_options_validate_like_upstream() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let q = |s: &str| Query::parse(Some(s));
        let (r, c) = log_options(&q("tailLines=2&follow=true&container=c"), "p", now).unwrap();
        assert_eq!(r.tail_lines, Some(2));
        assert!(r.follow);
        assert_eq!(c.as_deref(), Some("c"));
        let e = log_options(&q("tailLines=-1"), "p", now).unwrap_err();
        assert_eq!(e.code, 422);
        assert!(
            e.message.contains("tailLines: Invalid value: -1"),
            "{}",
            e.message
        );
        assert_eq!(
            log_options(&q("tailLines=x"), "p", now).unwrap_err().code,
            400
        );
        assert_eq!(
            log_options(&q("sinceSeconds=0"), "p", now)
                .unwrap_err()
                .code,
            422
        );
        assert_eq!(
            log_options(
                &q("sinceSeconds=5&sinceTime=1970-01-12T13:46:30Z"),
                "p",
                now
            )
            .unwrap_err()
            .code,
            422
        );
        let (r, _) = log_options(&q("sinceTime=1970-01-12T13:46:30Z"), "p", now).unwrap();
        assert_eq!(r.since_seconds, Some(1_000_000 - 999_990));
        assert_eq!(
            log_options(&q("sinceTime=yesterday"), "p", now)
                .unwrap_err()
                .code,
            400
        );
    }

    #[test]
    fn exit_codes_are_reported_as_the_kubelet_does() {
        assert_eq!(exit_status(0, "")["status"], "Success");
        let s = exit_status(3, "");
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(s["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(s["details"]["causes"][0]["message"], "3");
    }
}
