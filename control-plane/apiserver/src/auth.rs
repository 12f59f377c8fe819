//! Who is asking, and may they.
//!
//! Authentication, in upstream's order: a client certificate verified
//! against the client CA during the TLS handshake (CN is the user, each O a
//! group), then a bearer token from the static token file (upstream's
//! `--token-auth-file` CSV: `token,user,uid,"group1,group2"`). Anything else
//! is anonymous, and anonymous requests get 401.
//!
//! Authorisation is deliberately small until RBAC exists: members of
//! `system:masters` and the server's own scheduler and controller manager
//! ([`CONTROL_PLANE_USERS`]) may do anything; every other authenticated user may read
//! discovery, OpenAPI, health and version (upstream's `system:discovery` and
//! `system:public-info-viewer` roles) and nothing else.
//!
//! The streaming subresources (pods' log, exec, attach and portforward, and
//! the node proxy) reach into a node, so node users (`system:nodes`) never
//! get them, whatever else they hold.

use std::collections::HashMap;
use std::path::Path;

use crate::request::{ResourceRequest, Route};
use crate::status::ApiError;

/// An authenticated user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
}

/// The users the server's own components run as, with client certificates
/// it issues itself. Upstream's RBAC grants them wide roles
/// (system:kube-scheduler, system:kube-controller-manager); until kedge has
/// RBAC they may do anything.
pub const CONTROL_PLANE_USERS: &[&str] =
    &["system:kube-controller-manager", "system:kube-scheduler"];

impl User {
    pub fn is_master(&self) -> bool {
        self.groups.iter().any(|g| g == "system:masters")
    }

    /// One of the server's own components.
    pub fn is_control_plane(&self) -> bool {
        CONTROL_PLANE_USERS.contains(&self.name.as_str())
    }

    /// An agent's node identity.
    pub fn is_node(&self) -> bool {
        self.groups.iter().any(|g| g == "system:nodes")
    }
}

/// Reads the user out of a client certificate that rustls has already
/// verified against the client CA.
pub fn user_from_certificate(der: &[u8]) -> Option<User> {
    let identity = kedge_pki::client_identity(der).ok()?;
    let mut groups = identity.groups;
    groups.push("system:authenticated".to_string());
    Some(User {
        name: identity.user,
        uid: String::new(),
        groups,
    })
}

/// Static bearer tokens.
#[derive(Clone, Debug, Default)]
pub struct TokenFile {
    tokens: HashMap<String, User>,
}

/// A token file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("cannot read token file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("token file {path}, line {line}: {reason}")]
    Parse {
        path: String,
        line: usize,
        reason: &'static str,
    },
}

impl TokenFile {
    /// Parses upstream's CSV format: `token,user,uid[,"group1,group2"]`.
    /// Lines starting with `#` and empty lines are skipped.
    pub fn load(path: &Path) -> Result<TokenFile, TokenFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|(line, reason)| TokenFileError::Parse {
            path: path.display().to_string(),
            line,
            reason,
        })
    }

    fn parse(text: &str) -> Result<TokenFile, (usize, &'static str)> {
        let mut tokens = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields = split_csv(line);
            if fields.len() < 3 {
                return Err((i + 1, "need at least token,user,uid"));
            }
            if fields[0].is_empty() || fields[1].is_empty() {
                return Err((i + 1, "the token and the user may not be empty"));
            }
            let mut groups: Vec<String> = fields
                .get(3)
                .map(|g| {
                    g.split(',')
                        .map(str::trim)
                        .filter(|g| !g.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            groups.push("system:authenticated".to_string());
            let user = User {
                name: fields[1].clone(),
                uid: fields[2].clone(),
                groups,
            };
            if tokens.insert(fields[0].clone(), user).is_some() {
                return Err((i + 1, "duplicate token"));
            }
        }
        Ok(TokenFile { tokens })
    }

    pub fn add(&mut self, token: impl Into<String>, user: User) {
        self.tokens.insert(token.into(), user);
    }

    /// The user a token belongs to, compared in constant time per token so
    /// that timing does not reveal how much of a guess was right.
    pub fn authenticate(&self, token: &str) -> Option<&User> {
        let mut found = None;
        for (candidate, user) in &self.tokens {
            if constant_time_eq(candidate.as_bytes(), token.as_bytes()) {
                found = Some(user);
            }
        }
        found
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Splits one CSV line; a field may be double-quoted to hold commas.
fn split_csv(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut current).trim().to_string()),
            c => current.push(c),
        }
    }
    fields.push(current.trim().to_string());
    fields
}

