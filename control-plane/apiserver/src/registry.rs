//! Objects in the datastore: the generic create, read, update, patch and
//! delete that every resource shares, with upstream's semantics.
//!
//! Objects are stored as JSON under `/registry/<storage>/[<namespace>/]<name>`
//! without their `resourceVersion`; the datastore revision that wrote them
//! is their resourceVersion, filled in on the way out. Every write is a
//! compare-and-swap on that revision.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kedge_apimachinery::patch::{self, PatchType};
use kedge_apimachinery::selector::{FieldSelector, LabelSelector};
use kedge_apimachinery::validation::{NameRule, validate_object_meta, validate_object_meta_update};
use kedge_datastore::{Clock, KeyValue, ListRequest, Revision, Store, WriteOptions};
use kedge_resources::catalog::{ResourceInfo, Subresource};
use kedge_resources::{convert, defaults, typed, validate};
use serde_json::{Value, json};

use crate::allocator::{ServiceAllocator, ServiceNetworks};
use crate::cache::{self, WatchCache};
use crate::object;
use crate::status::{ApiError, ApiResult};

/// How many times an unconditional update or a patch is retried when a
/// concurrent write wins the compare-and-swap.
const MAX_RETRIES: usize = 16;

/// How long a read that names a future resourceVersion waits for it.
const FUTURE_RV_WAIT: Duration = Duration::from_secs(3);

/// `?fieldValidation=`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    #[default]
    Warn,
    Strict,
}

impl FieldValidation {
    pub fn parse(value: Option<&str>) -> ApiResult<FieldValidation> {
        match value {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation parameter unsupported: {other}. Supported values: Ignore, Warn, Strict"
            ))),
        }
    }
}

/// Options every write takes.
#[derive(Clone, Debug, Default)]
pub struct WriteOpts {
    pub dry_run: bool,
    pub field_validation: FieldValidation,
}

/// `DeleteOptions`, from the body or the query.
#[derive(Clone, Debug, Default)]
pub struct DeleteOpts {
    pub dry_run: bool,
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
    /// The deprecated `orphanDependents`, as given; `true` already turned
    /// into `propagation_policy` Orphan. Upstream answers 202 rather than
    /// 200 for a pending deletion only when it is explicitly `false`.
    pub orphan_dependents: Option<bool>,
}

/// What a list asks for.
#[derive(Clone, Debug, Default)]
pub struct ListOpts {
    pub label: LabelSelector,
    pub field: FieldSelector,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
}

/// A list page.
#[derive(Clone, Debug)]
pub struct ListResult {
    pub items: Vec<Value>,
    pub revision: Revision,
    pub continue_token: Option<String>,
}

/// The outcome of a write.
#[derive(Clone, Debug)]
pub struct Written {
    pub object: Value,
    /// 200, 201 or 202.
    pub code: u16,
    pub warnings: Vec<String>,
}

/// Objects in the datastore.
#[derive(Debug, Clone)]
pub struct Registry {
    store: Arc<dyn Store>,
    cache: Arc<WatchCache>,
    clock: Arc<dyn Clock>,
    services: Arc<ServiceAllocator>,
}

/// Whether writes of this resource get Service addresses.
fn allocates_addresses(info: &ResourceInfo, sub: Option<Subresource>) -> bool {
    info.group.is_empty() && info.kind == "Service" && sub.is_none()
}

pub fn key(info: &ResourceInfo, namespace: Option<&str>, name: &str) -> String {
    match (info.namespaced, namespace) {
        (true, Some(ns)) => format!("{}{}/{}/{}", cache::REGISTRY_PREFIX, info.storage, ns, name),
        _ => format!("{}{}/{}", cache::REGISTRY_PREFIX, info.storage, name),
    }
}

/// The prefix holding a resource's objects, in one namespace or in all.
pub fn prefix(info: &ResourceInfo, namespace: Option<&str>) -> String {
    match (info.namespaced, namespace) {
        (true, Some(ns)) => format!("{}{}/{}/", cache::REGISTRY_PREFIX, info.storage, ns),
        _ => format!("{}{}/", cache::REGISTRY_PREFIX, info.storage),
    }
}

fn parse_rv(rv: &str) -> ApiResult<Revision> {
    rv.parse::<Revision>()
        .ok()
        .filter(|r| *r >= 0)
        .ok_or_else(|| ApiError::bad_request(format!("invalid resource version: {rv:?}")))
}

/// Decodes a stored object, with its resourceVersion, into `info`'s shape.
fn from_kv(info: &ResourceInfo, kv: &KeyValue) -> ApiResult<Value> {
    cache::decode(&kv.value, kv.mod_revision)
        .map(|obj| convert::from_storage(info, obj))
        .ok_or_else(|| ApiError::internal(format!("stored object at {} is not valid JSON", kv.key)))
}

