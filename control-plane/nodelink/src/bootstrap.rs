//! The `Bootstrap` service and node certificate renewal.
//!
//! `Bootstrap` is what the server answers on a tunnel connection without a client
//! certificate:
//!
//! - `GetCa` returns the server CA PEM, byte for byte what the CA hash of join tokens is
//!   computed over; the agent checks that hash before trusting it.
//! - `Join` trades a join token, the machine's node password and a CSR for a node client
//!   certificate (`CN=system:node:<name>`, `O=system:nodes`), signed by the client CA. In
//!   order: the token's CA hash (a `K10` token for another CA is refused), the node name,
//!   the token itself (known, right secret, not expired), the CSR's subject, and last the
//!   node password (so nothing is recorded for a request that fails otherwise).
//!
//! [`Bootstrapper::renew`] signs a fresh certificate for a node that is already
//! authenticated by its current one; the `Node` service calls it.
//!
//! Refusals map to gRPC codes: `Unauthenticated` for a bad, expired or revoked token,
//! `PermissionDenied` for a node name taken by another machine or a CSR for another
//! subject, `InvalidArgument` for malformed input. Tokens are logged by id only, and
//! passwords never.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kedge_apiserver::registry::Registry;
use kedge_datastore::Clock;
use kedge_pki::{ExpectedSubject, PkiError, ServerPki};
use kedge_proto::token::Token;
use kedge_proto::v1::bootstrap_server::{Bootstrap, BootstrapServer};
use kedge_proto::v1::{GetCaRequest, GetCaResponse, JoinRequest, JoinResponse, RenewResponse};
use tonic::{Request, Response, Status};
use tracing::{info, instrument, warn};

use crate::nodepassword::{self, NodePasswordError};
use crate::tokens::{self, TokenError};

/// The group every node certificate carries.
pub const NODES_GROUP: &str = "system:nodes";
/// The common name prefix of node certificates; the node name follows.
pub const NODE_USER_PREFIX: &str = "system:node:";

/// How the [`Bootstrapper`] issues node certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapConfig {
    /// How long a node certificate is valid: 365 days by default, as K3s's.
    pub node_cert_validity: Duration,
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        BootstrapConfig {
            node_cert_validity: Duration::from_secs(365 * 86_400),
        }
    }
}

impl BootstrapConfig {
    /// Checks the values.
    pub fn validate(&self) -> Result<(), String> {
        if self.node_cert_validity < Duration::from_secs(60) {
            return Err(format!(
                "node certificate validity {:?} is shorter than a minute",
                self.node_cert_validity
            ));
        }
        Ok(())
    }
}

/// The server side of bootstrap: serves `kedge.link.v1.Bootstrap` and renews node
/// certificates.
#[derive(Clone)]
pub struct Bootstrapper {
    registry: Registry,
    pki: Arc<ServerPki>,
    clock: Arc<dyn Clock>,
    config: BootstrapConfig,
}

