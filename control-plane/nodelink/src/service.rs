//! The `kedge.link.v1.Node` and `NodeTokens` services of one agent connection.
//!
//! One [`NodeService`] is built per tunnel connection, with the node name taken from the
//! connection's verified client certificate, so no call can act for another node: the
//! name is never read from a request. [`NodeTokensService`] issues service-account
//! tokens to a node for its own pods only.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use kedge_apiserver::registry::Registry;
use kedge_apiserver::serviceaccount::{self, BoundPod, Issuer, TokenRequest};
use kedge_proto::v1::node_server::{Node, NodeServer};
use kedge_proto::v1::node_tokens_server::{NodeTokens, NodeTokensServer};
use kedge_proto::v1::{
    AckRequest, AckResponse, RenewRequest, RenewResponse, ReportBatch, ReportResponse,
    ServiceAccountTokenRequest, ServiceAccountTokenResponse, SyncBatch, SyncRequest,
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
    pub tokens: NodeTokensService,
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

/// `NodeTokens`: service-account tokens for a node's own pods (see the proto). A node
/// asking for a token of a pod that is not bound to it gets PERMISSION_DENIED.
#[derive(Clone, Debug)]
pub struct NodeTokensService {
    node: String,
    registry: Registry,
    issuer: Option<Issuer>,
}

impl NodeTokensService {
    /// Not bound to a node yet: [`NodeTokensService::server`] binds it.
    pub fn new(registry: Registry, issuer: Option<Issuer>) -> NodeTokensService {
        NodeTokensService {
            node: String::new(),
            registry,
            issuer,
        }
    }

    /// The tonic service for `node`'s connection.
    pub fn server(&self, node: String) -> NodeTokensServer<NodeTokensService> {
        NodeTokensServer::new(NodeTokensService {
            node,
            ..self.clone()
        })
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
    }
}

/// An API error as a gRPC status, keeping what the agent can act on.
fn status_of(e: kedge_apiserver::status::ApiError) -> Status {
    match e.code {
        400 | 422 => Status::invalid_argument(e.message),
        403 => Status::permission_denied(e.message),
        404 => Status::not_found(e.message),
        409 => Status::failed_precondition(e.message),
        503 => Status::unavailable(e.message),
        _ => Status::internal(e.message),
    }
}

#[tonic::async_trait]
impl NodeTokens for NodeTokensService {
    async fn request_service_account_token(
        &self,
        request: Request<ServiceAccountTokenRequest>,
    ) -> Result<Response<ServiceAccountTokenResponse>, Status> {
        let r = request.into_inner();
        let issuer = self
            .issuer
            .as_ref()
            .ok_or_else(|| Status::unavailable("this server has no service-account signing key"))?;
        if r.namespace.is_empty() || r.service_account.is_empty() || r.pod_name.is_empty() {
            return Err(Status::invalid_argument(
                "namespace, service_account and pod_name are required",
            ));
        }
        let req = TokenRequest {
            audiences: r.audiences,
            expiration_seconds: (r.expiration_seconds != 0).then_some(r.expiration_seconds),
            bound_pod: Some(BoundPod {
                name: r.pod_name,
                uid: (!r.pod_uid.is_empty()).then_some(r.pod_uid),
            }),
            for_node: Some(self.node.clone()),
        };
        let issued = serviceaccount::issue(
            &self.registry,
            issuer,
            &r.namespace,
            &r.service_account,
            &req,
        )
        .await
        .map_err(|e| {
            tracing::info!(node = %self.node, namespace = %r.namespace, serviceaccount = %r.service_account, error = %e.message, "refused a node's token request");
            status_of(e)
        })?;
        let expiration_unix = issued
            .expires
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Ok(Response::new(ServiceAccountTokenResponse {
            token: issued.token,
            expiration_unix,
        }))
    }
}
