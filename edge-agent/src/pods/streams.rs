//! `kubectl logs`, `exec`, `attach` and `port-forward` on this node's pods, served to
//! the server over the tunnel ([`crate::streams`]), as the kubelet's streaming server
//! and containerd's CRI serve them.
//!
//! - logs: read from the container's CRI log file (the current instance, or the one
//!   before with `--previous`), following it until the container stops;
//! - exec: a process in the running container (stdin, stdout, stderr, a TTY and its
//!   resizes), ending with its exit code;
//! - attach: the container's own output from now on, and its stdin when it has one;
//! - port-forward: a TCP connection to `localhost:<port>` inside the pod's network
//!   namespace, made by the agent.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use k8s_openapi::api::core::v1::Pod;
use kedge_containerd::TaskIo;
use kedge_containerd::crilog::{ReadOptions, read_logs, resolve_log_path};
use kedge_proto::v1::{
    Chunk, ExecExit, ExecInput, ExecOutput, ExecStart, LogsRequest, ObjectKind, PortForwardFrame,
    exec_input, exec_output, port_forward_frame,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use super::containerd::ContainerdRuntime;
use super::runtime::{ContainerState, PodRuntime};
use crate::store::Store;

type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Streams into this node's pods.
#[derive(Debug, Clone)]
pub struct PodStreams {
    runtime: Arc<ContainerdRuntime>,
    store: Store,
}

fn stream_of<T: Send + 'static>(rx: mpsc::Receiver<Result<T, Status>>) -> Boxed<T> {
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

impl PodStreams {
    pub fn new(runtime: Arc<ContainerdRuntime>, store: Store) -> PodStreams {
        PodStreams { runtime, store }
    }

    fn pod(&self, namespace: &str, name: &str) -> Result<Pod, Status> {
        let obj = self
            .store
            .get(ObjectKind::Pod, namespace, name)
            .map_err(|e| Status::unavailable(e.to_string()))?
            .ok_or_else(|| {
                Status::not_found(format!("pod {namespace}/{name} is not on this node"))
            })?;
        serde_json::from_slice(&obj.object)
            .map_err(|e| Status::internal(format!("pod {namespace}/{name} does not decode: {e}")))
    }

    /// The named container, or the pod's only (first) one.
    fn container_name(pod: &Pod, asked: &str) -> Result<String, Status> {
        let spec = pod.spec.clone().unwrap_or_default();
        if asked.is_empty() {
            return spec
                .containers
                .first()
                .map(|c| c.name.clone())
                .ok_or_else(|| Status::not_found("the pod has no containers"));
        }
        let known = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .any(|c| c.name == asked);
        if known {
            Ok(asked.to_string())
        } else {
            Err(Status::not_found(format!(
                "container {asked} is not valid for pod {}",
                pod.metadata.name.as_deref().unwrap_or_default()
            )))
        }
    }

    /// The id of the running instance of a container.
    async fn running_container(&self, pod: &Pod, name: &str) -> Result<String, Status> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let observed = self
            .runtime
            .observe(&uid)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        observed
            .latest(name)
            .filter(|c| c.state == ContainerState::Running)
            .map(|c| c.id.clone())
            .ok_or_else(|| Status::failed_precondition(format!("container not found (\"{name}\")")))
    }

    /// `kubectl logs`.
    pub async fn logs(&self, req: LogsRequest) -> Result<Boxed<Chunk>, Status> {
        let pod = self.pod(&req.namespace, &req.pod)?;
        let name = Self::container_name(&pod, &req.container)?;
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let dir = self
            .runtime
            .container_log(&req.namespace, &req.pod, &uid, &name);
        let path = resolve_log_path(&dir, req.previous).map_err(|_| {
            if req.previous {
                Status::not_found(format!(
                    "previous terminated container \"{name}\" in pod \"{}\" not found",
                    req.pod
                ))
            } else {
                Status::not_found(format!(
                    "container \"{name}\" in pod \"{}\" is waiting to start: ContainerCreating",
                    req.pod
                ))
            }
        })?;
        let opts = ReadOptions {
            follow: req.follow && !req.previous,
            tail: req.tail_lines.and_then(|n| usize::try_from(n).ok()),
            since: req.since_seconds.and_then(|s| {
                jiff::Timestamp::now()
                    .checked_sub(jiff::SignedDuration::from_secs(s))
                    .ok()
            }),
            timestamps: req.timestamps,
            limit_bytes: req.limit_bytes.and_then(|n| u64::try_from(n).ok()),
        };
        let (tx, rx) = mpsc::channel(16);
        let streams = self.clone();
        tokio::spawn(async move {
            let (mut writer, mut reader) = tokio::io::duplex(32 * 1024);
            let stopped = streams.stopped(pod, name, path.clone());
            let read = async move {
                let r = read_logs(&path, &opts, stopped, &mut writer).await;
                let _ = writer.shutdown().await;
                r
            };
            let forward = {
                let tx = tx.clone();
                async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        match reader.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if tx
                                    .send(Ok(Chunk {
                                        data: buf[..n].to_vec(),
                                    }))
                                    .await
                                    .is_err()
                                {
                                    break;
                                }
                            }
                        }
                    }
                }
            };
            let (result, ()) = tokio::join!(read, forward);
            if let Err(e) = result {
                let _ = tx.send(Err(Status::internal(e.to_string()))).await;
            }
        });
        Ok(stream_of(rx))
    }

    /// Resolves when the container whose log is `path` is no longer running.
    fn stopped(
        &self,
        pod: Pod,
        name: String,
        path: PathBuf,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let runtime = self.runtime.clone();
        async move {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let mut exits = runtime.exits();
            loop {
                let observed = runtime.observe(&uid).await.unwrap_or_default();
                // The instance writing this file: the newest whose attempt names it.
                let running = observed.containers.iter().any(|c| {
                    c.name == name
                        && c.state == ContainerState::Running
                        && path.ends_with(format!("{}.log", c.attempt))
                });
                if !running {
                    return;
                }
                tokio::select! {
                    _ = exits.recv() => {}
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
        }
    }

    /// `kubectl exec` and `kubectl attach`.
    pub async fn exec(
        &self,
        start: ExecStart,
        mut input: Streaming<ExecInput>,
    ) -> Result<Boxed<ExecOutput>, Status> {
        let pod = self.pod(&start.namespace, &start.pod)?;
        let name = Self::container_name(&pod, &start.container)?;
        let id = self.running_container(&pod, &name).await?;
        if start.attach {
            return self.attach(pod, name, id, start, input).await;
        }
        let io = TaskIo {
            stdin: start.stdin,
            terminal: start.tty,
        };
        let mut session = self
            .runtime
            .exec_session(&id, &start.command, io)
            .await
            .map_err(|e| Status::internal(format!("failed to exec in container: {e}")))?;
        let (tx, rx) = mpsc::channel(32);
        let mut stdin = session.stdin.take();
        let stdout = session.stdout.take();
        let stderr = session.stderr.take();
        let session = Arc::new(tokio::sync::Mutex::new(Some(session)));
        // Input: stdin bytes, resizes, the close of stdin.
        {
            let session = session.clone();
            tokio::spawn(async move {
                while let Ok(Some(msg)) = input.message().await {
                    match msg.input {
                        Some(exec_input::Input::Stdin(bytes)) => {
                            if let Some(s) = stdin.as_mut()
                                && s.write_all(&bytes).await.is_err()
                            {
                                stdin = None;
                            }
                        }
                        Some(exec_input::Input::Resize(size)) => {
                            if let Some(s) = session.lock().await.as_ref() {
                                let _ = s.resize(size.width, size.height).await;
                            }
                        }
                        Some(exec_input::Input::StdinClosed(_)) => {
                            // Our end of the FIFO first, then CloseIO: only that ends
                            // the process's input.
                            stdin = None;
                            if let Some(s) = session.lock().await.as_mut() {
                                let _ = s.close_stdin().await;
                            }
                        }
                        _ => {}
                    }
                }
            });
        }
        tokio::spawn(async move {
            let out = pump(stdout, tx.clone(), exec_output::Output::Stdout);
            let err = pump(stderr, tx.clone(), exec_output::Output::Stderr);
            tokio::join!(out, err);
            let session = session.lock().await.take();
            let exit = match session {
                Some(s) => s.wait().await,
                None => return,
            };
            let (code, message) = match exit {
                Ok(e) => (i32::try_from(e.code).unwrap_or(255), String::new()),
                Err(e) => (255, e.to_string()),
            };
            let _ = tx
                .send(Ok(ExecOutput {
                    output: Some(exec_output::Output::Exit(ExecExit { code, message })),
                }))
                .await;
        });
        Ok(stream_of(rx))
    }

    /// Attaches to a container's own stdio: its output from now on (from its log), its
    /// stdin when it was started with one.
    async fn attach(
        &self,
        pod: Pod,
        name: String,
        id: String,
        start: ExecStart,
        mut input: Streaming<ExecInput>,
    ) -> Result<Boxed<ExecOutput>, Status> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let dir = self.runtime.container_log(&ns, &pod_name, &uid, &name);
        let path = resolve_log_path(&dir, false)
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        let mut stdin = if start.stdin {
            self.runtime
                .client()
                .attach(&id)
                .await
                .ok()
                .and_then(|s| s.stdin)
        } else {
            None
        };
        let client = self.runtime.client().clone();
        {
            let id = id.clone();
            tokio::spawn(async move {
                while let Ok(Some(msg)) = input.message().await {
                    match msg.input {
                        Some(exec_input::Input::Stdin(bytes)) => {
                            if let Some(s) = stdin.as_mut()
                                && s.write_all(&bytes).await.is_err()
                            {
                                stdin = None;
                            }
                        }
                        Some(exec_input::Input::Resize(size)) => {
                            let _ = client.resize(&id, None, size.width, size.height).await;
                        }
                        Some(exec_input::Input::StdinClosed(_)) => {
                            stdin = None;
                            let _ = client.close_stdin(&id, None).await;
                        }
                        _ => {}
                    }
                }
            });
        }
        let (tx, rx) = mpsc::channel(32);
        let streams = self.clone();
        tokio::spawn(async move {
            let (mut writer, mut reader) = tokio::io::duplex(32 * 1024);
            let stopped = streams.stopped(pod, name, path.clone());
            let opts = ReadOptions {
                follow: true,
                tail: Some(0),
                ..Default::default()
            };
            let read = async move {
                let _ = read_logs(&path, &opts, stopped, &mut writer).await;
                let _ = writer.shutdown().await;
            };
            let forward = pump(Some(&mut reader), tx.clone(), |b| {
                exec_output::Output::Stdout(b)
            });
            tokio::join!(read, forward);
            let code = match streams.runtime.client().wait(&id).await {
                Ok(e) => i32::try_from(e.code).unwrap_or(255),
                Err(_) => 0,
            };
            let _ = tx
                .send(Ok(ExecOutput {
                    output: Some(exec_output::Output::Exit(ExecExit {
                        code,
                        message: String::new(),
                    })),
                }))
                .await;
        });
        Ok(stream_of(rx))
    }

    /// `kubectl port-forward`: one connection to a port inside the pod.
    pub async fn port_forward(
        &self,
        namespace: &str,
        name: &str,
        port: u32,
        mut input: Streaming<PortForwardFrame>,
    ) -> Result<Boxed<PortForwardFrame>, Status> {
        let pod = self.pod(namespace, name)?;
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let port = u16::try_from(port)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| Status::invalid_argument(format!("invalid port {port}")))?;
        let observed = self
            .runtime
            .observe(&uid)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let sandbox = observed
            .sandbox()
            .filter(|s| s.ready)
            .ok_or_else(|| Status::failed_precondition("the pod's sandbox is not running"))?;
        let stream = match &sandbox.netns {
            Some(netns) => kedge_cni::connect_tcp_in_netns(netns, port)
                .await
                .map_err(|e| e.to_string()),
            None => tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .map_err(|e| e.to_string()),
        };
        let stream = stream.map_err(|e| {
            Status::unavailable(format!(
                "error forwarding port {port} to pod {uid}, uid : failed to connect to localhost:{port} inside namespace: {e}"
            ))
        })?;
        let (mut rd, mut wr) = stream.into_split();
        tokio::spawn(async move {
            while let Ok(Some(frame)) = input.message().await {
                match frame.frame {
                    Some(port_forward_frame::Frame::Data(bytes)) => {
                        let written = wr.write_all(&bytes).await;
                        if written.is_err() {
                            break;
                        }
                    }
                    Some(port_forward_frame::Frame::Closed(_)) => break,
                    _ => {}
                }
            }
            let _ = wr.shutdown().await;
        });
        let (tx, rx) = mpsc::channel(32);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => {
                        let frame = PortForwardFrame {
                            frame: Some(port_forward_frame::Frame::Data(buf[..n].to_vec())),
                        };
                        if tx.send(Ok(frame)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let frame = PortForwardFrame {
                            frame: Some(port_forward_frame::Frame::Error(e.to_string())),
                        };
                        let _ = tx.send(Ok(frame)).await;
                        return;
                    }
                }
            }
            let _ = tx
                .send(Ok(PortForwardFrame {
                    frame: Some(port_forward_frame::Frame::Closed(true)),
                }))
                .await;
        });
        Ok(stream_of(rx))
    }
}

/// Copies a reader into the output channel until it ends.
async fn pump<R>(
    reader: Option<R>,
    tx: mpsc::Sender<Result<ExecOutput, Status>>,
    wrap: impl Fn(Vec<u8>) -> exec_output::Output,
) where
    R: tokio::io::AsyncRead + Unpin,
{
    let Some(mut reader) = reader else { return };
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let out = ExecOutput {
                    output: Some(wrap(buf[..n].to_vec())),
                };
                if tx.send(Ok(out)).await.is_err() {
                    return;
                }
            }
        }
    }
}
