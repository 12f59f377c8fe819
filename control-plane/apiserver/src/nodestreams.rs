//! The way from the API server to the agent that runs a pod: logs, exec,
//! attach, port-forward and the node's stats summary.
//!
//! The API server does not know how a node is reached. It asks a
//! [`NodeStreams`], which the server's node link implements over the
//! tunnel the agent dialed (and, with several servers, by forwarding to the
//! server holding that tunnel). Until one is installed with
//! [`ApiServer::set_node_streams`](crate::ApiServer::set_node_streams),
//! these subresources answer 503.
//!
//! The shapes carry only `kedge_proto` message structs, channels and
//! streams: no tonic or tunnel types, so a test can fake a whole node.
//!
//! Architecture invariant: nothing here knows how Kubernetes clients speak
//! (WebSocket, SPDY); that lives in [`crate::streams`].

use bytes::Bytes;
use futures::stream::BoxStream;
use kedge_proto::v1::{
    ExecInput, ExecOutput, ExecStart, LogsRequest, PortForwardFrame, PortForwardStart,
};
use tokio::sync::mpsc;

use crate::status::ApiError;

/// A stream of log bytes, as the container wrote them.
pub type LogStream = BoxStream<'static, Result<Bytes, StreamError>>;

/// Reaches the agent on a node.
#[async_trait::async_trait]
pub trait NodeStreams: Send + Sync + std::fmt::Debug + 'static {
    /// A container's log. The stream ends when the log does (or, with
    /// `follow`, when the container stops); dropping it cancels.
    async fn logs(&self, node: &str, req: LogsRequest) -> Result<LogStream, StreamError>;

    /// Runs a command in a container, or attaches to its main process
    /// (`start.attach`). The start message is already sent when this
    /// returns.
    async fn exec(&self, node: &str, start: ExecStart) -> Result<ExecChannels, StreamError>;

    /// Opens one connection to a port inside the pod's network namespace.
    async fn port_forward(
        &self,
        node: &str,
        start: PortForwardStart,
    ) -> Result<PortForwardChannels, StreamError>;

    /// The kubelet stats summary (`/stats/summary`), JSON.
    async fn stats(&self, node: &str) -> Result<Bytes, StreamError>;
}

/// Both directions of an exec or attach session.
pub struct ExecChannels {
    /// Stdin, resizes and the close of stdin. Dropping it closes stdin too.
    pub input: mpsc::Sender<ExecInput>,
    /// Stdout, stderr, then exactly one exit.
    pub output: BoxStream<'static, Result<ExecOutput, StreamError>>,
}

impl std::fmt::Debug for ExecChannels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecChannels").finish_non_exhaustive()
    }
}

/// Both directions of one forwarded connection.
pub struct PortForwardChannels {
    /// Data and `closed` towards the pod. Dropping it closes the
    /// connection's write side.
    pub input: mpsc::Sender<PortForwardFrame>,
    /// Data, `closed` or `error` from the pod.
    pub output: BoxStream<'static, Result<PortForwardFrame, StreamError>>,
}

impl std::fmt::Debug for PortForwardChannels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortForwardChannels")
            .finish_non_exhaustive()
    }
}

/// What went wrong on the way to a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamErrorKind {
    /// No tunnel to the node, here or on another server.
    NodeNotConnected,
    /// The agent does not have the pod or container.
    NotFound,
    /// Anything else.
    Failed,
}

/// A node could not answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StreamError {
    pub kind: StreamErrorKind,
    pub message: String,
}

impl StreamError {
    pub fn new(kind: StreamErrorKind, message: impl Into<String>) -> Self {
        StreamError {
            kind,
            message: message.into(),
        }
    }

    pub fn node_not_connected(message: impl Into<String>) -> Self {
        StreamError::new(StreamErrorKind::NodeNotConnected, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        StreamError::new(StreamErrorKind::NotFound, message)
    }

    pub fn failed(message: impl Into<String>) -> Self {
        StreamError::new(StreamErrorKind::Failed, message)
    }

    /// The Kubernetes answer: upstream's apiserver says `error dialing
    /// backend: ...` (500) when it cannot reach the kubelet, and passes on
    /// the kubelet's 404s.
    pub fn to_api_error(&self) -> ApiError {
        match self.kind {
            // Upstream's proxy answers these without the "Internal error occurred"
            // prefix, and kubectl prints "Error from server: error dialing backend: …".
            StreamErrorKind::NodeNotConnected => ApiError::new(
                500,
                "InternalError",
                format!("error dialing backend: {}", self.message),
            ),
            StreamErrorKind::NotFound => ApiError::new(404, "NotFound", self.message.clone()),
            StreamErrorKind::Failed => ApiError::internal(self.message.clone()),
        }
    }
}
