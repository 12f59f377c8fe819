//! The crate's error type.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in kedge's PKI.
///
/// Variants about files carry the path; variants about a cluster CA also say what the
/// operator can do about it, because a CA is never regenerated behind their back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// A file or directory could not be read.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },

    /// A file or directory could not be written, created or have its mode set.
    #[error("writing {}: {source}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },

    /// A cluster CA file exists but cannot be used (unparseable, not a CA, key does not
    /// match the certificate, or one half of the pair is missing).
    #[error(
        "{} is unusable: {reason}; restore {} and {} from a backup, or, to start a new \
         cluster with new CAs, delete {} (every node and client must then join again)",
        path.display(),
        cert.display(),
        key.display(),
        dir.display()
    )]
    UnusableCa {
        /// The file that is at fault.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
        /// The CA certificate file.
        cert: PathBuf,
        /// The CA key file.
        key: PathBuf,
        /// The tls directory holding the whole PKI.
        dir: PathBuf,
    },

    /// Both files of a CA are missing while certificates it signed are still there: the CA
    /// was deleted from a cluster that exists, so creating a new one would lock out every
    /// node and client.
    #[error(
        "{} and {} are missing but {} (signed by that CA) exists; restore the CA from a \
         backup, or, to start a new cluster with new CAs, delete {}",
        cert.display(),
        key.display(),
        dependent.display(),
        dir.display()
    )]
    MissingCa {
        /// The CA certificate file.
        cert: PathBuf,
        /// The CA key file.
        key: PathBuf,
        /// A certificate signed by the missing CA.
        dependent: PathBuf,
        /// The tls directory holding the whole PKI.
        dir: PathBuf,
    },

    /// A subject alternative name given by the caller is neither an IP address nor a
    /// plausible DNS name.
    #[error("invalid subject alternative name {0:?}: expected an IP address or a DNS name")]
    InvalidSan(String),

    /// A requested subject (common name or organization) cannot be put in a certificate.
    #[error("invalid certificate subject: {0}")]
    InvalidSubject(String),

    /// A requested validity is zero or too large to represent.
    #[error("invalid certificate validity {0:?}")]
    InvalidValidity(std::time::Duration),

    /// Generating a key or signing a certificate failed.
    #[error("generating {what}: {reason}")]
    Generate {
        /// What was being generated.
        what: String,
        /// Why it failed.
        reason: String,
    },

    /// The CA has expired, so it cannot sign anything any more.
    #[error(
        "the ca in {} has expired and can no longer sign certificates; rotating cluster cas \
         is not supported yet",
        path.display()
    )]
    CaExpired {
        /// The CA certificate file.
        path: PathBuf,
    },

    /// A certificate handed to the crate (not one of its files) could not be parsed or
    /// does not say what it must.
    #[error("invalid certificate: {0}")]
    InvalidCertificate(String),

    /// A certificate signing request could not be parsed or its signature does not verify.
    #[error("invalid certificate signing request: {0}")]
    InvalidCsr(String),

    /// A certificate signing request asks for a subject the caller does not allow.
    #[error("certificate signing request subject not allowed: {0}")]
    CsrSubjectNotAllowed(String),

    /// A key file (other than a CA's) exists but cannot be used.
    #[error(
        "{} is unusable: {reason}; restore it from a backup (every server of the cluster \
         must hold the same one)",
        path.display()
    )]
    UnusableKey {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The service-account signing key is not an ECDSA P-256 PKCS#8 key.
    #[error("invalid service-account signing key: {0}")]
    InvalidServiceAccountKey(String),

    /// A tls directory holds a CA or key other than the cluster's (it belongs to another
    /// cluster, or to this server before it joined one).
    #[error(
        "{} is not the cluster's: the datastore holds another ca or key for this cluster; \
         move {} away so that this server takes the cluster's, or point it at its own \
         datastore",
        path.display(),
        dir.display()
    )]
    NotTheClusterCa {
        /// The file that differs.
        path: PathBuf,
        /// The tls directory.
        dir: PathBuf,
    },

    /// Sealed bootstrap data does not open with this token.
    #[error("bootstrap data already exists and is encrypted with a different token")]
    SealedWithOtherToken,

    /// Sealed bootstrap data is not in a form this version can read.
    #[error("the sealed bootstrap data is corrupt: {reason}")]
    SealedCorrupt {
        /// What is wrong with it.
        reason: String,
    },

    /// A kubeconfig server URL that cannot be written safely.
    #[error(
        "invalid kubeconfig server url {0:?}: expected an http or https url without spaces or quotes"
    )]
    InvalidServerUrl(String),
}
