//! The catalogue of built-in resources.
//!
//! One [`ResourceInfo`] per served resource. Order matters only for
//! discovery output, which lists groups and resources in this order.

/// A subresource of a resource, served at `/<resource>/<name>/<sub>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subresource {
    /// `status`: get, update and patch of `.status` only.
    Status,
    /// `scale`: an `autoscaling/v1` `Scale` view of `.spec.replicas`.
    Scale,
    /// `binding`: pods only; create a `Binding` to set `spec.nodeName`.
    Binding,
    /// `log`, `exec`, `attach`, `portforward`: pods; answered once agents
    /// exist.
    Log,
    Exec,
    Attach,
    PortForward,
}

impl Subresource {
    /// The path segment and discovery name.
    pub fn name(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Binding => "binding",
            Subresource::Log => "log",
            Subresource::Exec => "exec",
            Subresource::Attach => "attach",
            Subresource::PortForward => "portforward",
        }
    }
}

/// One served resource.
#[derive(Clone, Copy, Debug)]
pub struct ResourceInfo {
    /// API group; empty for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// The resource name in URLs: `pods`.
    pub plural: &'static str,
    pub singular: &'static str,
    pub short_names: &'static [&'static str],
    /// Discovery categories, e.g. `all` for `kubectl get all`.
    pub categories: &'static [&'static str],
    pub namespaced: bool,
    pub subresources: &'static [Subresource],
    /// The OpenAPI definition name, e.g. `io.k8s.api.core.v1.Pod`.
    pub definition: &'static str,
    /// Where objects live in the datastore, under `/registry/`. Two
    /// resources sharing a storage name are two views of one set of objects
    /// (core and events.k8s.io Events).
    pub storage: &'static str,
    /// Whether writes to the spec bump `metadata.generation`.
    pub generation: bool,
}

impl ResourceInfo {
    /// `v1` or `apps/v1`.
    pub fn group_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `pods` or `deployments.apps`, as upstream names a group-resource in
    /// messages.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The verbs of the main resource, as discovery lists them.
    pub fn verbs(&self) -> &'static [&'static str] {
        &[
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
    }

    pub fn has(&self, sub: Subresource) -> bool {
        self.subresources.contains(&sub)
    }

    /// The list kind: `PodList`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }
}

use Subresource::*;

const ALL: &[&str] = &["all"];
const NONE: &[&str] = &[];

