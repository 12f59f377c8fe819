//! The schema definitions, generated from the k8s-openapi types.
//!
//! schemars gives each type's schema with upstream's description, under
//! upstream's definition name, with refs that carry siblings wrapped in
//! `allOf` as upstream's v3 does. What it lacks is fixed here:
//!
//! - the Kubernetes extensions ([`super::extensions`]) and
//!   `x-kubernetes-group-version-kind`;
//! - the list kinds (`PodList`), which k8s-openapi models as a generic
//!   `List<T>` without a schema;
//! - k8s-openapi's own changes to upstream's `required` lists, undone;
//! - `IntOrString`, `Quantity` and `WatchEvent`, in upstream's shape.
//!
//! The result uses v3 refs (`#/components/schemas/`); [`super::v2`] rewrites
//! it for Swagger 2.0.

use std::collections::BTreeMap;

use k8s_openapi::api::{apps, autoscaling, batch, coordination, core, discovery, events};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use k8s_openapi::apimachinery::pkg::version::Info;
use schemars::JsonSchema;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Value, json};

use super::{extensions, text};
use crate::catalog::{self, ResourceInfo};

/// Definition name to schema, sorted by name.
pub(crate) type Definitions = BTreeMap<String, Value>;

/// Where v3 documents keep their schemas; the refs in [`Definitions`].
pub(crate) const V3_REFS: &str = "#/components/schemas/";

pub(super) const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1";
pub(super) const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
pub(super) const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
pub(super) const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";
pub(super) const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
pub(super) const SCALE: &str = "io.k8s.api.autoscaling.v1.Scale";
pub(super) const BINDING: &str = "io.k8s.api.core.v1.Binding";
pub(super) const API_RESOURCE_LIST: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList";
pub(super) const API_GROUP_LIST: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIGroupList";
pub(super) const API_GROUP: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIGroup";
pub(super) const API_VERSIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIVersions";
pub(super) const VERSION_INFO: &str = "io.k8s.apimachinery.pkg.version.Info";

type Root = (&'static str, fn(&mut SchemaGenerator));

fn add<T: JsonSchema>(generator: &mut SchemaGenerator) {
    generator.subschema_for::<T>();
}

/// The types definitions are generated from: every served resource, the
/// kinds of its subresources, and the meta types operations refer to. Each
/// pulls in the definitions it reaches.
const ROOTS: &[Root] = &[
    ("io.k8s.api.core.v1.Namespace", add::<core::v1::Namespace>),
    ("io.k8s.api.core.v1.Pod", add::<core::v1::Pod>),
    ("io.k8s.api.core.v1.Node", add::<core::v1::Node>),
    ("io.k8s.api.core.v1.Service", add::<core::v1::Service>),
    ("io.k8s.api.core.v1.Endpoints", add::<core::v1::Endpoints>),
    ("io.k8s.api.core.v1.ConfigMap", add::<core::v1::ConfigMap>),
    ("io.k8s.api.core.v1.Secret", add::<core::v1::Secret>),
    (
        "io.k8s.api.core.v1.ServiceAccount",
        add::<core::v1::ServiceAccount>,
    ),
    ("io.k8s.api.core.v1.Event", add::<core::v1::Event>),
    ("io.k8s.api.apps.v1.Deployment", add::<apps::v1::Deployment>),
    ("io.k8s.api.apps.v1.ReplicaSet", add::<apps::v1::ReplicaSet>),
    ("io.k8s.api.apps.v1.DaemonSet", add::<apps::v1::DaemonSet>),
    (
        "io.k8s.api.apps.v1.StatefulSet",
        add::<apps::v1::StatefulSet>,
    ),
    (
        "io.k8s.api.apps.v1.ControllerRevision",
        add::<apps::v1::ControllerRevision>,
    ),
    ("io.k8s.api.batch.v1.Job", add::<batch::v1::Job>),
    ("io.k8s.api.batch.v1.CronJob", add::<batch::v1::CronJob>),
    (
        "io.k8s.api.coordination.v1.Lease",
        add::<coordination::v1::Lease>,
    ),
    (
        "io.k8s.api.discovery.v1.EndpointSlice",
        add::<discovery::v1::EndpointSlice>,
    ),
    ("io.k8s.api.events.v1.Event", add::<events::v1::Event>),
    (BINDING, add::<core::v1::Binding>),
    (SCALE, add::<autoscaling::v1::Scale>),
    (STATUS, add::<meta::Status>),
    (DELETE_OPTIONS, add::<meta::DeleteOptions>),
    (WATCH_EVENT, add::<meta::WatchEvent<RawExtension>>),
    (PATCH, add::<meta::Patch>),
    (API_RESOURCE_LIST, add::<meta::APIResourceList>),
    (API_GROUP_LIST, add::<meta::APIGroupList>),
    (API_GROUP, add::<meta::APIGroup>),
    (API_VERSIONS, add::<meta::APIVersions>),
    (VERSION_INFO, add::<Info>),
];

/// The names of the root definitions, for tests.
#[cfg(test)]
pub(super) fn roots() -> impl Iterator<Item = &'static str> {
    ROOTS.iter().map(|(name, _)| *name)
}

