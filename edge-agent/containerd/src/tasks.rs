//! Containers, tasks, exec and exit events.
//!
//! A task's stdio goes through FIFOs under `<fifo_dir>/<container-id>/`. The runc shim
//! holds both ends of each output FIFO for the task's lifetime, so the agent can drop its
//! readers (an agent restart) and open them again later with [`Client::attach`]: output
//! written meanwhile waits in the pipe (up to its 64 KiB buffer, after which the
//! container's writes block until a reader returns).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_client::services::v1::container::Runtime;
use containerd_client::services::v1::snapshots::{
    MountsRequest, PrepareSnapshotRequest, RemoveSnapshotRequest,
};
use containerd_client::services::v1::{
    CloseIoRequest, Container, CreateContainerRequest, CreateTaskRequest, DeleteContainerRequest,
    DeleteProcessRequest, DeleteTaskRequest, ExecProcessRequest, GetRequest, KillRequest,
    ListContainersRequest, PublishRequest, ResizePtyRequest, StartRequest, SubscribeRequest,
    WaitRequest,
};
use futures::StreamExt;
use tokio::net::unix::pipe;

use crate::client::{Client, RUNC_V2, RuncOptions};
use crate::error::{Error, Result};
use crate::images::ImageRef;

/// How a task's stdio is set up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskIo {
    /// Give the process a stdin the caller can write.
    pub stdin: bool,
    /// Run under a pseudo-terminal (stdout and stderr are then one stream). The spec's
    /// `process.terminal` must be true as well.
    pub terminal: bool,
}

/// The caller's ends of a task's stdio.
#[derive(Debug)]
pub struct TaskStreams {
    pub stdin: Option<pipe::Sender>,
    pub stdout: Option<pipe::Receiver>,
    pub stderr: Option<pipe::Receiver>,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// Exit status; 128+n when killed by signal n.
    pub code: u32,
    pub exited_at: Option<jiff::Timestamp>,
}

/// A task's state as containerd reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    Created,
    Running { pid: u32 },
    Stopped(Exit),
    Paused,
    Unknown,
}

/// A container record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: String,
    pub image: String,
    pub labels: HashMap<String, String>,
    pub created_at: Option<jiff::Timestamp>,
}

/// A task (or exec) exit seen on containerd's event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitEvent {
    pub container_id: String,
    /// The exec id, or the container id for the task's init process.
    pub process_id: String,
    pub pid: u32,
    pub exit: Exit,
}

fn ts(t: &Option<prost_types::Timestamp>) -> Option<jiff::Timestamp> {
    t.as_ref()
        .and_then(|t| jiff::Timestamp::new(t.seconds, t.nanos).ok())
        // containerd reports the zero time for "not exited".
        .filter(|t| t.as_second() > 0)
}

fn valid_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 76
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        && !id.starts_with(['.', '-']);
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "id {id:?} must be 1-76 characters of [A-Za-z0-9_.-], not starting with . or -"
        )))
    }
}

/// Opens the read end of an output FIFO once the shim has opened its write end. The open
/// blocks in a thread; `unblock_fifo` releases it if the shim never comes.
async fn open_reader(path: PathBuf) -> std::io::Result<pipe::Receiver> {
    let file = tokio::task::spawn_blocking(move || std::fs::File::open(path))
        .await
        .map_err(std::io::Error::other)??;
    pipe::Receiver::from_file(file)
}

fn unblock_fifo(path: &Path) {
    // Opening the write end without blocking completes a reader's blocked open; closing it
    // at once then reads as end of file.
    let _ = pipe::OpenOptions::new().open_sender(path);
}

/// Releases a reader blocked in `open_reader` and waits for it. The reader thread may not
/// have reached open(2) yet (then the non-blocking writer open fails with ENXIO), so keep
/// trying until it is done.
async fn cancel_reader(
    path: &Path,
    reader: tokio::task::JoinHandle<std::io::Result<pipe::Receiver>>,
) {
    for _ in 0..500 {
        if reader.is_finished() {
            break;
        }
        unblock_fifo(path);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if reader.is_finished() {
        let _ = reader.await;
    } else {
        reader.abort();
        tracing::warn!(path = %path.display(), "fifo reader could not be released");
    }
}

fn mkfifo(path: &Path) -> Result<()> {
    match nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(()),
        Err(e) => Err(Error::io("mkfifo", path, e.into())),
    }
}

