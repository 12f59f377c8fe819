//! Errors as Kubernetes `Status` objects.
//!
//! Every failure the apiserver answers is an [`ApiError`]: an HTTP code, a
//! `reason` from upstream's `metav1.StatusReason` and a message worded as
//! upstream words it, because clients match on them (kubectl prints the
//! message, client-go and kube-rs branch on code and reason).

use kedge_apimachinery::field::{self, FieldError};
use kedge_resources::catalog::ResourceInfo;
use serde_json::{Value, json};

/// A failed request, ready to be written as a `Status`.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

pub type ApiResult<T> = Result<T, ApiError>;

fn details(info: &ResourceInfo, name: &str) -> Value {
    json!({"name": name, "group": info.group, "kind": info.plural})
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn unauthorized() -> Self {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(403, "Forbidden", message)
    }

    /// 404 for an object: `pods "web" not found`.
    pub fn not_found(info: &ResourceInfo, name: &str) -> Self {
        ApiError::new(
            404,
            "NotFound",
            format!("{} \"{}\" not found", info.group_resource(), name),
        )
        .with_details(details(info, name))
    }

    /// 404 for a path that serves nothing.
    pub fn path_not_found() -> Self {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        ApiError::new(405, "MethodNotAllowed", message)
    }

    pub fn not_acceptable(message: impl Into<String>) -> Self {
        ApiError::new(406, "NotAcceptable", message)
    }

    /// 409 AlreadyExists: `pods "web" already exists`.
    pub fn already_exists(info: &ResourceInfo, name: &str) -> Self {
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{} \"{}\" already exists", info.group_resource(), name),
        )
        .with_details(details(info, name))
    }

    /// 409 Conflict: `Operation cannot be fulfilled on pods "web": <why>`.
    pub fn conflict(info: &ResourceInfo, name: &str, why: &str) -> Self {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{}\": {}",
                info.group_resource(),
                name,
                why
            ),
        )
        .with_details(details(info, name))
    }

    /// The conflict a stale resourceVersion gets.
    pub fn modified(info: &ResourceInfo, name: &str) -> Self {
        ApiError::conflict(
            info,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 410 Expired: a resourceVersion or continue token older than the
    /// history kept.
    pub fn expired(message: impl Into<String>) -> Self {
        ApiError::new(410, "Expired", message)
    }

    /// 413: a body over the limit.
    pub fn too_large(limit: usize) -> Self {
        ApiError::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit}"),
        )
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf; got {content_type:?}"
            ),
        )
    }

    /// 422 Invalid with one cause per field error:
    /// `Pod "web" is invalid: spec.containers: Required value`.
    pub fn invalid(info: &ResourceInfo, name: &str, errors: &[FieldError]) -> Self {
        Self::invalid_kind(info.group, info.kind, name, errors)
    }

    /// [`ApiError::invalid`] for a kind outside the catalogue.
    pub fn invalid_kind(group: &str, kind: &str, name: &str, errors: &[FieldError]) -> Self {
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| json!({"reason": e.kind.reason(), "message": e.cause_message(), "field": e.field}))
            .collect();
        ApiError::new(
            422,
            "Invalid",
            format!("{} \"{}\" is invalid: {}", kind, name, field::join(errors)),
        )
        .with_details(json!({"name": name, "group": group, "kind": kind, "causes": causes}))
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError::new(503, "ServiceUnavailable", message)
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        ApiError::new(504, "Timeout", message)
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }

    /// Maps a datastore error for the object `name` of `info`.
    pub fn from_store(info: &ResourceInfo, name: &str, err: kedge_datastore::Error) -> Self {
        use kedge_datastore::Error as E;
        match err {
            E::AlreadyExists { .. } => ApiError::already_exists(info, name),
            E::NotFound { .. } => ApiError::not_found(info, name),
            E::Conflict { .. } => ApiError::modified(info, name),
            E::Compacted {
                requested,
                compacted,
            } => ApiError::expired(format!(
                "too old resource version: {requested} ({compacted})"
            )),
            E::FutureRevision { requested, current } => ApiError::timeout(format!(
                "Too large resource version: {requested}, current: {current}"
            )),
            E::ValueTooLarge { .. } => ApiError::new(
                413,
                "RequestEntityTooLarge",
                "etcdserver: request is too large",
            ),
            E::InvalidContinueToken { reason } => {
                ApiError::bad_request(format!("continue key is not valid: {reason}"))
            }
            e @ E::Unavailable { .. } => ApiError::unavailable(e.to_string()),
            e => ApiError::internal(e.to_string()),
        }
    }
}

/// A `Status` reporting success, as some deletes answer.
pub fn success(info: &ResourceInfo, name: &str, uid: Option<&str>) -> Value {
    let mut details = details(info, name);
    if let Some(uid) = uid {
        details["uid"] = json!(uid);
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}

#[cfg(test)]
mod tests {
    use super::*;
    use kedge_resources::catalog;

    #[test]
    fn statuses_read_like_upstream() {
        let pods = catalog::find("", "v1", "pods").unwrap();
        let deploys = catalog::find("apps", "v1", "deployments").unwrap();
        assert_eq!(
            ApiError::not_found(pods, "web").message,
            "pods \"web\" not found"
        );
        assert_eq!(
            ApiError::already_exists(deploys, "web").message,
            "deployments.apps \"web\" already exists"
        );
        let s = ApiError::modified(pods, "web").to_status();
        assert_eq!(s["code"], 409);
        assert_eq!(s["reason"], "Conflict");
        let invalid =
            ApiError::invalid(pods, "web", &[FieldError::required("spec.containers", "")]);
        assert_eq!(
            invalid.message,
            "Pod \"web\" is invalid: spec.containers: Required value"
        );
        assert_eq!(
            invalid.to_status()["details"]["causes"][0]["reason"],
            "FieldValueRequired"
        );
    }
}
