//! The API's operations, as upstream's apiserver documents them, in a form
//! both the v2 and the v3 writers render.
//!
//! Each served resource gets what upstream's installer registers for a
//! storage that lists, watches, creates, gets, updates, patches and deletes:
//! the collection (list, create, deletecollection), the item (read, replace,
//! patch, delete), the all-namespaces list for namespaced resources, the
//! deprecated `/watch/` paths, and the subresources the catalogue names.
//! Operation ids, descriptions, parameters, content types and responses
//! follow upstream's naming so that generated clients and `kubectl` find
//! what they look for.

use super::definitions::{
    API_GROUP, API_GROUP_LIST, API_RESOURCE_LIST, API_VERSIONS, BINDING, DELETE_OPTIONS, PATCH,
    SCALE, STATUS, VERSION_INFO, WATCH_EVENT, group_versions, resources_of,
};
use super::text;
use crate::catalog::{ResourceInfo, Subresource};

/// Where a parameter goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum In {
    Path,
    Query,
}

/// The JSON type of a parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Type {
    String,
    Integer,
    Boolean,
}

impl Type {
    pub(super) fn name(self) -> &'static str {
        match self {
            Type::String => "string",
            Type::Integer => "integer",
            Type::Boolean => "boolean",
        }
    }
}

/// A path or query parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Param {
    pub name: &'static str,
    pub location: In,
    pub ty: Type,
    pub description: String,
}

impl Param {
    fn query(name: &'static str, ty: Type, description: &str) -> Param {
        Param {
            name,
            location: In::Query,
            ty,
            description: description.to_string(),
        }
    }

    fn path(name: &'static str, description: &str) -> Param {
        Param {
            name,
            location: In::Path,
            ty: Type::String,
            description: description.to_string(),
        }
    }
}

/// What a body or a response holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Schema {
    /// A definition, by name.
    Ref(String),
    /// A plain string (logs, streams).
    String,
}

/// The media types an operation produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Produces {
    Object,
    /// Lists and watches, which also stream.
    Stream,
    Log,
    Any,
    Json,
}

impl Produces {
    pub(super) fn media_types(self) -> &'static [&'static str] {
        match self {
            Produces::Object => &[
                "application/json",
                "application/yaml",
                "application/vnd.kubernetes.protobuf",
            ],
            Produces::Stream => &[
                "application/json",
                "application/yaml",
                "application/vnd.kubernetes.protobuf",
                "application/json;stream=watch",
                "application/vnd.kubernetes.protobuf;stream=watch",
            ],
            Produces::Log => &[
                "text/plain",
                "application/json",
                "application/yaml",
                "application/vnd.kubernetes.protobuf",
            ],
            Produces::Any => &["*/*"],
            Produces::Json => &["application/json"],
        }
    }
}

/// The four patch types a PATCH accepts. `kubectl apply` looks for the
/// strategic merge patch type before it computes a strategic merge patch
/// from the v3 document.
pub(super) const PATCH_TYPES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];

/// A request body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Body {
    pub schema: Schema,
    pub required: bool,
    /// `*/*`, or the patch types.
    pub patch: bool,
}

/// One documented response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Response {
    pub code: &'static str,
    pub description: &'static str,
    pub schema: Option<Schema>,
}

/// A group-version-kind, for `x-kubernetes-group-version-kind`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Gvk {
    pub group: String,
    pub version: String,
    pub kind: String,
}

/// One HTTP method on one path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Operation {
    /// Lowercase: `get`, `put`, `post`, `delete`, `patch`.
    pub method: &'static str,
    pub id: String,
    pub description: String,
    pub tag: String,
    /// `x-kubernetes-action`; none for discovery.
    pub action: Option<&'static str>,
    pub gvk: Option<Gvk>,
    pub params: Vec<Param>,
    pub body: Option<Body>,
    pub produces: Produces,
    pub responses: Vec<Response>,
}

/// A path and its operations. Parameters every operation shares sit on the
/// path, as upstream writes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct PathItem {
    pub path: String,
    pub params: Vec<Param>,
    pub operations: Vec<Operation>,
}

/// One OpenAPI v3 document's worth of paths: `api/v1`, `apis/apps/v1`, or
/// the discovery documents `api`, `apis`, `apis/<group>` and `version`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Api {
    /// The key in the `/openapi/v3` index.
    pub key: String,
    pub paths: Vec<PathItem>,
}

