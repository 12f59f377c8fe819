//! Why a patch failed, and which HTTP status upstream's apiserver answers
//! with.
//!
//! Upstream sorts patch failures into four answers:
//!
//! - **400 BadRequest**: the patch body is malformed. JSON patch bodies that
//!   do not decode as a list of operations; merge patches that are not an
//!   object or array; strategic merge patches that are not an object, or
//!   whose `$deleteFromPrimitiveList`, `$retainKeys` or `$setElementOrder`
//!   directives are malformed (`interpretStrategicMergePatchError`).
//!   The `Status` message is the error's text.
//! - **413 RequestEntityTooLarge**: a JSON patch of more than 10000
//!   operations. Message `Request entity too large: <text>`.
//! - **422 Invalid**: applying a JSON patch failed (a `test` that does not
//!   match, a path that does not exist, a bad index, an unknown `op`...), or
//!   a strategic merge patch met a list of lists. Upstream builds these with
//!   `NewGenericServerResponse(422, ...)`, whose message is the fixed
//!   `the server rejected our request due to an error in our request` and
//!   drops the error's own text.
//! - **500, reason empty (Unknown)**: every other strategic merge patch
//!   failure, e.g. `map: map[image:nginx] does not contain declared merge
//!   key: name`. Upstream returns these as plain Go errors, which the
//!   apiserver turns into a 500 `Status` carrying the error's text; kubectl
//!   prints it as `Error from server: <text>`.

use serde_json::Value;
use std::fmt;

use super::MAX_DEPTH;

