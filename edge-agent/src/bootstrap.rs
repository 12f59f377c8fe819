//! Joining a control plane, and keeping the node certificate fresh.
//!
//! [`bootstrap`] gives the agent its credentials in `<data-dir>/agent/`:
//! `server-ca.crt` (the cluster's server CA), `client-node.crt` and `client-node.key` (the
//! node client certificate, `CN=system:node:<name>`, `O=system:nodes`). If they are there
//! and still good for this node and token, they are reused. Otherwise:
//!
//! 1. dial the server without a client certificate and **without verifying it**
//!    ([`ClientTls::insecure_for_ca_download`]), only to call `Bootstrap.GetCa`;
//! 2. check the SHA-256 of the CA PEM against the hash in the `K10` token, and refuse on a
//!    mismatch (a man in the middle, or a token for another cluster). A short token without
//!    a hash is refused unless [`BootstrapOptions::insecure_skip_ca_hash`] is set;
//! 3. store the CA, redial verifying the server against it, and call `Bootstrap.Join` with
//!    the token, the node password and a CSR for a new ECDSA P-256 key;
//! 4. store the certificate and key (mode 0600, written atomically).
//!
//! The node password (K3s's `/etc/rancher/node/password`; kedge's default is
//! [`DEFAULT_NODE_PASSWORD_FILE`]) is read from its file, or made up and written there at
//! the first join; the server ties the node name to it.
//!
//! [`renew_if_due`] renews the certificate over the live tunnel (`Node.RenewCertificate`)
//! when it nears its end ([`RenewalPolicy`]).
//!
//! Secrets (the token, the node password, keys) are never logged.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kedge_proto::token::{Token, TokenError};
use kedge_proto::v1::bootstrap_client::BootstrapClient;
use kedge_proto::v1::node_client::NodeClient;
use kedge_proto::v1::{GetCaRequest, JoinRequest, RenewRequest};
use kedge_tunnel::{ClientOptions, ClientTls, TunnelClient, TunnelConfig, TunnelConnection};
use tracing::{info, instrument, warn};

/// Where the node password lives unless told otherwise (K3s: `/etc/rancher/node/password`).
pub const DEFAULT_NODE_PASSWORD_FILE: &str = "/etc/kedge/node/password";
/// The server CA, in `<data-dir>/agent/`.
pub const SERVER_CA_FILE: &str = "server-ca.crt";
/// The node client certificate, in `<data-dir>/agent/`.
pub const NODE_CERT_FILE: &str = "client-node.crt";
/// The node client key, in `<data-dir>/agent/`.
pub const NODE_KEY_FILE: &str = "client-node.key";
/// Mode of every file bootstrap writes.
pub const FILE_MODE: u32 = 0o600;

