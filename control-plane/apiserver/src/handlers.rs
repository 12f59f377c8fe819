//! From an HTTP request to a response: authenticate, authorise, route,
//! and call the registry.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use kedge_apimachinery::patch::PatchType;
use kedge_apimachinery::selector::{FieldSelector, LabelSelector};
use kedge_resources::catalog::{self, ResourceInfo, Subresource};
use serde_json::{Value, json};

use crate::ApiServer;
use crate::auth::{self, User};
use crate::discovery;
use crate::object;
use crate::output::{self, IncludeObject};
use crate::registry::{DeleteOpts, FieldValidation, ListOpts, WriteOpts, Written};
use crate::request::{self, Output, Query, ResourceRequest, Route, Verb};
use crate::reviews;
use crate::status::{ApiError, ApiResult};
use crate::watch::{self, Start, WatchRequest};

/// The response body: a whole buffer or a watch stream.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Upstream's limit on a request body: 3 MiB.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

fn json_response(
    code: u16,
    value: &Value,
    content_type: &str,
    warnings: &[String],
) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut resp = Response::new(full(body));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(ct) = HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    for w in warnings {
        let escaped = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

fn ok_json(value: &Value) -> Response<Body> {
    json_response(200, value, "application/json", &[])
}

fn error_response(err: &ApiError) -> Response<Body> {
    json_response(err.code, &err.to_status(), "application/json", &[])
}

fn text(code: u16, body: &str) -> Response<Body> {
    let mut resp = Response::new(full(body.to_string()));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Handles one request. `cert_user` is the identity from the client
/// certificate, if the client presented one.
pub async fn handle(
    server: Arc<ApiServer>,
    cert_user: Option<User>,
    req: Request<Incoming>,
) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let started = std::time::Instant::now();
    let resp = match serve(&server, cert_user, req).await {
        Ok(resp) => resp,
        Err(err) => error_response(&err),
    };
    tracing::debug!(%method, %path, status = resp.status().as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "request");
    resp
}

/// Who is asking: the client certificate, else a bearer token from the token file,
/// else a service-account token.
async fn authenticate(
    server: &ApiServer,
    cert_user: Option<User>,
    req: &Request<Incoming>,
) -> Option<User> {
    if cert_user.is_some() {
        return cert_user;
    }
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    if let Some(user) = server.tokens.authenticate(token) {
        return Some(user.clone());
    }
    let issuer = server.config.service_accounts.as_ref()?;
    crate::serviceaccount::authenticate(&server.registry, issuer, token).await
}

async fn serve(
    server: &Arc<ApiServer>,
    cert_user: Option<User>,
    req: Request<Incoming>,
) -> ApiResult<Response<Body>> {
    let query = Query::parse(req.uri().query());
    let route = request::route(req.method(), req.uri().path(), &query);
    let user = authenticate(server, cert_user, &req)
        .await
        .ok_or_else(ApiError::unauthorized)?;
    auth::authorize(&user, &route)?;
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let get_only = |m: &Method| -> ApiResult<()> {
        if m == Method::GET || m == Method::HEAD {
            Ok(())
        } else {
            Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource".to_string(),
            ))
        }
    };
    match route {
        Route::Version => {
            get_only(req.method())?;
            Ok(ok_json(&server.version_info()))
        }
        Route::Health(check) => {
            get_only(req.method())?;
            match server.registry.store().current_revision().await {
                Ok(_) => Ok(text(200, "ok")),
                Err(e) => {
                    tracing::warn!(error = %e, check, "health check: datastore unavailable");
                    Ok(text(
                        500,
                        "[-]datastore failed: reason withheld\nhealthz check failed\n",
                    ))
                }
            }
        }
        Route::CoreVersions => {
            get_only(req.method())?;
            match discovery::aggregated_version(accept.as_deref()) {
                Some(v) => Ok(aggregated(true, v)),
                None => Ok(ok_json(&discovery::core_versions(
                    &server.config.advertise_address,
                ))),
            }
        }
        Route::Groups => {
            get_only(req.method())?;
            match discovery::aggregated_version(accept.as_deref()) {
                Some(v) => Ok(aggregated(false, v)),
                None => Ok(ok_json(&discovery::groups())),
            }
        }
        Route::Group(name) => {
            get_only(req.method())?;
            discovery::group(&name)
                .map(|g| ok_json(&g))
                .ok_or_else(ApiError::path_not_found)
        }
        Route::ResourceList { group, version } => {
            get_only(req.method())?;
            discovery::resource_list(&group, &version)
                .map(|l| ok_json(&l))
                .ok_or_else(ApiError::path_not_found)
        }
        Route::OpenApiV2 | Route::OpenApiV3Index | Route::OpenApiV3(_) => {
            get_only(req.method())?;
            crate::openapi::serve(&route, accept.as_deref(), &query)
        }
        Route::NotFound => Err(ApiError::path_not_found()),
        Route::NodeProxy { node, path, .. } => {
            crate::streams::node_proxy(server, req.method(), &node, &path).await
        }
        Route::Resource(rr) => match reviews::find(&rr.group, &rr.version, &rr.resource) {
            Some(review) => {
                if rr.namespace.is_some() || rr.name.is_some() || rr.subresource.is_some() {
                    return Err(ApiError::path_not_found());
                }
                if rr.verb != Verb::Create {
                    return Err(ApiError::method_not_allowed(format!(
                        "{} only accepts create",
                        review.plural
                    )));
                }
                let content_type = content_type(&req);
                let body = parse_review_body(content_type.as_deref(), &read_body(req).await?)?;
                Ok(json_response(
                    201,
                    &review.answer(&user, body)?,
                    "application/json",
                    &[],
                ))
            }
            None => resource(server, rr, query, accept.as_deref(), req).await,
        },
    }
}