/// FIFO paths for one process.
#[derive(Debug, Clone)]
struct Fifos {
    dir: PathBuf,
    stdin: Option<PathBuf>,
    stdout: PathBuf,
    stderr: Option<PathBuf>,
}

impl Fifos {
    fn make(dir: PathBuf, prefix: &str, io: TaskIo) -> Result<Fifos> {
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create fifo dir", &dir, e))?;
        let f = Fifos {
            stdin: io.stdin.then(|| dir.join(format!("{prefix}stdin"))),
            stdout: dir.join(format!("{prefix}stdout")),
            stderr: (!io.terminal).then(|| dir.join(format!("{prefix}stderr"))),
            dir,
        };
        for p in f.stdin.iter().chain([&f.stdout]).chain(f.stderr.iter()) {
            mkfifo(p)?;
        }
        Ok(f)
    }

    fn remove(&self) {
        for p in self
            .stdin
            .iter()
            .chain([&self.stdout])
            .chain(self.stderr.iter())
        {
            let _ = std::fs::remove_file(p);
        }
    }

    fn path_str(p: &Option<PathBuf>) -> String {
        p.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }

    /// Opens our ends around `create`: stdin before (so the shim never sees it closed),
    /// the outputs as soon as the shim opens them.
    async fn open_around<F, T>(&self, create: F) -> Result<(T, TaskStreams)>
    where
        F: std::future::Future<Output = Result<T>>,
    {
        let stdin = match &self.stdin {
            Some(p) => Some(
                pipe::OpenOptions::new()
                    .read_write(true)
                    .open_sender(p)
                    .map_err(|e| Error::io("open stdin fifo", p, e))?,
            ),
            None => None,
        };
        let out = tokio::spawn(open_reader(self.stdout.clone()));
        let err = self.stderr.clone().map(|p| tokio::spawn(open_reader(p)));
        let created = match create.await {
            Ok(t) => t,
            Err(e) => {
                cancel_reader(&self.stdout, out).await;
                if let (Some(p), Some(err)) = (&self.stderr, err) {
                    cancel_reader(p, err).await;
                }
                return Err(e);
            }
        };
        let stdout = out
            .await
            .map_err(|e| Error::io("open stdout fifo", &self.stdout, std::io::Error::other(e)))?
            .map_err(|e| Error::io("open stdout fifo", &self.stdout, e))?;
        let stderr = match err {
            Some(h) => Some(
                h.await
                    .map_err(|e| {
                        Error::io("open stderr fifo", &self.dir, std::io::Error::other(e))
                    })?
                    .map_err(|e| Error::io("open stderr fifo", &self.dir, e))?,
            ),
            None => None,
        };
        Ok((
            created,
            TaskStreams {
                stdin,
                stdout: Some(stdout),
                stderr,
            },
        ))
    }
}

impl Client {
    /// Creates a container: a snapshot of the image's rootfs (key = the container id) and
    /// a container record running `io.containerd.runc.v2`. The spec's `root.path` is set
    /// to `rootfs`, where the shim mounts the snapshot.
    #[tracing::instrument(name = "create_container", skip_all, fields(id))]
    pub async fn create_container(
        &self,
        id: &str,
        image: &ImageRef,
        spec: &oci_spec::runtime::Spec,
        labels: HashMap<String, String>,
    ) -> Result<()> {
        valid_id(id)?;
        let mut spec = spec.clone();
        let mut root = spec.root().clone().unwrap_or_default();
        root.set_path(PathBuf::from("rootfs"));
        spec.set_root(Some(root));
        let spec_json = serde_json::to_vec(&spec).map_err(|source| Error::Spec {
            what: "spec",
            id: id.to_string(),
            source,
        })?;
        // Until the container record references the snapshot, only a lease keeps
        // containerd's garbage collector from removing it.
        let lease = self.create_lease("container").await?;
        let result = self
            .create_container_leased(id, image, spec_json, labels, &lease)
            .await;
        if let Err(e) = self.release_lease(lease, false).await {
            tracing::warn!(id, error = %e, "could not drop the container lease; it expires in an hour");
        }
        result?;
        self.mark_image_used(&image.name).await;
        Ok(())
    }

