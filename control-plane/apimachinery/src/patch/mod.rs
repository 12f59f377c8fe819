//! The three patch types `kubectl` sends, applied to `serde_json::Value`s.
//!
//! - [`json`]: JSON patch (RFC 6902), `kubectl patch --type json`.
//! - [`merge`]: JSON merge patch (RFC 7386), `kubectl patch --type merge`
//!   and the only merge type custom resources accept.
//! - [`strategic`]: strategic merge patch, what `kubectl apply`, `kubectl
//!   edit` and `kubectl patch` (its default type) send for built-in types.
//!
//! Each `apply` takes the current object and the decoded patch body and
//! returns a new object; the input is never changed, so a failed patch
//! leaves nothing half-applied. Failures are [`PatchError`]s, which know the
//! HTTP status upstream's apiserver answers them with
//! ([`PatchError::status_code`]).
//!
//! Behaviour follows what the apiserver uses, not only the RFCs: JSON patch
//! is `gopkg.in/evanphx/json-patch.v4` and strategic merge patch is
//! `k8s.io/apimachinery/pkg/util/strategicpatch`. Where they differ from the
//! RFCs the module docs say so.
//!
//! Architecture invariant: no I/O, no Kubernetes types; the object's shape
//! comes only through [`crate::schema::PatchSchema`].

mod error;
pub mod json;
pub mod merge;
pub mod strategic;

pub use error::{JsonPatchFailure, PatchError, TargetProblem};

use serde_json::Value;

/// How deep the merge patches recurse into nested objects and lists before
/// giving up with [`PatchError::TooDeep`]. Twice serde_json's default parse
/// limit (128), so no parsed body reaches it; it only guards the stack
/// against values built some other way.
pub const MAX_DEPTH: usize = 256;

/// The patch type, from the request's `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PatchType {
    /// `application/json-patch+json`: RFC 6902, see [`json`].
    Json,
    /// `application/merge-patch+json`: RFC 7386, see [`merge`].
    Merge,
    /// `application/strategic-merge-patch+json`, see [`strategic`].
    StrategicMerge,
    /// `application/apply-patch+yaml`: server-side apply. Recognised only;
    /// nothing here applies it.
    Apply,
}

impl PatchType {
    /// The patch type for a `Content-Type` header value. Parameters such as
    /// `; charset=utf-8` are ignored, as upstream does; so are surrounding
    /// spaces and the case of the media type, which upstream (an exact
    /// string match) does not forgive.
    pub fn from_content_type(content_type: &str) -> Option<PatchType> {
        let media_type = content_type.split(';').next().unwrap_or_default().trim();
        [
            PatchType::Json,
            PatchType::Merge,
            PatchType::StrategicMerge,
            PatchType::Apply,
        ]
        .into_iter()
        .find(|t| t.content_type().eq_ignore_ascii_case(media_type))
    }

    /// The media type, e.g. `application/json-patch+json`.
    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Json => "application/json-patch+json",
            PatchType::Merge => "application/merge-patch+json",
            PatchType::StrategicMerge => "application/strategic-merge-patch+json",
            PatchType::Apply => "application/apply-patch+yaml",
        }
    }
}

/// The JSON name of a value's type, for error messages.
fn kind_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        let cases = [
            ("application/json-patch+json", Some(PatchType::Json)),
            ("application/merge-patch+json", Some(PatchType::Merge)),
            (
                "application/strategic-merge-patch+json",
                Some(PatchType::StrategicMerge),
            ),
            ("application/apply-patch+yaml", Some(PatchType::Apply)),
            (
                "application/merge-patch+json; charset=utf-8",
                Some(PatchType::Merge),
            ),
            (
                "Application/JSON-Patch+JSON ;charset=UTF-8",
                Some(PatchType::Json),
            ),
            ("application/json", None),
            ("application/apply-patch+cbor", None),
            ("", None),
            (";", None),
        ];
        for (header, want) in cases {
            assert_eq!(PatchType::from_content_type(header), want, "{header:?}");
        }
        for t in [
            PatchType::Json,
            PatchType::Merge,
            PatchType::StrategicMerge,
            PatchType::Apply,
        ] {
            assert_eq!(PatchType::from_content_type(t.content_type()), Some(t));
        }
    }
}