fn aggregated(core: bool, version: &str) -> Response<Body> {
    let ct = if version == "v2" {
        discovery::AGGREGATED_V2
    } else {
        discovery::AGGREGATED_V2BETA1
    };
    json_response(200, &discovery::aggregated(core, version), ct, &[])
}

fn content_type(req: &Request<Incoming>) -> Option<String> {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Reads the body, up to [`MAX_BODY_BYTES`].
async fn read_body(req: Request<Incoming>) -> ApiResult<Bytes> {
    match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ApiError::too_large(MAX_BODY_BYTES))
        }
        Err(e) => Err(ApiError::bad_request(format!(
            "cannot read the request body: {e}"
        ))),
    }
}

/// Parses a JSON body.
fn parse_json(bytes: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
    })
}

fn parse_body(content_type: Option<&str>, bytes: &[u8]) -> ApiResult<Value> {
    let media = content_type.map(|c| {
        c.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    });
    match media.as_deref() {
        None | Some("") | Some("application/json") | Some("*/*") => parse_json(bytes),
        Some("application/yaml") => parse_yaml(bytes),
        Some(kedge_k8s_protobuf::CONTENT_TYPE) => parse_protobuf(bytes),
        Some(other) => Err(ApiError::unsupported_media_type(other)),
    }
}

/// Parses a YAML body, as `curl -H 'Content-Type: application/yaml'` sends.
fn parse_yaml(bytes: &[u8]) -> ApiResult<Value> {
    serde_yaml::from_slice(bytes).map_err(|e| {
        ApiError::bad_request(format!("couldn't get version/kind; yaml parse error: {e}"))
    })
}

/// Decodes a Kubernetes protobuf body, as `kubectl create <kind>` and
/// client-go's typed clients send, into the JSON the same object has.
fn parse_protobuf(bytes: &[u8]) -> ApiResult<Value> {
    kedge_k8s_protobuf::decode(bytes).map_err(protobuf_error)
}

fn protobuf_error(e: kedge_k8s_protobuf::DecodeError) -> ApiError {
    use kedge_k8s_protobuf::DecodeError;
    match e {
        DecodeError::UnknownKind { .. } | DecodeError::UnsupportedContentEncoding(_) => {
            ApiError::new(
                415,
                "UnsupportedMediaType",
                format!("{e}: send this object as application/json instead"),
            )
        }
        other => ApiError::bad_request(format!("the protobuf body could not be decoded: {other}")),
    }
}

/// A review's body. `kubectl auth whoami` sends its SelfSubjectReview as
/// protobuf, which the decoder has no table for; the server reads nothing
/// from that body but its kind, so the envelope is enough.
fn parse_review_body(content_type: Option<&str>, bytes: &[u8]) -> ApiResult<Value> {
    use kedge_k8s_protobuf::DecodeError;
    let is_protobuf = content_type.is_some_and(|c| c.starts_with(kedge_k8s_protobuf::CONTENT_TYPE));
    if !is_protobuf {
        return parse_body(content_type, bytes);
    }
    match kedge_k8s_protobuf::decode(bytes) {
        Ok(v) => Ok(v),
        Err(DecodeError::UnknownKind { api_version, kind }) if kind == "SelfSubjectReview" => {
            Ok(json!({"apiVersion": api_version, "kind": kind}))
        }
        Err(e) => Err(protobuf_error(e)),
    }
}

