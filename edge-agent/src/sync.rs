//! Follows the server's `Node.Sync` stream into the local store.
//!
//! [`run_sync`] opens the stream from the store's revision, applies each
//! batch to the store (one transaction per batch) and then acks the batch's
//! revision. It returns when the stream ends or fails; the caller reconnects
//! (with backoff) and calls it again, which resumes from what the store holds.
//! Because the store records a batch and its revision together, a crash
//! between applying and acking costs nothing: the next resume starts from the
//! stored revision, and replayed changes are idempotent upserts and deletes.
//!
//! The server decides the node's view, including what leaves it (sent as
//! deletions); the agent mirrors it and never prunes on its own.
//!
//! Both directions are gzip-compressed; the server's `NodeServer` must
//! accept and send gzip too (`.accept_compressed(Gzip).send_compressed(Gzip)`).

use kedge_proto::v1::node_client::NodeClient;
use kedge_proto::v1::{AckRequest, SyncRequest};
use tonic::codec::CompressionEncoding;
use tonic::transport::Channel;
use tracing::Instrument;

use crate::store::{Store, StoreError};

/// The largest batch accepted (decompressed). A reset carries the node's
/// whole view, every Service and EndpointSlice included, in one message, so
/// tonic's 4 MiB default is too small for a large cluster.
pub const MAX_BATCH_BYTES: usize = 64 << 20;

/// Why a sync session ended.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("sync rpc failed: {0}")]
    Rpc(#[from] tonic::Status),
    #[error("the store task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// One sync session: resume from the store, apply and ack batches until the
/// stream ends (`Ok`) or fails.
pub async fn run_sync(client: NodeClient<Channel>, store: Store) -> Result<(), SyncError> {
    let resume = store.acked()?;
    let span = tracing::info_span!("sync", resume);
    session(client, store, resume).instrument(span).await
}

async fn session(client: NodeClient<Channel>, store: Store, resume: u64) -> Result<(), SyncError> {
    let mut client = client
        .send_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(MAX_BATCH_BYTES);
    let mut stream = client
        .sync(SyncRequest {
            resume_revision: resume,
        })
        .await?
        .into_inner();
    while let Some(batch) = stream.message().await? {
        let revision = batch.revision;
        let reset = batch.reset;
        let changes = batch.changes.len();
        let s = store.clone();
        let applied = tokio::task::spawn_blocking(move || s.apply(&batch)).await??;
        tracing::debug!(
            revision,
            reset,
            changes,
            upserted = applied.upserted,
            deleted = applied.deleted,
            "sync: batch stored"
        );
        if reset {
            tracing::info!(
                revision,
                objects = applied.upserted,
                "sync: full resync stored"
            );
        }
        client.ack(AckRequest { revision }).await?;
    }
    tracing::info!("sync: the server ended the stream");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use kedge_proto::v1::node_server::{Node, NodeServer};
    use kedge_proto::v1::{
        AckResponse, Change, ObjectKind, RenewRequest, RenewResponse, ReportBatch, ReportResponse,
        SyncBatch,
    };
    use tonic::{Request, Response, Status};

    use super::*;

    /// One scripted `Sync` call: what its stream yields.
    type Session = Vec<Result<SyncBatch, Status>>;

    /// A `Node` server that plays scripted sessions and records what the
    /// agent said.
    #[derive(Clone, Default)]
    struct Fake {
        sessions: Arc<Mutex<VecDeque<Session>>>,
        resumes: Arc<Mutex<Vec<u64>>>,
        acks: Arc<Mutex<Vec<u64>>>,
    }

    #[tonic::async_trait]
    impl Node for Fake {
        type SyncStream = futures::stream::Iter<std::vec::IntoIter<Result<SyncBatch, Status>>>;

        async fn sync(
            &self,
            request: Request<SyncRequest>,
        ) -> Result<Response<Self::SyncStream>, Status> {
            self.resumes
                .lock()
                .unwrap()
                .push(request.into_inner().resume_revision);
            let script = self
                .sessions
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or_default();
            Ok(Response::new(futures::stream::iter(script)))
        }

        async fn ack(&self, request: Request<AckRequest>) -> Result<Response<AckResponse>, Status> {
            self.acks
                .lock()
                .unwrap()
                .push(request.into_inner().revision);
            Ok(Response::new(AckResponse {}))
        }

        async fn report(
            &self,
            _: Request<ReportBatch>,
        ) -> Result<Response<ReportResponse>, Status> {
            Err(Status::unimplemented("not in this test"))
        }

        async fn renew_certificate(
            &self,
            _: Request<RenewRequest>,
        ) -> Result<Response<RenewResponse>, Status> {
            Err(Status::unimplemented("not in this test"))
        }
    }

    async fn serve(fake: Fake) -> NodeClient<Channel> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = NodeServer::new(fake)
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        NodeClient::connect(format!("http://{addr}")).await.unwrap()
    }

    fn pod(name: &str, revision: u64) -> Change {
        Change {
            kind: ObjectKind::Pod as i32,
            namespace: "default".into(),
            name: name.into(),
            revision,
            deleted: false,
            object: format!("{{\"metadata\":{{\"name\":\"{name}\"}}}}").into_bytes(),
        }
    }

    fn batch(revision: u64, reset: bool, changes: Vec<Change>) -> Result<SyncBatch, Status> {
        Ok(SyncBatch {
            revision,
            reset,
            changes,
        })
    }

    #[tokio::test]
    async fn applies_acks_and_resumes_from_the_store() {
        let fake = Fake::default();
        fake.sessions.lock().unwrap().extend([
            vec![
                batch(10, true, vec![pod("a", 9), pod("b", 10)]),
                batch(12, false, vec![pod("c", 12)]),
            ],
            vec![
                batch(
                    15,
                    false,
                    vec![Change {
                        deleted: true,
                        object: Vec::new(),
                        ..pod("a", 15)
                    }],
                ),
                Err(Status::unavailable("fell behind")),
            ],
        ]);
        let client = serve(fake.clone()).await;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("state.db")).unwrap();

        run_sync(client.clone(), store.clone()).await.unwrap();
        assert_eq!(store.acked().unwrap(), 12);
        assert_eq!(*fake.acks.lock().unwrap(), vec![10, 12]);

        // The second session resumes from 12, applies one batch, then fails:
        // the caller sees the error, and the store keeps what it applied.
        let err = run_sync(client, store.clone()).await.unwrap_err();
        assert!(
            matches!(&err, SyncError::Rpc(s) if s.code() == tonic::Code::Unavailable),
            "{err}"
        );
        assert_eq!(*fake.resumes.lock().unwrap(), vec![0, 12]);
        assert_eq!(*fake.acks.lock().unwrap(), vec![10, 12, 15]);
        let pods: Vec<String> = store
            .list(ObjectKind::Pod)
            .unwrap()
            .into_iter()
            .map(|o| o.name)
            .collect();
        assert_eq!(pods, vec!["b", "c"]);
        assert_eq!(store.acked().unwrap(), 15);
    }
}