/// Every resource kedge serves.
pub static RESOURCES: &[ResourceInfo] = &[
    // core/v1
    r(
        "",
        "v1",
        "Namespace",
        "namespaces",
        &["ns"],
        NONE,
        false,
        &[Status],
        "io.k8s.api.core.v1.Namespace",
        "namespaces",
        false,
    ),
    r(
        "",
        "v1",
        "Pod",
        "pods",
        &["po"],
        ALL,
        true,
        &[Status, Binding, Log, Exec, Attach, PortForward],
        "io.k8s.api.core.v1.Pod",
        "pods",
        false,
    ),
    r(
        "",
        "v1",
        "Node",
        "nodes",
        &["no"],
        NONE,
        false,
        &[Status],
        "io.k8s.api.core.v1.Node",
        "minions",
        false,
    ),
    r(
        "",
        "v1",
        "Service",
        "services",
        &["svc"],
        ALL,
        true,
        &[Status],
        "io.k8s.api.core.v1.Service",
        "services/specs",
        false,
    ),
    r(
        "",
        "v1",
        "Endpoints",
        "endpoints",
        &["ep"],
        NONE,
        true,
        &[],
        "io.k8s.api.core.v1.Endpoints",
        "services/endpoints",
        false,
    ),
    r(
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        &["cm"],
        NONE,
        true,
        &[],
        "io.k8s.api.core.v1.ConfigMap",
        "configmaps",
        false,
    ),
    r(
        "",
        "v1",
        "Secret",
        "secrets",
        NONE,
        NONE,
        true,
        &[],
        "io.k8s.api.core.v1.Secret",
        "secrets",
        false,
    ),
    r(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        &["sa"],
        NONE,
        true,
        &[],
        "io.k8s.api.core.v1.ServiceAccount",
        "serviceaccounts",
        false,
    ),
    r(
        "",
        "v1",
        "Event",
        "events",
        &["ev"],
        NONE,
        true,
        &[],
        "io.k8s.api.core.v1.Event",
        "events",
        false,
    ),
    // apps/v1
    r(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        &["deploy"],
        ALL,
        true,
        &[Status, Scale],
        "io.k8s.api.apps.v1.Deployment",
        "deployments",
        true,
    ),
    r(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        &["rs"],
        ALL,
        true,
        &[Status, Scale],
        "io.k8s.api.apps.v1.ReplicaSet",
        "replicasets",
        true,
    ),
    r(
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        &["ds"],
        ALL,
        true,
        &[Status],
        "io.k8s.api.apps.v1.DaemonSet",
        "daemonsets",
        true,
    ),
    r(
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        &["sts"],
        ALL,
        true,
        &[Status, Scale],
        "io.k8s.api.apps.v1.StatefulSet",
        "statefulsets",
        true,
    ),
    r(
        "apps",
        "v1",
        "ControllerRevision",
        "controllerrevisions",
        NONE,
        NONE,
        true,
        &[],
        "io.k8s.api.apps.v1.ControllerRevision",
        "controllerrevisions",
        false,
    ),
    // batch/v1
    r(
        "batch",
        "v1",
        "Job",
        "jobs",
        NONE,
        ALL,
        true,
        &[Status],
        "io.k8s.api.batch.v1.Job",
        "jobs",
        true,
    ),
    r(
        "batch",
        "v1",
        "CronJob",
        "cronjobs",
        &["cj"],
        ALL,
        true,
        &[Status],
        "io.k8s.api.batch.v1.CronJob",
        "cronjobs",
        true,
    ),
    // coordination.k8s.io/v1
    r(
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        NONE,
        NONE,
        true,
        &[],
        "io.k8s.api.coordination.v1.Lease",
        "leases",
        false,
    ),
    // discovery.k8s.io/v1
    r(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        NONE,
        NONE,
        true,
        &[],
        "io.k8s.api.discovery.v1.EndpointSlice",
        "endpointslices",
        false,
    ),
    // events.k8s.io/v1: the same objects as core/v1 events, another view
    r(
        "events.k8s.io",
        "v1",
        "Event",
        "events",
        &["ev"],
        NONE,
        true,
        &[],
        "io.k8s.api.events.v1.Event",
        "events",
        false,
    ),
];

#[allow(clippy::too_many_arguments)]
const fn r(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    namespaced: bool,
    subresources: &'static [Subresource],
    definition: &'static str,
    storage: &'static str,
    generation: bool,
) -> ResourceInfo {
    ResourceInfo {
        group,
        version,
        kind,
        plural,
        singular: "",
        short_names,
        categories,
        namespaced,
        subresources,
        definition,
        storage,
        generation,
    }
}

/// The resource served at `group`/`version`/`plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource of `kind` in `group`/`version`.
pub fn find_kind(group: &str, version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind)
}

/// The groups served, in discovery order, each with its one version.
/// The core group (`""`) comes first.
pub fn groups() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&'static str, &'static str)> = Vec::new();
    for r in RESOURCES {
        if !out.iter().any(|(g, _)| *g == r.group) {
            out.push((r.group, r.version));
        }
    }
    out
}

/// The singular name discovery reports: the kind, lowercased.
pub fn singular(info: &ResourceInfo) -> String {
    if info.singular.is_empty() {
        info.kind.to_lowercase()
    } else {
        info.singular.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_resource_is_unique_and_findable() {
        for r in RESOURCES {
            assert_eq!(find(r.group, r.version, r.plural).unwrap().kind, r.kind);
            assert!(r.definition.ends_with(r.kind), "{}", r.definition);
        }
        assert_eq!(groups()[0], ("", "v1"));
    }
}
