//! Service-account tokens: the TokenRequest API
//! (`POST /api/v1/namespaces/<ns>/serviceaccounts/<name>/token`,
//! authentication.k8s.io/v1 `TokenRequest`) and the authentication of the tokens it
//! issues, as upstream's bound service-account tokens work.
//!
//! A token is a JWT signed ES256 by the cluster's service-account key (shared by every
//! server, so any server checks a token another issued). Its claims are upstream's:
//! `iss`, `sub` (`system:serviceaccount:<ns>:<name>`), `aud`, `exp`, `iat`, `nbf`, `jti`
//! and `kubernetes.io` (`namespace`, `serviceaccount {name, uid}`, and for a token bound
//! to a pod, `pod {name, uid}` and `node {name, uid}` of the node it runs on).
//!
//! A token authenticates as `system:serviceaccount:<ns>:<name>` in the groups
//! `system:serviceaccounts`, `system:serviceaccounts:<ns>` and `system:authenticated`,
//! while it has not expired, its ServiceAccount still exists with the same uid, and the
//! pod it is bound to (if any) still exists with the same uid and was not deleted more
//! than a minute ago.
//!
//! [`issue`] is also what the node link calls for an agent, with
//! [`TokenRequest::for_node`] set: a node gets tokens only for pods bound to it.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kedge_apimachinery::field::FieldError;
use kedge_pki::ServiceAccountKey;
use kedge_resources::catalog::{self, ResourceInfo};
use serde_json::{Value, json};

use crate::auth::User;
use crate::registry::Registry;
use crate::status::{ApiError, ApiResult};

/// The issuer upstream and K3s use by default (`--service-account-issuer`).
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The shortest lifetime a TokenRequest may ask for: ten minutes, as upstream.
pub const MIN_EXPIRATION_SECONDS: i64 = 600;
/// The lifetime of a token whose request names none: one hour, as upstream.
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// The longest: 2^32 seconds, as upstream validates it.
pub const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;

/// How far clocks may disagree on `nbf`, and how long a token outlives the deletion
/// timestamp of its pod: upstream's one minute.
const LEEWAY: Duration = Duration::from_secs(60);

/// Signs and checks service-account tokens.
#[derive(Clone, Debug)]
pub struct Issuer {
    key: Arc<ServiceAccountKey>,
    issuer: String,
    /// The audiences the API server accepts (upstream's `--api-audiences`, which
    /// default to the issuer); a token without an `aud` names these.
    audiences: Vec<String>,
}

impl Issuer {
    /// An issuer named `issuer`, accepting tokens for `issuer` as audience.
    pub fn new(key: Arc<ServiceAccountKey>, issuer: impl Into<String>) -> Issuer {
        let issuer = issuer.into();
        Issuer {
            key,
            audiences: vec![issuer.clone()],
            issuer,
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }
}

/// The object a token is bound to: a pod, by name and (optionally) uid.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BoundPod {
    pub name: String,
    pub uid: Option<String>,
}

/// What a token is asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenRequest {
    /// Empty: the API server's own audiences.
    pub audiences: Vec<String>,
    /// `None`: [`DEFAULT_EXPIRATION_SECONDS`].
    pub expiration_seconds: Option<i64>,
    pub bound_pod: Option<BoundPod>,
    /// The node asking, for a node's own request: the pod must be bound to it.
    pub for_node: Option<String>,
}

/// A token and what it was issued with.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    pub token: String,
    pub audiences: Vec<String>,
    pub expiration_seconds: i64,
    pub expires: SystemTime,
}

fn info(plural: &str) -> &'static ResourceInfo {
    catalog::find("", "v1", plural)
        .unwrap_or_else(|| unreachable!("the catalog always has core/v1 {plural}"))
}

fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn invalid(name: &str, errors: &[FieldError]) -> ApiError {
    ApiError::invalid_kind("authentication.k8s.io", "TokenRequest", name, errors)
}

