//! Mutual TLS for both transports, on rustls with the ring provider (no aws-lc, so ARM
//! cross builds stay simple). TLS 1.3 only: QUIC requires it, and the TCP fallback uses the
//! same configuration so both transports accept exactly the same peers.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;

use crate::config::ALPN;
use crate::error::TlsError;

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
}

/// The agent's side of mutual TLS: the CA the server certificate must chain to, the node's
/// client certificate and key, and the name the server certificate must carry.
#[derive(Debug)]
pub struct ClientTls {
    /// The CA certificates the server certificate must chain to.
    pub server_ca: Vec<CertificateDer<'static>>,
    /// The client certificate chain, leaf first.
    pub cert_chain: Vec<CertificateDer<'static>>,
    /// The client certificate's private key.
    pub key: PrivateKeyDer<'static>,
    /// The DNS name or IP address the server certificate must be valid for.
    pub server_name: String,
}

impl ServerTls {
    /// From PEM text: the serving certificate chain, its key, and the client CA bundle.
    pub fn from_pem(cert_pem: &str, key_pem: &str, client_ca_pem: &str) -> Result<Self, TlsError> {
        Ok(ServerTls {
            cert_chain: certs_from_pem("serving certificate", cert_pem)?,
            key: key_from_pem("serving key", key_pem)?,
            client_ca: certs_from_pem("client ca", client_ca_pem)?,
        })
    }

    /// The rustls configuration: TLS 1.3, client certificates required and verified against
    /// the client CA, ALPN `kedge-tunnel/1`.
    pub fn rustls_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let provider = provider();
        let mut roots = RootCertStore::empty();
        for ca in &self.client_ca {
            roots.add(ca.clone())?;
        }
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
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
    /// From PEM text: the server CA bundle, the client certificate chain and its key.
    pub fn from_pem(
        server_ca_pem: &str,
        cert_pem: &str,
        key_pem: &str,
        server_name: impl Into<String>,
    ) -> Result<Self, TlsError> {
        Ok(ClientTls {
            server_ca: certs_from_pem("server ca", server_ca_pem)?,
            cert_chain: certs_from_pem("client certificate", cert_pem)?,
            key: key_from_pem("client key", key_pem)?,
            server_name: server_name.into(),
        })
    }

    /// The rustls configuration: TLS 1.3, the server verified against the server CA, the
    /// client certificate presented, ALPN `kedge-tunnel/1`.
    pub fn rustls_config(&self) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let mut roots = RootCertStore::empty();
        for ca in &self.server_ca {
            roots.add(ca.clone())?;
        }
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_client_auth_cert(self.cert_chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(Arc::new(config))
    }

    /// The server name to verify, parsed.
    pub fn server_name(&self) -> Result<ServerName<'static>, TlsError> {
        ServerName::try_from(self.server_name.clone())
            .map_err(|_| TlsError::ServerName(self.server_name.clone()))
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