/// Builds every definition the served resources reach, with upstream's
/// extensions. Deterministic: the same input gives the same map.
pub(crate) fn build() -> Definitions {
    let mut generator = SchemaSettings::openapi3().into_generator();
    for (_, add) in ROOTS {
        add(&mut generator);
    }
    let mut defs: Definitions = generator.take_definitions(true).into_iter().collect();
    undo_required_changes(&mut defs);
    upstream_shapes(&mut defs);
    add_lists(&mut defs);
    add_group_version_kinds(&mut defs);
    extensions::apply(&mut defs);
    defs
}

/// k8s-openapi changes some `required` lists of upstream's spec (its
/// `fixups`): `metadata` of every resource is made required, eight `name`
/// fields with a default are made required, and two required fields are
/// made optional. Upstream's documents do none of that; `kubectl explain`
/// shows `-required-` from these lists.
fn undo_required_changes(defs: &mut Definitions) {
    for schema in defs.values_mut() {
        let is_resource = ["apiVersion", "kind", "metadata"]
            .iter()
            .all(|f| schema.get("properties").and_then(|p| p.get(f)).is_some());
        if is_resource {
            remove_required(schema, "metadata");
        }
    }
    for name in [
        "ConfigMapEnvSource",
        "ConfigMapKeySelector",
        "ConfigMapProjection",
        "ConfigMapVolumeSource",
        "LocalObjectReference",
        "SecretEnvSource",
        "SecretKeySelector",
        "SecretProjection",
    ] {
        if let Some(schema) = defs.get_mut(&format!("io.k8s.api.core.v1.{name}")) {
            remove_required(schema, "name");
        }
    }
    for (definition, field) in [
        ("io.k8s.api.apps.v1.StatefulSetSpec", "serviceName"),
        ("io.k8s.api.events.v1.Event", "eventTime"),
    ] {
        if let Some(schema) = defs.get_mut(definition) {
            add_required(schema, field);
        }
    }
}

fn remove_required(schema: &mut Value, field: &str) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    if let Some(Value::Array(required)) = object.get_mut("required") {
        required.retain(|r| r != field);
        if required.is_empty() {
            object.remove("required");
        }
    }
}

fn add_required(schema: &mut Value, field: &str) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    let required = object.entry("required").or_insert_with(|| json!([]));
    if let Value::Array(required) = required
        && !required.iter().any(|r| r == field)
    {
        required.push(json!(field));
    }
}

/// The few types whose schema upstream writes differently from k8s-openapi.
fn upstream_shapes(defs: &mut Definitions) {
    // Upstream's v3 says what the value may be; v2 says `string` with a
    // format (see `super::v2`).
    if let Some(Value::Object(s)) = defs.get_mut("io.k8s.apimachinery.pkg.util.intstr.IntOrString")
    {
        s.remove("x-kubernetes-int-or-string");
        s.remove("type");
        s.insert("format".into(), json!("int-or-string"));
        s.insert(
            "oneOf".into(),
            json!([{"type": "integer"}, {"type": "string"}]),
        );
    }
    if let Some(Value::Object(s)) = defs.get_mut("io.k8s.apimachinery.pkg.api.resource.Quantity") {
        s.remove("type");
        s.remove("format");
        s.insert(
            "oneOf".into(),
            json!([{"type": "string"}, {"type": "number"}]),
        );
    }
    // k8s-openapi folds the description of `object` into the type's.
    if let Some(Value::Object(s)) = defs.get_mut(WATCH_EVENT) {
        let description = s.get("description").and_then(Value::as_str).unwrap_or("");
        if let Some((own, object)) = description.split_once("\n\nObject is:") {
            let own = own.to_string();
            let object = format!("Object is:{}", object.trim_end_matches('\n'));
            s.insert("description".into(), json!(own));
            if let Some(Value::Object(props)) = s.get_mut("properties") {
                props.insert(
                    "object".into(),
                    json!({
                        "allOf": [{"$ref": format!("{V3_REFS}io.k8s.apimachinery.pkg.runtime.RawExtension")}],
                        "description": object,
                    }),
                );
            }
        }
        s.insert("required".into(), json!(["type", "object"]));
    }
}