/// Every document, in index order.
pub(super) fn apis() -> Vec<Api> {
    let gvs = group_versions();
    let mut out = vec![Api {
        key: "api".into(),
        paths: vec![discovery(
            "/api/",
            "getCoreAPIVersions",
            "core",
            "get available API versions",
            API_VERSIONS,
        )],
    }];
    out.push(Api {
        key: "apis".into(),
        paths: vec![discovery(
            "/apis/",
            "getAPIVersions",
            "apis",
            "get available API versions",
            API_GROUP_LIST,
        )],
    });
    for (group, version) in gvs {
        if !group.is_empty() {
            let g = Names::new(group, version);
            out.push(Api {
                key: format!("apis/{group}"),
                paths: vec![discovery(
                    &format!("/apis/{group}/"),
                    &format!("get{}APIGroup", g.group),
                    &g.group_tag,
                    "get information of a group",
                    API_GROUP,
                )],
            });
        }
        out.push(group_version(group, version));
    }
    out.push(Api {
        key: "version".into(),
        paths: vec![PathItem {
            path: "/version/".into(),
            params: Vec::new(),
            operations: vec![Operation {
                method: "get",
                id: "getCodeVersion".into(),
                description: "get the code version".into(),
                tag: "version".into(),
                action: None,
                gvk: None,
                params: Vec::new(),
                body: None,
                produces: Produces::Json,
                responses: vec![ok(Schema::Ref(VERSION_INFO.into())), unauthorized()],
            }],
        }],
    });
    out
}

fn discovery(path: &str, id: &str, tag: &str, description: &str, def: &str) -> PathItem {
    PathItem {
        path: path.to_string(),
        params: Vec::new(),
        operations: vec![Operation {
            method: "get",
            id: id.to_string(),
            description: description.to_string(),
            tag: tag.to_string(),
            action: None,
            gvk: None,
            params: Vec::new(),
            body: None,
            produces: Produces::Object,
            responses: vec![ok(Schema::Ref(def.to_string())), unauthorized()],
        }],
    }
}

/// Upstream's spellings for one group-version.
struct Names {
    /// `/api/v1` or `/apis/apps/v1`.
    root: String,
    /// `CoreV1`, `AppsV1`, `DiscoveryV1`: the operation id infix.
    infix: String,
    /// `Core`, `Apps`: for the group's discovery operation.
    group: String,
    /// `core_v1`, `apps_v1`.
    tag: String,
    /// `core`, `apps`, `discovery`.
    group_tag: String,
}

impl Names {
    fn new(group: &str, version: &str) -> Names {
        let short = group.strip_suffix(".k8s.io").unwrap_or(group);
        let short = if short.is_empty() { "core" } else { short };
        let parts: Vec<&str> = short.split(['.', '-']).filter(|p| !p.is_empty()).collect();
        let group_camel: String = parts.iter().map(|p| capitalize(p)).collect();
        let group_tag: String = parts
            .iter()
            .enumerate()
            .map(|(i, p)| if i == 0 { p.to_string() } else { capitalize(p) })
            .collect();
        Names {
            root: if group.is_empty() {
                format!("/api/{version}")
            } else {
                format!("/apis/{group}/{version}")
            },
            infix: format!("{group_camel}{}", capitalize(version)),
            group: group_camel,
            tag: format!("{group_tag}_{version}"),
            group_tag,
        }
    }
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn article(kind: &str) -> &'static str {
    match kind.chars().next() {
        Some('A' | 'E' | 'I' | 'O' | 'U') => "an",
        _ => "a",
    }
}

fn ok(schema: Schema) -> Response {
    Response {
        code: "200",
        description: "OK",
        schema: Some(schema),
    }
}

fn created(schema: Schema) -> Response {
    Response {
        code: "201",
        description: "Created",
        schema: Some(schema),
    }
}

fn accepted(schema: Schema) -> Response {
    Response {
        code: "202",
        description: "Accepted",
        schema: Some(schema),
    }
}

fn unauthorized() -> Response {
    Response {
        code: "401",
        description: "Unauthorized",
        schema: None,
    }
}

