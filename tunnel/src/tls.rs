//! Mutual TLS for both transports, on rustls with the ring provider (no aws-lc, so ARM
//! cross builds stay simple). TLS 1.3 only: QUIC requires it, and the TCP fallback uses the
//! same configuration so both transports accept exactly the same peers.
//!
//! Bootstrap needs two weaker modes, each opted into explicitly: a server that also lets
//! clients without a certificate in ([`ClientAuth::AllowUnauthenticated`]; such connections
//! have no peer certificate and may only be served bootstrap), and an agent that does not
//! verify the server at all ([`ServerVerification::InsecureForCaDownload`]), only to fetch
//! the CA whose hash the join token pins.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config::ALPN;
use crate::error::TlsError;

/// Whether the server requires a client certificate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// Every client presents a certificate signed by the client CA (the default).
    #[default]
    Required,
    /// A client may also connect without a certificate; its connection then has no
    /// [`peer_certificate`](crate::TunnelConnection::peer_certificate), and the caller must
    /// serve it nothing but bootstrap (CA download, join). A certificate that is presented
    /// is still verified against the client CA.
    AllowUnauthenticated,
}

/// The server's side of mutual TLS: its serving certificate and key, and the CA that signs
/// client (node) certificates.
#[derive(Debug)]
pub struct ServerTls {
    /// The serving certificate chain, leaf first.
    pub cert_chain: Vec<CertificateDer<'static>>,
    /// The serving certificate's private key.
    pub key: PrivateKeyDer<'static>,
    /// The CA certificates client certificates must chain to.
    pub client_ca: Vec<CertificateDer<'static>>,
    /// Whether clients without a certificate are let in (for bootstrap).
    pub client_auth: ClientAuth,
}

/// How the agent checks the server's certificate.
#[derive(Debug, Clone)]
pub enum ServerVerification {
    /// The server certificate must chain to one of these CA certificates and carry the
    /// server name.
    Ca(Vec<CertificateDer<'static>>),
    /// **Insecure: the server is not verified at all.** Only for downloading the server CA
    /// during bootstrap, whose hash the caller then checks against the join token before
    /// trusting anything; never send a secret over such a connection.
    InsecureForCaDownload,
}

/// The certificate a client presents.
#[derive(Debug)]
pub struct ClientIdentity {
    /// The client certificate chain, leaf first.
    pub cert_chain: Vec<CertificateDer<'static>>,
    /// The client certificate's private key.
    pub key: PrivateKeyDer<'static>,
}

/// The agent's side of TLS: how the server is verified, the node's client certificate
/// (absent while bootstrapping), and the name the server certificate must carry.
#[derive(Debug)]
pub struct ClientTls {
    /// How the server certificate is verified.
    pub server: ServerVerification,
    /// The client certificate and key; `None` connects without one (bootstrap only).
    pub identity: Option<ClientIdentity>,
    /// The DNS name or IP address the server certificate must be valid for.
    pub server_name: String,
}

impl ServerTls {
    /// From PEM text: the serving certificate chain, its key, and the client CA bundle.
    /// Client certificates are required; see [`ServerTls::allow_unauthenticated`].
    pub fn from_pem(cert_pem: &str, key_pem: &str, client_ca_pem: &str) -> Result<Self, TlsError> {
        Ok(ServerTls {
            cert_chain: certs_from_pem("serving certificate", cert_pem)?,
            key: key_from_pem("serving key", key_pem)?,
            client_ca: certs_from_pem("client ca", client_ca_pem)?,
            client_auth: ClientAuth::Required,
        })
    }

    /// Lets clients without a certificate connect too ([`ClientAuth::AllowUnauthenticated`]).
    pub fn allow_unauthenticated(mut self) -> Self {
        self.client_auth = ClientAuth::AllowUnauthenticated;
        self
    }

    /// The rustls configuration: TLS 1.3, client certificates verified against the client
    /// CA (and required unless [`ClientAuth::AllowUnauthenticated`]), ALPN `kedge-tunnel/1`.
    pub fn rustls_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let provider = provider();
        let mut roots = RootCertStore::empty();
        for ca in &self.client_ca {
            roots.add(ca.clone())?;
        }
        let builder =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
        let builder = match self.client_auth {
            ClientAuth::Required => builder,
            ClientAuth::AllowUnauthenticated => builder.allow_unauthenticated(),
        };
        let verifier = builder
            .build()
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.cert_chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(Arc::new(config))
    }
}

impl ClientTls {
    /// From PEM text: the server CA bundle, the client certificate chain and its key
    /// (mutual TLS, the agent's normal connection).
    pub fn from_pem(
        server_ca_pem: &str,
        cert_pem: &str,
        key_pem: &str,
        server_name: impl Into<String>,
    ) -> Result<Self, TlsError> {
        Ok(ClientTls {
            server: ServerVerification::Ca(certs_from_pem("server ca", server_ca_pem)?),
            identity: Some(ClientIdentity {
                cert_chain: certs_from_pem("client certificate", cert_pem)?,
                key: key_from_pem("client key", key_pem)?,
            }),
            server_name: server_name.into(),
        })
    }

    /// Verifies the server against the CA bundle (PEM) but presents no client certificate:
    /// the bootstrap connection that joins with a token, after the CA was checked.
    pub fn without_identity(
        server_ca_pem: &str,
        server_name: impl Into<String>,
    ) -> Result<Self, TlsError> {
        Ok(ClientTls {
            server: ServerVerification::Ca(certs_from_pem("server ca", server_ca_pem)?),
            identity: None,
            server_name: server_name.into(),
        })
    }

    /// **Insecure**: neither verifies the server nor presents a certificate. Only for
    /// downloading the server CA, whose hash must then be checked against the join token
    /// (see [`ServerVerification::InsecureForCaDownload`]).
    pub fn insecure_for_ca_download(server_name: impl Into<String>) -> Self {
        ClientTls {
            server: ServerVerification::InsecureForCaDownload,
            identity: None,
            server_name: server_name.into(),
        }
    }

    /// The rustls configuration: TLS 1.3, the server verified as configured, the client
    /// certificate presented if there is one, ALPN `kedge-tunnel/1`.
    pub fn rustls_config(&self) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let provider = provider();
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?;
        let builder = match &self.server {
            ServerVerification::Ca(cas) => {
                let mut roots = RootCertStore::empty();
                for ca in cas {
                    roots.add(ca.clone())?;
                }
                builder.with_root_certificates(roots)
            }
            ServerVerification::InsecureForCaDownload => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoServerVerification(provider))),
        };
        let mut config = match &self.identity {
            Some(identity) => builder
                .with_client_auth_cert(identity.cert_chain.clone(), identity.key.clone_key())?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(Arc::new(config))
    }

    /// The server name to verify, parsed.
    pub fn server_name(&self) -> Result<ServerName<'static>, TlsError> {
        ServerName::try_from(self.server_name.clone())
            .map_err(|_| TlsError::ServerName(self.server_name.clone()))
    }
}

/// Accepts any server certificate, for [`ServerVerification::InsecureForCaDownload`]. The
/// handshake signature is still checked (the server holds the key of the certificate it
/// presented), which proves nothing about who the server is.
#[derive(Debug)]
struct NoServerVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoServerVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs_from_pem(what: &'static str, pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what,
            expected: "certificate",
        });
    }
    Ok(certs)
}

fn key_from_pem(what: &'static str, pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Empty {
            what,
            expected: "private key",
        },
        other => TlsError::Pem {
            what,
            reason: other.to_string(),
        },
    })
}