/// The bytes to store: the object in its stored shape, without its
/// resourceVersion.
fn encode(info: &ResourceInfo, obj: &Value) -> ApiResult<Bytes> {
    let mut obj = convert::to_storage(info, obj.clone());
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    serde_json::to_vec(&obj)
        .map(Bytes::from)
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// Random suffix for generateName, from upstream's alphabet (no vowels, no
/// look-alike digits).
fn random_suffix() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Everything but `metadata` and `status`: a change here bumps generation.
fn spec_part(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(map) = v.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
        map.remove("apiVersion");
        map.remove("kind");
    }
    v
}

/// Whether two objects are the same apart from the resourceVersion.
fn same_object(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
        }
        v
    };
    strip(a) == strip(b)
}

impl Registry {
    pub fn new(
        store: Arc<dyn Store>,
        cache: Arc<WatchCache>,
        clock: Arc<dyn Clock>,
        networks: ServiceNetworks,
    ) -> Registry {
        let services = Arc::new(ServiceAllocator::new(
            store.clone(),
            clock.clone(),
            networks,
        ));
        Registry {
            store,
            cache,
            clock,
            services,
        }
    }

    /// The Service address allocator.
    pub fn services(&self) -> &Arc<ServiceAllocator> {
        &self.services
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn cache(&self) -> &Arc<WatchCache> {
        &self.cache
    }

    pub fn now(&self) -> std::time::SystemTime {
        self.clock.now()
    }

    async fn read(&self, info: &ResourceInfo, ns: Option<&str>, name: &str) -> ApiResult<KeyValue> {
        self.store
            .get(&key(info, ns, name), None)
            .await
            .map_err(|e| ApiError::from_store(info, name, e))?
            .ok_or_else(|| ApiError::not_found(info, name))
    }

    /// Waits until the store has reached `revision`, as upstream waits for
    /// its cache before answering a read at a future resourceVersion.
    async fn wait_for_revision(&self, revision: Revision) -> ApiResult<()> {
        let deadline = tokio::time::Instant::now() + FUTURE_RV_WAIT;
        loop {
            let current = self
                .store
                .current_revision()
                .await
                .map_err(|e| ApiError::unavailable(e.to_string()))?;
            if current >= revision {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ApiError::timeout(format!(
                    "Too large resource version: {revision}, current: {current}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// GET of one object.
    pub async fn get(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        rv: Option<&str>,
    ) -> ApiResult<Value> {
        let revision = match rv {
            None | Some("") | Some("0") => None,
            Some(rv) => {
                // A get at a resourceVersion means "not older than" it.
                self.wait_for_revision(parse_rv(rv)?).await?;
                None
            }
        };
        let kv = self
            .store
            .get(&key(info, ns, name), revision)
            .await
            .map_err(|e| ApiError::from_store(info, name, e))?
            .ok_or_else(|| ApiError::not_found(info, name))?;
        let mut obj = from_kv(info, &kv)?;
        object::set_type_meta(&mut obj, info);
        Ok(obj)
    }

    /// LIST, one page, filtered.
    pub async fn list(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        opts: &ListOpts,
    ) -> ApiResult<ListResult> {
        let exact = match opts.resource_version_match.as_deref() {
            None | Some("") => false,
            Some("NotOlderThan") => false,
            Some("Exact") => true,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "resourceVersionMatch: Unsupported value: {other:?}: supported values: \"Exact\", \"NotOlderThan\""
                )));
            }
        };
        let rv = opts.resource_version.as_deref().filter(|r| !r.is_empty());
        let mut at: Option<Revision> = None;
        if opts.continue_token.is_none() {
            match rv {
                None if opts.resource_version_match.is_some() => {
                    return Err(ApiError::bad_request(
                        "resourceVersionMatch is forbidden unless resourceVersion is provided",
                    ));
                }
                None | Some("0") if exact => {
                    return Err(ApiError::bad_request(
                        "resourceVersionMatch \"Exact\" is forbidden for resourceVersion \"0\"",
                    ));
                }
                None | Some("0") => {}
                Some(rv) => {
                    let r = parse_rv(rv)?;
                    if exact {
                        at = Some(r);
                    } else {
                        self.wait_for_revision(r).await?;
                    }
                }
            }
        }
        let filtering = !opts.label.is_empty() || !opts.field.is_empty();
        let mut items = Vec::new();
        let mut token = opts.continue_token.clone();
        let mut revision;
        loop {
            let mut req = ListRequest::prefix(prefix(info, ns));
            if let Some(r) = at {
                req = req.at_revision(r);
            }
            if let Some(limit) = opts.limit {
                req = req.limit(limit.saturating_sub(items.len()).max(1));
            }
            if let Some(t) = &token {
                req = req.continue_from(t.clone());
            }
            let page = self.store.list(&req).await.map_err(|e| match e {
                kedge_datastore::Error::Compacted { .. } if token.is_some() => ApiError::expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                ),
                kedge_datastore::Error::Compacted { .. } => {
                    ApiError::expired("The resourceVersion for the provided list is too old.")
                }
                other => ApiError::from_store(info, "", other),
            })?;
            revision = page.revision;
            at = Some(page.revision);
            for kv in &page.kvs {
                let obj = from_kv(info, kv)?;
                if !filtering || matches(info, &obj, &opts.label, &opts.field)? {
                    items.push(obj);
                }
            }
            token = page.continue_token;
            let full = opts.limit.is_some_and(|l| items.len() >= l);
            if token.is_none() || full || opts.limit.is_none() {
                break;
            }
        }
        for item in &mut items {
            object::set_type_meta(item, info);
        }
        Ok(ListResult {
            items,
            revision,
            continue_token: token,
        })
    }

    /// Decodes a body through its type: checks apiVersion and kind, drops
    /// unknown fields (or refuses them, under Strict).
    pub fn decode_body(
        &self,
        info: &ResourceInfo,
        mut body: Value,
        opts: &WriteOpts,
    ) -> ApiResult<(Value, Vec<String>)> {
        if !body.is_object() {
            return Err(ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: the body is not a JSON object",
                info.kind,
                info.group_version(),
                info.kind
            )));
        }
        let gv = info.group_version();
        match body.get("apiVersion").and_then(Value::as_str) {
            Some(v) if v != gv => {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({v}) does not match the expected API version ({gv})"
                )));
            }
            _ => {}
        }
        match body.get("kind").and_then(Value::as_str) {
            Some(k) if k != info.kind => {
                return Err(ApiError::bad_request(format!(
                    "{} in version \"{}\" cannot be handled as a {}: the kind in the data ({k}) does not match",
                    k, gv, info.kind
                )));
            }
            _ => {}
        }
        object::set_type_meta(&mut body, info);
        let decoded =
            typed::normalize(info, body).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let mut warnings = Vec::new();
        if !decoded.unknown_fields.is_empty() {
            let msgs: Vec<String> = decoded
                .unknown_fields
                .iter()
                .map(|f| format!("unknown field \"{f}\""))
                .collect();
            match opts.field_validation {
                FieldValidation::Strict => {
                    return Err(ApiError::bad_request(format!(
                        "strict decoding error: {}",
                        msgs.join(", ")
                    )));
                }
                FieldValidation::Warn => warnings = msgs,
                FieldValidation::Ignore => {}
            }
        }
        Ok((decoded.object, warnings))
    }

    /// NamespaceLifecycle admission: the namespace must exist and not be
    /// terminating.
    async fn check_namespace(&self, info: &ResourceInfo, ns: &str) -> ApiResult<()> {
        if !info.namespaced {
            return Ok(());
        }
        let namespaces = namespaces_info();
        let kv = self
            .store
            .get(&key(namespaces, None, ns), None)
            .await
            .map_err(|e| ApiError::from_store(namespaces, ns, e))?;
        let Some(kv) = kv else {
            return Err(ApiError::not_found(namespaces, ns));
        };
        let nsobj = from_kv(namespaces, &kv)?;
        if object::is_deleting(&nsobj) {
            let mut err = ApiError::forbidden(format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ));
            err.details = Some(
                json!({"group": info.group, "kind": info.plural, "causes": [{
                    "reason": "NamespaceTerminating",
                    "message": format!("namespace {ns} is being terminated"),
                    "field": "metadata.namespace"
                }]}),
            );
            return Err(err);
        }
        Ok(())
    }

    /// CREATE.
    pub async fn create(
        &self,
        info: &'static ResourceInfo,
        ns: Option<&str>,
        body: Value,
        opts: &WriteOpts,
    ) -> ApiResult<Written> {
        let (mut obj, warnings) = self.decode_body(info, body, opts)?;
        let ns = self.fix_namespace(info, ns, &mut obj)?;
        let now = object::timestamp(self.clock.now());
        {
            if object::resource_version(&obj).is_some() {
                return Err(ApiError::bad_request(
                    "resourceVersion should not be set on objects to be created",
                ));
            }
            let meta = object::metadata_mut(&mut obj);
            let has_name = meta
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty());
            if !has_name
                && let Some(base) = meta
                    .get("generateName")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
            {
                let base: String = base.chars().take(58).collect();
                let name = format!("{base}{}", random_suffix());
                meta.insert("name".into(), json!(name));
            }
            meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            meta.insert("creationTimestamp".into(), json!(now));
            meta.remove("deletionTimestamp");
            meta.remove("deletionGracePeriodSeconds");
            meta.remove("managedFields");
            meta.remove("selfLink");
            if info.generation {
                meta.insert("generation".into(), json!(1));
            } else {
                meta.remove("generation");
            }
        }
        reset_status_on_create(info, &mut obj);
        generate_job_selector(info, &mut obj);
        defaults::apply(info.group, info.kind, &mut obj);
        let name = object::name(&obj).unwrap_or_default().to_string();
        // The kind's own validation checks the metadata too. As upstream's
        // BeforeCreate, the generic common-field check runs only when that
        // passed, so no problem is reported twice.
        let mut errors = validate::validate(info.group, info.kind, &obj, None);
        if errors.is_empty() {
            errors = validate_object_meta(
                object::metadata(&obj),
                info.namespaced,
                NameRule::PathSegment,
            );
        }
        if !errors.is_empty() {
            return Err(ApiError::invalid(info, &name, &errors));
        }
        if let Some(ns) = ns.as_deref() {
            self.check_namespace(info, ns).await?;
        }
        if opts.dry_run {
            return Ok(Written {
                object: obj,
                code: 201,
                warnings,
            });
        }
        let reserved = if allocates_addresses(info, None) {
            Some(self.services.allocate(&mut obj, None).await?)
        } else {
            None
        };
        let created = match encode(info, &obj) {
            Ok(bytes) => self
                .store
                .create(&key(info, ns.as_deref(), &name), bytes, write_options(info))
                .await
                .map_err(|e| ApiError::from_store(info, &name, e)),
            Err(e) => Err(e),
        };
        let kv = match created {
            Ok(kv) => kv,
            Err(e) => {
                if let Some(reserved) = reserved {
                    self.services.release(reserved).await;
                }
                return Err(e);
            }
        };
        object::set_resource_version(&mut obj, kv.mod_revision);
        Ok(Written {
            object: obj,
            code: 201,
            warnings,
        })
    }

    /// Makes the object's namespace agree with the URL's.
    fn fix_namespace(
        &self,
        info: &ResourceInfo,
        url_ns: Option<&str>,
        obj: &mut Value,
    ) -> ApiResult<Option<String>> {
        if !info.namespaced {
            object::metadata_mut(obj).remove("namespace");
            return Ok(None);
        }
        let Some(url_ns) = url_ns else {
            return Err(ApiError::bad_request(format!(
                "the server could not find the requested resource: {} is namespaced; name a namespace in the path",
                info.plural
            )));
        };
        match object::namespace(obj) {
            Some(body_ns) if body_ns != url_ns => Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            )),
            _ => {
                object::metadata_mut(obj).insert("namespace".into(), json!(url_ns));
                Ok(Some(url_ns.to_string()))
            }
        }
    }

    /// UPDATE (PUT), of the object or of its status.
    pub async fn update(
        &self,
        info: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        sub: Option<Subresource>,
        body: Value,
        opts: &WriteOpts,
    ) -> ApiResult<Written> {
        let (mut obj, warnings) = self.decode_body(info, body, opts)?;
        self.fix_namespace(info, ns, &mut obj)?;
        match object::name(&obj) {
            Some(n) if n != name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
            None => {
                object::metadata_mut(&mut obj).insert("name".into(), json!(name));
            }
            _ => {}
        }
        let precondition = object::resource_version(&obj).map(parse_rv).transpose()?;
        self.guaranteed_update(info, ns, name, sub, opts, |_old| {
            Ok((obj.clone(), warnings.clone(), precondition))
        })
        .await
    }

    /// PATCH, of the object or of its status.
    #[allow(clippy::too_many_arguments)]
    pub async fn patch(
        &self,
        info: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        sub: Option<Subresource>,
        patch_type: PatchType,
        patch_doc: &Value,
        opts: &WriteOpts,
    ) -> ApiResult<Written> {
        self.guaranteed_update(info, ns, name, sub, opts, |old| {
            let patched = apply_patch(info, old, patch_type, patch_doc)?;
            // A resourceVersion the patch sets is a precondition.
            let precondition = match object::resource_version(&patched) {
                Some(rv) if Some(rv) != object::resource_version(old) => Some(parse_rv(rv)?),
                _ => None,
            };
            let (obj, warnings) = self.decode_body(info, patched, opts)?;
            if object::name(&obj) != Some(name) {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    object::name(&obj).unwrap_or_default()
                )));
            }
            Ok((obj, warnings, precondition))
        })
        .await
    }

    /// Reads the object, asks `next` for the object to write (with its
    /// warnings and resourceVersion precondition), and writes it with
    /// compare-and-swap; a lost CAS re-reads and asks again, unless the
    /// request named a resourceVersion, which then conflicts (409).
    async fn guaranteed_update(
        &self,
        info: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        sub: Option<Subresource>,
        opts: &WriteOpts,
        mut next: impl FnMut(&Value) -> ApiResult<(Value, Vec<String>, Option<Revision>)>,
    ) -> ApiResult<Written> {
        let mut current = self.read(info, ns, name).await?;
        for _ in 0..MAX_RETRIES {
            let mut old = from_kv(info, &current)?;
            object::set_type_meta(&mut old, info);
            let (mut obj, warnings, precondition) = next(&old)?;
            if precondition.is_some_and(|rv| rv != current.mod_revision) {
                return Err(ApiError::modified(info, name));
            }
            let reserved = if allocates_addresses(info, sub) && !opts.dry_run {
                Some(self.services.allocate(&mut obj, Some(&old)).await?)
            } else {
                None
            };
            let attempt = self
                .write_update(info, ns, name, sub, &old, &current, obj, opts)
                .await;
            if !matches!(attempt, Ok(Attempt::Done(_)))
                && let Some(reserved) = reserved
            {
                self.services.release(reserved).await;
            }
            match attempt? {
                Attempt::Done(mut written) => {
                    written.warnings = warnings;
                    return Ok(written);
                }
                Attempt::Conflict(_) if precondition.is_some() => {
                    return Err(ApiError::modified(info, name));
                }
                Attempt::Conflict(now) => current = now,
            }
        }
        Err(ApiError::modified(info, name))
    }

    /// Prepares, validates and writes one update attempt against `current`.
    #[allow(clippy::too_many_arguments)]
    async fn write_update(
        &self,
        info: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        sub: Option<Subresource>,
        old: &Value,
        current: &KeyValue,
        new: Value,
        opts: &WriteOpts,
    ) -> ApiResult<Attempt> {
        let mut obj = prepare_update(info, sub, old, new);
        defaults::apply(info.group, info.kind, &mut obj);
        // As on create: the kind's own validation (which checks the
        // metadata update), then, only if that passed, upstream's generic
        // common-field checks.
        let mut errors = validate::validate(info.group, info.kind, &obj, Some(old));
        if errors.is_empty() {
            let meta = object::metadata(&obj);
            errors = validate_object_meta(meta, info.namespaced, NameRule::PathSegment);
            errors.extend(validate_object_meta_update(meta, object::metadata(old)));
        }
        if !errors.is_empty() {
            return Err(ApiError::invalid(info, name, &errors));
        }
        // A deleting object whose last finalizer is removed goes away.
        if object::is_deleting(&obj)
            && object::finalizers(&obj).is_empty()
            && !pending_grace(info, &obj)
            && !namespace_finalizing(info, &obj)
        {
            if opts.dry_run {
                return Ok(Attempt::Done(Written {
                    object: obj,
                    code: 200,
                    warnings: vec![],
                }));
            }
            return match self
                .store
                .delete(&key(info, ns, name), Some(current.mod_revision))
                .await
            {
                Ok(deleted) => {
                    object::set_resource_version(&mut obj, deleted.revision);
                    Ok(Attempt::Done(Written {
                        object: obj,
                        code: 200,
                        warnings: vec![],
                    }))
                }
                Err(kedge_datastore::Error::Conflict { current, .. }) => {
                    Ok(Attempt::Conflict(*current))
                }
                Err(e) => Err(ApiError::from_store(info, name, e)),
            };
        }
        if same_object(&obj, old) {
            let mut obj = old.clone();
            object::set_type_meta(&mut obj, info);
            return Ok(Attempt::Done(Written {
                object: obj,
                code: 200,
                warnings: vec![],
            }));
        }
        if opts.dry_run {
            return Ok(Attempt::Done(Written {
                object: obj,
                code: 200,
                warnings: vec![],
            }));
        }
        match self
            .store
            .update(
                &key(info, ns, name),
                encode(info, &obj)?,
                current.mod_revision,
                write_options(info),
            )
            .await
        {
            Ok(kv) => {
                object::set_resource_version(&mut obj, kv.mod_revision);
                Ok(Attempt::Done(Written {
                    object: obj,
                    code: 200,
                    warnings: vec![],
                }))
            }
            Err(kedge_datastore::Error::Conflict { current, .. }) => {
                Ok(Attempt::Conflict(*current))
            }
            Err(kedge_datastore::Error::NotFound { .. }) => Err(ApiError::not_found(info, name)),
            Err(e) => Err(ApiError::from_store(info, name, e)),
        }
    }

    /// Writes `obj` as it is, compare-and-swap on its resourceVersion. For
    /// the system's own changes (binding a pod, finalizing a namespace),
    /// which upstream also makes below the checks of an ordinary update.
    pub(crate) async fn update_spec_unchecked(
        &self,
        info: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        mut obj: Value,
        opts: &WriteOpts,
    ) -> ApiResult<Written> {
        let rv = object::resource_version(&obj)
            .ok_or_else(|| ApiError::internal("unchecked update without a resourceVersion"))?;
        let rv = parse_rv(rv)?;
        if opts.dry_run {
            return Ok(Written {
                object: obj,
                code: 200,
                warnings: vec![],
            });
        }
        let kv = self
            .store
            .update(
                &key(info, ns, name),
                encode(info, &obj)?,
                rv,
                write_options(info),
            )
            .await
            .map_err(|e| ApiError::from_store(info, name, e))?;
        object::set_resource_version(&mut obj, kv.mod_revision);
        Ok(Written {
            object: obj,
            code: 200,
            warnings: vec![],
        })
    }

    /// Removes an object for good, compare-and-swap on its resourceVersion:
    /// the last step of a finalized deletion.
    pub(crate) async fn remove(
        &self,
        info: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        mut obj: Value,
    ) -> ApiResult<Written> {
        let rv = object::resource_version(&obj)
            .ok_or_else(|| ApiError::internal("remove without a resourceVersion"))?;
        let rv = parse_rv(rv)?;
        let deleted = self
            .store
            .delete(&key(info, ns, name), Some(rv))
            .await
            .map_err(|e| ApiError::from_store(info, name, e))?;
        object::set_resource_version(&mut obj, deleted.revision);
        Ok(Written {
            object: obj,
            code: 200,
            warnings: vec![],
        })
    }

    /// DELETE of one object.
    pub async fn delete(
        &self,
        info: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOpts,
    ) -> ApiResult<Written> {
        for _ in 0..MAX_RETRIES {
            let current = self.read(info, ns, name).await?;
            let mut obj = from_kv(info, &current)?;
            object::set_type_meta(&mut obj, info);
            if let Some(uid) = &opts.precondition_uid {
                let actual = object::uid(&obj).unwrap_or_default();
                if uid != actual {
                    return Err(ApiError::conflict(
                        info,
                        name,
                        &format!(
                            "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"
                        ),
                    ));
                }
            }
            if let Some(rv) = &opts.precondition_resource_version {
                let actual = current.mod_revision.to_string();
                if *rv != actual {
                    return Err(ApiError::conflict(
                        info,
                        name,
                        &format!(
                            "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {actual}"
                        ),
                    ));
                }
            }
            let mut finalizers = object::finalizers(&obj);
            match opts.propagation_policy.as_deref() {
                None | Some("Background") => {}
                Some("Foreground") => add_finalizer(&mut finalizers, "foregroundDeletion"),
                Some("Orphan") => add_finalizer(&mut finalizers, "orphan"),
                Some(other) => {
                    return Err(ApiError::bad_request(format!(
                        "propagationPolicy: Unsupported value: {other:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
                    )));
                }
            }
            let grace = graceful_period(info, &obj, opts.grace_period_seconds);
            let namespace_finalizers = info.kind == "Namespace"
                && obj
                    .pointer("/spec/finalizers")
                    .and_then(Value::as_array)
                    .is_some_and(|f| !f.is_empty());
            if !finalizers.is_empty() || grace.is_some() || namespace_finalizers {
                // Deletion becomes a state: set deletionTimestamp and wait for
                // the finalizers (or the kubelet) to finish.
                if object::is_deleting(&obj) && finalizers == object::finalizers(&obj) {
                    return Ok(Written {
                        object: obj,
                        code: 202,
                        warnings: vec![],
                    });
                }
                let now = self.clock.now();
                let at = now + Duration::from_secs(grace.unwrap_or(0).max(0) as u64);
                {
                    let meta = object::metadata_mut(&mut obj);
                    if meta.get("deletionTimestamp").is_none_or(Value::is_null) {
                        meta.insert("deletionTimestamp".into(), json!(object::timestamp(at)));
                        meta.insert(
                            "deletionGracePeriodSeconds".into(),
                            json!(grace.unwrap_or(0)),
                        );
                    }
                    if finalizers.is_empty() {
                        meta.remove("finalizers");
                    } else {
                        meta.insert("finalizers".into(), json!(finalizers));
                    }
                }
                if info.kind == "Namespace" && info.group.is_empty() {
                    obj["status"]["phase"] = json!("Terminating");
                }
                if opts.dry_run {
                    return Ok(Written {
                        object: obj,
                        code: 202,
                        warnings: vec![],
                    });
                }
                match self
                    .store
                    .update(
                        &key(info, ns, name),
                        encode(info, &obj)?,
                        current.mod_revision,
                        write_options(info),
                    )
                    .await
                {
                    Ok(kv) => {
                        object::set_resource_version(&mut obj, kv.mod_revision);
                        return Ok(Written {
                            object: obj,
                            code: 202,
                            warnings: vec![],
                        });
                    }
                    Err(kedge_datastore::Error::Conflict { .. }) => continue,
                    Err(e) => return Err(ApiError::from_store(info, name, e)),
                }
            }
            if opts.dry_run {
                return Ok(Written {
                    object: obj,
                    code: 200,
                    warnings: vec![],
                });
            }
            match self
                .store
                .delete(&key(info, ns, name), Some(current.mod_revision))
                .await
            {
                Ok(deleted) => {
                    object::set_resource_version(&mut obj, deleted.revision);
                    return Ok(Written {
                        object: obj,
                        code: 200,
                        warnings: vec![],
                    });
                }
                Err(kedge_datastore::Error::Conflict { .. }) => continue,
                Err(kedge_datastore::Error::NotFound { .. }) => {
                    return Err(ApiError::not_found(info, name));
                }
                Err(e) => return Err(ApiError::from_store(info, name, e)),
            }
        }
        Err(ApiError::modified(info, name))
    }

    /// DELETECOLLECTION: every matching object, each deleted as DELETE would.
    pub async fn delete_collection(
        &self,
        info: &'static ResourceInfo,
        ns: Option<&str>,
        list: &ListOpts,
        opts: &DeleteOpts,
    ) -> ApiResult<Vec<Value>> {
        let page = self
            .list(
                info,
                ns,
                &ListOpts {
                    limit: None,
                    continue_token: None,
                    ..list.clone()
                },
            )
            .await?;
        let mut deleted = Vec::new();
        for item in page.items {
            let name = object::name(&item).unwrap_or_default().to_string();
            let item_ns = object::namespace(&item).map(str::to_string);
            match self.delete(info, item_ns.as_deref(), &name, opts).await {
                Ok(w) => deleted.push(w.object),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(deleted)
    }
}

enum Attempt {
    Done(Written),
    Conflict(KeyValue),
}

/// Events expire an hour after their last write, as upstream's `--event-ttl`.
fn write_options(info: &ResourceInfo) -> WriteOptions {
    if info.storage == "events" {
        WriteOptions::ttl(Duration::from_secs(3600))
    } else {
        WriteOptions::default()
    }
}

pub fn namespaces_info() -> &'static ResourceInfo {
    kedge_resources::catalog::find("", "v1", "namespaces").expect("namespaces are in the catalogue")
}

