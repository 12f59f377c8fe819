//! The watch cache: one datastore watch for the whole API, fanned out in
//! memory.
//!
//! A single task watches `/registry/` and keeps the most recent events,
//! decoded once, in a window. Each API watch is a cursor into that window:
//! it wakes when the cache's position moves, takes the events after its
//! cursor that pass its filter, and sends them. A thousand watchers cost a
//! thousand cursors, not a thousand datastore queries.
//!
//! Architecture invariant: a watcher sees every event after its starting
//! revision exactly once and in order, or its stream ends; it never skips.
//! A watcher that falls out of the window (too slow) is ended, as upstream
//! ends slow watchers, and the client re-watches from its last revision.
//! A watch from before the window but not yet compacted gets its own
//! datastore watch; one from before the compaction gets 410 Expired.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kedge_datastore::{EventKind, Revision, Store};
use serde_json::Value;
use tokio::sync::watch;

use crate::object;

/// Where every object lives in the datastore.
pub const REGISTRY_PREFIX: &str = "/registry/";

/// One change, decoded once and shared by every watcher.
#[derive(Debug)]
pub struct CachedEvent {
    pub revision: Revision,
    pub kind: EventKind,
    pub key: String,
    /// The object after the change, or its last state for a delete; its
    /// `resourceVersion` is the event's revision.
    pub object: Arc<Value>,
    /// The object before the change, for updates and deletes.
    pub prev: Option<Arc<Value>>,
    /// `object` as JSON, encoded once for every watcher that wants it.
    json: std::sync::OnceLock<bytes::Bytes>,
}

impl CachedEvent {
    /// The object as JSON bytes, encoded on first use and then shared.
    pub fn object_json(&self) -> bytes::Bytes {
        self.json
            .get_or_init(|| {
                serde_json::to_vec(&*self.object)
                    .map(bytes::Bytes::from)
                    .unwrap_or_default()
            })
            .clone()
    }
}

#[derive(Debug)]
struct Window {
    /// Every event with a revision above this is in `events`.
    start: Revision,
    events: VecDeque<Arc<CachedEvent>>,
    capacity: usize,
    /// Bumped each time the cache restarts its datastore watch, which ends
    /// every cursor.
    generation: u64,
}

/// The shared cache.
#[derive(Debug)]
pub struct WatchCache {
    store: Arc<dyn Store>,
    window: Mutex<Window>,
    /// The revision up to which every event is in the window.
    position: watch::Sender<Revision>,
}

/// What a cursor read.
#[derive(Debug)]
pub enum Read {
    /// Events after the cursor (possibly none), and the position read up to.
    Events(Vec<Arc<CachedEvent>>, Revision),
    /// The cursor fell out of the window or the cache restarted: the watch
    /// must end.
    Lost,
}

impl WatchCache {
    /// Starts the cache at the store's current revision.
    pub async fn start(
        store: Arc<dyn Store>,
        capacity: usize,
    ) -> Result<Arc<WatchCache>, kedge_datastore::Error> {
        let now = store.current_revision().await?;
        let (position, _) = watch::channel(now);
        let cache = Arc::new(WatchCache {
            store,
            window: Mutex::new(Window {
                start: now,
                events: VecDeque::new(),
                capacity: capacity.max(16),
                generation: 0,
            }),
            position,
        });
        let weak = Arc::downgrade(&cache);
        tokio::spawn(async move { run(weak, now).await });
        Ok(cache)
    }

    /// The revision up to which the cache has every event.
    pub fn position(&self) -> Revision {
        *self.position.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<Revision> {
        self.position.subscribe()
    }

    /// The oldest revision a cursor may start from, and the generation.
    pub fn window_start(&self) -> (Revision, u64) {
        let w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        (w.start, w.generation)
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The events after `cursor`, up to the current position.
    pub fn read(&self, cursor: Revision, generation: u64) -> Read {
        let w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if w.generation != generation || cursor < w.start {
            return Read::Lost;
        }
        let from = w.events.partition_point(|e| e.revision <= cursor);
        let events: Vec<Arc<CachedEvent>> = w.events.range(from..).cloned().collect();
        let upto = events
            .last()
            .map(|e| e.revision)
            .unwrap_or(cursor)
            .max(self.position());
        Read::Events(events, upto)
    }

    fn push(&self, event: CachedEvent) {
        let revision = event.revision;
        {
            let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
            while w.events.len() >= w.capacity {
                if let Some(old) = w.events.pop_front() {
                    w.start = old.revision;
                }
            }
            w.events.push_back(Arc::new(event));
        }
        self.position.send_replace(revision);
    }

    fn restart(&self, at: Revision) {
        {
            let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
            w.events.clear();
            w.start = at;
            w.generation += 1;
        }
        self.position.send_replace(at);
    }
}

/// Decodes a stored value into an object with its resourceVersion set.
pub fn decode(value: &[u8], revision: Revision) -> Option<Value> {
    let mut obj: Value = serde_json::from_slice(value).ok()?;
    object::set_resource_version(&mut obj, revision);
    Some(obj)
}

async fn run(cache: std::sync::Weak<WatchCache>, mut from: Revision) {
    loop {
        let Some(strong) = cache.upgrade() else {
            return;
        };
        let store = strong.store.clone();
        drop(strong);
        // Resume right after the last event seen, so that a datastore hiccup
        // costs the watchers nothing. Only when that history is gone does
        // the cache restart, which ends every cursor.
        let mut stream = match store.watch(REGISTRY_PREFIX, from + 1).await {
            Ok(s) => s,
            Err(kedge_datastore::Error::Compacted { .. }) => {
                let Some(c) = cache.upgrade() else { return };
                match c.store.current_revision().await {
                    Ok(now) => {
                        tracing::warn!(
                            from,
                            now,
                            "watch cache: fell behind compaction; restarting, watchers will re-watch"
                        );
                        c.restart(now);
                        from = now;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "watch cache: cannot read the current revision; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "watch cache: cannot watch the datastore; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        loop {
            let item = stream.next().await;
            let Some(c) = cache.upgrade() else { return };
            match item {
                Some(Ok(ev)) => {
                    let revision = ev.revision();
                    let prev = ev
                        .prev_kv
                        .as_ref()
                        .and_then(|kv| decode(&kv.value, kv.mod_revision))
                        .map(Arc::new);
                    let object = match ev.kind {
                        EventKind::Delete => prev.as_ref().map(|p| {
                            let mut o = (**p).clone();
                            object::set_resource_version(&mut o, revision);
                            Arc::new(o)
                        }),
                        _ => decode(&ev.kv.value, revision).map(Arc::new),
                    };
                    match object {
                        Some(object) => c.push(CachedEvent {
                            revision,
                            kind: ev.kind,
                            key: ev.kv.key.clone(),
                            object,
                            prev,
                            json: Default::default(),
                        }),
                        None => {
                            tracing::warn!(key = %ev.kv.key, revision, "watch cache: skipping a value that is not JSON");
                            c.position.send_replace(revision);
                        }
                    }
                    from = revision;
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, from, "watch cache: datastore watch failed; resuming");
                    break;
                }
                None => {
                    tracing::warn!(from, "watch cache: datastore watch ended; resuming");
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