/// A patch that could not be applied.
///
/// Messages follow upstream's wording where users see it (strategic merge
/// patch errors reach `kubectl` verbatim), lowercased where upstream starts
/// with a capital.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PatchError {
    // ---- 400 BadRequest: the patch body is malformed.
    /// A JSON patch body that is not a list.
    #[error("json patch must be a list of operations, got {found}")]
    JsonPatchNotList { found: &'static str },

    /// An element of a JSON patch body that is neither an object nor null.
    #[error("json patch operation {index} must be an object, got {found}")]
    JsonPatchOperationNotObject { index: usize, found: &'static str },

    /// A merge patch that is neither an object nor a list (upstream's
    /// `ErrBadJSONPatch`, also for `null`).
    #[error("invalid JSON patch")]
    BadMergePatch { found: &'static str },

    /// A strategic merge patch body that is not an object.
    #[error("strategic merge patch must be an object, got {found}")]
    StrategicPatchNotObject { found: &'static str },

    /// A `$deleteFromPrimitiveList` key without `/<field>`.
    #[error("invalid patch format of primitive list")]
    BadDeleteFromPrimitiveList { key: String },

    /// A `$retainKeys` that is not a list, or a patch that sets a field the
    /// list does not retain.
    #[error("invalid patch format of retainKeys")]
    BadRetainKeys { field: Option<String> },

    /// A `$setElementOrder` key without `/<field>`.
    #[error("invalid patch format of setElementOrder list")]
    BadSetElementOrder { key: String },

    /// A patch nested deeper than [`MAX_DEPTH`].
    #[error("patch is nested deeper than {max} levels")]
    TooDeep { max: usize },

    // ---- 413 RequestEntityTooLarge.
    /// A JSON patch with more operations than allowed.
    #[error("the allowed maximum operations in a JSON patch is {max}, got {got}")]
    TooManyOperations { max: usize, got: usize },

    // ---- 422 Invalid.
    /// Operation `index` (from 0) of a JSON patch failed.
    #[error("{failure}")]
    JsonPatch {
        index: usize,
        failure: JsonPatchFailure,
    },

    /// A merged list whose elements are lists.
    #[error("lists of lists are not supported")]
    ListOfLists { field: String },

    // ---- 500: upstream returns these as plain errors.
    /// An element of a merged list of objects without the merge key.
    #[error("map: {} does not contain declared merge key: {key}", go_fmt(.map))]
    MissingMergeKey { map: Value, key: String },

    /// A `$patch` directive other than `replace` and `delete` on an object,
    /// or other than `replace`, `delete` and `merge` in a list.
    #[error("unknown patch type: {} in map: {}", go_fmt(.directive), go_fmt(.map))]
    UnknownDirective { directive: Value, map: Value },

    /// `$patch: merge` as an element of a list.
    #[error("merging lists cannot yet be specified in the patch")]
    MergeDirectiveInList { field: String },

    /// A list of objects with merge strategy but no merge key.
    #[error("cannot merge lists without merge key for {field}")]
    NoMergeKey { field: String },

    /// A merged list mixing element types (or holding nulls).
    #[error("list element types are not identical: {field}")]
    MixedElementTypes { field: String },

    /// A patch list whose order contradicts its `$setElementOrder` list.
    #[error(
        "the order in patch list: {} doesn't match $setElementOrder list: {}",
        go_fmt(.patch), go_fmt(.order)
    )]
    OrderMismatch { patch: Value, order: Value },

    /// A value of the wrong type where the patch machinery needs a list or
    /// an object (upstream's `ErrBadArgType`).
    #[error("{field}: expected a {expected}, but received a {found}")]
    WrongType {
        field: String,
        expected: &'static str,
        found: &'static str,
    },

    /// The object being patched is not of a type the patch type can apply
    /// to (a strategic merge patch needs an object, a merge patch anything
    /// but null). The apiserver never has such an object.
    #[error("invalid JSON document: expected {expected}, got {found}")]
    BadDocument {
        expected: &'static str,
        found: &'static str,
    },
}

/// Upstream's `Status.message` for 422 patch failures.
const INVALID_MESSAGE: &str = "the server rejected our request due to an error in our request";

impl PatchError {
    /// The HTTP status upstream's apiserver answers this failure with.
    pub fn status_code(&self) -> u16 {
        use PatchError::*;
        match self {
            JsonPatchNotList { .. }
            | JsonPatchOperationNotObject { .. }
            | BadMergePatch { .. }
            | StrategicPatchNotObject { .. }
            | BadDeleteFromPrimitiveList { .. }
            | BadRetainKeys { .. }
            | BadSetElementOrder { .. }
            | TooDeep { .. } => 400,
            TooManyOperations { .. } => 413,
            JsonPatch { .. } | ListOfLists { .. } => 422,
            MissingMergeKey { .. }
            | UnknownDirective { .. }
            | MergeDirectiveInList { .. }
            | NoMergeKey { .. }
            | MixedElementTypes { .. }
            | OrderMismatch { .. }
            | WrongType { .. }
            | BadDocument { .. } => 500,
        }
    }

    /// The `Status.reason`: `BadRequest`, `RequestEntityTooLarge`, `Invalid`,
    /// or empty (upstream's `StatusReasonUnknown`) for 500s.
    pub fn reason(&self) -> &'static str {
        match self.status_code() {
            400 => "BadRequest",
            413 => "RequestEntityTooLarge",
            422 => "Invalid",
            _ => "",
        }
    }

    /// The `Status.message` upstream sends. For 422 that is a fixed sentence
    /// without this error's text (use `Display` for the detail).
    pub fn status_message(&self) -> String {
        match self.status_code() {
            413 => format!("Request entity too large: {self}"),
            422 => INVALID_MESSAGE.to_owned(),
            _ => self.to_string(),
        }
    }

    /// Upstream answers 400 BadRequest: the patch body is malformed.
    pub fn is_bad_request(&self) -> bool {
        self.status_code() == 400
    }

    /// Upstream answers 422 Invalid: the patch is well formed but does not
    /// apply to this object.
    pub fn is_invalid(&self) -> bool {
        self.status_code() == 422
    }
}