/// The resources that answer a delete with the deleted object rather than
/// a `Status` (upstream's `ReturnDeletedObject`).
fn delete_returns_object(r: &ResourceInfo) -> bool {
    r.group.is_empty() && matches!(r.kind, "Pod" | "Service" | "ServiceAccount")
}

const PRETTY: &str = "If 'true', then the output is pretty printed. Defaults to 'false' unless the user-agent indicates a browser or command-line HTTP tool (curl and wget).";
const NAMESPACE: &str = "object name and auth scope, such as for teams and projects";

fn pretty() -> Param {
    Param::query("pretty", Type::String, PRETTY)
}

fn namespace() -> Param {
    Param::path("namespace", NAMESPACE)
}

fn name(kind: &str) -> Param {
    Param::path("name", &format!("name of the {kind}"))
}

fn list_params(for_delete: bool) -> Vec<Param> {
    let mut out = vec![
        Param::query("continue", Type::String, text::LIST_CONTINUE),
        Param::query("fieldSelector", Type::String, text::LIST_FIELD_SELECTOR),
        Param::query("labelSelector", Type::String, text::LIST_LABEL_SELECTOR),
        Param::query("limit", Type::Integer, text::LIST_LIMIT),
        Param::query("resourceVersion", Type::String, text::LIST_RESOURCE_VERSION),
        Param::query(
            "resourceVersionMatch",
            Type::String,
            text::LIST_RESOURCE_VERSION_MATCH,
        ),
        Param::query(
            "sendInitialEvents",
            Type::Boolean,
            text::LIST_SEND_INITIAL_EVENTS,
        ),
        Param::query("timeoutSeconds", Type::Integer, text::LIST_TIMEOUT_SECONDS),
    ];
    if !for_delete {
        out.push(Param::query(
            "allowWatchBookmarks",
            Type::Boolean,
            text::LIST_ALLOW_WATCH_BOOKMARKS,
        ));
        out.push(Param::query("watch", Type::Boolean, text::LIST_WATCH));
    }
    out
}

fn delete_params() -> Vec<Param> {
    vec![
        Param::query("dryRun", Type::String, text::DRY_RUN),
        Param::query(
            "gracePeriodSeconds",
            Type::Integer,
            text::DELETE_GRACE_PERIOD_SECONDS,
        ),
        Param::query(
            "ignoreStoreReadErrorWithClusterBreakingPotential",
            Type::Boolean,
            text::DELETE_IGNORE_STORE_READ_ERROR_WITH_CLUSTER_BREAKING_POTENTIAL,
        ),
        Param::query(
            "orphanDependents",
            Type::Boolean,
            text::DELETE_ORPHAN_DEPENDENTS,
        ),
        Param::query(
            "propagationPolicy",
            Type::String,
            text::DELETE_PROPAGATION_POLICY,
        ),
    ]
}

/// `dryRun`, `fieldManager` and `fieldValidation`: create and update.
/// `kubectl` decides whether the server validates fields (instead of
/// validating on the client against the v2 document) by finding
/// `fieldValidation` among a PATCH operation's own parameters.
fn write_params(patch: bool) -> Vec<Param> {
    let mut out = vec![
        Param::query("dryRun", Type::String, text::DRY_RUN),
        Param::query(
            "fieldManager",
            Type::String,
            if patch {
                text::FIELD_MANAGER_PATCH
            } else {
                text::FIELD_MANAGER
            },
        ),
        Param::query("fieldValidation", Type::String, text::FIELD_VALIDATION),
    ];
    if patch {
        out.push(Param::query("force", Type::Boolean, text::FORCE));
    }
    out
}