fn write_opts(query: &Query) -> ApiResult<WriteOpts> {
    Ok(WriteOpts {
        dry_run: dry_run(query.get("dryRun"))?,
        field_validation: FieldValidation::parse(query.get("fieldValidation"))?,
    })
}

fn dry_run(value: Option<&str>) -> ApiResult<bool> {
    match value {
        None => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "Invalid dry run value: {other:?}: supported values: \"All\""
        ))),
    }
}

fn list_opts(query: &Query) -> ApiResult<ListOpts> {
    let label = LabelSelector::parse(query.get("labelSelector").unwrap_or_default())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let field = FieldSelector::parse(query.get("fieldSelector").unwrap_or_default())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let limit = match query.get("limit") {
        None => None,
        Some(l) => match l.parse::<i64>() {
            Ok(n) if n > 0 => Some(n as usize),
            Ok(_) => None,
            Err(_) => return Err(ApiError::bad_request(format!("invalid limit: {l:?}"))),
        },
    };
    Ok(ListOpts {
        label,
        field,
        limit,
        continue_token: query.get("continue").map(str::to_string),
        resource_version: query.get("resourceVersion").map(str::to_string),
        resource_version_match: query.get("resourceVersionMatch").map(str::to_string),
    })
}

fn delete_opts(query: &Query, content_type: Option<&str>, body: &[u8]) -> ApiResult<DeleteOpts> {
    let mut opts = DeleteOpts {
        dry_run: dry_run(query.get("dryRun"))?,
        grace_period_seconds: match query.get("gracePeriodSeconds") {
            Some(g) => Some(g.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid gracePeriodSeconds: {g:?}"))
            })?),
            None => None,
        },
        propagation_policy: query.get("propagationPolicy").map(str::to_string),
        ..Default::default()
    };
    opts.orphan_dependents = query.bool("orphanDependents");
    if !body.iter().all(u8::is_ascii_whitespace) {
        let v = parse_body(content_type, body)?;
        if let Some(g) = v.get("gracePeriodSeconds").and_then(Value::as_i64) {
            opts.grace_period_seconds = Some(g);
        }
        if let Some(p) = v.get("propagationPolicy").and_then(Value::as_str) {
            opts.propagation_policy = Some(p.to_string());
        }
        if let Some(orphan) = v.get("orphanDependents").and_then(Value::as_bool) {
            opts.orphan_dependents = Some(orphan);
        }
        if let Some(dr) = v.get("dryRun").and_then(Value::as_array) {
            for d in dr {
                opts.dry_run |= dry_run(d.as_str())?;
            }
        }
        opts.precondition_uid = v
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string);
        opts.precondition_resource_version = v
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
    }
    if opts.orphan_dependents == Some(true) && opts.propagation_policy.is_none() {
        opts.propagation_policy = Some("Orphan".into());
    }
    Ok(opts)
}

fn subresource(info: &ResourceInfo, name: Option<&str>) -> ApiResult<Option<Subresource>> {
    let Some(name) = name else { return Ok(None) };
    info.subresources
        .iter()
        .copied()
        .find(|s| s.name() == name)
        .map(Some)
        .ok_or_else(ApiError::path_not_found)
}

