//! Generates `src/table.rs` and fails when the checked-in copy is stale.
//!
//! Three sources, none fetched at build time:
//! - the field tags and wire types: the prost structs of the `k8s-pb` crate,
//!   read as Rust source with `syn`;
//! - the JSON property names: the schemas of `k8s-openapi` (feature
//!   `v1_32`), matched to prost's snake_case names case-insensitively
//!   without underscores;
//! - what only the Go types know (is the field a pointer, does its JSON tag
//!   say `omitempty`, is it inlined): `tests/table/go-fields.txt`, written by
//!   `tools/go-fields.py` from upstream's Go sources for the same version,
//!   and checked here field by field against the other two.
//!
//! Fields that `k8s-pb` has but Kubernetes 1.32 does not (it tracks a newer
//! release) are left out of the table: the decoder skips them as unknown,
//! which is what a 1.32 apiserver does.
//!
//! To rewrite the table: `KEDGE_BLESS=1 cargo test -p kedge-k8s-protobuf --test table`.
//! The test links the library, so if a change to `src/schema.rs` leaves the
//! old table uncompilable, first replace `src/table.rs` with
//! `use crate::schema::Kind; pub(crate) static KINDS: &[Kind] = &[];`.
//!
//! To move to another Kubernetes release: bump k8s-openapi's feature, write
//! the reached messages with `KEDGE_TABLE_MESSAGES=/tmp/messages.txt` (the
//! test may fail; the list is written first), rerun `tools/go-fields.py`
//! on that release's Go types until the list stops growing, then bless.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use k8s_openapi::api;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use serde_json::Value;

/// The kinds the decoder knows: `(group, version, kind)` and the type.
/// A group of `*` means every group version.
macro_rules! roots {
    ($(($group:literal, $version:literal, $kind:literal, $ty:ty)),* $(,)?) => {
        fn roots(generator: &mut schemars::SchemaGenerator) -> Vec<Root> {
            vec![$({
                generator.subschema_for::<$ty>();
                Root {
                    group: $group,
                    version: $version,
                    kind: $kind,
                    definition: <$ty as schemars::JsonSchema>::schema_name().into_owned(),
                }
            }),*]
        }
    };
}

roots![
    ("", "v1", "Namespace", api::core::v1::Namespace),
    ("", "v1", "Pod", api::core::v1::Pod),
    ("", "v1", "Node", api::core::v1::Node),
    ("", "v1", "Service", api::core::v1::Service),
    ("", "v1", "Endpoints", api::core::v1::Endpoints),
    ("", "v1", "ConfigMap", api::core::v1::ConfigMap),
    ("", "v1", "Secret", api::core::v1::Secret),
    ("", "v1", "ServiceAccount", api::core::v1::ServiceAccount),
    ("", "v1", "Event", api::core::v1::Event),
    ("", "v1", "Binding", api::core::v1::Binding),
    ("apps", "v1", "Deployment", api::apps::v1::Deployment),
    ("apps", "v1", "ReplicaSet", api::apps::v1::ReplicaSet),
    ("apps", "v1", "DaemonSet", api::apps::v1::DaemonSet),
    ("apps", "v1", "StatefulSet", api::apps::v1::StatefulSet),
    (
        "apps",
        "v1",
        "ControllerRevision",
        api::apps::v1::ControllerRevision
    ),
    ("batch", "v1", "Job", api::batch::v1::Job),
    ("batch", "v1", "CronJob", api::batch::v1::CronJob),
    (
        "coordination.k8s.io",
        "v1",
        "Lease",
        api::coordination::v1::Lease
    ),
    (
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        api::discovery::v1::EndpointSlice
    ),
    ("events.k8s.io", "v1", "Event", api::events::v1::Event),
    ("autoscaling", "v1", "Scale", api::autoscaling::v1::Scale),
    (
        "authentication.k8s.io",
        "v1",
        "TokenRequest",
        api::authentication::v1::TokenRequest
    ),
    // Not SelfSubjectReview: its status holds a map of ExtraValue, which
    // this decoder has no form for, and the apiserver reads nothing from
    // its body but the kind.
    (
        "authorization.k8s.io",
        "v1",
        "SelfSubjectAccessReview",
        api::authorization::v1::SelfSubjectAccessReview
    ),
    ("*", "*", "DeleteOptions", meta::DeleteOptions),
];

struct Root {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    definition: String,
}