/// Why one JSON patch operation failed, worded as json-patch v4 words it
/// (lowercased). `path` and `from` are the pointers as the patch spelled
/// them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum JsonPatchFailure {
    /// `op` is missing, not a string, or not one of the six operations.
    UnknownOperation { op: String },
    /// `path` (or `from`, for move and copy) is missing or not a string.
    MissingField {
        op: &'static str,
        field: &'static str,
    },
    /// The parent of `path` does not exist (or `path` is not a pointer, or
    /// is the whole document where that is not allowed).
    MissingPath { op: &'static str, path: String },
    /// The parent of `from` does not exist.
    MissingFrom { op: &'static str, from: String },
    /// `replace` of a list index that does not exist.
    MissingKey { path: String },
    /// `replace` of the whole document with something not an object or list.
    ReplaceRootNotContainer,
    /// A `test` whose value differs.
    TestFailed { path: String },
    /// The last step of `path` (or, for `move`, of `from`) does not work on
    /// its parent. `pointer` is as upstream prints it: the whole `path`, but
    /// only the last step of `from` for `move`.
    Target {
        op: &'static str,
        pointer: String,
        problem: TargetProblem,
    },
    /// The last step of `from` does not work on its parent, for `copy`.
    CopyFrom {
        from: String,
        problem: TargetProblem,
    },
    /// The last step of `path` does not work on its parent, for `copy`.
    CopyTo { problem: TargetProblem },
    /// `copy` would grow the document past the limit.
    CopyTooLarge { accumulated: usize, limit: usize },
}

/// What was wrong with the last step of a JSON pointer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TargetProblem {
    /// `remove` (or `move` from) of an object member that is not there.
    NoSuchKey { key: String },
    /// An index outside the list.
    InvalidIndex { index: i64 },
    /// A list step that is not a number (or `-` where it cannot be).
    NotAnIndex { token: String },
}

impl fmt::Display for TargetProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetProblem::NoSuchKey { key } => {
                write!(f, "unable to remove nonexistent key: {key}: missing value")
            }
            TargetProblem::InvalidIndex { index } => write!(
                f,
                "unable to access invalid index: {index}: invalid index referenced"
            ),
            TargetProblem::NotAnIndex { token } => {
                write!(f, "value was not a proper array index: '{token}'")
            }
        }
    }
}

impl fmt::Display for JsonPatchFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use JsonPatchFailure::*;
        match self {
            UnknownOperation { op } => write!(f, "unexpected kind: {op}"),
            MissingField { op, field } => {
                write!(f, "{op} operation failed to decode {field}: missing value")
            }
            MissingPath { op, path } => match *op {
                "add" | "remove" => write!(
                    f,
                    "{op} operation does not apply: doc is missing path: \"{path}\": missing value"
                ),
                "test" => write!(
                    f,
                    "test operation does not apply: is missing path: {path}: missing value"
                ),
                "move" | "copy" => write!(
                    f,
                    "{op} operation does not apply: doc is missing destination path: {path}: missing value"
                ),
                _ => write!(
                    f,
                    "{op} operation does not apply: doc is missing path: {path}: missing value"
                ),
            },
            MissingFrom { op, from } => write!(
                f,
                "{op} operation does not apply: doc is missing from path: {from}: missing value"
            ),
            MissingKey { path } => write!(
                f,
                "replace operation does not apply: doc is missing key: {path}: missing value"
            ),
            ReplaceRootNotContainer => {
                write!(f, "replace operation value must be object or array")
            }
            TestFailed { path } => write!(f, "testing value {path} failed: test failed"),
            Target {
                op,
                pointer,
                problem,
            } => write!(f, "error in {op} for path: '{pointer}': {problem}"),
            CopyFrom { from, problem } => {
                write!(f, "error in copy for from: '{from}': {problem}")
            }
            CopyTo { problem } => write!(f, "error while adding value during copy: {problem}"),
            CopyTooLarge { accumulated, limit } => write!(
                f,
                "unable to complete the copy, the accumulated size increase of copy is {accumulated}, exceeding the limit {limit}"
            ),
        }
    }
}