async fn resource(
    server: &Arc<ApiServer>,
    rr: ResourceRequest,
    query: Query,
    accept: Option<&str>,
    req: Request<Incoming>,
) -> ApiResult<Response<Body>> {
    let info =
        catalog::find(&rr.group, &rr.version, &rr.resource).ok_or_else(ApiError::path_not_found)?;
    let ns = rr.namespace.as_deref();
    if !info.namespaced && ns.is_some() {
        return Err(ApiError::path_not_found());
    }
    if info.namespaced && ns.is_none() && !matches!(rr.verb, Verb::List | Verb::Watch) {
        return Err(ApiError::path_not_found());
    }
    if let Some(name) = rr.name.as_deref()
        && (name.is_empty()
            || name == "."
            || name == ".."
            || name.contains('/')
            || name.contains('%'))
    {
        return Err(ApiError::bad_request(format!(
            "{name:?} is not a valid name in a path"
        )));
    }
    let output = request::negotiate(accept).ok_or_else(|| {
        ApiError::not_acceptable("only the following media types are accepted: application/json, application/json;as=Table;g=meta.k8s.io;v=v1, application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1")
    })?;
    let include = IncludeObject::parse(query.get("includeObject"));
    let now = server.registry.now();
    let registry = &server.registry;
    let name = rr.name.clone().unwrap_or_default();
    let is_finalize = info.group.is_empty()
        && info.kind == "Namespace"
        && rr.subresource.as_deref() == Some("finalize");
    if let Some(ns) = ns
        && info.group.is_empty()
        && info.kind == "ServiceAccount"
        && rr.subresource.as_deref() == Some("token")
    {
        if rr.verb != Verb::Create {
            return Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            ));
        }
        let content_type = content_type(&req);
        let body = parse_body(content_type.as_deref(), &read_body(req).await?)?;
        let answer = crate::serviceaccount::create(
            registry,
            server.config.service_accounts.as_ref(),
            ns,
            &name,
            &body,
        )
        .await?;
        return Ok(json_response(201, &answer, "application/json", &[]));
    }
    let sub = if is_finalize {
        None
    } else {
        subresource(info, rr.subresource.as_deref())?
    };
    if let (Some(sub), Some(ns)) = (sub, ns)
        && info.group.is_empty()
        && info.kind == "Pod"
        && crate::streams::is_pod_stream(sub)
    {
        return crate::streams::pod(server, ns, &name, sub, &query, req).await;
    }
    let content_type = content_type(&req);

    let respond = |w: Written| -> Response<Body> {
        let obj = output::single(info, w.object, output, include, now);
        json_response(w.code, &obj, "application/json", &w.warnings)
    };

    match rr.verb {
        Verb::Get => match sub {
            None | Some(Subresource::Status) => {
                let obj = registry
                    .get(info, ns, &name, query.get("resourceVersion"))
                    .await?;
                Ok(ok_json(&output::single(info, obj, output, include, now)))
            }
            Some(Subresource::Scale) => {
                let obj = registry.get(info, ns, &name, None).await?;
                Ok(ok_json(&crate::scale::to_scale(&obj)))
            }
            Some(_) => Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            )),
        },
        Verb::List => {
            let opts = list_opts(&query)?;
            let page = registry.list(info, ns, &opts).await?;
            let body = output::list(
                info,
                page.items,
                page.revision,
                page.continue_token,
                output,
                include,
                now,
            );
            Ok(ok_json(&body))
        }
        Verb::Watch => {
            watch_response(server, info, rr.namespace.clone(), &query, output, include).await
        }
        Verb::Create => {
            let body = read_body(req).await?;
            match sub {
                None => {
                    let obj = parse_body(content_type.as_deref(), &body)?;
                    Ok(respond(
                        registry.create(info, ns, obj, &write_opts(&query)?).await?,
                    ))
                }
                Some(Subresource::Binding) => {
                    let obj = parse_body(content_type.as_deref(), &body)?;
                    let w =
                        crate::scale::bind(registry, info, ns, &name, &obj, &write_opts(&query)?)
                            .await?;
                    Ok(json_response(201, &w, "application/json", &[]))
                }
                Some(_) => Err(ApiError::method_not_allowed(
                    "the server does not allow this method on the requested resource",
                )),
            }
        }
        Verb::Update => {
            let body = parse_body(content_type.as_deref(), &read_body(req).await?)?;
            let opts = write_opts(&query)?;
            if is_finalize {
                return Ok(respond(
                    crate::namespaces::finalize(registry, &name, body, &opts).await?,
                ));
            }
            match sub {
                None | Some(Subresource::Status) => Ok(respond(
                    registry.update(info, ns, &name, sub, body, &opts).await?,
                )),
                Some(Subresource::Scale) => {
                    let scale = crate::scale::update(
                        registry,
                        info,
                        ns,
                        &name,
                        ScaleChange::Replace(body),
                        &opts,
                    )
                    .await?;
                    Ok(ok_json(&scale))
                }
                Some(_) => Err(ApiError::method_not_allowed(
                    "the server does not allow this method on the requested resource",
                )),
            }
        }
        Verb::Patch => {
            let patch_type = content_type
                .as_deref()
                .and_then(PatchType::from_content_type)
                .ok_or_else(|| {
                    ApiError::unsupported_media_type(content_type.as_deref().unwrap_or_default())
                })?;
            let doc = parse_json(&read_body(req).await?)?;
            let opts = write_opts(&query)?;
            match sub {
                None | Some(Subresource::Status) => Ok(respond(
                    registry
                        .patch(info, ns, &name, sub, patch_type, &doc, &opts)
                        .await?,
                )),
                Some(Subresource::Scale) => {
                    let scale = crate::scale::update(
                        registry,
                        info,
                        ns,
                        &name,
                        ScaleChange::Patch(patch_type, doc),
                        &opts,
                    )
                    .await?;
                    Ok(ok_json(&scale))
                }
                Some(_) => Err(ApiError::method_not_allowed(
                    "the server does not allow this method on the requested resource",
                )),
            }
        }
        Verb::Delete => {
            if sub.is_some() || is_finalize {
                return Err(ApiError::method_not_allowed(
                    "the server does not allow this method on the requested resource",
                ));
            }
            let body = read_body(req).await?;
            let opts = delete_opts(&query, content_type.as_deref(), &body)?;
            let mut w = registry.delete(info, ns, &name, &opts).await?;
            let pending = w.code == 202;
            if info.kind == "Pod" || pending {
                // A deletion still pending answers with the object: 200, or
                // 202 when the client explicitly set orphanDependents=false.
                if opts.orphan_dependents != Some(false) {
                    w.code = 200;
                }
                Ok(respond(w))
            } else {
                let uid = object::uid(&w.object).map(str::to_string);
                Ok(json_response(
                    200,
                    &crate::status::success(info, &name, uid.as_deref()),
                    "application/json",
                    &[],
                ))
            }
        }
        Verb::DeleteCollection => {
            let body = read_body(req).await?;
            let opts = delete_opts(&query, content_type.as_deref(), &body)?;
            let list = list_opts(&query)?;
            registry.delete_collection(info, ns, &list, &opts).await?;
            Ok(ok_json(
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
            ))
        }
    }
}

