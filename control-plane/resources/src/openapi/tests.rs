use std::collections::BTreeSet;

use kedge_apimachinery::schema::PatchSchema;
use serde_json::{Value, json};

use super::definitions::{self, V3_REFS};
use super::extensions::{LISTS, MAPS, PATCH};
use super::*;
use crate::catalog::RESOURCES;

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "version": version, "kind": kind})
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// Every `$ref` under `value`, with where it was found.
fn all_refs(value: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let here = format!("{at}/{k}");
                if k == "$ref" {
                    out.push((here, v.as_str().unwrap_or("<not a string>").to_string()));
                } else {
                    all_refs(v, &here, out);
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                all_refs(v, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// Checks that every `$ref` in `doc` is a local JSON pointer that resolves.
fn check_refs(doc: &Value) -> usize {
    let mut refs = Vec::new();
    all_refs(doc, "", &mut refs);
    assert!(!refs.is_empty());
    for (at, r) in &refs {
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{at}: ref {r} is not local"));
        // Definition names have no `/` or `~`, so the pointer is the path.
        assert!(
            doc.pointer(pointer).is_some(),
            "{at}: ref {r} does not resolve"
        );
    }
    refs.len()
}

fn gvks(schema: &Value) -> Vec<Value> {
    schema
        .get("x-kubernetes-group-version-kind")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

#[test]
fn every_resource_has_a_root_type() {
    let roots: BTreeSet<&str> = definitions::roots().collect();
    for r in RESOURCES {
        assert!(
            roots.contains(r.definition),
            "{} has no root type",
            r.definition
        );
    }
}

#[test]
fn v2_has_every_resource_and_list_with_its_kind() {
    let doc = v2();
    assert_eq!(doc["swagger"], "2.0");
    assert_eq!(
        doc["info"],
        json!({"title": "Kubernetes", "version": "v1.32.0"})
    );
    let defs = &doc["definitions"];
    for r in RESOURCES {
        let object = &defs[r.definition];
        assert_eq!(
            gvks(object),
            vec![gvk(r.group, r.version, r.kind)],
            "{}",
            r.definition
        );
        let list = &defs[format!("{}List", r.definition)];
        assert_eq!(
            gvks(list),
            vec![gvk(r.group, r.version, &r.list_kind())],
            "{}List",
            r.definition
        );
        assert_eq!(
            list["properties"]["items"]["items"]["$ref"],
            format!("#/definitions/{}", r.definition)
        );
        assert_eq!(list["required"], json!(["items"]));
        // k8s-openapi's required metadata is undone.
        assert!(
            !object["required"]
                .as_array()
                .is_some_and(|req| req.contains(&json!("metadata"))),
            "{}",
            r.definition
        );
    }
    let delete_options = gvks(&defs["io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"]);
    assert!(delete_options.contains(&gvk("", "v1", "DeleteOptions")));
    assert!(delete_options.contains(&gvk("apps", "v1", "DeleteOptions")));
    assert_eq!(
        gvks(&defs["io.k8s.apimachinery.pkg.apis.meta.v1.Status"]),
        vec![gvk("", "v1", "Status")]
    );
}

#[test]
fn v2_refs_resolve() {
    let doc = v2();
    let n = check_refs(doc);
    assert!(n > 1000, "{n} refs");
    // v2 has no v3 constructs left.
    let text = String::from_utf8_lossy(v2_json());
    assert!(!text.contains("#/components/"));
    assert!(!text.contains("\"allOf\":[{\"$ref\""));
    assert!(!text.contains("\"oneOf\""));
    assert_eq!(
        doc["definitions"]["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["type"],
        "string"
    );
}

#[test]
fn v2_paths_cover_the_catalogue() {
    let paths = &v2()["paths"];
    let pod = &paths["/api/v1/namespaces/{namespace}/pods/{name}"];
    assert_eq!(pod["patch"]["x-kubernetes-action"], "patch");
    assert_eq!(
        pod["patch"]["x-kubernetes-group-version-kind"],
        gvk("", "v1", "Pod")
    );
    assert_eq!(
        pod["patch"]["consumes"],
        json!([
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
            "application/apply-patch+yaml"
        ])
    );
    let params = v2()["parameters"].as_object().unwrap();
    let names: BTreeSet<&str> = pod["patch"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["$ref"].as_str())
        .map(|r| {
            params[r.trim_start_matches("#/parameters/")]["name"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["dryRun", "fieldManager", "fieldValidation", "force"])
    );
    for r in RESOURCES {
        let root = if r.group.is_empty() {
            format!("/api/{}", r.version)
        } else {
            format!("/apis/{}/{}", r.group, r.version)
        };
        let collection = if r.namespaced {
            format!("{root}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{root}/{}", r.plural)
        };
        let expect = [
            (collection.clone(), "get", "list"),
            (collection.clone(), "post", "post"),
            (collection.clone(), "delete", "deletecollection"),
            (format!("{collection}/{{name}}"), "get", "get"),
            (format!("{collection}/{{name}}"), "put", "put"),
            (format!("{collection}/{{name}}"), "patch", "patch"),
            (format!("{collection}/{{name}}"), "delete", "delete"),
        ];
        for (path, method, action) in expect {
            assert_eq!(
                paths[&path][method]["x-kubernetes-action"], action,
                "{method} {path}"
            );
        }
        if r.namespaced {
            assert_eq!(
                paths[&format!("{root}/{}", r.plural)]["get"]["x-kubernetes-action"],
                "list"
            );
        }
        for sub in r.subresources {
            let path = format!("{collection}/{{name}}/{}", sub.name());
            assert!(paths.get(&path).is_some(), "{path}");
        }
    }
    let query: BTreeSet<&str> = params
        .values()
        .filter(|p| p["in"] == "query")
        .filter_map(|p| p["name"].as_str())
        .collect();
    for name in [
        "dryRun",
        "fieldManager",
        "fieldValidation",
        "pretty",
        "labelSelector",
        "fieldSelector",
        "limit",
        "continue",
        "resourceVersion",
        "resourceVersionMatch",
        "watch",
        "allowWatchBookmarks",
        "sendInitialEvents",
        "timeoutSeconds",
        "gracePeriodSeconds",
        "propagationPolicy",
        "orphanDependents",
        "force",
    ] {
        assert!(query.contains(name), "{name}");
    }
}

#[test]
fn v3_index_lists_every_group_version_with_its_hash() {
    let index = v3_index();
    let paths = index["paths"].as_object().unwrap();
    let mut expected: BTreeSet<String> = ["api", "apis", "version"].map(String::from).into();
    for r in RESOURCES {
        expected.insert(gv_path(r.group, r.version));
        if !r.group.is_empty() {
            expected.insert(format!("apis/{}", r.group));
        }
    }
    let listed: BTreeSet<String> = paths.keys().cloned().collect();
    assert_eq!(listed, expected);
    for (path, entry) in paths {
        let hash = v3_hash(path).unwrap();
        assert_eq!(hash.len(), 128);
        assert!(
            hash.bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
        );
        assert_eq!(
            entry["serverRelativeURL"],
            format!("/openapi/v3/{path}?hash={hash}")
        );
        let bytes = v3_group_version_json(path).unwrap();
        assert_eq!(super::hash(bytes), hash);
        assert_eq!(
            v3_group_version(path).unwrap(),
            &serde_json::from_slice::<Value>(bytes).unwrap()
        );
    }
    assert!(v3_group_version("apis/nope/v1").is_none());
    assert!(v3_hash("apis/nope/v1").is_none());
}

#[test]
fn v3_documents_are_self_contained() {
    for path in v3_paths() {
        let doc = v3_group_version(path).unwrap();
        assert_eq!(doc["openapi"], "3.0.0", "{path}");
        check_refs(doc);
        // Only what the paths reach: each schema is referred to.
        let mut refs = Vec::new();
        all_refs(doc, "", &mut refs);
        let referred: BTreeSet<&str> = refs
            .iter()
            .filter_map(|(_, r)| r.strip_prefix(V3_REFS))
            .collect();
        for name in doc["components"]["schemas"].as_object().unwrap().keys() {
            assert!(referred.contains(name.as_str()), "{path}: {name} unused");
        }
    }
    let core = v3_group_version("api/v1").unwrap();
    let schemas = &core["components"]["schemas"];
    assert!(schemas.get("io.k8s.api.apps.v1.Deployment").is_none());
    assert!(
        schemas
            .get("io.k8s.apimachinery.pkg.apis.meta.v1.Status")
            .is_some()
    );
    // Refs with siblings are wrapped, as upstream's v3 does.
    assert_eq!(
        schemas["io.k8s.api.core.v1.Pod"]["properties"]["spec"]["allOf"],
        json!([{"$ref": "#/components/schemas/io.k8s.api.core.v1.PodSpec"}])
    );
}

/// What kubectl 1.32 looks for in the v3 document of a kind's group-version
/// before it patches (`gvkSupportsPatchOpenAPIV3`), validates on the server
/// (`supportsQueryParamV3`) and explains (`plaintext.tmpl`).
#[test]
fn v3_has_what_kubectl_looks_for() {
    for r in RESOURCES {
        let path = gv_path(r.group, r.version);
        let doc = v3_group_version(&path).unwrap();
        let want = gvk(r.group, r.version, r.kind);
        let mut patches = 0;
        for (p, item) in doc["paths"].as_object().unwrap() {
            let Some(patch) = item.get("patch") else {
                continue;
            };
            if patch["x-kubernetes-group-version-kind"] != want {
                continue;
            }
            patches += 1;
            assert!(
                patch["requestBody"]["content"]
                    .get("application/strategic-merge-patch+json")
                    .is_some(),
                "{p}"
            );
            let own: Vec<&Value> = patch["parameters"].as_array().unwrap().iter().collect();
            assert!(
                own.iter()
                    .any(|q| q["name"] == "fieldValidation" && q["in"] == "query"),
                "{p}"
            );
        }
        assert!(patches >= 1, "{path}: no PATCH for {}", r.kind);

        let listing: Vec<&String> = doc["components"]["schemas"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, s)| gvks(s).contains(&want))
            .map(|(name, _)| name)
            .collect();
        assert_eq!(listing, vec![r.definition], "{path}: {}", r.kind);

        let root = format!("/{path}");
        let get = if r.namespaced {
            &doc["paths"][format!("{root}/namespaces/{{namespace}}/{}", r.plural)]["get"]
        } else {
            &doc["paths"][format!("{root}/{}", r.plural)]["get"]
        };
        assert_eq!(get["x-kubernetes-group-version-kind"], want, "{}", r.plural);
    }
}

#[test]
fn generation_is_deterministic() {
    let a = serde_json::to_vec(&super::build_v2()).unwrap();
    let b = serde_json::to_vec(&super::build_v2()).unwrap();
    assert_eq!(a, b);
    assert_eq!(a, v2_json());
    let defs = definitions::build();
    for api in paths::apis() {
        let doc = v3::document(&api, &defs);
        assert_eq!(
            Some(doc.as_slice()),
            v3_group_version_json(&api.key),
            "{}",
            api.key
        );
    }
    assert_eq!(protobuf::document(&super::build_v2()), v2_protobuf());
}

/// Every table entry names a definition and a property that exist, so a
/// typo, or a k8s-openapi upgrade that renames a field, fails here.
#[test]
fn extension_tables_name_real_fields() {
    let defs = definitions::build();
    let property = |definition: &str, field: &str| -> Value {
        defs.get(definition)
            .unwrap_or_else(|| panic!("no definition {definition}"))
            .get("properties")
            .and_then(|p| p.get(field))
            .unwrap_or_else(|| panic!("no field {definition}.{field}"))
            .clone()
    };
    let item_fields = |prop: &Value| -> Option<BTreeSet<String>> {
        let r = prop["items"]["$ref"].as_str()?;
        let item = &defs[r.strip_prefix(V3_REFS)?];
        Some(item["properties"].as_object()?.keys().cloned().collect())
    };
    for e in PATCH {
        let prop = property(e.definition, e.field);
        assert!(
            ["merge", "retainKeys", "merge,retainKeys"].contains(&e.strategy),
            "{e:?}"
        );
        assert_eq!(prop["x-kubernetes-patch-strategy"], e.strategy);
        if let Some(key) = e.merge_key {
            let fields =
                item_fields(&prop).unwrap_or_else(|| panic!("{e:?}: not a list of objects"));
            assert!(fields.contains(key), "{e:?}: items have no {key}");
        }
    }
    for e in LISTS {
        let prop = property(e.definition, e.field);
        assert_eq!(prop["type"], "array", "{e:?}");
        assert!(["atomic", "set", "map"].contains(&e.list_type), "{e:?}");
        assert_eq!(e.list_type == "map", !e.map_keys.is_empty(), "{e:?}");
        if !e.map_keys.is_empty() {
            let fields =
                item_fields(&prop).unwrap_or_else(|| panic!("{e:?}: not a list of objects"));
            for key in e.map_keys {
                assert!(fields.contains(*key), "{e:?}: items have no {key}");
            }
        }
    }
    for e in MAPS {
        assert!(["atomic", "granular"].contains(&e.map_type), "{e:?}");
        if e.field.is_empty() {
            assert_eq!(
                defs[e.definition]["x-kubernetes-map-type"], e.map_type,
                "{e:?}"
            );
        } else {
            assert_eq!(
                property(e.definition, e.field)["x-kubernetes-map-type"],
                e.map_type
            );
        }
    }
}

fn field<'a>(
    node: &'a dyn PatchSchema,
    name: &str,
) -> (
    kedge_apimachinery::schema::PatchStrategy,
    Box<dyn PatchSchema + 'a>,
) {
    node.field(name)
        .unwrap_or_else(|| panic!("no field {name}"))
}

#[test]
fn patch_schema_reads_the_extensions() {
    let pod = patch_schema("io.k8s.api.core.v1.Pod").unwrap();
    let (_, spec) = field(&pod, "spec");

    let (containers, container_list) = field(spec.as_ref(), "containers");
    assert!(containers.merge && !containers.retain_keys);
    assert_eq!(containers.merge_key.as_deref(), Some("name"));
    let container = container_list.elements().unwrap();
    let (ports, _) = field(container.as_ref(), "ports");
    assert!(ports.merge);
    assert_eq!(ports.merge_key.as_deref(), Some("containerPort"));
    let (image, image_schema) = field(container.as_ref(), "image");
    assert_eq!(image, Default::default());
    assert!(image_schema.elements().is_none());

    let (volumes, _) = field(spec.as_ref(), "volumes");
    assert!(volumes.merge && volumes.retain_keys);
    assert_eq!(volumes.merge_key.as_deref(), Some("name"));

    let (tolerations, _) = field(spec.as_ref(), "tolerations");
    assert_eq!(tolerations, Default::default());

    let (_, metadata) = field(&pod, "metadata");
    let (finalizers, _) = field(metadata.as_ref(), "finalizers");
    assert!(finalizers.merge);
    assert_eq!(finalizers.merge_key, None);
    let (labels, label_map) = field(metadata.as_ref(), "labels");
    assert_eq!(labels, Default::default());
    let value = label_map.elements().unwrap();
    assert!(value.field("anything").is_none());
    assert!(value.elements().is_none());
    let (owners, _) = field(metadata.as_ref(), "ownerReferences");
    assert_eq!(owners.merge_key.as_deref(), Some("uid"));

    assert!(spec.field("noSuchField").is_none());
    assert!(patch_schema("io.k8s.api.core.v1.NoSuchKind").is_none());

    let deployment = patch_schema("io.k8s.api.apps.v1.Deployment").unwrap();
    let (_, spec) = field(&deployment, "spec");
    let (strategy, _) = field(spec.as_ref(), "strategy");
    assert!(strategy.retain_keys && !strategy.merge);
    let (_, template) = field(spec.as_ref(), "template");
    let (_, pod_spec) = field(template.as_ref(), "spec");
    let (init, _) = field(pod_spec.as_ref(), "initContainers");
    assert_eq!(init.merge_key.as_deref(), Some("name"));

    let service = patch_schema("io.k8s.api.core.v1.Service").unwrap();
    let (_, spec) = field(&service, "spec");
    let (ports, _) = field(spec.as_ref(), "ports");
    assert_eq!(ports.merge_key.as_deref(), Some("port"));
}

/// A minimal protobuf reader: the fields of one message, in order.
fn fields(mut bytes: &[u8]) -> Vec<(u32, Result<&[u8], u64>)> {
    fn varint(bytes: &mut &[u8]) -> u64 {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (b, rest) = bytes.split_first().expect("truncated varint");
            *bytes = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
        }
        v
    }
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let key = varint(&mut bytes);
        let field = (key >> 3) as u32;
        match key & 7 {
            0 => out.push((field, Err(varint(&mut bytes)))),
            2 => {
                let len = varint(&mut bytes) as usize;
                let (value, rest) = bytes.split_at(len);
                bytes = rest;
                out.push((field, Ok(value)));
            }
            other => panic!("wire type {other}"),
        }
    }
    out
}

fn sub<'a>(message: &[(u32, Result<&'a [u8], u64>)], field: u32) -> Vec<&'a [u8]> {
    message
        .iter()
        .filter(|(f, _)| *f == field)
        .filter_map(|(_, v)| v.ok())
        .collect()
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap()
}