/// A value as Go's `%v` prints the `interface{}` upstream decodes it to:
/// `map[image:nginx name:web]`, `[a b]`, `<nil>`. Upstream puts these in
/// messages users see, e.g. the missing merge key error.
pub(crate) fn go_fmt(value: &Value) -> String {
    let mut out = String::new();
    write_go(&mut out, value, 0);
    out
}

fn write_go(out: &mut String, value: &Value, depth: usize) {
    if depth > MAX_DEPTH {
        out.push_str("...");
        return;
    }
    match value {
        Value::Null => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => out.push_str(&i.to_string()),
            (None, Some(u), _) => out.push_str(&u.to_string()),
            (None, None, Some(f)) => out.push_str(&go_float(f)),
            (None, None, None) => out.push_str(&n.to_string()),
        },
        Value::String(s) => out.push_str(s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                write_go(out, item, depth + 1);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push_str("map[");
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(key);
                out.push(':');
                write_go(out, &map[key.as_str()], depth + 1);
            }
            out.push(']');
        }
    }
}

/// A float64 as Go's `%v` prints it: the shortest digits that round-trip,
/// in exponent form (`1e+06`) when the decimal exponent is below -4 or at
/// least 6, as `strconv`'s shortest `%g` decides.
fn go_float(f: f64) -> String {
    // `{:e}` gives the shortest round-tripping digits: `-1.2345e6`.
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.unsigned_abs())
    } else {
        format!("{f}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn go_formatting() {
        let v = json!({"name": "web", "ports": [{"containerPort": 80}], "x": null, "ok": true});
        assert_eq!(
            go_fmt(&v),
            "map[name:web ok:true ports:[map[containerPort:80]] x:<nil>]"
        );
        assert_eq!(go_fmt(&json!(1.5)), "1.5");
        assert_eq!(go_fmt(&json!(100000.0)), "100000");
        assert_eq!(go_fmt(&json!(1000000.0)), "1e+06");
        assert_eq!(go_fmt(&json!(123456789.0)), "1.23456789e+08");
        assert_eq!(go_fmt(&json!(0.0001)), "0.0001");
        assert_eq!(go_fmt(&json!(0.00001)), "1e-05");
        assert_eq!(go_fmt(&json!(-3)), "-3");
        assert_eq!(go_fmt(&json!(u64::MAX)), u64::MAX.to_string());
    }

    #[test]
    fn statuses() {
        let bad = PatchError::JsonPatchNotList { found: "object" };
        assert!(bad.is_bad_request());
        assert_eq!(bad.reason(), "BadRequest");
        assert_eq!(bad.status_message(), bad.to_string());

        let invalid = PatchError::JsonPatch {
            index: 0,
            failure: JsonPatchFailure::TestFailed {
                path: "/a".to_owned(),
            },
        };
        assert!(invalid.is_invalid());
        assert_eq!(invalid.reason(), "Invalid");
        assert_eq!(invalid.to_string(), "testing value /a failed: test failed");
        assert_eq!(invalid.status_message(), INVALID_MESSAGE);

        let big = PatchError::TooManyOperations {
            max: 10000,
            got: 10001,
        };
        assert_eq!(big.status_code(), 413);
        assert_eq!(
            big.status_message(),
            "Request entity too large: the allowed maximum operations in a JSON patch is 10000, got 10001"
        );

        let internal = PatchError::MissingMergeKey {
            map: serde_json::json!({"image": "nginx"}),
            key: "name".to_owned(),
        };
        assert_eq!(internal.status_code(), 500);
        assert_eq!(internal.reason(), "");
        assert_eq!(
            internal.status_message(),
            "map: map[image:nginx] does not contain declared merge key: name"
        );
    }
}
