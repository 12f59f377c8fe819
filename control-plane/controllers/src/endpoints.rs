//! Endpoints and EndpointSlices, built from Services and pod readiness.
//!
//! For every Service with a selector, the pods of its namespace that match
//! it and have an IP become its endpoints: Ready pods as addresses, the
//! others as notReadyAddresses (or ready anyway with
//! `publishNotReadyAddresses`). Terminating and finished pods are left out
//! of Endpoints; in the EndpointSlice a terminating pod stays with
//! `serving`/`terminating` set as upstream. Ports are resolved against each
//! pod: a named targetPort becomes that pod's container port.
//!
//! Each Service gets one Endpoints object (named as the Service) and one
//! EndpointSlice (`<service>-<hash>`, labelled
//! `kubernetes.io/service-name` and managed by
//! `endpointslice-controller.k8s.io`) holding all its endpoints, where
//! upstream splits slices at 100 endpoints. Objects are written only when
//! their content changes. Services without a selector are left to their
//! owners, as upstream.
//!
//! The decision ([`desired`]) is a pure function of a Service and pods.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::watcher;
use tracing::{debug, warn};

use crate::cache::Cache;
use crate::{Context, ControllerFuture, Error};

/// Label naming a slice's Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Label naming who manages a slice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller, as upstream names it.
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";

/// What a Service's endpoints should be.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// The Endpoints subsets.
    pub subsets: Vec<EndpointSubset>,
    /// The EndpointSlice's endpoints.
    pub slice_endpoints: Vec<Endpoint>,
    /// The EndpointSlice's ports.
    pub slice_ports: Vec<SlicePort>,
}

fn selects(selector: &BTreeMap<String, String>, pod: &Pod) -> bool {
    let labels = pod.metadata.labels.as_ref();
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

fn pod_ip(pod: &Pod) -> Option<&str> {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .filter(|ip| !ip.is_empty())
}

/// A Service port's target on this pod, or None when a named port is
/// not found on it.
fn target_port(port: &k8s_openapi::api::core::v1::ServicePort, pod: &Pod) -> Option<i32> {
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            let spec = pod.spec.as_ref()?;
            spec.containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP")
                            == port.protocol.as_deref().unwrap_or("TCP")
                })
                .map(|p| p.container_port)
        }
    }
}

fn target_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..ObjectReference::default()
    }
}

/// The endpoints of `service` among `pods` (those of its namespace), or
/// None for a Service without a selector.
pub fn desired(service: &Service, pods: &[&Pod]) -> Option<Desired> {
    let spec = service.spec.as_ref()?;
    let selector = spec.selector.as_ref().filter(|s| !s.is_empty())?;
    let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
    let ports = spec.ports.clone().unwrap_or_default();
    let mut matching: Vec<&Pod> = pods
        .iter()
        .copied()
        .filter(|p| selects(selector, p))
        .filter(|p| pod_ip(p).is_some())
        .filter(|p| {
            !matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded") | Some("Failed")
            )
        })
        .collect();
    matching.sort_by(|a, b| {
        pod_ip(a)
            .cmp(&pod_ip(b))
            .then(a.metadata.name.cmp(&b.metadata.name))
    });

    // Endpoints: pods grouped by their resolved port list.
    let mut groups: Vec<(Vec<EndpointPort>, EndpointSubset)> = Vec::new();
    for pod in matching
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        let resolved: Vec<EndpointPort> = ports
            .iter()
            .filter_map(|port| {
                Some(EndpointPort {
                    name: port.name.clone(),
                    port: target_port(port, pod)?,
                    protocol: Some(port.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: port.app_protocol.clone(),
                })
            })
            .collect();
        if resolved.is_empty() && !ports.is_empty() {
            continue;
        }
        let address = EndpointAddress {
            ip: pod_ip(pod).unwrap_or_default().to_string(),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(target_ref(pod)),
            hostname: None,
        };
        let index = match groups.iter().position(|(p, _)| *p == resolved) {
            Some(i) => i,
            None => {
                groups.push((
                    resolved.clone(),
                    EndpointSubset {
                        ports: Some(resolved).filter(|p| !p.is_empty()),
                        ..EndpointSubset::default()
                    },
                ));
                groups.len() - 1
            }
        };
        let subset = &mut groups[index].1;
        if pod_ready(pod) || publish_not_ready {
            subset.addresses.get_or_insert_with(Vec::new).push(address);
        } else {
            subset
                .not_ready_addresses
                .get_or_insert_with(Vec::new)
                .push(address);
        }
    }
    let subsets = groups.into_iter().map(|(_, s)| s).collect();

    // The slice: every pod, terminating ones included, with conditions.
    let slice_ports: Vec<SlicePort> = ports
        .iter()
        .filter_map(|port| {
            let number = match &port.target_port {
                None => Some(port.port),
                Some(IntOrString::Int(n)) => Some(*n),
                Some(IntOrString::String(_)) => matching.first().and_then(|p| target_port(port, p)),
            }?;
            Some(SlicePort {
                name: Some(port.name.clone().unwrap_or_default()),
                port: Some(number),
                protocol: Some(port.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: port.app_protocol.clone(),
            })
        })
        .collect();
    let slice_endpoints = matching
        .iter()
        .map(|pod| {
            let terminating = pod.metadata.deletion_timestamp.is_some();
            let ready = pod_ready(pod);
            Endpoint {
                addresses: vec![pod_ip(pod).unwrap_or_default().to_string()],
                conditions: Some(EndpointConditions {
                    ready: Some((ready || publish_not_ready) && !terminating),
                    serving: Some(ready || publish_not_ready),
                    terminating: Some(terminating),
                }),
                node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
                target_ref: Some(target_ref(pod)),
                ..Endpoint::default()
            }
        })
        .collect();
    Some(Desired {
        subsets,
        slice_endpoints,
        slice_ports,
    })
}

