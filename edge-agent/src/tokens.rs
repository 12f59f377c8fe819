//! ServiceAccount tokens for the `serviceAccountToken` projections of the node's
//! pods: the kubelet's token manager, for a node that is often offline.
//!
//! A token is requested from the server over the tunnel (`NodeTokens`, which issues
//! it only for a pod bound to this node, as that pod's service account), kept in the
//! local store, and requested again once 80% of its life has passed or it is older
//! than 24 hours, as the kubelet does. The pod worker re-applies a running pod's
//! projected volumes on every sync, so a renewed token reaches the pod's files within
//! a sync period.
//!
//! While the server cannot be reached the stored token is used, whatever its age: a
//! pod restarted offline (or after a reboot) mounts the token it had. A pod that never
//! had a token cannot start its containers until the server answers; the error says
//! so.
//!
//! Tokens are credentials: they are never logged, and leave the store only for the
//! pod's volume.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Pod;
use kedge_podspec::TokenProjection;
use kedge_proto::v1::ServiceAccountTokenRequest;
use kedge_proto::v1::node_tokens_client::NodeTokensClient;
use tonic::transport::Channel;
use tracing::{info, warn};

use crate::store::{Store, StoreError, StoredToken};

/// How long a token request may take before the stored token is used instead.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A token older than this is renewed whatever its lifetime (the kubelet's 24 h).
const MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// Why a pod has no token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(
        "no ServiceAccount token for pod {pod} yet, and the control plane is not connected: it is requested as soon as the node is back online"
    )]
    Offline { pod: String },
    #[error("the control plane refused a ServiceAccount token for pod {pod}: {message}")]
    Refused { pod: String, message: String },
    #[error(
        "static pod {pod} cannot use a ServiceAccount token: only pods from the API server can"
    )]
    StaticPod { pod: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whether a token received at `issued` that expires at `expires` is due for renewal
/// at `now`: past 80% of its life, or older than 24 hours.
pub fn renewal_due(issued: SystemTime, expires: SystemTime, now: SystemTime) -> bool {
    let life = expires.duration_since(issued).unwrap_or_default();
    let age = now.duration_since(issued).unwrap_or_default();
    age >= life.mul_f64(0.8) || age >= MAX_AGE
}

/// The node's token manager; one per agent, shared by the pod runtime and the
/// connection (which lends it the channel while it is up).
#[derive(Debug)]
pub struct ServiceAccountTokens {
    store: Store,
    client: Mutex<Option<NodeTokensClient<Channel>>>,
    clock: fn() -> SystemTime,
}

impl ServiceAccountTokens {
    pub fn new(store: Store) -> Arc<ServiceAccountTokens> {
        Self::with_clock(store, SystemTime::now)
    }

    /// With an injected wall clock, for tests.
    pub fn with_clock(store: Store, clock: fn() -> SystemTime) -> Arc<ServiceAccountTokens> {
        Arc::new(ServiceAccountTokens {
            store,
            client: Mutex::new(None),
            clock,
        })
    }

    /// The connection to the server is up: tokens can be requested on `channel`. The
    /// returned guard takes it back when the connection's session ends.
    pub fn connected(self: &Arc<Self>, channel: Channel) -> ConnectedGuard {
        *self.client.lock().unwrap_or_else(|e| e.into_inner()) = Some(
            NodeTokensClient::new(channel)
                .send_compressed(tonic::codec::CompressionEncoding::Gzip)
                .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
        );
        ConnectedGuard(self.clone())
    }

    fn client(&self) -> Option<NodeTokensClient<Channel>> {
        self.client
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The tokens `pod`'s projections need, renewed where due and possible.
    pub async fn for_pod(
        &self,
        pod: &Pod,
        projections: &[TokenProjection],
    ) -> Result<std::collections::BTreeMap<TokenProjection, String>, TokenError> {
        let mut out = std::collections::BTreeMap::new();
        if projections.is_empty() {
            return Ok(out);
        }
        let name = format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default()
        );
        if crate::pods::static_pods::is_static(pod) {
            return Err(TokenError::StaticPod { pod: name });
        }
        for p in projections {
            out.insert(p.clone(), self.token(pod, &name, p).await?);
        }
        Ok(out)
    }

    async fn token(
        &self,
        pod: &Pod,
        name: &str,
        projection: &TokenProjection,
    ) -> Result<String, TokenError> {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let stored = self
            .store
            .token(uid, &projection.audience, projection.expiration_seconds)?;
        let now = (self.clock)();
        if let Some(t) = &stored
            && !renewal_due(unix(t.issued_unix), unix(t.expires_unix), now)
        {
            return Ok(t.token.clone());
        }
        let Some(mut client) = self.client() else {
            return match stored {
                Some(t) => Ok(t.token),
                None => Err(TokenError::Offline { pod: name.into() }),
            };
        };
        let request = ServiceAccountTokenRequest {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            service_account: pod
                .spec
                .as_ref()
                .and_then(|s| s.service_account_name.clone())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "default".into()),
            pod_name: pod.metadata.name.clone().unwrap_or_default(),
            pod_uid: uid.to_string(),
            audiences: if projection.audience.is_empty() {
                Vec::new()
            } else {
                vec![projection.audience.clone()]
            },
            expiration_seconds: projection.expiration_seconds,
        };
        let answer = tokio::time::timeout(
            REQUEST_TIMEOUT,
            client.request_service_account_token(request),
        )
        .await;
        let failure = match answer {
            Ok(Ok(response)) => {
                let response = response.into_inner();
                let token = StoredToken {
                    token: response.token,
                    issued_unix: unix_secs(now),
                    expires_unix: response.expiration_unix,
                };
                self.store.put_token(
                    uid,
                    &projection.audience,
                    projection.expiration_seconds,
                    &token,
                )?;
                info!(
                    pod = %name,
                    audience = %projection.audience,
                    expires_unix = token.expires_unix,
                    "received a ServiceAccount token"
                );
                return Ok(token.token);
            }
            Ok(Err(status)) => match status.code() {
                tonic::Code::PermissionDenied
                | tonic::Code::NotFound
                | tonic::Code::InvalidArgument
                | tonic::Code::FailedPrecondition => TokenError::Refused {
                    pod: name.into(),
                    message: status.message().to_string(),
                },
                _ => TokenError::Offline { pod: name.into() },
            },
            Err(_) => TokenError::Offline { pod: name.into() },
        };
        match stored {
            Some(t) => {
                warn!(pod = %name, error = %failure, "cannot renew a ServiceAccount token; the pod keeps the one it has");
                Ok(t.token)
            }
            None => Err(failure),
        }
    }

    /// Forgets a pod's tokens (it left the node).
    pub fn forget(&self, pod_uid: &str) {
        if let Err(e) = self.store.forget_tokens(pod_uid) {
            warn!(error = %e, "cannot forget a removed pod's tokens");
        }
    }
}