    /// Creates a container whose root filesystem is a directory on the host (the spec's
    /// absolute `root.path`), with no image and no snapshot: the pod sandbox's pause
    /// container, whose rootfs holds nothing but the pause binary.
    #[tracing::instrument(name = "create_container_with_rootfs", skip_all, fields(id))]
    pub async fn create_container_with_rootfs(
        &self,
        id: &str,
        spec: &oci_spec::runtime::Spec,
        labels: HashMap<String, String>,
    ) -> Result<()> {
        valid_id(id)?;
        let root = spec
            .root()
            .as_ref()
            .map(|r| r.path().clone())
            .filter(|p| p.is_absolute())
            .ok_or_else(|| {
                Error::Config(format!(
                    "container {id}: a container without an image needs an absolute root.path"
                ))
            })?;
        if !root.is_dir() {
            return Err(Error::Config(format!(
                "container {id}: its root filesystem {} is not a directory",
                root.display()
            )));
        }
        let spec_json = serde_json::to_vec(spec).map_err(|source| Error::Spec {
            what: "spec",
            id: id.to_string(),
            source,
        })?;
        let options = RuncOptions {
            root: self
                .config
                .runc_root
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            ..Default::default()
        };
        let container = Container {
            id: id.to_string(),
            labels,
            runtime: Some(Runtime {
                name: RUNC_V2.to_string(),
                options: Some(options.to_any()),
            }),
            spec: Some(prost_types::Any {
                type_url: "types.containerd.io/opencontainers/runtime-spec/1/Spec".into(),
                value: spec_json,
            }),
            ..Default::default()
        };
        self.containers()
            .create(self.req(CreateContainerRequest {
                container: Some(container),
            }))
            .await
            .map_err(|e| Error::containerd("create container", id, e))?;
        Ok(())
    }

    async fn create_container_leased(
        &self,
        id: &str,
        image: &ImageRef,
        spec_json: Vec<u8>,
        labels: HashMap<String, String>,
        lease: &crate::content::Lease,
    ) -> Result<()> {
        self.snapshots()
            .prepare(self.req_leased(
                PrepareSnapshotRequest {
                    snapshotter: self.snapshotter.clone(),
                    key: id.to_string(),
                    parent: image.chain_id.clone(),
                    labels: HashMap::new(),
                },
                &lease.id,
            ))
            .await
            .map_err(|e| Error::containerd("prepare snapshot", id, e))?;
        let options = RuncOptions {
            root: self
                .config
                .runc_root
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            ..Default::default()
        };
        let container = Container {
            id: id.to_string(),
            labels,
            image: image.name.clone(),
            runtime: Some(Runtime {
                name: RUNC_V2.to_string(),
                options: Some(options.to_any()),
            }),
            spec: Some(prost_types::Any {
                type_url: "types.containerd.io/opencontainers/runtime-spec/1/Spec".into(),
                value: spec_json,
            }),
            snapshotter: self.snapshotter.clone(),
            snapshot_key: id.to_string(),
            ..Default::default()
        };
        if let Err(e) = self
            .containers()
            .create(self.req_leased(
                CreateContainerRequest {
                    container: Some(container),
                },
                &lease.id,
            ))
            .await
        {
            self.remove_snapshot(id).await;
            return Err(Error::containerd("create container", id, e));
        }
        Ok(())
    }

    async fn remove_snapshot(&self, key: &str) {
        match self
            .snapshots()
            .remove(self.req(RemoveSnapshotRequest {
                snapshotter: self.snapshotter.clone(),
                key: key.to_string(),
            }))
            .await
        {
            Ok(_) => {}
            Err(s) if s.code() == tonic::Code::NotFound => {}
            Err(e) => tracing::warn!(key, error = %e.message(), "could not remove snapshot"),
        }
    }

