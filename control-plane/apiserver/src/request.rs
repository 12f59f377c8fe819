//! What a request asks for: upstream's `RequestInfo`, worked out from the
//! method and the path alone, before anything is read or authorised.

use std::collections::HashMap;

/// The verb, as authorisation and audit name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
        }
    }
}

/// A request for a resource: `/api/v1/namespaces/default/pods/web/status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceRequest {
    pub verb: Verb,
    /// `""` for the core group.
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub resource: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// What a path is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/apis/<group>`
    Group(String),
    /// `/api/v1`, `/apis/<group>/<version>`
    ResourceList {
        group: String,
        version: String,
    },
    Resource(ResourceRequest),
    /// `/api/v1/nodes/<node>/proxy/<path>`: the node's agent answers.
    NodeProxy {
        verb: Verb,
        node: String,
        path: String,
    },
    Version,
    /// `/healthz`, `/livez`, `/readyz` and their `/<check>` children.
    Health(String),
    OpenApiV2,
    OpenApiV3Index,
    /// `/openapi/v3/<path>`, e.g. `api/v1` or `apis/apps/v1`.
    OpenApiV3(String),
    NotFound,
}

/// Splits a path the way upstream's `RequestInfoFactory` does.
pub fn route(method: &http::Method, path: &str, query: &Query) -> Route {
    let trimmed = path.trim_matches('/');
    let parts: Vec<&str> = if trimmed.is_empty() {
        Vec::new()
    } else {
        trimmed.split('/').collect()
    };
    match parts.as_slice() {
        ["version"] => return Route::Version,
        [check @ ("healthz" | "livez" | "readyz"), ..] => {
            return Route::Health((*check).to_string());
        }
        ["openapi", "v2"] => return Route::OpenApiV2,
        ["openapi", "v3"] => return Route::OpenApiV3Index,
        ["openapi", "v3", rest @ ..] => return Route::OpenApiV3(rest.join("/")),
        ["api"] => return Route::CoreVersions,
        ["apis"] => return Route::Groups,
        ["apis", group] => return Route::Group((*group).to_string()),
        ["api", version] => {
            return Route::ResourceList {
                group: String::new(),
                version: (*version).to_string(),
            };
        }
        ["apis", group, version] => {
            return Route::ResourceList {
                group: (*group).to_string(),
                version: (*version).to_string(),
            };
        }
        _ => {}
    }
    let (group, version, rest) = match parts.as_slice() {
        ["api", version, rest @ ..] => (String::new(), (*version).to_string(), rest),
        ["apis", group, version, rest @ ..] => ((*group).to_string(), (*version).to_string(), rest),
        _ => return Route::NotFound,
    };
    let mut rest: Vec<String> = rest.iter().map(|s| percent_decode(s)).collect();
    let mut watch_path = false;
    if rest.first().is_some_and(|s| s == "watch") {
        watch_path = true;
        rest.remove(0);
    }
    let mut namespace = None;
    if rest.first().is_some_and(|s| s == "namespaces") && rest.len() > 1 {
        namespace = Some(rest[1].clone());
        // `/namespaces/<ns>/status` and `/finalize` are the namespace's own
        // subresources; anything else after the name is a namespaced resource.
        if rest.len() > 2 && !matches!(rest[2].as_str(), "status" | "finalize") {
            rest.drain(..2);
        }
    }
    if group.is_empty()
        && version == "v1"
        && namespace.is_none()
        && rest.len() >= 3
        && rest[0] == "nodes"
        && rest[2] == "proxy"
    {
        let verb = match method.as_str() {
            "GET" | "HEAD" => Verb::Get,
            "POST" => Verb::Create,
            "PUT" => Verb::Update,
            "PATCH" => Verb::Patch,
            "DELETE" => Verb::Delete,
            _ => return Route::NotFound,
        };
        return Route::NodeProxy {
            verb,
            node: rest[1].clone(),
            path: rest[3..].join("/"),
        };
    }
    if rest.is_empty() || rest.len() > 3 {
        return Route::NotFound;
    }
    let resource = rest[0].clone();
    let name = rest.get(1).cloned();
    let subresource = rest.get(2).cloned();
    // Namespaces are cluster-scoped: `/api/v1/namespaces/foo` names the
    // namespace `foo`, and carries no namespace of its own.
    if resource == "namespaces" && group.is_empty() {
        namespace = None;
    }
    let watch = watch_path || query.flag("watch");
    let verb = match (method.as_str(), name.is_some()) {
        ("GET" | "HEAD", _) if watch => Verb::Watch,
        ("GET" | "HEAD", true) => Verb::Get,
        ("GET" | "HEAD", false) => Verb::List,
        ("POST", _) => Verb::Create,
        ("PUT", _) => Verb::Update,
        ("PATCH", _) => Verb::Patch,
        ("DELETE", true) => Verb::Delete,
        ("DELETE", false) => Verb::DeleteCollection,
        _ => return Route::NotFound,
    };
    Route::Resource(ResourceRequest {
        verb,
        group,
        version,
        namespace,
        resource,
        name,
        subresource,
    })
}

