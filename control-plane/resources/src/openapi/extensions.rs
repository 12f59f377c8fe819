//! The Kubernetes extensions the k8s-openapi schemas lack, as explicit tables.
//!
//! Upstream's OpenAPI carries `x-kubernetes-patch-strategy`,
//! `x-kubernetes-patch-merge-key`, `x-kubernetes-list-type`,
//! `x-kubernetes-list-map-keys` and `x-kubernetes-map-type` on the fields
//! (and, for map types, the definitions) whose Go types say so. The
//! k8s-openapi schemas drop them, so they are listed here.
//!
//! The tables were compiled from the struct tags (`patchStrategy`,
//! `patchMergeKey`) and the `+listType`, `+listMapKey`, `+mapType`,
//! `+structType` and comment-form `+patchStrategy`/`+patchMergeKey` markers in
//! `k8s.io/api` and `k8s.io/apimachinery` v0.32.0 (`types.go`, with inline
//! embedded structs flattened), restricted to the definitions the served
//! resources reach. A test checks that every entry names a definition and a
//! property of the generated schema, so a typo or a type that drops a field
//! fails the build's tests. One marker is left out: `Status.details` carries
//! `+listType=atomic` but is an object, and upstream's generator only writes
//! list types on lists.

use serde_json::{Value, json};

use super::definitions::Definitions;

/// A field's strategic merge patch metadata.
#[derive(Clone, Copy, Debug)]
pub(super) struct Patch {
    pub definition: &'static str,
    pub field: &'static str,
    /// `merge`, `retainKeys` or `merge,retainKeys`.
    pub strategy: &'static str,
    pub merge_key: Option<&'static str>,
}

/// A list field's `x-kubernetes-list-type` and `x-kubernetes-list-map-keys`.
#[derive(Clone, Copy, Debug)]
pub(super) struct List {
    pub definition: &'static str,
    pub field: &'static str,
    /// `atomic`, `set` or `map`.
    pub list_type: &'static str,
    pub map_keys: &'static [&'static str],
}

/// An `x-kubernetes-map-type`, on a field or, with an empty `field`, on the
/// definition itself (`+structType=atomic`).
#[derive(Clone, Copy, Debug)]
pub(super) struct Map {
    pub definition: &'static str,
    pub field: &'static str,
    pub map_type: &'static str,
}

const fn p(
    definition: &'static str,
    field: &'static str,
    strategy: &'static str,
    merge_key: Option<&'static str>,
) -> Patch {
    Patch {
        definition,
        field,
        strategy,
        merge_key,
    }
}

const fn l(
    definition: &'static str,
    field: &'static str,
    list_type: &'static str,
    map_keys: &'static [&'static str],
) -> List {
    List {
        definition,
        field,
        list_type,
        map_keys,
    }
}

const fn m(definition: &'static str, field: &'static str, map_type: &'static str) -> Map {
    Map {
        definition,
        field,
        map_type,
    }
}

/// Adds every table entry to `defs`. Entries whose definition or field is
/// missing are skipped here; the tests make sure there are none.
pub(super) fn apply(defs: &mut Definitions) {
    for e in PATCH {
        if let Some(field) = field_mut(defs, e.definition, e.field) {
            field.insert("x-kubernetes-patch-strategy".into(), json!(e.strategy));
            if let Some(key) = e.merge_key {
                field.insert("x-kubernetes-patch-merge-key".into(), json!(key));
            }
        }
    }
    for e in LISTS {
        if let Some(field) = field_mut(defs, e.definition, e.field) {
            field.insert("x-kubernetes-list-type".into(), json!(e.list_type));
            if !e.map_keys.is_empty() {
                field.insert("x-kubernetes-list-map-keys".into(), json!(e.map_keys));
            }
        }
    }
    for e in MAPS {
        let target = if e.field.is_empty() {
            defs.get_mut(e.definition).and_then(Value::as_object_mut)
        } else {
            field_mut(defs, e.definition, e.field)
        };
        if let Some(target) = target {
            target.insert("x-kubernetes-map-type".into(), json!(e.map_type));
        }
    }
}

