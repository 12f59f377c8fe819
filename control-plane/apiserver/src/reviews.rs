//! The review APIs every authenticated user may call, which store nothing:
//!
//! - authentication.k8s.io/v1 `SelfSubjectReview`: who am I
//!   (`kubectl auth whoami`);
//! - authorization.k8s.io/v1 `SelfSubjectAccessReview`: may I
//!   (`kubectl auth can-i`), answered by the same [`auth::allowed`] that
//!   guards every request.
//!
//! Both take a POST of the review object and answer 201 with its `status`
//! filled in.

use kedge_apimachinery::field::FieldError;
use serde_json::{Value, json};

use crate::auth::{self, Attributes, User};
use crate::status::{ApiError, ApiResult};

/// One review resource.
#[derive(Debug, PartialEq, Eq)]
pub struct Review {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
}

/// Every review resource kedge serves.
pub const REVIEWS: [Review; 2] = [
    Review {
        group: "authentication.k8s.io",
        version: "v1",
        kind: "SelfSubjectReview",
        plural: "selfsubjectreviews",
    },
    Review {
        group: "authorization.k8s.io",
        version: "v1",
        kind: "SelfSubjectAccessReview",
        plural: "selfsubjectaccessreviews",
    },
];

/// The review resource at this group, version and plural, if it is one.
pub fn find(group: &str, version: &str, resource: &str) -> Option<&'static Review> {
    REVIEWS
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == resource)
}

impl Review {
    pub fn group_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }

    /// Answers a review posted by `user`.
    pub fn answer(&self, user: &User, body: Value) -> ApiResult<Value> {
        let api_version = body.get("apiVersion").and_then(Value::as_str);
        let kind = body.get("kind").and_then(Value::as_str);
        if api_version.is_some_and(|v| v != self.group_version())
            || kind.is_some_and(|k| k != self.kind)
        {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({}) does not match the expected API version ({})",
                api_version.unwrap_or_default(),
                self.group_version()
            )));
        }
        let status = match self.kind {
            "SelfSubjectReview" => json!({"userInfo": user_info(user)}),
            _ => json!({"allowed": access(body.get("spec").unwrap_or(&Value::Null), user)?}),
        };
        let mut out = json!({
            "kind": self.kind,
            "apiVersion": self.group_version(),
            "metadata": {"creationTimestamp": null},
            "status": status,
        });
        if let Some(spec) = body.get("spec") {
            out["spec"] = spec.clone();
        }
        Ok(out)
    }
}

/// The user as upstream reports it: every authenticated user is also in
/// `system:authenticated`.
fn user_info(user: &User) -> Value {
    let mut groups = user.groups.clone();
    if !groups.iter().any(|g| g == "system:authenticated") {
        groups.push("system:authenticated".into());
    }
    let mut info = json!({"username": user.name, "groups": groups});
    if !user.uid.is_empty() {
        info["uid"] = json!(user.uid);
    }
    info
}

fn text<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get(field).and_then(Value::as_str).unwrap_or_default()
}

/// Whether the access a SelfSubjectAccessReview spec asks about is allowed.
fn access(spec: &Value, user: &User) -> ApiResult<bool> {
    match (
        spec.get("resourceAttributes").filter(|v| v.is_object()),
        spec.get("nonResourceAttributes").filter(|v| v.is_object()),
    ) {
        (Some(r), None) => Ok(auth::allowed(
            user,
            &Attributes::Resource {
                verb: text(r, "verb"),
                group: text(r, "group"),
                resource: text(r, "resource"),
            },
        )),
        (None, Some(n)) => Ok(auth::allowed(
            user,
            &Attributes::NonResource {
                verb: text(n, "verb"),
                path: text(n, "path"),
            },
        )),
        (r, n) => Err(ApiError::invalid_kind(
            "authorization.k8s.io",
            "SelfSubjectAccessReview",
            "",
            &[FieldError::invalid(
                "spec.resourceAttributes",
                r.or(n).unwrap_or(&Value::Null),
                "exactly one of nonResourceAttributes or resourceAttributes must be specified",
            )],
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(groups: &[&str]) -> User {
        User {
            name: "alice".into(),
            uid: String::new(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    fn can(u: &User, spec: Value) -> bool {
        let review = find("authorization.k8s.io", "v1", "selfsubjectaccessreviews").unwrap();
        review.answer(u, json!({"spec": spec})).unwrap()["status"]["allowed"]
            .as_bool()
            .unwrap()
    }

    #[test]
    fn whoami_reports_the_user_and_system_authenticated() {
        let review = find("authentication.k8s.io", "v1", "selfsubjectreviews").unwrap();
        let out = review.answer(&user(&["dev"]), json!({})).unwrap();
        assert_eq!(out["status"]["userInfo"]["username"], "alice");
        assert_eq!(
            out["status"]["userInfo"]["groups"],
            json!(["dev", "system:authenticated"])
        );
        assert!(
            review
                .answer(&user(&[]), json!({"apiVersion": "v1", "kind": "Pod"}))
                .is_err()
        );
    }

    #[test]
    fn can_i_follows_the_authorizer() {
        let admin = user(&["system:masters"]);
        let dev = user(&["dev"]);
        let create_pods = json!({"resourceAttributes": {"verb": "create", "resource": "pods", "namespace": "default"}});
        assert!(can(&admin, create_pods.clone()));
        assert!(!can(&dev, create_pods));
        let whoami = json!({"resourceAttributes": {"verb": "create", "group": "authentication.k8s.io", "resource": "selfsubjectreviews"}});
        assert!(can(&dev, whoami));
        assert!(can(
            &dev,
            json!({"nonResourceAttributes": {"verb": "get", "path": "/version"}})
        ));
        assert!(!can(
            &dev,
            json!({"nonResourceAttributes": {"verb": "get", "path": "/metrics"}})
        ));
        let review = find("authorization.k8s.io", "v1", "selfsubjectaccessreviews").unwrap();
        let err = review.answer(&dev, json!({"spec": {}})).unwrap_err();
        assert_eq!(err.code, 422);
    }
}
