//! kedge's certificate authority, laid out like K3s's.
//!
//! `kedge server` keeps its PKI in `<data-dir>/server/tls/` ([`layout::tls_dir`]), like
//! K3s's `/var/lib/rancher/k3s/server/tls`:
//!
//! | file | what |
//! |------|------|
//! | `server-ca.crt` / `.key` | CA signing serving certificates, CN `kedge-server-ca@<unix time>` |
//! | `client-ca.crt` / `.key` | CA signing client certificates, CN `kedge-client-ca@<unix time>` |
//! | `serving-kube-apiserver.crt` / `.key` | apiserver serving certificate (serverAuth), signed by the server CA |
//! | `client-admin.crt` / `.key` | admin client certificate, `CN=system:admin`, `O=system:masters` (clientAuth), signed by the client CA |
//! | `service.key` | ECDSA P-256 key signing service-account tokens |
//!
//! Keys are ECDSA P-256 in PKCS#8 PEM. CAs are valid for [`CA_VALIDITY`], leaves for
//! [`LEAF_VALIDITY`] and are renewed when they expire within [`RENEW_BEFORE`]. Keys are
//! mode 0600, certificates 0644, the directory 0700; every file is written atomically.
//!
//! The entry point is [`ServerPki::load_or_create`]. Around it: [`client_identity`] (who
//! a verified client certificate is), [`ca_hash`] (the CA hash of join tokens),
//! [`write_kubeconfig`], [`ClusterSecrets`] (what several servers of one cluster share:
//! the CAs and the service-account key, sealed with the server token for the datastore)
//! and [`ServiceAccountKey`] (ES256 signatures of service-account tokens).
//!
//! The CAs and `service.key` are the cluster's, shared by every server; the serving and
//! admin certificates are each server's own.
//!
//! Time is always passed in (`now: SystemTime`), so expiry and renewal are tested without
//! waiting.
//!
//! Architecture invariant: this crate does certificates and files only. It must not depend
//! on HTTP, TLS servers, the datastore or an async runtime; the apiserver and the binary
//! build their rustls configurations from the DER this crate hands out.

mod ca;
mod certs;
pub mod cluster;
mod csr;
mod der;
mod error;
mod files;
mod fingerprint;
mod identity;
mod kubeconfig;
mod sakey;
mod server;

use std::time::Duration;

pub use certs::San;
pub use cluster::ClusterSecrets;
pub use csr::ExpectedSubject;
pub use error::PkiError;
pub use fingerprint::ca_hash;
pub use identity::{Identity, client_identity};
pub use kubeconfig::{DEFAULT_KUBECONFIG_MODE, render_kubeconfig, write_kubeconfig};
pub use sakey::ServiceAccountKey;
pub use server::{IssuedCertificate, PkiOptions, ServerPki};

/// How long a newly generated CA is valid: ten years, as in K3s.
pub const CA_VALIDITY: Duration = Duration::from_secs(3650 * 86_400);

/// How long the serving and admin certificates are valid: one year, as in K3s.
pub const LEAF_VALIDITY: Duration = Duration::from_secs(365 * 86_400);

/// A leaf certificate is renewed when it expires within this long: 90 days, as in K3s.
pub const RENEW_BEFORE: Duration = Duration::from_secs(90 * 86_400);

/// The organization of the certificates servers of one cluster present to each other
/// (to forward logs, exec and port-forward to the server holding a node's tunnel). No
/// node or user certificate carries it: the server signs node CSRs only for
/// `system:nodes`, and issues no other client certificate on request.
pub const SERVER_PEER_GROUP: &str = "kedge:servers";

/// The common name prefix of a server's peer certificate; the server's id follows.
pub const SERVER_PEER_USER_PREFIX: &str = "kedge:server:";

/// How far before `now` a new certificate's validity starts, so that nodes whose clocks
/// lag a little behind the server's accept it.
pub const BACKDATE: Duration = Duration::from_secs(3600);

/// File names inside the tls directory.
pub mod layout {
    use std::path::{Path, PathBuf};

    /// Server CA certificate.
    pub const SERVER_CA_CERT: &str = "server-ca.crt";
    /// Server CA private key.
    pub const SERVER_CA_KEY: &str = "server-ca.key";
    /// Client CA certificate.
    pub const CLIENT_CA_CERT: &str = "client-ca.crt";
    /// Client CA private key.
    pub const CLIENT_CA_KEY: &str = "client-ca.key";
    /// Apiserver serving certificate.
    pub const SERVING_APISERVER_CERT: &str = "serving-kube-apiserver.crt";
    /// Apiserver serving private key.
    pub const SERVING_APISERVER_KEY: &str = "serving-kube-apiserver.key";
    /// Admin client certificate.
    pub const CLIENT_ADMIN_CERT: &str = "client-admin.crt";
    /// Admin client private key.
    pub const CLIENT_ADMIN_KEY: &str = "client-admin.key";
    /// Service-account signing key (K3s: `service.key`).
    pub const SERVICE_ACCOUNT_KEY: &str = "service.key";

    /// The tls directory of a server data directory: `<data-dir>/server/tls`.
    pub fn tls_dir(data_dir: &Path) -> PathBuf {
        data_dir.join("server").join("tls")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_pki_can_be_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<ServerPki>();
    }
}