fn percent_decode(segment: &str) -> String {
    if !segment.contains('%') {
        return segment.to_string();
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(hi * 16 + lo);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Query parameters; the last value of a repeated key wins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(query: Option<&str>) -> Query {
        let mut map = HashMap::new();
        if let Some(q) = query {
            for (k, v) in form_urlencoded::parse(q.as_bytes()) {
                map.insert(k.into_owned(), v.into_owned());
            }
        }
        Query(map)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A boolean parameter as upstream decodes one into `ListOptions` and
    /// its kin: absent is `None`; `0` or `false` in any case is false;
    /// anything else, even an empty value, is true. So Python's `True`
    /// (the official client's `watch=True`) is true.
    pub fn bool(&self, key: &str) -> Option<bool> {
        self.0
            .get(key)
            .map(|v| v != "0" && !v.eq_ignore_ascii_case("false"))
    }

    /// A boolean parameter that is present and true; see [`Query::bool`].
    pub fn flag(&self, key: &str) -> bool {
        self.bool(key) == Some(true)
    }
}

/// What the client accepts in return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// The objects themselves.
    Json,
    /// A `meta.k8s.io` `Table` (v1 or v1beta1, given).
    Table(&'static str),
    /// `PartialObjectMetadata` / `PartialObjectMetadataList`.
    Metadata(&'static str),
}

/// Picks the first media type in `Accept` that we can produce. `None`
/// means none is acceptable (406).
pub fn negotiate(accept: Option<&str>) -> Option<Output> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Some(Output::Json);
    };
    for item in accept.split(',') {
        let mut parts = item.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        let mut params = HashMap::new();
        for p in parts {
            if let Some((k, v)) = p.split_once('=') {
                params.insert(k.trim().to_string(), v.trim().to_string());
            }
        }
        if !matches!(media.as_str(), "application/json" | "*/*" | "application/*") {
            continue;
        }
        let group_ok = params.get("g").is_none_or(|g| g == "meta.k8s.io");
        let version = match params.get("v").map(String::as_str) {
            None | Some("v1") => "v1",
            Some("v1beta1") => "v1beta1",
            Some(_) => continue,
        };
        match params.get("as").map(String::as_str) {
            None => return Some(Output::Json),
            Some("Table") if group_ok => return Some(Output::Table(version)),
            Some("PartialObjectMetadata" | "PartialObjectMetadataList") if group_ok => {
                return Some(Output::Metadata(version));
            }
            Some(_) => continue,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn r(method: Method, path: &str, query: &str) -> Route {
        route(&method, path, &Query::parse(Some(query)))
    }

    fn res(
        verb: Verb,
        group: &str,
        ns: Option<&str>,
        resource: &str,
        name: Option<&str>,
        sub: Option<&str>,
    ) -> Route {
        Route::Resource(ResourceRequest {
            verb,
            group: group.into(),
            version: "v1".into(),
            namespace: ns.map(Into::into),
            resource: resource.into(),
            name: name.map(Into::into),
            subresource: sub.map(Into::into),
        })
    }

    #[test]
    fn paths_route_like_upstream() {
        assert_eq!(
            r(Method::GET, "/api/v1/namespaces/default/pods", ""),
            res(Verb::List, "", Some("default"), "pods", None, None)
        );
        assert_eq!(
            r(Method::GET, "/api/v1/namespaces/default/pods", "watch=true"),
            res(Verb::Watch, "", Some("default"), "pods", None, None)
        );
        assert_eq!(
            r(Method::GET, "/api/v1/watch/pods", ""),
            res(Verb::Watch, "", None, "pods", None, None)
        );
        assert_eq!(
            r(Method::PUT, "/api/v1/namespaces/ns/pods/web/status", ""),
            res(
                Verb::Update,
                "",
                Some("ns"),
                "pods",
                Some("web"),
                Some("status")
            )
        );
        assert_eq!(
            r(Method::GET, "/api/v1/namespaces/foo", ""),
            res(Verb::Get, "", None, "namespaces", Some("foo"), None)
        );
        assert_eq!(
            r(Method::PUT, "/api/v1/namespaces/foo/finalize", ""),
            res(
                Verb::Update,
                "",
                None,
                "namespaces",
                Some("foo"),
                Some("finalize")
            )
        );
        assert_eq!(
            r(Method::DELETE, "/apis/apps/v1/namespaces/a/deployments", ""),
            res(
                Verb::DeleteCollection,
                "apps",
                Some("a"),
                "deployments",
                None,
                None
            )
        );
        assert_eq!(
            r(Method::GET, "/apis/apps", ""),
            Route::Group("apps".into())
        );
        assert_eq!(
            r(Method::GET, "/openapi/v3/apis/apps/v1", ""),
            Route::OpenApiV3("apis/apps/v1".into())
        );
        assert_eq!(
            r(Method::GET, "/api/v1/namespaces/a/pods/b/c/d", ""),
            Route::NotFound
        );
        assert_eq!(r(Method::GET, "/nope", ""), Route::NotFound);
        assert_eq!(
            r(Method::GET, "/api/v1/nodes/n1/proxy/stats/summary", ""),
            Route::NodeProxy {
                verb: Verb::Get,
                node: "n1".into(),
                path: "stats/summary".into()
            }
        );
        assert_eq!(
            r(Method::GET, "/api/v1/nodes/n1/proxy", ""),
            Route::NodeProxy {
                verb: Verb::Get,
                node: "n1".into(),
                path: String::new()
            }
        );
    }

    #[test]
    fn accept_headers_pick_the_first_we_serve() {
        let kubectl_get = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(negotiate(Some(kubectl_get)), Some(Output::Table("v1")));
        assert_eq!(negotiate(None), Some(Output::Json));
        assert_eq!(negotiate(Some("application/vnd.kubernetes.protobuf")), None);
        assert_eq!(
            negotiate(Some("application/vnd.kubernetes.protobuf, */*")),
            Some(Output::Json)
        );
        assert_eq!(
            negotiate(Some(
                "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
            )),
            Some(Output::Metadata("v1"))
        );
    }

    #[test]
    fn booleans_decode_as_upstream_decodes_them() {
        let q = Query::parse(Some(
            "a=true&b=True&c=1&d=&e=yes&f=false&g=FALSE&h=0&watch=True",
        ));
        for key in ["a", "b", "c", "d", "e"] {
            assert_eq!(q.bool(key), Some(true), "{key}");
            assert!(q.flag(key), "{key}");
        }
        for key in ["f", "g", "h"] {
            assert_eq!(q.bool(key), Some(false), "{key}");
            assert!(!q.flag(key), "{key}");
        }
        assert_eq!(q.bool("absent"), None);
        assert!(!q.flag("absent"));
        // The Python client sends `watch=True`: that is a watch.
        let cms = "/api/v1/namespaces/default/configmaps";
        assert_eq!(
            r(Method::GET, cms, "watch=True"),
            res(Verb::Watch, "", Some("default"), "configmaps", None, None)
        );
        assert_eq!(
            r(Method::GET, cms, "watch=False"),
            res(Verb::List, "", Some("default"), "configmaps", None, None)
        );
    }

    #[test]
    fn percent_escapes_decode_without_panicking() {
        assert_eq!(percent_decode("a%2Fb"), "a/b");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