    /// Creates and starts the container's task; returns its pid and the caller's ends of
    /// its stdio.
    #[tracing::instrument(name = "start_task", skip(self))]
    pub async fn start(&self, id: &str, io: TaskIo) -> Result<(u32, TaskStreams)> {
        valid_id(id)?;
        // A container made with `create_container_with_rootfs` has no snapshot: its
        // rootfs is already in its spec.
        let mounts = match self
            .snapshots()
            .mounts(self.req(MountsRequest {
                snapshotter: self.snapshotter.clone(),
                key: id.to_string(),
            }))
            .await
        {
            Ok(r) => r.into_inner().mounts,
            Err(s) if s.code() == tonic::Code::NotFound => Vec::new(),
            Err(e) => return Err(Error::containerd("snapshot mounts", id, e)),
        };
        let fifos = Fifos::make(self.fifo_dir(id), "", io)?;
        let req = CreateTaskRequest {
            container_id: id.to_string(),
            rootfs: mounts,
            stdin: Fifos::path_str(&fifos.stdin),
            stdout: fifos.stdout.display().to_string(),
            stderr: Fifos::path_str(&fifos.stderr),
            terminal: io.terminal,
            ..Default::default()
        };
        let create_and_start = async {
            self.tasks()
                .create(self.req(req))
                .await
                .map_err(|e| Error::containerd("create task", id, e))?;
            match self
                .tasks()
                .start(self.req(StartRequest {
                    container_id: id.to_string(),
                    exec_id: String::new(),
                }))
                .await
            {
                Ok(r) => Ok(r.into_inner().pid),
                Err(e) => {
                    let _ = self
                        .tasks()
                        .delete(self.req(DeleteTaskRequest {
                            container_id: id.to_string(),
                        }))
                        .await;
                    Err(Error::containerd("start task", id, e))
                }
            }
        };
        let (pid, streams) = fifos.open_around(create_and_start).await?;
        Ok((pid, streams))
    }