/// Issues a token for the ServiceAccount `ns/name` (see the module).
pub async fn issue(
    registry: &Registry,
    issuer: &Issuer,
    ns: &str,
    name: &str,
    req: &TokenRequest,
) -> ApiResult<IssuedToken> {
    let expiration_seconds = req.expiration_seconds.unwrap_or(DEFAULT_EXPIRATION_SECONDS);
    let mut errors = Vec::new();
    if expiration_seconds < MIN_EXPIRATION_SECONDS {
        errors.push(FieldError::invalid(
            "spec.expirationSeconds",
            &json!(expiration_seconds),
            "may not specify a duration less than 10 minutes",
        ));
    } else if expiration_seconds > MAX_EXPIRATION_SECONDS {
        errors.push(FieldError::invalid(
            "spec.expirationSeconds",
            &json!(expiration_seconds),
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    if !errors.is_empty() {
        return Err(invalid(name, &errors));
    }
    let account = registry
        .get(info("serviceaccounts"), Some(ns), name, None)
        .await?;
    let account_uid = text(&account, "/metadata/uid").to_string();

    let mut kubernetes = json!({
        "namespace": ns,
        "serviceaccount": {"name": name, "uid": account_uid},
    });
    if let Some(bound) = &req.bound_pod {
        let pod = registry
            .get(info("pods"), Some(ns), &bound.name, None)
            .await?;
        let pod_uid = text(&pod, "/metadata/uid");
        if let Some(uid) = bound.uid.as_deref()
            && !uid.is_empty()
            && uid != pod_uid
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"
                ),
            ));
        }
        let pod_account = match text(&pod, "/spec/serviceAccountName") {
            "" => "default",
            other => other,
        };
        if pod_account != name {
            return Err(ApiError::bad_request(format!(
                "cannot bind token for serviceaccount {name:?} to pod running with different serviceaccount name."
            )));
        }
        let node = text(&pod, "/spec/nodeName");
        if let Some(asking) = req.for_node.as_deref()
            && node != asking
        {
            return Err(ApiError::forbidden(format!(
                "node {asking:?} may not request a token for pod {ns}/{}: it is not bound to that node",
                bound.name
            )));
        }
        kubernetes["pod"] = json!({"name": bound.name, "uid": pod_uid});
        if !node.is_empty() {
            let mut claim = json!({"name": node});
            if let Ok(n) = registry.get(info("nodes"), None, node, None).await {
                claim["uid"] = json!(text(&n, "/metadata/uid"));
            }
            kubernetes["node"] = claim;
        }
    } else if req.for_node.is_some() {
        return Err(ApiError::forbidden(
            "a node may only request tokens bound to one of its pods",
        ));
    }

    let audiences = if req.audiences.is_empty() {
        issuer.audiences.clone()
    } else {
        req.audiences.clone()
    };
    let now = registry.now();
    let iat = unix(now);
    let exp = iat.saturating_add(expiration_seconds);
    let claims = json!({
        "aud": audiences,
        "exp": exp,
        "iat": iat,
        "iss": issuer.issuer,
        "jti": uuid::Uuid::new_v4().to_string(),
        "kubernetes.io": kubernetes,
        "nbf": iat,
        "sub": format!("system:serviceaccount:{ns}:{name}"),
    });
    let token = sign(issuer, &claims)?;
    tracing::debug!(namespace = ns, serviceaccount = name, pod = ?req.bound_pod.as_ref().map(|p| &p.name), "issued a service-account token");
    Ok(IssuedToken {
        token,
        audiences,
        expiration_seconds,
        expires: UNIX_EPOCH + Duration::from_secs(u64::try_from(exp).unwrap_or(0)),
    })
}