/// Messages whose JSON form is their own, by definition name.
const SPECIAL: &[(&str, &str)] = &[
    ("io.k8s.apimachinery.pkg.apis.meta.v1.Time", "Time"),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime",
        "MicroTime",
    ),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.Duration", "Duration"),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1", "FieldsV1"),
    ("io.k8s.apimachinery.pkg.api.resource.Quantity", "Quantity"),
    (
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
        "IntOrString",
    ),
    (
        "io.k8s.apimachinery.pkg.runtime.RawExtension",
        "RawExtension",
    ),
];

// ---------------------------------------------------------------------------
// k8s-pb: the prost structs

#[derive(Debug, Clone, PartialEq)]
enum Scalar {
    Bool,
    Int32,
    Int64,
    Double,
    String,
    Bytes,
    /// A message, by definition name.
    Message(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Label {
    Optional,
    Repeated,
    Map(Scalar),
}

#[derive(Debug)]
struct ProtoField {
    /// prost's snake_case name, without `r#`.
    rust: String,
    tag: u32,
    label: Label,
    ty: Scalar,
}

/// The host's target triple, from `rustc -vV`.
fn host_triple() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = std::process::Command::new(rustc)
        .arg("-vV")
        .output()
        .expect("run rustc -vV");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("rustc -vV names the host")
        .to_string()
}

/// Where cargo keeps a dependency's sources.
fn package_dir(name: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    // Only this platform's packages: a fresh checkout has downloaded no
    // others, and --offline cannot fetch them.
    let out = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--locked",
            "--filter-platform",
            &host_triple(),
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata output");
    let pkg = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not a dependency"));
    Path::new(pkg["manifest_path"].as_str().unwrap())
        .parent()
        .unwrap()
        .to_path_buf()
}

fn read_prost_messages(root: &Path) -> BTreeMap<String, Vec<ProtoField>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(root.join("src")).unwrap();
            let mut module: Vec<String> = rel
                .parent()
                .unwrap()
                .iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect();
            let stem = rel.file_stem().unwrap().to_string_lossy();
            if stem != "mod" && stem != "lib" {
                module.push(stem.into_owned());
            }
            let file = syn::parse_file(&std::fs::read_to_string(&path).unwrap())
                .unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
            read_items(&file.items, &mut module, &mut out);
        }
    }
    out
}

fn read_items(
    items: &[syn::Item],
    module: &mut Vec<String>,
    out: &mut BTreeMap<String, Vec<ProtoField>>,
) {
    for item in items {
        match item {
            syn::Item::Mod(m) => {
                if let Some((_, items)) = &m.content {
                    module.push(m.ident.to_string());
                    read_items(items, module, out);
                    module.pop();
                }
            }
            syn::Item::Struct(s) => {
                let mut fields = Vec::new();
                for field in &s.fields {
                    let Some(attr) = field.attrs.iter().find(|a| a.path().is_ident("prost")) else {
                        continue;
                    };
                    let tokens = attr.meta.require_list().unwrap().tokens.to_string();
                    let rust = field.ident.as_ref().unwrap().to_string();
                    let rust = rust.trim_start_matches("r#").to_string();
                    fields.push(parse_prost_field(&tokens, &field.ty, module, rust));
                }
                if !fields.is_empty() {
                    out.insert(definition_name(module, &s.ident.to_string()), fields);
                }
            }
            _ => {}
        }
    }
}

fn definition_name(module: &[String], name: &str) -> String {
    format!("io.k8s.{}.{}", module.join("."), name)
}

/// Splits prost's attribute tokens at commas outside string literals.
fn split_attr(tokens: &str) -> Vec<(String, Option<String>)> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in tokens.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    parts.push(cur);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (
                k.trim().to_string(),
                Some(v.trim().trim_matches('"').to_string()),
            ),
            None => (p.trim().to_string(), None),
        })
        .collect()
}

fn scalar(name: &str) -> Scalar {
    match name {
        "bool" => Scalar::Bool,
        "int32" => Scalar::Int32,
        "int64" => Scalar::Int64,
        "double" => Scalar::Double,
        "string" => Scalar::String,
        "bytes" => Scalar::Bytes,
        other => panic!("unexpected protobuf type {other}"),
    }
}

fn parse_prost_field(tokens: &str, ty: &syn::Type, module: &[String], rust: String) -> ProtoField {
    let parts = split_attr(tokens);
    let mut tag = None;
    let mut label = Label::Optional;
    let mut kind = None;
    for (key, value) in &parts {
        match (key.as_str(), value) {
            ("tag", Some(v)) => tag = Some(v.parse().unwrap()),
            ("optional", None) | ("boxed", None) | ("packed", Some(_)) => {}
            ("repeated", None) => label = Label::Repeated,
            ("btree_map", Some(v)) => {
                let (k, v) = v.split_once(',').unwrap();
                label = Label::Map(scalar(k.trim()));
                kind = Some(v.trim().to_string());
            }
            ("bytes", Some(_)) => kind = Some("bytes".into()),
            (k, None) => kind = Some(k.to_string()),
            other => panic!("unexpected prost attribute {other:?} in {tokens}"),
        }
    }
    let kind = kind.unwrap_or_else(|| panic!("no type in {tokens}"));
    let ty = if kind == "message" {
        Scalar::Message(message_of(ty, module))
    } else {
        scalar(&kind)
    };
    ProtoField {
        rust,
        tag: tag.unwrap(),
        label,
        ty,
    }
}

