//! Decodes Kubernetes protobuf request bodies into JSON.
//!
//! `kubectl create` sends its bodies as `application/vnd.kubernetes.protobuf`:
//! the magic `k8s\0`, then a `runtime.Unknown` envelope naming the
//! `apiVersion` and `kind`, whose `raw` field holds the object encoded as
//! upstream's `generated.proto` files say. [`decode`] turns such a body into
//! the JSON object that upstream's JSON encoding of the same Go value gives,
//! so the apiserver handles it exactly like a JSON body.
//!
//! The decoder is generic and driven by a table (`src/table.rs`) that says,
//! for each message, which tag is which JSON property, of which type, and
//! what Go's JSON encoder does with it (`omitempty`, pointer, inline). A test
//! (`tests/table.rs`) generates the table from the `k8s-pb` and
//! `k8s-openapi` crates plus a list of Go-only facts, and fails when the
//! checked-in copy is stale.
//!
//! Architecture invariant: this crate does no I/O and depends on no
//! Kubernetes type crate at run time (those are dev-dependencies of the
//! generator). Input comes from the network: every malformed body is an
//! error, never a panic, and no length read from the input is trusted.

mod decode;
mod format;
mod schema;
mod table;
mod wire;

use serde_json::Value;

/// The media type of Kubernetes protobuf bodies.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The four bytes every Kubernetes protobuf body starts with.
pub const MAGIC: &[u8; 4] = b"k8s\x00";

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The body does not start with [`MAGIC`].
    #[error("body is not kubernetes protobuf: it does not start with the k8s magic")]
    NotProtobuf,
    /// The envelope names no kind.
    #[error("the protobuf envelope names no kind")]
    MissingKind,
    /// The envelope names a kind but no apiVersion.
    #[error("the protobuf envelope names no apiVersion for kind {0}")]
    MissingApiVersion(String),
    /// The envelope names a kind this decoder has no table for.
    #[error("unknown kind {kind} in {api_version}")]
    UnknownKind { api_version: String, kind: String },
    /// The envelope says the object is compressed or otherwise encoded.
    #[error("unsupported content encoding {0:?}")]
    UnsupportedContentEncoding(String),
    /// The bytes break the protobuf wire format or a type's rules.
    #[error("malformed protobuf at {path}: {problem}")]
    Malformed {
        /// Where: the kind, then JSON field names, list indexes and map
        /// keys, e.g. `Deployment.spec.template.spec.containers[0].ports`.
        path: String,
        problem: Problem,
    },
}

/// What is wrong with malformed protobuf.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    #[error("truncated varint")]
    TruncatedVarint,
    #[error("varint longer than 64 bits")]
    VarintOverflow,
    #[error("truncated fixed-width value")]
    Truncated,
    #[error("length {length} runs past the end: {remaining} bytes left")]
    LengthPastEnd { length: u64, remaining: usize },
    #[error("field number {0} out of range")]
    FieldNumber(u64),
    #[error("groups (wire type {0}) are not supported")]
    Group(u8),
    #[error("unknown wire type {0}")]
    WireType(u8),
    #[error("{found} value where {expected} was expected")]
    WrongWireType {
        expected: &'static str,
        found: &'static str,
    },
    #[error("nested more than {0} messages deep")]
    TooDeep(usize),
    #[error("time of {0} seconds is outside years 0 to 9999")]
    TimeOutOfRange(i64),
    #[error("type {0} of an IntOrString is neither 0 (int) nor 1 (string)")]
    IntOrStringType(i64),
    #[error("number {0} is not finite")]
    NotFinite(f64),
    #[error("embedded JSON is invalid: {0}")]
    Json(String),
    #[error("embedded object: {0}")]
    Embedded(Box<DecodeError>),
}

/// Decodes a Kubernetes protobuf body into a JSON object with `apiVersion`
/// and `kind` set.
///
/// ```
/// // What `kubectl create namespace foo` sends.
/// let body = b"k8s\x00\x0a\x0f\x0a\x02v1\x12\x09Namespace\x12\x1b\x0a\x13\x0a\x03foo\
///     \x12\x00\x1a\x00\x22\x00\x2a\x00\x32\x00\x38\x00\x42\x00\x12\x00\x1a\x02\x0a\x00\x1a\x00\x22\x00";
/// let object = kedge_k8s_protobuf::decode(body).unwrap();
/// assert_eq!(
///     object,
///     serde_json::json!({
///         "apiVersion": "v1",
///         "kind": "Namespace",
///         "metadata": {"name": "foo", "creationTimestamp": null},
///         "spec": {},
///         "status": {},
///     })
/// );
/// ```
pub fn decode(bytes: &[u8]) -> Result<Value, DecodeError> {
    decode::body(bytes, 0)
}

/// Whether this decoder knows the kind: `("apps", "v1", "Deployment")`; the
/// core group is `""`. An apiserver can answer 415 Unsupported Media Type
/// for protobuf bodies of other kinds without reading them.
///
/// ```
/// use kedge_k8s_protobuf::knows;
/// assert!(knows("apps", "v1", "Deployment"));
/// assert!(knows("", "v1", "Binding"));
/// assert!(knows("batch", "v1", "DeleteOptions"));
/// assert!(!knows("", "v1", "Deployment"));
/// assert!(!knows("rbac.authorization.k8s.io", "v1", "Role"));
/// ```
pub fn knows(group: &str, version: &str, kind: &str) -> bool {
    decode::find_kind(group, version, kind).is_some()
}
