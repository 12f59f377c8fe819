//! Discovery: what groups, versions and resources the server has.
//!
//! Both forms clients use: the legacy documents (`/api`, `/apis`,
//! `/apis/<group>`, and a resource list per group-version) and aggregated
//! discovery (`apidiscovery.k8s.io` v2 and v2beta1), which kubectl 1.32
//! asks for first and which answers everything in two requests.

use kedge_resources::catalog::{self, ResourceInfo, Subresource};
use serde_json::{Value, json};

use crate::reviews;

/// The media types of aggregated discovery, as clients ask for them.
pub const AGGREGATED_V2: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
pub const AGGREGATED_V2BETA1: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

/// Which aggregated discovery version the Accept header asks for, if any.
pub fn aggregated_version(accept: Option<&str>) -> Option<&'static str> {
    let accept = accept?;
    for item in accept.split(',') {
        let params: Vec<String> = item.split(';').map(|p| p.trim().replace(' ', "")).collect();
        let has = |p: &str| params.iter().any(|x| x == p);
        if has("g=apidiscovery.k8s.io") && has("as=APIGroupDiscoveryList") {
            if has("v=v2") {
                return Some("v2");
            }
            if has("v=v2beta1") {
                return Some("v2beta1");
            }
        }
    }
    None
}

/// `/api`.
pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_entry(group: &str, version: &str) -> Value {
    let gv = json!({"groupVersion": format!("{group}/{version}"), "version": version});
    json!({"name": group, "versions": [gv.clone()], "preferredVersion": gv})
}

/// Every named group with its one version: the catalogue's, then the
/// review APIs'.
fn named_groups() -> impl Iterator<Item = (&'static str, &'static str)> {
    catalog::groups()
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .chain(reviews::REVIEWS.iter().map(|r| (r.group, r.version)))
}

