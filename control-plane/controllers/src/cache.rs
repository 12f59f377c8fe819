//! Informer-style caches: a watched, always-current copy of one kind of
//! object, and a signal that something in it changed.
//!
//! [`Cache::start`] returns the reader and the future that keeps it
//! current; the controller runs that future alongside its own loop (never
//! on a detached task), so dropping the controller stops the watch too.

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use futures::StreamExt;
use futures::future::BoxFuture;
use kube::Resource;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

/// A watched copy of one kind of object.
pub struct Cache<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    /// The objects, as last seen.
    pub store: Store<K>,
    /// Notified after every change the watch delivers.
    pub changed: Arc<Notify>,
}

impl<K> Debug for Cache<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("objects", &self.store.len())
            .finish()
    }
}

impl<K> Cache<K>
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Default + Send + Sync,
{
    /// Starts watching `api`; the returned future must be polled for the
    /// cache to fill and stay current.
    pub fn start(api: Api<K>, config: watcher::Config) -> (Cache<K>, BoxFuture<'static, ()>) {
        Self::start_with(api, config, K::DynamicType::default())
    }
}

impl<K> Cache<K>
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Send + Sync,
{
    /// [`Cache::start`] for kinds known only at run time.
    pub fn start_with(
        api: Api<K>,
        config: watcher::Config,
        dyntype: K::DynamicType,
    ) -> (Cache<K>, BoxFuture<'static, ()>) {
        let writer = reflector::store::Writer::new(dyntype);
        let store = writer.as_reader();
        let changed = Arc::new(Notify::new());
        let notify = changed.clone();
        let driver = async move {
            let stream = reflector::reflector(writer, watcher(api, config).default_backoff());
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                match event {
                    Ok(_) => notify.notify_one(),
                    Err(e) => tracing::debug!(error = %e, "cache watch"),
                }
            }
        };
        (Cache { store, changed }, Box::pin(driver))
    }

    /// Waits until the first list has arrived.
    pub async fn ready(&self) {
        let _ = self.store.wait_until_ready().await;
    }
}