/// The message a prost field type names: `Option<super::X>`, `Vec<X>`,
/// `BTreeMap<String, X>`, `Option<Box<X>>`.
fn message_of(ty: &syn::Type, module: &[String]) -> String {
    let syn::Type::Path(p) = ty else {
        panic!("unexpected field type")
    };
    let last = p.path.segments.last().unwrap();
    let wrapper = matches!(
        last.ident.to_string().as_str(),
        "Option" | "Vec" | "Box" | "BTreeMap"
    );
    if wrapper {
        let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
            panic!("bare wrapper")
        };
        let Some(syn::GenericArgument::Type(inner)) = args.args.last() else {
            panic!("no type argument")
        };
        return message_of(inner, module);
    }
    let mut module = module.to_vec();
    let segments: Vec<String> = p
        .path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect();
    let (name, path) = segments.split_last().unwrap();
    for segment in path {
        match segment.as_str() {
            "super" => {
                module.pop().unwrap();
            }
            "crate" => module.clear(),
            other => module.push(other.to_string()),
        }
    }
    definition_name(&module, name)
}

// ---------------------------------------------------------------------------
// go-fields.txt: what only the Go types say

#[derive(Debug, Clone)]
struct GoField {
    /// The JSON name; for an inline field, the protobuf name.
    name: String,
    tag: u32,
    pointer: bool,
    omit_empty: bool,
    inline: bool,
}

/// One line per message: the definition name, then one token per field:
/// `name=tag` followed by `*` for a pointer, `?` for `omitempty` and `^` for
/// `json:",inline"`.
fn read_go_fields(text: &str) -> BTreeMap<String, Vec<GoField>> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let message = words.next().unwrap().to_string();
        let fields = words
            .map(|w| {
                let (name, rest) = w.split_once('=').unwrap_or_else(|| panic!("bad token {w}"));
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                let flags = &rest[digits.len()..];
                assert!(flags.chars().all(|c| "*?^".contains(c)), "bad flags in {w}");
                GoField {
                    name: name.to_string(),
                    tag: digits.parse().unwrap(),
                    pointer: flags.contains('*'),
                    omit_empty: flags.contains('?'),
                    inline: flags.contains('^'),
                }
            })
            .collect();
        assert!(
            out.insert(message.clone(), fields).is_none(),
            "{message} twice"
        );
    }
    out
}

// ---------------------------------------------------------------------------
// the table

#[derive(Debug)]
struct TableField {
    tag: u32,
    json: String,
    shape: String,
    ty: String,
    flags: Vec<&'static str>,
}