/// Bootstrap failed.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("invalid --token: {0}")]
    Token(#[from] TokenError),
    #[error(
        "the token has no CA hash (K10<sha256>::...), so the server cannot be verified; use the full token from `kedge token create`, or pass --insecure-skip-ca-hash to trust whatever server answers"
    )]
    NoCaHash,
    #[error(
        "the server's CA does not match the token's hash (token pins {expected}, server sent {actual}): possible man in the middle, or a token for another cluster"
    )]
    CaMismatch { expected: String, actual: String },
    #[error("invalid --server {server:?}: {reason}")]
    Server { server: String, reason: String },
    #[error("invalid --node-name {0:?}: expected a DNS-1123 subdomain")]
    NodeName(String),
    #[error("tunnel to {server}: {reason}")]
    Tunnel { server: String, reason: String },
    #[error("{call} refused by the server: {message} ({code:?})")]
    Refused {
        call: &'static str,
        code: tonic::Code,
        message: String,
    },
    #[error("{what}: {reason}")]
    Certificate { what: &'static str, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> BootstrapError + '_ {
    move |source| BootstrapError::Io {
        path: path.to_owned(),
        source,
    }
}

/// How to join.
#[derive(Debug, Clone)]
pub struct BootstrapOptions {
    /// `--server`: `https://host:port`, `host:port` or `host` (port 6443).
    pub server: String,
    /// `--token`: `K10<ca hash>::<id>.<secret>`, or `<id>.<secret>` with
    /// `insecure_skip_ca_hash`.
    pub token: String,
    /// `--node-name`.
    pub node_name: String,
    /// `--data-dir`: credentials go to `<data-dir>/agent/`.
    pub data_dir: PathBuf,
    /// The node password file ([`DEFAULT_NODE_PASSWORD_FILE`]).
    pub node_password_file: PathBuf,
    /// `--insecure-skip-ca-hash`: accept a token without a CA hash, and so trust whatever
    /// CA the server sends. Never for production.
    pub insecure_skip_ca_hash: bool,
    /// Tunnel timers (the hardware profile).
    pub tunnel: TunnelConfig,
    /// How long to wait for each tunnel connection, and for each call on it.
    pub connect_timeout: Duration,
}

/// The node's credentials, PEM.
#[derive(Clone)]
pub struct NodeCredentials {
    /// The server CA.
    pub server_ca_pem: String,
    /// The node client certificate.
    pub cert_pem: String,
    /// Its private key.
    pub key_pem: String,
    /// When the certificate starts being valid.
    pub not_before: SystemTime,
    /// When it expires.
    pub not_after: SystemTime,
}

impl std::fmt::Debug for NodeCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCredentials")
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("key_pem", &"[redacted]")
            .finish_non_exhaustive()
    }
}

impl NodeCredentials {
    /// The tunnel TLS configuration for the node's normal (mutual TLS) connection.
    pub fn client_tls(&self, server_name: &str) -> Result<ClientTls, BootstrapError> {
        ClientTls::from_pem(
            &self.server_ca_pem,
            &self.cert_pem,
            &self.key_pem,
            server_name,
        )
        .map_err(|e| BootstrapError::Certificate {
            what: "node credentials",
            reason: e.to_string(),
        })
    }
}

/// The agent's credential files.
#[derive(Debug, Clone)]
pub struct AgentPaths {
    /// `<data-dir>/agent`.
    pub dir: PathBuf,
}

impl AgentPaths {
    /// The paths under `data_dir`.
    pub fn new(data_dir: &Path) -> AgentPaths {
        AgentPaths {
            dir: data_dir.join("agent"),
        }
    }
    /// The server CA file.
    pub fn server_ca(&self) -> PathBuf {
        self.dir.join(SERVER_CA_FILE)
    }
    /// The node certificate file.
    pub fn cert(&self) -> PathBuf {
        self.dir.join(NODE_CERT_FILE)
    }
    /// The node key file.
    pub fn key(&self) -> PathBuf {
        self.dir.join(NODE_KEY_FILE)
    }
}

/// Where the server is: the address to dial and the name its certificate must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddress {
    /// The host, as the server certificate must name it.
    pub host: String,
    /// The port (UDP for QUIC and TCP for the fallback).
    pub port: u16,
}

impl ServerAddress {
    /// Parses `https://host:port`, `host:port`, `host`, `[v6]:port`.
    pub fn parse(server: &str) -> Result<ServerAddress, BootstrapError> {
        let bad = |reason: &str| BootstrapError::Server {
            server: server.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = server
            .strip_prefix("https://")
            .unwrap_or(server)
            .trim_end_matches('/');
        if rest.contains("://") {
            return Err(bad("only https:// is supported"));
        }
        if rest.contains('/') {
            return Err(bad("expected host[:port], without a path"));
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            match after {
                "" => (host, None),
                _ => (
                    host,
                    Some(after.strip_prefix(':').ok_or_else(|| bad("bad port"))?),
                ),
            }
        } else if rest.matches(':').count() == 1 {
            let (host, port) = rest.split_once(':').ok_or_else(|| bad("bad port"))?;
            (host, Some(port))
        } else if rest.contains(':') {
            return Err(bad("put IPv6 addresses in brackets: [addr]:port"));
        } else {
            (rest, None)
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            None => kedge_tunnel::DEFAULT_PORT,
            Some(p) => p.parse().map_err(|_| bad("the port is not a number"))?,
        };
        Ok(ServerAddress {
            host: host.to_owned(),
            port,
        })
    }

    async fn resolve(&self) -> Result<SocketAddr, BootstrapError> {
        let mut addrs = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| BootstrapError::Tunnel {
                server: self.to_string(),
                reason: format!("cannot resolve: {e}"),
            })?;
        addrs.next().ok_or_else(|| BootstrapError::Tunnel {
            server: self.to_string(),
            reason: "the name resolves to no address".into(),
        })
    }
}

