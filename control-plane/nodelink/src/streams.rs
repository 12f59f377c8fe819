//! The API server's way to an agent ([`kedge_apiserver::nodestreams::NodeStreams`]) over
//! the agent's own tunnel: each call becomes an `AgentStreams` gRPC call on the
//! connection the node dialed, in the reverse direction, so the agent needs no inbound
//! port.
//!
//! A node whose tunnel this server does not hold answers "error dialing backend", as
//! upstream does for an unreachable kubelet.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use kedge_apiserver::nodestreams::{
    ExecChannels, LogStream, NodeStreams, PortForwardChannels, StreamError,
};
use kedge_proto::v1::agent_streams_client::AgentStreamsClient;
use kedge_proto::v1::{
    ExecInput, ExecStart, LogsRequest, PortForwardFrame, PortForwardStart, StatsRequest,
    exec_input, port_forward_frame,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::CompressionEncoding;
use tonic::transport::Channel;

use crate::NodeLink;

/// How many input messages (stdin chunks, forwarded bytes) may wait for the agent.
const INPUT_QUEUE: usize = 16;

/// [`NodeStreams`] over this server's agent tunnels.
#[derive(Debug, Clone)]
pub struct LinkStreams {
    link: Arc<NodeLink>,
}

impl LinkStreams {
    pub fn new(link: Arc<NodeLink>) -> LinkStreams {
        LinkStreams { link }
    }

    fn client(&self, node: &str) -> Result<AgentStreamsClient<Channel>, StreamError> {
        let channel = self.link.agent_channel(node).ok_or_else(|| {
            StreamError::node_not_connected(format!(
                "node {node:?} has no tunnel to this server (is its agent running and connected?)"
            ))
        })?;
        Ok(AgentStreamsClient::new(channel)
            .send_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Gzip))
    }
}

/// An agent's gRPC status as the API server's error.
fn from_status(node: &str, status: tonic::Status) -> StreamError {
    let message = format!("node {node}: {}", status.message());
    match status.code() {
        tonic::Code::NotFound => StreamError::not_found(message),
        tonic::Code::Unavailable => StreamError::node_not_connected(message),
        _ => StreamError::failed(message),
    }
}

#[async_trait::async_trait]
impl NodeStreams for LinkStreams {
    async fn logs(&self, node: &str, req: LogsRequest) -> Result<LogStream, StreamError> {
        let mut client = self.client(node)?;
        let stream = client
            .logs(req)
            .await
            .map_err(|s| from_status(node, s))?
            .into_inner();
        let node = node.to_string();
        Ok(stream
            .map(move |r| {
                r.map(|c| Bytes::from(c.data))
                    .map_err(|s| from_status(&node, s))
            })
            .boxed())
    }

    async fn exec(&self, node: &str, start: ExecStart) -> Result<ExecChannels, StreamError> {
        let mut client = self.client(node)?;
        let (input, rx) = mpsc::channel(INPUT_QUEUE);
        let first = ExecInput {
            input: Some(exec_input::Input::Start(start)),
        };
        input
            .send(first)
            .await
            .map_err(|_| StreamError::failed("exec input closed before it started"))?;
        let output = client
            .exec(ReceiverStream::new(rx))
            .await
            .map_err(|s| from_status(node, s))?
            .into_inner();
        let node = node.to_string();
        Ok(ExecChannels {
            input,
            output: output
                .map(move |r| r.map_err(|s| from_status(&node, s)))
                .boxed(),
        })
    }

    async fn port_forward(
        &self,
        node: &str,
        start: PortForwardStart,
    ) -> Result<PortForwardChannels, StreamError> {
        let mut client = self.client(node)?;
        let (input, rx) = mpsc::channel(INPUT_QUEUE);
        let first = PortForwardFrame {
            frame: Some(port_forward_frame::Frame::Start(start)),
        };
        input
            .send(first)
            .await
            .map_err(|_| StreamError::failed("port-forward input closed before it started"))?;
        let output = client
            .port_forward(ReceiverStream::new(rx))
            .await
            .map_err(|s| from_status(node, s))?
            .into_inner();
        let node = node.to_string();
        Ok(PortForwardChannels {
            input,
            output: output
                .map(move |r| r.map_err(|s| from_status(&node, s)))
                .boxed(),
        })
    }

    async fn stats(&self, node: &str) -> Result<Bytes, StreamError> {
        let mut client = self.client(node)?;
        let response = client
            .stats(StatsRequest {})
            .await
            .map_err(|s| from_status(node, s))?;
        Ok(Bytes::from(response.into_inner().summary))
    }
}
