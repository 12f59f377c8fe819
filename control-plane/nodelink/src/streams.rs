//! The API server's way to an agent ([`kedge_apiserver::nodestreams::NodeStreams`]) over
//! the agent's own tunnel: each call becomes an `AgentStreams` gRPC call on the
//! connection the node dialed, in the reverse direction, so the agent needs no inbound
//! port.
//!
//! A node whose tunnel another server holds (as `/kedge/tunnels/<node>` records) is
//! reached through that server ([`crate::peer`]), which relays the call over the tunnel.
//! A node no server holds, or whose recorded holder cannot be reached (it died), answers
//! "error dialing backend" naming the node, as upstream does for an unreachable kubelet.

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

    /// The way to `node`'s agent: its tunnel on this server, or the server holding it.
    async fn route(&self, node: &str) -> Result<Route, StreamError> {
        if let Some(channel) = self.link.agent_channel(node) {
            return Ok(Route {
                client: AgentStreamsClient::new(channel)
                    .send_compressed(CompressionEncoding::Gzip)
                    .accept_compressed(CompressionEncoding::Gzip),
                node: node.to_string(),
                via: None,
            });
        }
        let record = self.link.tunnel_record(node).await.ok_or_else(|| {
            StreamError::node_not_connected(format!(
                "node {node:?} has no tunnel to any server (is its agent running and connected?)"
            ))
        })?;
        if record.server == self.link.server_id() {
            return Err(StreamError::node_not_connected(format!(
                "node {node:?} has no tunnel to this server, which its record names (is its agent running and connected?)"
            )));
        }
        let channel = self.link.peers().channel(&record.address).map_err(|e| {
            StreamError::node_not_connected(format!(
                "node {node:?}: its tunnel is held by server {} at {}: {e}",
                record.server, record.address
            ))
        })?;
        let header = tonic::metadata::MetadataValue::try_from(node)
            .map_err(|_| StreamError::failed(format!("node name {node:?} cannot be sent")))?;
        Ok(Route {
            client: AgentStreamsClient::new(channel)
                .max_decoding_message_size(kedge_proto::transport::MAX_MESSAGE_SIZE),
            node: node.to_string(),
            via: Some((record, header)),
        })
    }
}

/// Where a call goes: straight to the agent, or through the server holding its tunnel.
struct Route {
    client: AgentStreamsClient<Channel>,
    node: String,
    via: Option<(
        crate::link::TunnelRecord,
        tonic::metadata::AsciiMetadataValue,
    )>,
}

impl Route {
    /// The request, naming the node for a peer.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some((_, header)) = &self.via {
            request
                .metadata_mut()
                .insert(crate::peer::NODE_METADATA, header.clone());
        }
        request
    }

    /// A gRPC status as the API server's error, saying which server was in the way.
    fn error(&self, status: tonic::Status) -> StreamError {
        from_status(&self.node, self.via.as_ref().map(|(r, _)| r), status)
    }
}

/// An agent's (or a peer's) gRPC status as the API server's error.
fn from_status(
    node: &str,
    via: Option<&crate::link::TunnelRecord>,
    status: tonic::Status,
) -> StreamError {
    let message = match via {
        Some(record) => format!(
            "node {node:?}: its tunnel is held by server {} at {}: {}",
            record.server,
            record.address,
            status.message()
        ),
        None => format!("node {node}: {}", status.message()),
    };
    match status.code() {
        tonic::Code::NotFound => StreamError::not_found(message),
        tonic::Code::Unavailable => StreamError::node_not_connected(message),
        _ => StreamError::failed(message),
    }
}

#[async_trait::async_trait]
impl NodeStreams for LinkStreams {
    async fn logs(&self, node: &str, req: LogsRequest) -> Result<LogStream, StreamError> {
        let mut route = self.route(node).await?;
        let stream = route
            .client
            .logs(route.request(req))
            .await
            .map_err(|s| route.error(s))?
            .into_inner();
        Ok(stream
            .map(move |r| r.map(|c| Bytes::from(c.data)).map_err(|s| route.error(s)))
            .boxed())
    }

    async fn exec(&self, node: &str, start: ExecStart) -> Result<ExecChannels, StreamError> {
        let mut route = self.route(node).await?;
        let (input, rx) = mpsc::channel(INPUT_QUEUE);
        let first = ExecInput {
            input: Some(exec_input::Input::Start(start)),
        };
        input
            .send(first)
            .await
            .map_err(|_| StreamError::failed("exec input closed before it started"))?;
        let output = route
            .client
            .exec(route.request(ReceiverStream::new(rx)))
            .await
            .map_err(|s| route.error(s))?
            .into_inner();
        Ok(ExecChannels {
            input,
            output: output.map(move |r| r.map_err(|s| route.error(s))).boxed(),
        })
    }

    async fn port_forward(
        &self,
        node: &str,
        start: PortForwardStart,
    ) -> Result<PortForwardChannels, StreamError> {
        let mut route = self.route(node).await?;
        let (input, rx) = mpsc::channel(INPUT_QUEUE);
        let first = PortForwardFrame {
            frame: Some(port_forward_frame::Frame::Start(start)),
        };
        input
            .send(first)
            .await
            .map_err(|_| StreamError::failed("port-forward input closed before it started"))?;
        let output = route
            .client
            .port_forward(route.request(ReceiverStream::new(rx)))
            .await
            .map_err(|s| route.error(s))?
            .into_inner();
        Ok(PortForwardChannels {
            input,
            output: output.map(move |r| r.map_err(|s| route.error(s))).boxed(),
        })
    }

    async fn stats(&self, node: &str) -> Result<Bytes, StreamError> {
        let mut route = self.route(node).await?;
        let response = route
            .client
            .stats(route.request(StatsRequest {}))
            .await
            .map_err(|s| route.error(s))?;
        Ok(Bytes::from(response.into_inner().summary))
    }
}