fn field_mut<'a>(
    defs: &'a mut Definitions,
    definition: &str,
    field: &str,
) -> Option<&'a mut serde_json::Map<String, Value>> {
    defs.get_mut(definition)?
        .get_mut("properties")?
        .get_mut(field)?
        .as_object_mut()
}

/// `x-kubernetes-patch-strategy` and `x-kubernetes-patch-merge-key`.
pub(super) const PATCH: &[Patch] = &[
    p(
        "io.k8s.api.apps.v1.DaemonSetStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    p(
        "io.k8s.api.apps.v1.DeploymentSpec",
        "strategy",
        "retainKeys",
        None,
    ),
    p(
        "io.k8s.api.apps.v1.DeploymentStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    p(
        "io.k8s.api.apps.v1.ReplicaSetStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    p(
        "io.k8s.api.apps.v1.StatefulSetStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    p(
        "io.k8s.api.batch.v1.JobStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    p("io.k8s.api.core.v1.Container", "env", "merge", Some("name")),
    p(
        "io.k8s.api.core.v1.Container",
        "ports",
        "merge",
        Some("containerPort"),
    ),
    p(
        "io.k8s.api.core.v1.Container",
        "volumeDevices",
        "merge",
        Some("devicePath"),
    ),
    p(
        "io.k8s.api.core.v1.Container",
        "volumeMounts",
        "merge",
        Some("mountPath"),
    ),
    p(
        "io.k8s.api.core.v1.ContainerStatus",
        "allocatedResourcesStatus",
        "merge",
        Some("name"),
    ),
    p(
        "io.k8s.api.core.v1.ContainerStatus",
        "volumeMounts",
        "merge",
        Some("mountPath"),
    ),
    p(
        "io.k8s.api.core.v1.EphemeralContainer",
        "env",
        "merge",
        Some("name"),
    ),
    p(
        "io.k8s.api.core.v1.EphemeralContainer",
        "ports",
        "merge",
        Some("containerPort"),
    ),
    p(
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeDevices",
        "merge",
        Some("devicePath"),
    ),
    p(
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeMounts",
        "merge",
        Some("mountPath"),
    ),
    p(
        "io.k8s.api.core.v1.NamespaceStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    p("io.k8s.api.core.v1.NodeSpec", "podCIDRs", "merge", None),
    p(
        "io.k8s.api.core.v1.NodeStatus",
        "addresses",
        "merge",
        Some("type"),
    ),
    p(
        "io.k8s.api.core.v1.NodeStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    p(
        "io.k8s.api.core.v1.PersistentVolumeClaimStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    p(
        "io.k8s.api.core.v1.PodSpec",
        "containers",
        "merge",
        Some("name"),
    ),
    p(
        "io.k8s.api.core.v1.PodSpec",
        "ephemeralContainers",
        "merge",
        Some("name"),
    ),
    p(
        "io.k8s.api.core.v1.PodSpec",
        "hostAliases",
        "merge",
        Some("ip"),
    ),
    p(
        "io.k8s.api.core.v1.PodSpec",
        "imagePullSecrets",
        "merge",
        Some("name"),
    ),
    p(
        "io.k8s.api.core.v1.PodSpec",
        "initContainers",
        "merge",
        Some("name"),
    ),
    p(
        "io.k8s.api.core.v1.PodSpec",
        "resourceClaims",
        "merge,retainKeys",
        Some("name"),
    ),
    p(
        "io.k8s.api.core.v1.PodSpec",
        "schedulingGates",
        "merge",
        Some("name"),
    ),
    p(
        "io.k8s.api.core.v1.PodSpec",
        "topologySpreadConstraints",
        "merge",
        Some("topologyKey"),
    ),
    p(
        "io.k8s.api.core.v1.PodSpec",
        "volumes",
        "merge,retainKeys",
        Some("name"),
    ),
    p(
        "io.k8s.api.core.v1.PodStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    p(
        "io.k8s.api.core.v1.PodStatus",
        "hostIPs",
        "merge",
        Some("ip"),
    ),
    p(
        "io.k8s.api.core.v1.PodStatus",
        "podIPs",
        "merge",
        Some("ip"),
    ),
    p(
        "io.k8s.api.core.v1.PodStatus",
        "resourceClaimStatuses",
        "merge,retainKeys",
        Some("name"),
    ),
    p(
        "io.k8s.api.core.v1.ServiceAccount",
        "secrets",
        "merge",
        Some("name"),
    ),
    p(
        "io.k8s.api.core.v1.ServiceSpec",
        "ports",
        "merge",
        Some("port"),
    ),
    p(
        "io.k8s.api.core.v1.ServiceStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    p(
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "finalizers",
        "merge",
        None,
    ),
    p(
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "ownerReferences",
        "merge",
        Some("uid"),
    ),
];

/// `x-kubernetes-list-type` and `x-kubernetes-list-map-keys`.
pub(super) const LISTS: &[List] = &[
    l(
        "io.k8s.api.apps.v1.DaemonSetStatus",
        "conditions",
        "map",
        &["type"],
    ),
    l(
        "io.k8s.api.apps.v1.DeploymentStatus",
        "conditions",
        "map",
        &["type"],
    ),
    l(
        "io.k8s.api.apps.v1.ReplicaSetStatus",
        "conditions",
        "map",
        &["type"],
    ),
    l(
        "io.k8s.api.apps.v1.StatefulSetSpec",
        "volumeClaimTemplates",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.apps.v1.StatefulSetStatus",
        "conditions",
        "map",
        &["type"],
    ),
    l("io.k8s.api.batch.v1.CronJobStatus", "active", "atomic", &[]),
    l("io.k8s.api.batch.v1.JobStatus", "conditions", "atomic", &[]),
    l(
        "io.k8s.api.batch.v1.PodFailurePolicy",
        "rules",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.batch.v1.PodFailurePolicyOnExitCodesRequirement",
        "values",
        "set",
        &[],
    ),
    l(
        "io.k8s.api.batch.v1.PodFailurePolicyRule",
        "onPodConditions",
        "atomic",
        &[],
    ),
    l("io.k8s.api.batch.v1.SuccessPolicy", "rules", "atomic", &[]),
    l(
        "io.k8s.api.batch.v1.UncountedTerminatedPods",
        "failed",
        "set",
        &[],
    ),
    l(
        "io.k8s.api.batch.v1.UncountedTerminatedPods",
        "succeeded",
        "set",
        &[],
    ),
    l("io.k8s.api.core.v1.Capabilities", "add", "atomic", &[]),
    l("io.k8s.api.core.v1.Capabilities", "drop", "atomic", &[]),
    l(
        "io.k8s.api.core.v1.CephFSVolumeSource",
        "monitors",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.core.v1.ConfigMapProjection",
        "items",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.core.v1.ConfigMapVolumeSource",
        "items",
        "atomic",
        &[],
    ),
    l("io.k8s.api.core.v1.Container", "args", "atomic", &[]),
    l("io.k8s.api.core.v1.Container", "command", "atomic", &[]),
    l("io.k8s.api.core.v1.Container", "env", "map", &["name"]),
    l("io.k8s.api.core.v1.Container", "envFrom", "atomic", &[]),
    l(
        "io.k8s.api.core.v1.Container",
        "ports",
        "map",
        &["containerPort", "protocol"],
    ),
    l(
        "io.k8s.api.core.v1.Container",
        "resizePolicy",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.core.v1.Container",
        "volumeDevices",
        "map",
        &["devicePath"],
    ),
    l(
        "io.k8s.api.core.v1.Container",
        "volumeMounts",
        "map",
        &["mountPath"],
    ),
    l("io.k8s.api.core.v1.ContainerImage", "names", "atomic", &[]),
    l(
        "io.k8s.api.core.v1.ContainerStatus",
        "allocatedResourcesStatus",
        "map",
        &["name"],
    ),
    l(
        "io.k8s.api.core.v1.ContainerStatus",
        "volumeMounts",
        "map",
        &["mountPath"],
    ),
    l(
        "io.k8s.api.core.v1.DownwardAPIProjection",
        "items",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.core.v1.DownwardAPIVolumeSource",
        "items",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.core.v1.EndpointSubset",
        "addresses",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.core.v1.EndpointSubset",
        "notReadyAddresses",
        "atomic",
        &[],
    ),
    l("io.k8s.api.core.v1.EndpointSubset", "ports", "atomic", &[]),
    l("io.k8s.api.core.v1.Endpoints", "subsets", "atomic", &[]),
    l(
        "io.k8s.api.core.v1.EphemeralContainer",
        "args",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.core.v1.EphemeralContainer",
        "command",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.core.v1.EphemeralContainer",
        "env",
        "map",
        &["name"],
    ),
    l(
        "io.k8s.api.core.v1.EphemeralContainer",
        "envFrom",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.core.v1.EphemeralContainer",
        "ports",
        "map",
        &["containerPort", "protocol"],
    ),
    l(
        "io.k8s.api.core.v1.EphemeralContainer",
        "resizePolicy",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeDevices",
        "map",
        &["devicePath"],
    ),
    l(
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeMounts",
        "map",
        &["mountPath"],
    ),
    l("io.k8s.api.core.v1.ExecAction", "command", "atomic", &[]),
    l(
        "io.k8s.api.core.v1.FCVolumeSource",
        "targetWWNs",
        "atomic",
        &[],
    ),
    l("io.k8s.api.core.v1.FCVolumeSource", "wwids", "atomic", &[]),
    l(
        "io.k8s.api.core.v1.HTTPGetAction",
        "httpHeaders",
        "atomic",
        &[],
    ),
    l("io.k8s.api.core.v1.HostAlias", "hostnames", "atomic", &[]),
    l(
        "io.k8s.api.core.v1.ISCSIVolumeSource",
        "portals",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.core.v1.LinuxContainerUser",
        "supplementalGroups",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.core.v1.LoadBalancerIngress",
        "ports",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.core.v1.LoadBalancerStatus",
        "ingress",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.core.v1.NamespaceSpec",
        "finalizers",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.core.v1.NamespaceStatus",
        "conditions",
        "map",
        &["type"],
    ),
    l(
        "io.k8s.api.core.v1.NodeAffinity",
        "preferredDuringSchedulingIgnoredDuringExecution",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.core.v1.NodeSelector",
        "nodeSelectorTerms",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.core.v1.NodeSelectorRequirement",
        "values",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.core.v1.NodeSelectorTerm",
        "matchExpressions",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.core.v1.NodeSelectorTerm",
        "matchFields",
        "atomic",
        &[],
    ),
    l("io.k8s.api.core.v1.NodeSpec", "podCIDRs", "set", &[]),
    l("io.k8s.api.core.v1.NodeSpec", "taints", "atomic", &[]),
    l(
        "io.k8s.api.core.v1.NodeStatus",
        "addresses",
        "map",
        &["type"],
    ),
    l(
        "io.k8s.api.core.v1.NodeStatus",
        "conditions",
        "map",
        &["type"],
    ),
    l("io.k8s.api.core.v1.NodeStatus", "images", "atomic", &[]),
    l(
        "io.k8s.api.core.v1.NodeStatus",
        "runtimeHandlers",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.core.v1.NodeStatus",
        "volumesAttached",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.core.v1.NodeStatus",
        "volumesInUse",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.core.v1.PersistentVolumeClaimSpec",
        "accessModes",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.core.v1.PersistentVolumeClaimStatus",
        "accessModes",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.core.v1.PersistentVolumeClaimStatus",
        "conditions",
        "map",
        &["type"],
    ),
    l(
        "io.k8s.api.core.v1.PodAffinity",
        "preferredDuringSchedulingIgnoredDuringExecution",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.core.v1.PodAffinity",
        "requiredDuringSchedulingIgnoredDuringExecution",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.core.v1.PodAffinityTerm",
        "matchLabelKeys",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.core.v1.PodAffinityTerm",
        "mismatchLabelKeys",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.core.v1.PodAffinityTerm",
        "namespaces",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.core.v1.PodAntiAffinity",
        "preferredDuringSchedulingIgnoredDuringExecution",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.core.v1.PodAntiAffinity",
        "requiredDuringSchedulingIgnoredDuringExecution",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.core.v1.PodDNSConfig",
        "nameservers",
        "atomic",
        &[],
    ),
    l("io.k8s.api.core.v1.PodDNSConfig", "options", "atomic", &[]),
    l("io.k8s.api.core.v1.PodDNSConfig", "searches", "atomic", &[]),
    l(
        "io.k8s.api.core.v1.PodSecurityContext",
        "supplementalGroups",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.core.v1.PodSecurityContext",
        "sysctls",
        "atomic",
        &[],
    ),
    l("io.k8s.api.core.v1.PodSpec", "containers", "map", &["name"]),
    l(
        "io.k8s.api.core.v1.PodSpec",
        "ephemeralContainers",
        "map",
        &["name"],
    ),
    l("io.k8s.api.core.v1.PodSpec", "hostAliases", "map", &["ip"]),
    l(
        "io.k8s.api.core.v1.PodSpec",
        "imagePullSecrets",
        "map",
        &["name"],
    ),
    l(
        "io.k8s.api.core.v1.PodSpec",
        "initContainers",
        "map",
        &["name"],
    ),
    l(
        "io.k8s.api.core.v1.PodSpec",
        "readinessGates",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.core.v1.PodSpec",
        "resourceClaims",
        "map",
        &["name"],
    ),
    l(
        "io.k8s.api.core.v1.PodSpec",
        "schedulingGates",
        "map",
        &["name"],
    ),
    l("io.k8s.api.core.v1.PodSpec", "tolerations", "atomic", &[]),
    l(
        "io.k8s.api.core.v1.PodSpec",
        "topologySpreadConstraints",
        "map",
        &["topologyKey", "whenUnsatisfiable"],
    ),
    l("io.k8s.api.core.v1.PodSpec", "volumes", "map", &["name"]),
    l(
        "io.k8s.api.core.v1.PodStatus",
        "conditions",
        "map",
        &["type"],
    ),
    l(
        "io.k8s.api.core.v1.PodStatus",
        "containerStatuses",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.core.v1.PodStatus",
        "ephemeralContainerStatuses",
        "atomic",
        &[],
    ),
    l("io.k8s.api.core.v1.PodStatus", "hostIPs", "atomic", &[]),
    l(
        "io.k8s.api.core.v1.PodStatus",
        "initContainerStatuses",
        "atomic",
        &[],
    ),
    l("io.k8s.api.core.v1.PodStatus", "podIPs", "map", &["ip"]),
    l(
        "io.k8s.api.core.v1.PodStatus",
        "resourceClaimStatuses",
        "map",
        &["name"],
    ),
    l(
        "io.k8s.api.core.v1.ProjectedVolumeSource",
        "sources",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.core.v1.RBDVolumeSource",
        "monitors",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.core.v1.ResourceRequirements",
        "claims",
        "map",
        &["name"],
    ),
    l(
        "io.k8s.api.core.v1.ResourceStatus",
        "resources",
        "map",
        &["resourceID"],
    ),
    l(
        "io.k8s.api.core.v1.SecretProjection",
        "items",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.core.v1.SecretVolumeSource",
        "items",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.core.v1.ServiceAccount",
        "imagePullSecrets",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.core.v1.ServiceAccount",
        "secrets",
        "map",
        &["name"],
    ),
    l(
        "io.k8s.api.core.v1.ServiceSpec",
        "clusterIPs",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.core.v1.ServiceSpec",
        "externalIPs",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.core.v1.ServiceSpec",
        "ipFamilies",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.core.v1.ServiceSpec",
        "loadBalancerSourceRanges",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.core.v1.ServiceSpec",
        "ports",
        "map",
        &["port", "protocol"],
    ),
    l(
        "io.k8s.api.core.v1.ServiceStatus",
        "conditions",
        "map",
        &["type"],
    ),
    l(
        "io.k8s.api.core.v1.TopologySpreadConstraint",
        "matchLabelKeys",
        "atomic",
        &[],
    ),
    l("io.k8s.api.discovery.v1.Endpoint", "addresses", "set", &[]),
    l(
        "io.k8s.api.discovery.v1.EndpointHints",
        "forZones",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.discovery.v1.EndpointSlice",
        "endpoints",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.api.discovery.v1.EndpointSlice",
        "ports",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.apimachinery.pkg.apis.meta.v1.APIGroup",
        "serverAddressByClientCIDRs",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.apimachinery.pkg.apis.meta.v1.APIGroup",
        "versions",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.apimachinery.pkg.apis.meta.v1.APIGroupList",
        "groups",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.apimachinery.pkg.apis.meta.v1.APIResource",
        "categories",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.apimachinery.pkg.apis.meta.v1.APIResource",
        "shortNames",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList",
        "resources",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.apimachinery.pkg.apis.meta.v1.APIVersions",
        "serverAddressByClientCIDRs",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.apimachinery.pkg.apis.meta.v1.APIVersions",
        "versions",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
        "dryRun",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector",
        "matchExpressions",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelectorRequirement",
        "values",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "finalizers",
        "set",
        &[],
    ),
    l(
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "managedFields",
        "atomic",
        &[],
    ),
    l(
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "ownerReferences",
        "map",
        &["uid"],
    ),
    l(
        "io.k8s.apimachinery.pkg.apis.meta.v1.StatusDetails",
        "causes",
        "atomic",
        &[],
    ),
];

/// `x-kubernetes-map-type`; an empty field means the definition itself.
pub(super) const MAPS: &[Map] = &[
    m("io.k8s.api.core.v1.ConfigMapKeySelector", "", "atomic"),
    m("io.k8s.api.core.v1.EndpointAddress", "", "atomic"),
    m("io.k8s.api.core.v1.EndpointPort", "", "atomic"),
    m("io.k8s.api.core.v1.LocalObjectReference", "", "atomic"),
    m("io.k8s.api.core.v1.NodeSelector", "", "atomic"),
    m("io.k8s.api.core.v1.NodeSelectorTerm", "", "atomic"),
    m("io.k8s.api.core.v1.ObjectFieldSelector", "", "atomic"),
    m("io.k8s.api.core.v1.ObjectReference", "", "atomic"),
    m(
        "io.k8s.api.core.v1.PersistentVolumeClaimStatus",
        "allocatedResourceStatuses",
        "granular",
    ),
    m("io.k8s.api.core.v1.PodSpec", "nodeSelector", "atomic"),
    m("io.k8s.api.core.v1.ResourceFieldSelector", "", "atomic"),
    m("io.k8s.api.core.v1.SecretKeySelector", "", "atomic"),
    m("io.k8s.api.core.v1.ServiceSpec", "selector", "atomic"),
    m("io.k8s.api.core.v1.TypedLocalObjectReference", "", "atomic"),
    m("io.k8s.api.discovery.v1.EndpointPort", "", "atomic"),
    m(
        "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector",
        "",
        "atomic",
    ),
    m(
        "io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference",
        "",
        "atomic",
    ),
];