impl std::fmt::Display for ServerAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Makes sure the node has credentials: reuses good ones from `<data-dir>/agent/`, or joins
/// with the token. `now` is the wall clock.
#[instrument(level = "info", name = "bootstrap", skip_all, fields(node = %options.node_name, server = %options.server))]
pub async fn bootstrap(
    options: &BootstrapOptions,
    now: SystemTime,
) -> Result<NodeCredentials, BootstrapError> {
    let token = Token::parse(&options.token)?;
    if token.ca_hash().is_none() && !options.insecure_skip_ca_hash {
        return Err(BootstrapError::NoCaHash);
    }
    if !valid_node_name(&options.node_name) {
        return Err(BootstrapError::NodeName(options.node_name.clone()));
    }
    let server = ServerAddress::parse(&options.server)?;
    let paths = AgentPaths::new(&options.data_dir);

    match load_credentials(&paths, &options.node_name, now) {
        Ok(Some(creds)) => {
            let pinned = token
                .ca_hash()
                .is_none_or(|h| h == sha256_hex(&creds.server_ca_pem));
            if pinned {
                info!("reusing the node certificate in {}", paths.dir.display());
                return Ok(creds);
            }
            info!("the stored server CA is not the token's; joining again");
        }
        Ok(None) => {}
        Err(e) => warn!(error = %e, "the stored credentials are unusable; joining again"),
    }

    let addr = server.resolve().await?;

    // 1. The CA, over a connection that verifies nothing.
    let ca_pem = {
        let tunnel = dial(
            options,
            &server,
            addr,
            ClientTls::insecure_for_ca_download(server.host.clone()),
        )?;
        let conn = connected(&tunnel, &server, options.connect_timeout).await?;
        let mut client = BootstrapClient::new(kedge_proto::transport::channel(conn));
        call(
            &server,
            options.connect_timeout,
            client.get_ca(GetCaRequest {}),
        )
        .await
        .map_err(|s| refused("GetCa", s))?
        .into_inner()
        .ca_pem
    };

    // 2. Its hash against the token.
    let actual = sha256_hex(&ca_pem);
    match token.ca_hash() {
        Some(expected) if expected != actual => {
            return Err(BootstrapError::CaMismatch {
                expected: expected.to_owned(),
                actual,
            });
        }
        Some(_) => {}
        None => warn!(
            ca_hash = %actual,
            "INSECURE: trusting the server's CA without checking it (--insecure-skip-ca-hash)"
        ),
    }

    // 3. The node password, then the join over a verified connection.
    let password = node_password(&options.node_password_file)?;
    let (key_pem, csr_der) = node_csr(&options.node_name)?;
    let joined = {
        let tls = ClientTls::without_identity(&ca_pem, server.host.clone()).map_err(|e| {
            BootstrapError::Certificate {
                what: "the server CA",
                reason: e.to_string(),
            }
        })?;
        let tunnel = dial(options, &server, addr, tls)?;
        let conn = connected(&tunnel, &server, options.connect_timeout).await?;
        let mut client = BootstrapClient::new(kedge_proto::transport::channel(conn));
        call(
            &server,
            options.connect_timeout,
            client.join(JoinRequest {
                token: token.to_string(),
                node_name: options.node_name.clone(),
                node_password: password,
                csr_der,
            }),
        )
        .await
        .map_err(|s| refused("Join", s))?
        .into_inner()
    };

    // 4. Store.
    let creds = credentials(ca_pem, joined.certificate_pem, key_pem, &options.node_name)?;
    store(&paths, &creds)?;
    info!(not_after = ?creds.not_after, "joined; node certificate stored");
    Ok(creds)
}