    /// Opens a running task's output FIFOs again (after the agent restarted). Fails when
    /// the task is not running.
    pub async fn attach(&self, id: &str) -> Result<TaskStreams> {
        let process = self
            .tasks()
            .get(self.req(GetRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
            }))
            .await
            .map_err(|e| Error::containerd("get task", id, e))?
            .into_inner()
            .process
            .ok_or_else(|| Error::NotFound {
                kind: "task",
                name: id.to_string(),
            })?;
        let mut streams = TaskStreams {
            stdin: None,
            stdout: None,
            stderr: None,
        };
        let open = |p: &str| {
            let p = PathBuf::from(p);
            async move {
                match tokio::time::timeout(Duration::from_secs(5), open_reader(p.clone())).await {
                    Ok(r) => r.map_err(|e| Error::io("open fifo", &p, e)),
                    Err(_) => {
                        unblock_fifo(&p);
                        Err(Error::io(
                            "open fifo",
                            &p,
                            std::io::Error::new(
                                std::io::ErrorKind::TimedOut,
                                "no writer: the task's shim has closed it",
                            ),
                        ))
                    }
                }
            }
        };
        if !process.stdout.is_empty() {
            streams.stdout = Some(open(&process.stdout).await?);
        }
        if !process.stderr.is_empty() {
            streams.stderr = Some(open(&process.stderr).await?);
        }
        if !process.stdin.is_empty() {
            streams.stdin = pipe::OpenOptions::new()
                .read_write(true)
                .open_sender(&process.stdin)
                .ok();
        }
        Ok(streams)
    }

    /// Signals the task (`all`: every process in the container).
    pub async fn kill(&self, id: &str, signal: nix::sys::signal::Signal, all: bool) -> Result<()> {
        self.signal_process(id, "", signal, all).await
    }

    async fn signal_process(
        &self,
        id: &str,
        exec_id: &str,
        signal: nix::sys::signal::Signal,
        all: bool,
    ) -> Result<()> {
        self.tasks()
            .kill(self.req(KillRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
                signal: signal as i32 as u32,
                all,
            }))
            .await
            .map_err(|e| Error::containerd("kill task", id, e))?;
        Ok(())
    }

    /// Waits for the task to exit.
    pub async fn wait(&self, id: &str) -> Result<Exit> {
        self.wait_process(id, "").await
    }

    async fn wait_process(&self, id: &str, exec_id: &str) -> Result<Exit> {
        let r = self
            .tasks()
            .wait(self.req(WaitRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
            }))
            .await
            .map_err(|e| Error::containerd("wait task", id, e))?
            .into_inner();
        Ok(Exit {
            code: r.exit_status,
            exited_at: ts(&r.exited_at),
        })
    }

    /// The task's state; `None` when the container has no task.
    pub async fn task_status(&self, id: &str) -> Result<Option<TaskState>> {
        use containerd_client::types::v1::Status;
        let p = match self
            .tasks()
            .get(self.req(GetRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
            }))
            .await
        {
            Ok(r) => r.into_inner().process,
            Err(s) if s.code() == tonic::Code::NotFound => return Ok(None),
            Err(e) => return Err(Error::containerd("get task", id, e)),
        };
        let Some(p) = p else { return Ok(None) };
        Ok(Some(
            match Status::try_from(p.status).unwrap_or(Status::Unknown) {
                Status::Created => TaskState::Created,
                Status::Running => TaskState::Running { pid: p.pid },
                Status::Stopped => TaskState::Stopped(Exit {
                    code: p.exit_status,
                    exited_at: ts(&p.exited_at),
                }),
                Status::Paused | Status::Pausing => TaskState::Paused,
                Status::Unknown => TaskState::Unknown,
            },
        ))
    }

    /// Deletes the task (killing it first if it runs), the container and its snapshot,
    /// and its FIFOs. Deleting what is already gone is not an error.
    #[tracing::instrument(name = "delete_container", skip(self))]
    pub async fn delete(&self, id: &str) -> Result<()> {
        if let Some(state) = self.task_status(id).await? {
            if matches!(
                state,
                TaskState::Running { .. } | TaskState::Paused | TaskState::Created
            ) {
                let waiter = {
                    let c = self.clone();
                    let id = id.to_string();
                    tokio::spawn(async move { c.wait(&id).await })
                };
                // Let the Wait call register before the kill.
                tokio::task::yield_now().await;
                match self.kill(id, nix::sys::signal::Signal::SIGKILL, true).await {
                    Ok(()) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e),
                }
                let _ = tokio::time::timeout(Duration::from_secs(10), waiter).await;
            }
            match self
                .tasks()
                .delete(self.req(DeleteTaskRequest {
                    container_id: id.to_string(),
                }))
                .await
            {
                Ok(_) => {}
                Err(s) if s.code() == tonic::Code::NotFound => {}
                Err(e) => return Err(Error::containerd("delete task", id, e)),
            }
        }
        match self
            .containers()
            .delete(self.req(DeleteContainerRequest { id: id.to_string() }))
            .await
        {
            Ok(_) => {}
            Err(s) if s.code() == tonic::Code::NotFound => {}
            Err(e) => return Err(Error::containerd("delete container", id, e)),
        }
        self.remove_snapshot(id).await;
        let dir = self.fifo_dir(id);
        if let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %dir.display(), error = %e, "could not remove fifo dir");
        }
        Ok(())
    }

    /// Containers whose labels include every `label_filter` pair.
    pub async fn list_containers(
        &self,
        label_filter: &HashMap<String, String>,
    ) -> Result<Vec<ContainerInfo>> {
        let filter = label_filter
            .iter()
            .map(|(k, v)| format!("labels.{}=={}", quote_filter(k), quote_filter(v)))
            .collect::<Vec<_>>()
            .join(",");
        let filters = if filter.is_empty() {
            vec![]
        } else {
            vec![filter]
        };
        let list = self
            .containers()
            .list(self.req(ListContainersRequest { filters }))
            .await
            .map_err(|e| Error::containerd("list containers", &self.config.namespace, e))?
            .into_inner()
            .containers;
        Ok(list
            .into_iter()
            .map(|c| ContainerInfo {
                id: c.id,
                image: c.image,
                labels: c.labels,
                created_at: c
                    .created_at
                    .and_then(|t| jiff::Timestamp::new(t.seconds, t.nanos).ok()),
            })
            .collect())
    }

    /// Runs a process in a running container.
    #[tracing::instrument(name = "exec", skip(self, process, io))]
    pub async fn exec(
        &self,
        container_id: &str,
        exec_id: &str,
        process: &oci_spec::runtime::Process,
        io: TaskIo,
    ) -> Result<ExecSession> {
        valid_id(exec_id)?;
        let mut process = process.clone();
        process.set_terminal(Some(io.terminal));
        let spec = serde_json::to_vec(&process).map_err(|source| Error::Spec {
            what: "process",
            id: format!("{container_id}/{exec_id}"),
            source,
        })?;
        let fifos = Fifos::make(self.fifo_dir(container_id), &format!("exec-{exec_id}-"), io)?;
        let req = ExecProcessRequest {
            container_id: container_id.to_string(),
            stdin: Fifos::path_str(&fifos.stdin),
            stdout: fifos.stdout.display().to_string(),
            stderr: Fifos::path_str(&fifos.stderr),
            terminal: io.terminal,
            spec: Some(prost_types::Any {
                type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
                value: spec,
            }),
            exec_id: exec_id.to_string(),
        };
        let what = format!("{container_id}/{exec_id}");
        // The shim opens an exec's FIFOs only when it starts the process.
        let exec_and_start = async {
            self.tasks()
                .exec(self.req(req))
                .await
                .map_err(|e| Error::containerd("exec", what.clone(), e))?;
            match self
                .tasks()
                .start(self.req(StartRequest {
                    container_id: container_id.to_string(),
                    exec_id: exec_id.to_string(),
                }))
                .await
            {
                Ok(r) => Ok(r.into_inner().pid),
                Err(e) => {
                    let _ = self
                        .tasks()
                        .delete_process(self.req(DeleteProcessRequest {
                            container_id: container_id.to_string(),
                            exec_id: exec_id.to_string(),
                        }))
                        .await;
                    Err(Error::containerd("start exec", what.clone(), e))
                }
            }
        };
        let (pid, streams) = match fifos.open_around(exec_and_start).await {
            Ok(r) => r,
            Err(e) => {
                fifos.remove();
                return Err(e);
            }
        };
        let session = ExecSession {
            client: self.clone(),
            container_id: container_id.to_string(),
            exec_id: exec_id.to_string(),
            fifos: fifos.clone(),
            stdin: streams.stdin,
            stdout: streams.stdout,
            stderr: streams.stderr,
            pid,
        };
        Ok(session)
    }

    /// Closes a task's (or an exec's) stdin: the process reads end of file. Close the
    /// caller's stdin writer first.
    pub async fn close_stdin(&self, id: &str, exec_id: Option<&str>) -> Result<()> {
        self.tasks()
            .close_io(self.req(CloseIoRequest {
                container_id: id.to_string(),
                exec_id: exec_id.unwrap_or_default().to_string(),
                stdin: true,
            }))
            .await
            .map_err(|e| Error::containerd("close stdin", id, e))?;
        Ok(())
    }

    /// Resizes a task's (or an exec's) terminal.
    pub async fn resize(
        &self,
        id: &str,
        exec_id: Option<&str>,
        width: u32,
        height: u32,
    ) -> Result<()> {
        self.tasks()
            .resize_pty(self.req(ResizePtyRequest {
                container_id: id.to_string(),
                exec_id: exec_id.unwrap_or_default().to_string(),
                width,
                height,
            }))
            .await
            .map_err(|e| Error::containerd("resize pty", id, e))?;
        Ok(())
    }

    /// A stream of task and exec exits in our namespace, as containerd publishes them.
    /// It ends when containerd goes away; subscribe again after a restart (and reconcile
    /// with [`Client::task_status`], as exits during the gap are not replayed).
    pub async fn exit_events(
        &self,
    ) -> Result<futures::stream::BoxStream<'static, Result<ExitEvent>>> {
        let filter = format!(
            "topic==\"/tasks/exit\",namespace=={}",
            quote_filter(&self.config.namespace)
        );
        // containerd answers a subscription (and tonic returns it) only with the first
        // event. So subscribe also to a marker topic of our own and publish to it until the
        // subscription answers: when this returns, no later exit can be missed.
        let marker = format!("/kedge/subscribed/{}", crate::client::random_suffix());
        let filters = vec![filter, format!("topic==\"{marker}\"")];
        let mut events = self.events();
        let mut sub = tokio::spawn(async move {
            events
                .subscribe(tonic::Request::new(SubscribeRequest { filters }))
                .await
        });
        let mut answered = None;
        for _ in 0..250 {
            let publish = PublishRequest {
                topic: marker.clone(),
                event: Some(prost_types::Any {
                    type_url: "types.kedge.io/subscribed".into(),
                    value: Vec::new(),
                }),
            };
            if let Err(e) = self.events().publish(self.req(publish)).await {
                sub.abort();
                return Err(Error::containerd("publish", &marker, e));
            }
            tokio::select! {
                r = &mut sub => {
                    answered = Some(r);
                    break;
                }
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
        let Some(answered) = answered else {
            sub.abort();
            return Err(Error::containerd(
                "subscribe",
                "/tasks/exit",
                tonic::Status::deadline_exceeded(
                    "containerd did not answer the subscription in 5s",
                ),
            ));
        };
        let stream = answered
            .map_err(|e| {
                Error::containerd(
                    "subscribe",
                    "/tasks/exit",
                    tonic::Status::internal(e.to_string()),
                )
            })?
            .map_err(|e| Error::containerd("subscribe", "/tasks/exit", e))?
            .into_inner();
        Ok(stream
            .filter_map(|env| async move {
                let env = match env {
                    Ok(e) => e,
                    Err(e) => {
                        return Some(Err(Error::containerd("event stream", "/tasks/exit", e)));
                    }
                };
                if env.topic != "/tasks/exit" {
                    return None;
                }
                let any = env.event?;
                let ev = <containerd_client::events::TaskExit as prost::Message>::decode(
                    any.value.as_slice(),
                )
                .ok()?;
                Some(Ok(ExitEvent {
                    container_id: ev.container_id,
                    process_id: ev.id,
                    pid: ev.pid,
                    exit: Exit {
                        code: ev.exit_status,
                        exited_at: ts(&ev.exited_at),
                    },
                }))
            })
            .boxed())
    }
}