fn sign(issuer: &Issuer, claims: &Value) -> ApiResult<String> {
    let header = json!({"alg": "ES256", "kid": issuer.key.key_id()});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = issuer
        .key
        .sign(input.as_bytes())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

/// `POST .../serviceaccounts/<name>/token`: reads the TokenRequest `body`, issues the
/// token and answers the TokenRequest with its status.
pub async fn create(
    registry: &Registry,
    issuer: Option<&Issuer>,
    ns: &str,
    name: &str,
    body: &Value,
) -> ApiResult<Value> {
    let issuer = issuer.ok_or_else(|| {
        ApiError::unavailable(
            "this server has no service-account signing key; tokens cannot be issued",
        )
    })?;
    let kind = body.get("kind").and_then(Value::as_str);
    let api_version = body.get("apiVersion").and_then(Value::as_str);
    if kind.is_some_and(|k| k != "TokenRequest")
        || api_version.is_some_and(|v| v != "authentication.k8s.io/v1")
    {
        return Err(ApiError::bad_request(format!(
            "expected an authentication.k8s.io/v1 TokenRequest, got {} {}",
            api_version.unwrap_or_default(),
            kind.unwrap_or_default()
        )));
    }
    let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    let mut errors = Vec::new();
    let audiences = match spec.get("audiences") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, a)| match a.as_str() {
                Some(s) => Some(s.to_string()),
                None => {
                    errors.push(FieldError::invalid(
                        format!("spec.audiences[{i}]"),
                        a,
                        "must be a string",
                    ));
                    None
                }
            })
            .collect(),
        Some(other) => {
            errors.push(FieldError::invalid(
                "spec.audiences",
                other,
                "must be a list of strings",
            ));
            Vec::new()
        }
    };
    let expiration_seconds = match spec.get("expirationSeconds") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_i64() {
            Some(n) => Some(n),
            None => {
                errors.push(FieldError::invalid(
                    "spec.expirationSeconds",
                    v,
                    "must be an integer",
                ));
                None
            }
        },
    };
    let bound_pod = match spec.get("boundObjectRef") {
        None | Some(Value::Null) => None,
        Some(r) => {
            let kind = text(r, "/kind");
            let api_version = text(r, "/apiVersion");
            let bound_name = text(r, "/name");
            if kind != "Pod" {
                return Err(ApiError::bad_request(format!(
                    "cannot bind token to object of type {kind:?}: only Pods are supported"
                )));
            }
            if !api_version.is_empty() && api_version != "v1" {
                errors.push(FieldError::not_supported(
                    "spec.boundObjectRef.apiVersion",
                    &json!(api_version),
                    &["v1"],
                ));
            }
            if bound_name.is_empty() {
                errors.push(FieldError::required("spec.boundObjectRef.name", ""));
            }
            let uid = text(r, "/uid");
            Some(BoundPod {
                name: bound_name.to_string(),
                uid: (!uid.is_empty()).then(|| uid.to_string()),
            })
        }
    };
    if !errors.is_empty() {
        return Err(invalid(name, &errors));
    }
    let req = TokenRequest {
        audiences,
        expiration_seconds,
        bound_pod,
        for_node: None,
    };
    let issued = issue(registry, issuer, ns, name, &req).await?;
    let mut spec_out = json!({
        "audiences": issued.audiences,
        "expirationSeconds": issued.expiration_seconds,
        "boundObjectRef": null,
    });
    if let Some(r) = spec.get("boundObjectRef").filter(|r| r.is_object()) {
        spec_out["boundObjectRef"] = r.clone();
    }
    Ok(json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {
            "name": name,
            "namespace": ns,
            "creationTimestamp": crate::object::timestamp(registry.now()),
        },
        "spec": spec_out,
        "status": {
            "token": issued.token,
            "expirationTimestamp": crate::object::timestamp(issued.expires),
        },
    }))
}

/// The claims of a token whose signature, issuer, audience and times check out, or
/// why not. No datastore access.
fn verified_claims(issuer: &Issuer, token: &str, now: SystemTime) -> Result<Value, &'static str> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a jwt");
    };
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).map_err(|_| "not base64url");
    let header: Value =
        serde_json::from_slice(&decode(header)?).map_err(|_| "the header is not json")?;
    if header.get("alg").and_then(Value::as_str) != Some("ES256") {
        return Err("not signed ES256");
    }
    if let Some(kid) = header.get("kid").and_then(Value::as_str)
        && kid != issuer.key.key_id()
    {
        return Err("signed by another key");
    }
    let signing_input = &token[..token.len() - signature.len() - 1];
    if !issuer
        .key
        .verify(signing_input.as_bytes(), &decode(signature)?)
    {
        return Err("the signature does not verify");
    }
    let claims: Value =
        serde_json::from_slice(&decode(payload)?).map_err(|_| "the claims are not json")?;
    if claims.get("iss").and_then(Value::as_str) != Some(issuer.issuer.as_str()) {
        return Err("issued by someone else");
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !audiences
        .iter()
        .any(|a| issuer.audiences.iter().any(|ours| ours == a))
    {
        return Err("not meant for this API server");
    }
    let now = unix(now);
    let leeway = LEEWAY.as_secs() as i64;
    match claims.get("exp").and_then(Value::as_i64) {
        Some(exp) if now < exp => {}
        _ => return Err("expired"),
    }
    if claims
        .get("nbf")
        .and_then(Value::as_i64)
        .is_some_and(|nbf| nbf > now + leeway)
    {
        return Err("not valid yet");
    }
    Ok(claims)
}

