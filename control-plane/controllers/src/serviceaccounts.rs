//! The ServiceAccount controller: every active namespace has a
//! ServiceAccount named "default", created again if it is deleted.

use std::collections::HashSet;
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::watcher;
use tracing::{debug, warn};

use crate::cache::Cache;
use crate::{Context, ControllerFuture, Error};

/// The ServiceAccount every namespace gets.
pub const DEFAULT: &str = "default";

/// Namespaces that are active and have no "default" ServiceAccount.
pub fn missing(namespaces: &[Namespace], accounts: &[ServiceAccount]) -> Vec<String> {
    let have: HashSet<&str> = accounts
        .iter()
        .filter(|a| a.metadata.name.as_deref() == Some(DEFAULT))
        .filter_map(|a| a.metadata.namespace.as_deref())
        .collect();
    namespaces
        .iter()
        .filter(|ns| ns.metadata.deletion_timestamp.is_none())
        .filter(|ns| {
            ns.status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_none_or(|p| p == "Active")
        })
        .filter_map(|ns| ns.metadata.name.clone())
        .filter(|name| !have.contains(name.as_str()))
        .collect()
}

/// The ServiceAccount controller.
pub fn controller(ctx: &Context) -> ControllerFuture {
    let ctx = ctx.clone();
    async move { run(ctx).await }.boxed()
}

async fn run(ctx: Context) -> Result<(), Error> {
    let (namespaces, ns_driver) =
        Cache::<Namespace>::start(Api::all(ctx.client.clone()), watcher::Config::default());
    let (accounts, sa_driver) = Cache::<ServiceAccount>::start(
        Api::all(ctx.client.clone()),
        watcher::Config::default().fields("metadata.name=default"),
    );
    let work = async {
        namespaces.ready().await;
        accounts.ready().await;
        loop {
            let ns: Vec<Namespace> = namespaces
                .store
                .state()
                .iter()
                .map(|n| (**n).clone())
                .collect();
            let sa: Vec<ServiceAccount> = accounts
                .store
                .state()
                .iter()
                .map(|a| (**a).clone())
                .collect();
            for name in missing(&ns, &sa) {
                let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &name);
                let account = ServiceAccount {
                    metadata: ObjectMeta {
                        name: Some(DEFAULT.into()),
                        namespace: Some(name.clone()),
                        ..ObjectMeta::default()
                    },
                    ..ServiceAccount::default()
                };
                match api.create(&PostParams::default(), &account).await {
                    Ok(_) => debug!(namespace = %name, "created the default ServiceAccount"),
                    Err(kube::Error::Api(s)) if s.code == 409 => {}
                    // A namespace being deleted refuses new objects.
                    Err(kube::Error::Api(s)) if s.code == 403 => {}
                    Err(e) => {
                        warn!(namespace = %name, error = %e, "could not create the default ServiceAccount")
                    }
                }
            }
            tokio::select! {
                _ = namespaces.changed.notified() => {}
                _ = accounts.changed.notified() => {}
            }
            // Let a burst of changes settle.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::select! {
        _ = ns_driver => {}
        _ = sa_driver => {}
        _ = work => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NamespaceStatus;

    fn ns(name: &str, phase: &str) -> Namespace {
        Namespace {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            status: Some(NamespaceStatus {
                phase: Some(phase.into()),
                ..NamespaceStatus::default()
            }),
            ..Namespace::default()
        }
    }

    fn sa(ns: &str, name: &str) -> ServiceAccount {
        ServiceAccount {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                ..ObjectMeta::default()
            },
            ..ServiceAccount::default()
        }
    }

    #[test]
    fn only_active_namespaces_without_a_default_account() {
        let namespaces = [
            ns("a", "Active"),
            ns("b", "Active"),
            ns("c", "Terminating"),
            ns("d", "Active"),
        ];
        let accounts = [sa("a", "default"), sa("b", "builder")];
        assert_eq!(missing(&namespaces, &accounts), vec!["b", "d"]);
    }
}