fn add_finalizer(finalizers: &mut Vec<String>, f: &str) {
    if !finalizers.iter().any(|x| x == f) {
        finalizers.push(f.to_string());
    }
}

/// Pods bound to a node are deleted gracefully: the kubelet stops them and
/// then deletes them for good. Everything else goes at once.
fn graceful_period(info: &ResourceInfo, obj: &Value, requested: Option<i64>) -> Option<i64> {
    if !(info.group.is_empty() && info.kind == "Pod") {
        return None;
    }
    let bound = obj
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    let finished = matches!(
        obj.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    );
    if !bound || finished {
        return None;
    }
    let grace = requested
        .or_else(|| {
            obj.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
        })
        .unwrap_or(30);
    if grace <= 0 { None } else { Some(grace) }
}

/// A pod waiting out its grace period stays even without finalizers.
fn pending_grace(info: &ResourceInfo, obj: &Value) -> bool {
    info.group.is_empty()
        && info.kind == "Pod"
        && obj
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .is_some_and(|g| g > 0)
}

/// A namespace stays while its `spec.finalizers` (the namespace task's
/// `kubernetes`) are not done.
fn namespace_finalizing(info: &ResourceInfo, obj: &Value) -> bool {
    info.group.is_empty()
        && info.kind == "Namespace"
        && obj
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty())
}

