//! Namespace lifecycle: the namespaces every cluster has, the `finalize`
//! subresource, and emptying a namespace before it goes away.
//!
//! Deleting a namespace marks it Terminating (its `kubernetes` finalizer
//! keeps it). The finalizer task then deletes everything in it, and once
//! nothing is left removes the finalizer, which deletes the namespace.

use std::collections::BTreeSet;
use std::time::Duration;

use kedge_resources::catalog::{self, ResourceInfo};
use serde_json::{Value, json};

use crate::object;
use crate::registry::{self, DeleteOpts, ListOpts, Registry, WriteOpts, Written};
use crate::status::{ApiError, ApiResult};

/// The namespaces that always exist.
pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// The `default/kubernetes` Service, at the first address of the service
/// network, and its Endpoints, which list this server (`host:port`, an IP
/// host). Other servers add themselves; nothing is removed. A loopback
/// address cannot be an endpoint (upstream's validation refuses it), so a
/// server advertising one publishes the Service alone.
pub async fn bootstrap_kubernetes_service(
    registry: &Registry,
    cluster_ip: std::net::Ipv4Addr,
    advertise: &str,
) -> ApiResult<()> {
    let (Some(svc_info), Some(ep_info)) = (
        catalog::find("", "v1", "services"),
        catalog::find("", "v1", "endpoints"),
    ) else {
        return Err(ApiError::internal(
            "services or endpoints missing from the catalogue",
        ));
    };
    let (host, port) = advertise
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.trim_matches(['[', ']']), p.parse::<u16>().ok()?)))
        .ok_or_else(|| {
            ApiError::internal(format!("advertise address {advertise:?} is not host:port"))
        })?;
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"clusterIP": cluster_ip.to_string(),
                 "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]},
    });
    // Look first: on a restart the Service exists and holds its address,
    // which a create would report as an address already allocated.
    let exists = match registry
        .get(svc_info, Some("default"), "kubernetes", None)
        .await
    {
        Ok(_) => true,
        Err(e) if e.code == 404 => false,
        Err(e) => return Err(e),
    };
    if !exists {
        match registry
            .create(svc_info, Some("default"), service, &WriteOpts::default())
            .await
        {
            Ok(_) => tracing::info!(cluster_ip = %cluster_ip, "created the kubernetes Service"),
            // Another server got there first.
            Err(e) if e.reason == "AlreadyExists" || e.code == 422 => {}
            Err(e) => return Err(e),
        }
    }
    let routable = host
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| !ip.is_loopback() && !ip.is_unspecified());
    if !routable {
        tracing::info!(advertise = %advertise, "not publishing kubernetes Endpoints for a loopback address; set --advertise-address to the server's IP");
        return Ok(());
    }
    let address = json!({"ip": host});
    let endpoints = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [address], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
    });
    match registry
        .create(ep_info, Some("default"), endpoints, &WriteOpts::default())
        .await
    {
        Ok(_) => return Ok(()),
        Err(e) if e.reason == "AlreadyExists" => {}
        Err(e) => return Err(e),
    }
    let mut current = registry
        .get(ep_info, Some("default"), "kubernetes", None)
        .await?;
    let listed = current
        .pointer("/subsets/0/addresses")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|x| x["ip"] == host));
    if listed {
        return Ok(());
    }
    match current
        .pointer_mut("/subsets/0/addresses")
        .and_then(Value::as_array_mut)
    {
        Some(addresses) => addresses.push(address),
        None => {
            current["subsets"] = json!([{"addresses": [address], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}])
        }
    }
    registry
        .update(
            ep_info,
            Some("default"),
            "kubernetes",
            None,
            current,
            &WriteOpts::default(),
        )
        .await?;
    Ok(())
}

/// Creates the system namespaces that are missing.
pub async fn bootstrap(registry: &Registry) -> ApiResult<()> {
    let info = registry::namespaces_info();
    for name in SYSTEM_NAMESPACES {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        match registry.create(info, None, ns, &WriteOpts::default()).await {
            Ok(_) => tracing::info!(namespace = name, "created namespace"),
            Err(e) if e.reason == "AlreadyExists" => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// PUT of `namespaces/<name>/finalize`: sets `spec.finalizers`; a
/// terminating namespace with no finalizers left is deleted.
pub async fn finalize(
    registry: &Registry,
    name: &str,
    body: Value,
    opts: &WriteOpts,
) -> ApiResult<Written> {
    let info = registry::namespaces_info();
    let finalizers = body
        .pointer("/spec/finalizers")
        .cloned()
        .unwrap_or(json!([]));
    let mut ns = registry.get(info, None, name, None).await?;
    if let Some(rv) = object::resource_version(&body)
        && Some(rv) != object::resource_version(&ns)
    {
        return Err(ApiError::modified(info, name));
    }
    ns["spec"]["finalizers"] = finalizers;
    let done = object::is_deleting(&ns)
        && ns
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
        && object::finalizers(&ns).is_empty();
    if done && !opts.dry_run {
        return registry.remove(info, None, name, ns).await;
    }
    registry
        .update_spec_unchecked(info, None, name, ns, opts)
        .await
}

/// The namespaced resources with distinct storage, each once.
fn namespaced_resources() -> Vec<&'static ResourceInfo> {
    let mut seen = BTreeSet::new();
    catalog::RESOURCES
        .iter()
        .filter(|r| r.namespaced && seen.insert(r.storage))
        .collect()
}

/// Deletes what is in a terminating namespace; returns whether it is empty.
async fn empty_namespace(registry: &Registry, ns: &str) -> ApiResult<bool> {
    let mut empty = true;
    for info in namespaced_resources() {
        let deleted = registry
            .delete_collection(info, Some(ns), &ListOpts::default(), &DeleteOpts::default())
            .await?;
        if !deleted.is_empty() {
            empty = false;
        }
        let left = registry
            .store()
            .count(&registry::prefix(info, Some(ns)))
            .await
            .map_err(|e| ApiError::from_store(info, "", e))?;
        if left > 0 {
            empty = false;
        }
    }
    Ok(empty)
}

/// One pass over terminating namespaces.
pub async fn reconcile(registry: &Registry) -> ApiResult<()> {
    let info = registry::namespaces_info();
    let list = registry.list(info, None, &ListOpts::default()).await?;
    for ns in list.items.iter().filter(|n| object::is_deleting(n)) {
        let Some(name) = object::name(ns) else {
            continue;
        };
        let has_kubernetes = ns
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| f.iter().any(|x| x == "kubernetes"));
        if !has_kubernetes {
            continue;
        }
        if !empty_namespace(registry, name).await? {
            continue;
        }
        let remaining: Vec<Value> = ns
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .map(|f| f.iter().filter(|x| *x != "kubernetes").cloned().collect())
            .unwrap_or_default();
        let body = json!({"spec": {"finalizers": remaining}});
        match finalize(registry, name, body, &WriteOpts::default()).await {
            Ok(_) => tracing::info!(namespace = name, "namespace emptied and finalized"),
            Err(e) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Runs [`reconcile`] whenever the cache moves, at most every `period`.
pub async fn run(registry: Registry, period: Duration) {
    let mut position = registry.cache().subscribe();
    loop {
        if let Err(e) = reconcile(&registry).await {
            tracing::warn!(error = %e.message, "namespace finalizer: pass failed; will retry");
        }
        tokio::time::sleep(period).await;
        if position.changed().await.is_err() {
            return;
        }
    }
}
