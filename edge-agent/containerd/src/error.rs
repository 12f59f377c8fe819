//! The crate's one error type: every variant carries what it was about (a path, an image,
//! a container id) and the messages say what to do next.

use std::path::PathBuf;

/// What went wrong talking to containerd, importing or pulling an image, or with logs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is unusable.
    #[error("invalid containerd configuration: {0}")]
    Config(String),

    /// A file or directory could not be read or written.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The containerd binary could not be started.
    #[error(
        "cannot start containerd {binary}: {source}; install the containerd package or pass --container-runtime-endpoint"
    )]
    Spawn {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// containerd did not answer on its socket in time.
    #[error("containerd did not become ready on {socket} within {secs}s; see its log at {log}")]
    NotReady {
        socket: PathBuf,
        log: PathBuf,
        secs: u64,
    },

    /// The gRPC connection to containerd could not be set up.
    #[error("cannot connect to containerd at {socket}: {source}; is containerd running?")]
    Connect {
        socket: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },

    /// A containerd call failed.
    #[error("containerd {op} {what}: {status}", status = .source.message())]
    Containerd {
        op: &'static str,
        what: String,
        #[source]
        source: tonic::Status,
    },

    /// The thing asked for does not exist.
    #[error("{kind} {name} not found")]
    NotFound { kind: &'static str, name: String },

    /// An image tarball or an image's metadata is malformed.
    #[error("invalid image {source_name}: {reason}")]
    InvalidImage { source_name: String, reason: String },

    /// An image reference does not parse.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },

    /// registries.yaml is malformed.
    #[error("invalid registries config {path}: {reason}")]
    Registries { path: PathBuf, reason: String },

    /// A registry refused, failed or answered nonsense.
    #[error("pull {reference} from {endpoint}: {reason}")]
    Pull {
        reference: String,
        endpoint: String,
        reason: String,
    },

    /// A CRI log line does not parse.
    #[error("invalid CRI log line in {path}: {reason}")]
    LogFormat { path: PathBuf, reason: String },

    /// A spec could not be serialised for containerd.
    #[error("cannot encode the OCI {what} for {id}: {source}")]
    Spec {
        what: &'static str,
        id: String,
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn containerd(
        op: &'static str,
        what: impl Into<String>,
        source: tonic::Status,
    ) -> Self {
        Error::Containerd {
            op,
            what: what.into(),
            source,
        }
    }

    pub(crate) fn invalid_image(source_name: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidImage {
            source_name: source_name.into(),
            reason: reason.into(),
        }
    }

    /// True when containerd answered NotFound (or the crate found nothing).
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::NotFound { .. } => true,
            Error::Containerd { source, .. } => source.code() == tonic::Code::NotFound,
            _ => false,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