/// Status is set by the system, not by the creator, for most types.
fn reset_status_on_create(info: &ResourceInfo, obj: &mut Value) {
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    match (info.group, info.kind) {
        ("", "Pod") => {
            map.insert(
                "status".into(),
                json!({"phase": "Pending", "qosClass": qos_class(map.get("spec"))}),
            );
        }
        ("", "Namespace") => {
            map.insert("status".into(), json!({"phase": "Active"}));
        }
        ("", "Service") => {
            map.insert("status".into(), json!({"loadBalancer": {}}));
        }
        // Nodes report their own status when they register.
        ("", "Node") => {}
        _ if info.has(Subresource::Status) => {
            map.insert("status".into(), json!({}));
        }
        _ => {}
    }
}

/// A Job without a selector gets one that matches only its own pods, from
/// its uid, as upstream's job strategy generates it.
fn generate_job_selector(info: &ResourceInfo, obj: &mut Value) {
    if info.group != "batch" || info.kind != "Job" {
        return;
    }
    if obj.pointer("/spec/manualSelector").and_then(Value::as_bool) == Some(true)
        || obj.pointer("/spec/selector").is_some()
    {
        return;
    }
    let uid = object::uid(obj).unwrap_or_default().to_string();
    let name = object::name(obj).unwrap_or_default().to_string();
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    spec.insert(
        "selector".into(),
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
    );
    let template = spec.entry("template").or_insert_with(|| json!({}));
    if !template.is_object() {
        return;
    }
    let meta = object::metadata_mut(template);
    let labels = meta.entry("labels").or_insert_with(|| json!({}));
    if let Some(labels) = labels.as_object_mut() {
        for (k, v) in [
            ("batch.kubernetes.io/controller-uid", &uid),
            ("batch.kubernetes.io/job-name", &name),
            ("controller-uid", &uid),
            ("job-name", &name),
        ] {
            labels.insert(k.into(), json!(v));
        }
    }
}