fn normalize(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn static_name(definition: &str) -> String {
    let short = [
        "io.k8s.api.",
        "io.k8s.apimachinery.pkg.apis.",
        "io.k8s.apimachinery.pkg.",
    ]
    .iter()
    .find_map(|p| definition.strip_prefix(p))
    .unwrap_or_else(|| panic!("unexpected definition {definition}"));
    let mut out = String::new();
    let chars: Vec<char> = short.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c == '.' || c == '-' {
            out.push('_');
            continue;
        }
        if c.is_ascii_uppercase() && i > 0 {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(char::is_ascii_lowercase);
            if prev.is_ascii_lowercase()
                || prev.is_ascii_digit()
                || (prev.is_ascii_uppercase() && next_lower)
            {
                out.push('_');
            }
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

fn type_expr(ty: &Scalar) -> String {
    match ty {
        Scalar::Bool => "Bool".into(),
        Scalar::Int32 => "Int32".into(),
        Scalar::Int64 => "Int64".into(),
        Scalar::Double => "Double".into(),
        Scalar::String => "String".into(),
        Scalar::Bytes => "Bytes".into(),
        Scalar::Message(name) => match SPECIAL.iter().find(|(d, _)| d == name) {
            Some((_, special)) => special.to_string(),
            None => format!("Message(&{})", static_name(name)),
        },
    }
}

fn generate() -> String {
    let pb: BTreeMap<String, Vec<ProtoField>> = read_prost_messages(&package_dir("k8s-pb"))
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    let go = read_go_fields(include_str!("table/go-fields.txt"));
    let mut generator = schemars::SchemaGenerator::default();
    let roots = roots(&mut generator);
    let defs = generator.definitions().clone();
    // prost renames some messages (PodDNSConfig is PodDnsConfig): match the
    // definition names case-insensitively.
    let mut by_lowercase: BTreeMap<String, String> = defs
        .keys()
        .map(|d| (d.to_ascii_lowercase(), d.clone()))
        .collect();
    for (special, _) in SPECIAL {
        by_lowercase.insert(special.to_ascii_lowercase(), special.to_string());
    }

    // Inline structs (VolumeSource, ProbeHandler) have no definition of
    // their own: their properties are their parent's.
    let mut inline_parent: BTreeMap<String, String> = BTreeMap::new();
    let mut queue: VecDeque<String> = roots.iter().map(|r| r.definition.clone()).collect();
    let mut seen: BTreeSet<String> = queue.iter().cloned().collect();
    let mut messages: BTreeMap<String, Vec<TableField>> = BTreeMap::new();
    let mut dropped = Vec::new();
    let mut problems = Vec::new();

    while let Some(name) = queue.pop_front() {
        let fields = pb
            .get(&name.to_ascii_lowercase())
            .unwrap_or_else(|| panic!("k8s-pb has no message {name}"));
        let schema_name = inline_parent.get(&name).unwrap_or(&name).clone();
        let def = defs
            .get(&schema_name)
            .unwrap_or_else(|| panic!("no schema for {schema_name}"));
        let props: Vec<String> = def["properties"]
            .as_object()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        let Some(go_fields) = go.get(&name) else {
            problems.push(format!("go-fields.txt has no line for {name}"));
            continue;
        };
        let mut go_used = BTreeSet::new();
        let mut covered: BTreeSet<&str> = BTreeSet::from(["apiVersion", "kind"]);
        let mut out = Vec::new();
        for field in fields {
            let json = props
                .iter()
                .find(|p| normalize(p) == normalize(&field.rust));
            let go_field = go_fields.iter().find(|g| match json {
                Some(json) => &g.name == json,
                None => g.inline && normalize(&g.name) == normalize(&field.rust),
            });
            let Some(go_field) = go_field else {
                if json.is_some() {
                    problems.push(format!(
                        "{name}.{}: in the schema but not in go-fields.txt",
                        field.rust
                    ));
                } else {
                    dropped.push(format!("{name}.{}", field.rust));
                }
                continue;
            };
            go_used.insert(go_field.name.as_str());
            if go_field.tag != field.tag {
                problems.push(format!(
                    "{name}.{}: tag {} in k8s-pb, {} in Go",
                    field.rust, field.tag, go_field.tag
                ));
            }
            let ty = match &field.ty {
                Scalar::Message(rust_name) => {
                    let def = match by_lowercase.get(&rust_name.to_ascii_lowercase()) {
                        Some(def) => def.clone(),
                        None if go_field.inline => {
                            inline_parent.insert(rust_name.clone(), schema_name.clone());
                            rust_name.clone()
                        }
                        None => panic!("{name}.{}: no schema for {rust_name}", field.rust),
                    };
                    if !SPECIAL.iter().any(|(d, _)| *d == def) && seen.insert(def.clone()) {
                        queue.push_back(def.clone());
                    }
                    Scalar::Message(def)
                }
                other => other.clone(),
            };
            if go_field.inline {
                let Scalar::Message(inner) = &ty else {
                    panic!("{name}.{}: inline field is not a message", field.rust)
                };
                for g in go.get(inner).into_iter().flatten() {
                    covered.insert(&g.name);
                }
            } else {
                covered.insert(json.unwrap());
            }
            let mut flags = Vec::new();
            if go_field.omit_empty {
                flags.push("O");
            }
            if go_field.pointer {
                flags.push("P");
            }
            if go_field.inline {
                flags.push("I");
            }
            let shape = match &field.label {
                Label::Optional => "One".to_string(),
                Label::Repeated => "Repeated".to_string(),
                Label::Map(key) => format!("Map({})", type_expr(key)),
            };
            out.push(TableField {
                tag: field.tag,
                json: json.cloned().unwrap_or_default(),
                shape,
                ty: type_expr(&ty),
                flags,
            });
        }
        for g in go_fields {
            if !go_used.contains(g.name.as_str()) {
                problems.push(format!(
                    "{name}.{}: in go-fields.txt but not matched to k8s-pb",
                    g.name
                ));
            }
        }
        if !inline_parent.contains_key(&name) {
            for p in &props {
                if !covered.contains(p.as_str()) {
                    problems.push(format!("{name}.{p}: in the schema but no protobuf field"));
                }
            }
        }
        out.sort_by_key(|f| f.tag);
        messages.insert(name, out);
    }
    for name in go.keys() {
        if !messages.contains_key(name) {
            problems.push(format!("go-fields.txt has {name}, which no kind reaches"));
        }
    }
    if let Ok(path) = std::env::var("KEDGE_TABLE_MESSAGES") {
        std::fs::write(
            path,
            seen.iter().map(|s| format!("{s}\n")).collect::<String>(),
        )
        .unwrap();
    }
    assert!(
        problems.is_empty(),
        "the sources disagree:\n{}",
        problems.join("\n")
    );

    let mut names = BTreeSet::new();
    for name in messages.keys() {
        assert!(
            names.insert(static_name(name)),
            "two messages are named {}",
            static_name(name)
        );
    }

    let mut s = String::new();
    s.push_str(
        "// @generated by tests/table.rs from the k8s-pb and k8s-openapi (v1_32) crates and\n\
         // tests/table/go-fields.txt. Do not edit: run\n\
         // `KEDGE_BLESS=1 cargo test -p kedge-k8s-protobuf --test table`.\n\
         //\n\
         // Fields k8s-pb knows that Kubernetes 1.32 does not; the decoder skips them:\n",
    );
    for d in &dropped {
        writeln!(s, "// - {d}").unwrap();
    }
    s.push_str(
        "\n#![allow(clippy::all)]\n\n\
         use crate::schema::Shape::*;\n\
         use crate::schema::Type::*;\n\
         use crate::schema::{Kind, Message, f};\n\
         use crate::schema::{INLINE as I, OMIT_EMPTY as O, POINTER as P};\n\n\
         /// The kinds [`crate::decode`] knows.\n\
         pub(crate) static KINDS: &[Kind] = &[\n",
    );
    for root in &roots {
        writeln!(
            s,
            "    Kind {{ group: {:?}, version: {:?}, kind: {:?}, message: &{} }},",
            root.group,
            root.version,
            root.kind,
            static_name(&root.definition)
        )
        .unwrap();
    }
    s.push_str("];\n");
    for (name, fields) in &messages {
        writeln!(s, "\n/// `{name}`").unwrap();
        writeln!(
            s,
            "pub(crate) static {}: Message = Message {{",
            static_name(name)
        )
        .unwrap();
        s.push_str("    fields: &[\n");
        for field in fields {
            let flags = if field.flags.is_empty() {
                "0".to_string()
            } else {
                field.flags.join(" | ")
            };
            writeln!(
                s,
                "        f({}, {:?}, {}, {}, {}),",
                field.tag, field.json, field.shape, field.ty, flags
            )
            .unwrap();
        }
        s.push_str("    ],\n};\n");
    }
    rustfmt(&s)
}

/// Formats generated code as `cargo fmt` would, so that the check passes.
fn rustfmt(source: &str) -> String {
    use std::io::Write as _;
    let rustfmt = std::env::var("RUSTFMT").unwrap_or_else(|_| "rustfmt".into());
    let mut child = std::process::Command::new(rustfmt)
        .args(["--edition", "2024", "--emit", "stdout"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run rustfmt");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(source.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "rustfmt failed");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn table_is_current() {
    let generated = generate();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/table.rs");
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    if std::env::var_os("KEDGE_BLESS").is_some() {
        if current != generated {
            std::fs::write(&path, &generated).unwrap();
        }
        return;
    }
    if current != generated {
        let line = current
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .map_or(
                current.lines().count().min(generated.lines().count()),
                |n| n,
            );
        panic!(
            "src/table.rs is stale (first difference at line {}); rerun with KEDGE_BLESS=1",
            line + 1
        );
    }
}

/// Every kind kedge serves can arrive as protobuf, and so can the
/// subresource bodies: a Scale, a Binding.
#[test]
fn table_covers_the_catalog() {
    use kedge_resources::catalog::{RESOURCES, Subresource};
    for r in RESOURCES {
        assert!(
            kedge_k8s_protobuf::knows(r.group, r.version, r.kind),
            "{}/{} {} is served but not in the table: add it to roots! above",
            r.group,
            r.version,
            r.kind
        );
        if r.has(Subresource::Scale) {
            assert!(kedge_k8s_protobuf::knows("autoscaling", "v1", "Scale"));
        }
        if r.has(Subresource::Binding) {
            assert!(kedge_k8s_protobuf::knows("", "v1", "Binding"));
        }
    }
}