/// A short stable suffix for the slice's name.
fn slice_name(service: &str) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    for b in service.bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let suffix: String = (0..5)
        .map(|i| ALPHABET[((hash >> (i * 5)) % ALPHABET.len() as u32) as usize] as char)
        .collect();
    let base: String = service.chars().take(57).collect();
    format!("{base}-{suffix}")
}

fn owner(service: &Service) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: service.metadata.name.clone().unwrap_or_default(),
        uid: service.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The Endpoints and EndpointSlice controller.
pub fn controller(ctx: &Context) -> ControllerFuture {
    let ctx = ctx.clone();
    async move { run(ctx).await }.boxed()
}

async fn run(ctx: Context) -> Result<(), Error> {
    let c = ctx.client.clone();
    let (services, svc_driver) =
        Cache::<Service>::start(Api::all(c.clone()), watcher::Config::default());
    let (pods, pod_driver) = Cache::<Pod>::start(Api::all(c.clone()), watcher::Config::default());
    let (endpoints, ep_driver) =
        Cache::<Endpoints>::start(Api::all(c.clone()), watcher::Config::default());
    let (slices, slice_driver) = Cache::<EndpointSlice>::start(
        Api::all(c.clone()),
        watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}")),
    );
    let work = async {
        services.ready().await;
        pods.ready().await;
        endpoints.ready().await;
        slices.ready().await;
        loop {
            sync_all(&ctx, &services, &pods, &endpoints, &slices).await;
            tokio::select! {
                _ = services.changed.notified() => {}
                _ = pods.changed.notified() => {}
                _ = endpoints.changed.notified() => {}
                _ = slices.changed.notified() => {}
                // A write that lost a race is retried from fresh state.
                _ = tokio::time::sleep(Duration::from_secs(30)) => {}
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::select! {
        _ = svc_driver => {}
        _ = pod_driver => {}
        _ = ep_driver => {}
        _ = slice_driver => {}
        _ = work => {}
    }
    Ok(())
}

async fn sync_all(
    ctx: &Context,
    services: &Cache<Service>,
    pods: &Cache<Pod>,
    endpoints: &Cache<Endpoints>,
    slices: &Cache<EndpointSlice>,
) {
    let all_pods = pods.store.state();
    let mut by_namespace: HashMap<&str, Vec<&Pod>> = HashMap::new();
    for pod in &all_pods {
        if let Some(ns) = pod.metadata.namespace.as_deref() {
            by_namespace.entry(ns).or_default().push(pod);
        }
    }
    let all_services = services.store.state();
    for service in &all_services {
        if service.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let (Some(ns), Some(name)) = (
            service.metadata.namespace.as_deref(),
            service.metadata.name.as_deref(),
        ) else {
            continue;
        };
        let empty = Vec::new();
        let Some(want) = desired(service, by_namespace.get(ns).unwrap_or(&empty)) else {
            continue;
        };
        let current_ep = endpoints.store.find(|e| {
            e.metadata.namespace.as_deref() == Some(ns) && e.metadata.name.as_deref() == Some(name)
        });
        sync_endpoints(ctx, service, ns, name, &want, current_ep.as_deref()).await;
        let current_slice = slices.store.find(|s| {
            s.metadata.namespace.as_deref() == Some(ns)
                && s.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(SERVICE_NAME_LABEL))
                    .map(String::as_str)
                    == Some(name)
        });
        sync_slice(ctx, service, ns, name, &want, current_slice.as_deref()).await;
    }
    // Slices whose Service is gone or lost its selector. (Endpoints of a
    // deleted Service go with it through their ownerReference.)
    for slice in slices.store.state() {
        let ns = slice.metadata.namespace.as_deref().unwrap_or("");
        let svc = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
            .map(String::as_str);
        let alive = all_services.iter().any(|s| {
            s.metadata.namespace.as_deref() == Some(ns)
                && s.metadata.name.as_deref() == svc
                && s.spec
                    .as_ref()
                    .and_then(|sp| sp.selector.as_ref())
                    .is_some_and(|sel| !sel.is_empty())
        });
        if !alive && let Some(name) = slice.metadata.name.as_deref() {
            let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), ns);
            if let Err(e) = api.delete(name, &DeleteParams::default()).await {
                debug!(slice = %name, error = %e, "could not delete a stale EndpointSlice");
            }
        }
    }
}