/// Decides whether `user` may make the request.
pub fn authorize(user: &User, route: &Route) -> Result<(), ApiError> {
    match route {
        Route::NodeProxy { verb, node, .. } => {
            let req = ResourceRequest {
                verb: *verb,
                group: String::new(),
                version: "v1".to_string(),
                namespace: None,
                resource: "nodes".to_string(),
                name: Some(node.clone()),
                subresource: Some("proxy".to_string()),
            };
            let attrs = Attributes::Resource {
                verb: verb.as_str(),
                group: "",
                resource: "nodes",
            };
            if !user.is_node() && allowed(user, &attrs) {
                Ok(())
            } else {
                Err(forbidden(user, &req))
            }
        }
        Route::Resource(req) => {
            let attrs = Attributes::Resource {
                verb: req.verb.as_str(),
                group: &req.group,
                resource: &req.resource,
            };
            let streaming = req.group.is_empty()
                && req.resource == "pods"
                && matches!(
                    req.subresource.as_deref(),
                    Some("log" | "exec" | "attach" | "portforward")
                );
            if streaming && user.is_node() {
                return Err(forbidden(user, req));
            }
            if allowed(user, &attrs) {
                Ok(())
            } else {
                Err(forbidden(user, req))
            }
        }
        // Every other route kedge serves is discovery, OpenAPI, version or
        // health, which are open to every authenticated user.
        _ => Ok(()),
    }
}

/// What a request would do, as the authorizer sees it.
#[derive(Debug)]
pub enum Attributes<'a> {
    Resource {
        verb: &'a str,
        group: &'a str,
        resource: &'a str,
    },
    NonResource {
        verb: &'a str,
        path: &'a str,
    },
}

/// The paths upstream's default roles (system:discovery,
/// system:public-info-viewer) let every authenticated user GET.
const OPEN_PATHS: &[&str] = &[
    "/api", "/apis", "/openapi", "/version", "/healthz", "/livez", "/readyz",
];

/// Whether `user` may do this. Until RBAC exists: `system:masters` may do
/// anything; everyone else may read discovery, OpenAPI, version and health,
/// and ask the review APIs about themselves (upstream's system:basic-user).
pub fn allowed(user: &User, attrs: &Attributes) -> bool {
    if user.is_master() || user.is_control_plane() {
        return true;
    }
    match *attrs {
        Attributes::Resource {
            verb,
            group,
            resource,
        } => {
            verb == "create"
                && crate::reviews::REVIEWS
                    .iter()
                    .any(|r| r.group == group && r.plural == resource)
        }
        Attributes::NonResource { verb, path } => {
            verb == "get"
                && OPEN_PATHS.iter().any(|p| {
                    path == *p
                        || path
                            .strip_prefix(p)
                            .is_some_and(|rest| rest.starts_with('/'))
                })
        }
    }
}

/// Upstream's wording: `pods is forbidden: User "alice" cannot list resource
/// "pods" in API group "" in the namespace "default"`.
fn forbidden(user: &User, req: &ResourceRequest) -> ApiError {
    let resource = match &req.subresource {
        Some(sub) => format!("{}/{}", req.resource, sub),
        None => req.resource.clone(),
    };
    let object = match &req.name {
        Some(name) => format!("{} \"{}\"", req.resource, name),
        None => req.resource.clone(),
    };
    let scope = match &req.namespace {
        Some(ns) => format!(" in the namespace \"{ns}\""),
        None => " at the cluster scope".to_string(),
    };
    ApiError::forbidden(format!(
        "{object} is forbidden: User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\"{scope}",
        user.name,
        req.verb.as_str(),
        req.group
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{Query, route};

    #[test]
    fn streams_are_for_masters_and_never_for_nodes() {
        let user = |name: &str, groups: &[&str]| User {
            name: name.into(),
            uid: String::new(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        };
        let admin = user("admin", &["system:masters"]);
        let alice = user("alice", &[]);
        let node = user("system:node:n1", &["system:nodes", "system:masters"]);
        let get = http::Method::GET;
        for path in [
            "/api/v1/namespaces/default/pods/p/exec",
            "/api/v1/namespaces/default/pods/p/log",
            "/api/v1/namespaces/default/pods/p/portforward",
            "/api/v1/nodes/n1/proxy/stats/summary",
        ] {
            let r = route(&get, path, &Query::default());
            assert!(authorize(&admin, &r).is_ok(), "{path}");
            assert_eq!(authorize(&alice, &r).unwrap_err().code, 403, "{path}");
            assert_eq!(authorize(&node, &r).unwrap_err().code, 403, "{path}");
        }
        let r = route(
            &get,
            "/api/v1/nodes/n1/proxy/stats/summary",
            &Query::default(),
        );
        assert_eq!(
            authorize(&alice, &r).unwrap_err().message,
            "nodes \"n1\" is forbidden: User \"alice\" cannot get resource \"nodes/proxy\" in API group \"\" at the cluster scope"
        );
    }

    #[test]
    fn token_file_parses_upstream_csv() {
        let f = TokenFile::parse(
            "# comment\nsecret1,alice,1001,\"system:masters,devs\"\nsecret2,bob,1002\n",
        )
        .unwrap();
        let alice = f.authenticate("secret1").unwrap();
        assert_eq!(alice.name, "alice");
        assert!(alice.is_master());
        assert!(alice.groups.contains(&"devs".to_string()));
        assert!(!f.authenticate("secret2").unwrap().is_master());
        assert!(f.authenticate("secret").is_none());
        assert!(f.authenticate("").is_none());
        assert_eq!(TokenFile::parse("a,b\n").unwrap_err().0, 1);
        assert_eq!(
            TokenFile::parse("a,b,c\na,d,e\n").unwrap_err().1,
            "duplicate token"
        );
    }
}