fn options_params(options: &[(&'static str, &str)]) -> Vec<Param> {
    options
        .iter()
        // A time is no query parameter upstream can describe.
        .filter(|(n, _)| *n != "sinceTime")
        .map(|(n, d)| {
            let ty = match *n {
                "follow"
                | "previous"
                | "timestamps"
                | "insecureSkipTLSVerifyBackend"
                | "stdin"
                | "stdout"
                | "stderr"
                | "tty" => Type::Boolean,
                "sinceSeconds" | "tailLines" | "limitBytes" | "ports" => Type::Integer,
                _ => Type::String,
            };
            Param::query(n, ty, d)
        })
        .collect()
}

/// Builds operations for one resource path of one group-version.
struct Builder<'a> {
    names: &'a Names,
    r: &'a ResourceInfo,
}

impl Builder<'_> {
    fn op(
        &self,
        method: &'static str,
        verb: &str,
        suffix: &str,
        description: String,
        action: &'static str,
    ) -> Operation {
        let scope = if self.r.namespaced { "Namespaced" } else { "" };
        Operation {
            method,
            id: format!("{verb}{}{scope}{}{suffix}", self.names.infix, self.r.kind),
            description,
            tag: self.names.tag.clone(),
            action: Some(action),
            gvk: Some(Gvk {
                group: self.r.group.to_string(),
                version: self.r.version.to_string(),
                kind: self.r.kind.to_string(),
            }),
            params: Vec::new(),
            body: None,
            produces: Produces::Object,
            responses: Vec::new(),
        }
    }

    fn object(&self) -> Schema {
        Schema::Ref(self.r.definition.to_string())
    }

    fn list(&self) -> Schema {
        Schema::Ref(format!("{}List", self.r.definition))
    }

    fn scope_params(&self) -> Vec<Param> {
        if self.r.namespaced {
            vec![namespace()]
        } else {
            Vec::new()
        }
    }

    fn collection_path(&self) -> String {
        if self.r.namespaced {
            format!(
                "{}/namespaces/{{namespace}}/{}",
                self.names.root, self.r.plural
            )
        } else {
            format!("{}/{}", self.names.root, self.r.plural)
        }
    }

    fn collection(&self) -> PathItem {
        let kind = self.r.kind;
        let mut list = self.op(
            "get",
            "list",
            "",
            format!("list or watch objects of kind {kind}"),
            "list",
        );
        list.params = list_params(false);
        list.produces = Produces::Stream;
        list.responses = vec![ok(self.list()), unauthorized()];

        let mut create = self.op(
            "post",
            "create",
            "",
            format!("create {} {kind}", article(kind)),
            "post",
        );
        create.params = write_params(false);
        create.body = Some(Body {
            schema: self.object(),
            required: true,
            patch: false,
        });
        create.responses = vec![
            ok(self.object()),
            created(self.object()),
            accepted(self.object()),
            unauthorized(),
        ];

        let mut delete = self.op(
            "delete",
            "delete",
            "",
            format!("delete collection of {kind}"),
            "deletecollection",
        );
        delete.id = delete.id.replacen(
            &self.names.infix,
            &format!("{}Collection", self.names.infix),
            1,
        );
        delete.params = delete_params();
        delete.params.extend(list_params(true));
        delete.body = Some(Body {
            schema: Schema::Ref(DELETE_OPTIONS.into()),
            required: false,
            patch: false,
        });
        delete.responses = vec![ok(Schema::Ref(STATUS.into())), unauthorized()];

        let mut params = self.scope_params();
        params.push(pretty());
        path_item(self.collection_path(), params, vec![delete, list, create])
    }

    fn item(&self) -> PathItem {
        let kind = self.r.kind;
        let mut get = self.op(
            "get",
            "read",
            "",
            format!("read the specified {kind}"),
            "get",
        );
        get.responses = vec![ok(self.object()), unauthorized()];
        let (put, patch) = self.update_pair("", "the specified", self.object());

        let mut delete = self.op(
            "delete",
            "delete",
            "",
            format!("delete {} {kind}", article(kind)),
            "delete",
        );
        delete.params = delete_params();
        delete.body = Some(Body {
            schema: Schema::Ref(DELETE_OPTIONS.into()),
            required: false,
            patch: false,
        });
        let deleted = if delete_returns_object(self.r) {
            self.object()
        } else {
            Schema::Ref(STATUS.into())
        };
        delete.responses = vec![ok(deleted.clone()), accepted(deleted), unauthorized()];

        path_item(
            format!("{}/{{name}}", self.collection_path()),
            self.item_params(),
            vec![delete, get, patch, put],
        )
    }

    fn item_params(&self) -> Vec<Param> {
        let mut params = vec![name(self.r.kind)];
        params.extend(self.scope_params());
        params.push(pretty());
        params
    }

    /// PUT and PATCH of the object or of a subresource.
    fn update_pair(&self, suffix: &str, what: &str, schema: Schema) -> (Operation, Operation) {
        let kind = self.r.kind;
        let mut put = self.op(
            "put",
            "replace",
            suffix,
            format!("replace {what} {kind}"),
            "put",
        );
        put.params = write_params(false);
        put.body = Some(Body {
            schema: schema.clone(),
            required: true,
            patch: false,
        });
        put.responses = vec![ok(schema.clone()), created(schema.clone()), unauthorized()];

        let mut patch = self.op(
            "patch",
            "patch",
            suffix,
            format!("partially update {what} {kind}"),
            "patch",
        );
        patch.params = write_params(true);
        patch.body = Some(Body {
            schema: Schema::Ref(PATCH.into()),
            required: true,
            patch: true,
        });
        patch.responses = vec![ok(schema.clone()), created(schema), unauthorized()];
        (put, patch)
    }

    fn all_namespaces(&self) -> PathItem {
        let kind = self.r.kind;
        let mut list = self.op(
            "get",
            "list",
            "ForAllNamespaces",
            format!("list or watch objects of kind {kind}"),
            "list",
        );
        list.id = format!("list{}{kind}ForAllNamespaces", self.names.infix);
        list.params = list_params(false);
        list.produces = Produces::Stream;
        list.responses = vec![ok(self.list()), unauthorized()];
        path_item(
            format!("{}/{}", self.names.root, self.r.plural),
            vec![pretty()],
            vec![list],
        )
    }

    fn watches(&self) -> Vec<PathItem> {
        let kind = self.r.kind;
        let infix = &self.names.infix;
        let scope = if self.r.namespaced { "Namespaced" } else { "" };
        let watch_op = |id: String, action: &'static str, description: String| {
            let mut op = self.op("get", "watch", "", description, action);
            op.id = id;
            op.params = list_params(false);
            op.produces = Produces::Stream;
            op.responses = vec![ok(Schema::Ref(WATCH_EVENT.into())), unauthorized()];
            op
        };
        let list_description = format!(
            "watch individual changes to a list of {kind}. deprecated: use the 'watch' parameter with a list operation instead."
        );
        let scoped = if self.r.namespaced {
            format!(
                "{}/watch/namespaces/{{namespace}}/{}",
                self.names.root, self.r.plural
            )
        } else {
            format!("{}/watch/{}", self.names.root, self.r.plural)
        };
        let mut out = vec![
            path_item(
                scoped.clone(),
                {
                    let mut p = self.scope_params();
                    p.push(pretty());
                    p
                },
                vec![watch_op(
                    format!("watch{infix}{scope}{kind}List"),
                    "watchlist",
                    list_description.clone(),
                )],
            ),
            path_item(
                format!("{scoped}/{{name}}"),
                self.item_params(),
                vec![watch_op(
                    format!("watch{infix}{scope}{kind}"),
                    "watch",
                    format!(
                        "watch changes to an object of kind {kind}. deprecated: use the 'watch' parameter with a list operation instead, filtered to a single item with the 'fieldSelector' parameter."
                    ),
                )],
            ),
        ];
        if self.r.namespaced {
            out.push(path_item(
                format!("{}/watch/{}", self.names.root, self.r.plural),
                vec![pretty()],
                vec![watch_op(
                    format!("watch{infix}{kind}ListForAllNamespaces"),
                    "watchlist",
                    list_description,
                )],
            ));
        }
        out
    }

    fn subresource(&self, sub: Subresource) -> PathItem {
        let kind = self.r.kind;
        let path = format!("{}/{{name}}/{}", self.collection_path(), sub.name());
        let suffix = capitalize(sub.name());
        match sub {
            Subresource::Status | Subresource::Scale => {
                let (what, schema) = if sub == Subresource::Status {
                    ("status of the specified", self.object())
                } else {
                    ("scale of the specified", Schema::Ref(SCALE.into()))
                };
                let mut get = self.op("get", "read", &suffix, format!("read {what} {kind}"), "get");
                get.responses = vec![ok(schema.clone()), unauthorized()];
                let (mut put, mut patch) = self.update_pair(&suffix, what, schema);
                if sub == Subresource::Scale {
                    for op in [&mut get, &mut put, &mut patch] {
                        op.gvk = Some(Gvk {
                            group: "autoscaling".into(),
                            version: "v1".into(),
                            kind: "Scale".into(),
                        });
                    }
                }
                path_item(path, self.item_params(), vec![get, patch, put])
            }
            Subresource::Binding => {
                let binding = Schema::Ref(BINDING.into());
                let mut post = self.op(
                    "post",
                    "create",
                    &suffix,
                    format!("create binding of {} {kind}", article(kind)),
                    "post",
                );
                post.gvk = Some(Gvk {
                    group: String::new(),
                    version: "v1".into(),
                    kind: "Binding".into(),
                });
                post.params = write_params(false);
                post.body = Some(Body {
                    schema: binding.clone(),
                    required: true,
                    patch: false,
                });
                post.responses = vec![
                    ok(binding.clone()),
                    created(binding.clone()),
                    accepted(binding),
                    unauthorized(),
                ];
                path_item(path, self.item_params(), vec![post])
            }
            Subresource::Log => {
                let mut get = self.op(
                    "get",
                    "read",
                    &suffix,
                    format!("read log of the specified {kind}"),
                    "get",
                );
                get.params = options_params(text::POD_LOG_OPTIONS);
                get.produces = Produces::Log;
                get.responses = vec![ok(Schema::String), unauthorized()];
                path_item(path, self.item_params(), vec![get])
            }
            Subresource::Exec | Subresource::Attach | Subresource::PortForward => {
                let (options, options_kind) = match sub {
                    Subresource::Exec => (text::POD_EXEC_OPTIONS, "PodExecOptions"),
                    Subresource::Attach => (text::POD_ATTACH_OPTIONS, "PodAttachOptions"),
                    _ => (text::POD_PORT_FORWARD_OPTIONS, "PodPortForwardOptions"),
                };
                let connect = |method: &'static str, verb: &str| {
                    let mut op = self.op(
                        method,
                        "connect",
                        &suffix,
                        format!("connect {verb} requests to {} of {kind}", sub.name()),
                        "connect",
                    );
                    op.id = op.id.replacen(
                        &format!("connect{}", self.names.infix),
                        &format!("connect{}{}", self.names.infix, capitalize(method)),
                        1,
                    );
                    // Upstream names the options kind here.
                    op.gvk = Some(Gvk {
                        group: String::new(),
                        version: "v1".into(),
                        kind: options_kind.into(),
                    });
                    op.params = options_params(options);
                    op.produces = Produces::Any;
                    op.responses = vec![ok(Schema::String), unauthorized()];
                    op
                };
                let mut params = vec![name(options_kind)];
                params.extend(self.scope_params());
                path_item(
                    path,
                    params,
                    vec![connect("get", "GET"), connect("post", "POST")],
                )
            }
        }
    }
}