pub use crate::scale::ScaleChange;

async fn watch_response(
    server: &Arc<ApiServer>,
    info: &'static ResourceInfo,
    namespace: Option<String>,
    query: &Query,
    output: Output,
    include: IncludeObject,
) -> ApiResult<Response<Body>> {
    let opts = list_opts(query)?;
    let send_initial = query.bool("sendInitialEvents");
    let rv = opts.resource_version.as_deref();
    let start = match (send_initial, rv) {
        (Some(true), _) => Start::WithInitialState,
        (Some(false), None | Some("0")) => Start::Now,
        (None, None | Some("0")) => Start::WithInitialState,
        (_, Some(rv)) => {
            Start::After(rv.parse().ok().filter(|r: &i64| *r >= 0).ok_or_else(|| {
                ApiError::bad_request(format!("invalid resource version: {rv:?}"))
            })?)
        }
    };
    if send_initial == Some(true) && !query.flag("allowWatchBookmarks") {
        return Err(ApiError::new(
            422,
            "Invalid",
            "ListOptions.meta.k8s.io \"\" is invalid: allowWatchBookmarks: Required value: allowWatchBookmarks must be set to true when sendInitialEvents is specified",
        ));
    }
    let timeout = match query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
    {
        Some(t) if t > 0 => Duration::from_secs(t),
        _ => {
            use rand::Rng;
            Duration::from_secs(rand::rng().random_range(1800..3600))
        }
    };
    let req = WatchRequest {
        info,
        namespace,
        label: opts.label,
        field: opts.field,
        start,
        bookmarks: query.flag("allowWatchBookmarks"),
        initial_events_end: send_initial == Some(true),
        timeout,
        bookmark_interval: server.config.bookmark_interval,
    };
    let rx = watch::start(server.registry.clone(), req);
    let registry = server.registry.clone();
    let stream = futures::stream::unfold((rx, true), move |(mut rx, first)| {
        let registry = registry.clone();
        async move {
            let item = rx.recv().await?;
            let bytes = output::watch_frame(info, &item, output, include, first, registry.now());
            let first = first && !matches!(item, watch::WatchItem::Event { .. });
            Some((Ok::<_, Infallible>(Frame::data(bytes)), (rx, first)))
        }
    });
    let mut resp = Response::new(StreamBody::new(stream.boxed()).boxed_unsync());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}
