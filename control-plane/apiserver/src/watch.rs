//! One API watch: a cursor into the watch cache, filtered for one client.
//!
//! The watch runs as a task that feeds a channel the HTTP response drains.
//! It ends when the client goes away, when its timeout passes, or when it
//! can no longer promise an exact stream (it fell out of the cache's
//! window); the client then re-watches from the last resourceVersion it saw.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kedge_apimachinery::selector::{FieldSelector, LabelSelector};
use kedge_datastore::{EventKind, Revision};
use kedge_resources::catalog::ResourceInfo;
use kedge_resources::convert;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::cache::{self, CachedEvent, Read};
use crate::registry::{self, ListOpts, Registry};
use crate::status::ApiError;

/// One thing a watcher sends.
#[derive(Debug)]
pub enum WatchItem {
    /// ADDED, MODIFIED or DELETED.
    Event {
        kind: &'static str,
        object: Arc<Value>,
        cached: Option<Arc<CachedEvent>>,
    },
    /// A BOOKMARK at a revision; `initial_end` marks the end of the initial
    /// events of a `sendInitialEvents` watch.
    Bookmark {
        revision: Revision,
        initial_end: bool,
    },
    /// An ERROR event; the stream ends after it.
    Error(ApiError),
}

/// Where a watch starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// Send the current objects as ADDED first, then changes.
    WithInitialState,
    /// Changes after this revision.
    After(Revision),
    /// Changes from now on.
    Now,
}

/// A watch request, parsed.
#[derive(Clone, Debug)]
pub struct WatchRequest {
    pub info: &'static ResourceInfo,
    pub namespace: Option<String>,
    pub label: LabelSelector,
    pub field: FieldSelector,
    pub start: Start,
    pub bookmarks: bool,
    /// `sendInitialEvents=true`: end the initial events with a bookmark.
    pub initial_events_end: bool,
    pub timeout: Duration,
    pub bookmark_interval: Duration,
}

/// Starts a watch; its items arrive on the returned channel.
pub fn start(registry: Registry, req: WatchRequest) -> mpsc::Receiver<WatchItem> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let closed = tx.clone();
        tokio::select! {
            _ = run(&registry, &req, &tx) => {}
            _ = closed.closed() => {}
            _ = tokio::time::sleep(req.timeout) => {}
        }
    });
    rx
}

/// Decides what a stored event means to this watcher, given its filter:
/// an update that makes an object match is ADDED to it, one that makes it
/// stop matching is DELETED.
fn classify(
    req: &WatchRequest,
    kind: EventKind,
    object: &Value,
    prev: Option<&Value>,
) -> Option<&'static str> {
    let matches =
        |o: &Value| registry::matches(req.info, o, &req.label, &req.field).unwrap_or(false);
    match kind {
        EventKind::Create => matches(object).then_some("ADDED"),
        EventKind::Delete => matches(object).then_some("DELETED"),
        EventKind::Update => {
            let now = matches(object);
            let before = prev.is_some_and(matches);
            match (before, now) {
                (true, true) => Some("MODIFIED"),
                (false, true) => Some("ADDED"),
                (true, false) => Some("DELETED"),
                (false, false) => None,
            }
        }
    }
}