/// Sorts the parameters by name, as upstream does, and moves those every
/// operation has to the path.
fn path_item(path: String, mut params: Vec<Param>, mut operations: Vec<Operation>) -> PathItem {
    // kubectl looks for `fieldValidation` among a PATCH operation's own
    // parameters, so nothing moves off a path that has one.
    let has_patch = operations.iter().any(|op| op.method == "patch");
    if let Some((first, rest)) = operations.split_first().filter(|_| !has_patch) {
        let shared: Vec<Param> = first
            .params
            .iter()
            .filter(|p| rest.iter().all(|op| op.params.contains(p)))
            .cloned()
            .collect();
        for op in &mut operations {
            op.params.retain(|p| !shared.contains(p));
            op.params.sort_by(|a, b| a.name.cmp(b.name));
        }
        params.extend(shared);
    }
    params.sort_by(|a, b| a.name.cmp(b.name));
    operations.sort_by(|a, b| a.method.cmp(b.method));
    PathItem {
        path,
        params,
        operations,
    }
}

fn group_version(group: &str, version: &str) -> Api {
    let names = Names::new(group, version);
    let mut paths = vec![discovery(
        &format!("{}/", names.root),
        &format!("get{}APIResources", names.infix),
        &names.tag,
        "get available resources",
        API_RESOURCE_LIST,
    )];
    for r in resources_of(group, version) {
        let b = Builder { names: &names, r };
        paths.push(b.collection());
        paths.push(b.item());
        for sub in r.subresources {
            paths.push(b.subresource(*sub));
        }
        if r.namespaced {
            paths.push(b.all_namespaces());
        }
        paths.extend(b.watches());
    }
    paths.sort_by(|a, b| a.path.cmp(&b.path));
    Api {
        key: names.root.trim_start_matches('/').to_string(),
        paths,
    }
}