/// Adds `<Kind>List` for every served resource, shaped as upstream's.
fn add_lists(defs: &mut Definitions) {
    for (name, description, items) in text::LIST_DOCS {
        let Some(item) = name.strip_suffix("List") else {
            continue;
        };
        defs.insert(
            (*name).to_string(),
            json!({
                "description": description,
                "properties": {
                    "apiVersion": type_meta_field(defs, "apiVersion"),
                    "items": {
                        "description": items,
                        "items": {"$ref": format!("{V3_REFS}{item}")},
                        "type": "array",
                    },
                    "kind": type_meta_field(defs, "kind"),
                    "metadata": {
                        "allOf": [{"$ref": format!("{V3_REFS}{META}.ListMeta")}],
                        "description": text::LIST_METADATA,
                    },
                },
                "required": ["items"],
                "type": "object",
            }),
        );
    }
}

/// The `apiVersion` or `kind` property, as every resource has it.
fn type_meta_field(defs: &Definitions, field: &str) -> Value {
    defs.get("io.k8s.api.core.v1.Pod")
        .and_then(|pod| pod.get("properties"))
        .and_then(|props| props.get(field))
        .cloned()
        .unwrap_or_else(|| json!({"type": "string"}))
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "kind": kind, "version": version})
}

/// `x-kubernetes-group-version-kind` on every kind a client may send or
/// receive, as upstream lists them. `DeleteOptions` and `WatchEvent` are
/// registered in every group-version.
fn add_group_version_kinds(defs: &mut Definitions) {
    let mut kinds: Vec<(&str, Value)> = Vec::new();
    for r in catalog::RESOURCES {
        kinds.push((r.definition, json!([gvk(r.group, r.version, r.kind)])));
    }
    let lists: Vec<(String, Value)> = catalog::RESOURCES
        .iter()
        .map(|r| {
            (
                format!("{}List", r.definition),
                json!([gvk(r.group, r.version, &r.list_kind())]),
            )
        })
        .collect();
    let everywhere = |kind: &str| -> Value {
        Value::Array(
            group_versions()
                .iter()
                .map(|(g, v)| gvk(g, v, kind))
                .collect(),
        )
    };
    kinds.push((BINDING, json!([gvk("", "v1", "Binding")])));
    kinds.push((SCALE, json!([gvk("autoscaling", "v1", "Scale")])));
    kinds.push((STATUS, json!([gvk("", "v1", "Status")])));
    kinds.push((API_RESOURCE_LIST, json!([gvk("", "v1", "APIResourceList")])));
    kinds.push((API_GROUP_LIST, json!([gvk("", "v1", "APIGroupList")])));
    kinds.push((API_GROUP, json!([gvk("", "v1", "APIGroup")])));
    kinds.push((API_VERSIONS, json!([gvk("", "v1", "APIVersions")])));
    kinds.push((DELETE_OPTIONS, everywhere("DeleteOptions")));
    kinds.push((WATCH_EVENT, everywhere("WatchEvent")));
    let lists = lists.iter().map(|(name, v)| (name.as_str(), v.clone()));
    for (name, value) in kinds.into_iter().chain(lists) {
        if let Some(Value::Object(s)) = defs.get_mut(name) {
            s.insert("x-kubernetes-group-version-kind".into(), value);
        }
    }
}

/// Every served group-version, the core group first, then by group name.
pub(super) fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&'static str, &'static str)> = Vec::new();
    for r in catalog::RESOURCES {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out.sort_by_key(|(g, v)| (!g.is_empty(), *g, *v));
    out
}

/// The resources of one group-version, in catalogue order.
pub(super) fn resources_of(group: &str, version: &str) -> Vec<&'static ResourceInfo> {
    catalog::RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect()
}

/// Every definition name `value` refers to (`$ref`), directly.
pub(super) fn refs_in<'a>(value: &'a Value, prefix: &str, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    if let Some(name) = v.as_str().and_then(|s| s.strip_prefix(prefix)) {
                        out.push(name);
                    }
                } else {
                    refs_in(v, prefix, out);
                }
            }
        }
        Value::Array(items) => {
            for v in items {
                refs_in(v, prefix, out);
            }
        }
        _ => {}
    }
}

/// The definitions reachable from `start` (by name), including them.
pub(super) fn closure<'a, 's>(
    defs: &'a Definitions,
    start: impl IntoIterator<Item = &'s str>,
) -> std::collections::BTreeSet<&'a str> {
    let mut seen = std::collections::BTreeSet::new();
    let mut todo: Vec<&'a str> = start
        .into_iter()
        .filter_map(|name| defs.get_key_value(name).map(|(k, _)| k.as_str()))
        .collect();
    while let Some(name) = todo.pop() {
        let Some((key, schema)) = defs.get_key_value(name) else {
            continue;
        };
        if !seen.insert(key.as_str()) {
            continue;
        }
        refs_in(schema, V3_REFS, &mut todo);
    }
    seen
}