impl std::fmt::Debug for Bootstrapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bootstrapper")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Bootstrapper {
    /// A bootstrapper over the cluster's registry (tokens and node passwords), PKI (the CA
    /// it serves, the client CA it signs with) and clock.
    pub fn new(
        registry: Registry,
        pki: Arc<ServerPki>,
        clock: Arc<dyn Clock>,
        config: BootstrapConfig,
    ) -> Bootstrapper {
        Bootstrapper {
            registry,
            pki,
            clock,
            config,
        }
    }

    /// The tonic service, to serve on connections without a client certificate.
    pub fn into_service(self) -> BootstrapServer<Bootstrapper> {
        BootstrapServer::new(self)
    }

    /// Signs a fresh node certificate for `node`, already authenticated by its current
    /// certificate (the caller takes the name from the verified connection). The CSR must
    /// ask for exactly that node's subject.
    #[instrument(level = "info", name = "renew", skip_all, fields(node = %node))]
    pub async fn renew(&self, node: &str, csr_der: &[u8]) -> Result<RenewResponse, Status> {
        validate_node_name(node).map_err(Status::invalid_argument)?;
        let (certificate_pem, not_after_unix) = self.sign(node, csr_der)?;
        info!(not_after = not_after_unix, "renewed a node certificate");
        Ok(RenewResponse {
            certificate_pem,
            not_after_unix,
        })
    }

    /// Signs `csr_der` as the node certificate of `node`.
    fn sign(&self, node: &str, csr_der: &[u8]) -> Result<(String, i64), Status> {
        let common_name = format!("{NODE_USER_PREFIX}{node}");
        let expected = ExpectedSubject {
            common_name: &common_name,
            organizations: &[NODES_GROUP],
        };
        let pem = self
            .pki
            .sign_csr_der(
                csr_der,
                Some(&expected),
                self.config.node_cert_validity,
                self.clock.now(),
            )
            .map_err(pki_status)?;
        let not_after = not_after_unix(&pem).ok_or_else(|| {
            Status::internal("cannot read back the expiry of the signed certificate")
        })?;
        Ok((pem, not_after))
    }

    /// The `Join` call, with `Status` errors.
    async fn join_inner(&self, request: &JoinRequest) -> Result<JoinResponse, Status> {
        let token = Token::parse(&request.token)
            .map_err(|e| Status::invalid_argument(format!("malformed join token: {e}")))?;
        tracing::Span::current().record("token", token.id());
        if let Some(hash) = token.ca_hash() {
            let ours = kedge_pki::ca_hash(self.pki.server_ca_pem());
            if hash != ours {
                warn!(token = %token.id(), "join with a token for another CA");
                return Err(Status::unauthenticated(
                    "the token's CA hash does not match this server's CA: the token is for another cluster, or the cluster CA changed; get a current token with `kedge token create`",
                ));
            }
        }
        validate_node_name(&request.node_name).map_err(Status::invalid_argument)?;
        if request.node_password.is_empty() {
            return Err(Status::invalid_argument("the node password is empty"));
        }

        let now = self.clock.now();
        tokens::verify(&self.registry, token.bootstrap(), now)
            .await
            .map_err(token_status)?;

        let (certificate_pem, not_after_unix) = self.sign(&request.node_name, &request.csr_der)?;

        nodepassword::check_or_record(&self.registry, &request.node_name, &request.node_password)
            .await
            .map_err(password_status)?;

        info!(not_after = not_after_unix, "a node joined");
        Ok(JoinResponse {
            certificate_pem,
            not_after_unix,
        })
    }
}

#[tonic::async_trait]
impl Bootstrap for Bootstrapper {
    async fn get_ca(
        &self,
        _request: Request<GetCaRequest>,
    ) -> Result<Response<GetCaResponse>, Status> {
        Ok(Response::new(GetCaResponse {
            ca_pem: self.pki.server_ca_pem().to_owned(),
        }))
    }

    #[instrument(
        level = "info",
        name = "join",
        skip_all,
        fields(node = %request.get_ref().node_name, token = tracing::field::Empty, peer = ?request.remote_addr())
    )]
    async fn join(&self, request: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        match self.join_inner(request.get_ref()).await {
            Ok(response) => Ok(Response::new(response)),
            Err(status) => {
                warn!(code = ?status.code(), reason = %status.message(), "join refused");
                Err(status)
            }
        }
    }
}

fn token_status(e: TokenError) -> Status {
    if e.is_refusal() {
        match e {
            TokenError::Malformed(_) => Status::invalid_argument(e.to_string()),
            _ => Status::unauthenticated(e.to_string()),
        }
    } else {
        Status::unavailable(format!("cannot check the token: {e}"))
    }
}

fn password_status(e: NodePasswordError) -> Status {
    match e {
        NodePasswordError::Taken { .. } => Status::permission_denied(e.to_string()),
        NodePasswordError::Empty { .. } | NodePasswordError::NameTooLong { .. } => {
            Status::invalid_argument(e.to_string())
        }
        NodePasswordError::Stored { .. } | NodePasswordError::Random { .. } => {
            Status::internal(e.to_string())
        }
        NodePasswordError::Api { .. } => Status::unavailable(e.to_string()),
    }
}

fn pki_status(e: PkiError) -> Status {
    match e {
        PkiError::CsrSubjectNotAllowed(_) => Status::permission_denied(e.to_string()),
        PkiError::InvalidCsr(_) | PkiError::InvalidSubject(_) => {
            Status::invalid_argument(e.to_string())
        }
        other => Status::internal(format!("cannot sign the node certificate: {other}")),
    }
}

/// The expiry (Unix seconds) of a PEM certificate.
pub fn not_after_unix(cert_pem: &str) -> Option<i64> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).ok()?;
    let cert = pem.parse_x509().ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// Checks a node name: a DNS-1123 subdomain (lowercase alphanumerics, `-` and `.`,