fn dial(
    options: &BootstrapOptions,
    server: &ServerAddress,
    addr: SocketAddr,
    tls: ClientTls,
) -> Result<TunnelClient, BootstrapError> {
    TunnelClient::start(ClientOptions {
        quic_addr: addr,
        tcp_addr: addr,
        config: options.tunnel.clone(),
        tls,
    })
    .map_err(|e| BootstrapError::Tunnel {
        server: server.to_string(),
        reason: e.to_string(),
    })
}

async fn connected(
    tunnel: &TunnelClient,
    server: &ServerAddress,
    within: Duration,
) -> Result<TunnelConnection, BootstrapError> {
    match tokio::time::timeout(within, tunnel.connected()).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(BootstrapError::Tunnel {
            server: server.to_string(),
            reason: e.to_string(),
        }),
        Err(_) => Err(BootstrapError::Tunnel {
            server: server.to_string(),
            reason: format!(
                "not connected within {within:?} (state {:?})",
                *tunnel.state().borrow()
            ),
        }),
    }
}

/// A call with a deadline: a server that accepts the tunnel but never answers must not
/// hang bootstrap.
async fn call<T>(
    server: &ServerAddress,
    within: Duration,
    call: impl std::future::Future<Output = Result<T, tonic::Status>>,
) -> Result<T, tonic::Status> {
    tokio::time::timeout(within, call)
        .await
        .unwrap_or_else(|_| {
            Err(tonic::Status::deadline_exceeded(format!(
                "{server} did not answer within {within:?}"
            )))
        })
}

fn refused(call: &'static str, status: tonic::Status) -> BootstrapError {
    BootstrapError::Refused {
        call,
        code: status.code(),
        message: status.message().to_owned(),
    }
}

/// Reads the node password, or makes one up and writes it (mode 0600) if the file does not
/// exist yet.
pub fn node_password(path: &Path) -> Result<String, BootstrapError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let password = text.trim().to_owned();
            if password.is_empty() {
                return Err(BootstrapError::Io {
                    path: path.to_owned(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "the node password file is empty",
                    ),
                });
            }
            Ok(password)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let password = random_hex(16)?;
            write_atomic(path, format!("{password}\n").as_bytes())?;
            info!(path = %path.display(), "wrote a new node password");
            Ok(password)
        }
        Err(source) => Err(BootstrapError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

fn random_hex(bytes: usize) -> Result<String, BootstrapError> {
    use ring::rand::SecureRandom;
    let mut buf = vec![0u8; bytes];
    ring::rand::SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| BootstrapError::Certificate {
            what: "node password",
            reason: "no randomness available".into(),
        })?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// A new ECDSA P-256 key (PKCS#8 PEM) and a CSR (DER) for the node's subject.
pub fn node_csr(node: &str) -> Result<(String, Vec<u8>), BootstrapError> {
    let fail = |reason: rcgen::Error| BootstrapError::Certificate {
        what: "certificate signing request",
        reason: reason.to_string(),
    };
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(fail)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
    let mut name = rcgen::DistinguishedName::new();
    name.push(rcgen::DnType::CommonName, format!("system:node:{node}"));
    name.push(rcgen::DnType::OrganizationName, "system:nodes");
    params.distinguished_name = name;
    let csr = params.serialize_request(&key).map_err(fail)?;
    Ok((key.serialize_pem(), csr.der().to_vec()))
}

/// Checks a certificate the server sent for `node` and assembles the credentials.
fn credentials(
    server_ca_pem: String,
    cert_pem: String,
    key_pem: String,
    node: &str,
) -> Result<NodeCredentials, BootstrapError> {
    let info = cert_info(&cert_pem).map_err(|reason| BootstrapError::Certificate {
        what: "the node certificate",
        reason,
    })?;
    let want = format!("system:node:{node}");
    if info.common_name != want {
        return Err(BootstrapError::Certificate {
            what: "the node certificate",
            reason: format!("it is for {:?}, not {want:?}", info.common_name),
        });
    }
    Ok(NodeCredentials {
        server_ca_pem,
        cert_pem,
        key_pem,
        not_before: info.not_before,
        not_after: info.not_after,
    })
}

struct CertInfo {
    common_name: String,
    not_before: SystemTime,
    not_after: SystemTime,
}

fn cert_info(pem: &str) -> Result<CertInfo, String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| format!("not a PEM certificate: {e}"))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| format!("cannot parse the certificate: {e}"))?;
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_owned();
    let at = |t: x509_parser::time::ASN1Time| {
        UNIX_EPOCH + Duration::from_secs(u64::try_from(t.timestamp()).unwrap_or(0))
    };
    Ok(CertInfo {
        common_name,
        not_before: at(cert.validity().not_before),
        not_after: at(cert.validity().not_after),
    })
}