/// The pod's QoS class, as upstream computes it from requests and limits.
fn qos_class(spec: Option<&Value>) -> &'static str {
    let Some(spec) = spec else {
        return "BestEffort";
    };
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|k| spec.get(*k).and_then(Value::as_array))
        .flatten()
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let requests = c.pointer("/resources/requests").and_then(Value::as_object);
        let limits = c.pointer("/resources/limits").and_then(Value::as_object);
        if requests.is_some_and(|r| !r.is_empty()) || limits.is_some_and(|l| !l.is_empty()) {
            any = true;
        }
        for res in ["cpu", "memory"] {
            let limit = limits.and_then(|l| l.get(res));
            let request = requests.and_then(|r| r.get(res)).or(limit);
            if limit.is_none() || request != limit {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Builds the object an update writes, from the old one and the request.
fn prepare_update(info: &ResourceInfo, sub: Option<Subresource>, old: &Value, new: Value) -> Value {
    let mut obj = if sub == Some(Subresource::Status) {
        // A status update changes the status and nothing else.
        let mut o = old.clone();
        if let Some(map) = o.as_object_mut() {
            match new.get("status") {
                Some(s) => map.insert("status".into(), s.clone()),
                None => map.remove("status"),
            };
        }
        o
    } else {
        let mut o = new;
        if info.has(Subresource::Status)
            && let Some(map) = o.as_object_mut()
        {
            match old.get("status") {
                Some(s) => map.insert("status".into(), s.clone()),
                None => map.remove("status"),
            };
        }
        // Namespace finalizers change only through /finalize.
        if info.group.is_empty()
            && info.kind == "Namespace"
            && let Some(f) = old.pointer("/spec/finalizers")
        {
            o["spec"]["finalizers"] = f.clone();
        }
        o
    };
    // System fields come from the stored object.
    let old_meta = object::metadata(old).clone();
    let meta = object::metadata_mut(&mut obj);
    for field in [
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        match old_meta.get(field) {
            Some(v) => meta.insert(field.into(), v.clone()),
            None => meta.remove(field),
        };
    }
    if meta
        .get("uid")
        .is_none_or(|u| u.as_str().is_some_and(str::is_empty))
        && let Some(uid) = old_meta.get("uid")
    {
        meta.insert("uid".into(), uid.clone());
    }
    meta.remove("managedFields");
    meta.remove("selfLink");
    let old_generation = old_meta.get("generation").and_then(Value::as_i64);
    if info.generation {
        let bump = spec_part(&obj) != spec_part(old);
        let g = old_generation.unwrap_or(1) + i64::from(bump);
        object::metadata_mut(&mut obj).insert("generation".into(), json!(g));
    } else {
        let meta = object::metadata_mut(&mut obj);
        match old_generation {
            Some(g) => meta.insert("generation".into(), json!(g)),
            None => meta.remove("generation"),
        };
    }
    object::set_type_meta(&mut obj, info);
    obj
}

/// Applies a patch document to the current object.
fn apply_patch(
    info: &ResourceInfo,
    old: &Value,
    patch_type: PatchType,
    doc: &Value,
) -> ApiResult<Value> {
    let result = match patch_type {
        PatchType::Json => patch::json::apply(old, doc),
        PatchType::Merge => patch::merge::apply(old, doc),
        PatchType::StrategicMerge => {
            match kedge_resources::openapi::patch_schema(info.definition) {
                Some(schema) => patch::strategic::apply(old, doc, &schema),
                None => patch::strategic::apply(old, doc, &kedge_apimachinery::schema::Unknown),
            }
        }
        PatchType::Apply => {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                "server-side apply is not supported yet; use client-side kubectl apply",
            ));
        }
    };
    result.map_err(patch_error)
}

/// A patch that cannot be applied, answered as upstream answers it.
pub fn patch_error(e: kedge_apimachinery::patch::PatchError) -> ApiError {
    match e.status_code() {
        400 => ApiError::bad_request(e.status_message()),
        413 => ApiError::new(413, "RequestEntityTooLarge", e.status_message()),
        422 => {
            // Upstream's message is a fixed sentence; the detail helps more.
            ApiError::new(
                422,
                "Invalid",
                format!("the server rejected our request due to an error in our request: {e}"),
            )
        }
        _ => ApiError::new(500, "InternalError", e.status_message()),
    }
}
/// Whether an object passes the label and field selectors.
pub fn matches(
    info: &ResourceInfo,
    obj: &Value,
    label: &LabelSelector,
    field: &FieldSelector,
) -> ApiResult<bool> {
    if !label.matches(&object::labels(obj)) {
        return Ok(false);
    }
    let mut unsupported = None;
    let ok = field.matches(|f| match object::field_value(info, obj, f) {
        Ok(v) => v,
        Err(e) => {
            unsupported = Some(e);
            None
        }
    });
    match unsupported {
        Some(e) => Err(ApiError::bad_request(e)),
        None => Ok(ok),
    }
}
