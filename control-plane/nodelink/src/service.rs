//! The `kedge.link.v1.Node` service of one agent connection.
//!
//! One [`NodeService`] is built per tunnel connection, with the node name taken from the
//! connection's verified client certificate, so no call can act for another node: the
//! name is never read from a request.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use kedge_proto::v1::node_server::{Node, NodeServer};
use kedge_proto::v1::{
    AckRequest, AckResponse, RenewRequest, RenewResponse, ReportBatch, ReportResponse, SyncBatch,
    SyncRequest,
};
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

use crate::bootstrap::Bootstrapper;
use crate::report::Reporter;
use crate::sync::SyncHub;

/// What every node connection shares.
#[derive(Clone, Debug)]
pub struct Shared {
    pub hub: Arc<SyncHub>,
    pub reporter: Arc<Reporter>,
    pub bootstrap: Arc<Bootstrapper>,
}

/// `Node`, for the node this connection's certificate names.
#[derive(Debug)]
pub struct NodeService {
    node: String,
    shared: Shared,
}

impl NodeService {
    /// The tonic service for `node`, with gzip both ways.
    pub fn server(node: String, shared: Shared) -> NodeServer<NodeService> {
        NodeServer::new(NodeService { node, shared })
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(kedge_proto::transport::MAX_MESSAGE_SIZE)
            .max_encoding_message_size(kedge_proto::transport::MAX_MESSAGE_SIZE)
    }
}

type SyncStream = Pin<Box<dyn Stream<Item = Result<SyncBatch, Status>> + Send>>;

#[tonic::async_trait]
impl Node for NodeService {
    type SyncStream = SyncStream;

    async fn sync(
        &self,
        request: Request<SyncRequest>,
    ) -> Result<Response<Self::SyncStream>, Status> {
        let resume = request.into_inner().resume_revision;
        tracing::info!(node = %self.node, resume, "sync stream opened");
        let stream = self.shared.hub.stream(self.node.clone(), resume);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn ack(&self, request: Request<AckRequest>) -> Result<Response<AckResponse>, Status> {
        self.shared
            .hub
            .ack(&self.node, request.into_inner().revision);
        Ok(Response::new(AckResponse {}))
    }

    async fn report(
        &self,
        request: Request<ReportBatch>,
    ) -> Result<Response<ReportResponse>, Status> {
        let batch = request.into_inner();
        Ok(Response::new(
            self.shared.reporter.apply(&self.node, batch).await,
        ))
    }

    async fn renew_certificate(
        &self,
        request: Request<RenewRequest>,
    ) -> Result<Response<RenewResponse>, Status> {
        let csr = request.into_inner().csr_der;
        self.shared
            .bootstrap
            .renew(&self.node, &csr)
            .await
            .map(Response::new)
    }
}