/// The stored credentials, if all three files are there, parse, belong to `node` and are
/// valid at `now`. `Ok(None)` when any file is missing or the certificate is expired or for
/// another node.
pub fn load_credentials(
    paths: &AgentPaths,
    node: &str,
    now: SystemTime,
) -> Result<Option<NodeCredentials>, BootstrapError> {
    let read = |path: PathBuf| match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(BootstrapError::Io { path, source }),
    };
    let (Some(ca), Some(cert), Some(key)) = (
        read(paths.server_ca())?,
        read(paths.cert())?,
        read(paths.key())?,
    ) else {
        return Ok(None);
    };
    let creds = match credentials(ca, cert, key, node) {
        Ok(creds) => creds,
        Err(e) => {
            info!(reason = %e, "the stored node certificate is not this node's");
            return Ok(None);
        }
    };
    if creds.not_after <= now {
        info!(not_after = ?creds.not_after, "the stored node certificate has expired");
        return Ok(None);
    }
    // The files must make a usable TLS configuration (the key matches its format, the CA
    // parses).
    creds.client_tls("localhost")?;
    Ok(Some(creds))
}

fn store(paths: &AgentPaths, creds: &NodeCredentials) -> Result<(), BootstrapError> {
    write_atomic(&paths.server_ca(), creds.server_ca_pem.as_bytes())?;
    write_atomic(&paths.key(), creds.key_pem.as_bytes())?;
    write_atomic(&paths.cert(), creds.cert_pem.as_bytes())?;
    Ok(())
}

/// Writes a file atomically (temporary file, fsync, rename) with mode 0600, creating its
/// directory (mode 0700) if needed.
fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), BootstrapError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_error(dir))?;
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .open(&tmp)?;
        file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    };
    write().map_err(io_error(path))
}

/// When to renew the node certificate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RenewalPolicy {
    /// Renew when less than this fraction of the certificate's lifetime is left...
    pub fraction_left: f64,
    /// ...or, for long-lived certificates, when it expires within this long, whichever
    /// comes later. K3s renews 90 days ahead.
    pub before: Duration,
}

impl Default for RenewalPolicy {
    fn default() -> Self {
        RenewalPolicy {
            fraction_left: 1.0 / 3.0,
            before: Duration::from_secs(90 * 86_400),
        }
    }
}

impl RenewalPolicy {
    /// Whether a certificate valid from `not_before` to `not_after` is due at `now`: when
    /// the time left is below `min(fraction_left × lifetime, before)`. (The minimum keeps
    /// short-lived certificates from being renewed all the time.)
    pub fn due(&self, not_before: SystemTime, not_after: SystemTime, now: SystemTime) -> bool {
        let lifetime = not_after
            .duration_since(not_before)
            .unwrap_or(Duration::ZERO);
        let left = not_after.duration_since(now).unwrap_or(Duration::ZERO);
        let threshold = lifetime
            .mul_f64(self.fraction_left.clamp(0.0, 1.0))
            .min(self.before);
        left <= threshold
    }