/// Takes the channel back from the token manager when dropped (the session ended).
#[derive(Debug)]
pub struct ConnectedGuard(Arc<ServiceAccountTokens>);

impl Drop for ConnectedGuard {
    fn drop(&mut self) {
        *self.0.client.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

fn unix(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or_default())
}

fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn renewal_is_due_at_80_percent_of_the_life_or_after_a_day() {
        // An hour's token received at t=1000: due from 2880 s on.
        assert!(!renewal_due(at(1000), at(4600), at(1000)));
        assert!(!renewal_due(at(1000), at(4600), at(3879)));
        assert!(renewal_due(at(1000), at(4600), at(3880)));
        assert!(renewal_due(at(1000), at(4600), at(9000)));
        // A week's token: renewed after 24 h, not after 80% of a week.
        let week = 7 * 24 * 3600;
        assert!(!renewal_due(at(0), at(week), at(24 * 3600 - 1)));
        assert!(renewal_due(at(0), at(week), at(24 * 3600)));
        // A clock that went backwards does not renew on every call, and an already
        // expired token is due.
        assert!(!renewal_due(at(1000), at(4600), at(500)));
        assert!(renewal_due(at(1000), at(900), at(1000)));
    }

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "apps", "name": "web", "uid": "u-1"},
            "spec": {"containers": [{"name": "c"}], "serviceAccountName": "builder"}
        }))
        .unwrap()
    }

    fn projection() -> TokenProjection {
        TokenProjection {
            audience: String::new(),
            expiration_seconds: 3600,
        }
    }

    #[tokio::test]
    async fn offline_the_stored_token_is_used_whatever_its_age_and_none_is_an_error() {
        let store = Store::in_memory().unwrap();
        let tokens = ServiceAccountTokens::with_clock(store.clone(), || at(1_000_000));
        let err = tokens.for_pod(&pod(), &[projection()]).await.unwrap_err();
        assert!(matches!(err, TokenError::Offline { .. }), "{err}");
        assert!(err.to_string().contains("apps/web"), "{err}");
        // Expired long ago: still the pod's token while offline.
        store
            .put_token(
                "u-1",
                "",
                3600,
                &StoredToken {
                    token: "old".into(),
                    issued_unix: 1000,
                    expires_unix: 4600,
                },
            )
            .unwrap();
        let got = tokens.for_pod(&pod(), &[projection()]).await.unwrap();
        assert_eq!(got[&projection()], "old");
        // No projections, no tokens needed.
        assert!(tokens.for_pod(&pod(), &[]).await.unwrap().is_empty());
        // A static pod asking for one is refused.
        let mut static_pod = pod();
        static_pod.metadata.annotations = Some(
            [(
                crate::pods::static_pods::SOURCE_ANNOTATION.to_string(),
                "file".to_string(),
            )]
            .into(),
        );
        assert!(matches!(
            tokens.for_pod(&static_pod, &[projection()]).await,
            Err(TokenError::StaticPod { .. })
        ));
        tokens.forget("u-1");
        assert!(store.token("u-1", "", 3600).unwrap().is_none());
    }
}