/// starting and ending with an alphanumeric, at most 253 characters), short enough for its
/// node-password Secret's name.
pub fn validate_node_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the node name is empty".into());
    }
    if name.len() > nodepassword::MAX_NODE_NAME_LEN {
        return Err(format!(
            "node name {name:?} is longer than {} characters",
            nodepassword::MAX_NODE_NAME_LEN
        ));
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if !name.split('.').all(label_ok) {
        return Err(format!(
            "node name {name:?} is not a DNS-1123 subdomain: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// Seconds since the Unix epoch, for comparisons with `not_after_unix`.
pub fn unix_seconds(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use kedge_datastore::ManualClock;
    use kedge_pki::PkiOptions;
    use kedge_proto::token::BootstrapToken;
    use tonic::Code;

    use super::*;
    use crate::tokens::tests::registry;

    struct Fixture {
        _dir: tempfile::TempDir,
        _pki_dir: tempfile::TempDir,
        clock: Arc<ManualClock>,
        registry: Registry,
        pki: Arc<ServerPki>,
        bootstrapper: Bootstrapper,
        token: Token,
    }

    async fn fixture() -> Fixture {
        let clock = Arc::new(ManualClock::new(SystemTime::now()));
        let (dir, registry) = registry(clock.clone()).await;
        let pki_dir = tempfile::tempdir().unwrap();
        let pki = Arc::new(
            ServerPki::load_or_create(pki_dir.path(), &PkiOptions::default(), clock.now()).unwrap(),
        );
        let bootstrap = BootstrapToken::parse("abcdef.0123456789abcdef").unwrap();
        tokens::create(
            &registry,
            &bootstrap,
            Some(Duration::from_secs(3600)),
            "",
            clock.now(),
        )
        .await
        .unwrap();
        let token = Token::secure(&kedge_pki::ca_hash(pki.server_ca_pem()), bootstrap).unwrap();
        let bootstrapper = Bootstrapper::new(
            registry.clone(),
            pki.clone(),
            clock.clone(),
            BootstrapConfig::default(),
        );
        Fixture {
            _dir: dir,
            _pki_dir: pki_dir,
            clock,
            registry,
            pki,
            bootstrapper,
            token,
        }
    }

    fn csr(common_name: &str, organizations: &[&str]) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        for o in organizations {
            params
                .distinguished_name
                .push(rcgen::DnType::OrganizationName, *o);
        }
        params.serialize_request(&key).unwrap().der().to_vec()
    }

    fn node_csr(node: &str) -> Vec<u8> {
        csr(&format!("system:node:{node}"), &["system:nodes"])
    }

    fn join_request(token: &str, node: &str, password: &str, csr_der: Vec<u8>) -> JoinRequest {
        JoinRequest {
            token: token.to_owned(),
            node_name: node.to_owned(),
            node_password: password.to_owned(),
            csr_der,
        }
    }

    async fn join(f: &Fixture, request: JoinRequest) -> Result<JoinResponse, Status> {
        f.bootstrapper
            .join(Request::new(request))
            .await
            .map(Response::into_inner)
    }

    #[tokio::test]
    async fn get_ca_returns_the_server_ca_byte_for_byte() {
        let f = fixture().await;
        let ca = f
            .bootstrapper
            .get_ca(Request::new(GetCaRequest {}))
            .await
            .unwrap()
            .into_inner()
            .ca_pem;
        assert_eq!(ca, f.pki.server_ca_pem());
        assert_eq!(Some(kedge_pki::ca_hash(&ca).as_str()), f.token.ca_hash());
    }

    #[tokio::test]
    async fn join_issues_a_node_certificate_and_the_name_stays_with_the_machine() {
        let f = fixture().await;
        let token = f.token.to_string();
        let response = join(
            &f,
            join_request(&token, "edge-1", "pw-1", node_csr("edge-1")),
        )
        .await
        .unwrap();
        let expected_expiry = unix_seconds(f.clock.now()) + 365 * 86_400;
        assert!(
            (response.not_after_unix - expected_expiry).abs() <= 3700,
            "{} vs {expected_expiry}",
            response.not_after_unix
        );
        let pem_der = rustls_pem_der(&response.certificate_pem);
        let identity = kedge_pki::client_identity(&pem_der).unwrap();
        assert_eq!(identity.user, "system:node:edge-1");
        assert_eq!(identity.groups, ["system:nodes"]);

        // The same machine again (a re-join after losing its certificate).
        join(
            &f,
            join_request(&token, "edge-1", "pw-1", node_csr("edge-1")),
        )
        .await
        .unwrap();
        // A short token works as well on the server side.
        let short = f.token.bootstrap().to_string();
        join(
            &f,
            join_request(&short, "edge-2", "pw-2", node_csr("edge-2")),
        )
        .await
        .unwrap();

        // Another machine under the same name.
        let err = join(
            &f,
            join_request(&token, "edge-1", "pw-other", node_csr("edge-1")),
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
        assert!(err.message().contains("already taken"), "{err:?}");
    }

    /// PEM to DER for the one certificate in a PEM block.
    fn rustls_pem_der(pem: &str) -> Vec<u8> {
        use base64::Engine;
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap()
    }

    #[tokio::test]
    async fn join_refuses_bad_tokens_and_requests() {
        let f = fixture().await;
        let token = f.token.to_string();
        let other_hash = format!("K10{}::{}", "0".repeat(64), f.token.bootstrap());
        let cases: Vec<(JoinRequest, Code, &str)> = vec![
            (
                join_request(&other_hash, "edge-1", "pw", node_csr("edge-1")),
                Code::Unauthenticated,
                "CA hash does not match",
            ),
            (
                join_request(
                    "abcdef.0123456789abcdee",
                    "edge-1",
                    "pw",
                    node_csr("edge-1"),
                ),
                Code::Unauthenticated,
                "wrong secret",
            ),
            (
                join_request(
                    "zzzzzz.0123456789abcdef",
                    "edge-1",
                    "pw",
                    node_csr("edge-1"),
                ),
                Code::Unauthenticated,
                "not known",
            ),
            (
                join_request("garbage", "edge-1", "pw", node_csr("edge-1")),
                Code::InvalidArgument,
                "malformed join token",
            ),
            (
                join_request(&token, "Edge_1", "pw", node_csr("Edge_1")),
                Code::InvalidArgument,
                "DNS-1123",
            ),
            (
                join_request(&token, "", "pw", node_csr("")),
                Code::InvalidArgument,
                "empty",
            ),
            (
                join_request(&token, "edge-1", "", node_csr("edge-1")),
                Code::InvalidArgument,
                "password is empty",
            ),
            (
                join_request(&token, "edge-1", "pw", node_csr("edge-2")),
                Code::PermissionDenied,
                "subject",
            ),
            (
                join_request(
                    &token,
                    "edge-1",
                    "pw",
                    csr("system:node:edge-1", &["system:masters"]),
                ),
                Code::PermissionDenied,
                "subject",
            ),
            (
                join_request(&token, "edge-1", "pw", b"not a csr".to_vec()),
                Code::InvalidArgument,
                "certificate signing request",
            ),
        ];
        for (request, code, text) in cases {
            let node = request.node_name.clone();
            let err = join(&f, request).await.unwrap_err();
            assert_eq!(err.code(), code, "{node}: {err:?}");
            assert!(err.message().contains(text), "{node}: {err:?}");
            assert!(!err.message().contains("0123456789abcde"), "{err:?}");
        }
        // Nothing was recorded for the refused joins: edge-1 is still free.
        join(
            &f,
            join_request(&token, "edge-1", "pw-new", node_csr("edge-1")),
        )
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn expired_and_revoked_tokens_are_refused() {
        let f = fixture().await;
        let token = f.token.to_string();
        f.clock.advance(Duration::from_secs(3601));
        let err = join(&f, join_request(&token, "edge-1", "pw", node_csr("edge-1")))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
        assert!(err.message().contains("expired at"), "{err:?}");
        assert!(err.message().contains("kedge token create"), "{err:?}");

        tokens::delete(&f.registry, f.token.id()).await.unwrap();
        let err = join(&f, join_request(&token, "edge-1", "pw", node_csr("edge-1")))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
        assert!(err.message().contains("not known"), "{err:?}");
    }

    #[tokio::test]
    async fn renew_signs_only_the_connection_node_subject() {
        let f = fixture().await;
        f.clock.advance(Duration::from_secs(86_400));
        let renewed = f
            .bootstrapper
            .renew("edge-1", &node_csr("edge-1"))
            .await
            .unwrap();
        let identity =
            kedge_pki::client_identity(&rustls_pem_der(&renewed.certificate_pem)).unwrap();
        assert_eq!(identity.user, "system:node:edge-1");
        assert!(renewed.not_after_unix > unix_seconds(f.clock.now()) + 364 * 86_400);

        let err = f
            .bootstrapper
            .renew("edge-1", &node_csr("edge-2"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
        let err = f.bootstrapper.renew("edge-1", b"junk").await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
    }

    #[test]
    fn node_names_are_dns_subdomains() {
        for good in ["a", "edge-1", "pi.lab.example", "0", &"a".repeat(63)] {
            assert!(validate_node_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "a_b",
            "a..b",
            ".a",
            "a.",
            "é",
            &"a".repeat(64),
            &format!("{}.{}", "a".repeat(63), "b".repeat(63)).repeat(2),
        ] {
            assert!(validate_node_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_default_config_is_valid() {
        assert!(BootstrapConfig::default().validate().is_ok());
        assert!(
            BootstrapConfig {
                node_cert_validity: Duration::from_secs(1)
            }
            .validate()
            .is_err()
        );
    }
}