#[test]
fn v2_protobuf_is_the_gnostic_document() {
    let doc = fields(v2_protobuf());
    assert_eq!(text(sub(&doc, 1)[0]), "2.0");
    let info = fields(sub(&doc, 2)[0]);
    assert_eq!(text(sub(&info, 1)[0]), "Kubernetes");
    assert_eq!(text(sub(&info, 2)[0]), "v1.32.0");

    let definitions = fields(sub(&doc, 9)[0]);
    let named = sub(&definitions, 1);
    assert_eq!(named.len(), v2()["definitions"].as_object().unwrap().len());
    let pod = named
        .iter()
        .map(|n| fields(n))
        .find(|n| text(sub(n, 1)[0]) == "io.k8s.api.core.v1.Pod")
        .unwrap();
    let schema = fields(sub(&pod, 2)[0]);
    assert!(text(sub(&schema, 4)[0]).starts_with("Pod is a collection"));
    let types = fields(sub(&schema, 22)[0]);
    assert_eq!(text(sub(&types, 1)[0]), "object");
    let extension = fields(sub(&schema, 31)[0]);
    assert_eq!(
        text(sub(&extension, 1)[0]),
        "x-kubernetes-group-version-kind"
    );
    let any = fields(sub(&extension, 2)[0]);
    let yaml: Value = serde_json::from_str(text(sub(&any, 2)[0])).unwrap();
    assert_eq!(yaml, json!([gvk("", "v1", "Pod")]));
    let properties = fields(sub(&schema, 25)[0]);
    let names: Vec<&str> = sub(&properties, 1)
        .iter()
        .map(|p| text(sub(&fields(p), 1)[0]))
        .collect();
    assert_eq!(names, ["apiVersion", "kind", "metadata", "spec", "status"]);
    let spec = fields(sub(&fields(sub(&properties, 1)[3]), 2)[0]);
    assert_eq!(
        text(sub(&spec, 1)[0]),
        "#/definitions/io.k8s.api.core.v1.PodSpec"
    );

    let paths = fields(sub(&doc, 8)[0]);
    assert_eq!(
        sub(&paths, 2).len(),
        v2()["paths"].as_object().unwrap().len()
    );
    let parameters = fields(sub(&doc, 10)[0]);
    assert_eq!(
        sub(&parameters, 1).len(),
        v2()["parameters"].as_object().unwrap().len()
    );
}

#[test]
fn sizes_and_timings() {
    let t = std::time::Instant::now();
    let defs = definitions::build();
    let build = t.elapsed();
    let t = std::time::Instant::now();
    let v2 = serde_json::to_vec(&v2::document(&paths::apis(), &defs)).unwrap();
    let v2_time = t.elapsed();
    let t = std::time::Instant::now();
    let mut v3_total = 0;
    for api in paths::apis() {
        v3_total += v3::document(&api, &defs).len();
    }
    let v3_time = t.elapsed();
    let pb = v2_protobuf().len();
    println!(
        "definitions: {} in {build:?}; v2 JSON {} bytes in {v2_time:?}; v2 protobuf {pb} bytes; \
         v3 JSON {v3_total} bytes in all, in {v3_time:?}; api/v1 {} bytes",
        defs.len(),
        v2.len(),
        v3_group_version_json("api/v1").unwrap().len()
    );
    // Bounds, not measurements: a document that balloons is a bug.
    assert!(v2.len() < 4 << 20);
    assert!(v3_total < 8 << 20);
}