async fn run(registry: &Registry, req: &WatchRequest, tx: &mpsc::Sender<WatchItem>) {
    let prefix = registry::prefix(req.info, req.namespace.as_deref());
    let cache = registry.cache().clone();
    let mut cursor = match req.start {
        Start::After(r) => r,
        Start::Now => cache.position(),
        Start::WithInitialState => {
            let opts = ListOpts {
                label: req.label.clone(),
                field: req.field.clone(),
                ..Default::default()
            };
            match registry
                .list(req.info, req.namespace.as_deref(), &opts)
                .await
            {
                Ok(list) => {
                    for item in list.items {
                        let ev = WatchItem::Event {
                            kind: "ADDED",
                            object: Arc::new(item),
                            cached: None,
                        };
                        if tx.send(ev).await.is_err() {
                            return;
                        }
                    }
                    if req.initial_events_end && req.bookmarks {
                        let bm = WatchItem::Bookmark {
                            revision: list.revision,
                            initial_end: true,
                        };
                        if tx.send(bm).await.is_err() {
                            return;
                        }
                    }
                    list.revision
                }
                Err(e) => {
                    let _ = tx.send(WatchItem::Error(e)).await;
                    return;
                }
            }
        }
    };
    // A revision the cache has not reached yet: wait a little for it.
    let mut position = cache.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while *position.borrow() < cursor {
        if tokio::time::timeout_at(deadline, position.changed())
            .await
            .is_err()
        {
            break;
        }
    }
    let (window_start, generation) = cache.window_start();
    if cursor < window_start || cache.position() < cursor {
        from_datastore(registry, req, &prefix, cursor, tx).await;
        return;
    }
    let mut last_bookmark = cursor;
    let mut bookmark_timer = tokio::time::interval(req.bookmark_interval);
    bookmark_timer.tick().await;
    loop {
        match cache.read(cursor, generation) {
            Read::Lost => return,
            Read::Events(events, upto) => {
                for ev in events {
                    if !ev.key.starts_with(&prefix) {
                        continue;
                    }
                    let item = if convert::needed(req.info) {
                        let object = convert::from_storage(req.info, (*ev.object).clone());
                        let prev = ev
                            .prev
                            .as_deref()
                            .map(|p| convert::from_storage(req.info, p.clone()));
                        classify(req, ev.kind, &object, prev.as_ref()).map(|kind| {
                            WatchItem::Event {
                                kind,
                                object: Arc::new(object),
                                cached: None,
                            }
                        })
                    } else {
                        classify(req, ev.kind, &ev.object, ev.prev.as_deref()).map(|kind| {
                            WatchItem::Event {
                                kind,
                                object: ev.object.clone(),
                                cached: Some(ev.clone()),
                            }
                        })
                    };
                    if let Some(item) = item
                        && tx.send(item).await.is_err()
                    {
                        return;
                    }
                }
                cursor = upto;
            }
        }
        tokio::select! {
            changed = position.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = bookmark_timer.tick() => {
                if req.bookmarks && cursor > last_bookmark {
                    last_bookmark = cursor;
                    if tx.send(WatchItem::Bookmark { revision: cursor, initial_end: false }).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// A watch from before the cache's window: its own datastore watch.
async fn from_datastore(
    registry: &Registry,
    req: &WatchRequest,
    prefix: &str,
    cursor: Revision,
    tx: &mpsc::Sender<WatchItem>,
) {
    let mut stream = match registry.store().watch(prefix, cursor + 1).await {
        Ok(s) => s,
        Err(kedge_datastore::Error::Compacted {
            requested,
            compacted,
        }) => {
            let _ = tx
                .send(WatchItem::Error(ApiError::expired(format!(
                    "too old resource version: {} ({compacted})",
                    requested - 1
                ))))
                .await;
            return;
        }
        Err(e) => {
            let _ = tx
                .send(WatchItem::Error(ApiError::from_store(req.info, "", e)))
                .await;
            return;
        }
    };
    let mut bookmark_timer = tokio::time::interval(req.bookmark_interval);
    bookmark_timer.tick().await;
    let mut cursor = cursor;
    let mut last_bookmark = cursor;
    loop {
        tokio::select! {
            item = stream.next() => {
                let ev = match item {
                    Some(Ok(ev)) => ev,
                    Some(Err(e)) => {
                        let _ = tx.send(WatchItem::Error(ApiError::from_store(req.info, "", e))).await;
                        return;
                    }
                    None => return,
                };
                let revision = ev.revision();
                cursor = revision;
                let prev = ev
                    .prev_kv
                    .as_ref()
                    .and_then(|kv| cache::decode(&kv.value, kv.mod_revision))
                    .map(|p| convert::from_storage(req.info, p));
                let object = match ev.kind {
                    EventKind::Delete => prev.clone().map(|mut p| {
                        crate::object::set_resource_version(&mut p, revision);
                        p
                    }),
                    _ => cache::decode(&ev.kv.value, revision)
                        .map(|o| convert::from_storage(req.info, o)),
                };
                let Some(object) = object else { continue };
                if let Some(kind) = classify(req, ev.kind, &object, prev.as_ref()) {
                    let item = WatchItem::Event { kind, object: Arc::new(object), cached: None };
                    if tx.send(item).await.is_err() {
                        return;
                    }
                }
            }
            _ = bookmark_timer.tick() => {
                if req.bookmarks && cursor > last_bookmark {
                    last_bookmark = cursor;
                    if tx.send(WatchItem::Bookmark { revision: cursor, initial_end: false }).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}
