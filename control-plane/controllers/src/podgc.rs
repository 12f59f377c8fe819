//! The pod garbage collector, as upstream's: it force-deletes pods bound
//! to nodes that no longer exist and terminating pods that were never
//! scheduled, and deletes the oldest terminated pods beyond
//! [`TERMINATED_POD_THRESHOLD`].

use std::collections::HashSet;
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Preconditions};
use kube::runtime::watcher;
use tracing::{info, warn};

use crate::cache::Cache;
use crate::{Context, ControllerFuture, Error};

/// How many terminated pods may stay (upstream's
/// --terminated-pod-gc-threshold).
pub const TERMINATED_POD_THRESHOLD: usize = 12_500;

/// How often the collector looks (upstream's 20 s).
pub const PERIOD: Duration = Duration::from_secs(20);

/// Why a pod is collected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Bound to a node that does not exist.
    Orphaned,
    /// Being deleted and never scheduled.
    UnscheduledTerminating,
    /// Terminated, and beyond the threshold.
    Terminated,
}

fn is_terminated(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

/// The pods to collect, given the pods, the existing node names and the
/// threshold.
pub fn collect<'a>(
    pods: &'a [Pod],
    nodes: &HashSet<String>,
    threshold: usize,
) -> Vec<(&'a Pod, Reason)> {
    let mut out = Vec::new();
    for pod in pods {
        match pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            Some(node) if !node.is_empty() && !nodes.contains(node) => {
                out.push((pod, Reason::Orphaned))
            }
            None | Some("") if pod.metadata.deletion_timestamp.is_some() => {
                out.push((pod, Reason::UnscheduledTerminating))
            }
            _ => {}
        }
    }
    let mut terminated: Vec<&Pod> = pods
        .iter()
        .filter(|p| is_terminated(p) && p.metadata.deletion_timestamp.is_none())
        .filter(|p| !out.iter().any(|(o, _)| std::ptr::eq(*o, *p)))
        .collect();
    if terminated.len() > threshold {
        terminated.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
        let excess = terminated.len() - threshold;
        out.extend(
            terminated
                .into_iter()
                .take(excess)
                .map(|p| (p, Reason::Terminated)),
        );
    }
    out
}

/// The pod garbage collector.
pub fn controller(ctx: &Context) -> ControllerFuture {
    let ctx = ctx.clone();
    async move { run(ctx).await }.boxed()
}

async fn run(ctx: Context) -> Result<(), Error> {
    let node_api: Api<Node> = Api::all(ctx.client.clone());
    let (nodes, nodes_driver) = Cache::<Node>::start(node_api.clone(), watcher::Config::default());
    let (pods, pods_driver) =
        Cache::<Pod>::start(Api::all(ctx.client.clone()), watcher::Config::default());
    let work = async {
        nodes.ready().await;
        pods.ready().await;
        let mut tick = tokio::time::interval(PERIOD);
        loop {
            tick.tick().await;
            let names: HashSet<String> = nodes
                .store
                .state()
                .iter()
                .filter_map(|n| n.metadata.name.clone())
                .collect();
            let all: Vec<Pod> = pods.store.state().iter().map(|p| (**p).clone()).collect();
            for (pod, reason) in collect(&all, &names, TERMINATED_POD_THRESHOLD) {
                let (Some(ns), Some(name)) = (&pod.metadata.namespace, &pod.metadata.name) else {
                    continue;
                };
                if reason == Reason::Orphaned {
                    // The cache may lag: make sure the node is really gone.
                    let node = pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.node_name.clone())
                        .unwrap_or_default();
                    match node_api.get_opt(&node).await {
                        Ok(None) => {}
                        _ => continue,
                    }
                }
                let force = reason != Reason::Terminated;
                let params = DeleteParams {
                    grace_period_seconds: force.then_some(0),
                    preconditions: Some(Preconditions {
                        uid: pod.metadata.uid.clone(),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
                match api.delete(name, &params).await {
                    Ok(_) => info!(pod = %format!("{ns}/{name}"), ?reason, "garbage-collected pod"),
                    Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                    Err(e) => warn!(pod = %name, error = %e, "pod GC could not delete"),
                }
            }
        }
    };
    tokio::select! {
        _ = nodes_driver => {}
        _ = pods_driver => {}
        _ = work => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn pod(name: &str, node: Option<&str>, phase: &str, created: i64, deleting: bool) -> Pod {
        let t = |s| Time(jiff::Timestamp::from_second(s).unwrap());
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(t(created)),
                deletion_timestamp: deleting.then(|| t(created + 1)),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: node.map(Into::into),
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                ..PodStatus::default()
            }),
        }
    }

    #[test]
    fn orphans_unscheduled_terminating_and_the_oldest_terminated_go() {
        let pods = vec![
            pod("on-gone-node", Some("gone"), "Running", 1, false),
            pod("fine", Some("n1"), "Running", 2, false),
            pod("pending-deleted", None, "Pending", 3, true),
            pod("pending", None, "Pending", 4, false),
            pod("done-old", Some("n1"), "Succeeded", 5, false),
            pod("done-new", Some("n1"), "Failed", 6, false),
        ];
        let nodes: HashSet<String> = ["n1".to_string()].into();
        let got: Vec<(String, Reason)> = collect(&pods, &nodes, 1)
            .into_iter()
            .map(|(p, r)| (p.metadata.name.clone().unwrap(), r))
            .collect();
        assert_eq!(
            got,
            vec![
                ("on-gone-node".to_string(), Reason::Orphaned),
                (
                    "pending-deleted".to_string(),
                    Reason::UnscheduledTerminating
                ),
                ("done-old".to_string(), Reason::Terminated),
            ]
        );
    }
}