fn quote_filter(s: &str) -> String {
    if s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// A process started by [`Client::exec`].
#[derive(Debug)]
pub struct ExecSession {
    client: Client,
    container_id: String,
    exec_id: String,
    fifos: Fifos,
    /// Writes to the process's stdin; drop it to close stdin.
    pub stdin: Option<pipe::Sender>,
    /// The process's stdout (and stderr too, with a terminal).
    pub stdout: Option<pipe::Receiver>,
    /// The process's stderr (none with a terminal).
    pub stderr: Option<pipe::Receiver>,
    /// The process's pid.
    pub pid: u32,
}

impl ExecSession {
    /// The exec id.
    pub fn exec_id(&self) -> &str {
        &self.exec_id
    }

    /// Resizes the exec's terminal.
    pub async fn resize(&self, width: u32, height: u32) -> Result<()> {
        self.client
            .resize(&self.container_id, Some(&self.exec_id), width, height)
            .await
    }

    /// Closes the process's stdin (it reads end of file).
    pub async fn close_stdin(&mut self) -> Result<()> {
        self.stdin.take();
        self.client
            .close_stdin(&self.container_id, Some(&self.exec_id))
            .await
    }

    /// Signals the exec'd process.
    pub async fn kill(&self, signal: nix::sys::signal::Signal) -> Result<()> {
        self.client
            .signal_process(&self.container_id, &self.exec_id, signal, false)
            .await
    }

    /// Waits for the process to exit, then removes it from containerd and its FIFOs.
    /// Take the streams out first if they are still being read.
    pub async fn wait(mut self) -> Result<Exit> {
        self.stdin.take();
        let exit = self
            .client
            .wait_process(&self.container_id, &self.exec_id)
            .await;
        self.cleanup().await;
        exit
    }

    async fn cleanup(&self) {
        let _ = self
            .client
            .tasks()
            .delete_process(self.client.req(DeleteProcessRequest {
                container_id: self.container_id.clone(),
                exec_id: self.exec_id.clone(),
            }))
            .await;
        self.fifos.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(valid_id("pod-abc_1.c").is_ok());
        for bad in ["", "-x", "a/b", "a b", &"x".repeat(77)] {
            assert!(valid_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn filters_are_quoted() {
        assert_eq!(quote_filter("pod"), "pod");
        assert_eq!(
            quote_filter("io.kubernetes.pod.uid"),
            "\"io.kubernetes.pod.uid\""
        );
        assert_eq!(quote_filter("a\"b"), "\"a\\\"b\"");
    }
}