    /// When the certificate becomes due.
    pub fn due_at(&self, not_before: SystemTime, not_after: SystemTime) -> SystemTime {
        let lifetime = not_after
            .duration_since(not_before)
            .unwrap_or(Duration::ZERO);
        let threshold = lifetime
            .mul_f64(self.fraction_left.clamp(0.0, 1.0))
            .min(self.before);
        not_after.checked_sub(threshold).unwrap_or(not_before)
    }
}

/// Renews the node certificate over the live tunnel if `policy` says it is due at `now`:
/// a new key and CSR, `Node.RenewCertificate`, and the new certificate and key stored
/// atomically. Returns the new credentials, or `None` when not due.
#[instrument(level = "info", name = "renew", skip_all, fields(node = %node))]
pub async fn renew_if_due(
    client: &mut NodeClient<tonic::transport::Channel>,
    paths: &AgentPaths,
    node: &str,
    current: &NodeCredentials,
    policy: &RenewalPolicy,
    now: SystemTime,
) -> Result<Option<NodeCredentials>, BootstrapError> {
    if !policy.due(current.not_before, current.not_after, now) {
        return Ok(None);
    }
    renew(client, paths, node, current).await.map(Some)
}

/// Renews the node certificate now (see [`renew_if_due`]).
pub async fn renew(
    client: &mut NodeClient<tonic::transport::Channel>,
    paths: &AgentPaths,
    node: &str,
    current: &NodeCredentials,
) -> Result<NodeCredentials, BootstrapError> {
    let (key_pem, csr_der) = node_csr(node)?;
    let response = client
        .renew_certificate(RenewRequest { csr_der })
        .await
        .map_err(|s| refused("RenewCertificate", s))?
        .into_inner();
    let creds = credentials(
        current.server_ca_pem.clone(),
        response.certificate_pem,
        key_pem,
        node,
    )?;
    store(paths, &creds)?;
    info!(not_after = ?creds.not_after, "renewed the node certificate");
    Ok(creds)
}