/// `/apis`.
pub fn groups() -> Value {
    let groups: Vec<Value> = named_groups().map(|(g, v)| group_entry(g, v)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`.
pub fn group(name: &str) -> Option<Value> {
    let (g, v) = named_groups().find(|(g, _)| *g == name)?;
    let mut entry = group_entry(g, v);
    entry["kind"] = json!("APIGroup");
    entry["apiVersion"] = json!("v1");
    Some(entry)
}

/// What a subresource answers with, and which verbs it takes.
fn subresource_shape(
    info: &ResourceInfo,
    sub: Subresource,
) -> (
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
) {
    match sub {
        Subresource::Status => (
            info.group,
            info.version,
            info.kind,
            &["get", "patch", "update"],
        ),
        Subresource::Scale => ("autoscaling", "v1", "Scale", &["get", "patch", "update"]),
        Subresource::Binding => ("", "v1", "Binding", &["create"]),
        Subresource::Log => ("", "v1", "Pod", &["get"]),
        Subresource::Exec => ("", "v1", "PodExecOptions", &["create", "get"]),
        Subresource::Attach => ("", "v1", "PodAttachOptions", &["create", "get"]),
        Subresource::PortForward => ("", "v1", "PodPortForwardOptions", &["create", "get"]),
    }
}

fn reviews(group: &str, version: &str) -> impl Iterator<Item = &'static reviews::Review> {
    let group = group.to_string();
    let version = version.to_string();
    reviews::REVIEWS
        .iter()
        .filter(move |r| r.group == group && r.version == version)
}

fn served(group: &str, version: &str) -> impl Iterator<Item = &'static ResourceInfo> {
    let group = group.to_string();
    let version = version.to_string();
    catalog::RESOURCES
        .iter()
        .filter(move |r| r.group == group && r.version == version)
}

/// `/api/v1`, `/apis/<group>/<version>`.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for info in served(group, version) {
        let mut r = json!({
            "name": info.plural,
            "singularName": catalog::singular(info),
            "namespaced": info.namespaced,
            "kind": info.kind,
            "verbs": info.verbs(),
        });
        if !info.short_names.is_empty() {
            r["shortNames"] = json!(info.short_names);
        }
        if !info.categories.is_empty() {
            r["categories"] = json!(info.categories);
        }
        resources.push(r);
        for sub in info.subresources {
            let (g, v, kind, verbs) = subresource_shape(info, *sub);
            let mut s = json!({
                "name": format!("{}/{}", info.plural, sub.name()),
                "singularName": "",
                "namespaced": info.namespaced,
                "kind": kind,
                "verbs": verbs,
            });
            if g != info.group || v != info.version {
                s["group"] = json!(g);
                s["version"] = json!(v);
            }
            resources.push(s);
        }
        if info.group.is_empty() && info.kind == "Namespace" {
            resources.push(json!({"name": "namespaces/finalize", "singularName": "", "namespaced": false, "kind": "Namespace", "verbs": ["update"]}));
        }
    }
    for review in reviews(group, version) {
        resources.push(json!({
            "name": review.plural,
            "singularName": review.kind.to_lowercase(),
            "namespaced": false,
            "kind": review.kind,
            "verbs": ["create"],
        }));
    }
    if resources.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
    )
}

fn aggregated_group(group: &str, version: &str) -> Value {
    let mut resources = Vec::new();
    for info in served(group, version) {
        let mut subresources: Vec<Value> = info
            .subresources
            .iter()
            .map(|sub| {
                let (g, v, kind, verbs) = subresource_shape(info, *sub);
                json!({"subresource": sub.name(), "responseKind": {"group": g, "version": v, "kind": kind}, "verbs": verbs})
            })
            .collect();
        if info.group.is_empty() && info.kind == "Namespace" {
            subresources.push(json!({"subresource": "finalize", "responseKind": {"group": "", "version": "v1", "kind": "Namespace"}, "verbs": ["update"]}));
        }
        let mut r = json!({
            "resource": info.plural,
            "responseKind": {"group": info.group, "version": info.version, "kind": info.kind},
            "scope": if info.namespaced { "Namespaced" } else { "Cluster" },
            "singularResource": catalog::singular(info),
            "verbs": info.verbs(),
        });
        if !info.short_names.is_empty() {
            r["shortNames"] = json!(info.short_names);
        }
        if !info.categories.is_empty() {
            r["categories"] = json!(info.categories);
        }
        if !subresources.is_empty() {
            r["subresources"] = json!(subresources);
        }
        resources.push(r);
    }
    for review in reviews(group, version) {
        resources.push(json!({
            "resource": review.plural,
            "responseKind": {"group": review.group, "version": review.version, "kind": review.kind},
            "scope": "Cluster",
            "singularResource": review.kind.to_lowercase(),
            "verbs": ["create"],
        }));
    }
    let mut metadata = json!({"creationTimestamp": null});
    if !group.is_empty() {
        metadata["name"] = json!(group);
    }
    json!({"metadata": metadata, "versions": [{"version": version, "resources": resources, "freshness": "Current"}]})
}

/// Aggregated discovery for `/api` (core only) or `/apis` (every group).
pub fn aggregated(core: bool, version: &str) -> Value {
    let items: Vec<Value> = if core {
        vec![aggregated_group("", "v1")]
    } else {
        named_groups()
            .map(|(g, v)| aggregated_group(g, v))
            .collect()
    };
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_accept_header_selects_v2() {
        let accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(aggregated_version(Some(accept)), Some("v2"));
        assert_eq!(aggregated_version(Some("application/json")), None);
    }

    #[test]
    fn resource_lists_cover_subresources() {
        let core = resource_list("", "v1").unwrap();
        let names: Vec<&str> = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        for want in [
            "pods",
            "pods/status",
            "pods/binding",
            "namespaces/finalize",
            "nodes/status",
            "configmaps",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        let apps = resource_list("apps", "v1").unwrap();
        let scale = apps["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "deployments/scale")
            .unwrap();
        assert_eq!(scale["group"], "autoscaling");
        assert!(resource_list("nope", "v1").is_none());
        let agg = aggregated(false, "v2");
        assert!(
            agg["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g["metadata"]["name"] == "apps")
        );
    }
}