async fn sync_endpoints(
    ctx: &Context,
    service: &Service,
    ns: &str,
    name: &str,
    want: &Desired,
    current: Option<&Endpoints>,
) {
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), ns);
    let subsets = Some(want.subsets.clone()).filter(|s| !s.is_empty());
    let labels = service.metadata.labels.clone();
    let result = match current {
        Some(cur) if cur.subsets == subsets && cur.metadata.labels == labels => return,
        Some(cur) => {
            let mut next = cur.clone();
            next.subsets = subsets;
            next.metadata.labels = labels;
            api.replace(name, &PostParams::default(), &next).await
        }
        None => {
            let next = Endpoints {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    namespace: Some(ns.into()),
                    labels,
                    owner_references: Some(vec![owner(service)]),
                    ..ObjectMeta::default()
                },
                subsets,
            };
            api.create(&PostParams::default(), &next).await
        }
    };
    match result {
        Ok(_) => debug!(service = %format!("{ns}/{name}"), "updated Endpoints"),
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => warn!(service = %format!("{ns}/{name}"), error = %e, "could not write Endpoints"),
    }
}

async fn sync_slice(
    ctx: &Context,
    service: &Service,
    ns: &str,
    name: &str,
    want: &Desired,
    current: Option<&EndpointSlice>,
) {
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), ns);
    let ports = Some(want.slice_ports.clone());
    let result = match current {
        Some(cur) if cur.endpoints == want.slice_endpoints && cur.ports == ports => return,
        Some(cur) => {
            let mut next = cur.clone();
            next.endpoints = want.slice_endpoints.clone();
            next.ports = ports;
            let slice_name = cur.metadata.name.clone().unwrap_or_default();
            api.replace(&slice_name, &PostParams::default(), &next)
                .await
        }
        None => {
            let mut labels = BTreeMap::new();
            labels.insert(SERVICE_NAME_LABEL.to_string(), name.to_string());
            labels.insert(MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string());
            let next = EndpointSlice {
                metadata: ObjectMeta {
                    name: Some(slice_name(name)),
                    namespace: Some(ns.into()),
                    labels: Some(labels),
                    owner_references: Some(vec![owner(service)]),
                    ..ObjectMeta::default()
                },
                address_type: "IPv4".into(),
                endpoints: want.slice_endpoints.clone(),
                ports,
            };
            api.create(&PostParams::default(), &next).await
        }
    };
    match result {
        Ok(_) => debug!(service = %format!("{ns}/{name}"), "updated EndpointSlice"),
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => {
            warn!(service = %format!("{ns}/{name}"), error = %e, "could not write the EndpointSlice")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ContainerPort, PodCondition, PodSpec, PodStatus, ServicePort, ServiceSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn service(selector: &[(&str, &str)], ports: Vec<ServicePort>) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                selector: Some(
                    selector
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ports: Some(ports),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }
    }

    fn port(name: &str, port: i32, target: Option<IntOrString>) -> ServicePort {
        ServicePort {
            name: Some(name.into()),
            port,
            target_port: target,
            ..ServicePort::default()
        }
    }

    fn pod(name: &str, app: &str, ip: Option<&str>, ready: bool, http_port: i32) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                labels: Some([("app".to_string(), app.to_string())].into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: Some("n1".into()),
                containers: vec![Container {
                    name: "c".into(),
                    ports: Some(vec![ContainerPort {
                        name: Some("http".into()),
                        container_port: http_port,
                        ..ContainerPort::default()
                    }]),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                pod_ip: ip.map(Into::into),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
        }
    }

    fn ips(addresses: &Option<Vec<EndpointAddress>>) -> Vec<&str> {
        addresses.iter().flatten().map(|a| a.ip.as_str()).collect()
    }

    #[test]
    fn ready_and_not_ready_pods_with_named_ports() {
        let svc = service(
            &[("app", "web")],
            vec![port("http", 80, Some(IntOrString::String("http".into())))],
        );
        let a = pod("a", "web", Some("10.42.0.2"), true, 8080);
        let b = pod("b", "web", Some("10.42.0.3"), false, 8080);
        let c = pod("c", "web", None, true, 8080);
        let d = pod("d", "other", Some("10.42.0.5"), true, 8080);
        let e = pod("e", "web", Some("10.42.0.6"), true, 9090);
        let want = desired(&svc, &[&a, &b, &c, &d, &e]).unwrap();
        assert_eq!(
            want.subsets.len(),
            2,
            "pods with different target ports split subsets"
        );
        assert_eq!(ips(&want.subsets[0].addresses), vec!["10.42.0.2"]);
        assert_eq!(ips(&want.subsets[0].not_ready_addresses), vec!["10.42.0.3"]);
        assert_eq!(want.subsets[0].ports.as_ref().unwrap()[0].port, 8080);
        assert_eq!(ips(&want.subsets[1].addresses), vec!["10.42.0.6"]);
        assert_eq!(want.slice_endpoints.len(), 3);
        let ready: Vec<bool> = want
            .slice_endpoints
            .iter()
            .map(|e| e.conditions.as_ref().unwrap().ready.unwrap())
            .collect();
        assert_eq!(ready, vec![true, false, true]);
    }

    #[test]
    fn terminating_pods_leave_endpoints_but_stay_in_the_slice_as_terminating() {
        let svc = service(&[("app", "web")], vec![port("", 80, None)]);
        let mut a = pod("a", "web", Some("10.42.0.2"), true, 80);
        a.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        let want = desired(&svc, &[&a]).unwrap();
        assert!(want.subsets.is_empty());
        let c = want.slice_endpoints[0].conditions.clone().unwrap();
        assert_eq!(
            (c.ready, c.serving, c.terminating),
            (Some(false), Some(true), Some(true))
        );
    }

    #[test]
    fn services_without_selectors_are_not_managed() {
        let mut svc = service(&[], vec![]);
        assert_eq!(desired(&svc, &[]), None);
        svc.spec = None;
        assert_eq!(desired(&svc, &[]), None);
    }

    #[test]
    fn slice_names_are_stable_and_short() {
        assert_eq!(slice_name("web"), slice_name("web"));
        assert_ne!(slice_name("web"), slice_name("api"));
        assert!(slice_name(&"x".repeat(80)).len() <= 63);
    }
}