/// The user a service-account token authenticates, or `None` (see the module).
pub async fn authenticate(registry: &Registry, issuer: &Issuer, token: &str) -> Option<User> {
    let now = registry.now();
    let claims = match verified_claims(issuer, token, now) {
        Ok(c) => c,
        Err(why) => {
            tracing::debug!(
                reason = why,
                "a bearer token is not a valid service-account token"
            );
            return None;
        }
    };
    let k = claims.get("kubernetes.io")?;
    let ns = text(k, "/namespace");
    let account = text(k, "/serviceaccount/name");
    let account_uid = text(k, "/serviceaccount/uid");
    let user = format!("system:serviceaccount:{ns}:{account}");
    if ns.is_empty()
        || account.is_empty()
        || claims.get("sub").and_then(Value::as_str) != Some(&user)
    {
        return None;
    }
    let reject = |why: &str| {
        tracing::debug!(user = %user, reason = why, "service-account token refused");
        None
    };
    match registry
        .get(info("serviceaccounts"), Some(ns), account, None)
        .await
    {
        Ok(sa) if text(&sa, "/metadata/uid") == account_uid => {}
        Ok(_) => return reject("the service account was deleted and made again"),
        Err(_) => return reject("the service account is gone"),
    }
    if let Some(pod) = k.get("pod") {
        match registry
            .get(info("pods"), Some(ns), text(pod, "/name"), None)
            .await
        {
            Ok(p) if text(&p, "/metadata/uid") == text(pod, "/uid") => {
                let deleted = p
                    .pointer("/metadata/deletionTimestamp")
                    .and_then(Value::as_str)
                    .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                    .map(SystemTime::from);
                if deleted.is_some_and(|at| at + LEEWAY < now) {
                    return reject("the pod it is bound to was deleted");
                }
            }
            Ok(_) => return reject("the pod it is bound to was deleted and made again"),
            Err(_) => return reject("the pod it is bound to is gone"),
        }
    }
    Some(User {
        name: user,
        uid: account_uid.to_string(),
        groups: vec![
            "system:serviceaccounts".to_string(),
            format!("system:serviceaccounts:{ns}"),
            "system:authenticated".to_string(),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> Issuer {
        let pem = rcgen::KeyPair::generate().unwrap().serialize_pem();
        Issuer::new(
            Arc::new(ServiceAccountKey::from_pem(&pem).unwrap()),
            DEFAULT_ISSUER,
        )
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn token(issuer: &Issuer, claims: Value) -> String {
        sign(issuer, &claims).unwrap()
    }

    fn claims(exp: i64) -> Value {
        json!({
            "aud": [DEFAULT_ISSUER], "exp": exp, "iat": 1000, "nbf": 1000,
            "iss": DEFAULT_ISSUER, "sub": "system:serviceaccount:default:default",
            "kubernetes.io": {"namespace": "default", "serviceaccount": {"name": "default", "uid": "u"}},
        })
    }

    #[test]
    fn tokens_verify_only_with_the_key_issuer_audience_and_time() {
        let ours = issuer();
        let good = token(&ours, claims(5000));
        let c = verified_claims(&ours, &good, at(2000)).unwrap();
        assert_eq!(c["sub"], "system:serviceaccount:default:default");
        assert_eq!(verified_claims(&ours, &good, at(5000)), Err("expired"));
        // A minute of leeway on nbf for clocks that disagree.
        assert_eq!(verified_claims(&ours, &good, at(950)).map(|_| ()), Ok(()));
        assert_eq!(verified_claims(&ours, &good, at(900)), Err("not valid yet"));
        // Another cluster's key.
        assert!(verified_claims(&issuer(), &good, at(2000)).is_err());
        // Tampered claims.
        let parts: Vec<&str> = good.split('.').collect();
        let mut forged = claims(9_999_999);
        forged["sub"] = json!("system:serviceaccount:kube-system:admin");
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(forged.to_string()),
            parts[2]
        );
        assert_eq!(
            verified_claims(&ours, &forged, at(2000)),
            Err("the signature does not verify")
        );
        // Another issuer, another audience.
        let mut other = claims(5000);
        other["iss"] = json!("https://elsewhere");
        assert!(verified_claims(&ours, &token(&ours, other), at(2000)).is_err());
        let mut other = claims(5000);
        other["aud"] = json!(["vault"]);
        assert_eq!(
            verified_claims(&ours, &token(&ours, other), at(2000)),
            Err("not meant for this API server")
        );
        // Garbage never panics.
        for bad in ["", "a.b", "a.b.c.d", "....", "x.y.z", "eyJ.eyJ.AAAA"] {
            assert!(verified_claims(&ours, bad, at(2000)).is_err(), "{bad}");
        }
    }
}