/// Lowercase hex SHA-256, as in the token's CA hash.
pub fn sha256_hex(data: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, data.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn options(dir: &Path, token: &str) -> BootstrapOptions {
        BootstrapOptions {
            server: "127.0.0.1:1".into(),
            token: token.into(),
            node_name: "edge-1".into(),
            data_dir: dir.to_owned(),
            node_password_file: dir.join("password"),
            insecure_skip_ca_hash: false,
            tunnel: TunnelConfig::default(),
            connect_timeout: Duration::from_millis(200),
        }
    }

    #[test]
    fn server_addresses() {
        let ok = |s: &str, host: &str, port: u16| {
            assert_eq!(
                ServerAddress::parse(s).unwrap(),
                ServerAddress {
                    host: host.into(),
                    port
                },
                "{s}"
            );
        };
        ok("https://cp:6443", "cp", 6443);
        ok("https://cp.example:7443/", "cp.example", 7443);
        ok("cp", "cp", 6443);
        ok("10.0.0.1:9", "10.0.0.1", 9);
        ok("[::1]:6443", "::1", 6443);
        ok("https://[fd00::1]", "fd00::1", 6443);
        assert_eq!(
            ServerAddress::parse("[::1]:6443").unwrap().to_string(),
            "[::1]:6443"
        );
        for bad in [
            "",
            "http://cp:6443",
            "cp:port",
            "cp:6443/x",
            "::1",
            "[::1",
            "cp:99999",
            ":6443",
        ] {
            assert!(ServerAddress::parse(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_short_token_needs_the_insecure_flag_and_bad_input_is_refused_early() {
        let dir = tempfile::tempdir().unwrap();
        let err = bootstrap(
            &options(dir.path(), "abcdef.0123456789abcdef"),
            SystemTime::now(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, BootstrapError::NoCaHash), "{err}");
        assert!(err.to_string().contains("--insecure-skip-ca-hash"));

        let err = bootstrap(&options(dir.path(), "nonsense"), SystemTime::now())
            .await
            .unwrap_err();
        assert!(matches!(err, BootstrapError::Token(_)), "{err}");

        let mut bad_name = options(
            dir.path(),
            &format!("K10{}::abcdef.0123456789abcdef", "a".repeat(64)),
        );
        bad_name.node_name = "Edge_1".into();
        let err = bootstrap(&bad_name, SystemTime::now()).await.unwrap_err();
        assert!(matches!(err, BootstrapError::NodeName(_)), "{err}");
        // Nothing was written.
        assert!(!dir.path().join("password").exists());
        assert!(!dir.path().join("agent").exists());
    }

    #[test]
    fn the_node_password_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etc/kedge/node/password");
        let first = node_password(&path).unwrap();
        assert_eq!(first.len(), 32);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(node_password(&path).unwrap(), first);
        std::fs::write(&path, "  given by the admin \n").unwrap();
        assert_eq!(node_password(&path).unwrap(), "given by the admin");
        std::fs::write(&path, "\n").unwrap();
        assert!(node_password(&path).is_err());
    }

    #[test]
    fn csrs_carry_the_node_subject() {
        let (key, der) = node_csr("edge-7").unwrap();
        assert!(key.contains("PRIVATE KEY"));
        let csr = rcgen::CertificateSigningRequestParams::from_der(&der.into()).unwrap();
        let dn = format!("{:?}", csr.params.distinguished_name);
        assert!(dn.contains("system:node:edge-7"), "{dn}");
        assert!(dn.contains("system:nodes"), "{dn}");
    }

    #[test]
    fn renewal_is_due_at_a_third_of_the_lifetime_or_ninety_days() {
        let policy = RenewalPolicy::default();
        let start = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        // A year: due 90 days before the end (a third would be 121 days).
        let end = start + 365 * DAY;
        assert!(!policy.due(start, end, end - 91 * DAY));
        assert!(policy.due(start, end, end - 90 * DAY));
        assert_eq!(policy.due_at(start, end), end - 90 * DAY);
        // An hour: due with 20 minutes left.
        let end = start + Duration::from_secs(3600);
        assert!(!policy.due(start, end, start + Duration::from_secs(2399)));
        assert!(policy.due(start, end, start + Duration::from_secs(2400)));
        // Expired, or a clock before the start.
        assert!(policy.due(start, end, end + DAY));
        assert!(!policy.due(start, end, start - DAY));
    }

    #[test]
    fn stored_credentials_are_reused_only_when_whole_valid_and_for_this_node() {
        let dir = tempfile::tempdir().unwrap();
        let paths = AgentPaths::new(dir.path());
        let now = SystemTime::now();
        assert!(load_credentials(&paths, "edge-1", now).unwrap().is_none());

        // A self-signed stand-in for the node certificate and CA.
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "system:node:edge-1");
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2099, 1, 1);
        let cert = params.self_signed(&key).unwrap().pem();
        let creds = credentials(cert.clone(), cert.clone(), key.serialize_pem(), "edge-1").unwrap();
        store(&paths, &creds).unwrap();
        for file in [paths.cert(), paths.key(), paths.server_ca()] {
            let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", file.display());
        }
        let loaded = load_credentials(&paths, "edge-1", now).unwrap().unwrap();
        assert_eq!(loaded.cert_pem, cert);
        assert!(loaded.not_after > now);
        // Another node name, or past the expiry: not reused.
        assert!(load_credentials(&paths, "edge-2", now).unwrap().is_none());
        let after = UNIX_EPOCH + Duration::from_secs(4_200_000_000);
        assert!(load_credentials(&paths, "edge-1", after).unwrap().is_none());
        // A missing file: not reused.
        std::fs::remove_file(paths.key()).unwrap();
        assert!(load_credentials(&paths, "edge-1", now).unwrap().is_none());
    }
}
